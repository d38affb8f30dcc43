//! End-to-end tests of `keel init` and `keel data …`, driving the real binary
//! in a temporary git repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{self, lossy};

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
        util::keel(&self.root, args)
    }

    /// Runs keel and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.keel(args);
        assert!(
            output.status.success(),
            "keel {args:?} failed:\nstdout: {}\nstderr: {}",
            lossy(&output.stdout),
            lossy(&output.stderr)
        );
        lossy(&output.stdout)
    }

    /// Runs keel and asserts failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.keel(args);
        assert!(
            !output.status.success(),
            "keel {args:?} should fail:\nstdout: {}",
            lossy(&output.stdout)
        );
        lossy(&output.stderr)
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

/// Files in `remote/packs` ending with `suffix`.
fn pack_files(remote: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(remote.join("packs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
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
    assert!(pushed.contains("in 1 pack(s)"), "{pushed}");
    // Small files travel in one pack (+ its index); the manifest stays loose.
    assert_eq!(count_files(&remote.join("blake3")), 1);
    let indexes = pack_files(&remote, ".idx");
    assert_eq!((indexes.len(), pack_files(&remote, ".pack").len()), (1, 1));
    let status = repo.ok(&["data", "status", "--remote"]);
    assert!(
        status.contains("remote `origin`: 5 object(s) there; 0 not pushed"),
        "{status}"
    );

    // An interrupted push: the pack went up but its index did not. The pack
    // does not count; a rerun sends its objects again, and only those.
    std::fs::remove_file(&indexes[0]).unwrap();
    let status = repo.ok(&["data", "status", "--remote", "origin"]);
    assert!(status.contains("4 not pushed"), "{status}");
    assert!(status.contains("not pushed:   data/a.txt"), "{status}");
    let pushed = repo.ok(&["data", "push"]);
    assert!(pushed.contains("pushed 4 object(s)"), "{pushed}");
    assert!(pushed.contains("1 already there"), "{pushed}");
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
fn status_notices_a_corrupt_cache_object_and_add_repairs_it() {
    let repo = Repo::new();
    repo.with_data();
    let object = repo.object_of("data", "b.txt");
    let quarantined = || count_files(&repo.root.join(".keel/quarantine"));
    // Bit rot of the same size behind keel's back; the workspace copy is fine.
    remove_file(&object);
    std::fs::write(&object, b"bravX\n").unwrap();
    let status = repo.ok(&["data", "status"]);
    assert!(
        status.contains("corrupt cache object for data/b.txt"),
        "{status}"
    );
    assert!(status.contains("keel data add data"), "{status}");
    assert!(!object.exists(), "the bad copy is moved aside");
    assert_eq!(quarantined(), 1);
    let added = repo.ok(&["data", "add", "data"]);
    assert!(added.contains("1 new object(s)"), "{added}");
    assert_eq!(std::fs::read(&object).unwrap(), b"bravo\n");
    assert!(repo.ok(&["data", "status"]).contains("up to date"));

    // Without a status first, add finds the corrupt object itself.
    remove_file(&object);
    std::fs::write(&object, b"bravY\n").unwrap();
    let added = repo.ok(&["data", "add", "data"]);
    assert!(
        added.contains("repaired 1 corrupt cache object(s) of data"),
        "{added}"
    );
    assert_eq!(std::fs::read(&object).unwrap(), b"bravo\n");
    // The bad copy is kept aside under its digest (replacing the earlier one).
    let digest = object
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
        + &object.file_name().unwrap().to_string_lossy();
    let aside = repo.root.join(".keel/quarantine").join(digest);
    assert_eq!(std::fs::read(aside).unwrap(), b"bravY\n");
    assert!(repo.ok(&["data", "status"]).contains("up to date"));
    // And the repaired object is what checkout places.
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    repo.ok(&["data", "checkout"]);
    assert_eq!(repo.read("data/b.txt"), b"bravo\n");
}

#[test]
fn remote_gc_removes_what_killed_pushes_left() {
    let repo = Repo::new();
    let remote = repo.root.parent().unwrap().join("remote");
    repo.ok(&["data", "remote", "add", "origin", remote.to_str().unwrap()]);
    repo.with_data();
    repo.ok(&["data", "push"]);
    let whole = count_files(&remote);
    // What kill -9 of a push leaves: a pack whose index never came (the
    // index is written after the pack), and object_store's upload
    // temporaries (`NAME#N`, renamed into place once complete).
    let packs = remote.join("packs");
    let orphan_pack = packs.join(format!("{}.pack", "ab".repeat(32)));
    let staged_object = remote.join(format!("blake3/cd/{}#1", "ef".repeat(31)));
    let staged_pack = packs.join(format!("{}.pack#2", "12".repeat(32)));
    std::fs::create_dir_all(staged_object.parent().unwrap()).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for (path, bytes) in [
        (&orphan_pack, &b"pack bytes"[..]),
        (&staged_object, b"half an object"),
        (&staged_pack, b"half a pack"),
    ] {
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    }
    // A push running right now: its temporary is young and is spared.
    let running = remote.join(format!("blake3/cd/{}#1", "99".repeat(31)));
    std::fs::write(&running, b"in flight").unwrap();

    let dry = repo.ok(&["data", "gc", "--remote"]);
    assert!(
        dry.contains("dry run: remote `origin` holds 3 partial upload(s)"),
        "{dry}"
    );
    assert!(dry.contains(&format!("{}.pack", "ab".repeat(32))), "{dry}");
    assert_eq!(count_files(&remote), whole + 4);
    let real = repo.ok(&["data", "gc", "--remote", "origin", "--force"]);
    assert!(real.contains("removed 3 partial upload(s)"), "{real}");
    assert_eq!(count_files(&remote), whole + 1);
    assert!(running.exists());
    // With no age limit the last one goes too; whole objects stay.
    let all = repo.ok(&["data", "gc", "--remote", "--force", "--older-than", "0s"]);
    assert!(all.contains("removed 1 partial upload(s)"), "{all}");
    assert_eq!(count_files(&remote), whole);
    // The remote still serves everything.
    std::fs::remove_dir_all(repo.root.join(".keel/cache")).unwrap();
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    let pulled = repo.ok(&["data", "pull"]);
    assert!(pulled.contains("fetched 5 object(s)"), "{pulled}");
    assert_eq!(repo.read("data/nested/c.txt"), b"charlie\n");
}

/// Files under `dir` whose name holds `#`: object_store's upload temporaries.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains('#') {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_push_killed_midway_leaves_no_partial_object_and_gc_remote_cleans_up() {
    let repo = Repo::new();
    let remote = repo.root.parent().unwrap().join("remote");
    repo.ok(&["data", "remote", "add", "origin", remote.to_str().unwrap()]);
    // 96 MiB: a loose object uploaded in 8 MiB parts to a temporary.
    let big: Vec<u8> = (0..96u32 << 20).map(|i| (i % 251) as u8).collect();
    repo.write("big.bin", &big);
    repo.ok(&["data", "add", "big.bin"]);
    let mut push = util::command(&repo.root)
        .args(["data", "push", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // kill -9 as soon as the upload's temporary exists (bounded: 60 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if !temporaries(&remote).is_empty() {
            break;
        }
        assert!(
            push.try_wait().unwrap().is_none(),
            "the push ended before its upload was caught in flight"
        );
        assert!(std::time::Instant::now() < deadline, "no upload started");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    push.kill().unwrap();
    push.wait().unwrap();
    // Nothing under a final name: the remote does not have the object.
    let status = repo.ok(&["data", "status", "--remote"]);
    assert!(status.contains("not pushed:   big.bin"), "{status}");
    assert_eq!(temporaries(&remote).len(), 1);
    // The temporary is young (a push could still be running): kept by default...
    let kept = repo.ok(&["data", "gc", "--remote", "--force"]);
    assert!(kept.contains("removed 0 partial upload(s)"), "{kept}");
    // ...and removed once the operator says no push is running.
    let removed = repo.ok(&["data", "gc", "--remote", "--force", "--older-than", "0s"]);
    assert!(removed.contains("removed 1 partial upload(s)"), "{removed}");
    assert!(temporaries(&remote).is_empty());
    // A new push sends it whole; a fresh cache gets it back, verified.
    let pushed = repo.ok(&["data", "push"]);
    assert!(pushed.contains("pushed 1 object(s)"), "{pushed}");
    std::fs::remove_dir_all(repo.root.join(".keel/cache")).unwrap();
    remove_file(&repo.root.join("big.bin"));
    let pulled = repo.ok(&["data", "pull"]);
    assert!(pulled.contains("fetched 1 object(s)"), "{pulled}");
    assert!(repo.read("big.bin") == big, "the pulled file differs");
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
    let stderr = repo.fails(&["init"]);
    assert!(stderr.contains("already a keel project"), "{stderr}");
    let elsewhere = tempfile::tempdir().unwrap();
    let output = util::keel(elsewhere.path(), &["data", "status"]);
    assert!(!output.status.success());
    assert!(
        lossy(&output.stderr).contains("not a keel project"),
        "{}",
        lossy(&output.stderr)
    );
}

#[test]
fn a_second_keel_process_waits_for_the_lock_then_fails_clearly() {
    let repo = Repo::new();
    repo.write("f.txt", b"x");
    let project = keel_data::Project::discover(&repo.root).unwrap();
    let held = project.lock(std::time::Duration::ZERO).unwrap();
    let output = util::command(&repo.root)
        .args(["data", "add", "f.txt"])
        .env("KEEL_LOCK_TIMEOUT", "300ms")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = lossy(&output.stderr);
    assert!(
        stderr.contains("the project is locked by another keel process (pid"),
        "{stderr}"
    );
    assert!(!repo.root.join("f.txt.keel").exists());
    drop(held);
    repo.ok(&["data", "add", "f.txt"]);
}

#[test]
fn add_refuses_a_path_git_already_tracks() {
    let repo = Repo::new();
    repo.write("raw/a.csv", b"x,y\n1,2\n");
    repo.write("raw/b.csv", b"x,y\n3,4\n");
    repo.git(&["add", "raw/a.csv"]);
    let stderr = repo.fails(&["data", "add", "raw"]);
    assert!(
        stderr.contains("raw: already tracked by git (1 file(s), e.g. raw/a.csv)"),
        "{stderr}"
    );
    assert!(stderr.contains("`git rm -r --cached raw`"), "{stderr}");
    assert!(!repo.root.join("raw.keel").exists());
    // The fix the message gives works.
    repo.git(&["rm", "-r", "-q", "--cached", "raw"]);
    repo.ok(&["data", "add", "raw"]);
    assert!(repo.root.join("raw.keel").exists());
}

/// An unreadable file is named in the error. Root reads anything, so when
/// the tests run as root (as CI machines do) keel and git run as `nobody`
/// (`setpriv`) in a project folder that user owns.
#[test]
fn an_unreadable_file_is_named() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("project");
    std::fs::create_dir(&root).unwrap();
    for folder in [dir.path(), root.as_path()] {
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let as_root = std::fs::metadata(&root).unwrap().uid() == 0;
    let run = |program: &str, args: &[&str]| {
        let mut command = if as_root {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(program);
            command
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .current_dir(&root)
            .env("CI", "true")
            .env("HOME", &root)
            .env_remove("RUST_LOG")
            .output()
            .expect("run")
    };
    let keel = env!("CARGO_BIN_EXE_keel");
    assert!(run("git", &["init", "-q"]).status.success());
    let init = run(keel, &["init"]);
    assert!(init.status.success(), "{}", lossy(&init.stderr));
    let secret = root.join("secret.csv");
    std::fs::write(&secret, b"x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let added = run(keel, &["data", "add", "secret.csv"]);
    assert!(!added.status.success(), "{}", lossy(&added.stdout));
    let stderr = lossy(&added.stderr);
    assert!(stderr.contains("secret.csv: Permission denied"), "{stderr}");
}

/// Writes `bytes` at the end of `path` in place, if the OS lets this process.
fn append_in_place(path: &Path, bytes: &[u8]) -> bool {
    use std::io::Write;
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(mut file) => {
            file.write_all(bytes).unwrap();
            true
        }
        Err(_) => false,
    }
}

#[test]
fn edits_in_place_never_reach_the_cache() {
    use std::os::unix::fs::MetadataExt;
    let repo = Repo::new();
    repo.with_data();
    // Default link order: whatever it picked, an in-place edit of a tracked
    // file either fails (read-only) or leaves the cache object alone (root
    // ignores modes, so the default order leaves hardlinks out there).
    let object = repo.object_of("data", "a.txt");
    if append_in_place(&repo.root.join("data/a.txt"), b"edit\n") {
        assert_eq!(std::fs::read(&object).unwrap(), b"alpha\n");
        repo.ok(&["data", "checkout", "--force"]);
    }
    assert_eq!(repo.read("data/a.txt"), b"alpha\n");

    // An explicit hardlink checkout shares inodes with the cache; unprotect
    // turns them into private writable copies before editing.
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    repo.ok(&["data", "checkout", "--link", "hardlink"]);
    let a = repo.root.join("data/a.txt");
    assert_eq!(std::fs::metadata(&a).unwrap().nlink(), 2);
    let said = repo.ok(&["data", "unprotect", "data"]);
    assert!(said.contains("3 file(s) are now writable copies"), "{said}");
    let metadata = std::fs::metadata(&a).unwrap();
    assert_eq!(metadata.nlink(), 1);
    assert_ne!(metadata.mode() & 0o200, 0);
    assert!(repo.ok(&["data", "status"]).contains("up to date"));
    assert!(append_in_place(&a, b"edit\n"));
    assert_eq!(std::fs::read(&object).unwrap(), b"alpha\n");
    let status = repo.ok(&["data", "status"]);
    assert!(status.contains("modified: data/a.txt"), "{status}");
    repo.ok(&["data", "add", "data"]);
    assert!(repo.ok(&["data", "status"]).contains("up to date"));
    assert_eq!(repo.read("data/a.txt"), b"alpha\nedit\n");
    let stderr = repo.fails(&["data", "unprotect", "nope"]);
    assert!(stderr.contains("not tracked by keel"), "{stderr}");
}

/// One unsigned request to the S3 server (moto accepts them); returns the body.
fn s3_request(method: &str, url: &str) -> String {
    let answer = util::request(method, url, &[], None)
        .unwrap_or_else(|| panic!("{method} {url}: unreachable"));
    assert!(
        (200..300).contains(&answer.status),
        "{method} {url}: HTTP {}",
        answer.status
    );
    answer.body
}

/// Deletes one key (a signed request, with the test credentials).
fn s3_delete(endpoint: &str, bucket: &str, key: &str) {
    use object_store::ObjectStoreExt;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(store.delete(&object_store::path::Path::from(key)))
        .unwrap_or_else(|error| panic!("DELETE {key}: {error}"));
}

#[test]
fn s3_remote_push_status_fetch_pull() {
    let Some(endpoint) = util::s3_endpoint() else {
        return;
    };
    let repo = Repo::new();
    let bucket = format!("keel-data-{}", std::process::id());
    s3_request("PUT", &format!("{endpoint}/{bucket}"));
    let s3 = |args: &[&str]| -> Output {
        util::command(&repo.root)
            .args(args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| -> String {
        let output = s3(args);
        assert!(
            output.status.success(),
            "keel {args:?}: {}{}",
            lossy(&output.stdout),
            lossy(&output.stderr)
        );
        lossy(&output.stdout)
    };
    let url = format!("s3://{bucket}/team/data");
    repo.ok(&["data", "remote", "add", "store", &url]);
    repo.with_data();
    let status = ok(&["data", "status", "--remote"]);
    assert!(
        status.contains("0 object(s) there; 5 not pushed"),
        "{status}"
    );
    let pushed = ok(&["data", "push", "--jobs", "4"]);
    assert!(pushed.contains("pushed 5 object(s)"), "{pushed}");
    let listing = s3_request(
        "GET",
        &format!("{endpoint}/{bucket}?list-type=2&prefix=team/data/"),
    );
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split("</Key>").next())
        .collect();
    assert_eq!(keys.len(), 3, "one pack, its index, the manifest: {keys:?}");
    let index = keys
        .iter()
        .find(|key| key.ends_with(".idx"))
        .expect("a pack index");
    assert!(ok(&["data", "status", "--remote"]).contains("5 object(s) there; 0 not pushed"));

    // A clone's view: no cache, no workspace copies.
    std::fs::remove_dir_all(repo.root.join(".keel/cache")).unwrap();
    std::fs::remove_dir_all(repo.root.join("data")).unwrap();
    remove_file(&repo.root.join("model.bin"));
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["data", "status", "--remote", "store", "--json"])).unwrap();
    assert_eq!(
        status["not_fetched"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    assert_eq!(status["unknown"], serde_json::json!(["data"]));
    let fetched = ok(&["data", "fetch"]);
    assert!(fetched.contains("fetched 5 object(s)"), "{fetched}");
    // Five objects: loose where checkout hardlinks (an ordinary user), else
    // the manifest loose and the four small files in one local pack.
    let loose = count_files(&repo.root.join(".keel/cache/blake3"));
    let packed = count_files(&repo.root.join(".keel/cache/packs"));
    assert!(
        (loose, packed) == (5, 0) || (loose, packed) == (1, 2),
        "{loose} loose, {packed} pack files"
    );
    assert!(
        !repo.root.join("data").exists(),
        "fetch leaves the workspace alone"
    );
    let pulled = ok(&["data", "pull"]);
    assert!(pulled.contains("fetched 0 object(s)"), "{pulled}");
    assert!(pulled.contains("checkout: 4 file(s) placed"), "{pulled}");
    assert_eq!(repo.read("data/nested/c.txt"), b"charlie\n");
    assert_eq!(repo.read("model.bin"), vec![7u8; 10_000]);
    assert!(repo.ok(&["data", "status"]).contains("up to date"));

    // Resumable: a push killed between the pack and its index.
    s3_delete(&endpoint, &bucket, index);
    let pushed = ok(&["data", "push"]);
    assert!(pushed.contains("pushed 4 object(s)"), "{pushed}");
    assert!(pushed.contains("1 already there"), "{pushed}");

    let output = s3(&["data", "push", "--remote", "nope"]);
    assert!(lossy(&output.stderr).contains("remote `nope` is not configured"));
}
