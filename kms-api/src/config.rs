//! kms-api's configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use skm_runtime::config::{self, ConfigError, TlsSection};
use skm_runtime::proxy_protocol::TrustedProxies;
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{LimitsSection, ListenerLimits, MetricsSection, Service, SpiffeId};

use skm_store::config::{EtcdSection, StoreConfig, StoreKind};

use crate::audit::AuditSync;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    user_listen: SocketAddr,
    admin_listen: SocketAddr,
    trust_domain: String,
    data_dir: PathBuf,
    root_keyd: String,
    system_keyd: String,
    #[serde(default = "default_refresh")]
    system_key_refresh_secs: u64,
    #[serde(default = "default_cache")]
    cache_entries: usize,
    #[serde(default = "default_max_key_versions")]
    max_key_versions: u32,
    #[serde(default = "default_maintenance")]
    maintenance_interval_secs: u64,
    #[serde(default = "default_reseal_rate")]
    reseal_records_per_sec: u32,
    #[serde(default)]
    audit_dir: Option<PathBuf>,
    #[serde(default = "default_store_cache_mb")]
    store_cache_mb: u64,
    #[serde(default)]
    store: StoreKind,
    #[serde(default)]
    etcd: Option<EtcdSection>,
    #[serde(default)]
    replica: Option<String>,
    #[serde(default = "default_cache_max_staleness")]
    cache_max_staleness_ms: u64,
    #[serde(default = "default_maintenance_lease")]
    maintenance_lease_secs: u64,
    #[serde(default = "default_audit_sync")]
    audit_sync: String,
    #[serde(default = "default_audit_sync_interval")]
    audit_sync_interval_ms: u64,
    #[serde(default = "default_audit_anchor_interval")]
    audit_anchor_interval_ms: u64,
    #[serde(default)]
    user_proxy_protocol_from: Vec<String>,
    #[serde(default)]
    rest_listen: Option<SocketAddr>,
    #[serde(default)]
    rest_proxy_protocol_from: Vec<String>,
    #[serde(default)]
    rest_limits: LimitsSection,
    #[serde(default)]
    console_listen: Option<SocketAddr>,
    #[serde(default)]
    console_url: Option<String>,
    #[serde(default = "default_console_idle")]
    console_session_idle_secs: u64,
    #[serde(default = "default_console_max")]
    console_session_max_secs: u64,
    #[serde(default)]
    console_limits: LimitsSection,
    tls: TlsSection,
    #[serde(default)]
    user_limits: LimitsSection,
    #[serde(default)]
    admin_limits: LimitsSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    log: LogConfig,
}

fn default_console_idle() -> u64 {
    15 * 60
}

fn default_console_max() -> u64 {
    8 * 3600
}

fn default_reseal_rate() -> u32 {
    500
}

fn default_refresh() -> u64 {
    30
}

fn default_cache() -> usize {
    100_000
}

fn default_max_key_versions() -> u32 {
    crate::model::DEFAULT_MAX_KEY_VERSIONS
}

fn default_maintenance() -> u64 {
    60
}

fn default_store_cache_mb() -> u64 {
    skm_store::SledStore::DEFAULT_CACHE_BYTES / (1024 * 1024)
}

fn default_maintenance_lease() -> u64 {
    10
}

fn default_cache_max_staleness() -> u64 {
    1000
}

/// The longest replica name.
const MAX_REPLICA_NAME: usize = 64;

/// A replica's name: 1..=64 of `a-z`, `0-9` and `-`.
fn replica_name(store: &StoreConfig, replica: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(name) = replica else {
        if matches!(store, StoreConfig::Etcd(_)) {
            return Err(ConfigError::invalid(
                "replica",
                "is required with store = \"etcd\": a name unique among the replicas sharing the etcd prefix (1..=64 of a-z, 0-9, -)",
            ));
        }
        return Ok(None);
    };
    let good = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > MAX_REPLICA_NAME || !name.chars().all(good) {
        return Err(ConfigError::invalid(
            "replica",
            format!("is {name:?}; must be 1..={MAX_REPLICA_NAME} of a-z, 0-9, -"),
        ));
    }
    Ok(Some(name.to_owned()))
}

