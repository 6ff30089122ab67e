//! system-keyd: keeps SKM's system keys, only ever wrapped by the root key.
//!
//! On first start it asks root-keyd for system key version 1 (retrying with
//! backoff until root-keyd is reachable and unsealed); until it holds a
//! version its health is NOT_SERVING. It serves the wrapped versions and the
//! active version number to kms-api, and rotates (new version, made active)
//! for operators.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::system_key_service_server::SystemKeyServiceServer;
use skm_runtime::config::ConfigError;
use skm_runtime::daemon::{Daemon, RunError};
use skm_runtime::health::Health;
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{AccessPolicy, Allow, ClientTrust, Role, Service, Shutdown, SpiffeId};
use tonic::transport::Channel;

mod config;
mod grpc;
pub mod versions;

pub use config::Config;
use skm_store::AnyStore;
use versions::{VersionsError, WrappedVersion, WrappedVersions};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SKM_SYSTEM_KEYD";

const SERVICE: &str = "skm.system.v1.SystemKeyService";

/// Who may call what on system-keyd (DESIGN §3).
pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new()
        .with_health_and_reflection()
        .allow(&format!("/{SERVICE}/GetWrappedSystemKeys"), &[Allow::Service(Service::KmsApi)])
        .allow(&format!("/{SERVICE}/RotateSystemKey"), &[Allow::Operator(Role::Admin)])
        .allow(&format!("/{SERVICE}/RewrapSystemKeys"), &[Allow::Operator(Role::Admin)])
        .allow(&format!("/{SERVICE}/RevokeOperator"), &[Allow::Operator(Role::Admin)])
        .allow(&format!("/{SERVICE}/RetireSystemKey"), &[Allow::Service(Service::KmsApi)])
        .allow(&format!("/{SERVICE}/VerifyAudit"), &[Allow::Operator(Role::Auditor)])
}

/// The state shared by the handlers and the bootstrap task.
pub(crate) struct SystemKeys {
    versions: WrappedVersions<AnyStore>,
    root: RootKeyServiceClient<Channel>,
    /// Serialises rotations in this process (CAS still guards the store).
    rotation: tokio::sync::Mutex<()>,
    health: Health,
    /// The active version and the number of versions, for metrics.
    active_version: skm_runtime::metrics::Gauge,
    version_count: skm_runtime::metrics::Gauge,
}

/// Why a new version could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RotateError {
    /// root-keyd refused or is unreachable.
    #[error("root-keyd: {}", .0.message())]
    Root(tonic::Status),
    /// root-keyd answered without a key.
    #[error("root-keyd returned no key")]
    Empty,
    /// The store failed.
    #[error(transparent)]
    Versions(#[from] VersionsError),
    /// [`MAX_SYSTEM_KEY_VERSIONS`] reached.
    #[error(
        "system-keyd holds {0} system key versions, the most it keeps (MAX_SYSTEM_KEY_VERSIONS); a rotation is \
         refused so that repeated calls can't grow every tier's keyring without bound"
    )]
    Cap(usize),
}

/// The most system key versions system-keyd stores. A rotation a month for
/// eighty years is under a thousand; every kms-api holds every version
/// stored (retired versions are deleted and no longer count).
pub const MAX_SYSTEM_KEY_VERSIONS: usize = 1_000;

/// The version a rotation makes and the revision `active` must still have,
/// or why there is none.
fn next_version(snapshot: &versions::Snapshot) -> Result<(u32, Option<u64>), RotateError> {
    if snapshot.versions.len() >= MAX_SYSTEM_KEY_VERSIONS {
        return Err(RotateError::Cap(snapshot.versions.len()));
    }
    Ok(match snapshot.active {
        Some((active, rev)) => (active + 1, Some(rev)),
        None => (1, None),
    })
}

