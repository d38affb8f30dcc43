//! Streaming readers: a CSV or Parquet file (or a file set, taken as the
//! concatenation of its files in sorted order) becomes a [`Profile`] in one
//! pass whose memory does not depend on the row count. CSV is read in
//! chunks of rows that are profiled in parallel across columns; Parquet is
//! read column chunk by column chunk, one column per task, in parallel.
//!
//! Shards ([`profile_shard`]) cover the units of the partition rule of
//! [`keel_table::shard`]. The whole's histogram layouts, column kinds and
//! joint frame come from the head of the data set (its first rows), so a
//! shard first reads that head ([`shard_template`]: the first chunk, and
//! as many rows as fill every numeric column's layout sample) and then
//! profiles its own units against it: merged shard profiles have the
//! whole's counts and sketches.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;

use crate::error::{MonitorError, Result};
use keel_table::rows::{check_names, open_parquet, parquet_columns};
use keel_table::shard::{Shard, Unit};
use keel_table::{CsvRows, Rows, Text, is_parquet, read_text};

use crate::joint::{JOINT_COLUMNS, JointSums};
use crate::profile::{ColumnKind, ColumnProfile, ColumnStats, Profile, ShardOf};

/// Rows per CSV chunk and values per Parquet batch.
const CHUNK_ROWS: usize = 16_384;

/// How much of the data a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every row.
    Whole,
    /// The head: until every numeric column has its histogram layout (and
    /// the first chunk, which fixes kinds and the joint frame).
    Head,
}

/// Profiles a CSV or Parquet file. With a `reference`, its columns' kinds,
/// histogram layouts and value ranges are used (so the result compares and
/// merges with profiles built against the same reference).
pub fn profile_file(path: &Path, reference: Option<&Profile>) -> Result<Profile> {
    if is_parquet(path) {
        profile_parquet(path, reference)
    } else {
        profile_csv(path, reference)
    }
}

/// Profiles a file set (see [`keel_table::shard::files`]: sorted, all CSV
/// with one header or all Parquet with one schema) as the concatenation of
/// its files.
pub fn profile_files(files: &[PathBuf], reference: Option<&Profile>) -> Result<Profile> {
    match files {
        [] => Err(keel_table::TableError::Data("no input files".into()).into()),
        [path] => profile_file(path, reference),
        _ if is_parquet(&files[0]) => {
            let units = keel_table::shard::units(files)?;
            profile_parquet_units(files, &units, reference, Pass::Whole)
        }
        _ => profile_csv_files(files, reference, Pass::Whole),
    }
}

/// The template shards of `files` are profiled against: the column kinds,
/// histogram layouts and joint frame of the whole's profile, read from the
/// head of the data set (no value ranges, no counts).
pub fn shard_template(files: &[PathBuf]) -> Result<Profile> {
    let head = match files.first() {
        None => return Err(keel_table::TableError::Data("no input files".into()).into()),
        Some(first) if is_parquet(first) => {
            let units = keel_table::shard::units(files)?;
            profile_parquet_units(files, &units, None, Pass::Head)?
        }
        Some(_) => profile_csv_files(files, None, Pass::Head)?,
    };
    Ok(head.layout_template())
}

/// Profiles shard `shard` of the file set `files` (sorted, see
/// [`keel_table::shard::files`]) against `reference` (a reference profile:
/// its kinds, layouts and ranges) or else [`shard_template`]; the shards'
/// profiles merge into the whole's ([`Profile::merge_shards`]).
pub fn profile_shard(
    files: &[PathBuf],
    shard: Shard,
    reference: Option<&Profile>,
) -> Result<Profile> {
    let template = match reference {
        Some(reference) => reference.clone(),
        None => shard_template(files)?,
    };
    let all = keel_table::shard::units(files)?;
    let units = shard.select(&all);
    let mut profile = if units.is_empty() {
        template.template()
    } else if is_parquet(&units[0].path) {
        let mine: Vec<PathBuf> = unit_files(units);
        profile_parquet_units(&mine, units, Some(&template), Pass::Whole)?
    } else {
        profile_csv_files(&unit_files(units), Some(&template), Pass::Whole)?
    };
    profile.shard = Some(ShardOf {
        index: shard.index,
        count: shard.count,
        units: all.len() as u64,
    });
    Ok(profile)
}

