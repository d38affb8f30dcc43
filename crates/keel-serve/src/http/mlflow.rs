//! MLflow's scoring protocol: `POST /invocations` (JSON `dataframe_split`,
//! `dataframe_records`, `instances`, `inputs`, or CSV), `GET /ping`,
//! `GET /version`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use keel_engine::{LabelType, Predictions};
use serde::Serialize;

use super::error::ApiError;
use super::predict::{Arrival, Body, Target, answer};
use super::{json_response, with_headers};
use crate::deploy::State as AppState;
use crate::metrics::{ErrorKind, Protocol};

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

pub(super) async fn invocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let protocol = Protocol::Mlflow;
    let (arrival, body) = match Arrival::take(&state, &headers, protocol, body) {
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
            .render(&state, Some(&arrival.request_id));
        }
    };
    let body = Body::Mlflow { bytes: body, csv };
    let target = Target::Routed(state.deployment());
    let outcome = match answer(&state, protocol, target, body, &arrival).await {
        Ok(outcome) => outcome,
        Err(error) => return error.render(&state, Some(&arrival.request_id)),
    };
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
    with_headers(json_response(&reply), &outcome, &arrival.request_id)
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

pub(super) async fn ping() -> &'static str {
    "\n"
}

pub(super) async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
}
