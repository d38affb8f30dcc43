//! Reading the logs back: list a model's files for a time window across all
//! versions and replicas (local or S3), read them into typed columns, and
//! merge the replicas' rows by arrival time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{LogError, Result};
use crate::layout::{
    date_of, model_feedback_dir, model_predictions_dir, parse_part_name, partition_value, unescape,
};
use crate::parquet_io::{self, Cells};
use crate::schema::{
    self, FEEDBACK_FORMAT, FORMAT_MAJOR, Field, INPUT_PREFIX, PREDICTION_FORMAT, PROBA_PREFIX,
    format_major,
};
use crate::store::{Location, Store};

/// One data file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Path relative to the log root.
    pub path: String,
    /// Model version (its partition); `None` for feedback.
    pub version: Option<String>,
    /// UTC day of its rows (its partition).
    pub date: String,
    /// The replica that wrote it.
    pub replica: String,
    /// The seq of its segment: every row in it arrived before this Unix ms.
    pub seq: u64,
}

/// A model input column as read.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValues {
    /// Numbers; `None` for missing.
    Numbers(Vec<Option<f64>>),
    /// Categories; `None` for missing.
    Texts(Vec<Option<String>>),
}

/// The rows of one prediction file.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionBatch {
    /// The file.
    pub file: LogFile,
    /// [`schema::REQUEST_ID`].
    pub request_id: Vec<String>,
    /// [`schema::ROW`].
    pub row: Vec<i64>,
    /// [`schema::TS_MS`].
    pub ts_ms: Vec<i64>,
    /// [`schema::MODEL_VERSION`].
    pub model_version: Vec<String>,
    /// [`schema::ROLE`].
    pub role: Vec<String>,
    /// [`schema::LATENCY_US`] (`None` if the file lacks it).
    pub latency_us: Vec<Option<i64>>,
    /// [`schema::REPLICA`].
    pub replica: Vec<String>,
    /// `input.*` columns, by signature name (prefix dropped), in file order.
    pub inputs: Vec<(String, InputValues)>,
    /// [`schema::OUTPUT_LABEL`].
    pub label: Vec<Option<String>>,
    /// [`schema::OUTPUT_SCORE`].
    pub score: Vec<Option<f64>>,
    /// `output.proba.*` columns, by class.
    pub probabilities: Vec<(String, Vec<Option<f64>>)>,
    /// [`schema::OUTPUT_VALUE`].
    pub value: Vec<Option<f64>>,
    /// [`schema::FLAGS`].
    pub flags: Vec<Option<String>>,
}

impl PredictionBatch {
    /// Rows in the file.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    /// The input column `name`, if the file has it.
    pub fn input(&self, name: &str) -> Option<&InputValues> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The probability column of `class`, if the file has it.
    pub fn probabilities_of(&self, class: &str) -> Option<&[Option<f64>]> {
        self.probabilities
            .iter()
            .find(|(c, _)| c == class)
            .map(|(_, v)| v.as_slice())
    }
}

/// The latest feedback for a predicted row.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// When it arrived, Unix ms.
    pub ts_ms: i64,
    /// The true class.
    pub label: Option<String>,
    /// The true value.
    pub value: Option<f64>,
}

/// Feedback by `(request_id, row)`; the latest arrival wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackIndex {
    by_request: HashMap<String, Vec<(i64, Label)>>,
    len: usize,
}

impl FeedbackIndex {
    /// The feedback for row `row` of request `request_id`.
    pub fn get(&self, request_id: &str, row: i64) -> Option<&Label> {
        self.by_request
            .get(request_id)?
            .iter()
            .find(|(r, _)| *r == row)
            .map(|(_, label)| label)
    }

    /// Rows with feedback.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no feedback.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn insert(&mut self, request_id: String, row: i64, label: Label) {
        let rows = self.by_request.entry(request_id).or_default();
        match rows.iter_mut().find(|(r, _)| *r == row) {
            Some((_, existing)) => {
                if label.ts_ms >= existing.ts_ms {
                    *existing = label;
                }
            }
            None => {
                rows.push((row, label));
                self.len += 1;
            }
        }
    }
}

