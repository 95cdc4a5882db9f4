//! A TLS listener for `axum::serve`, so that gRPC (tonic's routes) and HTTP (axum's) keep
//! sharing one port: hyper's server tells HTTP/2 from HTTP/1.1 by what the client sends,
//! and the handshake offers ALPN `h2` and `http/1.1` for clients that ask.
//!
//! Handshakes run in tasks of their own (at most `MAX_HANDSHAKES` at once, each within
//! `HANDSHAKE_TIMEOUT`), so a slow or silent client never holds up the accept loop; only
//! finished handshakes reach the server. A connection whose first byte is not a TLS
//! handshake record is a plain-text client: it is answered, in its own protocol, with one
//! clear refusal (HTTP 400 JSON, or a gRPC `FAILED_PRECONDITION` carrying the
//! `agora-tls-required` key) and closed, instead of a reset its client would retry.
//!
//! The verified client certificate, if any, reaches every request as
//! `ConnectInfo<TlsPeer>`: read it with [`client_identity`] (axum) or
//! [`grpc_client_identity`] (tonic). This is the one way handlers learn who holds a
//! certificate; the listener itself decides nothing about what a caller may do.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{HANDSHAKE_TIMEOUT, ServerTls, TLS_REQUIRED_HEADER};

/// Handshakes in flight at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the server to take them.
const READY_LEN: usize = 64;
/// How long a plain-text client is given to read its refusal.
const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// What a plain-text client is told.
const TLS_REQUIRED: &str =
    "this port speaks TLS only: dial https:// and trust the CA that signed its certificate (--tls-ca)";

/// What a verified client certificate says of its holder: its subject alternative names.
/// Present only when the server was started with a client CA and the certificate
/// verified against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// DNS names (`dNSName` entries), in the certificate's order.
    pub dns_names: Vec<String>,
    /// URIs (`uniformResourceIdentifier` entries), in the certificate's order.
    pub uris: Vec<String>,
    /// The whole certificate, DER, for anything the names do not tell.
    pub certificate_der: Vec<u8>,
}

impl ClientIdentity {
    fn from_der(der: &rustls::pki_types::CertificateDer<'_>) -> Option<ClientIdentity> {
        let certificate = webpki::EndEntityCert::try_from(der).ok()?;
        Some(ClientIdentity {
            dns_names: certificate.valid_dns_names().map(str::to_owned).collect(),
            uris: certificate.valid_uri_names().map(str::to_owned).collect(),
            certificate_der: der.to_vec(),
        })
    }
}

/// The peer of a TLS connection, as `axum::serve` hands it to the router
/// (`ConnectInfo<TlsPeer>` on every request).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub remote: SocketAddr,
    pub client: Option<Arc<ClientIdentity>>,
}

impl<I> axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener<I>>> for TlsPeer
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn connect_info(stream: IncomingStream<'_, TlsListener<I>>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The verified client certificate of the connection `extensions` (an HTTP request's)
/// came on; `None` on a plain-text server or when the client presented none.
pub fn client_identity(extensions: &axum::http::Extensions) -> Option<&ClientIdentity> {
    extensions.get::<ConnectInfo<TlsPeer>>()?.0.client.as_deref()
}

/// `https` when the request (its `extensions`) came over TLS, else `http`: the scheme of a
/// redirect to another server of the same cluster, which serves as this one does.
pub fn scheme(extensions: &axum::http::Extensions) -> &'static str {
    if extensions.get::<ConnectInfo<TlsPeer>>().is_some() { "https" } else { "http" }
}

/// [`client_identity`] for a gRPC request.
pub fn grpc_client_identity<T>(request: &tonic::Request<T>) -> Option<&ClientIdentity> {
    request.extensions().get::<ConnectInfo<TlsPeer>>()?.0.client.as_deref()
}

