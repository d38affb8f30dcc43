//! Artifact path rules: what a caller-supplied path may look like before it
//! reaches a backend, and its conversion to an `object_store` location.
//!
//! Architecture invariant: every public operation of the store passes its
//! path through [`validate_path`] (via [`file_location`] or [`dir_location`])
//! before anything touches a backend, so no `..`, absolute path, backslash or
//! control character can reach the filesystem or an S3 key.

use object_store::path::Path;

use crate::ArtifactError;

/// Longest accepted artifact path in bytes (S3's key limit).
pub(crate) const MAX_PATH_BYTES: usize = 1024;

/// Checks that `path` is a safe artifact path relative to the store root.
///
/// Accepted: `""` (the root), `a`, `a/b.txt`, `a/b/` (a trailing `/` names a
/// directory). Rejected: a leading `/`, `\`, ASCII control characters
/// (including NUL), empty segments (`a//b`), `.` and `..` segments, and paths
/// longer than [`MAX_PATH_BYTES`].
pub(crate) fn validate_path(path: &str) -> Result<(), ArtifactError> {
    let invalid = |reason: &str| {
        Err(ArtifactError::InvalidPath(format!(
            "invalid artifact path '{}': {reason}",
            path.escape_debug()
        )))
    };
    if path.len() > MAX_PATH_BYTES {
        return invalid(&format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.chars().any(|c| c.is_ascii_control()) {
        return invalid("control characters (including NUL) are not allowed");
    }
    if path.contains('\\') {
        return invalid("backslashes are not allowed; use '/' as the separator");
    }
    if path.starts_with('/') {
        return invalid("must be relative to the artifact root (no leading '/')");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return if path.is_empty() {
            Ok(())
        } else {
            invalid("empty path segment")
        };
    }
    for segment in trimmed.split('/') {
        match segment {
            "" => return invalid("empty path segment ('//')"),
            "." => return invalid("'.' segments are not allowed"),
            ".." => return invalid("'..' segments are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a file name is that of an upload in progress: `NAME#N`, where
/// the local backend (object_store's `LocalFileSystem`) writes a file
/// before renaming it into place.
pub fn is_staged_upload(file_name: &str) -> bool {
    file_name
        .rsplit_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// Validates a path that must name a file: non-empty, no trailing `/`, and a
/// last segment that does not end in `#` followed by digits (the local
/// backend reserves `name#N` for uploads in progress).
pub(crate) fn file_location(path: &str) -> Result<Path, ArtifactError> {
    validate_path(path)?;
    if path.is_empty() || path.ends_with('/') {
        return Err(ArtifactError::InvalidPath(format!(
            "invalid artifact path '{path}': names a directory, expected a file path"
        )));
    }
    let file_name = path.rsplit('/').next().unwrap_or(path);
    if is_staged_upload(file_name) {
        return Err(ArtifactError::InvalidPath(format!(
            "invalid artifact path '{path}': a file name ending in '#' and digits is reserved for uploads in progress"
        )));
    }
    parse(path)
}

/// Validates a path that names a directory (or a file, for `delete`): `""` is
/// the root and maps to `None`; a trailing `/` is ignored.
pub(crate) fn dir_location(path: &str) -> Result<Option<Path>, ArtifactError> {
    validate_path(path)?;
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        Ok(None)
    } else {
        parse(trimmed).map(Some)
    }
}

fn parse(path: &str) -> Result<Path, ArtifactError> {
    Path::parse(path).map_err(|error| {
        ArtifactError::InvalidPath(format!("invalid artifact path '{path}': {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_relative_paths() {
        for path in [
            "",
            "a",
            "a/b.txt",
            "model/MLmodel",
            "dir/",
            "a b/c%20d/e#f.txt",
            "ünïcode/数据.csv",
            "..hidden/x..y/...",
            ".config/file",
        ] {
            assert!(validate_path(path).is_ok(), "{path:?} should be accepted");
        }
    }

    #[test]
    fn rejects_every_kind_of_escape_with_invalid_path() {
        let long = "a/".repeat(MAX_PATH_BYTES);
        for path in [
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "a/../b",
            "/etc/passwd",
            "/",
            "//x",
            "a\\..\\b",
            "..\\x",
            "C:\\x",
            "a\0b",
            "a\nb",
            "a//b",
            ".",
            "./a",
            "a/./b",
            "a/.",
            "a/b//",
            long.as_str(),
        ] {
            match validate_path(path) {
                Err(ArtifactError::InvalidPath(message)) => {
                    assert!(message.contains("invalid artifact path"), "{message}")
                }
                other => panic!("{path:?} should be rejected with InvalidPath, got {other:?}"),
            }
        }
    }

    #[test]
    fn file_paths_must_name_a_file() {
        for path in ["", "dir/", "a/upload#1", "x#0042"] {
            assert!(
                matches!(file_location(path), Err(ArtifactError::InvalidPath(_))),
                "{path:?} should be rejected as a file path"
            );
        }
        for path in ["a#b", "a#", "a#1x", "#1/b", "dir/file.txt"] {
            let location = file_location(path).map(|p| p.to_string()).ok();
            assert_eq!(location.as_deref(), Some(path));
        }
    }

    #[test]
    fn directory_paths_map_the_root_to_none_and_drop_a_trailing_slash() {
        assert_eq!(dir_location("").ok(), Some(None));
        let location = dir_location("a/b/").ok().flatten().map(|p| p.to_string());
        assert_eq!(location.as_deref(), Some("a/b"));
        assert!(matches!(
            dir_location("/"),
            Err(ArtifactError::InvalidPath(_))
        ));
    }
}
