//! Runs: lifecycle, logging (params, metrics, tags, inputs, outputs), metric
//! history and search. `log_batch` is the one write path for params, metrics
//! and tags, and it is atomic: a batch with one bad entry writes nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use keel_core::validation::{
    self, KeyKind, MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH,
};
use keel_core::{
    Dataset, DatasetInput, Error, LifecycleStage, Metric, ModelInput, ModelOutput, Page, Param,
    Run, RunData, RunInfo, RunStatus, Tag, ViewType, ids, now_millis, page_token,
};

use crate::Store;
use crate::exec::{Batch, Exec, Row, RowRef};
use crate::experiments::parse_experiment_id;
use crate::native::ForeignKeys;
use crate::pairs::RUN_TAGS;
use crate::run_data;
use crate::search::{self, ColumnType, KeyValueTable, SearchSpec};
use crate::sql::{Dialect, Sql, db, get};

/// What `create_run` needs; everything else is derived.
#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    pub experiment_id: String,
    pub user_id: String,
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<Tag>,
}

/// Fields `update_run` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateRun {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

const RUN_COLUMNS: &str = "r.run_uuid, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.lifecycle_stage";

/// What [`read_runs`] reads after [`RUN_COLUMNS`]: the run's stored data
/// ([`crate::run_data`]), then 1 when an input or an output names the run,
/// else 0 (a page where no run has one skips the inputs/outputs query).
const PAGE_RUN_COLUMNS: &str = "r.run_data, CAST(CASE WHEN EXISTS (SELECT 1 FROM inputs i \
     WHERE i.destination_type = 'RUN' AND i.destination_id = r.run_uuid) OR EXISTS (SELECT 1 \
     FROM run_outputs o WHERE o.run_uuid = r.run_uuid) THEN 1 ELSE 0 END AS BIGINT)";

const RUN_NAME_TAG: &str = "mlflow.runName";

/// Runs per query when loading a page's side data (the ids bound in one `VALUES` list).
const PAGE_CHUNK: usize = 500;

fn run_attribute(key: &str) -> Option<(&'static str, ColumnType)> {
    Some(match key {
        "run_id" | "run_uuid" => ("r.run_uuid", ColumnType::Text),
        "run_name" | "name" => ("r.name", ColumnType::Text),
        "status" => ("r.status", ColumnType::Text),
        "user_id" => ("r.user_id", ColumnType::Text),
        "artifact_uri" => ("r.artifact_uri", ColumnType::Text),
        "lifecycle_stage" => ("r.lifecycle_stage", ColumnType::Text),
        "start_time" | "created" | "Created" => ("r.start_time", ColumnType::Number),
        "end_time" => ("r.end_time", ColumnType::Number),
        "experiment_id" => ("r.experiment_id", ColumnType::Number),
        _ => return None,
    })
}

const RUN_SEARCH: SearchSpec = SearchSpec {
    entity: "run",
    id_column: "r.run_uuid",
    attribute: run_attribute,
    tags: Some(KeyValueTable {
        table: "tags",
        join: "kv.run_uuid = r.run_uuid",
        value_type: ColumnType::Text,
        extra: "",
    }),
    params: Some(KeyValueTable {
        table: "params",
        join: "kv.run_uuid = r.run_uuid",
        value_type: ColumnType::Text,
        extra: "",
    }),
    metrics: Some(KeyValueTable {
        table: "latest_metrics",
        join: "kv.run_uuid = r.run_uuid",
        value_type: ColumnType::Number,
        extra: "is_nan = 0",
    }),
    datasets: true,
    ne_includes_missing: false,
};

/// Metric values as stored: NaN becomes (0, is_nan = 1); ±inf is clamped to ±f64::MAX, as MLflow does.
pub(crate) fn stored_value(value: f64) -> (f64, i64) {
    if value.is_nan() {
        (0.0, 1)
    } else if value.is_infinite() {
        (if value > 0.0 { f64::MAX } else { f64::MIN }, 0)
    } else {
        (value, 0)
    }
}

pub(crate) fn loaded_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { value }
}

/// A run's info from a row of `SELECT {RUN_COLUMNS}`, read by position.
fn run_info_at(row: &dyn RowRef) -> Result<RunInfo, Error> {
    Ok(RunInfo {
        run_id: row.text(0)?.into_owned(),
        experiment_id: row.int(1)?.to_string(),
        run_name: row.text(2)?.into_owned(),
        user_id: row.text(3)?.into_owned(),
        status: RunStatus::parse(&row.text(4)?).unwrap_or(RunStatus::Running),
        start_time: row.int(5)?,
        end_time: row.opt_int(6)?,
        artifact_uri: row.text(7)?.into_owned(),
        lifecycle_stage: LifecycleStage::parse(&row.text(8)?).unwrap_or(LifecycleStage::Active),
    })
}

fn generated_run_name() -> String {
    const ADJECTIVES: &[&str] = &[
        "bold", "calm", "brave", "bright", "clever", "eager", "gentle", "keen", "lucky", "merry",
        "nimble", "quiet", "rapid", "steady", "swift", "wise",
    ];
    const NOUNS: &[&str] = &[
        "otter", "heron", "lynx", "falcon", "badger", "crane", "finch", "hare", "ibis", "koala",
        "marten", "owl", "panda", "seal", "wren", "yak",
    ];
    let id = ids::new_uuid();
    let byte = |i: usize| usize::from_str_radix(&id[i..i + 2], 16).unwrap_or(0);
    format!(
        "{}-{}-{}",
        ADJECTIVES[byte(0) % ADJECTIVES.len()],
        NOUNS[byte(2) % NOUNS.len()],
        byte(4) % 1000
    )
}

