//! ingress-nginx's access log: the `log-format-upstream` template (default: the `upstreaminfo`
//! line customers parse), with nginx's escaping (`log-format-escape-json`,
//! `log-format-escape-none`). The request path renders its line from borrowed fields straight
//! into a per-thread buffer (no allocation per line, an uncontended lock, no I/O, no wake-up);
//! one writer thread swaps the buffers out every 25 ms and writes them to stdout. A buffer over
//! its cap drops the line and counts it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// ingress-nginx's default `log-format-upstream`.
pub const DEFAULT_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// nginx `escape=default`: `"`, `\`, and bytes < 32 or > 126 as `\xHH`.
    Default,
    /// `escape=json` (`log-format-escape-json`).
    Json,
    /// `escape=none` (`log-format-escape-none`).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    ServerProtocol,
    Scheme,
    Host,
    Status,
    BodyBytesSent,
    BytesSent,
    HttpReferer,
    HttpUserAgent,
    HttpXForwardedFor,
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamStatus,
    ReqId,
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    LocationPath,
    ModsecurityRuleId,
    ModsecurityMsg,
}

const VARS: &[(&str, Var)] = &[
    ("remote_addr", Var::RemoteAddr),
    ("remote_user", Var::RemoteUser),
    ("time_local", Var::TimeLocal),
    ("time_iso8601", Var::TimeIso8601),
    ("msec", Var::Msec),
    ("request", Var::Request),
    ("request_method", Var::RequestMethod),
    ("request_uri", Var::RequestUri),
    ("uri", Var::Uri),
    ("server_protocol", Var::ServerProtocol),
    ("scheme", Var::Scheme),
    ("host", Var::Host),
    ("status", Var::Status),
    ("body_bytes_sent", Var::BodyBytesSent),
    ("bytes_sent", Var::BytesSent),
    ("http_referer", Var::HttpReferer),
    ("http_user_agent", Var::HttpUserAgent),
    ("http_x_forwarded_for", Var::HttpXForwardedFor),
    ("request_length", Var::RequestLength),
    ("request_time", Var::RequestTime),
    ("proxy_upstream_name", Var::ProxyUpstreamName),
    (
        "proxy_alternative_upstream_name",
        Var::ProxyAlternativeUpstreamName,
    ),
    ("upstream_addr", Var::UpstreamAddr),
    ("upstream_response_length", Var::UpstreamResponseLength),
    ("upstream_response_time", Var::UpstreamResponseTime),
    ("upstream_status", Var::UpstreamStatus),
    ("req_id", Var::ReqId),
    ("namespace", Var::Namespace),
    ("ingress_name", Var::IngressName),
    ("service_name", Var::ServiceName),
    ("service_port", Var::ServicePort),
    ("location_path", Var::LocationPath),
    ("modsecurity_rule_id", Var::ModsecurityRuleId),
    ("modsecurity_msg", Var::ModsecurityMsg),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
    /// `$http_<name>`: a request header (`_` in the name is `-`), nginx's generic variable.
    Header(http::HeaderName),
    /// A variable pingress does not know: rendered as `-`.
    Unknown,
}

/// A parsed `log-format-upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    parts: Vec<Part>,
    escape: Escape,
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat::parse(DEFAULT_FORMAT, Escape::Default).0
    }
}

