//! The REST/JSON listener of kms-api: its pytest suite (tests/rest: the
//! contract tables of `/v1` and of the compatible paths, access, cross-plane
//! round trips, bad input, audit, OpenAPI) against a real `skm dev`, and
//! here what needs the server's own knobs: load shedding, PROXY v2 from a
//! trusted balancer, ALPN, off unless configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::admin::v1 as admin;
use skm_e2e::{InProcess, create_key, tls_client, wait_ready};
use skm_runtime::proxy_protocol::{TrustedProxies, encode_v2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READY: Duration = Duration::from_secs(30);

/// tests/rest's pytest suite against a real `skm dev` stack its fixture
/// starts; fails when a test fails or is skipped.
#[test]
fn rest_suite() {
    skm_e2e::pytest("tests/rest", ".", None);
}

/// An HTTP/1.1 answer: status, head (lowercase header lines) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: serde_json::Value,
}

/// Sends `request` (head and body, `Connection: close`) over TLS to
/// `addr`, after `preface` on the bare TCP connection (a PROXY header).
async fn exchange(addr: SocketAddr, ca: &Path, preface: &[u8], request: &[u8]) -> Answer {
    parse(&skm_e2e::https_exchange(addr, ca, preface, request).await)
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn stack_with_rest(configure: impl FnOnce(&mut kms_api::Config)) -> (InProcess, SocketAddr, PathBuf) {
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |c| {
        c.rest_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        configure(c);
    })
    .await
    .unwrap();
    wait_ready(&stack.client().unwrap(), READY).await.unwrap();
    let rest = stack.kms().rest_addr.expect("REST listener bound");
    let ca = stack.profile.ca.clone();
    (stack, rest, ca)
}

/// A keystore loopback may use, with an AES key: (keystore id, key id).
async fn loopback_aes_key(stack: &InProcess) -> (String, String) {
    let skm = stack.client().unwrap();
    let policy = admin::Policy { allow_ips: vec!["127.0.0.1".into()], ..Default::default() };
    let ks = skm_e2e::keystore_with(&skm, "open", policy).await.unwrap();
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    (ks, key)
}

#[tokio::test]
async fn the_rest_listener_is_off_unless_configured() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    assert!(stack.kms().rest_addr.is_none());
    assert!(stack.profile.rest_endpoint.is_empty());
}

