//! kms-api's records in its store, each sealed under the active system key.
//!
//! | store key | value (sealed) | owner bound in AAD |
//! |---|---|---|
//! | `ks/<keystore id>` | keystore (JSON) | — |
//! | `ksname/<name>` | keystore id | — |
//! | `key/<key id>` | keystore id (clear) ‖ key with every version's material (JSON) | keystore id |
//! | `keyname/<keystore id>/<name>` | key id | keystore id |
//!
//! Store keys hold only ids and names; every value, including each key's
//! material, is sealed ([`skm_crypto::record`]) with AAD binding it to its
//! store key and owner, so values can't be moved between records.
//! Serialised plaintext lives in zeroizing buffers.

use serde::{Deserialize, Serialize};
use skm_crypto::Id;
use skm_store::{Expect, Op, SledStore, Store, StoreError};
use zeroize::Zeroizing;

use crate::access::Policy;
use crate::bootstrap::{Keyring, NotReady};
use crate::model::{Key, KeyKind, KeyVersion, Keystore, Material};

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
    allow_ips: Vec<String>,
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    keystore_id: String,
    name: String,
    kind: String,
    created_at: i64,
    versions: Vec<VersionRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRecord {
    version: u32,
    created_at: i64,
    /// Hex of the raw key material.
    material: Zeroizing<String>,
}

fn ks_key(id: &Id) -> Vec<u8> {
    format!("ks/{id}").into_bytes()
}

fn ks_name_key(name: &str) -> Vec<u8> {
    format!("ksname/{name}").into_bytes()
}

fn key_key(id: &Id) -> Vec<u8> {
    format!("key/{id}").into_bytes()
}

fn key_name_key(keystore: &Id, name: &str) -> Vec<u8> {
    format!("keyname/{keystore}/{name}").into_bytes()
}

/// Sealed record persistence.
#[derive(Clone, Debug)]
pub struct Records {
    store: SledStore,
    keyring: Keyring,
}

impl Records {
    /// Over an opened store and the (possibly not yet loaded) keyring.
    pub fn new(store: SledStore, keyring: Keyring) -> Self {
        Self { store, keyring }
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
        let mut buf = Zeroizing::new(Vec::with_capacity(4096));
        serde_json::to_writer(&mut *buf, value).map_err(|_| RecordError::Seal)?;
        Ok(buf)
    }

    /// Stores a new keystore; its name must be free.
    pub async fn create_keystore(&self, ks: &Keystore) -> Result<(), RecordError> {
        let record = KeystoreRecord {
            name: ks.name.clone(),
            allow_ips: ks.policy.allow_ips.iter().map(ToString::to_string).collect(),
            created_at: ks.created_at,
        };
        let id_key = ks_key(&ks.id);
        let name_key = ks_name_key(&ks.name);
        let value = self.seal(&id_key, b"", &Self::to_json(&record)?)?;
        let index = self.seal(&name_key, b"", ks.id.to_string().as_bytes())?;
        self.store
            .apply(vec![
                Op::Put { key: name_key, value: index, expect: Expect::Absent },
                Op::Put { key: id_key, value, expect: Expect::Absent },
            ])
            .await?;
        Ok(())
    }

    /// One keystore.
    pub async fn keystore(&self, id: &Id) -> Result<Option<Keystore>, RecordError> {
        let key = ks_key(id);
        match self.store.get(&key).await? {
            Some(v) => Ok(Some(self.decode_keystore(*id, &key, &v.value)?)),
            None => Ok(None),
        }
    }

