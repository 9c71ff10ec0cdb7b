//! Annotations over real sockets: a real pingress process, in-process echo backends, real
//! HTTP clients. One scenario per test; each has its own manifest folder and ports.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

/// A manifest folder with the IngressClass, one Service `svc` over `backends`, and `ing`.
fn setup(backends: &[u16], ing: Ingress) -> ManifestDir {
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", backends));
    dir.write("ingress.yaml", &ing.to_yaml());
    dir
}

async fn start(dir: &ManifestDir, host: &str, path: &str, status: u16) -> Pingress {
    let px = Pingress::start(dir.path()).await;
    px.wait_status(host, path, status, STARTUP).await;
    px
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_target_with_captures_keeps_query_and_is_case_insensitive() {
    let b = EchoBackend::start("b").await;
    let ing = Ingress::new("rw")
        .annotation(&nx("use-regex"), "true")
        .annotation(&nx("rewrite-target"), "/$2")
        .annotation(&nx("x-forwarded-prefix"), "/something")
        .host("rw.test", &[("/something(/|$)(.*)", IMPL_SPECIFIC, "svc")]);
    let dir = setup(&[b.port], ing);
    let px = start(&dir, "rw.test", "/something", 200).await;
    for (req, want) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new?x=1&y=2", "/new?x=1&y=2"),
        ("/SOMETHING/New", "/New"),
        ("/something/a%20b", "/a%20b"),
    ] {
        let r = px.get("rw.test", req).await;
        assert_eq!(r.status, 200, "{req}");
        let e = r.echo();
        assert_eq!(e.path, want, "{req}");
        assert_eq!(e.header("x-forwarded-prefix"), Some("/something"), "{req}");
    }
    // not under the regex: the host's default backend
    assert_eq!(px.get("rw.test", "/other").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_target_without_regex_replaces_the_whole_uri_and_absolute_targets_redirect() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "a.yaml",
        &Ingress::new("a")
            .annotation(&nx("rewrite-target"), "/")
            .host("whole.test", &[("/foo", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "b.yaml",
        &Ingress::new("b")
            .annotation(&nx("use-regex"), "true")
            .annotation(&nx("rewrite-target"), "https://new.example.com/$1")
            .host("abs.test", &[("/old/(.*)", IMPL_SPECIFIC, "svc")])
            .to_yaml(),
    );
    let px = start(&dir, "whole.test", "/foo", 200).await;
    // nginx rewrite replaces the whole URI; regex mode makes /foo match /foobar too
    assert_eq!(
        px.get("whole.test", "/foo/bar?q=1").await.echo().path,
        "/?q=1"
    );
    assert_eq!(px.get("whole.test", "/foobar").await.echo().path, "/");
    let r = px.get("abs.test", "/old/page?x=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://new.example.com/page?x=1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_temporal_redirects_and_app_root() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    let redirect = |name: &str, host: &str, ann: &[(&str, &str)]| {
        let mut i = Ingress::new(name);
        for (k, v) in ann {
            i = i.annotation(&nx(k), v);
        }
        i.host(host, &[("/", PREFIX, "svc")]).to_yaml()
    };
    dir.write(
        "p.yaml",
        &redirect(
            "p",
            "perm.test",
            &[("permanent-redirect", "https://www.example.com/moved")],
        ),
    );
    dir.write(
        "p2.yaml",
        &redirect(
            "p2",
            "perm308.test",
            &[
                ("permanent-redirect", "https://example.com"),
                ("permanent-redirect-code", "308"),
            ],
        ),
    );
    dir.write(
        "t.yaml",
        &redirect(
            "t",
            "temp.test",
            &[
                ("permanent-redirect", "https://a.example.com"),
                ("temporal-redirect", "https://b.example.com/t"),
            ],
        ),
    );
    dir.write(
        "r.yaml",
        &redirect("r", "root.test", &[("app-root", "/app1")]),
    );
    let px = start(&dir, "perm.test", "/", 301).await;
    let r = px.get("perm.test", "/any/path?q=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://www.example.com/moved");
    assert_eq!(b.requests(), 0, "redirects never reach the upstream");
    let r = px.get("perm308.test", "/x").await;
    assert_eq!(
        (r.status.as_u16(), r.headers["location"].to_str().unwrap()),
        (308, "https://example.com")
    );
    let r = px.get("temp.test", "/").await;
    assert_eq!(
        (r.status.as_u16(), r.headers["location"].to_str().unwrap()),
        (302, "https://b.example.com/t")
    );
    let r = px.get("root.test:8080", "/?q=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "http://root.test:8080/app1");
    // only the exact URI / is redirected
    assert_eq!(px.get("root.test", "/app1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_413_before_the_upstream_sees_a_byte() {
    let b = EchoBackend::start("b").await;
    let ing = Ingress::new("body")
        .annotation(&nx("proxy-body-size"), "1k")
        .host("body.test", &[("/", PREFIX, "svc")]);
    let dir = setup(&[b.port], ing);
    let px = start(&dir, "body.test", "/", 200).await;
    let before = b.requests();
    let r = px
        .request(Method::POST, "body.test", "/upload", &[], vec![b'x'; 2048])
        .await;
    assert_eq!(r.status, 413);
    // chunked (no Content-Length)
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'y'; 700]), Ok(vec![b'z'; 700])];
    let stream = futures_util::stream::iter(chunks);
    let resp = http1_client()
        .post(px.url("/upload"))
        .header("host", "body.test")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(b.requests(), before, "the upstream saw nothing");
    // under the limit, chunked and not: proxied with the whole body
    let r = px
        .request(Method::POST, "body.test", "/upload", &[], vec![b'x'; 1000])
        .await;
    assert_eq!((r.status.as_u16(), r.echo().body_len), (200, 1000));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'y'; 300]), Ok(vec![b'z'; 300])];
    let resp = http1_client()
        .post(px.url("/upload"))
        .header("host", "body.test")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let e: Echo = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(e.body_len, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_answers_504() {
    let b = EchoBackend::start("slow").await;
    let ing = Ingress::new("slow")
        .annotation(&nx("proxy-read-timeout"), "1")
        .host("slow.test", &[("/", PREFIX, "svc")]);
    let dir = setup(&[b.port], ing);
    let px = start(&dir, "slow.test", "/", 200).await;
    let t = Instant::now();
    let r = px.get("slow.test", "/?sleep_ms=4000").await;
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
    // a fast answer is unaffected
    assert_eq!(px.get("slow.test", "/?sleep_ms=100").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_upstream_on_status_and_on_refused_connect() {
    let bad = EchoBackend::start_with_status("bad", 503).await;
    let good = EchoBackend::start("good").await;
    let dead = free_port();
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[bad.port, good.port]));
    dir.write("dead.yaml", &backend_set("deadsvc", &[dead, good.port]));
    dir.write(
        "retry.yaml",
        &Ingress::new("retry")
            .annotation(&nx("proxy-next-upstream"), "error timeout http_503")
            .host("retry.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "plain.yaml",
        &Ingress::new("plain")
            .host("plain.test", &[("/", PREFIX, "svc")])
            .host("dead.test", &[("/", PREFIX, "deadsvc")])
            .to_yaml(),
    );
    let px = start(&dir, "retry.test", "/", 200).await;
    for i in 0..10 {
        let r = px.get("retry.test", "/").await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.echo().backend, "good");
    }
    // default proxy-next-upstream (error timeout) passes the 503 through
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..6).map(|_| px.get("plain.test", "/")))
            .await
            .iter()
            .map(|r| r.status.as_u16())
            .collect();
    assert!(
        statuses.contains(&503) && statuses.contains(&200),
        "{statuses:?}"
    );
    // a refused connect goes to the next endpoint
    for _ in 0..6 {
        assert_eq!(px.get("dead.test", "/").await.echo().backend, "good");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rps_allows_burst_then_rejects_then_refills() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    // limit-rps 2, multiplier 2: burst 4, so 5 immediate requests pass
    dir.write(
        "limited.yaml",
        &Ingress::new("limited")
            .annotation(&nx("limit-rps"), "2")
            .annotation(&nx("limit-burst-multiplier"), "2")
            .host("rl.test", &[("/", PREFIX, "svc")])
            .host("rl2.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "exempt.yaml",
        &Ingress::new("exempt")
            .annotation(&nx("limit-rps"), "1")
            .annotation(&nx("limit-allowlist"), "127.0.0.0/8")
            .host("free.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("free.test", "/", 200, STARTUP).await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        // both hosts of the Ingress share one budget
        let host = if i % 2 == 0 { "rl.test" } else { "rl2.test" };
        statuses.push(px.get(host, "/").await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503]);
    // refill: one request per 500 ms
    let refilled = wait_until(Duration::from_secs(2), || async {
        px.get("rl.test", "/").await.status == 200
    })
    .await;
    assert!(refilled.is_some(), "the bucket refills at the rate");
    for _ in 0..20 {
        assert_eq!(px.get("free.test", "/").await.status, 200, "allowlisted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_connections_and_configmap_status_codes() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "conn.yaml",
        &Ingress::new("conn")
            .annotation(&nx("limit-connections"), "1")
            .host("conn.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ingress}\ndata:\n  limit-conn-status-code: \"429\"\n",
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("conn.test", "/", 200, STARTUP).await;
    let slow = {
        let url = px.url("/?sleep_ms=1500");
        tokio::spawn(async move {
            // The previous request's slot is freed when pingress finishes it (after its
            // response reached us): until then this one may be refused. Retry those refusals
            // only; anything else is the answer.
            loop {
                let status = support::harness::http1_client_no_pool()
                    .get(url.clone())
                    .header("host", "conn.test")
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                if !matches!(status, Ok(429)) {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // wait until the slow request is at the backend, then a second one is refused
    let seen = wait_until(Duration::from_secs(5), || async { b.requests() >= 2 }).await;
    if seen.is_none() {
        panic!(
            "the slow request never reached the backend; it answered {:?}",
            slow.await
        );
    }
    assert_eq!(px.get_fresh("conn.test", "/").await.status, 429);
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    assert_eq!(px.get_fresh("conn.test", "/").await.status, 200, "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_source_ranges() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    let ing = |name: &str, host: &str, key: &str, value: &str| {
        Ingress::new(name)
            .annotation(&nx(key), value)
            .host(host, &[("/", PREFIX, "svc")])
            .to_yaml()
    };
    dir.write(
        "a.yaml",
        &ing(
            "a",
            "allowed.test",
            "whitelist-source-range",
            "127.0.0.0/8, 10.0.0.0/8",
        ),
    );
    dir.write(
        "b.yaml",
        &ing("b", "outside.test", "allowlist-source-range", "10.0.0.0/8"),
    );
    dir.write(
        "c.yaml",
        &ing("c", "denied.test", "denylist-source-range", "127.0.0.1"),
    );
    dir.write(
        "d.yaml",
        &ing(
            "d",
            "broken.test",
            "allowlist-source-range",
            "127.0.0.0/8,not-a-cidr",
        ),
    );
    let px = start(&dir, "allowed.test", "/", 200).await;
    let before = b.requests();
    assert_eq!(px.get("outside.test", "/").await.status, 403);
    assert_eq!(px.get("denied.test", "/").await.status, 403);
    assert_eq!(px.get("broken.test", "/").await.status, 503, "fails closed");
    assert_eq!(
        b.requests(),
        before,
        "refused requests never reach the upstream"
    );
    assert_eq!(px.get("allowed.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_vhost_configmap_headers_and_custom_headers() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "cm.yaml",
        &docs(&[
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ingress}\ndata:\n  proxy-set-headers: ingress/req-headers\n  add-headers: ingress/resp-headers\n  global-allowed-response-headers: X-Team\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: req-headers, namespace: ingress}\ndata:\n  X-Env: prod\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: resp-headers, namespace: ingress}\ndata:\n  X-Frame-Options: DENY\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: team, namespace: default}\ndata:\n  X-Team: payments\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: default}\ndata:\n  X-Not-Allowed: x\n",
        ]),
    );
    dir.write(
        "v.yaml",
        &Ingress::new("v")
            .annotation(&nx("upstream-vhost"), "internal.svc.local")
            .annotation(&nx("custom-headers"), "default/team")
            .host("vhost.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "bad.yaml",
        &Ingress::new("bad")
            .annotation(&nx("custom-headers"), "bad")
            .host("bad.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("vhost.test", "/", 200, STARTUP).await;
    let r = px.get("vhost.test", "/").await;
    let e = r.echo();
    assert_eq!(e.host.as_deref(), Some("internal.svc.local"));
    assert_eq!(e.header("x-forwarded-host"), Some("vhost.test"));
    assert_eq!(e.header("x-env"), Some("prod"));
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-team"], "payments");
    assert_eq!(
        px.get("bad.test", "/").await.status,
        503,
        "header not allowed: denied"
    );
    assert!(px.stderr().contains("CustomHeadersDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_and_default_backend_fallback() {
    let app = EchoBackend::start_with_status("app", 404).await;
    let errors = EchoBackend::start("errors").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[app.port]));
    dir.write("errors.yaml", &backend_set("errors", &[errors.port]));
    dir.write("empty.yaml", &service("empty"));
    dir.write(
        "ing.yaml",
        &Ingress::new("app")
            .annotation(&nx("custom-http-errors"), "404,503")
            .annotation(&nx("default-backend"), "errors")
            .host("app.test", &[("/", PREFIX, "svc")])
            .host("down.test", &[("/", PREFIX, "empty")])
            .to_yaml(),
    );
    let px = start(&dir, "app.test", "/", 200).await;
    let r = px
        .request(
            Method::GET,
            "app.test",
            "/missing?x=1",
            &[("accept", "application/json"), ("x-request-id", "rid-1")],
            vec![],
        )
        .await;
    let e = r.echo();
    assert_eq!(e.backend, "errors");
    assert_eq!(e.path, "/");
    assert_eq!(e.header("x-code"), Some("404"));
    assert_eq!(e.header("x-format"), Some("application/json"));
    assert_eq!(e.header("x-original-uri"), Some("/missing?x=1"));
    assert_eq!(e.header("x-namespace"), Some("default"));
    assert_eq!(e.header("x-ingress-name"), Some("app"));
    assert_eq!(e.header("x-service-name"), Some("svc"));
    assert_eq!(e.header("x-service-port"), Some("80"));
    assert_eq!(e.header("x-request-id"), Some("rid-1"));
    // no endpoints: the default-backend answers with X-Code 503
    let e = px.get("down.test", "/x").await.echo();
    assert_eq!(
        (e.backend.as_str(), e.header("x-code")),
        ("errors", Some("503"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_proxy_intercept_errors_passes_the_upstream_error_through() {
    // ingress-nginx e2e annotations/disableproxyintercepterrors.go
    let app = EchoBackend::start_with_status("app", 404).await;
    let errors = EchoBackend::start("errors").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[app.port]));
    dir.write("errors.yaml", &backend_set("errors", &[errors.port]));
    let ing = |disable: &str| {
        Ingress::new("pie")
            .annotation(&nx("custom-http-errors"), "404")
            .annotation(&nx("default-backend"), "errors")
            .annotation(&nx("disable-proxy-intercept-errors"), disable)
            .host("pie.test", &[("/", PREFIX, "svc")])
            .to_yaml()
    };
    dir.write("ing.yaml", &ing("true"));
    let px = start(&dir, "pie.test", "/", 404).await;
    let r = px.get("pie.test", "/status/404").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.backend().as_deref(), Some("app"));
    // intercepted again when the annotation says false
    dir.write("ing.yaml", &ing("false"));
    px.wait_status("pie.test", "/", 200, RELOAD * 5).await;
    let e = px.get("pie.test", "/status/404").await.echo();
    assert_eq!(
        (e.backend.as_str(), e.header("x-code")),
        ("errors", Some("404"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_alias_from_to_www_and_service_upstream() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    // a Service with no EndpointSlice whose ClusterIP:port is the backend
    dir.write(
        "cip.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: cip, namespace: default}}\nspec: {{clusterIP: 127.0.0.1, ports: [{{name: http, port: {}}}]}}\n",
            b.port
        ),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new("site")
            .annotation(&nx("server-alias"), "alias.test, *.alias2.test")
            .annotation(&nx("from-to-www-redirect"), "true")
            .host("site.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "cip-ing.yaml",
        &Ingress::new("cip")
            .annotation(&nx("service-upstream"), "true")
            .rule(
                Some("cip.test"),
                vec![IngressPath::new("/", PREFIX, "cip").port_name("http")],
            )
            .to_yaml(),
    );
    let px = start(&dir, "site.test", "/", 200).await;
    assert_eq!(px.get("alias.test", "/").await.status, 200);
    assert_eq!(px.get("x.alias2.test", "/").await.status, 200);
    let r = px.get("www.site.test", "/a/b/?q=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("http://site.test:{}/a/b/?q=1", px.port)
    );
    let r = px.get("www.site.test", "/a/b/").await;
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("http://site.test:{}/a/b", px.port)
    );
    assert_eq!(px.get("cip.test", "/").await.echo().backend, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippets_are_refused_and_the_ingress_is_left_out() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "snip.yaml",
        &Ingress::new("snip")
            .annotation(&nx("configuration-snippet"), "more_set_headers \"X: y\";")
            .host("snip.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "ok.yaml",
        &Ingress::new("ok")
            .host("ok.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = start(&dir, "ok.test", "/", 200).await;
    assert_eq!(px.get("snip.test", "/").await.status, 404);
    assert!(
        px.wait_stderr_contains("AnnotationRiskTooHigh", Duration::from_secs(2))
            .await
    );
}

fn hdr<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_redirect_and_cookie_rewrites_touch_only_upstream_headers() {
    // a backend that redirects to its internal address and sets cookies for it
    let (port, _b) = support::raw::answering_backend(Duration::ZERO, |head| {
        if head.starts_with("GET /login") {
            "HTTP/1.1 302 Found\r\nLocation: http://internal:8080/home?x=1\r\n\
             Refresh: 3; url=http://internal:8080/later\r\n\
             Set-Cookie: sid=1; Domain=.Internal.svc; Path=/; HttpOnly\r\n\
             Set-Cookie: other=2; Domain=elsewhere.com; Path=/keep\r\n\
             Content-Length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 302 Found\r\nLocation: http://elsewhere/x\r\nContent-Length: 0\r\n\r\n"
        }
        .as_bytes()
        .to_vec()
    })
    .await;
    let dir = setup(
        &[port],
        Ingress::new("rw")
            .annotation(&nx("proxy-redirect-from"), "http://internal:8080/")
            .annotation(&nx("proxy-redirect-to"), "https://app.test/")
            .annotation(&nx("proxy-cookie-domain"), "internal.svc app.test")
            .annotation(&nx("proxy-cookie-path"), "/ /app/")
            .host("rw.test", &[("/", PREFIX, "svc")]),
    );
    dir.write(
        "moved.yaml",
        &Ingress::new("moved")
            .annotation(&nx("proxy-redirect-from"), "http://internal:8080/")
            .annotation(&nx("proxy-redirect-to"), "https://app.test/")
            .annotation(&nx("permanent-redirect"), "http://internal:8080/kept")
            .host("moved.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = start(&dir, "rw.test", "/other", 302).await;

    let r = px.get("rw.test", "/login").await;
    assert_eq!(r.status, 302);
    assert_eq!(hdr(&r, "location"), Some("https://app.test/home?x=1"));
    assert_eq!(hdr(&r, "refresh"), Some("3; url=https://app.test/later"));
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        [
            "sid=1; Domain=.app.test; Path=/app/; HttpOnly",
            // the path prefix matches whatever the domain
            "other=2; Domain=elsewhere.com; Path=/app/keep"
        ]
    );
    // a Location that does not start with the prefix is left alone
    let r = px.get("rw.test", "/other").await;
    assert_eq!(hdr(&r, "location"), Some("http://elsewhere/x"));
    // pingress's own redirect (permanent-redirect) is not an upstream response: unchanged
    px.wait_status("moved.test", "/", 301, STARTUP).await;
    let r = px.get("moved.test", "/").await;
    assert_eq!(hdr(&r, "location"), Some("http://internal:8080/kept"));
}

/// ConfigMap `proxy-redirect-from/-to`, `proxy-cookie-domain/-path` and
/// `preserve-trailing-slash` are the defaults of their annotations (ingress-nginx's
/// `defaults.Backend`): an Ingress without the annotation gets them, one with it (`off`
/// included) keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_defaults_of_rewrites_and_trailing_slash() {
    let (port, _b) = support::raw::answering_backend(Duration::ZERO, |_| {
        b"HTTP/1.1 302 Found\r\nLocation: http://internal:8080/home\r\n\
          Set-Cookie: sid=1; Domain=internal.svc; Path=/\r\nContent-Length: 0\r\n\r\n"
            .to_vec()
    })
    .await;
    let dir = setup(
        &[port],
        Ingress::new("plain").host("plain.test", &[("/", PREFIX, "svc")]),
    );
    dir.write(
        "more.yaml",
        &docs(&[
            controller_configmap(&[
                ("proxy-redirect-from", "http://internal:8080/"),
                ("proxy-redirect-to", "https://app.test/"),
                ("proxy-cookie-domain", "internal.svc app.test"),
                ("proxy-cookie-path", "/ /app/"),
                ("preserve-trailing-slash", "true"),
            ]),
            Ingress::new("own")
                .annotation(&nx("proxy-redirect-from"), "off")
                .annotation(&nx("proxy-cookie-path"), "off")
                .host("own.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
            Ingress::new("forced")
                .annotation(&nx("force-ssl-redirect"), "true")
                .host("forced.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
            Ingress::new("forced-own")
                .annotation(&nx("force-ssl-redirect"), "true")
                .annotation(&nx("preserve-trailing-slash"), "false")
                .host("forced-own.test", &[("/", PREFIX, "svc")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("plain.test", "/", 302, STARTUP).await;
    let r = px.get("plain.test", "/").await;
    assert_eq!(hdr(&r, "location"), Some("https://app.test/home"));
    assert_eq!(
        hdr(&r, "set-cookie"),
        Some("sid=1; Domain=app.test; Path=/app/")
    );
    let r = px.get("own.test", "/").await;
    assert_eq!(hdr(&r, "location"), Some("http://internal:8080/home"));
    assert_eq!(
        hdr(&r, "set-cookie"),
        Some("sid=1; Domain=app.test; Path=/"),
        "the annotation's off wins, the other key is the ConfigMap's"
    );
    let r = px.get("forced.test", "/a/b/").await;
    assert_eq!(hdr(&r, "location"), Some("https://forced.test/a/b/"));
    let r = px.get("forced-own.test", "/a/b/").await;
    assert_eq!(hdr(&r, "location"), Some("https://forced-own.test/a/b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rate_throttles_the_response_after_limit_rate_after() {
    // 100 KiB in one write, at once
    let (port, _b) = support::raw::answering_backend(Duration::ZERO, |_| {
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'x', 102400));
        resp
    })
    .await;
    let dir = setup(
        &[port],
        Ingress::new("slow")
            .annotation(&nx("limit-rate"), "20")
            .host("slow.test", &[("/", PREFIX, "svc")]),
    );
    dir.write(
        "free.yaml",
        &Ingress::new("free")
            .annotation(&nx("limit-rate"), "20")
            .annotation(&nx("limit-rate-after"), "100")
            .host("free.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = start(&dir, "free.test", "/", 200).await;
    // 100 KiB at 20 KiB/s with nginx's second of credit: about 4 s
    let t = Instant::now();
    let r = px.get("slow.test", "/").await;
    let took = t.elapsed();
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 102400));
    assert!(
        took >= Duration::from_millis(3600) && took < Duration::from_secs(8),
        "100 KiB at 20 KiB/s took {took:?}"
    );
    // the first 100 KiB are free
    let t = Instant::now();
    let r = px.get("free.test", "/").await;
    assert_eq!(r.body.len(), 102400);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
