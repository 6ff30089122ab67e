//! Creating, rotating, enabling, disabling and deleting keys and secrets.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use skm_crypto::Id;
use skm_store::Store;
use zeroize::Zeroizing;

use super::operation::{Effect, Operation, Subject, Trail};
use super::{Kms, KmsError, internal, not_found, parse_id};
use crate::model::{self, DAY, Fresh, Key, KeyKind, KeyState, Material};
use crate::records::{Due, RecordError};

/// Create a key with version 1.
#[derive(Clone, Debug)]
pub struct CreateKey {
    /// The keystore.
    pub keystore_id: String,
    /// Name, unique in the keystore.
    pub name: String,
    /// Algorithm (not [`KeyKind::Secret`]).
    pub kind: KeyKind,
    /// Automatic rotation period in days; 0 = off.
    pub rotation_period_days: u32,
}

/// Create a secret with version 1.
pub struct CreateSecret {
    /// The keystore.
    pub keystore_id: String,
    /// Name, unique in the keystore.
    pub name: String,
    /// At most [`model::MAX_SECRET`] bytes.
    pub value: Zeroizing<Vec<u8>>,
    /// Versions kept, 1..=[`model::MAX_SECRET_VERSIONS`]; past it the oldest
    /// is deleted. 0 for [`model::DEFAULT_SECRET_VERSIONS`].
    pub max_versions: u32,
}

/// Store a new version of a secret.
pub struct UpdateSecret {
    /// The secret.
    pub key_id: String,
    /// At most [`model::MAX_SECRET`] bytes.
    pub value: Zeroizing<Vec<u8>>,
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).field("value", &"<redacted>").finish_non_exhaustive()
            }
        }
    )*};
}
redacted_debug!(CreateSecret, UpdateSecret);

/// Every key and secret of a keystore, by name.
#[derive(Debug)]
pub struct ListKeys {
    /// The keystore.
    pub keystore_id: String,
}

/// A key as operators see it (never its material).
#[derive(Debug)]
pub struct DescribeKey {
    /// The key.
    pub key_id: String,
}

/// Add a version with fresh material and make it current.
#[derive(Debug)]
pub struct RotateKey {
    /// The key.
    pub key_id: String,
}

/// Set the automatic rotation period.
#[derive(Debug)]
pub struct UpdateKey {
    /// The key.
    pub key_id: String,
    /// Days; 0 turns automatic rotation off.
    pub rotation_period_days: u32,
}

/// Enable a disabled key.
#[derive(Debug)]
pub struct EnableKey {
    /// The key.
    pub key_id: String,
}

/// Disable a key: every use is refused.
#[derive(Debug)]
pub struct DisableKey {
    /// The key.
    pub key_id: String,
}

/// Schedule a key's destruction.
#[derive(Debug)]
pub struct ScheduleKeyDeletion {
    /// The key.
    pub key_id: String,
    /// Waiting period, [`model::DELETION_DAYS`]; 0 for the default.
    pub pending_days: u32,
}

/// Cancel a scheduled deletion; the key comes back disabled (as in AWS
/// KMS), to be enabled on purpose.
#[derive(Debug)]
pub struct CancelKeyDeletion {
    /// The key.
    pub key_id: String,
}

fn check_rotation(kind: KeyKind, days: u32) -> Result<(), KmsError> {
    if days > model::MAX_ROTATION_DAYS {
        return Err(KmsError::InvalidArgument(format!(
            "rotation_period_days is {days}; the limit is {} (0 turns rotation off)",
            model::MAX_ROTATION_DAYS
        )));
    }
    if days > 0 && kind == KeyKind::Secret {
        return Err(KmsError::FailedPrecondition("secrets are not rotated automatically; use UpdateSecret".to_owned()));
    }
    Ok(())
}

fn check_secret(value: &[u8]) -> Result<(), KmsError> {
    super::check_len("value", value.len(), model::MAX_SECRET)
}

pub(super) fn next_rotation(now: i64, days: u32) -> i64 {
    if days == 0 { 0 } else { now + i64::from(days) * DAY }
}

/// Generates material off the async threads (RSA takes up to seconds).
pub(super) async fn generate(kind: KeyKind) -> Result<Fresh, KmsError> {
    tokio::task::spawn_blocking(move || Fresh::generate(kind)).await.map_err(internal)?.map_err(internal)
}

