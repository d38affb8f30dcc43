//! MLflow 3 logged models: a model-centric entity with its own id, params,
//! metrics, tags and artifact location, linked to the run that produced it.

use keel_core::validation::{self, KeyKind, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH};
use keel_core::{
    Error, LifecycleStage, LoggedModel, LoggedModelStatus, Metric, Page, Param, Tag, ids,
    now_millis, page_token,
};
use sqlx::any::AnyRow;

use crate::Store;
use crate::experiments::parse_experiment_id;
use crate::filter::{EntityKind, Identifier, OrderBy};
use crate::pairs::{LOGGED_MODEL_PARAMS, LOGGED_MODEL_TAGS};
use crate::runs::{loaded_value, stored_value};
use crate::search::{self, ColumnType, KeyValueTable, SearchSpec};
use crate::sql::{Sql, db, get};

const COLUMNS: &str = "m.model_id, m.experiment_id, m.name, m.artifact_location, m.creation_timestamp_ms, \
                       m.last_updated_timestamp_ms, m.status, m.status_message, m.model_type, m.source_run_id, \
                       m.lifecycle_stage";

fn model_attribute(key: &str) -> Option<(&'static str, ColumnType)> {
    Some(match key {
        "model_id" => ("m.model_id", ColumnType::Text),
        "name" => ("m.name", ColumnType::Text),
        "status" => ("m.status", ColumnType::Text),
        "model_type" => ("m.model_type", ColumnType::Text),
        "source_run_id" => ("m.source_run_id", ColumnType::Text),
        "creation_time" | "creation_timestamp" | "creation_timestamp_ms" => {
            ("m.creation_timestamp_ms", ColumnType::Number)
        }
        "last_updated_timestamp" | "last_updated_timestamp_ms" => {
            ("m.last_updated_timestamp_ms", ColumnType::Number)
        }
        _ => return None,
    })
}

const MODEL_SEARCH: SearchSpec = SearchSpec {
    entity: "logged model",
    id_column: "m.model_id",
    attribute: model_attribute,
    tags: Some(KeyValueTable {
        table: "logged_model_tags",
        join: "kv.model_id = m.model_id",
        value_type: ColumnType::Text,
        extra: "",
    }),
    params: Some(KeyValueTable {
        table: "logged_model_params",
        join: "kv.model_id = m.model_id",
        value_type: ColumnType::Text,
        extra: "",
    }),
    metrics: Some(KeyValueTable {
        table: "logged_model_metrics",
        join: "kv.model_id = m.model_id",
        value_type: ColumnType::Number,
        extra: "is_nan = 0",
    }),
    datasets: false,
    ne_includes_missing: false,
};

/// A sort key for logged-model search, as MLflow's `order_by` objects give it.
#[derive(Debug, Clone)]
pub struct ModelOrder {
    pub field_name: String,
    pub ascending: bool,
}

fn model_from_row(row: &AnyRow) -> Result<LoggedModel, Error> {
    let status: String = get(row, "status")?;
    let stage: String = get(row, "lifecycle_stage")?;
    Ok(LoggedModel {
        model_id: get(row, "model_id")?,
        experiment_id: get::<i64>(row, "experiment_id")?.to_string(),
        name: get(row, "name")?,
        artifact_location: get(row, "artifact_location")?,
        creation_timestamp_ms: get(row, "creation_timestamp_ms")?,
        last_updated_timestamp_ms: get(row, "last_updated_timestamp_ms")?,
        status: LoggedModelStatus::parse(&status).unwrap_or(LoggedModelStatus::Pending),
        status_message: get(row, "status_message")?,
        model_type: get(row, "model_type")?,
        source_run_id: get(row, "source_run_id")?,
        lifecycle_stage: LifecycleStage::parse(&stage).unwrap_or(LifecycleStage::Active),
        tags: Vec::new(),
        params: Vec::new(),
        metrics: Vec::new(),
    })
}

