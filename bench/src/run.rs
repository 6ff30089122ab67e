//! One run: raw rates, SKM, the peers one after the other, scale, report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{PACKAGE_DIR, PeerChoice, PeerName, Plan};
use crate::load::{self, Phase};
use crate::machine::Machine;
use crate::ops::Op;
use crate::peers::{self, Peer};
use crate::process_cpu::{Side, Watched};
use crate::report::{PeerStatus, Report, Row, Settings};
use crate::rest_target::RestTarget;
use crate::skm_target::SkmTarget;
use crate::stack::Stack;
use crate::{plot, raw, scale};

/// The progress bars' look.
pub(crate) fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The `skm` binary: the one given, or a release build into target/bench.
async fn skm_binary(plan: &Plan) -> anyhow::Result<PathBuf> {
    if let Some(path) = &plan.skm_binary {
        if !path.is_file() {
            bail!("--release-binary {}: no such file", path.display());
        }
        return Ok(path.clone());
    }
    let workspace = Path::new(PACKAGE_DIR).parent().context("workspace folder")?;
    let target = workspace.join("target/bench");
    eprintln!("skm-bench: cargo build --release -p skm (CARGO_TARGET_DIR={})", target.display());
    let status = tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "skm"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace)
        .status()
        .await
        .context("run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p skm failed ({status})");
    }
    Ok(target.join("release/skm"))
}

/// With `--pin-cores`, pins the servers now running (every process this
/// one started) to the server cores; call it once a stack or peer is up.
pub(crate) fn pin_servers(plan: &Plan, say: &dyn Fn(String)) -> anyhow::Result<()> {
    if let Some(split) = &plan.pin {
        let pinned = split.pin_servers().context("pin the servers to their cores")?;
        say(format!(
            "pinned {} server process(es), {} threads, to core(s) {:?}",
            pinned.processes, pinned.threads, split.servers
        ));
    }
    Ok(())
}

fn phases(plan: &Plan) -> impl Iterator<Item = (Op, usize)> + '_ {
    plan.ops.iter().flat_map(|&op| plan.concurrency.iter().map(move |&c| (op, c)))
}

