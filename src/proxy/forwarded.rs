//! The client as ingress-nginx sees it: `$remote_addr` after the realip module, and with
//! `use-forwarded-headers` the scheme, port and host a proxy in front reports
//! (`$pass_access_scheme`, `$pass_server_port`, `$best_http_host`, lua_ingress.lua `rewrite`).

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::configmap::ForwardedHeaders;

/// The per-request view of scheme, port and host; borrowed from the request header. (The
/// client address is [`real_ip`], computed once per request.)
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    /// `$pass_access_scheme`.
    pub scheme: &'a str,
    /// `$pass_server_port` as sent (X-Forwarded-Port) or the listener's port.
    pub port: PortSource<'a>,
    /// `$best_http_host` (port included when the client sent one).
    pub host: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSource<'a> {
    Listener,
    Header(&'a str),
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// nginx realip with `real_ip_recursive on`: from the right of the forwarded-for list, skip the
/// trusted addresses; an element that is not an address stops the walk.
pub fn real_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    cfg: &ForwardedHeaders,
) -> Option<IpAddr> {
    let peer_ip = peer?;
    // with the PROXY protocol the connection layer already made its source the peer
    if cfg.use_proxy_protocol || !cfg.real_ip() || !cfg.proxy_real_ip_cidr.contains(peer_ip) {
        return Some(peer_ip);
    }
    let Some(list) = req
        .headers
        .get(&cfg.forwarded_for_header)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(peer_ip);
    };
    let mut current = peer_ip;
    for item in list.rsplit(',') {
        match parse_addr(item.trim()) {
            Some(ip) => current = ip,
            None => return Some(current),
        }
        if !cfg.proxy_real_ip_cidr.contains(current) {
            break;
        }
    }
    Some(current)
}

/// An address as nginx's `ngx_parse_addr_port` takes it: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]:80`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    s.rsplit_once(':').and_then(|(a, p)| {
        p.parse::<u16>().ok()?;
        a.parse().ok()
    })
}

/// The view for one request. `host` is the request's Host (or `:authority`); `server_port` is
/// the port the client connected to (the PROXY header's destination with the PROXY protocol).
pub fn view<'a>(
    req: &'a RequestHeader,
    scheme: &'static str,
    host: &'a str,
    server_port: u16,
    cfg: &ForwardedHeaders,
) -> ClientView<'a> {
    let mut v = ClientView {
        scheme,
        port: PortSource::Listener,
        host,
    };
    if cfg.use_forwarded_headers {
        if let Some(p) = header(req, "x-forwarded-proto") {
            v.scheme = p;
        }
        if let Some(p) = header(req, "x-forwarded-port") {
            v.port = PortSource::Header(p);
        }
        if let Some(h) = header(req, "x-forwarded-host") {
            v.host = h.split(',').next().unwrap_or(h);
        }
    }
    // lua_ingress.lua: a PROXY header naming port 443 means the client spoke HTTPS to the
    // load balancer in front
    if cfg.use_proxy_protocol && server_port == 443 {
        v.scheme = "https";
    }
    v
}

/// The defaults, for a request that never reached the table.
pub static DEFAULT: std::sync::LazyLock<ForwardedHeaders> =
    std::sync::LazyLock::new(ForwardedHeaders::default);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::access::parse_cidrs;

    fn cfg(use_fwd: bool, trusted: &str) -> ForwardedHeaders {
        ForwardedHeaders {
            use_forwarded_headers: use_fwd,
            proxy_real_ip_cidr: parse_cidrs(trusted).unwrap(),
            ..ForwardedHeaders::default()
        }
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("Host", "app.example.com:8080").unwrap();
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn real_ip_only_with_use_forwarded_headers_and_a_trusted_peer() {
        let r = req(&[("X-Forwarded-For", "1.1.1.1, 10.0.0.2")]);
        let peer = ip("10.0.0.1");
        assert_eq!(real_ip(&r, peer, &cfg(false, "0.0.0.0/0")), peer);
        // everything trusted (ingress-nginx's default 0.0.0.0/0): the leftmost address
        assert_eq!(real_ip(&r, peer, &cfg(true, "0.0.0.0/0")), ip("1.1.1.1"));
        // only 10/8 trusted: the first untrusted address from the right
        let r2 = req(&[("X-Forwarded-For", "9.9.9.9, 1.1.1.1, 10.0.0.2")]);
        assert_eq!(real_ip(&r2, peer, &cfg(true, "10.0.0.0/8")), ip("1.1.1.1"));
        // an untrusted peer is the client, whatever it claims
        assert_eq!(
            real_ip(&r2, ip("8.8.8.8"), &cfg(true, "10.0.0.0/8")),
            ip("8.8.8.8")
        );
        // garbage stops the walk at the last good address
        let r3 = req(&[("X-Forwarded-For", "1.1.1.1, junk, 10.0.0.3")]);
        assert_eq!(real_ip(&r3, peer, &cfg(true, "10.0.0.0/8")), ip("10.0.0.3"));
        let r4 = req(&[("X-Forwarded-For", "[2001:db8::1]:443")]);
        assert_eq!(
            real_ip(&r4, peer, &cfg(true, "0.0.0.0/0")),
            ip("2001:db8::1")
        );
        let none = req(&[]);
        assert_eq!(real_ip(&none, peer, &cfg(true, "0.0.0.0/0")), peer);
    }

    #[test]
    fn scheme_port_and_host_from_the_proxy_in_front() {
        let r = req(&[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Host", "public.example.com, inner"),
        ]);
        let off = view(
            &r,
            "http",
            "app.example.com:8080",
            80,
            &cfg(false, "0.0.0.0/0"),
        );
        assert_eq!(
            (off.scheme, off.port, off.host),
            ("http", PortSource::Listener, "app.example.com:8080")
        );
        let on = view(
            &r,
            "http",
            "app.example.com:8080",
            80,
            &cfg(true, "0.0.0.0/0"),
        );
        assert_eq!(
            (on.scheme, on.port, on.host),
            ("https", PortSource::Header("443"), "public.example.com")
        );
        // the PROXY protocol's destination port 443: https, whatever the listener
        let pp = ForwardedHeaders {
            use_proxy_protocol: true,
            ..cfg(false, "0.0.0.0/0")
        };
        assert_eq!(view(&req(&[]), "http", "h", 443, &pp).scheme, "https");
        assert_eq!(view(&req(&[]), "http", "h", 1234, &pp).scheme, "http");
    }
}
