//! Local copies of registered model versions: resolves `models:/NAME@ALIAS`
//! or `models:/NAME/VERSION` through keel-client (a keel server or the
//! database) and downloads the version's files. Used by commands that score a
//! registered model next to a candidate (`keel evaluate --compare`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_client::Client;
use keel_core::ErrorCode;

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
    client: &Client,
    uri: &str,
    into: &Path,
) -> anyhow::Result<Option<FetchedModel>> {
    let resolved = match client.resolve_model_uri(uri).await {
        Ok(resolved) => resolved,
        Err(error) if error.code == ErrorCode::ResourceDoesNotExist => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let version = resolved.model_version;
    let files = client
        .download(&resolved.artifact_uri, into)
        .await
        .with_context(|| format!("downloading {}", version.source))?;
    if files == 0 {
        bail!(
            "{uri} (version {}) has no files at {}",
            version.version,
            version.source
        );
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

/// The files of the version `uri` names, downloaded once per version into
/// `cache/NAME/vVERSION` (a folder renamed into place when complete, so a
/// crash never leaves a half folder in use); `Ok(None)` when the alias or
/// version does not exist. Followers that ask again after an alias moves
/// get the new version's folder.
pub async fn cached(
    client: &Client,
    uri: &str,
    cache: &Path,
) -> anyhow::Result<Option<FetchedModel>> {
    let resolved = match client.resolve_model_uri(uri).await {
        Ok(resolved) => resolved,
        Err(error) if error.code == ErrorCode::ResourceDoesNotExist => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let version = resolved.model_version;
    let label = format!(
        "{} v{}",
        uri.trim_start_matches(keel_core::uri::MODELS_SCHEME),
        version.version
    );
    let dir = cache
        .join(&version.name)
        .join(format!("v{}", version.version));
    if dir.is_dir() {
        return Ok(Some(FetchedModel { label, dir }));
    }
    let parent = dir.parent().unwrap_or(cache);
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = tempfile::tempdir_in(parent).context("creating a download folder")?;
    let files = client
        .download(&resolved.artifact_uri, partial.path())
        .await
        .with_context(|| format!("downloading {}", version.source))?;
    if files == 0 {
        bail!(
            "{uri} (version {}) has no files at {}",
            version.version,
            version.source
        );
    }
    let partial = partial.keep();
    if let Err(error) = std::fs::rename(&partial, &dir) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another process may have put the same version in place first.
        if !dir.is_dir() {
            return Err(error).with_context(|| format!("moving the download to {}", dir.display()));
        }
    }
    Ok(Some(FetchedModel { label, dir }))
}
