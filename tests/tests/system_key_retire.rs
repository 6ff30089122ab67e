//! System key rotation that finishes the job, under encrypt load, with real
//! processes: `skm system rotate` makes version 2 active, kms-api re-seals
//! every record under it in the background (progress in `skm system
//! status` and `skm status`), `skm system retire-version 1` is refused
//! while it is needed and then retires it on every tier. 0 failed requests
//! throughout; afterwards a raw scan of kms-api's store finds no record
//! under version 1, system-keyd's store no longer holds it, the audit log
//! (partly MAC'd under version 1) still verifies, and after a restart of
//! every tier old ciphertexts still decrypt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::DevSeal;
use skm_crypto::record::SystemKeyring;
use skm_e2e::{Load, Processes, aes_key, decrypt, encrypt, eventually, skm_bin, wait_ready};
use skm_runtime::Service;
use skm_store::{SledStore, Store};
use system_keyd::versions::WrappedVersions;

const READY: Duration = Duration::from_secs(60);

fn skm_cli(p: &Processes, args: &[&str]) -> std::process::Output {
    std::process::Command::new(skm_bin()).env("SKM_PROFILE", &p.stack.profile_path).args(args).output().unwrap()
}

fn system_status(p: &Processes) -> serde_json::Value {
    let out = skm_cli(p, &["system", "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Records under each version, from `skm system status --json`.
fn records_under(status: &serde_json::Value, version: u64) -> Option<u64> {
    status["versions"].as_array()?.iter().find(|v| v["version"] == version).and_then(|v| v["records"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_record_and_the_old_version_retires_under_load() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    // kms-api looks for new system key versions every second here (30 s
    // by default), so the test waits for the re-seal, not the refresh.
    let config = p.stack.config(Service::KmsApi);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("system_key_refresh_secs = 1\n{text}")).unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let mut keys = Vec::new();
    for name in ["a", "b", "c"] {
        let key = aes_key(&skm, name).await.unwrap();
        let ct = encrypt(&skm, &key, name.as_bytes(), b"").await.unwrap();
        keys.push((key, ct));
    }
    let key = keys[0].0.clone();
    let status = system_status(&p);
    assert_eq!(status["active_version"], 1, "{status}");
    assert!(records_under(&status, 1).unwrap() >= 9, "{status}");

    // Encrypt and decrypt without pause from here to the retirement.
    let load = Load::start(&skm, &key);
    load.rounds(6, READY).await.unwrap();

    let out = skm_cli(&p, &["system", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    // kms-api takes version 2 up, then re-seals until nothing is under 1.
    eventually("every record re-sealed under version 2", READY, || async {
        let s = system_status(&p);
        s["active_version"] == 2 && s["reseal"]["done"] == true && records_under(&s, 1) == Some(0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", system_status(&p), p.logs()));
    let status = system_status(&p);
    assert!(status["reseal"]["resealed"].as_u64().unwrap() >= 9, "{status}");
    let out = skm_cli(&p, &["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("system key v2 active, every record sealed under it"), "{said}");

    // The active version is never retired.
    let out = skm_cli(&p, &["system", "retire-version", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED_PRECONDITION") || err.contains("failed precondition"), "{err}");
    assert!(err.contains("system key version 2 is the active version"), "{err}");

    let out = skm_cli(&p, &["system", "retire-version", "1"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), p.logs());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("system key version 1 retired: no tier holds it any more"), "{said}");
    let status = system_status(&p);
    assert_eq!(status["retired_versions"], serde_json::json!([1]), "{status}");
    assert_eq!(status["versions"].as_array().unwrap().len(), 1, "{status}");
    load.rounds(6, READY).await.unwrap();
    let (ok, errors) = load.stop().await;
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(ok > 10, "the load ran: {ok}");

    // Entries MAC'd under version 1 keep verifying (its audit keys are kept).
    let out = skm_cli(&p, &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("intact"), "{}", String::from_utf8_lossy(&out.stdout));

    // Raw scans: no kms-api record under version 1, and system-keyd holds
    // only version 2.
    p.stop_all().await;
    {
        let store = SledStore::open(&p.stack.data_dir(Service::KmsApi)).unwrap();
        let mut sealed = 0;
        for (k, v) in store.list(b"").await.unwrap() {
            if k.starts_with(b"due/") || k.starts_with(b"oprevoked/") || k == b"resealcursor" {
                continue;
            }
            let value = if k.starts_with(b"key/") { &v.value[32..] } else { &v.value[..] };
            let key = String::from_utf8_lossy(&k);
            assert_eq!(SystemKeyring::version_of(value), Ok(2), "{key}");
            assert_eq!(value[0], 2, "{key}: record format 2");
            sealed += 1;
        }
        assert!(sealed >= 9, "{sealed} records");
        let versions = WrappedVersions::new(SledStore::open(&p.stack.data_dir(Service::SystemKeyd)).unwrap());
        let snapshot = versions.snapshot().await.unwrap();
        assert_eq!(snapshot.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2]);
        assert_eq!(snapshot.active.map(|(v, _)| v), Some(2));
    }

    // After a restart of every tier the old ciphertexts decrypt, version 1
    // stays retired and the log still verifies.
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    for (name, (key, ct)) in ["a", "b", "c"].iter().zip(&keys) {
        assert_eq!(decrypt(&skm, key, ct, b"").await.unwrap(), name.as_bytes());
    }
    assert_eq!(system_status(&p)["retired_versions"], serde_json::json!([1]));
    let out = skm_cli(&p, &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("intact"), "{}", String::from_utf8_lossy(&out.stdout));
    p.stop_all().await;
}
