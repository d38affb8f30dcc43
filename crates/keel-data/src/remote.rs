//! Remotes through the `object_store` crate: a local directory (`/path`,
//! `./relative`, `file:///path`) or S3 (`s3://bucket/prefix`, configured
//! from the usual `AWS_*` environment variables exactly as the artifact
//! store is, including a custom `AWS_ENDPOINT_URL` such as MinIO or moto).
//!
//! Layout on the remote:
//! - `blake3/ab/cdef…`: loose objects (files of 1 MiB or more, and
//!   directory manifests), as in the cache;
//! - `packs/<H>.pack` + `packs/<H>.idx`: small objects concatenated into
//!   packs of about 16 MiB, `H` being the pack's BLAKE3 ([`crate::pack`]'s
//!   format, which the local cache keeps downloaded packs in too). A pack
//!   counts only once its index exists, and the index is written after the
//!   pack, so a killed push leaves at worst an unindexed pack (ignored; its
//!   objects are sent again). One request and one fsync per pack, instead of
//!   one per object, is what makes pushing and pulling many small files fast
//!   on a local directory and on S3 alike.
//!
//! Transfers run concurrently (`jobs` at a time) and move only what the other
//! side lacks, so an interrupted push or pull is resumed by running it again.
//! Every downloaded object is hashed before it enters the cache; a corrupt
//! one is reported by name and dropped. A push is where a copy may become
//! the only one (users delete local data once it is pushed), so packs and
//! large objects are fsynced on a local-directory remote (`with_fsync`)
//! before push reports success; loose downloads are not (the remote keeps
//! its copy), the local packs a fetch writes are (see `cache`). Local
//! objects are hashed as they are uploaded, so a corrupt cache object is
//! never spread to a remote.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use rayon::prelude::*;
use tokio::io::AsyncReadExt;

use crate::error::{DataError, Result};
use crate::hash::{Digest, HASH_NAME, StreamHasher};
use crate::metafile::Kind;
use crate::pack;
use crate::progress;
use crate::workspace::{CheckoutReport, Workspace, join};

/// Objects larger than this go up in parts and come down as a stream.
const LARGE_OBJECT: u64 = 16 << 20;
const PART: usize = 8 << 20;
/// Objects smaller than this travel in packs.
const PACKABLE: u64 = 1 << 20;
/// A pack is closed once it holds this many bytes.
const PACK_TARGET: u64 = 16 << 20;
/// Folder of packs and their indexes on the remote.
const PACK_DIR: &str = "packs";
/// Packs in flight at once (each is held in memory while it moves).
const PACKS_IN_FLIGHT: usize = 4;
/// Bytes of packed objects a pull keeps in memory for its checkout.
const KEEP_FOR_CHECKOUT: u64 = 256 << 20;

/// An opened remote.
pub struct Remote {
    /// Its name in the config.
    pub name: String,
    /// Its URL.
    pub url: String,
    store: Arc<dyn ObjectStore>,
    /// The same store for large objects: a local directory fsyncs them.
    large_store: Arc<dyn ObjectStore>,
    /// The folder of a local-directory remote.
    local_root: Option<PathBuf>,
}

/// Opens the named (or default) remote. A local directory is created when
/// `create` is set (push); otherwise a missing one is an error.
pub fn open_remote(workspace: &Workspace, name: Option<&str>, create: bool) -> Result<Remote> {
    let (name, url) = workspace.config().remote_url(name)?;
    let bad = |reason: &str| DataError::BadRemoteUrl {
        url: url.clone(),
        reason: reason.into(),
    };
    let mut large_store = None;
    let mut local_root = None;
    let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") {
        // The same S3 set-up as the artifact store (endpoint, path-style
        // requests, plain HTTP for an http:// endpoint), from `AWS_*`.
        keel_artifacts::s3_object_store(&url).map_err(|error| bad(&error.to_string()))?
    } else if url.contains("://") && !url.starts_with("file://") {
        return Err(bad(
            "unsupported scheme (use a local directory, file:// or s3://)",
        ));
    } else {
        let raw = url.strip_prefix("file://").unwrap_or(&url);
        let path = PathBuf::from(raw);
        let path = if path.is_absolute() {
            path
        } else {
            workspace.project().root().join(path)
        };
        if create {
            std::fs::create_dir_all(&path).map_err(|error| DataError::io(&path, error))?;
        } else if !path.is_dir() {
            return Err(DataError::Invalid(format!(
                "remote `{name}`: directory {} does not exist (nothing was pushed there yet?)",
                path.display()
            )));
        }
        let local =
            object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(|source| {
                DataError::Remote {
                    remote: name.clone(),
                    source,
                }
            })?;
        let durable = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|source| DataError::Remote {
                remote: name.clone(),
                source,
            })?
            .with_fsync(true);
        large_store = Some(Arc::new(durable) as Arc<dyn ObjectStore>);
        local_root = Some(path);
        Arc::new(local)
    };
    let large_store = large_store.unwrap_or_else(|| store.clone());
    Ok(Remote {
        name,
        url,
        store,
        large_store,
        local_root,
    })
}

