//! How to talk to the upstream: `backend-protocol` and the `proxy-ssl-*` family.
//!
//! ingress-nginx semantics: `backend-protocol` is upper-cased and must be one of HTTP, HTTPS,
//! GRPC, GRPCS, AUTO_HTTP (an invalid value falls back to HTTP with a warning); FCGI and AJP
//! backends are refused (the Ingress is left out) because pingress does not speak them.
//! `proxy-ssl-verify` and `proxy-ssl-server-name` take `on`/`off` (default off); an invalid
//! value keeps off with a warning. `proxy-ssl-secret` is `namespace/name`; compile resolves it.
//! `proxy-ssl-verify-depth`, `proxy-ssl-protocols` and `proxy-ssl-ciphers` are not implemented
//! (the catalog reports them).

use super::{KeySpec, Reader, Risk, Scope, Support};

/// `backend-protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    #[default]
    Http,
    Https,
    /// HTTP/2 cleartext with prior knowledge.
    Grpc,
    /// HTTP/2 over TLS.
    Grpcs,
    /// ingress-nginx `proxy_pass $scheme://`: the client's scheme, TLS for a request that
    /// came over TLS (HTTP/1.1 either way).
    AutoHttp,
}

impl BackendProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http => "HTTP",
            BackendProtocol::Https => "HTTPS",
            BackendProtocol::Grpc => "GRPC",
            BackendProtocol::Grpcs => "GRPCS",
            BackendProtocol::AutoHttp => "AUTO_HTTP",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }

    pub fn h2(self) -> bool {
        matches!(self, BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
}

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "backend-protocol",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Differs("FCGI and AJP are refused"),
        doc: "HTTP, HTTPS, GRPC (h2c), GRPCS (h2 over TLS), AUTO_HTTP",
    },
    KeySpec {
        name: "proxy-ssl-verify",
        scope: Scope::Host,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "on: verify the upstream certificate (default off)",
    },
    KeySpec {
        name: "proxy-ssl-name",
        scope: Scope::Host,
        risk: Risk::High,
        support: Support::Differs("with proxy-ssl-verify on, the name is also sent as SNI (rustls verifies the SNI name)"),
        doc: "name verified in (and sent as SNI to) the upstream certificate; default: the request host",
    },
    KeySpec {
        name: "proxy-ssl-server-name",
        scope: Scope::Host,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "on: send SNI to the upstream (default off)",
    },
    KeySpec {
        name: "proxy-ssl-secret",
        scope: Scope::Host,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "namespace/name of a Secret with ca.crt (trust) and optionally tls.crt/tls.key (client certificate)",
    },
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsAnnotations {
    pub protocol: BackendProtocol,
    pub verify: bool,
    pub name: Option<String>,
    pub server_name: bool,
    /// Raw `proxy-ssl-secret` value (`namespace/name`), resolved by compile.
    pub secret: Option<String>,
}

fn on_off(r: &mut Reader<'_>, name: &str) -> bool {
    match r.get(name) {
        None | Some("off") => false,
        Some("on") => true,
        Some(v) => {
            r.fallback(name, v, "on or off", "off");
            false
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub fn parse(r: &mut Reader<'_>) -> UpstreamTlsAnnotations {
    let protocol = match r.get("backend-protocol") {
        None => BackendProtocol::Http,
        Some(v) => match v.to_ascii_uppercase().as_str() {
            "HTTP" => BackendProtocol::Http,
            "HTTPS" => BackendProtocol::Https,
            "GRPC" => BackendProtocol::Grpc,
            "GRPCS" => BackendProtocol::Grpcs,
            "AUTO_HTTP" => BackendProtocol::AutoHttp,
            "FCGI" | "AJP" => {
                r.reject(
                    "backend-protocol",
                    v,
                    "HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP (pingress does not speak FastCGI or AJP to backends)",
                );
                BackendProtocol::Http
            }
            _ => {
                r.fallback(
                    "backend-protocol",
                    v,
                    "HTTP, HTTPS, GRPC, GRPCS or AUTO_HTTP",
                    "HTTP",
                );
                BackendProtocol::Http
            }
        },
    };
    let name = match r.get("proxy-ssl-name") {
        Some(n) if valid_name(n) => Some(n.to_ascii_lowercase()),
        Some(n) => {
            r.fallback("proxy-ssl-name", n, "a DNS name", "the request host");
            None
        }
        None => None,
    };
    UpstreamTlsAnnotations {
        protocol,
        verify: on_off(r, "proxy-ssl-verify"),
        name,
        server_name: on_off(r, "proxy-ssl-server-name"),
        secret: r.get("proxy-ssl-secret").map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::catalog::risk_of;
    use crate::annotations::test_support::reader_with;
    use crate::diagnostics::Severity;

    /// The parsed value, the reasons of the warnings, and whether the Ingress is rejected.
    fn run(kv: &[(&str, &str)]) -> (UpstreamTlsAnnotations, Vec<String>, bool) {
        let (a, d) = reader_with(kv, parse);
        let rejected = d.iter().any(|d| d.severity == Severity::Rejected);
        let warnings = d.iter().filter(|d| d.severity != Severity::Rejected);
        (
            a,
            warnings.map(|d| d.reason.to_string()).collect(),
            rejected,
        )
    }

    #[test]
    fn protocols() {
        for (v, p) in [
            ("HTTP", BackendProtocol::Http),
            ("https", BackendProtocol::Https),
            ("GRPC", BackendProtocol::Grpc),
            ("grpcs", BackendProtocol::Grpcs),
            ("AUTO_HTTP", BackendProtocol::AutoHttp),
        ] {
            let (a, d, rej) = run(&[("backend-protocol", v)]);
            assert_eq!(a.protocol, p, "{v}");
            assert!(d.is_empty() && !rej);
        }
        let (a, d, rej) = run(&[("backend-protocol", "SPDY")]);
        assert_eq!(a.protocol, BackendProtocol::Http);
        assert_eq!(d, vec!["InvalidAnnotationValue"]);
        assert!(!rej);
        let (_, _, rej) = run(&[("backend-protocol", "FCGI")]);
        assert!(rej);
    }

    #[test]
    fn proxy_ssl() {
        let (a, d, _) = run(&[
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-server-name", "on"),
            ("proxy-ssl-name", "Backend.Example.com"),
            ("proxy-ssl-secret", "ns/ca"),
        ]);
        assert!(d.is_empty());
        assert!(a.verify && a.server_name);
        assert_eq!(a.name.as_deref(), Some("backend.example.com"));
        assert_eq!(a.secret.as_deref(), Some("ns/ca"));
        let (a, d, _) = run(&[("proxy-ssl-verify", "true"), ("proxy-ssl-name", "a b")]);
        assert!(!a.verify && a.name.is_none());
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn risks_agree_with_the_catalog() {
        for k in KEYS {
            assert_eq!(k.risk, risk_of(k.name), "{}", k.name);
        }
    }
}
