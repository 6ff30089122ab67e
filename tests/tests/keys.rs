//! Secrets, symmetric and asymmetric keys through gRPC against in-process
//! tiers: round trips, independent verification, rotation, lifecycle with a
//! test clock, limits and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use skm::devstack::DevSeal;
use skm_client::Skm;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, create_key, decrypt, encrypt, keystore, openssl_verify, wait_ready};
use tonic::Code;

const READY: Duration = Duration::from_secs(30);

async fn stack() -> (InProcess, Skm) {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    (stack, skm)
}

async fn sign(
    skm: &Skm,
    key: &str,
    input: api::sign_request::Input,
    alg: api::SignatureAlgorithm,
) -> Result<api::SignResponse, tonic::Status> {
    let req = api::SignRequest { key_id: key.into(), input: Some(input), algorithm: alg as i32 };
    Ok(skm.keys().sign(req).await?.into_inner())
}

async fn verify(
    skm: &Skm,
    key: &str,
    message: &[u8],
    signature: &[u8],
    alg: api::SignatureAlgorithm,
    version: u32,
) -> Result<api::VerifyResponse, tonic::Status> {
    let req = api::VerifyRequest {
        key_id: key.into(),
        input: Some(api::verify_request::Input::Message(message.to_vec())),
        signature: signature.to_vec(),
        algorithm: alg as i32,
        key_version: version,
    };
    Ok(skm.keys().verify(req).await?.into_inner())
}

async fn public_pem(skm: &Skm, key: &str, version: u32) -> String {
    skm.keys()
        .get_public_key(api::GetPublicKeyRequest { key_id: key.into(), key_version: version })
        .await
        .unwrap()
        .into_inner()
        .pem
}

async fn describe(skm: &Skm, key: &str) -> Result<admin::KeyInfo, tonic::Status> {
    Ok(skm.admin().unwrap().describe_key(admin::DescribeKeyRequest { key_id: key.into() }).await?.into_inner())
}

#[tokio::test]
async fn every_signature_algorithm_verifies_with_openssl() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "signing").await.unwrap();
    use admin::KeyType as T;
    use api::SignatureAlgorithm as A;
    let cases = [
        (T::Ed25519, A::Ed25519, "ed25519"),
        (T::EcdsaP256, A::EcdsaSha256, "ecdsa-sha256"),
        (T::Rsa2048, A::RsaPssSha256, "rsa-pss-sha256"),
        (T::Rsa2048, A::RsaPkcs1Sha256, "rsa-pkcs1-sha256"),
        (T::Rsa3072, A::RsaPssSha256, "rsa-pss-sha256"),
        (T::Rsa3072, A::RsaPkcs1Sha256, "rsa-pkcs1-sha256"),
        (T::Rsa4096, A::RsaPssSha256, "rsa-pss-sha256"),
        (T::Rsa4096, A::RsaPkcs1Sha256, "rsa-pkcs1-sha256"),
    ];
    let message = b"the quick brown fox signs the lazy dog".to_vec();
    for (i, (key_type, alg, name)) in cases.into_iter().enumerate() {
        let key = create_key(&skm, &ks, &format!("k{i}"), key_type, 0).await.unwrap();
        let pem = public_pem(&skm, &key, 0).await;
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        // the message itself
        let sig = sign(&skm, &key, api::sign_request::Input::Message(message.clone()), alg).await.unwrap();
        assert_eq!(sig.key_version, 1);
        assert!(openssl_verify(&pem, &message, &sig.signature, name).unwrap(), "{name} {key_type:?} raw");
        assert!(verify(&skm, &key, &message, &sig.signature, alg, 0).await.unwrap().valid);
        assert!(!verify(&skm, &key, b"another message", &sig.signature, alg, 0).await.unwrap().valid);
        assert!(!openssl_verify(&pem, b"another message", &sig.signature, name).unwrap());
        // a pre-computed SHA-256 digest (not for Ed25519)
        let digest = skm_crypto::sha256(&message).to_vec();
        let by_digest = sign(&skm, &key, api::sign_request::Input::Digest(digest), alg).await;
        if key_type == T::Ed25519 {
            assert_eq!(by_digest.unwrap_err().code(), Code::FailedPrecondition);
        } else {
            let by_digest = by_digest.unwrap();
            assert!(openssl_verify(&pem, &message, &by_digest.signature, name).unwrap(), "{name} digest");
        }
    }
    // the key's default algorithm when none is given
    let rsa = create_key(&skm, &ks, "default-alg", T::Rsa2048, 0).await.unwrap();
    let sig = sign(&skm, &rsa, api::sign_request::Input::Message(message.clone()), A::Unspecified).await.unwrap();
    assert_eq!(sig.algorithm, A::RsaPssSha256 as i32);
}

