//! The Pingora `ProxyHttp` implementation. Phases stay short: each request loads the route
//! table once (kept in the context through every phase), and the work is in `request` and
//! `response` helpers that are tested without sockets.

pub mod request;
pub mod response;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::publish::TableStore;
use crate::route::{path, Route, Target};

/// ingress-nginx defaults (`proxy-connect-timeout`, `proxy-read/send-timeout`,
/// `proxy-next-upstream-tries`, `upstream-keepalive-timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const NEXT_UPSTREAM_TRIES: u8 = 3;
pub const UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Proxy {
    store: TableStore,
}

impl Proxy {
    pub fn new(store: TableStore) -> Self {
        Proxy { store }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    route: Option<Arc<Route>>,
    /// Endpoints already tried for this request.
    tried: Vec<SocketAddr>,
    /// The client came in on the HTTPS listener.
    https: bool,
    /// `Strict-Transport-Security` value for this HTTPS request (ConfigMap `hsts*`).
    hsts: Option<String>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let table = self.store.load();
        ctx.https = tls::is_https(session);
        if ctx.https {
            ctx.hsts = table.config.tls.hsts.header_value();
        }
        let req = session.req_header();
        let route = match path::normalize(req.uri.path()) {
            Ok(p) => table.lookup(request::request_host(req), &p).clone(),
            Err(_) => {
                response::respond(session, 400).await?;
                return Ok(true);
            }
        };
        if !ctx.https {
            let uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let host = request::request_host(req);
            if let Some(location) = tls::redirect_location(&table, &route, host, uri) {
                let code = table.config.tls.http_redirect_code;
                response::respond_with(session, code, &[("Location", &location)]).await?;
                return Ok(true);
            }
        }
        let early = match route.backend.target {
            Target::NotFound => Some(404),
            Target::Unavailable => Some(503),
            Target::Endpoints(_) | Target::ExternalName { .. } => None,
        };
        let early = early.or(route.tls.upstream.denied.then_some(503));
        ctx.route = Some(route);
        if let Some(code) = early {
            match &ctx.hsts {
                Some(v) => {
                    response::respond_with(session, code, &[("Strict-Transport-Security", v)])
                        .await?
                }
                None => response::respond(session, code).await?,
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no route selected");
        };
        let addr = match &route.backend.target {
            Target::Endpoints(e) => e.pick(&ctx.tried),
            Target::ExternalName { host, port } => resolve(host, *port, &ctx.tried).await?,
            Target::Unavailable => {
                return Error::e_explain(ErrorType::HTTPStatus(503), "no endpoints")
            }
            Target::NotFound => {
                return Error::e_explain(ErrorType::HTTPStatus(404), "default backend")
            }
        };
        ctx.tried.push(addr);
        let host = request::request_host(session.req_header());
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let mut peer = tls::upstream_peer(addr, &route.tls.upstream, host);
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(READ_TIMEOUT);
        peer.options.write_timeout = Some(SEND_TIMEOUT);
        peer.options.idle_timeout = Some(UPSTREAM_KEEPALIVE_TIMEOUT);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // proxy_next_upstream error timeout; proxy_next_upstream_tries 3
        if ctx.tried.len() < NEXT_UPSTREAM_TRIES as usize {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client_ip = client.map(|ip| ip.to_string()).unwrap_or_default();
        // ingress-nginx maps the HTTPS listener to 443 whatever port it binds
        let server_port = if ctx.https {
            443
        } else {
            session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port())
                .unwrap_or(0)
        };
        let host = request::request_host(session.req_header()).to_string();
        request::set_forwarded_headers(
            upstream,
            &request::Forwarded {
                client_ip: &client_ip,
                server_port,
                scheme: if ctx.https { "https" } else { "http" },
                host: &host,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // server-tokens off and the upstream's Server hidden, as ingress-nginx
        resp.remove_header("Server");
        if let Some(v) = &ctx.hsts {
            resp.insert_header("Strict-Transport-Security", v.as_str())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = response::status_for(e);
        // Pingora does not reuse a client connection after an error past peer selection, so
        // say so in the response instead of advertising keep-alive.
        session.set_keepalive(None);
        if code > 0 {
            let hsts: Vec<(&'static str, &str)> = ctx
                .hsts
                .as_deref()
                .map(|v| ("Strict-Transport-Security", v))
                .into_iter()
                .collect();
            if let Err(err) = response::respond_with(session, code, &hsts).await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
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
