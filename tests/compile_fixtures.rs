//! Compile fixtures: every `tests/fixtures/*.yaml` is read by the standalone loader, compiled,
//! and compared with `*.expected`: the diagnostics, a stable dump of the table, and the route
//! each probe resolves to. Fixture comments set the inputs:
//!   `# settings: watch-ingress-without-class, disable-catch-all, ingress-class=X, controller-class=Y,
//!                default-backend-service=ns/name, default-ssl-certificate=ns/name`
//!   `# now: UNIX_SECONDS` (the snapshot time for certificate validity; default 2030-01-01)
//!   `# probe: HOST PATH` (HOST `-` = no Host header)
//! Regenerate after an intended change with `PINGRESS_BLESS=1 cargo test --test compile_fixtures`
//! and review the diff.

use std::path::{Path, PathBuf};

use pingress::compile::compile;
use pingress::route::path::normalize;
use pingress::settings::CompileSettings;
use pingress::snapshot::Snapshot;
use pingress::source::files::load_text;

fn settings_from(text: &str) -> CompileSettings {
    let mut s = CompileSettings::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# settings:") else {
            continue;
        };
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                None if item == "watch-ingress-without-class" => {
                    s.watch_ingress_without_class = true
                }
                None if item == "disable-catch-all" => s.disable_catch_all = true,
                Some(("ingress-class", v)) => s.ingress_class = v.into(),
                Some(("controller-class", v)) => s.controller_class = v.into(),
                Some(("default-backend-service", v)) => {
                    let (ns, n) = v.split_once('/').expect("ns/name");
                    s.default_backend_service = Some((ns.into(), n.into()));
                }
                Some(("default-ssl-certificate", v)) => {
                    let (ns, n) = v.split_once('/').expect("ns/name");
                    s.default_ssl_certificate = Some((ns.into(), n.into()));
                }
                _ => panic!("unknown fixture setting {item:?}"),
            }
        }
    }
    s
}

/// Every `tests/fixtures/*.yaml`: (path, file name, text), in name order.
fn fixtures() -> Vec<(PathBuf, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (p, name, text)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(out.len() >= 6, "fixtures missing");
    out
}

/// The fixture's objects, with its `# now:` as the snapshot time.
fn snapshot_from(name: &str, text: &str) -> Snapshot {
    let mut snap = Snapshot::default();
    load_text(name, text, &mut snap);
    snap.now = Some(
        text.lines()
            .find_map(|l| l.strip_prefix("# now:"))
            .map(|v| v.trim().parse().expect("# now: UNIX_SECONDS"))
            .unwrap_or(1_893_456_000),
    );
    snap
}

fn render(name: &str, text: &str) -> String {
    let snap = snapshot_from(name, text);
    let settings = settings_from(text);
    let c = compile(&snap, &settings, None);
    let mut out = String::new();
    out.push_str("== diagnostics\n");
    for d in snap.diagnostics.iter().chain(c.diagnostics.iter()) {
        out.push_str(&format!("{d}\n"));
    }
    out.push_str(&format!("== table ({} ingresses served)\n", c.served));
    out.push_str(&c.table.dump());
    out.push_str("== probes\n");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# probe:") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let host = it.next().expect("probe host");
        let path = it.next().expect("probe path");
        let host = if host == "-" { "" } else { host };
        let result = match normalize(path) {
            Ok(p) => c.table.lookup(host, &p).describe(),
            Err(_) => "400 bad path".to_string(),
        };
        out.push_str(&format!("{host} {path} -> {result}\n"));
    }
    out
}

