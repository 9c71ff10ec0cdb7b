//! gRPC through pingress with a real client and server (tonic's client and server machinery,
//! raw-bytes messages so no code generation is needed): unary calls up to 10 MB, server,
//! client and bidirectional streaming (ping-pong included), errors carried in trailers, over
//! h2c and over TLS, to an h2c (`GRPC`) and a TLS (`GRPCS`) backend, with ingress-nginx's default `proxy-body-size`.

#[path = "support/grpc_echo.rs"]
mod grpc_echo;
mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use grpc_echo::Raw;
use http::uri::PathAndQuery;
use support::tls::{self_signed, tls_secret, TestCert};
use support::*;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

/// A gRPC server over h2c on an ephemeral port.
async fn grpc_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, tokio::spawn(grpc_echo::serve(listener)))
}

/// A gRPC server over TLS (h2 by ALPN) on an ephemeral port, for `backend-protocol: GRPCS`.
async fn grpcs_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let cert = self_signed(&["grpc.internal"], "grpc.internal");
    let acceptor = support::tls::acceptor(&cert, &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    grpc_echo::serve_connection(tls).await;
                }
            });
        }
    });
    (port, task)
}

type Client = tonic::client::Grpc<Channel>;

fn client(channel: Channel) -> Client {
    tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

async fn unary(c: &mut Client, method: &'static str, msg: Bytes) -> Result<Bytes, Status> {
    c.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    c.unary(Request::new(msg), PathAndQuery::from_static(method), Raw)
        .await
        .map(Response::into_inner)
}

/// pingress for `grpc.test` (`backend-protocol: GRPC`, TLS with `cert`) and `big.grpc.test`
/// (the same with `proxy-body-size: 20m`), both in front of one [`grpc_backend`], and
/// `grpcs.test` (`backend-protocol: GRPCS`) in front of a [`grpcs_backend`].
struct Setup {
    px: Pingress,
    cert: TestCert,
    _dir: ManifestDir,
    _backends: [tokio::task::JoinHandle<()>; 2],
}

async fn setup() -> Setup {
    let (port, backend) = grpc_backend().await;
    let (tls_port, tls_backend) = grpcs_backend().await;
    let cert = self_signed(
        &["grpc.test", "big.grpc.test", "down.grpc.test"],
        "grpc.test",
    );
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("grpc", &[port]),
            backend_set("grpcs", &[tls_port]),
            // nothing listens there
            backend_set("down", &[free_port()]),
            tls_secret("grpc-tls", &cert),
        ]),
    );
    let proto = "nginx.ingress.kubernetes.io/backend-protocol";
    dir.write(
        "grpc.yaml",
        &Ingress::new("grpc")
            .annotation(proto, "GRPC")
            // h2c too, not only TLS
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .tls(&["grpc.test"], "grpc-tls")
            .host("grpc.test", &[("/", PREFIX, "grpc")])
            .to_yaml(),
    );
    dir.write(
        "big.yaml",
        &Ingress::new("big")
            .annotation(proto, "GRPC")
            .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "20m")
            .host("big.grpc.test", &[("/", PREFIX, "grpc")])
            .to_yaml(),
    );
    dir.write(
        "down.yaml",
        &Ingress::new("down")
            .annotation(proto, "GRPC")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .tls(&["down.grpc.test"], "grpc-tls")
            .host("down.grpc.test", &[("/", PREFIX, "down")])
            .to_yaml(),
    );
    // the upstream's certificate is not verified (proxy-ssl-verify off, the default)
    dir.write(
        "grpcs.yaml",
        &Ingress::new("grpcs")
            .annotation(proto, "GRPCS")
            .host("grpcs.test", &[("/", PREFIX, "grpcs")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    let s = Setup {
        px,
        cert,
        _dir: dir,
        _backends: [backend, tls_backend],
    };
    // the table is up once a call goes through to each backend
    for host in ["grpc.test", "grpcs.test"] {
        let mut c = s.h2c(host).await;
        let up = wait_until(STARTUP, || {
            let mut c = c.clone();
            async move {
                unary(&mut c, "/t.Echo/Unary", Bytes::from_static(b"up"))
                    .await
                    .is_ok()
            }
        })
        .await;
        if up.is_none() {
            let err = unary(&mut c, "/t.Echo/Unary", Bytes::from_static(b"up")).await;
            panic!(
                "no gRPC call to {host} went through: {err:?}\n{}",
                s.px.stderr()
            );
        }
        let _ = unary(&mut c, "/t.Echo/Unary", Bytes::new()).await;
    }
    s
}

impl Setup {
    /// A client over h2c (prior knowledge) with `:authority` `host`.
    async fn h2c(&self, host: &str) -> Client {
        let ch = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.px.port))
            .unwrap()
            .origin(format!("http://{host}").parse().unwrap())
            .connect_lazy();
        client(ch)
    }

    /// A client over TLS (h2 by ALPN) with SNI and `:authority` `host`.
    async fn tls(&self, host: &str) -> Client {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.cert.cert_pem))
            .domain_name(host);
        let ch = Endpoint::from_shared(format!("https://127.0.0.1:{}", self.px.https_port))
            .unwrap()
            .origin(format!("https://{host}").parse().unwrap())
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
        client(ch)
    }
}

