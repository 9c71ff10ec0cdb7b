//! The runtime route table and its lookup. Pure: no I/O, no Kubernetes types.
//!
//! A [`RouteTable`] is immutable once built by `compile` and published whole through one
//! `ArcSwap`. Lookup follows ingress-nginx (nginx `server_name` + `location`) semantics:
//! - host: exact name, then a one-label wildcard (`*.example.com`), then the catch-all server
//!   (rules without host), case-insensitive, port and a trailing dot ignored;
//! - path (literal mode): Exact first, then the longest element-wise Prefix, then the server's
//!   default route (Ingress `defaultBackend` or the controller default backend);
//! - path (regex mode, when any Ingress of the host sets `use-regex`): every path of the host is
//!   a case-insensitive regex anchored at the start, tried in descending path length.
//!
//! Lookup does not allocate on the common path (lower-case ASCII host, normalised path).

pub mod auth;
pub mod backend;
pub mod l4;
pub mod path;
pub mod policy;
pub mod tls;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The table's hash maps: keys are written by the compile (Ingress hosts, paths, upstream
/// names), so a fast hasher is safe; it is seeded per process all the same.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

pub use backend::{Backend, Endpoints, Target, UrlTarget};
pub use policy::{Policy, WafPolicy};

use crate::configmap::ControllerConfig;

/// Kind of an Ingress path as ingress-nginx locates it: Exact (`location = /p`), Prefix
/// (Kubernetes segment prefix: `location = /p` + `location /p/`), ImplementationSpecific
/// (nginx's own `location /p`: a plain string prefix, so `/p` also matches `/pq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// The Ingress a route comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngressId {
    pub namespace: Box<str>,
    pub name: Box<str>,
}

/// What a matched request is served by.
#[derive(Debug)]
pub struct Route {
    /// The Ingress that defined this route; `None` for the controller's default backend.
    pub ingress: Option<IngressId>,
    /// Host as written in the Ingress (`""` for rules without host).
    pub host: Box<str>,
    /// Path as written in the Ingress (`""` for default routes).
    pub path: Box<str>,
    pub kind: PathKind,
    pub backend: Arc<Backend>,
    /// What to do with requests (annotations + ConfigMap defaults), shared per Ingress.
    pub policy: Arc<Policy>,
    /// rewrite-target's regex: the path, case-insensitive, unanchored (nginx `rewrite`).
    pub rewrite: Option<regex::Regex>,
    /// Redirect-to-HTTPS and upstream TLS policy (see [`tls`]).
    pub tls: tls::TlsPolicy,
}

impl Route {
    /// A route with the default policy and no rewrite.
    pub fn simple(
        ingress: Option<IngressId>,
        host: &str,
        path: &str,
        kind: PathKind,
        backend: Arc<Backend>,
        policy: Arc<Policy>,
    ) -> Route {
        Route {
            ingress,
            host: host.into(),
            path: path.into(),
            kind,
            backend,
            policy,
            rewrite: None,
            tls: tls::TlsPolicy::default(),
        }
    }

    /// ingress-nginx's `$location_path`: the Ingress path; a server's default route (no path
    /// of its own) is nginx's root location `/` of that server.
    pub fn location_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// The same route without HTTPS redirects: ingress-nginx's default server and catch-all
    /// location keep an empty `Rewrite` (controller.go `createServers`: "Redirect and rewrite
    /// can affect the catch all behavior, skip for now"), so neither `ssl-redirect` nor a
    /// ConfigMap `force-ssl-redirect` redirects them.
    pub fn without_redirects(&self) -> Route {
        let mut r = self.with_policy(self.policy.clone());
        r.rewrite = self.rewrite.clone();
        r.tls.redirect = tls::RedirectPolicy::none();
        r
    }

    /// The same route under another policy (a server's root location takes the annotations of
    /// the Ingress that created the server); no rewrite regex.
    pub fn with_policy(&self, policy: Arc<Policy>) -> Route {
        Route {
            ingress: self.ingress.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            kind: self.kind,
            backend: self.backend.clone(),
            policy,
            rewrite: None,
            tls: self.tls.clone(),
        }
    }

    pub fn describe(&self) -> String {
        let owner = match &self.ingress {
            Some(i) => format!("{}/{}", i.namespace, i.name),
            None => "(controller)".to_string(),
        };
        let policy = self.policy.describe();
        let tls = self.tls.describe();
        if policy.is_empty() {
            format!("{} => {}{tls}", owner, self.backend.describe())
        } else {
            format!("{} => {}{tls} {{{policy}}}", owner, self.backend.describe())
        }
    }
}

