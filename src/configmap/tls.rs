//! TLS keys of the controller ConfigMap: redirects (`ssl-redirect`, `force-ssl-redirect`,
//! `http-redirect-code`, `no-tls-redirect-locations`), HSTS (`hsts*`) and the listener's
//! `ssl-protocols`, `ssl-ciphers`, `ssl-session-tickets`. Pure; a bad value keeps the default
//! with a Warning.
//!
//! The listener keys are applied when pingress starts (Pingora builds the rustls server
//! configuration once per listener); a later change is reported and needs a restart.

use rustls::CipherSuite;

use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::values::{parse_bool, parse_int};

/// HSTS settings (ConfigMap `hsts*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hsts {
    pub enabled: bool,
    pub max_age: i64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Hsts {
            enabled: true,
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl Hsts {
    /// The `Strict-Transport-Security` value, `None` when HSTS is off.
    pub fn header_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

/// The keys handled here.
pub const KEYS: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "preserve-trailing-slash",
    "http-redirect-code",
    "no-tls-redirect-locations",
    "hsts",
    "hsts-max-age",
    "hsts-include-subdomains",
    "hsts-preload",
    "ssl-protocols",
    "ssl-ciphers",
    "ssl-session-tickets",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash` (false): the default of the annotation.
    pub preserve_trailing_slash: bool,
    /// 301, 302, 307 or 308 (default 308).
    pub http_redirect_code: u16,
    pub no_tls_redirect_locations: Vec<String>,
    pub hsts: Hsts,
    /// `ssl-protocols` (default `TLSv1.2 TLSv1.3`).
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl-ciphers` mapped to rustls TLS 1.2 suites; `None` = every suite rustls offers
    /// (the ECDHE AES-GCM and CHACHA20 suites of ingress-nginx's default list).
    pub tls12_suites: Option<Vec<CipherSuite>>,
    /// `ssl-session-tickets` (default false; only false is supported).
    pub session_tickets: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            http_redirect_code: 308,
            no_tls_redirect_locations: vec!["/.well-known/acme-challenge".to_string()],
            hsts: Hsts::default(),
            tls12: true,
            tls13: true,
            tls12_suites: None,
            session_tickets: false,
        }
    }
}

/// OpenSSL cipher names -> rustls (ring) TLS 1.2 suites.
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suite names: not governed by `ssl_ciphers` in nginx either; accepted and ignored.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn warn(diags: &mut Vec<Diagnostic>, object: &ObjectRef, reason: &'static str, msg: String) {
    diags.push(Diagnostic::warning(object.clone(), reason, msg));
}

fn bad(diags: &mut Vec<Diagnostic>, object: &ObjectRef, key: &str, value: &str, expected: &str) {
    warn(
        diags,
        object,
        "InvalidConfigMapValue",
        format!("{key}: {value:?} is invalid (expected {expected}); using the default"),
    );
}

/// Parse one key of [`KEYS`] into `c`.
pub fn parse_key(
    c: &mut TlsConfig,
    key: &str,
    value: &str,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) {
    let v = value.trim();
    let set_bool = |into: &mut bool, diags: &mut Vec<Diagnostic>| match parse_bool(v) {
        Some(b) => *into = b,
        None => bad(diags, object, key, value, "true or false"),
    };
    match key {
        "ssl-redirect" => set_bool(&mut c.ssl_redirect, diags),
        "force-ssl-redirect" => set_bool(&mut c.force_ssl_redirect, diags),
        "preserve-trailing-slash" => set_bool(&mut c.preserve_trailing_slash, diags),
        "hsts" => set_bool(&mut c.hsts.enabled, diags),
        "hsts-include-subdomains" => set_bool(&mut c.hsts.include_subdomains, diags),
        "hsts-preload" => set_bool(&mut c.hsts.preload, diags),
        "ssl-session-tickets" => {
            let mut t = false;
            set_bool(&mut t, diags);
            if t {
                warn(
                    diags,
                    object,
                    "ConfigMapValueNotSupported",
                    "ssl-session-tickets: \"true\" is not supported: Pingora 0.9 builds the rustls \
                     server configuration without a ticketer; TLS 1.3 resumption uses the \
                     server-side session cache instead"
                        .into(),
                );
            }
        }
        "hsts-max-age" => match parse_int(v) {
            Some(n) if n >= 0 => c.hsts.max_age = n,
            _ => bad(diags, object, key, value, "a non-negative integer"),
        },
        "http-redirect-code" => match parse_int(v) {
            Some(n @ (301 | 302 | 307 | 308)) => c.http_redirect_code = n as u16,
            _ => bad(diags, object, key, value, "301, 302, 307 or 308"),
        },
        "no-tls-redirect-locations" => {
            c.no_tls_redirect_locations = v
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
        }
        "ssl-protocols" => parse_protocols(c, key, value, object, diags),
        "ssl-ciphers" => parse_ciphers(c, key, value, object, diags),
        _ => {}
    }
}