/// Runs everything the plan asks and writes the report; `machine` was
/// described before any pinning narrowed this process's cores.
pub(crate) async fn run(plan: Plan, machine: Machine) -> anyhow::Result<()> {
    std::fs::create_dir_all(&plan.out).with_context(|| format!("cannot create {}", plan.out.display()))?;
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let skm = skm_binary(&plan).await?;
    let mut notes = Vec::new();

    let peer_names: Vec<PeerName> = match &plan.peers {
        PeerChoice::Available => vec![PeerName::Cosmian, PeerName::Moto],
        PeerChoice::These(list) => list.clone(),
    };
    let bar = ProgressBar::new(((1 + peer_names.len()) * plan.ops.len() * plan.concurrency.len()) as u64);
    bar.set_style(bar_style());
    let say = {
        let bar = bar.clone();
        move |line: String| {
            if bar.is_hidden() {
                eprintln!("skm-bench: {line}");
            } else {
                bar.println(format!("skm-bench: {line}"));
            }
        }
    };

    bar.set_message("raw crypto rates");
    let (ops, batch, budget) = (plan.ops.clone(), plan.batch_size, plan.raw_budget);
    let raw = tokio::task::spawn_blocking(move || raw::measure(&ops, batch, budget)).await??;

    // The disk's sync cost, where the stack will keep its audit log (the
    // temporary directory), before anything else runs.
    bar.set_message("fdatasync cost");
    let disk_sync = match tokio::task::spawn_blocking(|| crate::disk::measure(&std::env::temp_dir())).await? {
        Ok(d) => {
            say(format!("disk: {}", d.line()));
            Some(d)
        }
        Err(e) => {
            notes.push(format!("The disk's fdatasync cost was not measured: {e}."));
            None
        }
    };

    // SKM.
    bar.set_message("starting SKM");
    let stack = Stack::start(&skm, None, &plan.audit_sync, plan.store).await?;
    pin_servers(&plan, &say)?;
    let watched = stack.watched();
    let target =
        Arc::new(SkmTarget::prepare(&stack, &plan.ops, plan.batch_size, plan.channels, plan.client_cert).await?);
    let mut results = Vec::new();
    for (op, c) in phases(&plan) {
        bar.set_message(format!("skm {} ×{c}", op.name()));
        let phase = Phase { concurrency: c, warmup: plan.warmup, duration: plan.duration };
        let t = target.clone();
        let m = load::drive(phase, &watched, move |task, _| {
            let t = t.clone();
            async move { t.call(op, task).await }
        })
        .await?;
        let row = Row::measured("skm", op.name(), c, None, &m);
        say(line(&row, &m));
        results.push(row);
        bar.inc(1);
    }
    // The same stack over REST (HTTPS/JSON): the operations it has a row
    // for (not with --client-cert: the REST client presents no certificate).
    if plan.client_cert {
        notes.push(
            "--client-cert: the keystore required a client certificate it issued, which every user-port \
             connection presented; no REST rows (the REST client presents no certificate)."
                .into(),
        );
    } else {
        let (endpoint, ca) = stack.rest();
        let rest = Arc::new(
            RestTarget::prepare(endpoint, ca, &target.aes_key, &target.secret, &plan.ops, plan.channels).await?,
        );
        for (op, c) in phases(&plan).filter(|(op, _)| RestTarget::supports(*op)) {
            bar.set_message(format!("skm-rest {} ×{c}", op.name()));
            let phase = Phase { concurrency: c, warmup: plan.warmup, duration: plan.duration };
            let t = rest.clone();
            let m = load::drive(phase, &watched, move |task, _| {
                let t = t.clone();
                async move { t.call(op, task).await }
            })
            .await?;
            let row = Row::measured("skm-rest", op.name(), c, Some("HTTP/2 + TLS 1.3, JSON, /v1".into()), &m);
            say(line(&row, &m));
            results.push(row);
        }
    }
    let skm_rss = stack.kms_rss();
    stack.shutdown().await;
    if let Some(rss) = skm_rss {
        notes.push(format!("kms-api resident memory after the SKM runs: {:.0} MiB.", rss as f64 / (1u64 << 20) as f64));
    }
    let server_cores = plan.pin.as_ref().map_or(machine.cores, |p| p.servers.len());
    set_ceilings(&mut results, &raw, server_cores);

    let overload = if plan.overload {
        bar.set_message("2× saturation run");
        Some(crate::overload::run(&plan, &skm, &say).await?)
    } else {
        None
    };

    // Peers, one after the other.
    let mut peer_status = Vec::new();
    for name in peer_names {
        let bin = peers::binary(name, &plan.tools);
        let skip =
            |detail: String| PeerStatus { name: name.name().into(), status: "skipped".into(), detail, rss_bytes: None };
        if !bin.exists() {
            let how = match name {
                PeerName::Cosmian => {
                    "bench/install-peers cosmian (builds Cosmian KMS 5.28.0 from crates.io, ~12 minutes)"
                }
                PeerName::Moto => "bench/install-peers moto (pip, ~1 minute)",
            };
            let line = format!("{} skipped: {} not found; install it with {how}", name.name(), bin.display());
            say(line.clone());
            peer_status.push(skip(line));
            bar.inc((plan.ops.len() * plan.concurrency.len()) as u64);
            continue;
        }
        bar.set_message(format!("starting {}", name.name()));
        let peer = match Peer::start(name, &plan.tools, &plan.ops).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let line = format!("{} failed to start: {e:#}", name.name());
                say(line.clone());
                peer_status.push(PeerStatus {
                    name: name.name().into(),
                    status: "failed".into(),
                    detail: line,
                    rss_bytes: None,
                });
                bar.inc((plan.ops.len() * plan.concurrency.len()) as u64);
                continue;
            }
        };
        pin_servers(&plan, &say)?;
        let watched = Watched::default().with(Side::Peer, peer.pid());
        for (op, c) in phases(&plan) {
            bar.inc(1);
            if let Some(why) = peer.unsupported(op) {
                results.push(Row::not_available(name.name(), op.name(), c, why));
                continue;
            }
            bar.set_message(format!("{} {} ×{c}", name.name(), op.name()));
            let phase = Phase { concurrency: c, warmup: plan.warmup, duration: plan.duration };
            let p = peer.clone();
            let m = load::drive(phase, &watched, move |_, _| {
                let p = p.clone();
                async move { p.call(op).await }
            })
            .await?;
            let row = Row::measured(name.name(), op.name(), c, Some(peer.mapping(op)), &m);
            say(line(&row, &m));
            results.push(row);
        }
        let rss = peer.pid().and_then(crate::stack::rss);
        if let Ok(peer) = Arc::try_unwrap(peer) {
            peer.shutdown().await;
        }
        peer_status.push(PeerStatus {
            name: name.name().into(),
            status: "ran".into(),
            detail: match name {
                PeerName::Cosmian => {
                    "Cosmian KMS 5.28.0 (non-fips build), sqlite store, plain HTTP/1.1 KMIP 2.1 JSON, no TLS".into()
                }
                PeerName::Moto => "moto server (Python, in-memory), AWS KMS JSON API over plain HTTP/1.1".into(),
            },
            rss_bytes: rss,
        });
    }
    bar.finish_and_clear();

    let scale_rows = if plan.scale.is_empty() { Vec::new() } else { scale::run(&plan, &skm, &say).await? };

    notes.push(if plan.audit_sync == "os" {
        "Every SKM key operation is audited: one hash-chained log entry per call, written to the kernel before the \
         reply and fsynced every 100 ms (`audit_sync = \"os\"`, opt-in); the figures include it. The peers run \
         without TLS and without a durable audit log."
            .into()
    } else {
        "Every SKM key operation is audited: one hash-chained log entry per call, fsynced (group commit) before the \
         reply (`audit_sync = \"fsync\"`, the default); the figures include it. The peers run without TLS and \
         without a durable audit log."
            .into()
    });
    if let crate::args::Store::Etcd { replicas } = plan.store {
        notes.push(format!(
            "kms-api keeps its records in a three-member etcd cluster on loopback (Debian's etcd 3.4, mutual TLS, \
             every write a transaction a quorum fsyncs), shared by {replicas} kms-api replica(s); the user-port \
             connections go round the replicas, admin calls (create-secret) go to the first."
        ));
    }
    notes.push(match &plan.pin {
        None => "Load generator, SKM's three tiers (or the peer) share the machine's cores; the figures are what \
                 one box does, not what kms-api does on a core of its own."
            .into(),
        Some(split) => format!(
            "Pinned with `--pin-cores`: {}. SKM's tiers (and etcd) or the peer's server have the server cores to \
             themselves; the ceilings count {} core(s).",
            split.line(),
            split.servers.len()
        ),
    });
    notes.push(
        "CPU per call: the CPU time (user + system, every thread) of the servers and of the load generator, read \
         from /proc when each measured window opens and when it closes, divided by the successful calls in it."
            .into(),
    );
    let report = Report {
        format: 1,
        started_unix,
        command: plan.command.clone(),
        smoke: plan.smoke,
        machine,
        settings: Settings {
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            concurrency: plan.concurrency.clone(),
            payloads: plan.ops.iter().filter_map(|o| if let Op::Encrypt(n) = o { Some(*n) } else { None }).collect(),
            batch_size: plan.batch_size,
            channels: plan.channels,
            skm_binary: skm.display().to_string(),
            pin_cores: plan.pin.clone(),
        },
        raw,
        disk_sync,
        results,
        peers: peer_status,
        scale: scale_rows,
        overload,
        notes,
    };
    report.write(&plan.out)?;
    plot::draw(&report, &plan.out.join("report.png"))?;
    plot::draw_cpu(&report, &plan.out.join("report-cpu.png"))?;
    println!("{}", report.markdown());
    eprintln!("skm-bench: wrote {0}/report.{{json,md,png}} and {0}/report-cpu.png", plan.out.display());
    Ok(())
}

