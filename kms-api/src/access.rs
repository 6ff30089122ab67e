//! A keystore's access policy: who may use its keys.
//!
//! Methods (DESIGN §5), any of which a keystore enables:
//!
//! - **IPv4**: the client address — the TCP peer, or the source in a PROXY
//!   protocol v2 header from a configured load balancer — against
//!   addresses and CIDRs;
//! - **MAC**: the client's MAC against an allow-list. The MAC the server
//!   reads from its own neighbour table (a *verified* MAC) decides whenever
//!   there is one; only when there is none (client not on-link) may a MAC
//!   the client asserts in `x-skm-client-mac` count, and only if the
//!   keystore allows asserted MACs;
//! - **client certificate**: issued by the keystore's own client CA (and
//!   listed as issued), or registered by SHA-256 fingerprint; in both cases
//!   not revoked and within its validity.
//!
//! Mode `all` (default): every enabled method must pass; `any`: one is
//! enough. A denial names the methods that failed and nothing else.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use rustls_pki_types::{CertificateDer, UnixTime};
use skm_pki::client::{self, ClientCertError, ClientCertInfo};
use skm_runtime::neighbours::MacAddr;

/// Most entries an allow-list (IPs or MACs) may have.
pub const MAX_ALLOW: usize = 256;

/// An IPv4 network `a.b.c.d/n` (a bare address is `/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Not an IPv4 address or CIDR.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IPv4 address or CIDR (e.g. 10.0.0.5 or 10.0.0.0/24)")]
pub struct BadCidr(pub String);

impl Ipv4Cidr {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
    }

    /// Whether `addr` is inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask(self.prefix) == u32::from(self.network)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        if prefix > 32 {
            return Err(bad());
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix));
        if network != addr {
            // 10.0.0.5/24 is almost always a typo for 10.0.0.0/24 or 10.0.0.5/32.
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == 32 { write!(f, "{}", self.network) } else { write!(f, "{}/{}", self.network, self.prefix) }
    }
}

/// How enabled methods combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every enabled method must pass.
    #[default]
    All,
    /// One passing method is enough.
    Any,
}

impl Mode {
    /// "all" or "any".
    pub fn name(self) -> &'static str {
        match self {
            Mode::All => "all",
            Mode::Any => "any",
        }
    }
}

/// The policy of one keystore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How methods combine.
    pub mode: Mode,
    /// Allowed client networks; empty = IPv4 method off.
    pub allow_ips: Vec<Ipv4Cidr>,
    /// Allowed MACs; empty = MAC method off.
    pub allow_macs: Vec<MacAddr>,
    /// Whether a client-asserted MAC may count when none can be verified.
    pub allow_asserted_mac: bool,
    /// Whether the certificate method is on.
    pub require_cert: bool,
}

/// A policy as an operator writes it.
#[derive(Clone, Debug, Default)]
pub struct PolicyInput {
    /// IPv4 addresses or CIDRs.
    pub allow_ips: Vec<String>,
    /// MAC addresses.
    pub allow_macs: Vec<String>,
    /// Accept asserted MACs.
    pub allow_asserted_mac: bool,
    /// Certificate method on.
    pub require_cert: bool,
    /// Mode.
    pub mode: Mode,
}

