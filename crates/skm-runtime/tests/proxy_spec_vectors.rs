//! PROXY protocol v2 headers written by hand, in hex, from the
//! specification (HAProxy's `proxy-protocol.txt`, section 2.2), not by
//! our encoder: the parser must read what a real load balancer sends, and
//! the encoder (used by tests and benchmarks that play the balancer) must
//! produce exactly these bytes.
//!
//! The layout, as the spec gives it:
//!
//! ```text
//! signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A        (12 bytes)
//! ver_cmd    0x2_ : version 2; low nibble 0x0 LOCAL, 0x1 PROXY
//! fam        0x00 UNSPEC, 0x11 TCP/IPv4, 0x12 UDP/IPv4, 0x21 TCP/IPv6,
//!            0x22 UDP/IPv6, 0x31 UNIX stream, 0x32 UNIX datagram
//! len        u16 big endian: the bytes that follow (address block + TLVs)
//! IPv4 block src addr(4) dst addr(4) src port(2) dst port(2)        = 12
//! IPv6 block src addr(16) dst addr(16) src port(2) dst port(2)      = 36
//! UNIX block src path(108) dst path(108)                            = 216
//! TLV        type(1) length_hi(1) length_lo(1) value; e.g. 0x01 ALPN,
//!            0x02 AUTHORITY, 0x04 NOOP
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use skm_runtime::proxy_protocol::{Command, ProxyError, ProxyHeader, encode_v2, read_header};

const SIG: &str = "0d0a0d0a000d0a515549540a";

/// TCP over IPv4: 192.0.2.10:51234 -> 198.51.100.7:7700.
const TCP4: &str = concat!(
    "0d0a0d0a000d0a515549540a", // signature
    "21",                       // version 2, PROXY
    "11",                       // AF_INET, STREAM
    "000c",                     // 12 bytes follow
    "c000020a",                 // 192.0.2.10
    "c6336407",                 // 198.51.100.7
    "c822",                     // 51234
    "1e14",                     // 7700
);

/// TCP over IPv6: [2001:db8::1]:443 -> [2001:db8::2:ff]:7701.
const TCP6: &str = concat!(
    "0d0a0d0a000d0a515549540a",
    "21",
    "21", // AF_INET6, STREAM
    "0024",
    "20010db8000000000000000000000001",
    "20010db80000000000000000000200ff",
    "01bb", // 443
    "1e15", // 7701
);

/// The encoder's form of an IPv4 client behind an IPv6 address: the IPv4
/// address mapped into IPv6 (::ffff:192.0.2.10).
const MIXED: &str = concat!(
    "0d0a0d0a000d0a515549540a",
    "21",
    "21",
    "0024",
    "00000000000000000000ffffc000020a",
    "20010db80000000000000000000200ff",
    "c822",
    "1e15",
);

