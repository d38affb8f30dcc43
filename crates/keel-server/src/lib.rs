//! keel-server: the HTTP layer, thin by design.
//!
//! Routes, authentication, request parsing, entity ↔ JSON, and error-code →
//! HTTP-status mapping for the MLflow-compatible REST API (`/api/2.0/mlflow/...`
//! and its `/ajax-api/...` twin) and the artifact proxy
//! (`/api/2.0/mlflow-artifacts/...`). Every decision about data lives in
//! `keel-store` and `keel-artifacts`; this crate holds no SQL and touches no
//! files itself.

mod artifacts;
pub mod auth;
mod dto;
mod error;
mod json_out;
mod keel_api;
mod registry;
mod request;
mod tls;
mod tracking;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};
use keel_artifacts::ArtifactStore;
use keel_core::Error;
use keel_store::{Store, StoreConfig};

pub use error::ApiError;
pub use keel_api::{promote_as, rollback_as};
pub use keel_http::Limits;
use keel_http::{BodyBudget, Envelope};

/// Largest JSON request body accepted (a full log-batch is far smaller).
pub const MAX_JSON_BODY: usize = 32 * 1024 * 1024;

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub artifacts: ArtifactStore,
    /// Authentication and permissions (open, shared token or basic-auth).
    pub auth: auth::SharedAuth,
    /// The registry change counter as last seen; long polls wait on it.
    registry: Arc<tokio::sync::watch::Sender<i64>>,
    /// Wakes the follower at once after a registry write through this server.
    registry_nudge: Arc<tokio::sync::Notify>,
    /// Aliases that move only by the promotion rule, on every API.
    protected_aliases: Arc<Vec<String>>,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub backend_store_uri: String,
    pub artifacts_destination: String,
    pub host: String,
    pub port: u16,
    /// Bearer token required on every request but `/health` when set
    /// (an empty token counts as none); its holder is the admin `token`.
    pub auth_token: Option<String>,
    /// MLflow's basic-auth app (`--app-name basic-auth`): users, grants, tokens.
    pub basic_auth: Option<auth::BasicAuthConfig>,
    /// Allows a non-loopback bind without a token (explicit opt-out).
    pub allow_unauthenticated: bool,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Aliases that move only when the version's recorded gates passed
    /// (MLflow's set-alias included): [`DEFAULT_PROTECTED_ALIASES`] by default.
    pub protected_aliases: Vec<String>,
}

/// A certificate chain and its private key, PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl ServerConfig {
    fn auth_settings(&self) -> auth::AuthSettings {
        auth::AuthSettings {
            shared_token: self.auth_token.clone().filter(|t| !t.is_empty()),
            basic_auth: self.basic_auth.clone(),
            secure_cookies: self.tls.is_some(),
        }
    }
}

/// How old an upload in progress must be before a starting server removes
/// it as left by a killed process.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// The aliases protected unless configured otherwise.
pub const DEFAULT_PROTECTED_ALIASES: &[&str] = &["production"];

impl AppState {
    /// Opens the store and the artifact root named in `config`.
    pub async fn open(config: &ServerConfig) -> Result<AppState, Error> {
        let store = Store::open(StoreConfig::new(&config.backend_store_uri)).await?;
        let artifacts = ArtifactStore::open(&config.artifacts_destination).map_err(Error::from)?;
        let (registry, _) = tokio::sync::watch::channel(store.registry_version().await?);
        let auth = auth::Auth::new(&config.auth_settings())?;
        auth.bootstrap(&store).await?;
        Ok(AppState {
            store,
            artifacts,
            auth: Arc::new(auth),
            registry: Arc::new(registry),
            registry_nudge: Arc::new(tokio::sync::Notify::new()),
            protected_aliases: Arc::new(config.protected_aliases.clone()),
        })
    }

    /// Whether `alias` moves only by the promotion rule.
    pub fn is_protected(&self, alias: &str) -> bool {
        self.protected_aliases.iter().any(|a| a == alias)
    }

