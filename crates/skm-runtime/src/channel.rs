//! gRPC client channels over SKM's TLS: a connector that dials TCP with
//! TCP_NODELAY and runs the rustls handshake (which checks the server's
//! SPIFFE id), and lazy channels that reconnect by themselves.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

/// A channel address was not `host:port`.
#[derive(Debug, thiserror::Error)]
#[error("invalid address {addr:?}: expected host:port")]
pub struct BadAddress {
    /// The address given.
    pub addr: String,
}

/// A channel to `addr` (`host:port`) that connects on first use and
/// reconnects after failures.
pub fn lazy_channel(addr: &str, tls: Arc<ClientConfig>) -> Result<Channel, BadAddress> {
    lazy_channel_with_timeout(addr, tls, Duration::from_secs(5))
}

/// [`lazy_channel`] with a connect timeout of `connect_timeout` (TCP and
/// the TLS handshake) instead of 5 s.
pub fn lazy_channel_with_timeout(
    addr: &str,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<Channel, BadAddress> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| BadAddress { addr: addr.to_owned() })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let connector = tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']).to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let server_name =
                ServerName::try_from(host).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}
