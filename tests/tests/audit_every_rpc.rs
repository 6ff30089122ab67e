//! Every RPC of `skm.api.v1` and `skm.admin.v1`, taken from the compiled
//! file descriptor set (so a new RPC fails this test until it is listed
//! here with the audit entries it must leave), called once allowed and
//! once denied against a running kms-api over real mTLS; the entries each
//! call appended to the audit log on disk are exactly the ones expected.
//!
//! Allowed: an application from 127.0.0.1 on a keystore that allows it,
//! and the admin operator. Denied: the same application on a keystore that
//! allows only 10.0.0.1, and an admin operator whose certificate was
//! revoked. WhoAmI touches no key and is not audited (it is the one
//! operation of effect "introspect").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message as _;
use skm::devstack::DevSeal;
use skm_client::Skm;
use skm_client::admin::v1 as admin;
use skm_client::api::v1 as api;
use skm_e2e::{InProcess, create_key, encrypt, extra_operator, keystore, keystore_with, wait_ready};
use skm_runtime::{Role, Service};
use tonic::Code;

/// What one call must append to the log: (operation, result) per entry.
type Expected = Vec<(&'static str, String)>;

fn allowed(op: &'static str) -> Expected {
    vec![(op, "allowed".into())]
}

fn change(op: &'static str) -> Expected {
    vec![(op, "intent".into()), (op, "allowed".into())]
}

fn ip_denied(op: &'static str, n: usize) -> Expected {
    (0..n).map(|_| (op, "denied: IPv4 authentication failed".to_owned())).collect()
}

fn revoked(op: &'static str) -> Expected {
    vec![(op, "denied: the operator certificate is revoked".into())]
}

struct Log(PathBuf);

#[derive(Debug, serde::Deserialize)]
struct Line {
    seq: u64,
    event: Event,
}

#[derive(Debug, serde::Deserialize)]
struct Event {
    operation: String,
    front_end: Option<String>,
    result: serde_json::Value,
    intent_seq: Option<u64>,
    caller: serde_json::Value,
}

impl Log {
    fn lines(&self) -> Vec<Line> {
        std::fs::read_to_string(&self.0).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The (operation, result) of every entry after the first `from`.
    fn since(&self, from: usize) -> Vec<(String, String)> {
        let lines = self.lines();
        for (i, line) in lines.iter().enumerate().skip(from) {
            assert_eq!(line.event.front_end.as_deref(), Some("grpc"), "{line:?}");
            // An outcome names its intent, which is the entry just before.
            if let Some(intent) = line.event.intent_seq {
                assert_eq!(intent, lines[i - 1].seq, "{line:?}");
            }
        }
        lines[from..].iter().map(|l| (l.event.operation.clone(), result(&l.event.result))).collect()
    }
}

fn result(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.to_lowercase(),
        serde_json::Value::Object(o) => {
            let (k, v) = o.iter().next().unwrap();
            format!("{}: {}", k.to_lowercase(), v.as_str().unwrap())
        }
        other => panic!("unexpected result {other}"),
    }
}

/// The RPC names of one service in the compiled descriptors.
fn rpcs(service: &str) -> BTreeSet<String> {
    let fds = prost_types::FileDescriptorSet::decode(skm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let (package, name) = service.rsplit_once('.').unwrap();
    fds.file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == name)
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

struct Fixture {
    aes: String,
    ed: String,
    secret: String,
    hmac: String,
    ciphertext: Vec<u8>,
    signature: Vec<u8>,
    mac: Vec<u8>,
}

async fn fixture(skm: &Skm, keystore_id: &str, open: bool) -> Fixture {
    let aes = create_key(skm, keystore_id, "aes", admin::KeyType::Aes256, 0).await.unwrap();
    let ed = create_key(skm, keystore_id, "ed", admin::KeyType::Ed25519, 0).await.unwrap();
    let hmac = create_key(skm, keystore_id, "hmac", admin::KeyType::HmacSha256, 0).await.unwrap();
    let secret = skm
        .admin()
        .unwrap()
        .create_secret(admin::CreateSecretRequest {
            keystore_id: keystore_id.to_owned(),
            name: "db".into(),
            value: "s3cret".into(),
            max_versions: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .key_id;
    let (ciphertext, signature, mac) = if open {
        let ct = encrypt(skm, &aes, b"plain", b"").await.unwrap();
        let sig = skm
            .keys()
            .sign(api::SignRequest {
                key_id: ed.clone(),
                input: Some(api::sign_request::Input::Message(b"m".to_vec())),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .signature;
        let mac = skm
            .keys()
            .generate_mac(api::GenerateMacRequest { key_id: hmac.clone(), message: b"m".to_vec() })
            .await
            .unwrap()
            .into_inner()
            .mac;
        (ct, sig, mac)
    } else {
        (vec![1; 60], vec![0; 64], vec![0; 32])
    };
    Fixture { aes, ed, secret, hmac, ciphertext, signature, mac }
}

/// One user-plane call; the code it answered.
async fn user_call(skm: &Skm, rpc: &str, f: &Fixture) -> Code {
    let mut keys = skm.keys();
    let msg = || Some(api::sign_request::Input::Message(b"m".to_vec()));
    let result = match rpc {
        "Encrypt" => keys
            .encrypt(api::EncryptRequest { key_id: f.aes.clone(), plaintext: b"p".to_vec(), aad: vec![] })
            .await
            .map(drop),
        "Decrypt" => keys
            .decrypt(api::DecryptRequest {
                key_id: f.aes.clone(),
                ciphertext: f.ciphertext.clone(),
                aad: vec![],
                ..Default::default()
            })
            .await
            .map(drop),
        "GenerateDataKey" => {
            keys.generate_data_key(api::GenerateDataKeyRequest { key_id: f.aes.clone(), aad: vec![] }).await.map(drop)
        }
        "GenerateDataKeyWithoutPlaintext" => keys
            .generate_data_key_without_plaintext(api::GenerateDataKeyRequest { key_id: f.aes.clone(), aad: vec![] })
            .await
            .map(drop),
        "ReEncrypt" => keys
            .re_encrypt(api::ReEncryptRequest { key_id: f.aes.clone(), ciphertext: f.ciphertext.clone(), aad: vec![] })
            .await
            .map(drop),
        "BatchEncrypt" => {
            let item = || api::EncryptRequest { key_id: f.aes.clone(), plaintext: b"p".to_vec(), aad: vec![] };
            let r = keys.batch_encrypt(api::BatchEncryptRequest { items: vec![item(), item()] }).await;
            return batch_code(r.map(|r| {
                r.into_inner()
                    .results
                    .into_iter()
                    .map(|i| match i.result {
                        Some(api::batch_encrypt_result::Result::Error(e)) => e.code,
                        _ => 0,
                    })
                    .collect()
            }));
        }
        "BatchDecrypt" => {
            let item = || api::DecryptRequest {
                key_id: f.aes.clone(),
                ciphertext: f.ciphertext.clone(),
                aad: vec![],
                ..Default::default()
            };
            let r = keys.batch_decrypt(api::BatchDecryptRequest { items: vec![item(), item()] }).await;
            return batch_code(r.map(|r| {
                r.into_inner()
                    .results
                    .into_iter()
                    .map(|i| match i.result {
                        Some(api::batch_decrypt_result::Result::Error(e)) => e.code,
                        _ => 0,
                    })
                    .collect()
            }));
        }
        "Sign" => {
            keys.sign(api::SignRequest { key_id: f.ed.clone(), input: msg(), ..Default::default() }).await.map(drop)
        }
        "Verify" => keys
            .verify(api::VerifyRequest {
                key_id: f.ed.clone(),
                input: Some(api::verify_request::Input::Message(b"m".to_vec())),
                signature: f.signature.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetPublicKey" => {
            keys.get_public_key(api::GetPublicKeyRequest { key_id: f.ed.clone(), key_version: 0 }).await.map(drop)
        }
        "GetSecret" => keys.get_secret(api::GetSecretRequest { key_id: f.secret.clone(), version: 0 }).await.map(drop),
        "GenerateMac" => keys
            .generate_mac(api::GenerateMacRequest { key_id: f.hmac.clone(), message: b"m".to_vec() })
            .await
            .map(drop),
        "VerifyMac" => keys
            .verify_mac(api::VerifyMacRequest {
                key_id: f.hmac.clone(),
                message: b"m".to_vec(),
                mac: f.mac.clone(),
                key_version: 0,
            })
            .await
            .map(|r| assert!(r.into_inner().valid, "the fixture's tag verifies")),
        "WhoAmI" => keys.who_am_i(api::WhoAmIRequest {}).await.map(drop),
        other => {
            panic!("{other}: a KeyService RPC this test doesn't know: add it with the audit entries it must leave")
        }
    };
    result.map_or_else(|s| s.code(), |()| Code::Ok)
}

/// A batch's code: the items' common code (they are all alike here).
fn batch_code(result: Result<Vec<i32>, tonic::Status>) -> Code {
    match result {
        Err(s) => s.code(),
        Ok(codes) => {
            assert!(codes.windows(2).all(|w| w[0] == w[1]), "{codes:?}");
            Code::from(codes[0])
        }
    }
}

/// What a user-plane RPC must leave: (allowed, denied).
fn user_expected(rpc: &'static str) -> (Expected, Expected) {
    match rpc {
        "WhoAmI" => (vec![], vec![]),
        "BatchEncrypt" | "BatchDecrypt" => (vec![(rpc, "allowed".into()); 2], ip_denied(rpc, 2)),
        _ => (allowed(rpc), ip_denied(rpc, 1)),
    }
}

struct AdminIds {
    keystore: String,
    spare_keystore: String,
    key: String,
    secret: String,
    /// A key of origin external, and the import parameters the allowed
    /// GetParametersForImport gave for it.
    external: String,
    import: std::sync::Mutex<Option<admin::GetParametersForImportResponse>>,
}

/// One admin-plane call; the code it answered.
async fn admin_call(skm: &Skm, rpc: &str, ids: &AdminIds, n: usize) -> Code {
    let mut a = skm.admin().unwrap();
    let key = || admin::KeyIdRequest { key_id: ids.key.clone() };
    let ks = || ids.keystore.clone();
    let result = match rpc {
        "CreateKeystore" => a
            .create_keystore(admin::CreateKeystoreRequest {
                alias: String::new(),
                name: format!("new-{n}"),
                allow_ips: vec!["127.0.0.1".into()],
                policy: None,
            })
            .await
            .map(drop),
        "ListKeystores" => a.list_keystores(admin::ListKeystoresRequest {}).await.map(drop),
        "GetKeystore" => a.get_keystore(admin::GetKeystoreRequest { keystore_id: ks() }).await.map(drop),
        "UpdateKeystore" => a
            .update_keystore(admin::UpdateKeystoreRequest {
                alias: None,
                keystore_id: ks(),
                policy: Some(admin::Policy { allow_ips: vec!["127.0.0.1".into()], ..Default::default() }),
            })
            .await
            .map(drop),
        "DeleteKeystore" => {
            a.delete_keystore(admin::GetKeystoreRequest { keystore_id: ids.spare_keystore.clone() }).await.map(drop)
        }
        "IssueClientCertificate" => a
            .issue_client_certificate(admin::IssueClientCertificateRequest {
                keystore_id: ks(),
                name: format!("app-{n}"),
                days: 1,
                password: "correct-horse-battery-staple".into(),
            })
            .await
            .map(drop),
        "RegisterClientCertificate" => a
            .register_client_certificate(admin::RegisterClientCertificateRequest {
                keystore_id: ks(),
                name: "ext".into(),
                sha256: format!("{:064x}", n + 1),
            })
            .await
            .map(drop),
        "RevokeClientCertificate" => a
            .revoke_client_certificate(admin::RevokeClientCertificateRequest {
                keystore_id: ks(),
                certificate: "ext".into(),
            })
            .await
            .map(drop),
        "ListAudit" => a.list_audit(admin::ListAuditRequest { limit: 10, ..Default::default() }).await.map(drop),
        "VerifyAudit" => a.verify_audit(admin::VerifyAuditRequest {}).await.map(drop),
        "AcknowledgeAuditLoss" => a.acknowledge_audit_loss(admin::AcknowledgeAuditLossRequest {}).await.map(drop),
        "RevokeOperator" => {
            a.revoke_operator(admin::RevokeOperatorRequest { sha256: format!("{:064x}", 99 + n) }).await.map(drop)
        }
        "CreateKey" => a
            .create_key(admin::CreateKeyRequest {
                keystore_id: ks(),
                name: format!("k-{n}"),
                key_type: admin::KeyType::Aes256 as i32,
                rotation_period_days: 0,
                ..Default::default()
            })
            .await
            .map(drop),
        "CreateSecret" => a
            .create_secret(admin::CreateSecretRequest {
                keystore_id: ks(),
                name: format!("s-{n}"),
                value: "v".into(),
                max_versions: 0,
            })
            .await
            .map(drop),
        "UpdateSecret" => a
            .update_secret(admin::UpdateSecretRequest { key_id: ids.secret.clone(), value: "v2".into() })
            .await
            .map(drop),
        "ListKeys" => a.list_keys(admin::ListKeysRequest { keystore_id: ks() }).await.map(drop),
        "DescribeKey" => a.describe_key(admin::DescribeKeyRequest { key_id: ids.key.clone() }).await.map(drop),
        "RotateKey" => a.rotate_key(admin::RotateKeyRequest { key_id: ids.key.clone() }).await.map(drop),
        "UpdateKey" => {
            a.update_key(admin::UpdateKeyRequest { key_id: ids.key.clone(), rotation_period_days: 30 }).await.map(drop)
        }
        // Disable, then enable (the descriptor order puts enable first:
        // enabling an enabled key is allowed too).
        "EnableKey" => a.enable_key(key()).await.map(drop),
        "DisableKey" => a.disable_key(key()).await.map(drop),
        "ScheduleKeyDeletion" => a
            .schedule_key_deletion(admin::ScheduleKeyDeletionRequest { key_id: ids.key.clone(), pending_days: 7 })
            .await
            .map(drop),
        "CancelKeyDeletion" => a.cancel_key_deletion(key()).await.map(drop),
        "GetParametersForImport" => a
            .get_parameters_for_import(admin::GetParametersForImportRequest {
                key_id: ids.external.clone(),
                wrapping_algorithm: admin::WrappingAlgorithm::RsaesOaepSha256 as i32,
                wrapping_key_spec: admin::WrappingKeySpec::Rsa3072 as i32,
            })
            .await
            .map(|r| *ids.import.lock().unwrap() = Some(r.into_inner())),
        "ImportKeyMaterial" => {
            use skm_crypto::import::{WrappingAlgorithm, wrap};
            use skm_crypto::rsa_oaep::{EncryptingKey, OaepKeySize};
            let params = ids.import.lock().unwrap().clone().unwrap_or_default();
            let wrapped = match EncryptingKey::from_spki_der(OaepKeySize::Rsa3072, &params.public_key) {
                Ok(public) => wrap(&public, WrappingAlgorithm::RsaesOaepSha256, &[7; 32]).unwrap(),
                Err(_) => vec![1; 384],
            };
            a.import_key_material(admin::ImportKeyMaterialRequest {
                key_id: ids.external.clone(),
                import_token: params.import_token,
                encrypted_key_material: wrapped,
            })
            .await
            .map(drop)
        }
        "GetSystemKeyStatus" => a.get_system_key_status(admin::GetSystemKeyStatusRequest {}).await.map(drop),
        "RetireSystemKeyVersion" => {
            a.retire_system_key_version(admin::RetireSystemKeyVersionRequest { version: 1 }).await.map(drop)
        }
        "CreateConsoleSignIn" => a.create_console_sign_in(admin::CreateConsoleSignInRequest {}).await.map(drop),
        other => {
            panic!("{other}: an AdminService RPC this test doesn't know: add it with the audit entries it must leave")
        }
    };
    result.map_or_else(|s| s.code(), |()| Code::Ok)
}

fn admin_expected(rpc: &'static str) -> Expected {
    if REFUSED_HERE.contains(&rpc) {
        // The change is refused after its intent, and both are in the log.
        return vec![(rpc, "intent".into()), (rpc, "failed: FAILED_PRECONDITION".into())];
    }
    if UNSERVED_HERE.contains(&rpc) {
        return vec![(rpc, "failed: FAILED_PRECONDITION".into())];
    }
    if kms_api::ADMIN_READS.contains(&rpc) { allowed(rpc) } else { change(rpc) }
}

/// The admin RPCs whose allowed call fails here: an intact log has no loss
/// to acknowledge (tests/tests/audit_anchor.rs acknowledges a real one),
/// and version 1 is the only, active, system key version (tests/tests/
/// system_key_retire.rs retires one).
const REFUSED_HERE: &[&str] = &["AcknowledgeAuditLoss", "RetireSystemKeyVersion"];

/// The admin reads this stack can't serve: it has no console listener
/// (tests/tests/console.rs signs in through one).
const UNSERVED_HERE: &[&str] = &["CreateConsoleSignIn"];

fn admin_code(rpc: &str) -> Code {
    if REFUSED_HERE.contains(&rpc) || UNSERVED_HERE.contains(&rpc) { Code::FailedPrecondition } else { Code::Ok }
}

/// Admin RPCs in an order in which each allowed call can succeed.
const ADMIN_ORDER: &[&str] = &[
    "ListKeystores",
    "GetKeystore",
    "CreateKeystore",
    "UpdateKeystore",
    "DeleteKeystore",
    "IssueClientCertificate",
    "RegisterClientCertificate",
    "RevokeClientCertificate",
    "CreateKey",
    "CreateSecret",
    "UpdateSecret",
    "ListKeys",
    "DescribeKey",
    "RotateKey",
    "UpdateKey",
    "DisableKey",
    "EnableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "RevokeOperator",
    "ListAudit",
    "VerifyAudit",
    "AcknowledgeAuditLoss",
    "GetSystemKeyStatus",
    "RetireSystemKeyVersion",
    "CreateConsoleSignIn",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_leaves_exactly_its_audit_entries() {
    let stack = InProcess::start(DevSeal::Passphrase).await.unwrap();
    let skm = stack.client().unwrap();
    wait_ready(&skm, Duration::from_secs(30)).await.unwrap();
    let log = Log(stack.stack.data_dir(Service::KmsApi).join("audit").join("audit.log"));
    let files = tempfile::tempdir().unwrap();

    let open = keystore(&skm, "open").await.unwrap();
    let closed =
        keystore_with(&skm, "closed", admin::Policy { allow_ips: vec!["10.0.0.1".into()], ..Default::default() })
            .await
            .unwrap();
    let good = fixture(&skm, &open, true).await;
    let bad = fixture(&skm, &closed, false).await;

    let user = rpcs("skm.api.v1.KeyService");
    assert_eq!(user.len(), 14, "{user:?}");
    for rpc in &user {
        let rpc: &'static str = rpc.clone().leak();
        let (want_allowed, want_denied) = user_expected(rpc);
        let from = log.lines().len();
        assert_eq!(user_call(&skm, rpc, &good).await, Code::Ok, "{rpc} allowed");
        assert_eq!(log.since(from), owned(&want_allowed), "{rpc} allowed");
        let from = log.lines().len();
        let denied = user_call(&skm, rpc, &bad).await;
        let want_code = if rpc == "WhoAmI" { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(denied, want_code, "{rpc} denied");
        assert_eq!(log.since(from), owned(&want_denied), "{rpc} denied");
    }

    let (mallory, mallory_sha) = extra_operator(&stack.stack, &stack.profile, "mallory", Role::Admin, files.path());
    let mallory = mallory.connect().unwrap();
    skm.admin().unwrap().revoke_operator(admin::RevokeOperatorRequest { sha256: mallory_sha }).await.unwrap();
    let ids = AdminIds {
        keystore: open.clone(),
        spare_keystore: keystore(&skm, "spare").await.unwrap(),
        key: create_key(&skm, &open, "lifecycle", admin::KeyType::Aes256, 0).await.unwrap(),
        secret: good.secret.clone(),
        external: external_key(&skm, &open).await,
        import: std::sync::Mutex::new(None),
    };
    let served = rpcs("skm.admin.v1.AdminService");
    let ordered: BTreeSet<String> = ADMIN_ORDER.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(served, ordered, "every AdminService RPC is in ADMIN_ORDER with its expectation");
    for (n, rpc) in ADMIN_ORDER.iter().enumerate() {
        let from = log.lines().len();
        assert_eq!(admin_call(&mallory, rpc, &ids, n).await, Code::PermissionDenied, "{rpc} revoked");
        assert_eq!(log.since(from), owned(&revoked(rpc)), "{rpc} revoked");
        let from = log.lines().len();
        assert_eq!(admin_call(&skm, rpc, &ids, n).await, admin_code(rpc), "{rpc} allowed");
        assert_eq!(log.since(from), owned(&admin_expected(rpc)), "{rpc} allowed");
    }

    // The operator principal is on every admin entry, none on user entries.
    for line in log.lines() {
        let operator = line.event.caller["operator"].as_str().map(str::to_owned);
        let is_admin = served.contains(&line.event.operation);
        assert_eq!(operator.is_some(), is_admin, "{line:?}");
    }
    let report = skm.admin().unwrap().verify_audit(admin::VerifyAuditRequest {}).await.unwrap().into_inner();
    assert!(report.intact, "{report:?}");
}

async fn external_key(skm: &Skm, keystore_id: &str) -> String {
    let request = admin::CreateKeyRequest {
        keystore_id: keystore_id.to_owned(),
        name: "byok".into(),
        key_type: admin::KeyType::Aes256 as i32,
        origin: admin::KeyOrigin::External as i32,
        ..Default::default()
    };
    skm.admin().unwrap().create_key(request).await.unwrap().into_inner().key_id
}

fn owned(expected: &Expected) -> Vec<(String, String)> {
    expected.iter().map(|(op, r)| ((*op).to_owned(), r.clone())).collect()
}