/// Serves `app` on `listener` until `shutdown` completes: with TLS when `tls` is given
/// (see the module doc), else in plain text as `axum::serve` does. Either way every
/// request carries the peer's address as `ConnectInfo<SocketAddr>`, and with TLS also
/// `ConnectInfo<TlsPeer>`.
pub async fn serve<L>(
    listener: L,
    tls: Option<&ServerTls>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    match tls {
        None => {
            let app = app.layer(axum::middleware::map_request(with_plain_address));
            axum::serve(PlainListener(listener), app.into_make_service_with_connect_info::<PlainPeer>())
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls)?;
            let app = app.layer(axum::middleware::map_request(with_remote_address));
            axum::serve(listener, app.into_make_service_with_connect_info::<TlsPeer>())
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The peer of a plain-text connection on any listener (axum gives `SocketAddr` only for
/// its own listeners), turned into `ConnectInfo<SocketAddr>` for handlers.
#[derive(Clone, Copy, Debug)]
struct PlainPeer(SocketAddr);

/// A plain-text listener whose peers are [`PlainPeer`]s.
struct PlainListener<L>(L);

impl<L: Listener<Addr = SocketAddr>> Listener for PlainListener<L> {
    type Io = L::Io;
    type Addr = PlainPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, remote) = self.0.accept().await;
        (io, PlainPeer(remote))
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(PlainPeer)
    }
}

impl<L> axum::extract::connect_info::Connected<IncomingStream<'_, PlainListener<L>>> for PlainPeer
where
    L: Listener<Addr = SocketAddr>,
{
    fn connect_info(stream: IncomingStream<'_, PlainListener<L>>) -> Self {
        *stream.remote_addr()
    }
}

async fn with_plain_address(mut request: axum::extract::Request) -> axum::extract::Request {
    if let Some(ConnectInfo(PlainPeer(remote))) = request.extensions().get::<ConnectInfo<PlainPeer>>().copied() {
        request.extensions_mut().insert(ConnectInfo(remote));
    }
    request
}

/// Copies the TLS peer's address into `ConnectInfo<SocketAddr>`, where handlers that do
/// not care about TLS look for it.
async fn with_remote_address(mut request: axum::extract::Request) -> axum::extract::Request {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<TlsPeer>>() {
        let remote = peer.remote;
        request.extensions_mut().insert(ConnectInfo(remote));
    }
    request
}

/// A listener whose connections have finished their TLS handshake. Accepting and
/// handshaking run in a task that ends when the listener is dropped.
#[derive(Debug)]
pub struct TlsListener<I> {
    ready: mpsc::Receiver<(TlsStream<Rewound<I>>, TlsPeer)>,
    local_addr: SocketAddr,
}

impl<I> TlsListener<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Takes over `inner`: its connections are handshaken with `tls` before they are
    /// accepted from this listener.
    pub fn new<L>(inner: L, tls: &ServerTls) -> io::Result<TlsListener<I>>
    where
        L: Listener<Io = I, Addr = SocketAddr>,
    {
        let local_addr = inner.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(READY_LEN);
        tokio::spawn(accept_loop(inner, TlsAcceptor::from(tls.config()), ready_tx));
        Ok(TlsListener { ready, local_addr })
    }
}

impl<I> Listener for TlsListener<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = TlsStream<Rewound<I>>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends once this listener is dropped, so this is never
            // reached while the server runs; if it were, accepting nothing is right.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsPeer { remote: self.local_addr, client: None })
    }
}

async fn accept_loop<L>(mut inner: L, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<Rewound<L::Io>>, TlsPeer)>)
where
    L: Listener<Addr = SocketAddr>,
{
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = handshakes.clone().acquire_owned() => permit,
            () = ready.closed() => return,
        };
        let (io, remote) = tokio::select! {
            accepted = inner.accept() => accepted,
            () = ready.closed() => return,
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(io, acceptor)).await {
                Ok(Ok(Some((stream, client)))) => {
                    let _ = ready.send((stream, TlsPeer { remote, client })).await;
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::debug!(%remote, error = %super::describe(&error), "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

type Handshaken<I> = (TlsStream<Rewound<I>>, Option<Arc<ClientIdentity>>);

/// The handshake, or `None` for a connection that closed at once or spoke plain text
/// (which is answered here).
async fn handshake<I>(mut io: I, acceptor: TlsAcceptor) -> io::Result<Option<Handshaken<I>>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = [0_u8; 1];
    if io.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let io = Rewound { first: Some(first[0]), inner: io };
    if first[0] != TLS_HANDSHAKE_RECORD {
        refuse_plain_text(io).await;
        return Ok(None);
    }
    let stream = acceptor.accept(io).await?;
    let client =
        stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(ClientIdentity::from_der);
    Ok(Some((stream, client.map(Arc::new))))
}

/// Answers a plain-text client (HTTP/1.1 or HTTP/2, which hyper tells apart) with the
/// refusal, within `REFUSAL_TIMEOUT`.
async fn refuse_plain_text<I>(io: Rewound<I>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
        Ok::<_, std::convert::Infallible>(refusal(&request))
    });
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, connection).await;
}

fn refusal<B>(request: &hyper::Request<B>) -> hyper::Response<axum::body::Body> {
    use axum::http::{HeaderValue, StatusCode, header};
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    let mut response = if grpc {
        // A trailers-only gRPC answer: the status travels in the headers.
        let mut response = hyper::Response::new(axum::body::Body::empty());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(tonic::Code::FailedPrecondition as i32));
        headers.insert("grpc-message", HeaderValue::from_static(TLS_REQUIRED));
        response
    } else {
        let body = format!(r#"{{"message":"{TLS_REQUIRED}","details":[]}}"#);
        let mut response = hyper::Response::new(axum::body::Body::from(body));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    response.headers_mut().insert(TLS_REQUIRED_HEADER, HeaderValue::from_static("true"));
    response
}

/// A connection with its first byte, read to tell TLS from plain text, put back in front.
#[derive(Debug)]
pub struct Rewound<I> {
    first: Option<u8>,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewound<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() > 0
            && let Some(first) = self.first.take()
        {
            buf.put_slice(&[first]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewound<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
