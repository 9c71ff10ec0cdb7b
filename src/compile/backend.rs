//! Resolve an Ingress service backend to a compiled [`Backend`]: Service port by number or
//! name, then ready EndpointSlice endpoints (slice port matched by name, its number used),
//! ExternalName Services, or an unavailable (503) backend with a diagnostic.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::networking::v1::IngressServiceBackend;

use crate::annotations::template::{split_url, Template};
use crate::route::{Backend, Endpoints, RouteTable, Target, UrlTarget};
use crate::snapshot::Snapshot;

/// Label joining EndpointSlices to their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Port of an Ingress backend as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

/// Resolves and interns backends for one compile run.
pub struct Resolver<'a> {
    snap: &'a Snapshot,
    /// EndpointSlices by (namespace, owning Service), in the snapshot's order: built on first
    /// use, so finding a Service's endpoints does not scan its namespace's slices (quadratic
    /// with one Service per Ingress).
    slices: std::cell::OnceCell<SliceIndex<'a>>,
    prev: Option<&'a RouteTable>,
    cache: BTreeMap<String, (Arc<Backend>, Option<Degraded>)>,
    /// Requests since the last [`Resolver::take_journal`].
    journal: Vec<Resolution>,
}

impl<'a> Resolver<'a> {
    pub fn new(snap: &'a Snapshot, prev: Option<&'a RouteTable>) -> Self {
        Resolver {
            snap,
            slices: std::cell::OnceCell::new(),
            prev,
            cache: BTreeMap::new(),
            journal: Vec::new(),
        }
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
            if let Some((b, d)) = self.cache.get(&*r.backend.name) {
                same &= b.same_as(&r.backend) && *d == r.degraded;
                continue;
            }
            let (b, d) = match &r.request {
                Request::Service {
                    namespace,
                    service,
                    port,
                    cluster_ip,
                } => self.resolve_service(namespace, service, port, *cluster_ip),
                Request::Named {
                    namespace,
                    service,
                    port,
                    name,
                } => self.resolve(namespace, service, port, name.as_deref()),
            };
            same &= b.same_as(&r.backend) && d == r.degraded;
        }
        self.journal.clear();
        same
    }

    fn record(&mut self, request: Request, answer: &(Arc<Backend>, Option<Degraded>)) {
        self.journal.push(Resolution {
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

    /// All backends resolved so far (to register them in the table).
    pub fn into_backends(self) -> impl Iterator<Item = Arc<Backend>> {
        self.cache.into_values().map(|(b, _)| b)
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
        if let Some(hit) = self.cache.get(&upstream) {
            return hit.clone();
        }
        let (target, degraded) = match self.cluster_ip_target(namespace, service, port) {
            Some(t) => (t, None),
            None => self.target(namespace, service, port),
        };
        let b = self.intern(Backend {
            name: upstream.clone().into(),
            target,
        });
        self.cache.insert(upstream, (b.clone(), degraded.clone()));
        (b, degraded)
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
        if let Some(hit) = self.cache.get(&upstream) {
            return hit.clone();
        }
        let (target, degraded) = self.target(namespace, service, port);
        let b = self.intern(Backend {
            name: upstream.clone().into(),
            target,
        });
        self.cache.insert(upstream, (b.clone(), degraded.clone()));
        (b, degraded)
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
        if is_external {
            return external_name(svc, ns, svc_name, ports, port);
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
            let mut index = SliceIndex::new();
            for ((slice_ns, _), slice) in &self.snap.endpoint_slices {
                let owner = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL));
                if let Some(owner) = owner {
                    index
                        .entry((slice_ns.as_str(), owner.as_str()))
                        .or_default()
                        .push(slice);
                }
            }
            index
        });
        for slice in index.get(&(ns, svc)).into_iter().flatten() {
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

type SliceIndex<'a> = std::collections::HashMap<
    (&'a str, &'a str),
    Vec<&'a k8s_openapi::api::discovery::v1::EndpointSlice>,
>;

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
    let number = match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(pn) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(pn))
            .map(|p| p.port),
        PortRef::First => ports.first().map(|p| p.port),
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
}
