//! Pure compile: [`Snapshot`] + [`CompileSettings`] -> [`RouteTable`] + diagnostics.
//!
//! Deterministic: Ingresses are processed oldest first (creationTimestamp, then
//! namespace/name; a missing timestamp counts as oldest), and every map is ordered. Conflicts
//! (same host + path + pathType) go to the first, i.e. oldest, Ingress; the loser's conflicting
//! path is dropped with a diagnostic. An invalid Ingress is left out whole. No I/O here.

pub mod auth;
pub mod backend;
pub mod cache;
pub mod class;
pub mod incremental;
pub mod ingress;
pub mod l4;
pub mod policy;
pub mod tls;
pub mod waf;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::configmap::{self, ControllerConfig};
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::route::tls::{TlsPolicy, UpstreamTls};
use crate::route::{Backend, CanaryTarget, IngressId, PathKind, Policy, Route, RouteTable, Server};
use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;
use backend::{PortRef, Resolver};
use ingress::{IngressPlan, ServiceRef};

/// Upstream name of the controller default backend, as ingress-nginx names it.
pub const DEFAULT_BACKEND_NAME: &str = "upstream-default-backend";

pub struct Compiled {
    pub table: RouteTable,
    pub diagnostics: Vec<Diagnostic>,
    /// Ingresses in the table.
    pub served: usize,
    /// Ingresses of this controller class per (not-implemented annotation key, fail mode),
    /// left-out ones included.
    pub unsupported: BTreeMap<(&'static str, &'static str), usize>,
    /// Ingresses served at their last good version because the current one is rejected.
    pub stale: Vec<crate::snapshot::Key>,
    /// The per-Ingress results, for the next compile (kept by the publisher, not the table).
    pub cache: cache::CompileCache,
}

/// What the previous compile lends the next: the live table (endpoint selectors) and the
/// per-Ingress cache.
#[derive(Clone, Copy)]
pub struct Prev<'a> {
    pub table: &'a RouteTable,
    pub cache: &'a cache::CompileCache,
}

impl Compiled {
    /// This result as the `prev` of the next compile.
    pub fn prev(&self) -> Prev<'_> {
        Prev {
            table: &self.table,
            cache: &self.cache,
        }
    }
}

/// Compile a snapshot. `prev` only lends endpoint selectors (rotation state) to unchanged
/// backends and unchanged Ingresses' results (and their last good versions); it never changes
/// what is routed where: when only a few Ingresses changed and nothing they touch is shared
/// beyond their hosts, [`incremental`] rebuilds just those hosts' servers on a copy of the
/// previous table; otherwise the whole table is assembled again.
pub fn compile(snap: &Snapshot, settings: &CompileSettings, prev: Option<Prev<'_>>) -> Compiled {
    if let Some(p) = prev {
        if let Some(c) = incremental::compile(snap, settings, p) {
            return c;
        }
    }
    full(snap, settings, prev)
}

/// What every compile derives from the settings and the ConfigMaps before the Ingresses.
struct Globals {
    config: ControllerConfig,
    /// The annotations of an Ingress with none of ours, parsed once: every plan whose
    /// annotations parse to the same shares it (most Ingresses; 1.7 kB each otherwise).
    common_annotations: Arc<crate::annotations::IngressAnnotations>,
    /// The policy of a plan with `common_annotations` (480 bytes each otherwise): it depends on
    /// the ConfigMap alone. Set by the first such plan whose policy neither warned nor
    /// resolved a backend; `None` inside: one did, so each plan builds its own.
    common_policy: std::cell::OnceCell<Option<Arc<Policy>>>,
    global_backend: Arc<Backend>,
    /// The route of the default server (`_`) and of unmatched paths of new servers.
    global_default: Arc<Route>,
}

