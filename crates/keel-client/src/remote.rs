//! The remote client: a keel server over HTTP. Runs are written through
//! MLflow's REST API (the same endpoints MLflow's Python client calls), read
//! back and registered through keel's own API ([`crate::api`]), and
//! artifacts travel through the server's proxy (`mlflow-artifacts:` URIs).
//! Errors come back as keel-core errors decoded from MLflow's envelope.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use keel_core::uri::{ProxiedUri, encode_path, join};
use keel_core::{
    AuditEntry, DatasetInput, Error, ErrorCode, Metric, ModelVersion, Param, RegisteredModel, Run,
    Tag,
};
use keel_store::{CreateRun, UpdateRun};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::settings::Credentials;
use crate::{MAX_DOWNLOAD_FILES, Result, api};

/// Longest wait for a metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for one artifact upload or download.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Deepest folder a download descends into.
const MAX_DEPTH: usize = 32;

/// A keel server at a base URL, with the caller's credentials.
#[derive(Debug, Clone)]
pub struct Remote {
    url: String,
    credentials: Credentials,
    http: reqwest::Client,
}

fn transport(what: &str, error: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {error}"))
}

/// A file as a stream of 1 MiB chunks (bounded memory).
pub(crate) async fn file_stream(
    file: &Path,
) -> Result<Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>> {
    use tokio::io::AsyncReadExt;
    let handle = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::invalid_parameter(format!("cannot read {}: {e}", file.display())))?;
    Ok(Box::pin(futures::stream::unfold(
        Some(handle),
        |state| async move {
            let mut handle = state?;
            let mut buffer = vec![0u8; 1 << 20];
            match handle.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), Some(handle)))
                }
                Err(error) => Some((Err(error), None)),
            }
        },
    )))
}

/// Writes a downloaded file atomically, creating its folder.
pub(crate) fn write_local(target: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::internal(format!("creating {}: {e}", parent.display())))?;
    }
    keel_fs::write_atomic(target, bytes)
        .map_err(|e| Error::internal(format!("writing {}: {e}", target.display())))
}

/// Where an artifact lives as seen from a remote client.
enum Location {
    /// Under the server's artifact proxy, at this path.
    Proxied(String),
    /// A store the client opens itself (s3://, a folder): the server does
    /// not proxy it, so the caller needs its credentials.
    Own(keel_artifacts::ArtifactStore, String),
}

