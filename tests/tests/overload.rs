//! kms-api's user port under attack and overload, end to end: an attacker
//! from 127.0.0.2 holding idle, half-open and idle-TLS connections can't
//! stop a client from 127.0.0.1 encrypting, and its connections are closed
//! after their timeouts; twice the saturating load is answered OK or
//! RESOURCE_EXHAUSTED with bounded memory and health SERVING throughout;
//! request sizes fit each operation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, aes_key, encrypt, wait_ready};
use skm_runtime::{Service, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;

/// Generous bound for anything the server must do "soon".
const DEADLINE: Duration = Duration::from_secs(15);
const ATTACKER: [u8; 4] = [127, 0, 0, 2];

/// The first bytes of a TLS ClientHello record, the rest never sent.
const PARTIAL_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];

async fn tcp_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Reads until the server closes (EOF or reset): true if it did so
/// within [`DEADLINE`].
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn user_addr(stack: &InProcess) -> SocketAddr {
    stack.profile.user_endpoint.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_holding_connections_does_not_stop_a_client_from_encrypting() {
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |config| {
        let limits = &mut config.user_limits;
        // Without the per-address caps the attacker's 180 connections
        // would fill max_connections and lock everybody out.
        limits.max_connections = 64;
        limits.max_connections_per_address = 16;
        limits.max_handshakes_per_address = 8;
        limits.handshake_timeout = Duration::from_secs(3);
        limits.idle_timeout = Duration::from_secs(4);
    })
    .await
    .unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, Duration::from_secs(30)).await.unwrap();
    let key = aes_key(&skm, "victim").await.unwrap();
    let user = user_addr(&stack);

    // The attack, all from 127.0.0.2: idle TLS sessions without a
    // certificate, then idle TCP connections and slowloris (partial
    // ClientHellos), all held while the client below encrypts.
    let roots = skm_runtime::tls::load_roots(&stack.profile.ca).unwrap();
    let server_id = SpiffeId::for_service(skm_e2e::TRUST_DOMAIN, Service::KmsApi).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(skm_runtime::tls::anonymous_client_config(roots, &server_id).unwrap());
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let tcp = tcp_from(ATTACKER, user).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(Ok(tls)) = tokio::time::timeout(DEADLINE, connector.connect(name, tcp)).await {
            sessions.push(tls);
        }
    }
    assert!(!sessions.is_empty(), "no TLS session for the attacker");
    let mut half_open = Vec::new();
    for _ in 0..100 {
        half_open.push(tcp_from(ATTACKER, user).await.unwrap());
    }
    for _ in 0..50 {
        let mut tcp = tcp_from(ATTACKER, user).await.unwrap();
        // A refused connection may already be closed: ignore the error.
        let _ = tcp.write_all(PARTIAL_CLIENT_HELLO).await;
        half_open.push(tcp);
    }

    // Meanwhile the legitimate client encrypts, every call succeeding.
    for i in 0..50u32 {
        encrypt(&skm, &key, &i.to_be_bytes(), b"").await.unwrap_or_else(|e| panic!("call {i}: {e:?}"));
    }

    // The attacker's connections are all closed: at once (over a cap) or
    // after the handshake or idle timeout.
    for (i, tcp) in half_open.iter_mut().enumerate() {
        assert!(closed_by_server(tcp).await, "half-open connection {i} still open");
    }
    for (i, tls) in sessions.iter_mut().enumerate() {
        assert!(closed_by_server(tls).await, "idle TLS session {i} still open");
    }
    // And the client still works (its own connection may have idled out
    // meanwhile: the channel reconnects).
    let mut last = None;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        match encrypt(&skm, &key, b"after", b"").await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.is_none(), "encrypt after the attack: {last:?}");
}