/// Changes that need a usable key (not pending deletion).
fn usable_for_change(key: &Key) -> Result<(), KmsError> {
    match key.state {
        KeyState::PendingDeletion { .. } => {
            Err(KmsError::FailedPrecondition(format!("key {} is pending deletion", key.id)))
        }
        _ => Ok(()),
    }
}

/// Refuses a new version of a key that has `max_key_versions` already.
pub(super) fn check_version_cap(key: &Key, max_key_versions: u32) -> Result<(), KmsError> {
    let count = key.material.version_count();
    if key.kind() != KeyKind::Secret && count >= max_key_versions as usize {
        return Err(KmsError::FailedPrecondition(format!(
            "key {} has {count} versions; the limit is {max_key_versions} (kms-api's max_key_versions). A key keeps \
             every version so that old ciphertexts still decrypt: create a new key instead of rotating this one",
            key.id
        )));
    }
    Ok(())
}

/// Adds `fresh` as the newest version and moves the next automatic
/// rotation on. A key that has `max_key_versions` versions is refused; a
/// secret then drops its oldest versions past its `max_versions`.
pub(super) fn add_version(key: &mut Key, fresh: Fresh, now: i64, max_key_versions: u32) -> Result<u32, KmsError> {
    check_version_cap(key, max_key_versions)?;
    let version = key.material.push(fresh, now).map_err(internal)?;
    if let Some(keep) = key.secret_versions_kept() {
        key.material.keep_newest(keep as usize).map_err(internal)?;
    }
    if key.rotation_period_days > 0 {
        key.next_rotation_at = next_rotation(now, key.rotation_period_days);
    }
    Ok(version)
}

/// Records the key a change touched and the version it now has.
fn touched(trail: &mut Trail<'_>, key: &Key) {
    trail.touch_key(key);
    trail.used_version(key.material.newest_version());
}

impl Operation for CreateKey {
    const NAME: &'static str = "CreateKey";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        model::check_name("name", &self.name).map_err(KmsError::InvalidArgument)?;
        if self.kind == KeyKind::Secret {
            return Err(KmsError::InvalidArgument("key_type SECRET is created with CreateSecret".to_owned()));
        }
        check_rotation(self.kind, self.rotation_period_days)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let keystore_id = parse_id("keystore_id", &self.keystore_id)?;
        kms.keystore(&keystore_id).await?;
        let fresh = generate(self.kind).await?;
        let key = kms.new_key(keystore_id, &self.name, self.rotation_period_days, fresh)?;
        let key = kms.insert_key(key).await?;
        touched(trail, &key);
        Ok(key)
    }
}

impl Operation for CreateSecret {
    const NAME: &'static str = "CreateSecret";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        model::check_name("name", &self.name).map_err(KmsError::InvalidArgument)?;
        check_secret(&self.value)?;
        if self.max_versions > model::MAX_SECRET_VERSIONS {
            return Err(KmsError::InvalidArgument(format!(
                "max_versions is {}; the limit is {} (0 for the default, {})",
                self.max_versions,
                model::MAX_SECRET_VERSIONS,
                model::DEFAULT_SECRET_VERSIONS
            )));
        }
        Ok(())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let keystore_id = parse_id("keystore_id", &self.keystore_id)?;
        kms.keystore(&keystore_id).await?;
        let mut key = kms.new_key(keystore_id, &self.name, 0, Fresh::Secret(self.value))?;
        key.max_versions = if self.max_versions == 0 { model::DEFAULT_SECRET_VERSIONS } else { self.max_versions };
        let key = kms.insert_key(key).await?;
        touched(trail, &key);
        Ok(key)
    }
}

impl Operation for UpdateSecret {
    const NAME: &'static str = "UpdateSecret";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        check_secret(&self.value)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let value = self.value;
        let cap = kms.max_key_versions;
        kms.change_key(trail, &self.key_id, |key, now| {
            if key.kind() != KeyKind::Secret {
                return Err(KmsError::FailedPrecondition(format!("key {} is not a secret; use RotateKey", key.id)));
            }
            usable_for_change(key)?;
            add_version(key, Fresh::Secret(value.clone()), now, cap).map(|_| ())
        })
        .await
    }
}

