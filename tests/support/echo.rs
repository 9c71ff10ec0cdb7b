//! In-process echo backend: a hyper 1 server, HTTP/1.1 and h2c (prior knowledge), on
//! 127.0.0.1:0 (or another local address with [`EchoBackend::start_on`]).
//!
//! Every plain request is answered with `200` and a JSON description of the
//! request as the backend received it (see [`Echo`]).  A WebSocket upgrade is
//! accepted and every data message is echoed back. A gRPC call (HTTP/2, content-type
//! `application/grpc...`) is answered as a gRPC server would: 200, `application/grpc`, the same
//! JSON as one length-prefixed message, and `grpc-status: 0` in the trailers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, CONTENT_TYPE, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Response header carrying the backend's name (handy for non-JSON responses).
pub const BACKEND_HEADER: &str = "x-echo-backend";

/// What the echo backend reports about a request it received.
#[derive(Debug, Clone, Deserialize)]
pub struct Echo {
    pub backend: String,
    pub method: String,
    /// Request target as received (path + query for origin-form requests).
    pub path: String,
    /// `Host` header as received, `None` when absent.
    pub host: Option<String>,
    /// Lower-cased header name -> value (repeated headers joined with ", ").
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    /// [`fnv1a`] of the body as received.
    pub body_hash: u64,
    /// HTTP version of the request as seen by the backend, e.g. "HTTP/1.1".
    pub version: String,
}

impl Echo {
    /// Value of a (lower-case) request header as the backend saw it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// FNV-1a 64 of `bytes`: cheap, order-sensitive, enough to tell a body that arrived bit-exact.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct State {
    name: String,
    requests: AtomicUsize,
    /// (length, hash) of every request body received to its end, in arrival order.
    completed: std::sync::Mutex<Vec<(usize, u64)>>,
    /// Request target of every request received (at its head, before the body).
    targets: std::sync::Mutex<Vec<String>>,
    /// Status of every plain answer (200 unless started with `start_with_status`).
    status: StatusCode,
    /// What every plain request answered looked like, in answer order.
    echoes: std::sync::Mutex<Vec<Echo>>,
}

/// A running echo backend.  The accept loop is aborted on drop.
pub struct EchoBackend {
    pub name: String,
    /// Address the backend listens on (127.0.0.1 unless started with `start_on`).
    pub ip: IpAddr,
    pub port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl EchoBackend {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start(name: &str) -> EchoBackend {
        Self::start_with_status(name, 200).await
    }

    /// Like [`EchoBackend::start`], but every plain answer has `status`.
    pub async fn start_with_status(name: &str, status: u16) -> EchoBackend {
        Self::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), name, status).await
    }

    /// Like [`EchoBackend::start`], but listening on `ip` (port chosen by the system), e.g. a
    /// non-loopback address of this machine for tests against a real API server.
    pub async fn start_on(ip: IpAddr, name: &str) -> EchoBackend {
        Self::bind(ip, name, 200).await
    }

    async fn bind(ip: IpAddr, name: &str, status: u16) -> EchoBackend {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind echo backend on {ip}: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicUsize::new(0),
            completed: std::sync::Mutex::new(Vec::new()),
            targets: std::sync::Mutex::new(Vec::new()),
            status: StatusCode::from_u16(status).expect("valid status"),
            echoes: std::sync::Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, state.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        EchoBackend {
            name: name.to_string(),
            ip,
            port,
            state,
            task,
        }
    }

    /// (length, hash) of every request body received whole so far (a body cut short by a
    /// closed connection or a reset stream is not in it).
    pub fn completed_bodies(&self) -> Vec<(usize, u64)> {
        self.state.completed.lock().unwrap().clone()
    }

    /// Whether a request for `target` (path and query) reached this backend.
    pub fn received(&self, target: &str) -> bool {
        self.state
            .targets
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == target)
    }

    /// Every plain request answered so far, as its answer described it (for requests whose
    /// answer nobody reads, such as mirror copies).
    pub fn echoes(&self) -> Vec<Echo> {
        self.state.echoes.lock().unwrap().clone()
    }

    /// Number of requests (including WebSocket upgrades) received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has_token(UPGRADE, "websocket") && has_token(CONNECTION, "upgrade")
}

