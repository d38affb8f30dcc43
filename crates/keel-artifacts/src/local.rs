//! Local-directory backend extras: keeping every path inside the root even
//! through symbolic links, reporting file/directory clashes as user errors,
//! streaming file reads in large chunks, and sweeping empty directories.
//!
//! `object_store`'s `LocalFileSystem` follows symlinks wherever they point, so
//! every operation first resolves the path's existing components here. A
//! symlink is allowed only if it resolves inside the (canonical) root.
//! Architecture invariant: these checks run before the operation, so they do
//! not defend against someone with write access to the root racing a
//! symlink in between; they stop requests, not local users.

use std::collections::HashMap;
use std::fs::FileType;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{ArtifactError, FileInfo};

/// Bytes read per chunk when streaming a local file.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// What the caller is about to do with a path; writes also reject clashes
/// between files and directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    Read,
    Write,
}

/// What exists at a path after following in-root symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    File,
    Dir,
}

/// Checks that `rel` (already validated, '/'-separated, relative) stays inside
/// `root` when resolved on disk, and reports what it names.
///
/// Every existing component is inspected without following links; a symlink
/// is canonicalised and must land inside `root`. A dangling symlink is refused
/// too, since where it will point cannot be known.
pub(crate) fn check(root: &Path, rel: &str, intent: Intent) -> Result<Kind, ArtifactError> {
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let mut current = root.to_path_buf();
    let mut kind = Kind::Dir;
    for (index, segment) in segments.iter().enumerate() {
        current.push(segment);
        let walked = segments[..=index].join("/");
        let file_type = match resolve(root, &current, &walked, rel)? {
            Some(file_type) => file_type,
            None => return Ok(Kind::Missing),
        };
        let is_last = index + 1 == segments.len();
        if !is_last && !file_type.is_dir() {
            return match intent {
                Intent::Write => Err(ArtifactError::InvalidPath(format!(
                    "invalid artifact path '{rel}': '{walked}' is a file, not a directory"
                ))),
                Intent::Read => Ok(Kind::Missing),
            };
        }
        kind = if file_type.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
    }
    if intent == Intent::Write && kind == Kind::Dir {
        return Err(ArtifactError::InvalidPath(format!(
            "invalid artifact path '{rel}': a directory exists at that path"
        )));
    }
    Ok(kind)
}

/// Inspects one existing path component: `None` if it does not exist, its
/// file type otherwise (of the link target for an in-root symlink).
fn resolve(
    root: &Path,
    current: &Path,
    walked: &str,
    rel: &str,
) -> Result<Option<FileType>, ArtifactError> {
    let metadata = match std::fs::symlink_metadata(current) {
        Ok(metadata) => metadata,
        Err(error) if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(error) => {
            return Err(ArtifactError::Backend(format!(
                "cannot inspect artifact path '{walked}': {error}"
            )));
        }
    };
    if !metadata.file_type().is_symlink() {
        return Ok(Some(metadata.file_type()));
    }
    let escape = |why: &str| {
        ArtifactError::InvalidPath(format!(
            "invalid artifact path '{rel}': '{walked}' is a symbolic link {why}"
        ))
    };
    let target =
        std::fs::canonicalize(current).map_err(|_| escape("whose target does not exist"))?;
    if !target.starts_with(root) {
        return Err(escape("that leads outside the artifact root"));
    }
    let metadata = std::fs::metadata(&target).map_err(|error| {
        ArtifactError::Backend(format!("cannot inspect artifact path '{walked}': {error}"))
    })?;
    Ok(Some(metadata.file_type()))
}

/// Drops listing entries that are reached through a symlink leading outside
/// `root` (`object_store` lists through symlinks). Directory components are
/// checked once each and remembered across entries.
pub(crate) fn retain_contained(root: &Path, entries: Vec<FileInfo>) -> Vec<FileInfo> {
    let mut verdicts: HashMap<String, bool> = HashMap::new();
    entries
        .into_iter()
        .filter(|entry| {
            let mut walked = String::with_capacity(entry.path.len());
            for segment in entry.path.split('/') {
                if !walked.is_empty() {
                    walked.push('/');
                }
                walked.push_str(segment);
                let contained = *verdicts.entry(walked.clone()).or_insert_with(|| {
                    let current = root.join(&walked);
                    resolve(root, &current, &walked, &entry.path).is_ok()
                });
                if !contained {
                    return false;
                }
            }
            true
        })
        .collect()
}

