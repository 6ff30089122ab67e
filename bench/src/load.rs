//! The load driver: N tasks, each with one request in flight at a time,
//! for a warm-up and then a measured window; every request completed in
//! the window is counted and its latency recorded in an HDR histogram, and
//! the CPU time of the watched processes is read at the window's two ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::process_cpu::{CpuPerCall, Watched, WindowCpu};

/// A request that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One phase: how many in flight, for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phase {
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// Not recorded.
    pub(crate) warmup: Duration,
    /// Recorded.
    pub(crate) duration: Duration,
}

/// What a phase measured.
#[derive(Debug)]
pub(crate) struct Measured {
    /// Successful requests completed in the window.
    pub(crate) requests: u64,
    /// Failed requests completed in the window (or in the warm-up).
    pub(crate) errors: u64,
    /// The first failure's message.
    pub(crate) first_error: Option<String>,
    /// Length of the window, seconds.
    pub(crate) seconds: f64,
    /// Latencies of the successful requests, nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// CPU time the watched processes and this one used in the window.
    pub(crate) cpu: WindowCpu,
}

impl Measured {
    /// Successful requests per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// CPU µs per successful request.
    pub(crate) fn cpu_per_call(&self) -> CpuPerCall {
        self.cpu.per_call(self.requests)
    }

    /// A latency quantile in microseconds (0 with no sample).
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 ns .. 10 min, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 600_000_000_000, 3)?)
}

struct TaskResult {
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `call(task, n)` from `phase.concurrency` tasks (task in
/// 0..concurrency, n counting that task's calls) for the phase, reading the
/// CPU time of `watched` (and of this process) when the measured window
/// opens and when it closes.
pub(crate) async fn drive<F, Fut>(phase: Phase, watched: &Watched, call: F) -> anyhow::Result<Measured>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let record_from = Instant::now() + phase.warmup;
    let end = record_from + phase.duration;
    let window = watched.window(record_from, end);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..phase.concurrency {
        let call = call.clone();
        let mut latency = histogram()?;
        tasks.spawn(async move {
            let (mut requests, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut n = 0u64;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let result = match tokio::time::timeout(REQUEST_TIMEOUT, call(task, n)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
                };
                n += 1;
                let done = Instant::now();
                match result {
                    Ok(()) if done >= record_from && done <= end => {
                        let ns = (done - started).as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
                        latency.saturating_record(ns);
                        requests += 1;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            TaskResult { latency, requests, errors, first_error }
        });
    }
    let mut all = Measured {
        requests: 0,
        errors: 0,
        first_error: None,
        seconds: phase.duration.as_secs_f64(),
        latency: histogram()?,
        cpu: WindowCpu::default(),
    };
    while let Some(done) = tasks.join_next().await {
        let r = done?;
        all.requests += r.requests;
        all.errors += r.errors;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
        all.latency.add(&r.latency)?;
    }
    all.cpu = window.await?;
    Ok(all)
}

/// Deterministic pseudo-random numbers (SplitMix64) for picking keys: no
/// dependency, and the same sequence on every run.
pub(crate) fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each task's call n = 5 fails. The error count must be exactly the
    /// number of tasks that got that far (no warm-up: every error and
    /// every success is in the window), and every success is counted but
    /// for at most one per task that finished after the window closed.
    #[tokio::test]
    async fn counts_requests_and_errors() -> anyhow::Result<()> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let phase = Phase { concurrency: 3, warmup: Duration::ZERO, duration: Duration::from_millis(100) };
        let calls: Arc<[AtomicU64; 3]> = Arc::default();
        let made = calls.clone();
        let m = drive(phase, &Watched::default(), move |task, n| {
            made[task].fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if n == 5 { Err("fifth".to_string()) } else { Ok(()) }
            }
        })
        .await?;
        let calls: Vec<u64> = calls.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let failed = calls.iter().filter(|&&c| c > 5).count() as u64;
        assert!(failed > 0, "no task made six calls, the test proves nothing: {calls:?}");
        assert_eq!(m.errors, failed, "calls per task: {calls:?}");
        assert_eq!(m.first_error.as_deref(), Some("fifth"));
        let successes = calls.iter().sum::<u64>() - failed;
        assert!(
            m.requests <= successes && m.requests + 3 >= successes,
            "{} requests counted of {successes} successes",
            m.requests
        );
        assert_eq!(m.latency.len(), m.requests, "one latency per counted request");
        assert!(m.quantile_us(0.5) >= 1000.0);
        // Only this process was watched: a client figure and no server one.
        let cpu = m.cpu_per_call();
        assert!(cpu.client_cpu_us_per_call.is_some() && cpu.server_cpu_us_per_call.is_none(), "{cpu:?}");
        Ok(())
    }
}