impl Store {
    /// Creates a run in an active experiment.
    pub async fn create_run(&self, request: CreateRun) -> Result<Run, Error> {
        let experiment = self.get_experiment(&request.experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_parameter(format!(
                "The experiment {} must be in the 'active' state. Current state is deleted.",
                request.experiment_id
            )));
        }
        for tag in &request.tags {
            validation::validate_key(KeyKind::Tag, &tag.key)?;
            validation::validate_length("tag value", &tag.value, MAX_TAG_VAL_LENGTH)?;
        }
        let tag_name = request
            .tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let run_name = match (request.run_name.filter(|n| !n.is_empty()), tag_name) {
            (Some(name), Some(tag)) if name != tag => {
                return Err(Error::invalid_parameter(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values \
                     (run_name='{name}', mlflow.runName='{tag}')."
                )));
            }
            (Some(name), _) | (None, Some(name)) => name,
            (None, None) => generated_run_name(),
        };
        let run_id = ids::new_run_id();
        let artifact_uri = format!(
            "{}/{run_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let start_time = request.start_time.unwrap_or_else(now_millis);

        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        let mut insert = Sql::new(
            "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, \
             lifecycle_stage) VALUES (",
        );
        insert
            .bind(run_id.as_str())
            .push(", ")
            .bind(parse_experiment_id(&request.experiment_id)?)
            .push(", ")
            .bind(run_name.as_str())
            .push(", ")
            .bind(request.user_id.as_str())
            .push(", 'RUNNING', ")
            .bind(start_time)
            .push(", NULL, ")
            .bind(artifact_uri)
            .push(", 'active')");
        insert
            .query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("creating run"))?;
        let mut tags: BTreeMap<String, String> =
            request.tags.into_iter().map(|t| (t.key, t.value)).collect();
        tags.insert(RUN_NAME_TAG.to_string(), run_name);
        RUN_TAGS
            .upsert(
                &mut *tx,
                &[run_id.as_str().into()],
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .await?;
        let info = read_run_info(&mut *tx, run_id.clone()).await?;
        refresh_run_data(&mut *tx, info).await?;
        tx.commit().await.map_err(db("committing run"))?;
        self.get_run(&run_id).await
    }

    /// Reads a run: info, latest metrics, params, tags, inputs and outputs.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, Error> {
        let run_id = run_id.to_string();
        read_op!(self, |conn| read_run(conn, run_id))
    }

    /// Reads only a run's info (cheap existence check).
    pub async fn get_run_info(&self, run_id: &str) -> Result<RunInfo, Error> {
        let run_id = run_id.to_string();
        read_op!(self, |conn| read_run_info(conn, run_id))
    }

    async fn active_run(&self, run_id: &str) -> Result<RunInfo, Error> {
        let run_id = run_id.to_string();
        read_op!(self, |conn| read_active_run(conn, run_id))
    }

    /// Updates status, end time and/or name; returns the new info.
    pub async fn update_run(&self, run_id: &str, update: UpdateRun) -> Result<RunInfo, Error> {
        self.active_run(run_id).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        lock_run(&mut *tx, run_id).await?;
        let mut sql = Sql::new("UPDATE runs SET run_uuid = run_uuid");
        if let Some(status) = update.status {
            sql.push(", status = ").bind(status.as_str());
        }
        if let Some(end_time) = update.end_time {
            sql.push(", end_time = ").bind(end_time);
        }
        if let Some(name) = update.run_name.as_deref().filter(|n| !n.is_empty()) {
            sql.push(", name = ").bind(name);
            RUN_TAGS
                .upsert(&mut *tx, &[run_id.into()], [(RUN_NAME_TAG, name)])
                .await?;
            let info = read_run_info(&mut *tx, run_id.to_string()).await?;
            refresh_run_data(&mut *tx, info).await?;
        }
        sql.push(" WHERE run_uuid = ").bind(run_id);
        sql.query(self.dialect)
            .execute(&mut *tx)
            .await
            .map_err(db("updating run"))?;
        tx.commit().await.map_err(db("committing"))?;
        self.get_run_info(run_id).await
    }

    /// Soft-deletes a run.
    pub async fn delete_run(&self, run_id: &str) -> Result<(), Error> {
        self.set_run_stage(run_id, LifecycleStage::Deleted).await
    }

    /// Restores a soft-deleted run.
    pub async fn restore_run(&self, run_id: &str) -> Result<(), Error> {
        self.set_run_stage(run_id, LifecycleStage::Active).await
    }

    async fn set_run_stage(&self, run_id: &str, stage: LifecycleStage) -> Result<(), Error> {
        self.get_run_info(run_id).await?;
        let mut sql = Sql::new("UPDATE runs SET lifecycle_stage = ");
        sql.bind(stage.as_str()).push(", deleted_time = ");
        match stage {
            LifecycleStage::Deleted => sql.bind(Some(now_millis())),
            LifecycleStage::Active => sql.bind(None::<i64>),
        };
        sql.push(" WHERE run_uuid = ").bind(run_id);
        sql.query(self.dialect)
            .execute(&self.writer)
            .await
            .map_err(db("updating run"))?;
        Ok(())
    }

    /// Logs one metric (a batch of one).
    pub async fn log_metric(&self, run_id: &str, metric: Metric) -> Result<(), Error> {
        self.log_batch(run_id, vec![metric], Vec::new(), Vec::new())
            .await
    }

    /// Logs one param (a batch of one).
    pub async fn log_param(&self, run_id: &str, param: Param) -> Result<(), Error> {
        self.log_batch(run_id, Vec::new(), vec![param], Vec::new())
            .await
    }

    /// Sets one run tag (a batch of one).
    pub async fn set_tag(&self, run_id: &str, tag: Tag) -> Result<(), Error> {
        self.log_batch(run_id, Vec::new(), Vec::new(), vec![tag])
            .await
    }

    /// Logs metrics, params and tags atomically, with MLflow's limits and rules:
    /// params are immutable, identical metric points are idempotent, and the latest
    /// value per key is the maximum of (step, timestamp, value).
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<(), Error> {
        validate_batch(&metrics, &params, &tags)?;
        let run_id = run_id.to_string();
        // log_batch_in reads the run, and any logged model a metric names, in
        // its transaction before writing rows that reference them.
        write_op!(self, ForeignKeys::CheckedByOperation, |conn| log_batch_in(
            conn, run_id, metrics, params, tags
        ))
    }

    /// Deletes a run tag; a missing tag is RESOURCE_DOES_NOT_EXIST.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), Error> {
        self.active_run(run_id).await?;
        let (run_id, key) = (run_id.to_string(), key.to_string());
        write_op!(self, |conn| delete_tag_in(conn, run_id, key))
    }

    /// Records datasets (and models) used by a run. A dataset is identified by
    /// (experiment, name, digest), so logging the same data twice links one row.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> Result<(), Error> {
        if datasets.len() > validation::MAX_DATASETS_PER_BATCH {
            return Err(Error::invalid_parameter(format!(
                "A batch of inputs can contain at most {} datasets (got {})",
                validation::MAX_DATASETS_PER_BATCH,
                datasets.len()
            )));
        }
        for input in &datasets {
            let dataset = &input.dataset;
            if dataset.name.is_empty() || dataset.digest.is_empty() {
                return Err(Error::invalid_parameter(
                    "Each dataset needs a non-empty 'name' and 'digest'",
                ));
            }
            for tag in &input.tags {
                validation::validate_key(KeyKind::Tag, &tag.key)?;
            }
        }
        let info = self.active_run(run_id).await?;
        let experiment_id = parse_experiment_id(&info.experiment_id)?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        for input in &datasets {
            let dataset = &input.dataset;
            let mut insert = Sql::new(
                "INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, source, schema, \
                 profile) VALUES (",
            );
            insert
                .bind(ids::new_uuid())
                .push(", ")
                .bind(experiment_id)
                .push(", ")
                .bind(dataset.name.as_str())
                .push(", ")
                .bind(dataset.digest.as_str())
                .push(", ")
                .bind(dataset.source_type.as_str())
                .push(", ")
                .bind(dataset.source.as_str())
                .push(", ")
                .bind(dataset.schema.clone())
                .push(", ")
                .bind(dataset.profile.clone())
                .push(") ON CONFLICT (experiment_id, name, digest) DO NOTHING");
            insert
                .query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("recording dataset"))?;
            let mut select = Sql::new("SELECT dataset_uuid FROM datasets WHERE experiment_id = ");
            select
                .bind(experiment_id)
                .push(" AND name = ")
                .bind(dataset.name.as_str())
                .push(" AND digest = ")
                .bind(dataset.digest.as_str());
            let row = select
                .query(self.dialect)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("reading dataset"))?;
            let dataset_uuid: String = get(&row, "dataset_uuid")?;
            let input_uuid = link_input(&mut tx, "DATASET", &dataset_uuid, run_id).await?;
            for tag in &input.tags {
                let mut sql = Sql::new("INSERT INTO input_tags (input_uuid, key, value) VALUES (");
                sql.bind(input_uuid.as_str())
                    .push(", ")
                    .bind(tag.key.as_str())
                    .push(", ")
                    .bind(tag.value.as_str())
                    .push(") ON CONFLICT (input_uuid, key) DO UPDATE SET value = excluded.value");
                sql.query(self.dialect)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("recording input tag"))?;
            }
        }
        for model in &models {
            link_input(&mut tx, "MODEL", &model.model_id, run_id).await?;
        }
        tx.commit().await.map_err(db("committing inputs"))?;
        Ok(())
    }

    /// Records models a run produced (MLflow 3 `runs/outputs`).
    pub async fn log_outputs(&self, run_id: &str, models: Vec<ModelOutput>) -> Result<(), Error> {
        self.active_run(run_id).await?;
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db("starting transaction"))?;
        for model in &models {
            let mut sql = Sql::new("INSERT INTO run_outputs (run_uuid, model_id, step) VALUES (");
            sql.bind(run_id)
                .push(", ")
                .bind(model.model_id.as_str())
                .push(", ")
                .bind(model.step)
                .push(") ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step");
            sql.query(self.dialect)
                .execute(&mut *tx)
                .await
                .map_err(db("recording output"))?;
        }
        tx.commit().await.map_err(db("committing outputs"))?;
        Ok(())
    }

    /// Every logged point of one metric, ordered by (timestamp, step, value), paginated.
    pub async fn get_metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Page<Metric>, Error> {
        self.get_run_info(run_id).await?;
        let limit = max_results.unwrap_or(validation::GET_METRIC_HISTORY_MAX_RESULTS);
        if limit < 1 {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {limit} for parameter 'max_results'"
            )));
        }
        // A page holds at most MLflow's default page size; the token continues.
        let limit = limit.min(validation::GET_METRIC_HISTORY_MAX_RESULTS);
        let offset = page_token::decode(page_token)?;
        let mut sql =
            Sql::new("SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ");
        sql.bind(run_id)
            .push(" AND key = ")
            .bind(key)
            .push(" ORDER BY timestamp, step, value")
            .limit_offset(limit + 1, offset);
        let mut rows = read_op!(self, |conn| fetch_rows(conn, sql, "reading metric history"))?;
        let mut items = rows
            .iter_mut()
            .map(metric_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = page_token::truncate_page(&mut items, limit, offset);
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Metric history of several runs for a step range, down-sampled to at most
    /// `max_results` distinct steps per run (first and last step always kept).
    pub async fn get_metric_history_bulk_interval(
        &self,
        run_ids: &[String],
        key: &str,
        start_step: Option<i64>,
        end_step: Option<i64>,
        max_results: usize,
    ) -> Result<Vec<Metric>, Error> {
        if run_ids.is_empty() || run_ids.len() > 100 {
            return Err(Error::invalid_parameter(
                "'run_ids' must hold between 1 and 100 run ids",
            ));
        }
        let mut out = Vec::new();
        for run_id in run_ids {
            self.get_run_info(run_id).await?;
            let mut sql = Sql::new(
                "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ",
            );
            sql.bind(run_id.as_str()).push(" AND key = ").bind(key);
            if let Some(start) = start_step {
                sql.push(" AND step >= ").bind(start);
            }
            if let Some(end) = end_step {
                sql.push(" AND step <= ").bind(end);
            }
            sql.push(" ORDER BY step, timestamp, value");
            let mut rows = read_op!(self, |conn| fetch_rows(conn, sql, "reading metric history"))?;
            let metrics = rows
                .iter_mut()
                .map(metric_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let mut steps: Vec<i64> = metrics.iter().map(|m| m.step).collect();
            steps.dedup();
            let keep: std::collections::HashSet<i64> = if steps.len() <= max_results.max(2) {
                steps.iter().copied().collect()
            } else {
                let n = max_results.max(2);
                (0..n)
                    .map(|i| steps[i * (steps.len() - 1) / (n - 1)])
                    .collect()
            };
            out.extend(
                metrics
                    .into_iter()
                    .filter(|m| keep.contains(&m.step))
                    .map(|mut m| {
                        m.run_id = Some(run_id.clone());
                        m
                    }),
            );
        }
        Ok(out)
    }

    /// How many runs of `experiment_id` the view holds (one index range count).
    pub async fn count_runs(&self, experiment_id: &str, view_type: ViewType) -> Result<i64, Error> {
        let Ok(experiment) = experiment_id.trim().parse::<i64>() else {
            return Ok(0);
        };
        let mut sql = Sql::new("SELECT COUNT(*) AS n FROM runs WHERE experiment_id = ");
        sql.bind(experiment).push(" AND lifecycle_stage IN ");
        sql.bind_list(view_type.stages().iter().map(|s| s.as_str()));
        let row = sql
            .query(self.dialect)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting runs"))?;
        get(&row, "n")
    }

    /// Searches runs of the given experiments with MLflow's filter grammar and order_by.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter_string: Option<&str>,
        view_type: ViewType,
        max_results: i64,
        order_by: &[String],
        page_token: Option<&str>,
    ) -> Result<Page<Run>, Error> {
        if !(1..=validation::SEARCH_MAX_RESULTS_THRESHOLD).contains(&max_results) {
            return Err(Error::invalid_parameter(format!(
                "Invalid value {max_results} for parameter 'max_results' supplied. It must be at most {}",
                validation::SEARCH_MAX_RESULTS_THRESHOLD
            )));
        }
        let offset = page_token::decode(page_token)?;
        validation::check_search_experiment_ids(experiment_ids.len())?;
        let mut experiment_numbers = Vec::with_capacity(experiment_ids.len());
        for id in experiment_ids {
            match id.trim().parse::<i64>() {
                Ok(n) => experiment_numbers.push(n),
                Err(_) => {
                    return Ok(Page {
                        items: Vec::new(),
                        next_page_token: None,
                    });
                }
            }
        }
        if experiment_numbers.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        // On SQLite the search sorts only rowids, and the page's rows are read
        // by rowid after it: sorted whole, every row would carry its
        // `run_data` through the sort's temporary B-tree (a quarter of the
        // query's work for a page of 100 runs). `CROSS JOIN` keeps the sorted
        // subquery the outer loop, so the rows come in its order.
        let deferred = self.dialect == Dialect::Sqlite;
        let mut sql = Sql::new(&if deferred {
            format!(
                "SELECT {RUN_COLUMNS}, {PAGE_RUN_COLUMNS} FROM (SELECT r.rowid AS page_rowid FROM runs r \
                 WHERE r.experiment_id IN "
            )
        } else {
            format!(
                "SELECT {RUN_COLUMNS}, {PAGE_RUN_COLUMNS} FROM runs r WHERE r.experiment_id IN "
            )
        });
        sql.bind_list(experiment_numbers)
            .push(" AND r.lifecycle_stage IN ");
        sql.bind_list(view_type.stages().iter().map(|s| s.as_str()));
        search::push_search(
            &RUN_SEARCH,
            self.dialect,
            filter_string,
            order_by,
            "r.start_time DESC, r.run_uuid ASC",
            max_results,
            offset,
            &mut sql,
        )?;
        if deferred {
            sql.push(") page CROSS JOIN runs r ON r.rowid = page.page_rowid");
        }
        read_op!(self, |conn| search_runs_in(conn, sql, max_results, offset))
    }
}

