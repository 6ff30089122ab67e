//! Command line → a validated [`Plan`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::ops::{self, Op};
use crate::pinning::{self, CoreSplit};

/// The folder of this package (`bench/`), for `tools/` and the workspace.
pub(crate) const PACKAGE_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// SKM's load generator: throughput and p50/p99 latency of every user-port
/// operation, against its ceilings, its peers and the store's size.
#[derive(Debug, Parser)]
#[command(name = "skm-bench", version)]
pub(crate) struct Args {
    /// Operations: all, or a list of noop, get-secret, create-secret, encrypt, decrypt,
    /// data-key, batch-encrypt, sign, verify, mac (sign and verify: every
    /// measured key type; mac: generate and verify HMAC-SHA-256; or one:
    /// sign-ed25519, verify-ecdsa-p256, sign-ml-dsa-65, mac-hmac-sha256,
    /// encrypt-1KiB, ...).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    ops: Vec<String>,
    /// Requests in flight, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,32")]
    concurrency: Vec<usize>,
    /// Seconds measured per operation and concurrency.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up (not recorded) before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Plaintext sizes in bytes of encrypt and decrypt (at most 32768).
    #[arg(long, value_delimiter = ',', default_value = "1024,32768")]
    payload: Vec<usize>,
    /// Items (of 1 KiB) per batch-encrypt call (1..=100).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// HTTP/2 connections to the user port that the requests share.
    #[arg(long, default_value_t = 2)]
    channels: usize,
    /// Where report.json, report.md and report.png go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A few seconds in all: tiny durations, one concurrency, no peers, no
    /// scale (what CI runs).
    #[arg(long)]
    smoke: bool,
    /// Peers to compare with: cosmian, moto, none (default: those that
    /// bench/install-peers has installed).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Key counts of the scale measurement (e.g. 1000,100000,1000000);
    /// off unless given.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,
    /// kms-api cache_entries during the scale measurement (smaller than the
    /// key counts, so that random keys miss the cache).
    #[arg(long, default_value_t = 256)]
    scale_cache_entries: usize,
    /// The `skm` binary to run the stack with; without it, `cargo build
    /// --release -p skm` into target/bench first.
    #[arg(long)]
    release_binary: Option<PathBuf>,
    /// Where bench/install-peers put the peers.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// kms-api's audit_sync: fsync (the default: each entry on disk before
    /// its reply, batches share one fdatasync) or os (in the kernel before
    /// the reply, synced every 100 ms).
    #[arg(long, default_value = "fsync", value_parser = ["fsync", "os"])]
    audit_sync: String,
    /// Seconds per raw crypto rate (in-process, one core).
    #[arg(long, default_value_t = 0.5)]
    raw_seconds: f64,
    /// Also the 2× saturation run: encrypt 1 KiB swept over 1..64 in flight
    /// to find where throughput saturates, then twice that many callers
    /// against a user port that admits that many (admitted and shed ops/s,
    /// p99 of the admitted requests).
    #[arg(long)]
    overload: bool,
    /// The benchmark keystore also requires a client certificate that it
    /// issued (with 127.0.0.1, mode all), and the load generator presents
    /// one on the user port: the policy check of a certificate keystore on
    /// every call. The REST rows are left out (the REST client presents
    /// no certificate).
    #[arg(long)]
    client_cert: bool,
    /// Where kms-api keeps its records: sled (the embedded store) or etcd (a
    /// three-member cluster on loopback, Debian's etcd-server, with
    /// `--replicas` kms-api replicas; the user-port connections go round them).
    #[arg(long, default_value = "sled", value_parser = ["sled", "etcd"])]
    store: String,
    /// kms-api replicas on etcd (1..=4; with --store etcd).
    #[arg(long, default_value_t = 2)]
    replicas: u16,
    /// Pin the load generator and the servers (SKM's tiers and etcd, each
    /// peer's server) to separate cores: `auto` (the default when given
    /// without a value: the upper half of the cores for the load generator,
    /// at least one, the rest for the servers; on 2 cores: client on core 1,
    /// servers on core 0) or CLIENT:SERVERS core lists such as 1:0 or
    /// 2-3:0,1. Needs at least 2 cores.
    #[arg(long, num_args = 0..=1, default_missing_value = "auto", value_name = "auto|CLIENT:SERVERS")]
    pin_cores: Option<String>,
}

/// Where a benchmark stack's kms-api keeps its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// sled in its data directory.
    Sled,
    /// A local three-member etcd cluster, shared by this many replicas.
    Etcd {
        /// kms-api replicas.
        replicas: u16,
    },
}

/// Peers that can be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerName {
    /// Cosmian KMS (KMIP 2.1 JSON over HTTP).
    Cosmian,
    /// moto's AWS KMS (and Secrets Manager) server.
    Moto,
}

impl PeerName {
    /// Its name in options and reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PeerName::Cosmian => "cosmian",
            PeerName::Moto => "moto",
        }
    }
}

