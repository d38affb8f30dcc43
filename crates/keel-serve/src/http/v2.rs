//! The Open Inference Protocol (KServe V2) REST API: health, server and
//! model metadata, and `POST /v2/models/{name}[/versions/{version}]/infer`
//! with tensors in and `label`/`probabilities` or `value` out. A request that
//! names a version is answered by that loaded model (no canary routing, no
//! mirror); otherwise it is routed like `/invocations`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_engine::{InputKind, Predictions};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::predict::{Arrival, Body, Target, answer};
use super::{Values, json_response, with_headers};
use crate::deploy::{self, Deployment, Served, State as AppState};
use crate::metrics::{ErrorKind, Protocol};

pub(super) async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

pub(super) async fn ready() -> Response {
    axum::Json(json!({"ready": true})).into_response()
}

pub(super) async fn server_metadata() -> Response {
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
    if deployment.primary.name != name {
        return Err(not_served(format!(
            "Model {name:?} is not served here (this server serves {:?})",
            deployment.primary.name
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
        .map(|s| s.version.as_str())
        .collect();
    let mut value = json!({
        "name": served.name,
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

pub(super) async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    match find(&state, &name, None) {
        Ok((deployment, _)) => {
            axum::Json(metadata(&deployment, &deployment.primary)).into_response()
        }
        Err(error) => error.render(&state, None),
    }
}

pub(super) async fn model_version_metadata(
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

pub(super) async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    match find(&state, &name, None) {
        Ok(_) => axum::Json(json!({"name": name, "ready": true})).into_response(),
        Err(error) => error.render(&state, None),
    }
}

pub(super) async fn model_version_ready(
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

pub(super) async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_common(state, name, None, headers, body).await
}

pub(super) async fn infer_version(
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
    let (arrival, body) = match Arrival::take(&state, &headers, protocol, body) {
        Ok(arrived) => arrived,
        Err(response) => return response,
    };
    let request_id = &arrival.request_id;
    let (deployment, addressed) = match find(&state, &name, version.as_deref()) {
        Ok(found) => found,
        Err(error) => return error.render(&state, Some(request_id)),
    };
    let mut request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return ApiError::bad_request(protocol, format!("Invalid JSON: {e}"))
                .render(&state, Some(request_id));
        }
    };
    let inputs = match request.get_mut("inputs").map(Value::take) {
        Some(inputs @ Value::Array(_)) => inputs,
        _ => {
            return ApiError::bad_request(
                protocol,
                "The request needs an \"inputs\" list of tensors",
            )
            .render(&state, Some(request_id));
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
    let target = match addressed {
        Some(served) => Target::Addressed(served),
        None => Target::Routed(deployment),
    };
    let body = Body::V2 {
        inputs: Arc::new(inputs),
    };
    let outcome = match answer(&state, protocol, target, body, &arrival).await {
        Ok(outcome) => outcome,
        Err(error) => return error.render(&state, Some(request_id)),
    };
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
        model_name: &outcome.served.name,
        model_version: &outcome.served.version,
        id: id.as_deref(),
        outputs,
    };
    with_headers(json_response(&reply), &outcome, request_id)
}
