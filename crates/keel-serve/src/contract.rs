//! The input contract: request bodies (MLflow's four JSON layouts and CSV, the
//! Open Inference Protocol's tensors) become a [`Batch`] in signature order,
//! every cell checked against the signature on the way in. Each check has a
//! [`Policy`]: reject (HTTP 400 naming the column and row), flag (accepted; the
//! row carries a flag such as `out_of_range:income` into the prediction log and
//! the metrics) or ignore.
//!
//! The JSON is parsed once into `serde_json::Value`; cells are then read by
//! reference, straight into the typed columns (no per-cell allocation for
//! numbers).

use keel_engine::{Batch, Column, InputKind, ServingSignature};
use keel_table::{Text, format_number, is_missing, read_text};
use serde_json::Value;

use crate::metrics::Check;

/// What to do when a check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse the request (400 naming the column and row; 500-class for outputs).
    Reject,
    /// Accept it and flag the row (prediction log + metrics).
    Flag,
    /// Accept it silently.
    Ignore,
}

impl Policy {
    /// Parses `reject`, `flag` or `ignore`.
    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "reject" => Some(Policy::Reject),
            "flag" => Some(Policy::Flag),
            "ignore" => Some(Policy::Ignore),
            _ => None,
        }
    }

    /// Name as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Reject => "reject",
            Policy::Flag => "flag",
            Policy::Ignore => "ignore",
        }
    }
}

/// The policy of each check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// A signature input absent from the request.
    pub missing_column: Policy,
    /// A request column the signature does not have.
    pub extra_column: Policy,
    /// Text for a number, a boolean, an infinite value...
    pub wrong_type: Policy,
    /// A null / empty cell.
    pub null: Policy,
    /// A number outside the training range.
    pub out_of_range: Policy,
    /// A category not seen in training.
    pub unknown_category: Policy,
    /// A NaN or infinite prediction.
    pub nan_output: Policy,
}

impl Default for Policies {
    /// Reject what the model cannot take (missing columns, wrong types) and
    /// non-finite outputs; flag what it can take but should be watched.
    fn default() -> Self {
        Policies {
            missing_column: Policy::Reject,
            extra_column: Policy::Flag,
            wrong_type: Policy::Reject,
            null: Policy::Flag,
            out_of_range: Policy::Flag,
            unknown_category: Policy::Flag,
            nan_output: Policy::Reject,
        }
    }
}

impl Policies {
    /// The policy of `check`.
    pub fn of(&self, check: Check) -> Policy {
        match check {
            Check::MissingColumn => self.missing_column,
            Check::ExtraColumn => self.extra_column,
            Check::WrongType => self.wrong_type,
            Check::Null => self.null,
            Check::OutOfRange => self.out_of_range,
            Check::UnknownCategory => self.unknown_category,
            Check::NanOutput => self.nan_output,
        }
    }

    /// Sets the policy of the check named `name` (as in [`Check::as_str`]).
    pub fn set(&mut self, name: &str, policy: Policy) -> bool {
        let slot = match name {
            "missing_column" => &mut self.missing_column,
            "extra_column" => &mut self.extra_column,
            "wrong_type" => &mut self.wrong_type,
            "null" => &mut self.null,
            "out_of_range" => &mut self.out_of_range,
            "unknown_category" => &mut self.unknown_category,
            "nan_output" => &mut self.nan_output,
            _ => return false,
        };
        *slot = policy;
        true
    }
}

/// A request the contract refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractError {
    /// True when a check with a reject policy failed (vs. an unreadable body).
    pub violation: bool,
    /// What is wrong, naming the column and row.
    pub message: String,
}

impl ContractError {
    fn malformed(message: impl Into<String>) -> Self {
        ContractError {
            violation: false,
            message: message.into(),
        }
    }
}

type Checked<T> = Result<T, ContractError>;

/// Per-row quality flags and per-check counts of flagged rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFlags {
    /// Comma-separated flags per row (`None` when clean). Empty when no row is flagged.
    pub rows: Vec<Option<String>>,
    /// Rows flagged by each check (indexed by `Check as usize`).
    pub counts: [u64; 7],
    last_row: [Option<usize>; 7],
}

