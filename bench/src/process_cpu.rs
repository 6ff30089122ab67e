//! CPU time of the processes on both sides of a measurement, read from
//! /proc at the start and at the end of its measured window, so that every
//! row says what a call cost the servers (kms-api, the other tiers, etcd,
//! or a peer's server process) and the load generator, and not only how
//! many calls went through: a client that is the bottleneck, or a server
//! that burns more CPU per call than another, shows here.
//!
//! A thread's CPU time is the first field of
//! `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds; a process's is the
//! sum over its threads. `/proc/<pid>/schedstat` alone would not do: it is
//! the main thread's only. A thread that exits takes its figure with it, so
//! for a window in which a thread of the process exited (or a thread id was
//! reused) the process falls back to utime + stime of `/proc/<pid>/stat`,
//! which counts every thread the process ever had, but in clock ticks
//! (10 ms at the usual 100 Hz).

use std::collections::HashMap;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Whose CPU time it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// kms-api (every replica).
    KmsApi,
    /// root-keyd and system-keyd.
    Keyd,
    /// The etcd members kms-api keeps its records in.
    Store,
    /// A peer's server process.
    Peer,
}

/// The server processes a measurement watches (the load generator, this
/// process, is always watched).
#[derive(Clone, Debug, Default)]
pub(crate) struct Watched {
    processes: Vec<(Side, u32)>,
}

/// One process's CPU time at one instant.
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    /// utime + stime of /proc/<pid>/stat, clock ticks.
    ticks: u64,
    /// Each thread's schedstat CPU time, nanoseconds.
    threads: HashMap<u32, u64>,
}

/// CPU time used in one window, nanoseconds per side (`None`: a process
/// of that side could not be read at both ends).
#[derive(Clone, Debug, Default)]
pub(crate) struct WindowCpu {
    kms_api: Option<u64>,
    keyd: Option<u64>,
    store: Option<u64>,
    peer: Option<u64>,
    client: Option<u64>,
    /// The sides that were watched.
    watched: Vec<Side>,
}

/// CPU µs per successful call, as the report rows carry them.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct CpuPerCall {
    /// Every server process of the system: SKM's kms-api replicas,
    /// root-keyd, system-keyd (and etcd); a peer's server process.
    pub(crate) server_cpu_us_per_call: Option<f64>,
    /// kms-api alone (all replicas), SKM rows only.
    pub(crate) kms_api_cpu_us_per_call: Option<f64>,
    /// root-keyd + system-keyd, SKM rows only.
    pub(crate) keyd_cpu_us_per_call: Option<f64>,
    /// The etcd members, SKM rows on etcd only.
    pub(crate) store_cpu_us_per_call: Option<f64>,
    /// The load generator (this process: every thread).
    pub(crate) client_cpu_us_per_call: Option<f64>,
}

impl Watched {
    /// Watches `pids` as `side` too.
    pub(crate) fn with(mut self, side: Side, pids: impl IntoIterator<Item = u32>) -> Self {
        self.processes.extend(pids.into_iter().map(|pid| (side, pid)));
        self
    }

    /// Reads every watched process and this one at `from` and at `to`; the
    /// task's answer is the CPU time each side used in between.
    pub(crate) fn window(&self, from: Instant, to: Instant) -> JoinHandle<WindowCpu> {
        let processes = self.processes.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(from).await;
            let start = read_all(&processes);
            tokio::time::sleep_until(to).await;
            let end = read_all(&processes);
            let tick = tick();
            let mut used = WindowCpu::default();
            for (side, _) in &processes {
                if !used.watched.contains(side) {
                    used.watched.push(*side);
                }
            }
            let mut sums: HashMap<Option<Side>, Option<u64>> = HashMap::new();
            for ((side, a), (_, b)) in start.iter().zip(&end) {
                let spent = match (a, b) {
                    (Some(a), Some(b)) => Some(between(a, b, tick)),
                    _ => None,
                };
                let sum = sums.entry(*side).or_insert(Some(0));
                *sum = sum.zip(spent).map(|(s, x)| s + x);
            }
            let side = |s: Option<Side>| sums.get(&s).copied().flatten();
            used.kms_api = side(Some(Side::KmsApi));
            used.keyd = side(Some(Side::Keyd));
            used.store = side(Some(Side::Store));
            used.peer = side(Some(Side::Peer));
            used.client = side(None);
            used
        })
    }
}

