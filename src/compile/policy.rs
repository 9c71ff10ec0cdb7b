//! Build an Ingress's [`Policy`] from its parsed annotations and the ConfigMap defaults, and
//! resolve the ConfigMap references (`proxy-set-headers`, `add-headers`, `custom-headers`).
//! Pure: reads the snapshot only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::backend::{PortRef, Resolver};
use crate::annotations::access::Access;
use crate::configmap::ControllerConfig;
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::route::policy::{LimitSpec, Mirror, UpstreamRewrite};
use crate::route::{Backend, Policy};
use crate::snapshot::Snapshot;

use super::ingress::IngressPlan;

/// The policy of routes no annotation touches (default backends): ConfigMap defaults.
pub fn base(config: &ControllerConfig) -> Policy {
    Policy {
        connect_timeout: Duration::from_secs(config.proxy_connect_timeout),
        read_timeout: Duration::from_secs(config.proxy_read_timeout),
        send_timeout: Duration::from_secs(config.proxy_send_timeout),
        body_limit: config.proxy_body_size,
        request_buffering: config.proxy_request_buffering,
        body_buffer_size: config.client_body_buffer_size,
        upstream_header_limit: config.proxy_buffer_size,
        next_upstream: config.proxy_next_upstream,
        next_upstream_tries: config.proxy_next_upstream_tries,
        next_upstream_timeout: (config.proxy_next_upstream_timeout > 0)
            .then(|| Duration::from_secs(config.proxy_next_upstream_timeout)),
        retry_non_idempotent: config.retry_non_idempotent,
        access: global_access(config),
        ..Policy::default()
    }
}

fn global_access(config: &ControllerConfig) -> Access {
    if config.allowlist_source_range.is_none() && config.denylist_source_range.is_none() {
        Access::Open
    } else {
        Access::Rules {
            allow: config.allowlist_source_range.clone(),
            deny: config.denylist_source_range.clone(),
        }
    }
}