#[tokio::test]
async fn data_keys_work_with_an_independent_aes_and_unwrap_through_skm() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "envelope").await.unwrap();
    let key = create_key(&skm, &ks, "kek", admin::KeyType::Aes256, 0).await.unwrap();
    let dk = skm
        .keys()
        .generate_data_key(api::GenerateDataKeyRequest { key_id: key.clone(), aad: b"file-7".to_vec() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dk.plaintext.len(), 32);

    // Encrypt locally with OpenSSL's AES-256-CTR under the data key.
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed, opened) = (dir.path().join("plain"), dir.path().join("sealed"), dir.path().join("opened"));
    let document = b"a large document, encrypted locally".repeat(100);
    std::fs::write(&plain, &document).unwrap();
    let iv = "000102030405060708090a0b0c0d0e0f";
    let aes = |key_hex: &str, input: &std::path::Path, output: &std::path::Path, decrypt: bool| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["enc", "-aes-256-ctr", "-K", key_hex, "-iv", iv, "-in"]).arg(input).arg("-out").arg(output);
        if decrypt {
            cmd.arg("-d");
        }
        assert!(cmd.status().unwrap().success());
    };
    aes(&hex::encode(&dk.plaintext), &plain, &sealed, false);
    assert_ne!(std::fs::read(&sealed).unwrap(), document);

    // Later: unwrap the data key through SKM and decrypt locally.
    let unwrapped = decrypt(&skm, &key, &dk.ciphertext, b"file-7").await.unwrap();
    assert_eq!(unwrapped, dk.plaintext);
    aes(&hex::encode(&unwrapped), &sealed, &opened, true);
    assert_eq!(std::fs::read(&opened).unwrap(), document);

    // Without plaintext: only the wrapped key, which still unwraps.
    let only = skm
        .keys()
        .generate_data_key_without_plaintext(api::GenerateDataKeyRequest { key_id: key.clone(), aad: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(only.plaintext.is_empty());
    assert_eq!(decrypt(&skm, &key, &only.ciphertext, b"").await.unwrap().len(), 32);
}

#[tokio::test]
async fn after_two_rotations_every_version_still_works() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "rotation").await.unwrap();
    let aes = create_key(&skm, &ks, "aes", admin::KeyType::Aes256, 0).await.unwrap();
    let ed = create_key(&skm, &ks, "ed", admin::KeyType::Ed25519, 0).await.unwrap();
    let alg = api::SignatureAlgorithm::Ed25519;
    let mut ciphertexts = Vec::new();
    let mut signatures = Vec::new();
    for round in 1..=3u32 {
        let ct = skm
            .keys()
            .encrypt(api::EncryptRequest { key_id: aes.clone(), plaintext: format!("v{round}").into(), aad: vec![] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ct.key_version, round);
        ciphertexts.push(ct.ciphertext);
        let msg = format!("signed by v{round}").into_bytes();
        let sig = sign(&skm, &ed, api::sign_request::Input::Message(msg.clone()), alg).await.unwrap();
        assert_eq!(sig.key_version, round);
        signatures.push((msg, sig.signature));
        if round < 3 {
            let mut a = skm.admin().unwrap();
            let info = a.rotate_key(admin::RotateKeyRequest { key_id: aes.clone() }).await.unwrap().into_inner();
            assert_eq!(info.current_version, round + 1);
            a.rotate_key(admin::RotateKeyRequest { key_id: ed.clone() }).await.unwrap();
        }
    }
    for (i, ct) in ciphertexts.iter().enumerate() {
        assert_eq!(decrypt(&skm, &aes, ct, b"").await.unwrap(), format!("v{}", i + 1).into_bytes());
        // ReEncrypt moves it to v3 without showing the plaintext.
        let re = skm
            .keys()
            .re_encrypt(api::ReEncryptRequest { key_id: aes.clone(), ciphertext: ct.clone(), aad: vec![] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((re.source_key_version, re.key_version), (i as u32 + 1, 3));
        assert_eq!(decrypt(&skm, &aes, &re.ciphertext, b"").await.unwrap(), format!("v{}", i + 1).into_bytes());
    }
    for (i, (msg, sig)) in signatures.iter().enumerate() {
        let v = i as u32 + 1;
        let any = verify(&skm, &ed, msg, sig, alg, 0).await.unwrap();
        assert_eq!((any.valid, any.key_version), (true, v));
        assert!(verify(&skm, &ed, msg, sig, alg, v).await.unwrap().valid);
        let other = if v == 3 { 1 } else { 3 };
        assert!(!verify(&skm, &ed, msg, sig, alg, other).await.unwrap().valid);
        assert!(openssl_verify(&public_pem(&skm, &ed, v).await, msg, sig, "ed25519").unwrap());
    }
    let info = describe(&skm, &aes).await.unwrap();
    assert_eq!(info.versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[tokio::test]
async fn concurrent_rotations_lose_no_version() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "race").await.unwrap();
    let key = create_key(&skm, &ks, "contended", admin::KeyType::Aes256, 0).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (skm, key) = (skm.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            skm.admin()
                .unwrap()
                .rotate_key(admin::RotateKeyRequest { key_id: key })
                .await
                .map(|r| r.into_inner().current_version)
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>(), "each rotation got its own version");
    let info = describe(&skm, &key).await.unwrap();
    assert_eq!(info.versions.len(), 9);
    assert_eq!(info.current_version, 9);
}

#[tokio::test]
async fn lifecycle_with_a_test_clock() {
    let clock = Arc::new(kms_api::clock::ManualClock::new());
    let stack = InProcess::start_with_clock(DevSeal::Passphrase, clock.clone()).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = keystore(&skm, "lifecycle").await.unwrap();
    let key = create_key(&skm, &ks, "doomed", admin::KeyType::Aes256, 0).await.unwrap();
    let ct = encrypt(&skm, &key, b"before", b"").await.unwrap();
    let mut a = skm.admin().unwrap();

    // Disable / enable.
    a.disable_key(admin::KeyIdRequest { key_id: key.clone() }).await.unwrap();
    let err = encrypt(&skm, &key, b"x", b"").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap_err().code(), Code::FailedPrecondition);
    a.enable_key(admin::KeyIdRequest { key_id: key.clone() }).await.unwrap();
    encrypt(&skm, &key, b"x", b"").await.unwrap();

    // Scheduled → unusable → cancel → (disabled) → enable → usable.
    for bad in [6, 31] {
        let err = a
            .schedule_key_deletion(admin::ScheduleKeyDeletionRequest { key_id: key.clone(), pending_days: bad })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("7..=30"), "{}", err.message());
    }
    let info = a
        .schedule_key_deletion(admin::ScheduleKeyDeletionRequest { key_id: key.clone(), pending_days: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, admin::KeyState::PendingDeletion as i32);
    assert_eq!(info.deletion_at, clock.now_for_test() + 7 * 86_400);
    assert_eq!(encrypt(&skm, &key, b"x", b"").await.unwrap_err().code(), Code::FailedPrecondition);
    let info = a.cancel_key_deletion(admin::KeyIdRequest { key_id: key.clone() }).await.unwrap().into_inner();
    assert_eq!(info.state, admin::KeyState::Disabled as i32);
    a.enable_key(admin::KeyIdRequest { key_id: key.clone() }).await.unwrap();
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap(), b"before");

    // Scheduled → period elapses → destroyed: NOT_FOUND, and gone from the store.
    a.schedule_key_deletion(admin::ScheduleKeyDeletionRequest { key_id: key.clone(), pending_days: 7 }).await.unwrap();
    clock.advance(7 * 86_400 - 10);
    let report = stack.kms().kms().maintain().await.unwrap();
    assert_eq!(report.destroyed, 0, "not before the period ends");
    clock.advance(11);
    let report = stack.kms().kms().maintain().await.unwrap();
    assert_eq!(report.destroyed, 1);
    assert_eq!(describe(&skm, &key).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(decrypt(&skm, &key, &ct, b"").await.unwrap_err().code(), Code::NotFound);
    let listed = a.list_keys(admin::ListKeysRequest { keystore_id: ks.clone() }).await.unwrap().into_inner().keys;
    assert!(listed.iter().all(|k| k.key_id != key));

    // Automatic rotation: period 1 day.
    let auto = create_key(&skm, &ks, "auto", admin::KeyType::Ed25519, 1).await.unwrap();
    let info = describe(&skm, &auto).await.unwrap();
    assert_eq!(info.next_rotation_at, clock.now_for_test() + 86_400);
    clock.advance(86_400 + 1);
    let report = stack.kms().kms().maintain().await.unwrap();
    assert_eq!(report.rotated, 1);
    let info = describe(&skm, &auto).await.unwrap();
    assert_eq!(info.current_version, 2);
    assert_eq!(info.next_rotation_at, clock.now_for_test() + 86_400);
    assert!(info.last_used_at == 0, "not used yet");

    // The destroyed key's records are gone from the store itself. Positive
    // control: the same scan finds the live key `auto` (its record and its
    // rotation due entry), so an empty or unreadable store can't pass.
    let mut stack = stack;
    let data = stack.stack.data_dir(skm_runtime::Service::KmsApi);
    stack.stop().await.unwrap();
    let store = skm_store::SledStore::open(&data).unwrap();
    use skm_store::Store;
    let mut auto_found = Vec::new();
    for prefix in ["key/", "keyname/", "due/", "lastuse/"] {
        for (k, v) in store.list(prefix.as_bytes()).await.unwrap() {
            let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v.value));
            assert!(!k.contains(&key) && !v.contains(&key), "store still holds {k} (value {v:?})");
            if k.contains(&auto) || v.contains(&auto) {
                auto_found.push(prefix);
            }
        }
    }
    auto_found.dedup();
    assert!(
        auto_found.contains(&"key/") && auto_found.contains(&"due/"),
        "the scan doesn't see the live key {auto}: found under {auto_found:?}"
    );
}

