//! Upstream behaviour: `proxy-connect/read/send-timeout`, `proxy-body-size`,
//! `proxy-next-upstream(-tries,-timeout)`, `upstream-vhost`, `connection-proxy-header`
//! (ingress-nginx `annotations/proxy`, `upstreamvhost`, `connection`). Invalid values fall
//! back to the ConfigMap default with a warning, as ingress-nginx does.

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "proxy-connect-timeout", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "seconds to connect to an endpoint (default 5)" },
    KeySpec { name: "proxy-read-timeout", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "seconds between two reads from the upstream (default 60); 504 when exceeded" },
    KeySpec { name: "proxy-send-timeout", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "seconds between two writes to the upstream (default 60)" },
    KeySpec { name: "proxy-body-size", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Supported, doc: "largest request body (1m; b/k/m/g; 0 = unlimited); 413 before contacting the upstream" },
    KeySpec { name: "proxy-request-buffering", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "on (default): the whole request body is read before the upstream is contacted (over `proxy-body-size`: 413 before the upstream); off: streamed" },
    KeySpec { name: "client-body-buffer-size", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "a buffered request body over this size (8k) is kept in a temporary file instead of memory" },
    KeySpec { name: "proxy-buffer-size", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "largest upstream response head (4k); a larger one is 502 (nginx: \"upstream sent too big header\"); HTTP/1 upstreams" },
    KeySpec { name: "proxy-next-upstream", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Supported, doc: "when to try another endpoint: error timeout invalid_header http_500 http_502 http_503 http_504 http_403 http_404 http_429 non_idempotent off" },
    KeySpec { name: "proxy-next-upstream-tries", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "attempts in total (default 3, 0 = unlimited)" },
    KeySpec { name: "proxy-next-upstream-timeout", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "seconds the retries may take in total (0 = no limit)" },
    KeySpec { name: "upstream-vhost", scope: Scope::Ingress, risk: Risk::Low, support: Support::Differs("a literal host; nginx variables are not expanded"), doc: "Host header sent upstream" },
    KeySpec { name: "proxy-http-version", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "`1.1` (default) or `1.0`: the HTTP version of upstream requests (1.0: `Connection: close`, a new upstream connection per request)" },
    KeySpec { name: "http2-push-preload", scope: Scope::Ingress, risk: Risk::Low, support: Support::Differs("obsolete: accepted and does nothing, with a Warning (browsers dropped HTTP/2 server push; nginx removed it in 1.25.1)"), doc: "HTTP/2 push of the resources in Link preload headers" },
    KeySpec { name: "connection-proxy-header", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "Connection header sent upstream (close or keep-alive)" },
    KeySpec { name: "proxy-redirect-from", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Differs("a literal prefix; a `~` regular expression is refused with a warning (Location unchanged)"), doc: "with proxy-redirect-to: a Location or Refresh URL of an upstream response starting with this text gets it replaced (off or default: unchanged)" },
    KeySpec { name: "proxy-redirect-to", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Supported, doc: "the replacement for proxy-redirect-from (off: unchanged)" },
    KeySpec { name: "proxy-cookie-domain", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Differs("`from to` is accepted (ingress-nginx 1.12+ validation refuses the space, so its value is ignored there)"), doc: "`from to`: a Set-Cookie Domain equal to `from` (case-insensitive, leading dot ignored) becomes `to` (off: unchanged)" },
    KeySpec { name: "proxy-cookie-path", scope: Scope::Ingress, risk: Risk::Medium, support: Support::Differs("`from to` is accepted (ingress-nginx 1.12+ validation refuses the space, so its value is ignored there)"), doc: "`from to`: a Set-Cookie Path starting with `from` gets that prefix replaced by `to` (off: unchanged)" },
];

/// `proxy-redirect-from`/`-to`, `proxy-cookie-domain`, `proxy-cookie-path`: literal text
/// `from` in an upstream response header replaced by `to` (nginx `proxy_redirect`,
/// `proxy_cookie_domain`, `proxy_cookie_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    pub from: String,
    pub to: String,
}

/// `proxy-next-upstream` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    pub invalid_header: bool,
    pub non_idempotent: bool,
    /// Retry on these upstream statuses (http_500, http_502, ...).
    pub statuses: [bool; 7],
}

/// Statuses `proxy-next-upstream` can name, in `NextUpstream::statuses` order.
pub const RETRY_STATUSES: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];

impl NextUpstream {
    /// ingress-nginx's default `error timeout`.
    pub fn default_policy() -> Self {
        NextUpstream {
            error: true,
            timeout: true,
            ..Default::default()
        }
    }

    pub fn retries_status(&self, code: u16) -> bool {
        RETRY_STATUSES
            .iter()
            .position(|c| *c == code)
            .is_some_and(|i| self.statuses[i])
    }

