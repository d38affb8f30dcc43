//! Directory manifests: the object a directory's metafile points at. One line
//! per file, sorted by relative path (byte order), so equal trees always give
//! equal bytes and so equal digests:
//!
//! ```text
//! keel-manifest 1
//! <64 hex digest> <size> <relative/path>
//! ```

use std::path::Path;

use crate::error::{DataError, Result};
use crate::hash::Digest;

const MAGIC: &str = "keel-manifest 1";

/// One file inside a tracked directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the tracked directory, `/`-separated.
    pub path: String,
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// A directory's file list, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Entries in path order.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Builds a manifest, sorting the entries.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Self {
        entries.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Manifest { entries }
    }

    /// Total bytes.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }

    /// The canonical bytes (what is stored and hashed).
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::with_capacity(MAGIC.len() + 1 + self.entries.len() * 100);
        out.push_str(MAGIC);
        out.push('\n');
        for entry in &self.entries {
            out.push_str(&entry.digest.to_hex());
            out.push(' ');
            out.push_str(&entry.size.to_string());
            out.push(' ');
            out.push_str(&entry.path);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Renders and hashes: the directory's digest.
    pub fn digest(&self) -> (Digest, Vec<u8>) {
        let bytes = self.render();
        (Digest::of_bytes(&bytes), bytes)
    }

    /// Parses manifest bytes; `origin` names the object in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self> {
        let error = |line: usize, message: String| DataError::Parse {
            path: origin.to_path_buf(),
            line,
            message,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|_| error(0, "manifest is not UTF-8".into()))?;
        let mut lines = text.split_terminator('\n');
        if lines.next() != Some(MAGIC) {
            return Err(error(
                1,
                format!("not a keel manifest (first line must be `{MAGIC}`)"),
            ));
        }
        let mut entries = Vec::new();
        for (index, line) in lines.enumerate() {
            let line_no = index + 2;
            let mut parts = line.splitn(3, ' ');
            let (Some(hex), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(error(line_no, "expected `DIGEST SIZE PATH`".into()));
            };
            let digest = hex
                .parse::<Digest>()
                .map_err(|bad| error(line_no, bad.to_string()))?;
            let size = size
                .parse::<u64>()
                .map_err(|_| error(line_no, format!("bad size `{size}`")))?;
            if !is_safe_relative(path) {
                return Err(error(line_no, format!("unsafe path `{path}`")));
            }
            entries.push(ManifestEntry {
                path: path.to_string(),
                digest,
                size,
            });
        }
        Ok(Manifest { entries })
    }
}

/// A relative path that stays inside its directory: no `..`, no absolute
/// path, no empty or `.` components.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8]) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            digest: Digest::of_bytes(content),
            size: content.len() as u64,
        }
    }

    #[test]
    fn order_of_insertion_does_not_change_the_digest() {
        let a = Manifest::new(vec![
            entry("b/x", b"1"),
            entry("a", b"22"),
            entry("a b", b""),
        ]);
        let b = Manifest::new(vec![
            entry("a b", b""),
            entry("b/x", b"1"),
            entry("a", b"22"),
        ]);
        assert_eq!(a.digest().0, b.digest().0);
        assert_eq!(a.size(), 3);
        let parsed = Manifest::parse(&a.render(), Path::new("m")).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(parsed.entries[0].path, "a");
        assert_eq!(parsed.entries[1].path, "a b");
    }

    #[test]
    fn rejects_paths_that_escape() {
        for path in ["../x", "/etc/passwd", "a/../../b", "a//b", "./a"] {
            let text = format!("{MAGIC}\n{} 1 {path}\n", Digest::of_bytes(b""));
            assert!(
                Manifest::parse(text.as_bytes(), Path::new("m")).is_err(),
                "{path}"
            );
        }
        assert!(Manifest::parse(b"garbage", Path::new("m")).is_err());
    }
}
