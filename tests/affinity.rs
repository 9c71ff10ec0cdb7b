//! Cookie affinity over real sockets (ingress-nginx e2e `annotations/affinity.go`,
//! `affinitymode.go`; balancer `sticky*.lua`): a new session gets `INGRESSCOOKIE` and stays on
//! its endpoint, the cookie is set only on the locations that asked, balanced mode moves few
//! sessions when the Service scales, persistent mode keeps them while their endpoint exists.

mod support;

use std::collections::BTreeMap;

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

async fn get(px: &Pingress, host: &str, path: &str, cookie: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let r = px
        .request(Method::GET, host, path, &headers, Vec::new())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn cookie_of(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("INGRESSCOOKIE="))
        .map(str::to_string)
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stick_and_the_cookie_is_set_where_affinity_was_asked() {
    let backends = [
        EchoBackend::start("e0").await,
        EchoBackend::start("e1").await,
        EchoBackend::start("e2").await,
    ];
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let dir = ManifestDir::with_class();
    dir.write("svc.yaml", &backend_set("app", &ports));
    dir.write(
        "sticky.yaml",
        &Ingress::new("sticky")
            .annotation(&nx("affinity"), "cookie")
            .annotation(&nx("session-cookie-max-age"), "172800")
            .host("sticky.test", &[("/app", PREFIX, "app")])
            .to_yaml(),
    );
    dir.write(
        "plain.yaml",
        &Ingress::new("plain")
            .host("sticky.test", &[("/plain", PREFIX, "app")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("sticky.test", "/app", 200, STARTUP).await;

    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let first = get(&px, "sticky.test", "/app", None).await;
        let c = cookie_of(&first).expect("a new session gets the cookie");
        assert!(
            c.contains("; Max-Age=172800; Path=/app; HttpOnly") && !c.contains("Secure"),
            "{c}"
        );
        let who = first.backend().unwrap();
        *seen.entry(who.clone()).or_insert(0) += 1;
        // the session sticks, and no new cookie is sent
        for _ in 0..5 {
            let again = get(&px, "sticky.test", "/app/x", Some(&pair(&c))).await;
            assert_eq!(again.backend().unwrap(), who);
            assert!(cookie_of(&again).is_none());
        }
    }
    // new sessions spread over the endpoints
    assert!(seen.len() >= 2, "{seen:?}");
    // the same Service on a path without affinity: sticky endpoint, but no cookie set there
    let r = get(&px, "sticky.test", "/plain", None).await;
    assert!(cookie_of(&r).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_moves_few_sessions_and_persistent_none_when_scaling_3_to_4() {
    let backends = [
        EchoBackend::start("e0").await,
        EchoBackend::start("e1").await,
        EchoBackend::start("e2").await,
        EchoBackend::start("e3").await,
    ];
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let dir = ManifestDir::with_class();
    dir.write(
        "svc.yaml",
        &docs(&[
            backend_set("bal", &ports[..3]),
            backend_set("per", &ports[..3]),
        ]),
    );
    dir.write(
        "ing.yaml",
        &docs(&[
            Ingress::new("bal")
                .annotation(&nx("affinity"), "cookie")
                .host("bal.test", &[("/", PREFIX, "bal")])
                .to_yaml(),
            Ingress::new("per")
                .annotation(&nx("affinity"), "cookie")
                .annotation(&nx("affinity-mode"), "persistent")
                .host("per.test", &[("/", PREFIX, "per")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("bal.test", "/", 200, STARTUP).await;
    px.wait_status("per.test", "/", 200, STARTUP).await;
    const N: usize = 200;
    let mut sessions = Vec::new();
    for host in ["bal.test", "per.test"] {
        for _ in 0..N {
            let r = get(&px, host, "/", None).await;
            sessions.push((host, pair(&cookie_of(&r).unwrap()), r.backend().unwrap()));
        }
    }
    // scale both Services from 3 to 4 endpoints
    dir.write(
        "svc.yaml",
        &docs(&[backend_set("bal", &ports), backend_set("per", &ports)]),
    );
    px.wait_backend("bal.test", "/", "e3", RELOAD * 5)
        .await
        .expect("the 4th endpoint serves new sessions");
    let mut moved: BTreeMap<&str, usize> = BTreeMap::new();
    for (host, cookie, who) in &sessions {
        let r = get(&px, host, "/", Some(cookie)).await;
        if &r.backend().unwrap() != who {
            *moved.entry(host).or_default() += 1;
        }
    }
    let bal = moved.get("bal.test").copied().unwrap_or(0);
    let per = moved.get("per.test").copied().unwrap_or(0);
    // consistent hashing moves about 1/4 of the sessions to the new endpoint, never most
    assert!(bal > 0 && bal < N / 2, "balanced moved {bal} of {N}");
    assert_eq!(per, 0, "persistent moved {per} of {N}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hash_by_pins_each_key_to_one_endpoint() {
    let backends = [
        EchoBackend::start("e0").await,
        EchoBackend::start("e1").await,
        EchoBackend::start("e2").await,
    ];
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let dir = ManifestDir::with_class();
    dir.write("svc.yaml", &backend_set("app", &ports));
    dir.write(
        "hashed.yaml",
        &Ingress::new("hashed")
            .annotation(&nx("upstream-hash-by"), "$arg_user")
            .host("hash.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    // the same Service on another host, through the same upstream: hashed too (per upstream)
    dir.write(
        "also.yaml",
        &Ingress::new("also")
            .host("also.test", &[("/", PREFIX, "app")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("hash.test", "/", 200, STARTUP).await;
    px.wait_status("also.test", "/", 200, STARTUP).await;
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..4 {
        for user in 0..12 {
            let host = if round % 2 == 0 {
                "hash.test"
            } else {
                "also.test"
            };
            let r = get(&px, host, &format!("/p?user=u{user}"), None).await;
            let b = r.backend().unwrap();
            let first = owner.entry(format!("u{user}")).or_insert_with(|| b.clone());
            assert_eq!(*first, b, "user u{user} moved on round {round} ({host})");
        }
    }
    let used: std::collections::BTreeSet<&String> = owner.values().collect();
    assert!(
        used.len() >= 2,
        "12 keys all went to one endpoint: {owner:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_ewma_prefers_the_faster_endpoint() {
    let fast = EchoBackend::start("fast").await;
    // answers like the echo backend's name header, 200 ms late
    let (slow, _slow) =
        support::raw::answering_backend(std::time::Duration::from_millis(200), |_| {
            b"HTTP/1.1 200 OK\r\nx-echo-backend: slow\r\nContent-Length: 0\r\n\r\n".to_vec()
        })
        .await;
    let dir = ManifestDir::with_class();
    dir.write(
        "svc.yaml",
        &docs(&[
            backend_set("pair", &[fast.port, slow]),
            backend_set("pair-rr", &[fast.port, slow]),
            // the ConfigMap default: ewma
            controller_configmap(&[("load-balance", "ewma")]),
        ]),
    );
    dir.write(
        "ewma.yaml",
        &Ingress::new("ewma")
            .host("ewma.test", &[("/", PREFIX, "pair")])
            .to_yaml(),
    );
    dir.write(
        "rr.yaml",
        &Ingress::new("rr")
            .annotation(&nx("load-balance"), "round_robin")
            .host("rr.test", &[("/", PREFIX, "pair-rr")])
            .to_yaml(),
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("ewma.test", "/", 200, STARTUP).await;
    px.wait_status("rr.test", "/", 200, STARTUP).await;
    let mut ewma = BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let r = get(&px, "ewma.test", "/", None).await;
        *ewma.entry(r.backend().unwrap()).or_default() += 1;
    }
    assert!(
        ewma.get("slow").copied().unwrap_or(0) <= 5,
        "ewma kept sending to the slow endpoint: {ewma:?}"
    );
    let mut rr = BTreeMap::<String, u32>::new();
    for _ in 0..10 {
        let r = get(&px, "rr.test", "/", None).await;
        *rr.entry(r.backend().unwrap()).or_default() += 1;
    }
    assert_eq!(rr.get("slow"), Some(&5), "round robin alternates: {rr:?}");
}
