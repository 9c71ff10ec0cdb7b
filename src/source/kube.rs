//! Cluster mode: kube-rs reflectors feed the same Snapshot -> compile -> ArcSwap path as the
//! standalone source.
//!
//! - One watch per kind ([`watch`]), each caching into a [`store`] whose map a snapshot shares
//!   (Services and EndpointSlices [`prune`]d of what nothing reads): Ingress, IngressClass, Service, EndpointSlice, Secret
//!   (two: `type=kubernetes.io/tls` and `type=Opaque`, the types certificates, basic-auth
//!   users and CAs come in; not service-account tokens or Helm releases), the controller ConfigMap (`--configmap`, by name), plus
//!   Namespaces with `--watch-namespace-selector` and the `--publish-service` Service.
//! - No table before every store finished its initial list; then Pingora is told we are ready
//!   (the proxy starts after us).
//! - A change after a quiet period rebuilds at once (the leading edge); inside a burst changes
//!   are coalesced into one rebuild from the stores ([`Pacer`]: the first three follow-ups
//!   after 5 ms of quiet, later ones after 100 ms, each at most 500 ms after its first
//!   change; quiet counted from the last change).
//! - Watch errors back off and resume (relisting after a 410 Gone); the stores, and so the
//!   last table, stay as they were while the API server is unreachable.
//! - After every rebuild: diagnostics -> Events ([`events`]); the leader writes Ingress
//!   status ([`status`]).
//!
//! Secrets: only TLS Secrets are read. They are the only Secrets this version can use (the
//! TLS work serves them); auth and CA Secrets referenced by annotations come with those
//! annotations, which are not implemented yet. Watching every Secret would put every token and
//! password of the cluster in our memory for nothing.
//!
//! [`PERMISSIONS`] lists every API call the code makes; deploy/ is tested against it.

pub mod dns;
pub mod events;
pub mod prune;
pub mod status;
pub mod store;
pub mod watch;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use store::Store;
use tokio::sync::watch as tokio_watch;

use crate::diagnostics::Diagnostic;
use crate::publish::Publisher;
use crate::settings::{CompileSettings, KubeSettings};
use crate::snapshot::{key_of, namespace_of, Key, Objects, Snapshot};
use watch::{ChangeSignal, Target, WatchCounters};

const HOLDOFF: Duration = Duration::from_millis(100);
/// The quiet period of the first rebuilds after a leading-edge one: the objects of one
/// `kubectl apply` (a Service, its Ingress) arrive a few ms apart. 5 ms: a new app (three
/// objects) among 10k Ingresses routed in 20-21 ms p50 against 26 ms with 10 ms (propagation
/// bench, fake API); a longer burst still settles to the 100 ms holdoff after three of them.
const QUICK_HOLDOFF: Duration = Duration::from_millis(5);
const MAX_HOLD: Duration = Duration::from_millis(500);
/// How many follow-up rebuilds of a burst wait only QUICK_HOLDOFF (a Service, its
/// EndpointSlice, its Ingress, its TLS Secret).
const QUICK_FOLLOW_UPS: u32 = 3;
/// Log which lists are still missing when the first sync takes longer than this.
const SLOW_SYNC: Duration = Duration::from_secs(10);

/// Field selectors of the Secrets we read: TLS certificates, and Opaque Secrets (basic-auth
/// users, `auth-secret`; CAs). Other types (service-account tokens, Helm releases, docker
/// configs) are never requested.
pub const TLS_SECRET_SELECTOR: &str = "type=kubernetes.io/tls";
pub const OPAQUE_SECRET_SELECTOR: &str = "type=Opaque";

/// Where an RBAC rule must apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every watched namespace (ClusterRole).
    Cluster,
    /// The controller's own namespace (Role).
    ControllerNamespace,
}

/// One API permission the code uses.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    /// API group ("" = core).
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// Why / when it is used.
    pub used_for: &'static str,
}

/// Every API call pingress makes: the single source of truth for deploy/'s RBAC (tested).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "networking.k8s.io",
        resource: "ingresses",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflector",
    },
    Permission {
        group: "networking.k8s.io",
        resource: "ingressclasses",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflector",
    },
    Permission {
        group: "",
        resource: "services",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflector (backends, --publish-service)",
    },
    Permission {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflector",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflectors, type=kubernetes.io/tls and type=Opaque only",
    },
    Permission {
        group: "",
        resource: "namespaces",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        used_for: "reflector, only with --watch-namespace-selector",
    },
    Permission {
        group: "",
        resource: "configmaps",
        verbs: &["list", "watch"],
        scope: Scope::ControllerNamespace,
        used_for: "reflectors of --configmap, --tcp-services-configmap and --udp-services-configmap, by name",
    },
    Permission {
        group: "networking.k8s.io",
        resource: "ingresses/status",
        verbs: &["patch"],
        scope: Scope::Cluster,
        used_for: "status (leader)",
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create"],
        scope: Scope::Cluster,
        used_for: "diagnostics as Events",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "patch"],
        scope: Scope::ControllerNamespace,
        used_for: "leader election (kube-lease-manager)",
    },
    Permission {
        group: "",
        resource: "pods",
        verbs: &["get", "list"],
        scope: Scope::ControllerNamespace,
        used_for: "status hand-over: on shutdown the leader clears Ingress status only when no other replica runs",
    },
];