/// `cache_max_staleness_ms`: 100..=60000.
fn staleness_bound(ms: u64) -> Result<Duration, ConfigError> {
    if !(100..=60_000).contains(&ms) {
        return Err(ConfigError::invalid("cache_max_staleness_ms", format!("is {ms}; must be 100..=60000")));
    }
    Ok(Duration::from_millis(ms))
}

fn default_audit_sync() -> String {
    "fsync".into()
}

fn default_audit_sync_interval() -> u64 {
    100
}

fn default_audit_anchor_interval() -> u64 {
    100
}

/// Validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The user port (applications).
    pub user_listen: SocketAddr,
    /// The admin port (operators).
    pub admin_listen: SocketAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// This service's SPIFFE id.
    pub id: SpiffeId,
    /// The sled store of encrypted records (with `store = "sled"`), and
    /// the audit log's default home.
    pub data_dir: PathBuf,
    /// Where the encrypted records live: sled in `data_dir` (default) or
    /// etcd (`store = "etcd"`, `[etcd]`).
    pub store: StoreConfig,
    /// This replica's name among those sharing an etcd store (`replica`,
    /// required there): its audit anchor is its own.
    pub replica: Option<String>,
    /// On a shared store, how old the watch's last report may be before
    /// the cache stops answering (`cache_max_staleness_ms`, 100..=60000,
    /// default 1000).
    pub cache_max_staleness: Duration,
    /// On a shared store, the lease of the replica elected to run the
    /// maintenance pass and the re-seal (`maintenance_lease_secs`,
    /// 2..=300, default 10): how long the others wait after it crashes.
    pub maintenance_lease: Duration,
    /// root-keyd's `host:port`.
    pub root_keyd: String,
    /// system-keyd's `host:port`.
    pub system_keyd: String,
    /// How often to look for new system key versions once booted.
    pub system_key_refresh: Duration,
    /// Decrypted keys and keystores kept in memory, at most.
    pub cache_entries: usize,
    /// The most versions a key may have: rotation (manual or automatic)
    /// is refused beyond it. 1..=[`crate::model::MAX_KEY_VERSIONS`].
    pub max_key_versions: u32,
    /// MiB of the store's pages (sealed records) sled keeps in memory.
    pub store_cache_mb: u64,
    /// How often due rotations and deletions are carried out.
    pub maintenance_interval: Duration,
    /// The most records a second the background re-seal looks at after
    /// a system key rotation (1..=100000, default 500).
    pub reseal_records_per_sec: u32,
    /// Where the audit log lives (default: `<data_dir>/audit`).
    pub audit_dir: PathBuf,
    /// When an audit entry counts as written: `fsync` (default, on disk
    /// before the reply) or `os` (in the kernel before the reply, synced
    /// every `audit_sync_interval_ms`).
    pub audit_sync: AuditSync,
    /// The least time between two writes of the audit anchor
    /// (`audit_anchor_interval_ms`, 0..=10000, default 100; 0: after
    /// every batch). Entries acknowledged since the last anchor write are
    /// the ones a cut of the log and its journal would take unnoticed
    /// (SECURITY.md, "Audit log").
    pub audit_anchor_interval: Duration,
    /// Load balancers allowed (and required) to send a PROXY protocol v2
    /// header on the user port; empty: nobody.
    pub user_proxy_protocol_from: Option<TrustedProxies>,
    /// The REST/JSON listener (`rest_listen`); `None`: off.
    pub rest_listen: Option<SocketAddr>,
    /// Load balancers allowed (and required) to send a PROXY protocol v2
    /// header on the REST listener; empty: nobody.
    pub rest_proxy_protocol_from: Option<TrustedProxies>,
    /// The web console (`console_listen`, `console_url`,
    /// `console_session_*_secs`); `None`: off.
    pub console: Option<ConsoleConfig>,
    /// Connection and request limits of the REST listener
    /// (`[rest_limits]`; body limits are fitted to each call in the code).
    pub rest_limits: ListenerLimits,
    /// TLS identity (`spiffe://<td>/kms-api`), used on both ports and
    /// towards the other tiers.
    pub tls: TlsIdentity,
    /// Connection and request limits of the user port (`[user_limits]`),
    /// with request sizes fitted to each RPC (`user_request_sizes`).
    pub user_limits: ListenerLimits,
    /// Connection and request limits of the admin port (`[admin_limits]`).
    pub admin_limits: ListenerLimits,
    /// The metrics listener (`[metrics] listen`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Logging.
    pub log: LogConfig,
}

