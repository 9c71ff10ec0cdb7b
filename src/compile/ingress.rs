//! Validate one Ingress into a plan of typed routes, or reject it whole with a diagnostic.
//!
//! Rules follow ingress-nginx (`strict-validate-path-type` on, its default since v1.12):
//! Exact and Prefix paths must match `^/[A-Za-z0-9._\-/]*$`; ImplementationSpecific (or a
//! missing pathType) is nginx's plain string prefix, taken literally (regex characters included)
//! unless its host is in regex mode; an empty path is `/`; `resource` backends are refused.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::backend::PortRef;
use crate::annotations::{self, IngressAnnotations};
use crate::configmap::ControllerConfig;
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::route::{self, IngressId, PathKind};
use crate::settings::CompileSettings;

/// `service.name` + port of a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: String,
    pub port: PortRef,
}

#[derive(Clone, Debug)]
pub struct PathPlan {
    /// Lower-case host as written (`*.x` for wildcards), `""` for rules without host.
    pub host: String,
    pub path: String,
    pub kind: PathKind,
    pub service: ServiceRef,
}

#[derive(Clone, Debug)]
pub struct IngressPlan {
    pub id: IngressId,
    /// metadata.uid (empty in manifests without one): names nginx's mirror location.
    pub uid: String,
    pub object: ObjectRef,
    /// Shared with every other plan whose annotations parse the same (see `common` of [`plan`]).
    pub annotations: Arc<IngressAnnotations>,
    /// Hosts of the rules, in rule order, de-duplicated.
    pub hosts: Vec<String>,
    pub paths: Vec<PathPlan>,
    pub default_backend: Option<ServiceRef>,
    /// True when the Ingress has no rules at all (its default backend is the catch-all's).
    pub no_rules: bool,
}

/// Validate `ing`. Warnings go to `diags`; a rejection is the `Err`. `common` is the parse of
/// no annotations at all: the plan shares it when its own annotations parse the same.
pub fn plan(
    namespace: &str,
    name: &str,
    ing: &Ingress,
    settings: &CompileSettings,
    config: &ControllerConfig,
    common: &Arc<IngressAnnotations>,
    diags: &mut Vec<Diagnostic>,
) -> Result<IngressPlan, Diagnostic> {
    let object = ObjectRef::ingress(namespace, name);
    let reject =
        |reason: &'static str, msg: String| Diagnostic::rejected(object.clone(), reason, msg);
    if settings.deep_inspect {
        if let Some(msg) = deep_inspection(ing) {
            return Err(reject("DeepInspection", msg));
        }
    }
    if let Some(msg) = blocked_word(
        &settings.annotations_prefix,
        ing.metadata.annotations.as_ref(),
        &config.annotation_value_word_blocklist,
    ) {
        return Err(reject("AnnotationValueBlocked", msg));
    }
    let annotations = annotations::parse(
        &settings.annotations_prefix,
        ing.metadata.annotations.as_ref(),
        gate(config),
        &object,
        diags,
    )?;
    let annotations = if annotations == **common {
        common.clone()
    } else {
        Arc::new(annotations)
    };
    let spec = ing.spec.as_ref();
    // every offending host, path and backend is named, not only the first
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let default_backend = match spec.and_then(|s| s.default_backend.as_ref()) {
        Some(b) => match service_ref(b) {
            Ok(r) => Some(r),
            Err(m) => {
                errors.push(("InvalidBackend", format!("spec.defaultBackend: {m}")));
                None
            }
        },
        None => None,
    };
    let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
    let mut hosts: Vec<String> = Vec::new();
    let mut paths = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let host = rule.host.as_deref().unwrap_or("");
        if let Err(m) = check_host(host) {
            errors.push((
                "InvalidHost",
                format!("spec.rules[{ri}].host {host:?}: {m}"),
            ));
            continue;
        }
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
        let Some(http) = rule.http.as_ref() else {
            continue;
        };
        for (pi, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{ri}].http.paths[{pi}]");
            let checked = check_path_with(
                p.path.as_deref(),
                &p.path_type,
                annotations.use_regex,
                config.strict_validate_path_type,
            );
            let service = service_ref(&p.backend);
            match (checked, service) {
                (Ok((path, kind)), Ok(service)) => paths.push(PathPlan {
                    host: host.to_string(),
                    path,
                    kind,
                    service,
                }),
                (checked, service) => {
                    if let Err(m) = checked {
                        errors.push(("InvalidPath", format!("{at}: {m}")));
                    }
                    if let Err(m) = service {
                        errors.push(("InvalidBackend", format!("{at}.backend: {m}")));
                    }
                }
            }
        }
    }
    if let Some((reason, _)) = errors.first() {
        let all: Vec<&str> = errors.iter().map(|(_, m)| m.as_str()).collect();
        return Err(reject(reason, all.join("; ")));
    }
    if rules.is_empty() && default_backend.is_none() {
        return Err(reject(
            "NoRules",
            "the Ingress has neither rules nor spec.defaultBackend".into(),
        ));
    }
    // plans live in the compile cache: no spare capacity
    hosts.shrink_to_fit();
    paths.shrink_to_fit();
    Ok(IngressPlan {
        id: IngressId {
            namespace: namespace.into(),
            name: name.into(),
        },
        uid: ing.metadata.uid.clone().unwrap_or_default(),
        object,
        annotations,
        hosts,
        paths,
        default_backend,
        no_rules: rules.is_empty(),
    })
}

