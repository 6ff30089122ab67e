//! The report: one JSON document, rendered as Markdown tables (and as a
//! PNG by [`crate::plot`]).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::load::Measured;
use crate::machine::Machine;
use crate::pinning::CoreSplit;
use crate::process_cpu::CpuPerCall;
use crate::raw::RawRate;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Format version of this document.
    pub(crate) format: u32,
    /// When the run started, seconds since the epoch.
    pub(crate) started_unix: u64,
    /// The command line.
    pub(crate) command: String,
    /// Smoke mode (figures meaningless).
    pub(crate) smoke: bool,
    /// The machine.
    pub(crate) machine: Machine,
    /// How it was measured.
    pub(crate) settings: Settings,
    /// Raw crypto rates, one core.
    pub(crate) raw: Vec<RawRate>,
    /// What one write + fdatasync costs on the stack's disk (None: the
    /// measurement failed; the note says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) disk_sync: Option<crate::disk::DiskSync>,
    /// One row per system, operation and concurrency.
    pub(crate) results: Vec<Row>,
    /// What happened to each peer.
    pub(crate) peers: Vec<PeerStatus>,
    /// The scale measurement (empty when not run).
    pub(crate) scale: Vec<ScaleRow>,
    /// The 2× saturation run (`--overload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) overload: Option<crate::overload::OverloadReport>,
    /// How to read the figures.
    pub(crate) notes: Vec<String>,
}

/// Settings of the run.
#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    /// Measured seconds per row.
    pub(crate) duration_s: f64,
    /// Warm-up seconds per row.
    pub(crate) warmup_s: f64,
    /// Concurrency levels.
    pub(crate) concurrency: Vec<usize>,
    /// Encrypt/decrypt sizes.
    pub(crate) payloads: Vec<usize>,
    /// Items per batch-encrypt call.
    pub(crate) batch_size: usize,
    /// User-port connections.
    pub(crate) channels: usize,
    /// The skm binary.
    pub(crate) skm_binary: String,
    /// `--pin-cores`: the load generator's and the servers' cores (null:
    /// not pinned, everything shares every core).
    pub(crate) pin_cores: Option<CoreSplit>,
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    /// skm, cosmian or moto.
    pub(crate) system: String,
    /// Operation name.
    pub(crate) op: String,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// "ok", or "n/a" when the system lacks the operation.
    pub(crate) status: String,
    /// Why n/a, or what the operation maps to on a peer.
    pub(crate) detail: Option<String>,
    /// Successful requests in the window.
    pub(crate) requests: u64,
    /// Failed requests.
    pub(crate) errors: u64,
    /// The first failure.
    pub(crate) first_error: Option<String>,
    /// Successful requests per second.
    pub(crate) throughput: f64,
    /// Median latency, µs.
    pub(crate) p50_us: f64,
    /// 99th percentile latency, µs.
    pub(crate) p99_us: f64,
    /// Mean latency, µs.
    pub(crate) mean_us: f64,
    /// Largest latency, µs.
    pub(crate) max_us: f64,
    /// min(no-op RPC rate at this concurrency, cores × raw crypto rate).
    pub(crate) ceiling: Option<f64>,
    /// Which of the two is the ceiling: "no-op RPC" or "crypto".
    pub(crate) ceiling_by: Option<String>,
    /// throughput / ceiling.
    pub(crate) fraction_of_ceiling: Option<f64>,
    /// CPU time per successful call of the servers and of the load
    /// generator, µs, read from /proc over the measured window.
    #[serde(flatten)]
    pub(crate) cpu: CpuPerCall,
}

impl Row {
    /// A measured row.
    pub(crate) fn measured(system: &str, op: String, concurrency: usize, detail: Option<String>, m: &Measured) -> Self {
        Self {
            system: system.into(),
            op,
            concurrency,
            status: "ok".into(),
            detail,
            requests: m.requests,
            errors: m.errors,
            first_error: m.first_error.clone(),
            throughput: m.throughput(),
            p50_us: m.quantile_us(0.5),
            p99_us: m.quantile_us(0.99),
            mean_us: m.latency.mean() / 1e3,
            max_us: m.latency.max() as f64 / 1e3,
            ceiling: None,
            ceiling_by: None,
            fraction_of_ceiling: None,
            cpu: m.cpu_per_call(),
        }
    }

