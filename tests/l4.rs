//! `--tcp-services-configmap` over real sockets: a TCP echo Service reached through its port,
//! added and removed while pingress runs, a dead endpoint skipped for the next one, PROXY
//! protocol decoded from the client and sent to the backend, and endpoint changes while a
//! connection is open (it keeps going; new ones go to the new endpoints).

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IO: Duration = Duration::from_secs(10);

/// A TCP backend on an ephemeral port: answers every connection with `name:` and then echoes
/// what it reads. With `show_head`, the first line it received (a PROXY header) comes first.
async fn echo(name: &'static str, show_head: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if show_head {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n") {
                        let mut b = [0u8; 1];
                        if s.read(&mut b).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let _ = s.write_all(&head).await;
                }
                let _ = s.write_all(format!("{name}:").as_bytes()).await;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn tcp_configmap(entries: &[(u16, String)]) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp, namespace: ingress}\ndata:\n",
    );
    for (port, target) in entries {
        s.push_str(&format!("  \"{port}\": \"{target}\"\n"));
    }
    s
}

/// Connect to `port`, send `msg`, read until `want` bytes arrived (or the peer closed).
async fn exchange(port: u16, msg: &[u8], want: usize) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::time::timeout(IO, TcpStream::connect(("127.0.0.1", port))).await??;
    s.write_all(msg).await?;
    read_n(&mut s, want).await
}

