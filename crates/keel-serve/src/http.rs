//! Routes and handlers: MLflow scoring protocol, Open Inference Protocol,
//! health, metrics, feedback; and the middleware that bounds work (requests in
//! flight → 503, request time → 504) and checks the bearer token.
//!
//! Hot path of a prediction: snapshot the deployment, route (canary share),
//! parse and check the body against that model's signature, predict (inline
//! for small batches, on the blocking pool for large ones), guard the outputs,
//! render the reply, hand the record to the prediction log, mirror to the
//! shadow in a spawned task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_engine::{Batch, InputKind, LabelType, Predictions};
use serde::Serialize;
use serde_json::{Value, json};

use crate::contract::{self, ContractError, Parsed, Policy};
use crate::deploy::{self, Deployment, Served, State as AppState, now_ms};
use crate::metrics::{Check, ErrorKind, ModelInfo, Protocol};
use crate::predlog::{Feedback, LogRecord, write_feedback};

/// Batches larger than this are predicted on the blocking pool.
const INLINE_ROWS: usize = 64;

pub fn router(state: AppState) -> Router {
    let limited = Router::new()
        .route("/invocations", post(invocations))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/feedback", post(feedback))
        .layer(middleware::from_fn_with_state(state.clone(), bound))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    Router::new()
        .merge(limited)
        .route("/ping", get(ping))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_version_ready),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

// ------------------------------------------------------------------ errors

/// A failed request, rendered in the protocol's error shape.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    kind: ErrorKind,
    protocol: Protocol,
}

