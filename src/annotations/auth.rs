//! The authentication family: basic auth (`auth-type`, `auth-secret`, `auth-secret-type`,
//! `auth-realm`), external auth (`auth-url` and its companions), `satisfy`, and
//! `enable-global-auth` (the opt-out of the ConfigMap's `global-auth-url`).
//!
//! Invariant: an Ingress is never served open because of an auth key. A key pingress does not
//! implement (digest auth, client certificates) is listed in [`AuthAnnotations::fail_closed`]
//! and a value that does not parse in [`AuthAnnotations::invalid`]; either makes every path
//! of the Ingress answer 503 (ingress-nginx's "location denied" for invalid values). The
//! catalog keeps every other `auth-*` key `FailMode::FailClosed` (a test over the whole
//! catalog), so a future key cannot slip through.

use http::{HeaderName, Method};

use super::template::{split_url, Template};
use super::{KeySpec, Reader, Risk, Scope, Support};

const fn key(name: &'static str, risk: Risk, support: Support, doc: &'static str) -> KeySpec {
    KeySpec {
        name,
        scope: Scope::Ingress,
        risk,
        support,
        doc,
    }
}

pub const KEYS: &[KeySpec] = &[
    key("enable-global-auth", Risk::Low, Support::Supported,
        "`\"false\"` takes the Ingress out of the ConfigMap's global-auth-url"),
    key("auth-type", Risk::Low, Support::Differs("`digest` is not implemented: an Ingress asking for it fails closed (503)"),
        "`basic`: HTTP basic authentication against `auth-secret`"),
    key("auth-secret", Risk::Medium, Support::Supported,
        "Secret `name` or `namespace/name` (another namespace needs allow-cross-namespace-resources) holding the users; missing or malformed: 503"),
    key("auth-secret-type", Risk::Low, Support::Supported,
        "`auth-file` (htpasswd under key `auth`; bcrypt, `$apr1$`, `$1$`, `$5$`, `$6$`, crypt, `{SHA}`, `{SSHA}`, `{PLAIN}`) or `auth-map` (one key per user)"),
    key("auth-realm", Risk::Medium, Support::Supported,
        "realm of the `WWW-Authenticate: Basic` challenge"),
    key("auth-url", Risk::High, Support::Supported,
        "external auth subrequest (oauth2-proxy style): 2xx allows, 401/403 answer the client, anything else 500; a `svc.ns[.svc[.cluster.local]]` host goes to the watched Service's endpoints, other hosts through DNS"),
    key("auth-method", Risk::Low, Support::Supported,
        "method of the auth subrequest (GET by default)"),
    key("auth-signin", Risk::High, Support::Supported,
        "a 401 from the auth service becomes a 302 to this URL with `rd=` (the original URL)"),
    key("auth-signin-redirect-param", Risk::Medium, Support::Supported,
        "name of the sign-in redirect parameter (default `rd`)"),
    key("auth-response-headers", Risk::Medium, Support::Supported,
        "headers copied from the auth response to the upstream request"),
    key("auth-request-redirect", Risk::Medium, Support::Supported,
        "value of X-Auth-Request-Redirect sent to the auth service (default the request URI)"),
    key("auth-proxy-set-headers", Risk::Medium, Support::Supported,
        "ConfigMap (same namespace) of headers added to the auth subrequest; missing: 503"),
    key("auth-always-set-cookie", Risk::Low, Support::Supported,
        "the auth response's Set-Cookie is added to every response, not only 2xx/3xx"),
    key("auth-cache-key", Risk::Medium, Support::Supported,
        "turns on the auth response cache, keyed by this value (nginx variables, e.g. `$remote_user$http_authorization`) and the auth URL"),
    key("auth-cache-duration", Risk::Medium, Support::Supported,
        "which auth statuses are cached for how long: `200 202 401 5m` by default; entries `[code|any ...] time`, comma separated"),
    key("auth-keepalive", Risk::Low, Support::Differs("connections to the auth service are always pooled and reused"),
        "keep-alive connections to the auth service"),
    key("auth-keepalive-requests", Risk::Low, Support::Differs("connections to the auth service are always pooled and reused"),
        "requests per auth keep-alive connection"),
    key("auth-keepalive-timeout", Risk::Low, Support::Differs("pooled auth connections idle out after 60 s"),
        "idle time of auth keep-alive connections"),
    key("auth-keepalive-share-vars", Risk::Low, Support::Differs("each request makes its own subrequest; nothing to share"),
        "share subrequest variables between keep-alive requests"),
    key("satisfy", Risk::Low, Support::Supported,
        "`any`: passing either the IP lists or the authentication is enough (nginx `satisfy`)"),
];