impl RowFlags {
    /// Adds `check:column` to `row` (of `n_rows`).
    pub fn add(&mut self, n_rows: usize, row: usize, check: Check, column: &str) {
        if self.rows.is_empty() {
            self.rows = vec![None; n_rows];
        }
        let text = self.rows[row].get_or_insert_with(String::new);
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(check.as_str());
        if !column.is_empty() {
            text.push(':');
            text.push_str(column);
        }
        let slot = check as usize;
        if self.last_row[slot] != Some(row) {
            self.last_row[slot] = Some(row);
            self.counts[slot] += 1;
        }
    }

    /// Whether any row is flagged.
    pub fn any(&self) -> bool {
        self.rows.iter().any(Option::is_some)
    }

    /// The distinct checks that flagged something, comma-separated (for a response header).
    pub fn summary(&self) -> String {
        Check::ALL
            .iter()
            .filter(|c| self.counts[**c as usize] > 0)
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Rows in signature order.
    pub batch: Batch,
    /// Quality flags.
    pub flags: RowFlags,
}

/// One cell as it came in.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Json(&'a Value),
    Text(&'a str),
    /// The column is absent (already reported as missing).
    Absent,
}

/// A cell by what it holds: text (a CSV cell or a JSON string) is read by
/// keel-table's rule in both cases.
enum Incoming<'a> {
    Absent,
    Null,
    Number(&'a serde_json::Number),
    Text(&'a str),
    Other(&'a Value),
}

/// Request cells, row-major, with optional column names.
struct Grid<'a> {
    /// Column names; `None` means positional (signature order).
    names: Option<Vec<&'a str>>,
    width: usize,
    cells: Vec<Cell<'a>>,
}

enum Layout<'a> {
    Grid(Grid<'a>),
    /// One JSON object per row.
    Records(&'a [Value]),
}

/// Reads an MLflow `/invocations` body: JSON (`dataframe_split`,
/// `dataframe_records`, `instances`, `inputs`, optional `params`) or CSV.
pub fn parse_mlflow(
    body: &[u8],
    csv: bool,
    signature: &ServingSignature,
    policies: &Policies,
    max_rows: usize,
) -> Checked<Parsed> {
    if csv {
        return parse_csv(body, signature, policies, max_rows);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ContractError::malformed(format!("Invalid JSON input: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(ContractError::malformed(
            "The JSON body must be an object with one of the keys dataframe_split, dataframe_records, instances, inputs",
        ));
    };
    let mut layout = None;
    for (key, field) in object {
        let parsed = match key.as_str() {
            "dataframe_split" => split_layout(field)?,
            "dataframe_records" => Layout::Records(array(field, "dataframe_records")?),
            "instances" => rows_layout(field, "instances", signature)?,
            "inputs" => match field {
                Value::Object(columns) => columns_layout(
                    columns.iter().map(|(name, values)| (name.as_str(), values)),
                    "inputs",
                )?,
                other => rows_layout(other, "inputs", signature)?,
            },
            "params" => continue,
            other => {
                return Err(ContractError::malformed(format!(
                    "Unknown key {other:?}: the body takes exactly one of dataframe_split, dataframe_records, instances, inputs (and optional params)"
                )));
            }
        };
        if layout.replace(parsed).is_some() {
            return Err(ContractError::malformed(
                "The body must hold exactly one of dataframe_split, dataframe_records, instances, inputs",
            ));
        }
    }
    let layout = layout.ok_or_else(|| {
        ContractError::malformed(
            "The body must hold one of dataframe_split, dataframe_records, instances, inputs",
        )
    })?;
    build(layout, signature, policies, max_rows)
}

/// Reads an Open Inference Protocol `inputs` list: named 1-D tensors (one per
/// signature input; BYTES for categorical ones), or one `[N, F]` numeric tensor
/// in signature order.
pub fn parse_v2(
    inputs: &[Value],
    signature: &ServingSignature,
    policies: &Policies,
    max_rows: usize,
) -> Checked<Parsed> {
    let tensor = |t: &'_ Value, i: usize| -> Checked<(String, Vec<i64>, String)> {
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ContractError::malformed(format!("inputs[{i}] has no \"name\"")))?;
        let shape = t
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
            .ok_or_else(|| {
                ContractError::malformed(format!(
                    "input {name:?}: \"shape\" must be a list of integers"
                ))
            })?;
        let datatype = t.get("datatype").and_then(Value::as_str).ok_or_else(|| {
            ContractError::malformed(format!("input {name:?} has no \"datatype\""))
        })?;
        Ok((name.to_string(), shape, datatype.to_string()))
    };
    let data = tensor_data;
    let check_datatype = |name: &str, datatype: &str| -> Checked<()> {
        match datatype {
            "BOOL" | "UINT8" | "UINT16" | "UINT32" | "UINT64" | "INT8" | "INT16" | "INT32"
            | "INT64" | "FP16" | "FP32" | "FP64" | "BYTES" => Ok(()),
            other => Err(ContractError::malformed(format!(
                "input {name:?}: unknown datatype {other:?}"
            ))),
        }
    };
    if let [only] = inputs {
        let (name, shape, datatype) = tensor(only, 0)?;
        check_datatype(&name, &datatype)?;
        if shape.len() == 2 && signature.position(&name).is_none() {
            let (rows, width) = (shape[0], shape[1]);
            if width as usize != signature.inputs.len() {
                return Err(ContractError::malformed(format!(
                    "input {name:?} has shape [{rows}, {width}]; the model takes {} features ({})",
                    signature.inputs.len(),
                    input_names(signature)
                )));
            }
            let values = data(only, &name)?;
            // A negative or overflowing row count is refused, not wrapped.
            if rows < 0 || rows.checked_mul(width) != i64::try_from(values.len()).ok() {
                return Err(ContractError::malformed(format!(
                    "input {name:?}: shape [{rows}, {width}] but {} values",
                    values.len()
                )));
            }
            return build(
                Layout::Grid(Grid {
                    names: None,
                    width: width as usize,
                    cells: values.into_iter().map(Cell::Json).collect(),
                }),
                signature,
                policies,
                max_rows,
            );
        }
    }
    let mut columns = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let (name, shape, datatype) = tensor(input, i)?;
        check_datatype(&name, &datatype)?;
        if shape.len() > 2 || (shape.len() == 2 && shape[1] != 1) {
            return Err(ContractError::malformed(format!(
                "input {name:?} has shape {shape:?}; send one [N] tensor per input, or one [N, F] tensor"
            )));
        }
        let values = data(input, &name)?;
        if shape.first().is_some_and(|&n| n as usize != values.len()) {
            return Err(ContractError::malformed(format!(
                "input {name:?}: shape {shape:?} but {} values",
                values.len()
            )));
        }
        columns.push((name, values));
    }
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let rows = columns.first().map_or(0, |(_, v)| v.len());
    if let Some((name, values)) = columns.iter().find(|(_, v)| v.len() != rows) {
        return Err(ContractError::malformed(format!(
            "input {name:?} has {} values, the first input {rows}",
            values.len()
        )));
    }
    let width = names.len();
    let mut cells = Vec::with_capacity(rows * width);
    for row in 0..rows {
        for (_, values) in &columns {
            cells.push(Cell::Json(values[row]));
        }
    }
    build(
        Layout::Grid(Grid {
            names: Some(names),
            width,
            cells,
        }),
        signature,
        policies,
        max_rows,
    )
}