/// Runs a built run search and loads the page's runs.
async fn search_runs_in<E: Exec>(
    e: &mut E,
    sql: Sql,
    max_results: i64,
    offset: u64,
) -> Result<Page<Run>, Error> {
    let mut runs = read_runs(e, &sql, "searching runs").await?;
    let next_page_token = page_token::truncate_page(&mut runs, max_results, offset);
    fill_runs(e, &mut runs).await?;
    Ok(Page {
        items: runs.into_iter().map(|r| r.run).collect(),
        next_page_token,
    })
}

/// Each row of `sql`, read in place and mapped by `map`.
async fn collect_rows<E: Exec, T>(
    e: &mut E,
    sql: &Sql,
    context: &'static str,
    mut map: impl FnMut(&dyn RowRef) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let fetched = e.prefetch(sql, context).await?;
    let mut items = Vec::new();
    e.visit(sql, context, fetched, &mut |row| {
        items.push(map(row)?);
        Ok(())
    })?;
    Ok(items)
}

async fn read_run_info<E: Exec>(e: &mut E, run_id: String) -> Result<RunInfo, Error> {
    let mut sql = Sql::new(&format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_uuid = "
    ));
    sql.bind(run_id.as_str());
    collect_rows(e, &sql, "reading run", run_info_at)
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(format!("Run with id={run_id} not found")))
}

