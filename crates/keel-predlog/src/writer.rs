//! The writer a serving process holds: [`PredictionLog`].
//!
//! - Requests call [`PredictionLog::log`] / [`PredictionLog::feedback`]: the
//!   rows are counted against the capacity (beyond it: refused, the request
//!   gets 503, never an unlogged answer), encoded and group-committed to the
//!   spool ([`crate::spool`]); the call returns once the record is in the OS.
//! - One background thread, the compactor, seals the active segment at most
//!   `flush_interval` after its first row (or at `max_segment_rows`), turns
//!   sealed segments into Parquet under the log root ([`crate::compact`]),
//!   then deletes them; a failed upload is retried with backoff (the rows stay
//!   counted against the capacity meanwhile). Under [`FsyncPolicy::Interval`]
//!   it also fsyncs the active segment every tick.
//! - At start, leftover segments of this replica (a crash) and of other
//!   replicas whose spool folder nobody holds (a replica that died for good,
//!   or came back under another id) are sealed and compacted first.
//! - [`PredictionLog::shutdown`] stops taking records, seals and compacts
//!   everything; what cannot be uploaded stays in the spool for the next start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::compact;
use crate::error::{LogError, Result};
use crate::layout::check_replica;
use crate::schema::ModelSchema;
use crate::segment::{self, Feedback, Prediction};
use crate::spool::{
    AppendError, DirLock, FsyncPolicy, Sealed, SeqClock, Spool, is_open_name, parse_sealed_name,
    sealed_name, sync_dir,
};
use crate::store::{Location, Store};

/// Counters of the log, read by the server's `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows accepted (in the spool) and not yet in a Parquet file.
    pub queue_rows: AtomicU64,
    /// Arrival (Unix ms) of the oldest row not yet in a Parquet file; 0 when none.
    pub oldest_pending_ms: AtomicU64,
    /// Prediction rows written to Parquet files.
    pub rows_written: AtomicU64,
    /// Feedback rows written to Parquet files.
    pub feedback_rows_written: AtomicU64,
    /// Parquet files written.
    pub files_written: AtomicU64,
    /// Rows whose spool write failed (their requests got 503).
    pub rows_failed: AtomicU64,
    /// Rows refused because the log was at capacity (their requests got 503).
    pub rows_refused: AtomicU64,
    /// `write()` calls to the spool (each carries one or more requests).
    pub spool_writes: AtomicU64,
    /// Compactions that failed and will be retried.
    pub compaction_failures: AtomicU64,
}

/// How the log is written.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The log root: a directory or `s3://bucket/prefix`.
    pub location: String,
    /// The spool root (local disk); `None`: [`default_spool`].
    pub spool: Option<PathBuf>,
    /// This replica's id (file names, the `replica` column, its spool folder).
    pub replica: String,
    /// Rows accepted but not yet in Parquet, at most (refused beyond).
    pub capacity_rows: u64,
    /// Longest time a row waits before its segment is sealed for compaction.
    pub flush_interval: Duration,
    /// Rows that seal a segment before the interval ends.
    pub max_segment_rows: u64,
    /// When spool writes reach stable storage.
    pub fsync: FsyncPolicy,
}

impl LogSettings {
    /// Defaults for `location` written by `replica`.
    pub fn new(location: impl Into<String>, replica: impl Into<String>) -> Self {
        LogSettings {
            location: location.into(),
            spool: None,
            replica: replica.into(),
            capacity_rows: 1_000_000,
            flush_interval: Duration::from_secs(1),
            max_segment_rows: 100_000,
            fsync: FsyncPolicy::Interval,
        }
    }
}

/// The spool root when none is given: `<log dir>/_spool` for a local log
/// (outside `predictions/` and `feedback/`, so readers of the tree never see
/// it); for `s3://` a local folder, `$XDG_STATE_HOME/keel/spool` (else
/// `~/.local/state/keel/spool`, else `./.keel-spool`).
pub fn default_spool(location: &str) -> Result<PathBuf> {
    Ok(match Location::parse(location)? {
        Location::Local(dir) => dir.join("_spool"),
        Location::S3(_) => {
            if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                PathBuf::from(state).join("keel/spool")
            } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                PathBuf::from(home).join(".local/state/keel/spool")
            } else {
                PathBuf::from(".keel-spool")
            }
        }
    })
}

/// A record was not logged; the request must not be answered with a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The log holds `capacity_rows` not yet compacted.
    #[error("the prediction log is at capacity")]
    Full,
    /// The spool write failed.
    #[error("the prediction log cannot write its spool")]
    Failed,
    /// The log is shutting down.
    #[error("the prediction log is shut down")]
    Closed,
}

