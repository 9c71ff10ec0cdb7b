//! TLS-related proxy helpers: is the client on the HTTPS listener, the HTTP->HTTPS redirect,
//! the upstream peer for `backend-protocol` / `proxy-ssl-*`.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::Session;

use crate::route::tls::{https_location, BackendProtocol, UpstreamTls};
use crate::route::{Route, RouteTable};

/// Whether the request came over TLS (the HTTPS listener).
pub fn is_https(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// `Some(Location)` when a plain-HTTP request must be redirected to HTTPS.
pub fn redirect_location(
    table: &RouteTable,
    route: &Route,
    host: &str,
    redirect_host: &str,
    request_uri: &str,
) -> Option<String> {
    let policy = &route.tls.redirect;
    if !policy.redirects(table.tls.host_has_tls(host)) {
        return None;
    }
    let host = if redirect_host.is_empty() {
        "localhost"
    } else {
        redirect_host
    };
    Some(https_location(
        host,
        request_uri,
        policy.preserve_trailing_slash,
    ))
}

/// The peer for `addr` with the route's upstream protocol. `request_host` (without port) is
/// the default verification/SNI name. `client_tls`: the request came over TLS, which makes
/// AUTO_HTTP a TLS upstream (ingress-nginx: `proxy_pass $scheme://`).
pub fn upstream_peer(
    addr: SocketAddr,
    u: &UpstreamTls,
    request_host: &str,
    client_tls: bool,
) -> HttpPeer {
    let tls = u.protocol.tls() || (u.protocol == BackendProtocol::AutoHttp && client_tls);
    if !tls {
        let mut peer = HttpPeer::new(addr, false, String::new());
        if u.protocol.h2() {
            // GRPC: h2c with prior knowledge
            peer.options.set_http_version(2, 2);
        }
        return peer;
    }
    // With rustls an empty SNI fails ("invalid dns name"); an IP address as the name sends no
    // SNI extension, which is nginx's default (proxy_ssl_server_name off).
    let ip = addr.ip().to_string();
    let name = u
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| Some(request_host).filter(|h| valid_dns_name(h)));
    let sni = match name {
        Some(n) if u.server_name || u.verify => n.to_string(),
        _ => ip,
    };
    let mut peer = HttpPeer::new(addr, true, sni);
    peer.options.verify_cert = u.verify;
    peer.options.verify_hostname = u.verify;
    peer.options.alpn = if u.protocol.h2() { ALPN::H2 } else { ALPN::H1 };
    if let Some(ca) = &u.ca {
        peer.options.ca = Some(ca.clone());
    }
    if let Some(cc) = &u.client_cert {
        peer.client_cert_key = Some(cc.clone());
    }
    peer
}

fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.parse::<std::net::IpAddr>().is_err()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:8443".parse().unwrap()
    }

    #[test]
    fn https_defaults_send_no_sni_and_skip_verification() {
        let u = UpstreamTls {
            protocol: BackendProtocol::Https,
            ..Default::default()
        };
        let p = upstream_peer(addr(), &u, "app.example.com", false);
        assert_eq!(p.sni, "127.0.0.1");
        assert!(!p.options.verify_cert);
        assert!(p.is_tls());
    }

    #[test]
    fn verify_uses_the_name() {
        let u = UpstreamTls {
            protocol: BackendProtocol::Grpcs,
            verify: true,
            name: Some("backend.internal".into()),
            ..Default::default()
        };
        let p = upstream_peer(addr(), &u, "app.example.com", false);
        assert_eq!(p.sni, "backend.internal");
        assert!(p.options.verify_cert && p.options.verify_hostname);
        assert_eq!(p.options.alpn, ALPN::H2);
        let u = UpstreamTls {
            protocol: BackendProtocol::Https,
            server_name: true,
            ..Default::default()
        };
        assert_eq!(
            upstream_peer(addr(), &u, "app.example.com", false).sni,
            "app.example.com"
        );
    }

    #[test]
    fn auto_http_follows_the_client_scheme() {
        let u = UpstreamTls {
            protocol: BackendProtocol::AutoHttp,
            ..Default::default()
        };
        assert!(!upstream_peer(addr(), &u, "h", false).is_tls());
        let p = upstream_peer(addr(), &u, "h", true);
        assert!(p.is_tls());
        assert_eq!(p.options.alpn, ALPN::H1);
    }

    #[test]
    fn grpc_is_h2c() {
        let u = UpstreamTls {
            protocol: BackendProtocol::Grpc,
            ..Default::default()
        };
        let p = upstream_peer(addr(), &u, "h", false);
        assert!(!p.is_tls());
        assert_eq!(p.options.alpn, ALPN::H2);
    }
}