/// The distinct files of `units`, in order.
fn unit_files(units: &[Unit]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for unit in units {
        if files.last() != Some(&unit.path) {
            files.push(unit.path.clone());
        }
    }
    files
}

/// Profiles a CSV file with a header row.
pub fn profile_csv(path: &Path, reference: Option<&Profile>) -> Result<Profile> {
    profile_csv_files(&[path.to_path_buf()], reference, Pass::Whole)
}

/// CSV files read one after the other as one header and its records.
struct CsvChain<'a> {
    files: &'a [PathBuf],
    next: usize,
    current: Option<CsvRows<File>>,
    names: Vec<String>,
}

impl<'a> CsvChain<'a> {
    fn open(files: &'a [PathBuf]) -> Result<Self> {
        let first = files
            .first()
            .ok_or_else(|| keel_table::TableError::Data("no input files".into()))?;
        let reader = CsvRows::open(first, b',')?;
        Ok(CsvChain {
            files,
            next: 1,
            names: reader.columns().to_vec(),
            current: Some(reader),
        })
    }

    fn next_record(&mut self, record: &mut csv::StringRecord) -> Result<bool> {
        loop {
            if let Some(reader) = &mut self.current {
                if reader.next_record(record)? {
                    return Ok(true);
                }
                self.current = None;
            }
            let Some(path) = self.files.get(self.next) else {
                return Ok(false);
            };
            self.next += 1;
            let reader = CsvRows::open(path, b',')?;
            if reader.columns() != self.names.as_slice() {
                return Err(MonitorError::file(
                    path,
                    format!(
                        "its header differs from {}'s: a file set shares one header",
                        self.files[0].display()
                    ),
                ));
            }
            self.current = Some(reader);
        }
    }
}

/// Whether every numeric column has its histogram layout.
fn laid_out(columns: &[ColumnProfile]) -> bool {
    columns.iter().all(column_laid_out)
}

fn column_laid_out(column: &ColumnProfile) -> bool {
    match &column.stats {
        ColumnStats::Numeric(stats) => stats.histogram.is_some(),
        ColumnStats::Categorical(_) => true,
    }
}

