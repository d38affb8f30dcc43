//! Tabular data in memory: columns inferred as numeric or categorical from a
//! CSV or Parquet file (uncompressed or Snappy), with missing values kept as `NaN` (numeric) or `None`
//! (categorical). This is the raw form both training and prediction take;
//! encoding happens later, in [`crate::preprocess`].

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::error::{LearnError, Result};

/// Cell texts read as missing (case-insensitive, after trimming).
pub const MISSING_TOKENS: [&str; 7] = ["", "na", "nan", "null", "none", "?", "n/a"];

fn is_missing(text: &str) -> bool {
    let trimmed = text.trim();
    MISSING_TOKENS
        .iter()
        .any(|token| trimmed.eq_ignore_ascii_case(token))
}

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Every present value parsed as a number; missing ones are `NaN`.
    Numeric(Vec<f64>),
    /// At least one present value was not a number; missing ones are `None`.
    Categorical(Vec<Option<String>>),
}

impl Column {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(values) => values.len(),
            Column::Categorical(values) => values.len(),
        }
    }

    /// Whether the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` as text (`None` when missing); numbers use Rust's
    /// shortest round-trip form, so `1.0` reads as `"1"`.
    pub fn text(&self, row: usize) -> Option<String> {
        match self {
            Column::Numeric(values) => {
                let value = values[row];
                (!value.is_nan()).then(|| format_number(value))
            }
            Column::Categorical(values) => values[row].clone(),
        }
    }

    fn select(&self, rows: &[usize]) -> Column {
        match self {
            Column::Numeric(values) => Column::Numeric(rows.iter().map(|&i| values[i]).collect()),
            Column::Categorical(values) => {
                Column::Categorical(rows.iter().map(|&i| values[i].clone()).collect())
            }
        }
    }
}

/// Formats a number the way category labels are written (`1`, not `1.0`).
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Column>,
    rows: usize,
}

impl Table {
    /// Builds a table, checking that names are unique and lengths agree.
    pub fn new(names: Vec<String>, columns: Vec<Column>) -> Result<Self> {
        if names.len() != columns.len() {
            return Err(LearnError::data(format!(
                "{} column names for {} columns",
                names.len(),
                columns.len()
            )));
        }
        let mut seen = HashSet::new();
        for name in &names {
            if !seen.insert(name.as_str()) {
                return Err(LearnError::data(format!("duplicate column name {name:?}")));
            }
        }
        let rows = columns.first().map_or(0, Column::len);
        if let Some((name, column)) = names
            .iter()
            .zip(&columns)
            .find(|(_, column)| column.len() != rows)
        {
            return Err(LearnError::data(format!(
                "column {name:?} has {} values, expected {rows}",
                column.len()
            )));
        }
        Ok(Table {
            names,
            columns,
            rows,
        })
    }

