//! Experiments: create, read, search, rename, soft delete and restore, tags.

use keel_core::validation::{self, KeyKind, MAX_EXPERIMENT_TAG_VAL_LENGTH};
use keel_core::{Error, Experiment, LifecycleStage, Page, Tag, ViewType, now_millis, page_token};
use sqlx::any::AnyRow;

use crate::Store;
use crate::pairs::EXPERIMENT_TAGS;
use crate::search::{self, ColumnType, KeyValueTable, SearchSpec};
use crate::sql::{Sql, db, get};

const COLUMNS: &str = "e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time";

pub(crate) const DEFAULT_EXPERIMENT_ID: &str = "0";

fn experiment_attribute(key: &str) -> Option<(&'static str, ColumnType)> {
    Some(match key {
        "name" => ("e.name", ColumnType::Text),
        "experiment_id" => ("e.experiment_id", ColumnType::Number),
        "creation_time" | "created" => ("e.creation_time", ColumnType::Number),
        "last_update_time" => ("e.last_update_time", ColumnType::Number),
        "lifecycle_stage" => ("e.lifecycle_stage", ColumnType::Text),
        "artifact_location" => ("e.artifact_location", ColumnType::Text),
        _ => return None,
    })
}

const EXPERIMENT_SEARCH: SearchSpec = SearchSpec {
    entity: "experiment",
    id_column: "e.experiment_id",
    attribute: experiment_attribute,
    tags: Some(KeyValueTable {
        table: "experiment_tags",
        join: "kv.experiment_id = e.experiment_id",
        value_type: ColumnType::Text,
        extra: "",
    }),
    params: None,
    metrics: None,
    datasets: false,
    ne_includes_missing: false,
};

/// Parses an experiment id; anything that is not an integer names no experiment.
pub(crate) fn parse_experiment_id(id: &str) -> Result<i64, Error> {
    id.trim()
        .parse::<i64>()
        .map_err(|_| Error::not_found(format!("No Experiment with id={id} exists")))
}

