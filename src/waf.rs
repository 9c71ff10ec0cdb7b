//! The web application firewall: ModSecurity rules run by libmodsecurity 3 (the engine
//! ingress-nginx embeds), with the OWASP Core Rule Set from Debian's `modsecurity-crs`.
//!
//! This module turns a location's WAF configuration into one rules text ([`rules_text`]: the
//! default configuration, the CRS loader and the snippets, in ingress-nginx's order), compiles
//! each distinct text once ([`ruleset`], shared by every route and kept across table swaps while
//! any table uses it) and hands out per-request transactions ([`Tx`]). Built without the `waf`
//! cargo feature, [`AVAILABLE`] is false, nothing here is reachable and the WAF keys keep their
//! fail-safe modes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

#[cfg(feature = "waf")]
mod engine;
#[cfg(feature = "waf")]
pub use engine::{HeaderRef, Intervention, RequestHead, RuleSet, Tx};

#[cfg(not(feature = "waf"))]
mod engine_absent;
#[cfg(not(feature = "waf"))]
pub use engine_absent::{HeaderRef, Intervention, RequestHead, RuleSet, Tx};

/// Whether this build has the engine.
pub const AVAILABLE: bool = cfg!(feature = "waf");

/// ingress-nginx's `/etc/nginx/modsecurity/modsecurity.conf`, as pingress ships it.
pub const DEFAULT_CONF: &str = include_str!("waf/modsecurity.conf");

/// Where Debian's `modsecurity-crs` installs the rule set and its setup.
pub const CRS_SETUP_DIR: &str = "/etc/modsecurity/crs";
pub const CRS_RULES_DIR: &str = "/usr/share/modsecurity-crs/rules";

/// ingress-nginx's paths, as user snippets name them.
const NGINX_CONF: &str = "/etc/nginx/modsecurity/modsecurity.conf";
const NGINX_CRS: &str = "/etc/nginx/owasp-modsecurity-crs";

/// The CRS loader, ingress-nginx's `nginx-modsecurity.conf` for Debian's layout: setup, the
/// exclusions before, the rules in file order, the exclusions after.
pub fn crs_loader() -> String {
    format!(
        "Include {CRS_SETUP_DIR}/crs-setup.conf\n\
         Include {CRS_SETUP_DIR}/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf\n\
         Include {CRS_RULES_DIR}/*.conf\n\
         Include {CRS_SETUP_DIR}/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf\n"
    )
}

/// One piece of a location's rules, in the order ingress-nginx's template writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// `modsecurity_rules_file /etc/nginx/modsecurity/modsecurity.conf`.
    DefaultConf,
    /// `modsecurity_rules_file .../nginx-modsecurity.conf` (the OWASP CRS).
    Crs,
    /// `modsecurity_rules '...'` (a ConfigMap or annotation `modsecurity-snippet`).
    Snippet(&'a str),
}

/// The rules text of a location; `Err` names a snippet line pingress refuses.
pub fn rules_text(parts: &[Part<'_>]) -> Result<String, String> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::DefaultConf => out.push_str(&default_conf()),
            Part::Crs => out.push_str(&crs_loader()),
            Part::Snippet(s) => out.push_str(&prepare_snippet(s)?),
        }
        out.push('\n');
    }
    Ok(out)
}

/// The default configuration with its audit log on pingress's writer.
fn default_conf() -> String {
    DEFAULT_CONF.replace(
        "SecAuditLog /dev/stdout",
        &format!("SecAuditLog {}", audit::stdout()),
    )
}

/// nginx's unescaping of a quoted string (`modsecurity_rules '...'`): `\"`, `\'`, `\\` lose
/// their backslash, `\t`, `\r`, `\n` become the characters; any other backslash stays (a rule's
/// line continuation `\` + newline among them).
pub fn nginx_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        let unescaped = match (c, it.peek()) {
            ('\\', Some(&q @ ('"' | '\'' | '\\'))) => Some(q),
            ('\\', Some('t')) => Some('\t'),
            ('\\', Some('r')) => Some('\r'),
            ('\\', Some('n')) => Some('\n'),
            _ => None,
        };
        match unescaped {
            Some(u) => {
                out.push(u);
                it.next();
            }
            None => out.push(c),
        }
    }
    out
}

