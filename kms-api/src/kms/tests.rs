//! Unit tests of the domain core without the other tiers: an in-memory
//! store, a fixed system keyring, a real audit log in a temporary
//! directory, a clock the tests move.

use std::collections::BTreeMap;
use std::sync::Arc;

use skm_crypto::Secret32;
use skm_crypto::asym::KeyAlgorithm;
use skm_crypto::record::SystemKeyring;
use skm_runtime::Role;
use skm_store::{MemoryStore, Store};
use zeroize::Zeroizing;

use super::*;
use crate::access::{Facts, Mode, PolicyInput};
use crate::audit::{Event, Filter, Outcome};
use crate::clock::ManualClock;
use crate::model::{self, KeyKind, KeyState};
use crate::system_keys::SystemKeys;

struct Core {
    kms: Kms<MemoryStore>,
    store: MemoryStore,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = [7u8; 32];
    let ring = SystemKeyring::new(1, BTreeMap::from([(1, Secret32::from_array_wiping(&mut raw))])).unwrap();
    let keys = SystemKeys::loaded(ring);
    let audit = Arc::new(crate::audit::AuditLog::open(dir.path(), keys.clone()).await.unwrap());
    let store = MemoryStore::new();
    let clock = Arc::new(ManualClock::new());
    let records = Records::new(store.clone(), keys);
    let kms = Kms::new(records, clock.clone(), 64, audit, RevokedOperators::default());
    Core { kms, store, clock, dir }
}

fn facts(ip: &str) -> Facts {
    Facts { ip: Some(ip.parse().unwrap()), ..Facts::default() }
}

fn operator(role: Role, cert: u8) -> Caller {
    let chain = Arc::new(vec![rustls_pki_types::CertificateDer::from(vec![cert; 40])]);
    let facts = Facts { chain: Some(chain), ..facts("10.9.9.9") };
    let principal = format!("operator/{}/ann", role.name());
    Caller::operator(Operator { principal, role, facts }, FrontEnd::Grpc)
}

fn admin() -> Caller {
    operator(Role::Admin, 1)
}

fn app(ip: &str) -> Caller {
    Caller::application(facts(ip), FrontEnd::Grpc)
}

fn policy(ips: &[&str]) -> PolicyInput {
    PolicyInput { allow_ips: ips.iter().map(|s| (*s).to_owned()).collect(), mode: Mode::All, ..PolicyInput::default() }
}

impl Core {
    async fn keystore(&self, name: &str) -> String {
        let op = CreateKeystore { name: name.into(), policy: policy(&["10.0.0.0/8"]) };
        self.kms.execute(&admin(), op).await.unwrap().id.to_string()
    }

    async fn key(&self, keystore_id: &str, name: &str, kind: KeyKind) -> String {
        let op = CreateKey { keystore_id: keystore_id.into(), name: name.into(), kind, rotation_period_days: 0 };
        self.kms.execute(&admin(), op).await.unwrap().id.to_string()
    }

    async fn entries(&self) -> Vec<(u64, Event)> {
        self.kms.audit().list(&Filter::default()).await.unwrap()
    }

    async fn encrypt(&self, key_id: &str, caller: &Caller, plaintext: &[u8]) -> Result<Encrypted, KmsError> {
        let op = Encrypt { key_id: key_id.into(), plaintext: Zeroizing::new(plaintext.to_vec()), aad: b"a".to_vec() };
        self.kms.execute(caller, op).await
    }

    /// Every stored key and value, to prove a refused change changed nothing.
    async fn snapshot(&self) -> Vec<(Vec<u8>, u64)> {
        self.store.list(b"").await.unwrap().into_iter().map(|(k, v)| (k, v.revision)).collect()
    }
}

fn operations(entries: &[(u64, Event)]) -> Vec<(String, Outcome)> {
    entries.iter().map(|(_, e)| (e.operation.clone(), e.result.clone())).collect()
}

#[tokio::test]
async fn a_change_is_audited_before_and_after_with_its_intent_named() {
    let core = core().await;
    let ks = core.keystore("payments").await;
    let entries = core.entries().await;
    assert_eq!(
        operations(&entries),
        [("CreateKeystore".into(), Outcome::Intent), ("CreateKeystore".into(), Outcome::Allowed)]
    );
    let (intent_seq, outcome) = (entries[0].0, &entries[1].1);
    assert_eq!(outcome.intent_seq, Some(intent_seq));
    assert_eq!(outcome.keystore_id.as_deref(), Some(ks.as_str()));
    assert_eq!(outcome.caller.operator.as_deref(), Some("operator/admin/ann"));
    assert_eq!(outcome.front_end.as_deref(), Some("grpc"));
    assert_eq!(core.kms.audit().verify().await.unwrap().first_broken, None);
}

