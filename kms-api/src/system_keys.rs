//! The system keys in kms-api's memory ([`SystemKeys`], used on every call) and how they get there ([`Loader`]).
//!
//! At start kms-api makes a per-boot X25519 key pair, fetches every wrapped
//! system key version from system-keyd, and has root-keyd unwrap each one
//! sealed to that key pair (HPKE). Until that succeeds it is not ready and
//! retries with backoff, so the tiers may start in any order. Afterwards it
//! polls system-keyd for new versions (rotation); if the other tiers go
//! away it keeps serving with the keys it holds.
//!
//! kms-api trusts no tier for its own history: it keeps a sealed manifest
//! of every system key version it has seen ([`SystemManifest`], in its
//! store) and refuses, loudly, a list from system-keyd that lacks one of
//! them or names an older active version — whatever a tampered or
//! rolled-back system-keyd says, records sealed under a version kms-api
//! has seen stay readable: it keeps serving with the keys it holds, and a
//! kms-api starting against such a list does not become ready.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use skm_crypto::record::SystemKeyring;
use skm_crypto::transport::RecipientKeypair;
use skm_proto::root::v1::UnwrapSystemKeyRequest;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::system_key_service_client::SystemKeyServiceClient;
use skm_proto::system::v1::{GetWrappedSystemKeysRequest, RetireSystemKeyRequest};
use skm_runtime::Shutdown;
use skm_store::AnyStore;
use tonic::transport::Channel;

use crate::records::{RecordError, Records, SystemManifest};

/// The system keys kms-api holds in memory, once loaded: what every call seals and opens records with. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SystemKeys {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    ring: RwLock<Option<Arc<SystemKeyring>>>,
    /// Held by whatever replaces the keyring (the loader, a retirement),
    /// so that one replacement never undoes another.
    changes: tokio::sync::Mutex<()>,
    /// Wakes the loader before its next refresh.
    refresh_now: tokio::sync::Notify,
    /// Bumped by the loader after each refresh that reached system-keyd,
    /// with the retired versions system-keyd still lists; `None` until a
    /// loader runs (the core's unit tests have none).
    refreshed: std::sync::Mutex<Option<Refreshes>>,
    /// The background re-seal's progress ([`crate::reseal`]).
    pub(crate) reseal: crate::reseal::Progress,
}

/// The loader's refreshes: how many reached system-keyd, and the retired
/// versions it still listed at the last one.
type Refreshes = tokio::sync::watch::Receiver<(u64, Vec<u32>)>;

/// The system keys are not loaded yet.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("kms-api is not ready: the system keys are not loaded yet")]
pub struct NotReady;

impl SystemKeys {
    /// The current keyring.
    pub fn current(&self) -> Result<Arc<SystemKeyring>, NotReady> {
        self.inner.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone().ok_or(NotReady)
    }

    /// Holding `ring` from the start (unit tests of the core, which run
    /// without the other tiers).
    pub fn loaded(ring: SystemKeyring) -> Self {
        let keys = Self::default();
        keys.set(ring);
        keys
    }

    pub(crate) fn set(&self, ring: SystemKeyring) {
        *self.inner.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(ring));
    }

    /// Excludes every other replacement of the keyring while held.
    pub(crate) async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.changes.lock().await
    }

    /// The background re-seal's progress.
    pub(crate) fn reseal(&self) -> &crate::reseal::Progress {
        &self.inner.reseal
    }

    /// Has the loader refresh now and waits (up to `wait`) for it to have
    /// reached system-keyd; the answer is whether system-keyd still lists
    /// `version` (`None`: no loader, or it did not get through in time).
    pub(crate) async fn refresh_and_check(&self, version: u32, wait: Duration) -> Option<bool> {
        let mut rx = self.inner.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()?;
        let before = rx.borrow_and_update().0;
        self.inner.refresh_now.notify_one();
        let got = tokio::time::timeout(wait, rx.wait_for(|(n, _)| *n > before)).await.ok()?.ok()?;
        Some(got.1.contains(&version))
    }
}

/// Why one loading attempt failed.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("system-keyd: {}: {}", .0.code(), .0.message())]
    System(tonic::Status),
    #[error("root-keyd: {}: {}", .0.code(), .0.message())]
    Root(tonic::Status),
    #[error("system key version {0} could not be opened")]
    Open(u32),
    #[error(transparent)]
    Ring(#[from] skm_crypto::record::MissingActiveVersion),
    /// A list without a version kms-api has seen.
    #[error(
        "refused system-keyd's list of system key versions: it lacks version(s) {missing:?} that kms-api has \
         seen (system-keyd tampered with or restored from an old backup)"
    )]
    Dropped {
        /// The versions seen but not listed.
        missing: Vec<u32>,
    },
    /// A list whose active version is older than one seen.
    #[error(
        "refused system-keyd's list of system key versions: it names version {listed} active, older than version \
         {seen} that kms-api has seen active"
    )]
    RolledBack {
        /// The highest active version seen.
        seen: u32,
        /// The active version listed.
        listed: u32,
    },
    /// The manifest does not open with the versions listed.
    #[error(
        "refused system-keyd's list of system key versions: kms-api's manifest of the versions it has seen does \
         not open with them (its version is missing)"
    )]
    ManifestSealed,
    #[error("kms-api's store: {0}")]
    Store(RecordError),
}

