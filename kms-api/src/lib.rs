//! kms-api: the tier users and operators talk to.
//!
//! It serves two ports: the **user port** (applications; TLS, client
//! certificate optional, every call checked against the policy of the key's
//! keystore) and the **admin port** (operators; mutual TLS with an operator
//! certificate of the deployment CA). Its records are sealed under the
//! system key, which it obtains at start from system-keyd (wrapped) and
//! root-keyd (unwrapped, sealed to a per-boot key): see [`system_keys`].
//! Until then health is NOT_SERVING and every key RPC answers UNAVAILABLE.
//!
//! [`kms`] is the domain core: every operation of every front end is one
//! typed request that the core authorises, carries out and audits; the
//! front ends ([`grpc`] today) only convert.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use skm_proto::admin::v1::admin_service_server::AdminServiceServer;
use skm_proto::api::v1::key_service_server::KeyServiceServer;
use skm_proto::root::v1::root_key_service_client::RootKeyServiceClient;
use skm_proto::system::v1::system_key_service_client::SystemKeyServiceClient;
use skm_runtime::config::ConfigError;
use skm_runtime::daemon::{Daemon, RunError};
use skm_runtime::telemetry::LogConfig;
use skm_runtime::tls::TlsIdentity;
use skm_runtime::{AccessPolicy, Allow, ClientTrust, Role, Service, Shutdown, SpiffeId};
use skm_store::AnyStore;

pub mod access;
mod anchor;
pub mod audit;
pub mod clock;
mod config;
mod console;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod grpc;
pub mod kms;
pub mod model;
pub mod records;
pub mod reseal;
mod rest;
pub mod system_keys;

pub use config::Config;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SKM_KMS_API";

const USER_SERVICE: &str = "skm.api.v1.KeyService";
const ADMIN_SERVICE: &str = "skm.admin.v1.AdminService";

/// The user port: any peer that completed TLS; each call is then checked
/// against the keystore's policy by the handler.
pub fn user_access_policy() -> AccessPolicy {
    AccessPolicy::new().with_health_and_reflection().allow_service(USER_SERVICE, &[Allow::AnyPeer])
}

/// Admin RPCs that only read (auditors may call them): the operations of
/// [`kms::Effect::Read`], which the core admits for auditors.
pub const ADMIN_READS: &[&str] = &[
    "ListKeystores",
    "GetKeystore",
    "ListKeys",
    "DescribeKey",
    "ListAudit",
    "VerifyAudit",
    "GetSystemKeyStatus",
    "CreateConsoleSignIn",
];

/// The admin port: operators only (any role: the core decides what each
/// role may do, checks revoked operator certificates and audits refusals).
pub fn admin_access_policy() -> AccessPolicy {
    AccessPolicy::new().with_health_and_reflection().allow_service(ADMIN_SERVICE, &[Allow::Operator(Role::Auditor)])
}

/// A started kms-api.
#[derive(Debug)]
pub struct Running {
    /// The bound user port.
    pub user_addr: SocketAddr,
    /// The bound admin port.
    pub admin_addr: SocketAddr,
    /// The bound metrics listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound REST listener, when configured.
    pub rest_addr: Option<SocketAddr>,
    /// The bound console listener, when configured.
    pub console_addr: Option<SocketAddr>,
    #[cfg_attr(not(feature = "danger-test-accessors"), allow(dead_code, reason = "read by the test accessors"))]
    keyring: system_keys::SystemKeys,
    kms: Arc<kms::Kms<AnyStore>>,
    leader: Arc<skm_store::etcd::Leadership>,
    /// This replica's name, held while it runs ([`hold_replica_name`]).
    name: skm_store::etcd::Leadership,
    tasks: Vec<tokio::task::JoinHandle<Result<(), RunError>>>,
}

