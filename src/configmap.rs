//! The controller ConfigMap (`--configmap ns/name`): ingress-nginx's flat string map parsed
//! into typed settings with ingress-nginx's defaults. Pure. A bad value keeps the default and
//! yields a Warning on the ConfigMap; a key pingress does not implement is reported once.
//!
//! Each feature adds its keys here: a field with its default in `Default`, and a match arm in
//! [`parse`]. The table carries the result (`RouteTable::config`), so a request sees one
//! consistent version.

pub mod inventory;
pub mod tls;

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};

use crate::annotations::access::{parse_cidrs, IpSet};
use crate::annotations::proxy::{self, parse_on_off, parse_size, NextUpstream, Replace};
use crate::annotations::snippet::Kind;
use crate::annotations::Risk;
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::values::{parse_bool, parse_int};

/// ingress-nginx's stream keys (TCP/UDP services, SSL passthrough relays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// `proxy-stream-timeout` (600s): a connection or UDP flow ends after this long idle.
    pub timeout: std::time::Duration,
    /// `proxy-stream-next-upstream` (true): a failed connect tries the next endpoint.
    pub next_upstream: bool,
    /// `proxy-stream-next-upstream-tries` (3; 0: every endpoint).
    pub next_upstream_tries: u32,
    /// `proxy-stream-next-upstream-timeout` (600s; 0: unbounded): time for all the tries.
    pub next_upstream_timeout: std::time::Duration,
    /// `proxy-stream-responses` (1): UDP answers per flow.
    pub responses: u32,
    /// `log-format-stream` (shared: every stream connection keeps it until its log line).
    pub log_format: std::sync::Arc<str>,
    /// `disable-stream-access-log` (false).
    pub disable_access_log: bool,
}

/// ingress-nginx's default `log-format-stream`.
pub const DEFAULT_LOG_FORMAT_STREAM: &str =
    "[$remote_addr] [$time_local] $protocol $status $bytes_sent $bytes_received $session_time";

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            timeout: std::time::Duration::from_secs(600),
            next_upstream: true,
            next_upstream_tries: 3,
            next_upstream_timeout: std::time::Duration::from_secs(600),
            responses: 1,
            log_format: DEFAULT_LOG_FORMAT_STREAM.into(),
            disable_access_log: false,
        }
    }
}

/// An nginx time: a bare number is seconds, else `<n><unit>`... (ms, s, m, h, d).
fn nginx_time(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(n));
    }
    crate::annotations::auth::parse_nginx_time(v)
}

/// A ConfigMap snippet: its text (what equality compares) and its program.
#[derive(Debug, Clone)]
pub struct ConfigSnippet {
    pub text: Box<str>,
    pub program: std::sync::Arc<crate::annotations::snippet::Program>,
}

