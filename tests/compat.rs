//! The compatibility suite: ingress-nginx's e2e tests and the Ingress conformance features as
//! data (`tests/compat/cases/**.yaml`, format in `tests/compat/README.md`), run against the real
//! binary in standalone mode with real echo backends. The README's compatibility table is
//! generated from the case files: `PINGRESS_BLESS=1 cargo test --test compat` rewrites it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use support::tls::{client_config, opaque_secret, self_signed, tls_secret, with_client_cert, Ca};
use support::*;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How long a request step may take to settle after a start or a manifest change.
const SETTLE: Duration = Duration::from_secs(3);
/// Cases run at once (each has its own pingress process and backends).
const PARALLEL: usize = 6;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    source: String,
    repo: String,
    area: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    pending: Option<String>,
    #[serde(default)]
    differs: Option<String>,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    backends: BTreeMap<String, usize>,
    #[serde(default)]
    configmap: BTreeMap<String, String>,
    #[serde(default)]
    flags: Vec<String>,
    /// `false`: pingress runs without `--watch-ingress-without-class` (ingress-nginx's e2e
    /// controller default); the suite's default is to serve class-less Ingresses.
    #[serde(default = "yes")]
    watch_without_class: bool,
    #[serde(default)]
    secrets: Vec<SecretRecipe>,
    #[serde(default)]
    objects: String,
    #[serde(default)]
    steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SecretRecipe {
    name: String,
    recipe: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
    /// `ca`: the server certificate's CN (default: the name).
    #[serde(default)]
    cn: Option<String>,
    /// `tls`: `rsa` for an RSA 2048 key (as ingress-nginx's e2e certificates; default ECDSA
    /// P-256).
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    request: Option<RequestSpec>,
    #[serde(default)]
    expect: Option<Expect>,
    #[serde(default)]
    repeat: Option<usize>,
    /// The request sent N times at once (each on its own connection); with
    /// `expect.status_counts`.
    #[serde(default)]
    concurrent: Option<usize>,
    #[serde(default)]
    apply: Option<Apply>,
    #[serde(default)]
    delete: Option<String>,
    /// A raw TCP exchange with a port of pingress (a tcp-services entry); with
    /// `expect.reply_contains` and the `log_*` expectations.
    #[serde(default)]
    tcp: Option<TcpSpec>,
    /// `/metrics` on the health port: regexes some line must match, or no line may.
    #[serde(default)]
    metrics: Option<MetricsSpec>,
    /// An AdmissionReview POSTed to pingress's validating webhook (which the case then runs
    /// with); with `expect.allowed`, `expect.message_contains` and `expect.status`.
    #[serde(default)]
    admission: Option<AdmissionSpec>,
    /// Echo Services scaled: `{echo: 3}` gives Service `echo` 3 ready replicas (new ones start,
    /// named on from `<svc>-<n>`; the EndpointSlices list the first N, 0 leaves the Service
    /// without endpoints).
    #[serde(default)]
    scale: Option<BTreeMap<String, usize>>,
    /// A signal sent to pingress (`TERM`, `INT`, `QUIT`), as the kubelet stops a pod.
    #[serde(default)]
    signal: Option<String>,
    /// pingress exits, with status 0, within this many seconds from the step.
    #[serde(default)]
    exit_within_s: Option<u64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct AdmissionSpec {
    /// The Ingress under review, YAML (namespace default); `{{port:NAME}}` filled.
    #[serde(default)]
    yaml: Option<String>,
    /// CREATE (default) or UPDATE.
    #[serde(default = "create")]
    operation: String,
    /// Instead of a review: this many bytes of `b` POSTed to the webhook's path.
    #[serde(default)]
    body_bytes: Option<usize>,
}

fn create() -> String {
    "CREATE".into()
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct TcpSpec {
    /// The name of a `{{port:NAME}}` placeholder of the case (the port pingress listens on).
    port: String,
    /// Bytes sent once connected (YAML escapes: "GET / HTTP/1.1\r\n...").
    #[serde(default)]
    send: String,
    /// A PROXY protocol v1 line (without CRLF) sent first on the connection.
    #[serde(default)]
    proxy_protocol: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct MetricsSpec {
    /// Regexes each of which some line of `/metrics` matches.
    #[serde(default)]
    present: Vec<String>,
    /// Regexes no line of `/metrics` matches.
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Apply {
    file: String,
    yaml: String,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    /// Send the cookies that earlier responses of this case set (a browser's cookie jar).
    #[serde(default)]
    cookies: bool,
    /// A PROXY protocol v1 line (without CRLF) sent first on the connection.
    #[serde(default)]
    proxy_protocol: Option<String>,
    /// https: present the client certificate of the case's `ca` recipe of this name.
    #[serde(default)]
    client_cert: Option<String>,
    /// A gRPC call over HTTP/2 (h2c prior knowledge for http, ALPN h2 for https): POST (unless
    /// `method` says otherwise), `content-type: application/grpc`, `te: trailers`, the body as
    /// one length-prefixed message, `path` the method (`/pkg.Service/Method`). The answer's
    /// body is its first message, its trailers (grpc-status) count as headers.
    #[serde(default)]
    grpc: bool,
    /// Seconds the client waits for the answer (default 5).
    #[serde(default)]
    wait_s: Option<u64>,
    /// The listener: `http` (default: the proxy's, or its HTTPS one for scheme https) or
    /// `health` (`--healthz-port`: /healthz, /readyz, /metrics; plain HTTP).
    #[serde(default)]
    listener: Option<String>,
}

/// Cookies set by the responses of one case: name -> value (the last one wins).
type Jar = std::sync::Mutex<BTreeMap<String, String>>;

/// What the requests of one case share: the cookie jar, and the client certificate each `ca`
/// recipe issued (by recipe name).
#[derive(Default)]
struct Session {
    jar: Jar,
    client_certs: BTreeMap<String, Arc<CertifiedKey>>,
}

#[derive(Debug, Deserialize, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    backends_seen: Option<Vec<String>>,
    /// With `repeat`: exactly how many answers each replica gave.
    #[serde(default)]
    backend_counts: Option<BTreeMap<String, usize>>,
    /// With `repeat`: how many distinct replicas answered (whichever they were).
    #[serde(default)]
    replicas_seen: Option<usize>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    headers_match: BTreeMap<String, String>,
    #[serde(default)]
    headers_absent: Vec<String>,
    #[serde(default)]
    body_contains: Option<String>,
    #[serde(default)]
    upstream: Option<Upstream>,
    /// With `concurrent`: exactly how many answers had each status.
    #[serde(default)]
    status_counts: Option<BTreeMap<u16, usize>>,
    /// The certificate the HTTPS listener presented.
    #[serde(default)]
    certificate: Option<CertExpect>,
    /// Strings one line pingress writes to stdout (its access log) after the request must
    /// contain, all of them.
    #[serde(default)]
    log_contains: Vec<String>,
    /// A regex that same line must match.
    #[serde(default)]
    log_matches: Option<String>,
    /// Strings the whole access log must not hold once `log_contains` / `log_matches` (a later
    /// request's marker) holds: lines are written in order, so what came before the marker has
    /// been written.
    #[serde(default)]
    log_absent: Vec<String>,
    /// A `tcp` step: strings the reply (read until the peer closes, at most 3 s) contains.
    #[serde(default)]
    reply_contains: Vec<String>,
    /// An `admission` step: the review's `response.allowed`.
    #[serde(default)]
    allowed: Option<bool>,
    /// An `admission` step: a string the review's `response.status.message` or one of its
    /// `warnings` contains.
    #[serde(default)]
    message_contains: Option<String>,
    /// The answer (sent, then read to its end) took at least this long (a throttled response).
    #[serde(default)]
    min_time_ms: Option<u64>,
    /// ... and at most this long.
    #[serde(default)]
    max_time_ms: Option<u64>,
    /// The replica that answered request step N (counted from 0) answers again.
    #[serde(default)]
    same_replica_as: Option<usize>,
    /// Another replica than the one that answered request step N answers.
    #[serde(default)]
    other_replica_than: Option<usize>,
    /// `same_replica_as` / `other_replica_than` resolved to a replica name.
    #[serde(skip)]
    replica: Option<String>,
    #[serde(skip)]
    replica_not: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
struct CertExpect {
    #[serde(default)]
    subject_cn: Option<String>,
    #[serde(default)]
    issuer_cn: Option<String>,
    #[serde(default)]
    dns_names: Option<Vec<String>>,
    /// Certificates in the presented chain.
    #[serde(default)]
    chain_len: Option<usize>,
    /// The negotiated TLS version (`TLSv1_2`, `TLSv1_3`, rustls's names).
    #[serde(default)]
    version: Option<String>,
    /// The negotiated cipher suite (IANA names as Go and rustls spell them,
    /// `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`).
    #[serde(default)]
    cipher: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
struct Upstream {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    headers_absent: Vec<String>,
    /// The HTTP version the request reached the backend with ("HTTP/1.1", "HTTP/2.0").
    #[serde(default)]
    version: Option<String>,
}

/// What the client saw.
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
    /// The certificate the server presented (HTTPS requests).
    certificate: Option<support::tls::Seen>,
    /// From connecting to the end of the answer's body.
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        let all: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then(|| all.join(", "))
    }

    fn echo(&self) -> Option<Echo> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The replica that answered (`<service>-<i>`).
    fn replica(&self) -> Option<String> {
        self.header(BACKEND_HEADER)
    }
}

/// `echo-0` -> `echo`.
fn service_of(replica: &str) -> &str {
    match replica.rsplit_once('-') {
        Some((svc, i)) if i.bytes().all(|b| b.is_ascii_digit()) => svc,
        _ => replica,
    }
}

fn check(expect: &Expect, a: &Answer) -> Result<(), String> {
    let mut miss = Vec::new();
    if let Some(s) = expect.status {
        if a.status != s {
            miss.push(format!("status {} (want {s})", a.status));
        }
    }
    if let Some(b) = &expect.backend {
        let got = a.replica();
        if got.as_deref().map(service_of) != Some(b.as_str()) {
            miss.push(format!("backend {got:?} (want {b})"));
        }
    }
    let ms = a.elapsed.as_millis();
    if let Some(min) = expect.min_time_ms {
        if ms < u128::from(min) {
            miss.push(format!("answered in {ms} ms (want at least {min} ms)"));
        }
    }
    if let Some(max) = expect.max_time_ms {
        if ms > u128::from(max) {
            miss.push(format!("answered in {ms} ms (want at most {max} ms)"));
        }
    }
    if let Some(r) = &expect.replica {
        let got = a.replica();
        if got.as_deref() != Some(r.as_str()) {
            miss.push(format!("replica {got:?} (want {r}, as before)"));
        }
    }
    if let Some(r) = &expect.replica_not {
        let got = a.replica();
        if got.is_none() || got.as_deref() == Some(r.as_str()) {
            miss.push(format!("replica {got:?} (want another than {r})"));
        }
    }
    for (n, v) in &expect.headers {
        let got = a.header(n);
        if got.as_deref() != Some(v.as_str()) {
            miss.push(format!("header {n}: {got:?} (want {v:?})"));
        }
    }
    for (n, re) in &expect.headers_match {
        let re = regex::Regex::new(re).map_err(|e| format!("bad regex {re:?}: {e}"))?;
        let got = a.header(n);
        if !got.as_deref().is_some_and(|g| re.is_match(g)) {
            miss.push(format!("header {n}: {got:?} (want match {re})"));
        }
    }
    if let Some(want) = &expect.certificate {
        match &a.certificate {
            None => miss.push("no certificate (not an https request)".to_string()),
            Some(c) => {
                let eq = |what: &str, got: &str, want: &Option<String>, miss: &mut Vec<String>| {
                    if want.as_deref().is_some_and(|w| w != got) {
                        miss.push(format!("certificate {what} {got:?} (want {want:?})"));
                    }
                };
                eq("subject CN", &c.cn, &want.subject_cn, &mut miss);
                eq("issuer CN", &c.issuer_cn, &want.issuer_cn, &mut miss);
                if want.dns_names.as_ref().is_some_and(|w| w != &c.sans) {
                    miss.push(format!(
                        "certificate DNS names {:?} (want {:?})",
                        c.sans, want.dns_names
                    ));
                }
                if want.chain_len.is_some_and(|w| w != c.chain_len) {
                    miss.push(format!(
                        "certificate chain of {} (want {:?})",
                        c.chain_len, want.chain_len
                    ));
                }
                let version = c.version.map(|v| format!("{v:?}")).unwrap_or_default();
                eq("TLS version", &version, &want.version, &mut miss);
                let cipher = c.cipher.map(|v| format!("{v:?}")).unwrap_or_default();
                eq("cipher suite", &cipher, &want.cipher, &mut miss);
            }
        }
    }
    for n in &expect.headers_absent {
        if let Some(got) = a.header(n) {
            miss.push(format!("header {n}: {got:?} (want absent)"));
        }
    }
    if let Some(needle) = &expect.body_contains {
        if !String::from_utf8_lossy(&a.body).contains(needle.as_str()) {
            miss.push(format!(
                "body {:?} (want it to contain {needle:?})",
                String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
            ));
        }
    }
    if let Some(up) = &expect.upstream {
        match a.echo() {
            None => miss.push("no echo backend answer (upstream expectations)".into()),
            Some(e) => {
                if let Some(p) = &up.path {
                    if &e.path != p {
                        miss.push(format!("upstream path {:?} (want {p:?})", e.path));
                    }
                }
                if let Some(h) = &up.host {
                    if e.host.as_deref() != Some(h.as_str()) {
                        miss.push(format!("upstream host {:?} (want {h:?})", e.host));
                    }
                }
                if let Some(v) = &up.version {
                    if &e.version != v {
                        miss.push(format!("upstream version {:?} (want {v:?})", e.version));
                    }
                }
                for (n, v) in &up.headers {
                    let got = e.header(&n.to_ascii_lowercase());
                    if got != Some(v.as_str()) {
                        miss.push(format!("upstream header {n}: {got:?} (want {v:?})"));
                    }
                }
                for n in &up.headers_absent {
                    if let Some(got) = e.header(&n.to_ascii_lowercase()) {
                        miss.push(format!("upstream header {n}: {got:?} (want absent)"));
                    }
                }
            }
        }
    }
    if miss.is_empty() {
        Ok(())
    } else {
        Err(miss.join("; "))
    }
}

/// One request over a new connection, the request target sent exactly as written.
async fn send(px: &Pingress, r: &RequestSpec, session: &Session) -> Result<Answer, String> {
    let method = r
        .method
        .as_deref()
        .unwrap_or(if r.grpc { "POST" } else { "GET" });
    let path = r.path.as_deref().unwrap_or("/");
    let host = r.host.as_deref();
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let mut req = hyper::Request::builder().method(method);
    if r.grpc {
        // HTTP/2: :scheme and :authority from the URI, no Host header
        req = req
            .uri(format!("{scheme}://{}{path}", host.unwrap_or("localhost")))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    } else {
        req = req.uri(path);
        if let Some(h) = host {
            req = req.header("host", h);
        }
    }
    for (n, v) in &r.headers {
        req = req.header(n.as_str(), v.as_str());
    }
    if r.cookies {
        let pairs: Vec<String> = session
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !pairs.is_empty() {
            req = req.header("cookie", pairs.join("; "));
        }
    }
    let mut body = r.body.clone().unwrap_or_default().into_bytes();
    if r.grpc {
        let mut framed = vec![0];
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.append(&mut body);
        body = framed;
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request spec: {e}"))?;
    let wait = Duration::from_secs(r.wait_s.unwrap_or(5));
    let started = Instant::now();
    let port = match (r.listener.as_deref(), scheme) {
        (None | Some("http"), _) => px.port,
        (Some("health"), "http") => px.healthz_port,
        (Some(other), _) => return Err(format!("listener {other:?} over {scheme}")),
    };
    let mut resp = match scheme {
        "http" => {
            let tcp = connect(port, r.proxy_protocol.as_deref()).await?;
            exchange(TokioIo::new(tcp), req, r.grpc, wait).await?
        }
        "https" => {
            let sni = r
                .sni
                .as_deref()
                .or(host.map(|h| h.split(':').next().unwrap_or(h)));
            let alpn: &[&[u8]] = if r.grpc { &[b"h2"] } else { &[b"http/1.1"] };
            let mut cfg = client_config(alpn, rustls::DEFAULT_VERSIONS);
            if let Some(name) = &r.client_cert {
                let cert = session.client_certs.get(name).ok_or_else(|| {
                    format!("client_cert {name:?}: the case has no `ca` recipe of that name")
                })?;
                cfg = with_client_cert(&cfg, Some(cert.clone())).0;
            }
            let tcp = connect(px.https_port, r.proxy_protocol.as_deref()).await?;
            let (tls, seen) = support::tls::connect_over(tcp, sni, cfg)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let mut a = exchange(TokioIo::new(tls), req, r.grpc, wait).await?;
            a.certificate = Some(seen);
            a
        }
        other => return Err(format!("unknown scheme {other:?}")),
    };
    resp.elapsed = started.elapsed();
    if r.grpc {
        resp.body = first_grpc_message(&resp.body);
    }
    for v in resp.headers.get_all("set-cookie") {
        let pair = v.to_str().unwrap_or("").split(';').next().unwrap_or("");
        if let Some((k, v)) = pair.split_once('=') {
            session
                .jar
                .lock()
                .unwrap()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Ok(resp)
}

/// A connection to pingress's `port`, with the PROXY protocol line first when given.
async fn connect(port: u16, proxy_line: Option<&str>) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(line) = proxy_line {
        use tokio::io::AsyncWriteExt;
        tcp.write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("PROXY header: {e}"))?;
    }
    Ok(tcp)
}

/// One request on a new connection, HTTP/1.1 or (`h2`) HTTP/2; the answer's trailers are
/// added to its headers.
async fn exchange<IO>(
    io: IO,
    req: hyper::Request<Full<Bytes>>,
    h2: bool,
    wait: Duration,
) -> Result<Answer, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let sent = async {
        if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| e.to_string())
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| e.to_string())
        }
    };
    let resp = tokio::time::timeout(wait, sent)
        .await
        .map_err(|_| format!("no response within {} s", wait.as_secs()))??;
    let status = resp.status().as_u16();
    let mut headers = resp.headers().clone();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if let Some(trailers) = collected.trailers() {
        for (name, value) in trailers {
            headers.append(name, value.clone());
        }
    }
    Ok(Answer {
        status,
        headers,
        body: collected.to_bytes(),
        certificate: None,
        elapsed: Duration::ZERO,
    })
}

