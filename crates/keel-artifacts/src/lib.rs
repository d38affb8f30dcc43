//! keel-artifacts: put/get/list/delete of blobs under one root, on a local
//! directory (the default) or an S3-compatible bucket, behind one API over
//! the `object_store` crate.
//!
//! The tracking server's artifact proxy, model files, data objects and
//! prediction logs all go through [`ArtifactStore`]. Paths are relative,
//! '/'-separated and checked before any backend sees them: nothing can leave
//! the root, neither by `..`, an absolute path, a backslash, nor (on the local
//! backend) a symbolic link pointing outside. Writes are atomic: a reader sees
//! the old object or the complete new one, never a partial one (the local
//! backend writes `name#N` beside the target and renames it into place, with
//! fsync; S3 publishes a multipart upload only on completion). What a killed
//! process leaves (`name#N` on a local root) is removable: deleting a path
//! removes its uploads in progress too, and [`ArtifactStore::remove_stale_uploads`]
//! sweeps the root (`keel server` runs it at start-up; on S3 the bucket's
//! `AbortIncompleteMultipartUpload` lifecycle rule plays that part). This
//! crate knows nothing about HTTP or the metadata store.

mod error;
mod local;
mod path;
mod s3;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

pub use error::ArtifactError;
pub use local::find_staged_uploads;
pub use path::is_staged_upload;

use error::from_object_store;
use local::{Intent, Kind};
use path::{dir_location, file_location};
use s3::S3Location;

/// Size of each part of a streamed upload, and the most a streamed upload
/// buffers before its first part goes out. Bodies smaller than this are
/// written with a single put. S3 allows at most 10,000 parts, so streamed
/// objects are limited to about 78 GiB.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one streamed upload in flight at once. Together with
/// [`PART_BYTES`] this bounds an upload's memory to about 3 parts.
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// One entry of a listing, or the answer of [`ArtifactStore::head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path relative to the store root, '/'-separated, without a trailing '/'.
    pub path: String,
    /// True for a directory (a common prefix on S3).
    pub is_dir: bool,
    /// Size in bytes; `None` for directories.
    pub file_size: Option<u64>,
}

impl FileInfo {
    fn file(path: String, size: u64) -> Self {
        FileInfo {
            path,
            is_dir: false,
            file_size: Some(size),
        }
    }

    fn dir(path: String) -> Self {
        FileInfo {
            path,
            is_dir: true,
            file_size: None,
        }
    }
}

/// An artifact being read: its total size and its bytes, in chunks of bounded size.
pub struct ArtifactObject {
    /// Total size in bytes, known before the first chunk is read.
    pub size: u64,
    /// The content; an `Err` item ends the download.
    pub stream: BoxStream<'static, Result<Bytes, ArtifactError>>,
}

impl fmt::Debug for ArtifactObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactObject")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Where the objects live, and what the backend needs beyond `object_store`.
#[derive(Debug)]
enum Backend {
    /// A local directory; `root` is canonical (symlinks resolved), so the
    /// containment checks in [`local`] can compare prefixes.
    Local {
        root: PathBuf,
    },
    S3,
}

/// The artifact store: cheap to clone, shareable across tasks.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    uri: String,
    backend: Backend,
}

impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("uri", &self.inner.uri)
            .finish_non_exhaustive()
    }
}

/// The raw `object_store` behind an `s3://bucket[/prefix]` URI, configured
/// from the environment exactly as [`ArtifactStore::open`] configures its S3
/// backend (credentials, region, a custom endpoint with path-style requests,
/// plain HTTP for an `http://` endpoint) and scoped to the prefix. For crates
/// that keep their own key layout on S3 (keel-data's remotes); they get the
/// same S3 set-up as artifacts, without path validation per key.
pub fn s3_object_store(uri: &str) -> Result<Arc<dyn ObjectStore>, ArtifactError> {
    S3Location::parse(uri)?.build(AmazonS3Builder::from_env())
}