impl ApiError {
    fn new(
        protocol: Protocol,
        kind: ErrorKind,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            kind,
            protocol,
        }
    }

    fn bad_request(protocol: Protocol, message: impl Into<String>) -> Self {
        ApiError::new(
            protocol,
            ErrorKind::BadRequest,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            message,
        )
    }

    fn from_contract(protocol: Protocol, error: ContractError) -> Self {
        let kind = if error.violation {
            ErrorKind::Contract
        } else {
            ErrorKind::BadRequest
        };
        ApiError::new(
            protocol,
            kind,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            error.message,
        )
    }

    fn from_body(protocol: Protocol, rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::TooLarge
        } else {
            ErrorKind::BadRequest
        };
        ApiError::new(protocol, kind, status, "BAD_REQUEST", rejection.body_text())
    }

    fn render(self, state: &AppState, request_id: Option<&str>) -> Response {
        state.metrics.error(self.kind);
        let body = match self.protocol {
            Protocol::Mlflow => json!({"error_code": self.code, "message": self.message}),
            Protocol::V2 => json!({"error": self.message}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }
}

// ------------------------------------------------------------------ middleware

async fn bound(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.inflight.clone().try_acquire_owned() else {
        state.metrics.error(ErrorKind::Overloaded);
        let message = format!(
            "The server is saturated ({} requests in flight); retry later",
            state.config.max_concurrency
        );
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message, "error": message})),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.error(ErrorKind::Timeout);
            let message = format!(
                "The request took longer than {} ms",
                state.config.request_timeout.as_millis()
            );
            (
                StatusCode::GATEWAY_TIMEOUT,
                axum::Json(json!({"error_code": "DEADLINE_EXCEEDED", "message": message, "error": message})),
            )
                .into_response()
        }
    }
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.config.auth_token {
        let path = request.uri().path();
        let open = matches!(
            path,
            "/ping" | "/health" | "/v2/health/live" | "/v2/health/ready"
        );
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !open && given != Some(token.as_str()) {
            let message = "This server requires 'Authorization: Bearer <token>'";
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(
                    json!({"error_code": "UNAUTHENTICATED", "message": message, "error": message}),
                ),
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn not_found(request: Request) -> Response {
    let message = format!("No endpoint {} {}", request.method(), request.uri().path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error_code": "ENDPOINT_NOT_FOUND", "message": message, "error": message}),
        ),
    )
        .into_response()
}

// ------------------------------------------------------------------ prediction core

/// A request body, kept so the shadow can parse it against its own signature.
#[derive(Clone)]
enum Body {
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

/// A request predicted and checked, ready to render and log.
struct Outcome {
    served: Arc<Served>,
    batch: Arc<Batch>,
    predictions: Predictions,
    flags: contract::RowFlags,
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

/// Parses, checks, predicts and guards the output.
async fn predict(
    state: &AppState,
    protocol: Protocol,
    served: &Arc<Served>,
    body: &Body,
) -> Result<Outcome, ApiError> {
    let parsed = body
        .parse(served, state)
        .map_err(|e| ApiError::from_contract(protocol, e))?;
    let Parsed { batch, mut flags } = parsed;
    let batch = Arc::new(batch);
    let predictions = run_model(served, batch.clone()).await.map_err(|message| {
        ApiError::new(
            protocol,
            ErrorKind::Model,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            message,
        )
    })?;
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
    for check in Check::ALL {
        let rows = flags.counts[check as usize];
        if rows > 0 {
            state.metrics.flagged(check, rows);
        }
    }
    Ok(Outcome {
        served: served.clone(),
        batch,
        predictions,
        flags,
    })
}

fn request_id(state: &AppState, headers: &HeaderMap) -> Arc<str> {
    if let Some(given) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !given.is_empty()
        && given.len() <= 128
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Arc::from(given);
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{}-{n:x}", state.id_prefix))
}

/// When and as which request a prediction request arrived.
struct Arrival {
    started: Instant,
    ts_ms: i64,
    request_id: Arc<str>,
}

/// Stamps a request and takes its body (an over-limit body is answered here).
#[allow(clippy::result_large_err)]
fn arrive(
    state: &AppState,
    headers: &HeaderMap,
    protocol: Protocol,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Arrival, Bytes), Response> {
    let arrival = Arrival {
        started: Instant::now(),
        ts_ms: now_ms(),
        request_id: request_id(state, headers),
    };
    match body {
        Ok(body) => Ok((arrival, body)),
        Err(rejection) => {
            Err(ApiError::from_body(protocol, rejection).render(state, Some(&arrival.request_id)))
        }
    }
}

/// Logs the outcome (503 if the log is full) and counts it.
fn record(
    state: &AppState,
    protocol: Protocol,
    outcome: &Outcome,
    request_id: &Arc<str>,
    ts_ms: i64,
    started: Instant,
) -> Result<(), ApiError> {
    let elapsed = started.elapsed();
    if let Some(log) = &state.log {
        let logged = log.try_log(LogRecord {
            request_id: request_id.clone(),
            ts_ms,
            model: outcome.served.log_model.clone(),
            role: outcome.served.role.as_str(),
            latency_us: elapsed.as_micros() as i64,
            batch: outcome.batch.clone(),
            predictions: outcome.predictions.clone(),
            flags: outcome.flags.rows.clone(),
        });
        if logged.is_err() {
            return Err(ApiError::new(
                protocol,
                ErrorKind::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                "The prediction log is behind; retry later",
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

/// The answer is refused when outputs are non-finite under the reject policy.
fn output_guard(state: &AppState, protocol: Protocol, outcome: &Outcome) -> Result<(), ApiError> {
    if state.config.policies.nan_output != Policy::Reject {
        return Ok(());
    }
    let rows = outcome.predictions.non_finite_rows();
    if rows.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = rows.iter().take(20).map(|r| r.to_string()).collect();
    Err(ApiError::new(
        protocol,
        ErrorKind::NanOutput,
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        format!(
            "Model {} version {} produced a NaN or infinite prediction for row{} {}{} (nan_output policy: reject)",
            outcome.served.log_model.name,
            outcome.served.log_model.version,
            if rows.len() > 1 { "s" } else { "" },
            shown.join(", "),
            if rows.len() > 20 { ", ..." } else { "" }
        ),
    ))
}

/// Mirrors the request to the shadow model, off the hot path.
fn mirror(
    state: &AppState,
    protocol: Protocol,
    deployment: &Deployment,
    body: Body,
    request_id: Arc<str>,
    ts_ms: i64,
) {
    let Some(shadow) = deployment.shadow.clone() else {
        return;
    };
    let Ok(permit) = state.shadow_slots.clone().try_acquire_owned() else {
        state.metrics.shadow_skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let started = Instant::now();
        let parsed = match body.parse(&shadow, &state) {
            Ok(parsed) => parsed,
            Err(_) => {
                state.metrics.shadow_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let batch = Arc::new(parsed.batch);
        let model = shadow.clone();
        let job = batch.clone();
        let predictions = tokio::task::spawn_blocking(move || model.model.predict(&job)).await;
        let Ok(Ok(predictions)) = predictions else {
            state.metrics.shadow_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut flags = parsed.flags;
        for row in predictions.non_finite_rows() {
            state.metrics.nan_outputs.fetch_add(1, Ordering::Relaxed);
            flags.add(batch.rows, row, Check::NanOutput, "");
        }
        let outcome = Outcome {
            served: shadow,
            batch,
            predictions,
            flags,
        };
        let _ = record(&state, protocol, &outcome, &request_id, ts_ms, started);
    });
}

fn with_headers(mut response: Response, outcome: &Outcome, request_id: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&outcome.served.log_model.version) {
        headers.insert("x-keel-model-version", value);
    }
    headers.insert(
        "x-keel-model-role",
        HeaderValue::from_static(outcome.served.role.as_str()),
    );
    if outcome.flags.any()
        && let Ok(value) = HeaderValue::from_str(&outcome.flags.summary())
    {
        headers.insert("x-keel-flags", value);
    }
    response
}

fn json_response(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

// ------------------------------------------------------------------ MLflow scoring protocol

#[derive(Serialize)]
#[serde(untagged)]
enum Values<'a> {
    Labels(&'a [String]),
    Numbers(&'a [f64]),
}

/// Class labels as the model's own type, as MLflow's scoring server writes
/// them: `[1, 0]` for integer labels, `["yes", "no"]` for text.
struct TypedLabels<'a> {
    labels: &'a [String],
    label_type: LabelType,
}

impl Serialize for TypedLabels<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.labels.len()))?;
        for label in self.labels {
            match (self.label_type, label.parse::<i64>()) {
                (LabelType::Integer, Ok(number)) => seq.serialize_element(&number)?,
                _ => seq.serialize_element(label)?,
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum MlflowValues<'a> {
    Labels(TypedLabels<'a>),
    Numbers(&'a [f64]),
}

#[derive(Serialize)]
struct MlflowReply<'a> {
    predictions: MlflowValues<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<Vec<&'a [f64]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<TypedLabels<'a>>,
}

async fn invocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let protocol = Protocol::Mlflow;
    let (
        Arrival {
            started,
            ts_ms,
            request_id,
        },
        body,
    ) = match arrive(&state, &headers, protocol, body) {
        Ok(arrived) => arrived,
        Err(response) => return response,
    };
    let csv = match content_kind(&headers) {
        Ok(csv) => csv,
        Err(message) => {
            return ApiError::new(
                protocol,
                ErrorKind::BadRequest,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "BAD_REQUEST",
                message,
            )
            .render(&state, Some(&request_id));
        }
    };
    let deployment = state.deployment();
    let n = state.routed.fetch_add(1, Ordering::Relaxed);
    let served = deployment.route(n);
    let body = Body::Mlflow { bytes: body, csv };
    let outcome = match predict(&state, protocol, served, &body).await {
        Ok(outcome) => outcome,
        Err(error) => return error.render(&state, Some(&request_id)),
    };
    let logged = record(&state, protocol, &outcome, &request_id, ts_ms, started);
    mirror(
        &state,
        protocol,
        &deployment,
        body,
        request_id.clone(),
        ts_ms,
    );
    if let Err(error) = logged.and_then(|()| output_guard(&state, protocol, &outcome)) {
        return error.render(&state, Some(&request_id));
    }
    let signature = outcome.served.model.signature();
    let typed = |labels| TypedLabels {
        labels,
        label_type: signature.label_type,
    };
    let reply = match &outcome.predictions {
        Predictions::Classes {
            labels,
            probabilities,
            k,
        } => MlflowReply {
            predictions: MlflowValues::Labels(typed(labels)),
            probabilities: Some(probabilities.chunks((*k).max(1)).collect()),
            classes: signature.classes().map(typed),
        },
        Predictions::Values(values) => MlflowReply {
            predictions: MlflowValues::Numbers(values),
            probabilities: None,
            classes: None,
        },
    };
    with_headers(json_response(&reply), &outcome, &request_id)
}

/// `Ok(true)` for CSV, `Ok(false)` for JSON (also when no content type is given).
fn content_kind(headers: &HeaderMap) -> Result<bool, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let mut parts = text.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    for parameter in parts {
        if let Some(charset) = parameter.strip_prefix("charset=")
            && !matches!(charset.trim_matches('"'), "utf-8" | "utf8")
        {
            return Err(format!("Unsupported charset {charset:?}: only utf-8"));
        }
    }
    match media {
        "application/json" | "" => Ok(false),
        "text/csv" | "application/csv" => Ok(true),
        other => Err(format!(
            "Unsupported content type {other:?}: use application/json or text/csv"
        )),
    }
}

async fn ping() -> &'static str {
    "\n"
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(state.health()).into_response()
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let deployment = state.deployment();
    let models: Vec<ModelInfo<'_>> = std::iter::once(&deployment.primary)
        .chain(deployment.canary.iter())
        .chain(deployment.shadow.iter())
        .map(|served| ModelInfo {
            role: served.role.as_str(),
            name: &served.log_model.name,
            version: &served.log_model.version,
            engine: served.model.kind().as_str(),
        })
        .collect();
    let text = state.metrics.render(&models, now_ms() as u64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// ------------------------------------------------------------------ feedback

async fn feedback(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let protocol = Protocol::Mlflow;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from_body(protocol, rejection).render(&state, None),
    };
    let Some(log) = &state.log else {
        return ApiError::bad_request(
            protocol,
            "The prediction log is off (--no-log): feedback has nowhere to go",
        )
        .render(&state, None);
    };
    let items = match parse_feedback(&body) {
        Ok(items) => items,
        Err(message) => return ApiError::bad_request(protocol, message).render(&state, None),
    };
    let dir = log.dir().to_path_buf();
    let name = state.deployment().primary.log_model.name.clone();
    let count = items.len();
    let written = tokio::task::spawn_blocking(move || write_feedback(&dir, &name, &items)).await;
    match written {
        Ok(Ok(path)) => axum::Json(json!({"written": count, "file": path.display().to_string()}))
            .into_response(),
        Ok(Err(error)) => ApiError::new(
            protocol,
            ErrorKind::Model,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("cannot write feedback: {error}"),
        )
        .render(&state, None),
        Err(error) => ApiError::new(
            protocol,
            ErrorKind::Model,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            error.to_string(),
        )
        .render(&state, None),
    }
}

fn parse_feedback(body: &[u8]) -> Result<Vec<Feedback>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    let items: Vec<&Value> = match value.get("feedback") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(_) => return Err("\"feedback\" must be a list".into()),
        None => vec![&value],
    };
    if items.is_empty() {
        return Err("No feedback given".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("feedback[{i}].{field}");
            let request_id = item
                .get("request_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{} is required (the x-request-id of the prediction)",
                        at("request_id")
                    )
                })?;
            let row = match item.get("row") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .and_then(|r| i32::try_from(r).ok())
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| format!("{} must be a non-negative integer", at("row")))?,
            };
            let label = match item.get("label") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(_) => return Err(format!("{} must be text or a number", at("label"))),
            };
            let value = match item.get("value") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or_else(|| format!("{} must be a number", at("value")))?,
                ),
            };
            if label.is_none() && value.is_none() {
                return Err(format!("{} needs \"label\" or \"value\"", at("")));
            }
            Ok(Feedback {
                request_id: request_id.to_string(),
                row,
                label,
                value,
            })
        })
        .collect()
}

