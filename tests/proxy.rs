//! End-to-end proxy tests: the `pingress` binary in standalone mode in front
//! of in-process echo backends, over real sockets.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode, Version};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Starts `n` echo backends named `{prefix}{i}`.
async fn backends(prefix: &str, n: usize) -> Vec<EchoBackend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(EchoBackend::start(&format!("{prefix}{i}")).await);
    }
    v
}

fn ports(backends: &[EchoBackend]) -> Vec<u16> {
    backends.iter().map(|b| b.port).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_preserving_method_query_and_body() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-a", &[a.port]),
            backend_set("svc-b", &[b.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("web")
            .host("a.example.com", &[("/", PREFIX, "svc-a")])
            .host("b.example.com", &[("/api", PREFIX, "svc-b")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("a.example.com", "/", 200, STARTUP).await;

    let r = px
        .get("a.example.com", "/some/path?x=1&y=two%20words")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = r.echo();
    assert_eq!(e.backend, "a");
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/some/path?x=1&y=two%20words");
    assert_eq!(e.host.as_deref(), Some("a.example.com"));

    let r = px.get("b.example.com", "/api/items?id=7&id=8").await;
    assert_eq!(r.status, StatusCode::OK);
    let e = r.echo();
    assert_eq!(e.backend, "b");
    assert_eq!(e.path, "/api/items?id=7&id=8");
    assert_eq!(e.host.as_deref(), Some("b.example.com"));

    // b.example.com only routes /api.
    let r = px.get("b.example.com", "/other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // POST body arrives whole.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = px
        .request(
            Method::POST,
            "b.example.com",
            "/api/upload?kind=bin",
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = r.echo();
    assert_eq!(e.backend, "b");
    assert_eq!(e.method, "POST");
    assert_eq!(e.path, "/api/upload?kind=bin");
    assert_eq!(e.body_len, 100_000);
    assert_eq!(e.header("content-type"), Some("application/octet-stream"));

    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let r = px
            .request(method.clone(), "a.example.com", "/m", &[], b"xyz".to_vec())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
        let e = r.echo();
        assert_eq!(e.method, method.as_str());
        assert_eq!(e.backend, "a");
        assert_eq!(e.body_len, 3, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_service_port_resolves_to_endpoint_port_by_name() {
    let web = EchoBackend::start("web").await;
    let admin = EchoBackend::start("admin").await;
    let dir = ManifestDir::with_class();
    // One Service with two named ports; one EndpointSlice carrying both.
    dir.write(
        "backends.yaml",
        &docs(&[
            service_with_ports("multi", &[("http", 80), ("admin", 8080)]),
            endpoint_slice_ports(
                "multi-abc",
                "multi",
                &[("admin", admin.port), ("http", web.port)],
                READY,
            ),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("ports")
            .rule(
                Some("ports.example.com"),
                vec![
                    IngressPath::new("/by-name", PREFIX, "multi").port_name("http"),
                    IngressPath::new("/by-number", PREFIX, "multi").port_number(80),
                    IngressPath::new("/admin-name", PREFIX, "multi").port_name("admin"),
                    IngressPath::new("/admin-number", PREFIX, "multi").port_number(8080),
                ],
            )
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("ports.example.com", "/by-name", 200, STARTUP)
        .await;
    for (path, backend) in [
        ("/by-name", "web"),
        ("/by-number", "web"),
        ("/admin-name", "admin"),
        ("/admin-number", "admin"),
    ] {
        let r = px.get("ports.example.com", path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.echo().backend, backend, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_across_three_endpoints() {
    let bs = backends("rr", 3).await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-rr", &ports(&bs)));
    dir.write(
        "ingress.yaml",
        &Ingress::new("rr")
            .host("rr.example.com", &[("/", PREFIX, "svc-rr")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("rr.example.com", "/", 200, STARTUP).await;
    let before: Vec<usize> = bs.iter().map(EchoBackend::requests).collect();

    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let r = px.get("rr.example.com", &format!("/req/{i}")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        *seen.entry(r.echo().backend).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "all three endpoints used: {seen:?}");
    for (b, before) in bs.iter().zip(before) {
        let got = b.requests() - before;
        assert!(got >= 5, "backend {} got {got} of 30: {seen:?}", b.name);
        assert_eq!(seen.get(&b.name).copied(), Some(got));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_and_unknown_path_are_404() {
    let a = EchoBackend::start("a").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-a", &[a.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("app")
            .host("app.example.com", &[("/app", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("app.example.com", "/app", 200, STARTUP)
        .await;
    let before = a.requests();

    for (host, path) in [
        ("unknown.example.com", "/app"),
        ("example.com", "/app"),
        ("app.example.com.evil", "/app"),
        ("app.example.com", "/"),
        ("app.example.com", "/other"),
        ("app.example.com", "/application"),
    ] {
        let r = px.get(host, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{host}{path}");
    }
    assert_eq!(a.requests(), before, "backend must see none of the 404s");

    let r = px.get("app.example.com", "/app/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.echo().backend, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_ready_endpoints_are_503() {
    let ok = EchoBackend::start("ok").await;
    let not_ready = EchoBackend::start("not-ready").await;
    let terminating = EchoBackend::start("terminating").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-ok", &[ok.port]),
            // Service with no EndpointSlice at all.
            service("svc-empty"),
            // Endpoint present but not ready.
            service("svc-not-ready"),
            endpoint_slice(
                "svc-not-ready-0",
                "svc-not-ready",
                not_ready.port,
                Conditions {
                    ready: false,
                    terminating: false,
                },
            ),
            // Endpoint terminating.
            service("svc-terminating"),
            endpoint_slice(
                "svc-terminating-0",
                "svc-terminating",
                terminating.port,
                Conditions {
                    ready: true,
                    terminating: true,
                },
            ),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("e")
            .host(
                "e.example.com",
                &[
                    ("/ok", PREFIX, "svc-ok"),
                    ("/empty", PREFIX, "svc-empty"),
                    ("/missing", PREFIX, "svc-does-not-exist"),
                    ("/not-ready", PREFIX, "svc-not-ready"),
                    ("/terminating", PREFIX, "svc-terminating"),
                ],
            )
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("e.example.com", "/ok", 200, STARTUP).await;

    for path in ["/empty", "/missing", "/not-ready", "/terminating"] {
        let r = px.get("e.example.com", path).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    assert_eq!(
        not_ready.requests(),
        0,
        "not-ready endpoint must not be used"
    );
    assert_eq!(
        terminating.requests(),
        0,
        "terminating endpoint must not be used"
    );
    assert_eq!(
        px.get("e.example.com", "/ok").await.echo().backend,
        "ok",
        "healthy route still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502() {
    let ok = EchoBackend::start("ok").await;
    let dead1 = free_port();
    let dead2 = free_port();
    let dead3 = free_port();
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-ok", &[ok.port]),
            backend_set("svc-dead", &[dead1]),
            backend_set("svc-all-dead", &[dead1, dead2, dead3]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("d")
            .host(
                "d.example.com",
                &[
                    ("/ok", PREFIX, "svc-ok"),
                    ("/dead", PREFIX, "svc-dead"),
                    ("/all-dead", PREFIX, "svc-all-dead"),
                ],
            )
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("d.example.com", "/ok", 200, STARTUP).await;

    // A new connection per request: this test is about the status code only
    // (connection reuse after errors is `keep_alive_connection_survives_error_responses`).
    for _ in 0..3 {
        let r = px.get_fresh("d.example.com", "/dead").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "single dead endpoint");
        let r = px.get_fresh("d.example.com", "/all-dead").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "three dead endpoints");
    }
    assert_eq!(
        px.get_fresh("d.example.com", "/ok").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_survives_error_responses() {
    let ok = EchoBackend::start("ok").await;
    let dead = free_port();
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-ok", &[ok.port]),
            backend_set("svc-dead", &[dead]),
            service("svc-empty"),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("k")
            .host(
                "k.example.com",
                &[
                    ("/ok", PREFIX, "svc-ok"),
                    ("/dead", PREFIX, "svc-dead"),
                    ("/empty", PREFIX, "svc-empty"),
                ],
            )
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("k.example.com", "/ok", 200, STARTUP).await;

    // One client connection; a server may close it after a response only if
    // that response says `Connection: close` (then the test reconnects).
    let mut conn = RawConn::connect(px.port).await;
    let sequence = [
        ("/ok", 200),
        ("/missing-path", 404),
        ("/ok", 200),
        ("/empty", 503),
        ("/ok", 200),
        ("/dead", 502),
        ("/ok", 200),
        ("/dead", 502),
        ("/dead", 502),
        ("/ok", 200),
    ];
    let mut previous = "(none)".to_string();
    for (i, (path, status)) in sequence.into_iter().enumerate() {
        let r = conn.get("k.example.com", path).await.unwrap_or_else(|e| {
            panic!(
                "request {i} GET {path} on a kept-alive connection failed ({e}); \
                 the previous response was {previous} without `Connection: close`"
            )
        });
        assert_eq!(r.status, status, "request {i} GET {path}");
        previous = format!(
            "{} for {path} (connection: {:?})",
            r.status,
            r.header("connection")
        );
        if r.closes() {
            conn = RawConn::connect(px.port).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_skipped_when_a_live_one_exists() {
    let live = EchoBackend::start("live").await;
    let dead = free_port();
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &backend_set("svc-mixed", &[dead, live.port]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("m")
            .host("m.example.com", &[("/", PREFIX, "svc-mixed")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("m.example.com", "/", 200, STARTUP).await;
    let before = live.requests();

    for i in 0..20 {
        let r = px.get("m.example.com", &format!("/r{i}")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(r.echo().backend, "live");
    }
    assert_eq!(live.requests() - before, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_host_matches_exactly_one_label() {
    let w = EchoBackend::start("wild").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-w", &[w.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("w")
            .host("*.example.com", &[("/", PREFIX, "svc-w")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("a.example.com", "/", 200, STARTUP).await;

    for host in ["a.example.com", "foo-bar.example.com", "X.Example.COM"] {
        let r = px.get(host, "/").await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
        assert_eq!(r.echo().backend, "wild", "{host}");
    }
    for host in [
        "a.b.example.com",
        "example.com",
        "aexample.com",
        "a.example.org",
    ] {
        let r = px.get(host, "/").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_takes_precedence_over_wildcard() {
    let w = EchoBackend::start("wild").await;
    let x = EchoBackend::start("exact").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-w", &[w.port]),
            backend_set("svc-x", &[x.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("w")
            .host("*.example.com", &[("/", PREFIX, "svc-w")])
            .host("special.example.com", &[("/", PREFIX, "svc-x")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("special.example.com", "/", 200, STARTUP)
        .await;
    assert_eq!(
        px.get("special.example.com", "/").await.echo().backend,
        "exact"
    );
    assert_eq!(
        px.get("other.example.com", "/").await.echo().backend,
        "wild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_match_ignores_case_and_port_and_hostless_rule_matches_any_host() {
    let shop = EchoBackend::start("shop").await;
    let any = EchoBackend::start("any").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-shop", &[shop.port]),
            backend_set("svc-any", &[any.port]),
        ]),
    );
    dir.write(
        "shop.yaml",
        &Ingress::new("shop")
            .host("shop.example.com", &[("/", PREFIX, "svc-shop")])
            .to_yaml(),
    );
    dir.write(
        "any.yaml",
        &Ingress::new("any")
            .any_host(&[("/anyhost", PREFIX, "svc-any")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("shop.example.com", "/", 200, STARTUP).await;

    for host in [
        "shop.example.com",
        "SHOP.EXAMPLE.COM",
        "Shop.Example.Com",
        "shop.example.com:8080",
        "SHOP.example.com:443",
    ] {
        let r = px.get(host, "/cart").await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
        let e = r.echo();
        assert_eq!(e.backend, "shop", "{host}");
        // Host is forwarded exactly as the client sent it.
        assert_eq!(e.host.as_deref(), Some(host));
        assert_eq!(e.header("x-forwarded-host"), Some(host));
    }
    for host in ["whatever.test", "10.1.2.3", "Mixed.Case.Host:9"] {
        let r = px.get(host, "/anyhost/x").await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
        assert_eq!(r.echo().backend, "any", "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_and_prefix_on_the_same_path() {
    let a = EchoBackend::start("exact").await;
    let b = EchoBackend::start("prefix").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-a", &[a.port]),
            backend_set("svc-b", &[b.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("p")
            .host(
                "p.example.com",
                &[("/foo", EXACT, "svc-a"), ("/foo", PREFIX, "svc-b")],
            )
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("p.example.com", "/foo", 200, STARTUP).await;

    for (path, expected) in [
        ("/foo", Some("exact")),
        ("/foo?q=1", Some("exact")),
        ("/foo/", Some("prefix")),
        ("/foo/bar", Some("prefix")),
        ("/foo/bar/baz?x=y", Some("prefix")),
        ("/foobar", None),
        ("/fo", None),
        ("/", None),
    ] {
        let r = px.get("p.example.com", path).await;
        match expected {
            Some(backend) => {
                assert_eq!(r.status, StatusCode::OK, "{path}");
                let e = r.echo();
                assert_eq!(e.backend, backend, "{path}");
                assert_eq!(e.path, path);
            }
            None => assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins_and_prefix_is_element_wise() {
    let root = EchoBackend::start("root").await;
    let api = EchoBackend::start("api").await;
    let v2 = EchoBackend::start("v2").await;
    let imp = EchoBackend::start("impl").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-root", &[root.port]),
            backend_set("svc-api", &[api.port]),
            backend_set("svc-v2", &[v2.port]),
            backend_set("svc-impl", &[imp.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("l")
            // Declared shortest first so declaration order cannot explain a pass.
            .host(
                "l.example.com",
                &[
                    ("/", PREFIX, "svc-root"),
                    ("/api", PREFIX, "svc-api"),
                    ("/api/v2", PREFIX, "svc-v2"),
                ],
            )
            .host("i.example.com", &[("/impl", IMPL_SPECIFIC, "svc-impl")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("l.example.com", "/", 200, STARTUP).await;

    for (path, backend) in [
        ("/", "root"),
        ("/index.html", "root"),
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/v1/users", "api"),
        ("/api/v2", "v2"),
        ("/api/v2/users?page=3", "v2"),
        ("/api/v22", "api"),
        ("/apix", "root"),
    ] {
        let r = px.get("l.example.com", path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.echo().backend, backend, "{path}");
    }

    // ImplementationSpecific is nginx's `location /impl`: a plain string prefix.
    for path in ["/impl", "/impl/", "/impl/deep/er", "/implx"] {
        let r = px.get("i.example.com", path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.echo().backend, "impl", "{path}");
    }
    for path in ["/im", "/"] {
        let r = px.get("i.example.com", path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_follow_ingress_nginx() {
    let h = EchoBackend::start("hdr").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-h", &[h.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("h")
            .host("hdr.example.com", &[("/", PREFIX, "svc-h")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("hdr.example.com", "/", 200, STARTUP).await;
    let port = px.port.to_string();

    // Incoming forwarding headers are not trusted: replaced, not appended.
    let r = px
        .request(
            Method::GET,
            "hdr.example.com",
            "/check?a=b",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-real-ip", "5.6.7.8"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "abc-123-client-id"),
                ("x-custom-header", "kept as is"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers.get("server").is_none(),
        "no Server header: {:?}",
        r.headers
    );
    assert_eq!(
        r.headers.get(BACKEND_HEADER).unwrap(),
        "hdr",
        "upstream response headers pass through"
    );
    let e = r.echo();
    assert_eq!(e.host.as_deref(), Some("hdr.example.com"));
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-host"), Some("hdr.example.com"));
    assert_eq!(e.header("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-scheme"), Some("http"));
    assert_eq!(e.header("x-scheme"), Some("http"));
    assert_eq!(e.header("x-request-id"), Some("abc-123-client-id"));
    assert_eq!(e.header("x-custom-header"), Some("kept as is"));

    // Without an incoming id a fresh 32-hex id is generated per request.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = px.get("hdr.example.com", "/gen").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.get("server").is_none());
        let e = r.echo();
        let id = e.header("x-request-id").expect("x-request-id generated");
        assert!(is_hex32(id), "x-request-id {id:?} is not 32 hex chars");
        assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "request ids must differ: {ids:?}");

    // No Server header on the proxy's own error responses either.
    let r = px.get("nothing-here.example.com", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.headers.get("server").is_none(),
        "no Server header on 404: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let b = EchoBackend::start("h2").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-h2", &[b.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("h2")
            .any_host(&[("/h2", PREFIX, "svc-h2")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("anything.example.com", "/h2", 200, STARTUP)
        .await;

    let client = h2c_client(&[]);
    for i in 0..5 {
        let resp = client
            .get(px.url(&format!("/h2/stream/{i}?q=v")))
            .send()
            .await
            .expect("h2c request");
        let r = Reply::from_response(resp).await.expect("h2c body");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.version, Version::HTTP_2);
        let e = r.echo();
        assert_eq!(e.backend, "h2");
        assert_eq!(e.path, format!("/h2/stream/{i}?q=v"));
        assert_eq!(e.version, "HTTP/1.1", "upstream is HTTP/1.1");
    }
    // Unknown path over h2c is still a proper 404.
    let resp = client.get(px.url("/nope")).send().await.expect("h2c 404");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.version(), Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_routes_by_authority() {
    let b = EchoBackend::start("h2host").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc-h2", &[b.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("h2")
            .host("h2.example.com", &[("/", PREFIX, "svc-h2")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("h2.example.com", "/", 200, STARTUP).await;

    let client = h2c_client(&[
        ("h2.example.com", px.addr()),
        ("other.example.com", px.addr()),
    ]);
    let resp = client
        .get(format!("http://h2.example.com:{}/x", px.port))
        .send()
        .await
        .expect("h2c request");
    let r = Reply::from_response(resp).await.expect("h2c body");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_2);
    let e = r.echo();
    assert_eq!(e.backend, "h2host");
    assert_eq!(e.path, "/x");

    let resp = client
        .get(format!("http://other.example.com:{}/x", px.port))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// 20 WebSocket sessions at once while other clients keep pingress busy with plain requests:
/// each session's handshake, 6 echoed messages and clean close succeed on the first try (no
/// retry: carried patch 1, cloudflare/pingora#946, keeps a tunnel open whichever side of the
/// 101 comes first), and each upgrade reaches the backend once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    const SESSIONS: usize = 20;
    let b = EchoBackend::start("ws").await;
    let load = EchoBackend::start("load").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-ws", &[b.port]),
            backend_set("svc-load", &[load.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("ws")
            .host(
                "ws.example.com",
                &[("/ws", PREFIX, "svc-ws"), ("/load", PREFIX, "svc-load")],
            )
            .to_yaml(),
    );
    let px = Arc::new(Pingress::start(dir.path()).await);
    px.wait_status("ws.example.com", "/ws", 200, STARTUP).await;
    let before = b.requests();

    let stop = Arc::new(AtomicBool::new(false));
    let loaded = Arc::new(AtomicUsize::new(0));
    // each loader says when its first request is answered: the sessions start under load
    let (started, mut running) = tokio::sync::mpsc::channel::<()>(4);
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (px, stop, loaded) = (px.clone(), stop.clone(), loaded.clone());
            let started = started.clone();
            tokio::spawn(async move {
                let mut bad = Vec::new();
                let mut first = Some(started);
                while !stop.load(Ordering::Relaxed) {
                    let r = px.get("ws.example.com", "/load/x").await;
                    if r.status == 200 {
                        loaded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        bad.push(r.status);
                    }
                    if let Some(tx) = first.take() {
                        let _ = tx.send(()).await;
                    }
                }
                bad
            })
        })
        .collect();
    drop(started);
    for _ in 0..4 {
        running.recv().await.expect("a loader answered");
    }
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let port = px.port;
            tokio::spawn(async move { websocket_session(port, "ws.example.com", i).await })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, s) in sessions.into_iter().enumerate() {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("session {i}: {e}")),
            Err(e) => failed.push(format!("session {i}: task {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        assert_eq!(l.await.unwrap(), Vec::<u16>::new(), "plain requests failed");
    }
    assert!(failed.is_empty(), "WebSocket sessions failed: {failed:#?}");
    assert!(
        loaded.load(Ordering::Relaxed) >= 4,
        "plain requests were answered"
    );
    assert_eq!(
        b.requests() - before,
        SESSIONS,
        "every upgrade reached the backend once"
    );
}

/// One WebSocket session through pingress: handshake, 5 text messages and a
/// binary one echoed back, clean close.
async fn websocket_session(port: u16, host: &str, session: usize) -> Result<(), String> {
    const T: Duration = Duration::from_secs(5);
    let mut request = format!("ws://127.0.0.1:{port}/ws/chat?session={session}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (mut ws, response) = tokio::time::timeout(T, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("handshake status {}", response.status()));
    }
    let payload: Vec<u8> = (0..=255u8).collect();
    let mut messages: Vec<Message> = (0..5)
        .map(|i| Message::text(format!("hello through pingress #{i}")))
        .collect();
    messages.push(Message::binary(payload));
    for (i, msg) in messages.into_iter().enumerate() {
        ws.send(msg.clone())
            .await
            .map_err(|e| format!("send message {i}: {e}"))?;
        let reply = tokio::time::timeout(T, ws.next())
            .await
            .map_err(|_| format!("message {i}: echo timed out"))?
            .ok_or_else(|| format!("message {i}: stream ended"))?
            .map_err(|e| format!("message {i}: {e:?}"))?;
        if reply != msg {
            return Err(format!("message {i}: sent {msg:?}, got {reply:?}"));
        }
    }
    ws.close(None).await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_swap_under_load_without_failed_requests() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-a", &[a.port]),
            backend_set("svc-b", &[b.port]),
        ]),
    );
    let ingress = |version: usize| {
        let stable_svc = if version.is_multiple_of(2) {
            "svc-a"
        } else {
            "svc-b"
        };
        let mut paths = vec![IngressPath::new("/stable", PREFIX, stable_svc)];
        for v in 1..=version {
            paths.push(IngressPath::new(&format!("/v{v}"), EXACT, "svc-a"));
        }
        Ingress::new("swap")
            .rule(Some("swap.example.com"), paths)
            .to_yaml()
    };
    dir.write("ingress.yaml", &ingress(0));
    let px = Arc::new(Pingress::start(dir.path()).await);
    px.wait_status("swap.example.com", "/stable", 200, STARTUP)
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let hard_deadline = Instant::now() + Duration::from_secs(60);
    let mut loaders = Vec::new();
    for worker in 0..2 {
        let (px, stop, ok, failures) = (px.clone(), stop.clone(), ok.clone(), failures.clone());
        loaders.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) && Instant::now() < hard_deadline {
                n += 1;
                let path = format!("/stable/w{worker}/{n}");
                match px.try_get("swap.example.com", &path).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.lock().unwrap().push(format!(
                        "{path}: status {} {:?}",
                        r.status,
                        r.text()
                    )),
                    Err(e) => failures.lock().unwrap().push(format!("{path}: {e:?}")),
                }
            }
        }));
    }

    let mut slow = Vec::new();
    let mut worst = Duration::ZERO;
    for version in 1..=20 {
        dir.write("ingress.yaml", &ingress(version));
        let written = Instant::now();
        let new_route = px
            .wait_backend("swap.example.com", &format!("/v{version}"), "a", RELOAD)
            .await;
        let stable_backend = if version % 2 == 0 { "a" } else { "b" };
        let switched = px
            .wait_backend(
                "swap.example.com",
                "/stable",
                stable_backend,
                RELOAD.saturating_sub(written.elapsed()),
            )
            .await
            .map(|_| written.elapsed());
        let elapsed = written.elapsed();
        worst = worst.max(elapsed);
        if new_route.is_none() || switched.is_none() {
            slow.push(format!(
                "version {version}: /v{version} {new_route:?}, /stable->{stable_backend} {switched:?}, total {elapsed:?}"
            ));
        }
        // Routes of earlier versions still exist.
        let r = px.get("swap.example.com", "/v1").await;
        assert_eq!(r.status, StatusCode::OK, "version {version}: /v1");
    }
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.await.unwrap();
    }

    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::SeqCst);
    eprintln!(
        "hot swap: {ok} requests ok, {} failed, slowest swap served after {worst:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during swaps, first: {:?}",
        failures.len(),
        failures.len() + ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 40, "load loop made only {ok} requests");
    assert!(
        slow.is_empty(),
        "routes not served within {RELOAD:?} of the write: {slow:#?}"
    );
    // Both backends served /stable at some point.
    assert!(a.requests() > 0 && b.requests() > 0);
}

/// Request heads a backend received (lower-cased), in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// A raw HTTP/1 backend answering every request with `answer`, recording each request head.
async fn recording_backend(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>, Heads) {
    let heads = Heads::default();
    let seen = heads.clone();
    let (port, task) = support::raw::answering_backend(Duration::ZERO, move |head| {
        seen.lock().unwrap().push(head.to_ascii_lowercase());
        answer.to_vec()
    })
    .await;
    (port, task, heads)
}

/// The recorded head of the request for `target` (`GET target HTTP/...`).
fn seen_head(heads: &Heads, target: &str) -> String {
    let heads = heads.lock().unwrap();
    heads
        .iter()
        .find(|h| h.starts_with(&format!("get {target} ")))
        .cloned()
        .unwrap_or_else(|| panic!("{target} not seen: {heads:?}"))
}

/// ConfigMap header keys (ingress-nginx's nginx.tmpl): `hide-headers` (proxy_hide_header),
/// `proxy-add-original-uri-header`, `generate-request-id: false`, `server-tokens` with
/// `allow-backend-server-header` (proxy_pass_header Server), and the default
/// `underscores_in_headers off` / `ignore_invalid_headers on`: a request header with an
/// underscore in its name never reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_header_keys() {
    let (port, _b, heads) = recording_backend(
        b"HTTP/1.1 200 OK\r\nServer: backend/1\r\nX-Internal: a\r\nx-secret: b\r\nX-Kept: c\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("svc", &[port]),
            controller_configmap(&[
                ("hide-headers", "X-Internal, X-Secret"),
                ("proxy-add-original-uri-header", "true"),
                ("generate-request-id", "false"),
                ("server-tokens", "true"),
                ("allow-backend-server-header", "true"),
            ]),
            Ingress::new("h")
                .host("h.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("h.test", "/", 200, STARTUP).await;
    let r = px
        .request(
            Method::GET,
            "h.test",
            "/p?q=1",
            &[("X_Under", "1"), ("X-Ok", "1")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-internal"), None);
    assert_eq!(h("x-secret"), None);
    assert_eq!(h("x-kept").as_deref(), Some("c"));
    assert_eq!(h("server").as_deref(), Some("backend/1"));
    let head = seen_head(&heads, "/p?q=1");
    assert!(head.contains("\r\nx-ok: 1\r\n"), "{head}");
    assert!(!head.contains("x_under"), "{head}");
    assert!(head.contains("\r\nx-original-uri: /p?q=1\r\n"), "{head}");
    assert!(!head.contains("x-request-id"), "{head}");
    // pingress's own pages keep its Server
    let r = px.get("unknown.test", "/").await;
    assert_eq!(
        r.headers.get("server").unwrap().to_str().unwrap(),
        concat!("pingress/", env!("CARGO_PKG_VERSION"))
    );
}

/// `proxy-http-version: "1.0"` (nginx `proxy_http_version 1.0`): the upstream request line says
/// HTTP/1.0 with `Connection: close`; the default stays HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_http_version_1_0_reaches_the_upstream() {
    let (port, _b, heads) =
        recording_backend(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("svc", &[port]),
            Ingress::new("old")
                .annotation("nginx.ingress.kubernetes.io/proxy-http-version", "1.0")
                .host("old.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
            Ingress::new("new")
                .host("new.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("old.test", "/", 200, STARTUP).await;
    px.wait_status("new.test", "/", 200, STARTUP).await;
    assert_eq!(px.get("old.test", "/v10").await.status, 200);
    assert_eq!(px.get("new.test", "/v11").await.status, 200);
    let find = |p: &str| seen_head(&heads, p);
    let old = find("/v10");
    assert!(old.starts_with("get /v10 http/1.0\r\n"), "{old}");
    assert!(old.contains("\r\nconnection: close\r\n"), "{old}");
    assert!(find("/v11").starts_with("get /v11 http/1.1\r\n"));
}

/// A backend closing every kept-alive connection 1 ms after its last response: whichever moment
/// a pooled upstream connection dies (idle in the pool, just taken from it, mid-write of the
/// next request), a GET still gets its 200 (issue 21, bad input of the Pingora patch set: a
/// reused connection that turns out closed is retried, as nginx retries idempotent requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_after_1ms_fails_no_get() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let reused = Arc::new(AtomicUsize::new(0));
    let (acc, reu) = (accepted.clone(), reused.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::Relaxed);
            let reu = reu.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut served = 0usize;
                loop {
                    // the first request waits as long as it takes; a next one at most 1 ms
                    let read = if served == 0 || !buf.is_empty() {
                        s.read(&mut chunk).await
                    } else {
                        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut chunk))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => return, // idle for 1 ms: close
                        }
                    };
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if served > 0 {
                            reu.fetch_add(1, Ordering::Relaxed);
                        }
                        served += 1;
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let dir = ManifestDir::with_class();
    dir.write("backend.yaml", &backend_set("closer", &[port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("web")
            .host("closer.example.com", &[("/", PREFIX, "closer")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("closer.example.com", "/", 200, STARTUP)
        .await;

    // 8 clients, 150 GETs each, pausing 0 to 1.6 ms between requests so that reuse and the
    // backend's close meet at every distance
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let client = http1_client();
        let url = px.url("/");
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..150u64 {
                let r = client
                    .get(&url)
                    .header("host", "closer.example.com")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
                let pause = (i * 7 + c * 3) % 5 * 400;
                if pause > 0 {
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of 1200 GETs failed: {:?}\nstderr:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        px.stderr()
    );
    // the scenario really reused connections and really had them closed under it
    let (accepted, reused) = (
        accepted.load(Ordering::Relaxed),
        reused.load(Ordering::Relaxed),
    );
    assert!(reused > 0, "no upstream connection was reused");
    assert!(
        accepted > 20,
        "only {accepted} upstream connections: the backend never closed"
    );
}
