//! ExternalName Services are resolved per request, so a host that does not resolve showed only
//! as 503s and an ERROR line per request. After every rebuild the cluster source resolves the
//! ExternalName hosts the served Ingresses use (each lookup bounded by [`LOOKUP_TIMEOUT`],
//! [`PARALLEL`] at a time, answers reused for [`TTL`]) and reports a host that does not resolve
//! as a Warning diagnostic (so an Event) on every Ingress using it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::compile::class::is_served;
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;

pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
pub const PARALLEL: usize = 16;
pub const TTL: Duration = Duration::from_secs(60);
/// The diagnostic reason.
pub const REASON: &str = "ExternalNameUnresolved";

/// One ExternalName host and who uses it: (Service namespace/name, Ingress).
pub type Uses = BTreeMap<String, BTreeSet<(String, ObjectRef)>>;

/// The ExternalName hosts of the Services the served Ingresses name (rules and default
/// backend). Pure.
pub fn external_names(snap: &Snapshot, settings: &CompileSettings) -> Uses {
    let mut out = Uses::new();
    // most clusters have no ExternalName Service: then no walk over every Ingress (it was 7% of
    // a rebuild at 10k Ingresses)
    let is_external = |s: &k8s_openapi::api::core::v1::Service| {
        s.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some("ExternalName")
    };
    if !snap.services.values().any(|s| is_external(s)) {
        return out;
    }
    for ((ns, name), ing) in snap.ingresses.iter() {
        if !is_served(ing, snap, settings) {
            continue;
        }
        let Some(spec) = &ing.spec else { continue };
        let services = spec
            .default_backend
            .iter()
            .chain(
                spec.rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.http.as_ref())
                    .flat_map(|h| h.paths.iter().map(|p| &p.backend)),
            )
            .filter_map(|b| b.service.as_ref().map(|s| s.name.clone()));
        for svc_name in services {
            let Some(svc) = snap.services.get(&(ns.clone(), svc_name.clone())) else {
                continue;
            };
            let Some(sp) = svc.spec.as_ref().filter(|_| is_external(svc)) else {
                continue;
            };
            let Some(host) = sp.external_name.as_deref().filter(|h| !h.is_empty()) else {
                continue;
            };
            // a watched Service's name goes to its endpoints, not to DNS
            if crate::compile::backend::in_cluster_service(host, ns, snap).is_some() {
                continue;
            }
            out.entry(host.to_string())
                .or_default()
                .insert((format!("{ns}/{svc_name}"), ObjectRef::ingress(ns, name)));
        }
    }
    out
}

/// The diagnostics for the hosts in `failed` (host -> error text).
pub fn diagnostics(uses: &Uses, failed: &BTreeMap<String, String>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (host, err) in failed {
        for (svc, ing) in uses.get(host).into_iter().flatten() {
            out.push(Diagnostic::warning(
                ing.clone(),
                REASON,
                format!(
                    "ExternalName Service {svc}: host {host:?} does not resolve ({err}); requests to it answer 503"
                ),
            ));
        }
    }
    out
}

/// Lookup results kept for [`TTL`]: host -> (when, error or None).
#[derive(Debug, Default)]
pub struct Resolver {
    cache: BTreeMap<String, (Instant, Option<String>)>,
}

impl Resolver {
    /// Resolve every host of `uses` not looked up within TTL; the hosts that fail now.
    pub async fn failures(&mut self, uses: &Uses) -> BTreeMap<String, String> {
        let now = Instant::now();
        self.cache
            .retain(|h, (at, _)| uses.contains_key(h) && now.duration_since(*at) < TTL);
        let stale: Vec<String> = uses
            .keys()
            .filter(|h| !self.cache.contains_key(*h))
            .cloned()
            .collect();
        let looked: Vec<(String, Option<String>)> = futures_util::stream::iter(stale)
            .map(|host| async move {
                let r = tokio::time::timeout(
                    LOOKUP_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), 0)),
                )
                .await
                .map(|res| res.map(|mut a| a.next().is_none()));
                let err = match r {
                    Ok(Ok(empty)) => empty.then(|| "no address".to_string()),
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
                };
                (host, err)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (host, err) in looked {
            self.cache.insert(host, (Instant::now(), err));
        }
        self.cache
            .iter()
            .filter_map(|(h, (_, e))| e.clone().map(|e| (h.clone(), e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: n}
spec: {type: ExternalName, externalName: nowhere.invalid, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: n}
spec: {type: ExternalName, externalName: localhost, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: n}
spec:
  ingressClassName: pingress
  defaultBackend: {service: {name: local, port: {number: 80}}}
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ext, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other-class, namespace: n}
spec:
  ingressClassName: nginx
  rules:
  - host: b.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ext, port: {number: 80}}}}
"#;
        crate::source::files::load_text("t.yaml", text, &mut s);
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        s
    }

    #[test]
    fn the_external_names_of_served_ingresses_are_collected() {
        let uses = external_names(&snap(), &CompileSettings::default());
        assert_eq!(
            uses.keys().cloned().collect::<Vec<_>>(),
            vec!["localhost".to_string(), "nowhere.invalid".to_string()]
        );
        assert_eq!(
            uses["nowhere.invalid"].len(),
            1,
            "the other class is not ours"
        );
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_becomes_a_warning_on_its_ingress() {
        let uses = external_names(&snap(), &CompileSettings::default());
        let mut r = Resolver::default();
        let failed = r.failures(&uses).await;
        // `.invalid` never resolves (RFC 6761); localhost always does
        assert_eq!(
            failed.keys().cloned().collect::<Vec<_>>(),
            vec!["nowhere.invalid".to_string()]
        );
        let d = diagnostics(&uses, &failed);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].object, ObjectRef::ingress("n", "a"));
        assert_eq!(d[0].reason, REASON);
        assert!(d[0].message.contains("n/ext"), "{}", d[0].message);
        // cached: the same answer without a new lookup
        assert_eq!(r.failures(&uses).await, failed);
    }

    #[test]
    fn without_external_name_services_nothing_is_collected() {
        let mut snap = Snapshot::default();
        snap.add_service(
            serde_json::from_value::<k8s_openapi::api::core::v1::Service>(serde_json::json!({
                "metadata": {"namespace": "n", "name": "web"},
                "spec": {"ports": [{"port": 80}]}
            }))
            .unwrap(),
        );
        assert!(external_names(&snap, &CompileSettings::default()).is_empty());
    }
}