impl Operation for ListKeys {
    const NAME: &'static str = "ListKeys";
    const EFFECT: Effect = Effect::Read;
    type Output = Vec<Arc<Key>>;

    fn subject(&self) -> Subject<'_> {
        Subject::Keystore(&self.keystore_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Vec<Arc<Key>>, KmsError> {
        let keystore_id = parse_id("keystore_id", &self.keystore_id)?;
        kms.keystore(&keystore_id).await?;
        let mut out = Vec::new();
        for id in kms.records.key_ids_in(&keystore_id).await? {
            match kms.key(&id).await {
                Ok(k) => out.push(k),
                // Destroyed between listing and loading.
                Err(KmsError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl Operation for DescribeKey {
    const NAME: &'static str = "DescribeKey";
    const EFFECT: Effect = Effect::Read;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let key = kms.key(&parse_id("key_id", &self.key_id)?).await?;
        touched(trail, &key);
        Ok(key)
    }
}

impl Operation for RotateKey {
    const NAME: &'static str = "RotateKey";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    /// A lost compare-and-swap race is retried with fresh material, so
    /// concurrent rotations produce consecutive versions and none is lost.
    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", &self.key_id)?;
        let kind = kms.key(&id).await?.kind();
        if kind == KeyKind::Secret {
            return Err(KmsError::FailedPrecondition(format!("key {id} is a secret; use UpdateSecret")));
        }
        let cap = kms.max_key_versions;
        for _ in 0..16 {
            // Refused before any material is generated (RSA takes seconds).
            check_version_cap(&*kms.key(&id).await?, cap)?;
            let fresh = generate(kind).await?;
            let attempt = kms
                .mutate_key_once(&id, |key, now| {
                    usable_for_change(key)?;
                    add_version(key, fresh, now, cap).map(|_| ())
                })
                .await?;
            if let Some(key) = attempt {
                tracing::info!(key_id = %id, version = key.material.newest_version(), "key rotated");
                touched(trail, &key);
                return Ok(key);
            }
        }
        Err(KmsError::Aborted)
    }
}

impl Operation for UpdateKey {
    const NAME: &'static str = "UpdateKey";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        // The secret case needs the key: checked again when it is loaded.
        check_rotation(KeyKind::Aes256, self.rotation_period_days)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let days = self.rotation_period_days;
        kms.change_key(trail, &self.key_id, |key, now| {
            check_rotation(key.kind(), days)?;
            key.rotation_period_days = days;
            key.next_rotation_at = next_rotation(now, days);
            Ok(())
        })
        .await
    }
}

impl Operation for EnableKey {
    const NAME: &'static str = "EnableKey";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        kms.change_key(trail, &self.key_id, |key, _| match key.state {
            KeyState::PendingDeletion { .. } => Err(KmsError::FailedPrecondition(format!(
                "key {} is pending deletion; cancel the deletion first",
                key.id
            ))),
            _ => {
                key.state = KeyState::Enabled;
                Ok(())
            }
        })
        .await
    }
}

impl Operation for DisableKey {
    const NAME: &'static str = "DisableKey";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        kms.change_key(trail, &self.key_id, |key, _| match key.state {
            KeyState::PendingDeletion { .. } => {
                Err(KmsError::FailedPrecondition(format!("key {} is pending deletion", key.id)))
            }
            _ => {
                key.state = KeyState::Disabled;
                Ok(())
            }
        })
        .await
    }
}

impl ScheduleKeyDeletion {
    fn days(&self) -> u32 {
        if self.pending_days == 0 { model::DEFAULT_DELETION_DAYS } else { self.pending_days }
    }
}

impl Operation for ScheduleKeyDeletion {
    const NAME: &'static str = "ScheduleKeyDeletion";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    fn check(&self) -> Result<(), KmsError> {
        let days = self.days();
        if !model::DELETION_DAYS.contains(&days) {
            return Err(KmsError::InvalidArgument(format!(
                "pending_days is {days}; it must be {}..={}",
                model::DELETION_DAYS.start(),
                model::DELETION_DAYS.end()
            )));
        }
        Ok(())
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", &self.key_id)?;
        let days = self.days();
        let key = kms
            .mutate_key(&id, |key, now| match key.state {
                KeyState::PendingDeletion { .. } => {
                    Err(KmsError::FailedPrecondition(format!("key {} is already pending deletion", key.id)))
                }
                _ => {
                    key.state = KeyState::PendingDeletion { deletion_at: now + i64::from(days) * DAY };
                    Ok(())
                }
            })
            .await?;
        tracing::info!(key_id = %id, days, "key deletion scheduled");
        touched(trail, &key);
        Ok(key)
    }
}

