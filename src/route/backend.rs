//! Compiled upstream targets and endpoint selection.
//!
//! Endpoint selection uses pingora-load-balancing's round robin (`selection::RoundRobin`). A
//! backend's selector is kept across table rebuilds when its endpoint set did not change, so
//! the rotation position survives unrelated changes (see `compile::backend`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora::lb::Backend as LbBackend;

/// One upstream as ingress-nginx names it: `<namespace>-<service>-<port>`.
#[derive(Debug)]
pub struct Backend {
    /// ingress-nginx's upstream name (`$proxy_upstream_name`), stable across rebuilds.
    pub name: Box<str>,
    pub target: Target,
}

#[derive(Debug)]
pub enum Target {
    /// Ready endpoints of a Service, picked round robin.
    Endpoints(Endpoints),
    /// An ExternalName Service: resolved with DNS when a request needs it.
    ExternalName { host: Box<str>, port: u16 },
    /// The Service exists but has no ready endpoint, or is missing: answers 503.
    Unavailable,
    /// The built-in default backend: answers 404.
    NotFound,
}

/// A non-empty, sorted, de-duplicated endpoint set with its round-robin selector.
pub struct Endpoints {
    addrs: Vec<SocketAddr>,
    selector: Arc<RoundRobin>,
    /// Consistent-hash ring (cookie affinity, balanced mode), built on first use.
    ring: std::sync::OnceLock<Arc<Consistent>>,
    /// `upstream-hash-by-subset`: (subset size, ring over the subsets), built on first use.
    subsets: std::sync::OnceLock<(usize, Arc<SubsetRing>)>,
}

/// Endpoints split into subsets of equal size (the last one topped up from the first
/// endpoints, as ingress-nginx's `chashsubset.lua`), and a ketama-style ring over the subsets.
#[derive(Debug)]
pub struct SubsetRing {
    subsets: Vec<Vec<SocketAddr>>,
    /// (point, subset index), sorted by point.
    points: Vec<(u64, usize)>,
}

/// Points per subset on its ring (ketama's 160).
const SUBSET_POINTS: usize = 160;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl SubsetRing {
    fn build(addrs: &[SocketAddr], size: usize) -> SubsetRing {
        let size = size.max(1);
        let sets = addrs.len().div_ceil(size);
        let mut nodes: Vec<SocketAddr> = addrs.to_vec();
        let mut j = 0;
        while nodes.len() < sets * size {
            nodes.push(addrs[j % addrs.len()]);
            j += 1;
        }
        let subsets: Vec<Vec<SocketAddr>> = nodes.chunks(size).map(<[_]>::to_vec).collect();
        let mut points = Vec::with_capacity(subsets.len() * SUBSET_POINTS);
        for i in 0..subsets.len() {
            for p in 0..SUBSET_POINTS {
                points.push((fnv1a(format!("set{}-{p}", i + 1).as_bytes()), i));
            }
        }
        points.sort_unstable();
        SubsetRing { subsets, points }
    }

    /// The subset a key falls in.
    pub fn subset(&self, key: &[u8]) -> &[SocketAddr] {
        let h = fnv1a(key);
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, set) = self
            .points
            .get(i)
            .or(self.points.first())
            .copied()
            .unwrap_or((0, 0));
        &self.subsets[set]
    }
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Endpoints {
    /// Build a selector over `addrs` (which must be non-empty; duplicates are removed).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<Endpoints> {
        let set: BTreeSet<SocketAddr> = addrs.into_iter().collect();
        if set.is_empty() {
            return None;
        }
        let addrs: Vec<SocketAddr> = set.into_iter().collect();
        Some(Endpoints {
            selector: Arc::new(RoundRobin::build(&lb_set(&addrs))),
            addrs,
            ring: std::sync::OnceLock::new(),
            subsets: std::sync::OnceLock::new(),
        })
    }

    /// The endpoint a key hashes to, skipping `tried` (the next endpoints on the ring); when
    /// every endpoint was tried, the key's own endpoint.
    pub fn hashed_untried(&self, key: &[u8], tried: &[SocketAddr]) -> SocketAddr {
        let ring = self
            .ring
            .get_or_init(|| Arc::new(Consistent::build(&lb_set(&self.addrs))));
        let mut iter = ring.iter(key);
        let mut first = None;
        for _ in 0..self.addrs.len() * 4 + 1 {
            let Some(b) = iter.next() else { break };
            let Some(a) = b.addr.as_inet().copied() else {
                continue;
            };
            first.get_or_insert(a);
            if !tried.contains(&a) {
                return a;
            }
        }
        first.unwrap_or(self.addrs[0])
    }

    /// `upstream-hash-by-subset`: the key's subset of `size` endpoints; a random endpoint of
    /// it not in `tried` (any of it when all were tried).
    pub fn hashed_subset(&self, key: &[u8], size: usize, tried: &[SocketAddr]) -> SocketAddr {
        let (have, ring) = self
            .subsets
            .get_or_init(|| (size, Arc::new(SubsetRing::build(&self.addrs, size))));
        // one size per upstream in practice; another size is built for this request only
        let other;
        let ring = if *have == size {
            ring
        } else {
            other = Arc::new(SubsetRing::build(&self.addrs, size));
            &other
        };
        let set = ring.subset(key);
        let fresh: Vec<SocketAddr> = set.iter().copied().filter(|a| !tried.contains(a)).collect();
        let pool = if fresh.is_empty() { set } else { &fresh[..] };
        pool[fastrand::usize(..pool.len())]
    }

    /// The endpoint a key hashes to on the consistent-hash ring (ketama): when an endpoint
    /// leaves or joins, only the keys of its points move.
    pub fn hashed(&self, key: &[u8]) -> SocketAddr {
        let ring = self
            .ring
            .get_or_init(|| Arc::new(Consistent::build(&lb_set(&self.addrs))));
        let mut iter = ring.iter(key);
        while let Some(b) = iter.next() {
            if let Some(a) = b.addr.as_inet() {
                return *a;
            }
        }
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The endpoints not in `tried` (earlier attempts of a request); all of them when every
    /// one was tried. A first attempt borrows the set (no allocation).
    pub fn untried(&self, tried: &[SocketAddr]) -> std::borrow::Cow<'_, [SocketAddr]> {
        if tried.is_empty() {
            return std::borrow::Cow::Borrowed(&self.addrs);
        }
        let fresh: Vec<SocketAddr> = self
            .addrs
            .iter()
            .copied()
            .filter(|a| !tried.contains(a))
            .collect();
        if fresh.is_empty() {
            std::borrow::Cow::Borrowed(&self.addrs)
        } else {
            std::borrow::Cow::Owned(fresh)
        }
    }

    /// Next endpoint in the rotation that is not in `tried`; when every endpoint was tried,
    /// the next one in the rotation anyway (nginx retries the same peer when it has no other).
    pub fn pick(&self, tried: &[SocketAddr]) -> SocketAddr {
        let mut iter = self.selector.iter(b"");
        let mut first = None;
        // RoundRobin's fallback walk advances the shared counter; bound it by the set size.
        for _ in 0..self.addrs.len() * 2 + 1 {
            let Some(b) = iter.next() else { break };
            let Some(addr) = b.addr.as_inet().copied() else {
                continue;
            };
            if first.is_none() {
                first = Some(addr);
            }
            if !tried.contains(&addr) {
                return addr;
            }
        }
        first.unwrap_or(self.addrs[0])
    }
}

