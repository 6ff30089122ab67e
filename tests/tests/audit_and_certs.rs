//! Client certificates end to end (PKCS#12 issue, OpenSSL, use, revoke,
//! expire, register) and the audit log (tamper detection, fail closed,
//! nothing secret in it), against in-process tiers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use skm::devstack::DevSeal;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_client::{ClientCredentials, Skm};
use skm_e2e::{InProcess, create_key, decrypt, encrypt, eventually, serving, wait_ready};
use skm_runtime::Service;
use tonic::Code;

const READY: Duration = Duration::from_secs(30);

async fn cert_keystore(skm: &Skm, name: &str) -> String {
    skm_e2e::keystore_with(skm, name, admin::Policy { require_cert: true, ..Default::default() }).await.unwrap()
}

/// A client of `stack` presenting the PKCS#12 at `p12`.
fn with_p12(stack: &InProcess, p12: &Path, password_file: &Path) -> Skm {
    let mut profile = stack.profile.clone();
    profile.client = Some(ClientCredentials::Pkcs12 { p12: p12.to_owned(), password_file: password_file.to_owned() });
    profile.connect().unwrap()
}

async fn issue(
    skm: &Skm,
    keystore: &str,
    name: &str,
    days: u32,
    password: &str,
) -> admin::IssueClientCertificateResponse {
    skm.admin()
        .unwrap()
        .issue_client_certificate(admin::IssueClientCertificateRequest {
            keystore_id: keystore.into(),
            name: name.into(),
            days,
            password: password.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn pkcs12_certificates_issue_use_revoke_expire() {
    let clock = Arc::new(kms_api::clock::ManualClock::new());
    let stack = InProcess::start_with_clock(DevSeal::Passphrase, clock.clone()).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = cert_keystore(&skm, "certs").await;
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let password = "correct horse battery";
    let pw_file = write(files.path(), "pw", format!("{password}\n").as_bytes());

    // Issue; OpenSSL reads the PKCS#12 with the password and the
    // fingerprint matches.
    let issued = issue(&skm, &ks, "alice", 30, password).await;
    let p12 = write(files.path(), "alice.p12", &issued.pkcs12);
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .arg("-passin")
        .arg(format!("file:{}", pw_file.display()))
        .args(["-nokeys", "-clcerts"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = String::from_utf8(out.stdout).unwrap();
    let der = skm_runtime::tls::certs_from_pem(pem.as_bytes()).unwrap();
    assert_eq!(hex::encode(skm_crypto::sha256(&der[0])), issued.sha256);
    let wrong = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-passin", "pass:wrong-password", "-nokeys"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());

    // Use it: with the certificate it works, without it is refused.
    let alice = with_p12(&stack, &p12, &pw_file);
    let ct = encrypt(&alice, &key, b"with a certificate", b"").await.unwrap();
    assert_eq!(decrypt(&alice, &key, &ct, b"").await.unwrap(), b"with a certificate");
    let who = alice.keys().who_am_i(api::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((who.certificate_sha256.as_str(), who.certificate_subject.as_str()), (issued.sha256.as_str(), "alice"));
    let err = encrypt(&skm, &key, b"x", b"").await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::PermissionDenied, "certificate authentication failed"));

    // Another keystore's certificate is refused.
    let other_ks = cert_keystore(&skm, "other").await;
    let mallory = issue(&skm, &other_ks, "mallory", 30, password).await;
    let mallory_p12 = write(files.path(), "mallory.p12", &mallory.pkcs12);
    let err = encrypt(&with_p12(&stack, &mallory_p12, &pw_file), &key, b"x", b"").await.unwrap_err();
    assert_eq!(err.message(), "certificate authentication failed");

    // Revoke → refused (the next request sees it; no restart).
    skm.admin()
        .unwrap()
        .revoke_client_certificate(admin::RevokeClientCertificateRequest {
            keystore_id: ks.clone(),
            certificate: "alice".into(),
        })
        .await
        .unwrap();
    let err = encrypt(&alice, &key, b"x", b"").await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::PermissionDenied, "certificate authentication failed"));

    // Expire → refused.
    let bob = issue(&skm, &ks, "bob", 1, password).await;
    let bob = with_p12(&stack, &write(files.path(), "bob.p12", &bob.pkcs12), &pw_file);
    encrypt(&bob, &key, b"fresh", b"").await.unwrap();
    clock.advance(2 * 86_400);
    let err = encrypt(&bob, &key, b"x", b"").await.unwrap_err();
    assert_eq!(err.message(), "certificate authentication failed");

    // A registered external certificate (another CA), by fingerprint.
    let external_ca = skm_pki::CertificateAuthority::generate("ext.test", "external", 30).unwrap();
    let external =
        external_ca.issue_for_id(&skm_runtime::SpiffeId::parse("spiffe://ext.test/app").unwrap(), 30).unwrap();
    let ext_der = skm_runtime::tls::certs_from_pem(external.cert_pem.as_bytes()).unwrap();
    let sha = hex::encode(skm_crypto::sha256(&ext_der[0]));
    let mut profile = stack.profile.clone();
    profile.client = Some(ClientCredentials::Pem(skm_client::CertFiles {
        cert: write(files.path(), "ext.pem", external.cert_pem.as_bytes()),
        key: write(files.path(), "ext.key", external.key_pem.as_bytes()),
    }));
    let ext = profile.connect().unwrap();
    assert_eq!(encrypt(&ext, &key, b"x", b"").await.unwrap_err().code(), Code::PermissionDenied);
    skm.admin()
        .unwrap()
        .register_client_certificate(admin::RegisterClientCertificateRequest {
            keystore_id: ks.clone(),
            name: "external".into(),
            sha256: sha.clone(),
        })
        .await
        .unwrap();
    encrypt(&ext, &key, b"registered", b"").await.unwrap();
    skm.admin()
        .unwrap()
        .revoke_client_certificate(admin::RevokeClientCertificateRequest { keystore_id: ks.clone(), certificate: sha })
        .await
        .unwrap();
    assert_eq!(encrypt(&ext, &key, b"x", b"").await.unwrap_err().code(), Code::PermissionDenied);

    // The keystore lists what it knows.
    let shown =
        skm.admin().unwrap().get_keystore(admin::GetKeystoreRequest { keystore_id: ks }).await.unwrap().into_inner();
    let states: Vec<(String, bool)> = shown.certificates.iter().map(|c| (c.name.clone(), c.revoked)).collect();
    assert_eq!(states, vec![("alice".to_owned(), true), ("bob".to_owned(), false), ("external".to_owned(), true)]);
    assert!(shown.client_ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
}

fn audit_file(stack: &InProcess) -> PathBuf {
    stack.stack.data_dir(Service::KmsApi).join("audit").join("audit.log")
}

async fn verify_rpc(skm: &Skm) -> Result<admin::VerifyAuditResponse, tonic::Status> {
    Ok(skm.admin().unwrap().verify_audit(admin::VerifyAuditRequest {}).await?.into_inner())
}

#[tokio::test]
async fn audit_log_detects_edits_deletions_and_reordering() {
    let mut stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = skm_e2e::keystore(&skm, "audited").await.unwrap();
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    for i in 0..8 {
        encrypt(&skm, &key, format!("message {i}").as_bytes(), b"").await.unwrap();
    }
    let _ = encrypt(&skm, "0".repeat(32).as_str(), b"x", b"").await.unwrap_err();
    let report = verify_rpc(&skm).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert!(report.entries >= 11, "{report:?}");

    // The entries say who did what, including denials and failures.
    let entries = skm
        .admin()
        .unwrap()
        .list_audit(admin::ListAuditRequest { key_id: key.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let encrypts: Vec<_> = entries.iter().filter(|e| e.operation == "Encrypt").collect();
    assert_eq!(encrypts.len(), 8);
    assert!(
        encrypts
            .iter()
            .all(|e| e.keystore_id == ks && e.key_version == 1 && e.caller_ip == "127.0.0.1" && e.result == "allowed")
    );
    let create = entries.iter().find(|e| e.operation == "CreateKey").unwrap();
    assert_eq!(create.operator, "operator/admin/admin");
    assert!(!create.caller_cert_sha256.is_empty());

    // Edit in place (same length) while running: VerifyAudit names the line.
    let path = audit_file(&stack);
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let target = lines.iter().position(|l| l.contains("\"Encrypt\"")).unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    edited[target] = edited[target].replacen("\"Encrypt\"", "\"Encrypu\"", 1);
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let report = verify_rpc(&skm).await.unwrap();
    assert!(!report.intact);
    assert_eq!(report.first_broken_line, target as u64 + 1, "{report:?}");
    // Undo the edit in place (the log has grown by the VerifyAudit entry).
    let now = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, now.replacen("\"Encrypu\"", "\"Encrypt\"", 1)).unwrap();
    assert!(verify_rpc(&skm).await.unwrap().intact);

    // Deletion and reordering, checked offline with the system key (what
    // `skm audit verify` does inside kms-api).
    let system_keys = stack.kms().danger_system_keys();
    stack.stop().await.unwrap();
    let original = std::fs::read_to_string(&path).unwrap();
    let mut keys = BTreeMap::new();
    for (i, k) in system_keys.iter().enumerate() {
        let mut raw = *k;
        keys.insert(i as u32 + 1, skm_crypto::Secret32::from_slice_wiping(&mut raw).unwrap());
    }
    let ring = Arc::new(skm_crypto::record::SystemKeyring::new(system_keys.len() as u32, keys).unwrap());
    let dir = path.parent().unwrap();
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        kms_api::audit::verify(dir, &ring).unwrap()
    };
    assert!(check(original.clone()).first_broken.is_none());
    let lines: Vec<&str> = original.lines().collect();
    let mut deleted = lines.clone();
    deleted.remove(4);
    assert_eq!(check(deleted.join("\n") + "\n").first_broken.unwrap().line, 5);
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    assert_eq!(check(swapped.join("\n") + "\n").first_broken.unwrap().line, 5);
    // Someone holding only the log can't recompute it: a wrong key fails at line 1.
    let mut other = BTreeMap::new();
    other.insert(1, skm_crypto::Secret32::generate().unwrap());
    let wrong = Arc::new(skm_crypto::record::SystemKeyring::new(1, other).unwrap());
    std::fs::write(&path, &original).unwrap();
    assert_eq!(kms_api::audit::verify(dir, &wrong).unwrap().first_broken.unwrap().line, 1);
}

#[tokio::test]
async fn unwritable_audit_log_fails_requests_and_health() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = skm_e2e::keystore(&skm, "closed").await.unwrap();
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    encrypt(&skm, &key, b"before", b"").await.unwrap();

    let path = audit_file(&stack);
    let aside = path.with_extension("moved");
    std::fs::rename(&path, &aside).unwrap();
    let err = encrypt(&skm, &key, b"must not be served", b"").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = skm
        .admin()
        .unwrap()
        .create_keystore(admin::CreateKeystoreRequest {
            alias: String::new(),
            name: "not-now".into(),
            allow_ips: vec!["127.0.0.1".into()],
            policy: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    eventually("kms-api NOT_SERVING", Duration::from_secs(10), || async { !serving(&skm, Service::KmsApi).await })
        .await
        .unwrap();
    assert!(!path.exists(), "no fresh, empty log was created behind the operator's back");

    std::fs::rename(&aside, &path).unwrap();
    encrypt(&skm, &key, b"after", b"").await.unwrap();
    eventually("kms-api SERVING again", Duration::from_secs(10), || serving(&skm, Service::KmsApi)).await.unwrap();
    assert!(verify_rpc(&skm).await.unwrap().intact);
}

#[tokio::test]
async fn audit_log_holds_no_plaintext_secret_or_key() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, READY).await.unwrap();
    let ks = skm_e2e::keystore(&skm, "secret-free").await.unwrap();
    let key = create_key(&skm, &ks, "k", admin::KeyType::Aes256, 0).await.unwrap();
    let plaintext = format!("AUDIT-CANARY-PLAINTEXT-{}", hex::encode(skm_crypto::random_array::<6>().unwrap()));
    let secret_value = format!("AUDIT-CANARY-SECRET-{}", hex::encode(skm_crypto::random_array::<6>().unwrap()));
    let password = format!("AUDIT-CANARY-PASSWORD-{}", hex::encode(skm_crypto::random_array::<6>().unwrap()));
    let aad = "AUDIT-CANARY-AAD";
    let ct = encrypt(&skm, &key, plaintext.as_bytes(), aad.as_bytes()).await.unwrap();
    decrypt(&skm, &key, &ct, aad.as_bytes()).await.unwrap();
    let mut a = skm.admin().unwrap();
    let secret = a
        .create_secret(admin::CreateSecretRequest {
            keystore_id: ks.clone(),
            name: "s".into(),
            value: secret_value.clone(),
            max_versions: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .key_id;
    skm.keys().get_secret(api::GetSecretRequest { key_id: secret, version: 0 }).await.unwrap();
    let dk = skm
        .keys()
        .generate_data_key(api::GenerateDataKeyRequest { key_id: key.clone(), aad: vec![] })
        .await
        .unwrap()
        .into_inner();
    issue(&skm, &ks, "c", 1, &password).await;
    // A request whose key_id is not an id at all must not carry text into the log.
    let _ = encrypt(&skm, &plaintext, b"x", b"").await.unwrap_err();
    let material = stack.kms().danger_key_material(&key, 1).await.unwrap();

    let log = std::fs::read(audit_file(&stack)).unwrap();
    assert!(!log.is_empty());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b).into_bytes();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("plaintext", plaintext.clone().into_bytes()),
        ("plaintext (base64)", b64(plaintext.as_bytes())),
        ("secret value", secret_value.clone().into_bytes()),
        ("PKCS#12 password", password.clone().into_bytes()),
        ("caller AAD", aad.as_bytes().to_vec()),
        ("data key (hex)", hex::encode(&dk.plaintext).into_bytes()),
        ("data key (base64)", b64(&dk.plaintext)),
        ("data key (raw)", dk.plaintext.clone()),
        ("key material (hex)", hex::encode(&material).into_bytes()),
        ("key material (raw)", material.clone()),
    ];
    for (what, needle) in needles {
        assert!(!log.windows(needle.len()).any(|w| w == needle.as_slice()), "the audit log holds the {what}");
    }
}
