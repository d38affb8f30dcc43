//! keel-validate's error type: every variant names the file (and, for
//! YAML, line and column; for data, the row).

use std::path::{Path, PathBuf};

use keel_yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file that cannot be read (keel-table names the file and row).
    #[error(transparent)]
    Table(#[from] keel_table::TableError),
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
}

pub type Result<T, E = ValidateError> = std::result::Result<T, E>;
