//! `keel data diff`: what changed between two revisions (or a revision and
//! the workspace's metafiles): tracked paths and the files inside tracked
//! directories, added, deleted or modified. For CSV/TSV files whose both
//! versions are in the cache, also the row count and each column's type,
//! null count, min, max and mean. For Parquet files the same comes from the
//! footer alone (row count, schema, per-column null counts and min/max
//! statistics; no mean), so even large files cost a few small reads.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::error::Result;
use crate::git::{self, Snapshot};
use crate::hash::Digest;
use crate::manifest::ManifestEntry;
use crate::metafile::{Kind, Metafile};
use crate::workspace::{Change, Workspace, join};

/// One side of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A git revision.
    Rev(String),
    /// The metafiles in the working tree.
    Workspace,
}

impl Side {
    fn label(&self) -> String {
        match self {
            Side::Rev(rev) => rev.clone(),
            Side::Workspace => "workspace".into(),
        }
    }
}

/// A changed file.
#[derive(Debug, Clone)]
pub struct DiffEntry {
    /// Project-relative path.
    pub path: String,
    /// What happened to it.
    pub change: Change,
    /// Digest and size before.
    pub old: Option<(Digest, u64)>,
    /// Digest and size after.
    pub new: Option<(Digest, u64)>,
    /// For CSV/TSV: row and column changes.
    pub table: Option<TableDiff>,
    /// Why details are missing (e.g. a manifest not in the cache).
    pub note: Option<String>,
}

/// The whole diff.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// Left side label.
    pub from: String,
    /// Right side label.
    pub to: String,
    /// Changed files, by path.
    pub entries: Vec<DiffEntry>,
}

/// Column type inferred from the values (empty cells are nulls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Only nulls.
    Empty,
    /// Whole numbers.
    Integer,
    /// Numbers.
    Float,
    /// true/false.
    Boolean,
    /// Anything else.
    String,
}

impl ColumnType {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Empty => "empty",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::String => "string",
        }
    }
}

/// Summary statistics of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSummary {
    /// Header name.
    pub name: String,
    /// Inferred type.
    pub kind: ColumnType,
    /// Empty cells.
    pub nulls: u64,
    /// Smallest number (numeric columns).
    pub min: Option<f64>,
    /// Largest number.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

/// Rows and columns of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    /// Data rows (header excluded).
    pub rows: u64,
    /// Columns in order.
    pub columns: Vec<ColumnSummary>,
}

/// How a table changed: both summaries plus readable lines.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDiff {
    /// Before.
    pub old: TableSummary,
    /// After.
    pub new: TableSummary,
    /// One line per change, e.g. "rows: 100 -> 120 (+20)".
    pub changes: Vec<String>,
}

/// Computes the diff between two sides.
pub fn diff(workspace: &Workspace, from: &Side, to: &Side) -> Result<DiffReport> {
    let root = workspace.project().root();
    let load = |side: &Side| -> Result<Snapshot> {
        match side {
            Side::Rev(rev) => git::snapshot_at(root, rev),
            Side::Workspace => git::workspace_snapshot(root),
        }
    };
    let (old, new) = (load(from)?, load(to)?);
    let mut entries = Vec::new();
    let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let (before, after) = (old.get(path), new.get(path));
        if before == after {
            continue;
        }
        entries.extend(diff_tracked(workspace, path, before, after));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(DiffReport {
        from: from.label(),
        to: to.label(),
        entries,
    })
}

fn files_of(
    workspace: &Workspace,
    metafile: Option<&Metafile>,
) -> std::result::Result<BTreeMap<String, ManifestEntry>, String> {
    let Some(metafile) = metafile else {
        return Ok(BTreeMap::new());
    };
    match workspace.expected_entries(metafile) {
        Ok(Some(entries)) => Ok(entries
            .into_iter()
            .map(|entry| (entry.path.clone(), entry))
            .collect()),
        Ok(None) => Err(format!(
            "manifest {} is not in the cache (run `keel data fetch`)",
            metafile.digest
        )),
        Err(error) => Err(error.to_string()),
    }
}

