//! Root key rotation under encrypt load, with the root key in memory
//! (passphrase seal) and inside a SoftHSM2 token (pkcs11 seal): `skm root
//! rotate` makes a new root key version, system-keyd has every system key
//! version rewrapped under it in one batch, and root-keyd destroys the old
//! version; kms-api never notices (0 failed requests), everything is under
//! the new root key afterwards, and a restart of every tier still decrypts
//! what was encrypted before. Real processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::{self, DEV_TOKEN_LABEL, DevSeal, SOFTHSM_DIR};
use skm_e2e::{Load, Processes, aes_key, decrypt, encrypt, skm_bin, wait_ready};
use skm_proto::root::v1 as root_pb;
use skm_proto::system::v1 as system_pb;
use skm_runtime::Service;
use skm_store::SledStore;
use system_keyd::versions::WrappedVersions;

const READY: Duration = Duration::from_secs(60);

fn skm_cli(p: &Processes, args: &[&str]) -> std::process::Output {
    std::process::Command::new(skm_bin()).env("SKM_PROFILE", &p.stack.profile_path).args(args).output().unwrap()
}

async fn root_status(p: &Processes) -> root_pb::SealStatusResponse {
    p.client().unwrap().root().unwrap().seal_status(root_pb::SealStatusRequest {}).await.unwrap().into_inner()
}

async fn rotate_under_load(seal: DevSeal) {
    let mut p = Processes::prepare(seal).unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let key = aes_key(&skm, "rotation").await.unwrap();
    let before = encrypt(&skm, &key, b"before the rotation", b"").await.unwrap();
    // Two system key versions to rewrap.
    skm.system().unwrap().rotate_system_key(system_pb::RotateSystemKeyRequest {}).await.unwrap();
    let old_root = root_status(&p).await.root_key_id;

    // Only system-keyd may rewrap or destroy: an operator is refused.
    let mut root = skm.root().unwrap();
    let e = root.rewrap_system_key(root_pb::RewrapSystemKeyRequest { key: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = root.destroy_root_keys(root_pb::DestroyRootKeysRequest { keep_root_key_ids: vec![] }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Encrypt and decrypt without pause while the root key rotates.
    let load = Load::start(&skm, &key);
    load.rounds(6, READY).await.unwrap();
    let out = skm_cli(&p, &["root", "rotate"]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), p.logs());
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    load.rounds(6, READY).await.unwrap();
    let (ok, errors) = load.stop().await;
    assert!(errors.is_empty(), "failed requests during the rotation: {errors:?}");
    assert!(ok > 10, "the load ran: {ok}");

    let status = root_status(&p).await;
    let new_root = status.root_key_id.clone();
    assert_ne!(new_root, old_root);
    assert!(status.older_root_key_ids.is_empty(), "the old version was destroyed: {status:?}");
    assert!(
        said.contains(&format!("root key {new_root} is current: 2 system key version(s) rewrapped"))
            && said.contains(&format!("older root keys destroyed: {old_root}")),
        "{said}"
    );
    // Nothing left to do: a second pass rewraps and destroys nothing.
    let again = skm_cli(&p, &["root", "rotate", "--rewrap-only", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["rewrapped"], 0, "{again}");
    assert_eq!(again["destroyed_root_key_ids"], serde_json::json!([]), "{again}");
    assert_eq!(again["root_key_id"], new_root.as_str());

    // Every system key version in system-keyd's store is under the new
    // root key, and root-keyd's seal file no longer names the old one.
    p.stop(Service::SystemKeyd).await;
    {
        let versions = WrappedVersions::new(SledStore::open(&p.stack.data_dir(Service::SystemKeyd)).unwrap());
        let snapshot = versions.snapshot().await.unwrap();
        assert_eq!(snapshot.versions.len(), 2);
        for v in &snapshot.versions {
            assert_eq!(v.root_key_id, new_root, "version {}", v.version);
        }
    }
    let seal_file = std::fs::read_to_string(p.stack.data_dir(Service::RootKeyd).join("root-key.seal")).unwrap();
    assert!(seal_file.contains(&new_root) && !seal_file.contains(&old_root), "{seal_file}");

    // Every tier restarted: kms-api unwraps both versions under the new
    // root key, and what was encrypted before the rotation decrypts.
    p.stop_all().await;
    p.start_all().unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    assert_eq!(decrypt(&skm, &key, &before, b"").await.unwrap(), b"before the rotation");
    assert_eq!(root_status(&p).await.root_key_id, new_root);

    if seal == DevSeal::Pkcs11 {
        // One key object is left in the token: the new version.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skm-pkcs11-probe"))
            .env("SOFTHSM2_CONF", p.stack.dir.join("root-keyd").join(SOFTHSM_DIR).join("softhsm2.conf"))
            .arg("attributes")
            .arg(devstack::softhsm_module().unwrap())
            .arg(DEV_TOKEN_LABEL)
            .arg(p.stack.dir.join("root-keyd").join("pin"))
            .arg(root_keyd::DEFAULT_KEY_LABEL)
            .output()
            .unwrap();
        assert!(out.status.success(), "exactly one key object: {}", String::from_utf8_lossy(&out.stderr));
    }
    p.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_with_the_root_key_in_memory() {
    rotate_under_load(DevSeal::Passphrase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_with_the_root_key_in_a_token() {
    rotate_under_load(DevSeal::Pkcs11).await;
}
