//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-connections`,
//! `limit-allowlist` / `limit-whitelist`, `limit-rate`, `limit-rate-after` (ingress-nginx
//! `annotations/ratelimit`). An invalid integer or CIDR of the request limits makes the Ingress
//! invalid, as in ingress-nginx; an invalid `limit-rate*` value falls back to 0 (off).

use super::access::{parse_cidrs, IpSet};
use super::{KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec { name: "limit-rps", scope: Scope::Ingress, risk: Risk::Low, support: Support::Differs("token bucket equivalent to nginx limit_req nodelay"), doc: "requests per second per client IP for the whole Ingress; burst = rps x limit-burst-multiplier" },
    KeySpec { name: "limit-rpm", scope: Scope::Ingress, risk: Risk::Low, support: Support::Differs("token bucket equivalent to nginx limit_req nodelay"), doc: "requests per minute per client IP" },
    KeySpec { name: "limit-burst-multiplier", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "burst size multiplier (default 5)" },
    KeySpec { name: "limit-connections", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "concurrent requests per client IP" },
    KeySpec { name: "limit-allowlist", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "CIDRs exempt from the limits" },
    KeySpec { name: "limit-whitelist", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "alias of limit-allowlist" },
    KeySpec { name: "limit-rate", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "response bandwidth per request in KiB/s (nginx limit_rate; 0 = off), with a one-second head start as nginx" },
    KeySpec { name: "limit-rate-after", scope: Scope::Ingress, risk: Risk::Low, support: Support::Supported, doc: "KiB of each response sent before limit-rate applies (0)" },
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    pub burst_multiplier: u32,
    pub connections: Option<u32>,
    pub allowlist: IpSet,
    /// `limit-rate` in bytes per second (0: off; `None`: not set, the ConfigMap's applies).
    pub rate: Option<u64>,
    /// `limit-rate-after` in bytes (`None`: not set, the ConfigMap's applies).
    pub rate_after: Option<u64>,
}

impl RateLimits {
    pub fn is_active(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.connections.is_some()
    }
}

fn positive(r: &mut Reader<'_>, name: &str) -> Option<u32> {
    let n = r.int_strict(name)?;
    if n < 0 {
        r.reject(name, &n.to_string(), "a non-negative integer");
        return None;
    }
    // 0 means off, as in ingress-nginx
    (n > 0).then(|| n.min(u32::MAX as i64) as u32)
}

pub fn parse(r: &mut Reader<'_>) -> RateLimits {
    let mut out = RateLimits {
        rps: positive(r, "limit-rps"),
        rpm: positive(r, "limit-rpm"),
        connections: positive(r, "limit-connections"),
        burst_multiplier: 5,
        allowlist: IpSet::default(),
        rate: None,
        rate_after: None,
    };
    // an invalid value falls back to the ConfigMap's (ingress-nginx: the default backend's)
    let kib = |r: &mut Reader<'_>, name: &str| -> Option<u64> {
        match r.int_or_default(name) {
            Some(n) if n >= 0 => Some((n as u64).saturating_mul(1024)),
            Some(n) => {
                r.fallback(
                    name,
                    &n.to_string(),
                    "KiB, 0 or more",
                    "the ConfigMap's value",
                );
                None
            }
            None => None,
        }
    };
    out.rate = kib(r, "limit-rate");
    out.rate_after = kib(r, "limit-rate-after");
    if let Some(m) = positive(r, "limit-burst-multiplier") {
        out.burst_multiplier = m;
    }
    let list = r
        .get("limit-allowlist")
        .map(|v| ("limit-allowlist", v))
        .or_else(|| r.get("limit-whitelist").map(|v| ("limit-whitelist", v)));
    if let Some((name, v)) = list {
        match parse_cidrs(v) {
            Ok(set) => out.allowlist = set,
            Err(bad) => r.reject(
                name,
                v,
                &format!("a comma list of CIDRs ({bad:?} is not one)"),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::{reader_with, rejects};

    #[test]
    fn values() {
        let (l, d) = reader_with(
            &[
                ("limit-rps", "10"),
                ("limit-whitelist", "10.0.0.0/8, 192.168.1.1"),
            ],
            parse,
        );
        assert_eq!(l.rps, Some(10));
        assert_eq!(l.burst_multiplier, 5);
        assert!(l.allowlist.contains("10.1.2.3".parse().unwrap()));
        assert!(l.allowlist.contains("192.168.1.1".parse().unwrap()));
        assert!(!l.allowlist.contains("192.168.1.2".parse().unwrap()));
        assert!(d.is_empty());
        let (l, _) = reader_with(&[("limit-rps", "0")], parse);
        assert!(!l.is_active());
        assert!(rejects(&[("limit-rps", "ten")], parse));
        assert!(rejects(&[("limit-rpm", "-1")], parse));
        assert!(rejects(
            &[
                ("limit-connections", "1"),
                ("limit-allowlist", "10.0.0.0/33")
            ],
            parse
        ));
    }
}
