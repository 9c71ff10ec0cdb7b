//! `canary`, `canary-by-header(-value|-pattern)`, `canary-by-cookie`, `canary-weight(-total)`
//! (ingress-nginx `annotations/canary`). A canary Ingress adds no routes: compile merges it as
//! the alternative backend of the primary Service whose route has the same host, path and
//! pathType; `proxy/canary.rs` decides per request. canary-* keys without `canary: "true"` drop
//! the canary settings (the Ingress is then a normal one), as ingress-nginx does.

use http::HeaderName;

use super::{parse_bool, KeySpec, Reader, Risk, Scope, Support};

pub const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "canary",
        scope: Scope::Service,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "this Ingress is the canary of the Ingress with the same host, path and pathType: no routes of its own; its Service becomes the alternative backend of the primary's Service",
    },
    KeySpec {
        name: "canary-by-header",
        scope: Scope::Service,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "request header deciding the canary: `always` -> canary, `never` -> primary, else the cookie and weight decide",
    },
    KeySpec {
        name: "canary-by-header-value",
        scope: Scope::Service,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "canary when canary-by-header equals this value (case-sensitive); else the cookie and weight decide",
    },
    KeySpec {
        name: "canary-by-header-pattern",
        scope: Scope::Service,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "canary when canary-by-header matches this regex (unanchored, ignored when -value is set); a pattern that does not compile sends the request to the primary",
    },
    KeySpec {
        name: "canary-by-cookie",
        scope: Scope::Service,
        risk: Risk::Medium,
        support: Support::Supported,
        doc: "cookie deciding the canary: `always` -> canary, `never` -> primary, else the weight decides",
    },
    KeySpec {
        name: "canary-weight",
        scope: Scope::Service,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "requests sent to the canary out of canary-weight-total, at random",
    },
    KeySpec {
        name: "canary-weight-total",
        scope: Scope::Service,
        risk: Risk::Low,
        support: Support::Supported,
        doc: "total of canary-weight (100; a value below 100 counts as 100, as in ingress-nginx's balancer)",
    },
];

/// How the header is compared.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    /// `always` / `never` only.
    Keywords,
    /// canary-by-header-value: equal.
    Value(String),
    /// canary-by-header-pattern: unanchored regex.
    Pattern(regex::Regex),
    /// A pattern that does not compile: the request goes to the primary (ngx.re.match error).
    BadPattern,
}

impl PartialEq for HeaderMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderMatch::Keywords, HeaderMatch::Keywords)
            | (HeaderMatch::BadPattern, HeaderMatch::BadPattern) => true,
            (HeaderMatch::Value(a), HeaderMatch::Value(b)) => a == b,
            (HeaderMatch::Pattern(a), HeaderMatch::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for HeaderMatch {}

/// The traffic-shaping policy of a canary Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub header: Option<(HeaderName, HeaderMatch)>,
    pub cookie: Option<String>,
    pub weight: u32,
    /// Effective total: at least 100.
    pub weight_total: u32,
}

fn non_negative(r: &mut Reader<'_>, name: &str, default: u32) -> u32 {
    match r.int_or_default(name) {
        Some(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX),
        Some(n) => {
            r.fallback(
                name,
                &n.to_string(),
                "a non-negative integer",
                &default.to_string(),
            );
            default
        }
        None => default,
    }
}