/// Profiles CSV files with one header as one table.
fn profile_csv_files(
    files: &[PathBuf],
    reference: Option<&Profile>,
    pass: Pass,
) -> Result<Profile> {
    let mut reader = CsvChain::open(files)?;
    let names = reader.names.clone();
    let mut records = vec![csv::StringRecord::new(); CHUNK_ROWS];
    let mut columns: Option<Vec<ColumnProfile>> = None;
    // The joint sums: the reference's model columns and frame, or (for a
    // reference) every numeric column, framed by the first chunk.
    let mut joint: Option<(JointSums, Vec<usize>)> = None;
    let mut joint_decided = false;
    let mut rows = 0u64;
    loop {
        let mut filled = 0;
        while filled < CHUNK_ROWS && reader.next_record(&mut records[filled])? {
            filled += 1;
        }
        let chunk = &records[..filled];
        let columns = columns.get_or_insert_with(|| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let model = reference.and_then(|r| r.column(name));
                    let kind = model.map_or_else(|| infer_kind(chunk, i), ColumnProfile::kind);
                    ColumnProfile::new(name, kind, model)
                })
                .collect()
        });
        if filled == 0 {
            break;
        }
        let numbers = |i: usize| -> Vec<f64> {
            chunk
                .iter()
                .map(|record| match read_text(record.get(i).unwrap_or("")) {
                    Text::Number(x) => x,
                    _ => f64::NAN,
                })
                .collect()
        };
        if !joint_decided {
            joint_decided = true;
            let empty = match reference {
                Some(reference) => reference.template().joint,
                None => {
                    let candidates = Profile::joint_candidates(columns);
                    (candidates.len() >= 2)
                        .then(|| JointSums::new(candidates, vec![], vec![], true))
                }
            };
            joint = empty.and_then(|empty| {
                let at: Vec<usize> = empty
                    .columns
                    .iter()
                    .map(|name| names.iter().position(|n| n == name))
                    .collect::<Option<_>>()?;
                if empty.shift.len() == empty.dim() {
                    return Some((empty, at));
                }
                let values: Vec<Vec<f64>> = at.iter().map(|&i| numbers(i)).collect();
                let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                Some((JointSums::framed_by(empty.columns, &slices, true), at))
            });
        }
        rayon::join(
            || {
                columns.par_iter_mut().enumerate().for_each(|(i, column)| {
                    for record in chunk {
                        column.push_text(record.get(i));
                    }
                })
            },
            || {
                if let Some((sums, at)) = &mut joint {
                    let values: Vec<Vec<f64>> = at.par_iter().map(|&i| numbers(i)).collect();
                    let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                    sums.push_chunk(&slices, rows);
                }
            },
        );
        rows += filled as u64;
        if filled < CHUNK_ROWS || (pass == Pass::Head && laid_out(columns)) {
            break;
        }
    }
    let mut columns = columns.unwrap_or_default();
    columns.iter_mut().for_each(ColumnProfile::finish);
    let mut profile = Profile::empty(columns);
    profile.rows = rows;
    profile.joint = joint.map(|(sums, _)| sums);
    if reference.is_none() && pass == Pass::Whole {
        profile.fit_joint();
    }
    Ok(profile)
}

/// Numeric when every present value in the first chunk is a number.
fn infer_kind(chunk: &[csv::StringRecord], i: usize) -> ColumnKind {
    let numeric = chunk
        .iter()
        .all(|record| !matches!(read_text(record.get(i).unwrap_or("")), Text::Other(_)));
    if numeric {
        ColumnKind::Numeric
    } else {
        ColumnKind::Categorical
    }
}

/// Profiles a Parquet file (flat schema), one column per parallel task.
pub fn profile_parquet(path: &Path, reference: Option<&Profile>) -> Result<Profile> {
    let files = [path.to_path_buf()];
    let units = keel_table::shard::units(&files)?;
    profile_parquet_units(&files, &units, reference, Pass::Whole)
}

/// Row groups of `units` per file, files in order.
fn groups_by_file(units: &[Unit]) -> Vec<(&Path, Vec<usize>)> {
    let mut out: Vec<(&Path, Vec<usize>)> = Vec::new();
    for unit in units {
        let Some(group) = unit.row_group else {
            continue;
        };
        match out.last_mut() {
            Some((path, groups)) if *path == unit.path.as_path() => groups.push(group),
            _ => out.push((unit.path.as_path(), vec![group])),
        }
    }
    out
}