/// Which peers to run.
#[derive(Clone, Debug)]
pub(crate) enum PeerChoice {
    /// Those installed; the others are skipped with a message.
    Available,
    /// Exactly these (a missing one is skipped with a message).
    These(Vec<PeerName>),
}

/// What one run does.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Operations in report order.
    pub(crate) ops: Vec<Op>,
    /// Concurrency levels.
    pub(crate) concurrency: Vec<usize>,
    /// Measured time per phase.
    pub(crate) duration: Duration,
    /// Warm-up per phase.
    pub(crate) warmup: Duration,
    /// Items per batch-encrypt call.
    pub(crate) batch_size: usize,
    /// User-port connections.
    pub(crate) channels: usize,
    /// Output folder.
    pub(crate) out: PathBuf,
    /// Smoke mode.
    pub(crate) smoke: bool,
    /// Peers.
    pub(crate) peers: PeerChoice,
    /// Scale key counts (empty: off).
    pub(crate) scale: Vec<usize>,
    /// cache_entries during the scale measurement.
    pub(crate) scale_cache_entries: usize,
    /// kms-api's audit_sync.
    pub(crate) audit_sync: String,
    /// The skm binary, if given.
    pub(crate) skm_binary: Option<PathBuf>,
    /// bench/tools.
    pub(crate) tools: PathBuf,
    /// Budget of each raw crypto rate.
    pub(crate) raw_budget: Duration,
    /// The 2× saturation run.
    pub(crate) overload: bool,
    /// The keystore requires a client certificate (`--client-cert`).
    pub(crate) client_cert: bool,
    /// kms-api's store.
    pub(crate) store: Store,
    /// Cores of the load generator and of the servers (`--pin-cores`).
    pub(crate) pin: Option<CoreSplit>,
    /// The command line, for the report.
    pub(crate) command: String,
}

fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(format!("--{name} {v}: must be in (0, 3600] seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Args {
    /// Validates the options.
    pub(crate) fn plan(&self) -> Result<Plan, String> {
        for &p in &self.payload {
            if p == 0 || p > 32 * 1024 {
                return Err(format!("--payload {p}: must be 1..=32768 bytes"));
            }
        }
        let ops = ops::parse_list(&self.ops, &self.payload)?;
        if self.concurrency.is_empty() || self.concurrency.iter().any(|&c| c == 0 || c > 4096) {
            return Err("--concurrency: each level must be 1..=4096".into());
        }
        if !(1..=100).contains(&self.batch_size) {
            return Err(format!("--batch-size {}: must be 1..=100", self.batch_size));
        }
        if !(1..=64).contains(&self.channels) {
            return Err(format!("--channels {}: must be 1..=64", self.channels));
        }
        if self.scale.iter().any(|&n| n == 0 || n > 10_000_000) {
            return Err("--scale: each key count must be 1..=10000000".into());
        }
        if self.scale_cache_entries < 16 {
            return Err("--scale-cache-entries: kms-api needs at least 16".into());
        }
        let peers = match &self.peers {
            None => PeerChoice::Available,
            Some(list) => {
                let mut chosen = Vec::new();
                for name in list {
                    match name.as_str() {
                        "cosmian" => chosen.push(PeerName::Cosmian),
                        "moto" => chosen.push(PeerName::Moto),
                        "none" | "" => {}
                        other => return Err(format!("--peers: unknown peer {other:?} (cosmian, moto, none)")),
                    }
                }
                PeerChoice::These(chosen)
            }
        };
        let (mut concurrency, mut duration, mut warmup, mut raw_budget) = (
            self.concurrency.clone(),
            seconds("duration", self.duration)?,
            seconds("warmup", self.warmup)?,
            seconds("raw-seconds", self.raw_seconds)?,
        );
        let (mut peers, mut scale) = (peers, self.scale.clone());
        if self.smoke {
            concurrency = vec![4];
            duration = Duration::from_millis(1000);
            warmup = Duration::from_millis(100);
            raw_budget = Duration::from_millis(20);
            peers = PeerChoice::These(Vec::new());
            scale = Vec::new();
        }
        let store = match self.store.as_str() {
            "etcd" if (1..=4).contains(&self.replicas) => Store::Etcd { replicas: self.replicas },
            "etcd" => return Err(format!("--replicas {}: must be 1..=4", self.replicas)),
            _ => Store::Sled,
        };
        let tools = self.tools.clone().unwrap_or_else(|| PathBuf::from(PACKAGE_DIR).join("tools"));
        let pin = match &self.pin_cores {
            Some(spec) => Some(pinning::parse(spec, &pinning::allowed_cores())?),
            None => None,
        };
        Ok(Plan {
            ops,
            concurrency,
            duration,
            warmup,
            batch_size: self.batch_size,
            channels: self.channels,
            out: self.out.clone(),
            smoke: self.smoke,
            peers,
            scale,
            scale_cache_entries: self.scale_cache_entries,
            audit_sync: self.audit_sync.clone(),
            skm_binary: self.release_binary.clone(),
            tools,
            raw_budget,
            overload: self.overload,
            client_cert: self.client_cert,
            store,
            pin,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}