/// Request body limits of the user port's RPCs, from the domain's input
/// limits (`model.rs`) plus room for the key id and protobuf/gRPC framing;
/// RPCs not listed get `max_request_bytes`.
fn user_request_sizes(limits: ListenerLimits) -> ListenerLimits {
    use crate::model::{
        MAX_AAD, MAX_BATCH, MAX_CIPHERTEXT, MAX_MAC, MAX_MAC_MESSAGE, MAX_PLAINTEXT, MAX_SIGN_MESSAGE, MAX_SIGNATURE,
    };
    const FRAMING: usize = 1024;
    const ITEM_FRAMING: usize = 128;
    macro_rules! path {
        ($method:literal) => {
            concat!("/skm.api.v1.KeyService/", $method)
        };
    }
    limits
        .with_request_size(&[path!("Encrypt")], MAX_PLAINTEXT + MAX_AAD + FRAMING)
        .with_request_size(&[path!("Decrypt"), path!("ReEncrypt")], MAX_CIPHERTEXT + MAX_AAD + FRAMING)
        .with_request_size(&[path!("GenerateDataKey"), path!("GenerateDataKeyWithoutPlaintext")], MAX_AAD + FRAMING)
        .with_request_size(&[path!("BatchEncrypt")], MAX_BATCH * (MAX_PLAINTEXT + MAX_AAD + ITEM_FRAMING) + FRAMING)
        .with_request_size(&[path!("BatchDecrypt")], MAX_BATCH * (MAX_CIPHERTEXT + MAX_AAD + ITEM_FRAMING) + FRAMING)
        .with_request_size(&[path!("Sign")], MAX_SIGN_MESSAGE + FRAMING)
        .with_request_size(&[path!("Verify")], MAX_SIGN_MESSAGE + MAX_SIGNATURE + FRAMING)
        .with_request_size(&[path!("GenerateMac")], MAX_MAC_MESSAGE + FRAMING)
        .with_request_size(&[path!("VerifyMac")], MAX_MAC_MESSAGE + MAX_MAC + FRAMING)
        .with_request_size(&[path!("GetPublicKey"), path!("GetSecret"), path!("WhoAmI")], FRAMING)
}