#[tokio::test]
async fn uses_are_audited_once_with_key_version_and_policy_decides() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let before = core.entries().await.len();

    let done = core.encrypt(&key, &app("10.1.2.3"), b"hello").await.unwrap();
    let dec = Decrypt { key_id: key.clone(), ciphertext: done.ciphertext.clone(), aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&app("10.1.2.3"), dec).await.unwrap().plaintext[..], b"hello");
    let denied = core.encrypt(&key, &app("192.168.1.1"), b"hello").await.unwrap_err();
    assert_eq!((denied.code(), denied.to_string()), (Code::PermissionDenied, "IPv4 authentication failed".into()));

    let entries = core.entries().await;
    let new: Vec<_> = entries[before..].iter().map(|(_, e)| e).collect();
    assert_eq!(
        new.iter().map(|e| (e.operation.as_str(), e.result.clone())).collect::<Vec<_>>(),
        [
            ("Encrypt", Outcome::Allowed),
            ("Decrypt", Outcome::Allowed),
            ("Encrypt", Outcome::Denied("IPv4 authentication failed".into()))
        ]
    );
    assert_eq!(new[0].key_version, Some(1));
    assert_eq!(new[2].caller.ip.as_deref(), Some("192.168.1.1"));
    assert!(new.iter().all(|e| e.key_id.as_deref() == Some(key.as_str()) && e.intent_seq.is_none()));
}

#[tokio::test]
async fn limits_at_and_one_over() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let caller = app("10.0.0.1");
    core.encrypt(&key, &caller, &vec![0; model::MAX_PLAINTEXT]).await.unwrap();
    let over = core.encrypt(&key, &caller, &vec![0; model::MAX_PLAINTEXT + 1]).await.unwrap_err();
    assert_eq!(over.code(), Code::InvalidArgument);
    assert_eq!(
        over.to_string(),
        format!("plaintext is {} bytes; the limit is {}", model::MAX_PLAINTEXT + 1, model::MAX_PLAINTEXT)
    );
    let items = (0..=model::MAX_BATCH)
        .map(|_| Encrypt { key_id: key.clone(), plaintext: Zeroizing::new(vec![1]), aad: Vec::new() })
        .collect();
    let batch = core.kms.execute(&caller, BatchEncrypt { items }).await.unwrap_err();
    assert_eq!(batch.to_string(), "items has 101 entries; a batch takes 1..=100");
    let name = CreateKeystore { name: "x".repeat(model::MAX_NAME + 1), policy: policy(&["10.0.0.1"]) };
    assert!(core.kms.execute(&admin(), name).await.unwrap_err().to_string().contains("1..=64"));
    // A bad request is one entry, without an intent.
    let last = core.entries().await;
    assert_eq!(last.last().map(|(_, e)| e.result.clone()), Some(Outcome::Failed("INVALID_ARGUMENT".into())));
    assert_ne!(last[last.len() - 2].1.result, Outcome::Intent);
}

