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

/// Most members `skm pki etcd` issues for (etcd advises at most 7).
pub const MAX_ETCD_MEMBERS: usize = 7;

/// `skm pki etcd`: a CA of etcd's own and its certificates, each identity
/// in its own directory so that a deployment hands every host only its
/// own (the layout of `docker-compose.ha.yml`'s volumes):
///
/// ```text
/// OUT/etcd-ca/{ca.pem,ca.key}               the etcd CA (keep ca.key offline)
/// OUT/etcd-N/{ca.pem,cert.pem,key.pem}      member N, for host etcd-N (and `hosts_of(N)`)
/// OUT/<client>/etcd/{ca.pem,cert.pem,key.pem}  a daemon's client certificate for etcd
/// ```
pub fn etcd(out: &Path, members: usize, clients: &[String]) -> anyhow::Result<()> {
    if !(1..=MAX_ETCD_MEMBERS).contains(&members) {
        anyhow::bail!("--members is {members}; must be 1..={MAX_ETCD_MEMBERS} (3 or 5 survive the loss of 1 or 2)");
    }
    for client in clients {
        let ok = !client.is_empty() && client.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            anyhow::bail!("--client {client:?} must be lowercase letters, digits and '-'");
        }
    }
    let ca = crate::etcd::new_ca()?;
    let write_identity = |dir: &Path, issued: skm_pki::IssuedPem| -> anyhow::Result<()> {
        write(&dir.join("ca.pem"), ca.cert_pem(), false)?;
        write(&dir.join("cert.pem"), &issued.cert_pem, false)?;
        write(&dir.join("key.pem"), &issued.key_pem, true)
    };
    write(&out.join("etcd-ca").join("ca.pem"), ca.cert_pem(), false)?;
    write(&out.join("etcd-ca").join("ca.key"), &ca.key_pem(), true)?;
    for n in 1..=members {
        let host = format!("etcd-{n}");
        write_identity(&out.join(&host), crate::etcd::member_cert(&ca, n, std::slice::from_ref(&host))?)?;
    }
    for client in clients {
        write_identity(&out.join(client).join("etcd"), crate::etcd::client_cert(&ca, client)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_pki_gives_each_identity_its_own_directory_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let clients = ["kms-api".to_owned(), "system-keyd".to_owned()];
        etcd(dir.path(), 3, &clients).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("etcd-ca/ca.pem")).unwrap();
        for id in ["etcd-1", "etcd-2", "etcd-3", "kms-api/etcd", "system-keyd/etcd"] {
            let d = dir.path().join(id);
            assert_eq!(std::fs::read_to_string(d.join("ca.pem")).unwrap(), ca, "{id}");
            let files =
                skm_runtime::tls::TlsFiles { ca: d.join("ca.pem"), cert: d.join("cert.pem"), key: d.join("key.pem") };
            skm_runtime::tls::TlsIdentity::load(&files, None).unwrap_or_else(|e| panic!("{id}: {e}"));
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("key.pem")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{id}/key.pem");
            assert!(!d.join("ca.key").exists(), "{id} holds the CA key");
        }
        assert!(!dir.path().join("etcd-4").exists());
        // A member's certificate names its host, as its peers and clients dial it.
        let pem = std::fs::read(dir.path().join("etcd-2/cert.pem")).unwrap();
        let der = skm_runtime::tls::certs_from_pem(&pem).unwrap();
        assert!(der[0].windows(b"etcd-2".len()).any(|w| w == b"etcd-2"), "no etcd-2 SAN");

        let again = etcd(dir.path(), 3, &clients).unwrap_err().to_string();
        assert!(again.contains("already there"), "{again}");
        let other = tempfile::tempdir().unwrap();
        for (members, bad) in [(0, vec![]), (8, vec![]), (3, vec!["Kms Api".to_owned()])] {
            assert!(etcd(other.path(), members, &bad).is_err(), "{members} {bad:?}");
        }
        assert!(!other.path().join("etcd-ca").exists(), "nothing written on a refused call");
    }
}