impl Config {
    /// Loads `path` with `SKM_KMS_API__*` overrides and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = config::load(path, crate::ENV_PREFIX)?;
        let id = SpiffeId::for_service(&raw.trust_domain, Service::KmsApi)
            .map_err(|e| ConfigError::invalid("trust_domain", e))?;
        let tls = raw.tls.load(path, &id)?;
        for (field, value) in [("root_keyd", &raw.root_keyd), ("system_keyd", &raw.system_keyd)] {
            if !value.contains(':') {
                return Err(ConfigError::invalid(field, format!("{value:?} is not host:port")));
            }
        }
        if raw.user_listen == raw.admin_listen && raw.user_listen.port() != 0 {
            return Err(ConfigError::invalid("admin_listen", "must differ from user_listen"));
        }
        if !(1..=86_400).contains(&raw.system_key_refresh_secs) {
            return Err(ConfigError::invalid("system_key_refresh_secs", "must be 1..=86400"));
        }
        if !(1..=86_400).contains(&raw.maintenance_interval_secs) {
            return Err(ConfigError::invalid("maintenance_interval_secs", "must be 1..=86400"));
        }
        if !(1..=100_000).contains(&raw.reseal_records_per_sec) {
            return Err(ConfigError::invalid("reseal_records_per_sec", "must be 1..=100000"));
        }
        if raw.cache_entries < 16 {
            return Err(ConfigError::invalid("cache_entries", "must be at least 16"));
        }
        if !(1..=crate::model::MAX_KEY_VERSIONS).contains(&raw.max_key_versions) {
            return Err(ConfigError::invalid(
                "max_key_versions",
                format!("is {}; must be 1..={}", raw.max_key_versions, crate::model::MAX_KEY_VERSIONS),
            ));
        }
        if !(8..=65_536).contains(&raw.store_cache_mb) {
            return Err(ConfigError::invalid(
                "store_cache_mb",
                format!("is {}; must be 8..=65536", raw.store_cache_mb),
            ));
        }
        let audit_sync = match raw.audit_sync.as_str() {
            "fsync" => AuditSync::Fsync,
            "os" if (1..=10_000).contains(&raw.audit_sync_interval_ms) => {
                AuditSync::Os { interval: Duration::from_millis(raw.audit_sync_interval_ms) }
            }
            "os" => {
                return Err(ConfigError::invalid(
                    "audit_sync_interval_ms",
                    format!("is {}; must be 1..=10000", raw.audit_sync_interval_ms),
                ));
            }
            other => {
                return Err(ConfigError::invalid("audit_sync", format!("is {other:?}; must be \"fsync\" or \"os\"")));
            }
        };
        if raw.audit_anchor_interval_ms > 10_000 {
            return Err(ConfigError::invalid(
                "audit_anchor_interval_ms",
                format!("is {}; must be 0..=10000", raw.audit_anchor_interval_ms),
            ));
        }
        let trusted = |field: &str, list: &[String]| -> Result<Option<TrustedProxies>, ConfigError> {
            if list.is_empty() {
                return Ok(None);
            }
            TrustedProxies::parse(list).map(Some).map_err(|e| ConfigError::invalid(field, e))
        };
        let user_proxy_protocol_from = trusted("user_proxy_protocol_from", &raw.user_proxy_protocol_from)?;
        let rest_proxy_protocol_from = trusted("rest_proxy_protocol_from", &raw.rest_proxy_protocol_from)?;
        if let Some(rest) = raw.rest_listen {
            for (field, other) in [("user_listen", raw.user_listen), ("admin_listen", raw.admin_listen)] {
                if rest == other && rest.port() != 0 {
                    return Err(ConfigError::invalid("rest_listen", format!("must differ from {field}")));
                }
            }
        }
        let rest_limits = raw.rest_limits.validate("rest_limits")?;
        let console = console_config(&raw)?;
        let user_limits = user_request_sizes(raw.user_limits.validate("user_limits")?);
        let admin_limits = raw.admin_limits.validate("admin_limits")?;
        let metrics_listen = raw.metrics.validate("metrics")?;
        let data_dir = config::resolve(path, &raw.data_dir);
        let store = StoreConfig::from_sections(raw.store, raw.etcd.as_ref(), &data_dir, path)?;
        let replica = replica_name(&store, raw.replica.as_deref())?;
        let cache_max_staleness = staleness_bound(raw.cache_max_staleness_ms)?;
        if !(2..=300).contains(&raw.maintenance_lease_secs) {
            return Err(ConfigError::invalid(
                "maintenance_lease_secs",
                format!("is {}; must be 2..=300", raw.maintenance_lease_secs),
            ));
        }
        let audit_dir = raw.audit_dir.map_or_else(|| data_dir.join("audit"), |d| config::resolve(path, &d));
        Ok(Self {
            user_listen: raw.user_listen,
            admin_listen: raw.admin_listen,
            trust_domain: raw.trust_domain,
            id,
            data_dir,
            store,
            replica,
            cache_max_staleness,
            maintenance_lease: Duration::from_secs(raw.maintenance_lease_secs),
            audit_dir,
            audit_sync,
            audit_anchor_interval: Duration::from_millis(raw.audit_anchor_interval_ms),
            user_proxy_protocol_from,
            rest_listen: raw.rest_listen,
            rest_proxy_protocol_from,
            rest_limits,
            console,
            root_keyd: raw.root_keyd,
            system_keyd: raw.system_keyd,
            system_key_refresh: Duration::from_secs(raw.system_key_refresh_secs),
            cache_entries: raw.cache_entries,
            max_key_versions: raw.max_key_versions,
            store_cache_mb: raw.store_cache_mb,
            maintenance_interval: Duration::from_secs(raw.maintenance_interval_secs),
            reseal_records_per_sec: raw.reseal_records_per_sec,
            tls,
            user_limits,
            admin_limits,
            metrics_listen,
            log: raw.log,
        })
    }
}

