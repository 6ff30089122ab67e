//! Harness for SKM's whole-stack tests: the three tiers either in this
//! process (to reach in-memory keys through test-only accessors) or as real
//! `skm daemon` processes (to stop, restart and start them in any order).
//! Both use real mTLS, real sled stores and the real PKI layout of `skm dev`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod compose;
pub mod webdriver;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use skm::devstack::{self, DevSeal, DevStack, MetricsPorts, Ports};
use skm_client::{Profile, Skm};
use skm_runtime::Service;
use skm_runtime::shutdown::ShutdownTrigger;
use tempfile::TempDir;
use tokio::process::Child;

/// Trust domain of test stacks.
pub const TRUST_DOMAIN: &str = "skm.test";

/// The environment variable that leaves test groups out explicitly:
/// `SKM_SKIP=compose,netns` (README, Tests). Nothing else makes a test
/// skip: a missing prerequisite fails the test with what to install.
pub const SKIP_VAR: &str = "SKM_SKIP";

/// The groups [`SKIP_VAR`] may name: the compose stack (`tests/compose.rs`)
/// and the access matrix in network namespaces (`tests/access_matrix.rs`).
pub const GROUPS: [&str; 2] = ["compose", "netns"];

/// Whether this run leaves `group` out (it is named in `SKM_SKIP`); if so,
/// says so on stdout. A test of that group then returns at once, and
/// `scripts/test` lists the group in its summary.
///
/// # Panics
///
/// When `SKM_SKIP` names a group that doesn't exist (a typo would
/// otherwise run what was meant to be left out, or the reverse).
pub fn left_out(group: &str) -> bool {
    assert!(GROUPS.contains(&group), "unknown test group {group:?}");
    let skip = std::env::var(SKIP_VAR).unwrap_or_default();
    let named: Vec<&str> = skip.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
    if let Some(unknown) = named.iter().find(|g| !GROUPS.contains(g)) {
        panic!("{SKIP_VAR}={skip}: unknown group {unknown:?} (groups: {})", GROUPS.join(", "));
    }
    let out = named.contains(&group);
    if out {
        println!("left out: group {group} ({SKIP_VAR}={skip})");
    }
    out
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

/// Polls `check` for `period` and fails if it ever returns true: for
/// "stays not ready" assertions.
pub async fn never<F, Fut>(what: &str, period: Duration, check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    match eventually(what, period, check).await {
        Ok(()) => bail!("{what} happened, but must not"),
        Err(_) => Ok(()),
    }
}

/// Whether a tier reports SERVING.
pub async fn serving(skm: &Skm, service: Service) -> bool {
    let Ok(mut client) = skm.health(service) else { return false };
    let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.check(req)).await,
        Ok(Ok(r)) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}

/// Waits until all three tiers are SERVING.
pub async fn wait_ready(skm: &Skm, timeout: Duration) -> anyhow::Result<()> {
    eventually("all tiers SERVING", timeout, || async {
        serving(skm, Service::RootKeyd).await
            && serving(skm, Service::SystemKeyd).await
            && serving(skm, Service::KmsApi).await
    })
    .await
}

/// `n` consecutive free TCP ports on 127.0.0.1, for processes a test
/// starts later. They come from below the kernel's ephemeral range: a port
/// the kernel handed out for `bind(0)` and that was then released can be
/// taken meanwhile as the source port of any outgoing connection (etcd's
/// own peers and clients make many), and the process meant to listen on it
/// then exits with "address already in use". Each call takes ports after
/// the previous call's, so tests in one binary never share a port.
pub fn free_ports(n: usize) -> Vec<u16> {
    let base = reserve_ports(n);
    (base..base + n as u16).collect()
}