/// A model registered with the log: its schema and its id in the spool.
#[derive(Debug, Clone)]
pub struct LoggedModel {
    id: u32,
    declaration: Arc<[u8]>,
    schema: Arc<ModelSchema>,
}

impl LoggedModel {
    /// The model's schema.
    pub fn schema(&self) -> &ModelSchema {
        &self.schema
    }
}

/// Name of the file in a replica's spool folder that records the log root it
/// writes to, so segments are never compacted into another log.
const LOCATION_FILE: &str = "location";

/// The prediction and feedback log of one serving process.
pub struct PredictionLog {
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    capacity_rows: u64,
    next_model: AtomicU32,
    location: Location,
    replica: String,
    stop: Arc<AtomicBool>,
    abandon: Arc<AtomicBool>,
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: DirLock,
}

impl PredictionLog {
    /// Locks this replica's spool folder, takes over leftover segments (its
    /// own and those of replicas nobody holds) and starts the compactor.
    pub fn start(settings: LogSettings, stats: Arc<Stats>) -> Result<PredictionLog> {
        check_replica(&settings.replica)?;
        let location = Location::parse(&settings.location)?;
        let store = Store::open(&location, true)?;
        let root = match &settings.spool {
            Some(root) => root.clone(),
            None => default_spool(&settings.location)?,
        };
        let dir = root.join(&settings.replica);
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(dir.display(), e))?;
        let lock = lock_own(&dir)?;
        let location_text = location.display();
        let mut recovered = Vec::new();
        let mut last_seq = 0;
        let own = scan(&dir, &settings.replica, &location_text, None, &mut last_seq)?;
        recovered.extend(own);
        std::fs::write(dir.join(LOCATION_FILE), &location_text)
            .and_then(|()| sync_dir(&dir))
            .map_err(|e| LogError::io(dir.display(), e))?;
        recovered.extend(adopt_orphans(
            &root,
            &settings.replica,
            &location_text,
            &mut last_seq,
        ));
        let seq = Arc::new(SeqClock::new(last_seq));
        // Leftover open segments become sealed ones now.
        let mut queue = Vec::new();
        for found in recovered {
            let (path, seq_value) = match found.seq {
                Some(existing) => (found.path, existing),
                None => {
                    let value = seq.next();
                    let sealed = found.dir.join(sealed_name(value));
                    std::fs::rename(&found.path, &sealed)
                        .and_then(|()| sync_dir(&found.dir))
                        .map_err(|e| LogError::io(found.path.display(), e))?;
                    (sealed, value)
                }
            };
            queue.push(Sealed {
                path,
                replica: found.replica,
                seq: seq_value,
                rows: found.rows,
                first_ms: found.first_ms,
                _lock: found.lock,
            });
        }
        let spool = Arc::new(
            Spool::open(
                dir.clone(),
                settings.replica.clone(),
                settings.fsync,
                settings.max_segment_rows.max(1),
                stats.clone(),
                seq,
            )
            .map_err(|e| LogError::io(dir.display(), e))?,
        );
        let recovered_rows: u64 = queue.iter().map(|s| s.rows).sum();
        if !queue.is_empty() {
            tracing::info!(
                segments = queue.len(),
                rows = recovered_rows,
                spool = %root.display(),
                "prediction log: compacting segments left by an earlier process"
            );
        }
        for sealed in queue {
            spool.push_sealed(sealed);
        }
        stats.queue_rows.fetch_add(recovered_rows, Ordering::AcqRel);
        stats
            .oldest_pending_ms
            .store(spool.oldest_pending_ms(), Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(AtomicBool::new(false));
        let compactor = {
            let spool = spool.clone();
            let stats = stats.clone();
            let stop = stop.clone();
            let abandon = abandon.clone();
            let interval = settings.flush_interval;
            std::thread::Builder::new()
                .name("keel-prediction-log".into())
                .spawn(move || run_compactor(&spool, &store, &stats, interval, &stop, &abandon))
                .map_err(|e| LogError::io("prediction log thread", e))?
        };
        spool.set_compactor(compactor.thread().clone());
        Ok(PredictionLog {
            spool,
            stats,
            capacity_rows: settings.capacity_rows,
            next_model: AtomicU32::new(0),
            location,
            replica: settings.replica,
            stop,
            abandon,
            compactor: Mutex::new(Some(compactor)),
            _lock: lock,
        })
    }

