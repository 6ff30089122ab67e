//! The compose stacks (`docker-compose.yml`, and the fleet of
//! `docker-compose.ha.yml`) under test: images built once
//! per test binary by `deploy/build-images`, one compose project per test
//! (unique `-p`, kms-api published on ephemeral host ports), torn down with
//! `down -v` by [`Stack`]'s `Drop` even when the test fails.
//!
//! Scratch images have no shell: the checks run the tiers' own binaries
//! (`docker exec … health`), the `skm` CLI in client containers on the user
//! network, and `skm-probe` (in the skm image) in client containers or in a
//! tier's network namespace (`--network container:<id>`). Nothing here needs
//! root on the host: volume files are read with `docker cp`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use skm_client::{CertFiles, Profile, Skm};
use tempfile::TempDir;

/// The tiers, by compose service name.
pub const TIERS: [&str; 3] = ["root-keyd", "system-keyd", "kms-api"];

/// kms-api's user port inside the stack.
pub const USER_PORT: u16 = 7700;
/// kms-api's admin port inside the stack.
pub const ADMIN_PORT: u16 = 7701;
/// root-keyd's port inside the stack.
pub const ROOT_PORT: u16 = 7702;
/// system-keyd's port inside the stack.
pub const SYSTEM_PORT: u16 = 7703;

/// Label on every container a test starts outside compose, so that the
/// guard can remove it before `down`.
const LABEL: &str = "skm-compose-test";

/// A Docker engine and a compose front end (v2 `docker compose` or v1
/// `docker-compose`, whichever is installed).
#[derive(Clone, Debug)]
pub struct Engine {
    compose: Vec<String>,
}

/// The engine, or `None` when this run leaves the compose group out
/// (`SKM_SKIP=compose`).
///
/// # Panics
///
/// When there is no Docker engine or no compose front end: the compose
/// tests fail, saying what to install, rather than pass without running.
pub fn engine() -> Option<Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    if crate::left_out("compose") {
        return None;
    }
    let found = ENGINE.get_or_init(|| {
        let run = |cmd: &mut std::process::Command| match cmd.output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = run(std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
        {
            return Err(format!("no Docker engine (`docker version`: {why})"));
        }
        if run(std::process::Command::new("docker").args(["compose", "version"])).is_ok() {
            Ok(Engine { compose: vec!["docker".into(), "compose".into()] })
        } else if run(std::process::Command::new("docker-compose").arg("--version")).is_ok() {
            Ok(Engine { compose: vec!["docker-compose".into()] })
        } else {
            Err("no compose front end (neither `docker compose` v2 nor `docker-compose` v1 runs)".to_owned())
        }
    });
    match found {
        Ok(engine) => {
            println!("[compose] compose front end: {}", engine.compose.join(" "));
            Some(engine.clone())
        }
        Err(why) => panic!(
            "the compose tests need a running Docker engine and a compose front end, and found {why}. \
             Install them (Debian: docker.io and docker-compose, or the docker-compose-plugin) and start \
             the engine; scripts/test checks this. To leave the group out instead: SKM_SKIP=compose"
        ),
    }
}

