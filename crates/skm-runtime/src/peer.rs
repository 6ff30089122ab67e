//! What the server knows about the peer of a request: filled in by the
//! accept loop ([`crate::serve`]), read by the allow-list layer
//! ([`crate::authz`]) and by handlers. Its own module so that serving and
//! authorisation don't import each other.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::identity::Principal;
use crate::limits::connections::ConnectionActivity;

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
    /// ([`crate::ListenOptions::lookup_mac`]) and the client is a direct, on-link
    /// IPv4 peer (never for addresses from a PROXY header).
    pub mac: Option<crate::neighbours::MacAddr>,
    /// The client's certificate chain, leaf first, if it sent one.
    pub client_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The peer's principal, only on ports whose TLS layer verified the
    /// chain against the deployment CA.
    pub principal: Option<Principal>,
    /// Requests in flight on the connection (for its idle timeout).
    pub(crate) activity: Option<Arc<ConnectionActivity>>,
}

impl PeerInfo {
    /// A direct (not proxied) peer at `remote_addr` with nothing else
    /// known yet, for callers that drive handlers without a connection:
    /// in-process tests and the fuzz targets of `fuzz/`.
    pub fn direct(remote_addr: SocketAddr) -> Self {
        Self { remote_addr, proxied_by: None, mac: None, client_certificates: None, principal: None, activity: None }
    }
}
