//! The request and reply bodies of keel's own REST API (`/api/2.0/keel/…`,
//! documented in docs/api.md): what MLflow's API lacks (gated promotion,
//! rollback, the audit log, versions with their gate results and lineage)
//! and full entities in keel's own JSON shape (keel-core's serde form). The
//! server parses these types and the HTTP client sends them: one owner for
//! each body.

use keel_core::{AuditEntry, ModelVersion, MonitorVerdict, RegisteredModel, Run, Tag};
use serde::{Deserialize, Serialize};

/// Where the keel API is mounted.
pub const PREFIX: &str = "/api/2.0/keel";

/// `GET runs/get?run_id=…`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReply {
    pub run: Run,
}

/// `POST runs/search`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRuns {
    pub experiment_ids: Vec<String>,
    pub filter: Option<String>,
    pub max_results: Option<i64>,
    pub order_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsReply {
    pub runs: Vec<Run>,
}

/// `GET model-versions/get?uri=models:/…` (any `models:/` form) or `?name=…&version=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionReply {
    pub model_version: ModelVersion,
    /// Where the version's files are (`Store::version_artifact_uri`).
    pub artifact_uri: String,
}

/// `POST model-versions/search`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchVersions {
    pub filter: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionsReply {
    pub model_versions: Vec<ModelVersion>,
}

/// `POST model-versions/create`: a version with keel's lineage and gate
/// results. The acting user is the caller the server authenticated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<Tag>,
    /// Signature JSON text.
    pub signature: Option<String>,
    /// Lineage JSON text.
    pub lineage: Option<String>,
    /// `{"passed": bool, "gates": [...]}` as JSON text.
    pub gate_results: Option<String>,
    /// Why (recorded in the audit log).
    pub reason: String,
    /// What triggered it, e.g. a drift verdict.
    pub cause: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelVersionReply {
    pub model_version: ModelVersion,
}

/// `GET registered-models/get?name=…`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredModelReply {
    pub registered_model: RegisteredModel,
}

/// `GET registered-models/list?max_results=…`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredModelsReply {
    pub registered_models: Vec<RegisteredModel>,
}

/// `POST registry/promote`: the gate check and the alias move in one
/// transaction on the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Promote {
    pub name: String,
    /// A number, sent as a string or a JSON number.
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    pub alias: String,
    pub force: bool,
    pub reason: String,
    pub cause: String,
}

/// `POST registry/rollback`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rollback {
    pub name: String,
    pub alias: String,
    pub reason: String,
    pub cause: String,
}

/// One audit row on the wire (versions as strings, as MLflow writes int64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditWire {
    pub id: i64,
    pub name: String,
    pub action: String,
    pub target: String,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub user: String,
    pub reason: String,
    pub cause: String,
    pub timestamp: i64,
    pub registry_version: i64,
}

impl From<&AuditEntry> for AuditWire {
    fn from(entry: &AuditEntry) -> Self {
        AuditWire {
            id: entry.id,
            name: entry.name.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            from_version: entry.from_version.map(|v| v.to_string()),
            to_version: entry.to_version.map(|v| v.to_string()),
            user: entry.user.clone(),
            reason: entry.reason.clone(),
            cause: entry.cause.clone(),
            timestamp: entry.timestamp,
            registry_version: entry.registry_version,
        }
    }
}

impl From<AuditWire> for AuditEntry {
    fn from(wire: AuditWire) -> Self {
        AuditEntry {
            id: wire.id,
            name: wire.name,
            action: wire.action,
            target: wire.target,
            from_version: wire.from_version.and_then(|v| v.parse().ok()),
            to_version: wire.to_version.and_then(|v| v.parse().ok()),
            user: wire.user,
            reason: wire.reason,
            cause: wire.cause,
            timestamp: wire.timestamp,
            registry_version: wire.registry_version,
        }
    }
}

/// `{"entry": …}`: the reply of promote and rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryReply {
    pub entry: AuditWire,
}

/// `{"entries": […]}`: the reply of `registry/audit?name=…&max_results=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntriesReply {
    pub entries: Vec<AuditWire>,
}

/// `POST tokens/create`: a token for `username` (default: the caller),
/// valid for `expires_in` (a duration such as `90d`; none: until revoked).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateToken {
    pub username: Option<String>,
    pub name: String,
    pub expires_in: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub username: String,
    pub name: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// The reply of `tokens/create`: the secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    pub token_info: TokenInfo,
}

/// The reply of `tokens/list[?username=…]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokensReply {
    pub tokens: Vec<TokenInfo>,
}

/// `POST tokens/revoke`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RevokeToken {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
}

/// A field MLflow's clients send as a string or a number (int64 in protobuf JSON).
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

/// `POST monitor/verdicts`: what a watcher decided for a window; the
/// recording user is the caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordVerdict {
    pub model: String,
    pub window_start: Option<i64>,
    pub rows: i64,
    pub drifted: bool,
    /// JSON text.
    pub verdict: String,
}

/// `{"verdict": …}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictReply {
    pub verdict: MonitorVerdict,
}

/// `GET monitor/verdicts?model=…&max_results=…` → `{"verdicts": […]}`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictsReply {
    pub verdicts: Vec<MonitorVerdict>,
}

/// `GET runs/lineage?run_id=…`: where a run came from and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lineage {
    pub run_id: String,
    pub experiment_id: String,
    pub status: String,
    /// `mlflow.source.git.commit`, and whether the tree was dirty.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// Pipeline stages: name, status (`keel.stage.NAME`), seconds (`stage.NAME.seconds`).
    pub stages: Vec<StageLineage>,
    /// Datasets the run read: name, digest, source type.
    pub datasets: Vec<DatasetLineage>,
    pub params: Vec<keel_core::Param>,
    /// Recorded gate results (`keel.gates`), if any.
    pub gates: Option<serde_json::Value>,
    /// Versions registered from this run: (name, version, aliases).
    pub registered: Vec<RegisteredLineage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageLineage {
    pub name: String,
    pub status: String,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetLineage {
    pub name: String,
    pub digest: String,
    pub source_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredLineage {
    pub name: String,
    pub version: i64,
    pub aliases: Vec<String>,
}