// ------------------------------------------------------------------ Open Inference Protocol

async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

async fn ready() -> Response {
    axum::Json(json!({"ready": true})).into_response()
}

async fn server_metadata() -> Response {
    axum::Json(json!({"name": "keel", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
        .into_response()
}

fn not_served(message: String) -> ApiError {
    ApiError::new(
        Protocol::V2,
        ErrorKind::NotFound,
        StatusCode::NOT_FOUND,
        "",
        message,
    )
}

/// The served model `name` (version `version`, or the routed one).
fn find(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<(Arc<Deployment>, Option<Arc<Served>>), ApiError> {
    let deployment = state.deployment();
    if deployment.primary.log_model.name != name {
        return Err(not_served(format!(
            "Model {name:?} is not served here (this server serves {:?})",
            deployment.primary.log_model.name
        )));
    }
    match version {
        None => Ok((deployment, None)),
        Some(version) => match deployment.by_version(version).cloned() {
            Some(served) => Ok((deployment, Some(served))),
            None => Err(not_served(format!(
                "Version {version:?} of {name:?} is not loaded"
            ))),
        },
    }
}

fn metadata(deployment: &Deployment, served: &Served) -> Value {
    let signature = served.model.signature();
    let inputs: Vec<Value> = signature
        .inputs
        .iter()
        .map(|input| {
            json!({
                "name": input.name,
                "datatype": if matches!(input.kind, InputKind::Categorical { .. }) { "BYTES" } else { "FP64" },
                "shape": [-1],
            })
        })
        .collect();
    let outputs = match signature.classes() {
        Some(classes) => json!([
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes.len()]},
        ]),
        None => json!([{"name": "value", "datatype": "FP64", "shape": [-1]}]),
    };
    let versions: Vec<&str> = std::iter::once(&deployment.primary)
        .chain(deployment.canary.iter())
        .chain(deployment.shadow.iter())
        .map(|s| s.log_model.version.as_str())
        .collect();
    let mut value = json!({
        "name": served.log_model.name,
        "versions": versions,
        "platform": deploy::platform(served.model.kind()),
        "inputs": inputs,
        "outputs": outputs,
    });
    if let Some(classes) = signature.classes() {
        value["parameters"] = json!({"classes": classes});
    }
    value
}

async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match find(&state, &name, None) {
        Ok((deployment, _)) => {
            axum::Json(metadata(&deployment, &deployment.primary)).into_response()
        }
        Err(error) => error.render(&state, None),
    }
}

async fn model_version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find(&state, &name, Some(&version)) {
        Ok((deployment, Some(served))) => {
            axum::Json(metadata(&deployment, &served)).into_response()
        }
        Ok((deployment, None)) => {
            axum::Json(metadata(&deployment, &deployment.primary)).into_response()
        }
        Err(error) => error.render(&state, None),
    }
}

