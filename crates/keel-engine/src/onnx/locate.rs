//! Where the ONNX Runtime shared library is: the one place keel decides which
//! `libonnxruntime.so` to load.
//!
//! Order (the first hit wins; an explicit setting that names no file is an
//! error, not a reason to look elsewhere):
//! 1. the path set by `--onnxruntime-lib` ([`super::set_onnxruntime_library`]);
//! 2. `KEEL_ONNXRUNTIME_LIB`, then `ORT_DYLIB_PATH`;
//! 3. the active Python environment's `onnxruntime` wheel, without running
//!    Python: `$VIRTUAL_ENV`, then `$CONDA_PREFIX`
//!    (`lib/python*/site-packages/onnxruntime/capi/libonnxruntime.so*`);
//! 4. the `onnxruntime` package the active interpreter imports
//!    (`$VIRTUAL_ENV/bin/python`, else `python3` on `PATH`), asked with
//!    `importlib.util.find_spec` (the package is not imported, so the library
//!    is not loaded by Python), bounded to a few seconds;
//! 5. `LD_LIBRARY_PATH`'s folders, then the usual system folders
//!    (`/opt/onnxruntime/lib`, `/usr/local/lib`, `/usr/lib/<arch>-linux-gnu`,
//!    `/usr/lib64`, `/usr/lib`).
//!
//! In a folder the highest-versioned `libonnxruntime.so.X.Y.Z` is taken
//! (`libonnxruntime.so` itself last).

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{EngineError, Result};

/// keel's variable naming the ONNX Runtime shared library (checked before `ORT_DYLIB_PATH`).
pub const LIBRARY_ENV: &str = "KEEL_ONNXRUNTIME_LIB";
/// The `ort` crate's own variable, honoured after keel's.
pub const ORT_ENV: &str = "ORT_DYLIB_PATH";

/// How long the Python interpreter may take to say where `onnxruntime` is.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read from the interpreter's answer (one folder path).
const PYTHON_ANSWER_BYTES: u64 = 4096;
/// Prints the `onnxruntime` package's folder without importing it.
const PYTHON_SNIPPET: &str = "import importlib.util as u\n\
s = u.find_spec('onnxruntime')\n\
print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";

/// Where a located library came from (said when it loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// `--onnxruntime-lib`.
    Flag,
    /// An environment variable (`KEEL_ONNXRUNTIME_LIB`, `ORT_DYLIB_PATH`).
    Variable(&'static str),
    /// The `onnxruntime` wheel of the Python environment at this prefix
    /// (named by the variable).
    PythonEnv(&'static str, PathBuf),
    /// The `onnxruntime` package this interpreter imports.
    Python(PathBuf),
    /// A folder of `LD_LIBRARY_PATH`.
    LdLibraryPath,
    /// A system library folder.
    System,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibrarySource::Flag => write!(f, "--onnxruntime-lib"),
            LibrarySource::Variable(name) => write!(f, "{name}"),
            LibrarySource::PythonEnv(variable, prefix) => write!(
                f,
                "the onnxruntime wheel of the Python environment {variable}={}",
                prefix.display()
            ),
            LibrarySource::Python(python) => {
                write!(f, "the onnxruntime package of {}", python.display())
            }
            LibrarySource::LdLibraryPath => write!(f, "LD_LIBRARY_PATH"),
            LibrarySource::System => write!(f, "a system library folder"),
        }
    }
}

/// A located ONNX Runtime shared library and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxRuntimeLibrary {
    /// The file to load.
    pub path: PathBuf,
    /// Which setting or search step named it.
    pub source: LibrarySource,
}

impl fmt::Display for OnnxRuntimeLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.path.display(), self.source)
    }
}