/// ingress-nginx's deep inspector (`--deep-inspect`, internal/ingress/inspector): rule hosts,
/// paths, TLS secret names and hosts must not hold a value its rules forbid. Every offending
/// field is named.
fn deep_inspection(ing: &Ingress) -> Option<String> {
    let spec = ing.spec.as_ref()?;
    let mut found = Vec::new();
    let mut inspect = |at: String, v: &str| {
        if let Some(why) = forbidden_value(v) {
            found.push(format!("{at} {v:?} ({why})"));
        }
    };
    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        if let Some(h) = rule.host.as_deref() {
            inspect(format!("spec.rules[{ri}].host"), h);
        }
        for (pi, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            if let Some(path) = p.path.as_deref() {
                inspect(format!("spec.rules[{ri}].http.paths[{pi}].path"), path);
            }
        }
    }
    for (ti, tls) in spec.tls.iter().flatten().enumerate() {
        if let Some(secret) = tls.secret_name.as_deref() {
            inspect(format!("spec.tls[{ti}].secretName"), secret);
        }
        for (hi, h) in tls.hosts.iter().flatten().enumerate() {
            inspect(format!("spec.tls[{ti}].hosts[{hi}]"), h);
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "refused by the deep inspector (--deep-inspect, as ingress-nginx): {}",
            found.join("; ")
        )
    })
}

/// Which of ingress-nginx's inspector rules `v` breaks: `alias` or `root` followed by a `;`,
/// `/etc/(passwd|shadow|group|nginx|ingress-controller)`, `/var/run/secrets`, `_by_lua`.
fn forbidden_value(v: &str) -> Option<&'static str> {
    let word_then_semicolon = |w: &str| v.find(w).is_some_and(|i| v[i + w.len()..].contains(';'));
    if word_then_semicolon("alias") {
        return Some("an alias directive");
    }
    if word_then_semicolon("root") {
        return Some("a root directive");
    }
    const ETC: [&str; 5] = ["passwd", "shadow", "group", "nginx", "ingress-controller"];
    if v.match_indices("/etc/")
        .any(|(i, _)| ETC.iter().any(|d| v[i + 5..].starts_with(d)))
    {
        return Some("a path under /etc");
    }
    if v.contains("/var/run/secrets") {
        return Some("the service account secrets path");
    }
    if v.contains("_by_lua") {
        return Some("a Lua directive");
    }
    None
}

/// ConfigMap `annotation-value-word-blocklist`: an annotation under the prefix whose value
/// contains one of the words leaves the Ingress out (ingress-nginx's store skips it).
fn blocked_word(
    prefix: &str,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    words: &[String],
) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    annotations?.iter().find_map(|(k, v)| {
        k.strip_prefix(prefix)?.strip_prefix('/')?;
        let w = words.iter().find(|w| v.contains(w.as_str()))?;
        Some(format!(
            "{k} contains the blocked word {w:?} (ConfigMap annotation-value-word-blocklist)"
        ))
    })
}

/// How annotations are read under these settings.
pub fn gate(config: &ControllerConfig) -> annotations::Gate {
    annotations::Gate {
        risk_level: config.annotations_risk_level,
        allow_snippets: config.allow_snippet_annotations,
    }
}

