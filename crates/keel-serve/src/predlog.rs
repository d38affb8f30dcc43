//! The prediction log and the feedback log, as `prediction-log-spec.md` says:
//! Parquet files under `<log_dir>/<model_name>/{predictions,feedback}/`,
//! each written to a hidden temporary name, fsynced and renamed, so a reader
//! never sees a partial file.
//!
//! Request handlers hand a [`LogRecord`] to [`PredictionLog::try_log`], which
//! only pushes it onto a channel (no I/O, no lock held by the writer). Memory is
//! bounded by rows: a record is refused (the request gets 503) when the rows
//! accepted but not yet written would pass the capacity. One background thread
//! groups records by model (one schema per model version) and writes a file per
//! group at most `flush_interval` after the first record of a batch arrived, or
//! sooner when `max_file_rows` accumulate. Shutdown writes what is buffered.
//! A `kill -9` loses the records of the last flush interval (≤ 1 s by default).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_engine::{Batch, Column, InputKind, Predictions, ServingSignature};
use parquet::basic::{Compression, ConvertedType, Repetition, Type as PhysicalType};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::metrics::Metrics;

/// The model a record belongs to: it fixes the file's schema.
#[derive(Debug)]
pub struct LogModel {
    /// Registered name (the log folder).
    pub name: String,
    /// Version, or "local".
    pub version: String,
    /// Inputs and outputs.
    pub signature: ServingSignature,
}

/// One request's worth of prediction-log rows.
pub struct LogRecord {
    /// Returned in `x-request-id`.
    pub request_id: Arc<str>,
    /// Request arrival, Unix ms.
    pub ts_ms: i64,
    /// The model that answered.
    pub model: Arc<LogModel>,
    /// primary, canary or shadow.
    pub role: &'static str,
    /// Whole-request latency.
    pub latency_us: i64,
    /// The inputs.
    pub batch: Arc<Batch>,
    /// The outputs.
    pub predictions: Predictions,
    /// Per-row flags (empty when none).
    pub flags: Vec<Option<String>>,
}

enum Message {
    Record(LogRecord),
    Shutdown,
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Root folder (`<dir>/<model>/predictions/...`).
    pub dir: PathBuf,
    /// Rows accepted but not yet written, at most.
    pub capacity_rows: u64,
    /// Longest time a row waits in memory.
    pub flush_interval: Duration,
    /// Rows that trigger a write before the interval ends.
    pub max_file_rows: usize,
}

/// The log is full: the caller answers 503.
#[derive(Debug)]
pub struct LogFull;

/// Handle to the background writer.
pub struct PredictionLog {
    sender: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
    capacity_rows: u64,
    closed: AtomicBool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
}

impl PredictionLog {
    /// Starts the writer thread.
    pub fn start(settings: LogSettings, metrics: Arc<Metrics>) -> std::io::Result<PredictionLog> {
        std::fs::create_dir_all(&settings.dir)?;
        let (sender, receiver) = mpsc::channel();
        let writer_metrics = metrics.clone();
        let writer_settings = settings.clone();
        let writer = std::thread::Builder::new()
            .name("keel-prediction-log".into())
            .spawn(move || run_writer(receiver, writer_settings, writer_metrics))?;
        Ok(PredictionLog {
            sender,
            metrics,
            capacity_rows: settings.capacity_rows,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(writer)),
            dir: settings.dir,
        })
    }

    /// The root folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `record` unless that would pass the capacity (or the log is shut down).
    pub fn try_log(&self, record: LogRecord) -> Result<(), LogFull> {
        let rows = record.batch.rows as u64;
        let queued = self
            .metrics
            .log_queue_rows
            .fetch_add(rows, Ordering::AcqRel);
        if queued + rows > self.capacity_rows || self.closed.load(Ordering::Acquire) {
            self.metrics
                .log_queue_rows
                .fetch_sub(rows, Ordering::AcqRel);
            self.metrics
                .log_rows_refused
                .fetch_add(rows, Ordering::Relaxed);
            return Err(LogFull);
        }
        if self.sender.send(Message::Record(record)).is_err() {
            self.metrics
                .log_queue_rows
                .fetch_sub(rows, Ordering::AcqRel);
            return Err(LogFull);
        }
        Ok(())
    }

    /// Writes everything queued and stops the writer (blocking; call from a blocking context).
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.sender.send(Message::Shutdown);
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