impl LogFormat {
    /// Parse a template; also returns the variables it does not know (rendered as `-`).
    pub fn parse(template: &str, escape: Escape) -> (LogFormat, Vec<String>) {
        let mut parts = Vec::new();
        let mut unknown = Vec::new();
        let mut lit = String::new();
        let b = template.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' {
                let braced = b.get(i + 1) == Some(&b'{');
                let start = if braced { i + 2 } else { i + 1 };
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                if end > start && (!braced || b.get(end) == Some(&b'}')) {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    let name = &template[start..end];
                    let header = name.strip_prefix("http_").and_then(|h| {
                        http::HeaderName::from_bytes(h.replace('_', "-").as_bytes()).ok()
                    });
                    match VARS.iter().find(|(n, _)| *n == name) {
                        Some((_, v)) => parts.push(Part::Var(*v)),
                        None if header.is_some() => {
                            if let Some(h) = header {
                                parts.push(Part::Header(h));
                            }
                        }
                        None => {
                            unknown.push(name.to_string());
                            parts.push(Part::Unknown);
                        }
                    }
                    i = if braced { end + 1 } else { end };
                    continue;
                }
            }
            let ch = template[i..].chars().next().unwrap_or('$');
            lit.push(ch);
            i += ch.len_utf8();
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        (LogFormat { parts, escape }, unknown)
    }

    /// One log line (without the newline).
    #[cfg(test)]
    pub fn render(&self, r: &Record) -> String {
        let mut out = Vec::with_capacity(256);
        self.render_into(&mut out, r);
        // every piece is UTF-8 text or ASCII escapes
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Append one log line (without the newline) to `out`: bytes, not a `String`, so each
    /// character costs a copy and not a UTF-8 encoding (the line is most of the access log's
    /// cost per request).
    pub fn render_into(&self, out: &mut Vec<u8>, r: &Record) {
        out.reserve(LINE_RESERVE);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Unknown => out.push(b'-'),
                Part::Var(v) => self.push_var(out, *v, r),
                Part::Header(h) => self.push_header(out, h, r),
            }
        }
    }

    /// An empty or missing value: `-`, except under `escape=json` and `escape=none`, where
    /// nginx writes nothing (log-format.go: `"my_header2":""`).
    fn push_empty(&self, out: &mut Vec<u8>) {
        if self.escape == Escape::Default {
            out.push(b'-');
        }
    }

    /// `$http_<name>`: every value of the header, joined as nginx joins repeated headers
    /// (`; ` for Cookie, `, ` otherwise).
    fn push_header(&self, out: &mut Vec<u8>, name: &http::HeaderName, r: &Record) {
        let Some(headers) = r.headers else {
            return self.push_empty(out);
        };
        let sep: &[u8] = if name == http::header::COOKIE {
            b"; "
        } else {
            b", "
        };
        let mut any = false;
        for v in headers.get_all(name) {
            let text = String::from_utf8_lossy(v.as_bytes());
            if any {
                out.extend_from_slice(sep);
            }
            escape(out, &text, self.escape);
            any = true;
        }
        if !any {
            self.push_empty(out);
        }
    }

    fn push_var(&self, out: &mut Vec<u8>, v: Var, r: &Record) {
        let text = |out: &mut Vec<u8>, s: &str| {
            if s.is_empty() {
                self.push_empty(out);
            } else {
                escape(out, s, self.escape);
            }
        };
        let secs = |out: &mut Vec<u8>, d: Option<Duration>| match d {
            Some(d) => push_secs(out, d),
            None => out.push(b'-'),
        };
        match v {
            Var::RemoteAddr => match r.remote_addr {
                Some(ip) => out
                    .extend_from_slice(crate::proxy::request::IpText::new(ip).as_str().as_bytes()),
                None => out.push(b'-'),
            },
            Var::RemoteUser => out.push(b'-'),
            Var::TimeLocal => push_time(out, r.time, TimeFormat::Local),
            Var::TimeIso8601 => push_time(out, r.time, TimeFormat::Iso8601),
            Var::Msec => {
                let ms = r
                    .time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let _ = write!(out, "{ms:.3}");
            }
            Var::Request => {
                escape(out, r.method, self.escape);
                out.push(b' ');
                escape(out, r.uri, self.escape);
                out.push(b' ');
                escape(out, r.protocol, self.escape);
            }
            Var::RequestMethod => text(out, r.method),
            Var::RequestUri => text(out, r.uri),
            Var::Uri => text(out, r.uri.split('?').next().unwrap_or("")),
            Var::ServerProtocol => text(out, r.protocol),
            Var::Scheme => out.extend_from_slice(r.scheme.as_bytes()),
            Var::Host => text(out, r.host),
            Var::Status => push_u64(out, r.status.into()),
            Var::BodyBytesSent => push_u64(out, r.body_bytes_sent),
            Var::BytesSent => push_u64(out, r.bytes_sent),
            Var::HttpReferer => text(out, r.referer),
            Var::HttpUserAgent => text(out, r.user_agent),
            Var::HttpXForwardedFor => text(out, r.x_forwarded_for),
            Var::RequestLength => push_u64(out, r.request_length),
            Var::RequestTime => secs(out, Some(r.request_time)),
            Var::ProxyUpstreamName => text(out, r.upstream_name),
            // ingress-nginx sets it to "" (not unset): an empty value prints nothing, not "-"
            Var::ProxyAlternativeUpstreamName if r.alternative_upstream_name.is_empty() => {}
            Var::ProxyAlternativeUpstreamName => text(out, r.alternative_upstream_name),
            Var::UpstreamAddr => {
                if r.upstream_addr.is_empty() {
                    out.push(b'-');
                }
                for (i, a) in r.upstream_addr.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    match a {
                        std::net::SocketAddr::V4(v4) => {
                            out.extend_from_slice(
                                crate::proxy::request::IpText::new((*v4.ip()).into())
                                    .as_str()
                                    .as_bytes(),
                            );
                            out.push(b':');
                            push_u64(out, v4.port().into());
                        }
                        std::net::SocketAddr::V6(_) => {
                            let _ = write!(out, "{a}");
                        }
                    }
                }
            }
            Var::UpstreamResponseLength => match r.upstream_response_length {
                Some(n) => push_u64(out, n),
                None => out.push(b'-'),
            },
            Var::UpstreamResponseTime => secs(out, r.upstream_response_time),
            Var::UpstreamStatus => match r.upstream_status {
                Some(s) => push_u64(out, s.into()),
                None => out.push(b'-'),
            },
            Var::ReqId => text(out, r.request_id),
            Var::Namespace => text(out, r.namespace),
            Var::IngressName => text(out, r.ingress),
            Var::ServiceName => text(out, r.service),
            Var::ServicePort => text(out, r.service_port),
            Var::LocationPath => text(out, r.location_path),
            Var::ModsecurityRuleId => text(out, r.modsecurity_rule_id),
            Var::ModsecurityMsg => text(out, r.modsecurity_msg),
        }
    }
}

