//! Writes the seed corpora of every fuzz target into `fuzz/corpus/TARGET/`
//! from real inputs: the golden user ciphertexts, records sealed by
//! skm-crypto, the PROXY v2 specification vectors of
//! `crates/skm-runtime/tests/proxy_spec_vectors.rs`, the repository's
//! config files, certificates and PKCS#12 files issued by skm-pki, audit
//! lines written by the domain core, and one encoded request of every RPC
//! of both planes.
//!
//! `scripts/fuzz corpus` runs it; seeds are named by what they are, so a
//! rerun replaces them rather than adding copies. (Inputs the fuzzer adds
//! to the corpus are named by their hash, and `scripts/fuzz minimise`
//! keeps the set small.)

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a generator that can't write a seed must stop")]

use std::path::{Path, PathBuf};

use prost::Message;
use skm_crypto::Id;
use skm_crypto::user::{self, Header};
use skm_fuzz::{PKCS12_PASSWORD, chain_fixture, join, system_keyring, user_key};
use skm_proto::admin::v1 as admin_pb;
use skm_proto::api::v1 as user_pb;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let repo = root.parent().expect("fuzz/ is inside the repository");
    user_ciphertext(&Seeds::new(&corpus, "user_ciphertext"));
    record_open(&Seeds::new(&corpus, "record_open"));
    proxy_v2(&Seeds::new(&corpus, "proxy_v2"), repo);
    config(&Seeds::new(&corpus, "config"), repo);
    pki(&Seeds::new(&corpus, "pki_client_chain"), &Seeds::new(&corpus, "pkcs12"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(kms(&Seeds::new(&corpus, "kms_requests"), &Seeds::new(&corpus, "audit_log")));
}

struct Seeds(PathBuf);

impl Seeds {
    fn new(corpus: &Path, target: &str) -> Self {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        Self(dir)
    }

    fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.0.join(format!("seed-{name}")), data).expect("write seed");
    }
}

fn golden() -> Vec<(Vec<u8>, String)> {
    let golden: &[(&str, &str, &str, u32, &str)] =
        &include!("../../../crates/skm-crypto/tests/golden/user_ciphertext_v1.txt");
    golden.iter().map(|(ct, aad, ..)| (hex::decode(ct).expect("golden hex"), (*aad).to_owned())).collect()
}

fn user_ciphertext(seeds: &Seeds) {
    for (i, (ct, aad)) in golden().iter().enumerate() {
        seeds.put(&format!("golden-{i}"), &join(&[aad.as_bytes(), ct]));
    }
    let header = Header { key_id: Id::from_bytes([0xab; 16]), version: 42 };
    let ct = user::encrypt(&user_key(), header, &[0x5a; 100], b"tenant=7").expect("encrypt");
    seeds.put("100-bytes", &join(&[b"tenant=7", &ct]));
    seeds.put("wrong-aad", &join(&[b"tenant=8", &ct]));
}

fn record_open(seeds: &Seeds) {
    let ring = system_keyring();
    let id = Id::from_bytes([0x11; 16]).to_string();
    let owner = Id::from_bytes([0x22; 16]).to_string();
    let record_id = format!("key/{id}");
    let plaintext = br#"{"id":"11111111111111111111111111111111","name":"k","versions":[1]}"#;
    let sealed = ring.seal(record_id.as_bytes(), owner.as_bytes(), plaintext).expect("seal");
    seeds.put("key-record", &join(&[record_id.as_bytes(), owner.as_bytes(), &sealed]));
    let sealed = ring.seal(b"keystore/x", b"", b"{}").expect("seal");
    seeds.put("keystore-record", &join(&[b"keystore/x", b"", &sealed]));
    seeds.put("other-owner", &join(&[b"keystore/x", b"y", &sealed]));
}

/// The hex of every `const NAME: &str = concat!(...)` vector in the spec
/// vectors test, concatenated per constant.
fn spec_vectors(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(repo.join("crates/skm-runtime/tests/proxy_spec_vectors.rs")).expect("vectors");
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("const ")
            && let Some((name, value)) = rest.split_once(": &str = ")
        {
            if value.starts_with("concat!(") {
                current = Some((name.to_owned(), String::new()));
            } else if let Some(hex) = value.strip_prefix('"').and_then(|v| v.split('"').next()) {
                out.push((name.to_owned(), hex.to_owned()));
            }
            continue;
        }
        if let Some((name, hex)) = current.as_mut() {
            if line.starts_with(')') {
                out.push((name.clone(), std::mem::take(hex)));
                current = None;
            } else if let Some(s) = line.strip_prefix('"').and_then(|v| v.split('"').next()) {
                hex.push_str(s);
            }
        }
    }
    out.into_iter().filter_map(|(name, hex)| Some((name, hex::decode(hex).ok()?))).collect()
}

