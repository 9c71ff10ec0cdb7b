//! The Pingora `ProxyHttp` implementation. Phases stay short: each request loads the route
//! table once (kept in the context through every phase); decisions are made by pure helpers
//! (`request::decide`, `rewrite`, `limit`) tested without sockets.
//!
//! Request order follows ingress-nginx (nginx phases + its Lua): server-level redirects
//! (from-to-www, app-root) -> location -> permanent/temporal redirect, rewrite-target,
//! 503 without endpoints -> limit-connections, limit-rps/rpm -> deny/allow lists -> security
//! keys not implemented yet (503, fail closed) -> body size -> proxy with retries
//! (proxy-next-upstream) -> custom-http-errors interception. Once a response header has gone
//! out, a failure aborts the message (`response::end_after_header`), never completes it.

pub mod affinity;
pub mod auth;
pub mod balance;
pub mod body;
pub mod canary;
pub mod compression;
pub mod errors;
pub mod forwarded;
pub mod limit;
pub mod mirror;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod snippet;
pub mod subrequest;
pub mod tls;
pub mod upstream_headers;
pub mod waf;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::annotations::balance::LoadBalance;
use crate::publish::TableStore;
use crate::route::{Backend, Route, RouteTable, Target};
use limit::{ConnGuard, ConnLimiter, RateLimiter};
use request::Decision;

pub struct Proxy {
    store: TableStore,
    rate: RateLimiter,
    conns: Arc<ConnLimiter>,
    connector: Connector,
    access_log: crate::access_log::AccessLog,
    /// Basic-auth verification results and cached auth responses (outlive table swaps).
    auth: auth::AuthState,
    /// `mirror-target` copies in flight and their connection pool.
    mirrors: mirror::Mirrors,
}

impl Proxy {
    pub fn new(store: TableStore) -> Self {
        Proxy {
            store,
            rate: RateLimiter::new(),
            conns: Arc::new(ConnLimiter::default()),
            connector: Connector::new(None),
            access_log: crate::access_log::AccessLog::stdout(),
            auth: auth::AuthState::default(),
            mirrors: mirror::Mirrors::default(),
        }
    }
}

/// Per-request state.
pub struct Ctx {
    /// When the request started (request_time).
    start: Instant,
    /// `$remote_addr`: the peer, or the client the trusted proxies report (realip).
    client_ip: Option<IpAddr>,
    /// A canary Ingress's backend serves this request (`$proxy_alternative_upstream_name`).
    canary: bool,
    /// Set-Cookie of a new affinity session (sent with the upstream's response).
    affinity_cookie: Option<String>,
    /// When the first upstream attempt started (upstream_response_time, and the budget of
    /// proxy-next-upstream-timeout).
    upstream_started: Option<Instant>,
    /// `load-balance: ewma`: the endpoint of the last attempt and when it started.
    ewma_attempt: Option<(SocketAddr, Instant)>,
    /// `use-gzip` / `enable-brotli`: the coding this request's response may get.
    coding: Option<compression::Coding>,

    /// `limit-rate`: response body bytes sent so far, and when the first went.
    rate_sent: u64,
    rate_start: Option<Instant>,
    /// Status of the last upstream response header.
    upstream_status: Option<u16>,
    /// The HTTP status the log and metrics report when the response sent says otherwise (a
    /// gRPC error answered as `200` with a `grpc-status`).
    logged_status: Option<u16>,
    /// X-Request-ID sent upstream (`$req_id`).
    request_id: Option<String>,
    table: Option<Arc<RouteTable>>,
    route: Option<Arc<Route>>,
    /// The backend proxied to (the route's, or its default-backend fallback).
    backend: Option<Arc<Backend>>,
    /// Endpoints already tried for this request.
    tried: Vec<SocketAddr>,
    /// rewrite-target result (escaped path + query) and the expanded x-forwarded-prefix.
    new_uri: Option<String>,
    forwarded_prefix: Option<String>,
    conn_guard: Option<ConnGuard>,
    body_bytes: u64,
    /// Upstream status to retry on another endpoint (proxy-next-upstream http_*).
    status_retry: bool,
    /// Upstream status to replace with the error backend's answer (custom-http-errors).
    intercept: Option<u16>,
    /// The client came in on the HTTPS listener.
    https: bool,
    /// `Strict-Transport-Security` value for this HTTPS request (ConfigMap `hsts*`).
    hsts: Option<String>,
    /// pingress answered `Expect: 100-continue` (the header is not forwarded).
    continued: bool,
    /// The request body read whole before the upstream was contacted (request buffering).
    buffered: Option<body::Buffered>,
    /// What the access phase's authentication passes on (upstream headers, cookies).
    auth: Option<auth::Granted>,
    /// `ssl-client-*` headers of a host with `auth-tls-*`.
    client_cert_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// CORS of the route and the `Access-Control-Allow-Origin` this request gets.
    cors: Option<(Arc<crate::annotations::cors::Cors>, http::HeaderValue)>,
    /// What the snippets that ran left for the later phases.
    pub snippet: request::SnippetEffects,
    /// ModSecurity's transaction (a route with `enable-modsecurity`).
    waf: waf::WafState,
}

/// A request on a kept-alive client connection follows (see `persist_connection_context`).
struct KeptAlive;

impl Ctx {
    fn policy(&self) -> Option<&crate::route::Policy> {
        self.route.as_deref().map(|r| &*r.policy)
    }

    /// Another attempt is allowed by proxy-next-upstream-tries and -timeout.
    fn may_retry(&self) -> bool {
        let Some(p) = self.policy() else { return false };
        let tries_ok =
            p.next_upstream_tries == 0 || self.tried.len() < p.next_upstream_tries as usize;
        let time_ok = match (p.next_upstream_timeout, self.upstream_started) {
            (Some(limit), Some(t)) => t.elapsed() < limit,
            _ => true,
        };
        tries_ok && time_ok
    }

    /// An endpoint not tried yet exists (a status or read-timeout retry needs another one).
    fn has_untried(&self) -> bool {
        match self.backend.as_deref().map(|b| &b.target) {
            Some(Target::Endpoints(e)) => e.addrs().iter().any(|a| !self.tried.contains(a)),
            _ => false,
        }
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// What nginx variables (auth-url, upstream-hash-by, ...) expand against for this request.
fn request_view<'a>(
    session: &'a Session,
    https: bool,
    ip: Option<&'a request::IpText>,
) -> crate::annotations::template::RequestView<'a> {
    let req = session.req_header();
    crate::annotations::template::RequestView {
        scheme: if https { "https" } else { "http" },
        http_host: request::request_host(req),
        request_uri: req.uri.path_and_query().map_or("/", |p| p.as_str()),
        method: req.method.as_str(),
        remote_addr: ip.map_or("", |t| t.as_str()),
        // ingress-nginx maps the HTTPS listener to 443
        server_port: if https { 443 } else { server_port(session) },
        headers: &req.headers,
        locals: None,
    }
}

