//! Link strategies between the cache and the workspace: reflink (a
//! copy-on-write clone, on Btrfs/XFS), hardlink (same inode, no copy) and
//! copy, tried in the configured order. Every placement goes through a
//! temporary name and a rename, so a reader never sees a half-written file.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::state::FileStat;

/// One way of putting a file's bytes at a second path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Copy-on-write clone (`FICLONE`); independent inode, no data copied.
    Reflink,
    /// A second name for the same inode; the cache object and the workspace
    /// file are one file, so both are kept read-only.
    Hardlink,
    /// A plain byte copy.
    Copy,
}

impl LinkKind {
    /// The default order: cheapest first.
    pub const DEFAULT_ORDER: [LinkKind; 3] =
        [LinkKind::Reflink, LinkKind::Hardlink, LinkKind::Copy];

    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Reflink => "reflink",
            LinkKind::Hardlink => "hardlink",
            LinkKind::Copy => "copy",
        }
    }

    /// Parses `reflink,hardlink,copy`.
    pub fn parse_list(text: &str) -> Result<Vec<LinkKind>, String> {
        let mut kinds = Vec::new();
        for word in text
            .split(',')
            .map(str::trim)
            .filter(|word| !word.is_empty())
        {
            let kind = match word {
                "reflink" => LinkKind::Reflink,
                "hardlink" => LinkKind::Hardlink,
                "copy" => LinkKind::Copy,
                other => {
                    return Err(format!(
                        "unknown link type `{other}` (use reflink, hardlink, copy)"
                    ));
                }
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err("no link type given (use reflink, hardlink, copy)".into());
        }
        Ok(kinds)
    }

    /// Makes `to` (which must not exist) hold `from`'s bytes with this kind.
    /// A reflink or a copy is a new inode, created read-only (`from`'s mode
    /// without write bits, so no `chmod` follows) and returned with its
    /// stat fields, taken from the open file; a hardlink shares `from`'s
    /// inode and mode and returns None.
    pub fn apply(self, from: &Path, to: &Path) -> std::io::Result<Option<FileStat>> {
        if self == LinkKind::Hardlink {
            return std::fs::hard_link(from, to).map(|()| None);
        }
        let mut source = File::open(from)?;
        let mode = source.metadata()?.permissions().mode() & 0o555;
        let mut target = crate::fsutil::create_read_only(to, mode)?;
        let result = match self {
            LinkKind::Reflink => {
                rustix::fs::ioctl_ficlone(&target, &source).map_err(std::io::Error::from)
            }
            // copy_file_range (in-kernel) where the filesystem allows it.
            _ => std::io::copy(&mut source, &mut target).map(|_| ()),
        }
        .and_then(|()| target.metadata());
        match result {
            Ok(metadata) => Ok(Some(FileStat::of(&metadata))),
            Err(error) => {
                drop(target);
                let _ = std::fs::remove_file(to);
                Err(error)
            }
        }
    }
}

/// Tries `kinds` in order and returns the one that worked. A kind that fails
/// because the filesystem cannot do it falls through to the next; other
/// errors (permission, disk full) are returned at once.
///
/// A kind the filesystem does not support at all (reflink on ext4, hardlink
/// across devices) is remembered for the rest of the process, so 20,000
/// files do not each pay for a failed attempt: the cache and the workspace
/// stay on the same filesystems throughout one command.
pub fn link_first(
    kinds: &[LinkKind],
    from: &Path,
    to: &Path,
) -> std::io::Result<(LinkKind, Option<FileStat>)> {
    let mut last = None;
    for &kind in kinds {
        let bit = 1u8 << (kind as u8);
        if UNSUPPORTED.load(Ordering::Relaxed) & bit != 0 {
            continue;
        }
        match kind.apply(from, to) {
            Ok(stat) => return Ok((kind, stat)),
            Err(error) => match failure(&error) {
                Failure::Unsupported => {
                    UNSUPPORTED.fetch_or(bit, Ordering::Relaxed);
                    last = Some(error);
                }
                Failure::ThisFile => last = Some(error),
                Failure::Fatal => return Err(error),
            },
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::other("none of the configured link types works here")))
}

/// The first kind in `kinds` not yet found unsupported in this process.
pub fn first_usable(kinds: &[LinkKind]) -> Option<LinkKind> {
    let unsupported = UNSUPPORTED.load(Ordering::Relaxed);
    kinds
        .iter()
        .copied()
        .find(|kind| unsupported & (1u8 << (*kind as u8)) == 0)
}

/// Finds out, once per process, whether reflinks work in `dir` (two
/// throwaway files there); when they do not, reflink counts as unsupported
/// from then on, as after a failed attempt, so [`first_usable`] tells what
/// the next placement will really use.
pub fn probe_reflink(dir: &Path) {
    static PROBED: OnceLock<()> = OnceLock::new();
    PROBED.get_or_init(|| {
        let from = crate::fsutil::temp_path(dir, "reflink-probe");
        let to = crate::fsutil::temp_path(dir, "reflink-probe");
        if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&from, b"probe").is_ok() {
            // Marks reflink unsupported when the filesystem cannot do it.
            let _ = link_first(&[LinkKind::Reflink], &from, &to);
        }
        let _ = std::fs::remove_file(&from);
        let _ = std::fs::remove_file(&to);
    });
}

