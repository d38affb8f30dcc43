//! keel-loadtest: an HTTP/1.1 load generator for `keel loadtest`.
//!
//! Two shapes of load:
//! - **closed loop**: each of `connections` keep-alive connections sends its
//!   next request as soon as the previous response is in (as fast as possible);
//! - **open loop**: requests are due at a fixed arrival rate (`rps`), request
//!   `i` at `start + i / rps`, and are served by the first free connection.
//!   When every connection is busy the schedule does not wait: a request sent
//!   late has its latency measured from its due time, so a stalled server
//!   shows up in the percentiles (coordinated omission is corrected). When a
//!   connection was idle and waiting for the due time, latency runs from the
//!   actual send (so timer granularity is not billed to the server).
//!
//! Each connection is one task with its own hyper HTTP/1 connection and its
//! own HDR histogram; nothing is shared on the hot path but two atomic
//! counters. Histograms and counts are merged at the end into a [`Report`].
//!
//! Bounds: a duration, a request count, or both (the first reached ends the
//! run). A `--requests N` run counts exactly N requests after the warm-up.
//! Nothing is sent after the end of the duration; requests in flight then
//! are awaited (at most `timeout`), so a run lasts at most warm-up + duration
//! + timeout.

mod report;
mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use http::Method;
pub use report::{ErrorKinds, Report, Slo, SloCheck};
pub use target::Target;

use report::{Shape, Tally};

/// Errors found before any load is sent.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve {host:?}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error(
        "target {host:?} resolves to {addr}, which is not a loopback address; \
         pass --allow-remote to load a remote target"
    )]
    NotLoopback {
        host: String,
        addr: std::net::IpAddr,
    },
    #[error("invalid header {header:?}: {reason}")]
    Header { header: String, reason: String },
    #[error("invalid --{option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Closed loop (as fast as possible) or open loop (fixed arrival rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Closed,
    Open { rps: f64 },
}

/// What to send, how hard, and for how long.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub method: Method,
    /// Extra headers as `(name, value)`; they override the defaults.
    pub headers: Vec<(String, String)>,
    /// `Content-Type` of the body (sent only with a non-empty body, unless
    /// given in `headers`).
    pub content_type: Option<String>,
    pub body: Bytes,
    pub load: Load,
    pub connections: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Requests started during the warm-up are sent but not counted.
    pub warmup: Duration,
    /// Per request: connect (when needed), send, and read the whole response.
    pub timeout: Duration,
    /// Allow a non-loopback target.
    pub allow_remote: bool,
}

impl Config {
    /// A closed-loop GET of `url` on 16 connections for 10 s.
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            method: Method::GET,
            headers: Vec::new(),
            content_type: None,
            body: Bytes::new(),
            load: Load::Closed,
            connections: 16,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            allow_remote: false,
        }
    }

    fn check(&self) -> Result<(), LoadtestError> {
        let option = |option, reason: &str| {
            Err(LoadtestError::Option {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.connections == 0 {
            return option("connections", "must be at least 1");
        }
        if self.duration.is_none() && self.requests.is_none() {
            return option("duration", "give --duration, --requests or both");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return option("duration", "must be more than 0");
        }
        if self.requests == Some(0) {
            return option("requests", "must be at least 1");
        }
        if self.timeout.is_zero() {
            return option("timeout", "must be more than 0");
        }
        if let Load::Open { rps } = self.load
            && !(rps.is_finite() && rps > 0.0)
        {
            return option("rps", "must be a positive number");
        }
        Ok(())
    }

    fn header_map(&self, target: &Target) -> Result<HeaderMap, LoadtestError> {
        let invalid = |header: &str, reason: String| LoadtestError::Header {
            header: header.to_owned(),
            reason,
        };
        let mut headers = HeaderMap::new();
        let host =
            HeaderValue::from_str(&target.authority).map_err(|e| invalid("Host", e.to_string()))?;
        headers.insert(HOST, host);
        headers.insert(USER_AGENT, HeaderValue::from_static("keel-loadtest"));
        if let Some(content_type) = &self.content_type {
            let value = HeaderValue::from_str(content_type)
                .map_err(|e| invalid("Content-Type", e.to_string()))?;
            headers.insert(CONTENT_TYPE, value);
        }
        for (name, value) in &self.headers {
            let name_ = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| invalid(name, e.to_string()))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|e| invalid(name, e.to_string()))?;
            headers.insert(name_, value);
        }
        Ok(headers)
    }
}

