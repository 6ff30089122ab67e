//! SKM's three tiers as `skm daemon` processes on free loopback ports, with
//! a fresh development PKI in a temporary folder (as `skm dev` would); on
//! sled, or on a three-member etcd cluster with one or more kms-api
//! replicas (as `skm dev --store etcd --replicas N` would).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use skm::devstack::{self, DevSeal, DevStack, Ports};
use skm::etcd::EtcdCluster;
use skm_client::{ClientCredentials, Keys, Profile, Skm};
use skm_runtime::Service;
use tempfile::TempDir;
use tokio::process::Child;
use tokio::time::Instant;

use crate::args::Store;
use crate::process_cpu::{Side, Watched};
use crate::process_tree;

/// Trust domain of the benchmark's stacks.
const TRUST_DOMAIN: &str = "skm.bench";

/// How long a stack may take to become SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running stack.
pub(crate) struct Stack {
    /// The files (removed on drop).
    dir: TempDir,
    /// Configs and profile.
    stack: DevStack,
    skm: PathBuf,
    /// The tiers; kms-api replicas after the first come last.
    children: Vec<(Service, Child)>,
    /// The configs of kms-api replicas 2, 3, … (on etcd).
    replicas: Vec<PathBuf>,
    /// The etcd cluster (its members die with it), stopped after the tiers.
    etcd: Option<EtcdCluster>,
    /// An operator client.
    pub(crate) client: Skm,
}

/// `n` distinct free TCP ports on 127.0.0.1.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?)
}

/// A base of six consecutive free ports for etcd (client and peer port of
/// three members), below the kernel's ephemeral range so that no outgoing
/// connection takes one meanwhile.
fn etcd_port_base() -> anyhow::Result<u16> {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (0..1_000)
        .map(|i| start + 6 * (i % 1_600))
        .find(|&base| (0..6).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .context("no six consecutive free ports for etcd")
}

/// Whether one tier answers SERVING, over a fresh connection.
async fn serving(profile: &Profile, service: Service) -> bool {
    let Ok(skm) = profile.connect() else { return false };
    let Ok(mut client) = skm.health(service) else { return false };
    let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.check(req)).await,
        Ok(Ok(r)) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}

impl Stack {
    /// Prepares a stack in a new temporary folder and starts it; with
    /// `cache_entries`, kms-api's cache is bounded to that many entries;
    /// `audit_sync` is kms-api's `audit_sync` ("fsync" or "os").
    pub(crate) async fn start(
        skm: &Path,
        cache_entries: Option<usize>,
        audit_sync: &str,
        store: Store,
    ) -> anyhow::Result<Self> {
        Self::start_with(skm, cache_entries, audit_sync, None, store).await
    }

    /// [`Stack::start`] with the user port admitting at most
    /// `max_in_flight` requests at once (`[user_limits]`), shedding the rest.
    pub(crate) async fn start_with_max_in_flight(
        skm: &Path,
        audit_sync: &str,
        max_in_flight: u32,
    ) -> anyhow::Result<Self> {
        Self::start_with(skm, None, audit_sync, Some(max_in_flight), Store::Sled).await
    }