impl PartialEq for ConfigSnippet {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for ConfigSnippet {}

/// ModSecurity for every location (nginx.tmpl's http block): the default configuration, or the
/// ConfigMap's `modsecurity-snippet` in its place, then the CRS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WafConfig {
    /// `enable-modsecurity` (false).
    pub enable: bool,
    /// `enable-owasp-modsecurity-crs` (false).
    pub crs: bool,
    /// `modsecurity-snippet` as written, checked: `Err` holds why pingress refuses it (every
    /// location it would cover then answers 503, never uninspected).
    pub snippet: Option<Result<Box<str>, Box<str>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `annotations-risk-level` (default High): annotations above it make an Ingress invalid.
    pub annotations_risk_level: Risk,
    /// `allow-snippet-annotations` (default false): `configuration-snippet` and
    /// `server-snippet` are considered only with it and `annotations-risk-level: Critical`.
    pub allow_snippet_annotations: bool,
    /// `server-snippet` / `location-snippet`: the operator's snippets for every server /
    /// location (not gated by allow-snippet-annotations, as in ingress-nginx).
    pub server_snippet: Option<ConfigSnippet>,
    pub location_snippet: Option<ConfigSnippet>,
    /// TCP/UDP services and SSL passthrough (nginx's stream block).
    pub stream: StreamConfig,
    /// `enable-modsecurity`, `enable-owasp-modsecurity-crs`, `modsecurity-snippet`.
    pub waf: WafConfig,
    /// `annotation-value-word-blocklist`: words no annotation value may contain.
    pub annotation_value_word_blocklist: Vec<String>,
    /// `limit-req-status-code` (503).
    pub limit_req_status_code: u16,
    /// `limit-conn-status-code` (503).
    pub limit_conn_status_code: u16,
    /// `proxy-connect-timeout` / `-read-` / `-send-` in seconds (5 / 60 / 60).
    pub proxy_connect_timeout: u64,
    pub proxy_read_timeout: u64,
    pub proxy_send_timeout: u64,
    /// `proxy-body-size` in bytes (1m); 0 = unlimited.
    pub proxy_body_size: u64,
    /// `proxy-request-buffering` (on): read the whole request body before the upstream is
    /// contacted.
    pub proxy_request_buffering: bool,
    /// `client-body-buffer-size` (8k): a buffered body over it goes to a temporary file.
    pub client_body_buffer_size: u64,
    /// `proxy-next-upstream` ("error timeout"), `-tries` (3), `-timeout` (0 = none).
    pub proxy_next_upstream: NextUpstream,
    pub proxy_next_upstream_tries: u32,
    pub proxy_next_upstream_timeout: u64,
    /// `retry-non-idempotent` (false).
    pub retry_non_idempotent: bool,
    /// `service-upstream` (false).
    pub service_upstream: bool,
    /// `relative-redirects` (false): nginx `absolute_redirect off` for every location.
    pub relative_redirects: bool,
    /// `server-tokens` (false): a `Server: pingress/<version>` header instead of none.
    pub server_tokens: bool,
    /// `allow-backend-server-header` (false): with server-tokens, the upstream's own Server
    /// header is passed instead of pingress's (nginx `proxy_pass_header Server`).
    pub allow_backend_server_header: bool,
    /// `hide-headers`: upstream response headers never passed to clients (nginx
    /// `proxy_hide_header`).
    pub hide_headers: Vec<http::HeaderName>,
    /// `proxy-add-original-uri-header` (false): `X-Original-URI: $request_uri` upstream.
    pub proxy_add_original_uri_header: bool,
    /// `generate-request-id` (true): a request without X-Request-ID gets one.
    pub generate_request_id: bool,
    /// `enable-underscores-in-headers` (false) and `ignore-invalid-headers` (true): with both
    /// defaults, request headers whose name has an underscore are dropped, as nginx does.
    pub enable_underscores_in_headers: bool,
    pub ignore_invalid_headers: bool,
    /// `upstream-keepalive-timeout` (60 s): how long an idle upstream connection is kept.
    pub upstream_keepalive_timeout: std::time::Duration,
    /// `upstream-keepalive-connections` (320 per worker): idle upstream connections kept per
    /// proxy thread (read at start).
    pub upstream_keepalive_connections: usize,
    /// `use-http2` (true): HTTP/2 offered over TLS by ALPN (read at start).
    pub use_http2: bool,
    /// `http2-max-concurrent-streams` (128) per client connection (read at start).
    pub http2_max_concurrent_streams: u32,
    /// `proxy-http-version` ("1.1"): true for "1.0", the default of the annotation.
    pub proxy_http10: bool,
    /// `strict-validate-path-type` (true): Exact and Prefix paths only `A-Za-z0-9 . _ - /`.
    pub strict_validate_path_type: bool,
    /// The client-address keys (see [`ForwardedHeaders`]).
    pub forwarded: ForwardedHeaders,
    /// `disable-proxy-intercept-errors` (false): custom-http-errors not intercepted.
    pub disable_proxy_intercept_errors: bool,
    /// `whitelist-source-range` / `denylist-source-range`: global, an annotation overrides.
    pub allowlist_source_range: Option<IpSet>,
    pub denylist_source_range: Option<IpSet>,
    /// `custom-http-errors`: global list, an annotation overrides.
    pub custom_http_errors: Vec<u16>,
    /// `proxy-set-headers` / `add-headers`: ConfigMap references (namespace, name).
    pub proxy_set_headers_ref: Option<(String, String)>,
    pub add_headers_ref: Option<(String, String)>,
    /// `global-allowed-response-headers`: names custom-headers may set (lower-case).
    pub global_allowed_response_headers: Vec<String>,
    /// `allow-cross-namespace-resources` (false).
    pub allow_cross_namespace_resources: bool,
    /// Access log (`log-format-upstream`, `log-format-escape-json`/`-none`).
    pub log_format: std::sync::Arc<crate::access_log::LogFormat>,
    /// `disable-access-log` (false), or `disable-http-access-log` (false: the HTTP log alone).
    pub disable_access_log: bool,
    /// `skip-access-log-urls`: request URIs (`$request_uri`, exact) not access-logged.
    pub skip_access_log_urls: Vec<String>,
    /// `gzip-disable`: a User-Agent matching one of these regexes (case-insensitive; `msie6`
    /// is nginx's mask for MSIE 4-6) never gets gzip.
    pub gzip_disable: Option<HeaderBlocklist>,
    /// `enable-access-log-for-default-backend` (false).
    pub access_log_default_backend: bool,
    /// Resolved by compile from the references above.
    pub proxy_set_headers: Vec<(HeaderName, HeaderValue)>,
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    /// TLS keys: redirects, HSTS, listener protocols/ciphers (see [`tls`]).
    pub tls: tls::TlsConfig,
    /// `global-auth-url` as written (any non-empty value).
    pub global_auth_url: Option<String>,
    /// `global-auth-url` with the other `global-auth-*` keys, parsed; `Err` (an invalid
    /// value, or `global-auth-snippet`) makes every route it covers fail closed (503).
    pub global_auth: Option<Result<crate::annotations::auth::ExternalSpec, String>>,
    /// `no-auth-locations` (`/.well-known/acme-challenge`): path prefixes global auth skips.
    pub no_auth_locations: Vec<String>,
    /// `client-body-timeout` in seconds (60): the longest wait between two reads of a request
    /// body (HTTP/1.x).
    pub client_body_timeout: std::time::Duration,
    /// `client-header-timeout` in seconds (60): a new connection's first bytes must arrive
    /// within it (read at start).
    pub client_header_timeout: std::time::Duration,
    /// `keep-alive` in seconds (75; 0 = off): idle time between two requests on a client
    /// connection (HTTP/1 per request; h2 read at start).
    pub keep_alive: u64,
    /// `keep-alive-requests` (1000): requests served on one client connection (read at start).
    pub keep_alive_requests: u32,
    /// `max-worker-connections` (16384; 0 = no cap): client connections per proxy thread
    /// (read at start).
    pub max_worker_connections: usize,
    /// `load-balance` (round_robin): upstreams without their own annotation.
    pub load_balance: crate::annotations::balance::LoadBalance,
    /// `limit-rate` / `limit-rate-after` (bytes; the ConfigMap gives KiB): defaults of the
    /// annotations for every location (0: off).
    pub limit_rate: u64,
    pub limit_rate_after: u64,
    /// `use-gzip`, `gzip-level`, `gzip-min-length`, `gzip-types`.
    pub gzip: Compression,
    /// `enable-brotli`, `brotli-level`, `brotli-min-length`, `brotli-types`.
    pub brotli: Compression,
    /// `proxy-redirect-from` / `-to` ("off"): the defaults of the annotations.
    pub proxy_redirect_from: String,
    pub proxy_redirect_to: String,
    /// `proxy-cookie-domain` / `-path` ("off"): the defaults of the annotations.
    pub proxy_cookie_domain: Option<Replace>,
    pub proxy_cookie_path: Option<Replace>,
    /// `block-cidrs`: clients refused (403) on every host, before any location.
    pub block_cidrs: Option<IpSet>,
    /// `block-user-agents`, `block-referers`: requests whose User-Agent / Referer match are
    /// refused (403) on every host, before any location.
    pub block_user_agents: Option<HeaderBlocklist>,
    pub block_referers: Option<HeaderBlocklist>,
    /// `large-client-header-buffers` ("4 8k"): a request line over one buffer is 414, a header
    /// line over one buffer or a request head over all of them is 400.
    pub large_client_header_buffers: HeaderBuffers,
    /// `proxy-buffer-size` (4k): an upstream response head over it is 502.
    pub proxy_buffer_size: u64,
}