/// A reader of a log root (a directory or `s3://bucket/prefix`).
pub struct LogReader {
    store: Store,
}

impl LogReader {
    /// Opens `location`; a local directory that does not exist reads as empty.
    pub fn open(location: &str) -> Result<LogReader> {
        let location = Location::parse(location)?;
        Ok(LogReader {
            store: Store::open(&location, false)?,
        })
    }

    /// The log root.
    pub fn location(&self) -> &Location {
        self.store.location()
    }

    /// `(directory path, value)` of the `key=value` sub-folders of `dir`.
    fn partitions(&self, dir: &str, key: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in self.store.list(dir)? {
            if !entry.is_dir {
                continue;
            }
            let segment = entry.path.rsplit('/').next().unwrap_or(&entry.path);
            if let Some(value) = partition_value(segment, key) {
                out.push((entry.path.clone(), unescape(value)));
            }
        }
        Ok(out)
    }

    /// The part files of a date folder with rows at or after `since_ms`.
    fn parts(
        &self,
        dir: &str,
        version: Option<&str>,
        date: &str,
        since_ms: Option<i64>,
        out: &mut Vec<LogFile>,
    ) -> Result<()> {
        for entry in self.store.list(dir)? {
            if entry.is_dir {
                continue;
            }
            let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
            let Some((replica, seq)) = parse_part_name(name) else {
                continue;
            };
            if since_ms.is_some_and(|since| (seq as i64) < since) {
                continue;
            }
            out.push(LogFile {
                path: entry.path.clone(),
                version: version.map(str::to_string),
                date: date.to_string(),
                replica,
                seq,
            });
        }
        Ok(())
    }

    /// The prediction files of `model` (every version and replica) that may
    /// hold rows at or after `since_ms`, ordered by replica, then seq.
    pub fn prediction_files(&self, model: &str, since_ms: Option<i64>) -> Result<Vec<LogFile>> {
        let since_date = since_ms.map(date_of);
        let mut files = Vec::new();
        for (version_dir, version) in self.partitions(&model_predictions_dir(model), "version")? {
            for (date_dir, date) in self.partitions(&version_dir, "date")? {
                if since_date.as_ref().is_some_and(|since| date < *since) {
                    continue;
                }
                self.parts(&date_dir, Some(&version), &date, since_ms, &mut files)?;
            }
        }
        files.sort_by(|a, b| (&a.replica, a.seq, &a.path).cmp(&(&b.replica, b.seq, &b.path)));
        Ok(files)
    }

    /// The feedback files of `model` that may hold feedback for predictions
    /// made at or after `since_ms` (feedback comes after its prediction).
    pub fn feedback_files(&self, model: &str, since_ms: Option<i64>) -> Result<Vec<LogFile>> {
        let since_date = since_ms.map(date_of);
        let mut files = Vec::new();
        for (date_dir, date) in self.partitions(&model_feedback_dir(model), "date")? {
            if since_date.as_ref().is_some_and(|since| date < *since) {
                continue;
            }
            self.parts(&date_dir, None, &date, since_ms, &mut files)?;
        }
        files.sort_by(|a, b| (a.seq, &a.replica, &a.path).cmp(&(b.seq, &b.replica, &b.path)));
        Ok(files)
    }

    fn read_file(&self, file: &LogFile, format: &str) -> Result<Columns> {
        let bytes = self.store.get(&file.path)?;
        let read = parquet_io::read(bytes).map_err(|m| LogError::format(&file.path, m))?;
        if let Some(found) = &read.format {
            match format_major(found, format) {
                Some(major) if major <= FORMAT_MAJOR => {}
                Some(major) => {
                    return Err(LogError::format(
                        &file.path,
                        format!(
                            "format {found}: major version {major} is newer than this keel reads ({format}); upgrade keel"
                        ),
                    ));
                }
                None => {
                    return Err(LogError::format(
                        &file.path,
                        format!("format {found:?} is not {format}"),
                    ));
                }
            }
        }
        Ok(Columns {
            path: file.path.clone(),
            rows: read.rows,
            columns: read.columns,
        })
    }

