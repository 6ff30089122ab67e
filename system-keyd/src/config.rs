//! system-keyd's configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skm_runtime::config::{self, ConfigError, TlsSection};
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{LimitsSection, ListenerLimits, MetricsSection, Service, SpiffeId};
use skm_store::config::{EtcdSection, StoreConfig, StoreKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    trust_domain: String,
    data_dir: PathBuf,
    root_keyd: String,
    #[serde(default)]
    store: StoreKind,
    #[serde(default)]
    etcd: Option<EtcdSection>,
    tls: TlsSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    log: LogConfig,
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// This service's SPIFFE id.
    pub id: SpiffeId,
    /// The sled store of wrapped system keys (with `store = "sled"`),
    /// the revocation list and the tier's audit log.
    pub data_dir: PathBuf,
    /// Where the wrapped system keys live: sled in `data_dir` (default) or
    /// etcd (`store = "etcd"`, `[etcd]`).
    pub store: StoreConfig,
    /// root-keyd's `host:port`.
    pub root_keyd: String,
    /// TLS identity (`spiffe://<td>/system-keyd`).
    pub tls: TlsIdentity,
    /// Connection and request limits of the port (`[limits]`).
    pub limits: ListenerLimits,
    /// The metrics listener (`[metrics] listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Logging.
    pub log: LogConfig,
}

impl Config {
    /// Loads `path` with `SKM_SYSTEM_KEYD__*` overrides and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = config::load(path, crate::ENV_PREFIX)?;
        let id = SpiffeId::for_service(&raw.trust_domain, Service::SystemKeyd)
            .map_err(|e| ConfigError::invalid("trust_domain", e))?;
        let tls = raw.tls.load(path, &id)?;
        let limits = raw.limits.validate("limits")?;
        let metrics_listen = raw.metrics.validate("metrics")?;
        if !raw.root_keyd.contains(':') {
            return Err(ConfigError::invalid("root_keyd", format!("{:?} is not host:port", raw.root_keyd)));
        }
        let data_dir = config::resolve(path, &raw.data_dir);
        let store = StoreConfig::from_sections(raw.store, raw.etcd.as_ref(), &data_dir, path)?;
        Ok(Self {
            listen: raw.listen,
            trust_domain: raw.trust_domain,
            id,
            data_dir,
            store,
            root_keyd: raw.root_keyd,
            tls,
            limits,
            metrics_listen,
            log: raw.log,
        })
    }
}