fn reserve_ports(n: usize) -> u16 {
    const LOW: u32 = 10_000;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let high = ephemeral_low().max(LOW + 1_000);
    let n = n as u32;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    // Each test binary starts somewhere else in the range, so binaries run
    // side by side (compose and netns groups) rarely meet.
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    let mut cursor = next.unwrap_or(LOW + seed % (high - LOW));
    for _ in 0..(high - LOW) {
        if cursor + n > high {
            cursor = LOW;
        }
        if (cursor..cursor + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok()) {
            *next = Some(cursor + n);
            return cursor as u16;
        }
        cursor += 1;
    }
    panic!("no {n} consecutive free ports between {LOW} and {high}");
}

/// The first port of the kernel's ephemeral range (32768 unless tuned).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|low| low.parse().ok()))
        .unwrap_or(32_768)
}

/// The forms a secret could be stored in by mistake, for scans of raw
/// files: as is, hex (both cases) and base64.
pub fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64::engine::general_purpose::STANDARD.encode(secret).into_bytes(),
    ]
}

/// Whether `haystack` holds `needle` anywhere (memchr's substring search,
/// optimised even in test builds: etcd's WAL files are 64 MiB each).
pub fn holds_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned).unwrap_or_default()
}

/// Runs the pytest suite in `suite` (relative to the repository) from
/// `cwd` with the Python `scripts/test` makes (`$SKM_PYTHON`, else
/// `.venv-tests`), `$SKM_BIN` set to the `skm` binary and `PYTHONPATH` to
/// `pythonpath` when given. Panics when pytest fails, skips a test or runs
/// none, with its output.
pub fn pytest(suite: &str, cwd: &str, pythonpath: Option<&str>) {
    let python = python();
    let mut command = std::process::Command::new(&python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(repo().join(suite))
        .env("SKM_BIN", skm_bin())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(repo().join(cwd));
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", repo().join(path));
    }
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest {suite} failed");
    assert!(!stdout.contains("skipped"), "a test of {suite} was skipped");
    assert!(stdout.contains(" passed"), "pytest ran no test in {suite}");
}

/// The Python `scripts/test` makes (`$SKM_PYTHON`, else `.venv-tests`),
/// with the SDK's test dependencies and `cryptography`; panics naming the
/// fix when it is missing.
pub fn python() -> PathBuf {
    let python = std::env::var_os("SKM_PYTHON").map_or_else(|| repo().join(".venv-tests/bin/python3"), PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: scripts/test makes it (python3 -m venv .venv-tests; pip install ./sdk/python[test] requests jsonschema)",
        python.display()
    );
    python
}

/// The `skm` binary built next to this test binary.
pub fn skm_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("skm");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// Every file below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The three tiers in this process.
pub struct InProcess {
    /// Keeps the stack directory alive.
    pub dir: TempDir,
    /// Files and configs.
    pub stack: DevStack,
    /// root-keyd.
    pub root: Option<root_keyd::Running>,
    /// system-keyd.
    pub system: Option<system_keyd::Running>,
    /// kms-api.
    pub kms: Option<kms_api::Running>,
    /// Profile with the bound addresses.
    pub profile: Profile,
    trigger: ShutdownTrigger,
}

impl InProcess {
    /// Prepares the files and starts the three tiers on ephemeral ports.
    pub async fn start(seal: DevSeal) -> anyhow::Result<Self> {
        Self::start_with_clock(seal, std::sync::Arc::new(kms_api::clock::SystemClock)).await
    }

    /// As [`InProcess::start`], with kms-api on the given clock.
    pub async fn start_with_clock(
        seal: DevSeal,
        clock: std::sync::Arc<dyn kms_api::clock::Clock>,
    ) -> anyhow::Result<Self> {
        Self::start_with(seal, clock, |_| {}).await
    }

