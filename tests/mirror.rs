//! `mirror-target`, `mirror-host`, `mirror-request-body` over real sockets (ingress-nginx e2e
//! `annotations/mirror.go` checks the rendered nginx.conf; these check what nginx then does):
//! the copy reaches the mirror with the request's method, URI rule, Host and body while the
//! real backend answers, a Service name needs no DNS, and a dead or silent mirror costs the real
//! request nothing.

mod support;

use std::time::Duration;

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

/// Waits (bounded) until `backend` answered a request for `path`; returns what it saw.
async fn copy_of(backend: &EchoBackend, path: &str) -> Echo {
    let find = || backend.echoes().into_iter().find(|e| e.path == path);
    let got = wait_until(STARTUP, || async { find().is_some() }).await;
    assert!(
        got.is_some(),
        "{} got no copy of {path}: {:?}",
        backend.name,
        backend.echoes()
    );
    find().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_reach_the_mirror_while_the_backend_answers() {
    let app = EchoBackend::start("app").await;
    let mirror = EchoBackend::start("mirror").await;
    let svc_mirror = EchoBackend::start("svc-mirror").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            backend_set("mirror", &[svc_mirror.port]),
        ]),
    );
    let m = format!("http://127.0.0.1:{}", mirror.port);
    for i in [
        Ingress::new("vars")
            .annotation(&nx("mirror-target"), &format!("{m}$request_uri"))
            .annotation(&nx("mirror-host"), "copies.test")
            .host("vars.test", &[("/", PREFIX, "app")]),
        Ingress::new("nobody")
            .annotation(&nx("mirror-target"), &format!("{m}/nobody"))
            .annotation(&nx("mirror-request-body"), "off")
            .host("nobody.test", &[("/", PREFIX, "app")]),
        // a watched Service's name: its endpoints, no cluster DNS (standalone mode)
        Ingress::new("svc")
            .annotation(&nx("mirror-target"), "http://mirror.default.svc/copy")
            .host("svc.test", &[("/", PREFIX, "app")]),
    ] {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("vars.test", "/", 200, STARTUP).await;

    // a body over client-body-buffer-size (8k: kept in a file) and one in memory
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for (path, body) in [
        ("/big?x=1", big.clone()),
        ("/small?x=1", b"small body".to_vec()),
    ] {
        let r = px
            .request(
                Method::POST,
                "vars.test",
                path,
                &[("Content-Type", "application/octet-stream")],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 200);
        let e = r.echo();
        assert_eq!((e.backend.as_str(), e.body_len), ("app", body.len()));
        let c = copy_of(&mirror, path).await;
        assert_eq!(c.method, "POST");
        assert_eq!(c.host.as_deref(), Some("copies.test"));
        assert_eq!(c.body_len, body.len());
        assert_eq!(c.body_hash, fnv1a(&body), "the copy's body differs");
        assert_eq!(
            c.header("content-type"),
            Some("application/octet-stream"),
            "the request's headers are copied"
        );
    }

    // mirror-request-body off: no body; a literal path replaces the URI, the query is kept
    let r = px
        .request(
            Method::PUT,
            "nobody.test",
            "/x?k=v",
            &[],
            b"payload".to_vec(),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.echo().body_len), (200, 7));
    let c = copy_of(&mirror, "/nobody?k=v").await;
    assert_eq!((c.method.as_str(), c.path.as_str()), ("PUT", "/nobody?k=v"));
    assert_eq!((c.body_len, c.header("content-length")), (0, None));
    assert_eq!(
        c.host.as_deref(),
        Some("127.0.0.1"),
        "default Host: the target's"
    );

    // the Service name
    let r = px.get("svc.test", "/s?q=1").await;
    assert_eq!(r.backend().as_deref(), Some("app"));
    let c = copy_of(&svc_mirror, "/copy?q=1").await;
    assert_eq!(c.host.as_deref(), Some("mirror.default.svc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_mirror_costs_the_real_request_nothing() {
    let app = EchoBackend::start("app").await;
    // silent: accepts connections (the kernel's backlog) and never reads or answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    // dead: nothing listens
    let dead_port = free_port();
    let dir = ManifestDir::with_class();
    dir.write("setup.yaml", &backend_set("app", &[app.port]));
    for (name, port) in [("silent", silent_port), ("dead", dead_port)] {
        let i = Ingress::new(name)
            .annotation(
                &nx("mirror-target"),
                &format!("http://127.0.0.1:{port}$request_uri"),
            )
            .host(&format!("{name}.test"), &[("/", PREFIX, "app")]);
        dir.write(&format!("{name}.yaml"), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("silent.test", "/", 200, STARTUP).await;
    px.wait_status("dead.test", "/", 200, STARTUP).await;
    // the copies wait up to proxy-read-timeout (60 s); the real requests must not
    for host in ["silent.test", "dead.test"] {
        for _ in 0..5 {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                px.request(Method::POST, host, "/p", &[], b"body".to_vec()),
            )
            .await
            .unwrap_or_else(|_| panic!("{host}: the real request waited for the mirror"));
            assert_eq!((r.status.as_u16(), r.echo().backend.as_str()), (200, "app"));
        }
    }
    // the refused copies are counted
    let failed = wait_until(STARTUP, || async {
        px.metrics().await.lines().any(|l| {
            l.starts_with("pingress_mirror_requests_total{") && l.contains("result=\"failed\"")
        })
    })
    .await;
    assert!(failed.is_some(), "{}", px.metrics().await);
    drop(silent);
}
