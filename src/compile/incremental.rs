//! Incremental compile: when a few Ingresses changed and nothing else did, rebuild only the
//! servers of the hosts they touch, on a copy of the previous table.
//!
//! A full compile assembles every host from every Ingress, oldest first. Most of a host's
//! server depends only on the Ingresses that serve that host (its locations, conflicts, regex
//! mode, server-level settings); the rest of the table (canaries, cookie affinity and balancer
//! settings per upstream, www redirects, aliases, passthrough, the catch-all) can depend on
//! Ingresses of other hosts. So the incremental compile runs only when:
//! - the previous compile's IngressClass map is the snapshot's, and the settings, ConfigMaps
//!   and Secrets are the same ([`cache::fingerprint`]);
//! - at most [`MAX_CHANGED`] Ingresses changed (by object identity, or because a Service or
//!   EndpointSlice their backends resolve from changed: pod churn), none with
//!   spec.defaultBackend, and each changed Ingress's previous and new units are plain
//!   ([`is_plain`]) and touch no host some other setting depends on
//!   ([`cache::CompileCache::special_hosts`]);
//! - every upstream a changed Ingress requested or requests is asked for the same way by
//!   every other Ingress that requests it (the oldest Ingress's request decides an
//!   upstream's answer, so otherwise the order of unchanged Ingresses would matter).
//!
//! Otherwise it returns `None` and the caller compiles everything. The result is the same
//! either way; `tests/compile_fixtures.rs` checks it after every single-object change of
//! every fixture.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::backend::{diff, Resolver};
use super::cache::{self, Planned};
use super::{
    compile_tls_of, finish, globals, is_tls_unit, join_server_snippet, place, regex_mode, unit_for,
    wants_regex, Compiled, Prev,
};
use crate::settings::CompileSettings;
use crate::snapshot::{Key, Snapshot};

/// Above this many changed Ingresses the whole table is assembled again.
pub const MAX_CHANGED: usize = 64;

/// Whether a compiled Ingress affects only the servers of its own hosts: no canary, cookie
/// affinity, balancer setting, www redirect, alias, passthrough or default backend, and no
/// rule without host.
pub fn is_plain(planned: &Planned, settings: &CompileSettings) -> bool {
    let plan = &planned.plan;
    let a = &plan.annotations;
    a.canary.is_none()
        && a.affinity.is_none()
        && a.hash_by.is_none()
        && a.load_balance.is_none()
        && !a.redirects.from_to_www
        && a.backend.server_alias.is_empty()
        && !(settings.enable_ssl_passthrough && a.ssl.passthrough)
        && !plan.no_rules
        && plan.default_backend.is_none()
        && planned.own_default.is_none()
        && cache::unit_hosts(plan).all(|h| !h.is_empty())
}

/// Whether a unit may change incrementally: rejected, or plain and on no special host.
fn eligible(unit: &cache::Unit, settings: &CompileSettings, pc: &cache::CompileCache) -> bool {
    match &unit.outcome {
        Err(_) => true,
        Ok(p) => {
            is_plain(p, settings)
                && cache::unit_hosts(&p.plan).all(|h| !pc.special_hosts.contains(h))
        }
    }
}

fn has_default_backend(ing: &k8s_openapi::api::networking::v1::Ingress) -> bool {
    ing.spec
        .as_ref()
        .is_some_and(|s| s.default_backend.is_some())
}