fn service_ref(b: &IngressBackend) -> Result<ServiceRef, String> {
    if b.resource.is_some() {
        return Err("resource backends are not supported by pingress (nor by ingress-nginx); use a service backend".into());
    }
    let Some(svc) = b.service.as_ref() else {
        return Err("no service backend".into());
    };
    if svc.name.is_empty() {
        return Err("service.name is empty".into());
    }
    let port = PortRef::from_backend(svc)
        .ok_or_else(|| format!("service {:?} needs port.number or port.name", svc.name))?;
    Ok(ServiceRef {
        name: svc.name.clone(),
        port,
    })
}

pub use crate::values::check_host;

fn strict_literal(p: &str) -> bool {
    p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// Returns the path (empty becomes `/`) and its kind, under `strict-validate-path-type`.
pub fn check_path(
    raw: Option<&str>,
    path_type: &str,
    use_regex: bool,
) -> Result<(String, PathKind), String> {
    check_path_with(raw, path_type, use_regex, true)
}

/// [`check_path`]; with `strict` false (ConfigMap `strict-validate-path-type: "false"`) Exact
/// and Prefix paths may hold any character, as before ingress-nginx v1.12 (a regex under
/// `use-regex` / `rewrite-target`, else literal).
pub fn check_path_with(
    raw: Option<&str>,
    path_type: &str,
    use_regex: bool,
    strict: bool,
) -> Result<(String, PathKind), String> {
    let path = raw.filter(|p| !p.is_empty()).unwrap_or("/");
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'"));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "path {path:?} contains whitespace or control characters"
        ));
    }
    let kind = match path_type {
        "Exact" => PathKind::Exact,
        "Prefix" => PathKind::Prefix,
        "ImplementationSpecific" | "" => {
            // without regex mode on its host, nginx takes the path as a literal prefix
            if use_regex {
                route::validate_location_regex(path)
                    .map_err(|e| format!("path {path:?} is not a valid regex: {e}"))?;
            }
            return Ok((path.to_string(), PathKind::ImplementationSpecific));
        }
        other => {
            return Err(format!(
                "pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific"
            ))
        }
    };
    if !strict {
        if use_regex {
            route::validate_location_regex(path)
                .map_err(|e| format!("path {path:?} is not a valid regex: {e}"))?;
        }
        return Ok((path.to_string(), kind));
    }
    if !strict_literal(path) {
        return Err(format!(
            "{} path {path:?} may only contain letters, digits and . _ - / (use pathType ImplementationSpecific with use-regex for a regex)",
            kind.as_str()
        ));
    }
    Ok((path.to_string(), kind))
}

#[cfg(test)]
mod tests {

    #[test]
    fn annotation_value_word_blocklist() {
        let m: std::collections::BTreeMap<String, String> = [
            (
                "nginx.ingress.kubernetes.io/x".to_string(),
                "a {bad} b".to_string(),
            ),
            ("other.io/y".to_string(), "evil".to_string()),
        ]
        .into();
        let p = "nginx.ingress.kubernetes.io";
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(blocked_word(p, Some(&m), &words(&["{"])).is_some());
        // only values under the prefix count
        assert!(blocked_word(p, Some(&m), &words(&["evil"])).is_none());
        assert!(blocked_word(p, Some(&m), &[]).is_none());
    }

    use super::*;

    #[test]
    fn hosts() {
        assert!(check_host("").is_ok());
        assert!(check_host("a.example.com").is_ok());
        assert!(check_host("*.example.com").is_ok());
        assert!(check_host("*").is_err());
        assert!(check_host("a.*.example.com").is_err());
        assert!(check_host("Upper.example.com").is_err());
        assert!(check_host("-a.com").is_err());
        assert!(check_host("a..com").is_err());
        assert!(check_host("a_b.com").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            check_path(None, "Prefix", false).unwrap(),
            ("/".into(), PathKind::Prefix)
        );
        assert_eq!(check_path(Some(""), "Exact", false).unwrap().0, "/");
        assert_eq!(
            check_path(Some("/a"), "ImplementationSpecific", false)
                .unwrap()
                .1,
            PathKind::ImplementationSpecific
        );
        assert_eq!(
            check_path(Some("/a"), "", false).unwrap().1,
            PathKind::ImplementationSpecific
        );
        assert!(check_path(Some("foo"), "Prefix", false)
            .unwrap_err()
            .contains("start with '/'"));
        assert!(check_path(Some("/a b"), "Prefix", false).is_err());
        assert!(check_path(Some("/a(.*)"), "Prefix", true).is_err());
        // outside regex mode a literal prefix, as nginx's `location /vncwebsocket.*`
        assert_eq!(
            check_path(Some("/vncwebsocket.*"), "ImplementationSpecific", false).unwrap(),
            ("/vncwebsocket.*".into(), PathKind::ImplementationSpecific)
        );
        assert!(check_path(Some("/a(.*)"), "ImplementationSpecific", true).is_ok());
        // strict-validate-path-type: "false": a Prefix path may be a regex
        assert_eq!(
            check_path_with(Some("/id/[0-9]+"), "Prefix", true, false).unwrap(),
            ("/id/[0-9]+".into(), PathKind::Prefix)
        );
        assert!(check_path_with(Some("/a(["), "Prefix", true, false).is_err());
        assert!(check_path(Some("/a(["), "ImplementationSpecific", true)
            .unwrap_err()
            .contains("not a valid regex"));
        assert!(check_path(Some("/a"), "Fuzzy", false)
            .unwrap_err()
            .contains("pathType"));
    }

