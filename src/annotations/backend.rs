//! Backend selection: `service-upstream`, `server-alias`, `default-backend`,
//! `custom-http-errors` (ingress-nginx `serviceupstream`, `alias`, `defaultbackend`,
//! `customhttperrors`). An invalid custom-http-errors list makes the Ingress invalid, as in
//! ingress-nginx; the others fall back with a warning.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "service-upstream", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "proxy to the Service ClusterIP instead of the endpoints (oldest Ingress of the Service decides)" },
    KeySpec { name: "server-alias", scope: Scope::Host, risk: Risk::High, support: Support::Differs("exact and *.wildcard names only; regex aliases are refused with a warning"), doc: "extra host names served like the Ingress's hosts" },
    KeySpec { name: "default-backend", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "Service (same namespace, first port) used when the route has no ready endpoints and for custom-http-errors" },
    KeySpec { name: "disable-proxy-intercept-errors", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "pass upstream errors through even when custom-http-errors lists them (default: the ConfigMap key, false)" },
    KeySpec { name: "custom-http-errors", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "upstream statuses replaced by the default backend's answer (X-Code, X-Format, X-Original-URI, ... headers)" },
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendAnnotations {
    pub service_upstream: Option<bool>,
    pub server_alias: Vec<String>,
    pub default_backend: Option<String>,
    pub custom_http_errors: Vec<u16>,
    /// `disable-proxy-intercept-errors`, when set.
    pub disable_intercept: Option<bool>,
}

fn is_dns1035(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !v.ends_with('-')
}

pub fn parse(r: &mut Reader<'_>) -> BackendAnnotations {
    let mut out = BackendAnnotations::default();
    if r.get("service-upstream").is_some() {
        out.service_upstream = Some(r.bool_or("service-upstream", false));
    }
    if let Some(v) = r.get("server-alias") {
        for alias in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let alias = alias.to_ascii_lowercase();
            if crate::values::check_host(&alias).is_ok() {
                out.server_alias.push(alias);
            } else {
                r.warn(
                    "InvalidAnnotationValue",
                    format!(
                        "{}: alias {alias:?} is not a host name (regex aliases are not supported); ignored",
                        r.key("server-alias")
                    ),
                );
            }
        }
    }
    if let Some(v) = r.get("default-backend") {
        if is_dns1035(v) {
            out.default_backend = Some(v.to_string());
        } else {
            r.fallback(
                "default-backend",
                v,
                "a Service name in the Ingress namespace",
                "(none)",
            );
        }
    }
    if r.get("disable-proxy-intercept-errors").is_some() {
        out.disable_intercept = Some(r.bool_or("disable-proxy-intercept-errors", false));
    }
    if let Some(v) = r.get("custom-http-errors") {
        let mut codes = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match super::parse_int(item) {
                Some(c) if (400..=599).contains(&c) => codes.push(c as u16),
                _ => {
                    r.reject(
                        "custom-http-errors",
                        v,
                        "a comma list of status codes 400-599",
                    );
                    return out;
                }
            }
        }
        codes.sort_unstable();
        codes.dedup();
        out.custom_http_errors = codes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::{reader_with, rejects};

    #[test]
    fn values() {
        let (b, d) = reader_with(
            &[
                ("service-upstream", "true"),
                (
                    "server-alias",
                    "Alias.example.com, *.alt.example.com, ~^re$",
                ),
                ("default-backend", "errors"),
                ("custom-http-errors", "503,404 ,503"),
            ],
            parse,
        );
        assert_eq!(b.service_upstream, Some(true));
        assert_eq!(
            b.server_alias,
            vec!["alias.example.com", "*.alt.example.com"]
        );
        assert_eq!(b.default_backend.as_deref(), Some("errors"));
        assert_eq!(b.custom_http_errors, vec![404, 503]);
        assert_eq!(d.len(), 1);
        assert!(rejects(&[("custom-http-errors", "200")], parse));
        assert!(rejects(&[("custom-http-errors", "5xx")], parse));
    }
}
