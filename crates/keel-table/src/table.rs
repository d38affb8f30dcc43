//! Tabular data in memory: named columns inferred as numeric or categorical
//! from a CSV or Parquet file, missing values kept as `NaN` (numeric) or
//! `None` (categorical). This is the raw form training, evaluation and
//! prediction take; encoding happens later, in keel-learn's preprocessing.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::cell::{Cell, Text, format_number, read_text};
use crate::error::{Result, TableError};
use crate::rows::{CsvRows, ParquetRows, Rows, is_parquet};

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Every present value is a number; missing ones are `NaN`.
    Numeric(Vec<f64>),
    /// At least one present value is not a number (or the column was asked
    /// for as categorical); missing ones are `None`.
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

    /// The value at `row` as text (`None` when missing), numbers as
    /// [`format_number`] writes them (`1.0` reads as `"1"`).
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
            return Err(TableError::data(format!(
                "{} column names for {} columns",
                names.len(),
                columns.len()
            )));
        }
        let mut seen = HashSet::new();
        for name in &names {
            if !seen.insert(name.as_str()) {
                return Err(TableError::data(format!("duplicate column name {name:?}")));
            }
        }
        let rows = columns.first().map_or(0, Column::len);
        if let Some((name, column)) = names
            .iter()
            .zip(&columns)
            .find(|(_, column)| column.len() != rows)
        {
            return Err(TableError::data(format!(
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

    /// Reads `path` as Parquet when it ends in `.parquet` or `.pq`, else as
    /// CSV. Columns in `force_categorical` are read as text even when every
    /// value is a number (zip codes, or a model's categorical input).
    pub fn read(path: &Path, force_categorical: &[String]) -> Result<Self> {
        if is_parquet(path) {
            Self::read_parquet(path, force_categorical)
        } else {
            Self::read_csv(path, force_categorical)
        }
    }

    /// Reads a Parquet file: integer, float and boolean columns are numeric,
    /// strings (and dates, times, decimals) categorical; nulls and NaN are
    /// missing.
    pub fn read_parquet(path: &Path, force_categorical: &[String]) -> Result<Self> {
        let mut rows = ParquetRows::open(path)?;
        let names = rows.columns().to_vec();
        let mut cells: Vec<Vec<Option<Cell>>> = vec![Vec::new(); names.len()];
        let mut row = Vec::with_capacity(names.len());
        let mut n = 0usize;
        while rows.next_row(&mut row)? {
            n += 1;
            if row.len() != names.len() {
                return Err(TableError::file(
                    path,
                    format!(
                        "row {n} has {} fields for {} columns",
                        row.len(),
                        names.len()
                    ),
                ));
            }
            for (column, cell) in cells.iter_mut().zip(row.drain(..)) {
                column.push(cell);
            }
        }
        if n == 0 {
            return Err(TableError::file(path, "no data rows"));
        }
        let columns = names
            .iter()
            .zip(cells)
            .map(|(name, column)| {
                let number = |cell: &Cell| match cell {
                    Cell::Bool(flag) => Some(f64::from(u8::from(*flag))),
                    other => other.number(),
                };
                let numeric = !force_categorical.contains(name)
                    && column.iter().flatten().all(|cell| number(cell).is_some());
                if numeric {
                    Column::Numeric(
                        column
                            .iter()
                            .map(|cell| cell.as_ref().and_then(number).unwrap_or(f64::NAN))
                            .collect(),
                    )
                } else {
                    Column::Categorical(column.iter().map(|c| c.as_ref().map(Cell::text)).collect())
                }
            })
            .collect();
        Table::new(names, columns)
    }

    /// Reads a CSV file with a header row, inferring each column's type.
    pub fn read_csv(path: &Path, force_categorical: &[String]) -> Result<Self> {
        let rows = CsvRows::open(path, b',')?;
        Self::from_csv_rows(rows, path, force_categorical)
    }

    /// Like [`Table::read_csv`], from any reader (errors name `<input>`).
    pub fn from_csv_reader(reader: impl Read, force_categorical: &[String]) -> Result<Self> {
        let origin = Path::new("<input>");
        Self::from_csv_rows(
            CsvRows::new(reader, origin, b',')?,
            origin,
            force_categorical,
        )
    }

    fn from_csv_rows<R: Read>(
        mut rows: CsvRows<R>,
        origin: &Path,
        force_categorical: &[String],
    ) -> Result<Self> {
        let names = rows.columns().to_vec();
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        let mut record = csv::StringRecord::new();
        while rows.next_record(&mut record)? {
            for (column, value) in cells.iter_mut().zip(record.iter()) {
                column.push(value.to_string());
            }
        }
        if cells[0].is_empty() {
            return Err(TableError::file(origin, "no data rows"));
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
            TableError::data(format!(
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

    /// Writes the table as CSV (missing values as empty cells), atomically:
    /// readers see the old file or the whole new one, never a part.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        keel_fs::write_atomic_with(path, |file| {
            let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
            writer.write_record(&self.names)?;
            let mut record = Vec::with_capacity(self.names.len());
            for row in 0..self.rows {
                record.clear();
                for column in &self.columns {
                    record.push(column.text(row).unwrap_or_default());
                }
                writer.write_record(&record)?;
            }
            writer.flush()
        })
        .map_err(|cause| TableError::io(path, cause))
    }
}

/// Numeric when every cell is a number or missing (an all-missing column is
/// numeric, all NaN); else categorical with missing cells as `None`.
fn infer_column(texts: Vec<String>, force_categorical: bool) -> Column {
    if !force_categorical {
        let mut numbers = Vec::with_capacity(texts.len());
        let all_numeric = texts.iter().all(|text| match read_text(text) {
            Text::Missing => {
                numbers.push(f64::NAN);
                true
            }
            // "inf" is a number; keep it, preprocessing rejects it with a clear error.
            Text::Number(value) => {
                numbers.push(value);
                true
            }
            Text::Other(_) => false,
        });
        if all_numeric {
            return Column::Numeric(numbers);
        }
    }
    Column::Categorical(
        texts
            .into_iter()
            .map(|text| match read_text(&text) {
                Text::Missing => None,
                _ => Some(text.trim().to_string()),
            })
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

    #[test]
    fn every_missing_spelling_is_missing_in_both_column_kinds() {
        let table = read("x,c\n1,a\n?,?\nn/a,N/A\nNULL,none\n ,\nNaN,na\n").unwrap();
        match table.column("x").unwrap() {
            Column::Numeric(values) => {
                assert_eq!(values[0], 1.0);
                assert!(values[1..].iter().all(|v| v.is_nan()), "{values:?}");
            }
            other => panic!("x should be numeric: {other:?}"),
        }
        assert_eq!(
            table.column("c").unwrap(),
            &Column::Categorical(vec![Some("a".into()), None, None, None, None, None])
        );
    }

    #[test]
    fn write_csv_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let table = read("x,c\n1.5,a\n,b\n3,\n").unwrap();
        table.write_csv(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "x,c\n1.5,a\n,b\n3,\n"
        );
        let again = Table::read(&path, &[]).unwrap();
        assert_eq!(again.column("c"), table.column("c"));
        assert_eq!(again.column("x").unwrap().text(0).as_deref(), Some("1.5"));
        assert_eq!(again.column("x").unwrap().text(1), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
