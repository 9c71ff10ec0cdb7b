//! HTTP->HTTPS redirect annotations: `ssl-redirect`, `force-ssl-redirect`,
//! `preserve-trailing-slash`, and `ssl-passthrough` (with `--enable-ssl-passthrough`).
//!
//! `ssl-redirect` and `force-ssl-redirect` default to the ConfigMap keys of the same name, so
//! they stay `None` here and compile resolves them (`compile::tls`). Invalid booleans fall back
//! to the default with a warning, as ingress-nginx does.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "ssl-redirect",
        scope: Scope::Ingress,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "redirect plain HTTP to HTTPS when the host has TLS (default: ConfigMap ssl-redirect, true)",
    },
    KeySpec {
        name: "force-ssl-redirect",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "redirect plain HTTP to HTTPS even without TLS on the host (default: ConfigMap force-ssl-redirect, false)",
    },
    KeySpec {
        name: "preserve-trailing-slash",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "keep the trailing / of the URI in HTTPS redirects",
    },
    KeySpec {
        name: "ssl-passthrough",
        scope: Scope::Host,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "with --enable-ssl-passthrough: TLS connections for the host (by SNI) go untouched to the backend of its `/` path, which terminates TLS itself; plain HTTP keeps the host's routes; without the flag ignored, as ingress-nginx does",
    },
];

/// The typed values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslAnnotations {
    /// `None`: ConfigMap `ssl-redirect`.
    pub ssl_redirect: Option<bool>,
    /// `None`: ConfigMap `force-ssl-redirect`.
    pub force_ssl_redirect: Option<bool>,
    /// `None`: ConfigMap `preserve-trailing-slash`.
    pub preserve_trailing_slash: Option<bool>,
    /// `ssl-passthrough: "true"` (acted on only with `--enable-ssl-passthrough`).
    pub passthrough: bool,
}

fn opt_bool(r: &mut Reader<'_>, name: &str) -> Option<bool> {
    let v = r.get(name)?;
    match super::parse_bool(v) {
        Some(b) => Some(b),
        None => {
            r.fallback(name, v, "true or false", "(the ConfigMap value)");
            None
        }
    }
}

pub fn parse(r: &mut Reader<'_>) -> SslAnnotations {
    SslAnnotations {
        ssl_redirect: opt_bool(r, "ssl-redirect"),
        force_ssl_redirect: opt_bool(r, "force-ssl-redirect"),
        preserve_trailing_slash: opt_bool(r, "preserve-trailing-slash"),
        passthrough: opt_bool(r, "ssl-passthrough") == Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::catalog::risk_of;
    use crate::annotations::test_support::reader_with;
    use crate::diagnostics::Severity;

    /// The parsed value and the reasons of the warnings (the rejection, if any, left out).
    fn run(kv: &[(&str, &str)]) -> (SslAnnotations, Vec<String>) {
        let (a, d) = reader_with(kv, parse);
        let warnings = d.iter().filter(|d| d.severity != Severity::Rejected);
        (a, warnings.map(|d| d.reason.to_string()).collect())
    }

    #[test]
    fn values_and_fallbacks() {
        let (a, d) = run(&[]);
        assert_eq!(a, SslAnnotations::default());
        assert!(d.is_empty());
        let (a, _) = run(&[
            ("ssl-redirect", "false"),
            ("force-ssl-redirect", "true"),
            ("preserve-trailing-slash", "true"),
        ]);
        assert_eq!(a.ssl_redirect, Some(false));
        assert_eq!(a.force_ssl_redirect, Some(true));
        assert_eq!(a.preserve_trailing_slash, Some(true));
        let (a, d) = run(&[("ssl-redirect", "yes")]);
        assert_eq!(a.ssl_redirect, None);
        assert_eq!(d, vec!["InvalidAnnotationValue"]);
    }

    #[test]
    fn risks_agree_with_the_catalog() {
        for k in KEYS {
            assert_eq!(k.risk, risk_of(k.name), "{}", k.name);
        }
    }
}
