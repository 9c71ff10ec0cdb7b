//! The validating admission webhook (ingress-nginx's `--validating-webhook`,
//! `--validating-webhook-certificate`, `--validating-webhook-key`).
//!
//! The API server sends an `AdmissionReview` for every Ingress create and update; pingress runs
//! the same pure `compile` on the candidate against the current snapshot and refuses what the
//! table would leave out or put in conflict, with the diagnostic text an Event would carry.
//! Nothing is templated or executed; a review is bounded in size and time.
//!
//! Only the Ingresses that share a host with the candidate are compiled (a path conflict, a
//! canary merge or a regex-mode host only ever involves those), twice: without the candidate
//! (its current version on an update) and with it, so a conflict the candidate *causes* on an
//! older or newer Ingress is told apart from one that was already there.
//!
//! Refused (`allowed: false`, HTTP-400-style status as ingress-nginx's webhook):
//! - any diagnostic that leaves the candidate out (`Rejected`: invalid annotation value, an
//!   invalid path, a refused snippet, ...);
//! - a path the candidate cannot serve because another Ingress has it (`PathConflict`,
//!   `DuplicatePath`), or that it would take from another (the same reasons, new on the other
//!   Ingress); an invalid regex on a regex-mode host (`InvalidRegexPath`).
//!
//! Everything else the compile says about the candidate (a missing Service, an annotation
//! ignored with a warning) is allowed and returned as admission `warnings`, which kubectl prints.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::compile;
use crate::diagnostics::{Diagnostic, ObjectRef, Severity};
use crate::settings::{CompileSettings, WebhookSettings};
use crate::snapshot::{key_of, Snapshot};

/// The path ingress-nginx's chart registers (any other path is 404).
pub const PATH: &str = "/networking/v1/ingresses";
/// The largest AdmissionReview read (an Ingress is at most ~1.5 MiB in etcd; old + new).
pub const MAX_REVIEW_BYTES: usize = 4 << 20;
/// Time to read a review's head and body.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a review may compile before it is refused with a message (the API server's own
/// timeout, `timeoutSeconds` in the ValidatingWebhookConfiguration, is 10 s in deploy/).
pub const REVIEW_BUDGET: Duration = Duration::from_secs(5);

/// Reasons that refuse a candidate (besides a `Rejected` severity).
const REFUSING: &[&str] = &["PathConflict", "DuplicatePath", "InvalidRegexPath"];

/// The outcome of one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Why it was refused (one line per diagnostic); empty when allowed.
    pub message: String,
    /// Diagnostics that do not refuse, shown by kubectl as warnings.
    pub warnings: Vec<String>,
    /// Ingresses compiled (both passes).
    pub tested: usize,
}

impl Verdict {
    fn allow(warnings: Vec<String>, tested: usize) -> Verdict {
        Verdict {
            allowed: true,
            message: String::new(),
            warnings,
            tested,
        }
    }
}

fn hosts_of(ing: &Ingress) -> BTreeSet<String> {
    ing.spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .map(|r| r.host.clone().unwrap_or_default())
        .collect()
}

