//! The content-addressed object cache, `.keel/cache/blake3/ab/cdef…`. Objects
//! are immutable and read-only; they enter through a hardlink of a complete
//! file or a temp file renamed into place, so a killed process never leaves a
//! partial object under its final name. Objects are verified against their
//! digest before they are placed in the workspace; a corrupt one is moved to
//! `.keel/quarantine/` so a later fetch can bring a good copy.
//!
//! Durability (fsync where a copy would otherwise be the only one): an object
//! entering the cache always has another copy at that moment (the workspace
//! file it was added from, or the remote it was fetched from), so objects are
//! not fsynced; manifests, metafiles and the stat cache are. A power cut
//! that leaves an object empty or short cannot make keel place or push bad
//! bytes, because every object is hashed again before use: checkout
//! quarantines it, push refuses it, and `add` or `fetch` brings a good copy.
//! The remote is where durability is paid for (see `remote`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{DataError, Result};
use crate::fsutil;
use crate::hash::{self, Digest};
use crate::link::{self, LinkKind};
use crate::state::FileStat;

/// The object cache of one project.
#[derive(Debug)]
pub struct Cache {
    objects: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    shards_ready: OnceLock<()>,
}

/// Outcome of checking one object against its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The bytes hash to the name.
    Good,
    /// Not in the cache.
    Missing,
    /// The bytes do not match; the object was moved to quarantine.
    Corrupt,
}

impl Cache {
    /// The cache under a project's `.keel/` folder.
    pub fn new(keel_dir: &Path) -> Self {
        Cache {
            objects: keel_dir.join("cache").join(hash::HASH_NAME),
            tmp: keel_dir.join("tmp"),
            quarantine: keel_dir.join("quarantine"),
            shards_ready: OnceLock::new(),
        }
    }

