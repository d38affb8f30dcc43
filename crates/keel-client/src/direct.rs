//! The direct client: the metadata store opened with keel-store (SQLite or
//! PostgreSQL), artifacts through keel-artifacts. This is also what a keel
//! server runs behind keel's own API, so a command and the server apply the
//! same rules.

use std::path::Path;

use bytes::Bytes;
use keel_artifacts::ArtifactStore;
use keel_core::uri::join;
use keel_core::{
    AuditEntry, DatasetInput, Error, ErrorCode, Metric, ModelVersion, Param, RegisteredModel, Run,
    Tag, ViewType,
};
use keel_store::{Actor, CreateModelVersion, CreateRun, Store, StoreConfig, UpdateRun};

use crate::{MAX_DOWNLOAD_FILES, Result, api};

/// A directly opened metadata store and artifact root.
#[derive(Debug, Clone)]
pub struct Direct {
    store: Store,
    uri: String,
    artifacts_destination: String,
    user: String,
}

impl Direct {
    /// Opens the database at `uri`; `mlflow-artifacts:` URIs resolve under
    /// `artifacts_destination`; `user` is recorded as the actor.
    pub async fn open(uri: &str, artifacts_destination: &str, user: &str) -> Result<Direct> {
        let store = Store::open(StoreConfig::new(uri)).await?;
        Ok(Direct::new(store, uri, artifacts_destination, user))
    }

