//! Last good version per Ingress: an invalid edit of a served Ingress keeps its previous
//! version serving (with a Warning), compiled against today's objects; a never-valid Ingress
//! stays out; a delete removes it; a fail-safe leave-out (canary) is not a mistake to undo.
//! Pure compile over snapshots, plus the same over real sockets in standalone mode.

mod support;

use pingress::compile::{compile, Compiled};
use pingress::route::path::normalize;
use pingress::settings::CompileSettings;
use pingress::snapshot::Snapshot;
use pingress::source::files::load_text;
use support::*;

const BACKEND: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: default, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [ENDPOINT], conditions: {ready: true}}]
";

fn ingress(name: &str, rv: u32, host: &str, annotations: &[(&str, &str)]) -> String {
    let mut a = String::new();
    for (k, v) in annotations {
        a.push_str(&format!(
            "    nginx.ingress.kubernetes.io/{k}: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    let annotations = if a.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{a}")
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  resourceVersion: \"{rv}\"\n  generation: {rv}\n{annotations}spec:\n  ingressClassName: pingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: svc, port: {{number: 80}}}}}}\n"
    )
}

fn snap(endpoint: &str, ingresses: &[String]) -> Snapshot {
    let mut s = Snapshot::default();
    load_text(
        "backend.yaml",
        &BACKEND.replace("ENDPOINT", endpoint),
        &mut s,
    );
    for (i, ing) in ingresses.iter().enumerate() {
        load_text(&format!("ing{i}.yaml"), ing, &mut s);
    }
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    s
}

fn route(c: &Compiled, host: &str) -> String {
    c.table.lookup(host, &normalize("/").unwrap()).describe()
}

fn reasons(c: &Compiled) -> Vec<&'static str> {
    c.diagnostics.iter().map(|d| d.reason).collect()
}

#[test]
fn an_invalid_edit_keeps_the_last_good_version_serving() {
    let settings = CompileSettings::default();
    let good = ingress("app", 1, "app.test", &[("limit-rps", "10")]);
    let first = compile(&snap("10.0.0.1", &[good]), &settings, None);
    let served = route(&first, "app.test");
    assert!(served.contains("10.0.0.1"), "{served}");

    // limit-rps "10" -> "abc": ingress-nginx's webhook refuses it, the host keeps serving
    let bad = ingress("app", 2, "app.test", &[("limit-rps", "abc")]);
    let second = compile(
        &snap("10.0.0.1", std::slice::from_ref(&bad)),
        &settings,
        Some(first.prev()),
    );
    assert_eq!(route(&second, "app.test"), served);
    assert_eq!(second.served, 1);
    assert_eq!(
        second.stale,
        vec![("default".to_string(), "app".to_string())]
    );
    let kept = second
        .diagnostics
        .iter()
        .find(|d| d.reason == "KeptLastGoodVersion")
        .expect("a KeptLastGoodVersion warning");
    assert!(
        kept.message
            .contains("kept generation 1; generation 2 rejected")
            && kept.message.contains("limit-rps"),
        "{}",
        kept.message
    );
    assert!(!reasons(&second).contains(&"InvalidAnnotationValue"));

    // the kept version is compiled against today's endpoints, not the old ones
    let third = compile(
        &snap("10.0.0.9", std::slice::from_ref(&bad)),
        &settings,
        Some(second.prev()),
    );
    let now = route(&third, "app.test");
    assert!(
        now.contains("10.0.0.9") && !now.contains("10.0.0.1"),
        "{now}"
    );
    assert_eq!(third.stale.len(), 1);

    // fixed: the new version serves and nothing is stale
    let fixed = ingress("app", 3, "fixed.test", &[]);
    let fourth = compile(&snap("10.0.0.9", &[fixed]), &settings, Some(third.prev()));
    assert!(fourth.stale.is_empty());
    assert!(route(&fourth, "fixed.test").contains("10.0.0.9"));
    assert!(!route(&fourth, "app.test").contains("10.0.0.9"));

    // deleted: gone, whatever was kept before
    let fifth = compile(&snap("10.0.0.9", &[]), &settings, Some(third.prev()));
    assert_eq!(fifth.served, 0);
    assert!(!route(&fifth, "app.test").contains("10.0.0.9"));
}

