//! keel-serve: the model server behind `keel serve`.
//!
//! - Protocols: MLflow's scoring protocol (`POST /invocations`, `/ping`,
//!   `/health`, `/version`) and the Open Inference Protocol (KServe V2) REST
//!   API (`/v2/...`), plus Prometheus `/metrics` and `POST /feedback`.
//! - Every request is checked against the model's signature ([`contract`]),
//!   every prediction against NaN/inf, with a policy per check.
//! - Models come from a path or the registry ([`source`]); an alias is followed
//!   through the registry change feed and a new version is loaded, warmed and
//!   swapped in atomically ([`deploy`]); canary and shadow versions run beside
//!   the primary.
//! - Every answered row is in the prediction log (keel-predlog) before the
//!   answer leaves: group-committed to a local spool segment, compacted into
//!   Parquet under `--log-dir` (a folder or `s3://`) by a background thread.
//! - Batch scoring ([`batch`], `keel predict`): files through the same
//!   contract and engine, in parallel batches, to Parquet.
//! - Bounded everything: header, body and idle time and connections
//!   (keel-http's serve loop), bodies in memory at once (503 beyond), body size, rows per request, requests in flight (503
//!   beyond), request time (504), log queue (503 when full), shadow work.

pub mod batch;
pub mod contract;
mod deploy;
mod http;
pub mod metrics;
pub mod source;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use contract::{Policies, Policy};
pub use deploy::Role;
pub use keel_engine::EnginePreference;
pub use keel_predlog::FsyncPolicy;
pub use source::ModelSource;

/// Errors of starting the server and of loading models.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
    /// The tracking server failed or answered something unexpected.
    #[error("registry: {0}")]
    Registry(String),
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The model could not be loaded.
    #[error(transparent)]
    Engine(#[from] keel_engine::EngineError),
    /// Batch scoring: an input the contract refuses or that cannot be read,
    /// or an output that cannot be written (names the file and rows).
    #[error("{0}")]
    Batch(String),
    /// The prediction log could not start (spool, log location).
    #[error("prediction log: {0}")]
    Log(#[from] keel_predlog::LogError),
}

impl ServeError {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Self {
        ServeError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Everything `keel serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `models:/NAME@ALIAS`, `models:/NAME/VERSION` or a path.
    pub model_uri: String,
    /// Name to serve and log a local model under (default: its folder or file name).
    pub model_name: Option<String>,
    /// Tracking server for `models:/` URIs.
    pub tracking_uri: Option<String>,
    /// Bearer token for the tracking server.
    pub tracking_token: Option<String>,
    /// Where downloaded model versions are kept.
    pub cache_dir: PathBuf,
    /// Address to bind.
    pub host: String,
    /// Port (0 = any free port).
    pub port: u16,
    /// Bearer token required on every request but health checks (an empty
    /// token counts as none).
    pub auth_token: Option<String>,
    /// Bearer token of `POST /feedback` (labels that drive retraining), so
    /// prediction clients cannot write labels; without it `/feedback` takes
    /// `auth_token`.
    pub feedback_token: Option<String>,
    /// Allow a non-loopback bind without a token.
    pub allow_unauthenticated: bool,
    /// Which engine serves keel folders.
    pub engine: EnginePreference,
    /// Check policies.
    pub policies: Policies,
    /// A challenger model URI and the share of requests routed to it.
    pub canary: Option<(String, f64)>,
    /// A model URI mirrored off the hot path.
    pub shadow: Option<String>,
    /// Prediction log root, a folder or `s3://bucket/prefix`; `None` turns logging off.
    pub log_dir: Option<String>,
    /// Where spool segments are written before compaction (local disk);
    /// `None`: keel-predlog's default for the log root.
    pub log_spool: Option<PathBuf>,
    /// When spool writes are forced to stable storage.
    pub log_fsync: FsyncPolicy,
    /// This replica's id in the log (default `<host name>-<port>`).
    pub replica_id: Option<String>,
    /// Longest time before a logged row is in a Parquet file.
    pub log_flush_interval: Duration,
    /// Rows accepted for logging but not yet in Parquet, at most (503 beyond).
    pub log_capacity_rows: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most rows in one request.
    pub max_rows: usize,
    /// Requests handled at once; more get 503.
    pub max_concurrency: usize,
    /// Longest time for one request (504 beyond).
    pub request_timeout: Duration,
    /// Shadow predictions in flight at once; more are skipped.
    pub max_shadow_inflight: usize,
    /// How long one change-feed long poll waits.
    pub follow_timeout: Duration,
    /// Header, body and idle timeouts, the connection cap and the body budget.
    pub limits: keel_http::Limits,
}

impl ServeConfig {
    /// Defaults for serving `model_uri` on 127.0.0.1:8080.
    pub fn new(model_uri: impl Into<String>) -> Self {
        ServeConfig {
            model_uri: model_uri.into(),
            model_name: None,
            tracking_uri: None,
            tracking_token: None,
            cache_dir: default_cache_dir(),
            host: "127.0.0.1".into(),
            port: 8080,
            auth_token: None,
            feedback_token: None,
            allow_unauthenticated: false,
            engine: EnginePreference::Auto,
            policies: Policies::default(),
            canary: None,
            shadow: None,
            log_dir: Some("keel-logs".into()),
            log_spool: None,
            log_fsync: FsyncPolicy::Interval,
            replica_id: None,
            log_flush_interval: Duration::from_millis(1000),
            log_capacity_rows: 1_000_000,
            max_body_bytes: 16 * 1024 * 1024,
            max_rows: 100_000,
            max_concurrency: 1024,
            request_timeout: Duration::from_secs(30),
            max_shadow_inflight: 64,
            follow_timeout: Duration::from_secs(30),
            limits: keel_http::Limits::default(),
        }
    }
}

/// `$XDG_CACHE_HOME/keel/models`, else `~/.cache/keel/models`, else `./.keel-model-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(cache).join("keel/models");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache/keel/models");
    }
    PathBuf::from(".keel-model-cache")
}