struct Group {
    model: Arc<LogModel>,
    records: Vec<LogRecord>,
}

/// The writer polls the channel on a short tick instead of blocking on it: a
/// receiver blocked in `recv` makes every send a futex wake and a context
/// switch (measured: half the throughput on 2 cores); a parked one costs the
/// senders nothing. Shutdown unparks it at once.
fn run_writer(receiver: mpsc::Receiver<Message>, settings: LogSettings, metrics: Arc<Metrics>) {
    let tick =
        (settings.flush_interval / 10).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut groups: Vec<Group> = Vec::new();
    let mut buffered_rows = 0usize;
    let mut deadline: Option<Instant> = None;
    loop {
        let mut stop = false;
        loop {
            match receiver.try_recv() {
                Ok(Message::Record(record)) => {
                    if deadline.is_none() {
                        // One tick of slack: a row is in a file within flush_interval.
                        deadline =
                            Some(Instant::now() + settings.flush_interval.saturating_sub(tick));
                        metrics
                            .log_oldest_pending_ms
                            .store(record.ts_ms.max(1) as u64, Ordering::Relaxed);
                    }
                    buffered_rows += record.batch.rows;
                    add(&mut groups, record);
                }
                Ok(Message::Shutdown) | Err(TryRecvError::Disconnected) => {
                    stop = true;
                    // Records that raced the shutdown message.
                    while let Ok(Message::Record(record)) = receiver.try_recv() {
                        add(&mut groups, record);
                    }
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if stop {
            flush(&settings.dir, &mut groups, &metrics);
            return;
        }
        if buffered_rows >= settings.max_file_rows || deadline.is_some_and(|d| Instant::now() >= d)
        {
            flush(&settings.dir, &mut groups, &metrics);
            buffered_rows = 0;
            deadline = None;
        }
        std::thread::park_timeout(tick);
    }
}

/// Adds `record` to its model's group (one file schema per model version).
fn add(groups: &mut Vec<Group>, record: LogRecord) {
    match groups
        .iter_mut()
        .find(|g| Arc::ptr_eq(&g.model, &record.model))
    {
        Some(group) => group.records.push(record),
        None => groups.push(Group {
            model: record.model.clone(),
            records: vec![record],
        }),
    }
}

fn flush(dir: &Path, groups: &mut Vec<Group>, metrics: &Metrics) {
    for group in groups.drain(..) {
        let rows: u64 = group.records.iter().map(|r| r.batch.rows as u64).sum();
        let folder = dir.join(safe_name(&group.model.name)).join("predictions");
        match write_predictions(&folder, &group) {
            Ok(_) => {
                metrics.log_rows_written.fetch_add(rows, Ordering::Relaxed);
                metrics.log_files_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(folder = %folder.display(), %error, rows, "prediction log: cannot write a file; rows lost");
                metrics.log_rows_failed.fetch_add(rows, Ordering::Relaxed);
            }
        }
        metrics.log_queue_rows.fetch_sub(rows, Ordering::AcqRel);
    }
    metrics.log_oldest_pending_ms.store(0, Ordering::Relaxed);
}

/// A model name as a folder name: path separators and dot-only names replaced.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// One Parquet column's values.
enum ColumnData {
    Text {
        values: Vec<ByteArray>,
        /// Definition levels (1 = present) for a nullable column.
        defs: Option<Vec<i16>>,
    },
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Double {
        values: Vec<f64>,
        defs: Option<Vec<i16>>,
    },
}

impl ColumnData {
    fn text_required<'a>(values: impl Iterator<Item = &'a str>) -> Self {
        ColumnData::Text {
            values: values
                .map(|v| ByteArray::from(v.as_bytes().to_vec()))
                .collect(),
            defs: None,
        }
    }

    fn text_optional<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut present = Vec::new();
        let mut defs = Vec::new();
        for value in values {
            defs.push(i16::from(value.is_some()));
            if let Some(v) = value {
                present.push(ByteArray::from(v.as_bytes().to_vec()));
            }
        }
        ColumnData::Text {
            values: present,
            defs: Some(defs),
        }
    }

    /// Nullable doubles; NaN and infinities are written as null.
    fn double_optional(values: impl Iterator<Item = Option<f64>>) -> Self {
        let mut present = Vec::new();
        let mut defs = Vec::new();
        for value in values {
            let value = value.filter(|v| v.is_finite());
            defs.push(i16::from(value.is_some()));
            present.extend(value);
        }
        ColumnData::Double {
            values: present,
            defs: Some(defs),
        }
    }

    fn field(&self, name: &str) -> parquet::errors::Result<Type> {
        let (physical, nullable, text) = match self {
            ColumnData::Text { defs, .. } => (PhysicalType::BYTE_ARRAY, defs.is_some(), true),
            ColumnData::Int32(_) => (PhysicalType::INT32, false, false),
            ColumnData::Int64(_) => (PhysicalType::INT64, false, false),
            ColumnData::Double { defs, .. } => (PhysicalType::DOUBLE, defs.is_some(), false),
        };
        let mut builder =
            Type::primitive_type_builder(name, physical).with_repetition(if nullable {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            });
        if text {
            builder = builder.with_converted_type(ConvertedType::UTF8);
        }
        builder.build()
    }
}

static FILE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Writes `columns` as one Parquet file in `folder` (temp name, fsync, rename, fsync folder).
fn write_parquet(folder: &Path, columns: Vec<(String, ColumnData)>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(folder)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let seq = FILE_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let stem = format!("part-{now_ms}-{}-{seq}", std::process::id());
    let temporary = folder.join(format!(".{stem}.tmp"));
    let path = folder.join(format!("{stem}.parquet"));
    let result = write_file(&temporary, columns);
    if let Err(error) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, &path)?;
    if let Ok(directory) = std::fs::File::open(folder) {
        let _ = directory.sync_all();
    }
    Ok(path)
}

