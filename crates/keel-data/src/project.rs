//! The project: its root (the folder holding `.keel/`), its configuration
//! (`.keel/config`, committed: remotes and the link strategy), path
//! resolution that keeps every tracked path inside the root, and the project
//! lock that keeps two keel processes from writing the cache at once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{DataError, Result};
use crate::link::LinkKind;

/// Name of the project folder at the root.
pub const KEEL_DIR: &str = ".keel";

/// A keel project on disk.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// Creates `.keel/` (config, cache, its `.gitignore`) in `dir`.
    pub fn init(dir: &Path) -> Result<Project> {
        let root = dir
            .canonicalize()
            .map_err(|source| DataError::io(dir, source))?;
        let keel = root.join(KEEL_DIR);
        if keel.join("config").exists() {
            return Err(DataError::AlreadyInitialized(root));
        }
        for sub in ["cache", "tmp", "state"] {
            std::fs::create_dir_all(keel.join(sub))
                .map_err(|source| DataError::io(keel.join(sub), source))?;
        }
        crate::fsutil::write_atomic(
            &keel.join(".gitignore"),
            b"# Local to this machine: the object cache, temporary files, the stat cache, the lock.\n/cache/\n/tmp/\n/state/\n/quarantine/\n/lock\n/config.local\n",
        )?;
        let project = Project { root };
        project.save_config(&Config::default())?;
        Ok(project)
    }

    /// Finds the project containing `start` (or a parent of it).
    pub fn discover(start: &Path) -> Result<Project> {
        let start = start
            .canonicalize()
            .map_err(|source| DataError::io(start, source))?;
        let mut dir = start.as_path();
        loop {
            if dir.join(KEEL_DIR).join("config").is_file() {
                return Ok(Project {
                    root: dir.to_path_buf(),
                });
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => return Err(DataError::NotAProject(start)),
            }
        }
    }

    /// The project root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.keel/` under the root.
    pub fn keel_dir(&self) -> PathBuf {
        self.root.join(KEEL_DIR)
    }

    /// Absolute path of a root-relative `/`-separated path.
    pub fn abs(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// Reads `.keel/config`.
    pub fn config(&self) -> Result<Config> {
        let path = self.keel_dir().join("config");
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
        Config::parse(&text, &path)
    }

    /// Writes `.keel/config` atomically.
    pub fn save_config(&self, config: &Config) -> Result<()> {
        crate::fsutil::write_atomic(&self.keel_dir().join("config"), config.render().as_bytes())
    }

    /// Resolves a user-given path (relative to `cwd`) to a root-relative,
    /// `/`-separated path, refusing anything that leaves the project, the
    /// root itself, and keel's and git's own folders.
    pub fn resolve(&self, user_path: &Path, cwd: &Path) -> Result<String> {
        let outside = || DataError::OutsideProject {
            path: user_path.to_path_buf(),
            root: self.root.clone(),
        };
        let joined = if user_path.is_absolute() {
            user_path.to_path_buf()
        } else {
            cwd.join(user_path)
        };
        // Lexical normalisation first, so `a/../../x` is caught even when `a` is missing.
        let mut normal = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    if !normal.pop() {
                        return Err(outside());
                    }
                }
                Component::CurDir => {}
                other => normal.push(other),
            }
        }
        // Resolve symlinks in the parent so a linked folder cannot lead outside.
        let name = normal.file_name().map(|name| name.to_os_string());
        let parent = normal.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent = match parent.canonicalize() {
            Ok(parent) => parent,
            Err(_) if !normal.starts_with(&self.root) => return Err(outside()),
            Err(source) => return Err(DataError::io(parent, source)),
        };
        let Some(name) = name else {
            return Err(outside());
        };
        let full = parent.join(&name);
        let relative = full.strip_prefix(&self.root).map_err(|_| outside())?;
        let relative = relative
            .to_str()
            .ok_or_else(|| DataError::Unsupported {
                path: full.clone(),
                reason: "path is not valid UTF-8".into(),
            })?
            .replace(std::path::MAIN_SEPARATOR, "/");
        if relative.is_empty() {
            return Err(DataError::Unsupported {
                path: full,
                reason: "the project root itself cannot be tracked; track a folder inside it"
                    .into(),
            });
        }
        let first = relative.split('/').next().unwrap_or_default();
        if first == KEEL_DIR || first == ".git" {
            return Err(DataError::Unsupported {
                path: full,
                reason: format!("{first} belongs to keel/git and cannot be tracked"),
            });
        }
        if relative.contains('\n') {
            return Err(DataError::Unsupported {
                path: full,
                reason: "file names with a newline are not supported".into(),
            });
        }
        Ok(relative)
    }

    /// Takes the exclusive project lock, waiting up to `wait` for another
    /// keel process to finish. Stale temporary files of killed processes are
    /// removed once the lock is held.
    pub fn lock(&self, wait: Duration) -> Result<ProjectLock> {
        let path = self.keel_dir().join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| DataError::io(&path, source))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = if holder.trim().is_empty() {
                        "unknown process".to_string()
                    } else {
                        holder.trim().to_string()
                    };
                    return Err(DataError::Locked { path, holder });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(DataError::io(&path, source));
                }
            }
        }
        let mut file = file;
        let _ = file.set_len(0);
        let _ = write!(file, "pid {}", std::process::id());
        let tmp = self.keel_dir().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|source| DataError::io(&tmp, source))?;
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ProjectLock { _file: file })
    }
}

