//! `PATH.keel` metafiles: the small, human-readable pointer committed to git
//! next to git-ignored data. One `key: value` per line in a fixed order (a
//! subset of YAML, so YAML tools read it too); `#` starts a comment.
//!
//! ```text
//! # keel data metafile: commit this file; the data itself is git-ignored.
//! path: data
//! kind: directory
//! hash: blake3
//! digest: 5d0f…
//! size: 51438400
//! files: 20000
//! ```
//!
//! For a directory the digest names a manifest object (see `manifest`);
//! for a file it is the digest of the file's bytes.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::hash::{Digest, HASH_NAME};

/// File-name suffix of metafiles.
pub const SUFFIX: &str = ".keel";

/// Whether a tracked path is one file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A single file; the digest is its content hash.
    File,
    /// A directory; the digest is the hash of its manifest object.
    Directory,
}

impl Kind {
    /// The word used in metafiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
        }
    }
}

/// The parsed content of one `PATH.keel` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metafile {
    /// The tracked path's file name, relative to the metafile's folder.
    pub path: String,
    /// File or directory.
    pub kind: Kind,
    /// Content digest (file) or manifest digest (directory).
    pub digest: Digest,
    /// Total bytes of the tracked data.
    pub size: u64,
    /// Number of files (1 for a file).
    pub files: u64,
}

const HEADER: &str = "# keel data metafile: commit this file; the data itself is git-ignored.\n\
# `keel data checkout` restores the data from the cache, `keel data pull` from a remote.\n";

impl Metafile {
    /// Renders the metafile text (stable key order, trailing newline).
    pub fn render(&self) -> String {
        let mut text = String::from(HEADER);
        text.push_str(&format!("path: {}\n", yaml_scalar(&self.path)));
        text.push_str(&format!("kind: {}\n", self.kind.as_str()));
        text.push_str(&format!("hash: {HASH_NAME}\n"));
        text.push_str(&format!("digest: {}\n", self.digest));
        text.push_str(&format!("size: {}\n", self.size));
        text.push_str(&format!("files: {}\n", self.files));
        text
    }

    /// Parses metafile text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let error = |line: usize, message: String| DataError::Parse {
            path: origin.to_path_buf(),
            line,
            message,
        };
        let (mut path, mut kind, mut digest, mut size, mut files) = (None, None, None, None, None);
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(error(
                    line_no,
                    format!("expected `key: value`, found `{line}`"),
                ));
            };
            let value = value.trim();
            match key.trim() {
                "path" => path = Some(unquote(value).map_err(|message| error(line_no, message))?),
                "kind" => {
                    kind = Some(match value {
                        "file" => Kind::File,
                        "directory" => Kind::Directory,
                        other => {
                            return Err(error(
                                line_no,
                                format!("kind must be `file` or `directory`, found `{other}`"),
                            ));
                        }
                    })
                }
                "hash" if value != HASH_NAME => {
                    return Err(error(
                        line_no,
                        format!("unsupported hash `{value}` (keel uses `{HASH_NAME}`)"),
                    ));
                }
                "hash" => {}
                "digest" => {
                    digest = Some(
                        value
                            .parse::<Digest>()
                            .map_err(|bad| error(line_no, bad.to_string()))?,
                    )
                }
                "size" => {
                    size = Some(value.parse::<u64>().map_err(|_| {
                        error(
                            line_no,
                            format!("size must be a whole number, found `{value}`"),
                        )
                    })?)
                }
                "files" => {
                    files = Some(value.parse::<u64>().map_err(|_| {
                        error(
                            line_no,
                            format!("files must be a whole number, found `{value}`"),
                        )
                    })?)
                }
                other => return Err(error(line_no, format!("unknown key `{other}`"))),
            }
        }
        let missing = |key: &str| error(0, format!("missing key `{key}`"));
        let path: String = path.ok_or_else(|| missing("path"))?;
        if path.is_empty() || path.contains('/') || path == "." || path == ".." {
            return Err(error(
                0,
                format!("path must be a plain file name next to the metafile, found `{path}`"),
            ));
        }
        let kind = kind.ok_or_else(|| missing("kind"))?;
        Ok(Metafile {
            path,
            kind,
            digest: digest.ok_or_else(|| missing("digest"))?,
            size: size.ok_or_else(|| missing("size"))?,
            files: files.unwrap_or(1),
        })
    }

    /// Reads and parses a metafile from disk.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::io(path, source))?;
        Self::parse(&text, path)
    }
}

/// Quotes a scalar when plain YAML would misread it.
fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+=,".contains(c));
    if plain {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unquote(value: &str) -> std::result::Result<String, String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("unterminated quoted string `{value}`"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            other => {
                return Err(format!(
                    "unknown escape `\\{}`",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &str) -> Metafile {
        Metafile {
            path: path.into(),
            kind: Kind::Directory,
            digest: Digest::of_bytes(b"x"),
            size: 10,
            files: 2,
        }
    }

    #[test]
    fn renders_in_stable_order_and_parses_back() {
        let metafile = sample("data");
        let text = metafile.render();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(keys, ["path", "kind", "hash", "digest", "size", "files"]);
        assert_eq!(
            Metafile::parse(&text, Path::new("data.keel")).unwrap(),
            metafile
        );
    }

    #[test]
    fn odd_names_are_quoted_and_round_trip() {
        for name in [
            "my data",
            "a\"b",
            "-dash",
            ".hidden",
            "x: y",
            "tab\there",
            "é.csv",
        ] {
            let metafile = sample(name);
            assert_eq!(
                Metafile::parse(&metafile.render(), Path::new("m.keel")).unwrap(),
                metafile,
                "{name}"
            );
        }
    }

    #[test]
    fn errors_name_the_line() {
        let text = sample("data").render().replace("size: 10", "size: ten");
        let error = Metafile::parse(&text, Path::new("data.keel"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("data.keel:7: size must be a whole number"),
            "{error}"
        );
        let error = Metafile::parse("path: x\nkind: file\n", Path::new("x.keel"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing key `digest`"), "{error}");
        let error = Metafile::parse("path: ../x\n", Path::new("x.keel"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing key") || error.contains("plain file name"),
            "{error}"
        );
    }
}
