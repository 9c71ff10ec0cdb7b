//! ModSecurity (`enable-modsecurity`, `enable-owasp-core-rules`, `modsecurity-transaction-id`,
//! `modsecurity-snippet`; ingress-nginx `annotations/modsecurity` and the template's
//! `buildModSecurityForLocation`). The rules themselves run in libmodsecurity (`waf`); this
//! family reads the keys. A snippet is checked here on its own (Include limited to the shipped
//! files, then parsed by the engine): one the engine refuses leaves the Ingress out with the
//! engine's message. Only built with the `waf` feature; without it the keys keep the catalog's
//! fail-safe modes.

use super::template::Template;
use super::{Gate, KeySpec, Reader, Risk, Scope, Support};

const fn key(name: &'static str, risk: Risk, doc: &'static str) -> KeySpec {
    KeySpec::supported(name, Scope::Ingress, risk, doc)
}

pub const KEYS: &[KeySpec] = &[
    key("enable-modsecurity", Risk::Low, "ModSecurity (libmodsecurity 3) for every path of the Ingress, with ingress-nginx's default configuration (detection only); `false` turns off the ConfigMap's"),
    key("enable-owasp-core-rules", Risk::Low, "loads the OWASP Core Rule Set (Debian's modsecurity-crs 3.3; ingress-nginx ships CRS 4)"),
    key("modsecurity-transaction-id", Risk::High, "the transaction id ModSecurity logs, with nginx variables (`$request_id`, `$http_*`, ...)"),
    KeySpec {
        name: "modsecurity-snippet",
        scope: Scope::Ingress,
        risk: Risk::Critical,
        support: Support::Differs(
            "needs allow-snippet-annotations (ingress-nginx drops the snippet without it, pingress leaves the Ingress out); `Include` limited to the shipped rule and configuration files; `SecRemoteRules` refused",
        ),
        doc: "ModSecurity rules for the Ingress (replaces the default configuration unless the ConfigMap enables ModSecurity, as ingress-nginx)",
    },
];

/// The ModSecurity keys of one Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModSecurity {
    /// `enable-modsecurity`: `None` when absent or invalid (the ConfigMap decides).
    pub enable: Option<bool>,
    pub owasp: bool,
    pub transaction_id: Option<Template>,
    /// `modsecurity-snippet` as written (nginx-escaped).
    pub snippet: Option<Box<str>>,
}

pub fn parse(r: &mut Reader<'_>, gate: Gate) -> ModSecurity {
    let enable = match r.get("enable-modsecurity") {
        None => None,
        Some(v) => match super::parse_bool(v) {
            Some(b) => Some(b),
            None => {
                r.fallback("enable-modsecurity", v, "true or false", "the ConfigMap's");
                None
            }
        },
    };
    let owasp = r.bool_or("enable-owasp-core-rules", false);
    let transaction_id =
        r.get("modsecurity-transaction-id")
            .and_then(|v| match Template::parse_snippet(v, &[]) {
                Ok(t) => Some(t),
                Err(e) => {
                    r.fallback("modsecurity-transaction-id", v, &e, "none");
                    None
                }
            });
    let snippet = r.get("modsecurity-snippet").and_then(|text| {
        if !gate.allow_snippets {
            r.reject_because(
                "modsecurity-snippet",
                "SnippetRefused",
                "snippets are disabled: the ConfigMap's allow-snippet-annotations is false (ingress-nginx's default)",
            );
            return None;
        }
        match check_snippet(text) {
            Ok(()) => Some(text.into()),
            Err(e) => {
                r.reject_because("modsecurity-snippet", "ModSecurityRulesRefused", &e);
                None
            }
        }
    });
    ModSecurity {
        enable,
        owasp,
        transaction_id,
        snippet,
    }
}

/// A snippet on its own: prepared (Include, SecRemoteRules) and parsed by the engine.
pub fn check_snippet(text: &str) -> Result<(), String> {
    let prepared = crate::waf::prepare_snippet(text)?;
    crate::waf::RuleSet::compile(&prepared)
        .map(drop)
        .map_err(|e| format!("libmodsecurity refuses the rules: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_support::reader_with;

    fn gate(allow: bool) -> Gate {
        Gate {
            risk_level: Risk::Critical,
            allow_snippets: allow,
        }
    }

    fn rejection(d: &[crate::diagnostics::Diagnostic]) -> Option<&crate::diagnostics::Diagnostic> {
        d.iter()
            .find(|d| d.severity == crate::diagnostics::Severity::Rejected)
    }

    #[test]
    fn keys_read_as_ingress_nginx() {
        let (m, d) = reader_with(&[("enable-modsecurity", "true")], |r| parse(r, gate(true)));
        assert_eq!(m.enable, Some(true));
        assert!(d.is_empty());
        let (m, d) = reader_with(&[("enable-modsecurity", "maybe")], |r| parse(r, gate(true)));
        assert_eq!(m.enable, None);
        assert_eq!(d.len(), 1);
        let (m, d) = reader_with(
            &[
                ("enable-modsecurity", "false"),
                ("enable-owasp-core-rules", "true"),
                ("modsecurity-transaction-id", "modsecurity-$request_id"),
            ],
            |r| parse(r, gate(true)),
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(m.enable, Some(false));
        assert!(m.owasp);
        assert!(m.transaction_id.is_some());
    }

    #[test]
    fn a_snippet_needs_the_gate_and_must_parse() {
        let (_, d) = reader_with(&[("modsecurity-snippet", "SecRuleEngine On")], |r| {
            parse(r, gate(false))
        });
        assert_eq!(rejection(&d).map(|d| d.reason), Some("SnippetRefused"));
        let (_, d) = reader_with(&[("modsecurity-snippet", "Include /etc/passwd")], |r| {
            parse(r, gate(true))
        });
        let e = rejection(&d).unwrap();
        assert_eq!(e.reason, "ModSecurityRulesRefused");
        assert!(e.message.contains("/etc/passwd"), "{}", e.message);
        if crate::waf::AVAILABLE {
            let (_, d) = reader_with(&[("modsecurity-snippet", "SecRuleEngine Sideways")], |r| {
                parse(r, gate(true))
            });
            let e = rejection(&d).unwrap();
            assert!(
                e.message.contains("libmodsecurity refuses"),
                "{}",
                e.message
            );
            let (m, d) = reader_with(&[("modsecurity-snippet", "SecRuleEngine On")], |r| {
                parse(r, gate(true))
            });
            assert!(d.is_empty());
            assert_eq!(m.snippet.as_deref(), Some("SecRuleEngine On"));
        }
    }
}
