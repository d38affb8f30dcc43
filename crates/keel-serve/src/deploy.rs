//! What is being served: the primary model, an optional canary (a share of the
//! traffic) and an optional shadow (mirrored, answers discarded), held as one
//! immutable [`Deployment`] behind an `RwLock<Arc<_>>`.
//!
//! **Hot-swap invariant:** a request clones the `Arc<Deployment>` once (the
//! lock is held for that clone only, never across an await) and uses that
//! snapshot to the end, so in-flight requests finish on the model they
//! started with. The follower downloads, loads and warms a new version fully
//! before taking the write lock for a pointer swap; a failed download or load
//! leaves the old deployment in place and is reported (log, metric, /health).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keel_core::uri::ModelUri;
use keel_engine::{EngineKind, InputKind, LoadedModel, ServingSignature};
use keel_predlog::{LogSettings, LoggedModel, ModelSchema, PredictionLog};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::source::{ModelSource, Registry, find_model_folder};
use crate::{ServeConfig, ServeError};

/// The role a model serves in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers the traffic.
    Primary = 0,
    /// Answers its share of the traffic.
    Canary = 1,
    /// Sees every request; its answers are logged, not returned.
    Shadow = 2,
}

impl Role {
    /// Name in the log, headers and metrics.
    pub fn as_str(self) -> &'static str {
        crate::metrics::ROLES[self as usize]
    }
}

/// One loaded model version in a role.
pub struct Served {
    pub role: Role,
    /// The URI it was loaded from.
    pub uri: String,
    /// Registered name (or the local model's name).
    pub name: String,
    /// Version, or `local`.
    pub version: String,
    /// Its schema in the prediction log (`None` with the log off).
    pub logged: Option<LoggedModel>,
    pub model: LoadedModel,
    pub loaded_at_ms: i64,
}

impl Served {
    fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "version": self.version,
            "engine": self.model.kind().as_str(),
            "uri": self.uri,
            "loaded_at_ms": self.loaded_at_ms,
        })
    }
}

/// The models being served, swapped as a whole.
pub struct Deployment {
    pub primary: Arc<Served>,
    pub canary: Option<Arc<Served>>,
    pub canary_share: f64,
    pub shadow: Option<Arc<Served>>,
}

impl Deployment {
    /// The model answering request number `n`: the canary for a `canary_share`
    /// of requests, spread evenly (golden-ratio sequence), else the primary.
    pub fn route(&self, n: u64) -> &Arc<Served> {
        match &self.canary {
            Some(canary) if canary_turn(n, self.canary_share) => canary,
            _ => &self.primary,
        }
    }

    /// The loaded model with `version` (primary, then canary, then shadow).
    pub fn by_version(&self, version: &str) -> Option<&Arc<Served>> {
        std::iter::once(&self.primary)
            .chain(self.canary.iter())
            .chain(self.shadow.iter())
            .find(|s| s.version == version)
    }
}

/// Whether request number `n` goes to the canary: the golden-ratio sequence
/// spreads a `share` of the requests evenly, without a random generator.
fn canary_turn(n: u64, share: f64) -> bool {
    (n as f64 * 0.618_033_988_749_894_9).fract() < share
}

/// What /health reports beyond the models.
#[derive(Default)]
pub struct Health {
    pub last_swap_error: Option<Value>,
    pub last_swap: Option<Value>,
    pub registry_version: Option<i64>,
    pub follow_error: Option<String>,
}

pub struct Shared {
    pub config: ServeConfig,
    deployment: RwLock<Arc<Deployment>>,
    pub metrics: Arc<Metrics>,
    pub log: Option<PredictionLog>,
    registry: Option<Registry>,
    /// The alias followed, if any.
    following: Option<(String, String)>,
    pub id_prefix: String,
    /// Numbers generated request ids.
    pub counter: AtomicU64,
    /// Numbers routed requests (canary share).
    pub routed: AtomicU64,
    pub inflight: Arc<Semaphore>,
    pub shadow_slots: Arc<Semaphore>,
    pub health: Mutex<Health>,
}

pub type State = Arc<Shared>;

