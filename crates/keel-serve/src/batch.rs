//! Batch scoring (`keel predict`): files of rows through the same input
//! contract ([`crate::contract`]) and the same engine as `POST /invocations`,
//! written to a Parquet file.
//!
//! - Input: the units of [`keel_table::shard`] (CSV files, Parquet row
//!   groups), read in batches of rows. A CSV batch is checked as a CSV body
//!   ([`contract::csv_reader`], [`contract::parse_csv_records`]), a Parquet
//!   batch as a `dataframe_split` body of its typed cells
//!   ([`contract::parse_json_rows`]): same column matching, types,
//!   missing-value rule and policies as the server.
//! - Multi-core: a wave of batches (two per thread) is read, then checked
//!   and predicted in parallel, then written in order; memory is bounded by
//!   one wave whatever the input's size.
//! - Output: one row group per batch, rows in input order: the model's
//!   input columns if asked (as the contract read them), `predictions` (the
//!   label, typed as `/invocations` answers it, or the value) and for a
//!   classifier `probabilities.CLASS` per class. A non-finite output is
//!   null (what the JSON answer holds) unless the `nan_output` policy
//!   rejects it. Written to a temporary file, synced, then renamed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_engine::{Batch, Column, LabelType, LoadedModel, Predictions, ServingSignature};
use keel_table::shard::Unit;
use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use rayon::prelude::*;
use serde_json::Value;

use crate::contract::{self, Parsed, Policies, Policy};
use crate::{ServeConfig, ServeError};

/// Default rows per batch.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// Most rows per batch.
pub const MAX_BATCH_ROWS: usize = 1_000_000;

/// How `keel predict` scores.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The contract's policies (those of `keel serve`).
    pub policies: Policies,
    /// Rows per batch (and per output row group).
    pub batch_rows: usize,
    /// Write the model's input columns before the predictions.
    pub include_inputs: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            policies: Policies::default(),
            batch_rows: DEFAULT_BATCH_ROWS,
            include_inputs: false,
        }
    }
}

/// What a scoring run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    /// Rows scored.
    pub rows: u64,
    /// Batches (output row groups).
    pub batches: u64,
    /// Rows flagged by a check under the flag policy.
    pub flagged_rows: u64,
}

/// Loads the model `config.model_uri` names as `keel serve` does (a path,
/// `runs:/`, `models:/NAME@ALIAS` through `config.tracking_uri`), with the
/// name and version it resolved to.
pub async fn load_model(config: &ServeConfig) -> Result<(LoadedModel, String, String), ServeError> {
    let registry = match &config.tracking_uri {
        Some(uri) => Some(crate::source::Registry::new(
            uri,
            config.tracking_token.clone(),
        )?),
        None => None,
    };
    let (folder, name, version) =
        crate::deploy::resolve(config, registry.as_ref(), &config.model_uri).await?;
    let preference = config.engine;
    let model = tokio::task::spawn_blocking(move || LoadedModel::load(&folder, preference))
        .await
        .map_err(|e| ServeError::Config(format!("model loading task failed: {e}")))??;
    Ok((model, name, version))
}

/// Rows read from one unit, not yet checked.
enum Rows {
    Csv {
        header: Arc<csv::StringRecord>,
        records: Vec<csv::StringRecord>,
    },
    Json {
        names: Arc<Vec<String>>,
        cells: Vec<Value>,
    },
}

/// One batch of input rows and where they came from.
struct Chunk {
    origin: PathBuf,
    /// Row number (0-based, within the file) of the first row.
    first_row: u64,
    rows: Rows,
}

/// A checked and predicted batch.
struct Scored {
    batch: Batch,
    predictions: Predictions,
    flagged: u64,
}

/// Reads the units batch by batch.
struct Reader<'a> {
    units: &'a [Unit],
    next_unit: usize,
    batch_rows: usize,
    current: Option<Source>,
}

enum Source {
    Csv {
        path: PathBuf,
        reader: csv::Reader<File>,
        header: Arc<csv::StringRecord>,
        row: u64,
    },
    Parquet {
        path: PathBuf,
        names: Arc<Vec<String>>,
        rows: parquet::record::reader::RowIter<'static>,
        row: u64,
    },
}

fn batch_error(path: &Path, message: impl std::fmt::Display) -> ServeError {
    ServeError::Batch(format!("{}: {message}", path.display()))
}