    /// Reads one prediction file.
    pub fn read_predictions(&self, file: &LogFile) -> Result<PredictionBatch> {
        let mut c = self.read_file(file, PREDICTION_FORMAT)?;
        let version = file.version.clone().unwrap_or_default();
        let mut inputs = Vec::new();
        let mut probabilities = Vec::new();
        let names: Vec<String> = c.columns.iter().map(|(n, _)| n.clone()).collect();
        for name in names {
            if let Some(input) = name.strip_prefix(INPUT_PREFIX) {
                let values = match c.take(&name) {
                    Some(Cells::Text(v)) => InputValues::Texts(v),
                    Some(Cells::Double(v)) => InputValues::Numbers(v),
                    Some(Cells::Int(v)) => {
                        InputValues::Numbers(v.into_iter().map(|x| x.map(|x| x as f64)).collect())
                    }
                    None => continue,
                };
                inputs.push((input.to_string(), values));
            } else if let Some(class) = name.strip_prefix(PROBA_PREFIX) {
                probabilities.push((class.to_string(), c.doubles(&name)?));
            }
        }
        Ok(PredictionBatch {
            request_id: c.required_texts(&schema::REQUEST_ID)?,
            row: c.required_ints(&schema::ROW)?,
            ts_ms: c.required_ints(&schema::TS_MS)?,
            model_version: c.texts_or(&schema::MODEL_VERSION, &version)?,
            role: c.texts_or(&schema::ROLE, "primary")?,
            latency_us: c.ints(&schema::LATENCY_US)?,
            replica: c.texts_or(&schema::REPLICA, &file.replica)?,
            inputs,
            label: c.texts(&schema::OUTPUT_LABEL)?,
            score: c.doubles(schema::OUTPUT_SCORE.name)?,
            probabilities,
            value: c.doubles(schema::OUTPUT_VALUE.name)?,
            flags: c.texts(&schema::FLAGS)?,
            file: file.clone(),
        })
    }

    /// Every prediction row of `model` that arrived at or after `since_ms`,
    /// all versions and replicas: each replica's files in seq order, the
    /// replicas merged by arrival time. Calls `f(batch, row)` per row.
    pub fn scan_predictions<E: From<LogError>>(
        &self,
        model: &str,
        since_ms: Option<i64>,
        mut f: impl FnMut(&PredictionBatch, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let files = self.prediction_files(model, since_ms)?;
        let mut streams: Vec<Stream> = Vec::new();
        for file in files {
            match streams.last_mut() {
                Some(stream) if stream.replica == file.replica => stream.files.push(file),
                _ => streams.push(Stream {
                    replica: file.replica.clone(),
                    files: vec![file],
                    next_file: 0,
                    batch: None,
                    row: 0,
                }),
            }
        }
        let mut heap = BinaryHeap::new();
        for (i, stream) in streams.iter_mut().enumerate() {
            if let Some(ts) = stream.advance(self, since_ms)? {
                heap.push(Reverse((ts, i)));
            }
        }
        while let Some(Reverse((_, i))) = heap.pop() {
            let stream = &mut streams[i];
            if let Some(batch) = &stream.batch {
                f(batch, stream.row)?;
            }
            stream.row += 1;
            if let Some(ts) = stream.advance(self, since_ms)? {
                heap.push(Reverse((ts, i)));
            }
        }
        Ok(())
    }

    /// The latest feedback per predicted row, for predictions made at or
    /// after `since_ms` (all feedback when `None`).
    pub fn feedback(&self, model: &str, since_ms: Option<i64>) -> Result<FeedbackIndex> {
        let mut index = FeedbackIndex::default();
        for file in self.feedback_files(model, since_ms)? {
            let mut c = self.read_file(&file, FEEDBACK_FORMAT)?;
            let ids = c.required_texts(&schema::REQUEST_ID)?;
            let rows = c.required_ints(&schema::ROW)?;
            let ts = c.required_ints(&schema::TS_MS)?;
            let labels = c.texts(&schema::LABEL)?;
            let values = c.doubles(schema::VALUE.name)?;
            for (i, ((id, row), ts)) in ids.into_iter().zip(rows).zip(ts).enumerate() {
                index.insert(
                    id,
                    row,
                    Label {
                        ts_ms: ts,
                        label: labels[i].clone(),
                        value: values[i],
                    },
                );
            }
        }
        Ok(index)
    }
}

/// One replica's files, read one at a time.
struct Stream {
    replica: String,
    files: Vec<LogFile>,
    next_file: usize,
    batch: Option<PredictionBatch>,
    row: usize,
}

impl Stream {
    /// Moves to the next row at or after `since_ms` (loading files as needed)
    /// and returns its arrival time; `None` at the end.
    fn advance(&mut self, reader: &LogReader, since_ms: Option<i64>) -> Result<Option<i64>> {
        loop {
            if let Some(batch) = &self.batch {
                while self.row < batch.len() {
                    let ts = batch.ts_ms[self.row];
                    if since_ms.is_none_or(|since| ts >= since) {
                        return Ok(Some(ts));
                    }
                    self.row += 1;
                }
            }
            let Some(file) = self.files.get(self.next_file) else {
                self.batch = None;
                return Ok(None);
            };
            self.next_file += 1;
            self.batch = Some(reader.read_predictions(file)?);
            self.row = 0;
        }
    }
}

/// A file's columns by name, taken out as they are used.
struct Columns {
    path: String,
    rows: usize,
    columns: Vec<(String, Cells)>,
}

impl Columns {
    fn take(&mut self, name: &str) -> Option<Cells> {
        let at = self.columns.iter().position(|(n, _)| n == name)?;
        Some(self.columns.swap_remove(at).1)
    }

