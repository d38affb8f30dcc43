//! Remotes through the `object_store` crate: a local directory (`/path`,
//! `./relative`, `file:///path`) or S3 (`s3://bucket/prefix`, credentials
//! and region from the usual `AWS_*` environment variables). The layout is
//! the cache's: `blake3/ab/cdef…`.
//!
//! Transfers run concurrently (`jobs` at a time) and move only what the other
//! side lacks, so an interrupted push or pull is resumed by running it again.
//! Every downloaded object is hashed before it enters the cache; a corrupt
//! one is reported by name and dropped. Large objects are fsynced on both
//! sides (a local-directory remote writes them with `with_fsync`); small ones
//! rely on the hash check, as in the cache. Local objects are hashed as they are
//! uploaded, so a corrupt cache object is never spread to a remote.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::{DataError, Result};
use crate::hash::{Digest, HASH_NAME, StreamHasher};
use crate::metafile::Kind;
use crate::progress;
use crate::workspace::{CheckoutReport, Workspace, join};

/// Objects larger than this go up in parts and come down as a stream.
const LARGE_OBJECT: u64 = 16 << 20;
const PART: usize = 8 << 20;

/// An opened remote.
pub struct Remote {
    /// Its name in the config.
    pub name: String,
    /// Its URL.
    pub url: String,
    store: Arc<dyn ObjectStore>,
    /// The same store for large objects: a local directory fsyncs them.
    large_store: Arc<dyn ObjectStore>,
}

/// Opens the named (or default) remote. A local directory is created when
/// `create` is set (push); otherwise a missing one is an error.
pub fn open_remote(workspace: &Workspace, name: Option<&str>, create: bool) -> Result<Remote> {
    let (name, url) = workspace.config().remote_url(name)?;
    let bad = |reason: &str| DataError::BadRemoteUrl {
        url: url.clone(),
        reason: reason.into(),
    };
    let mut large_store = None;
    let store: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_url(format!("s3://{bucket}"))
            .build()
            .map_err(|source| DataError::Remote {
                remote: name.clone(),
                source,
            })?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        }
    } else if url.contains("://") && !url.starts_with("file://") {
        return Err(bad(
            "unsupported scheme (use a local directory, file:// or s3://)",
        ));
    } else {
        let raw = url.strip_prefix("file://").unwrap_or(&url);
        let path = PathBuf::from(raw);
        let path = if path.is_absolute() {
            path
        } else {
            workspace.project().root().join(path)
        };
        if create {
            std::fs::create_dir_all(&path).map_err(|error| DataError::io(&path, error))?;
        } else if !path.is_dir() {
            return Err(DataError::Invalid(format!(
                "remote `{name}`: directory {} does not exist (nothing was pushed there yet?)",
                path.display()
            )));
        }
        let local =
            object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(|source| {
                DataError::Remote {
                    remote: name.clone(),
                    source,
                }
            })?;
        let durable = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|source| DataError::Remote {
                remote: name.clone(),
                source,
            })?
            .with_fsync(true);
        large_store = Some(Arc::new(durable) as Arc<dyn ObjectStore>);
        Arc::new(local)
    };
    let large_store = large_store.unwrap_or_else(|| store.clone());
    Ok(Remote {
        name,
        url,
        store,
        large_store,
    })
}

fn key(digest: &Digest) -> StorePath {
    StorePath::from(format!("{HASH_NAME}/{}", digest.shard_path()))
}

/// One object to transfer and the workspace path it is for.
#[derive(Debug, Clone)]
struct Wanted {
    digest: Digest,
    size: u64,
    label: String,
}

/// Result of a push or fetch.
#[derive(Debug, Clone, Default)]
pub struct TransferReport {
    /// Objects moved.
    pub transferred: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Objects the other side already had.
    pub skipped: u64,
    /// Objects that failed verification (path, digest), not stored.
    pub corrupt: Vec<(String, Digest)>,
    /// Objects the source does not have (path, digest).
    pub missing: Vec<(String, Digest)>,
    /// Other per-object failures, as messages.
    pub failed: Vec<String>,
    /// Objects hashed and moved by this transfer.
    pub verified: Vec<Digest>,
}

impl TransferReport {
    /// True when nothing was corrupt, missing or failed.
    pub fn is_complete(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.failed.is_empty()
    }
}

