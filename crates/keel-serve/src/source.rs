//! Where models come from: a local path, a registered model (every
//! `models:/` form, parsed by keel-core) or a run's artifacts (`runs:/`),
//! resolved through a keel (or MLflow) tracking server's REST API,
//! downloaded through its artifact proxy into a local cache; an alias is
//! followed through keel's registry change feed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use keel_core::Stage;
use keel_core::uri::{ModelUri, ProxiedUri, RunUri, join};

use crate::ServeError;

/// What `keel serve MODEL` names: a folder or file on disk, a registered
/// model (every `models:/` form keel-core parses), or a run's artifacts
/// (`runs:/RUN_ID/PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder or file on disk.
    Path(PathBuf),
    /// `models:/NAME/VERSION`, `@ALIAS` (followed as it moves), `/latest`
    /// or `/STAGE` (resolved once, at start).
    Registry(ModelUri),
    /// `runs:/RUN_ID/PATH`: the run's artifacts under PATH.
    Run(RunUri),
}

impl ModelSource {
    /// Parses a model reference; anything but a `models:/` or `runs:/` URI is a path.
    pub fn parse(text: &str) -> Result<ModelSource, ServeError> {
        let invalid = |error: keel_core::Error| ServeError::Config(error.message);
        if ModelUri::is_model_uri(text) {
            return ModelUri::parse(text)
                .map(ModelSource::Registry)
                .map_err(invalid);
        }
        match RunUri::parse(text) {
            Some(run) => run.map(ModelSource::Run).map_err(invalid),
            None => Ok(ModelSource::Path(PathBuf::from(text))),
        }
    }

    /// Whether resolving it needs a tracking server.
    pub fn needs_registry(&self) -> bool {
        !matches!(self, ModelSource::Path(_))
    }
}

/// A client of the tracking server's registry and artifact proxy.
#[derive(Clone)]
pub struct Registry {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// One page of the registry change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// The registry's change counter now.
    pub registry_version: i64,
    /// Names of the registered models the changes touched.
    pub names: Vec<String>,
}

const MAX_FILES: usize = 1000;
const MAX_DEPTH: usize = 4;