#[test]
fn a_never_valid_ingress_stays_out_and_a_canary_edit_is_not_undone() {
    let settings = CompileSettings::default();
    let bad = ingress("new", 1, "new.test", &[("limit-rps", "abc")]);
    let c = compile(&snap("10.0.0.1", &[bad]), &settings, None);
    assert_eq!(c.served, 0);
    assert!(reasons(&c).contains(&"InvalidAnnotationValue"));
    assert!(c.stale.is_empty());

    // a served Ingress turned into a canary is a canary (here without a primary: not served),
    // not kept as its old primary version
    let plain = ingress("c", 1, "c.test", &[]);
    let first = compile(&snap("10.0.0.1", &[plain]), &settings, None);
    assert_eq!(first.served, 1);
    let canary = ingress(
        "c",
        2,
        "c.test",
        &[("canary", "true"), ("canary-weight", "5")],
    );
    let second = compile(&snap("10.0.0.1", &[canary]), &settings, Some(first.prev()));
    assert_eq!(second.served, 0);
    assert!(reasons(&second).contains(&"CanaryWithoutPrimary"));
    assert!(second.stale.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_an_invalid_edit_keeps_the_host_up() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    let ing = |rps: &str| {
        Ingress::new("live")
            .annotation("nginx.ingress.kubernetes.io/limit-rps", rps)
            .host("live.test", &[("/", PREFIX, "svc")])
            .to_yaml()
    };
    dir.write("ingress.yaml", &ing("1000"));
    let px = Pingress::start(dir.path()).await;
    px.wait_status("live.test", "/", 200, STARTUP).await;
    dir.write("ingress.yaml", &ing("abc"));
    assert!(
        px.wait_stderr_contains("KeptLastGoodVersion", RELOAD * 5)
            .await,
        "{}",
        px.stderr()
    );
    for _ in 0..20 {
        assert_eq!(px.get("live.test", "/").await.status, 200);
    }
    let metrics = px.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pingress_ingress_stale{")
                && l.contains("ingress=\"live\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // deleting the file removes the host
    dir.remove("ingress.yaml");
    px.wait_status("live.test", "/", 404, RELOAD * 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_an_in_place_rewrite_under_load_never_serves_a_half_written_file() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    // two hosts in one file; rewritten in place (truncate, half, pause, rest, close)
    let content = docs(&[
        Ingress::new("one")
            .host("one.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
        Ingress::new("two")
            .host("two.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    ]);
    dir.write("hosts.yaml", &content);
    let px = Pingress::start(dir.path()).await;
    px.wait_status("two.test", "/", 200, STARTUP).await;
    let path = dir.path().join("hosts.yaml");
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let cut = content.find("---\n").expect("two documents") + 4;
        for _ in 0..15 {
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(&content.as_bytes()[..cut]).unwrap();
            f.flush().unwrap();
            // half-written for a while: only the first Ingress is in the file
            std::thread::sleep(std::time::Duration::from_millis(60));
            f.write_all(&content.as_bytes()[cut..]).unwrap();
            drop(f);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let mut answers = std::collections::BTreeMap::new();
    while !writer.is_finished() {
        let s = px.get("two.test", "/").await.status.as_u16();
        *answers.entry(s).or_insert(0u32) += 1;
    }
    writer.await.unwrap();
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "answers while hosts.yaml was rewritten in place: {answers:?}"
    );
}

/// ConfigMap `limit-rate` / `limit-rate-after` are the defaults of every location; an
/// Ingress's annotation (0 too) overrides them.
#[test]
fn configmap_limit_rate_is_the_default_an_annotation_overrides() {
    let mut s = snap(
        "10.0.0.1",
        &[
            ingress("plain", 1, "plain.test", &[]),
            ingress("own", 1, "own.test", &[("limit-rate", "50")]),
            ingress("off", 1, "off.test", &[("limit-rate", "0")]),
        ],
    );
    load_text(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ingress}\ndata: {limit-rate: \"20\", limit-rate-after: \"100\"}\n",
        &mut s,
    );
    let settings = CompileSettings {
        configmap: Some(("ingress".into(), "pingress".into())),
        ..CompileSettings::default()
    };
    let c = compile(&s, &settings, None);
    let rate = |host: &str| {
        c.table
            .lookup(host, &normalize("/").unwrap())
            .policy
            .response_rate
    };
    assert_eq!(rate("plain.test"), Some((20 * 1024, 100 * 1024)));
    assert_eq!(rate("own.test"), Some((50 * 1024, 100 * 1024)));
    assert_eq!(rate("off.test"), None);
    // without the ConfigMap keys nothing is throttled
    let c = compile(
        &snap("10.0.0.1", &[ingress("plain", 1, "plain.test", &[])]),
        &settings,
        None,
    );
    assert_eq!(
        c.table
            .lookup("plain.test", &normalize("/").unwrap())
            .policy
            .response_rate,
        None
    );
}