    /// The log root.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// This replica's spool folder.
    pub fn spool_dir(&self) -> &Path {
        self.spool.dir()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Registers a model whose predictions will be logged.
    pub fn register(&self, schema: ModelSchema) -> LoggedModel {
        let id = self.next_model.fetch_add(1, Ordering::Relaxed);
        LoggedModel {
            id,
            declaration: segment::encode_model(id, &schema).into(),
            schema: Arc::new(schema),
        }
    }

    fn reserve(&self, rows: u64) -> Result<(), Refused> {
        let queued = self.stats.queue_rows.fetch_add(rows, Ordering::AcqRel);
        if queued + rows > self.capacity_rows {
            self.release(rows);
            return Err(Refused::Full);
        }
        Ok(())
    }

    fn release(&self, rows: u64) {
        self.stats.queue_rows.fetch_sub(rows, Ordering::AcqRel);
        self.stats.rows_refused.fetch_add(rows, Ordering::Relaxed);
    }

    fn outcome(&self, result: Result<(), AppendError>, rows: u64) -> Result<(), Refused> {
        match result {
            Ok(()) => Ok(()),
            Err(AppendError::Closed) => {
                self.release(rows);
                Err(Refused::Closed)
            }
            // The spool already took the rows off the queue.
            Err(AppendError::Failed) => Err(Refused::Failed),
        }
    }

    /// Logs one answered request; returns once the record is in the OS.
    pub async fn log(
        &self,
        model: &LoggedModel,
        prediction: &Prediction<'_>,
    ) -> Result<(), Refused> {
        let rows = prediction.rows as u64;
        self.reserve(rows)?;
        let frame = segment::encode_prediction(model.id, prediction);
        let result = self
            .spool
            .append(
                Some((model.id, &model.declaration)),
                &frame,
                rows,
                prediction.ts_ms,
            )
            .await;
        self.outcome(result, rows)
    }

    /// Logs feedback for `model` received at `ts_ms`; returns once it is in the OS.
    pub async fn feedback(
        &self,
        model: &str,
        ts_ms: i64,
        items: &[Feedback],
    ) -> Result<(), Refused> {
        let rows = items.len() as u64;
        self.reserve(rows)?;
        let frame = segment::encode_feedback(model, ts_ms, items);
        let result = self.spool.append(None, &frame, rows, ts_ms).await;
        self.outcome(result, rows)
    }

    /// Stops taking records, seals the active segment and compacts everything
    /// (blocking; call it from a blocking context). What cannot be uploaded
    /// stays in the spool and is compacted at the next start.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let handle = self.compactor.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for PredictionLog {
    fn drop(&mut self) {
        // Dropped without shutdown (a panic, a test): the compactor stops where
        // it is and the spool is left to the next start, as after a crash.
        self.abandon.store(true, Ordering::Release);
        if let Some(handle) = self.compactor.lock().ok().and_then(|mut h| h.take()) {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

/// Locks `dir`, waiting up to 30 s for a process that is adopting it.
fn lock_own(dir: &Path) -> Result<DirLock> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(lock) = DirLock::try_lock(dir).map_err(|e| LogError::io(dir.display(), e))? {
            return Ok(lock);
        }
        if Instant::now() >= deadline {
            return Err(LogError::Config(format!(
                "the prediction-log spool {} is in use by another process (pid {}): give each replica its own --replica-id or --log-spool",
                dir.display(),
                DirLock::holder(dir)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A segment found at start.
struct Found {
    dir: PathBuf,
    path: PathBuf,
    replica: String,
    /// `None`: still open (sealed before it is queued).
    seq: Option<u64>,
    rows: u64,
    first_ms: Option<i64>,
    lock: Option<Arc<DirLock>>,
}

/// The segments in a replica's spool folder; an error when they belong to
/// another log root (unless it holds none).
fn scan(
    dir: &Path,
    replica: &str,
    location: &str,
    lock: Option<Arc<DirLock>>,
    last_seq: &mut u64,
) -> Result<Vec<Found>> {
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir.display(), e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| LogError::io(dir.display(), e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let seq = parse_sealed_name(name);
        if seq.is_none() && !is_open_name(name) {
            continue;
        }
        if let Some(seq) = seq {
            *last_seq = (*last_seq).max(seq);
        }
        let bytes = std::fs::read(&path).map_err(|e| LogError::io(path.display(), e))?;
        let Some((rows, first_ms)) = compact::count(&bytes) else {
            tracing::error!(segment = %path.display(), "prediction log: not a spool segment; left alone");
            continue;
        };
        if rows == 0 && seq.is_none() {
            // Opened just before the process stopped; nothing in it.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        found.push(Found {
            dir: dir.to_path_buf(),
            path,
            replica: replica.to_string(),
            seq,
            rows,
            first_ms,
            lock: lock.clone(),
        });
    }
    if !found.is_empty() {
        let recorded = std::fs::read_to_string(dir.join(LOCATION_FILE)).unwrap_or_default();
        if !recorded.is_empty() && recorded != location {
            return Err(LogError::Config(format!(
                "the prediction-log spool {} holds segments for the log {recorded:?}, not {location:?}: \
                 start once with --log-dir {recorded} to compact them, or use another --log-spool",
                dir.display()
            )));
        }
    }
    found.sort_by_key(|f| (f.seq.unwrap_or(u64::MAX), f.path.clone()));
    Ok(found)
}

/// Segments of other replicas' spool folders under `root` that no live
/// process holds and that write to the same log root.
fn adopt_orphans(root: &Path, own: &str, location: &str, last_seq: &mut u64) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(replica) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if replica == own || !dir.is_dir() || check_replica(&replica).is_err() {
            continue;
        }
        let recorded = std::fs::read_to_string(dir.join(LOCATION_FILE)).unwrap_or_default();
        if recorded != location {
            continue;
        }
        let lock = match DirLock::try_lock(&dir) {
            Ok(Some(lock)) => Arc::new(lock),
            _ => continue,
        };
        match scan(&dir, &replica, location, Some(lock), last_seq) {
            Ok(segments) => found.extend(segments),
            Err(error) => tracing::warn!(%error, "prediction log: orphan spool left alone"),
        }
    }
    found
}

/// The compactor: seals due segments, fsyncs under the interval policy,
/// compacts sealed segments; on stop, seals and compacts everything.
fn run_compactor(
    spool: &Spool,
    store: &Store,
    stats: &Stats,
    interval: Duration,
    stop: &AtomicBool,
    abandon: &AtomicBool,
) {
    let tick = (interval / 10).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    let mut stop_deadline: Option<Instant> = None;
    loop {
        if abandon.load(Ordering::Acquire) {
            return;
        }
        let stopping = stop.load(Ordering::Acquire);
        if stopping && stop_deadline.is_none() {
            spool.rotate(true);
            stop_deadline = Some(Instant::now() + Duration::from_secs(10));
            retry_at = None;
        } else if !stopping && spool.due(interval.saturating_sub(tick)) {
            spool.rotate(false);
        }
        if spool.policy_syncs_on_tick() {
            spool.sync_active();
        }
        if retry_at.is_none_or(|at| Instant::now() >= at) {
            retry_at = None;
            while spool.sealed_len() > 0 && !abandon.load(Ordering::Acquire) {
                match compact_front(spool, store, stats) {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(error) => {
                        stats.compaction_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, retry_in_ms = backoff.as_millis() as u64,
                            "prediction log: compaction failed; the rows stay in the spool and are retried");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break;
                    }
                }
            }
            stats
                .oldest_pending_ms
                .store(spool.oldest_pending_ms(), Ordering::Relaxed);
        }
        if let Some(deadline) = stop_deadline {
            let left = spool.sealed_len();
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::error!(
                    segments = left,
                    spool = %spool.dir().display(),
                    "prediction log: segments not compacted at shutdown stay in the spool for the next start"
                );
                return;
            }
        }
        std::thread::park_timeout(retry_at.map_or(tick, |at| {
            at.saturating_duration_since(Instant::now()).min(tick)
        }));
    }
}

/// Compacts the oldest sealed segment and deletes it.
fn compact_front(spool: &Spool, store: &Store, stats: &Stats) -> Result<()> {
    let (path, replica, seq) = spool
        .with_front(|front| front.map(|s| (s.path.clone(), s.replica.clone(), s.seq)))
        .ok_or_else(|| LogError::Config("no sealed segment".into()))?;
    let bytes = std::fs::read(&path).map_err(|e| LogError::io(path.display(), e))?;
    let name = path.display().to_string();
    let compacted = compact::compact(store, &name, &bytes, &replica, seq)?;
    if compacted.damaged_bytes > 0 {
        tracing::warn!(
            segment = name,
            bytes = compacted.damaged_bytes,
            "prediction log: a torn tail (unanswered requests of a crash) was left out"
        );
    }
    if let Err(error) = std::fs::remove_file(&path) {
        // Compacting it again later writes the same files: no duplicates.
        tracing::warn!(segment = name, %error, "prediction log: cannot remove a compacted segment");
    }
    // Counted as written before it leaves the queue: a reader of both never
    // sees a row in neither.
    stats
        .rows_written
        .fetch_add(compacted.rows, Ordering::Relaxed);
    stats
        .feedback_rows_written
        .fetch_add(compacted.feedback_rows, Ordering::Relaxed);
    stats
        .files_written
        .fetch_add(compacted.files, Ordering::Relaxed);
    if let Some(sealed) = spool.pop_sealed() {
        stats.queue_rows.fetch_sub(sealed.rows, Ordering::AcqRel);
    }
    Ok(())
}