/// An Ingress's policy.
pub fn for_ingress(
    plan: &IngressPlan,
    config: &ControllerConfig,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
    global_backend: &Arc<Backend>,
    diags: &mut Vec<Diagnostic>,
) -> Policy {
    let a = &plan.annotations;
    let p = &a.proxy;
    let mut pol = base(config);
    pol.redirect = a.redirects.redirect.clone();
    pol.relative_redirects = a.redirects.relative || config.relative_redirects;
    pol.rewrite_target = a.rewrite.target.as_deref().map(Into::into);
    pol.x_forwarded_prefix = a.rewrite.x_forwarded_prefix.as_deref().map(Into::into);
    pol.access_log = a.access_log;
    pol.cors = a.cors.clone().map(Arc::new);
    pol.mirror = a.mirror.as_ref().and_then(|m| {
        Some(Arc::new(Mirror {
            url: m.target.clone(),
            to: super::backend::url_target(&m.target, snap, resolver),
            host: HeaderValue::from_str(&m.host).ok()?,
            body: m.body,
            location: format!("/_mirror-{}", plan.uid).into(),
        }))
    });
    pol.fail_closed = a.auth.fail_closed_reason().map(Into::into);
    match super::auth::for_ingress(&a.auth, &plan.id.namespace, config, snap, resolver) {
        Ok(auth) => pol.auth = auth,
        Err(msg) => {
            diags.push(Diagnostic::warning(
                plan.object.clone(),
                "AuthFailClosed",
                format!("{msg}: every path of this Ingress answers 503 (fail closed, never open)"),
            ));
            pol.fail_closed.get_or_insert_with(|| msg.into());
        }
    }
    if let Some(s) = p.connect_timeout {
        pol.connect_timeout = Duration::from_secs(s);
    }
    if let Some(s) = p.read_timeout {
        pol.read_timeout = Duration::from_secs(s);
    }
    if let Some(s) = p.send_timeout {
        pol.send_timeout = Duration::from_secs(s);
    }
    if let Some(b) = p.body_size {
        pol.body_limit = b;
    }
    if let Some(b) = p.request_buffering {
        pol.request_buffering = b;
    }
    if let Some(n) = p.body_buffer_size {
        pol.body_buffer_size = n;
    }
    if let Some(n) = p.buffer_size {
        pol.upstream_header_limit = n;
    }
    if let Some(n) = p.next_upstream {
        pol.next_upstream = n;
    }
    if let Some(t) = p.next_upstream_tries {
        pol.next_upstream_tries = t;
    }
    if let Some(t) = p.next_upstream_timeout {
        pol.next_upstream_timeout = (t > 0).then(|| Duration::from_secs(t));
    }
    pol.upstream_vhost = p
        .upstream_vhost
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    // each key: the annotation, else the ConfigMap's (ingress-nginx's proxy parser)
    let rewrite = UpstreamRewrite {
        redirect: crate::annotations::proxy::redirect_rule(
            p.redirect_from
                .as_deref()
                .unwrap_or(&config.proxy_redirect_from),
            p.redirect_to
                .as_deref()
                .unwrap_or(&config.proxy_redirect_to),
        ),
        cookie_domain: p
            .cookie_domain
            .clone()
            .unwrap_or_else(|| config.proxy_cookie_domain.clone()),
        cookie_path: p
            .cookie_path
            .clone()
            .unwrap_or_else(|| config.proxy_cookie_path.clone()),
    };
    if rewrite != UpstreamRewrite::default() {
        pol.upstream_rewrite = Some(Arc::new(rewrite));
    }
    pol.upstream_http10 = p.http10.unwrap_or(config.proxy_http10);
    pol.connection_header = p
        .connection_header
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    if a.access != Access::Open {
        pol.access = a.access.clone();
    }
    let rl = &a.rate_limits;
    let rate = rl.rate.unwrap_or(config.limit_rate);
    let after = rl.rate_after.unwrap_or(config.limit_rate_after);
    pol.response_rate = (rate > 0).then_some((rate, after));
    if rl.is_active() {
        pol.limits = Some(Arc::new(LimitSpec {
            zone: format!("{}/{}", plan.id.namespace, plan.id.name).into(),
            rps: rl.rps,
            rpm: rl.rpm,
            burst_multiplier: rl.burst_multiplier,
            connections: rl.connections,
            allowlist: rl.allowlist.clone(),
            req_status: config.limit_req_status_code,
            conn_status: config.limit_conn_status_code,
        }));
    }
    if let Some(name) = &a.backend.default_backend {
        let ns = &plan.id.namespace;
        let upstream = format!("custom-default-backend-{ns}-{name}");
        let (b, degraded) = resolver.resolve(ns, name, &PortRef::First, Some(&upstream));
        if let Some(d) = degraded {
            diags.push(Diagnostic::warning(
                plan.object.clone(),
                d.reason,
                format!("default-backend annotation: {}", d.message),
            ));
        }
        pol.fallback = Some(b);
    }
    let intercept_off = a
        .backend
        .disable_intercept
        .unwrap_or(config.disable_proxy_intercept_errors);
    pol.custom_errors = if intercept_off {
        Vec::new()
    } else if a.backend.custom_http_errors.is_empty() {
        config.custom_http_errors.clone()
    } else {
        a.backend.custom_http_errors.clone()
    };
    if !pol.custom_errors.is_empty() {
        pol.error_backend = Some(
            pol.fallback
                .clone()
                .unwrap_or_else(|| global_backend.clone()),
        );
    }
    if let Some(r) = &a.custom_headers {
        match custom_headers(r, plan, config, snap) {
            Ok(h) => pol.response_headers = h,
            Err(msg) => {
                diags.push(Diagnostic::warning(
                    plan.object.clone(),
                    "CustomHeadersDenied",
                    format!("custom-headers {r:?}: {msg}; every path of this Ingress answers 503"),
                ));
                pol.denied = true;
            }
        }
    }
    let joined = location_program(a.snippets.location.as_ref(), config);
    apply_snippet(&mut pol, joined.as_ref());
    match super::waf::for_ingress(&a.modsecurity, &config.waf) {
        Ok(w) => pol.waf = w,
        Err(why) => {
            diags.push(Diagnostic::warning(
                plan.object.clone(),
                "ModSecurityFailClosed",
                format!("{why}: every path of this Ingress answers 503 (never served uninspected)"),
            ));
            pol.fail_closed.get_or_insert_with(|| why.into());
        }
    }
    pol
}

/// Whether the ConfigMap's `global-auth-url` covers a path of this Ingress (ingress-nginx's
/// `shouldApplyGlobalAuth` and `no-auth-locations`): set, the Ingress has no `auth-url` of its
/// own and has not opted out with `enable-global-auth: "false"`, and the path does not start
/// with an entry of `no-auth-locations`.
/// The location program of an Ingress: its `configuration-snippet`, then the ConfigMap's
/// `location-snippet` (joined as one, as both sit in the same nginx location).
fn location_program(
    own: Option<&Arc<crate::annotations::snippet::Program>>,
    config: &ControllerConfig,
) -> Option<Arc<crate::annotations::snippet::Program>> {
    use crate::annotations::snippet::{program, Kind};
    match (own, &config.location_snippet) {
        (Some(p), Some(cm)) => Some(
            program::join(p, &cm.text, Kind::Location)
                .map(Arc::new)
                .unwrap_or_else(|| p.clone()),
        ),
        (Some(p), None) => Some(p.clone()),
        (None, Some(cm)) => Some(cm.program.clone()),
        (None, None) => None,
    }
}

