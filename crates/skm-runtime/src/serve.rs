//! Serving gRPC over SKM's TLS: our own accept loop (TCP_NODELAY, handshake
//! timeout, peer identity), tonic on top, the per-RPC allow-list in front of
//! every handler.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;

use crate::authz::{AccessPolicy, AuthorizeLayer};
use crate::identity::{Principal, SpiffeId};
use crate::shutdown::Shutdown;

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the peer of a request. Inserted into every
/// request's extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The TCP peer address.
    pub remote_addr: SocketAddr,
    /// The client's certificate chain, leaf first, if it sent one.
    pub client_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The peer's principal, only on ports whose TLS layer verified the
    /// chain against the deployment CA.
    pub principal: Option<Principal>,
}

/// How a port treats client certificates.
#[derive(Clone, Debug)]
pub enum ClientTrust {
    /// The TLS layer verified the chain against the deployment CA: map the
    /// SPIFFE id of this trust domain to a principal.
    Deployment {
        /// Trust domain of the deployment.
        trust_domain: String,
    },
    /// Certificates are not vouched for by the TLS layer (kms-api's user
    /// port): keep them for per-request checks, never map them to a principal.
    PerRequest,
}

/// An accepted, handshaken TLS connection with its peer information.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, sets TCP_NODELAY, runs TLS handshakes
/// concurrently (a slow client can't stall the accept loop) and yields the
/// finished connections. Stops accepting at shutdown.
pub fn tls_incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    shutdown: Shutdown,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "set TCP_NODELAY failed");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let trust = trust.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %remote_addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %remote_addr, "TLS handshake timed out");
                        return;
                    }
                };
                let chain = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|d| d.clone().into_owned()).collect::<Vec<_>>()));
                let principal = match (&trust, &chain) {
                    (ClientTrust::Deployment { trust_domain }, Some(chain)) => chain
                        .first()
                        .and_then(|leaf| SpiffeId::from_certificate(leaf))
                        .and_then(|id| id.principal(trust_domain)),
                    _ => None,
                };
                let info = PeerInfo { remote_addr, client_certificates: chain, principal };
                let _ = tx.send(Ok(TlsConnection { stream, info })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Serving failed.
#[derive(Debug, thiserror::Error)]
#[error("gRPC server failed")]
pub struct ServeError(#[from] tonic::transport::Error);

/// Serves `routes` on `listener` until shutdown, with `policy` checked
/// before any handler runs. In-flight requests finish before it returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    policy: AccessPolicy,
    routes: Routes,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let incoming = tls_incoming(listener, tls, trust, shutdown.clone());
    tonic::transport::Server::builder()
        .layer(AuthorizeLayer::new(policy))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move { shutdown.wait().await })
        .await?;
    Ok(())
}

/// Binds a TCP listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
}

/// A port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: io::Error,
}