/// Takes this replica's name on a shared store before anything is written:
/// a second kms-api started with the same `replica` would write the same
/// audit anchor and race the first's. The name is an election of its own
/// (`election/replica-<name>`), bound to a lease of `maintenance_lease_secs`;
/// a crashed predecessor's lease expires within one such lease, so a
/// replica restarted after a crash waits for it rather than fail. On sled
/// (one process per directory) it is held at once.
async fn hold_replica_name(store: &AnyStore, config: &Config) -> Result<skm_store::etcd::Leadership, RunError> {
    let replica = config.replica.as_deref().unwrap_or("kms-api");
    let candidate = format!("{replica}/{}", std::process::id());
    let name = store.elect(&format!("replica-{replica}"), &candidate, config.maintenance_lease);
    let wait = 2 * config.maintenance_lease + std::time::Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    while !name.is_leader() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "another kms-api runs as replica {replica:?} on this store (it has held the name for the last {} s); \
                 give each replica its own `replica`",
                wait.as_secs()
            )
            .into());
        }
        if !std::mem::replace(&mut said, true) {
            tracing::info!(
                replica,
                "waiting for the replica name (held by another process, or by a crashed one until its lease expires)"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(name)
}

impl Running {
    /// Whether this replica is the one that runs the maintenance pass and
    /// the re-seal now (always, on sled).
    pub fn leads_maintenance(&self) -> bool {
        self.leader.is_leader()
    }

    /// Stops this replica's campaign for the maintenance job without
    /// resigning, as if it had frozen or lost etcd (failover tests).
    #[cfg(feature = "danger-test-accessors")]
    pub fn danger_abandon_leadership(&self) {
        self.leader.abandon();
    }

    /// The domain core (tests call [`kms::Kms::maintain`] directly).
    pub fn kms(&self) -> &Arc<kms::Kms<AnyStore>> {
        &self.kms
    }

    /// Waits until both ports have shut down.
    pub async fn wait(self) -> Result<(), RunError> {
        for task in self.tasks {
            task.await.map_err(|e| RunError::from(e.to_string()))??;
        }
        // Stopped: the replica name is free for a restart at once.
        self.name.resign().await;
        Ok(())
    }

    /// Every system key version held, for the tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub fn danger_system_keys(&self) -> Vec<[u8; 32]> {
        let Ok(ring) = self.keyring.current() else {
            return Vec::new();
        };
        ring.versions().filter_map(|v| ring.danger_key(v).map(|k| *k.danger_expose())).collect()
    }

    /// A key version's material (AES key, PKCS#8, secret value), for the
    /// tier-separation test.
    #[cfg(feature = "danger-test-accessors")]
    pub async fn danger_key_material(&self, key_id: &str, version: u32) -> Option<Vec<u8>> {
        self.kms.danger_key_material(key_id, version).await
    }
}

/// Opens the store, binds both ports, starts serving and loading the
/// system keys.
pub async fn start(config: Config, shutdown: Shutdown) -> Result<Running, RunError> {
    start_with_clock(config, shutdown, Arc::new(clock::SystemClock)).await
}

