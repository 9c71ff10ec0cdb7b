//! TLS termination over real sockets: a real pingress process, real rustls clients, real
//! (echo and TLS) backends.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use support::tls::{
    chain_cert, client_config, connect, handshake, https_get, secret_of_type, self_signed,
    tls_secret, TlsBackend,
};
use support::*;

const FAKE_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

fn echo_ingress(name: &str, hosts: &[&str]) -> Ingress {
    let mut ing = Ingress::new(name);
    for h in hosts {
        ing = ing.host(h, &[("/", PREFIX, "echo")]);
    }
    ing
}

#[tokio::test]
async fn sni_selects_exact_wildcard_and_default_certificates() {
    let echo = EchoBackend::start("echo").await;
    let dir = ManifestDir::with_class();
    let exact = chain_cert(&["a.example.com"], "a.example.com");
    let wild = self_signed(&["*.example.com"], "wildcard");
    let other = self_signed(&["b.example.org"], "b.example.org");
    dir.write("backend.yaml", &backend_set("echo", &[echo.port]));
    dir.write(
        "secrets.yaml",
        &docs(&[
            tls_secret("exact", &exact),
            tls_secret("wild", &wild),
            tls_secret("other", &other),
            // garbage, wrong type, key of another certificate
            secret_of_type("garbage", "kubernetes.io/tls", "not a pem", "nope"),
            secret_of_type(
                "wrongtype",
                "kubernetes.io/basic-auth",
                &other.cert_pem,
                &other.key_pem,
            ),
            secret_of_type(
                "mismatch",
                "kubernetes.io/tls",
                &other.cert_pem,
                &wild.key_pem,
            ),
        ]),
    );
    let ing = echo_ingress(
        "tls",
        &[
            "a.example.com",
            "*.example.com",
            "missing.example.org",
            "garbage.example.org",
            "wrongtype.example.org",
            "mismatch.example.org",
            "notcovered.example.org",
        ],
    )
    .tls(&["a.example.com"], "exact")
    .tls(&["*.example.com"], "wild")
    .tls(&["missing.example.org"], "nope")
    .tls(&["garbage.example.org"], "garbage")
    .tls(&["wrongtype.example.org"], "wrongtype")
    .tls(&["mismatch.example.org"], "mismatch")
    .tls(&["notcovered.example.org"], "other");
    dir.write("ingress.yaml", &ing.to_yaml());
    let px = Pingress::start(dir.path()).await;
    let port = px.https_port;
    wait_until(STARTUP, || async {
        handshake(port, Some("a.example.com"))
            .await
            .is_ok_and(|s| s.cn == "a.example.com")
    })
    .await
    .expect("exact certificate served");

    let s = handshake(port, Some("a.example.com")).await.unwrap();
    assert_eq!(s.sans, vec!["a.example.com"]);
    assert_eq!(
        s.chain_len, 2,
        "the full chain (leaf + intermediate) is sent"
    );
    assert_eq!(
        handshake(port, Some("x.example.com")).await.unwrap().cn,
        "wildcard"
    );
    assert_eq!(
        handshake(port, Some("X.Example.COM")).await.unwrap().cn,
        "wildcard"
    );
    // never another tenant's certificate
    for sni in [
        None,
        Some("unknown.test"),
        Some("a.b.example.com"),
        Some("b.example.org"),
        Some("missing.example.org"),
        Some("garbage.example.org"),
        Some("wrongtype.example.org"),
        Some("mismatch.example.org"),
        Some("notcovered.example.org"),
    ] {
        let s = handshake(port, sni).await.unwrap();
        assert_eq!(
            s.cn, FAKE_CN,
            "SNI {sni:?} must get the default certificate"
        );
        assert_eq!(s.sans, vec!["ingress.local"]);
    }
    for reason in [
        "TLSSecretNotFound",
        "InvalidTLSSecret",
        "WrongSecretType",
        "TLSKeyMismatch",
        "TLSHostNotCovered",
    ] {
        assert!(px.stderr().contains(reason), "diagnostic {reason} missing");
    }

    // HTTP/1.1 and h2 over ALPN reach the backend with https forwarded headers and HSTS
    let r = https_get(
        port,
        Some("a.example.com"),
        "a.example.com",
        "/p?x=1",
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let e = r.json();
    assert_eq!(e["headers"]["x-forwarded-proto"], "https");
    assert_eq!(e["headers"]["x-forwarded-scheme"], "https");
    assert_eq!(e["headers"]["x-scheme"], "https");
    assert_eq!(e["headers"]["x-forwarded-port"], "443");
    let r = https_get(port, Some("x.example.com"), "x.example.com", "/h2", true)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.version, hyper::Version::HTTP_2);
    assert_eq!(r.json()["path"], "/h2");
    assert!(r.header("strict-transport-security").is_some());
    // unknown host over TLS: 404 from pingress, still with HSTS (ingress-nginx adds it to every
    // HTTPS response)
    let r = https_get(port, None, "nowhere.test", "/", false)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.header("strict-transport-security").is_some());
    // plain HTTP never carries HSTS
    let r = px.get("plain.test", "/").await;
    assert!(r.headers.get("strict-transport-security").is_none());
}

