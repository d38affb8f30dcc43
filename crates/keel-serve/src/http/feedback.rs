//! `POST /feedback`: the true label (or value) of logged predictions, by
//! `request_id` (the prediction's `x-request-id`) and `row`. It goes into the
//! feedback log of the primary model's name through the same spool as the
//! predictions, and is answered once it is there.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use keel_predlog::Feedback;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::deploy::{State as AppState, now_ms};
use crate::metrics::Protocol;

pub(super) async fn feedback(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
    let name = state.deployment().primary.name.clone();
    match log.feedback(&name, now_ms(), &items).await {
        Ok(()) => axum::Json(json!({"written": items.len()})).into_response(),
        Err(refused) => ApiError::unavailable(
            protocol,
            format!("{refused}: the feedback was not written; retry later"),
        )
        .render(&state, None),
    }
}

pub(super) fn parse_feedback(body: &[u8]) -> Result<Vec<Feedback>, String> {
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
}