impl Shared {
    /// A snapshot of what is served (the lock is held only to clone the Arc).
    pub fn deployment(&self) -> Arc<Deployment> {
        match self.deployment.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace_primary(&self, primary: Served) {
        let mut guard = match self.deployment.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = Deployment {
            primary: Arc::new(primary),
            canary: guard.canary.clone(),
            canary_share: guard.canary_share,
            shadow: guard.shadow.clone(),
        };
        *guard = Arc::new(next);
    }

    /// The /health document.
    pub fn health(&self) -> Value {
        let deployment = self.deployment();
        let health = self.health.lock().map(|h| {
            json!({
                "last_swap": h.last_swap,
                "last_swap_error": h.last_swap_error,
                "registry_version": h.registry_version,
                "follow_error": h.follow_error,
            })
        });
        let now = now_ms() as u64;
        let oldest = self.metrics.log.oldest_pending_ms.load(Ordering::Relaxed);
        json!({
            "status": "ok",
            "primary": deployment.primary.describe(),
            "canary": deployment.canary.as_ref().map(|c| {
                let mut d = c.describe();
                d["share"] = json!(deployment.canary_share);
                d
            }),
            "shadow": deployment.shadow.as_ref().map(|s| s.describe()),
            "following": self.following.as_ref().map(|(n, a)| format!("models:/{n}@{a}")),
            "registry": health.unwrap_or(Value::Null),
            "prediction_log": self.log.as_ref().map(|log| json!({
                "dir": log.location().display(),
                "replica": log.replica(),
                "spool": log.spool_dir().display().to_string(),
                "fsync": self.config.log_fsync.as_str(),
                "queue_rows": self.metrics.log.queue_rows.load(Ordering::Relaxed),
                "lag_seconds": if oldest == 0 { 0.0 } else { now.saturating_sub(oldest) as f64 / 1000.0 },
            })),
        })
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Resolves a URI to a local folder (downloading through the registry), then
/// loads and warms it in a blocking task.
async fn load(
    config: &ServeConfig,
    registry: Option<&Registry>,
    log: Option<&PredictionLog>,
    uri_text: &str,
    role: Role,
) -> Result<Served, ServeError> {
    let (folder, name, version) = resolve(config, registry, uri_text).await?;
    load_folder(
        config,
        log,
        folder,
        name,
        version,
        uri_text.to_string(),
        role,
    )
    .await
}

/// The local folder a model URI names (downloaded through the registry
/// into the cache), with the name and version it is served as.
pub(crate) async fn resolve(
    config: &ServeConfig,
    registry: Option<&Registry>,
    uri_text: &str,
) -> Result<(std::path::PathBuf, String, String), ServeError> {
    let source = ModelSource::parse(uri_text)?;
    let registry_for = || -> Result<&Registry, ServeError> {
        registry.ok_or_else(|| {
            ServeError::Config(format!(
                "{uri_text} needs a tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI"
            ))
        })
    };
    let registered = |name: &str, version: String| (name.to_string(), version);
    let (folder, name, version) = match &source {
        ModelSource::Path(path) => {
            let name = config.model_name.clone().unwrap_or_else(|| {
                let stem = if path.is_file() {
                    path.file_stem().map(|s| s.to_owned())
                } else {
                    path.canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_owned()))
                };
                stem.map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned())
            });
            (path.clone(), name, "local".to_string())
        }
        ModelSource::Run(run) => {
            let folder = registry_for()?.download_run(run, &config.cache_dir).await?;
            let name = config
                .model_name
                .clone()
                .unwrap_or_else(|| format!("run-{}", run.run_id));
            (find_model_folder(&folder), name, "local".to_string())
        }
        ModelSource::Registry(uri) => {
            let registry = registry_for()?;
            let (name, version) = match uri {
                ModelUri::Version { name, version } => registered(name, version.to_string()),
                ModelUri::Alias { name, alias } => {
                    registered(name, registry.version_by_alias(name, alias).await?)
                }
                ModelUri::Latest { name } => {
                    registered(name, registry.latest_version(name, None).await?)
                }
                ModelUri::Stage { name, stage } => {
                    registered(name, registry.latest_version(name, Some(*stage)).await?)
                }
                ModelUri::LoggedModel { model_id } => {
                    return Err(ServeError::Config(format!(
                        "{uri_text}: logged model {model_id} is not a registered version; \
                         serve models:/NAME/VERSION, or runs:/RUN_ID/PATH for a run's files"
                    )));
                }
            };
            let folder = registry
                .download(&name, &version, &config.cache_dir)
                .await?;
            (find_model_folder(&folder), name, version)
        }
    };
    Ok((folder, name, version))
}

