//! The suite on a local directory, plus what only the local backend has:
//! symlink containment, file/directory clashes, temporary files that never
//! linger, opening by path or `file://` URI, and the memory bound of
//! streamed uploads (measured by wrapping the backend in a counting store).

use std::fmt;
use std::os::unix::fs::symlink;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tempfile::TempDir;

use super::{body, content, dir, file, ok, suite};
use crate::{ArtifactError, ArtifactStore, Backend, MAX_PARTS_IN_FLIGHT, PART_BYTES};

/// A fresh store in its own temporary directory (kept alive by the `TempDir`).
fn store() -> (TempDir, ArtifactStore) {
    let temp = ok_io("tempdir", tempfile::tempdir());
    let root = temp.path().join("artifacts");
    let store = ok("open", ArtifactStore::open(&root.to_string_lossy()));
    (temp, store)
}

fn root_of(store: &ArtifactStore) -> PathBuf {
    match &store.inner.backend {
        Backend::Local { root } => root.clone(),
        Backend::S3 => panic!("expected a local store"),
    }
}

fn ok_io<T>(what: &str, result: std::io::Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

/// Every file under `dir` on disk, relative, including `name#N` temporaries
/// that `object_store` hides from listings.
fn files_on_disk(dir: &FsPath) -> Vec<String> {
    fn walk(base: &FsPath, dir: &FsPath, out: &mut Vec<String>) {
        for entry in ok_io("read_dir", std::fs::read_dir(dir)).flatten() {
            let path = entry.path();
            if ok_io("file_type", entry.file_type()).is_dir() {
                walk(base, &path, out);
            } else if let Ok(relative) = path.strip_prefix(base) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn round_trip() {
    let (_temp, store) = store();
    suite::round_trip(&store).await;
}

#[tokio::test]
async fn nested_listing() {
    let (_temp, store) = store();
    suite::nested_listing(&store).await;
}

#[tokio::test]
async fn delete_prefix() {
    let (_temp, store) = store();
    suite::delete_prefix(&store).await;
    // Emptied directories are gone from disk too, not only from listings.
    assert_eq!(files_on_disk(&root_of(&store)), vec!["top.txt"]);
    let entries: Vec<_> = ok_io("read_dir", std::fs::read_dir(root_of(&store)))
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1);
}

#[tokio::test]
async fn escaping_paths_rejected() {
    let (temp, store) = store();
    suite::escaping_paths_rejected(&store).await;
    // Nothing appeared beside the root either.
    let beside: Vec<_> = ok_io("read_dir", std::fs::read_dir(temp.path()))
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, vec!["artifacts"]);
}

#[tokio::test]
async fn failed_stream_leaves_previous_object() {
    let (_temp, store) = store();
    suite::failed_stream_leaves_previous_object(&store).await;
    assert_eq!(
        files_on_disk(&root_of(&store)),
        vec!["model.bin"],
        "no temporary file may linger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_leave_one_complete_object() {
    let (_temp, store) = store();
    suite::concurrent_puts_leave_one_complete_object(&store).await;
    assert_eq!(
        files_on_disk(&root_of(&store)),
        vec!["shared/model.bin"],
        "no temporary file may linger"
    );
}

#[tokio::test]
async fn streamed_put_is_invisible_until_complete_and_replaces_atomically() {
    let (_temp, store) = store();
    let target = root_of(&store).join("m/model.bin");
    ok(
        "put v1",
        store
            .put_bytes("m/model.bin", Bytes::from_static(b"version 1"))
            .await,
    );
    let size = 3 * PART_BYTES as u64;
    let chunk = 1024 * 1024;
    let midway_saw_old = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&midway_saw_old);
    let observed = target.clone();
    let last_chunk_offset = size - chunk as u64;
    let stream = body(9, size, chunk).enumerate().map(move |(index, piece)| {
        // Just before the last chunk (23 of 24 MiB consumed), the target
        // must still hold the old object, whole.
        if index as u64 * chunk as u64 == last_chunk_offset {
            seen.store(
                std::fs::read(&observed).is_ok_and(|bytes| bytes == b"version 1"),
                Ordering::SeqCst,
            );
        }
        piece
    });
    assert_eq!(
        ok("put_stream", store.put_stream("m/model.bin", stream).await),
        size
    );
    assert!(
        midway_saw_old.load(Ordering::SeqCst),
        "the old object must stay whole until the upload completes"
    );
    super::assert_streams_content(&store, "m/model.bin", 9, size).await;
    assert_eq!(files_on_disk(&root_of(&store)), vec!["m/model.bin"]);
}

/// A process killed in the middle of an upload (simulated by forgetting the
/// upload's future, so no destructor runs) leaves `name#N`: never listed,
/// spared by the start-up sweep while young, removed by deleting the path,
/// and by the sweep once stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_left_by_a_killed_process_are_deletable_and_swept() {
    let (_temp, store) = store();
    let root = root_of(&store);
    // Two parts, then a client that never sends the rest.
    let stream = body(5, 2 * PART_BYTES as u64, 1024 * 1024).chain(futures::stream::pending());
    let mut upload = Box::pin(store.put_stream("runs/r1/model.bin", stream));
    let mut waited = 0;
    while !files_on_disk(&root).iter().any(|f| f.contains('#')) {
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut upload).await;
        assert!(
            pending.is_err(),
            "the upload cannot finish: its stream never ends"
        );
        waited += 1;
        assert!(waited < 1200, "no upload in progress appeared in 60 s");
    }
    std::mem::forget(upload);
    let left = files_on_disk(&root);
    assert_eq!(left, vec!["runs/r1/model.bin#1"], "{left:?}");
    assert_eq!(ok("list", store.list("runs/r1").await), vec![]);
    assert_eq!(ok("head", store.head("runs/r1/model.bin").await), None);
    // A young upload may belong to a live process: the sweep spares it.
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(ok("sweep", store.remove_stale_uploads(hour).await), 0);
    assert_eq!(files_on_disk(&root).len(), 1);
    // Deleting the run's folder removes what the killed upload left.
    ok("delete", store.delete("runs/r1").await);
    assert_eq!(files_on_disk(&root), Vec::<String>::new());

    // Deleting the file's own path removes its uploads too.
    ok(
        "put",
        store.put_bytes("a/b.txt", Bytes::from_static(b"b")).await,
    );
    ok_io("write", std::fs::write(root.join("a/b.txt#3"), b"partial"));
    ok("delete file", store.delete("a/b.txt").await);
    assert_eq!(files_on_disk(&root), Vec::<String>::new());

    // A stale one anywhere under the root goes at the next sweep; a young
    // one and real objects stay.
    ok(
        "put",
        store
            .put_bytes("x/keep.txt", Bytes::from_static(b"k"))
            .await,
    );
    ok_io("mkdir", std::fs::create_dir_all(root.join("x/y")));
    let stale = root.join("x/y/old.bin#1");
    ok_io("write", std::fs::write(&stale, b"partial"));
    let two_hours_ago = std::time::SystemTime::now() - 2 * hour;
    let file = ok_io("open", std::fs::File::options().write(true).open(&stale));
    ok_io("set_modified", file.set_modified(two_hours_ago));
    ok_io(
        "write",
        std::fs::write(root.join("x/young.bin#2"), b"partial"),
    );
    assert_eq!(ok("sweep", store.remove_stale_uploads(hour).await), 1);
    assert_eq!(files_on_disk(&root), vec!["x/keep.txt", "x/young.bin#2"]);
    assert_eq!(
        crate::find_staged_uploads(&root, std::time::SystemTime::now()).len(),
        1
    );
}