/// [`start`] with a given clock (tests move time).
pub async fn start_with_clock(
    config: Config,
    shutdown: Shutdown,
    clock: Arc<dyn clock::Clock>,
) -> Result<Running, RunError> {
    skm_runtime::files::private_dir(&config.data_dir)?;
    skm_runtime::files::private_dir(&config.audit_dir)?;
    let store = AnyStore::open(&config.store, config.store_cache_mb * 1024 * 1024).await?;
    tracing::info!(store = store.kind(), "store open");
    let name = hold_replica_name(&store, &config).await?;
    let keyring = system_keys::SystemKeys::default();
    let audit = Arc::new(audit::AuditLog::open_with(&config.audit_dir, keyring.clone(), config.audit_sync).await?);
    // Nothing is written to the log until it has been compared with its
    // anchor (once the system keys are loaded).
    audit.hold_until_anchored();
    // Other replicas write a shared store too: follow its changes.
    let replica = config.replica.as_deref().unwrap_or("kms-api");
    let changes = store.watch(replica, config.cache_max_staleness / 4);
    // One replica at a time runs the maintenance pass and the re-seal.
    let leader = Arc::new(store.elect("maintenance", replica, config.maintenance_lease));
    let etcd = match &store {
        AnyStore::Etcd(etcd) => Some(etcd.clone()),
        AnyStore::Sled(_) => None,
    };
    let mut records = records::Records::new(store, keyring.clone());
    if let Some(replica) = &config.replica {
        records = records.for_replica(replica);
    }
    // Waited for at shutdown, so that a clean stop anchors the last entry.
    let anchor_task = tokio::spawn({
        let anchoring = anchor::run(
            audit.clone(),
            records.clone(),
            keyring.clone(),
            config.audit_anchor_interval,
            shutdown.clone(),
        );
        async move {
            anchoring.await;
            Ok(())
        }
    });
    let revoked = kms::RevokedOperators::new(records.revoked_operators().await?);
    let mut core = kms::Kms::new(records.clone(), clock, config.cache_entries, audit.clone(), revoked)
        .with_max_key_versions(config.max_key_versions);
    if let Some(console) = &config.console {
        core = core.with_console(kms::ConsoleSettings {
            url: console.url.clone(),
            idle_secs: i64::try_from(console.idle_secs).unwrap_or(i64::MAX),
            max_secs: i64::try_from(console.max_secs).unwrap_or(i64::MAX),
        });
    }
    if changes.is_some() {
        core = core.with_shared_store(config.cache_max_staleness);
    }
    let kms = Arc::new(core);
    if let Some(changes) = changes {
        tokio::spawn(kms.clone().follow_store(changes, shutdown.clone()));
    }
    tokio::spawn(kms.clone().maintenance_loop(config.maintenance_interval, leader.clone(), shutdown.clone()));
    tokio::spawn(reseal::run(records.clone(), config.reseal_records_per_sec, leader.clone(), shutdown.clone()));

    let root_id = SpiffeId::for_service(&config.trust_domain, Service::RootKeyd)?;
    let system_id = SpiffeId::for_service(&config.trust_domain, Service::SystemKeyd)?;
    let root = skm_runtime::channel::lazy_channel(&config.root_keyd, config.tls.client_config(&root_id)?)?;
    let system = skm_runtime::channel::lazy_channel(&config.system_keyd, config.tls.client_config(&system_id)?)?;
    let tiers = console::TierProbe { root: root.clone(), system: system.clone() };

    let user_listener = skm_runtime::serve::bind(config.user_listen).await?;
    let admin_listener = skm_runtime::serve::bind(config.admin_listen).await?;
    let rest_listener = match config.rest_listen {
        Some(addr) => Some(skm_runtime::serve::bind(addr).await?),
        None => None,
    };
    let user_addr = user_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let rest_addr = rest_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let console_listener = match &config.console {
        Some(console) => Some(skm_runtime::serve::bind(console.listen).await?),
        None => None,
    };
    let console_addr = console_listener.as_ref().map(|l| l.local_addr()).transpose()?;

    let mut user_routes = tonic::service::Routes::builder();
    let user_health = skm_runtime::health::add_health_and_reflection(&mut user_routes, &[USER_SERVICE]).await;
    user_routes.add_service(KeyServiceServer::new(grpc::user::KeyApi { kms: kms.clone() }));
    let mut admin_routes = tonic::service::Routes::builder();
    let admin_health = skm_runtime::health::add_health_and_reflection(&mut admin_routes, &[ADMIN_SERVICE]).await;
    admin_routes.add_service(AdminServiceServer::new(grpc::admin::AdminApi { kms: kms.clone() }));

    let loader = system_keys::Loader {
        recipient: skm_crypto::transport::RecipientKeypair::generate()?,
        system: SystemKeyServiceClient::new(system),
        root: RootKeyServiceClient::new(root),
        keyring: keyring.clone(),
        refresh: config.system_key_refresh,
        records: records.clone(),
    };
    tokio::spawn(loader.run(shutdown.clone()));
    let metrics = skm_runtime::Metrics::new();
    register_metrics(&metrics, &keyring, &audit, &kms, &user_health);
    let l = Arc::downgrade(&leader);
    metrics.gauge_fn(
        "skm_maintenance_leader",
        "1 while this replica is the one elected to run automatic rotation, destruction and the re-seal (always on sled)",
        &[],
        move || l.upgrade().map_or(0.0, |l| f64::from(u8::from(l.is_leader()))),
    );
    if let Some(etcd) = etcd {
        let e = etcd.clone();
        metrics.counter_fn(
            "skm_store_batches",
            "Batches of writes applied to etcd (each all or nothing)",
            &[],
            move || e.group_commits().batches,
        );
        metrics.counter_fn(
            "skm_store_transactions",
            "etcd transactions that carried those batches: fewer when concurrent batches shared one (group commit)",
            &[],
            move || etcd.group_commits().transactions,
        );
    }
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let listener = skm_runtime::metrics::bind(addr).await?;
            let bound = listener.local_addr()?;
            tokio::spawn(skm_runtime::metrics::serve(listener, metrics.clone(), shutdown.clone()));
            tracing::info!(addr = %bound, "kms-api metrics listening");
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(health_watch(keyring.clone(), kms.clone(), vec![user_health.clone(), admin_health], shutdown.clone()));

    let trust = ClientTrust::Deployment { trust_domain: config.trust_domain.clone() };
    let user_tls = config.tls.optional_client_cert_server_config()?;
    // A peer without a certificate gets UNAUTHENTICATED naming the operator
    // certificate it lacks (authz), not a bare handshake failure.
    let admin_tls = config.tls.mtls_optional_server_config()?;
    let user_options = skm_runtime::ListenOptions {
        proxy_protocol_from: config.user_proxy_protocol_from.clone(),
        lookup_mac: true,
        limits: config.user_limits.clone(),
        metrics: Some(metrics.listener("user")),
        audit: None,
    };
    let admin_options = skm_runtime::ListenOptions {
        limits: config.admin_limits.clone(),
        metrics: Some(metrics.listener("admin")),
        ..Default::default()
    };
    tracing::info!(%user_addr, %admin_addr, "kms-api listening; loading system keys");
    let user_shutdown = shutdown.clone();
    let user_task = tokio::spawn(async move {
        skm_runtime::serve::serve_with(
            user_listener,
            user_tls,
            ClientTrust::PerRequest,
            user_access_policy(),
            user_routes.routes(),
            user_shutdown,
            user_options,
        )
        .await?;
        Ok(())
    });
    let mut tasks = Vec::new();
    if let Some(listener) = rest_listener {
        let tls = skm_runtime::http::http_tls(&*config.tls.optional_client_cert_server_config()?);
        let api = Arc::new(rest::RestApi { kms: kms.clone(), health: user_health.clone() });
        let options = skm_runtime::ListenOptions {
            proxy_protocol_from: config.rest_proxy_protocol_from.clone(),
            lookup_mac: true,
            limits: config.rest_limits.clone(),
            metrics: Some(metrics.listener("rest")),
            audit: None,
        };
        tracing::info!(rest_addr = %listener.local_addr()?, "kms-api REST listening");
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            skm_runtime::http::serve_http(listener, tls, ClientTrust::PerRequest, api, shutdown, options).await;
            Ok(())
        }));
    }
    if let (Some(listener), Some(console)) = (console_listener, &config.console) {
        // Browsers present no client certificate; operators are known by
        // their session.
        let tls = skm_runtime::http::http_tls(&*config.tls.no_client_cert_server_config()?);
        let origin = console.url.clone();
        let api = Arc::new(console::ConsoleApi { kms: kms.clone(), origin, tiers });
        let options = skm_runtime::ListenOptions {
            limits: console.limits.clone(),
            metrics: Some(metrics.listener("console")),
            ..Default::default()
        };
        tracing::info!(console_addr = %listener.local_addr()?, url = %console.url, "kms-api web console listening");
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            skm_runtime::http::serve_http(listener, tls, ClientTrust::PerRequest, api, shutdown, options).await;
            Ok(())
        }));
    }
    let admin_policy = admin_access_policy();
    let admin_task = tokio::spawn(async move {
        let routes = admin_routes.routes();
        skm_runtime::serve::serve_with(admin_listener, admin_tls, trust, admin_policy, routes, shutdown, admin_options)
            .await?;
        Ok(())
    });
    tasks.extend([user_task, admin_task, anchor_task]);
    Ok(Running { user_addr, admin_addr, metrics_addr, rest_addr, console_addr, keyring, kms, leader, name, tasks })
}