/// A `configuration-snippet`'s mapped settings onto the policy (the snippet follows the
/// annotations in ingress-nginx's location, so its value wins), and the program itself.
pub fn apply_snippet(
    pol: &mut Policy,
    snippet: Option<&Arc<crate::annotations::snippet::Program>>,
) {
    let Some(p) = snippet else { return };
    let s = &p.settings;
    if let Some(v) = s.body_limit {
        pol.body_limit = v;
    }
    if let Some(v) = s.connect_timeout {
        pol.connect_timeout = v;
    }
    if let Some(v) = s.send_timeout {
        pol.send_timeout = v;
    }
    if let Some(v) = s.read_timeout {
        pol.read_timeout = v;
    }
    if let Some(v) = s.request_buffering {
        pol.request_buffering = v;
    }
    if let Some(v) = s.upstream_http10 {
        pol.upstream_http10 = v;
    }
    if let Some(v) = s.access_log {
        pol.access_log = v;
    }
    if s.server_tokens.is_some() {
        pol.server_tokens = s.server_tokens;
    }
    pol.snippet = Some(p.clone());
}

pub fn global_auth_covers(plan: &IngressPlan, config: &ControllerConfig, path: &str) -> bool {
    super::auth::global_applies(&plan.annotations.auth, config) && !no_auth_location(config, path)
}

/// A location path under an entry of `no-auth-locations` (ingress-nginx
/// `isLocationInLocationList`: a string prefix of the location's path): no authentication.
pub fn no_auth_location(config: &ControllerConfig, path: &str) -> bool {
    config
        .no_auth_locations
        .iter()
        .any(|l| path.starts_with(l.as_str()))
}

fn custom_headers(
    reference: &str,
    plan: &IngressPlan,
    config: &ControllerConfig,
    snap: &Snapshot,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (ns, name) = match reference.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (plan.id.namespace.to_string(), reference.to_string()),
    };
    if *ns != *plan.id.namespace && !config.allow_cross_namespace_resources {
        return Err(format!(
            "ConfigMap {ns}/{name} is in another namespace and allow-cross-namespace-resources is false"
        ));
    }
    let cm = snap
        .config_maps
        .get(&(ns.clone(), name.clone()))
        .ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?;
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let mut out = Vec::with_capacity(data.len());
    for (k, v) in data {
        let lower = k.to_ascii_lowercase();
        if !config.global_allowed_response_headers.contains(&lower) {
            return Err(format!(
                "header {k:?} is not listed in the ConfigMap key global-allowed-response-headers"
            ));
        }
        out.push(header_pair(k, v)?);
    }
    Ok(out)
}

fn header_pair(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name =
        HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("{k:?} is not a header name"))?;
    let value = HeaderValue::from_str(v.trim())
        .map_err(|_| format!("the value of {k:?} is not a valid header value"))?;
    Ok((name, value))
}

/// Resolve `proxy-set-headers` and `add-headers` into header lists on the config.
pub fn resolve_header_refs(
    config: &mut ControllerConfig,
    snap: &Snapshot,
    diags: &mut Vec<Diagnostic>,
) {
    let refs = [
        ("proxy-set-headers", config.proxy_set_headers_ref.clone()),
        ("add-headers", config.add_headers_ref.clone()),
    ];
    for (key, r) in refs {
        let Some((ns, name)) = r else { continue };
        let object = ObjectRef::new("ConfigMap", &ns, &name);
        let Some(cm) = snap.config_maps.get(&(ns.clone(), name.clone())) else {
            diags.push(Diagnostic::warning(
                object,
                "ConfigMapNotFound",
                format!(
                    "{key} refers to ConfigMap {ns}/{name}, which does not exist; no headers added"
                ),
            ));
            continue;
        };
        let mut list = Vec::new();
        for (k, v) in cm.data.iter().flatten() {
            match header_pair(k, v) {
                Ok(p) => list.push(p),
                Err(m) => diags.push(Diagnostic::warning(
                    object.clone(),
                    "InvalidHeader",
                    format!("{key}: {m}; this header is skipped"),
                )),
            }
        }
        if key == "proxy-set-headers" {
            config.proxy_set_headers = list;
        } else {
            config.add_headers = list;
        }
    }
}