fn diff_tracked(
    workspace: &Workspace,
    path: &str,
    before: Option<&Metafile>,
    after: Option<&Metafile>,
) -> Vec<DiffEntry> {
    let summary =
        |metafile: Option<&Metafile>| metafile.map(|metafile| (metafile.digest, metafile.size));
    let change = match (before, after) {
        (None, _) => Change::Added,
        (_, None) => Change::Deleted,
        _ => Change::Modified,
    };
    let kind_changed = before.zip(after).is_some_and(|(b, a)| b.kind != a.kind);
    let is_dir = before
        .or(after)
        .is_some_and(|metafile| metafile.kind == Kind::Directory)
        && !kind_changed;
    if !is_dir {
        let mut entry = DiffEntry {
            path: path.to_string(),
            change,
            old: summary(before),
            new: summary(after),
            table: None,
            note: None,
        };
        if change == Change::Modified && !kind_changed {
            attach_table(workspace, path, &mut entry);
        }
        return vec![entry];
    }
    let (old_files, new_files) = match (files_of(workspace, before), files_of(workspace, after)) {
        (Ok(old_files), Ok(new_files)) => (old_files, new_files),
        (Err(note), _) | (_, Err(note)) => {
            return vec![DiffEntry {
                path: path.to_string(),
                change,
                old: summary(before),
                new: summary(after),
                table: None,
                note: Some(note),
            }];
        }
    };
    let names: HashSet<&String> = old_files.keys().chain(new_files.keys()).collect();
    let mut entries = Vec::new();
    for name in names {
        let (b, a) = (old_files.get(name), new_files.get(name));
        let change = match (b, a) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Deleted,
            (Some(b), Some(a)) if b.digest != a.digest => Change::Modified,
            _ => continue,
        };
        let mut entry = DiffEntry {
            path: join(path, name),
            change,
            old: b.map(|entry| (entry.digest, entry.size)),
            new: a.map(|entry| (entry.digest, entry.size)),
            table: None,
            note: None,
        };
        if change == Change::Modified {
            attach_table(workspace, &entry.path.clone(), &mut entry);
        }
        entries.push(entry);
    }
    entries
}

fn attach_table(workspace: &Workspace, path: &str, entry: &mut DiffEntry) {
    let lower = path.to_ascii_lowercase();
    let format = if lower.ends_with(".csv") {
        TableFormat::Delimited(b',')
    } else if lower.ends_with(".tsv") {
        TableFormat::Delimited(b'\t')
    } else if lower.ends_with(".parquet") {
        TableFormat::Parquet
    } else {
        return;
    };
    let (Some((old_digest, _)), Some((new_digest, _))) = (entry.old, entry.new) else {
        return;
    };
    let cache = workspace.cache();
    let summarize = |digest: &Digest| -> std::result::Result<TableSummary, String> {
        // The readers take a file: a packed object is materialized loose.
        let object = match cache.loose_path(digest) {
            Ok(Some(object)) => object,
            Ok(None) => {
                return Err(format!(
                    "object {digest} is not in the cache (run `keel data fetch`)"
                ));
            }
            Err(error) => return Err(error.to_string()),
        };
        match format {
            TableFormat::Delimited(delimiter) => summarize_csv(&object, delimiter),
            TableFormat::Parquet => summarize_parquet(&object),
        }
    };
    match (summarize(&old_digest), summarize(&new_digest)) {
        (Ok(old), Ok(new)) => {
            let changes = compare_tables(&old, &new);
            entry.table = Some(TableDiff { old, new, changes });
        }
        (Err(note), _) | (_, Err(note)) => entry.note = Some(note),
    }
}

#[derive(Clone, Copy)]
enum TableFormat {
    Delimited(u8),
    Parquet,
}

/// Reads a Parquet file's footer: row count, schema, and per-column null
/// counts and min/max from the row-group statistics (mean is not stored).
pub fn summarize_parquet(path: &Path) -> std::result::Result<TableSummary, String> {
    use parquet::basic::Type as Physical;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;

    let fail = |error: &dyn std::fmt::Display| format!("{}: {error}", path.display());
    let file = std::fs::File::open(path).map_err(|error| fail(&error))?;
    let reader = SerializedFileReader::new(file).map_err(|error| fail(&error))?;
    let metadata = reader.metadata();
    let rows = metadata.file_metadata().num_rows().max(0) as u64;
    let schema = metadata.file_metadata().schema_descr();
    let mut columns = Vec::new();
    for (index, column) in schema.columns().iter().enumerate() {
        let kind = match column.physical_type() {
            Physical::BOOLEAN => ColumnType::Boolean,
            Physical::INT32 | Physical::INT64 | Physical::INT96 => ColumnType::Integer,
            Physical::FLOAT | Physical::DOUBLE => ColumnType::Float,
            Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY => ColumnType::String,
        };
        let (mut nulls, mut min, mut max) = (0u64, None::<f64>, None::<f64>);
        for row_group in metadata.row_groups() {
            let Some(statistics) = row_group.column(index).statistics() else {
                continue;
            };
            nulls += statistics.null_count_opt().unwrap_or(0);
            let (low, high) = match statistics {
                Statistics::Int32(values) => (
                    values.min_opt().map(|v| *v as f64),
                    values.max_opt().map(|v| *v as f64),
                ),
                Statistics::Int64(values) => (
                    values.min_opt().map(|v| *v as f64),
                    values.max_opt().map(|v| *v as f64),
                ),
                Statistics::Float(values) => (
                    values.min_opt().map(|v| *v as f64),
                    values.max_opt().map(|v| *v as f64),
                ),
                Statistics::Double(values) => {
                    (values.min_opt().copied(), values.max_opt().copied())
                }
                _ => (None, None),
            };
            if let Some(low) = low {
                min = Some(min.map_or(low, |current| current.min(low)));
            }
            if let Some(high) = high {
                max = Some(max.map_or(high, |current| current.max(high)));
            }
        }
        columns.push(ColumnSummary {
            name: column.path().string(),
            kind,
            nulls,
            min,
            max,
            mean: None,
        });
    }
    Ok(TableSummary { rows, columns })
}

