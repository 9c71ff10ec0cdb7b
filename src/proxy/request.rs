//! Request-side helpers of the proxy: which host a request names, and the headers
//! ingress-nginx sets on every proxied request (nginx.tmpl location block).

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST};
use pingora::http::RequestHeader;
use pingora::Result;

use super::{rewrite, snippet};
use crate::annotations::snippet::program::{AccessRule, NamePat, Program, Scope};
use crate::annotations::template::{Locals, RequestView};
use crate::route::{path, Backend, Policy, Route, RouteTable, Target};

/// The listener a request came in on.
pub struct Conn<'a> {
    /// `http` or `https`.
    pub scheme: &'static str,
    pub port: u16,
    /// `$pass_access_scheme`: the scheme, or X-Forwarded-Proto with use-forwarded-headers.
    pub pass_scheme: &'a str,
    /// `$best_http_host`: the Host, or X-Forwarded-Host with use-forwarded-headers.
    pub best_host: &'a str,
    /// `$remote_addr` (the resolved client address) and `$server_port`, for snippets.
    pub remote_addr: &'a str,
    pub server_port: u16,
}

/// What the request phase decided, before any stateful check (limits, body).
#[derive(Debug)]
pub enum Decision {
    /// Answer with this status and pingress's page; the route matched, if any (for logs and
    /// metrics).
    Respond(u16, Option<Arc<Route>>),
    /// Answer with a redirect.
    Redirect(u16, String),
    /// A CORS preflight (OPTIONS with an allowed Origin): 204 with the CORS headers.
    Preflight(Arc<Route>),
    /// A snippet's `return CODE [text]`: the status with that body (or pingress's page).
    Text(u16, Option<String>, Option<Arc<Route>>),
    /// A snippet's `return 444`: close the connection without an answer.
    Close,
    /// A server snippet's `location` without `return`: its access rules, then 404.
    SnippetLocation,
    /// Proxy to `backend` (the route's, or its default-backend fallback with `fallback_code`).
    Proxy {
        route: Arc<Route>,
        backend: Arc<Backend>,
        new_uri: Option<String>,
        forwarded_prefix: Option<String>,
        fallback_code: Option<u16>,
        /// The route's canary serves this request (`backend` is the canary's).
        canary: bool,
    },
}

fn strip_trailing_slash(uri: &str) -> &str {
    // `$request_uri` minus its last `/` (a query string ends it otherwise)
    uri.strip_suffix('/').unwrap_or(uri)
}

fn append_query(mut url: String, query: Option<&str>) -> String {
    if let Some(q) = query {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    url
}

fn available(b: &Backend) -> bool {
    matches!(b.target, Target::Endpoints(_) | Target::ExternalName { .. })
}

/// Server level, before any location: 414/494 (sent as 400) for a request head over
/// `large-client-header-buffers` ([`head_too_large`]), 400 for framing nginx refuses
/// ([`bad_framing`]), 403
/// for a client in the ConfigMap's `block-cidrs` (nginx `deny` in the http block, whatever the
/// host) or whose User-Agent / Referer is in `block-user-agents` / `block-referers`.
pub fn server_refusal(
    req: &RequestHeader,
    client: Option<std::net::IpAddr>,
    cfg: &crate::configmap::ControllerConfig,
) -> Option<u16> {
    if let Some(code) = head_too_large(req, cfg.large_client_header_buffers) {
        return Some(code);
    }
    if bad_framing(req) {
        return Some(400);
    }
    if let (Some(blocked), Some(ip)) = (&cfg.block_cidrs, client) {
        if blocked.contains(ip) {
            return Some(403);
        }
    }
    let header = |name: http::HeaderName| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let listed = |list: &Option<crate::configmap::HeaderBlocklist>, value: &str| {
        list.as_ref().is_some_and(|l| l.matches(value))
    };
    if listed(&cfg.block_user_agents, header(http::header::USER_AGENT))
        || listed(&cfg.block_referers, header(http::header::REFERER))
    {
        return Some(403);
    }
    None
}

/// nginx's `large_client_header_buffers`: the request line must fit one buffer (else 414), so
/// must every header line (else 400, nginx's "Request Header Or Cookie Too Large"), and the
/// whole head must fit the buffers together (else 400). Sizes as on the wire (HTTP/1.1 lines
/// with CRLF; h2 fields counted the same way).
/// nginx's internal `NGX_HTTP_REQUEST_HEADER_TOO_LARGE`: answered as 400 with the page
/// "400 Request Header Or Cookie Too Large" ([`super::response::respond_with_more`]).
pub const HEADER_TOO_LARGE: u16 = 494;

pub fn head_too_large(
    req: &RequestHeader,
    buffers: crate::configmap::HeaderBuffers,
) -> Option<u16> {
    let line = req.method.as_str().len() + req.raw_path().len() + " HTTP/1.1\r\n".len() + 1;
    if line as u64 > buffers.size {
        return Some(414);
    }
    let mut total = line as u64;
    for (name, value) in &req.headers {
        let field = (name.as_str().len() + 2 + value.len() + 2) as u64;
        if field > buffers.size {
            return Some(HEADER_TOO_LARGE);
        }
        total += field;
    }
    (total > buffers.number.saturating_mul(buffers.size)).then_some(HEADER_TOO_LARGE)
}

/// A request whose framing nginx refuses with 400 before anything else: more than one
/// Content-Length, or one that is not a plain decimal number (a list like `5, 5` included).
pub fn bad_framing(req: &RequestHeader) -> bool {
    let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => false,
        (Some(_), Some(_)) => true,
        (Some(v), None) => {
            let v = v.as_bytes();
            v.is_empty() || !v.iter().all(u8::is_ascii_digit)
        }
    }
}

