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
    KeySpec { name: "connection-proxy-header", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "Connection header sent upstream (close or keep-alive)" },
];

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
    /// `proxy-request-buffering` on/off.
    pub request_buffering: Option<bool>,
    /// `client-body-buffer-size` in bytes.
    pub body_buffer_size: Option<u64>,
    /// `proxy-buffer-size` in bytes.
    pub buffer_size: Option<u64>,
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
}
