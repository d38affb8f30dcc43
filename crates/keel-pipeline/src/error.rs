//! The pipeline's error type: every variant names the file, stage, path or
//! expression it is about.

use std::path::{Path, PathBuf};

use keel_yaml::YamlError;

/// Errors of loading, checking, running and gating a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// keel.yaml, params.yaml or keel.lock is malformed (with `file:line:column`).
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// The pipeline is inconsistent (cycle, duplicate output, missing input).
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] keel_data::DataError),
    #[error(transparent)]
    Validate(#[from] keel_validate::ValidateError),
    /// A metrics file is missing or not JSON, or a gated metric is absent.
    #[error("{0}")]
    Metrics(String),
    /// The metadata store refused a call.
    #[error("metadata store: {0}")]
    Store(#[from] keel_core::Error),
    #[error("artifacts: {0}")]
    Artifacts(#[from] keel_artifacts::ArtifactError),
}

impl PipelineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