/// The reflector stores.
pub struct Stores {
    pub ingresses: Store<Ingress>,
    pub ingress_classes: Store<IngressClass>,
    pub services: Store<Service>,
    pub endpoint_slices: Store<EndpointSlice>,
    pub secrets: Store<Secret>,
    pub opaque_secrets: Store<Secret>,
    pub config_map: Option<Store<ConfigMap>>,
    /// `--tcp-services-configmap` / `--udp-services-configmap`, by name.
    pub tcp_services: Option<Store<ConfigMap>>,
    pub udp_services: Option<Store<ConfigMap>>,
    pub namespaces: Option<Store<Namespace>>,
    pub publish_service: Option<Store<Service>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Events applied per store (see [`watch::Generation`]).
    generations: Generations,
    /// What the last snapshot was built from, per kind: a kind whose store holds the very
    /// same objects is handed over as the same map instead of being rebuilt.
    last: std::sync::Mutex<LastSnapshot>,
}

/// The event counts of the stores a snapshot reads.
struct Generations {
    ingresses: watch::Generation,
    ingress_classes: watch::Generation,
    services: watch::Generation,
    endpoint_slices: watch::Generation,
    secrets: Vec<watch::Generation>,
    config_maps: Vec<watch::Generation>,
}

fn sum(gens: &[watch::Generation]) -> u64 {
    // each only grows: the sum changes whenever one does
    gens.iter().map(watch::Generation::get).sum()
}

/// The objects (in store order) each kind's map of the last snapshot was built from. Without
/// a namespace selector, Ingresses, Services and EndpointSlices need none: the snapshot takes
/// the store's own map.
#[derive(Default)]
struct LastSnapshot {
    namespaces: Vec<Arc<Namespace>>,
    ingresses: Built<Ingress, Key>,
    ingress_classes: Built<IngressClass, String>,
    services: Built<Service, Key>,
    endpoint_slices: Built<EndpointSlice, Key>,
    secrets: Built<Secret, Key>,
    config_maps: Built<ConfigMap, Key>,
}

/// The store generation and map of a kind's last snapshot.
type Built<T, K> = Option<(u64, Objects<K, T>)>;

/// The map of a kind whose stores are at `generation`: the last one when they have applied no
/// event since (without reading them); else the last one patched with the keys `changes` gives
/// (`lookup` is the object a key now names, if kept); else, after a (re)list, a new one from
/// the stores' whole contents (`current`, `build`).
fn reuse_or_build<T, K: Ord + Clone>(
    last: &mut Built<T, K>,
    generation: u64,
    changes: impl FnOnce() -> Option<Vec<K>>,
    lookup: impl Fn(&K) -> Option<Arc<T>>,
    current: impl FnOnce() -> Vec<Arc<T>>,
    build: impl FnOnce(&[Arc<T>]) -> Objects<K, T>,
) -> Objects<K, T> {
    if let Some((g, map)) = last {
        if *g == generation {
            return map.clone();
        }
    }
    // read after the generation: a change this misses bumps it again
    let changes = changes();
    let map = match (last.as_ref(), changes) {
        (Some((_, map)), Some(keys)) => {
            let mut m = (**map).clone();
            for k in keys {
                match lookup(&k) {
                    Some(o) => m.insert(k, o),
                    None => m.remove(&k),
                };
            }
            Arc::new(m)
        }
        _ => build(&current()),
    };
    *last = Some((generation, map.clone()));
    map
}

/// The changed keys of every store of a kind (see [`watch::Generation::take_changes`]);
/// `None` when one of them asks for a whole rebuild.
fn changes_of(gens: &[watch::Generation]) -> Option<Vec<Key>> {
    let mut all = Some(Vec::new());
    for g in gens {
        // every store's list is taken, also after one asked for a whole rebuild
        match (g.take_changes(), all.as_mut()) {
            (Some(keys), Some(v)) => v.extend(keys),
            _ => all = None,
        }
    }
    all
}

