//! Key/value rows owned by an entity — the tags of experiments, runs,
//! registered models, model versions and logged models, and logged models'
//! params — described once per table ([`PairTable`]) and written by one
//! upsert and one delete. (Searching them is [`crate::search`]'s, described
//! by each entity's `SearchSpec`.)

use keel_core::Error;

use crate::exec::Exec;
use crate::sql::{Arg, Sql};

/// A key/value table and the columns naming the row's owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairTable {
    pub table: &'static str,
    /// The owner's key columns, in the order the owner's values are given.
    pub owner: &'static [&'static str],
    /// What the rows are, for logged errors ("experiment tag").
    pub what: &'static str,
}

pub(crate) const EXPERIMENT_TAGS: PairTable = PairTable {
    table: "experiment_tags",
    owner: &["experiment_id"],
    what: "experiment tag",
};
pub(crate) const RUN_TAGS: PairTable = PairTable {
    table: "tags",
    owner: &["run_uuid"],
    what: "run tag",
};
pub(crate) const MODEL_TAGS: PairTable = PairTable {
    table: "registered_model_tags",
    owner: &["name"],
    what: "registered model tag",
};
pub(crate) const VERSION_TAGS: PairTable = PairTable {
    table: "model_version_tags",
    owner: &["name", "version"],
    what: "model version tag",
};
pub(crate) const LOGGED_MODEL_TAGS: PairTable = PairTable {
    table: "logged_model_tags",
    owner: &["model_id"],
    what: "logged model tag",
};
pub(crate) const LOGGED_MODEL_PARAMS: PairTable = PairTable {
    table: "logged_model_params",
    owner: &["model_id"],
    what: "logged model param",
};

impl PairTable {
    /// Inserts `pairs` for `owner` in one statement inside `tx`, overwriting
    /// the value of a key that exists (immutability rules are the caller's).
    pub async fn upsert<'a, E: Exec>(
        &self,
        tx: &mut E,
        owner: &[Arg],
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Error> {
        let columns = self.owner.join(", ");
        let mut sql = Sql::new(&format!(
            "INSERT INTO {} ({columns}, key, value) VALUES ",
            self.table
        ));
        let mut any = false;
        for (i, (key, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(");
            for value in owner {
                sql.bind(value.clone()).push(", ");
            }
            sql.bind(key).push(", ").bind(value).push(")");
            any = true;
        }
        if !any {
            return Ok(());
        }
        sql.push(&format!(
            " ON CONFLICT ({columns}, key) DO UPDATE SET value = excluded.value"
        ));
        tx.execute(&sql, self.what).await?;
        Ok(())
    }

    /// Deletes `key` of `owner` through `e` (a connection or a transaction);
    /// a missing key is RESOURCE_DOES_NOT_EXIST with `missing` as the
    /// message (each entity words it as MLflow does).
    pub async fn delete<E: Exec>(
        &self,
        e: &mut E,
        owner: &[Arg],
        key: &str,
        missing: String,
    ) -> Result<(), Error> {
        let mut sql = Sql::new(&format!("DELETE FROM {} WHERE ", self.table));
        for (column, value) in self.owner.iter().zip(owner) {
            sql.push(&format!("{column} = "))
                .bind(value.clone())
                .push(" AND ");
        }
        sql.push("key = ").bind(key);
        if e.execute(&sql, self.what).await? == 0 {
            return Err(Error::not_found(missing));
        }
        Ok(())
    }
}
