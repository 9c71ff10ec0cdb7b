//! Every ingress-nginx annotation name (v1.15, `docs/user-guide/nginx-configuration/
//! annotations.md` and `annotations-risk.md`), with its risk level and scope. A family module
//! claims a key by declaring it in its own `KEYS`; every catalog key no family claims is
//! reported as not implemented, with the fail mode of [`fail_mode`]. Keys pingress never
//! executes are listed in [`REFUSED`].

use super::{auth, FailMode, KeySpec, Risk, Scope, Support};

const CRITICAL: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "stream-snippet",
    "auth-snippet",
    "modsecurity-snippet",
];

const HIGH: &[&str] = &[
    "server-alias",
    "auth-url",
    "auth-signin",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "mirror-target",
    "mirror-host",
    "modsecurity-transaction-id",
    "proxy-ssl-name",
    "upstream-hash-by",
];

const MEDIUM: &[&str] = &[
    "allowlist-source-range",
    "whitelist-source-range",
    "denylist-source-range",
    "auth-realm",
    "auth-secret",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-proxy-set-headers",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-signin-redirect-param",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "custom-headers",
    "fastcgi-index",
    "fastcgi-params-configmap",
    "opentelemetry-operation-name",
    "proxy-body-size",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-next-upstream",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-ssl-ciphers",
    "proxy-ssl-secret",
    "permanent-redirect",
    "temporal-redirect",
    "app-root",
    "force-ssl-redirect",
    "preserve-trailing-slash",
    "rewrite-target",
    "affinity-mode",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "x-forwarded-prefix",
];

const LOW: &[&str] = &[
    "affinity",
    "affinity-canary-behavior",
    "auth-always-set-cookie",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-method",
    "auth-secret-type",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-verify-depth",
    "auth-type",
    "backend-protocol",
    "canary",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "connection-proxy-header",
    "cors-allow-credentials",
    "cors-max-age",
    "custom-http-errors",
    "default-backend",
    "disable-proxy-intercept-errors",
    "enable-access-log",
    "enable-cors",
    "enable-global-auth",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "from-to-www-redirect",
    "http2-push-preload",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rate",
    "limit-rate-after",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "load-balance",
    "mirror-request-body",
    "opentelemetry-trust-incoming-span",
    "permanent-redirect-code",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-connect-timeout",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-ssl-protocols",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "satisfy",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-ciphers",
    "ssl-passthrough",
    "ssl-prefer-server-ciphers",
    "ssl-redirect",
    "temporal-redirect-code",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-vhost",
];

/// Keys never executed, with the reason (the Ingress is refused).
pub const REFUSED: &[(&str, &str)] = &[
    (
        "configuration-snippet",
        "raw nginx configuration is never executed",
    ),
    (
        "server-snippet",
        "raw nginx configuration is never executed",
    ),
    (
        "stream-snippet",
        "raw nginx configuration is never executed",
    ),
    ("auth-snippet", "raw nginx configuration is never executed"),
    ("fastcgi-index", "FastCGI backends are not supported"),
    (
        "fastcgi-params-configmap",
        "FastCGI backends are not supported",
    ),
];

/// Not-implemented keys that are ignored with a Warning, each with why ignoring it changes no
/// one's access and no routing target.
const IGNORED: &[(&str, &str)] = &[
    (
        "proxy-buffering",
        "buffering only; Pingora streams responses",
    ),
    ("proxy-buffers-number", "buffer sizing only"),
    ("proxy-busy-buffers-size", "buffer sizing only"),
    ("proxy-max-temp-file-size", "buffer sizing only"),
    ("enable-opentelemetry", "tracing only"),
    ("opentelemetry-operation-name", "tracing only"),
    ("opentelemetry-trust-incoming-span", "tracing only"),
    ("enable-rewrite-log", "logging only"),
    (
        "proxy-ssl-ciphers",
        "rustls offers only its safe default cipher suites",
    ),
    ("proxy-ssl-protocols", "rustls offers only TLS 1.2 and 1.3"),
    (
        "proxy-ssl-verify-depth",
        "rustls verifies the whole chain against the proxy-ssl-secret CA",
    ),
    (
        "ssl-ciphers",
        "rustls offers only its safe default cipher suites",
    ),
    (
        "ssl-prefer-server-ciphers",
        "rustls offers only its safe default cipher suites",
    ),
    // the WAF keys without the `waf` feature (with it, annotations/modsecurity.rs reads them)
    (
        "enable-modsecurity",
        "WAF rules not evaluated; detection-only in ingress-nginx too",
    ),
    (
        "enable-owasp-core-rules",
        "WAF rules not evaluated; detection-only in ingress-nginx too",
    ),
    ("modsecurity-transaction-id", "WAF logging only"),
];

