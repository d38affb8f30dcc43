//! Turning `keel_core::Error` into MLflow's error envelope:
//! `{"error_code": "...", "message": "...", "sqlstate": "...", "error_class": "..."}`.
//! An internal error's message never reaches the client: it is logged with
//! the request id (keel-http's), and the client gets that id instead.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_core::{Error, ErrorCode};

/// The error type every handler returns.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError(error)
    }
}

impl From<keel_artifacts::ArtifactError> for ApiError {
    fn from(error: keel_artifacts::ArtifactError) -> Self {
        ApiError(error.into())
    }
}

/// Handler result alias.
pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code: ErrorCode = self.0.code;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if code == ErrorCode::InternalError {
            // The cause (a database's or a storage's error text) stays in the
            // log; the client gets the request id to quote.
            let request_id = keel_http::current_request_id();
            let request_id = request_id.as_deref().unwrap_or("none");
            tracing::error!(request_id, error_code = code.as_str(), message = %self.0.message, "request failed");
            format!(
                "Internal error (request id {request_id}); the server's log has the cause under this id"
            )
        } else {
            self.0.message
        };
        let body = serde_json::json!({
            "error_code": code.as_str(),
            "message": message,
            "sqlstate": code.sqlstate(),
            "error_class": code.error_class(),
        });
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
