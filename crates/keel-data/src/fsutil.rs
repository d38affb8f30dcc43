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