impl SystemKeys {
    /// Generates version `active + 1` with root-keyd and makes it active.
    pub(crate) async fn rotate(&self) -> Result<u32, RotateError> {
        let _guard = self.rotation.lock().await;
        let snapshot = self.versions.snapshot().await?;
        let (next, expected) = next_version(&snapshot)?;
        let resp = self
            .root
            .clone()
            .generate_system_key(skm_proto::root::v1::GenerateSystemKeyRequest { version: next })
            .await
            .map_err(RotateError::Root)?
            .into_inner();
        let key = resp.key.ok_or(RotateError::Empty)?;
        if key.version != next {
            return Err(RotateError::Empty);
        }
        let wrapped = WrappedVersion { version: next, root_key_id: key.root_key_id, wrapped: key.wrapped };
        self.versions.add_active(&wrapped, expected).await?;
        self.active_version.set(i64::from(next));
        self.version_count.set(i64::try_from(snapshot.versions.len() + 1).unwrap_or(i64::MAX));
        self.health.set(true).await;
        tracing::info!(version = next, "system key version added and made active");
        Ok(next)
    }

    /// Has every version not under root-keyd's current root key rewrapped,
    /// stores them in one batch (CAS on each entry), then has root-keyd
    /// destroy the root key versions nothing here is wrapped under. Returns
    /// the root key id, how many were rewrapped and what was destroyed.
    pub(crate) async fn rewrap(&self) -> Result<(String, u32, Vec<String>), RotateError> {
        use skm_proto::root::v1 as root_pb;
        let _guard = self.rotation.lock().await;
        let mut root = self.root.clone();
        let current =
            root.seal_status(root_pb::SealStatusRequest {}).await.map_err(RotateError::Root)?.into_inner().root_key_id;
        let mut rewrapped = Vec::new();
        let mut under = std::collections::BTreeSet::new();
        for (version, revision) in self.versions.list_with_revisions().await? {
            if version.root_key_id == current {
                under.insert(current.clone());
                continue;
            }
            let request = root_pb::RewrapSystemKeyRequest {
                key: Some(root_pb::WrappedSystemKey {
                    version: version.version,
                    root_key_id: version.root_key_id.clone(),
                    wrapped: version.wrapped.clone(),
                }),
            };
            let key = root
                .rewrap_system_key(request)
                .await
                .map_err(RotateError::Root)?
                .into_inner()
                .key
                .ok_or(RotateError::Empty)?;
            if key.version != version.version {
                return Err(RotateError::Empty);
            }
            under.insert(key.root_key_id.clone());
            rewrapped.push((
                WrappedVersion { version: key.version, root_key_id: key.root_key_id, wrapped: key.wrapped },
                revision,
            ));
        }
        self.versions.replace(&rewrapped).await?;
        let count = u32::try_from(rewrapped.len()).unwrap_or(u32::MAX);
        tracing::info!(
            root_key_id = current,
            rewrapped = count,
            "system key versions rewrapped under the current root key"
        );
        // Only now is nothing stored here under the older root keys.
        let destroyed = root
            .destroy_root_keys(root_pb::DestroyRootKeysRequest { keep_root_key_ids: under.into_iter().collect() })
            .await
            .map_err(RotateError::Root)?
            .into_inner()
            .destroyed_root_key_ids;
        Ok((current, count, destroyed))
    }

    /// Deletes a retired version (kms-api has checked that nothing is
    /// sealed under it); `None` when it is the active one.
    pub(crate) async fn retire(&self, version: u32) -> Result<Option<bool>, VersionsError> {
        let _guard = self.rotation.lock().await;
        let removed = self.versions.remove(version).await?;
        if removed == Some(true) {
            tracing::warn!(version, "system key version retired and deleted");
            if let Ok(s) = self.versions.snapshot().await {
                self.version_count.set(i64::try_from(s.versions.len()).unwrap_or(i64::MAX));
            }
        }
        Ok(removed)
    }