    /// As [`InProcess::start_with_clock`], with kms-api's configuration
    /// changed by `configure` before it starts (e.g. `user_listen` on
    /// `0.0.0.0:0` for clients in other network namespaces). When a port
    /// is bound to an unspecified address, the profile reaches it on
    /// 127.0.0.1.
    pub async fn start_with(
        seal: DevSeal,
        clock: std::sync::Arc<dyn kms_api::clock::Clock>,
        configure: impl FnOnce(&mut kms_api::Config),
    ) -> anyhow::Result<Self> {
        let (dir, stack) = Self::prepare(seal)?;
        Self::launch(dir, stack, clock, configure).await
    }

    /// A fresh stack directory with its files, on ephemeral ports.
    fn prepare(seal: DevSeal) -> anyhow::Result<(TempDir, DevStack)> {
        skm_runtime::tls::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let ports = Ports { user: 0, admin: 0, root: 0, system: 0, rest: None, console: None };
        let stack = devstack::prepare(dir.path(), ports, seal, TRUST_DOMAIN)?;
        Ok((dir, stack))
    }

    /// As [`InProcess::start`], with kms-api's and system-keyd's records
    /// on `etcd` instead of sled ([`devstack::store_on_etcd`]).
    pub async fn start_on_etcd(seal: DevSeal, etcd: &skm::etcd::EtcdCluster) -> anyhow::Result<Self> {
        Self::start_on_etcd_with(seal, etcd, std::sync::Arc::new(kms_api::clock::SystemClock), |_| {}).await
    }

    /// [`InProcess::start_on_etcd`] with kms-api on `clock` and its
    /// configuration changed by `configure`.
    pub async fn start_on_etcd_with(
        seal: DevSeal,
        etcd: &skm::etcd::EtcdCluster,
        clock: std::sync::Arc<dyn kms_api::clock::Clock>,
        configure: impl FnOnce(&mut kms_api::Config),
    ) -> anyhow::Result<Self> {
        let (dir, stack) = Self::prepare(seal)?;
        devstack::store_on_etcd(&stack, etcd)?;
        Self::launch(dir, stack, clock, configure).await
    }

    /// Stops the three tiers, then starts them again on the same files and
    /// stores (on new ports; passphrase mode unseals by itself), kms-api's
    /// configuration changed by `configure`. Everything kms-api knows it
    /// then reads back from disk.
    pub async fn restart(mut self, configure: impl FnOnce(&mut kms_api::Config)) -> anyhow::Result<Self> {
        self.stop().await?;
        let Self { dir, stack, .. } = self;
        Self::launch(dir, stack, std::sync::Arc::new(kms_api::clock::SystemClock), configure).await
    }