#[tokio::test]
async fn symlinks_leading_outside_the_root_are_refused() {
    let (temp, store) = store();
    let root = root_of(&store);
    let outside = temp.path().join("outside");
    ok_io("mkdir outside", std::fs::create_dir(&outside));
    ok_io(
        "write secret",
        std::fs::write(outside.join("secret.txt"), b"secret"),
    );
    ok_io("dir link", symlink(&outside, root.join("escape")));
    ok_io(
        "file link",
        symlink(outside.join("secret.txt"), root.join("secret-link")),
    );
    ok_io(
        "dangling link",
        symlink(outside.join("not-yet"), root.join("dangling")),
    );
    ok_io("mkdir nested", std::fs::create_dir(root.join("nested")));
    ok_io(
        "nested link",
        symlink("../../outside", root.join("nested/up")),
    );

    let refused = |op: &str, path: &str, result: Result<(), ArtifactError>| match result {
        Err(ArtifactError::InvalidPath(message)) => {
            assert!(message.contains("symbolic link"), "{op}({path}): {message}")
        }
        other => panic!("{op}({path}) should be refused with InvalidPath, got {other:?}"),
    };
    for path in [
        "escape/secret.txt",
        "secret-link",
        "nested/up/secret.txt",
        "dangling/x",
    ] {
        refused("get_bytes", path, store.get_bytes(path).await.map(drop));
        refused("get", path, store.get(path).await.map(drop));
        refused("head", path, store.head(path).await.map(drop));
        refused(
            "put_bytes",
            path,
            store.put_bytes(path, Bytes::from_static(b"pwned")).await,
        );
        refused(
            "put_stream",
            path,
            store.put_stream(path, body(1, 10, 10)).await.map(drop),
        );
        refused("delete", path, store.delete(path).await.map(drop));
    }
    for path in ["escape", "nested/up", "escape/new"] {
        refused("list", path, store.list(path).await.map(drop));
        refused(
            "list_recursive",
            path,
            store.list_recursive(path).await.map(drop),
        );
        refused("delete", path, store.delete(path).await.map(drop));
    }
    // Listings do not reach through the escaping links.
    assert_eq!(ok("list root", store.list("").await), vec![dir("nested")]);
    assert_eq!(
        ok("list_recursive root", store.list_recursive("").await),
        vec![]
    );
    // The outside directory is untouched.
    assert_eq!(files_on_disk(&outside), vec!["secret.txt"]);
    assert_eq!(
        ok_io("secret", std::fs::read(outside.join("secret.txt"))),
        b"secret"
    );
}