impl Store {
    /// Creates a logged model in PENDING state under an active experiment.
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: Option<&str>,
        source_run_id: Option<&str>,
        model_type: Option<&str>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<LoggedModel, Error> {
        let experiment = self.get_experiment(experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_parameter(format!(
                "The experiment {experiment_id} must be in the 'active' state."
            )));
        }
        if let Some(run_id) = source_run_id {
            self.get_run_info(run_id).await?;
        }
        for param in &params {
            validation::validate_key(KeyKind::Param, &param.key)?;
            validation::validate_length("param value", &param.value, MAX_PARAM_VAL_LENGTH)?;
        }
        for tag in &tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_TAG_VAL_LENGTH)?;
        }
        let model_id = ids::new_model_id();
        let name = name
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| "model".to_string());
        let location = format!(
            "{}/models/{model_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = now_millis();
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut insert = Sql::new(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms, \
             last_updated_timestamp_ms, status, model_type, source_run_id, lifecycle_stage) VALUES (",
        );
        insert
            .bind(model_id.as_str())
            .push(", ")
            .bind(parse_experiment_id(experiment_id)?)
            .push(", ")
            .bind(name)
            .push(", ")
            .bind(location)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(LoggedModelStatus::Pending.as_str())
            .push(", ")
            .bind(model_type)
            .push(", ")
            .bind(source_run_id)
            .push(", 'active')");
        insert
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating logged model"))?;
        let owner = [model_id.as_str().into()];
        LOGGED_MODEL_PARAMS
            .upsert(
                &mut *tx,
                &owner,
                params.iter().map(|p| (p.key.as_str(), p.value.as_str())),
            )
            .await?;
        LOGGED_MODEL_TAGS
            .upsert(
                &mut *tx,
                &owner,
                tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
            )
            .await?;
        tx.commit().await.map_err(db("committing logged model"))?;
        self.get_logged_model(&model_id).await
    }

    /// Reads a logged model with its tags, params and metrics.
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, Error> {
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM logged_models m WHERE m.model_id = "
        ));
        sql.bind(model_id);
        let row = sql
            .query(self.dialect)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading logged model"))?
            .ok_or_else(|| {
                Error::not_found(format!("Logged model with ID '{model_id}' not found."))
            })?;
        let mut models = vec![model_from_row(&row)?];
        self.fill_models(&mut models).await?;
        models
            .pop()
            .ok_or_else(|| Error::internal("logged model vanished while loading"))
    }

    /// Sets a logged model's status (e.g. READY after its artifacts are uploaded).
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel, Error> {
        self.get_logged_model(model_id).await?;
        let mut sql = Sql::new("UPDATE logged_models SET status = ");
        sql.bind(status.as_str())
            .push(", last_updated_timestamp_ms = ")
            .bind(now_millis())
            .push(" WHERE model_id = ")
            .bind(model_id);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating logged model"))?;
        self.get_logged_model(model_id).await
    }

    /// Sets (or overwrites) tags on a logged model.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: Vec<Tag>) -> Result<(), Error> {
        for tag in &tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_TAG_VAL_LENGTH)?;
        }
        self.get_logged_model(model_id).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        LOGGED_MODEL_TAGS
            .upsert(
                &mut *tx,
                &[model_id.into()],
                tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
            )
            .await?;
        tx.commit().await.map_err(db("committing tags"))?;
        Ok(())
    }

    /// Deletes one tag of a logged model.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<(), Error> {
        self.get_logged_model(model_id).await?;
        LOGGED_MODEL_TAGS
            .delete(
                &mut *self
                    .writer
                    .acquire()
                    .await
                    .map_err(db("acquiring the writer"))?,
                &[model_id.into()],
                key,
                format!("No tag with key '{key}' on logged model '{model_id}'"),
            )
            .await
    }

    /// Logs params on a logged model (immutable like run params).
    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: Vec<Param>,
    ) -> Result<(), Error> {
        for param in &params {
            validation::validate_key(KeyKind::Param, &param.key)?;
            validation::validate_length("param value", &param.value, MAX_PARAM_VAL_LENGTH)?;
        }
        let model = self.get_logged_model(model_id).await?;
        for param in &params {
            if let Some(old) = model.params.iter().find(|p| p.key == param.key)
                && old.value != param.value
            {
                return Err(Error::invalid_parameter(format!(
                    "Changing param values is not allowed. Param with key='{}' was already logged with value='{}' \
                     for model '{model_id}'.",
                    param.key, old.value
                )));
            }
        }
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        LOGGED_MODEL_PARAMS
            .upsert(
                &mut *tx,
                &[model_id.into()],
                params.iter().map(|p| (p.key.as_str(), p.value.as_str())),
            )
            .await?;
        tx.commit().await.map_err(db("committing params"))?;
        Ok(())
    }

    /// Soft-deletes a logged model.
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<(), Error> {
        self.get_logged_model(model_id).await?;
        let mut sql = Sql::new(
            "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = ",
        );
        sql.bind(now_millis())
            .push(" WHERE model_id = ")
            .bind(model_id);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("deleting logged model"))?;
        Ok(())
    }

    /// Searches active logged models of the given experiments.
    pub async fn search_logged_models(
        &self,
        experiment_ids: &[String],
        filter_string: Option<&str>,
        max_results: i64,
        order_by: &[ModelOrder],
        page_token: Option<&str>,
    ) -> Result<Page<LoggedModel>, Error> {
        if !(1..=validation::SEARCH_MAX_RESULTS_THRESHOLD).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for 'max_results'"
            )));
        }
        let offset = page_token::decode(page_token)?;
        validation::check_search_experiment_ids(experiment_ids.len())?;
        validation::check_order_by_count(order_by.len())?;
        let ids: Vec<i64> = experiment_ids
            .iter()
            .filter_map(|id| id.trim().parse().ok())
            .collect();
        if ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM logged_models m WHERE m.lifecycle_stage = 'active' AND m.experiment_id IN "
        ));
        sql.bind_list(ids);
        search::push_filter_string(&MODEL_SEARCH, self.dialect, filter_string, &mut sql)?;
        sql.push(" ORDER BY ");
        for order in order_by {
            let ident = match order.field_name.split_once('.') {
                Some(("metrics", key)) => Identifier {
                    kind: EntityKind::Metric,
                    key: key.to_string(),
                },
                Some(("params", key)) => Identifier {
                    kind: EntityKind::Param,
                    key: key.to_string(),
                },
                Some(("tags", key)) => Identifier {
                    kind: EntityKind::Tag,
                    key: key.to_string(),
                },
                Some(("attributes", key)) => Identifier {
                    kind: EntityKind::Attribute,
                    key: key.to_string(),
                },
                _ => Identifier {
                    kind: EntityKind::Attribute,
                    key: order.field_name.clone(),
                },
            };
            search::push_order_by(
                &MODEL_SEARCH,
                &OrderBy {
                    ident,
                    ascending: order.ascending,
                },
                &mut sql,
            )?;
            sql.push(", ");
        }
        sql.push("m.creation_timestamp_ms DESC, m.model_id ASC LIMIT ")
            .bind(max_results + 1)
            .push(" OFFSET ")
            .bind(offset as i64);
        let rows = sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("searching logged models"))?;
        let mut items = rows
            .iter()
            .map(model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, max_results, offset);
        self.fill_models(&mut items).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn fill_models(&self, models: &mut [LoggedModel]) -> Result<(), Error> {
        if models.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = models.iter().map(|m| m.model_id.clone()).collect();
        let position = |id: &str| models.iter().position(|m| m.model_id == id);
        let mut found: Vec<(usize, u8, AnyRow)> = Vec::new();
        for (kind, table) in [(0u8, "logged_model_tags"), (1, "logged_model_params")] {
            let mut sql = Sql::new(&format!(
                "SELECT model_id, key, value FROM {table} WHERE model_id IN "
            ));
            sql.bind_list(ids.iter().map(String::as_str))
                .push(" ORDER BY key");
            for row in sql
                .query(self.dialect)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading logged model data"))?
            {
                if let Some(i) = position(&get::<String>(&row, "model_id")?) {
                    found.push((i, kind, row));
                }
            }
        }
        let mut sql = Sql::new(
            "SELECT model_id, key, value, timestamp, step, is_nan, run_id, dataset_name, dataset_digest FROM \
             logged_model_metrics WHERE model_id IN ",
        );
        sql.bind_list(ids.iter().map(String::as_str))
            .push(" ORDER BY key, timestamp, step");
        for row in sql
            .query(self.dialect)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading logged model metrics"))?
        {
            if let Some(i) = position(&get::<String>(&row, "model_id")?) {
                found.push((i, 2, row));
            }
        }
        for (i, kind, row) in found {
            match kind {
                0 => models[i].tags.push(Tag::new(
                    get::<String>(&row, "key")?,
                    get::<String>(&row, "value")?,
                )),
                1 => models[i].params.push(Param {
                    key: get(&row, "key")?,
                    value: get(&row, "value")?,
                }),
                _ => {
                    let mut metric = Metric::new(
                        get::<String>(&row, "key")?,
                        loaded_value(get(&row, "value")?, get(&row, "is_nan")?),
                        get(&row, "timestamp")?,
                        get(&row, "step")?,
                    );
                    metric.model_id = Some(models[i].model_id.clone());
                    metric.run_id = Some(get(&row, "run_id")?);
                    let name: String = get(&row, "dataset_name")?;
                    let digest: String = get(&row, "dataset_digest")?;
                    metric.dataset_name = (!name.is_empty()).then_some(name);
                    metric.dataset_digest = (!digest.is_empty()).then_some(digest);
                    models[i].metrics.push(metric);
                }
            }
        }
        Ok(())
    }
}

