//! A real Kubernetes API server, for the tests and benches that opt in with
//! `PINGRESS_TEST_KUBECONFIG` (tests/real_cluster.rs, benches/propagation.rs): the gate, the
//! test's own Namespace and IngressClass (deleted on drop), server-side apply.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// The variable naming the kubeconfig of the cluster to test against.
pub const ENV: &str = "PINGRESS_TEST_KUBECONFIG";

/// Field manager of the objects the tests apply (server-side apply) and `managed-by` label.
pub const MANAGER: &str = "pingress-tests";

/// A client for the current context of `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, String> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("{ENV}={}: {e}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{ENV}={}: {e}", kubeconfig.display()))?;
    Client::try_from(config).map_err(|e| format!("kube client: {e}"))
}

/// A non-loopback IPv4 address of this machine that a socket can bind: from `ip -4 -o addr`
/// (global scope), else the source address of the default route (a UDP `connect` sends
/// nothing).
pub fn non_loopback_ipv4() -> Option<IpAddr> {
    let listed = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let from_ip = listed.lines().filter_map(|line| {
        let mut tokens = line.split_whitespace();
        tokens.find(|t| *t == "inet")?;
        tokens.next()?.split('/').next()?.parse::<Ipv4Addr>().ok()
    });
    let routed = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
    from_ip
        .chain(routed)
        .find(|ip| {
            !ip.is_loopback()
                && !ip.is_unspecified()
                && !ip.is_link_local()
                && std::net::TcpListener::bind((*ip, 0)).is_ok()
        })
        .map(IpAddr::V4)
}

/// Deletes the test's Namespace (with everything in it) and IngressClass on drop, also during
/// a panic. Best effort: failures are printed, never raised. Runs on its own thread and runtime
/// because drop may happen inside the test's runtime.
pub struct Cleanup {
    pub kubeconfig: PathBuf,
    namespace: String,
    pub class: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let ns = self.namespace.clone();
        let class = self.class.clone();
        let cleaner = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("cleanup: no runtime: {e}"),
            };
            rt.block_on(async move {
                let client = match client_for(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => return eprintln!("cleanup: {e}"),
                };
                let dp = DeleteParams::background();
                let work = async {
                    match Api::<Namespace>::all(client.clone()).delete(&ns, &dp).await {
                        Ok(_) => eprintln!("cleanup: deleting namespace {ns}"),
                        Err(e) => eprintln!("cleanup: cannot delete namespace {ns}: {e}"),
                    }
                    match Api::<IngressClass>::all(client.clone())
                        .delete(&class, &dp)
                        .await
                    {
                        Ok(_) => eprintln!("cleanup: deleted IngressClass {class}"),
                        Err(e) => eprintln!("cleanup: cannot delete IngressClass {class}: {e}"),
                    }
                };
                if tokio::time::timeout(Duration::from_secs(30), work)
                    .await
                    .is_err()
                {
                    eprintln!("cleanup: timed out deleting namespace {ns} / IngressClass {class}");
                }
            });
        });
        let _ = cleaner.join();
    }
}

/// A real cluster with this test's Namespace and IngressClass.
pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// Namespace of every object of the test (also the IngressClass name and the Lease's
    /// namespace).
    pub ns: String,
    pub class: String,
    pub controller: String,
    /// Non-loopback address of this machine the echo backends listen on.
    pub backend_ip: IpAddr,
    _cleanup: Cleanup,
}

