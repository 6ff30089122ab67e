//! kms-api's operations, independent of gRPC: keystores, keys and secrets,
//! with the keystore policy, the key's state and its type checked on every
//! use.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use skm_crypto::Id;

use crate::access::{CertState, Denied};
use crate::audit::AuditLog;
use crate::bootstrap::NotReady;
use crate::clock::Clock;
use crate::model::{Key, KeyKind, KeyState, Keystore};
use crate::records::{Due, RecordError, Records};

mod calls;
mod data;
mod keystores;
mod lifecycle;
mod maintenance;
pub mod signing;

pub use calls::Call;
pub use data::{BatchItem, DataKey};
pub use keystores::IssuedCertificate;
pub use lifecycle::NewKey;
pub use maintenance::MaintenanceReport;

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
    /// Lost a compare-and-swap race too often.
    #[error("concurrent modification; retry")]
    Aborted,
    /// The audit log can't be written: the call is refused (fail closed).
    #[error("the audit log is unavailable; the request was not carried out")]
    AuditUnavailable,
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

impl KmsError {
    /// The gRPC code name of this error (DESIGN §10), for the audit log.
    pub fn code_name(&self) -> &'static str {
        match self {
            KmsError::InvalidArgument(_) | KmsError::DecryptFailed => "INVALID_ARGUMENT",
            KmsError::NotFound(_) => "NOT_FOUND",
            KmsError::AlreadyExists(_) => "ALREADY_EXISTS",
            KmsError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            KmsError::Denied(_) => "PERMISSION_DENIED",
            KmsError::NotReady(_) | KmsError::AuditUnavailable => "UNAVAILABLE",
            KmsError::Aborted => "ABORTED",
            KmsError::Internal(_) => "INTERNAL",
        }
    }
}

pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> KmsError {
    KmsError::Internal(Box::new(e))
}

/// Bounded in-memory cache of decrypted keystores and keys, so a crypto
/// call does no storage I/O on a hit. Each entry carries the store
/// revision it was read at, so a slow writer can't replace a newer entry
/// with an older one. Keys and keystores each take at most half of
/// `cache_entries`; a full map evicts its oldest insertion (FIFO: no
/// bookkeeping on the hit path, O(1) per miss, and the memory bound holds).
#[derive(Debug)]
struct Cache {
    capacity: usize,
    keystores: Entries<Keystore>,
    keys: Entries<Key>,
}

#[derive(Debug)]
struct Map<T> {
    entries: HashMap<Id, (u64, Arc<T>)>,
    /// Insertion order, for eviction; may hold ids already removed.
    order: VecDeque<Id>,
}

impl<T> Default for Map<T> {
    fn default() -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new() }
    }
}

type Entries<T> = RwLock<Map<T>>;

impl Cache {
    fn get<T>(map: &Entries<T>, id: &Id) -> Option<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.get(id).map(|(_, v)| v.clone())
    }

    /// Inserts unless a newer revision is cached already.
    fn put<T>(&self, map: &Entries<T>, id: Id, revision: u64, value: Arc<T>) {
        let mut map = map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, _)) = map.entries.get(&id)
            && *cached > revision
        {
            return;
        }
        let bound = (self.capacity / 2).max(1);
        if map.entries.insert(id, (revision, value)).is_none() {
            map.order.push_back(id);
        }
        while map.entries.len() > bound {
            match map.order.pop_front() {
                Some(old) => {
                    map.entries.remove(&old);
                }
                None => break,
            }
        }
        // Stale ids (removed entries) can't make the queue grow without end.
        if map.order.len() > 2 * bound {
            let Map { entries, order } = &mut *map;
            let mut seen = std::collections::HashSet::new();
            order.retain(|id| entries.contains_key(id) && seen.insert(*id));
        }
    }

    fn remove<T>(map: &Entries<T>, id: &Id) {
        map.write().unwrap_or_else(std::sync::PoisonError::into_inner).entries.remove(id);
    }

    fn all<T>(map: &Entries<T>) -> Vec<Arc<T>> {
        map.read().unwrap_or_else(std::sync::PoisonError::into_inner).entries.values().map(|(_, v)| v.clone()).collect()
    }
}

/// What a use of a key needs it to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Encrypt, decrypt, data keys.
    Aes,
    /// Sign, verify, public key.
    Asymmetric,
    /// Get a secret.
    Secret,
}

impl Need {
    fn fits(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (Need::Aes, KeyKind::Aes256) | (Need::Asymmetric, KeyKind::Asymmetric(_)) | (Need::Secret, KeyKind::Secret)
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Need::Aes => "an aes-256 key",
            Need::Asymmetric => "an asymmetric key (ed25519, ecdsa-p256, rsa-*)",
            Need::Secret => "a secret",
        }
    }
}

/// The operations.
#[derive(Debug)]
pub struct Kms {
    records: Records,
    clock: Arc<dyn Clock>,
    cache: Cache,
    audit: Arc<AuditLog>,
}

pub(crate) fn parse_id(field: &str, value: &str) -> Result<Id, KmsError> {
    value.parse().map_err(|_| KmsError::InvalidArgument(format!("{field}: {value:?} is not an id (32 hex digits)")))
}

pub(crate) fn check_len(field: &str, len: usize, limit: usize) -> Result<(), KmsError> {
    if len > limit {
        return Err(KmsError::InvalidArgument(format!("{field} is {len} bytes; the limit is {limit}")));
    }
    Ok(())
}