/// nginx's `large_client_header_buffers NUMBER SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuffers {
    pub number: u64,
    pub size: u64,
}

impl HeaderBuffers {
    /// `"4 8k"`: a count and an nginx size, both positive.
    pub fn parse(v: &str) -> Option<HeaderBuffers> {
        let mut parts = v.split_whitespace();
        let number = parse_int(parts.next()?).filter(|n| *n > 0)? as u64;
        let size = parse_size(parts.next()?).filter(|n| *n > 0)?;
        parts
            .next()
            .is_none()
            .then_some(HeaderBuffers { number, size })
    }
}

/// nginx `map` entries as ingress-nginx writes `block-user-agents` / `block-referers`: a plain
/// string matches the whole value ignoring case, `~regex` a case-sensitive and `~*regex` a
/// case-insensitive regex anywhere in it.
#[derive(Debug, Clone)]
pub struct HeaderBlocklist {
    source: Vec<String>,
    exact: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl PartialEq for HeaderBlocklist {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source
    }
}

impl Eq for HeaderBlocklist {}

impl HeaderBlocklist {
    /// Parse a comma list; entries whose regex does not compile are returned apart.
    pub fn parse(v: &str) -> (Option<HeaderBlocklist>, Vec<String>) {
        let mut b = HeaderBlocklist {
            source: Vec::new(),
            exact: Vec::new(),
            patterns: Vec::new(),
        };
        let mut bad = Vec::new();
        for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let re = if let Some(r) = e.strip_prefix("~*") {
                Some(regex::RegexBuilder::new(r).case_insensitive(true).build())
            } else {
                e.strip_prefix('~')
                    .map(|r| regex::RegexBuilder::new(r).build())
            };
            match re {
                Some(Ok(re)) => b.patterns.push(re),
                Some(Err(_)) => {
                    bad.push(e.to_string());
                    continue;
                }
                None => b.exact.push(e.to_ascii_lowercase()),
            }
            b.source.push(e.to_string());
        }
        ((!b.source.is_empty()).then_some(b), bad)
    }

    pub fn matches(&self, value: &str) -> bool {
        self.exact.iter().any(|e| e.eq_ignore_ascii_case(value))
            || self.patterns.iter().any(|p| p.is_match(value))
    }
}

/// The client-address keys: `use-forwarded-headers`, `enable-real-ip`, `forwarded-for-header`,
/// `compute-full-forwarded-for`, `proxy-real-ip-cidr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedHeaders {
    pub use_forwarded_headers: bool,
    pub enable_real_ip: bool,
    pub forwarded_for_header: http::HeaderName,
    pub compute_full_forwarded_for: bool,
    /// Peers whose forwarded-for header is believed (`0.0.0.0/0`).
    pub proxy_real_ip_cidr: IpSet,
    /// `proxy-protocol-header-timeout` (5s, a Go duration): time for the PROXY header.
    pub proxy_protocol_header_timeout: std::time::Duration,
    /// `use-proxy-protocol` (false): every connection starts with a PROXY protocol header whose
    /// source is the client address (from peers in `proxy-real-ip-cidr`); the forwarded-for
    /// header is then not the source of the client address (nginx `real_ip_header
    /// proxy_protocol`).
    pub use_proxy_protocol: bool,
}

impl ForwardedHeaders {
    /// nginx's realip module is on (`use-forwarded-headers` or `enable-real-ip`).
    pub fn real_ip(&self) -> bool {
        self.use_forwarded_headers || self.enable_real_ip
    }
}

impl Default for ForwardedHeaders {
    fn default() -> Self {
        ForwardedHeaders {
            use_forwarded_headers: false,
            enable_real_ip: false,
            forwarded_for_header: http::HeaderName::from_static("x-forwarded-for"),
            compute_full_forwarded_for: false,
            proxy_real_ip_cidr: crate::annotations::access::parse_cidrs("0.0.0.0/0")
                .unwrap_or_default(),
            use_proxy_protocol: false,
            proxy_protocol_header_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            limit_rate: 0,
            limit_rate_after: 0,
            annotations_risk_level: Risk::High,
            allow_snippet_annotations: false,
            server_snippet: None,
            location_snippet: None,
            stream: StreamConfig::default(),
            waf: WafConfig::default(),
            annotation_value_word_blocklist: Vec::new(),
            limit_req_status_code: 503,
            limit_conn_status_code: 503,
            proxy_connect_timeout: 5,
            proxy_read_timeout: 60,
            proxy_send_timeout: 60,
            proxy_body_size: 1024 * 1024,
            proxy_request_buffering: true,
            client_body_buffer_size: 8 * 1024,
            proxy_next_upstream: NextUpstream::default_policy(),
            proxy_next_upstream_tries: 3,
            proxy_next_upstream_timeout: 0,
            retry_non_idempotent: false,
            service_upstream: false,
            relative_redirects: false,
            server_tokens: false,
            allow_backend_server_header: false,
            hide_headers: Vec::new(),
            proxy_add_original_uri_header: false,
            generate_request_id: true,
            enable_underscores_in_headers: false,
            ignore_invalid_headers: true,
            upstream_keepalive_timeout: std::time::Duration::from_secs(60),
            upstream_keepalive_connections: 320,
            use_http2: true,
            http2_max_concurrent_streams: 128,
            proxy_http10: false,
            strict_validate_path_type: true,
            forwarded: ForwardedHeaders::default(),
            disable_proxy_intercept_errors: false,
            allowlist_source_range: None,
            denylist_source_range: None,
            custom_http_errors: Vec::new(),
            proxy_set_headers_ref: None,
            add_headers_ref: None,
            global_allowed_response_headers: Vec::new(),
            allow_cross_namespace_resources: false,
            log_format: Default::default(),
            disable_access_log: false,
            skip_access_log_urls: Vec::new(),
            gzip_disable: None,
            access_log_default_backend: false,
            proxy_set_headers: Vec::new(),
            add_headers: Vec::new(),
            tls: tls::TlsConfig::default(),
            global_auth_url: None,
            global_auth: None,
            no_auth_locations: vec!["/.well-known/acme-challenge".into()],
            client_body_timeout: std::time::Duration::from_secs(60),
            client_header_timeout: std::time::Duration::from_secs(60),
            keep_alive: 75,
            keep_alive_requests: 1000,
            max_worker_connections: 16384,
            load_balance: Default::default(),
            gzip: Compression::gzip(),
            brotli: Compression::brotli(),
            proxy_redirect_from: "off".into(),
            proxy_redirect_to: "off".into(),
            proxy_cookie_domain: None,
            proxy_cookie_path: None,
            block_cidrs: None,
            block_user_agents: None,
            block_referers: None,
            large_client_header_buffers: HeaderBuffers {
                number: 4,
                size: 8 * 1024,
            },
            proxy_buffer_size: 4 * 1024,
        }
    }
}