#[tokio::test]
async fn states_and_types_are_checked_on_every_use() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let aes = core.key(&ks, "aes", KeyKind::Aes256).await;
    let ed = core.key(&ks, "ed", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    let caller = app("10.0.0.1");

    let sign = |key_id: &str| Sign { key_id: key_id.into(), signed: Signed::Message(b"m".to_vec()), algorithm: None };
    let wrong = core.kms.execute(&caller, sign(&aes)).await.unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert!(wrong.to_string().contains("is a aes-256 key; this operation needs an asymmetric key"), "{wrong}");
    let digest = Sign { key_id: ed.clone(), signed: Signed::Digest(vec![0; 32]), algorithm: None };
    assert_eq!(core.kms.execute(&caller, digest).await.unwrap_err().code(), Code::FailedPrecondition);
    let short = Verify {
        key_id: ed.clone(),
        signed: Signed::Digest(vec![0; 5]),
        signature: vec![0; 64],
        algorithm: Some(skm_crypto::asym::SignatureAlgorithm::Ed25519),
        key_version: 0,
    };
    assert_eq!(core.kms.execute(&caller, short).await.unwrap_err().code(), Code::FailedPrecondition);
    let signature = core.kms.execute(&caller, sign(&ed)).await.unwrap();
    let verify = |sig: Vec<u8>| Verify {
        key_id: ed.clone(),
        signed: Signed::Message(b"m".to_vec()),
        signature: sig,
        algorithm: None,
        key_version: 0,
    };
    assert_eq!(core.kms.execute(&caller, verify(signature.signature.clone())).await.unwrap(), Verified(Some(1)));
    assert_eq!(core.kms.execute(&caller, verify(vec![0; 64])).await.unwrap(), Verified(None));

    core.kms.execute(&admin(), DisableKey { key_id: aes.clone() }).await.unwrap();
    let disabled = core.encrypt(&aes, &caller, b"x").await.unwrap_err();
    assert_eq!((disabled.code(), disabled.to_string()), (Code::FailedPrecondition, format!("key {aes} is disabled")));
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: aes.clone(), pending_days: 7 }).await.unwrap();
    let pending = core.encrypt(&aes, &caller, b"x").await.unwrap_err();
    assert!(pending.to_string().contains("pending deletion"), "{pending}");
    let enable = core.kms.execute(&admin(), EnableKey { key_id: aes.clone() }).await.unwrap_err();
    assert_eq!(enable.code(), Code::FailedPrecondition);
    let key = core.kms.execute(&admin(), CancelKeyDeletion { key_id: aes.clone() }).await.unwrap();
    assert_eq!(key.state, KeyState::Disabled, "a cancelled deletion leaves the key disabled");
    let days = ScheduleKeyDeletion { key_id: aes.clone(), pending_days: 31 };
    assert_eq!(
        core.kms.execute(&admin(), days).await.unwrap_err().to_string(),
        "pending_days is 31; it must be 7..=30"
    );
}

#[tokio::test]
async fn roles_and_revocation_are_decided_and_audited_by_the_core() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let auditor = operator(Role::Auditor, 2);
    assert_eq!(core.kms.execute(&auditor, ListKeystores).await.unwrap().len(), 1);
    let before = core.snapshot().await;
    let create =
        CreateKey { keystore_id: ks.clone(), name: "k".into(), kind: KeyKind::Aes256, rotation_period_days: 0 };
    let refused = core.kms.execute(&auditor, create.clone()).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.to_string()),
        (Code::PermissionDenied, "this operation needs the admin role".into())
    );
    assert_eq!(core.snapshot().await, before, "nothing created");
    let app_refused = core.kms.execute(&app("10.0.0.1"), ListKeystores).await.unwrap_err();
    assert_eq!(app_refused.code(), Code::PermissionDenied);

    // Revoking the auditor's certificate refuses every later call of it.
    let sha = auditor.facts().cert_sha256().unwrap();
    core.kms.execute(&admin(), RevokeOperator { sha256: sha.clone() }).await.unwrap();
    let revoked = core.kms.execute(&auditor, ListKeystores).await.unwrap_err();
    assert_eq!(revoked.to_string(), "the operator certificate is revoked");
    assert!(core.kms.execute(&admin(), ListKeystores).await.is_ok(), "other operators unaffected");

    let entries = core.entries().await;
    let denied: Vec<_> = entries
        .iter()
        .filter(|(_, e)| matches!(e.result, Outcome::Denied(_)))
        .map(|(_, e)| (e.operation.as_str(), e.result.clone()))
        .collect();
    assert_eq!(
        denied,
        [
            ("CreateKey", Outcome::Denied("this operation needs the admin role".into())),
            ("ListKeystores", Outcome::Denied("operator operations need an operator".into())),
            ("ListKeystores", Outcome::Denied("the operator certificate is revoked".into())),
        ]
    );
}