    /// Reads `path` as Parquet when it ends in `.parquet` or `.pq`, else as CSV.
    pub fn read(path: &Path, force_categorical: &[String]) -> Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("parquet" | "pq") => Self::read_parquet(path, force_categorical),
            _ => Self::read_csv(path, force_categorical),
        }
    }

    /// Reads a Parquet file: integer, float, decimal-free numeric and boolean
    /// columns are numeric, strings (and dates, times, ...) categorical; nulls
    /// are missing. Columns in `force_categorical` are read as text.
    pub fn read_parquet(path: &Path, force_categorical: &[String]) -> Result<Self> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;

        let parquet_error = |error: parquet::errors::ParquetError| {
            LearnError::data(format!("{}: {error}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(|source| LearnError::io(path, source))?;
        let reader = SerializedFileReader::new(file).map_err(parquet_error)?;
        let names: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|field| field.name().to_string())
            .collect();
        // Per column: the number (if the cell is numeric) and the text.
        let mut cells: Vec<Vec<(Option<f64>, Option<String>)>> = vec![Vec::new(); names.len()];
        for (row_number, row) in reader.into_iter().enumerate() {
            let row = row.map_err(parquet_error)?;
            for (column, (_, field)) in row.into_columns().into_iter().enumerate() {
                let Some(target) = cells.get_mut(column) else {
                    return Err(LearnError::data(format!(
                        "{}: row {} has more fields than the schema",
                        path.display(),
                        row_number + 1
                    )));
                };
                let number = match &field {
                    Field::Bool(v) => Some(f64::from(u8::from(*v))),
                    Field::Byte(v) => Some(f64::from(*v)),
                    Field::Short(v) => Some(f64::from(*v)),
                    Field::Int(v) => Some(f64::from(*v)),
                    Field::Long(v) => Some(*v as f64),
                    Field::UByte(v) => Some(f64::from(*v)),
                    Field::UShort(v) => Some(f64::from(*v)),
                    Field::UInt(v) => Some(f64::from(*v)),
                    Field::ULong(v) => Some(*v as f64),
                    Field::Float(v) => Some(f64::from(*v)),
                    Field::Double(v) => Some(*v),
                    _ => None,
                };
                let text = match field {
                    Field::Null => None,
                    Field::Str(text) => Some(text),
                    other => Some(number.map_or_else(|| other.to_string(), format_number)),
                };
                target.push((number, text));
            }
        }
        if cells.first().is_none_or(Vec::is_empty) {
            return Err(LearnError::data(format!(
                "{}: no data rows",
                path.display()
            )));
        }
        let columns = names
            .iter()
            .zip(cells)
            .map(|(name, column)| {
                let numeric = !force_categorical.contains(name)
                    && column
                        .iter()
                        .all(|(number, text)| number.is_some() || text.is_none());
                if numeric {
                    Column::Numeric(column.iter().map(|(n, _)| n.unwrap_or(f64::NAN)).collect())
                } else {
                    Column::Categorical(column.into_iter().map(|(_, text)| text).collect())
                }
            })
            .collect();
        Table::new(names, columns)
    }

    /// Reads a CSV file with a header row, inferring each column's type.
    /// Columns listed in `force_categorical` are read as categorical even if
    /// every value is a number (e.g. zip codes, or a model's categorical input).
    pub fn read_csv(path: &Path, force_categorical: &[String]) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| LearnError::io(path, source))?;
        Self::from_csv_reader(file, force_categorical).map_err(|error| match error {
            LearnError::Csv { cause, .. } => LearnError::Csv {
                path: path.to_path_buf(),
                cause,
            },
            LearnError::InvalidData(message) => {
                LearnError::InvalidData(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Like [`Table::read_csv`], from any reader.
    pub fn from_csv_reader(reader: impl Read, force_categorical: &[String]) -> Result<Self> {
        let csv_error = |cause| LearnError::Csv {
            path: "<input>".into(),
            cause,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let names: Vec<String> = reader
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(str::to_string)
            .collect();
        if names.is_empty() || names.iter().all(String::is_empty) {
            return Err(LearnError::data("no header row"));
        }
        if let Some(position) = names.iter().position(String::is_empty) {
            return Err(LearnError::data(format!(
                "column {} has an empty name in the header",
                position + 1
            )));
        }
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_error)? {
            for (column, value) in cells.iter_mut().zip(record.iter()) {
                column.push(value.to_string());
            }
        }
        if cells[0].is_empty() {
            return Err(LearnError::data("no data rows"));
        }
        let columns = names
            .iter()
            .zip(cells)
            .map(|(name, texts)| infer_column(texts, force_categorical.contains(name)))
            .collect();
        Table::new(names, columns)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows
    }

    /// Column names in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
    }

    /// The column called `name`, or an error naming it and the columns there are.
    pub fn require(&self, name: &str) -> Result<&Column> {
        self.column(name).ok_or_else(|| {
            LearnError::data(format!(
                "no column {name:?} (columns: {})",
                self.names.join(", ")
            ))
        })
    }

    /// The rows at `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Table {
        Table {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.select(rows)).collect(),
            rows: rows.len(),
        }
    }

    /// Writes the table as CSV (missing values as empty cells).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let csv_error = |cause| LearnError::Csv {
            path: path.to_path_buf(),
            cause,
        };
        let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
        writer.write_record(&self.names).map_err(csv_error)?;
        let mut record = Vec::with_capacity(self.names.len());
        for row in 0..self.rows {
            record.clear();
            for column in &self.columns {
                record.push(match column {
                    Column::Numeric(values) if values[row].is_nan() => String::new(),
                    Column::Numeric(values) => format!("{}", values[row]),
                    Column::Categorical(values) => values[row].clone().unwrap_or_default(),
                });
            }
            writer.write_record(&record).map_err(csv_error)?;
        }
        writer
            .flush()
            .map_err(|source| LearnError::io(path, source))
    }
}

