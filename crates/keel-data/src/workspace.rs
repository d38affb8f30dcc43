//! The working tree side: finding tracked paths, scanning them, hashing what
//! the stat cache cannot vouch for, and the `add`, `status` and `checkout`
//! operations. A [`Workspace`] holds the project lock for its lifetime.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rayon::prelude::*;

use crate::cache::{Cache, Holder, Verified};
use crate::error::{DataError, Result};
use crate::fsutil;
use crate::hash::{self, Digest};
use crate::link::LinkKind;
use crate::manifest::{Manifest, ManifestEntry};
use crate::metafile::{self, Kind, Metafile};
use crate::progress;
use crate::project::{Config, Project, ProjectLock};
use crate::state::{FileStat, StatCache};

/// How a command wants the workspace opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Link order for this command (overrides the config).
    pub link: Option<Vec<LinkKind>>,
    /// Draw progress bars.
    pub progress: bool,
    /// How long to wait for another keel process's lock.
    pub lock_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            link: None,
            progress: false,
            lock_wait: Duration::from_secs(10),
        }
    }
}

/// A tracked path and its metafile.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Project-relative path of the data.
    pub path: String,
    /// Project-relative path of the metafile (`path` + `.keel`).
    pub metafile_path: String,
    /// The metafile's content.
    pub metafile: Metafile,
}

/// One file found in the workspace.
#[derive(Debug, Clone)]
struct Present {
    /// Relative to the tracked path ("" for a tracked file).
    rel: String,
    abs: PathBuf,
    stat: FileStat,
    mode: u32,
}

/// What is on disk where a tracked path should be.
enum Scan {
    Files(Vec<Present>),
    WrongKind,
}

/// How one file differs from its metafile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// In the workspace, not in the metafile.
    Added,
    /// In the metafile, not in the workspace.
    Deleted,
    /// Content differs.
    Modified,
}

impl Change {
    /// Lower-case word for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Deleted => "deleted",
            Change::Modified => "modified",
        }
    }
}

/// Status of one tracked path.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// Project-relative tracked path.
    pub path: String,
    /// File or directory.
    pub kind: Kind,
    /// Changed files (project-relative), sorted.
    pub changes: Vec<(String, Change)>,
    /// Something that prevents a comparison (e.g. a manifest not in the
    /// cache), or a cache object found corrupt.
    pub problem: Option<String>,
}

impl TargetStatus {
    /// Nothing changed and nothing prevented the check.
    pub fn is_clean(&self) -> bool {
        self.changes.is_empty() && self.problem.is_none()
    }
}

/// Result of `add` for one path.
#[derive(Debug, Clone)]
pub struct AddOutcome {
    /// The tracked path and its new metafile.
    pub tracked: Tracked,
    /// Files hashed (the rest came from the stat cache).
    pub hashed_files: u64,
    /// Bytes hashed.
    pub hashed_bytes: u64,
    /// Objects newly stored in the cache.
    pub new_objects: u64,
    /// Cache objects found corrupt (content not matching their digest),
    /// quarantined and stored again from the workspace file.
    pub repaired_objects: u64,
    /// How new objects entered the cache.
    pub link: Option<LinkKind>,
}

/// Result of `checkout`.
#[derive(Debug, Clone, Default)]
pub struct CheckoutReport {
    /// Files written into the workspace.
    pub placed: u64,
    /// Files already right.
    pub unchanged: u64,
    /// Extra files removed (their content is safe in the cache).
    pub removed: u64,
    /// Workspace paths whose cache object failed verification (not placed).
    pub corrupt: Vec<(String, Digest)>,
    /// Workspace paths whose object is not in the cache.
    pub missing: Vec<(String, Digest)>,
    /// Paths with uncached local changes that were left alone (use force).
    pub conflicts: Vec<String>,
    /// Tracked paths that could not be checked out at all, with the reason.
    pub problems: Vec<String>,
    /// How files were placed.
    pub link: Option<LinkKind>,
}

impl CheckoutReport {
    /// True when every tracked file is now in place.
    pub fn is_complete(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.conflicts.is_empty()
            && self.problems.is_empty()
    }
}

/// A test's hook into `add` (see `Workspace::after_hash`).
#[cfg(test)]
type AfterHash = Box<dyn Fn(&Path) + Send + Sync>;

/// The project's workspace, cache and stat cache, under the project lock.
pub struct Workspace {
    project: Project,
    config: Config,
    cache: Cache,
    stat: StatCache,
    link: Vec<LinkKind>,
    progress: bool,
    /// Objects already hashed by this process (e.g. while downloading).
    verified: HashSet<Digest>,
    /// Tests: runs in `add` once the files are hashed, before anything is
    /// stored (to change a file at the worst moment).
    #[cfg(test)]
    after_hash: Option<AfterHash>,
    _lock: Option<ProjectLock>,
}

impl Workspace {
    /// Opens the workspace and takes the project lock.
    pub fn open(project: Project, options: &Options) -> Result<Self> {
        let lock = project.lock(options.lock_wait)?;
        Self::build(project, options, Some(lock))
    }

    /// Opens without the lock, for commands that only read (ls, diff).
    pub fn open_read_only(project: Project, options: &Options) -> Result<Self> {
        Self::build(project, options, None)
    }

