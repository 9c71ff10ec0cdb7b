//! The PROXY protocol (HAProxy, versions 1 and 2) in front of HTTP and TLS, as ingress-nginx's
//! ConfigMap `use-proxy-protocol: "true"` (nginx `listen ... proxy_protocol` + `real_ip_header
//! proxy_protocol`): a load balancer (AWS NLB/ELB, HAProxy, ...) sends the client's address in
//! a header before the first byte of the connection's own protocol.
//!
//! With it on, every connection on both listeners must start with a header (nginx closes one
//! without: "broken header"); the header is read within `proxy-protocol-header-timeout` (5 s), bounded in
//! size, and the source address it carries becomes the connection's client address (so
//! `$remote_addr`, X-Forwarded-For, X-Real-IP, allow/deny lists and rate limits see the client,
//! not the load balancer) when the load balancer's own address is in `proxy-real-ip-cidr`
//! (nginx `set_real_ip_from`, default everything). `LOCAL` / `UNKNOWN` headers (health checks
//! of the load balancer itself) keep the socket's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pingora::protocols::l4::stream::Stream as TcpStream;
use tokio::io::AsyncReadExt;

/// The version 2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (the specification's limit).
const V1_MAX: usize = 107;
/// The largest version 2 header read (16 bytes plus addresses and TLVs).
pub const V2_MAX: usize = 4096;

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A complete header of `len` bytes; `source` is the client and `dest` the address it
    /// connected to (`$proxy_protocol_server_addr`/`_port`) when the header names them.
    Done {
        len: usize,
        source: Option<SocketAddr>,
        dest: Option<SocketAddr>,
    },
    /// Not enough bytes yet.
    Incomplete,
    /// Not a PROXY protocol header (or a broken one).
    Invalid(&'static str),
}

/// Parse the start of a connection. Pure.
pub fn parse(buf: &[u8]) -> Header {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Header::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    const V1: &[u8] = b"PROXY ";
    let n = buf.len().min(V1.len());
    if buf[..n] != V1[..n] {
        return Header::Invalid("the connection does not start with a PROXY protocol header");
    }
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Header::Invalid("PROXY protocol v1 line longer than 107 bytes")
        } else {
            Header::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Header::Invalid("PROXY protocol v1 line is not text");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let (source, dest) = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => (None, None),
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let addr = |ip: &str, port: &str| {
                let ip: Option<IpAddr> = match *proto {
                    "TCP4" => ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
                    _ => ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
                };
                Some(SocketAddr::new(ip?, port.parse::<u16>().ok()?))
            };
            match (addr(src, sport), addr(dst, dport)) {
                (Some(s), Some(d)) => (Some(s), Some(d)),
                _ => return Header::Invalid("PROXY protocol v1 line with a bad address or port"),
            }
        }
        _ => return Header::Invalid("PROXY protocol v1 line not understood"),
    };
    Header::Done {
        len: end + 2,
        source,
        dest,
    }
}

fn parse_v2(buf: &[u8]) -> Header {
    if buf.len() < 16 {
        return Header::Incomplete;
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Header::Invalid("PROXY protocol v2 header with another version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX {
        return Header::Invalid("PROXY protocol v2 header too large");
    }
    if buf.len() < len {
        return Header::Incomplete;
    }
    let body = &buf[16..len];
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let (source, dest) = match (ver_cmd & 0x0f, family) {
        // LOCAL: the load balancer's own connection (health checks)
        (0, _) => (None, None),
        // PROXY over TCP or UDP, IPv4: source, destination, source port, destination port
        (1, 0x11 | 0x12) if body.len() >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        (1, 0x21 | 0x22) if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        // UNSPEC or unix sockets: no address to use
        (1, 0x00 | 0x31 | 0x32) => (None, None),
        (1, _) => return Header::Invalid("PROXY protocol v2 header with a bad address block"),
        _ => return Header::Invalid("PROXY protocol v2 header with an unknown command"),
    };
    Header::Done { len, source, dest }
}

/// Read the header from a new connection within `limit`; the bytes after it are put back.
/// `Ok(source)`: the client address the header names, if any.
/// The PROXY header's (source, destination), when it names them.
pub type Addrs = Option<(SocketAddr, Option<SocketAddr>)>;

pub async fn read(stream: &mut TcpStream, limit: Duration) -> Result<Addrs, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf: Vec<u8> = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        match parse(&buf) {
            Header::Done { len, source, dest } => {
                stream.rewind(&buf[len..]);
                return Ok(source.map(|s| (s, dest)));
            }
            Header::Invalid(why) => return Err(why.to_string()),
            Header::Incomplete => {}
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("closed before a PROXY protocol header".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err("no PROXY protocol header within proxy-protocol-header-timeout".into())
            }
        }
    }
}

