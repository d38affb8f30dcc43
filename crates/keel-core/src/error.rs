//! The one error type that crosses subsystem boundaries, and the table that
//! maps each error code to its HTTP status (MLflow's codes and statuses).

use std::fmt;

/// MLflow-compatible error codes. The string form is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A parameter is missing, malformed, out of range or conflicts with stored state.
    InvalidParameterValue,
    /// The request body or query is not well-formed at all.
    BadRequest,
    /// An id or name that refers to nothing.
    ResourceDoesNotExist,
    /// A create that collides with an existing name.
    ResourceAlreadyExists,
    /// The entity exists but is in a state that forbids the operation (e.g. deleted run).
    InvalidState,
    /// A feature keel does not provide.
    NotImplemented,
    /// No valid credential was sent (HTTP 401).
    Unauthenticated,
    /// The caller is known but lacks the permission the operation needs (HTTP 403).
    PermissionDenied,
    /// Anything the caller could not have caused: storage failures, bugs.
    InternalError,
}

impl ErrorCode {
    /// Wire name, as MLflow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The code named by MLflow's wire name, if keel knows it.
    pub fn from_wire(name: &str) -> Option<ErrorCode> {
        Some(match name {
            "INVALID_PARAMETER_VALUE" => ErrorCode::InvalidParameterValue,
            "BAD_REQUEST" => ErrorCode::BadRequest,
            "RESOURCE_DOES_NOT_EXIST" => ErrorCode::ResourceDoesNotExist,
            "RESOURCE_ALREADY_EXISTS" => ErrorCode::ResourceAlreadyExists,
            "INVALID_STATE" => ErrorCode::InvalidState,
            "NOT_IMPLEMENTED" => ErrorCode::NotImplemented,
            "UNAUTHENTICATED" => ErrorCode::Unauthenticated,
            "PERMISSION_DENIED" => ErrorCode::PermissionDenied,
            "INTERNAL_ERROR" => ErrorCode::InternalError,
            _ => return None,
        })
    }

    /// HTTP status for this code: user errors are 4xx, internal ones 5xx.
    pub fn http_status(self) -> u16 {
        match self {
            // MLflow answers 400 for an existing name, not 409; clients rely on the status.
            ErrorCode::InvalidParameterValue
            | ErrorCode::BadRequest
            | ErrorCode::InvalidState
            | ErrorCode::ResourceAlreadyExists => 400,
            ErrorCode::ResourceDoesNotExist => 404,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotImplemented => 501,
            ErrorCode::InternalError => 500,
        }
    }

    /// MLflow's `error_class` companion field: the code itself, except a missing
    /// resource, which MLflow classes as `RESOURCE_NOT_FOUND`.
    pub fn error_class(self) -> &'static str {
        match self {
            ErrorCode::ResourceDoesNotExist => "RESOURCE_NOT_FOUND",
            other => other.as_str(),
        }
    }

    /// MLflow's `sqlstate` companion field.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorCode::InternalError => "KAM01",
            _ => "KAM00",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a code and a message that names the offending field, id or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

/// Result alias used across keel's libraries.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceDoesNotExist, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceAlreadyExists, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotImplemented, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
}
