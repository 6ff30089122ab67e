//! The background re-seal: after a system key rotation, every record in
//! kms-api's store is sealed again under the new active version, so that
//! the older versions can be retired (`skm system retire-version`).
//!
//! It scans the store in key order, a page at a time, at most
//! `reseal_records_per_sec` records a second, and replaces each record
//! still under an older version (or in record format 1) by
//! compare-and-swap: a concurrent write seals under the active version
//! itself and wins. Its cursor is saved after each page (`resealcursor`),
//! so a restart goes on where it stopped. A pass ends at the end of the
//! store; the job is done after a whole pass that found nothing to
//! re-seal, and starts again when the active version changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use skm_runtime::Shutdown;
use skm_store::Store;
use skm_store::etcd::Leadership;

use crate::records::{Records, ResealCursor};

/// Records per page: the most one step holds in memory.
const PAGE: usize = 100;

/// Where the re-seal stands, for `skm system status` and metrics.
#[derive(Debug, Default)]
pub struct Progress {
    target: AtomicU32,
    done: AtomicBool,
    scanned: AtomicU64,
    resealed: AtomicU64,
}

/// A copy of [`Progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressReport {
    /// The version records are re-sealed under (0: not started).
    pub target: u32,
    /// A whole pass found every record under `target`.
    pub done: bool,
    /// Records looked at since kms-api started.
    pub scanned: u64,
    /// Records re-sealed since kms-api started.
    pub resealed: u64,
}

impl Progress {
    /// A copy of the counters.
    pub fn report(&self) -> ProgressReport {
        ProgressReport {
            target: self.target.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            scanned: self.scanned.load(Ordering::Relaxed),
            resealed: self.resealed.load(Ordering::Relaxed),
        }
    }
}

/// The task: re-seals `records` at `per_sec` records a second until
/// shutdown, while `leader` says this replica runs it; the others only
/// report the stored cursor's progress.
pub(crate) async fn run<S: Store + Clone>(
    records: Records<S>,
    per_sec: u32,
    leader: Arc<Leadership>,
    shutdown: Shutdown,
) {
    let keys = records.system_keys().clone();
    let progress = keys.reseal();
    let page = PAGE.min(per_sec as usize).max(1);
    let mut cursor: Option<ResealCursor> = None;
    let mut loaded = false;
    // Re-seals (or lost races) seen in this pass; a pass resumed after a
    // restart counts as dirty, so done always follows a whole clean pass.
    let mut dirty = true;
    loop {
        let mut pause = Duration::from_secs(1);
        if let Ok(ring) = keys.current()
            && !leader.is_leader()
        {
            // Another replica re-seals: report what its cursor says, and
            // start from it when this one is elected.
            if let Ok(Some(c)) = records.reseal_cursor().await {
                progress.target.store(c.target, Ordering::Relaxed);
                progress.done.store(c.done && c.target == ring.active_version(), Ordering::Relaxed);
            }
            (loaded, dirty) = (false, true);
        } else if let Ok(ring) = keys.current() {
            if !loaded {
                match records.reseal_cursor().await {
                    Ok(c) => {
                        cursor = c;
                        loaded = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the re-seal cursor"),
                }
            }
            let active = ring.active_version();
            let c = match cursor.take() {
                Some(c) if c.target == active => c,
                _ => {
                    dirty = true;
                    ResealCursor { target: active, done: false, next: Vec::new() }
                }
            };
            progress.target.store(active, Ordering::Relaxed);
            progress.done.store(c.done, Ordering::Relaxed);
            cursor = Some(if loaded && !c.done { step(&records, c, page, &mut dirty, progress).await } else { c });
            if let Some(c) = &cursor
                && !c.done
            {
                pause = Duration::from_secs_f64(page as f64 / f64::from(per_sec.max(1)));
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One page; the answer is the cursor after it (saved).
async fn step<S: Store + Clone>(
    records: &Records<S>,
    mut c: ResealCursor,
    page: usize,
    dirty: &mut bool,
    progress: &Progress,
) -> ResealCursor {
    match records.reseal_page(&c.next, page).await {
        Ok(done) => {
            progress.scanned.fetch_add(done.scanned, Ordering::Relaxed);
            progress.resealed.fetch_add(done.resealed, Ordering::Relaxed);
            *dirty |= done.resealed + done.raced > 0;
            match done.next {
                Some(next) => c.next = next,
                None if *dirty => {
                    c.next = Vec::new();
                    *dirty = false;
                }
                None => {
                    c.next = Vec::new();
                    c.done = true;
                    progress.done.store(true, Ordering::Relaxed);
                    tracing::info!(version = c.target, "every record is sealed under the active system key version");
                }
            }
            if let Err(e) = records.save_reseal_cursor(&c).await {
                tracing::warn!(error = %e, "cannot save the re-seal cursor");
            }
        }
        Err(e) => tracing::warn!(error = %e, "re-sealing a page of records failed; retrying"),
    }
    c
}