    /// The root folder of the objects.
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    /// Where an object lives (whether or not it is there).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the object is present (not verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        std::fs::symlink_metadata(self.object_path(digest)).is_ok()
    }

    fn ensure_shards(&self) -> Result<()> {
        if self.shards_ready.get().is_some() {
            return Ok(());
        }
        for dir in [&self.tmp, &self.objects] {
            std::fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
        }
        for byte in 0..=255u8 {
            let shard = self.objects.join(format!("{byte:02x}"));
            match std::fs::create_dir(&shard) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(DataError::io(shard, source)),
            }
        }
        let _ = self.shards_ready.set(());
        Ok(())
    }

    /// A fresh temporary path next to `digest`'s object: renames stay within
    /// one small shard folder (one shared temp folder grows huge on ext4,
    /// where folders never shrink, and then every create in it is slow).
    /// Temp names start with `.`, so they never parse as objects.
    pub fn temp_path(&self, digest: &Digest, stem: &str) -> Result<PathBuf> {
        self.ensure_shards()?;
        let hex = digest.to_hex();
        Ok(fsutil::temp_path(&self.objects.join(&hex[..2]), stem))
    }

    /// Puts a workspace file into the cache under `digest` (already computed)
    /// using the first link kind that works. Returns None when the object was
    /// already there.
    pub fn insert_file(
        &self,
        source: &Path,
        digest: &Digest,
        kinds: &[LinkKind],
    ) -> Result<Option<LinkKind>> {
        // A hardlink makes only its own shard folder when it is missing, not
        // all 256 (a fresh cache, one file added: 256 mkdirs were several
        // milliseconds); every other way needs them all.
        let hardlink = link::first_usable(kinds) == Some(LinkKind::Hardlink);
        if !hardlink {
            self.ensure_shards()?;
        }
        let target = self.object_path(digest);
        // A hardlink is complete the moment it exists, so it can go straight
        // to the final name (and an existing object is simply kept).
        if hardlink {
            let mut linked = std::fs::hard_link(source, &target);
            if matches!(&linked, Err(error) if error.kind() == std::io::ErrorKind::NotFound)
                && let Some(shard) = target.parent()
                && std::fs::create_dir_all(shard).is_ok()
            {
                linked = std::fs::hard_link(source, &target);
            }
            match linked {
                Ok(()) => {
                    fsutil::make_read_only(&target)
                        .map_err(|error| DataError::io(&target, error))?;
                    return Ok(Some(LinkKind::Hardlink));
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                // Fall through: the general path reports or falls back.
                Err(_) => self.ensure_shards()?,
            }
        }
        if std::fs::symlink_metadata(&target).is_ok() {
            return Ok(None);
        }
        let temp = self.temp_path(digest, "object")?;
        let (used, _) =
            link::link_first(kinds, source, &temp).map_err(|error| DataError::io(source, error))?;
        // A copy or reflink is created read-only; a hardlink shares the
        // workspace file's inode, which is made read-only here.
        let finish = if used == LinkKind::Hardlink {
            fsutil::make_read_only(&temp)
        } else {
            Ok(())
        }
        .and_then(|()| std::fs::rename(&temp, &target));
        if let Err(source_error) = finish {
            let _ = std::fs::remove_file(&temp);
            return Err(DataError::io(&target, source_error));
        }
        Ok(Some(used))
    }

    /// Stores bytes (a manifest, a downloaded object) under their digest:
    /// a read-only temp file, fsynced when `durable`, renamed into place.
    pub fn insert_bytes(&self, digest: &Digest, bytes: &[u8], durable: bool) -> Result<()> {
        self.ensure_shards()?;
        let target = self.object_path(digest);
        if std::fs::symlink_metadata(&target).is_ok() {
            return Ok(());
        }
        let temp = self.temp_path(digest, "object")?;
        write_read_only(&temp, &target, bytes, durable)
            .map(|_| ())
            .map_err(|error| DataError::io(&target, error))
    }

    /// Copies a file into a new read-only temporary file in `.keel/tmp/`
    /// (emptied whenever the project lock is taken) and hashes it at the
    /// same time: the kernel copies (`copy_file_range`) on one thread while
    /// [`hash::hash_file`] reads the page cache on the others, so a large
    /// file that must be copied into the cache costs about the longer of
    /// the two, not their sum. Returns the digest, the temporary file
    /// (store it with [`Cache::insert_temp`] or remove it) and the source's
    /// stat fields once both are done, so the caller can tell whether it
    /// changed meanwhile (then the copy and the digest may differ).
    pub fn copy_in(&self, source: &Path) -> Result<(Digest, PathBuf, FileStat)> {
        self.ensure_shards()?;
        let temp = fsutil::temp_path(&self.tmp, "copy-in");
        let copied = (|| {
            let mut from = std::fs::File::open(source).map_err(|e| DataError::io(source, e))?;
            let mut to = fsutil::create_read_only(&temp, 0o444)
                .map_err(|error| DataError::io(&temp, error))?;
            let (hashed, copied) = std::thread::scope(|scope| {
                let copier = scope.spawn(|| std::io::copy(&mut from, &mut to));
                let hashed = hash::hash_file(source);
                let copied = copier
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the copying thread panicked")));
                (hashed, copied)
            });
            copied.map_err(|error| DataError::io(&temp, error))?;
            let (digest, _) = hashed.map_err(|error| DataError::io(source, error))?;
            let after = from
                .metadata()
                .map_err(|error| DataError::io(source, error))?;
            Ok((digest, FileStat::of(&after)))
        })();
        match copied {
            Ok((digest, stat)) => Ok((digest, temp, stat)),
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                Err(error)
            }
        }
    }

    /// Moves a complete, verified temp file into place under `digest`.
    pub fn insert_temp(&self, temp: &Path, digest: &Digest) -> Result<()> {
        self.ensure_shards()?;
        let target = self.object_path(digest);
        let result = fsutil::make_read_only(temp).and_then(|()| std::fs::rename(temp, &target));
        if let Err(error) = result {
            let _ = std::fs::remove_file(temp);
            return Err(DataError::io(&target, error));
        }
        Ok(())
    }

    /// Reads a small object (a manifest) and checks its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.object_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) if Digest::of_bytes(&bytes) == *digest => Ok(Some(bytes)),
            Ok(_) => {
                self.quarantine(digest);
                Err(DataError::Invalid(format!(
                    "corrupt object {} (content does not match its digest; moved to quarantine, fetch it again)",
                    path.display()
                )))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(DataError::io(path, error)),
        }
    }

    /// Hashes the object and compares; a corrupt object is quarantined.
    pub fn verify(&self, digest: &Digest) -> Result<Verified> {
        let path = self.object_path(digest);
        match hash::hash_file(&path) {
            Ok((actual, _)) if actual == *digest => Ok(Verified::Good),
            Ok(_) => {
                self.quarantine(digest);
                Ok(Verified::Corrupt)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Verified::Missing),
            Err(error) => Err(DataError::io(path, error)),
        }
    }

    fn quarantine(&self, digest: &Digest) {
        let _ = std::fs::create_dir_all(&self.quarantine);
        let _ = std::fs::rename(
            self.object_path(digest),
            self.quarantine.join(digest.to_hex()),
        );
    }

    /// Places an object at `dest` (replacing what is there) with the first
    /// link kind that works; copies are created read-only like the cache.
    /// `dest`'s folder must exist. Returns the kind and `dest`'s stat fields.
    ///
    /// A copy is written under a temporary name in the object's shard and
    /// renamed over `dest`, so a reader never sees a partial file. Creating
    /// it there rather than in `dest`'s folder matters: a file creation
    /// holds its folder's lock while ext4 allocates the inode (slow right
    /// after many deletions, see BENCHMARKS.md), so parallel placements
    /// into one workspace folder would queue on that lock, while the shards
    /// spread them over 256 folders; the rename is quick.
    pub fn place(
        &self,
        digest: &Digest,
        dest: &Path,
        kinds: &[LinkKind],
    ) -> Result<(LinkKind, FileStat)> {
        let object = self.object_path(digest);
        // Nothing at `dest` and hardlinks in use: link straight into place.
        if link::first_usable(kinds) == Some(LinkKind::Hardlink)
            && std::fs::hard_link(&object, dest).is_ok()
        {
            let metadata =
                std::fs::symlink_metadata(dest).map_err(|error| DataError::io(dest, error))?;
            return Ok((LinkKind::Hardlink, FileStat::of(&metadata)));
        }
        let temp = self.temp_path(digest, "place")?;
        let (used, stat) = link::link_first(kinds, &object, &temp)
            .map_err(|error| DataError::io(&object, error))?;
        let result = match stat {
            Some(stat) => Ok(stat),
            None => std::fs::symlink_metadata(&temp).map(|metadata| FileStat::of(&metadata)),
        }
        .and_then(|stat| std::fs::rename(&temp, dest).map(|()| stat));
        match result {
            Ok(stat) => Ok((used, stat)),
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                Err(DataError::io(dest, error))
            }
        }
    }

    /// Places an object's verified bytes, already in memory (a pull's
    /// download), at `dest` as a read-only copy, through a temporary file
    /// in the object's shard as [`Cache::place`] does, without reading the
    /// cache object back. `dest`'s folder must exist.
    pub fn place_bytes(&self, digest: &Digest, bytes: &[u8], dest: &Path) -> Result<FileStat> {
        let temp = self.temp_path(digest, "place")?;
        write_read_only(&temp, dest, bytes, false).map_err(|error| DataError::io(dest, error))
    }

    /// Every object in the cache with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut objects = Vec::new();
        let shards = match std::fs::read_dir(&self.objects) {
            Ok(shards) => shards,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(objects),
            Err(error) => return Err(DataError::io(&self.objects, error)),
        };
        for shard in shards.flatten() {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = format!("{shard_name}{}", entry.file_name().to_string_lossy());
                if let (Ok(digest), Ok(metadata)) = (name.parse::<Digest>(), entry.metadata()) {
                    objects.push((digest, metadata.len()));
                }
            }
        }
        Ok(objects)
    }

    /// Removes temporary files that killed processes left in the shards
    /// (call only under the project lock). Returns how many were removed.
    pub fn remove_stale_temps(&self) -> Result<u64> {
        let mut removed = 0;
        let Ok(shards) = std::fs::read_dir(&self.objects) else {
            return Ok(0);
        };
        for shard in shards.flatten() {
            let Ok(entries) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.')
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Deletes an object.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.object_path(digest);
        std::fs::remove_file(&path).map_err(|error| DataError::io(path, error))
    }
}

