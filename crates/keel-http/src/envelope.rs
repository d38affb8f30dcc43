//! Request ids, URI checks, and the JSON error envelope on every error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// The longest request target (path and query) answered; longer is 414.
pub const MAX_URI_BYTES: usize = 32 * 1024;

/// The longest error text of a non-JSON error response carried into the envelope.
const MAX_MESSAGE_BYTES: usize = 4096;

/// How a server spells its errors: MLflow's `{"error_code", "message"}`,
/// with `"error"` too when the server also speaks the Open Inference Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Repeat the message under `"error"` (the Open Inference Protocol's field).
    pub with_error_field: bool,
}

impl Envelope {
    /// MLflow's envelope only.
    pub const MLFLOW: Envelope = Envelope {
        with_error_field: false,
    };

    /// An error response in this envelope.
    pub fn render(&self, status: StatusCode, code: &str, message: &str) -> Response {
        let mut body = serde_json::json!({"error_code": code, "message": message});
        if self.with_error_field {
            body["error"] = serde_json::Value::from(message);
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The MLflow error code of an HTTP status nothing more specific was given for.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 | 405 => "ENDPOINT_NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        413 | 414 | 431 => "RESOURCE_EXHAUSTED",
        429 => "REQUEST_LIMIT_EXCEEDED",
        503 => "TEMPORARILY_UNAVAILABLE",
        400..=499 => "BAD_REQUEST",
        _ => "INTERNAL_ERROR",
    }
}

/// The id of a request, in its extensions and its response's `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// The id of the request this task is answering, inside [`envelope`].
pub fn current_request_id() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// The client's `x-request-id` when it is a sane token (1–128 of
/// `[A-Za-z0-9-_.:]`), so it can be logged and echoed safely.
pub fn client_request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|given| {
            !given.is_empty()
                && given.len() <= 128
                && given
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
}

fn new_request_id() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std's per-process random hash keys: 64 random bits without a dependency.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        format!("{:016x}", hasher.finish())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{prefix}-{n:x}"))
}

/// Middleware around a whole application:
/// `axum::middleware::from_fn_with_state(Envelope::MLFLOW, envelope)`.
pub async fn envelope(
    State(envelope): State<Envelope>,
    mut request: Request,
    next: Next,
) -> Response {
    let id: Arc<str> = client_request_id(request.headers())
        .map(Arc::from)
        .unwrap_or_else(new_request_id);
    let uri = request.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let mut response = if target_len > MAX_URI_BYTES {
        envelope.render(
            StatusCode::URI_TOO_LONG,
            code_for(StatusCode::URI_TOO_LONG),
            &format!(
                "The request target is {target_len} bytes; at most {MAX_URI_BYTES} are accepted \
                 (send long parameters in a POST body)"
            ),
        )
    } else if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str().contains("%00"))
    {
        envelope.render(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "NUL characters (%00) are not allowed in paths or parameters",
        )
    } else {
        let what = format!("{} {}", request.method(), request.uri().path());
        request.extensions_mut().insert(RequestId(id.clone()));
        let response = CURRENT.scope(id.clone(), next.run(request)).await;
        into_envelope(envelope, response, &what).await
    };
    if !response.headers().contains_key("x-request-id")
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// An error response that is not JSON or HTML (axum's plain-text
/// rejections, an empty 405) in the envelope, its text as the message.
async fn into_envelope(envelope: Envelope, response: Response, what: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_MESSAGE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let message = match (text.is_empty(), status) {
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            format!("{what}: method not allowed on this endpoint")
        }
        (true, _) => format!(
            "{what}: {}",
            status.canonical_reason().unwrap_or("request failed")
        ),
        (false, _) => text,
    };
    let mut rewritten = envelope.render(status, code_for(status), &message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name.clone(), value.clone());
        }
    }
    rewritten
}
