//! deploy/: every file parses into the k8s-openapi type of its kind, kustomization lists
//! exactly the files, RBAC grants exactly what the code uses (src/source/kube.rs
//! PERMISSIONS), and the Deployment's flags, probes, security and shutdown timing are right.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use pingress::settings::Cli;
use pingress::source::kube::{Scope, PERMISSIONS};
use serde_json::Value;

#[derive(Default)]
struct Objects {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
    ingress_classes: Vec<IngressClass>,
    pdbs: Vec<PodDisruptionBudget>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn documents(text: &str) -> Vec<String> {
    text.split("\n---")
        .map(|d| d.trim_start_matches("---").to_string())
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(file: &str, doc: &str) -> T {
    serde_saphyr::from_str(doc).unwrap_or_else(|e| {
        panic!(
            "{file}: does not parse as {}: {e}",
            std::any::type_name::<T>()
        )
    })
}

fn load() -> Objects {
    let kust = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let k: Value = serde_saphyr::from_str(&kust).unwrap();
    assert_eq!(k["kind"], "Kustomization");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml must list every file in deploy/"
    );
    let mut o = Objects::default();
    for file in &listed {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        for doc in documents(&text) {
            let head: Value = serde_saphyr::from_str(&doc).unwrap();
            let kind = head["kind"].as_str().unwrap_or_default();
            match kind {
                "Namespace" => o.namespaces.push(parse(file, &doc)),
                "ServiceAccount" => o.service_accounts.push(parse(file, &doc)),
                "ClusterRole" => o.cluster_roles.push(parse(file, &doc)),
                "ClusterRoleBinding" => o.cluster_role_bindings.push(parse(file, &doc)),
                "Role" => o.roles.push(parse(file, &doc)),
                "RoleBinding" => o.role_bindings.push(parse(file, &doc)),
                "Deployment" => o.deployments.push(parse(file, &doc)),
                "Service" => o.services.push(parse(file, &doc)),
                "ConfigMap" => o.config_maps.push(parse(file, &doc)),
                "IngressClass" => o.ingress_classes.push(parse(file, &doc)),
                "PodDisruptionBudget" => o.pdbs.push(parse(file, &doc)),
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    o
}

/// (group, resource, verb) grants.
type Grants = BTreeSet<(String, String, String)>;

/// (group, resource, verb) -> granted, from a rule list.
fn grants(rules: &[PolicyRule]) -> Grants {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn rbac(o: &Objects) -> (Grants, Grants) {
    let sa = &o.service_accounts[0];
    let sa_name = sa.metadata.name.clone().unwrap();
    let sa_ns = sa.metadata.namespace.clone().unwrap();
    let bound = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == sa_name
                && s.namespace.as_deref() == Some(sa_ns.as_str())
        })
    };
    let mut cluster = BTreeSet::new();
    for b in o
        .cluster_role_bindings
        .iter()
        .filter(|b| bound(&b.subjects))
    {
        let role = o
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str()))
            .expect("bound ClusterRole exists");
        cluster.extend(grants(role.rules.as_deref().unwrap_or_default()));
    }
    let mut local = BTreeSet::new();
    for b in o.role_bindings.iter().filter(|b| bound(&b.subjects)) {
        assert_eq!(b.metadata.namespace.as_deref(), Some(sa_ns.as_str()));
        let role = o
            .roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str()))
            .expect("bound Role exists");
        local.extend(grants(role.rules.as_deref().unwrap_or_default()));
    }
    (cluster, local)
}

#[test]
fn every_deploy_file_parses_into_its_kind() {
    let o = load();
    assert_eq!(o.namespaces.len(), 1);
    assert_eq!(o.deployments.len(), 1);
    assert_eq!(o.services.len(), 1);
    assert_eq!(o.pdbs.len(), 1);
    assert_eq!(
        o.ingress_classes[0].metadata.name.as_deref(),
        Some("pingress")
    );
    assert_eq!(o.config_maps.len(), 1);
}

