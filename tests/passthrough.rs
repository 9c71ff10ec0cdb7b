//! SSL passthrough (`--enable-ssl-passthrough`, `ssl-passthrough: "true"`) over real sockets:
//! one HTTPS port where the passthrough host's client talks TLS with its backend (the backend's
//! certificate, never pingress's), a terminated host answered by pingress at the same time, a
//! ClientHello split across many TCP segments, no SNI, and no handshake error logged for the
//! handed-off connections.

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};

use support::tls::{client_config, https_get, TlsBackend};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const FAKE_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

/// A TCP stream that writes at most 16 bytes per call (so a ClientHello leaves in many
/// segments: the socket has TCP_NODELAY).
struct Trickle(TcpStream);

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(16);
        Pin::new(&mut self.0).poll_write(cx, &buf[..n])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_and_termination_share_the_https_port() {
    let tls_backend = TlsBackend::start("pass").await;
    let web = EchoBackend::start("web").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "all.yaml",
        &docs(&[
            backend_set("pass", &[tls_backend.port]),
            backend_set("web", &[web.port]),
            Ingress::new("pass")
                .annotation(&nx("ssl-passthrough"), "true")
                .host(
                    "pass.test",
                    &[("/", PREFIX, "pass"), ("/api", PREFIX, "pass")],
                )
                .to_yaml(),
            Ingress::new("term")
                .host("term.test", &[("/", PREFIX, "web")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start_with_args(dir.path(), &["--enable-ssl-passthrough"]).await;
    px.wait_status("term.test", "/", 200, STARTUP).await;
    let port = px.https_port;

    // the passthrough host: TLS with the backend itself
    let r = https_get(port, Some("pass.test"), "pass.test", "/x", false)
        .await
        .unwrap();
    assert_eq!(r.seen.cn, "backend.internal", "the backend's certificate");
    let j = r.json();
    assert_eq!(j["backend"], "pass");
    assert_eq!(j["sni"], "pass.test");
    assert_eq!(j["path"], "/x");
    // HTTP/2 by ALPN end to end, negotiated with the backend
    let r = https_get(port, Some("pass.test"), "pass.test", "/h2", true)
        .await
        .unwrap();
    assert_eq!(r.json()["version"], "HTTP/2.0");

    // the terminated host on the same port, at the same time
    let r = https_get(port, Some("term.test"), "term.test", "/", false)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen.cn, FAKE_CN);
    // no SNI: terminated (the default certificate)
    let r = https_get(port, None, "term.test", "/", false)
        .await
        .unwrap();
    assert_eq!((r.status, r.seen.cn.as_str()), (200, FAKE_CN));

    // a ClientHello in 16-byte segments still finds its name
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let cfg = client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let name = rustls::pki_types::ServerName::try_from("pass.test".to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, Trickle(tcp))
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, x) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let cn = x.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "backend.internal");

    assert!(
        !px.stderr().contains("handshake error"),
        "a handed-off connection was logged as an error: {}",
        px.stderr()
    );
    assert!(
        px.stderr().contains("PassthroughPathIgnored"),
        "the /api path is reported: {}",
        px.stderr()
    );
}

/// Without `--enable-ssl-passthrough` the annotation is ignored, as ingress-nginx does: the
/// host is terminated by pingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_the_host_is_terminated() {
    let web = EchoBackend::start("web").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "all.yaml",
        &docs(&[
            backend_set("web", &[web.port]),
            Ingress::new("pass")
                .annotation(&nx("ssl-passthrough"), "true")
                .host("pass.test", &[("/", PREFIX, "web")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("pass.test", "/", 200, STARTUP).await;
    let r = https_get(px.https_port, Some("pass.test"), "pass.test", "/", false)
        .await
        .unwrap();
    assert_eq!((r.status, r.seen.cn.as_str()), (200, FAKE_CN));
    assert_eq!(r.headers[BACKEND_HEADER], "web");
}
