//! Unit tests of add / status / checkout / push / fetch / gc on a temp project.

use std::path::Path;

use super::*;
use crate::remote;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::init(dir.path()).unwrap();
        let root = project.root().to_path_buf();
        Fixture { _dir: dir, root }
    }

    fn write(&self, path: &str, bytes: &[u8]) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if path.exists() {
            fsutil::make_writable(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    fn workspace(&self) -> Workspace {
        Workspace::open(Project::discover(&self.root).unwrap(), &Options::default()).unwrap()
    }

    fn changes(&self) -> Vec<(String, Change)> {
        let statuses = self.workspace().status(&[]).unwrap();
        statuses
            .into_iter()
            .flat_map(|status| status.changes)
            .collect()
    }
}

fn add(fixture: &Fixture, paths: &[&str]) -> Vec<AddOutcome> {
    let paths: Vec<String> = paths.iter().map(|path| path.to_string()).collect();
    fixture.workspace().add(&paths).unwrap()
}

#[test]
fn add_writes_metafile_gitignore_and_read_only_objects() {
    let fixture = Fixture::new();
    fixture.write("data/a.txt", b"alpha");
    fixture.write("data/sub/b.txt", b"beta");
    fixture.write("data/dup.txt", b"alpha");
    fixture.write("model.bin", b"weights");
    let outcomes = add(&fixture, &["data", "model.bin"]);
    assert_eq!(outcomes[0].tracked.metafile.files, 3);
    assert_eq!(outcomes[0].tracked.metafile.size, 14);
    assert_eq!(outcomes[0].new_objects, 2, "dup.txt shares a.txt's object");
    let metafile = Metafile::read(&fixture.root.join("data.keel")).unwrap();
    assert_eq!(metafile.kind, Kind::Directory);
    let gitignore = std::fs::read_to_string(fixture.root.join(".gitignore")).unwrap();
    assert_eq!(gitignore, "/data\n/model.bin\n");
    assert!(
        std::fs::metadata(fixture.root.join("data/a.txt"))
            .unwrap()
            .permissions()
            .readonly()
    );
    assert!(fixture.changes().is_empty());
    // Re-adding is a no-op for the metafile and hashes nothing old.
    let again = add(&fixture, &["data"]);
    assert_eq!(again[0].tracked.metafile, metafile);
    assert_eq!(again[0].new_objects, 0);
}

#[test]
fn status_sees_modified_added_and_deleted_files() {
    let fixture = Fixture::new();
    fixture.write("data/a.txt", b"alpha");
    fixture.write("data/b.txt", b"beta");
    add(&fixture, &["data"]);
    fixture.write("data/a.txt", b"ALPHA"); // same size, new content
    fixture.write("data/c.txt", b"new");
    std::fs::remove_file(fixture.root.join("data/b.txt")).unwrap();
    assert_eq!(
        fixture.changes(),
        [
            ("data/a.txt".to_string(), Change::Modified),
            ("data/b.txt".to_string(), Change::Deleted),
            ("data/c.txt".to_string(), Change::Added)
        ]
    );
    std::fs::remove_dir_all(fixture.root.join("data")).unwrap();
    assert_eq!(fixture.changes(), [("data".to_string(), Change::Deleted)]);
}

#[test]
fn checkout_restores_and_keeps_uncached_changes_without_force() {
    let fixture = Fixture::new();
    fixture.write("data/a.txt", b"alpha");
    fixture.write("data/b.txt", b"beta");
    add(&fixture, &["data"]);
    std::fs::remove_file(fixture.root.join("data/b.txt")).unwrap();
    fixture.write("data/a.txt", b"edited");
    let report = fixture.workspace().checkout(&[], false).unwrap();
    assert_eq!(report.placed, 1);
    assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
    assert_eq!(
        std::fs::read(fixture.root.join("data/a.txt")).unwrap(),
        b"edited"
    );
    let report = fixture.workspace().checkout(&[], true).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        std::fs::read(fixture.root.join("data/a.txt")).unwrap(),
        b"alpha"
    );
    assert!(fixture.changes().is_empty());
}

