//! kms-api's records in its store, each sealed under the active system key.
//!
//! | store key | value | owner bound in AAD |
//! |---|---|---|
//! | `ks/<keystore id>` | keystore: policy, client CA certificate and key, known client certificates (JSON), sealed | — |
//! | `ksname/<name>` | keystore id, sealed | — |
//! | `ksalias/<alias>` | keystore id, sealed (keeps aliases unique) | — |
//! | `key/<key id>` | keystore id (clear) ‖ sealed key head: name, type, state, schedule, retained version range (JSON) | keystore id |
//! | `keyver/<key id>/<version, 10 digits>` | one version's material and creation time (JSON), sealed | keystore id |
//! | `keyname/<keystore id>/<name>` | key id, sealed | keystore id |
//! | `import/<key id>` | a key's outstanding import parameters: wrapping private key, token, expiry (JSON), sealed | keystore id |
//! | `lastuse/<key id>` | last use (i64 BE), sealed | key id |
//! | `due/<unix secs u64 BE>/<r or d>/<key id>` | empty: when a key is due for rotation (r) or destruction (d) | — |
//! | `oprevoked/<sha256>` | empty: a revoked operator certificate | — |
//! | `auditanchor`, `auditanchor/<replica>` | the audit log's anchor (of the one kms-api, or of each named replica on a shared store): seq (u64 BE) ‖ MAC of that entry, sealed | — |
//! | `sysmanifest` | the system key versions kms-api has seen, the highest active one and the retired ones (JSON), sealed | — |
//! | `sysretired` | the audit keys of retired system key versions (JSON), sealed | — |
//! | `election/maintenance` | on etcd: the replica elected to run the maintenance pass and the re-seal, bound to its lease (`skm_store::etcd`), clear | — |
//! | `watchbeacon/<replica>` | on etcd: a counter each replica writes to check its watch is up to date (`skm_store::etcd`), clear | — |
//! | `resealcursor` | the background re-seal's target version (u32 BE) ‖ done (0/1) ‖ next store key, clear | — |
//! | `reqid/<sha256 hex>` | a change made under a request id ([`requests`]): operation, time and what it made (JSON), sealed | — |
//! | `reqdue/<unix secs u64 BE>/<sha256 hex>` | empty: when that request record was made, to forget it a day later | — |
//!
//! Store keys hold only ids, names and due times; every value, including
//! each key's material, is sealed ([`skm_crypto::record`]) with AAD binding
//! it to its store key and owner, so values can't be moved between records.
//! Serialised plaintext lives in zeroizing buffers sized exactly before
//! anything is written into them, so no reallocation leaves an unwiped
//! copy behind.
//!
//! A key is a small head record plus one record per version: a new version
//! writes the head (compare-and-swap on its revision) and one version
//! record in one batch, whatever the number of versions, and a secret's
//! oldest versions past its `max_versions` are deleted in the same batch.
//! Records of the first layout — every version inline in `key/<key id>` —
//! still load; the first change to such a key rewrites it in this layout
//! (migration on write: reads never write).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicI64;

use serde::{Deserialize, Serialize};
use skm_crypto::Id;
use skm_crypto::asym::PrivateKey;
use skm_crypto::import::{ImportToken, WrappingAlgorithm};
use skm_crypto::mac::MacKey;
use skm_crypto::rsa_oaep::{DecryptingKey, OaepKeySize};
use skm_store::{Expect, Op, Store, StoreError};
use zeroize::Zeroizing;

use crate::access::{KnownCert, Mode, Policy, PolicyInput};
use crate::model::{Key, KeyKind, KeyOrigin, KeyState, Keystore, KeystoreCaFiles, Material, Version, Versions};
use crate::system_keys::{NotReady, SystemKeys};
use skm_crypto::audit::AuditKey;
use skm_crypto::record::{RetiredAuditKeys, SystemKeyring};

pub mod requests;

pub use requests::{Claim, Receipt, RequestRecord, with_claim};

/// Record persistence failures.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// System keys not loaded.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// A unique name or id is taken, or a CAS lost.
    #[error("concurrent modification or duplicate: {0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A record does not open or parse: tampering, or a system key version
    /// this kms-api doesn't hold.
    #[error("record {0} cannot be opened")]
    Corrupt(String),
    /// Sealing failed.
    #[error("record sealing failed")]
    Seal,
    /// Another attempt of the same request (its request id) committed
    /// first: this attempt's batch was not applied.
    #[error("the request was already carried out")]
    RequestCarriedOut,
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key } => RecordError::Conflict(key),
            other => RecordError::Store(other),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreRecord {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alias: Option<String>,
    allow_ips: Vec<String>,
    created_at: i64,
    #[serde(default)]
    allow_macs: Vec<String>,
    #[serde(default)]
    allow_asserted_mac: bool,
    #[serde(default)]
    require_cert: bool,
    #[serde(default)]
    mode: String,
    ca_cert_pem: String,
    ca_key_pem: Zeroizing<String>,
    #[serde(default)]
    certs: Vec<CertRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertRecord {
    name: String,
    sha256: String,
    issued: bool,
    not_after: i64,
    revoked: bool,
}

/// A key's head record. `versions` holds every version only in records of
/// the first layout; heads of the current layout name the retained range
/// and leave it empty.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    keystore_id: String,
    name: String,
    kind: String,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    versions: Vec<VersionRecord>,
    #[serde(default = "enabled")]
    state: String,
    #[serde(default)]
    deletion_at: i64,
    #[serde(default)]
    rotation_period_days: u32,
    #[serde(default)]
    next_rotation_at: i64,
    #[serde(default)]
    oldest_version: u32,
    #[serde(default)]
    newest_version: u32,
    #[serde(default)]
    max_versions: u32,
    /// "external" for a key of imported material; absent for SKM's own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    origin: String,
}

/// A key's outstanding import parameters: the private half of the
/// wrapping key, the token that names it, and when both expire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRecord {
    wrapping_algorithm: String,
    wrapping_key_size: String,
    /// Hex of the wrapping key's PKCS#8 DER.
    wrapping_key: Zeroizing<String>,
    token: String,
    expires_at: i64,
}

/// Import parameters as kms-api holds them between GetParametersForImport
/// and ImportKeyMaterial.
#[derive(Debug)]
pub struct ImportParams {
    /// How the material must be wrapped.
    pub algorithm: WrappingAlgorithm,
    /// The wrapping key (its public half went to the client).
    pub key: DecryptingKey,
    /// The token the import must present.
    pub token: ImportToken,
    /// Seconds since the epoch after which both are refused.
    pub expires_at: i64,
    /// The record's revision (0 before it is stored).
    pub revision: u64,
}

fn enabled() -> String {
    "enabled".to_owned()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRecord {
    version: u32,
    created_at: i64,
    /// Hex of the raw material: AES key, PKCS#8 DER, or secret value.
    material: Zeroizing<String>,
}

/// How a key read from the store was laid out: what a later write of it
/// must replace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Revision of the head record (compare-and-swap).
    pub revision: u64,
    /// The version records it had; `None` for the first layout (every
    /// version inline in the head).
    versions: Option<RangeInclusive<u32>>,
}