    async fn launch(
        dir: TempDir,
        stack: DevStack,
        clock: std::sync::Arc<dyn kms_api::clock::Clock>,
        configure: impl FnOnce(&mut kms_api::Config),
    ) -> anyhow::Result<Self> {
        let (trigger, shutdown) = skm_runtime::shutdown::channel();
        let root = root_keyd::start(root_keyd::Config::load(&stack.config(Service::RootKeyd))?, shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let mut system_cfg = system_keyd::Config::load(&stack.config(Service::SystemKeyd))?;
        system_cfg.root_keyd = root.addr.to_string();
        let system = system_keyd::start(system_cfg, shutdown.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
        let mut kms_cfg = kms_api::Config::load(&stack.config(Service::KmsApi))?;
        kms_cfg.root_keyd = root.addr.to_string();
        kms_cfg.system_keyd = system.addr.to_string();
        configure(&mut kms_cfg);
        let kms = kms_api::start_with_clock(kms_cfg, shutdown, clock).await.map_err(|e| anyhow::anyhow!(e))?;
        let reachable = |addr: std::net::SocketAddr| {
            if addr.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())).to_string()
            } else {
                addr.to_string()
            }
        };
        let mut profile = stack.profile.clone();
        profile.user_endpoint = reachable(kms.user_addr);
        profile.admin_endpoint = reachable(kms.admin_addr);
        profile.rest_endpoint = kms.rest_addr.map(reachable).unwrap_or_default();
        profile.root_keyd = root.addr.to_string();
        profile.system_keyd = system.addr.to_string();
        Ok(Self { dir, stack, root: Some(root), system: Some(system), kms: Some(kms), profile, trigger })
    }

    /// A client with the operator certificate.
    pub fn client(&self) -> anyhow::Result<Skm> {
        Ok(self.profile.connect()?)
    }

    /// root-keyd's handle.
    pub fn root(&self) -> &root_keyd::Running {
        self.root.as_ref().expect("root-keyd running")
    }

    /// kms-api's handle.
    pub fn kms(&self) -> &kms_api::Running {
        self.kms.as_ref().expect("kms-api running")
    }

    /// Stops the three tiers and waits until they have released their stores.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.trigger.trigger();
        if let Some(k) = self.kms.take() {
            k.wait().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        if let Some(s) = self.system.take() {
            s.wait().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        if let Some(r) = self.root.take() {
            r.wait().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(())
    }
}

/// A second operator certificate `name` with `role`, issued by the stack's
/// CA into `dir`: `profile` with that certificate, and its SHA-256 (hex).
pub fn extra_operator(
    stack: &DevStack,
    profile: &Profile,
    name: &str,
    role: skm_runtime::Role,
    dir: &Path,
) -> (Profile, String) {
    let pki = stack.dir.join("pki");
    let read = |file: &str| std::fs::read_to_string(pki.join("ca").join(file)).expect("the stack's CA");
    let ca = skm_pki::CertificateAuthority::load(TRUST_DOMAIN, &read("ca.pem"), &read("ca.key")).expect("the CA loads");
    let issued = ca.issue_operator(name, role, 1).expect("an operator certificate");
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, &issued.cert_pem).expect("write the certificate");
    std::fs::write(&key, &issued.key_pem).expect("write the key");
    let der = skm_runtime::tls::certs_from_pem(issued.cert_pem.as_bytes()).expect("a PEM certificate");
    let sha = hex::encode(skm_crypto::sha256(&der[0]));
    let mut profile = profile.clone();
    profile.operator = Some(skm_client::CertFiles { cert, key });
    (profile, sha)
}

/// Another kms-api replica of an [`InProcess`] stack on etcd, in this
/// process, with its own ports, data and audit directories.
pub struct Replica {
    /// Its handle.
    pub kms: Option<kms_api::Running>,
    /// The stack's profile, pointing at this replica.
    pub profile: Profile,
    trigger: ShutdownTrigger,
}

impl Replica {
    /// A client with the operator certificate.
    pub fn client(&self) -> anyhow::Result<Skm> {
        Ok(self.profile.connect()?)
    }

    /// kms-api's handle.
    pub fn kms(&self) -> &kms_api::Running {
        self.kms.as_ref().expect("replica running")
    }

    /// Stops it and waits until it has anchored its audit log.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.trigger.trigger();
        if let Some(k) = self.kms.take() {
            k.wait().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(())
    }
}

impl InProcess {
    /// Starts a second kms-api named `replica` on the same etcd prefix,
    /// system-keyd and root-keyd (the stack's own kms-api is `kms-api-1`).
    pub async fn start_replica(&self, replica: &str) -> anyhow::Result<Replica> {
        self.start_replica_with(replica, std::sync::Arc::new(kms_api::clock::SystemClock), |_| {}).await
    }