async fn load_folder(
    config: &ServeConfig,
    log: Option<&PredictionLog>,
    folder: std::path::PathBuf,
    name: String,
    version: String,
    uri: String,
    role: Role,
) -> Result<Served, ServeError> {
    let preference = config.engine;
    let model = tokio::task::spawn_blocking(move || LoadedModel::load(&folder, preference))
        .await
        .map_err(|e| ServeError::Config(format!("model loading task failed: {e}")))??;
    tracing::info!(
        name, version, role = role.as_str(), engine = model.kind().as_str(), path = %model.path().display(),
        "model loaded and warmed up"
    );
    let logged = log.map(|log| log.register(log_schema(&name, &version, model.signature())));
    Ok(Served {
        role,
        uri,
        name,
        version,
        logged,
        model,
        loaded_at_ms: now_ms(),
    })
}

/// A model's part of the prediction-log schema.
fn log_schema(name: &str, version: &str, signature: &ServingSignature) -> ModelSchema {
    ModelSchema {
        name: name.to_string(),
        version: version.to_string(),
        inputs: signature
            .inputs
            .iter()
            .map(|input| keel_predlog::Input {
                name: input.name.clone(),
                kind: match input.kind {
                    InputKind::Numeric { .. } => keel_predlog::InputKind::Number,
                    InputKind::Categorical { .. } => keel_predlog::InputKind::Text,
                },
            })
            .collect(),
        classes: signature.classes().map(<[String]>::to_vec),
    }
}

/// Starts the prediction log (replica id from `port` unless configured) and
/// loads every model.
pub async fn start(config: ServeConfig, port: u16) -> Result<State, ServeError> {
    let registry = match &config.tracking_uri {
        Some(uri) => Some(Registry::new(uri, config.tracking_token.clone())?),
        None => None,
    };
    let following = match ModelSource::parse(&config.model_uri)? {
        ModelSource::Registry(ModelUri::Alias { name, alias }) => Some((name, alias)),
        _ => None,
    };
    // The change counter before resolving the alias: a move after this is seen.
    let registry_version = match (&following, &registry) {
        (Some(_), Some(registry)) => {
            Some(registry.changes(0, Duration::ZERO).await?.registry_version)
        }
        _ => None,
    };
    let metrics = Arc::new(Metrics::default());
    let log = match &config.log_dir {
        Some(location) => {
            let mut settings = LogSettings::new(
                location.clone(),
                config
                    .replica_id
                    .clone()
                    .unwrap_or_else(|| keel_predlog::layout::default_replica(port)),
            );
            settings.spool = config.log_spool.clone();
            settings.capacity_rows = config.log_capacity_rows;
            settings.flush_interval = config.log_flush_interval;
            settings.fsync = config.log_fsync;
            let stats = metrics.log.clone();
            let log = tokio::task::spawn_blocking(move || PredictionLog::start(settings, stats))
                .await
                .map_err(|e| {
                    ServeError::Config(format!("prediction log start-up failed: {e}"))
                })??;
            Some(log)
        }
        None => None,
    };
    let primary = load(
        &config,
        registry.as_ref(),
        log.as_ref(),
        &config.model_uri,
        Role::Primary,
    )
    .await?;
    let canary = match &config.canary {
        Some((uri, _)) => Some(Arc::new(
            load(&config, registry.as_ref(), log.as_ref(), uri, Role::Canary).await?,
        )),
        None => None,
    };
    let shadow = match &config.shadow {
        Some(uri) => Some(Arc::new(
            load(&config, registry.as_ref(), log.as_ref(), uri, Role::Shadow).await?,
        )),
        None => None,
    };
    let id_prefix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    Ok(Arc::new(Shared {
        deployment: RwLock::new(Arc::new(Deployment {
            primary: Arc::new(primary),
            canary,
            canary_share: config.canary.as_ref().map_or(0.0, |(_, share)| *share),
            shadow,
        })),
        metrics,
        log,
        registry,
        following,
        id_prefix,
        counter: AtomicU64::new(0),
        routed: AtomicU64::new(0),
        inflight: Arc::new(Semaphore::new(config.max_concurrency)),
        shadow_slots: Arc::new(Semaphore::new(config.max_shadow_inflight)),
        health: Mutex::new(Health {
            registry_version,
            ..Health::default()
        }),
        config,
    }))
}