impl Drop for Stores {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stores {
    /// Start every reflector on the current runtime.
    pub fn spawn(
        client: &kube::Client,
        ks: &KubeSettings,
        changed: Arc<ChangeSignal>,
        counters: Arc<WatchCounters>,
    ) -> Stores {
        let mut tasks = Vec::new();
        let ns = ks.watch_namespace.clone();
        macro_rules! start {
            ($k:ty, $ns:expr, $cfg:expr, $res:expr) => {{
                start!($k, $ns, $cfg, $res, prune::nothing)
            }};
            ($k:ty, $ns:expr, $cfg:expr, $res:expr, $prune:expr) => {{
                let (s, g, t) = watch::spawn::<$k>(
                    client.clone(),
                    Target {
                        namespace: $ns,
                        config: $cfg,
                        resource: $res,
                    },
                    $prune,
                    changed.clone(),
                    counters.clone(),
                );
                tasks.push(t);
                (s, g)
            }};
        }
        let cfg = watcher::Config::default;
        let (ingresses, g_ingresses) =
            start!(Ingress, ns.clone(), cfg(), "networking.k8s.io/ingresses");
        let (ingress_classes, g_ingress_classes) = start!(
            IngressClass,
            None,
            cfg(),
            "networking.k8s.io/ingressclasses"
        );
        let (services, g_services) = start!(Service, ns.clone(), cfg(), "services", prune::service);
        let (endpoint_slices, g_endpoint_slices) = start!(
            EndpointSlice,
            ns.clone(),
            cfg().labels(prune::SERVICE_NAME_LABEL),
            "discovery.k8s.io/endpointslices",
            prune::endpoint_slice
        );
        let (secrets, g_secrets) = start!(
            Secret,
            ns.clone(),
            cfg().fields(TLS_SECRET_SELECTOR),
            "secrets"
        );
        let (opaque_secrets, g_opaque_secrets) = start!(
            Secret,
            ns.clone(),
            cfg().fields(OPAQUE_SECRET_SELECTOR),
            "secrets"
        );
        // the controller, tcp-services and udp-services ConfigMaps: one object each, by name
        let mut named_config_map = |named: &Option<(String, String)>| {
            named
                .as_ref()
                .map(|(cns, name)| {
                    start!(
                        ConfigMap,
                        Some(cns.clone()),
                        cfg().fields(&format!("metadata.name={name}")),
                        "configmaps"
                    )
                })
                .unzip()
        };
        let (config_map, g_config_map) = named_config_map(&ks.configmap);
        let (tcp_services, g_tcp_services) = named_config_map(&ks.tcp_services);
        let (udp_services, g_udp_services) = named_config_map(&ks.udp_services);
        let generations = Generations {
            ingresses: g_ingresses,
            ingress_classes: g_ingress_classes,
            services: g_services,
            endpoint_slices: g_endpoint_slices,
            secrets: vec![g_secrets, g_opaque_secrets],
            config_maps: [g_config_map, g_tcp_services, g_udp_services]
                .into_iter()
                .flatten()
                .collect(),
        };
        let namespaces = ks
            .watch_namespace_selector
            .as_ref()
            .map(|sel| start!(Namespace, None, cfg().labels(sel), "namespaces").0);
        let publish_service = ks.publish_service.as_ref().map(|(pns, name)| {
            let fields = format!("metadata.name={name}");
            start!(
                Service,
                Some(pns.clone()),
                cfg().fields(&fields),
                "services"
            )
            .0
        });
        Stores {
            ingresses,
            ingress_classes,
            services,
            endpoint_slices,
            secrets,
            opaque_secrets,
            config_map,
            tcp_services,
            udp_services,
            namespaces,
            publish_service,
            tasks,
            generations,
            last: Default::default(),
        }
    }

    /// Stores whose initial list is not complete yet (for logs).
    pub fn pending(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let ready = |s: bool, name: &'static str, v: &mut Vec<&'static str>| {
            if !s {
                v.push(name)
            }
        };
        ready(self.ingresses.is_ready(), "ingresses", &mut v);
        ready(self.ingress_classes.is_ready(), "ingressclasses", &mut v);
        ready(self.services.is_ready(), "services", &mut v);
        ready(self.endpoint_slices.is_ready(), "endpointslices", &mut v);
        ready(self.secrets.is_ready(), "secrets", &mut v);
        ready(self.opaque_secrets.is_ready(), "opaque secrets", &mut v);
        if let Some(s) = &self.config_map {
            ready(s.is_ready(), "configmap", &mut v);
        }
        if let Some(s) = &self.tcp_services {
            ready(s.is_ready(), "tcp-services configmap", &mut v);
        }
        if let Some(s) = &self.udp_services {
            ready(s.is_ready(), "udp-services configmap", &mut v);
        }
        if let Some(s) = &self.namespaces {
            ready(s.is_ready(), "namespaces", &mut v);
        }
        if let Some(s) = &self.publish_service {
            ready(s.is_ready(), "publish-service", &mut v);
        }
        v
    }

    /// The controller, tcp-services and udp-services ConfigMap stores (each when configured).
    fn config_map_stores(&self) -> [Option<&Store<ConfigMap>>; 3] {
        [
            self.config_map.as_ref(),
            self.tcp_services.as_ref(),
            self.udp_services.as_ref(),
        ]
    }

    /// Wait until every store has finished its initial list.
    pub async fn wait_ready(&self) {
        self.ingresses.wait_until_ready().await;
        self.ingress_classes.wait_until_ready().await;
        self.services.wait_until_ready().await;
        self.endpoint_slices.wait_until_ready().await;
        self.secrets.wait_until_ready().await;
        self.opaque_secrets.wait_until_ready().await;
        for s in self.config_map_stores().into_iter().flatten() {
            s.wait_until_ready().await;
        }
        if let Some(s) = &self.namespaces {
            s.wait_until_ready().await;
        }
        if let Some(s) = &self.publish_service {
            s.wait_until_ready().await;
        }
    }

