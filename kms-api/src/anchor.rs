//! The audit log's anchor: the seq and MAC of its last entry, kept outside
//! the log (sealed in the store), so that cutting entries off its end, or
//! replacing it with another log, is found at the next start.
//!
//! **Written after each batch, asynchronously.** [`run`] waits for the log's
//! tail to move and then seals and stores it; the writer never waits for the
//! store, so a request's latency is that of the audit fsync alone, and a
//! burst of batches costs one store write per write the store can finish
//! (later tails replace earlier ones while a write runs). The bound this
//! gives: entries acknowledged after the last anchor write *completed* can
//! be cut off the log without being noticed, i.e. at most the batches
//! committed during one anchor write (one batch, or a few under load). An
//! anchor written synchronously at each group commit would close that
//! window at the cost of a store flush on every batch's path
//! (SECURITY.md, "Audit log").
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
        }
        // At shutdown the last tail is anchored once more (above), so that
        // a clean stop leaves no window at all.
        if stopping {
            return;
        }
    }
}