/// Review `candidate` against `snap`. `now` (Unix seconds) dates a candidate the API server
/// has not dated yet (so it is the newest, not the oldest, in conflicts). Pure.
pub fn review(
    snap: &Snapshot,
    settings: &CompileSettings,
    mut candidate: Ingress,
    now: i64,
) -> Verdict {
    if candidate.metadata.name.as_deref().is_none_or(str::is_empty) {
        let base = candidate.metadata.generate_name.clone().unwrap_or_default();
        candidate.metadata.name = Some(format!("{base}(generated)"));
    }
    let key = key_of(&candidate.metadata);
    if candidate.metadata.creation_timestamp.is_none() {
        // an update keeps its object's date; a create is the newest
        candidate.metadata.creation_timestamp = match snap.ingresses.get(&key) {
            Some(old) => old.metadata.creation_timestamp.clone(),
            None => jiff::Timestamp::from_second(now).ok().map(Time),
        };
    }
    let hosts = hosts_of(&candidate);
    let no_rules = hosts.is_empty();
    // The Ingresses the candidate can interact with: those sharing a host (for one without
    // rules, the others without rules: the catch-all default backend).
    let mut sub = Snapshot {
        ingresses: Default::default(),
        ingress_classes: snap.ingress_classes.clone(),
        services: snap.services.clone(),
        endpoint_slices: snap.endpoint_slices.clone(),
        secrets: snap.secrets.clone(),
        config_maps: snap.config_maps.clone(),
        diagnostics: Vec::new(),
        now: snap.now,
    };
    for (k, ing) in snap.ingresses.iter() {
        let theirs = hosts_of(ing);
        let shares = if no_rules {
            theirs.is_empty()
        } else {
            !theirs.is_disjoint(&hosts)
        };
        if shares || *k == key {
            Arc::make_mut(&mut sub.ingresses).insert(k.clone(), ing.clone());
        }
    }
    let tested_before = sub.ingresses.len();
    let before: BTreeSet<Diagnostic> = compile(&sub, settings, None)
        .diagnostics
        .into_iter()
        .collect();
    Arc::make_mut(&mut sub.ingresses).insert(key.clone(), Arc::new(candidate));
    let tested = tested_before + sub.ingresses.len();
    let after = compile(&sub, settings, None).diagnostics;
    let me = ObjectRef::ingress(&key.0, &key.1);
    let mut refused = Vec::new();
    let mut warnings = Vec::new();
    for d in after {
        let refusing = d.severity == Severity::Rejected || REFUSING.contains(&d.reason);
        if d.object == me {
            if refusing {
                refused.push(format!("{}: {}", d.reason, d.message));
            } else {
                warnings.push(format!("{}: {}", d.reason, d.message));
            }
        } else if refusing && d.object.kind == "Ingress" && !before.contains(&d) {
            refused.push(format!("{} {}: {}", d.object, d.reason, d.message));
        }
    }
    if refused.is_empty() {
        return Verdict::allow(warnings, tested);
    }
    Verdict {
        allowed: false,
        message: refused.join("; "),
        warnings,
        tested,
    }
}

// ---- the AdmissionReview wire format (admission.k8s.io/v1) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: Option<String>,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: String,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct StatusOut {
    code: u16,
    reason: &'static str,
    message: String,
}

/// What the webhook reviews against: the latest snapshot the cluster source compiled (none
/// before the first sync) and the compile settings.
#[derive(Clone)]
pub struct Reviewer {
    pub latest: Arc<ArcSwapOption<Snapshot>>,
    pub settings: CompileSettings,
}

/// Answer one AdmissionReview body with the response body; `Err` for a body that is not an
/// AdmissionReview (answered 400). The verdict is logged and counted here.
pub async fn answer(reviewer: &Reviewer, body: &[u8]) -> Result<Vec<u8>, String> {
    let started = Instant::now();
    let input: ReviewIn =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let req = input
        .request
        .ok_or_else(|| "AdmissionReview without a request".to_string())?;
    let api_version = input
        .api_version
        .unwrap_or_else(|| "admission.k8s.io/v1".into());
    let verdict = match (req.operation.as_str(), req.object) {
        ("CREATE" | "UPDATE", Some(obj)) => match serde_json::from_value::<Ingress>(obj) {
            Err(e) => Verdict {
                allowed: false,
                message: format!("the object is not a networking.k8s.io/v1 Ingress: {e}"),
                warnings: Vec::new(),
                tested: 0,
            },
            Ok(mut ing) => {
                if ing.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                    ing.metadata.namespace = req.namespace.clone();
                }
                reviewed(reviewer, ing).await
            }
        },
        _ => Verdict::allow(Vec::new(), 0),
    };
    let elapsed = started.elapsed();
    crate::metrics::record_admission(verdict.allowed, verdict.tested, elapsed);
    if !verdict.allowed {
        tracing::info!(uid = %req.uid, message = %verdict.message, "admission review refused an Ingress");
    }
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: req.uid,
            allowed: verdict.allowed,
            status: (!verdict.allowed).then_some(StatusOut {
                code: 400,
                reason: "BadRequest",
                message: verdict.message,
            }),
            warnings: verdict.warnings,
        },
    };
    serde_json::to_vec(&out).map_err(|e| format!("cannot encode the AdmissionReview: {e}"))
}

async fn reviewed(reviewer: &Reviewer, ing: Ingress) -> Verdict {
    let Some(snap) = reviewer.latest.load_full() else {
        return Verdict::allow(
            vec!["pingress has not finished its first sync; this Ingress was not validated".into()],
            0,
        );
    };
    let settings = reviewer.settings.clone();
    let now = jiff::Timestamp::now().as_second();
    let task = tokio::task::spawn_blocking(move || review(&snap, &settings, ing, now));
    match tokio::time::timeout(REVIEW_BUDGET, task).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => Verdict {
            allowed: false,
            message: "pingress could not review this Ingress (internal error); try again".into(),
            warnings: Vec::new(),
            tested: 0,
        },
        Err(_) => Verdict {
            allowed: false,
            message: format!(
                "pingress could not review this Ingress within {} s; try again",
                REVIEW_BUDGET.as_secs()
            ),
            warnings: Vec::new(),
            tested: 0,
        },
    }
}

