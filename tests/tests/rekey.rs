//! Rekey of the unseal shares (Vault's `operator rekey`), as operators run
//! it with the CLI against real processes: `skm root rekey start` with a
//! new k-of-n, k current shares through `skm root rekey submit`, the new
//! shares printed once; after a restart the old shares are refused, k−1 new
//! ones don't unseal, k do, and the stack decrypts what it encrypted before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use skm::devstack::DevSeal;
use skm_e2e::{Processes, aes_key, decrypt, encrypt, eventually, serving, skm_bin, wait_ready};
use skm_runtime::Service;

const READY: Duration = Duration::from_secs(60);

fn skm_cli(p: &Processes, args: &[&str]) -> (bool, String, String) {
    let out =
        std::process::Command::new(skm_bin()).env("SKM_PROFILE", &p.stack.profile_path).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn ok(p: &Processes, args: &[&str]) -> String {
    let (success, stdout, stderr) = skm_cli(p, args);
    assert!(success, "skm {args:?}: {stderr}\n{}", p.logs());
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_replaces_the_unseal_shares() {
    let mut p = Processes::prepare(DevSeal::Shamir).unwrap();
    p.start_all().unwrap();
    let skm = p.client().unwrap();
    eventually("root-keyd uninitialised", READY, || async {
        skm_cli(&p, &["root", "status"]).1 == "uninitialised (shamir)"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let old: Vec<String> =
        ok(&p, &["root", "init", "--shares", "5", "--threshold", "3"]).lines().map(str::to_owned).collect();
    assert_eq!(old.len(), 5);
    for share in &old[..3] {
        ok(&p, &["root", "unseal", share]);
    }
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    let key = aes_key(&skm, "rekey").await.unwrap();
    let ciphertext = encrypt(&skm, &key, b"before the rekey", b"").await.unwrap();

    // A threshold of 1 is refused; then 2 of 3 new shares, authorised by 3
    // of the current 5.
    let (success, _, stderr) = skm_cli(&p, &["root", "rekey", "start", "--shares", "3", "--threshold", "1"]);
    assert!(!success && stderr.contains("use a threshold of at least 2"), "{stderr}");
    let nonce = ok(&p, &["root", "rekey", "start", "--shares", "3", "--threshold", "2"]);
    assert_eq!(nonce.len(), 32, "{nonce}");
    assert_eq!(ok(&p, &["root", "rekey", "submit", &nonce, &old[3]]), "rekey: 1/3 current shares");
    let (success, _, stderr) = skm_cli(&p, &["root", "rekey", "submit", "00", &old[4]]);
    assert!(!success && stderr.contains("no rekey with this nonce"), "{stderr}");
    assert_eq!(ok(&p, &["root", "rekey", "submit", &nonce, &old[4]]), "rekey: 2/3 current shares");
    let new: Vec<String> = ok(&p, &["root", "rekey", "submit", &nonce, &old[0]]).lines().map(str::to_owned).collect();
    assert_eq!(new.len(), 3, "{new:?}");
    assert!(new.iter().all(|s| !old.contains(s)));
    assert!(serving(&skm, Service::RootKeyd).await, "root-keyd stays unsealed through the rekey");

    // Restarted: sealed; old shares refused; k-1 new ones are not enough.
    p.stop(Service::RootKeyd).await;
    p.start(Service::RootKeyd).unwrap();
    eventually("root-keyd sealed again", READY, || async {
        skm_cli(&p, &["root", "status"]).1 == "sealed (shamir, 0/2 shares)"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    for share in &old {
        let (success, _, stderr) = skm_cli(&p, &["root", "unseal", share]);
        assert!(!success && stderr.contains("does not belong to this root key"), "{stderr}");
    }
    assert_eq!(ok(&p, &["root", "unseal", &new[1]]), "sealed (shamir, 1/2 shares)");
    assert_eq!(ok(&p, &["root", "unseal", &new[2]]), "unsealed (shamir)");

    // A kms-api started now gets its system keys unwrapped again, and the
    // ciphertext from before the rekey decrypts.
    p.stop(Service::KmsApi).await;
    p.start(Service::KmsApi).unwrap();
    wait_ready(&skm, READY).await.unwrap_or_else(|e| panic!("{e}\n{}", p.logs()));
    assert_eq!(decrypt(&skm, &key, &ciphertext, b"").await.unwrap(), b"before the rekey");
    p.stop_all().await;
}