impl Registry {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:5000`).
    pub fn new(base: &str, token: Option<String>) -> Result<Registry, ServeError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ServeError::Config(format!(
                "tracking URI {base:?} must be http:// or https:// (set --tracking-uri or MLFLOW_TRACKING_URI)"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ServeError::Registry(format!("HTTP client: {e}")))?;
        Ok(Registry {
            base,
            token,
            client,
        })
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<reqwest::Response, ServeError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.get(&url).query(query).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ServeError::Registry(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(ServeError::Registry(format!(
                "GET {url}: HTTP {status}: {}",
                body.chars().take(500).collect::<String>()
            )));
        }
        Ok(response)
    }

    async fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Value, ServeError> {
        let url = format!("{}{path}", self.base);
        self.get(path, query, timeout)
            .await?
            .json()
            .await
            .map_err(|e| ServeError::Registry(format!("GET {url}: invalid JSON: {e}")))
    }

    /// The version an alias points at.
    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<String, ServeError> {
        let reply = self
            .get_json(
                "/api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
                Duration::from_secs(30),
            )
            .await?;
        version_field(&reply).ok_or_else(|| {
            ServeError::Registry(format!(
                "alias {name}@{alias}: no model_version.version in the reply"
            ))
        })
    }

    /// The newest version of `name`, or its newest version in `stage`
    /// (`models:/NAME/latest`, `models:/NAME/STAGE`), from the registered
    /// model's `latest_versions` (one per stage).
    pub async fn latest_version(
        &self,
        name: &str,
        stage: Option<Stage>,
    ) -> Result<String, ServeError> {
        let reply = self
            .get_json(
                "/api/2.0/mlflow/registered-models/get",
                &[("name", name)],
                Duration::from_secs(30),
            )
            .await?;
        let newest = reply
            .pointer("/registered_model/latest_versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| {
                stage.is_none_or(|stage| {
                    v.get("current_stage").and_then(Value::as_str) == Some(stage.as_str())
                })
            })
            .filter_map(|v| number_field(v.get("version")?))
            .max();
        newest.map(|v| v.to_string()).ok_or_else(|| {
            ServeError::Registry(format!(
                "model {name:?} has no version{}",
                stage.map_or(String::new(), |s| format!(" in stage {}", s.as_str()))
            ))
        })
    }

    /// The registry's change counter and the model names changed after `since`,
    /// waiting up to `timeout` for a change.
    pub async fn changes(&self, since: i64, timeout: Duration) -> Result<Changes, ServeError> {
        let since_text = since.to_string();
        let timeout_text = timeout.as_millis().to_string();
        let reply = self
            .get_json(
                "/api/2.0/keel/registry/changes",
                &[("since", &since_text), ("timeout_ms", &timeout_text)],
                timeout + Duration::from_secs(15),
            )
            .await?;
        let registry_version = reply
            .get("registry_version")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| {
                ServeError::Registry("change feed reply has no registry_version".into())
            })?;
        let names = reply
            .get("changes")
            .and_then(Value::as_array)
            .map(|changes| {
                changes
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Changes {
            registry_version,
            names,
        })
    }

    /// Downloads version `version` of `name` into
    /// `cache/<name>/<version>-<digest>/` and returns the folder. The digest
    /// is of the server and the version's artifact URI, so a cache shared by
    /// replicas of different servers never hands one server's `risk/3` to
    /// another; a complete folder is reused without downloading again.
    pub async fn download(
        &self,
        name: &str,
        version: &str,
        cache: &Path,
    ) -> Result<PathBuf, ServeError> {
        let reply = self
            .get_json(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
                Duration::from_secs(30),
            )
            .await?;
        let uri = reply
            .get("artifact_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ServeError::Registry(format!("{name}/{version}: no artifact_uri in the reply"))
            })?;
        let target = cache.join(safe_name(name)).join(format!(
            "{}-{}",
            safe_name(version),
            self.source_digest(uri)
        ));
        if target.join(COMPLETE_MARKER).is_file() {
            return Ok(target);
        }
        self.download_into(uri, &target).await
    }

    /// 16 hex digits of BLAKE3 over this server's base URL and an artifact URI:
    /// what a cached download is keyed by.
    fn source_digest(&self, uri: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.base.as_bytes());
        hasher.update(b"\n");
        hasher.update(uri.as_bytes());
        hasher.finalize().to_hex()[..16].to_string()
    }

    /// Downloads a run's artifacts under `run.path` into
    /// `cache/runs:RUN_ID/PATH/` (reused when already complete).
    pub async fn download_run(&self, run: &RunUri, cache: &Path) -> Result<PathBuf, ServeError> {
        let target = cache
            .join(safe_name(&format!("runs:{}", run.run_id)))
            .join(safe_name(if run.path.is_empty() { "." } else { &run.path }));
        if target.join(COMPLETE_MARKER).is_file() {
            return Ok(target);
        }
        let reply = self
            .get_json(
                "/api/2.0/mlflow/runs/get",
                &[("run_id", &run.run_id)],
                Duration::from_secs(30),
            )
            .await?;
        let root = reply
            .pointer("/run/info/artifact_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ServeError::Registry(format!("run {}: no artifact_uri in the reply", run.run_id))
            })?;
        self.download_into(&run.under(root), &target).await
    }

    /// Fetches artifact URI `uri` into `target` through a staging folder
    /// renamed into place once complete.
    async fn download_into(&self, uri: &str, target: &Path) -> Result<PathBuf, ServeError> {
        let parent = target
            .parent()
            .ok_or_else(|| ServeError::Config("cache folder has no parent".into()))?
            .to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| ServeError::io(&parent, e))?;
        let staging = parent.join(format!(
            ".download-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = self.fetch_tree(uri, &staging).await;
        if let Err(error) = result {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(error);
        }
        tokio::fs::write(staging.join(COMPLETE_MARKER), uri.as_bytes())
            .await
            .map_err(|e| ServeError::io(&staging, e))?;
        if tokio::fs::rename(&staging, target).await.is_err() {
            // Another download finished first: keep it.
            let _ = tokio::fs::remove_dir_all(&staging).await;
            if !target.join(COMPLETE_MARKER).is_file() {
                return Err(ServeError::io(
                    target,
                    std::io::Error::other("cannot move the download into place"),
                ));
            }
        }
        Ok(target.to_path_buf())
    }

    /// Copies everything under artifact URI `uri` into `folder`.
    async fn fetch_tree(&self, uri: &str, folder: &Path) -> Result<(), ServeError> {
        if let Some(proxied) = ProxiedUri::parse(uri) {
            // Served by this tracking server's proxy (a host in the URI is
            // the server that wrote it: this one, seen from elsewhere).
            let root = proxied.map_err(|e| ServeError::Registry(e.message))?.path;
            let mut pending = vec![(String::new(), 0usize)];
            let mut files = 0usize;
            while let Some((relative, depth)) = pending.pop() {
                let listed = join(&root, &relative);
                let reply = self
                    .get_json(
                        "/api/2.0/mlflow-artifacts/artifacts",
                        &[("path", &listed)],
                        Duration::from_secs(60),
                    )
                    .await?;
                let entries = reply
                    .get("files")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for entry in entries {
                    let Some(path) = entry.get("path").and_then(Value::as_str) else {
                        continue;
                    };
                    // The proxy lists names relative to the folder asked for.
                    let name = path.rsplit('/').next().unwrap_or(path);
                    if name.is_empty() || name == "." || name == ".." {
                        continue;
                    }
                    let child = join(&relative, name);
                    if entry
                        .get("is_dir")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                    {
                        if depth + 1 < MAX_DEPTH {
                            pending.push((child, depth + 1));
                        }
                        continue;
                    }
                    files += 1;
                    if files > MAX_FILES {
                        return Err(ServeError::Registry(format!(
                            "{uri}: more than {MAX_FILES} files"
                        )));
                    }
                    self.fetch_file(&join(&root, &child), &folder.join(&child))
                        .await?;
                }
            }
            if files == 0 {
                return Err(ServeError::Registry(format!("{uri}: no files")));
            }
            return Ok(());
        }
        // A path or any other URI named by the registry is never read from
        // this host's disk: the registry would choose which of this host's
        // files keel serve copies (`/etc/passwd`).
        Err(ServeError::Registry(format!(
            "artifact URI {uri:?} is not served by the tracking server's artifact proxy \
             (mlflow-artifacts:/...); keel serve downloads registered models only through it \
             (serve a local folder by its path instead)"
        )))
    }

    async fn fetch_file(&self, artifact: &str, destination: &Path) -> Result<(), ServeError> {
        use tokio::io::AsyncWriteExt;
        let encoded = keel_core::uri::encode_path(artifact);
        let mut response = self
            .get(
                &format!("/api/2.0/mlflow-artifacts/artifacts/{encoded}"),
                &[],
                Duration::from_secs(600),
            )
            .await?;
        if let Some(parent) = destination.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ServeError::io(parent, e))?;
        }
        let mut file = tokio::fs::File::create(destination)
            .await
            .map_err(|e| ServeError::io(destination, e))?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ServeError::Registry(format!("downloading {artifact}: {e}")))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| ServeError::io(destination, e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| ServeError::io(destination, e))
    }
}

/// Marks a fully downloaded cache folder.
const COMPLETE_MARKER: &str = ".keel-download-complete";

/// An integer sent as a JSON number or string (protobuf-JSON int64).
fn number_field(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn version_field(reply: &Value) -> Option<String> {
    let version = reply.get("model_version")?.get("version")?;
    match version {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The folder (at most two levels down) holding `model.json` or a `.onnx` file.
pub fn find_model_folder(root: &Path) -> PathBuf {
    let holds_model = |dir: &Path| {
        dir.join("model.json").is_file()
            || std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    e.path()
                        .extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
                })
    };
    if !root.is_dir() || holds_model(root) {
        return root.to_path_buf();
    }
    let mut level = vec![root.to_path_buf()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for dir in &level {
            let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            children.sort();
            for child in children {
                if holds_model(&child) {
                    return child;
                }
                next.push(child);
            }
        }
        level = next;
    }
    root.to_path_buf()
}

/// A model name or version as a cache folder name: path separators and
/// dot-only names replaced.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_folder_names_stay_inside_the_cache() {
        assert_eq!(safe_name("a/../b"), "a_.._b");
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("risk"), "risk");
    }

    #[test]
    fn model_sources() {
        assert_eq!(
            ModelSource::parse("models:/risk@production").unwrap(),
            ModelSource::Registry(ModelUri::Alias {
                name: "risk".into(),
                alias: "production".into()
            })
        );
        assert_eq!(
            ModelSource::parse("models:/risk/Staging").unwrap(),
            ModelSource::Registry(ModelUri::Stage {
                name: "risk".into(),
                stage: Stage::Staging
            })
        );
        assert_eq!(
            ModelSource::parse("runs:/abc/model").unwrap(),
            ModelSource::Run(RunUri {
                run_id: "abc".into(),
                path: "model".into()
            })
        );
        assert_eq!(
            ModelSource::parse("./model").unwrap(),
            ModelSource::Path("./model".into())
        );
        for bad in [
            "models:/risk",
            "models:/risk/x",
            "models:/@a",
            "models:/r@",
            "runs:/r/../x",
        ] {
            assert!(ModelSource::parse(bad).is_err(), "{bad}");
        }
        assert!(Registry::new("ftp://x", None).is_err());
    }
}