async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match find(&state, &name, None) {
        Ok(_) => axum::Json(json!({"name": name, "ready": true})).into_response(),
        Err(error) => error.render(&state, None),
    }
}

async fn model_version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match find(&state, &name, Some(&version)) {
        Ok(_) => axum::Json(json!({"name": name, "ready": true})).into_response(),
        Err(error) => error.render(&state, None),
    }
}

#[derive(Serialize)]
struct V2Output<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    data: Values<'a>,
}

#[derive(Serialize)]
struct V2Reply<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<V2Output<'a>>,
}

async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_common(state, name, None, headers, body).await
}

async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_common(state, name, Some(version), headers, body).await
}

async fn infer_common(
    state: AppState,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let protocol = Protocol::V2;
    let (
        Arrival {
            started,
            ts_ms,
            request_id,
        },
        body,
    ) = match arrive(&state, &headers, protocol, body) {
        Ok(arrived) => arrived,
        Err(response) => return response,
    };
    let (deployment, addressed) = match find(&state, &name, version.as_deref()) {
        Ok(found) => found,
        Err(error) => return error.render(&state, Some(&request_id)),
    };
    let mut request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return ApiError::bad_request(protocol, format!("Invalid JSON: {e}"))
                .render(&state, Some(&request_id));
        }
    };
    let inputs = match request.get_mut("inputs").map(Value::take) {
        Some(inputs @ Value::Array(_)) => inputs,
        _ => {
            return ApiError::bad_request(
                protocol,
                "The request needs an \"inputs\" list of tensors",
            )
            .render(&state, Some(&request_id));
        }
    };
    let wanted: Option<Vec<String>> =
        request
            .get("outputs")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|o| o.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            });
    let id = request
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let served = match &addressed {
        Some(served) => served.clone(),
        None => {
            let n = state.routed.fetch_add(1, Ordering::Relaxed);
            deployment.route(n).clone()
        }
    };
    let body = Body::V2 {
        inputs: Arc::new(inputs),
    };
    let outcome = match predict(&state, protocol, &served, &body).await {
        Ok(outcome) => outcome,
        Err(error) => return error.render(&state, Some(&request_id)),
    };
    let logged = record(&state, protocol, &outcome, &request_id, ts_ms, started);
    if addressed.is_none() {
        mirror(
            &state,
            protocol,
            &deployment,
            body,
            request_id.clone(),
            ts_ms,
        );
    }
    if let Err(error) = logged.and_then(|()| output_guard(&state, protocol, &outcome)) {
        return error.render(&state, Some(&request_id));
    }
    let rows = outcome.batch.rows;
    let mut outputs = match &outcome.predictions {
        Predictions::Classes {
            labels,
            probabilities,
            k,
        } => vec![
            V2Output {
                name: "label",
                datatype: "BYTES",
                shape: vec![rows],
                data: Values::Labels(labels),
            },
            V2Output {
                name: "probabilities",
                datatype: "FP64",
                shape: vec![rows, *k],
                data: Values::Numbers(probabilities),
            },
        ],
        Predictions::Values(values) => vec![V2Output {
            name: "value",
            datatype: "FP64",
            shape: vec![rows],
            data: Values::Numbers(values),
        }],
    };
    if let Some(wanted) = &wanted {
        outputs.retain(|o| wanted.iter().any(|w| w == o.name));
    }
    let reply = V2Reply {
        model_name: &outcome.served.log_model.name,
        model_version: &outcome.served.log_model.version,
        id: id.as_deref(),
        outputs,
    };
    with_headers(json_response(&reply), &outcome, &request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_bodies() {
        let one = parse_feedback(br#"{"request_id": "a", "label": 1}"#).unwrap();
        assert_eq!(one[0].label.as_deref(), Some("1"));
        assert_eq!(one[0].row, 0);
        let many =
            parse_feedback(br#"{"feedback": [{"request_id": "a", "row": 2, "value": 3.5}]}"#)
                .unwrap();
        assert_eq!((many[0].row, many[0].value), (2, Some(3.5)));
        assert!(
            parse_feedback(br#"{"request_id": "a"}"#)
                .unwrap_err()
                .contains("label")
        );
        assert!(
            parse_feedback(br#"{"label": "x"}"#)
                .unwrap_err()
                .contains("request_id")
        );
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_kind(&headers), Ok(false));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        assert_eq!(content_kind(&headers), Ok(true));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=latin-1"),
        );
        assert!(content_kind(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        assert!(content_kind(&headers).is_err());
    }

    #[test]
    fn canary_share_is_spread_evenly() {
        let share = 0.1;
        let hits = (0..1000u64)
            .filter(|n| (*n as f64 * 0.618_033_988_749_894_9).fract() < share)
            .count();
        assert!((95..=105).contains(&hits), "{hits}");
    }
}