impl Reader<'_> {
    fn open(unit: &Unit) -> Result<Source, ServeError> {
        let path = unit.path.clone();
        match unit.row_group {
            None => {
                let file = File::open(&path).map_err(|e| ServeError::io(&path, e))?;
                let mut reader = contract::csv_reader(file);
                let header = reader
                    .headers()
                    .map_err(|e| batch_error(&path, format!("Invalid CSV header: {e}")))?
                    .clone();
                Ok(Source::Csv {
                    path,
                    reader,
                    header: Arc::new(header),
                    row: 0,
                })
            }
            Some(group) => {
                let file = keel_table::rows::open_parquet(&path)
                    .map_err(|e| ServeError::Batch(e.to_string()))?;
                let names = keel_table::rows::parquet_columns(&file);
                let first_row: u64 = file
                    .metadata()
                    .row_groups()
                    .iter()
                    .take(group)
                    .map(|g| g.num_rows().max(0) as u64)
                    .sum();
                // A reader of this row group alone, whose row iterator owns it.
                let handle = File::open(&path).map_err(|e| ServeError::io(&path, e))?;
                let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
                    .with_predicate(Box::new(move |_, index| index == group))
                    .build();
                let rows =
                    parquet::file::serialized_reader::SerializedFileReader::new_with_options(
                        handle, options,
                    )
                    .map_err(|e| batch_error(&path, e))?
                    .into_iter();
                Ok(Source::Parquet {
                    path,
                    names: Arc::new(names),
                    rows,
                    row: first_row,
                })
            }
        }
    }

    /// The next batch, or `None` at the end of the last unit.
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ServeError> {
        loop {
            if self.current.is_none() {
                let Some(unit) = self.units.get(self.next_unit) else {
                    return Ok(None);
                };
                self.next_unit += 1;
                self.current = Some(Self::open(unit)?);
            }
            let chunk = match self.current.as_mut() {
                Some(Source::Csv {
                    path,
                    reader,
                    header,
                    row,
                }) => {
                    let mut records = Vec::new();
                    let mut record = csv::StringRecord::new();
                    while records.len() < self.batch_rows {
                        let more = reader.read_record(&mut record).map_err(|e| {
                            batch_error(
                                path,
                                format!("CSV row {}: {e}", *row + records.len() as u64),
                            )
                        })?;
                        if !more {
                            break;
                        }
                        records.push(record.clone());
                    }
                    let first_row = *row;
                    *row += records.len() as u64;
                    (!records.is_empty()).then(|| Chunk {
                        origin: path.clone(),
                        first_row,
                        rows: Rows::Csv {
                            header: header.clone(),
                            records,
                        },
                    })
                }
                Some(Source::Parquet {
                    path,
                    names,
                    rows,
                    row,
                }) => {
                    let mut cells = Vec::new();
                    let mut read = 0usize;
                    while read < self.batch_rows {
                        let Some(next) = rows.next() else {
                            break;
                        };
                        let next = next.map_err(|e| batch_error(path, e))?;
                        cells.extend(
                            next.into_columns()
                                .into_iter()
                                .map(|(_, field)| json_cell(field)),
                        );
                        read += 1;
                    }
                    let first_row = *row;
                    *row += read as u64;
                    (read > 0).then(|| Chunk {
                        origin: path.clone(),
                        first_row,
                        rows: Rows::Json {
                            names: names.clone(),
                            cells,
                        },
                    })
                }
                None => None,
            };
            match chunk {
                Some(chunk) => return Ok(Some(chunk)),
                None => self.current = None,
            }
        }
    }
}

/// A Parquet cell as the JSON cell a client would send (keel-table's
/// reading of the field; a non-finite number as its text, which the
/// contract judges as it judges "inf" in a CSV).
fn json_cell(field: parquet::record::Field) -> Value {
    match keel_table::Cell::from_field(field) {
        None => Value::Null,
        Some(keel_table::Cell::Bool(flag)) => Value::Bool(flag),
        Some(keel_table::Cell::Int(number)) => Value::from(number),
        Some(keel_table::Cell::Float(number)) => serde_json::Number::from_f64(number)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(keel_table::format_number(number))),
        Some(keel_table::Cell::Text(text)) => Value::String(text),
    }
}

