//! Typed view of an Ingress's annotations under the configured prefix.
//!
//! Each annotation family is a module under `annotations/` that declares its keys
//! ([`KeySpec`]: name, scope, risk, support, one-line doc) and parses them into a typed value
//! with the helpers of [`Reader`]. Values follow ingress-nginx's syntax (Go `ParseBool`, bare
//! integers, `1m` sizes, CIDR lists). Strings stop here: everything after takes typed values.
//!
//! What happens to a bad value follows ingress-nginx: where it rejects the Ingress,
//! [`Reader::reject`] makes the Ingress invalid (left out whole); where it silently falls back
//! to the default, [`Reader::fallback`] keeps the default and emits a Warning. Unknown keys under
//! the prefix and keys we never execute (snippets, ModSecurity, Lua) produce diagnostics;
//! annotations above the ConfigMap's `annotations-risk-level` make the Ingress invalid.

pub mod access;
pub mod backend;
pub mod catalog;
pub mod headers;
pub mod logging;
pub mod proxy;
pub mod rate_limit;
pub mod redirect;
pub mod regex_mode;
pub mod rewrite;
pub mod ssl;
pub mod upstream_tls;

use std::collections::BTreeMap;

use crate::diagnostics::{Diagnostic, ObjectRef};

/// Where an annotation takes effect (ingress-nginx's practice, see the reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every path of the Ingress carrying it.
    Ingress,
    /// The whole host (the oldest Ingress of the host decides).
    Host,
    /// The whole upstream (the oldest Ingress referencing the Service decides).
    Service,
}

/// ingress-nginx's annotation risk levels (`annotations-risk.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn parse(v: &str) -> Option<Risk> {
        match v.trim() {
            "Low" => Some(Risk::Low),
            "Medium" => Some(Risk::Medium),
            "High" => Some(Risk::High),
            "Critical" => Some(Risk::Critical),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "Low",
            Risk::Medium => "Medium",
            Risk::High => "High",
            Risk::Critical => "Critical",
        }
    }
}

/// How pingress supports a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Supported, with a documented difference.
    Differs(&'static str),
    /// Recognised but not implemented (yet): warned and ignored.
    NotImplemented,
    /// Never executed by design (snippets, Lua, ModSecurity): the Ingress is refused.
    Refused(&'static str),
}

/// One annotation key.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// Name without the prefix, e.g. `rewrite-target`.
    pub name: &'static str,
    pub scope: Scope,
    pub risk: Risk,
    pub support: Support,
    pub doc: &'static str,
}

/// The key tables of the family modules (each key declared by exactly one family).
fn family_keys() -> impl Iterator<Item = &'static KeySpec> {
    let families: [&'static [KeySpec]; 11] = [
        regex_mode::KEYS,
        rewrite::KEYS,
        redirect::KEYS,
        proxy::KEYS,
        rate_limit::KEYS,
        access::KEYS,
        backend::KEYS,
        headers::KEYS,
        logging::KEYS,
        ssl::KEYS,
        upstream_tls::KEYS,
    ];
    families.into_iter().flatten()
}

/// Every key: the families' keys, then catalog keys no family claims (not implemented or
/// refused). A key not listed here is unknown.
pub fn all_keys() -> &'static [KeySpec] {
    static ALL: std::sync::OnceLock<Vec<KeySpec>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v: Vec<KeySpec> = family_keys().copied().collect();
        for k in catalog::entries() {
            if !v.iter().any(|f| f.name == k.name) {
                v.push(k);
            }
        }
        v
    })
}

fn spec(name: &str) -> Option<&'static KeySpec> {
    all_keys().iter().find(|k| k.name == name)
}

/// The README's annotation reference, generated from the key tables (a test keeps the README
/// equal to it).
pub fn reference_markdown() -> String {
    let mut keys: Vec<&KeySpec> = all_keys().iter().collect();
    keys.sort_by_key(|k| k.name);
    let mut out = String::from(
        "| annotation | state | scope | risk | what it does / how pingress differs |\n| --- | --- | --- | --- | --- |\n",
    );
    for k in keys {
        let (state, note) = match k.support {
            Support::Supported => ("supported", k.doc.to_string()),
            Support::Differs(d) => ("differs", format!("{} ({d})", k.doc)),
            Support::NotImplemented => (
                "not implemented yet",
                "warned (AnnotationNotImplemented) and ignored".to_string(),
            ),
            Support::Refused(why) => ("refused", format!("the Ingress is rejected: {why}")),
        };
        let scope = match k.scope {
            Scope::Ingress => "Ingress",
            Scope::Host => "host",
            Scope::Service => "Service",
        };
        out.push_str(&format!(
            "| `{}` | {state} | {scope} | {} | {note} |\n",
            k.name,
            k.risk.as_str()
        ));
    }
    out
}

