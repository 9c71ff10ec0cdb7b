//! The health server on `--healthz-port` (both modes): `/healthz` answers 200 while the
//! process runs, `/readyz` answers 200 only once the first route table was published (503
//! before). Plain tokio + hyper (HTTP/1.1), one task per connection.
//!
//! To add an endpoint (the observability work adds `/metrics`), add an arm to [`route`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Set once the first route table is live; read by `/readyz`. Set `terminating` when SIGTERM
/// arrives: both probes then fail while the proxy goes on serving for `--shutdown-grace-period`.
#[derive(Clone, Default, Debug)]
pub struct Readiness(Arc<Probes>);

#[derive(Default, Debug)]
struct Probes {
    ready: AtomicBool,
    terminating: AtomicBool,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set_ready(&self) {
        self.0.ready.store(true, Ordering::Release);
    }
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }
    pub fn set_terminating(&self) {
        self.0.terminating.store(true, Ordering::Release);
    }
    pub fn is_terminating(&self) -> bool {
        self.0.terminating.load(Ordering::Acquire)
    }
}

/// The `/debug` endpoints' data (`--enable-debug-endpoints`), implemented by the publisher.
pub trait DebugView: Send + Sync {
    /// `/debug/routes`.
    fn routes(&self) -> serde_json::Value;
    /// `/debug/route?host=H&path=P[&header=Name:Value...]`.
    fn route(&self, host: &str, path: &str, headers: &http::HeaderMap) -> serde_json::Value;
    /// `/debug/diagnostics`.
    fn diagnostics(&self) -> serde_json::Value;
}

/// The `/debug` answer for `path?query`, `None` for a path that is not a debug endpoint.
fn debug_answer(view: &dyn DebugView, path: &str, query: &str) -> Option<(StatusCode, String)> {
    let v = match path {
        "/debug/routes" => view.routes(),
        "/debug/diagnostics" => view.diagnostics(),
        "/debug/route" => {
            let q = |n| crate::debug::query_param(query, n);
            let (Some(host), Some(p)) = (q("host"), q("path")) else {
                return Some((
                    StatusCode::BAD_REQUEST,
                    "{\"error\": \"give host=H&path=P\"}\n".into(),
                ));
            };
            view.route(&host, &p, &crate::debug::query_headers(query))
        }
        _ => return None,
    };
    Some((StatusCode::OK, format!("{v:#}\n")))
}

/// What the health server answers for `method path`. Pure, so it is tested without sockets.
pub fn route(method: &Method, path: &str, ready: &Readiness) -> (StatusCode, &'static str) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        // ingress-nginx: /healthz fails once the controller is shutting down, so the Pod
        // leaves its Service's endpoints while it still serves
        "/healthz" | "/readyz" if ready.is_terminating() => {
            (StatusCode::INTERNAL_SERVER_ERROR, "shutting down\n")
        }
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if ready.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no route table published yet\n",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// What the health port serves besides the probes.
#[derive(Clone)]
pub struct HealthOptions {
    /// `--health-check-path`: answered as `/healthz` too.
    pub check_path: String,
    /// `--enable-metrics`: `/metrics`.
    pub metrics: bool,
    /// The `/debug` endpoints' data, `None` without `--enable-debug-endpoints`.
    pub debug: Option<Arc<dyn DebugView>>,
}

fn respond(
    req: &Request<Incoming>,
    ready: &Readiness,
    opts: &HealthOptions,
) -> Response<Full<Bytes>> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if let (true, Some(view)) = (get, opts.debug.as_deref()) {
        let query = req.uri().query().unwrap_or("");
        if let Some((status, body)) = debug_answer(view, req.uri().path(), query) {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return resp;
        }
    }
    if get && opts.metrics && req.uri().path() == "/metrics" {
        let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render())));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return resp;
    }
    let path = match req.uri().path() {
        p if p == opts.check_path => "/healthz",
        p => p,
    };
    let (status, body) = route(req.method(), path, ready);
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Bind the health listener (so a port clash fails at start, with the flag named).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve until the task is dropped. Runs on a tokio runtime.
pub async fn serve(listener: std::net::TcpListener, ready: Readiness, opts: HealthOptions) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "health server: cannot use its listener");
            return;
        }
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "health server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ready = ready.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = respond(&req, &ready, &opts);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A listener bound at start (so a port clash fails there) and handed once to the background
/// service that serves it.
pub struct OnceListener(std::sync::Mutex<Option<std::net::TcpListener>>);

impl OnceListener {
    pub fn new(listener: std::net::TcpListener) -> Self {
        OnceListener(std::sync::Mutex::new(Some(listener)))
    }

    /// The listener, the first time only.
    pub fn take(&self) -> Option<std::net::TcpListener> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

/// The health server as a Pingora background service (its own runtime; stops with the
/// server).
pub struct HealthService {
    listener: OnceListener,
    ready: Readiness,
    opts: HealthOptions,
}

impl HealthService {
    pub fn new(listener: std::net::TcpListener, ready: Readiness, opts: HealthOptions) -> Self {
        HealthService {
            listener: OnceListener::new(listener),
            ready,
            opts,
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for HealthService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        tokio::select! {
            _ = serve(listener, self.ready.clone(), self.opts.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_flag_and_healthz_is_always_ok() {
        let r = Readiness::new();
        assert_eq!(route(&Method::GET, "/healthz", &r).0, StatusCode::OK);
        assert_eq!(
            route(&Method::GET, "/readyz", &r).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.set_ready();
        assert_eq!(route(&Method::GET, "/readyz", &r).0, StatusCode::OK);
        r.set_terminating();
        for p in ["/healthz", "/readyz"] {
            assert_eq!(
                route(&Method::GET, p, &r).0,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        let r = Readiness::new();
        r.set_ready();
        assert_eq!(route(&Method::GET, "/nope", &r).0, StatusCode::NOT_FOUND);
        assert_eq!(
            route(&Method::POST, "/healthz", &r).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
