//! keel-client: one way to reach the metadata, remote or local.
//!
//! Every command that reads or writes runs, models, artifacts or audit rows
//! goes through [`Client`], which has two implementations, the way MLflow's
//! client has a REST store beside its SQL store:
//! - **direct** ([`direct`]): a `sqlite://` or `postgresql://` URI opened with
//!   keel-store, artifacts through keel-artifacts (a folder or S3);
//! - **remote** ([`remote`]): a keel server at `http(s)://`, over its
//!   MLflow-compatible API, keel's own API (`/api/2.0/keel`, [`api`]) and its
//!   artifact proxy, with the caller's credentials. Nothing on the caller's
//!   side needs database or S3 credentials, and every write passes the
//!   server's checks and is recorded under the user the server authenticated.
//!
//! [`settings`] decides which, in one order for every command.

pub mod api;
pub mod direct;
pub mod remote;
pub mod settings;

use std::path::Path;

use bytes::Bytes;
use keel_core::{
    AuditEntry, DatasetInput, Error, ErrorCode, Metric, ModelVersion, Param, RegisteredModel, Run,
    Tag,
};
pub use keel_store::{CreateRun, UpdateRun};
pub use settings::{ClientSettings, Credentials, Target};

pub use direct::Direct;
pub use remote::Remote;

/// Result of every client call: keel-core's error (code + message), the same
/// whether it came from the database or from a server's error envelope.
pub type Result<T> = std::result::Result<T, Error>;

/// The metadata, reached directly or through a keel server.
#[derive(Debug, Clone)]
pub enum Client {
    Direct(Direct),
    Remote(Remote),
}

macro_rules! dispatch {
    ($self:ident, $client:ident => $call:expr) => {
        match $self {
            Client::Direct($client) => $call,
            Client::Remote($client) => $call,
        }
    };
}

impl Client {
    /// Opens what `settings` resolve to. `user` is the name a direct client
    /// records as the actor (a server records the caller it authenticated).
    pub async fn open(settings: &ClientSettings, user: &str) -> Result<Client> {
        Client::open_target(settings.target()?, user).await
    }

    /// Opens a resolved target.
    pub async fn open_target(target: Target, user: &str) -> Result<Client> {
        Ok(match target {
            Target::Database {
                uri,
                artifacts_destination,
            } => Client::Direct(Direct::open(&uri, &artifacts_destination, user).await?),
            Target::Server { url, credentials } => Client::Remote(Remote::new(&url, credentials)?),
        })
    }