/// Held while a command changes the cache, the stat cache or the workspace;
/// released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
}

/// `.keel/config`: the default remote, the named remotes and the link order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The remote used when none is named.
    pub default_remote: Option<String>,
    /// Link strategies, tried in order.
    pub link: Vec<LinkKind>,
    /// Named remotes and their URLs, in the order they were added.
    pub remotes: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_remote: None,
            link: LinkKind::DEFAULT_ORDER.to_vec(),
            remotes: Vec::new(),
        }
    }
}

impl Config {
    /// Renders the config file.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# keel project configuration: commit it. Edited by `keel data remote add`.\n[core]\n",
        );
        if let Some(remote) = &self.default_remote {
            text.push_str(&format!("remote = {remote}\n"));
        }
        let link: Vec<&str> = self.link.iter().map(|kind| kind.as_str()).collect();
        text.push_str(&format!("link = {}\n", link.join(",")));
        for (name, url) in &self.remotes {
            text.push_str(&format!("\n[remote \"{name}\"]\nurl = {url}\n"));
        }
        text
    }

    /// Parses the config file.
    pub fn parse(text: &str, origin: &Path) -> Result<Config> {
        let error = |line: usize, message: String| DataError::Parse {
            path: origin.to_path_buf(),
            line,
            message,
        };
        let mut config = Config::default();
        let mut section = String::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(header) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                section = header.trim().to_string();
                if let Some(name) = remote_section(&section) {
                    validate_remote_name(name).map_err(|message| error(line_no, message))?;
                    config.remotes.push((name.to_string(), String::new()));
                } else if section != "core" {
                    return Err(error(line_no, format!("unknown section [{section}]")));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(error(
                    line_no,
                    format!("expected `key = value`, found `{line}`"),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match (section.as_str(), key) {
                ("core", "remote") => config.default_remote = Some(value.to_string()),
                ("core", "link") => {
                    config.link =
                        LinkKind::parse_list(value).map_err(|message| error(line_no, message))?
                }
                (section, "url") if remote_section(section).is_some() => {
                    if let Some(last) = config.remotes.last_mut() {
                        last.1 = value.to_string();
                    }
                }
                (section, key) => {
                    return Err(error(
                        line_no,
                        format!("unknown key `{key}` in [{section}]"),
                    ));
                }
            }
        }
        if let Some((name, _)) = config.remotes.iter().find(|(_, url)| url.is_empty()) {
            return Err(error(0, format!("remote `{name}` has no url")));
        }
        Ok(config)
    }

    /// Adds a remote; the first one becomes the default.
    pub fn add_remote(&mut self, name: &str, url: &str, make_default: bool) -> Result<()> {
        validate_remote_name(name).map_err(DataError::Invalid)?;
        if url.trim().is_empty() || url.contains('\n') {
            return Err(DataError::BadRemoteUrl {
                url: url.into(),
                reason: "empty or multi-line URL".into(),
            });
        }
        if self.remotes.iter().any(|(existing, _)| existing == name) {
            return Err(DataError::Invalid(format!(
                "remote `{name}` already exists"
            )));
        }
        self.remotes
            .push((name.to_string(), url.trim().to_string()));
        if make_default || self.default_remote.is_none() {
            self.default_remote = Some(name.to_string());
        }
        Ok(())
    }

    /// The URL of `name`, or of the default remote when `name` is None.
    pub fn remote_url(&self, name: Option<&str>) -> Result<(String, String)> {
        let name = match name {
            Some(name) => name.to_string(),
            None => self.default_remote.clone().ok_or(DataError::NoRemote)?,
        };
        let url = self
            .remotes
            .iter()
            .find(|(existing, _)| *existing == name)
            .map(|(_, url)| url.clone());
        url.map(|url| (name.clone(), url))
            .ok_or(DataError::UnknownRemote(name))
    }
}

fn remote_section(section: &str) -> Option<&str> {
    section.strip_prefix("remote \"")?.strip_suffix('"')
}

fn validate_remote_name(name: &str) -> std::result::Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        Ok(())
    } else {
        Err(format!(
            "remote name `{name}` must be letters, digits, `-`, `_` or `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_first_remote_is_default() {
        let mut config = Config::default();
        config.add_remote("origin", "/tmp/remote", false).unwrap();
        config
            .add_remote("s3", "s3://bucket/prefix", false)
            .unwrap();
        assert_eq!(config.default_remote.as_deref(), Some("origin"));
        let parsed = Config::parse(&config.render(), Path::new("config")).unwrap();
        assert_eq!(parsed, config);
        assert_eq!(
            parsed.remote_url(Some("s3")).unwrap().1,
            "s3://bucket/prefix"
        );
        assert!(matches!(
            parsed.remote_url(Some("nope")),
            Err(DataError::UnknownRemote(_))
        ));
        assert!(matches!(
            Config::default().remote_url(None),
            Err(DataError::NoRemote)
        ));
        assert!(config.add_remote("origin", "/x", false).is_err());
        assert!(config.add_remote("bad name", "/x", false).is_err());
    }

    #[test]
    fn config_errors_name_the_line() {
        let error = Config::parse("[core]\nlink = teleport\n", Path::new("config"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("config:2:"), "{error}");
    }

    #[test]
    fn resolve_keeps_paths_inside_the_project() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::init(dir.path()).unwrap();
        let root = project.root().to_path_buf();
        std::fs::create_dir(root.join("sub")).unwrap();
        assert_eq!(
            project.resolve(Path::new("sub/../data"), &root).unwrap(),
            "data"
        );
        assert_eq!(
            project
                .resolve(Path::new("x.csv"), &root.join("sub"))
                .unwrap(),
            "sub/x.csv"
        );
        assert_eq!(
            project.resolve(&root.join("sub/y"), &root).unwrap(),
            "sub/y"
        );
        for bad in ["../x", "sub/../../x", "/etc/passwd"] {
            assert!(
                matches!(
                    project.resolve(Path::new(bad), &root),
                    Err(DataError::OutsideProject { .. })
                ),
                "{bad}"
            );
        }
        assert!(project.resolve(Path::new(".keel/cache"), &root).is_err());
        assert!(project.resolve(Path::new("."), &root).is_err());
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        assert!(matches!(
            project.resolve(Path::new("link/file"), &root),
            Err(DataError::OutsideProject { .. })
        ));
        assert!(Project::init(dir.path()).is_err());
        assert_eq!(Project::discover(&root.join("sub")).unwrap().root(), root);
    }

    #[test]
    fn a_second_lock_waits_then_fails_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::init(dir.path()).unwrap();
        let held = project.lock(Duration::ZERO).unwrap();
        let error = project
            .lock(Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("locked by another keel process (pid"),
            "{error}"
        );
        drop(held);
        project.lock(Duration::ZERO).unwrap();
    }
}