/// Keys read by this version (for the not-implemented report and the README).
pub const KEYS: &[&str] = &[
    "annotations-risk-level",
    "limit-rate",
    "limit-rate-after",
    "block-user-agents",
    "block-referers",
    "allow-snippet-annotations",
    "server-snippet",
    "location-snippet",
    "enable-modsecurity",
    "enable-owasp-modsecurity-crs",
    "modsecurity-snippet",
    "proxy-stream-timeout",
    "proxy-stream-next-upstream",
    "proxy-stream-next-upstream-tries",
    "proxy-stream-next-upstream-timeout",
    "proxy-stream-responses",
    "log-format-stream",
    "disable-stream-access-log",
    "annotation-value-word-blocklist",
    "limit-req-status-code",
    "limit-conn-status-code",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-body-size",
    "proxy-request-buffering",
    "client-body-buffer-size",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
    "retry-non-idempotent",
    "service-upstream",
    "relative-redirects",
    "server-tokens",
    "allow-backend-server-header",
    "hide-headers",
    "proxy-add-original-uri-header",
    "generate-request-id",
    "enable-underscores-in-headers",
    "ignore-invalid-headers",
    "upstream-keepalive-timeout",
    "upstream-keepalive-connections",
    "use-http2",
    "http2-max-concurrent-streams",
    "proxy-http-version",
    "strict-validate-path-type",
    "use-forwarded-headers",
    "enable-real-ip",
    "forwarded-for-header",
    "compute-full-forwarded-for",
    "proxy-real-ip-cidr",
    "disable-proxy-intercept-errors",
    "whitelist-source-range",
    "denylist-source-range",
    "custom-http-errors",
    "proxy-set-headers",
    "add-headers",
    "global-allowed-response-headers",
    "allow-cross-namespace-resources",
    "log-format-upstream",
    "log-format-escape-json",
    "log-format-escape-none",
    "disable-access-log",
    "disable-http-access-log",
    "skip-access-log-urls",
    "gzip-disable",
    "enable-access-log-for-default-backend",
    "global-auth-url",
    "no-auth-locations",
    "client-body-timeout",
    "client-header-timeout",
    "keep-alive",
    "keep-alive-requests",
    "max-worker-connections",
    "load-balance",
    "use-gzip",
    "use-proxy-protocol",
    "proxy-protocol-header-timeout",
    "gzip-level",
    "gzip-min-length",
    "gzip-types",
    "enable-brotli",
    "brotli-level",
    "brotli-min-length",
    "brotli-types",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "block-cidrs",
    "large-client-header-buffers",
    "proxy-buffer-size",
];

/// Response compression as ingress-nginx configures nginx's gzip filter (`gzip_proxied any`,
/// `gzip_vary on`, `gzip_http_version 1.1`) and the ngx_brotli filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// `use-gzip` / `enable-brotli` (false).
    pub on: bool,
    /// `gzip-level` (1) / `brotli-level` (4).
    pub level: u32,
    /// `gzip-min-length` (256) / `brotli-min-length` (20): a response with a shorter
    /// Content-Length is sent as is.
    pub min_length: u64,
    /// `gzip-types` / `brotli-types`: media types (lower-case, without parameters); `*` is
    /// every type.
    pub types: Vec<String>,
}

/// ingress-nginx's default `gzip-types` (config.go); `brotli-types` adds `application/xml+rss`.
const GZIP_TYPES: &str = "application/atom+xml application/javascript application/x-javascript \
     application/json application/rss+xml application/vnd.ms-fontobject \
     application/x-font-ttf application/x-web-app-manifest+json application/xhtml+xml \
     application/xml font/opentype image/svg+xml image/x-icon text/css text/javascript \
     text/plain text/x-component";

/// A response coding pingress compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl ControllerConfig {
    /// The settings of one coding.
    pub fn compression(&self, coding: Coding) -> &Compression {
        match coding {
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        }
    }
}

impl Compression {
    pub fn gzip() -> Self {
        Compression {
            on: false,
            level: 1,
            min_length: 256,
            types: Compression::types(GZIP_TYPES),
        }
    }

    pub fn brotli() -> Self {
        Compression {
            on: false,
            level: 4,
            min_length: 20,
            types: Compression::types(&format!("application/xml+rss {GZIP_TYPES}")),
        }
    }

    /// A space list of media types (nginx and ngx_brotli also compress `text/html` whatever
    /// the list says).
    pub fn types(v: &str) -> Vec<String> {
        let mut t: Vec<String> = v.split_whitespace().map(str::to_ascii_lowercase).collect();
        t.push("text/html".into());
        t.sort();
        t.dedup();
        t
    }
}

/// The ConfigMap's global external auth (ingress-nginx `global-auth-*`), parsed as the
/// Ingress annotations of the same name.
fn global_auth(
    url: &str,
    keys: &BTreeMap<&str, &str>,
) -> Result<crate::annotations::auth::ExternalSpec, String> {
    let get = |k: &str| keys.get(k).copied().filter(|v| !v.is_empty());
    if get("global-auth-snippet").is_some() {
        return Err("global-auth-snippet: raw nginx configuration is never executed".into());
    }
    let mut spec = crate::annotations::auth::external_spec(
        url,
        |k| get(&format!("global-auth-{k}")),
        |k| format!("global-auth-{k}"),
    )?;
    if let Some(v) = get("global-auth-always-set-cookie") {
        spec.always_set_cookie = crate::annotations::parse_bool(v)
            .ok_or_else(|| format!("global-auth-always-set-cookie: {v:?} is not true or false"))?;
    }
    Ok(spec)
}