/// The rewrite phase of a request, pure: route lookup, server- and location-level redirects,
/// rewrite-target, and the no-endpoints answer.
pub fn decide(
    table: &RouteTable,
    req: &RequestHeader,
    conn: &Conn<'_>,
    fx: &mut SnippetEffects,
) -> Decision {
    let host = request_host(req);
    let query = req.uri.query();
    let norm = match path::normalize(req.uri.path()) {
        Ok(p) => p,
        Err(_) => return Decision::Respond(400, None),
    };
    let server = table.server_for(host);
    if let Some(target) = &server.redirect_to {
        let uri = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return Decision::Redirect(
            table.config.tls.http_redirect_code,
            format!(
                "{}://{}:{}{}",
                conn.scheme,
                target,
                conn.port,
                strip_trailing_slash(uri)
            ),
        );
    }
    if &*norm == "/" {
        if let Some(root) = &server.app_root {
            return Decision::Redirect(302, format!("{}://{}{}", conn.scheme, host, root));
        }
    }
    if server.snippet.is_none() {
        let route = server.lookup(&norm);
        if route.policy.snippet.is_none() {
            return decide_route(table, req, conn, route.clone(), &norm, None);
        }
    }
    // snippets: the server snippet's rewrite phase, then the location search (its `location`
    // blocks with the Ingress's), each location's rewrite phase, searched again after a
    // rewrite as nginx does
    let view = RequestView {
        scheme: conn.scheme,
        http_host: host,
        request_uri: req.uri.path_and_query().map_or("/", |p| p.as_str()),
        method: req.method.as_str(),
        remote_addr: conn.remote_addr,
        server_port: conn.server_port,
        headers: &req.headers,
        locals: None,
    };
    let request_id = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| table.config.generate_request_id.then(new_request_id))
        .unwrap_or_default();
    fx.request_id = Some(request_id.clone()).filter(|id| !id.is_empty());
    let mut locals = Locals {
        uri: norm.to_string(),
        args: query.unwrap_or("").to_string(),
        server_name: server.name.clone(),
        request_id,
        ..Locals::default()
    };
    let server_snippet = server.snippet.as_deref();
    let mut scopes: Vec<&Scope> = Vec::new();
    let mut stopped = false;
    if let Some(sp) = server_snippet {
        scopes.push(&sp.scope);
        let o = snippet::rewrite(sp, &view, &mut locals);
        scopes.extend(o.matched.iter().copied());
        if let Some(d) = answer(o.flow, None, table, conn, host) {
            fx.finish(&scopes, sp, Some(sp), &view, &locals);
            return d;
        }
    }
    // A snippet `location` takes the request (the server snippet's, or one nested in the
    // Ingress's location): its rewrite phase, then its `return`, else its access rules and 404
    // (nginx serves a file from its root, which ingress-nginx's image does not have; no
    // proxy_pass is inherited into a location). A rewrite asking for a new search continues.
    macro_rules! take_location {
        ($loc:expr, $route:expr) => {{
            let loc = $loc;
            let mut sc = scopes.clone();
            sc.push(&loc.program.scope);
            let o = snippet::rewrite(&loc.program, &view, &mut locals);
            sc.extend(o.matched.iter().copied());
            if o.research {
                continue;
            }
            fx.finish(&sc, &loc.program, server_snippet, &view, &locals);
            fx.server_location = true;
            if let Some(d) = answer(o.flow, $route, table, conn, host) {
                return d;
            }
            return Decision::SnippetLocation;
        }};
    }
    let mut cycles = 0;
    let (route, outcome_stopped, changed) = loop {
        cycles += 1;
        if cycles > snippet::MAX_CYCLES {
            return Decision::Respond(500, None);
        }
        let found = snippet::find(server, server_snippet, &locals.uri);
        let route = match found {
            snippet::Found::Snippet(loc) => take_location!(loc, None),
            snippet::Found::Route(r) => r.clone(),
        };
        // the location's own variables ($namespace, $service_name, ...)
        if let Some(id) = &route.ingress {
            locals.namespace = id.namespace.clone();
            locals.ingress_name = id.name.clone();
            let (svc, port) = super::errors::service_and_port(&route.backend.name, Some(id));
            locals.service_name = svc.into();
            locals.service_port = port.into();
        }
        locals.location_path = route.location_path().into();
        locals.upstream_name = route.backend.name.clone();
        // a location nested in the Ingress's location by its configuration snippet
        if let Some(loc) = route
            .policy
            .snippet
            .as_deref()
            .and_then(|p| snippet::find_nested(p, &locals.uri))
        {
            if let Some(d) = location_entry(&route, req) {
                return d;
            }
            take_location!(loc, Some(&route));
        }
        if let Some(d) = location_entry(&route, req) {
            return d;
        }
        let pol = &route.policy;
        let Some(p) = pol.snippet.as_deref() else {
            if let Some(sp) = server_snippet {
                fx.finish(&scopes, sp, Some(sp), &view, &locals);
            }
            break (route, stopped, locals.uri != *norm || cycles > 1);
        };
        let mut sc = scopes.clone();
        sc.push(&p.scope);
        let o = snippet::rewrite(p, &view, &mut locals);
        sc.extend(o.matched.iter().copied());
        if o.research {
            continue;
        }
        fx.finish(&sc, p, server_snippet, &view, &locals);
        if let Some(d) = answer(o.flow, Some(&route), table, conn, host) {
            return d;
        }
        stopped |= o.stopped;
        let changed = o.uri_changed || locals.uri != *norm || cycles > 1;
        break (route, stopped, changed);
    };
    if outcome_stopped {
        // `break`: the location's own rewrite directives (its redirect annotations and
        // rewrite-target) do not run; the URI as the snippet left it goes upstream
        let uri = changed.then(|| {
            rewrite::with_query(
                &locals.uri,
                Some(&locals.args)
                    .filter(|a| !a.is_empty())
                    .map(|a| a.as_str()),
            )
        });
        return proxy_route(table, req, conn, route, uri, None);
    }
    let uri = locals.uri.clone();
    let args = locals.args.clone();
    let new_uri =
        changed.then(|| rewrite::with_query(&uri, Some(args.as_str()).filter(|a| !a.is_empty())));
    decide_route(table, req, conn, route, &uri, new_uri.map(|u| (u, args)))
}

