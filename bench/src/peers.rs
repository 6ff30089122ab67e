//! The peers SKM is compared with, run here as processes on loopback and
//! driven with the same operations, payloads and concurrency: Cosmian KMS
//! (KMIP 2.1 JSON over HTTP) and moto's AWS KMS (JSON over HTTP). Each
//! operation is mapped to the peer's nearest equivalent; one a peer lacks
//! is reported n/a with the reason. Both speak plain HTTP/1.1 without TLS
//! or audit, which favours them; the report says so.

pub(crate) mod cosmian;
mod http;
pub(crate) mod moto;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::args::PeerName;
use crate::ops::Op;

/// A started peer with its keys made.
pub(crate) enum Peer {
    /// Cosmian KMS.
    Cosmian(cosmian::Cosmian),
    /// moto.
    Moto(moto::Moto),
}

/// Where bench/install-peers puts a peer's server.
pub(crate) fn binary(name: PeerName, tools: &Path) -> PathBuf {
    match name {
        PeerName::Cosmian => tools.join("cosmian/bin/cosmian_kms"),
        PeerName::Moto => tools.join("venv/bin/moto_server"),
    }
}

impl Peer {
    /// Starts a peer and makes its keys for `ops`; the operations it can't
    /// do are in [`Peer::unsupported`].
    pub(crate) async fn start(name: PeerName, tools: &Path, ops: &[Op]) -> anyhow::Result<Self> {
        let bin = binary(name, tools);
        Ok(match name {
            PeerName::Cosmian => Peer::Cosmian(cosmian::Cosmian::start(&bin, ops).await?),
            PeerName::Moto => Peer::Moto(moto::Moto::start(&bin, ops).await?),
        })
    }

    /// Why the peer can't do `op`, if it can't.
    pub(crate) fn unsupported(&self, op: Op) -> Option<String> {
        match self {
            Peer::Cosmian(p) => p.unsupported(op),
            Peer::Moto(p) => p.unsupported(op),
        }
    }

    /// What `op` maps to on this peer.
    pub(crate) fn mapping(&self, op: Op) -> String {
        match self {
            Peer::Cosmian(_) => cosmian::mapping(op),
            Peer::Moto(_) => moto::mapping(op),
        }
    }

    /// One call of `op`.
    pub(crate) async fn call(&self, op: Op) -> Result<(), String> {
        match self {
            Peer::Cosmian(p) => p.call(op).await,
            Peer::Moto(p) => p.call(op).await,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Peer::Cosmian(p) => p.process.child.id(),
            Peer::Moto(p) => p.process.child.id(),
        }
    }

    /// Stops the server.
    pub(crate) async fn shutdown(self) {
        let mut process = match self {
            Peer::Cosmian(p) => p.process,
            Peer::Moto(p) => p.process,
        };
        skm::dev::stop(&mut process.child, Duration::from_secs(10)).await;
    }
}

/// A peer's server process, its data folder and its log.
pub(crate) struct PeerProcess {
    child: Child,
    dir: TempDir,
}

impl PeerProcess {
    /// Starts `bin args`, with `dir` as its data folder and output in
    /// `dir/server.log`. `args` may use `{dir}`.
    fn spawn(bin: &Path, args: &[&str]) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!("{} is not installed (bench/install-peers)", bin.display());
        }
        let dir = tempfile::Builder::new().prefix("skm-bench-peer-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir.path().display().to_string())).collect();
        let child = Command::new(bin)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self { child, dir })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Polls `ready` until it is true, the process exits, or `timeout`.
    async fn wait<F, Fut>(&mut self, what: &str, timeout: Duration, mut ready: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{what} exited ({status}):\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!("{what} not ready after {timeout:?}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
