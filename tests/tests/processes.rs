//! The spine as real `skm daemon` processes: start order and persistence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use skm::devstack::DevSeal;
use skm_e2e::{Processes, aes_key, decrypt, encrypt, never, serving, wait_ready};
use skm_runtime::Service;

const READY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn any_start_order_becomes_ready_without_restarts() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let skm = p.client().unwrap();
    p.start(Service::KmsApi).unwrap();
    skm_e2e::eventually("kms-api answering", READY, || async {
        let Ok(mut h) = skm.health(Service::KmsApi) else { return false };
        h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok()
    })
    .await
    .unwrap();
    never("kms-api SERVING alone", Duration::from_secs(1), || serving(&skm, Service::KmsApi)).await.unwrap();
    p.start(Service::SystemKeyd).unwrap();
    never("kms-api SERVING without root-keyd", Duration::from_secs(1), || serving(&skm, Service::KmsApi))
        .await
        .unwrap();
    p.start(Service::RootKeyd).unwrap();
    if let Err(e) = wait_ready(&skm, READY).await {
        panic!("{e}\n{}", p.logs());
    }
    let key = aes_key(&skm, "order").await.unwrap();
    let ct = encrypt(&skm, &key, b"in any order", b"").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), b"in any order");
    p.stop_all().await;
}

#[tokio::test]
async fn ciphertexts_decrypt_after_a_full_restart() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let skm = p.client().unwrap();
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let key = aes_key(&skm, "persist").await.unwrap();
    let ct = encrypt(&skm, &key, b"survives restarts", b"aad").await.unwrap();

    p.stop_all().await;
    never("a tier answering after stop", Duration::from_millis(500), || serving(&skm, Service::KmsApi)).await.unwrap();
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    assert_eq!(decrypt(&skm, &key, &ct, b"aad").await.unwrap(), b"survives restarts");
    let again = encrypt(&skm, &key, b"new", b"").await.unwrap();
    assert_eq!(decrypt(&skm, &key, &again, b"").await.unwrap(), b"new");
    p.stop_all().await;
}

#[tokio::test]
async fn bad_config_exits_64_with_one_line() {
    let p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let config = p.stack.config(Service::RootKeyd);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("mode = \"passphrase\"", "mode = \"magic\"")).unwrap();
    let out = std::process::Command::new(skm_e2e::skm_bin())
        .args(["daemon", "root-keyd", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("seal.mode") && stderr.contains("magic"), "{stderr}");

    // A certificate of another tier is refused before anything is bound.
    let system_config = p.stack.config(Service::SystemKeyd);
    let text = std::fs::read_to_string(&system_config).unwrap();
    std::fs::write(&system_config, text.replace("pki/system-keyd/cert.pem", "pki/root-keyd/cert.pem")).unwrap();
    let out = std::process::Command::new(skm_e2e::skm_bin())
        .args(["daemon", "system-keyd", "--config"])
        .arg(&system_config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("spiffe://skm.test/system-keyd"), "{stderr}");

    // Environment overrides are applied (and validated) too.
    let out = std::process::Command::new(skm_e2e::skm_bin())
        .args(["daemon", "kms-api", "check-config", "--config"])
        .arg(p.stack.config(Service::KmsApi))
        .env("SKM_KMS_API__SYSTEM_KEY_REFRESH_SECS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("system_key_refresh_secs"));

    // The audit durability and the store cache: bad values name the field,
    // the value and what is allowed; `os` is accepted.
    let check = |var: &str, value: &str| {
        std::process::Command::new(skm_e2e::skm_bin())
            .args(["daemon", "kms-api", "check-config", "--config"])
            .arg(p.stack.config(Service::KmsApi))
            .env(var, value)
            .output()
            .unwrap()
    };
    for (var, value, field, allowed) in [
        ("SKM_KMS_API__AUDIT_SYNC", "sometimes", "audit_sync", "\"fsync\" or \"os\""),
        ("SKM_KMS_API__STORE_CACHE_MB", "1", "store_cache_mb", "8..=65536"),
        ("SKM_KMS_API__AUDIT_ANCHOR_INTERVAL_MS", "10001", "audit_anchor_interval_ms", "0..=10000"),
    ] {
        let out = check(var, value);
        assert_eq!(out.status.code(), Some(64), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field) && stderr.contains(value) && stderr.contains(allowed), "{stderr}");
    }
    let out = check("SKM_KMS_API__AUDIT_SYNC", "os");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Once booted, kms-api keeps serving with root-keyd and then system-keyd
/// stopped (real processes, SIGTERM), outside Docker: back-to-back
/// encrypt/decrypt round trips all succeed and kms-api stays SERVING for
/// several of its system key refreshes (every second here), which fail.
#[tokio::test]
async fn kms_api_serves_on_after_root_keyd_and_system_keyd_stop() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let config = p.stack.config(Service::KmsApi);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("system_key_refresh_secs = 1\n{text}")).unwrap();
    let skm = p.client().unwrap();
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let key = aes_key(&skm, "serving-on").await.unwrap();
    let first = encrypt(&skm, &key, b"before the stops", b"").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    for (stopped, tier) in [("root-keyd", Service::RootKeyd), ("root-keyd and system-keyd", Service::SystemKeyd)] {
        p.stop(tier).await;
        assert!(!serving(&skm, tier).await, "{stopped} still answers");
        let since = Instant::now();
        let mut n = 0u64;
        while since.elapsed() < Duration::from_secs(4) || n < 50 {
            assert!(Instant::now() < deadline, "{n} round trips in two minutes");
            let pt = format!("request {n} with {stopped} stopped");
            let ct =
                encrypt(&skm, &key, pt.as_bytes(), b"").await.unwrap_or_else(|s| panic!("{pt}: {s:?}\n{}", p.logs()));
            assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), pt.as_bytes());
            n += 1;
        }
        assert!(serving(&skm, Service::KmsApi).await, "kms-api must stay SERVING with {stopped} stopped");
    }
    assert_eq!(decrypt(&skm, &key, &first, b"").await.unwrap(), b"before the stops");
    p.stop_all().await;
}