/// With the audit log unwritable, no admin change is made, and the caller
/// is told so.
#[tokio::test]
async fn an_unwritable_audit_log_changes_nothing() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let secret = CreateSecret { keystore_id: ks.clone(), name: "s".into(), value: Zeroizing::new(b"v1".to_vec()) };
    let secret = core.kms.execute(&admin(), secret).await.unwrap().id.to_string();
    let log = core.dir.path().join(crate::audit::FILE_NAME);
    let moved = core.dir.path().join("moved");
    let before = core.snapshot().await;
    let entries_before = core.entries().await.len();
    std::fs::rename(&log, &moved).unwrap();

    let refused: Vec<Result<(), KmsError>> = vec![
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.map(drop),
        core.kms.execute(&admin(), DisableKey { key_id: key.clone() }).await.map(drop),
        core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: key.clone(), pending_days: 7 }).await.map(drop),
        core.kms.execute(&admin(), UpdateKey { key_id: key.clone(), rotation_period_days: 30 }).await.map(drop),
        core.kms
            .execute(&admin(), UpdateSecret { key_id: secret.clone(), value: Zeroizing::new(b"v2".to_vec()) })
            .await
            .map(drop),
        core.kms
            .execute(&admin(), UpdateKeystore { keystore_id: ks.clone(), policy: policy(&["10.0.0.1"]) })
            .await
            .map(drop),
        core.kms
            .execute(&admin(), CreateKeystore { name: "other".into(), policy: policy(&["10.0.0.1"]) })
            .await
            .map(drop),
        core.kms
            .execute(
                &admin(),
                CreateKey {
                    keystore_id: ks.clone(),
                    name: "k2".into(),
                    kind: KeyKind::Aes256,
                    rotation_period_days: 0,
                },
            )
            .await
            .map(drop),
        core.kms.execute(&admin(), RevokeOperator { sha256: "ab".repeat(32) }).await.map(drop),
        core.kms.execute(&admin(), DeleteKeystore { keystore_id: ks.clone() }).await.map(drop),
    ];
    for result in &refused {
        let e = result.as_ref().unwrap_err();
        assert_eq!(e.to_string(), "the audit log is unavailable; the request was not carried out");
        assert_eq!(e.code(), Code::Unavailable);
    }
    assert!(core.encrypt(&key, &app("10.0.0.1"), b"x").await.is_err(), "uses fail closed too");

    std::fs::rename(&moved, &log).unwrap();
    assert_eq!(core.snapshot().await, before, "the store is as it was");
    assert!(core.kms.execute(&admin(), RevokeOperator { sha256: "ab".repeat(32) }).await.is_ok());
    let entries = core.entries().await;
    assert_eq!(entries.len(), entries_before + 2, "no entry of the refused calls; then the revocation's two");
}

#[tokio::test]
async fn concurrent_rotations_lose_no_version() {
    let core = Arc::new(core().await);
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (core, key) = (core.clone(), key.clone());
            tokio::spawn(async move { core.kms.execute(&admin(), RotateKey { key_id: key }).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let key = core.kms.execute(&admin(), DescribeKey { key_id: key }).await.unwrap();
    let versions: Vec<u32> = key.material.version_infos().iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn maintenance_rotates_and_destroys_under_its_own_principal() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let op = CreateKey { keystore_id: ks.clone(), name: "r".into(), kind: KeyKind::Aes256, rotation_period_days: 1 };
    let rotating = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let doomed = core.key(&ks, "d", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: doomed.clone(), pending_days: 7 }).await.unwrap();
    let ciphertext = core.encrypt(&rotating, &app("10.0.0.1"), b"old").await.unwrap().ciphertext;

    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport::default(), "nothing due yet");
    core.clock.advance(8 * model::DAY);
    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport { rotated: 1, destroyed: 1 });
    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport::default(), "done exactly once");

    let newest = core.encrypt(&rotating, &app("10.0.0.1"), b"new").await.unwrap();
    assert_eq!(newest.key_version, 2);
    let old = Decrypt { key_id: rotating.clone(), ciphertext, aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&app("10.0.0.1"), old).await.unwrap().plaintext[..], b"old");
    let gone = core.kms.execute(&admin(), DescribeKey { key_id: doomed.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(core.store.list(format!("key/{doomed}").as_bytes()).await.unwrap().is_empty(), "material shredded");

    let entries = core.entries().await;
    let maintenance: Vec<_> = entries
        .iter()
        .filter(|(_, e)| e.caller.system.is_some())
        .map(|(_, e)| (e.operation.as_str(), e.result.clone(), e.key_id.clone(), e.front_end.clone()))
        .collect();
    let m = Some("maintenance".to_owned());
    assert_eq!(
        maintenance,
        [
            ("AutoRotateKey", Outcome::Intent, Some(rotating.clone()), m.clone()),
            ("AutoRotateKey", Outcome::Allowed, Some(rotating.clone()), m.clone()),
            ("DestroyKey", Outcome::Intent, Some(doomed.clone()), m.clone()),
            ("DestroyKey", Outcome::Allowed, Some(doomed.clone()), m.clone()),
        ]
    );
    assert!(
        entries
            .iter()
            .filter(|(_, e)| e.caller.system.is_some())
            .all(|(_, e)| e.caller.system.as_deref() == Some(MAINTENANCE_PRINCIPAL))
    );
    assert_eq!(core.kms.audit().verify().await.unwrap().first_broken, None);
}

#[tokio::test]
async fn last_use_is_persisted_by_maintenance() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let described = core.kms.execute(&admin(), DescribeKey { key_id: key.clone() }).await.unwrap();
    assert_eq!(described.last_used(), 0);
    core.encrypt(&key, &app("10.0.0.1"), b"x").await.unwrap();
    let used_at = core.kms.now();
    core.kms.maintain().await.unwrap();
    // A fresh core over the same store (as after a restart) sees the use.
    let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.last_used(), used_at);
}

