//! The one prediction path. Every protocol hands its parsed request here, and
//! every role goes through the same steps: the routed model (primary or, for
//! its share, the canary), a version the client named, and the shadow the
//! request is mirrored to.
//!
//! 1. parse and check the body against the model's signature (400 naming the
//!    column and row under a reject policy, row flags otherwise);
//! 2. predict (inline for small batches, on the blocking pool for large ones);
//! 3. count and flag non-finite outputs (the `nan_output` policy);
//! 4. log: the record is in the spool before anything is answered (503 when
//!    the log is at capacity or cannot write, never an unlogged answer);
//! 5. mirror to the shadow in a spawned task (steps 1–4 again, answer dropped);
//! 6. guard: under `nan_output: reject` a non-finite output is a 500 naming the rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use keel_engine::{Batch, Column, Predictions};
use keel_predlog::{Inputs, Outputs, Prediction};
use serde_json::Value;

use super::error::ApiError;
use crate::contract::{self, ContractError, Parsed, Policy};
use crate::deploy::{Deployment, Role, Served, State as AppState, now_ms};
use crate::metrics::{Check, ErrorKind, Protocol};

/// Batches larger than this are predicted on the blocking pool.
const INLINE_ROWS: usize = 64;

/// A request body, kept so the shadow can parse it against its own signature.
#[derive(Clone)]
pub(super) enum Body {
    Mlflow { bytes: Bytes, csv: bool },
    V2 { inputs: Arc<Value> },
}

impl Body {
    fn parse(&self, served: &Served, state: &AppState) -> Result<Parsed, ContractError> {
        let signature = served.model.signature();
        let policies = &state.config.policies;
        let max_rows = state.config.max_rows;
        match self {
            Body::Mlflow { bytes, csv } => {
                contract::parse_mlflow(bytes, *csv, signature, policies, max_rows)
            }
            Body::V2 { inputs } => {
                let list = inputs.as_array().map(Vec::as_slice).unwrap_or(&[]);
                contract::parse_v2(list, signature, policies, max_rows)
            }
        }
    }
}

/// When and as which request a prediction request arrived.
pub(super) struct Arrival {
    pub started: Instant,
    pub ts_ms: i64,
    pub request_id: Arc<str>,
}