/// What a location answers before its own rewrite directives: 503 when it is denied, the CORS
/// preflight (an nginx `if` + `return 204` before its redirects, rewrites and the Lua phase:
/// ssl-redirect, no endpoints, limits and auth).
fn location_entry(route: &Arc<Route>, req: &RequestHeader) -> Option<Decision> {
    let pol = &route.policy;
    if pol.denied {
        return Some(Decision::Respond(503, Some(route.clone())));
    }
    let cors = pol.cors.as_ref()?;
    let origin = req.headers.get("origin").and_then(|v| v.to_str().ok());
    (req.method == http::Method::OPTIONS && cors.allow_origin(origin).is_some())
        .then(|| Decision::Preflight(route.clone()))
}

/// A snippet's `return` or redirect as the request's answer (`None`: go on).
fn answer(
    flow: snippet::Flow,
    route: Option<&Arc<Route>>,
    table: &RouteTable,
    conn: &Conn<'_>,
    host: &str,
) -> Option<Decision> {
    let relative =
        route.is_some_and(|r| r.policy.relative_redirects) || table.config.relative_redirects;
    match flow {
        snippet::Flow::Next => None,
        snippet::Flow::Close => Some(Decision::Close),
        snippet::Flow::Respond(code, text) => Some(Decision::Text(code, text, route.cloned())),
        snippet::Flow::Redirect(code, url) => {
            let url = if url.starts_with('/') && !relative {
                format!("{}://{}{url}", conn.scheme, crate::route::strip_port(host))
            } else {
                url
            };
            Some(Decision::Redirect(code, url))
        }
    }
}

/// From the route found to the decision: its redirects, rewrite-target, ssl-redirect, canary
/// and upstream. `snippet_uri`: the URI (with query) a snippet rewrote the request to, and its
/// query.
fn decide_route(
    table: &RouteTable,
    req: &RequestHeader,
    conn: &Conn<'_>,
    route: Arc<Route>,
    norm: &str,
    snippet_uri: Option<(String, String)>,
) -> Decision {
    let host = request_host(req);
    if let Some(d) = location_entry(&route, req) {
        return d;
    }
    let pol = &route.policy;
    if let Some(r) = &pol.redirect {
        return Decision::Redirect(r.code, redirect_target(&r.url, pol, conn, host));
    }
    let query = match &snippet_uri {
        Some((_, args)) => Some(args.as_str()).filter(|a| !a.is_empty()),
        None => req.uri.query(),
    };
    let mut new_uri = snippet_uri.as_ref().map(|(u, _)| u.clone());
    let mut forwarded_prefix = None;
    if let (Some(target), Some(re)) = (&pol.rewrite_target, &route.rewrite) {
        if let Some(new_path) = rewrite::expand(re, norm, target) {
            if rewrite::is_absolute(&new_path) {
                return Decision::Redirect(302, append_query(new_path, query));
            }
            new_uri = Some(rewrite::with_query(&new_path, query));
            forwarded_prefix = pol
                .x_forwarded_prefix
                .as_deref()
                .and_then(|x| rewrite::expand(re, norm, x));
        }
    }
    proxy_route(table, req, conn, route, new_uri, forwarded_prefix)
}