async fn read_active_run<E: Exec>(e: &mut E, run_id: String) -> Result<RunInfo, Error> {
    let info = read_run_info(e, run_id).await?;
    if info.lifecycle_stage != LifecycleStage::Active {
        return Err(Error::invalid_parameter(format!(
            "The run {} must be in the 'active' state. Current state is deleted.",
            info.run_id
        )));
    }
    Ok(info)
}

/// One query's rows (an operation of its own for [`read_op`]).
async fn fetch_rows<E: Exec>(
    e: &mut E,
    sql: Sql,
    context: &'static str,
) -> Result<Vec<Row>, Error> {
    e.fetch_all(&sql, context).await
}

async fn read_run<E: Exec>(e: &mut E, run_id: String) -> Result<Run, Error> {
    let mut sql = Sql::new(&format!(
        "SELECT {RUN_COLUMNS}, {PAGE_RUN_COLUMNS} FROM runs r WHERE r.run_uuid = "
    ));
    sql.bind(run_id.as_str());
    let mut runs = read_runs(e, &sql, "reading run").await?;
    if runs.is_empty() {
        return Err(Error::not_found(format!("Run with id={run_id} not found")));
    }
    fill_runs(e, &mut runs).await?;
    runs.pop()
        .map(|r| r.run)
        .ok_or_else(|| Error::internal("run vanished while loading"))
}

/// The runs of a `SELECT {RUN_COLUMNS}, {PAGE_RUN_COLUMNS}` query: info,
/// the run's latest metrics, params and tags where the row keeps them
/// ([`crate::run_data`]), and whether inputs or outputs name it.
async fn read_runs<E: Exec>(
    e: &mut E,
    sql: &Sql,
    context: &'static str,
) -> Result<Vec<PageRun>, Error> {
    collect_rows(e, sql, context, |row| {
        Ok(PageRun {
            run: empty_run(run_info_at(row)?),
            stored: row.opt_bytes(9)?.map(Cow::into_owned),
            linked: row.int(10)? != 0,
        })
    })
    .await
}

/// Rewrites `runs.run_data` of `run_id` from the side tables (see
/// [`crate::run_data`]); every write to a run's latest metrics, params or
/// tags calls it in the same transaction, after its own writes.
///
/// The caller holds the run's row lock ([`lock_run`], or the row's own
/// insert), taken before its side-table writes: on PostgreSQL, whose
/// transactions run at READ COMMITTED, two concurrent writes to one run
/// would otherwise each read the side tables without the other's rows, and
/// the later commit would store a `run_data` missing the earlier one's.
/// Holding the lock, the reads below see every write committed before it;
/// one committing after it waits for the lock and rewrites the value itself.
/// (SQLite serializes writers anyway.)
pub(crate) async fn refresh_run_data<E: Exec>(e: &mut E, info: RunInfo) -> Result<(), Error> {
    rewrite_run_data(e, vec![info]).await
}

/// Stores the latest metrics, params and tags of each run of `infos`, read
/// from the side tables, as its `runs.run_data`. The caller holds the runs'
/// row locks (see [`refresh_run_data`]).
async fn rewrite_run_data<E: Exec>(e: &mut E, infos: Vec<RunInfo>) -> Result<(), Error> {
    let mut runs: Vec<PageRun> = infos
        .into_iter()
        .map(|info| PageRun {
            run: empty_run(info),
            stored: None,
            linked: true,
        })
        .collect();
    read_side_tables(e, &mut runs, Side::Data).await?;
    for PageRun { run, .. } in &runs {
        let mut update = Sql::new("UPDATE runs SET run_data = ");
        update
            .bind(run_data::encode(&run.data))
            .push(" WHERE run_uuid = ")
            .bind(run.info.run_id.as_str());
        e.execute(&update, "storing run data").await?;
    }
    Ok(())
}

/// Fills `runs.run_data` of every run that lacks it (runs written before
/// migration 6 and not since), in the caller's transaction: migration 7.
/// Runs are taken in chunks of [`PAGE_CHUNK`], each chunk's rows locked
/// before its side tables are read, as [`refresh_run_data`] requires.
pub(crate) async fn fill_missing_run_data<E: Exec>(e: &mut E) -> Result<u64, Error> {
    let mut filled = 0;
    loop {
        let mut missing = Sql::new(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_data IS NULL LIMIT "
        ));
        missing.push(itoa::Buffer::new().format(PAGE_CHUNK));
        let infos = collect_rows(e, &missing, "finding runs without run data", run_info_at).await?;
        if infos.is_empty() {
            return Ok(filled);
        }
        let mut lock = Sql::new("UPDATE runs SET run_data = run_data WHERE run_uuid IN ");
        lock.bind_list(infos.iter().map(|info| info.run_id.as_str()));
        e.execute(&lock, "locking runs").await?;
        filled += infos.len() as u64;
        rewrite_run_data(e, infos).await?;
    }
}

/// Locks the run's row until the transaction ends (a no-op update; SQLite's
/// writers are serialized anyway). Every write to a run's metrics, params or
/// tags takes it before any side-table row, so writers to one run queue in
/// one order and cannot deadlock on each other's rows.
async fn lock_run<E: Exec>(e: &mut E, run_id: &str) -> Result<(), Error> {
    let mut lock = Sql::new("UPDATE runs SET run_data = run_data WHERE run_uuid = ");
    lock.bind(run_id);
    e.execute(&lock, "locking run").await?;
    Ok(())
}

// The branches of [`read_side_tables`]'s query, each without its `SELECT`.
// Columns: the run's place in the page and the branch in one integer
// (place × 8 + branch: one value to read per row), then per branch
// (1 … 13): metric: key, -, value, timestamp, step, is_nan;
// param and tag: key, value;
// input: input_uuid, source_type, -, -, -, -, source_id and the
// dataset's name, digest, source_type, source, schema, profile;
// output: model_id, -, -, -, step. Each column has one type in all
// branches (PostgreSQL requires it).
const METRIC_ROWS: &str = "page.n * 8, m.key, NULL, m.value, m.timestamp, m.step, m.is_nan, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM page CROSS JOIN latest_metrics m WHERE m.run_uuid = page.id";
const PARAM_ROWS: &str = "page.n * 8 + 1, p.key, p.value, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM page CROSS JOIN params p WHERE p.run_uuid = page.id";
const TAG_ROWS: &str = "page.n * 8 + 2, t.key, t.value, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM page CROSS JOIN tags t WHERE t.run_uuid = page.id";
const INPUT_ROWS: &str = "page.n * 8 + 3, i.input_uuid, i.source_type, NULL, NULL, NULL, NULL, \
     i.source_id, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
     FROM page CROSS JOIN inputs i LEFT JOIN datasets d ON d.dataset_uuid = i.source_id \
     AND i.source_type = 'DATASET' WHERE i.destination_type = 'RUN' AND i.destination_id = page.id";