/// The objects the targets need: (data objects, manifest objects). Manifests
/// not in the local cache are listed in `manifests` but their entries are not.
fn needed(workspace: &Workspace, targets: &[String]) -> Result<(Vec<Wanted>, Vec<Wanted>)> {
    let mut data = Vec::new();
    let mut manifests = Vec::new();
    let mut seen = HashSet::new();
    for tracked in workspace.tracked(targets)? {
        match tracked.metafile.kind {
            Kind::File => {
                if seen.insert(tracked.metafile.digest) {
                    data.push(Wanted {
                        digest: tracked.metafile.digest,
                        size: tracked.metafile.size,
                        label: tracked.path.clone(),
                    });
                }
            }
            Kind::Directory => {
                let manifest_bytes = workspace
                    .cache()
                    .object_path(&tracked.metafile.digest)
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(0);
                manifests.push(Wanted {
                    digest: tracked.metafile.digest,
                    size: manifest_bytes,
                    label: format!("{} (manifest)", tracked.path),
                });
                if let Some(manifest) = workspace.manifest(&tracked.metafile.digest)? {
                    for entry in manifest.entries {
                        if seen.insert(entry.digest) {
                            data.push(Wanted {
                                digest: entry.digest,
                                size: entry.size,
                                label: join(&tracked.path, &entry.path),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok((data, manifests))
}

async fn remote_objects(remote: &Remote) -> Result<HashSet<Digest>> {
    let prefix = StorePath::from(HASH_NAME);
    let metas: Vec<object_store::ObjectMeta> = remote
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| DataError::Remote {
            remote: remote.name.clone(),
            source,
        })?;
    Ok(metas
        .iter()
        .filter_map(|meta| {
            let mut parts = meta.location.parts();
            let _algorithm = parts.next()?;
            let shard = parts.next()?;
            let rest = parts.next()?;
            format!("{}{}", shard.as_ref(), rest.as_ref()).parse().ok()
        })
        .collect())
}

/// `keel data push`: uploads the objects of `targets` (all tracked paths when
/// empty) that the remote lacks. Manifests go last, so a remote that has a
/// manifest has every file it lists.
pub async fn push(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
) -> Result<TransferReport> {
    let (data, manifests) = needed(workspace, targets)?;
    let present = remote_objects(remote).await?;
    let mut report = TransferReport::default();
    for (index, batch) in [data, manifests].into_iter().enumerate() {
        if index == 1 && !report.is_complete() {
            let labels: Vec<String> = batch
                .iter()
                .filter(|wanted| !present.contains(&wanted.digest))
                .map(|wanted| wanted.label.clone())
                .collect();
            if !labels.is_empty() {
                report.failed.push(format!(
                    "not pushed until all their files are: {}",
                    labels.join(", ")
                ));
            }
            break;
        }
        let (missing_on_remote, already): (Vec<Wanted>, Vec<Wanted>) = batch
            .into_iter()
            .partition(|wanted| !present.contains(&wanted.digest));
        report.skipped += already.len() as u64;
        let total = missing_on_remote.iter().map(|wanted| wanted.size).sum();
        let bar = progress::bytes_bar(workspace.progress(), total, "push");
        let results: Vec<(Wanted, Result<Outcome>)> = futures::stream::iter(missing_on_remote)
            .map(|wanted| {
                let bar = &bar;
                async move {
                    let result = upload(workspace, remote, &wanted).await;
                    bar.inc(wanted.size);
                    (wanted, result)
                }
            })
            .buffer_unordered(jobs.max(1))
            .collect()
            .await;
        bar.finish_and_clear();
        tally(&mut report, results);
    }
    Ok(report)
}

enum Outcome {
    Done(u64),
    Corrupt,
    Missing,
}

fn tally(report: &mut TransferReport, results: Vec<(Wanted, Result<Outcome>)>) {
    for (wanted, result) in results {
        match result {
            Ok(Outcome::Done(bytes)) => {
                report.transferred += 1;
                report.bytes += bytes;
                report.verified.push(wanted.digest);
            }
            Ok(Outcome::Corrupt) => report.corrupt.push((wanted.label, wanted.digest)),
            Ok(Outcome::Missing) => report.missing.push((wanted.label, wanted.digest)),
            Err(error) => report.failed.push(format!("{}: {error}", wanted.label)),
        }
    }
    report.corrupt.sort();
    report.missing.sort();
    report.failed.sort();
}

async fn upload(workspace: &Workspace, remote: &Remote, wanted: &Wanted) -> Result<Outcome> {
    let path = workspace.cache().object_path(&wanted.digest);
    let remote_error = |source| DataError::Remote {
        remote: remote.name.clone(),
        source,
    };
    if wanted.size < LARGE_OBJECT {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Outcome::Missing);
            }
            Err(error) => return Err(DataError::io(&path, error)),
        };
        if Digest::of_bytes(&bytes) != wanted.digest {
            return Ok(Outcome::Corrupt);
        }
        let length = bytes.len() as u64;
        remote
            .store
            .put(&key(&wanted.digest), PutPayload::from(Bytes::from(bytes)))
            .await
            .map_err(remote_error)?;
        return Ok(Outcome::Done(length));
    }
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(error) => return Err(DataError::io(&path, error)),
    };
    let upload = remote
        .large_store
        .put_multipart(&key(&wanted.digest))
        .await
        .map_err(remote_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut hasher = StreamHasher::default();
    let mut buffer = vec![0u8; PART];
    let mut total = 0u64;
    loop {
        let read = match file.read(&mut buffer).await {
            Ok(read) => read,
            Err(error) => {
                let _ = writer.abort().await;
                return Err(DataError::io(&path, error));
            }
        };
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Err(error) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            return Err(remote_error(error));
        }
        writer.write(&buffer[..read]);
        total += read as u64;
    }
    if hasher.finalize() != wanted.digest {
        let _ = writer.abort().await;
        return Ok(Outcome::Corrupt);
    }
    writer.finish().await.map_err(remote_error)?;
    Ok(Outcome::Done(total))
}

/// `keel data fetch`: downloads the objects of `targets` that the cache lacks
/// (manifests first, then the files they list), verifying each one.
pub async fn fetch(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
) -> Result<TransferReport> {
    let mut report = TransferReport::default();
    let (_, manifests) = needed(workspace, targets)?;
    let missing_manifests: Vec<Wanted> = manifests
        .into_iter()
        .filter(|wanted| !workspace.cache().contains(&wanted.digest))
        .collect();
    let results: Vec<(Wanted, Result<Outcome>)> = futures::stream::iter(missing_manifests)
        .map(|wanted| async move {
            let result = download(workspace, remote, &wanted).await;
            (wanted, result)
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    tally(&mut report, results);
    let (data, _) = needed(workspace, targets)?;
    let (absent, present): (Vec<Wanted>, Vec<Wanted>) = data
        .into_iter()
        .partition(|wanted| !workspace.cache().contains(&wanted.digest));
    report.skipped += present.len() as u64;
    let total = absent.iter().map(|wanted| wanted.size).sum();
    let bar = progress::bytes_bar(workspace.progress(), total, "fetch");
    let results: Vec<(Wanted, Result<Outcome>)> = futures::stream::iter(absent)
        .map(|wanted| {
            let bar = &bar;
            async move {
                let result = download(workspace, remote, &wanted).await;
                bar.inc(wanted.size);
                (wanted, result)
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    tally(&mut report, results);
    Ok(report)
}

async fn download(workspace: &Workspace, remote: &Remote, wanted: &Wanted) -> Result<Outcome> {
    let remote_error = |source| DataError::Remote {
        remote: remote.name.clone(),
        source,
    };
    // Small objects in one GET; large ones are checked with HEAD, then
    // fetched in ranges below.
    let small = wanted.size < LARGE_OBJECT;
    let found = if small {
        remote.store.get(&key(&wanted.digest)).await.map(Some)
    } else {
        remote.store.head(&key(&wanted.digest)).await.map(|_| None)
    };
    let result = match found {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(Outcome::Missing),
        Err(error) => return Err(remote_error(error)),
    };
    let cache = workspace.cache();
    let temp = cache.temp_path(&wanted.digest, "download")?;
    if let Some(result) = result {
        let bytes = result.bytes().await.map_err(remote_error)?;
        if Digest::of_bytes(&bytes) != wanted.digest {
            return Ok(Outcome::Corrupt);
        }
        if let Err(error) = std::fs::write(&temp, &bytes) {
            let _ = std::fs::remove_file(&temp);
            return Err(DataError::io(&temp, error));
        }
        cache.insert_temp(&temp, &wanted.digest)?;
        return Ok(Outcome::Done(bytes.len() as u64));
    }
    // Large objects come down in PART-sized ranges (a few big reads rather
    // than a stream of small chunks), hashed as they arrive.
    let key = key(&wanted.digest);
    let mut hasher = StreamHasher::default();
    let mut total = 0u64;
    let outcome: Result<()> = async {
        let mut file = std::fs::File::create(&temp).map_err(|error| DataError::io(&temp, error))?;
        while total < wanted.size {
            let end = (total + PART as u64).min(wanted.size);
            let bytes = remote
                .store
                .get_range(&key, total..end)
                .await
                .map_err(remote_error)?;
            if bytes.is_empty() {
                break;
            }
            hasher.update(&bytes);
            total += bytes.len() as u64;
            std::io::Write::write_all(&mut file, &bytes)
                .map_err(|error| DataError::io(&temp, error))?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    if hasher.finalize() != wanted.digest {
        let _ = std::fs::remove_file(&temp);
        return Ok(Outcome::Corrupt);
    }
    cache.insert_temp(&temp, &wanted.digest)?;
    Ok(Outcome::Done(total))
}

/// `keel data pull`: fetch, then checkout.
pub async fn pull(
    workspace: &mut Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
    force: bool,
) -> Result<(TransferReport, CheckoutReport)> {
    let transfer = fetch(workspace, remote, targets, jobs).await?;
    workspace.mark_verified(transfer.verified.iter().copied());
    let checkout = workspace.checkout(targets, force)?;
    Ok((transfer, checkout))
}
