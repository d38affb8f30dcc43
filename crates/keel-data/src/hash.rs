//! BLAKE3 content digests. Small files are read whole and hashed on the
//! calling thread (callers spread files across cores with rayon). Large files
//! are hashed on every core as BLAKE3's tree allows ([`hash_large`]): the
//! file is cut along the tree's subtrees into [`LEAF`]-sized leaves, each
//! leaf is read with `pread` into its thread's buffer and hashed into a
//! chaining value while it is still in the core's cache, and the chaining
//! values are merged up the tree (`blake3::hazmat`). That is one kernel copy
//! of the bytes; hashing a memory-mapped file instead (what keel did before)
//! reads the page cache directly but pays a page fault per 64 KiB, an
//! `munmap` of every page on one thread at the end, and BLAKE3 reading from
//! memory rather than from cache: on the benchmark machine a warm 1 GiB file
//! hashed in 0.16 s / 0.31 CPU-s this way against 0.19 s / 0.33 CPU-s mapped
//! (BENCHMARKS.md, issue 19). A file truncated while it is hashed is a read
//! error, not a SIGBUS. Nothing is recorded before hashing ends (objects,
//! metafiles and the stat cache are written afterwards through temp files
//! and renames), so a rerun starts clean.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

/// The hash algorithm name written into metafiles.
pub const HASH_NAME: &str = "blake3";

/// Files at least this large are hashed on every core (and, where `add`
/// must copy them into the cache, hashed while copied).
pub const LARGE_FILE: u64 = 8 << 20;

/// The size of the subtrees a large file is read and hashed in: a power of
/// two of BLAKE3 chunks, well inside a core's L2 cache between the read and
/// the hash, and large enough that the SIMD code runs at full width and the
/// `pread` calls and the tree's merges do not show (64 KiB measured best of
/// 32 KiB to 1 MiB here).
pub const LEAF: u64 = 64 << 10;

/// A 32-byte BLAKE3 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of an in-memory buffer.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The object's path under a cache or remote root: `ab/cdef…`.
    pub fn shard_path(&self) -> String {
        let hex = self.to_hex();
        format!("{}/{}", &hex[..2], &hex[2..])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a BLAKE3 digest (expected 64 hex digits): `{0}`")]
pub struct BadDigest(pub String);

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        blake3::Hash::from_hex(text)
            .map(|hash| Digest(*hash.as_bytes()))
            .map_err(|_| BadDigest(text.chars().take(80).collect()))
    }
}

/// Hashes a file's content; returns the digest and the number of bytes read.
pub fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len >= LARGE_FILE {
        return Ok((hash_large(&file, len)?, len));
    }
    let mut buffer = Vec::with_capacity(len as usize + 1);
    file.read_to_end(&mut buffer)?;
    Ok((Digest::of_bytes(&buffer), buffer.len() as u64))
}

/// Hashes the first `len` bytes of an open file on every core (rayon), leaf
/// by leaf; a file shorter than `len` is an `UnexpectedEof` error. The
/// result is BLAKE3's digest of those bytes, whatever `len` is.
pub fn hash_large(file: &File, len: u64) -> std::io::Result<Digest> {
    if len <= LEAF {
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        return Ok(Digest::of_bytes(&bytes));
    }
    let left = hazmat::left_subtree_len(len);
    let (left_cv, right_cv) = rayon::join(
        || subtree(file, 0, left),
        || subtree(file, left, len - left),
    );
    let root = hazmat::merge_subtrees_root(&left_cv?, &right_cv?, Mode::Hash);
    Ok(Digest(*root.as_bytes()))
}

thread_local! {
    /// Each hashing thread's leaf buffer (reused: no allocation, no fresh
    /// pages to fault in per leaf).
    static LEAF_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The chaining value of the non-root subtree `offset..offset + len`
/// (`offset` a multiple of `len`'s subtree size, as BLAKE3's tree puts it).
fn subtree(file: &File, offset: u64, len: u64) -> std::io::Result<ChainingValue> {
    if len <= LEAF {
        return LEAF_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < LEAF as usize {
                buffer.resize(LEAF as usize, 0);
            }
            let bytes = &mut buffer[..len as usize];
            file.read_exact_at(bytes, offset)?;
            Ok(blake3::Hasher::new()
                .set_input_offset(offset)
                .update(bytes)
                .finalize_non_root())
        });
    }
    let left = hazmat::left_subtree_len(len);
    let (left_cv, right_cv) = rayon::join(
        || subtree(file, offset, left),
        || subtree(file, offset + left, len - left),
    );
    Ok(hazmat::merge_subtrees_non_root(
        &left_cv?,
        &right_cv?,
        Mode::Hash,
    ))
}

/// An incremental hasher for streams whose chunks arrive one by one (downloads).
#[derive(Default)]
pub struct StreamHasher(blake3::Hasher);

impl StreamHasher {
    /// Feeds a chunk.
    pub fn update(&mut self, bytes: &[u8]) {
        if bytes.len() >= 1 << 20 {
            self.0.update_rayon(bytes);
        } else {
            self.0.update(bytes);
        }
    }

    /// The digest of everything fed.
    pub fn finalize(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let digest = Digest::of_bytes(b"abc");
        let parsed: Digest = digest.to_hex().parse().unwrap();
        assert_eq!(parsed, digest);
        assert_eq!(
            digest.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert!("xyz".parse::<Digest>().is_err());
        assert_eq!(&digest.shard_path()[..3], "64/");
    }

    #[test]
    fn file_hash_uses_both_paths_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(hash_file(&small).unwrap(), (Digest::of_bytes(b"hello"), 5));
        let big = dir.path().join("big");
        let data: Vec<u8> = (0..LARGE_FILE as usize + 3)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&big, &data).unwrap();
        assert_eq!(
            hash_file(&big).unwrap(),
            (Digest::of_bytes(&data), data.len() as u64)
        );
    }

    /// The leaf-by-leaf tree hash is BLAKE3's digest for every shape of
    /// tree: lengths around the leaf size and its powers of two, one chunk
    /// more or less, and ragged ends.
    #[test]
    fn the_tree_hash_matches_blake3_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let max = 4 * LEAF as usize + 5000;
        let data: Vec<u8> = (0..max)
            .map(|i| (i * 7 % 256) as u8 ^ (i >> 11) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let leaf = LEAF as usize;
        let chunk = blake3::CHUNK_LEN;
        for len in [
            0,
            1,
            chunk,
            chunk + 1,
            leaf - 1,
            leaf,
            leaf + 1,
            leaf + chunk,
            2 * leaf - chunk,
            2 * leaf,
            2 * leaf + 1,
            3 * leaf + 17,
            4 * leaf,
            max,
        ] {
            assert_eq!(
                hash_large(&file, len as u64).unwrap(),
                Digest::of_bytes(&data[..len]),
                "length {len}"
            );
        }
        // A file shorter than asked for (truncated meanwhile) is an error.
        let error = hash_large(&file, max as u64 + 1).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
