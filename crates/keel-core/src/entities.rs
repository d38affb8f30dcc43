//! Plain data types named after MLflow's nouns. No behaviour beyond small
//! conversions; stores fill them, the HTTP layer turns them into JSON.

use serde::{Deserialize, Serialize};

/// Whether an entity is live or soft-deleted (restorable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleStage {
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(LifecycleStage::Active),
            "deleted" => Some(LifecycleStage::Deleted),
            _ => None,
        }
    }
}

/// Which lifecycle stages a search includes (MLflow's `ViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    /// Parses MLflow's wire names (`ACTIVE_ONLY`, `DELETED_ONLY`, `ALL`) and the numeric enum values.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE_ONLY" | "1" => Some(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(ViewType::DeletedOnly),
            "ALL" | "3" => Some(ViewType::All),
            _ => None,
        }
    }
    /// The lifecycle stages this view selects.
    pub fn stages(self) -> &'static [LifecycleStage] {
        match self {
            ViewType::ActiveOnly => &[LifecycleStage::Active],
            ViewType::DeletedOnly => &[LifecycleStage::Deleted],
            ViewType::All => &[LifecycleStage::Active, LifecycleStage::Deleted],
        }
    }
}

/// A run's status, as MLflow names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
    /// Accepts the wire names and MLflow's numeric enum values (1..=5).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RUNNING" | "1" => Some(RunStatus::Running),
            "SCHEDULED" | "2" => Some(RunStatus::Scheduled),
            "FINISHED" | "3" => Some(RunStatus::Finished),
            "FAILED" | "4" => Some(RunStatus::Failed),
            "KILLED" | "5" => Some(RunStatus::Killed),
            _ => None,
        }
    }
    /// True once the run can no longer change status by itself.
    pub fn is_terminated(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Killed
        )
    }
}

/// A key/value tag on an experiment, run, logged model or input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// An experiment: a named group of runs with its own artifact location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<Tag>,
}

/// A param: logged once per run and immutable afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

/// One point of a metric's history. `value` may be NaN or ±inf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(with = "crate::json_double")]
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    /// Set when the metric was logged for an MLflow 3 logged model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// Filled when reading a logged model's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Metric {
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Metric {
            key: key.into(),
            value,
            timestamp,
            step,
            model_id: None,
            dataset_name: None,
            dataset_digest: None,
            run_id: None,
        }
    }
}

/// A dataset as recorded by `log-inputs`: identity is (name, digest) within an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset used by a run, with input tags such as `mlflow.data.context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    pub dataset: Dataset,
    pub tags: Vec<Tag>,
}

/// A model a run produced (MLflow 3 `runs/outputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub model_id: String,
    pub step: i64,
}

/// A model used as a run input (MLflow 3 `model_inputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    pub model_id: String,
}

/// The identity and lifecycle part of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: LifecycleStage,
}

/// Latest metric values, params and tags of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunData {
    /// The latest value per key: max by (step, timestamp, value).
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

/// A run with everything MLflow's `runs/get` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub dataset_inputs: Vec<DatasetInput>,
    pub model_inputs: Vec<ModelInput>,
    pub model_outputs: Vec<ModelOutput>,
}

impl Run {
    /// The git commit the run's code came from (`mlflow.source.git.commit`), if recorded.
    pub fn git_commit(&self) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == "mlflow.source.git.commit")
            .map(|t| t.value.as_str())
    }
}

/// Status of an MLflow 3 logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoggedModelStatus {
    #[serde(rename = "LOGGED_MODEL_PENDING")]
    Pending,
    #[serde(rename = "LOGGED_MODEL_READY")]
    Ready,
    #[serde(rename = "LOGGED_MODEL_UPLOAD_FAILED")]
    UploadFailed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LOGGED_MODEL_PENDING" | "1" => Some(LoggedModelStatus::Pending),
            "LOGGED_MODEL_READY" | "2" => Some(LoggedModelStatus::Ready),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Some(LoggedModelStatus::UploadFailed),
            _ => None,
        }
    }
}

/// MLflow 3's model-centric entity: its own id, params, metrics, tags and artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub status: LoggedModelStatus,
    pub status_message: Option<String>,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub lifecycle_stage: LifecycleStage,
    pub tags: Vec<Tag>,
    pub params: Vec<Param>,
    pub metrics: Vec<Metric>,
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// A registered model: a named series of versions with aliases and tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    pub tags: Vec<Tag>,
    /// (alias, version) pairs, sorted by alias.
    pub aliases: Vec<(String, i64)>,
    /// The newest version per stage (MLflow's `latest_versions`).
    pub latest_versions: Vec<ModelVersion>,
}

/// MLflow's legacy model stages (deprecated in MLflow in favour of aliases, still served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }
    /// Case-insensitive, as MLflow accepts it.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Stage::None),
            "staging" => Some(Stage::Staging),
            "production" => Some(Stage::Production),
            "archived" => Some(Stage::Archived),
            _ => None,
        }
    }
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];
}

/// One version of a registered model, with keel's lineage and gate results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub description: String,
    pub user_id: String,
    pub current_stage: Stage,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub status: String,
    pub tags: Vec<Tag>,
    pub aliases: Vec<String>,
    /// Input/output schema as JSON text (MLflow signature or keel's), if known.
    pub signature: Option<String>,
    /// Lineage as JSON text: git commit, dataset digests, pipeline run.
    pub lineage: Option<String>,
    /// Recorded gate results as JSON text: `{"passed": bool, "gates": [...]}`.
    pub gate_results: Option<String>,
}

/// One row of the registry's append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub name: String,
    /// `set_alias`, `delete_alias`, `rollback`, `transition_stage`, `delete_version`.
    pub action: String,
    /// The alias or stage that moved.
    pub target: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub user: String,
    pub reason: String,
    /// What triggered the action (e.g. a drift verdict), as free text or JSON.
    pub cause: String,
    pub timestamp: i64,
    /// The registry change number this action produced.
    pub registry_version: i64,
}

/// One verdict of `keel monitor watch`: a window of a served model's
/// prediction log, whether it drifted, and the report's summary as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorVerdict {
    pub id: i64,
    pub model: String,
    /// Start of the newest window evaluated (Unix ms), if any.
    pub window_start: Option<i64>,
    /// Rows in that window.
    pub rows: i64,
    pub drifted: bool,
    /// The verdict as JSON text: dataset rule, drifted columns with their effects.
    pub verdict: String,
    pub created_at: i64,
    /// Who recorded it (the authenticated caller through a server).
    pub user: String,
}