/// `None`: not a canary (no `canary`, `canary: "false"`, or an invalid value: the fail-safe
/// check has already decided what happens to the Ingress then).
pub fn parse(r: &mut Reader<'_>) -> Option<Canary> {
    let enabled = match r.get("canary") {
        None => false,
        Some(v) => match parse_bool(v.trim()) {
            Some(b) => b,
            // ingress-nginx reads an invalid value as false and serves the Ingress as a normal
            // one, which may take its primary's path; pingress leaves it out instead
            None => {
                r.reject("canary", v, "true or false");
                return None;
            }
        },
    };
    if !enabled {
        let set: Vec<&str> = KEYS[1..]
            .iter()
            .map(|k| k.name)
            .filter(|k| r.get(k).is_some())
            .collect();
        if !set.is_empty() {
            r.warn(
                "CanaryNotEnabled",
                format!(
                    "{} set without {}: \"true\": the canary settings are ignored and the Ingress is served as a normal one (ingress-nginx: configured but not enabled)",
                    set.join(", "),
                    r.key("canary")
                ),
            );
        }
        return None;
    }
    let header = match r.get("canary-by-header").map(str::trim) {
        None | Some("") => None,
        Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => {
                let value = r.get("canary-by-header-value").filter(|v| !v.is_empty());
                let pattern = r.get("canary-by-header-pattern").filter(|v| !v.is_empty());
                let how = match (value, pattern) {
                    (Some(v), _) => HeaderMatch::Value(v.to_string()),
                    (None, Some(p)) => {
                        match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
                            Ok(re) => HeaderMatch::Pattern(re),
                            Err(e) => {
                                r.warn(
                                "InvalidAnnotationValue",
                                format!(
                                    "{}: {p:?} is not a regex pingress can run ({e}); requests carrying {h} go to the primary, as ingress-nginx does on a regex error",
                                    r.key("canary-by-header-pattern")
                                ),
                            );
                                HeaderMatch::BadPattern
                            }
                        }
                    }
                    (None, None) => HeaderMatch::Keywords,
                };
                Some((name, how))
            }
            Err(_) => {
                r.fallback("canary-by-header", h, "a header name", "(none)");
                None
            }
        },
    };
    let cookie = r
        .get("canary-by-cookie")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let weight = non_negative(r, "canary-weight", 0);
    let weight_total = non_negative(r, "canary-weight-total", 100).max(100);
    Some(Canary {
        header,
        cookie,
        weight,
        weight_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn only_with_canary_true() {
        let (c, d) = reader_with(&[("canary-weight", "10")], parse);
        assert!(c.is_none());
        assert_eq!(d[0].reason, "CanaryNotEnabled");
        let (c, d) = reader_with(&[("canary", "false"), ("canary-weight", "10")], parse);
        assert!(c.is_none());
        assert_eq!(d.len(), 1);
        assert!(crate::annotations::test_support::rejects(
            &[("canary", "yes"), ("canary-weight", "100")],
            parse
        ));
        let (c, d) = reader_with(&[("canary", "true")], parse);
        assert_eq!(
            c.unwrap(),
            Canary {
                header: None,
                cookie: None,
                weight: 0,
                weight_total: 100
            }
        );
        assert!(d.is_empty());
    }

    #[test]
    fn header_value_wins_over_pattern_and_totals_below_100_count_as_100() {
        let (c, _) = reader_with(
            &[
                ("canary", "true"),
                ("canary-by-header", "X-Canary"),
                ("canary-by-header-value", "yes"),
                ("canary-by-header-pattern", "^y"),
                ("canary-by-cookie", "beta"),
                ("canary-weight", "30"),
                ("canary-weight-total", "50"),
            ],
            parse,
        );
        let c = c.unwrap();
        assert_eq!(
            c.header,
            Some((
                HeaderName::from_static("x-canary"),
                HeaderMatch::Value("yes".into())
            ))
        );
        assert_eq!(c.cookie.as_deref(), Some("beta"));
        assert_eq!((c.weight, c.weight_total), (30, 100));
        let (c, _) = reader_with(
            &[("canary", "true"), ("canary-weight-total", "1000")],
            parse,
        );
        assert_eq!(c.unwrap().weight_total, 1000);
    }

    #[test]
    fn a_bad_pattern_goes_to_the_primary_with_a_warning() {
        let (c, d) = reader_with(
            &[
                ("canary", "true"),
                ("canary-by-header", "X-Canary"),
                ("canary-by-header-pattern", "(?<=x)y"),
            ],
            parse,
        );
        assert_eq!(c.unwrap().header.unwrap().1, HeaderMatch::BadPattern);
        assert_eq!(d.len(), 1);
    }
}
