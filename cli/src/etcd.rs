//! A local etcd cluster on loopback, for `skm dev --store etcd` and the
//! tests: Debian's `etcd` (etcd-server), one process per member, each with
//! its own data directory, TLS on both the client and the peer URLs, and a
//! CA of its own, so that only the certificates issued here (one per SKM
//! daemon that uses etcd) can reach it.
//!
//! ```text
//! DIR/pki/{ca.pem,ca.key}               the etcd CA (not SKM's deployment CA)
//! DIR/pki/member-N.{pem,key}            member N's server and peer certificate
//! DIR/pki/<client>.{pem,key}            a client certificate (kms-api, system-keyd)
//! DIR/member-N/                         member N's data directory
//! DIR/member-N.log                      its log
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use skm_pki::{CertificateAuthority, IssuedPem};
use skm_runtime::SpiffeId;
use skm_runtime::tls::TlsFiles;
use skm_store::etcd::EtcdConfig;

use crate::devstack::write_private;

const TRUST_DOMAIN: &str = "etcd.skm.local";
const DAYS: u32 = 3650;

/// Finds the `etcd` binary: `SKM_ETCD` if set, else `etcd` on the PATH.
pub fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKM_ETCD") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("etcd")).find(|candidate| candidate.is_file()).context(
        "etcd not found on the PATH: install Debian's etcd-server (apt-get install etcd-server) or set SKM_ETCD",
    )
}

/// A new etcd CA: etcd's own, not SKM's deployment CA, so that a
/// certificate of the deployment can't reach etcd and one of etcd can't
/// reach an SKM tier.
pub fn new_ca() -> anyhow::Result<CertificateAuthority> {
    Ok(CertificateAuthority::generate(TRUST_DOMAIN, "SKM etcd CA", DAYS)?)
}

/// Member `n`'s certificate (server and peer, client auth for peers) for
/// the host names `hosts`, `localhost` and 127.0.0.1.
pub fn member_cert(ca: &CertificateAuthority, n: usize, hosts: &[String]) -> anyhow::Result<IssuedPem> {
    Ok(ca.issue_for_hosts(&SpiffeId::new(TRUST_DOMAIN, &format!("member/{n}"))?, hosts, DAYS)?)
}

/// The client certificate of `client` (a daemon that uses etcd).
pub fn client_cert(ca: &CertificateAuthority, client: &str) -> anyhow::Result<IssuedPem> {
    Ok(ca.issue_for_id(&SpiffeId::new(TRUST_DOMAIN, &format!("client/{client}"))?, DAYS)?)
}

