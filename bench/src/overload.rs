//! The 2× saturation run (`--overload`): encrypt 1 KiB is driven at rising
//! numbers of requests in flight until its throughput stops growing (the
//! saturating level: the fewest in flight that reach 90 % of the best
//! throughput seen), then a fresh stack whose user port admits exactly that
//! many at once (`[user_limits] max_in_flight`) is driven with twice as
//! many callers, each sending its next call as soon as the last is answered
//! (no back-off: the worst case for the shedder). Reported: admitted ops/s,
//! shed ops/s (RESOURCE_EXHAUSTED), latency of the admitted requests (p50,
//! p99) and of the refusals, any other error, and kms-api's memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::args::Plan;
use crate::load::{self, Phase};
use crate::ops::Op;
use crate::process_cpu::{Watched, WindowCpu};
use crate::skm_target::SkmTarget;
use crate::stack::Stack;

/// The operation driven.
const OP: Op = Op::Encrypt(1024);
/// In-flight levels of the sweep.
const LEVELS: &[usize] = &[1, 2, 4, 8, 16, 32, 64];
/// Levels of the sweep in smoke mode.
const SMOKE_LEVELS: &[usize] = &[1, 2];
/// The saturating level reaches this share of the best throughput.
const SATURATED: f64 = 0.9;

/// One level of the sweep.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SweepPoint {
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// Successful requests per second.
    pub(crate) throughput: f64,
    /// 99th percentile latency, µs.
    pub(crate) p99_us: f64,
    /// CPU µs per call of kms-api + root-keyd + system-keyd.
    pub(crate) server_cpu_us_per_call: Option<f64>,
}

/// What the 2× saturation run measured.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OverloadReport {
    /// Operation.
    pub(crate) op: String,
    /// Throughput by requests in flight, without a max_in_flight below them.
    pub(crate) sweep: Vec<SweepPoint>,
    /// The saturating level (also the user port's max_in_flight below).
    pub(crate) saturation: usize,
    /// Throughput at the saturating level.
    pub(crate) saturated_throughput: f64,
    /// Callers during the run: twice the saturating level.
    pub(crate) callers: usize,
    /// Measured seconds.
    pub(crate) seconds: f64,
    /// Requests answered OK in the window.
    pub(crate) admitted: u64,
    /// Requests refused with RESOURCE_EXHAUSTED in the window.
    pub(crate) shed: u64,
    /// Any other failure (there must be none).
    pub(crate) other_errors: u64,
    /// The first other failure.
    pub(crate) first_other_error: Option<String>,
    /// Admitted requests per second.
    pub(crate) admitted_per_s: f64,
    /// Shed requests per second.
    pub(crate) shed_per_s: f64,
    /// Median latency of admitted requests, µs.
    pub(crate) admitted_p50_us: f64,
    /// 99th percentile latency of admitted requests, µs.
    pub(crate) admitted_p99_us: f64,
    /// 99th percentile latency of a refusal, µs.
    pub(crate) shed_p99_us: f64,
    /// kms-api's resident memory after the run, bytes.
    pub(crate) kms_rss_bytes: Option<u64>,
    /// CPU µs of kms-api + root-keyd + system-keyd per admitted call
    /// (the refusals' cost included).
    pub(crate) server_cpu_us_per_admitted_call: Option<f64>,
}

/// The smallest level reaching [`SATURATED`] of the best throughput.
fn saturation(sweep: &[SweepPoint]) -> Option<&SweepPoint> {
    let best = sweep.iter().map(|p| p.throughput).fold(0.0, f64::max);
    sweep.iter().find(|p| p.throughput >= SATURATED * best)
}