impl Policy {
    /// Parses and checks a policy; the message names the field and the limit.
    pub fn parse(input: &PolicyInput) -> Result<Self, String> {
        for (field, list) in [("allow_ips", &input.allow_ips), ("allow_macs", &input.allow_macs)] {
            if list.len() > MAX_ALLOW {
                return Err(format!("{field} has {} entries; the limit is {MAX_ALLOW}", list.len()));
            }
        }
        let allow_ips = input
            .allow_ips
            .iter()
            .map(|e| e.trim().parse::<Ipv4Cidr>().map_err(|e| format!("allow_ips: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let allow_macs = input
            .allow_macs
            .iter()
            .map(|e| {
                e.trim()
                    .parse::<MacAddr>()
                    .map_err(|_| format!("allow_macs: {e:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allow_ips.is_empty() && allow_macs.is_empty() && !input.require_cert {
            return Err(
                "the policy enables no method: give allow_ips, allow_macs or require_cert (at least one)".to_owned()
            );
        }
        if input.allow_asserted_mac && allow_macs.is_empty() {
            return Err("allow_asserted_mac needs allow_macs".to_owned());
        }
        Ok(Self {
            mode: input.mode,
            allow_ips,
            allow_macs,
            allow_asserted_mac: input.allow_asserted_mac,
            require_cert: input.require_cert,
        })
    }

    /// The policy back in operator form.
    pub fn to_input(&self) -> PolicyInput {
        PolicyInput {
            allow_ips: self.allow_ips.iter().map(ToString::to_string).collect(),
            allow_macs: self.allow_macs.iter().map(ToString::to_string).collect(),
            allow_asserted_mac: self.allow_asserted_mac,
            require_cert: self.require_cert,
            mode: self.mode,
        }
    }
}

/// An access method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Client IPv4 address.
    Ipv4,
    /// Client MAC address.
    Mac,
    /// Client certificate.
    Certificate,
}

impl Method {
    fn denial(self) -> &'static str {
        match self {
            Method::Ipv4 => "IPv4 authentication failed",
            Method::Mac => "MAC authentication failed",
            Method::Certificate => "certificate authentication failed",
        }
    }
}

/// Which methods refused a request. Shown to the client as is, and nothing
/// more: "MAC authentication failed", or several joined with "; ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub Vec<Method>);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<&str> = self.0.iter().map(|m| m.denial()).collect();
        f.write_str(&text.join("; "))
    }
}

impl std::error::Error for Denied {}

pub use crate::audit::MacSource;

/// What the server knows about a caller, per request.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Client address (None only in unit tests of other methods).
    pub ip: Option<IpAddr>,
    /// MAC from the neighbour table.
    pub verified_mac: Option<MacAddr>,
    /// MAC from `x-skm-client-mac`.
    pub asserted_mac: Option<MacAddr>,
    /// Presented certificate chain, leaf first.
    pub chain: Option<std::sync::Arc<Vec<CertificateDer<'static>>>>,
}

impl Facts {
    /// What a connection tells of an application, with the MAC it asserts
    /// in a request header (if any).
    pub fn of_peer(peer: &skm_runtime::PeerInfo, asserted_mac: Option<MacAddr>) -> Self {
        Self {
            ip: Some(peer.remote_addr.ip().to_canonical()),
            verified_mac: peer.mac,
            asserted_mac,
            chain: peer.client_certificates.clone(),
        }
    }

    /// Parses a MAC a client asserts in the request header `header`;
    /// the error names the header and the expected form.
    pub fn asserted_mac(header: &str, value: &[u8]) -> Result<MacAddr, String> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{header}: not a MAC address (aa:bb:cc:dd:ee:ff)"))
    }

    /// SHA-256 of the presented leaf certificate, lowercase hex.
    pub fn cert_sha256(&self) -> Option<String> {
        self.chain.as_ref().and_then(|c| c.first()).map(|leaf| hex::encode(skm_crypto::sha256(leaf)))
    }
}

/// A client certificate known to a keystore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownCert {
    /// Name.
    pub name: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    /// Issued by the keystore CA (else registered).
    pub issued: bool,
    /// Expiry (0 = unknown, registered ones).
    pub not_after: i64,
    /// Revoked.
    pub revoked: bool,
}

/// The certificate side of a keystore: its CA and known certificates.
#[derive(Clone, Debug)]
pub struct CertState<'a> {
    /// The keystore's client CA certificate.
    pub ca: &'a CertificateDer<'static>,
    /// Issued and registered certificates.
    pub known: &'a [KnownCert],
    /// Chains already verified against a CA (None: verify every time).
    pub verified: Option<&'a VerifiedChains>,
}

/// Most chains [`VerifiedChains`] remembers; when full it starts afresh.
pub const MAX_VERIFIED_CHAINS: usize = 4096;

