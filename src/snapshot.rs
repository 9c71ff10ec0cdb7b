//! The owned, sorted view of Kubernetes objects that `compile` reads.
//!
//! Both sources (the manifest folder and the kube reflectors) fill a [`Snapshot`]; `compile`
//! never knows which. Maps are `BTreeMap`s keyed by (namespace, name) so iteration order, and
//! so the compiled table, is deterministic.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::diagnostics::Diagnostic;

/// (namespace, name)
pub type Key = (String, String);

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Shared with the source's cache and with compile units (last good version), never
    /// deep-copied per rebuild.
    pub ingresses: BTreeMap<Key, Arc<Ingress>>,
    /// Cluster-scoped: keyed by name.
    pub ingress_classes: BTreeMap<String, IngressClass>,
    pub services: BTreeMap<Key, Service>,
    pub endpoint_slices: BTreeMap<Key, EndpointSlice>,
    pub secrets: BTreeMap<Key, Secret>,
    pub config_maps: BTreeMap<Key, ConfigMap>,
    /// Problems found while reading the objects (e.g. a manifest that does not parse).
    pub diagnostics: Vec<Diagnostic>,
    /// When the snapshot was taken (Unix seconds), for certificate validity checks; `None`
    /// skips them. Sources set it, so compile itself reads no clock.
    pub now: Option<i64>,
}

/// Namespace of a namespaced object; objects without one are in `default`, as kubectl does.
pub fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

pub fn key_of(meta: &ObjectMeta) -> Key {
    (namespace_of(meta), meta.name.clone().unwrap_or_default())
}

impl Snapshot {
    pub fn add_ingress(&mut self, o: impl Into<Arc<Ingress>>) {
        let o = o.into();
        self.ingresses.insert(key_of(&o.metadata), o);
    }
    pub fn add_ingress_class(&mut self, o: IngressClass) {
        self.ingress_classes
            .insert(o.metadata.name.clone().unwrap_or_default(), o);
    }
    pub fn add_service(&mut self, o: Service) {
        self.services.insert(key_of(&o.metadata), o);
    }
    pub fn add_endpoint_slice(&mut self, o: EndpointSlice) {
        self.endpoint_slices.insert(key_of(&o.metadata), o);
    }
    pub fn add_secret(&mut self, o: Secret) {
        self.secrets.insert(key_of(&o.metadata), o);
    }
    pub fn add_config_map(&mut self, o: ConfigMap) {
        self.config_maps.insert(key_of(&o.metadata), o);
    }

    /// Number of objects of every kind (for logs).
    pub fn object_count(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
    }
}
