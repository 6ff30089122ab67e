//! The accept loop with PROXY protocol v2: real listener on 127.0.0.1:0, real
//! TLS clients writing hand-built headers before their ClientHello.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use skm_pki::CertificateAuthority;
use skm_runtime::ListenerLimits;
use skm_runtime::PeerInfo;
use skm_runtime::proxy_protocol::{SIGNATURE, TrustedProxies, encode_v2};
use skm_runtime::serve::{ClientTrust, ListenOptions, TlsConnection, tls_incoming_with};
use skm_runtime::shutdown::{self, ShutdownTrigger};
use skm_runtime::tls::{TlsIdentity, anonymous_client_config, certs_from_pem, install_crypto_provider};
use skm_runtime::{Service, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing_subscriber::fmt::MakeWriter;

/// How long a test waits for the server to yield a connection.
const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    incoming: ReceiverStream<std::io::Result<TlsConnection>>,
    connector: TlsConnector,
    _shutdown: ShutdownTrigger,
}

async fn server(proxy_protocol_from: Option<&[&str]>) -> Server {
    server_with(proxy_protocol_from, ListenerLimits::default()).await
}

async fn server_with(proxy_protocol_from: Option<&[&str]>, limits: ListenerLimits) -> Server {
    install_crypto_provider();
    let ca = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
    let issued = ca.issue_service(Service::KmsApi, &[], 1).unwrap();
    let identity =
        TlsIdentity::from_pem(ca.cert_pem().as_bytes(), issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(ca.cert_pem().as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let server_id = SpiffeId::for_service("skm.test", Service::KmsApi).unwrap();
    let connector = TlsConnector::from(anonymous_client_config(roots, &server_id).unwrap());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let options = ListenOptions {
        proxy_protocol_from: proxy_protocol_from.map(|from| TrustedProxies::parse(from).unwrap()),
        lookup_mac: false,
        limits,
        metrics: None,
        audit: None,
    };
    let incoming = tls_incoming_with(
        listener,
        identity.optional_client_cert_server_config().unwrap(),
        ClientTrust::PerRequest,
        shutdown,
        options,
    );
    Server { addr, incoming, connector, _shutdown: trigger }
}

impl Server {
    /// Connects, writes `prefix`, then runs a TLS handshake. Also returns
    /// the client's local address (the TCP peer the server sees).
    async fn connect(&self, prefix: &[u8]) -> std::io::Result<(TlsStream<TcpStream>, SocketAddr)> {
        let mut tcp = TcpStream::connect(self.addr).await?;
        let local = tcp.local_addr()?;
        tcp.write_all(prefix).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self.connector.connect(name, tcp).await?;
        Ok((tls, local))
    }

    /// The next connection the server yields.
    async fn next(&mut self) -> TlsConnection {
        tokio::time::timeout(DEADLINE, self.incoming.next()).await.unwrap().unwrap().unwrap()
    }

    async fn next_peer(&mut self) -> PeerInfo {
        self.next().await.connect_info()
    }

    /// Asserts the handshake after `prefix` fails, then that a good
    /// connection (made with `control`) is the next one yielded, so the
    /// refused one never was.
    async fn assert_dropped(&mut self, prefix: &[u8], control: &[u8]) {
        assert!(self.connect(prefix).await.is_err(), "handshake after {prefix:02x?} succeeded");
        let (_client, local) = self.connect(control).await.unwrap();
        let info = self.next_peer().await;
        assert!(
            info.remote_addr == local || info.proxied_by == Some(local),
            "yielded {info:?}, expected the control connection from {local}"
        );
    }
}

/// What the server logged. `#[tokio::test]` runs the server's tasks on the
/// test's thread, so a thread-local subscriber sees them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn count(&self, message: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap()).matches(message).count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn header(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn client_header() -> Vec<u8> {
    encode_v2("203.0.113.9:40000".parse().unwrap(), "10.0.0.1:8443".parse().unwrap())
}

#[tokio::test]
async fn trusted_peer_header_sets_the_client_address() {
    let mut server = server(Some(&["127.0.0.0/8"])).await;
    let source: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let (mut client, local) = server.connect(&encode_v2(source, server.addr)).await.unwrap();
    let mut connection = server.next().await;
    let info = connection.connect_info();
    assert_eq!(info.remote_addr, source);
    assert_eq!(info.proxied_by, Some(local));

    // The stream after the header is the TLS session, intact.
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 4];
    connection.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // IPv6 clients behind an IPv4 balancer.
    let source: SocketAddr = "[2001:db8::9]:40001".parse().unwrap();
    let _client = server.connect(&encode_v2(source, "[2001:db8::1]:443".parse().unwrap())).await.unwrap();
    assert_eq!(server.next_peer().await.remote_addr, source);
}

#[tokio::test]
async fn local_command_keeps_the_tcp_peer() {
    let mut server = server(Some(&["127.0.0.1"])).await;
    for local_header in [header(0x20, 0x00, &[]), header(0x20, 0x11, &client_header()[16..])] {
        let (_client, local) = server.connect(&local_header).await.unwrap();
        let info = server.next_peer().await;
        assert_eq!((info.remote_addr, info.proxied_by), (local, None));
    }
}