const OUTPUT_ROWS: &str = "page.n * 8 + 4, o.model_id, NULL, NULL, NULL, o.step, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM page CROSS JOIN run_outputs o WHERE o.run_uuid = page.id";

/// A run of a page being read, with its `runs.run_data` bytes when the row
/// keeps them.
struct PageRun {
    run: Run,
    stored: Option<Vec<u8>>,
    /// Whether an input or an output names the run (when read with
    /// [`PAGE_RUN_COLUMNS`]; true where not known).
    linked: bool,
}

/// Which side tables [`read_side_tables`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Latest metrics, params, tags, inputs and outputs.
    All,
    /// Inputs and outputs: the rest came from `runs.run_data`.
    InputsOutputs,
    /// Latest metrics, params and tags: what `runs.run_data` keeps.
    Data,
}

/// Completes a page of runs read by [`read_runs`]: each run's latest
/// metrics, params and tags come from its stored `run_data` when every run
/// of the page has it (one row per run), else from the side tables; inputs
/// and outputs come from theirs, queried only when a run of the page has any.
async fn fill_runs<E: Exec>(e: &mut E, runs: &mut [PageRun]) -> Result<(), Error> {
    if runs.iter().any(|r| r.stored.is_none()) {
        return read_side_tables(e, runs, Side::All).await;
    }
    for page_run in runs.iter_mut() {
        if let Some(bytes) = page_run.stored.take() {
            page_run.run.data = run_data::decode(&bytes)?;
        }
    }
    if runs.iter().any(|r| r.linked) {
        read_side_tables(e, runs, Side::InputsOutputs).await?;
    }
    Ok(())
}

/// Loads latest metrics, params, tags, inputs and outputs (or the part `side`
/// names) for a page of runs with one query per [`PAGE_CHUNK`] runs (a `UNION ALL` of the five side
/// tables; dataset inputs' tags follow in a second query when there are any).
/// The page's ids, bound as a `VALUES` list with their place in the page
/// ([`page_ids`]), are joined to each side table's key: on SQLite `CROSS JOIN`
/// keeps the list the outer loop, so each id is one seek and no sorted index
/// of an `IN (...)` list is built, and a row names its run by place (an
/// integer), not by id.
async fn read_side_tables<E: Exec>(
    e: &mut E,
    runs: &mut [PageRun],
    side: Side,
) -> Result<(), Error> {
    // The branches of the query, in its first column.
    const METRIC: i64 = 0;
    const PARAM: i64 = 1;
    const TAG: i64 = 2;
    const INPUT: i64 = 3;
    let ids: Vec<String> = runs.iter().map(|r| r.run.info.run_id.clone()).collect();
    for (chunk_index, chunk) in ids.chunks(PAGE_CHUNK).enumerate() {
        let first = chunk_index * PAGE_CHUNK;
        let page = &mut runs[first..first + chunk.len()];
        let mut sql = page_ids(chunk);
        let branches: &[&str] = match side {
            Side::All => &[METRIC_ROWS, PARAM_ROWS, TAG_ROWS, INPUT_ROWS, OUTPUT_ROWS],
            Side::InputsOutputs => &[INPUT_ROWS, OUTPUT_ROWS],
            Side::Data => &[METRIC_ROWS, PARAM_ROWS, TAG_ROWS],
        };
        for (i, branch) in branches.iter().enumerate() {
            sql.push(if i == 0 {
                "SELECT "
            } else {
                " UNION ALL SELECT "
            })
            .push(branch);
        }
        // Inputs come in input id order: kept aside with their ids, sorted,
        // then handed to their runs.
        let mut inputs: Vec<(String, usize, Input)> = Vec::new();
        let fetched = e.prefetch(&sql, "reading run data").await?;
        e.visit(&sql, "reading run data", fetched, &mut |row| {
            let place_and_branch = row.int(0)?;
            let n = place_and_branch >> 3;
            let run = &mut page_run(page, n)?.run;
            match place_and_branch & 7 {
                METRIC => run.data.metrics.push(Metric::new(
                    row.text(1)?,
                    loaded_value(row.real(3)?, row.int(6)?),
                    row.int(4)?,
                    row.int(5)?,
                )),
                PARAM => run.data.params.push(Param {
                    key: row.text(1)?.into_owned(),
                    value: row.text(2)?.into_owned(),
                }),
                TAG => run.data.tags.push(Tag::new(row.text(1)?, row.text(2)?)),
                INPUT if row.text(2)? == "MODEL" => inputs.push((
                    row.text(1)?.into_owned(),
                    n as usize,
                    Input::Model(ModelInput {
                        model_id: row.text(7)?.into_owned(),
                    }),
                )),
                INPUT => inputs.push((
                    row.text(1)?.into_owned(),
                    n as usize,
                    Input::Dataset(DatasetInput {
                        dataset: Dataset {
                            name: row.text(8)?.into_owned(),
                            digest: row.text(9)?.into_owned(),
                            source_type: row.text(10)?.into_owned(),
                            source: row.text(11)?.into_owned(),
                            schema: row.opt_text(12)?,
                            profile: row.opt_text(13)?,
                        },
                        tags: Vec::new(),
                    }),
                )),
                _ => run.model_outputs.push(ModelOutput {
                    model_id: row.text(1)?.into_owned(),
                    step: row.int(5)?,
                }),
            }
            Ok(())
        })?;
        if inputs.is_empty() {
            continue;
        }
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut places: HashMap<String, (usize, usize)> = HashMap::new();
        for (id, n, input) in inputs {
            match input {
                Input::Model(input) => page[n].run.model_inputs.push(input),
                Input::Dataset(input) => {
                    places.insert(id, (n, page[n].run.dataset_inputs.len()));
                    page[n].run.dataset_inputs.push(input);
                }
            }
        }
        if places.is_empty() {
            continue;
        }
        let mut sql =
            Sql::new("SELECT input_uuid, key, value FROM input_tags WHERE input_uuid IN ");
        sql.bind_list(places.keys().map(String::as_str))
            .push(" ORDER BY input_uuid, key");
        for mut row in e.fetch_all(&sql, "reading input tags").await? {
            if let Some(&(n, j)) = places.get(&row.get::<String>("input_uuid")?) {
                page[n].run.dataset_inputs[j].tags.push(Tag::new(
                    row.get::<String>("key")?,
                    row.get::<String>("value")?,
                ));
            }
        }
    }
    // SQLite's plan yields each run's rows in key order (the primary key's);
    // PostgreSQL promises no order without an ORDER BY, which would sort
    // every row of the page: a run's lists are sorted here when they are not.
    for PageRun { run, .. } in runs.iter_mut() {
        sort_by_key(&mut run.data.metrics, |m| &m.key);
        sort_by_key(&mut run.data.params, |p| &p.key);
        sort_by_key(&mut run.data.tags, |t| &t.key);
        sort_by_key(&mut run.model_outputs, |o| &o.model_id);
    }
    Ok(())
}

