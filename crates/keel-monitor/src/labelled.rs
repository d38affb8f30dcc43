//! Recent labelled traffic: the prediction log joined with the feedback that
//! came back for it, as a training table — the inputs the served model saw
//! plus the truth. This is what the drift policy retrains on.

use std::collections::HashMap;
use std::path::Path;

use keel_table::{Column, Table};

use crate::error::{MonitorError, Result};
use crate::read::{Cells, read_parquet_cells};
use crate::window::{file_time, parquet_files, read_feedback};

/// The logged inputs of `model` (from `log_dir`, rows at or after `since_ms`)
/// that have feedback, with the label (or value) as column `target`. Shadow
/// rows (mirrored copies of real requests) are left out; a row's latest
/// feedback wins. Input columns keep their signature names (`input.` dropped).
pub fn labelled_table(
    log_dir: &Path,
    model: &str,
    target: &str,
    since_ms: Option<i64>,
) -> Result<Table> {
    let dir = log_dir.join(model);
    let feedback = read_feedback(&dir.join("feedback"))?;
    let mut names: Vec<String> = Vec::new();
    let mut columns: HashMap<String, Vec<Option<CellValue>>> = HashMap::new();
    let mut labels: Vec<(Option<String>, Option<f64>)> = Vec::new();
    for path in parquet_files(&dir.join("predictions"))? {
        // A file's name carries its flush time, after every row it holds.
        if let (Some(since), Some(written)) = (since_ms, file_time(&path))
            && written < since
        {
            continue;
        }
        let read = read_parquet_cells(&path, |name| {
            name.starts_with("input.") || matches!(name, "request_id" | "row" | "ts_ms" | "role")
        })?;
        let cells: HashMap<&str, &Cells> = read.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let (Some(ids), Some(rows)) = (cells.get("request_id"), cells.get("row")) else {
            return Err(MonitorError::file(
                &path,
                "prediction file without request_id and row columns",
            ));
        };
        for i in 0..ids.len() {
            if cells.get("role").and_then(|c| c.text(i)).as_deref() == Some("shadow") {
                continue;
            }
            if let (Some(since), Some(ts)) =
                (since_ms, cells.get("ts_ms").and_then(|c| c.number(i)))
                && (ts as i64) < since
            {
                continue;
            }
            let (Some(id), Some(row)) = (ids.text(i), rows.number(i)) else {
                continue;
            };
            let Some((_, label, value)) = feedback.get(&(id, row as i64)) else {
                continue;
            };
            let at = labels.len();
            labels.push((label.clone(), *value));
            for (name, column) in &read {
                let Some(feature) = name.strip_prefix("input.") else {
                    continue;
                };
                let values = columns.entry(feature.to_string()).or_insert_with(|| {
                    names.push(feature.to_string());
                    Vec::new()
                });
                values.resize(at, None);
                values.push(match column {
                    Cells::Numbers(_) => column.number(i).map(CellValue::Number),
                    Cells::Texts(_) => column.text(i).map(CellValue::Text),
                });
            }
        }
    }
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
    Table::new(out_names, out_columns)
        .map_err(|error| MonitorError::file(&dir, format!("labelled traffic: {error}")))
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