    /// [`InProcess::start_replica`] on `clock`, its configuration changed
    /// by `configure`.
    pub async fn start_replica_with(
        &self,
        replica: &str,
        clock: std::sync::Arc<dyn kms_api::clock::Clock>,
        configure: impl FnOnce(&mut kms_api::Config),
    ) -> anyhow::Result<Replica> {
        let mut config = kms_api::Config::load(&self.stack.config(Service::KmsApi))?;
        let dir = self.dir.path().join(replica);
        config.replica = Some(replica.to_owned());
        config.data_dir = dir.clone();
        config.audit_dir = dir.join("audit");
        config.user_listen = ([127, 0, 0, 1], 0).into();
        config.admin_listen = ([127, 0, 0, 1], 0).into();
        config.rest_listen = None;
        config.console = None;
        config.metrics_listen = None;
        config.root_keyd = self.profile.root_keyd.clone();
        config.system_keyd = self.profile.system_keyd.clone();
        configure(&mut config);
        let (trigger, shutdown) = skm_runtime::shutdown::channel();
        let kms = kms_api::start_with_clock(config, shutdown, clock).await.map_err(|e| anyhow::anyhow!(e))?;
        let mut profile = self.profile.clone();
        profile.user_endpoint = kms.user_addr.to_string();
        profile.admin_endpoint = kms.admin_addr.to_string();
        profile.rest_endpoint = String::new();
        Ok(Replica { kms: Some(kms), profile, trigger })
    }
}

/// The three tiers as `skm daemon` processes on fixed free ports.
pub struct Processes {
    /// Keeps the stack directory alive.
    pub dir: TempDir,
    /// Files and configs.
    pub stack: DevStack,
    skm: PathBuf,
    children: Vec<(Service, Child)>,
}

impl Processes {
    /// Prepares the files; starts nothing.
    pub fn prepare(seal: DevSeal) -> anyhow::Result<Self> {
        Self::prepare_inner(seal, false)
    }

    /// [`Processes::prepare`] with every tier's metrics listener on (its
    /// address in `stack.profile.metrics`, by tier name).
    pub fn prepare_with_metrics(seal: DevSeal) -> anyhow::Result<Self> {
        Self::prepare_inner(seal, true)
    }

    fn prepare_inner(seal: DevSeal, metrics: bool) -> anyhow::Result<Self> {
        skm_runtime::tls::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let p = free_ports(7);
        let ports = Ports { user: p[0], admin: p[1], root: p[2], system: p[3], rest: None, console: None };
        let metrics = metrics.then_some(MetricsPorts { kms_api: p[4], root_keyd: p[5], system_keyd: p[6] });
        let stack = devstack::prepare_with_metrics(dir.path(), ports, seal, TRUST_DOMAIN, metrics)?;
        Ok(Self { dir, stack, skm: skm_bin(), children: Vec::new() })
    }

    /// The log file of a tier.
    pub fn log(&self, service: Service) -> PathBuf {
        self.stack.dir.join(format!("{}.log", service.name()))
    }

    /// Starts one tier.
    pub fn start(&mut self, service: Service) -> anyhow::Result<()> {
        let child = skm::dev::spawn_tier(&self.skm, service, &self.stack.config(service), Some(&self.log(service)))
            .with_context(|| format!("spawn {}", service.name()))?;
        self.children.push((service, child));
        Ok(())
    }