/// The first length-prefixed message of a gRPC body (uncompressed), or the body as it is.
fn first_grpc_message(body: &Bytes) -> Bytes {
    match body.get(..5) {
        Some([0, a, b, c, d]) => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            body.slice(5..(5 + len).min(body.len()))
        }
        _ => body.clone(),
    }
}

/// The echo replicas of one Service: every one started (`<svc>-<i>`, serving to the end of the
/// case) and the ready ones, which its EndpointSlices list.
#[derive(Default)]
struct Replicas {
    all: Vec<EchoBackend>,
    ready: Vec<usize>,
}

impl Replicas {
    /// As a ReplicaSet scales: down, the newest go; up, brand-new replicas start (new names and
    /// ports, registered as `{{port:<svc>-<i>}}`).
    async fn scale(&mut self, svc: &str, n: usize, ports: &mut Ports) {
        self.ready.truncate(n);
        while self.ready.len() < n {
            let name = format!("{svc}-{}", self.all.len());
            let e = EchoBackend::start(&name).await;
            ports.0.insert(name, e.port);
            self.ready.push(self.all.len());
            self.all.push(e);
        }
    }

    /// The Service and the EndpointSlices of its ready replicas.
    fn service(&self, svc: &str) -> String {
        let ports: Vec<u16> = self.ready.iter().map(|i| self.all[*i].port).collect();
        echo_service(svc, &ports)
    }
}