/// One attempt at reading a key.
enum KeyRead {
    /// No head record.
    Absent,
    /// The key and how it is stored.
    Found(Key, StoredKey),
    /// A version record of the range the head names is missing.
    Gap,
}

/// Why a key is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueKind {
    /// Automatic rotation.
    Rotate,
    /// End of the deletion waiting period.
    Destroy,
}

/// One entry of the due index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// When (seconds since the epoch).
    pub at: i64,
    /// What for.
    pub kind: DueKind,
    /// Which key.
    pub key_id: Id,
}

fn ks_key(id: &Id) -> Vec<u8> {
    format!("ks/{id}").into_bytes()
}

fn ks_name_key(name: &str) -> Vec<u8> {
    format!("ksname/{name}").into_bytes()
}

fn ks_alias_key(alias: &str) -> Vec<u8> {
    format!("ksalias/{alias}").into_bytes()
}

fn key_key(id: &Id) -> Vec<u8> {
    format!("key/{id}").into_bytes()
}

fn version_prefix(id: &Id) -> Vec<u8> {
    format!("keyver/{id}/").into_bytes()
}

fn version_key(id: &Id, version: u32) -> Vec<u8> {
    format!("keyver/{id}/{version:010}").into_bytes()
}

fn key_name_prefix(keystore: &Id) -> Vec<u8> {
    format!("keyname/{keystore}/").into_bytes()
}

fn key_name_key(keystore: &Id, name: &str) -> Vec<u8> {
    [key_name_prefix(keystore), name.as_bytes().to_vec()].concat()
}

fn import_key(id: &Id) -> Vec<u8> {
    format!("import/{id}").into_bytes()
}

fn last_use_key(id: &Id) -> Vec<u8> {
    format!("lastuse/{id}").into_bytes()
}

const DUE_PREFIX: &[u8] = b"due/";
const OPERATOR_REVOKED_PREFIX: &[u8] = b"oprevoked/";
const AUDIT_ANCHOR_KEY: &[u8] = b"auditanchor";
const SYSTEM_MANIFEST_KEY: &[u8] = b"sysmanifest";
const RETIRED_KEYS_KEY: &[u8] = b"sysretired";
const RESEAL_CURSOR_KEY: &[u8] = b"resealcursor";

/// The system key versions kms-api has seen, kept in its own store so that
/// no other tier decides its history: a list from system-keyd that lacks
/// one of them, or names an older active version, is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemManifest {
    /// Every version seen, ascending.
    pub versions: Vec<u32>,
    /// The highest active version seen.
    pub active: u32,
    /// Versions retired (`skm system retire-version`): no record is sealed
    /// under them and no tier holds them; a list may lack them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<u32>,
}

/// The audit keys of one retired system key version, as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiredRecord {
    version: u32,
    audit_v1: Zeroizing<String>,
    audit_v2: Zeroizing<String>,
}

/// Where the background re-seal stands (`resealcursor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResealCursor {
    /// The version records are being re-sealed under.
    pub target: u32,
    /// Every record was under `target` at the end of the last pass.
    pub done: bool,
    /// The store key the pass goes on from.
    pub next: Vec<u8>,
}

/// What one page of re-sealing did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResealPage {
    /// Where the next page starts; `None` at the end of the store.
    pub next: Option<Vec<u8>>,
    /// Records looked at.
    pub scanned: u64,
    /// Records re-sealed under the active version.
    pub resealed: u64,
    /// Records left under an older version because a concurrent write won
    /// the compare-and-swap (they are looked at again by the next pass).
    pub raced: u64,
}

fn due_key(due: &Due) -> Vec<u8> {
    let tag = match due.kind {
        DueKind::Rotate => b'r',
        DueKind::Destroy => b'd',
    };
    let mut out = DUE_PREFIX.to_vec();
    out.extend_from_slice(&(due.at.max(0) as u64).to_be_bytes());
    out.push(b'/');
    out.push(tag);
    out.push(b'/');
    out.extend_from_slice(due.key_id.to_string().as_bytes());
    out
}

/// What a changed store key means for what a replica holds in memory
/// (the watch of a shared store reports store keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// A keystore's record (policy, certificates, CA).
    Keystore(Id),
    /// A key's head or one of its versions.
    Key(Id),
    /// An operator certificate was revoked (its SHA-256).
    OperatorRevoked(String),
}

impl Changed {
    /// The meaning of a change to `key`; `None` for the records no replica
    /// keeps in memory (indexes, last uses, due times, anchors, …).
    pub fn of(key: &[u8]) -> Option<Self> {
        let id = |rest: &[u8]| std::str::from_utf8(rest.get(..32)?).ok()?.parse::<Id>().ok();
        if let Some(rest) = key.strip_prefix(b"ks/".as_slice()) {
            return id(rest).map(Changed::Keystore);
        }
        if let Some(rest) = key.strip_prefix(b"key/".as_slice()).or_else(|| key.strip_prefix(b"keyver/".as_slice())) {
            return id(rest).map(Changed::Key);
        }
        let sha = key.strip_prefix(OPERATOR_REVOKED_PREFIX)?;
        String::from_utf8(sha.to_vec()).ok().map(Changed::OperatorRevoked)
    }
}

fn parse_due(key: &[u8]) -> Option<Due> {
    let rest = key.strip_prefix(DUE_PREFIX)?;
    if rest.len() != 8 + 3 + 32 {
        return None;
    }
    let at = u64::from_be_bytes(rest[..8].try_into().ok()?) as i64;
    let kind = match rest[9] {
        b'r' => DueKind::Rotate,
        b'd' => DueKind::Destroy,
        _ => return None,
    };
    let key_id = std::str::from_utf8(&rest[11..]).ok()?.parse().ok()?;
    Some(Due { at, kind, key_id })
}

/// The due-index entries a key in its current state should have.
pub fn due_entries(key: &Key) -> Vec<Due> {
    let mut out = Vec::new();
    if key.kind() != KeyKind::Secret && key.rotation_period_days > 0 && key.next_rotation_at > 0 {
        out.push(Due { at: key.next_rotation_at, kind: DueKind::Rotate, key_id: key.id });
    }
    if let KeyState::PendingDeletion { deletion_at } = key.state {
        out.push(Due { at: deletion_at, kind: DueKind::Destroy, key_id: key.id });
    }
    out
}

/// Why a system key version was not retired.
#[derive(Debug, thiserror::Error)]
pub enum Retire {
    /// It is the active version.
    #[error(
        "system key version {0} is the active version: rotate the system key first, let re-sealing finish, then retire it"
    )]
    Active(u32),
    /// Not a version kms-api holds.
    #[error("system key version {0} is not held by kms-api")]
    Unknown(u32),
    /// Records are still sealed under it.
    #[error(
        "{records} record(s) are still sealed under system key version {version}: wait until re-sealing has \
         finished (skm system status)"
    )]
    InUse {
        /// The version.
        version: u32,
        /// How many.
        records: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Record(RecordError),
}

