//! Request bodies over real sockets: every body either reaches the backend bit-exact or is
//! refused (413) / aborted, never forwarded short; the response side never passes a truncated
//! upstream message off as complete; an upgraded tunnel follows the upstream timeouts.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::HOST;
use support::raw::{raw_backend, read_head};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// How the client frames the body.
#[derive(Clone, Copy, Debug)]
enum Framing {
    H1Length,
    H1Chunked,
    H2Length,
    H2Stream,
}

fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 7 + size) % 251) as u8).collect()
}

/// Sends `data` as a POST; `None` when the transport failed (an aborted request).
async fn send(
    (h1, h2): &(reqwest::Client, reqwest::Client),
    px: &Pingress,
    framing: Framing,
    host: &str,
    target: &str,
    data: Vec<u8>,
) -> Option<Reply> {
    let (client, url) = match framing {
        Framing::H1Length | Framing::H1Chunked => (h1, px.url(target)),
        Framing::H2Length | Framing::H2Stream => (h2, format!("http://{host}:{}{target}", px.port)),
    };
    let req = match framing {
        Framing::H1Length | Framing::H1Chunked => client.post(url).header(HOST, host),
        // h2: the host travels as :authority
        Framing::H2Length | Framing::H2Stream => client.post(url),
    };
    let req = match framing {
        Framing::H1Length | Framing::H2Length => req.body(data),
        Framing::H1Chunked | Framing::H2Stream => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = data
                .chunks(16 * KIB)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            req.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        }
    };
    match req.send().await {
        Ok(resp) => Reply::from_response(resp).await.ok(),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_arrive_bit_exact_or_are_refused_never_shortened() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    // (host, proxy-body-size annotation, limit in bytes (0 = none), request buffering)
    let limits: [(&str, Option<&str>, usize, bool); 4] = [
        ("default.test", None, MIB, true),
        ("unlimited.test", Some("0"), 0, true),
        ("small.test", Some("1k"), KIB, true),
        ("streamed.test", None, MIB, false),
    ];
    for (host, size, _, buffering) in limits {
        let mut ing = Ingress::new(host.trim_end_matches(".test"));
        if let Some(v) = size {
            ing = ing.annotation(&nx("proxy-body-size"), v);
        }
        if !buffering {
            ing = ing.annotation(&nx("proxy-request-buffering"), "off");
        }
        dir.write(
            &format!("{host}.yaml"),
            &ing.host(host, &[("/", PREFIX, "svc")]).to_yaml(),
        );
    }
    let px = Pingress::start(dir.path()).await;
    for (host, ..) in limits {
        px.wait_status(host, "/", 200, STARTUP).await;
    }
    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let resolve: Vec<(&str, std::net::SocketAddr)> =
        limits.iter().map(|(h, ..)| (*h, px.addr())).collect();
    let h2 = {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(60));
        for (h, a) in &resolve {
            builder = builder.resolve(h, *a);
        }
        builder.build().unwrap()
    };
    let clients = (h1, h2);
    let sizes = [
        0,
        1,
        64 * KIB - 1,
        64 * KIB,
        64 * KIB + 1,
        66_000,
        200_000,
        MIB - 1,
        MIB,
        MIB + 1,
        10 * MIB,
    ];
    let framings = [
        Framing::H1Length,
        Framing::H1Chunked,
        Framing::H2Length,
        Framing::H2Stream,
    ];
    let mut refused = 0;
    for (host, _, limit, buffering) in limits {
        for size in sizes {
            // 10 MiB only where it is accepted: elsewhere 1 MiB + 1 already shows the refusal
            if size == 10 * MIB && limit != 0 {
                continue;
            }
            for framing in framings {
                let data = body(size);
                let want = (data.len(), fnv1a(&data));
                let target = format!("/upload?case={host}-{framing:?}-{size}");
                let completed_before = b.completed_bodies().len();
                let reply = send(&clients, &px, framing, host, &target, data).await;
                let case = format!("{host} {framing:?} {size} B");
                let new: Vec<_> = b.completed_bodies()[completed_before..].to_vec();
                assert!(
                    new.iter().all(|got| *got == want),
                    "{case}: the backend completed a body that differs from the one sent: {new:?} vs {want:?}"
                );
                if limit == 0 || size <= limit {
                    let r = reply.unwrap_or_else(|| panic!("{case}: transport error"));
                    assert_eq!(r.status, 200, "{case}: {}", r.text());
                    let e = r.echo();
                    assert_eq!((e.body_len, e.body_hash), want, "{case}");
                    if buffering && size > 0 {
                        // a buffered body goes upstream with its length, as nginx sends it
                        assert_eq!(
                            e.header("content-length"),
                            Some(&*size.to_string()),
                            "{case}"
                        );
                        assert_eq!(e.header("transfer-encoding"), None, "{case}");
                    } else if matches!(framing, Framing::H1Chunked) && size > 0 {
                        assert_eq!(e.header("transfer-encoding"), Some("chunked"), "{case}");
                    }
                } else {
                    refused += 1;
                    if let Some(r) = &reply {
                        assert_eq!(r.status, 413, "{case}: {}", r.text());
                    }
                    assert!(new.is_empty(), "{case}: an over-limit body was completed");
                    if buffering
                        || matches!(framing, Framing::H1Length | Framing::H2Length)
                        || limit <= 64 * KIB
                    {
                        // a buffered body, a declared length over the limit, or any body over
                        // a limit the read-ahead covers never reaches the upstream
                        assert!(!b.received(&target), "{case}");
                    }
                }
            }
        }
    }
    assert!(refused > 20);
}

