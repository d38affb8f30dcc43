//! The model registry: registered models, versions, aliases, legacy stages,
//! tags, lineage and gate results, the append-only audit log and the change
//! counter that servers follow.
//!
//! Every write that moves what a server should serve (a new version, an alias
//! move, a stage transition, a deletion) runs in one transaction that first
//! bumps `registry_state.version`. That row update serialises registry writers
//! on PostgreSQL (on SQLite the single writer connection already does), so two
//! concurrent promotions cannot leave two holders or lose an audit row, and the
//! counter is a cheap change feed: a follower compares one integer.

use keel_core::uri::{ModelUri, RunUri};
use keel_core::validation::{self, KeyKind, validate_alias, validate_model_name};
use keel_core::{
    AuditEntry, Error, ModelVersion, Page, RegisteredModel, Stage, Tag, now_millis, page_token,
};
use sqlx::any::AnyRow;

use crate::Store;
use crate::experiments::is_unique_violation;
use crate::filter;
use crate::pairs::{MODEL_TAGS, VERSION_TAGS};
use crate::search::{self, ColumnType, KeyValueTable, SearchSpec};
use crate::sql::{Dialect, Sql, db, get};

/// Who performs a registry action, and why (recorded in the audit log).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user: String,
    pub reason: String,
    /// What triggered the action, e.g. the drift verdict behind an automatic retrain.
    pub cause: String,
}

impl Actor {
    pub fn user(user: impl Into<String>) -> Self {
        Actor {
            user: user.into(),
            ..Actor::default()
        }
    }
}

/// The check [`Store::promote`] makes inside the alias move.
#[derive(Debug, Clone, Copy)]
struct Promotion {
    force: bool,
}

/// What `create_model_version` needs.
#[derive(Debug, Clone, Default)]
pub struct CreateModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    pub user_id: String,
    pub signature: Option<String>,
    pub lineage: Option<String>,
    pub gate_results: Option<String>,
}

const MAX_MODEL_TAG_VALUE: usize = 100_000;

const VERSION_COLUMNS: &str = "mv.name, mv.version, mv.creation_timestamp, mv.last_updated_timestamp, \
     mv.description, mv.user_id, mv.current_stage, mv.source, mv.run_id, mv.run_link, mv.model_id, mv.status, \
     mv.signature, mv.lineage, mv.gate_results";

fn model_attribute(key: &str) -> Option<(&'static str, ColumnType)> {
    Some(match key {
        "name" => ("rm.name", ColumnType::Text),
        "creation_timestamp" | "creation_time" => ("rm.creation_timestamp", ColumnType::Number),
        "last_updated_timestamp" | "last_update_time" => {
            ("rm.last_updated_timestamp", ColumnType::Number)
        }
        "description" => ("rm.description", ColumnType::Text),
        _ => return None,
    })
}

const MODEL_SEARCH: SearchSpec = SearchSpec {
    entity: "registered model",
    id_column: "rm.name",
    attribute: model_attribute,
    tags: Some(KeyValueTable {
        table: "registered_model_tags",
        join: "kv.name = rm.name",
        value_type: ColumnType::Text,
        extra: "",
    }),
    params: None,
    metrics: None,
    datasets: false,
    ne_includes_missing: true,
};

fn version_attribute(key: &str) -> Option<(&'static str, ColumnType)> {
    Some(match key {
        "name" => ("mv.name", ColumnType::Text),
        "version" | "version_number" => ("mv.version", ColumnType::Number),
        "run_id" => ("mv.run_id", ColumnType::Text),
        "source" | "source_path" => ("mv.source", ColumnType::Text),
        "model_id" => ("mv.model_id", ColumnType::Text),
        "current_stage" | "stage" => ("mv.current_stage", ColumnType::Text),
        "user_id" => ("mv.user_id", ColumnType::Text),
        "status" => ("mv.status", ColumnType::Text),
        "creation_timestamp" | "creation_time" => ("mv.creation_timestamp", ColumnType::Number),
        "last_updated_timestamp" | "last_update_time" => {
            ("mv.last_updated_timestamp", ColumnType::Number)
        }
        _ => return None,
    })
}

const VERSION_SEARCH: SearchSpec = SearchSpec {
    entity: "model version",
    id_column: "mv.name",
    attribute: version_attribute,
    tags: Some(KeyValueTable {
        table: "model_version_tags",
        join: "kv.name = mv.name AND kv.version = mv.version",
        value_type: ColumnType::Text,
        extra: "",
    }),
    params: None,
    metrics: None,
    datasets: false,
    ne_includes_missing: true,
};