#[tokio::test]
async fn a_keystore_is_deleted_only_when_empty() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let refused = core.kms.execute(&admin(), DeleteKeystore { keystore_id: ks.clone() }).await.unwrap_err();
    assert_eq!(refused.to_string(), format!("keystore {ks} still holds 1 keys or secrets; delete them first"));
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: key, pending_days: 7 }).await.unwrap();
    core.clock.advance(7 * model::DAY);
    core.kms.maintain().await.unwrap();
    core.kms.execute(&admin(), DeleteKeystore { keystore_id: ks.clone() }).await.unwrap();
    let gone = core.kms.execute(&admin(), GetKeystore { keystore_id: ks.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The name is free again.
    core.keystore("ks").await;
}

#[tokio::test]
async fn batch_items_are_audited_one_by_one_and_whoami_not_at_all() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let before = core.entries().await.len();
    let item = |id: &str| Encrypt { key_id: id.into(), plaintext: Zeroizing::new(vec![1]), aad: Vec::new() };
    let items = vec![item(&key), item("00000000000000000000000000000000"), item(&key)];
    let results = core.kms.execute(&app("10.0.0.1"), BatchEncrypt { items }).await.unwrap();
    assert_eq!(results.iter().map(Result::is_ok).collect::<Vec<_>>(), [true, false, true]);
    core.kms.execute(&app("10.0.0.1"), WhoAmI).await.unwrap();
    let entries = core.entries().await;
    let mut new: Vec<_> = entries[before..].iter().map(|(_, e)| (e.operation.clone(), e.result.clone())).collect();
    new.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(
        new,
        [
            ("BatchEncrypt".into(), Outcome::Allowed),
            ("BatchEncrypt".into(), Outcome::Allowed),
            ("BatchEncrypt".into(), Outcome::Failed("NOT_FOUND".into())),
        ]
    );
}

#[tokio::test]
async fn secrets_keep_their_versions() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let op = CreateSecret { keystore_id: ks.clone(), name: "db".into(), value: Zeroizing::new(b"one".to_vec()) };
    let id = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let update = UpdateSecret { key_id: id.clone(), value: Zeroizing::new(b"two".to_vec()) };
    assert_eq!(core.kms.execute(&admin(), update).await.unwrap().material.newest_version(), 2);
    let get = |version| GetSecret { key_id: id.clone(), version };
    let caller = app("10.0.0.1");
    assert_eq!(&core.kms.execute(&caller, get(0)).await.unwrap().value[..], b"two");
    assert_eq!(&core.kms.execute(&caller, get(1)).await.unwrap().value[..], b"one");
    assert_eq!(core.kms.execute(&caller, get(3)).await.unwrap_err().code(), Code::NotFound);
    let rotate = core.kms.execute(&admin(), RotateKey { key_id: id.clone() }).await.unwrap_err();
    assert_eq!(rotate.code(), Code::FailedPrecondition);
    let too_big = UpdateSecret { key_id: id, value: Zeroizing::new(vec![b'x'; model::MAX_SECRET + 1]) };
    assert_eq!(core.kms.execute(&admin(), too_big).await.unwrap_err().code(), Code::InvalidArgument);
}
