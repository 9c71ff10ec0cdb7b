//! `load-balance` (round_robin, ewma) and `upstream-hash-by` (+ `-subset`, `-subset-size`):
//! how an upstream picks its endpoint. `upstream-hash-by` pins requests to endpoints by a key
//! built from nginx variables (ingress-nginx balancer `chash.lua`, `chashsubset.lua`). The key
//! is a typed [`Template`]; a variable outside its set is a warning and the upstream keeps
//! round robin. Like cookie affinity, the setting is per upstream (the oldest Ingress's).

use super::template::Template;
use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "upstream-hash-by", scope: Scope::Service, risk: Risk::High, support: Support::Supported, doc: "a key of nginx variables and text (`$request_uri`, `$remote_addr`, `$binary_remote_addr`, `$http_x`, `$cookie_x`, `$arg_x`, ...): requests with the same key go to the same endpoint (consistent hashing: an endpoint leaving moves only its keys; a retry takes the next endpoint on the ring); cookie affinity takes precedence; on a canary Ingress it balances the canary's own upstream" },
    KeySpec { name: "upstream-hash-by-subset", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "true: the key picks a subset of endpoints and a random endpoint of it serves" },
    KeySpec { name: "upstream-hash-by-subset-size", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "endpoints per subset (3)" },
    KeySpec { name: "load-balance", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "round_robin (ConfigMap `load-balance` default) or ewma (peak EWMA of response times, the better of two random endpoints, 10 s decay); cookie affinity and upstream-hash-by take precedence" },
];

/// `load-balance`: the endpoint choice of an upstream without affinity or hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalance {
    #[default]
    RoundRobin,
    Ewma,
}

impl LoadBalance {
    /// ingress-nginx's names; `None` for anything else.
    pub fn parse(v: &str) -> Option<LoadBalance> {
        match v.trim() {
            "round_robin" => Some(LoadBalance::RoundRobin),
            "ewma" => Some(LoadBalance::Ewma),
            _ => None,
        }
    }
}

/// `load-balance`; `None`: the ConfigMap's.
pub fn parse_load_balance(r: &mut Reader<'_>) -> Option<LoadBalance> {
    let v = r.get("load-balance")?;
    let lb = LoadBalance::parse(v);
    if lb.is_none() {
        r.fallback(
            "load-balance",
            v,
            "round_robin or ewma",
            "ConfigMap load-balance",
        );
    }
    lb
}

/// A parsed `upstream-hash-by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashBy {
    pub key: Template,
    /// `upstream-hash-by-subset`: the subset size, when on.
    pub subset: Option<usize>,
}

pub fn parse(r: &mut Reader<'_>) -> Option<HashBy> {
    let subset_on = r.bool_or("upstream-hash-by-subset", false);
    let size = match r.int_or_default("upstream-hash-by-subset-size") {
        Some(n) if n > 0 => n as usize,
        Some(n) => {
            r.fallback(
                "upstream-hash-by-subset-size",
                &n.to_string(),
                "a positive count",
                "3",
            );
            3
        }
        None => 3,
    };
    let v = r.get("upstream-hash-by")?.trim();
    if v.is_empty() {
        return None;
    }
    match Template::parse(v) {
        Ok(key) => Some(HashBy {
            key,
            subset: subset_on.then_some(size),
        }),
        Err(e) => {
            r.fallback(
                "upstream-hash-by",
                v,
                &format!("nginx variables pingress expands ({e})"),
                "round robin",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn keys_and_subsets() {
        let (h, d) = reader_with(&[("upstream-hash-by", "$request_uri")], parse);
        assert!(d.is_empty());
        let h = h.unwrap();
        assert_eq!(h.subset, None);
        assert_eq!(h.key, Template::parse("$request_uri").unwrap());
        let (h, d) = reader_with(
            &[
                ("upstream-hash-by", "${binary_remote_addr}-x"),
                ("upstream-hash-by-subset", "true"),
            ],
            parse,
        );
        assert!(d.is_empty());
        assert_eq!(h.unwrap().subset, Some(3));
        let (h, _) = reader_with(
            &[
                ("upstream-hash-by", "$host"),
                ("upstream-hash-by-subset", "true"),
                ("upstream-hash-by-subset-size", "5"),
            ],
            parse,
        );
        assert_eq!(h.unwrap().subset, Some(5));
        // an unknown variable: a warning, round robin
        let (h, d) = reader_with(&[("upstream-hash-by", "$upstream_addr")], parse);
        assert_eq!((h, d.len()), (None, 1));
    }

    #[test]
    fn load_balance_values() {
        let (lb, d) = reader_with(&[("load-balance", "ewma")], parse_load_balance);
        assert_eq!((lb, d.len()), (Some(LoadBalance::Ewma), 0));
        let (lb, d) = reader_with(&[("load-balance", "least_conn")], parse_load_balance);
        assert_eq!((lb, d.len()), (None, 1));
    }
}
