//! Cluster mode against a real Kubernetes API server: the scenarios of tests/cluster.rs with
//! real Namespace, IngressClass, Service, EndpointSlice and Ingress objects created by the test,
//! the real pingress binary, and traffic through pingress to real echo backends.
//!
//! # Opt-in, and how a test skips
//! CI has no cluster. Set `PINGRESS_TEST_KUBECONFIG` to a kubeconfig file to run these tests
//! (its current context is used; the user must be allowed to create and delete Namespaces and
//! IngressClasses, and everything pingress reads and writes inside a namespace):
//!
//! ```text
//! PINGRESS_TEST_KUBECONFIG=~/.kube/config bash .ci/test
//! ```
//!
//! Every test starts with [`Cluster::connect`], the single gate. It returns `None`, after printing
//! `skipped: PINGRESS_TEST_KUBECONFIG not set` (or why else it cannot run) to stderr, when the
//! variable is unset or this machine has no non-loopback IPv4 address for the backends (a real
//! API server refuses loopback addresses in EndpointSlices). The test then returns early and
//! passes without asserting anything: that early return is this project's accepted "skip
//! cleanly" pattern for tests that need a real cluster (they never use the ignore attribute). With a
//! cluster, the test body makes real assertions.
//!
//! # Isolation
//! Each test creates a Namespace `pingress-test-<random>` and an IngressClass of the same name
//! whose controller is `k8s.io/pingress-test-<random>`, and runs pingress with
//! `--controller-class` set to that value and `--watch-namespace` set to the namespace, so it
//! never touches another controller's objects. `POD_NAMESPACE` is the test namespace, so the
//! election Lease (`--election-id`, also unique) lives there too. A drop guard deletes the
//! namespace and the IngressClass at the end, also when the test panics (best effort).
//!
//! # Traffic
//! The test talks to pingress on 127.0.0.1; pingress talks to the echo backends on a
//! non-loopback address of this machine. Nothing else is contacted but the API server named in
//! the kubeconfig. `--publish-status-address 203.0.113.10` (a documentation address) is only
//! written into Ingress status, never contacted.

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Client, Resource};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use support::real_api::{apply, Cluster, MANAGER};
use support::{EchoBackend, Pingress, STARTUP};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream as TokioTcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `--publish-status-address`: a documentation address (TEST-NET-3), only written into status.
const STATUS_ADDRESS: &str = "203.0.113.10";

/// `--election-ttl` (seconds).
const ELECTION_TTL: u64 = 5;

/// Time a change in the API may take to be served or written (watch latency + coalescing).
const CHANGE: Duration = Duration::from_secs(15);

