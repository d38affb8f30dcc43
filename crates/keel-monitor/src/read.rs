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
use keel_table::{CsvRows, Rows, Text, format_number, is_missing, is_parquet, read_text};

use crate::joint::{JOINT_COLUMNS, JointInput, JointSums, indicator_columns};
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
    // reference) its numeric columns and categorical columns' indicators,
    // chosen and framed by the first chunk.
    let mut joint: Option<(JointSums, Vec<(JointInput, usize)>)> = None;
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
        // The joint columns' values of the chunk (a categorical column's
        // cells read as its profile reads them).
        let encode = |inputs: &[(JointInput, usize)]| -> Vec<Vec<f64>> {
            let per_input: Vec<Vec<Vec<f64>>> = inputs
                .par_iter()
                .map(|(input, i)| match input {
                    JointInput::Numeric(_) => vec![
                        chunk
                            .iter()
                            .map(|record| match read_text(record.get(*i).unwrap_or("")) {
                                Text::Number(x) => x,
                                _ => f64::NAN,
                            })
                            .collect(),
                    ],
                    JointInput::Categorical { categories, .. } => indicator_columns(
                        categories,
                        chunk.iter().map(|record| {
                            record
                                .get(*i)
                                .filter(|text| !is_missing(text))
                                .map(str::trim)
                        }),
                    ),
                })
                .collect();
            per_input.into_iter().flatten().collect()
        };
        let push_columns = |columns: &mut Vec<ColumnProfile>| {
            columns.par_iter_mut().enumerate().for_each(|(i, column)| {
                for record in chunk {
                    column.push_text(record.get(i));
                }
            })
        };
        if joint_decided {
            rayon::join(
                || push_columns(columns),
                || {
                    if let Some((sums, inputs)) = &mut joint {
                        let values = encode(inputs);
                        let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                        sums.push_chunk(&slices, rows);
                    }
                },
            );
        } else {
            // The first chunk: a reference's categorical columns choose
            // their indicators from its counts, and it frames the sums.
            push_columns(columns);
            joint_decided = true;
            let empty = match reference {
                Some(reference) => reference.template().joint,
                None => Profile::joint_plan(columns),
            };
            joint = empty.and_then(|empty| {
                let inputs: Vec<(JointInput, usize)> = empty
                    .inputs()
                    .into_iter()
                    .map(|input| {
                        let at = names.iter().position(|n| n == input.column())?;
                        Some((input, at))
                    })
                    .collect::<Option<_>>()?;
                let values = encode(&inputs);
                let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                let mut sums = if empty.shift.len() == empty.dim() {
                    empty
                } else {
                    empty.framed(&slices)
                };
                sums.push_chunk(&slices, rows);
                Some((sums, inputs))
            });
        }
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
    // every numeric column but the model's outputs and every categorical
    // one, whose indicators the first batch chooses (`joint_parquet`).
    let plan = match reference {
        Some(reference) => reference.template().joint.and_then(|empty| {
            let at: Vec<(JointInput, usize)> = empty
                .inputs()
                .into_iter()
                .map(|input| {
                    let i = names.iter().position(|n| n == input.column())?;
                    let numeric =
                        matches!(physical_kind(path, &reader, i), Ok(ColumnKind::Numeric));
                    // A numeric input needs numbers; a categorical one
                    // reads text or numbers as their text.
                    (numeric || matches!(input, JointInput::Categorical { .. }))
                        .then_some((input, i))
                })
                .collect::<Option<_>>()?;
            Some(JointPlan::Fixed(empty, at))
        }),
        None => {
            let mut numeric = 0;
            let candidates: Vec<(String, usize, ColumnKind)> = names
                .iter()
                .enumerate()
                .filter(|(_, name)| !name.starts_with("output."))
                .filter_map(|(i, name)| {
                    let kind = physical_kind(path, &reader, i).ok()?;
                    if kind == ColumnKind::Numeric {
                        numeric += 1;
                        if numeric > JOINT_COLUMNS {
                            return None;
                        }
                    }
                    Some((name.clone(), i, kind))
                })
                .collect();
            Some(JointPlan::Head(candidates))
        }
    };
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
        || match plan {
            Some(plan) => joint_parquet(&groups, plan, pass),
            None => Ok(None),
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

/// What the joint reader of a Parquet file set reads.
enum JointPlan {
    /// Known joint columns (a current profile's, or a shard's): the sums
    /// (framed or not) and each input's column index.
    Fixed(JointSums, Vec<(JointInput, usize)>),
    /// A reference's candidate columns (name, index, kind), in file order:
    /// the first batch chooses the categorical columns' indicators.
    Head(Vec<(String, usize, ColumnKind)>),
}

/// One batch of a joint input column: numbers (nulls NaN) or texts.
enum Cells {
    Numbers(Vec<f64>),
    Texts(Vec<Option<String>>),
}

impl Cells {
    fn len(&self) -> usize {
        match self {
            Cells::Numbers(v) => v.len(),
            Cells::Texts(v) => v.len(),
        }
    }

    fn texts(&self, rows: usize) -> Vec<Option<String>> {
        match self {
            Cells::Texts(v) => v[..rows].to_vec(),
            Cells::Numbers(v) => v[..rows]
                .iter()
                .map(|x| (!x.is_nan()).then(|| format_number(*x)))
                .collect(),
        }
    }

    /// The joint columns' values of `input` for the first `rows` cells.
    fn encode(&self, input: &JointInput, rows: usize, out: &mut Vec<Vec<f64>>) {
        match (input, self) {
            (JointInput::Numeric(_), Cells::Numbers(v)) => out.push(v[..rows].to_vec()),
            (JointInput::Numeric(_), Cells::Texts(_)) => out.push(vec![f64::NAN; rows]),
            (JointInput::Categorical { categories, .. }, Cells::Texts(v)) => out.extend(
                indicator_columns(categories, v[..rows].iter().map(Option::as_deref)),
            ),
            (JointInput::Categorical { categories, .. }, Cells::Numbers(_)) => {
                let texts = self.texts(rows);
                out.extend(indicator_columns(
                    categories,
                    texts.iter().map(Option::as_deref),
                ));
            }
        }
    }
}

/// Reads the joint inputs row-aligned, batch by batch in the row groups
/// `groups` (a null is missing), into sums framed by the first batch when
/// they have no frame yet (a reference's plan also chooses its indicators
/// there; the head pass stops after it).
fn joint_parquet(
    groups: &[(&Path, Vec<usize>)],
    plan: JointPlan,
    pass: Pass,
) -> Result<Option<JointSums>> {
    let (mut sums, mut inputs): (Option<JointSums>, Vec<(JointInput, usize)>) = match plan {
        JointPlan::Fixed(empty, at) => {
            if pass == Pass::Head && empty.shift.len() == empty.dim() {
                return Ok(Some(empty));
            }
            (Some(empty), at)
        }
        JointPlan::Head(candidates) => (
            None,
            candidates
                .into_iter()
                .map(|(name, i, kind)| {
                    let input = match kind {
                        ColumnKind::Numeric => JointInput::Numeric(name),
                        ColumnKind::Categorical => JointInput::Categorical {
                            column: name,
                            categories: Vec::new(),
                        },
                    };
                    (input, i)
                })
                .collect(),
        ),
    };
    let mut framed = sums.as_ref().is_some_and(|s| s.shift.len() == s.dim());
    let mut levels: Vec<i16> = Vec::with_capacity(CHUNK_ROWS);
    let mut row = 0u64;
    for (path, groups) in groups {
        let reader = open_parquet(path)?;
        let fail = |e: parquet::errors::ParquetError| {
            MonitorError::file(path, format!("joint columns: {e}"))
        };
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        for &group in groups {
            let row_group = reader.get_row_group(group).map_err(fail)?;
            let mut readers: Vec<ColumnReader> = inputs
                .iter()
                .map(|&(_, i)| row_group.get_column_reader(i).map_err(fail))
                .collect::<Result<_>>()?;
            loop {
                let mut read = usize::MAX;
                let mut batch: Vec<Cells> = Vec::with_capacity(inputs.len());
                for (k, column) in readers.iter_mut().enumerate() {
                    let max_def = schema.column(inputs[k].1).max_def_level();
                    let cells = read_cells(column, max_def, &mut levels).map_err(fail)?;
                    read = read.min(cells.len());
                    batch.push(cells);
                }
                if read == 0 || read == usize::MAX {
                    break;
                }
                if sums.is_none() {
                    // A reference's first batch: its categorical columns'
                    // indicators, from this batch's counts.
                    let profiles: Vec<ColumnProfile> = inputs
                        .iter()
                        .zip(&batch)
                        .map(|((input, _), cells)| match input {
                            JointInput::Numeric(name) => {
                                ColumnProfile::new(name, ColumnKind::Numeric, None)
                            }
                            JointInput::Categorical { column, .. } => {
                                let mut profile =
                                    ColumnProfile::new(column, ColumnKind::Categorical, None);
                                for text in cells.texts(read) {
                                    match text {
                                        Some(text) => profile.push_category(&text),
                                        None => profile.push_nulls(1),
                                    }
                                }
                                profile
                            }
                        })
                        .collect();
                    let Some(empty) = Profile::joint_plan(&profiles) else {
                        return Ok(None);
                    };
                    // Keep the readers and cells of the chosen inputs.
                    let chosen = empty.inputs();
                    let mut kept_inputs = Vec::new();
                    let mut kept_readers = Vec::new();
                    let mut kept_batch = Vec::new();
                    for (((input, i), reader), cells) in
                        inputs.drain(..).zip(readers.drain(..)).zip(batch.drain(..))
                    {
                        if let Some(choice) = chosen.iter().find(|c| c.column() == input.column()) {
                            kept_inputs.push((choice.clone(), i));
                            kept_readers.push(reader);
                            kept_batch.push(cells);
                        }
                    }
                    // In the joint columns' order (numeric columns first).
                    let order: Vec<usize> = chosen
                        .iter()
                        .filter_map(|c| {
                            kept_inputs
                                .iter()
                                .position(|(k, _)| k.column() == c.column())
                        })
                        .collect();
                    let mut slots: Vec<Option<(JointInput, usize)>> =
                        kept_inputs.into_iter().map(Some).collect();
                    let mut reader_slots: Vec<Option<ColumnReader>> =
                        kept_readers.into_iter().map(Some).collect();
                    let mut cell_slots: Vec<Option<Cells>> =
                        kept_batch.into_iter().map(Some).collect();
                    for &k in &order {
                        if let (Some(input), Some(reader), Some(cells)) = (
                            slots[k].take(),
                            reader_slots[k].take(),
                            cell_slots[k].take(),
                        ) {
                            inputs.push(input);
                            readers.push(reader);
                            batch.push(cells);
                        }
                    }
                    sums = Some(empty);
                }
                let Some(sums) = sums.as_mut() else {
                    return Ok(None);
                };
                let mut values: Vec<Vec<f64>> = Vec::with_capacity(sums.dim());
                for ((input, _), cells) in inputs.iter().zip(&batch) {
                    cells.encode(input, read, &mut values);
                }
                let slices: Vec<&[f64]> = values.iter().map(Vec::as_slice).collect();
                if !framed {
                    *sums = sums.framed(&slices);
                    framed = true;
                }
                if pass == Pass::Head {
                    return Ok(Some(sums.emptied()));
                }
                sums.push_chunk(&slices, row);
                row += read as u64;
            }
        }
    }
    Ok(sums)
}

/// Up to [`CHUNK_ROWS`] records of a column: numbers for a numeric one,
/// texts (invalid UTF-8 as missing) for a byte-array one.
fn read_cells(
    reader: &mut ColumnReader,
    max_def: i16,
    levels: &mut Vec<i16>,
) -> parquet::errors::Result<Cells> {
    macro_rules! texts {
        ($typed:expr, $buffer:ty) => {{
            let mut buffer: Vec<$buffer> = Vec::with_capacity(CHUNK_ROWS);
            levels.clear();
            let (_, values, read_levels) =
                $typed.read_records(CHUNK_ROWS, Some(levels), None, &mut buffer)?;
            let text = |v: &$buffer| std::str::from_utf8(v.data()).ok().map(str::to_string);
            let out: Vec<Option<String>> = if max_def == 0 {
                buffer[..values].iter().map(text).collect()
            } else {
                let mut present = buffer[..values].iter().map(text);
                levels[..read_levels]
                    .iter()
                    .map(|&level| {
                        if level == max_def {
                            present.next().flatten()
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            Ok(Cells::Texts(out))
        }};
    }
    match reader {
        ColumnReader::ByteArrayColumnReader(r) => texts!(r, parquet::data_type::ByteArray),
        ColumnReader::FixedLenByteArrayColumnReader(r) => {
            texts!(r, parquet::data_type::FixedLenByteArray)
        }
        _ => {
            let mut out = Vec::with_capacity(CHUNK_ROWS);
            read_numbers(reader, max_def, levels, &mut out)?;
            Ok(Cells::Numbers(out))
        }
    }
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
