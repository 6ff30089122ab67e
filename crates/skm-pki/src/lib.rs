//! Issuing the deployment PKI: a CA, one certificate per service and
//! operator certificates, each with its SPIFFE URI SAN (`skm pki init`,
//! `skm dev`, tests). ECDSA P-256 keys; PEM files.
//!
//! [`client`]: each keystore's own client CA, the client certificates it
//! issues (as PKCS#12) and the checks of a chain presented on the user port.
//!
//! Its own crate (it was part of skm-runtime): issuing certificates is what
//! the CLI, kms-api's keystores and the tests do, not daemon plumbing.

#![forbid(unsafe_code)]

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use skm_runtime::identity::{Role, Service, SpiffeId};

pub mod client;

/// Certificate generation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// A name does not make a valid SPIFFE id.
    #[error(transparent)]
    Identity(#[from] skm_runtime::identity::BadSpiffeId),
    /// A keystore name (of its client CA) or a client certificate name is
    /// empty, longer than 64 characters or holds control characters.
    #[error("a keystore or client certificate name must be 1 to 64 characters without control characters")]
    CommonName,
    /// The validity period is empty or outside what X.509 can express.
    #[error("certificate validity period out of range")]
    Validity,
    /// A PKCS#12 password outside the accepted length.
    #[error("the PKCS#12 password must be {} to {} bytes long", client::MIN_PASSWORD_LEN, client::MAX_PASSWORD_LEN)]
    PasswordLength,
    /// A PKCS#12 file could not be read (wrong password, or no key in it).
    #[error("cannot read the PKCS#12 file: wrong password or no private key in it")]
    Pkcs12Read,
    /// A PKCS#12 password with a control character or a character outside
    /// Unicode's Basic Multilingual Plane (PKCS#12 MACs take the password
    /// as a BMPString).
    #[error("the PKCS#12 password may not contain control characters or characters such as emoji")]
    PasswordCharacters,
    /// Encoding the PKCS#12 file failed.
    #[error("PKCS#12 encoding failed")]
    Pkcs12(#[source] p12_keystore::error::Error),
    /// A CA certificate could not be parsed.
    #[error("the CA certificate could not be parsed")]
    BadCaCertificate,
    /// A certificate loaded as a CA is not one.
    #[error("the certificate is not a CA certificate")]
    NotACa,
    /// A CA key does not belong to the CA certificate it was loaded with.
    #[error("the key does not match the CA certificate")]
    KeyMismatch,
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

/// A certificate and its private key, both PEM.
pub struct IssuedPem {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key. Write it with mode 0600.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedPem").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

/// A CA able to issue certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

impl CertificateAuthority {
    /// A fresh self-signed CA for `trust_domain`, valid `days`.
    pub fn generate(trust_domain: &str, common_name: &str, days: u32) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "SKM");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        validity(&mut params, days);
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key), trust_domain: trust_domain.to_owned() })
    }

    /// Loads an existing CA from its PEM certificate and key.
    pub fn load(trust_domain: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self { issuer, cert_pem: cert_pem.to_owned(), trust_domain: trust_domain.to_owned() })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM. Keep it offline in production.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A service certificate: SPIFFE id of the service, DNS SANs for its
    /// host names (plus `localhost`) and loopback, server and client auth.
    pub fn issue_service(&self, service: Service, extra_hosts: &[String], days: u32) -> Result<IssuedPem, PkiError> {
        let id = SpiffeId::for_service(&self.trust_domain, service)?;
        let mut hosts = vec![service.name().to_owned(), "localhost".to_owned()];
        hosts.extend(extra_hosts.iter().cloned());
        let ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
        self.issue(service.name(), &id, &hosts, &ips, days)
    }

    /// An operator certificate (client auth only).
    pub fn issue_operator(&self, name: &str, role: Role, days: u32) -> Result<IssuedPem, PkiError> {
        let id = SpiffeId::for_operator(&self.trust_domain, role, name)?;
        self.issue(&format!("operator {name}"), &id, &[], &[], days)
    }

    /// A certificate with an arbitrary SPIFFE id (tests of refusals).
    pub fn issue_for_id(&self, id: &SpiffeId, days: u32) -> Result<IssuedPem, PkiError> {
        self.issue_for_hosts(id, &[], days)
    }

    /// A server and client certificate with SPIFFE id `id` for the DNS
    /// names `hosts` (plus `localhost`) and loopback: an etcd member's.
    pub fn issue_for_hosts(&self, id: &SpiffeId, hosts: &[String], days: u32) -> Result<IssuedPem, PkiError> {
        let mut names = hosts.to_vec();
        names.push("localhost".to_owned());
        self.issue(id.path(), id, &names, &[IpAddr::from([127, 0, 0, 1])], days)
    }

    fn issue(
        &self,
        cn: &str,
        id: &SpiffeId,
        hosts: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<IssuedPem, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names.push(SanType::URI(id.to_string().try_into()?));
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if hosts.is_empty() {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cert_carries_its_spiffe_id() {
        let ca = CertificateAuthority::generate("skm.test", "test CA", 1).unwrap();
        let issued = ca.issue_service(Service::SystemKeyd, &[], 1).unwrap();
        let der = skm_runtime::tls::certs_from_pem(issued.cert_pem.as_bytes()).unwrap();
        let id = SpiffeId::from_certificate(&der[0]).unwrap();
        assert_eq!(id.to_string(), "spiffe://skm.test/system-keyd");
        let reloaded = CertificateAuthority::load("skm.test", ca.cert_pem(), &ca.key_pem()).unwrap();
        let op = reloaded.issue_operator("ann", Role::Admin, 1).unwrap();
        let der = skm_runtime::tls::certs_from_pem(op.cert_pem.as_bytes()).unwrap();
        assert_eq!(SpiffeId::from_certificate(&der[0]).unwrap().to_string(), "spiffe://skm.test/operator/admin/ann");
    }
}
