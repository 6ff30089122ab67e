//! Creating, rotating, enabling, disabling and deleting keys and secrets.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use skm_crypto::Id;
use zeroize::Zeroizing;

use super::{Cache, Kms, KmsError, internal, parse_id};
use crate::model::{self, DAY, Key, KeyKind, KeyState, KeyVersion, Material};
use crate::records::RecordError;

/// What a new key should be.
#[derive(Clone, Copy, Debug)]
pub struct NewKey<'a> {
    /// Keystore id.
    pub keystore_id: &'a str,
    /// Name, unique in the keystore.
    pub name: &'a str,
    /// Algorithm (not [`KeyKind::Secret`]).
    pub kind: KeyKind,
    /// Automatic rotation period in days; 0 = off.
    pub rotation_period_days: u32,
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

fn next_rotation(now: i64, days: u32) -> i64 {
    if days == 0 { 0 } else { now + i64::from(days) * DAY }
}

/// Generates material off the async threads (RSA takes up to seconds).
async fn generate(kind: KeyKind) -> Result<Material, KmsError> {
    tokio::task::spawn_blocking(move || Material::generate(kind)).await.map_err(internal)?.map_err(internal)
}

impl Kms {
    async fn insert_key(&self, key: Key) -> Result<Arc<Key>, KmsError> {
        let (name, keystore_id) = (key.name.clone(), key.keystore_id);
        match self.records.create_key(&key).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => {
                return Err(KmsError::AlreadyExists(format!(
                    "a key or secret named {name:?} already exists in keystore {keystore_id}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(key_id = %key.id, keystore_id = %keystore_id, kind = key.kind.name(), "key created");
        let key = Arc::new(key);
        self.cache.put(&self.cache.keys, key.id, 1, key.clone());
        Ok(key)
    }

    fn new_key(
        &self,
        keystore_id: Id,
        name: &str,
        kind: KeyKind,
        rotation: u32,
        material: Material,
    ) -> Result<Key, KmsError> {
        let now = self.now();
        Ok(Key {
            id: Id::generate().map_err(internal)?,
            keystore_id,
            name: name.to_owned(),
            kind,
            state: KeyState::Enabled,
            versions: vec![KeyVersion { version: 1, material, created_at: now }],
            rotation_period_days: rotation,
            next_rotation_at: next_rotation(now, rotation),
            created_at: now,
            last_used_at: AtomicI64::new(0),
        })
    }

    /// Creates a key with version 1.
    pub async fn create_key(&self, spec: NewKey<'_>) -> Result<Arc<Key>, KmsError> {
        let keystore_id = parse_id("keystore_id", spec.keystore_id)?;
        model::check_name("name", spec.name).map_err(KmsError::InvalidArgument)?;
        if spec.kind == KeyKind::Secret {
            return Err(KmsError::InvalidArgument("key_type SECRET is created with CreateSecret".to_owned()));
        }
        check_rotation(spec.kind, spec.rotation_period_days)?;
        self.keystore(&keystore_id).await?;
        let material = generate(spec.kind).await?;
        let key = self.new_key(keystore_id, spec.name, spec.kind, spec.rotation_period_days, material)?;
        self.insert_key(key).await
    }

    /// Creates a secret with version 1.
    pub async fn create_secret(&self, keystore_id: &str, name: &str, value: &[u8]) -> Result<Arc<Key>, KmsError> {
        let keystore_id = parse_id("keystore_id", keystore_id)?;
        model::check_name("name", name).map_err(KmsError::InvalidArgument)?;
        check_secret(value)?;
        self.keystore(&keystore_id).await?;
        let key =
            self.new_key(keystore_id, name, KeyKind::Secret, 0, Material::Secret(Zeroizing::new(value.to_vec())))?;
        self.insert_key(key).await
    }

    /// Stores a new version of a secret.
    pub async fn update_secret(&self, key_id: &str, value: &[u8]) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        check_secret(value)?;
        let value = Zeroizing::new(value.to_vec());
        self.mutate_key(&id, |key, now| {
            if key.kind != KeyKind::Secret {
                return Err(KmsError::FailedPrecondition(format!("key {} is not a secret; use RotateKey", key.id)));
            }
            usable_for_change(key)?;
            let version = key.newest().map_or(1, |v| v.version + 1);
            key.versions.push(KeyVersion { version, material: Material::Secret(value.clone()), created_at: now });
            Ok(())
        })
        .await
    }

    /// A key as operators see it (never reaching the material).
    pub async fn describe_key(&self, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        self.key(&id).await
    }

    /// Every key and secret of a keystore, by name.
    pub async fn list_keys(&self, keystore_id: &str) -> Result<Vec<Arc<Key>>, KmsError> {
        let keystore_id = parse_id("keystore_id", keystore_id)?;
        self.keystore(&keystore_id).await?;
        let mut out = Vec::new();
        for id in self.records.key_ids_in(&keystore_id).await? {
            match self.key(&id).await {
                Ok(k) => out.push(k),
                // Destroyed between listing and loading.
                Err(KmsError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Adds a version with fresh material and makes it current. A lost
    /// compare-and-swap race is retried with fresh material, so concurrent
    /// rotations produce consecutive versions and none is lost.
    pub async fn rotate_key(&self, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        let kind = self.key(&id).await?.kind;
        if kind == KeyKind::Secret {
            return Err(KmsError::FailedPrecondition(format!("key {id} is a secret; use UpdateSecret")));
        }
        for _ in 0..16 {
            let material = generate(kind).await?;
            let attempt = self
                .mutate_key_once(&id, |key, now| {
                    usable_for_change(key)?;
                    add_version(key, material, now);
                    Ok(())
                })
                .await?;
            if let Some(key) = attempt {
                tracing::info!(key_id = %id, version = key.newest().map_or(0, |v| v.version), "key rotated");
                return Ok(key);
            }
        }
        Err(KmsError::Aborted)
    }

    /// Sets the automatic rotation period (0 = off).
    pub async fn update_rotation(&self, key_id: &str, days: u32) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        self.mutate_key(&id, |key, now| {
            check_rotation(key.kind, days)?;
            key.rotation_period_days = days;
            key.next_rotation_at = next_rotation(now, days);
            Ok(())
        })
        .await
    }

    /// Enables a disabled key.
    pub async fn enable_key(&self, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        self.mutate_key(&id, |key, _| match key.state {
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

    /// Disables a key.
    pub async fn disable_key(&self, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        self.mutate_key(&id, |key, _| match key.state {
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

    /// Schedules destruction after `days` (0: the default, 7).
    pub async fn schedule_deletion(&self, key_id: &str, days: u32) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        let days = if days == 0 { model::DEFAULT_DELETION_DAYS } else { days };
        if !model::DELETION_DAYS.contains(&days) {
            return Err(KmsError::InvalidArgument(format!(
                "pending_days is {days}; it must be {}..={}",
                model::DELETION_DAYS.start(),
                model::DELETION_DAYS.end()
            )));
        }
        let key = self
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
        Ok(key)
    }

    /// Cancels a scheduled deletion; the key comes back disabled (as in AWS
    /// KMS), to be enabled on purpose.
    pub async fn cancel_deletion(&self, key_id: &str) -> Result<Arc<Key>, KmsError> {
        let id = parse_id("key_id", key_id)?;
        self.mutate_key(&id, |key, _| match key.state {
            KeyState::PendingDeletion { .. } => {
                key.state = KeyState::Disabled;
                Ok(())
            }
            _ => Err(KmsError::FailedPrecondition(format!("key {} is not pending deletion", key.id))),
        })
        .await
    }

    /// Destroys a key whose waiting period is over: its record, with every
    /// version's material, is deleted. Returns whether it was destroyed.
    pub(crate) async fn destroy_if_due(&self, id: &Id, now: i64) -> Result<bool, KmsError> {
        let Some((key, revision)) = self.records.key(id).await? else { return Ok(false) };
        match key.state {
            KeyState::PendingDeletion { deletion_at } if deletion_at <= now => {}
            _ => return Ok(false),
        }
        match self.records.destroy_key(&key, revision).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        Cache::remove(&self.cache.keys, id);
        tracing::info!(key_id = %id, "key destroyed");
        Ok(true)
    }

    /// Rotates a key whose automatic rotation is due; a disabled key only
    /// has its next rotation moved on. Returns whether a version was added.
    pub(crate) async fn rotate_if_due(&self, id: &Id, now: i64) -> Result<bool, KmsError> {
        let kind = match self.key(id).await {
            Ok(k) => k.kind,
            Err(KmsError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        for _ in 0..16 {
            let material = generate(kind).await?;
            let mut rotated = false;
            let attempt = self
                .mutate_key_once(id, |key, _| {
                    if key.rotation_period_days == 0 || key.next_rotation_at == 0 || key.next_rotation_at > now {
                        return Ok(());
                    }
                    if key.state == KeyState::Enabled {
                        add_version(key, material, now);
                        rotated = true;
                    }
                    key.next_rotation_at = next_rotation(now, key.rotation_period_days);
                    Ok(())
                })
                .await;
            match attempt {
                Ok(Some(_)) => return Ok(rotated),
                Ok(None) => continue,
                Err(KmsError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Err(KmsError::Aborted)
    }

    /// Ids of cached keys with their last use, for persisting.
    pub(crate) fn cached_last_uses(&self) -> Vec<(Id, i64)> {
        Cache::all(&self.cache.keys).iter().filter(|k| k.last_used() > 0).map(|k| (k.id, k.last_used())).collect()
    }
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

fn add_version(key: &mut Key, material: Material, now: i64) {
    let version = key.newest().map_or(1, |v| v.version + 1);
    key.versions.push(KeyVersion { version, material, created_at: now });
    if key.rotation_period_days > 0 {
        key.next_rotation_at = next_rotation(now, key.rotation_period_days);
    }
}