/// Service `svc` with ports 80 (`http`) and 8080 (`http-alt`, the conformance suite's port),
/// one EndpointSlice per replica.
fn echo_service(svc: &str, replicas: &[u16]) -> String {
    let ports = [("http", 80), ("http-alt", 8080)];
    let mut parts = vec![service_with_ports(svc, &ports)];
    for (i, port) in replicas.iter().enumerate() {
        parts.push(endpoint_slice_ports(
            &format!("{svc}-{i}"),
            svc,
            &[("http", *port), ("http-alt", *port)],
            READY,
        ));
    }
    docs(&parts)
}

fn htpasswd_secret(name: &str, users: &BTreeMap<String, String>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines = String::new();
    for (user, pass) in users {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, pass.as_bytes());
        lines.push_str(&format!("{user}:{{SHA}}{}\n", b64.encode(digest.as_ref())));
    }
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: {NAMESPACE}}}\ntype: Opaque\ndata:\n  auth: {}\n",
        q(name),
        b64.encode(lines)
    )
}

/// Outcome of one case.
enum Outcome {
    Pass,
    Fail(String),
}

async fn run_case(case: &Case) -> Outcome {
    // a case that asserts nothing never passes (a pending one without observable steps stays
    // pending)
    if !case.steps.iter().any(|s| {
        s.request.is_some()
            || s.tcp.is_some()
            || s.metrics.is_some()
            || s.admission.is_some()
            || s.exit_within_s.is_some()
    }) {
        return Outcome::Fail("no request, tcp, metrics, admission or exit step".into());
    }
    if let Some(why) = case
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| step_error(s).map(|e| format!("step {i}: {e}")))
    {
        return Outcome::Fail(why);
    }
    let mut case_ports = Ports::default();
    let dir = ManifestDir::new();
    dir.write(
        "class.yaml",
        &ingress_class("nginx", "k8s.io/ingress-nginx"),
    );
    // echo backends: Service per name, one EndpointSlice per replica
    // 0 replicas: the Service without endpoints (a Deployment at 0 replicas), until a scale step
    let mut echoes: BTreeMap<String, Replicas> = BTreeMap::new();
    for (svc, n) in &case.backends {
        let replicas = echoes.entry(svc.clone()).or_default();
        replicas.scale(svc, *n, &mut case_ports).await;
        dir.write(&format!("svc-{svc}.yaml"), &replicas.service(svc));
    }
    let cm: Vec<(String, String)> = case
        .configmap
        .iter()
        .map(|(k, v)| (k.clone(), case_ports.fill(v)))
        .collect();
    let cm: Vec<(&str, &str)> = cm.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    dir.write("configmap.yaml", &controller_configmap(&cm));
    let mut session = Session::default();
    for s in &case.secrets {
        let yaml = match s.recipe.as_str() {
            "tls" => {
                let hosts: Vec<&str> = s.hosts.iter().map(String::as_str).collect();
                let cn = hosts.first().copied().unwrap_or("example.com");
                let cert = match s.key.as_deref() {
                    None | Some("ecdsa") => self_signed(&hosts, cn),
                    Some("rsa") => support::tls::self_signed_rsa(&hosts, cn),
                    Some(other) => {
                        return Outcome::Fail(format!("secret {}: key {other:?}", s.name))
                    }
                };
                tls_secret(&s.name, &cert)
            }
            "htpasswd" => htpasswd_secret(&s.name, &s.users),
            // framework.CreateIngressMASecret: the CA, a server certificate and a client
            // certificate it signed
            "ca" => {
                let cn = s.cn.as_deref().unwrap_or(&s.name);
                let ca = Ca::new(&format!("{cn}-ca"));
                let server = ca.server(cn);
                session
                    .client_certs
                    .insert(s.name.clone(), ca.client(&format!("{cn}-client"), 2));
                opaque_secret(
                    &s.name,
                    &[
                        ("ca.crt", &ca.pem),
                        ("tls.crt", &server.cert_pem),
                        ("tls.key", &server.key_pem),
                    ],
                )
            }
            other => return Outcome::Fail(format!("unknown secret recipe {other:?}")),
        };
        dir.write(&format!("secret-{}.yaml", s.name), &yaml);
    }
    // a client_cert goes over https and names a `ca` recipe of the case
    for (i, step) in case.steps.iter().enumerate() {
        let Some(r) = &step.request else { continue };
        let Some(name) = &r.client_cert else { continue };
        if r.scheme.as_deref() != Some("https") {
            return Outcome::Fail(format!("step {i}: client_cert needs scheme https"));
        }
        if !session.client_certs.contains_key(name) {
            return Outcome::Fail(format!(
                "step {i}: client_cert {name:?}: the case has no `ca` recipe of that name"
            ));
        }
    }
    if !case.objects.trim().is_empty() {
        dir.write("objects.yaml", &case_ports.fill(&case.objects));
    }
    // the class flags of ingress-nginx's e2e controller, unless the case gives its own
    let own = |f: &str| {
        case.flags
            .iter()
            .any(|a| a == f || a.starts_with(&format!("{f}=")))
    };
    let mut args = vec!["--configmap", "ingress/pingress"];
    if !own("--ingress-class") {
        args.extend(["--ingress-class", "nginx"]);
    }
    if !own("--controller-class") {
        args.extend(["--controller-class", "k8s.io/ingress-nginx"]);
    }
    if case.watch_without_class && !own("--watch-ingress-without-class") {
        args.push("--watch-ingress-without-class");
    }
    let flags: Vec<String> = case.flags.iter().map(|f| case_ports.fill(f)).collect();
    args.extend(flags.iter().map(String::as_str));
    // an admission step: the validating webhook on {{port:webhook}}, a certificate of the case's
    let certs = tempfile::tempdir().expect("temp dir");
    let webhook: Vec<String> = if case.steps.iter().any(|s| s.admission.is_some()) {
        let cert = self_signed(&["localhost"], "pingress-admission");
        let (crt, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
        std::fs::write(&crt, &cert.cert_pem).expect("write webhook certificate");
        std::fs::write(&key, &cert.key_pem).expect("write webhook key");
        vec![
            "--validating-webhook".into(),
            format!("127.0.0.1:{}", case_ports.port("webhook")),
            "--validating-webhook-certificate".into(),
            crt.display().to_string(),
            "--validating-webhook-key".into(),
            key.display().to_string(),
        ]
    } else {
        Vec::new()
    };
    args.extend(webhook.iter().map(String::as_str));
    let mut px = match Pingress::try_start_with_args(dir.path(), &args).await {
        Ok(px) => px,
        Err(failure) => return Outcome::Fail(start_failure(&failure)),
    };
    let mut changed = Instant::now();
    // the replica that answered each single request step
    let mut answered: Vec<Option<String>> = vec![None; case.steps.len()];
    for (i, step) in case.steps.iter().enumerate() {
        if let Some(a) = &step.apply {
            dir.write(&a.file, &case_ports.fill(&a.yaml));
            changed = Instant::now();
            continue;
        }
        if let Some(f) = &step.delete {
            dir.remove(f);
            changed = Instant::now();
            continue;
        }
        if let Some(scale) = &step.scale {
            for (svc, n) in scale {
                let Some(replicas) = echoes.get_mut(svc) else {
                    return Outcome::Fail(format!("step {i}: scale {svc:?}: no such backend"));
                };
                let before = replicas.ready.clone();
                replicas.scale(svc, *n, &mut case_ports).await;
                if replicas.ready == before {
                    continue;
                }
                // the next steps run against the scaled Service: wait (bounded) for the table
                // built from it (an answer the old table gives could pass them otherwise)
                let published =
                    |px: &Pingress| px.stderr().matches("route table published").count();
                let seen = published(&px);
                dir.write(&format!("svc-{svc}.yaml"), &replicas.service(svc));
                let px = &px;
                wait_until(
                    Duration::from_secs(15),
                    || async move { published(px) > seen },
                )
                .await;
            }
            changed = Instant::now();
            continue;
        }
        if let Some(sig) = &step.signal {
            px.signal(sig);
            // what the signal changes (probes failing) settles like a manifest change
            changed = Instant::now();
            continue;
        }
        if let Some(secs) = step.exit_within_s {
            match px.wait_exit(Duration::from_secs(secs)).await {
                Some(st) if st.success() => continue,
                Some(st) => return Outcome::Fail(format!("step {i}: pingress exited {st}")),
                None => {
                    return Outcome::Fail(format!(
                        "step {i}: pingress still runs {secs} s after the step"
                    ))
                }
            }
        }
        let mut expect = listen_filled(step.expect.clone().unwrap_or_default(), &px);
        for (want, out) in [
            (expect.same_replica_as, &mut expect.replica),
            (expect.other_replica_than, &mut expect.replica_not),
        ] {
            if let Some(n) = want {
                match answered.get(n).cloned().flatten() {
                    Some(r) => *out = Some(r),
                    None => {
                        return Outcome::Fail(format!(
                            "step {i}: step {n} is no earlier request step an echo replica answered"
                        ))
                    }
                }
            }
        }
        // each returns the stdout mark taken before the traffic whose answers passed
        let (what, result) = if let Some(m) = &step.metrics {
            ("GET /metrics".to_string(), metrics_settle(&px, m).await)
        } else if let Some(a) = &step.admission {
            let port = case_ports.port("webhook");
            let yaml = a.yaml.as_deref().map(|y| case_ports.fill(y));
            let uid = format!("compat-{i}");
            let result = until_settled(&px, changed, || async {
                admit(port, a, yaml.as_deref(), &uid, &expect).await
            })
            .await;
            (describe_admission(a, yaml.as_deref()), result.map(drop))
        } else if let Some(t) = &step.tcp {
            let port = case_ports.port(&t.port);
            // a tcp-services listener opens after the first table is live: on a busy machine
            // that can take longer than a step's settle time, so wait (bounded) for pingress
            // to hold the port before the step's clock starts
            let pid = px.pid();
            let bound = wait_until(Duration::from_secs(15), || async move {
                support::harness::owns_listener(pid, port)
            })
            .await;
            if bound.is_some() {
                changed = changed.max(Instant::now());
            }
            let result = until_settled(&px, changed, || async {
                tcp_exchange(port, t, &expect.reply_contains)
                    .await
                    .map_err(|e| format!("transport error: {e}"))
                    .and_then(|reply| check_reply(&expect.reply_contains, &reply))
            })
            .await;
            (
                format!("tcp {{{{port:{}}}}} = {port}", t.port),
                logged(&px, result, &expect).await,
            )
        } else if let Some(req) = &step.request {
            let result = match (step.repeat, step.concurrent) {
                (_, Some(n)) => concurrently(&px, req, &expect, n, &session).await,
                (Some(n), None) => repeat(&px, req, &expect, n, changed, &session).await,
                (None, None) => {
                    settle(&px, req, &expect, changed, &session)
                        .await
                        .map(|(mark, replica)| {
                            answered[i] = replica;
                            mark
                        })
                }
            };
            (describe(req), logged(&px, result, &expect).await)
        } else {
            unreachable!("step_error checked the step's kind")
        };
        if let Err(e) = result {
            // COMPAT_LOGS=1: pingress's warnings and errors with the failure
            let logs = match std::env::var_os("COMPAT_LOGS") {
                Some(_) => px
                    .stderr()
                    .lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .map(|l| format!("\n    {l}"))
                    .collect::<String>(),
                None => String::new(),
            };
            return Outcome::Fail(format!("step {i} ({what}): {e}{logs}"));
        }
    }
    drop(echoes);
    Outcome::Pass
}

