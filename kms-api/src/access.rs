//! A keystore's access policy: who may use its keys.
//!
//! For now the one method is the client's IPv4 address (the TCP peer),
//! checked against an allow-list of addresses and CIDRs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Most entries an allow-list may have.
pub const MAX_ALLOW_IPS: usize = 256;

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
        let mask = Self::mask(self.prefix);
        u32::from(addr) & mask == u32::from(self.network)
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

/// The policy of one keystore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Allowed client networks; never empty.
    pub allow_ips: Vec<Ipv4Cidr>,
}

/// Which method refused a request. Shown to the client as is, and nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The client address is not allowed.
    #[error("IPv4 authentication failed")]
    Ipv4,
}

impl Policy {
    /// Parses and checks an allow-list as given by an operator.
    pub fn from_allow_ips(entries: &[String]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("allow_ips needs at least one IPv4 address or CIDR".to_owned());
        }
        if entries.len() > MAX_ALLOW_IPS {
            return Err(format!("allow_ips has {} entries; the limit is {MAX_ALLOW_IPS}", entries.len()));
        }
        let allow_ips = entries
            .iter()
            .map(|e| e.trim().parse::<Ipv4Cidr>().map_err(|e| format!("allow_ips: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { allow_ips })
    }

    /// Checks a client by its address.
    pub fn check(&self, client: IpAddr) -> Result<(), Denied> {
        let v4 = match client.to_canonical() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => return Err(Denied::Ipv4),
        };
        if self.allow_ips.iter().any(|c| c.contains(v4)) { Ok(()) } else { Err(Denied::Ipv4) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs_and_matches() {
        let p = Policy::from_allow_ips(&["10.0.0.0/24".into(), "192.168.1.7".into()]).unwrap();
        assert!(p.check("10.0.0.200".parse().unwrap()).is_ok());
        assert!(p.check("192.168.1.7".parse().unwrap()).is_ok());
        assert_eq!(p.check("192.168.1.8".parse().unwrap()), Err(Denied::Ipv4));
        assert_eq!(p.check("10.0.1.1".parse().unwrap()), Err(Denied::Ipv4));
        assert!(p.check("::ffff:10.0.0.1".parse().unwrap()).is_ok(), "v4-mapped v6 is v4");
        assert_eq!(p.check("::1".parse().unwrap()), Err(Denied::Ipv4));
        let all = Policy::from_allow_ips(&["0.0.0.0/0".into()]).unwrap();
        assert!(all.check("8.8.8.8".parse().unwrap()).is_ok());
        assert_eq!(all.allow_ips[0].to_string(), "0.0.0.0/0");
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(Policy::from_allow_ips(&[]).is_err());
        for bad in ["10.0.0.5/24", "10.0.0.0/33", "300.1.1.1", "::1", "10.0.0/8", ""] {
            assert!(Policy::from_allow_ips(&[bad.into()]).is_err(), "{bad}");
        }
        let too_many: Vec<String> = (0..=MAX_ALLOW_IPS).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect();
        let err = Policy::from_allow_ips(&too_many).unwrap_err();
        assert!(err.contains("the limit is 256"), "{err}");
    }
}
