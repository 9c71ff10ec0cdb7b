//! Build an Ingress's [`AuthPolicy`]: the basic-auth users from their Secret, the external
//! auth target (a watched Service or a DNS name) and the `auth-proxy-set-headers` ConfigMap.
//! Pure: reads the snapshot only. A reference that cannot be honoured is an `Err` message and
//! the Ingress fails closed (503), never open.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::Secret;

use super::backend::Resolver;
use crate::annotations::auth::{AuthAnnotations, BasicSpec, ExternalSpec};
use crate::configmap::ControllerConfig;
use crate::route::auth::{AuthPolicy, BasicAuth, ExternalAuth};
use crate::snapshot::Snapshot;

/// The key of an `auth-file` Secret.
const AUTH_FILE_KEY: &str = "auth";

/// The authentication of one Ingress (without the ConfigMap's global auth).
pub fn for_ingress(
    a: &AuthAnnotations,
    namespace: &str,
    config: &ControllerConfig,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
) -> Result<AuthPolicy, String> {
    let basic = match &a.basic {
        Some(spec) => Some(Arc::new(basic(spec, namespace, config, snap)?)),
        None => None,
    };
    let external = match &a.external {
        Some(spec) => Some(Arc::new(external(
            spec,
            "auth-url",
            Some((namespace, config.allow_cross_namespace_resources)),
            snap,
            resolver,
        )?)),
        None => None,
    };
    Ok(AuthPolicy {
        basic,
        external,
        satisfy_any: a.satisfy_any,
    })
}

/// The ConfigMap's global external auth, compiled once per table.
pub fn global(
    spec: &ExternalSpec,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
) -> Result<Arc<ExternalAuth>, String> {
    external(spec, "global-auth-url", None, snap, resolver).map(Arc::new)
}

fn basic(
    spec: &BasicSpec,
    namespace: &str,
    config: &ControllerConfig,
    snap: &Snapshot,
) -> Result<BasicAuth, String> {
    let ns = spec.namespace.as_deref().unwrap_or(namespace);
    if ns != namespace && !config.allow_cross_namespace_resources {
        return Err(format!(
            "auth-secret {ns}/{} is in another namespace and allow-cross-namespace-resources is false",
            spec.secret
        ));
    }
    let secret = snap
        .secrets
        .get(&(ns.to_string(), spec.secret.clone()))
        .ok_or_else(|| format!("auth-secret {ns}/{} not found", spec.secret))?;
    let users = if spec.map {
        auth_map(secret)
    } else {
        let file = super::tls::secret_value(secret, AUTH_FILE_KEY).ok_or_else(|| {
            format!(
                "auth-secret {ns}/{} has no key {AUTH_FILE_KEY:?}",
                spec.secret
            )
        })?;
        htpasswd(&String::from_utf8_lossy(file))
    };
    if users.is_empty() {
        return Err(format!("auth-secret {ns}/{} holds no user", spec.secret));
    }
    let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", spec.realm))
        .map_err(|_| format!("auth-realm {:?} is not a valid header value", spec.realm))?;
    Ok(BasicAuth {
        challenge,
        users,
        version: format!(
            "{ns}/{}@{}",
            spec.secret,
            secret.metadata.resource_version.as_deref().unwrap_or("")
        )
        .into(),
    })
}

/// An htpasswd file: `user:hash` lines; blank lines and `#` comments skipped. A later line
/// for the same user does not replace the first (nginx reads the file top down).
pub fn htpasswd(text: &str) -> HashMap<String, Box<str>> {
    let mut users = HashMap::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((user, hash)) = line.split_once(':') {
            // nginx ignores anything after a second colon (htpasswd comment field)
            let hash = hash.split(':').next().unwrap_or("");
            users.entry(user.to_string()).or_insert_with(|| hash.into());
        }
    }
    users
}