    /// Obtains version 1 if the store has none, retrying until it succeeds
    /// or shutdown.
    async fn bootstrap(self: Arc<Self>, shutdown: Shutdown) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.versions.snapshot().await {
                Ok(s) if s.active.is_some() => {
                    self.active_version.set(s.active.map_or(0, |(v, _)| i64::from(v)));
                    self.version_count.set(i64::try_from(s.versions.len()).unwrap_or(i64::MAX));
                    self.health.set(true).await;
                    return;
                }
                Ok(_) => match self.rotate().await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "cannot obtain system key version 1 yet"),
                },
                Err(e) => tracing::error!(error = %e, "cannot read the system key store"),
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// A started system-keyd.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The bound metrics listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Waits until the server has shut down.
    pub async fn wait(self) -> Result<(), RunError> {
        self.task.await.map_err(|e| RunError::from(e.to_string()))?
    }
}

/// Opens the store, binds the port, starts serving and bootstrapping.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, RunError> {
    skm_runtime::files::private_dir(&config.data_dir)?;
    let store = AnyStore::open(&config.store, skm_store::SledStore::DEFAULT_CACHE_BYTES).await?;
    tracing::info!(store = store.kind(), "store open");
    let root_id = SpiffeId::for_service(&config.trust_domain, Service::RootKeyd)?;
    let root_channel = skm_runtime::channel::lazy_channel(&config.root_keyd, config.tls.client_config(&root_id)?)?;
    let listener = skm_runtime::serve::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let mut routes = tonic::service::Routes::builder();
    let health = skm_runtime::health::add_health_and_reflection(&mut routes, &[SERVICE]).await;
    let metrics = skm_runtime::Metrics::new();
    let h = health.clone();
    metrics.gauge_fn("skm_ready", "1 while health says SERVING", &[], move || f64::from(u8::from(h.is_serving())));
    let state = Arc::new(SystemKeys {
        versions: WrappedVersions::new(store),
        root: RootKeyServiceClient::new(root_channel),
        rotation: tokio::sync::Mutex::new(()),
        health,
        active_version: metrics.gauge("skm_system_key_active_version", "The active system key version (0: none yet)"),
        version_count: metrics.gauge("skm_system_key_versions", "System key versions stored"),
    });
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let listener = skm_runtime::metrics::bind(addr).await?;
            let bound = listener.local_addr()?;
            tokio::spawn(skm_runtime::metrics::serve(listener, metrics.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "system-keyd metrics listening");
            Some(bound)
        }
        None => None,
    };
    let revoked = Arc::new(
        skm_runtime::revocations::FileRevocations::open(&config.data_dir).map_err(|e| RunError::from(e.to_string()))?,
    );
    let audit = skm_runtime::tier_audit::TierAudit::open(&config.data_dir, "system-keyd")
        .map_err(|e| RunError::from(e.to_string()))?;
    routes.add_service(SystemKeyServiceServer::new(grpc::SystemKeyApi {
        state: state.clone(),
        revoked: revoked.clone(),
        audit: audit.clone(),
    }));
    tokio::spawn(state.clone().bootstrap(shutdown.clone()));
    let tls = config.tls.mtls_server_config()?;
    let trust = ClientTrust::Deployment { trust_domain: config.trust_domain.clone() };
    tracing::info!(%addr, root_keyd = config.root_keyd, "system-keyd listening");
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
    Ok(Running { addr, metrics_addr, task })
}

/// The [`Daemon`] glue for `main`.
#[derive(Debug)]
pub struct SystemKeyd;

impl Daemon for SystemKeyd {
    const NAME: &'static str = "system-keyd";
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(n: u32) -> versions::Snapshot {
        versions::Snapshot {
            versions: (1..=n)
                .map(|version| WrappedVersion { version, root_key_id: "r".into(), wrapped: vec![0; 60] })
                .collect(),
            active: (n > 0).then_some((n, 7)),
        }
    }

    #[test]
    fn rotations_stop_at_the_version_cap_with_an_error_that_names_it() {
        assert_eq!(next_version(&snapshot(0)).unwrap(), (1, None));
        assert_eq!(next_version(&snapshot(999)).unwrap(), (1_000, Some(7)));
        let e = next_version(&snapshot(1_000)).unwrap_err();
        assert!(matches!(e, RotateError::Cap(1_000)), "{e}");
        assert!(e.to_string().contains("MAX_SYSTEM_KEY_VERSIONS"), "{e}");
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("1000 system key versions"), "{}", status.message());
    }
}