/// `auth-type: basic` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicSpec {
    /// `auth-secret` namespace, when given as `ns/name`.
    pub namespace: Option<String>,
    pub secret: String,
    /// `auth-secret-type: auth-map`.
    pub map: bool,
    pub realm: String,
}

/// `auth-url` and companions as written (or the ConfigMap's `global-auth-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSpec {
    pub url: Template,
    pub method: Option<Method>,
    pub signin: Option<Template>,
    pub redirect_param: String,
    pub response_headers: Vec<HeaderName>,
    pub request_redirect: Option<Template>,
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers`: ConfigMap name (same namespace).
    pub proxy_set_headers: Option<String>,
    /// `auth-cache-key` + `auth-cache-duration`.
    pub cache: Option<CacheSpec>,
}

/// The auth response cache of one external auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub key: Template,
    /// First match wins.
    pub valid: Vec<CacheValid>,
}

/// One `auth-cache-duration` entry: statuses (`None` = any) and how long to keep them.
pub type CacheValid = (Option<Vec<u16>>, std::time::Duration);

/// `auth-cache-duration` (nginx `proxy_cache_valid` entries, comma separated): each entry is
/// status codes or `any`, then a time (`5m`, `1h30m`, `30s`); no code means 200, 301 and 302.
pub fn parse_cache_valid(v: &str) -> Result<Vec<CacheValid>, String> {
    let mut out = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let (time, codes) = words
            .split_last()
            .ok_or_else(|| format!("{entry:?} has no time"))?;
        let time = parse_nginx_time(time).ok_or_else(|| format!("{time:?} is not a time"))?;
        let codes = if codes.contains(&"any") {
            None
        } else if codes.is_empty() {
            Some(vec![200, 301, 302])
        } else {
            Some(
                codes
                    .iter()
                    .map(|c| {
                        c.parse::<u16>()
                            .ok()
                            .filter(|c| (100..600).contains(c))
                            .ok_or_else(|| format!("{c:?} is not a status code"))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        out.push((codes, time));
    }
    if out.is_empty() {
        return Err(format!("{v:?} has no entry"));
    }
    Ok(out)
}

/// An nginx time with units: one or more `<number><unit>` (ms, s, m, h, d, w). A bare number
/// is refused so that `"200"` (a status without its time) is an error, as ingress-nginx's
/// validation says.
pub fn parse_nginx_time(v: &str) -> Option<std::time::Duration> {
    if v.is_empty() {
        return None;
    }
    let mut total = 0u64; // milliseconds
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let ms = match rest.chars().next()? {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return None,
            };
            (ms, 1)
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[len..];
    }
    Some(std::time::Duration::from_millis(total))
}

/// The typed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnnotations {
    /// `enable-global-auth` (default true).
    pub enable_global_auth: bool,
    /// Not-implemented security keys present on the Ingress (names without prefix).
    pub fail_closed: Vec<&'static str>,
    /// Invalid auth values (each a message): the Ingress fails closed.
    pub invalid: Vec<String>,
    pub basic: Option<BasicSpec>,
    pub external: Option<ExternalSpec>,
    pub satisfy_any: bool,
}

impl Default for AuthAnnotations {
    fn default() -> Self {
        AuthAnnotations {
            enable_global_auth: true,
            fail_closed: Vec::new(),
            invalid: Vec::new(),
            basic: None,
            external: None,
            satisfy_any: false,
        }
    }
}

impl AuthAnnotations {
    /// Why every path must answer 503, if it must.
    pub fn fail_closed_reason(&self) -> Option<String> {
        let mut parts: Vec<String> = self.fail_closed.iter().map(|k| k.to_string()).collect();
        parts.extend(self.invalid.iter().cloned());
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

pub fn parse(r: &mut Reader<'_>, mut fail_closed: Vec<&'static str>) -> AuthAnnotations {
    let mut invalid = Vec::new();
    // a security key that is there but empty is a mistake, never "no auth"
    for k in ["auth-type", "auth-url", "auth-secret", "auth-signin"] {
        if r.is_set(k) && r.get(k).is_none() {
            invalid.push(format!("{} is empty", r.key(k)));
        }
    }
    let basic = match r.get("auth-type") {
        None => None,
        Some("digest") => {
            fail_closed.push("auth-type");
            r.warn(
                "AnnotationFailClosed",
                format!(
                    "{}: digest is not implemented by this pingress version: every path of this Ingress answers 503 (never served without it)",
                    r.key("auth-type")
                ),
            );
            None
        }
        Some("basic") => match parse_basic(r) {
            Ok(b) => Some(b),
            Err(m) => {
                invalid.push(m);
                None
            }
        },
        Some(other) => {
            invalid.push(format!(
                "{}: {other:?} is not basic or digest",
                r.key("auth-type")
            ));
            None
        }
    };
    let external = match r.get("auth-url") {
        None => None,
        Some(url) => match parse_external(r, url) {
            Ok(e) => Some(e),
            Err(m) => {
                invalid.push(m);
                None
            }
        },
    };
    let satisfy_any = match r.get("satisfy") {
        None | Some("all") => false,
        Some("any") => true,
        Some(v) => {
            r.fallback("satisfy", v, "any or all", "all");
            false
        }
    };
    for m in &invalid {
        r.warn(
            "InvalidAuthAnnotation",
            format!("{m}: every path of this Ingress answers 503 (fail closed, never open)"),
        );
    }
    AuthAnnotations {
        enable_global_auth: r.bool_or("enable-global-auth", true),
        fail_closed,
        invalid,
        basic,
        external,
        satisfy_any,
    }
}

fn parse_basic(r: &mut Reader<'_>) -> Result<BasicSpec, String> {
    let secret = r
        .get("auth-secret")
        .ok_or_else(|| format!("{} is required with auth-type", r.key("auth-secret")))?;
    let (namespace, name) = secret_ref(secret).ok_or_else(|| {
        format!(
            "{}: {secret:?} is not name or namespace/name",
            r.key("auth-secret")
        )
    })?;
    let map = match r.get("auth-secret-type") {
        None | Some("auth-file") => false,
        Some("auth-map") => true,
        Some(v) => {
            return Err(format!(
                "{}: {v:?} is not auth-file or auth-map",
                r.key("auth-secret-type")
            ))
        }
    };
    let realm = r.get("auth-realm").unwrap_or("").to_string();
    if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        return Err(format!(
            "{}: {realm:?} has a quote, backslash or control character",
            r.key("auth-realm")
        ));
    }
    Ok(BasicSpec {
        namespace,
        secret: name,
        map,
        realm,
    })
}

/// A Secret reference: `name` or `namespace/name`.
pub fn secret_ref(v: &str) -> Option<(Option<String>, String)> {
    let (namespace, name) = match v.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n),
        None => (None, v),
    };
    (!name.is_empty() && namespace.as_deref() != Some("") && !name.contains('/'))
        .then(|| (namespace, name.to_string()))
}

/// Parse an auth URL template: http(s), a host, known variables.
pub fn parse_auth_url(url: &str) -> Result<Template, String> {
    let t = Template::parse(url)?;
    // the scheme and the host must be there before any variable is expanded
    let parts = split_url(url)?;
    // ingress-nginx denies the location for a host with an empty label ("invalid url host")
    if parts.host.contains("..") {
        return Err(format!("{url:?} has an invalid host"));
    }
    Ok(t)
}

/// `auth-method`: one of nginx's methods (anchored, as ingress-nginx since CVE-2026-1580).
pub fn parse_method(v: &str) -> Option<Method> {
    match v {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" => {
            Method::from_bytes(v.as_bytes()).ok()
        }
        _ => None,
    }
}

/// A comma list of header names (ingress-nginx: `^[a-zA-Z\d\-_]+$` each).
pub fn parse_header_list(v: &str) -> Result<Vec<HeaderName>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let ok = h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            HeaderName::from_bytes(h.as_bytes())
                .ok()
                .filter(|_| ok)
                .ok_or_else(|| format!("{h:?} is not a header name"))
        })
        .collect()
}

fn parse_external(r: &mut Reader<'_>, url: &str) -> Result<ExternalSpec, String> {
    let always_set_cookie = r.bool_or("auth-always-set-cookie", false);
    let r = &*r;
    let mut spec = external_spec(
        url,
        |k| r.get(&format!("auth-{k}")),
        |k| r.key(&format!("auth-{k}")),
    )?;
    spec.always_set_cookie = always_set_cookie;
    spec.proxy_set_headers = r.get("auth-proxy-set-headers").map(str::to_string);
    Ok(spec)
}

/// The external auth of one source: `get("method")` reads `auth-method` on an Ingress or
/// `global-auth-method` in the ConfigMap, `name` says the key in messages. Every value that
/// does not parse is an `Err` (the source fails closed). `always_set_cookie` and
/// `proxy_set_headers` are left to the caller (their sources differ).
pub fn external_spec<'v>(
    url: &str,
    get: impl Fn(&str) -> Option<&'v str>,
    name: impl Fn(&str) -> String,
) -> Result<ExternalSpec, String> {
    let err = |k: &str, m: String| format!("{}: {m}", name(k));
    let url = parse_auth_url(url).map_err(|m| err("url", m))?;
    let method = match get("method") {
        None => None,
        Some(v) => Some(
            parse_method(v).ok_or_else(|| err("method", format!("{v:?} is not an HTTP method")))?,
        ),
    };
    let signin = match get("signin") {
        None => None,
        Some(v) => Some(parse_auth_url(v).map_err(|m| err("signin", m))?),
    };
    let redirect_param = get("signin-redirect-param").unwrap_or("rd");
    if !redirect_param
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(
            "signin-redirect-param",
            format!("{redirect_param:?} is not a parameter name"),
        ));
    }
    let response_headers = match get("response-headers") {
        None => Vec::new(),
        Some(v) => parse_header_list(v).map_err(|m| err("response-headers", m))?,
    };
    let request_redirect = match get("request-redirect") {
        None => None,
        Some(v) => Some(Template::parse(v).map_err(|m| err("request-redirect", m))?),
    };
    let cache = match get("cache-key") {
        None => None,
        Some(key) => Some(CacheSpec {
            key: Template::parse(key).map_err(|m| err("cache-key", m))?,
            valid: parse_cache_valid(get("cache-duration").unwrap_or("200 202 401 5m"))
                .map_err(|m| err("cache-duration", m))?,
        }),
    };
    Ok(ExternalSpec {
        url,
        method,
        signin,
        redirect_param: redirect_param.to_string(),
        response_headers,
        request_redirect,
        always_set_cookie: false,
        proxy_set_headers: None,
        cache,
    })
}

/// Whether a key belongs to the security family that must fail closed until implemented
/// (ingress-nginx's auth, client-certificate and satisfy annotations).
pub fn is_security_key(name: &str) -> bool {
    name.starts_with("auth-") || name == "satisfy"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    fn run(kv: &[(&str, &str)]) -> (AuthAnnotations, Vec<crate::diagnostics::Diagnostic>) {
        reader_with(kv, |r| parse(r, vec![]))
    }

    #[test]
    fn enable_global_auth_defaults_to_true_and_falls_back_on_junk() {
        let (a, d) = run(&[]);
        assert!(a.enable_global_auth);
        assert!(d.is_empty());
        assert_eq!(a.fail_closed_reason(), None);
        let (a, _) = run(&[("enable-global-auth", "false")]);
        assert!(!a.enable_global_auth);
        let (a, d) = run(&[("enable-global-auth", "nope")]);
        assert!(a.enable_global_auth);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
    }

    #[test]
    fn basic_auth_parses_secret_type_and_realm() {
        let (a, _) = run(&[
            ("auth-type", "basic"),
            ("auth-secret", "other/users"),
            ("auth-secret-type", "auth-map"),
            ("auth-realm", "Authentication Required - foo"),
        ]);
        assert_eq!(
            a.basic,
            Some(BasicSpec {
                namespace: Some("other".into()),
                secret: "users".into(),
                map: true,
                realm: "Authentication Required - foo".into(),
            })
        );
        assert_eq!(a.fail_closed_reason(), None);
    }

    #[test]
    fn invalid_auth_values_fail_closed_never_open() {
        for kv in [
            &[("auth-type", "basic")][..],
            &[("auth-type", "basic"), ("auth-secret", "a/b/c")],
            &[
                ("auth-type", "basic"),
                ("auth-secret", "s"),
                ("auth-secret-type", "file"),
            ],
            &[
                ("auth-type", "basic"),
                ("auth-secret", "s"),
                ("auth-realm", "a\"b"),
            ],
            &[("auth-type", "ntlm"), ("auth-secret", "s")],
            &[("auth-url", "::not a url::")],
            &[("auth-url", "ftp://x/")],
            &[("auth-url", "http://x/$nope")],
            &[("auth-url", "http://x/"), ("auth-method", "get")],
            &[("auth-url", "http://x/"), ("auth-method", "GET\nX")],
            &[("auth-url", "http://x/"), ("auth-signin", "/start")],
            &[
                ("auth-url", "http://x/"),
                ("auth-response-headers", "X-User, X User"),
            ],
            &[
                ("auth-url", "http://x/"),
                ("auth-signin-redirect-param", "r d"),
            ],
        ] {
            let (a, _) = run(kv);
            let why = a.fail_closed_reason().unwrap_or_default();
            assert!(
                why.contains("nginx.ingress") || why.contains("p/"),
                "{kv:?}: {why}"
            );
        }
        let (a, _) = run(&[("auth-type", "digest"), ("auth-secret", "s")]);
        assert_eq!(a.fail_closed, vec!["auth-type"]);
    }

    #[test]
    fn external_auth_parses_every_companion() {
        let (a, d) = run(&[
            ("auth-url", "https://$host/oauth2/auth"),
            ("auth-signin", "https://$host/oauth2/start?x=1"),
            ("auth-signin-redirect-param", "redirect_to"),
            (
                "auth-response-headers",
                "X-Auth-Request-User, X-Auth-Request-Email",
            ),
            ("auth-method", "POST"),
            ("auth-request-redirect", "/landing"),
            ("auth-always-set-cookie", "true"),
            ("auth-proxy-set-headers", "auth-headers"),
        ]);
        assert!(d.is_empty(), "{d:?}");
        let e = a.external.unwrap();
        assert_eq!(e.method, Some(Method::POST));
        assert_eq!(e.redirect_param, "redirect_to");
        assert_eq!(e.response_headers.len(), 2);
        assert_eq!(e.response_headers[1], "x-auth-request-email");
        assert!(e.always_set_cookie);
        assert_eq!(e.proxy_set_headers.as_deref(), Some("auth-headers"));
        assert_eq!(e.request_redirect.unwrap().literal(), Some("/landing"));
        assert!(e.url.literal().is_none());
    }

    #[test]
    fn cache_key_and_durations() {
        use std::time::Duration;
        let (a, _) = run(&[
            ("auth-url", "http://x/"),
            ("auth-cache-key", "$remote_user$http_authorization"),
        ]);
        let c = a.external.unwrap().cache.unwrap();
        assert_eq!(
            c.valid,
            vec![(Some(vec![200, 202, 401]), Duration::from_secs(300))]
        );
        assert_eq!(
            parse_cache_valid("200 10m, 401 30s,any 1h30m").unwrap(),
            vec![
                (Some(vec![200]), Duration::from_secs(600)),
                (Some(vec![401]), Duration::from_secs(30)),
                (None, Duration::from_secs(5400)),
            ]
        );
        assert_eq!(
            parse_cache_valid("5m").unwrap(),
            vec![(Some(vec![200, 301, 302]), Duration::from_secs(300))]
        );
        for bad in ["", "200", "200 5x", "abc 5m", "700 5m", "200 m5"] {
            assert!(parse_cache_valid(bad).is_err(), "{bad}");
        }
        let (a, _) = run(&[("auth-url", "http://x/"), ("auth-cache-key", "$foo")]);
        assert!(a.fail_closed_reason().is_some());
    }

    #[test]
    fn satisfy_any_or_all_and_junk_falls_back_to_all() {
        assert!(run(&[("satisfy", "any")]).0.satisfy_any);
        assert!(!run(&[("satisfy", "all")]).0.satisfy_any);
        let (a, d) = run(&[("satisfy", "some")]);
        assert!(!a.satisfy_any);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
    }
}