    fn decode_keystore(&self, id: Id, key: &[u8], sealed: &[u8]) -> Result<Keystore, RecordError> {
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(key).into_owned());
        let plain = self.open(key, b"", sealed)?;
        let r: KeystoreRecord = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        let policy = Policy::from_allow_ips(&r.allow_ips).map_err(|_| corrupt())?;
        Ok(Keystore { id, name: r.name, policy, created_at: r.created_at })
    }

    /// Every keystore, by name.
    pub async fn keystores(&self) -> Result<Vec<Keystore>, RecordError> {
        // Fail closed: no answer, not even an empty one, before the system
        // keys are loaded.
        self.keyring.current()?;
        let mut out = Vec::new();
        for (key, v) in self.store.list(b"ks/").await? {
            let id = std::str::from_utf8(&key[3..])
                .ok()
                .and_then(|s| s.parse::<Id>().ok())
                .ok_or_else(|| RecordError::Corrupt(String::from_utf8_lossy(&key).into_owned()))?;
            out.push(self.decode_keystore(id, &key, &v.value)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stores a new key; its name must be free in its keystore.
    pub async fn create_key(&self, key: &Key) -> Result<(), RecordError> {
        let owner = key.keystore_id.to_string();
        let id_key = key_key(&key.id);
        let name_key = key_name_key(&key.keystore_id, &key.name);
        let sealed = self.seal(&id_key, owner.as_bytes(), &Self::to_json(&Self::key_record(key))?)?;
        let value = [owner.as_bytes(), &sealed].concat();
        let index = self.seal(&name_key, owner.as_bytes(), key.id.to_string().as_bytes())?;
        self.store
            .apply(vec![
                Op::Put { key: name_key, value: index, expect: Expect::Absent },
                Op::Put { key: id_key, value, expect: Expect::Absent },
            ])
            .await?;
        Ok(())
    }

    fn key_record(key: &Key) -> KeyRecord {
        KeyRecord {
            keystore_id: key.keystore_id.to_string(),
            name: key.name.clone(),
            kind: key.kind.name().to_owned(),
            created_at: key.created_at,
            versions: key
                .versions
                .iter()
                .map(|v| VersionRecord {
                    version: v.version,
                    created_at: v.created_at,
                    material: Zeroizing::new(match &v.material {
                        Material::Aes256(k) => hex::encode(k.danger_expose()),
                    }),
                })
                .collect(),
        }
    }

    /// One key with its material. The owner bound into the record's AAD is
    /// the keystore the record names, so a record moved under another key
    /// id, or edited to name another keystore, does not open.
    pub async fn key(&self, id: &Id) -> Result<Option<Key>, RecordError> {
        let store_key = key_key(id);
        let Some(v) = self.store.get(&store_key).await? else {
            return Ok(None);
        };
        let corrupt = || RecordError::Corrupt(String::from_utf8_lossy(&store_key).into_owned());
        let (owner, sealed) = split_owner(&v.value).ok_or_else(corrupt)?;
        let plain = self.open(&store_key, owner.as_bytes(), sealed)?;
        let r: KeyRecord = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        if r.keystore_id != owner {
            return Err(corrupt());
        }
        let kind = KeyKind::from_name(&r.kind).ok_or_else(corrupt)?;
        let mut versions = Vec::with_capacity(r.versions.len());
        for v in r.versions {
            let mut raw = Zeroizing::new(hex::decode(v.material.as_bytes()).map_err(|_| corrupt())?);
            let material = match kind {
                KeyKind::Aes256 => {
                    Material::Aes256(skm_crypto::Secret32::from_slice_wiping(&mut raw).ok_or_else(corrupt)?)
                }
            };
            versions.push(KeyVersion { version: v.version, material, created_at: v.created_at });
        }
        Ok(Some(Key {
            id: *id,
            keystore_id: owner.parse().map_err(|_| corrupt())?,
            name: r.name,
            kind,
            versions,
            created_at: r.created_at,
        }))
    }
}

/// Key records are stored as `owner (32 hex) | sealed`, so the owner is
/// known before opening; the AAD makes any edit of it fail the open.
fn split_owner(value: &[u8]) -> Option<(String, &[u8])> {
    if value.len() < 32 {
        return None;
    }
    let (owner, sealed) = value.split_at(32);
    Some((String::from_utf8(owner.to_vec()).ok()?, sealed))
}
