//! keel-core: the vocabulary every keel subsystem shares.
//!
//! Plain entities named after MLflow's nouns (experiment, run, metric, param,
//! tag, dataset input, logged model), id generation, the error-code table and
//! the validation rules (limits, key names, model names and aliases) that
//! every entry point applies, and the one parser of model and artifact URIs
//! ([`uri`]).
//! This crate does no I/O: no database, no HTTP, no filesystem.

pub mod access;
pub mod civil;
pub mod duration;
pub mod entities;
pub mod error;
pub mod ids;
pub mod json_double;
pub mod page_token;
pub mod promotion;
pub mod uri;
pub mod validation;

pub use entities::*;
pub use error::{Error, ErrorCode, Result};

/// Milliseconds since the Unix epoch, the timestamp unit of the whole API.
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
