//! Local copies of registered model versions: resolves `models:/NAME@ALIAS`
//! or `models:/NAME/VERSION` in the metadata store and downloads the
//! version's files from the artifact store. Used by commands that score a
//! registered model next to a candidate (`keel evaluate --compare`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_core::ErrorCode;
use keel_store::Store;

/// A downloaded model version.
pub struct FetchedModel {
    /// `risk@production v3`-style label.
    pub label: String,
    /// Folder holding the version's files (model.json, signature.json, ...).
    pub dir: PathBuf,
}

/// Downloads the version `uri` names into `into`; `Ok(None)` when the alias
/// or version does not exist (nothing to compare with yet).
pub async fn fetch(
    store: &Store,
    artifacts_destination: &str,
    uri: &str,
    into: &Path,
) -> anyhow::Result<Option<FetchedModel>> {
    let version = match store.resolve_model_uri(uri).await {
        Ok(version) => version,
        Err(error) if error.code == ErrorCode::ResourceDoesNotExist => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let location = store.version_artifact_uri(&version).await?;
    let (artifacts, path) = keel_artifacts::resolve_artifact_uri(&location, artifacts_destination)?;
    let files = artifacts
        .list_recursive(&path)
        .await
        .with_context(|| format!("listing {}", version.source))?;
    if files.is_empty() {
        bail!(
            "{uri} (version {}) has no files at {}",
            version.version,
            version.source
        );
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{}/", path.trim_end_matches('/'))
    };
    for file in files.iter().filter(|f| !f.is_dir) {
        let relative = file.path.strip_prefix(&prefix).unwrap_or(&file.path);
        let target = into.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let bytes = artifacts
            .get_bytes(&file.path)
            .await
            .with_context(|| format!("downloading {}", file.path))?;
        std::fs::write(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(Some(FetchedModel {
        label: format!(
            "{} v{}",
            uri.trim_start_matches(keel_core::uri::MODELS_SCHEME),
            version.version
        ),
        dir: into.to_path_buf(),
    }))
}