    /// An operation the system lacks.
    pub(crate) fn not_available(system: &str, op: String, concurrency: usize, why: String) -> Self {
        Self {
            system: system.into(),
            op,
            concurrency,
            status: "n/a".into(),
            detail: Some(why),
            requests: 0,
            errors: 0,
            first_error: None,
            throughput: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            mean_us: 0.0,
            max_us: 0.0,
            ceiling: None,
            ceiling_by: None,
            fraction_of_ceiling: None,
            cpu: CpuPerCall::default(),
        }
    }
}

/// A peer's fate in this run.
#[derive(Debug, Serialize)]
pub(crate) struct PeerStatus {
    /// cosmian or moto.
    pub(crate) name: String,
    /// "ran", "skipped" or "failed".
    pub(crate) status: String,
    /// Why, or how it ran.
    pub(crate) detail: String,
    /// Resident memory of the server after its runs, bytes.
    pub(crate) rss_bytes: Option<u64>,
}

/// The same encrypt with many keys in the store.
#[derive(Debug, Serialize)]
pub(crate) struct ScaleRow {
    /// AES keys in the store.
    pub(crate) keys: usize,
    /// kms-api cache_entries.
    pub(crate) cache_entries: usize,
    /// Seconds to create the keys (CreateKey over the admin port).
    pub(crate) create_seconds: f64,
    /// Keys created per second.
    pub(crate) create_rate: f64,
    /// kms-api restart: process start to health SERVING, seconds.
    pub(crate) ready_seconds: f64,
    /// kms-api VmRSS after creating the keys, bytes.
    pub(crate) rss_after_create: Option<u64>,
    /// kms-api VmRSS right after the restart, bytes.
    pub(crate) rss_after_restart: Option<u64>,
    /// kms-api VmRSS after the encrypt runs, bytes.
    pub(crate) rss_after_load: Option<u64>,
    /// Requests in flight.
    pub(crate) concurrency: usize,
    /// Encrypt 1 KiB with one key (cache hit).
    pub(crate) one_key: Row,
    /// Encrypt 1 KiB with a random key each call (mostly cache misses).
    pub(crate) random_keys: Row,
    /// one_key p50 / the first scale's one_key p50.
    pub(crate) one_key_p50_ratio: f64,
    /// random_keys p50 / the first scale's random_keys p50.
    pub(crate) random_keys_p50_ratio: f64,
}

fn rate(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: f64) -> String {
    let v = us / 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// CPU µs per call: `52.3`, `1,204`, `—` when not measured.
fn cpu_us(us: Option<f64>) -> String {
    match us {
        Some(v) if v >= 1000.0 => rate(v),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "—".into(),
    }
}

/// Cores kept busy: CPU per call × calls per second.
fn busy(us_per_call: Option<f64>, throughput: f64) -> String {
    us_per_call.map_or_else(|| "—".into(), |us| format!("{:.2}", us * throughput / 1e6))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), |b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64))
}