#[tokio::test]
async fn redirects_follow_ingress_nginx() {
    let echo = EchoBackend::start("echo").await;
    let dir = ManifestDir::with_class();
    let c = self_signed(&["secure.test"], "secure.test");
    dir.write("backend.yaml", &backend_set("echo", &[echo.port]));
    dir.write("secret.yaml", &tls_secret("secure", &c));
    let ing = Ingress::new("secure")
        .host(
            "secure.test",
            &[
                ("/", PREFIX, "echo"),
                ("/.well-known/acme-challenge", PREFIX, "echo"),
            ],
        )
        .tls(&["secure.test"], "secure");
    let keep = Ingress::new("keep")
        .annotation(
            "nginx.ingress.kubernetes.io/preserve-trailing-slash",
            "true",
        )
        .host("secure.test", &[("/keep", PREFIX, "echo")]);
    let off = Ingress::new("off")
        .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
        .host("secure.test", &[("/off", PREFIX, "echo")]);
    let forced = Ingress::new("forced")
        .annotation("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")
        .host("offloaded.test", &[("/", PREFIX, "echo")]);
    let plain = Ingress::new("plain").host("plain.test", &[("/", PREFIX, "echo")]);
    dir.write(
        "ingress.yaml",
        &docs(&[
            ing.to_yaml(),
            keep.to_yaml(),
            off.to_yaml(),
            forced.to_yaml(),
            plain.to_yaml(),
        ]),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("secure.test", "/", 308, STARTUP).await;
    for (host, path, want) in [
        ("secure.test", "/", "https://secure.test"),
        ("secure.test:8080", "/a/b/", "https://secure.test/a/b"),
        ("secure.test", "/a?q=1", "https://secure.test/a?q=1"),
        ("secure.test", "/keep/", "https://secure.test/keep/"),
        ("offloaded.test", "/x/", "https://offloaded.test/x"),
    ] {
        let r = px.get(host, path).await;
        assert_eq!(r.status.as_u16(), 308, "{host}{path}");
        assert_eq!(
            r.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(want),
            "{host}{path}"
        );
    }
    // ACME challenges, ssl-redirect=false and hosts without TLS are proxied
    for (host, path) in [
        ("secure.test", "/.well-known/acme-challenge/token"),
        ("secure.test", "/off"),
        ("plain.test", "/"),
    ] {
        let r = px.get(host, path).await;
        assert_eq!(r.status.as_u16(), 200, "{host}{path}");
        assert_eq!(r.echo().header("x-forwarded-proto"), Some("http"));
    }
    // the ConfigMap code
    dir.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: default\ndata:\n  http-redirect-code: \"301\"\n  hsts: \"false\"\n",
    );
    drop(px);
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "default/cfg"]).await;
    px.wait_status("secure.test", "/", 301, STARTUP).await;
    let r = https_get(
        px.https_port,
        Some("secure.test"),
        "secure.test",
        "/",
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("strict-transport-security").is_none(),
        "hsts: false"
    );
}

#[tokio::test]
async fn secret_rotation_under_load_drops_no_handshake() {
    let echo = EchoBackend::start("echo").await;
    let dir = ManifestDir::with_class();
    dir.write("backend.yaml", &backend_set("echo", &[echo.port]));
    dir.write(
        "secret.yaml",
        &tls_secret("rot", &self_signed(&["rot.test"], "generation-1")),
    );
    dir.write(
        "ingress.yaml",
        &echo_ingress("rot", &["rot.test"])
            .tls(&["rot.test"], "rot")
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    let port = px.https_port;
    wait_until(STARTUP, || async {
        handshake(port, Some("rot.test"))
            .await
            .is_ok_and(|s| s.cn == "generation-1")
    })
    .await
    .expect("first certificate served");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match https_get(port, Some("rot.test"), "rot.test", "/", false).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    wait_until(STARTUP, || async { ok.load(Ordering::SeqCst) >= 20 })
        .await
        .expect("load running");
    let rotated_at = Instant::now();
    dir.write(
        "secret.yaml",
        &tls_secret("rot", &self_signed(&["rot.test"], "generation-2")),
    );
    let took = wait_until(RELOAD * 3, || async {
        handshake(port, Some("rot.test"))
            .await
            .is_ok_and(|s| s.cn == "generation-2")
    })
    .await
    .expect("rotated certificate served");
    let after = ok.load(Ordering::SeqCst);
    wait_until(STARTUP, || async {
        ok.load(Ordering::SeqCst) >= after + 20
    })
    .await
    .expect("load continues after rotation");
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed handshakes/requests"
    );
    assert!(
        took <= RELOAD,
        "new certificate after {took:?} (rotated {:?} ago)",
        rotated_at.elapsed()
    );
}

