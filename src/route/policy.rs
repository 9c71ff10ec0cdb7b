//! Per-Ingress request policy, compiled from annotations and ConfigMap defaults. Typed values
//! only; shared (`Arc`) by every route of the Ingress.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::auth::AuthPolicy;
use super::{Backend, UrlTarget};
use crate::annotations::access::{Access, IpSet};
use crate::annotations::proxy::{NextUpstream, Replace};
use crate::annotations::redirect::Redirect;
use crate::annotations::template::Template;

/// Rate and connection limits of one Ingress (one zone per Ingress, as ingress-nginx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// Stable zone id: `namespace/name`; limiter state is keyed by it across table swaps.
    pub zone: Box<str>,
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    pub burst_multiplier: u32,
    pub connections: Option<u32>,
    pub allowlist: IpSet,
    /// ConfigMap `limit-req-status-code` / `limit-conn-status-code`.
    pub req_status: u16,
    pub conn_status: u16,
}

impl LimitSpec {
    pub fn exempt(&self, ip: IpAddr) -> bool {
        self.allowlist.contains(ip)
    }
}

/// Where an intercepted or fallback request goes, and what ingress-nginx tells it.
#[derive(Debug, Clone)]
pub struct ErrorBackend {
    pub backend: Arc<Backend>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// permanent-/temporal-redirect: answered instead of proxying.
    pub redirect: Option<Redirect>,
    /// `relative-redirects` (annotation, or the ConfigMap key for every location).
    pub relative_redirects: bool,
    /// rewrite-target (`$1`..`$9` from the route's rewrite regex).
    pub rewrite_target: Option<Box<str>>,
    pub x_forwarded_prefix: Option<Box<str>>,
    pub limits: Option<Arc<LimitSpec>>,
    pub access: Access,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// Largest request body in bytes; 0 = unlimited.
    pub body_limit: u64,
    /// `proxy-request-buffering`: read the whole body before the upstream is contacted.
    pub request_buffering: bool,
    /// `client-body-buffer-size`: a buffered body over it is kept in a temporary file.
    pub body_buffer_size: u64,
    /// `proxy-buffer-size`: the largest upstream response head (502 beyond).
    pub upstream_header_limit: u64,
    pub next_upstream: NextUpstream,
    /// Attempts in total (0 = unlimited, bounded by Pingora's retry cap).
    pub next_upstream_tries: u32,
    pub next_upstream_timeout: Option<Duration>,
    pub retry_non_idempotent: bool,
    pub upstream_vhost: Option<HeaderValue>,
    pub connection_header: Option<HeaderValue>,
    /// default-backend annotation: serves when the route has no ready endpoints.
    pub fallback: Option<Arc<Backend>>,
    /// custom-http-errors: upstream statuses replaced by `error_backend`'s answer.
    pub custom_errors: Vec<u16>,
    pub error_backend: Option<Arc<Backend>>,
    /// custom-headers: added to every response.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `enable-access-log`.
    pub access_log: bool,
    /// A reference could not be honoured (e.g. custom-headers): every request answers 503.
    pub denied: bool,
    /// Security keys not implemented yet, invalid auth values or auth references that cannot
    /// be honoured (why): the request answers 503 in the access phase, after redirects.
    pub fail_closed: Option<Box<str>>,
    /// Basic and external authentication, combined with `access` by `satisfy`.
    pub auth: AuthPolicy,
    /// `enable-cors`.
    pub cors: Option<Arc<crate::annotations::cors::Cors>>,
    /// `proxy-redirect-*`, `proxy-cookie-*`: rewrites of upstream response headers.
    pub upstream_rewrite: Option<Arc<UpstreamRewrite>>,
    /// `limit-rate` / `limit-rate-after`: (bytes per second, bytes sent before it applies).
    pub response_rate: Option<(u64, u64)>,
    /// `mirror-target`: a copy of every request.
    pub mirror: Option<Arc<Mirror>>,
    /// `proxy-http-version: "1.0"` (annotation or ConfigMap).
    pub upstream_http10: bool,
    /// `configuration-snippet`, compiled (its mapped settings are already in the fields above).
    pub snippet: Option<Arc<crate::annotations::snippet::Program>>,
    /// `server_tokens` from a snippet (`None`: the ConfigMap's).
    pub server_tokens: Option<bool>,
    /// ModSecurity (`enable-modsecurity` and the ConfigMap's): the rules every request runs.
    pub waf: Option<Arc<WafPolicy>>,
}

/// A location's ModSecurity: the compiled rules (shared by every location with the same text)
/// and the `modsecurity-transaction-id` template.
#[derive(Debug)]
pub struct WafPolicy {
    pub rules: Arc<crate::waf::RuleSet>,
    pub transaction_id: Option<Template>,
}