/// With `max_in_flight` requests in flight, the next is refused at once
/// with 429, RESOURCE_EXHAUSTED and a Retry-After hint, in the envelope of
/// its surface; `/v1/health` still answers; once the request in flight
/// is done, calls are admitted again.
#[tokio::test]
async fn rest_sheds_beyond_max_in_flight_and_health_still_answers() {
    let (stack, rest, ca) = stack_with_rest(|c| {
        c.rest_limits.max_in_flight = 1;
        c.rest_limits.retry_pushback = Duration::from_millis(1500);
    })
    .await;
    let (ks, key) = loopback_aes_key(&stack).await;

    // Holds the one place: a POST whose body never comes.
    let tcp = TcpStream::connect(rest).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut held = tls_client(&ca, &[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let head = format!(
        "POST /v1/keys/{key}/encrypt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    held.flush().await.unwrap();

    let body = serde_json::json!({ "plaintext": "aGk=" });
    let shed = std::sync::Mutex::new(None);
    skm_e2e::eventually("a request beyond max_in_flight is shed", Duration::from_secs(5), || async {
        let answer = exchange(rest, &ca, b"", &post(&format!("/v1/keys/{key}/encrypt"), &body)).await;
        let refused = answer.status == 429;
        *shed.lock().unwrap() = Some(answer);
        refused
    })
    .await
    .unwrap();
    let shed = shed.into_inner().unwrap().unwrap();
    assert_eq!(shed.body["error"]["code_name"], "RESOURCE_EXHAUSTED", "{shed:?}");
    assert!(shed.body["error"]["message"].as_str().unwrap().contains("max_in_flight"), "{shed:?}");
    assert!(shed.head.contains("retry-after: 2"), "{shed:?}");
    let compat = exchange(rest, &ca, b"", &get(&format!("/keymanager/v1.0/appkey/{ks}/confirm"))).await;
    assert_eq!(compat.status, 429);
    assert_eq!(compat.body["header"]["isSuccessful"], false, "{compat:?}");
    assert_eq!(compat.body["header"]["resultCode"], -8, "{compat:?}");
    let health = exchange(rest, &ca, b"", &get("/v1/health")).await;
    assert_eq!((health.status, &health.body["status"]), (200, &serde_json::json!("SERVING")), "{health:?}");

    drop(held);
    skm_e2e::eventually("REST admits requests again", Duration::from_secs(10), || async {
        exchange(rest, &ca, b"", &post(&format!("/v1/keys/{key}/encrypt"), &body)).await.status == 200
    })
    .await
    .unwrap();
}

/// Behind a trusted balancer the client is the PROXY header's source: the
/// keystore policy sees it and `/v1/whoami` names both; from anyone else a
/// PROXY header closes the connection.
#[tokio::test]
async fn rest_takes_the_client_address_from_a_trusted_balancers_proxy_header() {
    let (stack, rest, ca) = stack_with_rest(|c| {
        c.rest_proxy_protocol_from = Some(TrustedProxies::parse(&["127.0.0.1".to_owned()]).unwrap());
    })
    .await;
    let skm = stack.client().unwrap();
    let ks =
        skm_e2e::keystore_with(&skm, "lb", admin::Policy { allow_ips: vec!["10.1.2.3".into()], ..Default::default() })
            .await
            .unwrap();
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    let client = SocketAddr::from(([10, 1, 2, 3], 40000));
    let header = encode_v2(client, rest);

    let whoami = exchange(rest, &ca, &header, &get("/v1/whoami")).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    assert_eq!(whoami.body["client_ip"], "10.1.2.3");
    assert!(whoami.body["proxied_by"].as_str().unwrap().starts_with("127.0.0.1:"), "{whoami:?}");

    let body = serde_json::json!({ "plaintext": "aGk=" });
    let allowed = exchange(rest, &ca, &header, &post(&format!("/v1/keys/{key}/encrypt"), &body)).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let local = SocketAddr::from(([127, 0, 0, 1], 40000));
    let denied = exchange(rest, &ca, &encode_v2(local, rest), &post(&format!("/v1/keys/{key}/encrypt"), &body)).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.body["error"]["code_name"], "PERMISSION_DENIED");
}

/// The listener offers HTTP/2 and HTTP/1.1 by ALPN, TLS 1.3 only.
#[tokio::test]
async fn rest_negotiates_h2_or_http1_over_tls13() {
    let (_stack, rest, ca) = stack_with_rest(|_| {}).await;
    for (offer, expect) in [(&b"h2"[..], &b"h2"[..]), (b"http/1.1", b"http/1.1")] {
        let tcp = TcpStream::connect(rest).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tls_client(&ca, &[offer]).connect(name, tcp).await.unwrap();
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(expect));
        assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    }
}

/// A request in flight when kms-api is told to stop is answered before the
/// listener returns (as gRPC calls are), and the stop waits for it.
#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_answered() {
    // One place in flight: while the request below holds it, another is
    // shed, which tells that the server is handling it.
    let (mut stack, rest, ca) = stack_with_rest(|c| c.rest_limits.max_in_flight = 1).await;
    let (_, key) = loopback_aes_key(&stack).await;

    let body = serde_json::json!({ "plaintext": "aGk=" }).to_string();
    let tcp = TcpStream::connect(rest).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_client(&ca, &[b"http/1.1"]).connect(name, tcp).await.unwrap();
    let head = format!(
        "POST /v1/keys/{key}/encrypt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..5]).await.unwrap();
    tls.flush().await.unwrap();
    skm_e2e::eventually("the partial request is in flight", Duration::from_secs(5), || async {
        exchange(rest, &ca, b"", &get("/v1/whoami")).await.status == 429
    })
    .await
    .unwrap();

    let stopping = tokio::spawn(async move {
        stack.stop().await.unwrap();
        stack
    });
    skm_e2e::never("kms-api stopped with a REST request in flight", Duration::from_millis(500), || async {
        stopping.is_finished()
    })
    .await
    .unwrap();
    tls.write_all(&body.as_bytes()[5..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let answer = parse(&raw);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body["ciphertext"].is_string(), "{answer:?}");
    tokio::time::timeout(Duration::from_secs(30), stopping).await.expect("stop finishes").unwrap();
}