/// Live counters for a progress display; updated by the workers as measured
/// requests finish.
#[derive(Debug, Default)]
pub struct Progress {
    completed: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    /// Measured requests finished so far (successes and failures).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Measured requests that failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Resolves the target (enforcing the loopback rule), runs the load and
/// returns the report. SLOs are applied by the caller ([`Report::apply_slo`]).
pub async fn run(config: &Config, progress: Arc<Progress>) -> Result<Report, LoadtestError> {
    config.check()?;
    let target = Target::resolve(&config.url, config.allow_remote).await?;
    let headers = config.header_map(&target)?;

    // Open every connection before the clock starts; a failure here is
    // retried (and counted) by the worker's first request.
    let connecting: Vec<_> = (0..config.connections)
        .map(|_| tokio::spawn(tokio::time::timeout(config.timeout, connect(target.addr))))
        .collect();
    let mut connections = Vec::with_capacity(connecting.len());
    for handle in connecting {
        let connection = handle
            .await
            .map_err(|e| LoadtestError::Internal(format!("connect task: {e}")))?;
        connections.push(connection.ok().and_then(Result::ok));
    }

    let start = Instant::now();
    let measure_start = start + config.warmup;
    let plan = Arc::new(Plan {
        addr: target.addr,
        method: config.method.clone(),
        path_and_query: target.path_and_query.clone(),
        headers,
        body: config.body.clone(),
        interval_ns: match config.load {
            // At least 1 ns, so the schedule always advances.
            Load::Open { rps } => Some(((1e9 / rps).round() as u64).max(1)),
            Load::Closed => None,
        },
        start,
        measure_start,
        end: config.duration.map(|d| measure_start + d),
        requests: config.requests,
        timeout: config.timeout,
        next_index: AtomicU64::new(0),
        claimed: AtomicU64::new(0),
        progress,
    });

    let mut workers = tokio::task::JoinSet::new();
    for connection in connections {
        let plan = Arc::clone(&plan);
        let histogram = new_histogram()?;
        workers.spawn(async move { plan.work(connection, histogram).await });
    }
    let mut tally = Tally {
        histogram: new_histogram()?,
        status_codes: BTreeMap::new(),
        error_kinds: ErrorKinds::default(),
        bytes_sent: 0,
        bytes_received: 0,
    };
    let mut last_done = measure_start;
    while let Some(joined) = workers.join_next().await {
        let worker = joined.map_err(|e| LoadtestError::Internal(format!("worker: {e}")))?;
        tally
            .histogram
            .add(&worker.histogram)
            .map_err(|e| LoadtestError::Internal(format!("histogram: {e}")))?;
        for (code, n) in worker.status_codes {
            *tally.status_codes.entry(code).or_default() += n;
        }
        tally.error_kinds.add(&worker.error_kinds);
        tally.bytes_sent += worker.bytes_sent;
        tally.bytes_received += worker.bytes_received;
        last_done = last_done.max(worker.last_done);
    }
    tally.error_kinds.unsent = plan.unsent();

    Ok(Report::new(
        Shape {
            url: config.url.clone(),
            method: config.method.to_string(),
            target_rps: match config.load {
                Load::Open { rps } => Some(rps),
                Load::Closed => None,
            },
            connections: config.connections,
            duration_s: (last_done - measure_start).as_secs_f64(),
        },
        tally,
    ))
}

fn new_histogram() -> Result<Histogram<u64>, LoadtestError> {
    // Microseconds, 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| LoadtestError::Internal(format!("histogram: {e}")))
}

type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection; its I/O runs on its own task.
async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Errors surface on the sender side as failed requests.
        let _ = connection.await;
    });
    Ok(sender)
}

/// The shared, read-mostly description of the run plus the two counters
/// the workers coordinate through.
struct Plan {
    addr: std::net::SocketAddr,
    method: Method,
    path_and_query: http::Uri,
    headers: HeaderMap,
    body: Bytes,
    /// Open loop: nanoseconds between due times (request `i` is due at
    /// `start + i * interval_ns`, in integers so counts are exact).
    interval_ns: Option<u64>,
    start: Instant,
    measure_start: Instant,
    end: Option<Instant>,
    requests: Option<u64>,
    timeout: Duration,
    /// Open loop: index of the next due request.
    next_index: AtomicU64,
    /// Measured requests claimed so far (for the `requests` bound).
    claimed: AtomicU64,
    progress: Arc<Progress>,
}

/// What one worker measured.
struct WorkerTally {
    histogram: Histogram<u64>,
    status_codes: BTreeMap<u16, u64>,
    error_kinds: ErrorKinds,
    bytes_sent: u64,
    bytes_received: u64,
    last_done: Instant,
}

enum Failure {
    Connect,
    Io,
    Timeout,
}