/// One member of a local cluster.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A local etcd cluster. Dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    binary: PathBuf,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Writes the PKI for `members` members (client port `port_base + 2i`,
    /// peer port the next) under `dir`, and client certificates named
    /// `clients`; starts nothing.
    pub fn prepare(dir: &Path, members: usize, port_base: u16, clients: &[&str]) -> anyhow::Result<Self> {
        let binary = etcd_binary()?;
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        let ca = new_ca()?;
        std::fs::write(pki.join("ca.pem"), ca.cert_pem())?;
        write_private(&pki.join("ca.key"), ca.key_pem().as_bytes())?;
        let write = |issued: IssuedPem, file: &str| -> anyhow::Result<()> {
            std::fs::write(pki.join(format!("{file}.pem")), &issued.cert_pem)?;
            write_private(&pki.join(format!("{file}.key")), issued.key_pem.as_bytes())
        };
        let mut list = Vec::with_capacity(members);
        for i in 0..members {
            let name = format!("member-{}", i + 1);
            write(member_cert(&ca, i + 1, &[])?, &name)?;
            let offset = u16::try_from(2 * i)?;
            list.push(Member { name, client_port: port_base + offset, peer_port: port_base + offset + 1, child: None });
        }
        for client in clients {
            write(client_cert(&ca, client)?, client)?;
        }
        Ok(Self { dir: dir.to_owned(), binary, members: list })
    }

    /// `host:port` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// Member `i`'s data directory (what a raw scan of etcd's files reads).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(&self.members[i].name)
    }

    /// The files of client certificate `client` (named in [`prepare`](Self::prepare)).
    pub fn client_files(&self, client: &str) -> TlsFiles {
        let pki = self.dir.join("pki");
        TlsFiles {
            ca: pki.join("ca.pem"),
            cert: pki.join(format!("{client}.pem")),
            key: pki.join(format!("{client}.key")),
        }
    }

    /// A store config for `client` writing under `prefix`.
    pub fn store_config(&self, client: &str, prefix: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.endpoints(),
            tls: self.client_files(client),
            prefix: prefix.as_bytes().to_vec(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The `[etcd]` section of a daemon config for `client` under `prefix`.
    pub fn config_section(&self, client: &str, prefix: &str) -> toml::Table {
        let files = self.client_files(client);
        let mut section = toml::Table::new();
        section.insert(
            "endpoints".into(),
            toml::Value::Array(self.endpoints().into_iter().map(toml::Value::from).collect()),
        );
        for (field, path) in [("ca", &files.ca), ("cert", &files.cert), ("key", &files.key)] {
            section.insert(field.into(), path.display().to_string().into());
        }
        section.insert("prefix".into(), prefix.into());
        section
    }

    /// Starts every member that isn't running, then waits until the
    /// cluster answers a read through `client`'s certificate.
    pub async fn start(&mut self, client: &str) -> anyhow::Result<()> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        self.wait_ready(client).await
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let pki = self.dir.join("pki");
        let peers: Vec<String> =
            self.members.iter().map(|m| format!("{}=https://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let data_dir = self.data_dir(i);
        let member = &self.members[i];
        let state = if data_dir.join("member").exists() { "existing" } else { "new" };
        let client_url = format!("https://127.0.0.1:{}", member.client_port);
        let peer_url = format!("https://127.0.0.1:{}", member.peer_port);
        let cert = pki.join(format!("{}.pem", member.name));
        let key = pki.join(format!("{}.key", member.name));
        let ca = pki.join("ca.pem");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", member.name)))?;
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &peers.join(","), "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "skm-dev", "--logger", "zap", "--log-level", "warn"])
            // History would grow with every write (and every watch beacon).
            .args(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h"])
            .arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(&ca)
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .arg("--peer-client-cert-auth")
            .arg("--peer-trusted-ca-file")
            .arg(&ca)
            .arg("--peer-cert-file")
            .arg(&cert)
            .arg("--peer-key-file")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, client: &str) -> anyhow::Result<()> {
        let config = self.store_config(client, "skm/ready-check/");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            for member in &mut self.members {
                if let Some(status) = member.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    bail!("etcd {} exited with {status}; see {}/{}.log", member.name, self.dir.display(), member.name);
                }
            }
            match skm_store::EtcdStore::open(&config).await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    bail!("etcd cluster not ready after 60 s: {}", skm_runtime::daemon::error_chain(&e))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The running member that leads the cluster now, asked through
    /// `client`'s certificate; `None` while there is no leader.
    pub async fn leader(&self, client: &str) -> anyhow::Result<Option<usize>> {
        use skm_proto::etcd::StatusRequest;
        use skm_proto::etcd::maintenance_client::MaintenanceClient;
        let files = self.client_files(client);
        let tls = skm_runtime::tls::TlsIdentity::load(&files, None)?.web_pki_client_config()?;
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let address = format!("127.0.0.1:{}", member.client_port);
            let channel = skm_runtime::channel::lazy_channel(&address, tls.clone())?;
            let mut maintenance = MaintenanceClient::new(channel);
            let asked = maintenance.status(StatusRequest {});
            let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), asked).await else { continue };
            let status = status.into_inner();
            if status.header.is_some_and(|h| h.member_id == status.leader) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Kills member `i` with SIGKILL (as a crash would) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].child.is_none() {
            self.spawn(i)?;
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
