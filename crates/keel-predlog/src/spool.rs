//! The spool: a replica's append-only segment files on local disk, written
//! with group commit before any request is answered.
//!
//! A request encodes its frame (outside any lock), appends it to the pending
//! buffer under a mutex and takes a ticket. If no write is in progress it
//! becomes the leader: it takes the whole pending buffer — its own frame and
//! every frame appended meanwhile — and hands it to the OS with one `write()`
//! (plus `fdatasync` under [`FsyncPolicy::Always`]); the others wait for the
//! written ticket to pass theirs. Without contention a request writes its own
//! frame inline (one syscall, no wake-up); under load one write carries a
//! batch of concurrent requests. Nothing is acknowledged before its bytes are
//! in the OS, so `kill -9` of the process loses no answered request.
//!
//! Segments are rotated (sealed) by the compactor: it takes the leadership,
//! writes what is pending into the old segment, opens a fresh one, renames the
//! old one to its seq (`<seq>.seg`, fsync of the folder) and queues it for
//! compaction. A write that fails fails every request in the buffer (they get
//! 503) and marks the segment broken: the next leader starts a new one.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Stats;
use crate::segment::MAGIC;

/// When spool writes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never: a record is in the OS before its answer (survives `kill -9` of
    /// the process); power loss or a kernel crash can lose what the OS had not
    /// written back, at most the rows not yet compacted into (fsynced) Parquet.
    Never,
    /// Every compactor tick (at most 100 ms) the active segment is fsynced:
    /// power loss loses at most the last tick of acknowledged rows.
    Interval,
    /// Every group commit is fsynced before its requests are answered: power
    /// loss loses no acknowledged row (costs one `fdatasync` per batch).
    Always,
}

impl FsyncPolicy {
    /// `never`, `interval` or `always`.
    pub fn parse(text: &str) -> Option<FsyncPolicy> {
        match text {
            "never" => Some(FsyncPolicy::Never),
            "interval" => Some(FsyncPolicy::Interval),
            "always" => Some(FsyncPolicy::Always),
            _ => None,
        }
    }

    /// The name [`FsyncPolicy::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Never => "never",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Always => "always",
        }
    }
}

/// Why a record was not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// The log is shut down.
    Closed,
    /// The write to the spool failed.
    Failed,
}

/// A segment sealed and waiting for compaction.
pub(crate) struct Sealed {
    pub path: PathBuf,
    pub replica: String,
    pub seq: u64,
    /// Rows counted into the queue for it (subtracted once compacted).
    pub rows: u64,
    /// Arrival of its first row, Unix ms.
    pub first_ms: Option<i64>,
    /// The lock of an adopted replica's spool, held until its segments are done.
    pub _lock: Option<Arc<DirLock>>,
}

struct Active {
    file: Arc<File>,
    path: PathBuf,
    /// Rows appended (and not failed).
    rows: u64,
    /// When and at which arrival time its first frame came.
    first: Option<(Instant, i64)>,
    /// Models whose declaration frame is in this segment (or pending for it).
    declared: Vec<u32>,
    /// A write failed: the next leader starts a new segment first.
    broken: bool,
    /// Written since the last fsync (interval policy).
    unsynced: bool,
}

struct State {
    pending: Vec<u8>,
    pending_rows: u64,
    spare: Vec<u8>,
    /// Tickets handed out.
    appended: u64,
    /// Tickets whose write finished (successfully or not).
    written: u64,
    /// Ticket ranges `(after, upto]` whose write failed (the most recent ones).
    failed: VecDeque<(u64, u64)>,
    leader: bool,
    active: Active,
    closed: bool,
    size_signalled: bool,
}

impl State {
    fn outcome(&self, ticket: u64) -> Result<(), AppendError> {
        if self
            .failed
            .iter()
            .any(|(after, upto)| *after < ticket && ticket <= *upto)
        {
            Err(AppendError::Failed)
        } else {
            Ok(())
        }
    }
}

