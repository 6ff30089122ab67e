//! The metrics listeners of the three tiers, as real processes: a known
//! sequence of calls (encrypts answered OK, refused by a keystore policy,
//! for an unknown key, shed by the load shedder; connections refused by a
//! limit; a call refused by root-keyd's allow-list) moves exactly the
//! counters it should, scraped over HTTP and parsed by an independent
//! parser; the `[metrics]` table is validated at start; `skm dev` turns the
//! listeners on and records them in its profile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::admin::v1 as pb;
use skm_e2e::{Processes, Scrape, aes_key, create_key, encrypt, eventually, keystore_with, scrape, wait_ready};
use skm_runtime::Service;
use tonic::Code;

const READY: Duration = Duration::from_secs(60);
const ENCRYPT: [(&str, &str); 3] =
    [("port", "user"), ("grpc_service", "skm.api.v1.KeyService"), ("grpc_method", "Encrypt")];
/// Requests kms-api's user port admits at once in this test.
const MAX_IN_FLIGHT: usize = 2;
/// Unfinished TLS handshakes one address may hold on the user port here.
const MAX_HANDSHAKES: usize = 4;

/// `after - before` of one series.
fn delta(before: &Scrape, after: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(metric, labels) - before.value(metric, labels)
}

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_call_sequence_on_every_tier() {
    let mut p = Processes::prepare_with_metrics(DevSeal::Passphrase).unwrap();
    let kms_config = p.stack.config(Service::KmsApi);
    let text = std::fs::read_to_string(&kms_config).unwrap();
    std::fs::write(
        &kms_config,
        format!(
            "{text}\n[user_limits]\nmax_in_flight = {MAX_IN_FLIGHT}\nmax_handshakes_per_address = {MAX_HANDSHAKES}\n"
        ),
    )
    .unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    if let Err(e) = wait_ready(&skm, READY).await {
        panic!("{e}\n{}", p.logs());
    }
    let endpoint = |s: Service| p.stack.profile.metrics.get(s.name()).cloned().expect("metrics endpoint in profile");

    // Set-up over the admin port: a key this client may use, and one in a
    // keystore that admits only another address.
    let key = aes_key(&skm, "ks-allowed-7f3a").await.unwrap();
    let elsewhere = keystore_with(
        &skm,
        "ks-elsewhere-9c1b",
        pb::Policy { allow_ips: vec!["192.0.2.1".into()], ..Default::default() },
    )
    .await
    .unwrap();
    let denied_key = create_key(&skm, &elsewhere, "denied", pb::KeyType::Aes256, 0).await.unwrap();
    let unknown_key = "00112233445566778899aabbccddeeff";

    let before = scrape(&endpoint(Service::KmsApi)).await.unwrap();
    const OK: u64 = 5;
    const DENIED: u64 = 3;
    const NOT_FOUND: u64 = 2;
    for i in 0..OK {
        encrypt(&skm, &key, &i.to_be_bytes(), b"").await.unwrap();
    }
    for _ in 0..DENIED {
        let err = encrypt(&skm, &denied_key, b"x", b"").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    for _ in 0..NOT_FOUND {
        let err = encrypt(&skm, unknown_key, b"x", b"").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }

    // Shedding: bursts of concurrent encrypts on four more connections
    // (each opened by one call first, so no burst of handshakes meets the
    // handshake cap) until the port has shed at least one.
    let clients: Vec<_> = (0..4).map(|_| p.stack.profile.connect().unwrap()).collect();
    let (mut ok, mut shed) = (OK, 0u64);
    for client in &clients {
        encrypt(client, &key, b"warm", b"").await.unwrap();
        ok += 1;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while shed == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing shed at {} in flight", 8 * MAX_IN_FLIGHT);
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..8 * MAX_IN_FLIGHT {
            let (client, key) = (clients[i % clients.len()].clone(), key.clone());
            burst.spawn(async move { encrypt(&client, &key, &[7; 512], b"").await });
        }
        while let Some(result) = burst.join_next().await {
            match result.unwrap() {
                Ok(_) => ok += 1,
                Err(s) if s.code() == Code::ResourceExhausted => shed += 1,
                Err(s) => panic!("neither OK nor RESOURCE_EXHAUSTED: {s:?}"),
            }
        }
    }

    let after = scrape(&endpoint(Service::KmsApi)).await.unwrap();
    let d = |metric: &str, labels: &[(&str, &str)]| delta(&before, &after, metric, labels);
    let handled = "grpc_server_handled_total";
    assert_eq!(d(handled, &with(&ENCRYPT, &[("grpc_code", "OK")])), ok as f64, "{}", after.text);
    assert_eq!(d(handled, &with(&ENCRYPT, &[("grpc_code", "PERMISSION_DENIED")])), DENIED as f64);
    assert_eq!(d(handled, &with(&ENCRYPT, &[("grpc_code", "NOT_FOUND")])), NOT_FOUND as f64);
    assert_eq!(d(handled, &with(&ENCRYPT, &[("grpc_code", "RESOURCE_EXHAUSTED")])), shed as f64);
    assert_eq!(d("skm_requests_shed_total", &ENCRYPT), shed as f64);
    let all = (ok + DENIED + NOT_FOUND + shed) as f64;
    assert_eq!(d("grpc_server_handling_seconds_count", &ENCRYPT), all);
    assert_eq!(d("grpc_server_handling_seconds", &ENCRYPT), all, "the histogram's +Inf bucket");
    // Every admitted call was audited (refusals too), in fewer fsyncs
    // than entries once calls ran concurrently.
    let entries = d("skm_audit_entries_total", &[]);
    assert!(entries >= (ok + DENIED) as f64, "{entries} audit entries for {ok} + {DENIED} calls");
    let syncs = d("skm_audit_sync_seconds_count", &[]);
    assert!(syncs >= 1.0 && syncs <= entries, "{syncs} syncs for {entries} entries");
    assert!(d("skm_cache_lookups_total", &[("kind", "key"), ("result", "hit")]) >= (ok - 1) as f64);
    assert!(after.value("skm_cache_hit_ratio", &[]) > 0.0);
    for (metric, value) in [
        ("skm_ready", 1.0),
        ("skm_audit_healthy", 1.0),
        ("skm_audit_anchor_ok", 1.0),
        ("skm_audit_anchor_missing_entries", 0.0),
        ("skm_cache_fresh", 1.0),
        ("skm_system_key_active_version", 1.0),
        ("skm_system_key_versions", 1.0),
        ("skm_audit_queue_depth", 0.0),
    ] {
        assert_eq!(after.value(metric, &[]), value, "{metric}");
    }
    // This client's five connections are open, and were counted in.
    assert!(after.value("skm_connections_open", &[("port", "user")]) >= 5.0);
    assert!(d("skm_connections_accepted_total", &[("port", "user")]) >= 4.0);
    assert!(after.value("skm_connections_open", &[("port", "admin")]) >= 1.0);
    // Labels stay bounded: no id or name of a key or keystore, only known
    // methods and code names.
    for secret in
        [key.as_str(), denied_key.as_str(), elsewhere.as_str(), "ks-allowed-7f3a", "ks-elsewhere-9c1b", unknown_key]
    {
        assert!(!after.text.contains(secret), "{secret} in the exposition");
    }
    let codes = after.label_values("grpc_code");
    assert!(codes.is_subset(
        &["OK", "PERMISSION_DENIED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "CANCELLED"].map(String::from).into()
    ));
    assert_eq!(after.label_values("port"), ["admin", "user"].map(String::from).into());

    // Connections refused by a limit: raw TCP connections that never
    // start TLS, beyond the handshakes one address may hold.
    let user: std::net::SocketAddr = p.stack.profile.user_endpoint.parse().unwrap();
    let mut held = Vec::new();
    const EXTRA: usize = 6;
    for _ in 0..MAX_HANDSHAKES + EXTRA {
        held.push(tokio::net::TcpStream::connect(user).await.unwrap());
    }
    let refused = [("port", "user"), ("reason", "max_handshakes_per_address")];
    let kms_endpoint = endpoint(Service::KmsApi);
    let last = std::cell::Cell::new(0.0);
    let _ = eventually("the refused connections counted", Duration::from_secs(10), || async {
        let now = scrape(&kms_endpoint).await.unwrap();
        last.set(delta(&after, &now, "skm_connections_refused_total", &refused));
        last.get() >= EXTRA as f64
    })
    .await;
    assert_eq!(last.get(), EXTRA as f64);
    drop(held);

    // root-keyd: a call its allow-list refuses (an operator may not
    // unwrap a system key) and one it admits.
    let root_before = scrape(&endpoint(Service::RootKeyd)).await.unwrap();
    let err = skm
        .root()
        .unwrap()
        .unwrap_system_key(skm_client::root::v1::UnwrapSystemKeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    skm.root().unwrap().seal_status(skm_client::root::v1::SealStatusRequest {}).await.unwrap();
    let root_after = scrape(&endpoint(Service::RootKeyd)).await.unwrap();
    let root = |method: &'static str, code: &'static str| {
        let labels = [
            ("port", "rpc"),
            ("grpc_service", "skm.root.v1.RootKeyService"),
            ("grpc_method", method),
            ("grpc_code", code),
        ];
        delta(&root_before, &root_after, handled, &labels)
    };
    assert_eq!(root("UnwrapSystemKey", "PERMISSION_DENIED"), 1.0, "{}", root_after.text);
    assert!(root("SealStatus", "OK") >= 1.0);
    assert_eq!(root_after.value("skm_root_key_sealed", &[]), 0.0);
    assert_eq!(root_after.value("skm_root_key_initialized", &[]), 1.0);
    assert_eq!(root_after.value("skm_ready", &[]), 1.0);
    assert!(root_after.value("skm_system_keys_unwrapped_total", &[]) >= 1.0);
    assert!(root_after.value("skm_connections_open", &[("port", "rpc")]) >= 1.0);

    // system-keyd: kms-api fetched the wrapped versions at least once.
    let system = scrape(&endpoint(Service::SystemKeyd)).await.unwrap();
    let fetched = [
        ("port", "rpc"),
        ("grpc_service", "skm.system.v1.SystemKeyService"),
        ("grpc_method", "GetWrappedSystemKeys"),
        ("grpc_code", "OK"),
    ];
    assert!(system.value(handled, &fetched) >= 1.0, "{}", system.text);
    assert_eq!(system.value("skm_system_key_active_version", &[]), 1.0);
    assert_eq!(system.value("skm_system_key_versions", &[]), 1.0);
    assert_eq!(system.value("skm_ready", &[]), 1.0);
    p.stop_all().await;
}

#[test]
fn metrics_table_is_validated_at_start() {
    let p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let check = |daemon: &str, service: Service, vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(skm_e2e::skm_bin());
        command.args(["daemon", daemon, "check-config", "--config"]).arg(p.stack.config(service));
        for (var, value) in vars {
            command.env(var, value);
        }
        command.output().unwrap()
    };
    for (daemon, service, prefix) in [
        ("kms-api", Service::KmsApi, "SKM_KMS_API"),
        ("root-keyd", Service::RootKeyd, "SKM_ROOT_KEYD"),
        ("system-keyd", Service::SystemKeyd, "SKM_SYSTEM_KEYD"),
    ] {
        let listen = format!("{prefix}__METRICS__LISTEN");
        let allow = format!("{prefix}__METRICS__ALLOW_NON_LOOPBACK");
        // Loopback passes; any other address needs the explicit opt-in.
        let out = check(daemon, service, &[(&listen, "127.0.0.1:9464")]);
        assert!(out.status.success(), "{daemon}: {}", String::from_utf8_lossy(&out.stderr));
        for addr in ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464"] {
            let out = check(daemon, service, &[(&listen, addr)]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{daemon} {addr}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains("metrics.listen") && stderr.contains(&format!("is {addr}")), "{stderr}");
            assert!(stderr.contains("metrics.allow_non_loopback"), "{stderr}");
            let out = check(daemon, service, &[(&listen, addr), (&allow, "true")]);
            assert!(out.status.success(), "{daemon} {addr} allowed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // Not an address; an unknown field.
        let out = check(daemon, service, &[(&listen, "localhost")]);
        assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
        let out = check(daemon, service, &[(&format!("{prefix}__METRICS__LISTN"), "127.0.0.1:1")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains("listn"), "{stderr}");
    }
}

#[tokio::test]
async fn skm_dev_serves_and_records_metrics_of_every_tier() {
    let dev = skm_e2e::DevProcess::start().unwrap();
    let profile = skm_client::Profile::load(std::path::Path::new(&dev.profile)).unwrap();
    assert_eq!(
        profile.metrics.keys().map(String::as_str).collect::<Vec<_>>(),
        ["kms-api", "root-keyd", "system-keyd"],
        "{:?}",
        profile.metrics
    );
    for (tier, endpoint) in &profile.metrics {
        let addr: std::net::SocketAddr = endpoint.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{tier}: {addr}");
        let scrape = scrape(endpoint).await.unwrap();
        assert_eq!(scrape.value("skm_ready", &[]), 1.0, "{tier}: {}", scrape.text);
    }
}