#[test]
fn checkout_reports_a_corrupt_object_and_does_not_place_it() {
    let fixture = Fixture::new();
    fixture.write("data/good.txt", b"good");
    fixture.write("data/bad.txt", b"bad!");
    add(&fixture, &["data"]);
    let workspace = fixture.workspace();
    let object = workspace
        .cache()
        .holder(&Digest::of_bytes(b"bad!"))
        .unwrap()
        .path;
    drop(workspace);
    fsutil::make_writable(&object).unwrap();
    // Replace the object file (not in place: the workspace may share its inode).
    std::fs::remove_file(&object).unwrap();
    std::fs::write(&object, b"evil").unwrap();
    std::fs::remove_dir_all(fixture.root.join("data")).unwrap();
    let report = fixture.workspace().checkout(&[], false).unwrap();
    assert_eq!(
        report.corrupt,
        [("data/bad.txt".to_string(), Digest::of_bytes(b"bad!"))]
    );
    assert_eq!(report.placed, 1);
    assert!(!fixture.root.join("data/bad.txt").exists());
    assert_eq!(
        std::fs::read(fixture.root.join("data/good.txt")).unwrap(),
        b"good"
    );
}

#[test]
fn add_rejects_nested_paths_and_metafiles() {
    let fixture = Fixture::new();
    fixture.write("data/a.txt", b"alpha");
    add(&fixture, &["data"]);
    let error = fixture
        .workspace()
        .add(&["data/a.txt".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("inside the tracked directory `data`"),
        "{error}"
    );
    let error = fixture
        .workspace()
        .add(&["data.keel".to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("metafile"), "{error}");
    let error = fixture
        .workspace()
        .add(&["nope".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("nope: no such file or directory"),
        "{error}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn with_remote(fixture: &Fixture, remote_dir: &Path) {
    let project = Project::discover(&fixture.root).unwrap();
    let mut config = project.config().unwrap();
    config
        .add_remote("origin", remote_dir.to_str().unwrap(), false)
        .unwrap();
    project.save_config(&config).unwrap();
}

#[test]
fn push_fetch_round_trip_and_resume() {
    let fixture = Fixture::new();
    let remote_dir = tempfile::tempdir().unwrap();
    with_remote(&fixture, remote_dir.path());
    for i in 0..20 {
        fixture.write(&format!("data/{i}.txt"), format!("file {i}").as_bytes());
    }
    let big: Vec<u8> = (0..(LARGE_TEST_OBJECT)).map(|i| (i % 253) as u8).collect();
    fixture.write("big.bin", &big);
    add(&fixture, &["data", "big.bin"]);
    let runtime = runtime();
    let workspace = fixture.workspace();
    let remote = remote::open_remote(&workspace, None, true).unwrap();
    let report = runtime
        .block_on(remote::push(&workspace, &remote, &[], 4))
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.transferred, 22, "20 files + big + manifest");
    assert_eq!(report.packs, 1, "the 20 small files travel in one pack");
    assert_eq!(walk_files(&remote_dir.path().join("blake3")).len(), 2);
    // An interrupted push: the big object and the pack's index never made
    // it. A rerun sends exactly the objects that are not visibly there.
    let big_digest = Digest::of_bytes(&big);
    std::fs::remove_file(
        remote_dir
            .path()
            .join("blake3")
            .join(big_digest.shard_path()),
    )
    .unwrap();
    for file in walk_files(&remote_dir.path().join("packs")) {
        if file.extension().is_some_and(|extension| extension == "idx") {
            std::fs::remove_file(file).unwrap();
        }
    }
    let report = runtime
        .block_on(remote::push(&workspace, &remote, &[], 4))
        .unwrap();
    assert_eq!(report.transferred, 21);
    assert_eq!(report.skipped, 1, "the manifest");
    drop(workspace);
    // Fresh cache and workspace: pull everything back.
    std::fs::remove_dir_all(fixture.root.join(".keel/cache")).unwrap();
    std::fs::remove_dir_all(fixture.root.join("data")).unwrap();
    std::fs::remove_file(fixture.root.join("big.bin")).unwrap();
    // Copies, so the small files are written from the downloaded packs.
    let options = Options {
        link: Some(vec![LinkKind::Copy]),
        ..Options::default()
    };
    let mut workspace =
        Workspace::open(Project::discover(&fixture.root).unwrap(), &options).unwrap();
    let remote = remote::open_remote(&workspace, None, false).unwrap();
    let (transfer, checkout) = runtime
        .block_on(remote::pull(&mut workspace, &remote, &[], 4, false))
        .unwrap();
    assert!(
        transfer.is_complete() && checkout.is_complete(),
        "{transfer:?} {checkout:?}"
    );
    assert_eq!(transfer.transferred, 22);
    assert_eq!(std::fs::read(fixture.root.join("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(fixture.root.join("data/7.txt")).unwrap(),
        b"file 7"
    );
    assert_eq!(checkout.placed, 21);
    assert!(
        std::fs::metadata(fixture.root.join("data/7.txt"))
            .unwrap()
            .permissions()
            .readonly()
    );
    // Placement temporaries never outlive the pull.
    let leftovers: Vec<PathBuf> = walk_files(&fixture.root)
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("keel-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(workspace);
    assert!(fixture.changes().is_empty());
}

const LARGE_TEST_OBJECT: usize = (16 << 20) + 12345;

#[test]
fn fetch_rejects_a_corrupt_remote_object() {
    let fixture = Fixture::new();
    let remote_dir = tempfile::tempdir().unwrap();
    with_remote(&fixture, remote_dir.path());
    fixture.write("f.txt", b"original");
    add(&fixture, &["f.txt"]);
    let runtime = runtime();
    let workspace = fixture.workspace();
    let remote = remote::open_remote(&workspace, None, true).unwrap();
    runtime
        .block_on(remote::push(&workspace, &remote, &[], 4))
        .unwrap();
    drop(workspace);
    let digest = Digest::of_bytes(b"original");
    // The small object travelled in a pack: flip its bytes there.
    let packs = walk_files(&remote_dir.path().join("packs"));
    let pack = packs
        .iter()
        .find(|file| {
            file.extension()
                .is_some_and(|extension| extension == "pack")
        })
        .unwrap();
    assert_eq!(std::fs::read(pack).unwrap(), b"original");
    std::fs::write(pack, b"tampered").unwrap();
    std::fs::remove_dir_all(fixture.root.join(".keel/cache")).unwrap();
    let workspace = fixture.workspace();
    let report = runtime
        .block_on(remote::fetch(&workspace, &remote, &[], 4))
        .unwrap();
    assert_eq!(report.corrupt, [("f.txt".to_string(), digest)]);
    assert!(!workspace.cache().contains(&digest));
}

#[test]
fn gc_lists_then_removes_unreferenced_objects() {
    let fixture = Fixture::new();
    fixture.write("f.txt", b"one");
    add(&fixture, &["f.txt"]);
    fixture.write("f.txt", b"two");
    add(&fixture, &["f.txt"]);
    let workspace = fixture.workspace();
    let dry = crate::gc::gc(&workspace, &[], false, false).unwrap();
    assert_eq!(dry.unreferenced, [(Digest::of_bytes(b"one"), 3)]);
    assert!(workspace.cache().contains(&Digest::of_bytes(b"one")));
    let real = crate::gc::gc(&workspace, &[], false, true).unwrap();
    assert!(real.removed);
    assert!(!workspace.cache().contains(&Digest::of_bytes(b"one")));
    assert!(workspace.cache().contains(&Digest::of_bytes(b"two")));
}

#[test]
fn dataset_input_reads_the_metafile() {
    let fixture = Fixture::new();
    fixture.write("data/a.txt", b"alpha");
    let outcome = add(&fixture, &["data"]).remove(0);
    let project = Project::discover(&fixture.root).unwrap();
    let input = crate::lineage::dataset_input(&project, Path::new("data"), &fixture.root).unwrap();
    assert_eq!(input.digest, outcome.tracked.metafile.digest.to_hex());
    assert_eq!(
        (input.size, input.files, input.source.as_str(), input.hash),
        (5, 1, "data.keel", "blake3")
    );
    assert!(crate::lineage::dataset_input(&project, Path::new("other"), &fixture.root).is_err());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk_files(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files.sort();
    files
}

#[test]
fn leftovers_of_a_killed_process_are_invisible_and_cleaned() {
    let fixture = Fixture::new();
    fixture.write("f.txt", b"content");
    // A killed download leaves a temp file, never a file under an object name.
    let tmp = fixture.root.join(".keel/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(".download.keel-tmp-99999-0"), b"half").unwrap();
    let workspace = fixture.workspace();
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "stale temp files are removed under the lock"
    );
    assert!(workspace.cache().list().unwrap().is_empty());
    drop(workspace);
    add(&fixture, &["f.txt"]);
    assert_eq!(fixture.workspace().cache().list().unwrap().len(), 1);
}

#[test]
fn a_large_file_copied_into_the_cache_is_hashed_on_the_way() {
    use std::os::unix::fs::MetadataExt;
    let fixture = Fixture::new();
    // Over hash::LARGE_FILE, so `add` copies and hashes it in one pass.
    let big: Vec<u8> = (0..hash::LARGE_FILE as usize + 4321)
        .map(|i| (i % 253) as u8)
        .collect();
    fixture.write("big.bin", &big);
    fixture.write("twin/a.bin", &big);
    fixture.write("twin/b.bin", &big);
    let options = Options {
        link: Some(vec![LinkKind::Copy]),
        ..Options::default()
    };
    let project = || Project::discover(&fixture.root).unwrap();
    let mut workspace = Workspace::open(project(), &options).unwrap();
    let outcomes = workspace
        .add(&["big.bin".to_string(), "twin".to_string()])
        .unwrap();
    drop(workspace);
    let digest = Digest::of_bytes(&big);
    assert_eq!(outcomes[0].tracked.metafile.digest, digest);
    assert_eq!(outcomes[0].hashed_bytes, big.len() as u64);
    assert_eq!(outcomes[0].new_objects, 1);
    assert_eq!(outcomes[0].link, Some(LinkKind::Copy));
    // Both twins were copied and hashed; the object was already there.
    assert_eq!(outcomes[1].hashed_files, 2);
    assert_eq!(outcomes[1].new_objects, 0);
    let workspace = fixture.workspace();
    let object = workspace.cache().holder(&digest).unwrap().path;
    assert_eq!(std::fs::read(&object).unwrap(), big);
    assert!(std::fs::metadata(&object).unwrap().permissions().readonly());
    // An independent copy, not a second name for the workspace file.
    assert_ne!(
        std::fs::metadata(&object).unwrap().ino(),
        std::fs::metadata(fixture.root.join("big.bin"))
            .unwrap()
            .ino()
    );
    // No copy is left behind in the temp folder.
    let tmp = fixture.root.join(".keel/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().contains("copy-in"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(workspace);
    assert!(fixture.changes().is_empty());
}

/// A file hardlinked into the cache is the object itself, so `add` checks
/// that the object's inode still has the stat fields the file had when it
/// was hashed; a file changed meanwhile (size, or only its mtime) is refused
/// and nothing of it stays in the cache.
#[test]
fn a_file_changed_while_hardlinked_in_is_refused() {
    use std::time::{Duration, SystemTime};
    let options = Options {
        link: Some(vec![LinkKind::Hardlink]),
        ..Options::default()
    };
    let changes: [(&str, AfterHash); 2] = [
        (
            "rewritten",
            Box::new(|path: &Path| std::fs::write(path, b"second version, longer").unwrap()),
        ),
        (
            "touched",
            Box::new(|path: &Path| {
                let file = std::fs::File::options().write(true).open(path).unwrap();
                file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
                    .unwrap();
            }),
        ),
    ];
    for (what, change) in changes {
        let fixture = Fixture::new();
        fixture.write("model.bin", b"first version");
        let mut workspace =
            Workspace::open(Project::discover(&fixture.root).unwrap(), &options).unwrap();
        workspace.after_hash = Some(change);
        let error = workspace.add(&["model.bin".to_string()]).unwrap_err();
        assert!(
            error.to_string().contains("changed while being added"),
            "{what}: {error}"
        );
        assert!(workspace.cache().list().unwrap().is_empty(), "{what}");
        drop(workspace);
        let path = fixture.root.join("model.bin");
        assert!(!fixture.root.join("model.bin.keel").exists(), "{what}");
        assert!(
            !std::fs::metadata(&path).unwrap().permissions().readonly(),
            "{what}: the file keeps its write permission"
        );
        // Added again, unchanged, it goes in.
        let outcomes = add(&fixture, &["model.bin"]);
        assert_eq!(outcomes[0].new_objects, 1, "{what}");
        let content = std::fs::read(&path).unwrap();
        assert_eq!(
            outcomes[0].tracked.metafile.digest,
            Digest::of_bytes(&content),
            "{what}"
        );
    }
}

/// A fresh cache gets the shard folder of the object it stores, not all 256.
#[test]
fn a_hardlinked_object_creates_only_its_shard() {
    let fixture = Fixture::new();
    fixture.write("model.bin", b"weights");
    let options = Options {
        link: Some(vec![LinkKind::Hardlink]),
        ..Options::default()
    };
    let mut workspace =
        Workspace::open(Project::discover(&fixture.root).unwrap(), &options).unwrap();
    let outcomes = workspace.add(&["model.bin".to_string()]).unwrap();
    assert_eq!(outcomes[0].link, Some(LinkKind::Hardlink));
    let shards = std::fs::read_dir(fixture.root.join(".keel/cache/blake3"))
        .unwrap()
        .count();
    assert_eq!(shards, 1);
    drop(workspace);
    assert!(fixture.changes().is_empty());
}