/// A backend that answers every request with the response head and part of the body, then
/// closes the connection.
async fn dying_backend(chunked: bool) -> (u16, tokio::task::JoinHandle<()>) {
    raw_backend(move |mut s| async move {
        if read_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let head: &[u8] = if chunked {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"partial\": true,\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\": true,"
        };
        let _ = s.write_all(head).await;
        let _ = s.flush().await;
        // the response is on its way: die mid-body
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_body_gives_a_truncated_response_not_an_error_page() {
    let (chunked_port, _t1) = dying_backend(true).await;
    let (length_port, _t2) = dying_backend(false).await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("chunked", &[chunked_port]),
            backend_set("length", &[length_port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("dying")
            .host("chunked.test", &[("/", PREFIX, "chunked")])
            .host("length.test", &[("/", PREFIX, "length")])
            .to_yaml(),
    );
    // the first table is published before the listener answers
    let px = Pingress::start(dir.path()).await;
    for host in ["chunked.test", "length.test"] {
        // HTTP/1.1: the client must see an incomplete message, never a complete one
        let mut conn = RawConn::connect(px.port).await;
        conn.send_get(host, "/data").await.unwrap();
        let got = conn.read_to_close(Duration::from_secs(10)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
        assert!(
            !text.contains("<html>"),
            "{host}: error page spliced in: {text}"
        );
        if host == "chunked.test" {
            assert!(!text.ends_with("0\r\n\r\n"), "{host}: terminated: {text:?}");
        } else {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            assert!(body.len() < 1000, "{host}: padded to its length: {text:?}");
        }
        // and a real client reports an error instead of a complete body
        let r = px.try_get(host, "/data").await;
        assert!(
            r.is_err(),
            "{host}: a truncated body was delivered as complete: {r:?}"
        );
        // HTTP/2: the stream is reset
        let h2 = h2c_client(&[(host, px.addr())]);
        let r = match h2
            .get(format!("http://{host}:{}/data", px.port))
            .send()
            .await
        {
            Ok(resp) => resp.bytes().await.map(|b| b.to_vec()),
            Err(e) => Err(e),
        };
        assert!(r.is_err(), "{host}: h2 body delivered as complete: {r:?}");
    }
    assert!(px
        .stderr()
        .contains("response aborted after its header was sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_follows_proxy_read_timeout_and_closes_without_bytes() {
    let b = EchoBackend::start("ws").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("ws", &[b.port]),
            // a short client-body-timeout: an upgraded tunnel must not follow it
            controller_configmap(&[("client-body-timeout", "1")]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("ws")
            .annotation(&nx("proxy-read-timeout"), "4")
            .annotation(&nx("proxy-send-timeout"), "4")
            .host("ws.test", &[("/", PREFIX, "ws")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("ws.test", "/", 200, STARTUP).await;

    let mut ws = ws_connect(&px).await;
    ws.send("hello".into()).await.unwrap();
    let echoed = match ws.next().await {
        Some(Ok(m)) => m,
        other => panic!("no echo: {other:?}\nstderr:\n{}", px.stderr()),
    };
    assert_eq!(echoed.to_text().unwrap(), "hello");
    let idle_from = Instant::now();
    // idle past client-body-timeout (1 s): still open
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send("still there".into()).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("tunnel answered")
        .unwrap()
        .unwrap();
    assert_eq!(echoed.to_text().unwrap(), "still there");
    // then idle past proxy-read-timeout (4 s): closed, with no bytes written into the tunnel
    let idle_from_2 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("the idle tunnel was closed");
    let waited = idle_from_2.elapsed();
    match end {
        None
        | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed))
        | Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))) => {}
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {}
        other => panic!("the tunnel ended with {other:?} (bytes written into it?)"),
    }
    assert!(
        waited >= Duration::from_millis(3500),
        "closed after {waited:?}, before proxy-read-timeout"
    );
    assert!(idle_from.elapsed() < Duration::from_secs(20));
}

/// An h2c backend answering like a gRPC server: the response head at once, each request DATA
/// frame echoed back as it arrives, `grpc-status: 0` trailers when the request ends.
async fn grpc_echo_backend() -> (u16, tokio::task::JoinHandle<()>) {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let (tx, rx) = tokio::sync::mpsc::channel::<
                            Result<Frame<Bytes>, std::convert::Infallible>,
                        >(16);
                        tokio::spawn(async move {
                            let mut body = req.into_body();
                            while let Some(Ok(frame)) = body.frame().await {
                                if let Ok(data) = frame.into_data() {
                                    if tx.send(Ok(Frame::data(data))).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                        });
                        let body = StreamBody::new(tokio_stream_from(rx));
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (port, task)
}

/// The next DATA frame of a response body (10 s at most).
async fn next_data(body: &mut hyper::body::Incoming) -> Bytes {
    use http_body_util::BodyExt;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("echo within 10 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(d) = frame.into_data() {
            return d;
        }
    }
}

/// An mpsc receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The sending side of a streamed request body.
type FrameTx =
    tokio::sync::mpsc::Sender<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>;

/// pingress in front of [`grpc_echo_backend`] for `grpc.test` (`backend-protocol: GRPC` plus
/// `annotations`).
async fn start_grpc(
    annotations: &[(&str, &str)],
) -> (Pingress, ManifestDir, tokio::task::JoinHandle<()>) {
    let (port, backend) = grpc_echo_backend().await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("grpc", &[port]));
    let mut ing = Ingress::new("grpc").annotation(&nx("backend-protocol"), "GRPC");
    for (k, v) in annotations {
        ing = ing.annotation(&nx(k), v);
    }
    dir.write(
        "ingress.yaml",
        &ing.host("grpc.test", &[("/", PREFIX, "grpc")]).to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    (px, dir, backend)
}

/// A streaming call over h2c through `px`: `first` is sent before the response is awaited (a
/// proxy that waits for more of the body before contacting the upstream never answers).
async fn grpc_call(px: &Pingress, first: Bytes) -> (FrameTx, hyper::body::Incoming) {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let stream = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http::Request::builder()
        .method("POST")
        .uri("http://grpc.test/echo.Echo/Chat")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(tokio_stream_from(rx)))
        .unwrap();
    tx.send(Ok(Frame::data(first))).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("response head within 10 s")
        .unwrap();
    assert_eq!(resp.status(), 200);
    (tx, resp.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ping_pong_streams_from_the_first_byte_with_the_default_limit() {
    use http_body_util::BodyExt;
    use hyper::body::Frame;
    let (px, _dir, _backend) = start_grpc(&[]).await;
    let message = |i: usize| Bytes::from(vec![(i % 251) as u8; 1024]);
    let (tx, mut body) = grpc_call(&px, message(0)).await;
    let mut got = Vec::new();
    // ping-pong: each message is sent only after the previous one came back
    for i in 0..200 {
        let mut echoed = Vec::new();
        while echoed.len() < 1024 {
            echoed.extend_from_slice(&next_data(&mut body).await);
        }
        assert_eq!(echoed, message(i).to_vec(), "message {i}");
        got.push(i);
        if i + 1 < 200 {
            tx.send(Ok(Frame::data(message(i + 1)))).await.unwrap();
        }
    }
    drop(tx);
    // the trailers arrive after the request ends
    let trailers = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("trailers within 10 s")
            .expect("trailers frame")
            .unwrap();
        if let Ok(t) = frame.into_trailers() {
            break t;
        }
    };
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(got.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_grpc_stream_ends_with_a_grpc_status_at_proxy_read_timeout() {
    use http_body_util::BodyExt;
    let (px, _dir, _backend) = start_grpc(&[("proxy-read-timeout", "2")]).await;
    let (tx, mut body) = grpc_call(&px, Bytes::from_static(b"ping")).await;
    assert_eq!(&next_data(&mut body).await[..], b"ping");
    // both sides idle now (the request stays open): proxy-read-timeout ends the call
    let started = Instant::now();
    let trailers = loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), body.frame())
            .await
            .expect("the idle call ended")
            .expect("a trailers frame, not a bare end of stream")
            .expect("a trailers frame, not a reset");
        if let Ok(t) = frame.into_trailers() {
            break t;
        }
    };
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(trailers.get("grpc-status").unwrap(), "14");
    assert_eq!(trailers.get("grpc-message").unwrap(), "upstream timed out");
    drop(tx);
}

/// cloudflare/pingora#946 (carried patch in vendor/pingora-proxy): when the backend's 101 is
/// read before the upgrade request's empty body end, the tunnel used to be torn down right
/// after the 101. Many short sessions against a fast local backend hit both orderings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_survive_whichever_side_of_the_101_comes_first() {
    let b = EchoBackend::start("ws").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("ws", &[b.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("ws")
            .host("ws.test", &[("/", PREFIX, "ws")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("ws.test", "/", 200, STARTUP).await;
    let mut broken = Vec::new();
    for i in 0..200 {
        // a plain request first leaves a pooled upstream connection: the upgrade reuses it and
        // the backend's 101 comes back fast
        assert_eq!(px.get("ws.test", "/").await.status, 200);
        let mut ws = ws_connect(&px).await;
        ws.send(format!("m{i}").into()).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) if m.to_text().ok() == Some(&format!("m{i}")) => {}
            other => broken.push((i, format!("{other:?}"))),
        }
    }
    assert!(
        broken.is_empty(),
        "tunnels closed after the 101: {broken:?}"
    );
}

/// A WebSocket session to `ws://ws.test/chat` through pingress (the 101 checked).
async fn ws_connect(px: &Pingress) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(px.addr()).await.unwrap();
    let req = http::Request::builder()
        .uri("ws://ws.test/chat")
        .header("Host", "ws.test")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends the head and the first half of a `size`-byte POST on a raw connection.
async fn half_upload(px: &Pingress, host: &str, target: &str, data: &[u8]) -> RawConn {
    let mut c = RawConn::connect(px.port).await;
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    c.send_raw(head.as_bytes()).await.unwrap();
    c.send_raw(&data[..data.len() / 2]).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_holds_no_upstream_until_its_body_is_whole() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "buffered.yaml",
        &Ingress::new("buffered")
            .host("buffered.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "streamed.yaml",
        &Ingress::new("streamed")
            .annotation(&nx("proxy-request-buffering"), "off")
            .host("streamed.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("buffered.test", "/", 200, STARTUP).await;
    px.wait_status("streamed.test", "/", 200, STARTUP).await;
    let data = body(300_000);

    // control: unbuffered, the upstream sees the request while the client is still sending
    let mut streamed = half_upload(&px, "streamed.test", "/up?streamed", &data).await;
    let seen = wait_until(Duration::from_secs(10), || async {
        b.received("/up?streamed")
    })
    .await;
    assert!(
        seen.is_some(),
        "proxy-request-buffering off streams the request"
    );

    // buffered (the default): nothing reaches the upstream while the body is incomplete
    let mut buffered = half_upload(&px, "buffered.test", "/up?buffered", &data).await;
    // a whole request through the same proxy and backend since the half upload was sent
    let r = px.get("buffered.test", "/after").await;
    assert_eq!(r.status, 200);
    assert!(b.received("/after"));
    assert!(
        !b.received("/up?buffered"),
        "the upstream was contacted before the body was whole"
    );

    for (conn, target) in [
        (&mut buffered, "/up?buffered"),
        (&mut streamed, "/up?streamed"),
    ] {
        conn.send_raw(&data[data.len() / 2..]).await.unwrap();
        let r = conn.read_response().await.unwrap();
        assert_eq!(r.status, 200, "{target}");
        let e: Echo = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (e.body_len, e.body_hash),
            (data.len(), fnv1a(&data)),
            "{target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_replays_the_whole_buffered_body() {
    // http_503 sends the request on to the next endpoint; a body over Pingora's 64 KiB retry
    // buffer could not be replayed before request buffering, so the 503 reached the client
    let failing = EchoBackend::start_with_status("failing", 503).await;
    let good = EchoBackend::start("good").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &backend_set("svc", &[failing.port, good.port]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new("retry")
            .annotation(&nx("proxy-next-upstream"), "error timeout http_503")
            .host("retry.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("retry.test", "/", 200, STARTUP).await;
    let client = http1_client();
    for (i, size) in [70_000, 300_000, 2_000, 300_000].into_iter().enumerate() {
        let data = body(size);
        let want = (data.len(), fnv1a(&data));
        let r = client
            .put(px.url(&format!("/put?{i}")))
            .header(HOST, "retry.test")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "PUT {i} of {size} B");
        let r = Reply::from_response(r).await.unwrap();
        let e = r.echo();
        assert_eq!(e.backend, "good");
        assert_eq!((e.body_len, e.body_hash), want, "PUT {i}");
    }
    // round robin sent some of them to the failing endpoint first, which got the whole body
    let failed_first = failing.completed_bodies();
    assert!(
        failed_first.iter().any(|(len, _)| *len >= 70_000),
        "no large PUT was retried: {failed_first:?}"
    );
}

/// A backend that answers each request with `200 ok` once its body is complete (chunked
/// or Content-Length 0 only) and records any bytes found where a request head must start.
async fn strict_chunked_backend() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let garbage = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = garbage.clone();
    let (port, _task) = raw_backend(move |mut s| {
        let garbage = seen.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(end) = read_head(&mut s, &mut buf).await {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                if !head.starts_with("GET ") && !head.starts_with("POST ") {
                    garbage.lock().unwrap().push(head.clone());
                }
                buf.drain(..end);
                if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    // only empty bodies are sent here: the terminating chunk
                    let mut chunk = [0u8; 64];
                    while buf.len() < 5 {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..5);
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await;
    (port, garbage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_h2_body_ends_the_upstream_request_once() {
    let (port, garbage) = strict_chunked_backend().await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[port]));
    dir.write(
        "ing.yaml",
        &Ingress::new("streamed")
            .annotation(&nx("proxy-request-buffering"), "off")
            .host("streamed.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("streamed.test", "/", 200, STARTUP).await;
    let h2 = h2c_client(&[("streamed.test", px.addr())]);
    let h1 = http1_client();
    for i in 0..20 {
        // no content-length, the body ends with an empty DATA frame: chunked upstream
        let empty: Vec<Result<Bytes, std::io::Error>> = vec![];
        let r = h2
            .post(format!("http://streamed.test:{}/post{i}", px.port))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                empty,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // the next request on the pooled upstream connection
        let r = h1
            .get(px.url(&format!("/get{i}")))
            .header(HOST, "streamed.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let garbage = garbage.lock().unwrap().clone();
    assert!(
        garbage.is_empty(),
        "bytes where a request had to start (a second terminating chunk): {garbage:?}"
    );
}

/// A backend that reads the request head and `take` bytes of body, waits `pause`, then answers
/// `401` and reads nothing more (as an app refusing an upload does), holding the connection.
async fn early_answer_backend(take: usize, pause: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    raw_backend(move |mut s| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut s, &mut buf).await else {
            return;
        };
        // a GET (the readiness probe) has no body to take
        let take = if buf.starts_with(b"GET ") { 0 } else { take };
        let mut chunk = vec![0u8; 64 * KIB];
        while buf.len() - head < take {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        tokio::time::sleep(pause).await;
        let _ = s
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
            )
            .await;
        // hold the connection without reading the body
        tokio::time::sleep(Duration::from_secs(40)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_before_it_reads_the_body_is_answered_at_once() {
    // at once, and after taking 1 MiB and a pause (the proxy is then blocked writing the body)
    let (at_once, _a) = early_answer_backend(0, Duration::ZERO).await;
    let (later, _b) = early_answer_backend(MIB, Duration::from_millis(300)).await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("at-once", &[at_once]),
            backend_set("later", &[later]),
        ]),
    );
    let hosts = [
        ("buffered", true, "at-once"),
        ("streamed", false, "at-once"),
        ("buffered-later", true, "later"),
        ("streamed-later", false, "later"),
    ];
    for (name, buffering, svc) in hosts {
        let mut ing = Ingress::new(name).annotation(&nx("proxy-body-size"), "64m");
        if !buffering {
            ing = ing.annotation(&nx("proxy-request-buffering"), "off");
        }
        let host = format!("{name}.test");
        dir.write(
            &format!("{name}.yaml"),
            &ing.host(&host, &[("/", PREFIX, svc)]).to_yaml(),
        );
    }
    let px = Pingress::start(dir.path()).await;
    for (name, ..) in hosts {
        px.wait_status(&format!("{name}.test"), "/", 401, STARTUP)
            .await;
    }
    let h1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("buffered.test", px.addr())
        .resolve("streamed.test", px.addr())
        .resolve("buffered-later.test", px.addr())
        .resolve("streamed-later.test", px.addr())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let clients = (h1, h2);
    // larger than what the loopback socket buffers absorb
    let data = body(24 * MIB);
    for (name, ..) in hosts {
        let host = &format!("{name}.test");
        for framing in [Framing::H1Length, Framing::H1Chunked, Framing::H2Stream] {
            let case = format!("{host} {framing:?}");
            let started = Instant::now();
            let reply = send(&clients, &px, framing, host, "/up", data.clone()).await;
            let took = started.elapsed();
            let r = reply.unwrap_or_else(|| {
                panic!("{case}: transport error after {took:?}\n{}", px.stderr())
            });
            assert_eq!(r.status, 401, "{case}");
            assert!(
                took < Duration::from_secs(15),
                "{case}: answered after {took:?} (proxy-send-timeout is 60 s)"
            );
        }
    }
}
