//! CORS over real sockets (ingress-nginx e2e `annotations/cors.go`, translated): `*` answers
//! every request, explicit origins echo a matching Origin and otherwise add nothing, a
//! preflight is answered 204 before auth and limits, and the headers are on every status.

mod support;

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_star_origins_preflight_and_every_status() {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            service("empty"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\nstringData: {auth: \"u:{PLAIN}p\"}\n".to_string(),
        ]),
    );
    for i in [
        Ingress::new("star")
            .annotation(&nx("enable-cors"), "true")
            .host("star.test", &[("/", PREFIX, "app")]),
        Ingress::new("list")
            .annotation(&nx("enable-cors"), "true")
            .annotation(
                &nx("cors-allow-origin"),
                "https://app.example.com, https://*.example.org",
            )
            .annotation(&nx("cors-expose-headers"), "X-Total")
            .annotation(&nx("cors-allow-credentials"), "false")
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "users")
            .host("list.test", &[("/", PREFIX, "app")]),
        Ingress::new("down")
            .annotation(&nx("enable-cors"), "true")
            .host("down.test", &[("/", PREFIX, "empty")]),
    ] {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("star.test", "/", 200, STARTUP).await;

    // `*`: every request, Origin or not
    let r = px.get("star.test", "/").await;
    assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "*");
    assert_eq!(
        r.headers.get("access-control-allow-credentials").unwrap(),
        "true"
    );
    assert_eq!(
        r.headers.get("access-control-allow-methods").unwrap(),
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(r.headers.get("access-control-max-age").unwrap(), "1728000");
    assert!(r.headers.get("access-control-expose-headers").is_none());
    let before = app.requests();
    let r = px
        .request(Method::OPTIONS, "star.test", "/x", &[], vec![])
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers.get("content-length").unwrap(), "0");
    assert_eq!(app.requests(), before, "a preflight reached the app");

    // explicit origins: echoed when they match, nothing otherwise; preflight before auth
    let origin = |o: &'static str| vec![("Origin", o)];
    let r = px
        .request(
            Method::OPTIONS,
            "list.test",
            "/api",
            &origin("https://a-b.example.org"),
            vec![],
        )
        .await;
    assert_eq!(r.status, 204, "preflight answered before basic auth");
    assert_eq!(
        r.headers.get("access-control-allow-origin").unwrap(),
        "https://a-b.example.org"
    );
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    assert_eq!(
        r.headers.get("access-control-expose-headers").unwrap(),
        "X-Total"
    );
    // the 401 of basic auth still carries the CORS headers
    let r = px
        .request(
            Method::GET,
            "list.test",
            "/api",
            &origin("https://app.example.com"),
            vec![],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers.get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    // a foreign origin: no CORS headers, and its OPTIONS is not a preflight (auth answers)
    let r = px
        .request(
            Method::OPTIONS,
            "list.test",
            "/api",
            &origin("https://evil.test"),
            vec![],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = px
        .request(
            Method::GET,
            "list.test",
            "/api",
            &[
                ("Origin", "https://app.example.com"),
                ("Authorization", "Basic dTpw"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );

    // an error pingress answers itself (no endpoints) carries them too
    let r = px.get("down.test", "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "*");
}