/// The repository root (where `docker-compose.yml` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Runs `deploy/build-images` once per test binary; every test waits for
/// the one build and gets its outcome.
pub fn build_images() -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let started = std::time::Instant::now();
            let out = std::process::Command::new(repo_root().join("deploy").join("build-images"))
                .output()
                .map_err(|e| format!("cannot run deploy/build-images: {e}"))?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                return Err(format!("deploy/build-images failed ({}):\n{stderr}", out.status));
            }
            println!("[compose] deploy/build-images took {:.1} s", started.elapsed().as_secs_f64());
            for line in stderr.lines().filter(|l| l.starts_with("deploy/build-images:")) {
                println!("[compose]   {line}");
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// A running client container on the user network.
#[derive(Debug)]
pub struct ClientContainer {
    /// Container id.
    pub id: String,
    /// Its MAC address on the user network.
    pub mac: String,
}

impl ClientContainer {
    /// `skm args` inside the container.
    pub async fn skm(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Run> {
        let mut all = vec!["exec", "-i", &self.id, "/usr/local/bin/skm"];
        all.extend(args);
        run("docker", &all, stdin, &[]).await
    }
}

/// The output of a command, with a readable failure.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout without surrounding white space.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }
}

/// Runs `program args`, feeding `stdin`; fails only if it can't be spawned.
pub async fn run(program: &str, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> anyhow::Result<Run> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("cannot run {program}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await?;
        drop(pipe);
    }
    Ok(Run::from_output(child.wait_with_output().await?))
}

/// Runs `docker args`.
pub async fn docker(args: &[&str]) -> anyhow::Result<Run> {
    run("docker", args, None, &[]).await
}

/// Runs `docker args` and returns its stdout; fails unless it exits 0.
pub async fn docker_ok(args: &[&str]) -> anyhow::Result<String> {
    let r = docker(args).await?;
    if !r.ok() {
        bail!("docker {} failed ({:?}): {}{}", args.join(" "), r.code, r.stderr, r.stdout);
    }
    Ok(r.stdout)
}

/// One compose project of `docker-compose.yml` or `docker-compose.ha.yml`.
#[derive(Debug)]
pub struct Stack {
    engine: Engine,
    /// The compose file, in the repository's root.
    file: &'static str,
    /// kms-api's services: `kms-api`, or the replicas of the HA stack.
    pub replicas: &'static [&'static str],
    /// The compose project name (`-p`).
    pub project: String,
    /// The trust domain the stack was made with.
    pub trust_domain: String,
    /// root-keyd's seal mode (`SKM_SEAL_MODE`): "passphrase" unless set
    /// before the first `up`.
    pub seal_mode: &'static str,
    /// The user network's subnet (`SKM_USER_SUBNET`): fixed per project so
    /// that keystores allowing it survive `down` + `up`, distinct between
    /// projects (Docker refuses overlapping networks).
    user_subnet: std::sync::Mutex<String>,
    /// Container ids by service (`compose ps` is slow with compose v1):
    /// kept across stop/start/restart, forgotten on up/down.
    containers: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// A /24 for the user network of a new project, in 198.18.0.0/15 (RFC 2544,
/// benchmarking: no real network uses it), different for every call in this
/// process and likely different between processes.
fn next_user_subnet() -> String {
    static NEXT: OnceLock<AtomicUsize> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicUsize::new(std::process::id() as usize * 37));
    let i = next.fetch_add(1, Ordering::Relaxed) % 512;
    format!("198.{}.{}.0/24", 18 + i / 256, i % 256)
}

impl Stack {
    /// A new project (nothing started); the name is unique per process and test.
    pub fn new(engine: &Engine, test: &str) -> Self {
        Self::of_file(engine, test, "docker-compose.yml", &["kms-api"])
    }

    /// A new project of the fleet, `docker-compose.ha.yml` (nothing started).
    pub fn new_ha(engine: &Engine, test: &str) -> Self {
        Self::of_file(engine, test, "docker-compose.ha.yml", &["kms-api-1", "kms-api-2"])
    }

    fn of_file(engine: &Engine, test: &str, file: &'static str, replicas: &'static [&'static str]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag: String = test.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_lowercase();
        let project = format!("skmt{}{}x{}", tag, std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Self {
            engine: engine.clone(),
            file,
            replicas,
            project,
            trust_domain: crate::TRUST_DOMAIN.to_owned(),
            seal_mode: "passphrase",
            user_subnet: std::sync::Mutex::new(next_user_subnet()),
            containers: std::sync::Mutex::default(),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SKM_USER_PORT", "0".to_owned()),
            ("SKM_ADMIN_PORT", "0".to_owned()),
            ("SKM_USER_PORT_2", "0".to_owned()),
            ("SKM_ADMIN_PORT_2", "0".to_owned()),
            ("SKM_PUBLISH_ADDR", "127.0.0.1".to_owned()),
            ("SKM_TRUST_DOMAIN", self.trust_domain.clone()),
            ("SKM_SEAL_MODE", self.seal_mode.to_owned()),
            ("SKM_IMAGE_TAG", "dev".to_owned()),
            ("SKM_USER_SUBNET", self.user_subnet.lock().map(|s| s.clone()).unwrap_or_default()),
            // kms-api looks for new system key versions often, so that the
            // fault tests see it do so while root-keyd or system-keyd is away.
            ("SKM_SYSTEM_KEY_REFRESH_SECS", "2".to_owned()),
        ]
    }

    fn compose_args<'a>(&'a self, file: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = self.engine.compose[1..].iter().map(String::as_str).collect();
        all.extend(["-p", &self.project, "-f", file]);
        all.extend(args);
        all
    }

    /// Runs `compose -p PROJECT -f FILE args`.
    pub async fn compose(&self, args: &[&str]) -> anyhow::Result<Run> {
        if matches!(args.first(), Some(&("up" | "down" | "rm" | "create"))) {
            self.containers.lock().map(|mut c| c.clear()).ok();
        }
        let file = repo_root().join(self.file).display().to_string();
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&self.engine.compose[0], &self.compose_args(&file, args), None, &env).await
    }