/// Resident memory of this process (the whole stack runs in it), bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_saturating_load_is_answered_ok_or_resource_exhausted() {
    const IN_FLIGHT: u32 = 8;
    let stack = InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |config| {
        config.user_limits.max_in_flight = IN_FLIGHT;
    })
    .await
    .unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, Duration::from_secs(30)).await.unwrap();
    let key = aes_key(&skm, "load").await.unwrap();
    encrypt(&skm, &key, b"warm", b"").await.unwrap();
    let baseline = rss_bytes();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, shed, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    // Twice as many callers as the port admits at once, on four connections,
    // each sending its next call as soon as the last is answered.
    for connection in 0..4 {
        let client = stack.profile.connect().unwrap();
        for _ in 0..(2 * IN_FLIGHT / 4) {
            let (client, key, stop, ok, shed) = (client.clone(), key.clone(), stop.clone(), ok.clone(), shed.clone());
            tasks.push(tokio::spawn(async move {
                let mut keys = client.keys();
                while !stop.load(Ordering::Relaxed) {
                    let req =
                        api::EncryptRequest { key_id: key.clone(), plaintext: vec![connection; 1024], aad: vec![] };
                    match keys.encrypt(req).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(s) if s.code() == Code::ResourceExhausted => {
                            assert!(s.metadata().get("grpc-retry-pushback-ms").is_some(), "no retry hint: {s:?}");
                            shed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(s) => panic!("answer neither OK nor RESOURCE_EXHAUSTED: {s:?}"),
                    };
                }
            }));
        }
    }
    // Health over the user port itself, and memory, throughout.
    let health_skm = skm_client::Profile { operator: None, ..stack.profile.clone() }.connect().unwrap();
    let mut health_checks = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        assert!(skm_e2e::serving(&health_skm, Service::KmsApi).await, "user port health not SERVING under load");
        health_checks += 1;
        peak.fetch_max(rss_bytes(), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, shed, peak) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed), peak.load(Ordering::Relaxed));
    eprintln!("ok {ok}, shed {shed}, health checks {health_checks}, RSS {baseline} -> peak {peak} bytes");
    assert!(ok > 0, "nothing admitted");
    assert!(shed > 0, "nothing shed at twice the admitted concurrency");
    assert!(peak < baseline + 512 * 1024 * 1024, "RSS grew from {baseline} to {peak} bytes");
    // Once the load is gone, everything is admitted again.
    encrypt(&skm, &key, b"after", b"").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_sizes_fit_each_operation() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, Duration::from_secs(30)).await.unwrap();
    let key = aes_key(&skm, "sizes").await.unwrap();
    let (max_plaintext, max_aad) = (kms_api::model::MAX_PLAINTEXT, kms_api::model::MAX_AAD);

    // The largest call the domain takes passes the transport limit...
    let ciphertext = encrypt(&skm, &key, &vec![1; max_plaintext], &vec![2; max_aad]).await.unwrap();
    skm_e2e::decrypt(&skm, &key, &ciphertext, &vec![2; max_aad]).await.unwrap();
    // ...one a little over it is refused by the domain, naming its field...
    let err = encrypt(&skm, &key, &vec![1; max_plaintext + 1], b"").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("plaintext"), "{err:?}");
    // ...and one far over it never reaches the handler: the transport
    // names the RPC's limit.
    let err = encrypt(&skm, &key, &vec![1; 64 * 1024], b"").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("/skm.api.v1.KeyService/Encrypt takes at most"), "{err:?}");

    // A full batch of the largest items fits; a sign request far over
    // its message limit does not.
    let items = (0..kms_api::model::MAX_BATCH)
        .map(|_| api::EncryptRequest { key_id: key.clone(), plaintext: vec![3; max_plaintext], aad: vec![4; max_aad] })
        .collect();
    let batch = skm.keys().batch_encrypt(api::BatchEncryptRequest { items }).await.unwrap().into_inner();
    assert_eq!(batch.results.len(), kms_api::model::MAX_BATCH);
    let err = skm
        .keys()
        .sign(api::SignRequest {
            key_id: key.clone(),
            input: Some(api::sign_request::Input::Message(vec![0; 64 * 1024])),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("/skm.api.v1.KeyService/Sign takes at most"), "{err:?}");
}

#[test]
fn limits_out_of_range_exit_64_naming_field_and_range() {
    let p = skm_e2e::Processes::prepare(DevSeal::Passphrase).unwrap();
    for (daemon, service, var, value, expected) in [
        ("kms-api", Service::KmsApi, "SKM_KMS_API__USER_LIMITS__MAX_IN_FLIGHT", "0", "user_limits.max_in_flight"),
        (
            "kms-api",
            Service::KmsApi,
            "SKM_KMS_API__ADMIN_LIMITS__IDLE_TIMEOUT_SECS",
            "0",
            "admin_limits.idle_timeout_secs",
        ),
        ("kms-api", Service::KmsApi, "SKM_KMS_API__USER_LIMITS__MAX_CONECTIONS", "5", "max_conections"),
        (
            "root-keyd",
            Service::RootKeyd,
            "SKM_ROOT_KEYD__LIMITS__HANDSHAKE_TIMEOUT_MS",
            "1",
            "limits.handshake_timeout_ms",
        ),
        ("system-keyd", Service::SystemKeyd, "SKM_SYSTEM_KEYD__LIMITS__MAX_CONNECTIONS", "0", "limits.max_connections"),
    ] {
        let out = std::process::Command::new(skm_e2e::skm_bin())
            .args(["daemon", daemon, "check-config", "--config"])
            .arg(p.stack.config(service))
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{var}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{var}={value}: {stderr}");
        if value != "5" {
            assert!(stderr.contains(&format!("is {value}; must be ")), "{stderr}");
        }
    }
    // The defaults pass.
    let out = std::process::Command::new(skm_e2e::skm_bin())
        .args(["daemon", "kms-api", "check-config", "--config"])
        .arg(p.stack.config(Service::KmsApi))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Soft and hard "Max open files" of a process.
fn open_files_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[tokio::test]
async fn a_daemon_raises_its_open_files_limit_to_the_hard_limit() {
    // Children inherit the soft limit: lower this process's below the hard
    // one so the daemon has something to raise (the other tests here need
    // a few hundred descriptors).
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if hard < 2048 {
        eprintln!("hard open files limit {hard} too low to test");
        return;
    }
    rlimit::Resource::NOFILE.set(1024, hard).unwrap();
    let mut p = skm_e2e::Processes::prepare(DevSeal::Passphrase).unwrap();
    p.start(Service::RootKeyd).unwrap();
    let pid = p.pid(Service::RootKeyd).unwrap();
    let raised = skm_e2e::eventually("root-keyd's soft limit raised", DEADLINE, || async {
        open_files_limits(pid).is_some_and(|(soft, hard)| soft == hard)
    })
    .await;
    let seen = open_files_limits(pid);
    p.stop_all().await;
    raised.unwrap_or_else(|e| panic!("{e}: {seen:?}"));
}