fn experiment_from_row(row: &AnyRow) -> Result<Experiment, Error> {
    let stage: String = get(row, "lifecycle_stage")?;
    Ok(Experiment {
        experiment_id: get::<i64>(row, "experiment_id")?.to_string(),
        name: get(row, "name")?,
        artifact_location: get(row, "artifact_location")?,
        lifecycle_stage: LifecycleStage::parse(&stage).unwrap_or(LifecycleStage::Active),
        creation_time: get(row, "creation_time")?,
        last_update_time: get(row, "last_update_time")?,
        tags: Vec::new(),
    })
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

impl Store {
    pub(crate) async fn ensure_default_experiment(&self) -> Result<(), Error> {
        let now = now_millis();
        let mut sql = Sql::new(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, \
             last_update_time) VALUES (0, 'Default', ",
        );
        sql.bind(format!("{}/0", self.default_artifact_root))
            .push(", 'active', ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(") ON CONFLICT DO NOTHING");
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("creating the Default experiment"))?;
        Ok(())
    }

    /// Creates an experiment and returns its id. Names are unique, deleted experiments included.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> Result<String, Error> {
        validation::validate_experiment_name(name)?;
        for tag in tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length(
                "experiment tag value",
                &tag.value,
                MAX_EXPERIMENT_TAG_VAL_LENGTH,
            )?;
        }
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut insert = Sql::new(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (",
        );
        insert
            .bind(name)
            .push(", '', 'active', ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(") RETURNING experiment_id");
        let row = match insert.query(self.dialect).fetch_one(&mut *tx).await {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::already_exists(format!(
                    "Experiment(name={name}) already exists."
                )));
            }
            Err(e) => return Err(db("creating experiment")(e)),
        };
        let id: i64 = get(&row, "experiment_id")?;
        let location = match artifact_location {
            Some(location) if !location.trim().is_empty() => location.to_string(),
            _ => format!("{}/{id}", self.default_artifact_root),
        };
        let mut update = Sql::new("UPDATE experiments SET artifact_location = ");
        update
            .bind(location)
            .push(" WHERE experiment_id = ")
            .bind(id);
        update
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("setting artifact location"))?;
        for tag in tags {
            EXPERIMENT_TAGS
                .upsert(
                    &mut *tx,
                    &[id.into()],
                    [(tag.key.as_str(), tag.value.as_str())],
                )
                .await?;
        }
        tx.commit().await.map_err(db("committing experiment"))?;
        Ok(id.to_string())
    }

    /// Reads an experiment with its tags.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, Error> {
        let id = parse_experiment_id(experiment_id)?;
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.experiment_id = "
        ));
        sql.bind(id);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading experiment"))?
            .ok_or_else(|| {
                Error::not_found(format!("No Experiment with id={experiment_id} exists"))
            })?;
        let mut experiment = experiment_from_row(&row)?;
        self.fill_experiment_tags(std::slice::from_mut(&mut experiment))
            .await?;
        Ok(experiment)
    }

    /// Reads an experiment by its unique name.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, Error> {
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.name = "
        ));
        sql.bind(name);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading experiment"))?
            .ok_or_else(|| {
                Error::not_found(format!("Could not find experiment with name '{name}'"))
            })?;
        let mut experiment = experiment_from_row(&row)?;
        self.fill_experiment_tags(std::slice::from_mut(&mut experiment))
            .await?;
        Ok(experiment)
    }

    async fn fill_experiment_tags(&self, experiments: &mut [Experiment]) -> Result<(), Error> {
        if experiments.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = experiments
            .iter()
            .filter_map(|e| e.experiment_id.parse().ok())
            .collect();
        let mut sql = Sql::new(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ",
        );
        sql.bind_list(ids).push(" ORDER BY key");
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading experiment tags"))?;
        for row in rows {
            let id = get::<i64>(&row, "experiment_id")?.to_string();
            if let Some(experiment) = experiments.iter_mut().find(|e| e.experiment_id == id) {
                experiment.tags.push(Tag::new(
                    get::<String>(&row, "key")?,
                    get::<String>(&row, "value")?,
                ));
            }
        }
        Ok(())
    }

    /// Searches experiments with MLflow's filter grammar (`name LIKE ...`, `tags.x = ...`).
    pub async fn search_experiments(
        &self,
        view_type: ViewType,
        max_results: i64,
        filter_string: Option<&str>,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<Experiment>, Error> {
        if !(1..=50_000).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results': must be between 1 and 50000"
            )));
        }
        let offset = page_token::decode(page_token)?;
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM experiments e WHERE e.lifecycle_stage IN "
        ));
        sql.bind_list(view_type.stages().iter().map(|s| s.as_str()));
        search::push_search(
            &EXPERIMENT_SEARCH,
            self.dialect,
            filter_string,
            order_by,
            "e.creation_time DESC, e.experiment_id ASC",
            max_results,
            offset,
            &mut sql,
        )?;
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching experiments"))?;
        let mut items = rows
            .iter()
            .map(experiment_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_experiment_tags(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Renames an experiment.
    pub async fn rename_experiment(
        &self,
        experiment_id: &str,
        new_name: &str,
    ) -> Result<(), Error> {
        validation::validate_experiment_name(new_name)?;
        let experiment = self.get_experiment(experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_parameter(format!(
                "Cannot rename a non-active experiment (id={experiment_id})"
            )));
        }
        let mut sql = Sql::new("UPDATE experiments SET name = ");
        sql.bind(new_name)
            .push(", last_update_time = ")
            .bind(now_millis())
            .push(" WHERE experiment_id = ")
            .bind(parse_experiment_id(experiment_id)?);
        match sql.query(self.dialect).execute(&self.writer).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))),
            Err(e) => Err(db("renaming experiment")(e)),
        }
    }

    /// Soft-deletes an experiment and its runs (restorable).
    pub async fn delete_experiment(&self, experiment_id: &str) -> Result<(), Error> {
        if experiment_id == DEFAULT_EXPERIMENT_ID {
            return Err(Error::invalid_parameter(
                "Cannot delete the default experiment '0'.",
            ));
        }
        self.set_experiment_stage(experiment_id, LifecycleStage::Deleted)
            .await
    }

    /// Restores a soft-deleted experiment and its runs.
    pub async fn restore_experiment(&self, experiment_id: &str) -> Result<(), Error> {
        self.set_experiment_stage(experiment_id, LifecycleStage::Active)
            .await
    }

    async fn set_experiment_stage(
        &self,
        experiment_id: &str,
        stage: LifecycleStage,
    ) -> Result<(), Error> {
        let id = parse_experiment_id(experiment_id)?;
        self.get_experiment(experiment_id).await?;
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut sql = Sql::new("UPDATE experiments SET lifecycle_stage = ");
        sql.bind(stage.as_str())
            .push(", last_update_time = ")
            .bind(now)
            .push(" WHERE experiment_id = ")
            .bind(id);
        sql.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("updating experiment"))?;
        let mut runs = Sql::new("UPDATE runs SET lifecycle_stage = ");
        runs.bind(stage.as_str()).push(", deleted_time = ");
        match stage {
            LifecycleStage::Deleted => runs.bind(Some(now)),
            LifecycleStage::Active => runs.bind(None::<i64>),
        };
        runs.push(" WHERE experiment_id = ").bind(id);
        runs.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("updating runs"))?;
        tx.commit().await.map_err(db("committing"))?;
        Ok(())
    }

    /// Sets (or overwrites) an experiment tag.
    pub async fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        validation::validate_key(KeyKind::Tag, key)?;
        validation::validate_length("experiment tag value", value, MAX_EXPERIMENT_TAG_VAL_LENGTH)?;
        let experiment = self.get_experiment(experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_parameter(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
            )));
        }
        let id = parse_experiment_id(experiment_id)?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        EXPERIMENT_TAGS
            .upsert(&mut *tx, &[id.into()], [(key, value)])
            .await?;
        tx.commit().await.map_err(db("committing"))?;
        Ok(())
    }

    /// Deletes an experiment tag; a missing tag is an error, as in MLflow.
    pub async fn delete_experiment_tag(&self, experiment_id: &str, key: &str) -> Result<(), Error> {
        let id = parse_experiment_id(experiment_id)?;
        self.get_experiment(experiment_id).await?;
        EXPERIMENT_TAGS
            .delete(
                &mut *self
                    .writer
                    .acquire()
                    .await
                    .map_err(db("acquiring the writer"))?,
                &[id.into()],
                key,
                format!("No tag with name: {key} in experiment {experiment_id}"),
            )
            .await
    }
}