#[tokio::test]
async fn upstream_https_and_grpcs_backends() {
    let backend = TlsBackend::start("tls-backend").await;
    let dir = ManifestDir::with_class();
    dir.write("backend.yaml", &backend_set("secure", &[backend.port]));
    let ca_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: backend-ca\n  namespace: default\nstringData:\n  ca.crt: |\n{}",
        backend.cert.cert_pem.lines().map(|l| format!("    {l}\n")).collect::<String>()
    );
    dir.write("ca.yaml", &ca_secret);
    let https = Ingress::new("https")
        .annotation("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
        .host("https.test", &[("/", PREFIX, "secure")]);
    let grpcs = Ingress::new("grpcs")
        .annotation("nginx.ingress.kubernetes.io/backend-protocol", "GRPCS")
        .host("grpcs.test", &[("/", PREFIX, "secure")]);
    let verified = Ingress::new("verified")
        .annotation("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
        .annotation("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")
        .annotation(
            "nginx.ingress.kubernetes.io/proxy-ssl-name",
            "backend.internal",
        )
        .annotation(
            "nginx.ingress.kubernetes.io/proxy-ssl-secret",
            "default/backend-ca",
        )
        .host("verified.test", &[("/", PREFIX, "secure")]);
    let untrusted = Ingress::new("untrusted")
        .annotation("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
        .annotation("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")
        .host("untrusted.test", &[("/", PREFIX, "secure")]);
    let fcgi = Ingress::new("fcgi")
        .annotation("nginx.ingress.kubernetes.io/backend-protocol", "FCGI")
        .host("fcgi.test", &[("/", PREFIX, "secure")]);
    dir.write(
        "ingress.yaml",
        &docs(&[
            https.to_yaml(),
            grpcs.to_yaml(),
            verified.to_yaml(),
            untrusted.to_yaml(),
            fcgi.to_yaml(),
        ]),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("https.test", "/", 200, STARTUP).await;

    let r = px.get("https.test", "/x").await;
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(
        j["sni"],
        serde_json::Value::Null,
        "no SNI by default (proxy-ssl-server-name off)"
    );
    assert_eq!(j["path"], "/x");

    let r = px.get("grpcs.test", "/svc.Method").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["version"], "HTTP/2.0", "GRPCS speaks h2 over TLS");

    let r = px.get("verified.test", "/").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["sni"], "backend.internal");

    // verification on without a trusted CA fails closed
    let r = px.get("untrusted.test", "/").await;
    assert_eq!(r.status.as_u16(), 502);
    // FCGI is refused: the Ingress is left out
    let r = px.get("fcgi.test", "/").await;
    assert_eq!(r.status.as_u16(), 404);
    assert!(px.stderr().contains("FastCGI"));
}

/// ConfigMap `http2-max-concurrent-streams` is the SETTINGS_MAX_CONCURRENT_STREAMS a client is
/// given, and `use-http2: "false"` takes h2 out of the ALPN offer (HTTP/1.1 only), as
/// ingress-nginx's `listen 443 ssl` without `http2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_http2_and_http2_max_concurrent_streams() {
    let echo = EchoBackend::start("echo").await;
    let start = |cm: &'static [(&'static str, &'static str)]| {
        let port = echo.port;
        async move {
            let dir = ManifestDir::with_class();
            dir.write(
                "all.yaml",
                &docs(&[
                    backend_set("svc", &[port]),
                    controller_configmap(cm),
                    Ingress::new("a")
                        .host("a.test", &[("/", PREFIX, "svc")])
                        .to_yaml(),
                ]),
            );
            let px =
                Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
            px.wait_status("a.test", "/", 200, STARTUP).await;
            (px, dir)
        }
    };
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let (px, _d) = start(&[("http2-max-concurrent-streams", "7")]).await;
    let (tls, seen) = connect(
        px.https_port,
        Some("a.test"),
        client_config(both, rustls::DEFAULT_VERSIONS),
    )
    .await
    .unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    let (mut send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.test/").body(()).unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    // the server's SETTINGS arrived before its answer
    assert_eq!(send.current_max_send_streams(), 7);

    let (px, _d) = start(&[("use-http2", "false")]).await;
    let (_tls, seen) = connect(
        px.https_port,
        Some("a.test"),
        client_config(both, rustls::DEFAULT_VERSIONS),
    )
    .await
    .unwrap();
    assert_ne!(seen.alpn.as_deref(), Some(&b"h2"[..]), "h2 offered");
    let r = https_get(px.https_port, Some("a.test"), "a.test", "/", false)
        .await
        .unwrap();
    assert_eq!((r.status, r.version), (200, hyper::Version::HTTP_11));
}