/// Profiles the row groups `units` of the Parquet `files` (one schema,
/// that of `files[0]`), one column per parallel task.
fn profile_parquet_units(
    files: &[PathBuf],
    units: &[Unit],
    reference: Option<&Profile>,
    pass: Pass,
) -> Result<Profile> {
    let path = files
        .first()
        .ok_or_else(|| keel_table::TableError::Data("no input files".into()))?;
    let reader = open_parquet(path)?;
    let metadata = reader.metadata();
    let names = parquet_columns(&reader);
    if names.len() != metadata.file_metadata().schema_descr().num_columns() {
        return Err(MonitorError::file(
            path,
            "nested Parquet columns are not supported (flatten the schema)",
        ));
    }
    check_names(path, &names)?;
    for other in &files[1..] {
        if parquet_columns(&open_parquet(other)?) != names {
            return Err(MonitorError::file(
                other,
                format!(
                    "its columns differ from {}'s: a file set shares one schema",
                    path.display()
                ),
            ));
        }
    }
    let rows: u64 = units.iter().filter_map(|u| u.rows).sum();
    // The joint sums: the reference's model columns, or (for a reference)
    // every numeric column but the model's outputs.
    let empty = match reference {
        Some(reference) => reference.template().joint,
        None => {
            let numeric: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|&(i, name)| {
                    !name.starts_with("output.")
                        && matches!(physical_kind(path, &reader, i), Ok(ColumnKind::Numeric))
                })
                .map(|(_, name)| name.clone())
                .take(JOINT_COLUMNS)
                .collect();
            (numeric.len() >= 2).then(|| JointSums::new(numeric, vec![], vec![], true))
        }
    };
    let joint_at: Option<Vec<usize>> = empty.as_ref().and_then(|empty| {
        empty
            .columns
            .iter()
            .map(|name| {
                let i = names.iter().position(|n| n == name)?;
                matches!(physical_kind(path, &reader, i), Ok(ColumnKind::Numeric)).then_some(i)
            })
            .collect()
    });
    let groups = groups_by_file(units);
    let (columns, joint) = rayon::join(
        || {
            names
                .par_iter()
                .enumerate()
                .map(|(i, name)| {
                    let model = reference.and_then(|r| r.column(name));
                    profile_parquet_column(path, &groups, i, name, model, pass)
                })
                .collect::<Result<Vec<ColumnProfile>>>()
        },
        || match (empty, joint_at) {
            (Some(empty), Some(at)) => joint_parquet(&groups, empty, &at, pass).map(Some),
            _ => Ok(None),
        },
    );
    let mut profile = Profile::empty(columns?);
    profile.rows = rows;
    profile.joint = joint?;
    if reference.is_none() && pass == Pass::Whole {
        profile.fit_joint();
    }
    Ok(profile)
}

/// Reads the numeric columns at `at` row-aligned, batch by batch in the
/// row groups `groups` (a null is NaN), into `empty` (framed by the first
/// batch when it has no frame yet; the head pass stops there).
fn joint_parquet(
    groups: &[(&Path, Vec<usize>)],
    empty: JointSums,
    at: &[usize],
    pass: Pass,
) -> Result<JointSums> {
    let framed = empty.shift.len() == empty.dim();
    if pass == Pass::Head && framed {
        return Ok(empty);
    }
    let mut sums: Option<JointSums> = framed.then(|| empty.clone());
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(CHUNK_ROWS); at.len()];
    let mut levels: Vec<i16> = Vec::with_capacity(CHUNK_ROWS);
    let mut row = 0u64;
    for (path, groups) in groups {
        let reader = open_parquet(path)?;
        let fail = |e: parquet::errors::ParquetError| {
            MonitorError::file(path, format!("joint columns: {e}"))
        };
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let max_def: Vec<i16> = at
            .iter()
            .map(|&i| schema.column(i).max_def_level())
            .collect();
        for &group in groups {
            let row_group = reader.get_row_group(group).map_err(fail)?;
            let mut readers: Vec<ColumnReader> = at
                .iter()
                .map(|&i| row_group.get_column_reader(i).map_err(fail))
                .collect::<Result<_>>()?;
            loop {
                let mut read = usize::MAX;
                for (k, column) in readers.iter_mut().enumerate() {
                    values[k].clear();
                    let records = read_numbers(column, max_def[k], &mut levels, &mut values[k])
                        .map_err(fail)?;
                    read = read.min(records);
                }
                if read == 0 || read == usize::MAX {
                    break;
                }
                let slices: Vec<&[f64]> = values.iter().map(|v| &v[..read]).collect();
                let sums = sums.get_or_insert_with(|| {
                    JointSums::framed_by(empty.columns.clone(), &slices, empty.has_sample())
                });
                if pass == Pass::Head {
                    return Ok(sums.emptied());
                }
                sums.push_chunk(&slices, row);
                row += read as u64;
            }
        }
    }
    Ok(sums.unwrap_or(empty))
}