fn version_from_row(row: &AnyRow) -> Result<ModelVersion, Error> {
    let stage: String = get(row, "current_stage")?;
    Ok(ModelVersion {
        name: get(row, "name")?,
        version: get(row, "version")?,
        creation_timestamp: get(row, "creation_timestamp")?,
        last_updated_timestamp: get(row, "last_updated_timestamp")?,
        description: get(row, "description")?,
        user_id: get(row, "user_id")?,
        current_stage: Stage::parse(&stage).unwrap_or(Stage::None),
        source: get(row, "source")?,
        run_id: get(row, "run_id")?,
        run_link: get(row, "run_link")?,
        model_id: get(row, "model_id")?,
        status: get(row, "status")?,
        tags: Vec::new(),
        aliases: Vec::new(),
        signature: get(row, "signature")?,
        lineage: get(row, "lineage")?,
        gate_results: get(row, "gate_results")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, Error> {
    Ok(AuditEntry {
        id: get(row, "id")?,
        name: get(row, "name")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        from_version: get(row, "from_version")?,
        to_version: get(row, "to_version")?,
        user: get(row, "user_id")?,
        reason: get(row, "reason")?,
        cause: get(row, "cause")?,
        timestamp: get(row, "timestamp")?,
        registry_version: get(row, "registry_version")?,
    })
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// One audit row to append inside a registry transaction.
struct Audit<'a> {
    name: &'a str,
    action: &'a str,
    target: &'a str,
    from_version: Option<i64>,
    to_version: Option<i64>,
}

impl Store {
    /// Starts a registry write: a transaction whose first statement bumps the
    /// registry change counter (and so serialises registry writers).
    async fn begin_registry_write(&self) -> Result<(Tx, i64), Error> {
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting registry transaction"))?;
        let row = sqlx::query(
            "UPDATE registry_state SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db("bumping the registry version"))?;
        let version: i64 = get(&row, "version")?;
        Ok((tx, version))
    }

    async fn append_audit(
        tx: &mut Tx,
        audit: Audit<'_>,
        actor: &Actor,
        registry_version: i64,
    ) -> Result<(), Error> {
        let dialect = Dialect::of(tx);
        let mut sql = Sql::new(
            "INSERT INTO registry_audit (name, action, target, from_version, to_version, user_id, reason, cause, \
             timestamp, registry_version) VALUES (",
        );
        sql.bind(audit.name)
            .push(", ")
            .bind(audit.action)
            .push(", ")
            .bind(audit.target)
            .push(", ")
            .bind(audit.from_version)
            .push(", ")
            .bind(audit.to_version)
            .push(", ")
            .bind(actor.user.as_str())
            .push(", ")
            .bind(actor.reason.as_str())
            .push(", ")
            .bind(actor.cause.as_str())
            .push(", ")
            .bind(now_millis())
            .push(", ")
            .bind(registry_version)
            .push(")");
        sql.query(dialect)
            .execute(&mut **tx)
            .await
            .map_err(db("appending to the registry audit log"))?;
        Ok(())
    }

    /// The registry change counter: it grows with every version, alias or stage change.
    pub async fn registry_version(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT version FROM registry_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the registry version"))?;
        get(&row, "version")
    }

    // ------------------------------------------------------- registered models

    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> Result<RegisteredModel, Error> {
        validate_model_name(name)?;
        for tag in tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_MODEL_TAG_VALUE)?;
        }
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut insert = Sql::new(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (",
        );
        insert
            .bind(name)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(description.unwrap_or(""));
        insert.push(")");
        match insert.query(self.dialect).execute(&mut *tx).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::already_exists(format!(
                    "Registered Model (name={name}) already exists."
                )));
            }
            Err(e) => return Err(db("creating registered model")(e)),
        }
        for tag in tags {
            MODEL_TAGS
                .upsert(
                    &mut tx,
                    &[name.into()],
                    [(tag.key.as_str(), tag.value.as_str())],
                )
                .await?;
        }
        tx.commit()
            .await
            .map_err(db("committing registered model"))?;
        self.get_registered_model(name).await
    }

    async fn registered_model_exists(&self, name: &str) -> Result<(), Error> {
        let mut sql = Sql::new("SELECT name FROM registered_models WHERE name = ");
        sql.bind(name);
        sql.query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading registered model"))?
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("Registered Model with name={name} not found")))
    }

    /// Reads a registered model with tags, aliases and latest version per stage.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, Error> {
        let mut sql = Sql::new(
            "SELECT rm.name, rm.creation_timestamp, rm.last_updated_timestamp, rm.description FROM \
             registered_models rm WHERE rm.name = ",
        );
        sql.bind(name);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading registered model"))?
            .ok_or_else(|| {
                Error::not_found(format!("Registered Model with name={name} not found"))
            })?;
        let mut models = vec![model_from_row(&row)?];
        self.fill_registered_models(&mut models).await?;
        models
            .pop()
            .ok_or_else(|| Error::internal("registered model vanished while loading"))
    }

    async fn fill_registered_models(&self, models: &mut [RegisteredModel]) -> Result<(), Error> {
        if models.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let index: std::collections::HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        for chunk in names.chunks(500) {
            let mut sql =
                Sql::new("SELECT name, key, value FROM registered_model_tags WHERE name IN ");
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY key");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading model tags"))?
            {
                if let Some(&i) = index.get(&get::<String>(&row, "name")?) {
                    models[i].tags.push(Tag::new(
                        get::<String>(&row, "key")?,
                        get::<String>(&row, "value")?,
                    ));
                }
            }
            let mut sql = Sql::new(
                "SELECT name, alias, version FROM registered_model_aliases WHERE name IN ",
            );
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY alias");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading aliases"))?
            {
                if let Some(&i) = index.get(&get::<String>(&row, "name")?) {
                    models[i]
                        .aliases
                        .push((get(&row, "alias")?, get(&row, "version")?));
                }
            }
            // The newest version per (model, stage).
            let mut sql = Sql::new(&format!(
                "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE mv.name IN "
            ));
            sql.bind_list(chunk.iter().map(String::as_str)).push(
                " AND mv.version = (SELECT MAX(v.version) FROM model_versions v WHERE v.name = mv.name AND \
                 v.current_stage = mv.current_stage) ORDER BY mv.name, mv.version",
            );
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading latest versions"))?
            {
                let version = version_from_row(&row)?;
                if let Some(&i) = index.get(&version.name) {
                    models[i].latest_versions.push(version);
                }
            }
        }
        Ok(())
    }

    /// Renames a registered model, carrying its versions, tags, aliases and audit log.
    pub async fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<RegisteredModel, Error> {
        validate_model_name(new_name)?;
        self.registered_model_exists(name).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut exists = Sql::new("SELECT name FROM registered_models WHERE name = ");
        exists.bind(new_name);
        if exists
            .query(self.dialect)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("checking name"))?
            .is_some()
        {
            return Err(Error::already_exists(format!(
                "Registered Model (name={new_name}) already exists."
            )));
        }
        for table in [
            "registered_models",
            "registered_model_tags",
            "model_versions",
            "model_version_tags",
            "registered_model_aliases",
            "registry_audit",
        ] {
            let mut sql = Sql::new(&format!("UPDATE {table} SET name = "));
            sql.bind(new_name).push(" WHERE name = ").bind(name);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("renaming registered model"))?;
        }
        // Grants follow the model to its new name, as in MLflow.
        let mut grants = Sql::new("UPDATE user_grants SET resource_id = ");
        grants
            .bind(new_name)
            .push(" WHERE resource_type = 'registered_model' AND resource_id = ")
            .bind(name);
        grants
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("renaming registered model"))?;
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(new_name);
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("renaming registered model"))?;
        let audit = Audit {
            name: new_name,
            action: "rename_model",
            target: name,
            from_version: None,
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, &Actor::default(), registry_version).await?;
        tx.commit().await.map_err(db("committing rename"))?;
        self.get_registered_model(new_name).await
    }

    /// Updates a registered model's description.
    pub async fn update_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<RegisteredModel, Error> {
        self.registered_model_exists(name).await?;
        let mut sql = Sql::new("UPDATE registered_models SET description = ");
        sql.bind(description)
            .push(", last_updated_timestamp = ")
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(name);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating registered model"))?;
        self.get_registered_model(name).await
    }

    /// Deletes a registered model and everything under it; the audit log keeps its history.
    pub async fn delete_registered_model(&self, name: &str, actor: &Actor) -> Result<(), Error> {
        self.registered_model_exists(name).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
            "registered_model_tags",
            "registered_models",
        ] {
            let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE name = "));
            sql.bind(name);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting registered model"))?;
        }
        let audit = Audit {
            name,
            action: "delete_model",
            target: name,
            from_version: None,
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing delete"))?;
        Ok(())
    }

    /// Searches registered models (`name LIKE ...`, `tags.k = ...`).
    pub async fn search_registered_models(
        &self,
        filter_string: Option<&str>,
        max_results: i64,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<RegisteredModel>, Error> {
        if !(1..=1000).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results': must be between 1 and 1000"
            )));
        }
        let offset = page_token::decode(page_token)?;
        let mut sql = Sql::new(
            "SELECT rm.name, rm.creation_timestamp, rm.last_updated_timestamp, rm.description FROM \
             registered_models rm WHERE 1 = 1",
        );
        if let Some(expr) = filter_string
            .map(filter::parse_filter)
            .transpose()?
            .flatten()
        {
            sql.push(" AND ");
            search::push_filter(&MODEL_SEARCH, self.dialect, &expr, &mut sql)?;
        }
        sql.push(" ORDER BY ");
        validation::check_order_by_count(order_by.len())?;
        for clause in order_by {
            search::push_order_by(&MODEL_SEARCH, &filter::parse_order_by(clause)?, &mut sql)?;
            sql.push(", ");
        }
        sql.push("rm.name ASC LIMIT ")
            .bind(max_results + 1)
            .push(" OFFSET ")
            .bind(offset as i64);
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching registered models"))?;
        let mut items = rows
            .iter()
            .map(model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_registered_models(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// The newest version in each of `stages` (all stages when empty).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[Stage],
    ) -> Result<Vec<ModelVersion>, Error> {
        let model = self.get_registered_model(name).await?;
        let mut versions: Vec<ModelVersion> = model
            .latest_versions
            .into_iter()
            .filter(|v| stages.is_empty() || stages.contains(&v.current_stage))
            .collect();
        self.fill_versions(&mut versions).await?;
        Ok(versions)
    }

    /// Sets a registered model tag.
    pub async fn set_registered_model_tag(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        validation::validate_key(KeyKind::Tag, key)?;
        validation::validate_length("tag value", value, MAX_MODEL_TAG_VALUE)?;
        self.registered_model_exists(name).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        MODEL_TAGS
            .upsert(&mut tx, &[name.into()], [(key, value)])
            .await?;
        tx.commit().await.map_err(db("committing tag"))?;
        Ok(())
    }

    /// Deletes a registered model tag.
    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<(), Error> {
        self.registered_model_exists(name).await?;
        MODEL_TAGS
            .delete(
                &self.writer,
                self.dialect,
                &[name.into()],
                key,
                format!("No tag with key '{key}' on registered model '{name}'"),
            )
            .await
    }

    // ---------------------------------------------------------------- versions

    /// Registers a new version (numbered max + 1); creates the registered model if needed.
    pub async fn create_model_version(
        &self,
        request: CreateModelVersion,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        validate_model_name(&request.name)?;
        if request.source.trim().is_empty() {
            return Err(Error::invalid_parameter(
                "Missing value for required parameter 'source'",
            ));
        }
        for tag in &request.tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_MODEL_TAG_VALUE)?;
        }
        let mut request = request;
        if let Some(run_id) = request.run_id.as_deref().filter(|r| !r.is_empty()) {
            let run = self.get_run(run_id).await?;
            if request.lineage.is_none() {
                request.lineage = Some(lineage_of(&run).to_string());
            }
        }
        let now = now_millis();
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut ensure = Sql::new(
            "INSERT INTO registered_models (name, creation_timestamp, last_updated_timestamp, description) VALUES (",
        );
        ensure
            .bind(request.name.as_str())
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", '') ON CONFLICT (name) DO NOTHING");
        ensure
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating registered model"))?;
        let mut next = Sql::new(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM model_versions WHERE name = ",
        );
        next.bind(request.name.as_str());
        let row = next
            .query(self.dialect)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("numbering version"))?;
        let version: i64 = get(&row, "next")?;
        let mut insert = Sql::new(
            "INSERT INTO model_versions (name, version, creation_timestamp, last_updated_timestamp, description, \
             user_id, current_stage, source, run_id, run_link, model_id, status, signature, lineage, gate_results) \
             VALUES (",
        );
        insert
            .bind(request.name.as_str())
            .push(", ")
            .bind(version)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(request.description.unwrap_or_default())
            .push(", ")
            .bind(request.user_id.as_str())
            .push(", 'None', ")
            .bind(request.source.as_str())
            .push(", ")
            .bind(request.run_id.filter(|r| !r.is_empty()))
            .push(", ")
            .bind(request.run_link.filter(|r| !r.is_empty()))
            .push(", ")
            .bind(request.model_id.filter(|r| !r.is_empty()))
            .push(", 'READY', ")
            .bind(request.signature)
            .push(", ")
            .bind(request.lineage)
            .push(", ")
            .bind(request.gate_results)
            .push(")");
        insert
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating model version"))?;
        for tag in &request.tags {
            VERSION_TAGS
                .upsert(
                    &mut tx,
                    &[request.name.as_str().into(), version.into()],
                    [(tag.key.as_str(), tag.value.as_str())],
                )
                .await?;
        }
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch
            .bind(now)
            .push(" WHERE name = ")
            .bind(request.name.as_str());
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("touching registered model"))?;
        let audit = Audit {
            name: &request.name,
            action: "create_version",
            target: "",
            from_version: None,
            to_version: Some(version),
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing model version"))?;
        self.get_model_version(&request.name, version).await
    }

    /// Reads one version with its tags and aliases.
    pub async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion, Error> {
        let mut sql = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE mv.name = "
        ));
        sql.bind(name).push(" AND mv.version = ").bind(version);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading model version"))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Model Version (name={name}, version={version}) not found"
                ))
            })?;
        let mut versions = vec![version_from_row(&row)?];
        self.fill_versions(&mut versions).await?;
        versions
            .pop()
            .ok_or_else(|| Error::internal("model version vanished while loading"))
    }

    async fn fill_versions(&self, versions: &mut [ModelVersion]) -> Result<(), Error> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        let position = |versions: &[ModelVersion], name: &str, version: i64| {
            versions
                .iter()
                .position(|v| v.name == name && v.version == version)
        };
        for chunk in names.chunks(500) {
            let mut sql =
                Sql::new("SELECT name, version, key, value FROM model_version_tags WHERE name IN ");
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY key");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading version tags"))?
            {
                let name: String = get(&row, "name")?;
                if let Some(i) = position(versions, &name, get(&row, "version")?) {
                    versions[i].tags.push(Tag::new(
                        get::<String>(&row, "key")?,
                        get::<String>(&row, "value")?,
                    ));
                }
            }
            let mut sql = Sql::new(
                "SELECT name, alias, version FROM registered_model_aliases WHERE name IN ",
            );
            sql.bind_list(chunk.iter().map(String::as_str))
                .push(" ORDER BY alias");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading aliases"))?
            {
                let name: String = get(&row, "name")?;
                if let Some(i) = position(versions, &name, get(&row, "version")?) {
                    versions[i].aliases.push(get(&row, "alias")?);
                }
            }
        }
        Ok(())
    }

    /// Updates a version's description.
    pub async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion, Error> {
        self.get_model_version(name, version).await?;
        let mut sql = Sql::new("UPDATE model_versions SET description = ");
        sql.bind(description)
            .push(", last_updated_timestamp = ")
            .bind(now_millis())
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating model version"))?;
        self.get_model_version(name, version).await
    }

    /// Records the gate results of a version (JSON `{"passed": bool, ...}`), read by promotion checks.
    pub async fn set_model_version_gates(
        &self,
        name: &str,
        version: i64,
        gate_results: &str,
    ) -> Result<(), Error> {
        serde_json::from_str::<serde_json::Value>(gate_results)
            .map_err(|e| Error::invalid_parameter(format!("gate results must be JSON: {e}")))?;
        self.get_model_version(name, version).await?;
        let mut sql = Sql::new("UPDATE model_versions SET gate_results = ");
        sql.bind(gate_results)
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("recording gate results"))?;
        Ok(())
    }

    /// Deletes a version; aliases that pointed at it are removed and audited.
    pub async fn delete_model_version(
        &self,
        name: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<(), Error> {
        self.get_model_version(name, version).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut aliases = Sql::new("SELECT alias FROM registered_model_aliases WHERE name = ");
        aliases.bind(name).push(" AND version = ").bind(version);
        let rows = aliases
            .query(self.dialect)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading aliases"))?;
        for row in &rows {
            let alias: String = get(row, "alias")?;
            let audit = Audit {
                name,
                action: "delete_alias",
                target: &alias,
                from_version: Some(version),
                to_version: None,
            };
            Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        }
        for table in [
            "registered_model_aliases",
            "model_version_tags",
            "model_versions",
        ] {
            let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE name = "));
            sql.bind(name).push(" AND version = ").bind(version);
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting model version"))?;
        }
        let audit = Audit {
            name,
            action: "delete_version",
            target: "",
            from_version: Some(version),
            to_version: None,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit().await.map_err(db("committing version delete"))?;
        Ok(())
    }

    /// Searches model versions (`name = ...`, `run_id = ...`, `tags.k = ...`).
    pub async fn search_model_versions(
        &self,
        filter_string: Option<&str>,
        max_results: i64,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<ModelVersion>, Error> {
        if !(1..=200_000).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results'"
            )));
        }
        let offset = page_token::decode(page_token)?;
        let mut sql = Sql::new(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions mv WHERE 1 = 1"
        ));
        if let Some(expr) = filter_string
            .map(filter::parse_filter)
            .transpose()?
            .flatten()
        {
            sql.push(" AND ");
            search::push_filter(&VERSION_SEARCH, self.dialect, &expr, &mut sql)?;
        }
        sql.push(" ORDER BY ");
        validation::check_order_by_count(order_by.len())?;
        for clause in order_by {
            search::push_order_by(&VERSION_SEARCH, &filter::parse_order_by(clause)?, &mut sql)?;
            sql.push(", ");
        }
        sql.push("mv.name ASC, mv.version DESC LIMIT ")
            .bind(max_results + 1)
            .push(" OFFSET ")
            .bind(offset as i64);
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching model versions"))?;
        let mut items = rows
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_versions(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Moves a version to a legacy stage, optionally archiving the others in that stage.
    pub async fn transition_model_version_stage(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        self.transition_stage_checked(
            name,
            version,
            stage,
            archive_existing_versions,
            false,
            actor,
        )
        .await
    }

    /// [`Store::transition_model_version_stage`]; with `gated`, the stage is
    /// protected like an alias: the version's recorded gates must have
    /// passed, re-read inside the transaction that moves it (the promotion
    /// rule, never forced here).
    pub async fn transition_stage_checked(
        &self,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing_versions: bool,
        gated: bool,
        actor: &Actor,
    ) -> Result<ModelVersion, Error> {
        let current = self.get_model_version(name, version).await?;
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        if gated {
            let mut gates = Sql::new("SELECT gate_results FROM model_versions WHERE name = ");
            gates.bind(name).push(" AND version = ").bind(version);
            let row = gates
                .query(self.dialect)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading gate results"))?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Model Version (name={name}, version={version}) not found"
                    ))
                })?;
            let gates: Option<String> = get(&row, "gate_results")?;
            keel_core::promotion::check_gate_text(name, version, gates.as_deref(), false, "")?;
        }
        let now = now_millis();
        if archive_existing_versions && matches!(stage, Stage::Staging | Stage::Production) {
            let mut others = Sql::new("SELECT version FROM model_versions WHERE name = ");
            others
                .bind(name)
                .push(" AND current_stage = ")
                .bind(stage.as_str())
                .push(" AND version != ")
                .bind(version);
            for row in others
                .query(self.dialect)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading stage holders"))?
            {
                let other: i64 = get(&row, "version")?;
                let mut archive = Sql::new(
                    "UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = ",
                );
                archive
                    .bind(now)
                    .push(" WHERE name = ")
                    .bind(name)
                    .push(" AND version = ")
                    .bind(other);
                archive
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("archiving version"))?;
                let audit = Audit {
                    name,
                    action: "transition_stage",
                    target: "->Archived",
                    from_version: None,
                    to_version: Some(other),
                };
                Self::append_audit(&mut tx, audit, actor, registry_version).await?;
            }
        }
        let mut sql = Sql::new("UPDATE model_versions SET current_stage = ");
        sql.bind(stage.as_str())
            .push(", last_updated_timestamp = ")
            .bind(now)
            .push(" WHERE name = ")
            .bind(name)
            .push(" AND version = ")
            .bind(version);
        sql.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("transitioning stage"))?;
        let target = format!("{}->{}", current.current_stage.as_str(), stage.as_str());
        let audit = Audit {
            name,
            action: "transition_stage",
            target: &target,
            from_version: None,
            to_version: Some(version),
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        tx.commit()
            .await
            .map_err(db("committing stage transition"))?;
        self.get_model_version(name, version).await
    }

    /// Sets a version tag.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        validation::validate_key(KeyKind::Tag, key)?;
        validation::validate_length("tag value", value, MAX_MODEL_TAG_VALUE)?;
        self.get_model_version(name, version).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        VERSION_TAGS
            .upsert(&mut tx, &[name.into(), version.into()], [(key, value)])
            .await?;
        tx.commit().await.map_err(db("committing tag"))?;
        Ok(())
    }

    /// Deletes a version tag.
    pub async fn delete_model_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
    ) -> Result<(), Error> {
        self.get_model_version(name, version).await?;
        VERSION_TAGS
            .delete(
                &self.writer,
                self.dialect,
                &[name.into(), version.into()],
                key,
                format!("No tag with key '{key}' on model '{name}' version {version}"),
            )
            .await
    }

    // ----------------------------------------------------------------- aliases

    /// Points `alias` at `version` atomically and appends the move to the audit log.
    pub async fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        validate_alias(alias)?;
        self.move_alias(name, alias, Some(version), "set_alias", actor, None)
            .await
    }

    /// Points `alias` at `version` if the version's recorded gates passed
    /// (keel-core's promotion rule), or when `force` comes with a reason. The
    /// gate results are re-read inside the transaction that moves the alias,
    /// so gates recorded concurrently cannot slip past the check.
    pub async fn promote(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        force: bool,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        validate_alias(alias)?;
        self.move_alias(
            name,
            alias,
            Some(version),
            "set_alias",
            actor,
            Some(Promotion { force }),
        )
        .await
    }

    /// Removes an alias (audited).
    pub async fn delete_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        self.move_alias(name, alias, None, "delete_alias", actor, None)
            .await
    }

    async fn move_alias(
        &self,
        name: &str,
        alias: &str,
        version: Option<i64>,
        action: &str,
        actor: &Actor,
        promotion: Option<Promotion>,
    ) -> Result<AuditEntry, Error> {
        self.registered_model_exists(name).await?;
        if let Some(version) = version {
            self.get_model_version(name, version).await?;
        }
        let (mut tx, registry_version) = self.begin_registry_write().await?;
        let mut current = Sql::new("SELECT version FROM registered_model_aliases WHERE name = ");
        current.bind(name).push(" AND alias = ").bind(alias);
        let from_version: Option<i64> = match current
            .query(self.dialect)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading alias"))?
        {
            Some(row) => Some(get(&row, "version")?),
            None => None,
        };
        match version {
            Some(version) => {
                // The version may have been deleted since the check above: re-check inside the transaction.
                let mut exists =
                    Sql::new("SELECT version, gate_results FROM model_versions WHERE name = ");
                exists.bind(name).push(" AND version = ").bind(version);
                let Some(row) = exists
                    .query(self.dialect)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("reading version"))?
                else {
                    return Err(Error::not_found(format!(
                        "Model Version (name={name}, version={version}) not found"
                    )));
                };
                if let Some(promotion) = promotion {
                    let gates: Option<String> = get(&row, "gate_results")?;
                    keel_core::promotion::check_gate_text(
                        name,
                        version,
                        gates.as_deref(),
                        promotion.force,
                        &actor.reason,
                    )?;
                }
                let mut upsert = Sql::new(
                    "INSERT INTO registered_model_aliases (name, alias, version) VALUES (",
                );
                upsert
                    .bind(name)
                    .push(", ")
                    .bind(alias)
                    .push(", ")
                    .bind(version)
                    .push(") ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version");
                upsert
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("setting alias"))?;
            }
            None => {
                if from_version.is_none() {
                    return Err(Error::not_found(format!(
                        "Registered model alias {alias} not found for model {name}."
                    )));
                }
                let mut delete = Sql::new("DELETE FROM registered_model_aliases WHERE name = ");
                delete.bind(name).push(" AND alias = ").bind(alias);
                delete
                    .query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("deleting alias"))?;
            }
        }
        let audit = Audit {
            name,
            action,
            target: alias,
            from_version,
            to_version: version,
        };
        Self::append_audit(&mut tx, audit, actor, registry_version).await?;
        let mut touch = Sql::new("UPDATE registered_models SET last_updated_timestamp = ");
        touch.bind(now_millis()).push(" WHERE name = ").bind(name);
        touch
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("touching registered model"))?;
        tx.commit().await.map_err(db("committing alias move"))?;
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit WHERE registry_version = ",
        );
        sql.bind(registry_version).push(" ORDER BY id DESC LIMIT 1");
        let row = sql
            .query(self.dialect)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading audit entry"))?;
        audit_from_row(&row)
    }

    /// Resolves `NAME@ALIAS` to its version.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, Error> {
        let mut sql = Sql::new("SELECT version FROM registered_model_aliases WHERE name = ");
        sql.bind(name).push(" AND alias = ").bind(alias);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading alias"))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Registered model alias {alias} not found for model {name}."
                ))
            })?;
        self.get_model_version(name, get(&row, "version")?).await
    }

    /// Moves `alias` back to its previous holder, taken from the audit log (like `cd -`:
    /// rolling back twice returns to where it started).
    pub async fn rollback_alias(
        &self,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<AuditEntry, Error> {
        let current = self.get_model_version_by_alias(name, alias).await?.version;
        let history = self.registry_audit(Some(name), 10_000).await?;
        let previous = history
            .iter()
            .filter(|e| e.target == alias && e.to_version == Some(current))
            .map(|e| e.from_version)
            .next()
            .flatten()
            .ok_or_else(|| {
                Error::invalid_state(format!(
                    "Alias '{alias}' of model '{name}' has no previous holder to roll back to"
                ))
            })?;
        self.get_model_version(name, previous).await.map_err(|_| {
            Error::invalid_state(format!(
                "The previous holder of '{alias}' (version {previous}) no longer exists; promote a version explicitly"
            ))
        })?;
        self.move_alias(name, alias, Some(previous), "rollback", actor, None)
            .await
    }

    /// Audit entries, newest first (all models when `name` is `None`).
    pub async fn registry_audit(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit",
        );
        if let Some(name) = name {
            sql.push(" WHERE name = ").bind(name);
        }
        sql.push(" ORDER BY id DESC LIMIT ").bind(limit.max(1));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit log"))?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Audit entries produced after registry version `since`, oldest first.
    pub async fn registry_changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, Error> {
        let mut sql = Sql::new(
            "SELECT id, name, action, target, from_version, to_version, user_id, reason, cause, timestamp, \
             registry_version FROM registry_audit WHERE registry_version > ",
        );
        sql.bind(since)
            .push(" ORDER BY id ASC LIMIT ")
            .bind(limit.max(1));
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading registry changes"))?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Resolves a registered model URI (keel-core's [`ModelUri`]:
    /// `models:/NAME/VERSION`, `@ALIAS`, `/latest`, `/STAGE`) to a version.
    pub async fn resolve_model_uri(&self, uri: &str) -> Result<ModelVersion, Error> {
        let (name, stage) = match ModelUri::parse(uri)? {
            ModelUri::Version { name, version } => {
                return self.get_model_version(&name, version).await;
            }
            ModelUri::Alias { name, alias } => {
                return self.get_model_version_by_alias(&name, &alias).await;
            }
            ModelUri::LoggedModel { model_id } => {
                return Err(Error::invalid_parameter(format!(
                    "Model URI '{uri}' names logged model {model_id}, not a registered model version"
                )));
            }
            ModelUri::Latest { name } => (name, None),
            ModelUri::Stage { name, stage } => (name, Some(stage)),
        };
        let model = self.get_registered_model(&name).await?;
        let newest = model
            .latest_versions
            .into_iter()
            .filter(|v| stage.is_none_or(|s| v.current_stage == s))
            .max_by_key(|v| v.version)
            .ok_or_else(|| Error::not_found(format!("Model URI '{uri}' matches no version")))?;
        self.get_model_version(&name, newest.version).await
    }

    /// The artifact URI holding a version's files: a logged model's
    /// artifact location (`models:/m-…` source or `model_id`), a run's
    /// artifact path (`runs:/RUN/PATH` source), or the source as given.
    pub async fn version_artifact_uri(&self, version: &ModelVersion) -> Result<String, Error> {
        let logged = match (&version.model_id, ModelUri::parse(&version.source)) {
            (Some(model_id), _) => Some(model_id.clone()),
            (None, Ok(ModelUri::LoggedModel { model_id })) => Some(model_id),
            _ => None,
        };
        if let Some(model_id) = logged {
            return Ok(self.get_logged_model(&model_id).await?.artifact_location);
        }
        if let Some(run_uri) = RunUri::parse(&version.source) {
            let run_uri = run_uri?;
            let run = self.get_run_info(&run_uri.run_id).await?;
            return Ok(run_uri.under(&run.artifact_uri));
        }
        Ok(version.source.clone())
    }
}

/// What a version derived from a run records about where it came from: the
/// run, its git commit and source, and the exact datasets (name + digest) it
/// was trained and evaluated on.
fn lineage_of(run: &keel_core::Run) -> serde_json::Value {
    let tag = |key: &str| {
        run.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    serde_json::json!({
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "git_commit": run.git_commit(),
        "source": tag("mlflow.source.name"),
        "pipeline_run": tag("keel.pipeline.run"),
        "datasets": run
            .dataset_inputs
            .iter()
            .map(|input| serde_json::json!({
                "name": input.dataset.name,
                "digest": input.dataset.digest,
                "source": input.dataset.source,
                "context": input.tags.iter().find(|t| t.key == "mlflow.data.context").map(|t| t.value.clone()),
            }))
            .collect::<Vec<_>>(),
    })
}

fn model_from_row(row: &AnyRow) -> Result<RegisteredModel, Error> {
    Ok(RegisteredModel {
        name: get(row, "name")?,
        creation_timestamp: get(row, "creation_timestamp")?,
        last_updated_timestamp: get(row, "last_updated_timestamp")?,
        description: get(row, "description")?,
        tags: Vec::new(),
        aliases: Vec::new(),
        latest_versions: Vec::new(),
    })
}
