//! The content-addressed object cache of one project, `.keel/cache/`, and
//! the one owner of its layout: every reader and writer of objects goes
//! through [`Cache`], never through paths of its own. Objects live in two
//! forms:
//! - **loose**: one read-only file per object, `blake3/ab/cdef…`. `add`
//!   stores objects this way, large downloads too, and a hardlinked
//!   workspace file *is* a loose object;
//! - **packed**: small objects a fetch or pull downloaded in a remote pack
//!   are kept the way they came, as one file `packs/<H>.pack` plus its text
//!   index `packs/<H>.idx` (see [`crate::pack`]; `H` is the BLAKE3 of the
//!   pack), instead of one file each: creating 20,000 files is what a pull
//!   of 20,000 small files spends most of its time on.
//!
//! Lookups try the loose file first, then the packs (their indexes are
//! read once per process, on first use). A hardlink needs a whole file, so
//! a packed object that is to be hardlinked is first materialized as a
//! loose object (verified), see [`Cache::loose_path`].
//!
//! Objects are immutable and read-only; they enter through a hardlink of a
//! complete file or a temp file renamed into place, so a killed process
//! never leaves a partial object under its final name. A pack is written to
//! a temporary file, fsynced and renamed, then its index the same way: an
//! index is never visible before its whole pack, and a pack without an
//! index is ignored (`gc --force` removes it). Objects are verified against
//! their digest before they are placed in the workspace, whether read from
//! a loose file or a pack slice; a corrupt loose object is moved to
//! `.keel/quarantine/`, and a pack holding a corrupt object is too, after
//! its good objects were copied out as loose ones (salvaged), so a later
//! fetch can bring a good copy of the bad one.
//!
//! Durability (fsync where a copy would otherwise be the only one): a loose
//! object entering the cache always has another copy at that moment (the
//! workspace file it was added from, or the remote it was fetched from), so
//! loose objects are not fsynced; packs and their indexes are (a handful of
//! fsyncs per pull), as are manifests, metafiles and the stat cache. A
//! power cut that leaves an object empty or short cannot make keel place or
//! push bad bytes, because every object is hashed again before use:
//! checkout quarantines it, push refuses it, and `add` or `fetch` brings a
//! good copy. The remote is where durability is paid for (see `remote`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::error::{DataError, Result};
use crate::fsutil;
use crate::hash::{self, Digest};
use crate::link::{self, LinkKind};
use crate::pack;
use crate::state::FileStat;

/// Folder of the local packs, next to the loose objects' folder.
const PACK_DIR: &str = "packs";

/// The object cache of one project.
#[derive(Debug)]
pub struct Cache {
    objects: PathBuf,
    packs_dir: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    shards_ready: OnceLock<()>,
    /// The local packs, read on first use.
    packs: RwLock<Option<PackSet>>,
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

/// The indexed local packs and where each packed object sits.
#[derive(Debug, Default)]
struct PackSet {
    packs: Vec<Arc<LocalPack>>,
    slots: HashMap<Digest, Slot>,
}

/// Where a packed object sits: index into [`PackSet::packs`], offset, size.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: usize,
    offset: u64,
    size: u64,
}

/// One local pack.
#[derive(Debug)]
struct LocalPack {
    /// The BLAKE3 of the pack's bytes, its file name.
    name: Digest,
    /// `packs/<H>.pack`.
    path: PathBuf,
    entries: Vec<pack::Entry>,
    /// Opened on first read and kept open.
    file: OnceLock<File>,
    /// Set once the pack was found corrupt and quarantined: the objects
    /// that did not hash to their names (the others were salvaged loose).
    condemned: OnceLock<Vec<Digest>>,
}

