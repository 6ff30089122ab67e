//! SPIFFE identities of SKM's services and operators.
//!
//! Every certificate issued by the deployment CA carries exactly one URI SAN
//! `spiffe://<trust-domain>/<path>`. The paths SKM gives meaning to:
//!
//! | path | principal |
//! |---|---|
//! | `root-keyd`, `system-keyd`, `kms-api` | that service |
//! | `operator/admin/<name>` | an operator with every right |
//! | `operator/auditor/<name>` | a read-only operator |

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One of SKM's three services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// root-keyd.
    RootKeyd,
    /// system-keyd.
    SystemKeyd,
    /// kms-api.
    KmsApi,
}

impl Service {
    /// The SPIFFE path (and the conventional host name) of the service.
    pub fn name(self) -> &'static str {
        match self {
            Service::RootKeyd => "root-keyd",
            Service::SystemKeyd => "system-keyd",
            Service::KmsApi => "kms-api",
        }
    }

    /// All three services.
    pub const ALL: [Service; 3] = [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi];
}

/// An operator's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Read-only: list, describe, audit.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's path segment.
    pub fn name(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// Who a verified peer is, in SKM's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A service of the same trust domain.
    Service(Service),
    /// An operator of the same trust domain.
    Operator {
        /// Operator name.
        name: String,
        /// Role.
        role: Role,
    },
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Service(s) => f.write_str(s.name()),
            Principal::Operator { name, role } => write!(f, "operator/{}/{name}", role.name()),
        }
    }
}

/// A parsed `spiffe://` URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

/// A string that is not a SPIFFE id SKM accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a SPIFFE id (spiffe://<trust-domain>/<path>): {0}")]
pub struct BadSpiffeId(pub String);

impl SpiffeId {
    /// Builds an id from a trust domain and a path (without leading slash).
    pub fn new(trust_domain: &str, path: &str) -> Result<Self, BadSpiffeId> {
        Self::parse(&format!("spiffe://{trust_domain}/{path}"))
    }

    /// The id of `service` in `trust_domain`.
    pub fn for_service(trust_domain: &str, service: Service) -> Result<Self, BadSpiffeId> {
        Self::new(trust_domain, service.name())
    }

    /// The id of an operator.
    pub fn for_operator(trust_domain: &str, role: Role, name: &str) -> Result<Self, BadSpiffeId> {
        Self::new(trust_domain, &format!("operator/{}/{name}", role.name()))
    }

    /// Parses `spiffe://td/path` (lowercase trust domain of `[a-z0-9.-_]`,
    /// path segments of `[A-Za-z0-9.-_]`).
    pub fn parse(uri: &str) -> Result<Self, BadSpiffeId> {
        let bad = || BadSpiffeId(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let (td, path) = rest.split_once('/').ok_or_else(bad)?;
        let td_ok = !td.is_empty()
            && td.len() <= 255
            && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        let path_ok = !path.is_empty()
            && path.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            });
        if !td_ok || !path_ok {
            return Err(bad());
        }
        Ok(Self { trust_domain: td.to_owned(), path: path.to_owned() })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, without leading slash.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What this id means inside `trust_domain`; `None` for ids of another
    /// trust domain or paths SKM does not know.
    pub fn principal(&self, trust_domain: &str) -> Option<Principal> {
        if self.trust_domain != trust_domain {
            return None;
        }
        if let Some(service) = Service::ALL.iter().find(|s| s.name() == self.path) {
            return Some(Principal::Service(*service));
        }
        let mut parts = self.path.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("operator"), Some(role), Some(name)) if !name.contains('/') => {
                let role = match role {
                    "admin" => Role::Admin,
                    "auditor" => Role::Auditor,
                    _ => return None,
                };
                Some(Principal::Operator { name: name.to_owned(), role })
            }
            _ => None,
        }
    }

    /// The single SPIFFE URI SAN of a DER certificate. A certificate with
    /// none, or with several, has no SPIFFE id (SPIFFE X.509-SVID rule).
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut uris = san.value.general_names.iter().filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
        let first = uris.next()?;
        if uris.next().is_some() {
            return None;
        }
        Self::parse(first).ok()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/{}", self.trust_domain, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_principals() {
        let id = SpiffeId::parse("spiffe://skm.local/kms-api").unwrap();
        assert_eq!(id.principal("skm.local"), Some(Principal::Service(Service::KmsApi)));
        assert_eq!(id.principal("other.local"), None);
        let op = SpiffeId::for_operator("skm.local", Role::Auditor, "ann").unwrap();
        assert_eq!(op.to_string(), "spiffe://skm.local/operator/auditor/ann");
        assert_eq!(op.principal("skm.local"), Some(Principal::Operator { name: "ann".into(), role: Role::Auditor }));
        let odd = SpiffeId::parse("spiffe://skm.local/operator/root/ann").unwrap();
        assert_eq!(odd.principal("skm.local"), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "https://skm.local/kms-api",
            "spiffe://skm.local",
            "spiffe://skm.local/",
            "spiffe://SKM/kms-api",
            "spiffe://skm.local/a//b",
            "spiffe://skm.local/../x",
            "spiffe://skm.local/a b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }
}