async fn handle(
    reviewer: Reviewer,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>, json: bool| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if json {
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        Ok(r)
    };
    if req.uri().path() != PATH {
        return reply(StatusCode::NOT_FOUND, b"not found\n".to_vec(), false);
    }
    if req.method() != http::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            b"POST an AdmissionReview\n".to_vec(),
            false,
        );
    }
    let body = match tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_REVIEW_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let msg = format!(
                "cannot read the AdmissionReview (at most {MAX_REVIEW_BYTES} bytes): {e}\n"
            );
            return reply(StatusCode::PAYLOAD_TOO_LARGE, msg.into_bytes(), false);
        }
        Err(_) => {
            return reply(
                StatusCode::REQUEST_TIMEOUT,
                b"AdmissionReview body not received in time\n".to_vec(),
                false,
            )
        }
    };
    match answer(&reviewer, &body).await {
        Ok(out) => reply(StatusCode::OK, out, true),
        Err(e) => {
            crate::metrics::record_admission_error();
            reply(
                StatusCode::BAD_REQUEST,
                format!("{e}\n").into_bytes(),
                false,
            )
        }
    }
}

/// The server's TLS configuration from the PEM files.
pub fn tls_config(ws: &WebhookSettings) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ws.certificate)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "--validating-webhook-certificate {}: {e}",
                ws.certificate.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "--validating-webhook-certificate {}: no certificate in the file",
            ws.certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&ws.key)
        .map_err(|e| format!("--validating-webhook-key {}: {e}", ws.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("webhook TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--validating-webhook-certificate/-key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve reviews over HTTPS until the task is dropped.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    reviewer: Reviewer,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admission webhook: cannot use its listener");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admission webhook: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let reviewer = reviewer.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "admission webhook: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = service_fn(move |req| handle(reviewer.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// The webhook as a Pingora background service (its own runtime; stops with the server).
pub struct WebhookService {
    listener: crate::health::OnceListener,
    tls: Arc<rustls::ServerConfig>,
    reviewer: Reviewer,
}

impl WebhookService {
    pub fn new(
        listener: std::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        reviewer: Reviewer,
    ) -> Self {
        WebhookService {
            listener: crate::health::OnceListener::new(listener),
            tls,
            reviewer,
        }
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for WebhookService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        tokio::select! {
            _ = serve(listener, self.tls.clone(), self.reviewer.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(name: &str, created: i64, annotations: &[(&str, &str)], paths: &[&str]) -> Ingress {
        let ann: std::collections::BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let paths: Vec<Value> = paths
            .iter()
            .map(|p| {
                serde_json::json!({"path": p, "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}})
            })
            .collect();
        let mut v = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "annotations": ann},
            "spec": {"ingressClassName": "pingress",
                     "rules": [{"host": "web.test", "http": {"paths": paths}}]}
        });
        if created > 0 {
            v["metadata"]["creationTimestamp"] = jiff::Timestamp::from_second(created)
                .unwrap()
                .to_string()
                .into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn snapshot(ings: Vec<Ingress>) -> Snapshot {
        let mut s = Snapshot::default();
        s.add_ingress_class(
            serde_json::from_value::<k8s_openapi::api::networking::v1::IngressClass>(
                serde_json::json!({
                    "metadata": {"name": "pingress"}, "spec": {"controller": "k8s.io/pingress"}
                }),
            )
            .unwrap(),
        );
        s.add_service(
            serde_json::from_value::<k8s_openapi::api::core::v1::Service>(serde_json::json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"ports": [{"port": 80}]}
            }))
            .unwrap(),
        );
        for i in ings {
            s.add_ingress(i);
        }
        s
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_valid_ingress_is_allowed_and_an_invalid_annotation_refused_with_its_diagnostic() {
        let s = CompileSettings::default();
        let snap = snapshot(vec![]);
        let ok = review(
            &snap,
            &s,
            ingress("a", 0, &[("limit-rps", "10")], &["/"]),
            NOW,
        );
        assert!(ok.allowed, "{ok:?}");
        let bad = review(
            &snap,
            &s,
            ingress("a", 0, &[("limit-rps", "abc")], &["/"]),
            NOW,
        );
        assert!(!bad.allowed);
        assert!(
            bad.message.contains("limit-rps") && bad.message.contains("abc"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn a_catch_all_is_refused_under_disable_catch_all() {
        let snap = snapshot(vec![]);
        let mut catch_all = ingress("c", 0, &[], &["/"]);
        if let Some(spec) = catch_all.spec.as_mut() {
            spec.default_backend = serde_json::from_value(
                serde_json::json!({"service": {"name": "web", "port": {"number": 80}}}),
            )
            .unwrap();
        }
        let allowed = review(&snap, &CompileSettings::default(), catch_all.clone(), NOW);
        assert!(allowed.allowed, "{allowed:?}");
        let s = CompileSettings {
            disable_catch_all: true,
            ..CompileSettings::default()
        };
        let v = review(&snap, &s, catch_all, NOW);
        assert!(
            !v.allowed && v.message.contains("CatchAllDisabled"),
            "{v:?}"
        );
        assert!(review(&snap, &s, ingress("r", 0, &[], &["/"]), NOW).allowed);
    }

    #[test]
    fn an_update_of_a_served_ingress_to_an_invalid_value_is_refused() {
        let s = CompileSettings::default();
        let live = ingress("a", NOW - 100, &[("limit-rps", "10")], &["/"]);
        let snap = snapshot(vec![live]);
        let same = review(
            &snap,
            &s,
            ingress("a", NOW - 100, &[("limit-rps", "10")], &["/"]),
            NOW,
        );
        assert!(
            same.allowed,
            "an unchanged update conflicts with nothing: {same:?}"
        );
        let bad = review(
            &snap,
            &s,
            ingress("a", NOW - 100, &[("limit-rps", "x")], &["/"]),
            NOW,
        );
        assert!(!bad.allowed);
    }

    #[test]
    fn a_path_another_ingress_serves_is_refused_in_both_directions() {
        let s = CompileSettings::default();
        let snap = snapshot(vec![ingress("old", NOW - 100, &[], &["/", "/api"])]);
        // a new Ingress (not dated yet by the API server) asking for /api
        let v = review(&snap, &s, ingress("new", 0, &[], &["/api"]), NOW);
        assert!(!v.allowed);
        assert!(
            v.message.contains("PathConflict") && v.message.contains("default/old"),
            "{}",
            v.message
        );
        // a different path on the same host is fine
        assert!(review(&snap, &s, ingress("new", 0, &[], &["/other"]), NOW).allowed);
        // an older Ingress updated to take /api from a newer one: the newer one would lose it
        let snap = snapshot(vec![
            ingress("older", NOW - 200, &[], &["/x"]),
            ingress("newer", NOW - 100, &[], &["/api"]),
        ]);
        let v = review(
            &snap,
            &s,
            ingress("older", NOW - 200, &[], &["/x", "/api"]),
            NOW,
        );
        assert!(!v.allowed);
        assert!(
            v.message.contains("Ingress default/newer PathConflict"),
            "{}",
            v.message
        );
    }

    #[test]
    fn another_class_is_not_ours_to_refuse_and_warnings_are_passed_on() {
        let s = CompileSettings::default();
        let snap = snapshot(vec![]);
        let mut other = ingress("a", 0, &[("limit-rps", "abc")], &["/"]);
        other.spec.as_mut().unwrap().ingress_class_name = Some("nginx-other".into());
        let v = review(&snap, &s, other, NOW);
        assert!(v.allowed && v.warnings.is_empty(), "{v:?}");
        // a Service that does not exist: served (503), so allowed with a warning
        let mut missing = ingress("a", 0, &[], &["/"]);
        missing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
            .http
            .as_mut()
            .unwrap()
            .paths[0]
            .backend
            .service
            .as_mut()
            .unwrap()
            .name = "nope".into();
        let v = review(&snap, &s, missing, NOW);
        assert!(v.allowed, "{v:?}");
        assert!(v.warnings.iter().any(|w| w.contains("nope")), "{v:?}");
    }

    #[tokio::test]
    async fn the_wire_format_is_admission_v1_with_the_uid_echoed() {
        let reviewer = Reviewer {
            latest: Arc::new(ArcSwapOption::from_pointee(snapshot(vec![]))),
            settings: CompileSettings::default(),
        };
        let obj = serde_json::to_value(ingress("a", 0, &[("limit-rps", "abc")], &["/"])).unwrap();
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE", "namespace": "default", "object": obj}
        });
        let out = answer(&reviewer, &serde_json::to_vec(&body).unwrap())
            .await
            .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["code"], 400);
        // DELETE and other operations are not reviewed
        let del = serde_json::json!({"request": {"uid": "u-2", "operation": "DELETE"}});
        let out: Value = serde_json::from_slice(
            &answer(&reviewer, &serde_json::to_vec(&del).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert!(answer(&reviewer, b"{not json").await.is_err());
    }
}
