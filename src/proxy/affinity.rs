//! Cookie affinity at request time (ingress-nginx balancer `sticky.lua`, `sticky_balanced.lua`,
//! `sticky_persistent.lua`): the cookie `<key>|<backend key>` names the endpoint; a request
//! without a usable cookie gets a new endpoint and, on the locations that asked for affinity, a
//! Set-Cookie.
//!
//! - balanced: the key is random and maps to an endpoint on the consistent-hash ring, so
//!   scaling moves only the sessions of the points that changed;
//! - persistent: the key names the endpoint itself; it holds while that endpoint exists.

use std::net::SocketAddr;

use http::HeaderMap;

use crate::annotations::affinity::{CookieSpec, Mode};
use crate::annotations::template::cookie;
use crate::route::backend::Endpoints;
use crate::route::AffinityTarget;

/// The endpoint for this attempt and the Set-Cookie to send, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Picked {
    pub addr: SocketAddr,
    pub set_cookie: Option<String>,
}

/// Where the request is: for the Set-Cookie decision and the default cookie Path.
pub struct Location<'a> {
    /// Host as written in the Ingress (`""` for rules without host).
    pub host: &'a str,
    /// The Ingress path as written.
    pub path: &'a str,
    pub https: bool,
    pub user_agent: Option<&'a str>,
}

/// A persistent-mode key: names the endpoint, salted with the upstream (FNV-1a of the name,
/// the address bytes and the port).
pub fn endpoint_key(upstream: &str, addr: SocketAddr) -> String {
    format!("{:016x}", endpoint_hash(upstream, addr))
}