fn write_file(path: &Path, columns: Vec<(String, ColumnData)>) -> std::io::Result<()> {
    let io = |e: parquet::errors::ParquetError| std::io::Error::other(e.to_string());
    let fields = columns
        .iter()
        .map(|(name, data)| data.field(name).map(Arc::new))
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(io)?;
    let schema = Type::group_type_builder("prediction_log")
        .with_fields(fields)
        .build()
        .map_err(io)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path)?;
    let mut writer =
        SerializedFileWriter::new(BufWriter::new(file), Arc::new(schema), Arc::new(properties))
            .map_err(io)?;
    let mut row_group = writer.next_row_group().map_err(io)?;
    let mut data = columns.into_iter();
    while let Some(mut column) = row_group.next_column().map_err(io)? {
        let Some((name, values)) = data.next() else {
            return Err(std::io::Error::other("more Parquet columns than data"));
        };
        let mismatch = || std::io::Error::other(format!("column {name}: type mismatch"));
        match (column.untyped(), &values) {
            (ColumnWriter::ByteArrayColumnWriter(w), ColumnData::Text { values, defs }) => {
                w.write_batch(values, defs.as_deref(), None).map_err(io)?;
            }
            (ColumnWriter::Int32ColumnWriter(w), ColumnData::Int32(values)) => {
                w.write_batch(values, None, None).map_err(io)?;
            }
            (ColumnWriter::Int64ColumnWriter(w), ColumnData::Int64(values)) => {
                w.write_batch(values, None, None).map_err(io)?;
            }
            (ColumnWriter::DoubleColumnWriter(w), ColumnData::Double { values, defs }) => {
                w.write_batch(values, defs.as_deref(), None).map_err(io)?;
            }
            _ => return Err(mismatch()),
        }
        column.close().map_err(io)?;
    }
    row_group.close().map_err(io)?;
    let buffered = writer.into_inner().map_err(io)?;
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn write_predictions(folder: &Path, group: &Group) -> std::io::Result<PathBuf> {
    let records = &group.records;
    let signature = &group.model.signature;
    let rows: usize = records.iter().map(|r| r.batch.rows).sum();
    // Per output row: (record, row within the record).
    let index: Vec<(&LogRecord, usize)> = records
        .iter()
        .flat_map(|r| (0..r.batch.rows).map(move |i| (r, i)))
        .collect();
    let mut columns: Vec<(String, ColumnData)> = Vec::with_capacity(12 + signature.inputs.len());
    columns.push((
        "request_id".into(),
        ColumnData::text_required(index.iter().map(|(r, _)| &*r.request_id)),
    ));
    columns.push((
        "row".into(),
        ColumnData::Int32(index.iter().map(|(_, i)| *i as i32).collect()),
    ));
    columns.push((
        "ts_ms".into(),
        ColumnData::Int64(index.iter().map(|(r, _)| r.ts_ms).collect()),
    ));
    columns.push((
        "model_name".into(),
        ColumnData::text_required(index.iter().map(|_| group.model.name.as_str())),
    ));
    columns.push((
        "model_version".into(),
        ColumnData::text_required(index.iter().map(|_| group.model.version.as_str())),
    ));
    columns.push((
        "role".into(),
        ColumnData::text_required(index.iter().map(|(r, _)| r.role)),
    ));
    columns.push((
        "latency_us".into(),
        ColumnData::Int64(index.iter().map(|(r, _)| r.latency_us).collect()),
    ));
    for (c, input) in signature.inputs.iter().enumerate() {
        let name = format!("input.{}", input.name);
        let data = match input.kind {
            InputKind::Numeric { .. } => {
                ColumnData::double_optional(index.iter().map(|(r, i)| match &r.batch.columns[c] {
                    Column::Numeric(values) => Some(values[*i]),
                    Column::Categorical(_) => None,
                }))
            }
            InputKind::Categorical { .. } => {
                ColumnData::text_optional(index.iter().map(|(r, i)| match &r.batch.columns[c] {
                    Column::Categorical(values) => values[*i].as_deref(),
                    Column::Numeric(_) => None,
                }))
            }
        };
        columns.push((name, data));
    }
    let classes = signature.classes().unwrap_or(&[]);
    columns.push((
        "output.label".into(),
        ColumnData::text_optional(
            index
                .iter()
                .map(|(r, i)| class_row(r, *i).map(|(label, _)| label)),
        ),
    ));
    columns.push((
        "output.score".into(),
        ColumnData::double_optional(index.iter().map(|(r, i)| {
            class_row(r, *i).map(|(label, p)| {
                classes
                    .iter()
                    .position(|c| c == label)
                    .and_then(|k| p.get(k).copied())
                    .unwrap_or_else(|| p.iter().copied().fold(f64::NAN, f64::max))
            })
        })),
    ));
    for (k, class) in classes.iter().enumerate() {
        columns.push((
            format!("output.proba.{class}"),
            ColumnData::double_optional(
                index
                    .iter()
                    .map(|(r, i)| class_row(r, *i).and_then(|(_, p)| p.get(k).copied())),
            ),
        ));
    }
    columns.push((
        "output.value".into(),
        ColumnData::double_optional(index.iter().map(|(r, i)| match &r.predictions {
            Predictions::Values(values) => Some(values[*i]),
            Predictions::Classes { .. } => None,
        })),
    ));
    columns.push((
        "flags".into(),
        ColumnData::text_optional(
            index
                .iter()
                .map(|(r, i)| r.flags.get(*i).and_then(|f| f.as_deref())),
        ),
    ));
    debug_assert!(index.len() == rows);
    write_parquet(folder, columns)
}