/// kms-api's own metrics, read at each scrape: readiness, system key
/// versions held, the audit log (queue, syncs and their latency, health)
/// and the cache.
fn register_metrics(
    metrics: &skm_runtime::Metrics,
    keyring: &system_keys::SystemKeys,
    audit: &Arc<audit::AuditLog>,
    kms: &Arc<kms::Kms<AnyStore>>,
    health: &skm_runtime::health::Health,
) {
    #![allow(clippy::cast_precision_loss, reason = "counts and versions far below 2^53")]
    let h = health.clone();
    metrics.gauge_fn("skm_ready", "1 while health says SERVING", &[], move || f64::from(u8::from(h.is_serving())));
    let k = keyring.clone();
    metrics.gauge_fn(
        "skm_system_key_active_version",
        "The active system key version (0: none loaded)",
        &[],
        move || k.current().map_or(0.0, |r| f64::from(r.active_version())),
    );
    let k = keyring.clone();
    metrics.gauge_fn("skm_system_key_versions", "System key versions held in memory", &[], move || {
        k.current().map_or(0.0, |r| r.versions().count() as f64)
    });
    let k = keyring.clone();
    metrics.gauge_fn(
        "skm_reseal_target_version",
        "The system key version the background re-seal moves records to (0: not started)",
        &[],
        move || f64::from(k.reseal().report().target),
    );
    let k = keyring.clone();
    metrics.gauge_fn(
        "skm_reseal_done",
        "1 once a whole pass found every record under the active system key version",
        &[],
        move || f64::from(u8::from(k.reseal().report().done)),
    );
    let k = keyring.clone();
    metrics.counter_fn("skm_reseal_records_scanned", "Records the background re-seal looked at since start", &[], {
        move || k.reseal().report().scanned
    });
    let k = keyring.clone();
    metrics.counter_fn(
        "skm_reseal_records_resealed",
        "Records the background re-seal sealed again under the active system key version since start",
        &[],
        move || k.reseal().report().resealed,
    );
    metrics.register_histogram(
        "skm_audit_sync_seconds",
        "Time of each fdatasync of the audit log (one per group commit with audit_sync = fsync)",
        audit.sync_latency(),
    );
    // Weak: the metrics must not keep the log (and its writer) open after
    // kms-api has stopped.
    let a = Arc::downgrade(audit);
    metrics.gauge_fn("skm_audit_queue_depth", "Audit appends waiting for the writer", &[], move || {
        a.upgrade().map_or(0.0, |a| a.queue_depth() as f64)
    });
    let a = Arc::downgrade(audit);
    metrics.gauge_fn("skm_audit_healthy", "1 while the audit log can be written", &[], move || {
        a.upgrade().map_or(0.0, |a| f64::from(u8::from(a.healthy())))
    });
    let a = Arc::downgrade(audit);
    metrics.gauge_fn(
        "skm_audit_anchor_ok",
        "1 once the log's tail matches its anchor in the store (or a loss was acknowledged); 0 while not compared yet or cut short",
        &[],
        move || a.upgrade().map_or(0.0, |a| f64::from(u8::from(a.anchoring() == audit::Anchoring::Checked))),
    );
    let a = Arc::downgrade(audit);
    metrics.gauge_fn(
        "skm_audit_anchor_missing_entries",
        "Entries missing between the log's end and its anchor, until the loss is acknowledged",
        &[],
        move || {
            a.upgrade().map_or(0.0, |a| match a.anchoring() {
                audit::Anchoring::Lost(lost) => (lost.last_seq + 1).saturating_sub(lost.first_seq) as f64,
                _ => 0.0,
            })
        },
    );
    let a = Arc::downgrade(audit);
    metrics.counter_fn("skm_audit_entries", "Audit entries written since start", &[], move || {
        a.upgrade().map_or(0, |a| a.stats().entries)
    });
    let a = Arc::downgrade(audit);
    metrics.counter_fn("skm_audit_failed_batches", "Audit batches that failed (log unavailable)", &[], move || {
        a.upgrade().map_or(0, |a| a.stats().failed_batches)
    });
    for (kind, result) in [("key", "hit"), ("key", "miss"), ("keystore", "hit"), ("keystore", "miss")] {
        let k = Arc::downgrade(kms);
        metrics.counter_fn(
            "skm_cache_lookups",
            "Key and keystore lookups, answered from the in-memory cache (hit) or the store (miss)",
            &[("kind", kind), ("result", result)],
            move || {
                let Some(stats) = k.upgrade().map(|k| k.cache_stats()) else { return 0 };
                match (kind, result) {
                    ("key", "hit") => stats.key_hits,
                    ("key", _) => stats.key_misses,
                    (_, "hit") => stats.keystore_hits,
                    _ => stats.keystore_misses,
                }
            },
        );
    }
    let k = Arc::downgrade(kms);
    metrics.gauge_fn(
        "skm_cache_hit_ratio",
        "Share of key and keystore lookups answered from the cache",
        &[],
        move || {
            let Some(s) = k.upgrade().map(|k| k.cache_stats()) else { return 0.0 };
            let hits = (s.key_hits + s.keystore_hits) as f64;
            let all = hits + (s.key_misses + s.keystore_misses) as f64;
            if all > 0.0 { hits / all } else { 0.0 }
        },
    );
    let k = Arc::downgrade(kms);
    metrics.gauge_fn(
        "skm_cache_fresh",
        "1 while the cache may answer: always on sled; on etcd while the store's watch has vouched for it within cache_max_staleness_ms (0: every lookup reads etcd)",
        &[],
        move || k.upgrade().map_or(0.0, |k| f64::from(u8::from(k.cache_fresh()))),
    );
}

