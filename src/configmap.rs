//! The controller ConfigMap (`--configmap ns/name`): ingress-nginx's flat string map parsed
//! into typed settings with ingress-nginx's defaults. Pure. A bad value keeps the default and
//! yields a Warning on the ConfigMap; a key pingress does not implement is reported once.
//!
//! Each feature adds its keys here: a field with its default in `Default`, and a match arm in
//! [`parse`]. The table carries the result (`RouteTable::config`), so a request sees one
//! consistent version.

pub mod tls;

use std::collections::BTreeMap;

use crate::annotations::{parse_bool, parse_int, Risk};
use crate::diagnostics::{Diagnostic, ObjectRef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `annotations-risk-level` (default High): annotations above it make an Ingress invalid.
    pub annotations_risk_level: Risk,
    /// TLS keys: redirects, HSTS, listener protocols/ciphers (see [`tls`]).
    pub tls: tls::TlsConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            annotations_risk_level: Risk::High,
            tls: tls::TlsConfig::default(),
        }
    }
}

/// Keys read by this version (for the not-implemented report and the README).
pub const KEYS: &[&str] = &["annotations-risk-level", "allow-snippet-annotations"];

struct Ctx<'a> {
    object: &'a ObjectRef,
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn bad(&mut self, key: &str, value: &str, expected: &str) {
        self.diags.push(Diagnostic::warning(
            self.object.clone(),
            "InvalidConfigMapValue",
            format!("{key}: {value:?} is invalid (expected {expected}); using the default"),
        ));
    }

    #[allow(dead_code)]
    fn bool(&mut self, key: &str, value: &str, into: &mut bool) {
        match parse_bool(value.trim()) {
            Some(b) => *into = b,
            None => self.bad(key, value, "true or false"),
        }
    }

    #[allow(dead_code)]
    fn int(&mut self, key: &str, value: &str, into: &mut i64) {
        match parse_int(value.trim()) {
            Some(n) => *into = n,
            None => self.bad(key, value, "an integer"),
        }
    }
}

/// Parse the ConfigMap's `data`.
pub fn parse(
    data: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> ControllerConfig {
    let mut c = ControllerConfig::default();
    let Some(data) = data else { return c };
    let mut cx = Ctx { object, diags };
    for (key, value) in data {
        match key.as_str() {
            "annotations-risk-level" => match Risk::parse(value) {
                Some(r) => c.annotations_risk_level = r,
                None => cx.bad(key, value, "Low, Medium, High or Critical"),
            },
            // Snippets are never executed, whatever this says; accepted for compatibility.
            "allow-snippet-annotations" => {}
            k if tls::KEYS.contains(&k) => tls::parse_key(&mut c.tls, k, value, object, cx.diags),
            _ => cx.diags.push(Diagnostic::warning(
                object.clone(),
                "ConfigMapKeyNotImplemented",
                format!("{key} is not implemented by this pingress version and is ignored"),
            )),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let mut d = Vec::new();
        assert_eq!(parse(None, &o, &mut d), ControllerConfig::default());
        let m: BTreeMap<String, String> = [
            ("annotations-risk-level", "Critical"),
            ("allow-snippet-annotations", "true"),
            ("worker-processes", "4"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = parse(Some(&m), &o, &mut d);
        assert_eq!(c.annotations_risk_level, Risk::Critical);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, "ConfigMapKeyNotImplemented");
        let m: BTreeMap<String, String> =
            [("annotations-risk-level".to_string(), "Extreme".to_string())].into();
        let mut d = Vec::new();
        assert_eq!(
            parse(Some(&m), &o, &mut d).annotations_risk_level,
            Risk::High
        );
        assert_eq!(d[0].reason, "InvalidConfigMapValue");
    }
}
