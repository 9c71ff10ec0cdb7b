//! Fail safe over real sockets: an annotation pingress does not implement yet never opens an
//! app (security keys answer 503, the backend sees nothing) and never moves traffic (a canary
//! Ingress is left out and its primary keeps all of it), while cosmetic keys still serve.

mod support;

use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_keys_fail_closed_and_the_backend_receives_nothing() {
    let protected = EchoBackend::start("protected").await;
    let open = EchoBackend::start("open").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("protected", &[protected.port]),
            backend_set("open", &[open.port]),
        ]),
    );
    let ingresses = [
        // an auth value pingress cannot honour (a variable outside the supported set)
        Ingress::new("oauth2")
            .annotation(
                &nx("auth-url"),
                "http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth?x=$lua_var",
            )
            .annotation(&nx("auth-signin"), "https://auth.example.com/oauth2/start")
            .host("oauth2.test", &[("/", PREFIX, "protected")]),
        // basic auth whose Secret does not exist
        Ingress::new("basic")
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "basic-auth")
            .annotation(&nx("auth-realm"), "Authentication Required")
            .host("basic.test", &[("/", PREFIX, "protected")]),
        // an empty auth-url is still a security key: closed, not open
        Ingress::new("empty")
            .annotation(&nx("auth-url"), "")
            .host("empty.test", &[("/", PREFIX, "protected")]),
        // not implemented yet: digest auth
        Ingress::new("digest")
            .annotation(&nx("auth-type"), "digest")
            .annotation(&nx("auth-secret"), "basic-auth")
            .host("digest.test", &[("/", PREFIX, "protected")]),
        // client certificates whose CA Secret does not exist (no spec.tls either)
        Ingress::new("clientcert")
            .annotation(&nx("auth-tls-secret"), "default/ca")
            .annotation(&nx("auth-tls-verify-client"), "on")
            .host("mtls.test", &[("/", PREFIX, "protected")]),
        // redirects still answer before the access phase
        Ingress::new("redirect")
            .annotation(&nx("auth-url"), "http://auth.svc/verify")
            .annotation(&nx("force-ssl-redirect"), "true")
            .host("redirect.test", &[("/", PREFIX, "protected")]),
        // a cosmetic key is ignored with a warning and still serves
        Ingress::new("cosmetic")
            .annotation(&nx("proxy-buffering"), "on")
            .annotation(&nx("limit-rate"), "1024")
            .host("cosmetic.test", &[("/", PREFIX, "open")]),
    ];
    for ing in &ingresses {
        dir.write(&format!("{}.yaml", ing.name()), &ing.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("cosmetic.test", "/", 200, STARTUP).await;
    for host in [
        "oauth2.test",
        "basic.test",
        "empty.test",
        "mtls.test",
        "digest.test",
    ] {
        for path in ["/", "/admin", "/api/v1/users?x=1"] {
            let r = px.get(host, path).await;
            assert_eq!(r.status, 503, "{host}{path}: {}", r.text());
        }
    }
    let r = px.get("redirect.test", "/x?y=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://redirect.test/x?y=1"
    );
    assert_eq!(
        protected.requests(),
        0,
        "a fail-closed route reached its backend"
    );
    let r = px.get("cosmetic.test", "/").await;
    assert_eq!(r.backend().as_deref(), Some("open"));
    let log = px.stderr();
    assert!(
        log.contains("InvalidAuthAnnotation")
            && log.contains("$lua_var")
            && log.contains("AuthTLSSecretInvalid")
            && log.contains("AnnotationFailClosed")
            && log.contains("digest"),
        "{log}"
    );
    assert!(log.contains("AnnotationNotImplemented") && log.contains("proxy-buffering"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_only_what_its_rules_give_whatever_the_order() {
    let primary = EchoBackend::start("primary").await;
    let canary = EchoBackend::start("canary").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("primary", &[primary.port]),
            backend_set("canary", &[canary.port]),
        ]),
    );
    const OLD: &str = "2026-01-01T00:00:00Z";
    const NEW: &str = "2026-06-01T00:00:00Z";
    // (host, primary name, canary name, primary created, canary created, canary keys)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
    );
    let cases: [Case; 5] = [
        (
            "c0.test",
            "a-main",
            "b-canary",
            OLD,
            NEW,
            &[("canary-weight", "0")],
        ),
        (
            "c1.test",
            "b-main",
            "a-canary",
            OLD,
            NEW,
            &[("canary-by-header", "X-Canary")],
        ),
        (
            "c2.test",
            "a-main2",
            "b-canary2",
            NEW,
            OLD,
            &[("canary-by-header", "X-Canary")],
        ),
        (
            "c3.test",
            "b-main3",
            "a-canary3",
            NEW,
            OLD,
            &[("canary-by-cookie", "c")],
        ),
        // no timestamps at all: the name order alone would decide a conflict
        (
            "c4.test",
            "main",
            "canary",
            "",
            "",
            &[("canary-by-cookie", "c")],
        ),
    ];
    for (i, (host, pname, cname, pat, cat, keys)) in cases.iter().enumerate() {
        // a canary attaches to its primary's Service: one Service per case
        let svc = format!("primary{i}");
        dir.write(&format!("{svc}.yaml"), &backend_set(&svc, &[primary.port]));
        let mut p = Ingress::new(pname).host(host, &[("/", PREFIX, &svc)]);
        let mut c = Ingress::new(cname)
            .annotation(&nx("canary"), "true")
            .host(host, &[("/", PREFIX, "canary")]);
        for (k, v) in keys.iter() {
            c = c.annotation(&nx(k), v);
        }
        if !pat.is_empty() {
            p = p.created(pat);
            c = c.created(cat);
        }
        dir.write(&format!("{pname}.yaml"), &p.to_yaml());
        dir.write(&format!("{cname}.yaml"), &c.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    for (host, _, _, _, _, keys) in cases {
        px.wait_status(host, "/", 200, STARTUP).await;
        // without the canary's header or cookie, the primary: a canary is never a path owner
        for i in 0..ROUNDS {
            let r = px.get(host, &format!("/p{i}")).await;
            assert_eq!(r.backend().as_deref(), Some("primary"), "{host}");
        }
        let by_request = keys.iter().any(|(k, _)| k.starts_with("canary-by-"));
        let r = px
            .request(
                reqwest::Method::GET,
                host,
                "/",
                &[("X-Canary", "always"), ("Cookie", "c=always")],
                Vec::new(),
            )
            .await;
        let want = if by_request { "canary" } else { "primary" };
        assert_eq!(r.backend().as_deref(), Some(want), "{host}");
    }
    assert!(canary.requests() > 0);
    let log = px.stderr();
    assert!(!log.contains("PathConflict"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_auth_that_cannot_be_honoured_fails_closed_exactly_where_it_would_apply() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc", &[b.port]),
            controller_configmap(&[
                ("global-auth-url", "http://auth.auth.svc/verify"),
                ("global-auth-signin", "https://auth.example.com/start"),
                // never executed: the global auth fails closed
                ("global-auth-snippet", "proxy_set_header X-Org acme;"),
                ("no-auth-locations", "/.well-known/acme-challenge,/public"),
            ]),
        ]),
    );
    dir.write(
        "covered.yaml",
        &Ingress::new("covered")
            .host(
                "app.test",
                &[
                    ("/", PREFIX, "svc"),
                    ("/public", PREFIX, "svc"),
                    ("/.well-known/acme-challenge", PREFIX, "svc"),
                ],
            )
            .to_yaml(),
    );
    dir.write(
        "optout.yaml",
        &Ingress::new("optout")
            .annotation(&nx("enable-global-auth"), "false")
            .host("optout.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    // an Ingress with its own (not implemented) auth stays closed even under no-auth paths
    dir.write(
        "own.yaml",
        &Ingress::new("own")
            .annotation(&nx("auth-type"), "digest")
            .annotation(&nx("enable-global-auth"), "false")
            .host("own.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("optout.test", "/", 200, STARTUP).await;
    for path in ["/", "/private", "/publicity/x"] {
        assert_eq!(px.get("app.test", path).await.status, 503, "{path}");
    }
    let before = b.requests();
    for path in ["/public/a", "/.well-known/acme-challenge/token"] {
        assert_eq!(px.get("app.test", path).await.status, 200, "{path}");
    }
    assert_eq!(b.requests(), before + 2);
    assert_eq!(px.get("own.test", "/").await.status, 503);
    // unknown host: the controller default backend is not covered (404, as ingress-nginx)
    assert_eq!(px.get("nowhere.test", "/").await.status, 404);

    assert!(px.stderr().contains("GlobalAuthFailClosed"));
}
