//! The backend-independent suite: each check takes a fresh, empty store and
//! is run by `local` and `s3` alike, so both backends answer the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;

use super::{assert_streams_content, body, content, dir, file, ok};
use crate::{ArtifactError, ArtifactStore};

const MIB: u64 = 1024 * 1024;

/// Bytes written come back unchanged, through every read path, and an
/// overwrite replaces them.
pub(super) async fn round_trip(store: &ArtifactStore) {
    let data = Bytes::from_static(b"hello, keel\n");
    ok(
        "put",
        store.put_bytes("notes/hello.txt", data.clone()).await,
    );
    assert_eq!(
        ok("get_bytes", store.get_bytes("notes/hello.txt").await),
        data
    );
    assert_eq!(
        ok("head", store.head("notes/hello.txt").await),
        Some(file("notes/hello.txt", data.len() as u64))
    );
    assert_streams_content_eq(store, "notes/hello.txt", &data).await;

    ok(
        "overwrite",
        store
            .put_bytes("notes/hello.txt", Bytes::from_static(b"v2"))
            .await,
    );
    assert_eq!(
        ok("get_bytes", store.get_bytes("notes/hello.txt").await),
        Bytes::from_static(b"v2")
    );

    ok("put empty", store.put_bytes("empty", Bytes::new()).await);
    assert_eq!(
        ok("get empty", store.get_bytes("empty").await),
        Bytes::new()
    );
    assert_eq!(
        ok("head empty", store.head("empty").await),
        Some(file("empty", 0))
    );
    let written = ok(
        "put_stream empty",
        store.put_stream("empty-stream", body(1, 0, 1024)).await,
    );
    assert_eq!(written, 0);
    assert_eq!(
        ok("get empty-stream", store.get_bytes("empty-stream").await),
        Bytes::new()
    );

    // Characters that need care in URLs and on disk survive unchanged.
    let odd = "odd names/a b%20c#d=e&f+g ü 数据.txt";
    ok(
        "put odd",
        store.put_bytes(odd, Bytes::from_static(b"odd")).await,
    );
    assert_eq!(
        ok("get odd", store.get_bytes(odd).await),
        Bytes::from_static(b"odd")
    );
    assert_eq!(
        ok("list odd", store.list("odd names").await),
        vec![file(odd, 3)]
    );

    let small = ok(
        "put_stream small",
        store
            .put_stream("streamed/small.bin", body(2, 100_000, 4096))
            .await,
    );
    assert_eq!(small, 100_000);
    assert_streams_content(store, "streamed/small.bin", 2, 100_000).await;

    assert!(
        matches!(store.get("notes/missing.txt").await, Err(ArtifactError::NotFound(m)) if m.contains("notes/missing.txt"))
    );
    assert!(matches!(
        store.get_bytes("missing").await,
        Err(ArtifactError::NotFound(_))
    ));
    assert_eq!(
        ok("head missing", store.head("notes/missing.txt").await),
        None
    );
    // A directory is not a file.
    assert!(matches!(
        store.get_bytes("notes").await,
        Err(ArtifactError::NotFound(_))
    ));
}

async fn assert_streams_content_eq(store: &ArtifactStore, path: &str, expected: &[u8]) {
    let object = ok("get", store.get(path).await);
    assert_eq!(object.size, expected.len() as u64);
    let chunks: Vec<Result<Bytes, ArtifactError>> = object.stream.collect().await;
    let mut read = Vec::new();
    for chunk in chunks {
        read.extend_from_slice(&ok("chunk", chunk));
    }
    assert_eq!(read, expected);
}

async fn put_tree(store: &ArtifactStore) {
    for (path, text) in [
        ("top.txt", "t"),
        ("d/a.txt", "aa"),
        ("d/sub/b.txt", "bbb"),
        ("d/sub/deeper/c.bin", "cccc"),
        ("d/subway/x", "xxxxx"),
        ("d2/y", "yyyyyy"),
    ] {
        ok(
            path,
            store
                .put_bytes(path, Bytes::from_static(text.as_bytes()))
                .await,
        );
    }
}