/// ssl-redirect, then the canary decision and the upstream.
fn proxy_route(
    table: &RouteTable,
    req: &RequestHeader,
    conn: &Conn<'_>,
    route: Arc<Route>,
    new_uri: Option<String>,
    forwarded_prefix: Option<String>,
) -> Decision {
    let host = request_host(req);
    let pol = &route.policy;
    // ssl-redirect / force-ssl-redirect (Lua in ingress-nginx's rewrite phase, after the
    // location's own redirects and rewrite), on `$pass_access_scheme`, to `$best_http_host`
    if conn.pass_scheme == "http" {
        let uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(location) =
            super::tls::redirect_location(table, &route, host, conn.best_host, uri)
        {
            return Decision::Redirect(table.config.tls.http_redirect_code, location);
        }
    }
    if route.tls.upstream.denied {
        return Decision::Respond(503, Some(route));
    }
    // a canary merged onto this route's upstream may take the request (when it can serve)
    let (chosen, canary) = match table.canary_for(&route.backend.name) {
        Some(c)
            if available(&c.backend)
                && super::canary::serves(
                    table.affinity_for(&route.backend.name),
                    table.affinity_for(&c.backend.name),
                    &c.policy,
                    &req.headers,
                    super::canary::roll,
                ) =>
        {
            (&c.backend, true)
        }
        _ => (&route.backend, false),
    };
    let (backend, fallback_code) = match chosen.target {
        // the default backend answers in nginx's content phase: after the access phase, so a
        // server root location with its Ingress's auth authenticates first
        Target::NotFound => (chosen.clone(), Some(404)),
        Target::Unavailable => match &pol.fallback {
            Some(fb) if available(fb) => (fb.clone(), Some(503)),
            _ => return Decision::Respond(503, Some(route)),
        },
        Target::Endpoints(_) | Target::ExternalName { .. } => (chosen.clone(), None),
    };
    Decision::Proxy {
        route,
        backend,
        new_uri,
        forwarded_prefix,
        fallback_code,
        canary,
    }
}

/// What the snippets that ran did to the rest of the request: the response header operations
/// (values expanded), input header changes, upstream headers and the access rules in effect.
#[derive(Debug, Default)]
pub struct SnippetEffects {
    pub prepared: Option<Box<snippet::Prepared>>,
    pub input: Vec<(NamePat, Option<HeaderValue>, bool)>,
    /// `proxy_set_header` (`None`: removed).
    pub upstream: Vec<(HeaderName, Option<HeaderValue>)>,
    /// `allow`/`deny` of the innermost snippet that has any.
    pub access: Vec<AccessRule>,
    /// `access` comes from the server snippet (it applies only where the location has no
    /// rules of its own).
    pub access_inherited: bool,
    /// The request was answered by a server snippet's `location`.
    pub server_location: bool,
    /// The request id the snippets saw (`$req_id`): X-Request-ID and the log use the same.
    pub request_id: Option<String>,
    /// `server_tokens` / `access_log off` of a server snippet (or one of its locations): the
    /// host's locations inherit them (ingress-nginx's locations set neither).
    pub server_tokens: Option<bool>,
    pub access_log: Option<bool>,
    /// `real_ip_header` / `set_real_ip_from` of the location snippet that ran.
    pub real_ip: Option<crate::annotations::snippet::program::RealIp>,
}

impl SnippetEffects {
    /// Record the effect of the innermost program that ran (`p`) under `scopes`.
    fn finish(
        &mut self,
        scopes: &[&Scope],
        p: &Program,
        server: Option<&Program>,
        view: &RequestView<'_>,
        locals: &Locals,
    ) {
        let e = snippet::effective(scopes.iter().copied());
        let mut prep = snippet::Prepared::new(&e, view, locals);
        prep.hide = p.hide.clone();
        prep.pass = p.pass.clone();
        prep.default_type = p
            .settings
            .default_type
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok());
        self.input = snippet::input_headers(e.input, view, locals);
        // a server snippet's proxy_set_header never reaches ingress-nginx's locations (each
        // has proxy_set_header lines of its own, so nothing is inherited)
        let upstream: &[(HeaderName, crate::annotations::template::Template)] =
            if server.is_some_and(|sp| std::ptr::eq(sp, p)) {
                &[]
            } else {
                &p.upstream
            };
        self.upstream = upstream
            .iter()
            .map(|(n, t)| {
                let v = t.expand(&RequestView {
                    locals: Some(locals),
                    ..*view
                });
                (
                    n.clone(),
                    (!v.is_empty())
                        .then(|| HeaderValue::from_str(&v).ok())
                        .flatten(),
                )
            })
            .collect();
        for prog in server.into_iter().chain(std::iter::once(p)) {
            if prog.settings.server_tokens.is_some() {
                self.server_tokens = prog.settings.server_tokens;
            }
            if prog.settings.access_log.is_some() {
                self.access_log = prog.settings.access_log;
            }
        }
        self.real_ip = p.real_ip.clone();
        if !p.access.is_empty() {
            self.access = p.access.clone();
            self.access_inherited = false;
        } else if let Some(sp) = server.filter(|sp| !sp.access.is_empty()) {
            self.access = sp.access.clone();
            self.access_inherited = true;
        }
        self.prepared = Some(Box::new(prep));
    }
}

