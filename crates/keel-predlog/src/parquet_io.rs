//! Parquet in and out, through the `parquet` crate's column writers and
//! readers (no arrow): one row group per file, Snappy, the format in the
//! key-value metadata. Files are built in memory and handed to the store
//! whole (local: temp file, fsync, rename; S3: one PUT), so a reader never
//! sees a partial file.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, ConvertedType, Repetition, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use parquet::schema::types::Type;

use crate::schema::{Column, Kind};

/// One column's values, ready to write.
pub(crate) enum Values {
    Text {
        values: Vec<ByteArray>,
        /// Definition levels (1 = present) of a nullable column.
        defs: Option<Vec<i16>>,
    },
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Double {
        values: Vec<f64>,
        defs: Option<Vec<i16>>,
    },
}

/// Text cells as Parquet byte arrays; a value equal to the one before shares
/// its bytes (model name, version, role and replica repeat on every row).
#[derive(Default)]
struct TextCells {
    values: Vec<ByteArray>,
}

impl TextCells {
    fn push(&mut self, value: &str) {
        let cell = match self.values.last() {
            Some(last) if last.data() == value.as_bytes() => last.clone(),
            _ => ByteArray::from(Bytes::copy_from_slice(value.as_bytes())),
        };
        self.values.push(cell);
    }
}

impl Values {
    pub fn texts<'a>(values: impl Iterator<Item = &'a str>) -> Self {
        let mut cells = TextCells::default();
        values.for_each(|v| cells.push(v));
        Values::Text {
            values: cells.values,
            defs: None,
        }
    }

    pub fn optional_texts<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut cells = TextCells::default();
        let mut defs = Vec::new();
        for value in values {
            defs.push(i16::from(value.is_some()));
            if let Some(v) = value {
                cells.push(v);
            }
        }
        Values::Text {
            values: cells.values,
            defs: Some(defs),
        }
    }

    /// Nullable doubles; NaN and infinities are written as null.
    pub fn optional_doubles(values: impl Iterator<Item = Option<f64>>) -> Self {
        let mut present = Vec::new();
        let mut defs = Vec::new();
        for value in values {
            let value = value.filter(|v| v.is_finite());
            defs.push(i16::from(value.is_some()));
            present.extend(value);
        }
        Values::Double {
            values: present,
            defs: Some(defs),
        }
    }
}

fn field(column: &Column) -> parquet::errors::Result<Type> {
    let physical = match column.kind {
        Kind::Text => PhysicalType::BYTE_ARRAY,
        Kind::Int32 => PhysicalType::INT32,
        Kind::Int64 => PhysicalType::INT64,
        Kind::Double => PhysicalType::DOUBLE,
    };
    let mut builder =
        Type::primitive_type_builder(&column.name, physical).with_repetition(if column.nullable {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        });
    if column.kind == Kind::Text {
        builder = builder.with_converted_type(ConvertedType::UTF8);
    }
    builder.build()
}

/// A Parquet file of `columns` whose metadata says `format`.
pub(crate) fn write(format: &str, columns: Vec<(Column, Values)>) -> Result<Vec<u8>, String> {
    let error = |e: parquet::errors::ParquetError| e.to_string();
    let fields = columns
        .iter()
        .map(|(column, _)| field(column).map(Arc::new))
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(error)?;
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(error)?;
    // Request ids are unique: a dictionary and min/max statistics of them
    // cost every row and help no reader.
    let request_id = ColumnPath::from(crate::schema::REQUEST_ID.name);
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(request_id.clone(), false)
        .set_column_statistics_enabled(request_id, EnabledStatistics::None)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            crate::schema::FORMAT_KEY.to_string(),
            format.to_string(),
        )]))
        .build();
    let mut writer = SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties))
        .map_err(error)?;
    let mut row_group = writer.next_row_group().map_err(error)?;
    let mut data = columns.into_iter();
    while let Some(mut column) = row_group.next_column().map_err(error)? {
        let Some((spec, values)) = data.next() else {
            return Err("more Parquet columns than data".into());
        };
        match (column.untyped(), &values) {
            (ColumnWriter::ByteArrayColumnWriter(w), Values::Text { values, defs }) => {
                w.write_batch(values, defs.as_deref(), None)
                    .map_err(error)?;
            }
            (ColumnWriter::Int32ColumnWriter(w), Values::Int32(values)) => {
                w.write_batch(values, None, None).map_err(error)?;
            }
            (ColumnWriter::Int64ColumnWriter(w), Values::Int64(values)) => {
                w.write_batch(values, None, None).map_err(error)?;
            }
            (ColumnWriter::DoubleColumnWriter(w), Values::Double { values, defs }) => {
                w.write_batch(values, defs.as_deref(), None)
                    .map_err(error)?;
            }
            _ => return Err(format!("column {}: type mismatch", spec.name)),
        }
        column.close().map_err(error)?;
    }
    row_group.close().map_err(error)?;
    writer.into_inner().map_err(error)
}

