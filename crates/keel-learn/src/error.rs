//! The error type of keel-learn: every failure names the file, column, row or
//! setting that caused it, so the CLI can print it as is.

use std::path::PathBuf;

/// Errors from loading data, training, predicting and reading model files.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// A file could not be read or written. The cause is part of the message
    /// (not a `source()`), so a chained print names it once.
    #[error("{path}: {cause}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A table could not be read (the file, line or column is named).
    #[error(transparent)]
    Table(#[from] keel_table::TableError),
    /// The data cannot be used as asked (no rows, missing column, wrong type...).
    #[error("{0}")]
    InvalidData(String),
    /// A training or generation setting is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A model file is unreadable or of an unknown format version.
    #[error("model {path}: {message}")]
    InvalidModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl LearnError {
    pub(crate) fn data(message: impl Into<String>) -> Self {
        LearnError::InvalidData(message.into())
    }

    pub(crate) fn param(message: impl Into<String>) -> Self {
        LearnError::InvalidParameter(message.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LearnError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

/// Result alias for keel-learn.
pub type Result<T, E = LearnError> = std::result::Result<T, E>;