/// The progress line of one measured row.
pub(crate) fn line(row: &Row, m: &load::Measured) -> String {
    let us = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
    let c = &row.cpu;
    let tiers = match (c.kms_api_cpu_us_per_call, c.keyd_cpu_us_per_call) {
        (Some(_), _) | (_, Some(_)) => format!(
            " (kms-api {}, keyd {}{})",
            us(c.kms_api_cpu_us_per_call),
            us(c.keyd_cpu_us_per_call),
            c.store_cpu_us_per_call.map_or_else(String::new, |v| format!(", etcd {v:.1}"))
        ),
        _ => String::new(),
    };
    format!(
        "{} {} ×{}: {:.0}/s p50 {:.3} ms p99 {:.3} ms; CPU µs/call server {}{tiers}, client {}{}",
        row.system,
        row.op,
        row.concurrency,
        row.throughput,
        row.p50_us / 1e3,
        row.p99_us / 1e3,
        us(c.server_cpu_us_per_call),
        us(c.client_cpu_us_per_call),
        m.first_error.as_ref().map_or_else(String::new, |e| format!(" — {} errors, first: {e}", m.errors))
    )
}

/// Sets each SKM row's ceiling: min(no-op rate at its concurrency, cores ×
/// raw rate).
fn set_ceilings(results: &mut [Row], raw: &[raw::RawRate], cores: usize) {
    let noop: Vec<(usize, f64)> = results
        .iter()
        .filter(|r| r.system == "skm" && r.op == Op::Noop.name())
        .map(|r| (r.concurrency, r.throughput))
        .collect();
    for r in results.iter_mut().filter(|r| r.system == "skm" && r.op != Op::Noop.name()) {
        let rpc = noop.iter().find(|(c, _)| *c == r.concurrency).map(|(_, t)| *t);
        let crypto = raw.iter().find(|x| x.op == r.op).and_then(|x| x.per_core).map(|v| v * cores as f64);
        let (ceiling, by) = match (rpc, crypto) {
            (Some(a), Some(b)) if b < a => (b, "crypto"),
            (Some(a), _) => (a, "no-op RPC"),
            (None, Some(b)) => (b, "crypto"),
            (None, None) => continue,
        };
        r.ceiling = Some(ceiling);
        r.ceiling_by = Some(by.into());
        r.fraction_of_ceiling = (ceiling > 0.0).then(|| r.throughput / ceiling);
    }
}