/// Checks and predicts one batch.
fn score_chunk(
    model: &LoadedModel,
    policies: &Policies,
    chunk: Chunk,
) -> Result<Scored, ServeError> {
    let signature = model.signature();
    let parsed = match &chunk.rows {
        Rows::Csv { header, records } => {
            contract::parse_csv_records(header, records, signature, policies)
        }
        Rows::Json { names, cells } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            contract::parse_json_rows(&names, cells, signature, policies)
        }
    };
    let rows_read = match &chunk.rows {
        Rows::Csv { records, .. } => records.len() as u64,
        Rows::Json { names, cells } => (cells.len() / names.len().max(1)) as u64,
    };
    let where_ = || {
        format!(
            "rows {}..{} (0-based, the batch's row 0 is row {})",
            chunk.first_row,
            chunk.first_row + rows_read,
            chunk.first_row
        )
    };
    let Parsed { batch, flags } =
        parsed.map_err(|e| batch_error(&chunk.origin, format!("{}: {}", where_(), e.message)))?;
    let predictions = model
        .predict(&batch)
        .map_err(|e| batch_error(&chunk.origin, format!("{}: {e}", where_())))?;
    let bad = predictions.non_finite_rows();
    if !bad.is_empty() && policies.nan_output == Policy::Reject {
        let shown: Vec<String> = bad
            .iter()
            .take(20)
            .map(|r| (chunk.first_row + *r as u64).to_string())
            .collect();
        return Err(batch_error(
            &chunk.origin,
            format!(
                "the model produced a NaN or infinite prediction for row(s) {} (nan_output policy: reject)",
                shown.join(", ")
            ),
        ));
    }
    let flagged = flags.rows.iter().filter(|f| f.is_some()).count() as u64;
    Ok(Scored {
        batch,
        predictions,
        flagged,
    })
}

/// Scores `units` with `model` into the Parquet file `output` (temporary
/// file, sync, rename: a failed run leaves no partial output).
pub fn score(
    model: &LoadedModel,
    units: &[Unit],
    output: &Path,
    options: &BatchOptions,
) -> Result<BatchSummary, ServeError> {
    let batch_rows = options.batch_rows.clamp(1, MAX_BATCH_ROWS);
    let folder = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = output.file_name().map_or_else(
        || "predictions".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = keel_fs::temp_path(&folder, &stem);
    let result = write_scores(model, units, &temp, options, batch_rows);
    match result {
        Ok(summary) => {
            std::fs::rename(&temp, output).map_err(|e| ServeError::io(output, e))?;
            keel_fs::sync_folder(&folder).map_err(|e| ServeError::io(&folder, e))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error)
        }
    }
}

fn write_scores(
    model: &LoadedModel,
    units: &[Unit],
    temp: &Path,
    options: &BatchOptions,
    batch_rows: usize,
) -> Result<BatchSummary, ServeError> {
    let signature = model.signature();
    let schema = output_schema(signature, options.include_inputs)?;
    let file = File::create(temp).map_err(|e| ServeError::io(temp, e))?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(batch_rows.max(1)))
        .build();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))
        .map_err(|e| batch_error(temp, e))?;
    let mut reader = Reader {
        units,
        next_unit: 0,
        batch_rows,
        current: None,
    };
    let wave = rayon::current_num_threads().max(1) * 2;
    let mut summary = BatchSummary::default();
    loop {
        let mut chunks = Vec::with_capacity(wave);
        while chunks.len() < wave {
            match reader.next_chunk()? {
                Some(chunk) => chunks.push(chunk),
                None => break,
            }
        }
        if chunks.is_empty() {
            break;
        }
        let scored: Vec<Scored> = chunks
            .into_par_iter()
            .map(|chunk| score_chunk(model, &options.policies, chunk))
            .collect::<Result<_, _>>()?;
        for part in &scored {
            write_group(&mut writer, signature, part, options.include_inputs)
                .map_err(|e| batch_error(temp, e))?;
            summary.rows += part.batch.rows as u64;
            summary.batches += 1;
            summary.flagged_rows += part.flagged;
        }
    }
    let file = writer.into_inner().map_err(|e| batch_error(temp, e))?;
    file.sync_all().map_err(|e| ServeError::io(temp, e))?;
    Ok(summary)
}

/// Output column names: inputs (if asked), `predictions`, then
/// `probabilities.CLASS` per class of a classifier.
pub fn output_columns(signature: &ServingSignature, include_inputs: bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if include_inputs {
        names.extend(signature.inputs.iter().map(|i| i.name.clone()));
    }
    names.push("predictions".into());
    if let Some(classes) = signature.classes() {
        names.extend(classes.iter().map(|c| format!("probabilities.{c}")));
    }
    names
}

