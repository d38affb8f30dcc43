//! Tests of the artifact store. `suite` holds the backend-independent checks,
//! run against a local directory here (`local`) and against an S3-compatible
//! server (`s3`); backend-specific behaviour (symlinks, memory bounds,
//! temporary files) is tested in the backend's own module.

mod local;
mod s3;
mod suite;

use bytes::Bytes;
use futures::StreamExt;

use crate::{ArtifactError, ArtifactStore, FileInfo};

/// Deterministic pseudo-random content: byte `offset..offset + len` of the
/// stream identified by `seed`. Lets a test stream and verify tens of MiB
/// without ever holding them.
fn content(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    fn word(seed: u64, index: u64) -> u64 {
        // splitmix64
        let mut z =
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_add(0x632B_E59B_D9B9_B7F5);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut out = Vec::with_capacity(len + 8);
    let first_word = offset / 8;
    let skip = (offset % 8) as usize;
    let words = (skip + len).div_ceil(8) as u64;
    for index in first_word..first_word + words {
        out.extend_from_slice(&word(seed, index).to_le_bytes());
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// A lazily generated body of `size` bytes in `chunk`-byte pieces.
fn body(
    seed: u64,
    size: u64,
    chunk: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
    let offsets = (0..size).step_by(chunk);
    futures::stream::iter(offsets.map(move |offset| {
        let len = (size - offset).min(chunk as u64) as usize;
        Ok(Bytes::from(content(seed, offset, len)))
    }))
}

/// Reads `path` as a stream and checks it against `content(seed, ..)` chunk
/// by chunk; returns the largest chunk seen.
async fn assert_streams_content(store: &ArtifactStore, path: &str, seed: u64, size: u64) -> usize {
    let object = match store.get(path).await {
        Ok(object) => object,
        Err(error) => panic!("get {path}: {error}"),
    };
    assert_eq!(object.size, size, "size of {path}");
    let mut stream = object.stream;
    let mut offset = 0u64;
    let mut largest = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => panic!("reading {path} at {offset}: {error}"),
        };
        assert!(
            chunk.as_ref() == content(seed, offset, chunk.len()).as_slice(),
            "{path}: bytes differ in the chunk at offset {offset}"
        );
        offset += chunk.len() as u64;
        largest = largest.max(chunk.len());
    }
    assert_eq!(offset, size, "bytes streamed from {path}");
    largest
}

fn file(path: &str, size: u64) -> FileInfo {
    FileInfo::file(path.to_string(), size)
}

fn dir(path: &str) -> FileInfo {
    FileInfo::dir(path.to_string())
}

/// Unwraps a store result, failing the test with the operation named.
fn ok<T>(what: &str, result: Result<T, ArtifactError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

/// Compile-time check: the store is shareable and its futures can run on
/// any worker thread (the HTTP server spawns them).
#[allow(dead_code)]
fn store_and_its_futures_are_send(store: &ArtifactStore) {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send>(_: T) {}
    shareable::<ArtifactStore>();
    send(store.put_bytes("a", Bytes::new()));
    send(store.put_stream("a", body(0, 0, 1)));
    send(store.get("a"));
    send(store.get_bytes("a"));
    send(store.head("a"));
    send(store.list(""));
    send(store.list_recursive(""));
    send(store.delete("a"));
}

#[test]
fn content_is_consistent_at_any_offset() {
    let whole = content(7, 0, 100);
    assert_eq!(content(7, 13, 50), whole[13..63].to_vec());
    assert_eq!(content(7, 96, 4), whole[96..].to_vec());
    assert_ne!(content(8, 0, 100), whole);
}
