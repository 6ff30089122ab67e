//! PROXY protocol version 2 on the server side, read before the TLS
//! handshake: a trusted load balancer tells us the address of the client it
//! relays (HAProxy's `proxy-protocol.txt`, section 2.2).
//!
//! A header is only believed from a configured [`TrustedProxies`] peer, and
//! there it is required; from anyone else a connection that starts with the
//! v2 signature is refused ([`starts_with_signature`]), so a client can never
//! choose the address that access control sees. Only the binary v2 format is
//! understood; the text v1 format is not.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Largest address block + TLVs accepted after the 16-byte fixed part. Real
/// headers carry a few hundred bytes at most; the cap bounds what a
/// misbehaving balancer can make us buffer.
pub const MAX_PAYLOAD: usize = 2048;

/// Length of the fixed part: signature, version/command, family/protocol,
/// payload length.
const FIXED_LEN: usize = 16;

/// Address block lengths by family (spec 2.2).
const INET_BLOCK: usize = 12;
const INET6_BLOCK: usize = 36;
const UNIX_BLOCK: usize = 216;

/// What the header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The balancer opened the connection itself (a health check): use the
    /// real TCP endpoints.
    Local,
    /// The balancer relays a client: the header's addresses are the client's.
    Proxy,
}

/// A parsed v2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// LOCAL or PROXY.
    pub command: Command,
    /// The client's address, for PROXY over IPv4 or IPv6; `None` for LOCAL
    /// and for the UNIX and unspecified families.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, under the same conditions.
    pub destination: Option<SocketAddr>,
}

/// A PROXY header could not be read or is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The stream failed or ended inside the header.
    #[error("reading the PROXY header failed")]
    Io(#[from] io::Error),
    /// The stream does not start with the v2 signature.
    #[error("no PROXY protocol v2 signature")]
    BadSignature,
    /// The version nibble is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    Version(u8),
    /// The command nibble is neither LOCAL nor PROXY.
    #[error("unknown PROXY command {0:#x}")]
    Command(u8),
    /// The family/protocol byte has an unassigned value.
    #[error("unknown PROXY address family/protocol {0:#04x}")]
    Family(u8),
    /// The announced payload is larger than [`MAX_PAYLOAD`].
    #[error("PROXY header payload of {0} bytes exceeds the limit")]
    TooLong(u16),
    /// The payload is shorter than the address block of its family.
    #[error("PROXY address block truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// Bytes the family's address block takes.
        needed: usize,
        /// Bytes the header announced.
        len: u16,
    },
}

/// Reads one v2 header from the start of `stream`, consuming exactly its
/// bytes (the TLS handshake follows on the same stream). TLVs are skipped.
/// The caller bounds the time this may take.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyError> {
    let mut fixed = [0u8; FIXED_LEN];
    stream.read_exact(&mut fixed).await?;
    if fixed[..SIGNATURE.len()] != SIGNATURE {
        return Err(ProxyError::BadSignature);
    }
    let version = fixed[12] >> 4;
    if version != 2 {
        return Err(ProxyError::Version(version));
    }
    let command = match fixed[12] & 0x0f {
        0x0 => Command::Local,
        0x1 => Command::Proxy,
        other => return Err(ProxyError::Command(other)),
    };
    let family = fixed[13];
    let len = u16::from_be_bytes([fixed[14], fixed[15]]);
    if usize::from(len) > MAX_PAYLOAD {
        return Err(ProxyError::TooLong(len));
    }
    let mut payload = vec![0u8; usize::from(len)];
    stream.read_exact(&mut payload).await?;
    if command == Command::Local {
        // Spec: the receiver uses the real endpoints and ignores the
        // protocol block, family included.
        return Ok(ProxyHeader { command, source: None, destination: None });
    }
    let (source, destination) = addresses(family, &payload, len)?;
    Ok(ProxyHeader { command, source, destination })
}

