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
//! The cache also keeps what an incremental compile (see `compile::incremental`) needs to
//! rebuild only the hosts a change touches: which Ingresses serve each host (oldest first),
//! which hosts something other than plain routes depends on, how many units request each
//! upstream, and the diagnostics of the assembly.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::backend::{Resolution, Resolved, Resolver};
use super::ingress::IngressPlan;
use crate::diagnostics::Diagnostic;
use crate::route::{Backend, Route};
use crate::settings::CompileSettings;
use crate::snapshot::{Key, Objects, Snapshot};

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

type HashState = ahash::RandomState;

/// How many units request an upstream, and whether any of them asked differently from the
/// request that decided its answer (then which unit is oldest matters).
#[derive(Debug, Clone, Copy, Default)]
pub struct Users {
    pub count: u32,
    pub contested: bool,
}

/// The units a table was compiled from.
#[derive(Debug, Default)]
pub struct CompileCache {
    inputs: Option<u64>,
    units: HashMap<Key, Arc<Unit>, HashState>,
    /// The backends the table was resolved with (see [`Resolved`]).
    pub resolved: Resolved,
    /// Units reused by the compile that built this cache (for logs and tests).
    pub reused: usize,
    /// The compile that built this cache rebuilt only the hosts its changes touched.
    pub incremental: bool,
    /// The snapshot's Ingress and IngressClass maps this cache was compiled from.
    pub ingresses: Option<Objects<Key, Ingress>>,
    pub ingress_classes: Option<Objects<String, k8s_openapi::api::networking::v1::IngressClass>>,
    /// The controller default backend of the table.
    pub global_backend: Option<Arc<Backend>>,
    /// Served non-canary Ingresses by host (as written), oldest first.
    pub hosts: HashMap<Arc<str>, Arc<Vec<Key>>, HashState>,
    /// Hosts a canary, cookie affinity, balancer, www redirect, alias, passthrough or
    /// catch-all setting depends on: a change there rebuilds the whole table.
    pub special_hosts: HashSet<String, HashState>,
    /// Units requesting each upstream name.
    pub users: HashMap<Arc<str>, Users, HashState>,
    /// Ingresses with TLS or client certificates, oldest first.
    pub tls_keys: Vec<Key>,
    /// Canary Ingresses merged onto a primary.
    pub canaries_serving: usize,
    /// Assembly diagnostics that are not about one host's locations.
    pub carried: Vec<Diagnostic>,
    /// Assembly diagnostics about one host's locations.
    pub host_diagnostics: super::HostDiagnostics,
}

/// The hosts an Ingress plan puts locations or servers on.
pub fn unit_hosts(plan: &IngressPlan) -> impl Iterator<Item = &str> {
    plan.hosts
        .iter()
        .map(String::as_str)
        .chain(plan.paths.iter().map(|p| p.host.as_str()))
}

/// Where an Ingress goes in the oldest-first order of compile.
fn order_key<'a>(
    snap: &'a Snapshot,
    key: &'a Key,
) -> (
    Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    &'a Key,
) {
    let ts = snap
        .ingresses
        .get(key)
        .and_then(|i| i.metadata.creation_timestamp.as_ref());
    (ts, key)
}

/// Insert `key` into `keys` (oldest first) unless it is there.
pub fn insert_ordered(keys: &mut Vec<Key>, key: &Key, snap: &Snapshot) {
    let at = order_key(snap, key);
    match keys.binary_search_by(|k| order_key(snap, k).cmp(&at)) {
        Ok(_) => {}
        Err(i) => keys.insert(i, key.clone()),
    }
}

impl CompileCache {
    pub fn new(inputs: Option<u64>) -> Self {
        CompileCache {
            inputs,
            ..Default::default()
        }
    }

    pub fn inputs(&self) -> Option<u64> {
        self.inputs
    }

    /// A copy to update (units and indexes shared; no resolutions).
    pub fn copy_for_update(&self) -> Self {
        CompileCache {
            inputs: self.inputs,
            units: self.units.clone(),
            resolved: Resolved::default(),
            reused: 0,
            incremental: true,
            ingresses: self.ingresses.clone(),
            ingress_classes: self.ingress_classes.clone(),
            global_backend: self.global_backend.clone(),
            hosts: self.hosts.clone(),
            special_hosts: self.special_hosts.clone(),
            users: self.users.clone(),
            tls_keys: self.tls_keys.clone(),
            canaries_serving: self.canaries_serving,
            carried: self.carried.clone(),
            host_diagnostics: self.host_diagnostics.clone(),
        }
    }

    pub fn get(&self, key: &Key) -> Option<&Arc<Unit>> {
        self.units.get(key)
    }

    pub fn remove(&mut self, key: &Key) -> Option<Arc<Unit>> {
        self.units.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Arc<Unit>)> {
        self.units.iter()
    }

    /// Add a served non-canary Ingress to the host index; `snap` places it oldest first
    /// (`None`: it is the newest so far, as the full compile adds them).
    pub fn index_hosts(&mut self, key: &Key, plan: &IngressPlan, snap: Option<&Snapshot>) {
        for host in unit_hosts(plan) {
            if !self.hosts.contains_key(host) {
                // most hosts have one Ingress: room for exactly one
                self.hosts
                    .insert(host.into(), Arc::new(Vec::with_capacity(1)));
            }
            let Some(keys) = self.hosts.get_mut(host) else {
                continue;
            };
            let keys = Arc::make_mut(keys);
            match snap {
                Some(snap) => insert_ordered(keys, key, snap),
                None if keys.last() != Some(key) => keys.push(key.clone()),
                None => {}
            }
        }
    }

    /// Remove an Ingress from the host index.
    pub fn unindex_hosts(&mut self, key: &Key, plan: &IngressPlan) {
        for host in unit_hosts(plan) {
            let Some(keys) = self.hosts.get_mut(host) else {
                continue;
            };
            if let Some(i) = keys.iter().position(|k| k == key) {
                Arc::make_mut(keys).remove(i);
            }
            if keys.is_empty() {
                self.hosts.remove(host);
            }
        }
    }

    /// Count the units requesting each upstream of `resolved` (after a full compile).
    pub fn count_upstream_users(&mut self) {
        let mut users: HashMap<Arc<str>, Users, HashState> = HashMap::default();
        users.reserve(self.resolved.len());
        for unit in self.units.values() {
            add_users(&mut users, &self.resolved, unit);
        }
        self.users = users;
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

/// The distinct upstream names a unit requested.
pub fn upstream_names(unit: &Unit) -> Vec<&str> {
    let mut names: Vec<&str> = unit.journal.iter().map(|r| &*r.backend.name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Count `unit` as a user of each upstream it requested.
pub fn add_users(
    users: &mut HashMap<Arc<str>, Users, HashState>,
    resolved: &Resolved,
    unit: &Unit,
) {
    for name in upstream_names(unit) {
        let Some((shared, _)) = resolved.get(name) else {
            continue;
        };
        let agrees = unit
            .journal
            .iter()
            .filter(|r| &*r.backend.name == name)
            .all(|r| resolved.agrees(r));
        let u = users.entry(shared.clone()).or_default();
        u.count += 1;
        u.contested |= !agrees;
    }
}

/// Stop counting `unit` as a user of its upstreams.
pub fn remove_users(users: &mut HashMap<Arc<str>, Users, HashState>, unit: &Unit) {
    for name in upstream_names(unit) {
        if let Some(u) = users.get_mut(name) {
            u.count = u.count.saturating_sub(1);
            if u.count == 0 {
                users.remove(name);
            }
        }
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
