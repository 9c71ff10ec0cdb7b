//! Graceful shutdown, with ingress-nginx's two flags: after SIGTERM pingress serves on for
//! `--shutdown-grace-period` (default 0) while /healthz and /readyz fail, then stops accepting,
//! lets in-flight requests finish within `--post-shutdown-grace-period`, and exits.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request after `delay`; counts requests received.
async fn slow_backend(delay: Duration) -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(());
                tokio::time::sleep(delay).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                    )
                    .await;
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_within_the_grace_period() {
    let (port, mut received) = slow_backend(Duration::from_millis(1500)).await;
    let dir = ManifestDir::new();
    dir.write("all.yaml", &one_host_app("slow", &[port], "slow.test"));
    let grace = 4u64;
    let mut px = Pingress::start_with_args(
        dir.path(),
        &["--post-shutdown-grace-period", &grace.to_string()],
    )
    .await;
    let client = http1_client();
    let url = px.url("/");
    let inflight = tokio::spawn(async move {
        client
            .get(url)
            .header("host", "slow.test")
            .send()
            .await?
            .text()
            .await
    });
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("backend got the request");
    let term = Instant::now();
    px.signal("TERM");
    // new connections are refused once the listener stops (bounded poll)
    let stopped = wait_until(Duration::from_secs(2), || async {
        std::net::TcpStream::connect(px.addr()).is_err()
    })
    .await;
    let body = inflight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(body, "slow");
    assert!(
        term.elapsed() < Duration::from_secs(grace),
        "finished within the grace period"
    );
    assert!(stopped.is_some(), "listener still accepting after SIGTERM");
    let status = px
        .wait_exit(Duration::from_secs(grace + 5))
        .await
        .expect("exits within the grace period plus the runtime timeout");
    assert!(status.success(), "exit status {status}\n{}", px.stderr());
    assert!(
        term.elapsed() <= Duration::from_secs(grace + 3),
        "{:?}",
        term.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_shutdown_grace_period_fails_the_probes_and_serves_on_until_it_ends() {
    let backend = EchoBackend::start("a").await;
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &one_host_app("web", &[backend.port], "web.test"),
    );
    let grace = 3u64;
    let mut px = Pingress::start_with_args(
        dir.path(),
        &[
            "--shutdown-grace-period",
            &grace.to_string(),
            "--post-shutdown-grace-period",
            "1",
        ],
    )
    .await;
    px.wait_status("web.test", "/", 200, Duration::from_secs(10))
        .await;
    assert_eq!(px.health("/healthz").await, Some(200));
    let term = Instant::now();
    px.signal("TERM");
    let failing = wait_until(Duration::from_secs(2), || async {
        px.health("/healthz").await == Some(500)
    })
    .await;
    assert!(failing.is_some(), "/healthz still 200 after SIGTERM");
    assert_eq!(px.health("/readyz").await, Some(500));
    // still serving: a new connection gets its answer
    let fresh = support::harness::http1_client_no_pool();
    let r = fresh
        .get(px.url("/"))
        .header("host", "web.test")
        .send()
        .await
        .expect("a request during the grace period is served");
    assert_eq!(r.status(), 200);
    assert!(
        term.elapsed() < Duration::from_secs(grace),
        "the check ran after the grace period ({:?}): the machine is too slow for it",
        term.elapsed()
    );
    // then the listener stops and the process exits
    let status = px
        .wait_exit(Duration::from_secs(grace + 6))
        .await
        .expect("exits after both grace periods");
    assert!(status.success(), "exit status {status}\n{}", px.stderr());
    assert!(
        term.elapsed() >= Duration::from_secs(grace),
        "exited before --shutdown-grace-period ended: {:?}",
        term.elapsed()
    );
}