impl Report {
    /// The rows of one system.
    pub(crate) fn rows<'a>(&'a self, system: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.results.iter().filter(move |r| r.system == system)
    }

    fn find(&self, system: &str, op: &str, concurrency: usize) -> Option<&Row> {
        self.results.iter().find(|r| r.system == system && r.op == op && r.concurrency == concurrency)
    }

    /// Cores the servers may use: the pinned ones, or every core.
    pub(crate) fn server_cores(&self) -> usize {
        self.settings.pin_cores.as_ref().map_or(self.machine.cores, |p| p.servers.len())
    }

    /// The CPU-per-call table: every measured row, its servers' CPU split
    /// by tier, the load generator's, and the cores each kept busy.
    fn cpu_table(&self, md: &mut String) {
        let rows: Vec<&Row> = self.results.iter().filter(|r| r.status == "ok").collect();
        if rows.is_empty() {
            return;
        }
        let etcd = rows.iter().any(|r| r.cpu.store_cpu_us_per_call.is_some());
        let _ = writeln!(md, "\n## CPU per call (µs of CPU time per successful call, from /proc, same window)\n");
        let _ = writeln!(
            md,
            "| system | operation | in flight | ops/s | server | of it kms-api | of it root+system-keyd |{} server cores busy | client | client cores busy |",
            if etcd { " of it etcd |" } else { "" }
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|{}---:|---:|---:|", if etcd { "---:|" } else { "" });
        for r in rows {
            let c = &r.cpu;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |{} {} | {} | {} |",
                r.system,
                r.op,
                r.concurrency,
                rate(r.throughput),
                cpu_us(c.server_cpu_us_per_call),
                cpu_us(c.kms_api_cpu_us_per_call),
                cpu_us(c.keyd_cpu_us_per_call),
                if etcd { format!(" {} |", cpu_us(c.store_cpu_us_per_call)) } else { String::new() },
                busy(c.server_cpu_us_per_call, r.throughput),
                cpu_us(c.client_cpu_us_per_call),
                busy(c.client_cpu_us_per_call, r.throughput),
            );
        }
        let _ = writeln!(
            md,
            "\nServer: every process of the system that serves the call (SKM: kms-api + root-keyd + system-keyd{}; \
             a peer: its server process). Client: this load generator, all its threads. Cores busy = CPU per call × \
             calls per second.",
            if etcd { " + the etcd members" } else { "" }
        );
    }

    /// Writes report.json and report.md into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }

    /// The Markdown rendering.
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# SKM benchmark{}\n", if self.smoke { " (smoke run: figures meaningless)" } else { "" });
        let _ = writeln!(md, "- machine: {}", self.machine.line());
        if let Some(disk) = &self.disk_sync {
            let _ = writeln!(md, "- disk: {}", disk.line());
        }
        let _ = writeln!(md, "- command: `{}`", self.command);
        let s = &self.settings;
        let _ = writeln!(
            md,
            "- {} s measured after {} s warm-up per row; {} user-port connection(s); batch-encrypt = {} × 1 KiB; \
             sign/verify over 1 KiB messages; skm binary `{}`",
            s.duration_s, s.warmup_s, s.channels, s.batch_size, s.skm_binary
        );
        let _ = writeln!(
            md,
            "- cores: {}\n",
            s.pin_cores.as_ref().map_or_else(
                || "not pinned: the load generator and the servers share every core".to_owned(),
                |p| format!("pinned (`--pin-cores`): {}", p.line())
            )
        );

        let _ = writeln!(md, "## SKM over the user port (mTLS, keystore policy, audited)\n");
        let _ = writeln!(
            md,
            "| operation | in flight | ops/s | p50 ms | p99 ms | errors | ceiling ops/s | of ceiling | server CPU µs/call | client CPU µs/call |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in self.rows("skm") {
            let ceiling = match (&r.ceiling, &r.ceiling_by) {
                (Some(c), Some(by)) => format!("{} ({by})", rate(*c)),
                _ => "—".into(),
            };
            let of = r.fraction_of_ceiling.map_or_else(|| "—".into(), |f| format!("{:.0} %", f * 100.0));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {ceiling} | {of} | {} | {} |",
                r.op,
                r.concurrency,
                rate(r.throughput),
                ms(r.p50_us),
                ms(r.p99_us),
                r.errors,
                cpu_us(r.cpu.server_cpu_us_per_call),
                cpu_us(r.cpu.client_cpu_us_per_call),
            );
        }
        let _ = writeln!(
            md,
            "\nCeiling = min(no-op RPC rate at the same concurrency, {} cores × raw crypto rate). {} Server CPU = \
             kms-api + root-keyd + system-keyd{} over the measured window, per successful call; client CPU = the \
             load generator's (the split per tier is under \"CPU per call\" below).\n",
            self.server_cores(),
            if self.settings.pin_cores.is_some() {
                "The servers run on their own cores, the load generator on others."
            } else {
                "The load generator runs on the same machine and takes part of its CPU."
            },
            if self.rows("skm").any(|r| r.cpu.store_cpu_us_per_call.is_some()) { " + etcd" } else { "" },
        );

        if self.rows("skm-rest").next().is_some() {
            let _ = writeln!(md, "## SKM over REST (HTTPS/JSON `/v1`, HTTP/2, same stack, same policy and audit)\n");
            let _ = writeln!(
                md,
                "| operation | in flight | REST ops/s | REST p50 ms | REST p99 ms | errors | gRPC ops/s | REST/gRPC | REST server CPU µs/call | gRPC server CPU µs/call |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for r in self.rows("skm-rest") {
                let grpc = self.find("skm", &r.op, r.concurrency).filter(|g| g.throughput > 0.0);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.op,
                    r.concurrency,
                    rate(r.throughput),
                    ms(r.p50_us),
                    ms(r.p99_us),
                    r.errors,
                    grpc.map_or_else(|| "—".into(), |g| rate(g.throughput)),
                    grpc.map_or_else(|| "—".into(), |g| format!("{:.2}×", r.throughput / g.throughput)),
                    cpu_us(r.cpu.server_cpu_us_per_call),
                    cpu_us(grpc.and_then(|g| g.cpu.server_cpu_us_per_call)),
                );
            }
            let _ = writeln!(md);
        }

        let _ = writeln!(
            md,
            "## Raw crypto rates (this process, one core, fastest of 8 slices, same `skm_crypto` calls)\n"
        );
        let _ = writeln!(md, "| operation | timed | ops/s per core | × {} cores |", self.server_cores());
        let _ = writeln!(md, "|---|---|---:|---:|");
        for r in &self.raw {
            let (one, all) = r
                .per_core
                .map_or_else(|| ("—".to_owned(), "—".to_owned()), |v| (rate(v), rate(v * self.server_cores() as f64)));
            let _ = writeln!(md, "| {} | {} | {one} | {all} |", r.op, r.what);
        }

        if !self.peers.is_empty() {
            let _ = writeln!(md, "\n## Peers, same operations, payloads and concurrency\n");
            for p in &self.peers {
                let rss = p.rss_bytes.map_or_else(String::new, |b| format!(" (server RSS {})", mib(Some(b))));
                let _ = writeln!(md, "- **{}**: {} — {}{rss}", p.name, p.status, p.detail);
            }
            let ran: Vec<&PeerStatus> = self.peers.iter().filter(|p| p.status == "ran").collect();
            if !ran.is_empty() {
                let mut head =
                    String::from("| operation | in flight | SKM ops/s | SKM p50 ms | SKM server CPU µs/call |");
                let mut rule = String::from("|---|---:|---:|---:|---:|");
                for p in &ran {
                    let _ = write!(head, " {0} ops/s | {0} p50 ms | {0} server CPU µs/call | SKM/{0} ops/s |", p.name);
                    rule.push_str("---:|---:|---:|---:|");
                }
                let _ = writeln!(md, "\n{head}\n{rule}");
                for r in self.rows("skm") {
                    let mut line = format!(
                        "| {} | {} | {} | {} | {} |",
                        r.op,
                        r.concurrency,
                        rate(r.throughput),
                        ms(r.p50_us),
                        cpu_us(r.cpu.server_cpu_us_per_call)
                    );
                    for p in &ran {
                        match self.find(&p.name, &r.op, r.concurrency) {
                            Some(x) if x.status == "ok" && x.throughput > 0.0 => {
                                let _ = write!(
                                    line,
                                    " {} | {} | {} | {:.1}× |",
                                    rate(x.throughput),
                                    ms(x.p50_us),
                                    cpu_us(x.cpu.server_cpu_us_per_call),
                                    r.throughput / x.throughput
                                );
                            }
                            Some(x) if x.status == "ok" => line.push_str(" 0 | — | — | — |"),
                            _ => line.push_str(" n/a | n/a | n/a | — |"),
                        }
                    }
                    let _ = writeln!(md, "{line}");
                }
                let _ = writeln!(md, "\nWhat each operation maps to, and why some are n/a:\n");
                for p in &ran {
                    let mut seen = Vec::new();
                    for x in self.rows(&p.name) {
                        if seen.contains(&x.op) {
                            continue;
                        }
                        seen.push(x.op.clone());
                        let detail: String = x.detail.as_deref().unwrap_or("").chars().take(160).collect();
                        let _ = writeln!(
                            md,
                            "- {} {}: {}{detail}",
                            p.name,
                            x.op,
                            if x.status == "ok" { "" } else { "n/a — " },
                        );
                    }
                }
            }
        }

        self.cpu_table(&mut md);

        if !self.scale.is_empty() {
            let _ = writeln!(md, "\n## Scale: encrypt 1 KiB with many keys in the store\n");
            let _ = writeln!(
                md,
                "| keys | create (keys/s) | kms-api ready after restart | RSS created / restarted / after load | in flight | one key ops/s | p50 ms | p50 × | random keys ops/s | p50 ms | p50 × |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
            for s in &self.scale {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} s ({}) | {:.2} s | {} / {} / {} | {} | {} | {} | {:.2} | {} | {} | {:.2} |",
                    rate(s.keys as f64),
                    s.create_seconds,
                    rate(s.create_rate),
                    s.ready_seconds,
                    mib(s.rss_after_create),
                    mib(s.rss_after_restart),
                    mib(s.rss_after_load),
                    s.concurrency,
                    rate(s.one_key.throughput),
                    ms(s.one_key.p50_us),
                    s.one_key_p50_ratio,
                    rate(s.random_keys.throughput),
                    ms(s.random_keys.p50_us),
                    s.random_keys_p50_ratio
                );
            }
            if let Some(first) = self.scale.first() {
                let _ = writeln!(
                    md,
                    "\np50 × = p50 over the p50 with {} keys. kms-api ran with cache_entries = {}, so random keys miss the cache.",
                    rate(first.keys as f64),
                    first.cache_entries
                );
            }
        }

        if let Some(o) = &self.overload {
            let _ = writeln!(md, "\n## Twice the saturating load: {}\n", o.op);
            let _ = writeln!(md, "| in flight (no limit) | ops/s | p99 ms | server CPU µs/call |");
            let _ = writeln!(md, "|---:|---:|---:|---:|");
            for p in &o.sweep {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    p.concurrency,
                    rate(p.throughput),
                    ms(p.p99_us),
                    cpu_us(p.server_cpu_us_per_call)
                );
            }
            let _ = writeln!(
                md,
                "\nSaturating level: {} in flight ({}/s, the fewest in flight reaching 90 % of the best). \
                 Then max_in_flight = {} on the user port and {} callers in a closed loop (no back-off) for {:.0} s:\n",
                o.saturation,
                rate(o.saturated_throughput),
                o.saturation,
                o.callers,
                o.seconds
            );
            let _ = writeln!(
                md,
                "| admitted ops/s | admitted p50 ms | admitted p99 ms | shed ops/s | shed p99 ms | other errors | kms-api RSS | server CPU µs per admitted call |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                rate(o.admitted_per_s),
                ms(o.admitted_p50_us),
                ms(o.admitted_p99_us),
                rate(o.shed_per_s),
                ms(o.shed_p99_us),
                o.other_errors,
                mib(o.kms_rss_bytes),
                cpu_us(o.server_cpu_us_per_admitted_call)
            );
        }

        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
        assert_eq!(ms(1234.0), "1.23");
        assert_eq!(ms(150.0), "0.150");
        assert_eq!(cpu_us(Some(52.34)), "52.3");
        assert_eq!(cpu_us(Some(1234.0)), "1,234");
        assert_eq!(cpu_us(None), "—");
        assert_eq!(busy(Some(50.0), 20_000.0), "1.00");
    }
}