    /// `database sqlite:///…` or `server http://…`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Client::Direct(direct) => format!("database {}", direct.uri()),
            Client::Remote(remote) => format!("server {}", remote.url()),
        }
    }

    /// Releases connections (a direct database's pool).
    pub async fn close(&self) {
        if let Client::Direct(direct) = self {
            direct.store().close().await;
        }
    }

    /// The id of the experiment called `name`, if it exists.
    pub async fn find_experiment(&self, name: &str) -> Result<Option<String>> {
        dispatch!(self, c => c.find_experiment(name).await)
    }

    /// The id of the experiment called `name`, created when missing.
    pub async fn experiment_id(&self, name: &str) -> Result<String> {
        if let Some(id) = self.find_experiment(name).await? {
            return Ok(id);
        }
        match dispatch!(self, c => c.create_experiment(name).await) {
            Ok(id) => Ok(id),
            // Created by someone else in the meantime.
            Err(error) if error.code == ErrorCode::ResourceAlreadyExists => self
                .find_experiment(name)
                .await?
                .ok_or_else(|| Error::not_found(format!("Experiment '{name}' does not exist"))),
            Err(error) => Err(error),
        }
    }

    pub async fn create_run(&self, request: CreateRun) -> Result<Run> {
        dispatch!(self, c => c.create_run(request).await)
    }

    /// Logs metrics, params and tags, in batches within MLflow's limits.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<()> {
        use keel_core::validation::{MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH};
        for chunk in params.chunks(MAX_PARAMS_TAGS_PER_BATCH) {
            dispatch!(self, c => c.log_batch(run_id, Vec::new(), chunk.to_vec(), Vec::new()).await)?;
        }
        for chunk in tags.chunks(MAX_PARAMS_TAGS_PER_BATCH) {
            dispatch!(self, c => c.log_batch(run_id, Vec::new(), Vec::new(), chunk.to_vec()).await)?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            dispatch!(self, c => c.log_batch(run_id, chunk.to_vec(), Vec::new(), Vec::new()).await)?;
        }
        Ok(())
    }

    pub async fn log_inputs(&self, run_id: &str, datasets: Vec<DatasetInput>) -> Result<()> {
        dispatch!(self, c => c.log_inputs(run_id, datasets).await)
    }

    pub async fn update_run(&self, run_id: &str, update: UpdateRun) -> Result<()> {
        dispatch!(self, c => c.update_run(run_id, update).await)
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        dispatch!(self, c => c.get_run(run_id).await)
    }

    pub async fn search_runs(&self, request: api::SearchRuns) -> Result<Vec<Run>> {
        dispatch!(self, c => c.search_runs(request).await)
    }

    /// A version and where its files are, from any `models:/` URI
    /// (`NAME/VERSION`, `@ALIAS`, `/latest`, `/STAGE`, `m-…`).
    pub async fn resolve_model_uri(&self, uri: &str) -> Result<api::VersionReply> {
        dispatch!(self, c => c.resolve_model_uri(uri).await)
    }

    pub async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        dispatch!(self, c => c.get_model_version(name, version).await)
    }

    /// Versions matching MLflow's search grammar (empty when none, or when
    /// the model does not exist).
    pub async fn search_model_versions(
        &self,
        filter: &str,
        max_results: i64,
    ) -> Result<Vec<ModelVersion>> {
        let found = dispatch!(self, c => c.search_model_versions(filter, max_results).await);
        match found {
            Err(error) if error.code == ErrorCode::ResourceDoesNotExist => Ok(Vec::new()),
            other => other,
        }
    }

    /// Registers a version (creating the registered model when missing).
    pub async fn create_model_version(&self, request: api::CreateVersion) -> Result<ModelVersion> {
        dispatch!(self, c => c.create_model_version(request).await)
    }

    /// Moves an alias if the version's recorded gates passed (or `force` with a reason).
    pub async fn promote(&self, request: api::Promote) -> Result<AuditEntry> {
        dispatch!(self, c => c.promote(request).await)
    }

    /// Moves an alias back to its previous holder.
    pub async fn rollback(&self, request: api::Rollback) -> Result<AuditEntry> {
        dispatch!(self, c => c.rollback(request).await)
    }

    /// The registry's audit log, newest first.
    pub async fn audit(&self, name: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        dispatch!(self, c => c.audit(name, limit).await)
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        dispatch!(self, c => c.get_registered_model(name).await)
    }

    pub async fn list_registered_models(&self, max_results: i64) -> Result<Vec<RegisteredModel>> {
        dispatch!(self, c => c.list_registered_models(max_results).await)
    }

    /// Records a monitoring verdict (the recording user is the caller).
    pub async fn record_verdict(
        &self,
        request: api::RecordVerdict,
    ) -> Result<keel_core::MonitorVerdict> {
        dispatch!(self, c => c.record_verdict(request).await)
    }

    /// Monitoring verdicts, newest first.
    pub async fn verdicts(
        &self,
        model: Option<&str>,
        limit: i64,
    ) -> Result<Vec<keel_core::MonitorVerdict>> {
        dispatch!(self, c => c.verdicts(model, limit).await)
    }

    /// A run's lineage.
    pub async fn lineage(&self, run_id: &str) -> Result<api::Lineage> {
        dispatch!(self, c => c.lineage(run_id).await)
    }

    /// Writes `bytes` at `relative` under the artifact URI `root`.
    pub async fn put_bytes(&self, root: &str, relative: &str, bytes: Bytes) -> Result<()> {
        dispatch!(self, c => c.put_bytes(root, relative, bytes).await)
    }

    /// Streams a local file to `relative` under the artifact URI `root`.
    pub async fn put_file(&self, root: &str, relative: &str, file: &Path) -> Result<()> {
        dispatch!(self, c => c.put_file(root, relative, file).await)
    }

    /// The file at `relative` under the artifact URI `root`, or None when absent.
    pub async fn get_bytes(&self, root: &str, relative: &str) -> Result<Option<Bytes>> {
        dispatch!(self, c => c.get_bytes(root, relative).await)
    }

    /// Where `relative` under the artifact URI `root` is, for messages: the
    /// store's own URI when opened directly (`file:///…`, `s3://…`), the
    /// artifact URI itself through a server.
    pub fn artifact_location(&self, root: &str, relative: &str) -> Result<String> {
        match self {
            Client::Direct(direct) => direct.artifact_location(root, relative),
            Client::Remote(_) => Ok(keel_core::uri::join(root, relative)),
        }
    }

    /// Downloads every file under the artifact URI `root` into `into`;
    /// returns how many.
    pub async fn download(&self, root: &str, into: &Path) -> Result<usize> {
        dispatch!(self, c => c.download(root, into).await)
    }
}

/// The lineage of `run` (from its tags, metrics and inputs) and the
/// versions registered from it; one reading for both clients.
pub(crate) fn lineage_of(run: &Run, registered: Vec<api::RegisteredLineage>) -> api::Lineage {
    let tag = |key: &str| {
        run.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    let stages = run
        .data
        .tags
        .iter()
        .filter_map(|t| {
            let name = t.key.strip_prefix("keel.stage.")?;
            let seconds = run
                .data
                .metrics
                .iter()
                .find(|m| m.key == format!("stage.{name}.seconds"))
                .map(|m| m.value);
            Some(api::StageLineage {
                name: name.to_string(),
                status: t.value.clone(),
                seconds,
            })
        })
        .collect();
    api::Lineage {
        run_id: run.info.run_id.clone(),
        experiment_id: run.info.experiment_id.clone(),
        status: run.info.status.as_str().to_string(),
        git_commit: tag("mlflow.source.git.commit"),
        git_dirty: tag("keel.git.dirty").map(|d| d == "true"),
        stages,
        datasets: run
            .dataset_inputs
            .iter()
            .map(|input| api::DatasetLineage {
                name: input.dataset.name.clone(),
                digest: input.dataset.digest.clone(),
                source_type: input.dataset.source_type.clone(),
            })
            .collect(),
        params: run.data.params.clone(),
        gates: tag("keel.gates").and_then(|text| serde_json::from_str(&text).ok()),
        registered,
    }
}

/// Most files a download takes (a model folder is a handful).
pub const MAX_DOWNLOAD_FILES: usize = 10_000;
