//! Resolve an Ingress service backend to a compiled [`Backend`]: Service port by number or
//! name, then ready EndpointSlice endpoints (slice port matched by name, its number used),
//! ExternalName Services, or an unavailable (503) backend with a diagnostic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::annotations::template::{split_url, Template};
use crate::route::{Backend, Endpoints, RouteTable, Target, UrlTarget};
use crate::snapshot::{Key, Objects, Snapshot};

/// Label joining EndpointSlices to their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The name of the Service an EndpointSlice belongs to: its `kubernetes.io/service-name`
/// label, or, in a slice that cluster mode pruned (`source::kube::prune::endpoint_slice`:
/// empty labels), `selfLink`, where pruning moved it.
pub fn slice_owner(slice: &EndpointSlice) -> Option<&str> {
    let labels = slice.metadata.labels.as_ref()?;
    match labels.get(SERVICE_NAME_LABEL) {
        Some(owner) => Some(owner),
        None if labels.is_empty() => slice.metadata.self_link.as_deref(),
        None => None,
    }
}

/// Port of an Ingress backend as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    Number(i32),
    Name(String),
    /// The controller default backend: the Service's first port.
    First,
}

impl PortRef {
    pub fn from_backend(b: &IngressServiceBackend) -> Option<PortRef> {
        let p = b.port.as_ref()?;
        match (&p.number, &p.name) {
            (Some(n), _) if *n > 0 => Some(PortRef::Number(*n)),
            (_, Some(name)) if !name.is_empty() => Some(PortRef::Name(name.clone())),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match self {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(s) => s.clone(),
            PortRef::First => "first".into(),
        }
    }
}

/// Why a backend is degraded (becomes a Warning diagnostic on the Ingress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    pub reason: &'static str,
    pub message: String,
}

/// One backend request an Ingress made while it was compiled, and its answer: replaying the
/// requests of a cached Ingress tells whether its compiled routes still hold (see
/// `compile::cache`).
#[derive(Clone, Debug)]
pub struct Resolution {
    pub request: Request,
    pub backend: Arc<Backend>,
    pub degraded: Option<Degraded>,
    /// [`service_key`] of the request's Service (checked against every change of Services or
    /// EndpointSlices without reading the strings again).
    svc: u64,
}

impl Request {
    /// The Service this request reads.
    fn service(&self) -> (&str, &str) {
        match self {
            Request::Service {
                namespace, service, ..
            }
            | Request::Named {
                namespace, service, ..
            } => (namespace, service),
        }
    }
}

/// A hash of Service `ns`/`svc`, the same in every compile of this process: kept with each
/// answer and request, so telling whether one of the 10k answers concerns a changed Service
/// is a lookup of a number, not a hash of two strings (cache misses, one per string).
fn service_key(ns: &str, svc: &str) -> u64 {
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    STATE
        .get_or_init(ahash::RandomState::new)
        .hash_one((ns, svc))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`Resolver::resolve_service`]
    Service {
        namespace: String,
        service: String,
        port: PortRef,
        cluster_ip: bool,
    },
    /// [`Resolver::resolve`]
    Named {
        namespace: String,
        service: String,
        port: PortRef,
        name: Option<String>,
    },
}

/// One fresh resolution of an upstream: what it read besides the Services and EndpointSlices,
/// and its answer.
#[derive(Clone, Debug)]
struct Fresh {
    cluster_ip: bool,
    namespace: String,
    service: String,
    /// [`service_key`] of `namespace`/`service`.
    svc: u64,
    port: PortRef,
    answer: (Arc<Backend>, Option<Degraded>),
}

impl Fresh {
    /// Whether `request` is the request this answer was resolved for (a `Named` request's
    /// name is the upstream name itself).
    fn asked(&self, request: &Request) -> bool {
        match request {
            Request::Service {
                namespace,
                service,
                port,
                cluster_ip,
            } => {
                self.cluster_ip == *cluster_ip
                    && self.namespace == *namespace
                    && self.service == *service
                    && self.port == *port
            }
            Request::Named {
                namespace,
                service,
                port,
                ..
            } => {
                !self.cluster_ip
                    && self.namespace == *namespace
                    && self.service == *service
                    && self.port == *port
            }
        }
    }
}

/// The fresh resolutions of one compile (its table's backends, by upstream name), kept for
/// the next compile: while the Services and EndpointSlices are the very same maps (a source
/// hands over an unchanged kind's map as is), resolving again would give the same answers,
/// so the next compile takes them from here instead of building every backend again.
#[derive(Debug, Default)]
pub struct Resolved {
    services: Objects<Key, Service>,
    endpoint_slices: Objects<Key, EndpointSlice>,
    /// Keyed by upstream name; the key is shared with the table and the next
    /// compile's, so replaying a reused Ingress allocates nothing.
    answers: HashMap<Arc<str>, Arc<Fresh>, ahash::RandomState>,
    /// The EndpointSlice index of `endpoint_slices`, when a compile needed it: the next
    /// compile takes it over while its EndpointSlice map is the same (so adding one Ingress
    /// among 10k does not index 10k EndpointSlices again).
    slice_index: Option<Arc<SliceIndex>>,
}

impl Resolved {
    /// Every backend resolved (the table's upstreams), by upstream name.
    pub fn backends(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Backend>)> {
        self.answers.iter().map(|(n, f)| (n, &f.answer.0))
    }

    /// How many upstreams were resolved.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// A resolved upstream: its shared name and backend.
    pub fn get(&self, name: &str) -> Option<(&Arc<str>, &Arc<Backend>)> {
        self.answers
            .get_key_value(name)
            .map(|(n, f)| (n, &f.answer.0))
    }

    /// Whether `r` asked for its upstream as the request that decided its answer did, and
    /// got that answer.
    pub fn agrees(&self, r: &Resolution) -> bool {
        let Some(f) = self.answers.get(&*r.backend.name) else {
            return false;
        };
        f.answer.0.same_as(&r.backend) && f.answer.1 == r.degraded && f.asked(&r.request)
    }

    /// Whether these answers were resolved from the very Service and EndpointSlice maps of
    /// `snap`.
    pub fn valid_for(&self, snap: &Snapshot) -> bool {
        Arc::ptr_eq(&self.services, &snap.services)
            && Arc::ptr_eq(&self.endpoint_slices, &snap.endpoint_slices)
    }

