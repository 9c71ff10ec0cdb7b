//! A look inside the live table, as JSON: `/debug/routes`, `/debug/route?host=H&path=P` and
//! `/debug/diagnostics` on the health port (only with `--enable-debug-endpoints`), and the
//! same offline with `pingress routes --manifests DIR`. Read-only views of a [`RouteTable`].

use std::sync::Arc;

use serde_json::{json, Value};

use crate::diagnostics::Diagnostic;
use crate::route::{path, Route, RouteTable, Server};

fn route_json(how: &str, r: &Route, t: &RouteTable) -> Value {
    let canary = t.canary_for(&r.backend.name).map(|c| {
        let p = &c.policy;
        json!({
            "backend": c.backend.describe(),
            "ingress": format!("{}/{}", c.ingress.namespace, c.ingress.name),
            "header": p.header.as_ref().map(|(h, _)| h.as_str()),
            "cookie": p.cookie,
            "weight": format!("{}/{}", p.weight, p.weight_total),
        })
    });
    json!({
        "match": how,
        "ingress": r.ingress.as_ref().map(|i| format!("{}/{}", i.namespace, i.name)),
        "path": &*r.path,
        "backend": r.backend.describe(),
        "policy": r.policy.describe(),
        "tls": r.tls.describe().trim(),
        "canary": canary,
    })
}

fn server_json(s: &Server, t: &RouteTable) -> Value {
    json!({
        "host": &*s.name,
        "regex_mode": s.is_regex_mode(),
        "app_root": s.app_root.as_deref(),
        "redirect_to_host": s.redirect_to.as_deref(),
        "locations": s.locations().into_iter().map(|(m, r)| route_json(&m, r, t)).collect::<Vec<_>>(),
    })
}

/// `/debug/routes`: every server with its locations in match order, the catch-all last.
pub fn routes(t: &RouteTable) -> Value {
    json!({
        "servers": t.servers().into_iter().map(|s| server_json(s, t)).collect::<Vec<_>>(),
        "aliases": t.aliases().into_iter().map(|(a, h)| json!({"alias": a, "host": h})).collect::<Vec<_>>(),
        "catch_all": server_json(t.catch_all(), t),
    })
}

/// Whether the canary of `r`'s upstream would take a request with `headers`: `canary`,
/// `primary`, or `weight N/T` when only the weighted draw decides; `None` without a canary.
fn canary_decision(t: &RouteTable, r: &Route, headers: &http::HeaderMap) -> Option<String> {
    let c = t.canary_for(&r.backend.name)?;
    let serves = |roll: u32| {
        crate::proxy::canary::serves(
            t.affinity_for(&r.backend.name),
            t.affinity_for(&c.backend.name),
            &c.policy,
            headers,
            |_| roll,
        )
    };
    // the draw is uniform over 1..=total: its two ends tell whether the weight decides
    let total = c.policy.weight_total.max(1);
    Some(match (serves(1), serves(total)) {
        (true, true) => "canary".into(),
        (false, false) => "primary".into(),
        _ => format!(
            "weight {}/{}: the canary with that probability",
            c.policy.weight, c.policy.weight_total
        ),
    })
}

/// `/debug/route?host=H&path=P`: the server and location a request would get, and why.
pub fn route(t: &RouteTable, host: &str, raw_path: &str) -> Value {
    route_with(t, host, raw_path, &http::HeaderMap::new())
}

/// [`route`] for a request with `headers` (`&header=Name:Value`, repeatable): the canary
/// decision they lead to.
pub fn route_with(t: &RouteTable, host: &str, raw_path: &str, headers: &http::HeaderMap) -> Value {
    let server = t.server_for(host);
    let catch_all = std::ptr::eq(server, t.catch_all());
    let Ok(norm) = path::normalize(raw_path) else {
        return json!({"error": format!("{raw_path:?} is not a valid request path (400)")});
    };
    let chosen = server.lookup(&norm);
    let how = server
        .locations()
        .into_iter()
        .find(|(_, r)| Arc::ptr_eq(r, chosen))
        .map(|(m, _)| m)
        .unwrap_or_else(|| "default".into());
    let why = if how == "default" {
        "no location of the server matches: its default (404, or the default backend)".to_string()
    } else if server.is_regex_mode() {
        "regex mode (an Ingress of the host sets use-regex or rewrite-target): the first location whose regex matches, in this order".to_string()
    } else if how.starts_with("exact") {
        "an Exact path equal to the request path wins first".to_string()
    } else {
        "the longest prefix matching the request path".to_string()
    };
    json!({
        "canary_decision": canary_decision(t, chosen, headers),
        "server": if catch_all { "_ (catch-all: no server for this host)".to_string() } else { server.name.to_string() },
        "normalized_path": norm,
        "why": why,
        "route": route_json(&how, chosen, t),
        "server_redirects": {
            "app_root": server.app_root.as_deref(),
            "redirect_to_host": server.redirect_to.as_deref(),
        },
    })
}

/// `/debug/diagnostics`: the current diagnostics.
pub fn diagnostics(d: &[Diagnostic]) -> Value {
    Value::Array(
        d.iter()
            .map(|d| {
                json!({
                    "severity": d.severity.as_str(),
                    "reason": d.reason,
                    "object": d.object.to_string(),
                    "message": d.message,
                })
            })
            .collect(),
    )
}

