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
//! here, no file access. The only writes are the registry's promote and
//! rollback buttons, which go through keel-server's `promote_as` /
//! `rollback_as` (the REST API's and the CLI's code) after the same
//! permission rule, and the login form's session (keel-server's `Auth`).
//! Every state-changing request passes [`csrf_guard`]: same origin, and the
//! caller's CSRF token in the form.

pub mod access;
mod artifacts;
mod assets;
mod charts;
mod compare;
mod experiments;
mod html;
mod logged_model;
mod login;
mod models;
mod monitoring;
mod query;
mod run;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_server::auth::session::{Csrf, Session, same_origin};

use crate::html::PageError;

/// Largest form body a page accepts (a promotion's reason, a login).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

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
        .route(
            "/experiments/{experiment_id}/models/{model_id}",
            get(logged_model::page),
        )
        .route("/runs/{run_id}", get(run::direct))
        .route("/compare-runs", get(compare::page))
        .route("/models", get(models::list))
        .route("/models/{name}", get(models::model))
        .route("/models/{name}/versions/{version}", get(models::version))
        .route("/models/{name}/promote", post(models::promote))
        .route("/models/{name}/rollback", post(models::rollback))
        .route("/monitoring", get(monitoring::list))
        .route("/monitoring/{model}", get(monitoring::model))
        .route(
            "/monitoring/{model}/verdicts/{id}",
            get(monitoring::verdict),
        )
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/static/{file}", get(assets::serve))
        .layer(middleware::from_fn(csrf_guard))
        .layer(middleware::from_fn(viewer_scope))
        .layer(middleware::from_fn(security_headers))
}

/// Makes the caller (user, CSRF token, session) the viewer of the page built.
async fn viewer_scope(request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let viewer = html::Viewer {
        user: extensions
            .get::<Caller>()
            .filter(|c| c.authenticated)
            .map(|c| c.user.clone()),
        csrf: extensions.get::<Csrf>().map(|c| c.0.clone()),
        session: extensions.get::<Session>().is_some(),
    };
    html::with_viewer(viewer, next.run(request)).await
}

/// Every state-changing request to a page: from this server's own pages
/// (`Origin`, when sent, is this server), and, but for the login form
/// (which has no session yet), carrying the caller's CSRF token in its
/// `csrf` form field. The body is read (at most [`MAX_FORM_BYTES`]) and
/// handed on unchanged.
async fn csrf_guard(request: Request, next: Next) -> Response {
    let method = request.method();
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return next.run(request).await;
    }
    if !same_origin(request.headers()) {
        return PageError::Refused(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; keel accepts forms from its own pages only."
                .into(),
        )
        .into_response();
    }
    if request.uri().path() == "/login" {
        return next.run(request).await;
    }
    let expected = request.extensions().get::<Csrf>().cloned();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return PageError::Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("A form is at most {MAX_FORM_BYTES} bytes."),
        )
        .into_response();
    };
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !expected.is_some_and(|csrf| csrf.matches(&sent)) {
        return PageError::Refused(
            StatusCode::FORBIDDEN,
            "This form is stale or was not sent by one of keel's pages (its CSRF token is \
             missing or wrong): reload the page and try again."
                .into(),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
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
