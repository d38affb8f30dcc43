//! The accept loop and one connection's clock (header, idle and body timeouts).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
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
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's own head timer starts when the connection waits for a
        // request, so it is the backstop for idle + head; the clock below
        // enforces each precisely.
        .header_read_timeout(limits.idle_timeout.saturating_add(limits.header_timeout))
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    // One timer per connection, re-armed only when it fires: requests never
    // touch it (see `Clock::next_check`), so the bounds cost a request a few
    // uncontended lock operations, not a timer registration or a wake-up.
    let check = tokio::time::sleep(limits.header_timeout);
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
}

impl Clock {
    /// A new connection: its first request head must arrive within the header timeout.
    fn new() -> Self {
        Clock {
            phase: Mutex::new(Phase::Head(Instant::now())),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Phase) -> R) -> R {
        let mut phase = self
            .phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut phase)
    }

    /// Bytes arrived from the client.
    fn bytes(&self) {
        self.with(|phase| {
            if let Phase::Idle(_) = *phase {
                *phase = Phase::Head(Instant::now());
            }
        });
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

    /// When the watchdog looks next. A head's deadline is exact; otherwise
    /// it looks at least every header timeout, so a head that starts
    /// arriving between two looks (the phase changes without telling the
    /// watchdog) is seen before its own deadline: the look before it came
    /// less than a header timeout earlier.
    fn next_check(&self, limits: &Limits) -> Instant {
        let soon = Instant::now() + limits.header_timeout;
        self.with(|phase| match *phase {
            Phase::Idle(since) => (since + limits.idle_timeout).min(soon),
            Phase::Head(since) => since + limits.header_timeout,
            Phase::Busy(_) => soon,
        })
    }

    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = Instant::now();
        self.with(|phase| match *phase {
            Phase::Idle(since) if now >= since + limits.idle_timeout => Some("idle timeout"),
            Phase::Head(since) if now >= since + limits.header_timeout => {
                Some("header read timeout")
            }
            _ => None,
        })
    }
}

/// The client's socket, telling the clock when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes();
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
}
