//! What runs around every request: the bearer tokens (health checks are
//! open; `/feedback` may have its own), the bounds on work (requests in flight → 503 with `Retry-After`,
//! request time → 504), and the answer for unknown routes.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::deploy::State as AppState;
use crate::metrics::ErrorKind;

pub(super) async fn bound(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.inflight.clone().try_acquire_owned() else {
        state.metrics.error(ErrorKind::Overloaded);
        let message = format!(
            "The server is saturated ({} requests in flight); retry later",
            state.config.max_concurrency
        );
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message, "error": message})),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.error(ErrorKind::Timeout);
            let message = format!(
                "The request took longer than {} ms",
                state.config.request_timeout.as_millis()
            );
            (
                StatusCode::GATEWAY_TIMEOUT,
                axum::Json(json!({"error_code": "DEADLINE_EXCEEDED", "message": message, "error": message})),
            )
                .into_response()
        }
    }
}

/// Counts what keel-http's body buffering refused (413, 503, 408, 400) in
/// `/metrics`, as the routes count their own errors.
pub(super) async fn count_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(refusal) = response.extensions().get::<keel_http::Refusal>() {
        state.metrics.error(match refusal {
            keel_http::Refusal::TooLarge => ErrorKind::TooLarge,
            keel_http::Refusal::Busy => ErrorKind::Overloaded,
            keel_http::Refusal::TimedOut => ErrorKind::Timeout,
            keel_http::Refusal::Unreadable => ErrorKind::BadRequest,
        });
    }
    response
}

/// The bearer tokens: `/feedback` takes the feedback token when one is set
/// (the prediction token is then refused there), every other route but the
/// health checks the prediction token. Tokens are compared in constant time.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = matches!(
        path,
        "/ping" | "/health" | "/v2/health/live" | "/v2/health/ready"
    );
    let config = &state.config;
    let (expected, which) = if path == "/feedback" && config.feedback_token.is_some() {
        (config.feedback_token.as_deref(), "the feedback token")
    } else {
        (config.auth_token.as_deref(), "the server's token")
    };
    if let Some(expected) = expected
        && !open
        && !keel_http::bearer_matches(request.headers(), expected)
    {
        let message =
            format!("This endpoint requires 'Authorization: Bearer <token>' with {which}");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error_code": "UNAUTHENTICATED", "message": message, "error": message}),
            ),
        )
            .into_response();
    }
    next.run(request).await
}

pub(super) async fn not_found(request: Request) -> Response {
    let message = format!("No endpoint {} {}", request.method(), request.uri().path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error_code": "ENDPOINT_NOT_FOUND", "message": message, "error": message}),
        ),
    )
        .into_response()
}
