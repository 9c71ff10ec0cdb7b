//! Reuse of one Ingress's compile result across rebuilds, so that one changed Ingress among
//! 10,000 does not re-parse the annotations and re-build the routes of the other 9,999.
//!
//! A [`Unit`] is everything `compile` derives from one Ingress alone: its plan (or its
//! rejection), its policy and routes, its own diagnostics, and the backend requests it made.
//! The table keeps the units it was compiled from; the next compile reuses a unit only when
//! all of these hold, and otherwise compiles the Ingress again:
//! - the Ingress has the same `metadata.resourceVersion` (the kube source has the API
//!   server's; the folder source stamps one per parse of a file);
//! - the inputs a unit may read besides its Ingress are the same: the compile settings, and
//!   every ConfigMap and Secret by (namespace, name, resourceVersion) ([`fingerprint`]; an
//!   object without a resourceVersion disables reuse);
//! - replaying its backend requests gives the same answers (same upstream name and target),
//!   and the controller default backend is the same: so Service and EndpointSlice changes
//!   recompile exactly the Ingresses whose backends they change.
//!
//! The assembly of the table from the units (host maps, conflicts, regex mode, aliases, TLS)
//! always runs whole, so ordering rules (oldest Ingress wins) do not depend on the cache.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::backend::{Resolution, Resolved, Resolver};
use super::ingress::IngressPlan;
use crate::diagnostics::Diagnostic;
use crate::route::{Backend, Route};
use crate::settings::CompileSettings;
use crate::snapshot::{Key, Snapshot};

/// The compile result of one Ingress.
#[derive(Debug)]
pub struct Unit {
    pub resource_version: Option<String>,
    /// The plan with its routes, or the rejection.
    pub outcome: Result<Planned, Diagnostic>,
    /// Warnings raised while planning and resolving (before the rejection, if any).
    pub diagnostics: Vec<Diagnostic>,
    pub journal: Vec<Resolution>,
    /// The controller default backend the policy was built with.
    pub global_backend: Arc<Backend>,
    /// Not-implemented annotation keys of the Ingress with the mode each took
    /// (`pingress_annotation_unsupported`).
    pub unsupported: Vec<(&'static str, crate::annotations::FailMode)>,
    /// The version of the Ingress this unit serves, when it compiled: the last good version
    /// a later invalid edit falls back to.
    pub good: Option<Arc<Ingress>>,
    /// The Ingress's current version was rejected and `good` (an older one) is served.
    pub kept: bool,
}

impl Unit {
    /// The version of the Ingress this unit serves: the kept last good one, else `current`.
    pub fn served<'a>(&'a self, current: &'a Ingress) -> &'a Ingress {
        match (&self.good, self.kept) {
            (Some(g), true) => g,
            _ => current,
        }
    }
}

#[derive(Debug)]
pub struct Planned {
    pub plan: IngressPlan,
    /// Route of `spec.defaultBackend`.
    pub own_default: Option<Arc<Route>>,
    /// One route per `plan.paths` entry, in the same order.
    pub routes: Vec<Arc<Route>>,
}

/// The units a table was compiled from.
#[derive(Debug, Default)]
pub struct CompileCache {
    inputs: Option<u64>,
    units: HashMap<Key, Arc<Unit>, ahash::RandomState>,
    /// The backends the table was resolved with (see [`Resolved`]).
    pub resolved: Resolved,
    /// Units reused by the compile that built this cache (for logs and tests).
    pub reused: usize,
}

impl CompileCache {
    pub fn new(inputs: Option<u64>) -> Self {
        CompileCache {
            inputs,
            units: HashMap::default(),
            resolved: Resolved::default(),
            reused: 0,
        }
    }

    /// An empty cache with room for `units` Ingresses.
    pub fn with_capacity(inputs: Option<u64>, units: usize) -> Self {
        let mut c = CompileCache::new(inputs);
        c.units.reserve(units);
        c
    }

    pub fn insert(&mut self, key: Key, unit: Arc<Unit>) {
        self.units.insert(key, unit);
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.units.contains_key(key)
    }

    /// The last version of `key` that compiled (see [`Unit::good`]).
    pub fn good(&self, key: &Key) -> Option<&Arc<Ingress>> {
        self.units.get(key)?.good.as_ref()
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The previous unit of `key` when it still holds (see the module doc). Replays its
    /// backend requests into `resolver` either way, as compiling it again would.
    pub fn reuse(
        &self,
        inputs: Option<u64>,
        key: &Key,
        meta: &ObjectMeta,
        resolver: &mut Resolver<'_>,
        global_backend: &Backend,
    ) -> Option<Arc<Unit>> {
        let inputs = inputs?;
        if self.inputs != Some(inputs) {
            return None;
        }
        let rv = meta.resource_version.as_deref()?;
        let unit = self.units.get(key)?;
        if unit.resource_version.as_deref() != Some(rv)
            || !unit.global_backend.same_as(global_backend)
        {
            return None;
        }
        resolver.replay(&unit.journal).then(|| unit.clone())
    }
}

/// Hash of what a unit may read besides its Ingress and its backends; `None` (no reuse) when
/// an object has no resourceVersion.
pub fn fingerprint(snap: &Snapshot, settings: &CompileSettings) -> Option<u64> {
    let mut h = DefaultHasher::new();
    format!("{settings:?}").hash(&mut h);
    for (k, o) in snap.config_maps.iter() {
        (0u8, k, o.metadata.resource_version.as_deref()?).hash(&mut h);
    }
    for (k, o) in snap.secrets.iter() {
        (1u8, k, o.metadata.resource_version.as_deref()?).hash(&mut h);
    }
    Some(h.finish())
}
