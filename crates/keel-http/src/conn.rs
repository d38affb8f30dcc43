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
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Limits;

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
            clock.begin();
            let mut request =
                request.map(|body| Body::new(ChunkDeadline::new(body, limits.body_timeout)));
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
    /// Requests being answered (their bodies have their own timeout).
    Busy(usize),
}

struct Clock {
    phase: Mutex<Phase>,
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
            phase: Mutex::new(Phase::Head(now)),
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

    fn with<R>(&self, f: impl FnOnce(&mut Phase) -> R) -> R {
        let mut phase = self
            .phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut phase)
    }

    /// Bytes arrived from the client; true when they start a new request head.
    fn bytes(&self) -> bool {
        self.with(|phase| match *phase {
            Phase::Idle(_) => {
                *phase = Phase::Head(Instant::now());
                true
            }
            _ => false,
        })
    }

    /// A request head was parsed.
    fn begin(&self) {
        self.with(|phase| {
            *phase = match *phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
    }

    /// A response was written (or abandoned).
    fn end(&self) {
        self.with(|phase| {
            *phase = match *phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }

    /// When the watchdog looks next: the phase's own deadline when it is
    /// sooner, and in any case within the shorter of the header and body
    /// timeouts. The clock changes phase without waking the watchdog, so a
    /// head that starts arriving or a write that starts waiting between two
    /// looks is seen at the next look, which comes before its own deadline
    /// (the look before it came less than that timeout earlier); from then
    /// on its deadline is exact.
    fn next_check(&self, limits: &Limits) -> Instant {
        let soon = Instant::now() + limits.header_timeout.min(limits.body_timeout);
        let phase = self.with(|phase| match *phase {
            Phase::Idle(since) => since + limits.idle_timeout,
            Phase::Head(since) => since + limits.header_timeout,
            Phase::Busy(_) => soon,
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
        self.with(|phase| match *phase {
            Phase::Idle(since) if now >= since + limits.idle_timeout => Some("idle timeout"),
            Phase::Head(since) if now >= since + limits.header_timeout => {
                Some("header read timeout")
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
/// touches one.
struct ChunkDeadline {
    body: Incoming,
    timeout: Duration,
    /// Armed while waiting for the next chunk; disarmed (`waiting` false)
    /// when one arrives.
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl ChunkDeadline {
    fn new(body: Incoming, timeout: Duration) -> Self {
        ChunkDeadline {
            body,
            timeout,
            sleep: None,
            waiting: false,
        }
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
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout))))),
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