    fn build(project: Project, options: &Options, lock: Option<ProjectLock>) -> Result<Self> {
        let config = project.config()?;
        let keel = project.keel_dir();
        // An order given for this command is used as given; the configured
        // one loses `hardlink` where read-only modes do not protect the cache.
        let link = match &options.link {
            Some(explicit) => explicit.clone(),
            None => crate::link::safe_order(&config.link, &keel.join("tmp")),
        };
        Ok(Workspace {
            cache: Cache::new(&keel),
            stat: StatCache::load(&keel.join("state").join("stat-cache")),
            project,
            config,
            link,
            progress: options.progress,
            verified: HashSet::new(),
            #[cfg(test)]
            after_hash: None,
            _lock: lock,
        })
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The project's configuration as loaded.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The object cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether progress bars are drawn.
    pub fn progress(&self) -> bool {
        self.progress
    }

    /// Records objects this process has just verified (fetched and hashed),
    /// so checkout does not hash them again.
    /// They are recorded in the stat cache too, so that a later `status`
    /// trusts them without hashing them again.
    pub fn mark_verified(&mut self, digests: impl IntoIterator<Item = Digest>) {
        // Objects of one pack share its stat-cache entry: record it once.
        let mut recorded = HashSet::new();
        for digest in digests {
            if let Some(holder) = self.cache.holder(&digest)
                && recorded.insert(holder.path.clone())
            {
                self.record_holder(&holder);
            }
            self.verified.insert(digest);
        }
    }

    /// The link order in force.
    pub fn link_order(&self) -> &[LinkKind] {
        &self.link
    }

    /// Tracked paths: the given project-relative targets (a data path or its
    /// metafile), or every metafile in the project when `targets` is empty.
    pub fn tracked(&self, targets: &[String]) -> Result<Vec<Tracked>> {
        let metafiles = if targets.is_empty() {
            find_metafiles(self.project.root())?
        } else {
            let mut metafiles = Vec::new();
            for target in targets {
                let data = target.strip_suffix(metafile::SUFFIX).unwrap_or(target);
                let metafile_path = format!("{data}{}", metafile::SUFFIX);
                if !self.project.abs(&metafile_path).is_file() {
                    return Err(DataError::NotTracked(PathBuf::from(data)));
                }
                metafiles.push(metafile_path);
            }
            metafiles
        };
        metafiles
            .into_iter()
            .map(|metafile_path| self.read_tracked(metafile_path))
            .collect()
    }

    fn read_tracked(&self, metafile_path: String) -> Result<Tracked> {
        let abs = self.project.abs(&metafile_path);
        let metafile = Metafile::read(&abs)?;
        let data = metafile_path
            .strip_suffix(metafile::SUFFIX)
            .unwrap_or(&metafile_path);
        let expected_name = data.rsplit('/').next().unwrap_or(data);
        if metafile.path != expected_name {
            return Err(DataError::Parse {
                path: abs,
                line: 0,
                message: format!(
                    "path `{}` does not match the metafile's name (expected `{expected_name}`)",
                    metafile.path
                ),
            });
        }
        Ok(Tracked {
            path: data.to_string(),
            metafile_path,
            metafile,
        })
    }

    /// The files a metafile describes; None when a directory's manifest is
    /// not in the cache. A tracked file is one entry with an empty path.
    pub fn expected_entries(&self, metafile: &Metafile) -> Result<Option<Vec<ManifestEntry>>> {
        match metafile.kind {
            Kind::File => Ok(Some(vec![ManifestEntry {
                path: String::new(),
                digest: metafile.digest,
                size: metafile.size,
            }])),
            Kind::Directory => self
                .manifest(&metafile.digest)
                .map(|manifest| manifest.map(|manifest| manifest.entries)),
        }
    }

    /// Loads and verifies a manifest object from the cache.
    pub fn manifest(&self, digest: &Digest) -> Result<Option<Manifest>> {
        match self.cache.read_verified(digest)? {
            Some(bytes) => Manifest::parse(&bytes, &self.cache.describe(digest)).map(Some),
            None => Ok(None),
        }
    }

    fn scan(&self, path: &str, kind: Kind) -> Result<Scan> {
        let abs = self.project.abs(path);
        let metadata = match std::fs::symlink_metadata(&abs) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Scan::Files(Vec::new()));
            }
            Err(error) => return Err(DataError::io(&abs, error)),
        };
        match kind {
            Kind::File if metadata.is_file() => Ok(Scan::Files(vec![Present {
                rel: String::new(),
                stat: FileStat::of(&metadata),
                mode: metadata.permissions().mode(),
                abs,
            }])),
            Kind::Directory if metadata.is_dir() => {
                let mut files = Vec::new();
                walk(&abs, "", &mut files)?;
                Ok(Scan::Files(files))
            }
            _ => Ok(Scan::WrongKind),
        }
    }

    /// Digests for `files` (where `wanted`), from the stat cache or by
    /// hashing in parallel. Hashed files are recorded in the stat cache.
    fn digests(
        &mut self,
        base: &str,
        files: &[Present],
        wanted: &[bool],
    ) -> Result<(Vec<Option<Digest>>, u64, u64)> {
        cached_digests(&mut self.stat, self.progress, base, files, wanted)
    }

    /// `keel data add`: hashes the paths, stores new objects, writes the
    /// metafiles and git-ignores the data.
    pub fn add(&mut self, paths: &[String]) -> Result<Vec<AddOutcome>> {
        let mut outcomes = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            outcomes.push(self.add_one(path, index + 1 == paths.len())?);
        }
        self.stat.save()?;
        Ok(outcomes)
    }

    /// Adds one path. With `last`, the stat cache is saved while this path's
    /// metafile and `.gitignore` are written (three independent atomic
    /// writes whose fsyncs then wait together, not one after another).
    fn add_one(&mut self, path: &str, last: bool) -> Result<AddOutcome> {
        let abs = self.project.abs(path);
        if path.ends_with(metafile::SUFFIX) {
            return Err(DataError::Unsupported {
                path: abs,
                reason: "this is a keel metafile; add the data path instead".into(),
            });
        }
        let mut ancestor = path;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if self
                .project
                .abs(&format!("{parent}{}", metafile::SUFFIX))
                .is_file()
            {
                return Err(DataError::Unsupported {
                    path: abs,
                    reason: format!(
                        "inside the tracked directory `{parent}`; add `{parent}` again instead"
                    ),
                });
            }
            ancestor = parent;
        }
        let metadata = std::fs::symlink_metadata(&abs).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => DataError::NotFound(abs.clone()),
            _ => DataError::io(&abs, error),
        })?;
        // Whether git tracks the path is asked while the files are hashed
        // (a `git` process of a few milliseconds), and answered before
        // anything is stored.
        let in_git = {
            let (root, path) = (self.project.root().to_path_buf(), path.to_string());
            std::thread::spawn(move || crate::git::tracked_files(&root, &path))
        };
        let kind = if metadata.is_file() {
            Kind::File
        } else if metadata.is_dir() {
            Kind::Directory
        } else {
            return Err(DataError::Unsupported {
                path: abs,
                reason:
                    "only regular files and directories can be tracked (not symlinks or devices)"
                        .into(),
            });
        };
        let Scan::Files(files) = self.scan(path, kind)? else {
            return Err(DataError::Invalid(format!(
                "{}: changed while being added",
                abs.display()
            )));
        };
        if let Some(nested) = files
            .iter()
            .find(|file| file.rel.ends_with(metafile::SUFFIX))
        {
            return Err(DataError::Unsupported { path: nested.abs.clone(), reason: "a keel metafile inside a directory being added (nested tracking is not supported)".into() });
        }
        // Large files that must be copied into the cache (no hardlink or
        // reflink here) are hashed while they are copied: one pass over
        // their bytes instead of a hash and then a copy.
        let mut wanted = vec![true; files.len()];
        let mut copied_in: HashMap<usize, PathBuf> = HashMap::new();
        let mut early = vec![None; files.len()];
        let (mut copied_files, mut copied_bytes) = (0, 0);
        if self.copies_into_cache() {
            for (index, file) in files.iter().enumerate() {
                let key = join(path, &file.rel);
                if file.stat.size < hash::LARGE_FILE || self.stat.lookup(&key, &file.stat).is_some()
                {
                    continue;
                }
                let (digest, temp, after) = self.cache.copy_in(&file.abs)?;
                if after != file.stat {
                    let _ = std::fs::remove_file(&temp);
                    return Err(DataError::Invalid(format!(
                        "{}: changed while being added",
                        file.abs.display()
                    )));
                }
                self.stat.record(&key, file.stat, digest, false);
                early[index] = Some(digest);
                wanted[index] = false;
                copied_in.insert(index, temp);
                copied_files += 1;
                copied_bytes += file.stat.size;
            }
        }
        let (mut digests, hashed_files, hashed_bytes) = self.digests(path, &files, &wanted)?;
        for (digest, known) in digests.iter_mut().zip(early) {
            if known.is_some() {
                *digest = known;
            }
        }
        let (hashed_files, hashed_bytes) =
            (hashed_files + copied_files, hashed_bytes + copied_bytes);
        #[cfg(test)]
        if let Some(hook) = &self.after_hash {
            hook(&abs);
        }
        let in_git = in_git.join().unwrap_or_default();
        if let Some(example) = in_git.first() {
            for temp in copied_in.values() {
                let _ = std::fs::remove_file(temp);
            }
            return Err(DataError::TrackedByGit {
                path: path.to_string(),
                count: in_git.len(),
                example: example.clone(),
            });
        }
        // Store objects: one per distinct digest, in parallel.
        let mut first_of: HashMap<Digest, usize> = HashMap::new();
        for (index, digest) in digests.iter().enumerate() {
            if let Some(digest) = digest {
                first_of.entry(*digest).or_insert(index);
            }
        }
        // An object already in the cache may have been corrupted behind
        // keel's back: check it (the stat cache vouches for unchanged ones),
        // quarantine a bad one, and store it again from this file below.
        let repaired = self.corrupt_objects(first_of.keys().copied())?;
        let used_link = Mutex::new(None);
        let link = self.link.clone();
        let cache = &self.cache;
        let bar = progress::count_bar(self.progress, first_of.len() as u64, "caching");
        let inserted: Vec<(usize, Result<Option<LinkKind>>)> = first_of
            .par_iter()
            .map(|(digest, &index)| {
                let result = match copied_in.get(&index) {
                    Some(_) if cache.contains(digest) => Ok(None),
                    Some(temp) => cache
                        .insert_temp(temp, digest)
                        .map(|()| Some(LinkKind::Copy)),
                    None => cache.insert_file(&files[index].abs, digest, &link),
                };
                bar.inc(1);
                (index, result)
            })
            .collect();
        bar.finish_and_clear();
        // Copies not needed (the object was there, or a second file with the
        // same bytes); stored ones were renamed away.
        for temp in copied_in.values() {
            let _ = std::fs::remove_file(temp);
        }
        let mut errors = Vec::new();
        let mut new_objects = 0u64;
        // Files hardlinked into the cache share its inode, already read-only.
        let mut protected = vec![false; files.len()];
        let digest_of: HashMap<usize, Digest> = first_of
            .iter()
            .map(|(digest, index)| (*index, *digest))
            .collect();
        for (index, result) in inserted {
            match result {
                Ok(Some(kind)) => {
                    new_objects += 1;
                    let Some(digest) = digest_of.get(&index) else {
                        continue;
                    };
                    if kind == LinkKind::Hardlink {
                        // The object is the workspace file's inode: it must
                        // still be the file that was scanned and hashed (same
                        // inode, size and mtime), or the object's bytes may
                        // not be its digest's.
                        let Some(holder) = self.cache.holder(digest) else {
                            continue;
                        };
                        let linked = std::fs::symlink_metadata(&holder.path)
                            .map(|metadata| FileStat::of(&metadata))
                            .ok();
                        if linked != Some(files[index].stat) {
                            unstore_changed(&holder.path, &files[index]);
                            errors.push(DataError::Invalid(format!(
                                "{}: changed while being added",
                                files[index].abs.display()
                            )));
                            continue;
                        }
                        // Its mtime is the user's: trusted only outside the
                        // stat cache's racy window, as the workspace file is.
                        if !crate::state::is_racy(&files[index].stat) {
                            self.record_object(digest);
                        }
                    } else {
                        // keel just wrote these bytes under their digest.
                        self.record_object(digest);
                    }
                    protected[index] = kind == LinkKind::Hardlink;
                    if let Ok(mut used) = used_link.lock() {
                        used.get_or_insert(kind);
                    }
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        if let Some(error) = DataError::many(errors) {
            return Err(error);
        }
        // Protect the workspace copies from in-place edits.
        let errors: Vec<DataError> = files
            .par_iter()
            .enumerate()
            .filter(|(index, file)| !protected[*index] && file.mode & 0o222 != 0)
            .filter_map(|(_, file)| {
                fsutil::make_read_only(&file.abs)
                    .err()
                    .map(|error| DataError::io(&file.abs, error))
            })
            .collect();
        if let Some(error) = DataError::many(errors) {
            return Err(error);
        }
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let metafile = match kind {
            Kind::File => {
                let digest = digests
                    .first()
                    .copied()
                    .flatten()
                    .ok_or_else(|| DataError::NotFound(abs.clone()))?;
                Metafile {
                    path: name,
                    kind,
                    digest,
                    size: files[0].stat.size,
                    files: 1,
                }
            }
            Kind::Directory => {
                let entries = files
                    .iter()
                    .zip(&digests)
                    .filter_map(|(file, digest)| {
                        digest.map(|digest| ManifestEntry {
                            path: file.rel.clone(),
                            digest,
                            size: file.stat.size,
                        })
                    })
                    .collect();
                let manifest = Manifest::new(entries);
                let (digest, bytes) = manifest.digest();
                self.cache.insert_bytes(&digest, &bytes, true)?;
                Metafile {
                    path: name,
                    kind,
                    digest,
                    size: manifest.size(),
                    files: manifest.entries.len() as u64,
                }
            }
        };
        let metafile_path = format!("{path}{}", metafile::SUFFIX);
        // The metafile, the `.gitignore` line and (for the last path) the
        // stat cache are independent atomic writes, each with its own fsyncs
        // (the objects they refer to are all in place): in parallel.
        let (project, stat) = (&self.project, &mut self.stat);
        let rendered = metafile.render();
        let (written, ignored, saved) = std::thread::scope(|scope| {
            let ignored = scope.spawn(|| ensure_gitignored(project, path));
            let saved = last.then(|| scope.spawn(|| stat.save()));
            let written = fsutil::write_atomic(&project.abs(&metafile_path), rendered.as_bytes());
            let join = |result: std::thread::Result<Result<()>>| {
                result
                    .unwrap_or_else(|_| Err(DataError::Invalid("a writing thread panicked".into())))
            };
            (
                written,
                join(ignored.join()),
                saved.map_or(Ok(()), |saved| join(saved.join())),
            )
        });
        written.and(ignored).and(saved)?;
        let link = used_link.into_inner().ok().flatten();
        Ok(AddOutcome {
            tracked: Tracked {
                path: path.to_string(),
                metafile_path,
                metafile,
            },
            hashed_files,
            hashed_bytes,
            new_objects,
            repaired_objects: repaired.len() as u64,
            link,
        })
    }

    /// Whether storing a file in the cache, or placing one from it, means
    /// copying its bytes (neither a hardlink nor a reflink is usable here).
    fn copies_into_cache(&self) -> bool {
        self.first_usable_link() == Some(LinkKind::Copy)
    }

    /// The link kind the next placement will use (reflink probed first).
    fn first_usable_link(&self) -> Option<LinkKind> {
        if self.link.contains(&LinkKind::Reflink) {
            crate::link::probe_reflink(&self.project.keel_dir().join("tmp"));
        }
        crate::link::first_usable(&self.link)
    }

    /// Whether placing an object links it (the workspace file *is* the
    /// cache object), which needs the object as a loose file of its own,
    /// not a slice of a pack.
    pub fn hardlinks_objects(&self) -> bool {
        self.first_usable_link() == Some(LinkKind::Hardlink)
    }

    /// The stat-cache key of a cache file (project-relative, under `.keel/`).
    fn cache_key(&self, path: &Path) -> String {
        path.strip_prefix(self.project.root())
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Records a cache object keel has just written as good in the stat
    /// cache (for a packed object, its pack).
    fn record_object(&mut self, digest: &Digest) {
        if let Some(holder) = self.cache.holder(digest) {
            self.record_holder(&holder);
        }
    }

    fn record_holder(&mut self, holder: &Holder) {
        let key = self.cache_key(&holder.path);
        if let Ok(metadata) = std::fs::symlink_metadata(&holder.path) {
            self.stat
                .record(&key, FileStat::of(&metadata), holder.digest, true);
        }
    }

    /// Checks the cache objects of `digests` against their names, as dvc
    /// checks its cache through its state database: a holder (the loose
    /// object, or the pack a packed object sits in) unchanged (size, mtime,
    /// inode) since it was last found good is trusted, any other is hashed
    /// whole (in parallel). Corrupt objects among `digests` are returned
    /// (quarantined, see [`Cache::check`]); missing ones are not corruption.
    fn corrupt_objects(
        &mut self,
        digests: impl IntoIterator<Item = Digest>,
    ) -> Result<Vec<Digest>> {
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        let mut asked = HashSet::new();
        for digest in digests {
            if !asked.insert(digest) || self.verified.contains(&digest) {
                continue;
            }
            let Some(holder) = self.cache.holder(&digest) else {
                continue;
            };
            if !seen.insert(holder.path.clone()) {
                continue;
            }
            let Ok(metadata) = std::fs::symlink_metadata(&holder.path) else {
                continue;
            };
            let stat = FileStat::of(&metadata);
            let key = self.cache_key(&holder.path);
            if self.stat.lookup(&key, &stat) != Some(holder.digest) {
                unknown.push((holder, key, stat));
            }
        }
        let cache = &self.cache;
        let verdicts: Vec<Result<Vec<Digest>>> = unknown
            .par_iter()
            .map(|(holder, _, _)| cache.check(holder))
            .collect();
        let mut corrupt = Vec::new();
        for ((holder, key, stat), verdict) in unknown.into_iter().zip(verdicts) {
            let found = verdict?;
            if found.is_empty() {
                self.stat.record(&key, stat, holder.digest, false);
            } else {
                self.stat.forget(&key);
                corrupt.extend(found.into_iter().filter(|digest| asked.contains(digest)));
            }
        }
        corrupt.sort();
        corrupt.dedup();
        Ok(corrupt)
    }

    /// `keel data status`: how the workspace differs from the metafiles.
    pub fn status(&mut self, targets: &[String]) -> Result<Vec<TargetStatus>> {
        let mut statuses = Vec::new();
        for tracked in self.tracked(targets)? {
            statuses.push(self.status_one(&tracked)?);
        }
        self.stat.save()?;
        Ok(statuses)
    }

    fn status_one(&mut self, tracked: &Tracked) -> Result<TargetStatus> {
        let mut status = TargetStatus {
            path: tracked.path.clone(),
            kind: tracked.metafile.kind,
            changes: Vec::new(),
            problem: None,
        };
        let Some(expected) = self.expected_entries(&tracked.metafile)? else {
            status.problem = Some(format!(
                "manifest {} is not in the cache (run `keel data fetch`)",
                tracked.metafile.digest
            ));
            return Ok(status);
        };
        let files = match self.scan(&tracked.path, tracked.metafile.kind)? {
            Scan::Files(files) => files,
            Scan::WrongKind => {
                status.problem = Some(format!(
                    "expected a {}, found something else",
                    tracked.metafile.kind.as_str()
                ));
                return Ok(status);
            }
        };
        if files.is_empty() && !expected.is_empty() {
            status.changes.push((tracked.path.clone(), Change::Deleted));
            return Ok(status);
        }
        let comparison = self.compare(&tracked.path, &expected, &files)?;
        for (rel, change) in comparison.changes {
            status.changes.push((join(&tracked.path, &rel), change));
        }
        status.changes.sort();
        let corrupt = self.corrupt_objects(expected.iter().map(|entry| entry.digest))?;
        if !corrupt.is_empty() {
            let paths: Vec<String> = expected
                .iter()
                .filter(|entry| corrupt.binary_search(&entry.digest).is_ok())
                .map(|entry| join(&tracked.path, &entry.path))
                .collect();
            status.problem = Some(format!(
                "corrupt cache object for {} (its content does not match its digest; moved to .keel/quarantine): \
                 `keel data add {}` stores the workspace copy again, `keel data fetch` brings the remote's",
                paths.join(", "),
                tracked.path
            ));
        }
        Ok(status)
    }

    fn compare(
        &mut self,
        base: &str,
        expected: &[ManifestEntry],
        files: &[Present],
    ) -> Result<Comparison> {
        let by_rel: HashMap<&str, usize> = files
            .iter()
            .enumerate()
            .map(|(index, file)| (file.rel.as_str(), index))
            .collect();
        let mut wanted = vec![false; files.len()];
        let mut matched = vec![None; expected.len()];
        for (entry_index, entry) in expected.iter().enumerate() {
            if let Some(&index) = by_rel.get(entry.path.as_str()) {
                matched[entry_index] = Some(index);
                wanted[index] = files[index].stat.size == entry.size;
            }
        }
        let (digests, _, _) = self.digests(base, files, &wanted)?;
        let mut comparison = Comparison::default();
        let mut seen = vec![false; files.len()];
        for (entry_index, entry) in expected.iter().enumerate() {
            match matched[entry_index] {
                None => comparison
                    .changes
                    .push((entry.path.clone(), Change::Deleted)),
                Some(index) => {
                    seen[index] = true;
                    if digests[index] == Some(entry.digest) {
                        comparison.same += 1;
                    } else {
                        comparison
                            .changes
                            .push((entry.path.clone(), Change::Modified));
                    }
                }
            }
        }
        for (index, file) in files.iter().enumerate() {
            if !seen[index] {
                comparison.changes.push((file.rel.clone(), Change::Added));
            }
        }
        Ok(comparison)
    }

    /// `keel data checkout`: makes the workspace match the metafiles. Every
    /// object is verified before it is placed; corrupt and missing objects
    /// are reported and left out. Local changes whose content is not in the
    /// cache are kept unless `force`.
    pub fn checkout(&mut self, targets: &[String], force: bool) -> Result<CheckoutReport> {
        self.checkout_from(targets, force, &HashMap::new())
    }

    /// [`Workspace::checkout`] with some objects' verified bytes already in
    /// memory (what a pull just downloaded): where files are copies anyway,
    /// those are written from memory instead of copied from the cache.
    pub fn checkout_from(
        &mut self,
        targets: &[String],
        force: bool,
        in_memory: &HashMap<Digest, bytes::Bytes>,
    ) -> Result<CheckoutReport> {
        let mut report = CheckoutReport::default();
        let in_memory = if in_memory.is_empty() || !self.copies_into_cache() {
            &HashMap::new()
        } else {
            in_memory
        };
        for tracked in self.tracked(targets)? {
            self.checkout_one(&tracked, force, in_memory, &mut report)?;
        }
        self.stat.save()?;
        Ok(report)
    }

    fn checkout_one(
        &mut self,
        tracked: &Tracked,
        force: bool,
        in_memory: &HashMap<Digest, bytes::Bytes>,
        report: &mut CheckoutReport,
    ) -> Result<()> {
        let Some(expected) = self.expected_entries(&tracked.metafile)? else {
            report.problems.push(format!(
                "{}: manifest {} is not in the cache (run `keel data pull`)",
                tracked.path, tracked.metafile.digest
            ));
            return Ok(());
        };
        let abs = self.project.abs(&tracked.path);
        let files = match self.scan(&tracked.path, tracked.metafile.kind)? {
            Scan::Files(files) => files,
            Scan::WrongKind if force => {
                let metadata =
                    std::fs::symlink_metadata(&abs).map_err(|error| DataError::io(&abs, error))?;
                let removed = if metadata.is_dir() {
                    std::fs::remove_dir_all(&abs)
                } else {
                    std::fs::remove_file(&abs)
                };
                removed.map_err(|error| DataError::io(&abs, error))?;
                Vec::new()
            }
            Scan::WrongKind => {
                report.conflicts.push(format!(
                    "{} (expected a {}; use --force to replace it)",
                    tracked.path,
                    tracked.metafile.kind.as_str()
                ));
                return Ok(());
            }
        };
        let comparison = self.compare(&tracked.path, &expected, &files)?;
        report.unchanged += comparison.same;
        let by_rel: HashMap<&str, &Present> =
            files.iter().map(|file| (file.rel.as_str(), file)).collect();
        let expected_by_rel: HashMap<&str, &ManifestEntry> = expected
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        // Changed or extra local files are safe to replace only if their content is cached.
        let local: Vec<Present> = comparison
            .changes
            .iter()
            .filter(|(_, change)| *change != Change::Deleted)
            .filter_map(|(rel, _)| by_rel.get(rel.as_str()).map(|file| (*file).clone()))
            .collect();
        let mut unsafe_paths = HashSet::new();
        if !force && !local.is_empty() {
            let wanted = vec![true; local.len()];
            let (digests, _, _) = self.digests(&tracked.path, &local, &wanted)?;
            for (file, digest) in local.iter().zip(digests) {
                if !digest.is_some_and(|digest| self.cache.contains(&digest)) {
                    unsafe_paths.insert(file.rel.clone());
                    report.conflicts.push(format!(
                        "{} (local changes not in the cache; `keel data add` them or use --force)",
                        join(&tracked.path, &file.rel)
                    ));
                }
            }
        }
        let mut to_place: Vec<(String, Digest)> = Vec::new();
        let mut to_remove: Vec<&Present> = Vec::new();
        for (rel, change) in &comparison.changes {
            if unsafe_paths.contains(rel) {
                continue;
            }
            match change {
                Change::Added => to_remove.extend(by_rel.get(rel.as_str()).copied()),
                Change::Deleted | Change::Modified => {
                    if let Some(entry) = expected_by_rel.get(rel.as_str()) {
                        to_place.push((rel.clone(), entry.digest));
                    }
                }
            }
        }
        for file in to_remove {
            std::fs::remove_file(&file.abs).map_err(|error| DataError::io(&file.abs, error))?;
            self.stat.forget(&join(&tracked.path, &file.rel));
            report.removed += 1;
        }
        if to_place.is_empty() {
            return Ok(());
        }
        // Verify each distinct object once, in parallel.
        let distinct: HashSet<Digest> = to_place.iter().map(|(_, digest)| *digest).collect();
        let distinct: Vec<Digest> = distinct.into_iter().collect();
        let cache = &self.cache;
        let verified = &self.verified;
        let verdicts: Vec<(Digest, Result<Verified>)> = distinct
            .par_iter()
            .map(|digest| {
                let verdict = if verified.contains(digest) && cache.contains(digest) {
                    Ok(Verified::Good)
                } else {
                    cache.verify(digest)
                };
                (*digest, verdict)
            })
            .collect();
        let mut verdict_of = HashMap::new();
        for (digest, verdict) in verdicts {
            verdict_of.insert(digest, verdict?);
        }
        let link = self.link.clone();
        let base = tracked.path.clone();
        let project = &self.project;
        // Each folder is created once, not once per file placed in it.
        let folders: BTreeSet<PathBuf> = to_place
            .iter()
            .filter_map(|(rel, _)| {
                project
                    .abs(&join(&base, rel))
                    .parent()
                    .map(Path::to_path_buf)
            })
            .collect();
        for folder in &folders {
            std::fs::create_dir_all(folder).map_err(|error| DataError::io(folder, error))?;
        }
        let bar = progress::count_bar(self.progress, to_place.len() as u64, "checkout");
        let placed: Vec<Placement> = to_place
            .par_iter()
            .filter(|(_, digest)| verdict_of.get(digest) == Some(&Verified::Good))
            .map(|(rel, digest)| {
                let dest = project.abs(&join(&base, rel));
                let result = match in_memory.get(digest) {
                    Some(bytes) => cache
                        .place_bytes(digest, bytes, &dest)
                        .map(|stat| (LinkKind::Copy, stat)),
                    None => cache.place(digest, &dest, &link),
                };
                bar.inc(1);
                (rel.clone(), *digest, result)
            })
            .collect();
        bar.finish_and_clear();
        for (rel, digest) in &to_place {
            match verdict_of.get(digest) {
                Some(Verified::Corrupt) => report.corrupt.push((join(&base, rel), *digest)),
                Some(Verified::Missing) => report.missing.push((join(&base, rel), *digest)),
                _ => {}
            }
        }
        let mut errors = Vec::new();
        for (rel, digest, result) in placed {
            match result {
                Ok((kind, stat)) => {
                    report.placed += 1;
                    report.link.get_or_insert(kind);
                    self.stat.record(&join(&base, &rel), stat, digest, true);
                }
                Err(error) => errors.push(error),
            }
        }
        report.corrupt.sort();
        report.missing.sort();
        match DataError::many(errors) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// `keel data unprotect`: makes the workspace files of `targets` safe to
    /// edit in place. A file that shares its inode with anything (a hardlink
    /// to the cache) is replaced by a private writable copy; any other file
    /// just gets its owner write bit back. The cache is never touched, so
    /// an edit can only change the workspace; `keel data add` records it.
    /// Returns how many files were made writable.
    pub fn unprotect(&mut self, targets: &[String]) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        if targets.is_empty() {
            return Err(DataError::Invalid(
                "name the tracked paths to unprotect".into(),
            ));
        }
        let mut count = 0;
        for tracked in self.tracked(targets)? {
            let Scan::Files(files) = self.scan(&tracked.path, tracked.metafile.kind)? else {
                return Err(DataError::Unsupported {
                    path: self.project.abs(&tracked.path),
                    reason: format!("expected a {}", tracked.metafile.kind.as_str()),
                });
            };
            let stats: Vec<Result<(String, FileStat, FileStat)>> = files
                .par_iter()
                .map(|file| {
                    let metadata = std::fs::symlink_metadata(&file.abs)
                        .map_err(|error| DataError::io(&file.abs, error))?;
                    let result = if metadata.nlink() > 1 {
                        private_copy(&file.abs, file.mode | 0o200)
                    } else {
                        fsutil::make_writable(&file.abs)
                    };
                    result.map_err(|error| DataError::io(&file.abs, error))?;
                    let after = std::fs::symlink_metadata(&file.abs)
                        .map_err(|error| DataError::io(&file.abs, error))?;
                    Ok((
                        join(&tracked.path, &file.rel),
                        file.stat,
                        FileStat::of(&after),
                    ))
                })
                .collect();
            let mut errors = Vec::new();
            for result in stats {
                match result {
                    Ok((rel, before, after)) => {
                        count += 1;
                        // Same bytes, new inode or ctime: carry the digest over.
                        if let Some(digest) = self.stat.lookup(&rel, &before) {
                            self.stat.record(&rel, after, digest, true);
                        }
                    }
                    Err(error) => errors.push(error),
                }
            }
            if let Some(error) = DataError::many(errors) {
                return Err(error);
            }
        }
        self.stat.save()?;
        Ok(count)
    }

    /// Saves the stat cache (commands that hash outside add/status/checkout).
    pub fn save_state(&mut self) -> Result<()> {
        self.stat.save()
    }
}

/// Takes back an object just hardlinked (at `object`) from `file`, which
/// turned out to have changed since it was hashed: the link is removed (the
/// bytes stay in the workspace file) and the file gets its mode back.
fn unstore_changed(object: &Path, file: &Present) {
    let _ = std::fs::set_permissions(object, std::fs::Permissions::from_mode(file.mode));
    let _ = std::fs::remove_file(object);
}

/// One checkout placement: workspace path, object, and how it went.
type Placement = (String, Digest, Result<(LinkKind, FileStat)>);

#[derive(Default)]
struct Comparison {
    same: u64,
    changes: Vec<(String, Change)>,
}

/// Replaces `path` by a copy of itself with its own inode and `mode`
/// (temp file in the same folder, then rename), breaking any hardlink.
fn private_copy(path: &Path, mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = fsutil::temp_path(dir, "unprotect");
    let result = std::fs::copy(path, &temp)
        .and_then(|_| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Digests for `files` (where `wanted`), from the stat cache or by hashing
/// in parallel; returns them with the number of files and bytes hashed.
/// Hashed files are recorded in the stat cache (keys are `base/rel`).
fn cached_digests(
    stat: &mut StatCache,
    progress: bool,
    base: &str,
    files: &[Present],
    wanted: &[bool],
) -> Result<(Vec<Option<Digest>>, u64, u64)> {
    let mut digests = vec![None; files.len()];
    let mut to_hash = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if !wanted[index] {
            continue;
        }
        match stat.lookup(&join(base, &file.rel), &file.stat) {
            Some(digest) => digests[index] = Some(digest),
            None => to_hash.push(index),
        }
    }
    let total: u64 = to_hash.iter().map(|&index| files[index].stat.size).sum();
    let bar = progress::bytes_bar(progress, total, "hashing");
    let hashed: Vec<(usize, std::io::Result<(Digest, u64)>)> = to_hash
        .par_iter()
        .map(|&index| {
            let result = hash::hash_file(&files[index].abs);
            bar.inc(files[index].stat.size);
            (index, result)
        })
        .collect();
    bar.finish_and_clear();
    let mut errors = Vec::new();
    let hashed_files = hashed.len() as u64;
    for (index, result) in hashed {
        match result {
            Ok((digest, _)) => {
                stat.record(
                    &join(base, &files[index].rel),
                    files[index].stat,
                    digest,
                    false,
                );
                digests[index] = Some(digest);
            }
            Err(error) => errors.push(DataError::io(&files[index].abs, error)),
        }
    }
    if let Some(error) = DataError::many(errors) {
        return Err(error);
    }
    Ok((digests, hashed_files, total))
}

/// The content digest of a path in the working tree, as a metafile would
/// record it: a file's BLAKE3, or a directory's manifest digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathDigest {
    /// File or directory.
    pub kind: Kind,
    /// Content digest (file) or manifest digest (directory).
    pub digest: Digest,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
}

/// Digests `relative` (a file or a directory under `root`) without the
/// object cache or the project lock, reusing and updating `stat`, so an
/// unchanged path costs one `stat` per file. `None` when nothing is there.
/// This is what pipelines use for their dependencies and outputs.
pub fn digest_path(
    root: &Path,
    relative: &str,
    stat: &mut StatCache,
) -> Result<Option<PathDigest>> {
    let abs = if relative.is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative)
    };
    let metadata = match std::fs::metadata(&abs) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(DataError::io(&abs, error)),
    };
    let (kind, files) = if metadata.is_dir() {
        let mut files = Vec::new();
        walk(&abs, "", &mut files)?;
        (Kind::Directory, files)
    } else {
        let present = Present {
            rel: String::new(),
            stat: FileStat::of(&metadata),
            mode: metadata.permissions().mode(),
            abs,
        };
        (Kind::File, vec![present])
    };
    let wanted = vec![true; files.len()];
    let (digests, _, _) = cached_digests(stat, false, relative, &files, &wanted)?;
    let size = files.iter().map(|file| file.stat.size).sum();
    let digest = match kind {
        Kind::File => digests[0].ok_or_else(|| DataError::NotFound(root.join(relative)))?,
        Kind::Directory => {
            let entries = files
                .iter()
                .zip(&digests)
                .filter_map(|(file, digest)| {
                    digest.map(|digest| ManifestEntry {
                        path: file.rel.clone(),
                        digest,
                        size: file.stat.size,
                    })
                })
                .collect();
            Manifest::new(entries).digest().0
        }
    };
    Ok(Some(PathDigest {
        kind,
        digest,
        size,
        files: files.len() as u64,
    }))
}

