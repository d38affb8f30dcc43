//! Reading metafiles at a git revision (`git ls-tree` + one `git cat-file
//! --batch`), so `diff` and `gc` see any commit without touching the
//! working tree.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{DataError, Result};
use crate::metafile::{self, Metafile};
use crate::workspace::find_metafiles;

/// Tracked path → metafile, for one revision or the workspace.
pub type Snapshot = BTreeMap<String, Metafile>;

fn git(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|error| DataError::Git {
            command: args.join(" "),
            message: format!("cannot run git: {error}"),
        })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(DataError::Git {
            command: args.join(" "),
            message,
        });
    }
    Ok(output.stdout)
}

/// Files under `path` (project-relative) that git tracks in its index; empty
/// when the project is not in a git repository or git is not installed
/// (there is then nothing to conflict with).
pub fn tracked_files(root: &Path, path: &str) -> Vec<String> {
    let output = Command::new("git")
        .args(["ls-files", "-z", "--", path])
        .current_dir(root)
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => output
            .stdout
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Full commit ids of every commit reachable from any ref.
pub fn all_commits(root: &Path) -> Result<Vec<String>> {
    let out = git(root, &["rev-list", "--all"])?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect())
}

/// The metafiles in the workspace.
pub fn workspace_snapshot(root: &Path) -> Result<Snapshot> {
    let mut snapshot = Snapshot::new();
    for metafile_path in find_metafiles(root)? {
        let metafile = Metafile::read(&root.join(&metafile_path))?;
        let data = metafile_path
            .strip_suffix(metafile::SUFFIX)
            .unwrap_or(&metafile_path)
            .to_string();
        snapshot.insert(data, metafile);
    }
    Ok(snapshot)
}

/// The metafiles under the project root as committed at `rev`.
pub fn snapshot_at(root: &Path, rev: &str) -> Result<Snapshot> {
    if rev.starts_with('-') {
        return Err(DataError::Git {
            command: "rev-parse".into(),
            message: format!("bad revision `{rev}`"),
        });
    }
    let commit = String::from_utf8_lossy(
        &git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .map_err(|_| DataError::Git {
            command: format!("rev-parse {rev}"),
            message: format!("unknown revision `{rev}`"),
        })?,
    )
    .trim()
    .to_string();
    let listing = git(
        root,
        &["ls-tree", "-r", "-z", "--name-only", &commit, "--", "."],
    )?;
    let paths: Vec<String> = listing
        .split(|byte| *byte == 0)
        .filter_map(|raw| std::str::from_utf8(raw).ok())
        .filter(|path| {
            path.ends_with(metafile::SUFFIX)
                && !path.split('/').any(|part| part == crate::project::KEEL_DIR)
        })
        .map(str::to_string)
        .collect();
    let mut snapshot = Snapshot::new();
    if paths.is_empty() {
        return Ok(snapshot);
    }
    let mut child = Command::new("git")
        .args(["cat-file", "--batch"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| DataError::Git {
            command: "cat-file --batch".into(),
            message: error.to_string(),
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| DataError::Git {
        command: "cat-file".into(),
        message: "no stdin".into(),
    })?;
    let requests: String = paths
        .iter()
        .map(|path| format!("{commit}:./{path}\n"))
        .collect();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(requests.as_bytes());
    });
    let stdout = child.stdout.take().ok_or_else(|| DataError::Git {
        command: "cat-file".into(),
        message: "no stdout".into(),
    })?;
    let mut reader = BufReader::new(stdout);
    for path in &paths {
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .map_err(|error| DataError::Git {
                command: "cat-file".into(),
                message: error.to_string(),
            })?;
        let size: usize = header
            .split_whitespace()
            .nth(2)
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| DataError::Git {
                command: "cat-file".into(),
                message: format!("cannot read {rev}:{path} ({})", header.trim()),
            })?;
        let mut body = vec![0u8; size + 1];
        reader
            .read_exact(&mut body)
            .map_err(|error| DataError::Git {
                command: "cat-file".into(),
                message: error.to_string(),
            })?;
        body.truncate(size);
        let text = String::from_utf8_lossy(&body);
        let origin = Path::new(rev).join(path);
        let metafile = Metafile::parse(&text, &origin)?;
        snapshot.insert(
            path.strip_suffix(metafile::SUFFIX)
                .unwrap_or(path)
                .to_string(),
            metafile,
        );
    }
    let _ = writer.join();
    let _ = child.wait();
    Ok(snapshot)
}
