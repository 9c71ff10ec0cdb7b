//! Cluster-mode tests: the real pingress binary against the in-process fake API server
//! (tests/support/fake_apiserver.rs), real echo backends and real HTTP clients.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::fake_apiserver::{admission_review, yaml_values, FakeApi, Recorded};
use support::*;
use tempfile::TempDir;

/// Time a change in the API may take to be served (coalescing is 100-500 ms).
const CHANGE: Duration = Duration::from_secs(5);

struct Cluster {
    fake: FakeApi,
    _dir: TempDir,
    dir: PathBuf,
}

impl Cluster {
    async fn new() -> Cluster {
        let dir = TempDir::new().unwrap();
        Cluster {
            fake: FakeApi::start().await,
            dir: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    /// [`Cluster::base`] over backend `a`, and pingress (no status writes) serving it.
    async fn serving_web(a: &EchoBackend) -> (Cluster, Pingress) {
        let c = Cluster::new().await;
        c.base(&[a.port]);
        let kc = c.kubeconfig("a").await;
        let px = Pingress::start_cluster(&kc, &["--update-status=false"], &[]).await;
        px.wait_backend("web.test", "/", "a", CHANGE)
            .await
            .expect("initial route");
        (c, px)
    }

    async fn kubeconfig(&self, label: &str) -> PathBuf {
        self.fake.kubeconfig(&self.dir, label).await
    }

    /// IngressClass + Service `web` with one slice per backend + Ingress `web` for host
    /// web.test.
    fn base(&self, ports: &[u16]) {
        self.fake.apply_yaml(&docs(&[
            ingress_class(CLASS, CONTROLLER),
            backend_set("web", ports),
            Ingress::new("web")
                .host("web.test", &[("/", PREFIX, "web")])
                .to_yaml(),
        ]));
    }
}

fn status_patches(reqs: &[Recorded], name: &str) -> Vec<Recorded> {
    let suffix = format!("/ingresses/{name}/status");
    reqs.iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&suffix))
        .cloned()
        .collect()
}

fn events(reqs: &[Recorded], reason: &str) -> Vec<Recorded> {
    reqs.iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with("/apis/events.k8s.io/v1/")
                && r.body["reason"] == reason
        })
        .cloned()
        .collect()
}

