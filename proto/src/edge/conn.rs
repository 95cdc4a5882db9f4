//! Bounds on the connections of an HTTP server, as a listener wrapper for `axum::serve`:
//! at most `max_connections` held at once (accepting waits while all are out, so a flood
//! cannot exhaust file descriptors), and slow clients cut off: an HTTP/1 request's headers
//! must arrive whole within `header_timeout` of its first byte (a slowloris client that
//! sends a byte now and then holds no connection for long), and a connection that
//! starts no request within `header_timeout` of opening is closed.
//!
//! Only plain HTTP/1 is timed: a connection that opens with the HTTP/2 preface (gRPC's
//! long-lived streams) or with anything else (a TLS handshake, whose listener has its own
//! timeout) is only counted. The header scan follows requests by their `\r\n\r\n`; a
//! request's body is not timed (a reader of it decides), and the next request is taken
//! to start at the first byte read after a response byte was written.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant, Sleep};

/// How a server's connections are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 4096, header_timeout: Duration::from_secs(30) }
    }
}

/// `listener` with TCP_NODELAY on every accepted connection: small replies (gRPC
/// messages, TLS records of one HTTP reply) must not wait for Nagle's algorithm to meet
/// the peer's delayed ACK, up to 40 ms per exchange on Linux.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
    })
}

/// A listener whose connections are bounded by [`ConnectionLimits`].
#[derive(Debug)]
pub struct LimitedListener<L> {
    inner: L,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<L> LimitedListener<L> {
    pub fn new(inner: L, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            header_timeout: limits.header_timeout,
        }
    }
}

impl<L> Listener for LimitedListener<L>
where
    L: Listener,
    L::Io: Unpin,
{
    type Io = LimitedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed: acquiring fails only if that changes, and then
        // connections are served unbounded rather than not at all.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (io, addr) = self.inner.accept().await;
        let deadline = Box::pin(tokio::time::sleep(self.header_timeout));
        let io =
            LimitedIo { io, _permit: permit, timeout: self.header_timeout, deadline, phase: Phase::Opened, matched: 0 };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Where a connection is in its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: the deadline runs (a connection that never asks is closed).
    Opened,
    /// Reading an HTTP/1 request's headers: the deadline runs.
    Headers,
    /// Headers read; the request is served (and its body read) untimed.
    Serving,
    /// A response byte was written: the next byte read starts a request.
    Answered,
    /// Not plain HTTP/1 (HTTP/2, TLS): counted, never timed.
    Untimed,
}

const END_OF_HEADERS: &[u8] = b"\r\n\r\n";

/// A connection that holds a permit while open and enforces the header deadline.
#[derive(Debug)]
pub struct LimitedIo<I> {
    io: I,
    _permit: Option<OwnedSemaphorePermit>,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    phase: Phase,
    /// Bytes of `\r\n\r\n` matched at the end of what was read so far.
    matched: usize,
}

impl<I> LimitedIo<I> {
    fn timed(&self) -> bool {
        matches!(self.phase, Phase::Opened | Phase::Headers)
    }

    /// Follows the request line and headers through the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.phase {
            Phase::Opened => {
                // HTTP/1 starts with a method (capital letters); HTTP/2's preface too
                // (`PRI * HTTP/2.0`), TLS with a handshake record.
                if !bytes[0].is_ascii_uppercase() || bytes.starts_with(b"PRI ") {
                    self.phase = Phase::Untimed;
                    return;
                }
                self.phase = Phase::Headers;
            }
            Phase::Answered => {
                self.phase = Phase::Headers;
                self.matched = 0;
                let at = Instant::now() + self.timeout;
                self.deadline.as_mut().reset(at);
            }
            Phase::Headers => {}
            Phase::Serving | Phase::Untimed => return,
        }
        for &byte in bytes {
            self.matched = match (byte, self.matched) {
                (b'\r', 0 | 2) => self.matched + 1,
                (b'\n', 1 | 3) => self.matched + 1,
                (b'\r', _) => 1,
                _ => 0,
            };
            if self.matched == END_OF_HEADERS.len() {
                self.phase = Phase::Serving;
                self.matched = 0;
                return;
            }
        }
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 && self.phase == Phase::Serving {
            self.phase = Phase::Answered;
        }
    }

    /// Pending, unless the header deadline passed: then an error, and the server closes
    /// the connection.
    fn check<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.timed() && self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request headers too slow")));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for LimitedIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                let new = filled.get(before..).unwrap_or_default().to_vec();
                self.saw(&new);
                if self.timed() && self.deadline.is_elapsed() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request headers too slow")));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.check(cx),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for LimitedIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.wrote(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            self.wrote(n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn serve(limits: ConnectionLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(LimitedListener::new(listener, limits), app).await });
        address
    }

    /// Everything the server sends until it closes (bounded by a generous guard).
    async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server closes the connection");
        answer
    }

    #[tokio::test]
    async fn headers_that_never_end_are_cut_off_and_whole_requests_are_served_on_keep_alive() {
        let limits = ConnectionLimits { max_connections: 8, header_timeout: Duration::from_millis(300) };
        let address = serve(limits).await;
        let mut slow = TcpStream::connect(address).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1").await.expect("write");
        let answer = read_to_close(&mut slow).await;
        assert!(!answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        let mut idle = TcpStream::connect(address).await.expect("connect");
        read_to_close(&mut idle).await;

        let mut client = TcpStream::connect(address).await.expect("connect");
        for _ in 0..2 {
            client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
            let mut buffer = [0u8; 256];
            let n = client.read(&mut buffer).await.expect("read");
            assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_wait_to_be_accepted() {
        let limits = ConnectionLimits { max_connections: 1, header_timeout: Duration::from_secs(30) };
        let address = serve(limits).await;
        let mut first = TcpStream::connect(address).await.expect("connect");
        first.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buffer = [0u8; 256];
        assert!(first.read(&mut buffer).await.expect("read") > 0);
        // The second is queued by the kernel, not served, while the first is held.
        let mut second = TcpStream::connect(address).await.expect("connect");
        second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buffer)).await;
        assert!(waited.is_err(), "served while the bound was taken");
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buffer))
            .await
            .expect("served")
            .expect("read");
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    }
}