impl LoadError {
    /// A list refused as not matching kms-api's history (as opposed to a
    /// tier that is away).
    fn refused(&self) -> bool {
        matches!(self, LoadError::Dropped { .. } | LoadError::RolledBack { .. } | LoadError::ManifestSealed)
    }
}

/// Checks `listed` (the versions of a keyring built from system-keyd's
/// list, `active` its active one) against what kms-api has seen: the
/// versions it holds and its stored manifest. The answer is the manifest
/// to save when `listed` adds to it.
/// Versions retired (the manifest's `retired`) may be missing from
/// `listed`, which must not name them.
fn check_history(
    seen: Option<&SystemManifest>,
    held: &[u32],
    listed: &[u32],
    active: u32,
) -> Result<Option<SystemManifest>, LoadError> {
    let retired: Vec<u32> = seen.map(|m| m.retired.clone()).unwrap_or_default();
    let mut known: Vec<u32> = seen.map(|m| m.versions.clone()).unwrap_or_default();
    known.extend_from_slice(held);
    known.sort_unstable();
    known.dedup();
    let missing: Vec<u32> = known.iter().copied().filter(|v| !listed.contains(v) && !retired.contains(v)).collect();
    if !missing.is_empty() {
        return Err(LoadError::Dropped { missing });
    }
    let seen_active = seen.map_or(0, |m| m.active);
    if active < seen_active {
        return Err(LoadError::RolledBack { seen: seen_active, listed: active });
    }
    let mut versions = listed.to_vec();
    versions.extend_from_slice(&retired);
    versions.sort_unstable();
    versions.dedup();
    let next = SystemManifest { versions, active, retired };
    Ok((seen != Some(&next)).then_some(next))
}

pub(crate) struct Loader {
    pub(crate) recipient: RecipientKeypair,
    pub(crate) system: SystemKeyServiceClient<Channel>,
    pub(crate) root: RootKeyServiceClient<Channel>,
    pub(crate) keyring: SystemKeys,
    pub(crate) refresh: Duration,
    /// Where the manifest of seen versions is kept.
    pub(crate) records: Records<AnyStore>,
}

impl Loader {
    /// Has system-keyd drop the retired versions it still lists; the
    /// answer is those it still lists.
    async fn drop_retired(&self, listed: &[u32], retired: &[u32]) -> Vec<u32> {
        let mut left = Vec::new();
        for &version in listed.iter().filter(|v| retired.contains(v)) {
            match self.system.clone().retire_system_key(RetireSystemKeyRequest { version }).await {
                Ok(_) => tracing::info!(version, "system-keyd dropped retired system key version"),
                Err(e) => {
                    tracing::warn!(version, error = %e.message(), "system-keyd still holds a retired system key version");
                    left.push(version);
                }
            }
        }
        left
    }

    /// Fetches the wrapped versions and unwraps those not yet held; the
    /// answer is the retired versions system-keyd still lists.
    async fn load_once(&self) -> Result<Vec<u32>, LoadError> {
        let wrapped = self
            .system
            .clone()
            .get_wrapped_system_keys(GetWrappedSystemKeysRequest {})
            .await
            .map_err(LoadError::System)?
            .into_inner();
        let _changing = self.keyring.changing().await;
        let current = self.keyring.current().ok();
        let held: Vec<u32> = current.as_ref().map(|r| r.versions().collect()).unwrap_or_default();
        let retired: Vec<u32> = current.as_ref().map(|r| r.retired_versions().collect()).unwrap_or_default();
        let mut listed: Vec<u32> = wrapped.keys.iter().map(|k| k.version).collect();
        listed.sort_unstable();
        listed.dedup();
        let still_listed = self.drop_retired(&listed, &retired).await;
        listed.retain(|v| !retired.contains(v));
        // Refused before anything is unwrapped: every version held stays
        // listed, and the active one never goes back.
        if let Some(ring) = &current {
            let holding = SystemManifest { versions: held.clone(), active: ring.active_version(), retired };
            check_history(Some(&holding), &[], &listed, wrapped.active_version)?;
        }
        let active_unchanged = current.as_ref().is_some_and(|r| r.active_version() == wrapped.active_version);
        if active_unchanged && listed == held {
            return Ok(still_listed);
        }
        let mut keys = BTreeMap::new();
        for key in wrapped.keys.into_iter().filter(|k| listed.contains(&k.version)) {
            let version = key.version;
            if let Some(existing) = current.as_ref().and_then(|r| r.danger_key(version)) {
                let mut copy = *existing.danger_expose();
                if let Some(k) = skm_crypto::Secret32::from_slice_wiping(&mut copy) {
                    keys.insert(version, k);
                }
                continue;
            }
            let sealed = self
                .root
                .clone()
                .unwrap_system_key(UnwrapSystemKeyRequest {
                    key: Some(key),
                    recipient_public_key: self.recipient.public_key(),
                })
                .await
                .map_err(LoadError::Root)?
                .into_inner();
            let plain = self
                .recipient
                .open_system_key(version, &sealed.encapsulated_key, &sealed.sealed_key)
                .map_err(|_| LoadError::Open(version))?;
            keys.insert(version, plain);
        }
        let ring = SystemKeyring::new(wrapped.active_version, keys)?;
        let sealed = |e| match e {
            RecordError::Corrupt(_) => LoadError::ManifestSealed,
            e => LoadError::Store(e),
        };
        let manifest = self.records.system_manifest(&ring).await.map_err(sealed)?;
        let retired_keys = self.records.retired_audit_keys(&ring).await.map_err(sealed)?;
        // A version retired before this boot may still be listed (and was
        // unwrapped): the keyring drops it.
        let newly_retired: Vec<u32> = retired_keys.keys().copied().filter(|v| listed.contains(v)).collect();
        listed.retain(|v| !retired_keys.contains_key(v));
        let ring = ring.with_retired(retired_keys)?;
        if let Some(next) = check_history(manifest.as_ref(), &held, &listed, ring.active_version())? {
            self.records.save_system_manifest(&ring, &next).await.map_err(LoadError::Store)?;
        }
        tracing::info!(active = ring.active_version(), versions = ?ring.versions().collect::<Vec<_>>(),
            retired = ?ring.retired_versions().collect::<Vec<_>>(), "system keys loaded");
        let mut still_listed = still_listed;
        still_listed.extend(self.drop_retired(&newly_retired, &newly_retired).await);
        self.keyring.set(ring);
        Ok(still_listed)
    }