/// The addresses of a PROXY command's block; `payload` may carry TLVs after
/// the block.
fn addresses(family: u8, payload: &[u8], len: u16) -> Result<(Option<SocketAddr>, Option<SocketAddr>), ProxyError> {
    // Transport: 0 unspecified, 1 stream, 2 datagram; the rest is unassigned.
    if family & 0x0f > 0x2 {
        return Err(ProxyError::Family(family));
    }
    let truncated = |needed| ProxyError::Truncated { needed, len };
    match family >> 4 {
        // AF_UNSPEC: nothing to say about the client.
        0x0 => Ok((None, None)),
        0x1 => {
            let b = payload.first_chunk::<INET_BLOCK>().ok_or(truncated(INET_BLOCK))?;
            let source = SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[8], b[9]]));
            let destination =
                SocketAddrV4::new(Ipv4Addr::new(b[4], b[5], b[6], b[7]), u16::from_be_bytes([b[10], b[11]]));
            Ok((Some(source.into()), Some(destination.into())))
        }
        0x2 => {
            let b = payload.first_chunk::<INET6_BLOCK>().ok_or(truncated(INET6_BLOCK))?;
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&b[0..16]);
            dst.copy_from_slice(&b[16..32]);
            let source = SocketAddrV6::new(Ipv6Addr::from(src), u16::from_be_bytes([b[32], b[33]]), 0, 0);
            let destination = SocketAddrV6::new(Ipv6Addr::from(dst), u16::from_be_bytes([b[34], b[35]]), 0, 0);
            Ok((Some(source.into()), Some(destination.into())))
        }
        // AF_UNIX: paths, no address access control could use.
        0x3 if payload.len() < UNIX_BLOCK => Err(truncated(UNIX_BLOCK)),
        0x3 => Ok((None, None)),
        _ => Err(ProxyError::Family(family)),
    }
}

/// Whether the connection's first bytes are the v2 signature, without
/// consuming anything. Answers as soon as the bytes received so far differ
/// from the signature (a TLS ClientHello starts with 0x16), when 12 bytes
/// are there, or when the peer closes its side; while the peer has sent a
/// strict prefix of the signature and nothing more, it waits (the caller's
/// timeout bounds that).
pub async fn starts_with_signature(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; SIGNATURE.len()];
    let n = stream.peek(&mut buf).await?;
    if !waits_for_more(&buf, n) {
        return Ok(is_signature(&buf, n));
    }
    // A strict prefix: wait for more bytes. A successful `peek` leaves the
    // socket marked readable, so looping on it would spin; instead a
    // non-blocking peek runs inside `try_io`, whose `WouldBlock` clears the
    // readiness (unless an event arrived meanwhile), and `ready` then sleeps
    // until the next segment or the peer's FIN. The duplicated descriptor
    // shares the socket and its non-blocking mode; tokio has no `try_peek`.
    let peeker = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // Read-closed is never cleared: once seen, what is buffered is final.
        let closed = ready.is_read_closed();
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peeker.peek(&mut buf)?;
            if !closed && waits_for_more(&buf, n) { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(n) }
        });
        match peeked {
            Ok(n) => return Ok(is_signature(&buf, n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `buf[..n]` is a non-empty strict prefix of the signature.
fn waits_for_more(buf: &[u8; SIGNATURE.len()], n: usize) -> bool {
    n > 0 && n < SIGNATURE.len() && buf[..n] == SIGNATURE[..n]
}

fn is_signature(buf: &[u8; SIGNATURE.len()], n: usize) -> bool {
    n == SIGNATURE.len() && *buf == SIGNATURE
}

/// A v2 PROXY header (command PROXY, TCP) announcing a client at `source`
/// that connected to `destination`, without TLVs. Mixed families are sent
/// as IPv6 with the IPv4 address mapped. For tests and benchmarks that play
/// the load balancer.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + INET6_BLOCK);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&(INET_BLOCK as u16).to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        _ => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&(INET6_BLOCK as u16).to_be_bytes());
            out.extend_from_slice(&v6(source.ip()).octets());
            out.extend_from_slice(&v6(destination.ip()).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The load balancers whose PROXY headers are believed: addresses and CIDR
/// blocks, IPv4 and IPv6. Deserializes from a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// An entry of [`TrustedProxies`] is not an address or CIDR block.
#[derive(Debug, thiserror::Error)]
#[error("trusted proxy {entry:?}: {reason}")]
pub struct BadTrustedProxy {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TrustedProxies {
    /// Parses entries such as `10.0.0.1`, `10.0.0.0/24`, `fd00::/64`. A block
    /// with host bits set (`10.0.0.1/24`) is refused as a likely typo.
    pub fn parse<I, S>(entries: I) -> Result<Self, BadTrustedProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries.into_iter().map(|e| parse_block(e.as_ref())).collect::<Result<_, _>>().map(Self)
    }

    /// Whether `ip` falls in one of the blocks. IPv4-mapped IPv6 addresses
    /// (a dual-stack listener's view of IPv4 peers) count as IPv4.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, prefix)| in_block(ip, net, prefix))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = BadTrustedProxy;

    /// Comma-separated entries (an environment variable's form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.split(',').map(str::trim).filter(|e| !e.is_empty()))
    }
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = BadTrustedProxy;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(entries)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (net, prefix)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}/{prefix}")?;
        }
        Ok(())
    }
}