/// `base/rel`, or `base` alone when `rel` is empty.
pub fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rel.to_string(),
        (false, false) => format!("{base}/{rel}"),
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Present>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|error| DataError::io(dir, error))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| DataError::io(dir, error))?;
        let name = entry.file_name();
        let abs = entry.path();
        let name = name.to_str().ok_or_else(|| DataError::Unsupported {
            path: abs.clone(),
            reason: "file name is not valid UTF-8".into(),
        })?;
        if name.contains('\n') {
            return Err(DataError::Unsupported {
                path: abs,
                reason: "file names with a newline are not supported".into(),
            });
        }
        let rel = join(prefix, name);
        let file_type = entry
            .file_type()
            .map_err(|error| DataError::io(&abs, error))?;
        if file_type.is_dir() {
            walk(&abs, &rel, out)?;
        } else if file_type.is_file() {
            files.push((rel, abs));
        } else {
            return Err(DataError::Unsupported { path: abs, reason: "only regular files can be tracked inside a directory (found a symlink or special file)".into() });
        }
    }
    let stats: Vec<Result<Present>> = files
        .into_par_iter()
        .map(|(rel, abs)| {
            let metadata =
                std::fs::symlink_metadata(&abs).map_err(|error| DataError::io(&abs, error))?;
            Ok(Present {
                rel,
                stat: FileStat::of(&metadata),
                mode: metadata.permissions().mode(),
                abs,
            })
        })
        .collect();
    for stat in stats {
        out.push(stat?);
    }
    Ok(())
}

