//! kms-api trusts no tier for its own history: a system-keyd that stops
//! listing a system key version (tampered with, or restored from an old
//! backup) is refused loudly, and kms-api keeps serving with the keys it
//! holds, so records sealed under that version stay readable; a kms-api
//! started against such a list does not become ready, because its sealed
//! manifest remembers the version. Real processes; the version is removed
//! from system-keyd's own store while it is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::DevSeal;
use skm_e2e::{Processes, aes_key, decrypt, encrypt, eventually, keystore, never, serving, wait_ready};
use skm_proto::system::v1 as system_pb;
use skm_runtime::Service;
use skm_store::{Expect, Op, SledStore, Store};

const READY: Duration = Duration::from_secs(60);

/// system-keyd's record of one wrapped system key version.
fn version_record(version: u32) -> Vec<u8> {
    [&b"syskey/"[..], &version.to_be_bytes()].concat()
}

fn log_text(p: &Processes, service: Service) -> String {
    std::fs::read_to_string(p.log(service)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_keyd_that_drops_a_version_is_refused_and_kms_api_keeps_serving() {
    let mut p = Processes::prepare(DevSeal::Passphrase).unwrap();
    let config = p.stack.config(Service::KmsApi);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("system_key_refresh_secs = 1\n{text}")).unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));

    // Records and a ciphertext under version 1, then version 2 active.
    let key = aes_key(&skm, "history").await.unwrap();
    let ciphertext = encrypt(&skm, &key, b"sealed under version 1", b"").await.unwrap();
    skm.system().unwrap().rotate_system_key(system_pb::RotateSystemKeyRequest {}).await.unwrap();
    eventually("kms-api holding versions 1 and 2", READY, || async {
        log_text(&p, Service::KmsApi).contains("versions=[1, 2]")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    keystore(&skm, "under-version-2").await.unwrap();

    // system-keyd loses version 1.
    p.stop(Service::SystemKeyd).await;
    {
        let store = SledStore::open(&p.stack.data_dir(Service::SystemKeyd)).unwrap();
        assert!(store.get(&version_record(1)).await.unwrap().is_some(), "system-keyd's record of version 1");
        store.apply(vec![Op::Delete { key: version_record(1), expect: Expect::Any }]).await.unwrap();
    }
    p.start(Service::SystemKeyd).unwrap();

    // The running kms-api refuses the list, loudly, and keeps serving:
    // what version 1 sealed still opens, new records are written.
    let refusal = "lacks version(s) [1] that kms-api has seen";
    eventually("the refusal in kms-api's log", READY, || async { log_text(&p, Service::KmsApi).contains(refusal) })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    assert!(log_text(&p, Service::KmsApi).contains("ERROR"), "refused loudly");
    assert!(serving(&skm, Service::KmsApi).await);
    assert_eq!(decrypt(&skm, &key, &ciphertext, b"").await.unwrap(), b"sealed under version 1");
    keystore(&skm, "after-the-refusal").await.unwrap();

    // A kms-api started against that list does not become ready.
    p.stop(Service::KmsApi).await;
    let before = log_text(&p, Service::KmsApi).len();
    p.start(Service::KmsApi).unwrap();
    eventually("the refusal at start", READY, || async { log_text(&p, Service::KmsApi)[before..].contains(refusal) })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    never("kms-api SERVING on a list without version 1", Duration::from_secs(3), || serving(&skm, Service::KmsApi))
        .await
        .unwrap();
    p.stop_all().await;
}