    /// Build the snapshot compile reads. With a namespace selector, namespaced objects outside
    /// the selected namespaces are left out (the controller ConfigMap is always kept).
    pub fn snapshot(&self) -> Snapshot {
        let namespaces: Vec<Arc<Namespace>> = self
            .namespaces
            .as_ref()
            .map(|s| s.state())
            .unwrap_or_default();
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let last = &mut *last;
        // another set of selected namespaces: every namespaced kind is filtered anew
        let same_namespaces = last.namespaces.len() == namespaces.len()
            && last
                .namespaces
                .iter()
                .zip(&namespaces)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same_namespaces {
            *last = LastSnapshot::default();
        }
        let allowed: Option<BTreeSet<String>> = self.namespaces.as_ref().map(|_| {
            namespaces
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect()
        });
        last.namespaces = namespaces;
        let keep = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            allowed
                .as_ref()
                .is_none_or(|a| a.contains(&namespace_of(m)))
        };
        fn namespaced<T>(
            objects: &[Arc<T>],
            keep: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
        ) -> Objects<Key, T>
        where
            T: k8s_openapi::Metadata<
                Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            >,
        {
            Arc::new(
                objects
                    .iter()
                    .filter(|o| keep(o.metadata()))
                    .map(|o| (key_of(o.metadata()), o.clone()))
                    .collect(),
            )
        }
        let chained = |stores: &[Option<&Store<ConfigMap>>]| -> Vec<Arc<ConfigMap>> {
            stores.iter().flatten().flat_map(|s| s.state()).collect()
        };
        let g = &self.generations;
        // the object under a key when the namespace selector keeps it
        fn kept<T>(
            o: Option<Arc<T>>,
            keep: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
        ) -> Option<Arc<T>>
        where
            T: k8s_openapi::Metadata<
                Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            >,
        {
            o.filter(|o| keep(o.metadata()))
        }
        // a kind one store watches: the store's own map, shared; with a namespace selector,
        // the last filtered map patched at the changed keys
        fn one_store<T>(
            store: &Store<T>,
            last: &mut Built<T, Key>,
            generation: &watch::Generation,
            selected: bool,
            keep: &dyn Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
        ) -> Objects<Key, T>
        where
            T: k8s_openapi::Metadata<
                Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            >,
        {
            if !selected {
                return store.objects();
            }
            reuse_or_build(
                last,
                generation.get(),
                || changes_of(std::slice::from_ref(generation)),
                |k| kept(store.get(k), keep),
                || store.state(),
                |o| namespaced(o, keep),
            )
        }
        let selected = allowed.is_some();
        Snapshot {
            ingresses: one_store(
                &self.ingresses,
                &mut last.ingresses,
                &g.ingresses,
                selected,
                &keep,
            ),
            // cluster-scoped and few: built whole when changed
            ingress_classes: reuse_or_build(
                &mut last.ingress_classes,
                g.ingress_classes.get(),
                || None,
                |_| None,
                || self.ingress_classes.state(),
                |o| {
                    Arc::new(
                        o.iter()
                            .map(|c| (c.metadata.name.clone().unwrap_or_default(), c.clone()))
                            .collect(),
                    )
                },
            ),
            services: one_store(
                &self.services,
                &mut last.services,
                &g.services,
                selected,
                &keep,
            ),
            endpoint_slices: one_store(
                &self.endpoint_slices,
                &mut last.endpoint_slices,
                &g.endpoint_slices,
                selected,
                &keep,
            ),
            // a Secret that changes type moves between the two stores: look in both
            secrets: reuse_or_build(
                &mut last.secrets,
                sum(&g.secrets),
                || changes_of(&g.secrets),
                |k| {
                    kept(
                        self.secrets.get(k).or_else(|| self.opaque_secrets.get(k)),
                        &keep,
                    )
                },
                || {
                    self.secrets
                        .state()
                        .into_iter()
                        .chain(self.opaque_secrets.state())
                        .collect()
                },
                |o| namespaced(o, &keep),
            ),
            // the controller ConfigMap is always kept, whatever the namespace selector
            config_maps: reuse_or_build(
                &mut last.config_maps,
                sum(&g.config_maps),
                || changes_of(&g.config_maps),
                |k| {
                    self.config_map_stores()
                        .into_iter()
                        .flatten()
                        .find_map(|s| s.get(k))
                },
                || chained(&self.config_map_stores()),
                |o| namespaced(o, &|_| true),
            ),
            ..Snapshot::default()
        }
    }
}

/// Resolve the client configuration: `--kubeconfig`, else in-cluster, else $KUBECONFIG /
/// ~/.kube/config. Errors say what was tried.
pub async fn client_config(ks: &KubeSettings) -> anyhow::Result<kube::Config> {
    use anyhow::Context;
    let mut config = resolved_config(ks).await?;
    // --apiserver-host / --certificate-authority (ingress-nginx's flags) override the server
    if let Some(url) = &ks.apiserver_host {
        config.cluster_url = url
            .parse()
            .with_context(|| format!("--apiserver-host {url:?}: not a URL"))?;
    }
    if let Some(path) = &ks.certificate_authority {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path)
            .with_context(|| format!("--certificate-authority {}: cannot read", path.display()))?;
        let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--certificate-authority {}: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!(
                "--certificate-authority {}: no PEM certificate in it",
                path.display()
            );
        }
        config.root_cert = Some(certs);
    }
    Ok(config)
}

