//! The in-flight body budget: routes that read their whole body into memory
//! take it through [`buffer_body`], which holds a share of one global budget
//! for as long as the request is being answered.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Envelope;
use crate::conn::{BodyTimedOut, humanize};

/// The budget is counted in KiB, so a semaphore's permit count covers terabytes.
const UNIT: usize = 1024;

/// What a body without a `Content-Length` reserves before its first byte.
const FIRST_RESERVATION: usize = 64 * 1024;

/// Why [`buffer_body`] answered instead of the route: in the extensions of
/// its response, so a server can count refusals in its own metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The body is larger than the route takes (413).
    TooLarge,
    /// The body budget is spent (503).
    Busy,
    /// The body did not arrive within the body timeout (408).
    TimedOut,
    /// The body could not be read (400).
    Unreadable,
}

fn refused(mut response: Response, why: Refusal) -> Response {
    response.extensions_mut().insert(why);
    response
}

/// One server's budget of request-body bytes held in memory at once.
#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: usize,
    timeout: Duration,
    envelope: Envelope,
    /// `false` with [`crate::Limits::off`]: bodies are read whole with no
    /// budget and no timeout (only the route's maximum applies).
    enforced: bool,
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget")
            .field("total", &self.total)
            .field("available_bytes", &self.available_bytes())
            .finish()
    }
}

impl BodyBudget {
    /// A budget of `limits.body_budget_bytes`, whole bodies within `limits.body_timeout`.
    pub fn new(limits: &crate::Limits, envelope: Envelope) -> Self {
        let units = units(limits.body_budget_bytes).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(units)),
            total: units * UNIT,
            timeout: limits.body_timeout,
            envelope,
            enforced: limits.enforced,
        }
    }

    /// Bytes not reserved by a request right now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * UNIT
    }

    fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(units(bytes)).ok()?;
        self.permits.clone().try_acquire_many_owned(units).ok()
    }

    fn busy(&self) -> Response {
        let mut response = self.envelope.render(
            StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            &format!(
                "The server is holding as many request bodies as it may ({} MiB in all); retry later",
                self.total / (1024 * 1024)
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// How long a refused body is read and thrown away, at most (and so, at
/// the rate the client sends, how many bytes).
pub(crate) const LINGER: Duration = Duration::from_secs(10);

/// Reads a refused body and throws it away (for at most [`LINGER`], and no
/// longer than the body timeout allows between chunks), so a client still
/// sending it reads the refusal instead of a connection reset. Costs
/// bandwidth, not memory; the connection stays counted against the cap.
/// The connection's clock counts the request as in hand until the body has
/// ended, so its bytes are never measured as the next request's head; a
/// body given up here (past [`LINGER`], stalled) ends the connection after
/// the response, as hyper closes a connection whose body was not read.
fn drain(body: Body) {
    tokio::spawn(async move {
        let mut body = body;
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum Failure {
    TooLarge,
    Busy,
    Read(axum::Error),
}

/// Middleware for a route that reads its whole body (at most `max` bytes):
/// `axum::middleware::from_fn_with_state((budget, max), buffer_body)`. The
/// body is read here, within the budget and the body timeout, and handed on
/// whole; its share of the budget is held until the response is produced.
pub async fn buffer_body(
    State((budget, max)): State<(BodyBudget, usize)>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().size_hint().exact() == Some(0) {
        // No body (a GET, a long poll): nothing to hold.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let declared = content_length(&parts.headers);
    let too_large = |size: Option<usize>| {
        let what = match size {
            Some(size) => format!("The request body is {size} bytes"),
            None => "The request body is too large".to_string(),
        };
        budget.envelope.render(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RESOURCE_EXHAUSTED",
            &format!("{what}; this endpoint takes at most {max} bytes"),
        )
    };
    if declared.is_some_and(|size| size > max) {
        drain(body);
        return refused(too_large(declared), Refusal::TooLarge);
    }
    if !budget.enforced {
        return match axum::body::to_bytes(body, max).await {
            Ok(bytes) => {
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
            Err(_) => refused(too_large(None), Refusal::TooLarge),
        };
    }
    let Some(mut permit) = budget.reserve(declared.unwrap_or(FIRST_RESERVATION.min(max)).max(1))
    else {
        drain(body);
        return refused(budget.busy(), Refusal::Busy);
    };
    let mut reserved = permit.num_permits() * UNIT;
    let mut body = body;
    let collect = async {
        let mut buffer = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(Failure::Read)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let size = buffer.len() + data.len();
            if size > max {
                return Err(Failure::TooLarge);
            }
            if size > reserved {
                let more = budget
                    .reserve((size - reserved).max(FIRST_RESERVATION))
                    .ok_or(Failure::Busy)?;
                permit.merge(more);
                reserved = permit.num_permits() * UNIT;
            }
            buffer.extend_from_slice(&data);
        }
        Ok(buffer)
    };
    let timeout = |what: &str| {
        budget.envelope.render(
            StatusCode::REQUEST_TIMEOUT,
            "DEADLINE_EXCEEDED",
            &format!("{what} (the body timeout is {})", humanize(budget.timeout)),
        )
    };
    // A body that has arrived whole by now (most API calls: it came with its
    // head) is read without arming the body timeout's timer.
    let collected = {
        let mut collect = std::pin::pin!(collect);
        let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => tokio::time::timeout(budget.timeout, collect).await,
        }
    };
    let buffer = match collected {
        Ok(Ok(buffer)) => buffer,
        Err(_) => {
            return refused(
                timeout("The request body did not arrive in time"),
                Refusal::TimedOut,
            );
        }
        // A body without a `Content-Length` (chunked) outgrew the route or
        // the budget while its client is still sending: drained as above.
        Ok(Err(Failure::TooLarge)) => {
            drain(body);
            return refused(too_large(None), Refusal::TooLarge);
        }
        Ok(Err(Failure::Busy)) => {
            drain(body);
            return refused(budget.busy(), Refusal::Busy);
        }
        Ok(Err(Failure::Read(error))) => {
            let inner = error.into_inner();
            if inner.downcast_ref::<BodyTimedOut>().is_some() {
                return refused(timeout("The request body stalled"), Refusal::TimedOut);
            }
            let response = budget.envelope.render(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("Could not read the request body: {inner}"),
            );
            return refused(response, Refusal::Unreadable);
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(buffer)))
        .await;
    drop(permit);
    response
}
