//! TLS facts of the route table. Pure values, no I/O.
//!
//! - [`TlsPolicy`] hangs on every [`super::Route`]: the Ingress's `ssl-redirect`,
//!   `force-ssl-redirect`, `preserve-trailing-slash` (already resolved against the ConfigMap
//!   defaults) and how to talk to the upstream (`backend-protocol`, `proxy-ssl-*`).
//! - [`TlsTable`] is the per-host certificate map the SNI resolver reads
//!   (`RouteTable::tls`): exact host, then wildcard (`*.parent`), then the default certificate.
//!   A host listed in `spec.tls` whose Secret is missing or invalid is present with no
//!   certificate: it is served with the default certificate and still counts as TLS-enabled
//!   for `ssl-redirect`, as in ingress-nginx. It never falls through to a wildcard certificate.

use std::collections::HashMap;
use std::sync::Arc;

use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::sign::CertifiedKey;

/// What an HTTP request on the plain listener does before anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// `ssl-redirect` (annotation, else ConfigMap `ssl-redirect`, default true).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect` (annotation, else ConfigMap `force-ssl-redirect`, default false).
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash` (default false).
    pub preserve_trailing_slash: bool,
    /// The Ingress path starts with one of ConfigMap `no-tls-redirect-locations`.
    pub exempt: bool,
}

impl Default for RedirectPolicy {
    fn default() -> Self {
        RedirectPolicy {
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            exempt: false,
        }
    }
}

impl RedirectPolicy {
    /// Never redirects (the default server and the catch-all location).
    pub fn none() -> Self {
        RedirectPolicy {
            ssl_redirect: false,
            ..RedirectPolicy::default()
        }
    }

    /// ingress-nginx `lua_ingress.lua` `redirect_to_https`: exempt locations never redirect;
    /// force-ssl-redirect always does; ssl-redirect does when the host has TLS configured.
    pub fn redirects(&self, host_has_tls: bool) -> bool {
        !self.exempt && (self.force_ssl_redirect || (self.ssl_redirect && host_has_tls))
    }
}

pub use crate::annotations::upstream_tls::BackendProtocol;
pub use crate::configmap::tls::Hsts;

/// How to connect to the upstream (`backend-protocol` and `proxy-ssl-*`).
#[derive(Clone, Default)]
pub struct UpstreamTls {
    pub protocol: BackendProtocol,
    /// `proxy-ssl-verify: on` (default off, like nginx).
    pub verify: bool,
    /// `proxy-ssl-name`: the name verified and sent as SNI; default: the request host.
    pub name: Option<Box<str>>,
    /// `proxy-ssl-server-name: on`: send SNI (default off: no SNI).
    pub server_name: bool,
    /// `ca.crt` of `proxy-ssl-secret`: trust anchors for verification.
    pub ca: Option<Arc<[WrappedX509]>>,
    /// `tls.crt`/`tls.key` of `proxy-ssl-secret`: client certificate for the upstream.
    pub client_cert: Option<Arc<CertKey>>,
    /// Which Secret `ca`/`client_cert` came from (for dumps).
    pub secret: Option<Box<str>>,
    /// `proxy-ssl-secret` could not be used: the routes answer 503 (fail closed).
    pub denied: bool,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl UpstreamTls {
    /// Stable one-line summary for table dumps.
    pub fn describe(&self) -> String {
        let mut s = self.protocol.as_str().to_string();
        if self.protocol.tls() {
            s.push_str(if self.verify {
                " verify=on"
            } else {
                " verify=off"
            });
            if let Some(n) = &self.name {
                s.push_str(&format!(" name={n}"));
            }
            if self.server_name {
                s.push_str(" sni=on");
            }
            if self.denied {
                s.push_str(" denied(503)");
            }
            if let Some(sec) = &self.secret {
                s.push_str(&format!(
                    " secret={sec}(ca={},client={})",
                    self.ca.as_ref().map_or(0, |c| c.len()),
                    self.client_cert.is_some()
                ));
            }
        }
        s
    }
}

/// The TLS part of a route.
#[derive(Clone, Debug, Default)]
pub struct TlsPolicy {
    pub redirect: RedirectPolicy,
    pub upstream: Arc<UpstreamTls>,
}

impl TlsPolicy {
    /// Short suffix for table dumps; empty when everything is at its default.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let r = &self.redirect;
        if !r.ssl_redirect {
            parts.push("ssl-redirect=false".to_string());
        }
        if r.force_ssl_redirect {
            parts.push("force-ssl-redirect".to_string());
        }
        if r.preserve_trailing_slash {
            parts.push("preserve-trailing-slash".to_string());
        }
        if r.exempt {
            parts.push("no-tls-redirect".to_string());
        }
        if self.upstream.protocol != BackendProtocol::Http {
            parts.push(format!("upstream {}", self.upstream.describe()));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", parts.join(", "))
        }
    }
}

/// A certificate served for one or more hosts.
#[derive(Debug)]
pub struct ServedCert {
    pub key: Arc<CertifiedKey>,
    /// `namespace/name` of the Secret.
    pub namespace: Box<str>,
    pub secret: Box<str>,
    /// Subject common name and DNS SANs of the leaf (for dumps and checks).
    pub common_name: Box<str>,
    pub dns_names: Vec<Box<str>>,
    /// notAfter of the leaf, Unix seconds.
    pub not_after: i64,
    /// Serial number of the leaf, lower-case hex.
    pub serial: Box<str>,
}

/// One TLS-enabled host.
#[derive(Debug, Clone)]
pub struct TlsHost {
    /// `None`: the default certificate (Secret missing, invalid, or no secretName).
    pub cert: Option<Arc<ServedCert>>,
}

/// Client certificates a host asks for (`auth-tls-*`).
pub struct ClientAuth {
    /// Verifies a chain against the host's CA (and CRLs); `None` when the CA Secret could not
    /// be used (`denied`).
    pub verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pub mode: crate::annotations::auth_tls::VerifyClient,
    /// `auth-tls-verify-depth`: at most `depth - 1` presented intermediates are used.
    pub depth: u32,
    pub match_cn: Option<regex::Regex>,
    pub pass_certificate: bool,
    pub error_page: Option<Box<str>>,
    /// Why the CA Secret cannot be used: the host answers 503 (fail closed).
    pub denied: Option<Box<str>>,
    /// `namespace/name` of the CA Secret, for logs and dumps.
    pub secret: Box<str>,
}

impl ClientAuth {
    /// Whether the handshake sends a CertificateRequest.
    pub fn asks(&self) -> bool {
        self.mode != crate::annotations::auth_tls::VerifyClient::Off
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("secret", &self.secret)
            .field("mode", &self.mode)
            .field("denied", &self.denied)
            .finish()
    }
}

/// Per-host certificates and the configured default certificate.
#[derive(Debug, Default)]
pub struct TlsTable {
    /// `auth-tls-*` per host (exact names; `*.x` for wildcards).
    pub client_auth: HashMap<Box<str>, Arc<ClientAuth>>,
    /// Looked up on every plain-HTTP request (ssl-redirect): the table's fast hasher.
    exact: super::Map<Box<str>, TlsHost>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: super::Map<Box<str>, TlsHost>,
    /// `--default-ssl-certificate`, when it names a valid Secret.
    pub default_cert: Option<Arc<ServedCert>>,
}

impl TlsTable {
    /// Register `host` (lower-case, `*.x` for wildcards). The first registration with a
    /// certificate wins; returns false when the host already has one.
    pub fn insert(&mut self, host: &str, cert: Option<Arc<ServedCert>>) -> bool {
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, host),
        };
        match map.get_mut(key) {
            Some(existing) if existing.cert.is_some() => false,
            Some(existing) => {
                existing.cert = cert;
                true
            }
            None => {
                map.insert(key.into(), TlsHost { cert });
                true
            }
        }
    }

    /// The host entry as registered (`*.x` for wildcards).
    pub fn get(&self, host: &str) -> Option<&TlsHost> {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.get(parent),
            None => self.exact.get(host),
        }
    }

    /// The entry a server name selects: exact, then `*.parent` (one label). `name` must be
    /// lower-case without port or trailing dot (see [`normalize_name`]).
    pub fn lookup(&self, name: &str) -> Option<&TlsHost> {
        if let Some(h) = self.exact.get(name) {
            return Some(h);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }

    /// The client-certificate settings for a server name (SNI or Host, port allowed): exact,
    /// then `*.parent`.
    pub fn client_auth_for(&self, name: &str) -> Option<&Arc<ClientAuth>> {
        if self.client_auth.is_empty() {
            return None;
        }
        let mut buf = [0u8; 256];
        let name = normalize_name(super::strip_port(name), &mut buf)?;
        if let Some(c) = self.client_auth.get(name) {
            return Some(c);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.client_auth.get(format!("*.{parent}").as_str())
    }

    /// The certificate for an SNI name: the host's own, else `None` (the default certificate).
    pub fn cert_for(&self, sni: &str) -> Option<&Arc<ServedCert>> {
        let mut buf = [0u8; 256];
        let name = normalize_name(sni, &mut buf)?;
        self.lookup(name)?.cert.as_ref()
    }

    /// Whether a request host (as sent, maybe with port) has TLS configured.
    pub fn host_has_tls(&self, host: &str) -> bool {
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return false;
        }
        let mut buf = [0u8; 256];
        let host = super::strip_port(host);
        match normalize_name(host, &mut buf) {
            Some(n) => self.lookup(n).is_some(),
            None => false,
        }
    }

    /// Every served certificate with the host it is served for, sorted by host.
    pub fn served(&self) -> Vec<(String, &Arc<ServedCert>)> {
        let mut v: Vec<(String, &Arc<ServedCert>)> = self
            .exact
            .iter()
            .filter_map(|(h, e)| e.cert.as_ref().map(|c| (h.to_string(), c)))
            .chain(
                self.wildcard
                    .iter()
                    .filter_map(|(h, e)| e.cert.as_ref().map(|c| (format!("*.{h}"), c))),
            )
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stable dump for fixtures.
    pub fn dump(&self) -> String {
        let mut hosts: Vec<(String, &TlsHost)> = self
            .exact
            .iter()
            .map(|(h, e)| (h.to_string(), e))
            .chain(self.wildcard.iter().map(|(h, e)| (format!("*.{h}"), e)))
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        for (h, e) in hosts {
            match &e.cert {
                Some(c) => out.push_str(&format!(
                    "tls {h} -> secret {}/{} (CN {:?}, SAN {:?})\n",
                    c.namespace, c.secret, c.common_name, c.dns_names
                )),
                None => out.push_str(&format!("tls {h} -> default certificate\n")),
            }
        }
        if let Some(c) = &self.default_cert {
            out.push_str(&format!(
                "tls default -> secret {}/{} (CN {:?})\n",
                c.namespace, c.secret, c.common_name
            ));
        }
        out
    }
}

/// Lower-case a DNS name into `buf` (no allocation), dropping one trailing dot. `None` for
/// empty or over-long names or non-ASCII.
pub fn normalize_name<'b>(name: &str, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > buf.len() || !name.is_ascii() {
        return None;
    }
    let dst = &mut buf[..name.len()];
    dst.copy_from_slice(name.as_bytes());
    dst.make_ascii_lowercase();
    std::str::from_utf8(dst).ok()
}

/// The `Location` of an HTTP->HTTPS redirect, as ingress-nginx builds it:
/// `https://<host without port><request_uri>`, the last `/` of the URI removed unless
/// `preserve_trailing_slash` (so `/` gives `https://host`; a URI ending in a query is kept).
pub fn https_location(host: &str, request_uri: &str, preserve_trailing_slash: bool) -> String {
    let host = super::strip_port(host);
    let uri = if preserve_trailing_slash {
        request_uri
    } else {
        request_uri.strip_suffix('/').unwrap_or(request_uri)
    };
    format!("https://{host}{uri}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_decision() {
        let p = RedirectPolicy::default();
        assert!(p.redirects(true));
        assert!(!p.redirects(false));
        let force = RedirectPolicy {
            force_ssl_redirect: true,
            ..Default::default()
        };
        assert!(force.redirects(false));
        let exempt = RedirectPolicy {
            force_ssl_redirect: true,
            exempt: true,
            ..Default::default()
        };
        assert!(!exempt.redirects(true));
        let off = RedirectPolicy {
            ssl_redirect: false,
            ..Default::default()
        };
        assert!(!off.redirects(true));
    }

    #[test]
    fn location_strips_one_trailing_slash() {
        assert_eq!(https_location("a.com:80", "/", false), "https://a.com");
        assert_eq!(https_location("a.com", "/x/", false), "https://a.com/x");
        assert_eq!(https_location("a.com", "/x/", true), "https://a.com/x/");
        assert_eq!(
            https_location("a.com", "/x?q=/", false),
            "https://a.com/x?q="
        );
        assert_eq!(
            https_location("a.com", "/x/?q=1", false),
            "https://a.com/x/?q=1"
        );
        assert_eq!(https_location("[::1]:80", "/p", false), "https://[::1]/p");
    }

    #[test]
    fn hsts_value() {
        assert_eq!(
            Hsts::default().header_value().unwrap(),
            "max-age=31536000; includeSubDomains"
        );
        let h = Hsts {
            max_age: 5,
            include_subdomains: false,
            preload: true,
            enabled: true,
        };
        assert_eq!(h.header_value().unwrap(), "max-age=5; preload");
        let off = Hsts {
            enabled: false,
            ..Default::default()
        };
        assert!(off.header_value().is_none());
    }

    #[test]
    fn host_lookup_exact_then_wildcard_never_through_invalid_exact() {
        let mut t = TlsTable::default();
        t.insert("*.example.com", None);
        t.insert("bad.example.com", None);
        assert!(t.host_has_tls("x.example.com:80"));
        assert!(t.host_has_tls("BAD.example.com."));
        assert!(!t.host_has_tls("example.com"));
        assert!(!t.host_has_tls("a.b.example.com"));
        assert!(t.lookup("bad.example.com").unwrap().cert.is_none());
        assert!(t.cert_for("x.example.com").is_none());
    }
}