impl Operation for CancelKeyDeletion {
    const NAME: &'static str = "CancelKeyDeletion";
    const EFFECT: Effect = Effect::Change;
    type Output = Arc<Key>;

    fn subject(&self) -> Subject<'_> {
        Subject::Key(&self.key_id)
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<Arc<Key>, KmsError> {
        kms.change_key(trail, &self.key_id, |key, _| match key.state {
            KeyState::PendingDeletion { .. } => {
                key.state = KeyState::Disabled;
                Ok(())
            }
            _ => Err(KmsError::FailedPrecondition(format!("key {} is not pending deletion", key.id))),
        })
        .await
    }
}

impl<S: Store + Clone> Kms<S> {
    async fn insert_key(&self, key: Key) -> Result<Arc<Key>, KmsError> {
        match self.records.create_key(&key).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => {
                return Err(KmsError::AlreadyExists(format!(
                    "a key or secret named {:?} already exists in keystore {}",
                    key.name, key.keystore_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(key_id = %key.id, keystore_id = %key.keystore_id, kind = key.kind().name(), "key created");
        let key = Arc::new(key);
        self.cache.put_key(key.id, 1, key.clone());
        Ok(key)
    }

    fn new_key(&self, keystore_id: Id, name: &str, rotation: u32, fresh: Fresh) -> Result<Key, KmsError> {
        let now = self.now();
        Ok(Key {
            id: Id::generate().map_err(internal)?,
            keystore_id,
            name: name.to_owned(),
            state: KeyState::Enabled,
            material: Material::first(fresh, now),
            rotation_period_days: rotation,
            next_rotation_at: next_rotation(now, rotation),
            max_versions: 0,
            created_at: now,
            last_used_at: AtomicI64::new(0),
        })
    }

    /// [`Kms::mutate_key`] of the key a request names, recorded in the trail.
    async fn change_key<F>(&self, trail: &mut Trail<'_>, key_id: &str, change: F) -> Result<Arc<Key>, KmsError>
    where
        F: FnMut(&mut Key, i64) -> Result<(), KmsError> + Send,
    {
        let key = self.mutate_key(&parse_id("key_id", key_id)?, change).await?;
        touched(trail, &key);
        Ok(key)
    }

    /// Reads a key afresh from the store, lets `change` modify it and writes
    /// it back with compare-and-swap, retrying on a lost race. Returns the
    /// stored key, now also in the cache.
    pub(super) async fn mutate_key<F>(&self, id: &Id, mut change: F) -> Result<Arc<Key>, KmsError>
    where
        F: FnMut(&mut Key, i64) -> Result<(), KmsError> + Send,
    {
        for _ in 0..16 {
            if let Some(key) = self.mutate_key_once(id, &mut change).await? {
                return Ok(key);
            }
        }
        Err(KmsError::Aborted)
    }

    /// One read-modify-CAS attempt; `None` when another writer won the race.
    pub(super) async fn mutate_key_once<F>(&self, id: &Id, change: F) -> Result<Option<Arc<Key>>, KmsError>
    where
        F: FnOnce(&mut Key, i64) -> Result<(), KmsError> + Send,
    {
        let (mut key, stored) = self.records.key(id).await?.ok_or_else(|| not_found(id))?;
        if let Some(cached) = self.cache.peek_key(id) {
            key.touch(cached.last_used());
        }
        let due_before: Vec<Due> = crate::records::due_entries(&key);
        change(&mut key, self.now())?;
        match self.records.update_key(&key, &stored, &due_before).await {
            Ok(()) => {
                let key = Arc::new(key);
                self.cache.put_key(*id, stored.revision + 1, key.clone());
                Ok(Some(key))
            }
            Err(RecordError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Ids of cached keys with their last use, for persisting.
    pub(super) fn cached_last_uses(&self) -> Vec<(Id, i64)> {
        self.cache.keys().iter().filter(|k| k.last_used() > 0).map(|k| (k.id, k.last_used())).collect()
    }
}
