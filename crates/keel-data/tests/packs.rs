//! The local pack store (issue 19): a pull into an empty cache keeps each
//! downloaded pack as one file plus its index, and every reader of the
//! cache (checkout, status, push, gc, hardlink placement) finds objects
//! there; a corrupt pack is caught, a half-written one is never used.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use keel_data::cache::Verified;
use keel_data::remote;
use keel_data::workspace::{Change, CheckoutReport};
use keel_data::{Digest, LinkKind, Options, Project, Workspace};

/// A project with a directory remote `origin` and `files` small files in
/// `data/` (each a few hundred bytes, all different).
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    runtime: tokio::runtime::Runtime,
}

fn content(index: usize) -> Vec<u8> {
    format!("file {index}\n")
        .repeat(20 + index % 7)
        .into_bytes()
}

impl Repo {
    fn new(files: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        let project = Project::init(&root).unwrap();
        let remote = dir.path().join("remote");
        let mut config = project.config().unwrap();
        config
            .add_remote("origin", remote.to_str().unwrap(), true)
            .unwrap();
        project.save_config(&config).unwrap();
        let repo = Repo {
            _dir: dir,
            root: project.root().to_path_buf(),
            remote,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        };
        for index in 0..files {
            repo.write(&format!("data/f{index:03}.bin"), &content(index));
        }
        repo
    }

    fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// The workspace with an explicit link order (copies by default, so
    /// the tests do not depend on running as root or not).
    fn open(&self, link: LinkKind) -> Workspace {
        let options = Options {
            link: Some(vec![link]),
            ..Options::default()
        };
        Workspace::open(Project::discover(&self.root).unwrap(), &options).unwrap()
    }

    fn add(&self, paths: &[&str]) {
        let paths: Vec<String> = paths.iter().map(|path| path.to_string()).collect();
        self.open(LinkKind::Copy).add(&paths).unwrap();
    }

    fn push(&self, remote_name: Option<&str>) -> remote::TransferReport {
        let workspace = self.open(LinkKind::Copy);
        let remote = remote::open_remote(&workspace, remote_name, true).unwrap();
        let report = self
            .runtime
            .block_on(remote::push(&workspace, &remote, &[], 4))
            .unwrap();
        assert!(report.is_complete(), "{report:?}");
        report
    }

    fn pull(&self, link: LinkKind) -> (remote::TransferReport, CheckoutReport) {
        let mut workspace = self.open(link);
        let remote = remote::open_remote(&workspace, None, false).unwrap();
        self.runtime
            .block_on(remote::pull(&mut workspace, &remote, &[], 4, false))
            .unwrap()
    }

    /// `data/` added and pushed, then cache and workspace copy deleted (a
    /// fresh clone's view) and pulled back with `link`.
    fn pushed_and_pulled(link: LinkKind) -> (Self, remote::TransferReport, CheckoutReport) {
        let repo = Repo::new(FILES);
        repo.add(&["data"]);
        repo.push(None);
        repo.clear();
        let (transfer, checkout) = repo.pull(link);
        (repo, transfer, checkout)
    }

    /// Deletes the cache and the workspace copy.
    fn clear(&self) {
        self.forget_local(".keel/cache");
        self.forget_local("data");
    }

    fn forget_local(&self, path: &str) {
        let path = self.root.join(path);
        if path.exists() {
            make_tree_writable(&path);
            std::fs::remove_dir_all(&path).unwrap();
        }
    }

    fn changes(&self) -> Vec<(String, Change)> {
        let statuses = self.open(LinkKind::Copy).status(&[]).unwrap();
        for status in &statuses {
            assert!(status.problem.is_none(), "{status:?}");
        }
        statuses
            .into_iter()
            .flat_map(|status| status.changes)
            .collect()
    }

    fn packs_dir(&self) -> PathBuf {
        self.root.join(".keel/cache/packs")
    }

    /// (packs, indexes) in the local pack folder.
    fn pack_files(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let files = files_under(&self.packs_dir());
        let with = |extension: &str| {
            files
                .iter()
                .filter(|file| file.extension().is_some_and(|e| e == extension))
                .cloned()
                .collect()
        };
        (with("pack"), with("idx"))
    }

    fn loose_objects(&self) -> usize {
        files_under(&self.root.join(".keel/cache/blake3")).len()
    }

    fn assert_data_intact(&self, files: usize) {
        for index in 0..files {
            let path = self.root.join(format!("data/f{index:03}.bin"));
            assert_eq!(std::fs::read(&path).unwrap(), content(index), "{path:?}");
        }
    }
}

