//! The `skm` command line: developer (`skm dev`, `skm pki init`), operator
//! (`skm root`, `skm keystore`, `skm key`) and application (`skm encrypt`,
//! `skm decrypt`) verbs, per DESIGN §11.
//!
//! Conventions: ids alone on stdout (`id=$(skm key create …)`), `--json` for
//! structured output, errors on stderr with the gRPC code and the server's
//! message; exit 0 ok, 1 refused or invalid, 2 usage error, 3 unavailable.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

mod args;
pub mod dev;
pub mod devstack;
pub mod etcd;
pub mod failure;
mod ops;
pub mod pki;

pub use args::Cli;
use args::{Command, Tier};
pub use failure::Failure;

/// Runs the CLI with the process arguments.
pub fn main() -> ExitCode {
    skm_runtime::tls::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { failure::EXIT_USAGE } else { 0 });
        }
    };
    // The daemons build their own runtime.
    if let Command::Daemon { tier, args } = &cli.command {
        return run_daemon(*tier, args.clone());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skm: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ops::run(cli)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

fn run_daemon(tier: Tier, args: Vec<OsString>) -> ExitCode {
    let argv = |name: &str| std::iter::once(OsString::from(name)).chain(args.clone());
    match tier {
        Tier::RootKeyd => skm_runtime::daemon::main_with_args::<root_keyd::RootKeyd>(argv("root-keyd")),
        Tier::SystemKeyd => skm_runtime::daemon::main_with_args::<system_keyd::SystemKeyd>(argv("system-keyd")),
        Tier::KmsApi => skm_runtime::daemon::main_with_args::<kms_api::KmsApi>(argv("kms-api")),
    }
}
