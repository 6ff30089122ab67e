//! A peer's MAC address from the kernel's IPv4 neighbour (ARP) table, for
//! keystores that require a verified MAC.
//!
//! What the table can and cannot tell:
//!
//! - `/proc/net/arp` is per network namespace: it is the table of the
//!   namespace this process runs in, seen from the server's own interfaces.
//! - It lists only on-link neighbours the kernel has resolved. For a peer
//!   behind a router no entry carries the peer's address, and the MAC seen on
//!   the wire is the router's: a MAC lookup only means something when the
//!   peer is on-link (which includes not being behind a PROXY-protocol load
//!   balancer).
//! - An entry can be missing or incomplete right after a connection if the
//!   kernel hasn't resolved the peer yet; normally it has, because the TCP
//!   handshake needed the peer's MAC to answer it. Entries also expire.
//!
//! [`mac_of`] answers `None` in all these cases; the caller decides what
//! that means (for a MAC-restricted keystore: the check fails).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The kernel's ARP table of the current network namespace.
const ARP_TABLE: &str = "/proc/net/arp";

/// `ATF_COM` (`<net/if_arp.h>`): the entry is resolved.
const ATF_COM: u32 = 0x2;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// The address with these octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether all octets are zero (what the kernel shows for an
    /// unresolved entry).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

/// A string is not a MAC address in `aa:bb:cc:dd:ee:ff` or
/// `aa-bb-cc-dd-ee-ff` form.
#[derive(Debug, thiserror::Error)]
#[error("not a MAC address (expected aa:bb:cc:dd:ee:ff)")]
pub struct BadMacAddr;

impl FromStr for MacAddr {
    type Err = BadMacAddr;

    /// Six pairs of hex digits (either case) separated by all `:` or all
    /// `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 17 {
            return Err(BadMacAddr);
        }
        let separator = b[2];
        if separator != b':' && separator != b'-' {
            return Err(BadMacAddr);
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && b[at - 1] != separator {
                return Err(BadMacAddr);
            }
            *octet = (hex_digit(b[at]).ok_or(BadMacAddr)? << 4) | hex_digit(b[at + 1]).ok_or(BadMacAddr)?;
        }
        Ok(Self(octets))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The MAC address the kernel has resolved for `ip`, if it has a complete
/// entry. `None` also when the table can't be read, or when entries on
/// several interfaces disagree (the peer can't be pinned to one MAC).
/// Reads a small in-memory procfs file synchronously.
pub fn mac_of(ip: Ipv4Addr) -> Option<MacAddr> {
    mac_in(&std::fs::read_to_string(ARP_TABLE).ok()?, ip)
}

/// The MAC of `ip` in a `/proc/net/arp` text, under [`mac_of`]'s rules.
fn mac_in(table: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let mut macs = parse_arp_table(table).into_iter().filter(|(entry, _, _)| *entry == ip).map(|(_, mac, _)| mac);
    let first = macs.next()?;
    macs.all(|mac| mac == first).then_some(first)
}

/// The complete entries of a `/proc/net/arp` text: address, MAC, device.
/// Skips the header line, incomplete entries (flags without `ATF_COM`),
/// all-zero MACs and lines that don't parse (such as non-Ethernet hardware
/// addresses).
fn parse_arp_table(text: &str) -> Vec<(Ipv4Addr, MacAddr, String)> {
    text.lines().filter_map(parse_arp_line).collect()
}