/// What an `Include` path of a snippet loads: ingress-nginx's shipped files map to pingress's
/// (the default configuration inline, the CRS from Debian's layout); Debian's CRS files may be
/// named directly. Anything else is refused.
fn include(path: &str) -> Result<String, String> {
    let path = path.trim_matches(|c| c == '"' || c == '\'');
    if path.contains("..") {
        return Err(format!("Include {path:?}: a path with .. is refused"));
    }
    if path == NGINX_CONF {
        return Ok(default_conf());
    }
    if let Some(rest) = path.strip_prefix(NGINX_CRS) {
        return match rest {
            "/nginx-modsecurity.conf" => Ok(crs_loader()),
            "/crs-setup.conf" => Ok(format!("Include {CRS_SETUP_DIR}/crs-setup.conf\n")),
            r if r.starts_with("/rules/REQUEST-900") || r.starts_with("/rules/RESPONSE-999") => Ok(
                format!("Include {CRS_SETUP_DIR}/{}\n", &r["/rules/".len()..]),
            ),
            r if r.starts_with("/rules/") => Ok(format!(
                "Include {CRS_RULES_DIR}/{}\n",
                &r["/rules/".len()..]
            )),
            _ => Err(format!(
                "Include {path:?}: not shipped with pingress (CRS plugins are not installed)"
            )),
        };
    }
    if path.starts_with(&format!("{CRS_SETUP_DIR}/"))
        || path.starts_with(&format!("{CRS_RULES_DIR}/"))
    {
        return Ok(format!("Include {path}\n"));
    }
    Err(format!(
        "Include {path:?}: only the shipped rule and configuration files may be included ({NGINX_CONF}, {NGINX_CRS}/..., {CRS_SETUP_DIR}/..., {CRS_RULES_DIR}/...)"
    ))
}

/// A `modsecurity-snippet` as libmodsecurity gets it: nginx-unescaped, `Include` limited to the
/// shipped files, `SecAuditLog /dev/stdout` on pingress's writer, `SecRemoteRules` refused
/// (no network fetch while a table compiles).
pub fn prepare_snippet(raw: &str) -> Result<String, String> {
    let text = nginx_unescape(raw);
    let mut out = String::with_capacity(text.len() + 64);
    let mut continued = false;
    for (n, line) in text.lines().enumerate() {
        let directive_line = !continued;
        continued = line.trim_end().ends_with('\\');
        let mut words = line.split_whitespace();
        let first = if directive_line { words.next() } else { None };
        let is = |w: &str| first.is_some_and(|f| f.eq_ignore_ascii_case(w));
        if is("Include") || is("IncludeOptional") {
            let path = words.next().unwrap_or("");
            out.push_str(&include(path).map_err(|e| format!("line {}: {e}", n + 1))?);
            continue;
        }
        if is("SecRemoteRules") || is("SecRemoteRulesFailAction") {
            return Err(format!(
                "line {}: SecRemoteRules is refused (rules are not fetched over the network)",
                n + 1
            ));
        }
        if is("SecAuditLog")
            && words
                .next()
                .is_some_and(|p| p.trim_matches('"') == "/dev/stdout")
        {
            out.push_str(&format!("SecAuditLog {}\n", audit::stdout()));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The compiled rules of `text`: one compile per distinct text, shared while any table holds
/// it (a table swap that keeps the same WAF configuration compiles nothing).
pub fn ruleset(text: &str) -> Result<Arc<RuleSet>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Weak<RuleSet>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = c.get(text).and_then(Weak::upgrade) {
            return Ok(r);
        }
        c.retain(|_, w| w.strong_count() > 0);
    }
    let started = std::time::Instant::now();
    let r = Arc::new(RuleSet::compile(text)?);
    tracing::info!(
        "ModSecurity rules compiled in {:?} ({} bytes of rules text)",
        started.elapsed(),
        text.len()
    );
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(text.to_string(), Arc::downgrade(&r));
    Ok(r)
}

/// Pull `[id "..."]` and `[msg "..."]` out of an engine log line.
pub fn rule_id_and_msg(log: &str) -> (Option<&str>, Option<&str>) {
    fn field<'a>(log: &'a str, name: &str) -> Option<&'a str> {
        let start = log.find(&format!("[{name} \""))? + name.len() + 3;
        let end = log[start..].find("\"]")?;
        Some(&log[start..start + end])
    }
    (field(log, "id"), field(log, "msg"))
}

/// The audit log writer: `SecAuditLog /dev/stdout` becomes the write end of a pipe that a
/// dedicated thread copies to standard output, so the engine never blocks a proxy thread on
/// the process's stdout.
pub mod audit {
    use std::sync::OnceLock;