    /// Removes, in the background, the uploads in progress that killed
    /// servers left in a local artifact root (older than
    /// [`STALE_UPLOAD_AGE`], so uploads of other live servers sharing the
    /// root are spared); logged, never fatal.
    pub fn spawn_stale_upload_sweep(&self) {
        let artifacts = self.artifacts.clone();
        tokio::spawn(async move {
            match artifacts.remove_stale_uploads(STALE_UPLOAD_AGE).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(
                        removed,
                        "removed uploads that killed processes left in the artifact root"
                    )
                }
                Err(error) => tracing::warn!(%error, "sweeping stale artifact uploads failed"),
            }
        });
    }

    /// What moving `alias` (promote, set, delete) needs on its model: MANAGE
    /// when the alias is protected, else EDIT. Rollback always needs MANAGE.
    pub fn alias_permission(&self, alias: &str) -> keel_core::access::Permission {
        if self.is_protected(alias) {
            keel_core::access::Permission::Manage
        } else {
            keel_core::access::Permission::Edit
        }
    }

    /// Tells the registry follower that this server just changed the registry.
    pub fn registry_changed(&self) {
        self.registry_nudge.notify_one();
    }

    /// A receiver of the registry change counter.
    pub fn registry_watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.registry.subscribe()
    }

    /// Follows the registry change counter: re-reads it after a local write, and
    /// every 500 ms while someone is waiting for a change (writes by other
    /// processes sharing the database). One indexed single-row read, never more.
    fn spawn_registry_follower(&self) {
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = state.registry_nudge.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if state.registry.receiver_count() == 0 {
                            continue;
                        }
                    }
                }
                if let Ok(version) = state.store.registry_version().await {
                    state.registry.send_if_modified(|current| {
                        let changed = *current != version;
                        *current = version;
                        changed
                    });
                }
            }
        });
    }
}

fn mlflow_routes(budget: &BodyBudget) -> Router<AppState> {
    use tracking::*;
    Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            post(search_experiments).get(search_experiments_get),
        )
        .route("/experiments/update", post(update_experiment))
        .route("/experiments/delete", post(delete_experiment))
        .route("/experiments/restore", post(restore_experiment))
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route(
            "/experiments/delete-experiment-tag",
            post(delete_experiment_tag),
        )
        .route("/runs/create", post(create_run))
        .route("/runs/get", get(get_run))
        .route("/runs/update", post(update_run))
        .route("/runs/delete", post(delete_run))
        .route("/runs/restore", post(restore_run))
        .route("/runs/search", post(search_runs))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-inputs", post(log_inputs))
        .route("/runs/outputs", post(log_outputs))
        .route("/runs/log-model", post(log_model))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/metrics/get-history", get(get_metric_history))
        .route(
            "/metrics/get-history-bulk-interval",
            get(get_metric_history_bulk_interval),
        )
        .route("/artifacts/list", get(artifacts::list_run_artifacts))
        .route("/logged-models", post(create_logged_model))
        .route("/logged-models/search", post(search_logged_models))
        .route(
            "/logged-models/{model_id}",
            get(get_logged_model)
                .patch(finalize_logged_model)
                .delete(delete_logged_model),
        )
        .route(
            "/logged-models/{model_id}/tags",
            patch(set_logged_model_tags),
        )
        .route(
            "/logged-models/{model_id}/tags/{key}",
            delete(delete_logged_model_tag),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(log_logged_model_params),
        )
        .route(
            "/registered-models/create",
            post(registry::create_registered_model),
        )
        .route(
            "/registered-models/get",
            get(registry::get_registered_model),
        )
        .route(
            "/registered-models/rename",
            post(registry::rename_registered_model),
        )
        .route(
            "/registered-models/update",
            patch(registry::update_registered_model),
        )
        .route(
            "/registered-models/delete",
            delete(registry::delete_registered_model),
        )
        .route(
            "/registered-models/search",
            get(registry::search_registered_models).post(registry::search_registered_models),
        )
        .route(
            "/registered-models/get-latest-versions",
            post(registry::get_latest_versions).get(registry::get_latest_versions),
        )
        .route(
            "/registered-models/set-tag",
            post(registry::set_registered_model_tag),
        )
        .route(
            "/registered-models/delete-tag",
            delete(registry::delete_registered_model_tag),
        )
        .route(
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        )
        .route(
            "/model-versions/create",
            post(registry::create_model_version),
        )
        .route("/model-versions/get", get(registry::get_model_version))
        .route(
            "/model-versions/update",
            patch(registry::update_model_version),
        )
        .route(
            "/model-versions/delete",
            delete(registry::delete_model_version),
        )
        .route(
            "/model-versions/search",
            get(registry::search_model_versions).post(registry::search_model_versions),
        )
        .route(
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        )
        .route(
            "/model-versions/set-tag",
            post(registry::set_model_version_tag),
        )
        .route(
            "/model-versions/delete-tag",
            delete(registry::delete_model_version_tag),
        )
        .route(
            "/model-versions/get-download-uri",
            get(registry::get_download_uri),
        )
        .route("/users/create", post(auth::users::create_user))
        .route("/users/get", get(auth::users::get_user))
        .route("/users/current", get(auth::users::current_user))
        .route("/users/list", get(auth::users::list_users))
        .route(
            "/users/update-password",
            patch(auth::users::update_password),
        )
        .route("/users/update-admin", patch(auth::users::update_admin))
        .route("/users/delete", delete(auth::users::delete_user))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn_with_state(
            (budget.clone(), MAX_JSON_BODY),
            keel_http::buffer_body,
        ))
}

