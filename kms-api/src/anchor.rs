//! The audit log's anchor: the seq and MAC of its last entry, kept outside
//! the log (sealed in the store), so that cutting entries off its end, or
//! replacing it with another log, is found at the next start.
//!
//! **Written behind the log, asynchronously, at most once an interval.**
//! [`run`] waits for the log's tail to move and then seals and stores it,
//! then waits out `audit_anchor_interval_ms` (default 100) from the start
//! of that write before the next; the writer never waits for the store, so
//! a request's latency is that of the audit sync alone, and the store (and,
//! on etcd, every member's disk and every replica's watch) sees at most ten
//! anchor writes a second rather than one per batch. The bound this gives:
//! entries acknowledged after the last anchor write *completed* (up to one
//! interval and one write of them) can be cut off the log and its journal
//! without being noticed. An anchor written synchronously at each group
//! commit would close that window at the cost of a store flush on every
//! batch's path (SECURITY.md, "Audit log"). A clean stop anchors the last
//! entry at once.
//!
//! **Compared at start.** Nothing is written to the log until the anchor
//! has been compared ([`Anchoring::Pending`]); that needs the system key,
//! so it happens once the keys are loaded. A log that ends before the
//! anchor's seq, or holds a different MAC at that seq, is
//! [`Anchoring::Lost`]: kms-api is NOT_SERVING, every request is refused,
//! and one line in its log names the anchor's seq and the log's last seq,
//! until an operator runs `skm audit acknowledge-loss`
//! ([`crate::kms::AcknowledgeAuditLoss`]), whose intent is the first entry
//! after the gap and names it.

use std::sync::Arc;
use std::time::Duration;

use skm_runtime::Shutdown;
use skm_store::Store;

use crate::audit::{Anchoring, AuditLog, Lost};
use crate::records::Records;
use crate::system_keys::SystemKeys;

/// How the log compares with an anchor.
pub(crate) async fn compare(audit: &AuditLog, anchor: Option<(u64, [u8; 32])>) -> Anchoring {
    let Some((anchor_seq, anchor_mac)) = anchor else {
        return Anchoring::Checked;
    };
    let last_seq = audit.tail().borrow().0;
    if last_seq < anchor_seq {
        tracing::error!(
            anchor_seq,
            log_last_seq = last_seq,
            "the audit log is shorter than its anchor (anchor seq {anchor_seq}, log's last seq {last_seq}): entries {} to {anchor_seq} are missing; refusing to serve until an operator acknowledges the loss (skm audit acknowledge-loss)",
            last_seq + 1
        );
        return Anchoring::Lost(Lost { first_seq: last_seq + 1, last_seq: anchor_seq });
    }
    match audit.mac_at(anchor_seq).await {
        Ok(Some(mac)) if mac == anchor_mac => Anchoring::Checked,
        found => {
            if let Err(e) = &found {
                tracing::error!(error = %e, "the audit log could not be read to compare it with its anchor");
            }
            tracing::error!(
                anchor_seq,
                log_last_seq = last_seq,
                "the audit log does not hold its anchored entry (anchor seq {anchor_seq}, log's last seq {last_seq}): it was replaced or edited; entries 1 to {anchor_seq} are not vouched for; refusing to serve until an operator acknowledges the loss (skm audit acknowledge-loss)"
            );
            Anchoring::Lost(Lost { first_seq: 1, last_seq: anchor_seq })
        }
    }
}

/// Compares the log with its anchor once the system keys are loaded, then
/// keeps the anchor at the log's tail until shutdown.
pub(crate) async fn run<S: Store + Clone>(
    audit: Arc<AuditLog>,
    records: Records<S>,
    keyring: SystemKeys,
    interval: Duration,
    shutdown: Shutdown,
) {
    let retry = Duration::from_millis(250);
    // The anchor is sealed: wait for the keys, then read it.
    let anchor = loop {
        if keyring.current().is_ok() {
            match records.audit_anchor().await {
                Ok(anchor) => break anchor,
                Err(e) => tracing::error!(error = %e, "the audit anchor could not be read; retrying"),
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    };
    let state = compare(&audit, anchor).await;
    if state == Anchoring::Checked {
        tracing::info!(
            anchor_seq = anchor.map_or(0, |a| a.0),
            log_last_seq = audit.tail().borrow().0,
            "audit log matches its anchor"
        );
    }
    audit.set_anchoring(state);
    let mut stored = anchor.map_or(0, |a| a.0);
    let mut tail = audit.tail();
    tail.mark_changed();
    loop {
        let stopping = tokio::select! {
            _ = shutdown.wait() => true,
            changed = tail.changed() => changed.is_err(),
        };
        let (seq, mac) = *tail.borrow_and_update();
        // While a loss is pending the anchor stays where it was.
        if audit.anchoring() == Anchoring::Checked && seq > stored {
            let started = tokio::time::Instant::now();
            match records.save_audit_anchor(seq, &mac).await {
                Ok(()) => stored = seq,
                Err(e) => {
                    tracing::error!(error = %e, seq, "the audit anchor could not be saved; retrying");
                    tail.mark_changed();
                    if !stopping {
                        tokio::time::sleep(retry).await;
                    }
                }
            }
            // At most one write per interval; a stop anchors at once.
            if !stopping && !interval.is_zero() {
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = tokio::time::sleep_until(started + interval) => {}
                }
            }
        }
        // At shutdown the last tail is anchored once more (above), so that
        // a clean stop leaves no window at all.
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use skm_crypto::Secret32;
    use skm_crypto::record::SystemKeyring;
    use skm_store::MemoryStore;

    use super::*;
    use crate::audit::{Caller, Event, Outcome};

    fn event() -> Event {
        Event {
            time: 1_700_000_000,
            operation: "Encrypt".into(),
            front_end: Some("grpc".into()),
            keystore_id: None,
            key_id: None,
            key_version: None,
            caller: Caller::default(),
            result: Outcome::Allowed,
            intent_seq: None,
            lost: None,
        }
    }

    /// With an interval, the anchor follows the log at most once per
    /// interval: entries appended after a write wait for the next one (or
    /// for a stop, which anchors the last entry at once).
    #[tokio::test]
    async fn the_anchor_is_written_at_most_once_an_interval_and_at_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = [7u8; 32];
        let ring = SystemKeyring::new(1, BTreeMap::from([(1, Secret32::from_array_wiping(&mut raw))])).unwrap();
        let keys = SystemKeys::loaded(ring);
        let audit = Arc::new(AuditLog::open(dir.path(), keys.clone()).await.unwrap());
        let records = Records::new(MemoryStore::new(), keys.clone());
        let (stop, shutdown) = skm_runtime::shutdown::channel();
        let running = tokio::spawn(run(audit.clone(), records.clone(), keys, Duration::from_secs(3600), shutdown));
        audit.append(event()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while records.audit_anchor().await.unwrap().map(|a| a.0) != Some(1) {
            assert!(tokio::time::Instant::now() < deadline, "the first entry is anchored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..5 {
            audit.append(event()).await.unwrap();
        }
        // Within the interval the anchor stays where it was...
        let watched = tokio::time::Instant::now() + Duration::from_millis(300);
        while tokio::time::Instant::now() < watched {
            assert_eq!(records.audit_anchor().await.unwrap().map(|a| a.0), Some(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...and a stop anchors the last entry before it returns.
        stop.trigger();
        running.await.unwrap();
        let (seq, mac) = records.audit_anchor().await.unwrap().unwrap();
        assert_eq!((seq, mac), *audit.tail().borrow());
        assert_eq!(seq, 6);
    }
}