impl Plan {
    /// One connection's loop: take the next request, wait for its due time
    /// (open loop), send it, record the outcome.
    async fn work(&self, mut connection: Option<Sender>, histogram: Histogram<u64>) -> WorkerTally {
        let mut tally = WorkerTally {
            histogram,
            status_codes: BTreeMap::new(),
            error_kinds: ErrorKinds::default(),
            bytes_sent: 0,
            bytes_received: 0,
            last_done: self.measure_start,
        };
        loop {
            let free_at = Instant::now();
            let due = self.interval_ns.map(|interval| {
                let index = self.next_index.fetch_add(1, Ordering::Relaxed);
                self.start + Duration::from_nanos(interval.saturating_mul(index))
            });
            let nominal = due.unwrap_or(free_at);
            if self.end.is_some_and(|end| nominal >= end || free_at >= end) {
                break;
            }
            let measured = nominal >= self.measure_start;
            if measured {
                let slot = self.claimed.fetch_add(1, Ordering::Relaxed);
                if self.requests.is_some_and(|limit| slot >= limit) {
                    break;
                }
            }
            if let Some(due) = due
                && due > free_at
            {
                tokio::time::sleep_until(due).await;
            }
            let sent = Instant::now();
            // Behind schedule: bill the wait to the server (coordinated
            // omission); otherwise measure from the actual send.
            let origin = match due {
                Some(due) if due <= free_at => due,
                _ => sent,
            };
            let outcome = tokio::time::timeout(self.timeout, self.exchange(&mut connection)).await;
            let done = Instant::now();
            let outcome = outcome.unwrap_or(Err(Failure::Timeout));
            if matches!(outcome, Err(Failure::Io | Failure::Timeout)) {
                // The connection's state is unknown: start a fresh one.
                connection = None;
            }
            if matches!(outcome, Err(Failure::Connect)) && self.interval_ns.is_none() {
                // Closed loop against a target that refuses connections:
                // do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !measured {
                continue;
            }
            tally.last_done = tally.last_done.max(done);
            let failed = match outcome {
                Ok((status, received)) => {
                    let micros = (done - origin).as_micros().min(u128::from(u64::MAX)) as u64;
                    tally.histogram.saturating_record(micros.max(1));
                    *tally.status_codes.entry(status).or_default() += 1;
                    tally.bytes_sent += self.body.len() as u64;
                    tally.bytes_received += received;
                    let kinds = &mut tally.error_kinds;
                    match status / 100 {
                        2 => false,
                        1 => {
                            kinds.http_1xx += 1;
                            true
                        }
                        3 => {
                            kinds.http_3xx += 1;
                            true
                        }
                        4 => {
                            kinds.http_4xx += 1;
                            true
                        }
                        _ => {
                            kinds.http_5xx += 1;
                            true
                        }
                    }
                }
                Err(Failure::Connect) => {
                    tally.error_kinds.connect += 1;
                    true
                }
                Err(Failure::Io) => {
                    tally.error_kinds.io += 1;
                    true
                }
                Err(Failure::Timeout) => {
                    tally.error_kinds.timeout += 1;
                    true
                }
            };
            self.progress.completed.fetch_add(1, Ordering::Relaxed);
            if failed {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        tally
    }

    /// One request and its whole response body. Returns the status and the
    /// body bytes received.
    async fn exchange(&self, connection: &mut Option<Sender>) -> Result<(u16, u64), Failure> {
        if connection.as_ref().is_none_or(Sender::is_closed) {
            *connection = Some(connect(self.addr).await.map_err(|_| Failure::Connect)?);
        }
        let Some(sender) = connection.as_mut() else {
            return Err(Failure::Connect);
        };
        if sender.ready().await.is_err() {
            // The server closed the idle keep-alive connection: reconnect once.
            *connection = None;
            let fresh = connection.insert(connect(self.addr).await.map_err(|_| Failure::Connect)?);
            fresh.ready().await.map_err(|_| Failure::Io)?;
        }
        let Some(sender) = connection.as_mut() else {
            return Err(Failure::Connect);
        };
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path_and_query.clone();
        *request.headers_mut() = self.headers.clone();
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Io)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Failure::Io)?;
            if let Some(data) = frame.data_ref() {
                received += data.len() as u64;
            }
        }
        Ok((status, received))
    }

    /// Open loop: measured requests that were due before the end but never
    /// sent (every connection was still busy when the duration ran out).
    fn unsent(&self) -> u64 {
        let (Some(interval), Some(end)) = (self.interval_ns, self.end) else {
            return 0;
        };
        // Number of indices i with start + i * interval < t.
        let due_before = |t: Instant| -> u64 {
            let span = (t - self.start).as_nanos();
            span.div_ceil(u128::from(interval))
                .try_into()
                .unwrap_or(u64::MAX)
        };
        let mut scheduled = due_before(end) - due_before(self.measure_start);
        let mut sent = self.claimed.load(Ordering::Relaxed);
        if let Some(limit) = self.requests {
            scheduled = scheduled.min(limit);
            sent = sent.min(limit);
        }
        scheduled.saturating_sub(sent)
    }
}
