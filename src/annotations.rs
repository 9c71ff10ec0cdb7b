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
pub mod affinity;
pub mod auth;
pub mod auth_tls;
pub mod backend;
pub mod balance;
pub mod canary;
pub mod catalog;
pub mod cors;
pub mod headers;
pub mod logging;
pub mod mirror;
pub mod modsecurity;
pub mod proxy;
pub mod rate_limit;
pub mod redirect;
pub mod regex_mode;
pub mod rewrite;
pub mod snippet;
pub mod ssl;
pub mod template;
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
    /// Recognised but not implemented (yet): what happens to an Ingress carrying it.
    NotImplemented(FailMode),
    /// Never executed by design (snippets, Lua, ModSecurity): the Ingress is refused.
    Refused(&'static str),
}

/// What a key that pingress does not implement yet does to the Ingress carrying it, chosen by
/// what ignoring it would do (`../shared/DESIGN.md`, "Where a user mistake goes"). Ignoring a
/// security key would open an app, so that family can never be `Ignore`; a test over the
/// catalog keeps it so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Ignored with a Warning: ignoring it changes no one's access and no routing (why).
    Ignore(&'static str),
    /// Every path of the Ingress answers 503 until the key is implemented; never served open.
    FailClosed,
    /// The Ingress is left out of the table; other Ingresses keep serving.
    LeaveOut,
    /// `modsecurity-snippet`: left out when the snippet turns the engine to blocking
    /// (`SecRuleEngine On`); otherwise ingress-nginx's ModSecurity only detects, so ignored.
    LeaveOutIfWafBlocking,
}

impl FailMode {
    /// The metric label and README word of the mode a key has on one Ingress.
    pub fn label(self) -> &'static str {
        match self {
            FailMode::Ignore(_) => "ignore",
            FailMode::FailClosed => "fail-closed",
            _ => "leave-out",
        }
    }

    /// README text.
    pub fn describe(self) -> String {
        match self {
            FailMode::Ignore(why) => format!("ignored with a warning: {why}"),
            FailMode::FailClosed => {
                "**fail closed**: every path of the Ingress answers 503 (never served open)".into()
            }
            FailMode::LeaveOut => "**left out**: the Ingress is not served".into(),
            FailMode::LeaveOutIfWafBlocking => "**left out** when it sets `SecRuleEngine On` (blocking); otherwise ignored with a warning, as ingress-nginx's default ModSecurity only detects".into(),
        }
    }
}

/// Settings that decide how annotations are read (from the ConfigMap and the flags).
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    /// ConfigMap `annotations-risk-level`.
    pub risk_level: Risk,
    /// ConfigMap `allow-snippet-annotations` (default false, as ingress-nginx since 1.9).
    pub allow_snippets: bool,
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

impl KeySpec {
    /// A key pingress supports as ingress-nginx does.
    pub const fn supported(
        name: &'static str,
        scope: Scope,
        risk: Risk,
        doc: &'static str,
    ) -> Self {
        KeySpec {
            name,
            scope,
            risk,
            support: Support::Supported,
            doc,
        }
    }
}

