//! What the compile's stores keep of the objects that outnumber Ingresses: fields nothing in
//! pingress reads are dropped as each object arrives from a watch, before it is cached. At 10k
//! Services a one-entry label or selector map alone is about 5 MiB (a B-tree leaf per map);
//! real objects carry several (Helm labels, selectors, owner references, per-endpoint pod
//! references, topology hints). `tests/compile_fixtures.rs` checks that compiling pruned
//! objects gives the same table and diagnostics as the whole ones.
//!
//! Only the compile's Service and EndpointSlice watches prune: the `--publish-service` watch
//! reads the Service's status and keeps it whole.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label naming an EndpointSlice's Service: the only one compile reads.
pub use crate::compile::backend::SERVICE_NAME_LABEL;

/// Keep a Service's name, namespace and the spec fields compile reads: type, clusterIP,
/// externalName and ports (endpoints come from EndpointSlices, never from the selector; the
/// IP families, policies and session affinity of the Service's own proxying do not apply).
pub fn service(s: &mut Service) {
    let m = &mut s.metadata;
    m.labels = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
    identity(m);
    if let Some(spec) = s.spec.take() {
        s.spec = Some(ServiceSpec {
            type_: spec.type_,
            cluster_ip: spec.cluster_ip,
            external_name: spec.external_name,
            ports: spec.ports,
            ..Default::default()
        });
    }
    s.status = None;
}

/// What identifies an object's version to the API server (uid, resourceVersion, creation
/// time, generation): compile tells versions apart by the object itself (a changed object is
/// a new one in the store), and the watch tracks resourceVersions on its own.
fn identity(m: &mut ObjectMeta) {
    m.uid = None;
    m.resource_version = None;
    m.creation_timestamp = None;
    m.generation = None;
}

/// Keep an EndpointSlice's Service name, address type, ports and each endpoint's addresses
/// and conditions.
///
/// The Service's name (the `kubernetes.io/service-name` label) moves to `selfLink`, a field
/// the API server has left empty since Kubernetes 1.20, and the labels become an empty map: a
/// one-entry label map is a B-tree leaf of about 560 bytes, 5.5 MiB at 10k slices, where the
/// name alone is one short string. [`crate::compile::backend`] reads the name from there when
/// the labels are empty (`slice_owner`).
pub fn endpoint_slice(e: &mut EndpointSlice) {
    let m = &mut e.metadata;
    m.annotations = None;
    m.owner_references = None;
    m.generate_name = None;
    identity(m);
    let owner = m
        .labels
        .take()
        .and_then(|mut l| l.remove(SERVICE_NAME_LABEL));
    m.labels = Some(Default::default());
    m.self_link = owner;
    for ep in &mut e.endpoints {
        ep.target_ref = None;
        ep.node_name = None;
        ep.zone = None;
        ep.hints = None;
        ep.deprecated_topology = None;
    }
}

/// For the kinds kept whole.
pub fn nothing<K>(_: &mut K) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_what_compile_reads() {
        let mut s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "app", "resourceVersion": "7",
                         "uid": "6f1c", "creationTimestamp": "2026-12-05T19:27:57Z",
                         "labels": {"app": "web", "helm.sh/chart": "web-1.0"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.9", "selector": {"app": "web"},
                     "clusterIPs": ["10.0.0.9"], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        service(&mut s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.selector, None);
        assert_eq!(s.metadata.labels, None);
        assert_eq!(s.status, None);
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(spec.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!((&spec.cluster_ips, &spec.ip_families), (&None, &None));
        assert_eq!(spec.session_affinity, None);
        assert_eq!(
            (&s.metadata.uid, &s.metadata.resource_version),
            (&None, &None)
        );
        assert_eq!(s.metadata.name.as_deref(), Some("web"));

        let mut e: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-x1", "namespace": "app",
                         "labels": {SERVICE_NAME_LABEL: "web", "endpointslice.kubernetes.io/managed-by": "c"},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "t"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true},
                           "nodeName": "n1", "zone": "z", "targetRef": {"kind": "Pod", "name": "web-1"}}]
        }))
        .unwrap();
        endpoint_slice(&mut e);
        assert_eq!(e.metadata.labels, Some(Default::default()));
        assert_eq!(crate::compile::backend::slice_owner(&e), Some("web"));
        assert_eq!(e.metadata.annotations, None);
        let ep = &e.endpoints[0];
        assert_eq!(
            (&ep.target_ref, &ep.node_name, &ep.zone),
            (&None, &None, &None)
        );
        assert_eq!(ep.addresses, ["10.1.0.1"]);
        assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(true));
        assert_eq!(e.ports.as_ref().unwrap()[0].port, Some(8080));

        // no service-name label: no owner, whatever selfLink an old API server sent
        let mut orphan: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x", "namespace": "app", "labels": {"app": "x"},
                         "selfLink": "/apis/discovery.k8s.io/v1/namespaces/app/endpointslices/x"},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap();
        endpoint_slice(&mut orphan);
        assert_eq!(crate::compile::backend::slice_owner(&orphan), None);
    }
}