fn lb_set(addrs: &[SocketAddr]) -> BTreeSet<LbBackend> {
    addrs
        .iter()
        .map(|a| LbBackend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(*a),
            weight: 1,
            ext: Default::default(),
        })
        .collect()
}

impl Backend {
    pub fn not_found() -> Backend {
        Backend {
            name: "upstream-default-backend".into(),
            target: Target::NotFound,
        }
    }

    /// Same upstream name and the same target (endpoint set, ExternalName, or kind of
    /// unavailability); the round-robin position is not compared.
    pub fn same_as(&self, other: &Backend) -> bool {
        // the same interned backend (a reused Ingress's journal holds the table's own)
        if std::ptr::eq(self, other) {
            return true;
        }
        self.name == other.name
            && match (&self.target, &other.target) {
                (Target::Endpoints(a), Target::Endpoints(b)) => a.addrs == b.addrs,
                (
                    Target::ExternalName { host, port },
                    Target::ExternalName { host: h2, port: p2 },
                ) => host == h2 && port == p2,
                (Target::Unavailable, Target::Unavailable) => true,
                (Target::NotFound, Target::NotFound) => true,
                _ => false,
            }
    }

    /// One line for table dumps.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Endpoints(e) => {
                let list: Vec<String> = e.addrs.iter().map(|a| a.to_string()).collect();
                format!("{} [{}]", self.name, list.join(" "))
            }
            Target::ExternalName { host, port } => {
                format!("{} externalName {}:{}", self.name, host, port)
            }
            Target::Unavailable => format!("{} unavailable(503)", self.name),
            Target::NotFound => format!("{} builtin(404)", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn round_robin_visits_every_endpoint_evenly() {
        let e = Endpoints::new([addr(1), addr(2), addr(3)]).unwrap();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..30 {
            *counts.entry(e.pick(&[])).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c == 10), "{counts:?}");
    }

    #[test]
    fn pick_skips_tried_endpoints() {
        let e = Endpoints::new([addr(1), addr(2)]).unwrap();
        for _ in 0..10 {
            let first = e.pick(&[]);
            let second = e.pick(&[first]);
            assert_ne!(first, second);
        }
        // everything tried: still answers with some endpoint
        let all = [addr(1), addr(2)];
        assert!(all.contains(&e.pick(&all)));
    }

    #[test]
    fn empty_set_is_none_and_duplicates_collapse() {
        assert!(Endpoints::new([]).is_none());
        let e = Endpoints::new([addr(1), addr(1)]).unwrap();
        assert_eq!(e.addrs(), &[addr(1)]);
    }
}

/// Where a subrequest to a URL goes (external auth, mirror copies).
#[derive(Debug, Clone)]
pub enum UrlTarget {
    /// The URL's host names a watched Service (`svc.ns`, `svc.ns.svc`,
    /// `svc.ns.svc.cluster.local`): its ready endpoints, as any upstream.
    Service(Arc<Backend>),
    /// Any other host: resolved by DNS when the request comes (a host with variables is
    /// expanded first).
    Dns,
}