#[tokio::test]
async fn secrets_have_versions() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "secrets").await.unwrap();
    let mut a = skm.admin().unwrap();
    let id = a
        .create_secret(admin::CreateSecretRequest {
            keystore_id: ks.clone(),
            name: "db".into(),
            value: "v1-pass".into(),
            max_versions: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .key_id;
    let v2 = a.update_secret(admin::UpdateSecretRequest { key_id: id.clone(), value: "v2-pass".into() }).await.unwrap();
    assert_eq!(v2.into_inner().version, 2);
    let get = |version: u32| {
        let skm = skm.clone();
        let id = id.clone();
        async move { skm.keys().get_secret(api::GetSecretRequest { key_id: id, version }).await.map(|r| r.into_inner()) }
    };
    let latest = get(0).await.unwrap();
    assert_eq!((latest.value.as_str(), latest.version), ("v2-pass", 2));
    assert_eq!(get(1).await.unwrap().value, "v1-pass");
    assert_eq!(get(3).await.unwrap_err().code(), Code::NotFound);
    let listed = a.list_keys(admin::ListKeysRequest { keystore_id: ks }).await.unwrap().into_inner().keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_type, admin::KeyType::Secret as i32);
    let info = describe(&skm, &id).await.unwrap();
    assert_eq!(info.current_version, 2);
    assert!(info.last_used_at > 0, "reading a secret is a use");
    // a secret is not a key and vice versa
    assert_eq!(encrypt(&skm, &id, b"x", b"").await.unwrap_err().code(), Code::FailedPrecondition);
    let err = a.rotate_key(admin::RotateKeyRequest { key_id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn limits_at_and_one_over() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "limits").await.unwrap();
    let mut a = skm.admin().unwrap();
    // secret value
    let ok = a
        .create_secret(admin::CreateSecretRequest {
            keystore_id: ks.clone(),
            name: "max".into(),
            value: "s".repeat(32 * 1024),
            max_versions: 0,
        })
        .await;
    assert!(ok.is_ok());
    let err = a
        .create_secret(admin::CreateSecretRequest {
            keystore_id: ks.clone(),
            name: "over".into(),
            value: "s".repeat(32 * 1024 + 1),
            max_versions: 0,
        })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "value is 32769 bytes; the limit is 32768"));
    // sign message
    let ed = create_key(&skm, &ks, "ed", admin::KeyType::Ed25519, 0).await.unwrap();
    let alg = api::SignatureAlgorithm::Ed25519;
    sign(&skm, &ed, api::sign_request::Input::Message(vec![1; 4096]), alg).await.unwrap();
    let err = sign(&skm, &ed, api::sign_request::Input::Message(vec![1; 4097]), alg).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "message is 4097 bytes; the limit is 4096"));
    // digest length
    let p256 = create_key(&skm, &ks, "p256", admin::KeyType::EcdsaP256, 0).await.unwrap();
    let ecdsa = api::SignatureAlgorithm::EcdsaSha256;
    sign(&skm, &p256, api::sign_request::Input::Digest(vec![2; 32]), ecdsa).await.unwrap();
    let err = sign(&skm, &p256, api::sign_request::Input::Digest(vec![2; 31]), ecdsa).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("31"), "{}", err.message());
    // batch size
    let aes = create_key(&skm, &ks, "aes", admin::KeyType::Aes256, 0).await.unwrap();
    let item = |k: &str| api::EncryptRequest { key_id: k.into(), plaintext: b"x".to_vec(), aad: vec![] };
    let items: Vec<_> = (0..100).map(|_| item(&aes)).collect();
    let resp = skm.keys().batch_encrypt(api::BatchEncryptRequest { items }).await.unwrap().into_inner();
    assert_eq!(resp.results.len(), 100);
    let items: Vec<_> = (0..101).map(|_| item(&aes)).collect();
    let err = skm.keys().batch_encrypt(api::BatchEncryptRequest { items }).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "items has 101 entries; a batch takes 1..=100"));
    // rotation period
    let err = create_key(&skm, &ks, "r", admin::KeyType::Aes256, 36_501).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(create_key(&skm, &ks, "r", admin::KeyType::Aes256, 36_500).await.is_ok());
}