fn endpoint_hash(upstream: &str, addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let bytes = upstream
        .bytes()
        .chain([b'|'])
        .chain(ip)
        .chain(addr.port().to_be_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The endpoint a persistent key names, without formatting every endpoint's key.
fn endpoint_of(e: &Endpoints, upstream: &str, key: &str) -> Option<SocketAddr> {
    let want = u64::from_str_radix(key, 16).ok()?;
    e.addrs()
        .iter()
        .copied()
        .find(|addr| endpoint_hash(upstream, *addr) == want)
}

fn random_key() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// `tried` holds the endpoints of earlier attempts of this request (a failure happened).
pub fn pick(
    a: &AffinityTarget,
    upstream: &str,
    e: &Endpoints,
    headers: &HeaderMap,
    tried: &[SocketAddr],
    at: &Location<'_>,
) -> Picked {
    let key = cookie(headers, &a.spec.cookie.name)
        .and_then(|v| v.split('|').next())
        .filter(|k| !k.is_empty());
    let from_cookie = key.and_then(|k| match a.spec.mode {
        Mode::Balanced => Some(e.hashed(k.as_bytes())),
        Mode::Persistent => endpoint_of(e, upstream, k),
    });
    let failed = !tried.is_empty();
    match from_cookie {
        // after a failure the same endpoint again, unless change-on-failure (sticky.lua)
        Some(addr) if !(failed && a.spec.change_on_failure) => {
            return Picked {
                addr,
                set_cookie: None,
            }
        }
        _ => {}
    }
    let (addr, key) = match a.spec.mode {
        Mode::Balanced => {
            let mut choice = None;
            for _ in 0..20 {
                let k = random_key();
                let addr = e.hashed(k.as_bytes());
                if !tried.contains(&addr) {
                    choice = Some((addr, k));
                    break;
                }
            }
            choice.unwrap_or_else(|| {
                let k = random_key();
                (e.hashed(k.as_bytes()), k)
            })
        }
        Mode::Persistent => {
            let pool = e.untried(tried);
            let addr = pool[fastrand::usize(..pool.len())];
            (addr, endpoint_key(upstream, addr))
        }
    };
    let set = a.sets_cookie_at(at.host, at.path);
    Picked {
        addr,
        set_cookie: set.then(|| set_cookie(&a.spec.cookie, &key, &a.backend_key, at)),
    }
}

/// The Set-Cookie value in lua-resty-cookie's attribute order.
pub fn set_cookie(c: &CookieSpec, key: &str, backend_key: &str, at: &Location<'_>) -> String {
    let mut s = format!("{}={key}|{backend_key}", c.name);
    if let Some(secs) = c.expires {
        let when = jiff::Timestamp::now().as_second().saturating_add(secs);
        if let Ok(t) = jiff::Timestamp::from_second(when) {
            s.push_str(&format!(
                "; Expires={}",
                t.strftime("%a, %d-%b-%y %H:%M:%S GMT")
            ));
        }
    }
    if let Some(m) = c.max_age {
        s.push_str(&format!("; Max-Age={m}"));
    }
    if let Some(d) = &c.domain {
        s.push_str(&format!("; Domain={d}"));
    }
    let path = c
        .path
        .as_deref()
        .unwrap_or(if at.path.is_empty() { "/" } else { at.path });
    s.push_str(&format!("; Path={path}"));
    if c.secure || at.https {
        s.push_str("; Secure");
    }
    s.push_str("; HttpOnly");
    if let Some(ss) = &c.samesite {
        let drop_none = ss == "None"
            && c.conditional_samesite_none
            && !same_site_none_compatible(at.user_agent);
        if !drop_none {
            s.push_str(&format!("; SameSite={ss}"));
        }
    }
    s
}

/// util/same_site.lua: user agents known to reject `SameSite=None`.
pub fn same_site_none_compatible(ua: Option<&str>) -> bool {
    let Some(ua) = ua else { return true };
    !(ua.contains("Chrome/4")
        || ua.contains("Chrome/5")
        || ua.contains("Chrome/6")
        || ua.contains("CPU iPhone OS 12")
        || ua.contains("iPad; CPU OS 12")
        || (ua.contains("Macintosh")
            && ua.contains("Intel Mac OS X 10_14")
            && ua.contains("Safari")
            && !ua.contains("Chrome")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::affinity::Affinity;
    use crate::route::IngressId;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    fn target(mode: Mode, change_on_failure: bool) -> AffinityTarget {
        AffinityTarget {
            spec: Affinity {
                mode,
                cookie: CookieSpec::named("INGRESSCOOKIE"),
                change_on_failure,
            },
            backend_key: "bk".into(),
            locations: vec![(Box::from("app.test"), Box::from("/"))],
            ingress: IngressId {
                namespace: "default".into(),
                name: "app".into(),
            },
        }
    }

    fn at(path: &str) -> Location<'_> {
        Location {
            host: "app.test",
            path,
            https: false,
            user_agent: None,
        }
    }

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("a=b; INGRESSCOOKIE={v}").parse().unwrap());
        h
    }

    #[test]
    fn a_new_session_gets_a_cookie_only_where_affinity_was_asked() {
        let e = Endpoints::new([addr(1), addr(2), addr(3)]).unwrap();
        for mode in [Mode::Balanced, Mode::Persistent] {
            let t = target(mode, false);
            let p = pick(&t, "up", &e, &HeaderMap::new(), &[], &at("/"));
            let c = p.set_cookie.unwrap();
            assert!(
                c.starts_with("INGRESSCOOKIE=") && c.ends_with("|bk; Path=/; HttpOnly"),
                "{c}"
            );
            // the cookie brings the next request back to the same endpoint
            let value = c
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("INGRESSCOOKIE=");
            for _ in 0..20 {
                let again = pick(&t, "up", &e, &with_cookie(value), &[], &at("/"));
                assert_eq!(
                    again,
                    Picked {
                        addr: p.addr,
                        set_cookie: None
                    }
                );
            }
            // another location of the same upstream: an endpoint but no cookie
            assert!(pick(&t, "up", &e, &HeaderMap::new(), &[], &at("/other"))
                .set_cookie
                .is_none());
        }
    }

    #[test]
    fn persistent_keys_survive_until_their_endpoint_leaves() {
        let t = target(Mode::Persistent, false);
        let e = Endpoints::new([addr(1), addr(2)]).unwrap();
        let key = endpoint_key("up", addr(2));
        let grown = Endpoints::new([addr(1), addr(2), addr(3), addr(4)]).unwrap();
        assert_eq!(
            pick(
                &t,
                "up",
                &grown,
                &with_cookie(&format!("{key}|bk")),
                &[],
                &at("/")
            )
            .addr,
            addr(2)
        );
        let gone = Endpoints::new([addr(1), addr(3)]).unwrap();
        let p = pick(
            &t,
            "up",
            &gone,
            &with_cookie(&format!("{key}|bk")),
            &[],
            &at("/"),
        );
        assert!(p.set_cookie.is_some());
        assert_ne!(p.addr, addr(2));
        let _ = e;
    }

    #[test]
    fn failures_keep_the_endpoint_unless_change_on_failure() {
        let e = Endpoints::new([addr(1), addr(2), addr(3)]).unwrap();
        let key = endpoint_key("up", addr(1));
        let h = with_cookie(&format!("{key}|bk"));
        let keep = target(Mode::Persistent, false);
        assert_eq!(
            pick(&keep, "up", &e, &h, &[addr(1)], &at("/")).addr,
            addr(1)
        );
        let change = target(Mode::Persistent, true);
        let p = pick(&change, "up", &e, &h, &[addr(1)], &at("/"));
        assert_ne!(p.addr, addr(1));
        assert!(p.set_cookie.is_some());
    }

    #[test]
    fn cookie_attributes_in_lua_resty_cookie_order() {
        let c = CookieSpec {
            name: "route".into(),
            path: Some("/app".into()),
            domain: Some("example.com".into()),
            expires: Some(3600),
            max_age: Some(7200),
            secure: false,
            samesite: Some("None".into()),
            conditional_samesite_none: true,
        };
        let mut loc = at("/");
        loc.https = true;
        let s = set_cookie(&c, "k", "bk", &loc);
        assert!(s.starts_with("route=k|bk; Expires="), "{s}");
        assert!(s.ends_with(" GMT; Max-Age=7200; Domain=example.com; Path=/app; Secure; HttpOnly; SameSite=None"), "{s}");
        loc.user_agent = Some("Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X)");
        assert!(!set_cookie(&c, "k", "bk", &loc).contains("SameSite"));
    }
}