/// `{{listen:http}}`, `{{listen:https}}`, `{{listen:health}}` in an expectation's header values,
/// body and log strings: the port pingress listens on there (ephemeral, known once it runs).
fn listen_filled(mut e: Expect, px: &Pingress) -> Expect {
    let fill = |v: &mut String| {
        *v = v
            .replace("{{listen:http}}", &px.port.to_string())
            .replace("{{listen:https}}", &px.https_port.to_string())
            .replace("{{listen:health}}", &px.healthz_port.to_string());
    };
    e.headers.values_mut().for_each(fill);
    e.headers_match.values_mut().for_each(fill);
    e.body_contains.iter_mut().for_each(fill);
    e.log_contains.iter_mut().for_each(fill);
    if let Some(up) = e.upstream.as_mut() {
        up.headers.values_mut().for_each(fill);
    }
    e
}

/// What is wrong with a step as written (checked before pingress starts): it does exactly one
/// thing, and its expectation fits that thing.
fn step_error(s: &Step) -> Option<String> {
    let kinds = [
        s.request.is_some(),
        s.tcp.is_some(),
        s.metrics.is_some(),
        s.apply.is_some(),
        s.delete.is_some(),
        s.admission.is_some(),
        s.scale.is_some(),
        s.signal.is_some(),
        s.exit_within_s.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Some(
            "a step has exactly one of request, tcp, metrics, apply, delete, admission, scale, \
             signal, exit_within_s"
                .into(),
        );
    }
    if let Some(sig) = &s.signal {
        if !["TERM", "INT", "QUIT"].contains(&sig.as_str()) {
            return Some(format!("signal {sig:?}: TERM, INT or QUIT"));
        }
    }
    if s.request.is_none() && (s.repeat.is_some() || s.concurrent.is_some()) {
        return Some("repeat and concurrent go with a request".into());
    }
    let expect = s.expect.clone().unwrap_or_default();
    if s.request.is_some() && !expect.reply_contains.is_empty() {
        return Some("reply_contains goes with a tcp step".into());
    }
    if s.admission.is_none() && (expect.allowed.is_some() || expect.message_contains.is_some()) {
        return Some("allowed and message_contains go with an admission step".into());
    }
    if let Some(a) = &s.admission {
        if a.yaml.is_some() == a.body_bytes.is_some() {
            return Some("an admission step has exactly one of yaml, body_bytes".into());
        }
        if !["CREATE", "UPDATE"].contains(&a.operation.as_str()) {
            return Some(format!(
                "admission operation {:?}: CREATE or UPDATE",
                a.operation
            ));
        }
        let other = Expect {
            status: None,
            allowed: None,
            message_contains: None,
            ..expect.clone()
        };
        if other != Expect::default() {
            return Some("an admission step expects status, allowed, message_contains only".into());
        }
        if expect == Expect::default() {
            return Some("an admission step needs an expect".into());
        }
    } else if s.tcp.is_some() {
        let other = Expect {
            reply_contains: Vec::new(),
            log_contains: Vec::new(),
            log_matches: None,
            log_absent: Vec::new(),
            ..expect
        };
        if other != Expect::default() {
            return Some("a tcp step expects reply_contains and log_* only".into());
        }
    } else if s.request.is_none() && s.expect.is_some() {
        return Some("only request, tcp and admission steps take an expect".into());
    }
    None
}

