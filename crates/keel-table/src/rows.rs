//! Streaming readers: a CSV file (any `Read`, a small buffer at a time) or
//! a Parquet file (one row group at a time) as a header and rows of typed
//! [`Cell`]s, so memory stays bounded by one record or one row group
//! whatever the file's size. The whole-table reader ([`crate::Table`]) and
//! the chunked profilers read through the same readers and the same cell
//! rule.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;

use crate::cell::Cell;
use crate::error::{Result, TableError};

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

/// The header rule: every column has a name, and no name appears twice.
pub fn check_names(origin: &Path, names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (position, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(TableError::file(
                origin,
                format!("column {} has an empty name in the header", position + 1),
            ));
        }
        if !seen.insert(name) {
            return Err(TableError::file(
                origin,
                format!("duplicate column name {name:?}"),
            ));
        }
    }
    Ok(())
}

/// A stream of typed rows under a header.
pub trait Rows {
    /// Column names.
    fn columns(&self) -> &[String];
    /// Fills `row` with the next row's cells (one per column, `None` when
    /// missing); false at the end.
    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool>;
}

/// CSV rows: a header row, then records of the same width.
pub struct CsvRows<R: Read> {
    origin: PathBuf,
    reader: csv::Reader<R>,
    columns: Vec<String>,
    record: csv::StringRecord,
}

impl<R: Read> CsvRows<R> {
    /// Reads and checks the header (names trimmed); `origin` names the file
    /// in errors; `delimiter` is `b','` for CSV, `b'\t'` for TSV.
    pub fn new(reader: R, origin: &Path, delimiter: u8) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .delimiter(delimiter)
            .buffer_capacity(64 * 1024)
            .from_reader(reader);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|error| TableError::file(origin, format!("reading the header: {error}")))?
            .iter()
            .map(|name| name.trim().to_string())
            .collect();
        if columns.is_empty() || columns.iter().all(String::is_empty) {
            return Err(TableError::file(origin, "no header row"));
        }
        check_names(origin, &columns)?;
        Ok(CsvRows {
            origin: origin.to_path_buf(),
            reader,
            columns,
            record: csv::StringRecord::new(),
        })
    }

    /// Reads the next record as it is written (cells not yet read by the
    /// cell rule: [`crate::read_text`] or [`Cell::parse`] do that); false at
    /// the end. A record of another width than the header is an error
    /// naming its line.
    pub fn next_record(&mut self, record: &mut csv::StringRecord) -> Result<bool> {
        self.reader
            .read_record(record)
            .map_err(|error| TableError::file(&self.origin, error))
    }
}

impl CsvRows<File> {
    /// Opens a CSV file.
    pub fn open(path: &Path, delimiter: u8) -> Result<Self> {
        let file = File::open(path).map_err(|cause| TableError::io(path, cause))?;
        CsvRows::new(file, path, delimiter)
    }
}

impl<R: Read> Rows for CsvRows<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool> {
        let mut record = std::mem::take(&mut self.record);
        let more = self.next_record(&mut record);
        if let Ok(true) = more {
            row.clear();
            row.extend(record.iter().map(Cell::parse));
        }
        self.record = record;
        more
    }
}

/// Opens a Parquet file's reader; errors name the file.
pub fn open_parquet(path: &Path) -> Result<SerializedFileReader<File>> {
    let file = File::open(path).map_err(|cause| TableError::io(path, cause))?;
    SerializedFileReader::new(file).map_err(|error| TableError::file(path, error))
}

/// The names of a Parquet file's top-level columns.
pub fn parquet_columns(reader: &SerializedFileReader<File>) -> Vec<String> {
    reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|field| field.name().to_string())
        .collect()
}

/// Parquet rows, read one row group at a time.
pub struct ParquetRows {
    origin: PathBuf,
    rows: RowIter<'static>,
    columns: Vec<String>,
}

impl ParquetRows {
    /// Opens a Parquet file (a flat schema) and checks its column names.
    pub fn open(path: &Path) -> Result<Self> {
        let reader = open_parquet(path)?;
        let columns = parquet_columns(&reader);
        check_names(path, &columns)?;
        Ok(ParquetRows {
            origin: path.to_path_buf(),
            rows: reader.into_iter(),
            columns,
        })
    }
}

impl Rows for ParquetRows {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Option<Cell>>) -> Result<bool> {
        match self.rows.next() {
            None => Ok(false),
            Some(Err(error)) => Err(TableError::file(&self.origin, error)),
            Some(Ok(record)) => {
                row.clear();
                row.extend(
                    record
                        .into_columns()
                        .into_iter()
                        .map(|(_, field)| Cell::from_field(field)),
                );
                Ok(true)
            }
        }
    }
}

/// Opens a CSV or Parquet file as rows (by its extension, see [`is_parquet`]).
pub fn open(path: &Path) -> Result<Box<dyn Rows>> {
    if is_parquet(path) {
        Ok(Box::new(ParquetRows::open(path)?))
    } else {
        Ok(Box::new(CsvRows::open(path, b',')?))
    }
}
