//! Endpoint choice by `upstream-hash-by` (ingress-nginx `chash.lua`, `chashsubset.lua`): the
//! key template expanded against the request, hashed onto the upstream's ring.

use std::net::SocketAddr;

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
