//! A sealed spool segment becomes Parquet files: one per (model, version, UTC
//! day) for predictions and one per (model, UTC day) for feedback, named after
//! the replica and the segment's seq ([`crate::layout`]). The same segment
//! always gives the same files, so compacting it again after a crash rewrites
//! identical objects instead of duplicating rows.

use std::sync::Arc;

use crate::error::{LogError, Result};
use crate::layout::{date_of, feedback_path, prediction_path};
use crate::parquet_io::{self, Values};
use crate::schema::{
    self, Column, FEEDBACK_FORMAT, InputKind, ModelSchema, PREDICTION_FORMAT, prediction_columns,
};
use crate::segment::{self, FeedbackFrame, Frame, InputColumn, OutputColumns, PredictionFrame};
use crate::store::Store;

/// What compacting one segment produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// Prediction rows now in Parquet.
    pub rows: u64,
    /// Feedback rows now in Parquet.
    pub feedback_rows: u64,
    /// Files written.
    pub files: u64,
    /// Bytes after the last good frame (a torn tail).
    pub damaged_bytes: usize,
}

struct PredictionGroup<'a> {
    schema: Arc<ModelSchema>,
    date: String,
    index: usize,
    frames: Vec<&'a PredictionFrame>,
}

struct FeedbackGroup<'a> {
    model: &'a str,
    date: String,
    frames: Vec<&'a FeedbackFrame>,
}

/// Rows and first arrival of a segment's bytes, without writing anything
/// (recovery counts what it takes over).
pub(crate) fn count(bytes: &[u8]) -> Option<(u64, Option<i64>)> {
    let decoded = segment::decode(bytes)?;
    let rows = decoded.frames.iter().map(Frame::rows).sum();
    let first = decoded.frames.iter().filter_map(Frame::ts_ms).min();
    Some((rows, first))
}

/// Writes the Parquet files of segment `bytes` (from `name`, for messages).
pub(crate) fn compact(
    store: &Store,
    name: &str,
    bytes: &[u8],
    replica: &str,
    seq: u64,
) -> Result<Compacted> {
    let Some(decoded) = segment::decode(bytes) else {
        return Err(LogError::format(name, "not a spool segment (bad magic)"));
    };
    let mut models: Vec<(u32, Arc<ModelSchema>)> = Vec::new();
    let mut predictions: Vec<PredictionGroup<'_>> = Vec::new();
    let mut feedback: Vec<FeedbackGroup<'_>> = Vec::new();
    let mut orphans = 0u64;
    for frame in &decoded.frames {
        match frame {
            Frame::Model(id, schema) => {
                models.retain(|(known, _)| known != id);
                models.push((*id, Arc::new(schema.clone())));
            }
            Frame::Prediction(p) => {
                let Some((_, schema)) = models.iter().find(|(id, _)| *id == p.model) else {
                    orphans += p.rows as u64;
                    continue;
                };
                let date = date_of(p.ts_ms);
                let same_partition = |g: &PredictionGroup<'_>| {
                    g.date == date
                        && g.schema.name == schema.name
                        && g.schema.version == schema.version
                };
                match predictions
                    .iter_mut()
                    .find(|g| same_partition(g) && *g.schema == **schema)
                {
                    Some(group) => group.frames.push(p),
                    None => {
                        let index = predictions.iter().filter(|g| same_partition(g)).count();
                        predictions.push(PredictionGroup {
                            schema: schema.clone(),
                            date,
                            index,
                            frames: vec![p],
                        });
                    }
                }
            }
            Frame::Feedback(f) => {
                let date = date_of(f.ts_ms);
                match feedback
                    .iter_mut()
                    .find(|g| g.model == f.model && g.date == date)
                {
                    Some(group) => group.frames.push(f),
                    None => feedback.push(FeedbackGroup {
                        model: &f.model,
                        date,
                        frames: vec![f],
                    }),
                }
            }
        }
    }
    if orphans > 0 {
        tracing::error!(
            segment = name,
            rows = orphans,
            "prediction log: rows of an undeclared model skipped"
        );
    }
    let mut out = Compacted {
        damaged_bytes: decoded.damaged_bytes,
        ..Compacted::default()
    };
    for group in &predictions {
        let path = prediction_path(
            &group.schema.name,
            &group.schema.version,
            &group.date,
            replica,
            seq,
            group.index,
        );
        let bytes = prediction_file(&group.schema, replica, &group.frames)
            .map_err(|message| LogError::format(&path, message))?;
        store.put(&path, bytes)?;
        out.rows += group.frames.iter().map(|f| f.rows as u64).sum::<u64>();
        out.files += 1;
    }
    for group in &feedback {
        let path = feedback_path(group.model, &group.date, replica, seq);
        let bytes = feedback_file(group.model, replica, &group.frames)
            .map_err(|message| LogError::format(&path, message))?;
        store.put(&path, bytes)?;
        out.feedback_rows += group
            .frames
            .iter()
            .map(|f| f.items.len() as u64)
            .sum::<u64>();
        out.files += 1;
    }
    Ok(out)
}

