//! `upstream-hash-by` (+ `-subset`, `-subset-size`): requests pinned to endpoints by a key
//! built from nginx variables (ingress-nginx balancer `chash.lua`, `chashsubset.lua`). The key
//! is a typed [`Template`]; a variable outside its set is a warning and the upstream keeps
//! round robin. Like cookie affinity, the setting is per upstream (the oldest Ingress's).

use super::template::Template;
use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "upstream-hash-by", scope: Scope::Service, risk: Risk::High, support: Support::Supported, doc: "a key of nginx variables and text (`$request_uri`, `$remote_addr`, `$binary_remote_addr`, `$http_x`, `$cookie_x`, `$arg_x`, ...): requests with the same key go to the same endpoint (consistent hashing: an endpoint leaving moves only its keys; a retry takes the next endpoint on the ring); cookie affinity takes precedence" },
    KeySpec { name: "upstream-hash-by-subset", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "true: the key picks a subset of endpoints and a random endpoint of it serves" },
    KeySpec { name: "upstream-hash-by-subset-size", scope: Scope::Service, risk: Risk::Low, support: Support::Supported, doc: "endpoints per subset (3)" },
];

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
}
