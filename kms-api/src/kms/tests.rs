//! Unit tests of the domain core without the other tiers: an in-memory
//! store, a fixed system keyring, a real audit log in a temporary
//! directory, a clock the tests move.

use std::collections::BTreeMap;
use std::sync::Arc;

use skm_crypto::asym::KeyAlgorithm;
use skm_crypto::record::SystemKeyring;
use skm_crypto::{Secret32, VerifyError};
use skm_runtime::Role;
use skm_store::{MemoryStore, Store};
use zeroize::Zeroizing;

use super::*;
use crate::access::{Facts, Mode, PolicyInput};
use crate::audit::{Event, Filter, Outcome};
use crate::clock::ManualClock;
use crate::model::{self, KeyKind, KeyOrigin, KeyState, Material};
use crate::system_keys::SystemKeys;

struct Core<S = MemoryStore> {
    kms: Kms<S>,
    store: S,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

/// The system keyring every core runs on.
fn ring() -> SystemKeyring {
    let mut raw = [7u8; 32];
    SystemKeyring::new(1, BTreeMap::from([(1, Secret32::from_array_wiping(&mut raw))])).unwrap()
}

async fn core() -> Core {
    core_over(MemoryStore::new(), model::DEFAULT_MAX_KEY_VERSIONS).await
}

async fn core_over<S: Store + Clone>(store: S, max_key_versions: u32) -> Core<S> {
    let dir = tempfile::tempdir().unwrap();
    let keys = SystemKeys::loaded(ring());
    let audit = Arc::new(crate::audit::AuditLog::open(dir.path(), keys.clone()).await.unwrap());
    let clock = Arc::new(ManualClock::new());
    let records = Records::new(store.clone(), keys);
    let kms = Kms::new(records, clock.clone(), 64, audit, RevokedOperators::default())
        .with_max_key_versions(max_key_versions);
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

impl<S: Store + Clone> Core<S> {
    async fn keystore(&self, name: &str) -> String {
        let op = CreateKeystore { name: name.into(), policy: policy(&["10.0.0.0/8"]), alias: None };
        self.kms.execute(&admin(), op).await.unwrap().id.to_string()
    }

    async fn key(&self, keystore_id: &str, name: &str, kind: KeyKind) -> String {
        let op = CreateKey {
            keystore_id: keystore_id.into(),
            name: name.into(),
            kind,
            rotation_period_days: 0,
            origin: KeyOrigin::Skm,
        };
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
    let name = CreateKeystore { name: "x".repeat(model::MAX_NAME + 1), policy: policy(&["10.0.0.1"]), alias: None };
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
    assert!(wrong.to_string().contains("is an aes-256 key; this operation needs a signing key"), "{wrong}");
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
    let create = CreateKey {
        keystore_id: ks.clone(),
        name: "k".into(),
        kind: KeyKind::Aes256,
        rotation_period_days: 0,
        origin: KeyOrigin::Skm,
    };
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
    let secret = CreateSecret {
        keystore_id: ks.clone(),
        name: "s".into(),
        value: Zeroizing::new(b"v1".to_vec()),
        max_versions: 0,
    };
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
            .execute(
                &admin(),
                UpdateKeystore { keystore_id: ks.clone(), policy: Some(policy(&["10.0.0.1"])), alias: None },
            )
            .await
            .map(drop),
        core.kms
            .execute(&admin(), CreateKeystore { name: "other".into(), policy: policy(&["10.0.0.1"]), alias: None })
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
                    origin: KeyOrigin::Skm,
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
    let op = CreateKey {
        keystore_id: ks.clone(),
        name: "r".into(),
        kind: KeyKind::Aes256,
        rotation_period_days: 1,
        origin: KeyOrigin::Skm,
    };
    let rotating = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let doomed = core.key(&ks, "d", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: doomed.clone(), pending_days: 7 }).await.unwrap();
    let ciphertext = core.encrypt(&rotating, &app("10.0.0.1"), b"old").await.unwrap().ciphertext;

    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport::default(), "nothing due yet");
    core.clock.advance(8 * model::DAY);
    assert_eq!(
        core.kms.maintain().await.unwrap(),
        MaintenanceReport { rotated: 1, destroyed: 1, refused: 0, forgotten_requests: 0 }
    );
    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport::default(), "done exactly once");

    let newest = core.encrypt(&rotating, &app("10.0.0.1"), b"new").await.unwrap();
    assert_eq!(newest.key_version, 2);
    let old = Decrypt { key_id: rotating.clone(), ciphertext, aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&app("10.0.0.1"), old).await.unwrap().plaintext[..], b"old");
    let gone = core.kms.execute(&admin(), DescribeKey { key_id: doomed.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(core.store.list(format!("key/{doomed}").as_bytes()).await.unwrap().is_empty(), "head deleted");
    assert!(core.store.list(format!("keyver/{doomed}/").as_bytes()).await.unwrap().is_empty(), "material shredded");

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
    let op = CreateSecret {
        keystore_id: ks.clone(),
        name: "db".into(),
        value: Zeroizing::new(b"one".to_vec()),
        max_versions: 0,
    };
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

/// A store that counts the bytes of every value written and keeps the
/// keys of every batch applied; its next batch can be made to fail with
/// UNAVAILABLE, before it is applied or after (a reply lost when etcd
/// committed it).
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStore,
    written: Arc<std::sync::atomic::AtomicUsize>,
    /// 1: the next batch is refused; 2: applied, then reported failed.
    next: Arc<std::sync::atomic::AtomicU8>,
    batches: Arc<std::sync::Mutex<Vec<Vec<Vec<u8>>>>>,
}

impl Counting {
    fn fail_next(&self, after_applying: bool) {
        self.next.store(if after_applying { 2 } else { 1 }, std::sync::atomic::Ordering::SeqCst);
    }

    fn written(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn count(&self, bytes: usize) {
        self.written.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Store for Counting {
    async fn get(&self, key: &[u8]) -> Result<Option<skm_store::Versioned>, skm_store::StoreError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &[u8], value: &[u8], expect: skm_store::Expect) -> Result<u64, skm_store::StoreError> {
        self.count(key.len() + value.len());
        self.inner.put(key, value, expect).await
    }

    async fn apply(&self, ops: Vec<skm_store::Op>) -> Result<(), skm_store::StoreError> {
        let mut keys = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                skm_store::Op::Put { key, value, .. } => self.count(key.len() + value.len()),
                skm_store::Op::Delete { key, .. } => self.count(key.len()),
            }
            let (skm_store::Op::Put { key, .. } | skm_store::Op::Delete { key, .. }) = op;
            keys.push(key.clone());
        }
        let fail = self.next.swap(0, std::sync::atomic::Ordering::SeqCst);
        if fail == 1 {
            return Err(unavailable());
        }
        self.inner.apply(ops).await?;
        self.batches.lock().unwrap().push(keys);
        if fail == 2 { Err(unavailable()) } else { Ok(()) }
    }

    async fn list(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, skm_store::Versioned)>, skm_store::StoreError> {
        self.inner.list(prefix).await
    }

    async fn list_range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<(Vec<u8>, skm_store::Versioned)>, skm_store::StoreError> {
        self.inner.list_range(start, end).await
    }

    async fn list_from(
        &self,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, skm_store::Versioned)>, skm_store::StoreError> {
        self.inner.list_from(start, limit).await
    }
}

#[tokio::test]
async fn a_new_version_writes_the_same_few_bytes_however_many_versions_there_are() {
    let store = Counting::default();
    let core = core_over(store.clone(), model::DEFAULT_MAX_KEY_VERSIONS).await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "k", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    let mut per_rotation = Vec::new();
    for _ in 0..150 {
        let before = store.written();
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
        per_rotation.push(store.written() - before);
    }
    let (first, last) = (per_rotation[0], per_rotation[149]);
    eprintln!("bytes written by rotation 1: {first}, by rotation 150: {last}");
    // The head grows by a digit or two of its version numbers, nothing else.
    assert!(last <= first + 8, "rotation 150 wrote {last} bytes, rotation 1 wrote {first}");
    assert!(last < 1024, "a rotation wrote {last} bytes");
    // And every version still loads from the store.
    let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.material.version_range(), 1..=151);

    let op = CreateSecret {
        keystore_id: ks.clone(),
        name: "s".into(),
        value: Zeroizing::new(vec![b'v'; 1000]),
        max_versions: 1000,
    };
    let secret = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let mut per_update = Vec::new();
    for _ in 0..150 {
        let before = store.written();
        let update = UpdateSecret { key_id: secret.clone(), value: Zeroizing::new(vec![b'v'; 1000]) };
        core.kms.execute(&admin(), update).await.unwrap();
        per_update.push(store.written() - before);
    }
    eprintln!("bytes written by secret update 1: {}, by update 150: {}", per_update[0], per_update[149]);
    assert!(per_update[149] <= per_update[0] + 8, "updates wrote {} then {} bytes", per_update[0], per_update[149]);
}

