//! keel-table's error type: every variant names the file (and, for a
//! malformed file, the line or row) or the column involved.

use std::path::{Path, PathBuf};

/// Errors of reading and writing tables.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file could not be opened, read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (part of the message, not a `source()`, so a
        /// chained print names it once).
        cause: std::io::Error,
    },
    /// A file that is not readable as CSV or Parquet (ragged row, bad
    /// quoting, invalid UTF-8, a corrupt footer, a bad header).
    #[error("{}: {message}", path.display())]
    File {
        /// The file involved (`<input>` for a reader).
        path: PathBuf,
        /// What is wrong, with the line or row when known.
        message: String,
    },
    /// Data that cannot be used as asked (no rows, columns of different
    /// lengths, a column that is not there).
    #[error("{0}")]
    Data(String),
}

impl TableError {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Self {
        TableError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn file(path: &Path, message: impl ToString) -> Self {
        TableError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn data(message: impl Into<String>) -> Self {
        TableError::Data(message.into())
    }
}

/// Result alias of keel-table.
pub type Result<T, E = TableError> = std::result::Result<T, E>;