/// Polls `cond` every 100 ms until it returns true, panicking with `what` after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// pingress flags for this test's class, namespace and a unique election id.
    fn args(&self) -> Vec<String> {
        let mut args = self.scope_args();
        args.extend(
            [
                "--election-id",
                &format!("{}-leader", self.ns),
                "--election-ttl",
                &ELECTION_TTL.to_string(),
                "--publish-status-address",
                STATUS_ADDRESS,
                "--post-shutdown-grace-period",
                "1",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args
    }

    fn lease_name(&self) -> String {
        format!("{}-leader", self.ns)
    }

    /// Start pingress (pod `pod`) with `kubeconfig`, waiting until it serves its first table.
    async fn start(&self, kubeconfig: &Path, pod: &str) -> Pingress {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Pingress::start_cluster(
            kubeconfig,
            &args,
            &[("POD_NAMESPACE", &self.ns), ("POD_NAME", pod)],
        )
        .await
    }

    /// Selector-less Service `name` with port `http`/80 (endpoints are the test's slices).
    async fn service(&self, name: &str) {
        apply(
            &self.api::<Service>(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name, "namespace": self.ns },
                "spec": {
                    "type": "ClusterIP",
                    "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }],
                },
            }),
        )
        .await;
    }

    /// Manually managed EndpointSlice `slice` of Service `service`: port `http` = `port`, one
    /// ready endpoint per address (none: every endpoint removed).
    async fn slice(&self, slice: &str, service: &str, port: u16, addresses: &[IpAddr]) {
        let endpoints: Vec<Value> = addresses
            .iter()
            .map(|a| json!({ "addresses": [a.to_string()], "conditions": { "ready": true } }))
            .collect();
        apply(
            &self.api::<EndpointSlice>(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": slice, "namespace": self.ns,
                    "labels": {
                        "kubernetes.io/service-name": service,
                        "endpointslice.kubernetes.io/managed-by": MANAGER,
                    },
                },
                "addressType": "IPv4",
                "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
                "endpoints": endpoints,
            }),
        )
        .await;
    }

    /// Ingress `name` of class `class`: `host` `path` (`path_type`) -> Service `web` port 80.
    async fn ingress(&self, name: &str, class: &str, host: &str, path: &str, path_type: &str) {
        apply(
            &self.api::<Ingress>(),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": { "name": name, "namespace": self.ns },
                "spec": {
                    "ingressClassName": class,
                    "rules": [{
                        "host": host,
                        "http": { "paths": [{
                            "path": path, "pathType": path_type,
                            "backend": { "service": { "name": "web", "port": { "number": 80 } } },
                        }] },
                    }],
                },
            }),
        )
        .await;
    }

    async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    /// `status.loadBalancer.ingress` of Ingress `name` as read back from the API (ip or
    /// hostname of each entry).
    async fn load_balancer(&self, name: &str) -> Vec<String> {
        let ing = self
            .api::<Ingress>()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Ingress {name}: {e}"));
        ing.status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip.or(i.hostname))
            .collect()
    }

    /// `spec.holderIdentity` of the election Lease ("" when there is none yet).
    async fn lease_holder(&self) -> String {
        self.api::<Lease>()
            .get_opt(&self.lease_name())
            .await
            .unwrap_or_else(|e| panic!("get Lease: {e}"))
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    }

    /// events.k8s.io/v1 Events regarding Ingress `name` with `type` and `reason`.
    async fn events(&self, name: &str, type_: &str, reason: &str) -> Vec<Event> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list Events: {e}"))
            .items
            .into_iter()
            .filter(|e| {
                e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some("Ingress") && r.name.as_deref() == Some(name)
                    })
            })
            .collect()
    }
}

/// A TCP relay on 127.0.0.1 in front of the API server that holds every connection until
/// [`Relay::release`]: pingress started with [`Relay::kubeconfig`] cannot finish an initial
/// list before that, which makes the initial-sync gate observable against a real API server.
/// TLS is end to end (the relay only copies bytes); the kubeconfig keeps verifying the
/// server's name through `tls-server-name`.
struct Relay {
    kubeconfig: PathBuf,
    open: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    _dir: TempDir,
}

impl Relay {
    async fn start(kubeconfig: &Path) -> Relay {
        let mut kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
        let context = kc
            .current_context
            .clone()
            .expect("the kubeconfig has a current-context");
        let cluster_name = kc
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .expect("the current context names a cluster");
        let cluster = kc
            .clusters
            .iter_mut()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.as_mut())
            .expect("the current context's cluster is in the kubeconfig");
        let server: http::Uri = cluster
            .server
            .as_deref()
            .expect("cluster.server")
            .parse()
            .expect("cluster.server is a URL");
        let https = server.scheme_str() != Some("http");
        let host = server
            .host()
            .expect("cluster.server has a host")
            .to_string();
        let port = server.port_u16().unwrap_or(if https { 443 } else { 80 });
        let upstream = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let local = listener.local_addr().expect("relay addr");
        let path = server.path().trim_end_matches('/');
        let scheme = if https { "https" } else { "http" };
        cluster.server = Some(format!("{scheme}://{local}{path}"));
        if https && cluster.tls_server_name.is_none() {
            cluster.tls_server_name = Some(host.trim_matches(['[', ']']).to_string());
        }
        let dir = TempDir::new().expect("tempdir");
        let file = dir.path().join("kubeconfig");
        // JSON is YAML: the kubeconfig reader accepts it.
        std::fs::write(&file, serde_json::to_vec(&kc).expect("kubeconfig to json"))
            .expect("write relay kubeconfig");

