//! YAML manifest builders and an atomically written manifest directory.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

pub const NAMESPACE: &str = "default";
pub const CONTROLLER: &str = "k8s.io/pingress";
pub const CLASS: &str = "pingress";

pub const EXACT: &str = "Exact";
pub const PREFIX: &str = "Prefix";
pub const IMPL_SPECIFIC: &str = "ImplementationSpecific";

/// Quotes a string as a YAML double-quoted scalar (JSON strings are valid YAML).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string to json")
}

/// Joins documents into one multi-document YAML stream.
pub fn docs<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::new();
    for part in parts {
        // Parts may themselves be multi-document streams from `docs`.
        let part = part.as_ref().trim();
        let part = part.strip_prefix("---\n").unwrap_or(part);
        out.push_str("---\n");
        out.push_str(part);
        out.push('\n');
    }
    out
}

/// The controller ConfigMap `ingress/pingress` (`--configmap ingress/pingress`) with `data`.
pub fn controller_configmap(data: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ingress}\ndata:\n",
    );
    for (k, v) in data {
        writeln!(s, "  {}: {}", q(k), q(v)).unwrap();
    }
    s
}

/// `IngressClass` named `name` handled by `controller`.
pub fn ingress_class(name: &str, controller: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\n\
         kind: IngressClass\n\
         metadata:\n  name: {}\n\
         spec:\n  controller: {}\n",
        q(name),
        q(controller)
    )
}

/// `IngressClass` annotated `ingressclass.kubernetes.io/is-default-class: "true"`.
pub fn default_ingress_class(name: &str, controller: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\n\
         kind: IngressClass\n\
         metadata:\n  name: {}\n  annotations:\n    ingressclass.kubernetes.io/is-default-class: \"true\"\n\
         spec:\n  controller: {}\n",
        q(name),
        q(controller)
    )
}

/// ClusterIP Service with a single port `{name: http, port: 80, targetPort: http}`.
pub fn service(name: &str) -> String {
    service_with_ports(name, &[("http", 80)])
}

/// ClusterIP Service with named ports `(name, port)`; targetPort = the port name.
pub fn service_with_ports(name: &str, ports: &[(&str, u16)]) -> String {
    let mut s = format!(
        "apiVersion: v1\n\
         kind: Service\n\
         metadata:\n  name: {}\n  namespace: {}\n\
         spec:\n  type: ClusterIP\n  selector:\n    app: {}\n  ports:\n",
        q(name),
        NAMESPACE,
        q(name)
    );
    for (port_name, port) in ports {
        writeln!(
            s,
            "  - name: {}\n    port: {}\n    targetPort: {}\n    protocol: TCP",
            q(port_name),
            port,
            q(port_name)
        )
        .unwrap();
    }
    s
}

/// ExternalName Service (never has endpoints here).
pub fn external_name_service(name: &str, external: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Service\n\
         metadata:\n  name: {}\n  namespace: {}\n\
         spec:\n  type: ExternalName\n  externalName: {}\n  ports:\n  - name: http\n    port: 80\n",
        q(name),
        NAMESPACE,
        q(external)
    )
}

/// Endpoint conditions of an EndpointSlice entry.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    pub ready: bool,
    pub terminating: bool,
}

pub const READY: Conditions = Conditions {
    ready: true,
    terminating: false,
};

/// EndpointSlice `slice` for Service `service`, with the given named ports
/// `(port name, port number)` and one endpoint at 127.0.0.1.
pub fn endpoint_slice_ports(
    slice: &str,
    service: &str,
    ports: &[(&str, u16)],
    conditions: Conditions,
) -> String {
    let mut s = format!(
        "apiVersion: discovery.k8s.io/v1\n\
         kind: EndpointSlice\n\
         metadata:\n  name: {}\n  namespace: {}\n  labels:\n    kubernetes.io/service-name: {}\n\
         addressType: IPv4\n\
         ports:\n",
        q(slice),
        NAMESPACE,
        q(service)
    );
    for (port_name, port) in ports {
        writeln!(
            s,
            "- name: {}\n  port: {}\n  protocol: TCP",
            q(port_name),
            port
        )
        .unwrap();
    }
    writeln!(
        s,
        "endpoints:\n- addresses:\n  - \"127.0.0.1\"\n  conditions:\n    ready: {}\n    terminating: {}",
        conditions.ready, conditions.terminating
    )
    .unwrap();
    s
}