/// `list` shows immediate children (directories and files) sorted by path;
/// `list_recursive` every file below; prefixes match whole segments.
pub(super) async fn nested_listing(store: &ArtifactStore) {
    put_tree(store).await;
    assert_eq!(
        ok("list root", store.list("").await),
        vec![dir("d"), dir("d2"), file("top.txt", 1)]
    );
    let d = vec![file("d/a.txt", 2), dir("d/sub"), dir("d/subway")];
    assert_eq!(ok("list d", store.list("d").await), d);
    assert_eq!(ok("list d/", store.list("d/").await), d);
    assert_eq!(
        ok("list d/sub", store.list("d/sub").await),
        vec![file("d/sub/b.txt", 3), dir("d/sub/deeper")]
    );
    assert_eq!(
        ok("list_recursive d/sub", store.list_recursive("d/sub").await),
        vec![file("d/sub/b.txt", 3), file("d/sub/deeper/c.bin", 4)]
    );
    assert_eq!(
        ok("list_recursive root", store.list_recursive("").await),
        vec![
            file("d/a.txt", 2),
            file("d/sub/b.txt", 3),
            file("d/sub/deeper/c.bin", 4),
            file("d/subway/x", 5),
            file("d2/y", 6),
            file("top.txt", 1),
        ]
    );
    assert_eq!(ok("list partial segment", store.list("d/su").await), vec![]);
    assert_eq!(ok("list missing", store.list("nope").await), vec![]);
    assert_eq!(ok("list a file", store.list("top.txt").await), vec![]);
    assert_eq!(
        ok("head dir", store.head("d/sub").await),
        Some(dir("d/sub"))
    );
    assert_eq!(
        ok("head dir/", store.head("d/sub/").await),
        Some(dir("d/sub"))
    );
    assert_eq!(ok("head root", store.head("").await), Some(dir("")));
    assert_eq!(ok("head partial segment", store.head("d/su").await), None);
}

/// `delete` removes a file or a whole prefix, counts what it removed, leaves
/// siblings sharing a string prefix alone, and treats a missing path as done.
pub(super) async fn delete_prefix(store: &ArtifactStore) {
    put_tree(store).await;
    assert_eq!(ok("delete d/sub", store.delete("d/sub").await), 2);
    assert_eq!(
        ok("list d", store.list("d").await),
        vec![file("d/a.txt", 2), dir("d/subway")]
    );
    assert_eq!(ok("head deleted dir", store.head("d/sub").await), None);
    assert_eq!(ok("delete file", store.delete("d/a.txt").await), 1);
    assert_eq!(ok("delete again", store.delete("d/a.txt").await), 0);
    assert_eq!(ok("delete missing", store.delete("never/was").await), 0);
    assert_eq!(ok("delete d2/", store.delete("d2/").await), 1);
    assert_eq!(
        ok("list root", store.list("").await),
        vec![dir("d"), file("top.txt", 1)]
    );
    assert_eq!(ok("delete d", store.delete("d").await), 1);
    assert_eq!(
        ok("list root", store.list("").await),
        vec![file("top.txt", 1)]
    );
    assert!(matches!(
        store.delete("").await,
        Err(ArtifactError::InvalidPath(_))
    ));
    assert_eq!(
        ok("root survives", store.list_recursive("").await),
        vec![file("top.txt", 1)]
    );
}

/// Paths that would leave the root (or are malformed) are refused by every
/// operation with `InvalidPath`, before anything is written.
pub(super) async fn escaping_paths_rejected(store: &ArtifactStore) {
    let long = "x/".repeat(600);
    let bad = [
        "..",
        "../x",
        "../../etc/passwd",
        "a/../../x",
        "a/..",
        "/abs",
        "/",
        "//x",
        "a\\b",
        "..\\x",
        "a\0b",
        "a\nb",
        "a//b",
        ".",
        "./a",
        "a/./b",
        long.as_str(),
    ];
    for path in bad {
        let refused = |op: &str, result: Result<(), ArtifactError>| match result {
            Err(ArtifactError::InvalidPath(_)) => {}
            other => panic!("{op}({path:?}) should fail with InvalidPath, got {other:?}"),
        };
        refused("validate_path", ArtifactStore::validate_path(path));
        refused(
            "put_bytes",
            store.put_bytes(path, Bytes::from_static(b"x")).await,
        );
        refused(
            "put_stream",
            store.put_stream(path, body(3, 10, 10)).await.map(drop),
        );
        refused("get", store.get(path).await.map(drop));
        refused("get_bytes", store.get_bytes(path).await.map(drop));
        refused("head", store.head(path).await.map(drop));
        refused("list", store.list(path).await.map(drop));
        refused("list_recursive", store.list_recursive(path).await.map(drop));
        refused("delete", store.delete(path).await.map(drop));
    }
    assert_eq!(
        ok("nothing written", store.list_recursive("").await),
        vec![]
    );
}