#[tokio::test]
async fn wrong_key_types_and_batches_report_per_item() {
    let (_stack, skm) = stack().await;
    let ks = keystore(&skm, "types").await.unwrap();
    let aes = create_key(&skm, &ks, "aes", admin::KeyType::Aes256, 0).await.unwrap();
    let ed = create_key(&skm, &ks, "ed", admin::KeyType::Ed25519, 0).await.unwrap();
    let err = sign(&skm, &aes, api::sign_request::Input::Message(b"m".to_vec()), api::SignatureAlgorithm::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("aes-256"), "{}", err.message());
    assert_eq!(encrypt(&skm, &ed, b"m", b"").await.unwrap_err().code(), Code::FailedPrecondition);
    let err = sign(&skm, &ed, api::sign_request::Input::Message(b"m".to_vec()), api::SignatureAlgorithm::RsaPssSha256)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let secret_read =
        skm.keys().get_secret(api::GetSecretRequest { key_id: aes.clone(), version: 0 }).await.unwrap_err();
    assert_eq!(secret_read.code(), Code::FailedPrecondition);

    let good = encrypt(&skm, &aes, b"one", b"").await.unwrap();
    let items = vec![
        api::DecryptRequest { key_id: aes.clone(), ciphertext: good.clone(), aad: vec![], ..Default::default() },
        api::DecryptRequest { key_id: aes.clone(), ciphertext: vec![1, 2, 3], aad: vec![], ..Default::default() },
        api::DecryptRequest { key_id: ed.clone(), ciphertext: good, aad: vec![], ..Default::default() },
        api::DecryptRequest { key_id: "nope".into(), ciphertext: vec![], aad: vec![], ..Default::default() },
    ];
    let results = skm.keys().batch_decrypt(api::BatchDecryptRequest { items }).await.unwrap().into_inner().results;
    use api::batch_decrypt_result::Result as R;
    match &results[0].result {
        Some(R::Ok(ok)) => assert_eq!(ok.plaintext, b"one"),
        other => panic!("{other:?}"),
    }
    let codes: Vec<(i32, &str)> = results[1..]
        .iter()
        .map(|r| match &r.result {
            Some(R::Error(e)) => (e.code, e.code_name.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (Code::InvalidArgument as i32, "INVALID_ARGUMENT"),
            (Code::FailedPrecondition as i32, "FAILED_PRECONDITION"),
            (Code::InvalidArgument as i32, "INVALID_ARGUMENT"),
        ]
    );

    // Ids are read in either case: the same key, uppercase.
    let upper = encrypt(&skm, &aes.to_uppercase(), b"case", b"").await.unwrap();
    assert_eq!(decrypt(&skm, &aes, &upper, b"").await.unwrap(), b"case");
    let bad = encrypt(&skm, "not-an-id", b"x", b"").await.unwrap_err();
    assert_eq!(
        bad.message(),
        "key_id: \"not-an-id\" is not an id (32 hex digits, e.g. 00112233445566778899aabbccddeeff)"
    );
}

#[tokio::test]
async fn a_secret_updated_past_max_versions_keeps_the_newest() {
    let (stack, skm) = stack().await;
    let ks = keystore(&skm, "retention").await.unwrap();
    let mut a = skm.admin().unwrap();
    let req =
        admin::CreateSecretRequest { keystore_id: ks.clone(), name: "db".into(), value: "v1".into(), max_versions: 3 };
    let id = a.create_secret(req).await.unwrap().into_inner().key_id;
    for n in 2..=5 {
        let update = admin::UpdateSecretRequest { key_id: id.clone(), value: format!("v{n}") };
        assert_eq!(a.update_secret(update).await.unwrap().into_inner().version, n);
    }
    let check = |skm: Skm, id: String| async move {
        for version in 3..=5u32 {
            let got = skm.keys().get_secret(api::GetSecretRequest { key_id: id.clone(), version }).await.unwrap();
            assert_eq!(got.into_inner().value, format!("v{version}"));
        }
        for version in 1..=2u32 {
            let gone = skm.keys().get_secret(api::GetSecretRequest { key_id: id.clone(), version }).await.unwrap_err();
            assert_eq!(gone.code(), Code::NotFound);
            assert_eq!(
                gone.message(),
                format!(
                    "secret {id} has no version {version}; it was deleted: the secret keeps its newest 3 versions \
                     (max_versions); versions 3..=5 are retained"
                )
            );
        }
        let info = describe(&skm, &id).await.unwrap();
        assert_eq!(info.max_versions, 3);
        assert_eq!(info.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 4, 5]);
    };
    check(skm.clone(), id.clone()).await;
    // What kms-api reads back from its store after a restart is the same.
    let stack = stack.restart(|_| {}).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    check(skm.clone(), id.clone()).await;
    let over =
        admin::CreateSecretRequest { keystore_id: ks, name: "big".into(), value: "v".into(), max_versions: 1001 };
    let refused = skm.admin().unwrap().create_secret(over).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::InvalidArgument, "max_versions is 1001; the limit is 1000 (0 for the default, 10)")
    );
}