impl WindowCpu {
    /// µs per call over `calls` successful calls.
    pub(crate) fn per_call(&self, calls: u64) -> CpuPerCall {
        if calls == 0 {
            return CpuPerCall::default();
        }
        let us = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e3 / calls as f64);
        let watched = |side| self.watched.contains(&side);
        let mut server = Some(0u64);
        for (side, ns) in
            [(Side::KmsApi, self.kms_api), (Side::Keyd, self.keyd), (Side::Store, self.store), (Side::Peer, self.peer)]
        {
            if watched(side) {
                server = server.zip(ns).map(|(s, x)| s + x);
            }
        }
        CpuPerCall {
            server_cpu_us_per_call: if self.watched.is_empty() { None } else { us(server) },
            kms_api_cpu_us_per_call: if watched(Side::KmsApi) { us(self.kms_api) } else { None },
            keyd_cpu_us_per_call: if watched(Side::Keyd) { us(self.keyd) } else { None },
            store_cpu_us_per_call: if watched(Side::Store) { us(self.store) } else { None },
            client_cpu_us_per_call: us(self.client),
        }
    }
}

/// Nanoseconds per clock tick of /proc/<pid>/stat.
fn tick() -> u64 {
    1_000_000_000 / rustix::param::clock_ticks_per_second().max(1)
}

/// Reads every process (`None` side: this one, last).
fn read_all(processes: &[(Side, u32)]) -> Vec<(Option<Side>, Option<Reading>)> {
    let mut all: Vec<(Option<Side>, Option<Reading>)> =
        processes.iter().map(|(side, pid)| (Some(*side), read(&pid.to_string()))).collect();
    all.push((None, read("self")));
    all
}

/// A process's CPU time now; `proc` is a pid or "self".
fn read(proc: &str) -> Option<Reading> {
    let ticks = stat_ticks(&std::fs::read_to_string(format!("/proc/{proc}/stat")).ok()?)?;
    let mut threads = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{proc}/task")) {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            // A thread that exited since the listing is simply not there.
            if let Some(ns) =
                std::fs::read_to_string(task.path().join("schedstat")).ok().as_deref().and_then(schedstat_ns)
            {
                threads.insert(tid, ns);
            }
        }
    }
    Some(Reading { ticks, threads })
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last ')'.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The first field of a schedstat line: time on a CPU, nanoseconds.
fn schedstat_ns(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

/// CPU time between two readings of one process, nanoseconds: the sum of
/// its threads' schedstat if no thread of `a` is missing (or went
/// backwards) in `b`, else the clock-tick figure.
fn between(a: &Reading, b: &Reading, tick_ns: u64) -> u64 {
    let mut ns = 0u64;
    let mut whole = !b.threads.is_empty();
    for (tid, before) in &a.threads {
        match b.threads.get(tid) {
            Some(after) if after >= before => ns += after - before,
            _ => whole = false,
        }
    }
    if whole {
        ns + b.threads.iter().filter(|(tid, _)| !a.threads.contains_key(tid)).map(|(_, n)| n).sum::<u64>()
    } else {
        b.ticks.saturating_sub(a.ticks) * tick_ns
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 137 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(stat_ticks(line), Some(162));
        assert_eq!(stat_ticks("garbage"), None);
        assert_eq!(schedstat_ns("65573073 2428934 17\n"), Some(65_573_073));
    }

    fn reading(ticks: u64, threads: &[(u32, u64)]) -> Reading {
        Reading { ticks, threads: threads.iter().copied().collect() }
    }

    #[test]
    fn threads_are_summed_and_a_lost_thread_falls_back_to_ticks() {
        let tick = 10_000_000;
        let a = reading(100, &[(1, 1_000), (2, 5_000)]);
        // Thread 2 ran 2 µs more, thread 3 is new (all of it counts).
        let b = reading(101, &[(1, 1_000), (2, 7_000), (3, 400)]);
        assert_eq!(between(&a, &b, tick), 2_400);
        // Thread 2 exited: its time is gone from the per-thread sum.
        let c = reading(103, &[(1, 2_000)]);
        assert_eq!(between(&a, &c, tick), 3 * tick);
        // A reused thread id whose counter went backwards, likewise.
        let d = reading(102, &[(1, 2_000), (2, 10)]);
        assert_eq!(between(&a, &d, tick), 2 * tick);
    }

    /// This process's own figure grows with work done, and is split per call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn this_process_is_read_in_a_window() {
        let from = Instant::now();
        let to = from + Duration::from_millis(200);
        let window = Watched::default().with(Side::Peer, [std::process::id()]).window(from, to);
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let used = window.await.unwrap_or_default();
        let per_call = used.per_call(10);
        let client = per_call.client_cpu_us_per_call.unwrap_or_default();
        assert!(client > 0.0, "{per_call:?}");
        // The same process watched as a "server": the same order of figure.
        assert!(per_call.server_cpu_us_per_call.unwrap_or_default() > 0.0, "{per_call:?}");
        assert!(per_call.kms_api_cpu_us_per_call.is_none());
        assert!(used.per_call(0).client_cpu_us_per_call.is_none());
    }
}