#[test]
fn rbac_covers_every_call_the_code_makes_and_nothing_more() {
    let o = load();
    let (cluster, local) = rbac(&o);
    let mut needed = BTreeSet::new();
    for p in PERMISSIONS {
        for v in p.verbs {
            let key = (p.group.to_string(), p.resource.to_string(), v.to_string());
            let ok = match p.scope {
                Scope::Cluster => cluster.contains(&key),
                Scope::ControllerNamespace => local.contains(&key) || cluster.contains(&key),
            };
            assert!(
                ok,
                "deploy/ RBAC lacks {v} on {}/{} ({}), used for {}",
                p.group,
                p.resource,
                if p.scope == Scope::Cluster {
                    "cluster-wide"
                } else {
                    "controller namespace"
                },
                p.used_for
            );
            needed.insert(key);
        }
    }
    let extra: Vec<_> = cluster
        .union(&local)
        .filter(|g| !needed.contains(*g))
        .collect();
    assert!(
        extra.is_empty(),
        "deploy/ grants more than the code uses: {extra:?}"
    );
}

#[test]
fn deployment_is_hardened_and_its_flags_parse() {
    let o = load();
    let d = &o.deployments[0];
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("pingress"));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    // the flags are real pingress flags and valid together
    let mut argv = vec!["pingress".to_string()];
    argv.extend(c.args.clone().unwrap_or_default());
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("deployment args: {e}"));
    cli.check_common().unwrap();
    cli.kube_settings().unwrap();
    assert!(cli.manifests.is_none());
    // unprivileged ports: no NET_BIND_SERVICE needed
    assert!(cli.http_port >= 1024 && cli.https_port >= 1024);
    assert!(caps.add.is_none(), "no capability is added");

    // probes on the health port
    let port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    };
    assert_eq!(port("healthz"), Some(cli.healthz_port as i32));
    assert_eq!(port("http"), Some(cli.http_port as i32));
    assert_eq!(port("https"), Some(cli.https_port as i32));
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    let res = c.resources.as_ref().unwrap();
    assert!(res.requests.is_some() && res.limits.is_some());

    // the connection cap times the measured worst cost of a held connection fits the memory
    // limit (benches/idle-conns.sh: a slow request head about 28 KiB; 32 MiB baseline)
    let threads = cli
        .threads
        .expect("deploy/ pins --threads so the cap is known");
    let cfg = &o.config_maps[0];
    let mut diags = Vec::new();
    let parsed = pingress::configmap::parse(
        cfg.data.as_ref(),
        &pingress::diagnostics::ObjectRef::new("ConfigMap", "pingress", "pingress"),
        &mut diags,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let cap = (parsed.max_worker_connections * threads) as u64;
    assert!(cap > 0, "deploy/ keeps a connection cap");
    let limit = res.limits.as_ref().unwrap()["memory"].0.clone();
    let limit_mib: u64 = limit.strip_suffix("Mi").unwrap().parse().unwrap();
    let worst_mib = (cap * 28 + 32 * 1024) / 1024;
    assert!(
        worst_mib < limit_mib,
        "{cap} connections x 28 KiB + 32 MiB = {worst_mib} MiB is over the {limit} limit"
    );

    // shutdown timing: preStop sleep + drain + runtime stop fits the termination grace
    let cmd = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap();
    assert_eq!(cmd[0], "/bin/sleep");
    let pre_stop: u64 = cmd[1].parse().unwrap();
    let total = pre_stop
        + cli.shutdown_grace_period
        + cli.post_shutdown_grace_period
        + pingress::server::RUNTIME_SHUTDOWN_TIMEOUT;
    let tgp = pod.termination_grace_period_seconds.unwrap() as u64;
    assert!(
        total < tgp,
        "preStop {pre_stop} + grace {} + post grace {} + 1 must be < terminationGracePeriodSeconds {tgp}",
        cli.shutdown_grace_period,
        cli.post_shutdown_grace_period
    );

    // the Role's resourceNames match the flags
    let (_, local) = rbac(&o);
    assert!(!local.is_empty());
    let names: BTreeMap<String, Vec<String>> = o.roles[0]
        .rules
        .iter()
        .flatten()
        .filter_map(|r| Some((r.resources.as_ref()?[0].clone(), r.resource_names.clone()?)))
        .collect();
    let ks = cli.kube_settings().unwrap();
    assert_eq!(names["leases"], vec![ks.election_id.clone()]);
    assert_eq!(names["configmaps"], vec![ks.configmap.clone().unwrap().1]);
    // and the objects they name are here
    let (cns, cname) = ks.configmap.unwrap();
    assert!(o
        .config_maps
        .iter()
        .any(|m| m.metadata.namespace.as_deref() == Some(cns.as_str())
            && m.metadata.name.as_deref() == Some(cname.as_str())));
    let (sns, sname) = ks.publish_service.unwrap();
    let svc = o
        .services
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(sns.as_str())
                && s.metadata.name.as_deref() == Some(sname.as_str())
        })
        .expect("--publish-service exists in deploy/");
    let ss = svc.spec.as_ref().unwrap();
    assert_eq!(ss.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<i32> = ss.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, vec![80, 443]);
}

