//! Serving gRPC over SKM's TLS: our own accept loop (TCP_NODELAY, PROXY
//! protocol from trusted load balancers, connection limits, handshake and
//! idle timeouts, peer identity), tonic on top with HTTP/2 keep-alive and
//! a stream cap, the RPC metrics, the request limits and the per-RPC
//! allow-list in front of every handler ([`crate::limits`],
//! [`crate::metrics`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;

use crate::authz::{AccessPolicy, AuthorizeLayer};
use crate::identity::SpiffeId;
use crate::limits::ListenerLimits;
use crate::limits::connections::{AddressGuard, ConnectionActivity, ConnectionLimiter, IdleTimer};
use crate::limits::requests::RequestLimitsLayer;
use crate::metrics::{ListenerMetrics, RpcMetricsLayer};
use crate::peer::PeerInfo;
use crate::proxy_protocol::{self, Command, ProxyHeader, TrustedProxies};
use crate::shutdown::Shutdown;

/// First pause after a failed accept (EMFILE, ENFILE, ENOBUFS…); doubled
/// on each further failure up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Refused connections are logged at most once per this period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

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
    /// What a client may hold on this listener.
    pub limits: ListenerLimits,
    /// Where this listener's connections and RPCs are counted (none: not
    /// counted).
    pub metrics: Option<ListenerMetrics>,
    /// Where every RPC but health and reflection is audited
    /// (root-keyd, system-keyd; kms-api's core audits its own).
    pub audit: Option<crate::tier_audit::TierAudit>,
}

/// An accepted, handshaken TLS connection with its peer information. It
/// holds its places in the listener's connection counts until dropped,
/// and reads as end-of-stream once idle past its timeout.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    idle: IdleTimer,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _client: AddressGuard,
}

impl TlsConnection {
    /// What the accept loop learnt of the peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.idle.poll_expired(cx).is_ready() {
            tracing::debug!(peer = %this.info.remote_addr, "closing idle connection");
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
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
/// finished connections, within the default [`ListenerLimits`]. Stops
/// accepting at shutdown.
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
///
/// Connections beyond `max_connections`, beyond `max_handshakes_per_address`
/// unfinished handshakes of one TCP peer, or beyond
/// `max_connections_per_address` of one client address are closed at once.
/// Failed accepts (out of file descriptors) back off exponentially.
pub fn tls_incoming_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: ClientTrust,
    shutdown: Shutdown,
    options: ListenOptions,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limiter = Arc::new(ConnectionLimiter::new(&options.limits));
    if let Some(metrics) = &options.metrics {
        let limiter = Arc::downgrade(&limiter);
        metrics.open_connections(move || limiter.upgrade().map_or(0, |l| l.open()));
    }
    let options = Arc::new(options);
    tokio::spawn(async move {
        let mut backoff = AcceptBackoff::default();
        let mut refusals = Burst::default();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, tcp_peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    let pause = backoff.failed(&e);
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            backoff.succeeded();
            let trusted_proxy = options.proxy_protocol_from.as_ref().is_some_and(|from| from.contains(&tcp_peer.ip()));
            let admission = match limiter.admit(tcp_peer.ip(), trusted_proxy) {
                Ok(admission) => admission,
                Err(refused) => {
                    if let Some(metrics) = &options.metrics {
                        metrics.refused(refused.limit());
                    }
                    refusals.note(|suppressed| {
                        tracing::warn!(peer = %tcp_peer, reason = %refused, suppressed, "connection refused");
                    });
                    drop(tcp);
                    continue;
                }
            };
            if let Some(metrics) = &options.metrics {
                metrics.accepted();
            }
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "set TCP_NODELAY failed");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let trust = trust.clone();
            let options = options.clone();
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let timeout = options.limits.handshake_timeout;
                let established = tokio::time::timeout(
                    timeout,
                    establish(tcp, tcp_peer, &acceptor, &trust, &options, &limiter, admission),
                );
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

/// Exponential pause after failed accepts; logs the first failure of a
/// burst and, once accepts work again, how many followed it.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    failures: u64,
    pause: Duration,
}

impl AcceptBackoff {
    pub(crate) fn failed(&mut self, e: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %e, "accept failed; backing off until it works again");
        }
        self.failures += 1;
        self.pause = if self.pause.is_zero() { ACCEPT_BACKOFF_MIN } else { (self.pause * 2).min(ACCEPT_BACKOFF_MAX) };
        self.pause
    }

    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failures = self.failures, "accept works again");
            *self = Self::default();
        }
    }
}

/// Logs an event at most once per [`REFUSAL_LOG_PERIOD`], with how many
/// were not logged since the last time.
#[derive(Debug, Default)]
struct Burst {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl Burst {
    fn note(&mut self, log: impl FnOnce(u64)) {
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_PERIOD) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Takes one accepted connection through the PROXY header (if any) and the
/// TLS handshake. `None` when it was dropped (and logged).
async fn establish(
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    trust: &ClientTrust,
    options: &ListenOptions,
    limiter: &ConnectionLimiter,
    admission: crate::limits::connections::Admission,
) -> Option<TlsConnection> {
    let (remote_addr, proxied_by) = client_address(&mut tcp, tcp_peer, options).await?;
    let client = match limiter.admit_client(remote_addr.ip()) {
        Ok(guard) => guard,
        Err(refused) => {
            if let Some(metrics) = &options.metrics {
                metrics.refused(refused.limit());
            }
            tracing::debug!(peer = %remote_addr, proxied_by = ?proxied_by, reason = %refused, "connection refused");
            return None;
        }
    };
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
    let activity = ConnectionActivity::new();
    let idle = IdleTimer::new(activity.clone(), options.limits.idle_timeout);
    let info =
        PeerInfo { remote_addr, proxied_by, mac, client_certificates: chain, principal, activity: Some(activity) };
    Some(TlsConnection { stream, info, idle, _slot: admission.handshake_done(), _client: client })
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
    let limits = options.limits.clone();
    let metrics = RpcMetricsLayer::new(options.metrics.clone());
    let audit = options.audit.clone();
    let incoming = tls_incoming_with(listener, tls, trust, shutdown.clone(), options);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_concurrent_streams));
    let stop = async move { shutdown.wait().await };
    // Two stacks rather than a pass-through layer, so that kms-api's
    // ports (audited by its core) carry no audit layer at all.
    match audit {
        Some(audit) => {
            server
                .layer(metrics)
                .layer(RequestLimitsLayer::new(&limits))
                .layer(crate::tier_audit::TierAuditLayer::new(audit))
                .layer(AuthorizeLayer::new(policy))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, stop)
                .await?
        }
        None => {
            server
                .layer(metrics)
                .layer(RequestLimitsLayer::new(&limits))
                .layer(AuthorizeLayer::new(policy))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, stop)
                .await?
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..10).map(|_| backoff.failed(&emfile)).collect();
        assert_eq!(pauses[0], ACCEPT_BACKOFF_MIN);
        assert_eq!(pauses[1], ACCEPT_BACKOFF_MIN * 2);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap(), ACCEPT_BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), ACCEPT_BACKOFF_MIN);
    }

    #[tokio::test]
    async fn burst_logs_once_per_period_with_the_number_suppressed() {
        let mut burst = Burst::default();
        let mut logged = Vec::new();
        for _ in 0..5 {
            burst.note(|suppressed| logged.push(suppressed));
        }
        assert_eq!(logged, vec![0]);
        burst.last = tokio::time::Instant::now().checked_sub(REFUSAL_LOG_PERIOD);
        burst.note(|suppressed| logged.push(suppressed));
        assert_eq!(logged, vec![0, 4]);
    }
}
