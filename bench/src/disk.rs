//! What one `fdatasync` costs on the disk the stack writes its audit log
//! to, measured in the same run: the yardstick of the durable audit
//! (issue 18: "p50 at 1 in flight ≤ the no-op p50 + one measured
//! fdatasync").

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// Writes of each kind timed.
const SAMPLES: usize = 400;
/// The size of one write: about one audit entry.
const WRITE: usize = 512;
/// The pre-written file the overwrites cycle through (as the audit
/// journal's ring does).
const RING: usize = 1 << 20;

/// Median cost of a small write followed by `fdatasync`, µs.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DiskSync {
    /// Overwriting a pre-written, synced file (no metadata to sync): the
    /// audit journal's case.
    pub(crate) overwrite_p50_us: f64,
    /// Appending to a file (its size changes, so the sync writes
    /// metadata too): the audit log's case without the journal.
    pub(crate) append_p50_us: f64,
    /// Writes timed per kind.
    pub(crate) samples: usize,
}

impl DiskSync {
    /// One line for the report.
    pub(crate) fn line(&self) -> String {
        format!(
            "write {WRITE} B + fdatasync, p50 of {}: {:.0} µs into a pre-written file, {:.0} µs appending \
             (the stack's filesystem, measured before the runs)",
            self.samples, self.overwrite_p50_us, self.append_p50_us
        )
    }
}

/// Measures in a fresh directory under `parent`, removed afterwards.
pub(crate) fn measure(parent: &Path) -> std::io::Result<DiskSync> {
    let dir = tempfile::Builder::new().prefix("skm-bench-disk-").tempdir_in(parent)?;
    let block = [0x5au8; WRITE];

    let ring = OpenOptions::new().create_new(true).read(true).write(true).open(dir.path().join("ring"))?;
    ring.write_all_at(&vec![0u8; RING], 0)?;
    ring.sync_all()?;
    let overwrite = median(|i| ring.write_all_at(&block, ((i * WRITE) % RING) as u64).and_then(|()| ring.sync_data()))?;

    let log = OpenOptions::new().create_new(true).append(true).open(dir.path().join("log"))?;
    let append = median(|_| std::io::Write::write_all(&mut &log, &block).and_then(|()| log.sync_data()))?;
    File::open(dir.path())?.sync_all()?;

    Ok(DiskSync { overwrite_p50_us: overwrite, append_p50_us: append, samples: SAMPLES })
}

/// The median time of `SAMPLES` calls of `op`, µs.
fn median(mut op: impl FnMut(usize) -> std::io::Result<()>) -> std::io::Result<f64> {
    let mut us = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let start = Instant::now();
        op(i)?;
        us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    Ok(us[SAMPLES / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_both_kinds_and_leaves_nothing_behind() {
        let parent = tempfile::tempdir().unwrap();
        let d = measure(parent.path()).unwrap();
        assert!(d.overwrite_p50_us > 0.0 && d.append_p50_us > 0.0, "{d:?}");
        assert_eq!(d.samples, SAMPLES);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
        assert!(d.line().contains("fdatasync"));
    }
}