/// Sealed record persistence over any [`Store`] backend.
#[derive(Clone, Debug)]
pub struct Records<S> {
    store: S,
    keyring: SystemKeys,
    /// `auditanchor`, or `auditanchor/<replica>` for a named replica.
    anchor_key: Vec<u8>,
}

impl<S: Store> Records<S> {
    /// Over an opened store and the (possibly not yet loaded) system keys.
    pub fn new(store: S, keyring: SystemKeys) -> Self {
        Self { store, keyring, anchor_key: AUDIT_ANCHOR_KEY.to_vec() }
    }

    /// The records of the replica named `replica` among several sharing
    /// the store: its audit log's anchor is its own
    /// (`auditanchor/<replica>`).
    pub fn for_replica(mut self, replica: &str) -> Self {
        self.anchor_key = [AUDIT_ANCHOR_KEY, b"/", replica.as_bytes()].concat();
        self
    }

    /// The system keys these records are sealed with.
    pub fn system_keys(&self) -> &SystemKeys {
        &self.keyring
    }

    fn seal(&self, record_id: &[u8], owner: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, RecordError> {
        self.keyring.current()?.seal(record_id, owner, plaintext).map_err(|_| RecordError::Seal)
    }

    fn open(&self, record_id: &[u8], owner: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        self.keyring
            .current()?
            .open(record_id, owner, sealed)
            .map_err(|_| RecordError::Corrupt(String::from_utf8_lossy(record_id).into_owned()))
    }

    fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        to_json(value)
    }

    fn keystore_record(ks: &Keystore) -> KeystoreRecord {
        let input = ks.policy.to_input();
        KeystoreRecord {
            name: ks.name.clone(),
            alias: ks.alias.clone(),
            allow_ips: input.allow_ips,
            created_at: ks.created_at,
            allow_macs: input.allow_macs,
            allow_asserted_mac: input.allow_asserted_mac,
            require_cert: input.require_cert,
            mode: input.mode.name().to_owned(),
            ca_cert_pem: ks.ca.cert_pem.clone(),
            ca_key_pem: ks.ca.key_pem.clone(),
            certs: ks
                .certs
                .iter()
                .map(|c| CertRecord {
                    name: c.name.clone(),
                    sha256: c.sha256.clone(),
                    issued: c.issued,
                    not_after: c.not_after,
                    revoked: c.revoked,
                })
                .collect(),
        }
    }

    /// Stores a new keystore; its name must be free.
    pub async fn create_keystore(&self, ks: &Keystore) -> Result<(), RecordError> {
        let id_key = ks_key(&ks.id);
        let name_key = ks_name_key(&ks.name);
        let value = self.seal(&id_key, b"", &Self::to_json(&Self::keystore_record(ks))?)?;
        let index = self.seal(&name_key, b"", ks.id.to_string().as_bytes())?;
        let mut batch = vec![
            Op::Put { key: name_key, value: index, expect: Expect::Absent },
            Op::Put { key: id_key, value, expect: Expect::Absent },
        ];
        if let Some(alias) = &ks.alias {
            batch.push(self.alias_index(alias, &ks.id)?);
        }
        self.commit(batch, || keystore_receipt(ks)).await
    }

    /// The record that reserves `alias` for keystore `id` (it must be free).
    fn alias_index(&self, alias: &str, id: &Id) -> Result<Op, RecordError> {
        let key = ks_alias_key(alias);
        let value = self.seal(&key, b"", id.to_string().as_bytes())?;
        Ok(Op::Put { key, value, expect: Expect::Absent })
    }

    /// Replaces a keystore read at `revision` (compare-and-swap); when its
    /// alias changed from `old_alias`, the new one must be free.
    pub async fn update_keystore(
        &self,
        ks: &Keystore,
        revision: u64,
        old_alias: Option<&str>,
    ) -> Result<(), RecordError> {
        let id_key = ks_key(&ks.id);
        let value = self.seal(&id_key, b"", &Self::to_json(&Self::keystore_record(ks))?)?;
        let mut batch = vec![Op::Put { key: id_key, value, expect: Expect::Revision(revision) }];
        if ks.alias.as_deref() != old_alias {
            if let Some(old) = old_alias {
                batch.push(Op::Delete { key: ks_alias_key(old), expect: Expect::Any });
            }
            if let Some(alias) = &ks.alias {
                batch.push(self.alias_index(alias, &ks.id)?);
            }
        }
        self.commit(batch, || keystore_receipt(ks)).await
    }

    /// Deletes a keystore read at `revision`, with its name and alias.
    pub async fn delete_keystore(&self, ks: &Keystore, revision: u64) -> Result<(), RecordError> {
        let mut batch = vec![
            Op::Delete { key: ks_key(&ks.id), expect: Expect::Revision(revision) },
            Op::Delete { key: ks_name_key(&ks.name), expect: Expect::Any },
        ];
        if let Some(alias) = &ks.alias {
            batch.push(Op::Delete { key: ks_alias_key(alias), expect: Expect::Any });
        }
        self.commit(batch, || keystore_receipt(ks)).await
    }

    /// One keystore with the record's revision.
    pub async fn keystore(&self, id: &Id) -> Result<Option<(Keystore, u64)>, RecordError> {
        let key = ks_key(id);
        match self.store.get(&key).await? {
            Some(v) => Ok(Some((self.decode_keystore(*id, &key, &v.value)?, v.revision))),
            None => Ok(None),
        }
    }