impl Arrival {
    /// Stamps a request and takes its body (an over-limit body is answered here).
    #[allow(clippy::result_large_err)]
    pub fn take(
        state: &AppState,
        headers: &HeaderMap,
        protocol: Protocol,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<(Arrival, Bytes), Response> {
        let arrival = Arrival {
            started: Instant::now(),
            ts_ms: now_ms(),
            request_id: super::request_id(state, headers),
        };
        match body {
            Ok(body) => Ok((arrival, body)),
            Err(rejection) => {
                Err(ApiError::from_body(protocol, rejection)
                    .render(state, Some(&arrival.request_id)))
            }
        }
    }
}

/// A request predicted, checked and logged, ready to render.
pub(super) struct Outcome {
    pub served: Arc<Served>,
    pub batch: Arc<Batch>,
    pub predictions: Predictions,
    pub flags: contract::RowFlags,
}

/// Which model answers a request.
pub(super) enum Target {
    /// The deployment routes it (canary share) and mirrors it to its shadow.
    Routed(Arc<Deployment>),
    /// The client named a loaded version: no routing, no mirror.
    Addressed(Arc<Served>),
}

/// Steps 1–6 for a request; the outcome is logged and safe to return.
pub(super) async fn answer(
    state: &AppState,
    protocol: Protocol,
    target: Target,
    body: Body,
    arrival: &Arrival,
) -> Result<Outcome, ApiError> {
    let (served, shadow) = match target {
        Target::Routed(deployment) => {
            let n = state.routed.fetch_add(1, Ordering::Relaxed);
            (deployment.route(n).clone(), deployment.shadow.clone())
        }
        Target::Addressed(served) => (served, None),
    };
    let outcome = predict(state, protocol, &served, &body).await?;
    let logged = record(state, protocol, &outcome, arrival).await;
    if let Some(shadow) = shadow {
        mirror(state, protocol, shadow, body, arrival);
    }
    logged?;
    output_guard(state, protocol, &outcome)?;
    Ok(outcome)
}

async fn run_model(served: &Arc<Served>, batch: Arc<Batch>) -> Result<Predictions, String> {
    if batch.rows <= INLINE_ROWS {
        return served.model.predict(&batch).map_err(|e| e.to_string());
    }
    let served = served.clone();
    tokio::task::spawn_blocking(move || served.model.predict(&batch).map_err(|e| e.to_string()))
        .await
        .map_err(|e| format!("prediction task failed: {e}"))?
}

/// Steps 1–3: parses, checks, predicts and flags non-finite outputs.
async fn predict(
    state: &AppState,
    protocol: Protocol,
    served: &Arc<Served>,
    body: &Body,
) -> Result<Outcome, ApiError> {
    let Parsed { batch, mut flags } = body
        .parse(served, state)
        .map_err(|e| ApiError::from_contract(protocol, e))?;
    let batch = Arc::new(batch);
    let predictions = run_model(served, batch.clone())
        .await
        .map_err(|message| ApiError::internal(protocol, ErrorKind::Model, message))?;
    let bad_rows = predictions.non_finite_rows();
    if !bad_rows.is_empty() {
        state
            .metrics
            .nan_outputs
            .fetch_add(bad_rows.len() as u64, Ordering::Relaxed);
        if state.config.policies.nan_output != Policy::Ignore {
            for &row in &bad_rows {
                flags.add(batch.rows, row, Check::NanOutput, "");
            }
        }
    }
    // A mirrored request's input flags were counted for the model that answered.
    if served.role != Role::Shadow {
        for check in Check::ALL {
            let rows = flags.counts[check as usize];
            if rows > 0 {
                state.metrics.flagged(check, rows);
            }
        }
    }
    Ok(Outcome {
        served: served.clone(),
        batch,
        predictions,
        flags,
    })
}

/// Step 4: logs the outcome (the record is in the spool when this returns)
/// and counts the request.
async fn record(
    state: &AppState,
    protocol: Protocol,
    outcome: &Outcome,
    arrival: &Arrival,
) -> Result<(), ApiError> {
    let elapsed = arrival.started.elapsed();
    if let (Some(log), Some(logged)) = (&state.log, &outcome.served.logged) {
        let inputs: Vec<Inputs<'_>> = outcome
            .batch
            .columns
            .iter()
            .map(|column| match column {
                Column::Numeric(values) => Inputs::Numbers(values),
                Column::Categorical(values) => Inputs::Texts(values),
            })
            .collect();
        let outputs = match &outcome.predictions {
            Predictions::Classes {
                labels,
                probabilities,
                ..
            } => Outputs::Classes {
                labels,
                probabilities,
            },
            Predictions::Values(values) => Outputs::Values(values),
        };
        let prediction = Prediction {
            request_id: &arrival.request_id,
            ts_ms: arrival.ts_ms,
            role: outcome.served.role.as_str(),
            latency_us: elapsed.as_micros() as i64,
            rows: outcome.batch.rows,
            inputs: &inputs,
            outputs,
            flags: &outcome.flags.rows,
        };
        if let Err(refused) = log.log(logged, &prediction).await {
            return Err(ApiError::unavailable(
                protocol,
                format!("{refused}: the prediction is not answered unlogged; retry later"),
            ));
        }
    }
    state.metrics.request(
        protocol,
        outcome.served.role as usize,
        outcome.batch.rows,
        elapsed.as_secs_f64(),
    );
    Ok(())
}

/// Step 5: the shadow predicts and logs the same request off the hot path;
/// skipped when `max_shadow_inflight` mirrored requests are running.
fn mirror(
    state: &AppState,
    protocol: Protocol,
    shadow: Arc<Served>,
    body: Body,
    arrival: &Arrival,
) {
    let Ok(permit) = state.shadow_slots.clone().try_acquire_owned() else {
        state.metrics.shadow_skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let state = state.clone();
    let arrival = Arrival {
        started: Instant::now(),
        ts_ms: arrival.ts_ms,
        request_id: arrival.request_id.clone(),
    };
    tokio::spawn(async move {
        let _permit = permit;
        match predict(&state, protocol, &shadow, &body).await {
            Ok(outcome) => {
                let _ = record(&state, protocol, &outcome, &arrival).await;
            }
            Err(_) => {
                state.metrics.shadow_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Step 6: the answer is refused when outputs are non-finite under the reject policy.
fn output_guard(state: &AppState, protocol: Protocol, outcome: &Outcome) -> Result<(), ApiError> {
    if state.config.policies.nan_output != Policy::Reject {
        return Ok(());
    }
    let rows = outcome.predictions.non_finite_rows();
    if rows.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = rows.iter().take(20).map(|r| r.to_string()).collect();
    Err(ApiError::internal(
        protocol,
        ErrorKind::NanOutput,
        format!(
            "Model {} version {} produced a NaN or infinite prediction for row{} {}{} (nan_output policy: reject)",
            outcome.served.name,
            outcome.served.version,
            if rows.len() > 1 { "s" } else { "" },
            shown.join(", "),
            if rows.len() > 20 { ", ..." } else { "" }
        ),
    ))
}
