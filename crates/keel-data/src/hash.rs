//! BLAKE3 content digests. Small files are read whole and hashed on the
//! calling thread (callers spread files across cores with rayon). Large files
//! are hashed on every core as BLAKE3's tree allows ([`hash_large`]): the
//! file is cut along the tree's subtrees into [`LEAF`]-sized leaves (1 MiB),
//! each leaf is read with `pread` into its thread's page-aligned buffer and
//! hashed into a chaining value while it is still in the core's L2 cache,
//! and the chaining values are merged up the tree (`blake3::hazmat`). That
//! is one kernel copy of the bytes, about a third of the CPU time on the
//! benchmark machine (0.08–0.12 of 0.24–0.28 CPU-s per warm GiB); hashing
//! a memory-mapped file instead skips the copy but costs more in all
//! (BENCHMARKS.md, issue 19, round three: 0.33–0.35 CPU-s per GiB with the
//! page tables filled by `MADV_POPULATE_READ` region by region, 0.25 when
//! the page cache holds 2 MiB folios): BLAKE3 then reads memory instead of
//! cache, and the mapping's page-table work and `munmap` take the rest. It
//! would also need `unsafe` and could die of SIGBUS if the file shrank
//! meanwhile; here a truncated file is a read error. Nothing is recorded
//! before hashing ends (objects, metafiles and the stat cache are written
//! afterwards through temp files and renames), so a rerun starts clean.

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
/// two of BLAKE3 chunks, large enough that the `pread` calls (each costs a
/// system call and a page-cache lookup besides its copy) and the tree's
/// merges do not show, and small enough to stay in a core's L2 cache
/// between the read and the hash. 1 MiB and 2 MiB measured best of 64 KiB
/// to 4 MiB on the benchmark machine (BENCHMARKS.md, issue 19, round
/// three): 0.24–0.28 CPU-s per warm GiB against 0.27–0.30 for 64 KiB
/// leaves, most of it fewer system calls (the reads alone: 0.08–0.12
/// against 0.10–0.14 CPU-s).
pub const LEAF: u64 = 1 << 20;

/// The leaf buffers start on a page boundary: the kernel's copy into a
/// buffer 16 bytes past a page boundary (what glibc's `malloc` returns for
/// large buffers) costs 0.03–0.08 CPU-s more per GiB on the benchmark
/// machine. The buffer (1 MiB and a page) stays with its thread.
const BUFFER_ALIGN: usize = 4096;

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
    hash_in_leaves(file, len, LEAF)
}

/// [`hash_large`] with another leaf size (at least one BLAKE3 chunk, 1 KiB;
/// a power of two keeps every leaf but the last whole), for the `b3`
/// example's comparison of leaf sizes; the digest is the same whatever
/// the leaf.
pub fn hash_in_leaves(file: &File, len: u64, leaf: u64) -> std::io::Result<Digest> {
    if leaf < blake3::CHUNK_LEN as u64 || leaf > 1 << 30 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("leaf size {leaf} is outside 1 KiB..1 GiB"),
        ));
    }
    if len <= leaf {
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        return Ok(Digest::of_bytes(&bytes));
    }
    let left = hazmat::left_subtree_len(len);
    let (left_cv, right_cv) = rayon::join(
        || subtree(file, 0, left, leaf),
        || subtree(file, left, len - left, leaf),
    );
    let root = hazmat::merge_subtrees_root(&left_cv?, &right_cv?, Mode::Hash);
    Ok(Digest(*root.as_bytes()))
}

thread_local! {
    /// Each hashing thread's leaf buffer (reused: no allocation, no fresh
    /// pages to fault in per leaf); see [`aligned_leaf`].
    static LEAF_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The first `len` bytes of `buffer` from its first page boundary on,
/// growing it to hold a leaf of `leaf` bytes there.
fn aligned_leaf(buffer: &mut Vec<u8>, leaf: usize, len: usize) -> &mut [u8] {
    if buffer.len() < leaf + BUFFER_ALIGN {
        buffer.clear();
        buffer.resize(leaf + BUFFER_ALIGN, 0);
    }
    let start = (BUFFER_ALIGN - buffer.as_ptr() as usize % BUFFER_ALIGN) % BUFFER_ALIGN;
    &mut buffer[start..start + len]
}

/// The chaining value of the non-root subtree `offset..offset + len`
/// (`offset` a multiple of `len`'s subtree size, as BLAKE3's tree puts it).
fn subtree(file: &File, offset: u64, len: u64, leaf: u64) -> std::io::Result<ChainingValue> {
    if len <= leaf {
        return LEAF_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            let bytes = aligned_leaf(&mut buffer, leaf as usize, len as usize);
            file.read_exact_at(bytes, offset)?;
            Ok(blake3::Hasher::new()
                .set_input_offset(offset)
                .update(bytes)
                .finalize_non_root())
        });
    }
    let left = hazmat::left_subtree_len(len);
    let (left_cv, right_cv) = rayon::join(
        || subtree(file, offset, left, leaf),
        || subtree(file, offset + left, len - left, leaf),
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
    /// more or less, and ragged ends; with keel's leaf and with others
    /// (one chunk, a power of two smaller than keel's, one that is none).
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
        let chunk = blake3::CHUNK_LEN;
        for leaf in [LEAF as usize, chunk, 64 << 10, 3 * chunk] {
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
                let expected = Digest::of_bytes(&data[..len]);
                let hashed = hash_in_leaves(&file, len as u64, leaf as u64).unwrap();
                assert_eq!(hashed, expected, "length {len}, leaf {leaf}");
                if leaf == LEAF as usize {
                    assert_eq!(hash_large(&file, len as u64).unwrap(), expected);
                }
            }
            // A file shorter than asked for (truncated meanwhile) is an error.
            let error = hash_in_leaves(&file, max as u64 + 1, leaf as u64).unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "leaf {leaf}"
            );
        }
        let error = hash_in_leaves(&file, max as u64, chunk as u64 - 1).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }

    /// Every leaf lands on a page boundary of its thread's buffer, whatever
    /// the allocator returned and however the buffer grew.
    #[test]
    fn leaf_buffers_are_page_aligned() {
        let mut buffer = Vec::new();
        for (leaf, len) in [
            (64 << 10, 100),
            (LEAF as usize, LEAF as usize),
            (64 << 10, 5),
        ] {
            let slice = aligned_leaf(&mut buffer, leaf, len);
            assert_eq!(slice.as_ptr() as usize % BUFFER_ALIGN, 0);
            assert_eq!(slice.len(), len);
        }
    }
}