/// Follows the primary's alias through the registry change feed, if it has one.
pub fn spawn_follower(state: &State) -> Option<tokio::task::JoinHandle<()>> {
    let (name, alias) = state.following.clone()?;
    let registry = state.registry.clone()?;
    let state = state.clone();
    Some(tokio::spawn(async move {
        let mut since = state
            .health
            .lock()
            .ok()
            .and_then(|h| h.registry_version)
            .unwrap_or(0);
        let mut backoff = Duration::from_millis(500);
        loop {
            match registry.changes(since, state.config.follow_timeout).await {
                Ok(changes) => {
                    backoff = Duration::from_millis(500);
                    let relevant =
                        changes.names.contains(&name) || changes.registry_version < since;
                    let failed_before = state
                        .health
                        .lock()
                        .is_ok_and(|h| h.last_swap_error.is_some());
                    since = changes.registry_version;
                    if let Ok(mut health) = state.health.lock() {
                        health.registry_version = Some(since);
                        health.follow_error = None;
                    }
                    if relevant || failed_before {
                        follow_alias(&state, &registry, &name, &alias).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "registry change feed unavailable; retrying");
                    if let Ok(mut health) = state.health.lock() {
                        health.follow_error = Some(error.to_string());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }))
}

/// Loads the version `name@alias` points at, if it is not the one served.
async fn follow_alias(state: &State, registry: &Registry, name: &str, alias: &str) {
    let version = match registry.version_by_alias(name, alias).await {
        Ok(version) => version,
        Err(error) => {
            // A deleted alias or model: keep serving what we have.
            record_failure(state, None, &error.to_string());
            return;
        }
    };
    if state.deployment().primary.version == version {
        if let Ok(mut health) = state.health.lock() {
            health.last_swap_error = None;
        }
        return;
    }
    let uri = format!("models:/{name}/{version}");
    let loaded = match registry
        .download(name, &version, &state.config.cache_dir)
        .await
    {
        Ok(folder) => {
            load_folder(
                &state.config,
                state.log.as_ref(),
                find_model_folder(&folder),
                name.to_string(),
                version.clone(),
                uri,
                Role::Primary,
            )
            .await
        }
        Err(error) => Err(error),
    };
    match loaded {
        Ok(served) => {
            let previous = state.deployment().primary.version.clone();
            state.replace_primary(served);
            state.metrics.swaps.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                name,
                alias,
                from = previous,
                to = version,
                "hot swap: now serving the new version"
            );
            if let Ok(mut health) = state.health.lock() {
                health.last_swap =
                    Some(json!({"from": previous, "to": version, "at_ms": now_ms()}));
                health.last_swap_error = None;
            }
        }
        Err(error) => record_failure(state, Some(&version), &error.to_string()),
    }
}

fn record_failure(state: &State, version: Option<&str>, error: &str) {
    state.metrics.load_failures.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        version,
        error,
        "cannot load the new version; the current one keeps serving"
    );
    if let Ok(mut health) = state.health.lock() {
        health.last_swap_error =
            Some(json!({"version": version, "error": error, "at_ms": now_ms()}));
    }
}

/// After the HTTP server stopped: wait for shadow work, then write the log.
pub async fn drain(state: &State) {
    let slots = state.config.max_shadow_inflight as u32;
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        state.shadow_slots.acquire_many(slots),
    )
    .await;
    if state.log.is_some() {
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(log) = &state.log {
                log.shutdown();
            }
        })
        .await;
    }
}

/// The engine's name for metrics and V2 metadata.
pub fn platform(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Native => "keel_native",
        EngineKind::Onnx => "onnx_onnxv1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_share_is_spread_evenly() {
        for share in [0.1, 0.5] {
            let hits = (0..1000u64).filter(|n| canary_turn(*n, share)).count();
            let expected = (share * 1000.0) as usize;
            assert!(hits.abs_diff(expected) <= 5, "{share}: {hits}");
            // Every window of 100 requests gets its share too.
            let window = (500..600u64).filter(|n| canary_turn(*n, share)).count();
            assert!(window.abs_diff(expected / 10) <= 2, "{share}: {window}");
        }
        assert_eq!((0..100u64).filter(|n| canary_turn(*n, 0.0)).count(), 0);
    }
}