fn globals(
    snap: &Snapshot,
    settings: &CompileSettings,
    resolver: &mut Resolver<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Globals {
    let mut config = controller_config(snap, settings, diags);
    policy::resolve_header_refs(&mut config, snap, diags);
    let base_policy = Arc::new(policy::base(&config));
    let global_backend = match &settings.default_backend_service {
        Some((ns, name)) => {
            let (b, degraded) =
                resolver.resolve(ns, name, &PortRef::First, Some(DEFAULT_BACKEND_NAME));
            if let Some(d) = degraded {
                diags.push(Diagnostic::warning(
                    ObjectRef::new("Service", ns, name),
                    d.reason,
                    format!("--default-backend-service: {}", d.message),
                ));
            }
            b
        }
        None => Arc::new(Backend::not_found()),
    };
    let mut global_default_route = Route::simple(
        None,
        "",
        "",
        PathKind::Prefix,
        global_backend.clone(),
        base_policy,
    );
    // ingress-nginx's default server: no HTTPS redirect, whatever the ConfigMap says
    global_default_route.tls = TlsPolicy {
        redirect: crate::route::tls::RedirectPolicy::none(),
        upstream: Default::default(),
    };
    let common_annotations = Arc::new(
        crate::annotations::parse(
            &settings.annotations_prefix,
            None,
            ingress::gate(&config),
            &ObjectRef::new("Ingress", "", ""),
            &mut Vec::new(),
        )
        .unwrap_or_default(),
    );
    Globals {
        config,
        common_annotations,
        common_policy: std::cell::OnceCell::new(),
        global_backend,
        global_default: Arc::new(global_default_route),
    }
}

/// The unit of `key` for this compile: the previous one when it still holds, else compiled
/// again; a rejected version falls back to the last good one.
#[allow(clippy::too_many_arguments)]
fn unit_for(
    key: &crate::snapshot::Key,
    ing: &Arc<k8s_openapi::api::networking::v1::Ingress>,
    prev_units: &cache::CompileCache,
    inputs: Option<u64>,
    settings: &CompileSettings,
    g: &Globals,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
    reused: &mut usize,
) -> Arc<cache::Unit> {
    let (ns, name) = key;
    let unit = match prev_units.reuse(inputs, key, &ing.metadata, resolver, &g.global_backend) {
        Some(u) => {
            *reused += 1;
            u
        }
        None => Arc::new(compile_unit(ns, name, ing, settings, g, snap, resolver)),
    };
    match (&unit.outcome, prev_units.good(key)) {
        (Err(rejected), Some(good)) if keeps_last_good(rejected) => keep_last_good(
            unit.clone(),
            compile_unit(ns, name, good, settings, g, snap, resolver),
            ing,
            good,
        ),
        _ => unit,
    }
}

/// Diagnostics of the table's assembly about one host's locations (conflicts, invalid regex
/// paths), by host: an incremental compile replaces those of the hosts it rebuilds.
pub type HostDiagnostics = std::collections::HashMap<String, Vec<Diagnostic>, ahash::RandomState>;

/// Put the servers and locations of one served, non-canary Ingress into `table`: on all its
/// hosts, or only on `only`. Returns the routes inserted (conflicts lose to older Ingresses).
#[allow(clippy::too_many_arguments)]
fn place(
    table: &mut RouteTable,
    planned: &cache::Planned,
    global_default: &Arc<Route>,
    only: Option<&str>,
    passthrough: bool,
    host_diags: &mut HostDiagnostics,
    carried: &mut Vec<Diagnostic>,
) -> Vec<Arc<Route>> {
    let plan = &planned.plan;
    let wanted = |h: &str| only.is_none_or(|o| o == h);
    // Servers this Ingress creates get its default backend, and their root location gets
    // this Ingress's annotations (ingress-nginx createServers, locationApplyAnnotations):
    // an unmatched path of the host is authenticated, limited and CORS-answered like the
    // Ingress's own paths before the default backend answers it.
    // The HTTPS redirect of that root location is the Ingress's too (the default server's
    // has none).
    let new_server_default = match (&planned.own_default, planned.routes.first()) {
        (Some(d), Some(r)) => Arc::new(d.with_policy(r.policy.clone())),
        (Some(d), None) => d.clone(),
        (None, Some(r)) => {
            let mut d = global_default.with_policy(r.policy.clone());
            d.tls.redirect = crate::route::tls::RedirectPolicy {
                exempt: false,
                ..r.tls.redirect.clone()
            };
            Arc::new(d)
        }
        (None, None) => global_default.clone(),
    };
    let app_root = plan.annotations.rewrite.app_root.as_deref();
    let server_snippet = plan.annotations.snippets.server.as_ref();
    for host in plan.hosts.iter().filter(|h| wanted(h)) {
        let server = table.server_mut(host, &new_server_default);
        if server.app_root.is_none() {
            server.app_root = app_root.map(Into::into);
        }
        if server.snippet.is_none() {
            server.snippet = server_snippet.cloned();
        }
    }
    let mut inserted = Vec::new();
    for (p, route) in plan.paths.iter().zip(&planned.routes) {
        if !wanted(&p.host) {
            continue;
        }
        let route = route.clone();
        if passthrough {
            // ingress-nginx passes TLS through to the backend of the host's `/` location
            if &*p.path == "/" && !p.host.is_empty() {
                table
                    .passthrough
                    .entry(p.host.as_str().into())
                    .or_insert_with(|| route.backend.clone());
            } else {
                carried.push(Diagnostic::warning(
                    plan.object.clone(),
                    "PassthroughPathIgnored",
                    format!(
                        "ssl-passthrough: path {} of host {:?} is not passed through (only the host's / is, as ingress-nginx); it is served over plain HTTP only",
                        p.path,
                        display_host(&p.host)
                    ),
                ));
            }
        }
        let server = table.server_mut(&p.host, &new_server_default);
        if let Some(winner) = server.get(p.kind, &p.path) {
            let owner = winner
                .ingress
                .as_ref()
                .map(|i| format!("{}/{}", i.namespace, i.name))
                .unwrap_or_default();
            let same = winner.ingress.as_ref() == Some(&plan.id);
            host_diags.entry(p.host.clone()).or_default().push(Diagnostic::warning(
                plan.object.clone(),
                if same { "DuplicatePath" } else { "PathConflict" },
                format!(
                    "host {:?} path {} ({}) is already served by Ingress {owner}{}; this path is ignored",
                    display_host(&p.host),
                    p.path,
                    p.kind.as_str(),
                    if same { "" } else { " (older)" }
                ),
            ));
            continue;
        }
        inserted.push(route.clone());
        server.insert(route);
    }
    inserted
}

/// Whether the Ingress puts its hosts in regex mode (use-regex, or a rewrite on any path).
fn wants_regex(planned: &cache::Planned) -> bool {
    planned.plan.annotations.use_regex || planned.routes.iter().any(|r| r.rewrite.is_some())
}

/// Turn a host's server to regex mode; its paths that are not valid regexes are dropped with
/// a diagnostic.
fn regex_mode(
    table: &mut RouteTable,
    host: &str,
    global_default: &Arc<Route>,
    host_diags: &mut HostDiagnostics,
) {
    let server = table.server_mut(host, global_default);
    for (route, err) in server.into_regex_mode() {
        let object = match &route.ingress {
            Some(i) => ObjectRef::ingress(&i.namespace, &i.name),
            None => ObjectRef::new("Controller", "", "default"),
        };
        host_diags.entry(host.to_string()).or_default().push(Diagnostic::warning(
            object,
            "InvalidRegexPath",
            format!(
                "host {:?} is in regex mode (use-regex or rewrite-target) but path {:?} is not a valid regex ({err}); this path is ignored",
                display_host(host),
                route.path
            ),
        ));
    }
}

/// The ConfigMap's server-snippet follows the host's own in its server block.
fn join_server_snippet(server: &mut Server, config: &ControllerConfig) {
    use crate::annotations::snippet::{program, Kind};
    if let Some(cm) = &config.server_snippet {
        server.snippet = Some(match &server.snippet {
            Some(own) => program::join(own, &cm.text, Kind::Server)
                .map(Arc::new)
                .unwrap_or_else(|| own.clone()),
            None => cm.program.clone(),
        });
    }
}

/// The TLS and client-certificate tables of the TLS units (`keys`, oldest first).
fn compile_tls_of(
    table: &mut RouteTable,
    snap: &Snapshot,
    settings: &CompileSettings,
    config: &ControllerConfig,
    units: &cache::CompileCache,
    keys: &[crate::snapshot::Key],
    diags: &mut Vec<Diagnostic>,
) {
    let tls_served: Vec<tls::ServedTls> = keys
        .iter()
        .filter_map(|key| {
            let ing = snap.ingresses.get(key)?;
            let unit = units.get(key)?;
            let plan = &unit.outcome.as_ref().ok()?.plan;
            Some(tls::ServedTls {
                namespace: &key.0,
                // the last good version when the current one is rejected
                ingress: unit.served(ing),
                object: &plan.object,
                hosts: &plan.hosts,
                auth_tls: plan.annotations.auth_tls.as_ref(),
            })
        })
        .collect();
    table.tls = tls::compile_tls(
        snap,
        &tls_served,
        settings.default_ssl_certificate.as_ref(),
        diags,
    );
    table.tls.client_auth = tls::compile_client_auth(
        snap,
        &tls_served,
        config.allow_cross_namespace_resources,
        diags,
    );
}

/// Whether a unit is served with TLS or asks for client certificates (with or without
/// spec.tls: a host must never be served open because its Ingress forgot spec.tls).
fn is_tls_unit(unit: &cache::Unit, current: &k8s_openapi::api::networking::v1::Ingress) -> bool {
    let Ok(planned) = &unit.outcome else {
        return false;
    };
    planned.plan.annotations.auth_tls.is_some()
        || unit
            .served(current)
            .spec
            .as_ref()
            .is_some_and(|s| s.tls.is_some())
}

/// The whole result: every diagnostic (sorted, so that it does not depend on how the table
/// was assembled) and the counts, from the units.
fn finish(
    table: RouteTable,
    mut diags: Vec<Diagnostic>,
    mut units: cache::CompileCache,
    snap: &Snapshot,
) -> Compiled {
    let mut served = units.canaries_serving;
    let mut unsupported = BTreeMap::new();
    let mut stale = Vec::new();
    diags.extend(units.carried.iter().cloned());
    for d in units.host_diagnostics.values() {
        diags.extend(d.iter().cloned());
    }
    for (key, unit) in units.iter() {
        diags.extend(unit.diagnostics.iter().cloned());
        for (k, mode) in &unit.unsupported {
            *unsupported.entry((*k, mode.label())).or_default() += 1;
        }
        if unit.kept {
            stale.push(key.clone());
        }
        match &unit.outcome {
            Ok(p) if p.plan.annotations.canary.is_none() => served += 1,
            Ok(_) => {}
            Err(d) => diags.push(d.clone()),
        }
    }
    diags.sort();
    stale.sort();
    units.ingresses = Some(snap.ingresses.clone());
    units.ingress_classes = Some(snap.ingress_classes.clone());
    Compiled {
        table,
        diagnostics: diags,
        served,
        unsupported,
        stale,
        cache: units,
    }
}

/// Assemble the whole table from every served Ingress.
fn full(snap: &Snapshot, settings: &CompileSettings, prev: Option<Prev<'_>>) -> Compiled {
    let mut diags = Vec::new();
    let mut resolver = Resolver::new(snap, prev.map(|p| p.table), prev.map(|p| &p.cache.resolved))
        .refuse_external_names(settings.disable_service_external_name);
    let g = globals(snap, settings, &mut resolver, &mut diags);
    let global_default = g.global_default.clone();
    let mut table = RouteTable::new(Server::new("_", global_default.clone()));
    if let Some(p) = prev {
        table.reserve(p.table.host_count(), p.table.backend_count());
    }
    table.add_backend(g.global_backend.clone());

    // what an incremental compile cannot rebuild alone: kept whole from this compile
    let mut carried = Vec::new();
    let mut host_diags = HostDiagnostics::default();
    let mut classes = class::Memo::default();
    let mut served: Vec<_> = snap
        .ingresses
        .iter()
        .filter(|(_, ing)| classes.is_served(ing, snap, settings))
        .filter(|((ns, name), ing)| {
            let catch_all = ing
                .spec
                .as_ref()
                .is_some_and(|s| s.default_backend.is_some());
            if settings.disable_catch_all && catch_all {
                carried.push(Diagnostic::rejected(
                    ObjectRef::ingress(ns, name),
                    "CatchAllDisabled",
                    "this Ingress has a spec.defaultBackend (a catch-all) while \
                     --disable-catch-all is set: remove spec.defaultBackend or the flag",
                ));
                return false;
            }
            true
        })
        .collect();
    // the map is ordered by key, so a stable sort by creationTimestamp alone orders equal
    // timestamps by namespace/name without comparing the key strings
    served.sort_by(|(_, a), (_, b)| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    debug_assert!(served.windows(2).all(|w| {
        (&w[0].1.metadata.creation_timestamp, w[0].0)
            <= (&w[1].1.metadata.creation_timestamp, w[1].0)
    }));

    let mut catch_all_default_set = false;
    let mut regex_hosts: BTreeSet<String> = BTreeSet::new();
    let mut www_hosts: Vec<String> = Vec::new();
    let mut aliases: Vec<(String, String, ObjectRef)> = Vec::new();
    let mut tls_keys = Vec::new();
    let mut canary_units = Vec::new();
    let inputs = cache::fingerprint(snap, settings);
    let no_cache = cache::CompileCache::default();
    let prev_units = prev.map(|p| p.cache).unwrap_or(&no_cache);
    let mut units = cache::CompileCache::with_capacity(inputs, prev_units.len());
    let mut reused = 0;
    let passthrough_on = settings.enable_ssl_passthrough;
    for (key, ing) in served {
        let unit = unit_for(
            key,
            ing,
            prev_units,
            inputs,
            settings,
            &g,
            snap,
            &mut resolver,
            &mut reused,
        );
        units.insert(key.clone(), unit.clone());
        if is_tls_unit(&unit, ing) {
            tls_keys.push(key.clone());
        }
        let Ok(planned) = &unit.outcome else {
            continue;
        };
        let plan = &planned.plan;
        if !incremental::is_plain(planned, settings) {
            units
                .special_hosts
                .extend(cache::unit_hosts(plan).map(String::from));
        }
        // a canary adds no routes of its own: merged onto its primary below
        if plan.annotations.canary.is_some() {
            canary_units.push(unit.clone());
            continue;
        }
        units.index_hosts(key, plan, None);
        if plan.no_rules {
            if let (Some(r), false) = (&planned.own_default, catch_all_default_set) {
                table
                    .catch_all_mut()
                    .set_default(Arc::new(r.without_redirects()));
                catch_all_default_set = true;
            }
        }
        let passthrough = passthrough_on && plan.annotations.ssl.passthrough;
        let inserted = place(
            &mut table,
            planned,
            &global_default,
            None,
            passthrough,
            &mut host_diags,
            &mut carried,
        );
        let (set, id) = (&mut carried, &plan.id);
        if let Some(spec) = &plan.annotations.affinity {
            per_upstream(
                plan,
                &inserted,
                set,
                "AffinityConflict",
                "cookie affinity",
                |r| table.add_affinity(&r.backend.name, spec, id, &r.host, &r.path),
            );
        }
        add_balancers(&mut table, plan, &inserted, set);
        if wants_regex(planned) {
            regex_hosts.extend(plan.hosts.iter().cloned());
        }
        if plan.annotations.redirects.from_to_www {
            www_hosts.extend(
                plan.hosts
                    .iter()
                    .filter(|h| !h.is_empty() && !h.starts_with("*."))
                    .cloned(),
            );
        }
        for host in plan.hosts.iter().filter(|h| !h.is_empty()) {
            for alias in &plan.annotations.backend.server_alias {
                aliases.push((alias.clone(), host.clone(), plan.object.clone()));
            }
        }
    }
    units.reused = reused;

    // before regex mode, which turns the literal paths canaries are matched on into regexes
    units.canaries_serving = merge_canaries(&mut table, &canary_units, &mut carried);

    for host in regex_hosts {
        regex_mode(&mut table, &host, &global_default, &mut host_diags);
    }

    // from-to-www-redirect: a redirect-only server for the other name, unless it is a real host.
    for host in www_hosts {
        let other = match host.strip_prefix("www.") {
            Some(bare) => bare.to_string(),
            None => format!("www.{host}"),
        };
        if !table.has_server(&other) {
            let server = table.server_mut(&other, &global_default);
            server.redirect_to = Some(host.as_str().into());
        }
        units.special_hosts.insert(other);
    }
    // server-alias: the first Ingress to claim a name wins; real hosts are never aliases.
    for (alias, host, object) in aliases {
        if !table.add_alias(&alias, &host) && !table.has_server(&alias) {
            carried.push(Diagnostic::warning(
                object,
                "AliasConflict",
                format!("server-alias {alias:?} is already an alias of another host; ignored"),
            ));
        }
        units.special_hosts.insert(alias);
    }

    if g.config.server_snippet.is_some() {
        for server in table.servers_mut() {
            join_server_snippet(server, &g.config);
        }
    }
    (table.tcp, table.udp) = l4::stream_services(snap, settings, &mut resolver, &mut diags);
    units.resolved = resolver.take_resolved();
    for (name, b) in units.resolved.backends() {
        table.add_named_backend(name.clone(), b.clone());
    }
    units.count_upstream_users();
    compile_tls_of(
        &mut table, snap, settings, &g.config, &units, &tls_keys, &mut diags,
    );
    units.tls_keys = tls_keys;
    units.carried = carried;
    units.host_diagnostics = host_diags;
    units.global_backend = Some(g.global_backend.clone());
    table.config = g.config;
    finish(table, diags, units, snap)
}

/// `upstream-hash-by` and `load-balance` of `plan` for the upstreams of `routes`.
fn add_balancers(
    table: &mut RouteTable,
    plan: &IngressPlan,
    routes: &[Arc<Route>],
    diags: &mut Vec<Diagnostic>,
) {
    let id = &plan.id;
    if let Some(h) = &plan.annotations.hash_by {
        let h = Arc::new(h.clone());
        per_upstream(
            plan,
            routes,
            diags,
            "HashByConflict",
            "upstream-hash-by",
            |r| table.add_hash_by(&r.backend.name, &h, id),
        );
    }
    if let Some(lb) = plan.annotations.load_balance {
        per_upstream(
            plan,
            routes,
            diags,
            "LoadBalanceConflict",
            "load-balance",
            |r| table.add_load_balance(&r.backend.name, lb, id),
        );
    }
}

/// A per-upstream setting of the upstreams of `routes` (ingress-nginx keeps cookie affinity,
/// `upstream-hash-by` and `load-balance` per upstream: the oldest Ingress's setting applies,
/// every other Ingress asking for another one gets `reason`, once per upstream).
fn per_upstream(
    plan: &IngressPlan,
    routes: &[Arc<Route>],
    diags: &mut Vec<Diagnostic>,
    reason: &'static str,
    what: &str,
    mut add: impl FnMut(&Route) -> Result<(), IngressId>,
) {
    let mut reported = BTreeSet::new();
    for r in routes {
        if let Err(owner) = add(r) {
            if reported.insert(r.backend.name.clone()) {
                diags.push(Diagnostic::warning(
                    plan.object.clone(),
                    reason,
                    format!(
                        "upstream {} already has {what} settings from the older Ingress {}/{}; they apply ({what} is per Service in ingress-nginx)",
                        r.backend.name, owner.namespace, owner.name
                    ),
                ));
            }
        }
    }
}

/// Attach each canary Ingress (oldest first) to the primary upstream of the non-canary route
/// with the same host, path and pathType (ingress-nginx `mergeAlternativeBackends`): every
/// route of that upstream gets it. One canary per upstream; a canary path without a primary
/// is not served. Returns how many canary Ingresses serve.
fn merge_canaries(
    table: &mut RouteTable,
    units: &[Arc<cache::Unit>],
    diags: &mut Vec<Diagnostic>,
) -> usize {
    let mut serving = 0;
    for unit in units {
        let Ok(planned) = &unit.outcome else { continue };
        let plan = &planned.plan;
        let Some(policy) = &plan.annotations.canary else {
            continue;
        };
        let mut attached = false;
        for route in &planned.routes {
            let primary = table
                .server(&route.host)
                .and_then(|s| s.get(route.kind, &route.path))
                .map(|p| p.backend.clone());
            let Some(primary) = primary else {
                diags.push(Diagnostic::warning(
                    plan.object.clone(),
                    "CanaryWithoutPrimary",
                    format!(
                        "canary host {:?} path {} ({}) matches no Ingress of this controller with the same host, path and pathType; it is not served",
                        display_host(&route.host),
                        route.path,
                        route.kind.as_str()
                    ),
                ));
                continue;
            };
            if primary.name == route.backend.name {
                continue;
            }
            let target = Arc::new(CanaryTarget {
                backend: route.backend.clone(),
                policy: policy.clone(),
                ingress: plan.id.clone(),
            });
            if table.add_canary(&primary.name, target) {
                attached = true;
                // only the canary's balancer annotations count for its own upstream
                add_balancers(table, plan, std::slice::from_ref(route), diags);
                canary_affinity(table, plan, route, &primary.name, diags);
            } else {
                let owner = table
                    .canary_for(&primary.name)
                    .map(|c| format!("{}/{}", c.ingress.namespace, c.ingress.name))
                    .unwrap_or_default();
                if owner != format!("{}/{}", plan.id.namespace, plan.id.name) {
                    diags.push(Diagnostic::warning(
                        plan.object.clone(),
                        "CanaryIgnored",
                        format!(
                            "upstream {} already has a canary (Ingress {owner}); ingress-nginx uses one canary per upstream, this one is not served",
                            primary.name
                        ),
                    ));
                }
            }
        }
        serving += usize::from(attached);
    }
    serving
}

/// A canary upstream's cookie affinity (ingress-nginx `mergeAlternativeBackend`): with
/// `affinity-canary-behavior: sticky` (the default) it is its primary's, none when the primary
/// has none; with `legacy` the canary Ingress's own `affinity` annotations.
fn canary_affinity(
    table: &mut RouteTable,
    plan: &IngressPlan,
    route: &Arc<Route>,
    primary: &str,
    diags: &mut Vec<Diagnostic>,
) {
    use crate::annotations::affinity::CanaryBehavior;
    let canary = &route.backend.name;
    match plan.annotations.affinity_canary_behavior {
        CanaryBehavior::Sticky => {
            if plan.annotations.affinity.is_some() && table.affinity_for(primary).is_none() {
                diags.push(Diagnostic::warning(
                    plan.object.clone(),
                    "CanaryAffinityIgnored",
                    format!(
                        "the canary's own affinity applies only with affinity-canary-behavior: legacy; with sticky (the default) upstream {canary} takes its primary's affinity, and {primary} has none"
                    ),
                ));
            }
            if !table.copy_affinity(primary, canary) {
                diags.push(Diagnostic::warning(
                    plan.object.clone(),
                    "AffinityConflict",
                    format!(
                        "canary upstream {canary} already has cookie affinity as another Ingress's primary; it keeps that one, not {primary}'s"
                    ),
                ));
            }
        }
        CanaryBehavior::Legacy => {
            if let Some(spec) = &plan.annotations.affinity {
                per_upstream(
                    plan,
                    std::slice::from_ref(route),
                    diags,
                    "AffinityConflict",
                    "cookie affinity",
                    |r| table.add_affinity(&r.backend.name, spec, &plan.id, &r.host, &r.path),
                );
            }
        }
    }
}

/// The `--configmap` settings; a named ConfigMap that does not exist is a warning.
fn controller_config(
    snap: &Snapshot,
    settings: &CompileSettings,
    diags: &mut Vec<Diagnostic>,
) -> ControllerConfig {
    let Some((ns, name)) = &settings.configmap else {
        return ControllerConfig::default();
    };
    let object = ObjectRef::new("ConfigMap", ns, name);
    match snap.config_maps.get(&(ns.clone(), name.clone())) {
        Some(cm) => configmap::parse(cm.data.as_ref(), &object, diags),
        None => {
            diags.push(Diagnostic::warning(
                object,
                "ConfigMapNotFound",
                format!("--configmap {ns}/{name} does not exist; using the defaults"),
            ));
            ControllerConfig::default()
        }
    }
}

/// Everything derived from one Ingress alone (see [`cache`]).
#[allow(clippy::too_many_arguments)]
fn compile_unit(
    ns: &str,
    name: &str,
    ing: &Arc<k8s_openapi::api::networking::v1::Ingress>,
    settings: &CompileSettings,
    g: &Globals,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
) -> cache::Unit {
    let (config, global_backend) = (&g.config, &g.global_backend);
    let mut diags = Vec::new();
    resolver.take_journal();
    let outcome = ingress::plan(
        ns,
        name,
        ing,
        settings,
        config,
        &g.common_annotations,
        &mut diags,
    )
    .map(|plan| {
        let pol = ingress_policy(&plan, g, snap, resolver, &mut diags);
        let upstream = tls::upstream_tls(&plan.annotations, ns, snap, &plan.object, &mut diags);
        let global_auth_policy = global_auth_policy(&plan, &pol, config, snap, resolver);
        let mut ctx = IngressCtx {
            plan: &plan,
            policy: pol,
            global_auth_policy,
            no_auth_policy: None,
            service_upstream: plan
                .annotations
                .backend
                .service_upstream
                .unwrap_or(config.service_upstream),
            resolver,
            diags: &mut diags,
            reported: BTreeSet::new(),
            config,
            upstream,
        };
        let own_default = plan
            .default_backend
            .as_ref()
            .map(|s| ctx.route("", "", PathKind::Prefix, s));
        let routes = plan
            .paths
            .iter()
            .map(|p| ctx.route(&p.host, &p.path, p.kind, &p.service))
            .collect();
        cache::Planned {
            plan,
            own_default,
            routes,
        }
    });
    let outcome_ok = outcome.is_ok();
    cache::Unit {
        resource_version: ing.metadata.resource_version.clone(),
        outcome,
        diagnostics: diags,
        // kept for as long as the Ingress is unchanged: no spare capacity (a Vec's first
        // growth holds four)
        journal: {
            let mut j = resolver.take_journal();
            j.shrink_to_fit();
            j
        },
        global_backend: global_backend.clone(),
        unsupported: crate::annotations::unsupported(
            &settings.annotations_prefix,
            ing.metadata.annotations.as_ref(),
        ),
        good: outcome_ok.then(|| ing.clone()),
        kept: false,
    }
}

/// The policy of an Ingress: the shared common one when its annotations are the common ones.
fn ingress_policy(
    plan: &IngressPlan,
    g: &Globals,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Arc<Policy> {
    let build = |resolver: &mut Resolver<'_>, diags: &mut Vec<Diagnostic>| {
        Arc::new(policy::for_ingress(
            plan,
            &g.config,
            snap,
            resolver,
            &g.global_backend,
            diags,
        ))
    };
    if !Arc::ptr_eq(&plan.annotations, &g.common_annotations) {
        return build(resolver, diags);
    }
    if let Some(Some(p)) = g.common_policy.get() {
        return p.clone();
    }
    let (warned, asked) = (diags.len(), resolver.journal_len());
    let p = build(resolver, diags);
    // shared only if nothing about this Ingress went into it
    let alone = diags.len() == warned && resolver.journal_len() == asked;
    let _ = g.common_policy.set(alone.then(|| p.clone()));
    p
}

/// The policy of this Ingress's paths that the ConfigMap's global-auth-url covers: the
/// Ingress's own policy plus the global external auth (fails closed when that is invalid).
fn global_auth_policy(
    plan: &IngressPlan,
    pol: &Arc<Policy>,
    config: &ControllerConfig,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
) -> Option<Arc<Policy>> {
    if !auth::global_applies(&plan.annotations.auth, config) || pol.fail_closed.is_some() {
        return None;
    }
    let mut p = (**pol).clone();
    match &config.global_auth {
        Some(Ok(spec)) => match auth::global(spec, snap, resolver) {
            Ok(e) => p.auth.external = Some(e),
            Err(m) => p.fail_closed = Some(m.into()),
        },
        Some(Err(m)) => p.fail_closed = Some(m.as_str().into()),
        None => return None,
    }
    Some(Arc::new(p))
}

/// Whether a rejection falls back to the Ingress's last good version: every mistake does, but
/// not a fail-safe leave-out (a canary is a deliberate change ingress-nginx accepts).
fn keeps_last_good(rejected: &Diagnostic) -> bool {
    rejected.reason != "AnnotationLeftOut"
}

/// `kept` is the last good version compiled against today's snapshot (fresh backends); when
/// it still compiles it is served in place of `rejected`, with a Warning saying so.
fn keep_last_good(
    rejected: Arc<cache::Unit>,
    mut kept: cache::Unit,
    current: &k8s_openapi::api::networking::v1::Ingress,
    good: &Arc<k8s_openapi::api::networking::v1::Ingress>,
) -> Arc<cache::Unit> {
    let Err(why) = &rejected.outcome else {
        return rejected;
    };
    if kept.outcome.is_err() {
        return rejected;
    }
    let version = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| match (
        m.generation,
        m.resource_version.as_deref(),
    ) {
        (Some(g), _) => format!("generation {g}"),
        (None, Some(rv)) => format!("resourceVersion {rv}"),
        (None, None) => "the previous version".to_string(),
    };
    let mut diagnostics = vec![Diagnostic::warning(
        why.object.clone(),
        "KeptLastGoodVersion",
        format!(
            "kept {}; {} rejected: {} ({})",
            version(&good.metadata),
            version(&current.metadata),
            why.message,
            why.reason
        ),
    )];
    diagnostics.extend(kept.diagnostics);
    kept.diagnostics = diagnostics;
    // reusable while the rejected version stays, with the annotations report of what is served
    kept.resource_version = current.metadata.resource_version.clone();
    kept.good = Some(good.clone());
    kept.kept = true;
    Arc::new(kept)
}

fn display_host(h: &str) -> &str {
    if h.is_empty() {
        "*"
    } else {
        h
    }
}

struct IngressCtx<'p, 'r, 's> {
    plan: &'p IngressPlan,
    policy: Arc<Policy>,
    /// The policy of paths the ConfigMap's global-auth-url covers (it fails closed).
    global_auth_policy: Option<Arc<Policy>>,
    /// The policy of paths under `no-auth-locations` when the Ingress has its own auth: the
    /// same without authentication (made on first use).
    no_auth_policy: Option<Arc<Policy>>,
    service_upstream: bool,
    resolver: &'r mut Resolver<'s>,
    diags: &'r mut Vec<Diagnostic>,
    /// Degraded backends already reported for this Ingress.
    reported: BTreeSet<String>,
    config: &'r ControllerConfig,
    /// `backend-protocol` / `proxy-ssl-*` of this Ingress.
    upstream: Arc<UpstreamTls>,
}

impl IngressCtx<'_, '_, '_> {
    fn route(&mut self, host: &str, path: &str, kind: PathKind, s: &ServiceRef) -> Arc<Route> {
        let ns = &self.plan.id.namespace;
        let (backend, degraded) =
            self.resolver
                .resolve_service(ns, &s.name, &s.port, self.service_upstream);
        if let Some(d) = degraded {
            if self.reported.insert(backend.name.to_string()) {
                self.diags.push(Diagnostic::warning(
                    self.plan.object.clone(),
                    d.reason,
                    d.message,
                ));
            }
        }
        // nginx `rewrite "(?i)<path>" <target>`; no rewrite when target == path (needsRewrite)
        let rewrite = match &self.policy.rewrite_target {
            Some(t) if !path.is_empty() && **t != *path => regex::RegexBuilder::new(path)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .ok(),
            _ => None,
        };
        let policy = match &self.global_auth_policy {
            Some(p) if policy::global_auth_covers(self.plan, self.config, path) => p.clone(),
            // ingress-nginx skips every auth directive of a location under no-auth-locations
            // (its IP lists and a denied location still apply)
            _ if self.policy.auth.is_active() && policy::no_auth_location(self.config, path) => {
                let open = self.no_auth_policy.get_or_insert_with(|| {
                    let mut p = (*self.policy).clone();
                    p.auth = Default::default();
                    Arc::new(p)
                });
                open.clone()
            }
            _ => self.policy.clone(),
        };
        Arc::new(Route {
            ingress: Some(self.plan.id.clone()),
            host: host.into(),
            path: path.into(),
            kind,
            backend,
            policy,
            rewrite,
            tls: tls::route_policy(
                &self.plan.annotations,
                &self.config.tls,
                path,
                &self.upstream,
            ),
        })
    }
}

/// Diagnostics grouped by object, for logs and Events.
pub fn by_object(diags: &[Diagnostic]) -> BTreeMap<&ObjectRef, Vec<&Diagnostic>> {
    let mut m: BTreeMap<&ObjectRef, Vec<&Diagnostic>> = BTreeMap::new();
    for d in diags {
        m.entry(&d.object).or_default().push(d);
    }
    m
}
