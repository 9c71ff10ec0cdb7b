//! Endpoint choice by `upstream-hash-by` (ingress-nginx `chash.lua`, `chashsubset.lua`): the
//! key template expanded against the request, hashed onto the upstream's ring; and by
//! `load-balance: ewma` (`ewma.lua`, Finagle's peak EWMA): the better of two random endpoints
//! by their decayed response time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::annotations::balance::HashBy;
use crate::annotations::template::RequestView;
use crate::route::backend::Endpoints;

/// The endpoint for this attempt; `tried` holds the endpoints of earlier attempts (a retry
/// takes the next endpoint on the ring, or another endpoint of the key's subset).
pub fn pick(h: &HashBy, e: &Endpoints, view: &RequestView<'_>, tried: &[SocketAddr]) -> SocketAddr {
    let key = h.key.expand(view);
    match h.subset {
        Some(size) => e.hashed_subset(key.as_bytes(), size, tried),
        None => e.hashed_untried(key.as_bytes(), tried),
    }
}

/// `ewma.lua`'s `DECAY_TIME`: a score halves in about 7 s without new samples.
const DECAY: Duration = Duration::from_secs(10);

/// An endpoint's moving average of response times (seconds) and when it was last updated.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    value: f64,
    at: Instant,
}

/// EWMA scores by endpoint address, shared by every upstream and every table (ingress-nginx
/// keys them by `ip:port` in one shared dictionary); so they survive table swaps.
static SCORES: LazyLock<Mutex<HashMap<SocketAddr, Ewma>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Entries kept before idle ones are dropped.
const MAX_SCORES: usize = 10_000;

fn decayed(e: Ewma, now: Instant, sample: f64) -> f64 {
    let w = (-(now.saturating_duration_since(e.at).as_secs_f64()) / DECAY.as_secs_f64()).exp();
    e.value * w + sample * (1.0 - w)
}

/// The score of `addr` now (its EWMA decayed toward 0: an endpoint not used for a while is
/// tried again); 0 for an endpoint never measured.
fn score(scores: &HashMap<SocketAddr, Ewma>, addr: SocketAddr, now: Instant) -> f64 {
    scores.get(&addr).map_or(0.0, |e| decayed(*e, now, 0.0))
}

/// `load-balance: ewma`: of two random endpoints not in `tried`, the one with the lower score.
pub fn ewma_pick(e: &Endpoints, tried: &[SocketAddr]) -> SocketAddr {
    let pool = e.untried(tried);
    if pool.len() == 1 {
        return pool[0];
    }
    let i = fastrand::usize(..pool.len());
    let mut j = fastrand::usize(..pool.len() - 1);
    if j >= i {
        j += 1;
    }
    let (a, b) = (pool[i], pool[j]);
    let now = Instant::now();
    let Ok(scores) = SCORES.lock() else { return a };
    if score(&scores, b, now) < score(&scores, a, now) {
        b
    } else {
        a
    }
}

/// After an attempt on `addr` that took `rtt` (connect and response), update its score.
pub fn ewma_record(addr: SocketAddr, rtt: Duration) {
    let now = Instant::now();
    let Ok(mut scores) = SCORES.lock() else {
        return;
    };
    if scores.len() >= MAX_SCORES && !scores.contains_key(&addr) {
        scores.retain(|_, e| now.saturating_duration_since(e.at) < DECAY * 6);
    }
    let sample = rtt.as_secs_f64();
    let value = match scores.get(&addr) {
        Some(e) => decayed(*e, now, sample),
        None => sample,
    };
    scores.insert(addr, Ewma { value, at: now });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::template::Template;

    fn view<'a>(uri: &'a str, headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            scheme: "http",
            http_host: "a.test",
            request_uri: uri,
            method: "GET",
            remote_addr: "10.0.0.1",
            server_port: 80,
            headers,
            locals: None,
        }
    }

    fn endpoints(n: u16) -> Endpoints {
        Endpoints::new((0..n).map(|i| SocketAddr::from(([10, 1, 0, 1], 8000 + i)))).unwrap()
    }

    #[test]
    fn the_same_key_goes_to_the_same_endpoint_and_keys_spread() {
        let h = HashBy {
            key: Template::parse("$request_uri").unwrap(),
            subset: None,
        };
        let e = endpoints(5);
        let hm = http::HeaderMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let uri = format!("/item/{i}");
            let a = pick(&h, &e, &view(&uri, &hm), &[]);
            assert_eq!(a, pick(&h, &e, &view(&uri, &hm), &[]), "{uri}");
            seen.insert(a);
        }
        assert_eq!(seen.len(), 5, "200 keys over 5 endpoints reach all of them");
        // a retry takes another endpoint
        let first = pick(&h, &e, &view("/x", &hm), &[]);
        let second = pick(&h, &e, &view("/x", &hm), &[first]);
        assert_ne!(first, second);
    }

    #[test]
    fn an_endpoint_leaving_moves_only_its_keys() {
        let h = HashBy {
            key: Template::parse("$request_uri").unwrap(),
            subset: None,
        };
        let hm = http::HeaderMap::new();
        let all = endpoints(5);
        let gone = SocketAddr::from(([10, 1, 0, 1], 8004));
        let fewer = Endpoints::new(all.addrs().iter().copied().filter(|a| *a != gone)).unwrap();
        for i in 0..300 {
            let uri = format!("/k/{i}");
            let before = pick(&h, &all, &view(&uri, &hm), &[]);
            let after = pick(&h, &fewer, &view(&uri, &hm), &[]);
            if before != gone {
                assert_eq!(before, after, "{uri} moved though its endpoint stayed");
            }
        }
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint_and_skips_tried_ones() {
        let fast = SocketAddr::from(([10, 9, 0, 1], 80));
        let slow = SocketAddr::from(([10, 9, 0, 2], 80));
        let e = Endpoints::new([fast, slow]).unwrap();
        for _ in 0..5 {
            ewma_record(fast, Duration::from_millis(2));
            ewma_record(slow, Duration::from_millis(400));
        }
        for _ in 0..50 {
            assert_eq!(ewma_pick(&e, &[]), fast);
        }
        assert_eq!(ewma_pick(&e, &[fast]), slow);
        // a decayed score falls toward 0
        let old = Ewma {
            value: 1.0,
            at: Instant::now() - Duration::from_secs(60),
        };
        assert!(decayed(old, Instant::now(), 0.0) < 0.01);
    }

    #[test]
    fn subsets_keep_a_key_within_its_subset() {
        let h = HashBy {
            key: Template::parse("$http_x_user").unwrap(),
            subset: Some(3),
        };
        let e = endpoints(7); // 3 subsets of 3, the last topped up from the first endpoints
        let mut hm = http::HeaderMap::new();
        for user in ["ann", "bob", "cy", "dee"] {
            hm.insert("x-user", user.parse().unwrap());
            let seen: std::collections::BTreeSet<SocketAddr> = (0..60)
                .map(|_| pick(&h, &e, &view("/", &hm), &[]))
                .collect();
            assert!(!seen.is_empty() && seen.len() <= 3, "{user}: {seen:?}");
        }
    }
}