    /// Starts all three, root-keyd first.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for s in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
            self.start(s)?;
        }
        Ok(())
    }

    /// The process id of a running tier.
    pub fn pid(&self, service: Service) -> Option<u32> {
        self.children.iter().find(|(s, _)| *s == service).and_then(|(_, child)| child.id())
    }

    /// Stops one tier with SIGTERM and waits for it.
    pub async fn stop(&mut self, service: Service) {
        if let Some(i) = self.children.iter().position(|(s, _)| *s == service) {
            let (_, mut child) = self.children.remove(i);
            skm::dev::stop(&mut child, Duration::from_secs(10)).await;
        }
    }

    /// Stops every running tier.
    pub async fn stop_all(&mut self) {
        for s in [Service::KmsApi, Service::SystemKeyd, Service::RootKeyd] {
            self.stop(s).await;
        }
    }

    /// A client with the operator certificate.
    pub fn client(&self) -> anyhow::Result<Skm> {
        Ok(self.stack.profile.connect()?)
    }

    /// The logs of every tier, for failure messages.
    pub fn logs(&self) -> String {
        [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi]
            .iter()
            .map(|s| format!("--- {} ---\n{}", s.name(), std::fs::read_to_string(self.log(*s)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Creates a keystore allowing 127.0.0.1 and an AES-256 key in it; returns
/// the key id.
pub async fn aes_key(skm: &Skm, keystore_name: &str) -> anyhow::Result<String> {
    let ks = keystore(skm, keystore_name).await?;
    Ok(create_key(skm, &ks, "key", skm_client::admin::v1::KeyType::Aes256, 0).await?)
}

/// Encrypts through the user port.
pub async fn encrypt(skm: &Skm, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    let req = skm_client::api::v1::EncryptRequest {
        key_id: key_id.to_owned(),
        plaintext: plaintext.to_vec(),
        aad: aad.to_vec(),
    };
    Ok(skm.keys().encrypt(req).await?.into_inner().ciphertext)
}

/// Decrypts through the user port.
pub async fn decrypt(skm: &Skm, key_id: &str, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    let req = skm_client::api::v1::DecryptRequest {
        key_id: key_id.to_owned(),
        ciphertext: ciphertext.to_vec(),
        aad: aad.to_vec(),
        ..Default::default()
    };
    Ok(skm.keys().decrypt(req).await?.into_inner().plaintext)
}

/// Encrypt-then-decrypt rounds without pause on one key, from a task, for
/// "0 failed requests while X happens" tests.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    /// Starts the rounds on `key_id`.
    pub fn start(skm: &Skm, key_id: &str) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (skm, key, stop, ok, failed) =
                (skm.clone(), key_id.to_owned(), stop.clone(), ok.clone(), failed.clone());
            async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let round = async {
                        let ct = encrypt(&skm, &key, b"under load", b"").await?;
                        decrypt(&skm, &key, &ct, b"").await
                    };
                    match round.await {
                        Ok(plain) if plain == b"under load" => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            errors.push(format!("{other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                errors
            }
        });
        Self { stop, ok, failed, task }
    }

    /// Rounds that succeeded so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until `n` more rounds have succeeded than
    /// now: the load runs before and after whatever the test does.
    pub async fn rounds(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let target = self.ok() + n;
        eventually("encrypt/decrypt rounds", timeout, || {
            let done = self.ok() >= target;
            async move { done }
        })
        .await
    }

    /// Stops the rounds; the answer is the rounds that succeeded and the
    /// errors of those that failed.
    pub async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ok = self.ok.clone();
        let errors = self.task.await.unwrap_or_else(|e| vec![format!("load task: {e}")]);
        assert_eq!(errors.len() as u64, self.failed.load(std::sync::atomic::Ordering::Relaxed));
        (ok.load(std::sync::atomic::Ordering::Relaxed), errors)
    }
}

/// Creates a keystore that allows 127.0.0.1; returns its id.
pub async fn keystore(skm: &Skm, name: &str) -> anyhow::Result<String> {
    let policy = skm_client::admin::v1::Policy { allow_ips: vec!["127.0.0.1".into()], ..Default::default() };
    keystore_with(skm, name, policy).await
}

/// Creates a keystore with `policy`; returns its id.
pub async fn keystore_with(skm: &Skm, name: &str, policy: skm_client::admin::v1::Policy) -> anyhow::Result<String> {
    use skm_client::admin::v1 as pb;
    let ks = skm
        .admin()?
        .create_keystore(pb::CreateKeystoreRequest {
            alias: String::new(),
            name: name.to_owned(),
            allow_ips: vec![],
            policy: Some(policy),
        })
        .await?
        .into_inner()
        .keystore
        .context("no keystore")?;
    Ok(ks.id)
}

/// Creates a key of `key_type` in a keystore; returns its id.
pub async fn create_key(
    skm: &Skm,
    keystore_id: &str,
    name: &str,
    key_type: skm_client::admin::v1::KeyType,
    rotation_period_days: u32,
) -> Result<String, tonic::Status> {
    use skm_client::admin::v1 as pb;
    let req = pb::CreateKeyRequest {
        keystore_id: keystore_id.to_owned(),
        name: name.to_owned(),
        key_type: key_type as i32,
        rotation_period_days,
        ..Default::default()
    };
    let mut admin = skm.admin().map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(admin.create_key(req).await?.into_inner().key_id)
}

/// Creates a secret holding `value` in a keystore; returns its id.
pub async fn create_secret(skm: &Skm, keystore_id: &str, name: &str, value: &str) -> anyhow::Result<String> {
    let req = skm_client::admin::v1::CreateSecretRequest {
        keystore_id: keystore_id.to_owned(),
        name: name.to_owned(),
        value: value.to_owned(),
        max_versions: 0,
    };
    Ok(skm.admin()?.create_secret(req).await?.into_inner().key_id)
}

/// Verifies a signature with the `openssl` command line, using only the
/// exported SPKI PEM. `algorithm` is SKM's name ("ed25519", "ecdsa-sha256",
/// "rsa-pss-sha256", "rsa-pkcs1-sha256"). Returns whether OpenSSL accepts it.
pub fn openssl_verify(pem: &str, message: &[u8], signature: &[u8], algorithm: &str) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let (pub_path, msg_path, sig_path) = (dir.path().join("pub.pem"), dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&pub_path, pem)?;
    std::fs::write(&msg_path, message)?;
    std::fs::write(&sig_path, signature)?;
    let mut cmd = std::process::Command::new("openssl");
    if algorithm == "ed25519" {
        cmd.args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"]).arg(&pub_path).arg("-in").arg(&msg_path);
        cmd.arg("-sigfile").arg(&sig_path);
    } else {
        let hash = if algorithm == "ecdsa-sha384" { "-sha384" } else { "-sha256" };
        cmd.args(["dgst", hash, "-verify"]).arg(&pub_path).arg("-signature").arg(&sig_path);
        if algorithm == "rsa-pss-sha256" {
            cmd.args([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-sigopt",
                "rsa_mgf1_md:sha256",
            ]);
        }
        cmd.arg(&msg_path);
    }
    let out = cmd.output().context("run openssl (scripts/test installs it)")?;
    Ok(out.status.success())
}