    /// `plan` of Ingress a/b with the default ConfigMap.
    fn plan_of(ing: &Ingress, settings: &CompileSettings) -> Result<IngressPlan, Diagnostic> {
        plan(
            "a",
            "b",
            ing,
            settings,
            &ControllerConfig::default(),
            &Arc::default(),
            &mut Vec::new(),
        )
    }

    #[test]
    fn the_deep_inspector_refuses_what_ingress_nginx_refuses() {
        for bad in [
            "/etc/nginx",
            "/x/etc/passwd/y",
            "/etc/ingress-controller/ssl",
            "/var/run/secrets/kubernetes.io",
            "/content_by_lua",
            "/a; alias /;",
            "/root;",
            // ingress-nginx's regex is not anchored: a longer name matches too
            "/etc/nginxx",
        ] {
            assert!(forbidden_value(bad).is_some(), "{bad}");
        }
        for good in ["/", "/etc", "/etc/hosts", "/alias", "/root/x", "/x;"] {
            assert_eq!(forbidden_value(good), None, "{good}");
        }
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "a", "name": "b"},
            "spec": {
                "tls": [{"hosts": ["ok.example"], "secretName": "x_by_lua"}],
                "rules": [{"host": "ok.example", "http": {"paths": [
                    {"path": "/ok", "pathType": "Prefix",
                     "backend": {"service": {"name": "s", "port": {"number": 80}}}},
                    {"path": "/etc/shadow", "pathType": "Prefix",
                     "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]
            }
        }))
        .unwrap();
        let msg = deep_inspection(&ing).unwrap();
        assert!(
            msg.contains("spec.rules[0].http.paths[1].path \"/etc/shadow\"")
                && msg.contains("spec.tls[0].secretName \"x_by_lua\""),
            "{msg}"
        );
        let settings = CompileSettings {
            deep_inspect: false,
            ..CompileSettings::default()
        };
        let served = plan_of(&ing, &settings);
        assert!(served.is_ok(), "--deep-inspect=false serves it");
        let refused = plan_of(&ing, &CompileSettings::default());
        assert_eq!(refused.err().map(|d| d.reason), Some("DeepInspection"));
    }

    #[test]
    fn a_rejection_names_every_offending_host_path_and_backend() {
        let backend = serde_json::json!({"service": {"name": "s", "port": {"number": 80}}});
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "a", "name": "b"},
            "spec": {"rules": [
                {"host": "Bad_Host", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend}]}},
                {"host": "ok.example", "http": {"paths": [
                    {"path": "/fine", "pathType": "Prefix", "backend": backend},
                    {"path": "no-slash", "pathType": "Prefix", "backend": backend},
                    {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "s"}}},
                    {"path": "also-bad", "pathType": "Exact", "backend": backend}]}}
            ]}
        }))
        .unwrap();
        let d = plan_of(&ing, &CompileSettings::default()).expect_err("rejected");
        assert_eq!(d.reason, "InvalidHost");
        for at in [
            "spec.rules[0].host \"Bad_Host\"",
            "spec.rules[1].http.paths[1]: path \"no-slash\"",
            "spec.rules[1].http.paths[2].backend",
            "spec.rules[1].http.paths[3]: path \"also-bad\"",
        ] {
            assert!(d.message.contains(at), "{at}: {}", d.message);
        }
        assert!(!d.message.contains("paths[0]"), "{}", d.message);
    }
}