async fn resolved_config(ks: &KubeSettings) -> anyhow::Result<kube::Config> {
    use anyhow::Context;
    if let Some(path) = &ks.kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("--kubeconfig {}: cannot read", path.display()))?;
        return kube::Config::from_custom_kubeconfig(
            kc,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .with_context(|| format!("--kubeconfig {}: invalid", path.display()));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster().context("in-cluster configuration");
    }
    kube::Config::infer().await.context(
        "no Kubernetes API configuration: not in a cluster, no --kubeconfig, and no $KUBECONFIG \
         or ~/.kube/config (use --manifests DIR for standalone mode)",
    )
}

/// Every object compile reads, listed once (`pingress check`): get/list only, nothing is
/// written. A kind that cannot be listed is reported (`ListFailed`) and the rest is checked.
pub async fn list_snapshot(
    config: &kube::Config,
    ks: &KubeSettings,
) -> (Snapshot, Vec<Diagnostic>) {
    use kube::api::ListParams;
    let mut snap = Snapshot::default();
    let mut failed = Vec::new();
    let client = match kube::Client::try_from(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            failed.push(list_failed("client", &e));
            return (snap, failed);
        }
    };
    fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        }
    }
    /// Every object of one kind, into the snapshot; a failure is reported, not fatal.
    async fn list_into<K>(
        api: kube::Api<K>,
        kind: &str,
        mut add: impl FnMut(K),
        failed: &mut Vec<Diagnostic>,
    ) where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        match api.list(&ListParams::default()).await {
            Ok(l) => l.items.into_iter().for_each(&mut add),
            Err(e) => failed.push(list_failed(kind, &e)),
        }
    }
    let ns = ks.watch_namespace.as_deref();
    let f = &mut failed;
    let api = kube::Api::<IngressClass>::all(client.clone());
    list_into(api, "IngressClass", |o| snap.add_ingress_class(o), f).await;
    let add = |o: Ingress| snap.add_ingress(o);
    list_into(scoped(&client, ns), "Ingress", add, f).await;
    let add = |o: Service| snap.add_service(o);
    list_into(scoped(&client, ns), "Service", add, f).await;
    let add = |o: EndpointSlice| snap.add_endpoint_slice(o);
    list_into(scoped(&client, ns), "EndpointSlice", add, f).await;
    let add = |o: Secret| snap.add_secret(o);
    list_into(scoped(&client, ns), "Secret", add, f).await;
    let add = |o: ConfigMap| snap.add_config_map(o);
    list_into(scoped(&client, ns), "ConfigMap", add, f).await;
    // the controller ConfigMap may live outside the watched namespace
    if let (Some(_), Some((cns, name))) = (ns, &ks.configmap) {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), cns);
        if let Ok(Some(cm)) = api.get_opt(name).await {
            snap.add_config_map(cm);
        }
    }
    (snap, failed)
}

fn list_failed(kind: &str, e: &dyn std::fmt::Display) -> Diagnostic {
    Diagnostic::warning(
        crate::diagnostics::ObjectRef::new("List", "", kind),
        "ListFailed",
        format!("cannot list {kind}: {e}; checked without them"),
    )
}

/// What the listeners need before the first table: the controller ConfigMap, read once
/// (listing by name, the permission the watch already has). The TLS listener's
/// `ssl-protocols`/`ssl-ciphers` come from it; a failure keeps the defaults (logged).
pub async fn startup_snapshot(config: &kube::Config, settings: &CompileSettings) -> Snapshot {
    let mut snap = Snapshot::default();
    let Some((ns, name)) = &settings.configmap else {
        return snap;
    };
    let listed = async {
        let client = kube::Client::try_from(config.clone())?;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, ns);
        let lp = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
        api.list(&lp).await
    };
    match tokio::time::timeout(Duration::from_secs(10), listed).await {
        Ok(Ok(list)) => {
            for cm in list.items {
                snap.add_config_map(cm);
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, configmap = %format!("{ns}/{name}"), "cannot read the controller ConfigMap at start; TLS listener settings use the defaults")
        }
        Err(_) => {
            tracing::warn!(configmap = %format!("{ns}/{name}"), "reading the controller ConfigMap at start timed out; TLS listener settings use the defaults")
        }
    }
    snap
}

/// The cluster source as a Pingora background service.
pub struct KubeSource {
    config: kube::Config,
    kube: KubeSettings,
    compile: CompileSettings,
    publisher: Arc<Publisher>,
    pub counters: Arc<WatchCounters>,
    /// The snapshot of the last rebuild (none before the first sync): the admission webhook
    /// reviews against it.
    pub latest: Arc<ArcSwapOption<Snapshot>>,
}

impl KubeSource {
    pub fn new(
        config: kube::Config,
        kube: KubeSettings,
        compile: CompileSettings,
        publisher: Arc<Publisher>,
    ) -> Self {
        KubeSource {
            config,
            kube,
            compile,
            publisher,
            counters: Arc::default(),
            latest: Arc::default(),
        }
    }
}

/// Resolve the ExternalName hosts in use after each rebuild and every TTL; publish the
/// diagnostics when they change (each new one logged once).
async fn dns_loop(
    mut uses: tokio_watch::Receiver<dns::Uses>,
    out: tokio_watch::Sender<Vec<Diagnostic>>,
) {
    let mut resolver = dns::Resolver::default();
    loop {
        let current = uses.borrow_and_update().clone();
        let failed = resolver.failures(&current).await;
        let diags = dns::diagnostics(&current, &failed);
        if diags != *out.borrow() {
            for d in diags.iter().filter(|d| !out.borrow().contains(d)) {
                d.log();
            }
            if out.send(diags).is_err() {
                return;
            }
        }
        tokio::select! {
            r = uses.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(dns::TTL) => {}
        }
    }
}