/// The web console's listener and sessions.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// Where it listens (HTTPS).
    pub listen: SocketAddr,
    /// Its base URL as browsers reach it, for sign-in links and the
    /// Origin check (`console_url`; default `https://localhost:<port>` for
    /// a loopback or unspecified address, else `https://<address>`).
    pub url: String,
    /// A session unused this long ends (60..=86400 s, default 900).
    pub idle_secs: u64,
    /// A session ends this long after sign-in (≥ the idle timeout,
    /// ≤ 7 days, default 8 h).
    pub max_secs: u64,
    /// Connection and request limits (`[console_limits]`).
    pub limits: ListenerLimits,
}

fn console_config(raw: &RawConfig) -> Result<Option<ConsoleConfig>, ConfigError> {
    let Some(listen) = raw.console_listen else {
        if raw.console_url.is_some() {
            return Err(ConfigError::invalid("console_url", "is set but console_listen is not"));
        }
        return Ok(None);
    };
    for (field, other) in [
        ("user_listen", Some(raw.user_listen)),
        ("admin_listen", Some(raw.admin_listen)),
        ("rest_listen", raw.rest_listen),
    ] {
        if Some(listen) == other && listen.port() != 0 {
            return Err(ConfigError::invalid("console_listen", format!("must differ from {field}")));
        }
    }
    let url = match &raw.console_url {
        Some(url) => {
            let url = url.trim_end_matches('/');
            let rest = url.strip_prefix("https://").unwrap_or_default();
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                return Err(ConfigError::invalid(
                    "console_url",
                    format!("is {url:?}; must be https://host[:port] with no path"),
                ));
            }
            url.to_owned()
        }
        None if listen.ip().is_loopback() || listen.ip().is_unspecified() => {
            format!("https://localhost:{}", listen.port())
        }
        None => format!("https://{listen}"),
    };
    let idle_secs = raw.console_session_idle_secs;
    if !(60..=86_400).contains(&idle_secs) {
        return Err(ConfigError::invalid("console_session_idle_secs", format!("is {idle_secs}; must be 60..=86400")));
    }
    let max_secs = raw.console_session_max_secs;
    if max_secs < idle_secs || max_secs > 7 * 86_400 {
        return Err(ConfigError::invalid(
            "console_session_max_secs",
            format!("is {max_secs}; must be console_session_idle_secs ({idle_secs})..=604800"),
        ));
    }
    let limits = raw.console_limits.validate("console_limits")?;
    Ok(Some(ConsoleConfig { listen, url, idle_secs, max_secs, limits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: serde_json::Value) -> RawConfig {
        let mut base = serde_json::json!({
            "user_listen": "127.0.0.1:7700", "admin_listen": "127.0.0.1:7701", "trust_domain": "skm.local",
            "data_dir": "d", "root_keyd": "r:1", "system_keyd": "s:1",
            "tls": { "ca": "ca.pem", "cert": "c.pem", "key": "k.pem" },
        });
        for (k, v) in extra.as_object().expect("an object") {
            base[k] = v.clone();
        }
        serde_json::from_value(base).expect("a raw config")
    }

    fn refusal(extra: serde_json::Value) -> String {
        console_config(&raw(extra)).expect_err("refused").to_string()
    }

    #[test]
    fn the_console_is_off_unless_listening_and_its_settings_are_checked() {
        assert!(console_config(&raw(serde_json::json!({}))).unwrap().is_none());
        let on = console_config(&raw(serde_json::json!({ "console_listen": "127.0.0.1:7708" }))).unwrap().unwrap();
        assert_eq!(on.url, "https://localhost:7708");
        assert_eq!((on.idle_secs, on.max_secs), (900, 28_800));
        let public = serde_json::json!({ "console_listen": "10.1.2.3:443", "console_url": "https://kms.example.com/" });
        assert_eq!(console_config(&raw(public)).unwrap().unwrap().url, "https://kms.example.com");
        let bare = console_config(&raw(serde_json::json!({ "console_listen": "10.1.2.3:8443" }))).unwrap().unwrap();
        assert_eq!(bare.url, "https://10.1.2.3:8443");

        assert!(refusal(serde_json::json!({ "console_url": "https://x" })).contains("console_listen is not"));
        assert!(
            refusal(serde_json::json!({ "console_listen": "127.0.0.1:7701" }))
                .contains("must differ from admin_listen")
        );
        let http = refusal(serde_json::json!({ "console_listen": "127.0.0.1:7708", "console_url": "http://x" }));
        assert!(http.contains("console_url") && http.contains("https://host[:port]"), "{http}");
        let idle = refusal(serde_json::json!({ "console_listen": "127.0.0.1:7708", "console_session_idle_secs": 5 }));
        assert!(idle.contains("console_session_idle_secs") && idle.contains("60..=86400"), "{idle}");
        let max = refusal(serde_json::json!({
            "console_listen": "127.0.0.1:7708", "console_session_idle_secs": 600, "console_session_max_secs": 300
        }));
        assert!(max.contains("console_session_max_secs") && max.contains("(600)..=604800"), "{max}");
    }

    #[test]
    fn a_replica_on_etcd_needs_a_name_and_the_staleness_bound_is_checked() {
        let sled = StoreConfig::Sled { dir: PathBuf::from("d") };
        assert_eq!(replica_name(&sled, None).unwrap(), None);
        assert_eq!(replica_name(&sled, Some("kms-api-1")).unwrap().as_deref(), Some("kms-api-1"));
        let etcd = StoreConfig::Etcd(skm_store::etcd::EtcdConfig {
            endpoints: vec!["127.0.0.1:2379".into()],
            tls: skm_runtime::tls::TlsFiles {
                ca: PathBuf::from("ca.pem"),
                cert: PathBuf::from("c.pem"),
                key: PathBuf::from("k.pem"),
            },
            prefix: b"skm/".to_vec(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        });
        let missing = replica_name(&etcd, None).unwrap_err().to_string();
        assert!(missing.contains("replica") && missing.contains("store = \"etcd\""), "{missing}");
        for bad in ["", "Kms", "a_b", &"x".repeat(65)] {
            let refused = replica_name(&etcd, Some(bad)).unwrap_err().to_string();
            assert!(refused.contains("1..=64 of a-z, 0-9, -"), "{bad:?}: {refused}");
        }
        assert_eq!(replica_name(&etcd, Some(&"x".repeat(64))).unwrap().map(|n| n.len()), Some(64));
        assert_eq!(staleness_bound(1000).unwrap(), Duration::from_secs(1));
        for bad in [0, 99, 60_001] {
            let refused = staleness_bound(bad).unwrap_err().to_string();
            assert!(refused.contains("cache_max_staleness_ms") && refused.contains("100..=60000"), "{refused}");
        }
    }
}