/// `skm dev` running in the background, as a user starts it.
pub struct DevProcess {
    child: std::process::Child,
    /// The profile it printed.
    pub profile: String,
    dir: TempDir,
    /// Where its standard error goes.
    stderr: tempfile::NamedTempFile,
}

impl DevProcess {
    /// Starts `skm dev` on eight free ports and waits until `skm status` is happy.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// [`DevProcess::start`] with more `skm dev` arguments (e.g. `--seal pkcs11`).
    pub fn start_with(args: &[&str]) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let dir = tempfile::tempdir()?;
        let base = free_port_base();
        let stderr = tempfile::NamedTempFile::new()?;
        let mut child = std::process::Command::new(skm_bin())
            .args(["dev", "--data-dir"])
            .arg(dir.path())
            .args(["--port-base", &base.to_string()])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr.reopen()?)
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let profile = line.trim().strip_prefix("export SKM_PROFILE=").context("export line")?.to_owned();
        let dev = Self { child, profile, dir, stderr };
        let status = dev.run(&["status", "--wait", "60"], b"");
        if !status.status.success() {
            bail!("skm dev not ready: {}", String::from_utf8_lossy(&status.stdout));
        }
        Ok(dev)
    }

    /// The `--data-dir` it runs in.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it has written to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Runs `skm ARGS` with this profile, `stdin` as input.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new(skm_bin())
            .args(args)
            .env("SKM_PROFILE", &self.profile)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn skm");
        child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
        child.wait_with_output().expect("skm output")
    }

    /// Runs `skm ARGS`, requires success, returns trimmed stdout.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "skm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Adds operator `name` with `role` (`skm pki add-operator`) and writes
    /// a profile for it into `dir`, a copy of the stack's own with the new
    /// certificate: the profile's path and the certificate's SHA-256.
    pub fn add_operator(&self, name: &str, role: &str, dir: &Path) -> (PathBuf, String) {
        let stack_dir = Path::new(&self.profile).parent().expect("the profile's folder").to_owned();
        let certs = dir.join(name);
        let pki = stack_dir.join("pki");
        let sha = self.ok(
            &["pki", "add-operator", name, "--role", role, "--pki", path_str(&pki), "--out", path_str(&certs)],
            b"",
        );
        let profile = std::fs::read_to_string(&self.profile).expect("the stack's profile");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, profile.replace(path_str(&pki.join("operator")), path_str(&certs)))
            .expect("write the profile");
        (path, sha)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

