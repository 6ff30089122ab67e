//! kms-api's operations, independent of gRPC: keystores, keys, encrypt and
//! decrypt, with the keystore policy checked on every use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use skm_crypto::Id;
use skm_crypto::user::{self, Header};
use zeroize::Zeroizing;

use crate::access::{Denied, Policy};
use crate::bootstrap::NotReady;
use crate::clock::Clock;
use crate::model::{self, Key, KeyKind, KeyVersion, Keystore, Material};
use crate::records::{RecordError, Records};

/// Everything an operation can fail with; mapped to gRPC codes in `grpc.rs`
/// following DESIGN §10.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// Bad input; the message names the field and the limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown id.
    #[error("{0}")]
    NotFound(String),
    /// A name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation doesn't fit the key's state or type.
    #[error("{0}")]
    FailedPrecondition(String),
    /// An access method refused the client.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Every decrypt failure, whatever the cause.
    #[error("decryption failed")]
    DecryptFailed,
    /// System keys not loaded.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// Lost a compare-and-swap race.
    #[error("concurrent modification; retry")]
    Aborted,
    /// Anything else; details only in the server log.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<RecordError> for KmsError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::NotReady(n) => KmsError::NotReady(n),
            RecordError::Conflict(_) => KmsError::Aborted,
            other => KmsError::Internal(Box::new(other)),
        }
    }
}

/// Bounded in-memory cache of decrypted keystores and keys, so a crypto
/// call does no storage I/O on a hit. Cleared wholesale when full (a simple
/// bound; a smarter eviction is left to the performance work).
#[derive(Debug)]
struct Cache {
    capacity: usize,
    keystores: RwLock<HashMap<Id, Arc<Keystore>>>,
    keys: RwLock<HashMap<Id, Arc<Key>>>,
}

impl Cache {
    fn get<T>(map: &RwLock<HashMap<Id, Arc<T>>>, id: &Id) -> Option<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    fn put<T>(&self, map: &RwLock<HashMap<Id, Arc<T>>>, id: Id, value: Arc<T>) {
        let mut map = map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= self.capacity / 2 {
            map.clear();
        }
        map.insert(id, value);
    }
}

/// The operations.
#[derive(Debug)]
pub struct Kms {
    records: Records,
    clock: Arc<dyn Clock>,
    cache: Cache,
}

fn parse_id(field: &str, value: &str) -> Result<Id, KmsError> {
    value.parse().map_err(|_| KmsError::InvalidArgument(format!("{field}: {value:?} is not an id (32 hex digits)")))
}

fn check_len(field: &str, len: usize, limit: usize) -> Result<(), KmsError> {
    if len > limit {
        return Err(KmsError::InvalidArgument(format!("{field} is {len} bytes; the limit is {limit}")));
    }
    Ok(())
}

impl Kms {
    /// Over the record store.
    pub fn new(records: Records, clock: Arc<dyn Clock>, cache_entries: usize) -> Self {
        Self {
            records,
            clock,
            cache: Cache { capacity: cache_entries, keystores: RwLock::default(), keys: RwLock::default() },
        }
    }