async fn read_n(s: &mut TcpStream, want: usize) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < want {
        let n = tokio::time::timeout(IO, s.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// Waits until a connection to `port` is answered by `name` (or refused, with `None`).
async fn wait_served(port: u16, name: Option<&str>) {
    let want = name.map(|n| format!("{n}:hi"));
    let ok = wait_until(STARTUP, || {
        let want = want.clone();
        async move {
            let got = exchange(port, b"hi", want.as_ref().map_or(1, |w| w.len())).await;
            match (&want, got) {
                (Some(w), Ok(g)) => g == w.as_bytes(),
                (None, Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                _ => false,
            }
        }
    })
    .await;
    assert!(ok.is_some(), "port {port} never answered as {name:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_services_follow_the_configmap_and_the_endpoints() {
    let a = echo("a", false).await;
    let b = echo("b", false).await;
    let dead = free_port();
    let (p1, p2) = (free_port(), free_port());
    let dir = ManifestDir::with_class();
    dir.write("svc.yaml", &docs(&[backend_set("echo", &[a])]));
    dir.write(
        "tcp.yaml",
        &tcp_configmap(&[(p1, "default/echo:80".into())]),
    );
    let px =
        Pingress::start_with_args(dir.path(), &["--tcp-services-configmap", "ingress/tcp"]).await;
    wait_served(p1, Some("a")).await;
    // bytes both ways, more than one buffer
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let got = exchange(p1, &big, big.len() + 2).await.unwrap();
    assert_eq!(&got[..2], b"a:");
    assert_eq!(&got[2..], &big[..]);

    // an open connection keeps its endpoint when the Service moves to `b` (and a dead one)
    let mut open = TcpStream::connect(("127.0.0.1", p1)).await.unwrap();
    open.write_all(b"x").await.unwrap();
    assert_eq!(read_n(&mut open, 3).await.unwrap(), b"a:x");
    dir.write("svc.yaml", &docs(&[backend_set("echo", &[dead, b])]));
    wait_served(p1, Some("b")).await;
    // the dead endpoint is skipped for the next one, every time
    for _ in 0..4 {
        assert_eq!(exchange(p1, b"hi", 4).await.unwrap(), b"b:hi");
    }
    open.write_all(b"y").await.unwrap();
    assert_eq!(read_n(&mut open, 1).await.unwrap(), b"y");

    // a second port added, the first removed, without a restart
    dir.write(
        "tcp.yaml",
        &tcp_configmap(&[(p2, "default/echo:80".into())]),
    );
    wait_served(p2, Some("b")).await;
    wait_served(p1, None).await;
    assert!(
        px.stderr().contains("TCP service removed"),
        "{}",
        px.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_decoded_and_encoded() {
    let backend = echo("pp", true).await;
    let (decode, encode) = (free_port(), free_port());
    let dir = ManifestDir::with_class();
    dir.write("svc.yaml", &docs(&[backend_set("echo", &[backend])]));
    dir.write(
        "tcp.yaml",
        &tcp_configmap(&[
            (decode, "default/echo:80:PROXY:PROXY".into()),
            (encode, "default/echo:http::PROXY".into()),
        ]),
    );
    let _px =
        Pingress::start_with_args(dir.path(), &["--tcp-services-configmap", "ingress/tcp"]).await;
    // the backend sees a PROXY v1 header with the client's address and pingress's port
    let want = "PROXY TCP4 127.0.0.1 127.0.0.1 ";
    let ok = wait_until(STARTUP, || async {
        exchange(encode, b"", want.len())
            .await
            .is_ok_and(|g| g.starts_with(want.as_bytes()))
    })
    .await;
    assert!(ok.is_some(), "no PROXY header reached the backend");
    let mut s = TcpStream::connect(("127.0.0.1", encode)).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"pp:") {
        let more = read_n(&mut s, 1).await.unwrap();
        assert!(!more.is_empty(), "closed early: {got:?}");
        got.extend(more);
    }
    let line = String::from_utf8_lossy(&got);
    assert!(line.ends_with(&format!(" {encode}\r\npp:")), "{line}");
    // decoded from the client: its source is what the backend is told
    let got = exchange(
        decode,
        b"PROXY TCP4 203.0.113.9 10.0.0.1 4242 443\r\nhello",
        "PROXY TCP4 203.0.113.9 ".len(),
    )
    .await
    .unwrap();
    assert!(
        got.starts_with(b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // a client without the header is closed
    let got = exchange(decode, b"GET / HTTP/1.1\r\n\r\n", 1).await;
    assert!(
        got.map_or(true, |g| g.is_empty()),
        "served without a PROXY header"
    );
}

/// Cluster mode (the in-process fake API server): the ConfigMap is watched by name, and an
/// entry added there opens its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_services_in_cluster_mode() {
    let a = echo("a", false).await;
    let (p1, p2) = (free_port(), free_port());
    let fake = support::fake_apiserver::FakeApi::start().await;
    fake.apply_yaml(&docs(&[
        ingress_class("pingress", "k8s.io/pingress"),
        backend_set("echo", &[a]),
        tcp_configmap(&[(p1, "default/echo:80".into())]),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let kc = fake.kubeconfig(tmp.path(), "l4").await;
    let _px = Pingress::start_cluster(
        &kc,
        &[
            "--update-status=false",
            "--tcp-services-configmap",
            "ingress/tcp",
        ],
        &[],
    )
    .await;
    wait_served(p1, Some("a")).await;
    fake.apply_yaml(&tcp_configmap(&[
        (p1, "default/echo:80".into()),
        (p2, "default/echo:http".into()),
    ]));
    wait_served(p2, Some("a")).await;
    assert!(
        fake.requests().is_empty(),
        "nothing written: {:?}",
        fake.requests()
    );
}

/// A UDP backend answering every datagram with `name:` + the datagram.
async fn udp_echo(name: &'static str) -> u16 {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = s.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let mut out = format!("{name}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from).await;
        }
    });
    port
}

/// Send `msg` from `client` to the service port; the answer, if one comes within a second.
async fn udp_ask(client: &tokio::net::UdpSocket, port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    client.send_to(msg, ("127.0.0.1", port)).await.ok()?;
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), client.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf[..n].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_services_answer_each_client() {
    let backend = udp_echo("u").await;
    // a free UDP port for the service
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let dir = ManifestDir::with_class();
    dir.write("svc.yaml", &docs(&[backend_set("dns", &[backend])]));
    dir.write(
        "udp.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: udp, namespace: ingress}}\ndata:\n  \"{port}\": \"default/dns:80\"\n"
        ),
    );
    let _px =
        Pingress::start_with_args(dir.path(), &["--udp-services-configmap", "ingress/udp"]).await;
    let one = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let two = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // the socket opens with the first published table: ask until it answers
    let ok = wait_until(STARTUP, || async {
        udp_ask(&one, port, b"ping").await.as_deref() == Some(&b"u:ping"[..])
    })
    .await;
    assert!(ok.is_some(), "the UDP service never answered");
    // each client gets its own answers, again and again (a flow ends after its answer)
    for i in 0..3 {
        let q1 = format!("one-{i}");
        let q2 = format!("two-{i}");
        assert_eq!(
            udp_ask(&one, port, q1.as_bytes()).await,
            Some(format!("u:{q1}").into_bytes())
        );
        assert_eq!(
            udp_ask(&two, port, q2.as_bytes()).await,
            Some(format!("u:{q2}").into_bytes())
        );
    }
}