/// The other global external auth keys: they refine `global-auth-url` and have no effect
/// without it (as in ingress-nginx).
pub const GLOBAL_AUTH_REFINEMENTS: &[&str] = &[
    "global-auth-method",
    "global-auth-signin",
    "global-auth-signin-redirect-param",
    "global-auth-response-headers",
    "global-auth-request-redirect",
    "global-auth-snippet",
    "global-auth-cache-key",
    "global-auth-cache-duration",
    "global-auth-always-set-cookie",
];

struct Ctx<'a> {
    object: &'a ObjectRef,
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn bad(&mut self, key: &str, value: &str, expected: &str) {
        self.diags.push(Diagnostic::warning(
            self.object.clone(),
            "InvalidConfigMapValue",
            format!("{key}: {value:?} is invalid (expected {expected}); using the default"),
        ));
    }

    fn bool(&mut self, key: &str, value: &str, into: &mut bool) {
        match parse_bool(value.trim()) {
            Some(b) => *into = b,
            None => self.bad(key, value, "true or false"),
        }
    }

    fn uint<T: TryFrom<i64>>(&mut self, key: &str, value: &str, into: &mut T) {
        match parse_int(value.trim()).and_then(|n| T::try_from(n).ok()) {
            Some(n) => *into = n,
            None => self.bad(key, value, "a non-negative integer"),
        }
    }

    /// An nginx size (`zero_ok`: 0 is a valid value).
    fn size(&mut self, key: &str, value: &str, expected: &str, zero_ok: bool, into: &mut u64) {
        match parse_size(value) {
            Some(n) if zero_ok || n > 0 => *into = n,
            _ => self.bad(key, value, expected),
        }
    }

    /// Whole seconds as a duration (at least 1 s: nginx has no zero timeout).
    fn seconds(&mut self, key: &str, value: &str, into: &mut std::time::Duration) {
        let mut secs = into.as_secs();
        self.uint(key, value, &mut secs);
        *into = std::time::Duration::from_secs(secs.max(1));
    }

    fn status(&mut self, key: &str, value: &str, allowed: &[u16], into: &mut u16) {
        match parse_int(value.trim()) {
            Some(n) if allowed.iter().any(|a| i64::from(*a) == n) => *into = n as u16,
            Some(n) if allowed.is_empty() && (100..=599).contains(&n) => *into = n as u16,
            _ => self.bad(key, value, "an HTTP status code"),
        }
    }

    fn cidrs(&mut self, key: &str, value: &str, into: &mut Option<IpSet>) {
        match parse_cidrs(value) {
            Ok(s) if s.is_empty() => *into = None,
            Ok(s) => *into = Some(s),
            Err(bad) => self.bad(
                key,
                value,
                &format!("a comma list of CIDRs ({bad:?} is not one)"),
            ),
        }
    }

    fn blocklist(&mut self, key: &str, value: &str, into: &mut Option<HeaderBlocklist>) {
        let (list, bad) = HeaderBlocklist::parse(value);
        for e in bad {
            self.diags.push(Diagnostic::warning(
                self.object.clone(),
                "InvalidConfigMapValue",
                format!("{key}: entry {e:?} is not a valid regular expression; skipped"),
            ));
        }
        *into = list;
    }

    fn reference(&mut self, key: &str, value: &str, into: &mut Option<(String, String)>) {
        match crate::settings::parse_ns_name(key, value.trim()) {
            Ok(r) => *into = Some(r),
            Err(_) => self.bad(key, value, "a ConfigMap reference namespace/name"),
        }
    }
}

