//! The artifact store's error type and its mapping onto keel's error codes.
//!
//! Every variant carries a complete, human-readable message that names the
//! artifact path or store URI involved (never the server's absolute filesystem
//! path for a user error), so callers can forward it unchanged.

use keel_core::Error;

/// What can go wrong in an artifact store operation.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact path is malformed or would leave the store root
    /// (`..`, absolute, backslash, control character, symlink escape, or a
    /// file/directory clash on the local backend).
    #[error("{0}")]
    InvalidPath(String),
    /// No artifact exists at the path.
    #[error("{0}")]
    NotFound(String),
    /// The storage backend failed (I/O error, network error, S3 error) or an
    /// upload body could not be read.
    #[error("{0}")]
    Backend(String),
    /// The store URI given to [`ArtifactStore::open`](crate::ArtifactStore::open)
    /// is malformed or names an unsupported scheme.
    #[error("{0}")]
    InvalidUri(String),
}

impl From<ArtifactError> for Error {
    fn from(error: ArtifactError) -> Self {
        match error {
            ArtifactError::InvalidPath(message) | ArtifactError::InvalidUri(message) => {
                Error::invalid_parameter(message)
            }
            ArtifactError::NotFound(message) => Error::not_found(message),
            ArtifactError::Backend(message) => Error::internal(message),
        }
    }
}

/// Translates an `object_store` error for an operation on `path` (relative to
/// the store root) into an [`ArtifactError`] whose message names the path.
pub(crate) fn from_object_store(
    operation: &str,
    path: &str,
    error: object_store::Error,
) -> ArtifactError {
    match error {
        object_store::Error::NotFound { .. } => {
            ArtifactError::NotFound(format!("artifact '{path}' does not exist"))
        }
        object_store::Error::InvalidPath { source } => {
            ArtifactError::InvalidPath(format!("invalid artifact path '{path}': {source}"))
        }
        other => {
            ArtifactError::Backend(format!("failed to {operation} artifact '{path}': {other}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::ErrorCode;

    #[test]
    fn each_variant_maps_to_its_error_code_and_keeps_the_message() {
        let cases = [
            (
                ArtifactError::InvalidPath("bad 'a/../b'".into()),
                ErrorCode::InvalidParameterValue,
            ),
            (
                ArtifactError::InvalidUri("bad 'gs://x'".into()),
                ErrorCode::InvalidParameterValue,
            ),
            (
                ArtifactError::NotFound("no 'a/b'".into()),
                ErrorCode::ResourceDoesNotExist,
            ),
            (
                ArtifactError::Backend("disk 'a/b'".into()),
                ErrorCode::InternalError,
            ),
        ];
        for (artifact_error, code) in cases {
            let message = artifact_error.to_string();
            let error = Error::from(artifact_error);
            assert_eq!(error.code, code, "{message}");
            assert_eq!(error.message, message);
        }
    }

    #[test]
    fn object_store_not_found_names_the_relative_path() {
        let error = from_object_store(
            "read",
            "models/m.onnx",
            object_store::Error::NotFound {
                path: "/srv/secret/root/models/m.onnx".into(),
                source: "gone".into(),
            },
        );
        assert!(
            matches!(&error, ArtifactError::NotFound(m) if m == "artifact 'models/m.onnx' does not exist")
        );
    }
}