/// A 20 MiB body streamed in 64 KiB pieces is stored whole and read back in
/// chunks, each checked against the generator: neither side materialises it.
pub(super) async fn large_streamed_round_trip(store: &ArtifactStore) -> usize {
    let size = 20 * MIB;
    let written = ok(
        "put_stream 20 MiB",
        store
            .put_stream("big/blob.bin", body(20, size, 64 * 1024))
            .await,
    );
    assert_eq!(written, size);
    assert_eq!(
        ok("head", store.head("big/blob.bin").await),
        Some(file("big/blob.bin", size))
    );
    assert_streams_content(store, "big/blob.bin", 20, size).await
}

/// A body whose stream fails midway is not stored, and the previous object
/// stays whole.
pub(super) async fn failed_stream_leaves_previous_object(store: &ArtifactStore) {
    ok(
        "put v1",
        store
            .put_bytes("model.bin", Bytes::from_static(b"version 1"))
            .await,
    );
    for size in [MIB, 12 * MIB] {
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let failing = body(5, size, 256 * 1024).map(move |chunk| {
            // Fail on the last chunk, after (for 12 MiB) a part has been uploaded.
            if counter.fetch_add(1, Ordering::SeqCst) + 1 == (size / (256 * 1024)) as usize {
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "client went away",
                ))
            } else {
                chunk
            }
        });
        match store.put_stream("model.bin", failing).await {
            Err(ArtifactError::Backend(message)) => {
                assert!(
                    message.contains("model.bin") && message.contains("client went away"),
                    "{message}"
                )
            }
            other => panic!("a failing body of {size} bytes should fail the put, got {other:?}"),
        }
        let chunks = (size / (256 * 1024)) as usize;
        let truncated = body(5, size, 256 * 1024)
            .take(chunks - 1)
            .chain(futures::stream::iter([Err(std::io::Error::other(
                "truncated",
            ))]));
        match store.put_stream("fresh/new/model.bin", truncated).await {
            Err(ArtifactError::Backend(_)) => {}
            other => panic!("a truncated body of {size} bytes should fail the put, got {other:?}"),
        }
        assert_eq!(
            ok("v1 intact", store.get_bytes("model.bin").await),
            Bytes::from_static(b"version 1")
        );
        assert_eq!(
            ok("no partial object", store.head("fresh/new/model.bin").await),
            None
        );
    }
    assert_eq!(
        ok("listing", store.list_recursive("").await),
        vec![file("model.bin", 9)]
    );
}

/// Concurrent writers of one path leave exactly one of their objects, whole.
pub(super) async fn concurrent_puts_leave_one_complete_object(store: &ArtifactStore) {
    // Seeds 100.. stream 9 MiB (multipart); seeds 200.. put 300 KiB at once.
    let streamed: Vec<(u64, u64)> = (100..104).map(|seed| (seed, 9 * MIB)).collect();
    let single: Vec<(u64, u64)> = (200..204).map(|seed| (seed, 300 * 1024)).collect();
    let mut tasks = Vec::new();
    for &(seed, size) in &streamed {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_stream("shared/model.bin", body(seed, size, 128 * 1024))
                .await
                .map(drop)
        }));
    }
    for &(seed, size) in &single {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_bytes(
                    "shared/model.bin",
                    Bytes::from(content(seed, 0, size as usize)),
                )
                .await
        }));
    }
    for task in tasks {
        match task.await {
            Ok(result) => ok("concurrent put", result),
            Err(error) => panic!("put task panicked: {error}"),
        }
    }
    let stored = ok("get", store.get_bytes("shared/model.bin").await);
    let winners: Vec<u64> = streamed
        .iter()
        .chain(&single)
        .filter(|&&(seed, size)| {
            stored.len() as u64 == size && stored == content(seed, 0, size as usize)
        })
        .map(|&(seed, _)| seed)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "stored object ({} bytes) must equal exactly one writer's",
        stored.len()
    );
    assert_eq!(
        ok("listing", store.list_recursive("").await),
        vec![file("shared/model.bin", stored.len() as u64)]
    );
}