/// Room reserved before a line is rendered: the default `upstreaminfo` line of a short request
/// fits, so the buffer grows once per line at most, not once per field.
const LINE_RESERVE: usize = 512;

/// `n` in decimal, without the formatting machinery (several numbers per log line).
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::proxy::request::Decimal::new(n).as_bytes());
}

/// Seconds with millisecond resolution, rounded (nginx's `$request_time`: `1.234`).
fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = u64::from(d.subsec_nanos() + 500_000) / 1_000_000;
    push_u64(out, d.as_secs().saturating_add(ms / 1000));
    let frac = (ms % 1000) as usize;
    // three digits after the point, with leading zeros
    let digits = [
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    out.extend_from_slice(&digits);
}

/// Bytes an escape writes as they are: printable ASCII except `"` and `\\` for nginx's
/// `escape=default`; for `escape=json` also every byte of a multi-byte character.
const fn plain_bytes(json: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 32;
    while b < 256 {
        t[b] = (b <= 126 || json) && b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
}
const PLAIN_DEFAULT: [bool; 256] = plain_bytes(false);
const PLAIN_JSON: [bool; 256] = plain_bytes(true);

fn escape(out: &mut Vec<u8>, s: &str, how: Escape) {
    let plain = match how {
        Escape::None => return out.extend_from_slice(s.as_bytes()),
        Escape::Default => &PLAIN_DEFAULT,
        Escape::Json => &PLAIN_JSON,
    };
    // the plain run at once, then the byte after it escaped (`escape=default` writes each
    // byte of a multi-byte character as `\xHH`, as nginx does)
    let mut rest = s.as_bytes();
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|&b| !plain[usize::from(b)])
            .unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        let Some(&b) = rest.get(run) else {
            break;
        };
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        match (how, b) {
            (Escape::Json, b'"') => out.extend_from_slice(b"\\\""),
            (Escape::Json, b'\\') => out.extend_from_slice(b"\\\\"),
            (Escape::Json, b'\n') => out.extend_from_slice(b"\\n"),
            (Escape::Json, b'\r') => out.extend_from_slice(b"\\r"),
            (Escape::Json, b'\t') => out.extend_from_slice(b"\\t"),
            (Escape::Json, 8) => out.extend_from_slice(b"\\b"),
            (Escape::Json, 12) => out.extend_from_slice(b"\\f"),
            // nginx's ngx_escape_json: upper-case hex
            (Escape::Json, b) => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            (_, b) => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        rest = &rest[run + 1..];
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeFormat {
    Local,
    Iso8601,
}

/// Append `t` (one-second resolution, UTC as ingress-nginx's image logs it). The text of the
/// current second is kept per thread: lines arrive in time order, so formatting runs about
/// once a second instead of once per line.
fn push_time(out: &mut Vec<u8>, t: SystemTime, f: TimeFormat) {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, TimeFormat, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    let Ok(secs) = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
    else {
        out.push(b'-');
        return;
    };
    LAST.with_borrow_mut(|last| {
        if !matches!(last, Some((s, lf, _)) if *s == secs && *lf == f) {
            let text = match jiff::Timestamp::try_from(t) {
                Ok(ts) => ts
                    .strftime(match f {
                        TimeFormat::Local => "%d/%b/%Y:%H:%M:%S +0000",
                        TimeFormat::Iso8601 => "%Y-%m-%dT%H:%M:%S+00:00",
                    })
                    .to_string(),
                Err(_) => "-".into(),
            };
            *last = Some((secs, f, text));
        }
        if let Some((_, _, text)) = last {
            out.extend_from_slice(text.as_bytes());
        }
    });
}

/// Everything a log line may need about one request, borrowed from the request.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub time: SystemTime,
    pub remote_addr: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub uri: &'a str,
    pub protocol: &'static str,
    pub scheme: &'static str,
    pub host: &'a str,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub bytes_sent: u64,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub x_forwarded_for: &'a str,
    pub request_length: u64,
    pub request_time: Duration,
    /// `$proxy_upstream_name`: the route's upstream (the primary's when a canary served).
    pub upstream_name: &'a str,
    /// `$proxy_alternative_upstream_name`: the canary upstream that served, else empty.
    pub alternative_upstream_name: &'a str,
    /// `$location_path`: the Ingress path of the matched location (ingress-nginx's variable).
    pub location_path: &'a str,
    /// Endpoints tried, in order (`$upstream_addr` joins them with ", ").
    pub upstream_addr: &'a [std::net::SocketAddr],
    pub upstream_response_length: Option<u64>,
    pub upstream_response_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    pub request_id: &'a str,
    pub namespace: &'a str,
    pub ingress: &'a str,
    pub service: &'a str,
    pub service_port: &'a str,
    /// `$modsecurity_rule_id` / `$modsecurity_msg` (pingress's): the rule of the request's
    /// ModSecurity intervention (empty without one).
    pub modsecurity_rule_id: &'a str,
    pub modsecurity_msg: &'a str,
    /// The request's headers (`$http_<name>`).
    pub headers: Option<&'a http::HeaderMap>,
}

/// Per-thread line buffers, drained by one writer thread.
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    shards: Vec<Mutex<Vec<u8>>>,
    dropped: AtomicU64,
    closed: AtomicBool,
}