/// Compile `snap` on top of `prev` when only a few plain Ingresses changed (see the module
/// doc); `None` when the whole table must be assembled.
pub fn compile(snap: &Snapshot, settings: &CompileSettings, prev: Prev<'_>) -> Option<Compiled> {
    let pc = prev.cache;
    let old_ingresses = pc.ingresses.as_ref()?;
    if !Arc::ptr_eq(pc.ingress_classes.as_ref()?, &snap.ingress_classes) {
        return None;
    }
    let inputs = cache::fingerprint(snap, settings);
    if inputs.is_none() || inputs != pc.inputs() {
        return None;
    }
    let mut changed: Vec<&Key> = Vec::new();
    let mut too_many = false;
    diff(old_ingresses, &snap.ingresses, |key, old, new| {
        too_many |= changed.len() >= MAX_CHANGED
            || old.is_some_and(has_default_backend)
            || new.is_some_and(has_default_backend);
        changed.push(key);
    });
    if too_many {
        return None;
    }
    let mut diags = Vec::new();
    let mut resolver = Resolver::new(snap, Some(prev.table), Some(&pc.resolved))
        .refuse_external_names(settings.disable_service_external_name);
    // Ingresses whose backends' Services or EndpointSlices changed are compiled again too
    if !pc.resolved.valid_for(snap) {
        let also: Vec<&Key> = pc
            .iter()
            .filter(|(_, u)| u.journal.iter().any(|r| resolver.may_differ(r)))
            .map(|(k, _)| k)
            .collect();
        changed.extend(also);
        changed.sort();
        changed.dedup();
        if changed.len() > MAX_CHANGED {
            return None;
        }
    }
    let old_units: Vec<(&Key, &Arc<cache::Unit>)> = changed
        .iter()
        .filter_map(|k| pc.get(k).map(|u| (*k, u)))
        .collect();
    if !old_units.iter().all(|(_, u)| eligible(u, settings, pc)) {
        return None;
    }

    // Upstreams the changed Ingresses requested: kept when other Ingresses request them too
    // (then none of those may have asked differently), resolved again otherwise.
    let mut leaving: HashMap<&str, u32, ahash::RandomState> = HashMap::default();
    for (_, unit) in &old_units {
        for name in cache::upstream_names(unit) {
            *leaving.entry(name).or_default() += 1;
        }
    }
    for (name, n) in &leaving {
        let users = pc.users.get(*name).copied().unwrap_or_default();
        if users.count > *n && users.contested {
            return None;
        }
    }
    let remaining = |name: &str| {
        let n = leaving.get(name).copied().unwrap_or(0);
        pc.users.get(name).map_or(0, |u| u.count.saturating_sub(n))
    };

    let g = globals(snap, settings, &mut resolver, &mut diags);
    if !pc
        .global_backend
        .as_ref()
        .is_some_and(|b| b.same_as(&g.global_backend))
    {
        return None;
    }
    // the answers of upstreams unchanged Ingresses request, as replaying them would give
    let unseeded = resolver.seed(&pc.resolved, |name| remaining(name) > 0);
    // an unchanged Ingress whose upstream must be resolved again is not unchanged
    if unseeded.iter().any(|name| remaining(name) > 0) {
        return None;
    }

    // the new versions, oldest first
    let mut new_ingresses: Vec<(&Key, &Arc<k8s_openapi::api::networking::v1::Ingress>)> = changed
        .iter()
        .filter_map(|k| snap.ingresses.get(*k).map(|i| (*k, i)))
        .collect();
    new_ingresses.sort_by(|(ka, a), (kb, b)| {
        (&a.metadata.creation_timestamp, ka).cmp(&(&b.metadata.creation_timestamp, kb))
    });
    let mut units = pc.copy_for_update();
    for (key, _) in &old_units {
        units.remove(key);
    }
    let mut reused = units.len();
    let mut classes = super::class::Memo::default();
    let mut new_units = Vec::new();
    for (key, ing) in new_ingresses {
        if !classes.is_served(ing, snap, settings) {
            continue;
        }
        let unit = unit_for(
            key,
            ing,
            pc,
            inputs,
            settings,
            &g,
            snap,
            &mut resolver,
            &mut reused,
        );
        if !eligible(&unit, settings, pc) {
            return None;
        }
        // a request for an upstream others keep must be theirs (else the oldest decides)
        if !unit
            .journal
            .iter()
            .all(|r| remaining(&r.backend.name) == 0 || pc.resolved.agrees(r))
        {
            return None;
        }
        units.insert(key.clone(), unit.clone());
        new_units.push((key, ing, unit));
    }
    units.reused = reused;

    let mut table = prev.table.copy_for_update();
    table.add_backend(g.global_backend.clone());
    (table.tcp, table.udp) = super::l4::stream_services(snap, settings, &mut resolver, &mut diags);
    units.resolved = resolver.take_resolved();

    // the backend list follows the answers of the upstreams that may have changed
    let mut names: BTreeSet<Arc<str>> = unseeded.into_iter().collect();
    for (_, unit) in &old_units {
        names.extend(cache::upstream_names(unit).into_iter().map(Arc::from));
    }
    for (_, _, unit) in &new_units {
        names.extend(cache::upstream_names(unit).into_iter().map(Arc::from));
    }
    for name in &names {
        match units.resolved.get(name) {
            Some((shared, b)) => table.add_named_backend(shared.clone(), b.clone()),
            None => table.remove_backend(name),
        }
    }

    // host index, upstream users and TLS list
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for (key, unit) in &old_units {
        cache::remove_users(&mut units.users, unit);
        units.tls_keys.retain(|k| k != *key);
        if let Ok(p) = &unit.outcome {
            hosts.extend(cache::unit_hosts(&p.plan).map(String::from));
            units.unindex_hosts(key, &p.plan);
        }
    }
    for (key, ing, unit) in &new_units {
        cache::add_users(&mut units.users, &units.resolved, unit);
        if is_tls_unit(unit, ing) {
            cache::insert_ordered(&mut units.tls_keys, key, snap);
        }
        if let Ok(p) = &unit.outcome {
            hosts.extend(cache::unit_hosts(&p.plan).map(String::from));
            units.index_hosts(key, &p.plan, Some(snap));
        }
    }

    // the servers of the touched hosts, from their Ingresses, oldest first
    let mut host_diags = std::mem::take(&mut units.host_diagnostics);
    let mut none = Vec::new();
    for host in &hosts {
        table.remove_server(host);
        host_diags.remove(host);
        let Some(keys) = units.hosts.get(host.as_str()).cloned() else {
            continue;
        };
        let mut regex = false;
        for key in keys.iter() {
            let Some(Ok(planned)) = units.get(key).map(|u| &u.outcome) else {
                continue;
            };
            place(
                &mut table,
                planned,
                &g.global_default,
                Some(host),
                false,
                &mut host_diags,
                &mut none,
            );
            regex |= wants_regex(planned) && planned.plan.hosts.iter().any(|h| h == host);
        }
        if regex {
            regex_mode(&mut table, host, &g.global_default, &mut host_diags);
        }
        if table.has_server(host) {
            join_server_snippet(table.server_mut(host, &g.global_default), &g.config);
        }
    }
    debug_assert!(
        none.is_empty(),
        "plain Ingresses carry no assembly diagnostics"
    );
    units.host_diagnostics = host_diags;

    let tls_keys = std::mem::take(&mut units.tls_keys);
    compile_tls_of(
        &mut table, snap, settings, &g.config, &units, &tls_keys, &mut diags,
    );
    units.tls_keys = tls_keys;
    table.config = g.config;
    Some(finish(table, diags, units, snap))
}
