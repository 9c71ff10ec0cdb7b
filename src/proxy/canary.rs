//! Per request: does a route's canary serve this request? ingress-nginx's
//! `route_to_alternative_balancer` (balancer.lua), in its order: a session cookie naming the
//! primary upstream keeps the primary, one naming the canary upstream keeps the canary
//! ([`serves`]); then the header (value, else pattern, else `always`/`never`), the cookie
//! (`always`/`never`), the weight ([`choose`]).

use http::HeaderMap;

use crate::annotations::canary::{Canary, HeaderMatch};
use crate::annotations::template::cookie;
use crate::route::AffinityTarget;

/// `sticky.lua` `is_affinitized`: the request's session cookie names this upstream (its value
/// is `<key>|<backend key>`).
pub fn affinitized(a: Option<&AffinityTarget>, headers: &HeaderMap) -> bool {
    a.is_some_and(|a| {
        cookie(headers, &a.spec.cookie.name)
            .and_then(|v| v.split_once('|'))
            .is_some_and(|(_, backend)| backend == &*a.backend_key)
    })
}

/// `true`: the canary serves. `primary` / `canary` are the cookie affinities of the two
/// upstreams (a sticky canary has its primary's, under its own backend key).
pub fn serves(
    primary: Option<&AffinityTarget>,
    canary: Option<&AffinityTarget>,
    c: &Canary,
    headers: &HeaderMap,
    roll: impl FnOnce(u32) -> u32,
) -> bool {
    if affinitized(primary, headers) {
        return false;
    }
    if affinitized(canary, headers) {
        return true;
    }
    choose(c, headers, roll)
}

/// `true`: the canary serves. `roll(total)` draws uniformly from `1..=total`.
pub fn choose(c: &Canary, headers: &HeaderMap, roll: impl FnOnce(u32) -> u32) -> bool {
    if let Some((name, how)) = &c.header {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            match how {
                HeaderMatch::Value(want) => {
                    if v == want {
                        return true;
                    }
                }
                HeaderMatch::Pattern(re) => {
                    if re.is_match(v) {
                        return true;
                    }
                }
                // ngx.re.match fails on every call: the primary, and stop
                HeaderMatch::BadPattern => return false,
                HeaderMatch::Keywords => match v {
                    "always" => return true,
                    "never" => return false,
                    _ => {}
                },
            }
        }
    }
    if let Some(name) = &c.cookie {
        match cookie(headers, name) {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
    }
    c.weight > 0 && roll(c.weight_total) <= c.weight
}

/// A uniform draw from `1..=total`.
pub fn roll(total: u32) -> u32 {
    fastrand::u32(1..=total.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn canary(header: Option<HeaderMatch>, cookie: Option<&str>, weight: u32) -> Canary {
        Canary {
            header: header.map(|h| (HeaderName::from_static("x-canary"), h)),
            cookie: cookie.map(str::to_string),
            weight,
            weight_total: 100,
        }
    }

    fn headers(kv: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// The roll that a weight decision would need: never called unless the weight decides.
    fn no_roll(_: u32) -> u32 {
        panic!("the weight was consulted")
    }

    #[test]
    fn header_keywords_then_cookie_then_weight() {
        let c = canary(Some(HeaderMatch::Keywords), Some("beta"), 100);
        assert!(choose(&c, &headers(&[("X-Canary", "always")]), no_roll));
        assert!(!choose(
            &c,
            &headers(&[("X-Canary", "never"), ("Cookie", "beta=always")]),
            no_roll
        ));
        // other header values fall through to the cookie
        assert!(!choose(
            &c,
            &headers(&[("X-Canary", "maybe"), ("Cookie", "a=1; beta=never")]),
            no_roll
        ));
        assert!(choose(&c, &headers(&[("Cookie", "beta=always")]), no_roll));
        // then the weight: 100 of 100
        assert!(choose(&c, &headers(&[]), |t| t));
        let zero = canary(None, None, 0);
        assert!(!choose(&zero, &headers(&[]), no_roll));
    }

    #[test]
    fn value_and_pattern_fall_through_when_they_do_not_match() {
        let v = canary(Some(HeaderMatch::Value("yes".into())), None, 30);
        assert!(choose(&v, &headers(&[("X-Canary", "yes")]), no_roll));
        // "always" is not a keyword when a value is set; the weight decides
        assert!(!choose(&v, &headers(&[("X-Canary", "always")]), |_| 31));
        assert!(choose(&v, &headers(&[("X-Canary", "always")]), |_| 30));
        let p = canary(
            Some(HeaderMatch::Pattern(
                regex::Regex::new("^(beta|rc)").unwrap(),
            )),
            None,
            0,
        );
        assert!(choose(&p, &headers(&[("X-Canary", "rc-1")]), no_roll));
        assert!(!choose(&p, &headers(&[("X-Canary", "stable")]), no_roll));
        let bad = canary(Some(HeaderMatch::BadPattern), Some("beta"), 100);
        assert!(!choose(
            &bad,
            &headers(&[("X-Canary", "x"), ("Cookie", "beta=always")]),
            no_roll
        ));
    }

    #[test]
    fn a_session_cookie_naming_either_upstream_comes_before_the_rules() {
        use crate::annotations::affinity::{Affinity, CookieSpec, Mode};
        let target = |backend_key: &str| AffinityTarget {
            spec: Affinity {
                mode: Mode::Balanced,
                cookie: CookieSpec::named("INGRESSCOOKIE"),
                change_on_failure: false,
            },
            backend_key: backend_key.into(),
            locations: Vec::new(),
            ingress: crate::route::IngressId {
                namespace: "n".into(),
                name: "a".into(),
            },
        };
        let (p, k) = (target("pkey"), target("ckey"));
        let always = canary(Some(HeaderMatch::Keywords), None, 100);
        let h = |cookie: &str| headers(&[("X-Canary", "always"), ("Cookie", cookie)]);
        // affinitized to the primary: primary, whatever the rules say
        assert!(!serves(
            Some(&p),
            Some(&k),
            &always,
            &h("INGRESSCOOKIE=abc|pkey"),
            no_roll
        ));
        // to the canary: canary, even with weight 0 and no header
        let never = canary(None, None, 0);
        assert!(serves(
            Some(&p),
            Some(&k),
            &never,
            &headers(&[("Cookie", "INGRESSCOOKIE=abc|ckey")]),
            no_roll
        ));
        // legacy without canary affinity: the canary's cookie is not recognised, rules decide
        assert!(!serves(
            Some(&p),
            None,
            &never,
            &headers(&[("Cookie", "INGRESSCOOKIE=abc|ckey")]),
            no_roll
        ));
        // a cookie for another upstream or without a backend key: the rules
        assert!(serves(
            Some(&p),
            Some(&k),
            &always,
            &h("INGRESSCOOKIE=abc|other"),
            no_roll
        ));
        assert!(serves(
            Some(&p),
            Some(&k),
            &always,
            &h("INGRESSCOOKIE=abc"),
            no_roll
        ));
    }

    #[test]
    fn roll_stays_in_range() {
        for _ in 0..1000 {
            let r = roll(100);
            assert!((1..=100).contains(&r));
        }
    }
}
