//! The HTTP edge over real sockets: idle and silent client connections are closed after
//! ingress-nginx's timeouts (`keep-alive`, `client-header-timeout`, here shortened by the
//! ConfigMap), on the plain listener (HTTP/1 and h2c) and the HTTPS one; a request shorter than
//! the h2 preface is answered at once.

mod support;

use std::time::{Duration, Instant};

use support::raw::answering_backend;
use support::tls::{client_config, connect};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// keep-alive and client-header-timeout of the test ConfigMap, in seconds.
const IDLE: u64 = 2;

async fn start() -> (Pingress, EchoBackend, ManifestDir) {
    let idle = IDLE.to_string();
    let started = start_with(
        &[("keep-alive", &idle), ("client-header-timeout", &idle)],
        &[],
    )
    .await;
    started.0.wait_status("edge.test", "/", 200, STARTUP).await;
    started
}

/// The backend file: Service `svc` over `port` and the controller ConfigMap with `config`.
fn backends(port: u16, config: &[(&str, &str)]) -> String {
    docs(&[backend_set("svc", &[port]), controller_configmap(config)])
}

/// pingress (`--configmap ingress/pingress` + `flags`) serving `edge.test` from one echo
/// backend, with the controller ConfigMap `config`. It waits for the first table only: no
/// client connection is left open (the connection-cap test counts them).
async fn start_with(
    config: &[(&str, &str)],
    flags: &[&str],
) -> (Pingress, EchoBackend, ManifestDir) {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backends(b.port, config));
    dir.write(
        "ingress.yaml",
        &Ingress::new("edge")
            .host("edge.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let mut args = vec!["--configmap", "ingress/pingress"];
    args.extend_from_slice(flags);
    let px = Pingress::start_with_args(dir.path(), &args).await;
    (px, b, dir)
}

/// Closed after about `IDLE` seconds: not before (the timeout is honoured, not zero), and
/// long before the old unbounded behaviour.
fn closed_on_time(what: &str, took: Duration) {
    let idle = Duration::from_secs(IDLE);
    assert!(
        took >= idle - Duration::from_millis(300) && took < idle + Duration::from_secs(6),
        "{what}: closed after {took:?}, expected about {idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_plain_connections_are_closed() {
    let (px, _b, _dir) = start().await;

    // a connection that never sends a byte: client-header-timeout
    let mut silent = RawConn::connect(px.port).await;
    let t = Instant::now();
    let got = silent.read_to_close(Duration::from_secs(15)).await;
    assert!(got.is_empty(), "{got:?}");
    closed_on_time("silent connection", t.elapsed());

    // a stalled h2 preface: the same deadline
    let mut stalled = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stalled.read_to_end(&mut buf))
        .await
        .expect("stalled preface closed")
        .ok();
    closed_on_time("stalled h2c preface", t.elapsed());

    // a request shorter than the h2 preface is answered at once, not after a timeout
    let mut short = RawConn::connect(px.port).await;
    let t = Instant::now();
    short.send_raw(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let r = short.read_response().await.unwrap();
    assert_eq!(r.status, 404);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // HTTP/1.1 keep-alive: idle after a response, closed after keep-alive
    let mut idle = RawConn::connect(px.port).await;
    let r = idle.get("edge.test", "/").await.unwrap();
    assert_eq!(r.status, 200);
    let t = Instant::now();
    let got = idle.read_to_close(Duration::from_secs(15)).await;
    assert!(got.is_empty());
    closed_on_time("idle HTTP/1.1 keep-alive", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2c_and_https_connections_are_closed() {
    let (px, _b, _dir) = start().await;

    // h2c: one request, then idle until the server closes the connection
    let stream = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://edge.test/")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("idle h2c connection closed")
        .unwrap()
        .ok();
    closed_on_time("idle h2c", t.elapsed());

    // HTTPS, HTTP/1.1: one request, then idle
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let (mut tls, _) = connect(px.https_port, Some("edge.test"), cfg)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let t = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut rest))
        .await
        .expect("idle HTTPS connection closed")
        .ok();
    closed_on_time("idle HTTPS keep-alive", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    // 3 per thread, 1 thread: 3 client connections at once
    let (px, _b, _dir) = start_with(&[("max-worker-connections", "3")], &["--threads", "1"]).await;
    // three connections held open (each has served a request, so each is counted)
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect(px.port).await;
        assert_eq!(c.get("edge.test", "/").await.unwrap().status, 200);
        held.push(c);
    }
    // the fourth is closed without a byte
    let mut over = RawConn::connect(px.port).await;
    over.send_get("edge.test", "/").await.ok();
    let got = over.read_to_close(Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(
        px.wait_stderr_contains("connection cap reached", Duration::from_secs(5))
            .await
    );
    // once one is closed, a new connection is served again
    drop(held.pop());
    let served = wait_until(Duration::from_secs(5), || async {
        let mut c = RawConn::connect(px.port).await;
        matches!(c.get("edge.test", "/").await, Ok(r) if r.status == 200)
    })
    .await;
    assert!(served.is_some());
    let metrics = px.metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("nginx_ingress_controller_nginx_process_connections_total{")
            && l.contains("state=\"refused\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_ambiguous_lengths_and_malformed_chunks_are_400_as_nginx() {
    let (px, b, _dir) = start().await;
    let before = b.requests();
    for raw in [
        &b"GET /a%00b HTTP/1.1\r\nHost: edge.test\r\n\r\n"[..],
        // a raw space or control character in the target (nginx 1.21.1+: 400)
        b"GET /a b HTTP/1.1\r\nHost: edge.test\r\n\r\n",
        b"GET /a?q=x y HTTP/1.1\r\nHost: edge.test\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: edge.test\r\n\r\n",
        // a malformed chunked body: the client's error (400), not the proxy's (500)
        b"POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5, 5\r\n\r\nhello",
    ] {
        let mut c = RawConn::connect(px.port).await;
        c.send_raw(raw).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!(
        b.requests(),
        before,
        "a refused request reached the backend"
    );
    assert!(
        !px.stderr().contains("ERROR"),
        "a client's bad request was logged as an error:\n{}",
        px.stderr()
    );
    // the same without the ambiguity is served
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    assert_eq!(c.read_response().await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_proxy_and_not_forwarded() {
    let (px, _b, _dir) = start().await;
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(
        b"POST /upload HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    // answered before anything reaches the backend (hyper would answer 100 itself only once
    // it saw the forwarded Expect, which it must not see)
    let t = Instant::now();
    let interim = c.read_response().await.unwrap();
    assert_eq!(interim.status, 100);
    assert!(t.elapsed() < Duration::from_secs(1));
    c.send_raw(b"hello").await.unwrap();
    let r = c.read_response().await.unwrap();
    assert_eq!(r.status, 200);
    let echo: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(echo.body_len, 5);
    assert_eq!(echo.header("expect"), None, "Expect was forwarded");
    // over the limit by Content-Length: 413 instead of 100
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(
        b"POST /upload HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(c.read_response().await.unwrap().status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_block_cidrs_refuses_listed_clients_on_every_host() {
    let (px, b, dir) = start_with(&[("block-cidrs", "10.0.0.0/8")], &[]).await;
    px.wait_status("edge.test", "/", 200, STARTUP).await;
    // the test client (127.0.0.1) listed: 403 on a served host and on an unknown one
    dir.write(
        "backends.yaml",
        &backends(b.port, &[("block-cidrs", "192.0.2.0/24, 127.0.0.1")]),
    );
    px.wait_status("edge.test", "/", 403, RELOAD * 5).await;
    assert_eq!(px.get("nowhere.test", "/x").await.status, 403);
    let before = b.requests();
    assert_eq!(px.get("edge.test", "/y").await.status, 403);
    assert_eq!(b.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_block_user_agents_and_referers_refuse_on_every_host() {
    let (px, b, _dir) = start_with(
        &[
            ("block-user-agents", "BadBot/1.0, ~*scrapy, ~^curl/7\\."),
            ("block-referers", "~*spam\\.example"),
        ],
        &[],
    )
    .await;
    px.wait_status("edge.test", "/", 200, STARTUP).await;
    let before = b.requests();
    for (ua, referer, want) in [
        ("badbot/1.0", "", 403),          // plain entries ignore case, whole value
        ("BadBot/1.0 extra", "", 200),    // but only the whole value
        ("Mozilla Scrapy/2.11", "", 403), // ~* anywhere, any case
        ("curl/7.88.1", "", 403),         // ~ regex
        ("CURL/7.88.1", "", 200),         // ~ is case-sensitive
        ("Mozilla/5.0", "https://SPAM.example/x", 403),
        ("Mozilla/5.0", "https://example.com/", 200),
    ] {
        let mut h = vec![("User-Agent", ua)];
        if !referer.is_empty() {
            h.push(("Referer", referer));
        }
        let r = px
            .request(reqwest::Method::GET, "edge.test", "/", &h, vec![])
            .await;
        assert_eq!(r.status, want, "{ua} {referer}");
    }
    assert_eq!(
        b.requests(),
        before + 3,
        "a blocked request reached the backend"
    );
    let r = px
        .request(
            reqwest::Method::GET,
            "nowhere.test",
            "/",
            &[("User-Agent", "BadBot/1.0")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (px, _b, _dir) = start().await;
    let mut c = RawConn::connect(px.port).await;
    // three requests in one write, the middle one with a body
    c.send_raw(
        b"GET /first HTTP/1.1\r\nHost: edge.test\r\n\r\n\
          POST /second HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /third HTTP/1.1\r\nHost: edge.test\r\n\r\n",
    )
    .await
    .unwrap();
    for (path, len) in [("/first", 0), ("/second", 5), ("/third", 0)] {
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        let e: Echo = serde_json::from_slice(&r.body).unwrap();
        assert_eq!((e.path.as_str(), e.body_len), (path, len));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_large_client_header_buffers_are_414_or_400() {
    let (px, b, _dir) = start().await;
    let before = b.requests();
    let long = |n: usize| "a".repeat(n);
    let refused = [
        // a request line over 8k
        (
            format!("GET /{} HTTP/1.1\r\nHost: edge.test\r\n\r\n", long(8200)),
            414,
        ),
        // one header line over 8k
        (
            format!(
                "GET / HTTP/1.1\r\nHost: edge.test\r\nCookie: {}\r\n\r\n",
                long(8200)
            ),
            400,
        ),
        // five lines of 7 KB: each fits a buffer, all of them not
        (
            format!(
                "GET / HTTP/1.1\r\nHost: edge.test\r\n{}\r\n",
                (0..5)
                    .map(|i| format!("X-{i}: {}\r\n", long(7000)))
                    .collect::<String>()
            ),
            400,
        ),
    ];
    for (raw, want) in &refused {
        let mut c = RawConn::connect(px.port).await;
        c.send_raw(raw.as_bytes()).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, *want, "{}...", &raw[..40]);
        assert!(r.closes(), "the connection is closed after {want}");
        let title = if *want == 414 {
            "414 Request-URI Too Large"
        } else {
            "400 Request Header Or Cookie Too Large"
        };
        assert!(
            String::from_utf8_lossy(&r.body).contains(title),
            "nginx's page title {title:?}"
        );
    }
    assert_eq!(
        b.requests(),
        before,
        "a refused request reached the backend"
    );
    // within the limits: a 7 KB URL and three 7 KB headers are served
    let raw = format!(
        "GET /{} HTTP/1.1\r\nHost: edge.test\r\n{}\r\n",
        long(7000),
        (0..3)
            .map(|i| format!("X-{i}: {}\r\n", long(7000)))
            .collect::<String>()
    );
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(raw.as_bytes()).await.unwrap();
    assert_eq!(c.read_response().await.unwrap().status, 200);
}

/// A backend answering every request with a `size`-byte response head (one padding header).
async fn big_header_backend(size: usize) -> (u16, tokio::task::JoinHandle<()>) {
    answering_backend(Duration::ZERO, move |_| {
        let fixed = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n".len();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: {}\r\n\r\nok",
            "p".repeat(size - fixed)
        )
        .into_bytes()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_head_over_proxy_buffer_size_is_502() {
    let (small, _t1) = big_header_backend(4000).await;
    let (big, _t2) = big_header_backend(6000).await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[backend_set("small", &[small]), backend_set("big", &[big])]),
    );
    dir.write(
        "default.yaml",
        &Ingress::new("default")
            .host(
                "default.test",
                &[("/small", PREFIX, "small"), ("/big", PREFIX, "big")],
            )
            .to_yaml(),
    );
    dir.write(
        "sized.yaml",
        &Ingress::new("sized")
            .annotation("nginx.ingress.kubernetes.io/proxy-buffer-size", "8k")
            .host("sized.test", &[("/big", PREFIX, "big")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("default.test", "/small", 200, STARTUP).await;
    // ingress-nginx's default proxy-buffer-size is 4k: "upstream sent too big header"
    assert_eq!(px.get("default.test", "/big").await.status, 502);
    assert!(
        px.wait_stderr_contains("upstream sent too big header", STARTUP)
            .await
    );
    let r = px.get("sized.test", "/big").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
}

/// Sends `head` one byte every 250 ms until the connection closes; how long that took, and
/// whatever pingress answered.
async fn trickle(stream: &mut tokio::net::TcpStream, head: &[u8]) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    for b in head.iter().cycle() {
        if stream.write_all(&[*b]).await.is_err() || t.elapsed() > Duration::from_secs(30) {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => return (t.elapsed(), buf[..n].to_vec()),
            Err(_) => {}
        }
    }
    (t.elapsed(), Vec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_sent_request_head_is_cut_at_client_header_timeout() {
    let (px, b, _dir) = start().await;
    let before = b.requests();
    // one header byte every 250 ms: each read is well within the per-read timeouts
    let head =
        b"GET / HTTP/1.1\r\nHost: edge.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut first = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    let (took, got) = trickle(&mut first, head).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    closed_on_time("slow first request head", took);

    // on a kept-alive connection the bound starts at the head's first byte (nginx: keepalive
    // timeout while idle, then client_header_timeout); a timer is set only when the head does
    // not arrive whole in one read (carried patch 3)
    let mut kept = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (took, got) = trickle(&mut kept, head).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    closed_on_time("slow head on a kept-alive connection", took);
    // before patch 3 counted from the first byte, the bound was keep-alive + header (4 s here)
    assert!(
        took < Duration::from_millis(IDLE * 1000 + 1500),
        "slow head on a kept-alive connection: closed after {took:?}, not about {IDLE} s after its first byte"
    );
    assert_eq!(
        b.requests(),
        before + 1,
        "only the complete request was proxied"
    );
}