/// Writes `bytes` into a new read-only file `temp` (the open descriptor
/// may still write it), fsyncs it when `durable`, and renames it over
/// `target`; returns the file's stat fields. On error `temp` is removed.
fn write_read_only(
    temp: &Path,
    target: &Path,
    bytes: &[u8],
    durable: bool,
) -> std::io::Result<FileStat> {
    let result = fsutil::create_read_only(temp, 0o444)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, bytes)?;
            if durable {
                file.sync_all()?;
            }
            file.metadata()
        })
        .and_then(|metadata| std::fs::rename(temp, target).map(|()| FileStat::of(&metadata)));
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_place_verify_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let source = dir.path().join("source");
        std::fs::write(&source, b"payload").unwrap();
        let digest = Digest::of_bytes(b"payload");
        assert!(
            cache
                .insert_file(&source, &digest, &[LinkKind::Copy])
                .unwrap()
                .is_some()
        );
        assert!(
            cache
                .insert_file(&source, &digest, &[LinkKind::Copy])
                .unwrap()
                .is_none()
        );
        assert_eq!(cache.verify(&digest).unwrap(), Verified::Good);
        let dest = dir.path().join("ws/deep/file");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let (kind, stat) = cache.place(&digest, &dest, &[LinkKind::Copy]).unwrap();
        assert_eq!(kind, LinkKind::Copy);
        assert_eq!(stat, FileStat::of(&std::fs::metadata(&dest).unwrap()));
        // Only the placed file is left in its folder (no temporary).
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1
        );
        let other = dir.path().join("ws/other");
        let stat = cache.place_bytes(&digest, b"payload", &other).unwrap();
        assert_eq!(stat, FileStat::of(&std::fs::metadata(&other).unwrap()));
        assert_eq!(std::fs::read(&other).unwrap(), b"payload");
        assert!(std::fs::metadata(&other).unwrap().permissions().readonly());
        assert_eq!(std::fs::read(&dest).unwrap(), b"payload");
        assert!(std::fs::metadata(&dest).unwrap().permissions().readonly());
        // Corrupt the object behind the cache's back.
        let object = cache.object_path(&digest);
        fsutil::make_writable(&object).unwrap();
        std::fs::write(&object, b"tampered").unwrap();
        assert_eq!(cache.verify(&digest).unwrap(), Verified::Corrupt);
        assert!(!cache.contains(&digest));
        assert_eq!(cache.verify(&digest).unwrap(), Verified::Missing);
        assert_eq!(cache.list().unwrap().len(), 0);
    }
}