/// Records metrics logged with a `model_id` against that logged model too.
pub(crate) async fn insert_model_metrics<E: crate::exec::Exec>(
    tx: &mut E,
    run_id: &str,
    _experiment_id: &str,
    metrics: &[&Metric],
) -> Result<(), Error> {
    let mut model_ids: Vec<&str> = metrics
        .iter()
        .filter_map(|m| m.model_id.as_deref())
        .collect();
    model_ids.sort_unstable();
    model_ids.dedup();
    let mut check = Sql::new("SELECT model_id FROM logged_models WHERE model_id IN ");
    check.bind_list(model_ids.iter().copied());
    let mut found = Vec::new();
    for mut row in tx.fetch_all(&check, "checking logged models").await? {
        found.push(row.get::<String>("model_id")?);
    }
    for id in &model_ids {
        let mut exists = false;
        for model_id in &found {
            if model_id == id {
                exists = true;
            }
        }
        if !exists {
            return Err(Error::not_found(format!(
                "Logged model with ID '{id}' not found."
            )));
        }
    }
    let mut sql = Sql::new(
        "INSERT INTO logged_model_metrics (model_id, key, value, timestamp, step, is_nan, run_id, dataset_name, \
         dataset_digest) VALUES ",
    );
    for (i, metric) in metrics.iter().enumerate() {
        let (value, is_nan) = stored_value(metric.value);
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .bind(metric.model_id.clone().unwrap_or_default())
            .push(", ")
            .bind(metric.key.as_str())
            .push(", ")
            .bind(value)
            .push(", ")
            .bind(metric.timestamp)
            .push(", ")
            .bind(metric.step)
            .push(", ")
            .bind(is_nan)
            .push(", ")
            .bind(run_id)
            .push(", ")
            .bind(metric.dataset_name.clone().unwrap_or_default())
            .push(", ")
            .bind(metric.dataset_digest.clone().unwrap_or_default())
            .push(")");
    }
    sql.push(" ON CONFLICT DO NOTHING");
    tx.execute(&sql, "logging model metrics").await?;
    Ok(())
}
