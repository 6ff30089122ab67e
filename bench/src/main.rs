//! `skm-bench`: SKM's load generator and side-by-side comparison.
//!
//! It starts its own three-tier stack as processes (a release build of the
//! `skm` binary, a fresh development PKI), creates the keystore (policy:
//! IPv4 127.0.0.1), keys and secret it needs over the admin port, then
//! drives every operation over the real user port (mTLS, keystore policy
//! checked, every call audited and fsynced) with N requests in flight,
//! recording each request's latency in an HDR histogram. It compares each
//! figure with its ceiling (the no-op RPC rate at the same concurrency, and
//! cores × the raw crypto rate of the same `skm_crypto` call), drives the
//! same operations against the peers that are installed (Cosmian KMS, moto's
//! AWS KMS), and optionally measures the same encrypt with 1k..1M keys in
//! the store. Results: `report.json`, `report.md`, `report.png` in `--out`.
//!
//! ```text
//! bench/run --out bench/results          # release build in target/bench, then the run
//! skm-bench --smoke --out DIR --release-binary target/debug/skm   # CI: a few seconds
//! bench/run --ops encrypt-1KiB --peers none --overload            # + the 2× saturation run
//! ```

#![forbid(unsafe_code)]

mod args;
mod disk;
mod load;
mod machine;
mod ops;
mod overload;
mod peers;
mod pinning;
mod plot;
mod process_cpu;
mod process_tree;
mod raw;
mod report;
mod rest_target;
mod run;
mod scale;
mod skm_target;
mod stack;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Args::parse();
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("skm-bench: {e}");
            return ExitCode::from(64);
        }
    };
    // Described before pinning narrows this process to the client's cores.
    let machine = machine::describe();
    if let Some(split) = &plan.pin
        && let Err(e) = split.pin_this_process()
    {
        eprintln!("skm-bench: --pin-cores: cannot pin the load generator to {:?}: {e}", split.client);
        return ExitCode::FAILURE;
    }
    skm_runtime::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skm-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(plan, machine)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skm-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