#[test]
fn fixtures_match_expected() {
    let bless = std::env::var_os("PINGRESS_BLESS").is_some();
    let mut failures = Vec::new();
    for (path, name, text) in fixtures() {
        let got = render(&name, &text);
        let exp_path = path.with_extension("expected");
        if bless {
            std::fs::write(&exp_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&exp_path).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}\n--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compile_is_deterministic() {
    for (path, _, text) in fixtures() {
        assert_eq!(render("f", &text), render("f", &text), "{}", path.display());
    }
}

/// Diagnostics + table dump: what must not depend on whether units were reused.
fn outcome(snap: &Snapshot, c: &pingress::compile::Compiled) -> String {
    let mut out = String::new();
    for d in snap.diagnostics.iter().chain(c.diagnostics.iter()) {
        out.push_str(&format!("{d}\n"));
    }
    out.push_str(&format!("served {}\n", c.served));
    out.push_str(&c.table.dump());
    out
}

fn fixture_snapshots() -> Vec<(String, Snapshot, CompileSettings)> {
    let mut out = Vec::new();
    for (_, name, text) in fixtures() {
        let mut snap = snapshot_from(&name, &text);
        macro_rules! stamp {
            ($($f:ident),*) => {$(
                for o in std::sync::Arc::make_mut(&mut snap.$f).values_mut() {
                    std::sync::Arc::make_mut(o).metadata.resource_version = Some("1".into());
                }
            )*};
        }
        stamp!(
            ingresses,
            ingress_classes,
            services,
            endpoint_slices,
            secrets,
            config_maps
        );
        out.push((name, snap, settings_from(&text)));
    }
    out
}

/// Compile `snap` from scratch and on top of `prev`; both must give the same diagnostics and
/// table. Returns the incremental result.
fn same_as_scratch(
    what: &str,
    snap: &Snapshot,
    settings: &CompileSettings,
    prev: pingress::compile::Prev<'_>,
) -> pingress::compile::Compiled {
    let scratch = compile(snap, settings, None);
    let incremental = compile(snap, settings, Some(prev));
    assert_eq!(
        outcome(snap, &incremental),
        outcome(snap, &scratch),
        "{what}: incremental compile differs from a compile from scratch"
    );
    incremental
}

#[test]
fn incremental_compile_equals_compile_from_scratch() {
    let mut reused_total = 0;
    // single-Ingress changes compiled by rebuilding only their hosts (compile::incremental)
    let mut host_local = 0;
    // Service and EndpointSlice changes compiled the same way (pod churn)
    let mut backends_local = 0;
    for (name, snap, settings) in fixture_snapshots() {
        let base = compile(&snap, &settings, None);
        let units = base.cache.len();

        // Nothing changed: every unit is reused.
        let again = same_as_scratch(&format!("{name}: unchanged"), &snap, &settings, base.prev());
        assert_eq!(again.cache.reused, units, "{name}: unchanged");
        reused_total += units;

        // One Ingress at a time: a new version (same content) and then gone.
        for key in snap.ingresses.keys() {
            let mut s = snap.clone();
            std::sync::Arc::make_mut(
                std::sync::Arc::make_mut(&mut s.ingresses)
                    .get_mut(key)
                    .unwrap(),
            )
            .metadata
            .resource_version = Some("2".into());
            let c = same_as_scratch(
                &format!("{name}: {key:?} new version"),
                &s,
                &settings,
                base.prev(),
            );
            let served = usize::from(base.cache.contains(key));
            assert_eq!(
                c.cache.reused,
                units - served,
                "{name}: {key:?} new version"
            );
            host_local += usize::from(c.cache.incremental);
            let mut s = snap.clone();
            std::sync::Arc::make_mut(&mut s.ingresses).remove(key);
            let c = same_as_scratch(
                &format!("{name}: {key:?} removed"),
                &s,
                &settings,
                base.prev(),
            );
            host_local += usize::from(c.cache.incremental);
            // and back again on top of the table without it
            let back = same_as_scratch(
                &format!("{name}: {key:?} added back"),
                &snap,
                &settings,
                c.prev(),
            );
            host_local += usize::from(back.cache.incremental);
        }
        // Backends: an EndpointSlice with one more ready address, a Service removed.
        for key in snap.endpoint_slices.keys() {
            let mut s = snap.clone();
            let es = std::sync::Arc::make_mut(
                std::sync::Arc::make_mut(&mut s.endpoint_slices)
                    .get_mut(key)
                    .unwrap(),
            );
            es.metadata.resource_version = Some("2".into());
            es.endpoints
                .push(k8s_openapi::api::discovery::v1::Endpoint {
                    addresses: vec!["10.255.0.1".into()],
                    ..Default::default()
                });
            let c = same_as_scratch(
                &format!("{name}: slice {key:?} grew"),
                &s,
                &settings,
                base.prev(),
            );
            backends_local += usize::from(c.cache.incremental);
        }
        for key in snap.services.keys() {
            let mut s = snap.clone();
            std::sync::Arc::make_mut(&mut s.services).remove(key);
            let c = same_as_scratch(
                &format!("{name}: service {key:?} removed"),
                &s,
                &settings,
                base.prev(),
            );
            backends_local += usize::from(c.cache.incremental);
        }
        // A new ConfigMap or Secret version recompiles everything.
        for key in snap.config_maps.keys().chain(snap.secrets.keys()) {
            let mut s = snap.clone();
            if let Some(cm) = std::sync::Arc::make_mut(&mut s.config_maps).get_mut(key) {
                std::sync::Arc::make_mut(cm).metadata.resource_version = Some("2".into());
            }
            if let Some(sec) = std::sync::Arc::make_mut(&mut s.secrets).get_mut(key) {
                std::sync::Arc::make_mut(sec).metadata.resource_version = Some("2".into());
            }
            let c = same_as_scratch(
                &format!("{name}: {key:?} new version"),
                &s,
                &settings,
                base.prev(),
            );
            assert_eq!(c.cache.reused, 0, "{name}: {key:?}");
        }
    }
    assert!(
        reused_total > 20,
        "the fixtures exercise reuse ({reused_total} units)"
    );
    assert!(
        host_local > 50,
        "the fixtures exercise the incremental compile ({host_local} changes)"
    );
    assert!(
        backends_local > 5,
        "Service and EndpointSlice changes take the incremental compile ({backends_local})"
    );
}

/// `service-upstream` is decided by the oldest Ingress that names the upstream: when that
/// Ingress goes, a cached newer Ingress must not keep the ClusterIP backend it got from it.
#[test]
fn incremental_compile_follows_the_oldest_ingress_of_an_upstream() {
    let text = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: ns}
spec: {clusterIP: 10.0.0.9, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: ns, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.1.0.1], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: old
  namespace: ns
  creationTimestamp: "2020-01-01T00:00:00Z"
  annotations: {nginx.ingress.kubernetes.io/service-upstream: "true"}
spec:
  ingressClassName: pingress
  rules: [{host: old.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: new, namespace: ns, creationTimestamp: "2021-01-01T00:00:00Z"}
spec:
  ingressClassName: pingress
  rules: [{host: new.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}}]
"#;
    let mut snap = Snapshot::default();
    load_text("t.yaml", text, &mut snap);
    for o in std::sync::Arc::make_mut(&mut snap.ingresses).values_mut() {
        std::sync::Arc::make_mut(o).metadata.resource_version = Some("1".into());
    }
    let settings = CompileSettings::default();
    let base = compile(&snap, &settings, None);
    let before = base.table.lookup("new.test", "/").backend.describe();
    assert!(before.contains("10.0.0.9:80"), "{before}");
    let mut s = snap.clone();
    std::sync::Arc::make_mut(&mut s.ingresses).remove(&("ns".to_string(), "old".to_string()));
    let c = same_as_scratch("old removed", &s, &settings, base.prev());
    let after = c.table.lookup("new.test", "/").backend.describe();
    assert!(after.contains("10.1.0.1:8080"), "{after}");
    assert_eq!(c.cache.reused, 0);
}

/// A long chain of incremental compiles (each on top of the last result) stays the same as
/// compiling from scratch: every Ingress removed one after another, then added back, then
/// each given a new version.
#[test]
fn chained_incremental_compiles_equal_compiles_from_scratch() {
    for (name, snap, settings) in fixture_snapshots() {
        let keys: Vec<_> = snap.ingresses.keys().cloned().collect();
        let mut last = compile(&snap, &settings, None);
        let mut s = snap.clone();
        for key in &keys {
            std::sync::Arc::make_mut(&mut s.ingresses).remove(key);
            last = same_as_scratch(&format!("{name}: -{key:?}"), &s, &settings, last.prev());
        }
        for key in keys.iter().rev() {
            let ing = snap.ingresses[key].clone();
            std::sync::Arc::make_mut(&mut s.ingresses).insert(key.clone(), ing);
            last = same_as_scratch(&format!("{name}: +{key:?}"), &s, &settings, last.prev());
        }
        for (i, key) in keys.iter().enumerate() {
            let ings = std::sync::Arc::make_mut(&mut s.ingresses);
            let ing = std::sync::Arc::make_mut(ings.get_mut(key).unwrap());
            ing.metadata.resource_version = Some(format!("v{i}"));
            last = same_as_scratch(&format!("{name}: ~{key:?}"), &s, &settings, last.prev());
        }
        // EndpointSlices one by one: each grows by an address, then each goes (each compile's
        // EndpointSlice index is the previous one patched)
        let slice_keys: Vec<_> = s.endpoint_slices.keys().cloned().collect();
        for key in &slice_keys {
            let slices = std::sync::Arc::make_mut(&mut s.endpoint_slices);
            let es = std::sync::Arc::make_mut(slices.get_mut(key).unwrap());
            es.endpoints
                .push(k8s_openapi::api::discovery::v1::Endpoint {
                    addresses: vec!["10.255.0.2".into()],
                    ..Default::default()
                });
            last = same_as_scratch(
                &format!("{name}: slice ~{key:?}"),
                &s,
                &settings,
                last.prev(),
            );
        }
        for key in &slice_keys {
            std::sync::Arc::make_mut(&mut s.endpoint_slices).remove(key);
            last = same_as_scratch(
                &format!("{name}: slice -{key:?}"),
                &s,
                &settings,
                last.prev(),
            );
        }
    }
}

/// Cluster mode prunes Services and EndpointSlices as they arrive
/// (`pingress::source::kube::prune`): compiling objects carrying everything pruning drops
/// (selectors, labels, annotations, owners, status, pod references, topology) must give the
/// same table and diagnostics as compiling them pruned.
#[test]
fn pruned_services_and_endpoint_slices_compile_the_same() {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    use k8s_openapi::api::discovery::v1::{EndpointHints, ForZone};
    use pingress::source::kube::prune;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let map = |pairs: &[(&str, &str)]| -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let owner = || {
        Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: "owner".into(),
                uid: "u1".into(),
                ..Default::default()
            },
        ])
    };
    let mut checked = 0;
    for (name, mut snap, settings) in fixture_snapshots() {
        for s in Arc::make_mut(&mut snap.services).values_mut() {
            let s = Arc::make_mut(s);
            s.metadata.labels = map(&[("app.kubernetes.io/name", "web"), ("team", "a")]);
            s.metadata.annotations = map(&[("meta.helm.sh/release-name", "web")]);
            s.metadata.owner_references = owner();
            s.metadata.uid = Some("6f1c0e2a".into());
            s.metadata.resource_version = Some("4711".into());
            if let Some(spec) = s.spec.as_mut() {
                spec.selector = map(&[("app", "web")]);
                spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
                spec.ip_families = Some(vec!["IPv4".into()]);
                spec.ip_family_policy = Some("SingleStack".into());
                spec.session_affinity = Some("ClientIP".into());
                spec.internal_traffic_policy = Some("Cluster".into());
                spec.publish_not_ready_addresses = Some(true);
            }
            s.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some("192.0.2.1".into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            });
        }
        for e in Arc::make_mut(&mut snap.endpoint_slices).values_mut() {
            let e = Arc::make_mut(e);
            let labels = e.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.insert("endpointslice.kubernetes.io/managed-by".into(), "c".into());
            e.metadata.annotations = map(&[("endpoints.kubernetes.io/last-change", "t")]);
            e.metadata.owner_references = owner();
            e.metadata.uid = Some("7a2b".into());
            e.metadata.resource_version = Some("4712".into());
            for ep in &mut e.endpoints {
                ep.node_name = Some("node-1".into());
                ep.zone = Some("zone-a".into());
                ep.target_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some("web-1".into()),
                    ..Default::default()
                });
                ep.hints = Some(EndpointHints {
                    for_zones: Some(vec![ForZone {
                        name: "zone-a".into(),
                    }]),
                    ..Default::default()
                });
            }
        }
        let mut pruned = snap.clone();
        for s in Arc::make_mut(&mut pruned.services).values_mut() {
            prune::service(Arc::make_mut(s));
        }
        for e in Arc::make_mut(&mut pruned.endpoint_slices).values_mut() {
            prune::endpoint_slice(Arc::make_mut(e));
            checked += 1;
        }
        assert_eq!(
            outcome(&pruned, &compile(&pruned, &settings, None)),
            outcome(&snap, &compile(&snap, &settings, None)),
            "{name}: pruning changed what compiles"
        );
    }
    assert!(checked > 5, "the fixtures have EndpointSlices ({checked})");
}