/// The configured order made safe: `hardlink` is left out when read-only
/// modes do not stop this process from writing (root, `CAP_DAC_OVERRIDE`, a
/// filesystem without Unix modes). A hardlinked workspace file *is* the cache
/// object, so there an in-place edit would silently rewrite the only cached
/// copy of that version. Copy is appended if nothing else is left.
pub fn safe_order(kinds: &[LinkKind], probe_dir: &Path) -> Vec<LinkKind> {
    if !kinds.contains(&LinkKind::Hardlink) || read_only_is_enforced(probe_dir) {
        return kinds.to_vec();
    }
    let mut safe: Vec<LinkKind> = kinds
        .iter()
        .copied()
        .filter(|kind| *kind != LinkKind::Hardlink)
        .collect();
    if safe.is_empty() {
        safe.push(LinkKind::Copy);
    }
    safe
}

/// Whether a file without write bits really cannot be opened for writing by
/// this process. Probed once per process with a throwaway file in `dir`
/// (created if missing); when the probe itself fails the answer is "no".
pub fn read_only_is_enforced(dir: &Path) -> bool {
    static ENFORCED: OnceLock<bool> = OnceLock::new();
    *ENFORCED.get_or_init(|| {
        let _ = std::fs::create_dir_all(dir);
        let path = crate::fsutil::temp_path(dir, "probe");
        let created = crate::fsutil::create_read_only(&path, 0o444);
        if created.is_err() {
            return false;
        }
        drop(created);
        let writable = File::options().write(true).open(&path).is_ok();
        let _ = std::fs::remove_file(&path);
        !writable
    })
}

/// Link kinds found unsupported in this process (one bit per `LinkKind`).
static UNSUPPORTED: AtomicU8 = AtomicU8::new(0);

enum Failure {
    /// The filesystem cannot do this kind at all.
    Unsupported,
    /// Only this file cannot (too many hardlinks, protected_hardlinks).
    ThisFile,
    /// A real error (disk full, permission on the folder).
    Fatal,
}

fn failure(error: &std::io::Error) -> Failure {
    use rustix::io::Errno;
    use std::io::ErrorKind;
    let is = |errno: Errno| error.raw_os_error() == Some(errno.raw_os_error());
    if is(Errno::MLINK) || is(Errno::PERM) {
        Failure::ThisFile
    } else if matches!(
        error.kind(),
        ErrorKind::Unsupported | ErrorKind::CrossesDevices
    ) || is(Errno::XDEV)
        || is(Errno::OPNOTSUPP)
        || is(Errno::INVAL)
        || is(Errno::NOTTY)
    {
        Failure::Unsupported
    } else {
        Failure::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_unknown_words() {
        assert_eq!(
            LinkKind::parse_list("hardlink, copy,hardlink").unwrap(),
            [LinkKind::Hardlink, LinkKind::Copy]
        );
        assert!(LinkKind::parse_list("symlink").is_err());
        assert!(LinkKind::parse_list("").is_err());
    }

    #[test]
    fn hardlink_stays_only_where_read_only_modes_hold() {
        let dir = tempfile::tempdir().unwrap();
        let enforced = read_only_is_enforced(dir.path());
        let order = safe_order(&LinkKind::DEFAULT_ORDER, dir.path());
        assert_eq!(order.contains(&LinkKind::Hardlink), enforced);
        assert!(order.ends_with(&[LinkKind::Copy]));
        let only = safe_order(&[LinkKind::Hardlink], dir.path());
        assert_eq!(
            only,
            if enforced {
                vec![LinkKind::Hardlink]
            } else {
                vec![LinkKind::Copy]
            }
        );
        // The probe agrees with what a write attempt on a read-only file does.
        let file = dir.path().join("ro");
        std::fs::write(&file, b"x").unwrap();
        crate::fsutil::make_read_only(&file).unwrap();
        assert_eq!(File::options().write(true).open(&file).is_err(), enforced);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "probe removed"
        );
    }

    #[test]
    fn falls_back_until_one_kind_works() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::write(&from, b"bytes").unwrap();
        let to = dir.path().join("to");
        let (used, _) = link_first(&LinkKind::DEFAULT_ORDER, &from, &to).unwrap();
        assert_ne!(
            used,
            LinkKind::Copy,
            "hardlink works on every local filesystem"
        );
        assert_eq!(std::fs::read(&to).unwrap(), b"bytes");
        let copy = dir.path().join("copy");
        let (used, stat) = link_first(&[LinkKind::Copy], &from, &copy).unwrap();
        assert_eq!(used, LinkKind::Copy);
        assert_eq!(std::fs::read(&copy).unwrap(), b"bytes");
        // Created read-only, and the stat fields are the new file's.
        let metadata = std::fs::metadata(&copy).unwrap();
        assert!(metadata.permissions().readonly());
        assert_eq!(stat, Some(FileStat::of(&metadata)));
    }
}