/// The fail mode of a catalog key that no family implements. Security keys fail closed
/// whatever the tables say; a key with no written reason to be ignored is left out (a test
/// keeps that list empty).
pub fn fail_mode(name: &str) -> FailMode {
    if auth::is_security_key(name) {
        return FailMode::FailClosed;
    }
    match name {
        "modsecurity-snippet" => FailMode::LeaveOutIfWafBlocking,
        _ => match IGNORED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => FailMode::Ignore(why),
            None => FailMode::LeaveOut,
        },
    }
}

fn scope_of(name: &str) -> Scope {
    const HOST: &[&str] = &[
        "server-alias",
        "server-snippet",
        "ssl-ciphers",
        "ssl-prefer-server-ciphers",
        "ssl-passthrough",
        "app-root",
        "from-to-www-redirect",
        "use-regex",
    ];
    const SERVICE: &[&str] = &[
        "load-balance",
        "upstream-hash-by",
        "upstream-hash-by-subset",
        "upstream-hash-by-subset-size",
        "service-upstream",
        "affinity",
        "affinity-mode",
        "affinity-canary-behavior",
    ];
    if HOST.contains(&name) || name.starts_with("auth-tls-") || name.starts_with("proxy-ssl-") {
        Scope::Host
    } else if SERVICE.contains(&name)
        || name.starts_with("session-cookie-")
        || name.starts_with("canary")
    {
        Scope::Service
    } else {
        Scope::Ingress
    }
}

/// Catalog entries, as key specs (not implemented, or refused).
pub fn entries() -> impl Iterator<Item = KeySpec> {
    let levels: [(&'static [&'static str], Risk); 4] = [
        (CRITICAL, Risk::Critical),
        (HIGH, Risk::High),
        (MEDIUM, Risk::Medium),
        (LOW, Risk::Low),
    ];
    levels.into_iter().flat_map(|(names, risk)| {
        names.iter().map(move |&name| KeySpec {
            name,
            scope: scope_of(name),
            risk,
            support: match REFUSED.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => Support::Refused(why),
                None => Support::NotImplemented(fail_mode(name)),
            },
            doc: "",
        })
    })
}

/// Risk of a catalog key (family modules use it so their table agrees with ingress-nginx).
pub fn risk_of(name: &str) -> Risk {
    entries()
        .find(|k| k.name == name)
        .map(|k| k.risk)
        .unwrap_or(Risk::Low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::all_keys;

    fn not_implemented() -> impl Iterator<Item = (&'static str, FailMode)> {
        all_keys().iter().filter_map(|k| match k.support {
            Support::NotImplemented(m) => Some((k.name, m)),
            _ => None,
        })
    }

    #[test]
    fn every_security_key_fails_closed_unless_implemented() {
        let family: Vec<&str> = entries()
            .map(|k| k.name)
            .filter(|n| auth::is_security_key(n))
            .collect();
        assert!(family.contains(&"auth-url") && family.contains(&"satisfy"));
        assert!(family.len() >= 25, "{family:?}");
        for name in family {
            let k = all_keys().iter().find(|k| k.name == name).unwrap();
            match k.support {
                Support::NotImplemented(m) => assert_eq!(m, FailMode::FailClosed, "{name}"),
                // implemented or never executed (the Ingress is refused): both safe
                Support::Supported | Support::Differs(_) | Support::Refused(_) => {}
            }
        }
    }

    #[test]
    fn every_ignored_key_has_a_written_reason_and_none_falls_to_the_default() {
        for (name, m) in not_implemented() {
            match m {
                FailMode::Ignore(why) => assert!(why.len() > 8, "{name}"),
                FailMode::LeaveOut => panic!("{name} has no fail mode written down"),
                _ => {}
            }
        }
        // the table names only real, not-implemented catalog keys
        for (name, _) in IGNORED {
            // the WAF keys are listed for a build without the engine
            let waf = crate::annotations::modsecurity::KEYS
                .iter()
                .any(|k| k.name == *name);
            if waf && crate::waf::AVAILABLE {
                continue;
            }
            assert!(
                not_implemented().any(|(n, _)| n == *name),
                "{name} is listed as ignored but is implemented or unknown"
            );
        }
    }
}
