//! `skm pki init`: the deployment CA, one certificate per service and a
//! first operator, each tier's files in its own directory so that a
//! deployment can hand every host only its own.

use std::path::{Path, PathBuf};

use anyhow::Context;
use skm_runtime::pki::CertificateAuthority;
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