/// nginx `absolute_redirect on` (ingress-nginx's default): a `return` target starting with `/`
/// becomes `scheme://host/target`, the host without its port (`port_in_redirect off`).
fn redirect_target(url: &str, pol: &Policy, conn: &Conn<'_>, host: &str) -> String {
    if !url.starts_with('/') || pol.relative_redirects {
        return url.to_string();
    }
    format!("{}://{}{url}", conn.scheme, crate::route::strip_port(host))
}

/// The host a request names: the `Host` header, else the URI authority (HTTP/2 `:authority`).
pub fn request_host(req: &RequestHeader) -> &str {
    if let Some(h) = req.headers.get(HOST).and_then(|v| v.to_str().ok()) {
        return h;
    }
    req.uri.authority().map(|a| a.as_str()).unwrap_or("")
}

/// Connection facts the forwarded headers are made of.
pub struct Forwarded<'a> {
    /// Client address (`$remote_addr`).
    pub client_ip: &'a str,
    /// X-Forwarded-For: `$remote_addr`, or `$full_x_forwarded_for` with
    /// compute-full-forwarded-for.
    pub forwarded_for: &'a str,
    /// `$pass_port`.
    pub port: &'a str,
    /// `$pass_access_scheme`.
    pub scheme: &'a str,
    /// `$best_http_host`, port included.
    pub host: &'a str,
    /// ConfigMap `generate-request-id`: a request without X-Request-ID gets one.
    pub generate_request_id: bool,
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static PROXY: HeaderName = HeaderName::from_static("proxy");
static X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
static X_ORIGINAL_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-original-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");

/// How many headers [`set_forwarded_headers`] and the rest of the upstream request filter
/// usually add: room for them is made once, first (patch 20's `reserve_headers`). The upstream
/// request is a clone of the client's, whose maps have no spare room: each of them (values and
/// name case) would otherwise grow two or three times per request.
pub const ADDED_HEADERS: usize = 12;

/// A header pingress sends upstream: its name as nginx writes it, with the parsed name, so
/// Pingora neither parses nor copies the name (carried patch 20; a `HeaderName` made with
/// `from_static` is cloned without allocating).
pub fn named(case: &'static str, name: &'static HeaderName) -> (&'static str, HeaderName) {
    (case, name.clone())
}

/// A new `$request_id`: 32 lower-case hex digits.
pub fn new_request_id() -> String {
    // 128 random bits as 32 lower-case hex digits (`{:032x}`), a byte at a time from a table:
    // no `format!`, no char at a time into a growing String, no 128-bit shifts
    let mut digits = [0u8; 32];
    let bytes = fastrand::u64(..)
        .to_be_bytes()
        .into_iter()
        .chain(fastrand::u64(..).to_be_bytes());
    for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    std::str::from_utf8(&digits)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [HEX[b >> 4], HEX[b & 15]];
        b += 1;
    }
    t
};

/// An IP address as text without a heap allocation (the longest, IPv4-mapped IPv6, is 45
/// bytes).
pub struct IpText {
    buf: [u8; 46],
    len: usize,
}

/// A number in decimal without a heap allocation or the formatting machinery
/// (`X-Forwarded-Port` on every request, several numbers per access log line).
pub struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut n: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// Each octet's decimal digits, padded to three bytes, and how many of them are the text.
const OCTETS: [([u8; 3], usize); 256] = {
    let mut t = [([0u8; 3], 0usize); 256];
    let mut n = 0;
    while n < 256 {
        let (h, d, o) = (
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        );
        t[n] = if n >= 100 {
            ([h, d, o], 3)
        } else if n >= 10 {
            ([d, o, 0], 2)
        } else {
            ([o, 0, 0], 1)
        };
        n += 1;
    }
    t
};

