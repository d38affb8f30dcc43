//! keel-validate's error type: every variant names the file (and, for
//! YAML, line and column; for data, the row).

use std::path::{Path, PathBuf};

use crate::yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file that cannot be read as CSV or Parquet.
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    /// A malformed schema file.
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

impl ValidateError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ValidateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn data(path: &Path, message: impl Into<String>) -> Self {
        ValidateError::Data {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = ValidateError> = std::result::Result<T, E>;
