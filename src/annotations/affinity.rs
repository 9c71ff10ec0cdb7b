//! `affinity: cookie`, `affinity-mode`, `session-cookie-*` (ingress-nginx
//! `annotations/sessionaffinity`, balancer `sticky*.lua`). Affinity belongs to the upstream
//! (Service + port): compile gives each upstream the settings of the oldest Ingress that asks;
//! `proxy/affinity.rs` picks the endpoint and writes the cookie. Invalid values fall back to the
//! default with a warning, as ingress-nginx does.

use super::{parse_bool, KeySpec, Reader, Risk, Scope};

const fn key(name: &'static str, risk: Risk, doc: &'static str) -> KeySpec {
    KeySpec::supported(name, Scope::Service, risk, doc)
}

pub const KEYS: &[KeySpec] = &[
    key("affinity", Risk::Low, "`cookie`: requests carrying the session cookie go to the same endpoint of the Service"),
    key("affinity-mode", Risk::Medium, "`balanced` (default: the cookie maps to an endpoint by consistent hashing, so scaling moves few sessions) or `persistent` (the endpoint stays while it exists)"),
    key("session-cookie-name", Risk::Medium, "cookie name (INGRESSCOOKIE)"),
    key("session-cookie-path", Risk::Medium, "cookie Path (default: the Ingress path)"),
    key("session-cookie-domain", Risk::Medium, "cookie Domain"),
    key("session-cookie-expires", Risk::Medium, "cookie Expires, in seconds from now"),
    key("session-cookie-max-age", Risk::Medium, "cookie Max-Age in seconds"),
    key("session-cookie-secure", Risk::Low, "`true`: Secure always (default: Secure on HTTPS requests)"),
    key("session-cookie-samesite", Risk::Low, "cookie SameSite: None, Lax or Strict"),
    key("session-cookie-conditional-samesite-none", Risk::Low, "leave SameSite=None out for user agents known to reject it"),
    key("session-cookie-change-on-failure", Risk::Low, "after an upstream failure pick another endpoint and set a new cookie (default: keep the endpoint)"),
    key("affinity-canary-behavior", Risk::Low, "on a canary Ingress: `sticky` (default: the canary takes its primary's affinity, so a request sent to the canary stays there) or `legacy` (the canary's own affinity annotations, if any)"),
];

/// `affinity-canary-behavior` of a canary Ingress (ingress-nginx `mergeAlternativeBackend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CanaryBehavior {
    /// The canary upstream takes the primary upstream's affinity (none when it has none).
    #[default]
    Sticky,
    /// The canary upstream keeps its own affinity annotations.
    Legacy,
}

