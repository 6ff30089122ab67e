//! The listener limits through the real accept loop and tonic stack:
//! `serve_with` on 127.0.0.1:0 with a scripted fake of root-keyd's
//! service, TLS clients without certificates, attackers from 127.0.0.2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prost::Message;
use skm_pki::CertificateAuthority;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::root::v1::root_key_service_server::{RootKeyService, RootKeyServiceServer};
use skm_proto::root::v1::{
    GenerateSystemKeyRequest, GenerateSystemKeyResponse, InitRequest, InitResponse, SealStatusRequest,
    SealStatusResponse, UnsealRequest, UnsealResponse, UnwrapSystemKeyRequest, UnwrapSystemKeyResponse,
};
use skm_runtime::limits::requests::RETRY_PUSHBACK;
use skm_runtime::limits::{ListenerLimits, RequestSizes};
use skm_runtime::serve::{ClientTrust, ListenOptions};
use skm_runtime::shutdown::{self, ShutdownTrigger};
use skm_runtime::tls::{TlsIdentity, anonymous_client_config, certs_from_pem, install_crypto_provider};
use skm_runtime::{AccessPolicy, Allow, Service, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;

/// Generous bound for anything the server must do "soon".
const DEADLINE: Duration = Duration::from_secs(10);
const SERVICE: &str = "skm.root.v1.RootKeyService";
const UNSEAL: &str = "/skm.root.v1.RootKeyService/Unseal";

/// A scripted root-keyd: `SealStatus` waits at `gate`, `Init` never
/// returns (and counts its cancellation), the rest answer at once.
#[derive(Clone)]
struct Fake {
    gate: Arc<tokio::sync::Semaphore>,
    gated: Arc<AtomicUsize>,
    gate_closed: bool,
    cancelled: Arc<AtomicUsize>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            gated: Arc::default(),
            gate_closed: false,
            cancelled: Arc::default(),
        }
    }
}

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl RootKeyService for Fake {
    async fn init(&self, _: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let _guard = CountOnDrop(self.cancelled.clone());
        std::future::pending::<()>().await;
        Ok(Response::new(InitResponse::default()))
    }

    async fn seal_status(&self, _: Request<SealStatusRequest>) -> Result<Response<SealStatusResponse>, Status> {
        if self.gate_closed {
            self.gated.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
        }
        Ok(Response::new(SealStatusResponse::default()))
    }

    async fn unseal(&self, _: Request<UnsealRequest>) -> Result<Response<UnsealResponse>, Status> {
        Ok(Response::new(UnsealResponse::default()))
    }

    async fn generate_system_key(
        &self,
        _: Request<GenerateSystemKeyRequest>,
    ) -> Result<Response<GenerateSystemKeyResponse>, Status> {
        Ok(Response::new(GenerateSystemKeyResponse::default()))
    }

    async fn unwrap_system_key(
        &self,
        _: Request<UnwrapSystemKeyRequest>,
    ) -> Result<Response<UnwrapSystemKeyResponse>, Status> {
        Ok(Response::new(UnwrapSystemKeyResponse::default()))
    }

    async fn rotate_root_key(
        &self,
        _: Request<skm_proto::root::v1::RotateRootKeyRequest>,
    ) -> Result<Response<skm_proto::root::v1::RotateRootKeyResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn rewrap_system_key(
        &self,
        _: Request<skm_proto::root::v1::RewrapSystemKeyRequest>,
    ) -> Result<Response<skm_proto::root::v1::RewrapSystemKeyResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn start_rekey(
        &self,
        _: Request<skm_proto::root::v1::StartRekeyRequest>,
    ) -> Result<Response<skm_proto::root::v1::StartRekeyResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn submit_rekey_share(
        &self,
        _: Request<skm_proto::root::v1::SubmitRekeyShareRequest>,
    ) -> Result<Response<skm_proto::root::v1::SubmitRekeyShareResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn revoke_operator(
        &self,
        _: Request<skm_proto::root::v1::RevokeOperatorRequest>,
    ) -> Result<Response<skm_proto::root::v1::RevokeOperatorResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn verify_audit(
        &self,
        _: Request<skm_proto::root::v1::VerifyTierAuditRequest>,
    ) -> Result<Response<skm_proto::root::v1::VerifyTierAuditResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn destroy_root_keys(
        &self,
        _: Request<skm_proto::root::v1::DestroyRootKeysRequest>,
    ) -> Result<Response<skm_proto::root::v1::DestroyRootKeysResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
}

struct Server {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    _shutdown: ShutdownTrigger,
}

