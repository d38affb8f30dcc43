//! keel-ui: the web UI, compiled into the binary.
//!
//! Server-rendered HTML (maud templates, checked at compile time) with SVG
//! charts from keel-chart and one small hand-written script and stylesheet
//! (`assets/`, embedded with `include_str!`). Every page has a real URL and
//! works without JavaScript; the script adds the hash router that maps
//! MLflow's client-side links (`/#/experiments/1/runs/…`) onto those URLs,
//! run selection and small conveniences. `keel-server` mounts [`pages`] at `/`
//! behind its authentication middleware, so every handler finds the caller in
//! its request's extensions and asks [`access`] what that caller may read.
//!
//! Reads go through keel-store's and keel-artifacts' typed APIs only: no SQL
//! here, no file access, no writes.

pub mod access;
mod artifacts;
mod assets;
mod charts;
mod compare;
mod experiments;
mod html;
mod models;
mod query;
mod run;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use keel_server::AppState;

/// Most rows a runs table shows per page.
pub const MAX_PAGE_ROWS: i64 = 500;

/// Every page and asset of the UI, to be mounted at `/` by keel-server
/// ([`keel_server::router_with_pages`]).
pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/", get(experiments::home))
        .route("/experiments/{experiment_id}", get(experiments::runs))
        .route("/experiments/{experiment_id}/runs/{run_id}", get(run::page))
        .route(
            "/experiments/{experiment_id}/runs/{run_id}/artifacts",
            get(artifacts::root),
        )
        .route(
            "/experiments/{experiment_id}/runs/{run_id}/artifacts/{*path}",
            get(artifacts::page),
        )
        .route(
            "/experiments/{experiment_id}/runs/{run_id}/raw/{*path}",
            get(artifacts::raw),
        )
        .route("/runs/{run_id}", get(run::direct))
        .route("/compare-runs", get(compare::page))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::model))
        .route("/models/{name}/versions/{version}", get(models::version))
        .route("/static/{file}", get(assets::serve))
        .layer(middleware::from_fn(security_headers))
}

/// The content security policy of every page: scripts, styles and frames
/// from this server only, no inline script, no plugins. A raw artifact sets
/// its own (stricter) policy, which is kept.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                           frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                           frame-ancestors 'self'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
