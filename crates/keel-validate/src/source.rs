//! Row-by-row readers for CSV (any `Read`, a small buffer at a time) and
//! Parquet (one row group at a time), giving typed cells. Memory stays
//! bounded by one record (CSV) or one row group (Parquet), whatever the
//! file's size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use keel_learn::table::MISSING_TOKENS;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, reader::RowIter};

use crate::error::{Result, ValidateError};

/// One present cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Cell {
    /// The value as text (for examples in reports and for categories).
    pub fn text(&self) -> String {
        match self {
            Cell::Bool(flag) => flag.to_string(),
            Cell::Int(number) => number.to_string(),
            Cell::Float(number) => number.to_string(),
            Cell::Text(text) => text.clone(),
        }
    }

    /// The value as a number, when it is one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Int(number) => Some(*number as f64),
            Cell::Float(number) => Some(*number),
            _ => None,
        }
    }

    /// Reads a CSV field: missing tokens (as training reads them) are `None`.
    pub fn parse(text: &str) -> Option<Cell> {
        let trimmed = text.trim();
        if MISSING_TOKENS
            .iter()
            .any(|token| trimmed.eq_ignore_ascii_case(token))
        {
            return None;
        }
        if let Ok(number) = trimmed.parse::<i64>() {
            return Some(Cell::Int(number));
        }
        if let Ok(number) = trimmed.parse::<f64>() {
            return Some(Cell::Float(number));
        }
        if trimmed.eq_ignore_ascii_case("true") {
            return Some(Cell::Bool(true));
        }
        if trimmed.eq_ignore_ascii_case("false") {
            return Some(Cell::Bool(false));
        }
        Some(Cell::Text(trimmed.to_string()))
    }
}

/// A stream of rows with a header.
pub trait Rows {
    /// Column names.
    fn columns(&self) -> &[String];
    /// Fills `row` with the next row's cells (one per column); false at the end.
    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool>;
}

/// CSV rows from any reader.
pub struct CsvRows<R: Read> {
    origin: PathBuf,
    reader: csv::Reader<R>,
    columns: Vec<String>,
    record: csv::StringRecord,
    row: u64,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header; `origin` names the file in errors.
    pub fn new(reader: R, origin: &Path) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .buffer_capacity(64 * 1024)
            .from_reader(reader);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|error| ValidateError::data(origin, format!("reading the header: {error}")))?
            .iter()
            .map(|name| name.trim().to_string())
            .collect();
        Ok(CsvRows {
            origin: origin.to_path_buf(),
            reader,
            columns,
            record: csv::StringRecord::new(),
            row: 0,
        })
    }
}

impl<R: Read> Rows for CsvRows<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool> {
        let more = self.reader.read_record(&mut self.record).map_err(|error| {
            ValidateError::data(&self.origin, format!("row {}: {error}", self.row + 1))
        })?;
        if !more {
            return Ok(false);
        }
        self.row += 1;
        row.clear();
        row.extend(self.record.iter().map(Cell::parse));
        Ok(true)
    }
}

/// Parquet rows, read one row group at a time.
pub struct ParquetRows {
    origin: PathBuf,
    rows: RowIter<'static>,
    columns: Vec<String>,
}

impl ParquetRows {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| ValidateError::io(path, source))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|error| ValidateError::data(path, error.to_string()))?;
        let columns = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|field| field.name().to_string())
            .collect();
        Ok(ParquetRows {
            origin: path.to_path_buf(),
            rows: reader.into_iter(),
            columns,
        })
    }
}

fn field_cell(field: Field) -> Option<Cell> {
    Some(match field {
        Field::Null => return None,
        Field::Bool(v) => Cell::Bool(v),
        Field::Byte(v) => Cell::Int(i64::from(v)),
        Field::Short(v) => Cell::Int(i64::from(v)),
        Field::Int(v) => Cell::Int(i64::from(v)),
        Field::Long(v) => Cell::Int(v),
        Field::UByte(v) => Cell::Int(i64::from(v)),
        Field::UShort(v) => Cell::Int(i64::from(v)),
        Field::UInt(v) => Cell::Int(i64::from(v)),
        Field::ULong(v) => i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int),
        Field::Float(v) if v.is_nan() => return None,
        Field::Double(v) if v.is_nan() => return None,
        Field::Float(v) => Cell::Float(f64::from(v)),
        Field::Double(v) => Cell::Float(v),
        Field::Str(v) => Cell::Text(v),
        other => Cell::Text(other.to_string()),
    })
}

impl Rows for ParquetRows {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool> {
        match self.rows.next() {
            None => Ok(false),
            Some(Err(error)) => Err(ValidateError::data(&self.origin, error.to_string())),
            Some(Ok(record)) => {
                row.clear();
                row.extend(
                    record
                        .into_columns()
                        .into_iter()
                        .map(|(_, field)| field_cell(field)),
                );
                Ok(true)
            }
        }
    }
}

/// Whether a path is read as Parquet (`.parquet`, `.pq`) rather than CSV.
pub fn is_parquet(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("parquet" | "pq")
    )
}

/// Opens a CSV or Parquet file as rows.
pub fn open(path: &Path) -> Result<Box<dyn Rows>> {
    if is_parquet(path) {
        Ok(Box::new(ParquetRows::open(path)?))
    } else {
        let file = File::open(path).map_err(|source| ValidateError::io(path, source))?;
        Ok(Box::new(CsvRows::new(file, path)?))
    }
}