/// The artifact store and the path inside it that an artifact URI names:
/// `mlflow-artifacts:/PATH` (and `mlflow-artifacts://HOST/PATH`) is PATH
/// under `artifacts_destination`, the root the tracking server's proxy
/// serves; any other URI (a folder, `file://`, `s3://`) is a store of its
/// own, at its root. The one place that resolves `mlflow-artifacts:`.
pub fn resolve_artifact_uri(
    uri: &str,
    artifacts_destination: &str,
) -> Result<(ArtifactStore, String), ArtifactError> {
    match keel_core::uri::ProxiedUri::parse(uri) {
        Some(proxied) => {
            let proxied = proxied.map_err(|error| ArtifactError::InvalidUri(error.message))?;
            Ok((ArtifactStore::open(artifacts_destination)?, proxied.path))
        }
        None => Ok((ArtifactStore::open(uri)?, String::new())),
    }
}

impl ArtifactStore {
    /// Opens the store named by `uri`:
    /// - a directory path, relative (`./artifacts`) or absolute (`/srv/artifacts`),
    ///   or `file:///srv/artifacts`: created if missing;
    /// - `s3://bucket` or `s3://bucket/prefix`: configured from the environment
    ///   (see the `s3` module docs); no request is made until first use.
    ///
    /// Any other scheme is [`ArtifactError::InvalidUri`].
    pub fn open(uri: &str) -> Result<Self, ArtifactError> {
        if uri.starts_with("s3://") {
            let location = S3Location::parse(uri)?;
            return Self::open_s3(&location, AmazonS3Builder::from_env());
        }
        let directory = if let Some(rest) = uri.strip_prefix("file:") {
            let url = url::Url::parse(uri).map_err(|error| {
                ArtifactError::InvalidUri(format!("invalid file URI '{uri}': {error}"))
            })?;
            if !rest.starts_with("//") {
                return Err(ArtifactError::InvalidUri(format!(
                    "invalid file URI '{uri}': expected file:///absolute/path"
                )));
            }
            url.to_file_path().map_err(|()| {
                ArtifactError::InvalidUri(format!(
                    "invalid file URI '{uri}': expected file:///absolute/path on this host"
                ))
            })?
        } else if let Some((scheme, _)) = uri.split_once("://") {
            return Err(ArtifactError::InvalidUri(format!(
                "unsupported artifact store URI '{uri}': scheme '{scheme}' is not supported; \
                 use a directory path, file:///path or s3://bucket/prefix"
            )));
        } else if uri.is_empty() {
            return Err(ArtifactError::InvalidUri(
                "the artifact store URI is empty".to_string(),
            ));
        } else {
            PathBuf::from(uri)
        };
        Self::open_local(uri, &directory)
    }