/// EndpointSlice with a single port named `http`.
pub fn endpoint_slice(slice: &str, service: &str, port: u16, conditions: Conditions) -> String {
    endpoint_slice_ports(slice, service, &[("http", port)], conditions)
}

/// A Service `svc` (port http/80) plus one ready EndpointSlice per backend
/// port (`svc-0`, `svc-1`, ...), all at 127.0.0.1.
pub fn backend_set(svc: &str, ports: &[u16]) -> String {
    let mut parts = vec![service(svc)];
    for (i, port) in ports.iter().enumerate() {
        parts.push(endpoint_slice(&format!("{svc}-{i}"), svc, *port, READY));
    }
    docs(&parts)
}

/// The usual one-app folder: the suite's IngressClass, Service `svc` with an EndpointSlice per
/// port, and an Ingress `svc` routing `host` `/` (Prefix) to it.
pub fn one_host_app(svc: &str, ports: &[u16], host: &str) -> String {
    docs(&[
        ingress_class(CLASS, CONTROLLER),
        backend_set(svc, ports),
        Ingress::new(svc)
            .host(host, &[("/", PREFIX, svc)])
            .to_yaml(),
    ])
}

/// How an Ingress backend names the Service port.
#[derive(Debug, Clone)]
pub enum ServicePort {
    Number(u16),
    Name(String),
}

/// One `paths` entry of an Ingress rule.
#[derive(Debug, Clone)]
pub struct IngressPath {
    pub path: String,
    pub path_type: String,
    pub service: String,
    pub port: ServicePort,
}

impl IngressPath {
    /// Path to Service port number 80.
    pub fn new(path: &str, path_type: &str, service: &str) -> Self {
        IngressPath {
            path: path.to_string(),
            path_type: path_type.to_string(),
            service: service.to_string(),
            port: ServicePort::Number(80),
        }
    }

    pub fn port_number(mut self, port: u16) -> Self {
        self.port = ServicePort::Number(port);
        self
    }

    pub fn port_name(mut self, name: &str) -> Self {
        self.port = ServicePort::Name(name.to_string());
        self
    }
}

#[derive(Debug, Clone)]
struct Rule {
    host: Option<String>,
    paths: Vec<IngressPath>,
}

/// networking.k8s.io/v1 Ingress builder. `ingressClassName: pingress` by default.
#[derive(Debug, Clone)]
pub struct Ingress {
    name: String,
    class: Option<String>,
    annotations: Vec<(String, String)>,
    rules: Vec<Rule>,
    /// `spec.tls` entries: (hosts, secretName).
    tls: Vec<(Vec<String>, String)>,
    /// `metadata.creationTimestamp` (RFC 3339), when set.
    created: Option<String>,
}