/// The key tables of the family modules (each key declared by exactly one family).
fn family_keys() -> impl Iterator<Item = &'static KeySpec> {
    let families: [&'static [KeySpec]; 20] = [
        // without the engine the keys keep the catalog's fail-safe modes
        if crate::waf::AVAILABLE {
            modsecurity::KEYS
        } else {
            &[]
        },
        auth::KEYS,
        affinity::KEYS,
        balance::KEYS,
        canary::KEYS,
        cors::KEYS,
        auth_tls::KEYS,
        regex_mode::KEYS,
        rewrite::KEYS,
        redirect::KEYS,
        proxy::KEYS,
        rate_limit::KEYS,
        access::KEYS,
        backend::KEYS,
        headers::KEYS,
        logging::KEYS,
        mirror::KEYS,
        snippet::KEYS,
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

pub fn key_spec(name: &str) -> Option<&'static KeySpec> {
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
            Support::NotImplemented(mode) => ("not implemented yet", mode.describe()),
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

    /// Whether `name` is on the Ingress at all (an empty value included).
    pub fn is_set(&self, name: &str) -> bool {
        self.map.is_some_and(|m| {
            m.keys().any(|k| {
                k.strip_prefix(self.prefix)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|n| n == name)
            })
        })
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

    /// Make the Ingress invalid with this reason and message (the key is prepended).
    pub fn reject_because(&mut self, name: &str, reason: &'static str, message: &str) {
        if self.rejection.is_none() {
            self.rejection = Some(Diagnostic::rejected(
                self.object.clone(),
                reason,
                format!("{}: {message}", self.key(name)),
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

pub use crate::values::{parse_bool, parse_int};

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
    /// `enable-global-auth`, and the security keys that make the Ingress fail closed.
    pub auth: auth::AuthAnnotations,
    /// `auth-tls-*` (client certificates; host scope).
    pub auth_tls: Option<auth_tls::AuthTlsSpec>,
    /// `enable-cors`, `cors-*`.
    pub cors: Option<cors::Cors>,
    /// `canary: "true"` and its traffic-shaping keys.
    pub canary: Option<canary::Canary>,
    /// `affinity: cookie` and the `session-cookie-*` keys.
    pub affinity: Option<affinity::Affinity>,
    /// `affinity-canary-behavior` (read on canary Ingresses).
    pub affinity_canary_behavior: affinity::CanaryBehavior,
    /// `upstream-hash-by` (+ subset).
    pub hash_by: Option<balance::HashBy>,
    /// `load-balance` (`None`: the ConfigMap's).
    pub load_balance: Option<balance::LoadBalance>,
    /// `mirror-target` and its keys.
    pub mirror: Option<mirror::MirrorSpec>,
    /// `configuration-snippet`, `server-snippet`.
    pub snippets: snippet::Snippets,
    /// `enable-modsecurity` and its keys (read only with the `waf` feature).
    pub modsecurity: modsecurity::ModSecurity,
}

/// Parse the annotations of one Ingress. `Err` when the Ingress must be left out.
pub fn parse(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
    gate: Gate,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Result<IngressAnnotations, Diagnostic> {
    let fail_closed = check_keys(prefix, annotations, gate, object, diags)?;
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
        auth: auth::parse(&mut r, fail_closed),
        auth_tls: None,
        cors: cors::parse(&mut r),
        canary: canary::parse(&mut r),
        affinity: affinity::parse(&mut r),
        affinity_canary_behavior: affinity::canary_behavior(&mut r),
        hash_by: balance::parse(&mut r),
        load_balance: balance::parse_load_balance(&mut r),
        mirror: mirror::parse(&mut r),
        snippets: snippet::parse(&mut r, gate),
        modsecurity: if crate::waf::AVAILABLE {
            modsecurity::parse(&mut r, gate)
        } else {
            Default::default()
        },
    };
    if out.use_regex
        && out
            .affinity
            .as_ref()
            .is_some_and(|a| a.cookie.path.is_none())
    {
        r.warn(
            "AffinityCookiePath",
            format!(
                "session-cookie-path should be set when use-regex is true: the cookie Path is the Ingress path as written ({} is a regex)",
                r.key("use-regex")
            ),
        );
    }
    let mut out = out;
    match auth_tls::parse(&mut r) {
        Ok(spec) => out.auth_tls = spec,
        Err(m) => {
            r.warn(
                "InvalidAuthAnnotation",
                format!("{m}: every path of this Ingress answers 503 (fail closed, never open)"),
            );
            out.auth.invalid.push(m);
        }
    }
    r.finish()?;
    Ok(out)
}

/// The annotation keys of one Ingress under `prefix`, with their spec (`None`: unknown key).
fn keys_of<'m>(
    prefix: &'m str,
    map: &'m BTreeMap<String, String>,
) -> impl Iterator<Item = (&'m str, &'m str, Option<&'static KeySpec>)> + 'm {
    map.iter().filter_map(move |(key, value)| {
        let name = key.strip_prefix(prefix)?.strip_prefix('/')?;
        Some((key.as_str(), value.as_str(), key_spec(name)))
    })
}

/// Whether a `modsecurity-snippet` leaves the engine blocking: its last `SecRuleEngine`
/// directive (names and values are case-insensitive in ModSecurity) says `On`.
fn waf_blocking(snippet: &str) -> bool {
    let mut on = false;
    for line in snippet.lines() {
        let mut words = line.split_whitespace();
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("SecRuleEngine"))
        {
            on = words.next().is_some_and(|w| w.eq_ignore_ascii_case("On"));
        }
    }
    on
}

/// What a not-implemented key does on this Ingress (never a conditional mode).
fn effective_mode(mode: FailMode, value: &str) -> FailMode {
    match mode {
        FailMode::LeaveOutIfWafBlocking if waf_blocking(value) => FailMode::LeaveOut,
        FailMode::LeaveOutIfWafBlocking => {
            FailMode::Ignore("WAF rules not evaluated; detection-only in ingress-nginx too")
        }
        m => m,
    }
}

/// The keys of one Ingress that pingress does not implement yet, each with the mode it takes
/// on this Ingress (`Ignore`, `FailClosed` or `LeaveOut`), in key order. The mode does not
/// depend on whether the value is valid: an empty or invalid `auth-url` still fails closed.
pub fn unsupported(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Vec<(&'static str, FailMode)> {
    let Some(map) = annotations else {
        return Vec::new();
    };
    keys_of(prefix, map)
        .filter_map(|(_, value, spec)| match spec?.support {
            Support::NotImplemented(mode) => Some((spec?.name, effective_mode(mode, value))),
            _ => None,
        })
        .collect()
}

/// Unknown, refused, not-implemented and too-risky keys. Returns the not-implemented keys
/// that make the Ingress fail closed; `Err` when the Ingress must be left out.
fn check_keys(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
    gate: Gate,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<&'static str>, Diagnostic> {
    let Some(map) = annotations else {
        return Ok(Vec::new());
    };
    for (key, _, spec) in keys_of(prefix, map) {
        let Some(spec) = spec else {
            diags.push(Diagnostic::warning(
                object.clone(),
                "UnknownAnnotation",
                format!("{key} is not an ingress-nginx annotation known to pingress; ignored"),
            ));
            continue;
        };
        if spec.risk > gate.risk_level {
            return Err(Diagnostic::rejected(
                object.clone(),
                "AnnotationRiskTooHigh",
                format!(
                    "{key} has risk level {} above the allowed annotations-risk-level {}",
                    spec.risk.as_str(),
                    gate.risk_level.as_str()
                ),
            ));
        }
        if let Support::Refused(why) = spec.support {
            return Err(Diagnostic::rejected(
                object.clone(),
                "AnnotationRefused",
                format!("{key} is never executed by pingress ({why})"),
            ));
        }
    }
    let mut fail_closed = Vec::new();
    let mut left_out = Vec::new();
    for (name, mode) in unsupported(prefix, annotations) {
        match mode {
            FailMode::Ignore(why) => diags.push(Diagnostic::warning(
                object.clone(),
                "AnnotationNotImplemented",
                format!(
                    "{prefix}/{name} is not implemented by this pingress version and is ignored ({why})"
                ),
            )),
            FailMode::FailClosed => fail_closed.push(name),
            _ => left_out.push(name),
        }
    }
    if !left_out.is_empty() {
        let keys = left_out.join(", ");
        let message = format!("{keys} not implemented by this pingress version: the Ingress is left out rather than served differently");
        return Err(Diagnostic::rejected(
            object.clone(),
            "AnnotationLeftOut",
            message,
        ));
    }
    if !fail_closed.is_empty() {
        diags.push(Diagnostic::warning(
            object.clone(),
            "AnnotationFailClosed",
            format!(
                "{} not implemented by this pingress version: every path of this Ingress answers 503 (never served without it)",
                fail_closed.join(", ")
            ),
        ));
    }
    Ok(fail_closed)
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
        run_gate(
            kv,
            Gate {
                risk_level: risk,
                allow_snippets: false,
            },
        )
    }

    fn run_gate(
        kv: &[(&str, &str)],
        gate: Gate,
    ) -> (Result<IngressAnnotations, Diagnostic>, Vec<Diagnostic>) {
        let o = ObjectRef::ingress("ns", "i");
        let m = map(kv);
        let mut d = Vec::new();
        let r = parse("nginx.ingress.kubernetes.io", Some(&m), gate, &o, &mut d);
        (r, d)
    }

    #[test]
    fn security_keys_fail_closed_whatever_their_value() {
        // not implemented: digest
        for kv in [
            &[("auth-type", "digest"), ("auth-secret", "s")][..],
            &[
                ("auth-type", "digest"),
                ("auth-secret", "other/s"),
                ("auth-realm", "r"),
            ],
        ] {
            let (r, d) = run(kv, Risk::High);
            let a = r.unwrap();
            assert!(!a.auth.fail_closed.is_empty(), "{kv:?}");
            assert!(a.auth.fail_closed_reason().is_some());
            assert!(
                d.iter().any(|d| d.reason == "AnnotationFailClosed"
                    && d.message.contains(kv[0].0)
                    && d.message.contains("503")),
                "{d:?}"
            );
            assert!(!d.iter().any(|d| d.reason == "AnnotationNotImplemented"));
        }
        // implemented, but the value is invalid: fail closed as well
        for kv in [
            &[("auth-url", "::not a url::")][..],
            &[("auth-url", "http://x/"), ("auth-method", "FETCH")],
            &[("auth-type", "basic")],
            &[("auth-tls-secret", "")],
            &[
                ("auth-tls-secret", "ns/ca"),
                ("auth-tls-verify-client", "sometimes"),
            ],
        ] {
            let (r, d) = run(kv, Risk::High);
            let a = r.unwrap();
            assert!(a.auth.fail_closed_reason().is_some(), "{kv:?}");
            assert!(
                d.iter()
                    .any(|d| d.reason == "InvalidAuthAnnotation" && d.message.contains("503")),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_canary_is_parsed_and_an_invalid_canary_value_is_left_out() {
        for kv in [
            &[("canary", "true"), ("canary-weight", "10")][..],
            &[("canary", "true"), ("canary-by-header", "X-Canary")],
            &[("canary", "true")],
        ] {
            let (r, _) = run(kv, Risk::High);
            assert!(r.unwrap().canary.is_some(), "{kv:?}");
        }
        let (r, _) = run(&[("canary", "yes"), ("canary-weight", "100")], Risk::High);
        assert_eq!(r.unwrap_err().reason, "InvalidAnnotationValue");
        // ingress-nginx: canary settings without canary: "true" are dropped, a normal Ingress
        for kv in [
            &[("canary", "false"), ("canary-weight", "10")][..],
            &[("canary-weight", "10")],
        ] {
            let (r, d) = run(kv, Risk::High);
            assert!(r.unwrap().canary.is_none(), "{kv:?}");
            assert!(d.iter().all(|d| d.reason == "CanaryNotEnabled"));
        }
    }

    /// A build without the `waf` feature: the keys keep the catalog's fail-safe modes.
    #[cfg(not(feature = "waf"))]
    #[test]
    fn waf_is_left_out_only_when_blocking() {
        let (r, d) = run(
            &[
                ("enable-modsecurity", "true"),
                ("enable-owasp-core-rules", "true"),
            ],
            Risk::High,
        );
        assert!(r.is_ok());
        assert!(d.iter().all(
            |d| d.reason == "AnnotationNotImplemented" && d.message.contains("detection-only")
        ));
        let detect = "SecRuleEngine On\nSecRuleRemoveById 920350\nsecruleengine DetectionOnly";
        let (r, _) = run(
            &[
                ("enable-modsecurity", "true"),
                ("modsecurity-snippet", detect),
            ],
            Risk::Critical,
        );
        assert!(r.is_ok());
        for blocking in [
            "SecRuleEngine On",
            "  secruleengine  on  \nSecAuditEngine Off",
        ] {
            let (r, _) = run(
                &[
                    ("enable-modsecurity", "true"),
                    ("modsecurity-snippet", blocking),
                ],
                Risk::Critical,
            );
            assert_eq!(r.unwrap_err().reason, "AnnotationLeftOut", "{blocking:?}");
        }
        // a Critical snippet is still refused first under the default risk level
        let (r, _) = run(&[("modsecurity-snippet", "SecRuleEngine On")], Risk::High);
        assert_eq!(r.unwrap_err().reason, "AnnotationRiskTooHigh");
    }

    /// With the engine the keys are read, not reported as unimplemented.
    #[cfg(feature = "waf")]
    #[test]
    fn waf_keys_are_read_with_the_engine() {
        let (r, d) = run(
            &[
                ("enable-modsecurity", "true"),
                ("enable-owasp-core-rules", "true"),
            ],
            Risk::High,
        );
        let m = r.unwrap().modsecurity;
        assert_eq!((m.enable, m.owasp), (Some(true), true));
        assert!(d.is_empty(), "{d:?}");
        let (r, _) = run(&[("modsecurity-snippet", "SecRuleEngine On")], Risk::High);
        assert_eq!(r.unwrap_err().reason, "AnnotationRiskTooHigh");
    }

    #[test]
    fn ssl_passthrough_is_read_as_a_host_setting() {
        let (r, d) = run(&[("ssl-passthrough", "true")], Risk::High);
        assert!(r.unwrap().ssl.passthrough);
        assert!(d.is_empty(), "{d:?}");
        let (r, _) = run(&[("ssl-passthrough", "false")], Risk::High);
        assert!(!r.unwrap().ssl.passthrough);
    }

    #[test]
    fn unsupported_lists_each_key_with_its_mode_on_this_ingress() {
        let m = map(&[
            ("auth-tls-secret", "x"),
            ("canary", "true"),
            ("auth-url", "http://x/"),
            ("proxy-buffering", "on"),
            ("rewrite-target", "/"),
        ]);
        let got: Vec<_> = unsupported("nginx.ingress.kubernetes.io", Some(&m))
            .into_iter()
            .map(|(k, m)| (k, m.label()))
            .collect();
        assert_eq!(got, vec![("proxy-buffering", "ignore")]);
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
        // Critical risk, but allow-snippet-annotations is false
        let (r, _) = run(
            &[("configuration-snippet", "more_set_headers 'X: 1';")],
            Risk::Critical,
        );
        assert_eq!(r.unwrap_err().reason, "SnippetRefused");
        let allowed = Gate {
            risk_level: Risk::Critical,
            allow_snippets: true,
        };
        let (r, _) = run_gate(
            &[("configuration-snippet", "more_set_headers 'X: 1';")],
            allowed,
        );
        assert!(r.unwrap().snippets.location.is_some());
        let (r, _) = run_gate(&[("configuration-snippet", "x")], allowed);
        let e = r.unwrap_err();
        assert_eq!(e.reason, "SnippetRefused");
        assert!(e.message.contains("line 1"), "{}", e.message);
        let (r, _) = run_gate(
            &[("server-snippet", "location /a { proxy_pass http://x; }")],
            allowed,
        );
        assert!(r.unwrap_err().message.contains("line 1: proxy_pass"));
        let (r, _) = run(&[("fastcgi-index", "index.php")], Risk::High);
        assert_eq!(r.unwrap_err().reason, "AnnotationRefused");
        let (r, d) = run(&[("proxy-buffering", "on")], Risk::High);
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
            Gate {
                risk_level: Risk::High,
                allow_snippets: false,
            },
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
