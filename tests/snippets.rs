//! `configuration-snippet` and `server-snippet` over real sockets: what the client and the
//! backend see for each directive of the supported subset, the gate (ingress-nginx's
//! `allow-snippet-annotations` + `annotations-risk-level: Critical`), and a snippet outside the
//! subset leaving its Ingress out while the others keep serving.

mod support;

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

const ALLOW: [(&str, &str); 2] = [
    ("allow-snippet-annotations", "true"),
    ("annotations-risk-level", "Critical"),
];

/// pingress over a folder holding `objects` (and the controller ConfigMap flag).
async fn serve(objects: &[String]) -> (ManifestDir, Pingress) {
    let dir = ManifestDir::with_class();
    dir.write("all.yaml", &docs(objects));
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    (dir, px)
}

fn snippet(name: &str, host: &str, text: &str) -> Ingress {
    Ingress::new(name)
        .annotation(&nx("configuration-snippet"), text)
        .host(host, &[("/", PREFIX, "app")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_snippet_directives() {
    let app = EchoBackend::start("app").await;
    let mut docs_ = vec![
        backend_set("app", &[app.port]),
        controller_configmap(&ALLOW),
    ];
    for i in [
        snippet(
            "headers",
            "headers.test",
            "more_set_headers \"X-Frame-Options: DENY\" 'X-Host: $host';\n\
             more_set_headers -s 404 'X-Only-404: yes';\n\
             add_header X-Added yes;\n\
             add_header X-Always yes always;\n\
             more_clear_headers 'X-Echo-*';\n\
             proxy_set_header X-To-Backend \"$http_x_in-$arg_q\";\n\
             more_set_input_headers 'X-Input: set';\n\
             more_clear_input_headers X-Secret;",
        ),
        snippet(
            "ret",
            "ret.test",
            "if ($http_x_block = yes) { return 403; }\n\
             expires 1h;",
        ),
        snippet(
            "text",
            "text.test",
            "default_type text/plain;\nreturn 200 \"hello $arg_name\";",
        ),
        snippet(
            "moved",
            "moved.test",
            "rewrite ^/old/(.*)$ /new/$1 permanent;\n\
             if ($uri = /gone) { return 301 /elsewhere; }\n\
             rewrite ^/api/(.*)$ /v2/$1 break;",
        ),
        snippet(
            "vars",
            "vars.test",
            "set $tier stable;\n\
             if ($cookie_beta = 1) { set $tier beta; }\n\
             more_set_headers 'X-Tier: $tier';\n\
             proxy_set_header X-Tier $tier;\n\
             more_set_headers 'X-Req: $req_id' 'X-Where: $namespace/$ingress_name$location_path $service_name:$service_port';",
        ),
        snippet("deny", "deny.test", "deny 127.0.0.1;\nallow all;"),
        snippet("hide", "hide.test", "proxy_hide_header X-Echo-Backend;"),
        snippet(
            "nested",
            "nested.test",
            "location /metrics { deny all; }\nlocation = /ping { return 200 \"pong\"; }\nmore_set_headers 'X-Outer: 1';",
        ),
        snippet(
            "realip",
            "realip.test",
            "real_ip_header X-Client;\nset_real_ip_from 127.0.0.1;\ndeny 10.1.2.3;",
        ),
    ] {
        docs_.push(i.to_yaml());
    }
    // the `ret` snippet holds a directive outside the subset: left out whole
    let (_dir, px) = serve(&docs_).await;
    px.wait_status("headers.test", "/", 200, STARTUP).await;

    let r = px
        .request(
            Method::GET,
            "headers.test",
            "/p?q=7",
            &[("X-In", "a"), ("X-Secret", "s")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-host"], "headers.test");
    assert_eq!(r.headers["x-added"], "yes");
    assert_eq!(r.headers["x-always"], "yes");
    assert!(r.headers.get("x-only-404").is_none());
    assert!(
        r.headers.get("x-echo-backend").is_none(),
        "more_clear_headers X-Echo-*"
    );
    let e = r.echo();
    assert_eq!(e.header("x-to-backend"), Some("a-7"));
    assert_eq!(e.header("x-input"), Some("set"));
    assert_eq!(e.header("x-secret"), None);
    // a 404 from the backend: -s 404 applies, add_header without `always` does not
    let r = px.get("headers.test", "/p?status=404").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-only-404"], "yes");
    assert!(r.headers.get("x-added").is_none());
    assert_eq!(r.headers["x-always"], "yes");

    // a refused snippet leaves its Ingress out: the host falls to the default backend
    let r = px.get("ret.test", "/").await;
    assert_eq!(r.status, 404);
    assert!(r.backend().is_none());

    let r = px.get("text.test", "/?name=bob").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello bob"));
    assert_eq!(r.headers["content-type"], "text/plain");

    let r = px.get("moved.test", "/old/a?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "http://moved.test/new/a?x=1");
    let r = px.get("moved.test", "/gone").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "http://moved.test/elsewhere");
    let r = px.get("moved.test", "/api/users?id=3").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().path, "/v2/users?id=3");

    let r = px
        .request(
            Method::GET,
            "vars.test",
            "/",
            &[("Cookie", "beta=1")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.headers["x-tier"], "beta");
    assert_eq!(r.echo().header("x-tier"), Some("beta"));
    let r = px.get("vars.test", "/").await;
    assert_eq!(r.headers["x-tier"], "stable");
    assert_eq!(r.headers["x-where"], "default/vars/ app:80");
    // $req_id: the generated id, the same the backend gets as X-Request-ID
    let id = r.headers["x-req"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(r.echo().header("x-request-id"), Some(id.as_str()));
    let r = px
        .request(
            Method::GET,
            "vars.test",
            "/",
            &[("X-Request-ID", "abc")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.headers["x-req"], "abc");

    // the test client is 127.0.0.1
    assert_eq!(px.get("deny.test", "/").await.status, 403);

    let r = px.get("hide.test", "/").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("x-echo-backend").is_none());

    // locations nested in the Ingress's location: the rest of it still goes to the backend
    assert_eq!(px.get("nested.test", "/metrics/x").await.status, 403);
    let r = px.get("nested.test", "/ping").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "pong"));
    let r = px.get("nested.test", "/other").await;
    assert_eq!(
        (r.status.as_u16(), r.backend().as_deref()),
        (200, Some("app"))
    );
    assert_eq!(r.headers["x-outer"], "1");

    // the location's client address from X-Client, believed from 127.0.0.1
    for (client, status) in [
        (Some("10.1.2.3"), 403),
        (Some("10.9.9.9"), 200),
        (None, 200),
    ] {
        let headers: Vec<(&str, &str)> = client.map(|c| ("X-Client", c)).into_iter().collect();
        let r = px
            .request(Method::GET, "realip.test", "/", &headers, Vec::new())
            .await;
        assert_eq!(r.status, status, "X-Client {client:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_conditions_return_before_the_backend() {
    let app = EchoBackend::start("app").await;
    let (_dir, px) = serve(&[
        backend_set("app", &[app.port]),
        controller_configmap(&ALLOW),
        snippet(
            "guard",
            "guard.test",
            "if ($http_user_agent ~* \"(bot|crawler)\") { return 403; }\n\
                 if ($request_method = POST) { return 405 \"no posts\"; }\n\
                 if ($arg_drop) { return 444; }",
        )
        .to_yaml(),
    ])
    .await;
    px.wait_status("guard.test", "/", 200, STARTUP).await;
    let before = app.requests();
    let r = px
        .request(
            Method::GET,
            "guard.test",
            "/",
            &[("User-Agent", "GoogleBot/2")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = px
        .request(Method::POST, "guard.test", "/", &[], b"x".to_vec())
        .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (405, "no posts"));
    // 444: the connection closes without an answer
    let mut raw = support::raw::RawConn::connect(px.port).await;
    let e = raw.get("guard.test", "/?drop=1").await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(app.requests(), before, "no request reached the backend");
    assert_eq!(px.get("guard.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_snippet_locations_and_every_path() {
    let app = EchoBackend::start("app").await;
    let api = EchoBackend::start("api").await;
    let server = "more_set_headers 'X-Server: on';\n\
        server_tokens on;\n\
        client_max_body_size 1k;\n\
        location = /robots.txt { default_type text/plain; return 200 \"User-agent: *\\nDisallow: /\"; }\n\
        location ~* ^/admin { deny all; }\n\
        location /internal/ { allow 10.0.0.0/8; deny all; }\n\
        location /empty/ { }\n\
        location /legacy/ { rewrite ^/legacy/(.*)$ /api/$1 last; }";
    let (_dir, px) = serve(&[
        backend_set("app", &[app.port]),
        backend_set("api", &[api.port]),
        controller_configmap(&ALLOW),
        Ingress::new("site")
            .annotation(&nx("server-snippet"), server)
            .host(
                "site.test",
                &[("/", PREFIX, "app"), ("/api", PREFIX, "api")],
            )
            .to_yaml(),
    ])
    .await;
    px.wait_status("site.test", "/", 200, STARTUP).await;
    for (path, backend) in [("/", "app"), ("/api/x", "api")] {
        let r = px.get("site.test", path).await;
        assert_eq!(r.backend().as_deref(), Some(backend), "{path}");
        assert_eq!(
            r.headers["x-server"], "on",
            "server snippet on every path: {path}"
        );
    }
    let r = px.get("site.test", "/robots.txt").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "User-agent: *\nDisallow: /");
    assert_eq!(r.headers["content-type"], "text/plain");
    // a regex location beats the Ingress's prefix `/`
    assert_eq!(px.get("site.test", "/ADMIN/panel").await.status, 403);
    assert_eq!(px.get("site.test", "/internal/x").await.status, 403);
    assert_eq!(px.get("site.test", "/empty/x").await.status, 404);
    // `last` searches the locations again: the Ingress's /api path answers
    let r = px.get("site.test", "/legacy/users?id=1").await;
    assert_eq!(r.backend().as_deref(), Some("api"));
    assert_eq!(r.echo().path, "/api/users?id=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_pass_header_server_passes_the_backends_server() {
    let (port, _task) = support::raw::answering_backend(std::time::Duration::ZERO, |_| {
        b"HTTP/1.1 200 OK\r\nServer: backend/1.0\r\nContent-Length: 2\r\n\r\nok".to_vec()
    })
    .await;
    let (_dir, px) = serve(&[
        backend_set("raw", &[port]),
        controller_configmap(&ALLOW),
        Ingress::new("pass")
            .annotation(&nx("configuration-snippet"), "proxy_pass_header Server;")
            .host("pass.test", &[("/", PREFIX, "raw")])
            .to_yaml(),
        Ingress::new("hidden")
            .host("hidden.test", &[("/", PREFIX, "raw")])
            .to_yaml(),
    ])
    .await;
    px.wait_status("pass.test", "/", 200, STARTUP).await;
    assert_eq!(
        px.get("pass.test", "/").await.headers["server"],
        "backend/1.0"
    );
    px.wait_status("hidden.test", "/", 200, STARTUP).await;
    assert!(px
        .get("hidden.test", "/")
        .await
        .headers
        .get("server")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippets_are_refused_unless_the_configmap_allows_them() {
    let app = EchoBackend::start("app").await;
    let (dir, px) = serve(&[
        backend_set("app", &[app.port]),
        Ingress::new("plain")
            .host("plain.test", &[("/", PREFIX, "app")])
            .to_yaml(),
        snippet("snip", "snip.test", "more_set_headers 'X-A: 1';").to_yaml(),
    ])
    .await;
    px.wait_status("plain.test", "/", 200, STARTUP).await;
    assert_eq!(
        px.get("snip.test", "/").await.status,
        404,
        "left out by default"
    );
    // allowed by the ConfigMap: served, without a restart
    dir.write("cm.yaml", &controller_configmap(&ALLOW));
    px.wait_status("snip.test", "/", 200, STARTUP).await;
    assert_eq!(px.get("snip.test", "/").await.headers["x-a"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_server_and_location_snippets_apply_everywhere() {
    let app = EchoBackend::start("app").await;
    let (_dir, px) = serve(&[
        backend_set("app", &[app.port]),
        // the operator's snippets run without allow-snippet-annotations, as in ingress-nginx
        controller_configmap(&[
            (
                "server-snippet",
                "more_set_headers 'X-Global: 1';\nlocation = /ping { return 200 \"pong\"; }",
            ),
            ("location-snippet", "proxy_set_header X-From-Cm $host;"),
        ]),
        Ingress::new("a")
            .host("a.test", &[("/", PREFIX, "app")])
            .to_yaml(),
        Ingress::new("b")
            .host("b.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    ])
    .await;
    px.wait_status("a.test", "/", 200, STARTUP).await;
    for host in ["a.test", "b.test"] {
        let r = px.get(host, "/x").await;
        assert_eq!(r.headers["x-global"], "1", "{host}");
        assert_eq!(r.echo().header("x-from-cm"), Some(host));
        let r = px.get(host, "/ping").await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "pong"));
    }
}