    /// Like [`Stack::compose`], failing unless it exits 0.
    pub async fn compose_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let r = self.compose(args).await?;
        if !r.ok() {
            bail!("compose {} failed ({:?}):\n{}{}", args.join(" "), r.code, r.stderr, r.stdout);
        }
        Ok(r.stdout)
    }

    /// `up -d` of `services` (all when empty; the init service comes
    /// with any tier). A user subnet taken by another network is replaced
    /// by the next candidate.
    pub async fn up_services(&self, services: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["up", "-d"];
        args.extend(services);
        for _ in 0..10 {
            let r = self.compose(&args).await?;
            if r.ok() {
                return Ok(());
            }
            if !r.stderr.contains("overlaps") {
                bail!("compose {} failed ({:?}):\n{}{}", args.join(" "), r.code, r.stderr, r.stdout);
            }
            if let Ok(mut subnet) = self.user_subnet.lock() {
                *subnet = next_user_subnet();
            }
        }
        bail!("compose up: no free user subnet after 10 tries")
    }

    /// `up -d` of the whole stack.
    pub async fn up(&self) -> anyhow::Result<()> {
        self.up_services(&[]).await
    }

    /// Builds the images (once per binary) and brings the stack up ready.
    pub async fn start(engine: &Engine, test: &str) -> anyhow::Result<Self> {
        Self::start_stack(Self::new(engine, test)).await
    }

    /// [`Stack::start`] of the fleet (`docker-compose.ha.yml`).
    pub async fn start_ha(engine: &Engine, test: &str) -> anyhow::Result<Self> {
        Self::start_stack(Self::new_ha(engine, test)).await
    }

    async fn start_stack(stack: Self) -> anyhow::Result<Self> {
        build_images()?;
        let started = std::time::Instant::now();
        stack.up().await?;
        stack.wait_ready(Duration::from_secs(90)).await?;
        println!("[compose] {}: up and ready in {:.1} s", stack.project, started.elapsed().as_secs_f64());
        Ok(stack)
    }

    /// The container id of a service.
    pub async fn container(&self, service: &str) -> anyhow::Result<String> {
        if let Some(id) = self.containers.lock().ok().and_then(|c| c.get(service).cloned()) {
            return Ok(id);
        }
        let out = self.compose_ok(&["ps", "-q", service]).await?;
        let id = out.lines().next().map(str::to_owned).with_context(|| format!("no container for {service}"))?;
        self.containers.lock().map(|mut c| c.insert(service.to_owned(), id.clone())).ok();
        Ok(id)
    }

    /// A project network's full name (`<project>_<network>`).
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    /// A project volume's full name (`<project>_<volume>`).
    pub fn volume(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    /// Where the Docker engine keeps a volume's files on this host (read
    /// as root, for their modes).
    pub async fn volume_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let out = docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &self.volume(name)]).await?;
        Ok(PathBuf::from(out.trim()))
    }

    /// Runs the tier's own `health` subcommand in its container: true iff
    /// SERVING (exit 0).
    pub async fn serving(&self, service: &str) -> bool {
        self.health(service).await.is_ok_and(|r| r.ok())
    }

    /// The output of `<tier> health` in the tier's container.
    pub async fn health(&self, service: &str) -> anyhow::Result<Run> {
        let id = self.container(service).await?;
        let binary = if self.replicas.contains(&service) { "kms-api" } else { service };
        docker(&["exec", &id, &format!("/usr/local/bin/{binary}"), "health"]).await
    }

    /// Waits until the three tiers (every kms-api replica) are SERVING.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut services = vec!["root-keyd", "system-keyd"];
        services.extend(self.replicas);
        self.wait_serving(&services, timeout).await
    }

    /// Waits until each of `services` is SERVING.
    pub async fn wait_serving(&self, services: &[&str], timeout: Duration) -> anyhow::Result<()> {
        for service in services {
            let what = format!("{service} SERVING");
            if let Err(e) = crate::eventually(&what, timeout, || self.serving(service)).await {
                bail!("{e}\n{}", self.logs().await);
            }
        }
        Ok(())
    }

    /// The compose healthcheck state of a service (`healthy`, `starting`, ...).
    pub async fn health_status(&self, service: &str) -> anyhow::Result<String> {
        let id = self.container(service).await?;
        Ok(docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &id]).await?.trim().to_owned())
    }

    /// The host address a container port of kms-api (the first replica)
    /// is published on.
    pub async fn published(&self, port: u16) -> anyhow::Result<SocketAddr> {
        self.published_on(self.replicas[0], port).await
    }

    /// The host address a container port of `service` is published on.
    pub async fn published_on(&self, service: &str, port: u16) -> anyhow::Result<SocketAddr> {
        let out = self.compose_ok(&["port", service, &port.to_string()]).await?;
        let addr = out.trim().lines().next().unwrap_or_default();
        addr.parse().with_context(|| format!("compose port {service} {port}: {out:?}"))
    }

    /// The subnet of a project network (keystores allow the user network).
    pub async fn subnet(&self, network: &str) -> anyhow::Result<String> {
        let out = docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &self.network(network),
        ])
        .await?;
        Ok(out.trim().to_owned())
    }

    /// `(network, ip)` of every network a service's container is on.
    pub async fn addresses(&self, service: &str) -> anyhow::Result<Vec<(String, String)>> {
        let id = self.container(service).await?;
        let format = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}\n{{end}}";
        let out = docker_ok(&["inspect", "-f", format, &id]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, ip)| (n.strip_prefix(&format!("{}_", self.project)).unwrap_or(n).to_owned(), ip.to_owned()))
            .collect())
    }

    fn run_args<'a>(&'a self, network: &'a str, operator: &'a str) -> Vec<&'a str> {
        vec!["run", "--rm", "-i", "--label", LABEL, "--label", &self.project, "--network", network, "-v", operator]
    }

    /// `skm args` in a client container on the user network, with the
    /// operator profile of the init service.
    pub async fn skm(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Run> {
        self.skm_on("user", args, stdin).await
    }

    /// `skm args` in a container on the project network `network` (e.g.
    /// `kms-root`, where operators reach root-keyd), with the operator profile.
    pub async fn skm_on(&self, network: &str, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Run> {
        let network = self.network(network);
        let operator = format!("{}:/var/lib/skm/operator:ro", self.volume("operator"));
        let mut all = self.run_args(&network, &operator);
        all.push("skm/skm:dev");
        all.extend(args);
        run("docker", &all, stdin, &[]).await
    }

    /// A long-lived client container on the user network (for MAC tests:
    /// its MAC is known once it runs); `skm` runs in it with `docker exec`.
    /// Removed with the project's other labelled containers at teardown.
    pub async fn client_container(&self) -> anyhow::Result<ClientContainer> {
        let network = self.network("user");
        let operator = format!("{}:/var/lib/skm/operator:ro", self.volume("operator"));
        let id = docker_ok(&[
            "run",
            "-d",
            "--label",
            LABEL,
            "--label",
            &self.project,
            "--network",
            &network,
            "-v",
            &operator,
            "--entrypoint",
            "/usr/local/bin/skm-probe",
            "skm/skm:dev",
            "wait",
            "900",
        ])
        .await?;
        let id = id.trim().to_owned();
        let format = "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}";
        let mac = docker_ok(&["inspect", "-f", format, &id]).await?.trim().to_owned();
        Ok(ClientContainer { id, mac })
    }

    /// Like [`Stack::skm`], failing unless it exits 0; returns trimmed stdout.
    pub async fn skm_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
        let r = self.skm(args, stdin).await?;
        if !r.ok() {
            bail!("skm {} failed ({:?}): {}", args.join(" "), r.code, r.stderr);
        }
        Ok(r.out().to_owned())
    }

    /// `skm-probe args` in a container on `network` (a full network name or
    /// `container:<id>` to use that container's network namespace).
    pub async fn probe(&self, network: &str, args: &[&str]) -> anyhow::Result<Run> {
        let mut all = vec![
            "run",
            "--rm",
            "--label",
            LABEL,
            "--label",
            &self.project,
            "--network",
            network,
            "--entrypoint",
            "/usr/local/bin/skm-probe",
            "skm/skm:dev",
        ];
        all.extend(args);
        run("docker", &all, None, &[]).await
    }

    /// Copies the files of the project volumes `names` to a fresh host
    /// directory, one sub-directory per volume (through a stopped helper
    /// container and `docker cp`: no root needed).
    pub async fn copy_volumes(&self, names: &[&str]) -> anyhow::Result<TempDir> {
        let dir = tempfile::tempdir()?;
        let mut args =
            vec!["create".to_owned(), "--label".into(), LABEL.into(), "--label".into(), self.project.clone()];
        for name in names {
            args.extend(["-v".to_owned(), format!("{}:/v/{name}:ro", self.volume(name))]);
        }
        args.push("skm/skm:dev".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker_ok(&args).await?.trim().to_owned();
        let copied = async {
            for name in names {
                let dest = dir.path().join(name);
                docker_ok(&["cp", &format!("{id}:/v/{name}/."), &dest.display().to_string()]).await?;
            }
            anyhow::Ok(())
        }
        .await;
        docker(&["rm", "-f", &id]).await?;
        copied?;
        Ok(dir)
    }

    /// A client on the host through the published ports, with the
    /// operator's certificate (copied out of the operator volume). The
    /// returned directory holds the certificate files.
    pub async fn host_client(&self) -> anyhow::Result<(TempDir, Skm)> {
        let dir = self.copy_volumes(&["operator"]).await?;
        let skm = self.host_client_with(dir.path()).await?;
        Ok((dir, skm))
    }

    /// A host client with operator files already copied to `dir`
    /// (re-reads the published ports, which change when kms-api restarts);
    /// its profile names every replica.
    pub async fn host_client_with(&self, dir: &Path) -> anyhow::Result<Skm> {
        let op = dir.join("operator");
        let mut user = Vec::new();
        let mut admin = Vec::new();
        for replica in self.replicas {
            user.push(self.published_on(replica, USER_PORT).await?.to_string());
            admin.push(self.published_on(replica, ADMIN_PORT).await?.to_string());
        }
        let profile = Profile {
            trust_domain: self.trust_domain.clone(),
            ca: op.join("ca.pem"),
            user_endpoint: user.remove(0),
            user_replicas: user,
            rest_endpoint: String::new(),
            admin_endpoint: admin.remove(0),
            admin_replicas: admin,
            // Not reachable from the host, on purpose.
            root_keyd: "127.0.0.1:9".into(),
            system_keyd: "127.0.0.1:9".into(),
            operator: Some(CertFiles { cert: op.join("cert.pem"), key: op.join("key.pem") }),
            client: None,
            client_mac: None,
            metrics: Default::default(),
        };
        Ok(profile.connect()?)
    }

    /// The logs of every service, for failure messages.
    pub async fn logs(&self) -> String {
        match self.compose(&["logs", "--no-color", "--tail", "60"]).await {
            Ok(r) => format!("--- compose logs of {} ---\n{}{}", self.project, r.stdout, r.stderr),
            Err(e) => format!("(no logs: {e})"),
        }
    }

    /// The full logs of every service.
    pub async fn all_logs(&self) -> anyhow::Result<String> {
        let r = self.compose(&["logs", "--no-color"]).await?;
        Ok(format!("{}{}", r.stdout, r.stderr))
    }

    fn teardown(&self) {
        use std::process::{Command, Stdio};
        let quiet = |cmd: &mut Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        if std::thread::panicking() {
            let file = repo_root().join(self.file).display().to_string();
            let args = self.compose_args(&file, &["logs", "--no-color", "--tail", "80"]);
            if let Ok(out) = Command::new(&self.engine.compose[0]).args(args).output() {
                eprintln!(
                    "--- compose logs of {} ---\n{}",
                    self.project,
                    String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // Containers started next to compose (clients, probes, helpers).
        let filter = format!("label={}", self.project);
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
            if !ids.is_empty() {
                quiet(Command::new("docker").args(["rm", "-f"]).args(&ids));
            }
        }
        let file = repo_root().join(self.file).display().to_string();
        let args = self.compose_args(&file, &["down", "-v", "--remove-orphans", "-t", "5"]);
        let env = self.env();
        quiet(Command::new(&self.engine.compose[0]).args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))));
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Creates a keystore allowing `allow` (an IPv4 CIDR) and an AES-256 key
/// named `key` in it, through the admin port; returns their ids.
// The admin messages are gaining fields (other issues): defaults for the rest.
#[allow(clippy::needless_update)]
pub async fn keystore_with_key(skm: &Skm, name: &str, allow: &str) -> anyhow::Result<(String, String)> {
    use skm_client::admin::v1 as pb;
    let request =
        pb::CreateKeystoreRequest { name: name.to_owned(), allow_ips: vec![allow.to_owned()], ..Default::default() };
    let keystore = skm.admin()?.create_keystore(request).await?.into_inner().keystore.context("no keystore")?;
    let request = pb::CreateKeyRequest {
        keystore_id: keystore.id.clone(),
        name: "key".into(),
        key_type: pb::KeyType::Aes256 as i32,
        ..Default::default()
    };
    let key = skm.admin()?.create_key(request).await?.into_inner();
    Ok((keystore.id, key.key_id))
}

/// Every file below `dir` with its contents.
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    crate::files_below(dir)
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p.strip_prefix(dir).unwrap_or(&p).to_owned(), bytes)))
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && crate::holds_bytes(haystack, needle)
}
