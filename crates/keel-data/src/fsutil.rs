//! Small filesystem helpers: atomic writes (temp file, fsync, rename), unique
//! temporary names, read-only protection.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{DataError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name in `dir` unique to this process and call.
pub fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{stem}.keel-tmp-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `path` so that readers see either the old file or the
/// whole new one: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temp = temp_path(dir, stem);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(DataError::io(path, source));
    }
    Ok(())
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