impl LocalPack {
    fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    fn file(&self) -> std::io::Result<&File> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let opened = File::open(&self.path)?;
        // Another thread may have opened it meanwhile; either file will do.
        let _ = self.file.set(opened);
        self.file
            .get()
            .ok_or_else(|| std::io::Error::other("pack file handle not kept"))
    }

    /// The bytes of one object (not verified).
    fn read(&self, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
        let length = usize::try_from(size).map_err(std::io::Error::other)?;
        let mut bytes = vec![0u8; length];
        self.file()?.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }

    /// The bytes of one object if they hash to `digest`; None when they do
    /// not (or the pack is shorter than its index says).
    fn read_verified(
        &self,
        offset: u64,
        size: u64,
        digest: &Digest,
    ) -> std::io::Result<Option<Vec<u8>>> {
        match self.read(offset, size) {
            Ok(bytes) => Ok((Digest::of_bytes(&bytes) == *digest).then_some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Where an object's bytes are found.
enum Found {
    Loose(PathBuf),
    Packed(Arc<LocalPack>, Slot),
}

/// The file that holds an object, as the stat cache tracks it: the loose
/// object itself, or the pack it sits in (whose bytes hash to the pack's
/// name). See [`Cache::holder`].
#[derive(Debug, Clone)]
pub struct Holder {
    /// The file.
    pub path: PathBuf,
    /// What the whole file hashes to when intact.
    pub digest: Digest,
    pack: Option<Arc<LocalPack>>,
}

impl Cache {
    /// The cache under a project's `.keel/` folder.
    pub fn new(keel_dir: &Path) -> Self {
        let root = keel_dir.join("cache");
        Cache {
            objects: root.join(hash::HASH_NAME),
            packs_dir: root.join(PACK_DIR),
            tmp: keel_dir.join("tmp"),
            quarantine: keel_dir.join("quarantine"),
            shards_ready: OnceLock::new(),
            packs: RwLock::new(None),
        }
    }

    /// Where a loose object lives (whether or not it is there). Private:
    /// an object may be packed instead, so readers ask the cache.
    fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// A name for an object in messages: its loose path.
    pub fn describe(&self, digest: &Digest) -> PathBuf {
        self.object_path(digest)
    }

    /// Runs `read` on the local packs, reading their indexes first if this
    /// is the first use.
    fn with_packs<R>(&self, read: impl FnOnce(&PackSet) -> R) -> R {
        {
            let guard = self.packs.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(set) = guard.as_ref() {
                return read(set);
            }
        }
        let mut guard = self.packs.write().unwrap_or_else(PoisonError::into_inner);
        read(guard.get_or_insert_with(|| self.load_packs()))
    }

    fn with_packs_mut<R>(&self, change: impl FnOnce(&mut PackSet) -> R) -> R {
        let mut guard = self.packs.write().unwrap_or_else(PoisonError::into_inner);
        change(guard.get_or_insert_with(|| self.load_packs()))
    }

    /// Reads every indexed pack's index. A pack without its index (a writer
    /// killed in between), an index without its pack, an index that does
    /// not parse or points past its pack's end are ignored: their objects
    /// count as absent, and a fetch brings them again.
    fn load_packs(&self) -> PackSet {
        let mut set = PackSet::default();
        let Ok(entries) = std::fs::read_dir(&self.packs_dir) else {
            return set;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".idx").map(str::to_string)
            })
            .collect();
        names.sort();
        for hex in names {
            let Ok(name) = hex.parse::<Digest>() else {
                continue;
            };
            let path = self.packs_dir.join(format!("{hex}.pack"));
            let index = self.packs_dir.join(format!("{hex}.idx"));
            let (Ok(metadata), Ok(text)) = (std::fs::metadata(&path), std::fs::read(&index)) else {
                continue;
            };
            let entries = match pack::parse_index(&text) {
                Ok(entries) => entries,
                Err((line, message)) => {
                    tracing::warn!("{}:{line}: {message}; pack ignored", index.display());
                    continue;
                }
            };
            let length = metadata.len();
            if entries
                .iter()
                .any(|(_, offset, size)| offset.checked_add(*size).is_none_or(|end| end > length))
            {
                tracing::warn!(
                    "{}: an entry points past the pack's end; pack ignored",
                    index.display()
                );
                continue;
            }
            set.add(LocalPack {
                name,
                path,
                entries,
                file: OnceLock::new(),
                condemned: OnceLock::new(),
            });
        }
        set
    }

    fn packed(&self, digest: &Digest) -> Option<(Arc<LocalPack>, Slot)> {
        self.with_packs(|set| {
            set.slots
                .get(digest)
                .map(|slot| (set.packs[slot.pack].clone(), *slot))
        })
    }

    /// The loose file if there is one, else the pack slot.
    fn find(&self, digest: &Digest) -> Option<Found> {
        let path = self.object_path(digest);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Some(Found::Loose(path));
        }
        self.packed(digest)
            .map(|(pack, slot)| Found::Packed(pack, slot))
    }

    /// Whether the object is present, loose or packed (not verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.find(digest).is_some()
    }

    /// The object's size, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        match self.find(digest)? {
            Found::Loose(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Found::Packed(_, slot) => Some(slot.size),
        }
    }

    /// The file that holds the object and what that whole file hashes to
    /// when intact, for the stat cache's trust (`Workspace::corrupt_objects`):
    /// a loose object is its own holder; a packed one is held by its pack.
    pub fn holder(&self, digest: &Digest) -> Option<Holder> {
        match self.find(digest)? {
            Found::Loose(path) => Some(Holder {
                path,
                digest: *digest,
                pack: None,
            }),
            Found::Packed(pack, _) => Some(Holder {
                path: pack.path.clone(),
                digest: pack.name,
                pack: Some(pack),
            }),
        }
    }

    /// Hashes a holder whole. Returns the objects found corrupt (empty when
    /// the holder is intact or gone): a corrupt loose object is quarantined;
    /// a corrupt pack is checked object by object, its good objects are
    /// stored loose and the pack is quarantined.
    pub fn check(&self, holder: &Holder) -> Result<Vec<Digest>> {
        let Some(pack) = &holder.pack else {
            return Ok(match self.verify_loose(&holder.digest)? {
                Verified::Corrupt => vec![holder.digest],
                Verified::Good | Verified::Missing => Vec::new(),
            });
        };
        match hash::hash_file(&pack.path) {
            Ok((actual, _)) if actual == pack.name => Ok(Vec::new()),
            Ok(_) => self.condemn(pack),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(DataError::io(&pack.path, error)),
        }
    }

    fn ensure_shards(&self) -> Result<()> {
        if self.shards_ready.get().is_some() {
            return Ok(());
        }
        for dir in [&self.tmp, &self.objects] {
            std::fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
        }
        // New shards go to little-used parts of the disk (see fsutil).
        fsutil::spread_subfolders(&self.objects);
        for byte in 0..=255u8 {
            let shard = self.objects.join(format!("{byte:02x}"));
            if shard.is_dir() {
                continue;
            }
            fsutil::create_spread_dir(&shard).map_err(|source| DataError::io(shard, source))?;
        }
        let _ = self.shards_ready.set(());
        Ok(())
    }

    /// Makes one shard folder as [`Cache::ensure_shards`] makes each.
    fn make_shard(&self, shard: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.objects)?;
        fsutil::spread_subfolders(&self.objects);
        fsutil::create_spread_dir(shard)
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
                && self.make_shard(shard).is_ok()
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
        if self.contains(digest) {
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

    /// Stores bytes (a manifest, a downloaded object) under their digest as
    /// a loose object: a read-only temp file, fsynced when `durable`,
    /// renamed into place. Nothing is written when the object is there.
    pub fn insert_bytes(&self, digest: &Digest, bytes: &[u8], durable: bool) -> Result<()> {
        self.ensure_shards()?;
        if self.contains(digest) {
            return Ok(());
        }
        self.write_loose(digest, bytes, durable)
    }

    fn write_loose(&self, digest: &Digest, bytes: &[u8], durable: bool) -> Result<()> {
        self.ensure_shards()?;
        let target = self.object_path(digest);
        let temp = self.temp_path(digest, "object")?;
        write_read_only(&temp, &target, bytes, durable)
            .map(|_| ())
            .map_err(|error| DataError::io(&target, error))
    }

    /// Stores verified objects (what a fetch just downloaded from one
    /// remote pack) as one local pack: the pack is written to a temporary
    /// file, fsynced and renamed, then its index the same way, so the
    /// objects become visible together and only whole. The caller has
    /// hashed every object; objects already in the cache are stored again
    /// (harmless: the first copy found is used).
    pub fn insert_pack(&self, objects: &[(Digest, &[u8])]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        // Read the existing packs first, so the new one is not found twice.
        self.with_packs(|_| ());
        let local = self.write_pack(objects)?;
        self.with_packs_mut(|set| set.add(local));
        Ok(())
    }

    fn write_pack(&self, objects: &[(Digest, &[u8])]) -> Result<LocalPack> {
        let dir = &self.packs_dir;
        std::fs::create_dir_all(dir).map_err(|error| DataError::io(dir, error))?;
        let mut layout = pack::Layout::default();
        for (digest, bytes) in objects {
            layout.push(*digest, bytes);
        }
        let (name, index, entries) = layout.finish();
        let path = dir.join(format!("{name}.pack"));
        let temp = fsutil::temp_path(dir, "pack");
        let written = fsutil::create_read_only(&temp, 0o444)
            .and_then(|mut file| {
                write_pieces(&mut file, objects)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temp, &path))
            // The pack's name must be durable before the index names it.
            .and_then(|()| keel_fs::sync_folder(dir));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(DataError::io(&path, error));
        }
        let index_path = path.with_extension("idx");
        fsutil::write_atomic(&index_path, index.as_bytes())?;
        Ok(LocalPack {
            name,
            path,
            entries,
            file: OnceLock::new(),
            condemned: OnceLock::new(),
        })
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

    /// An object's bytes, loose or packed, **not verified** (the caller
    /// hashes them, as a push does); None when absent.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        match self.find(digest) {
            None => Ok(None),
            Some(Found::Loose(path)) => match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(DataError::io(path, error)),
            },
            Some(Found::Packed(pack, slot)) => match pack.read(slot.offset, slot.size) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                // A short pack: bytes that cannot be the object's.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Ok(Some(Vec::new()))
                }
                Err(error) => Err(DataError::io(&pack.path, error)),
            },
        }
    }

    /// Reads a small object (a manifest) and checks its digest.
    pub fn read_verified(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        match self.read(digest)? {
            Some(bytes) if Digest::of_bytes(&bytes) == *digest => Ok(Some(bytes)),
            Some(_) => {
                self.quarantine(digest);
                Err(DataError::Invalid(format!(
                    "corrupt object {digest} in {} (content does not match its digest; moved to quarantine, fetch it again)",
                    self.objects.parent().unwrap_or(&self.objects).display()
                )))
            }
            None => Ok(None),
        }
    }

    /// Hashes the object (its loose file, else its pack slice) and
    /// compares; a corrupt object is quarantined (with its pack, see
    /// [`Cache::check`]).
    pub fn verify(&self, digest: &Digest) -> Result<Verified> {
        match self.find(digest) {
            None => Ok(Verified::Missing),
            Some(Found::Loose(_)) => self.verify_loose(digest),
            Some(Found::Packed(pack, slot)) => {
                match pack.read_verified(slot.offset, slot.size, digest) {
                    Ok(Some(_)) => Ok(Verified::Good),
                    Ok(None) => {
                        let corrupt = self.condemn(&pack)?;
                        Ok(if corrupt.contains(digest) {
                            Verified::Corrupt
                        } else {
                            Verified::Good
                        })
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        Ok(Verified::Missing)
                    }
                    Err(error) => Err(DataError::io(&pack.path, error)),
                }
            }
        }
    }

    fn verify_loose(&self, digest: &Digest) -> Result<Verified> {
        let path = self.object_path(digest);
        match hash::hash_file(&path) {
            Ok((actual, _)) if actual == *digest => Ok(Verified::Good),
            Ok(_) => {
                self.quarantine_loose(digest);
                Ok(Verified::Corrupt)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Verified::Missing),
            Err(error) => Err(DataError::io(path, error)),
        }
    }

    /// A corrupt object found by a reader: the loose file, else its pack.
    fn quarantine(&self, digest: &Digest) {
        match self.find(digest) {
            Some(Found::Loose(_)) => self.quarantine_loose(digest),
            Some(Found::Packed(pack, _)) => {
                let _ = self.condemn(&pack);
            }
            None => {}
        }
    }

    fn quarantine_loose(&self, digest: &Digest) {
        let _ = std::fs::create_dir_all(&self.quarantine);
        let _ = std::fs::rename(
            self.object_path(digest),
            self.quarantine.join(digest.to_hex()),
        );
    }

    /// Takes a pack found corrupt out of use, once (concurrent callers wait
    /// for the first): each object is hashed, the good ones are stored
    /// loose, then the index and the pack move to quarantine. Returns the
    /// objects that did not hash to their names.
    fn condemn(&self, pack: &Arc<LocalPack>) -> Result<Vec<Digest>> {
        let mut failure = None;
        let corrupt = pack.condemned.get_or_init(|| {
            let mut corrupt = Vec::new();
            for (digest, offset, size) in &pack.entries {
                match pack.read_verified(*offset, *size, digest) {
                    Ok(Some(bytes)) => {
                        if let Err(error) = self.write_loose(digest, &bytes, false) {
                            failure = Some(error);
                        }
                    }
                    Ok(None) | Err(_) => corrupt.push(*digest),
                }
            }
            if failure.is_some() {
                // Not every good object is safe elsewhere: keep the pack.
                return corrupt;
            }
            let _ = std::fs::create_dir_all(&self.quarantine);
            let hex = pack.name.to_hex();
            let _ = std::fs::rename(
                pack.index_path(),
                self.quarantine.join(format!("{hex}.idx")),
            );
            let _ = std::fs::rename(&pack.path, self.quarantine.join(format!("{hex}.pack")));
            self.with_packs_mut(|set| set.drop_pack(&pack.path));
            corrupt
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(corrupt.clone()),
        }
    }

    /// A loose copy of the object, for what needs a whole file of its own
    /// (a hardlink into the workspace, a file-based reader): the loose
    /// object itself, or a packed object verified and materialized loose.
    /// None when absent or corrupt (then quarantined).
    pub fn loose_path(&self, digest: &Digest) -> Result<Option<PathBuf>> {
        match self.find(digest) {
            None => Ok(None),
            Some(Found::Loose(path)) => Ok(Some(path)),
            Some(Found::Packed(pack, slot)) => {
                match pack.read_verified(slot.offset, slot.size, digest) {
                    Ok(Some(bytes)) => {
                        self.write_loose(digest, &bytes, false)?;
                        Ok(Some(self.object_path(digest)))
                    }
                    Ok(None) => {
                        // Salvages the pack's good objects; this one is not.
                        self.condemn(&pack)?;
                        Ok(None)
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(DataError::io(&pack.path, error)),
                }
            }
        }
    }

    /// Places an object at `dest` (replacing what is there) with the first
    /// link kind that works; copies are created read-only like the cache.
    /// `dest`'s folder must exist. Returns the kind and `dest`'s stat fields.
    /// The caller has verified the object ([`Cache::verify`]).
    ///
    /// A hardlink needs a loose object: a packed one is materialized first
    /// ([`Cache::loose_path`]). A packed object placed any other way is
    /// written as a copy of its pack slice (a reflink clones whole files).
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
        let hardlink = link::first_usable(kinds) == Some(LinkKind::Hardlink);
        let object = match self.find(digest) {
            Some(Found::Packed(pack, slot)) if !hardlink => {
                let bytes = pack
                    .read(slot.offset, slot.size)
                    .map_err(|error| DataError::io(&pack.path, error))?;
                return self
                    .place_bytes(digest, &bytes, dest)
                    .map(|stat| (LinkKind::Copy, stat));
            }
            Some(Found::Packed(..)) => self
                .loose_path(digest)?
                .unwrap_or_else(|| self.object_path(digest)),
            Some(Found::Loose(path)) => path,
            None => self.object_path(digest),
        };
        // Nothing at `dest` and hardlinks in use: link straight into place.
        if hardlink && std::fs::hard_link(&object, dest).is_ok() {
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
    /// download, a pack slice), at `dest` as a read-only copy, through a
    /// temporary file in the object's shard as [`Cache::place`] does.
    /// `dest`'s folder must exist.
    pub fn place_bytes(&self, digest: &Digest, bytes: &[u8], dest: &Path) -> Result<FileStat> {
        let temp = self.temp_path(digest, "place")?;
        write_read_only(&temp, dest, bytes, false).map_err(|error| DataError::io(dest, error))
    }

    /// Every object in the cache, loose or packed, with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut objects = Vec::new();
        let shards = match std::fs::read_dir(&self.objects) {
            Ok(shards) => Some(shards),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(DataError::io(&self.objects, error)),
        };
        for shard in shards.into_iter().flatten().flatten() {
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
        let loose: HashSet<Digest> = objects.iter().map(|(digest, _)| *digest).collect();
        self.with_packs(|set| {
            for (digest, slot) in &set.slots {
                if !loose.contains(digest) {
                    objects.push((*digest, slot.size));
                }
            }
        });
        Ok(objects)
    }

    /// Number of local packs in use.
    pub fn pack_count(&self) -> usize {
        self.with_packs(|set| {
            set.packs
                .iter()
                .enumerate()
                .filter(|(index, _)| set.slots.values().any(|slot| slot.pack == *index))
                .count()
        })
    }

    /// Removes temporary files and half-written packs that killed processes
    /// left (call only under the project lock): dot-files in the shards and
    /// the pack folder, a pack without its index, an index without its
    /// pack. Returns how many files were removed.
    pub fn remove_stale_temps(&self) -> Result<u64> {
        let mut removed = 0;
        let mut remove = |path: &Path| {
            if std::fs::remove_file(path).is_ok() {
                removed += 1;
            }
        };
        if let Ok(shards) = std::fs::read_dir(&self.objects) {
            for shard in shards.flatten() {
                let Ok(entries) = std::fs::read_dir(shard.path()) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with('.') {
                        remove(&entry.path());
                    }
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.packs_dir) {
            let names: HashSet<String> = entries
                .flatten()
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect();
            for name in &names {
                let partner = if let Some(stem) = name.strip_suffix(".pack") {
                    Some(format!("{stem}.idx"))
                } else {
                    name.strip_suffix(".idx").map(|stem| format!("{stem}.pack"))
                };
                let stale = name.starts_with('.')
                    || partner.is_some_and(|partner| !names.contains(&partner));
                if stale {
                    remove(&self.packs_dir.join(name));
                }
            }
        }
        Ok(removed)
    }

    /// Deletes objects. Loose ones are removed; a pack whose every object
    /// goes is removed (index first, so it never counts without its bytes),
    /// and a pack that keeps some is rewritten with only those (the new
    /// pack is complete before the old one goes). Packed objects kept are
    /// verified as they are copied; a corrupt one is left out.
    pub fn remove_all(&self, digests: &[Digest]) -> Result<()> {
        let doomed: HashSet<Digest> = digests.iter().copied().collect();
        for digest in &doomed {
            let path = self.object_path(digest);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(DataError::io(path, error)),
            }
        }
        let affected: Vec<Arc<LocalPack>> = self.with_packs(|set| {
            let mut seen = HashSet::new();
            doomed
                .iter()
                .filter_map(|digest| set.slots.get(digest))
                .filter(|slot| seen.insert(slot.pack))
                .map(|slot| set.packs[slot.pack].clone())
                .collect()
        });
        for pack in affected {
            let mut kept = Vec::new();
            for (digest, offset, size) in &pack.entries {
                if doomed.contains(digest) {
                    continue;
                }
                let read = pack.read_verified(*offset, *size, digest);
                if let Some(bytes) = read.map_err(|error| DataError::io(&pack.path, error))? {
                    kept.push((*digest, bytes));
                }
            }
            if !kept.is_empty() {
                let objects: Vec<(Digest, &[u8])> = kept
                    .iter()
                    .map(|(digest, bytes)| (*digest, bytes.as_slice()))
                    .collect();
                let rewritten = self.write_pack(&objects)?;
                if rewritten.path == pack.path {
                    continue; // nothing was left out after all
                }
                self.with_packs_mut(|set| set.add(rewritten));
            }
            let index = pack.index_path();
            for path in [&index, &pack.path] {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(DataError::io(path, error)),
                }
            }
            self.with_packs_mut(|set| set.drop_pack(&pack.path));
        }
        Ok(())
    }
}

impl PackSet {
    /// Adds a pack; its objects are found there from now on.
    fn add(&mut self, local: LocalPack) {
        let pack = self.packs.len();
        for (digest, offset, size) in &local.entries {
            self.slots.insert(
                *digest,
                Slot {
                    pack,
                    offset: *offset,
                    size: *size,
                },
            );
        }
        self.packs.push(Arc::new(local));
    }

    /// Forgets a pack (removed or quarantined).
    fn drop_pack(&mut self, path: &Path) {
        let gone: HashSet<usize> = self
            .packs
            .iter()
            .enumerate()
            .filter(|(_, pack)| pack.path == path)
            .map(|(index, _)| index)
            .collect();
        self.slots.retain(|_, slot| !gone.contains(&slot.pack));
    }
}

/// Writes the objects' bytes one after another, many per system call.
fn write_pieces(file: &mut File, objects: &[(Digest, &[u8])]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    for batch in objects.chunks(512) {
        let mut slices: Vec<IoSlice> = batch.iter().map(|(_, bytes)| IoSlice::new(bytes)).collect();
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let written = file.write_vectored(rest)?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
    }
    Ok(())
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

    fn pack_folder_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("cache/packs"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_pack_holds_many_objects_and_removal_rewrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        // More objects than one vectored write takes.
        let objects: Vec<Vec<u8>> = (0..1100)
            .map(|i| format!("object {i}").into_bytes())
            .collect();
        let pieces: Vec<(Digest, &[u8])> = objects
            .iter()
            .map(|bytes| (Digest::of_bytes(bytes), bytes.as_slice()))
            .collect();
        cache.insert_pack(&pieces).unwrap();
        let name = Digest::of_bytes(&objects.concat());
        assert_eq!(
            pack_folder_names(dir.path()),
            [format!("{name}.idx"), format!("{name}.pack")]
        );
        for (digest, bytes) in &pieces {
            assert_eq!(cache.read(digest).unwrap().unwrap(), *bytes);
        }
        let holder = cache.holder(&pieces[5].0).unwrap();
        assert_eq!(holder.digest, name);
        assert!(cache.check(&holder).unwrap().is_empty());
        // Another process reads the index from disk.
        let other = Cache::new(dir.path());
        assert_eq!(other.list().unwrap().len(), 1100);
        assert_eq!(other.verify(&pieces[1099].0).unwrap(), Verified::Good);
        assert_eq!(other.size(&pieces[1099].0), Some(11));
        let dest = dir.path().join("placed");
        let (kind, _) = other.place(&pieces[7].0, &dest, &[LinkKind::Copy]).unwrap();
        assert_eq!(kind, LinkKind::Copy);
        assert_eq!(std::fs::read(&dest).unwrap(), b"object 7");
        assert!(std::fs::metadata(&dest).unwrap().permissions().readonly());
        // Removing half rewrites the pack with the other half only.
        let (even, odd): (Vec<_>, Vec<_>) = pieces.iter().partition(|(digest, _)| {
            pieces.iter().position(|(d, _)| d == digest).unwrap() % 2 == 0
        });
        let doomed: Vec<Digest> = even.iter().map(|(digest, _)| *digest).collect();
        other.remove_all(&doomed).unwrap();
        assert!(!other.contains(&doomed[0]));
        assert_eq!(other.read(&odd[0].0).unwrap().unwrap(), odd[0].1);
        let fresh = Cache::new(dir.path());
        assert_eq!(fresh.list().unwrap().len(), 550);
        assert_eq!(fresh.pack_count(), 1);
        assert_eq!(
            pack_folder_names(dir.path()).len(),
            2,
            "the old pack is gone"
        );
        let rest: Vec<Digest> = odd.iter().map(|(digest, _)| *digest).collect();
        fresh.remove_all(&rest).unwrap();
        assert!(fresh.list().unwrap().is_empty());
        assert!(pack_folder_names(dir.path()).is_empty());
    }

    #[test]
    fn half_written_packs_are_ignored_then_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache
            .insert_pack(&[(Digest::of_bytes(b"kept"), b"kept".as_slice())])
            .unwrap();
        let packs = dir.path().join("cache/packs");
        let orphan = Digest::of_bytes(b"orphan");
        std::fs::write(packs.join(format!("{orphan}.pack")), b"orphan").unwrap();
        let lonely = Digest::of_bytes(b"lonely");
        let index = format!("{}\n{lonely} 0 6\n", pack::HEADER);
        std::fs::write(packs.join(format!("{lonely}.idx")), index).unwrap();
        std::fs::write(packs.join(".pack.keel-tmp-1-0"), b"half").unwrap();
        let other = Cache::new(dir.path());
        assert_eq!(other.list().unwrap().len(), 1, "only the whole pack counts");
        assert!(!other.contains(&lonely));
        assert_eq!(other.remove_stale_temps().unwrap(), 3);
        assert_eq!(pack_folder_names(dir.path()).len(), 2);
        assert!(Cache::new(dir.path()).contains(&Digest::of_bytes(b"kept")));
    }
}