#[tokio::test]
async fn a_key_at_its_version_cap_refuses_rotation_and_maintenance_moves_on() {
    let core = core_over(MemoryStore::new(), 3).await;
    let ks = core.keystore("ks").await;
    let op = CreateKey {
        keystore_id: ks.clone(),
        name: "r".into(),
        kind: KeyKind::Aes256,
        rotation_period_days: 1,
        origin: KeyOrigin::Skm,
    };
    let key = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let first = core.encrypt(&key, &app("10.0.0.1"), b"v1").await.unwrap().ciphertext;
    core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
    core.clock.advance(model::DAY);
    assert_eq!(
        core.kms.maintain().await.unwrap(),
        MaintenanceReport { rotated: 1, destroyed: 0, refused: 0, forgotten_requests: 0 }
    );

    // Three versions: a fourth is refused, naming the cap, and nothing changes.
    let before = core.snapshot().await;
    let refused = core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.to_string().contains(&format!("key {key} has 3 versions; the limit is 3 (kms-api's max_key_versions)")),
        "{refused}"
    );
    assert_eq!(core.snapshot().await, before);

    // Automatic rotation: refused and audited once, its next try a period on.
    core.clock.advance(model::DAY);
    let audited = core.entries().await.len();
    assert_eq!(
        core.kms.maintain().await.unwrap(),
        MaintenanceReport { rotated: 0, destroyed: 0, refused: 1, forgotten_requests: 0 }
    );
    let entries = core.entries().await;
    assert_eq!(
        operations(&entries[audited..]),
        [
            ("AutoRotateKey".into(), Outcome::Intent),
            ("AutoRotateKey".into(), Outcome::Failed("FAILED_PRECONDITION".into()))
        ]
    );
    assert_eq!(core.kms.maintain().await.unwrap(), MaintenanceReport::default(), "not tried again at once");
    assert_eq!(core.entries().await.len(), audited + 2);
    let described = core.kms.execute(&admin(), DescribeKey { key_id: key.clone() }).await.unwrap();
    assert_eq!(described.next_rotation_at, core.kms.now() + model::DAY);
    assert_eq!(described.material.newest_version(), 3);

    // Every version still decrypts.
    let old = Decrypt { key_id: key.clone(), ciphertext: first, aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&app("10.0.0.1"), old).await.unwrap().plaintext[..], b"v1");
}

#[tokio::test]
async fn a_secret_past_max_versions_loses_its_oldest_versions_from_the_store() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let create = |max_versions| CreateSecret {
        keystore_id: ks.clone(),
        name: "db".into(),
        value: Zeroizing::new(b"v1".to_vec()),
        max_versions,
    };
    let over = core.kms.execute(&admin(), create(model::MAX_SECRET_VERSIONS + 1)).await.unwrap_err();
    assert_eq!(over.to_string(), "max_versions is 1001; the limit is 1000 (0 for the default, 10)");
    let id = core.kms.execute(&admin(), create(2)).await.unwrap().id.to_string();
    for value in [b"v2", b"v3"] {
        let update = UpdateSecret { key_id: id.clone(), value: Zeroizing::new(value.to_vec()) };
        core.kms.execute(&admin(), update).await.unwrap();
    }
    let caller = app("10.0.0.1");
    let get = |version| GetSecret { key_id: id.clone(), version };
    assert_eq!(&core.kms.execute(&caller, get(2)).await.unwrap().value[..], b"v2");
    assert_eq!(&core.kms.execute(&caller, get(0)).await.unwrap().value[..], b"v3");
    let gone = core.kms.execute(&caller, get(1)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(
        gone.to_string(),
        format!(
            "secret {id} has no version 1; it was deleted: the secret keeps its newest 2 versions (max_versions); \
             versions 2..=3 are retained"
        )
    );
    let ahead = core.kms.execute(&caller, get(4)).await.unwrap_err();
    assert!(ahead.to_string().contains("no version 4; the newest is 3"), "{ahead}");
    let stored: Vec<Vec<u8>> =
        core.store.list(format!("keyver/{id}/").as_bytes()).await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        stored,
        [format!("keyver/{id}/0000000002").into_bytes(), format!("keyver/{id}/0000000003").into_bytes()]
    );
    let described = core.kms.execute(&admin(), DescribeKey { key_id: id.clone() }).await.unwrap();
    assert_eq!(described.secret_versions_kept(), Some(2));
    // The default, when none is named.
    let op = CreateSecret {
        keystore_id: ks.clone(),
        name: "d".into(),
        value: Zeroizing::new(b"x".to_vec()),
        max_versions: 0,
    };
    let default = core.kms.execute(&admin(), op).await.unwrap();
    assert_eq!(default.secret_versions_kept(), Some(model::DEFAULT_SECRET_VERSIONS));
}

#[tokio::test]
async fn old_layout_keys_load_and_are_rewritten_on_their_first_change() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    // A key as the first layout stored it: every version inline in its head.
    let id = Id::generate().unwrap();
    let raw = [[0x11u8; 32], [0x22u8; 32]];
    let record = serde_json::json!({
        "keystore_id": ks, "name": "old", "kind": "aes-256", "created_at": 5,
        "versions": [
            { "version": 1, "created_at": 5, "material": hex::encode(raw[0]) },
            { "version": 2, "created_at": 6, "material": hex::encode(raw[1]) },
        ],
        "state": "enabled", "deletion_at": 0, "rotation_period_days": 0, "next_rotation_at": 0,
    });
    let store_key = format!("key/{id}");
    let sealed = ring().seal(store_key.as_bytes(), ks.as_bytes(), &serde_json::to_vec(&record).unwrap()).unwrap();
    core.store.put(store_key.as_bytes(), &[ks.as_bytes(), &sealed].concat(), skm_store::Expect::Absent).await.unwrap();

    let ciphertext = |version: u32| {
        let mut material = raw[version as usize - 1];
        let key = Secret32::from_array_wiping(&mut material);
        skm_crypto::user::encrypt(&key, skm_crypto::user::Header { key_id: id, version }, b"old", b"a").unwrap()
    };
    let decrypt = |version| Decrypt { key_id: id.to_string(), ciphertext: ciphertext(version), aad: b"a".to_vec() };
    let caller = app("10.0.0.1");
    for version in [1, 2] {
        assert_eq!(&core.kms.execute(&caller, decrypt(version)).await.unwrap().plaintext[..], b"old");
    }
    assert!(core.store.list(format!("keyver/{id}/").as_bytes()).await.unwrap().is_empty(), "reads don't write");

    core.kms.execute(&admin(), RotateKey { key_id: id.to_string() }).await.unwrap();
    let versions = core.store.list(format!("keyver/{id}/").as_bytes()).await.unwrap();
    assert_eq!(versions.len(), 3, "every version in its own record");
    let head = core.store.get(store_key.as_bytes()).await.unwrap().unwrap().value;
    let opened = ring().open(store_key.as_bytes(), ks.as_bytes(), &head[32..]).unwrap();
    let head: serde_json::Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(head.get("versions"), None, "no material left in the head");
    assert_eq!((head["oldest_version"].as_u64(), head["newest_version"].as_u64()), (Some(1), Some(3)));
    // Read back from the new layout (not the cache), old versions decrypt.
    let (stored, _) = core.kms.records.key(&id).await.unwrap().unwrap();
    match &stored.material {
        crate::model::Material::Aes256(v) => assert_eq!(v.get(1).unwrap().material.danger_expose(), &raw[0]),
        other => panic!("{other:?}"),
    }
    core.kms.cache.invalidate_key(&id);
    assert_eq!(&core.kms.execute(&caller, decrypt(1)).await.unwrap().plaintext[..], b"old");
}