impl Ingress {
    pub fn new(name: &str) -> Self {
        Ingress {
            name: name.to_string(),
            class: Some(CLASS.to_string()),
            annotations: Vec::new(),
            rules: Vec::new(),
            tls: Vec::new(),
            created: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets `metadata.creationTimestamp` (RFC 3339, e.g. `2026-01-01T00:00:00Z`).
    pub fn created(mut self, at: &str) -> Self {
        self.created = Some(at.to_string());
        self
    }

    /// Sets (`Some`) or removes (`None`) `spec.ingressClassName`.
    pub fn class(mut self, class: Option<&str>) -> Self {
        self.class = class.map(str::to_string);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    /// A `spec.tls` entry.
    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.tls.push((
            hosts.iter().map(|h| h.to_string()).collect(),
            secret.to_string(),
        ));
        self
    }

    /// Rule for `host` with `(path, pathType, service)` entries (port 80).
    pub fn host(self, host: &str, paths: &[(&str, &str, &str)]) -> Self {
        self.rule(Some(host), Self::simple(paths))
    }

    /// Rule without host (any host) with `(path, pathType, service)` entries.
    pub fn any_host(self, paths: &[(&str, &str, &str)]) -> Self {
        self.rule(None, Self::simple(paths))
    }

    pub fn rule(mut self, host: Option<&str>, paths: Vec<IngressPath>) -> Self {
        self.rules.push(Rule {
            host: host.map(str::to_string),
            paths,
        });
        self
    }

    fn simple(paths: &[(&str, &str, &str)]) -> Vec<IngressPath> {
        paths
            .iter()
            .map(|(p, t, s)| IngressPath::new(p, t, s))
            .collect()
    }

    pub fn to_yaml(&self) -> String {
        let mut s = format!(
            "apiVersion: networking.k8s.io/v1\n\
             kind: Ingress\n\
             metadata:\n  name: {}\n  namespace: {}\n",
            q(&self.name),
            NAMESPACE
        );
        if let Some(at) = &self.created {
            writeln!(s, "  creationTimestamp: {}", q(at)).unwrap();
        }
        if !self.annotations.is_empty() {
            s.push_str("  annotations:\n");
            for (k, v) in &self.annotations {
                writeln!(s, "    {}: {}", q(k), q(v)).unwrap();
            }
        }
        s.push_str("spec:\n");
        if let Some(class) = &self.class {
            writeln!(s, "  ingressClassName: {}", q(class)).unwrap();
        }
        if !self.tls.is_empty() {
            s.push_str("  tls:\n");
            for (hosts, secret) in &self.tls {
                s.push_str("  - hosts:\n");
                for h in hosts {
                    writeln!(s, "    - {}", q(h)).unwrap();
                }
                writeln!(s, "    secretName: {}", q(secret)).unwrap();
            }
        }
        s.push_str("  rules:\n");
        for rule in &self.rules {
            match &rule.host {
                Some(host) => writeln!(s, "  - host: {}\n    http:", q(host)).unwrap(),
                None => s.push_str("  - http:\n"),
            }
            s.push_str("      paths:\n");
            for p in &rule.paths {
                let port = match &p.port {
                    ServicePort::Number(n) => format!("number: {n}"),
                    ServicePort::Name(name) => format!("name: {}", q(name)),
                };
                writeln!(
                    s,
                    "      - path: {}\n        pathType: {}\n        backend:\n          service:\n            name: {}\n            port:\n              {}",
                    q(&p.path),
                    p.path_type,
                    q(&p.service),
                    port
                )
                .unwrap();
            }
        }
        s
    }
}

/// A temporary manifest directory whose files are written atomically.
pub struct ManifestDir {
    dir: TempDir,
    counter: AtomicUsize,
}

impl ManifestDir {
    /// An empty directory.
    pub fn new() -> Self {
        ManifestDir {
            dir: tempfile::Builder::new()
                .prefix("pingress-test-")
                .tempdir()
                .expect("create temp dir"),
            counter: AtomicUsize::new(0),
        }
    }

    /// A directory already holding `class.yaml` with the IngressClass
    /// `pingress` (controller `k8s.io/pingress`).
    pub fn with_class() -> Self {
        let dir = Self::new();
        dir.write("class.yaml", &ingress_class(CLASS, CONTROLLER));
        dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` atomically: content goes to a temp file whose name does
    /// not end in .yaml/.yml, which is then renamed over `name`.
    pub fn write(&self, name: &str, content: &str) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let tmp = self.dir.path().join(format!(".{name}.{n}.tmp"));
        std::fs::write(&tmp, content).expect("write temp manifest");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename manifest");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).expect("remove manifest");
    }
}