/// Removes the empty directories under `dir` (bottom-up, never following
/// symlinks), then `dir` itself and its ancestors below `root` while empty.
/// A directory that gains a file meanwhile simply stays: removal of a
/// non-empty directory fails and is ignored.
pub(crate) fn remove_empty_dirs(root: &Path, dir: &Path) {
    fn sweep(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    sweep(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if dir.starts_with(root) && dir != root {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
            sweep(dir);
        }
        remove_empty_parents(root, dir);
    }
}

/// Removes the now-empty directories above `path`, up to (not including)
/// `root`; used after a delete and after a failed write, whose parent
/// directories may have been created for nothing.
pub(crate) fn remove_empty_parents(root: &Path, path: &Path) {
    let mut parent = path.parent();
    while let Some(ancestor) = parent {
        if ancestor == root || !ancestor.starts_with(root) || std::fs::remove_dir(ancestor).is_err()
        {
            break;
        }
        parent = ancestor.parent();
    }
}

/// Streams `size` bytes of an open file in [`READ_CHUNK_BYTES`] chunks, each
/// read on tokio's blocking pool. A file that turns out shorter than `size`
/// ends the stream with an error instead of silently truncating.
pub(crate) fn file_stream(
    file: std::fs::File,
    size: u64,
    rel: String,
) -> BoxStream<'static, Result<Bytes, ArtifactError>> {
    stream::try_unfold((file, size, rel), |(mut file, remaining, rel)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        let want =
            usize::try_from(remaining.min(READ_CHUNK_BYTES as u64)).unwrap_or(READ_CHUNK_BYTES);
        let (file, rel, chunk) = tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read(&mut buffer[filled..]) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => return (file, rel, Err(error)),
                }
            }
            buffer.truncate(filled);
            (file, rel, Ok(buffer))
        })
        .await
        .map_err(|error| ArtifactError::Backend(format!("artifact read task failed: {error}")))?;
        let chunk = chunk.map_err(|error| {
            ArtifactError::Backend(format!("failed to read artifact '{rel}': {error}"))
        })?;
        if chunk.is_empty() {
            return Err(ArtifactError::Backend(format!(
                "artifact '{rel}' ended {remaining} bytes before its recorded size"
            )));
        }
        let remaining = remaining - chunk.len() as u64;
        Ok(Some((Bytes::from(chunk), (file, remaining, rel))))
    })
    .boxed()
}

/// Uploads in progress (`NAME#N` files, see [`crate::is_staged_upload`])
/// under `dir` last written at or before `cutoff`, with their sizes, sorted.
/// A process killed while writing leaves one behind: listings never show it
/// and no artifact path can name it, so only this sweep finds it. Symbolic
/// links are not followed.
pub fn find_staged_uploads(dir: &Path, cutoff: std::time::SystemTime) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_file()
                && crate::is_staged_upload(&entry.file_name().to_string_lossy())
                && let Ok(metadata) = entry.metadata()
                && metadata.modified().is_ok_and(|modified| modified <= cutoff)
            {
                found.push((entry.path(), metadata.len()));
            }
        }
    }
    found.sort();
    found
}

/// Removes the uploads in progress [`find_staged_uploads`] finds; returns
/// how many were removed.
pub(crate) fn remove_staged_uploads(dir: &Path, cutoff: std::time::SystemTime) -> u64 {
    find_staged_uploads(dir, cutoff)
        .into_iter()
        .filter(|(path, _)| std::fs::remove_file(path).is_ok())
        .count() as u64
}

/// Absolute on-disk location of a validated relative path.
pub(crate) fn absolute(root: &Path, rel: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(rel.split('/').filter(|s| !s.is_empty()));
    path
}
