//! Serving gRPC over SKM's TLS: our own accept loop (TCP_NODELAY, PROXY
//! protocol from trusted load balancers, handshake timeout, peer identity),
//! tonic on top, the per-RPC allow-list in front of every handler.

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
use crate::proxy_protocol::{self, Command, ProxyHeader, TrustedProxies};
use crate::shutdown::Shutdown;

/// A connection whose PROXY header and TLS handshake take longer than this
/// is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the peer of a request. Inserted into every
/// request's extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address: the TCP peer, or the source address of the
    /// PROXY header sent by a trusted load balancer.
    pub remote_addr: SocketAddr,
    /// The load balancer's address when `remote_addr` came from its PROXY
    /// header; `None` for a direct connection.
    pub proxied_by: Option<SocketAddr>,
    /// The client's MAC address from the server's neighbour table, read
    /// once per connection when the port asks for it
    /// ([`ListenOptions::lookup_mac`]) and the client is a direct, on-link
    /// IPv4 peer (never for addresses from a PROXY header).
    pub mac: Option<crate::neighbours::MacAddr>,
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

/// Per-listener options of the accept loop.
#[derive(Clone, Debug, Default)]
pub struct ListenOptions {
    /// Peers that must start each connection with a PROXY protocol v2
    /// header naming the client (load balancers). From any other peer a
    /// PROXY header is refused. `None`: no peer may send one.
    pub proxy_protocol_from: Option<TrustedProxies>,
    /// Read each direct client's MAC from the neighbour table into
    /// [`PeerInfo::mac`] (kms-api's user port).
    pub lookup_mac: bool,
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
    tls_incoming_with(listener, tls, trust, shutdown, ListenOptions::default())
}

/// [`tls_incoming`] with [`ListenOptions`]: before the handshake (within the
/// same timeout), a connection from a `proxy_protocol_from` peer must start
/// with a PROXY v2 header, whose source becomes the peer address; one from
/// any other peer must not. Connections that break these rules are dropped.
pub fn tls_incoming_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    shutdown: Shutdown,
    options: ListenOptions,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let options = Arc::new(options);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, tcp_peer) = match accepted {
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
            let options = options.clone();
            tokio::spawn(async move {
                let established =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, establish(tcp, tcp_peer, &acceptor, &trust, &options));
                match established.await {
                    Ok(Some(connection)) => {
                        let _ = tx.send(Ok(connection)).await;
                    }
                    Ok(None) => {}
                    Err(_) => tracing::debug!(peer = %tcp_peer, "PROXY header or TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Takes one accepted connection through the PROXY header (if any) and the
/// TLS handshake. `None` when it was dropped (and logged).
async fn establish(
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    trust: &ClientTrust,
    options: &ListenOptions,
) -> Option<TlsConnection> {
    let (remote_addr, proxied_by) = client_address(&mut tcp, tcp_peer, options).await?;
    let stream = match acceptor.accept(tcp).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(peer = %remote_addr, proxied_by = ?proxied_by, error = %e, "TLS handshake failed");
            return None;
        }
    };
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| Arc::new(c.iter().map(|d| d.clone().into_owned()).collect::<Vec<_>>()));
    let principal = match (trust, &chain) {
        (ClientTrust::Deployment { trust_domain }, Some(chain)) => {
            chain.first().and_then(|leaf| SpiffeId::from_certificate(leaf)).and_then(|id| id.principal(trust_domain))
        }
        _ => None,
    };
    let mac = match (options.lookup_mac, proxied_by, remote_addr.ip().to_canonical()) {
        (true, None, std::net::IpAddr::V4(v4)) if !v4.is_loopback() => crate::neighbours::mac_of(v4),
        _ => None,
    };
    let info = PeerInfo { remote_addr, proxied_by, mac, client_certificates: chain, principal };
    Some(TlsConnection { stream, info })
}

/// The client's address and the balancer that announced it, after the
/// PROXY header of a trusted peer has been consumed; `None` when the
/// connection must be dropped.
async fn client_address(
    tcp: &mut TcpStream,
    tcp_peer: SocketAddr,
    options: &ListenOptions,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let trusted = options.proxy_protocol_from.as_ref().is_some_and(|from| from.contains(&tcp_peer.ip()));
    if trusted {
        return match proxy_protocol::read_header(tcp).await {
            Ok(ProxyHeader { command: Command::Proxy, source: Some(source), .. }) => Some((source, Some(tcp_peer))),
            // A health check of the balancer itself.
            Ok(ProxyHeader { command: Command::Local, .. }) => Some((tcp_peer, None)),
            // UNIX or unspecified family: the balancer can't say who the
            // client is, and its own address must not stand in for it.
            Ok(ProxyHeader { command: Command::Proxy, source: None, .. }) => {
                tracing::debug!(peer = %tcp_peer, "PROXY header without a client IP address");
                None
            }
            Err(e) => {
                tracing::debug!(peer = %tcp_peer, error = %e, "bad PROXY header from trusted peer");
                None
            }
        };
    }
    match proxy_protocol::starts_with_signature(tcp).await {
        Ok(false) => Some((tcp_peer, None)),
        Ok(true) => {
            tracing::warn!(peer = %tcp_peer, "PROXY header from untrusted peer");
            None
        }
        Err(e) => {
            tracing::debug!(peer = %tcp_peer, error = %e, "connection failed before TLS");
            None
        }
    }
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
    serve_with(listener, tls, trust, policy, routes, shutdown, ListenOptions::default()).await
}

/// [`serve`] with [`ListenOptions`] (see [`tls_incoming_with`]).
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    policy: AccessPolicy,
    routes: Routes,
    shutdown: Shutdown,
    options: ListenOptions,
) -> Result<(), ServeError> {
    let incoming = tls_incoming_with(listener, tls, trust, shutdown.clone(), options);
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