    /// The path libmodsecurity opens for "standard output".
    pub fn stdout() -> &'static str {
        static PATH: OnceLock<String> = OnceLock::new();
        PATH.get_or_init(|| match start() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("ModSecurity audit log writer: {e}; writing to /dev/stdout");
                "/dev/stdout".into()
            }
        })
    }

    fn start() -> std::io::Result<String> {
        use std::os::fd::AsRawFd;
        let (mut reader, writer) = std::io::pipe()?;
        let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
        // the write end stays open for the process's life: libmodsecurity opens it by path
        std::mem::forget(writer);
        std::thread::Builder::new()
            .name("waf-audit".into())
            .spawn(move || {
                let mut out = std::io::stdout();
                let _ = std::io::copy(&mut reader, &mut out);
            })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_unescape_as_nginx_reads_a_quoted_string() {
        assert_eq!(
            nginx_unescape(
                r#"SecRule REQUEST_HEADERS:User-Agent \"block-ua\" \"log,deny,id:107,msg:\'UA blocked\'\""#
            ),
            r#"SecRule REQUEST_HEADERS:User-Agent "block-ua" "log,deny,id:107,msg:'UA blocked'""#
        );
        assert_eq!(nginx_unescape("a \\\\ b \\x \\\nc"), "a \\ b \\x \\\nc");
    }

    #[test]
    fn includes_map_ingress_nginx_paths_and_refuse_others() {
        let s = prepare_snippet("Include /etc/nginx/owasp-modsecurity-crs/nginx-modsecurity.conf")
            .unwrap();
        assert!(
            s.contains("Include /usr/share/modsecurity-crs/rules/*.conf"),
            "{s}"
        );
        let s = prepare_snippet("include /etc/nginx/modsecurity/modsecurity.conf").unwrap();
        assert!(s.contains("SecRuleEngine DetectionOnly"));
        let s = prepare_snippet(
            "Include /etc/nginx/owasp-modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf",
        )
        .unwrap();
        assert_eq!(
            s,
            "Include /usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf\n"
        );
        for bad in [
            "Include /etc/passwd",
            "Include /usr/share/modsecurity-crs/rules/../../../etc/shadow",
            "SecRuleEngine On\nInclude /etc/nginx/owasp-modsecurity-crs/plugins/x.conf",
            "SecRemoteRules key https://example.com/rules",
        ] {
            let e = prepare_snippet(bad).unwrap_err();
            assert!(e.starts_with("line "), "{bad}: {e}");
        }
        // a continuation line starting with a directive's name is not a directive
        let s = prepare_snippet("SecRule ARGS \"@rx x\" \\\n  Include").unwrap();
        assert!(s.ends_with("  Include\n"), "{s}");
    }

    #[test]
    fn audit_to_stdout_goes_through_the_writer() {
        let s = prepare_snippet("SecAuditLog /dev/stdout\nSecAuditLog /var/tmp/a.log").unwrap();
        assert!(s.contains(&format!("SecAuditLog {}\n", audit::stdout())));
        assert!(s.contains("SecAuditLog /var/tmp/a.log"));
        assert!(!default_conf().contains("/dev/stdout"));
    }

    #[test]
    fn rule_id_and_message_from_an_engine_log_line() {
        let l = r#"ModSecurity: Access denied with code 403 (phase 1). Matched "Operator `Rx' ..." [file "<<reference missing or not informed>>"] [line "1"] [id "107"] [rev ""] [msg "UA blocked"] [data ""]"#;
        assert_eq!(rule_id_and_msg(l), (Some("107"), Some("UA blocked")));
        assert_eq!(rule_id_and_msg("nothing"), (None, None));
    }

    #[cfg(feature = "waf")]
    #[test]
    fn the_engine_blocks_with_a_snippet_and_reports_bad_rules() {
        let text = rules_text(&[Part::Snippet(
            "SecRuleEngine On\nSecRule REQUEST_HEADERS:User-Agent \\\"block-ua\\\" \\\"log,deny,id:107,status:403,msg:\\'UA blocked\\'\\\"",
        )])
        .unwrap();
        let rules = ruleset(&text).unwrap();
        // the same text compiles once
        assert!(Arc::ptr_eq(&rules, &ruleset(&text).unwrap()));
        let head = RequestHead {
            client_ip: "10.0.0.1",
            client_port: 1234,
            server_ip: "10.0.0.2",
            server_port: 80,
            uri: "/",
            method: "GET",
            version: "1.1",
        };
        let mut tx = Tx::new(&rules, Some("abc")).unwrap();
        let it = tx
            .request_head(&head, [(&b"User-Agent"[..], &b"block-ua"[..])].into_iter())
            .unwrap();
        assert_eq!(it.status, 403);
        let (id, msg) = rule_id_and_msg(it.log.as_deref().unwrap_or(""));
        assert_eq!((id, msg), (Some("107"), Some("UA blocked")));
        let mut tx = Tx::new(&rules, None).unwrap();
        assert_eq!(
            tx.request_head(&head, [(&b"User-Agent"[..], &b"curl"[..])].into_iter()),
            None
        );
        assert_eq!(tx.request_body_done(), None);
        let e = RuleSet::compile("SecRuleEngine Sideways").unwrap_err();
        assert!(!e.is_empty());
    }

    #[cfg(feature = "waf")]
    #[test]
    fn the_default_configuration_and_the_crs_compile() {
        let text = rules_text(&[Part::DefaultConf, Part::Crs]).unwrap();
        if !std::path::Path::new(CRS_RULES_DIR).exists() {
            panic!("{CRS_RULES_DIR} is missing: install modsecurity-crs (bash .ci/setup)");
        }
        ruleset(&text).unwrap();
    }
}