/// `mirror-target` (nginx's `mirror` location of ingress-nginx): where copies go.
#[derive(Debug)]
pub struct Mirror {
    /// The target URL, with variables.
    pub url: Template,
    pub to: UrlTarget,
    /// `mirror-host`: the copies' Host header.
    pub host: HeaderValue,
    /// `mirror-request-body`.
    pub body: bool,
    /// nginx's mirror location, `/_mirror-<Ingress UID>`: the path of copies to a target URL
    /// with no path and no variables (nginx passes the location's own URI then).
    pub location: Box<str>,
}

/// Literal rewrites of an upstream response's `Location`/`Refresh` and `Set-Cookie` headers
/// (nginx `proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamRewrite {
    pub redirect: Option<Replace>,
    pub cookie_domain: Option<Replace>,
    pub cookie_path: Option<Replace>,
}

impl Default for Policy {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Policy {
            redirect: None,
            relative_redirects: false,
            rewrite_target: None,
            x_forwarded_prefix: None,
            limits: None,
            access: Access::Open,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            body_limit: 1024 * 1024,
            request_buffering: true,
            body_buffer_size: 8 * 1024,
            upstream_header_limit: 4 * 1024,
            next_upstream: NextUpstream::default_policy(),
            next_upstream_tries: 3,
            next_upstream_timeout: None,
            retry_non_idempotent: false,
            upstream_vhost: None,
            connection_header: None,
            fallback: None,
            custom_errors: Vec::new(),
            error_backend: None,
            response_headers: Vec::new(),
            access_log: true,
            denied: false,
            fail_closed: None,
            auth: AuthPolicy::default(),
            cors: None,
            upstream_rewrite: None,
            response_rate: None,
            mirror: None,
            upstream_http10: false,
            snippet: None,
            server_tokens: None,
            waf: None,
        }
    }
}

impl Policy {
    /// One line for table dumps: only what differs from the defaults.
    pub fn describe(&self) -> String {
        let d = Policy::default();
        let mut parts = Vec::new();
        if let Some(r) = &self.redirect {
            parts.push(format!("redirect {} {}", r.code, r.url));
        }
        if let Some(t) = &self.rewrite_target {
            parts.push(format!("rewrite {t}"));
        }
        if let Some(u) = &self.upstream_rewrite {
            for (what, r) in [
                ("proxy-redirect", &u.redirect),
                ("cookie-domain", &u.cookie_domain),
                ("cookie-path", &u.cookie_path),
            ] {
                if let Some(r) = r {
                    parts.push(format!("{what} {} {}", r.from, r.to));
                }
            }
        }
        if let Some(p) = &self.x_forwarded_prefix {
            parts.push(format!("x-forwarded-prefix {p}"));
        }
        if let Some(l) = &self.limits {
            parts.push(format!(
                "limits rps={:?} rpm={:?} burst-x{} conn={:?}",
                l.rps, l.rpm, l.burst_multiplier, l.connections
            ));
        }
        if self.access != Access::Open {
            parts.push(format!("access {:?}", self.access));
        }
        if self.connect_timeout != d.connect_timeout
            || self.read_timeout != d.read_timeout
            || self.send_timeout != d.send_timeout
        {
            parts.push(format!(
                "timeouts {}s/{}s/{}s",
                self.connect_timeout.as_secs(),
                self.read_timeout.as_secs(),
                self.send_timeout.as_secs()
            ));
        }
        if self.body_limit != d.body_limit {
            parts.push(format!("body-limit {}", self.body_limit));
        }
        if !self.request_buffering {
            parts.push("request-buffering off".to_string());
        }
        if self.upstream_header_limit != d.upstream_header_limit {
            parts.push(format!("buffer-size {}", self.upstream_header_limit));
        }
        if self.body_buffer_size != d.body_buffer_size {
            parts.push(format!("body-buffer {}", self.body_buffer_size));
        }
        if self.next_upstream != d.next_upstream || self.next_upstream_tries != 3 {
            parts.push(format!(
                "next-upstream {:?} tries {}",
                self.next_upstream, self.next_upstream_tries
            ));
        }
        if let Some(v) = &self.upstream_vhost {
            parts.push(format!("vhost {}", v.to_str().unwrap_or("?")));
        }
        if let Some(b) = &self.fallback {
            parts.push(format!("default-backend {}", b.name));
        }
        if !self.custom_errors.is_empty() {
            parts.push(format!("custom-errors {:?}", self.custom_errors));
        }
        if !self.response_headers.is_empty() {
            parts.push(format!("response-headers {}", self.response_headers.len()));
        }
        if self.denied {
            parts.push("denied(503)".into());
        }
        if let Some(b) = &self.auth.basic {
            parts.push(format!("basic-auth {}", b.version));
        }
        if let Some(e) = &self.auth.external {
            parts.push(format!("external-auth({}) {:?}", e.source, e.url));
        }
        if self.cors.is_some() {
            parts.push("cors".into());
        }
        if self.auth.satisfy_any {
            parts.push("satisfy any".into());
        }
        if let Some(keys) = &self.fail_closed {
            parts.push(format!("fail-closed(503: {keys})"));
        }
        parts.join("; ")
    }
}