/// Project-relative paths of every metafile, skipping `.git`, `.keel` and
/// the insides of tracked directories.
pub fn find_metafiles(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| DataError::io(&dir, error))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false);
            names.push((name, is_dir));
        }
        let files: HashSet<&str> = names
            .iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(name, _)| name.as_str())
            .collect();
        for (name, is_dir) in &names {
            if *is_dir {
                let tracked = files.contains(format!("{name}{}", metafile::SUFFIX).as_str());
                if !tracked && name != ".git" && name != crate::project::KEEL_DIR {
                    stack.push((dir.join(name), join(&prefix, name)));
                }
            } else if name.ends_with(metafile::SUFFIX) && name.len() > metafile::SUFFIX.len() {
                found.push(join(&prefix, name));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Adds `/name` to the `.gitignore` next to the tracked path.
fn ensure_gitignored(project: &Project, path: &str) -> Result<()> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let gitignore = project.abs(&join(parent, ".gitignore"));
    let mut escaped = String::from("/");
    for c in name.chars() {
        if "*?[]\\!# ".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let text = match std::fs::read_to_string(&gitignore) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(DataError::io(&gitignore, error)),
    };
    if text.lines().any(|line| line.trim_end() == escaped) {
        return Ok(());
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&escaped);
    text.push('\n');
    fsutil::write_atomic(&gitignore, text.as_bytes())
}

#[cfg(test)]
mod tests;