fn parse_protocols(
    c: &mut TlsConfig,
    key: &str,
    value: &str,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) {
    let (mut t12, mut t13) = (false, false);
    for p in value.split_whitespace() {
        match p {
            "TLSv1.2" => t12 = true,
            "TLSv1.3" => t13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => warn(
                diags,
                object,
                "ConfigMapValueNotSupported",
                format!("{key}: {p} is not supported by rustls and is ignored"),
            ),
            other => warn(
                diags,
                object,
                "InvalidConfigMapValue",
                format!("{key}: unknown protocol {other:?} is ignored"),
            ),
        }
    }
    if !t12 && !t13 {
        bad(diags, object, key, value, "TLSv1.2 and/or TLSv1.3");
        return;
    }
    c.tls12 = t12;
    c.tls13 = t13;
}

fn parse_ciphers(
    c: &mut TlsConfig,
    key: &str,
    value: &str,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) {
    let mut suites = Vec::new();
    for name in value
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        if let Some((_, s)) = SUITES.iter().find(|(n, _)| *n == name) {
            if !suites.contains(s) {
                suites.push(*s);
            }
        } else if TLS13_NAMES.contains(&name) {
            // TLS 1.3 suites are always on, as with nginx's ssl_ciphers
        } else {
            warn(
                diags,
                object,
                "UnknownCipher",
                format!(
                    "{key}: {name:?} is not a cipher rustls offers (supported: {}); ignored",
                    SUITES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(":")
                ),
            );
        }
    }
    if suites.is_empty() {
        warn(
            diags,
            object,
            "InvalidConfigMapValue",
            format!("{key}: {value:?} names no supported TLS 1.2 cipher; using the default"),
        );
        return;
    }
    c.tls12_suites = Some(suites);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kv: &[(&str, &str)]) -> (TlsConfig, Vec<Diagnostic>) {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut c = TlsConfig::default();
        let mut d = Vec::new();
        for (k, v) in kv {
            parse_key(&mut c, k, v, &o, &mut d);
        }
        (c, d)
    }

    #[test]
    fn redirect_and_hsts_keys() {
        let (c, d) = run(&[
            ("ssl-redirect", "false"),
            ("force-ssl-redirect", "true"),
            ("preserve-trailing-slash", "true"),
            ("http-redirect-code", "301"),
            ("no-tls-redirect-locations", "/a, /b"),
            ("hsts-max-age", "10"),
            ("hsts-preload", "true"),
            ("hsts-include-subdomains", "false"),
        ]);
        assert!(d.is_empty(), "{d:?}");
        assert!(!c.ssl_redirect && c.force_ssl_redirect && c.preserve_trailing_slash);
        assert_eq!(c.http_redirect_code, 301);
        assert_eq!(c.no_tls_redirect_locations, vec!["/a", "/b"]);
        assert_eq!(c.hsts.header_value().unwrap(), "max-age=10; preload");
        let (c, d) = run(&[("http-redirect-code", "303"), ("hsts", "maybe")]);
        assert_eq!(c.http_redirect_code, 308);
        assert!(c.hsts.enabled);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn protocols_and_ciphers() {
        let (c, d) = run(&[("ssl-protocols", "TLSv1.3")]);
        assert!(d.is_empty());
        assert!(c.tls13 && !c.tls12);
        let (c, d) = run(&[("ssl-protocols", "TLSv1 TLSv1.2")]);
        assert!(c.tls12 && !c.tls13);
        assert_eq!(d[0].reason, "ConfigMapValueNotSupported");
        let (c, d) = run(&[("ssl-protocols", "TLSv1.1")]);
        assert!(c.tls12 && c.tls13, "kept the default");
        assert_eq!(d.len(), 2);
        let (c, d) = run(&[(
            "ssl-ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256",
        )]);
        assert_eq!(
            c.tls12_suites.unwrap(),
            vec![
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, "UnknownCipher");
        assert!(d[0].message.contains("DHE-RSA-AES128-GCM-SHA256"));
        let (c, d) = run(&[("ssl-ciphers", "RC4-MD5")]);
        assert!(c.tls12_suites.is_none());
        assert_eq!(d.len(), 2);
        let (c, d) = run(&[("ssl-session-tickets", "true")]);
        assert!(!c.session_tickets);
        assert_eq!(d[0].reason, "ConfigMapValueNotSupported");
    }
}