/// Runs the sweep and the 2× run.
pub(crate) async fn run(plan: &Plan, skm: &Path, say: &dyn Fn(String)) -> anyhow::Result<OverloadReport> {
    let levels = if plan.smoke { SMOKE_LEVELS } else { LEVELS };
    let phase = |concurrency| Phase { concurrency, warmup: plan.warmup, duration: plan.duration };

    let stack = Stack::start(skm, None, &plan.audit_sync, plan.store).await?;
    crate::run::pin_servers(plan, say)?;
    let watched = stack.watched();
    let target = Arc::new(SkmTarget::prepare(&stack, &[OP], plan.batch_size, plan.channels, false).await?);
    let mut sweep = Vec::new();
    for &c in levels {
        let t = target.clone();
        let m = load::drive(phase(c), &watched, move |task, _| {
            let t = t.clone();
            async move { t.call(OP, task).await }
        })
        .await?;
        let point = SweepPoint {
            concurrency: c,
            throughput: m.throughput(),
            p99_us: m.quantile_us(0.99),
            server_cpu_us_per_call: m.cpu_per_call().server_cpu_us_per_call,
        };
        say(format!(
            "overload sweep {} ×{c}: {:.0}/s p99 {:.3} ms, server CPU {:.1} µs/call",
            OP.name(),
            point.throughput,
            point.p99_us / 1e3,
            point.server_cpu_us_per_call.unwrap_or(f64::NAN)
        ));
        sweep.push(point);
    }
    drop(target);
    stack.shutdown().await;
    let saturated = saturation(&sweep).cloned().ok_or_else(|| anyhow::anyhow!("the sweep measured nothing"))?;

    let callers = 2 * saturated.concurrency;
    let limit = u32::try_from(saturated.concurrency)?;
    let stack = Stack::start_with_max_in_flight(skm, &plan.audit_sync, limit).await?;
    crate::run::pin_servers(plan, say)?;
    let target = Arc::new(SkmTarget::prepare(&stack, &[OP], plan.batch_size, plan.channels, false).await?);
    let measured = drive(phase(callers), &stack.watched(), target).await?;
    let kms_rss_bytes = stack.kms_rss();
    stack.shutdown().await;
    let seconds = plan.duration.as_secs_f64();
    let report = OverloadReport {
        op: OP.name(),
        saturation: saturated.concurrency,
        saturated_throughput: saturated.throughput,
        sweep,
        callers,
        seconds,
        admitted: measured.admitted.len(),
        shed: measured.shed.len(),
        other_errors: measured.other_errors,
        first_other_error: measured.first_other_error,
        admitted_per_s: measured.admitted.len() as f64 / seconds,
        shed_per_s: measured.shed.len() as f64 / seconds,
        admitted_p50_us: measured.admitted.value_at_quantile(0.5) as f64 / 1e3,
        admitted_p99_us: measured.admitted.value_at_quantile(0.99) as f64 / 1e3,
        shed_p99_us: measured.shed.value_at_quantile(0.99) as f64 / 1e3,
        kms_rss_bytes,
        server_cpu_us_per_admitted_call: measured.cpu.per_call(measured.admitted.len()).server_cpu_us_per_call,
    };
    say(format!(
        "overload: max_in_flight {}, {} callers: admitted {:.0}/s (p99 {:.3} ms), shed {:.0}/s, {} other errors",
        report.saturation,
        report.callers,
        report.admitted_per_s,
        report.admitted_p99_us / 1e3,
        report.shed_per_s,
        report.other_errors
    ));
    Ok(report)
}

/// What the 2× run saw in its window.
struct Outcomes {
    admitted: Histogram<u64>,
    shed: Histogram<u64>,
    other_errors: u64,
    first_other_error: Option<String>,
    /// CPU time of the watched processes in the window.
    cpu: WindowCpu,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000_000, 3)?)
}

/// `phase.concurrency` callers in a closed loop, each answer sorted into
/// admitted, shed or other by its status; the CPU time of `watched` read
/// at the window's two ends.
async fn drive(phase: Phase, watched: &Watched, target: Arc<SkmTarget>) -> anyhow::Result<Outcomes> {
    let record_from = Instant::now() + phase.warmup;
    let end = record_from + phase.duration;
    let window = watched.window(record_from, end);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..phase.concurrency {
        let target = target.clone();
        let (mut admitted, mut shed) = (histogram()?, histogram()?);
        tasks.spawn(async move {
            let (mut other_errors, mut first_other_error) = (0u64, None);
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let result = match tokio::time::timeout(Duration::from_secs(30), target.call(OP, task)).await {
                    Ok(r) => r,
                    Err(_) => Err("no answer within 30 s".to_owned()),
                };
                let done = Instant::now();
                if done < record_from || done > end {
                    continue;
                }
                let ns = (done - started).as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
                match result {
                    Ok(()) => admitted.saturating_record(ns),
                    Err(e) if e.starts_with("ResourceExhausted") => shed.saturating_record(ns),
                    Err(e) => {
                        other_errors += 1;
                        first_other_error.get_or_insert(e);
                    }
                }
            }
            Outcomes { admitted, shed, other_errors, first_other_error, cpu: WindowCpu::default() }
        });
    }
    let mut all = Outcomes {
        admitted: histogram()?,
        shed: histogram()?,
        other_errors: 0,
        first_other_error: None,
        cpu: WindowCpu::default(),
    };
    while let Some(done) = tasks.join_next().await {
        let r = done?;
        all.admitted.add(&r.admitted)?;
        all.shed.add(&r.shed)?;
        all.other_errors += r.other_errors;
        if all.first_other_error.is_none() {
            all.first_other_error = r.first_other_error;
        }
    }
    all.cpu = window.await?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_is_the_fewest_in_flight_near_the_best() {
        let point =
            |concurrency, throughput| SweepPoint { concurrency, throughput, p99_us: 0.0, server_cpu_us_per_call: None };
        let sweep = [point(1, 1000.0), point(2, 1900.0), point(4, 3000.0), point(8, 3300.0), point(16, 3200.0)];
        assert_eq!(saturation(&sweep).map(|p| p.concurrency), Some(4));
        assert!(saturation(&[]).is_none());
    }
}