/// One line: `IP address  HW type  Flags  HW address  Mask  Device`.
fn parse_arp_line(line: &str) -> Option<(Ipv4Addr, MacAddr, String)> {
    let mut fields = line.split_whitespace();
    let ip: Ipv4Addr = fields.next()?.parse().ok()?;
    let _hw_type = fields.next()?;
    let flags = fields.next()?;
    let flags = u32::from_str_radix(flags.strip_prefix("0x").unwrap_or(flags), 16).ok()?;
    let mac: MacAddr = fields.next()?.parse().ok()?;
    let _mask = fields.next()?;
    let device = fields.next()?;
    (flags & ATF_COM != 0 && !mac.is_zero()).then(|| (ip, mac, device.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         AA:bb:cc:00:11:22     *        eth0
192.168.1.50     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.51     0x1         0x0         de:ad:be:ef:00:01     *        eth0
192.168.1.52     0x1         0x6         02:42:ac:11:00:02     *        docker0
10.9.0.3         0x1         0x2         00:00:00:00:00:00     *        eth1
10.20.0.1        0x20        0x2         80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:01 * ib0
";

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_complete_entries_only() {
        let entries = parse_arp_table(SAMPLE);
        assert_eq!(
            entries,
            vec![
                ("192.168.1.1".parse().unwrap(), mac("aa:bb:cc:00:11:22"), "eth0".to_owned()),
                ("192.168.1.52".parse().unwrap(), mac("02:42:ac:11:00:02"), "docker0".to_owned()),
            ]
        );
        assert!(
            parse_arp_table("IP address       HW type     Flags       HW address            Mask     Device\n")
                .is_empty()
        );
        assert!(parse_arp_table("").is_empty());
        assert!(parse_arp_table("192.168.1.1 0x1 0x2\n").is_empty());
    }

    #[test]
    fn lookup_answers_only_a_complete_unambiguous_entry() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(mac_in(SAMPLE, ip("192.168.1.1")), Some(mac("aa:bb:cc:00:11:22")));
        assert_eq!(mac_in(SAMPLE, ip("192.168.1.52")), Some(mac("02:42:ac:11:00:02")));
        // Incomplete (flags 0x0), all-zero MAC, not in the table at all.
        for absent in ["192.168.1.51", "192.168.1.50", "10.9.0.3", "192.168.1.2", "127.0.0.1"] {
            assert_eq!(mac_in(SAMPLE, ip(absent)), None, "{absent}");
        }
        // The same address on two interfaces: one MAC on both is that MAC;
        // two different MACs pin the peer to neither.
        let same = format!("{SAMPLE}192.168.1.1     0x1         0x2         aa:bb:cc:00:11:22     *        eth9\n");
        assert_eq!(mac_in(&same, ip("192.168.1.1")), Some(mac("aa:bb:cc:00:11:22")));
        let split = format!("{SAMPLE}192.168.1.1     0x1         0x2         aa:bb:cc:00:11:23     *        eth9\n");
        assert_eq!(mac_in(&split, ip("192.168.1.1")), None);
        assert_eq!(mac_in("", ip("192.168.1.1")), None);
    }

    #[test]
    fn mac_forms() {
        let m = MacAddr::new([0xaa, 0xbb, 0xcc, 0x0d, 0xe, 0xff]);
        for s in ["aa:bb:cc:0d:0e:ff", "AA:BB:CC:0D:0E:FF", "aa-bb-cc-0d-0e-ff", "Aa-bB-cc-0D-0e-Ff"] {
            assert_eq!(mac(s), m, "{s}");
        }
        assert_eq!(m.to_string(), "aa:bb:cc:0d:0e:ff");
        assert_eq!(mac(&m.to_string()), m);
        assert_eq!(m.octets(), [0xaa, 0xbb, 0xcc, 0x0d, 0xe, 0xff]);
        let bad = [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb-cc:dd:ee:ff",
            "aa.bb.cc.dd.ee.ff",
            "aabb.ccdd.eeff",
            "aa:bb:cc:dd:ee:fg",
            "+a:bb:cc:dd:ee:ff",
            "a:bb:cc:dd:ee:fff",
            " aa:bb:cc:dd:ee:f",
            "aa:bb:cc:dd:ee:ff ",
        ];
        for s in bad {
            assert!(s.parse::<MacAddr>().is_err(), "{s:?}");
        }
    }
}