/// Responses of every size around carried patch 24's write combining (a TLS record for the
/// small writes of a response, up to 1,400 bytes together; larger writes after them) arrive
/// whole over HTTPS with HTTP/1.1 and h2, on new and kept-alive connections.
#[tokio::test]
async fn responses_of_every_size_arrive_whole_over_https() {
    let (_echo, _dir, px) = https_echo_site("sizes", "sizes.example.com").await;
    let host = Some("sizes.example.com");
    for h2 in [false, true] {
        for pad in [
            0usize,
            1,
            700,
            1000,
            1200,
            1400,
            1500,
            4000,
            70_000,
            1 << 20,
        ] {
            let path = format!("/size?pad={pad}");
            let r = https_get(px.https_port, host, "sizes.example.com", &path, h2)
                .await
                .unwrap_or_else(|e| panic!("h2={h2} pad={pad}: {e}"));
            assert_eq!(r.status, 200, "h2={h2} pad={pad}");
            let got = r.json()["pad"].as_str().map(str::len);
            assert_eq!(got, Some(pad), "h2={h2} pad={pad}");
        }
    }
    // many responses on one kept-alive HTTP/1.1 connection, sizes mixed
    let mut send = https_h1_sender(px.https_port, "sizes.example.com").await;
    for i in 0..60usize {
        let pad = [0, 300, 1390, 2000, 20_000][i % 5];
        let req = hyper::Request::get(format!("/k?pad={pad}"))
            .header("host", "sizes.example.com")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt as _;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["pad"].as_str().map(str::len), Some(pad), "request {i}");
    }
}

/// Carried patch 28 reads one chunk of plaintext per call: request bodies of many TLS records
/// and requests pipelined in one write must still arrive whole and in order.
#[tokio::test]
async fn request_bodies_and_pipelined_requests_arrive_whole_over_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_echo, _dir, px) = https_echo_site("up", "up.example.com").await;
    let host = Some("up.example.com");
    // bodies on one kept-alive HTTP/1.1 connection: around a TLS record (16 KiB) and many
    let mut send = https_h1_sender(px.https_port, "up.example.com").await;
    for len in [0usize, 1, 1000, 16_383, 16_384, 16_385, 100_000, 1_000_000] {
        let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let want = (len, fnv1a(&body));
        let req = hyper::Request::post("/upload")
            .header("host", "up.example.com")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "len {len}");
        use http_body_util::BodyExt as _;
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(
            (v["body_len"].as_u64(), v["body_hash"].as_u64()),
            (Some(want.0 as u64), Some(want.1)),
            "len {len}"
        );
    }
    // three requests in one TLS write: three answers, in order, on the one connection
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let (mut tls, _) = connect(px.https_port, host, cfg).await.unwrap();
    let mut wire = Vec::new();
    for (i, last) in [(1, false), (2, false), (3, true)] {
        let close = if last { "connection: close\r\n" } else { "" };
        wire.extend_from_slice(
            format!("GET /p{i} HTTP/1.1\r\nhost: up.example.com\r\n{close}\r\n").as_bytes(),
        );
    }
    tls.write_all(&wire).await.unwrap();
    tls.flush().await.unwrap();
    let mut all = Vec::new();
    let read = tokio::time::timeout(STARTUP, tls.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the connection closes after the third answer");
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 3, "{text}");
    let (p1, p2, p3) = (
        text.find("\"/p1\""),
        text.find("\"/p2\""),
        text.find("\"/p3\""),
    );
    assert!(
        p1.is_some() && p1 < p2 && p2 < p3,
        "answers in order: {text}"
    );
}

/// An echo backend behind pingress, served over HTTPS for `host` (a self-signed certificate in
/// Secret `name`); returns once the route is live (the plain listener's HTTPS redirect).
async fn https_echo_site(name: &str, host: &str) -> (EchoBackend, ManifestDir, Pingress) {
    let echo = EchoBackend::start("echo").await;
    let dir = ManifestDir::with_class();
    let cert = self_signed(&[host], host);
    dir.write("backend.yaml", &backend_set("echo", &[echo.port]));
    dir.write("secret.yaml", &tls_secret(name, &cert));
    dir.write(
        "ing.yaml",
        &echo_ingress(name, &[host]).tls(&[host], name).to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status(host, "/", 308, STARTUP).await;
    (echo, dir, px)
}

/// One kept-alive HTTP/1.1 connection over TLS to `port`, as a hyper sender.
async fn https_h1_sender(
    port: u16,
    host: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let (tls, _) = connect(port, Some(host), cfg).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}