/// A column as read: one cell per row, nulls in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cells {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
}

/// A whole file as read: its format metadata and its columns by name.
pub(crate) struct Read {
    pub format: Option<String>,
    pub rows: usize,
    pub columns: Vec<(String, Cells)>,
}

/// Reads every column of a (small) Parquet file.
pub(crate) fn read(bytes: Bytes) -> Result<Read, String> {
    let error = |e: parquet::errors::ParquetError| e.to_string();
    let reader = SerializedFileReader::new(bytes).map_err(error)?;
    let metadata = reader.metadata().file_metadata();
    let format = metadata
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == crate::schema::FORMAT_KEY))
        .and_then(|k| k.value.clone());
    let rows = usize::try_from(metadata.num_rows()).map_err(|e| e.to_string())?;
    let schema = metadata.schema_descr();
    let mut columns: Vec<(String, Cells)> = Vec::with_capacity(schema.num_columns());
    for i in 0..schema.num_columns() {
        let descriptor = schema.column(i);
        if descriptor.max_rep_level() > 0 {
            continue;
        }
        let present = descriptor.max_def_level();
        let mut cells: Option<Cells> = None;
        for group in 0..reader.num_row_groups() {
            let row_group = reader.get_row_group(group).map_err(error)?;
            let column = row_group.get_column_reader(i).map_err(error)?;
            read_column(column, present, rows, &mut cells).map_err(error)?;
        }
        if let Some(cells) = cells {
            columns.push((descriptor.path().string(), cells));
        }
    }
    Ok(Read {
        format,
        rows,
        columns,
    })
}

/// Appends one row group's cells of a column to `out` (created on first use;
/// column types the logs never write are skipped).
fn read_column(
    column: ColumnReader,
    present: i16,
    rows: usize,
    out: &mut Option<Cells>,
) -> parquet::errors::Result<()> {
    let mut levels: Vec<i16> = Vec::new();
    macro_rules! cells {
        ($typed:expr, $buffer:ty, $variant:ident, $convert:expr) => {{
            let mut typed = $typed;
            let mut buffer: Vec<$buffer> = Vec::new();
            let cells = out.get_or_insert_with(|| Cells::$variant(Vec::with_capacity(rows)));
            let Cells::$variant(cells) = cells else {
                return Ok(());
            };
            loop {
                buffer.clear();
                levels.clear();
                let (records, _, _) =
                    typed.read_records(65_536, Some(&mut levels), None, &mut buffer)?;
                if records == 0 {
                    break;
                }
                let mut values = buffer.drain(..).map($convert);
                if present == 0 {
                    cells.extend(values.by_ref().take(records).map(Some));
                } else {
                    for &level in &levels[..records] {
                        cells.push(if level == present {
                            values.next()
                        } else {
                            None
                        });
                    }
                }
            }
        }};
    }
    match column {
        ColumnReader::ByteArrayColumnReader(r) => cells!(r, ByteArray, Text, |v: ByteArray| {
            String::from_utf8_lossy(v.data()).into_owned()
        }),
        ColumnReader::Int32ColumnReader(r) => cells!(r, i32, Int, i64::from),
        ColumnReader::Int64ColumnReader(r) => cells!(r, i64, Int, |v: i64| v),
        ColumnReader::DoubleColumnReader(r) => cells!(r, f64, Double, |v: f64| v),
        ColumnReader::FloatColumnReader(r) => cells!(r, f32, Double, f64::from),
        _ => {}
    }
    Ok(())
}