/// Buffers (request threads map onto them round robin; more threads than shards share).
const SHARDS: usize = 16;
/// Bytes one buffer may hold between two drains before lines are dropped.
const SHARD_CAP: usize = 4 << 20;

impl AccessLog {
    /// Start the writer thread on stdout.
    pub fn stdout() -> AccessLog {
        Self::start(std::io::stdout())
    }

    pub fn start<W: Write + Send + 'static>(out: W) -> AccessLog {
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(s, out));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access log writer; access log off");
            shared.closed.store(true, Ordering::Relaxed);
        }
        AccessLog { shared }
    }

    /// Render one line into this thread's buffer; never blocks on I/O.
    pub fn log(&self, format: &LogFormat, r: &Record<'_>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let shard = &self.shared.shards[SHARD.with(|s| *s)];
        let mut buf = match shard.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if buf.len() > SHARD_CAP {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        format.render_into(&mut buf, r);
        buf.push(b'\n');
    }

    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AccessLog {
    /// The writer drains what is buffered, then exits.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

/// How long the writer sleeps between drains. Waking it per line would cost a context switch
/// per request (visible in profiles); draining on a timer batches the lines instead. Lines
/// reach stdout at most this late.
const DRAIN_EVERY: Duration = Duration::from_millis(25);

fn writer<W: Write>(shared: Arc<Shared>, out: W) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut spare = Vec::new();
    let mut reported = 0;
    loop {
        // read before draining: lines logged before `closed` was set are in the buffers
        let closed = shared.closed.load(Ordering::Relaxed);
        let mut wrote = false;
        for shard in &shared.shards {
            {
                let mut buf = match shard.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, &mut spare);
            }
            let _ = out.write_all(&spare);
            spare.clear();
            wrote = true;
        }
        if wrote {
            let _ = out.flush();
        }
        let d = shared.dropped.load(Ordering::Relaxed);
        if d > reported {
            tracing::warn!(
                dropped = d,
                "access log lines dropped: the writer could not keep up"
            );
            reported = d;
        }
        if closed {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: [std::net::SocketAddr; 1] = [std::net::SocketAddr::V4(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 1, 0, 5), 8080),
    )];

    fn rec() -> Record<'static> {
        Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            remote_addr: Some(std::net::Ipv4Addr::new(10, 0, 0, 1).into()),
            method: "GET",
            uri: "/a?b=\"1\"",
            protocol: "HTTP/1.1",
            scheme: "http",
            host: "app.example.com",
            status: 200,
            body_bytes_sent: 12,
            bytes_sent: 120,
            referer: "",
            user_agent: "curl/8",
            x_forwarded_for: "",
            request_length: 80,
            request_time: Duration::from_millis(3),
            upstream_name: "default-web-80",
            alternative_upstream_name: "",
            location_path: "/",
            upstream_addr: &UPSTREAM,
            upstream_response_length: Some(12),
            upstream_response_time: Some(Duration::from_millis(2)),
            upstream_status: Some(200),
            request_id: "abc",
            namespace: "default",
            ingress: "web",
            service: "web",
            service_port: "80",
            modsecurity_rule_id: "",
            modsecurity_msg: "",
            headers: None,
        }
    }

    #[test]
    fn default_escape_numbers_and_seconds_read_as_nginx_writes_them() {
        let esc = |v: &str| {
            let mut out = Vec::new();
            escape(&mut out, v, Escape::Default);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(esc("plain /a?b=c"), "plain /a?b=c");
        assert_eq!(esc(""), "");
        assert_eq!(esc("\"q\" \\ end"), "\\x22q\\x22 \\x5C end");
        assert_eq!(esc("tab\there"), "tab\\x09here");
        // a multi-byte character byte by byte, then the plain rest
        assert_eq!(esc("caf\u{e9}!"), "caf\\xC3\\xA9!");
        assert_eq!(esc("\u{20ac}"), "\\xE2\\x82\\xAC");
        assert_eq!(esc("\x7f~ \u{1}"), "\\x7F~ \\x01");
        // escape=json: JSON string escapes; multi-byte characters and DEL as they are
        let json = |v: &str| {
            let mut out = Vec::new();
            escape(&mut out, v, Escape::Json);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            json("a\"b\\c\nd\re\tf\u{1}g\u{1f}\u{8}\u{c}caf\u{e9}\u{20ac}\x7f"),
            "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001F\\b\\fcaf\u{e9}\u{20ac}\x7f"
        );
        assert_eq!(json(""), "");
        let none = |v: &str| {
            let mut out = Vec::new();
            escape(&mut out, v, Escape::None);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(none("a\"\u{e9}\n"), "a\"\u{e9}\n");
        let tried: [std::net::SocketAddr; 3] = [
            "10.1.0.5:8080".parse().unwrap(),
            "[fd00::1]:443".parse().unwrap(),
            "192.168.100.200:65535".parse().unwrap(),
        ];
        let (f, _) = LogFormat::parse("$upstream_addr $remote_addr", Escape::Default);
        let mut r = rec();
        r.upstream_addr = &tried;
        r.remote_addr = Some("fd00::2".parse().unwrap());
        assert_eq!(
            f.render(&r),
            "10.1.0.5:8080, [fd00::1]:443, 192.168.100.200:65535 fd00::2"
        );
        let num = |n: u64| {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            String::from_utf8(out).unwrap()
        };
        for n in [0, 7, 10, 200, 65535, u64::MAX] {
            assert_eq!(num(n), n.to_string());
        }
        let secs = |d: Duration| {
            let mut out = Vec::new();
            push_secs(&mut out, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(secs(Duration::ZERO), "0.000");
        assert_eq!(secs(Duration::from_micros(1_499)), "0.001");
        assert_eq!(secs(Duration::from_micros(1_500)), "0.002");
        assert_eq!(secs(Duration::from_millis(60_042)), "60.042");
        assert_eq!(secs(Duration::from_micros(9_999_600)), "10.000");
    }

    #[test]
    fn any_request_header_is_a_variable_and_empty_follows_the_escape() {
        let mut h = http::HeaderMap::new();
        h.insert("header1", "Here is \"header1\"".parse().unwrap());
        h.append("x-multi", "a".parse().unwrap());
        h.append("x-multi", "b".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        let mut r = rec();
        r.headers = Some(&h);
        let fmt = "{\"h1\":\"$http_header1\", \"h2\":\"$http_header2\"} $http_x_multi $http_cookie";
        let json = LogFormat::parse(fmt, Escape::Json);
        assert!(json.1.is_empty(), "{:?}", json.1);
        assert_eq!(
            json.0.render(&r),
            "{\"h1\":\"Here is \\\"header1\\\"\", \"h2\":\"\"} a, b a=1; b=2"
        );
        let default = LogFormat::parse(fmt, Escape::Default).0;
        assert_eq!(
            default.render(&r),
            "{\"h1\":\"Here is \\x22header1\\x22\", \"h2\":\"-\"} a, b a=1; b=2"
        );
        let none = LogFormat::parse(fmt, Escape::None).0;
        assert_eq!(
            none.render(&r),
            "{\"h1\":\"Here is \"header1\"\", \"h2\":\"\"} a, b a=1; b=2"
        );
    }

    #[test]
    fn canary_and_location_variables() {
        let mut r = rec();
        r.alternative_upstream_name = "default-web-canary-80";
        r.location_path = "/api";
        let f = LogFormat::parse(
            "[$proxy_upstream_name] [$proxy_alternative_upstream_name] $location_path",
            Escape::Default,
        )
        .0;
        assert_eq!(
            f.render(&r),
            "[default-web-80] [default-web-canary-80] /api"
        );
    }

    #[test]
    fn time_text_follows_the_second_and_the_format() {
        let at = |secs: u64, var: &str| {
            let mut r = rec();
            r.time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            LogFormat::parse(var, Escape::Default).0.render(&r)
        };
        assert_eq!(
            at(1_795_000_000, "$time_local"),
            "18/Nov/2026:11:06:40 +0000"
        );
        assert_eq!(
            at(1_795_000_000, "$time_local"),
            "18/Nov/2026:11:06:40 +0000"
        );
        assert_eq!(
            at(1_795_000_001, "$time_local"),
            "18/Nov/2026:11:06:41 +0000"
        );
        assert_eq!(
            at(1_795_000_001, "$time_iso8601"),
            "2026-11-18T11:06:41+00:00"
        );
        assert_eq!(
            at(1_795_000_001, "$time_local"),
            "18/Nov/2026:11:06:41 +0000"
        );
    }

    #[test]
    fn default_upstreaminfo_line() {
        let line = LogFormat::default().render(&rec());
        assert_eq!(
            line,
            "10.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"GET /a?b=\\x221\\x22 HTTP/1.1\" 200 12 \"-\" \"curl/8\" 80 0.003 [default-web-80] [] 10.1.0.5:8080 12 0.002 200 abc"
        );
    }

    #[test]
    fn json_template_and_unknown_variables() {
        let (f, unknown) = LogFormat::parse(
            r#"{"time": "$time_iso8601", "uri": "$request_uri", "st": $status, "x": "${nope}"}"#,
            Escape::Json,
        );
        assert_eq!(unknown, vec!["nope"]);
        let line = f.render(&rec());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["uri"], "/a?b=\"1\"");
        assert_eq!(v["st"], 200);
        assert_eq!(v["time"], "2026-11-18T11:06:40+00:00");
        assert_eq!(v["x"], "-");
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_are_all_written_whole() {
        let sink = Sink::default();
        let log = Arc::new(AccessLog::start(sink.clone()));
        let f = Arc::new(LogFormat::parse("$status $req_id $request", Escape::Default).0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (log, f) = (log.clone(), f.clone());
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        log.log(&f, &rec());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(log);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            if text.lines().count() == 1000 {
                assert!(text
                    .lines()
                    .all(|l| l == "200 abc GET /a?b=\\x221\\x22 HTTP/1.1"));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} lines",
                text.lines().count()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn writer_writes_lines() {
        let sink = Sink::default();
        let log = AccessLog::start(sink.clone());
        let f = LogFormat::parse("$status $req_id", Escape::Default).0;
        log.log(&f, &rec());
        log.log(&f, &rec());
        drop(log);
        // the writer drains and exits when the sender is gone; wait for both lines (bounded)
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            if text == "200 abc\n200 abc\n" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "got {text:?}");
            std::thread::yield_now();
        }
    }
}
