//! Streaming validation against a schema, and its report: every violation
//! by column and rule, with a count, the first example rows (1-based data
//! rows, the header not counted) and an example value.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::schema::{ColumnSchema, ColumnType, Schema};
use crate::{UNIQUE_TRACK_LIMIT, value_hash};
use keel_table::Cell;
use keel_table::rows::{self as source, Rows};

/// Example rows kept per violation.
pub const EXAMPLE_ROWS: usize = 5;

/// One kind of violation in one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub column: String,
    /// `missing column`, `unexpected column`, `null`, `type`, `min`, `max`, `category`, `unique`.
    pub rule: &'static str,
    /// What the rule says (e.g. `not nullable`, `below min 0`).
    pub message: String,
    pub count: u64,
    /// The first rows (1-based) where it happened.
    pub rows: Vec<u64>,
    /// The first offending value.
    pub example: Option<String>,
}

/// The outcome of validating one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub data: PathBuf,
    pub schema: Option<PathBuf>,
    pub rows: u64,
    pub columns: usize,
    pub violations: Vec<Violation>,
    /// Limits that were hit (e.g. uniqueness tracking).
    pub notes: Vec<String>,
}

impl Report {
    /// No violations.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Total violating cells.
    pub fn violation_count(&self) -> u64 {
        self.violations.iter().map(|v| v.count).sum()
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let schema = self
            .schema
            .as_ref()
            .map(|s| format!(" against {}", s.display()))
            .unwrap_or_default();
        let mut out = String::new();
        if self.is_clean() {
            let _ = writeln!(
                out,
                "{}: {} rows, {} columns: valid{schema}",
                self.data.display(),
                self.rows,
                self.columns
            );
        } else {
            let columns: HashSet<&str> =
                self.violations.iter().map(|v| v.column.as_str()).collect();
            let _ = writeln!(
                out,
                "{}: {} rows: {} violations in {} column(s){schema}",
                self.data.display(),
                self.rows,
                self.violation_count(),
                columns.len()
            );
            for violation in &self.violations {
                let _ = write!(
                    out,
                    "  {}: {} x {}",
                    violation.column, violation.count, violation.message
                );
                if let Some(example) = &violation.example {
                    let _ = write!(out, " (e.g. {example:?})");
                }
                if !violation.rows.is_empty() {
                    let rows: Vec<String> = violation.rows.iter().map(u64::to_string).collect();
                    let more = if violation.count > violation.rows.len() as u64 {
                        ", ..."
                    } else {
                        ""
                    };
                    let _ = write!(out, "; rows {}{more}", rows.join(", "));
                }
                out.push('\n');
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

struct Checker<'a> {
    schema: &'a ColumnSchema,
    categories: Option<HashSet<&'a str>>,
    seen: Option<HashSet<u64>>,
    found: BTreeMap<&'static str, Violation>,
}

impl<'a> Checker<'a> {
    fn flag(
        &mut self,
        rule: &'static str,
        message: impl FnOnce() -> String,
        row: u64,
        example: Option<String>,
    ) {
        let entry = self.found.entry(rule).or_insert_with(|| Violation {
            column: self.schema.name.clone(),
            rule,
            message: message(),
            count: 0,
            rows: Vec::new(),
            example,
        });
        entry.count += 1;
        if entry.rows.len() < EXAMPLE_ROWS {
            entry.rows.push(row);
        }
    }

    fn check(&mut self, cell: &Option<Cell>, row: u64, notes: &mut Vec<String>) {
        let schema = self.schema;
        let Some(cell) = cell else {
            if !schema.nullable {
                self.flag("null", || "null (column is not nullable)".into(), row, None);
            }
            return;
        };
        let type_ok = match (schema.kind, cell) {
            (ColumnType::String, _) => true,
            (ColumnType::Boolean, Cell::Bool(_)) => true,
            (ColumnType::Integer, Cell::Int(_)) => true,
            (ColumnType::Integer, Cell::Float(v)) => v.fract() == 0.0,
            (ColumnType::Float, Cell::Int(_) | Cell::Float(_)) => true,
            _ => false,
        };
        if !type_ok {
            let kind = schema.kind.as_str();
            self.flag("type", || format!("not {kind}"), row, Some(cell.text()));
            return;
        }
        if let Some(number) = cell.number() {
            if let Some(min) = schema.min
                && number < min
            {
                self.flag("min", || format!("below min {min}"), row, Some(cell.text()));
            }
            if let Some(max) = schema.max
                && number > max
            {
                self.flag("max", || format!("above max {max}"), row, Some(cell.text()));
            }
        }
        let text = cell.text();
        if let Some(categories) = &self.categories
            && !categories.contains(text.as_str())
        {
            self.flag(
                "category",
                || "not an allowed category".into(),
                row,
                Some(text.clone()),
            );
        }
        if let Some(seen) = &mut self.seen {
            if !seen.insert(value_hash(&text)) {
                self.flag(
                    "unique",
                    || "duplicate in a unique column".into(),
                    row,
                    Some(text),
                );
            } else if seen.len() > UNIQUE_TRACK_LIMIT {
                self.seen = None;
                notes.push(format!(
                    "{}: uniqueness checked on the first {UNIQUE_TRACK_LIMIT} distinct values only (memory bound)",
                    schema.name
                ));
            }
        }
    }
}

/// Validates rows against `schema`; `data` names the file in the report.
pub fn validate(rows: &mut dyn Rows, schema: &Schema, data: &Path) -> Result<Report> {
    let columns = rows.columns().to_vec();
    let mut violations = Vec::new();
    let mut notes = Vec::new();
    let mut checkers: Vec<(usize, Checker<'_>)> = Vec::new();
    for column in &schema.columns {
        match columns.iter().position(|name| name == &column.name) {
            Some(index) => checkers.push((
                index,
                Checker {
                    schema: column,
                    categories: column
                        .categories
                        .as_ref()
                        .map(|c| c.iter().map(String::as_str).collect()),
                    seen: column.unique.then(HashSet::new),
                    found: BTreeMap::new(),
                },
            )),
            None => violations.push(Violation {
                column: column.name.clone(),
                rule: "missing column",
                message: "column is in the schema but not in the data".into(),
                count: 1,
                rows: Vec::new(),
                example: None,
            }),
        }
    }
    for name in &columns {
        if !schema.columns.iter().any(|c| &c.name == name) {
            violations.push(Violation {
                column: name.clone(),
                rule: "unexpected column",
                message: "column is in the data but not in the schema".into(),
                count: 1,
                rows: Vec::new(),
                example: None,
            });
        }
    }
    let mut row = Vec::new();
    let mut count = 0u64;
    while rows.next_row(&mut row)? {
        count += 1;
        for (index, checker) in &mut checkers {
            let cell = row.get(*index).unwrap_or(&None);
            checker.check(cell, count, &mut notes);
        }
    }
    for (_, checker) in checkers {
        violations.extend(checker.found.into_values());
    }
    Ok(Report {
        data: data.to_path_buf(),
        schema: schema.origin.clone(),
        rows: count,
        columns: columns.len(),
        violations,
        notes,
    })
}

/// Validates a CSV or Parquet file.
pub fn validate_path(path: &Path, schema: &Schema) -> Result<Report> {
    let mut rows = source::open(path)?;
    validate(rows.as_mut(), schema, path)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::infer;
    use keel_table::CsvRows;

    /// A reader that hands out at most 7 bytes per call and counts calls:
    /// validation must work on a stream, never needing the whole file.
    struct Trickle<'a> {
        data: &'a [u8],
        reads: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.reads += 1;
            Ok(n)
        }
    }

    fn csv(rows: usize) -> String {
        let mut text = String::from("id,income,region,flag,note\n");
        for i in 0..rows {
            let region = ["north", "south", "east"][i % 3];
            let income = if i % 97 == 5 {
                String::new()
            } else {
                format!("{}.5", 1000 + (i * 37) % 5000)
            };
            text.push_str(&format!(
                "{},{income},{region},{},free text {i}\n",
                i + 1,
                i % 2 == 0
            ));
        }
        text
    }

    #[test]
    fn infers_types_nulls_ranges_categories_uniqueness() {
        let text = csv(600);
        let mut rows = CsvRows::new(text.as_bytes(), Path::new("t.csv"), b',').unwrap();
        let (schema, count) = infer::infer(&mut rows).unwrap();
        assert_eq!(count, 600);
        let col = |name: &str| {
            schema
                .columns
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .clone()
        };
        let id = col("id");
        assert_eq!(
            (id.kind, id.nullable, id.unique, id.min, id.max),
            (ColumnType::Integer, false, true, Some(1.0), Some(600.0))
        );
        let income = col("income");
        assert_eq!(
            (income.kind, income.nullable, income.unique),
            (ColumnType::Float, true, false)
        );
        let region = col("region");
        assert_eq!(
            region.categories,
            Some(vec!["east".into(), "north".into(), "south".into()])
        );
        assert!(!region.unique);
        assert_eq!(col("flag").kind, ColumnType::Boolean);
        let note = col("note");
        assert_eq!(
            (note.kind, note.categories.is_none(), note.unique),
            (ColumnType::String, true, true)
        );
    }

    #[test]
    fn reports_every_violation_by_column_streaming() {
        let schema = {
            let text = csv(600);
            let mut rows = CsvRows::new(text.as_bytes(), Path::new("t.csv"), b',').unwrap();
            infer::infer(&mut rows).unwrap().0
        };
        // Clean data validates, read 7 bytes at a time.
        let text = csv(20_000);
        let mut stream = Trickle {
            data: text.as_bytes(),
            reads: 0,
        };
        let report = {
            let mut rows = CsvRows::new(&mut stream, Path::new("big.csv"), b',').unwrap();
            validate(&mut rows, &schema, Path::new("big.csv")).unwrap()
        };
        assert!(
            stream.reads > text.len() / 7 - 1,
            "the file was read in small chunks"
        );
        assert_eq!(report.rows, 20_000);
        // Values above the inferred max and ids above 600 are violations; income nulls are allowed.
        assert!(
            report.violations.iter().all(|v| v.rule == "max"),
            "{}",
            report.render()
        );
        // Now break things on purpose.
        let bad = "id,income,region,extra,flag\n1,10.5,north,x,true\n1,abc,west,y,maybe\n3,,north,z,false\n";
        let mut rows = CsvRows::new(bad.as_bytes(), Path::new("bad.csv"), b',').unwrap();
        let report = validate(&mut rows, &schema, Path::new("bad.csv")).unwrap();
        let find = |column: &str, rule: &str| {
            report
                .violations
                .iter()
                .find(|v| v.column == column && v.rule == rule)
                .cloned()
        };
        assert_eq!(find("id", "unique").unwrap().rows, vec![2]);
        let income_type = find("income", "type").unwrap();
        assert_eq!(
            (income_type.count, income_type.example.as_deref()),
            (1, Some("abc"))
        );
        assert_eq!(find("income", "min").unwrap().rows, vec![1]);
        assert_eq!(
            find("region", "category").unwrap().example.as_deref(),
            Some("west")
        );
        assert_eq!(find("flag", "type").unwrap().rows, vec![2]);
        assert!(find("note", "missing column").is_some());
        assert!(find("extra", "unexpected column").is_some());
        let text = report.render();
        assert!(
            text.contains("region: 1 x not an allowed category (e.g. \"west\"); rows 2"),
            "{text}"
        );
    }

    #[test]
    fn parquet_is_read_and_validated() {
        use std::sync::Arc;

        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let message =
            "message t { required int64 id; optional double x; required binary region (UTF8); }";
        let schema = Arc::new(parquet::schema::parser::parse_message_type(message).unwrap());
        let file = std::fs::File::create(&path).unwrap();
        let mut writer =
            SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
                .unwrap();
        for group in 0..3i64 {
            let mut rows = writer.next_row_group().unwrap();
            let ids: Vec<i64> = (0..100).map(|i| group * 100 + i).collect();
            let mut column = rows.next_column().unwrap().unwrap();
            column
                .typed::<Int64Type>()
                .write_batch(&ids, None, None)
                .unwrap();
            column.close().unwrap();
            let xs: Vec<f64> = (0..99).map(|i| i as f64 / 10.0).collect();
            let levels: Vec<i16> = (0..100).map(|i| i16::from(i != 50)).collect();
            let mut column = rows.next_column().unwrap().unwrap();
            column
                .typed::<DoubleType>()
                .write_batch(&xs, Some(&levels), None)
                .unwrap();
            column.close().unwrap();
            let regions: Vec<ByteArray> = (0..100)
                .map(|i| ByteArray::from(["a", "b"][i % 2]))
                .collect();
            let mut column = rows.next_column().unwrap().unwrap();
            column
                .typed::<ByteArrayType>()
                .write_batch(&regions, None, None)
                .unwrap();
            column.close().unwrap();
            rows.close().unwrap();
        }
        writer.close().unwrap();
        let schema = crate::infer_path(&path).unwrap();
        let x = &schema.columns[1];
        assert_eq!(
            (x.kind, x.nullable, x.min, x.max),
            (ColumnType::Float, true, Some(0.0), Some(9.8))
        );
        assert!(schema.columns[0].unique);
        assert_eq!(
            schema.columns[2].categories,
            Some(vec!["a".into(), "b".into()])
        );
        let mut strict = schema.clone();
        strict.columns[1].nullable = false;
        let report = validate_path(&path, &strict).unwrap();
        assert_eq!(report.rows, 300);
        let nulls = &report.violations[0];
        assert_eq!(
            (nulls.column.as_str(), nulls.rule, nulls.count),
            ("x", "null", 3)
        );
        assert_eq!(nulls.rows, vec![51, 151, 251]);
    }
}
