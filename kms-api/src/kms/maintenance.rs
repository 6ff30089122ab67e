//! kms-api's own work: automatic rotations, destruction of keys whose
//! deletion waiting period is over (crypto-shredding: the record with every
//! version's material is deleted), persisting last-use times, and
//! forgetting request ids past their window. Each
//! rotation and destruction is an operation of the core like any other,
//! audited before and after under [`super::MAINTENANCE_PRINCIPAL`].

use std::sync::Arc;
use std::time::Duration;

use skm_crypto::Id;
use skm_runtime::Shutdown;
use skm_store::Store;
use skm_store::etcd::Leadership;

use super::caller::Caller;
use super::lifecycle::{add_version, check_version_cap, generate, next_rotation};
use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError};
use crate::model::{Key, KeyState};
use crate::records::{DueKind, RecordError};

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys rotated.
    pub rotated: usize,
    /// Keys destroyed.
    pub destroyed: usize,
    /// Automatic rotations refused (a key at its version cap, or no longer
    /// due when read again).
    pub refused: usize,
    /// Request ids forgotten ([`super::request_ids::WINDOW_SECS`] old).
    pub forgotten_requests: usize,
}

/// Rotate a key whose automatic rotation is due (a disabled key only has
/// its next rotation moved on). Returns whether a version was added. A key
/// that has `max_key_versions` versions has its next rotation moved on a
/// period too, and the operation fails with FAILED_PRECONDITION naming the
/// cap: audited, logged, and tried again only a period later.
#[derive(Debug)]
pub struct AutoRotateKey {
    /// The key.
    pub key_id: Id,
    /// The time the pass runs at.
    pub now: i64,
}

/// Destroy a key whose deletion waiting period is over.
#[derive(Debug)]
pub struct DestroyKey {
    /// The key.
    pub key_id: Id,
    /// The time the pass runs at.
    pub now: i64,
}

fn rotation_due(key: &Key, now: i64) -> bool {
    key.rotation_period_days > 0 && key.next_rotation_at > 0 && key.next_rotation_at <= now
}

fn deletion_due(key: &Key, now: i64) -> bool {
    matches!(key.state, KeyState::PendingDeletion { deletion_at } if deletion_at <= now)
}

impl Operation for AutoRotateKey {
    const NAME: &'static str = "AutoRotateKey";
    const EFFECT: Effect = Effect::Change;
    type Output = bool;

    fn target(&self, trail: &mut Trail<'_>) {
        trail.named_key(&self.key_id.to_string());
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<bool, KmsError> {
        let kind = kms.key(&self.key_id).await?.kind();
        let now = self.now;
        let cap = kms.max_key_versions;
        for _ in 0..16 {
            let fresh = generate(kind).await?;
            let mut rotated = false;
            let mut capped = None;
            let attempt = kms
                .mutate_key_once(&self.key_id, |key, _| {
                    if !rotation_due(key, now) {
                        return Err(KmsError::FailedPrecondition(format!("key {} is no longer due", key.id)));
                    }
                    if key.state == KeyState::Enabled {
                        match check_version_cap(key, cap) {
                            Ok(()) => {
                                add_version(key, fresh, now, cap)?;
                                rotated = true;
                            }
                            Err(refused) => capped = Some(refused),
                        }
                    }
                    key.next_rotation_at = next_rotation(now, key.rotation_period_days);
                    Ok(())
                })
                .await?;
            if let Some(key) = attempt {
                trail.touch_key(&key);
                if let Some(refused) = capped {
                    tracing::warn!(key_id = %self.key_id, next_rotation_at = key.next_rotation_at, error = %refused, "automatic rotation skipped");
                    return Err(refused);
                }
                if rotated {
                    trail.used_version(key.material.newest_version());
                    tracing::info!(key_id = %self.key_id, "key rotated automatically");
                }
                return Ok(rotated);
            }
        }
        Err(KmsError::Aborted)
    }
}

impl Operation for DestroyKey {
    const NAME: &'static str = "DestroyKey";
    const EFFECT: Effect = Effect::Change;
    type Output = ();

    fn target(&self, trail: &mut Trail<'_>) {
        trail.named_key(&self.key_id.to_string());
    }

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<(), KmsError> {
        let (key, stored) = kms.records.key(&self.key_id).await?.ok_or_else(|| super::not_found(&self.key_id))?;
        trail.touch_key(&key);
        if !deletion_due(&key, self.now) {
            return Err(KmsError::FailedPrecondition(format!("key {} is no longer due for deletion", key.id)));
        }
        match kms.records.destroy_key(&key, &stored).await {
            Ok(()) => {}
            Err(RecordError::Conflict(_)) => return Err(KmsError::Aborted),
            Err(e) => return Err(e.into()),
        }
        kms.cache.invalidate_key(&self.key_id);
        tracing::info!(key_id = %self.key_id, "key destroyed");
        Ok(())
    }
}

impl<S: Store + Clone> Kms<S> {
    /// One pass over everything due up to now. Each key that is still due
    /// when it is read is rotated or destroyed through [`Kms::execute`].
    pub async fn maintain(&self) -> Result<MaintenanceReport, KmsError> {
        let now = self.now();
        let caller = Caller::maintenance();
        let mut report = MaintenanceReport::default();
        for due in self.records.due(now).await? {
            let key = match self.records.key(&due.key_id).await? {
                Some((key, _)) => key,
                None => continue,
            };
            match due.kind {
                DueKind::Rotate if rotation_due(&key, now) => {
                    match self.execute(&caller, AutoRotateKey { key_id: due.key_id, now }).await {
                        Ok(rotated) => report.rotated += usize::from(rotated),
                        // At its version cap: audited and moved on a period;
                        // the other keys due are still served.
                        Err(KmsError::FailedPrecondition(_)) => report.refused += 1,
                        Err(e) => return Err(e),
                    }
                }
                DueKind::Destroy if deletion_due(&key, now) => {
                    self.execute(&caller, DestroyKey { key_id: due.key_id, now }).await?;
                    report.destroyed += 1;
                }
                // A stale index entry (the key changed since): nothing to do.
                _ => {}
            }
        }
        self.records.save_last_used(&self.cached_last_uses()).await?;
        report.forgotten_requests = self
            .records
            .forget_requests(now.saturating_sub(super::request_ids::WINDOW_SECS), super::request_ids::FORGET_PER_PASS)
            .await?;
        Ok(report)
    }

    /// Runs [`Kms::maintain`] every `interval` until shutdown, on the
    /// passes when `leader` says this replica is the one elected to.
    pub async fn maintenance_loop(self: Arc<Self>, interval: Duration, leader: Arc<Leadership>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if !leader.is_leader() {
                continue;
            }
            match self.maintain().await {
                Ok(r) if r != MaintenanceReport::default() => {
                    tracing::info!(
                        rotated = r.rotated,
                        destroyed = r.destroyed,
                        refused = r.refused,
                        forgotten_requests = r.forgotten_requests,
                        "maintenance pass"
                    );
                }
                Ok(_) => {}
                Err(KmsError::NotReady(_)) => {}
                Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
            }
        }
    }
}
