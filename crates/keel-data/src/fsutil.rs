//! Small filesystem helpers: atomic writes and unique temporary names
//! (keel-fs's, with keel-data's error), read-only protection.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{DataError, Result};

pub use keel_fs::temp_path;

/// Writes `bytes` to `path` so that readers see either the old file or the
/// whole new one ([`keel_fs::write_atomic`]: temp file, fsync, rename, fsync
/// of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    keel_fs::write_atomic(path, bytes).map_err(|source| DataError::io(path, source))
}

/// Creates a new file (failing if one exists) with `mode`'s write bits
/// removed: the returned descriptor may still write it, nothing opened later
/// can (no `chmod` afterwards).
pub fn create_read_only(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode & 0o555)
        .open(path)
}

/// Asks the filesystem to place `dir`'s future subfolders (not `dir`
/// itself, nor what exists) apart from it, in little-used parts of the
/// disk: the `FS_TOPDIR_FL` inode flag (`chattr +T`), with which ext4's
/// Orlov allocator treats `dir` as the top of a hierarchy, putting each new
/// subfolder in the block group (flex group) with the fewest folders, and
/// the files created inside a folder go to that folder's group.
///
/// Why the cache's shard folders get it: ext4 without a journal skips, on
/// every file creation, each free inode of the group freed in the last 60 s
/// (360 s while its inode table block is dirty), scanning from the start
/// of the group. Deleting a workspace and a cache of 20,000 files each,
/// then pulling, made every one of the 20,000 files created next (their
/// temporaries are created in the shards) walk past thousands of freed
/// inodes in the project's own group: 70-75 % of a pull's time. In a group
/// of its own a shard's files find a free inode at once (pull of 20,000
/// files: 4.0 s to 1.1-1.5 s on this machine, BENCHMARKS.md). Best effort:
/// filesystems without the flag refuse or ignore it, and nothing else
/// changes.
pub fn spread_subfolders(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(folder) = std::fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&folder)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = rustix::fs::ioctl_setflags(&folder, flags | IFlags::TOPDIR);
    }
}

/// Creates the folder `path` (fine if it exists) under a parent flagged by
/// [`spread_subfolders`]. ext4 picks a spread folder's block group from a
/// hash of its *name*, so every project's shard `ab` would land in the
/// same group, where the files of the last project deleted still count as
/// just freed; the folder is made under a random temporary name (a random
/// group) and renamed into place (`RENAME_NOREPLACE`: a folder another
/// process made meanwhile is kept, the temporary one removed).
pub fn create_spread_dir(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags};
    let parent = path.parent().unwrap_or(Path::new("."));
    let temp = temp_path(parent, "shard");
    std::fs::create_dir(&temp)?;
    match rustix::fs::renameat_with(CWD, &temp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => std::fs::remove_dir(&temp),
        Err(_) => {
            // No RENAME_NOREPLACE here: a plain folder, named as it is.
            std::fs::remove_dir(&temp)?;
            match std::fs::create_dir(path) {
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            }
        }
    }
}

/// Removes every write bit (mode & 0o555), so in-place edits fail.
pub fn make_read_only(path: &Path) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    let mode = metadata.permissions().mode();
    if mode & 0o222 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode & 0o555))?;
    }
    Ok(())
}

/// Gives the owner write permission back (before replacing or deleting).
pub fn make_writable(path: &Path) -> std::io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.is_file() {
        let mode = metadata.permissions().mode();
        if mode & 0o200 == 0 {
            std::fs::set_permissions(path, Permissions::from_mode(mode | 0o200))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_subfolders_sets_the_top_folder_flag_where_supported() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("objects");
        std::fs::create_dir(&folder).unwrap();
        let open = || std::fs::File::open(&folder).unwrap();
        let Ok(before) = rustix::fs::ioctl_getflags(open()) else {
            return; // no inode flags on this filesystem: nothing to check
        };
        assert!(!before.contains(rustix::fs::IFlags::TOPDIR));
        spread_subfolders(&folder);
        let after = rustix::fs::ioctl_getflags(open()).unwrap();
        // ext4 keeps it; elsewhere the flags may stay as they were.
        let ext4 = rustix::fs::statfs(&folder).is_ok_and(|fs| fs.f_type == 0xEF53);
        if ext4 {
            assert_eq!(after, before | rustix::fs::IFlags::TOPDIR);
        } else {
            assert!(after == before || after == before | rustix::fs::IFlags::TOPDIR);
        }
        spread_subfolders(&dir.path().join("missing")); // no panic, no folder
        assert!(!dir.path().join("missing").exists());
        // A spread folder is made under a temporary name, then renamed;
        // one that exists already is kept as it is.
        let shard = folder.join("ab");
        create_spread_dir(&shard).unwrap();
        std::fs::write(shard.join("object"), b"x").unwrap();
        create_spread_dir(&shard).unwrap();
        assert_eq!(std::fs::read(shard.join("object")).unwrap(), b"x");
        let names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ab"], "no temporary folder is left");
    }
}