#[derive(Default)]
struct Accumulator {
    nulls: u64,
    integers: u64,
    floats: u64,
    booleans: u64,
    strings: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

/// Reads a CSV/TSV file (header row first) and summarises each column;
/// cells are read by keel-table's rule (the same missing spellings and
/// types as training and validation).
pub fn summarize_csv(path: &Path, delimiter: u8) -> std::result::Result<TableSummary, String> {
    use keel_table::{Cell, Rows};
    let mut reader =
        keel_table::CsvRows::open(path, delimiter).map_err(|error| error.to_string())?;
    let headers = reader.columns().to_vec();
    let mut columns: Vec<Accumulator> = headers.iter().map(|_| Accumulator::default()).collect();
    let mut rows = 0u64;
    let mut row = Vec::with_capacity(headers.len());
    while reader
        .next_row(&mut row)
        .map_err(|error| error.to_string())?
    {
        rows += 1;
        for (column, cell) in columns.iter_mut().zip(&row) {
            match cell {
                None => column.nulls += 1,
                Some(Cell::Bool(_)) => column.booleans += 1,
                Some(Cell::Text(_)) => column.strings += 1,
                Some(number) => {
                    let value = number.number().unwrap_or(0.0);
                    if matches!(number, Cell::Int(_)) {
                        column.integers += 1;
                    } else {
                        column.floats += 1;
                    }
                    column.sum += value;
                    column.min = Some(column.min.map_or(value, |min| min.min(value)));
                    column.max = Some(column.max.map_or(value, |max| max.max(value)));
                }
            }
        }
    }
    let columns = headers
        .into_iter()
        .zip(columns)
        .map(|(name, column)| {
            let numeric = column.integers + column.floats;
            let kind = if column.strings > 0 || (column.booleans > 0 && numeric > 0) {
                ColumnType::String
            } else if column.booleans > 0 {
                ColumnType::Boolean
            } else if column.floats > 0 {
                ColumnType::Float
            } else if column.integers > 0 {
                ColumnType::Integer
            } else {
                ColumnType::Empty
            };
            let is_numeric = matches!(kind, ColumnType::Integer | ColumnType::Float);
            ColumnSummary {
                name,
                kind,
                nulls: column.nulls,
                min: column.min.filter(|_| is_numeric),
                max: column.max.filter(|_| is_numeric),
                mean: (is_numeric && numeric > 0).then(|| column.sum / numeric as f64),
            }
        })
        .collect();
    Ok(TableSummary { rows, columns })
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) => {
            let text = format!("{value:.4}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None => "-".into(),
    }
}

/// Readable lines for every difference between two table summaries.
pub fn compare_tables(old: &TableSummary, new: &TableSummary) -> Vec<String> {
    let mut changes = Vec::new();
    if old.rows != new.rows {
        changes.push(format!(
            "rows: {} -> {} ({:+})",
            old.rows,
            new.rows,
            new.rows as i128 - old.rows as i128
        ));
    }
    for column in &new.columns {
        match old
            .columns
            .iter()
            .find(|candidate| candidate.name == column.name)
        {
            None => changes.push(format!(
                "column `{}` added ({})",
                column.name,
                column.kind.as_str()
            )),
            Some(before) => {
                if before.kind != column.kind {
                    changes.push(format!(
                        "column `{}` type: {} -> {}",
                        column.name,
                        before.kind.as_str(),
                        column.kind.as_str()
                    ));
                }
                if before.nulls != column.nulls {
                    changes.push(format!(
                        "column `{}` nulls: {} -> {}",
                        column.name, before.nulls, column.nulls
                    ));
                }
                for (stat, b, a) in [
                    ("min", before.min, column.min),
                    ("max", before.max, column.max),
                    ("mean", before.mean, column.mean),
                ] {
                    let same = match (b, a) {
                        (Some(b), Some(a)) => {
                            (b - a).abs() <= 1e-12 * b.abs().max(a.abs()).max(1.0)
                        }
                        (None, None) => true,
                        _ => false,
                    };
                    if !same {
                        changes.push(format!(
                            "column `{}` {stat}: {} -> {}",
                            column.name,
                            number(b),
                            number(a)
                        ));
                    }
                }
            }
        }
    }
    for column in &old.columns {
        if !new
            .columns
            .iter()
            .any(|candidate| candidate.name == column.name)
        {
            changes.push(format!(
                "column `{}` removed ({})",
                column.name,
                column.kind.as_str()
            ));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(text: &str) -> TableSummary {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        summarize_csv(&path, b',').unwrap()
    }

    #[test]
    fn infers_types_and_statistics() {
        let summary =
            summary_of("id,score,name,flag,empty\n1,0.5,a,true,\n2,1.5,b,false,\n3,,c,true,\n");
        assert_eq!(summary.rows, 3);
        let kinds: Vec<&str> = summary
            .columns
            .iter()
            .map(|column| column.kind.as_str())
            .collect();
        assert_eq!(kinds, ["integer", "float", "string", "boolean", "empty"]);
        let score = &summary.columns[1];
        assert_eq!(
            (score.nulls, score.min, score.max, score.mean),
            (1, Some(0.5), Some(1.5), Some(1.0))
        );
    }

    #[test]
    fn reports_rows_columns_types_and_stats() {
        let old = summary_of("id,score,gone\n1,0.5,x\n2,1.5,y\n");
        let new = summary_of("id,score,added\n1,0.5,1\n2,x,2\n3,1,3\n");
        assert_eq!(
            compare_tables(&old, &new),
            [
                "rows: 2 -> 3 (+1)",
                "column `id` max: 2 -> 3",
                "column `id` mean: 1.5 -> 2",
                "column `score` type: float -> string",
                "column `score` min: 0.5 -> -",
                "column `score` max: 1.5 -> -",
                "column `score` mean: 1 -> -",
                "column `added` added (integer)",
                "column `gone` removed (string)",
            ]
        );
        assert!(compare_tables(&old, &old).is_empty());
    }

    fn write_parquet(path: &Path, ids: &[i64], scores: &[f64], defined: &[i16]) {
        use parquet::column::writer::ColumnWriter;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let schema = parquet::schema::parser::parse_message_type(
            "message t { required int64 id; optional double score; }",
        )
        .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(
            file,
            Arc::new(schema),
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        let mut row_group = writer.next_row_group().unwrap();
        while let Some(mut column) = row_group.next_column().unwrap() {
            match column.untyped() {
                ColumnWriter::Int64ColumnWriter(typed) => {
                    typed.write_batch(ids, None, None).unwrap();
                }
                ColumnWriter::DoubleColumnWriter(typed) => {
                    typed.write_batch(scores, Some(defined), None).unwrap();
                }
                _ => unreachable!("schema has two columns"),
            }
            column.close().unwrap();
        }
        row_group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn parquet_footer_gives_rows_schema_and_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let (old_path, new_path) = (
            dir.path().join("old.parquet"),
            dir.path().join("new.parquet"),
        );
        write_parquet(&old_path, &[1, 2], &[0.5, 1.5], &[1, 1]);
        write_parquet(&new_path, &[1, 2, 3], &[0.5, 4.0], &[1, 0, 1]);
        let old = summarize_parquet(&old_path).unwrap();
        let new = summarize_parquet(&new_path).unwrap();
        assert_eq!(old.rows, 2);
        assert_eq!(
            (
                new.columns[1].name.as_str(),
                new.columns[1].kind,
                new.columns[1].nulls
            ),
            ("score", ColumnType::Float, 1)
        );
        assert_eq!(
            compare_tables(&old, &new),
            [
                "rows: 2 -> 3 (+1)",
                "column `id` max: 2 -> 3",
                "column `score` nulls: 0 -> 1",
                "column `score` max: 1.5 -> 4"
            ]
        );
        let garbage = dir.path().join("bad.parquet");
        std::fs::write(&garbage, b"not parquet").unwrap();
        assert!(
            summarize_parquet(&garbage)
                .unwrap_err()
                .contains("bad.parquet")
        );
    }
}
