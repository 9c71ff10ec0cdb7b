//! The client behind a proxy (ingress-nginx e2e `settings/forwarded_headers.go`,
//! `settings/enable_real_ip.go`): with `use-forwarded-headers`, X-Forwarded-Proto/-Host/-Port
//! decide the HTTPS redirect and the forwarded headers, and the client address comes from
//! X-Forwarded-For when the peer is trusted; without it those headers are the client's word only.

mod support;

use reqwest::Method;
use support::tls::{self_signed, tls_secret};
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

async fn start(config: &[(&str, &str)]) -> (Pingress, EchoBackend, ManifestDir) {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            controller_configmap(config),
            tls_secret("fwd-tls", &self_signed(&["fwd.test"], "fwd.test")),
        ]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new("fwd")
            .tls(&["fwd.test"], "fwd-tls")
            .host("fwd.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    dir.write(
        "allow.yaml",
        &Ingress::new("allow")
            .annotation(&nx("whitelist-source-range"), "203.0.113.7/32")
            .host("allow.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    (px, app, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_forwarded_headers_trusts_the_proxy_in_front() {
    let (px, _app, _dir) = start(&[("use-forwarded-headers", "true")]).await;
    px.wait_status("fwd.test", "/", 308, STARTUP).await;

    // TLS terminated in front: no redirect loop, the forwarded view goes upstream
    let headers = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "public.example.com"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.1"),
    ];
    let r = px
        .request(Method::GET, "fwd.test", "/a", &headers, Vec::new())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo();
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("x-forwarded-scheme"), Some("https"));
    assert_eq!(e.header("x-forwarded-host"), Some("public.example.com"));
    assert_eq!(e.header("x-forwarded-port"), Some("443"));
    assert_eq!(e.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(e.header("x-forwarded-for"), Some("203.0.113.7"));
    assert_eq!(
        e.header("x-original-forwarded-for"),
        Some("203.0.113.7, 10.0.0.1")
    );

    // plain HTTP in front: redirected to the host the client used
    let r = px
        .request(
            Method::GET,
            "fwd.test",
            "/a?b=1",
            &[
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "public.example.com"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://public.example.com/a?b=1"
    );

    // the allowlist sees the real client
    let ok = px
        .request(
            Method::GET,
            "allow.test",
            "/",
            &[("X-Forwarded-For", "203.0.113.7")],
            Vec::new(),
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(px.get("allow.test", "/").await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_use_forwarded_headers_the_headers_are_not_believed() {
    let (px, _app, _dir) = start(&[]).await;
    px.wait_status("fwd.test", "/", 308, STARTUP).await;
    let headers = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "public.example.com"),
        ("X-Forwarded-For", "203.0.113.7"),
    ];
    let r = px
        .request(Method::GET, "fwd.test", "/a", &headers, Vec::new())
        .await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers.get("location").unwrap(), "https://fwd.test/a");
    let r = px
        .request(Method::GET, "allow.test", "/", &headers, Vec::new())
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_full_forwarded_for_appends_the_peer_and_trust_is_limited_to_the_cidr() {
    let (px, _app, _dir) = start(&[
        ("use-forwarded-headers", "true"),
        ("compute-full-forwarded-for", "true"),
        ("proxy-real-ip-cidr", "127.0.0.0/8, 10.0.0.0/8"),
    ])
    .await;
    px.wait_status("allow.test", "/", 403, STARTUP).await;
    let r = px
        .request(
            Method::GET,
            "allow.test",
            "/",
            &[("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.9")],
            Vec::new(),
        )
        .await;
    // from the right: 10.0.0.9 trusted, 203.0.113.7 is the client
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo();
    assert_eq!(e.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(
        e.header("x-forwarded-for"),
        Some("198.51.100.1, 203.0.113.7, 10.0.0.9, 127.0.0.1")
    );
}

/// pingress with `use-proxy-protocol` (its plain listener then answers nothing without a
/// PROXY header, so readiness is `/readyz`, then the first answered request).
async fn start_proxy_protocol(extra: &[(&str, &str)]) -> (Pingress, EchoBackend, ManifestDir) {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    let mut config = vec![("use-proxy-protocol", "true")];
    config.extend_from_slice(extra);
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            controller_configmap(&config),
            tls_secret("fwd-tls", &self_signed(&["fwd.test"], "fwd.test")),
        ]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new("fwd")
            .annotation(&nx("ssl-redirect"), "false")
            .tls(&["fwd.test"], "fwd-tls")
            .host("fwd.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    let px = Pingress::spawn(
        &[
            "--manifests".to_string(),
            dir.path().display().to_string(),
            "--configmap".to_string(),
            "ingress/pingress".to_string(),
        ],
        &[],
    );
    let deadline = std::time::Instant::now() + STARTUP;
    while px.health("/readyz").await != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready\n{}",
            px.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (px, app, dir)
}

/// One GET over a new plain connection that starts with `header`; `None` when the
/// connection is closed without an answer.
async fn get_after(port: u16, header: &[u8]) -> Option<support::raw::RawResponse> {
    let mut c = support::raw::RawConn::try_connect(port).await.ok()?;
    c.send_raw(header).await.ok()?;
    c.get("fwd.test", "/").await.ok()
}

/// The first answer to a GET after `header`: the listener may still be binding right after
/// `/readyz`, so connections are retried (polling, bounded by STARTUP).
async fn first_answer(px: &Pingress, header: &[u8]) -> support::raw::RawResponse {
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        if let Some(r) = get_after(px.port, header).await {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "{}", px.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_proxy_protocol_takes_the_client_from_the_header_on_both_listeners() {
    let (px, _app, _dir) = start_proxy_protocol(&[]).await;
    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n";
    let r = first_answer(&px, v1).await;
    assert_eq!(r.status, 200);
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(e.header("x-forwarded-for"), Some("203.0.113.7"));
    // version 2, and a LOCAL health check keeps the socket's address
    let r = get_after(px.port, &v2_header([198, 51, 100, 9], 4000))
        .await
        .unwrap();
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("198.51.100.9"));
    let local = [b"\r\n\r\n\0\r\nQUIT\n".as_slice(), &[0x20, 0x00, 0, 0]].concat();
    let r = get_after(px.port, &local).await.unwrap();
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    // no header: closed without an answer (nginx: "broken header")
    assert!(get_after(px.port, b"").await.is_none());
    // X-Forwarded-For is not the source of the client address then
    let mut c = support::raw::RawConn::connect(px.port).await;
    c.send_raw(v1).await.unwrap();
    c.send_raw(b"GET / HTTP/1.1\r\nHost: fwd.test\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")
        .await
        .unwrap();
    let r = c.read_response().await.unwrap();
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("203.0.113.7"));

    // TLS: the header comes before the ClientHello
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", px.https_port))
        .await
        .unwrap();
    tcp.write_all(&v2_header([192, 0, 2, 44], 5000))
        .await
        .unwrap();
    let cfg = support::tls::client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let name = rustls::pki_types::ServerName::try_from("fwd.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS after the PROXY header");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            hyper::Request::get("/")
                .header("host", "fwd.test")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e: Echo = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("192.0.2.44"));
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    // a TLS connection without the header is closed before any handshake
    assert!(support::tls::handshake(px.https_port, Some("fwd.test"))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_source_from_an_untrusted_peer_is_not_believed() {
    // proxy-real-ip-cidr excludes 127.0.0.1: the header is read, its source ignored
    let (px, _app, _dir) = start_proxy_protocol(&[
        ("proxy-real-ip-cidr", "10.0.0.0/8"),
        ("proxy-protocol-header-timeout", "1s"),
    ])
    .await;
    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n";
    let r = first_answer(&px, v1).await;
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    // a connection that never sends its header is closed after proxy-protocol-header-timeout
    let started = std::time::Instant::now();
    let mut silent = support::raw::RawConn::connect(px.port).await;
    let got = silent
        .read_to_close(std::time::Duration::from_secs(10))
        .await;
    assert!(got.is_empty());
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "closed after {took:?} (timeout 1s)"
    );
}

/// Hop-by-hop fields never reach the upstream (RFC 9110 7.6.1; nginx sends none of the
/// client's): each alone, so carried patch 21's one-pass check before removing them cannot
/// keep any, while end-to-end fields next to them stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_are_not_sent_upstream() {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write("setup.yaml", &docs(&[backend_set("app", &[app.port])]));
    dir.write(
        "ing.yaml",
        &Ingress::new("hop")
            .host("hop.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("hop.test", "/", 200, STARTUP).await;
    let hop = [
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Sum"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ("Connection", "keep-alive"),
    ];
    // each field alone, then none of them
    for h in hop.iter().map(|h| Some(*h)).chain([None]) {
        let name = h.map(|(n, _)| n);
        let field = h.map_or(String::new(), |(n, v)| format!("{n}: {v}\r\n"));
        let mut c = support::raw::RawConn::connect(px.port).await;
        let req =
            format!("GET /hop HTTP/1.1\r\nHost: hop.test\r\n{field}X-End-To-End: kept\r\n\r\n");
        c.send_raw(req.as_bytes()).await.expect("send");
        let r = c.read_response().await.expect("response");
        assert_eq!(r.status, 200, "{name:?}");
        let e: Echo = serde_json::from_slice(&r.body).expect("echo JSON");
        assert_eq!(e.header("x-end-to-end"), Some("kept"), "{name:?}");
        for (other, _) in hop {
            assert_eq!(
                e.header(&other.to_ascii_lowercase()),
                None,
                "{other} sent upstream (request with {name:?})"
            );
        }
    }
}

/// The client's own copies of the fields pingress sets never reach the upstream next to
/// pingress's (carried patch 23 writes them as wire lines after the header map: the client's
/// are removed from the map first), and `Proxy` is dropped (httpoxy); X-Forwarded-For and
/// -Host live on as X-Original-Forwarded-For/-Host, a client's X-Request-ID is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_copies_of_the_forwarded_fields_are_replaced() {
    let dir = ManifestDir::with_class();
    let app = EchoBackend::start("plain").await;
    dir.write("setup.yaml", &docs(&[backend_set("plain", &[app.port])]));
    dir.write(
        "ing.yaml",
        &Ingress::new("plain")
            .host("plain.test", &[("/", PREFIX, "plain")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("plain.test", "/", 200, STARTUP).await;
    let sent = [
        ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Host", "front.example"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Proto", "gopher"),
        ("X-Forwarded-Scheme", "gopher"),
        ("X-Scheme", "gopher"),
        ("X-Original-Forwarded-For", "9.9.9.9"),
        ("Proxy", "http://evil.example"),
        ("X-Request-ID", "client-chosen"),
    ];
    let r = px
        .request(Method::GET, "plain.test", "/", &sent, Vec::new())
        .await;
    assert_eq!(r.status, 200);
    let e: Echo = serde_json::from_slice(&r.body).expect("echo JSON");
    // repeated fields would arrive joined with ", "
    let port = px.port.to_string();
    for (name, want) in [
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "plain.test"),
        ("x-forwarded-port", port.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-scheme", "http"),
        ("x-scheme", "http"),
        ("x-original-forwarded-for", "1.2.3.4"),
        ("x-original-forwarded-host", "front.example"),
        ("x-request-id", "client-chosen"),
    ] {
        assert_eq!(e.header(name), Some(want), "{name}: {:?}", e.headers);
    }
    assert_eq!(e.header("proxy"), None);
    // and without any of them, each is sent once with pingress's value
    let r = px.get("plain.test", "/").await;
    let e: Echo = serde_json::from_slice(&r.body).expect("echo JSON");
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(e.header("x-original-forwarded-for"), None);
    let id = e.header("x-request-id").expect("a generated X-Request-ID");
    assert_eq!(id.len(), 32, "{id}");
}