/// A case's failure when pingress does not start: the first line of the harness's report and
/// the last lines pingress wrote to stderr.
fn start_failure(failure: &str) -> String {
    let first = failure.lines().next().unwrap_or("");
    let stderr = failure
        .split_once("\nstderr:\n")
        .map(|(_, rest)| rest.split("\nstdout:").next().unwrap_or(rest))
        .unwrap_or("");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n    ");
    format!("pingress did not start: {first}\n    {tail}")
}

/// The access log expectations of a request or tcp step, once its traffic passed (`result`
/// holds the stdout mark taken before it).
async fn logged(
    px: &Pingress,
    result: Result<usize, String>,
    expect: &Expect,
) -> Result<(), String> {
    let logged = !expect.log_contains.is_empty() || expect.log_matches.is_some();
    match result {
        Ok(mark) if logged => log_line(px, mark, expect)
            .await
            .and_then(|()| log_absent(px, &expect.log_absent)),
        Ok(_) if !expect.log_absent.is_empty() => {
            Err("log_absent needs a log_contains or log_matches marker".to_string())
        }
        other => other.map(drop),
    }
}

/// The path pingress's validating webhook serves.
const WEBHOOK_PATH: &str = "/networking/v1/ingresses";

/// One POST to the validating webhook on `port`: an AdmissionReview `uid` of `yaml` (filled),
/// or `body_bytes` of `b`; checked against `expect`.
async fn admit(
    port: u16,
    a: &AdmissionSpec,
    yaml: Option<&str>,
    uid: &str,
    expect: &Expect,
) -> Result<(), String> {
    let reply = match (yaml, a.body_bytes) {
        (Some(yaml), _) => {
            let review = support::fake_apiserver::admission_review(uid, &a.operation, yaml);
            support::tls::https_post_json(port, WEBHOOK_PATH, &review).await
        }
        (None, n) => {
            let body = Bytes::from(vec![b'b'; n.unwrap_or(0)]);
            support::tls::https_post(port, WEBHOOK_PATH, "application/json", body).await
        }
    }
    .map_err(|e| format!("transport error: {e}"))?;
    check_admission(expect, reply.status, &reply.body, uid)
}

/// The webhook's answer against an admission step's expectation: `status` is the HTTP status
/// (200 when only `allowed` / `message_contains` are given).
fn check_admission(expect: &Expect, status: u16, body: &[u8], uid: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let reviewed = expect.allowed.is_some() || expect.message_contains.is_some();
    let want = expect.status.or(reviewed.then_some(200));
    if let Some(want) = want.filter(|w| *w != status) {
        return Err(format!("webhook status {status} (want {want}): {text:?}"));
    }
    if !reviewed {
        return Ok(());
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {text:?}"))?;
    let r = &v["response"];
    if v["kind"] != "AdmissionReview" || r["uid"] != uid {
        return Err(format!("not the AdmissionReview of uid {uid:?}: {v}"));
    }
    let allowed = r["allowed"].as_bool();
    let message = r["status"]["message"].as_str().unwrap_or("");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w.as_str()).collect())
        .unwrap_or_default();
    let mut miss = Vec::new();
    if let Some(want) = expect.allowed {
        if allowed != Some(want) {
            miss.push(format!("allowed {allowed:?} (want {want})"));
        }
    }
    if let Some(want) = &expect.message_contains {
        if !message.contains(want.as_str()) && !warnings.iter().any(|w| w.contains(want.as_str())) {
            miss.push(format!("message does not contain {want:?}"));
        }
    }
    if miss.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}; message {message:?}, warnings {warnings:?}",
            miss.join(", ")
        ))
    }
}

/// An admission step in a failure: `admission CREATE default/name` or `admission N bytes`.
fn describe_admission(a: &AdmissionSpec, yaml: Option<&str>) -> String {
    match yaml {
        Some(y) => {
            let name = support::fake_apiserver::yaml_values(y)
                .first()
                .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
                .unwrap_or_default();
            format!("admission {} {name}", a.operation)
        }
        None => format!("admission {} bytes", a.body_bytes.unwrap_or(0)),
    }
}

/// The `{{port:NAME}}` placeholders of a case: a free port per name, the same in every text of
/// the case (objects, apply, flags, ConfigMap values) and for its `tcp` steps.
#[derive(Default)]
struct Ports(BTreeMap<String, u16>);

impl Ports {
    fn port(&mut self, name: &str) -> u16 {
        *self.0.entry(name.to_string()).or_insert_with(free_port)
    }

    fn fill(&mut self, text: &str) -> String {
        static PLACEHOLDER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"\{\{port:([A-Za-z0-9_-]+)\}\}").unwrap()
        });
        PLACEHOLDER
            .replace_all(text, |c: &regex::Captures| self.port(&c[1]).to_string())
            .into_owned()
    }
}