/// Keeps health in step with what kms-api can do: SERVING only while the
/// system keys are loaded and the audit log is writable and matches its
/// anchor (fail closed: a kms-api that can't audit is not ready).
///
/// A log that stopped taking writes (a full disk, a failing sync) is
/// probed on every tick with an entry of its own
/// ([`audit::AuditLog::probe`]), so that kms-api recovers by itself once
/// the disk takes writes again, even if no request comes to retry.
async fn health_watch(
    keyring: system_keys::SystemKeys,
    kms: Arc<kms::Kms<AnyStore>>,
    health: Vec<skm_runtime::health::Health>,
    shutdown: Shutdown,
) {
    let audit = kms.audit();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let mut serving = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if keyring.current().is_ok() && !audit.healthy() && audit.anchoring() == audit::Anchoring::Checked {
            audit.probe(kms.now()).await;
        }
        let now = keyring.current().is_ok() && audit.healthy();
        if serving != Some(now) {
            if serving.is_some() || now {
                tracing::info!(serving = now, audit_ok = audit.healthy(), "kms-api health changed");
            }
            for h in &health {
                h.set(now).await;
            }
            serving = Some(now);
        }
    }
}

/// The [`Daemon`] glue for `main`.
#[derive(Debug)]
pub struct KmsApi;

impl Daemon for KmsApi {
    const NAME: &'static str = "kms-api";
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    type Config = Config;

    fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load(path)
    }

    fn log_config(config: &Config) -> &LogConfig {
        &config.log
    }

    fn health_target(config: &Config) -> (SocketAddr, TlsIdentity, SpiffeId) {
        (config.admin_listen, config.tls.clone(), config.id.clone())
    }

    async fn run(config: Config, shutdown: Shutdown) -> Result<(), RunError> {
        start(config, shutdown).await?.wait().await
    }
}
