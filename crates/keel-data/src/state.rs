//! The stat cache: root-relative path → (size, mtime, inode, digest), kept in
//! `.keel/state/stat-cache` and loaded in one read. A file whose size, mtime
//! and inode match its entry is not hashed again. Keys are relative to the
//! project root, so a moved or restored checkout keeps its cache.
//!
//! Racy entries: a file changed twice within one timestamp tick could keep
//! its mtime, so an entry recorded too soon after the file's mtime is not
//! trusted (it is re-hashed next time, and then trusted), as git does for its
//! index. "Too soon" is [`RACY_NS`] on filesystems with nanosecond mtimes
//! (Linux ticks are a few milliseconds) and [`RACY_COARSE_NS`] when the mtime
//! has no sub-second part. Files keel itself just placed from the cache are
//! trusted at once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{DataError, Result};
use crate::hash::Digest;

const MAGIC: &str = "keel-stat-cache 1";

/// How close to "now" a nanosecond-resolution mtime makes an entry untrustworthy.
pub const RACY_NS: i64 = 100_000_000;
/// The same for mtimes with whole seconds only (coarse filesystems).
pub const RACY_COARSE_NS: i64 = 2_000_000_000;

/// The stat fields that decide whether a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

impl FileStat {
    /// Takes the fields from file metadata.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        FileStat {
            size: metadata.len(),
            mtime_ns: metadata
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.mtime_nsec()),
            inode: metadata.ino(),
        }
    }
}

/// Whether a file with these stat fields was modified too recently for its
/// mtime to vouch for its content (the racy window above).
pub fn is_racy(stat: &FileStat) -> bool {
    let window = if stat.mtime_ns % 1_000_000_000 == 0 {
        RACY_COARSE_NS
    } else {
        RACY_NS
    };
    stat.mtime_ns.saturating_add(window) >= now_ns()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    stat: FileStat,
    digest: Digest,
    trusted: bool,
}

/// The loaded stat cache; call [`StatCache::save`] after recording.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    dirty: bool,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl StatCache {
    /// Loads the cache; a missing or unreadable cache is an empty one (it is
    /// only an accelerator), a malformed line is skipped.
    pub fn load(path: &Path) -> Self {
        let mut entries = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            let mut lines = text.split_terminator('\n');
            if lines.next() == Some(MAGIC) {
                for line in lines {
                    if let Some((key, entry)) = parse_line(line) {
                        entries.insert(key.to_string(), entry);
                    }
                }
            }
        }
        StatCache {
            path: path.to_path_buf(),
            entries,
            dirty: false,
        }
    }

    /// The digest recorded for `relative` if the file is unchanged since.
    pub fn lookup(&self, relative: &str, stat: &FileStat) -> Option<Digest> {
        let entry = self.entries.get(relative)?;
        (entry.trusted && entry.stat == *stat).then_some(entry.digest)
    }

    /// Records a freshly hashed file. `written_by_keel` marks files keel just
    /// placed from the cache (trusted whatever their mtime).
    pub fn record(
        &mut self,
        relative: &str,
        stat: FileStat,
        digest: Digest,
        written_by_keel: bool,
    ) {
        let trusted = written_by_keel || !is_racy(&stat);
        if let Some(entry) = self.entries.get(relative)
            && entry.stat == stat
            && entry.digest == digest
            && entry.trusted == trusted
        {
            return;
        }
        self.entries.insert(
            relative.to_string(),
            Entry {
                stat,
                digest,
                trusted,
            },
        );
        self.dirty = true;
    }

    /// Forgets one path's entry.
    pub fn forget(&mut self, relative: &str) {
        if self.entries.remove(relative).is_some() {
            self.dirty = true;
        }
    }

    /// Writes the cache atomically if anything changed.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
        }
        let mut text = String::with_capacity(MAGIC.len() + self.entries.len() * 140);
        text.push_str(MAGIC);
        text.push('\n');
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let entry = &self.entries[key];
            text.push_str(&format!(
                "{} {} {} {} {} {}\n",
                entry.stat.size,
                entry.stat.mtime_ns,
                entry.stat.inode,
                if entry.trusted { 't' } else { 'r' },
                entry.digest,
                key
            ));
        }
        crate::fsutil::write_atomic(&self.path, text.as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

fn parse_line(line: &str) -> Option<(&str, Entry)> {
    let mut parts = line.splitn(6, ' ');
    let size = parts.next()?.parse().ok()?;
    let mtime_ns = parts.next()?.parse().ok()?;
    let inode = parts.next()?.parse().ok()?;
    let trusted = parts.next()? == "t";
    let digest = parts.next()?.parse().ok()?;
    let key = parts.next()?;
    Some((
        key,
        Entry {
            stat: FileStat {
                size,
                mtime_ns,
                inode,
            },
            digest,
            trusted,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_are_trusted_fresh_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat-cache");
        let mut cache = StatCache::load(&path);
        let old = FileStat {
            size: 3,
            mtime_ns: 1_000_000_000,
            inode: 7,
        };
        // Modified "now" as far as the racy window goes: one second ahead,
        // so a test thread descheduled past RACY_NS cannot age it into trust.
        let fresh = FileStat {
            size: 3,
            mtime_ns: now_ns() + 1_000_000_001,
            inode: 8,
        };
        let digest = Digest::of_bytes(b"abc");
        cache.record("a b/old", old, digest, false);
        cache.record("fresh", fresh, digest, false);
        cache.record("placed", fresh, digest, true);
        cache.save().unwrap();
        let cache = StatCache::load(&path);
        assert_eq!(cache.lookup("a b/old", &old), Some(digest));
        assert_eq!(
            cache.lookup("fresh", &fresh),
            None,
            "racy entry must be re-hashed"
        );
        assert_eq!(cache.lookup("placed", &fresh), Some(digest));
        let touched = FileStat {
            mtime_ns: 2_000_000_000,
            ..old
        };
        assert_eq!(cache.lookup("a b/old", &touched), None);
        assert_eq!(cache.lookup("missing", &old), None);
    }

    #[test]
    fn garbage_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat-cache");
        std::fs::write(&path, "not a cache\n1 2 3\n").unwrap();
        assert!(StatCache::load(&path).entries.is_empty());
    }
}