impl Server {
    async fn start(fake: Fake, limits: ListenerLimits) -> Self {
        install_crypto_provider();
        let ca = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
        let issued = ca.issue_service(Service::RootKeyd, &[], 1).unwrap();
        let identity =
            TlsIdentity::from_pem(ca.cert_pem().as_bytes(), issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
                .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs_from_pem(ca.cert_pem().as_bytes()).unwrap() {
            roots.add(cert).unwrap();
        }
        let server_id = SpiffeId::for_service("skm.test", Service::RootKeyd).unwrap();
        let tls = anonymous_client_config(roots, &server_id).unwrap();

        let mut routes = tonic::service::Routes::builder();
        let health = skm_runtime::health::add_health_and_reflection(&mut routes, &[SERVICE]).await;
        health.set(true).await;
        routes.add_service(RootKeyServiceServer::new(fake));
        let policy = AccessPolicy::new().with_health_and_reflection().allow_service(SERVICE, &[Allow::AnyPeer]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let server_tls = identity.optional_client_cert_server_config().unwrap();
        let options = ListenOptions { limits, ..Default::default() };
        let routes = routes.routes();
        tokio::spawn(async move {
            skm_runtime::serve::serve_with(
                listener,
                server_tls,
                ClientTrust::PerRequest,
                policy,
                routes,
                shutdown,
                options,
            )
            .await
            .unwrap();
        });
        Server { addr, tls, _shutdown: trigger }
    }

    fn channel(&self) -> Channel {
        skm_runtime::channel::lazy_channel(&format!("localhost:{}", self.addr.port()), self.tls.clone()).unwrap()
    }

    fn client(&self) -> RootKeyServiceClient<Channel> {
        RootKeyServiceClient::new(self.channel())
    }

    async fn serving(&self) -> bool {
        let mut health = HealthClient::new(self.channel());
        let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
        matches!(
            tokio::time::timeout(DEADLINE, health.check(req)).await,
            Ok(Ok(r)) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        )
    }

    /// A TCP connection from `source` (any address of 127/8).
    async fn tcp_from(&self, source: [u8; 4]) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(self.addr).await
    }
}

/// Polls `check` every 20 ms until it holds, for at most [`DEADLINE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the server closed `tcp` (EOF or reset) within [`DEADLINE`].
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Handshake bytes or frames the server sent first.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The first bytes of a TLS 1.3 ClientHello record header, the rest never
/// sent (slowloris).
const PARTIAL_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_in_flight_requests_are_shed_at_once_and_health_still_answers() {
    let fake = Fake { gate_closed: true, ..Fake::default() };
    let limits = ListenerLimits { max_in_flight: 4, retry_pushback: Duration::from_millis(250), ..Default::default() };
    let server = Server::start(fake.clone(), limits).await;
    let client = server.client();

    let admitted: Vec<_> = (0..4)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.seal_status(SealStatusRequest {}).await })
        })
        .collect();
    eventually("4 handlers waiting at the gate", || fake.gated.load(Ordering::SeqCst) == 4).await;

    for _ in 0..10 {
        let status = tokio::time::timeout(DEADLINE, client.clone().seal_status(SealStatusRequest {}))
            .await
            .expect("a shed request is answered at once")
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_in_flight"), "{status:?}");
        assert_eq!(status.metadata().get(RETRY_PUSHBACK).unwrap(), "250");
    }
    assert!(server.serving().await, "health must answer while the port sheds");
    assert_eq!(fake.gated.load(Ordering::SeqCst), 4, "a shed request reached the handler");

    fake.gate.add_permits(4);
    for call in admitted {
        call.await.unwrap().unwrap();
    }
    // The permits came back.
    fake.gate.add_permits(1);
    client.clone().seal_status(SealStatusRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gets_at_most_max_concurrent_streams() {
    let fake = Fake { gate_closed: true, ..Fake::default() };
    let limits = ListenerLimits { max_concurrent_streams: 2, ..Default::default() };
    let server = Server::start(fake.clone(), limits).await;
    let client = server.client();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.seal_status(SealStatusRequest {}).await })
        })
        .collect();
    eventually("2 handlers waiting at the gate", || fake.gated.load(Ordering::SeqCst) == 2).await;
    // The other three wait in the client for a stream, or (opened before
    // the client saw the server's SETTINGS) are refused with
    // REFUSED_STREAM; none reaches a handler.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(fake.gated.load(Ordering::SeqCst), 2, "a third stream was opened");
    }
    fake.gate.add_permits(5);
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
    }
    assert!(ok >= 2, "{ok}");
    assert_eq!(fake.gated.load(Ordering::SeqCst), ok, "a refused stream reached a handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_deadline_drops_the_handler_and_the_cap_answers_deadline_exceeded() {
    let fake = Fake::default();
    let limits = ListenerLimits { max_request_time: Duration::from_millis(300), ..Default::default() };
    let server = Server::start(fake.clone(), limits).await;
    let mut client = server.client();

    // No client deadline: the server's cap ends the call.
    let status = tokio::time::timeout(DEADLINE, client.init(InitRequest::default())).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("300 ms"), "{status:?}");
    eventually("the first handler dropped", || fake.cancelled.load(Ordering::SeqCst) == 1).await;

    // A client deadline shorter than the cap: the handler is dropped at it.
    // (tonic's client enforces its own deadline too, so the code the client
    // sees may be its local CANCELLED; what matters here is the server.)
    let slow = Fake::default();
    let limits = ListenerLimits { max_request_time: Duration::from_secs(600), ..Default::default() };
    let server = Server::start(slow.clone(), limits).await;
    let mut request = Request::new(InitRequest::default());
    request.set_timeout(Duration::from_millis(200));
    let status = tokio::time::timeout(DEADLINE, server.client().init(request)).await.unwrap().unwrap_err();
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    eventually("the handler dropped at the client's deadline", || slow.cancelled.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_sizes_at_and_over_each_limit() {
    let limits = ListenerLimits { request_sizes: RequestSizes::new(2048), ..Default::default() }
        .with_request_size(&[UNSEAL], 10_000);
    let server = Server::start(Fake::default(), limits).await;
    let mut client = server.client();

    // The body is the 5-byte gRPC prefix plus the encoded message.
    let unseal = |len: usize| UnsealRequest { share: vec![7; len] };
    let sized = |body: usize| unseal((0..body).rev().find(|&n| 5 + unseal(n).encoded_len() == body).unwrap());
    client.unseal(sized(10_000)).await.unwrap();
    let status = client.unseal(sized(10_001)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(UNSEAL) && status.message().contains("10000"), "{status:?}");

    // Unlisted RPCs get the port's default.
    let unwrap = |len: usize| UnwrapSystemKeyRequest { key: None, recipient_public_key: vec![1; len] };
    let fits = (0..2048).rev().find(|&n| 5 + unwrap(n).encoded_len() == 2048).unwrap();
    client.unwrap_system_key(unwrap(fits)).await.unwrap();
    let status = client.unwrap_system_key(unwrap(fits + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("max_request_bytes") && status.message().contains("2048"), "{status:?}");

    // The connection is still good.
    client.seal_status(SealStatusRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_the_port_and_idle_connections_are_closed() {
    let limits = ListenerLimits {
        max_connections: 64,
        max_connections_per_address: 8,
        max_handshakes_per_address: 4,
        handshake_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let server = Server::start(Fake::default(), limits).await;

    // Slowloris: four partial ClientHellos fill 127.0.0.2's handshakes; a
    // fifth connection is closed at once.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut tcp = server.tcp_from([127, 0, 0, 2]).await.unwrap();
        tcp.write_all(PARTIAL_CLIENT_HELLO).await.unwrap();
        slow.push(tcp);
    }
    // (The accept loop takes connections in order, so the four are counted
    // before the fifth.)
    let mut refused = server.tcp_from([127, 0, 0, 2]).await.unwrap();
    assert!(closed_by_server(&mut refused).await, "fifth pending handshake not refused");
    // Refused for the count, not by the handshake timeout: the four are
    // still open.
    let mut buf = [0u8; 16];
    for tcp in &slow {
        let e = tcp.try_read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "a pending handshake was closed early");
    }

    // Meanwhile a client from 127.0.0.1 is served.
    let mut client = server.client();
    client.seal_status(SealStatusRequest {}).await.unwrap();

    // The slow ones are closed by the handshake timeout.
    for tcp in &mut slow {
        assert!(closed_by_server(tcp).await, "half-open connection not closed");
    }

    // Established, idle TLS connections from 127.0.0.2: at most 8 are
    // kept, and those are closed after the idle timeout.
    let connector = tokio_rustls::TlsConnector::from(server.tls.clone());
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let tcp = server.tcp_from([127, 0, 0, 2]).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        match connector.connect(name, tcp).await {
            Ok(tls) => idle.push(tls),
            Err(_) => refused += 1,
        }
    }
    // TLS 1.3: the client finishes before the server has counted it, so a
    // refused one may only show when read.
    let mut open = 0;
    for tls in &mut idle {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await {
            Err(_) => open += 1,
            Ok(Ok(0) | Err(_)) => refused += 1,
            Ok(Ok(_)) => open += 1,
        }
    }
    assert!(open <= 8, "{open} idle connections kept from one address");
    assert!(refused >= 4, "only {refused} refused");
    eventually_ok(&mut client).await;
    for tls in &mut idle {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("idle connection not closed"),
            }
        }
    }
    // The client's own connection was idle too; it reconnects and works.
    eventually_ok(&mut client).await;
}

async fn eventually_ok(client: &mut RootKeyServiceClient<Channel>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while client.seal_status(SealStatusRequest {}).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "client never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
