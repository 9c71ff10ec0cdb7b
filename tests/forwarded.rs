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