    /// Creates a keystore.
    pub async fn create_keystore(&self, name: &str, allow_ips: &[String]) -> Result<Keystore, KmsError> {
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        let policy = Policy::from_allow_ips(allow_ips).map_err(KmsError::InvalidArgument)?;
        let ks = Keystore {
            id: Id::generate().map_err(internal)?,
            name: name.to_owned(),
            policy,
            created_at: self.clock.now(),
        };
        match self.records.create_keystore(&ks).await {
            Ok(()) => Ok(ks),
            Err(RecordError::Conflict(_)) => {
                Err(KmsError::AlreadyExists(format!("a keystore named {name:?} already exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every keystore, by name.
    pub async fn list_keystores(&self) -> Result<Vec<Keystore>, KmsError> {
        Ok(self.records.keystores().await?)
    }

    async fn keystore(&self, id: &Id) -> Result<Arc<Keystore>, KmsError> {
        if let Some(ks) = Cache::get(&self.cache.keystores, id) {
            return Ok(ks);
        }
        let ks = Arc::new(
            self.records.keystore(id).await?.ok_or_else(|| KmsError::NotFound(format!("keystore {id} not found")))?,
        );
        self.cache.put(&self.cache.keystores, *id, ks.clone());
        Ok(ks)
    }

    /// Creates a key with version 1.
    pub async fn create_key(&self, keystore_id: &str, name: &str, kind: KeyKind) -> Result<Arc<Key>, KmsError> {
        let keystore_id = parse_id("keystore_id", keystore_id)?;
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        self.keystore(&keystore_id).await?;
        let now = self.clock.now();
        let key = Key {
            id: Id::generate().map_err(internal)?,
            keystore_id,
            name: name.to_owned(),
            kind,
            versions: vec![KeyVersion {
                version: 1,
                material: Material::generate(kind).map_err(internal)?,
                created_at: now,
            }],
            created_at: now,
        };
        match self.records.create_key(&key).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => {
                return Err(KmsError::AlreadyExists(format!(
                    "a key named {name:?} already exists in keystore {keystore_id}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(key_id = %key.id, keystore_id = %keystore_id, kind = kind.name(), "key created");
        let key = Arc::new(key);
        self.cache.put(&self.cache.keys, key.id, key.clone());
        Ok(key)
    }

    async fn key(&self, id: &Id) -> Result<Arc<Key>, KmsError> {
        if let Some(k) = Cache::get(&self.cache.keys, id) {
            return Ok(k);
        }
        let key =
            Arc::new(self.records.key(id).await?.ok_or_else(|| KmsError::NotFound(format!("key {id} not found")))?);
        self.cache.put(&self.cache.keys, *id, key.clone());
        Ok(key)
    }

    /// Loads a key and checks the client against its keystore's policy.
    async fn usable_key(&self, client: IpAddr, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        let key = self.key(&id).await?;
        let keystore = self.keystore(&key.keystore_id).await?;
        if let Err(denied) = keystore.policy.check(client) {
            tracing::warn!(key_id = %id, keystore_id = %keystore.id, %client, reason = %denied, "key use denied");
            return Err(denied.into());
        }
        Ok(key)
    }

    /// Encrypts under the newest version.
    pub async fn encrypt(
        &self,
        client: IpAddr,
        key_id: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<(Vec<u8>, u32), KmsError> {
        check_len("plaintext", plaintext.len(), model::MAX_PLAINTEXT)?;
        check_len("aad", aad.len(), model::MAX_AAD)?;
        let key = self.usable_key(client, key_id).await?;
        let newest = key
            .newest()
            .ok_or_else(|| KmsError::FailedPrecondition(format!("key {} has no usable version", key.id)))?;
        let Material::Aes256(material) = &newest.material;
        let header = Header { key_id: key.id, version: newest.version };
        let ciphertext = user::encrypt(material, header, plaintext, aad).map_err(internal)?;
        Ok((ciphertext, newest.version))
    }

    /// Decrypts with the version the ciphertext names.
    pub async fn decrypt(
        &self,
        client: IpAddr,
        key_id: &str,
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, u32), KmsError> {
        check_len("ciphertext", ciphertext.len(), model::MAX_CIPHERTEXT)?;
        check_len("aad", aad.len(), model::MAX_AAD)?;
        let key = self.usable_key(client, key_id).await?;
        let header = Header::parse(ciphertext).map_err(|_| KmsError::DecryptFailed)?;
        if header.key_id != key.id {
            return Err(KmsError::DecryptFailed);
        }
        let version = key.version(header.version).ok_or(KmsError::DecryptFailed)?;
        let Material::Aes256(material) = &version.material;
        let plaintext = user::decrypt(material, ciphertext, aad).map_err(|_| KmsError::DecryptFailed)?;
        Ok((plaintext, version.version))
    }

    /// The material of a key version, for the tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub async fn danger_key_material(&self, key_id: &str, version: u32) -> Option<[u8; 32]> {
        let key = self.key(&key_id.parse().ok()?).await.ok()?;
        let Material::Aes256(m) = &key.version(version)?.material;
        Some(*m.danger_expose())
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> KmsError {
    KmsError::Internal(Box::new(e))
}