fn make_tree_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for file in files_under(path) {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode | 0o200)).unwrap();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files.sort();
    files
}

const FILES: usize = 40;

#[test]
fn a_pull_keeps_one_pack_and_checkout_status_push_and_gc_read_it() {
    let (repo, transfer, checkout) = Repo::pushed_and_pulled(LinkKind::Copy);
    assert!(
        transfer.is_complete() && checkout.is_complete(),
        "{transfer:?} {checkout:?}"
    );
    assert_eq!(
        transfer.transferred,
        FILES as u64 + 1,
        "the files and the manifest"
    );
    assert_eq!(checkout.placed, FILES as u64);
    repo.assert_data_intact(FILES);
    // One pack and its index hold the 40 files; only the manifest is loose.
    let (packs, indexes) = repo.pack_files();
    assert_eq!(
        (packs.len(), indexes.len()),
        (1, 1),
        "{packs:?} {indexes:?}"
    );
    assert_eq!(
        repo.loose_objects(),
        1,
        "only the manifest is a file of its own"
    );
    let workspace = repo.open(LinkKind::Copy);
    assert_eq!(workspace.cache().list().unwrap().len(), FILES + 1);
    let digest = Digest::of_bytes(&content(3));
    assert!(workspace.cache().contains(&digest));
    assert_eq!(workspace.cache().holder(&digest).unwrap().path, packs[0]);
    assert_eq!(workspace.cache().verify(&digest).unwrap(), Verified::Good);
    drop(workspace);
    assert!(repo.changes().is_empty());

    // Checkout after deleting the workspace: every file comes out of the pack.
    repo.forget_local("data");
    let report = repo.open(LinkKind::Copy).checkout(&[], false).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.placed, FILES as u64);
    repo.assert_data_intact(FILES);
    assert_eq!(
        repo.loose_objects(),
        1,
        "a copy checkout writes no loose object"
    );
    assert!(repo.changes().is_empty());

    // Push to a second remote: the objects are read from the pack.
    let second = repo.root.parent().unwrap().join("second");
    let project = Project::discover(&repo.root).unwrap();
    let mut config = project.config().unwrap();
    config
        .add_remote("second", second.to_str().unwrap(), false)
        .unwrap();
    project.save_config(&config).unwrap();
    let pushed = repo.push(Some("second"));
    assert_eq!(pushed.transferred, FILES as u64 + 1);
    // ...and that remote serves a fresh cache.
    repo.clear();
    let workspace = repo.open(LinkKind::Copy);
    let remote = remote::open_remote(&workspace, Some("second"), false).unwrap();
    let fetched = repo
        .runtime
        .block_on(remote::fetch(&workspace, &remote, &[], 4))
        .unwrap();
    assert!(fetched.is_complete(), "{fetched:?}");
    assert_eq!(fetched.transferred, FILES as u64 + 1);
    drop(workspace);
    let report = repo.open(LinkKind::Copy).checkout(&[], false).unwrap();
    assert_eq!(report.placed, FILES as u64);
    repo.assert_data_intact(FILES);

    // gc: drop half of the files from the tracked directory. The pack keeps
    // live objects, so it is rewritten with only those.
    make_tree_writable(&repo.root.join("data"));
    for index in (0..FILES).filter(|index| index % 2 == 1) {
        std::fs::remove_file(repo.root.join(format!("data/f{index:03}.bin"))).unwrap();
    }
    repo.add(&["data"]);
    let workspace = repo.open(LinkKind::Copy);
    let dry = keel_data::gc::gc(&workspace, &[], false, false).unwrap();
    assert_eq!(
        dry.unreferenced.len(),
        FILES / 2 + 1,
        "odd files + old manifest"
    );
    let real = keel_data::gc::gc(&workspace, &[], false, true).unwrap();
    assert!(real.removed);
    drop(workspace);
    let (packs, indexes) = repo.pack_files();
    assert_eq!(
        (packs.len(), indexes.len()),
        (1, 1),
        "rewritten, not kept twice"
    );
    let workspace = repo.open(LinkKind::Copy);
    assert!(!workspace.cache().contains(&Digest::of_bytes(&content(1))));
    assert!(workspace.cache().contains(&Digest::of_bytes(&content(2))));
    assert_eq!(workspace.cache().list().unwrap().len(), FILES / 2 + 1);
    drop(workspace);
    repo.forget_local("data");
    let report = repo.open(LinkKind::Copy).checkout(&[], false).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.placed, FILES as u64 / 2);
    assert!(repo.changes().is_empty());
    // Nothing referenced any more: the pack goes whole.
    std::fs::remove_file(repo.root.join("data.keel")).unwrap();
    let workspace = repo.open(LinkKind::Copy);
    keel_data::gc::gc(&workspace, &[], false, true).unwrap();
    assert!(workspace.cache().list().unwrap().is_empty());
    drop(workspace);
    assert_eq!(repo.pack_files(), (Vec::new(), Vec::new()));
}