/// A run's input, read by [`fill_runs`].
enum Input {
    Model(ModelInput),
    Dataset(DatasetInput),
}

/// `WITH page(n, id) AS (VALUES (0, ?), (1, ?), …) `: a page's run ids and
/// their places in it as a table, the head of a query that joins side tables
/// to it.
fn page_ids(ids: &[String]) -> Sql {
    let mut sql = Sql::new("WITH page(n, id) AS (VALUES ");
    for (n, id) in ids.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" })
            .push(itoa::Buffer::new().format(n))
            .push(", ")
            .bind(id.as_str())
            .push(")");
    }
    sql.push(") ");
    sql
}

/// The run at place `n` of a page (a `page.n` read back from a row).
fn page_run(page: &mut [PageRun], n: i64) -> Result<&mut PageRun, Error> {
    usize::try_from(n)
        .ok()
        .and_then(|n| page.get_mut(n))
        .ok_or_else(|| {
            Error::internal(format!("a side-table row names place {n}, not in the page"))
        })
}

/// Sorts a run's list by key unless it already is (the common case: one pass).
fn sort_by_key<T>(items: &mut [T], key: fn(&T) -> &str) {
    if !items.is_sorted_by(|a, b| key(a) <= key(b)) {
        items.sort_by(|a, b| key(a).cmp(key(b)));
    }
}

/// `log_batch` inside its transaction: the run must be active, params are immutable.
async fn log_batch_in<E: Exec>(
    tx: &mut E,
    run_id: String,
    metrics: Vec<Metric>,
    params: Vec<Param>,
    tags: Vec<Tag>,
) -> Result<(), Error> {
    let run_id = run_id.as_str();
    lock_run(tx, run_id).await?;
    let info = read_active_run(tx, run_id.to_string()).await?;

    if !params.is_empty() {
        let mut unique: BTreeMap<&str, &str> = BTreeMap::new();
        for param in &params {
            match unique.insert(param.key.as_str(), param.value.as_str()) {
                Some(previous) if previous != param.value => {
                    return Err(Error::invalid_parameter(format!(
                        "Duplicate parameter keys have been submitted with different values: key '{}' \
                     ('{previous}' and '{}')",
                        param.key, param.value
                    )));
                }
                _ => {}
            }
        }
        let mut existing = Sql::new("SELECT key, value FROM params WHERE run_uuid = ");
        existing
            .bind(run_id)
            .push(" AND key IN ")
            .bind_list(unique.keys().copied());
        let rows = tx.fetch_all(&existing, "reading params").await?;
        let mut stored: HashMap<String, String> = HashMap::new();
        for mut row in rows {
            stored.insert(row.get("key")?, row.get("value")?);
        }
        for (key, value) in &unique {
            if let Some(old) = stored.get(*key)
                && old != value
            {
                return Err(Error::invalid_parameter(format!(
                    "Changing param values is not allowed. Param with key='{key}' was already logged with \
                 value='{old}' for run ID='{run_id}'. Attempted logging new value '{value}'."
                )));
            }
        }
        let new: Vec<(&str, &str)> = unique
            .iter()
            .filter(|(k, _)| !stored.contains_key(**k))
            .map(|(k, v)| (*k, *v))
            .collect();
        let mut insert = Batch::new(
            "INSERT INTO params (run_uuid, key, value) VALUES ",
            3,
            "ON CONFLICT DO NOTHING",
        );
        for (key, value) in new {
            insert.row([run_id.into(), key.into(), value.into()])?;
        }
        tx.execute_batch(&insert, "logging params").await?;
    }

    if !tags.is_empty() {
        let tags: BTreeMap<String, String> = tags.into_iter().map(|t| (t.key, t.value)).collect();
        RUN_TAGS
            .upsert(
                tx,
                &[run_id.into()],
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .await?;
        if let Some(name) = tags.get(RUN_NAME_TAG) {
            let mut rename = Sql::new("UPDATE runs SET name = ");
            rename
                .bind(name.as_str())
                .push(" WHERE run_uuid = ")
                .bind(run_id);
            tx.execute(&rename, "renaming run").await?;
        }
    }

    if !metrics.is_empty() {
        insert_metrics(tx, run_id, &metrics).await?;
        let model_metrics: Vec<&Metric> = metrics.iter().filter(|m| m.model_id.is_some()).collect();
        if !model_metrics.is_empty() {
            crate::logged_models::insert_model_metrics(
                tx,
                run_id,
                &info.experiment_id,
                &model_metrics,
            )
            .await?;
        }
    }
    refresh_run_data(tx, info).await
}

/// `delete_tag` inside its transaction.
async fn delete_tag_in<E: Exec>(tx: &mut E, run_id: String, key: String) -> Result<(), Error> {
    lock_run(tx, &run_id).await?;
    RUN_TAGS
        .delete(
            tx,
            &[run_id.as_str().into()],
            &key,
            format!("No tag with name: {key} in run with id {run_id}"),
        )
        .await?;
    let info = read_run_info(tx, run_id).await?;
    refresh_run_data(tx, info).await
}

fn empty_run(info: RunInfo) -> Run {
    Run {
        info,
        data: RunData::default(),
        dataset_inputs: Vec::new(),
        model_inputs: Vec::new(),
        model_outputs: Vec::new(),
    }
}

fn metric_from_row(row: &mut Row) -> Result<Metric, Error> {
    Ok(Metric::new(
        row.get::<String>("key")?,
        loaded_value(row.get("value")?, row.get("is_nan")?),
        row.get("timestamp")?,
        row.get("step")?,
    ))
}

fn validate_batch(metrics: &[Metric], params: &[Param], tags: &[Tag]) -> Result<(), Error> {
    if metrics.len() > MAX_METRICS_PER_BATCH {
        return Err(Error::invalid_parameter(format!(
            "A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. Got {} metrics.",
            metrics.len()
        )));
    }
    if params.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(Error::invalid_parameter(format!(
            "A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} params. Got {} params.",
            params.len()
        )));
    }
    if tags.len() > MAX_PARAMS_TAGS_PER_BATCH {
        return Err(Error::invalid_parameter(format!(
            "A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} tags. Got {} tags.",
            tags.len()
        )));
    }
    let total = metrics.len() + params.len() + tags.len();
    if total > MAX_ENTITIES_PER_BATCH {
        return Err(Error::invalid_parameter(format!(
            "A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params and tags in \
             total. Got {total}."
        )));
    }
    for metric in metrics {
        validation::validate_key(KeyKind::Metric, &metric.key)?;
    }
    for param in params {
        validation::validate_key(KeyKind::Param, &param.key)?;
        validation::validate_length(
            &format!("param '{}' value", param.key),
            &param.value,
            MAX_PARAM_VAL_LENGTH,
        )?;
    }
    for tag in tags {
        validation::validate_key(KeyKind::Tag, &tag.key)?;
        validation::validate_length(
            &format!("tag '{}' value", tag.key),
            &tag.value,
            MAX_TAG_VAL_LENGTH,
        )?;
    }
    Ok(())
}