#[tokio::test]
async fn trusted_peer_without_header_is_dropped() {
    let (logs, _guard) = Logs::capture();
    let mut server = server(Some(&["127.0.0.1/32"])).await;
    server.assert_dropped(&[], &client_header()).await;
    assert_eq!(logs.count("bad PROXY header from trusted peer"), 1);
}

#[tokio::test]
async fn malformed_headers_from_trusted_peer_are_dropped() {
    let (logs, _guard) = Logs::capture();
    let mut server = server(Some(&["::ffff:127.0.0.0/104"])).await;
    let good = client_header();
    let mut bad_signature = good.clone();
    bad_signature[4] = 1;
    let mut oversize = good[..14].to_vec();
    oversize.extend_from_slice(&2049u16.to_be_bytes());
    let refused = [
        ("wrong version", header(0x11, 0x11, &good[16..])),
        ("unknown command", header(0x2f, 0x11, &good[16..])),
        ("bad signature", bad_signature),
        ("truncated IPv4 block", header(0x21, 0x11, &good[16..24])),
        ("truncated IPv6 block", header(0x21, 0x21, &good[16..])),
        ("unknown family", header(0x21, 0x51, &good[16..])),
        ("oversize length", oversize),
        ("no client address (AF_UNSPEC)", header(0x21, 0x00, &[])),
    ];
    let refusals = || logs.count("bad PROXY header from trusted peer") + logs.count("without a client IP address");
    for (i, (what, prefix)) in refused.iter().enumerate() {
        server.assert_dropped(prefix, &good).await;
        assert_eq!(refusals(), i + 1, "{what}");
    }

    // A header cut short by the peer closing its side.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&good[..20]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert!(matches!(tcp.read_to_end(&mut rest).await, Ok(0) | Err(_)));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while refusals() < refused.len() + 1 {
        assert!(tokio::time::Instant::now() < deadline, "EOF inside the header was not refused");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn untrusted_peer_with_header_is_dropped() {
    // rustls would refuse these bytes too; the log shows the PROXY check did.
    let (logs, _guard) = Logs::capture();
    let mut expected = 0;
    for trusted in [Some(&["10.0.0.0/8", "fd00::/8"][..]), None] {
        let mut server = server(trusted).await;
        server.assert_dropped(&client_header(), &[]).await;
        server.assert_dropped(&header(0x20, 0x00, &[]), &[]).await;
        // Even the bare signature, trickled in two parts.
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&SIGNATURE[..3]).await.unwrap();
        tcp.flush().await.unwrap();
        tcp.write_all(&SIGNATURE[3..]).await.unwrap();
        let mut rest = Vec::new();
        assert!(matches!(tcp.read_to_end(&mut rest).await, Ok(0) | Err(_)));
        expected += 3;
        assert_eq!(logs.count("PROXY header from untrusted peer"), expected);
    }
    assert_eq!(logs.count("TLS handshake failed"), 0);
}

#[tokio::test]
async fn untrusted_peer_without_header_uses_the_tcp_address() {
    for trusted in [Some(&["10.0.0.0/8"][..]), None] {
        let mut server = server(trusted).await;
        let (_client, local) = server.connect(&[]).await.unwrap();
        let info = server.next_peer().await;
        assert_eq!((info.remote_addr, info.proxied_by), (local, None));
        assert!(info.principal.is_none() && info.client_certificates.is_none());
    }
}

#[tokio::test]
async fn behind_a_balancer_the_proxied_client_is_counted_not_the_balancer() {
    let limits =
        ListenerLimits { max_connections_per_address: 2, max_handshakes_per_address: 1, ..ListenerLimits::default() };
    let mut server = server_with(Some(&["127.0.0.1"]), limits).await;
    let a: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let b: SocketAddr = "203.0.113.10:40000".parse().unwrap();

    // The balancer holds two unfinished handshakes (header sent, no
    // ClientHello): more than max_handshakes_per_address, yet not refused,
    // because its connections count for the clients it names.
    let mut pending = Vec::new();
    for source in ["198.51.100.1:1", "198.51.100.2:2"] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&encode_v2(source.parse().unwrap(), server.addr)).await.unwrap();
        pending.push(tcp);
    }
    // Client a: two connections are kept, a third is refused...
    let mut held = Vec::new();
    for _ in 0..2 {
        let (client, _) = server.connect(&encode_v2(a, server.addr)).await.unwrap();
        let connection = server.next().await;
        assert_eq!(connection.connect_info().remote_addr, a);
        held.push((client, connection));
    }
    // ...while client b, through the same balancer, is served.
    server.assert_dropped(&encode_v2(a, server.addr), &encode_v2(b, server.addr)).await;
    // Once one of a's connections closes, a gets a slot again.
    drop(held.pop());
    let (_client, _) = server.connect(&encode_v2(a, server.addr)).await.unwrap();
    assert_eq!(server.next_peer().await.remote_addr, a);
    drop(pending);
}