fn proxy_v2(seeds: &Seeds, repo: &Path) {
    let vectors = spec_vectors(repo);
    assert!(vectors.len() >= 4, "found {} spec vectors", vectors.len());
    for (name, bytes) in vectors {
        let mut with_tls = bytes.clone();
        with_tls.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05]);
        seeds.put(&name.to_lowercase(), &bytes);
        seeds.put(&format!("{}-then-tls", name.to_lowercase()), &with_tls);
    }
    seeds.put("trusted-list", b"10.0.0.0/8,192.168.1.1,2001:db8::/32");
    seeds.put("trusted-one", b"::1");
}

fn config(seeds: &Seeds, repo: &Path) {
    // The order of `skm_fuzz::config_dirs` (Service::ALL).
    for (selector, name) in [(0u8, "root-keyd"), (1, "system-keyd"), (2, "kms-api")] {
        let text = std::fs::read_to_string(repo.join(format!("deploy/config/{name}.toml"))).expect("config");
        // The compose paths made relative: the target's directory holds
        // ca.pem, cert.pem and key.pem.
        let text = text.replace("/var/lib/skm/", "");
        let mut input = vec![selector];
        input.extend_from_slice(text.as_bytes());
        seeds.put(&format!("{name}-deploy"), &input);
        // The same with its limits section written out.
        let limits: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") || r.starts_with('[')).unwrap_or(l))
            .map(|l| l.split("  ").next().unwrap_or(l).to_owned() + "\n")
            .collect();
        let mut input = vec![selector];
        input.extend_from_slice(limits.as_bytes());
        seeds.put(&format!("{name}-limits"), &input);
    }
}

fn pki(chains: &Seeds, pkcs12: &Seeds) {
    let f = chain_fixture();
    let ca = f.ca.cert_der().as_ref();
    chains.put("client", &[&[1u8][..], &join(&[&f.client, &f.client])].concat());
    chains.put("client-and-ca", &[&[2u8][..], &join(&[&f.client, ca, &f.client])].concat());
    chains.put("expired", &[&[1u8][..], &join(&[&f.expired, &f.expired])].concat());
    chains.put("foreign", &[&[1u8][..], &join(&[&f.foreign, &f.foreign])].concat());
    chains.put("ca-as-leaf", &[&[1u8][..], &join(&[ca, ca])].concat());

    // As issued (600,000 PBKDF2 iterations: slow to open, so one seed),
    // and the same key and chain with 2,048 iterations, so the fuzzer
    // spends its time in the parser rather than in PBKDF2.
    pkcs12.put("issued", &f.client_pkcs12);
    let (chain, key) = skm_pki::client::read_pkcs12(&f.client_pkcs12, PKCS12_PASSWORD).expect("issued file opens");
    use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey};
    let key = PrivateKey::from_der(key.secret_der()).expect("key");
    let certs = chain.iter().map(|c| Certificate::from_der(c)).collect::<Result<Vec<_>, _>>().expect("chain");
    let mut store = KeyStore::new();
    let entry = p12_keystore::PrivateKeyChain::new(vec![1; 32], key, certs);
    store.add_entry("client", KeyStoreEntry::PrivateKeyChain(entry));
    let file = store
        .writer(PKCS12_PASSWORD)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(2048)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(2048)
        .write()
        .expect("pkcs12");
    pkcs12.put("fast", &file);
}

