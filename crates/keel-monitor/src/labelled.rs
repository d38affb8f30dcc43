//! Recent labelled traffic: the prediction log joined with the feedback that
//! came back for it, as a training table — the inputs the served model saw
//! plus the truth. This is what the drift policy retrains on.

use std::collections::HashMap;

use keel_predlog::{InputValues, LogReader};
use keel_table::{Column, Table};

use crate::error::{MonitorError, Result};

/// The logged inputs of `model` (from the log root `log_dir`, a folder or
/// `s3://…`; rows at or after `since_ms`, all replicas) that have feedback,
/// with the label (or value) as column `target`. Shadow rows (mirrored copies
/// of real requests) are left out; a row's latest feedback wins. Input
/// columns keep their signature names.
pub fn labelled_table(
    log_dir: &str,
    model: &str,
    target: &str,
    since_ms: Option<i64>,
) -> Result<Table> {
    let reader = LogReader::open(log_dir)?;
    let feedback = reader.feedback(model, since_ms)?;
    let mut names: Vec<String> = Vec::new();
    let mut columns: HashMap<String, Vec<Option<CellValue>>> = HashMap::new();
    let mut labels: Vec<(Option<String>, Option<f64>)> = Vec::new();
    reader.scan_predictions(model, since_ms, |batch, i| -> Result<()> {
        if batch.role[i] == "shadow" {
            return Ok(());
        }
        let Some(truth) = feedback.get(&batch.request_id[i], batch.row[i]) else {
            return Ok(());
        };
        let at = labels.len();
        labels.push((truth.label.clone(), truth.value));
        for (feature, values) in &batch.inputs {
            let column = columns.entry(feature.clone()).or_insert_with(|| {
                names.push(feature.clone());
                Vec::new()
            });
            column.resize(at, None);
            column.push(match values {
                InputValues::Numbers(v) => v[i].map(CellValue::Number),
                InputValues::Texts(v) => v[i].clone().map(CellValue::Text),
            });
        }
        Ok(())
    })?;
    let rows = labels.len();
    let mut out_names = Vec::new();
    let mut out_columns = Vec::new();
    for name in names {
        let mut values = columns.remove(&name).unwrap_or_default();
        values.resize(rows, None);
        out_columns.push(column_of(values));
        out_names.push(name);
    }
    let numeric_target = labels.iter().all(|(label, _)| label.is_none());
    out_columns.push(if numeric_target {
        Column::Numeric(labels.iter().map(|(_, v)| v.unwrap_or(f64::NAN)).collect())
    } else {
        Column::Categorical(labels.into_iter().map(|(label, _)| label).collect())
    });
    out_names.push(target.to_string());
    Table::new(out_names, out_columns).map_err(|error| {
        MonitorError::file(
            format!("{log_dir} ({model})"),
            format!("labelled traffic: {error}"),
        )
    })
}

#[derive(Debug, Clone)]
enum CellValue {
    Number(f64),
    Text(String),
}

/// Numbers stay numeric; any text makes the column categorical.
fn column_of(values: Vec<Option<CellValue>>) -> Column {
    if values
        .iter()
        .all(|v| !matches!(v, Some(CellValue::Text(_))))
    {
        Column::Numeric(
            values
                .into_iter()
                .map(|v| match v {
                    Some(CellValue::Number(n)) => n,
                    _ => f64::NAN,
                })
                .collect(),
        )
    } else {
        Column::Categorical(
            values
                .into_iter()
                .map(|v| match v {
                    Some(CellValue::Number(n)) => Some(keel_table::format_number(n)),
                    Some(CellValue::Text(t)) => Some(t),
                    None => None,
                })
                .collect(),
        )
    }
}