    async fn start_with(
        skm: &Path,
        cache_entries: Option<usize>,
        audit_sync: &str,
        max_in_flight: Option<u32>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("skm-bench-").tempdir()?;
        let p = free_ports(5)?;
        let ports = Ports { user: p[0], admin: p[1], root: p[2], system: p[3], rest: Some(p[4]), console: None };
        let mut stack = devstack::prepare(dir.path(), ports, DevSeal::Passphrase, TRUST_DOMAIN)?;
        let mut etcd = None;
        if let Store::Etcd { .. } = store {
            let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
            let mut cluster = EtcdCluster::prepare(&dir.path().join("etcd"), 3, etcd_port_base()?, &clients)?;
            cluster.start(Service::KmsApi.name()).await?;
            devstack::store_on_etcd(&stack, &cluster)?;
            etcd = Some(cluster);
        }
        let mut settings = format!("audit_sync = {audit_sync:?}\n");
        if let Some(entries) = cache_entries {
            settings.push_str(&format!("cache_entries = {entries}\n"));
        }
        let path = stack.config(Service::KmsApi);
        let text = std::fs::read_to_string(&path)?;
        let Some(at) = text.find("\n[") else { bail!("{}: no section", path.display()) };
        let mut text = format!("{}\n{settings}{}", &text[..at], &text[at..]);
        if let Some(n) = max_in_flight {
            text.push_str(&format!("\n[user_limits]\nmax_in_flight = {n}\n"));
        }
        std::fs::write(&path, text)?;
        // Replicas copy the first's config, the settings above included.
        let mut replicas = Vec::new();
        if let Store::Etcd { replicas: n } = store {
            for r in 2..=n {
                let p = free_ports(2)?;
                replicas.push(devstack::add_replica(&mut stack, r, p[0], p[1])?);
            }
        }
        let client = stack.profile.connect()?;
        let mut me = Self { dir, stack, skm: skm.to_owned(), children: Vec::new(), replicas, etcd, client };
        for service in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
            me.spawn(service)?;
        }
        for (i, config) in me.replicas.iter().enumerate() {
            let log = me.dir.path().join(format!("kms-api-{}.log", i + 2));
            let child = skm::dev::spawn_tier(&me.skm, Service::KmsApi, config, Some(&log))?;
            me.children.push((Service::KmsApi, child));
        }
        me.wait_serving(&[Service::RootKeyd, Service::SystemKeyd, Service::KmsApi]).await?;
        for i in 1..me.user_endpoints().len() {
            let profile = me.on_replica(i);
            let deadline = Instant::now() + READY_TIMEOUT;
            while !serving(&profile, Service::KmsApi).await {
                if Instant::now() >= deadline {
                    bail!("kms-api replica {} not SERVING after {READY_TIMEOUT:?}", i + 1);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(me)
    }

    /// Every replica's user port: the first kms-api's, then the others'.
    fn user_endpoints(&self) -> Vec<String> {
        std::iter::once(&self.stack.profile.user_endpoint).chain(&self.stack.profile.user_replicas).cloned().collect()
    }

    /// The operator profile with replica `i` (0: the first) as its only
    /// user and admin endpoint.
    fn on_replica(&self, i: usize) -> Profile {
        let admins: Vec<&String> =
            std::iter::once(&self.stack.profile.admin_endpoint).chain(&self.stack.profile.admin_replicas).collect();
        Profile {
            user_endpoint: self.user_endpoints()[i].clone(),
            user_replicas: Vec::new(),
            admin_endpoint: admins[i].clone(),
            admin_replicas: Vec::new(),
            ..self.stack.profile.clone()
        }
    }

    fn log(&self, service: Service) -> PathBuf {
        self.dir.path().join(format!("{}.log", service.name()))
    }

    fn spawn(&mut self, service: Service) -> anyhow::Result<()> {
        let child = skm::dev::spawn_tier(&self.skm, service, &self.stack.config(service), Some(&self.log(service)))
            .with_context(|| format!("cannot start {} from {}", service.name(), self.skm.display()))?;
        self.children.push((service, child));
        Ok(())
    }

    async fn wait_serving(&mut self, services: &[Service]) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for &service in services {
            loop {
                if serving(&self.stack.profile, service).await {
                    break;
                }
                let exited = self
                    .children
                    .iter_mut()
                    .find_map(|(s, child)| child.try_wait().ok().flatten().map(|status| (*s, status)));
                if let Some((s, status)) = exited {
                    bail!("{} exited ({status}):\n{}", s.name(), self.tail(s));
                }
                if Instant::now() >= deadline {
                    bail!("{} not SERVING after {READY_TIMEOUT:?}:\n{}", service.name(), self.tail(service));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    /// The last lines of a tier's log.
    fn tail(&self, service: Service) -> String {
        let text = std::fs::read_to_string(self.log(service)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `n` user-port clients, each on its own connection, going round the
    /// replicas (client `i` to replica `i mod replicas`), presenting
    /// `credentials` when given.
    pub(crate) fn user_clients(&self, n: usize, credentials: Option<&ClientCredentials>) -> anyhow::Result<Vec<Keys>> {
        let replicas = self.user_endpoints().len();
        (0..n)
            .map(|i| {
                let profile = Profile { client: credentials.cloned(), ..self.on_replica(i % replicas) };
                Ok(profile.connect()?.keys())
            })
            .collect()
    }

    /// Issues a client certificate of `keystore` (admin plane) and writes
    /// it into the stack's directory; the credentials that present it.
    pub(crate) async fn issue_client_certificate(&self, keystore: &str) -> anyhow::Result<ClientCredentials> {
        let password = "bench-client-password";
        let req = skm_client::admin::v1::IssueClientCertificateRequest {
            keystore_id: keystore.into(),
            name: "bench-client".into(),
            days: 1,
            password: password.into(),
        };
        let issued = self.client.admin()?.issue_client_certificate(req).await?.into_inner();
        let p12 = self.dir.path().join("bench-client.p12");
        let password_file = self.dir.path().join("bench-client.password");
        devstack::write_private(&p12, &issued.pkcs12)?;
        devstack::write_private(&password_file, password.as_bytes())?;
        Ok(ClientCredentials::Pkcs12 { p12, password_file })
    }

    /// kms-api's REST listener, `host:port`, and the CA that signed it.
    pub(crate) fn rest(&self) -> (&str, &Path) {
        (&self.stack.profile.rest_endpoint, &self.stack.profile.ca)
    }

    /// `n` operator clients, each on its own connection.
    pub(crate) fn operator_clients(&self, n: usize) -> anyhow::Result<Vec<Skm>> {
        (0..n).map(|_| Ok(self.stack.profile.connect()?)).collect()
    }

    /// kms-api's process id.
    pub(crate) fn kms_pid(&self) -> Option<u32> {
        self.children.iter().find(|(s, _)| *s == Service::KmsApi).and_then(|(_, c)| c.id())
    }

    /// The stack's server processes, for CPU per call: every kms-api
    /// replica, root-keyd and system-keyd, and the etcd members.
    pub(crate) fn watched(&self) -> Watched {
        let pids = |wanted: &[Service]| {
            self.children.iter().filter(|(s, _)| wanted.contains(s)).filter_map(|(_, c)| c.id()).collect::<Vec<_>>()
        };
        let watched = Watched::default()
            .with(Side::KmsApi, pids(&[Service::KmsApi]))
            .with(Side::Keyd, pids(&[Service::RootKeyd, Service::SystemKeyd]));
        match self.etcd {
            Some(_) => watched.with(Side::Store, process_tree::descendants_named("etcd")),
            None => watched,
        }
    }

    /// kms-api's resident memory (VmRSS), bytes.
    pub(crate) fn kms_rss(&self) -> Option<u64> {
        rss(self.kms_pid()?)
    }

    /// Stops kms-api (SIGTERM), starts it again and returns the time from
    /// the start of the process until its health says SERVING.
    pub(crate) async fn restart_kms(&mut self) -> anyhow::Result<Duration> {
        self.stop(Service::KmsApi).await;
        let started = Instant::now();
        self.spawn(Service::KmsApi)?;
        self.wait_serving(&[Service::KmsApi]).await?;
        Ok(started.elapsed())
    }

    async fn stop(&mut self, service: Service) {
        if let Some(i) = self.children.iter().position(|(s, _)| *s == service) {
            let (_, mut child) = self.children.remove(i);
            skm::dev::stop(&mut child, Duration::from_secs(30)).await;
        }
    }

    /// Stops every tier (every kms-api replica first), then etcd, and
    /// removes the files.
    pub(crate) async fn shutdown(mut self) {
        while self.children.iter().any(|(s, _)| *s == Service::KmsApi) {
            self.stop(Service::KmsApi).await;
        }
        for service in [Service::SystemKeyd, Service::RootKeyd] {
            self.stop(service).await;
        }
        drop(self.etcd.take());
    }
}

/// VmRSS of a process, bytes.
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