fn output_schema(signature: &ServingSignature, include_inputs: bool) -> Result<Type, ServeError> {
    let names = output_columns(signature, include_inputs);
    let mut fields = Vec::with_capacity(names.len());
    let inputs = if include_inputs {
        signature.inputs.len()
    } else {
        0
    };
    let text = |name: &str| {
        Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String))
            .with_repetition(Repetition::OPTIONAL)
            .build()
    };
    let number = |name: &str, physical| {
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .build()
    };
    for (k, name) in names.iter().enumerate() {
        let field = if k < inputs {
            match signature.inputs[k].kind {
                keel_engine::InputKind::Numeric { .. } => number(name, PhysicalType::DOUBLE),
                keel_engine::InputKind::Categorical { .. } => text(name),
            }
        } else if k == inputs {
            match (signature.classes(), signature.label_type) {
                (Some(_), LabelType::Integer) => number(name, PhysicalType::INT64),
                (Some(_), _) => text(name),
                (None, _) => number(name, PhysicalType::DOUBLE),
            }
        } else {
            number(name, PhysicalType::DOUBLE)
        };
        fields.push(Arc::new(
            field.map_err(|e| ServeError::Batch(e.to_string()))?,
        ));
    }
    Type::group_type_builder("predictions")
        .with_fields(fields)
        .build()
        .map_err(|e| ServeError::Batch(e.to_string()))
}

/// One output column's values for a batch.
enum Values<'a> {
    Numbers(Vec<Option<f64>>),
    Integers(Vec<Option<i64>>),
    Texts(Vec<Option<&'a str>>),
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn write_group(
    writer: &mut SerializedFileWriter<File>,
    signature: &ServingSignature,
    part: &Scored,
    include_inputs: bool,
) -> parquet::errors::Result<()> {
    let mut columns: Vec<Values<'_>> = Vec::new();
    if include_inputs {
        for column in &part.batch.columns {
            columns.push(match column {
                Column::Numeric(values) => {
                    Values::Numbers(values.iter().map(|&x| (!x.is_nan()).then_some(x)).collect())
                }
                Column::Categorical(values) => {
                    Values::Texts(values.iter().map(|v| v.as_deref()).collect())
                }
            });
        }
    }
    match &part.predictions {
        Predictions::Classes {
            labels,
            probabilities,
            k,
        } => {
            columns.push(match signature.label_type {
                LabelType::Integer => {
                    Values::Integers(labels.iter().map(|l| l.parse::<i64>().ok()).collect())
                }
                _ => Values::Texts(labels.iter().map(|l| Some(l.as_str())).collect()),
            });
            let k = (*k).max(1);
            for class in 0..k {
                columns.push(Values::Numbers(
                    probabilities
                        .chunks(k)
                        .map(|row| row.get(class).copied().and_then(finite))
                        .collect(),
                ));
            }
        }
        Predictions::Values(values) => columns.push(Values::Numbers(
            values.iter().copied().map(finite).collect(),
        )),
    }
    let mut group = writer.next_row_group()?;
    let mut values = columns.iter();
    while let Some(mut column) = group.next_column()? {
        let Some(data) = values.next() else {
            return Err(parquet::errors::ParquetError::General(
                "more schema columns than values".into(),
            ));
        };
        match (column.untyped(), data) {
            (ColumnWriter::DoubleColumnWriter(typed), Values::Numbers(data)) => {
                let present: Vec<f64> = data.iter().flatten().copied().collect();
                let levels: Vec<i16> = data.iter().map(|v| i16::from(v.is_some())).collect();
                typed.write_batch(&present, Some(&levels), None)?;
            }
            (ColumnWriter::Int64ColumnWriter(typed), Values::Integers(data)) => {
                let present: Vec<i64> = data.iter().flatten().copied().collect();
                let levels: Vec<i16> = data.iter().map(|v| i16::from(v.is_some())).collect();
                typed.write_batch(&present, Some(&levels), None)?;
            }
            (ColumnWriter::ByteArrayColumnWriter(typed), Values::Texts(data)) => {
                let present: Vec<ByteArray> = data
                    .iter()
                    .flatten()
                    .map(|t| ByteArray::from(t.as_bytes().to_vec()))
                    .collect();
                let levels: Vec<i16> = data.iter().map(|v| i16::from(v.is_some())).collect();
                typed.write_batch(&present, Some(&levels), None)?;
            }
            _ => {
                return Err(parquet::errors::ParquetError::General(
                    "output column of an unexpected type".into(),
                ));
            }
        }
        column.close()?;
    }
    group.close()?;
    Ok(())
}