fn key(digest: &Digest) -> StorePath {
    StorePath::from(format!("{HASH_NAME}/{}", digest.shard_path()))
}

fn pack_key(name: &str, extension: &str) -> StorePath {
    StorePath::from(format!("{PACK_DIR}/{name}.{extension}"))
}

/// One object to transfer and the workspace path it is for.
#[derive(Debug, Clone)]
struct Wanted {
    digest: Digest,
    size: u64,
    label: String,
}

/// Result of a push or fetch.
#[derive(Debug, Clone, Default)]
pub struct TransferReport {
    /// Objects moved.
    pub transferred: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Objects the other side already had.
    pub skipped: u64,
    /// Packs written (push) or read (fetch).
    pub packs: u64,
    /// Objects that failed verification (path, digest), not stored.
    pub corrupt: Vec<(String, Digest)>,
    /// Objects the source does not have (path, digest).
    pub missing: Vec<(String, Digest)>,
    /// Other per-object failures, as messages.
    pub failed: Vec<String>,
    /// Objects hashed and moved by this transfer.
    pub verified: Vec<Digest>,
}

impl TransferReport {
    /// True when nothing was corrupt, missing or failed.
    pub fn is_complete(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.failed.is_empty()
    }
}

/// The objects the targets need: (data objects, manifest objects). Manifests
/// not in the local cache are listed in `manifests` but their entries are not.
fn needed(workspace: &Workspace, targets: &[String]) -> Result<(Vec<Wanted>, Vec<Wanted>)> {
    let mut data = Vec::new();
    let mut manifests = Vec::new();
    let mut seen = HashSet::new();
    for tracked in workspace.tracked(targets)? {
        match tracked.metafile.kind {
            Kind::File => {
                if seen.insert(tracked.metafile.digest) {
                    data.push(Wanted {
                        digest: tracked.metafile.digest,
                        size: tracked.metafile.size,
                        label: tracked.path.clone(),
                    });
                }
            }
            Kind::Directory => {
                let manifest_bytes = workspace
                    .cache()
                    .size(&tracked.metafile.digest)
                    .unwrap_or(0);
                manifests.push(Wanted {
                    digest: tracked.metafile.digest,
                    size: manifest_bytes,
                    label: format!("{} (manifest)", tracked.path),
                });
                if let Some(manifest) = workspace.manifest(&tracked.metafile.digest)? {
                    for entry in manifest.entries {
                        if seen.insert(entry.digest) {
                            data.push(Wanted {
                                digest: entry.digest,
                                size: entry.size,
                                label: join(&tracked.path, &entry.path),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok((data, manifests))
}

/// Where a packed object sits on the remote.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Index into [`Inventory::packs`].
    pack: usize,
    offset: u64,
    size: u64,
}

/// What a remote holds: loose objects (when listed) and indexed packs.
#[derive(Debug, Default)]
struct Inventory {
    loose: HashSet<Digest>,
    packs: Vec<String>,
    packed: HashMap<Digest, Slot>,
}

impl Inventory {
    fn contains(&self, digest: &Digest) -> bool {
        self.loose.contains(digest) || self.packed.contains_key(digest)
    }
}

fn remote_error(remote: &Remote) -> impl Fn(object_store::Error) -> DataError + '_ {
    move |source| DataError::Remote {
        remote: remote.name.clone(),
        source,
    }
}

/// Reads the remote's pack indexes, and lists its loose objects when
/// `list_loose` is set (push and status need them; fetch asks for loose
/// objects by name).
async fn inventory(remote: &Remote, list_loose: bool) -> Result<Inventory> {
    let mut inventory = Inventory::default();
    if list_loose {
        let prefix = StorePath::from(HASH_NAME);
        let metas: Vec<object_store::ObjectMeta> = remote
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(remote_error(remote))?;
        inventory.loose = metas
            .iter()
            .filter_map(|meta| {
                let mut parts = meta.location.parts();
                let _algorithm = parts.next()?;
                let shard = parts.next()?;
                let rest = parts.next()?;
                format!("{}{}", shard.as_ref(), rest.as_ref()).parse().ok()
            })
            .collect();
    }
    let listing = list_packs(remote).await?;
    let (packs, indexes) = split_packs(&listing);
    // An index without its pack is a pack that was deleted behind our back:
    // its objects are not there.
    let mut indexes: Vec<String> = indexes
        .into_keys()
        .filter(|name| packs.contains_key(name))
        .collect();
    indexes.sort();
    let texts: Vec<(String, Result<Bytes>)> = futures::stream::iter(indexes)
        .map(|name| async move {
            let bytes = async {
                remote
                    .store
                    .get(&pack_key(&name, "idx"))
                    .await?
                    .bytes()
                    .await
            }
            .await
            .map_err(remote_error(remote));
            (name, bytes)
        })
        .buffered(16)
        .collect()
        .await;
    for (name, text) in texts {
        let text = text?;
        let pack = inventory.packs.len();
        let where_ = || PathBuf::from(format!("{}/{PACK_DIR}/{name}.idx", remote.url));
        for (digest, offset, size) in
            pack::parse_index(&text).map_err(|(line, message)| DataError::Parse {
                path: where_(),
                line,
                message,
            })?
        {
            inventory.packed.insert(digest, Slot { pack, offset, size });
        }
        inventory.packs.push(name);
    }
    Ok(inventory)
}

/// Everything under the remote's pack folder.
async fn list_packs(remote: &Remote) -> Result<Vec<object_store::ObjectMeta>> {
    remote
        .store
        .list(Some(&StorePath::from(PACK_DIR)))
        .try_collect()
        .await
        .map_err(remote_error(remote))
}

/// Packs and indexes of a pack-folder listing, by pack name.
type PackFiles<'a> = HashMap<String, &'a object_store::ObjectMeta>;

fn split_packs(metas: &[object_store::ObjectMeta]) -> (PackFiles<'_>, PackFiles<'_>) {
    let mut packs = HashMap::new();
    let mut indexes = HashMap::new();
    for meta in metas {
        let Some(file) = meta.location.filename() else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".pack") {
            packs.insert(name.to_string(), meta);
        } else if let Some(name) = file.strip_suffix(".idx") {
            indexes.insert(name.to_string(), meta);
        }
    }
    (packs, indexes)
}

/// Per-object outcomes of one transfer step.
type Outcomes = Vec<(Wanted, Result<Outcome>)>;

/// Splits small objects into packs of about [`PACK_TARGET`] bytes, in the
/// given (path) order so one directory's files sit together.
fn pack_groups(objects: Vec<Wanted>) -> Vec<Vec<Wanted>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for wanted in objects {
        bytes += wanted.size;
        current.push(wanted);
        if bytes >= PACK_TARGET {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// `keel data push`: uploads the objects of `targets` (all tracked paths when
/// empty) that the remote lacks: small ones in packs, large ones loose.
/// Manifests go last, so a remote that has a manifest has every file it lists.
pub async fn push(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
) -> Result<TransferReport> {
    let (data, manifests) = needed(workspace, targets)?;
    let present = inventory(remote, true).await?;
    let mut report = TransferReport::default();
    let (missing, already): (Vec<Wanted>, Vec<Wanted>) = data
        .into_iter()
        .partition(|wanted| !present.contains(&wanted.digest));
    report.skipped += already.len() as u64;
    let total = missing.iter().map(|wanted| wanted.size).sum();
    let bar = progress::bytes_bar(workspace.progress(), total, "push");
    let (small, large): (Vec<Wanted>, Vec<Wanted>) = missing
        .into_iter()
        .partition(|wanted| wanted.size < PACKABLE);
    let packed: Vec<(bool, Outcomes)> = futures::stream::iter(pack_groups(small))
        .map(|group| push_pack(workspace, remote, group, &bar))
        .buffer_unordered(jobs.clamp(1, PACKS_IN_FLIGHT))
        .collect()
        .await;
    for (written, results) in packed {
        report.packs += u64::from(written);
        tally(&mut report, results);
    }
    let results = transfer_loose(large, jobs, &bar, |wanted| async move {
        let result = upload(workspace, remote, &wanted).await;
        (wanted, result)
    })
    .await;
    tally(&mut report, results);
    bar.finish_and_clear();
    let (manifests, already): (Vec<Wanted>, Vec<Wanted>) = manifests
        .into_iter()
        .partition(|wanted| !present.contains(&wanted.digest));
    report.skipped += already.len() as u64;
    if !report.is_complete() {
        if !manifests.is_empty() {
            let labels: Vec<String> = manifests.into_iter().map(|wanted| wanted.label).collect();
            report.failed.push(format!(
                "not pushed until all their files are: {}",
                labels.join(", ")
            ));
        }
        return Ok(report);
    }
    let hidden = ProgressBar::hidden();
    let results = transfer_loose(manifests, jobs, &hidden, |wanted| async move {
        let result = upload(workspace, remote, &wanted).await;
        (wanted, result)
    })
    .await;
    tally(&mut report, results);
    Ok(report)
}

/// Runs `transfer` on each object, `jobs` at a time.
async fn transfer_loose<F, Fut>(
    objects: Vec<Wanted>,
    jobs: usize,
    bar: &ProgressBar,
    transfer: F,
) -> Vec<(Wanted, Result<Outcome>)>
where
    F: Fn(Wanted) -> Fut,
    Fut: std::future::Future<Output = (Wanted, Result<Outcome>)>,
{
    futures::stream::iter(objects)
        .map(|wanted| {
            let size = wanted.size;
            let transfer = transfer(wanted);
            async move {
                let done = transfer.await;
                bar.inc(size);
                done
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await
}

/// A cache object read for packing.
enum Loaded {
    Bytes(Vec<u8>),
    Outcome(Result<Outcome>),
}

/// Reads and verifies the group's objects (in parallel on rayon's pool),
/// writes them as one pack, then its index. Returns whether a pack was
/// written, and each object's outcome.
async fn push_pack(
    workspace: &Workspace,
    remote: &Remote,
    group: Vec<Wanted>,
    bar: &ProgressBar,
) -> (bool, Vec<(Wanted, Result<Outcome>)>) {
    let cache = workspace.cache();
    // Local reads of small objects (loose files or slices of local packs):
    // brief, CPU-bound work; this task waits.
    let loaded: Vec<Loaded> = group
        .par_iter()
        .map(|wanted| match cache.read(&wanted.digest) {
            Ok(Some(bytes)) if Digest::of_bytes(&bytes) == wanted.digest => Loaded::Bytes(bytes),
            Ok(Some(_)) => Loaded::Outcome(Ok(Outcome::Corrupt)),
            Ok(None) => Loaded::Outcome(Ok(Outcome::Missing)),
            Err(error) => Loaded::Outcome(Err(error)),
        })
        .collect();
    let mut pack = Vec::with_capacity(group.iter().map(|wanted| wanted.size as usize).sum());
    let mut layout = pack::Layout::default();
    let mut results = Vec::with_capacity(group.len());
    let mut members = Vec::new();
    for (wanted, loaded) in group.into_iter().zip(loaded) {
        match loaded {
            Loaded::Bytes(bytes) => {
                layout.push(wanted.digest, &bytes);
                pack.extend_from_slice(&bytes);
                members.push(wanted);
            }
            Loaded::Outcome(outcome) => results.push((wanted, outcome)),
        }
    }
    if members.is_empty() {
        return (false, results);
    }
    let (name, index, _) = layout.finish();
    let name = name.to_hex();
    let bytes = pack.len() as u64;
    let written = async {
        // The pack first, then its index: an index always names a whole pack.
        remote
            .large_store
            .put(&pack_key(&name, "pack"), PutPayload::from(pack))
            .await?;
        remote
            .large_store
            .put(
                &pack_key(&name, "idx"),
                PutPayload::from(index.into_bytes()),
            )
            .await
    }
    .await;
    bar.inc(bytes);
    match written {
        Ok(_) => results.extend(members.into_iter().map(|wanted| {
            let size = wanted.size;
            (wanted, Ok(Outcome::Done(size)))
        })),
        Err(error) => {
            let message = format!("remote `{}`: pack {name}: {error}", remote.name);
            results.extend(
                members
                    .into_iter()
                    .map(|wanted| (wanted, Err(DataError::Invalid(message.clone())))),
            );
            return (false, results);
        }
    }
    (true, results)
}

enum Outcome {
    Done(u64),
    Corrupt,
    Missing,
}

fn tally(report: &mut TransferReport, results: Vec<(Wanted, Result<Outcome>)>) {
    for (wanted, result) in results {
        match result {
            Ok(Outcome::Done(bytes)) => {
                report.transferred += 1;
                report.bytes += bytes;
                report.verified.push(wanted.digest);
            }
            Ok(Outcome::Corrupt) => report.corrupt.push((wanted.label, wanted.digest)),
            Ok(Outcome::Missing) => report.missing.push((wanted.label, wanted.digest)),
            Err(error) => report.failed.push(format!("{}: {error}", wanted.label)),
        }
    }
    report.corrupt.sort();
    report.missing.sort();
    report.failed.sort();
}

async fn upload(workspace: &Workspace, remote: &Remote, wanted: &Wanted) -> Result<Outcome> {
    let remote_error = remote_error(remote);
    if wanted.size < LARGE_OBJECT {
        let Some(bytes) = workspace.cache().read(&wanted.digest)? else {
            return Ok(Outcome::Missing);
        };
        if Digest::of_bytes(&bytes) != wanted.digest {
            return Ok(Outcome::Corrupt);
        }
        let length = bytes.len() as u64;
        remote
            .store
            .put(&key(&wanted.digest), PutPayload::from(Bytes::from(bytes)))
            .await
            .map_err(remote_error)?;
        return Ok(Outcome::Done(length));
    }
    // Large objects are streamed from a file: always loose in practice
    // (only small objects travel in packs), materialized if not.
    let Some(path) = workspace.cache().loose_path(&wanted.digest)? else {
        return Ok(Outcome::Missing);
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(error) => return Err(DataError::io(&path, error)),
    };
    let upload = remote
        .large_store
        .put_multipart(&key(&wanted.digest))
        .await
        .map_err(&remote_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut hasher = StreamHasher::default();
    let mut buffer = vec![0u8; PART];
    let mut total = 0u64;
    loop {
        let read = match file.read(&mut buffer).await {
            Ok(read) => read,
            Err(error) => {
                let _ = writer.abort().await;
                return Err(DataError::io(&path, error));
            }
        };
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        if let Err(error) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            return Err(remote_error(error));
        }
        writer.write(&buffer[..read]);
        total += read as u64;
    }
    if hasher.finalize() != wanted.digest {
        let _ = writer.abort().await;
        return Ok(Outcome::Corrupt);
    }
    writer.finish().await.map_err(remote_error)?;
    Ok(Outcome::Done(total))
}

/// `keel data fetch`: downloads the objects of `targets` that the cache lacks
/// (manifests first, then the files they list), verifying each one.
pub async fn fetch(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
) -> Result<TransferReport> {
    let (report, _) = fetch_keeping(workspace, remote, targets, jobs, 0).await?;
    Ok(report)
}

/// Small objects fetched from packs, kept in memory for the checkout that
/// follows a fetch (slices of the packs' buffers, so keeping them copies
/// nothing): placing a workspace copy from memory spares reading the cache
/// object back.
pub type Kept = HashMap<Digest, Bytes>;

/// [`fetch`], keeping up to `keep` bytes of packed objects in memory.
async fn fetch_keeping(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
    keep: u64,
) -> Result<(TransferReport, Kept)> {
    let mut kept = Kept::new();
    let mut report = TransferReport::default();
    let store = Store::for_workspace(workspace);
    let inventory = inventory(remote, false).await?;
    let (_, manifests) = needed(workspace, targets)?;
    let missing_manifests: Vec<Wanted> = manifests
        .into_iter()
        .filter(|wanted| !workspace.cache().contains(&wanted.digest))
        .collect();
    let hidden = ProgressBar::hidden();
    download_all(
        workspace,
        remote,
        &inventory,
        missing_manifests,
        jobs,
        &hidden,
        &mut Sink::report_only(&mut report, store),
    )
    .await;
    let (data, _) = needed(workspace, targets)?;
    let (absent, present): (Vec<Wanted>, Vec<Wanted>) = data
        .into_iter()
        .partition(|wanted| !workspace.cache().contains(&wanted.digest));
    report.skipped += present.len() as u64;
    let total = absent.iter().map(|wanted| wanted.size).sum();
    let bar = progress::bytes_bar(workspace.progress(), total, "fetch");
    let mut sink = Sink {
        report: &mut report,
        budget: keep,
        kept: Some(&mut kept),
        store,
    };
    download_all(workspace, remote, &inventory, absent, jobs, &bar, &mut sink).await;
    bar.finish_and_clear();
    Ok((report, kept))
}

/// What [`download_all`] fills: the report, and the fetched bytes it may
/// keep (up to `budget` more bytes) when `kept` is given.
struct Sink<'a> {
    report: &'a mut TransferReport,
    budget: u64,
    kept: Option<&'a mut Kept>,
    /// How objects fetched from remote packs enter the cache.
    store: Store,
}

/// How small objects fetched from a remote pack are stored in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// As one local pack per remote pack (one file instead of hundreds).
    Packed,
    /// As loose objects: where the workspace hardlinks its files to the
    /// cache, each object must be a whole file of its own anyway.
    Loose,
}

impl Store {
    fn for_workspace(workspace: &Workspace) -> Self {
        if workspace.hardlinks_objects() {
            Store::Loose
        } else {
            Store::Packed
        }
    }
}

impl<'a> Sink<'a> {
    fn report_only(report: &'a mut TransferReport, store: Store) -> Self {
        Sink {
            report,
            budget: 0,
            kept: None,
            store,
        }
    }

    /// Keeps `bytes` under `digest` while the budget lasts.
    fn offer(&mut self, digest: Digest, bytes: Bytes) {
        let size = bytes.len() as u64;
        if let Some(kept) = self.kept.as_deref_mut()
            && size <= self.budget
        {
            self.budget -= size;
            kept.insert(digest, bytes);
        }
    }
}

/// Downloads `objects` into the cache: packed ones pack by pack (ranges of
/// one pack in one request where they are adjacent), the rest loose.
async fn download_all(
    workspace: &Workspace,
    remote: &Remote,
    inventory: &Inventory,
    objects: Vec<Wanted>,
    jobs: usize,
    bar: &ProgressBar,
    sink: &mut Sink<'_>,
) {
    let mut by_pack: HashMap<usize, Vec<(Wanted, Slot)>> = HashMap::new();
    let mut loose = Vec::new();
    for wanted in objects {
        match inventory.packed.get(&wanted.digest) {
            Some(slot) => by_pack.entry(slot.pack).or_default().push((wanted, *slot)),
            None => loose.push(wanted),
        }
    }
    let mut by_pack: Vec<(usize, Vec<(Wanted, Slot)>)> = by_pack.into_iter().collect();
    by_pack.sort_by_key(|(pack, _)| *pack);
    let store = sink.store;
    let from_packs: Vec<(Outcomes, Vec<Bytes>)> = futures::stream::iter(by_pack)
        .map(|(pack, members)| {
            let name = &inventory.packs[pack];
            fetch_from_pack(workspace, remote, name, members, store, bar)
        })
        .buffer_unordered(jobs.clamp(1, PACKS_IN_FLIGHT))
        .collect()
        .await;
    for (results, chunks) in from_packs {
        sink.report.packs += 1;
        for ((wanted, result), bytes) in results.iter().zip(chunks) {
            if matches!(result, Ok(Outcome::Done(_))) {
                sink.offer(wanted.digest, bytes);
            }
        }
        tally(sink.report, results);
    }
    let results = transfer_loose(loose, jobs, bar, |wanted| async move {
        let result = download(workspace, remote, &wanted).await;
        (wanted, result)
    })
    .await;
    tally(sink.report, results);
}

/// Fetches some objects of one pack with ranged reads, verifies each and
/// stores the good ones in the cache, together as one local pack or each
/// as a loose object (hashing and file creation on rayon's pool).
/// Returns the outcomes and, when the pack was read, each object's bytes
/// (in the same order).
async fn fetch_from_pack(
    workspace: &Workspace,
    remote: &Remote,
    pack: &str,
    mut members: Vec<(Wanted, Slot)>,
    store: Store,
    bar: &ProgressBar,
) -> (Outcomes, Vec<Bytes>) {
    members.sort_by_key(|(_, slot)| slot.offset);
    let ranges: Vec<Range<u64>> = members
        .iter()
        .map(|(_, slot)| slot.offset..slot.offset + slot.size)
        .collect();
    let fetched = remote
        .store
        .get_ranges(&pack_key(pack, "pack"), &ranges)
        .await;
    bar.inc(ranges.iter().map(|range| range.end - range.start).sum());
    let chunks = match fetched {
        Ok(chunks) if chunks.len() == members.len() => chunks,
        Ok(_) => {
            let outcomes = members
                .into_iter()
                .map(|(wanted, _)| {
                    let message = format!("remote `{}`: pack {pack}: short answer", remote.name);
                    (wanted, Err(DataError::Invalid(message)))
                })
                .collect();
            return (outcomes, Vec::new());
        }
        Err(error) => {
            let missing = matches!(error, object_store::Error::NotFound { .. });
            let message = format!("remote `{}`: pack {pack}: {error}", remote.name);
            let outcomes = members
                .into_iter()
                .map(|(wanted, _)| {
                    let outcome = if missing {
                        Ok(Outcome::Missing)
                    } else {
                        Err(DataError::Invalid(message.clone()))
                    };
                    (wanted, outcome)
                })
                .collect();
            return (outcomes, Vec::new());
        }
    };
    let cache = workspace.cache();
    let outcomes: Vec<Result<Outcome>> = if store == Store::Packed {
        // Verified on every core, then kept as one local pack.
        let good: Vec<bool> = members
            .par_iter()
            .zip(chunks.par_iter())
            .map(|((wanted, _), bytes)| Digest::of_bytes(bytes) == wanted.digest)
            .collect();
        let objects: Vec<(Digest, &[u8])> = members
            .iter()
            .zip(&chunks)
            .zip(&good)
            .filter(|(_, good)| **good)
            .map(|(((wanted, _), bytes), _)| (wanted.digest, &bytes[..]))
            .collect();
        let stored = cache.insert_pack(&objects);
        let failure = stored.as_ref().err().map(ToString::to_string);
        chunks
            .iter()
            .zip(good)
            .map(|(bytes, good)| match (&failure, good) {
                (_, false) => Ok(Outcome::Corrupt),
                (Some(message), true) => Err(DataError::Invalid(message.clone())),
                (None, true) => Ok(Outcome::Done(bytes.len() as u64)),
            })
            .collect()
    } else {
        members
            .par_iter()
            .zip(chunks.par_iter())
            .map(|((wanted, _), bytes)| {
                if Digest::of_bytes(bytes) != wanted.digest {
                    return Ok(Outcome::Corrupt);
                }
                cache.insert_bytes(&wanted.digest, bytes, false)?;
                Ok(Outcome::Done(bytes.len() as u64))
            })
            .collect()
    };
    let outcomes = members
        .into_iter()
        .map(|(wanted, _)| wanted)
        .zip(outcomes)
        .collect();
    (outcomes, chunks)
}

async fn download(workspace: &Workspace, remote: &Remote, wanted: &Wanted) -> Result<Outcome> {
    let remote_error = remote_error(remote);
    // Small objects in one GET; large ones are checked with HEAD, then
    // fetched in ranges below.
    let small = wanted.size < LARGE_OBJECT;
    let found = if small {
        remote.store.get(&key(&wanted.digest)).await.map(Some)
    } else {
        remote.store.head(&key(&wanted.digest)).await.map(|_| None)
    };
    let result = match found {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(Outcome::Missing),
        Err(error) => return Err(remote_error(error)),
    };
    let cache = workspace.cache();
    if let Some(result) = result {
        let bytes = result.bytes().await.map_err(&remote_error)?;
        if Digest::of_bytes(&bytes) != wanted.digest {
            return Ok(Outcome::Corrupt);
        }
        cache.insert_bytes(&wanted.digest, &bytes, false)?;
        return Ok(Outcome::Done(bytes.len() as u64));
    }
    // Large objects come down in PART-sized ranges (a few big reads rather
    // than a stream of small chunks), hashed as they arrive.
    let temp = cache.temp_path(&wanted.digest, "download")?;
    let key = key(&wanted.digest);
    let mut hasher = StreamHasher::default();
    let mut total = 0u64;
    let outcome: Result<()> = async {
        let mut file = std::fs::File::create(&temp).map_err(|error| DataError::io(&temp, error))?;
        while total < wanted.size {
            let end = (total + PART as u64).min(wanted.size);
            let bytes = remote
                .store
                .get_range(&key, total..end)
                .await
                .map_err(&remote_error)?;
            if bytes.is_empty() {
                break;
            }
            hasher.update(&bytes);
            total += bytes.len() as u64;
            std::io::Write::write_all(&mut file, &bytes)
                .map_err(|error| DataError::io(&temp, error))?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    if hasher.finalize() != wanted.digest {
        let _ = std::fs::remove_file(&temp);
        return Ok(Outcome::Corrupt);
    }
    cache.insert_temp(&temp, &wanted.digest)?;
    Ok(Outcome::Done(total))
}

/// `keel data pull`: fetch, then checkout.
pub async fn pull(
    workspace: &mut Workspace,
    remote: &Remote,
    targets: &[String],
    jobs: usize,
    force: bool,
) -> Result<(TransferReport, CheckoutReport)> {
    let (transfer, kept) =
        fetch_keeping(workspace, remote, targets, jobs, KEEP_FOR_CHECKOUT).await?;
    workspace.mark_verified(transfer.verified.iter().copied());
    let checkout = workspace.checkout_from(targets, force, &kept)?;
    Ok((transfer, checkout))
}

/// How the cache compares with a remote (`keel data status --remote`).
#[derive(Debug, Clone, Default)]
pub struct RemoteStatus {
    /// Objects the targets need that the remote holds.
    pub on_remote: u64,
    /// Objects the remote lacks (path, digest): `keel data push` sends them.
    pub not_pushed: Vec<(String, Digest)>,
    /// Objects neither the cache nor the remote holds (path, digest).
    pub lost: Vec<(String, Digest)>,
    /// Objects only the remote holds (path, digest): `keel data fetch` brings them.
    pub not_fetched: Vec<(String, Digest)>,
    /// Tracked directories whose manifest is not in the cache (their files
    /// are not compared).
    pub unknown: Vec<String>,
}

/// Compares the objects `targets` need with what the cache and the remote hold.
pub async fn status(
    workspace: &Workspace,
    remote: &Remote,
    targets: &[String],
) -> Result<RemoteStatus> {
    let (data, manifests) = needed(workspace, targets)?;
    let inventory = inventory(remote, true).await?;
    let mut status = RemoteStatus::default();
    for wanted in manifests.iter().chain(&data) {
        let cached = workspace.cache().contains(&wanted.digest);
        let remote_has = inventory.contains(&wanted.digest);
        let entry = (wanted.label.clone(), wanted.digest);
        match (cached, remote_has) {
            (true, true) => status.on_remote += 1,
            (false, true) => {
                status.on_remote += 1;
                status.not_fetched.push(entry);
            }
            (true, false) => status.not_pushed.push(entry),
            (false, false) => status.lost.push(entry),
        }
    }
    for manifest in &manifests {
        if !workspace.cache().contains(&manifest.digest) {
            status
                .unknown
                .push(manifest.label.trim_end_matches(" (manifest)").to_string());
        }
    }
    status.not_pushed.sort();
    status.lost.sort();
    status.not_fetched.sort();
    Ok(status)
}

/// What killed pushes left on a remote (see [`partial_uploads`]).
#[derive(Debug, Clone, Default)]
pub struct PartialUploads {
    /// Remote paths with their sizes.
    pub found: Vec<(String, u64)>,
    /// Whether they were deleted.
    pub removed: bool,
}

impl PartialUploads {
    /// Bytes they hold.
    pub fn bytes(&self) -> u64 {
        self.found.iter().map(|(_, size)| size).sum()
    }
}

/// `keel data gc --remote`: finds (and with `force` deletes) what pushes
/// killed midway left on the remote, last written more than `older_than`
/// ago (pushes running now are spared):
/// - a pack without its index (the index is written after the pack, so a
///   push killed in between leaves a pack no reader counts; its objects
///   are pushed again next time), and an index whose pack is gone;
/// - on a local-directory remote, `NAME#N` files: object_store writes each
///   object there, then renames it into place, so a killed push leaves one
///   that no listing shows.
///
/// Objects under their final names are always whole (an S3 PUT or a
/// completed multipart upload is atomic; locally, the rename), so nothing
/// else needs cleaning. On S3 an incomplete multipart upload is never
/// listed: the bucket's `AbortIncompleteMultipartUpload` lifecycle rule
/// removes those (docs). Unreferenced whole objects are kept: a remote is
/// shared by every clone and branch.
pub async fn partial_uploads(
    remote: &Remote,
    older_than: std::time::Duration,
    force: bool,
) -> Result<PartialUploads> {
    let now = std::time::SystemTime::now();
    let cutoff = now.checked_sub(older_than).unwrap_or(std::time::UNIX_EPOCH);
    let cutoff_ms = cutoff
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let listing = list_packs(remote).await?;
    let (packs, indexes) = split_packs(&listing);
    let mut stale: Vec<&object_store::ObjectMeta> = packs
        .iter()
        .filter(|(name, _)| !indexes.contains_key(*name))
        .chain(
            indexes
                .iter()
                .filter(|(name, _)| !packs.contains_key(*name)),
        )
        .map(|(_, meta)| *meta)
        .filter(|meta| meta.last_modified.timestamp_millis() <= cutoff_ms)
        .collect();
    stale.sort_by(|a, b| a.location.cmp(&b.location));
    let mut report = PartialUploads::default();
    for meta in &stale {
        report.found.push((meta.location.to_string(), meta.size));
    }
    let staged = match &remote.local_root {
        Some(root) => {
            let root = root.clone();
            tokio::task::spawn_blocking(move || {
                keel_artifacts::find_staged_uploads(&root, cutoff)
                    .into_iter()
                    .map(|(path, size)| {
                        let relative = path
                            .strip_prefix(&root)
                            .unwrap_or(&path)
                            .to_string_lossy()
                            .into_owned();
                        (path, relative, size)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|error| DataError::Invalid(format!("remote sweep failed: {error}")))?
        }
        None => Vec::new(),
    };
    report.found.extend(
        staged
            .iter()
            .map(|(_, relative, size)| (relative.clone(), *size)),
    );
    if force {
        for meta in &stale {
            match remote.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(remote_error(remote)(source)),
            }
        }
        for (path, _, _) in &staged {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(DataError::io(path, error)),
            }
        }
        report.removed = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_close_at_the_target_size_and_keep_order() {
        let object = |n: u64, size: u64| Wanted {
            digest: Digest::of_bytes(&n.to_le_bytes()),
            size,
            label: format!("f{n}"),
        };
        let half = PACK_TARGET / 2;
        let groups = pack_groups(vec![
            object(0, half),
            object(1, half),
            object(2, 10),
            object(3, 10),
        ]);
        let labels: Vec<Vec<&str>> = groups
            .iter()
            .map(|group| group.iter().map(|w| w.label.as_str()).collect())
            .collect();
        assert_eq!(labels, [vec!["f0", "f1"], vec!["f2", "f3"]]);
    }
}