/// Parse the ConfigMap's `data`.
pub fn parse(
    data: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> ControllerConfig {
    let mut c = ControllerConfig::default();
    let Some(data) = data else { return c };
    let mut cx = Ctx { object, diags };
    let (mut log_template, mut escape_json, mut escape_none) = (None, false, false);
    let mut global_auth_keys = BTreeMap::new();
    for (key, value) in data {
        match key.as_str() {
            "annotations-risk-level" => match Risk::parse(value) {
                Some(r) => c.annotations_risk_level = r,
                None => cx.bad(key, value, "Low, Medium, High or Critical"),
            },
            "allow-snippet-annotations" => cx.bool(key, value, &mut c.allow_snippet_annotations),
            "proxy-stream-timeout" | "proxy-stream-next-upstream-timeout" => {
                match nginx_time(value) {
                    Some(d) if key == "proxy-stream-timeout" && !d.is_zero() => {
                        c.stream.timeout = d
                    }
                    Some(d) if key == "proxy-stream-next-upstream-timeout" => {
                        c.stream.next_upstream_timeout = d
                    }
                    _ => cx.bad(key, value, "an nginx time such as 600s"),
                }
            }
            "proxy-stream-next-upstream" => cx.bool(key, value, &mut c.stream.next_upstream),
            "proxy-stream-next-upstream-tries" => {
                cx.uint(key, value, &mut c.stream.next_upstream_tries)
            }
            "proxy-stream-responses" => cx.uint(key, value, &mut c.stream.responses),
            "log-format-stream" => c.stream.log_format = value.as_str().into(),
            "annotation-value-word-blocklist" => {
                // ingress-nginx splits on ',' without trimming each word; an empty word would
                // match every value, so it is skipped
                c.annotation_value_word_blocklist = value
                    .trim()
                    .split(',')
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "disable-stream-access-log" => cx.bool(key, value, &mut c.stream.disable_access_log),
            "enable-modsecurity" => cx.bool(key, value, &mut c.waf.enable),
            "enable-owasp-modsecurity-crs" => cx.bool(key, value, &mut c.waf.crs),
            "modsecurity-snippet" if !value.trim().is_empty() => {
                let checked = crate::annotations::modsecurity::check_snippet(value);
                if let Err(e) = &checked {
                    cx.diags.push(Diagnostic::warning(
                        cx.object.clone(),
                        "ConfigMapModSecurityRefused",
                        format!("{key}: {e}; every location it covers answers 503 (fail closed)"),
                    ));
                }
                c.waf.snippet = Some(
                    checked
                        .map(|()| value.as_str().into())
                        .map_err(|e| e.into()),
                );
            }
            "modsecurity-snippet" => {}
            "server-snippet" | "location-snippet" => {
                let kind = if key == "server-snippet" {
                    Kind::Server
                } else {
                    Kind::Location
                };
                let compiled = crate::annotations::snippet::program::compile(value, kind);
                match compiled.program {
                    Some(p) => {
                        let s = Some(ConfigSnippet {
                            text: value.as_str().into(),
                            program: std::sync::Arc::new(p),
                        });
                        if kind == Kind::Server {
                            c.server_snippet = s;
                        } else {
                            c.location_snippet = s;
                        }
                    }
                    None => cx.diags.push(Diagnostic::warning(
                        cx.object.clone(),
                        "ConfigMapSnippetRefused",
                        format!(
                            "{key}: not run (outside the supported snippet subset): {}",
                            compiled.rejection_summary().unwrap_or_default()
                        ),
                    )),
                }
            }
            "limit-req-status-code" => cx.status(key, value, &[], &mut c.limit_req_status_code),
            "limit-conn-status-code" => cx.status(key, value, &[], &mut c.limit_conn_status_code),
            "proxy-connect-timeout" => cx.uint(key, value, &mut c.proxy_connect_timeout),
            "proxy-read-timeout" => cx.uint(key, value, &mut c.proxy_read_timeout),
            "proxy-send-timeout" => cx.uint(key, value, &mut c.proxy_send_timeout),
            "proxy-body-size" => cx.size(
                key,
                value,
                "a size like 1m, 512k or 0",
                true,
                &mut c.proxy_body_size,
            ),
            "proxy-request-buffering" => match parse_on_off(value) {
                Some(b) => c.proxy_request_buffering = b,
                None => cx.bad(key, value, "on or off"),
            },
            "client-body-buffer-size" => cx.size(
                key,
                value,
                "a size like 8k or 1m",
                true,
                &mut c.client_body_buffer_size,
            ),
            "proxy-next-upstream" => match NextUpstream::parse(value) {
                Some(n) => c.proxy_next_upstream = n,
                None => cx.bad(key, value, "a space list of error timeout http_5xx ... off"),
            },
            "proxy-next-upstream-tries" => cx.uint(key, value, &mut c.proxy_next_upstream_tries),
            "proxy-next-upstream-timeout" => {
                cx.uint(key, value, &mut c.proxy_next_upstream_timeout)
            }
            "retry-non-idempotent" => cx.bool(key, value, &mut c.retry_non_idempotent),
            "service-upstream" => cx.bool(key, value, &mut c.service_upstream),
            "relative-redirects" => cx.bool(key, value, &mut c.relative_redirects),
            "server-tokens" => cx.bool(key, value, &mut c.server_tokens),
            "allow-backend-server-header" => {
                cx.bool(key, value, &mut c.allow_backend_server_header)
            }
            "hide-headers" => {
                c.hide_headers.clear();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match http::HeaderName::from_bytes(name.as_bytes()) {
                        Ok(h) => c.hide_headers.push(h),
                        Err(_) => cx.bad(key, name, "a comma list of header names"),
                    }
                }
            }
            "proxy-add-original-uri-header" => {
                cx.bool(key, value, &mut c.proxy_add_original_uri_header)
            }
            "generate-request-id" => cx.bool(key, value, &mut c.generate_request_id),
            "enable-underscores-in-headers" => {
                cx.bool(key, value, &mut c.enable_underscores_in_headers)
            }
            "ignore-invalid-headers" => cx.bool(key, value, &mut c.ignore_invalid_headers),
            "upstream-keepalive-timeout" => {
                cx.seconds(key, value, &mut c.upstream_keepalive_timeout)
            }
            "upstream-keepalive-connections" => {
                cx.uint(key, value, &mut c.upstream_keepalive_connections)
            }
            "use-http2" => cx.bool(key, value, &mut c.use_http2),
            "proxy-http-version" => match proxy::http_version_is_10(value) {
                Ok(b) => c.proxy_http10 = b,
                Err(expected) => cx.bad(key, value, expected),
            },
            "http2-max-concurrent-streams" => match value.trim().parse::<u32>() {
                Ok(n) if n > 0 => c.http2_max_concurrent_streams = n,
                _ => cx.bad(key, value, "a positive count"),
            },
            "strict-validate-path-type" => cx.bool(key, value, &mut c.strict_validate_path_type),
            "use-forwarded-headers" => cx.bool(key, value, &mut c.forwarded.use_forwarded_headers),
            "enable-real-ip" => cx.bool(key, value, &mut c.forwarded.enable_real_ip),
            "compute-full-forwarded-for" => {
                cx.bool(key, value, &mut c.forwarded.compute_full_forwarded_for)
            }
            "forwarded-for-header" => match http::HeaderName::from_bytes(value.trim().as_bytes()) {
                Ok(h) => c.forwarded.forwarded_for_header = h,
                Err(_) => cx.bad(key, value, "a header name"),
            },
            "proxy-real-ip-cidr" => {
                let mut set = None;
                cx.cidrs(key, value, &mut set);
                if let Some(set) = set {
                    c.forwarded.proxy_real_ip_cidr = set;
                }
            }
            "disable-proxy-intercept-errors" => {
                cx.bool(key, value, &mut c.disable_proxy_intercept_errors)
            }
            "whitelist-source-range" => cx.cidrs(key, value, &mut c.allowlist_source_range),
            "denylist-source-range" => cx.cidrs(key, value, &mut c.denylist_source_range),
            "custom-http-errors" => {
                let codes: Option<Vec<u16>> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        parse_int(s)
                            .filter(|n| (400..=599).contains(n))
                            .map(|n| n as u16)
                    })
                    .collect();
                match codes {
                    Some(c2) => c.custom_http_errors = c2,
                    None => cx.bad(key, value, "a comma list of status codes 400-599"),
                }
            }
            "proxy-set-headers" => cx.reference(key, value, &mut c.proxy_set_headers_ref),
            "add-headers" => cx.reference(key, value, &mut c.add_headers_ref),
            "global-allowed-response-headers" => {
                c.global_allowed_response_headers = value
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            }
            "log-format-upstream" => log_template = Some(value.clone()),
            "log-format-escape-json" => cx.bool(key, value, &mut escape_json),
            "log-format-escape-none" => cx.bool(key, value, &mut escape_none),
            "disable-access-log" => cx.bool(key, value, &mut c.disable_access_log),
            "disable-http-access-log" => {
                let mut off = false;
                cx.bool(key, value, &mut off);
                c.disable_access_log |= off;
            }
            "skip-access-log-urls" => {
                c.skip_access_log_urls = value
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "gzip-disable" => {
                // nginx gzip_disable: space-separated case-insensitive regexes
                let list: Vec<String> = value
                    .split_whitespace()
                    .map(|e| match e {
                        "msie6" => "~*MSIE [4-6]\\.".to_string(),
                        e => format!("~*{e}"),
                    })
                    .collect();
                let (b, bad) = HeaderBlocklist::parse(&list.join(","));
                for e in bad {
                    cx.bad(key, &e, "a regular expression over User-Agent");
                }
                c.gzip_disable = b;
            }
            "enable-access-log-for-default-backend" => {
                cx.bool(key, value, &mut c.access_log_default_backend)
            }
            "allow-cross-namespace-resources" => {
                cx.bool(key, value, &mut c.allow_cross_namespace_resources)
            }
            "global-auth-url" => {
                c.global_auth_url = Some(value.trim().to_string()).filter(|v| !v.is_empty())
            }
            "no-auth-locations" => {
                c.no_auth_locations = value
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            k if GLOBAL_AUTH_REFINEMENTS.contains(&k) => {
                global_auth_keys.insert(k, value.trim());
            }
            "client-body-timeout" => cx.seconds(key, value, &mut c.client_body_timeout),
            "client-header-timeout" => cx.seconds(key, value, &mut c.client_header_timeout),
            "keep-alive" => cx.uint(key, value, &mut c.keep_alive),
            "keep-alive-requests" => cx.uint(key, value, &mut c.keep_alive_requests),
            "max-worker-connections" => cx.uint(key, value, &mut c.max_worker_connections),
            "use-gzip" => cx.bool(key, value, &mut c.gzip.on),
            "limit-rate" => {
                let mut kib = c.limit_rate / 1024;
                cx.uint(key, value, &mut kib);
                c.limit_rate = kib.saturating_mul(1024);
            }
            "limit-rate-after" => {
                let mut kib = c.limit_rate_after / 1024;
                cx.uint(key, value, &mut kib);
                c.limit_rate_after = kib.saturating_mul(1024);
            }
            "use-proxy-protocol" => cx.bool(key, value, &mut c.forwarded.use_proxy_protocol),
            "proxy-protocol-header-timeout" => match crate::values::go_duration(value.trim()) {
                Some(d) if !d.is_zero() => c.forwarded.proxy_protocol_header_timeout = d,
                _ => cx.bad(key, value, "a duration such as 5s"),
            },
            "gzip-level" => match value.trim().parse::<u32>() {
                Ok(n) if (1..=9).contains(&n) => c.gzip.level = n,
                _ => cx.bad(key, value, "a level from 1 to 9"),
            },
            "gzip-min-length" => cx.uint(key, value, &mut c.gzip.min_length),
            "gzip-types" => c.gzip.types = Compression::types(value),
            "enable-brotli" => cx.bool(key, value, &mut c.brotli.on),
            "proxy-redirect-from" => match proxy::redirect_from(value) {
                Ok(v) => c.proxy_redirect_from = v,
                Err(expected) => cx.bad(key, value, expected),
            },
            "proxy-redirect-to" => match proxy::redirect_to(value) {
                Ok(v) => c.proxy_redirect_to = v,
                Err(expected) => cx.bad(key, value, expected),
            },
            "proxy-cookie-domain" | "proxy-cookie-path" => {
                match proxy::cookie_rewrite(key, value) {
                    Ok(r) if key == "proxy-cookie-domain" => c.proxy_cookie_domain = r,
                    Ok(r) => c.proxy_cookie_path = r,
                    Err(expected) => cx.bad(key, value, expected),
                }
            }
            "brotli-level" => match value.trim().parse::<u32>() {
                Ok(n) if n <= 11 => c.brotli.level = n,
                _ => cx.bad(key, value, "a level from 0 to 11"),
            },
            "brotli-min-length" => cx.uint(key, value, &mut c.brotli.min_length),
            "brotli-types" => c.brotli.types = Compression::types(value),
            "load-balance" => match crate::annotations::balance::LoadBalance::parse(value) {
                Some(lb) => c.load_balance = lb,
                None => cx.bad(key, value, "round_robin or ewma"),
            },
            "block-cidrs" => cx.cidrs(key, value, &mut c.block_cidrs),
            "large-client-header-buffers" => match HeaderBuffers::parse(value) {
                Some(b) => c.large_client_header_buffers = b,
                None => cx.bad(key, value, "a count and a size, e.g. \"4 8k\""),
            },
            "proxy-buffer-size" => cx.size(
                key,
                value,
                "a size like 4k or 16k",
                false,
                &mut c.proxy_buffer_size,
            ),
            "block-user-agents" => cx.blocklist(key, value, &mut c.block_user_agents),
            "block-referers" => cx.blocklist(key, value, &mut c.block_referers),
            k if tls::KEYS.contains(&k) => tls::parse_key(&mut c.tls, k, value, object, cx.diags),
            _ => cx.diags.push(match inventory::unread(key) {
                Some(inventory::Unread::NotApplicable(why)) => Diagnostic::warning(
                    object.clone(),
                    "ConfigMapKeyNotApplicable",
                    format!("{key} tunes nginx itself and has no effect in pingress: {why}"),
                ),
                Some(inventory::Unread::NotYet(why)) => Diagnostic::warning(
                    object.clone(),
                    "ConfigMapKeyNotImplemented",
                    format!(
                        "{key} is not implemented by this pingress version and is ignored ({why})"
                    ),
                ),
                None => Diagnostic::warning(
                    object.clone(),
                    "ConfigMapKeyUnknown",
                    format!("{key} is not an ingress-nginx ConfigMap key; ignored"),
                ),
            }),
        }
    }
    if let Some(url) = &c.global_auth_url {
        let parsed = global_auth(url, &global_auth_keys);
        if let Err(m) = &parsed {
            cx.diags.push(Diagnostic::warning(
                object.clone(),
                "GlobalAuthFailClosed",
                format!("{m}: every route global-auth-url covers answers 503 (Ingresses with enable-global-auth: \"false\" and paths under no-auth-locations keep serving)"),
            ));
        }
        c.global_auth = Some(parsed);
    }
    let escape = match (escape_json, escape_none) {
        (true, _) => crate::access_log::Escape::Json,
        (false, true) => crate::access_log::Escape::None,
        _ => crate::access_log::Escape::Default,
    };
    let template = log_template
        .as_deref()
        .unwrap_or(crate::access_log::DEFAULT_FORMAT);
    let (format, unknown) = crate::access_log::LogFormat::parse(template, escape);
    if !unknown.is_empty() {
        cx.diags.push(Diagnostic::warning(
            object.clone(),
            "LogFormatVariableNotSupported",
            format!(
                "log-format-upstream: variables {unknown:?} are not supported by pingress and log as \"-\""
            ),
        ));
    }
    c.log_format = std::sync::Arc::new(format);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn upstream_keepalive_http2_and_header_keys() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        let c = ControllerConfig::default();
        assert_eq!(
            (
                c.upstream_keepalive_timeout.as_secs(),
                c.upstream_keepalive_connections,
                c.use_http2,
                c.http2_max_concurrent_streams,
                c.generate_request_id,
                c.ignore_invalid_headers,
            ),
            (60, 320, true, 128, true, true)
        );
        let m: BTreeMap<String, String> = [
            ("upstream-keepalive-timeout", "5"),
            ("upstream-keepalive-connections", "0"),
            ("use-http2", "false"),
            ("http2-max-concurrent-streams", "0"),
            ("hide-headers", "X-A, bad header, X-B"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = parse(Some(&m), &o, &mut d);
        assert_eq!(c.upstream_keepalive_timeout.as_secs(), 5);
        assert_eq!(c.upstream_keepalive_connections, 0);
        assert!(!c.use_http2);
        assert_eq!(c.http2_max_concurrent_streams, 128, "0 is refused");
        assert_eq!(c.hide_headers, ["x-a", "x-b"]);
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn gzip_and_load_balance_keys() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        let c = parse(
            Some(&data(&[
                ("use-gzip", "true"),
                ("gzip-level", "10"),
                ("gzip-min-length", "1000"),
                ("gzip-types", "application/json Image/SVG+XML"),
                ("load-balance", "ewma"),
            ])),
            &o,
            &mut d,
        );
        assert_eq!(d.len(), 1, "gzip-level 10 is refused: {d:?}");
        assert!(c.gzip.on);
        assert_eq!((c.gzip.level, c.gzip.min_length), (1, 1000));
        assert_eq!(
            c.gzip.types,
            ["application/json", "image/svg+xml", "text/html"]
        );
        assert_eq!(
            c.load_balance,
            crate::annotations::balance::LoadBalance::Ewma
        );
        let c = parse(Some(&data(&[])), &o, &mut d);
        assert!(!c.gzip.on && c.gzip.types.contains(&"application/json".to_string()));
    }

    #[test]
    fn block_lists_skip_bad_regexes_alone() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        let c = parse(
            Some(&data(&[
                ("block-user-agents", "Bot, ~*(unclosed, ~^ok$"),
                ("block-referers", " , "),
            ])),
            &o,
            &mut d,
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("(unclosed"));
        let ua = c.block_user_agents.unwrap();
        assert!(ua.matches("BOT") && ua.matches("ok") && !ua.matches("Bot 2") && !ua.matches("OK"));
        assert_eq!(c.block_referers, None);
    }

    #[test]
    fn global_auth_url_parses_and_fails_closed_when_invalid() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        let c = parse(Some(&data(&[])), &o, &mut d);
        assert_eq!(c.global_auth_url, None);
        assert_eq!(c.no_auth_locations, vec!["/.well-known/acme-challenge"]);
        let mut d = Vec::new();
        let c = parse(
            Some(&data(&[
                ("global-auth-url", "http://auth.example.com/verify"),
                ("global-auth-signin", "https://x/start"),
                ("global-auth-response-headers", "X-User"),
                ("global-auth-method", "POST"),
                ("no-auth-locations", "/public, /healthz,"),
            ])),
            &o,
            &mut d,
        );
        assert!(d.is_empty(), "{d:?}");
        let g = c.global_auth.unwrap().unwrap();
        assert_eq!(g.method, Some(http::Method::POST));
        assert_eq!(g.response_headers.len(), 1);
        assert_eq!(c.no_auth_locations, vec!["/public", "/healthz"]);
        for (k, v) in [
            ("global-auth-url", "not a url at all"),
            ("global-auth-snippet", "proxy_set_header X 1;"),
            ("global-auth-method", "get"),
        ] {
            let mut kv = vec![("global-auth-url", "http://auth.example.com/verify")];
            kv.push((k, v));
            let mut d = Vec::new();
            let c = parse(Some(&data(&kv)), &o, &mut d);
            assert!(c.global_auth_url.is_some());
            assert!(matches!(c.global_auth, Some(Err(_))), "{k}");
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!(d[0].reason, "GlobalAuthFailClosed");
        }
        let mut d = Vec::new();
        let c = parse(Some(&data(&[("global-auth-url", " ")])), &o, &mut d);
        assert_eq!(c.global_auth_url, None);
        assert!(d.is_empty());
    }

    #[test]
    fn defaults_and_values() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        assert_eq!(parse(None, &o, &mut d), ControllerConfig::default());
        let m: BTreeMap<String, String> = [
            ("annotations-risk-level", "Critical"),
            ("allow-snippet-annotations", "true"),
            ("worker-processes", "4"),
            ("enable-opentelemetry", "true"),
            ("no-such-key", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = parse(Some(&m), &o, &mut d);
        assert_eq!(c.annotations_risk_level, Risk::Critical);
        let reasons: Vec<&str> = d.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            vec![
                "ConfigMapKeyNotImplemented",
                "ConfigMapKeyUnknown",
                "ConfigMapKeyNotApplicable"
            ]
        );
        assert!(d[2].message.contains("--threads"), "{}", d[2].message);
        let m: BTreeMap<String, String> =
            [("annotations-risk-level".to_string(), "Extreme".to_string())].into();
        let mut d = Vec::new();
        assert_eq!(
            parse(Some(&m), &o, &mut d).annotations_risk_level,
            Risk::High
        );
        assert_eq!(d[0].reason, "InvalidConfigMapValue");
    }
}
