//! The system keys in kms-api's memory ([`SystemKeys`], used on every call) and how they get there ([`Loader`]).
//!
//! At start kms-api makes a per-boot X25519 key pair, fetches every wrapped
//! system key version from system-keyd, and has root-keyd unwrap each one
//! sealed to that key pair (HPKE). Until that succeeds it is not ready and
//! retries with backoff, so the tiers may start in any order. Afterwards it
//! polls system-keyd for new versions (rotation); if the other tiers go
//! away it keeps serving with the keys it holds.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use skm_crypto::record::SystemKeyring;
use skm_crypto::transport::RecipientKeypair;
use skm_proto::root::v1::UnwrapSystemKeyRequest;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::GetWrappedSystemKeysRequest;
use skm_proto::system::v1::system_key_service_client::SystemKeyServiceClient;
use skm_runtime::Shutdown;
use tonic::transport::Channel;

/// The system keys kms-api holds in memory, once loaded: what every call seals and opens records with. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SystemKeys {
    inner: Arc<RwLock<Option<Arc<SystemKeyring>>>>,
}

/// The system keys are not loaded yet.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("kms-api is not ready: the system keys are not loaded yet")]
pub struct NotReady;

impl SystemKeys {
    /// The current keyring.
    pub fn current(&self) -> Result<Arc<SystemKeyring>, NotReady> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone().ok_or(NotReady)
    }

    /// Holding `ring` from the start (unit tests of the core, which run
    /// without the other tiers).
    pub fn loaded(ring: SystemKeyring) -> Self {
        let keys = Self::default();
        keys.set(ring);
        keys
    }

    fn set(&self, ring: SystemKeyring) {
        *self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(ring));
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
}

pub(crate) struct Loader {
    pub(crate) recipient: RecipientKeypair,
    pub(crate) system: SystemKeyServiceClient<Channel>,
    pub(crate) root: RootKeyServiceClient<Channel>,
    pub(crate) keyring: SystemKeys,
    pub(crate) refresh: Duration,
}

impl Loader {
    /// Fetches the wrapped versions and unwraps those not yet held.
    async fn load_once(&self) -> Result<bool, LoadError> {
        let wrapped = self
            .system
            .clone()
            .get_wrapped_system_keys(GetWrappedSystemKeysRequest {})
            .await
            .map_err(LoadError::System)?
            .into_inner();
        let current = self.keyring.current().ok();
        let held: Vec<u32> = current.as_ref().map(|r| r.versions().collect()).unwrap_or_default();
        let active_unchanged = current.as_ref().is_some_and(|r| r.active_version() == wrapped.active_version);
        if active_unchanged && wrapped.keys.iter().all(|k| held.contains(&k.version)) {
            return Ok(false);
        }
        let mut keys = BTreeMap::new();
        for key in wrapped.keys {
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
        tracing::info!(active = ring.active_version(), versions = ?ring.versions().collect::<Vec<_>>(), "system keys loaded");
        self.keyring.set(ring);
        Ok(true)
    }

    /// Loads with backoff until it succeeds, flips health to SERVING, then
    /// refreshes periodically until shutdown.
    pub(crate) async fn run(self, shutdown: Shutdown) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.load_once().await {
                Ok(_) => break,
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
            }
            if let Err(e) = self.load_once().await {
                tracing::debug!(error = %e, "system key refresh failed; serving with the keys held");
            }
        }
    }
}