    fn decode_keystore(&self, id: Id, key: &[u8], sealed: &[u8]) -> Result<Keystore, RecordError> {
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(key).into_owned());
        let plain = self.open(key, b"", sealed)?;
        let r: KeystoreRecord = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        let mode = match r.mode.as_str() {
            "" | "all" => Mode::All,
            "any" => Mode::Any,
            _ => return Err(corrupt()),
        };
        let policy = Policy::parse(&PolicyInput {
            allow_ips: r.allow_ips,
            allow_macs: r.allow_macs,
            allow_asserted_mac: r.allow_asserted_mac,
            require_cert: r.require_cert,
            mode,
        })
        .map_err(|_| corrupt())?;
        let cert_der = skm_runtime::tls::certs_from_pem(r.ca_cert_pem.as_bytes())
            .ok()
            .and_then(|mut c| if c.is_empty() { None } else { Some(c.remove(0)) })
            .ok_or_else(corrupt)?;
        Ok(Keystore {
            id,
            name: r.name,
            alias: r.alias,
            policy,
            created_at: r.created_at,
            ca: KeystoreCaFiles { cert_pem: r.ca_cert_pem, cert_der, key_pem: r.ca_key_pem },
            certs: r
                .certs
                .into_iter()
                .map(|c| KnownCert {
                    name: c.name,
                    sha256: c.sha256,
                    issued: c.issued,
                    not_after: c.not_after,
                    revoked: c.revoked,
                })
                .collect(),
        })
    }

    /// Every keystore, by name.
    pub async fn keystores(&self) -> Result<Vec<Keystore>, RecordError> {
        // Fail closed: no answer, not even an empty one, before the system
        // keys are loaded.
        self.keyring.current()?;
        let mut out = Vec::new();
        for (key, v) in self.store.list(b"ks/").await? {
            let id = parse_id_suffix(&key, 3)?;
            out.push(self.decode_keystore(id, &key, &v.value)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Revoked operator certificates (SHA-256, lowercase hex). Not sealed:
    /// fingerprints are public, and the admin port needs them at start.
    pub async fn revoked_operators(&self) -> Result<Vec<String>, RecordError> {
        Ok(self
            .store
            .list(OPERATOR_REVOKED_PREFIX)
            .await?
            .into_iter()
            .filter_map(|(k, _)| String::from_utf8(k[OPERATOR_REVOKED_PREFIX.len()..].to_vec()).ok())
            .collect())
    }

    /// Adds an operator certificate to the revoked list.
    pub async fn revoke_operator(&self, sha256: &str) -> Result<(), RecordError> {
        let key = [OPERATOR_REVOKED_PREFIX, sha256.as_bytes()].concat();
        self.store.put(&key, b"", Expect::Any).await?;
        Ok(())
    }

    /// Stores a new key, its head and version records; its name must be free
    /// in its keystore.
    pub async fn create_key(&self, key: &Key) -> Result<(), RecordError> {
        let owner = key.keystore_id.to_string();
        let name_key = key_name_key(&key.keystore_id, &key.name);
        let index = self.seal(&name_key, owner.as_bytes(), key.id.to_string().as_bytes())?;
        let mut ops = vec![
            Op::Put { key: name_key, value: index, expect: Expect::Absent },
            Op::Put { key: key_key(&key.id), value: self.seal_head(key)?, expect: Expect::Absent },
        ];
        ops.extend(self.version_puts(key, key.material.version_range(), Expect::Absent)?);
        ops.extend(due_entries(key).iter().map(|d| Op::Put {
            key: due_key(d),
            value: Vec::new(),
            expect: Expect::Any,
        }));
        self.commit(ops, || key_receipt(key)).await
    }

    /// Writes back a key read as `stored` (compare-and-swap on its head):
    /// the head, the versions added since, deletion of the versions it no
    /// longer keeps, and its due-index entries moved from `due_before` to
    /// what its state now needs, in one batch. A key of the first layout
    /// has every version written out.
    pub async fn update_key(&self, key: &Key, stored: &StoredKey, due_before: &[Due]) -> Result<(), RecordError> {
        self.update_key_and(key, stored, due_before, Vec::new()).await
    }

    /// [`Records::update_key`] with `extra` operations in the same batch.
    async fn update_key_and(
        &self,
        key: &Key,
        stored: &StoredKey,
        due_before: &[Due],
        extra: Vec<Op>,
    ) -> Result<(), RecordError> {
        let due_after = due_entries(key);
        let now = key.material.version_range();
        let mut ops = vec![Op::Put {
            key: key_key(&key.id),
            value: self.seal_head(key)?,
            expect: Expect::Revision(stored.revision),
        }];
        match &stored.versions {
            None => ops.extend(self.version_puts(key, now, Expect::Any)?),
            Some(before) => {
                let added = (*before.end() + 1).max(*now.start())..=*now.end();
                ops.extend(self.version_puts(key, added, Expect::Absent)?);
                ops.extend(
                    (*before.start()..=*before.end())
                        .filter(|v| !now.contains(v))
                        .map(|v| Op::Delete { key: version_key(&key.id, v), expect: Expect::Any }),
                );
            }
        }
        for d in due_before.iter().filter(|d| !due_after.contains(d)) {
            ops.push(Op::Delete { key: due_key(d), expect: Expect::Any });
        }
        for d in due_after.iter().filter(|d| !due_before.contains(d)) {
            ops.push(Op::Put { key: due_key(d), value: Vec::new(), expect: Expect::Any });
        }
        ops.extend(extra);
        self.commit(ops, || key_receipt(key)).await
    }

    /// Writes back a key that gained an imported version, and deletes the
    /// import parameters it used (still at `import_revision`) in the same
    /// batch: a token imports once.
    pub async fn update_imported_key(
        &self,
        key: &Key,
        stored: &StoredKey,
        due_before: &[Due],
        import_revision: u64,
    ) -> Result<(), RecordError> {
        let used = Op::Delete { key: import_key(&key.id), expect: Expect::Revision(import_revision) };
        self.update_key_and(key, stored, due_before, vec![used]).await
    }

    /// Stores a key's import parameters, replacing any earlier ones (whose
    /// token then no longer imports).
    pub async fn put_import_params(&self, key: &Key, params: &ImportParams) -> Result<(), RecordError> {
        let owner = key.keystore_id.to_string();
        let record = ImportRecord {
            wrapping_algorithm: params.algorithm.name().to_owned(),
            wrapping_key_size: params.key.size().name().to_owned(),
            wrapping_key: hex_zeroizing(params.key.danger_pkcs8()),
            token: hex::encode(params.token.as_bytes()),
            expires_at: params.expires_at,
        };
        let store_key = import_key(&key.id);
        let value = self.seal(&store_key, owner.as_bytes(), &Self::to_json(&record)?)?;
        self.store.put(&store_key, &value, Expect::Any).await?;
        Ok(())
    }

    /// A key's outstanding import parameters, if any.
    pub async fn import_params(&self, key: &Key) -> Result<Option<ImportParams>, RecordError> {
        let store_key = import_key(&key.id);
        let Some(v) = self.store.get(&store_key).await? else { return Ok(None) };
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(&store_key).into_owned());
        let plain = self.open(&store_key, key.keystore_id.to_string().as_bytes(), &v.value)?;
        let r: ImportRecord = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        let algorithm = WrappingAlgorithm::from_name(&r.wrapping_algorithm).ok_or_else(corrupt)?;
        let size = OaepKeySize::from_name(&r.wrapping_key_size).ok_or_else(corrupt)?;
        let der = unhex_zeroizing(&r.wrapping_key).ok_or_else(corrupt)?;
        let key = DecryptingKey::from_pkcs8(size, &der).map_err(|_| corrupt())?;
        let token = hex::decode(&r.token).ok().and_then(|t| ImportToken::from_slice(&t)).ok_or_else(corrupt)?;
        Ok(Some(ImportParams { algorithm, key, token, expires_at: r.expires_at, revision: v.revision }))
    }

    /// Destroys a key read as `stored`: its head, every version record (all
    /// its material), its name, last use and due entries go in one batch.
    pub async fn destroy_key(&self, key: &Key, stored: &StoredKey) -> Result<(), RecordError> {
        let mut ops = vec![
            Op::Delete { key: key_key(&key.id), expect: Expect::Revision(stored.revision) },
            Op::Delete { key: key_name_key(&key.keystore_id, &key.name), expect: Expect::Any },
            Op::Delete { key: last_use_key(&key.id), expect: Expect::Any },
            Op::Delete { key: import_key(&key.id), expect: Expect::Any },
        ];
        for (k, _) in self.store.list(&version_prefix(&key.id)).await? {
            ops.push(Op::Delete { key: k, expect: Expect::Any });
        }
        ops.extend(due_entries(key).iter().map(|d| Op::Delete { key: due_key(d), expect: Expect::Any }));
        self.commit(ops, || key_receipt(key)).await
    }

    fn seal_head(&self, key: &Key) -> Result<Vec<u8>, RecordError> {
        let owner = key.keystore_id.to_string();
        let (state, deletion_at) = match key.state {
            KeyState::Enabled => ("enabled", 0),
            KeyState::Disabled => ("disabled", 0),
            KeyState::PendingImport => ("pending-import", 0),
            KeyState::PendingDeletion { deletion_at } => ("pending-deletion", deletion_at),
        };
        let range = key.material.version_range();
        let record = KeyRecord {
            keystore_id: owner.clone(),
            name: key.name.clone(),
            kind: key.kind().name().to_owned(),
            created_at: key.created_at,
            versions: Vec::new(),
            state: state.to_owned(),
            deletion_at,
            rotation_period_days: key.rotation_period_days,
            next_rotation_at: key.next_rotation_at,
            oldest_version: *range.start(),
            newest_version: *range.end(),
            max_versions: key.max_versions,
            origin: match key.origin {
                KeyOrigin::Skm => String::new(),
                KeyOrigin::External => KeyOrigin::External.name().to_owned(),
            },
        };
        let sealed = self.seal(&key_key(&key.id), owner.as_bytes(), &Self::to_json(&record)?)?;
        Ok([owner.as_bytes(), &sealed].concat())
    }

    /// Puts of the version records of `range`, each sealed under its own
    /// store key (which names key and version) and the keystore.
    fn version_puts(&self, key: &Key, range: RangeInclusive<u32>, expect: Expect) -> Result<Vec<Op>, RecordError> {
        let owner = key.keystore_id.to_string();
        let mut ops = Vec::new();
        for record in version_records(&key.material, range) {
            let store_key = version_key(&key.id, record.version);
            let value = self.seal(&store_key, owner.as_bytes(), &Self::to_json(&record)?)?;
            ops.push(Op::Put { key: store_key, value, expect });
        }
        Ok(ops)
    }

    /// One key with its material and how it is stored. The owner bound into
    /// each record's AAD is the keystore the head names, so a record moved
    /// under another key id or version, or edited to name another keystore,
    /// does not open.
    pub async fn key(&self, id: &Id) -> Result<Option<(Key, StoredKey)>, RecordError> {
        // Head and versions are separate reads: a change committed between
        // them shows as versions missing from the range the head names.
        // Read again then; a gap that stays is corruption.
        for _ in 0..4 {
            match self.read_key(id).await? {
                KeyRead::Absent => return Ok(None),
                KeyRead::Found(key, stored) => return Ok(Some((key, stored))),
                KeyRead::Gap => {}
            }
        }
        Err(RecordError::Corrupt(String::from_utf8_lossy(&version_prefix(id)).into_owned()))
    }

    /// [`Records::key`] once.
    async fn read_key(&self, id: &Id) -> Result<KeyRead, RecordError> {
        let store_key = key_key(id);
        let Some(v) = self.store.get(&store_key).await? else { return Ok(KeyRead::Absent) };
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(&store_key).into_owned());
        let (owner, sealed) = split_owner(&v.value).ok_or_else(corrupt)?;
        let plain = self.open(&store_key, owner.as_bytes(), sealed)?;
        let mut r: KeyRecord = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        if r.keystore_id != owner {
            return Err(corrupt());
        }
        let kind = KeyKind::from_name(&r.kind).ok_or_else(corrupt)?;
        let state = match r.state.as_str() {
            "enabled" => KeyState::Enabled,
            "disabled" => KeyState::Disabled,
            "pending-import" => KeyState::PendingImport,
            "pending-deletion" => KeyState::PendingDeletion { deletion_at: r.deletion_at },
            _ => return Err(corrupt()),
        };
        let origin = match r.origin.as_str() {
            "" => KeyOrigin::Skm,
            other => KeyOrigin::from_name(other).ok_or_else(corrupt)?,
        };
        // Only an external key has no version (1..=0), and only until its
        // first import; every other head names at least one.
        let awaiting = origin == KeyOrigin::External && (r.oldest_version, r.newest_version) == (1, 0);
        let (versions, layout) = if r.versions.is_empty() {
            if !awaiting && (r.oldest_version == 0 || r.oldest_version > r.newest_version) {
                return Err(corrupt());
            }
            let range = r.oldest_version..=r.newest_version;
            match self.version_records(id, &owner, range.clone()).await? {
                Some(versions) => (versions, Some(range)),
                None => return Ok(KeyRead::Gap),
            }
        } else {
            (std::mem::take(&mut r.versions), None)
        };
        let material = if awaiting && versions.is_empty() {
            Material::Awaiting(kind)
        } else {
            decode_material(kind, versions).ok_or_else(corrupt)?
        };
        let last_used = self.last_used(id).await?;
        let key = Key {
            id: *id,
            keystore_id: owner.parse().map_err(|_| corrupt())?,
            name: r.name,
            state,
            origin,
            material,
            rotation_period_days: r.rotation_period_days,
            next_rotation_at: r.next_rotation_at,
            max_versions: r.max_versions,
            created_at: r.created_at,
            last_used_at: AtomicI64::new(last_used),
        };
        Ok(KeyRead::Found(key, StoredKey { revision: v.revision, versions: layout }))
    }

    /// The version records of `range`, opened; `None` when one is missing.
    async fn version_records(
        &self,
        id: &Id,
        owner: &str,
        range: RangeInclusive<u32>,
    ) -> Result<Option<Vec<VersionRecord>>, RecordError> {
        let mut stored: HashMap<Vec<u8>, Vec<u8>> =
            self.store.list(&version_prefix(id)).await?.into_iter().map(|(k, v)| (k, v.value)).collect();
        let mut out = Vec::with_capacity(range.clone().count());
        for version in range {
            let store_key = version_key(id, version);
            let Some(sealed) = stored.remove(&store_key) else { return Ok(None) };
            let plain = self.open(&store_key, owner.as_bytes(), &sealed)?;
            let record: VersionRecord = serde_json::from_slice(&plain)
                .ok()
                .filter(|r: &VersionRecord| r.version == version)
                .ok_or_else(|| RecordError::Corrupt(String::from_utf8_lossy(&store_key).into_owned()))?;
            out.push(record);
        }
        Ok(Some(out))
    }

    /// The ids of a keystore's keys, in name order.
    pub async fn key_ids_in(&self, keystore: &Id) -> Result<Vec<Id>, RecordError> {
        self.keyring.current()?;
        let owner = keystore.to_string();
        let mut out = Vec::new();
        for (k, v) in self.store.list(&key_name_prefix(keystore)).await? {
            let id = self.open(&k, owner.as_bytes(), &v.value)?;
            let id = std::str::from_utf8(&id)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RecordError::Corrupt(String::from_utf8_lossy(&k).into_owned()))?;
            out.push(id);
        }
        Ok(out)
    }

    /// Due-index entries up to and including `now`, earliest first.
    pub async fn due(&self, now: i64) -> Result<Vec<Due>, RecordError> {
        let mut end = DUE_PREFIX.to_vec();
        end.extend_from_slice(&(now.max(0) as u64 + 1).to_be_bytes());
        let entries = self.store.list_range(DUE_PREFIX, &end).await?;
        Ok(entries.iter().filter_map(|(k, _)| parse_due(k)).collect())
    }

    /// Persists last-use times.
    pub async fn save_last_used(&self, entries: &[(Id, i64)]) -> Result<(), RecordError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(entries.len());
        for (id, at) in entries {
            let key = last_use_key(id);
            let value = self.seal(&key, id.to_string().as_bytes(), &at.to_be_bytes())?;
            ops.push(Op::Put { key, value, expect: Expect::Any });
        }
        self.store.apply(ops).await?;
        Ok(())
    }

    /// The audit log's anchor: the seq and MAC of an entry it must hold
    /// (`None` before the first is saved).
    pub async fn audit_anchor(&self) -> Result<Option<(u64, [u8; 32])>, RecordError> {
        let key = &self.anchor_key;
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(key).into_owned());
        let Some(v) = self.store.get(key).await? else { return Ok(None) };
        let plain = self.open(key, b"", &v.value)?;
        if plain.len() != 8 + 32 {
            return Err(corrupt());
        }
        let seq = u64::from_be_bytes(plain[..8].try_into().map_err(|_| corrupt())?);
        let mac: [u8; 32] = plain[8..].try_into().map_err(|_| corrupt())?;
        Ok(Some((seq, mac)))
    }

    /// Saves the audit log's anchor (durable when this returns).
    pub async fn save_audit_anchor(&self, seq: u64, mac: &[u8; 32]) -> Result<(), RecordError> {
        let plain = [&seq.to_be_bytes()[..], &mac[..]].concat();
        let value = self.seal(&self.anchor_key, b"", &plain)?;
        self.store.put(&self.anchor_key, &value, Expect::Any).await?;
        Ok(())
    }

    /// The manifest of system key versions, opened with `ring` (the
    /// candidate keyring, before it is loaded); `None` before the first is
    /// saved. Sealed under a version `ring` lacks, it is [`RecordError::Corrupt`].
    pub async fn system_manifest(&self, ring: &SystemKeyring) -> Result<Option<SystemManifest>, RecordError> {
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(SYSTEM_MANIFEST_KEY).into_owned());
        let Some(v) = self.store.get(SYSTEM_MANIFEST_KEY).await? else { return Ok(None) };
        let plain = ring.open(SYSTEM_MANIFEST_KEY, b"", &v.value).map_err(|_| corrupt())?;
        serde_json::from_slice(&plain).map(Some).map_err(|_| corrupt())
    }

    /// Saves the manifest, sealed under `ring`'s active version (durable
    /// when this returns).
    pub async fn save_system_manifest(
        &self,
        ring: &SystemKeyring,
        manifest: &SystemManifest,
    ) -> Result<(), RecordError> {
        let plain = Self::to_json(manifest)?;
        let value = ring.seal(SYSTEM_MANIFEST_KEY, b"", &plain).map_err(|_| RecordError::Seal)?;
        self.store.put(SYSTEM_MANIFEST_KEY, &value, Expect::Any).await?;
        Ok(())
    }

    /// The audit keys of retired versions, opened with `ring` (the
    /// candidate keyring, before it is loaded).
    pub async fn retired_audit_keys(
        &self,
        ring: &SystemKeyring,
    ) -> Result<std::collections::BTreeMap<u32, RetiredAuditKeys>, RecordError> {
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(RETIRED_KEYS_KEY).into_owned());
        let mut out = std::collections::BTreeMap::new();
        let Some(v) = self.store.get(RETIRED_KEYS_KEY).await? else { return Ok(out) };
        let plain = ring.open(RETIRED_KEYS_KEY, b"", &v.value).map_err(|_| corrupt())?;
        let records: Vec<RetiredRecord> = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        for r in records {
            let key = |hex: &str| {
                let raw = unhex_zeroizing(hex).filter(|b| b.len() == 32).ok_or_else(corrupt)?;
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&raw);
                Ok::<_, RecordError>(AuditKey::from_bytes_wiping(&mut bytes))
            };
            out.insert(r.version, RetiredAuditKeys { v1: key(&r.audit_v1)?, v2: key(&r.audit_v2)? });
        }
        Ok(out)
    }

    /// Saves a retirement: the manifest naming the retired versions and
    /// their audit keys from `ring` (which no longer holds them), in one
    /// batch sealed under its active version.
    pub async fn save_retirement(&self, ring: &SystemKeyring, manifest: &SystemManifest) -> Result<(), RecordError> {
        let records: Vec<RetiredRecord> = ring
            .retired_audit_keys()
            .map(|(version, k)| RetiredRecord {
                version,
                audit_v1: hex_zeroizing(k.v1.danger_bytes()),
                audit_v2: hex_zeroizing(k.v2.danger_bytes()),
            })
            .collect();
        let keys = ring.seal(RETIRED_KEYS_KEY, b"", &Self::to_json(&records)?).map_err(|_| RecordError::Seal)?;
        let list = ring.seal(SYSTEM_MANIFEST_KEY, b"", &Self::to_json(manifest)?).map_err(|_| RecordError::Seal)?;
        self.store
            .apply(vec![
                Op::Put { key: RETIRED_KEYS_KEY.to_vec(), value: keys, expect: Expect::Any },
                Op::Put { key: SYSTEM_MANIFEST_KEY.to_vec(), value: list, expect: Expect::Any },
            ])
            .await?;
        Ok(())
    }

    /// Where a record's sealed part starts and the owner bound into it;
    /// `None` for the records that are not sealed (`due/`, `reqdue/`, `oprevoked/`,
    /// `watchbeacon/`, `election/`, `resealcursor`, or a version or import record whose key is gone).
    /// A store key of no known kind is an error, so that a new kind of
    /// record can't silently escape re-sealing.
    async fn sealed_layout(&self, key: &[u8], value: &[u8]) -> Result<Option<(usize, String)>, RecordError> {
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(key).into_owned());
        let text = std::str::from_utf8(key).map_err(|_| corrupt());
        if key.starts_with(DUE_PREFIX)
            || key.starts_with(requests::REQUEST_DUE_PREFIX)
            || key.starts_with(OPERATOR_REVOKED_PREFIX)
            || key.starts_with(skm_store::etcd::BEACON_PREFIX)
            || key.starts_with(skm_store::etcd::ELECTION_PREFIX)
            || key == RESEAL_CURSOR_KEY
        {
            return Ok(None);
        }
        let text = text?;
        let (kind, rest) = text.split_once('/').unwrap_or((text, ""));
        let head_owner = |id: &str| {
            let head = format!("key/{id}").into_bytes();
            async move {
                let Some(v) = self.store.get(&head).await? else { return Ok(None) };
                let (owner, _) = split_owner(&v.value).ok_or_else(|| RecordError::Corrupt(printable(&head)))?;
                Ok::<_, RecordError>(Some((0, owner)))
            }
        };
        Ok(match kind {
            "ks" | "ksname" | "ksalias" | "auditanchor" | "sysmanifest" | "sysretired" => Some((0, String::new())),
            "key" => Some((32, split_owner(value).ok_or_else(corrupt)?.0)),
            "keyver" => head_owner(rest.split('/').next().unwrap_or_default()).await?,
            "import" => head_owner(rest).await?,
            "keyname" => Some((0, rest.split('/').next().unwrap_or_default().to_owned())),
            "lastuse" => Some((0, rest.to_owned())),
            "reqid" => Some((0, String::new())),
            _ => return Err(corrupt()),
        })
    }

    /// Re-seals, under the active version, the records of one page of at
    /// most `limit` records from `from` on that are sealed under another
    /// version (or in format 1). Each is replaced by compare-and-swap on
    /// the revision read, so a concurrent write (which seals under the
    /// active version itself) always wins.
    pub async fn reseal_page(&self, from: &[u8], limit: usize) -> Result<ResealPage, RecordError> {
        let ring = self.keyring.current()?;
        let entries = self.store.list_from(from, limit).await?;
        let mut page = ResealPage {
            next: (entries.len() == limit)
                .then(|| entries.last().map(|(k, _)| [k.as_slice(), &[0]].concat()))
                .flatten(),
            ..ResealPage::default()
        };
        for (key, v) in entries {
            page.scanned += 1;
            let Some((at, owner)) = self.sealed_layout(&key, &v.value).await? else { continue };
            let (clear, sealed) = v.value.split_at(at);
            if ring.is_current(sealed) {
                continue;
            }
            let plain = ring.open(&key, owner.as_bytes(), sealed).map_err(|_| RecordError::Corrupt(printable(&key)))?;
            let resealed = ring.seal(&key, owner.as_bytes(), &plain).map_err(|_| RecordError::Seal)?;
            let value = [clear, &resealed].concat();
            match self.store.put(&key, &value, Expect::Revision(v.revision)).await {
                Ok(_) => page.resealed += 1,
                Err(StoreError::Conflict { .. }) => page.raced += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(page)
    }

    /// How many records are sealed under each system key version: a scan
    /// of the whole store, `page` records at a time.
    pub async fn sealed_versions(&self, page: usize) -> Result<std::collections::BTreeMap<u32, u64>, RecordError> {
        let mut out = std::collections::BTreeMap::new();
        let mut from = Vec::new();
        loop {
            let entries = self.store.list_from(&from, page).await?;
            let full = entries.len() == page;
            for (key, v) in &entries {
                let Some((at, _)) = self.sealed_layout(key, &v.value).await? else { continue };
                let version =
                    SystemKeyring::version_of(&v.value[at..]).map_err(|_| RecordError::Corrupt(printable(key)))?;
                *out.entry(version).or_insert(0) += 1;
            }
            match entries.last() {
                Some((k, _)) if full => from = [k.as_slice(), &[0]].concat(),
                _ => return Ok(out),
            }
        }
    }

    /// Retires `version`: refused unless it is held, not active, and no
    /// record is sealed under it; then the manifest names it retired, its
    /// audit keys are kept (sealed), and the keyring in memory drops it.
    /// Retiring a retired version again is `Ok(false)`.
    pub async fn retire_version(&self, version: u32) -> Result<bool, Retire> {
        let _changing = self.keyring.changing().await;
        let ring = self.keyring.current().map_err(|e| Retire::Record(e.into()))?;
        if ring.retired_versions().any(|v| v == version) {
            return Ok(false);
        }
        if version == ring.active_version() {
            return Err(Retire::Active(version));
        }
        if !ring.versions().any(|v| v == version) {
            return Err(Retire::Unknown(version));
        }
        let records = self.sealed_versions(1_000).await.map_err(Retire::Record)?.get(&version).copied().unwrap_or(0);
        if records > 0 {
            return Err(Retire::InUse { version, records });
        }
        let retired = ring.retiring(version).ok_or(Retire::Unknown(version))?;
        let mut manifest = self.system_manifest(&ring).await.map_err(Retire::Record)?.unwrap_or_default();
        manifest.versions.extend(ring.versions());
        manifest.retired.push(version);
        for list in [&mut manifest.versions, &mut manifest.retired] {
            list.sort_unstable();
            list.dedup();
        }
        manifest.active = manifest.active.max(ring.active_version());
        self.save_retirement(&retired, &manifest).await.map_err(Retire::Record)?;
        self.keyring.set(retired);
        Ok(true)
    }

    /// The background re-seal's cursor, if one was saved.
    pub async fn reseal_cursor(&self) -> Result<Option<ResealCursor>, RecordError> {
        let Some(v) = self.store.get(RESEAL_CURSOR_KEY).await? else { return Ok(None) };
        if v.value.len() < 5 || v.value[4] > 1 {
            return Err(RecordError::Corrupt(printable(RESEAL_CURSOR_KEY)));
        }
        let target = u32::from_be_bytes([v.value[0], v.value[1], v.value[2], v.value[3]]);
        Ok(Some(ResealCursor { target, done: v.value[4] == 1, next: v.value[5..].to_vec() }))
    }

    /// Saves the background re-seal's cursor.
    pub async fn save_reseal_cursor(&self, cursor: &ResealCursor) -> Result<(), RecordError> {
        let value = [&cursor.target.to_be_bytes()[..], &[u8::from(cursor.done)], &cursor.next].concat();
        self.store.put(RESEAL_CURSOR_KEY, &value, Expect::Any).await?;
        Ok(())
    }

    async fn last_used(&self, id: &Id) -> Result<i64, RecordError> {
        let key = last_use_key(id);
        let Some(v) = self.store.get(&key).await? else { return Ok(0) };
        let plain = self.open(&key, id.to_string().as_bytes(), &v.value)?;
        let bytes: [u8; 8] =
            plain[..].try_into().map_err(|_| RecordError::Corrupt(String::from_utf8_lossy(&key).into_owned()))?;
        Ok(i64::from_be_bytes(bytes))
    }
}

/// The versions of `range` a key holds, as stored: hex of the raw material
/// (AES key, PKCS#8 DER, HMAC key, or secret value), in zeroizing strings.
fn keystore_receipt(ks: &Keystore) -> Receipt {
    Receipt { keystore_id: Some(ks.id), ..Receipt::default() }
}

fn key_receipt(key: &Key) -> Receipt {
    Receipt { keystore_id: Some(key.keystore_id), key_id: Some(key.id), version: Some(key.material.newest_version()) }
}

fn version_records(material: &Material, range: RangeInclusive<u32>) -> Vec<VersionRecord> {
    fn records<M>(versions: &Versions<M>, range: RangeInclusive<u32>, raw: impl Fn(&M) -> &[u8]) -> Vec<VersionRecord> {
        range
            .filter_map(|n| versions.get(n))
            .map(|v| VersionRecord {
                version: v.version,
                created_at: v.created_at,
                material: hex_zeroizing(raw(&v.material)),
            })
            .collect()
    }
    match material {
        Material::Aes256(v) => records(v, range, |k| k.danger_expose()),
        Material::Signing { versions, .. } => records(versions, range, PrivateKey::danger_pkcs8),
        Material::Mac { versions, .. } => records(versions, range, MacKey::danger_bytes),
        Material::Decrypting { versions, .. } => records(versions, range, DecryptingKey::danger_pkcs8),
        Material::Secret(v) => records(v, range, |value| &value[..]),
        Material::Awaiting(_) => Vec::new(),
    }
}

/// The typed material of a key of `kind` from its stored versions; `None`
/// when a version doesn't decode as that kind or there is none.
fn decode_material(kind: KeyKind, stored: Vec<VersionRecord>) -> Option<Material> {
    fn versions<M>(
        stored: Vec<VersionRecord>,
        decode: impl Fn(&mut Zeroizing<Vec<u8>>) -> Option<M>,
    ) -> Option<std::sync::Arc<Versions<M>>> {
        let mut out = Vec::with_capacity(stored.len());
        for v in stored {
            let mut raw = unhex_zeroizing(&v.material)?;
            out.push(Version { version: v.version, material: decode(&mut raw)?, created_at: v.created_at });
        }
        Versions::from_vec(out).map(std::sync::Arc::new)
    }
    Some(match kind {
        KeyKind::Aes256 => Material::Aes256(versions(stored, |raw| skm_crypto::Secret32::from_slice_wiping(raw))?),
        KeyKind::Asymmetric(algorithm) => Material::Signing {
            algorithm,
            versions: versions(stored, |raw| PrivateKey::from_pkcs8(algorithm, raw).ok())?,
        },
        KeyKind::Hmac(algorithm) => Material::Mac {
            algorithm,
            versions: versions(stored, |raw| MacKey::from_bytes(algorithm, std::mem::take(raw)).ok())?,
        },
        KeyKind::RsaOaep(size) => {
            Material::Decrypting { size, versions: versions(stored, |raw| DecryptingKey::from_pkcs8(size, raw).ok())? }
        }
        KeyKind::Secret => Material::Secret(versions(stored, |raw| Some(std::mem::take(raw)))?),
    })
}

/// JSON of `value` in a zeroizing buffer of exactly its length: the length
/// is counted first, so the buffer never grows (a growing `Vec` frees its
/// old, unwiped buffers).
fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, RecordError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(|_| RecordError::Seal)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *buf, value).map_err(|_| RecordError::Seal)?;
    Ok(buf)
}