/// A regex location (regex mode).
#[derive(Debug, Clone)]
pub struct RegexRoute {
    pub regex: regex::Regex,
    pub route: Arc<Route>,
}

/// One nginx `server`: the routes of one host.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: Box<str>,
    exact: Map<Box<str>, Arc<Route>>,
    /// Keys without trailing slash (except `/`): `/foo/` and `/foo` match the same requests.
    prefix: Map<Box<str>, Arc<Route>>,
    /// ImplementationSpecific routes (string prefixes), longest path first.
    literal: Vec<Arc<Route>>,
    /// `Some` in regex mode: every location of the host, in match order.
    regex: Option<Vec<RegexRoute>>,
    default: Arc<Route>,
    /// app-root: the exact URI `/` answers 302 to this path (server level, first Ingress).
    pub app_root: Option<Box<str>>,
    /// from-to-www-redirect: this server only redirects to that host.
    pub redirect_to: Option<Box<str>>,
    /// `server-snippet` (server level, first Ingress of the host).
    pub snippet: Option<Arc<crate::annotations::snippet::Program>>,
}

impl Server {
    pub fn new(name: &str, default: Arc<Route>) -> Server {
        Server {
            name: name.into(),
            exact: Map::default(),
            prefix: Map::default(),
            literal: Vec::new(),
            regex: None,
            default,
            app_root: None,
            redirect_to: None,
            snippet: None,
        }
    }

    pub fn is_regex_mode(&self) -> bool {
        self.regex.is_some()
    }

    /// Key under which a literal path is stored.
    pub fn prefix_key(path: &str) -> &str {
        let t = path.trim_end_matches('/');
        if t.is_empty() {
            "/"
        } else {
            t
        }
    }

