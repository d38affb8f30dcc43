//! The log root: a local directory or `s3://bucket/prefix`, through
//! keel-artifacts (one S3 set-up for artifacts, data and logs; local writes are
//! temp file + fsync + rename). The writer's compactor and the reader are
//! synchronous, so the store carries a small runtime of its own for the async
//! object-store calls.

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use keel_artifacts::{ArtifactStore, FileInfo};

use crate::error::{LogError, Result};

/// Where a log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// `s3://bucket[/prefix]`.
    S3(String),
}

impl Location {
    /// `s3://…` is object storage; anything else is a local directory
    /// (`file:///abs/path` accepted).
    pub fn parse(text: &str) -> Result<Location> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LogError::Config("the log location is empty".into()));
        }
        if text.starts_with("s3://") {
            return Ok(Location::S3(text.trim_end_matches('/').to_string()));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(LogError::Config(format!(
                "log location {text:?}: scheme {scheme:?} is not supported (a directory or s3://bucket/prefix)"
            )));
        }
        Ok(Location::Local(PathBuf::from(text)))
    }

    /// As given to [`Location::parse`] (a path, or the `s3://` URI).
    pub fn display(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::S3(uri) => uri.clone(),
        }
    }
}

pub(crate) struct Store {
    location: Location,
    /// `None` for a local directory that does not exist (a reader sees no files).
    artifacts: Option<ArtifactStore>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // A runtime cannot be dropped (blocking) inside another one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store {
    /// Opens the root; `create` makes a missing local directory (the writer),
    /// otherwise a missing one reads as empty (the reader).
    pub fn open(location: &Location, create: bool) -> Result<Store> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LogError::io("prediction log runtime", e))?;
        let artifacts = match location {
            Location::Local(path) if !create && !path.exists() => None,
            Location::Local(path) => Some(ArtifactStore::open(&path.display().to_string())?),
            Location::S3(uri) => Some(ArtifactStore::open(uri)?),
        };
        Ok(Store {
            location: location.clone(),
            artifacts,
            runtime: Some(runtime),
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `future` to completion on the store's runtime, also when called from
    /// inside another runtime (then on a scoped thread: a runtime cannot block
    /// inside another).
    fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else {
            unreachable!("the runtime lives as long as the store");
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                let joined = scope.spawn(|| runtime.block_on(future)).join();
                match joined {
                    Ok(output) => output,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            })
        } else {
            runtime.block_on(future)
        }
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let Some(store) = &self.artifacts else {
            return Err(LogError::Config(format!(
                "{}: the log directory does not exist",
                self.location.display()
            )));
        };
        self.run(store.put_bytes(path, Bytes::from(bytes)))?;
        Ok(())
    }

    pub fn get(&self, path: &str) -> Result<Bytes> {
        let Some(store) = &self.artifacts else {
            return Err(LogError::Config(format!(
                "{}: the log directory does not exist",
                self.location.display()
            )));
        };
        Ok(self.run(store.get_bytes(path))?)
    }

    /// The immediate children of `dir` (a missing one lists as empty).
    pub fn list(&self, dir: &str) -> Result<Vec<FileInfo>> {
        match &self.artifacts {
            Some(store) => Ok(self.run(store.list(dir))?),
            None => Ok(Vec::new()),
        }
    }
}