/// `auth-map`: one key per user, the value its hash.
fn auth_map(secret: &Secret) -> HashMap<String, Box<str>> {
    let mut users = HashMap::new();
    for (k, v) in secret.data.iter().flatten() {
        users.insert(k.clone(), String::from_utf8_lossy(&v.0).trim().into());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        users.entry(k.clone()).or_insert_with(|| v.trim().into());
    }
    users
}

fn external(
    spec: &ExternalSpec,
    source: &'static str,
    namespace: Option<(&str, bool)>,
    snap: &Snapshot,
    resolver: &mut Resolver<'_>,
) -> Result<ExternalAuth, String> {
    if let Some(url) = spec.url.literal() {
        crate::annotations::template::split_url(url)?;
    }
    let target = super::backend::url_target(&spec.url, snap, resolver);
    let set_headers = match (&spec.proxy_set_headers, namespace) {
        (Some(name), Some((ns, cross_ns))) => config_map_headers(ns, name, cross_ns, snap)?,
        _ => Vec::new(),
    };
    Ok(ExternalAuth {
        url: spec.url.clone(),
        target,
        method: spec.method.clone(),
        signin: spec.signin.clone(),
        redirect_param: spec.redirect_param.as_str().into(),
        response_headers: spec.response_headers.clone(),
        request_redirect: spec.request_redirect.clone(),
        always_set_cookie: spec.always_set_cookie,
        set_headers,
        source,
        cache: spec.cache.clone(),
    })
}

/// `auth-proxy-set-headers`: `namespace/name` as ingress-nginx reads it, or a bare name in the
/// Ingress's namespace; another namespace needs `allow-cross-namespace-resources`.
fn config_map_headers(
    namespace: &str,
    value: &str,
    cross_ns: bool,
    snap: &Snapshot,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (ns, name) = value.split_once('/').unwrap_or((namespace, value));
    if ns != namespace && !cross_ns {
        return Err(format!(
            "auth-proxy-set-headers: ConfigMap {ns}/{name} is in another namespace and allow-cross-namespace-resources is false"
        ));
    }
    let cm = snap
        .config_maps
        .get(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| format!("auth-proxy-set-headers: ConfigMap {ns}/{name} not found"))?;
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for (k, v) in cm.data.as_ref().unwrap_or(&empty) {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("auth-proxy-set-headers: {k:?} is not a header name"))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("auth-proxy-set-headers: the value of {k:?} is invalid"))?;
        out.push((name, value));
    }
    Ok(out)
}

/// Whether the ConfigMap's global auth may apply to this Ingress at all (ingress-nginx's
/// `shouldApplyGlobalAuth`): it has no `auth-url` of its own and did not opt out.
pub fn global_applies(a: &AuthAnnotations, config: &ControllerConfig) -> bool {
    config.global_auth_url.is_some() && a.enable_global_auth && a.external.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_lines_comments_and_duplicates() {
        let u = htpasswd("# admins\nfoo:$apr1$x$y\r\n\nbar:{PLAIN}pw:comment\nfoo:second\n");
        assert_eq!(u.len(), 2);
        assert_eq!(&*u["foo"], "$apr1$x$y");
        assert_eq!(&*u["bar"], "{PLAIN}pw");
    }

    #[test]
    fn auth_proxy_set_headers_names_namespace_slash_name_or_a_local_name() {
        let mut snap = Snapshot::default();
        for ns in ["app", "other"] {
            let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
            cm.metadata.namespace = Some(ns.into());
            cm.metadata.name = Some("auth-headers".into());
            cm.data = Some([("My-Custom-Header".to_string(), ns.to_string())].into());
            snap.add_config_map(cm);
        }
        let value = |v: &str, cross: bool| {
            config_map_headers("app", v, cross, &snap).map(|h| h[0].1.to_str().unwrap().to_string())
        };
        assert_eq!(value("auth-headers", false).unwrap(), "app");
        assert_eq!(value("app/auth-headers", false).unwrap(), "app");
        assert!(value("other/auth-headers", false).is_err());
        assert_eq!(value("other/auth-headers", true).unwrap(), "other");
        assert!(value("app/missing", true).is_err());
    }
}