    /// Whether any status triggers a retry.
    pub fn any_status(&self) -> bool {
        self.statuses.iter().any(|s| *s)
    }

    /// Parse a space list; `None` when a token is unknown.
    pub fn parse(v: &str) -> Option<NextUpstream> {
        let mut n = NextUpstream::default();
        for tok in v.split_whitespace() {
            match tok {
                "error" => n.error = true,
                "timeout" => n.timeout = true,
                "invalid_header" => n.invalid_header = true,
                "non_idempotent" => n.non_idempotent = true,
                "off" => return Some(NextUpstream::default()),
                t => {
                    let code: u16 = t.strip_prefix("http_")?.parse().ok()?;
                    let i = RETRY_STATUSES.iter().position(|c| *c == code)?;
                    n.statuses[i] = true;
                }
            }
        }
        Some(n)
    }
}

/// Parsed values; `None` means "the ConfigMap default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyAnnotations {
    pub connect_timeout: Option<u64>,
    pub read_timeout: Option<u64>,
    pub send_timeout: Option<u64>,
    /// Bytes; `Some(0)` = unlimited.
    pub body_size: Option<u64>,
    pub next_upstream: Option<NextUpstream>,
    pub next_upstream_tries: Option<u32>,
    pub next_upstream_timeout: Option<u64>,
    pub upstream_vhost: Option<String>,
    pub connection_header: Option<String>,
    /// `proxy-http-version`: `Some(true)` for 1.0 (`None`: the ConfigMap's).
    pub http10: Option<bool>,
    /// `proxy-request-buffering` on/off.
    pub request_buffering: Option<bool>,
    /// `client-body-buffer-size` in bytes.
    pub body_buffer_size: Option<u64>,
    /// `proxy-buffer-size` in bytes.
    pub buffer_size: Option<u64>,
    /// `proxy-redirect-from` / `-to` as written (`None`: the ConfigMap's); see
    /// [`redirect_rule`].
    pub redirect_from: Option<String>,
    pub redirect_to: Option<String>,
    /// `proxy-cookie-domain` (`from` without its leading dot); `Some(None)` is `off`, `None`
    /// the ConfigMap's.
    pub cookie_domain: Option<Option<Replace>>,
    /// `proxy-cookie-path`, the same way.
    pub cookie_path: Option<Option<Replace>>,
}

/// ingress-nginx's URL characters (`URLIsValidRegex`): letters, digits and `-._~/:,?&=`.
fn url_chars(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

/// `proxy-redirect-from`: `off`, `default` (both leave Location unchanged: with
/// ingress-nginx's `proxy_pass http://upstream_balancer`, nginx's `default` matches nothing) or
/// a URL prefix.
pub fn redirect_from(v: &str) -> Result<String, &'static str> {
    let v = v.trim();
    if matches!(v, "off" | "default") || (!v.starts_with('~') && url_chars(v)) {
        Ok(v.to_string())
    } else {
        Err("a URL prefix (letters, digits and -._~/:,?&=; regular expressions are not supported)")
    }
}

/// `proxy-redirect-to`: `off` or a URL.
pub fn redirect_to(v: &str) -> Result<String, &'static str> {
    let v = v.trim();
    if v == "off" || url_chars(v) {
        Ok(v.to_string())
    } else {
        Err("a URL (letters, digits and -._~/:,?&=)")
    }
}

/// The Location rewrite of `from` and `to` (validated): none when either is off.
pub fn redirect_rule(from: &str, to: &str) -> Option<Replace> {
    if matches!(from, "off" | "default" | "") || matches!(to, "off" | "") {
        return None;
    }
    Some(Replace {
        from: from.to_string(),
        to: to.to_string(),
    })
}

/// `proxy-cookie-domain` / `proxy-cookie-path`: `off` (`None`), or `from to`.
pub fn cookie_rewrite(name: &str, v: &str) -> Result<Option<Replace>, &'static str> {
    let v = v.trim();
    if v == "off" {
        return Ok(None);
    }
    let words: Vec<&str> = v.split_whitespace().collect();
    match words[..] {
        [from, to] if url_chars(from) && url_chars(to) && !from.starts_with('~') => {
            let from = if name == "proxy-cookie-domain" {
                from.strip_prefix('.').unwrap_or(from)
            } else {
                from
            };
            Ok(Some(Replace {
                from: from.to_string(),
                to: to.to_string(),
            }))
        }
        _ => Err("off, or two words `from to` (letters, digits and -._~/:,?&=)"),
    }
}

/// `proxy-http-version`: `1.0` (true) or `1.1` (false).
pub fn http_version_is_10(v: &str) -> Result<bool, &'static str> {
    match v.trim() {
        "1.0" => Ok(true),
        "1.1" => Ok(false),
        _ => Err("1.0 or 1.1"),
    }
}