/// A classifier's label and probabilities for row `i` of `record`.
fn class_row(record: &LogRecord, i: usize) -> Option<(&str, &[f64])> {
    match &record.predictions {
        Predictions::Classes {
            labels,
            probabilities,
            k,
        } => Some((labels[i].as_str(), &probabilities[i * k..(i + 1) * k])),
        Predictions::Values(_) => None,
    }
}

/// One label (or value) for a predicted row.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The prediction's request id.
    pub request_id: String,
    /// Row within the request.
    pub row: i32,
    /// The true class, for classifiers.
    pub label: Option<String>,
    /// The true value, for regressors.
    pub value: Option<f64>,
}

/// Writes feedback rows as one file under `<dir>/<model>/feedback/`.
pub fn write_feedback(
    dir: &Path,
    model_name: &str,
    items: &[Feedback],
) -> std::io::Result<PathBuf> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let columns = vec![
        (
            "request_id".to_string(),
            ColumnData::text_required(items.iter().map(|f| f.request_id.as_str())),
        ),
        (
            "row".to_string(),
            ColumnData::Int32(items.iter().map(|f| f.row).collect()),
        ),
        (
            "ts_ms".to_string(),
            ColumnData::Int64(items.iter().map(|_| now_ms).collect()),
        ),
        (
            "label".to_string(),
            ColumnData::text_optional(items.iter().map(|f| f.label.as_deref())),
        ),
        (
            "value".to_string(),
            ColumnData::double_optional(items.iter().map(|f| f.value)),
        ),
    ];
    write_parquet(&dir.join(safe_name(model_name)).join("feedback"), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{InputSpec, OutputKind, SignatureSource};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn model() -> Arc<LogModel> {
        Arc::new(LogModel {
            name: "risk".into(),
            version: "2".into(),
            signature: ServingSignature {
                inputs: vec![
                    InputSpec {
                        name: "income".into(),
                        kind: InputKind::Numeric {
                            range: None,
                            typical: 0.0,
                        },
                    },
                    InputSpec {
                        name: "region".into(),
                        kind: InputKind::categorical(vec!["n".into()]),
                    },
                ],
                output: OutputKind::Classes(vec!["no".into(), "yes".into()]),
                label_type: keel_engine::LabelType::Text,
                source: SignatureSource::Keel,
            },
        })
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    #[test]
    fn records_become_parquet_rows_with_the_spec_columns_and_shutdown_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let log = PredictionLog::start(
            LogSettings {
                dir: dir.path().to_path_buf(),
                capacity_rows: 10,
                flush_interval: Duration::from_secs(3600),
                max_file_rows: 1000,
            },
            metrics.clone(),
        )
        .unwrap();
        let model = model();
        let record = |id: &str, rows: usize| LogRecord {
            request_id: id.into(),
            ts_ms: 1_700_000_000_000,
            model: model.clone(),
            role: "primary",
            latency_us: 250,
            batch: Arc::new(Batch {
                rows,
                columns: vec![
                    Column::Numeric((0..rows).map(|i| i as f64).collect()),
                    Column::Categorical((0..rows).map(|_| None).collect()),
                ],
            }),
            predictions: Predictions::Classes {
                labels: vec!["yes".into(); rows],
                probabilities: [0.25, 0.75].repeat(rows),
                k: 2,
            },
            flags: vec![Some("null:region".into()); rows],
        };
        log.try_log(record("a", 3)).unwrap();
        log.try_log(record("b", 5)).unwrap();
        // 8 rows queued of 10: the next 3-row record does not fit.
        assert!(log.try_log(record("c", 3)).is_err());
        assert_eq!(metrics.log_rows_refused.load(Ordering::Relaxed), 3);
        log.shutdown();
        let written = files(&dir.path().join("risk/predictions"));
        assert_eq!(written.len(), 1, "{written:?}");
        let reader = SerializedFileReader::new(std::fs::File::open(&written[0]).unwrap()).unwrap();
        let names: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "request_id",
                "row",
                "ts_ms",
                "model_name",
                "model_version",
                "role",
                "latency_us",
                "input.income",
                "input.region",
                "output.label",
                "output.score",
                "output.proba.no",
                "output.proba.yes",
                "output.value",
                "flags"
            ]
        );
        let rows: Vec<_> = reader.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 8);
        let text = rows[4].to_string();
        assert!(
            text.contains("request_id: \"b\"") && text.contains("row: 1"),
            "{text}"
        );
        assert!(
            text.contains("output.score: 0.75") && text.contains("output.value: null"),
            "{text}"
        );
        assert_eq!(metrics.log_queue_rows.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.log_rows_written.load(Ordering::Relaxed), 8);
        assert!(log.try_log(record("late", 1)).is_err());
    }

    #[test]
    fn feedback_files_and_safe_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_feedback(
            dir.path(),
            "a/../b",
            &[Feedback {
                request_id: "r1".into(),
                row: 0,
                label: Some("yes".into()),
                value: None,
            }],
        )
        .unwrap();
        assert!(
            path.starts_with(dir.path().join("a_.._b/feedback")),
            "{path:?}"
        );
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
        assert_eq!(safe_name(".."), "_..");
    }
}