/// `affinity-canary-behavior`; anything but `legacy` is sticky (ingress-nginx compares with
/// "legacy"), an unknown value with a warning.
pub fn canary_behavior(r: &mut Reader<'_>) -> CanaryBehavior {
    match r.get("affinity-canary-behavior").map(str::trim) {
        None => CanaryBehavior::Sticky,
        Some(v) if v.eq_ignore_ascii_case("legacy") => CanaryBehavior::Legacy,
        Some(v) if v.eq_ignore_ascii_case("sticky") => CanaryBehavior::Sticky,
        Some(v) => {
            r.fallback("affinity-canary-behavior", v, "sticky or legacy", "sticky");
            CanaryBehavior::Sticky
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Balanced,
    Persistent,
}

/// The session cookie as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub expires: Option<i64>,
    pub max_age: Option<i64>,
    pub secure: bool,
    pub samesite: Option<String>,
    pub conditional_samesite_none: bool,
}

impl CookieSpec {
    /// A cookie with only its name set (every other attribute at its default).
    pub fn named(name: &str) -> CookieSpec {
        CookieSpec {
            name: name.to_string(),
            path: None,
            domain: None,
            expires: None,
            max_age: None,
            secure: false,
            samesite: None,
            conditional_samesite_none: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub mode: Mode,
    pub cookie: CookieSpec,
    pub change_on_failure: bool,
}

fn basic_chars(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b))
}

fn seconds(r: &mut Reader<'_>, name: &str) -> Option<i64> {
    let v = r.get(name)?.trim();
    // ingress-nginx: `(^0|-?[1-9]\d*$)`
    match super::parse_int(v) {
        Some(n) if v == "0" || !v.starts_with('0') => Some(n),
        _ => {
            r.fallback(name, v, "a number of seconds", "(none)");
            None
        }
    }
}

fn flag(r: &mut Reader<'_>, name: &str) -> bool {
    r.get(name)
        .map(|v| parse_bool(v.trim()) == Some(true))
        .unwrap_or(false)
}

/// `None` without `affinity: cookie` (any other value is ignored with a warning).
pub fn parse(r: &mut Reader<'_>) -> Option<Affinity> {
    let kind = r.get("affinity")?;
    if !kind.trim().eq_ignore_ascii_case("cookie") {
        r.fallback("affinity", kind, "cookie", "(no affinity)");
        return None;
    }
    let mode = match r.get("affinity-mode").map(str::trim) {
        None => Mode::Balanced,
        Some(m) if m.eq_ignore_ascii_case("balanced") => Mode::Balanced,
        Some(m) if m.eq_ignore_ascii_case("persistent") => Mode::Persistent,
        Some(m) => {
            r.fallback("affinity-mode", m, "balanced or persistent", "balanced");
            Mode::Balanced
        }
    };
    let name = match r.get("session-cookie-name").map(str::trim) {
        None => "INGRESSCOOKIE".to_string(),
        Some(n) if basic_chars(n) && !n.contains(['/', ':']) => n.to_string(),
        Some(n) => {
            r.fallback("session-cookie-name", n, "a cookie name", "INGRESSCOOKIE");
            "INGRESSCOOKIE".to_string()
        }
    };
    let path = match r.get("session-cookie-path").map(str::trim) {
        None | Some("") => None,
        Some(p)
            if p.starts_with('/')
                && !p
                    .bytes()
                    .any(|b| b == b';' || b.is_ascii_control() || b == b' ') =>
        {
            Some(p.to_string())
        }
        Some(p) => {
            r.fallback("session-cookie-path", p, "a path", "the Ingress path");
            None
        }
    };
    let domain = match r.get("session-cookie-domain").map(str::trim) {
        None | Some("") => None,
        Some(d) if basic_chars(d) && !d.contains(['/', ':']) => Some(d.to_string()),
        Some(d) => {
            r.fallback("session-cookie-domain", d, "a domain", "(none)");
            None
        }
    };
    let samesite = match r.get("session-cookie-samesite").map(str::trim) {
        None | Some("") => None,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "none" => Some("None".to_string()),
            "lax" => Some("Lax".to_string()),
            "strict" => Some("Strict".to_string()),
            _ => {
                r.fallback(
                    "session-cookie-samesite",
                    s,
                    "None, Lax or Strict",
                    "(none)",
                );
                None
            }
        },
    };
    Some(Affinity {
        mode,
        cookie: CookieSpec {
            name,
            path,
            domain,
            expires: seconds(r, "session-cookie-expires"),
            max_age: seconds(r, "session-cookie-max-age"),
            secure: flag(r, "session-cookie-secure"),
            samesite,
            conditional_samesite_none: flag(r, "session-cookie-conditional-samesite-none"),
        },
        change_on_failure: flag(r, "session-cookie-change-on-failure"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    #[test]
    fn defaults_and_values() {
        let (a, d) = reader_with(&[("affinity", "cookie")], parse);
        let a = a.unwrap();
        assert_eq!(a.mode, Mode::Balanced);
        assert_eq!(a.cookie.name, "INGRESSCOOKIE");
        assert!(a.cookie.path.is_none() && !a.cookie.secure && !a.change_on_failure);
        assert!(d.is_empty());
        let (a, _) = reader_with(
            &[
                ("affinity", "cookie"),
                ("affinity-mode", "persistent"),
                ("session-cookie-name", "route"),
                ("session-cookie-path", "/app"),
                ("session-cookie-expires", "172800"),
                ("session-cookie-max-age", "0"),
                ("session-cookie-samesite", "none"),
                ("session-cookie-secure", "true"),
                ("session-cookie-change-on-failure", "true"),
            ],
            parse,
        );
        let a = a.unwrap();
        assert_eq!(a.mode, Mode::Persistent);
        assert_eq!(
            (a.cookie.name.as_str(), a.cookie.path.as_deref()),
            ("route", Some("/app"))
        );
        assert_eq!(
            (a.cookie.expires, a.cookie.max_age),
            (Some(172800), Some(0))
        );
        assert_eq!(a.cookie.samesite.as_deref(), Some("None"));
        assert!(a.cookie.secure && a.change_on_failure);
    }

    #[test]
    fn invalid_values_fall_back_with_a_warning() {
        let (a, d) = reader_with(&[("affinity", "ip")], parse);
        assert!(a.is_none());
        assert_eq!(d.len(), 1);
        let (a, d) = reader_with(
            &[
                ("affinity", "cookie"),
                ("affinity-mode", "sticky"),
                ("session-cookie-name", "a b"),
                ("session-cookie-expires", "017"),
                ("session-cookie-samesite", "maybe"),
            ],
            parse,
        );
        let a = a.unwrap();
        assert_eq!(
            (a.mode, a.cookie.name.as_str()),
            (Mode::Balanced, "INGRESSCOOKIE")
        );
        assert!(a.cookie.expires.is_none() && a.cookie.samesite.is_none());
        assert_eq!(d.len(), 4);
    }
}