/// Inserts metric points (idempotent) and advances `latest_metrics` per key.
async fn insert_metrics<E: Exec>(
    tx: &mut E,
    run_id: &str,
    metrics: &[Metric],
) -> Result<(), Error> {
    let mut points = Batch::new(
        "INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES ",
        6,
        "ON CONFLICT DO NOTHING",
    );
    // The newest point per key within this batch, by (step, timestamp, value).
    let mut latest: BTreeMap<&str, (i64, i64, f64, i64)> = BTreeMap::new();
    for metric in metrics {
        let (value, is_nan) = stored_value(metric.value);
        points.row([
            run_id.into(),
            metric.key.as_str().into(),
            value.into(),
            metric.timestamp.into(),
            metric.step.into(),
            is_nan.into(),
        ])?;
        let candidate = (metric.step, metric.timestamp, value, is_nan);
        latest
            .entry(metric.key.as_str())
            .and_modify(|current| {
                if (candidate.0, candidate.1, candidate.2) > (current.0, current.1, current.2) {
                    *current = candidate;
                }
            })
            .or_insert(candidate);
    }
    tx.execute_batch(&points, "logging metrics").await?;

    let mut upsert = Batch::new(
        "INSERT INTO latest_metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES ",
        6,
        "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, \
         step = excluded.step, is_nan = excluded.is_nan WHERE (excluded.step, excluded.timestamp, excluded.value) \
         > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
    );
    for (key, (step, timestamp, value, is_nan)) in latest {
        upsert.row([
            run_id.into(),
            key.into(),
            value.into(),
            timestamp.into(),
            step.into(),
            is_nan.into(),
        ])?;
    }
    tx.execute_batch(&upsert, "updating latest metrics").await
}

