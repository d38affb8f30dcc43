//! The quickstart's client traffic: scoring requests in MLflow's
//! `dataframe_split` shape against `keel serve`, and ground-truth labels sent
//! back to its `/feedback` endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use keel_table::{Column, Table};
use serde_json::{Value, json};

/// One request's row and the id the server gave it.
pub struct Sent {
    pub request_id: String,
    pub label: Option<String>,
}

/// Tally of a traffic burst.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
}

/// The `dataframe_split` body of `rows` of `table`, without the `target` column.
pub fn split_body(table: &Table, target: &str, rows: std::ops::Range<usize>) -> Value {
    let columns: Vec<&String> = table.names().iter().filter(|n| *n != target).collect();
    let data: Vec<Value> = rows
        .map(|row| {
            Value::Array(
                columns
                    .iter()
                    .map(|name| match table.column(name) {
                        Some(Column::Numeric(values)) if values[row].is_finite() => {
                            json!(values[row])
                        }
                        Some(Column::Categorical(values)) => values[row]
                            .clone()
                            .map(Value::String)
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    })
                    .collect(),
            )
        })
        .collect();
    json!({"dataframe_split": {"columns": columns, "data": data}})
}

/// Sends every row of `table` as a one-row request, `concurrency` at a time;
/// returns the request ids with each row's true label.
pub async fn send_rows(
    client: &reqwest::Client,
    url: &str,
    table: &Table,
    target: &str,
    concurrency: usize,
) -> anyhow::Result<(Vec<Sent>, Tally)> {
    let labels = table.column(target).context("target column")?;
    let next = Arc::new(AtomicU64::new(0));
    let rows = table.n_rows() as u64;
    let shared = Arc::new(table.clone());
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let url = url.to_string();
        let next = next.clone();
        let table = shared.clone();
        let target = target.to_string();
        workers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tally = Tally::default();
            loop {
                let row = next.fetch_add(1, Ordering::Relaxed);
                if row >= rows {
                    break;
                }
                let row = row as usize;
                let body = split_body(&table, &target, row..row + 1);
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {
                        tally.ok += 1;
                        if let Some(id) = response
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                        {
                            sent.push((row, id.to_string()));
                        }
                    }
                    _ => tally.failed += 1,
                }
            }
            (sent, tally)
        }));
    }
    let mut sent = Vec::new();
    let mut tally = Tally::default();
    for worker in workers {
        let (rows, t) = worker.await.context("traffic worker")?;
        tally.ok += t.ok;
        tally.failed += t.failed;
        sent.extend(rows.into_iter().map(|(row, request_id)| Sent {
            request_id,
            label: labels.text(row),
        }));
    }
    Ok((sent, tally))
}

/// Posts the true labels of `sent` to `/feedback` in batches.
pub async fn send_feedback(
    client: &reqwest::Client,
    url: &str,
    sent: &[Sent],
) -> anyhow::Result<usize> {
    let mut delivered = 0;
    for chunk in sent.chunks(500) {
        let feedback: Vec<Value> = chunk
            .iter()
            .filter_map(|s| {
                s.label
                    .as_ref()
                    .map(|label| json!({"request_id": s.request_id, "row": 0, "label": label}))
            })
            .collect();
        let response = client
            .post(url)
            .json(&json!({"feedback": feedback}))
            .send()
            .await
            .context("posting feedback")?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            anyhow::bail!("feedback refused ({status}): {text}");
        }
        delivered += feedback.len();
    }
    Ok(delivered)
}

/// Steady background traffic (one request at a time, in a loop) until stopped:
/// what the quickstart runs while the server hot-swaps, counting failures.
pub struct Steady {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Tally>,
}

impl Steady {
    pub fn start(client: reqwest::Client, url: String, body: Value, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let (client, url, body, stop) =
                (client.clone(), url.clone(), body.clone(), stop.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }));
        }
        let handle = tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
            Tally {
                ok: ok.load(Ordering::Relaxed),
                failed: failed.load(Ordering::Relaxed),
            }
        });
        Steady { stop, handle }
    }

    pub async fn finish(self) -> anyhow::Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.context("steady traffic")
    }
}