/// Apply the `add .../-` operations of an RFC 6902 patch (all deploy/webhook uses) to `doc`.
fn json_patch_add(doc: &mut Value, ops: &Value) {
    for op in ops.as_array().unwrap() {
        assert_eq!(op["op"], "add", "deploy/webhook patches only add");
        let path = op["path"].as_str().unwrap();
        let list_path = path.strip_suffix("/-").expect("appends to a list");
        let list = doc
            .pointer_mut(list_path)
            .unwrap_or_else(|| panic!("{list_path} exists in the base Deployment"));
        list.as_array_mut().unwrap().push(op["value"].clone());
    }
}

#[test]
fn the_webhook_overlay_registers_the_path_port_and_certificate_pingress_serves() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    use pingress::source::kube::webhook::{PATH, REVIEW_BUDGET};
    let dir = deploy_dir().join("webhook");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let k: Value = serde_saphyr::from_str(&read("kustomization.yaml")).unwrap();
    assert_eq!(k["resources"][0], "../", "the overlay builds on deploy/");
    // the Deployment as the overlay makes it
    let base = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    let mut d: Value = serde_saphyr::from_str(&base).unwrap();
    let ops: Value = serde_saphyr::from_str(&read("deployment-patch.yaml")).unwrap();
    json_patch_add(&mut d, &ops);
    let d: Deployment = serde_json::from_value(d).unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let mut argv = vec!["pingress".to_string()];
    argv.extend(c.args.clone().unwrap_or_default());
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("overlay args: {e}"));
    let ws = cli
        .kube_settings()
        .unwrap()
        .webhook
        .expect("webhook enabled");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "admission-cert")
        .unwrap();
    assert!(ws.certificate.starts_with(&mount.mount_path));
    assert!(ws.key.starts_with(&mount.mount_path));
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "admission-cert")
        .unwrap();
    let secret = vol.secret.as_ref().unwrap().secret_name.clone().unwrap();
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("webhook"))
        .unwrap();
    assert_eq!(port.container_port, i32::from(ws.addr.port()));
    // the Service and the registration point at it
    let docs = documents(&read("webhook.yaml"));
    let svc: Service = parse("webhook.yaml", &docs[0]);
    let vwc: ValidatingWebhookConfiguration = parse("webhook.yaml", &docs[1]);
    let sp = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        sp.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("webhook".into()))
    );
    let hook = &vwc.webhooks.unwrap()[0];
    let cc = hook.client_config.service.as_ref().unwrap();
    assert_eq!(cc.name, svc.metadata.name.clone().unwrap());
    assert_eq!(cc.path.as_deref(), Some(PATH));
    assert_eq!(cc.port, Some(sp.port));
    assert_eq!(hook.admission_review_versions, vec!["v1".to_string()]);
    assert_eq!(hook.side_effects, "None");
    let timeout = hook.timeout_seconds.unwrap();
    assert!(
        i64::from(timeout) > REVIEW_BUDGET.as_secs() as i64,
        "pingress answers (or refuses) before the API server gives up"
    );
    let rules = hook.rules.as_ref().unwrap();
    assert!(rules[0]
        .resources
        .as_ref()
        .unwrap()
        .contains(&"ingresses".to_string()));
    // gen-cert.sh creates the Secret the volume mounts, for the Service's DNS name
    let script = read("gen-cert.sh");
    assert!(
        script.contains(&format!("SVC=${{SVC:-{secret}}}")),
        "{secret}"
    );
    assert_eq!(secret, cc.name);
}

