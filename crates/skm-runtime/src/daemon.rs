//! The shared `main` of SKM's daemons: parse arguments, load and validate
//! the config before binding anything (bad config: one line, exit 64), set up
//! logging and the runtime, run until SIGTERM/Ctrl-C.
//!
//! ```text
//! <daemon> [--config FILE]            serve (the default)
//! <daemon> check-config [--config FILE]
//! <daemon> health [--config FILE]     exit 0 if the running daemon is SERVING
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, EXIT_BAD_CONFIG};
use crate::identity::SpiffeId;
use crate::shutdown::Shutdown;
use crate::telemetry::LogConfig;
use crate::tls::TlsIdentity;

/// Error type of a daemon's `run`.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// What a daemon binary must provide to [`main`].
pub trait Daemon {
    /// Binary name, e.g. `root-keyd`.
    const NAME: &'static str;
    /// Prefix of environment overrides, e.g. `SKM_ROOT_KEYD`.
    const ENV_PREFIX: &'static str;
    /// Validated configuration.
    type Config: Send + 'static;

    /// Loads and validates the config (files it names are read here).
    fn load(path: &Path) -> Result<Self::Config, ConfigError>;

    /// Its `[log]` section.
    fn log_config(config: &Self::Config) -> &LogConfig;

    /// Where and as whom `health` reaches the running daemon: the address
    /// of its (first) port, its own TLS identity and its own SPIFFE id.
    fn health_target(config: &Self::Config) -> (SocketAddr, TlsIdentity, SpiffeId);

    /// Serves until `shutdown`.
    fn run(config: Self::Config, shutdown: Shutdown) -> impl Future<Output = Result<(), RunError>> + Send;
}

#[derive(Debug, Parser)]
struct Args {
    /// Config file (TOML). Default: $SKM_CONFIG, else /etc/skm/<daemon>.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Validate the config and exit.
    CheckConfig,
    /// Ask the running daemon for its health; exit 0 only if SERVING.
    Health,
}

/// Runs a daemon with the process arguments.
pub fn main<D: Daemon>() -> ExitCode {
    main_with_args::<D>(std::env::args_os())
}

/// Runs a daemon with explicit arguments (`skm dev` runs the daemons this way).
pub fn main_with_args<D: Daemon>(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    crate::tls::install_crypto_provider();
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_BAD_CONFIG } else { 0 });
        }
    };
    let path = args
        .config
        .or_else(|| std::env::var_os("SKM_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(format!("/etc/skm/{}.toml", D::NAME)));
    let config = match D::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", D::NAME);
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", D::NAME);
            return ExitCode::FAILURE;
        }
    };
    match args.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("{}: config {} is valid", D::NAME, path.display());
            ExitCode::SUCCESS
        }
        Command::Health => runtime.block_on(health_check::<D>(&config)),
        Command::Serve => {
            crate::telemetry::init(D::log_config(&config));
            raise_open_files_limit();
            let result = runtime.block_on(async move {
                let (_trigger, shutdown) = crate::shutdown::on_signals();
                D::run(config, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "{} stopped", D::NAME);
                    eprintln!("{}: {}", D::NAME, error_chain(&*e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so the connection
/// limits (not the kernel's default of 1024 descriptors) decide how many
/// clients a daemon holds.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open files limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// `error: cause: cause` on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn health_check<D: Daemon>(config: &D::Config) -> ExitCode {
    let (mut addr, identity, id) = D::health_target(config);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = match identity
        .client_config(&id)
        .map_err(RunError::from)
        .and_then(|tls| Ok(crate::channel::lazy_channel(&addr.to_string(), tls)?))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: health: {e}", D::NAME);
            return ExitCode::FAILURE;
        }
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    match tokio::time::timeout(Duration::from_secs(5), client.check(request)).await {
        Ok(Ok(resp))
            if resp.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 =>
        {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(Ok(_)) => {
            println!("NOT_SERVING");
            ExitCode::FAILURE
        }
        Ok(Err(status)) => {
            eprintln!("{}: health: {}: {}", D::NAME, status.code(), status.message());
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{}: health: no answer from {addr} within 5 s", D::NAME);
            ExitCode::FAILURE
        }
    }
}