/// Flips one byte of `digest`'s object inside the only local pack.
fn flip_packed_object(repo: &Repo, digest: &Digest) {
    let (packs, indexes) = repo.pack_files();
    let entries = keel_data::pack::parse_index(&std::fs::read(&indexes[0]).unwrap()).unwrap();
    let (_, offset, _) = entries.iter().find(|(d, _, _)| d == digest).unwrap();
    make_tree_writable(&repo.packs_dir());
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    bytes[*offset as usize + 2] ^= 0x20;
    std::fs::write(&packs[0], bytes).unwrap();
}

#[test]
fn a_corrupt_pack_is_caught_quarantined_and_its_good_objects_kept() {
    let (repo, transfer, _) = Repo::pushed_and_pulled(LinkKind::Copy);
    assert!(transfer.is_complete(), "{transfer:?}");
    let bad = Digest::of_bytes(&content(7));
    flip_packed_object(&repo, &bad);
    // status: the pack changed since it was recorded good, so it is hashed,
    // found corrupt, and the file named.
    let statuses = repo.open(LinkKind::Copy).status(&[]).unwrap();
    let problem = statuses[0].problem.clone().unwrap_or_default();
    assert!(problem.contains("data/f007.bin"), "{problem}");
    assert!(!problem.contains("data/f006.bin"), "{problem}");
    // The pack is out of use; its good objects were kept as loose files.
    assert_eq!(repo.pack_files(), (Vec::new(), Vec::new()));
    assert_eq!(repo.loose_objects(), FILES, "39 salvaged + the manifest");
    let quarantined = files_under(&repo.root.join(".keel/quarantine"));
    assert_eq!(
        quarantined.len(),
        2,
        "the pack and its index: {quarantined:?}"
    );
    // Checkout after deleting the workspace places the good ones only.
    repo.forget_local("data");
    let report = repo.open(LinkKind::Copy).checkout(&[], false).unwrap();
    assert_eq!(report.placed, FILES as u64 - 1);
    assert_eq!(report.missing, [("data/f007.bin".to_string(), bad)]);
    // A fetch brings the lost object back from the remote.
    let (transfer, checkout) = repo.pull(LinkKind::Copy);
    assert_eq!(transfer.transferred, 1, "{transfer:?}");
    assert!(checkout.is_complete(), "{checkout:?}");
    repo.assert_data_intact(FILES);
}

#[test]
fn a_corrupt_packed_object_is_never_placed_by_checkout() {
    let (repo, _, _) = Repo::pushed_and_pulled(LinkKind::Copy);
    let bad = Digest::of_bytes(&content(11));
    flip_packed_object(&repo, &bad);
    repo.forget_local("data");
    let report = repo.open(LinkKind::Copy).checkout(&[], false).unwrap();
    assert_eq!(report.corrupt, [("data/f011.bin".to_string(), bad)]);
    assert_eq!(report.placed, FILES as u64 - 1);
    assert!(!repo.root.join("data/f011.bin").exists());
    assert_eq!(
        std::fs::read(repo.root.join("data/f010.bin")).unwrap(),
        content(10)
    );
    let workspace = repo.open(LinkKind::Copy);
    assert!(
        !workspace.cache().contains(&bad),
        "quarantined with its pack"
    );
}

#[test]
fn hardlinks_need_loose_objects() {
    // A pull that hardlinks stores its downloads loose: the workspace file
    // is the cache object.
    let (repo, transfer, checkout) = Repo::pushed_and_pulled(LinkKind::Hardlink);
    assert!(
        transfer.is_complete() && checkout.is_complete(),
        "{checkout:?}"
    );
    assert_eq!(checkout.link, Some(LinkKind::Hardlink));
    assert_eq!(repo.pack_files(), (Vec::new(), Vec::new()));
    assert_eq!(repo.loose_objects(), FILES + 1);
    let file = repo.root.join("data/f005.bin");
    assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 2);
    // A cache filled by a copying pull holds packs; a hardlink checkout
    // then materializes each object it links, verified, as a loose file.
    repo.clear();
    repo.pull(LinkKind::Copy);
    assert_eq!(repo.loose_objects(), 1);
    repo.forget_local("data");
    let report = repo.open(LinkKind::Hardlink).checkout(&[], false).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.link, Some(LinkKind::Hardlink));
    assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 2);
    assert_eq!(repo.loose_objects(), FILES + 1);
    repo.assert_data_intact(FILES);
    assert!(repo.changes().is_empty());
}

