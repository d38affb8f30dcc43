//! A failed request, rendered in its protocol's error shape: MLflow's
//! `{"error_code", "message"}` or the Open Inference Protocol's `{"error"}`,
//! counted by kind in `/metrics`.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::contract::ContractError;
use crate::deploy::State as AppState;
use crate::metrics::{ErrorKind, Protocol};

pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    kind: ErrorKind,
    protocol: Protocol,
}

impl ApiError {
    pub fn new(
        protocol: Protocol,
        kind: ErrorKind,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            kind,
            protocol,
        }
    }

    pub fn bad_request(protocol: Protocol, message: impl Into<String>) -> Self {
        ApiError::new(
            protocol,
            ErrorKind::BadRequest,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            message,
        )
    }

    pub fn internal(protocol: Protocol, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError::new(
            protocol,
            kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            message,
        )
    }

    pub fn unavailable(protocol: Protocol, message: impl Into<String>) -> Self {
        ApiError::new(
            protocol,
            ErrorKind::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            message,
        )
    }

    pub fn from_contract(protocol: Protocol, error: ContractError) -> Self {
        let kind = if error.violation {
            ErrorKind::Contract
        } else {
            ErrorKind::BadRequest
        };
        ApiError::new(
            protocol,
            kind,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            error.message,
        )
    }

    pub fn from_body(protocol: Protocol, rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::TooLarge
        } else {
            ErrorKind::BadRequest
        };
        ApiError::new(protocol, kind, status, "BAD_REQUEST", rejection.body_text())
    }

    pub fn render(self, state: &AppState, request_id: Option<&str>) -> Response {
        state.metrics.error(self.kind);
        let body = match self.protocol {
            Protocol::Mlflow => json!({"error_code": self.code, "message": self.message}),
            Protocol::V2 => json!({"error": self.message}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            response.headers_mut().insert("x-request-id", id);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
