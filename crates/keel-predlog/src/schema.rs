//! The two file formats, as one definition the writer and the reader share:
//! every fixed column is a [`Field`] constant (name, type, nullability), and a
//! model's own columns are derived from its [`ModelSchema`] by
//! [`prediction_columns`]. The writer builds the Parquet schema from these
//! lists and the reader finds its columns by the same constants, so a name can
//! only be changed in one place.
//!
//! Compatibility rule (`docs/prediction-log.md`): the format carries a major
//! version in the Parquet key-value metadata ([`FORMAT_KEY`]). Within a major
//! version, columns may be added (readers ignore columns they do not know and
//! read a missing nullable column as nulls); renaming, removing or retyping a
//! column, or changing what a value means, takes a new major version, and a
//! reader refuses files of a major version it does not know.

/// Parquet key-value metadata key holding the format and its major version.
pub const FORMAT_KEY: &str = "keel.format";
/// The prediction-log format this crate writes.
pub const PREDICTION_FORMAT: &str = "keel-prediction-log/1";
/// The feedback-log format this crate writes.
pub const FEEDBACK_FORMAT: &str = "keel-feedback-log/1";
/// The major version this crate writes and the newest it reads.
pub const FORMAT_MAJOR: u32 = 1;

/// The Parquet type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text (`BYTE_ARRAY` annotated `UTF8`).
    Text,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `DOUBLE`; NaN and infinities are written as null.
    Double,
}

/// One column: name, type, and whether it may hold nulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: &'static str,
    /// Parquet type.
    pub kind: Kind,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

const fn field(name: &'static str, kind: Kind, nullable: bool) -> Field {
    Field {
        name,
        kind,
        nullable,
    }
}

/// The request id (`x-request-id`); with [`ROW`] the key feedback joins on.
pub const REQUEST_ID: Field = field("request_id", Kind::Text, false);
/// Row within the request, from 0.
pub const ROW: Field = field("row", Kind::Int32, false);
/// Arrival of the request (predictions) or of the feedback, Unix ms (UTC).
pub const TS_MS: Field = field("ts_ms", Kind::Int64, false);
/// Registered model name.
pub const MODEL_NAME: Field = field("model_name", Kind::Text, false);
/// Model version (`local` for a model served from a path).
pub const MODEL_VERSION: Field = field("model_version", Kind::Text, false);
/// `primary`, `canary` or `shadow`.
pub const ROLE: Field = field("role", Kind::Text, false);
/// Time from arrival to the logged answer, µs.
pub const LATENCY_US: Field = field("latency_us", Kind::Int64, false);
/// The replica (serving process) that wrote the row.
pub const REPLICA: Field = field("replica", Kind::Text, false);
/// Predicted class (classifiers).
pub const OUTPUT_LABEL: Field = field("output.label", Kind::Text, true);
/// Probability of the predicted class (classifiers).
pub const OUTPUT_SCORE: Field = field("output.score", Kind::Double, true);
/// Predicted value (regressors).
pub const OUTPUT_VALUE: Field = field("output.value", Kind::Double, true);
/// Comma-separated quality flags of the row (`out_of_range:income,...`).
pub const FLAGS: Field = field("flags", Kind::Text, true);
/// Feedback: the true class.
pub const LABEL: Field = field("label", Kind::Text, true);
/// Feedback: the true value.
pub const VALUE: Field = field("value", Kind::Double, true);

/// Prefix of an input column: `input.<signature input name>` (Double or Text, nullable).
pub const INPUT_PREFIX: &str = "input.";
/// Prefix of a class-probability column: `output.proba.<class>` (Double, nullable).
pub const PROBA_PREFIX: &str = "output.proba.";

/// The columns every prediction file starts with, in order.
pub const PREDICTION_HEAD: [Field; 8] = [
    REQUEST_ID,
    ROW,
    TS_MS,
    MODEL_NAME,
    MODEL_VERSION,
    ROLE,
    LATENCY_US,
    REPLICA,
];

