//! The accept loop and one connection's clock (header, idle and body
//! timeouts, and a write timeout: a client that stops reading its response
//! for the body timeout is disconnected, so it cannot hold a connection slot
//! and the response's buffers forever).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Limits;
use crate::body::LINGER;

/// The largest request head hyper buffers (request line and headers).
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// The longest request head keel reads: below hyper's buffer, so a longer
/// head gets keel's 431 in the JSON envelope instead of hyper's bare one.
pub(crate) const MAX_GUARDED_HEAD_BYTES: usize = 192 * 1024;

/// The longest request line (method, target, version) keel reads: below
/// hyper's 64 KiB target limit (a bare 414); targets over 32 KiB already get
/// the envelope middleware's 414.
pub(crate) const MAX_REQUEST_LINE_BYTES: usize = 48 * 1024;

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then
/// stops accepting, lets requests in flight finish, closes idle connections
/// and returns once every connection is closed.
/// With `tls`, each connection's handshake runs in its own task within the
/// header timeout (and holds a connection slot), so a silent client cannot
/// hold up the accept loop. Handlers find the peer's address in the request
/// extensions as axum's `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if !limits.enforced && !listener.local_addr()?.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "serving without HTTP limits is for measuring their cost, on a loopback address only",
        ));
    }
    let max_connections = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stopped = stopped.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None if !limits.enforced => unbounded(stream, peer, app, stopped).await,
                None => connection(stream, peer, app, limits, stopped).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection(stream, peer, app, limits, stopped).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it is closed.
    let _all = slots.acquire_many(max_connections as u32).await;
    Ok(())
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
        head: HeadScan::default(),
        refusal: None,
    });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            // A request with a body is in hand until that body has ended too:
            // until then what arrives is body, never a new head.
            let reading = !request.body().is_end_stream();
            clock.begin(reading);
            let body_clock = reading.then(|| clock.clone());
            let mut request = request
                .map(|body| Body::new(ChunkDeadline::new(body, limits.body_timeout, body_clock)));
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = app.clone().oneshot(request);
            let clock = clock.clone();
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| EndOfResponse { body, clock }),
                )
            }
        })
    };
    // No hyper timer: its head timer would cost every request a timer
    // registration; the clock below enforces the idle and head timeouts.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true).max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    // One timer per connection, re-armed only when it fires: requests never
    // touch it (see `Clock::next_check`), so the bounds cost a request a few
    // uncontended lock operations, not a timer registration or a wake-up.
    let check = tokio::time::sleep_until(clock.next_check(&limits));
    tokio::pin!(check);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            () = check.as_mut() => {
                if let Some(why) = clock.expired(&limits) {
                    tracing::debug!(why, "closing connection");
                    return;
                }
                check.as_mut().reset(clock.next_check(&limits));
            }
            changed = stopped.changed(), if !draining => {
                if changed.is_err() || *stopped.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection served by hyper alone: no clock, no body deadline
/// ([`Limits::off`]), to measure what [`connection`]'s bounds cost.
async fn unbounded<S>(stream: S, peer: SocketAddr, app: Router, mut stopped: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            changed = stopped.changed(), if !draining => {
                if changed.is_err() || *stopped.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Where a connection is in its request cycle, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle(Instant),
    /// The first bytes of a request head have arrived.
    Head(Instant),
    /// Requests in hand: `answering` responses not yet written (at least
    /// one), `reading` of their bodies not yet ended (each chunk has the
    /// body timeout).
    Busy { answering: usize, reading: usize },
    /// Every response is written but `reading` request bodies have not
    /// ended (a refused body being drained, see `body::drain`): what
    /// arrives is still body, not a new head. Since `since`, the last
    /// response's end; the bodies must end within [`LINGER`] of it.
    Draining { reading: usize, since: Instant },
}

/// The phase, and whether the next head is measured.
#[derive(Debug)]
struct Cycle {
    phase: Phase,
    /// False after a request body was given up before its end, until hyper
    /// parses the next head: hyper reads at most one more chunk of that body
    /// and closes the connection unless the chunk ended it, so bytes that
    /// arrive meanwhile may be body and are not measured as a head (hyper's
    /// own head limits still apply).
    scan: bool,
}

struct Clock {
    cycle: Mutex<Cycle>,
    /// When the clock started: the origin of `write_blocked`.
    born: Instant,
    /// Nanoseconds after `born` when a write to the client started waiting
    /// for it to read (0: no write is waiting). An atomic, not the mutex:
    /// it is touched on every write.
    write_blocked: AtomicU64,
}

impl Clock {
    /// A new connection: its first request head must arrive within the header timeout.
    fn new() -> Self {
        let now = Instant::now();
        Clock {
            cycle: Mutex::new(Cycle {
                phase: Phase::Head(now),
                scan: true,
            }),
            born: now,
            write_blocked: AtomicU64::new(0),
        }
    }

    /// A write found the client's receive window full (it is not reading).
    fn write_blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            let since = (Instant::now() - self.born).as_nanos().max(1);
            self.write_blocked
                .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// A write went through: the client reads.
    fn write_progressed(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    /// Since when a write has been waiting for the client, if one is.
    fn write_blocked_since(&self) -> Option<Instant> {
        match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.born + Duration::from_nanos(nanos)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Cycle) -> R) -> R {
        let mut cycle = self
            .cycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut cycle)
    }

    /// Bytes arrived from the client; true when they start a new request
    /// head that is to be measured.
    fn bytes(&self) -> bool {
        self.with(|cycle| match cycle.phase {
            Phase::Idle(_) => {
                cycle.phase = Phase::Head(Instant::now());
                cycle.scan
            }
            _ => false,
        })
    }

    /// A request head was parsed; `with_body`: a body follows it.
    fn begin(&self, with_body: bool) {
        let body = usize::from(with_body);
        self.with(|cycle| {
            cycle.scan = true;
            cycle.phase = match cycle.phase {
                Phase::Busy { answering, reading } => Phase::Busy {
                    answering: answering + 1,
                    reading: reading + body,
                },
                Phase::Draining { reading, .. } => Phase::Busy {
                    answering: 1,
                    reading: reading + body,
                },
                Phase::Idle(_) | Phase::Head(_) => Phase::Busy {
                    answering: 1,
                    reading: body,
                },
            }
        });
    }

    /// A response was written (or abandoned).
    fn end(&self) {
        self.with(|cycle| {
            cycle.phase = match cycle.phase {
                Phase::Busy { answering, reading } if answering > 1 => Phase::Busy {
                    answering: answering - 1,
                    reading,
                },
                Phase::Busy { reading, .. } if reading > 0 => Phase::Draining {
                    reading,
                    since: Instant::now(),
                },
                draining @ Phase::Draining { .. } => draining,
                _ => Phase::Idle(Instant::now()),
            }
        });
    }

    /// A request body is done with: `ended`, read to its end; else given up
    /// before it (dropped unread, stalled, drained for too long).
    fn body_done(&self, ended: bool) {
        self.with(|cycle| {
            if !ended {
                cycle.scan = false;
            }
            cycle.phase = match cycle.phase {
                Phase::Busy { answering, reading } => Phase::Busy {
                    answering,
                    reading: reading.saturating_sub(1),
                },
                Phase::Draining { reading, since } if reading > 1 => Phase::Draining {
                    reading: reading - 1,
                    since,
                },
                Phase::Draining { .. } => Phase::Idle(Instant::now()),
                other => other,
            }
        });
    }

    /// When the watchdog looks next: the phase's own deadline when it is
    /// sooner, and in any case within the shorter of the header and body
    /// timeouts. The clock changes phase without waking the watchdog, so a
    /// head that starts arriving or a write that starts waiting between two
    /// looks is seen at the next look, which comes before its own deadline
    /// (the look before it came less than that timeout earlier); from then
    /// on its deadline is exact. (A body still draining after its response
    /// is seen at the next look too, so it may outlast [`LINGER`] by up to
    /// one look's interval: a backstop, as `body::drain` gives up first.)
    fn next_check(&self, limits: &Limits) -> Instant {
        let soon = Instant::now() + limits.header_timeout.min(limits.body_timeout);
        let phase = self.with(|cycle| match cycle.phase {
            Phase::Idle(since) => since + limits.idle_timeout,
            Phase::Head(since) => since + limits.header_timeout,
            Phase::Busy { .. } => soon,
            Phase::Draining { since, .. } => since + LINGER,
        });
        let write = self
            .write_blocked_since()
            .map_or(soon, |since| since + limits.body_timeout);
        phase.min(write).min(soon)
    }

    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = Instant::now();
        if self
            .write_blocked_since()
            .is_some_and(|since| now >= since + limits.body_timeout)
        {
            return Some("write timeout: the client does not read its response");
        }
        self.with(|cycle| match cycle.phase {
            Phase::Idle(since) if now >= since + limits.idle_timeout => Some("idle timeout"),
            Phase::Head(since) if now >= since + limits.header_timeout => {
                Some("header read timeout")
            }
            Phase::Draining { since, .. } if now >= since + LINGER => {
                Some("a request body still arriving long after its response")
            }
            _ => None,
        })
    }
}