    /// Add a literal route; returns false when the same kind+path is already taken.
    pub fn insert(&mut self, route: Arc<Route>) -> bool {
        let (map, key) = match route.kind {
            PathKind::Exact => (&mut self.exact, route.path.clone()),
            PathKind::Prefix => (&mut self.prefix, Server::prefix_key(&route.path).into()),
            PathKind::ImplementationSpecific => {
                if self.literal.iter().any(|r| r.path == route.path) {
                    return false;
                }
                let at = self.literal.partition_point(|r| {
                    r.path.len() > route.path.len()
                        || (r.path.len() == route.path.len() && r.path < route.path)
                });
                self.literal.insert(at, route);
                return true;
            }
        };
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, route);
        true
    }

    /// The literal route with this kind+path, if any.
    pub fn get(&self, kind: PathKind, path: &str) -> Option<&Arc<Route>> {
        match kind {
            PathKind::Exact => self.exact.get(path),
            PathKind::Prefix => self.prefix.get(Server::prefix_key(path)),
            PathKind::ImplementationSpecific => self.literal.iter().find(|r| &*r.path == path),
        }
    }

    pub fn set_default(&mut self, default: Arc<Route>) {
        self.default = default;
    }

    pub fn default_route(&self) -> &Arc<Route> {
        &self.default
    }

    /// Switch to regex mode: compile every literal route into an anchored, case-insensitive
    /// regex, ordered by descending path length (ties: Exact before Prefix, then path, which
    /// keeps the order deterministic). Returns the paths that are not valid regexes.
    pub fn into_regex_mode(&mut self) -> Vec<(Arc<Route>, String)> {
        let mut all: Vec<Arc<Route>> = self
            .exact
            .drain()
            .map(|(_, r)| r)
            .chain(self.prefix.drain().map(|(_, r)| r))
            .chain(self.literal.drain(..))
            .collect();
        all.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.kind.cmp(&b.kind))
                .then(a.path.cmp(&b.path))
        });
        let mut bad = Vec::new();
        let mut out = Vec::with_capacity(all.len());
        for route in all {
            match compile_location_regex(&route.path) {
                Ok(regex) => out.push(RegexRoute { regex, route }),
                Err(e) => bad.push((route, e)),
            }
        }
        self.regex = Some(out);
        bad
    }

    /// The route for a normalised request path.
    pub fn lookup(&self, path: &str) -> &Arc<Route> {
        if let Some(list) = &self.regex {
            return list
                .iter()
                .find(|r| r.regex.is_match(path))
                .map(|r| &r.route)
                .unwrap_or(&self.default);
        }
        if let Some(r) = self.exact.get(path) {
            return r;
        }
        // nginx: an exact location wins, then the longest matching prefix location; a Prefix
        // path /p is the locations `= /p` and `/p/` (ingress-nginx), so it counts one byte longer
        let (seg, seg_len) = match self.segment_lookup(path) {
            Some(r) => {
                let key = Server::prefix_key(&r.path);
                if key == path {
                    return r;
                }
                (Some(r), if key == "/" { 1 } else { key.len() + 1 })
            }
            None => (None, 0),
        };
        if let Some(r) = self
            .literal
            .iter()
            .take_while(|r| r.path.len() > seg_len)
            .find(|r| path.starts_with(&*r.path))
        {
            return r;
        }
        if let Some(r) = seg {
            return r;
        }
        &self.default
    }

    /// The Prefix route whose path is the longest segment prefix of `path`.
    fn segment_lookup(&self, path: &str) -> Option<&Arc<Route>> {
        if self.prefix.is_empty() {
            return None;
        }
        let trimmed = Server::prefix_key(path);
        if let Some(r) = self.prefix.get(trimmed) {
            return Some(r);
        }
        let mut end = trimmed.len();
        while let Some(i) = trimmed[..end].rfind('/') {
            let cand = if i == 0 { "/" } else { &trimmed[..i] };
            if let Some(r) = self.prefix.get(cand) {
                return Some(r);
            }
            if i == 0 {
                break;
            }
            end = i;
        }
        None
    }

    /// Every location with how it matches: regex mode in match order (`regex#i ~* ^path
    /// (kind)`), else exact paths, Prefix paths and string prefixes (each sorted; nginx picks
    /// an exact path first, then the longest prefix), then the server's default.
    pub fn locations(&self) -> Vec<(String, &Arc<Route>)> {
        let mut out = Vec::new();
        if let Some(list) = &self.regex {
            for (i, r) in list.iter().enumerate() {
                let m = format!("regex#{i} ~* ^{} ({})", r.route.path, r.route.kind.as_str());
                out.push((m, &r.route));
            }
        } else {
            let mut ex: Vec<_> = self.exact.values().collect();
            ex.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(ex.into_iter().map(|r| (format!("exact {}", r.path), r)));
            let mut px: Vec<_> = self.prefix.values().collect();
            px.sort_by(|a, b| a.path.cmp(&b.path));
            out.extend(px.into_iter().map(|r| (format!("prefix {}", r.path), r)));
            out.extend(
                self.literal
                    .iter()
                    .map(|r| (format!("string-prefix {}", r.path), r)),
            );
        }
        out.push(("default".to_string(), &self.default));
        out
    }

    fn dump(&self, out: &mut String) {
        let mut lines: Vec<String> = self
            .locations()
            .into_iter()
            .map(|(m, r)| format!("  {m} -> {}", r.describe()))
            .collect();
        if let Some(a) = &self.app_root {
            lines.push(format!("  app-root {a}"));
        }
        if let Some(t) = &self.redirect_to {
            lines.push(format!("  redirect-to-host {t}"));
        }
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// nginx `location ~* "^<path>"`: case-insensitive, anchored at the start only.
fn compile_location_regex(path: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{path})"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Check that a path compiles as a location regex (used by compile for diagnostics).
pub fn validate_location_regex(path: &str) -> Result<(), String> {
    compile_location_regex(path).map(|_| ())
}

/// A canary Ingress merged onto a primary upstream: every route of that upstream may send a
/// request to `backend` instead, as `policy` decides (`proxy/canary.rs`).
#[derive(Debug)]
pub struct CanaryTarget {
    pub backend: Arc<Backend>,
    pub policy: crate::annotations::canary::Canary,
    pub ingress: IngressId,
}

/// Cookie affinity of one upstream: the settings of the oldest Ingress asking for it, and the
/// locations (host as written, Ingress path) of every Ingress asking for it, where the cookie
/// is set (ingress-nginx sets it only there).
#[derive(Debug, Clone)]
pub struct AffinityTarget {
    pub spec: crate::annotations::affinity::Affinity,
    /// Identifies the upstream in the cookie value (`<key>|<backend key>`).
    pub backend_key: Box<str>,
    pub locations: Vec<(Box<str>, Box<str>)>,
    pub ingress: IngressId,
}

impl AffinityTarget {
    /// Whether the location (host as written, Ingress path) sets the cookie.
    pub fn sets_cookie_at(&self, host: &str, path: &str) -> bool {
        self.locations
            .iter()
            .any(|(h, p)| &**h == host && &**p == path)
    }
}

/// The whole compiled table. Immutable; swapped whole.
#[derive(Debug)]
pub struct RouteTable {
    /// Servers are shared with the previous table: an incremental compile copies the maps
    /// and rebuilds only the servers of the hosts a change touches.
    exact_hosts: Map<Arc<str>, Arc<Server>>,
    /// Keyed by the parent domain: `*.example.com` is stored under `example.com`.
    wildcard_hosts: Map<Arc<str>, Arc<Server>>,
    catch_all: Server,
    /// Every backend by upstream name, for selector reuse across rebuilds and for dumps.
    backends: Map<Arc<str>, Arc<Backend>>,
    /// server-alias names: alias (exact, or `*.parent` stored under `parent`) -> host key.
    alias_exact: Map<Box<str>, Box<str>>,
    alias_wildcard: Map<Box<str>, Box<str>>,
    /// Canary Ingresses: primary upstream name -> the alternative backend and its policy.
    canaries: Map<Box<str>, Arc<CanaryTarget>>,
    /// Cookie affinity per upstream name.
    affinity: Map<Box<str>, AffinityTarget>,
    /// `upstream-hash-by` per upstream name, with the Ingress whose setting it is.
    hash_by: Map<Box<str>, (Arc<crate::annotations::balance::HashBy>, IngressId)>,
    /// `load-balance` per upstream name (the oldest Ingress's), when set by an annotation.
    load_balance: Map<Box<str>, (crate::annotations::balance::LoadBalance, IngressId)>,
    /// The controller ConfigMap settings this table was compiled with.
    pub config: ControllerConfig,
    /// Certificates per host for the HTTPS listener (see [`tls`]).
    pub tls: tls::TlsTable,
    /// `--tcp-services-configmap` / `--udp-services-configmap` entries, by port.
    pub tcp: Vec<Arc<l4::TcpService>>,
    pub udp: Vec<Arc<l4::TcpService>>,
    /// `ssl-passthrough` hosts (with `--enable-ssl-passthrough`): SNI -> the `/` path's backend.
    pub passthrough: Map<Box<str>, Arc<Backend>>,
}

impl RouteTable {
    pub fn new(catch_all: Server) -> RouteTable {
        RouteTable {
            exact_hosts: Map::default(),
            wildcard_hosts: Map::default(),
            catch_all,
            backends: Map::default(),
            alias_exact: Map::default(),
            alias_wildcard: Map::default(),
            canaries: Map::default(),
            affinity: Map::default(),
            hash_by: Map::default(),
            load_balance: Map::default(),
            config: ControllerConfig::default(),
            tls: tls::TlsTable::default(),
            tcp: Vec::new(),
            udp: Vec::new(),
            passthrough: Map::default(),
        }
    }

    /// A table that answers 404 to everything.
    pub fn empty() -> RouteTable {
        let nf = Arc::new(Backend::not_found());
        let default = Arc::new(Route::simple(
            None,
            "",
            "",
            PathKind::Prefix,
            nf.clone(),
            Arc::new(Policy::default()),
        ));
        let mut t = RouteTable::new(Server::new("_", default));
        t.add_backend(nf);
        t
    }

    /// The server for a host as written in an Ingress (lower-case; `*.x` for wildcards;
    /// `""` for the catch-all), created with `default` when absent.
    pub fn server_mut(&mut self, host: &str, default: &Arc<Route>) -> &mut Server {
        if host.is_empty() {
            return &mut self.catch_all;
        }
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard_hosts, parent),
            None => (&mut self.exact_hosts, host),
        };
        // no key allocation when the server exists (every path of an Ingress asks again)
        if !map.contains_key(key) {
            map.insert(key.into(), Arc::new(Server::new(host, default.clone())));
        }
        match map.get_mut(key) {
            // unshared while a compile builds it (a copy only if another table holds it)
            Some(s) => Arc::make_mut(s),
            None => unreachable!("inserted above"),
        }
    }

    /// Drop the server of a host as written in an Ingress (not the catch-all).
    pub fn remove_server(&mut self, host: &str) {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard_hosts.remove(parent),
            None => self.exact_hosts.remove(host),
        };
    }

    /// A copy to update: every map shares its servers, backends and settings with `self`;
    /// the TLS table and the layer 4 services are left empty for the caller to compile.
    pub fn copy_for_update(&self) -> RouteTable {
        RouteTable {
            exact_hosts: self.exact_hosts.clone(),
            wildcard_hosts: self.wildcard_hosts.clone(),
            catch_all: self.catch_all.clone(),
            backends: self.backends.clone(),
            alias_exact: self.alias_exact.clone(),
            alias_wildcard: self.alias_wildcard.clone(),
            canaries: self.canaries.clone(),
            affinity: self.affinity.clone(),
            hash_by: self.hash_by.clone(),
            load_balance: self.load_balance.clone(),
            config: self.config.clone(),
            tls: tls::TlsTable::default(),
            tcp: Vec::new(),
            udp: Vec::new(),
            passthrough: self.passthrough.clone(),
        }
    }

    /// Remove an upstream from the backend list.
    pub fn remove_backend(&mut self, name: &str) {
        self.backends.remove(name);
    }

    /// Room for `hosts` servers and `backends` upstreams (a rebuild sizes the new table like
    /// the previous one, instead of growing and rehashing its maps step by step).
    pub fn reserve(&mut self, hosts: usize, backends: usize) {
        // most hosts are exact; the wildcard map grows as it needs
        self.exact_hosts.reserve(hosts);
        self.backends.reserve(backends);
    }

    /// How many upstreams the table has.
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// The server of a host as written in an Ingress (`""`: the catch-all), if it has one.
    pub fn server(&self, host: &str) -> Option<&Server> {
        if host.is_empty() {
            return Some(&self.catch_all);
        }
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard_hosts.get(parent),
            None => self.exact_hosts.get(host),
        }
        .map(|s| &**s)
    }

    /// Attach a canary to the primary upstream `primary`; false when it already has one
    /// (ingress-nginx uses the first alternative backend only).
    pub fn add_canary(&mut self, primary: &str, canary: Arc<CanaryTarget>) -> bool {
        if self.canaries.contains_key(primary) {
            return false;
        }
        self.canaries.insert(primary.into(), canary);
        true
    }

    /// Cookie affinity for `upstream` from `ingress`, served at (`host`, `path`). The oldest
    /// Ingress's settings win; `Err` names that Ingress when this one asked for other settings.
    pub fn add_affinity(
        &mut self,
        upstream: &str,
        spec: &crate::annotations::affinity::Affinity,
        ingress: &IngressId,
        host: &str,
        path: &str,
    ) -> Result<(), IngressId> {
        let target = self
            .affinity
            .entry(upstream.into())
            .or_insert_with(|| AffinityTarget {
                spec: spec.clone(),
                backend_key: backend_key(upstream).into(),
                locations: Default::default(),
                ingress: ingress.clone(),
            });
        if !target.sets_cookie_at(host, path) {
            target.locations.push((host.into(), path.into()));
        }
        if target.spec != *spec && target.ingress != *ingress {
            return Err(target.ingress.clone());
        }
        Ok(())
    }

    /// A sticky canary (`affinity-canary-behavior: sticky`, ingress-nginx copying the primary's
    /// SessionAffinity onto the alternative backend): the canary upstream `to` takes the
    /// affinity of its primary `from`, under its own backend key, so a request sent to the
    /// canary comes back to it. `false` when `to` already has another affinity (it keeps it).
    pub fn copy_affinity(&mut self, from: &str, to: &str) -> bool {
        let Some(src) = self.affinity.get(from).cloned() else {
            return true;
        };
        if self.affinity.contains_key(to) {
            return false;
        }
        self.affinity.insert(
            to.into(),
            AffinityTarget {
                backend_key: backend_key(to).into(),
                ..src
            },
        );
        true
    }

    /// `upstream-hash-by` for `upstream` from `ingress`. The oldest Ingress's setting wins;
    /// `Err` names that Ingress when this one asked for another.
    pub fn add_hash_by(
        &mut self,
        upstream: &str,
        h: &Arc<crate::annotations::balance::HashBy>,
        ingress: &IngressId,
    ) -> Result<(), IngressId> {
        let (have, owner) = self
            .hash_by
            .entry(upstream.into())
            .or_insert_with(|| (h.clone(), ingress.clone()));
        if **have != **h && owner != ingress {
            return Err(owner.clone());
        }
        Ok(())
    }

    /// `load-balance` for `upstream` from `ingress`: the oldest Ingress's wins; `Err` names it
    /// when this one asked for another.
    pub fn add_load_balance(
        &mut self,
        upstream: &str,
        lb: crate::annotations::balance::LoadBalance,
        ingress: &IngressId,
    ) -> Result<(), IngressId> {
        let (have, owner) = self
            .load_balance
            .entry(upstream.into())
            .or_insert_with(|| (lb, ingress.clone()));
        if *have != lb && owner != ingress {
            return Err(owner.clone());
        }
        Ok(())
    }

    /// The endpoint choice of an upstream without affinity or hash: its annotation, else the
    /// ConfigMap's `load-balance`.
    pub fn load_balance_for(&self, upstream: &str) -> crate::annotations::balance::LoadBalance {
        if self.load_balance.is_empty() {
            return self.config.load_balance;
        }
        self.load_balance
            .get(upstream)
            .map_or(self.config.load_balance, |(lb, _)| *lb)
    }

    /// The `upstream-hash-by` of an upstream.
    pub fn hash_by_for(&self, upstream: &str) -> Option<&crate::annotations::balance::HashBy> {
        if self.hash_by.is_empty() {
            return None;
        }
        self.hash_by.get(upstream).map(|(h, _)| &**h)
    }

    /// The cookie affinity of an upstream.
    pub fn affinity_for(&self, upstream: &str) -> Option<&AffinityTarget> {
        if self.affinity.is_empty() {
            return None;
        }
        self.affinity.get(upstream)
    }

    /// The canary of a primary upstream.
    pub fn canary_for(&self, primary: &str) -> Option<&Arc<CanaryTarget>> {
        if self.canaries.is_empty() {
            return None;
        }
        self.canaries.get(primary)
    }

    /// Whether a host (as written in an Ingress) has a server.
    pub fn has_server(&self, host: &str) -> bool {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard_hosts.contains_key(parent),
            None => self.exact_hosts.contains_key(host),
        }
    }

    /// Serve `alias` (exact or `*.x`) like `host`; false when the name is taken.
    pub fn add_alias(&mut self, alias: &str, host: &str) -> bool {
        if self.has_server(alias) {
            return false;
        }
        let map = match alias.strip_prefix("*.") {
            Some(parent) => self.alias_wildcard.entry(parent.into()),
            None => self.alias_exact.entry(alias.into()),
        };
        match map {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(host.into());
                true
            }
        }
    }

    fn server_by_key(&self, host: &str) -> Option<&Server> {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard_hosts.get(parent),
            None => self.exact_hosts.get(host),
        }
        .map(|s| &**s)
    }

    pub fn servers_mut(&mut self) -> impl Iterator<Item = &mut Server> {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut())
            .map(Arc::make_mut)
            .chain(std::iter::once(&mut self.catch_all))
    }

    /// The servers of the Ingress hosts, sorted by name (the catch-all apart).
    pub fn servers(&self) -> Vec<&Server> {
        let mut v: Vec<&Server> = self
            .exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .map(|s| &**s)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The server of requests no host matches (`_`).
    pub fn catch_all(&self) -> &Server {
        &self.catch_all
    }

    /// `server-alias` names (`*.parent` for wildcards) and the host each serves as, sorted.
    pub fn aliases(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .alias_exact
            .iter()
            .map(|(a, h)| (a.to_string(), h.to_string()))
            .chain(
                self.alias_wildcard
                    .iter()
                    .map(|(a, h)| (format!("*.{a}"), h.to_string())),
            )
            .collect();
        v.sort();
        v
    }

    pub fn catch_all_mut(&mut self) -> &mut Server {
        &mut self.catch_all
    }

    pub fn add_backend(&mut self, b: Arc<Backend>) {
        self.add_named_backend(b.name.as_ref().into(), b);
    }

    /// [`RouteTable::add_backend`] with the upstream name already shared.
    pub fn add_named_backend(&mut self, name: Arc<str>, b: Arc<Backend>) {
        self.backends.insert(name, b);
    }

    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.get(name)
    }

    pub fn host_count(&self) -> usize {
        self.exact_hosts.len() + self.wildcard_hosts.len()
    }

    /// The server a request `Host` (or `:authority`) selects.
    pub fn server_for(&self, host: &str) -> &Server {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return &self.catch_all;
        }
        let mut buf = [0u8; 256];
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            if host.len() > buf.len() {
                return &self.catch_all;
            }
            let dst = &mut buf[..host.len()];
            dst.copy_from_slice(host.as_bytes());
            dst.make_ascii_lowercase();
            // ASCII lower-casing keeps UTF-8 validity
            match std::str::from_utf8(dst) {
                Ok(s) => s,
                Err(_) => return &self.catch_all,
            }
        } else {
            host
        };
        if let Some(s) = self.exact_hosts.get(host) {
            return s;
        }
        if !self.alias_exact.is_empty() {
            if let Some(s) = self
                .alias_exact
                .get(host)
                .and_then(|k| self.server_by_key(k))
            {
                return s;
            }
        }
        if let Some(dot) = host.find('.') {
            let label = &host[..dot];
            if !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                let parent = &host[dot + 1..];
                if let Some(s) = self.wildcard_hosts.get(parent) {
                    return s;
                }
                if let Some(s) = self
                    .alias_wildcard
                    .get(parent)
                    .and_then(|k| self.server_by_key(k))
                {
                    return s;
                }
            }
        }
        &self.catch_all
    }

    /// Route for a request: `host` as sent, `path` already normalised (see [`path::normalize`]).
    pub fn lookup(&self, host: &str, path: &str) -> &Arc<Route> {
        self.server_for(host).lookup(path)
    }

    /// A stable, human-readable dump (sorted), used by fixture tests.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<(&str, &Server)> = self
            .exact_hosts
            .values()
            .chain(self.wildcard_hosts.values())
            .map(|s| (&*s.name, &**s))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        for (name, s) in names {
            let _ = writeln!(out, "server {name}");
            s.dump(&mut out);
        }
        for (a, h) in self.aliases() {
            let _ = writeln!(out, "alias {a} -> {h}");
        }
        let mut canaries: Vec<_> = self.canaries.iter().collect();
        canaries.sort_by(|a, b| a.0.cmp(b.0));
        for (primary, c) in canaries {
            let p = &c.policy;
            let _ = writeln!(
                out,
                "canary {primary} -> {} from {}/{} header={:?} cookie={:?} weight={}/{}",
                c.backend.name,
                c.ingress.namespace,
                c.ingress.name,
                p.header.as_ref().map(|(h, _)| h.as_str()),
                p.cookie,
                p.weight,
                p.weight_total
            );
        }
        let mut affinity: Vec<_> = self.affinity.iter().collect();
        affinity.sort_by(|a, b| a.0.cmp(b.0));
        for (upstream, a) in affinity {
            let mut locs: Vec<String> = a
                .locations
                .iter()
                .map(|(h, p)| format!("{}{p}", if h.is_empty() { "_" } else { h }))
                .collect();
            locs.sort();
            let _ = writeln!(
                out,
                "affinity {upstream} {:?} cookie={} from {}/{} set-cookie-at=[{}]",
                a.spec.mode,
                a.spec.cookie.name,
                a.ingress.namespace,
                a.ingress.name,
                locs.join(" ")
            );
        }
        let _ = writeln!(out, "server _ (catch-all)");
        self.catch_all.dump(&mut out);
        out.push_str(&self.tls.dump());
        out
    }
}

