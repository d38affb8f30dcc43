//! The crate's error type: every variant names the file, column or field.

use std::path::PathBuf;

/// Errors of profiling, drift and log reading.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's content is not what it should be (CSV, Parquet or JSON errors).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the row or column where known.
        message: String,
    },
    /// The current data has other columns or types than the reference.
    #[error("schema mismatch with the reference: {}", describe_mismatch(.missing, .extra, .type_changed))]
    SchemaMismatch {
        /// Reference columns absent from the current data.
        missing: Vec<String>,
        /// Current columns the reference does not have.
        extra: Vec<String>,
        /// `(column, reference kind, current kind)`.
        type_changed: Vec<(String, String, String)>,
    },
    /// Two profiles cannot be merged or compared (different layouts).
    #[error("column {column:?}: {message}")]
    Incompatible {
        /// The column.
        column: String,
        /// Why.
        message: String,
    },
    /// A setting is out of its range.
    /// Shard profiles that are not one complete set of the same data.
    #[error("shard profiles: {0}")]
    Shards(String),
    #[error("invalid setting {field}: {message}")]
    Config {
        /// The setting's path, e.g. `monitor.drift.columns.income.min_effect`.
        field: String,
        /// Why.
        message: String,
    },
    /// A data file could not be read (keel-table names the file and row).
    #[error(transparent)]
    Table(#[from] keel_table::TableError),
    /// A model folder or signature could not be used.
    #[error(transparent)]
    Learn(#[from] keel_learn::LearnError),
    /// The prediction log could not be listed or read.
    #[error(transparent)]
    Log(#[from] keel_predlog::LogError),
}

fn describe_mismatch(
    missing: &[String],
    extra: &[String],
    type_changed: &[(String, String, String)],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing columns: {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("unexpected columns: {}", extra.join(", ")));
    }
    if !type_changed.is_empty() {
        let changes: Vec<String> = type_changed
            .iter()
            .map(|(column, was, now)| format!("{column} ({was} -> {now})"))
            .collect();
        parts.push(format!("type changed: {}", changes.join(", ")));
    }
    parts.join("; ")
}

impl MonitorError {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        MonitorError::File {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MonitorError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        MonitorError::Config {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// Result with [`MonitorError`].
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;