    fn wrong(&self, name: &str, expected: &str) -> LogError {
        LogError::format(&self.path, format!("column {name}: expected {expected}"))
    }

    fn texts(&mut self, field: &Field) -> Result<Vec<Option<String>>> {
        match self.take(field.name) {
            Some(Cells::Text(v)) => Ok(v),
            Some(_) => Err(self.wrong(field.name, "text")),
            None => Ok(vec![None; self.rows]),
        }
    }

    fn texts_or(&mut self, field: &Field, default: &str) -> Result<Vec<String>> {
        Ok(self
            .texts(field)?
            .into_iter()
            .map(|v| v.unwrap_or_else(|| default.to_string()))
            .collect())
    }

    fn required_texts(&mut self, field: &Field) -> Result<Vec<String>> {
        match self.take(field.name) {
            Some(Cells::Text(v)) => v
                .into_iter()
                .map(|v| v.ok_or_else(|| self.wrong(field.name, "no nulls")))
                .collect(),
            Some(_) => Err(self.wrong(field.name, "text")),
            None => Err(self.wrong(field.name, "the column (required)")),
        }
    }

    fn ints(&mut self, field: &Field) -> Result<Vec<Option<i64>>> {
        match self.take(field.name) {
            Some(Cells::Int(v)) => Ok(v),
            Some(_) => Err(self.wrong(field.name, "an integer")),
            None => Ok(vec![None; self.rows]),
        }
    }

    fn required_ints(&mut self, field: &Field) -> Result<Vec<i64>> {
        match self.take(field.name) {
            Some(Cells::Int(v)) => v
                .into_iter()
                .map(|v| v.ok_or_else(|| self.wrong(field.name, "no nulls")))
                .collect(),
            Some(_) => Err(self.wrong(field.name, "an integer")),
            None => Err(self.wrong(field.name, "the column (required)")),
        }
    }

    fn doubles(&mut self, name: &str) -> Result<Vec<Option<f64>>> {
        match self.take(name) {
            Some(Cells::Double(v)) => Ok(v),
            Some(Cells::Int(v)) => Ok(v.into_iter().map(|x| x.map(|x| x as f64)).collect()),
            Some(Cells::Text(_)) => Err(self.wrong(name, "a number")),
            None => Ok(vec![None; self.rows]),
        }
    }
}