    /// Loads with backoff until it succeeds, flips health to SERVING, then
    /// refreshes periodically until shutdown.
    pub(crate) async fn run(self, shutdown: Shutdown) {
        let (refreshed, rx) = tokio::sync::watch::channel((0u64, Vec::new()));
        *self.keyring.inner.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rx);
        let publish = |left: Vec<u32>| refreshed.send_modify(|(n, l)| (*n, *l) = (*n + 1, left));
        let mut delay = Duration::from_millis(100);
        loop {
            match self.load_once().await {
                Ok(left) => {
                    publish(left);
                    break;
                }
                Err(e) if e.refused() => {
                    tracing::error!(error = %e, retry_in = ?delay, "system keys not loaded: not serving");
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "system keys not loaded yet"),
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::info!("system keys loaded; kms-api ready");
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(self.refresh) => {}
                _ = self.keyring.inner.refresh_now.notified() => {}
            }
            match self.load_once().await {
                Err(e) if e.refused() => {
                    tracing::error!(error = %e, "system key refresh refused; serving with the keys held");
                }
                Err(e) => tracing::debug!(error = %e, "system key refresh failed; serving with the keys held"),
                Ok(left) => publish(left),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(versions: &[u32], active: u32) -> SystemManifest {
        SystemManifest { versions: versions.to_vec(), active, retired: Vec::new() }
    }

    #[test]
    fn a_list_must_keep_every_version_seen_and_never_go_back() {
        // First load: nothing seen, the list becomes the manifest.
        assert_eq!(check_history(None, &[], &[1], 1).unwrap(), Some(manifest(&[1], 1)));
        // A rotation adds a version; the same list again changes nothing.
        let seen = manifest(&[1], 1);
        assert_eq!(check_history(Some(&seen), &[1], &[1, 2], 2).unwrap(), Some(manifest(&[1, 2], 2)));
        let seen = manifest(&[1, 2], 2);
        assert_eq!(check_history(Some(&seen), &[1, 2], &[1, 2], 2).unwrap(), None);
        // Dropping a version, by the manifest or by what is held, is refused.
        let e = check_history(Some(&seen), &[], &[2], 2).unwrap_err();
        assert!(matches!(&e, LoadError::Dropped { missing } if missing == &[1]), "{e}");
        assert!(e.to_string().contains("lacks version(s) [1]") && e.refused(), "{e}");
        let e = check_history(None, &[1, 2, 3], &[1, 3], 3).unwrap_err();
        assert!(matches!(&e, LoadError::Dropped { missing } if missing == &[2]), "{e}");
        // So is naming an older version active.
        let e = check_history(Some(&seen), &[1, 2], &[1, 2], 1).unwrap_err();
        assert!(matches!(e, LoadError::RolledBack { seen: 2, listed: 1 }), "{e}");
        // A retired version may be missing; it stays in the manifest.
        let seen = SystemManifest { versions: vec![1, 2, 3], active: 3, retired: vec![1] };
        assert_eq!(check_history(Some(&seen), &[2, 3], &[2, 3], 3).unwrap(), None);
        let e = check_history(Some(&seen), &[2, 3], &[3], 3).unwrap_err();
        assert!(matches!(&e, LoadError::Dropped { missing } if missing == &[2]), "{e}");
        let next = check_history(Some(&seen), &[2, 3], &[2, 3, 4], 4).unwrap().unwrap();
        assert_eq!(next, SystemManifest { versions: vec![1, 2, 3, 4], active: 4, retired: vec![1] });
    }
}