/// The columns of a feedback file, in order.
pub const FEEDBACK_COLUMNS: [Field; 7] =
    [REQUEST_ID, ROW, TS_MS, MODEL_NAME, REPLICA, LABEL, VALUE];

/// The type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A number (logged as Double).
    Number,
    /// A category (logged as Text).
    Text,
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Signature name (the column is `input.<name>`).
    pub name: String,
    /// Its type.
    pub kind: InputKind,
}

/// What a model's prediction files hold beyond the fixed columns: its inputs,
/// and its classes (a classifier) or none (a regressor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSchema {
    /// Registered name.
    pub name: String,
    /// Version, or `local`.
    pub version: String,
    /// Inputs in signature order.
    pub inputs: Vec<Input>,
    /// Classes of a classifier; `None` for a regressor.
    pub classes: Option<Vec<String>>,
}

/// A column of a prediction file: fixed ones borrow their name, a model's own
/// ones own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Parquet type.
    pub kind: Kind,
    /// Whether it may hold nulls.
    pub nullable: bool,
}

impl From<&Field> for Column {
    fn from(field: &Field) -> Self {
        Column {
            name: field.name.to_string(),
            kind: field.kind,
            nullable: field.nullable,
        }
    }
}

/// Every column of a prediction file of `model`, in file order: the fixed
/// head, `input.*`, `output.label`, `output.score`, `output.proba.*`,
/// `output.value`, `flags`.
pub fn prediction_columns(model: &ModelSchema) -> Vec<Column> {
    let mut columns: Vec<Column> = PREDICTION_HEAD.iter().map(Column::from).collect();
    for input in &model.inputs {
        columns.push(Column {
            name: format!("{INPUT_PREFIX}{}", input.name),
            kind: match input.kind {
                InputKind::Number => Kind::Double,
                InputKind::Text => Kind::Text,
            },
            nullable: true,
        });
    }
    columns.push(Column::from(&OUTPUT_LABEL));
    columns.push(Column::from(&OUTPUT_SCORE));
    for class in model.classes.iter().flatten() {
        columns.push(Column {
            name: format!("{PROBA_PREFIX}{class}"),
            kind: Kind::Double,
            nullable: true,
        });
    }
    columns.push(Column::from(&OUTPUT_VALUE));
    columns.push(Column::from(&FLAGS));
    columns
}

/// The major version of a `keel-…-log/N` format string written for `expected`
/// (`keel-prediction-log` or `keel-feedback-log`); `None` when it is another format.
pub(crate) fn format_major(value: &str, expected: &str) -> Option<u32> {
    let (name, major) = value.split_once('/')?;
    let own = expected.split_once('/').map_or(expected, |(n, _)| n);
    (name == own).then(|| major.parse().ok()).flatten()
}

/// The model the crate's tests log: `risk`, a number and a category in,
/// classes `no` and `yes` out.
#[cfg(test)]
pub(crate) fn example(version: &str) -> ModelSchema {
    ModelSchema {
        name: "risk".into(),
        version: version.into(),
        inputs: vec![
            Input {
                name: "income".into(),
                kind: InputKind::Number,
            },
            Input {
                name: "region".into(),
                kind: InputKind::Text,
            },
        ],
        classes: Some(vec!["no".into(), "yes".into()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_columns_follow_the_head_then_the_model() {
        let model = example("3");
        let names: Vec<String> = prediction_columns(&model)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "request_id",
                "row",
                "ts_ms",
                "model_name",
                "model_version",
                "role",
                "latency_us",
                "replica",
                "input.income",
                "input.region",
                "output.label",
                "output.score",
                "output.proba.no",
                "output.proba.yes",
                "output.value",
                "flags"
            ]
        );
        assert_eq!(format_major(PREDICTION_FORMAT, PREDICTION_FORMAT), Some(1));
        assert_eq!(
            format_major("keel-prediction-log/7", PREDICTION_FORMAT),
            Some(7)
        );
        assert_eq!(format_major(FEEDBACK_FORMAT, PREDICTION_FORMAT), None);
    }
}