/// One of the keys above as an annotation: `None` (absent or invalid, with a warning) means
/// the ConfigMap's value, as ingress-nginx's proxy parser defaults to it.
fn annotation<T>(
    r: &mut Reader<'_>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, &'static str>,
) -> Option<T> {
    let v = r.get(name)?;
    match parse(v) {
        Ok(t) => Some(t),
        Err(expected) => {
            r.fallback(name, v, expected, "the ConfigMap value");
            None
        }
    }
}

/// nginx size: `^\d+[bkmg]?$`, case-insensitive.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.as_bytes().last()?.to_ascii_lowercase() {
        b'b' => (&v[..v.len() - 1], 1),
        b'k' => (&v[..v.len() - 1], 1024),
        b'm' => (&v[..v.len() - 1], 1024 * 1024),
        b'g' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// nginx's `on`/`off` (case-insensitive, as ingress-nginx validates them).
pub fn parse_on_off(v: &str) -> Option<bool> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("on") {
        Some(true)
    } else if v.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// An nginx size annotation (`zero_ok`: 0 is a valid value); invalid falls back with a warning.
fn size(r: &mut Reader<'_>, name: &str, expected: &str, zero_ok: bool) -> Option<u64> {
    let v = r.get(name)?;
    match parse_size(v) {
        Some(n) if zero_ok || n > 0 => Some(n),
        _ => {
            r.fallback(name, v, expected, "ConfigMap value");
            None
        }
    }
}

fn seconds(r: &mut Reader<'_>, name: &str) -> Option<u64> {
    let v = r.get(name)?;
    match super::parse_int(v) {
        Some(n) if n >= 0 => Some(n as u64),
        _ => {
            r.fallback(name, v, "whole seconds, e.g. 60", "ConfigMap value");
            None
        }
    }
}