    fn open_local(uri: &str, directory: &std::path::Path) -> Result<Self, ArtifactError> {
        if directory.exists() && !directory.is_dir() {
            return Err(ArtifactError::InvalidUri(format!(
                "artifact store '{uri}' is not a directory"
            )));
        }
        std::fs::create_dir_all(directory).map_err(|error| {
            ArtifactError::Backend(format!(
                "cannot create the artifact directory for '{uri}': {error}"
            ))
        })?;
        let root = std::fs::canonicalize(directory).map_err(|error| {
            ArtifactError::Backend(format!(
                "cannot resolve the artifact directory for '{uri}': {error}"
            ))
        })?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|error| {
                ArtifactError::Backend(format!("cannot open artifact store '{uri}': {error}"))
            })?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let normalised = url::Url::from_file_path(&root)
            .map(String::from)
            .unwrap_or_else(|()| format!("file://{}", root.display()));
        Ok(Self::from_parts(
            Arc::new(store),
            normalised,
            Backend::Local { root },
        ))
    }

    fn open_s3(location: &S3Location, builder: AmazonS3Builder) -> Result<Self, ArtifactError> {
        let store = location.build(builder)?;
        Ok(Self::from_parts(store, location.uri(), Backend::S3))
    }

    fn from_parts(store: Arc<dyn ObjectStore>, uri: String, backend: Backend) -> Self {
        ArtifactStore {
            inner: Arc::new(Inner {
                store,
                uri,
                backend,
            }),
        }
    }

    /// The store's normalised URI: `file:///canonical/dir` or `s3://bucket/prefix`.
    pub fn uri(&self) -> &str {
        &self.inner.uri
    }

    /// Checks that `path` is a safe artifact path relative to the root.
    ///
    /// Accepted: `""` (the root), `a`, `a/b.txt`, and a trailing `/` naming a
    /// directory (`a/b/`). Rejected with [`ArtifactError::InvalidPath`]: a
    /// leading `/`, `\`, ASCII control characters including NUL, empty
    /// segments (`a//b`), `.` and `..` segments, and paths over 1024 bytes.
    /// Operations that need a file additionally refuse `""`, a trailing `/`
    /// and a file name ending in `#` plus digits (reserved for uploads in
    /// progress); the local backend also refuses symlinks leading outside
    /// the root.
    pub fn validate_path(path: &str) -> Result<(), ArtifactError> {
        path::validate_path(path)
    }

    /// Writes `data` to `path`, replacing any object there, atomically.
    pub async fn put_bytes(&self, path: &str, data: Bytes) -> Result<(), ArtifactError> {
        let location = file_location(path)?;
        self.check_local(path, Intent::Write).await?;
        let result = self
            .inner
            .store
            .put(&location, PutPayload::from_bytes(data))
            .await;
        if let Err(error) = result {
            self.after_failed_write(path).await;
            return Err(from_object_store("write", path, error));
        }
        Ok(())
    }

    /// Writes the bytes of `stream` to `path` and returns how many were
    /// written. Memory stays bounded (about three 8 MiB parts) whatever the
    /// size; nothing is visible at `path` until the whole stream has been
    /// stored, and a stream error leaves the previous object (if any) in
    /// place. If the returned future is dropped midway, the local backend
    /// removes its temporary file; on S3 the incomplete multipart upload stays
    /// invisible until the bucket's lifecycle rule expires it.
    pub async fn put_stream<S>(&self, path: &str, stream: S) -> Result<u64, ArtifactError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let location = file_location(path)?;
        self.check_local(path, Intent::Write).await?;
        let result = self.write_stream(path, &location, stream).await;
        if result.is_err() {
            self.after_failed_write(path).await;
        }
        result
    }

    /// The body of [`Self::put_stream`], once the path has been checked.
    async fn write_stream<S>(
        &self,
        path: &str,
        location: &Path,
        mut stream: S,
    ) -> Result<u64, ArtifactError>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let read_error = |error: std::io::Error| {
            ArtifactError::Backend(format!(
                "reading the upload body for artifact '{path}' failed: {error}"
            ))
        };

        // Buffer up to one part: a small body goes out as a single put.
        let mut head = Vec::new();
        let mut buffered = 0usize;
        while buffered < PART_BYTES {
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(read_error)?;
                    buffered += chunk.len();
                    head.push(chunk);
                }
                None => {
                    self.inner
                        .store
                        .put(location, PutPayload::from_iter(head))
                        .await
                        .map_err(|error| from_object_store("write", path, error))?;
                    return Ok(buffered as u64);
                }
            }
        }

        let upload = self
            .inner
            .store
            .put_multipart(location)
            .await
            .map_err(|error| from_object_store("start upload of", path, error))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut written = buffered as u64;
        for chunk in head {
            writer.put(chunk);
        }
        let failure = loop {
            if let Err(error) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                break from_object_store("upload", path, error);
            }
            match stream.next().await {
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    writer.put(chunk);
                }
                Some(Err(error)) => break read_error(error),
                None => {
                    writer
                        .finish()
                        .await
                        .map_err(|error| from_object_store("complete upload of", path, error))?;
                    return Ok(written);
                }
            }
        };
        if let Err(error) = writer.abort().await {
            tracing::warn!(path, %error, "failed to abort an incomplete artifact upload");
        }
        Err(failure)
    }

    /// Opens `path` for streaming. [`ArtifactError::NotFound`] if there is no
    /// file there (a directory is not a file).
    pub async fn get(&self, path: &str) -> Result<ArtifactObject, ArtifactError> {
        let location = file_location(path)?;
        self.check_readable_file(path).await?;
        let result = self
            .inner
            .store
            .get(&location)
            .await
            .map_err(|error| from_object_store("read", path, error))?;
        let size = result.meta.size;
        let stream = match result.payload {
            GetResultPayload::File(file, _) => local::file_stream(file, size, path.to_string()),
            GetResultPayload::Stream(stream) => {
                let path = path.to_string();
                stream
                    .map_err(move |error| from_object_store("read", &path, error))
                    .boxed()
            }
        };
        Ok(ArtifactObject { size, stream })
    }

    /// Reads the whole file at `path` into memory.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ArtifactError> {
        let location = file_location(path)?;
        self.check_readable_file(path).await?;
        let result = self
            .inner
            .store
            .get(&location)
            .await
            .map_err(|error| from_object_store("read", path, error))?;
        result
            .bytes()
            .await
            .map_err(|error| from_object_store("read", path, error))
    }

    /// Describes what is at `path`: a file (with its size), a directory
    /// (a prefix holding at least one file; on the local backend any
    /// directory), or `None`. `""` is the root directory.
    pub async fn head(&self, path: &str) -> Result<Option<FileInfo>, ArtifactError> {
        let prefix = dir_location(path)?;
        let kind = self.check_local(path, Intent::Read).await?;
        let Some(location) = prefix else {
            return Ok(Some(FileInfo::dir(String::new())));
        };
        let relative = location.to_string();
        match kind {
            Some(Kind::Dir) => return Ok(Some(FileInfo::dir(relative))),
            Some(Kind::Missing) => return Ok(None),
            Some(Kind::File) | None => {}
        }
        if !path.ends_with('/') && file_location(path).is_ok() {
            match self.inner.store.head(&location).await {
                Ok(meta) => return Ok(Some(FileInfo::file(relative, meta.size))),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(from_object_store("inspect", path, error)),
            }
        }
        let first = self.inner.store.list(Some(&location)).next().await;
        match first {
            Some(Ok(_)) => Ok(Some(FileInfo::dir(relative))),
            None => Ok(None),
            Some(Err(error)) => Err(from_object_store("inspect", path, error)),
        }
    }

    /// Lists the immediate children of `dir` (`""` is the root): directories
    /// and files, sorted by path. A missing directory lists as empty.
    pub async fn list(&self, dir: &str) -> Result<Vec<FileInfo>, ArtifactError> {
        let prefix = dir_location(dir)?;
        self.check_local(dir, Intent::Read).await?;
        let listing = self
            .inner
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|error| from_object_store("list", dir, error))?;
        let dirs = listing
            .common_prefixes
            .into_iter()
            .map(|p| FileInfo::dir(p.to_string()));
        let files = listing
            .objects
            .into_iter()
            .filter(|meta| Some(&meta.location) != prefix.as_ref())
            .map(|meta| FileInfo::file(meta.location.to_string(), meta.size));
        self.finish_listing(dirs.chain(files).collect()).await
    }

    /// Lists every file under `dir` (`""` is the root), at any depth, sorted by path.
    pub async fn list_recursive(&self, dir: &str) -> Result<Vec<FileInfo>, ArtifactError> {
        let prefix = dir_location(dir)?;
        self.check_local(dir, Intent::Read).await?;
        let entries = self.list_files(prefix.as_ref(), dir).await?;
        self.finish_listing(entries).await
    }

    /// Deletes the file at `path` and everything under `path` as a prefix,
    /// and returns how many objects were removed; a missing path deletes
    /// nothing and returns `Ok(0)`. The root itself (`""`) cannot be deleted.
    pub async fn delete(&self, path: &str) -> Result<u64, ArtifactError> {
        let Some(location) = dir_location(path)? else {
            return Err(ArtifactError::InvalidPath(
                "invalid artifact path '': refusing to delete the whole artifact store".to_string(),
            ));
        };
        self.check_local(path, Intent::Read).await?;

        let mut targets: Vec<Path> = Vec::new();
        if !path.ends_with('/') && file_location(path).is_ok() {
            match self.inner.store.head(&location).await {
                Ok(_) => targets.push(location.clone()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(from_object_store("inspect", path, error)),
            }
        }
        let under = self.list_files(Some(&location), path).await?;
        let under = self.finish_listing(under).await?;
        targets.extend(
            under
                .into_iter()
                .filter_map(|entry| Path::parse(entry.path).ok()),
        );
        targets.sort();
        targets.dedup();

        let locations = futures::stream::iter(targets.into_iter().map(Ok)).boxed();
        let mut results = self.inner.store.delete_stream(locations);
        let mut deleted = 0u64;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                // Deleted concurrently by someone else: not ours to count.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(from_object_store("delete", path, error)),
            }
        }
        if let Backend::Local { root } = &self.inner.backend {
            let root = root.clone();
            let dir = local::absolute(&root, path);
            tokio::task::spawn_blocking(move || {
                // Uploads a killed process left at this path or under it:
                // listings never show them, so only this removes them.
                let now = std::time::SystemTime::now();
                if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
                    let prefix = format!("{}#", name.to_string_lossy());
                    if let Ok(entries) = std::fs::read_dir(parent) {
                        for entry in entries.flatten() {
                            let entry_name = entry.file_name().to_string_lossy().into_owned();
                            if entry_name.starts_with(&prefix)
                                && is_staged_upload(&entry_name)
                                && entry.file_type().is_ok_and(|t| t.is_file())
                            {
                                let _ = std::fs::remove_file(entry.path());
                            }
                        }
                    }
                }
                if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                    local::remove_staged_uploads(&dir, now);
                }
                local::remove_empty_dirs(&root, &dir)
            })
            .await
            .map_err(|error| {
                ArtifactError::Backend(format!("artifact cleanup task failed: {error}"))
            })?;
        }
        Ok(deleted)
    }

    /// Removes uploads in progress (`name#N` files on a local root) last
    /// written more than `older_than` ago: what a process killed in the
    /// middle of an upload leaves. Returns how many were removed. The age
    /// spares uploads running now in this or another process. On S3 it
    /// does nothing (an incomplete multipart upload is never visible; the
    /// bucket's `AbortIncompleteMultipartUpload` lifecycle rule expires it).
    pub async fn remove_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, ArtifactError> {
        let Backend::Local { root } = &self.inner.backend else {
            return Ok(0);
        };
        let root = root.clone();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        tokio::task::spawn_blocking(move || local::remove_staged_uploads(&root, cutoff))
            .await
            .map_err(|error| {
                ArtifactError::Backend(format!("artifact cleanup task failed: {error}"))
            })
    }

    /// Every file under `prefix` as unfiltered, unsorted entries.
    async fn list_files(
        &self,
        prefix: Option<&Path>,
        dir: &str,
    ) -> Result<Vec<FileInfo>, ArtifactError> {
        self.inner
            .store
            .list(prefix)
            .map_ok(|meta| FileInfo::file(meta.location.to_string(), meta.size))
            .try_collect()
            .await
            .map_err(|error| from_object_store("list", dir, error))
    }

    /// On the local backend, drops entries reached through an escaping
    /// symlink; then sorts by path.
    async fn finish_listing(&self, entries: Vec<FileInfo>) -> Result<Vec<FileInfo>, ArtifactError> {
        let mut entries = match &self.inner.backend {
            Backend::Local { root } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || local::retain_contained(&root, entries))
                    .await
                    .map_err(|error| {
                        ArtifactError::Backend(format!("artifact listing task failed: {error}"))
                    })?
            }
            Backend::S3 => entries,
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// On the local backend, removes parent directories that a failed write
    /// created and left empty (the temporary file itself is already gone).
    async fn after_failed_write(&self, path: &str) {
        if let Backend::Local { root } = &self.inner.backend {
            let root = root.clone();
            let file = local::absolute(&root, path);
            let cleanup =
                tokio::task::spawn_blocking(move || local::remove_empty_parents(&root, &file));
            if let Err(error) = cleanup.await {
                tracing::warn!(path, %error, "cleanup after a failed artifact write did not run");
            }
        }
    }

    /// [`Self::check_local`] for a read of a file: on the local backend a
    /// missing path or a directory is reported as not found right away (the
    /// filesystem would report a path through a file as an I/O error).
    async fn check_readable_file(&self, path: &str) -> Result<(), ArtifactError> {
        match self.check_local(path, Intent::Read).await? {
            Some(Kind::Missing | Kind::Dir) => Err(ArtifactError::NotFound(format!(
                "artifact '{path}' does not exist"
            ))),
            Some(Kind::File) | None => Ok(()),
        }
    }

    /// On the local backend, checks that `path` resolves inside the root (and,
    /// for writes, does not clash with a directory or pass through a file);
    /// returns what is there. `None` on backends without a filesystem.
    async fn check_local(&self, path: &str, intent: Intent) -> Result<Option<Kind>, ArtifactError> {
        let Backend::Local { root } = &self.inner.backend else {
            return Ok(None);
        };
        let root = root.clone();
        let rel = path.to_string();
        tokio::task::spawn_blocking(move || local::check(&root, &rel, intent))
            .await
            .map_err(|error| {
                ArtifactError::Backend(format!("artifact path check task failed: {error}"))
            })?
            .map(Some)
    }
}
