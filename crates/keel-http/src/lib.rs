//! keel-http: the one HTTP/1 serve loop of `keel server` and `keel serve`,
//! and the bounds on what a client can make them hold.
//!
//! - [`serve`]: an accept loop over hyper's HTTP/1 connection with a
//!   connection cap (a semaphore: beyond it new connections wait in the
//!   kernel's backlog), a header-read timeout (the head of a request must
//!   arrive within it once its first byte has), an idle keep-alive timeout (a
//!   connection waiting for its next request is closed after it), and a body
//!   timeout (each chunk of a request body must arrive within it, and a
//!   response must keep being read: no write progress for as long closes
//!   the connection); a connection that breaks one is closed. Graceful shutdown finishes the
//!   requests in flight and closes idle connections.
//! - [`buffer_body`] (a middleware on routes that read their whole body into
//!   memory): the body's size against the route's maximum (413; the rest of
//!   a refused body is drained for at most 10 s, and its connection serves
//!   no next request before that body has ended), the whole
//!   body within the body timeout (408), and a global in-flight body budget
//!   shared by every such route (503 + `Retry-After` beyond it), so memory
//!   held by request bodies is bounded whatever clients send.
//! - [`envelope`]: a request id for every request (the client's
//!   `x-request-id` when sane), returned in the response's `x-request-id`
//!   and readable by handlers through [`current_request_id`]; URIs over
//!   [`MAX_URI_BYTES`] and `%00` refused; every error response that is not
//!   already JSON or HTML (axum's rejections, 405, 413, ...) rewritten into
//!   the server's JSON error envelope.
//! - [`is_loopback`] and [`bearer_matches`]: which hosts are loopback (a
//!   non-loopback bind needs authentication) and a bearer token compared in
//!   constant time, decided once for both servers.

mod access;
mod body;
mod conn;
mod envelope;

use std::time::Duration;

pub use access::{bearer_matches, is_loopback, token_matches};
pub use body::{BodyBudget, Refusal, buffer_body};
pub use conn::serve;
pub use envelope::{
    Envelope, MAX_URI_BYTES, RequestId, client_request_id, current_request_id, envelope,
};
pub use tokio_rustls::TlsAcceptor;

/// The bounds of one server. Every field is a flag of `keel server` and `keel serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The head of a request must arrive within this once its first byte has.
    pub header_timeout: Duration,
    /// A buffered body must arrive whole within this; a streamed body's next
    /// chunk must arrive within this; a response the client stops reading
    /// (no write progress) for this long closes the connection.
    pub body_timeout: Duration,
    /// A keep-alive connection waiting for its next request is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Bytes of request bodies held in memory at once by all buffering routes
    /// together; a request that would exceed it gets 503 + `Retry-After`.
    pub body_budget_bytes: usize,
    /// `false` only to measure what the bounds cost ([`Limits::off`]).
    pub enforced: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 512,
            body_budget_bytes: 128 * 1024 * 1024,
            enforced: true,
        }
    }
}

impl Limits {
    /// No bounds at all: connections served by hyper alone (no header, idle
    /// or body clock), bodies read without the budget (a route's own maximum
    /// still applies). What a benchmark compares the defaults against, to
    /// measure their cost; [`serve`] accepts it on a loopback address only.
    pub fn off() -> Self {
        let far = Duration::from_secs(24 * 3600);
        Limits {
            header_timeout: far,
            body_timeout: far,
            idle_timeout: far,
            max_connections: 1 << 20,
            body_budget_bytes: 1 << 40,
            enforced: false,
        }
    }
}
