//! Several replicas on one shared store (etcd): what one replica changes
//! is in force on every other within the staleness bound.
//!
//! Each replica follows the store's watch ([`Kms::follow_store`]): a
//! changed keystore or key drops that entry from its cache, a revoked
//! operator certificate joins its revoked list, and a restarted watch
//! (after a break, when changes may have been missed) drops the whole
//! cache and reads the revoked list again. The cache answers only while
//! the watch has vouched, within `cache_max_staleness_ms`, for every change
//! committed up to then; past it every lookup reads the store, and an
//! operator's call first reads the revoked list again, so a replica whose
//! watch is broken serves what the store holds (or UNAVAILABLE when the
//! store is unreachable), never what it remembers. That trades speed for
//! correctness while the watch is down, instead of refusing every call:
//! a linearizable read is exactly as current as a write on another replica.

use std::sync::Arc;
use std::time::Duration;

use skm_runtime::Shutdown;
use skm_store::{Store, WatchEvent};
use tokio::sync::mpsc;

use super::{Kms, KmsError};
use crate::records::Changed;

impl<S: Store + Clone> Kms<S> {
    /// The store is shared with other replicas: the cache answers only
    /// while [`Kms::follow_store`] has vouched for it within `bound`.
    pub fn with_shared_store(mut self, bound: Duration) -> Self {
        self.cache.share(bound);
        self
    }

    /// Applies the store's watch to this replica's memory until shutdown
    /// or the end of the watch.
    pub async fn follow_store(self: Arc<Self>, mut changes: mpsc::Receiver<WatchEvent>, shutdown: Shutdown) {
        // The revoked list is read again after each restart; the cache is
        // vouched for only once it was.
        let mut revoked_read = false;
        loop {
            let event = tokio::select! {
                () = shutdown.wait() => return,
                event = changes.recv() => event,
            };
            let Some(event) = event else { return };
            match event {
                WatchEvent::Restarted { as_of } => {
                    self.cache.clear();
                    tracing::info!("store watch started; cache emptied");
                    revoked_read = self.reload_revoked().await.is_ok();
                    if revoked_read {
                        self.cache.seen_up_to(as_of);
                    }
                }
                WatchEvent::Changed(key) => match Changed::of(&key) {
                    Some(Changed::Keystore(id)) => self.cache.invalidate_keystore(&id),
                    Some(Changed::Key(id)) => self.cache.invalidate_key(&id),
                    Some(Changed::OperatorRevoked(sha256)) => self.revoked.revoke(&sha256),
                    None => {}
                },
                WatchEvent::UpToDate { as_of } => {
                    if !revoked_read {
                        revoked_read = self.reload_revoked().await.is_ok();
                    }
                    if revoked_read {
                        self.cache.seen_up_to(as_of);
                    }
                }
            }
        }
    }

    /// Reads the revoked operator certificates from the store (revocation
    /// is never undone, so what is held stays).
    pub(super) async fn reload_revoked(&self) -> Result<(), KmsError> {
        match self.records.revoked_operators().await {
            Ok(list) => {
                for sha256 in list {
                    self.revoked.revoke(&sha256);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the revoked operator certificates could not be read");
                Err(e.into())
            }
        }
    }

    /// Whether this replica's memory is vouched for by the store's watch
    /// now (always, on a store no one else writes).
    pub fn cache_fresh(&self) -> bool {
        self.cache.fresh()
    }
}