    /// The Services whose answers may differ in `snap` (see [`Changed`]).
    fn changed_for(&self, snap: &Snapshot) -> Changed {
        let mut changed = Changed::default();
        diff(&self.services, &snap.services, |key, _, _| {
            changed.insert(&key.0, &key.1);
        });
        diff(
            &self.endpoint_slices,
            &snap.endpoint_slices,
            |key, old, new| {
                for owner in [old, new].into_iter().flatten().filter_map(slice_owner) {
                    changed.insert(&key.0, owner);
                }
            },
        );
        if !changed.services.is_empty() {
            // an ExternalName Service may name another Service (its endpoints are that
            // Service's): it is resolved again whenever any Service's answers may differ
            for (key, svc) in snap.services.iter() {
                let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref());
                if external == Some("ExternalName") {
                    changed.insert(&key.0, &key.1);
                }
            }
        }
        changed
    }
}

/// Services (namespace, name) whose Service or EndpointSlices differ between the previous
/// compile's maps and this one's, by [`service_key`]: a collision only resolves a Service
/// again.
#[derive(Default)]
struct Changed {
    services: std::collections::HashSet<u64, ahash::RandomState>,
}

impl Changed {
    fn insert(&mut self, ns: &str, svc: &str) {
        self.services.insert(service_key(ns, svc));
    }

    fn contains(&self, svc: u64) -> bool {
        !self.services.is_empty() && self.services.contains(&svc)
    }
}

