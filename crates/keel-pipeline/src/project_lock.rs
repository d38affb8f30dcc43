//! One `keel run` per project at a time: an exclusive `flock` on
//! `.keel/run.lock`, held for the whole run (stages, tracking, registration)
//! and released by the kernel when the process ends, however it ends (a
//! `kill -9` leaves no stale lock behind). Two runs in one project would
//! delete each other's outputs and register one run's params with the other
//! run's model files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{PipelineError, Result};

/// The lock of a project, held until dropped.
#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
    path: PathBuf,
}

/// What to do when another `keel run` holds the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenHeld {
    /// Wait for it to finish (after telling the user).
    Wait,
    /// Fail at once.
    Fail,
}

impl ProjectLock {
    /// Locks the project at `root`. When another run holds it, `Wait` calls
    /// `waiting` with the holder's description and blocks until it is free;
    /// `Fail` returns an error naming the holder.
    pub fn acquire(
        root: &Path,
        when_held: WhenHeld,
        waiting: impl FnOnce(&str),
    ) -> Result<ProjectLock> {
        let folder = root.join(".keel");
        std::fs::create_dir_all(&folder).map_err(|e| PipelineError::io(&folder, e))?;
        let path = folder.join("run.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| PipelineError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&path);
                match when_held {
                    WhenHeld::Fail => {
                        return Err(PipelineError::Invalid(format!(
                            "another keel run ({holder}) is running in {}; wait for it, or run \
                             without --no-wait to queue behind it",
                            root.display()
                        )));
                    }
                    WhenHeld::Wait => {
                        waiting(&holder);
                        file.lock().map_err(|e| PipelineError::io(&path, e))?;
                    }
                }
            }
            Err(TryLockError::Error(error)) => return Err(PipelineError::io(&path, error)),
        }
        let mut lock = ProjectLock { _file: file, path };
        lock.describe()?;
        Ok(lock)
    }

    /// Writes this process's id into the lock file, for the next run's message.
    fn describe(&mut self) -> Result<()> {
        let file = &mut self._file;
        file.set_len(0)
            .and_then(|()| writeln!(file, "pid {}", std::process::id()))
            .map_err(|e| PipelineError::io(&self.path, e))
    }
}

fn holder(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "another process".to_string(),
    }
}