/// The Parquet bytes of `frames`, all predictions of the model `schema`.
pub(crate) fn prediction_file(
    schema: &ModelSchema,
    replica: &str,
    frames: &[&PredictionFrame],
) -> Result<Vec<u8>, String> {
    // Per output row: (frame, row within the frame).
    let index: Vec<(&PredictionFrame, usize)> = frames
        .iter()
        .flat_map(|f| (0..f.rows).map(move |i| (*f, i)))
        .collect();
    let rows = || index.iter();
    let column = |field: &schema::Field| Column::from(field);
    let mut columns: Vec<(Column, Values)> = Vec::with_capacity(16 + schema.inputs.len());
    columns.push((
        column(&schema::REQUEST_ID),
        Values::texts(rows().map(|(f, _)| f.request_id.as_str())),
    ));
    columns.push((
        column(&schema::ROW),
        Values::Int32(rows().map(|(_, i)| *i as i32).collect()),
    ));
    columns.push((
        column(&schema::TS_MS),
        Values::Int64(rows().map(|(f, _)| f.ts_ms).collect()),
    ));
    columns.push((
        column(&schema::MODEL_NAME),
        Values::texts(rows().map(|_| schema.name.as_str())),
    ));
    columns.push((
        column(&schema::MODEL_VERSION),
        Values::texts(rows().map(|_| schema.version.as_str())),
    ));
    columns.push((
        column(&schema::ROLE),
        Values::texts(rows().map(|(f, _)| f.role.as_str())),
    ));
    columns.push((
        column(&schema::LATENCY_US),
        Values::Int64(rows().map(|(f, _)| f.latency_us).collect()),
    ));
    columns.push((
        column(&schema::REPLICA),
        Values::texts(rows().map(|_| replica)),
    ));
    let declared = prediction_columns(schema);
    let input_columns = &declared[schema::PREDICTION_HEAD.len()..][..schema.inputs.len()];
    for (c, (input, spec)) in schema.inputs.iter().zip(input_columns).enumerate() {
        let data = match input.kind {
            InputKind::Number => {
                Values::optional_doubles(rows().map(|(f, i)| match f.inputs.get(c) {
                    Some(InputColumn::Numbers(values)) => Some(values[*i]),
                    _ => None,
                }))
            }
            InputKind::Text => Values::optional_texts(rows().map(|(f, i)| match f.inputs.get(c) {
                Some(InputColumn::Texts(values)) => values[*i].as_deref(),
                _ => None,
            })),
        };
        columns.push((spec.clone(), data));
    }
    let classes = schema.classes.as_deref().unwrap_or(&[]);
    columns.push((
        column(&schema::OUTPUT_LABEL),
        Values::optional_texts(rows().map(|(f, i)| match &f.outputs {
            OutputColumns::Classes { labels, .. } => Some(labels[*i].as_str()),
            OutputColumns::Values(_) => None,
        })),
    ));
    columns.push((
        column(&schema::OUTPUT_SCORE),
        Values::optional_doubles(rows().map(|(f, i)| match &f.outputs {
            OutputColumns::Classes {
                labels,
                probabilities,
                k,
            } => {
                let p = &probabilities[i * k..(i + 1) * k];
                let score = classes
                    .iter()
                    .position(|c| *c == labels[*i])
                    .and_then(|position| p.get(position).copied())
                    .unwrap_or_else(|| p.iter().copied().fold(f64::NAN, f64::max));
                Some(score)
            }
            OutputColumns::Values(_) => None,
        })),
    ));
    let proba_columns =
        &declared[schema::PREDICTION_HEAD.len() + schema.inputs.len() + 2..][..classes.len()];
    for (class, spec) in proba_columns.iter().enumerate() {
        columns.push((
            spec.clone(),
            Values::optional_doubles(rows().map(|(f, i)| match &f.outputs {
                OutputColumns::Classes {
                    probabilities, k, ..
                } if class < *k => probabilities.get(i * k + class).copied(),
                _ => None,
            })),
        ));
    }
    columns.push((
        column(&schema::OUTPUT_VALUE),
        Values::optional_doubles(rows().map(|(f, i)| match &f.outputs {
            OutputColumns::Values(values) => Some(values[*i]),
            OutputColumns::Classes { .. } => None,
        })),
    ));
    columns.push((
        column(&schema::FLAGS),
        Values::optional_texts(rows().map(|(f, i)| {
            f.flags
                .as_ref()
                .and_then(|flags| flags.get(*i))
                .and_then(Option::as_deref)
        })),
    ));
    debug_assert_eq!(
        columns.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        declared.iter().collect::<Vec<_>>()
    );
    parquet_io::write(PREDICTION_FORMAT, columns)
}

/// The Parquet bytes of feedback `frames` of `model`.
pub(crate) fn feedback_file(
    model: &str,
    replica: &str,
    frames: &[&FeedbackFrame],
) -> Result<Vec<u8>, String> {
    let items: Vec<(&FeedbackFrame, &segment::Feedback)> = frames
        .iter()
        .flat_map(|f| f.items.iter().map(move |item| (*f, item)))
        .collect();
    let rows = || items.iter();
    let data: [Values; 7] = [
        Values::texts(rows().map(|(_, item)| item.request_id.as_str())),
        Values::Int32(rows().map(|(_, item)| item.row).collect()),
        Values::Int64(rows().map(|(f, _)| f.ts_ms).collect()),
        Values::texts(rows().map(|_| model)),
        Values::texts(rows().map(|_| replica)),
        Values::optional_texts(rows().map(|(_, item)| item.label.as_deref())),
        Values::optional_doubles(rows().map(|(_, item)| item.value)),
    ];
    let columns = schema::FEEDBACK_COLUMNS
        .iter()
        .map(Column::from)
        .zip(data)
        .collect();
    parquet_io::write(FEEDBACK_FORMAT, columns)
}