async fn kms(seeds: &Seeds, audit: &Seeds) {
    use kms_api::fuzzing::caller::{ASSERTED_MAC, AUDITOR, CLIENT_CERT, OUTSIDE};
    let dir = tempfile::tempdir().expect("tempdir");
    let harness = kms_api::fuzzing::Harness::new(dir.path()).await.expect("harness");
    let (ct, aad) = golden().swap_remove(1);
    let aad = aad.into_bytes();
    let enc = |plaintext: &[u8]| user_pb::EncryptRequest {
        plaintext: plaintext.to_vec(),
        aad: b"a".to_vec(),
        ..Default::default()
    };
    let dec = user_pb::DecryptRequest { ciphertext: ct.clone(), aad: aad.clone(), ..Default::default() };
    let sign = |input, algorithm: user_pb::SignatureAlgorithm| user_pb::SignRequest {
        input: Some(input),
        algorithm: algorithm as i32,
        ..Default::default()
    };
    use user_pb::SignatureAlgorithm as Alg;
    use user_pb::sign_request::Input;
    // (seed name, method, caller bits, binding: key low nibble, keystore high, message)
    let seeds_list: Vec<(&str, &str, u8, u8, Vec<u8>)> = vec![
        ("encrypt", "api.Encrypt", 0, 0x01, enc(b"hello").encode_to_vec()),
        ("encrypt-denied", "api.Encrypt", OUTSIDE, 0x01, enc(b"hello").encode_to_vec()),
        ("encrypt-cert", "api.Encrypt", CLIENT_CERT, 0x05, enc(b"hello").encode_to_vec()),
        ("decrypt", "api.Decrypt", 0, 0x01, dec.encode_to_vec()),
        (
            "data-key",
            "api.GenerateDataKey",
            0,
            0x01,
            user_pb::GenerateDataKeyRequest { aad: b"a".to_vec(), ..Default::default() }.encode_to_vec(),
        ),
        (
            "data-key-without",
            "api.GenerateDataKeyWithoutPlaintext",
            0,
            0x01,
            user_pb::GenerateDataKeyRequest::default().encode_to_vec(),
        ),
        (
            "re-encrypt",
            "api.ReEncrypt",
            0,
            0x01,
            user_pb::ReEncryptRequest { ciphertext: ct.clone(), aad: aad.clone(), ..Default::default() }
                .encode_to_vec(),
        ),
        (
            "batch-encrypt",
            "api.BatchEncrypt",
            0,
            0x01,
            user_pb::BatchEncryptRequest { items: vec![enc(b"a"), enc(b"bb"), enc(b"")] }.encode_to_vec(),
        ),
        (
            "batch-decrypt",
            "api.BatchDecrypt",
            0,
            0x01,
            user_pb::BatchDecryptRequest { items: vec![dec.clone(), dec.clone()] }.encode_to_vec(),
        ),
        ("sign-ed25519", "api.Sign", 0, 0x02, sign(Input::Message(b"msg".to_vec()), Alg::Ed25519).encode_to_vec()),
        ("sign-ecdsa", "api.Sign", 0, 0x03, sign(Input::Digest(vec![3; 32]), Alg::EcdsaSha256).encode_to_vec()),
        ("sign-rsa", "api.Sign", 0, 0x04, sign(Input::Message(b"m".to_vec()), Alg::RsaPssSha256).encode_to_vec()),
        (
            "verify",
            "api.Verify",
            0,
            0x02,
            user_pb::VerifyRequest {
                input: Some(user_pb::verify_request::Input::Message(b"msg".to_vec())),
                signature: vec![0; 64],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("public-key", "api.GetPublicKey", 0, 0x03, user_pb::GetPublicKeyRequest::default().encode_to_vec()),
        ("secret", "api.GetSecret", 0, 0x0a, user_pb::GetSecretRequest::default().encode_to_vec()),
        (
            "generate-mac",
            "api.GenerateMac",
            0,
            0x06,
            user_pb::GenerateMacRequest { message: b"msg".to_vec(), ..Default::default() }.encode_to_vec(),
        ),
        (
            "verify-mac",
            "api.VerifyMac",
            0,
            0x06,
            user_pb::VerifyMacRequest { message: b"msg".to_vec(), mac: vec![0; 32], ..Default::default() }
                .encode_to_vec(),
        ),
        ("who-am-i", "api.WhoAmI", ASSERTED_MAC | CLIENT_CERT, 0, user_pb::WhoAmIRequest {}.encode_to_vec()),
        (
            "create-keystore",
            "admin.CreateKeystore",
            0,
            0,
            admin_pb::CreateKeystoreRequest {
                name: "new".into(),
                policy: Some(admin_pb::Policy {
                    allow_ips: vec!["10.0.0.0/8".into(), "::1/128".into()],
                    allow_macs: vec!["aa:bb:cc:dd:ee:ff".into()],
                    allow_asserted_mac: true,
                    mode: admin_pb::PolicyMode::Any as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("list-keystores", "admin.ListKeystores", AUDITOR, 0, admin_pb::ListKeystoresRequest {}.encode_to_vec()),
        ("get-keystore", "admin.GetKeystore", 0, 0x10, admin_pb::GetKeystoreRequest::default().encode_to_vec()),
        (
            "update-keystore",
            "admin.UpdateKeystore",
            0,
            0x10,
            admin_pb::UpdateKeystoreRequest {
                policy: Some(admin_pb::Policy { allow_ips: vec!["10.1.0.0/16".into()], ..Default::default() }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("delete-keystore", "admin.DeleteKeystore", 0, 0x20, admin_pb::GetKeystoreRequest::default().encode_to_vec()),
        (
            "issue-cert",
            "admin.IssueClientCertificate",
            0,
            0x20,
            admin_pb::IssueClientCertificateRequest {
                name: "second".into(),
                days: 7,
                password: "long-enough".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "register-cert",
            "admin.RegisterClientCertificate",
            0,
            0x10,
            admin_pb::RegisterClientCertificateRequest {
                name: "ext".into(),
                sha256: "ab".repeat(32),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "revoke-cert",
            "admin.RevokeClientCertificate",
            0,
            0x10,
            admin_pb::RevokeClientCertificateRequest { certificate: "ext".into(), ..Default::default() }
                .encode_to_vec(),
        ),
        (
            "list-audit",
            "admin.ListAudit",
            AUDITOR,
            0x11,
            admin_pb::ListAuditRequest { limit: 5, ..Default::default() }.encode_to_vec(),
        ),
        ("verify-audit", "admin.VerifyAudit", AUDITOR, 0, admin_pb::VerifyAuditRequest {}.encode_to_vec()),
        (
            "revoke-operator",
            "admin.RevokeOperator",
            0,
            0,
            admin_pb::RevokeOperatorRequest { sha256: "cd".repeat(32) }.encode_to_vec(),
        ),
        (
            "create-key",
            "admin.CreateKey",
            0,
            0x10,
            admin_pb::CreateKeyRequest {
                name: "aes".into(),
                key_type: admin_pb::KeyType::Aes256 as i32,
                rotation_period_days: 30,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "create-secret",
            "admin.CreateSecret",
            0,
            0x10,
            admin_pb::CreateSecretRequest { name: "s".into(), value: "v".into(), ..Default::default() }.encode_to_vec(),
        ),
        (
            "update-secret",
            "admin.UpdateSecret",
            0,
            0x0a,
            admin_pb::UpdateSecretRequest { value: "v2".into(), ..Default::default() }.encode_to_vec(),
        ),
        ("list-keys", "admin.ListKeys", AUDITOR, 0x10, admin_pb::ListKeysRequest::default().encode_to_vec()),
        ("describe-key", "admin.DescribeKey", AUDITOR, 0x04, admin_pb::DescribeKeyRequest::default().encode_to_vec()),
        ("rotate-key", "admin.RotateKey", 0, 0x01, admin_pb::RotateKeyRequest::default().encode_to_vec()),
        (
            "update-key",
            "admin.UpdateKey",
            0,
            0x01,
            admin_pb::UpdateKeyRequest { rotation_period_days: 90, ..Default::default() }.encode_to_vec(),
        ),
        ("enable-key", "admin.EnableKey", 0, 0x05, admin_pb::KeyIdRequest::default().encode_to_vec()),
        ("disable-key", "admin.DisableKey", 0, 0x05, admin_pb::KeyIdRequest::default().encode_to_vec()),
        (
            "schedule-deletion",
            "admin.ScheduleKeyDeletion",
            0,
            0x05,
            admin_pb::ScheduleKeyDeletionRequest { pending_days: 7, ..Default::default() }.encode_to_vec(),
        ),
        ("cancel-deletion", "admin.CancelKeyDeletion", 0, 0x05, admin_pb::KeyIdRequest::default().encode_to_vec()),
        (
            "import-parameters",
            "admin.GetParametersForImport",
            0,
            0x0b,
            admin_pb::GetParametersForImportRequest {
                wrapping_algorithm: admin_pb::WrappingAlgorithm::RsaAesKeyWrapSha256 as i32,
                wrapping_key_spec: admin_pb::WrappingKeySpec::Rsa3072 as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "import-material",
            "admin.ImportKeyMaterial",
            0,
            0x0b,
            admin_pb::ImportKeyMaterialRequest {
                import_token: vec![0; 32],
                encrypted_key_material: vec![0; 400],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    let methods = kms_api::fuzzing::METHODS;
    assert!(methods.iter().all(|m| seeds_list.iter().any(|s| s.1 == *m)), "a seed for every RPC");
    for (name, method, caller, binding, message) in seeds_list {
        let index = methods.iter().position(|m| *m == method).expect("known method");
        let mut input = vec![u8::try_from(index).expect("under 256 methods"), caller, binding];
        input.extend_from_slice(&message);
        // Run it, so that the audit log below holds what these calls wrote.
        let _ = harness.call(&input).await;
        seeds.put(name, &input);
    }

    // Real audit lines: the log the calls above wrote (same system key as
    // the audit target), whole, its first lines, and cut mid-line.
    let log = std::fs::read(dir.path().join(kms_api::audit::FILE_NAME)).expect("audit log");
    let lines: Vec<&[u8]> = log.split_inclusive(|b| *b == b'\n').collect();
    audit.put("first-3", &lines[..3.min(lines.len())].concat());
    audit.put("first-12", &lines[..12.min(lines.len())].concat());
    audit.put("all", &log);
    let torn = &lines[..4.min(lines.len())].concat();
    audit.put("torn", &torn[..torn.len() - 20]);
    let mut skipped = lines.clone();
    skipped.remove(1);
    audit.put("entry-removed", &skipped[..4.min(skipped.len())].concat());
}