/// An exclusive `flock` on a replica's spool folder, released when dropped
/// (or when the process dies, however it dies).
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` unless another process holds it (`Ok(None)`).
    pub fn try_lock(dir: &Path) -> std::io::Result<Option<DirLock>> {
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                file.set_len(0)?;
                let _ = writeln!(file, "{}", std::process::id());
                Ok(Some(DirLock { _file: file }))
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The pid written by the holder, for messages.
    pub fn holder(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("lock"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
}

/// Fsyncs a folder (its entries: created, renamed, removed files).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The next seq: Unix ms, strictly increasing in this process.
pub(crate) struct SeqClock(AtomicU64);

impl SeqClock {
    pub fn new(at_least: u64) -> Self {
        SeqClock(AtomicU64::new(at_least))
    }

    pub fn next(&self) -> u64 {
        let now = now_ms().max(0) as u64;
        let mut last = self.0.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .0
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The file name of a sealed segment.
pub(crate) fn sealed_name(seq: u64) -> String {
    format!("{seq:013}.seg")
}

/// The seq of a sealed segment's file name.
pub(crate) fn parse_sealed_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

/// Whether `name` is a segment that was being written (not sealed).
pub(crate) fn is_open_name(name: &str) -> bool {
    name.starts_with("open-") && name.ends_with(".seg")
}

pub(crate) struct Spool {
    dir: PathBuf,
    replica: String,
    policy: FsyncPolicy,
    max_segment_rows: u64,
    stats: Arc<Stats>,
    seq: Arc<SeqClock>,
    state: Mutex<State>,
    written: Notify,
    sealed: Mutex<VecDeque<Sealed>>,
    compactor: OnceLock<std::thread::Thread>,
    opened: AtomicU64,
}

impl Spool {
    /// A spool writing into `dir` (locked by the caller), starting a fresh segment.
    pub fn open(
        dir: PathBuf,
        replica: String,
        policy: FsyncPolicy,
        max_segment_rows: u64,
        stats: Arc<Stats>,
        seq: Arc<SeqClock>,
    ) -> std::io::Result<Spool> {
        let opened = AtomicU64::new(0);
        let active = new_segment(&dir, policy, &opened)?;
        Ok(Spool {
            dir,
            replica,
            policy,
            max_segment_rows,
            stats,
            seq,
            state: Mutex::new(State {
                pending: Vec::with_capacity(64 * 1024),
                pending_rows: 0,
                spare: Vec::with_capacity(64 * 1024),
                appended: 0,
                written: 0,
                failed: VecDeque::new(),
                leader: false,
                active,
                closed: false,
                size_signalled: false,
            }),
            written: Notify::new(),
            sealed: Mutex::new(VecDeque::new()),
            compactor: OnceLock::new(),
            opened,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the compactor fsyncs the active segment on every tick.
    pub fn policy_syncs_on_tick(&self) -> bool {
        self.policy == FsyncPolicy::Interval
    }

    pub fn set_compactor(&self, thread: std::thread::Thread) {
        let _ = self.compactor.set(thread);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        unpoisoned(self.state.lock())
    }

    fn lock_sealed(&self) -> MutexGuard<'_, VecDeque<Sealed>> {
        unpoisoned(self.sealed.lock())
    }

    /// Appends `frame` (after model `declare`'s declaration if this segment
    /// does not have it yet) and returns once it is in the OS.
    pub async fn append(
        &self,
        declare: Option<(u32, &[u8])>,
        frame: &[u8],
        rows: u64,
        ts_ms: i64,
    ) -> Result<(), AppendError> {
        let (ticket, lead) = {
            let mut s = self.lock();
            if s.closed {
                return Err(AppendError::Closed);
            }
            if let Some((id, declaration)) = declare
                && !s.active.declared.contains(&id)
            {
                s.pending.extend_from_slice(declaration);
                s.active.declared.push(id);
            }
            s.pending.extend_from_slice(frame);
            s.pending_rows += rows;
            s.appended += 1;
            s.active.rows += rows;
            if s.active.first.is_none() {
                s.active.first = Some((Instant::now(), ts_ms));
                let _ = self.stats.oldest_pending_ms.compare_exchange(
                    0,
                    ts_ms.max(1) as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            if s.active.rows >= self.max_segment_rows && !s.size_signalled {
                s.size_signalled = true;
                if let Some(compactor) = self.compactor.get() {
                    compactor.unpark();
                }
            }
            let lead = !s.leader;
            s.leader = true;
            (s.appended, lead)
        };
        if lead {
            self.lead().await;
        }
        loop {
            {
                let s = self.lock();
                if s.written >= ticket {
                    return s.outcome(ticket);
                }
            }
            let notified = self.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lead = {
                let mut s = self.lock();
                if s.written >= ticket {
                    return s.outcome(ticket);
                }
                let lead = !s.leader;
                s.leader = true;
                lead
            };
            if lead {
                self.lead().await;
            } else {
                notified.await;
            }
        }
    }

    /// With the leadership held: writes everything pending, then gives the
    /// leadership up and wakes the waiters.
    async fn lead(&self) {
        match self.take_batch() {
            Err(error) => self.fail_pending(&error),
            Ok(Batch {
                buffer,
                rows,
                end,
                file,
            }) if self.policy == FsyncPolicy::Always && !buffer.is_empty() => {
                // fdatasync takes milliseconds: not on a runtime worker.
                let joined = tokio::task::spawn_blocking(move || {
                    let result = write_batch(&file, &buffer, true);
                    (buffer, result)
                })
                .await;
                match joined {
                    Ok((buffer, result)) => self.finish_batch(buffer, rows, end, result),
                    Err(join) => self.finish_batch(
                        Vec::new(),
                        rows,
                        end,
                        Err(std::io::Error::other(join.to_string())),
                    ),
                }
            }
            Ok(batch) => {
                let result = write_batch(&batch.file, &batch.buffer, false);
                self.finish_batch(batch.buffer, batch.rows, batch.end, result);
            }
        }
        self.release();
    }

    /// Takes the pending buffer (starting a new segment first if the current one is broken).
    fn take_batch(&self) -> std::io::Result<Batch> {
        let broken = self.lock().active.broken;
        if broken {
            let mut fresh = new_segment(&self.dir, self.policy, &self.opened)?;
            let old = {
                let mut s = self.lock();
                // What was appended since the failure goes to the fresh segment,
                // declarations included.
                fresh.declared = std::mem::take(&mut s.active.declared);
                fresh.rows = s.pending_rows;
                s.active.rows = s.active.rows.saturating_sub(s.pending_rows);
                if !s.pending.is_empty() {
                    fresh.first = Some((Instant::now(), now_ms()));
                }
                std::mem::replace(&mut s.active, fresh)
            };
            self.seal(old);
        }
        let mut s = self.lock();
        let spare = std::mem::take(&mut s.spare);
        let buffer = std::mem::replace(&mut s.pending, spare);
        Ok(Batch {
            buffer,
            rows: std::mem::take(&mut s.pending_rows),
            end: s.appended,
            file: s.active.file.clone(),
        })
    }

    /// Records the outcome of writing `buffer` (`rows` rows, tickets up to `end`).
    fn finish_batch(&self, mut buffer: Vec<u8>, rows: u64, end: u64, result: std::io::Result<()>) {
        let mut s = self.lock();
        match result {
            Ok(()) => {
                if !buffer.is_empty() {
                    self.stats.spool_writes.fetch_add(1, Ordering::Relaxed);
                    s.active.unsynced = true;
                }
                s.written = s.written.max(end);
            }
            Err(error) => {
                // This batch and everything appended since fail together.
                let after = s.written;
                let upto = s.appended;
                let lost = rows + s.pending_rows;
                tracing::error!(
                    segment = %s.active.path.display(), %error, rows = lost,
                    "prediction log: spool write failed; the requests get 503"
                );
                s.pending.clear();
                s.pending_rows = 0;
                s.written = upto;
                s.failed.push_back((after, upto));
                if s.failed.len() > 64 {
                    s.failed.pop_front();
                }
                s.active.rows = s.active.rows.saturating_sub(lost);
                s.active.broken = true;
                s.active.declared.clear();
                self.stats.queue_rows.fetch_sub(lost, Ordering::AcqRel);
                self.stats.rows_failed.fetch_add(lost, Ordering::Relaxed);
            }
        }
        buffer.clear();
        if buffer.capacity() <= 4 << 20 && buffer.capacity() > s.spare.capacity() {
            s.spare = buffer;
        }
    }

    /// No batch could be started (no new segment): fail what is pending.
    fn fail_pending(&self, error: &std::io::Error) {
        self.finish_batch(
            Vec::new(),
            0,
            0,
            Err(std::io::Error::new(error.kind(), error.to_string())),
        );
    }

    fn release(&self) {
        self.lock().leader = false;
        self.written.notify_waiters();
    }

    /// Takes the leadership from a plain thread (the compactor), waiting for a
    /// leader's write to finish.
    fn lead_blocking(&self) {
        loop {
            {
                let mut s = self.lock();
                if !s.leader {
                    s.leader = true;
                    return;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether the active segment is due for sealing: its first row is
    /// `interval` old, or it holds `max_segment_rows`.
    pub fn due(&self, interval: Duration) -> bool {
        let s = self.lock();
        s.active.rows >= self.max_segment_rows
            || s.active
                .first
                .is_some_and(|(at, _)| at.elapsed() >= interval)
    }

    /// Seals the active segment (if it has rows) and starts a fresh one; with
    /// `close`, the spool takes no more records.
    ///
    /// The pending buffer is taken and the fresh segment put in place under
    /// one lock: a frame appended after that point is written to the fresh
    /// segment and declares its model there; everything before it goes to the
    /// old one.
    pub fn rotate(&self, close: bool) {
        self.lead_blocking();
        if self.lock().active.broken {
            // A failed write left the active segment broken: what is pending
            // goes to a fresh segment first (take_batch does that).
            match self.take_batch() {
                Ok(batch) => {
                    let result = write_batch(
                        &batch.file,
                        &batch.buffer,
                        self.policy == FsyncPolicy::Always,
                    );
                    self.finish_batch(batch.buffer, batch.rows, batch.end, result);
                }
                Err(error) => self.fail_pending(&error),
            }
        }
        let empty = {
            let s = self.lock();
            s.active.rows == 0 && s.active.first.is_none() && s.pending.is_empty()
        };
        if empty && !close {
            return self.release();
        }
        let fresh = if close {
            None
        } else {
            match new_segment(&self.dir, self.policy, &self.opened) {
                Ok(fresh) => Some(fresh),
                Err(error) => {
                    tracing::error!(dir = %self.dir.display(), %error, "prediction log: cannot start a new spool segment");
                    return self.release();
                }
            }
        };
        let (buffer, rows, end, mut old) = {
            let mut s = self.lock();
            if close {
                s.closed = true;
            }
            let spare = std::mem::take(&mut s.spare);
            let buffer = std::mem::replace(&mut s.pending, spare);
            let rows = std::mem::take(&mut s.pending_rows);
            let replacement = fresh.unwrap_or_else(|| Active {
                // The closed spool keeps a placeholder that nobody writes.
                file: s.active.file.clone(),
                path: PathBuf::new(),
                rows: 0,
                first: None,
                declared: Vec::new(),
                broken: false,
                unsynced: false,
            });
            s.size_signalled = false;
            (
                buffer,
                rows,
                s.appended,
                std::mem::replace(&mut s.active, replacement),
            )
        };
        let result = write_batch(&old.file, &buffer, self.policy == FsyncPolicy::Always);
        {
            let mut s = self.lock();
            match result {
                Ok(()) => {
                    if !buffer.is_empty() {
                        self.stats.spool_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::error!(
                        segment = %old.path.display(), %error, rows,
                        "prediction log: spool write failed; the requests get 503"
                    );
                    let after = s.written;
                    s.failed.push_back((after, end));
                    if s.failed.len() > 64 {
                        s.failed.pop_front();
                    }
                    old.rows = old.rows.saturating_sub(rows);
                    self.stats.queue_rows.fetch_sub(rows, Ordering::AcqRel);
                    self.stats.rows_failed.fetch_add(rows, Ordering::Relaxed);
                }
            }
            s.written = s.written.max(end);
        }
        self.release();
        self.seal(old);
    }

    /// Renames a finished segment to its seq and queues it; an empty one is removed.
    fn seal(&self, old: Active) {
        if old.path.as_os_str().is_empty() {
            return;
        }
        if old.rows == 0 && old.first.is_none() {
            let _ = std::fs::remove_file(&old.path);
            return;
        }
        let seq = self.seq.next();
        let path = self.dir.join(sealed_name(seq));
        let sealed_path = match std::fs::rename(&old.path, &path).and_then(|()| sync_dir(&self.dir))
        {
            Ok(()) => path,
            Err(error) => {
                // Compacted under its open name; recovery would seal it again.
                tracing::error!(segment = %old.path.display(), %error, "prediction log: cannot seal a spool segment");
                old.path
            }
        };
        self.push_sealed(Sealed {
            path: sealed_path,
            replica: self.replica.clone(),
            seq,
            rows: old.rows,
            first_ms: old.first.map(|(_, ts)| ts),
            _lock: None,
        });
    }

    pub fn push_sealed(&self, sealed: Sealed) {
        self.lock_sealed().push_back(sealed);
    }

    /// The oldest sealed segment, left in the queue until [`Spool::pop_sealed`].
    pub fn with_front<T>(&self, f: impl FnOnce(Option<&Sealed>) -> T) -> T {
        f(self.lock_sealed().front())
    }

    pub fn pop_sealed(&self) -> Option<Sealed> {
        self.lock_sealed().pop_front()
    }

    pub fn sealed_len(&self) -> usize {
        self.lock_sealed().len()
    }

    /// Fsyncs the active segment if it was written since the last time.
    pub fn sync_active(&self) {
        let file = {
            let mut s = self.lock();
            if !s.active.unsynced {
                return;
            }
            s.active.unsynced = false;
            s.active.file.clone()
        };
        if let Err(error) = file.sync_data() {
            tracing::error!(%error, "prediction log: cannot fsync the spool segment");
        }
    }

    /// Arrival of the oldest row not yet compacted (0: none), for the lag gauge.
    pub fn oldest_pending_ms(&self) -> u64 {
        let sealed = self.lock_sealed().iter().filter_map(|s| s.first_ms).min();
        let active = self.lock().active.first.map(|(_, ts)| ts);
        sealed
            .into_iter()
            .chain(active)
            .min()
            .map_or(0, |ts| ts.max(1) as u64)
    }
}

/// A guard even if a thread panicked holding the lock: the state is plain
/// counters and buffers, valid at every step.
fn unpoisoned<T>(result: std::sync::LockResult<MutexGuard<'_, T>>) -> MutexGuard<'_, T> {
    result.unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Batch {
    buffer: Vec<u8>,
    rows: u64,
    end: u64,
    file: Arc<File>,
}

fn write_batch(file: &File, buffer: &[u8], sync: bool) -> std::io::Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    let mut writer = file;
    writer.write_all(buffer)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Creates `open-<pid>-<n>.seg` with the magic; the folder is fsynced unless
/// the policy is [`FsyncPolicy::Never`].
fn new_segment(dir: &Path, policy: FsyncPolicy, opened: &AtomicU64) -> std::io::Result<Active> {
    let n = opened.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("open-{}-{n}.seg", std::process::id()));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(MAGIC)?;
    if policy != FsyncPolicy::Never {
        file.sync_data()?;
        sync_dir(dir)?;
    }
    Ok(Active {
        file: Arc::new(file),
        path,
        rows: 0,
        first: None,
        declared: Vec::new(),
        broken: false,
        unsynced: false,
    })
}