/// Polls `f` until it returns true, panicking with `what` after `timeout`.
async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut f: F) {
    let ok = wait_until(timeout, || {
        let r = f();
        async move { r }
    })
    .await;
    assert!(ok.is_some(), "timed out after {timeout:?}: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_is_served_before_every_initial_list_completes() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.hold_lists("endpointslices", true);
    let kc = c.kubeconfig("a").await;
    let px = Pingress::spawn_cluster(&kc, &[], &[]);
    // the process is alive and has listed the other kinds, but is not ready
    let mut alive = false;
    for _ in 0..500 {
        if px.health("/healthz").await == Some(200) && c.fake.list_count("ingresses") > 0 {
            alive = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(alive, "healthz never answered\n{}", px.stderr());
    assert_eq!(px.health("/readyz").await, Some(503));
    assert!(
        std::net::TcpStream::connect(px.addr()).is_err(),
        "the proxy listens before the first table"
    );
    assert_eq!(c.fake.list_count("endpointslices"), 0);
    c.fake.hold_lists("endpointslices", false);
    let px = px.wait_http().await.expect("pingress starts");
    assert_eq!(px.health("/readyz").await, Some(200));
    let r = px.get("web.test", "/x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", px.stderr());
    assert_eq!(r.echo().backend, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_modify_delete_of_each_kind_reaches_the_table() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let (c, px) = Cluster::serving_web(&a).await;

    // Ingress: add, modify, delete
    c.fake.apply_yaml(
        &Ingress::new("second")
            .host("second.test", &[("/only", PREFIX, "web")])
            .to_yaml(),
    );
    px.wait_status("second.test", "/only", 200, CHANGE).await;
    assert_eq!(px.get("second.test", "/other").await.status, 404);
    c.fake.apply_yaml(
        &Ingress::new("second")
            .host("second.test", &[("/other", PREFIX, "web")])
            .to_yaml(),
    );
    px.wait_status("second.test", "/other", 200, CHANGE).await;
    assert_eq!(px.get("second.test", "/only").await.status, 404);
    c.fake.delete("Ingress", "default", "second");
    px.wait_status("second.test", "/other", 404, CHANGE).await;

    // EndpointSlice: a second endpoint joins the rotation, then leaves it
    c.fake
        .apply_yaml(&endpoint_slice("web-1", "web", b.port, READY));
    px.wait_backend("web.test", "/", "b", CHANGE)
        .await
        .expect("b joins the rotation");
    c.fake.delete("EndpointSlice", "default", "web-1");
    // once removed, b must never answer again (after the change is live)
    px.wait_until_only("web.test", "a", CHANGE).await;
    for _ in 0..20 {
        assert_eq!(px.get("web.test", "/").await.echo().backend, "a");
    }

    // Service: deleted -> 503, back -> 200
    c.fake.delete("Service", "default", "web");
    px.wait_status("web.test", "/", 503, CHANGE).await;
    c.fake.apply_yaml(&service("web"));
    px.wait_status("web.test", "/", 200, CHANGE).await;

    // IngressClass: deleted -> the Ingress is no longer ours (404); back -> served
    c.fake.delete("IngressClass", "", CLASS);
    px.wait_status("web.test", "/", 404, CHANGE).await;
    c.fake.apply_yaml(&ingress_class(CLASS, CONTROLLER));
    px.wait_status("web.test", "/", 200, CHANGE).await;
}

impl Pingress {
    /// Polls until 10 consecutive answers for `host /` come from `backend`.
    async fn wait_until_only(&self, host: &str, backend: &str, timeout: Duration) {
        let ok = wait_until(timeout, || async move {
            for _ in 0..10 {
                match self.try_get(host, "/").await {
                    Ok(r) if r.backend().as_deref() == Some(backend) => {}
                    _ => return false,
                }
            }
            true
        })
        .await;
        assert!(ok.is_some(), "{host} not only served by {backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_tls_and_opaque_only_and_configmap_is_watched_by_name() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: default}\ntype: kubernetes.io/tls\ndata: {tls.crt: \"\", tls.key: \"\"}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: password, namespace: default}\ntype: Opaque\ndata: {p: c2VjcmV0}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: default}\ntype: kubernetes.io/service-account-token\ndata: {token: c2VjcmV0}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: release, namespace: default}\ntype: helm.sh/release.v1\ndata: {release: c2VjcmV0}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ctl}\ndata: {k: v}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other, namespace: ctl}\ndata: {k: v}\n",
    );
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(
        &kc,
        &["--configmap", "ctl/pingress", "--update-status=false"],
        &[],
    )
    .await;
    let secrets = c.fake.queries("secrets");
    assert!(!secrets.is_empty());
    assert!(
        secrets
            .iter()
            .all(|q| q.contains("fieldSelector=type=kubernetes.io/tls")
                || q.contains("fieldSelector=type=Opaque")),
        "{secrets:?}"
    );
    assert!(
        secrets.iter().any(|q| q.contains("type=Opaque")),
        "{secrets:?}"
    );
    let cms = c.fake.queries("configmaps");
    assert!(
        !cms.is_empty()
            && cms
                .iter()
                .all(|q| q.contains("fieldSelector=metadata.name=pingress")),
        "{cms:?}"
    );
    // IngressClass 1 + Service 1 + EndpointSlice 1 + Ingress 1 + TLS and Opaque Secrets 2 +
    // ConfigMap 1 (not the token, not the Helm release)
    assert!(
        px.wait_stderr_contains("objects=7", CHANGE).await,
        "{}",
        px.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_deserialize_is_skipped_alone() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.put(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"ingressClassName": CLASS, "rules": "not a list"}
    }));
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(&kc, &["--update-status=false"], &[]).await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("the good Ingress is served");
    assert!(
        px.stderr().contains("does not deserialize"),
        "{}",
        px.stderr()
    );
    // the watch goes on
    c.fake.apply_yaml(
        &Ingress::new("later")
            .host("later.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    px.wait_status("later.test", "/", 200, CHANGE).await;
    // a served Ingress that turns unreadable is dropped, the others stay
    c.fake.put(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "later", "namespace": "default"},
        "spec": {"ingressClassName": CLASS, "rules": 7}
    }));
    px.wait_status("later.test", "/", 404, CHANGE).await;
    assert_eq!(px.get("web.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_forces_a_relist_that_sees_lost_changes() {
    let a = EchoBackend::start("a").await;
    let (c, px) = Cluster::serving_web(&a).await;
    let lists = c.fake.list_count("ingresses");
    // changes whose watch events are lost, then the history is compacted
    c.fake.delete_silently("Ingress", "default", "web");
    for v in yaml_values(
        &Ingress::new("fresh")
            .host("fresh.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    ) {
        c.fake.put_silently(v);
    }
    c.fake.compact();
    px.wait_status("fresh.test", "/", 200, Duration::from_secs(15))
        .await;
    px.wait_status("web.test", "/", 404, CHANGE).await;
    assert!(c.fake.list_count("ingresses") > lists, "relisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_keeps_serving_and_recovers() {
    let a = EchoBackend::start("a").await;
    let (c, px) = Cluster::serving_web(&a).await;
    c.fake.set_outage(true);
    // the watchers notice (their requests fail) while traffic flows on
    assert!(
        px.wait_stderr_contains("watch failed", CHANGE).await,
        "{}",
        px.stderr()
    );
    for _ in 0..30 {
        let r = px.get("web.test", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(px.health("/readyz").await, Some(200));
    c.fake.set_outage(false);
    c.fake.apply_yaml(
        &Ingress::new("after")
            .host("after.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    // back-off is at most a few seconds after a short outage
    px.wait_status("after.test", "/", 200, Duration::from_secs(40))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_selector_limits_what_is_served() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake
        .apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n");
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(
        &kc,
        &[
            "--watch-namespace-selector",
            "team=web",
            "--update-status=false",
        ],
        &[],
    )
    .await;
    assert_eq!(px.get("web.test", "/").await.status, 404);
    c.fake.apply_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {team: web}}\n",
    );
    px.wait_status("web.test", "/", 200, CHANGE).await;
    c.fake.delete("Namespace", "", "default");
    px.wait_status("web.test", "/", 404, CHANGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_writes_status_with_the_exact_patch_and_events_are_deduplicated() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    // an invalid Ingress (Exact path with a regex character)
    c.fake.apply_yaml(
        &Ingress::new("bad")
            .host("bad.test", &[("/a(.*)", EXACT, "web")])
            .to_yaml(),
    );
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(
        &kc,
        &[
            "--publish-status-address",
            "lb.example.com,10.0.0.1",
            "--election-ttl",
            "3",
        ],
        &[("POD_NAMESPACE", "ctl")],
    )
    .await;
    // status: exact merge patch on the status subresource
    eventually(CHANGE, "status patch of web", || {
        !status_patches(&c.fake.requests(), "web").is_empty()
    })
    .await;
    let p = &status_patches(&c.fake.requests(), "web")[0];
    assert_eq!(
        p.path,
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web/status"
    );
    assert_eq!(p.content_type, "application/merge-patch+json");
    assert_eq!(
        p.body.to_string(),
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"10.0.0.1"},{"hostname":"lb.example.com"}]}}}"#
    );
    assert!(c
        .fake
        .lease_holder("ctl", "ingress-controller-leader")
        .is_some());

    // events: one Warning for the invalid Ingress
    eventually(CHANGE, "Warning event for bad", || {
        !events(&c.fake.requests(), "InvalidPath").is_empty()
    })
    .await;
    let e = &events(&c.fake.requests(), "InvalidPath")[0];
    assert_eq!(e.path, "/apis/events.k8s.io/v1/namespaces/default/events");
    assert_eq!(e.body["type"], "Warning");
    assert_eq!(e.body["regarding"]["kind"], "Ingress");
    assert_eq!(e.body["regarding"]["name"], "bad");
    assert!(e.body["regarding"]["uid"].is_string());
    assert!(e.body["note"].as_str().unwrap().contains("/a(.*)"));

    // more rebuilds (unrelated changes) do not repeat it
    for i in 0..3 {
        c.fake.apply_yaml(
            &Ingress::new(&format!("n{i}"))
                .host(&format!("n{i}.test"), &[("/", PREFIX, "web")])
                .to_yaml(),
        );
        px.wait_status(&format!("n{i}.test"), "/", 200, CHANGE)
            .await;
    }
    // the new Ingresses got status too (the leader follows table changes)
    eventually(CHANGE, "status patch of n2", || {
        !status_patches(&c.fake.requests(), "n2").is_empty()
    })
    .await;
    assert_eq!(events(&c.fake.requests(), "InvalidPath").len(), 1);

    // fixed -> one Normal Sync event
    c.fake.apply_yaml(
        &Ingress::new("bad")
            .host("bad.test", &[("/a", EXACT, "web")])
            .to_yaml(),
    );
    px.wait_status("bad.test", "/a", 200, CHANGE).await;
    eventually(CHANGE, "Normal Sync event", || {
        events(&c.fake.requests(), "Sync")
            .iter()
            .any(|e| e.body["type"] == "Normal" && e.body["regarding"]["name"] == "bad")
    })
    .await;

    // an Ingress that leaves our class gets its status cleared
    c.fake.apply_yaml(
        &Ingress::new("n0")
            .class(Some("other"))
            .host("n0.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    eventually(CHANGE, "status of n0 cleared", || {
        status_patches(&c.fake.requests(), "n0")
            .iter()
            .any(|p| p.body == json!({"status": {"loadBalancer": {"ingress": null}}}))
    })
    .await;
    let stored = c.fake.get("Ingress", "default", "n0").unwrap();
    assert!(stored["status"]["loadBalancer"]["ingress"].is_null());
}

/// Replica `a` (Pod pod-a) starts, leads and writes the status of `web`; then replica `b`
/// (pod-b) starts. Status address 10.0.0.9, a 3 s lease, a 1 s grace period.
async fn leader_a_then_b(c: &Cluster) -> (Pingress, Pingress) {
    let args = [
        "--publish-status-address",
        "10.0.0.9",
        "--election-ttl",
        "3",
        "--post-shutdown-grace-period",
        "1",
    ];
    let start = |pod: &'static str, kc: std::path::PathBuf| async move {
        Pingress::start_cluster(&kc, &args, &[("POD_NAMESPACE", "ctl"), ("POD_NAME", pod)]).await
    };
    let px_a = start("pod-a", c.kubeconfig("a").await).await;
    eventually(CHANGE, "a leads", || {
        c.fake
            .lease_holder("ctl", "ingress-controller-leader")
            .unwrap_or_default()
            .starts_with("pod-a_")
    })
    .await;
    eventually(CHANGE, "a writes status", || {
        !status_patches(&c.fake.requests(), "web").is_empty()
    })
    .await;
    let px_b = start("pod-b", c.kubeconfig("b").await).await;
    (px_a, px_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_when_the_leader_dies_and_only_the_leader_writes() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    let lease = || {
        c.fake
            .lease_holder("ctl", "ingress-controller-leader")
            .unwrap_or_default()
    };
    let (mut px_a, px_b) = leader_a_then_b(&c).await;
    // both serve traffic
    assert_eq!(px_a.get("web.test", "/").await.status, 200);
    assert_eq!(px_b.get("web.test", "/").await.status, 200);
    // a change: only the leader writes status
    c.fake.apply_yaml(
        &Ingress::new("two")
            .host("two.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    px_b.wait_status("two.test", "/", 200, CHANGE).await;
    eventually(CHANGE, "status of two", || {
        !status_patches(&c.fake.requests(), "two").is_empty()
    })
    .await;
    let writers: Vec<String> = c
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/ingresses/"))
        .map(|r| r.client.clone())
        .collect();
    assert!(writers.iter().all(|w| w == "a"), "{writers:?}");

    // the leader dies without releasing the Lease: b takes over within the lease duration
    px_a.signal("KILL");
    px_a.wait_exit(CHANGE).await.expect("a exits");
    let killed = std::time::Instant::now();
    eventually(Duration::from_secs(3 + 6), "b leads", || {
        lease().starts_with("pod-b_")
    })
    .await;
    eprintln!("leadership moved after {:?}", killed.elapsed());
    c.fake.apply_yaml(
        &Ingress::new("three")
            .host("three.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    eventually(CHANGE, "b writes status of three", || {
        status_patches(&c.fake.requests(), "three")
            .iter()
            .any(|p| p.client == "b")
    })
    .await;

    // b shuts down (SIGTERM): with --update-status-on-shutdown it clears the status
    let mut px_b = px_b;
    px_b.signal("TERM");
    px_b.wait_exit(Duration::from_secs(15))
        .await
        .expect("b exits");
    // the last replica clears what it wrote, including an Ingress written just before
    for name in ["web", "three"] {
        let cleared = status_patches(&c.fake.requests(), name)
            .iter()
            .any(|p| p.client == "b" && p.body["status"]["loadBalancer"]["ingress"].is_null());
        assert!(
            cleared,
            "status of {name} cleared on shutdown\n{}",
            px_b.stderr()
        );
    }
}

fn running_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: ctl\n  labels: {{app: pingress, pod-template-hash: {name}}}\nstatus: {{phase: Running}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_blanks_the_address() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.apply_yaml(&running_pod("pod-a"));
    c.fake.apply_yaml(&running_pod("pod-b"));
    let lease = || {
        c.fake
            .lease_holder("ctl", "ingress-controller-leader")
            .unwrap_or_default()
    };
    let (mut px_a, px_b) = leader_a_then_b(&c).await;
    assert_eq!(px_b.get("web.test", "/").await.status, 200);

    // the leader is replaced while b runs: the address stays for b
    px_a.signal("TERM");
    px_a.wait_exit(Duration::from_secs(15))
        .await
        .expect("a exits");
    assert!(
        px_a.stderr()
            .contains("leaving Ingress status for the next leader"),
        "{}",
        px_a.stderr()
    );
    let blanked = status_patches(&c.fake.requests(), "web")
        .iter()
        .any(|p| p.body["status"]["loadBalancer"]["ingress"].is_null());
    assert!(!blanked, "the address was cleared while b runs");
    let stored = c.fake.get("Ingress", "default", "web").unwrap();
    assert_eq!(
        stored["status"]["loadBalancer"]["ingress"][0]["ip"],
        "10.0.0.9"
    );
    eventually(Duration::from_secs(3 + 6), "b leads", || {
        lease().starts_with("pod-b_")
    })
    .await;
    // the Lease names b a moment before b's status loop acts as leader
    assert!(
        px_b.wait_stderr_contains("leadership changed leader=true", Duration::from_secs(10))
            .await,
        "b never acted as leader\n{}",
        px_b.stderr()
    );

    // b is the last one (pod-a gone): it clears on shutdown
    c.fake.delete("Pod", "ctl", "pod-a");
    let mut px_b = px_b;
    px_b.signal("TERM");
    px_b.wait_exit(Duration::from_secs(15))
        .await
        .expect("b exits");
    let cleared = status_patches(&c.fake.requests(), "web")
        .iter()
        .any(|p| p.client == "b" && p.body["status"]["loadBalancer"]["ingress"].is_null());
    assert!(cleared, "the last replica clears\n{}", px_b.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_unreadable_kubeconfig_fail_fast() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pingress"))
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    };
    let out = run(&[
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--healthz-port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
    let out = run(&[
        "--manifests",
        "/tmp",
        "--kubeconfig",
        "k",
        "--healthz-port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be combined"));
    let out = run(&["--publish-service", "x", "--healthz-port", "0"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--publish-service must be namespace/name")
    );
    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_of_a_served_ingress_keeps_it_serving_with_a_warning_event() {
    let a = EchoBackend::start("a").await;
    let (c, px) = Cluster::serving_web(&a).await;
    // limit-rps "abc": ingress-nginx's webhook would refuse it; the live host stays up
    c.fake.apply_yaml(
        &Ingress::new("web")
            .annotation("nginx.ingress.kubernetes.io/limit-rps", "abc")
            .host("web.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    eventually(CHANGE, "a KeptLastGoodVersion Event", || {
        !events(&c.fake.requests(), "KeptLastGoodVersion").is_empty()
    })
    .await;
    for _ in 0..20 {
        assert_eq!(px.get("web.test", "/").await.status, StatusCode::OK);
    }
    // deleting it still removes it
    c.fake.delete("Ingress", "default", "web");
    px.wait_status("web.test", "/", 404, CHANGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_ssl_protocols_apply_in_cluster_mode() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ctl}\ndata: {ssl-protocols: TLSv1.3}\n",
    );
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(
        &kc,
        &["--configmap", "ctl/pingress", "--update-status=false"],
        &[],
    )
    .await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("initial route");
    let tls12 = support::tls::client_config(&[b"http/1.1"], &[&rustls::version::TLS12]);
    let tls13 = support::tls::client_config(&[b"http/1.1"], &[&rustls::version::TLS13]);
    assert!(
        support::tls::connect(px.https_port, Some("web.test"), tls13)
            .await
            .is_ok(),
        "TLS 1.3 handshake"
    );
    assert!(
        support::tls::connect(px.https_port, Some("web.test"), tls12)
            .await
            .is_err(),
        "ssl-protocols TLSv1.3 still negotiated TLS 1.2 in cluster mode\n{}",
        px.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_outage_the_watches_resume_within_seconds() {
    let a = EchoBackend::start("a").await;
    let (c, px) = Cluster::serving_web(&a).await;
    c.fake.set_outage(true);
    // every watcher fails and backs off several times (kube's default back-off would then
    // wait 6-13 s per retry, growing to 30 s)
    eventually(Duration::from_secs(60), "30 refused API requests", || {
        c.fake.outage_hits() >= 30
    })
    .await;
    c.fake.set_outage(false);
    let back = std::time::Instant::now();
    c.fake.apply_yaml(
        &Ingress::new("after")
            .host("after.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    px.wait_status("after.test", "/", 200, Duration::from_secs(30))
        .await;
    let took = back.elapsed();
    eprintln!("served {took:?} after the API came back");
    assert!(
        took < Duration::from_secs(5),
        "a new Ingress was served {took:?} after the API came back"
    );
    // the outage is reported once per watch: a warning when it starts, its count on resume
    let err = px.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("watch resumed") && !l.contains("failures=0")),
        "{err}"
    );
    assert!(
        err.matches("watch failed").count() <= 8,
        "one warning per watch, not one per retry:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_was_taken_writes_no_status() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    let kc = c.kubeconfig("a").await;
    // a long lease: the election task would notice the loss only at its renewal, 25 s later
    let px = Pingress::start_cluster(
        &kc,
        &[
            "--publish-status-address",
            "10.0.0.9",
            "--election-ttl",
            "30",
        ],
        &[("POD_NAMESPACE", "ctl"), ("POD_NAME", "pod-a")],
    )
    .await;
    eventually(CHANGE, "a writes status", || {
        !status_patches(&c.fake.requests(), "web").is_empty()
    })
    .await;
    // another replica takes the Lease (ours could not be renewed meanwhile)
    let now = k8s_openapi::jiff::Timestamp::now();
    c.fake.apply_yaml(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: ingress-controller-leader, namespace: ctl}}\nspec: {{holderIdentity: pod-b_1, leaseDurationSeconds: 30, renewTime: \"{}\"}}\n",
        now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
    ));
    c.fake.apply_yaml(
        &Ingress::new("late")
            .host("late.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    px.wait_status("late.test", "/", 200, CHANGE).await;
    assert!(
        px.wait_stderr_contains("the Lease does not name this replica", CHANGE)
            .await,
        "{}",
        px.stderr()
    );
    assert!(
        status_patches(&c.fake.requests(), "late").is_empty(),
        "status written by a replica that no longer holds the Lease"
    );
}

/// An AdmissionReview (admission.k8s.io/v1) for `op` of the Ingress given as YAML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_webhook_refuses_over_https_what_the_table_would_reject() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    let cert = support::tls::self_signed(&["localhost"], "pingress-admission");
    let (crt, key) = (c.dir.join("webhook.crt"), c.dir.join("webhook.key"));
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    let port = free_port();
    let kc = c.kubeconfig("a").await;
    let px = Pingress::start_cluster(
        &kc,
        &[
            "--update-status=false",
            "--validating-webhook",
            &format!("127.0.0.1:{port}"),
            "--validating-webhook-certificate",
            crt.to_str().unwrap(),
            "--validating-webhook-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("initial route");
    let path = "/networking/v1/ingresses";
    let ask = |uid: &'static str, op: &'static str, yaml: String| async move {
        let r = support::tls::https_post_json(port, path, &admission_review(uid, op, &yaml))
            .await
            .expect("webhook answers over HTTPS");
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], uid);
        v["response"].clone()
    };
    // a new Ingress on another host: allowed
    let ok = ask(
        "u1",
        "CREATE",
        Ingress::new("other")
            .host("other.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    )
    .await;
    assert_eq!(ok["allowed"], true, "{ok}");
    // the bad edit of issue 23: refused with the diagnostic's text
    let bad = ask(
        "u2",
        "UPDATE",
        Ingress::new("web")
            .annotation("nginx.ingress.kubernetes.io/limit-rps", "abc")
            .host("web.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    )
    .await;
    assert_eq!(bad["allowed"], false, "{bad}");
    assert_eq!(bad["status"]["code"], 400);
    let msg = bad["status"]["message"].as_str().unwrap();
    assert!(msg.contains("limit-rps") && msg.contains("abc"), "{msg}");
    // a second Ingress taking the served path: refused, naming the owner
    let clash = ask(
        "u3",
        "CREATE",
        Ingress::new("clash")
            .host("web.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    )
    .await;
    assert_eq!(clash["allowed"], false, "{clash}");
    let msg = clash["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("PathConflict") && msg.contains("default/web"),
        "{msg}"
    );
    // a missing Service is served (503): allowed, with a warning kubectl prints
    let warned = ask(
        "u4",
        "CREATE",
        Ingress::new("missing")
            .host("missing.test", &[("/", PREFIX, "nope")])
            .to_yaml(),
    )
    .await;
    assert_eq!(warned["allowed"], true, "{warned}");
    assert!(
        warned["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "{warned}"
    );
    // the live table is untouched by reviews
    assert_eq!(px.get("web.test", "/").await.status, StatusCode::OK);
    // not an AdmissionReview: 400; another path: 404
    let r = support::tls::https_post_json(port, path, &json!({"nope": 1}))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = support::tls::https_post_json(port, "/other", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let m = px.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("pingress_admission_reviews_total{")
                && l.contains("result=\"denied\"")
                && l.ends_with(" 2")),
        "{m}"
    );
    assert!(m.contains("pingress_api_watch_up{"), "{m}");
    assert!(
        m.contains("pingress_api_last_sync_timestamp_seconds{"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_flags_are_checked_at_start() {
    let c = Cluster::new().await;
    let kc = c.kubeconfig("a").await;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--kubeconfig".to_string(),
            kc.to_str().unwrap().to_string(),
            "--healthz-port".into(),
            "0".into(),
            "--http-port".into(),
            free_port().to_string(),
            "--https-port".into(),
            free_port().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        std::process::Command::new(env!("CARGO_BIN_EXE_pingress"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run(&["--validating-webhook", ":8443"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--validating-webhook-certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = c.dir.join("missing.pem");
    let m = missing.to_str().unwrap();
    let out = run(&[
        "--validating-webhook",
        "127.0.0.1:0",
        "--validating-webhook-certificate",
        m,
        "--validating-webhook-key",
        m,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_name_that_does_not_resolve_is_a_warning_event_on_its_ingress() {
    let a = EchoBackend::start("a").await;
    let (c, px) = Cluster::serving_web(&a).await;
    c.fake.apply_yaml(&docs(&[
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\nspec: {type: ExternalName, externalName: nowhere.invalid, ports: [{port: 80}]}\n".to_string(),
        Ingress::new("ext")
            .host("ext.test", &[("/", PREFIX, "ext")])
            .to_yaml(),
    ]));
    eventually(CHANGE, "an ExternalNameUnresolved Event", || {
        !events(&c.fake.requests(), "ExternalNameUnresolved").is_empty()
    })
    .await;
    let ev = &events(&c.fake.requests(), "ExternalNameUnresolved")[0];
    assert_eq!(ev.body["regarding"]["name"], "ext", "{}", ev.body);
    assert!(
        ev.body["note"]
            .as_str()
            .unwrap()
            .contains("nowhere.invalid"),
        "{}",
        ev.body
    );
    // requests to it answer 503, other hosts are untouched
    assert_eq!(px.get("ext.test", "/").await.status, 503);
    assert_eq!(px.get("web.test", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_with_different_addresses_do_not_fight_over_status() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    let (kc1, kc2) = (c.kubeconfig("one").await, c.kubeconfig("two").await);
    // two controllers of one class (a blue/green upgrade), each the leader of its own Lease
    let start = |kc: PathBuf, addr: &'static str, id: &'static str| async move {
        Pingress::start_cluster(
            &kc,
            &[
                "--publish-status-address",
                addr,
                "--election-id",
                id,
                "--status-update-interval",
                "3",
            ],
            &[],
        )
        .await
    };
    let p1 = start(kc1, "10.0.0.1", "blue").await;
    let p2 = start(kc2, "10.0.0.2", "green").await;
    let by = |client: &str| {
        status_patches(&c.fake.requests(), "web")
            .into_iter()
            .filter(|r| r.client == client)
            .count()
    };
    eventually(Duration::from_secs(10), "both wrote web's status", || {
        by("one") > 0 && by("two") > 0
    })
    .await;
    let (b1, b2) = (by("one"), by("two"));
    // 4 s of table changes on both (each a reason to sync status)
    let began = std::time::Instant::now();
    let mut rebuilds = 0;
    while began.elapsed() < Duration::from_secs(4) {
        let name = format!("churn{rebuilds}");
        c.fake.apply_yaml(
            &Ingress::new(&name)
                .host(&format!("{name}.test"), &[("/", PREFIX, "web")])
                .to_yaml(),
        );
        p1.wait_status(&format!("{name}.test"), "/", 200, CHANGE)
            .await;
        p2.wait_status(&format!("{name}.test"), "/", 200, CHANGE)
            .await;
        rebuilds += 1;
    }
    assert!(rebuilds >= 5, "only {rebuilds} table changes in 4 s");
    let (d1, d2) = (by("one") - b1, by("two") - b2);
    // at most one rewrite per 3 s each (plus one in flight), not one per rebuild
    assert!(
        d1 <= 3 && d2 <= 3,
        "status patches of web during {rebuilds} rebuilds: one {d1}, two {d2}"
    );
    let warned = |p: &Pingress| p.stderr().contains("another writer keeps overwriting");
    assert!(
        warned(&p1) || warned(&p2),
        "one Warning names the contest\n{}\n{}",
        p1.stderr(),
        p2.stderr()
    );
}

/// Shadow mode (README "Migrating from ingress-nginx"): a second controller on the same class
/// with `--update-status=false` and its own election id serves the same routes, never writes
/// status or a Lease, and its Events name it (`reportingController` k8s.io/pingress, its own
/// `reportingInstance`), so they are told apart from the primary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_controller_serves_alike_and_writes_only_its_events() {
    let a = EchoBackend::start("a").await;
    let c = Cluster::new().await;
    c.base(&[a.port]);
    c.fake.apply_yaml(
        &Ingress::new("typo")
            .annotation("nginx.ingress.kubernetes.io/rewrite-targte", "/")
            .host("typo.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    let (kp, ks) = (c.kubeconfig("primary").await, c.kubeconfig("shadow").await);
    let primary = Pingress::start_cluster(
        &kp,
        &[
            "--publish-status-address",
            "10.0.0.1",
            "--election-id",
            "primary",
        ],
        &[("POD_NAME", "ingress-primary")],
    )
    .await;
    let shadow = Pingress::start_cluster(
        &ks,
        &["--update-status=false", "--election-id", "shadow"],
        &[("POD_NAME", "pingress-shadow")],
    )
    .await;
    for px in [&primary, &shadow] {
        px.wait_backend("web.test", "/", "a", CHANGE)
            .await
            .expect("both serve the route");
    }
    let reqs = || c.fake.requests();
    eventually(
        Duration::from_secs(10),
        "the primary wrote web's status",
        || {
            status_patches(&reqs(), "web")
                .iter()
                .any(|r| r.client == "primary")
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "both sent the typo's Event",
        || {
            let ev = events(&reqs(), "UnknownAnnotation");
            ["primary", "shadow"]
                .iter()
                .all(|who| ev.iter().any(|r| r.client == *who))
        },
    )
    .await;
    // a table change on both, a reason to write status again
    c.fake.apply_yaml(
        &Ingress::new("later")
            .host("later.test", &[("/", PREFIX, "web")])
            .to_yaml(),
    );
    primary.wait_status("later.test", "/", 200, CHANGE).await;
    shadow.wait_status("later.test", "/", 200, CHANGE).await;
    eventually(
        Duration::from_secs(10),
        "the primary wrote later's status",
        || {
            status_patches(&reqs(), "later")
                .iter()
                .any(|r| r.client == "primary")
        },
    )
    .await;
    let from_shadow: Vec<Recorded> = reqs()
        .into_iter()
        .filter(|r| r.client == "shadow")
        .collect();
    for r in &from_shadow {
        assert!(
            r.method == "POST" && r.path.starts_with("/apis/events.k8s.io/v1/"),
            "the shadow wrote something else than an Event: {} {}",
            r.method,
            r.path
        );
        assert_eq!(r.body["reportingController"], "k8s.io/pingress");
        assert!(
            r.body["reportingInstance"]
                .as_str()
                .is_some_and(|i| i.starts_with("pingress-shadow")),
            "{}",
            r.body
        );
    }
    assert!(!from_shadow.is_empty());
}