/// Client certificates that passed the chain check against a keystore CA,
/// so that a client's calls verify its chain once rather than on every
/// call (a signature check and two X.509 parses, the largest part of a
/// certificate keystore's policy check).
///
/// Keyed by the leaf's and the CA's SHA-256, which are everything the
/// check reads: a changed CA or another leaf misses. What can change
/// without changing them is checked on every call all the same: that the
/// keystore still lists the certificate as issued and not revoked (before
/// this cache is asked) and that the time is within the window in which
/// the check passed (from when it passed to the leaf's `not_after`).
#[derive(Debug, Default)]
pub struct VerifiedChains {
    chains: std::sync::Mutex<std::collections::HashMap<ChainKey, (i64, ClientCertInfo)>>,
}

/// SHA-256 of the leaf's DER and of the CA certificate's.
type ChainKey = ([u8; 32], [u8; 32]);

impl VerifiedChains {
    fn get(&self, key: &ChainKey, now: i64) -> Option<ClientCertInfo> {
        let chains = self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        chains
            .get(key)
            .filter(|(passed_at, info)| *passed_at <= now && now <= info.not_after)
            .map(|(_, info)| info.clone())
    }

    fn put(&self, key: ChainKey, now: i64, info: &ClientCertInfo) {
        let mut chains = self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if chains.len() >= MAX_VERIFIED_CHAINS {
            chains.clear();
        }
        chains.insert(key, (now, info.clone()));
    }