/// Up to [`CHUNK_ROWS`] records of a numeric column as f64 (nulls as NaN);
/// returns the records read.
fn read_numbers(
    reader: &mut ColumnReader,
    max_def: i16,
    levels: &mut Vec<i16>,
    out: &mut Vec<f64>,
) -> parquet::errors::Result<usize> {
    macro_rules! numbers {
        ($typed:expr, $buffer:ty, $convert:expr) => {{
            let mut buffer: Vec<$buffer> = Vec::with_capacity(CHUNK_ROWS);
            levels.clear();
            let (records, values, read_levels) =
                $typed.read_records(CHUNK_ROWS, Some(levels), None, &mut buffer)?;
            if max_def == 0 {
                out.extend(buffer[..values].iter().map($convert));
            } else {
                let mut present = buffer[..values].iter().map($convert);
                for &level in &levels[..read_levels] {
                    out.push(if level == max_def {
                        present.next().unwrap_or(f64::NAN)
                    } else {
                        f64::NAN
                    });
                }
            }
            Ok(records)
        }};
    }
    match reader {
        ColumnReader::DoubleColumnReader(r) => numbers!(r, f64, |v: &f64| *v),
        ColumnReader::FloatColumnReader(r) => numbers!(r, f32, |v: &f32| f64::from(*v)),
        ColumnReader::Int32ColumnReader(r) => numbers!(r, i32, |v: &i32| f64::from(*v)),
        ColumnReader::Int64ColumnReader(r) => numbers!(r, i64, |v: &i64| *v as f64),
        ColumnReader::BoolColumnReader(r) => {
            numbers!(r, bool, |v: &bool| f64::from(u8::from(*v)))
        }
        _ => Err(parquet::errors::ParquetError::General(
            "not a numeric column".into(),
        )),
    }
}

/// One batch of a column's values, as [`read_parquet_column`] hands them out.
pub(crate) enum Batch<'a> {
    /// Numbers and how many nulls were among the rows read.
    Numbers(&'a [f64], u64),
    /// Strings (invalid UTF-8 as `None`) and the null count.
    Texts(&'a [Option<&'a str>], u64),
}

pub(crate) fn physical_kind(
    path: &Path,
    reader: &SerializedFileReader<File>,
    i: usize,
) -> Result<ColumnKind> {
    use parquet::basic::Type;
    let column = reader.metadata().file_metadata().schema_descr().column(i);
    match column.physical_type() {
        Type::BOOLEAN | Type::INT32 | Type::INT64 | Type::FLOAT | Type::DOUBLE => {
            Ok(ColumnKind::Numeric)
        }
        Type::BYTE_ARRAY | Type::FIXED_LEN_BYTE_ARRAY => Ok(ColumnKind::Categorical),
        Type::INT96 => Err(MonitorError::file(
            path,
            format!(
                "column {:?}: INT96 timestamps are not supported",
                column.name()
            ),
        )),
    }
}