/// Lowercase hex of `raw` in a zeroizing string allocated once.
fn hex_zeroizing(raw: &[u8]) -> Zeroizing<String> {
    let mut buf = Zeroizing::new(vec![0u8; raw.len() * 2]);
    let text = match hex::encode_to_slice(raw, &mut buf) {
        Ok(()) => String::from_utf8(std::mem::take(&mut *buf)).unwrap_or_default(),
        Err(_) => String::new(),
    };
    Zeroizing::new(text)
}

/// The bytes of hex `text` in a zeroizing buffer allocated once.
fn unhex_zeroizing(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    // An odd length fails decode_to_slice.
    let mut raw = Zeroizing::new(vec![0u8; text.len() / 2]);
    hex::decode_to_slice(text, &mut raw).ok()?;
    Some(raw)
}

fn parse_id_suffix(key: &[u8], prefix_len: usize) -> Result<Id, RecordError> {
    std::str::from_utf8(&key[prefix_len..])
        .ok()
        .and_then(|s| s.parse::<Id>().ok())
        .ok_or_else(|| RecordError::Corrupt(String::from_utf8_lossy(key).into_owned()))
}

/// Key records are stored as `owner (32 hex) | sealed`, so the owner is
/// known before opening; the AAD makes any edit of it fail the open.
fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn split_owner(value: &[u8]) -> Option<(String, &[u8])> {
    if value.len() < 32 {
        return None;
    }
    let (owner, sealed) = value.split_at(32);
    Some((String::from_utf8(owner.to_vec()).ok()?, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_and_parse_back() {
        let id: Id = "00112233445566778899aabbccddeeff".parse().unwrap();
        let early = Due { at: 1_000, kind: DueKind::Destroy, key_id: id };
        let late = Due { at: 1_000_000, kind: DueKind::Rotate, key_id: id };
        assert!(due_key(&early) < due_key(&late));
        assert_eq!(parse_due(&due_key(&early)), Some(early));
        assert_eq!(parse_due(&due_key(&late)), Some(late));
        assert_eq!(parse_due(b"due/short"), None);
    }

    /// Serialised material is written into buffers of exactly its size: a
    /// buffer that grew would have freed its earlier, unwiped copies.
    #[test]
    fn records_with_material_are_encoded_without_reallocating() {
        let versions: Vec<VersionRecord> = (1..=1000)
            .map(|version| VersionRecord {
                version,
                created_at: 1_700_000_000,
                material: hex_zeroizing(&[version as u8; 64]),
            })
            .collect();
        for v in &versions {
            assert_eq!((v.material.len(), v.material.capacity()), (128, 128));
        }
        let record = KeyRecord {
            keystore_id: "00112233445566778899aabbccddeeff".into(),
            name: "k".into(),
            kind: "secret".into(),
            created_at: 0,
            versions,
            state: enabled(),
            deletion_at: 0,
            rotation_period_days: 0,
            next_rotation_at: 0,
            oldest_version: 0,
            newest_version: 0,
            max_versions: 0,
            origin: String::new(),
        };
        let json = to_json(&record).unwrap();
        assert!(json.len() > 64 * 1024);
        assert_eq!(json.capacity(), json.len());
        let one = to_json(&record.versions[0]).unwrap();
        assert_eq!(one.capacity(), one.len());
        let raw = unhex_zeroizing(&record.versions[0].material).unwrap();
        assert_eq!((&raw[..], raw.capacity()), (&[1u8; 64][..], 64));
        assert!(unhex_zeroizing("abc").is_none());
        assert!(unhex_zeroizing("zz").is_none());
    }

    #[test]
    fn a_changed_store_key_names_what_a_replica_must_forget() {
        let id = Id::from_bytes([7; 16]);
        assert_eq!(Changed::of(&ks_key(&id)), Some(Changed::Keystore(id)));
        assert_eq!(Changed::of(&key_key(&id)), Some(Changed::Key(id)));
        assert_eq!(Changed::of(&version_key(&id, 3)), Some(Changed::Key(id)));
        let revoked = [OPERATOR_REVOKED_PREFIX, b"ab12"].concat();
        assert_eq!(Changed::of(&revoked), Some(Changed::OperatorRevoked("ab12".into())));
        for other in
            [ks_name_key("x"), last_use_key(&id), import_key(&id), key_name_key(&id, "n"), b"auditanchor/a".to_vec()]
        {
            assert_eq!(Changed::of(&other), None, "{}", String::from_utf8_lossy(&other));
        }
        assert_eq!(Changed::of(b"key/not-an-id"), None);
    }
}
