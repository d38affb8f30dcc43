//! keel serve's HTTP layer, one module per protocol:
//!
//! - [`mlflow`]: MLflow's scoring protocol (`POST /invocations`, `/ping`, `/version`);
//! - [`v2`]: the Open Inference Protocol (KServe V2) REST API (`/v2/...`);
//! - [`feedback`]: `POST /feedback` (labels for logged predictions);
//! - [`predict`]: the one prediction path every protocol and every role
//!   (primary, canary, shadow) goes through: parse and check against the
//!   signature, predict, flag non-finite outputs, log (the record is in the
//!   spool before the answer), mirror to the shadow, guard the output;
//! - [`middleware`]: the bearer token and the bounds on work (requests in
//!   flight → 503, request time → 504); [`error`]: each protocol's error shape.
//!
//! This module holds the router and what every protocol shares: request ids,
//! response headers, `/health` and `/metrics`.

mod error;
mod feedback;
mod middleware;
mod mlflow;
mod predict;
mod v2;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_http::{BodyBudget, Envelope};
use serde::Serialize;

use crate::deploy::{State as AppState, now_ms};
use crate::metrics::ModelInfo;
use predict::Outcome;

/// MLflow's `{"error_code", "message"}` and the Open Inference Protocol's `{"error"}` at once.
const ENVELOPE: Envelope = Envelope {
    with_error_field: true,
};

pub fn router(state: AppState) -> Router {
    let limited = Router::new()
        .route("/invocations", post(mlflow::invocations))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route("/feedback", post(feedback::feedback))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::bound,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            (
                BodyBudget::new(&state.config.limits, ENVELOPE),
                state.config.max_body_bytes,
            ),
            keel_http::buffer_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::count_refusals,
        ));
    Router::new()
        .merge(limited)
        .route("/ping", get(mlflow::ping))
        .route("/health", get(health))
        .route("/version", get(mlflow::version))
        .route("/metrics", get(metrics))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_version_ready),
        )
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            ENVELOPE,
            keel_http::envelope,
        ))
        .with_state(state)
}

/// The request's id: the client's `x-request-id` when it is a sane token,
/// else `<server prefix>-<counter>`.
fn request_id(state: &AppState, headers: &HeaderMap) -> Arc<str> {
    if let Some(given) = keel_http::client_request_id(headers) {
        return Arc::from(given);
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{}-{n:x}", state.id_prefix))
}

/// The headers of an answered prediction: request id, model version and role, flags.
fn with_headers(mut response: Response, outcome: &Outcome, request_id: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&outcome.served.version) {
        headers.insert("x-keel-model-version", value);
    }
    headers.insert(
        "x-keel-model-role",
        HeaderValue::from_static(outcome.served.role.as_str()),
    );
    if outcome.flags.any()
        && let Ok(value) = HeaderValue::from_str(&outcome.flags.summary())
    {
        headers.insert("x-keel-flags", value);
    }
    response
}

fn json_response(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Labels or numbers, serialized as a JSON list (both protocols' outputs).
#[derive(Serialize)]
#[serde(untagged)]
enum Values<'a> {
    Labels(&'a [String]),
    Numbers(&'a [f64]),
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(state.health()).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let deployment = state.deployment();
    let models: Vec<ModelInfo<'_>> = std::iter::once(&deployment.primary)
        .chain(deployment.canary.iter())
        .chain(deployment.shadow.iter())
        .map(|served| ModelInfo {
            role: served.role.as_str(),
            name: &served.name,
            version: &served.version,
            engine: served.model.kind().as_str(),
        })
        .collect();
    let text = state.metrics.render(&models, now_ms() as u64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