#[tokio::test]
async fn verify_without_a_version_tries_only_the_newest_versions() {
    let core = core().await;
    let ks = core.keystore("ks").await;
    let key = core.key(&ks, "sig", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    let caller = app("10.0.0.1");
    let sign = || Sign { key_id: key.clone(), signed: Signed::Message(b"m".to_vec()), algorithm: None };
    let by_v1 = core.kms.execute(&caller, sign()).await.unwrap().signature;
    core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
    let by_v2 = core.kms.execute(&caller, sign()).await.unwrap().signature;
    for _ in 0..model::VERIFY_ANY_VERSIONS - 1 {
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
    }
    // Versions 1..=11: a Verify without a version tries 11 down to 2.
    let verify = |signature: &Vec<u8>, key_version| Verify {
        key_id: key.clone(),
        signed: Signed::Message(b"m".to_vec()),
        signature: signature.clone(),
        algorithm: None,
        key_version,
    };
    assert_eq!(core.kms.execute(&caller, verify(&by_v2, 0)).await.unwrap(), Verified(Some(2)));
    assert_eq!(core.kms.execute(&caller, verify(&by_v1, 0)).await.unwrap(), Verified(None));
    assert_eq!(core.kms.execute(&caller, verify(&by_v1, 1)).await.unwrap(), Verified(Some(1)));
}

#[tokio::test]
async fn a_caller_confined_to_a_keystore_finds_only_its_keys() {
    let c = core().await;
    let ks_a = c.keystore("a").await;
    let ks_b = c.keystore("b").await;
    let key_b = c.key(&ks_b, "k", KeyKind::Aes256).await;
    let in_b = app("10.1.1.1").within_keystore(KeystoreRef::Id(ks_b.parse().unwrap()));
    assert!(c.encrypt(&key_b, &in_b, b"x").await.is_ok());
    // Confined to another keystore: the same answer as a key that doesn't exist.
    let in_a = app("10.1.1.1").within_keystore(KeystoreRef::Id(ks_a.parse().unwrap()));
    let err = c.encrypt(&key_b, &in_a, b"x").await.unwrap_err();
    let missing = c.encrypt(&"0".repeat(32), &in_a, b"x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.to_string(), format!("key {key_b} not found"));
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn a_data_key_sealed_as_base64_text_decrypts_to_the_text_given_out() {
    let c = core().await;
    let ks = c.keystore("a").await;
    let key = c.key(&ks, "k", KeyKind::Aes256).await;
    let op = GenerateDataKey {
        key_id: key.clone(),
        aad: Vec::new(),
        with_plaintext: true,
        sealed_as: DataKeyForm::Base64Text,
    };
    let dk = c.kms.execute(&app("10.1.1.1"), op).await.unwrap();
    let text = dk.plaintext.as_ref().unwrap().to_base64();
    assert_eq!(text.len(), 44);
    let op = Decrypt { key_id: key, ciphertext: dk.ciphertext, aad: Vec::new() };
    let opened = c.kms.execute(&app("10.1.1.1"), op).await.unwrap();
    assert_eq!(opened.plaintext.as_slice(), text.as_bytes());
}

#[tokio::test]
async fn keystore_aliases_are_unique_name_the_keystore_and_can_move() {
    let c = core().await;
    let create = |name: &str, alias: Option<&str>| CreateKeystore {
        name: name.into(),
        policy: policy(&["10.0.0.0/8"]),
        alias: alias.map(str::to_owned),
    };
    let a = c.kms.execute(&admin(), create("a", Some("AppKey-1"))).await.unwrap();
    assert_eq!(a.alias.as_deref(), Some("AppKey-1"));
    let taken = c.kms.execute(&admin(), create("b", Some("AppKey-1"))).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(taken.to_string().contains("alias \"AppKey-1\" is taken"), "{taken}");
    let hex = c.kms.execute(&admin(), create("c", Some(&"ab".repeat(16)))).await.unwrap_err();
    assert_eq!(hex.code(), Code::InvalidArgument, "{hex}");

    let key = c.key(&a.id.to_string(), "k", KeyKind::Aes256).await;
    let by_alias = |alias: &str| app("10.1.1.1").within_keystore(KeystoreRef::Alias(alias.into()));
    assert!(c.encrypt(&key, &by_alias("AppKey-1"), b"x").await.is_ok());
    assert_eq!(c.encrypt(&key, &by_alias("other"), b"x").await.unwrap_err().code(), Code::NotFound);

    // Moved: the old alias no longer names it, and is free again.
    let op = UpdateKeystore { keystore_id: a.id.to_string(), policy: None, alias: Some(Some("AppKey-2".into())) };
    let moved = c.kms.execute(&admin(), op).await.unwrap();
    assert_eq!((moved.alias.as_deref(), &moved.policy), (Some("AppKey-2"), &a.policy));
    assert!(c.encrypt(&key, &by_alias("AppKey-2"), b"x").await.is_ok());
    assert_eq!(c.encrypt(&key, &by_alias("AppKey-1"), b"x").await.unwrap_err().code(), Code::NotFound);
    c.kms.execute(&admin(), create("d", Some("AppKey-1"))).await.unwrap();
    // Removed.
    let op = UpdateKeystore { keystore_id: a.id.to_string(), policy: None, alias: Some(None) };
    assert_eq!(c.kms.execute(&admin(), op).await.unwrap().alias, None);
    c.kms.execute(&admin(), create("e", Some("AppKey-2"))).await.unwrap();
    // Neither policy nor alias: nothing to do.
    let op = UpdateKeystore { keystore_id: a.id.to_string(), policy: None, alias: None };
    assert_eq!(c.kms.execute(&admin(), op).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn hmac_keys_mac_verify_rotate_and_reload_from_the_store() {
    use skm_crypto::mac::MacAlgorithm;
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let mac = |key_id: &str, message: &[u8]| GenerateMac { key_id: key_id.into(), message: message.to_vec() };
    let verify = |key_id: &str, mac: &[u8], key_version| VerifyMac {
        key_id: key_id.into(),
        message: b"m".to_vec(),
        mac: mac.to_vec(),
        key_version,
    };
    for alg in MacAlgorithm::ALL {
        let key = core.key(&ks, alg.name(), KeyKind::Hmac(alg)).await;
        let v1 = core.kms.execute(&caller, mac(&key, b"m")).await.unwrap();
        assert_eq!((v1.mac.len(), v1.key_version, v1.algorithm), (alg.tag_len(), 1, alg));
        assert_eq!(core.kms.execute(&caller, mac(&key, b"m")).await.unwrap().mac, v1.mac, "HMAC is deterministic");
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
        let v2 = core.kms.execute(&caller, mac(&key, b"m")).await.unwrap();
        assert_eq!(v2.key_version, 2);
        assert_ne!(v2.mac, v1.mac, "a rotation makes a new key");
        assert_eq!(core.kms.execute(&caller, verify(&key, &v1.mac, 0)).await.unwrap(), Verified(Some(1)));
        assert_eq!(core.kms.execute(&caller, verify(&key, &v2.mac, 0)).await.unwrap(), Verified(Some(2)));
        assert_eq!(core.kms.execute(&caller, verify(&key, &v1.mac, 2)).await.unwrap(), Verified(None));
        let truncated = &v2.mac[..v2.mac.len() - 1];
        assert_eq!(core.kms.execute(&caller, verify(&key, truncated, 0)).await.unwrap(), Verified(None));
        let missing = core.kms.execute(&caller, verify(&key, &v1.mac, 3)).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        // The versions read back from the store make the same tags.
        let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
        let Material::Mac { algorithm, versions } = &stored.material else { panic!("not an hmac key") };
        assert_eq!(*algorithm, alg);
        assert_eq!(versions.get(1).unwrap().material.sign(b"m"), v1.mac);
        assert_eq!(versions.get(2).unwrap().material.sign(b"m"), v2.mac);
        core.kms.execute(&admin(), DisableKey { key_id: key.clone() }).await.unwrap();
        let disabled = core.kms.execute(&caller, mac(&key, b"m")).await.unwrap_err();
        assert_eq!(disabled.code(), Code::FailedPrecondition);
    }
    let key = core.key(&ks, "h", KeyKind::Hmac(MacAlgorithm::HmacSha256)).await;
    let long = core.kms.execute(&caller, mac(&key, &[0; model::MAX_MAC_MESSAGE + 1])).await.unwrap_err();
    assert_eq!(long.to_string(), "message is 4097 bytes; the limit is 4096");
    core.kms.execute(&caller, mac(&key, &[0; model::MAX_MAC_MESSAGE])).await.unwrap();
    let long_tag = core.kms.execute(&caller, verify(&key, &[0; model::MAX_MAC + 1], 0)).await.unwrap_err();
    assert_eq!(long_tag.code(), Code::InvalidArgument);
    let aes = core.key(&ks, "aes", KeyKind::Aes256).await;
    let wrong = core.kms.execute(&caller, mac(&aes, b"m")).await.unwrap_err();
    assert!(wrong.to_string().contains("this operation needs an hmac key"), "{wrong}");
    let sign = Sign { key_id: key.clone(), signed: Signed::Message(b"m".to_vec()), algorithm: None };
    assert_eq!(core.kms.execute(&caller, sign).await.unwrap_err().code(), Code::FailedPrecondition);

    let entries = core.entries().await;
    let uses: Vec<_> = entries.iter().filter(|(_, e)| e.operation.ends_with("Mac")).map(|(_, e)| e).collect();
    assert!(uses.iter().any(|e| e.operation == "GenerateMac" && e.key_version == Some(2)));
    assert!(uses.iter().any(|e| e.operation == "VerifyMac" && e.key_version == Some(1)));
    assert_eq!(core.kms.audit().verify().await.unwrap().first_broken, None);
}

#[tokio::test]
async fn p384_and_ml_dsa_keys_sign_verify_rotate_and_reload_from_the_store() {
    use skm_crypto::asym::{Message, SignatureAlgorithm};
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let cases = [
        (KeyAlgorithm::EcdsaP384, SignatureAlgorithm::EcdsaSha384),
        (KeyAlgorithm::MlDsa44, SignatureAlgorithm::MlDsa),
        (KeyAlgorithm::MlDsa65, SignatureAlgorithm::MlDsa),
        (KeyAlgorithm::MlDsa87, SignatureAlgorithm::MlDsa),
    ];
    for (alg, sig_alg) in cases {
        let key = core.key(&ks, alg.name(), KeyKind::Asymmetric(alg)).await;
        let sign = |signed| Sign { key_id: key.clone(), signed, algorithm: None };
        let v1 = core.kms.execute(&caller, sign(Signed::Message(b"m".to_vec()))).await.unwrap();
        assert_eq!((v1.algorithm, v1.key_version), (sig_alg, 1));
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
        let v2 = core.kms.execute(&caller, sign(Signed::Message(b"m".to_vec()))).await.unwrap();
        assert_eq!(v2.key_version, 2);
        let verify = |signature: &[u8]| Verify {
            key_id: key.clone(),
            signed: Signed::Message(b"m".to_vec()),
            signature: signature.to_vec(),
            algorithm: Some(sig_alg),
            key_version: 0,
        };
        assert_eq!(core.kms.execute(&caller, verify(&v1.signature)).await.unwrap(), Verified(Some(1)));
        assert_eq!(core.kms.execute(&caller, verify(&v2.signature)).await.unwrap(), Verified(Some(2)));
        // The public key exported for version 1 verifies its signature
        // outside the core, from the SPKI alone.
        let public = core.kms.execute(&caller, GetPublicKey { key_id: key.clone(), key_version: 1 }).await.unwrap();
        assert_eq!(public.kind, KeyKind::Asymmetric(alg));
        let spki = skm_crypto::asym::PublicKey::from_spki_der(alg, &public.spki_der).unwrap();
        assert_eq!(spki.verify(sig_alg, Message::Raw(b"m"), &v1.signature), Ok(()));
        let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
        let Material::Signing { versions, .. } = &stored.material else { panic!("not a signing key") };
        assert_eq!(versions.get(1).unwrap().material.public().spki_der(), &public.spki_der[..]);
        if alg == KeyAlgorithm::EcdsaP384 {
            let digest = skm_crypto::sha384(b"m").to_vec();
            let by_digest = core.kms.execute(&caller, sign(Signed::Digest(digest))).await.unwrap();
            assert_eq!(spki.verify(sig_alg, Message::Raw(b"m"), &by_digest.signature), Err(VerifyError), "v2 signed");
            assert_eq!(core.kms.execute(&caller, verify(&by_digest.signature)).await.unwrap(), Verified(Some(2)));
            let short = core.kms.execute(&caller, sign(Signed::Digest(vec![0; 32]))).await.unwrap_err();
            assert_eq!(
                (short.code(), short.to_string()),
                (Code::InvalidArgument, "a SHA-384 digest is 48 bytes; got 32".to_owned())
            );
        } else {
            let digest = core.kms.execute(&caller, sign(Signed::Digest(vec![0; 32]))).await.unwrap_err();
            assert_eq!(
                (digest.code(), digest.to_string()),
                (Code::FailedPrecondition, format!("{} keys sign messages, not digests", alg.name()))
            );
        }
        let wrong = Sign {
            key_id: key.clone(),
            signed: Signed::Message(b"m".to_vec()),
            algorithm: Some(SignatureAlgorithm::Ed25519),
        };
        assert_eq!(core.kms.execute(&caller, wrong).await.unwrap_err().code(), Code::FailedPrecondition);
    }
}

#[tokio::test]
async fn rsa_oaep_keys_decrypt_what_their_public_key_encrypted_with_one_opaque_error() {
    use skm_crypto::rsa_oaep::{EncryptingKey, OaepKeySize};
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let key = core.key(&ks, "oaep", KeyKind::RsaOaep(OaepKeySize::Rsa2048)).await;
    let public = |version| GetPublicKey { key_id: key.clone(), key_version: version };
    let v1 = core.kms.execute(&caller, public(0)).await.unwrap();
    assert_eq!((v1.kind, v1.key_version), (KeyKind::RsaOaep(OaepKeySize::Rsa2048), 1));
    assert!(v1.pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let encrypt = |spki: &[u8], plaintext: &[u8]| {
        EncryptingKey::from_spki_der(OaepKeySize::Rsa2048, spki).unwrap().encrypt(plaintext).unwrap()
    };
    let decrypt = |ciphertext: Vec<u8>, key_version| DecryptRsaOaep { key_id: key.clone(), ciphertext, key_version };
    let ct1 = encrypt(&v1.spki_der, b"wrapped data key");
    let done = core.kms.execute(&caller, decrypt(ct1.clone(), 0)).await.unwrap();
    assert_eq!((&done.plaintext[..], done.key_version), (&b"wrapped data key"[..], 1));

    core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap();
    let v2 = core.kms.execute(&caller, public(0)).await.unwrap();
    assert_eq!(v2.key_version, 2);
    assert_ne!(v2.spki_der, v1.spki_der);
    // A version-1 ciphertext names its version once the key has rotated.
    assert_eq!(core.kms.execute(&caller, decrypt(ct1.clone(), 1)).await.unwrap().key_version, 1);
    let mut failures = Vec::new();
    let mut flipped = ct1.clone();
    flipped[17] ^= 1;
    for bad in [decrypt(ct1.clone(), 0), decrypt(flipped, 1), decrypt(ct1[1..].to_vec(), 1), decrypt(vec![0; 256], 1)] {
        let e = core.kms.execute(&caller, bad).await.unwrap_err();
        failures.push((e.code(), e.to_string()));
    }
    assert!(
        failures.iter().all(|f| *f == (Code::InvalidArgument, "decryption failed".to_owned())),
        "one opaque error for every failure: {failures:?}"
    );
    let missing = core.kms.execute(&caller, decrypt(ct1.clone(), 3)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let long = core.kms.execute(&caller, decrypt(vec![0; model::MAX_RSA_CIPHERTEXT + 1], 0)).await.unwrap_err();
    assert_eq!(long.to_string(), "ciphertext is 513 bytes; the limit is 512");

    // Only Decrypt with the algorithm named uses it; SKM-format calls don't.
    let aes_call = core.encrypt(&key, &caller, b"x").await.unwrap_err();
    assert!(aes_call.to_string().contains("this operation needs an aes-256 key"), "{aes_call}");
    let sign = Sign { key_id: key.clone(), signed: Signed::Message(b"m".to_vec()), algorithm: None };
    assert_eq!(core.kms.execute(&caller, sign).await.unwrap_err().code(), Code::FailedPrecondition);
    let aes = core.key(&ks, "aes", KeyKind::Aes256).await;
    let on_aes = DecryptRsaOaep { key_id: aes, ciphertext: ct1.clone(), key_version: 0 };
    let wrong = core.kms.execute(&caller, on_aes).await.unwrap_err();
    assert!(wrong.to_string().contains("needs an rsa-oaep-* key"), "{wrong}");

    // Read back from the store, the versions decrypt the same.
    let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
    let Material::Decrypting { versions, .. } = &stored.material else { panic!("not an rsa-oaep key") };
    assert_eq!(&versions.get(1).unwrap().material.decrypt(&ct1).unwrap()[..], b"wrapped data key");
    core.kms.execute(&admin(), DisableKey { key_id: key.clone() }).await.unwrap();
    let disabled = core.kms.execute(&caller, decrypt(ct1, 1)).await.unwrap_err();
    assert_eq!(disabled.code(), Code::FailedPrecondition);
    let decrypts: Vec<_> = core.entries().await.into_iter().filter(|(_, e)| e.operation == "Decrypt").collect();
    assert!(decrypts.iter().any(|(_, e)| e.key_version == Some(1) && e.result == Outcome::Allowed));
}

/// Import parameters for `key`, the wrapping key as a client sees it.
async fn import_parameters(
    core: &Core,
    key: &str,
    algorithm: skm_crypto::import::WrappingAlgorithm,
) -> (skm_crypto::rsa_oaep::EncryptingKey, Vec<u8>) {
    use skm_crypto::rsa_oaep::{EncryptingKey, OaepKeySize};
    let op = GetParametersForImport {
        key_id: key.into(),
        wrapping_algorithm: algorithm,
        wrapping_key_size: OaepKeySize::Rsa3072,
    };
    let params = core.kms.execute(&admin(), op).await.unwrap();
    assert_eq!(params.valid_to, core.kms.now() + model::DAY, "valid 24 hours");
    assert!(params.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let public = EncryptingKey::from_spki_der(OaepKeySize::Rsa3072, &params.public_key_der).unwrap();
    (public, params.import_token.as_bytes().to_vec())
}

/// CreateKey of origin external.
fn external(keystore_id: &str, name: &str, kind: KeyKind) -> CreateKey {
    CreateKey {
        keystore_id: keystore_id.into(),
        name: name.into(),
        kind,
        rotation_period_days: 0,
        origin: KeyOrigin::External,
    }
}

fn import(key: &str, token: &[u8], wrapped: Vec<u8>) -> ImportKeyMaterial {
    ImportKeyMaterial { key_id: key.into(), import_token: token.to_vec(), encrypted_key_material: wrapped }
}

#[tokio::test]
async fn an_external_key_waits_for_material_and_each_refused_import_stores_nothing() {
    use skm_crypto::import::{WrappingAlgorithm, wrap};
    const OAEP: WrappingAlgorithm = WrappingAlgorithm::RsaesOaepSha256;
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let rotating = CreateKey { rotation_period_days: 30, ..external(&ks, "r", KeyKind::Aes256) };
    let rotating = core.kms.execute(&admin(), rotating).await.unwrap_err();
    assert!(rotating.to_string().contains("must have 0"), "{rotating}");
    let ml_dsa = core.kms.execute(&admin(), external(&ks, "m", KeyKind::Asymmetric(KeyAlgorithm::MlDsa65))).await;
    assert!(ml_dsa.unwrap_err().to_string().contains("ml-dsa-65 keys can't be imported"));

    let key = core.kms.execute(&admin(), external(&ks, "aes", KeyKind::Aes256)).await.unwrap();
    assert_eq!(
        (key.state, key.origin, key.material.version_count()),
        (KeyState::PendingImport, KeyOrigin::External, 0)
    );
    let key = key.id.to_string();
    let waiting = core.encrypt(&key, &caller, b"x").await.unwrap_err();
    assert_eq!(waiting.code(), Code::FailedPrecondition);
    assert!(waiting.to_string().contains("has no key material yet"), "{waiting}");
    for refused in [
        core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.map(drop),
        core.kms.execute(&admin(), EnableKey { key_id: key.clone() }).await.map(drop),
        core.kms.execute(&admin(), DisableKey { key_id: key.clone() }).await.map(drop),
        core.kms.execute(&admin(), UpdateKey { key_id: key.clone(), rotation_period_days: 7 }).await.map(drop),
    ] {
        assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    }
    let early = core.kms.execute(&admin(), import(&key, &[0; 32], vec![1; 384])).await.unwrap_err();
    assert!(early.to_string().contains("no import parameters outstanding"), "{early}");
    // Read back from the store, it is still waiting.
    let (stored, _) = core.kms.records.key(&key.parse().unwrap()).await.unwrap().unwrap();
    assert!(matches!(stored.material, Material::Awaiting(KeyKind::Aes256)) && stored.state == KeyState::PendingImport);

    let (public, token) = import_parameters(&core, &key, OAEP).await;
    let material = [0x5a_u8; 32];
    let wrapped = wrap(&public, OAEP, &material).unwrap();
    let before = core.snapshot().await;
    let mut wrong_token = token.clone();
    wrong_token[0] ^= 1;
    let mut flipped = wrapped.clone();
    flipped[100] ^= 1;
    let refusals = [
        (import(&key, &wrong_token, wrapped.clone()), "is not the token of key"),
        (import(&key, &token[..31], wrapped.clone()), "import_token must be the 32 bytes"),
        (import(&key, &token, flipped), "does not unwrap with rsaes-oaep-sha256"),
        (import(&key, &token, wrap(&public, OAEP, &[1; 16]).unwrap()), "the 32 raw bytes of the key; got 16 bytes"),
        (import(&key, &token, Vec::new()), "encrypted_key_material is empty"),
        (import(&key, &token, vec![0; MAX_WRAPPED_MATERIAL + 1]), "the limit is 4624"),
    ];
    for (op, expected) in refusals {
        let e = core.kms.execute(&admin(), op).await.unwrap_err();
        assert!(e.to_string().contains(expected), "{e} lacks {expected:?}");
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    }
    core.clock.advance(model::DAY);
    let expired = core.kms.execute(&admin(), import(&key, &token, wrapped.clone())).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert!(expired.to_string().contains("expired at"), "{expired}");
    let after: Vec<_> = core.snapshot().await.into_iter().filter(|(k, _)| !k.starts_with(b"audit")).collect();
    assert_eq!(after, before, "a refused import changes nothing");

    // New parameters replace the old: the old token no longer imports.
    let (public, fresh_token) = import_parameters(&core, &key, OAEP).await;
    let stale = core.kms.execute(&admin(), import(&key, &token, wrap(&public, OAEP, &material).unwrap())).await;
    assert!(stale.unwrap_err().to_string().contains("is not the token"));
    let imported =
        core.kms.execute(&admin(), import(&key, &fresh_token, wrap(&public, OAEP, &material).unwrap())).await.unwrap();
    assert_eq!((imported.state, imported.material.newest_version()), (KeyState::Enabled, 1));
    let again = core.kms.execute(&admin(), import(&key, &fresh_token, wrap(&public, OAEP, &material).unwrap())).await;
    assert!(again.unwrap_err().to_string().contains("no import parameters outstanding"), "a token imports once");

    // The imported key encrypts in the documented format: the same key
    // bytes decrypt it locally.
    let sealed = core.encrypt(&key, &caller, b"hello").await.unwrap();
    let local =
        skm_crypto::user::decrypt(&Secret32::from_array_wiping(&mut material.clone()), &sealed.ciphertext, b"a");
    assert_eq!(&local.unwrap()[..], b"hello");
    // Its material is sealed at rest like any key's.
    for (k, v) in core.store.list(b"").await.unwrap() {
        assert!(!v.value.windows(32).any(|w| w == material), "{} holds the key in clear", String::from_utf8_lossy(&k));
    }

    // A second import is the next version; rotation stays refused.
    let (public, token) = import_parameters(&core, &key, OAEP).await;
    let v2 = core.kms.execute(&admin(), import(&key, &token, wrap(&public, OAEP, &[0x33; 32]).unwrap())).await.unwrap();
    assert_eq!((v2.state, v2.material.newest_version()), (KeyState::Enabled, 2));
    let rotate = core.kms.execute(&admin(), RotateKey { key_id: key.clone() }).await.unwrap_err();
    assert!(rotate.to_string().contains("only by importing new material"), "{rotate}");
    let decrypt = Decrypt { key_id: key.clone(), ciphertext: sealed.ciphertext.clone(), aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&caller, decrypt).await.unwrap().plaintext[..], b"hello", "version 1 still decrypts");

    // SKM's own keys take no material.
    let own = core.key(&ks, "own", KeyKind::Aes256).await;
    let op = GetParametersForImport {
        key_id: own,
        wrapping_algorithm: OAEP,
        wrapping_key_size: skm_crypto::rsa_oaep::OaepKeySize::Rsa3072,
    };
    let e = core.kms.execute(&admin(), op).await.unwrap_err();
    assert!(e.to_string().contains("origin skm"), "{e}");
    let op = GetParametersForImport {
        key_id: key.clone(),
        wrapping_algorithm: OAEP,
        wrapping_key_size: skm_crypto::rsa_oaep::OaepKeySize::Rsa2048,
    };
    assert!(core.kms.execute(&admin(), op).await.unwrap_err().to_string().contains("RSA_3072 or RSA_4096"));

    let entries = core.entries().await;
    let imports: Vec<_> = entries.iter().filter(|(_, e)| e.operation == "ImportKeyMaterial").map(|(_, e)| e).collect();
    assert!(imports.iter().any(|e| e.result == Outcome::Allowed && e.key_version == Some(2)));
    assert!(imports.iter().any(|e| e.result == Outcome::Failed("INVALID_ARGUMENT".into())), "refusals are audited");
    assert!(entries.iter().any(|(_, e)| e.operation == "GetParametersForImport" && e.result == Outcome::Allowed));
    assert_eq!(core.kms.audit().verify().await.unwrap().first_broken, None);
}

#[tokio::test]
async fn imported_signing_hmac_and_rsa_keys_work_as_their_originals() {
    use skm_crypto::asym::{Message, PrivateKey};
    use skm_crypto::import::{WrappingAlgorithm, wrap};
    use skm_crypto::mac::{MacAlgorithm, MacKey};
    use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let external = |name: &str, kind| external(&ks, name, kind);
    let import_raw = async |key: &str, raw: &[u8]| {
        let (public, _) = import_parameters(&core, key, WrappingAlgorithm::RsaesOaepSha256).await;
        let algorithm = WrappingAlgorithm::for_material(raw.len(), public.size());
        let (public, token) = import_parameters(&core, key, algorithm).await;
        core.kms.execute(&admin(), import(key, &token, wrap(&public, algorithm, raw).unwrap())).await
    };

    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
        let original = PrivateKey::generate(alg).unwrap();
        let key =
            core.kms.execute(&admin(), external(alg.name(), KeyKind::Asymmetric(alg))).await.unwrap().id.to_string();
        import_raw(&key, original.danger_pkcs8()).await.unwrap();
        let algorithm = alg.default_signature_algorithm();
        let sign = Sign { key_id: key.clone(), signed: Signed::Message(b"m".to_vec()), algorithm: Some(algorithm) };
        let signature = core.kms.execute(&caller, sign).await.unwrap();
        original.public().verify(algorithm, Message::Raw(b"m"), &signature.signature).unwrap();
        let public = core.kms.execute(&caller, GetPublicKey { key_id: key.clone(), key_version: 0 }).await.unwrap();
        assert_eq!(public.spki_der, original.public().spki_der(), "{alg:?}");
    }
    let p384 = PrivateKey::generate(KeyAlgorithm::EcdsaP384).unwrap();
    let p256 = core.kms.execute(&admin(), external("p256-2", KeyKind::Asymmetric(KeyAlgorithm::EcdsaP256))).await;
    let wrong = import_raw(&p256.unwrap().id.to_string(), p384.danger_pkcs8()).await.unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "key material for an ecdsa-p256 key must be an unencrypted PKCS#8 DER ecdsa-p256 private key"
    );
    let rsa = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let rsa3072 = core.kms.execute(&admin(), external("rsa-3072", KeyKind::Asymmetric(KeyAlgorithm::Rsa3072))).await;
    assert!(import_raw(&rsa3072.unwrap().id.to_string(), rsa.danger_pkcs8()).await.is_err(), "wrong modulus size");

    let hmac = MacKey::from_bytes(MacAlgorithm::HmacSha384, Zeroizing::new(vec![9; 48])).unwrap();
    let key = core.kms.execute(&admin(), external("hmac", KeyKind::Hmac(MacAlgorithm::HmacSha384))).await.unwrap();
    let key = key.id.to_string();
    let short = import_raw(&key, &[9; 16]).await.unwrap_err();
    assert_eq!(short.to_string(), "key material for an hmac-sha384 key must be 48..=128 raw bytes; got 16 bytes");
    import_raw(&key, hmac.danger_bytes()).await.unwrap();
    let mac = core.kms.execute(&caller, GenerateMac { key_id: key, message: b"m".to_vec() }).await.unwrap();
    assert_eq!(mac.mac, hmac.sign(b"m"));

    // RSA private keys are too large for OAEP alone: OAEP + AES-KWP.
    let original = DecryptingKey::generate(OaepKeySize::Rsa2048).unwrap();
    assert_eq!(
        WrappingAlgorithm::for_material(original.danger_pkcs8().len(), OaepKeySize::Rsa3072),
        WrappingAlgorithm::RsaAesKeyWrapSha256
    );
    let key = core.kms.execute(&admin(), external("oaep", KeyKind::RsaOaep(OaepKeySize::Rsa2048))).await.unwrap();
    let key = key.id.to_string();
    import_raw(&key, original.danger_pkcs8()).await.unwrap();
    let ciphertext = original.public().encrypt(b"to skm").unwrap();
    let done = core.kms.execute(&caller, DecryptRsaOaep { key_id: key.clone(), ciphertext, key_version: 0 }).await;
    assert_eq!(&done.unwrap().plaintext[..], b"to skm");

    // A waiting key can be deleted; cancelled, it waits again; destroyed,
    // its import parameters go with it.
    let waiting = core.kms.execute(&admin(), external("w", KeyKind::Aes256)).await.unwrap().id.to_string();
    import_parameters(&core, &waiting, WrappingAlgorithm::RsaesOaepSha256).await;
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: waiting.clone(), pending_days: 7 }).await.unwrap();
    let back = core.kms.execute(&admin(), CancelKeyDeletion { key_id: waiting.clone() }).await.unwrap();
    assert_eq!(back.state, KeyState::PendingImport);
    core.kms.execute(&admin(), ScheduleKeyDeletion { key_id: waiting.clone(), pending_days: 7 }).await.unwrap();
    core.clock.advance(8 * model::DAY);
    core.kms.maintain().await.unwrap();
    let left: Vec<_> =
        core.store.list(b"").await.unwrap().into_iter().filter(|(k, _)| k.ends_with(waiting.as_bytes())).collect();
    assert!(
        left.is_empty(),
        "nothing of the destroyed key is left: {:?}",
        left.iter().map(|(k, _)| String::from_utf8_lossy(k)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn ml_dsa_keys_sign_an_external_mu_as_the_message_itself() {
    use skm_crypto::asym::{Message, SignatureAlgorithm};
    let core = core().await;
    let ks = core.keystore("ks").await;
    let caller = app("10.0.0.1");
    let key = core.key(&ks, "pq", KeyKind::Asymmetric(KeyAlgorithm::MlDsa65)).await;
    let public = core.kms.execute(&caller, GetPublicKey { key_id: key.clone(), key_version: 0 }).await.unwrap();
    let public = skm_crypto::asym::PublicKey::from_spki_der(KeyAlgorithm::MlDsa65, &public.spki_der).unwrap();
    let message = vec![0x42; 3 * model::MAX_SIGN_MESSAGE];
    let mu = public.external_mu(&message).unwrap().to_vec();
    let sign = |signed| Sign { key_id: key.clone(), signed, algorithm: None };
    let done = core.kms.execute(&caller, sign(Signed::Mu(mu.clone()))).await.unwrap();
    assert_eq!((done.key_version, done.algorithm), (1, SignatureAlgorithm::MlDsa));
    public.verify(SignatureAlgorithm::MlDsa, Message::Raw(&message), &done.signature).unwrap();
    let verify = |signed, signature: &[u8]| Verify {
        key_id: key.clone(),
        signed,
        signature: signature.to_vec(),
        algorithm: None,
        key_version: 0,
    };
    let ok = core.kms.execute(&caller, verify(Signed::Mu(mu.clone()), &done.signature)).await.unwrap();
    assert_eq!(ok, Verified(Some(1)));
    let mut other = mu.clone();
    other[63] ^= 1;
    assert_eq!(core.kms.execute(&caller, verify(Signed::Mu(other), &done.signature)).await.unwrap(), Verified(None));
    let short = core.kms.execute(&caller, sign(Signed::Mu(mu[..63].to_vec()))).await.unwrap_err();
    assert_eq!((short.code(), short.to_string()), (Code::InvalidArgument, "an external mu is 64 bytes; got 63".into()));
    let ed = core.key(&ks, "ed", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    let on_ed = Sign { key_id: ed, signed: Signed::Mu(mu), algorithm: None };
    let refused = core.kms.execute(&caller, on_ed).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.to_string(), "ed25519 keys take no external mu (ML-DSA keys only)");
    let signs: Vec<_> = core.entries().await.into_iter().filter(|(_, e)| e.operation == "Sign").collect();
    assert!(signs.iter().any(|(_, e)| e.result == Outcome::Allowed && e.key_version == Some(1)));
}

/// Store keys whose values are not sealed records.
fn clear_record(key: &[u8]) -> bool {
    key.starts_with(b"due/") || key.starts_with(b"oprevoked/") || key == b"resealcursor"
}

/// The system key version (and format byte) of every sealed value.
async fn sealed_under(store: &MemoryStore) -> Vec<(String, u8, u32)> {
    let mut out = Vec::new();
    for (k, v) in store.list(b"").await.unwrap() {
        if clear_record(&k) {
            continue;
        }
        let sealed = if k.starts_with(b"key/") { &v.value[32..] } else { &v.value[..] };
        let version = SystemKeyring::version_of(sealed).unwrap();
        out.push((String::from_utf8_lossy(&k).into_owned(), sealed[0], version));
    }
    out
}

#[tokio::test]
async fn after_a_system_key_rotation_every_record_is_resealed_and_the_old_version_retires() {
    let core = core().await;
    let keys = core.kms.records.system_keys().clone();
    // One record of every kind under version 1.
    let op = CreateKeystore { name: "ks".into(), policy: policy(&["10.0.0.0/8"]), alias: Some("alias".into()) };
    let ks = core.kms.execute(&admin(), op).await.unwrap().id.to_string();
    let aes = core.key(&ks, "aes", KeyKind::Aes256).await;
    core.kms.execute(&admin(), RotateKey { key_id: aes.clone() }).await.unwrap();
    let signing = core.key(&ks, "ed", KeyKind::Asymmetric(KeyAlgorithm::Ed25519)).await;
    let secret = CreateSecret {
        keystore_id: ks.clone(),
        name: "s".into(),
        value: Zeroizing::new(b"pw".to_vec()),
        max_versions: 0,
    };
    let secret = core.kms.execute(&admin(), secret).await.unwrap().id.to_string();
    let byok = core.kms.execute(&admin(), external(&ks, "byok", KeyKind::Aes256)).await.unwrap().id.to_string();
    import_parameters(&core, &byok, skm_crypto::import::WrappingAlgorithm::RsaesOaepSha256).await;
    let ct = core.encrypt(&aes, &app("10.0.0.1"), b"kept").await.unwrap().ciphertext;
    core.kms.maintain().await.unwrap();
    core.kms.records.save_audit_anchor(1, &[0; 32]).await.unwrap();
    core.kms.execute(&admin(), RevokeOperator { sha256: "ab".repeat(32) }).await.unwrap();
    let before = sealed_under(&core.store).await;
    for prefix in ["ks/", "ksname/", "ksalias/", "key/", "keyver/", "keyname/", "import/", "lastuse/", "auditanchor"] {
        assert!(before.iter().any(|(k, _, _)| k.starts_with(prefix)), "a {prefix} record exists");
    }
    assert!(before.iter().all(|(_, _, v)| *v == 1));

    // Retiring the active version, or a version not held, is refused.
    let retire = |version| RetireSystemKeyVersion { version };
    let e = core.kms.execute(&admin(), retire(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("version 1 is the active version"), "{e}");
    assert_eq!(core.kms.execute(&admin(), retire(9)).await.unwrap_err().code(), Code::NotFound);

    // Version 2 becomes active (as the loader does after a rotation).
    let mut v1 = *keys.current().unwrap().danger_key(1).unwrap().danger_expose();
    let mut v2 = [9u8; 32];
    keys.set(
        SystemKeyring::new(
            2,
            BTreeMap::from([(1, Secret32::from_array_wiping(&mut v1)), (2, Secret32::from_array_wiping(&mut v2))]),
        )
        .unwrap(),
    );
    let e = core.kms.execute(&admin(), retire(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("still sealed under system key version 1"), "{e}");
    let status = core.kms.execute(&admin(), GetSystemKeyStatus).await.unwrap();
    assert_eq!(status.active_version, 2);
    assert_eq!(status.versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1, 2]);
    assert!(status.versions[0].1 >= before.len() as u64 - 2, "{status:?}");

    // Pages of 3 until the end of the store: every record moves to v2.
    let mut from = Vec::new();
    let mut resealed = 0;
    loop {
        let page = core.kms.records.reseal_page(&from, 3).await.unwrap();
        assert!(page.scanned <= 3);
        resealed += page.resealed;
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    let after = sealed_under(&core.store).await;
    assert!(resealed as usize >= before.len() - 2, "{resealed} of {}", before.len());
    assert!(after.iter().all(|(_, format, v)| (*format, *v) == (2, 2)), "{after:?}");
    // A second pass finds nothing to do.
    let again = core.kms.records.reseal_page(b"", 10_000).await.unwrap();
    assert_eq!((again.resealed, again.raced, again.next), (0, 0, None));

    // Now version 1 retires; everything still opens and old ciphertexts decrypt.
    let done = core.kms.execute(&admin(), retire(1)).await.unwrap();
    assert_eq!(done, RetiredVersion { version: 1, system_keyd_dropped: false }, "no loader in this test");
    assert_eq!(keys.current().unwrap().versions().collect::<Vec<_>>(), [2]);
    assert!(keys.current().unwrap().danger_key(1).is_none());
    core.kms.execute(&admin(), retire(1)).await.unwrap();
    let fresh = Records::new(core.store.clone(), keys.clone());
    for id in [&aes, &signing, &secret, &byok] {
        assert!(fresh.key(&id.parse().unwrap()).await.unwrap().is_some(), "{id} opens");
    }
    let op = Decrypt { key_id: aes.clone(), ciphertext: ct, aad: b"a".to_vec() };
    assert_eq!(&core.kms.execute(&app("10.0.0.1"), op).await.unwrap().plaintext[..], b"kept");
    let value = core.kms.execute(&app("10.0.0.1"), GetSecret { key_id: secret, version: 0 }).await.unwrap();
    assert_eq!(&value.value[..], b"pw");
    let status = core.kms.execute(&admin(), GetSystemKeyStatus).await.unwrap();
    assert_eq!(status.retired_versions, [1]);
    assert_eq!(status.versions.len(), 1);
    // The audit entries MAC'd under version 1 still verify, through its kept audit keys.
    let report = core.kms.execute(&admin(), VerifyAudit).await.unwrap();
    assert!(report.first_broken.is_none() && report.entries > 10, "{report:?}");
    // And the manifest names it retired, with its audit keys sealed under v2.
    let ring = keys.current().unwrap();
    let manifest = fresh.system_manifest(&ring).await.unwrap().unwrap();
    assert_eq!((manifest.retired.clone(), manifest.active), (vec![1], 2));
    assert_eq!(fresh.retired_audit_keys(&ring).await.unwrap().keys().copied().collect::<Vec<_>>(), [1]);
}

fn with_console(core: Core) -> Core {
    let settings = ConsoleSettings { url: "https://localhost:7708".into(), idle_secs: 900, max_secs: 3600 };
    Core { kms: core.kms.with_console(settings), ..core }
}

fn via_console(caller: Caller) -> Caller {
    Caller { via: FrontEnd::Console, ..caller }
}

fn signed_in_operator(caller: &Caller) -> Operator {
    match &caller.who {
        Who::Operator(op) => op.clone(),
        _ => unreachable!("an operator"),
    }
}

#[tokio::test]
async fn console_sign_in_codes_are_single_use_short_lived_and_for_operators_only() {
    let plain = core().await;
    let e = plain.kms.execute(&admin(), CreateConsoleSignIn).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "no console configured: {e}");

    let core = with_console(core().await);
    let minted = core.kms.execute(&admin(), CreateConsoleSignIn).await.unwrap();
    assert_eq!(minted.code.len(), 43);
    assert_eq!(*minted.url, format!("https://localhost:7708/sign-in?code={}", minted.code.as_str()));
    assert_eq!(minted.expires_at, core.kms.now() + SIGN_IN_SECS);
    assert_eq!(core.kms.redeem_console_code(&minted.code).map(|op| op.principal), Some("operator/admin/ann".into()));
    assert!(core.kms.redeem_console_code(&minted.code).is_none(), "single use");
    assert!(core.kms.redeem_console_code("not-a-code").is_none());

    let late = core.kms.execute(&operator(Role::Auditor, 2), CreateConsoleSignIn).await.unwrap();
    core.clock.advance(SIGN_IN_SECS);
    assert!(core.kms.redeem_console_code(&late.code).is_none(), "expired after {SIGN_IN_SECS} s");

    let app_refused = core.kms.execute(&app("10.0.0.1"), CreateConsoleSignIn).await.unwrap_err();
    assert_eq!(app_refused.code(), Code::PermissionDenied);
    let from_console = core.kms.execute(&via_console(admin()), CreateConsoleSignIn).await.unwrap_err();
    assert_eq!(from_console.code(), Code::PermissionDenied, "a session can't mint codes: {from_console}");
    let minted_entries: Vec<_> =
        core.entries().await.into_iter().filter(|(_, e)| e.operation == "CreateConsoleSignIn").collect();
    assert_eq!(minted_entries.len(), 4, "every attempt audited");
    assert_eq!(minted_entries[0].1.caller.operator.as_deref(), Some("operator/admin/ann"));
}

#[tokio::test]
async fn console_sessions_end_when_idle_at_their_lifetime_on_sign_out_and_on_revocation() {
    let core = with_console(core().await);
    let open = |caller: Caller| {
        let kms = &core.kms;
        async move { kms.execute(&via_console(caller), OpenConsoleSession).await.unwrap() }
    };
    // Open sessions only come from the console front end.
    let e = core.kms.execute(&admin(), OpenConsoleSession).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Idle timeout.
    let idle = open(admin()).await;
    let session = core.kms.console_session(&idle.token).unwrap();
    assert_eq!(session.operator.principal, "operator/admin/ann");
    assert!(session.csrf_matches(&idle.session.csrf) && !session.csrf_matches("other"));
    core.clock.advance(899);
    assert!(core.kms.console_session(&idle.token).is_some(), "used within the idle timeout");
    core.clock.advance(900);
    assert!(core.kms.console_session(&idle.token).is_none(), "idle too long");

    // Absolute lifetime, however busy.
    let busy = open(admin()).await;
    for _ in 0..7 {
        core.clock.advance(500);
        assert!(core.kms.console_session(&busy.token).is_some());
    }
    core.clock.advance(500);
    assert!(core.kms.console_session(&busy.token).is_none(), "past its lifetime of 3600 s");

    // Sign-out.
    let out = open(admin()).await;
    core.kms.execute(&via_console(admin()), CloseConsoleSession { token: out.token.clone() }).await.unwrap();
    assert!(core.kms.console_session(&out.token).is_none());

    // Revoking the operator's certificate ends its sessions, not others'.
    let auditor = operator(Role::Auditor, 9);
    let revoked = open(auditor.clone()).await;
    let kept = open(admin()).await;
    let sha = signed_in_operator(&auditor).facts.cert_sha256().unwrap();
    core.kms.execute(&admin(), RevokeOperator { sha256: sha }).await.unwrap();
    assert!(core.kms.console_session(&revoked.token).is_none());
    assert!(core.kms.console_session(&kept.token).is_some());
    let listed = core.kms.execute(&via_console(admin()), ListOperators).await.unwrap();
    assert_eq!(listed.sessions.len(), 1);
    assert_eq!(listed.revoked.len(), 1);

    let names: Vec<_> = core.entries().await.into_iter().map(|(_, e)| (e.operation, e.front_end)).collect();
    assert!(names.contains(&("ConsoleSignIn".into(), Some("console".into()))));
    assert!(names.contains(&("ConsoleSignOut".into(), Some("console".into()))));
}

// Request ids (request_ids.rs): a change sent again under its id is made once.

fn with_id(caller: Caller, id: &str) -> Caller {
    caller.with_request_id(RequestId::parse(id).unwrap())
}

async fn newest(core: &Core<impl Store + Clone>, key_id: &str) -> (u32, usize) {
    let key = core.kms.execute(&admin(), DescribeKey { key_id: key_id.into() }).await.unwrap();
    (key.material.newest_version(), key.material.version_count())
}

#[tokio::test]
async fn a_change_sent_again_under_its_request_id_is_made_once() {
    let core = core().await;
    let ks = core.keystore("payments").await;

    // Without an id a second CreateSecret of the name is refused; with one,
    // the second is answered with the first's secret.
    let create = || CreateSecret {
        keystore_id: ks.clone(),
        name: "db".into(),
        value: Zeroizing::new(b"one".to_vec()),
        max_versions: 0,
    };
    let first = core.kms.execute(&with_id(admin(), "create-1"), create()).await.unwrap();
    let again = core.kms.execute(&with_id(admin(), "create-1"), create()).await.unwrap();
    assert_eq!(again.id, first.id);
    let taken = core.kms.execute(&admin(), create()).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken}");
    let secret = first.id.to_string();

    let update = || UpdateSecret { key_id: secret.clone(), value: Zeroizing::new(b"two".to_vec()) };
    for _ in 0..3 {
        let key = core.kms.execute(&with_id(admin(), "update-1"), update()).await.unwrap();
        assert_eq!(key.material.newest_version(), 2);
    }
    assert_eq!(newest(&core, &secret).await, (2, 2));
    core.kms.execute(&with_id(admin(), "update-2"), update()).await.unwrap();
    assert_eq!(newest(&core, &secret).await, (3, 3), "a new id is a new change");

    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    for _ in 0..2 {
        core.kms.execute(&with_id(admin(), "rotate-1"), RotateKey { key_id: key.clone() }).await.unwrap();
    }
    assert_eq!(newest(&core, &key).await, (2, 2));

    // Each attempt is audited; the replays name what the change made.
    let updates: Vec<_> = core
        .entries()
        .await
        .into_iter()
        .filter(|(_, e)| e.operation == "UpdateSecret" && e.result == Outcome::Allowed)
        .map(|(_, e)| (e.key_id, e.key_version))
        .collect();
    assert_eq!(updates.len(), 4);
    assert!(updates[..3].iter().all(|u| *u == (Some(secret.clone()), Some(2))), "{updates:?}");
}

#[tokio::test]
async fn a_request_id_names_one_operation_of_one_operator() {
    let core = core().await;
    let ks = core.keystore("payments").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    core.kms.execute(&with_id(admin(), "same"), RotateKey { key_id: key.clone() }).await.unwrap();
    let other = core.kms.execute(&with_id(admin(), "same"), DisableKey { key_id: key.clone() }).await.unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    assert!(other.to_string().contains("x-skm-request-id") && other.to_string().contains("RotateKey"), "{other}");
    assert_eq!(newest(&core, &key).await, (2, 2));

    // Another operator's id of the same text is its own.
    let bob = |caller: Caller| match caller.who {
        Who::Operator(op) => {
            Caller::operator(Operator { principal: "operator/admin/bob".into(), ..op }, FrontEnd::Grpc)
        }
        _ => unreachable!(),
    };
    core.kms.execute(&with_id(bob(admin()), "same"), RotateKey { key_id: key.clone() }).await.unwrap();
    assert_eq!(newest(&core, &key).await, (3, 3));
}

#[tokio::test]
async fn a_result_handed_out_once_is_not_handed_out_again() {
    let core = core().await;
    let ks = core.keystore("payments").await;
    let issue = || IssueClientCertificate {
        keystore_id: ks.clone(),
        name: "app-1".into(),
        days: 1,
        password: Zeroizing::new("a long password".into()),
    };
    core.kms.execute(&with_id(admin(), "issue-1"), issue()).await.unwrap();
    let again = core.kms.execute(&with_id(admin(), "issue-1"), issue()).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.to_string().contains("only once"), "{again}");
    let certs = core.kms.execute(&admin(), GetKeystore { keystore_id: ks.clone() }).await.unwrap().certs.len();
    assert_eq!(certs, 1, "the certificate was issued once");
}

fn unavailable() -> skm_store::StoreError {
    skm_store::StoreError::Unavailable("injected".into())
}

#[tokio::test]
async fn the_request_record_commits_with_the_change_or_not_at_all() {
    let store = Counting::default();
    let core = core_over(store.clone(), model::DEFAULT_MAX_KEY_VERSIONS).await;
    let ks = core.keystore("payments").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let rotate = || RotateKey { key_id: key.clone() };

    // The batch is refused: nothing was made, so the retry makes it.
    store.fail_next(false);
    let refused = core.kms.execute(&with_id(admin(), "r1"), rotate()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused}");
    assert!(store.inner.list(b"reqid/").await.unwrap().is_empty());
    core.kms.execute(&with_id(admin(), "r1"), rotate()).await.unwrap();
    assert_eq!(newest(&core, &key).await, (2, 2));

    // The batch is applied and its reply lost: the attempt finds its own
    // record and answers as made; a retry is answered the same, unmade.
    store.fail_next(true);
    let lost = core.kms.execute(&with_id(admin(), "r2"), rotate()).await.unwrap();
    assert_eq!(lost.material.newest_version(), 3);
    let retried = core.kms.execute(&with_id(admin(), "r2"), rotate()).await.unwrap();
    assert_eq!(retried.material.newest_version(), 3);
    assert_eq!(newest(&core, &key).await, (3, 3));

    // The record was in the change's own batch, beside the key's head.
    let batches = store.batches.lock().unwrap().clone();
    let with_record: Vec<_> = batches.iter().filter(|b| b.iter().any(|k| k.starts_with(b"reqid/"))).collect();
    assert_eq!(with_record.len(), 2, "one record per request");
    for batch in with_record {
        assert!(batch.iter().any(|k| k.starts_with(b"key/")), "{batch:?}");
        assert!(batch.iter().any(|k| k.starts_with(b"keyver/")), "{batch:?}");
        assert!(batch.iter().any(|k| k.starts_with(b"reqdue/")), "{batch:?}");
    }
}

#[tokio::test]
async fn concurrent_attempts_of_one_request_make_one_change() {
    let core = core().await;
    let ks = core.keystore("payments").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    let caller = with_id(admin(), "racing");
    let attempt = || core.kms.execute(&caller, RotateKey { key_id: key.clone() });
    let (a, b, c, d) = tokio::join!(attempt(), attempt(), attempt(), attempt());
    for result in [a, b, c, d] {
        assert_eq!(result.unwrap().material.newest_version(), 2);
    }
    assert_eq!(newest(&core, &key).await, (2, 2));
}

#[tokio::test]
async fn request_ids_are_forgotten_after_a_day() {
    let core = core().await;
    let ks = core.keystore("payments").await;
    let key = core.key(&ks, "k", KeyKind::Aes256).await;
    core.kms.execute(&with_id(admin(), "day"), RotateKey { key_id: key.clone() }).await.unwrap();
    core.clock.advance(request_ids::WINDOW_SECS - 1);
    assert_eq!(core.kms.maintain().await.unwrap().forgotten_requests, 0);
    core.kms.execute(&with_id(admin(), "day"), RotateKey { key_id: key.clone() }).await.unwrap();
    assert_eq!(newest(&core, &key).await, (2, 2), "still remembered");
    core.clock.advance(2);
    assert_eq!(core.kms.maintain().await.unwrap().forgotten_requests, 1);
    assert!(core.store.list(b"reqid/").await.unwrap().is_empty());
    assert!(core.store.list(b"reqdue/").await.unwrap().is_empty());
    core.kms.execute(&with_id(admin(), "day"), RotateKey { key_id: key.clone() }).await.unwrap();
    assert_eq!(newest(&core, &key).await, (3, 3), "a forgotten id makes the change again");
}