/// A server with its models loaded and its socket bound, not yet serving.
pub struct BoundServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    state: deploy::State,
}

/// Binds the socket, starts the prediction log (its replica id defaults to
/// the host name and the bound port) and loads the models (downloading them
/// if needed). Nothing is answered before [`BoundServer::serve`].
pub async fn bind(mut config: ServeConfig) -> Result<BoundServer, ServeError> {
    config.auth_token = config.auth_token.filter(|token| !token.is_empty());
    config.feedback_token = config.feedback_token.filter(|token| !token.is_empty());
    if !keel_http::is_loopback(&config.host)
        && config.auth_token.is_none()
        && !config.allow_unauthenticated
    {
        return Err(ServeError::Config(format!(
            "Refusing to listen on non-loopback address '{}' without authentication: set --auth-token \
             (or KEEL_AUTH_TOKEN), or pass --allow-unauthenticated",
            config.host
        )));
    }
    if let Some((_, share)) = &config.canary
        && !(0.0..=1.0).contains(share)
    {
        return Err(ServeError::Config(format!(
            "--canary-share must be between 0 and 1, got {share}"
        )));
    }
    if config.auth_token.is_some() && config.feedback_token.is_none() {
        tracing::warn!(
            "/feedback accepts the prediction token: set --feedback-token (KEEL_FEEDBACK_TOKEN) \
             so that prediction clients cannot write the labels retraining learns from"
        );
    }
    let address = format!(
        "{}:{}",
        config.host.trim_start_matches('[').trim_end_matches(']'),
        config.port
    );
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| ServeError::Config(format!("Cannot listen on {address}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Config(format!("Cannot read the bound address: {e}")))?;
    let state = deploy::start(config, addr.port()).await?;
    Ok(BoundServer {
        addr,
        listener,
        state,
    })
}

impl BoundServer {
    /// The model serving as primary: (name, version).
    pub fn primary(&self) -> (String, String) {
        let deployment = self.state.deployment();
        (
            deployment.primary.name.clone(),
            deployment.primary.version.clone(),
        )
    }

    /// Serves until `shutdown` resolves; then finishes in-flight requests,
    /// waits for shadow predictions and writes the prediction log.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let follower = deploy::spawn_follower(&state);
        let app = http::router(state.clone());
        let limits = state.config.limits;
        let result = keel_http::serve(self.listener, app, limits, None, shutdown).await;
        if let Some(follower) = follower {
            follower.abort();
        }
        deploy::drain(&state).await;
        result
    }
}
