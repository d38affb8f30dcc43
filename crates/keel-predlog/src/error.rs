//! The crate's error type; every variant names the file, folder or setting.

/// Errors of writing and reading the logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A setting is invalid (replica id, location).
    #[error("{0}")]
    Config(String),
    /// A spool file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The log root (local or S3) failed.
    #[error("prediction log: {0}")]
    Store(#[from] keel_artifacts::ArtifactError),
    /// A log file is not in the format (or of a newer major version).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, naming the column where known.
        message: String,
    },
}

impl LogError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn format(path: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        LogError::Format {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// Result with [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;