/// How long a rebuild waits for the other watches to come back once one has resumed after an
/// outage (the watch back-off is capped at 3 s, so all are normally back well within it).
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// Before a rebuild during or after an outage: wait until no watch is failing, at most
/// SETTLE_MAX, so the table is rebuilt once from every kind re-synced rather than from a mix.
/// A kind that stays down (a 403 on one resource) delays rebuilds by SETTLE_MAX, no more.
async fn settle(counters: &WatchCounters) {
    let mut rx = counters.failing.subscribe();
    if *rx.borrow_and_update() == 0 {
        return;
    }
    let waited = tokio::time::timeout(SETTLE_MAX, rx.wait_for(|n| *n == 0)).await;
    if waited.is_err() {
        tracing::info!(
            failing = *counters.failing.borrow(),
            "rebuilding while some watches are still failing"
        );
    }
}

/// When to rebuild after a change. The leading edge: a change after a quiet period (the last
/// rebuild started at least HOLDOFF ago) rebuilds at once, so one change is routed without
/// waiting. Inside a burst, coalesce: the first QUICK_FOLLOW_UPS follow-up rebuilds after
/// QUICK_HOLDOFF of quiet (what one `kubectl apply` writes arrives a few ms apart, one object
/// per request, so the third object of an app is not held 100 ms behind the first two), later
/// ones after HOLDOFF; each at most MAX_HOLD after its first change. Under constant churn that
/// is at most the leading rebuild, three quick follow-ups and then one rebuild per MAX_HOLD.
/// Changes that arrive while a rebuild runs wait for it, then count here. Quiet is counted
/// from the last change, not from when the wait began: the Ingress that arrived 2 ms into a
/// 10 ms rebuild for its Service has been quiet for 8 ms when that rebuild ends, so its own
/// rebuild starts at once, not QUICK_HOLDOFF later.
#[derive(Debug, Default)]
struct Pacer {
    /// When the last rebuild started.
    last_rebuild: Option<tokio::time::Instant>,
    /// The first change not rebuilt yet: kept when a wait is cancelled (the select below
    /// drops it when another branch fires), so that change is not lost.
    pending: Option<tokio::time::Instant>,
    /// Rebuilds since the leading edge of the current burst.
    follow_ups: u32,
}

impl Pacer {
    /// How long the changes must stay quiet before rebuilding, for a change pending at `now`;
    /// `None`: rebuild at once (the leading edge).
    fn holdoff(&self, now: tokio::time::Instant) -> Option<Duration> {
        match self.last_rebuild {
            Some(t) if now.saturating_duration_since(t) < HOLDOFF => {
                Some(if self.follow_ups < QUICK_FOLLOW_UPS {
                    QUICK_HOLDOFF
                } else {
                    HOLDOFF
                })
            }
            _ => None,
        }
    }

    /// A rebuild starts at `now`.
    fn started(&mut self, now: tokio::time::Instant, leading: bool) {
        self.last_rebuild = Some(now);
        self.pending = None;
        self.follow_ups = if leading { 0 } else { self.follow_ups + 1 };
    }

    /// When a rebuild for the change pending since `first` may start: once the changes have
    /// been quiet for `quiet` since the last one (`last`), at most MAX_HOLD after `first`.
    fn rebuild_at(
        first: tokio::time::Instant,
        last: Option<tokio::time::Instant>,
        quiet: Duration,
    ) -> tokio::time::Instant {
        (last.unwrap_or(first) + quiet).min(first + MAX_HOLD)
    }

    /// Wait until a rebuild should start (see the type doc); cancel-safe.
    async fn wait(&mut self, changed: &ChangeSignal) {
        let first = match self.pending {
            Some(t) => t,
            None => {
                changed.notified().await;
                let t = tokio::time::Instant::now();
                self.pending = Some(t);
                t
            }
        };
        let Some(quiet) = self.holdoff(first) else {
            self.started(tokio::time::Instant::now(), true);
            return;
        };
        loop {
            let at = Self::rebuild_at(first, changed.last(), quiet);
            let wait = at.saturating_duration_since(tokio::time::Instant::now());
            if wait.is_zero() {
                break;
            }
            // a change inside the wait moves `last`: look again (and take its permit)
            let _ = tokio::time::timeout(wait, changed.notified()).await;
        }
        self.started(tokio::time::Instant::now(), false);
    }
}