/// Read the header and make its source the connection's client address when the peer is a
/// trusted proxy (`trusted`: `proxy-real-ip-cidr`). `Err`: close the connection.
pub async fn accept(
    stream: &mut TcpStream,
    limit: Duration,
    trusted: &crate::annotations::access::IpSet,
) -> Result<(), String> {
    use pingora::protocols::GetSocketDigest;
    use std::os::unix::io::AsRawFd;
    let source = read(stream, limit).await?;
    let Some((source, dest)) = source else {
        return Ok(());
    };
    let peer = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
    if !peer.is_some_and(|ip| trusted.contains(ip)) {
        return Ok(());
    }
    let digest = pingora::protocols::SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest
        .peer_addr
        .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(
            source,
        )));
    // the address the client connected to: `$pass_server_port` is its port (lua_ingress.lua)
    if let Some(d) = dest {
        let _ = digest
            .local_addr
            .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(d)));
    }
    stream.set_socket_digest(digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(family);
        b.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        b.extend_from_slice(addrs);
        b
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Header::Done {
                len: 43,
                source: Some("203.0.113.7:51234".parse().unwrap()),
                dest: Some("10.0.0.1:443".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n"),
            Header::Done {
                len: 40,
                source: Some("[2001:db8::7]:1".parse().unwrap()),
                dest: Some("[2001:db8::1]:2".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Header::Done {
                len: 15,
                source: None,
                dest: None
            }
        );
        // every prefix of a valid line is incomplete, never invalid
        for i in 0..line.len().min(42) {
            assert_eq!(parse(&line[..i]), Header::Incomplete, "{i}");
        }
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Header::Invalid(_)));
        assert!(matches!(
            parse(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n"),
            Header::Invalid(_)
        ));
        assert!(matches!(parse(&[b'P'; 200]), Header::Invalid(_)));
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Header::Invalid(_)));
    }

    #[test]
    fn version_2_headers() {
        let v4 = v2(1, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0xc8, 0x22, 1, 187]);
        assert_eq!(
            parse(&[v4.as_slice(), b"\x16\x03\x01"].concat()),
            Header::Done {
                len: 28,
                source: Some("203.0.113.7:51234".parse().unwrap()),
                dest: Some("10.0.0.1:443".parse().unwrap())
            }
        );
        for i in 0..v4.len() {
            assert_eq!(parse(&v4[..i]), Header::Incomplete, "{i}");
        }
        let mut a6 = vec![0u8; 36];
        a6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        a6[32..34].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &a6)),
            Header::Done {
                len: 52,
                source: Some("[2001:db8::7]:80".parse().unwrap()),
                dest: Some("[::]:0".parse().unwrap())
            }
        );
        // LOCAL (health check), with TLVs after the addresses
        assert_eq!(
            parse(&v2(0, 0x00, &[0x04, 0, 1, 9])),
            Header::Done {
                len: 20,
                source: None,
                dest: None
            }
        );
        assert!(matches!(
            parse(&v2(1, 0x11, &[1, 2, 3])),
            Header::Invalid(_)
        ));
        let mut other_version = v4.clone();
        other_version[12] = 0x11;
        assert!(matches!(parse(&other_version), Header::Invalid(_)));
        let mut huge = v2(1, 0x11, &[0; 12]);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert!(matches!(parse(&huge), Header::Invalid(_)));
    }
}
