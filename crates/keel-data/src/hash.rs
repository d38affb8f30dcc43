//! BLAKE3 content digests. Small files are read whole and hashed on the
//! calling thread (callers spread files across cores with rayon); large files
//! are read in 4 MiB chunks by one thread while another hashes the previous
//! chunk with BLAKE3's multi-threaded tree mode, so one big file uses every
//! core and memory stays at a few chunks (no mmap, so RSS stays small).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;

/// The hash algorithm name written into metafiles.
pub const HASH_NAME: &str = "blake3";

/// Files at least this large are hashed with the chunked, multi-threaded path.
const LARGE_FILE: u64 = 8 << 20;
const CHUNK: usize = 4 << 20;

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
        return hash_reader_parallel(&mut file);
    }
    let mut buffer = Vec::with_capacity(len as usize + 1);
    file.read_to_end(&mut buffer)?;
    Ok((Digest::of_bytes(&buffer), buffer.len() as u64))
}

/// Reads `reader` in chunks on this thread and hashes them on another, each
/// chunk with BLAKE3's rayon-parallel tree mode.
pub fn hash_reader_parallel(reader: &mut impl Read) -> std::io::Result<(Digest, u64)> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0; CHUNK]);
    }
    std::thread::scope(|scope| {
        let hasher_thread = scope.spawn(move || {
            let mut hasher = blake3::Hasher::new();
            let mut total = 0u64;
            for chunk in full_rx {
                hasher.update_rayon(&chunk);
                total += chunk.len() as u64;
                let mut chunk = chunk;
                chunk.resize(CHUNK, 0);
                if empty_tx.send(chunk).is_err() {
                    break;
                }
            }
            (Digest(*hasher.finalize().as_bytes()), total)
        });
        let mut read_result = Ok(());
        while let Ok(mut chunk) = empty_rx.recv() {
            let mut filled = 0;
            while filled < chunk.len() {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        read_result = Err(error);
                        break;
                    }
                }
            }
            if read_result.is_err() || filled == 0 {
                break;
            }
            chunk.truncate(filled);
            let last = filled < CHUNK;
            if full_tx.send(chunk).is_err() || last {
                break;
            }
        }
        drop(full_tx);
        let joined = hasher_thread.join();
        read_result?;
        joined.map_err(|_| std::io::Error::other("hashing thread panicked"))
    })
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
    fn chunked_parallel_hash_equals_one_shot_hash() {
        // 3.5 chunks, so the last chunk is partial.
        let data: Vec<u8> = (0..(CHUNK * 7 / 2)).map(|i| (i * 31 % 251) as u8).collect();
        let (digest, len) = hash_reader_parallel(&mut &data[..]).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest, Digest::of_bytes(&data));
        // Exactly one chunk, and empty input.
        let (digest, _) = hash_reader_parallel(&mut &data[..CHUNK]).unwrap();
        assert_eq!(digest, Digest::of_bytes(&data[..CHUNK]));
        let (digest, len) = hash_reader_parallel(&mut &data[..0]).unwrap();
        assert_eq!((digest, len), (Digest::of_bytes(b""), 0));
    }

    #[test]
    fn file_hash_uses_both_paths_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(hash_file(&small).unwrap(), (Digest::of_bytes(b"hello"), 5));
        let big = dir.path().join("big");
        let data = vec![7u8; LARGE_FILE as usize + 3];
        std::fs::write(&big, &data).unwrap();
        assert_eq!(
            hash_file(&big).unwrap(),
            (Digest::of_bytes(&data), data.len() as u64)
        );
    }
}
