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

/// One kind's objects. The map itself is shared too: a source hands the next snapshot the
/// same map when nothing of that kind changed, so a rebuild copies nothing it did not need,
/// and compile can tell an unchanged kind by pointer.
pub type Objects<K, T> = Arc<BTreeMap<K, Arc<T>>>;

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every object is shared with the source's cache (and Ingresses with compile units' last
    /// good versions): a snapshot per rebuild never deep-copies an object.
    pub ingresses: Objects<Key, Ingress>,
    /// Cluster-scoped: keyed by name.
    pub ingress_classes: Objects<String, IngressClass>,
    pub services: Objects<Key, Service>,
    pub endpoint_slices: Objects<Key, EndpointSlice>,
    pub secrets: Objects<Key, Secret>,
    pub config_maps: Objects<Key, ConfigMap>,
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
        Arc::make_mut(&mut self.ingresses).insert(key_of(&o.metadata), o);
    }
    pub fn add_ingress_class(&mut self, o: impl Into<Arc<IngressClass>>) {
        let o = o.into();
        Arc::make_mut(&mut self.ingress_classes)
            .insert(o.metadata.name.clone().unwrap_or_default(), o);
    }
    pub fn add_service(&mut self, o: impl Into<Arc<Service>>) {
        let o = o.into();
        Arc::make_mut(&mut self.services).insert(key_of(&o.metadata), o);
    }
    pub fn add_endpoint_slice(&mut self, o: impl Into<Arc<EndpointSlice>>) {
        let o = o.into();
        Arc::make_mut(&mut self.endpoint_slices).insert(key_of(&o.metadata), o);
    }
    pub fn add_secret(&mut self, o: impl Into<Arc<Secret>>) {
        let o = o.into();
        Arc::make_mut(&mut self.secrets).insert(key_of(&o.metadata), o);
    }
    pub fn add_config_map(&mut self, o: impl Into<Arc<ConfigMap>>) {
        let o = o.into();
        Arc::make_mut(&mut self.config_maps).insert(key_of(&o.metadata), o);
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
