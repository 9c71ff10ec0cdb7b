//! An in-process fake Kubernetes API server (hyper, HTTP/1.1, 127.0.0.1:0) for the cluster-mode
//! tests: enough of the API for kube-rs watchers, status patches, Events and kube-lease-manager.
//!
//! - list and watch (JSON lines) for every resource in [`RESOURCES`], with resourceVersions,
//!   label and field selectors (`k`, `!k`, `k=v`, `k!=v`; `metadata.name`,
//!   `metadata.namespace`, `type`), bookmarks every 300 ms, and `410 Gone` (an ERROR event)
//!   for a watch that resumes from before a compaction ([`FakeApi::compact`]);
//! - GET one object, POST (create, 409 AlreadyExists), PATCH (merge / strategic merge treated
//!   as JSON merge patch; server-side apply on Leases with a field-ownership conflict on
//!   `spec.holderIdentity`), `/status` subresources;
//! - every write is recorded ([`FakeApi::requests`]) with the client label of the listener it
//!   came through (one listener per controller instance: [`FakeApi::endpoint`]);
//! - an outage switch (every request answers 500, open watches end) and a per-resource gate
//!   that holds LIST requests (to test the initial-sync gate).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// (plural, apiVersion, kind, namespaced)
pub const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("ingresses", "networking.k8s.io/v1", "Ingress", true),
    (
        "ingressclasses",
        "networking.k8s.io/v1",
        "IngressClass",
        false,
    ),
    ("services", "v1", "Service", true),
    (
        "endpointslices",
        "discovery.k8s.io/v1",
        "EndpointSlice",
        true,
    ),
    ("secrets", "v1", "Secret", true),
    ("pods", "v1", "Pod", true),
    ("configmaps", "v1", "ConfigMap", true),
    ("namespaces", "v1", "Namespace", false),
    ("leases", "coordination.k8s.io/v1", "Lease", true),
    ("events", "events.k8s.io/v1", "Event", true),
    ("deployments", "apps/v1", "Deployment", true),
];

fn resource_of_kind(kind: &str) -> &'static (&'static str, &'static str, &'static str, bool) {
    RESOURCES
        .iter()
        .find(|r| r.2 == kind)
        .unwrap_or_else(|| panic!("fake apiserver: unknown kind {kind}"))
}

fn resource(plural: &str) -> Option<&'static (&'static str, &'static str, &'static str, bool)> {
    RESOURCES.iter().find(|r| r.0 == plural)
}

/// A write request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Label of the listener (controller instance) it came through.
    pub client: String,
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Value,
}

type Key = (String, String, String); // (plural, namespace, name)

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    /// A watch resuming from a resourceVersion below this gets 410 Gone.
    gone_before: u64,
    /// Bumped to end every open watch.
    kick: u64,
    objects: BTreeMap<Key, Value>,
    /// (rv, plural, namespace, type, object)
    history: Vec<(u64, String, String, &'static str, Value)>,
    requests: Vec<Recorded>,
    outage: bool,
    /// Requests refused by the outage switch.
    outage_hits: usize,
    held: BTreeSet<String>,
    lists: BTreeMap<String, usize>,
    /// (plural, query string) of every list and watch request.
    queries: Vec<(String, String)>,
}

struct State {
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl State {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

pub struct FakeApi {
    state: Arc<State>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap()
        .to_string()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn label_match(obj: &Value, sel: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    sel.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|req| {
            if let Some(k) = req.strip_prefix('!') {
                labels.get(k).is_none()
            } else if let Some((k, v)) = req.split_once("!=") {
                labels.get(k).and_then(Value::as_str) != Some(v)
            } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                labels.get(k).and_then(Value::as_str) == Some(v)
            } else {
                labels.get(req).is_some()
            }
        })
}

fn field_match(obj: &Value, sel: &str) -> bool {
    sel.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|req| {
            let (k, v, eq) = match req.split_once("!=") {
                Some((k, v)) => (k, v, false),
                None => match req.split_once("==").or_else(|| req.split_once('=')) {
                    Some((k, v)) => (k, v, true),
                    None => return false,
                },
            };
            let got = match k {
                "metadata.name" => obj["metadata"]["name"].as_str(),
                "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
                "type" => obj["type"].as_str(),
                other => panic!("fake apiserver: unsupported field selector {other}"),
            };
            (got == Some(v)) == eq
        })
}