impl Cluster {
    /// The gate every test starts with: `None` (after printing why to stderr) when there is no
    /// cluster to test against or no non-loopback address for the backends; the caller returns
    /// early. Otherwise the test Namespace and IngressClass exist.
    pub async fn connect(test: &str) -> Option<Cluster> {
        let Some(path) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else {
            eprintln!("{test}: skipped: {ENV} not set");
            return None;
        };
        let Some(backend_ip) = non_loopback_ipv4() else {
            eprintln!(
                "{test}: skipped: this machine has no non-loopback IPv4 address to put the \
                 backends on (a real API server refuses loopback addresses in EndpointSlices)"
            );
            return None;
        };
        let kubeconfig = PathBuf::from(path);
        let client = client_for(&kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = format!("{:08x}", fastrand::u32(..));
        let ns = format!("pingress-test-{id}");
        let cluster = Cluster {
            client,
            kubeconfig: kubeconfig.clone(),
            class: ns.clone(),
            controller: format!("k8s.io/pingress-test-{id}"),
            backend_ip,
            _cleanup: Cleanup {
                kubeconfig,
                namespace: ns.clone(),
                class: ns.clone(),
            },
            ns,
        };
        eprintln!(
            "{test}: namespace {}, controller class {}, backends on {backend_ip}",
            cluster.ns, cluster.controller
        );
        let labels = json!({ "app.kubernetes.io/managed-by": MANAGER });
        apply(
            &Api::<Namespace>::all(cluster.client.clone()),
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": cluster.ns, "labels": labels },
            }),
        )
        .await;
        apply(
            &Api::<IngressClass>::all(cluster.client.clone()),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": { "name": cluster.class, "labels": labels },
                "spec": { "controller": cluster.controller },
            }),
        )
        .await;
        Some(cluster)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }
}

/// Server-side apply of `obj` (creates or updates it).
pub async fn apply<K>(api: &Api<K>, obj: Value) -> K
where
    K: Clone + DeserializeOwned + Debug,
{
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", obj["kind"]))
}

impl Cluster {
    /// The flags that confine pingress to this cluster's IngressClass and Namespace.
    pub fn scope_args(&self) -> Vec<String> {
        [
            "--controller-class",
            &self.controller,
            "--ingress-class",
            &self.class,
            "--watch-namespace",
            &self.ns,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The manifests builders' YAML (tests/support/manifests.rs) made fit for this cluster:
    /// every object in this Namespace; IngressClass documents left out (this cluster's own
    /// class exists) and Ingresses moved to that class; Services headless (a real API server
    /// has a few hundred ClusterIPs); EndpointSlice addresses at [`Cluster::backend_ip`] (it
    /// refuses loopback ones).
    pub fn adapt(&self, yaml: &str) -> Vec<Value> {
        let ip = self.backend_ip.to_string();
        super::fake_apiserver::yaml_values(yaml)
            .into_iter()
            .filter_map(|mut v| {
                match v["kind"].as_str()? {
                    "IngressClass" => return None,
                    "Ingress" => v["spec"]["ingressClassName"] = json!(self.class),
                    "Service" => v["spec"]["clusterIP"] = json!("None"),
                    "EndpointSlice" => {
                        if let Some(eps) = v["endpoints"].as_array_mut() {
                            for ep in eps {
                                ep["addresses"] = json!([ip]);
                            }
                        }
                    }
                    _ => {}
                }
                v["metadata"]["namespace"] = json!(self.ns);
                Some(v)
            })
            .collect()
    }

    /// Server-side apply of every document of `yaml` (see [`Cluster::adapt`]), in order.
    pub async fn apply_yaml(&self, yaml: &str) {
        for v in self.adapt(yaml) {
            self.apply_value(v).await;
        }
    }

    /// Server-side apply of many documents, `parallel` requests at a time (for loading
    /// thousands of objects).
    pub async fn apply_all(&self, yaml: &str, parallel: usize) {
        use futures_util::StreamExt;
        futures_util::stream::iter(self.adapt(yaml))
            .map(|v| self.apply_value(v))
            .buffer_unordered(parallel)
            .collect::<Vec<()>>()
            .await;
    }

    /// Server-side apply of one namespaced object of any kind.
    pub async fn apply_value(&self, v: Value) {
        let (group, version) = match v["apiVersion"].as_str().unwrap_or_default().split_once('/') {
            Some((g, ver)) => (g.to_string(), ver.to_string()),
            None => (
                String::new(),
                v["apiVersion"].as_str().unwrap_or_default().to_string(),
            ),
        };
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
        apply(&api, v).await;
    }
}