impl IpText {
    pub fn new(ip: std::net::IpAddr) -> IpText {
        use std::io::Write as _;
        let mut buf = [0u8; 46];
        if let std::net::IpAddr::V4(v4) = ip {
            // dotted quad from a table, without the formatting machinery (several times per
            // proxied request): each octet's three bytes copied, the cursor moved by its length
            let mut len = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let (digits, n) = &OCTETS[usize::from(o)];
                buf[len..len + 3].copy_from_slice(digits);
                len += n;
            }
            return IpText { buf, len };
        }
        let mut w = &mut buf[..];
        let len = match write!(w, "{ip}") {
            Ok(()) => 46 - w.len(),
            Err(_) => 0,
        };
        IpText { buf, len }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// nginx's `underscores_in_headers off` with `ignore_invalid_headers on` (ingress-nginx's
/// defaults): a request header whose name has an underscore is ignored, as if not sent.
pub fn drop_underscored_headers(req: &mut RequestHeader) {
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for n in &names {
        req.remove_header(n);
    }
}

/// Which of the names [`set_forwarded_headers`] writes the client's request carries: one pass
/// over its field names instead of a hash lookup per name.
#[derive(Default)]
struct Carried {
    request_id: bool,
    forwarded_for: bool,
    forwarded_host: bool,
    host: bool,
    proxy: bool,
    /// any other name the function writes
    others: bool,
}

impl Carried {
    fn of(req: &RequestHeader) -> Carried {
        let mut c = Carried::default();
        for name in req.headers.keys() {
            match name.as_str() {
                "host" => c.host = true,
                "x-request-id" => c.request_id = true,
                "x-forwarded-for" => c.forwarded_for = true,
                "x-forwarded-host" => c.forwarded_host = true,
                "proxy" => c.proxy = true,
                // the other names come from REPLACED, the one list of them
                n if n.starts_with("x-") && REPLACED.contains(&name) => c.others = true,
                _ => {}
            }
        }
        c
    }
}

/// The names [`set_forwarded_headers`] replaces (X-Request-ID apart: it is kept when set).
static REPLACED: [&HeaderName; 9] = [
    &X_REAL_IP,
    &X_FORWARDED_FOR,
    &X_FORWARDED_HOST,
    &X_FORWARDED_PORT,
    &X_FORWARDED_PROTO,
    &X_FORWARDED_SCHEME,
    &X_SCHEME,
    &X_ORIGINAL_FORWARDED_FOR,
    &X_ORIGINAL_FORWARDED_HOST,
];

/// Set the headers ingress-nginx sets by default (use-forwarded-headers off):
/// X-Request-ID (kept if present, else generated), X-Real-IP, X-Forwarded-For (replaced by the
/// client address; the incoming value is kept as X-Original-Forwarded-For, and X-Forwarded-Host
/// as X-Original-Forwarded-Host), X-Forwarded-Host,
/// -Port, -Proto, -Scheme, X-Scheme; `Proxy` removed (httpoxy). Host is left as the client sent
/// it, and added from `:authority` for HTTP/2 clients.
///
/// With `wire` (an HTTP/1 upstream whose request nothing later rewrites) the added fields are
/// written as lines after the header map (carried patch 23) instead of being inserted into it:
/// no name is hashed into the two maps, about 4,000 instructions per request; the client's
/// copies are removed from the map first, as an insert would replace them.
///
/// Returns the X-Request-ID it generated, if it did.
pub fn set_forwarded_headers(
    req: &mut RequestHeader,
    f: &Forwarded<'_>,
    wire: bool,
) -> Result<Option<String>> {
    let carried = Carried::of(req);
    let has_id = carried.request_id
        && req
            .headers
            .get(&X_REQUEST_ID)
            .is_some_and(|v| !v.is_empty());
    let generated = (!has_id && f.generate_request_id).then(new_request_id);
    let xff = carried
        .forwarded_for
        .then(|| req.headers.get(&X_FORWARDED_FOR).cloned())
        .flatten();
    let xfh = carried
        .forwarded_host
        .then(|| req.headers.get(&X_FORWARDED_HOST).cloned())
        .flatten();
    if wire {
        if carried.forwarded_for || carried.forwarded_host || carried.others {
            for name in REPLACED {
                req.remove_header(name);
            }
        }
        if carried.request_id && generated.is_some() {
            req.remove_header(&X_REQUEST_ID);
        }
    }
    // Names as nginx writes them (kept for the HTTP/1 wire: as wire lines, or in the map's case
    // map), each with its parsed static name for the map: see `named`. On the map path the
    // caller made room for them (`ADDED_HEADERS`).
    let put =
        |req: &mut RequestHeader, case: &'static str, name: &'static HeaderName, value: &[u8]| {
            if wire {
                req.append_wire_header(case, value)
            } else {
                req.insert_header(named(case, name), static_value(value)?)
            }
        };
    if let Some(id) = &generated {
        put(req, "X-Request-ID", &X_REQUEST_ID, id.as_bytes())?;
    }
    if let Some(xff) = xff {
        put(
            req,
            "X-Original-Forwarded-For",
            &X_ORIGINAL_FORWARDED_FOR,
            xff.as_bytes(),
        )?;
    }
    if let Some(xfh) = xfh {
        put(
            req,
            "X-Original-Forwarded-Host",
            &X_ORIGINAL_FORWARDED_HOST,
            xfh.as_bytes(),
        )?;
    }
    put(req, "X-Real-IP", &X_REAL_IP, f.client_ip.as_bytes())?;
    put(
        req,
        "X-Forwarded-For",
        &X_FORWARDED_FOR,
        f.forwarded_for.as_bytes(),
    )?;
    if !f.host.is_empty() {
        put(
            req,
            "X-Forwarded-Host",
            &X_FORWARDED_HOST,
            f.host.as_bytes(),
        )?;
        if !carried.host {
            req.insert_header(HOST, f.host)?;
        }
    }
    put(
        req,
        "X-Forwarded-Port",
        &X_FORWARDED_PORT,
        f.port.as_bytes(),
    )?;
    let scheme = f.scheme.as_bytes();
    put(req, "X-Forwarded-Proto", &X_FORWARDED_PROTO, scheme)?;
    put(req, "X-Forwarded-Scheme", &X_FORWARDED_SCHEME, scheme)?;
    put(req, "X-Scheme", &X_SCHEME, scheme)?;
    if carried.proxy {
        req.remove_header(&PROXY);
    }
    // an h2 request carries an absolute URI; HTTP/1.1 upstreams get origin-form
    if req.uri.authority().is_some() {
        if let Some(pq) = req.uri.path_and_query().cloned() {
            req.set_uri(http::Uri::from(pq));
        }
    }
    Ok(generated)
}

/// The usual schemes and ports without copying them into a new value; anything else copied.
fn static_value(v: &[u8]) -> Result<HeaderValue> {
    Ok(match v {
        b"http" => HeaderValue::from_static("http"),
        b"https" => HeaderValue::from_static("https"),
        b"80" => HeaderValue::from_static("80"),
        b"443" => HeaderValue::from_static("443"),
        _ => HeaderValue::from_bytes(v).map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "invalid forwarded header value",
            )
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/p?q=1", None).unwrap();
        r.insert_header("Host", "app.example.com:8080").unwrap();
        r
    }

    fn get<'a>(r: &'a RequestHeader, n: &str) -> Option<&'a str> {
        r.headers.get(n).map(|v| v.to_str().unwrap())
    }

    /// The fields the upstream gets on the HTTP/1 wire (map and patch-23 lines), as written.
    fn sent(r: &RequestHeader) -> Vec<(String, String)> {
        let mut wire = Vec::new();
        r.header_to_h1_wire(&mut wire);
        String::from_utf8(wire)
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    /// The one value of `n` sent (no duplicate, whatever the case).
    fn sent_one(r: &RequestHeader, n: &str) -> Option<String> {
        let all: Vec<String> = sent(r)
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)
            .collect();
        assert!(all.len() <= 1, "{n} sent {} times: {all:?}", all.len());
        all.into_iter().next()
    }

    fn fwd(host: &str) -> Forwarded<'_> {
        Forwarded {
            client_ip: "10.1.2.3",
            forwarded_for: "10.1.2.3",
            port: "80",
            scheme: "http",
            host,
            generate_request_id: true,
        }
    }

    #[test]
    fn duplicate_or_list_content_length_is_bad_framing() {
        let with = |values: &[&str]| {
            let mut r = RequestHeader::build("POST", b"/", None).unwrap();
            for v in values {
                r.append_header("Content-Length", *v).unwrap();
            }
            bad_framing(&r)
        };
        assert!(!with(&[]));
        assert!(!with(&["5"]));
        assert!(!with(&["0"]));
        assert!(with(&["5", "5"]));
        assert!(with(&["5, 5"]));
        assert!(with(&["-1"]));
        assert!(with(&["0x10"]));
        assert!(with(&[" 5"]));
    }

    #[test]
    fn a_head_over_large_client_header_buffers_is_414_or_400() {
        let buffers = crate::configmap::HeaderBuffers {
            number: 4,
            size: 8192,
        };
        let with = |path_len: usize, headers: &[usize]| {
            let path = format!("/{}", "a".repeat(path_len - 1));
            let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
            for (i, len) in headers.iter().enumerate() {
                r.append_header(format!("x-h{i}"), "v".repeat(*len))
                    .unwrap();
            }
            head_too_large(&r, buffers)
        };
        assert_eq!(with(100, &[100]), None);
        // "GET " + path + " HTTP/1.1\r\n" = 8192 fits one buffer; one byte more does not
        assert_eq!(with(8192 - 15, &[]), None);
        assert_eq!(with(8192 - 14, &[]), Some(414));
        // "x-h0: " + value + "\r\n"
        assert_eq!(with(10, &[8192 - 8]), None);
        assert_eq!(with(10, &[8192 - 7]), Some(HEADER_TOO_LARGE));
        // every line fits, together they do not
        assert_eq!(with(10, &[8000, 8000, 8000]), None);
        assert_eq!(
            with(10, &[8000, 8000, 8000, 8000, 8000]),
            Some(HEADER_TOO_LARGE)
        );
    }

    #[test]
    fn ip_text_is_the_display_form() {
        for ip in [
            "10.1.2.3",
            "0.0.0.0",
            "255.255.255.255",
            "1.20.100.9",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(parsed).as_str(), parsed.to_string());
        }
        for n in [0, 7, 80, 443, 8080, 65535, u64::MAX] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
        // every octet value in every position
        for n in 0..=255u8 {
            let ip = std::net::IpAddr::from([n, 255 - n, n / 3, n % 10]);
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn sets_ingress_nginx_headers() {
        // in the map, and as patch-23 wire lines with the client's copies removed
        for wire in [false, true] {
            let mut r = req();
            r.insert_header("X-Forwarded-For", "1.2.3.4").unwrap();
            r.insert_header("X-Forwarded-Host", "front.example")
                .unwrap();
            r.insert_header("X-Real-IP", "6.6.6.6").unwrap();
            r.insert_header("X-Scheme", "gopher").unwrap();
            r.insert_header("Proxy", "http://evil").unwrap();
            let id = set_forwarded_headers(&mut r, &fwd("app.example.com:8080"), wire).unwrap();
            let one = |n: &str| sent_one(&r, n);
            assert_eq!(one("x-forwarded-for").as_deref(), Some("10.1.2.3"));
            assert_eq!(one("x-original-forwarded-for").as_deref(), Some("1.2.3.4"));
            assert_eq!(
                one("x-original-forwarded-host").as_deref(),
                Some("front.example")
            );
            assert_eq!(one("x-real-ip").as_deref(), Some("10.1.2.3"));
            assert_eq!(
                one("x-forwarded-host").as_deref(),
                Some("app.example.com:8080")
            );
            assert_eq!(one("x-forwarded-port").as_deref(), Some("80"));
            assert_eq!(one("x-forwarded-proto").as_deref(), Some("http"));
            assert_eq!(one("x-forwarded-scheme").as_deref(), Some("http"));
            assert_eq!(one("x-scheme").as_deref(), Some("http"));
            assert_eq!(one("host").as_deref(), Some("app.example.com:8080"));
            assert_eq!(one("proxy"), None);
            let sent_id = one("x-request-id").unwrap();
            assert_eq!(Some(&sent_id), id.as_ref(), "the generated id is returned");
            assert_eq!(sent_id.len(), 32);
            assert!(sent_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            // wire: nothing added to the maps; map: nothing on the side
            assert_eq!(get(&r, "x-real-ip").is_none(), wire);
            assert_eq!(r.wire_headers().is_empty(), !wire);
        }
    }

    #[test]
    fn forwarded_headers_go_upstream_in_nginx_case() {
        for wire in [false, true] {
            let mut r = req();
            set_forwarded_headers(&mut r, &fwd("app.example.com:8080"), wire).unwrap();
            let mut bytes = Vec::new();
            r.header_to_h1_wire(&mut bytes);
            let text = String::from_utf8(bytes).unwrap();
            for line in [
                "X-Request-ID: ",
                "X-Real-IP: 10.1.2.3\r\n",
                "X-Forwarded-For: 10.1.2.3\r\n",
                "X-Forwarded-Host: app.example.com:8080\r\n",
                "X-Forwarded-Port: 80\r\n",
                "X-Forwarded-Proto: http\r\n",
                "X-Forwarded-Scheme: http\r\n",
                "X-Scheme: http\r\n",
            ] {
                assert!(text.contains(line), "{line:?} not in {text:?}");
            }
            let mut r = req();
            let odd = Forwarded {
                port: "8443",
                scheme: "https",
                ..fwd("")
            };
            set_forwarded_headers(&mut r, &odd, wire).unwrap();
            assert_eq!(sent_one(&r, "x-forwarded-port").as_deref(), Some("8443"));
            assert_eq!(sent_one(&r, "x-forwarded-proto").as_deref(), Some("https"));
            let bad = Forwarded {
                port: "80\n",
                ..fwd("")
            };
            assert!(set_forwarded_headers(&mut req(), &bad, wire).is_err());
        }
    }

    #[test]
    fn a_new_request_id_is_32_hex_digits_as_nginx_writes_them() {
        fastrand::seed(7);
        let id = new_request_id();
        fastrand::seed(7);
        let (hi, lo) = (fastrand::u64(..), fastrand::u64(..));
        assert_eq!(id, format!("{hi:016x}{lo:016x}"));
        fastrand::seed(8);
        let small = std::iter::repeat_with(new_request_id).find(|i| i.starts_with('0'));
        assert!(
            small.is_some_and(|i| i.len() == 32),
            "leading zeros are written"
        );
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn keeps_request_id_and_adds_host_for_h2() {
        for wire in [false, true] {
            let mut r = RequestHeader::build("GET", b"/x?y", None).unwrap();
            r.set_uri("http://h2.example.com/x?y".parse().unwrap());
            r.insert_header("X-Request-ID", "abc").unwrap();
            let host = request_host(&r).to_string();
            assert_eq!(host, "h2.example.com");
            let id = set_forwarded_headers(&mut r, &fwd(&host), wire).unwrap();
            assert_eq!(id, None);
            assert_eq!(sent_one(&r, "x-request-id").as_deref(), Some("abc"));
            assert_eq!(get(&r, "host"), Some("h2.example.com"));
            assert_eq!(r.uri.to_string(), "/x?y");
            assert_eq!(sent_one(&r, "x-original-forwarded-for"), None);
            // an empty one is replaced by a generated one
            let mut r = req();
            r.insert_header("X-Request-ID", "").unwrap();
            let id = set_forwarded_headers(&mut r, &fwd(""), wire).unwrap();
            assert_eq!(sent_one(&r, "x-request-id"), id);
            assert!(id.is_some());
        }
    }

    #[test]
    fn generate_request_id_off_sends_none_of_its_own() {
        let off = || Forwarded {
            generate_request_id: false,
            ..fwd("")
        };
        for wire in [false, true] {
            let mut r = req();
            assert_eq!(set_forwarded_headers(&mut r, &off(), wire).unwrap(), None);
            assert_eq!(sent_one(&r, "x-request-id"), None);
            let mut r = req();
            r.insert_header("X-Request-ID", "mine").unwrap();
            set_forwarded_headers(&mut r, &off(), wire).unwrap();
            assert_eq!(sent_one(&r, "x-request-id").as_deref(), Some("mine"));
        }
    }

    #[test]
    fn underscored_header_names_are_dropped() {
        let mut r = req();
        r.insert_header("X_Custom", "1").unwrap();
        r.insert_header("X-Custom", "2").unwrap();
        drop_underscored_headers(&mut r);
        assert_eq!(get(&r, "x_custom"), None);
        assert_eq!(get(&r, "x-custom"), Some("2"));
    }
}