    /// A client over an already open store (the server's, per request).
    pub fn new(store: Store, uri: &str, artifacts_destination: &str, user: &str) -> Direct {
        Direct {
            store,
            uri: uri.to_string(),
            artifacts_destination: artifacts_destination.to_string(),
            user: user.to_string(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn actor(&self, reason: String, cause: String) -> Actor {
        Actor {
            user: self.user.clone(),
            reason,
            cause,
        }
    }

    /// The artifact store and the path inside it for `root` joined with `relative`.
    fn locate(&self, root: &str, relative: &str) -> Result<(ArtifactStore, String)> {
        let (store, base) =
            keel_artifacts::resolve_artifact_uri(root, &self.artifacts_destination)?;
        Ok((store, join(&base, relative)))
    }

    /// The store's URI of `relative` under `root` (`file:///…`, `s3://…`).
    pub fn artifact_location(&self, root: &str, relative: &str) -> Result<String> {
        let (store, path) = self.locate(root, relative)?;
        Ok(format!("{}/{path}", store.uri().trim_end_matches('/')))
    }

    pub async fn record_verdict(
        &self,
        request: api::RecordVerdict,
    ) -> Result<keel_core::MonitorVerdict> {
        self.store
            .record_verdict(
                &keel_store::NewVerdict {
                    model: request.model,
                    window_start: request.window_start,
                    rows: request.rows,
                    drifted: request.drifted,
                    verdict: request.verdict,
                },
                &self.user,
            )
            .await
    }

    pub async fn verdicts(
        &self,
        model: Option<&str>,
        limit: i64,
    ) -> Result<Vec<keel_core::MonitorVerdict>> {
        self.store.monitor_verdicts(model, limit).await
    }

    /// A run's lineage: git state, stages, datasets, params, gates and the
    /// versions registered from it.
    pub async fn lineage(&self, run_id: &str) -> Result<api::Lineage> {
        let run = self.store.get_run(run_id).await?;
        let registered = self
            .search_model_versions(&format!("run_id = '{}'", run_id.replace('\'', "")), 1000)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|v| api::RegisteredLineage {
                name: v.name,
                version: v.version,
                aliases: v.aliases,
            })
            .collect();
        Ok(crate::lineage_of(&run, registered))
    }

    pub async fn find_experiment(&self, name: &str) -> Result<Option<String>> {
        match self.store.get_experiment_by_name(name).await {
            Ok(experiment) => Ok(Some(experiment.experiment_id)),
            Err(error) if error.code == ErrorCode::ResourceDoesNotExist => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        self.store.create_experiment(name, None, &[]).await
    }

    pub async fn create_run(&self, request: CreateRun) -> Result<Run> {
        self.store.create_run(request).await
    }

    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<()> {
        self.store.log_batch(run_id, metrics, params, tags).await
    }

    pub async fn log_inputs(&self, run_id: &str, datasets: Vec<DatasetInput>) -> Result<()> {
        self.store.log_inputs(run_id, datasets, Vec::new()).await
    }

    pub async fn update_run(&self, run_id: &str, update: UpdateRun) -> Result<()> {
        self.store.update_run(run_id, update).await.map(|_| ())
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        self.store.get_run(run_id).await
    }

    pub async fn search_runs(&self, request: api::SearchRuns) -> Result<Vec<Run>> {
        let max = request.max_results.unwrap_or(1000).clamp(1, 50_000);
        Ok(self
            .store
            .search_runs(
                &request.experiment_ids,
                request.filter.as_deref(),
                ViewType::ActiveOnly,
                max,
                &request.order_by,
                None,
            )
            .await?
            .items)
    }

    pub async fn resolve_model_uri(&self, uri: &str) -> Result<api::VersionReply> {
        let model_version = self.store.resolve_model_uri(uri).await?;
        let artifact_uri = self.store.version_artifact_uri(&model_version).await?;
        Ok(api::VersionReply {
            model_version,
            artifact_uri,
        })
    }

    pub async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        self.store.get_model_version(name, version).await
    }

    pub async fn search_model_versions(
        &self,
        filter: &str,
        max_results: i64,
    ) -> Result<Vec<ModelVersion>> {
        let filter = Some(filter).filter(|f| !f.trim().is_empty());
        Ok(self
            .store
            .search_model_versions(filter, max_results.clamp(1, 10_000), &[], None)
            .await?
            .items)
    }

    pub async fn create_model_version(&self, request: api::CreateVersion) -> Result<ModelVersion> {
        if let Some(gates) = &request.gate_results
            && serde_json::from_str::<serde_json::Value>(gates)
                .ok()
                .is_none_or(|value| !value.get("passed").is_some_and(|p| p.is_boolean()))
        {
            return Err(Error::invalid_parameter(
                "'gate_results' must be a JSON object with a boolean field 'passed'",
            ));
        }
        let actor = self.actor(request.reason, request.cause);
        self.store
            .create_model_version(
                CreateModelVersion {
                    name: request.name,
                    source: request.source,
                    run_id: request.run_id,
                    description: request.description,
                    tags: request.tags,
                    user_id: self.user.clone(),
                    signature: request.signature,
                    lineage: request.lineage,
                    gate_results: request.gate_results,
                    ..CreateModelVersion::default()
                },
                &actor,
            )
            .await
    }

    pub async fn promote(&self, request: api::Promote) -> Result<AuditEntry> {
        let version = keel_store::parse_version(&request.name, &request.version)?;
        let actor = self.actor(request.reason, request.cause);
        self.store
            .promote(
                &request.name,
                &request.alias,
                version,
                request.force,
                &actor,
            )
            .await
    }

    pub async fn rollback(&self, request: api::Rollback) -> Result<AuditEntry> {
        let actor = self.actor(request.reason, request.cause);
        self.store
            .rollback_alias(&request.name, &request.alias, &actor)
            .await
    }

    pub async fn audit(&self, name: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        self.store
            .registry_audit(name, limit.clamp(1, 100_000))
            .await
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        self.store.get_registered_model(name).await
    }

    pub async fn list_registered_models(&self, max_results: i64) -> Result<Vec<RegisteredModel>> {
        Ok(self
            .store
            .search_registered_models(None, max_results.clamp(1, 1000), &[], None)
            .await?
            .items)
    }

    pub async fn put_bytes(&self, root: &str, relative: &str, bytes: Bytes) -> Result<()> {
        let (store, path) = self.locate(root, relative)?;
        Ok(store.put_bytes(&path, bytes).await?)
    }

    pub async fn put_file(&self, root: &str, relative: &str, file: &Path) -> Result<()> {
        let (store, path) = self.locate(root, relative)?;
        let stream = crate::remote::file_stream(file).await?;
        store.put_stream(&path, stream).await?;
        Ok(())
    }

    pub async fn get_bytes(&self, root: &str, relative: &str) -> Result<Option<Bytes>> {
        let (store, path) = self.locate(root, relative)?;
        if store.head(&path).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(store.get_bytes(&path).await?))
    }

    pub async fn download(&self, root: &str, into: &Path) -> Result<usize> {
        let (store, base) = self.locate(root, "")?;
        download_store(&store, &base, root, into).await
    }
}

/// Copies every file under `base` in `store` into `into` (`root` names it in errors).
pub(crate) async fn download_store(
    store: &ArtifactStore,
    base: &str,
    root: &str,
    into: &Path,
) -> Result<usize> {
    let files = store.list_recursive(base).await?;
    let prefix = if base.is_empty() {
        String::new()
    } else {
        format!("{}/", base.trim_end_matches('/'))
    };
    let mut count = 0;
    for file in files.iter().filter(|f| !f.is_dir) {
        count += 1;
        if count > MAX_DOWNLOAD_FILES {
            return Err(Error::invalid_state(format!(
                "{root}: more than {MAX_DOWNLOAD_FILES} files"
            )));
        }
        let relative = file.path.strip_prefix(&prefix).unwrap_or(&file.path);
        let bytes = store.get_bytes(&file.path).await?;
        crate::remote::write_local(&into.join(relative), &bytes)?;
    }
    Ok(count)
}