/// The upstream's key in affinity cookies: 32 hex digits of SHA-256 of its name (ingress-nginx:
/// md5 of md5 of the name; the value only has to tell upstreams apart).
fn backend_key(upstream: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, upstream.as_bytes());
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `host:port` -> `host` (`[v6]:port` -> `[v6]`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.find(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, kind: PathKind, name: &str) -> Arc<Route> {
        Arc::new(Route::simple(
            None,
            "",
            path,
            kind,
            Arc::new(Backend {
                name: name.into(),
                target: Target::Unavailable,
            }),
            Arc::new(Policy::default()),
        ))
    }

    fn server() -> Server {
        Server::new("h", route("", PathKind::Prefix, "default"))
    }

    fn hit(s: &Server, p: &str) -> String {
        s.lookup(p).backend.name.to_string()
    }

    #[test]
    fn prefix_is_element_wise() {
        let mut s = server();
        s.insert(route("/foo", PathKind::Prefix, "foo"));
        assert_eq!(hit(&s, "/foo"), "foo");
        assert_eq!(hit(&s, "/foo/"), "foo");
        assert_eq!(hit(&s, "/foo/bar"), "foo");
        assert_eq!(hit(&s, "/foobar"), "default");
        assert_eq!(hit(&s, "/"), "default");
    }

    #[test]
    fn trailing_slash_prefix_matches_without_slash() {
        let mut s = server();
        s.insert(route("/foo/", PathKind::Prefix, "foo"));
        assert_eq!(hit(&s, "/foo"), "foo");
        assert_eq!(hit(&s, "/foo/x"), "foo");
        assert_eq!(hit(&s, "/foox"), "default");
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let mut s = server();
        s.insert(route("/", PathKind::Prefix, "root"));
        s.insert(route("/a", PathKind::Prefix, "a"));
        s.insert(route("/a/b", PathKind::Prefix, "ab"));
        s.insert(route("/a", PathKind::Exact, "a-exact"));
        assert_eq!(hit(&s, "/a"), "a-exact");
        assert_eq!(hit(&s, "/a/"), "a");
        assert_eq!(hit(&s, "/a/b/c"), "ab");
        assert_eq!(hit(&s, "/a/bc"), "a");
        assert_eq!(hit(&s, "/zzz"), "root");
        // Exact is byte-exact
        assert_eq!(hit(&s, "/A"), "root");
    }

    #[test]
    fn implementation_specific_is_a_string_prefix_longest_location_wins() {
        let mut s = server();
        s.insert(route("/", PathKind::Prefix, "root"));
        s.insert(route("/foo", PathKind::ImplementationSpecific, "impl"));
        s.insert(route("/vnc.*", PathKind::ImplementationSpecific, "literal"));
        s.insert(route("/foo/bar", PathKind::Prefix, "prefix"));
        assert_eq!(hit(&s, "/foobar"), "impl");
        assert_eq!(hit(&s, "/foo"), "impl");
        assert_eq!(hit(&s, "/foo/b"), "impl");
        // `location = /foo/bar` and `location /foo/bar/` are longer than `location /foo`
        assert_eq!(hit(&s, "/foo/bar"), "prefix");
        assert_eq!(hit(&s, "/foo/bar/x"), "prefix");
        assert_eq!(hit(&s, "/foo/barx"), "impl");
        // regex characters are literal outside regex mode
        assert_eq!(hit(&s, "/vnc.*/x"), "literal");
        assert_eq!(hit(&s, "/vncx"), "root");
        // a Prefix and an ImplementationSpecific path of the same text: the Prefix's `/p/` is longer
        s.insert(route("/same", PathKind::Prefix, "same-prefix"));
        s.insert(route(
            "/same",
            PathKind::ImplementationSpecific,
            "same-impl",
        ));
        assert_eq!(hit(&s, "/same/x"), "same-prefix");
        assert_eq!(hit(&s, "/same"), "same-prefix");
        assert_eq!(hit(&s, "/samex"), "same-impl");
        assert!(!s.insert(route("/same", PathKind::ImplementationSpecific, "dup")));
    }

    #[test]
    fn duplicate_kind_and_path_is_refused() {
        let mut s = server();
        assert!(s.insert(route("/x", PathKind::Prefix, "1")));
        assert!(!s.insert(route("/x/", PathKind::Prefix, "2")));
        assert!(s.insert(route("/x", PathKind::Exact, "3")));
    }

    #[test]
    fn regex_mode_is_case_insensitive_anchored_longest_first() {
        let mut s = server();
        s.insert(route("/api", PathKind::Prefix, "api"));
        s.insert(route("/api/v[0-9]+", PathKind::Prefix, "versioned"));
        s.insert(route("/exact", PathKind::Exact, "exact"));
        assert!(s.into_regex_mode().is_empty());
        assert_eq!(hit(&s, "/API/V2/x"), "versioned");
        assert_eq!(hit(&s, "/apix"), "api");
        assert_eq!(hit(&s, "/exactly"), "exact");
        assert_eq!(hit(&s, "/x/api"), "default");
    }

    #[test]
    fn hosts_exact_wildcard_catch_all() {
        let mut t = RouteTable::empty();
        let d = t.catch_all.default.clone();
        t.server_mut("foo.example.com", &d)
            .insert(route("/", PathKind::Prefix, "exact"));
        t.server_mut("*.example.com", &d)
            .insert(route("/", PathKind::Prefix, "wild"));
        t.server_mut("", &d)
            .insert(route("/", PathKind::Prefix, "any"));
        let h = |host: &str| t.lookup(host, "/").backend.name.to_string();
        assert_eq!(h("foo.example.com"), "exact");
        assert_eq!(h("FOO.Example.COM:8080"), "exact");
        assert_eq!(h("foo.example.com."), "exact");
        assert_eq!(h("bar.example.com"), "wild");
        assert_eq!(h("a.b.example.com"), "any");
        assert_eq!(h("example.com"), "any");
        assert_eq!(h(".example.com"), "any");
        assert_eq!(h("other"), "any");
        assert_eq!(h(""), "any");
        assert_eq!(h("[::1]:80"), "any");
    }
}
