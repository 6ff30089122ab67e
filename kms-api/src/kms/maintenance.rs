//! The background work of kms-api: automatic rotations, destruction of keys
//! whose deletion waiting period is over, and persisting last-use times.

use std::sync::Arc;
use std::time::Duration;

use skm_runtime::Shutdown;

use super::{Kms, KmsError};
use crate::records::DueKind;

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys rotated.
    pub rotated: usize,
    /// Keys destroyed.
    pub destroyed: usize,
}

impl Kms {
    /// One pass over everything due up to now.
    pub async fn maintain(&self) -> Result<MaintenanceReport, KmsError> {
        let now = self.now();
        let mut report = MaintenanceReport::default();
        for due in self.records.due(now).await? {
            match due.kind {
                DueKind::Rotate => {
                    if self.rotate_if_due(&due.key_id, now).await? {
                        report.rotated += 1;
                    }
                }
                DueKind::Destroy => {
                    if self.destroy_if_due(&due.key_id, now).await? {
                        report.destroyed += 1;
                    }
                }
            }
        }
        self.records.save_last_used(&self.cached_last_uses()).await?;
        Ok(report)
    }

    /// Runs [`Kms::maintain`] every `interval` until shutdown.
    pub async fn maintenance_loop(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            match self.maintain().await {
                Ok(r) if r != MaintenanceReport::default() => {
                    tracing::info!(rotated = r.rotated, destroyed = r.destroyed, "maintenance pass");
                }
                Ok(_) => {}
                Err(KmsError::NotReady(_)) => {}
                Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
            }
        }
    }
}