fn parse_block(entry: &str) -> Result<(IpAddr, u8), BadTrustedProxy> {
    let bad = |reason| BadTrustedProxy { entry: entry.to_owned(), reason };
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => return Err(bad("prefix length out of range")),
        },
        Some(_) => return Err(bad("prefix length is not a number")),
    };
    // `::ffff:10.0.0.0/104` means `10.0.0.0/8`: peers are compared as IPv4.
    let (addr, prefix) = match addr {
        IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => (addr.to_canonical(), prefix - 96),
        _ => (addr, prefix),
    };
    if mask(addr, prefix) != bits(addr) {
        return Err(bad("host bits set after the prefix"));
    }
    Ok((addr, prefix))
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && mask(ip, prefix) == mask(net, prefix)
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address with everything after `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let host = width.saturating_sub(u32::from(prefix));
    if host >= 128 { 0 } else { (bits(ip) >> host) << host }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn header(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    async fn parse(bytes: &[u8]) -> Result<ProxyHeader, ProxyError> {
        let mut reader = bytes;
        read_header(&mut reader).await
    }

    #[tokio::test]
    async fn round_trips_ipv4_and_ipv6() {
        let src: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let dst: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        let h = parse(&encode_v2(src, dst)).await.unwrap();
        assert_eq!(h, ProxyHeader { command: Command::Proxy, source: Some(src), destination: Some(dst) });

        let src: SocketAddr = "[2001:db8::7]:51000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let h = parse(&encode_v2(src, dst)).await.unwrap();
        assert_eq!((h.source, h.destination), (Some(src), Some(dst)));

        // Mixed families travel as IPv6 with the IPv4 side mapped.
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let h = parse(&encode_v2(src, dst)).await.unwrap();
        assert_eq!(h.source, Some("[::ffff:192.0.2.1]:1".parse().unwrap()));
    }

    #[tokio::test]
    async fn consumes_exactly_the_header_and_skips_tlvs() {
        let mut payload = encode_v2("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap())[16..].to_vec();
        payload.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_NOOP TLV
        let mut bytes = header(0x21, 0x11, &payload);
        bytes.extend_from_slice(b"\x16\x03\x01rest");
        let mut reader = &bytes[..];
        let h = read_header(&mut reader).await.unwrap();
        assert_eq!(h.source, Some("1.2.3.4:5".parse().unwrap()));
        assert_eq!(reader, b"\x16\x03\x01rest");
    }

    #[tokio::test]
    async fn local_ignores_the_address_block() {
        let h = parse(&header(0x20, 0x00, &[])).await.unwrap();
        assert_eq!(h, ProxyHeader { command: Command::Local, source: None, destination: None });
        // A LOCAL header may still carry a block (and even an unknown family).
        let h = parse(&header(0x20, 0x11, &[1; 12])).await.unwrap();
        assert_eq!((h.command, h.source), (Command::Local, None));
        let h = parse(&header(0x20, 0xff, &[])).await.unwrap();
        assert_eq!(h.command, Command::Local);
    }

    #[tokio::test]
    async fn unix_and_unspec_have_no_addresses() {
        let h = parse(&header(0x21, 0x00, &[])).await.unwrap();
        assert_eq!((h.command, h.source, h.destination), (Command::Proxy, None, None));
        let h = parse(&header(0x21, 0x31, &[0; UNIX_BLOCK])).await.unwrap();
        assert_eq!((h.source, h.destination), (None, None));
    }

    #[tokio::test]
    async fn rejects_malformed_headers() {
        let good = encode_v2("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap());

        let mut bad_sig = good.clone();
        bad_sig[11] = b'X';
        assert!(matches!(parse(&bad_sig).await, Err(ProxyError::BadSignature)));
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh").await,
            Err(ProxyError::BadSignature)
        ));

        assert!(matches!(parse(&header(0x11, 0x11, &good[16..])).await, Err(ProxyError::Version(1))));
        assert!(matches!(parse(&header(0x31, 0x11, &good[16..])).await, Err(ProxyError::Version(3))));
        assert!(matches!(parse(&header(0x22, 0x11, &good[16..])).await, Err(ProxyError::Command(2))));
        assert!(matches!(parse(&header(0x21, 0x41, &good[16..])).await, Err(ProxyError::Family(0x41))));
        assert!(matches!(parse(&header(0x21, 0x13, &good[16..])).await, Err(ProxyError::Family(0x13))));

        // Address blocks shorter than their family needs.
        assert!(matches!(
            parse(&header(0x21, 0x11, &good[16..24])).await,
            Err(ProxyError::Truncated { needed: 12, len: 8 })
        ));
        assert!(matches!(
            parse(&header(0x21, 0x21, &[0; 20])).await,
            Err(ProxyError::Truncated { needed: 36, len: 20 })
        ));
        assert!(matches!(parse(&header(0x21, 0x31, &[0; 100])).await, Err(ProxyError::Truncated { .. })));

        // The stream ends inside the fixed part or the payload.
        assert!(matches!(parse(&good[..10]).await, Err(ProxyError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
        assert!(matches!(parse(&good[..20]).await, Err(ProxyError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof));

        // Oversize: refused from the length field, before reading the payload.
        let mut huge = good[..14].to_vec();
        huge.extend_from_slice(&2049u16.to_be_bytes());
        assert!(matches!(parse(&huge).await, Err(ProxyError::TooLong(2049))));
        let at_cap = header(0x21, 0x11, &[0; MAX_PAYLOAD]);
        assert!(parse(&at_cap).await.is_ok());
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn signature_detection_answers_early_or_waits_for_the_rest() {
        // A full header.
        let (mut client, server) = pair().await;
        client.write_all(&encode_v2("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap())).await.unwrap();
        assert!(starts_with_signature(&server).await.unwrap());

        // A TLS record: no, from the first byte.
        let (mut client, server) = pair().await;
        client.write_all(b"\x16").await.unwrap();
        assert!(!starts_with_signature(&server).await.unwrap());

        // Differs at the third byte: no, without waiting for 12 bytes.
        let (mut client, server) = pair().await;
        client.write_all(b"\r\nX").await.unwrap();
        assert!(!starts_with_signature(&server).await.unwrap());

        // Closed without a byte, or after a prefix: no.
        let (client, server) = pair().await;
        drop(client);
        assert!(!starts_with_signature(&server).await.unwrap());
        let (mut client, server) = pair().await;
        client.write_all(b"\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        assert!(!starts_with_signature(&server).await.unwrap());

        // A prefix, then the rest: waits, then yes. Nothing was consumed.
        let (mut client, server) = pair().await;
        client.write_all(&SIGNATURE[..5]).await.unwrap();
        let mut probe = [0u8; 12];
        let mut n = 0;
        while n < 5 {
            n = server.peek(&mut probe).await.unwrap();
        }
        let detect = starts_with_signature(&server);
        tokio::pin!(detect);
        tokio::select! {
            biased;
            answer = &mut detect => panic!("answered {answer:?} on a prefix"),
            () = std::future::ready(()) => {}
        }
        client.write_all(&SIGNATURE[5..]).await.unwrap();
        assert!(detect.await.unwrap());
        assert_eq!(server.peek(&mut probe).await.unwrap(), 12);
    }

    #[test]
    fn trusted_proxies_parse_and_match() {
        let t = TrustedProxies::parse(["10.0.0.1", "192.168.0.0/16", "fd00::/64", "::ffff:172.16.0.0/108"]).unwrap();
        let yes = ["10.0.0.1", "192.168.255.3", "fd00::1234", "::ffff:10.0.0.1", "::ffff:192.168.1.1", "172.16.9.9"];
        for ip in yes {
            assert!(t.contains(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.2", "192.169.0.1", "fd00:0:0:1::1", "::a00:1", "127.0.0.1", "172.32.0.1"] {
            assert!(!t.contains(&ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(t.to_string(), "10.0.0.1/32,192.168.0.0/16,fd00::/64,172.16.0.0/12");

        let all = TrustedProxies::parse(["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.contains(&"8.8.8.8".parse().unwrap()) && all.contains(&"2001:db8::1".parse().unwrap()));
        assert!(!TrustedProxies::default().contains(&"127.0.0.1".parse().unwrap()));

        for bad in ["10.0.0.1/24", "10.0.0.0/33", "fd00::/129", "host", "10.0.0.0/", "10.0.0.0/+8", "/8", ""] {
            assert!(TrustedProxies::parse([bad]).is_err(), "{bad}");
        }
        let from_env: TrustedProxies = " 10.0.0.0/8 , fd00::1 ".parse().unwrap();
        assert!(from_env.contains(&"fd00::1".parse().unwrap()));
        assert!(!from_env.is_empty());
    }

    #[test]
    fn trusted_proxies_deserialize_from_a_list() {
        #[derive(serde::Deserialize)]
        struct Config {
            proxy_protocol_from: TrustedProxies,
        }
        let c: Config = toml::from_str(r#"proxy_protocol_from = ["10.1.0.0/16"]"#).unwrap();
        assert!(c.proxy_protocol_from.contains(&"10.1.2.3".parse().unwrap()));
        assert!(toml::from_str::<Config>(r#"proxy_protocol_from = ["10.1.0.1/16"]"#).is_err());
    }
}
