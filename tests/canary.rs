//! Canary Ingresses over real sockets (ingress-nginx e2e `annotations/canary.go`, the rules of
//! balancer.lua `route_to_alternative_balancer`): header, cookie and weight, the canary merged
//! onto every route of the primary's Service, no routes of its own, one canary per upstream.

mod support;

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

struct Setup {
    px: Pingress,
    _backends: Vec<EchoBackend>,
    _dir: ManifestDir,
}

/// `prod` and `canary` Services; the primary Ingress `main.test/` -> prod, an older canary
/// Ingress with `annotations` -> canary, and `other.test/` -> prod in a third Ingress.
async fn setup(annotations: &[(&str, &str)]) -> Setup {
    let prod = EchoBackend::start("prod").await;
    let canary = EchoBackend::start("canary").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "svc.yaml",
        &docs(&[
            backend_set("prod", &[prod.port]),
            backend_set("canary", &[canary.port]),
        ]),
    );
    let mut c = Ingress::new("main-canary")
        .created("2020-01-01T00:00:00Z")
        .annotation(&nx("canary"), "true");
    for (k, v) in annotations {
        c = c.annotation(&nx(k), v);
    }
    dir.write(
        "canary.yaml",
        &c.host("main.test", &[("/", PREFIX, "canary")]).to_yaml(),
    );
    dir.write(
        "main.yaml",
        &Ingress::new("main")
            .created("2021-01-01T00:00:00Z")
            .host("main.test", &[("/", PREFIX, "prod")])
            .to_yaml(),
    );
    dir.write(
        "other.yaml",
        &Ingress::new("other")
            .host("other.test", &[("/", PREFIX, "prod")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("main.test", "/", 200, STARTUP).await;
    Setup {
        px,
        _backends: vec![prod, canary],
        _dir: dir,
    }
}

async fn who(px: &Pingress, host: &str, headers: &[(&str, &str)]) -> String {
    let r = px
        .request(Method::GET, host, "/", headers, Vec::new())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.backend().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_cookie_keywords_route_and_the_canary_covers_every_route_of_the_service() {
    let s = setup(&[
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "beta"),
    ])
    .await;
    let px = &s.px;
    assert_eq!(who(px, "main.test", &[]).await, "prod");
    assert_eq!(
        who(px, "main.test", &[("X-Canary", "always")]).await,
        "canary"
    );
    assert_eq!(
        who(
            px,
            "main.test",
            &[("X-Canary", "never"), ("Cookie", "beta=always")]
        )
        .await,
        "prod"
    );
    assert_eq!(
        who(
            px,
            "main.test",
            &[("X-Canary", "other"), ("Cookie", "beta=always")]
        )
        .await,
        "canary"
    );
    assert_eq!(
        who(px, "main.test", &[("Cookie", "a=b; beta=never")]).await,
        "prod"
    );
    // another host whose route uses the primary Service gets the canary too
    assert_eq!(
        who(px, "other.test", &[("X-Canary", "always")]).await,
        "canary"
    );
    // the older canary Ingress took no path of its own: no PathConflict for the primary
    assert!(!px.stderr().contains("PathConflict"), "{}", px.stderr());
    // metrics: the primary's service, the canary upstream in `canary`
    let m = px.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("nginx_ingress_controller_requests{")
                && l.contains("canary=\"default-canary-80\"")
                && l.contains("service=\"prod\"")),
        "{m}"
    );
    // access log: the primary's upstream, then the canary that served (ingress-nginx's
    // [$proxy_upstream_name] [$proxy_alternative_upstream_name])
    let logged = wait_until(STARTUP, || async {
        px.stdout()
            .contains("[default-prod-80] [default-canary-80]")
    })
    .await;
    assert!(logged.is_some(), "{}", px.stdout());
    assert!(
        px.stdout().contains("[default-prod-80] [] "),
        "{}",
        px.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_value_and_pattern() {
    let s = setup(&[
        ("canary-by-header", "X-Canary"),
        ("canary-by-header-value", "yes"),
    ])
    .await;
    assert_eq!(
        who(&s.px, "main.test", &[("X-Canary", "yes")]).await,
        "canary"
    );
    // with a value, `always` is just another value: weight 0 keeps the primary
    assert_eq!(
        who(&s.px, "main.test", &[("X-Canary", "always")]).await,
        "prod"
    );
    let s = setup(&[
        ("canary-by-header", "X-Canary"),
        ("canary-by-header-pattern", "^(beta|rc)"),
    ])
    .await;
    assert_eq!(
        who(&s.px, "main.test", &[("X-Canary", "rc-2")]).await,
        "canary"
    );
    assert_eq!(
        who(&s.px, "main.test", &[("X-Canary", "stable")]).await,
        "prod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_0_100_and_30_of_1000() {
    let s = setup(&[("canary-weight", "0")]).await;
    for _ in 0..100 {
        assert_eq!(who(&s.px, "main.test", &[]).await, "prod");
    }
    let s = setup(&[("canary-weight", "100")]).await;
    for _ in 0..100 {
        assert_eq!(who(&s.px, "main.test", &[]).await, "canary");
    }
    let s = setup(&[("canary-weight", "30")]).await;
    let mut canary = 0;
    for _ in 0..1000 {
        if who(&s.px, "main.test", &[]).await == "canary" {
            canary += 1;
        }
    }
    // binomial(1000, 0.3): mean 300, sd 14.5; 5 sd either side
    assert!((227..=373).contains(&canary), "{canary} of 1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_primary_is_not_served_and_a_second_canary_is_ignored() {
    let s = setup(&[("canary-by-header", "X-Canary")]).await;
    s._dir.write(
        "lonely.yaml",
        &Ingress::new("lonely")
            .annotation(&nx("canary"), "true")
            .host("lonely.test", &[("/", PREFIX, "canary")])
            .to_yaml(),
    );
    s._dir.write(
        "second.yaml",
        &Ingress::new("second-canary")
            .created("2022-01-01T00:00:00Z")
            .annotation(&nx("canary"), "true")
            .annotation(&nx("canary-weight"), "100")
            .host("main.test", &[("/", PREFIX, "canary")])
            .to_yaml(),
    );
    assert!(
        s.px.wait_stderr_contains("CanaryWithoutPrimary", RELOAD * 5)
            .await,
        "{}",
        s.px.stderr()
    );
    assert!(s.px.wait_stderr_contains("CanaryIgnored", RELOAD).await);
    assert_eq!(s.px.get("lonely.test", "/").await.status, 404);
    // the first canary's rules still apply (weight 0): the second's weight 100 is not used
    assert_eq!(who(&s.px, "main.test", &[]).await, "prod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_upstream_balances_by_its_own_upstream_hash_by() {
    let prod = EchoBackend::start("prod").await;
    let canaries = [
        EchoBackend::start("c0").await,
        EchoBackend::start("c1").await,
        EchoBackend::start("c2").await,
    ];
    let dir = ManifestDir::with_class();
    dir.write(
        "svc.yaml",
        &docs(&[
            backend_set("prod", &[prod.port]),
            backend_set(
                "canary",
                &canaries.iter().map(|b| b.port).collect::<Vec<_>>(),
            ),
        ]),
    );
    dir.write(
        "canary.yaml",
        &Ingress::new("main-canary")
            .annotation(&nx("canary"), "true")
            .annotation(&nx("canary-weight"), "100")
            .annotation(&nx("upstream-hash-by"), "$arg_user")
            .host("main.test", &[("/", PREFIX, "canary")])
            .to_yaml(),
    );
    dir.write(
        "main.yaml",
        &Ingress::new("main")
            .host("main.test", &[("/", PREFIX, "prod")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("main.test", "/", 200, STARTUP).await;
    let mut owner = std::collections::BTreeMap::new();
    for round in 0..3 {
        for user in 0..10 {
            let r = px.get("main.test", &format!("/?user=u{user}")).await;
            let b = r.backend().unwrap();
            assert!(
                b.starts_with('c'),
                "weight 100 sends every request to the canary"
            );
            let first = owner.entry(user).or_insert_with(|| b.clone());
            assert_eq!(*first, b, "user u{user} moved on round {round}");
        }
    }
}

/// `prod` (2 endpoints, cookie affinity on the primary) and `canary` (2 endpoints) at weight
/// 50; the canary Ingress's own annotations `extra`.
async fn sticky_setup(extra: &[(&str, &str)]) -> (Pingress, Vec<EchoBackend>, ManifestDir) {
    let backends = vec![
        EchoBackend::start("prod-0").await,
        EchoBackend::start("prod-1").await,
        EchoBackend::start("canary-0").await,
        EchoBackend::start("canary-1").await,
    ];
    let dir = ManifestDir::with_class();
    dir.write(
        "svc.yaml",
        &docs(&[
            backend_set("prod", &[backends[0].port, backends[1].port]),
            backend_set("canary", &[backends[2].port, backends[3].port]),
        ]),
    );
    let mut c = Ingress::new("main-canary")
        .annotation(&nx("canary"), "true")
        .annotation(&nx("canary-weight"), "50");
    for (k, v) in extra {
        c = c.annotation(&nx(k), v);
    }
    dir.write(
        "canary.yaml",
        &c.host("main.test", &[("/", PREFIX, "canary")]).to_yaml(),
    );
    dir.write(
        "main.yaml",
        &Ingress::new("main")
            .annotation(&nx("affinity"), "cookie")
            .host("main.test", &[("/", PREFIX, "prod")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("main.test", "/", 200, STARTUP).await;
    (px, backends, dir)
}

/// The `INGRESSCOOKIE=...` pair of a response's Set-Cookie, if any.
fn session_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .filter(|p| p.starts_with("INGRESSCOOKIE="))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sent_to_the_canary_stays_there_and_one_on_the_primary_stays_there() {
    let (px, _b, _d) = sticky_setup(&[]).await;
    let mut seen = std::collections::BTreeSet::new();
    for session in 0..16 {
        let first = px.get("main.test", "/").await;
        let served = first.backend().unwrap();
        let cookie = session_cookie(&first)
            .unwrap_or_else(|| panic!("session {session}: no cookie from {served}"));
        seen.insert(served.split('-').next().unwrap().to_string());
        for _ in 0..8 {
            let again = px
                .request(
                    Method::GET,
                    "main.test",
                    "/",
                    &[("Cookie", &cookie)],
                    Vec::new(),
                )
                .await;
            assert_eq!(
                again.backend().unwrap(),
                served,
                "session {session} with {cookie} moved"
            );
            assert!(session_cookie(&again).is_none(), "the cookie is set once");
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["canary".to_string(), "prod".to_string()],
        "weight 50 over 16 sessions reaches both upstreams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_canary_behavior_keeps_no_session_on_a_canary_without_its_own_affinity() {
    let (px, _b, _d) = sticky_setup(&[("affinity-canary-behavior", "legacy")]).await;
    let (mut canary_first, mut moved) = (0, 0);
    for _ in 0..16 {
        let first = px.get("main.test", "/").await;
        let served = first.backend().unwrap();
        if served.starts_with("prod") {
            // the primary's cookie keeps the primary
            let cookie = session_cookie(&first).expect("the primary sets its cookie");
            for _ in 0..4 {
                let again = px
                    .request(
                        Method::GET,
                        "main.test",
                        "/",
                        &[("Cookie", &cookie)],
                        Vec::new(),
                    )
                    .await;
                assert_eq!(again.backend().unwrap(), served);
            }
            continue;
        }
        canary_first += 1;
        assert!(
            session_cookie(&first).is_none(),
            "a legacy canary without affinity sets no cookie"
        );
        // nothing keeps the client there: the weight decides each request
        for _ in 0..8 {
            if px
                .get("main.test", "/")
                .await
                .backend()
                .unwrap()
                .starts_with("prod")
            {
                moved += 1;
                break;
            }
        }
    }
    assert!(canary_first > 0, "weight 50 reached the canary");
    assert!(moved > 0, "legacy sessions on the canary are re-decided");
}