#[async_trait]
impl BackgroundService for KubeSource {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let client = match kube::Client::try_from(self.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kubernetes client; no route table will be served");
                return;
            }
        };
        let changed = Arc::new(ChangeSignal::default());
        let stores = Stores::spawn(&client, &self.kube, changed.clone(), self.counters.clone());
        tracing::info!(
            namespace = self.kube.watch_namespace.as_deref().unwrap_or("*"),
            "cluster mode: waiting for the initial list of every watched kind"
        );
        let started = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stores.wait_ready() => break,
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(SLOW_SYNC) => {
                    tracing::warn!(pending = ?stores.pending(), waited_s = started.elapsed().as_secs(),
                        "still waiting for the initial list (API server reachable? RBAC?)");
                }
            }
        }
        let mut planner = events::EventPlanner::new(!self.kube.disable_sync_events);
        let sink = events::EventSink::spawn(client.clone(), self.kube.identity.clone());
        // ExternalName hosts that do not resolve: found by a task, reported with the compile's
        // diagnostics
        let (uses_tx, uses_rx) = tokio_watch::channel(dns::Uses::new());
        let (dns_tx, mut dns_rx) = tokio_watch::channel(Vec::<Diagnostic>::new());
        let dns_task = tokio::spawn(dns_loop(uses_rx, dns_tx));
        let mut compile_diags: Vec<Diagnostic> = Vec::new();
        let snap = Arc::new(stores.snapshot());
        self.latest.store(Some(snap.clone()));
        if let Some(p) = self.publisher.rebuild(&snap) {
            sink.send(planner.plan(&snap, &p.diagnostics));
            compile_diags = p.diagnostics;
        }
        uses_tx.send_replace(dns::external_names(&snap, &self.compile));
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "initial sync complete; serving"
        );
        ready.notify_ready();

        let (snap_tx, snap_rx) = tokio_watch::channel(snap);
        let (stop_tx, stop_rx) = tokio_watch::channel(false);
        let status_task = self.kube.update_status.then(|| {
            tokio::spawn(status::run(status::StatusInputs {
                client: client.clone(),
                kube: self.kube.clone(),
                compile: self.compile.clone(),
                snapshots: snap_rx,
                publish_service: stores.publish_service.clone(),
                shutdown: stop_rx,
            }))
        });

        let combined = |compile: &[Diagnostic], dns: &[Diagnostic]| -> Vec<Diagnostic> {
            compile.iter().chain(dns).cloned().collect()
        };
        let mut pacer = Pacer::default();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = pacer.wait(&changed) => {
                    settle(&self.counters).await;
                    let taken = std::time::Instant::now();
                    let snap = Arc::new(stores.snapshot());
                    tracing::debug!(
                        objects = snap.object_count(),
                        elapsed_ms = taken.elapsed().as_secs_f64() * 1000.0,
                        "snapshot taken"
                    );
                    self.latest.store(Some(snap.clone()));
                    // on the blocking pool: the watches go on taking events meanwhile, so
                    // the pacer knows when the changes behind this rebuild really came
                    let publisher = self.publisher.clone();
                    let building = snap.clone();
                    let rebuilt = tokio::task::spawn_blocking(move || publisher.rebuild(&building))
                        .await
                        .unwrap_or_else(|e| {
                            // rebuild catches its own panics: only a runtime shutting down
                            tracing::error!(error = %e, "rebuild task did not finish; the last table stays");
                            None
                        });
                    if let Some(p) = rebuilt {
                        compile_diags = p.diagnostics;
                        let dns_diags = dns_rx.borrow().clone();
                        sink.send(planner.plan(&snap, &combined(&compile_diags, &dns_diags)));
                        uses_tx.send_replace(dns::external_names(&snap, &self.compile));
                        snap_tx.send_replace(snap);
                    }
                }
                r = dns_rx.changed() => {
                    if r.is_err() {
                        continue;
                    }
                    let dns_diags = dns_rx.borrow_and_update().clone();
                    let snap = snap_tx.borrow().clone();
                    sink.send(planner.plan(&snap, &combined(&compile_diags, &dns_diags)));
                }
            }
        }
        dns_task.abort();
        tracing::info!("cluster source stopping");
        let _ = stop_tx.send(true);
        // the status clear may use the whole grace period (Pingora drops the runtimes after it)
        if let Some(t) = status_task {
            let bound = self.kube.shutdown_grace.max(Duration::from_secs(1));
            if tokio::time::timeout(bound, t).await.is_err() {
                tracing::warn!(
                    grace_s = bound.as_secs(),
                    "status clear on shutdown did not finish within --post-shutdown-grace-period"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_rebuilds_at_once_then_after_a_short_then_a_long_quiet_period() {
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = Pacer::default();
        // first change ever, and a change after a quiet period: at once (leading edge)
        assert_eq!(p.holdoff(t0), None);
        p.started(t0, true);
        assert_eq!(p.holdoff(ms(100)), None);
        // a change 5 ms after a leading rebuild (the Ingress after its Service): 5 ms quiet,
        // and so for the next two follow-ups (one apply writes a few objects a few ms apart)
        assert_eq!(p.holdoff(ms(5)), Some(QUICK_HOLDOFF));
        p.started(ms(15), false);
        assert_eq!(p.holdoff(ms(20)), Some(QUICK_HOLDOFF));
        p.started(ms(30), false);
        assert_eq!(p.holdoff(ms(35)), Some(QUICK_HOLDOFF));
        p.started(ms(45), false);
        // the burst goes on: 100 ms quiet from now on
        assert_eq!(p.holdoff(ms(50)), Some(HOLDOFF));
        p.started(ms(120), false);
        assert_eq!(p.holdoff(ms(150)), Some(HOLDOFF));
        // quiet for HOLDOFF since the last rebuild: a new burst, at once again
        assert_eq!(p.holdoff(ms(220)), None);
        p.started(ms(220), true);
        assert_eq!(p.holdoff(ms(221)), Some(QUICK_HOLDOFF));
    }

    #[tokio::test]
    async fn a_change_pending_when_a_wait_is_cancelled_is_not_lost() {
        use futures_util::FutureExt;
        let changed = ChangeSignal::default();
        let mut p = Pacer::default();
        p.started(tokio::time::Instant::now(), true);
        changed.record();
        // the change is taken, then the wait is dropped inside its quiet period
        assert!(p.wait(&changed).now_or_never().is_none());
        assert!(p.pending.is_some());
        // no new notification: the next wait still rebuilds for the pending change
        tokio::time::timeout(Duration::from_secs(5), p.wait(&changed))
            .await
            .expect("the pending change rebuilds");
        assert!(p.pending.is_none());
        assert_eq!(p.follow_ups, 1);
    }

    #[test]
    fn quiet_counts_from_the_last_change() {
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // noticed at 10 ms (after a rebuild), changed at 2 ms: the quiet counts from 2 ms
        assert_eq!(
            Pacer::rebuild_at(ms(10), Some(ms(2)), QUICK_HOLDOFF),
            ms(2) + QUICK_HOLDOFF
        );
        // a later change moves it
        assert_eq!(
            Pacer::rebuild_at(ms(10), Some(ms(15)), QUICK_HOLDOFF),
            ms(15) + QUICK_HOLDOFF
        );
        // never later than MAX_HOLD after the first change
        assert_eq!(
            Pacer::rebuild_at(ms(10), Some(ms(600)), HOLDOFF),
            ms(10) + MAX_HOLD
        );
        assert_eq!(
            Pacer::rebuild_at(ms(10), None, QUICK_HOLDOFF),
            ms(10) + QUICK_HOLDOFF
        );
    }

    #[test]
    fn a_change_already_quiet_when_the_wait_begins_rebuilds_at_once() {
        use futures_util::FutureExt;
        let now = tokio::time::Instant::now();
        let ago = |n| now.checked_sub(Duration::from_millis(n)).expect("instant");
        let changed = ChangeSignal::default();
        let mut p = Pacer::default();
        // a rebuild started 30 ms ago (the burst is on: a quiet period is due); the next
        // change came 2 ms into it and the rebuild took 20 ms, so it is quiet for 18 ms now
        p.started(ago(30), true);
        changed.record_at(ago(28));
        assert!(
            p.wait(&changed).now_or_never().is_some(),
            "quiet since the change for more than QUICK_HOLDOFF: no wait"
        );
        assert_eq!(p.follow_ups, 1);
    }

    #[test]
    fn an_unchanged_kind_is_handed_over_as_the_same_map() {
        let svc = |name: &str| {
            let mut s = Service::default();
            s.metadata.namespace = Some("app".into());
            s.metadata.name = Some(name.into());
            Arc::new(s)
        };
        let (a, b) = (svc("a"), svc("b"));
        let build = |o: &[Arc<Service>]| -> Objects<Key, Service> {
            Arc::new(o.iter().map(|s| (key_of(&s.metadata), s.clone())).collect())
        };
        let mut last: Built<Service, Key> = None;
        let none = || -> Option<Arc<Service>> { unreachable!("looked up") };
        let first = reuse_or_build(
            &mut last,
            1,
            || None,
            |_| none(),
            || vec![a.clone(), b.clone()],
            build,
        );
        assert_eq!(first.len(), 2);
        // the same generation: the last map, without reading the store or its changes
        let unread = reuse_or_build(
            &mut last,
            1,
            || unreachable!("changes read"),
            |_| none(),
            || unreachable!("store read"),
            build,
        );
        assert!(Arc::ptr_eq(&first, &unread));
        // a new version of one object: the last map patched at its key, the store not read
        let b2 = Arc::new((*b).clone());
        let kb = key_of(&b.metadata);
        let next = reuse_or_build(
            &mut last,
            2,
            || Some(vec![kb.clone()]),
            |k| (*k == kb).then(|| b2.clone()),
            || unreachable!("store read"),
            build,
        );
        assert!(!Arc::ptr_eq(&first, &next));
        assert!(Arc::ptr_eq(&next[&kb], &b2));
        assert!(Arc::ptr_eq(&next[&key_of(&a.metadata)], &a));
        // one gone: removed at its key
        let fewer = reuse_or_build(
            &mut last,
            3,
            || Some(vec![kb.clone()]),
            |_| None,
            || unreachable!("store read"),
            build,
        );
        assert_eq!(fewer.len(), 1);
        // a relist: built from the whole store
        let whole = reuse_or_build(
            &mut last,
            4,
            || None,
            |_| none(),
            || vec![a.clone(), b2.clone()],
            build,
        );
        assert_eq!(whole.len(), 2);
    }

    #[test]
    fn every_watched_kind_has_list_and_watch() {
        for r in [
            "ingresses",
            "ingressclasses",
            "services",
            "endpointslices",
            "secrets",
            "configmaps",
            "namespaces",
        ] {
            let p = PERMISSIONS.iter().find(|p| p.resource == r).unwrap();
            assert!(
                p.verbs.contains(&"list") && p.verbs.contains(&"watch"),
                "{r}"
            );
        }
    }
}