impl Kms {
    /// Over the record store and the audit log.
    pub fn new(records: Records, clock: Arc<dyn Clock>, cache_entries: usize, audit: Arc<AuditLog>) -> Self {
        Self {
            records,
            clock,
            cache: Cache { capacity: cache_entries, keystores: Entries::default(), keys: Entries::default() },
            audit,
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The clock in use.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A key from the cache or the store.
    pub(crate) async fn key(&self, id: &Id) -> Result<Arc<Key>, KmsError> {
        if let Some(k) = Cache::get(&self.cache.keys, id) {
            return Ok(k);
        }
        let (key, revision) = self.records.key(id).await?.ok_or_else(|| not_found(id))?;
        let key = Arc::new(key);
        self.cache.put(&self.cache.keys, *id, revision, key.clone());
        Ok(key)
    }

    /// Loads a key for a use: the client must pass its keystore's policy,
    /// the key must be enabled and of the kind the use needs.
    pub(crate) async fn usable_key(&self, call: &mut Call, key_id: &str, need: Need) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        let key = self.key(&id).await?;
        call.touch_key(&key);
        let keystore = self.keystore(&key.keystore_id).await?;
        let certs = CertState { ca: &keystore.ca.cert_der, known: &keystore.certs };
        match keystore.policy.check(call.facts(), &certs, self.now()) {
            Ok(passed) => call.passed(passed),
            Err(denied) => {
                tracing::warn!(key_id = %id, keystore_id = %keystore.id, client = ?call.facts().ip, reason = %denied, "key use denied");
                return Err(denied.into());
            }
        }
        match key.state {
            KeyState::Enabled => {}
            KeyState::Disabled => return Err(KmsError::FailedPrecondition(format!("key {id} is disabled"))),
            KeyState::PendingDeletion { deletion_at } => {
                return Err(KmsError::FailedPrecondition(format!(
                    "key {id} is pending deletion (destroyed at {deletion_at} unless cancelled)"
                )));
            }
        }
        if !need.fits(key.kind) {
            return Err(KmsError::FailedPrecondition(format!(
                "key {id} is a {} key; this operation needs {}",
                key.kind.name(),
                need.describe()
            )));
        }
        key.touch(self.now());
        Ok(key)
    }

    /// Reads a key afresh from the store, lets `change` modify it and writes
    /// it back with compare-and-swap, retrying on a lost race. Returns the
    /// stored key, now also in the cache.
    pub(crate) async fn mutate_key<F>(&self, id: &Id, mut change: F) -> Result<Arc<Key>, KmsError>
    where
        F: FnMut(&mut Key, i64) -> Result<(), KmsError>,
    {
        for _ in 0..16 {
            if let Some(key) = self.mutate_key_once(id, &mut change).await? {
                return Ok(key);
            }
        }
        Err(KmsError::Aborted)
    }

    /// One read-modify-CAS attempt; `None` when another writer won the race.
    pub(crate) async fn mutate_key_once<F>(&self, id: &Id, change: F) -> Result<Option<Arc<Key>>, KmsError>
    where
        F: FnOnce(&mut Key, i64) -> Result<(), KmsError>,
    {
        let (mut key, revision) = self.records.key(id).await?.ok_or_else(|| not_found(id))?;
        if let Some(cached) = Cache::get(&self.cache.keys, id) {
            key.touch(cached.last_used());
        }
        let due_before: Vec<Due> = crate::records::due_entries(&key);
        change(&mut key, self.now())?;
        match self.records.update_key(&key, revision, &due_before).await {
            Ok(()) => {
                let key = Arc::new(key);
                self.cache.put(&self.cache.keys, *id, revision + 1, key.clone());
                Ok(Some(key))
            }
            Err(RecordError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The material of a key version, for the tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub async fn danger_key_material(&self, key_id: &str, version: u32) -> Option<Vec<u8>> {
        let key = self.key(&key_id.parse().ok()?).await.ok()?;
        Some(match &key.version(version)?.material {
            crate::model::Material::Aes256(m) => m.danger_expose().to_vec(),
            crate::model::Material::Asymmetric { private, .. } => private.danger_pkcs8().to_vec(),
            crate::model::Material::Secret(v) => v.to_vec(),
        })
    }
}

pub(crate) fn not_found(id: &Id) -> KmsError {
    KmsError::NotFound(format!("key {id} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id::from_bytes([n; 16])
    }

    #[test]
    fn cache_is_bounded_fifo_and_keeps_the_newest_revision() {
        let cache = Cache { capacity: 8, keystores: Entries::default(), keys: Entries::default() };
        let map: Entries<u32> = Entries::default();
        for n in 0..10u8 {
            cache.put(&map, id(n), 1, Arc::new(u32::from(n)));
        }
        let held = map.read().unwrap().entries.len();
        assert_eq!(held, 4, "half of cache_entries");
        assert!(Cache::get(&map, &id(0)).is_none(), "oldest evicted first");
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(9));
        // An older revision never replaces a newer one.
        cache.put(&map, id(9), 5, Arc::new(95));
        cache.put(&map, id(9), 3, Arc::new(93));
        assert_eq!(Cache::get(&map, &id(9)).map(|v| *v), Some(95));
        // Removals and re-inserts don't let the order queue grow unbounded.
        for round in 0..100u8 {
            Cache::remove(&map, &id(9));
            cache.put(&map, id(9), 10 + u64::from(round), Arc::new(0));
        }
        assert!(map.read().unwrap().order.len() <= 2 * 4 + 1);
    }
}