/// MLflow's `/api/3.0/mlflow/…` routes keel serves: server-info and the
/// basic-auth app's per-user grants.
fn mlflow_v3_routes(budget: &BodyBudget) -> Router<AppState> {
    Router::new()
        .route("/server-info", get(server_info))
        .route("/users/permissions/grant", post(auth::users::grant))
        .route("/users/permissions/revoke", post(auth::users::revoke))
        .route("/users/permissions/get", get(auth::users::get_permission))
        .route(
            "/users/permissions/list",
            get(auth::users::list_permissions),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn_with_state(
            (budget.clone(), MAX_JSON_BODY),
            keel_http::buffer_body,
        ))
}

fn keel_routes(budget: &BodyBudget) -> Router<AppState> {
    Router::new()
        .route("/registry/audit", get(registry::audit))
        .route("/registry/promote", post(keel_api::promote))
        .route("/registry/gates", post(registry::record_gates))
        .route("/registry/rollback", post(keel_api::rollback))
        .route("/runs/get", get(keel_api::get_run))
        .route("/runs/lineage", get(keel_api::lineage))
        .route(
            "/monitor/verdicts",
            get(keel_api::verdicts).post(keel_api::record_verdict),
        )
        .route("/runs/search", post(keel_api::search_runs))
        .route("/model-versions/get", get(keel_api::get_model_version))
        .route(
            "/model-versions/search",
            post(keel_api::search_model_versions),
        )
        .route(
            "/model-versions/create",
            post(keel_api::create_model_version),
        )
        .route(
            "/registered-models/get",
            get(keel_api::get_registered_model),
        )
        .route(
            "/registered-models/list",
            get(keel_api::list_registered_models),
        )
        .route("/registry/changes", get(registry::changes))
        .route("/tokens/create", post(auth::users::create_token))
        .route("/tokens/list", get(auth::users::list_tokens))
        .route("/tokens/revoke", post(auth::users::revoke_token))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::from_fn_with_state(
            (budget.clone(), MAX_JSON_BODY),
            keel_http::buffer_body,
        ))
}

fn artifact_routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(artifacts::list))
        .route(
            "/artifacts/{*path}",
            get(artifacts::download)
                .put(artifacts::upload)
                .delete(artifacts::delete),
        )
        // Uploads stream to the store, so their size is bounded by storage, not memory.
        .layer(DefaultBodyLimit::disable())
}

async fn server_info() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
    }))
}

