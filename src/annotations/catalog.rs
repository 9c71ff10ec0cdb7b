//! Every ingress-nginx annotation name (v1.15, `docs/user-guide/nginx-configuration/
//! annotations.md` and `annotations-risk.md`), with its risk level and scope. A family module
//! claims a key by declaring it in its own `KEYS`; every catalog key no family claims is
//! reported as not implemented. Keys pingress never executes are listed in [`REFUSED`].

use super::{KeySpec, Risk, Scope, Support};

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
    ("modsecurity-snippet", "ModSecurity is not part of pingress"),
    ("enable-modsecurity", "ModSecurity is not part of pingress"),
    (
        "enable-owasp-core-rules",
        "ModSecurity is not part of pingress",
    ),
    (
        "modsecurity-transaction-id",
        "ModSecurity is not part of pingress",
    ),
    ("fastcgi-index", "FastCGI backends are not supported"),
    (
        "fastcgi-params-configmap",
        "FastCGI backends are not supported",
    ),
];

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
                None => Support::NotImplemented,
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
