//! Lineage: what a pipeline run records as its dataset input (MLflow's
//! `log_inputs`), read from the tracked path's metafile alone, so it is cheap
//! and needs neither the cache nor the lock. Recording it in the metadata
//! store is the pipeline's job, through the store's API.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::hash::HASH_NAME;
use crate::metafile::{self, Kind, Metafile};
use crate::project::Project;

/// A dataset as a run's input: which bytes exactly (digest), how big, and
/// the metafile that pins it in git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInput {
    /// Project-relative data path (e.g. `data/train`); a natural dataset name.
    pub path: String,
    /// Hash algorithm of `digest` (`blake3`).
    pub hash: &'static str,
    /// Content digest (file) or manifest digest (directory), 64 hex digits.
    pub digest: String,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// File or directory.
    pub kind: Kind,
    /// Project-relative path of the metafile: the dataset's source in git.
    pub source: String,
}

/// Looks up a tracked path (relative to `cwd`, or absolute) and returns its
/// dataset-input record. Fails with `NotTracked` if it has no metafile.
pub fn dataset_input(project: &Project, path: &Path, cwd: &Path) -> Result<DatasetInput> {
    let relative = project.resolve(path, cwd)?;
    let data = relative
        .strip_suffix(metafile::SUFFIX)
        .unwrap_or(&relative)
        .to_string();
    let source = format!("{data}{}", metafile::SUFFIX);
    let abs = project.abs(&source);
    if !abs.is_file() {
        return Err(DataError::NotTracked(project.abs(&data)));
    }
    let metafile = Metafile::read(&abs)?;
    Ok(DatasetInput {
        path: data,
        hash: HASH_NAME,
        digest: metafile.digest.to_hex(),
        size: metafile.size,
        files: metafile.files,
        kind: metafile.kind,
        source,
    })
}