/// Ingresses without annotations of ours share one parsed annotation set and one policy (at
/// 10k Ingresses each copy was 1.7 kB + 480 B); one with annotations has its own, and the
/// ConfigMap's settings reach the shared policy.
#[test]
fn ingresses_without_annotations_share_their_plan_annotations_and_policy() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pingress}
spec: {controller: k8s.io/pingress}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ingress}
data: {proxy-read-timeout: \"33\"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: app, annotations: {cert-manager.io/cluster-issuer: x}}
spec: {ingressClassName: pingress, rules: [{host: a.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b, namespace: app}
spec: {ingressClassName: pingress, rules: [{host: b.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: c, namespace: app, annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: \"7\"}}
spec: {ingressClassName: pingress, rules: [{host: c.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]}
";
    let snap = snapshot_from("share.yaml", text);
    let settings = CompileSettings {
        configmap: Some(("ingress".into(), "cfg".into())),
        ..CompileSettings::default()
    };
    let c = compile(&snap, &settings, None);
    assert_eq!(c.served, 3, "{:?}", c.diagnostics);
    let policy = |h: &str| c.table.lookup(h, "/").policy.clone();
    let (a, b, own) = (policy("a.test"), policy("b.test"), policy("c.test"));
    assert!(std::sync::Arc::ptr_eq(&a, &b), "a and b share a policy");
    assert_eq!(a.read_timeout, std::time::Duration::from_secs(33));
    assert!(!std::sync::Arc::ptr_eq(&a, &own));
    assert_eq!(own.read_timeout, std::time::Duration::from_secs(7));
    let plan = |n: &str| {
        let unit = c.cache.get(&("app".into(), n.into())).expect("unit");
        unit.outcome
            .as_ref()
            .expect("planned")
            .plan
            .annotations
            .clone()
    };
    assert!(std::sync::Arc::ptr_eq(&plan("a"), &plan("b")));
    assert!(!std::sync::Arc::ptr_eq(&plan("a"), &plan("c")));
}