/// Streams column `i` of the row groups `groups` through `sink`.
pub(crate) fn read_parquet_column(
    path: &Path,
    reader: &SerializedFileReader<File>,
    i: usize,
    groups: &[usize],
    mut sink: impl FnMut(Batch<'_>),
) -> Result<()> {
    let fail =
        |e: parquet::errors::ParquetError| MonitorError::file(path, format!("column {i}: {e}"));
    let mut levels: Vec<i16> = Vec::with_capacity(CHUNK_ROWS);
    let mut numbers: Vec<f64> = Vec::with_capacity(CHUNK_ROWS);
    macro_rules! numeric {
        ($typed:expr, $buffer:ty, $convert:expr) => {{
            let mut typed = $typed;
            let mut buffer: Vec<$buffer> = Vec::with_capacity(CHUNK_ROWS);
            loop {
                buffer.clear();
                levels.clear();
                let (records, values, _) = typed
                    .read_records(CHUNK_ROWS, Some(&mut levels), None, &mut buffer)
                    .map_err(fail)?;
                if records == 0 {
                    break;
                }
                numbers.clear();
                numbers.extend(buffer[..values].iter().map($convert));
                sink(Batch::Numbers(&numbers, (records - values) as u64));
            }
        }};
    }
    macro_rules! texts {
        ($typed:expr, $buffer:ty) => {{
            let mut typed = $typed;
            let mut buffer: Vec<$buffer> = Vec::with_capacity(CHUNK_ROWS);
            loop {
                buffer.clear();
                levels.clear();
                let (records, values, _) = typed
                    .read_records(CHUNK_ROWS, Some(&mut levels), None, &mut buffer)
                    .map_err(fail)?;
                if records == 0 {
                    break;
                }
                let texts: Vec<Option<&str>> = buffer[..values]
                    .iter()
                    .map(|v| std::str::from_utf8(v.data()).ok())
                    .collect();
                sink(Batch::Texts(&texts, (records - values) as u64));
            }
        }};
    }
    for &group in groups {
        let row_group = reader.get_row_group(group).map_err(fail)?;
        match row_group.get_column_reader(i).map_err(fail)? {
            ColumnReader::DoubleColumnReader(r) => numeric!(r, f64, |v: &f64| *v),
            ColumnReader::FloatColumnReader(r) => numeric!(r, f32, |v: &f32| f64::from(*v)),
            ColumnReader::Int32ColumnReader(r) => numeric!(r, i32, |v: &i32| f64::from(*v)),
            ColumnReader::Int64ColumnReader(r) => numeric!(r, i64, |v: &i64| *v as f64),
            ColumnReader::BoolColumnReader(r) => {
                numeric!(r, bool, |v: &bool| f64::from(u8::from(*v)))
            }
            ColumnReader::ByteArrayColumnReader(r) => {
                texts!(r, parquet::data_type::ByteArray)
            }
            ColumnReader::FixedLenByteArrayColumnReader(r) => {
                texts!(r, parquet::data_type::FixedLenByteArray)
            }
            ColumnReader::Int96ColumnReader(_) => {
                return Err(MonitorError::file(
                    path,
                    format!("column {i}: INT96 is not supported"),
                ));
            }
        }
    }
    Ok(())
}

/// Profiles column `i` (called `name`) over `groups`; `path` is the file
/// whose schema the kind is read from. The head pass reads row groups
/// until the column has its histogram layout.
fn profile_parquet_column(
    path: &Path,
    groups: &[(&Path, Vec<usize>)],
    i: usize,
    name: &str,
    model: Option<&ColumnProfile>,
    pass: Pass,
) -> Result<ColumnProfile> {
    let physical = physical_kind(path, &open_parquet(path)?, i)?;
    // A numeric file column read for a categorical reference column becomes
    // category text (codes stored as integers); the other way round is a
    // type change the comparison reports.
    let kind = match (physical, model.map(ColumnProfile::kind)) {
        (ColumnKind::Numeric, Some(ColumnKind::Categorical)) => ColumnKind::Categorical,
        (kind, _) => kind,
    };
    let model = model.filter(|m| m.kind() == kind);
    let mut profile = ColumnProfile::new(name, kind, model);
    'files: for (file, groups) in groups {
        let reader = open_parquet(file)?;
        match pass {
            Pass::Whole => {
                read_parquet_column(file, &reader, i, groups, |batch| {
                    push_batch(&mut profile, batch)
                })?;
            }
            Pass::Head => {
                for &group in groups {
                    if column_laid_out(&profile) {
                        break 'files;
                    }
                    read_parquet_column(file, &reader, i, &[group], |batch| {
                        push_batch(&mut profile, batch)
                    })?;
                }
            }
        }
    }
    profile.finish();
    Ok(profile)
}

fn push_batch(profile: &mut ColumnProfile, batch: Batch<'_>) {
    match batch {
        Batch::Numbers(values, nulls) => {
            profile.push_numbers(values);
            profile.push_nulls(nulls);
        }
        Batch::Texts(values, nulls) => {
            for value in values {
                match value {
                    Some(text) => profile.push_category(text),
                    None => {
                        profile.count += 1;
                        profile.types.texts += 1;
                    }
                }
            }
            profile.push_nulls(nulls);
        }
    }
}