/// The client's socket, telling the clock when bytes arrive and measuring
/// request heads as they come in.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
    head: HeadScan,
    /// A head too long for hyper: keel's answer, being written.
    refusal: Option<Refusing>,
}

/// Where the current request head is: how long it and its request line have
/// grown, and how much of the blank line that ends it was just seen.
#[derive(Debug, Clone, Copy)]
struct HeadScan {
    /// Scanning: a head is being read (the connection's first bytes, or the
    /// first bytes after a response). Off from the blank line to the next head.
    active: bool,
    bytes: usize,
    /// The request line is still being read.
    in_line: bool,
    /// Where the bytes seen so far end: 0 inside a line, 1 just after a
    /// line feed, 2 after a line feed and a carriage return. A line feed in
    /// state 1 or 2 is the blank line that ends the head (`\r\n\r\n`, or
    /// the bare `\n\n` hyper also accepts).
    matched: u8,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            active: true,
            bytes: 0,
            in_line: true,
            matched: 0,
        }
    }
}

impl HeadScan {
    /// Takes in bytes read from the client; the status to refuse the head
    /// with once it outgrows keel's limits.
    fn feed(&mut self, bytes: &[u8]) -> Option<(u16, &'static str, String)> {
        if !self.active {
            return None;
        }
        for &byte in bytes {
            self.bytes += 1;
            self.matched = match (self.matched, byte) {
                (1 | 2, b'\n') => {
                    self.active = false;
                    return None;
                }
                (_, b'\n') => {
                    self.in_line = false;
                    1
                }
                (1, b'\r') => 2,
                _ => 0,
            };
            if self.in_line && self.bytes > MAX_REQUEST_LINE_BYTES {
                return Some((
                    414,
                    "URI Too Long",
                    format!("The request line is over {MAX_REQUEST_LINE_BYTES} bytes"),
                ));
            }
            if self.bytes > MAX_GUARDED_HEAD_BYTES {
                return Some((
                    431,
                    "Request Header Fields Too Large",
                    format!("The request head is over {MAX_GUARDED_HEAD_BYTES} bytes"),
                ));
            }
        }
        None
    }
}