        let (open, opened) = watch::channel(false);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut opened = opened.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = TokioTcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay {
            kubeconfig: file,
            open,
            accepted,
            task,
            _dir: dir,
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Forward every held and future connection to the API server.
    fn release(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Polls until 10 consecutive answers for `host /` come from `backend`.
    async fn wait_only(&self, px: &Pingress, host: &str, backend: &str) {
        eventually(
            CHANGE,
            &format!("{host} only served by {backend}"),
            || async move {
                for _ in 0..10 {
                    match px.try_get(host, "/").await {
                        Ok(r) if r.backend().as_deref() == Some(backend) => {}
                        _ => return false,
                    }
                }
                true
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_gate_then_ingress_endpointslice_and_service_changes_reach_traffic() {
    let Some(c) = Cluster::connect("initial_sync_gate").await else {
        return;
    };
    let ip = c.backend_ip;
    let a = EchoBackend::start_on(ip, "a").await;
    let b = EchoBackend::start_on(ip, "b").await;
    c.service("web").await;
    c.slice("web-0", "web", a.port, &[ip]).await;
    c.ingress("web", &c.class, "web.test", "/", "Prefix").await;

    // Initial-sync gate: the API server is reached through a relay holding every connection,
    // so no initial list can complete: alive, not ready, the proxy not listening.
    let relay = Relay::start(&c.kubeconfig).await;
    let args = c.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let px = Pingress::spawn_cluster(
        &relay.kubeconfig,
        &args,
        &[("POD_NAMESPACE", &c.ns), ("POD_NAME", "pod-a")],
    );
    let px_ref = &px;
    eventually(STARTUP, "/healthz answers 200", || async move {
        px_ref.health("/healthz").await == Some(200)
    })
    .await;
    let relay_ref = &relay;
    eventually(
        STARTUP,
        "pingress connects to the API (relay)",
        || async move { relay_ref.accepted() > 0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(px.health("/readyz").await, Some(503), "{}", px.stderr());
    assert!(
        TcpStream::connect(px.addr()).is_err(),
        "the proxy listens before the first table"
    );
    relay.release();
    let px = px.wait_http().await.expect("pingress starts");
    assert_eq!(px.health("/readyz").await, Some(200));
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("the Ingress reaches backend a");
    let r = px.get("web.test", "/x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", px.stderr());
    let echo = r.echo();
    assert_eq!(echo.backend, "a");
    assert_eq!(echo.path, "/x");

    // Ingress: add, modify the path, delete
    c.ingress("second", &c.class, "second.test", "/only", "Prefix")
        .await;
    px.wait_status("second.test", "/only", 200, CHANGE).await;
    assert_eq!(px.get("second.test", "/other").await.status, 404);
    c.ingress("second", &c.class, "second.test", "/other", "Prefix")
        .await;
    px.wait_status("second.test", "/other", 200, CHANGE).await;
    assert_eq!(px.get("second.test", "/only").await.status, 404);
    c.delete::<Ingress>("second").await;
    px.wait_status("second.test", "/other", 404, CHANGE).await;

    // EndpointSlice: b joins the rotation, then its endpoint is removed and it leaves it
    c.slice("web-1", "web", b.port, &[ip]).await;
    px.wait_backend("web.test", "/", "b", CHANGE)
        .await
        .expect("b joins the rotation");
    c.slice("web-1", "web", b.port, &[]).await;
    c.wait_only(&px, "web.test", "a").await;
    let before = b.requests();
    for _ in 0..20 {
        assert_eq!(px.get("web.test", "/").await.echo().backend, "a");
    }
    assert_eq!(b.requests(), before, "b left the rotation");

    // Service: deleted -> 503, back -> 200
    c.delete::<Service>("web").await;
    px.wait_status("web.test", "/", 503, CHANGE).await;
    c.service("web").await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("the Service is back");

    // IngressClass: deleted -> no longer ours (404); back -> served
    Api::<IngressClass>::all(c.client.clone())
        .delete(&c.class, &DeleteParams::default())
        .await
        .expect("delete IngressClass");
    px.wait_status("web.test", "/", 404, CHANGE).await;
    apply(
        &Api::<IngressClass>::all(c.client.clone()),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": { "name": c.class },
            "spec": { "controller": c.controller },
        }),
    )
    .await;
    px.wait_status("web.test", "/", 200, CHANGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_and_cleared_and_invalid_ingresses_get_events() {
    let Some(c) = Cluster::connect("status_and_events").await else {
        return;
    };
    let a = EchoBackend::start_on(c.backend_ip, "a").await;
    c.service("web").await;
    c.slice("web-0", "web", a.port, &[c.backend_ip]).await;
    c.ingress("web", &c.class, "web.test", "/", "Prefix").await;
    // accepted by the API server, rejected by pingress: an Exact path with regex characters
    c.ingress("bad", &c.class, "bad.test", "/a(.*)", "Exact")
        .await;
    let px = c.start(&c.kubeconfig, "pod-a").await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("web is served");
    let c = &c;

    // the only replica leads and writes the status, read back through the API
    eventually(CHANGE, "pod-a holds the Lease", || async move {
        c.lease_holder().await.starts_with("pod-a_")
    })
    .await;
    eventually(CHANGE, "status of web", || async move {
        c.load_balancer("web").await == [STATUS_ADDRESS]
    })
    .await;

    // a Warning Event on the invalid Ingress, once
    eventually(CHANGE, "Warning InvalidPath Event on bad", || async move {
        !c.events("bad", "Warning", "InvalidPath").await.is_empty()
    })
    .await;
    let warnings = c.events("bad", "Warning", "InvalidPath").await;
    let note = warnings[0].note.clone().unwrap_or_default();
    assert!(note.contains("/a(.*)"), "{note}");
    // unrelated rebuilds do not repeat it
    c.ingress("other", &c.class, "other.test", "/", "Prefix")
        .await;
    px.wait_status("other.test", "/", 200, CHANGE).await;
    eventually(CHANGE, "status of other", || async move {
        c.load_balancer("other").await == [STATUS_ADDRESS]
    })
    .await;
    assert_eq!(c.events("bad", "Warning", "InvalidPath").await.len(), 1);

    // fixed -> served, and a Normal Sync Event
    c.ingress("bad", &c.class, "bad.test", "/a", "Exact").await;
    px.wait_status("bad.test", "/a", 200, CHANGE).await;
    eventually(CHANGE, "Normal Sync Event on bad", || async move {
        !c.events("bad", "Normal", "Sync").await.is_empty()
    })
    .await;

    // an Ingress that leaves the class is no longer served and its status is cleared
    let elsewhere = format!("{}-elsewhere", c.class);
    c.ingress("web", &elsewhere, "web.test", "/", "Prefix")
        .await;
    px.wait_status("web.test", "/", 404, CHANGE).await;
    eventually(CHANGE, "status of web cleared", || async move {
        c.load_balancer("web").await.is_empty()
    })
    .await;
    assert_eq!(c.load_balancer("other").await, [STATUS_ADDRESS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_holds_the_lease_and_leadership_moves_when_it_dies() {
    let Some(c) = Cluster::connect("leader_election").await else {
        return;
    };
    let a = EchoBackend::start_on(c.backend_ip, "a").await;
    c.service("web").await;
    c.slice("web-0", "web", a.port, &[c.backend_ip]).await;
    c.ingress("web", &c.class, "web.test", "/", "Prefix").await;
    let mut px_a = c.start(&c.kubeconfig, "pod-a").await;
    let c = &c;
    eventually(CHANGE, "pod-a holds the Lease", || async move {
        c.lease_holder().await.starts_with("pod-a_")
    })
    .await;
    eventually(CHANGE, "pod-a writes the status", || async move {
        c.load_balancer("web").await == [STATUS_ADDRESS]
    })
    .await;
    let px_b = c.start(&c.kubeconfig, "pod-b").await;
    // every replica serves traffic
    for px in [&px_a, &px_b] {
        px.wait_backend("web.test", "/", "a", CHANGE)
            .await
            .expect("both replicas serve");
    }
    // b does not take the Lease while a renews it (longer than one lease duration)
    tokio::time::sleep(Duration::from_secs(ELECTION_TTL + 2)).await;
    let holder = c.lease_holder().await;
    assert!(holder.starts_with("pod-a_"), "holder {holder:?}");

    // the leader dies without releasing the Lease: b takes over within the lease duration
    // (plus b's retry interval)
    px_a.signal("KILL");
    px_a.wait_exit(CHANGE).await.expect("a exits");
    let killed = Instant::now();
    eventually(
        Duration::from_secs(ELECTION_TTL + 3),
        "pod-b takes the Lease",
        || async move { c.lease_holder().await.starts_with("pod-b_") },
    )
    .await;
    eprintln!("leadership moved after {:?}", killed.elapsed());
    // the new leader writes status
    c.ingress("three", &c.class, "three.test", "/", "Prefix")
        .await;
    px_b.wait_status("three.test", "/", 200, CHANGE).await;
    eventually(CHANGE, "pod-b writes the status of three", || async move {
        c.load_balancer("three").await == [STATUS_ADDRESS]
    })
    .await;

    // b shuts down (SIGTERM): --update-status-on-shutdown (default) clears the status
    let mut px_b = px_b;
    px_b.signal("TERM");
    px_b.wait_exit(Duration::from_secs(15))
        .await
        .expect("b exits");
    for name in ["web", "three"] {
        assert!(
            c.load_balancer(name).await.is_empty(),
            "status of {name} cleared on shutdown\n{}",
            px_b.stderr()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_of_a_served_ingress_keeps_its_last_good_generation() {
    let Some(c) = Cluster::connect("last_good").await else {
        return;
    };
    let a = EchoBackend::start_on(c.backend_ip, "a").await;
    c.service("web").await;
    c.slice("web-0", "web", a.port, &[c.backend_ip]).await;
    c.ingress("web", &c.class, "web.test", "/", "Prefix").await;
    let px = c.start(&c.kubeconfig, "pod-a").await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("web is served");
    let c = &c;
    // accepted by the API server, rejected by pingress: the live host keeps serving
    c.ingress("web", &c.class, "web.test", "/a(.*)", "Exact")
        .await;
    eventually(
        CHANGE,
        "Warning KeptLastGoodVersion on web",
        || async move {
            !c.events("web", "Warning", "KeptLastGoodVersion")
                .await
                .is_empty()
        },
    )
    .await;
    let kept = c.events("web", "Warning", "KeptLastGoodVersion").await;
    let note = kept[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("kept generation 1; generation 2 rejected") && note.contains("/a(.*)"),
        "{note}"
    );
    for _ in 0..20 {
        assert_eq!(px.get("web.test", "/").await.status, StatusCode::OK);
    }
    // a valid edit replaces it (the kept version's "/" also matched "/b": wait for "/" to go)
    c.ingress("web", &c.class, "web.test", "/b", "Prefix").await;
    px.wait_status("web.test", "/", 404, CHANGE).await;
    assert_eq!(px.get("web.test", "/b").await.status, StatusCode::OK);
}

/// Deletes a ValidatingWebhookConfiguration when dropped (also when the test panics).
struct WebhookRegistration {
    client: Client,
    name: String,
}

impl Drop for WebhookRegistration {
    fn drop(&mut self) {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        let (client, name) = (self.client.clone(), self.name.clone());
        let cleaner = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let api = Api::<ValidatingWebhookConfiguration>::all(client);
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    api.delete(&name, &DeleteParams::background()),
                )
                .await;
            });
        });
        let _ = cleaner.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_webhook_refuses_a_bad_edit_before_the_api_server_stores_it() {
    use base64::Engine as _;
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let Some(c) = Cluster::connect("webhook").await else {
        return;
    };
    let a = EchoBackend::start_on(c.backend_ip, "a").await;
    c.service("web").await;
    c.slice("web-0", "web", a.port, &[c.backend_ip]).await;
    c.ingress("web", &c.class, "web.test", "/", "Prefix").await;
    // the API server calls the webhook at https://127.0.0.1:<port>, trusting a test CA
    let cert = support::tls::chain_cert(&["127.0.0.1"], "pingress-admission");
    let dir = TempDir::new().unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    let port = support::free_port();
    let mut args = c.args();
    args.extend([
        "--validating-webhook".to_string(),
        format!("127.0.0.1:{port}"),
        "--validating-webhook-certificate".to_string(),
        crt.to_string_lossy().into_owned(),
        "--validating-webhook-key".to_string(),
        key.to_string_lossy().into_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let px = Pingress::start_cluster(&c.kubeconfig, &args, &[("POD_NAMESPACE", &c.ns)]).await;
    px.wait_backend("web.test", "/", "a", CHANGE)
        .await
        .expect("web is served");
    let ca = base64::engine::general_purpose::STANDARD.encode(cert.ca_pem.as_deref().unwrap());
    apply(
        &Api::<ValidatingWebhookConfiguration>::all(c.client.clone()),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": c.ns },
            "webhooks": [{
                "name": "validate.pingress.ingress.kubernetes.io",
                "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Fail", "timeoutSeconds": 10,
                // only this test's namespace
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": c.ns } },
                "rules": [{ "apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"] }],
                "clientConfig": { "url": format!("https://127.0.0.1:{port}/networking/v1/ingresses"),
                                  "caBundle": ca },
            }],
        }),
    )
    .await;
    let _registration = WebhookRegistration {
        client: c.client.clone(),
        name: c.ns.clone(),
    };
    let bad = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "web", "namespace": c.ns,
                      "annotations": { "nginx.ingress.kubernetes.io/limit-rps": "abc" } },
        "spec": { "ingressClassName": c.class, "rules": [{ "host": "web.test", "http": { "paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] },
    });
    let api = c.api::<Ingress>();
    let pp = PatchParams::apply(MANAGER).force();
    // the API server picks the registration up within a moment
    let c2 = &c;
    let refused = std::sync::Mutex::new(String::new());
    eventually(CHANGE, "the bad edit refused by the webhook", || {
        let (api, pp, bad, refused) = (&api, &pp, &bad, &refused);
        async move {
            match api.patch("web", pp, &Patch::Apply(bad)).await {
                Err(e) => {
                    *refused.lock().unwrap() = e.to_string();
                    true
                }
                // stored before the registration was active: put the good version back
                Ok(_) => {
                    c2.ingress("web", &c2.class, "web.test", "/", "Prefix")
                        .await;
                    false
                }
            }
        }
    })
    .await;
    let msg = refused.lock().unwrap().clone();
    assert!(
        msg.contains("limit-rps") && msg.contains("abc"),
        "refusal names the key and value: {msg}"
    );
    // the stored object is the good one; the host keeps serving
    let stored = api.get("web").await.unwrap();
    assert!(!stored
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("nginx.ingress.kubernetes.io/limit-rps"));
    assert_eq!(px.get("web.test", "/").await.status, StatusCode::OK);
    // a second Ingress taking the same path is refused too
    let clash = api
        .patch(
            "clash",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": { "name": "clash", "namespace": c.ns },
                "spec": { "ingressClassName": c.class, "rules": [{ "host": "web.test", "http": { "paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] },
            })),
        )
        .await;
    let err = clash
        .expect_err("a conflicting Ingress is refused")
        .to_string();
    assert!(err.contains("PathConflict"), "{err}");
}