/// A gRPC call: HTTP/2 with a gRPC content type.
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.version() == hyper::Version::HTTP_2
        && req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"))
}

/// [`handle`]'s answer, as a gRPC server's for a gRPC call: the JSON as one length-prefixed
/// message, `grpc-status` 0 in the trailers (2, UNKNOWN, when the plain answer was not 200).
async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let grpc = is_grpc(&req);
    let resp = handle(req, state).await?;
    if !grpc {
        return Ok(resp.map(BodyExt::boxed));
    }
    let (mut parts, body) = resp.into_parts();
    let json = body.collect().await?.to_bytes();
    let mut message = Vec::with_capacity(5 + json.len());
    message.push(0);
    message.extend_from_slice(&(json.len() as u32).to_be_bytes());
    message.extend_from_slice(&json);
    let mut trailers = hyper::HeaderMap::new();
    let code = if parts.status == StatusCode::OK {
        "0"
    } else {
        "2"
    };
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static(code));
    parts.status = StatusCode::OK;
    parts.headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from(message))),
        Ok(Frame::trailers(trailers)),
    ]);
    Ok(Response::from_parts(
        parts,
        BodyExt::boxed(StreamBody::new(frames)),
    ))
}

async fn handle(
    mut req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(pq) = req.uri().path_and_query() {
        state.targets.lock().unwrap().push(pq.as_str().to_string());
    }

    if is_websocket_upgrade(&req) {
        let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Full::new(Bytes::from_static(b"missing sec-websocket-key")))
                .unwrap());
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
            .header(BACKEND_HEADER, state.name.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap());
    }

    // Test controls in the query: `status=NNN` answers that status, `sleep_ms=N` delays the
    // answer (a slow backend; or the request header `x-echo-sleep-ms: N`, for a gRPC call). A
    // backend started with `start_with_status` always answers it.
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let status = param("status")
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(state.status);
    let sleep_header = req
        .headers()
        .get("x-echo-sleep-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = param("sleep_ms").or(sleep_header) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    // `set_header=Name:value` (repeatable, percent-decoded) adds that response header, as an
    // application behind the proxy would; `hsts=true` sets its own Strict-Transport-Security,
    // as ingress-nginx's e2e echo service does
    let mut extra: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("set_header="))
        .filter_map(|v| {
            let v = percent_decode(v);
            let (n, val) = v.split_once(':')?;
            Some((n.trim().to_string(), val.trim().to_string()))
        })
        .collect();
    if query.split('&').any(|kv| kv == "hsts=true") {
        extra.push((
            "strict-transport-security".into(),
            "max-age=3600; includeSubDomains".into(),
        ));
    }
    let method = req.method().to_string();
    // HTTP/2: the :path (the URI also holds :scheme and :authority)
    let path = match (req.version(), req.uri().path_and_query()) {
        (hyper::Version::HTTP_2, Some(pq)) => pq.to_string(),
        _ => req.uri().to_string(),
    };
    let version = format!("{:?}", req.version());
    // the Host header, or HTTP/2's :authority
    let host = req
        .headers()
        .get(HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let joined = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_string(), joined.into());
    }
    let (body_len, body_hash) = match req.into_body().collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let seen = (bytes.len(), fnv1a(&bytes));
            state.completed.lock().unwrap().push(seen);
            seen
        }
        Err(_) => (usize::MAX, 0),
    };
    // `pad=N`: N more bytes in the answer (a "pad" field of N `x`), for a large response
    let pad = "x".repeat(param("pad").unwrap_or(0).min(16 << 20) as usize);
    let json = serde_json::json!({
        "pad": pad,
        "backend": state.name,
        "method": method,
        "path": path,
        "host": host,
        "headers": headers,
        "body_len": body_len,
        "body_hash": body_hash,
        "version": version,
    });
    if let Ok(echo) = serde_json::from_value::<Echo>(json.clone()) {
        state.echoes.lock().unwrap().push(echo);
    }
    let mut resp = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(BACKEND_HEADER, state.name.as_str());
    for (n, v) in &extra {
        resp = resp.header(n.as_str(), v.as_str());
    }
    Ok(resp.body(Full::new(Bytes::from(json.to_string()))).unwrap())
}

/// `%XX` escapes and `+` (a space) of a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