pub fn parse(r: &mut Reader<'_>) -> ProxyAnnotations {
    let mut out = ProxyAnnotations {
        connect_timeout: seconds(r, "proxy-connect-timeout"),
        read_timeout: seconds(r, "proxy-read-timeout"),
        send_timeout: seconds(r, "proxy-send-timeout"),
        next_upstream_timeout: seconds(r, "proxy-next-upstream-timeout"),
        ..Default::default()
    };
    out.body_size = size(r, "proxy-body-size", "a size like 8m, 512k or 0", true);
    if let Some(v) = r.get("proxy-request-buffering") {
        match parse_on_off(v) {
            Some(b) => out.request_buffering = Some(b),
            None => r.fallback("proxy-request-buffering", v, "on or off", "ConfigMap value"),
        }
    }
    out.body_buffer_size = size(r, "client-body-buffer-size", "a size like 8k or 1m", true);
    out.buffer_size = size(r, "proxy-buffer-size", "a size like 4k or 16k", false);
    if let Some(v) = r.get("proxy-next-upstream") {
        match NextUpstream::parse(v) {
            Some(n) => out.next_upstream = Some(n),
            None => r.fallback(
                "proxy-next-upstream",
                v,
                "a space list of error timeout invalid_header http_5xx/403/404/429 non_idempotent off",
                "ConfigMap value",
            ),
        }
    }
    if let Some(v) = r.get("proxy-next-upstream-tries") {
        match super::parse_int(v) {
            Some(n) if n >= 0 => out.next_upstream_tries = Some(n.min(u32::MAX as i64) as u32),
            _ => r.fallback("proxy-next-upstream-tries", v, "a count", "ConfigMap value"),
        }
    }
    if let Some(v) = r.get("upstream-vhost") {
        let ok = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if ok {
            out.upstream_vhost = Some(v.to_string());
        } else {
            r.fallback(
                "upstream-vhost",
                v,
                "a host name (nginx variables are not supported)",
                "(client Host)",
            );
        }
    }
    out.redirect_from = annotation(r, "proxy-redirect-from", redirect_from);
    out.redirect_to = annotation(r, "proxy-redirect-to", redirect_to);
    out.cookie_domain = annotation(r, "proxy-cookie-domain", |v| {
        cookie_rewrite("proxy-cookie-domain", v)
    });
    out.cookie_path = annotation(r, "proxy-cookie-path", |v| {
        cookie_rewrite("proxy-cookie-path", v)
    });
    out.http10 = annotation(r, "proxy-http-version", http_version_is_10);
    if r.get("http2-push-preload").and_then(super::parse_bool) == Some(true) {
        r.warn(
            "AnnotationNoEffect",
            format!(
                "{}: HTTP/2 server push is obsolete (browsers dropped it, nginx 1.25.1 removed it): accepted, nothing is pushed",
                r.key("http2-push-preload")
            ),
        );
    }
    if let Some(v) = r.get("connection-proxy-header") {
        match v {
            "close" | "keep-alive" | "upgrade" => out.connection_header = Some(v.to_string()),
            _ => r.fallback(
                "connection-proxy-header",
                v,
                "close, keep-alive or upgrade",
                "(default)",
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("8K"), Some(8192));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("10b"), Some(10));
        for bad in ["", "m", "1.5m", "1mb", "-1", "1 m", "1t"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn next_upstream_lists() {
        let n = NextUpstream::parse("error timeout http_502 non_idempotent").unwrap();
        assert!(n.error && n.timeout && n.non_idempotent && n.retries_status(502));
        assert!(!n.retries_status(503));
        assert_eq!(NextUpstream::parse("off"), Some(NextUpstream::default()));
        assert_eq!(NextUpstream::parse("error bogus"), None);
        assert_eq!(NextUpstream::parse("http_418"), None);
    }

    #[test]
    fn timeouts_fall_back() {
        let (p, d) = reader_with(
            &[
                ("proxy-read-timeout", "1"),
                ("proxy-connect-timeout", "60s"),
            ],
            parse,
        );
        assert_eq!(p.read_timeout, Some(1));
        assert_eq!(p.connect_timeout, None);
        assert_eq!(d.len(), 1);
        let (p, d) = reader_with(
            &[
                ("proxy-body-size", "8m"),
                ("upstream-vhost", "internal.svc"),
            ],
            parse,
        );
        assert_eq!(p.body_size, Some(8 << 20));
        assert_eq!(p.upstream_vhost.as_deref(), Some("internal.svc"));
        assert!(d.is_empty());
        let (p, d) = reader_with(&[("upstream-vhost", "$service_name.svc")], parse);
        assert_eq!(p.upstream_vhost, None);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn location_and_cookie_rewrites() {
        let rep = |f: &str, t: &str| {
            Some(Replace {
                from: f.into(),
                to: t.into(),
            })
        };
        let (p, d) = reader_with(
            &[
                ("proxy-redirect-from", "http://internal:8080/"),
                ("proxy-redirect-to", "https://app.example.com/"),
                ("proxy-cookie-domain", ".internal.svc example.com"),
                ("proxy-cookie-path", "/ /app/"),
            ],
            parse,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            redirect_rule(&p.redirect_from.unwrap(), &p.redirect_to.unwrap()),
            rep("http://internal:8080/", "https://app.example.com/")
        );
        assert_eq!(p.cookie_domain, Some(rep("internal.svc", "example.com")));
        assert_eq!(p.cookie_path, Some(rep("/", "/app/")));
        // off and default change nothing, silently; `to: off` neither
        for (from, to) in [("off", "/x"), ("default", "/x"), ("http://a/", "off")] {
            let (p, d) = reader_with(
                &[("proxy-redirect-from", from), ("proxy-redirect-to", to)],
                parse,
            );
            assert_eq!(d.len(), 0);
            let rule = redirect_rule(&p.redirect_from.unwrap(), &p.redirect_to.unwrap());
            assert_eq!(rule, None, "{from} {to}");
        }
        // absent: the ConfigMap's
        let (p, d) = reader_with(&[("proxy-redirect-to", "/x")], parse);
        assert_eq!((p.redirect_from, d.len()), (None, 0));
        // invalid: a warning each, the ConfigMap's value
        for (k, v) in [
            ("proxy-redirect-from", "~^http://(.*)"),
            ("proxy-redirect-from", "http://x/$request_uri"),
            ("proxy-cookie-path", "/only-one"),
            ("proxy-cookie-path", "/a /b /c"),
            ("proxy-cookie-domain", "a.com b.com;"),
        ] {
            let (p, d) = reader_with(&[(k, v), ("proxy-redirect-to", "/y")], parse);
            assert_eq!(
                (p.redirect_from, p.cookie_path, p.cookie_domain, d.len()),
                (None, None, None, 1),
                "{k}: {v}"
            );
        }
        let (p, d) = reader_with(&[("proxy-cookie-domain", "off")], parse);
        assert_eq!((p.cookie_domain, d.len()), (Some(None), 0));
    }

    #[test]
    fn proxy_http_version_and_push_preload() {
        let (p, d) = reader_with(&[("proxy-http-version", "1.0")], parse);
        assert_eq!((p.http10, d.len()), (Some(true), 0));
        let (p, d) = reader_with(&[("proxy-http-version", "2")], parse);
        assert_eq!((p.http10, d.len()), (None, 1));
        let (_, d) = reader_with(&[("http2-push-preload", "true")], parse);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, "AnnotationNoEffect");
        let (_, d) = reader_with(&[("http2-push-preload", "false")], parse);
        assert!(d.is_empty());
    }
}
