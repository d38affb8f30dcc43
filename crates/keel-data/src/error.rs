//! The error type of keel-data. Every variant names the file, path, remote or
//! revision it is about, so the binary can print it as is.

use std::path::PathBuf;

/// Errors from data versioning. User mistakes (a path outside the project, a
/// missing remote) and environment failures (an unreadable file) are kept
/// apart so the binary can word them differently.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No `.keel/` directory was found from the given directory upwards.
    #[error("not a keel project: no .keel directory in {0} or any parent (run `keel init`)")]
    NotAProject(PathBuf),
    /// `keel init` in a folder that already has a project.
    #[error("{0} is already a keel project")]
    AlreadyInitialized(PathBuf),
    /// The path resolves outside the project root (`..`, an absolute path
    /// elsewhere, or a symlink pointing out).
    #[error("{path}: path is outside the project {root}")]
    OutsideProject {
        /// The path as the user gave it.
        path: PathBuf,
        /// The project root.
        root: PathBuf,
    },
    /// The path does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// `keel data add` of a path whose files git already versions.
    #[error(
        "{path}: already tracked by git ({count} file(s), e.g. {example}); keel would git-ignore it \
         while git keeps versioning the bytes. Stop tracking it in git (the files stay on disk): \
         `git rm -r --cached {path}`, commit, then run `keel data add {path}` again"
    )]
    TrackedByGit {
        /// The path as given (project-relative).
        path: String,
        /// How many files git tracks under it.
        count: usize,
        /// One of them.
        example: String,
    },
    /// The path exists but is not tracked by a `.keel` metafile.
    #[error("{0}: not tracked by keel (no {0}.keel metafile)")]
    NotTracked(PathBuf),
    /// The path is something keel does not track (a symlink, a socket, the
    /// project's own `.keel` or `.git` folder, a metafile).
    #[error("{path}: {reason}")]
    Unsupported {
        /// The offending path.
        path: PathBuf,
        /// Why it cannot be tracked.
        reason: String,
    },
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A metafile, manifest, config or stat-cache file that does not parse.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is at fault).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A remote name that is not in the configuration.
    #[error(
        "remote `{0}` is not configured (see `keel data remote list`; add one with `keel data remote add NAME URL`)"
    )]
    UnknownRemote(String),
    /// No remote configured at all.
    #[error("no remote is configured; add one with `keel data remote add NAME URL`")]
    NoRemote,
    /// A remote URL keel cannot use.
    #[error("remote URL `{url}`: {reason}")]
    BadRemoteUrl {
        /// The URL as configured.
        url: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The object store behind a remote failed.
    #[error("remote `{remote}`: {source}")]
    Remote {
        /// Remote name.
        remote: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// Another keel process holds the project lock.
    #[error("the project is locked by another keel process ({holder}); lock file {path}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// A git command failed (bad revision, not a git repository).
    #[error("git {command}: {message}")]
    Git {
        /// The git command line, without `git`.
        command: String,
        /// git's stderr, trimmed.
        message: String,
    },
    /// Several files failed; the first few are listed.
    #[error("{count} file(s) failed, first: {first}")]
    Many {
        /// How many failed.
        count: usize,
        /// The first failure.
        first: Box<DataError>,
    },
    /// Anything else the user asked for that cannot be done, with the reason.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// Folds a list of per-file failures into one error (None when empty).
    pub fn many(mut errors: Vec<DataError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            count => Some(DataError::Many {
                count,
                first: Box::new(errors.swap_remove(0)),
            }),
        }
    }
}

/// Result alias for keel-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
