//! root-keyd: holds SKM's root key.
//!
//! The root key is created once (`skm root init`, or at first start in
//! passphrase mode), stored only sealed ([`sealing`]), and used for two
//! things: wrapping fresh system keys for system-keyd, and unwrapping a
//! system key for kms-api, sealed to kms-api's per-boot X25519 key (HPKE).
//! While sealed, every key RPC answers UNAVAILABLE and health is NOT_SERVING.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use skm_proto::root::v1::root_key_service_server::RootKeyServiceServer;
use skm_runtime::config::ConfigError;
use skm_runtime::daemon::{Daemon, RunError};
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{AccessPolicy, Allow, ClientTrust, Role, Service, Shutdown, SpiffeId};

mod config;
mod grpc;
pub mod pkcs11;
pub mod sealing;

use sealing::Sealer;

pub use config::{Config, DEFAULT_KEY_LABEL, SealConfig};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SKM_ROOT_KEYD";

const SERVICE: &str = "skm.root.v1.RootKeyService";

/// Who may call what on root-keyd (DESIGN §3).
pub fn access_policy() -> AccessPolicy {
    let m = |name: &str| format!("/{SERVICE}/{name}");
    AccessPolicy::new()
        .with_health_and_reflection()
        .allow(&m("Init"), &[Allow::Operator(Role::Admin)])
        .allow(&m("Unseal"), &[Allow::Operator(Role::Admin)])
        .allow(
            &m("SealStatus"),
            &[Allow::Operator(Role::Auditor), Allow::Service(Service::SystemKeyd), Allow::Service(Service::KmsApi)],
        )
        .allow(&m("GenerateSystemKey"), &[Allow::Service(Service::SystemKeyd)])
        .allow(&m("UnwrapSystemKey"), &[Allow::Service(Service::KmsApi)])
        .allow(&m("RotateRootKey"), &[Allow::Operator(Role::Admin)])
        .allow(&m("StartRekey"), &[Allow::Operator(Role::Admin)])
        .allow(&m("RevokeOperator"), &[Allow::Operator(Role::Admin)])
        .allow(&m("VerifyAudit"), &[Allow::Operator(Role::Auditor)])
        .allow(&m("SubmitRekeyShare"), &[Allow::Operator(Role::Admin)])
        .allow(&m("RewrapSystemKey"), &[Allow::Service(Service::SystemKeyd)])
        .allow(&m("DestroyRootKeys"), &[Allow::Service(Service::SystemKeyd)])
}

/// A started root-keyd.
#[derive(Debug)]
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound metrics listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    sealer: Arc<Sealer>,
    unwrapped: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Waits until the server has shut down.
    pub async fn wait(self) -> Result<(), RunError> {
        self.task.await.map_err(|e| RunError::from(e.to_string()))?
    }

    /// How many system keys this root-keyd has unwrapped since start.
    pub fn unwrap_count(&self) -> u64 {
        self.unwrapped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the root key is sealed (or not yet created).
    pub fn is_sealed(&self) -> bool {
        self.sealer.root_key().is_err()
    }

    /// The root key bytes, for the tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub fn danger_root_key(&self) -> Option<[u8; 32]> {
        match &*self.sealer.root_key().ok()? {
            sealing::Root::Memory(key) => Some(*key.danger_material().danger_expose()),
            sealing::Root::Token(_) => None,
        }
    }
}

/// Opens the seal, binds the port and starts serving.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, RunError> {
    let sealer = Arc::new(Sealer::open(&config.data_dir, config.seal.clone())?);
    let revoked = Arc::new(
        skm_runtime::revocations::FileRevocations::open(&config.data_dir).map_err(|e| RunError::from(e.to_string()))?,
    );
    let listener = skm_runtime::serve::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let mut routes = tonic::service::Routes::builder();
    let health = skm_runtime::health::add_health_and_reflection(&mut routes, &[SERVICE]).await;
    health.set(sealer.root_key().is_ok()).await;
    let unwrapped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let audit = skm_runtime::tier_audit::TierAudit::open(&config.data_dir, "root-keyd")
        .map_err(|e| RunError::from(e.to_string()))?;
    let metrics = skm_runtime::Metrics::new();
    register_metrics(&metrics, &sealer, &health, &unwrapped);
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let listener = skm_runtime::metrics::bind(addr).await?;
            let bound = listener.local_addr()?;
            tokio::spawn(skm_runtime::metrics::serve(listener, metrics.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "root-keyd metrics listening");
            Some(bound)
        }
        None => None,
    };
    routes.add_service(RootKeyServiceServer::new(grpc::RootKeyApi {
        sealer: sealer.clone(),
        health,
        unwrapped: unwrapped.clone(),
        revoked: revoked.clone(),
        audit: audit.clone(),
    }));
    let tls = config.tls.mtls_server_config()?;
    let trust = ClientTrust::Deployment { trust_domain: config.trust_domain.clone() };
    tracing::info!(%addr, seal = ?sealer.status(), "root-keyd listening");
    let limits = config.limits.clone();
    let task = tokio::spawn(async move {
        let options = skm_runtime::ListenOptions {
            limits,
            metrics: Some(metrics.listener("rpc")),
            audit: Some(audit),
            ..Default::default()
        };
        let policy = access_policy().with_revocations(revoked);
        skm_runtime::serve::serve_with(listener, tls, trust, policy, routes.routes(), shutdown, options).await?;
        Ok(())
    });
    Ok(Running { addr, metrics_addr, sealer, unwrapped, task })
}

/// root-keyd's own metrics, read at each scrape: seal state, readiness and
/// system keys unwrapped.
fn register_metrics(
    metrics: &skm_runtime::Metrics,
    sealer: &Arc<Sealer>,
    health: &skm_runtime::health::Health,
    unwrapped: &Arc<std::sync::atomic::AtomicU64>,
) {
    let s = sealer.clone();
    metrics.gauge_fn("skm_root_key_sealed", "1 while the root key is sealed or not yet created", &[], move || {
        f64::from(u8::from(s.status().sealed))
    });
    let s = sealer.clone();
    metrics.gauge_fn("skm_root_key_initialized", "1 once a root key exists", &[], move || {
        f64::from(u8::from(s.status().initialized))
    });
    let h = health.clone();
    metrics.gauge_fn("skm_ready", "1 while health says SERVING", &[], move || f64::from(u8::from(h.is_serving())));
    let u = unwrapped.clone();
    metrics.counter_fn("skm_system_keys_unwrapped", "System keys unwrapped for kms-api since start", &[], move || {
        u.load(std::sync::atomic::Ordering::Relaxed)
    });
}

/// The [`Daemon`] glue for `main`.
#[derive(Debug)]
pub struct RootKeyd;

impl Daemon for RootKeyd {
    const NAME: &'static str = "root-keyd";
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    type Config = Config;

    fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load(path)
    }

    fn log_config(config: &Config) -> &LogConfig {
        &config.log
    }

    fn health_target(config: &Config) -> (SocketAddr, TlsIdentity, SpiffeId) {
        (config.listen, config.tls.clone(), config.id.clone())
    }

    async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
        start(config, shutdown).await?.wait().await
    }
}
