//! root-keyd's configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skm_runtime::config::{self, ConfigError, TlsSection};
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{LimitsSection, ListenerLimits, MetricsSection, Service, SpiffeId};

/// The TOML file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    trust_domain: String,
    data_dir: PathBuf,
    tls: TlsSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    metrics: MetricsSection,
    seal: RawSeal,
    #[serde(default)]
    log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeal {
    mode: String,
    passphrase_file: Option<PathBuf>,
}

/// How the root key is sealed at rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealConfig {
    /// Shamir unseal shares held by operators.
    Shamir,
    /// Argon2id key from the passphrase in this file (first line).
    Passphrase {
        /// The file (never the passphrase itself).
        file: PathBuf,
    },
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// This service's SPIFFE id (carried by its certificate).
    pub id: SpiffeId,
    /// Where the sealed root key lives.
    pub data_dir: PathBuf,
    /// Loaded TLS identity (must be `spiffe://<td>/root-keyd`).
    pub tls: TlsIdentity,
    /// Seal mode.
    pub seal: SealConfig,
    /// Connection and request limits of the port (`[limits]`).
    pub limits: ListenerLimits,
    /// The metrics listener (`[metrics] listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// Loads `path` with `SKM_ROOT_KEYD__*` overrides and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = config::load(path, crate::ENV_PREFIX)?;
        let id = SpiffeId::for_service(&raw.trust_domain, Service::RootKeyd)
            .map_err(|e| ConfigError::invalid("trust_domain", e))?;
        let tls = raw.tls.load(path, &id)?;
        let limits = raw.limits.validate("limits")?;
        let metrics_listen = raw.metrics.validate("metrics")?;
        let seal = match raw.seal.mode.as_str() {
            "shamir" => SealConfig::Shamir,
            "passphrase" => {
                let file = raw.seal.passphrase_file.ok_or_else(|| {
                    ConfigError::invalid("seal.passphrase_file", "required when seal.mode = \"passphrase\"")
                })?;
                let file = config::resolve(path, &file);
                if !file.is_file() {
                    return Err(ConfigError::invalid(
                        "seal.passphrase_file",
                        format!("{} is not a readable file", file.display()),
                    ));
                }
                SealConfig::Passphrase { file }
            }
            other => {
                return Err(ConfigError::invalid(
                    "seal.mode",
                    format!("{other:?} is not one of \"shamir\", \"passphrase\""),
                ));
            }
        };
        Ok(Self {
            listen: raw.listen,
            data_dir: config::resolve(path, &raw.data_dir),
            trust_domain: raw.trust_domain,
            id,
            tls,
            seal,
            limits,
            metrics_listen,
            log: raw.log,
        })
    }
}