struct Query {
    watch: bool,
    rv: Option<u64>,
    labels: Option<String>,
    fields: Option<String>,
    bookmarks: bool,
    timeout: Option<u64>,
}

fn parse_query(q: &str) -> Query {
    let mut out = Query {
        watch: false,
        rv: None,
        labels: None,
        fields: None,
        bookmarks: false,
        timeout: None,
    };
    for (k, v) in url_pairs(q) {
        match k.as_str() {
            "watch" => out.watch = v == "true" || v == "1",
            "resourceVersion" => out.rv = v.parse().ok(),
            "labelSelector" => out.labels = Some(v),
            "fieldSelector" => out.fields = Some(v),
            "allowWatchBookmarks" => out.bookmarks = v == "true",
            "timeoutSeconds" => out.timeout = v.parse().ok(),
            _ => {}
        }
    }
    out
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed request path.
struct Target {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let rest = if let Some(r) = path.strip_prefix("/api/v1/") {
        r
    } else {
        let r = path.strip_prefix("/apis/")?;
        let mut it = r.splitn(3, '/');
        let _group = it.next()?;
        let _version = it.next()?;
        it.next()?
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let t = if segs.first() == Some(&"namespaces") && segs.len() >= 3 {
        Target {
            plural: segs[2].into(),
            namespace: Some(segs[1].into()),
            name: segs.get(3).map(|s| s.to_string()),
            sub: segs.get(4).map(|s| s.to_string()),
        }
    } else {
        Target {
            plural: segs.first()?.to_string(),
            namespace: None,
            name: segs.get(1).map(|s| s.to_string()),
            sub: segs.get(2).map(|s| s.to_string()),
        }
    };
    Some(t)
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn err(code: u16, reason: &str, msg: &str) -> Response<Body> {
    json_response(code, &status_body(code, reason, msg))
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let (changed, _) = watch::channel(0);
        FakeApi {
            state: Arc::new(State {
                inner: Mutex::new(Inner {
                    rv: 100,
                    ..Default::default()
                }),
                changed,
            }),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// A new listener whose requests are recorded under `label`; returns its base URL.
    pub async fn endpoint(&self, label: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = self.state.clone();
        let label = label.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let label = label.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let label = label.clone();
                        async move { Ok::<_, Infallible>(handle(state, label, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        self.tasks.lock().unwrap().push(task);
        format!("http://127.0.0.1:{port}")
    }

    /// Write a kubeconfig for a new endpoint labelled `label` into `dir`.
    pub async fn kubeconfig(&self, dir: &Path, label: &str) -> PathBuf {
        let url = self.endpoint(label).await;
        let path = dir.join(format!("kubeconfig-{label}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
                 current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
            ),
        )
        .unwrap();
        path
    }

    fn key_of(v: &Value) -> Key {
        let kind = v["kind"].as_str().expect("object without kind");
        let r = resource_of_kind(kind);
        let ns = if r.3 {
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = v["metadata"]["name"].as_str().expect("object without name");
        (r.0.to_string(), ns, name.to_string())
    }

    fn store(inner: &mut Inner, mut v: Value, record: bool) -> Value {
        let key = Self::key_of(&v);
        inner.rv += 1;
        let rv = inner.rv;
        let existed = inner.objects.get(&key).cloned();
        let meta = v["metadata"].as_object_mut().unwrap();
        if !key.1.is_empty() {
            meta.insert("namespace".into(), json!(key.1));
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        match &existed {
            Some(old) => {
                meta.insert("uid".into(), old["metadata"]["uid"].clone());
                meta.insert(
                    "creationTimestamp".into(),
                    old["metadata"]["creationTimestamp"].clone(),
                );
            }
            None => {
                inner.uid += 1;
                meta.insert("uid".into(), json!(format!("uid-{}", inner.uid)));
                meta.entry("creationTimestamp")
                    .or_insert_with(|| json!(now_rfc3339()));
            }
        }
        inner.objects.insert(key.clone(), v.clone());
        if record {
            let t = if existed.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            inner.history.push((rv, key.0, key.1, t, v.clone()));
        }
        v
    }

    /// Create or replace objects given as (multi-document) YAML.
    pub fn apply_yaml(&self, yaml: &str) {
        for v in yaml_values(yaml) {
            self.put(v);
        }
    }

    /// Create or replace one object (watchers see ADDED/MODIFIED). As with a real API server,
    /// writing the main resource keeps the stored `status`.
    pub fn put(&self, mut v: Value) -> Value {
        let mut inner = self.state.inner.lock().unwrap();
        if let Some(old) = inner.objects.get(&Self::key_of(&v)) {
            if let Some(st) = old.get("status") {
                v["status"] = st.clone();
            }
        }
        let out = Self::store(&mut inner, v, true);
        drop(inner);
        self.state.bump();
        out
    }

    /// Change an object without any watch event (as if the events were lost); only a relist
    /// shows it. Use with [`FakeApi::compact`].
    pub fn put_silently(&self, v: Value) {
        Self::store(&mut self.state.inner.lock().unwrap(), v, false);
    }

    /// Delete silently (see [`FakeApi::put_silently`]).
    pub fn delete_silently(&self, kind: &str, ns: &str, name: &str) {
        let r = resource_of_kind(kind);
        let mut inner = self.state.inner.lock().unwrap();
        inner.rv += 1;
        inner
            .objects
            .remove(&(r.0.to_string(), ns.to_string(), name.to_string()));
    }

    /// Delete an object (watchers see DELETED).
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let r = resource_of_kind(kind);
        let ns = if r.3 { ns } else { "" };
        let mut inner = self.state.inner.lock().unwrap();
        let key = (r.0.to_string(), ns.to_string(), name.to_string());
        if let Some(mut old) = inner.objects.remove(&key) {
            inner.rv += 1;
            let rv = inner.rv;
            old["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.history.push((rv, key.0, key.1, "DELETED", old));
        }
        drop(inner);
        self.state.bump();
    }

    /// Forget the history: open watches end and resuming from any earlier resourceVersion
    /// answers 410 Gone, which forces a relist.
    pub fn compact(&self) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.rv += 1;
        inner.gone_before = inner.rv;
        inner.history.clear();
        inner.kick += 1;
        drop(inner);
        self.state.bump();
    }

    /// While on, every request answers 500 and open watches end.
    pub fn set_outage(&self, on: bool) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.outage = on;
        inner.kick += 1;
        drop(inner);
        self.state.bump();
    }

    /// Hold (or release) every LIST of `plural` until released.
    pub fn hold_lists(&self, plural: &str, hold: bool) {
        let mut inner = self.state.inner.lock().unwrap();
        if hold {
            inner.held.insert(plural.to_string());
        } else {
            inner.held.remove(plural);
        }
        drop(inner);
        self.state.bump();
    }

    /// Number of LIST requests served for `plural`.
    pub fn list_count(&self, plural: &str) -> usize {
        *self
            .state
            .inner
            .lock()
            .unwrap()
            .lists
            .get(plural)
            .unwrap_or(&0)
    }

    /// Decoded query strings of the list and watch requests for `plural`.
    /// How many requests the outage switch refused so far.
    pub fn outage_hits(&self) -> usize {
        self.state.inner.lock().unwrap().outage_hits
    }

    pub fn queries(&self, plural: &str) -> Vec<String> {
        self.state
            .inner
            .lock()
            .unwrap()
            .queries
            .iter()
            .filter(|(p, _)| p == plural)
            .map(|(_, q)| pct_decode(q))
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.inner.lock().unwrap().requests.clone()
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let r = resource_of_kind(kind);
        let ns = if r.3 { ns } else { "" };
        self.state
            .inner
            .lock()
            .unwrap()
            .objects
            .get(&(r.0.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// `spec.holderIdentity` of a Lease.
    pub fn lease_holder(&self, ns: &str, name: &str) -> Option<String> {
        self.get("Lease", ns, name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }
}

/// Parse a YAML stream into JSON values (empty documents skipped).
pub fn yaml_values(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .map(|d| d.trim_start_matches("---"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// An AdmissionReview (admission.k8s.io/v1) for `op` (CREATE, UPDATE) of the Ingress given as
/// YAML in namespace default: what the API server POSTs to a validating webhook.
pub fn admission_review(uid: &str, op: &str, ingress_yaml: &str) -> Value {
    let obj = yaml_values(ingress_yaml).remove(0);
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": uid, "operation": op, "namespace": "default", "object": obj,
                    "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}}
    })
}

async fn read_body(req: Request<Incoming>) -> (String, Value) {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .or_else(|_| serde_saphyr::from_slice::<Value>(&bytes))
            .unwrap_or(Value::Null)
    };
    (ct, v)
}

async fn handle(state: Arc<State>, label: String, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    {
        let mut inner = state.inner.lock().unwrap();
        if inner.outage {
            inner.outage_hits += 1;
            return err(500, "InternalError", "fake outage");
        }
    }
    let Some(t) = parse_path(&path) else {
        return err(404, "NotFound", &format!("no route {path}"));
    };
    let Some(res) = resource(&t.plural) else {
        return err(404, "NotFound", &format!("unknown resource {}", t.plural));
    };
    let q = parse_query(&query);
    if method == Method::GET && t.name.is_none() {
        state
            .inner
            .lock()
            .unwrap()
            .queries
            .push((res.0.to_string(), query.clone()));
        if q.watch {
            return watch_response(state, res, t.namespace, q);
        }
        return list(state, res, t.namespace, q).await;
    }
    if method == Method::GET {
        let key = (
            res.0.to_string(),
            t.namespace.clone().unwrap_or_default(),
            t.name.clone().unwrap_or_default(),
        );
        return match state.inner.lock().unwrap().objects.get(&key) {
            Some(v) => json_response(200, v),
            None => err(404, "NotFound", &format!("{} {:?} not found", res.0, key.2)),
        };
    }
    let (ct, body) = read_body(req).await;
    state.inner.lock().unwrap().requests.push(Recorded {
        client: label,
        method: method.to_string(),
        path: path.clone(),
        content_type: ct.clone(),
        body: body.clone(),
    });
    let ns = t.namespace.clone().unwrap_or_default();
    match method {
        Method::POST => {
            let mut v = body;
            if v["metadata"]["name"].is_null() {
                let g = v["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("x")
                    .to_string();
                v["metadata"]["name"] = json!(format!("{g}{}", fastrand::u32(..)));
            }
            v["kind"] = json!(res.2);
            v["apiVersion"] = json!(res.1);
            if res.3 {
                v["metadata"]["namespace"] = json!(ns);
            }
            let key = FakeApi::key_of(&v);
            let mut inner = state.inner.lock().unwrap();
            if inner.objects.contains_key(&key) {
                return err(409, "AlreadyExists", "already exists");
            }
            let out = FakeApi::store(&mut inner, v, true);
            drop(inner);
            state.bump();
            json_response(201, &out)
        }
        Method::PATCH => {
            let key = (res.0.to_string(), ns, t.name.clone().unwrap_or_default());
            let mut inner = state.inner.lock().unwrap();
            let Some(mut cur) = inner.objects.get(&key).cloned() else {
                return err(404, "NotFound", "not found");
            };
            if ct.starts_with("application/apply-patch") {
                let want = body["spec"]["holderIdentity"].as_str();
                let have = cur["spec"]["holderIdentity"].as_str();
                if let (Some(w), Some(h)) = (want, have) {
                    if w != h {
                        return err(
                            409,
                            "Conflict",
                            "Apply failed with 1 conflict: .spec.holderIdentity",
                        );
                    }
                }
            }
            let mut patch = body;
            if let Some(o) = patch.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
            }
            if t.sub.as_deref() == Some("status") {
                patch = json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)});
            }
            merge_patch(&mut cur, &patch);
            let out = FakeApi::store(&mut inner, cur, true);
            drop(inner);
            state.bump();
            json_response(200, &out)
        }
        _ => err(
            405,
            "MethodNotAllowed",
            "fake apiserver: method not supported",
        ),
    }
}

fn matches(v: &Value, ns: &Option<String>, q: &Query) -> bool {
    ns.as_ref()
        .is_none_or(|n| v["metadata"]["namespace"].as_str() == Some(n))
        && q.labels.as_ref().is_none_or(|s| label_match(v, s))
        && q.fields.as_ref().is_none_or(|s| field_match(v, s))
}

async fn list(
    state: Arc<State>,
    res: &'static (&'static str, &'static str, &'static str, bool),
    ns: Option<String>,
    q: Query,
) -> Response<Body> {
    let mut rx = state.changed.subscribe();
    loop {
        {
            let mut inner = state.inner.lock().unwrap();
            if inner.outage {
                return err(500, "InternalError", "fake outage");
            }
            if !inner.held.contains(res.0) {
                *inner.lists.entry(res.0.to_string()).or_default() += 1;
                let items: Vec<Value> = inner
                    .objects
                    .iter()
                    .filter(|((p, _, _), v)| p == res.0 && matches(v, &ns, &q))
                    .map(|(_, v)| v.clone())
                    .collect();
                return json_response(
                    200,
                    &json!({"apiVersion": res.1, "kind": format!("{}List", res.2),
                            "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
                );
            }
        }
        if rx.changed().await.is_err() {
            return err(500, "InternalError", "shutting down");
        }
    }
}

fn watch_response(
    state: Arc<State>,
    res: &'static (&'static str, &'static str, &'static str, bool),
    ns: Option<String>,
    q: Query,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut changed = state.changed.subscribe();
        let since = q.rv.unwrap_or(0);
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(q.timeout.unwrap_or(290).min(290));
        let (kick0, gone) = {
            let inner = state.inner.lock().unwrap();
            (inner.kick, since < inner.gone_before)
        };
        if gone {
            let ev = json!({"type": "ERROR", "object": status_body(410, "Expired",
                &format!("too old resource version: {since}"))});
            let _ = tx.send(Bytes::from(format!("{ev}\n"))).await;
            return;
        }
        let mut sent = since;
        loop {
            let (events, cur, stop) = {
                let inner = state.inner.lock().unwrap();
                let stop = inner.outage || inner.kick != kick0;
                let evs: Vec<Value> = inner
                    .history
                    .iter()
                    .filter(|(rv, p, _, _, v)| *rv > sent && p == res.0 && matches(v, &ns, &q))
                    .map(|(_, _, _, t, v)| json!({"type": t, "object": v}))
                    .collect();
                (evs, inner.rv, stop)
            };
            if stop {
                return;
            }
            for e in events {
                if tx.send(Bytes::from(format!("{e}\n"))).await.is_err() {
                    return;
                }
            }
            sent = cur;
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if q.bookmarks {
                        let b = json!({"type": "BOOKMARK", "object": {"kind": res.2, "apiVersion": res.1,
                            "metadata": {"resourceVersion": sent.to_string()}}});
                        if tx.send(Bytes::from(format!("{b}\n"))).await.is_err() { return; }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