impl DevProcess {
    /// Stops `skm dev` as Ctrl-C would (SIGTERM) and waits for it; the
    /// stack directory stays until drop.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        self.child.wait().ok()
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A base port with the 17 free ports `skm dev` may take from it (four
/// gRPC ports, three metrics listeners, the REST listener, the console,
/// with `--store etcd` two ports for each of three etcd members, and with
/// `--replicas 2` two for the second replica).
pub fn free_port_base() -> u16 {
    reserve_ports(17)
}

/// One scrape of a metrics listener (`host:port`): `GET /metrics` over
/// plain HTTP/1.1, the body parsed by `prometheus-parse` (an independent
/// parser of the Prometheus text format).
pub async fn scrape(endpoint: &str) -> anyhow::Result<Scrape> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(endpoint).await.with_context(|| format!("connect {endpoint}"))?;
    tcp.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await.context("scrape timed out")??;
    let text = String::from_utf8(raw).context("scrape is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("scrape of {endpoint}: {head}");
    }
    if !head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4") {
        bail!("scrape of {endpoint}: not the Prometheus text format: {head}");
    }
    let samples = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))?;
    Ok(Scrape { samples: samples.samples, text: body.to_owned() })
}

/// A parsed scrape.
pub struct Scrape {
    /// Every sample.
    pub samples: Vec<prometheus_parse::Sample>,
    /// The exposition as served.
    pub text: String,
}

impl Scrape {
    /// The value of the one sample of `metric` whose labels include all of
    /// `labels` (0 when there is none: a counter not yet incremented).
    /// Histograms give their count.
    ///
    /// # Panics
    ///
    /// When several samples match (the labels don't pick one series).
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&prometheus_parse::Sample> = self
            .samples
            .iter()
            .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert!(matching.len() <= 1, "{metric} {labels:?} matches {} series", matching.len());
        matching.first().map_or(0.0, |s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
    }

    /// Every label value of `label` among the samples (to check cardinality).
    pub fn label_values(&self, label: &str) -> std::collections::BTreeSet<String> {
        self.samples.iter().filter_map(|s| s.labels.get(label).map(str::to_owned)).collect()
    }
}

/// A TLS client trusting the CA certificates in `ca` (PEM), offering `alpn`.
pub fn tls_client(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).expect("the CA file");
    for cert in skm_runtime::tls::certs_from_pem(&pem).expect("PEM certificates") {
        roots.add(cert).expect("a CA certificate");
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Sends one HTTP/1.1 `request` (head and body, `Connection: close`) over
/// TLS to `localhost` at `addr`, after `preface` on the bare TCP connection
/// (a PROXY header, or nothing); the whole answer as it came.
pub async fn https_exchange(addr: std::net::SocketAddr, ca: &Path, preface: &[u8], request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(preface).await.expect("send the preface");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    let mut tls = tls_client(ca, &[b"http/1.1"]).connect(name, tcp).await.expect("a TLS session");
    tls.write_all(request).await.expect("send the request");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    raw
}
