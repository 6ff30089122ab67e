//! `--pin-cores`: the load generator on some cores and every server
//! process (SKM's tiers and etcd, or a peer's server) on the others, so that
//! a figure shows what the servers do on cores of their own instead of
//! while taking turns with their client on the same cores.
//!
//! It is `sched_setaffinity` on every thread: this process's before its
//! runtime starts (the runtime's threads inherit it), the servers' once they
//! are up, which covers every process this one started and their children
//! (etcd members included); a thread a server starts later inherits the
//! mask from the pinned thread that starts it.

use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use serde::Serialize;

use crate::process_tree;

/// Which cores the load generator and the servers run on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct CoreSplit {
    /// The load generator's cores.
    pub(crate) client: Vec<usize>,
    /// Every server process's cores.
    pub(crate) servers: Vec<usize>,
}

/// How many server processes and threads a pinning pass found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pinned {
    /// Processes (this one's descendants).
    pub(crate) processes: usize,
    /// Their threads.
    pub(crate) threads: usize,
}

/// The cores this process may run on, ascending.
pub(crate) fn allowed_cores() -> Vec<usize> {
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `1`, `2,3`, `0-3`, `0,2-3` → the core numbers.
fn core_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim) {
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("{part:?} is not a core number or range"));
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(format!("{part:?}: an empty range"));
                }
                cores.extend(lo..=hi);
            }
            None => cores.push(number(part)?),
        }
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

/// Parses `--pin-cores`: `auto` (the upper half of the allowed cores for
/// the load generator, at least one, the rest for the servers; on 2 cores:
/// client on 1, servers on 0) or `CLIENT:SERVERS` with core lists such as
/// `1:0` or `2-3:0,1`. `allowed` are the cores this process may use.
pub(crate) fn parse(spec: &str, allowed: &[usize]) -> Result<CoreSplit, String> {
    if allowed.len() < 2 {
        return Err(format!(
            "--pin-cores: skm-bench may use {} core(s) here ({allowed:?}); pinning needs at least 2, one for the \
             load generator and one for the servers",
            allowed.len()
        ));
    }
    let split = if spec == "auto" {
        let at = allowed.len() - allowed.len() / 2;
        CoreSplit { client: allowed[at..].to_vec(), servers: allowed[..at].to_vec() }
    } else {
        let (client, servers) = spec.split_once(':').ok_or_else(|| {
            format!("--pin-cores {spec:?}: auto, or CLIENT:SERVERS core lists such as 1:0 or 2-3:0,1")
        })?;
        let split = CoreSplit {
            client: core_list(client).map_err(|e| format!("--pin-cores {spec:?}: {e}"))?,
            servers: core_list(servers).map_err(|e| format!("--pin-cores {spec:?}: {e}"))?,
        };
        if let Some(c) = split.client.iter().find(|c| split.servers.contains(c)) {
            return Err(format!("--pin-cores {spec:?}: core {c} is on both sides"));
        }
        if let Some(c) = split.client.iter().chain(&split.servers).find(|c| !allowed.contains(c)) {
            return Err(format!("--pin-cores {spec:?}: core {c} is not one skm-bench may use ({allowed:?})"));
        }
        split
    };
    if split.client.is_empty() || split.servers.is_empty() {
        return Err(format!("--pin-cores {spec:?}: each side needs at least one core"));
    }
    Ok(split)
}

fn cpu_set(cores: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cores {
        set.set(c);
    }
    set
}

fn same(set: &CpuSet, cores: &[usize]) -> bool {
    (0..CpuSet::MAX_CPU).all(|c| set.is_set(c) == cores.contains(&c))
}

/// Pins every thread of process `pid` to `cores`, again until a pass finds
/// them all pinned (a thread started meanwhile by a thread not yet pinned
/// is caught by the next pass); how many threads it has.
fn pin_process(pid: u32, cores: &[usize]) -> std::io::Result<usize> {
    let set = cpu_set(cores);
    for _ in 0..10 {
        let mut changed = false;
        let mut threads = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()).and_then(Pid::from_raw)
            else {
                continue;
            };
            threads += 1;
            // A thread that exited since the listing needs no pinning.
            match sched_getaffinity(Some(tid)) {
                Ok(now) if same(&now, cores) => {}
                Ok(_) => {
                    changed = true;
                    let _ = sched_setaffinity(Some(tid), &set);
                }
                Err(_) => {}
            }
        }
        if !changed {
            return Ok(threads);
        }
    }
    Err(std::io::Error::other(format!("process {pid} kept starting unpinned threads")))
}

impl CoreSplit {
    /// Pins every thread of this process to the client cores; called
    /// before the runtime starts its threads, which then inherit it.
    pub(crate) fn pin_this_process(&self) -> std::io::Result<()> {
        pin_process(std::process::id(), &self.client).map(drop)
    }

    /// Pins every process this one started (and theirs) to the server
    /// cores: call it once a stack or a peer is up.
    pub(crate) fn pin_servers(&self) -> std::io::Result<Pinned> {
        let mut pinned = Pinned::default();
        for pid in process_tree::descendants() {
            match pin_process(pid, &self.servers) {
                Ok(threads) => {
                    pinned.processes += 1;
                    pinned.threads += threads;
                }
                // One that exited meanwhile (a short-lived helper) is no server.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pinned)
    }

    /// `client 1, servers 0`.
    pub(crate) fn line(&self) -> String {
        let list = |cores: &[usize]| cores.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        format!("load generator on core(s) {}, servers on core(s) {}", list(&self.client), list(&self.servers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_gives_the_upper_half_to_the_client() {
        let split = |allowed: &[usize]| parse("auto", allowed).map(|s| (s.client, s.servers));
        assert_eq!(split(&[0, 1]), Ok((vec![1], vec![0])));
        assert_eq!(split(&[0, 1, 2]), Ok((vec![2], vec![0, 1])));
        assert_eq!(split(&[0, 1, 2, 3]), Ok((vec![2, 3], vec![0, 1])));
        assert_eq!(split(&[4, 6]), Ok((vec![6], vec![4])));
        let one = parse("auto", &[0]).unwrap_err();
        assert!(one.contains("at least 2"), "{one}");
    }

    #[test]
    fn explicit_lists_are_checked() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(parse("2-3:0,1", &allowed), Ok(CoreSplit { client: vec![2, 3], servers: vec![0, 1] }));
        assert_eq!(parse("1:0", &allowed), Ok(CoreSplit { client: vec![1], servers: vec![0] }));
        for bad in ["1", "1:1", "1:7", "3-1:0", "x:0", "1:"] {
            assert!(parse(bad, &allowed).is_err(), "{bad} was accepted");
        }
    }
}