fn infer_column(texts: Vec<String>, force_categorical: bool) -> Column {
    if !force_categorical {
        let mut numbers = Vec::with_capacity(texts.len());
        let mut all_numeric = true;
        let mut any_present = false;
        for text in &texts {
            if is_missing(text) {
                numbers.push(f64::NAN);
            } else if let Ok(value) = text.trim().parse::<f64>() {
                any_present = true;
                // "inf" parses as a number; keep it, preprocessing rejects it with a clear error.
                numbers.push(value);
            } else {
                all_numeric = false;
                break;
            }
        }
        if all_numeric && any_present {
            return Column::Numeric(numbers);
        }
        if all_numeric {
            // Entirely missing: numeric, all NaN.
            return Column::Numeric(numbers);
        }
    }
    Column::Categorical(
        texts
            .into_iter()
            .map(|text| (!is_missing(&text)).then(|| text.trim().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Table> {
        Table::from_csv_reader(text.as_bytes(), &[])
    }

    #[test]
    fn infers_numeric_and_categorical_columns_with_missing_values() {
        let table = read("a,b,c\n1,x,\n2.5,,3\nNA,y,4\n").unwrap();
        assert_eq!(table.n_rows(), 3);
        match table.column("a").unwrap() {
            Column::Numeric(values) => {
                assert_eq!(&values[..2], &[1.0, 2.5]);
                assert!(values[2].is_nan());
            }
            other => panic!("a should be numeric: {other:?}"),
        }
        assert_eq!(
            table.column("b").unwrap(),
            &Column::Categorical(vec![Some("x".into()), None, Some("y".into())])
        );
        assert!(matches!(table.column("c").unwrap(), Column::Numeric(_)));
    }

    #[test]
    fn forced_categorical_keeps_number_text() {
        let table = Table::from_csv_reader("zip\n01234\n5\n".as_bytes(), &["zip".into()]).unwrap();
        assert_eq!(
            table.column("zip").unwrap().text(0).as_deref(),
            Some("01234")
        );
    }

    #[test]
    fn reads_parquet_with_nulls_and_strings() {
        use parquet::column::writer::ColumnWriter;
        use parquet::data_type::ByteArray;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = parquet::schema::parser::parse_message_type(
            "message t { required int64 id; optional double score; optional binary kind (UTF8); }",
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer =
            SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties)).unwrap();
        let mut row_group = writer.next_row_group().unwrap();
        while let Some(mut column) = row_group.next_column().unwrap() {
            match column.untyped() {
                ColumnWriter::Int64ColumnWriter(typed) => {
                    typed.write_batch(&[1, 2, 3], None, None).unwrap();
                }
                ColumnWriter::DoubleColumnWriter(typed) => {
                    typed
                        .write_batch(&[0.5, 2.0], Some(&[1, 0, 1]), None)
                        .unwrap();
                }
                ColumnWriter::ByteArrayColumnWriter(typed) => {
                    let values = [ByteArray::from("a"), ByteArray::from("b")];
                    typed.write_batch(&values, Some(&[1, 1, 0]), None).unwrap();
                }
                _ => unreachable!("schema has three columns"),
            }
            column.close().unwrap();
        }
        row_group.close().unwrap();
        writer.close().unwrap();

        let table = Table::read(&path, &[]).unwrap();
        assert_eq!(table.names(), ["id", "score", "kind"]);
        assert_eq!(
            table.column("id"),
            Some(&Column::Numeric(vec![1.0, 2.0, 3.0]))
        );
        match table.column("score") {
            Some(Column::Numeric(v)) => assert!(v[0] == 0.5 && v[1].is_nan() && v[2] == 2.0),
            other => panic!("score should be numeric: {other:?}"),
        }
        assert_eq!(
            table.column("kind"),
            Some(&Column::Categorical(vec![
                Some("a".into()),
                Some("b".into()),
                None
            ]))
        );
        let forced = Table::read(&path, &["id".to_string()]).unwrap();
        assert_eq!(forced.column("id").unwrap().text(2).as_deref(), Some("3"));
        std::fs::write(dir.path().join("bad.parquet"), b"nope").unwrap();
        let error = Table::read(&dir.path().join("bad.parquet"), &[]).unwrap_err();
        assert!(error.to_string().contains("bad.parquet"), "{error}");
    }

    #[test]
    fn ragged_rows_and_empty_files_are_errors() {
        let ragged = read("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(
            ragged.contains("line 3") || ragged.contains("record 2"),
            "{ragged}"
        );
        assert!(
            read("a,b\n")
                .unwrap_err()
                .to_string()
                .contains("no data rows")
        );
        assert!(
            read("a,a\n1,2\n")
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        let missing = read("a\n1\n").unwrap();
        assert!(
            missing
                .require("z")
                .unwrap_err()
                .to_string()
                .contains("\"z\"")
        );
    }
}