async fn link_input(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    source_type: &str,
    source_id: &str,
    run_id: &str,
) -> Result<String, Error> {
    let dialect = Dialect::of(tx);
    let mut insert = Sql::new(
        "INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id) VALUES (",
    );
    insert
        .bind(ids::new_uuid())
        .push(", ")
        .bind(source_type)
        .push(", ")
        .bind(source_id)
        .push(", 'RUN', ")
        .bind(run_id)
        .push(
            ") ON CONFLICT (source_type, source_id, destination_type, destination_id) DO NOTHING",
        );
    insert
        .query(dialect)
        .execute(&mut **tx)
        .await
        .map_err(db("linking input"))?;
    let mut select = Sql::new("SELECT input_uuid FROM inputs WHERE source_type = ");
    select
        .bind(source_type)
        .push(" AND source_id = ")
        .bind(source_id)
        .push(" AND destination_type = 'RUN' AND destination_id = ")
        .bind(run_id);
    let row = select
        .query(dialect)
        .fetch_one(&mut **tx)
        .await
        .map_err(db("reading input"))?;
    get(&row, "input_uuid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use keel_core::ErrorCode;

    /// A SQLite store always, a PostgreSQL one when the suite has a server.
    async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let uri = format!("sqlite:///{}", dir.path().join("keel.db").display());
        let mut all = vec![(
            Store::open(StoreConfig::new(uri)).await.expect("sqlite"),
            Some(dir),
        )];
        if let Some(uri) = crate::testing::fresh_postgres_database().await {
            all.push((
                Store::open(StoreConfig::new(uri)).await.expect("postgres"),
                None,
            ));
        }
        all
    }

    /// A run's stored `run_data` and what the side tables hold, as text (a
    /// NaN is not equal to itself).
    async fn stored_and_side(store: &Store, run_id: &str) -> Result<(String, String), Error> {
        let run_id = run_id.to_string();
        read_op!(store, |conn| async move {
            let mut sql = Sql::new(&format!(
                "SELECT {RUN_COLUMNS}, {PAGE_RUN_COLUMNS} FROM runs r WHERE r.run_uuid = "
            ));
            sql.bind(run_id.as_str());
            let mut runs = read_runs(conn, &sql, "test").await?;
            let bytes = runs[0]
                .stored
                .take()
                .ok_or_else(|| Error::internal("no run_data"))?;
            read_side_tables(conn, &mut runs, Side::Data).await?;
            Ok((
                format!("{:?}", run_data::decode(&bytes)?),
                format!("{:?}", runs[0].run.data),
            ))
        })
    }

    async fn forget_run_data(store: &Store, run_id: &str) -> Result<(), Error> {
        let run_id = run_id.to_string();
        write_op!(store, |conn| async move {
            let mut sql = Sql::new("UPDATE runs SET run_data = NULL WHERE run_uuid = ");
            sql.bind(run_id.as_str());
            conn.execute(&sql, "test").await.map(|_| ())
        })
    }

    /// A new run of bob's in `experiment`; returns its id.
    async fn new_run(
        store: &Store,
        experiment: &str,
        run_name: Option<String>,
        start_time: i64,
        tags: Vec<Tag>,
    ) -> String {
        store
            .create_run(CreateRun {
                experiment_id: experiment.to_string(),
                user_id: "bob".into(),
                run_name,
                start_time: Some(start_time),
                tags,
            })
            .await
            .unwrap()
            .info
            .run_id
    }

    /// A search's pages come in the order asked for, whatever the order the
    /// runs were written in (on SQLite the page's rows are read after the
    /// sort, by rowid).
    #[tokio::test]
    async fn search_pages_follow_the_order_not_the_rows() {
        for (store, _dir) in stores().await {
            let experiment = store.create_experiment("order", None, &[]).await.unwrap();
            let mut expected = Vec::new();
            for i in 0..40_i64 {
                // A score that is not monotonic in the order of creation.
                let score = ((i * 17) % 40) as f64;
                let name = Some(format!("run-{i}"));
                let run = new_run(&store, &experiment, name, 1_000 + (i * 7) % 5, vec![]).await;
                if i % 9 != 4 {
                    store
                        .log_batch(
                            &run,
                            vec![Metric::new("score", score, 1, 0)],
                            vec![],
                            vec![],
                        )
                        .await
                        .unwrap();
                    expected.push((score, format!("run-{i}")));
                }
            }
            expected.sort_by(|a, b| b.0.total_cmp(&a.0));
            let expected: Vec<String> = expected.into_iter().map(|(_, name)| name).collect();
            let mut seen = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = store
                    .search_runs(
                        std::slice::from_ref(&experiment),
                        Some("metrics.score >= 0"),
                        ViewType::ActiveOnly,
                        7,
                        &["metrics.score DESC".to_string()],
                        token.as_deref(),
                    )
                    .await
                    .unwrap();
                seen.extend(page.items.into_iter().map(|r| r.info.run_name));
                token = page.next_page_token;
                if token.is_none() {
                    break;
                }
            }
            assert_eq!(seen, expected);
        }
    }

    async fn fill(store: &Store) -> Result<u64, Error> {
        write_op!(store, |conn| fill_missing_run_data(conn))
    }

    /// Migration 7's fill: every run without `run_data` gets the value its
    /// side tables give, and a run that has it is left alone.
    #[tokio::test]
    async fn missing_run_data_is_filled_from_the_side_tables() {
        for (store, _dir) in stores().await {
            let experiment = store.create_experiment("fill", None, &[]).await.unwrap();
            let mut ids = Vec::new();
            for i in 0..3_i64 {
                let tags = vec![Tag::new("team", "a")];
                let run = new_run(&store, &experiment, Some(format!("run-{i}")), i, tags).await;
                store
                    .log_batch(
                        &run,
                        vec![Metric::new("loss", i as f64, 1, 0)],
                        vec![Param {
                            key: "i".into(),
                            value: i.to_string(),
                        }],
                        vec![],
                    )
                    .await
                    .unwrap();
                ids.push(run);
            }
            forget_run_data(&store, &ids[0]).await.unwrap();
            forget_run_data(&store, &ids[2]).await.unwrap();
            assert_eq!(fill(&store).await.unwrap(), 2);
            for id in &ids {
                let (stored, side) = stored_and_side(&store, id).await.unwrap();
                assert_eq!(stored, side, "{id}");
            }
            assert_eq!(fill(&store).await.unwrap(), 0);
        }
    }

    /// A param row whose run does not exist, written by a plain write.
    async fn insert_orphan_param(store: &Store) -> Result<(), Error> {
        write_op!(store, |conn| async move {
            let mut sql = Sql::new("INSERT INTO params (run_uuid, key, value) VALUES (");
            sql.bind("no-such-run").push(", 'k', 'v')");
            conn.execute(&sql, "test").await.map(|_| ())
        })
    }

    /// `log_batch` skips SQLite's foreign-key lookups for its own transaction
    /// only: it still refuses a missing run or logged model itself, and the
    /// writes after it are checked by the database again.
    #[tokio::test]
    async fn log_batch_checks_its_parents_and_leaves_foreign_keys_on() {
        for (store, _dir) in stores().await {
            assert!(insert_orphan_param(&store).await.is_err(), "before");
            let experiment = store.create_experiment("fk", None, &[]).await.unwrap();
            let run = new_run(&store, &experiment, None, 1, vec![]).await;
            let batch = |metric: Metric| vec![metric];
            store
                .log_batch(&run, batch(Metric::new("loss", 0.5, 1, 0)), vec![], vec![])
                .await
                .unwrap();
            assert!(
                insert_orphan_param(&store).await.is_err(),
                "after log_batch"
            );
            let missing_run = store
                .log_batch(
                    "0123456789abcdef0123456789abcdef",
                    batch(Metric::new("loss", 0.5, 1, 0)),
                    vec![],
                    vec![],
                )
                .await;
            assert_eq!(
                missing_run.unwrap_err().code,
                ErrorCode::ResourceDoesNotExist
            );
            let mut on_model = Metric::new("loss", 0.5, 2, 1);
            on_model.model_id = Some("m-none".into());
            let missing_model = store.log_batch(&run, batch(on_model), vec![], vec![]).await;
            assert_eq!(
                missing_model.unwrap_err().code,
                ErrorCode::ResourceDoesNotExist
            );
            assert!(
                insert_orphan_param(&store).await.is_err(),
                "after failed batches"
            );
        }
    }

    /// Every write to a run's latest metrics, params or tags leaves
    /// `runs.run_data` equal to the side tables, and a page mixing runs
    /// without it (written before migration 6) reads the same.
    #[tokio::test]
    async fn run_data_follows_every_write_to_a_run() {
        for (store, _dir) in stores().await {
            let experiment = store.create_experiment("data", None, &[]).await.unwrap();
            let tags = vec![Tag::new("team", "a")];
            let run = new_run(&store, &experiment, Some("first".into()), 1, tags).await;
            let check = |what: &'static str| {
                let (store, run) = (&store, run.clone());
                async move {
                    let (stored, side) = stored_and_side(store, &run).await.unwrap();
                    assert_eq!(stored, side, "after {what}");
                    side
                }
            };
            check("create_run").await;
            store
                .log_batch(
                    &run,
                    vec![
                        Metric::new("loss", 0.5, 10, 2),
                        Metric::new("loss", 0.9, 5, 1),
                        Metric::new("acc", f64::NAN, 1, 0),
                        Metric::new("big", f64::INFINITY, 1, 0),
                    ],
                    vec![Param {
                        key: "lr".into(),
                        value: "0.1".into(),
                    }],
                    vec![Tag::new("zz", "1")],
                )
                .await
                .unwrap();
            let side = check("log_batch").await;
            assert!(side.contains("0.5") && side.contains("NaN") && side.contains("lr"));
            // An older point does not move the latest value; a newer one does.
            store
                .log_metric(&run, Metric::new("loss", 7.0, 1, 0))
                .await
                .unwrap();
            assert!(!check("an older point").await.contains("7.0"));
            store
                .log_metric(&run, Metric::new("loss", 8.0, 1, 3))
                .await
                .unwrap();
            assert!(check("a newer point").await.contains("8.0"));
            store
                .log_param(
                    &run,
                    Param {
                        key: "depth".into(),
                        value: "3".into(),
                    },
                )
                .await
                .unwrap();
            check("log_param").await;
            store.set_tag(&run, Tag::new("team", "b")).await.unwrap();
            check("set_tag").await;
            store
                .update_run(
                    &run,
                    UpdateRun {
                        run_name: Some("second".into()),
                        ..UpdateRun::default()
                    },
                )
                .await
                .unwrap();
            assert!(check("update_run").await.contains("second"));
            store.delete_tag(&run, "zz").await.unwrap();
            assert!(!check("delete_tag").await.contains("zz"));
            // A failed batch (a param changed) writes nothing, run_data included.
            let changed = store
                .log_batch(
                    &run,
                    vec![Metric::new("new", 1.0, 1, 0)],
                    vec![Param {
                        key: "lr".into(),
                        value: "0.2".into(),
                    }],
                    Vec::new(),
                )
                .await;
            assert!(changed.is_err());
            assert!(!check("a failed batch").await.contains("\"new\""));
            // Concurrent writes to one run (PostgreSQL runs them side by side):
            // the stored value holds every one of them, and writers that
            // share a metric key and rename the run (which updates its row)
            // do not deadlock, since each takes the run's row first.
            let writes = (0..16).map(|i| {
                store.log_batch(
                    &run,
                    vec![
                        Metric::new(format!("c{i}"), i as f64, 1, 0),
                        Metric::new("shared", i as f64, 1, i),
                    ],
                    vec![Param {
                        key: format!("cp{i}"),
                        value: "v".into(),
                    }],
                    if i % 2 == 0 {
                        vec![Tag::new(RUN_NAME_TAG, format!("name{i}"))]
                    } else {
                        Vec::new()
                    },
                )
            });
            for written in futures::future::join_all(writes).await {
                written.unwrap();
            }
            let side = check("concurrent writes").await;
            assert!((0..16).all(|i| side.contains(&format!("\"cp{i}\""))));

            // A run without run_data, on a page with one that has it.
            let other = store
                .create_run(CreateRun {
                    experiment_id: experiment.clone(),
                    user_id: "bob".into(),
                    start_time: Some(2),
                    ..CreateRun::default()
                })
                .await
                .unwrap()
                .info
                .run_id;
            let search = || {
                store.search_runs(
                    std::slice::from_ref(&experiment),
                    None,
                    ViewType::All,
                    100,
                    &[],
                    None,
                )
            };
            let before = format!("{:?}", search().await.unwrap());
            let one_before = format!("{:?}", store.get_run(&run).await.unwrap());
            forget_run_data(&store, &run).await.unwrap();
            assert_eq!(format!("{:?}", search().await.unwrap()), before);
            assert_eq!(
                format!("{:?}", store.get_run(&run).await.unwrap()),
                one_before
            );
            // Its next write stores it again.
            store.set_tag(&run, Tag::new("again", "1")).await.unwrap();
            assert!(check("a write after migration").await.contains("again"));
            let _ = other;
        }
    }
}