#[test]
fn an_interrupted_pull_leaves_a_usable_cache() {
    let repo = Repo::new(FILES);
    // Two tracked directories pushed separately: two packs on the remote.
    for index in 0..10 {
        repo.write(
            &format!("more/m{index}.bin"),
            format!("more {index}").as_bytes(),
        );
    }
    repo.add(&["data"]);
    repo.push(None);
    repo.add(&["more"]);
    repo.push(None);
    let remote_packs: Vec<PathBuf> = files_under(&repo.remote.join("packs"))
        .into_iter()
        .filter(|file| file.extension().is_some_and(|e| e == "pack"))
        .collect();
    assert_eq!(remote_packs.len(), 2);
    repo.forget_local(".keel/cache");
    repo.forget_local("data");
    repo.forget_local("more");
    // A pull killed while writing: a half-written temporary pack, a whole
    // pack whose index was never written, and a pack shorter than its index
    // says (torn); none of them may be used.
    let packs = repo.packs_dir();
    std::fs::create_dir_all(&packs).unwrap();
    let remote_pack = std::fs::read(&remote_packs[0]).unwrap();
    std::fs::write(packs.join(".pack.keel-tmp-1-0"), &remote_pack[..10]).unwrap();
    let name = remote_packs[0].file_stem().unwrap().to_str().unwrap();
    std::fs::write(packs.join(format!("{name}.pack")), &remote_pack).unwrap();
    let other = remote_packs[1].file_stem().unwrap().to_str().unwrap();
    let torn = std::fs::read(&remote_packs[1]).unwrap();
    std::fs::write(packs.join(format!("{other}.pack")), &torn[..torn.len() / 2]).unwrap();
    std::fs::copy(
        remote_packs[1].with_extension("idx"),
        packs.join(format!("{other}.idx")),
    )
    .unwrap();
    let workspace = repo.open(LinkKind::Copy);
    assert!(
        workspace.cache().list().unwrap().is_empty(),
        "nothing half-written counts"
    );
    drop(workspace);
    // A pull whose remote loses one pack midway stores the other pack
    // whole and places its files; the rest is reported, not half-stored.
    let hidden = remote_packs[1].with_extension("hidden");
    std::fs::rename(&remote_packs[1], &hidden).unwrap();
    let (transfer, checkout) = repo.pull(LinkKind::Copy);
    assert!(!transfer.is_complete());
    let missing = transfer.missing.len() + checkout.missing.len();
    assert!(missing > 0, "{transfer:?} {checkout:?}");
    let workspace = repo.open(LinkKind::Copy);
    let present = workspace.cache().list().unwrap().len();
    assert!(
        present > 2,
        "the fetched pack is usable: {present} object(s)"
    );
    drop(workspace);
    // The remote pack is back: a rerun fetches only what is missing.
    std::fs::rename(&hidden, &remote_packs[1]).unwrap();
    let (transfer, checkout) = repo.pull(LinkKind::Copy);
    assert!(
        transfer.is_complete() && checkout.is_complete(),
        "{transfer:?} {checkout:?}"
    );
    assert_eq!(
        transfer.skipped as usize,
        present - 2,
        "manifests are not counted"
    );
    repo.assert_data_intact(FILES);
    assert_eq!(
        std::fs::read(repo.root.join("more/m3.bin")).unwrap(),
        b"more 3"
    );
    assert!(repo.changes().is_empty());
    // gc --force sweeps what the killed pull left.
    let workspace = repo.open(LinkKind::Copy);
    keel_data::gc::gc(&workspace, &[], false, true).unwrap();
    drop(workspace);
    let left: Vec<String> = files_under(&packs)
        .iter()
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|name| !name.starts_with('.')), "{left:?}");
    assert_eq!(left.len() % 2, 0, "every pack has its index: {left:?}");
    let workspace = repo.open(LinkKind::Copy);
    assert_eq!(workspace.cache().list().unwrap().len(), FILES + 10 + 2);
}