/// Parses the annotations of one Ingress; collects warnings and the first rejection.
pub struct Reader<'a> {
    prefix: &'a str,
    map: Option<&'a BTreeMap<String, String>>,
    object: &'a ObjectRef,
    diags: &'a mut Vec<Diagnostic>,
    rejection: Option<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub fn new(
        prefix: &'a str,
        map: Option<&'a BTreeMap<String, String>>,
        object: &'a ObjectRef,
        diags: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Reader {
            prefix,
            map,
            object,
            diags,
            rejection: None,
        }
    }

    /// The raw value of `name` (without prefix), trimmed; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let map = self.map?;
        // keys are few; avoid building the full key string
        map.iter()
            .find(|(k, _)| {
                k.strip_prefix(self.prefix)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|n| n == name)
            })
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, name)
    }

    /// Make the Ingress invalid: `name` has `value`, `expected` says what is accepted.
    pub fn reject(&mut self, name: &str, value: &str, expected: &str) {
        if self.rejection.is_none() {
            self.rejection = Some(Diagnostic::rejected(
                self.object.clone(),
                "InvalidAnnotationValue",
                format!(
                    "{}: {value:?} is invalid: expected {expected}",
                    self.key(name)
                ),
            ));
        }
    }

    /// Keep the default: `name` has an invalid `value` (ingress-nginx falls back silently).
    pub fn fallback(&mut self, name: &str, value: &str, expected: &str, default: &str) {
        self.diags.push(Diagnostic::warning(
            self.object.clone(),
            "InvalidAnnotationValue",
            format!(
                "{}: {value:?} is invalid (expected {expected}); using the default {default}",
                self.key(name)
            ),
        ));
    }

    pub fn warn(&mut self, reason: &'static str, message: String) {
        self.diags
            .push(Diagnostic::warning(self.object.clone(), reason, message));
    }

    /// A boolean (Go `ParseBool`); an invalid value falls back to `default` with a warning.
    pub fn bool_or(&mut self, name: &str, default: bool) -> bool {
        match self.get(name) {
            None => default,
            Some(v) => match parse_bool(v) {
                Some(b) => b,
                None => {
                    self.fallback(name, v, "true or false", &default.to_string());
                    default
                }
            },
        }
    }

    /// An integer (Go `Atoi`, no units); an invalid value falls back to `None` with a warning.
    pub fn int_or_default(&mut self, name: &str) -> Option<i64> {
        let v = self.get(name)?;
        match parse_int(v) {
            Some(n) => Some(n),
            None => {
                self.fallback(name, v, "an integer", "value");
                None
            }
        }
    }

    /// An integer that makes the Ingress invalid when it does not parse.
    pub fn int_strict(&mut self, name: &str) -> Option<i64> {
        let v = self.get(name)?;
        match parse_int(v) {
            Some(n) => Some(n),
            None => {
                self.reject(name, v, "an integer");
                None
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), Diagnostic> {
        match self.rejection {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.Atoi`: optional sign, decimal digits.
pub fn parse_int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The annotations pingress understands, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// `use-regex`: every path of the Ingress's hosts is matched as a regex.
    pub use_regex: bool,
    pub rewrite: rewrite::Rewrite,
    pub redirects: redirect::Redirects,
    pub proxy: proxy::ProxyAnnotations,
    pub rate_limits: rate_limit::RateLimits,
    pub access: access::Access,
    pub backend: backend::BackendAnnotations,
    /// `custom-headers` ConfigMap reference.
    pub custom_headers: Option<String>,
    /// `enable-access-log` (default true).
    pub access_log: bool,
    /// `ssl-redirect`, `force-ssl-redirect`, `preserve-trailing-slash`.
    pub ssl: ssl::SslAnnotations,
    /// `backend-protocol`, `proxy-ssl-*`.
    pub upstream_tls: upstream_tls::UpstreamTlsAnnotations,
}

/// Parse the annotations of one Ingress. `Err` when the Ingress must be left out.
pub fn parse(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
    risk_level: Risk,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Result<IngressAnnotations, Diagnostic> {
    check_keys(prefix, annotations, risk_level, object, diags)?;
    let mut r = Reader::new(prefix, annotations, object, diags);
    let out = IngressAnnotations {
        use_regex: regex_mode::parse(&mut r),
        rewrite: rewrite::parse(&mut r),
        redirects: redirect::parse(&mut r),
        proxy: proxy::parse(&mut r),
        rate_limits: rate_limit::parse(&mut r),
        access: access::parse(&mut r),
        backend: backend::parse(&mut r),
        custom_headers: headers::parse(&mut r),
        access_log: logging::parse(&mut r),
        ssl: ssl::parse(&mut r),
        upstream_tls: upstream_tls::parse(&mut r),
    };
    r.finish()?;
    Ok(out)
}

/// Unknown, refused, not-implemented and too-risky keys.
fn check_keys(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
    risk_level: Risk,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), Diagnostic> {
    let Some(map) = annotations else {
        return Ok(());
    };
    for key in map.keys() {
        let Some(name) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let Some(spec) = spec(name) else {
            diags.push(Diagnostic::warning(
                object.clone(),
                "UnknownAnnotation",
                format!("{key} is not an ingress-nginx annotation known to pingress; ignored"),
            ));
            continue;
        };
        if spec.risk > risk_level {
            return Err(Diagnostic::rejected(
                object.clone(),
                "AnnotationRiskTooHigh",
                format!(
                    "{key} has risk level {} above the allowed annotations-risk-level {}",
                    spec.risk.as_str(),
                    risk_level.as_str()
                ),
            ));
        }
        match spec.support {
            Support::Refused(why) => {
                return Err(Diagnostic::rejected(
                    object.clone(),
                    "AnnotationRefused",
                    format!("{key} is never executed by pingress ({why})"),
                ))
            }
            Support::NotImplemented => diags.push(Diagnostic::warning(
                object.clone(),
                "AnnotationNotImplemented",
                format!("{key} is not implemented by this pingress version and is ignored"),
            )),
            Support::Supported | Support::Differs(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Run a family parser on `kv` (names without prefix): its value and the diagnostics.
    pub fn reader_with<T>(
        kv: &[(&str, &str)],
        f: impl FnOnce(&mut Reader<'_>) -> T,
    ) -> (T, Vec<Diagnostic>) {
        let o = ObjectRef::ingress("ns", "i");
        let m: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (format!("p/{k}"), v.to_string()))
            .collect();
        let mut d = Vec::new();
        let mut r = Reader::new("p", Some(&m), &o, &mut d);
        let out = f(&mut r);
        if let Some(rej) = r.rejection.take() {
            d.push(rej);
        }
        (out, d)
    }

    /// Whether the family parser rejects the Ingress for `kv`.
    pub fn rejects<T>(kv: &[(&str, &str)], f: impl FnOnce(&mut Reader<'_>) -> T) -> bool {
        let (_, d) = reader_with(kv, f);
        d.iter()
            .any(|d| d.severity == crate::diagnostics::Severity::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_risks_agree_with_the_catalog() {
        for k in family_keys() {
            if catalog::entries().any(|c| c.name == k.name) {
                assert_eq!(k.risk, catalog::risk_of(k.name), "{}", k.name);
            }
        }
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect()
    }

    fn run(
        kv: &[(&str, &str)],
        risk: Risk,
    ) -> (Result<IngressAnnotations, Diagnostic>, Vec<Diagnostic>) {
        let o = ObjectRef::ingress("ns", "i");
        let m = map(kv);
        let mut d = Vec::new();
        let r = parse("nginx.ingress.kubernetes.io", Some(&m), risk, &o, &mut d);
        (r, d)
    }

    #[test]
    fn go_parse_bool_and_atoi() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "tRue", "", " true", "2"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
        assert_eq!(parse_int("60"), Some(60));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("+5"), Some(5));
        for bad in ["60s", "", "1.5", " 1", "-", "1e3"] {
            assert_eq!(parse_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_keys_warn_snippets_refuse() {
        let (r, d) = run(&[("no-such-thing", "1")], Risk::High);
        assert!(r.is_ok());
        assert_eq!(d[0].reason, "UnknownAnnotation");
        let (r, _) = run(
            &[("configuration-snippet", "more_set_headers x;")],
            Risk::High,
        );
        assert_eq!(r.unwrap_err().reason, "AnnotationRiskTooHigh");
        let (r, _) = run(&[("configuration-snippet", "x")], Risk::Critical);
        assert_eq!(r.unwrap_err().reason, "AnnotationRefused");
        let (r, _) = run(&[("enable-modsecurity", "true")], Risk::High);
        assert_eq!(r.unwrap_err().reason, "AnnotationRefused");
        let (r, d) = run(&[("enable-cors", "true")], Risk::High);
        assert!(r.is_ok());
        assert_eq!(d[0].reason, "AnnotationNotImplemented");
    }

    #[test]
    fn other_prefixes_are_ignored() {
        let o = ObjectRef::ingress("ns", "i");
        let m: BTreeMap<String, String> =
            [("example.com/use-regex".to_string(), "true".to_string())].into();
        let mut d = Vec::new();
        let a = parse(
            "nginx.ingress.kubernetes.io",
            Some(&m),
            Risk::High,
            &o,
            &mut d,
        )
        .unwrap();
        assert!(!a.use_regex);
        assert!(d.is_empty());
    }

    #[test]
    fn every_key_is_listed_once() {
        let mut names: Vec<_> = family_keys().map(|k| k.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a key is declared twice");
    }
}