fn tensor_data<'a>(tensor: &'a Value, name: &str) -> Checked<Vec<&'a Value>> {
    let data = tensor
        .get("data")
        .ok_or_else(|| ContractError::malformed(format!("input {name:?} has no \"data\"")))?;
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    Ok(flat)
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

fn array<'a>(value: &'a Value, what: &str) -> Checked<&'a [Value]> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| ContractError::malformed(format!("{what} must be a list")))
}

fn input_names(signature: &ServingSignature) -> String {
    signature
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{"columns": [...], "data": [[...], ...]}` (pandas `orient="split"`).
fn split_layout(value: &Value) -> Checked<Layout<'_>> {
    let names = match value.get("columns") {
        None | Some(Value::Null) => None,
        Some(columns) => Some(
            array(columns, "dataframe_split.columns")?
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    c.as_str().ok_or_else(|| {
                        ContractError::malformed(format!(
                            "dataframe_split.columns[{i}] must be a string"
                        ))
                    })
                })
                .collect::<Checked<Vec<&str>>>()?,
        ),
    };
    let data = array(
        value
            .get("data")
            .ok_or_else(|| ContractError::malformed("dataframe_split needs \"data\""))?,
        "dataframe_split.data",
    )?;
    grid_from_rows(names, data, "dataframe_split.data")
}

fn grid_from_rows<'a>(
    names: Option<Vec<&'a str>>,
    rows: &'a [Value],
    what: &str,
) -> Checked<Layout<'a>> {
    let width = match (&names, rows.first()) {
        (Some(names), _) => names.len(),
        (None, Some(Value::Array(first))) => first.len(),
        (None, _) => 1,
    };
    let mut cells = Vec::with_capacity(rows.len() * width);
    for (r, row) in rows.iter().enumerate() {
        let values = row
            .as_array()
            .ok_or_else(|| ContractError::malformed(format!("{what}[{r}] must be a list")))?;
        if values.len() != width {
            return Err(ContractError::malformed(format!(
                "{what}[{r}] has {} values for {width} columns",
                values.len()
            )));
        }
        cells.extend(values.iter().map(Cell::Json));
    }
    Ok(Layout::Grid(Grid {
        names,
        width,
        cells,
    }))
}

/// `instances` / `inputs` as a list: objects (records), lists (positional
/// rows) or scalars (a one-input model).
fn rows_layout<'a>(
    value: &'a Value,
    what: &str,
    signature: &ServingSignature,
) -> Checked<Layout<'a>> {
    let rows = array(value, what)?;
    match rows.first() {
        Some(Value::Object(_)) => Ok(Layout::Records(rows)),
        Some(Value::Array(_)) => grid_from_rows(None, rows, what),
        _ if signature.inputs.len() == 1 => Ok(Layout::Grid(Grid {
            names: None,
            width: 1,
            cells: rows.iter().map(Cell::Json).collect(),
        })),
        None => Ok(Layout::Records(rows)),
        Some(_) => Err(ContractError::malformed(format!(
            "{what} must be a list of rows (objects or lists); scalars only for a one-input model"
        ))),
    }
}

/// `{"inputs": {"col": [...], ...}}` (TF-serving columnar).
fn columns_layout<'a>(
    columns: impl Iterator<Item = (&'a str, &'a Value)>,
    what: &str,
) -> Checked<Layout<'a>> {
    let mut names = Vec::new();
    let mut lists = Vec::new();
    for (name, values) in columns {
        names.push(name);
        lists.push(match values {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        });
    }
    let rows = lists.first().map_or(0, |l| l.len());
    if let Some((name, list)) = names.iter().zip(&lists).find(|(_, l)| l.len() != rows) {
        return Err(ContractError::malformed(format!(
            "{what}.{name} has {} values, the first column {rows}",
            list.len()
        )));
    }
    let width = names.len();
    let mut cells = Vec::with_capacity(rows * width);
    for row in 0..rows {
        for list in &lists {
            cells.push(Cell::Json(&list[row]));
        }
    }
    Ok(Layout::Grid(Grid {
        names: Some(names),
        width,
        cells,
    }))
}

fn parse_csv(
    body: &[u8],
    signature: &ServingSignature,
    policies: &Policies,
    max_rows: usize,
) -> Checked<Parsed> {
    let mut reader = csv_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ContractError::malformed(format!("Invalid CSV header: {e}")))?
        .clone();
    let mut records = Vec::new();
    for (r, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ContractError::malformed(format!("CSV row {r}: {e}")))?;
        if records.len() >= max_rows {
            return Err(too_many_rows(max_rows));
        }
        records.push(record);
    }
    parse_csv_records(&header, &records, signature, policies)
}

/// The CSV reader of the contract (a header row, cells trimmed): batch
/// scoring reads CSV files with it, so their cells are those of a CSV body.
pub fn csv_reader<R: std::io::Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input)
}

/// Checks CSV records read by [`csv_reader`] as a CSV body with that header
/// (batch scoring: one batch of a file's rows).
pub fn parse_csv_records(
    header: &csv::StringRecord,
    records: &[csv::StringRecord],
    signature: &ServingSignature,
    policies: &Policies,
) -> Checked<Parsed> {
    let names: Vec<&str> = header.iter().collect();
    let width = names.len();
    let mut cells = Vec::with_capacity(records.len() * width);
    for record in records {
        cells.extend(record.iter().map(Cell::Text));
    }
    build(
        Layout::Grid(Grid {
            names: Some(names),
            width,
            cells,
        }),
        signature,
        policies,
        records.len(),
    )
}

/// Checks rows of JSON cells (row-major, `names.len()` per row) as a
/// `dataframe_split` body with these columns (batch scoring: typed
/// Parquet cells, a null for a missing one).
pub fn parse_json_rows(
    names: &[&str],
    cells: &[Value],
    signature: &ServingSignature,
    policies: &Policies,
) -> Checked<Parsed> {
    let width = names.len();
    if width == 0 || !cells.len().is_multiple_of(width) {
        return Err(ContractError::malformed(
            "rows do not have one cell per column",
        ));
    }
    build(
        Layout::Grid(Grid {
            names: Some(names.to_vec()),
            width,
            cells: cells.iter().map(Cell::Json).collect(),
        }),
        signature,
        policies,
        cells.len() / width,
    )
}

fn too_many_rows(max_rows: usize) -> ContractError {
    ContractError::malformed(format!(
        "The request has more than {max_rows} rows (--max-rows)"
    ))
}

/// Typed columns being filled, with the checks.
struct Builder<'s> {
    signature: &'s ServingSignature,
    policies: &'s Policies,
    rows: usize,
    columns: Vec<Column>,
    flags: RowFlags,
}

impl<'s> Builder<'s> {
    fn new(signature: &'s ServingSignature, policies: &'s Policies, rows: usize) -> Self {
        Builder {
            signature,
            policies,
            rows,
            columns: signature
                .inputs
                .iter()
                .map(|input| match input.kind {
                    InputKind::Numeric { .. } => Column::Numeric(Vec::with_capacity(rows)),
                    InputKind::Categorical { .. } => Column::Categorical(Vec::with_capacity(rows)),
                })
                .collect(),
            flags: RowFlags::default(),
        }
    }

    /// Applies `check`'s policy: an error to return (reject), or a flag.
    fn fail(
        &mut self,
        check: Check,
        row: usize,
        column: &str,
        message: impl FnOnce() -> String,
    ) -> Checked<()> {
        match self.policies.of(check) {
            Policy::Reject => Err(ContractError {
                violation: true,
                message: message(),
            }),
            Policy::Flag => {
                self.flags.add(self.rows, row, check, column);
                Ok(())
            }
            Policy::Ignore => Ok(()),
        }
    }

    /// A missing cell (JSON null, or a text cell keel-table reads as missing).
    fn missing(&mut self, row: usize, name: &str, what: impl std::fmt::Display) -> Checked<()> {
        self.fail(Check::Null, row, name, || {
            format!("Column {name:?}, row {row}: missing value ({what})")
        })
    }

    fn push(&mut self, input: usize, row: usize, cell: Cell<'_>) -> Checked<()> {
        let spec = &self.signature.inputs[input];
        let name = spec.name.as_str();
        // Text arrives in CSV cells and JSON strings alike: one rule reads both.
        let incoming = match cell {
            Cell::Absent => Incoming::Absent,
            Cell::Text(text) => Incoming::Text(text),
            Cell::Json(Value::Null) => Incoming::Null,
            Cell::Json(Value::Number(n)) => Incoming::Number(n),
            Cell::Json(Value::String(text)) => Incoming::Text(text),
            Cell::Json(other) => Incoming::Other(other),
        };
        match &spec.kind {
            InputKind::Numeric { range, .. } => {
                let value = match incoming {
                    Incoming::Absent => f64::NAN,
                    Incoming::Null => {
                        self.missing(row, name, "null")?;
                        f64::NAN
                    }
                    Incoming::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    Incoming::Text(text) => match read_text(text) {
                        Text::Missing => {
                            self.missing(row, name, format_args!("{text:?}"))?;
                            f64::NAN
                        }
                        Text::Number(value) if value.is_finite() => value,
                        _ => {
                            self.fail(Check::WrongType, row, name, || {
                                format!("Column {name:?}, row {row}: expected a finite number, got {text:?}")
                            })?;
                            f64::NAN
                        }
                    },
                    Incoming::Other(other) => {
                        self.fail(Check::WrongType, row, name, || {
                            format!("Column {name:?}, row {row}: expected a number, got {other}")
                        })?;
                        f64::NAN
                    }
                };
                if let Some((low, high)) = range
                    && (value < *low || value > *high)
                {
                    let (low, high) = (*low, *high);
                    self.fail(Check::OutOfRange, row, name, || {
                        format!("Column {name:?}, row {row}: {value} is outside the training range [{low}, {high}]")
                    })?;
                }
                if let Column::Numeric(values) = &mut self.columns[input] {
                    values.push(value);
                }
            }
            InputKind::Categorical { index, .. } => {
                let value = match incoming {
                    Incoming::Absent => None,
                    Incoming::Null => {
                        self.missing(row, name, "null")?;
                        None
                    }
                    Incoming::Number(n) => Some(number_label(n)),
                    Incoming::Text(text) if is_missing(text) => {
                        self.missing(row, name, format_args!("{text:?}"))?;
                        None
                    }
                    Incoming::Text(text) => Some(text.trim().to_string()),
                    Incoming::Other(other) => {
                        self.fail(Check::WrongType, row, name, || {
                            format!("Column {name:?}, row {row}: expected a category (text), got {other}")
                        })?;
                        None
                    }
                };
                if let Some(text) = &value
                    && !index.contains_key(text)
                {
                    self.fail(Check::UnknownCategory, row, name, || {
                        format!(
                            "Column {name:?}, row {row}: category {text:?} was not seen in training"
                        )
                    })?;
                }
                if let Column::Categorical(values) = &mut self.columns[input] {
                    values.push(value);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Parsed {
        Parsed {
            batch: Batch {
                rows: self.rows,
                columns: self.columns,
            },
            flags: self.flags,
        }
    }
}

/// A JSON number used as a category label, written as training writes
/// numbers as text (keel-table's `format_number`: `1`, not `1.0`).
fn number_label(n: &serde_json::Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => format_number(n.as_f64().unwrap_or(f64::NAN)),
    }
}

fn build(
    layout: Layout<'_>,
    signature: &ServingSignature,
    policies: &Policies,
    max_rows: usize,
) -> Checked<Parsed> {
    match layout {
        Layout::Grid(grid) => {
            let rows = grid.cells.len() / grid.width.max(1);
            if rows > max_rows {
                return Err(too_many_rows(max_rows));
            }
            let mut builder = Builder::new(signature, policies, rows);
            // For each signature input, where it is in the request.
            let mut source: Vec<Option<usize>> = Vec::with_capacity(signature.inputs.len());
            match &grid.names {
                None => {
                    if grid.width != signature.inputs.len() {
                        return Err(ContractError::malformed(format!(
                            "Rows have {} values but the model takes {} inputs ({}); name the columns or send them in this order",
                            grid.width,
                            signature.inputs.len(),
                            input_names(signature)
                        )));
                    }
                    source.extend((0..grid.width).map(Some));
                }
                Some(names) => {
                    for (i, name) in names.iter().enumerate() {
                        if names[..i].contains(name) {
                            return Err(ContractError::malformed(format!(
                                "Column {name:?} appears twice"
                            )));
                        }
                    }
                    for input in &signature.inputs {
                        source.push(names.iter().position(|n| *n == input.name));
                    }
                    for (input, found) in signature.inputs.iter().zip(&source) {
                        if found.is_none() {
                            let name = input.name.as_str();
                            for row in 0..rows {
                                builder.fail(Check::MissingColumn, row, name, || {
                                    format!(
                                        "Missing column {name:?} (the model takes: {})",
                                        input_names(signature)
                                    )
                                })?;
                            }
                            if rows == 0 && policies.missing_column == Policy::Reject {
                                return Err(ContractError {
                                    violation: true,
                                    message: format!("Missing column {name:?}"),
                                });
                            }
                        }
                    }
                    for name in names {
                        if signature.position(name).is_none() {
                            for row in 0..rows {
                                builder.fail(Check::ExtraColumn, row, name, || {
                                    format!(
                                        "Unknown column {name:?} (the model takes: {})",
                                        input_names(signature)
                                    )
                                })?;
                            }
                        }
                    }
                }
            }
            for row in 0..rows {
                let cells = &grid.cells[row * grid.width..(row + 1) * grid.width];
                for (input, found) in source.iter().enumerate() {
                    let cell = found.map_or(Cell::Absent, |c| cells[c]);
                    builder.push(input, row, cell)?;
                }
            }
            Ok(builder.finish())
        }
        Layout::Records(records) => {
            if records.len() > max_rows {
                return Err(too_many_rows(max_rows));
            }
            let rows = records.len();
            let mut builder = Builder::new(signature, policies, rows);
            for (row, record) in records.iter().enumerate() {
                let Value::Object(fields) = record else {
                    return Err(ContractError::malformed(format!(
                        "Row {row} must be an object of column: value"
                    )));
                };
                for (input, spec) in signature.inputs.iter().enumerate() {
                    let cell = match fields.get(&spec.name) {
                        Some(value) => Cell::Json(value),
                        None => {
                            let name = spec.name.as_str();
                            builder.fail(Check::MissingColumn, row, name, || {
                                format!(
                                    "Row {row}: missing column {name:?} (the model takes: {})",
                                    input_names(signature)
                                )
                            })?;
                            Cell::Absent
                        }
                    };
                    builder.push(input, row, cell)?;
                }
                if fields.len() > signature.inputs.len()
                    || fields.keys().any(|k| signature.position(k).is_none())
                {
                    for key in fields.keys() {
                        if signature.position(key).is_none() {
                            builder.fail(Check::ExtraColumn, row, key, || {
                                format!(
                                    "Row {row}: unknown column {key:?} (the model takes: {})",
                                    input_names(signature)
                                )
                            })?;
                        }
                    }
                }
            }
            Ok(builder.finish())
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use keel_engine::{InputSpec, OutputKind, SignatureSource};

    /// `income` (numeric, trained on 0..100) and `region` (north, south).
    pub(super) fn signature() -> ServingSignature {
        ServingSignature {
            inputs: vec![
                InputSpec {
                    name: "income".into(),
                    kind: InputKind::Numeric {
                        range: Some((0.0, 100.0)),
                        typical: 50.0,
                    },
                },
                InputSpec {
                    name: "region".into(),
                    kind: InputKind::categorical(vec!["north".into(), "south".into()]),
                },
            ],
            output: OutputKind::Value,
            label_type: keel_engine::LabelType::Text,
            source: SignatureSource::Keel,
        }
    }

    fn parse(body: &str) -> Checked<Parsed> {
        parse_mlflow(
            body.as_bytes(),
            false,
            &signature(),
            &Policies::default(),
            1000,
        )
    }

    fn expected(income: Vec<f64>, region: Vec<Option<&str>>) -> Batch {
        Batch {
            rows: income.len(),
            columns: vec![
                Column::Numeric(income),
                Column::Categorical(region.into_iter().map(|r| r.map(str::to_string)).collect()),
            ],
        }
    }

    #[test]
    fn every_mlflow_layout_gives_the_same_batch() {
        let want = expected(vec![10.0, 20.0], vec![Some("north"), Some("south")]);
        for body in [
            r#"{"dataframe_split": {"columns": ["region", "income"], "data": [["north", 10], ["south", 20]]}}"#,
            r#"{"dataframe_split": {"data": [[10, "north"], [20, "south"]]}}"#,
            r#"{"dataframe_records": [{"income": 10, "region": "north"}, {"region": "south", "income": 20.0}]}"#,
            r#"{"instances": [{"income": 10, "region": "north"}, {"income": 20, "region": "south"}]}"#,
            r#"{"instances": [[10, "north"], [20, "south"]], "params": {"x": 1}}"#,
            r#"{"inputs": {"income": [10, 20], "region": ["north", "south"]}}"#,
            r#"{"inputs": [[10, "north"], [20, "south"]]}"#,
        ] {
            let parsed = parse(body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(parsed.batch, want, "{body}");
            assert!(!parsed.flags.any(), "{body}");
        }
        let csv = parse_mlflow(
            b"region,income\nnorth,10\nsouth,20\n",
            true,
            &signature(),
            &Policies::default(),
            1000,
        )
        .unwrap();
        assert_eq!(csv.batch, want);
    }

    #[test]
    fn violations_name_column_and_row() {
        let missing = parse(r#"{"dataframe_records": [{"income": 10}]}"#).unwrap_err();
        assert!(
            missing.violation && missing.message.contains("\"region\""),
            "{missing:?}"
        );
        let wrong = parse(r#"{"dataframe_split": {"columns": ["income", "region"], "data": [[1, "north"], ["abc", "north"]]}}"#)
            .unwrap_err();
        assert!(
            wrong.message.contains("\"income\"") && wrong.message.contains("row 1"),
            "{wrong:?}"
        );
        let flagged = parse(
            r#"{"dataframe_records": [{"income": 500, "region": "west", "extra": 1}, {"income": null, "region": "north"}]}"#,
        )
        .unwrap();
        assert_eq!(
            flagged.flags.rows[0].as_deref(),
            Some("out_of_range:income,unknown_category:region,extra_column:extra")
        );
        assert_eq!(flagged.flags.rows[1].as_deref(), Some("null:income"));
        assert_eq!(flagged.flags.counts[Check::OutOfRange as usize], 1);
        assert_eq!(
            flagged.flags.summary(),
            "extra_column,null,out_of_range,unknown_category"
        );
        let strict = Policies {
            out_of_range: Policy::Reject,
            ..Policies::default()
        };
        let error = parse_mlflow(
            br#"{"inputs": {"income": [5, 500], "region": ["north", "north"]}}"#,
            false,
            &signature(),
            &strict,
            1000,
        )
        .unwrap_err();
        assert!(
            error.message.contains("row 1") && error.message.contains("training range"),
            "{error:?}"
        );
        assert!(!parse("[1, 2]").unwrap_err().violation);
        assert!(parse(r#"{"inputs": [], "instances": []}"#).is_err());
        let too_many = parse_mlflow(
            br#"{"inputs": {"income": [1, 2, 3], "region": ["north", "north", "north"]}}"#,
            false,
            &signature(),
            &Policies::default(),
            2,
        )
        .unwrap_err();
        assert!(too_many.message.contains("more than 2 rows"));
    }

    #[test]
    fn missing_spellings_read_as_training_reads_them() {
        // `?`, `n/a`, `NULL`, ` ` and `nan` are missing in CSV cells and in
        // JSON strings alike: a flagged null, never a wrong type.
        let want = expected(
            vec![f64::NAN, f64::NAN, 7.5, f64::NAN, f64::NAN],
            vec![None, None, Some("north"), None, None],
        );
        let csv = parse_mlflow(
            b"income,region\n?,?\nn/a,N/A\n7.5,north\nNULL, \nnan,none\n",
            true,
            &signature(),
            &Policies::default(),
            1000,
        )
        .unwrap();
        let json = parse(
            r#"{"dataframe_split": {"columns": ["income", "region"], "data": [["?", "?"], ["n/a", "N/A"], ["7.5", "north"], ["NULL", " "], [null, "none"]]}}"#,
        )
        .unwrap();
        for parsed in [&csv, &json] {
            let Column::Numeric(income) = &parsed.batch.columns[0] else {
                panic!("income is numeric");
            };
            assert_eq!(income[2], 7.5);
            assert_eq!(
                income.iter().filter(|v| v.is_nan()).count(),
                4,
                "{income:?}"
            );
            assert_eq!(parsed.batch.columns[1], want.columns[1]);
            assert_eq!(
                parsed.flags.rows[0].as_deref(),
                Some("null:income,null:region")
            );
            assert_eq!(parsed.flags.counts[Check::WrongType as usize], 0);
        }
        let strict = Policies {
            null: Policy::Reject,
            ..Policies::default()
        };
        let error =
            parse_mlflow(b"income,region\n?,north\n", true, &signature(), &strict, 10).unwrap_err();
        assert!(
            error
                .message
                .contains("\"income\", row 0: missing value (\"?\")"),
            "{error:?}"
        );
    }

    #[test]
    fn open_inference_tensors() {
        let named: Value = serde_json::from_str(
            r#"[{"name": "income", "shape": [2], "datatype": "FP64", "data": [10, 20]},
                {"name": "region", "shape": [2, 1], "datatype": "BYTES", "data": [["north"], ["south"]]}]"#,
        )
        .unwrap();
        let parsed = parse_v2(
            named.as_array().unwrap(),
            &signature(),
            &Policies::default(),
            100,
        )
        .unwrap();
        assert_eq!(
            parsed.batch,
            expected(vec![10.0, 20.0], vec![Some("north"), Some("south")])
        );
        let bad: Value = serde_json::from_str(
            r#"[{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]"#,
        )
        .unwrap();
        let error = parse_v2(
            bad.as_array().unwrap(),
            &signature(),
            &Policies::default(),
            100,
        )
        .unwrap_err();
        assert!(error.message.contains("2 features"), "{error:?}");
    }
}
