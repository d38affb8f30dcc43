//! Helpers shared by keel-learn's integration tests: the pinned Python venv.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python that can `import module`: `KEEL_ORT_PYTHON`, else the pinned
/// venv's (`KEEL_PY_VENV`, which `tests/run.sh` prepares). `None` (the test
/// is skipped) when there is none, except under `CI=true`, where it fails.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var("KEEL_ORT_PYTHON").ok().map(PathBuf::from),
        std::env::var("KEEL_PY_VENV")
            .ok()
            .filter(|venv| !venv.is_empty())
            .map(|venv| Path::new(&venv).join("bin/python")),
    ];
    let found = candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with {module}: tests/run.sh should have set KEEL_PY_VENV"
        );
        eprintln!("skipping: no Python with {module} (set KEEL_PY_VENV or KEEL_ORT_PYTHON)");
    }
    found
}
