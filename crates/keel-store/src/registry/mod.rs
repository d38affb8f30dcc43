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

mod aliases;
mod audit;
mod models;
mod versions;

use keel_core::uri::{ModelUri, RunUri};
use keel_core::validation::{self, KeyKind, validate_alias, validate_model_name};
use keel_core::{
    AuditEntry, Error, ModelVersion, Page, RegisteredModel, Stage, Tag, now_millis, page_token,
};
use sqlx::any::AnyRow;

use crate::Store;
use crate::experiments::is_unique_violation;
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
