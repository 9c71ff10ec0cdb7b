//! `allowlist-source-range` / `whitelist-source-range`, `denylist-source-range`
//! (ingress-nginx `annotations/ipallowlist`, `ipdenylist`). An unparsable list does not open
//! anything: the Ingress's locations answer 503 (ingress-nginx's "location denied").

use std::net::IpAddr;

use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "allowlist-source-range",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "only these CIDRs may connect; others get 403",
    },
    KeySpec {
        name: "whitelist-source-range",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "alias of allowlist-source-range",
    },
    KeySpec {
        name: "denylist-source-range",
        scope: Scope::Ingress,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "these CIDRs get 403 (checked before the allowlist)",
    },
];

/// A set of CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    nets: Vec<(IpAddr, u8)>,
}

impl IpSet {
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Add the networks of `other`.
    pub fn extend(&mut self, other: &IpSet) {
        self.nets.extend_from_slice(&other.nets);
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if *len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

/// Parse a comma list of CIDRs or single IPs; `Err` names the first bad element.
pub fn parse_cidrs(v: &str) -> Result<IpSet, String> {
    let mut nets = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, len) = match item.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (item, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| item.to_string())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| item.to_string())?,
            None => max,
        };
        nets.push((ip, len));
    }
    Ok(IpSet { nets })
}

/// What the access annotations decide for a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    #[default]
    Open,
    Rules {
        allow: Option<IpSet>,
        deny: Option<IpSet>,
    },
    /// A list did not parse: every request answers 503 (fail closed).
    Denied,
}

impl Access {
    /// `None` = pass; `Some(status)` = refuse.
    pub fn check(&self, ip: Option<IpAddr>) -> Option<u16> {
        match self {
            Access::Open => None,
            Access::Denied => Some(503),
            Access::Rules { allow, deny } => {
                let Some(ip) = ip else { return Some(403) };
                if deny.as_ref().is_some_and(|d| d.contains(ip)) {
                    return Some(403);
                }
                match allow {
                    Some(a) if !a.contains(ip) => Some(403),
                    _ => None,
                }
            }
        }
    }
}

pub fn parse(r: &mut Reader<'_>) -> Access {
    let allow_raw = r
        .get("allowlist-source-range")
        .map(|v| ("allowlist-source-range", v))
        .or_else(|| {
            r.get("whitelist-source-range")
                .map(|v| ("whitelist-source-range", v))
        });
    let deny_raw = r
        .get("denylist-source-range")
        .map(|v| ("denylist-source-range", v));
    if allow_raw.is_none() && deny_raw.is_none() {
        return Access::Open;
    }
    let mut parse_one = |raw: Option<(&str, &str)>| -> Result<Option<IpSet>, ()> {
        let Some((name, v)) = raw else {
            return Ok(None);
        };
        match parse_cidrs(v) {
            Ok(set) => Ok(Some(set)),
            Err(bad) => {
                r.warn(
                    "InvalidAnnotationValue",
                    format!(
                        "{}: {v:?} is invalid ({bad:?} is not a CIDR); every path of this Ingress answers 503 until it is fixed",
                        r.key(name)
                    ),
                );
                Err(())
            }
        }
    };
    match (parse_one(allow_raw), parse_one(deny_raw)) {
        (Ok(allow), Ok(deny)) => Access::Rules { allow, deny },
        _ => Access::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn cidrs() {
        let s = parse_cidrs("10.0.0.0/8, 192.168.0.1,2001:db8::/32").unwrap();
        assert!(s.contains("10.255.0.1".parse().unwrap()));
        assert!(s.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(s.contains("192.168.0.1".parse().unwrap()));
        assert!(!s.contains("192.168.0.2".parse().unwrap()));
        assert!(s.contains("2001:db8::1".parse().unwrap()));
        assert!(parse_cidrs("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert_eq!(parse_cidrs("10.0.0.0/33").unwrap_err(), "10.0.0.0/33");
        assert_eq!(parse_cidrs("nope").unwrap_err(), "nope");
    }

    #[test]
    fn allow_deny_and_fail_closed() {
        let (a, d) = reader_with(
            &[
                ("whitelist-source-range", "10.0.0.0/8"),
                ("denylist-source-range", "10.0.0.5"),
            ],
            parse,
        );
        assert!(d.is_empty());
        assert_eq!(a.check(ip("10.0.0.1")), None);
        assert_eq!(a.check(ip("10.0.0.5")), Some(403));
        assert_eq!(a.check(ip("11.0.0.1")), Some(403));
        let (a, d) = reader_with(&[("allowlist-source-range", "10.0.0.0/8,bogus")], parse);
        assert_eq!(a, Access::Denied);
        assert_eq!(a.check(ip("10.0.0.1")), Some(503));
        assert_eq!(d.len(), 1);
        let (a, _) = reader_with(&[], parse);
        assert_eq!(a.check(None), None);
    }
}