/// keel's own answer to a head it will not read, written straight to the
/// socket (hyper is still waiting for the head): the JSON envelope with
/// both servers' fields, `Connection: close`.
struct Refusing {
    answer: Vec<u8>,
    written: usize,
    shut: bool,
}

impl Refusing {
    fn new(status: u16, reason: &str, message: &str) -> Self {
        let code = crate::envelope::code_for(
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        );
        let body = serde_json::json!({"error_code": code, "message": message, "error": message})
            .to_string();
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        Refusing {
            answer: answer.into_bytes(),
            written: 0,
            shut: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Watched<S> {
    /// Writes the refusal, closes the writing side, then reads and drops
    /// what the client still sends until it closes (so the answer is not
    /// lost to a reset); the header timeout bounds that. Hyper then sees
    /// the end of the stream.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(refusal) = self.refusal.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while refusal.written < refusal.answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &refusal.answer[refusal.written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => refusal.written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        if !refusal.shut {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => refusal.shut = true,
            }
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut drain = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut drain) {
                Poll::Ready(Ok(())) if !drain.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.refusal.is_some() {
            return self.poll_refusal(cx);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if self.clock.bytes() {
                self.head = HeadScan::default();
            }
            if let Some((status, reason, message)) = self.head.feed(&buf.filled()[before..]) {
                tracing::debug!(status, "request head over keel's limits");
                // Hyper never sees these bytes: it gets the end of the
                // stream once keel has answered.
                buf.set_filled(before);
                self.refusal = Some(Refusing::new(status, reason, &message));
                return self.poll_refusal(cx);
            }
        }
        result
    }
}

impl<S> Watched<S> {
    /// Tells the clock whether a write is waiting for the client to read.
    fn wrote<T>(&self, result: Poll<T>) -> Poll<T> {
        match result {
            Poll::Pending => self.clock.write_blocked(),
            Poll::Ready(_) => self.clock.write_progressed(),
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body whose next chunk must arrive within the body timeout.
/// The timer is made and armed only when the body has to wait for its
/// client: a body that arrived with its head (most API calls) never
/// touches one. It tells the connection's clock when it ends or is given
/// up, so the bytes of a body still arriving after its response (a refused
/// body being drained) are never taken for the next request's head.
struct ChunkDeadline {
    body: Incoming,
    timeout: Duration,
    /// Armed while waiting for the next chunk; disarmed (`waiting` false)
    /// when one arrives.
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// The connection's clock until the body is done with (`None` for a
    /// request without a body, and once the clock has been told).
    clock: Option<Arc<Clock>>,
}

impl ChunkDeadline {
    fn new(body: Incoming, timeout: Duration, clock: Option<Arc<Clock>>) -> Self {
        ChunkDeadline {
            body,
            timeout,
            sleep: None,
            waiting: false,
            clock,
        }
    }

    /// Tells the clock, once, that the body ended or was given up.
    fn done(&mut self, ended: bool) {
        if let Some(clock) = self.clock.take() {
            clock.body_done(ended);
        }
    }
}

impl Drop for ChunkDeadline {
    /// A body dropped before its end still ended if hyper has already handed
    /// over its last bytes (a small body that came with its head, refused
    /// before anyone read it): take what hyper holds for it, without waiting.
    /// Otherwise it is given up, and hyper closes the connection after the
    /// response unless its next read ends the body.
    fn drop(&mut self) {
        if self.clock.is_none() {
            return;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut ended = false;
        // Hyper holds at most one chunk for a body, then its end: a few looks suffice.
        for _ in 0..4 {
            match Pin::new(&mut self.body).poll_frame(&mut cx) {
                Poll::Ready(None) => ended = true,
                Poll::Ready(Some(Ok(_))) if !self.body.is_end_stream() => continue,
                Poll::Ready(Some(Ok(_))) => ended = true,
                Poll::Ready(Some(Err(_))) | Poll::Pending => {}
            }
            break;
        }
        self.done(ended);
    }
}

/// The error a request body ends with when its client stalls.
#[derive(Debug)]
pub(crate) struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled: no data for {}",
            humanize(self.0)
        )
    }
}

impl std::error::Error for BodyTimedOut {}

pub(crate) fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

impl hyper::body::Body for ChunkDeadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                match &frame {
                    None => this.done(true),
                    Some(Ok(_)) if this.body.is_end_stream() => this.done(true),
                    Some(Ok(_)) => {}
                    // Hyper stops reading a body that failed: it is given up.
                    Some(Err(_)) => this.done(false),
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.waiting {
                    this.waiting = true;
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.done(false);
                        Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A response body that tells the clock when it is done (written or dropped).
struct EndOfResponse {
    body: Body,
    clock: Arc<Clock>,
}

impl Drop for EndOfResponse {
    fn drop(&mut self) {
        self.clock.end();
    }
}

impl hyper::body::Body for EndOfResponse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn app() -> Router {
        Router::new().route("/", axum::routing::get(|| async { "ok" }))
    }

    #[tokio::test]
    async fn serving_without_limits_is_refused_off_loopback() {
        let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
        let error = serve(listener, app(), Limits::off(), None, std::future::pending())
            .await
            .expect_err("an unbounded server on a public address");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serving_without_limits_answers_a_head_slower_than_the_default_header_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            ..Limits::off()
        };
        let server = tokio::spawn(serve(listener, app(), limits, None, std::future::pending()));
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .expect("write");
            std::thread::sleep(Duration::from_millis(600));
            stream
                .write_all(b"Connection: close\r\n\r\n")
                .expect("write");
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out);
            out
        })
        .await
        .expect("client");
        server.abort();
        // With the bounds on (enforced), the same head would be cut off after 200 ms.
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The route maximum of [`limited`]: far below a head's limits, so a
    /// refused body is long enough to be taken for an oversized head.
    const MAX_BODY: usize = 1024;

