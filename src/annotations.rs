//! Typed view of an Ingress's annotations under the configured prefix.
//!
//! Values are strings parsed exactly as ingress-nginx parses them (Go `strconv.ParseBool`, ...).
//! This module only parses: everything after it takes typed values. The core issue supports
//! `use-regex`; every other key under the prefix is reported as not implemented (and ignored),
//! so nothing is silently dropped.

use std::collections::BTreeMap;

use crate::diagnostics::{Diagnostic, ObjectRef};

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The annotations pingress understands, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// `use-regex`: every path of the Ingress's hosts is matched as a regex.
    pub use_regex: bool,
}

/// Keys under the prefix that are implemented (used by the not-implemented diagnostic).
pub const IMPLEMENTED: &[&str] = &["use-regex"];

/// Parse the annotations of one Ingress. Never fails: ingress-nginx falls back to the default
/// for an invalid `use-regex`, so do we, with a warning.
pub fn parse(
    prefix: &str,
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    let mut out = IngressAnnotations::default();
    let Some(map) = annotations else {
        return out;
    };
    for (key, value) in map {
        let Some(name) = key
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            continue;
        };
        match name {
            "use-regex" => match parse_bool(value.trim()) {
                Some(b) => out.use_regex = b,
                None => diags.push(Diagnostic::warning(
                    object.clone(),
                    "InvalidAnnotationValue",
                    format!(
                        "{key}: {value:?} is not a boolean (expected true or false); using false"
                    ),
                )),
            },
            _ => diags.push(Diagnostic::warning(
                object.clone(),
                "AnnotationNotImplemented",
                format!("{key} is not implemented by this pingress version and is ignored"),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "tRue", "", " true", "2"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn use_regex_and_unknown_keys() {
        let o = ObjectRef::ingress("ns", "i");
        let mut d = Vec::new();
        let m: BTreeMap<String, String> = [
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
            ("nginx.ingress.kubernetes.io/limit-rps", "5"),
            ("other.io/x", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let a = parse("nginx.ingress.kubernetes.io", Some(&m), &o, &mut d);
        assert!(a.use_regex);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, "AnnotationNotImplemented");

        let m: BTreeMap<String, String> = [(
            "nginx.ingress.kubernetes.io/use-regex".to_string(),
            "yes".to_string(),
        )]
        .into();
        let mut d = Vec::new();
        assert!(!parse("nginx.ingress.kubernetes.io", Some(&m), &o, &mut d).use_regex);
        assert_eq!(d[0].reason, "InvalidAnnotationValue");
    }
}