impl Remote {
    /// A client of the keel server at `url` (`http://host:port`).
    pub fn new(url: &str, credentials: Credentials) -> Result<Remote> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| transport("HTTP client", e))?;
        Ok(Remote {
            url: url.trim_end_matches('/').to_string(),
            credentials,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(REQUEST_TIMEOUT);
        match &self.credentials {
            Credentials::None => request,
            Credentials::Token(token) => request.bearer_auth(token),
            Credentials::Basic { user, password } => request.basic_auth(user, Some(password)),
        }
    }

    /// Sends a request; a non-2xx answer becomes the error in its envelope.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            transport(
                &format!("{what}: cannot reach the keel server at {}", self.url),
                e,
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(decode_error(what, status.as_u16(), &text))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let mut request = self.request(method, path).query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(path, request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(&format!("{path}: reading the reply"), e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "{path}: the server's reply is not what keel expects ({e}); is {} a keel server of this version?",
                self.url
            ))
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        self.call(reqwest::Method::GET, path, query, None::<&Value>)
            .await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(reqwest::Method::POST, path, &[], Some(body))
            .await
    }

    fn keel(path: &str) -> String {
        format!("{}/{path}", api::PREFIX)
    }

    fn mlflow(path: &str) -> String {
        format!("/api/2.0/mlflow/{path}")
    }

    pub(crate) async fn find_experiment(&self, name: &str) -> Result<Option<String>> {
        let reply: Result<Value> = self
            .get(
                &Self::mlflow("experiments/get-by-name"),
                &[("experiment_name", name)],
            )
            .await;
        match reply {
            Ok(reply) => Ok(reply["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)),
            Err(error) if error.code == ErrorCode::ResourceDoesNotExist => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) async fn create_experiment(&self, name: &str) -> Result<String> {
        let reply: Value = self
            .post(&Self::mlflow("experiments/create"), &json!({"name": name}))
            .await?;
        reply["experiment_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::internal("experiments/create: no experiment_id in the reply"))
    }

    pub(crate) async fn create_run(&self, request: CreateRun) -> Result<Run> {
        let mut body = json!({
            "experiment_id": request.experiment_id,
            "user_id": request.user_id,
            "tags": request.tags,
        });
        if let Some(start_time) = request.start_time {
            body["start_time"] = json!(start_time);
        }
        if let Some(run_name) = request.run_name {
            body["run_name"] = json!(run_name);
        }
        let reply: Value = self.post(&Self::mlflow("runs/create"), &body).await?;
        let run_id = reply["run"]["info"]["run_id"]
            .as_str()
            .ok_or_else(|| Error::internal("runs/create: no run_id in the reply"))?;
        self.get_run(run_id).await
    }

    pub(crate) async fn log_batch(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> Result<()> {
        let body = json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags});
        let _: Value = self.post(&Self::mlflow("runs/log-batch"), &body).await?;
        Ok(())
    }

    pub(crate) async fn log_inputs(&self, run_id: &str, datasets: Vec<DatasetInput>) -> Result<()> {
        let body = json!({"run_id": run_id, "datasets": datasets});
        let _: Value = self.post(&Self::mlflow("runs/log-inputs"), &body).await?;
        Ok(())
    }

    pub(crate) async fn update_run(&self, run_id: &str, update: UpdateRun) -> Result<()> {
        let mut body = json!({"run_id": run_id});
        if let Some(status) = update.status {
            body["status"] = json!(status.as_str());
        }
        if let Some(end_time) = update.end_time {
            body["end_time"] = json!(end_time);
        }
        if let Some(run_name) = update.run_name {
            body["run_name"] = json!(run_name);
        }
        let _: Value = self.post(&Self::mlflow("runs/update"), &body).await?;
        Ok(())
    }

    /// Creates an access token through the server (`tokens/create`).
    pub async fn create_token(&self, request: &api::CreateToken) -> Result<api::TokenCreated> {
        self.post(&Self::keel("tokens/create"), request).await
    }

    /// Lists tokens without their secrets (`tokens/list`).
    pub async fn list_tokens(&self, username: Option<&str>) -> Result<api::TokensReply> {
        let query: Vec<(&str, &str)> = username.map(|u| ("username", u)).into_iter().collect();
        self.get(&Self::keel("tokens/list"), &query).await
    }

    /// Revokes a token (`tokens/revoke`).
    pub async fn revoke_token(&self, id: i64) -> Result<()> {
        let _: Value = self
            .post(
                &Self::keel("tokens/revoke"),
                &api::RevokeToken { id: id.to_string() },
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn get_run(&self, run_id: &str) -> Result<Run> {
        let reply: api::RunReply = self
            .get(&Self::keel("runs/get"), &[("run_id", run_id)])
            .await?;
        Ok(reply.run)
    }

    pub(crate) async fn search_runs(&self, request: api::SearchRuns) -> Result<Vec<Run>> {
        let reply: api::RunsReply = self.post(&Self::keel("runs/search"), &request).await?;
        Ok(reply.runs)
    }

    pub(crate) async fn resolve_model_uri(&self, uri: &str) -> Result<api::VersionReply> {
        self.get(&Self::keel("model-versions/get"), &[("uri", uri)])
            .await
    }

    pub(crate) async fn get_model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        let version = version.to_string();
        let reply: api::VersionReply = self
            .get(
                &Self::keel("model-versions/get"),
                &[("name", name), ("version", &version)],
            )
            .await?;
        Ok(reply.model_version)
    }

    pub(crate) async fn search_model_versions(
        &self,
        filter: &str,
        max_results: i64,
    ) -> Result<Vec<ModelVersion>> {
        let request = api::SearchVersions {
            filter: Some(filter.to_string()).filter(|f| !f.trim().is_empty()),
            max_results: Some(max_results),
        };
        let reply: api::VersionsReply = self
            .post(&Self::keel("model-versions/search"), &request)
            .await?;
        Ok(reply.model_versions)
    }

    pub(crate) async fn create_model_version(
        &self,
        request: api::CreateVersion,
    ) -> Result<ModelVersion> {
        let reply: api::ModelVersionReply = self
            .post(&Self::keel("model-versions/create"), &request)
            .await?;
        Ok(reply.model_version)
    }

    pub(crate) async fn promote(&self, request: api::Promote) -> Result<AuditEntry> {
        let reply: api::EntryReply = self.post(&Self::keel("registry/promote"), &request).await?;
        Ok(reply.entry.into())
    }

    pub(crate) async fn rollback(&self, request: api::Rollback) -> Result<AuditEntry> {
        let reply: api::EntryReply = self
            .post(&Self::keel("registry/rollback"), &request)
            .await?;
        Ok(reply.entry.into())
    }

    pub(crate) async fn audit(&self, name: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        let limit = limit.to_string();
        let mut query = vec![("max_results", limit.as_str())];
        if let Some(name) = name {
            query.push(("name", name));
        }
        let reply: api::EntriesReply = self.get(&Self::keel("registry/audit"), &query).await?;
        Ok(reply.entries.into_iter().map(AuditEntry::from).collect())
    }

    pub(crate) async fn record_verdict(
        &self,
        request: api::RecordVerdict,
    ) -> Result<keel_core::MonitorVerdict> {
        let reply: api::VerdictReply = self.post(&Self::keel("monitor/verdicts"), &request).await?;
        Ok(reply.verdict)
    }

    pub(crate) async fn verdicts(
        &self,
        model: Option<&str>,
        limit: i64,
    ) -> Result<Vec<keel_core::MonitorVerdict>> {
        let limit = limit.to_string();
        let mut query = vec![("max_results", limit.as_str())];
        if let Some(model) = model {
            query.push(("model", model));
        }
        let reply: api::VerdictsReply = self.get(&Self::keel("monitor/verdicts"), &query).await?;
        Ok(reply.verdicts)
    }

    pub(crate) async fn lineage(&self, run_id: &str) -> Result<api::Lineage> {
        self.get(&Self::keel("runs/lineage"), &[("run_id", run_id)])
            .await
    }

    pub(crate) async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let reply: api::RegisteredModelReply = self
            .get(&Self::keel("registered-models/get"), &[("name", name)])
            .await?;
        Ok(reply.registered_model)
    }

    pub(crate) async fn list_registered_models(
        &self,
        max_results: i64,
    ) -> Result<Vec<RegisteredModel>> {
        let max = max_results.to_string();
        let reply: api::RegisteredModelsReply = self
            .get(
                &Self::keel("registered-models/list"),
                &[("max_results", &max)],
            )
            .await?;
        Ok(reply.registered_models)
    }

    fn locate(&self, root: &str, relative: &str) -> Result<Location> {
        match ProxiedUri::parse(root) {
            Some(proxied) => Ok(Location::Proxied(join(&proxied?.path, relative))),
            None => {
                let (store, base) = keel_artifacts::resolve_artifact_uri(root, "")?;
                Ok(Location::Own(store, join(&base, relative)))
            }
        }
    }

    fn artifact_path(path: &str) -> String {
        format!("/api/2.0/mlflow-artifacts/artifacts/{}", encode_path(path))
    }

    async fn put_body(&self, path: &str, body: reqwest::Body) -> Result<()> {
        let request = self
            .request(reqwest::Method::PUT, &Self::artifact_path(path))
            .timeout(TRANSFER_TIMEOUT)
            .body(body);
        self.send(&format!("uploading {path}"), request).await?;
        Ok(())
    }

    pub(crate) async fn put_bytes(&self, root: &str, relative: &str, bytes: Bytes) -> Result<()> {
        match self.locate(root, relative)? {
            Location::Proxied(path) => self.put_body(&path, bytes.into()).await,
            Location::Own(store, path) => Ok(store.put_bytes(&path, bytes).await?),
        }
    }

    pub(crate) async fn put_file(&self, root: &str, relative: &str, file: &Path) -> Result<()> {
        let stream = file_stream(file).await?;
        match self.locate(root, relative)? {
            Location::Proxied(path) => {
                self.put_body(&path, reqwest::Body::wrap_stream(stream))
                    .await
            }
            Location::Own(store, path) => {
                store.put_stream(&path, stream).await?;
                Ok(())
            }
        }
    }

    pub(crate) async fn get_bytes(&self, root: &str, relative: &str) -> Result<Option<Bytes>> {
        match self.locate(root, relative)? {
            Location::Proxied(path) => {
                let request = self
                    .request(reqwest::Method::GET, &Self::artifact_path(&path))
                    .timeout(TRANSFER_TIMEOUT);
                match self.send(&format!("downloading {path}"), request).await {
                    Ok(response) => {
                        Ok(Some(response.bytes().await.map_err(|e| {
                            transport(&format!("downloading {path}"), e)
                        })?))
                    }
                    Err(error) if error.code == ErrorCode::ResourceDoesNotExist => Ok(None),
                    Err(error) => Err(error),
                }
            }
            Location::Own(store, path) => {
                if store.head(&path).await?.is_none() {
                    return Ok(None);
                }
                Ok(Some(store.get_bytes(&path).await?))
            }
        }
    }

    pub(crate) async fn download(&self, root: &str, into: &Path) -> Result<usize> {
        let base = match self.locate(root, "")? {
            Location::Proxied(path) => path,
            Location::Own(store, base) => {
                return crate::direct::download_store(&store, &base, root, into).await;
            }
        };
        let mut pending = vec![(String::new(), 0usize)];
        let mut count = 0usize;
        while let Some((relative, depth)) = pending.pop() {
            let listed = join(&base, &relative);
            let reply: Value = self
                .get("/api/2.0/mlflow-artifacts/artifacts", &[("path", &listed)])
                .await?;
            for entry in reply["files"].as_array().into_iter().flatten() {
                let Some(path) = entry["path"].as_str() else {
                    continue;
                };
                // The proxy lists names relative to the folder asked for.
                let name = path.rsplit('/').next().unwrap_or(path);
                if name.is_empty() || name == "." || name == ".." {
                    continue;
                }
                let child = join(&relative, name);
                if entry["is_dir"].as_bool().unwrap_or(false) {
                    if depth + 1 < MAX_DEPTH {
                        pending.push((child, depth + 1));
                    }
                    continue;
                }
                count += 1;
                if count > MAX_DOWNLOAD_FILES {
                    return Err(Error::invalid_state(format!(
                        "{root}: more than {MAX_DOWNLOAD_FILES} files"
                    )));
                }
                let bytes = self.get_bytes(root, &child).await?.ok_or_else(|| {
                    Error::not_found(format!("{root}/{child} vanished while downloading"))
                })?;
                write_local(&into.join(&child), &bytes)?;
            }
        }
        Ok(count)
    }
}

/// MLflow's error envelope (`{"error_code": …, "message": …}`) as a keel
/// error; anything else keeps the status and the start of the body.
fn decode_error(what: &str, status: u16, body: &str) -> Error {
    let envelope: Option<Value> = serde_json::from_str(body).ok();
    let code = envelope
        .as_ref()
        .and_then(|e| e["error_code"].as_str())
        .map(str::to_string);
    let message = envelope
        .as_ref()
        .and_then(|e| e["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect());
    let code = match code.as_deref().and_then(ErrorCode::from_wire) {
        Some(code) => code,
        None if status == 401 => ErrorCode::Unauthenticated,
        None if status == 403 => ErrorCode::PermissionDenied,
        _ if status == 404 => ErrorCode::ResourceDoesNotExist,
        _ if (400..500).contains(&status) => ErrorCode::InvalidParameterValue,
        _ => ErrorCode::InternalError,
    };
    let label = match status {
        401 => {
            " (401: not authenticated; set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
        }
        403 => " (403: permission denied)",
        _ => "",
    };
    Error::new(code, format!("{what}: {message}{label}"))
}