/// The client certificate of this connection, as checked after its handshake.
pub fn client_cert(session: &Session) -> Option<&crate::tls::ClientCert> {
    let digest = session.digest()?.ssl_digest.as_ref()?;
    digest.extension.get::<crate::tls::ClientCert>()
}

/// What a host with `auth-tls-*` decides for a request (nginx's `ssl_verify_client`, checked
/// before any location as nginx does).
#[derive(Debug, PartialEq, Eq)]
pub enum ClientCertCheck {
    /// Proxy, with these headers set upstream (`ssl-client-*`).
    Pass(Vec<(http::HeaderName, http::HeaderValue)>),
    /// Answer with this status.
    Refuse(u16),
    /// `auth-tls-error-page`.
    Redirect(String),
}

/// The client-certificate check of `host` for a request on this connection.
pub fn client_cert_check(
    table: &RouteTable,
    host: &str,
    cert: Option<&crate::tls::ClientCert>,
) -> Option<ClientCertCheck> {
    use crate::annotations::auth_tls::VerifyClient;
    let ca = table.tls.client_auth_for(host)?;
    if ca.denied.is_some() {
        return Some(ClientCertCheck::Refuse(503));
    }
    // a certificate presented for another SNI name was not checked against this host's CA
    let cert = cert.filter(|c| {
        c.sni
            .as_deref()
            .and_then(|s| table.tls.client_auth_for(s))
            .is_some_and(|other| Arc::ptr_eq(other, ca))
    });
    let verify = match cert.map(|c| &c.verified) {
        None => "NONE".to_string(),
        Some(Ok(())) => "SUCCESS".to_string(),
        Some(Err(why)) => format!("FAILED:{why}"),
    };
    let refuse = |code| match &ca.error_page {
        Some(page) => ClientCertCheck::Redirect(page.to_string()),
        None => ClientCertCheck::Refuse(code),
    };
    let ok = match (ca.mode, cert.map(|c| c.verified.is_ok())) {
        (VerifyClient::Off | VerifyClient::OptionalNoCa, _) => true,
        // plain HTTP never carries a certificate: an `on` host is not served without one
        (VerifyClient::On, None) => false,
        (VerifyClient::Optional, None) => true,
        (_, Some(verified)) => verified,
    };
    if !ok {
        return Some(refuse(400));
    }
    let subject = cert.map_or("", |c| c.subject_dn.as_str());
    if let Some(re) = &ca.match_cn {
        if !re.is_match(subject) {
            return Some(ClientCertCheck::Refuse(403));
        }
    }
    let mut headers = Vec::with_capacity(4);
    let mut push = |name: &'static str, value: &str| {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.push((http::HeaderName::from_static(name), v));
        }
    };
    push("ssl-client-verify", &verify);
    push("ssl-client-subject-dn", subject);
    push(
        "ssl-client-issuer-dn",
        cert.map_or("", |c| c.issuer_dn.as_str()),
    );
    if ca.pass_certificate {
        let mut escaped = String::new();
        if let Some(c) = cert {
            crate::annotations::template::escape_component(&c.pem, &mut escaped);
        }
        push("ssl-client-cert", &escaped);
    }
    Some(ClientCertCheck::Pass(headers))
}