/// The `header=Name:Value` entries of a query string.
pub fn query_headers(query: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for kv in query.split('&') {
        let Some(v) = kv.strip_prefix("header=") else {
            continue;
        };
        let v = v
            .replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%20", " ")
            .replace("%3D", "=")
            .replace("%3B", ";");
        if let Some((n, val)) = v.split_once(':') {
            if let (Ok(n), Ok(val)) = (
                http::HeaderName::from_bytes(n.trim().as_bytes()),
                http::HeaderValue::from_str(val.trim()),
            ) {
                h.append(n, val);
            }
        }
    }
    h
}

/// The value of `name` in a query string (no percent-decoding beyond `%2F`/`+`: hosts and
/// paths are given as they are).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<std::borrow::Cow<'q, str>> {
    query.split('&').find_map(|kv| {
        let v = kv.strip_prefix(name)?.strip_prefix('=')?;
        Some(if v.contains(['%', '+']) {
            std::borrow::Cow::Owned(v.replace("%2F", "/").replace("%2f", "/").replace('+', " "))
        } else {
            std::borrow::Cow::Borrowed(v)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CompileSettings;
    use crate::snapshot::Snapshot;

    fn table() -> RouteTable {
        let mut s = Snapshot::default();
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: n}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: app-v2, namespace: n}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: re, namespace: n, annotations: {nginx.ingress.kubernetes.io/use-regex: "true"}}
spec:
  ingressClassName: pingress
  rules:
  - host: re.test
    http:
      paths:
      - {path: "/api/v[0-9]+", pathType: ImplementationSpecific, backend: {service: {name: app, port: {number: 80}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: n}
spec:
  ingressClassName: pingress
  rules:
  - host: plain.test
    http:
      paths:
      - {path: /exact, pathType: Exact, backend: {service: {name: app, port: {number: 80}}}}
      - {path: /shop, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain-canary
  namespace: n
  annotations: {nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-by-header: X-Canary}
spec:
  ingressClassName: pingress
  rules:
  - host: plain.test
    http:
      paths:
      - {path: /shop, pathType: Prefix, backend: {service: {name: app-v2, port: {number: 80}}}}
"#;
        crate::source::files::load_text("t.yaml", text, &mut s);
        crate::compile::compile(&s, &CompileSettings::default(), None).table
    }

    #[test]
    fn which_route_and_why() {
        let t = table();
        let r = route(&t, "re.test", "/api/v2/x");
        assert_eq!(r["server"], "re.test");
        assert!(r["route"]["match"]
            .as_str()
            .unwrap()
            .starts_with("regex#0 ~* ^/api/v[0-9]+"));
        assert!(r["why"].as_str().unwrap().starts_with("regex mode"));
        assert_eq!(r["route"]["ingress"], "n/re");

        let r = route(&t, "PLAIN.test:8080", "/exact");
        assert_eq!(r["route"]["match"], "exact /exact");
        let r = route(&t, "plain.test", "/shop/cart");
        assert_eq!(r["route"]["match"], "prefix /shop");
        assert_eq!(r["route"]["canary"]["header"], "x-canary");
        assert_eq!(r["canary_decision"], "primary");
        let h = query_headers("host=plain.test&header=X-Canary:always");
        let r = route_with(&t, "plain.test", "/shop", &h);
        assert_eq!(r["canary_decision"], "canary");
        // the canary covers every route of its primary's Service (re.test's too), as
        // ingress-nginx merges it onto the upstream; the default backend has none
        assert_eq!(
            route(&t, "re.test", "/api/v1")["canary_decision"],
            "primary"
        );
        assert!(route(&t, "nobody.test", "/")["canary_decision"].is_null());
        assert_eq!(r["route"]["canary"]["ingress"], "n/plain-canary");
        let r = route(&t, "plain.test", "/nothing");
        assert_eq!(r["route"]["match"], "default");
        assert!(r["why"].as_str().unwrap().starts_with("no location"));

        let r = route(&t, "nobody.test", "/");
        assert!(r["server"].as_str().unwrap().starts_with("_ (catch-all"));
        assert!(route(&t, "re.test", "no-slash")["error"].is_string());
    }

    #[test]
    fn every_server_in_order() {
        let v = routes(&table());
        let hosts: Vec<&str> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["host"].as_str().unwrap())
            .collect();
        assert_eq!(hosts, ["plain.test", "re.test"]);
        let re = &v["servers"][1];
        assert_eq!(re["regex_mode"], true);
        let matches: Vec<&str> = re["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["match"].as_str().unwrap())
            .collect();
        assert_eq!(matches.len(), 3, "{matches:?}");
        assert_eq!(matches[2], "default");
        assert_eq!(v["catch_all"]["host"], "_");
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("host=a.test&path=%2Fx%2Fy", "path").unwrap(),
            "/x/y"
        );
        assert_eq!(
            query_param("host=a.test&path=/x", "host").unwrap(),
            "a.test"
        );
        assert!(query_param("host=a", "path").is_none());
    }
}