#[tokio::test]
async fn a_key_at_its_version_cap_refuses_another_rotation() {
    let stack =
        InProcess::start_with(DevSeal::Passphrase, Arc::new(kms_api::clock::SystemClock), |c| c.max_key_versions = 3)
            .await
            .unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = keystore(&skm, "capped").await.unwrap();
    let aes = create_key(&skm, &ks, "aes", admin::KeyType::Aes256, 0).await.unwrap();
    let mut ciphertexts = Vec::new();
    let mut a = skm.admin().unwrap();
    for version in 1..=3u32 {
        ciphertexts.push(encrypt(&skm, &aes, format!("v{version}").as_bytes(), b"").await.unwrap());
        if version < 3 {
            a.rotate_key(admin::RotateKeyRequest { key_id: aes.clone() }).await.unwrap();
        }
    }
    let refused = a.rotate_key(admin::RotateKeyRequest { key_id: aes.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .starts_with(&format!("key {aes} has 3 versions; the limit is 3 (kms-api's max_key_versions)")),
        "{}",
        refused.message()
    );
    assert_eq!(describe(&skm, &aes).await.unwrap().current_version, 3);
    for (i, ct) in ciphertexts.iter().enumerate() {
        assert_eq!(decrypt(&skm, &aes, ct, b"").await.unwrap(), format!("v{}", i + 1).into_bytes());
    }
    // Another key is not affected by this one's versions.
    let other = create_key(&skm, &ks, "other", admin::KeyType::Aes256, 0).await.unwrap();
    a.rotate_key(admin::RotateKeyRequest { key_id: other }).await.unwrap();
}