fn payload(n: usize) -> Bytes {
    (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_arrive_whole_up_to_the_body_limit_over_h2c_and_tls() {
    let s = setup().await;
    for (name, mut c) in [
        ("h2c", s.h2c("grpc.test").await),
        ("tls", s.tls("grpc.test").await),
        ("grpcs upstream", s.h2c("grpcs.test").await),
    ] {
        // up to ingress-nginx's default proxy-body-size (1m), message framing included
        for n in [0, 1, 70_000, 500_000, 1_000_000] {
            let msg = payload(n);
            let got = unary(&mut c, "/t.Echo/Unary", msg.clone())
                .await
                .unwrap_or_else(|e| panic!("{name} {n} B: {e:?}"));
            assert!(got == msg, "{name} {n} B: the echo differs");
        }
        // over it: refused at once with a gRPC status (nginx: an HTML 413), never delivered
        // short, and not after the upstream read timeout
        let t = std::time::Instant::now();
        let err = unary(&mut c, "/t.Echo/Unary", payload(10_000_000))
            .await
            .expect_err("10 MB over the 1m default");
        assert_eq!(err.code(), Code::ResourceExhausted, "{name}: {err:?}");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{name}: {:?}",
            t.elapsed()
        );
        // errors travel in trailers, with their message
        let err = unary(&mut c, "/t.Echo/Fail", Bytes::from_static(b"x"))
            .await
            .expect_err("the backend refuses");
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "bad request: nope"),
            "{name}"
        );
    }
    // with proxy-body-size raised, 10 MB goes through both ways
    let mut c = s.h2c("big.grpc.test").await;
    let msg = payload(10_000_000);
    let got = unary(&mut c, "/t.Echo/Unary", msg.clone()).await.unwrap();
    assert!(got == msg, "10 MB echo differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_work_in_every_direction_over_h2c_and_tls() {
    let s = setup().await;
    for (name, mut c) in [
        ("h2c", s.h2c("grpc.test").await),
        ("tls", s.tls("grpc.test").await),
        ("grpcs upstream", s.h2c("grpcs.test").await),
    ] {
        // server streaming
        c.ready().await.unwrap();
        let stream = c
            .streaming(
                Request::new(futures_util::stream::iter([Bytes::from_static(b"300")])),
                PathAndQuery::from_static("/t.Echo/Count"),
                Raw,
            )
            .await
            .unwrap()
            .into_inner();
        let got: Vec<Bytes> = stream.map(|m| m.unwrap()).collect().await;
        assert_eq!(got.len(), 300, "{name}");
        assert_eq!(got[299], "299", "{name}");

        // client streaming: 2,000 messages of 1 KiB, 2 MB in total; streamed from the first
        // byte (nginx's grpc_pass), counted against proxy-body-size like any request body
        c.ready().await.unwrap();
        let msgs = futures_util::stream::iter((0..2000).map(|_| payload(1024)));
        let sum = c
            .client_streaming(
                Request::new(msgs),
                PathAndQuery::from_static("/t.Echo/Sum"),
                Raw,
            )
            .await;
        // over proxy-body-size (1m) in total: RESOURCE_EXHAUSTED, as ingress-nginx's 413
        let e = sum.expect_err("2 MB in one call is over the 1m default");
        assert_eq!(e.code(), Code::ResourceExhausted, "{name}: {e:?}");
        let msgs = futures_util::stream::iter((0..500).map(|_| payload(1024)));
        c.ready().await.unwrap();
        let sum = c
            .client_streaming(
                Request::new(msgs),
                PathAndQuery::from_static("/t.Echo/Sum"),
                Raw,
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: 500 x 1 KiB: {e:?}"));
        assert_eq!(sum.into_inner(), "500 512000", "{name}");

        // bidi ping-pong: each message waits for the previous echo
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let out = futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        });
        c.ready().await.unwrap();
        tx.send(Bytes::from_static(b"ping 0")).await.unwrap();
        let mut echoes = c
            .streaming(
                Request::new(out),
                PathAndQuery::from_static("/t.Echo/Bidi"),
                Raw,
            )
            .await
            .unwrap()
            .into_inner();
        for i in 0..200 {
            let got = tokio::time::timeout(Duration::from_secs(10), echoes.message())
                .await
                .unwrap_or_else(|_| panic!("{name}: no echo of ping {i} within 10 s"))
                .unwrap()
                .unwrap();
            assert_eq!(got, format!("ping {i}"), "{name}");
            if i < 199 {
                tx.send(Bytes::from(format!("ping {}", i + 1)))
                    .await
                    .unwrap();
            }
        }
        drop(tx);
        assert!(
            echoes.message().await.unwrap().is_none(),
            "{name}: clean end"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_upstream_fails_ends_with_unavailable_and_logs_502() {
    let s = setup().await;
    for (name, mut c) in [
        ("h2c", s.h2c("down.grpc.test").await),
        ("tls", s.tls("down.grpc.test").await),
    ] {
        let mark = s.px.stdout_line_count();
        // a gRPC status in trailers that end the stream, not a reset stream (CANCEL) or an
        // HTML page
        let err = unary(&mut c, "/t.Echo/Unary", Bytes::from_static(b"x"))
            .await
            .expect_err("nothing listens upstream");
        assert_eq!(
            (err.code(), err.message()),
            (Code::Unavailable, "upstream failed"),
            "{name}: {err:?}"
        );
        // the access log reports the HTTP status nginx would have sent
        let line = || {
            s.px.stdout_lines_since(mark)
                .into_iter()
                .find(|l| l.contains("[default-down-80]"))
        };
        wait_until(Duration::from_secs(3), || async { line().is_some() }).await;
        let logged =
            line().unwrap_or_else(|| panic!("{name}: no access log line\n{}", s.px.stdout()));
        assert!(logged.contains("\" 502 "), "{name}: {logged}");
    }
}