fn server_port(session: &Session) -> u16 {
    session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The client connection's timeouts from the ConfigMap: ingress-nginx's `keep-alive` (75 s)
/// instead of Pingora's unbounded HTTP/1.1 keep-alive (a connection that will close stays
/// closing), and `client-body-timeout` (Pingora's default is the same 60 s; h2 ignores it).
fn client_timeouts(session: &mut Session, cfg: &crate::configmap::ControllerConfig) {
    if session.as_ref().get_keepalive().is_some() {
        session.set_keepalive((cfg.keep_alive > 0).then_some(cfg.keep_alive));
    }
    if cfg.client_body_timeout != Duration::from_secs(60) {
        session.set_read_timeout(Some(cfg.client_body_timeout));
    }
}

/// Write pingress's own page (`code`, optional `Location`), with HSTS on HTTPS and the
/// route's CORS headers (nginx's `more_set_headers`: every status).
async fn reply(session: &mut Session, ctx: &Ctx, code: u16, location: Option<&str>) -> Result<()> {
    reply_with(session, ctx, code, location, &[]).await
}

async fn reply_with(
    session: &mut Session,
    ctx: &Ctx,
    code: u16,
    location: Option<&str>,
    more: &[(http::HeaderName, http::HeaderValue)],
) -> Result<()> {
    let mut headers: Vec<(&'static str, &str)> = Vec::with_capacity(8);
    if server_tokens(ctx) {
        headers.push(("Server", SERVER_TOKEN));
    }
    if let Some(v) = ctx.hsts.as_deref() {
        headers.push(("Strict-Transport-Security", v));
    }
    if let Some(l) = location {
        headers.push(("Location", l));
    }
    headers.extend(cors_headers(ctx).filter_map(|(k, v)| Some((k, v.to_str().ok()?))));
    if let Some(coding) = ctx.coding {
        // nginx's gzip filter: only 403/404 of this page, and only over the min length
        let page = response::error_page(code).len() as u64;
        let keep = matches!(code, 403 | 404)
            && ctx
                .table
                .as_deref()
                .is_some_and(|t| page >= t.config.compression(coding).min_length);
        if !keep {
            gzip_off(session);
        }
    }
    response::respond_page(
        session,
        code,
        &headers,
        more,
        None,
        ctx.snippet.prepared.as_deref(),
    )
    .await
}

/// Switch Pingora's compression module off for this response.
fn gzip_off(session: &mut Session) {
    if let Some(c) = session
        .downstream_modules_ctx
        .get_mut::<pingora::modules::http::compression::ResponseCompression>()
    {
        c.adjust_level(0);
    }
}

/// `Server` with ConfigMap `server-tokens: "true"` (nginx: its name and version).
const SERVER_TOKEN: &str = concat!("pingress/", env!("CARGO_PKG_VERSION"));

fn server_tokens(ctx: &Ctx) -> bool {
    if let Some(v) = ctx
        .policy()
        .and_then(|p| p.server_tokens)
        .or(ctx.snippet.server_tokens)
    {
        return v;
    }
    ctx.table.as_ref().is_some_and(|t| t.config.server_tokens)
}

/// A snippet's `proxy_pass_header Server`: the upstream's `Server` reaches the client.
fn passes_server(ctx: &Ctx) -> bool {
    ctx.snippet
        .prepared
        .as_ref()
        .is_some_and(|p| p.pass.contains(&http::header::SERVER))
}

/// A snippet's `allow`/`deny` list, in the access phase. nginx keeps one list per location:
/// the Ingress's allow/deny annotations come first (an allowlist ends with `deny all`), then
/// the configuration snippet's rules; a server snippet's rules apply only to a location that
/// has none of its own.
fn snippet_access(ctx: &Ctx, pol: &crate::route::Policy, ip: Option<IpAddr>) -> bool {
    let fx = &ctx.snippet;
    if fx.access.is_empty() {
        return true;
    }
    match &pol.access {
        crate::annotations::access::Access::Open => {}
        _ if fx.access_inherited => return true,
        crate::annotations::access::Access::Rules { allow: Some(_), .. } => return true,
        _ => {}
    }
    snippet::access_allows(&fx.access, ip)
}

/// The CORS headers this request's response carries (none when CORS is off or the Origin is
/// not allowed): `Access-Control-Allow-Origin`, then the route's prepared values.
fn cors_headers(ctx: &Ctx) -> impl Iterator<Item = (&'static str, &http::HeaderValue)> {
    ctx.cors.iter().flat_map(|(cors, origin)| {
        std::iter::once(("Access-Control-Allow-Origin", origin))
            .chain(cors.headers().iter().map(|(k, v)| (*k, v)))
    })
}

/// Remember the route's CORS decision for this request.
fn set_cors(ctx: &mut Ctx, route: &Route, req: &RequestHeader) {
    if let Some(cors) = &route.policy.cors {
        let origin = req.headers.get("origin").and_then(|v| v.to_str().ok());
        let allow = cors.allow_origin(origin).and_then(|o| match o {
            "*" => Some(http::HeaderValue::from_static("*")),
            o => http::HeaderValue::from_str(o).ok(),
        });
        if let Some(allow) = allow {
            ctx.cors = Some((cors.clone(), allow));
        }
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            client_ip: None,
            canary: false,
            affinity_cookie: None,
            upstream_started: None,
            ewma_attempt: None,
            coding: None,
            rate_sent: 0,
            rate_start: None,
            upstream_status: None,
            logged_status: None,
            request_id: None,
            table: None,
            route: None,
            backend: None,
            tried: Vec::new(),
            new_uri: None,
            forwarded_prefix: None,
            conn_guard: None,
            body_bytes: 0,
            status_retry: false,
            intercept: None,
            https: false,
            hsts: None,
            continued: false,
            buffered: None,
            auth: None,
            client_cert_headers: Vec::new(),
            cors: None,
            snippet: request::SnippetEffects::default(),
            waf: waf::WafState::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // the table this request is served from, loaded once in early_request_filter
        let table = match &ctx.table {
            Some(t) => t.clone(),
            None => self.store.load_full(),
        };
        // HTTP/1.1 pipelining as nginx: a request sent before the previous answer is served
        // next, in order (Pingora drops it with the connection otherwise)
        session.as_mut().set_pipelining_enabled(true);
        // every answer from here on (redirects included) reads the table's config
        ctx.table = Some(table.clone());
        ctx.https = tls::is_https(session);
        if ctx.https {
            ctx.hsts = table.config.tls.hsts.header_value();
        }
        client_timeouts(session, &table.config);
        let ip = forwarded::real_ip(
            session.req_header(),
            client_ip(session),
            &table.config.forwarded,
        );
        ctx.client_ip = ip;
        if let Some(code) = request::server_refusal(session.req_header(), ip, &table.config) {
            if code != 403 {
                session.set_keepalive(None);
            }
            reply(session, ctx, code, None).await?;
            return Ok(true);
        }
        // client certificates are checked before anything else on HTTPS (nginx's handshake);
        // plain HTTP gets its redirects first
        if ctx.https && !self.client_cert_gate(session, ctx, &table).await? {
            return Ok(true);
        }
        let decision = {
            let req = session.req_header();
            let scheme = if ctx.https { "https" } else { "http" };
            let host = request::request_host(req);
            let view = forwarded::view(
                req,
                scheme,
                host,
                server_port(session),
                &table.config.forwarded,
            );
            let ip_text = ip.map(request::IpText::new);
            request::decide(
                &table,
                req,
                &request::Conn {
                    scheme,
                    port: server_port(session),
                    pass_scheme: view.scheme,
                    best_host: view.host,
                    remote_addr: ip_text.as_ref().map_or("", |t| t.as_str()),
                    server_port: if ctx.https { 443 } else { server_port(session) },
                },
                &mut ctx.snippet,
            )
        };
        if !ctx.snippet.input.is_empty() {
            let changes = std::mem::take(&mut ctx.snippet.input);
            snippet::apply_input(session.req_header_mut(), changes);
        }
        if ctx.request_id.is_none() {
            ctx.request_id = ctx.snippet.request_id.take();
        }
        // a snippet's real_ip_header / set_real_ip_from: nginx's realip in the preaccess phase
        let ip = match ctx.snippet.real_ip.take() {
            Some(r) => {
                let cfg = crate::configmap::ForwardedHeaders {
                    use_forwarded_headers: true,
                    use_proxy_protocol: false,
                    forwarded_for_header: r.header,
                    proxy_real_ip_cidr: r.from,
                    ..table.config.forwarded.clone()
                };
                let resolved = forwarded::real_ip(session.req_header(), ip, &cfg);
                ctx.client_ip = resolved;
                resolved
            }
            None => ip,
        };
        let (route, backend, fallback_code) = match decision {
            Decision::Respond(code, route) => {
                if let Some(r) = route {
                    set_cors(ctx, &r, session.req_header());
                    ctx.backend = Some(r.backend.clone());
                    ctx.route = Some(r);
                }
                reply(session, ctx, code, None).await?;
                return Ok(true);
            }
            Decision::Redirect(code, location) => {
                reply(session, ctx, code, Some(&location)).await?;
                return Ok(true);
            }
            Decision::Text(code, text, route) => {
                if let Some(r) = route {
                    set_cors(ctx, &r, session.req_header());
                    ctx.backend = Some(r.backend.clone());
                    ctx.route = Some(r);
                }
                Box::pin(self.snippet_answer(session, ctx, code, text)).await?;
                return Ok(true);
            }
            Decision::SnippetLocation => {
                let code = if snippet::access_allows(&ctx.snippet.access, ip) {
                    404
                } else {
                    403
                };
                Box::pin(self.snippet_answer(session, ctx, code, None)).await?;
                return Ok(true);
            }
            Decision::Close => {
                return Error::e_explain(ErrorType::HTTPStatus(0), "snippet: return 444");
            }
            Decision::Preflight(r) => {
                set_cors(ctx, &r, session.req_header());
                ctx.backend = Some(r.backend.clone());
                ctx.route = Some(r);
                let mut h = ResponseHeader::build(204, Some(8))?;
                for (k, v) in cors_headers(ctx) {
                    h.insert_header(k, v.clone())?;
                }
                h.insert_header("Content-Type", "text/plain charset=UTF-8")?;
                h.insert_header("Content-Length", "0")?;
                session.write_response_header(Box::new(h), true).await?;
                return Ok(true);
            }
            Decision::Proxy {
                route,
                backend,
                new_uri,
                forwarded_prefix,
                fallback_code,
                canary,
            } => {
                ctx.canary = canary;
                ctx.new_uri = new_uri;
                ctx.forwarded_prefix = forwarded_prefix;
                (route, backend, fallback_code)
            }
        };
        if !ctx.https && !self.client_cert_gate(session, ctx, &table).await? {
            return Ok(true);
        }
        set_cors(ctx, &route, session.req_header());
        ctx.route = Some(route.clone());
        ctx.backend = Some(backend.clone());
        let pol = &route.policy;
        // ModSecurity: request head and body (nginx's rewrite and preaccess phases)
        let body_admitted = match &pol.waf {
            Some(w) => {
                if Box::pin(self.waf_request(session, ctx, w, &route, ip)).await? {
                    return Ok(true);
                }
                true
            }
            None => false,
        };

        if let (Some(l), Some(ip)) = (&pol.limits, ip) {
            if !l.exempt(ip) {
                if let Some(max) = l.connections {
                    match self.conns.acquire(&l.zone, ip, max) {
                        Some(g) => ctx.conn_guard = Some(g),
                        None => {
                            crate::metrics::CONFIG
                                .rate_limited
                                .with_label_values(&["conn"])
                                .inc();
                            reply(session, ctx, l.conn_status, None).await?;
                            return Ok(true);
                        }
                    }
                }
                let m = l.burst_multiplier;
                let limits = [(0u8, l.rps, 1u64), (1u8, l.rpm, 60u64)];
                for (kind, rate, secs) in limits {
                    let Some(rate) = rate else { continue };
                    let burst = rate.saturating_mul(m);
                    let per = Duration::from_secs(secs);
                    if !self
                        .rate
                        .check(&l.zone, kind, ip, limit::Rate { rate, per, burst })
                    {
                        crate::metrics::CONFIG
                            .rate_limited
                            .with_label_values(&["req"])
                            .inc();
                        reply(session, ctx, l.req_status, None).await?;
                        return Ok(true);
                    }
                }
            }
        }
        // access phase: a security key that cannot be honoured is never served open
        if pol.fail_closed.is_some() {
            let code = pol.access.check(ip).unwrap_or(503);
            reply(session, ctx, code, None).await?;
            return Ok(true);
        }
        if !snippet_access(ctx, pol, ip) {
            reply(session, ctx, 403, None).await?;
            return Ok(true);
        }
        // the IP lists inline; authentication (subrequests, a large future) boxed, so every
        // request's filter future stays small
        if !pol.auth.is_active() {
            if let Some(code) = pol.access.check(ip) {
                reply(session, ctx, code, None).await?;
                return Ok(true);
            }
        } else if !Box::pin(self.access(session, ctx, pol, ip)).await? {
            return Ok(true);
        }
        if !body_admitted && self.admit_body(session, ctx, &route).await? {
            return Ok(true);
        }
        if let Some(m) = &pol.mirror {
            Box::pin(self.mirror(session, ctx, pol, m)).await?;
        }
        if let Some(code) = fallback_code {
            // the default backend (404), or the default-backend annotation when the route has
            // no endpoints
            Box::pin(self.serve_error(session, ctx, code, &backend)).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        waf::streamed_body_piece(&mut ctx.waf, body.as_ref(), end_of_stream)?;
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            let limit = ctx.policy().map(|p| p.body_limit).unwrap_or(0);
            if limit > 0 && ctx.body_bytes > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over proxy-body-size",
                );
            }
        }
        Ok(())
    }

    async fn request_body_replay(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Option<(Bytes, bool)>> {
        match ctx.buffered.as_mut() {
            Some(body) => body.next_chunk().await.map(Some),
            None => Ok(None),
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(body) = ctx.buffered.as_mut() {
            // every attempt sends the buffered body from its start
            body.rewind();
        }
        ctx.upstream_started.get_or_insert_with(Instant::now);
        // borrowed field by field: no reference taken on the shared route, backend or table
        let Ctx {
            backend,
            route,
            table,
            tried,
            affinity_cookie,
            ewma_attempt,
            client_ip,
            https,
            status_retry,
            ..
        } = ctx;
        let (Some(backend), Some(route)) = (backend.as_deref(), route.as_deref()) else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        let table = table.as_deref();
        let affinity = table.and_then(|t| t.affinity_for(&backend.name));
        let addr = match (&backend.target, affinity) {
            (Target::Endpoints(e), Some(a)) => {
                let req = session.req_header();
                let picked = affinity::pick(
                    a,
                    &backend.name,
                    e,
                    &req.headers,
                    tried,
                    &affinity::Location {
                        host: &route.host,
                        path: &route.path,
                        https: *https,
                        user_agent: req
                            .headers
                            .get(http::header::USER_AGENT)
                            .and_then(|v| v.to_str().ok()),
                    },
                );
                if picked.set_cookie.is_some() {
                    *affinity_cookie = picked.set_cookie;
                }
                picked.addr
            }
            (Target::Endpoints(e), None) => {
                match table.and_then(|t| t.hash_by_for(&backend.name)) {
                    Some(h) => {
                        let ip_text = client_ip.map(request::IpText::new);
                        let view = request_view(session, *https, ip_text.as_ref());
                        balance::pick(h, e, &view, tried)
                    }
                    None => match table.map(|t| t.load_balance_for(&backend.name)) {
                        Some(LoadBalance::Ewma) => {
                            let addr = balance::ewma_pick(e, tried);
                            *ewma_attempt = Some((addr, Instant::now()));
                            addr
                        }
                        _ => e.pick(tried),
                    },
                }
            }
            (Target::ExternalName { host, port }, _) => resolve(host, *port, tried).await?,
            (Target::Unavailable, _) => {
                return Error::e_explain(ErrorType::HTTPStatus(503), "no endpoints")
            }
            (Target::NotFound, _) => {
                return Error::e_explain(ErrorType::HTTPStatus(404), "default backend")
            }
        };
        tried.push(addr);
        *status_retry = false;
        let pol = &route.policy;
        let host = request::request_host(session.req_header());
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let mut peer = tls::upstream_peer(addr, &route.tls.upstream, host, *https);
        peer.options.connection_timeout = Some(pol.connect_timeout);
        peer.options.read_timeout = Some(pol.read_timeout);
        peer.options.write_timeout = Some(pol.send_timeout);
        peer.options.idle_timeout = table.map(|t| t.config.upstream_keepalive_timeout);
        peer.group_key = thread_pool_key();
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // proxy_next_upstream error / timeout: nothing was sent, any method may retry
        let Some(p) = ctx.policy() else { return e };
        let wanted = if matches!(e.etype(), ErrorType::ConnectTimedout) {
            p.next_upstream.timeout
        } else {
            p.next_upstream.error
        };
        e.set_retry(wanted && ctx.may_retry());
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let Some(p) = ctx.policy() else { return e };
        let method_ok = session.req_header().method.is_idempotent()
            || p.next_upstream.non_idempotent
            || p.retry_non_idempotent;
        let body_ok = !session.as_ref().retry_buffer_truncated();
        let timeout = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        if ctx.status_retry || (timeout && p.next_upstream.timeout) {
            let retry = method_ok && body_ok && ctx.may_retry() && ctx.has_untried();
            e.set_retry(retry);
        } else if ctx.intercept.is_some() || !method_ok || !body_ok {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // the added fields go to the wire without the header maps (carried patch 23) for an
        // HTTP/1 upstream, unless a later step of this filter may set one of the same names
        // (an auth response's headers, proxy-set-headers, a snippet's proxy_set_header)
        let wire = ctx
            .route
            .as_deref()
            .is_some_and(|r| !r.tls.upstream.protocol.h2())
            && ctx.auth.is_none()
            && ctx.snippet.upstream.is_empty()
            && ctx
                .table
                .as_deref()
                .is_some_and(|t| t.config.proxy_set_headers.is_empty());
        if !wire {
            upstream.reserve_headers(request::ADDED_HEADERS);
        }
        let peer = client_ip(session);
        let client_ip = ctx.client_ip.map(request::IpText::new);
        if let Some(id) = &ctx.request_id {
            // the X-Request-ID the auth subrequest carried
            if !upstream.headers.contains_key(&request::X_REQUEST_ID) {
                upstream.insert_header(
                    request::named("X-Request-ID", &request::X_REQUEST_ID),
                    id.as_str(),
                )?;
            }
        }
        let req = session.req_header();
        let (fwd_gen_id, add_original_uri) = ctx.table.as_deref().map_or((true, false), |t| {
            (
                t.config.generate_request_id,
                t.config.proxy_add_original_uri_header,
            )
        });
        let req_uri = add_original_uri.then(|| {
            req.uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
        });
        let host = request::request_host(req);
        let fwd_cfg = match ctx.table.as_deref() {
            Some(t) => &t.config.forwarded,
            None => &forwarded::DEFAULT,
        };
        let scheme = if ctx.https { "https" } else { "http" };
        let view = forwarded::view(req, scheme, host, server_port(session), fwd_cfg);
        let client_ip = client_ip.as_ref().map_or("", |t| t.as_str());
        let full_xff;
        let full = fwd_cfg.use_forwarded_headers && fwd_cfg.compute_full_forwarded_for;
        let incoming = full
            .then(|| req.headers.get(&fwd_cfg.forwarded_for_header))
            .flatten();
        let forwarded_for = match incoming {
            Some(incoming) => {
                let peer = peer.map(request::IpText::new);
                full_xff = format!(
                    "{}, {}",
                    String::from_utf8_lossy(incoming.as_bytes()),
                    peer.as_ref().map_or("", |t| t.as_str())
                );
                full_xff.as_str()
            }
            _ => client_ip,
        };
        let port_text;
        let port = match view.port {
            forwarded::PortSource::Header(p) => p,
            // ingress-nginx maps the HTTPS listener to 443 whatever port it binds; with the
            // PROXY protocol the port is the header's destination ($proxy_protocol_server_port)
            forwarded::PortSource::Listener => {
                port_text = request::Decimal::new(if ctx.https && !fwd_cfg.use_proxy_protocol {
                    443
                } else {
                    server_port(session).into()
                });
                port_text.as_str()
            }
        };
        let generated_id = request::set_forwarded_headers(
            upstream,
            &request::Forwarded {
                client_ip,
                forwarded_for,
                port,
                scheme: view.scheme,
                host: view.host,
                generate_request_id: fwd_gen_id,
            },
            wire,
        )?;
        if add_original_uri {
            let uri = req_uri.as_deref().unwrap_or("/");
            upstream.insert_header("X-Original-URI", uri)?;
        }
        for (name, value) in &ctx.client_cert_headers {
            upstream.insert_header(name.clone(), value.clone())?;
        }
        if let Some(g) = &ctx.auth {
            if g.strip_authorization {
                upstream.remove_header(&http::header::AUTHORIZATION);
            }
            for (name, value) in &g.upstream_headers {
                match value {
                    Some(v) => {
                        upstream.insert_header(name.clone(), v.clone())?;
                    }
                    None => {
                        upstream.remove_header(name);
                    }
                }
            }
        }
        ctx.request_id = match generated_id {
            // unless the auth response's headers replaced it
            Some(id) if ctx.auth.is_none() => Some(id),
            _ => upstream
                .headers
                .get(&request::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        if ctx.continued {
            upstream.remove_header(&http::header::EXPECT);
        }
        if let Some(body) = &ctx.buffered {
            // as nginx sends a buffered body: with its length, never chunked
            upstream.remove_header(&http::header::TRANSFER_ENCODING);
            upstream.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        }
        if let Some(table) = &ctx.table {
            for (k, v) in &table.config.proxy_set_headers {
                upstream.insert_header(k.clone(), v.clone())?;
            }
        }
        if let Some(uri) = &ctx.new_uri {
            match uri.parse::<http::Uri>() {
                Ok(u) => upstream.set_uri(u),
                Err(_) => {
                    return Error::e_explain(ErrorType::HTTPStatus(400), "rewritten URI is invalid")
                }
            }
            if let Some(prefix) = &ctx.forwarded_prefix {
                upstream.insert_header("X-Forwarded-Prefix", prefix)?;
            }
        }
        if let Some(p) = ctx.policy() {
            if let Some(vhost) = &p.upstream_vhost {
                upstream.insert_header(http::header::HOST, vhost.clone())?;
            }
            if let Some(c) = &p.connection_header {
                upstream.insert_header(http::header::CONNECTION, c.clone())?;
            }
            if p.upstream_http10 {
                // nginx's proxy_http_version 1.0: no keep-alive with the upstream
                upstream.set_version(http::Version::HTTP_10);
                upstream.insert_header(http::header::CONNECTION, "close")?;
            }
        }
        // a snippet's proxy_set_header replaces the value pingress sets (an empty one removes)
        for (name, value) in &ctx.snippet.upstream {
            match value {
                Some(v) => upstream.insert_header(name.clone(), v.clone())?,
                None => {
                    upstream.remove_header(name);
                }
            }
        }
        Ok(())
    }

    /// Loads the route table this request is served from (once), and with `use-gzip` or
    /// `enable-brotli` picks the coding (nginx's rules, q=0 refuses) and switches Pingora's
    /// compression module on for it alone before the module reads Accept-Encoding (modules run
    /// after this phase); the module then uses it (the first accepted coding that is enabled,
    /// carried patch 10).
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let table = self.store.load_full();
        let (g, b) = (&table.config.gzip, &table.config.brotli);
        if g.on || b.on {
            let req = session.req_header();
            let accept = req.headers.get(http::header::ACCEPT_ENCODING);
            let mut coding = compression::negotiate(g, b, accept);
            if coding == Some(compression::Coding::Gzip) {
                // gzip-disable (nginx gzip_disable): not for these User-Agents
                let ua = req.headers.get(http::header::USER_AGENT);
                let ua = ua.and_then(|v| v.to_str().ok()).unwrap_or("");
                if table
                    .config
                    .gzip_disable
                    .as_ref()
                    .is_some_and(|r| r.matches(ua))
                {
                    coding = None;
                }
            }
            if let Some(coding) = coding {
                if let Some(c) = session
                    .downstream_modules_ctx
                    .get_mut::<pingora::modules::http::compression::ResponseCompression>(
                ) {
                    // Pingora's level 0 is "off"; ngx_brotli's 0 is its fastest level
                    let level = table.config.compression(coding).level.max(1);
                    c.adjust_algorithm_level(compression::algorithm(coding), level);
                    ctx.coding = Some(coding);
                }
            }
        }
        if !table.config.enable_underscores_in_headers && table.config.ignore_invalid_headers {
            request::drop_underscored_headers(session.req_header_mut());
        }
        ctx.table = Some(table);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let code = resp.status.as_u16();
        ctx.upstream_status = Some(code);
        let Some(p) = ctx.policy() else { return Ok(()) };
        if let Some(size) = response::head_over(resp, p.upstream_header_limit) {
            // nginx: "upstream sent too big header" (proxy-buffer-size), 502
            tracing::warn!(
                size,
                limit = p.upstream_header_limit,
                host = request::request_host(session.req_header()),
                path = session.req_header().uri.path(),
                "upstream sent too big header: over proxy-buffer-size, answered 502"
            );
            return Error::e_explain(ErrorType::HTTPStatus(502), "upstream sent too big header");
        }
        if p.next_upstream.retries_status(code) && ctx.may_retry() && ctx.has_untried() {
            let idempotent = session.req_header().method.is_idempotent()
                || p.next_upstream.non_idempotent
                || p.retry_non_idempotent;
            if idempotent {
                ctx.status_retry = true;
                return Error::e_explain(ErrorType::HTTPStatus(code), "proxy-next-upstream status");
            }
        }
        if p.custom_errors.contains(&code) {
            ctx.intercept = Some(code);
            return Error::e_explain(ErrorType::HTTPStatus(code), "custom-http-errors");
        }
        if let Some(rw) = &p.upstream_rewrite {
            upstream_headers::apply(resp, rw);
        }
        if let Some(t) = ctx.table.as_deref() {
            for h in &t.config.hide_headers {
                resp.remove_header(h);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // ModSecurity sees the upstream's response as it came (before pingress's headers)
        waf::response_head(&mut ctx.waf, resp)?;
        if let Some(coding) = ctx.coding {
            let keep = ctx.table.as_deref().is_some_and(|t| {
                let req = session.req_header();
                let c = t.config.compression(coding);
                compression::eligible(c, coding, &req.method, req.version, resp)
            });
            if !keep {
                gzip_off(session);
            }
        }
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // An upgraded tunnel's idle time is the upstream's (proxy-read-timeout and
            // proxy-send-timeout, as nginx), not client-body-timeout.
            session.set_read_timeout(None);
        }
        // the upstream's Server hidden; ours only with server-tokens (ingress-nginx: off and
        // `more_clear_headers Server`); with allow-backend-server-header the upstream's wins
        if server_tokens(ctx) {
            let backend_own = ctx.upstream_status.is_some()
                && resp.headers.contains_key(http::header::SERVER)
                && ctx
                    .table
                    .as_deref()
                    .is_some_and(|t| t.config.allow_backend_server_header)
                || passes_server(ctx);
            if !backend_own {
                resp.insert_header(http::header::SERVER, SERVER_TOKEN)?;
            }
        } else if !(ctx.upstream_status.is_some() && passes_server(ctx)) {
            resp.remove_header(&http::header::SERVER);
        }
        if let Some(v) = &ctx.hsts {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.as_str())?;
        }
        if let Some(c) = ctx.affinity_cookie.take() {
            resp.append_header(http::header::SET_COOKIE, c)?;
        }
        if let Some(table) = &ctx.table {
            for (k, v) in &table.config.add_headers {
                resp.insert_header(k.clone(), v.clone())?;
            }
        }
        if let Some(p) = ctx.policy() {
            for (k, v) in &p.response_headers {
                resp.insert_header(k.clone(), v.clone())?;
            }
        }
        for (k, v) in cors_headers(ctx) {
            resp.insert_header(k, v.clone())?;
        }
        if let Some(g) = &ctx.auth {
            if g.always_cookie || auth::cookie_status(resp.status.as_u16()) {
                for c in &g.cookies {
                    resp.append_header(http::header::SET_COOKIE, c.clone())?;
                }
            }
        }
        if let Some(p) = &ctx.snippet.prepared {
            if ctx.upstream_status.is_some() {
                for h in &p.hide {
                    resp.remove_header(h);
                }
            }
            p.apply(resp);
        }
        Ok(())
    }

    /// `limit-rate`: a chunk waits until it fits the response's bandwidth.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        waf::response_body(&mut ctx.waf, body.as_ref(), end_of_stream)?;
        let Some((rate, after)) = ctx.policy().and_then(|p| p.response_rate) else {
            return Ok(None);
        };
        let len = body.as_ref().map_or(0, |b| b.len() as u64);
        let start = *ctx.rate_start.get_or_insert_with(Instant::now);
        let delay = limit::send_delay(rate, after, ctx.rate_sent, len, start.elapsed());
        ctx.rate_sent += len;
        Ok(delay)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let Some((addr, started)) = ctx.ewma_attempt.take() {
            balance::ewma_record(addr, started.elapsed());
        }
        if ctx.waf.tx.is_some() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            waf::logging(&mut ctx.waf, status);
        }
        self.record(session, ctx);
    }

    /// nginx's `client_header_timeout` as a total for the request head: from the start of a
    /// new connection's first request, from the first byte of a kept-alive connection's next
    /// one (carried patch 3; the idle wait before it is Pingora's keep-alive timeout).
    fn request_header_timeout(&self, _reused: bool) -> Option<Duration> {
        Some(self.store.load().config.client_header_timeout)
    }

    /// Marks a kept-alive connection for [`Self::request_header_timeout`] (a zero-sized box:
    /// no allocation).
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &Ctx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(KeptAlive))
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        let client = response::is_client_error(e);
        if client {
            tracing::info!(error = %e, "client request failed");
        }
        client
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // Pingora does not reuse a client connection after an error past peer selection, so
        // say so in the response instead of advertising keep-alive.
        session.set_keepalive(None);
        let sent = session
            .response_written()
            .map(|r| r.status.as_u16())
            // a 100 Continue is not the response: an error page can still be sent
            .filter(|s| *s == 101 || *s >= 200);
        let grpc = ctx
            .route
            .as_deref()
            .is_some_and(|r| r.tls.upstream.protocol.h2());
        if let Some(sent) = sent {
            response::end_after_header(session, sent, grpc, e).await;
            return FailToProxy {
                error_code: sent,
                can_reuse_downstream: false,
            };
        }
        if let (Some(code), Some(b)) = (
            ctx.intercept,
            ctx.policy().and_then(|p| p.error_backend.clone()),
        ) {
            if let Err(err) = self.serve_error(session, ctx, code, &b).await {
                tracing::debug!(error = %err, "could not send the intercepted error response");
            }
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let code = response::status_for(e);
        if code > 0 {
            let sent = if grpc && session.as_mut().is_http2() {
                ctx.logged_status = Some(code);
                response::grpc_error(session, code).await
            } else {
                reply(session, ctx, code, None).await
            };
            if let Err(err) = sent {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

impl Proxy {
    /// The request body before the upstream is contacted (`proxy-body-size`, `Expect`,
    /// buffering); `true` when the request was answered (413).
    async fn admit_body(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        route: &Route,
    ) -> Result<bool> {
        let pol = &route.policy;
        let body_policy = body::BodyPolicy {
            limit: pol.body_limit,
            // a mirrored body is read whole first, as nginx's mirror_request_body on; so is a
            // body ModSecurity inspects
            buffer: (pol.request_buffering
                || pol.mirror.as_ref().is_some_and(|m| m.body)
                || pol.waf.is_some())
            .then_some(pol.body_buffer_size),
        };
        match body::admit(session, body_policy, route).await? {
            body::Admission::TooLarge => {
                session.set_keepalive(None);
                reply(session, ctx, 413, None).await?;
                Ok(true)
            }
            body::Admission::Proxy {
                continued,
                buffered,
            } => {
                ctx.continued = continued;
                ctx.buffered = buffered;
                Ok(false)
            }
        }
    }

    /// ModSecurity's request phases: the head, then the body read whole (a gRPC body streams
    /// and is inspected as it passes). `true` when the request was answered.
    async fn waf_request(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        w: &crate::route::WafPolicy,
        route: &Route,
        ip: Option<IpAddr>,
    ) -> Result<bool> {
        if w.transaction_id.is_some() && ctx.request_id.is_none() {
            ctx.request_id = self.request_id_for(session, ctx);
        }
        let ip_text = ip.map(request::IpText::new);
        let it = waf::request_head(
            session,
            w,
            &mut ctx.waf,
            ctx.request_id.as_deref(),
            &request_view(session, ctx.https, ip_text.as_ref()),
        );
        let it = match it {
            Some(it) => Some(it),
            None => {
                if self.admit_body(session, ctx, route).await? {
                    return Ok(true);
                }
                let streams = ctx.buffered.is_none()
                    && !session.as_mut().is_body_empty()
                    && !session.as_mut().is_body_done();
                if streams {
                    ctx.waf.body_streams = true;
                    None
                } else {
                    waf::request_body(&mut ctx.waf, ctx.buffered.as_ref()).await?
                }
            }
        };
        match it {
            Some(it) => {
                let (code, location) = waf::answer(&it);
                reply(session, ctx, code, location).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The request's X-Request-ID (sent or generated) for a phase that needs it before the
    /// upstream request is built.
    fn request_id_for(&self, session: &Session, ctx: &Ctx) -> Option<String> {
        let generate = ctx
            .table
            .as_deref()
            .is_none_or(|t| t.config.generate_request_id);
        session
            .req_header()
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .or_else(|| generate.then(request::new_request_id))
    }

    /// `auth-tls-*` of the request's host: `false` when the request was answered (400, 403,
    /// 503 or the error page); the `ssl-client-*` headers are kept for the upstream request.
    async fn client_cert_gate(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        table: &RouteTable,
    ) -> Result<bool> {
        if table.tls.client_auth.is_empty() {
            return Ok(true);
        }
        let check = tls::client_cert_check(
            table,
            request::request_host(session.req_header()),
            tls::client_cert(session),
        );
        match check {
            None => Ok(true),
            Some(tls::ClientCertCheck::Pass(h)) => {
                ctx.client_cert_headers = h;
                Ok(true)
            }
            Some(tls::ClientCertCheck::Refuse(code)) => {
                reply(session, ctx, code, None).await?;
                Ok(false)
            }
            Some(tls::ClientCertCheck::Redirect(page)) => {
                reply(session, ctx, 302, Some(&page)).await?;
                Ok(false)
            }
        }
    }

    /// The access phase (IP lists, basic and external auth by `satisfy`): `false` when the
    /// request was answered.
    async fn access(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        pol: &crate::route::Policy,
        ip: Option<IpAddr>,
    ) -> Result<bool> {
        if !pol.auth.is_active() {
            // the IP lists alone: nothing to expand, no state to keep
            return match pol.access.check(ip) {
                Some(code) => {
                    reply(session, ctx, code, None).await?;
                    Ok(false)
                }
                None => Ok(true),
            };
        }
        if pol.auth.external.is_some() && ctx.request_id.is_none() {
            // the subrequest and the upstream request carry the same X-Request-ID
            ctx.request_id = self.request_id_for(session, ctx);
        }
        let ip_text = ip.map(request::IpText::new);
        let r = auth::Request {
            header: session.req_header(),
            view: request_view(session, ctx.https, ip_text.as_ref()),
            ip,
            request_id: ctx.request_id.as_deref().unwrap_or(""),
            location: ctx
                .route
                .as_deref()
                .map_or(("", ""), |r| (&*r.host, &*r.path)),
        };
        match auth::check(pol, &r, &self.connector, &self.auth).await {
            auth::Outcome::Allow(g) => {
                ctx.auth = Some(g);
                Ok(true)
            }
            auth::Outcome::Deny(refusal) => {
                reply_with(
                    session,
                    ctx,
                    refusal.code,
                    refusal.location.as_deref(),
                    &refusal.headers,
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// Send a copy of this request to `mirror-target` (nginx's precontent phase: after the
    /// access checks and the body).
    async fn mirror(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        pol: &crate::route::Policy,
        m: &Arc<crate::route::policy::Mirror>,
    ) -> Result<()> {
        let body = if !m.body {
            mirror::Body::None
        } else if let Some(b) = &ctx.buffered {
            mirror::Body::Buffered(b.reader().await?)
        } else if session.as_mut().is_body_empty() || session.as_mut().is_body_done() {
            mirror::Body::None
        } else {
            mirror::Body::Streamed
        };
        let ip_text = ctx.client_ip.map(request::IpText::new);
        let t = subrequest::Timeouts {
            connect: pol.connect_timeout,
            read: pol.read_timeout,
            write: pol.send_timeout,
        };
        let view = request_view(session, ctx.https, ip_text.as_ref());
        self.mirrors.send(m, session.req_header(), &view, body, t);
        Ok(())
    }

    /// A snippet's `return CODE "text"` (the text as body, `default_type` as its type, as
    /// ingress-nginx's `default_type text/html`), or pingress's page for `return CODE`.
    async fn snippet_answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        code: u16,
        text: Option<String>,
    ) -> Result<()> {
        let Some(text) = text else {
            return reply(session, ctx, code, None).await;
        };
        let mut headers: Vec<(&'static str, &str)> = Vec::with_capacity(4);
        if server_tokens(ctx) {
            headers.push(("Server", SERVER_TOKEN));
        }
        if let Some(v) = ctx.hsts.as_deref() {
            headers.push(("Strict-Transport-Security", v));
        }
        headers.extend(cors_headers(ctx).filter_map(|(k, v)| Some((k, v.to_str().ok()?))));
        let ctype = ctx
            .snippet
            .prepared
            .as_ref()
            .and_then(|p| p.default_type.as_ref())
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/html");
        gzip_off(session);
        response::respond_page(
            session,
            code,
            &headers,
            &[],
            Some((Bytes::from(text), ctype)),
            ctx.snippet.prepared.as_deref(),
        )
        .await
    }

    /// Answer with the error backend's response to ingress-nginx's error request, or with
    /// pingress's own page when the error backend cannot answer.
    async fn serve_error(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        code: u16,
        backend: &Backend,
    ) -> Result<()> {
        let addr = match &backend.target {
            Target::Endpoints(e) => Some(e.pick(&[])),
            Target::ExternalName { host, port } => resolve(host, *port, &[]).await.ok(),
            Target::Unavailable | Target::NotFound => None,
        };
        let fetched = match (addr, ctx.route.as_deref()) {
            (Some(addr), Some(route)) => {
                let req = session.req_header();
                let ec = errors::ErrorContext {
                    code,
                    host: request::request_host(req),
                    accept: req.headers.get("accept").and_then(|v| v.to_str().ok()),
                    original_uri: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                    request_id: req
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok()),
                    route,
                };
                match errors::error_request(&ec) {
                    Ok(r) => errors::fetch(&self.connector, addr, r).await.ok(),
                    Err(_) => None,
                }
            }
            _ => None,
        };
        match fetched {
            Some((head, body)) => {
                session.write_response_header(Box::new(head), false).await?;
                session.write_response_body(Some(body), true).await
            }
            None => reply(session, ctx, code, None).await,
        }
    }
}

/// Resolve an ExternalName Service (async DNS), preferring an address not tried yet.
async fn resolve(host: &str, port: u16, tried: &[SocketAddr]) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(Error::because(
                ErrorType::HTTPStatus(503),
                format!("cannot resolve ExternalName {host}"),
                e,
            ))
        }
    };
    addrs
        .iter()
        .find(|a| !tried.contains(a))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(503),
                "ExternalName resolved to nothing",
            )
        })
}

impl Proxy {
    /// Metrics and access log for a finished request (Pingora's `logging` phase).
    fn record(&self, session: &Session, ctx: &Ctx) {
        let req = session.req_header();
        let status = ctx
            .logged_status
            .or_else(|| session.response_written().map(|r| r.status.as_u16()))
            .unwrap_or(0);
        let route = ctx.route.as_deref();
        let (namespace, ingress) = route
            .and_then(|r| r.ingress.as_ref())
            .map(|i| (&*i.namespace, &*i.name))
            .unwrap_or(("", ""));
        let backend_name = ctx.backend.as_deref().map(|b| &*b.name).unwrap_or("");
        // a canary's request is labelled with the primary's service and the canary upstream
        let (primary_name, canary) = match route {
            Some(r) if ctx.canary => (&*r.backend.name, backend_name),
            _ => (backend_name, ""),
        };
        let (service, service_port) = if ingress.is_empty() {
            ("", "")
        } else {
            errors::service_and_port(primary_name, route.and_then(|r| r.ingress.as_ref()))
        };
        let request_length = request_length(req);
        let body_sent = session.body_bytes_sent() as u64;
        let bytes_sent = body_sent + response_header_length(session);
        let now = Instant::now();
        let upstream_time = ctx
            .upstream_started
            .map(|t| now.saturating_duration_since(t));
        let request_time = now.saturating_duration_since(ctx.start);
        // the request's table; a request that never loaded one reads the live table
        let live;
        let table: &RouteTable = match ctx.table.as_deref() {
            Some(t) => t,
            None => {
                live = self.store.load();
                &live
            }
        };
        let host_header = request::request_host(req);
        let request_host = host_header.rsplit_once(':').map_or(host_header, |(h, _)| h);
        // a route of a named host answers for a defined host; else ask the table
        let host_defined = crate::metrics::skips_undefined_hosts()
            && (route.is_some_and(|r| !r.host.is_empty())
                || !std::ptr::eq(table.server_for(request_host), table.catch_all()));
        crate::metrics::observe_request(&crate::metrics::RequestSample {
            status,
            method: &req.method,
            path: route.map(|r| &*r.path).unwrap_or(""),
            namespace,
            ingress,
            service,
            canary,
            host: route.map(|r| &*r.host).unwrap_or(""),
            request_host,
            host_defined,
            request_time,
            upstream_time,
            request_length,
            bytes_sent,
        });
        let cfg = &table.config;
        let is_default_backend = route.is_none_or(|r| r.ingress.is_none());
        let skipped = !cfg.skip_access_log_urls.is_empty() && {
            let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
            cfg.skip_access_log_urls.iter().any(|u| u == uri)
        };
        let wanted = !cfg.disable_access_log
            && !skipped
            && route.is_none_or(|r| r.policy.access_log)
            && ctx.snippet.access_log != Some(false)
            && (!is_default_backend || cfg.access_log_default_backend);
        if !wanted {
            return;
        }
        let header = |n: &http::HeaderName| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let record = crate::access_log::Record {
            time: std::time::SystemTime::now(),
            remote_addr: ctx.client_ip.or_else(|| client_ip(session)),
            method: req.method.as_str(),
            uri: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            protocol: match req.version {
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            scheme: if ctx.https { "https" } else { "http" },
            host: host_header,
            status,
            body_bytes_sent: body_sent,
            bytes_sent,
            referer: header(&http::header::REFERER),
            user_agent: header(&http::header::USER_AGENT),
            x_forwarded_for: header(&request::X_FORWARDED_FOR),
            request_length,
            request_time,
            upstream_name: primary_name,
            alternative_upstream_name: canary,
            location_path: route.map_or("", |r| r.location_path()),
            upstream_addr: &ctx.tried,
            upstream_response_length: ctx.upstream_status.map(|_| body_sent),
            upstream_response_time: upstream_time,
            upstream_status: ctx.upstream_status,
            request_id: ctx
                .request_id
                .as_deref()
                .unwrap_or_else(|| header(&request::X_REQUEST_ID)),
            namespace,
            ingress,
            service,
            service_port,
            modsecurity_rule_id: ctx.waf.rule_id.as_deref().unwrap_or(""),
            modsecurity_msg: ctx.waf.msg.as_deref().unwrap_or(""),
            headers: Some(&req.headers),
        };
        self.access_log.log(&cfg.log_format, &record);
    }
}

/// `$request_length`: request line, headers and body, as nginx counts it (approximately: the
/// header block as re-serialised).
fn request_length(req: &RequestHeader) -> u64 {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + target + 11;
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers + 2) as u64
}

fn response_header_length(session: &Session) -> u64 {
    session
        .response_written()
        .map(|r| {
            17 + r
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>()
                + 2
        })
        .unwrap_or(0) as u64
}

/// The upstream connection pool's group of this thread: Pingora's pool is one for the process,
/// keyed by the peer's hash (which includes `group_key`), so without a per-thread key a
/// connection opened and driven by one proxy thread's runtime was reused by another, every
/// read and write of it then a cross-thread wake-up. nginx's upstream keepalive pools are per
/// worker for the same reason.
fn thread_pool_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static KEY: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    KEY.with(|k| *k)
}