#[test]
fn the_namespaced_overlay_grants_the_watched_namespace_what_the_base_grants_cluster_wide() {
    let dir = deploy_dir().join("namespaced");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let k: Value = serde_saphyr::from_str(&read("kustomization.yaml")).unwrap();
    assert_eq!(k["resources"][0], "../");
    // the ClusterRole the overlay leaves: IngressClasses only
    let cluster_rules: Value =
        serde_saphyr::from_str(k["patches"][0]["patch"].as_str().unwrap()).unwrap();
    let cluster_rules: Vec<PolicyRule> =
        serde_json::from_value(cluster_rules[0]["value"].clone()).unwrap();
    let cluster = grants(&cluster_rules);
    // the flag and the Role's namespace agree
    let deploy_patch: Value =
        serde_saphyr::from_str(k["patches"][1]["patch"].as_str().unwrap()).unwrap();
    let flag = deploy_patch[0]["value"].as_str().unwrap();
    let watched = flag
        .strip_prefix("--watch-namespace=")
        .expect("--watch-namespace");
    let docs = documents(&read("rbac.yaml"));
    let role: Role = parse("rbac.yaml", &docs[0]);
    let binding: RoleBinding = parse("rbac.yaml", &docs[1]);
    assert_eq!(role.metadata.namespace.as_deref(), Some(watched));
    assert_eq!(binding.metadata.namespace.as_deref(), Some(watched));
    assert_eq!(binding.role_ref.name, role.metadata.name.clone().unwrap());
    let sa = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (sa.name.as_str(), sa.namespace.as_deref()),
        ("pingress", Some("pingress"))
    );
    let in_watched = grants(role.rules.as_deref().unwrap_or_default());
    // the base's controller-namespace Role is unchanged
    let (_, local) = rbac(&load());
    for p in PERMISSIONS {
        for v in p.verbs {
            let key = (p.group.to_string(), p.resource.to_string(), v.to_string());
            let ok = match (p.scope, p.resource) {
                // only with --watch-namespace-selector, which cannot be combined with it
                (_, "namespaces") => true,
                (Scope::Cluster, "ingressclasses") => cluster.contains(&key),
                (Scope::Cluster, _) => in_watched.contains(&key),
                (Scope::ControllerNamespace, _) => local.contains(&key),
            };
            assert!(
                ok,
                "namespaced overlay lacks {v} on {}/{}",
                p.group, p.resource
            );
        }
    }
    assert_eq!(
        cluster.len(),
        2,
        "only list/watch on ingressclasses cluster-wide"
    );
    // the overlay's flags are valid together
    let mut argv = vec!["pingress".to_string()];
    let base: Deployment = parse(
        "deployment.yaml",
        &std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap(),
    );
    argv.extend(
        base.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap_or_default(),
    );
    argv.push(flag.to_string());
    let cli = Cli::try_parse_from(&argv).unwrap();
    assert_eq!(
        cli.kube_settings().unwrap().watch_namespace.as_deref(),
        Some(watched)
    );
}

/// deploy/shadow: the Deployment's args (one `replace`) serve ingress-nginx's class with its
/// ConfigMap, never write status, and use their own Lease name; the extra Role lets pingress
/// read that one ConfigMap in ingress-nginx's namespace, nothing more.
#[test]
fn the_shadow_overlay_serves_ingress_nginx_s_class_without_writing_status() {
    let dir = deploy_dir().join("shadow");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let k: Value = serde_saphyr::from_str(&read("kustomization.yaml")).unwrap();
    assert_eq!(k["resources"][0], "../", "the overlay builds on deploy/");
    let ops: Value = serde_saphyr::from_str(&read("deployment-patch.yaml")).unwrap();
    let op = &ops[0];
    assert_eq!(op["op"], "replace");
    assert_eq!(op["path"], "/spec/template/spec/containers/0/args");
    let mut argv = vec!["pingress".to_string()];
    argv.extend(
        op["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string()),
    );
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("shadow args: {e}"));
    let cs = cli.compile_settings().unwrap();
    assert_eq!(
        (cs.ingress_class.as_str(), cs.controller_class.as_str()),
        ("nginx", "k8s.io/ingress-nginx")
    );
    let ks = cli.kube_settings().unwrap();
    assert!(!ks.update_status, "a shadow never writes status");
    assert_ne!(
        ks.election_id, "ingress-controller-leader",
        "not ingress-nginx's Lease"
    );
    let (ns, name) = ks.configmap.clone().unwrap();
    let docs = documents(&read("rbac.yaml"));
    let role: k8s_openapi::api::rbac::v1::Role = parse("rbac.yaml", &docs[0]);
    assert_eq!(role.metadata.namespace.as_deref(), Some(ns.as_str()));
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resource_names.as_deref(), Some(&[name][..]));
    assert_eq!(rules[0].verbs, ["list", "watch"]);
}