async fn not_found(request: Request) -> ApiError {
    ApiError(Error::new(
        keel_core::ErrorCode::ResourceDoesNotExist,
        format!("No endpoint {} {}", request.method(), request.uri().path()),
    ))
}

/// The whole HTTP application (the REST API only).
pub fn router(state: AppState) -> Router {
    router_with_pages(state, Router::new())
}

/// The REST API plus `pages` (the web UI, `keel-ui`), mounted at `/` behind
/// the same authentication middleware, so page handlers find the
/// [`auth::Caller`] in their request's extensions like every API handler.
pub fn router_with_pages(state: AppState, pages: Router<AppState>) -> Router {
    router_with_limits(state, pages, &Limits::default())
}

/// [`router_with_pages`] within `limits`: the JSON routes share one body
/// budget; every error answers in MLflow's envelope with a request id.
pub fn router_with_limits(state: AppState, pages: Router<AppState>, limits: &Limits) -> Router {
    let budget = BodyBudget::new(limits, Envelope::MLFLOW);
    let mlflow = mlflow_routes(&budget);
    let artifacts = artifact_routes();
    pages
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow)
        .nest("/api/2.0/mlflow-artifacts", artifacts.clone())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts)
        .nest("/api/2.0/keel", keel_routes(&budget))
        .nest("/api/3.0/mlflow", mlflow_v3_routes(&budget))
        .nest("/ajax-api/3.0/mlflow", mlflow_v3_routes(&budget))
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            Envelope::MLFLOW,
            keel_http::envelope,
        ))
        .with_state(state)
}

/// A bound, not yet running server: its address is known before it serves.
pub struct BoundServer {
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    /// Set when the server speaks HTTPS.
    tls: Option<keel_http::TlsAcceptor>,
}

impl BoundServer {
    /// Serves until `shutdown` resolves, then finishes in-flight requests and closes the store.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // keel-http's loop: the limits, the TLS handshake, and the peer
        // address in every request (the failed-login throttle keys on it).
        keel_http::serve(self.listener, self.app, self.limits, self.tls, shutdown).await
    }
}

/// Opens the store and artifact root, and binds the listening socket.
pub async fn bind(config: &ServerConfig) -> Result<(BoundServer, AppState), Error> {
    bind_with_pages(config, Router::new()).await
}

/// [`bind`], serving `pages` (the web UI) next to the API: see [`router_with_pages`].
pub async fn bind_with_pages(
    config: &ServerConfig,
    pages: Router<AppState>,
) -> Result<(BoundServer, AppState), Error> {
    bind_with_limits(config, pages, Limits::default()).await
}

/// [`bind_with_pages`] within `limits` (timeouts, connection cap, body budget).
pub async fn bind_with_limits(
    config: &ServerConfig,
    pages: Router<AppState>,
    limits: Limits,
) -> Result<(BoundServer, AppState), Error> {
    let loopback = keel_http::is_loopback(&config.host);
    if !loopback && !config.auth_settings().is_enabled() && !config.allow_unauthenticated {
        return Err(Error::invalid_parameter(format!(
            "Refusing to listen on non-loopback address '{}' without authentication: set --auth-token \
             (or KEEL_AUTH_TOKEN; an empty token counts as none) or --app-name basic-auth, or pass \
             --allow-unauthenticated",
            config.host
        )));
    }
    if !loopback && config.tls.is_none() && config.auth_settings().is_enabled() {
        tracing::warn!(
            host = %config.host,
            "credentials travel in clear text: serve HTTPS with --tls-cert and --tls-key, or put a TLS proxy in front"
        );
    }
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let state = AppState::open(config).await?;
    state.spawn_registry_follower();
    state.spawn_stale_upload_sweep();
    let address = format!(
        "{}:{}",
        config.host.trim_start_matches('[').trim_end_matches(']'),
        config.port
    );
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| Error::invalid_parameter(format!("Cannot listen on {address}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("Cannot read bound address: {e}")))?;
    Ok((
        BoundServer {
            addr,
            listener,
            app: router_with_limits(state.clone(), pages, &limits),
            limits,
            tls,
        },
        state,
    ))
}