    /// `/` answers GET with "ok" and POST with the length of its body, read
    /// through [`crate::buffer_body`] at most [`MAX_BODY`] bytes; POST
    /// `/unread` answers "unread" without reading its body.
    fn limited(limits: &Limits) -> Router {
        let budget = crate::BodyBudget::new(limits, crate::Envelope::MLFLOW);
        Router::new()
            .route(
                "/",
                axum::routing::get(|| async { "ok" })
                    .post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                (budget, MAX_BODY),
                crate::buffer_body,
            ))
            .route("/unread", axum::routing::post(|| async { "unread" }))
    }

    /// Runs `client` (blocking) on a fresh connection to a server of
    /// [`limited`] within `limits`; its reads are guarded against a hang.
    async fn against(
        limits: Limits,
        client: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = limited(&limits);
        let server = tokio::spawn(serve(listener, app, limits, None, std::future::pending()));
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .expect("a guard against a hang");
            client(&mut stream);
        })
        .await
        .expect("client");
        server.abort();
    }

    /// Reads one response (head and `content-length` body) from `stream`,
    /// `pending` holding what was read beyond the previous one: its status
    /// and body, or `None` once the server has closed the connection.
    fn read_response(
        stream: &mut std::net::TcpStream,
        pending: &mut Vec<u8>,
    ) -> Option<(u16, String)> {
        let mut chunk = [0u8; 8192];
        let mut fill = |pending: &mut Vec<u8>| match stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                true
            }
            // A reset after the answers counts as the close it is.
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => false,
            Err(error) => panic!("reading the answer: {error}"),
        };
        let head_end = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !fill(pending) {
                assert!(pending.is_empty(), "a cut answer: {pending:?}");
                return None;
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().expect("content-length"));
        while pending.len() < head_end + length {
            assert!(fill(pending), "the answer's body was cut");
        }
        let body = String::from_utf8_lossy(&pending[head_end..head_end + length]).into_owned();
        pending.drain(..head_end + length);
        Some((status, body))
    }

    /// Writes what the server may no longer read: an error means it closed.
    fn send(stream: &mut std::net::TcpStream, bytes: &[u8]) -> bool {
        stream.write_all(bytes).is_ok()
    }

    /// After a refused body: the rest of the answers on the connection are
    /// the follow-up GET's "ok" and the end, or just the end (the server
    /// closed the connection instead of reusing it), never anything else.
    fn assert_ok_or_closed(stream: &mut std::net::TcpStream, pending: &mut Vec<u8>) {
        let mut rest = Vec::new();
        while let Some(answer) = read_response(stream, pending) {
            rest.push(answer);
        }
        assert!(
            rest.is_empty() || rest == [(200, "ok".to_string())],
            "after the 413: {rest:?}"
        );
    }

    /// A body that came in pieces and ran past the route's maximum: returns
    /// the connection with the 413 read, its leftover, and its body.
    fn refused_at_first(stream: &mut std::net::TcpStream, head: &[u8], first: &[u8]) -> Vec<u8> {
        assert!(send(stream, head) && send(stream, first));
        let mut pending = Vec::new();
        let (status, body) = read_response(stream, &mut pending).expect("an answer");
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("RESOURCE_EXHAUSTED"), "{body}");
        pending
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_body_drained_after_its_413_is_not_taken_for_a_head() {
        // The body outlasts the 413 and is longer than a request line and a
        // head may be, with no line feed in it: were it measured as the next
        // head, the answer after the 413 would be keel's 414 (or 431).
        let total = MAX_GUARDED_HEAD_BYTES + 64 * 1024;
        for pipelined in [false, true] {
            against(Limits::default(), move |stream| {
                let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
                let piece = vec![b'x'; 16 * 1024];
                let mut pending = refused_at_first(stream, head.as_bytes(), &piece);
                // The rest of the body, in pieces, the 413 already answered;
                // then a request on the same connection (in the body's last
                // write when `pipelined`).
                let get = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let mut sent = piece.len();
                while sent < total {
                    let size = piece.len().min(total - sent);
                    let mut bytes = piece[..size].to_vec();
                    sent += size;
                    if pipelined && sent == total {
                        bytes.extend_from_slice(get);
                    }
                    if !send(stream, &bytes) {
                        break;
                    }
                    if !pipelined {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                if !pipelined {
                    send(stream, get);
                }
                assert_ok_or_closed(stream, &mut pending);
            })
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunked_body_past_the_maximum_is_drained_to_its_end() {
        against(Limits::default(), |stream| {
            let chunk = |size: usize| {
                let mut chunk = format!("{size:x}\r\n").into_bytes();
                chunk.extend(std::iter::repeat_n(b'x', size));
                chunk.extend_from_slice(b"\r\n");
                chunk
            };
            let head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
            let mut pending = refused_at_first(stream, head, &chunk(2 * MAX_BODY));
            for _ in 0..8 {
                if !send(stream, &chunk(32 * 1024)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            send(
                stream,
                b"0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_ok_or_closed(stream, &mut pending);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_body_that_stops_arriving_ends_its_connection() {
        let limits = Limits {
            body_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        against(limits, |stream| {
            let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
            let mut pending = refused_at_first(stream, head, &[b'x'; 4096]);
            // The client sends no more: the drain gives the body up at the
            // body timeout and the connection is closed, not kept.
            assert_eq!(read_response(stream, &mut pending), None);
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_within_the_maximum_keep_the_connection() {
        against(Limits::default(), |stream| {
            let mut pending = Vec::new();
            for size in [10, MAX_BODY, 0] {
                let post = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
                assert!(send(stream, post.as_bytes()));
                assert!(send(stream, &vec![b'y'; size]));
                let answer = read_response(stream, &mut pending);
                assert_eq!(answer, Some((200, size.to_string())));
            }
            // A body its route never reads, which came with its head, has
            // ended all the same: the connection is kept and the next head
            // is measured (keel's 431, not hyper's limits).
            assert!(send(
                stream,
                b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            ));
            assert_eq!(
                read_response(stream, &mut pending),
                Some((200, "unread".to_string()))
            );
            let header = format!("X-Big: {}\r\n", "b".repeat(8 * 1024));
            let headers = header.repeat(MAX_GUARDED_HEAD_BYTES / header.len() + 1);
            let big = format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
            assert!(send(stream, big.as_bytes()));
            let (status, body) = read_response(stream, &mut pending).expect("an answer");
            assert_eq!(status, 431, "{body}");
            assert!(body.contains("RESOURCE_EXHAUSTED"), "{body}");
            assert_eq!(read_response(stream, &mut pending), None);
        })
        .await;
    }

    #[test]
    fn the_clock_waits_for_the_body_before_the_next_head() {
        let clock = Clock::new();
        assert!(!clock.bytes(), "the first head is measured from the start");
        // Answered while its body still arrives: the bytes are body.
        clock.begin(true);
        clock.end();
        assert!(matches!(
            clock.with(|c| c.phase),
            Phase::Draining { reading: 1, .. }
        ));
        assert!(!clock.bytes());
        clock.body_done(true);
        assert!(
            clock.bytes(),
            "a head after a body read to its end is measured"
        );
        // Read first, answered after: the usual order.
        clock.begin(true);
        clock.body_done(true);
        clock.end();
        assert!(clock.bytes());
        // A body given up: what comes next is not measured until hyper
        // parses a head (it closes the connection unless the body ended).
        clock.begin(true);
        clock.end();
        clock.body_done(false);
        assert!(!clock.bytes());
        clock.begin(false);
        clock.end();
        assert!(clock.bytes());
    }

    fn scan(chunks: &[&[u8]]) -> (Option<u16>, HeadScan) {
        let mut head = HeadScan::default();
        for chunk in chunks {
            if let Some((status, _, _)) = head.feed(chunk) {
                return (Some(status), head);
            }
        }
        (None, head)
    }

    #[test]
    fn heads_are_measured_up_to_their_blank_line() {
        // A body after the head is not head: any size passes.
        let body = vec![b'x'; 4 * MAX_GUARDED_HEAD_BYTES];
        for head in [
            &b"PUT /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PUT /a HTTP/1.1\nHost: x\n\n",
        ] {
            let (refused, state) = scan(&[head, &body]);
            assert_eq!(refused, None);
            assert!(!state.active);
        }
        // The blank line split across reads is still found.
        let (refused, state) = scan(&[b"GET / HTTP/1.1\r\nA: b\r", b"\n\r", b"\n", &body]);
        assert_eq!(refused, None);
        assert!(!state.active);
        // Too long a request line, too long a head.
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE_BYTES));
        assert_eq!(scan(&[line.as_bytes()]).0, Some(414));
        let header = format!("X-Big: {}\r\n", "b".repeat(8 * 1024));
        let headers = header.repeat(MAX_GUARDED_HEAD_BYTES / header.len() + 1);
        let head = format!("GET / HTTP/1.1\r\n{headers}");
        assert_eq!(scan(&[head.as_bytes()]).0, Some(431));
        // Lines ending in a lone carriage return are not the end of the head.
        let (refused, state) = scan(&[b"GET / HTTP/1.1\r\nA: b\r\r\n"]);
        assert_eq!(refused, None);
        assert!(state.active);
    }
}
