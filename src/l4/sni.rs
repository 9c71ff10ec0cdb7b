//! The server name of a TLS ClientHello, read from the first bytes of a connection (the
//! handshake message may span several TLS records and TCP segments). Pure and bounded.

/// The largest ClientHello read (records included); a longer one is not peeked.
pub const MAX_HELLO: usize = 32 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A whole ClientHello, with its server name if it sends one.
    Done(Option<String>),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello (or over [`MAX_HELLO`]).
    NotTls,
}

/// Parse the start of a connection.
pub fn parse(buf: &[u8]) -> Hello {
    // the handshake bytes, joined across records
    let mut hs = Vec::new();
    let mut at = 0;
    loop {
        if buf.len() < at + 5 {
            return if at + 5 > MAX_HELLO {
                Hello::NotTls
            } else {
                Hello::Incomplete
            };
        }
        let rec = &buf[at..];
        if rec[0] != 22 || rec[1] != 3 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([rec[3], rec[4]]));
        if len == 0 || len > 16 * 1024 + 2048 {
            return Hello::NotTls;
        }
        if buf.len() < at + 5 + len {
            return if at + 5 + len > MAX_HELLO {
                Hello::NotTls
            } else {
                Hello::Incomplete
            };
        }
        hs.extend_from_slice(&rec[5..5 + len]);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Hello::NotTls;
            }
            let need =
                4 + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]));
            if hs.len() >= need {
                return match server_name(&hs[4..need]) {
                    Some(sni) => Hello::Done(sni),
                    None => Hello::NotTls,
                };
            }
            if need > MAX_HELLO {
                return Hello::NotTls;
            }
        }
    }
}

/// Reads big-endian lengths and slices, `None` past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The ClientHello body: `Some(None)` without a server name, `None` when malformed.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut c = Cursor(body);
    c.take(2 + 32)?; // version, random
    let n = c.u8()?;
    c.take(n)?; // session id
    let n = c.u16()?;
    c.take(n)?; // cipher suites
    let n = c.u8()?;
    c.take(n)?; // compression methods
    if c.0.is_empty() {
        return Some(None);
    }
    let n = c.u16()?;
    let mut ext = Cursor(c.take(n)?);
    while !ext.0.is_empty() {
        let ty = ext.u16()?;
        let n = ext.u16()?;
        let data = ext.take(n)?;
        if ty != 0 {
            continue;
        }
        let mut list = Cursor(data);
        let n = list.u16()?;
        let mut names = Cursor(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = names.u16()?;
            let name = names.take(n)?;
            if kind == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return Some(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it, for `sni`.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        use std::sync::Arc;
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let name = match sni {
            Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).unwrap(),
            None => rustls::pki_types::ServerName::IpAddress(
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap().into(),
            ),
        };
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn server_names_from_real_client_hellos() {
        assert_eq!(
            parse(&hello(Some("Pass.Example.com"))),
            Hello::Done(Some("pass.example.com".into()))
        );
        assert_eq!(parse(&hello(None)), Hello::Done(None));
    }

    #[test]
    fn split_anywhere_is_incomplete_until_whole() {
        let h = hello(Some("a.test"));
        for cut in [0, 1, 4, 5, 9, 40, h.len() - 1] {
            assert_eq!(parse(&h[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        // the handshake split over two records
        let body = &h[5..];
        let (a, b) = body.split_at(30);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[22, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(parse(&two), Hello::Done(Some("a.test".into())));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"PRI * HTTP/2.0"), Hello::NotTls);
        // an alert record, a huge length
        assert_eq!(parse(&[21, 3, 3, 0, 2, 2, 40]), Hello::NotTls);
        assert_eq!(parse(&[22, 3, 3, 0xff, 0xff]), Hello::NotTls);
        // a handshake that is not a ClientHello
        assert_eq!(parse(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
    }
}