    /// Chains remembered.
    pub fn len(&self) -> usize {
        self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What passed, for the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passed {
    /// The MAC used and how it was obtained.
    pub mac: Option<(MacAddr, MacSource)>,
    /// The accepted certificate.
    pub cert: Option<ClientCertInfo>,
}

impl Policy {
    /// Checks a caller. `now` is seconds since the epoch.
    pub fn check(&self, facts: &Facts, certs: &CertState<'_>, now: i64) -> Result<Passed, Denied> {
        let mut passed = Passed::default();
        let mut failed = Vec::new();
        let mut enabled = 0;
        if !self.allow_ips.is_empty() {
            enabled += 1;
            let ok = match facts.ip.map(|ip| ip.to_canonical()) {
                Some(IpAddr::V4(v4)) => self.allow_ips.iter().any(|c| c.contains(v4)),
                _ => false,
            };
            if !ok {
                failed.push(Method::Ipv4);
            }
        }
        if !self.allow_macs.is_empty() {
            enabled += 1;
            match self.check_mac(facts) {
                Some(mac) => passed.mac = Some(mac),
                None => failed.push(Method::Mac),
            }
        }
        if self.require_cert {
            enabled += 1;
            match check_cert(facts, certs, now) {
                Ok(info) => passed.cert = Some(info),
                Err(reason) => {
                    tracing::debug!(reason = %reason, "client certificate refused");
                    failed.push(Method::Certificate);
                }
            }
        }
        let ok = match self.mode {
            Mode::All => failed.is_empty(),
            Mode::Any => failed.len() < enabled,
        };
        if ok { Ok(passed) } else { Err(Denied(failed)) }
    }

    fn check_mac(&self, facts: &Facts) -> Option<(MacAddr, MacSource)> {
        match (facts.verified_mac, facts.asserted_mac) {
            // A MAC the server can see decides; an assertion can't override it.
            (Some(verified), _) => self.allow_macs.contains(&verified).then_some((verified, MacSource::Verified)),
            (None, Some(asserted)) if self.allow_asserted_mac => {
                self.allow_macs.contains(&asserted).then_some((asserted, MacSource::Asserted))
            }
            _ => None,
        }
    }
}

fn check_cert(facts: &Facts, certs: &CertState<'_>, now: i64) -> Result<ClientCertInfo, ClientCertError> {
    let chain = facts.chain.as_ref().filter(|c| !c.is_empty()).ok_or(ClientCertError::Malformed)?;
    let leaf_digest = skm_crypto::sha256(&chain[0]);
    let leaf_sha = hex::encode(leaf_digest);
    let known = certs.known.iter().find(|k| k.sha256 == leaf_sha);
    if known.is_some_and(|k| k.revoked) {
        return Err(ClientCertError::Revoked);
    }
    match known {
        Some(k) if k.issued => {
            // Hashing the CA is only worth it where there is a memory to ask.
            let remembered = certs.verified.map(|v| (v, (leaf_digest, skm_crypto::sha256(certs.ca))));
            if let Some(info) = remembered.as_ref().and_then(|(v, key)| v.get(key, now)) {
                return Ok(info);
            }
            let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
            let info = client::check_client_chain(chain, certs.ca, at)?;
            if let Some((verified, key)) = remembered {
                verified.put(key, now, &info);
            }
            Ok(info)
        }
        Some(_) => client::check_registered(&chain[0], |fp| fp == leaf_sha, now),
        None => Err(ClientCertError::Unregistered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ips: &[&str], macs: &[&str], asserted: bool, cert: bool, mode: Mode) -> Policy {
        Policy::parse(&PolicyInput {
            allow_ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            allow_macs: macs.iter().map(|s| (*s).to_owned()).collect(),
            allow_asserted_mac: asserted,
            require_cert: cert,
            mode,
        })
        .unwrap()
    }

    fn no_certs() -> (CertificateDer<'static>, Vec<KnownCert>) {
        (CertificateDer::from(vec![0u8]), Vec::new())
    }

    #[test]
    fn ipv4_cidrs() {
        let p = policy(&["10.0.0.0/24", "192.168.1.7"], &[], false, false, Mode::All);
        let (ca, known) = no_certs();
        let certs = CertState { ca: &ca, known: &known, verified: None };
        let at = |ip: &str| Facts { ip: Some(ip.parse().unwrap()), ..Facts::default() };
        assert!(p.check(&at("10.0.0.200"), &certs, 0).is_ok());
        assert!(p.check(&at("192.168.1.7"), &certs, 0).is_ok());
        assert!(p.check(&at("::ffff:10.0.0.1"), &certs, 0).is_ok(), "v4-mapped v6 is v4");
        let denied = p.check(&at("10.0.1.1"), &certs, 0).unwrap_err();
        assert_eq!(denied.to_string(), "IPv4 authentication failed");
        assert!(p.check(&at("::1"), &certs, 0).is_err());
    }

    #[test]
    fn verified_mac_decides_and_asserted_only_when_allowed() {
        let (ca, known) = no_certs();
        let certs = CertState { ca: &ca, known: &known, verified: None };
        let good: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let bad: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let strict = policy(&[], &["02:00:00:00:00:01"], false, false, Mode::All);
        let lax = policy(&[], &["02:00:00:00:00:01"], true, false, Mode::All);
        let facts =
            |v: Option<MacAddr>, a: Option<MacAddr>| Facts { verified_mac: v, asserted_mac: a, ..Facts::default() };
        assert_eq!(strict.check(&facts(Some(good), None), &certs, 0).unwrap().mac, Some((good, MacSource::Verified)));
        assert!(strict.check(&facts(None, Some(good)), &certs, 0).is_err(), "assertion not allowed");
        assert_eq!(lax.check(&facts(None, Some(good)), &certs, 0).unwrap().mac, Some((good, MacSource::Asserted)));
        assert!(lax.check(&facts(Some(bad), Some(good)), &certs, 0).is_err(), "assertion can't override the table");
        assert_eq!(lax.check(&facts(Some(bad), None), &certs, 0).unwrap_err().to_string(), "MAC authentication failed");
    }

    #[test]
    fn modes_all_and_any() {
        let (ca, known) = no_certs();
        let certs = CertState { ca: &ca, known: &known, verified: None };
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let all = policy(&["10.0.0.0/8"], &["02:00:00:00:00:01"], false, false, Mode::All);
        let any = policy(&["10.0.0.0/8"], &["02:00:00:00:00:01"], false, false, Mode::Any);
        let ip_only = Facts { ip: Some("10.1.1.1".parse().unwrap()), ..Facts::default() };
        let mac_only = Facts { ip: Some("8.8.8.8".parse().unwrap()), verified_mac: Some(mac), ..Facts::default() };
        let neither = Facts { ip: Some("8.8.8.8".parse().unwrap()), ..Facts::default() };
        assert_eq!(all.check(&ip_only, &certs, 0).unwrap_err().to_string(), "MAC authentication failed");
        assert!(any.check(&ip_only, &certs, 0).is_ok());
        assert!(any.check(&mac_only, &certs, 0).is_ok());
        assert_eq!(
            any.check(&neither, &certs, 0).unwrap_err().to_string(),
            "IPv4 authentication failed; MAC authentication failed"
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let p = |i: PolicyInput| Policy::parse(&i).unwrap_err();
        assert!(p(PolicyInput::default()).contains("no method"));
        assert!(p(PolicyInput { allow_ips: vec!["10.0.0.5/24".into()], ..Default::default() }).contains("allow_ips"));
        assert!(p(PolicyInput { allow_macs: vec!["zz".into()], ..Default::default() }).contains("allow_macs"));
        assert!(
            p(PolicyInput { require_cert: true, allow_asserted_mac: true, ..Default::default() })
                .contains("allow_asserted_mac")
        );
        let many: Vec<String> = (0..=MAX_ALLOW).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect();
        assert!(p(PolicyInput { allow_ips: many, ..Default::default() }).contains("the limit is 256"));
    }
    #[test]
    fn a_verified_chain_is_remembered_but_revocation_expiry_and_the_ca_still_count() {
        let ca = skm_pki::client::KeystoreCa::generate("cache", 30).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let issued = ca.issue_client_with_validity("app", now - 60, now + 3600, "password-of-the-test").unwrap();
        let known = |revoked| {
            vec![KnownCert {
                name: "app".into(),
                sha256: issued.fingerprint_sha256.clone(),
                issued: true,
                not_after: issued.not_after,
                revoked,
            }]
        };
        let (listed, revoked) = (known(false), known(true));
        let facts = Facts {
            ip: Some("10.0.0.1".parse().unwrap()),
            chain: Some(std::sync::Arc::new(vec![CertificateDer::from(issued.cert_der.clone())])),
            ..Facts::default()
        };
        let p = policy(&[], &[], false, true, Mode::All);
        let verified = VerifiedChains::default();
        let with = |known: &[KnownCert], ca_der: &CertificateDer<'static>, now| {
            let certs = CertState { ca: ca_der, known, verified: Some(&verified) };
            p.check(&facts, &certs, now).map(|passed| passed.cert.unwrap())
        };

        let first = with(&listed, ca.cert_der(), now).unwrap();
        assert_eq!(first.fingerprint_sha256, issued.fingerprint_sha256);
        assert_eq!(verified.len(), 1, "the passed chain is remembered");

        // The remembered verdict answers: plant one that only the cache
        // could give, and it comes back.
        let key = (skm_crypto::sha256(&issued.cert_der), skm_crypto::sha256(ca.cert_der()));
        let planted = ClientCertInfo { subject_cn: Some("from the cache".into()), ..first.clone() };
        verified.put(key, now, &planted);
        assert_eq!(with(&listed, ca.cert_der(), now + 1).unwrap().subject_cn.as_deref(), Some("from the cache"));

        // What can change without changing the chain or the CA is still
        // checked on every call.
        assert_eq!(
            with(&revoked, ca.cert_der(), now + 1).unwrap_err().to_string(),
            "certificate authentication failed"
        );
        assert!(with(&[], ca.cert_der(), now + 1).is_err(), "no longer listed");
        assert!(with(&listed, ca.cert_der(), issued.not_after + 1).is_err(), "expired");
        assert!(with(&listed, ca.cert_der(), now - 120).is_err(), "before its validity (and the window it passed in)");
        // Another CA misses the cache and refuses the chain.
        let other = skm_pki::client::KeystoreCa::generate("other", 30).unwrap();
        assert!(with(&listed, other.cert_der(), now + 1).is_err());
    }

    #[test]
    fn verified_chains_stay_bounded() {
        let verified = VerifiedChains::default();
        let info = ClientCertInfo {
            fingerprint_sha256: String::new(),
            serial_hex: String::new(),
            not_after: 10,
            subject_cn: None,
        };
        for i in 0..=MAX_VERIFIED_CHAINS as u32 {
            let mut leaf = [0u8; 32];
            leaf[..4].copy_from_slice(&i.to_be_bytes());
            verified.put((leaf, [0; 32]), 0, &info);
        }
        assert!(verified.len() <= MAX_VERIFIED_CHAINS);
        assert!(!verified.is_empty());
    }
}
