//! `skm pki init`: the deployment CA, one certificate per service and a
//! first operator, each tier's files in its own directory so that a
//! deployment can hand every host only its own.

use std::path::{Path, PathBuf};

use anyhow::Context;
use skm_pki::CertificateAuthority;
use skm_runtime::{Role, Service};

/// Validity of service and operator certificates made here.
const LEAF_DAYS: u32 = 397;
/// Validity of the CA.
const CA_DAYS: u32 = 3650;

/// The files of one identity.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    /// CA bundle.
    pub ca: PathBuf,
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Where `pki init` put things.
#[derive(Clone, Debug)]
pub struct PkiLayout {
    dir: PathBuf,
}

impl PkiLayout {
    /// A layout rooted at `dir`.
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    fn files(&self, name: &str) -> IdentityFiles {
        let d = self.dir.join(name);
        IdentityFiles { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") }
    }

    /// A service's files.
    pub fn service(&self, service: Service) -> IdentityFiles {
        self.files(service.name())
    }

    /// The first operator's files.
    pub fn operator(&self) -> IdentityFiles {
        self.files("operator")
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("ca").join("ca.pem"), self.dir.join("ca").join("ca.key"))
    }
}

fn write(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot create {} (already there?)", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Creates the CA, the three service certificates (with `extra_hosts` as
/// additional DNS names) and an admin operator certificate named `operator`.
pub fn init(dir: &Path, trust_domain: &str, extra_hosts: &[String], operator: &str) -> anyhow::Result<PkiLayout> {
    let ca = CertificateAuthority::generate(trust_domain, &format!("SKM deployment CA ({trust_domain})"), CA_DAYS)?;
    let layout = PkiLayout::at(dir);
    let (ca_cert, ca_key) = layout.ca();
    write(&ca_cert, ca.cert_pem(), false)?;
    write(&ca_key, &ca.key_pem(), true)?;
    for service in Service::ALL {
        let issued = ca.issue_service(service, extra_hosts, LEAF_DAYS)?;
        let files = layout.service(service);
        write(&files.ca, ca.cert_pem(), false)?;
        write(&files.cert, &issued.cert_pem, false)?;
        write(&files.key, &issued.key_pem, true)?;
    }
    let issued = ca.issue_operator(operator, Role::Admin, LEAF_DAYS)?;
    let files = layout.operator();
    write(&files.ca, ca.cert_pem(), false)?;
    write(&files.cert, &issued.cert_pem, false)?;
    write(&files.key, &issued.key_pem, true)?;
    Ok(layout)
}

/// Issues an operator certificate from an existing PKI's CA into `out`
/// (ca.pem, cert.pem, key.pem); returns the certificate's SHA-256.
pub fn add_operator(
    pki: &Path,
    trust_domain: &str,
    name: &str,
    role: crate::args::RoleArg,
    days: u32,
    out: &Path,
) -> anyhow::Result<String> {
    let layout = PkiLayout::at(pki);
    let (ca_cert, ca_key) = layout.ca();
    let cert_pem = std::fs::read_to_string(&ca_cert).with_context(|| format!("cannot read {}", ca_cert.display()))?;
    let key_pem = std::fs::read_to_string(&ca_key).with_context(|| format!("cannot read {}", ca_key.display()))?;
    let ca = CertificateAuthority::load(trust_domain, &cert_pem, &key_pem)?;
    let role = match role {
        crate::args::RoleArg::Admin => Role::Admin,
        crate::args::RoleArg::Auditor => Role::Auditor,
    };
    let issued = ca.issue_operator(name, role, days)?;
    write(&out.join("ca.pem"), ca.cert_pem(), false)?;
    write(&out.join("cert.pem"), &issued.cert_pem, false)?;
    write(&out.join("key.pem"), &issued.key_pem, true)?;
    let der = skm_runtime::tls::certs_from_pem(issued.cert_pem.as_bytes())?;
    let leaf = der.first().context("no certificate issued")?;
    Ok(hex::encode(skm_crypto::sha256(leaf)))
}