#[tokio::test]
async fn symlinks_inside_the_root_are_followed() {
    let (temp, store) = store();
    let root = root_of(&store);
    ok(
        "put",
        store
            .put_bytes("real/a.txt", Bytes::from_static(b"a"))
            .await,
    );
    ok_io("link", symlink(root.join("real"), root.join("alias")));
    assert_eq!(
        ok("get via link", store.get_bytes("alias/a.txt").await),
        Bytes::from_static(b"a")
    );
    assert_eq!(
        ok("list via link", store.list("alias").await),
        vec![file("alias/a.txt", 1)]
    );

    // A root opened through a symlink is the same root.
    let link_to_root = temp.path().join("root-link");
    ok_io("root link", symlink(&root, &link_to_root));
    let same = ok(
        "open via link",
        ArtifactStore::open(&link_to_root.to_string_lossy()),
    );
    assert_eq!(same.uri(), store.uri());
    assert_eq!(
        ok("get", same.get_bytes("real/a.txt").await),
        Bytes::from_static(b"a")
    );
}

#[tokio::test]
async fn files_and_directories_do_not_clash_silently() {
    let (_temp, store) = store();
    ok(
        "put a",
        store.put_bytes("a", Bytes::from_static(b"file")).await,
    );
    ok(
        "put d/x",
        store.put_bytes("d/x", Bytes::from_static(b"x")).await,
    );
    for (path, expected) in [("a/b", "'a' is a file"), ("d", "a directory exists")] {
        match store.put_bytes(path, Bytes::from_static(b"y")).await {
            Err(ArtifactError::InvalidPath(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("put {path} should be InvalidPath, got {other:?}"),
        }
    }
    assert!(matches!(
        store.get_bytes("a/b").await,
        Err(ArtifactError::NotFound(_))
    ));
    assert_eq!(ok("head a/b", store.head("a/b").await), None);
}

#[tokio::test]
async fn open_accepts_paths_and_file_uris_and_refuses_other_schemes() {
    let temp = ok_io("tempdir", tempfile::tempdir());
    let nested = temp.path().join("x/y/artifacts");
    let url = match url::Url::from_file_path(&nested) {
        Ok(url) => url.to_string(),
        Err(()) => panic!("file URL for {}", nested.display()),
    };
    let store = ok("open file URI", ArtifactStore::open(&url));
    assert!(nested.is_dir(), "missing directories are created");
    let canonical = ok_io("canonicalize", std::fs::canonicalize(&nested));
    assert_eq!(store.uri(), format!("file://{}", canonical.display()));
    ok("put", store.put_bytes("k", Bytes::from_static(b"v")).await);
    let again = ok("open path", ArtifactStore::open(&nested.to_string_lossy()));
    assert_eq!(
        ok("get", again.get_bytes("k").await),
        Bytes::from_static(b"v")
    );

    let a_file = temp.path().join("plain-file");
    ok_io("write", std::fs::write(&a_file, b""));
    let a_file = a_file.to_string_lossy().into_owned();
    for uri in [
        "",
        "gs://bucket/x",
        "http://host/x",
        "file:relative/dir",
        "file://otherhost/x",
        a_file.as_str(),
    ] {
        assert!(
            matches!(ArtifactStore::open(uri), Err(ArtifactError::InvalidUri(_))),
            "{uri:?} should be InvalidUri"
        );
    }
    let s3 = ok("open s3", ArtifactStore::open("s3://some-bucket/runs/"));
    assert_eq!(s3.uri(), "s3://some-bucket/runs");
}

/// Counts what reaches the backend: whole-object puts and multipart parts,
/// with the most part bytes ever in flight at once.
#[derive(Debug, Default)]
struct Counts {
    puts: Vec<usize>,
    parts: Vec<usize>,
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Debug)]
struct CountingStore {
    inner: LocalFileSystem,
    counts: Arc<Mutex<Counts>>,
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counts: Arc<Mutex<Counts>>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let size = data.content_length();
        {
            let mut counts = lock(&self.counts);
            counts.parts.push(size);
            counts.in_flight += size;
            counts.max_in_flight = counts.max_in_flight.max(counts.in_flight);
        }
        let part = self.inner.put_part(data);
        let counts = Arc::clone(&self.counts);
        Box::pin(async move {
            let result = part.await;
            lock(&counts).in_flight -= size;
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        lock(&self.counts).puts.push(payload.content_length());
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            counts: Arc::clone(&self.counts),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn counting_store() -> (TempDir, ArtifactStore, Arc<Mutex<Counts>>) {
    let temp = ok_io("tempdir", tempfile::tempdir());
    let root = ok_io("canonicalize", std::fs::canonicalize(temp.path()));
    let inner = match LocalFileSystem::new_with_prefix(&root) {
        Ok(inner) => inner.with_automatic_cleanup(true),
        Err(error) => panic!("local store: {error}"),
    };
    let counts = Arc::new(Mutex::new(Counts::default()));
    let wrapped = CountingStore {
        inner,
        counts: Arc::clone(&counts),
    };
    let store = ArtifactStore::from_parts(
        Arc::new(wrapped),
        "counting".into(),
        Backend::Local { root },
    );
    (temp, store, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_round_trip_stays_within_bounded_memory() {
    let (_temp, store, counts) = counting_store();
    let largest_chunk = suite::large_streamed_round_trip(&store).await;
    let counts = std::mem::take(&mut *lock(&counts));
    assert!(
        counts.puts.is_empty(),
        "a 20 MiB body must not be put whole: {:?}",
        counts.puts
    );
    assert_eq!(
        counts.parts,
        vec![PART_BYTES, PART_BYTES, 4 * 1024 * 1024],
        "parts sent to the backend"
    );
    assert!(
        counts.max_in_flight <= MAX_PARTS_IN_FLIGHT * PART_BYTES,
        "at most {MAX_PARTS_IN_FLIGHT} parts may be in flight, saw {} bytes",
        counts.max_in_flight
    );
    assert!(
        largest_chunk <= 1024 * 1024,
        "downloads come in bounded chunks, saw {largest_chunk} bytes"
    );
}

#[tokio::test]
async fn a_body_smaller_than_a_part_is_written_with_one_put() {
    let (_temp, store, counts) = counting_store();
    let size = 3 * 1024 * 1024 + 5;
    assert_eq!(
        ok(
            "put_stream",
            store.put_stream("small.bin", body(4, size, 100_000)).await
        ),
        size
    );
    let counts = std::mem::take(&mut *lock(&counts));
    assert_eq!(counts.puts, vec![size as usize]);
    assert!(counts.parts.is_empty());
    assert_eq!(
        ok("get", store.get_bytes("small.bin").await),
        Bytes::from(content(4, 0, size as usize))
    );
}

#[tokio::test]
async fn mlflow_artifacts_uris_resolve_under_the_destination() {
    let root = tempfile::tempdir().unwrap();
    let destination = root.path().join("artifacts");
    let destination = destination.to_str().unwrap();
    let (store, path) =
        crate::resolve_artifact_uri("mlflow-artifacts:/1/abc/artifacts/", destination).unwrap();
    assert_eq!(path, "1/abc/artifacts");
    store
        .put_bytes("1/abc/artifacts/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(
        FsPath::new(destination)
            .join("1/abc/artifacts/m.json")
            .is_file()
    );
    let (_, path) =
        crate::resolve_artifact_uri("mlflow-artifacts://tracking:5000/2/x", destination).unwrap();
    assert_eq!(path, "2/x");
    // Any other URI is a store of its own, at its root.
    let elsewhere = root.path().join("elsewhere");
    let (store, path) =
        crate::resolve_artifact_uri(elsewhere.to_str().unwrap(), destination).unwrap();
    assert_eq!(path, "");
    assert!(store.uri().ends_with("/elsewhere"), "{}", store.uri());
    for bad in ["mlflow-artifacts:/1/../../etc", "ftp://host/x"] {
        let error = crate::resolve_artifact_uri(bad, destination).unwrap_err();
        assert!(
            matches!(error, ArtifactError::InvalidUri(_)),
            "{bad}: {error}"
        );
    }
}