/// Calls `f` with each key whose object is not the very same in `old` and `new` (added,
/// removed or replaced), walking both ordered maps in step.
pub fn diff<'m, T>(
    old: &'m Objects<Key, T>,
    new: &'m Objects<Key, T>,
    mut f: impl FnMut(&'m Key, Option<&'m T>, Option<&'m T>),
) {
    if Arc::ptr_eq(old, new) {
        return;
    }
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((k, o)), None) => {
                f(k, Some(&***o), None);
                a.next();
            }
            (None, Some((k, n))) => {
                f(k, None, Some(&***n));
                b.next();
            }
            (Some((ka, o)), Some((kb, n))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    f(ka, Some(&***o), None);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    f(kb, None, Some(&***n));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(o, n) {
                        f(ka, Some(&***o), Some(&***n));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Resolves and interns backends for one compile run.
pub struct Resolver<'a> {
    snap: &'a Snapshot,
    /// EndpointSlices by (namespace, owning Service): the previous compile's when its
    /// EndpointSlice map is this snapshot's, else built on first use, so finding a Service's
    /// endpoints does not scan its namespace's slices (quadratic with one Service per Ingress).
    slices: std::cell::OnceCell<Arc<SliceIndex>>,
    /// The previous compile's index when its EndpointSlice map is not this snapshot's: the
    /// index, when needed, is that one patched.
    earlier_slices: Option<Arc<SliceIndex>>,
    prev: Option<&'a RouteTable>,
    /// The previous compile's fresh resolutions: each holds for `snap` unless its Service
    /// is in `changed`.
    memo: Option<&'a Resolved>,
    /// The Services whose answers in `memo` may not hold (empty when the Service and
    /// EndpointSlice maps are the very same).
    changed: Changed,
    /// This compile's fresh resolutions (the next compile's `memo`).
    fresh: Resolved,
    /// `--disable-svc-external-name`: an ExternalName Service has no endpoints.
    no_external_names: bool,
    /// Requests since the last [`Resolver::take_journal`].
    journal: Vec<Resolution>,
}

impl<'a> Resolver<'a> {
    /// `memo`: the previous compile's [`Resolved`] (used only when it holds for `snap`).
    pub fn new(
        snap: &'a Snapshot,
        prev: Option<&'a RouteTable>,
        memo: Option<&'a Resolved>,
    ) -> Self {
        // as many upstreams as the previous compile had, most likely
        let room = memo.map_or(0, |m| m.answers.len());
        let mut answers = HashMap::default();
        answers.reserve(room);
        let slices = std::cell::OnceCell::new();
        let mut earlier_slices = None;
        if let Some(index) = memo.and_then(|m| m.slice_index.as_ref()) {
            if Arc::ptr_eq(&index.slices, &snap.endpoint_slices) {
                let _ = slices.set(index.clone());
            } else {
                earlier_slices = Some(index.clone());
            }
        }
        Resolver {
            snap,
            slices,
            earlier_slices,
            prev,
            changed: match memo {
                Some(m) if !m.valid_for(snap) => m.changed_for(snap),
                _ => Changed::default(),
            },
            memo,
            fresh: Resolved {
                services: snap.services.clone(),
                endpoint_slices: snap.endpoint_slices.clone(),
                answers,
                slice_index: None,
            },
            no_external_names: false,
            journal: Vec::new(),
        }
    }

    /// `--disable-svc-external-name`: ExternalName Services resolve to no endpoints.
    pub fn refuse_external_names(mut self, refuse: bool) -> Self {
        self.no_external_names = refuse;
        self
    }

    /// Whether the answer to `r` may differ from the previous compile's: its Service or
    /// that Service's EndpointSlices changed.
    pub fn may_differ(&self, r: &Resolution) -> bool {
        self.changed.contains(r.svc)
    }

    /// How many requests were made since the last [`Resolver::take_journal`].
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// The requests made since the previous call, in order.
    pub fn take_journal(&mut self) -> Vec<Resolution> {
        std::mem::take(&mut self.journal)
    }

    /// Make the requests of `past` again (interning their answers as a fresh compile of the
    /// same Ingress would) and tell whether every answer is the same as then.
    pub fn replay(&mut self, past: &[Resolution]) -> bool {
        let mut same = true;
        for r in past {
            // The upstream name is the interning key: a hit answers without resolving again.
            if let Some((b, d)) = self.fresh.answers.get(&*r.backend.name).map(|f| &f.answer) {
                same &= b.same_as(&r.backend) && *d == r.degraded;
                continue;
            }
            if let Some((name, f)) = self.memo_for(r) {
                same &= f.answer.0.same_as(&r.backend) && f.answer.1 == r.degraded;
                self.fresh.answers.insert(name, f);
                continue;
            }
            // as resolve_service / resolve, without journaling the requests again
            let (b, d) = match &r.request {
                Request::Service {
                    namespace,
                    service,
                    port,
                    cluster_ip: true,
                } => self.cluster_ip_backend(namespace, service, port),
                Request::Service {
                    namespace,
                    service,
                    port,
                    cluster_ip: false,
                } => self.named(namespace, service, port, None),
                Request::Named {
                    namespace,
                    service,
                    port,
                    name,
                } => self.named(namespace, service, port, name.as_deref()),
            };
            same &= b.same_as(&r.backend) && d == r.degraded;
        }
        self.journal.clear();
        same
    }

    fn record(&mut self, request: Request, answer: &(Arc<Backend>, Option<Degraded>)) {
        let (ns, svc) = request.service();
        let svc = service_key(ns, svc);
        self.journal.push(Resolution {
            svc,
            request,
            backend: answer.0.clone(),
            degraded: answer.1.clone(),
        });
    }

    /// The previous table's backend when it is the same as `new` (so an unchanged backend
    /// keeps its identity and its round-robin position across rebuilds).
    fn intern(&self, new: Backend) -> Arc<Backend> {
        match self.prev.and_then(|t| t.backend(&new.name)) {
            Some(old) if old.same_as(&new) => old.clone(),
            _ => Arc::new(new),
        }
    }

    /// Resolve an Ingress service backend; with `cluster_ip` (service-upstream) the Service's
    /// ClusterIP is the one endpoint. The first resolution of an upstream decides (the oldest
    /// Ingress, as ingress-nginx's service-wide annotations).
    pub fn resolve_service(
        &mut self,
        namespace: &str,
        service: &str,
        port: &PortRef,
        cluster_ip: bool,
    ) -> (Arc<Backend>, Option<Degraded>) {
        let answer = if cluster_ip {
            self.cluster_ip_backend(namespace, service, port)
        } else {
            self.named(namespace, service, port, None)
        };
        let request = Request::Service {
            namespace: namespace.to_string(),
            service: service.to_string(),
            port: port.clone(),
            cluster_ip,
        };
        self.record(request, &answer);
        answer
    }

    fn cluster_ip_backend(
        &mut self,
        namespace: &str,
        service: &str,
        port: &PortRef,
    ) -> (Arc<Backend>, Option<Degraded>) {
        let upstream = format!("{namespace}-{service}-{}", port.label());
        if let Some(hit) = self.fresh.answers.get(upstream.as_str()) {
            return hit.answer.clone();
        }
        self.fresh_answer(true, upstream, namespace, service, port, |r| {
            match r.cluster_ip_target(namespace, service, port) {
                Some(t) => (t, None),
                None => r.target(namespace, service, port),
            }
        })
    }

    /// Resolve `upstream` afresh (`target` finds its endpoints), or take the previous
    /// compile's answer when it still holds; intern and remember it either way.
    fn fresh_answer(
        &mut self,
        cluster_ip: bool,
        upstream: String,
        namespace: &str,
        service: &str,
        port: &PortRef,
        target: impl FnOnce(&Self) -> (Target, Option<Degraded>),
    ) -> (Arc<Backend>, Option<Degraded>) {
        // the previous compile's answer is its table's backend: what interning would return
        let memo = self.memo_entry(upstream.as_str()).filter(|(_, f)| {
            f.cluster_ip == cluster_ip
                && f.namespace == namespace
                && f.service == service
                && f.port == *port
        });
        let (name, fresh) = match memo {
            Some((name, f)) => (name.clone(), f.clone()),
            None => {
                let (target, degraded) = target(self);
                let name: Arc<str> = upstream.into();
                let b = self.intern(Backend {
                    name: (*name).into(),
                    target,
                });
                let f = Arc::new(Fresh {
                    cluster_ip,
                    namespace: namespace.to_string(),
                    service: service.to_string(),
                    svc: service_key(namespace, service),
                    port: port.clone(),
                    answer: (b, degraded),
                });
                (name, f)
            }
        };
        let answer = fresh.answer.clone();
        self.fresh.answers.insert(name, fresh);
        answer
    }

    /// The previous compile's fresh resolution of `r`'s request, when it still holds. The
    /// upstream name of an answer is its request's interning key, so `r.backend.name` is the
    /// upstream `r.request` resolves.
    /// The previous compile's answer for upstream `name`, unless its Service changed since.
    fn memo_entry(&self, name: &str) -> Option<(&'a Arc<str>, &'a Arc<Fresh>)> {
        let (name, f) = self.memo?.answers.get_key_value(name)?;
        (!self.changed.contains(f.svc)).then_some((name, f))
    }

    fn memo_for(&self, r: &Resolution) -> Option<(Arc<str>, Arc<Fresh>)> {
        let (name, f) = self.memo_entry(&r.backend.name)?;
        f.asked(&r.request).then(|| (name.clone(), f.clone()))
    }

    /// Take the previous compile's answers of the upstreams `keep` names as this compile's,
    /// as if the Ingresses that requested them had been replayed (an incremental compile:
    /// only valid while the Service and EndpointSlice maps are the same). Returns the names
    /// not taken.
    pub fn seed(&mut self, memo: &'a Resolved, keep: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        let mut left = Vec::new();
        // a copy of the previous answers (no key hashed again), less those not taken; this
        // compile's own answers win
        let mut taken = memo.answers.clone();
        let own = &self.fresh.answers;
        taken.retain(|name, f| {
            // an answer of a changed Service is never taken over
            let take = keep(name) && !self.changed.contains(f.svc);
            if !take && !own.contains_key(name) {
                left.push(name.clone());
            }
            take
        });
        taken.extend(self.fresh.answers.drain());
        self.fresh.answers = taken;
        left
    }

    /// This compile's fresh resolutions, for the next compile's [`Resolver::new`].
    pub fn take_resolved(&mut self) -> Resolved {
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.slice_index = self.slices.get().cloned();
        fresh
    }

    fn cluster_ip_target(&self, ns: &str, svc: &str, port: &PortRef) -> Option<Target> {
        let s = self.snap.services.get(&(ns.to_string(), svc.to_string()))?;
        let spec = s.spec.as_ref()?;
        let ip: IpAddr = spec.cluster_ip.as_deref()?.parse().ok()?;
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        let sp = match port {
            PortRef::Number(n) => ports.iter().find(|p| p.port == *n),
            PortRef::Name(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
            PortRef::First => ports.first(),
        }?;
        let port = u16::try_from(sp.port).ok()?;
        Endpoints::new([SocketAddr::new(ip, port)]).map(Target::Endpoints)
    }

    /// Resolve `namespace/service:port`; `name` overrides the upstream name (default backend).
    pub fn resolve(
        &mut self,
        namespace: &str,
        service: &str,
        port: &PortRef,
        name: Option<&str>,
    ) -> (Arc<Backend>, Option<Degraded>) {
        let answer = self.named(namespace, service, port, name);
        let request = Request::Named {
            namespace: namespace.to_string(),
            service: service.to_string(),
            port: port.clone(),
            name: name.map(str::to_string),
        };
        self.record(request, &answer);
        answer
    }

    fn named(
        &mut self,
        namespace: &str,
        service: &str,
        port: &PortRef,
        name: Option<&str>,
    ) -> (Arc<Backend>, Option<Degraded>) {
        let upstream = match name {
            Some(n) => n.to_string(),
            None => format!("{namespace}-{service}-{}", port.label()),
        };
        if let Some(hit) = self.fresh.answers.get(upstream.as_str()) {
            return hit.answer.clone();
        }
        self.fresh_answer(false, upstream, namespace, service, port, |r| {
            r.target(namespace, service, port)
        })
    }

    fn target(&self, ns: &str, svc_name: &str, port: &PortRef) -> (Target, Option<Degraded>) {
        let key = (ns.to_string(), svc_name.to_string());
        let Some(svc) = self.snap.services.get(&key) else {
            return degraded(
                "ServiceNotFound",
                format!("Service {ns}/{svc_name} not found; requests answer 503"),
            );
        };
        let spec = svc.spec.as_ref();
        let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        let is_external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if is_external && self.no_external_names {
            return degraded(
                "ExternalNameDisabled",
                format!(
                    "Service {ns}/{svc_name} is of type ExternalName, which \
                     --disable-svc-external-name refuses; requests answer 503"
                ),
            );
        }
        if is_external {
            let (target, degraded) = external_name(svc, ns, svc_name, ports, port);
            // a name of a watched Service (`svc.ns.svc.cluster.local`, or `svc` as the Pod's
            // search path finds it) goes to that Service's endpoints, as its ClusterIP would
            // send it: no cluster DNS needed, standalone mode included. DNS otherwise, or when
            // that Service cannot serve the port.
            if let Target::ExternalName { host, port } = &target {
                if let Some((tns, tsvc)) = in_cluster_service(host, ns, self.snap) {
                    let (t, d) = self.target(&tns, &tsvc, &PortRef::Number(i32::from(*port)));
                    if d.is_none() {
                        return (t, d);
                    }
                }
            }
            return (target, degraded);
        }
        let found = match port {
            PortRef::Number(n) => ports.iter().find(|p| p.port == *n),
            PortRef::Name(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
            PortRef::First => ports.first(),
        };
        let Some(sp) = found else {
            return degraded(
                "ServicePortNotFound",
                format!(
                    "Service {ns}/{svc_name} has no port {}; requests answer 503",
                    port.label()
                ),
            );
        };
        let addrs = self.ready_endpoints(ns, svc_name, sp);
        match Endpoints::new(addrs) {
            Some(e) => (Target::Endpoints(e), None),
            None => degraded(
                "NoReadyEndpoints",
                format!(
                    "Service {ns}/{svc_name} port {} has no ready endpoints; requests answer 503",
                    port.label()
                ),
            ),
        }
    }

    fn ready_endpoints(&self, ns: &str, svc: &str, sp: &ServicePort) -> Vec<SocketAddr> {
        let want_name = sp.name.as_deref().unwrap_or("");
        let mut out = Vec::new();
        let index = self.slices.get_or_init(|| {
            Arc::new(match &self.earlier_slices {
                Some(earlier) => earlier.patched(&self.snap.endpoint_slices),
                None => SliceIndex::new(&self.snap.endpoint_slices),
            })
        });
        for slice in index.owned_by(ns, svc) {
            if slice.address_type == "FQDN" {
                continue;
            }
            let Some(port) = slice.ports.as_ref().and_then(|ps| {
                ps.iter()
                    .find(|p| p.name.as_deref().unwrap_or("") == want_name)
                    .and_then(|p| p.port)
            }) else {
                continue;
            };
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            for ep in &slice.endpoints {
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                if !ready || terminating {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        out.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
        out
    }
}

/// EndpointSlices by (namespace, owning Service), each Service's in the map's order. Keyed by
/// [`service_key`], so building it copies no strings; a lookup checks the owner label and
/// (when the object states it) the namespace of each slice it returns. After a change of a few
/// slices the next compile's index is this one patched: the owners whose slices changed get
/// their new lists in `changes`, over the same `base` (shared, not copied).
#[derive(Debug)]
struct SliceIndex {
    /// The map this index was built from.
    slices: Objects<Key, EndpointSlice>,
    base: Arc<HashMap<u64, Vec<Arc<EndpointSlice>>, ahash::RandomState>>,
    /// The owners whose slices changed since `base` was built: their slices now (empty: none).
    changes: HashMap<u64, Vec<Arc<EndpointSlice>>, ahash::RandomState>,
}

impl SliceIndex {
    fn new(slices: &Objects<Key, EndpointSlice>) -> SliceIndex {
        let mut by_owner: HashMap<u64, Vec<Arc<EndpointSlice>>, ahash::RandomState> =
            HashMap::default();
        for (key, slice) in slices.iter() {
            if let Some(owner) = slice_owner(slice) {
                by_owner
                    .entry(service_key(&key.0, owner))
                    .or_default()
                    .push(slice.clone());
            }
        }
        SliceIndex {
            slices: slices.clone(),
            base: Arc::new(by_owner),
            changes: HashMap::default(),
        }
    }

    /// The index of `slices`, from this index of an earlier map: patched at the owners of the
    /// slices that differ, or built again when too many owners have changed since `base`.
    fn patched(&self, slices: &Objects<Key, EndpointSlice>) -> SliceIndex {
        // the owners whose lists change: the slices they lose (by address) and gain
        type Edit = (Vec<*const EndpointSlice>, Vec<Arc<EndpointSlice>>);
        let mut edits: HashMap<u64, Edit, ahash::RandomState> = HashMap::default();
        let limit = 64 + self.base.len() / 16;
        diff(&self.slices, slices, |key, old, new| {
            if edits.len() > limit {
                return;
            }
            if let Some((lost, owner)) = old.and_then(|o| Some((o, slice_owner(o)?))) {
                edits
                    .entry(service_key(&key.0, owner))
                    .or_default()
                    .0
                    .push(lost);
            }
            if let (Some(owner), Some(slice)) = (new.and_then(slice_owner), slices.get(key)) {
                edits
                    .entry(service_key(&key.0, owner))
                    .or_default()
                    .1
                    .push(slice.clone());
            }
        });
        if self.changes.len() + edits.len() > limit {
            return SliceIndex::new(slices);
        }
        let mut changes = self.changes.clone();
        for (owner, (lost, gained)) in edits {
            let mut list: Vec<Arc<EndpointSlice>> = self
                .list(owner)
                .iter()
                .filter(|s| !lost.contains(&Arc::as_ptr(s)))
                .cloned()
                .collect();
            list.extend(gained);
            list.sort_by_cached_key(|s| crate::snapshot::key_of(&s.metadata));
            changes.insert(owner, list);
        }
        SliceIndex {
            slices: slices.clone(),
            base: self.base.clone(),
            changes,
        }
    }

    /// The slices listed under `owner`.
    fn list(&self, owner: u64) -> &[Arc<EndpointSlice>] {
        self.changes
            .get(&owner)
            .or_else(|| self.base.get(&owner))
            .map_or(&[], Vec::as_slice)
    }

    /// The slices of Service `ns`/`svc`, in the map's order.
    fn owned_by<'s>(
        &'s self,
        ns: &'s str,
        svc: &'s str,
    ) -> impl Iterator<Item = &'s EndpointSlice> {
        self.list(service_key(ns, svc))
            .iter()
            .filter(move |slice| {
                slice_owner(slice) == Some(svc)
                    && slice.metadata.namespace.as_deref().is_none_or(|n| n == ns)
            })
            .map(|slice| &**slice)
    }
}

fn degraded(reason: &'static str, message: String) -> (Target, Option<Degraded>) {
    (Target::Unavailable, Some(Degraded { reason, message }))
}

fn external_name(
    svc: &Service,
    ns: &str,
    name: &str,
    ports: &[ServicePort],
    port: &PortRef,
) -> (Target, Option<Degraded>) {
    let host = svc
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or("");
    if host.is_empty() {
        return degraded(
            "ExternalNameMissing",
            format!(
                "ExternalName Service {ns}/{name} has no spec.externalName; requests answer 503"
            ),
        );
    }
    // ingress-nginx: a localhost name or a loopback address is refused (an Ingress must not
    // reach the controller's own host), and a name must be a DNS-1123 subdomain
    let bare = host.strip_suffix('.').unwrap_or(host);
    let ip = bare.parse::<IpAddr>().ok();
    if bare.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback()) {
        return degraded(
            "ExternalNameLocalhost",
            format!(
                "ExternalName Service {ns}/{name} names localhost ({host}), which ingress-nginx \
                 refuses; requests answer 503"
            ),
        );
    }
    if ip.is_none() && !crate::values::is_dns_subdomain(bare) {
        return degraded(
            "ExternalNameInvalid",
            format!(
                "ExternalName Service {ns}/{name}: {host:?} is not a DNS-1123 name; requests \
                 answer 503"
            ),
        );
    }
    // the upstream port is the Service port's numeric targetPort (ingress-nginx's
    // externalNamePorts), its port when targetPort is unset or a name; a number no Service port
    // has is used as it is (an ExternalName Service without ports)
    let target = |p: &ServicePort| match &p.target_port {
        Some(IntOrString::Int(t)) if *t > 0 => *t,
        _ => p.port,
    };
    let number = match port {
        PortRef::Number(n) => Some(ports.iter().find(|p| p.port == *n).map_or(*n, &target)),
        PortRef::Name(pn) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(pn))
            .map(&target),
        PortRef::First => ports.first().map(target),
    };
    match number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
    {
        Some(port) => (
            Target::ExternalName {
                host: host.into(),
                port,
            },
            None,
        ),
        None => degraded(
            "ServicePortNotFound",
            format!(
                "ExternalName Service {ns}/{name} has no port {}; requests answer 503",
                port.label()
            ),
        ),
    }
}

/// Where a subrequest to `url` goes: a literal URL whose host names a watched Service goes to
/// its endpoints (no cluster DNS needed, standalone mode included), anything else to DNS.
pub fn url_target(url: &Template, snap: &Snapshot, resolver: &mut Resolver<'_>) -> UrlTarget {
    let Some(u) = url.literal().and_then(|l| split_url(l).ok()) else {
        return UrlTarget::Dns;
    };
    match cluster_service(u.host, snap) {
        Some((ns, svc)) => {
            let (b, _) = resolver.resolve(&ns, &svc, &PortRef::Number(i32::from(u.port)), None);
            UrlTarget::Service(b)
        }
        None => UrlTarget::Dns,
    }
}

/// The watched Service an ExternalName Service of namespace `ns` names, when it is not an
/// ExternalName itself (no chains): `svc.ns`, `svc.ns.svc[.<cluster domain>]`, or a single
/// label `svc` (the Pod's first DNS search domain is its own namespace's).
pub fn in_cluster_service(host: &str, ns: &str, snap: &Snapshot) -> Option<(String, String)> {
    let bare = host.trim_end_matches('.').to_ascii_lowercase();
    let key = if bare.contains('.') {
        cluster_service(&bare, snap)?
    } else {
        (ns.to_string(), bare)
    };
    let svc = snap.services.get(&key)?;
    let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    (!external).then_some(key)
}

/// `svc.ns`, `svc.ns.svc` or `svc.ns.svc.<cluster domain>` naming a watched Service.
fn cluster_service(host: &str, snap: &Snapshot) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut labels = host.split('.');
    let svc = labels.next()?.to_string();
    let ns = labels.next()?.to_string();
    match labels.next() {
        None | Some("svc") => {}
        Some(_) => return None,
    }
    snap.services
        .contains_key(&(ns.clone(), svc.clone()))
        .then_some((ns, svc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_service_names() {
        let mut snap = Snapshot::default();
        let mut s = k8s_openapi::api::core::v1::Service::default();
        s.metadata.namespace = Some("auth".into());
        s.metadata.name = Some("oauth2-proxy".into());
        snap.add_service(s);
        for h in [
            "oauth2-proxy.auth",
            "oauth2-proxy.auth.svc",
            "oauth2-proxy.auth.svc.cluster.local",
            "OAuth2-Proxy.auth.svc.cluster.local.",
        ] {
            assert_eq!(
                cluster_service(h, &snap),
                Some(("auth".into(), "oauth2-proxy".into())),
                "{h}"
            );
        }
        for h in [
            "oauth2-proxy",
            "oauth2-proxy.other",
            "oauth2-proxy.auth.example.com",
            "127.0.0.1",
        ] {
            assert_eq!(cluster_service(h, &snap), None, "{h}");
        }
    }

    /// A namespace with `n` Services `web0..`, each with its own EndpointSlice (10.0.0.i).
    fn services(n: usize) -> Snapshot {
        let mut snap = Snapshot::default();
        for i in 0..n {
            snap.add_service(
                serde_json::from_value::<Service>(serde_json::json!({
                    "metadata": {"namespace": "app", "name": format!("web{i}")},
                    "spec": {"ports": [{"port": 80}]}
                }))
                .unwrap(),
            );
            snap.add_endpoint_slice(
                serde_json::from_value::<EndpointSlice>(serde_json::json!({
                    "metadata": {"namespace": "app", "name": format!("web{i}-x"),
                        "labels": {SERVICE_NAME_LABEL: format!("web{i}")}},
                    "addressType": "IPv4",
                    "ports": [{"port": 8080}],
                    "endpoints": [{"addresses": [format!("10.0.0.{i}")]}]
                }))
                .unwrap(),
            );
        }
        snap
    }

    fn endpoints(b: &Backend) -> String {
        format!("{:?}", b.target)
    }

    #[test]
    fn each_service_gets_only_its_own_slices() {
        let snap = services(50);
        let mut r = Resolver::new(&snap, None, None);
        for i in [0, 7, 49] {
            let (b, d) = r.resolve_service("app", &format!("web{i}"), &PortRef::Number(80), false);
            assert!(d.is_none(), "{d:?}");
            let t = endpoints(&b);
            assert!(t.contains(&format!("10.0.0.{i}:8080")), "{t}");
            assert_eq!(t.matches("10.0.0.").count(), 1, "{t}");
        }
    }

    #[test]
    fn the_previous_answers_are_reused_for_the_same_service_and_slice_objects() {
        let snap = services(3);
        let mut first = Resolver::new(&snap, None, None);
        let (a, _) = first.resolve_service("app", "web1", &PortRef::Number(80), false);
        let memo = first.take_resolved();

        // same maps: the previous compile's backend itself (no prev table to intern against,
        // so only the memo can give the same Arc)
        let mut again = Resolver::new(&snap, None, Some(&memo));
        let (b, _) = again.resolve_service("app", "web1", &PortRef::Number(80), false);
        assert!(Arc::ptr_eq(&a, &b));
        // another request for the same upstream name is not answered from it
        let (c, _) = again.resolve_service("app", "web1", &PortRef::Number(80), true);
        assert!(
            Arc::ptr_eq(&b, &c),
            "first resolution of an upstream decides"
        );
        let mut other = Resolver::new(&snap, None, Some(&memo));
        let (d, _) = other.resolve_service("app", "web1", &PortRef::Number(80), true);
        assert!(
            !Arc::ptr_eq(&a, &d),
            "cluster-ip request answered from a named one"
        );

        // a new EndpointSlice map holding the very same objects: the answers still hold (a
        // changed object resolves its Service again: see
        // after_a_slice_change_only_the_services_it_touches_are_resolved_again)
        let mut changed = snap.clone();
        let slices = (*changed.endpoint_slices).clone();
        changed.endpoint_slices = Arc::new(slices);
        let mut fresh = Resolver::new(&changed, None, Some(&memo));
        let (e, _) = fresh.resolve_service("app", "web1", &PortRef::Number(80), false);
        assert!(Arc::ptr_eq(&a, &e));
        // a replayed journal (a reused Ingress) takes the memo too
        let journal = {
            let mut r = Resolver::new(&snap, None, None);
            r.resolve_service("app", "web1", &PortRef::Number(80), false);
            r.take_journal()
        };
        let mut replaying = Resolver::new(&snap, None, Some(&memo));
        assert!(replaying.replay(&journal));
        let resolved = replaying.take_resolved();
        let backends: Vec<_> = resolved.backends().map(|(_, b)| b).collect();
        assert_eq!(backends.len(), 1);
        assert!(Arc::ptr_eq(backends[0], &a));
    }

    #[test]
    fn the_endpoint_slice_index_is_kept_while_the_slice_map_is_the_same() {
        let snap = services(3);
        let mut first = Resolver::new(&snap, None, None);
        first.resolve_service("app", "web0", &PortRef::Number(80), false);
        let memo = first.take_resolved();
        let index = memo.slice_index.clone().expect("indexed on first use");

        // same EndpointSlice map, a Service the previous compile did not ask for: answered
        // from the kept index, not a new one
        let mut again = Resolver::new(&snap, None, Some(&memo));
        let (b, _) = again.resolve_service("app", "web2", &PortRef::Number(80), false);
        assert!(endpoints(&b).contains("10.0.0.2:8080"), "{}", endpoints(&b));
        let kept = again.take_resolved().slice_index.expect("index handed on");
        assert!(Arc::ptr_eq(&index, &kept));

        // a new slice map (a new Service with its slice): indexed again, and its slice found
        let grown = services(4);
        let mut next = Resolver::new(&grown, None, Some(&memo));
        let (c, d) = next.resolve_service("app", "web3", &PortRef::Number(80), false);
        assert!(d.is_none(), "{d:?}");
        assert!(endpoints(&c).contains("10.0.0.3:8080"), "{}", endpoints(&c));
        let rebuilt = next.take_resolved().slice_index.expect("indexed");
        assert!(!Arc::ptr_eq(&index, &rebuilt));
        // a slice of another namespace with the same owner name is not this Service's
        let mut other_ns = services(1);
        other_ns.add_endpoint_slice(
            serde_json::from_value::<EndpointSlice>(serde_json::json!({
                "metadata": {"namespace": "other", "name": "web0-y",
                    "labels": {SERVICE_NAME_LABEL: "web0"}},
                "addressType": "IPv4",
                "ports": [{"port": 8080}],
                "endpoints": [{"addresses": ["10.9.9.9"]}]
            }))
            .unwrap(),
        );
        let mut r = Resolver::new(&other_ns, None, None);
        let (e, _) = r.resolve_service("app", "web0", &PortRef::Number(80), false);
        assert!(!endpoints(&e).contains("10.9.9.9"), "{}", endpoints(&e));
    }

    #[test]
    fn disable_svc_external_name_leaves_external_name_services_without_endpoints() {
        let mut snap = services(1);
        snap.add_service(
            serde_json::from_value::<Service>(serde_json::json!({
                "metadata": {"namespace": "app", "name": "outside"},
                "spec": {"type": "ExternalName", "externalName": "api.example.com",
                    "ports": [{"port": 443}]}
            }))
            .unwrap(),
        );
        let port = PortRef::Number(443);
        let (b, d) =
            Resolver::new(&snap, None, None).resolve_service("app", "outside", &port, false);
        assert!(d.is_none(), "{d:?}");
        assert!(!matches!(b.target, Target::Unavailable));
        let mut r = Resolver::new(&snap, None, None).refuse_external_names(true);
        let (b, d) = r.resolve_service("app", "outside", &port, false);
        assert!(matches!(b.target, Target::Unavailable));
        assert_eq!(d.map(|d| d.reason), Some("ExternalNameDisabled"));
        // other Services are not touched
        let (b, d) = r.resolve_service("app", "web0", &PortRef::Number(80), false);
        assert!(d.is_none() && !matches!(b.target, Target::Unavailable));
    }

    #[test]
    fn external_name_goes_to_the_target_port_and_never_to_localhost() {
        let mut snap = Snapshot::default();
        let mut add = |name: &str, external: &str, ports: serde_json::Value| {
            snap.add_service(
                serde_json::from_value::<Service>(serde_json::json!({
                    "metadata": {"namespace": "app", "name": name},
                    "spec": {"type": "ExternalName", "externalName": external, "ports": ports}
                }))
                .unwrap(),
            )
        };
        add(
            "out",
            "api.example.com.",
            serde_json::json!([{"name": "web", "port": 80, "targetPort": 8080},
                {"name": "named", "port": 81, "targetPort": "http"}, {"port": 82}]),
        );
        add("local", "localhost", serde_json::json!([{"port": 80}]));
        add("loop", "127.0.0.2", serde_json::json!([{"port": 80}]));
        add("v6loop", "::1", serde_json::json!([{"port": 80}]));
        add("bad", "Not_A.Name", serde_json::json!([{"port": 80}]));
        add("ip", "192.0.2.7", serde_json::json!([{"port": 80}]));
        let mut r = Resolver::new(&snap, None, None);
        let mut target = |svc: &str, port: PortRef| {
            let (b, d) = r.resolve_service("app", svc, &port, false);
            match &b.target {
                Target::ExternalName { host, port } => Ok((host.to_string(), *port)),
                _ => Err(d.map(|d| d.reason)),
            }
        };
        let ext = |port: u16| Ok(("api.example.com.".to_string(), port));
        assert_eq!(target("out", PortRef::Number(80)), ext(8080));
        assert_eq!(target("out", PortRef::Name("web".into())), ext(8080));
        // a named targetPort or none: the Service port
        assert_eq!(target("out", PortRef::Number(81)), ext(81));
        assert_eq!(target("out", PortRef::Number(82)), ext(82));
        // a port the Service does not list: as it is
        assert_eq!(target("out", PortRef::Number(9000)), ext(9000));
        assert_eq!(
            target("out", PortRef::Name("nope".into())),
            Err(Some("ServicePortNotFound"))
        );
        for svc in ["local", "loop", "v6loop"] {
            assert_eq!(
                target(svc, PortRef::Number(80)),
                Err(Some("ExternalNameLocalhost")),
                "{svc}"
            );
        }
        assert_eq!(
            target("bad", PortRef::Number(80)),
            Err(Some("ExternalNameInvalid"))
        );
        assert_eq!(
            target("ip", PortRef::Number(80)),
            Ok(("192.0.2.7".to_string(), 80))
        );
    }

    #[test]
    fn an_external_name_of_a_watched_service_goes_to_its_endpoints() {
        let mut snap = services(2);
        for (name, external) in [
            ("fqdn", "web0.app.svc.cluster.local"),
            ("short", "web1"),
            ("other", "api.example.com"),
            ("noport", "web0.app.svc.cluster.local"),
        ] {
            snap.add_service(
                serde_json::from_value::<Service>(serde_json::json!({
                    "metadata": {"namespace": "app", "name": name},
                    "spec": {"type": "ExternalName", "externalName": external,
                        "ports": [{"port": if name == "noport" { 81 } else { 80 }}]}
                }))
                .unwrap(),
            );
        }
        let mut r = Resolver::new(&snap, None, None);
        // the target, described
        let mut target = |svc: &str| {
            let (b, d) = r.resolve_service("app", svc, &PortRef::Number(80), false);
            assert!(d.is_none(), "{svc}: {d:?}");
            format!("{:?}", b.target)
        };
        let (fqdn, web0) = (target("fqdn"), target("web0"));
        assert!(fqdn.starts_with("Endpoints"), "{fqdn}");
        assert_eq!(fqdn, web0);
        assert_eq!(target("short"), target("web1"));
        assert!(target("other").starts_with("ExternalName"));
        // web0 has no port 81: DNS as before
        let (b, _) = r.resolve_service("app", "noport", &PortRef::Number(81), false);
        assert!(matches!(b.target, Target::ExternalName { .. }));
    }

    #[test]
    fn after_a_slice_change_only_the_services_it_touches_are_resolved_again() {
        let mut snap = services(3);
        snap.add_service(
            serde_json::from_value::<Service>(serde_json::json!({
                "metadata": {"namespace": "app", "name": "alias"},
                "spec": {"type": "ExternalName", "externalName": "web1.app.svc.cluster.local",
                    "ports": [{"port": 80}]}
            }))
            .unwrap(),
        );
        let mut first = Resolver::new(&snap, None, None);
        let before: Vec<_> = ["web0", "web1", "alias"]
            .map(|svc| {
                first
                    .resolve_service("app", svc, &PortRef::Number(80), false)
                    .0
            })
            .into();
        let memo = first.take_resolved();

        // web1's pods moved: a new EndpointSlice map in which only web1's slice differs
        let mut moved = snap.clone();
        moved.add_endpoint_slice(
            serde_json::from_value::<EndpointSlice>(serde_json::json!({
                "metadata": {"namespace": "app", "name": "web1-x",
                    "labels": {SERVICE_NAME_LABEL: "web1"}},
                "addressType": "IPv4",
                "ports": [{"port": 8080}],
                "endpoints": [{"addresses": ["10.1.1.1"]}]
            }))
            .unwrap(),
        );
        let mut next = Resolver::new(&moved, None, Some(&memo));
        let after: Vec<_> = ["web0", "web1", "alias"]
            .map(|svc| {
                next.resolve_service("app", svc, &PortRef::Number(80), false)
                    .0
            })
            .into();
        // web0 untouched: the previous answer itself
        assert!(Arc::ptr_eq(&before[0], &after[0]));
        // web1 and the ExternalName naming it: resolved again, with the new endpoint
        for b in &after[1..] {
            assert!(endpoints(b).contains("10.1.1.1:8080"), "{}", endpoints(b));
            assert!(!endpoints(b).contains("10.0.0.1:"), "{}", endpoints(b));
        }
        // a replayed journal (a reused Ingress of web1) is not the same any more
        let journal = {
            let mut r = Resolver::new(&snap, None, None);
            r.resolve_service("app", "web1", &PortRef::Number(80), false);
            r.take_journal()
        };
        assert!(!Resolver::new(&moved, None, Some(&memo)).replay(&journal));

        // a Service removed: its answer is not taken from the memo either
        let mut gone = snap.clone();
        Arc::make_mut(&mut gone.services).remove(&("app".to_string(), "web0".to_string()));
        let mut r = Resolver::new(&gone, None, Some(&memo));
        let (_, d) = r.resolve_service("app", "web0", &PortRef::Number(80), false);
        assert_eq!(d.map(|d| d.reason), Some("ServiceNotFound"));
    }

    #[test]
    fn a_patched_slice_index_lists_what_a_new_one_lists() {
        let slice = |ns: &str, name: &str, owner: &str, port: i32| {
            let mut s = EndpointSlice::default();
            s.metadata.namespace = Some(ns.into());
            s.metadata.name = Some(name.into());
            s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), owner.to_string())].into());
            s.ports = Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
                port: Some(port),
                ..Default::default()
            }]);
            s
        };
        let mut snap = Snapshot::default();
        for i in 0..40 {
            for j in 0..(i % 3) {
                snap.add_endpoint_slice(slice("a", &format!("s{i}-{j}"), &format!("s{i}"), 1));
            }
        }
        let owners: Vec<(String, String)> = (0..45)
            .flat_map(|i| {
                [
                    ("a".to_string(), format!("s{i}")),
                    ("b".into(), format!("s{i}")),
                ]
            })
            .collect();
        let lists = |index: &SliceIndex| -> Vec<Vec<(Option<String>, Option<i32>)>> {
            owners
                .iter()
                .map(|(ns, svc)| {
                    index
                        .owned_by(ns, svc)
                        .map(|s| {
                            let port = s.ports.as_ref().and_then(|p| p[0].port);
                            (s.metadata.name.clone(), port)
                        })
                        .collect()
                })
                .collect()
        };
        let mut index = SliceIndex::new(&snap.endpoint_slices);
        // each step: changed, added, moved to another Service and removed slices
        type Step<'a> = Box<dyn Fn(&mut Snapshot) + 'a>;
        let steps: Vec<Step> = vec![
            Box::new(|s| s.add_endpoint_slice(slice("a", "s2-0", "s2", 2))),
            Box::new(|s| s.add_endpoint_slice(slice("a", "s2-9", "s2", 3))),
            Box::new(|s| s.add_endpoint_slice(slice("a", "s2-00", "s2", 4))),
            Box::new(|s| s.add_endpoint_slice(slice("b", "s41-0", "s41", 5))),
            Box::new(|s| s.add_endpoint_slice(slice("a", "s5-1", "s7", 6))),
            Box::new(|s| {
                Arc::make_mut(&mut s.endpoint_slices).remove(&("a".into(), "s4-0".into()));
            }),
            Box::new(|s| {
                for i in 0..40 {
                    s.add_endpoint_slice(slice("a", &format!("s{i}-0"), &format!("s{i}"), 7));
                }
                for i in 0..100 {
                    s.add_endpoint_slice(slice("c", &format!("x{i}"), &format!("x{i}"), 8));
                }
            }),
        ];
        for (n, step) in steps.iter().enumerate() {
            step(&mut snap);
            let patched = index.patched(&snap.endpoint_slices);
            let fresh = SliceIndex::new(&snap.endpoint_slices);
            assert_eq!(lists(&patched), lists(&fresh), "step {n}");
            if n < 6 {
                assert!(Arc::ptr_eq(&patched.base, &index.base), "step {n} patched");
            }
            index = patched;
        }
        // the last step changed more owners (140) than are patched: built again
        assert!(index.changes.is_empty());
        assert_eq!(index.list(service_key("c", "x7")).len(), 1);
    }
}