fn bytes(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Parses a header off the front of `input`; returns it and what is left.
async fn parse(input: &[u8]) -> (Result<ProxyHeader, ProxyError>, Vec<u8>) {
    let mut rest = input;
    let header = read_header(&mut rest).await;
    (header, rest.to_vec())
}

fn proxied(source: &str, destination: &str) -> ProxyHeader {
    ProxyHeader { command: Command::Proxy, source: Some(addr(source)), destination: Some(addr(destination)) }
}

#[tokio::test]
async fn addresses_of_tcp_over_ipv4_and_ipv6() {
    let (h, rest) = parse(&bytes(TCP4)).await;
    assert_eq!(h.unwrap(), proxied("192.0.2.10:51234", "198.51.100.7:7700"));
    assert!(rest.is_empty());
    let (h, rest) = parse(&bytes(TCP6)).await;
    assert_eq!(h.unwrap(), proxied("[2001:db8::1]:443", "[2001:db8::2:ff]:7701"));
    assert!(rest.is_empty());
    // UDP over IPv4 carries the same block.
    let udp4 = TCP4.replacen("2111000c", "2112000c", 1);
    assert_eq!(parse(&bytes(&udp4)).await.0.unwrap(), proxied("192.0.2.10:51234", "198.51.100.7:7700"));
}

/// The header is consumed exactly, TLVs included; the TLS ClientHello that
/// follows (0x16 0x03 0x01 ...) is left for the handshake.
#[tokio::test]
async fn tlvs_are_skipped_and_the_stream_after_the_header_is_untouched() {
    let with_tlvs = concat!(
        "0d0a0d0a000d0a515549540a",
        "21",
        "11",
        "0025", // 12 + 5 + 14 + 6 = 37 bytes follow
        "c000020a",
        "c6336407",
        "c822",
        "1e14",
        "0100026832",                   // PP2_TYPE_ALPN "h2"
        "02000b6b6d732e6578616d706c65", // PP2_TYPE_AUTHORITY "kms.example"
        "04000300ff00",                 // PP2_TYPE_NOOP, 3 bytes
        "160301",                       // the ClientHello begins
    );
    let (h, rest) = parse(&bytes(with_tlvs)).await;
    assert_eq!(h.unwrap(), proxied("192.0.2.10:51234", "198.51.100.7:7700"));
    assert_eq!(rest, bytes("160301"));
}

/// LOCAL: the balancer's own connection (a health check). The receiver
/// uses the real endpoints and ignores the address block, whatever it is.
#[tokio::test]
async fn local_has_no_addresses_and_consumes_its_block() {
    let local = ProxyHeader { command: Command::Local, source: None, destination: None };
    let bare = format!("{SIG}20000000");
    let (h, rest) = parse(&bytes(&format!("{bare}16"))).await;
    assert_eq!(h.unwrap(), local);
    assert_eq!(rest, [0x16]);
    let with_block = TCP4.replacen("2111000c", "2011000c", 1);
    let (h, rest) = parse(&bytes(&format!("{with_block}16"))).await;
    assert_eq!(h.unwrap(), local);
    assert_eq!(rest, [0x16]);
}

/// PROXY with family UNSPEC (no block) or UNIX (two 108-byte paths): a
/// relayed connection, but no IP address to check.
#[tokio::test]
async fn unspec_and_unix_proxy_no_ip() {
    let none = ProxyHeader { command: Command::Proxy, source: None, destination: None };
    let (h, rest) = parse(&bytes(&format!("{SIG}21000000"))).await;
    assert_eq!(h.unwrap(), none);
    assert!(rest.is_empty());
    // 216 = 0x00d8
    let unix = format!("{SIG}2131{:04x}{}{}", 216, "2f".repeat(108), "00".repeat(108));
    let (h, rest) = parse(&bytes(&format!("{unix}16"))).await;
    assert_eq!(h.unwrap(), none);
    assert_eq!(rest, [0x16]);
}

#[tokio::test]
async fn malformed_headers_are_refused() {
    let cases: Vec<(String, &str)> = vec![
        // The v1 text format.
        (hex::encode("PROXY TCP4 192.0.2.10 198.51.100.7 51234 7700\r\n"), "BadSignature"),
        // A signature with one byte off.
        (TCP4.replacen("515549540a", "515549540b", 1), "BadSignature"),
        // Version 1 and 3 in the binary format.
        (TCP4.replacen("2111000c", "1111000c", 1), "Version"),
        (TCP4.replacen("2111000c", "3111000c", 1), "Version"),
        // Commands other than LOCAL and PROXY.
        (TCP4.replacen("2111000c", "2211000c", 1), "Command"),
        (TCP4.replacen("2111000c", "2f11000c", 1), "Command"),
        // Unassigned families and transports.
        (TCP4.replacen("2111000c", "2141000c", 1), "Family"),
        (TCP4.replacen("2111000c", "2113000c", 1), "Family"),
        // An address block shorter than its family's.
        (TCP4.replacen("2111000c", "2111000b", 1)[..TCP4.len() - 2].to_owned(), "Truncated"),
        (format!("{SIG}21210010{}", "00".repeat(16)), "Truncated"),
        // More than the 2048 bytes accepted (0x0801 = 2049).
        (format!("{SIG}21110801{}", "00".repeat(2049)), "TooLong"),
        // The stream ends inside the fixed part or the block.
        (TCP4[..20].to_owned(), "Io"),
        (TCP4[..TCP4.len() - 4].to_owned(), "Io"),
    ];
    for (hex, expected) in cases {
        let (h, _) = parse(&bytes(&hex)).await;
        let err = h.expect_err(&hex);
        let kind = format!("{err:?}");
        assert!(kind.starts_with(expected), "{hex}: expected {expected}, got {kind}");
    }
}

/// What `encode_v2` writes is the spec's bytes.
#[test]
fn encoder_writes_the_spec_bytes() {
    assert_eq!(hex::encode(encode_v2(addr("192.0.2.10:51234"), addr("198.51.100.7:7700"))), TCP4);
    assert_eq!(hex::encode(encode_v2(addr("[2001:db8::1]:443"), addr("[2001:db8::2:ff]:7701"))), TCP6);
    assert_eq!(hex::encode(encode_v2(addr("192.0.2.10:51234"), addr("[2001:db8::2:ff]:7701"))), MIXED);
}
