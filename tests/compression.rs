//! Response compression over real sockets (ingress-nginx e2e `settings/gzip.go`): with the
//! ConfigMap's `use-gzip`, a response nginx's gzip filter would compress arrives gzip-encoded
//! with `Vary: Accept-Encoding` and decodes to the backend's bytes; the others pass unchanged.

mod support;

use std::io::Read;

use std::time::Duration;
use support::raw::{answering_backend, RawConn};
use support::*;

/// `/big`: 10 KiB of text; `/small`: 100 B of text; `/png`: 10 KiB `image/png`; `/err`: 10 KiB
/// of text with status 500; `/br`: already `Content-Encoding: br`.
async fn backend() -> (u16, tokio::task::JoinHandle<()>) {
    answering_backend(Duration::ZERO, |head| {
        let path = head.split(' ').nth(1).unwrap_or("/");
        let (status, ct, n, extra) = match path {
            "/small" => ("200 OK", "text/plain", 100, ""),
            "/png" => ("200 OK", "image/png", 10240, ""),
            "/err" => ("500 Internal Server Error", "text/plain", 10240, ""),
            "/br" => ("200 OK", "text/plain", 10240, "Content-Encoding: br\r\n"),
            _ => ("200 OK", "application/json", 10240, ""),
        };
        let mut resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {n}\r\n{extra}\r\n"
        )
        .into_bytes();
        resp.extend(expected(n));
        resp
    })
    .await
}

fn expected(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"pingress "[i % 9]).collect()
}

async fn fetch(px: &Pingress, path: &str, gzip: bool) -> support::raw::RawResponse {
    let mut c = RawConn::connect(px.port).await;
    let ae = if gzip {
        "Accept-Encoding: gzip, br\r\n"
    } else {
        ""
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: gz.test\r\n{ae}Connection: close\r\n\r\n");
    c.send_raw(req.as_bytes()).await.unwrap();
    c.read_response().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_gzip_compresses_what_nginx_compresses() {
    let (port, _b) = backend().await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc", &[port]),
            controller_configmap(&[
                ("use-gzip", "true"),
                ("gzip-level", "6"),
                ("gzip-disable", "msie6 ^Legacy/"),
            ]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("gz")
            .host("gz.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("gz.test", "/big", 200, STARTUP).await;

    let r = fetch(&px, "/big", true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r
        .header("vary")
        .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert!(r.body.len() < 10240, "compressed: {} bytes", r.body.len());
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, expected(10240));
    // the first accepted coding pingress offers, wherever gzip is in the list
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(b"GET /big HTTP/1.1\r\nHost: gz.test\r\nAccept-Encoding: br, zstd, gzip\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = c.read_response().await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));

    // passed unchanged: no Accept-Encoding, under gzip-min-length, a type not in gzip-types,
    // a status nginx does not compress, already encoded
    for (path, gzip, len) in [
        ("/big", false, 10240),
        ("/small", true, 100),
        ("/png", true, 10240),
        ("/err", true, 10240),
        ("/br", true, 10240),
    ] {
        let r = fetch(&px, path, gzip).await;
        assert_ne!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(r.body.len(), len, "{path}");
    }
    // gzip-disable: nginx's msie6 mask and a regex over User-Agent
    for ua in [
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
        "legacy/2",
    ] {
        let mut c = RawConn::connect(px.port).await;
        let req = format!("GET /big HTTP/1.1\r\nHost: gz.test\r\nUser-Agent: {ua}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
        c.send_raw(req.as_bytes()).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(
            (r.header("content-encoding"), r.body.len()),
            (None, 10240),
            "{ua}"
        );
    }
    // pingress's own pages (a 404 for an unknown host) are under gzip-min-length: as is
    let mut c = RawConn::connect(px.port).await;
    c.send_raw(b"GET / HTTP/1.1\r\nHost: unknown.test\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = c.read_response().await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-encoding"), None);
    assert!(String::from_utf8_lossy(&r.body).contains("404 Not Found"));
}

fn unbrotli(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    brotli_decompressor::Decompressor::new(body, 4096)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

/// `enable-brotli` (ngx_brotli): br when accepted, before gzip; gzip for the others; the
/// upstream sees the client's own Accept-Encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_brotli_serves_br_first_and_gzip_to_the_others() {
    let (port, _b) = backend().await;
    let echo = EchoBackend::start("echo").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc", &[port]),
            backend_set("echo", &[echo.port]),
            controller_configmap(&[
                ("use-gzip", "true"),
                ("enable-brotli", "true"),
                ("brotli-level", "5"),
                ("brotli-min-length", "1000"),
            ]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("gz")
            .host("gz.test", &[("/", PREFIX, "svc")])
            .host("echo.test", &[("/", PREFIX, "echo")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("gz.test", "/big", 200, STARTUP).await;
    let get = |host: &'static str, path: &'static str, ae: &'static str| {
        let port = px.port;
        async move {
            let mut c = RawConn::connect(port).await;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: {ae}\r\nConnection: close\r\n\r\n"
            );
            c.send_raw(req.as_bytes()).await.unwrap();
            c.read_response().await.unwrap()
        }
    };
    for ae in ["gzip, deflate, br, zstd", "br", "BR;q=0.8, gzip"] {
        let r = get("gz.test", "/big", ae).await;
        assert_eq!(r.header("content-encoding"), Some("br"), "{ae}");
        assert!(r
            .header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
        assert!(r.body.len() < 10240);
        assert_eq!(unbrotli(&r.body), expected(10240), "{ae}");
    }
    // br refused (q=0) or not offered: gzip
    for ae in ["br;q=0, gzip", "gzip, zstd"] {
        let r = get("gz.test", "/big", ae).await;
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{ae}");
    }
    // under brotli-min-length: as is (nginx would not try gzip either once br was picked)
    let r = get("gz.test", "/small", "br").await;
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 100));
    // the upstream receives the client's Accept-Encoding, not the one the module was shown
    let r = get("echo.test", "/", "br;q=0.9, gzip").await;
    assert_eq!(
        r.header("content-encoding"),
        None,
        "the echo is under 1000 bytes"
    );
    let e: Echo = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e.header("accept-encoding"), Some("br;q=0.9, gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_use_gzip_nothing_is_compressed() {
    let (port, _b) = backend().await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("gz")
            .host("gz.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("gz.test", "/big", 200, STARTUP).await;
    let r = fetch(&px, "/big", true).await;
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, expected(10240));
}