/// What the search looks at. [`OnnxRuntimeSearch::from_environment`] reads it
/// from this process; tests build their own.
#[derive(Debug, Clone)]
pub struct OnnxRuntimeSearch {
    /// `--onnxruntime-lib`.
    pub flag: Option<PathBuf>,
    /// Variables naming the library, in order, with their values.
    pub variables: Vec<(&'static str, Option<OsString>)>,
    /// Python environment prefixes searched without running Python, in order.
    pub python_envs: Vec<(&'static str, PathBuf)>,
    /// Interpreters asked where `onnxruntime` is, in order.
    pub pythons: Vec<PathBuf>,
    /// Longest wait for one interpreter's answer.
    pub python_timeout: Duration,
    /// `LD_LIBRARY_PATH`'s folders.
    pub ld_library_path: Vec<PathBuf>,
    /// System library folders, in order.
    pub system_dirs: Vec<PathBuf>,
}

impl OnnxRuntimeSearch {
    /// The search as this process sees it: its variables, `PATH` and system folders.
    pub fn from_environment() -> OnnxRuntimeSearch {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let virtual_env = var("VIRTUAL_ENV").map(PathBuf::from);
        let mut python_envs = Vec::new();
        if let Some(prefix) = &virtual_env {
            python_envs.push(("VIRTUAL_ENV", prefix.clone()));
        }
        if let Some(prefix) = var("CONDA_PREFIX") {
            python_envs.push(("CONDA_PREFIX", PathBuf::from(prefix)));
        }
        let pythons = match &virtual_env {
            Some(prefix) => vec![prefix.join("bin/python")],
            None => vec![PathBuf::from("python3")],
        };
        OnnxRuntimeSearch {
            flag: None,
            variables: vec![(LIBRARY_ENV, var(LIBRARY_ENV)), (ORT_ENV, var(ORT_ENV))],
            python_envs,
            pythons,
            python_timeout: PYTHON_TIMEOUT,
            ld_library_path: var("LD_LIBRARY_PATH")
                .map(|paths| {
                    std::env::split_paths(&paths)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            system_dirs: system_dirs(),
        }
    }

    /// Searches a Python environment (a venv prefix) before every other
    /// Python environment, e.g. a test suite's pinned venv.
    pub fn with_python_env_first(mut self, variable: &'static str, prefix: PathBuf) -> Self {
        self.python_envs.insert(0, (variable, prefix));
        self
    }

    /// Searches the Python environment named by `variable` (a venv prefix),
    /// when it is set, before every other Python environment: e.g. a test
    /// suite's pinned venv.
    pub fn with_python_env_variable(self, variable: &'static str) -> Self {
        match std::env::var_os(variable).filter(|v| !v.is_empty()) {
            Some(prefix) => self.with_python_env_first(variable, PathBuf::from(prefix)),
            None => self,
        }
    }

    /// The library to load, or an error naming every place looked at.
    pub fn locate(&self) -> Result<OnnxRuntimeLibrary> {
        if let Some(path) = &self.flag {
            return explicit(path, LibrarySource::Flag, "--onnxruntime-lib");
        }
        for (variable, value) in &self.variables {
            if let Some(value) = value {
                return explicit(
                    Path::new(value),
                    LibrarySource::Variable(variable),
                    variable,
                );
            }
        }
        let mut looked = vec![format!(
            "{} (unset)",
            self.variables
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )];
        for (variable, prefix) in &self.python_envs {
            if let Some(path) = library_in_python_env(prefix) {
                let source = LibrarySource::PythonEnv(variable, prefix.clone());
                return Ok(OnnxRuntimeLibrary { path, source });
            }
            looked.push(format!("{variable}={}", prefix.display()));
        }
        for python in &self.pythons {
            match package_dir(python, self.python_timeout) {
                Some(package) => {
                    if let Some(path) = library_in_dir(&package.join("capi")) {
                        let source = LibrarySource::Python(python.clone());
                        return Ok(OnnxRuntimeLibrary { path, source });
                    }
                    looked.push(format!("{}/capi", package.display()));
                }
                None => looked.push(format!(
                    "{} (no onnxruntime package, or no such interpreter)",
                    python.display()
                )),
            }
        }
        let folders = (self.ld_library_path.iter().map(|d| (d, true)))
            .chain(self.system_dirs.iter().map(|d| (d, false)));
        for (dir, from_ld_path) in folders {
            if let Some(path) = library_in_dir(dir) {
                let source = if from_ld_path {
                    LibrarySource::LdLibraryPath
                } else {
                    LibrarySource::System
                };
                return Ok(OnnxRuntimeLibrary { path, source });
            }
            looked.push(dir.display().to_string());
        }
        Err(EngineError::Runtime(format!(
            "serving an ONNX model needs the ONNX Runtime shared library and none was found \
             (looked at: {}); `pip install onnxruntime==1.32.0` in the active Python \
             environment, or set {LIBRARY_ENV} to libonnxruntime.so.*",
            looked.join("; ")
        )))
    }
}

/// An explicit setting: the file it names, or an error (never a fallback).
fn explicit(path: &Path, source: LibrarySource, setting: &str) -> Result<OnnxRuntimeLibrary> {
    if path.is_file() {
        return Ok(OnnxRuntimeLibrary {
            path: path.to_path_buf(),
            source,
        });
    }
    Err(EngineError::Runtime(format!(
        "{setting}={} does not name a file; point it at libonnxruntime.so.* \
         (e.g. <venv>/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0)",
        path.display()
    )))
}

/// The usual system library folders, most specific first.
fn system_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/opt/onnxruntime/lib"),
        PathBuf::from("/usr/local/lib"),
    ];
    if cfg!(target_os = "linux") {
        dirs.push(PathBuf::from(format!(
            "/usr/lib/{}-linux-gnu",
            std::env::consts::ARCH
        )));
        dirs.push(PathBuf::from("/usr/lib64"));
    }
    if cfg!(target_os = "macos") {
        dirs.push(PathBuf::from("/opt/homebrew/lib"));
    }
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

/// The ONNX Runtime library in one folder: the highest-versioned
/// `libonnxruntime.so.X.Y.Z` (or `.dylib`), the unversioned name last.
pub fn library_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("libonnxruntime.") else {
            continue;
        };
        let parts: Vec<&str> = rest.split('.').collect();
        // `so` then numbers (Linux), or numbers then `dylib` (macOS); nothing else.
        let numbers = match parts.as_slice() {
            ["so", version @ ..] | [version @ .., "dylib"] => version,
            _ => continue,
        };
        let Some(version) = numbers
            .iter()
            .map(|p| p.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()
        else {
            continue;
        };
        let path = entry.path();
        // A dangling link or a folder is not a library.
        if path.is_file() {
            found.push((version, path));
        }
    }
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// `libonnxruntime.so.*` inside a Python environment (venv or conda prefix)
/// that has the `onnxruntime` wheel installed, if there is one.
pub fn library_in_python_env(prefix: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = ["lib", "lib64"]
        .iter()
        .filter_map(|lib| std::fs::read_dir(prefix.join(lib)).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .map(|entry| entry.path())
        .collect();
    // The newest Python (python3.12 after python3.11) wins when several are there.
    pythons.sort();
    pythons
        .iter()
        .rev()
        .find_map(|python| library_in_dir(&python.join("site-packages/onnxruntime/capi")))
}

/// The `onnxruntime` package folder this interpreter imports, asked without
/// importing it; None when the interpreter is missing, fails, has no such
/// package or does not answer within `timeout` (it is then killed).
fn package_dir(python: &Path, timeout: Duration) -> Option<PathBuf> {
    let mut child = Command::new(python)
        .args(["-c", PYTHON_SNIPPET])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    if !status.success() {
        return None;
    }
    let mut answer = String::new();
    child
        .stdout
        .take()?
        .take(PYTHON_ANSWER_BYTES)
        .read_to_string(&mut answer)
        .ok()?;
    let answer = answer.trim();
    (!answer.is_empty()).then(|| PathBuf::from(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A search that looks nowhere; each test adds the places it needs.
    fn nowhere() -> OnnxRuntimeSearch {
        OnnxRuntimeSearch {
            flag: None,
            variables: vec![(LIBRARY_ENV, None), (ORT_ENV, None)],
            python_envs: Vec::new(),
            pythons: Vec::new(),
            python_timeout: Duration::from_secs(5),
            ld_library_path: Vec::new(),
            system_dirs: Vec::new(),
        }
    }

    /// A fake file (never loaded) at `dir/name`.
    fn touch(dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, b"not a library").unwrap();
        path
    }

    /// A venv layout with the onnxruntime wheel's library.
    fn fake_venv(root: &Path, python: &str, library: &str) -> (PathBuf, PathBuf) {
        let prefix = root.join("venv");
        let capi = prefix.join(format!("lib/{python}/site-packages/onnxruntime/capi"));
        touch(&capi, "libonnxruntime_providers_shared.so");
        (prefix.clone(), touch(&capi, library))
    }

    #[test]
    fn variables_come_first_and_a_wrong_one_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let (venv, _) = fake_venv(temp.path(), "python3.11", "libonnxruntime.so.1.32.0");
        let from_variable = touch(&temp.path().join("elsewhere"), "libonnxruntime.so.1.20.0");
        let mut search = nowhere();
        search.python_envs.push(("VIRTUAL_ENV", venv));
        search.variables[1].1 = Some(from_variable.clone().into_os_string());
        let found = search.locate().unwrap();
        assert_eq!(found.path, from_variable);
        assert_eq!(found.source, LibrarySource::Variable(ORT_ENV));

        // KEEL_ONNXRUNTIME_LIB before ORT_DYLIB_PATH, and a wrong value is not skipped.
        search.variables[0].1 = Some(temp.path().join("missing.so").into_os_string());
        let error = search.locate().unwrap_err().to_string();
        assert!(error.contains("KEEL_ONNXRUNTIME_LIB=") && error.contains("missing.so"));

        // The flag before both.
        search.flag = Some(from_variable.clone());
        assert_eq!(search.locate().unwrap().source, LibrarySource::Flag);
    }

    #[test]
    fn python_environment_before_interpreter_before_system_folders() {
        let temp = tempfile::tempdir().unwrap();
        let (venv, wheel_library) =
            fake_venv(temp.path(), "python3.12", "libonnxruntime.so.1.32.0");
        let ld = touch(&temp.path().join("ld"), "libonnxruntime.so.1.19.2");
        let system = touch(&temp.path().join("usr/lib"), "libonnxruntime.so");
        let mut search = nowhere();
        search.ld_library_path = vec![temp.path().join("empty"), temp.path().join("ld")];
        search.system_dirs = vec![temp.path().join("usr/lib")];
        search.python_envs.push(("VIRTUAL_ENV", venv.clone()));

        let found = search.locate().unwrap();
        assert_eq!(found.path, wheel_library);
        assert_eq!(
            found.source,
            LibrarySource::PythonEnv("VIRTUAL_ENV", venv.clone())
        );
        assert!(found.to_string().contains("VIRTUAL_ENV="), "{found}");

        search.python_envs.clear();
        let found = search.locate().unwrap();
        assert_eq!(
            (found.path, found.source),
            (ld, LibrarySource::LdLibraryPath)
        );

        search.ld_library_path.clear();
        let found = search.locate().unwrap();
        assert_eq!((found.path, found.source), (system, LibrarySource::System));

        search.system_dirs.clear();
        let error = search.locate().unwrap_err().to_string();
        assert!(error.contains("pip install onnxruntime"), "{error}");
        assert!(
            error.contains("usr/lib") || error.contains("unset"),
            "{error}"
        );
    }

    #[test]
    fn a_folder_gives_its_highest_version() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        touch(dir, "libonnxruntime.so");
        touch(dir, "libonnxruntime.so.1.9.0");
        let newest = touch(dir, "libonnxruntime.so.1.32.0");
        touch(dir, "libonnxruntime_providers_shared.so");
        touch(dir, "libonnxruntime.so.1.40.0.txt.bak");
        std::fs::create_dir_all(dir.join("libonnxruntime.so.2.0.0")).unwrap();
        assert_eq!(library_in_dir(dir), Some(newest));
        assert_eq!(library_in_dir(&dir.join("absent")), None);

        let only = tempfile::tempdir().unwrap();
        touch(only.path(), "libonnxruntime_providers_shared.so");
        assert_eq!(library_in_dir(only.path()), None);
    }

    #[test]
    fn the_newest_python_of_an_environment_wins() {
        let temp = tempfile::tempdir().unwrap();
        fake_venv(temp.path(), "python3.10", "libonnxruntime.so.1.16.0");
        let (venv, newest) = fake_venv(temp.path(), "python3.12", "libonnxruntime.so.1.32.0");
        std::fs::create_dir_all(venv.join("lib/python3.13/site-packages")).unwrap();
        assert_eq!(library_in_python_env(&venv), Some(newest));
        assert_eq!(library_in_python_env(&temp.path().join("none")), None);
    }

    /// An executable script standing in for a Python interpreter.
    #[cfg(unix)]
    fn fake_python(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("python");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn the_interpreter_says_where_its_package_is() {
        let temp = tempfile::tempdir().unwrap();
        let package = temp.path().join("site/onnxruntime");
        let library = touch(&package.join("capi"), "libonnxruntime.so.1.32.0");
        let bin = temp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let system = touch(&temp.path().join("usr/lib"), "libonnxruntime.so.1.32.0");

        let mut search = nowhere();
        search.system_dirs = vec![temp.path().join("usr/lib")];
        // An interpreter that does not exist, then one without the package,
        // then one with it.
        let empty = temp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        search.pythons = vec![
            temp.path().join("no-such-python"),
            fake_python(&empty, "echo"),
            fake_python(&bin, &format!("echo '{}'", package.display())),
        ];
        let found = search.locate().unwrap();
        assert_eq!(found.path, library);
        assert_eq!(found.source, LibrarySource::Python(bin.join("python")));

        // An interpreter that hangs is killed and the search goes on.
        search.pythons = vec![fake_python(&bin, "exec sleep 30")];
        search.python_timeout = Duration::from_millis(200);
        let found = search.locate().unwrap();
        assert_eq!((found.path, found.source), (system, LibrarySource::System));
    }
}
