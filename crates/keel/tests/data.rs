//! End-to-end tests of `keel init` and `keel data …`, driving the real binary
//! in a temporary git repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    /// `git init` + `keel init` in a fresh temp dir.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("project");
        std::fs::create_dir(&root).unwrap();
        let repo = Repo { _dir: dir, root };
        repo.git(&["init", "-q"]);
        repo.ok(&["init"]);
        repo
    }

    fn keel(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .current_dir(&self.root)
            .env("CI", "true")
            .env_remove("RUST_LOG")
            .output()
            .expect("run keel")
    }

    /// Runs keel and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.keel(args);
        assert!(
            output.status.success(),
            "keel {args:?} failed:\nstdout: {}\nstderr: {}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs keel and asserts failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.keel(args);
        assert!(
            !output.status.success(),
            "keel {args:?} should fail:\nstdout: {}",
            text(&output.stdout)
        );
        text(&output.stderr)
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=keel test",
                "-c",
                "user.email=test@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&self.root)
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?}");
    }

    fn write(&self, path: &str, bytes: &[u8]) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    /// Cache path of a file inside a tracked directory, via `keel data ls --json`.
    fn object_of(&self, tracked: &str, file: &str) -> PathBuf {
        let listing: serde_json::Value =
            serde_json::from_str(&self.ok(&["data", "ls", tracked, "--json"])).unwrap();
        let digest = listing[0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["path"] == file)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        self.root
            .join(".keel/cache/blake3")
            .join(&digest[..2])
            .join(&digest[2..])
    }

    fn with_data(&self) {
        self.write("data/a.txt", b"alpha\n");
        self.write("data/b.txt", b"bravo\n");
        self.write("data/nested/c.txt", b"charlie\n");
        self.write("model.bin", &[7u8; 10_000]);
        self.ok(&["data", "add", "data", "model.bin"]);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            if entry.file_type().unwrap().is_dir() {
                count_files(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

fn remove_file(path: &Path) {
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn add_status_modify_and_checkout() {
    let repo = Repo::new();
    repo.with_data();
    let metafile = String::from_utf8(repo.read("data.keel")).unwrap();
    assert!(
        metafile.contains("kind: directory\nhash: blake3\n"),
        "{metafile}"
    );
    assert!(metafile.contains("files: 3\n"), "{metafile}");
    assert!(
        String::from_utf8(repo.read(".gitignore"))
            .unwrap()
            .contains("/data\n")
    );
    assert!(
        repo.ok(&["data", "status"])
            .contains("up to date (2 tracked path(s))")
    );

    remove_file(&repo.root.join("data/a.txt"));
    repo.write("data/a.txt", b"ALPHA\n");
    repo.write("data/new.txt", b"new");
    let status = repo.ok(&["data", "status"]);
    assert!(status.contains("modified: data/a.txt"), "{status}");
    assert!(status.contains("added:    data/new.txt"), "{status}");

    // Local edits that are not in the cache survive a plain checkout...
    let stderr = repo.fails(&["data", "checkout"]);
    assert!(
        stderr.contains("data/a.txt (local changes not in the cache"),
        "{stderr}"
    );
    assert_eq!(repo.read("data/a.txt"), b"ALPHA\n");
    // ...and are discarded with --force.
    repo.ok(&["data", "checkout", "--force"]);
    assert_eq!(repo.read("data/a.txt"), b"alpha\n");
    assert!(!repo.root.join("data/new.txt").exists());
    assert!(repo.ok(&["data", "status"]).contains("up to date"));

    // Deleted workspace copies come back from the cache.
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    remove_file(&repo.root.join("model.bin"));
    assert!(repo.ok(&["data", "status"]).contains("deleted:  data"));
    repo.ok(&["data", "checkout"]);
    assert_eq!(repo.read("data/nested/c.txt"), b"charlie\n");
    assert_eq!(repo.read("model.bin"), vec![7u8; 10_000]);
}

#[test]
fn push_pull_round_trip_and_resumed_push() {
    let repo = Repo::new();
    let remote = repo.root.parent().unwrap().join("remote");
    repo.ok(&["data", "remote", "add", "origin", remote.to_str().unwrap()]);
    assert!(repo.ok(&["data", "remote", "list"]).contains("* origin"));
    repo.with_data();
    let pushed = repo.ok(&["data", "push"]);
    assert!(pushed.contains("pushed 5 object(s)"), "{pushed}");
    assert_eq!(count_files(&remote.join("blake3")), 5);

    // An interrupted push: half the remote objects are gone; a rerun sends only those.
    let mut objects = Vec::new();
    for shard in std::fs::read_dir(remote.join("blake3")).unwrap().flatten() {
        objects.extend(
            std::fs::read_dir(shard.path())
                .unwrap()
                .flatten()
                .map(|entry| entry.path()),
        );
    }
    objects.sort();
    for object in objects.iter().step_by(2) {
        std::fs::remove_file(object).unwrap();
    }
    let removed = objects.len().div_ceil(2);
    let pushed = repo.ok(&["data", "push"]);
    assert!(
        pushed.contains(&format!("pushed {removed} object(s)")),
        "{pushed}"
    );
    assert!(
        pushed.contains(&format!("{} already there", 5 - removed)),
        "{pushed}"
    );
    assert!(repo.ok(&["data", "push"]).contains("pushed 0 object(s)"));

    // A fresh cache and workspace: pull brings everything back.
    std::fs::remove_dir_all(repo.root.join(".keel/cache")).unwrap();
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    remove_file(&repo.root.join("model.bin"));
    let pulled = repo.ok(&["data", "pull"]);
    assert!(pulled.contains("fetched 5 object(s)"), "{pulled}");
    assert_eq!(repo.read("data/b.txt"), b"bravo\n");
    assert_eq!(repo.read("model.bin"), vec![7u8; 10_000]);
    assert!(repo.ok(&["data", "status"]).contains("up to date"));

    let stderr = repo.fails(&["data", "push", "--remote", "nope"]);
    assert!(
        stderr.contains("remote `nope` is not configured"),
        "{stderr}"
    );
}

#[test]
fn corrupt_cache_object_is_named_and_not_placed() {
    let repo = Repo::new();
    repo.with_data();
    let object = repo.object_of("data", "b.txt");
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    remove_file(&object);
    std::fs::write(&object, b"bit rot").unwrap();
    let stderr = repo.fails(&["data", "checkout"]);
    assert!(
        stderr.contains("corrupt cache object for data/b.txt"),
        "{stderr}"
    );
    assert!(!repo.root.join("data/b.txt").exists());
    assert_eq!(repo.read("data/a.txt"), b"alpha\n");
    assert_eq!(repo.read("data/nested/c.txt"), b"charlie\n");
}

#[test]
fn gc_is_a_dry_run_unless_forced() {
    let repo = Repo::new();
    repo.write("f.txt", b"version one");
    repo.ok(&["data", "add", "f.txt"]);
    repo.git(&["add", "f.txt.keel", ".gitignore"]);
    repo.git(&["commit", "-q", "-m", "v1"]);
    remove_file(&repo.root.join("f.txt"));
    repo.write("f.txt", b"version two");
    repo.ok(&["data", "add", "f.txt"]);
    let cache = repo.root.join(".keel/cache/blake3");
    assert_eq!(count_files(&cache), 2);
    // HEAD still references version one.
    assert!(
        repo.ok(&["data", "gc", "--rev", "HEAD"])
            .contains("dry run: 0 unreferenced")
    );
    let dry = repo.ok(&["data", "gc"]);
    assert!(dry.contains("dry run: 1 unreferenced object(s)"), "{dry}");
    assert_eq!(count_files(&cache), 2);
    let real = repo.ok(&["data", "gc", "--force"]);
    assert!(real.contains("removed 1 unreferenced object(s)"), "{real}");
    assert_eq!(count_files(&cache), 1);
    assert!(repo.ok(&["data", "status"]).contains("up to date"));
}

#[test]
fn diff_between_revisions_shows_csv_changes() {
    let repo = Repo::new();
    repo.write("tables/train.csv", b"id,score,label\n1,0.5,a\n2,1.5,b\n");
    repo.write("tables/notes.txt", b"v1");
    repo.ok(&["data", "add", "tables"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "v1"]);
    remove_file(&repo.root.join("tables/train.csv"));
    repo.write(
        "tables/train.csv",
        b"id,score,weight\n1,0.5,1\n2,2.5,1\n3,3.5,2\n",
    );
    repo.write("tables/extra.txt", b"new");
    repo.ok(&["data", "add", "tables"]);
    let diff = repo.ok(&["data", "diff"]);
    assert!(diff.contains("modified  tables/train.csv"), "{diff}");
    assert!(diff.contains("rows: 2 -> 3 (+1)"), "{diff}");
    assert!(diff.contains("column `weight` added (integer)"), "{diff}");
    assert!(diff.contains("column `label` removed (string)"), "{diff}");
    assert!(diff.contains("added     tables/extra.txt"), "{diff}");
    assert!(!diff.contains("notes.txt"), "{diff}");
    repo.git(&["commit", "-qam", "v2"]);
    let between = repo.ok(&["data", "diff", "HEAD~1", "HEAD"]);
    assert_eq!(between, diff);
    assert!(repo.ok(&["data", "diff"]).contains("No data changes"));
    let stderr = repo.fails(&["data", "diff", "no-such-rev"]);
    assert!(
        stderr.contains("unknown revision `no-such-rev`"),
        "{stderr}"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let repo = Repo::new();
    let outside = repo.root.parent().unwrap().join("outside.txt");
    std::fs::write(&outside, b"x").unwrap();
    let stderr = repo.fails(&["data", "add", "../outside.txt"]);
    assert!(
        stderr.contains("outside.txt: path is outside the project"),
        "{stderr}"
    );
    let stderr = repo.fails(&["data", "add", outside.to_str().unwrap()]);
    assert!(stderr.contains("path is outside the project"), "{stderr}");
    let stderr = repo.fails(&["data", "add", "missing.csv"]);
    assert!(
        stderr.contains("missing.csv: no such file or directory"),
        "{stderr}"
    );
    let stderr = repo.fails(&["data", "push"]);
    assert!(stderr.contains("no remote is configured"), "{stderr}");
    let stderr = repo.fails(&["data", "checkout", "never-added"]);
    assert!(stderr.contains("not tracked by keel"), "{stderr}");
    repo.write("secret.csv", b"x");
    std::fs::set_permissions(
        repo.root.join("secret.csv"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // Root can read anything; only check the message when the file is really unreadable.
    if std::fs::read(repo.root.join("secret.csv")).is_err() {
        let stderr = repo.fails(&["data", "add", "secret.csv"]);
        assert!(stderr.contains("secret.csv: Permission denied"), "{stderr}");
    }
    let stderr = repo.fails(&["init"]);
    assert!(stderr.contains("already a keel project"), "{stderr}");
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["data", "status"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not a keel project"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_second_keel_process_waits_for_the_lock_then_fails_clearly() {
    let repo = Repo::new();
    repo.write("f.txt", b"x");
    let project = keel_data::Project::discover(&repo.root).unwrap();
    let held = project.lock(std::time::Duration::ZERO).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["data", "add", "f.txt"])
        .current_dir(&repo.root)
        .env("CI", "true")
        .env("KEEL_LOCK_TIMEOUT", "0.3")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the project is locked by another keel process (pid"),
        "{stderr}"
    );
    assert!(!repo.root.join("f.txt.keel").exists());
    drop(held);
    repo.ok(&["data", "add", "f.txt"]);
}