/// One connection to pingress's `port`: the PROXY line and `send` written, then the reply read
/// until the peer closes, every `want` string arrived, or 3 s passed.
async fn tcp_exchange(port: u16, t: &TcpSpec, want: &[String]) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = connect(port, t.proxy_protocol.as_deref()).await?;
    tcp.write_all(t.send.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got);
        if !want.is_empty() && want.iter().all(|w| text.contains(w.as_str())) {
            break;
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if got.is_empty() => return Err(format!("read: {e}")),
            Ok(Err(_)) => break,
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn check_reply(want: &[String], reply: &str) -> Result<(), String> {
    match want.iter().find(|w| !reply.contains(w.as_str())) {
        None => Ok(()),
        Some(w) => Err(format!(
            "reply {:?} (want it to contain {w:?})",
            reply.chars().take(300).collect::<String>()
        )),
    }
}

/// Each `present` regex matches some line of the `/metrics` text, no `absent` regex any.
fn check_metrics(m: &MetricsSpec, text: &str) -> Result<(), String> {
    let compile = |re: &String| regex::Regex::new(re).map_err(|e| format!("bad regex {re:?}: {e}"));
    let mut miss = Vec::new();
    for re in &m.present {
        let r = compile(re)?;
        if !text.lines().any(|l| r.is_match(l)) {
            miss.push(format!("no /metrics line matches {re:?}"));
        }
    }
    for re in &m.absent {
        let r = compile(re)?;
        if let Some(l) = text.lines().find(|l| r.is_match(l)) {
            miss.push(format!("/metrics line {l:?} matches {re:?} (want none)"));
        }
    }
    if miss.is_empty() {
        Ok(())
    } else {
        Err(miss.join("; "))
    }
}

/// Reads `/metrics` (every 20 ms, at most `SETTLE` from now: the request metrics are recorded
/// when a request is logged, just after its answer) until the expectation holds.
async fn metrics_settle(px: &Pingress, m: &MetricsSpec) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let last = match px.try_metrics().await {
            Ok(text) => check_metrics(m, &text),
            Err(e) => Err(e),
        };
        if last.is_ok() || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe(r: &RequestSpec) -> String {
    let cert = match &r.client_cert {
        Some(c) => format!(" (client cert {c})"),
        None => String::new(),
    };
    format!(
        "{} {}://{}{}{cert}",
        r.method.as_deref().unwrap_or("GET"),
        r.scheme.as_deref().unwrap_or("http"),
        r.host.as_deref().unwrap_or("-"),
        r.path.as_deref().unwrap_or("/")
    )
}

/// Waits (at most `SETTLE`; the access log reaches stdout within 25 ms) until one line pingress
/// wrote to stdout after `mark` contains every `log_contains` string and matches `log_matches`.
async fn log_line(px: &Pingress, mark: usize, expect: &Expect) -> Result<(), String> {
    let re = match &expect.log_matches {
        Some(re) => {
            Some(regex::Regex::new(re).map_err(|e| format!("bad log_matches {re:?}: {e}"))?)
        }
        None => None,
    };
    let fits = |line: &String| {
        expect
            .log_contains
            .iter()
            .all(|n| line.contains(n.as_str()))
            && re.as_ref().is_none_or(|re| re.is_match(line))
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        let lines = px.stdout_lines_since(mark);
        if lines.iter().any(fits) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tail: Vec<&String> = lines.iter().rev().take(3).collect();
            let want = match &re {
                Some(re) => format!("{:?} and matching {:?}", expect.log_contains, re.as_str()),
                None => format!("{:?}", expect.log_contains),
            };
            return Err(format!(
                "no access log line after the request holds {want}; its last lines: {tail:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_absent(px: &Pingress, needles: &[String]) -> Result<(), String> {
    let out = px.stdout();
    match needles.iter().find(|n| out.contains(n.as_str())) {
        Some(n) => Err(format!("access log holds {n:?}")),
        None => Ok(()),
    }
}

/// Retries until the expectation holds or `SETTLE` has passed since the last change; returns
/// the stdout mark taken before the request that passed.
/// Sends the request until its answer holds (see [`until_settled`]); the stdout mark and the
/// replica that answered.
async fn settle(
    px: &Pingress,
    req: &RequestSpec,
    expect: &Expect,
    changed: Instant,
    session: &Session,
) -> Result<(usize, Option<String>), String> {
    let replica = std::sync::Mutex::new(None);
    let mark = until_settled(px, changed, || async {
        match send(px, req, session).await {
            Ok(a) => {
                *replica.lock().unwrap() = a.replica();
                check(expect, &a)
            }
            Err(e) => Err(format!("transport error: {e}")),
        }
    })
    .await?;
    Ok((mark, replica.into_inner().unwrap()))
}

/// Retries `attempt` (every 20 ms) until it holds or `SETTLE` has passed since the last change;
/// returns the stdout mark taken before the attempt that passed.
async fn until_settled<F, Fut>(
    px: &Pingress,
    changed: Instant,
    mut attempt: F,
) -> Result<usize, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        let mark = px.stdout_line_count();
        let last = attempt().await.map(|()| mark);
        if last.is_ok() || changed.elapsed() >= SETTLE {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the request `n` times at once (no settling: a step before it settles the route) and
/// counts the answers' statuses; returns the stdout mark taken before.
async fn concurrently(
    px: &Pingress,
    req: &RequestSpec,
    expect: &Expect,
    n: usize,
    session: &Session,
) -> Result<usize, String> {
    let mark = px.stdout_line_count();
    let answers = futures_util::future::join_all((0..n).map(|_| send(px, req, session))).await;
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for a in answers {
        let a = a.map_err(|e| format!("transport error: {e}"))?;
        *counts.entry(a.status).or_default() += 1;
    }
    match &expect.status_counts {
        Some(want) if &counts != want => {
            Err(format!("answers per status {counts:?} (want {want:?})"))
        }
        Some(_) => Ok(mark),
        None => Err("concurrent needs expect.status_counts".to_string()),
    }
}

/// Sends the request `n` times (after it first settles), checking each answer and the set of
/// replicas that answered, the batch retried until it holds or the settle time is over; returns
/// the stdout mark taken before the batch that passed.
async fn repeat(
    px: &Pingress,
    req: &RequestSpec,
    expect: &Expect,
    n: usize,
    changed: Instant,
    session: &Session,
) -> Result<usize, String> {
    let single = Expect {
        backends_seen: None,
        backend_counts: None,
        replicas_seen: None,
        ..expect.clone()
    };
    settle(px, req, &single, changed, session).await?;
    // the distribution holds once the change is live (a scale step's new replica is in the
    // table within the settle time, maybe after the first answer): the batch settles too
    until_settled(px, changed, || async {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            let a = send(px, req, session)
                .await
                .map_err(|e| format!("transport error: {e}"))?;
            check(&single, &a)?;
            if let Some(r) = a.replica() {
                *counts.entry(r).or_default() += 1;
            }
        }
        if let Some(want) = &expect.backend_counts {
            if &counts != want {
                return Err(format!("answers per replica {counts:?} (want {want:?})"));
            }
        }
        if let Some(want) = expect.replicas_seen {
            if counts.len() != want {
                return Err(format!(
                    "{} replicas answered {counts:?} (want {want})",
                    counts.len()
                ));
            }
        }
        if let Some(want) = &expect.backends_seen {
            let want: BTreeSet<String> = want.iter().cloned().collect();
            let seen: BTreeSet<String> = counts.into_keys().collect();
            if seen != want {
                return Err(format!("replicas seen {seen:?} (want {want:?})"));
            }
        }
        Ok(())
    })
    .await
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/cases")
}

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            case_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// Every case file, parsed; a file that does not parse fails with its name and position.
fn load() -> Vec<(PathBuf, CaseFile)> {
    let mut files = Vec::new();
    case_files(&cases_dir(), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let parsed: CaseFile =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            for c in &parsed.cases {
                let states = [c.pending.is_some(), c.differs.is_some()];
                assert!(
                    states.iter().filter(|s| **s).count() <= 1,
                    "{}: case {:?} is both pending and differs",
                    p.display(),
                    c.name
                );
            }
            (p, parsed)
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Counts {
    pass: usize,
    derived: usize,
    differs: usize,
    pending: usize,
}

/// The README table: per area, cases that pass (of which derived), differ, are pending.
fn table(files: &[(PathBuf, CaseFile)]) -> String {
    let mut areas: BTreeMap<&str, Counts> = BTreeMap::new();
    for (_, f) in files {
        let c = areas.entry(f.area.as_str()).or_default();
        for case in &f.cases {
            if case.pending.is_some() {
                c.pending += 1;
            } else if case.differs.is_some() {
                c.differs += 1;
            } else {
                c.pass += 1;
                c.derived += usize::from(case.derived);
            }
        }
    }
    let mut s = String::from(
        "| area | pass (of which derived from nginx.conf assertions) | differs | pending | total |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut total = Counts::default();
    for (area, c) in &areas {
        s.push_str(&format!(
            "| {area} | {} ({}) | {} | {} | {} |\n",
            c.pass,
            c.derived,
            c.differs,
            c.pending,
            c.pass + c.differs + c.pending
        ));
        total.pass += c.pass;
        total.derived += c.derived;
        total.differs += c.differs;
        total.pending += c.pending;
    }
    let all = total.pass + total.differs + total.pending;
    s.push_str(&format!(
        "| **all** | **{}** ({}; {}% of all) | {} | {} | {all} |\n",
        total.pass,
        total.derived,
        (total.pass * 100).checked_div(all).unwrap_or(0),
        total.differs,
        total.pending
    ));
    s
}

#[test]
fn readme_compat_table_is_current() {
    support::readme::check_section(
        "<!-- compat:start (generated by `PINGRESS_BLESS=1 cargo test --test compat`) -->\n",
        "<!-- compat:end -->",
        &table(&load()),
        "PINGRESS_BLESS=1 cargo test --test compat",
    );
}

/// Runs every case (`COMPAT_FILTER=<substring of file or case name>` narrows it) and fails on a
/// case that does not pass or a pending case that passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_suite() {
    let filter = std::env::var("COMPAT_FILTER").ok();
    let files = load();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut jobs = Vec::new();
    for (path, f) in &files {
        let rel = path
            .strip_prefix(cases_dir())
            .unwrap_or(path)
            .display()
            .to_string();
        for case in &f.cases {
            if let Some(flt) = &filter {
                if !rel.contains(flt.as_str()) && !case.name.contains(flt.as_str()) {
                    continue;
                }
            }
            let label = format!("{rel} ({} {}): {}", f.repo, f.source, case.name);
            let pending = case.pending.clone();
            let case = case.clone();
            let gate = gate.clone();
            let job = tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                run_case(&case).await
            });
            jobs.push((label, pending, job));
        }
    }
    let mut problems = Vec::new();
    let (mut passed, mut pending) = (0, 0);
    for (label, pending_topic, job) in jobs {
        // a case that panics (a harness deadline) fails alone
        let outcome = job
            .await
            .unwrap_or_else(|e| Outcome::Fail(format!("the case panicked: {e}")));
        match (&pending_topic, outcome) {
            (None, Outcome::Pass) => passed += 1,
            (None, Outcome::Fail(why)) => problems.push(format!("FAIL {label}: {why}")),
            (Some(topic), Outcome::Pass) => problems.push(format!(
                "PASSES BUT PENDING ({topic}) {label}: promote it (remove `pending`)"
            )),
            (Some(topic), Outcome::Fail(why)) => {
                pending += 1;
                eprintln!("pending ({topic}) {label}: {why}");
            }
        }
    }
    eprintln!(
        "compat: {passed} pass, {pending} pending, {} problems, {:.1} s",
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_case_that_must_fail_does_fail() {
    // the checker itself: a wrong expectation is reported, a right one passes
    let mut headers = hyper::HeaderMap::new();
    headers.insert("location", "http://foo.bar/".parse().unwrap());
    let a = Answer {
        status: 301,
        headers,
        body: Bytes::from_static(b"x"),
        certificate: None,
        elapsed: Duration::ZERO,
    };
    let ok = Expect {
        status: Some(301),
        headers: [("Location".to_string(), "http://foo.bar/".to_string())].into(),
        ..Default::default()
    };
    assert!(check(&ok, &a).is_ok());
    let wrong = Expect {
        status: Some(200),
        headers_absent: vec!["location".into()],
        upstream: Some(Upstream::default()),
        ..Default::default()
    };
    let err = check(&wrong, &a).unwrap_err();
    assert!(err.contains("status 301") && err.contains("want absent") && err.contains("no echo"));
    // a certificate expectation: none on plain HTTP, a wrong CN is reported
    let cert = Expect {
        certificate: Some(CertExpect {
            subject_cn: Some("foo".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(check(&cert, &a).unwrap_err().contains("no certificate"));
    let seen = support::tls::Seen {
        cn: "bar".into(),
        sans: vec!["bar".into()],
        issuer_cn: "bar".into(),
        chain_len: 1,
        alpn: None,
        version: None,
        cipher: None,
    };
    let https = Answer {
        certificate: Some(seen),
        elapsed: Duration::ZERO,
        ..a
    };
    let err = check(&cert, &https).unwrap_err();
    assert!(err.contains("subject CN \"bar\""), "{err}");
    // a step does one thing, and its expectation fits it
    let step = |yaml: &str| step_error(&serde_saphyr::from_str::<Step>(yaml).unwrap());
    assert_eq!(step("tcp: {port: p}\nexpect: {reply_contains: [x]}"), None);
    assert!(step("tcp: {port: p}\nexpect: {status: 200}").is_some_and(|e| e.contains("tcp")));
    assert!(step("request: {}\nexpect: {reply_contains: [x]}").is_some());
    assert!(step("metrics: {present: [x]}\nrequest: {}").is_some());
    assert!(step("metrics: {present: [x]}\nexpect: {status: 200}").is_some());
    assert_eq!(step("admission: {yaml: x}\nexpect: {allowed: true}"), None);
    assert!(step("admission: {yaml: x}").is_some_and(|e| e.contains("needs an expect")));
    assert!(step("admission: {yaml: x, body_bytes: 1}\nexpect: {status: 413}").is_some());
    assert!(step("admission: {yaml: x, operation: DELETE}\nexpect: {allowed: true}").is_some());
    assert!(step("admission: {yaml: x}\nexpect: {backend: echo}").is_some());
    assert!(step("request: {}\nexpect: {allowed: true}").is_some());
}

/// Runs a case written to fail; its failure message (panics with `pass_msg` if it passed).
async fn failure_of(yaml: &str, pass_msg: &str) -> String {
    let case: Case = serde_saphyr::from_str(yaml).unwrap();
    match run_case(&case).await {
        Outcome::Pass => panic!("{pass_msg}"),
        Outcome::Fail(why) => why,
    }
}

#[tokio::test]
async fn a_log_expectation_that_does_not_hold_fails() {
    // the line holds the string but does not match the regex
    let why = failure_of(
        "name: log on purpose\nconfigmap: {enable-access-log-for-default-backend: \"true\"}\nbackends: {echo: 1}\nsteps:\n  - request: {host: nowhere.example, path: /seen-in-log}\n    expect: {status: 404, log_contains: [/seen-in-log], log_matches: '\" 200 '}\n",
        "a 404 logged as 200 passed",
    )
    .await;
    assert!(
        why.contains(r#"matching "\" 200 ""#) && why.contains("GET /seen-in-log"),
        "{why}"
    );
}

#[tokio::test]
async fn a_log_line_from_before_the_request_does_not_count() {
    // step 0's line matches; step 1 looks for it again, but only after its own request
    let why = failure_of(
        "name: log order on purpose\nconfigmap: {enable-access-log-for-default-backend: \"true\"}\nbackends: {echo: 1}\nsteps:\n  - request: {host: nowhere.example, path: /first}\n    expect: {status: 404, log_contains: [/first], log_matches: '\"GET /first HTTP/1\\.1\" 404 '}\n  - request: {host: nowhere.example, path: /second}\n    expect: {status: 404, log_contains: [/first]}\n",
        "an earlier request's log line satisfied a later step",
    )
    .await;
    assert!(
        why.starts_with("step 1 ") && why.contains("no access log line after the request"),
        "{why}"
    );
}

#[tokio::test]
async fn concurrent_requests_are_counted_by_status() {
    let why = failure_of(
        "name: counts on purpose\nbackends: {echo: 1}\nsteps:\n  - concurrent: 3\n    request: {host: nowhere.example}\n    expect: {status_counts: {200: 3}}\n",
        "3 answers of an unknown host counted as 200",
    )
    .await;
    assert!(why.contains("{404: 3}"), "{why}");
}

#[tokio::test]
async fn a_real_case_with_a_wrong_expectation_fails() {
    let why = failure_of(
        "name: wrong on purpose\nbackends: {echo: 1}\nsteps:\n  - request: {host: nowhere.example}\n    expect: {status: 200, backend: echo}\n",
        "a case expecting 200 for an unknown host passed",
    )
    .await;
    assert!(why.contains("status 404"), "{why}");
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_fails() {
    // step 0: the `ca` recipe's own client certificate is accepted (and the listener presents
    // the recipe's server certificate); step 1: another recipe's CA did not sign its certificate
    let why = failure_of(
        r#"name: client cert on purpose
backends: {echo: 1}
secrets:
  - {name: mtls, recipe: ca, cn: mtls.example}
  - {name: stranger, recipe: ca, cn: mtls.example}
objects: |
  apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: mtls
    namespace: default
    annotations: {nginx.ingress.kubernetes.io/auth-tls-secret: default/mtls}
  spec:
    tls: [{hosts: [mtls.example], secretName: mtls}]
    rules:
    - host: mtls.example
      http:
        paths:
        - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
steps:
  - request: {scheme: https, host: mtls.example, client_cert: mtls}
    expect:
      status: 200
      backend: echo
      certificate: {subject_cn: mtls.example, issuer_cn: mtls.example-ca, dns_names: []}
  - request: {scheme: https, host: mtls.example, client_cert: stranger}
    expect: {status: 200, backend: echo}
"#,
        "a client certificate of another CA was accepted",
    )
    .await;
    assert!(
        why.starts_with("step 1 ")
            && why.contains("(client cert stranger)")
            && why.contains("status 400"),
        "{why}"
    );
}

#[tokio::test]
async fn a_tcp_reply_expectation_that_does_not_hold_fails() {
    // step 0: the tcp-services port relays to the echo backend; step 1: a reply it never gives
    let why = failure_of(
        r#"name: tcp on purpose
backends: {echo: 1}
flags: ["--tcp-services-configmap", "default/tcp-services"]
objects: |
  apiVersion: v1
  kind: ConfigMap
  metadata: {name: tcp-services, namespace: default}
  data:
    "{{port:tcp}}": default/echo:80
steps:
  - tcp: {port: tcp, send: "GET / HTTP/1.1\r\nHost: tcp\r\nConnection: close\r\n\r\n"}
    expect: {reply_contains: ["HTTP/1.1 200 ", "echo-0"], log_contains: [" TCP 200 "]}
  - tcp: {port: tcp, send: "GET / HTTP/1.1\r\nHost: tcp\r\nConnection: close\r\n\r\n"}
    expect: {reply_contains: ["HTTP/1.1 404 "]}
"#,
        "a 200 reply passed for a 404",
    )
    .await;
    assert!(
        why.starts_with("step 1 (tcp {{port:tcp}} = ")
            && why.contains("HTTP/1.1 200 ")
            && why.contains("want it to contain \"HTTP/1.1 404 \""),
        "{why}"
    );
}

#[tokio::test]
async fn a_metrics_expectation_that_does_not_hold_fails() {
    // step 1: the 200 is counted with the Ingress's labels; step 2: the same series as absent
    let why = failure_of(
        r#"name: metrics on purpose
backends: {echo: 1}
objects: |
  apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: counted, namespace: default}
  spec:
    rules:
    - host: counted.example
      http:
        paths:
        - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
steps:
  - request: {host: counted.example}
    expect: {status: 200, backend: echo, log_contains: ['"GET / HTTP/1.1" 200 ']}
  - metrics:
      present: ['^nginx_ingress_controller_requests\{[^}]*host="counted.example",ingress="counted"[^}]*status="200"\} 1$']
      absent: ['^nginx_ingress_controller_requests\{[^}]*status="500"']
  - metrics:
      absent: ['^nginx_ingress_controller_requests\{[^}]*ingress="counted"']
"#,
        "a counted request's series passed as absent",
    )
    .await;
    assert!(
        why.starts_with("step 2 (GET /metrics): /metrics line ")
            && why.contains("ingress=\\\"counted\\\"")
            && why.contains("(want none)"),
        "{why}"
    );
    // the pure check: a present regex no line matches
    let m = MetricsSpec {
        present: vec!["^b ".into()],
        absent: vec![],
    };
    assert!(check_metrics(&m, "a 1\nb 2").is_ok());
    let err = check_metrics(&m, "# HELP b\nbb 1").unwrap_err();
    assert!(err.contains("no /metrics line matches \"^b \""), "{err}");
}

#[tokio::test]
async fn an_admission_expectation_that_does_not_hold_fails() {
    // step 0: a path the served Ingress holds is refused, naming it; step 1: the same review
    // expected allowed
    let review = r#"
      yaml: |
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: second, namespace: default}
        spec:
          rules:
          - host: taken.example
            http:
              paths:
              - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}"#;
    let why = failure_of(
        &format!(
            r#"name: admission on purpose
backends: {{echo: 1}}
objects: |
  apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {{name: first, namespace: default}}
  spec:
    rules:
    - host: taken.example
      http:
        paths:
        - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{number: 80}}}}}}}}
steps:
  - admission:{review}
    expect: {{allowed: false, message_contains: default/first}}
  - admission:{review}
    expect: {{allowed: true}}
"#
        ),
        "a refused review passed as allowed",
    )
    .await;
    assert!(
        why.starts_with("step 1 (admission CREATE second): allowed Some(false) (want true)")
            && why.contains("PathConflict"),
        "{why}"
    );
    // the pure check: the HTTP status, the uid, the message
    let body = br#"{"kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"message":"no"}}}"#;
    let refused = Expect {
        allowed: Some(false),
        message_contains: Some("no".into()),
        ..Default::default()
    };
    assert!(check_admission(&refused, 200, body, "u").is_ok());
    assert!(check_admission(&refused, 200, body, "v")
        .unwrap_err()
        .contains("uid"));
    assert!(check_admission(&refused, 413, b"too large", "u")
        .unwrap_err()
        .contains("webhook status 413 (want 200)"));
    let large = Expect {
        status: Some(413),
        ..Default::default()
    };
    assert!(check_admission(&large, 413, b"too large", "u").is_ok());
}

#[tokio::test]
async fn a_pingress_that_does_not_start_fails_its_case_alone() {
    let why = failure_of(
        "name: start on purpose\nbackends: {echo: 1}\nflags: [--no-such-flag]\nsteps:\n  - request: {host: nowhere.example}\n    expect: {status: 404}\n",
        "a case whose pingress refuses its flags passed",
    )
    .await;
    assert!(
        why.starts_with("pingress did not start: exited with ")
            && why.contains("unexpected argument '--no-such-flag'"),
        "{why}"
    );
}

#[tokio::test]
async fn scale_replica_and_exit_expectations_that_do_not_hold_fail() {
    let ing = r#"objects: |
  apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: s, namespace: default}
  spec:
    rules:
    - host: s
      http:
        paths:
        - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
"#;
    // scaled to 0, then to 1: a brand-new replica answers, not the first one
    let why = failure_of(
        &format!(
            "name: scale on purpose\nbackends: {{echo: 1}}\n{ing}steps:\n\
             - request: {{host: s}}\n  expect: {{status: 200, backend: echo}}\n\
             - scale: {{echo: 0}}\n\
             - request: {{host: s}}\n  expect: {{status: 503}}\n\
             - scale: {{echo: 1}}\n\
             - request: {{host: s}}\n  expect: {{status: 200, same_replica_as: 0}}\n"
        ),
        "a brand-new replica passed as the first one",
    )
    .await;
    assert!(
        why.starts_with("step 4 (GET http://s/): ")
            && why.contains("replica Some(\"echo-1\") (want echo-0, as before)"),
        "{why}"
    );
    // nobody signalled pingress: it does not exit
    let why = failure_of(
        &format!(
            "name: exit on purpose\nbackends: {{echo: 1}}\n{ing}steps:\n\
             - request: {{host: s}}\n  expect: {{status: 200}}\n\
             - exit_within_s: 1\n"
        ),
        "a running pingress passed an exit step",
    )
    .await;
    assert_eq!(why, "step 1: pingress still runs 1 s after the step");
    // the health port answers /healthz 200 while pingress runs; SIGTERM with a grace period:
    // pingress serves on, so it has not exited 2 s later
    let why = failure_of(
        &format!(
            "name: signal on purpose\nflags: [\"--shutdown-grace-period=30\"]\n\
             backends: {{echo: 1}}\n{ing}steps:\n\
             - request: {{listener: health, path: /healthz}}\n  expect: {{status: 200}}\n\
             - signal: TERM\n\
             - exit_within_s: 2\n"
        ),
        "a pingress in its shutdown grace period passed an exit step",
    )
    .await;
    assert_eq!(why, "step 2: pingress still runs 2 s after the step");
}
