//! Diagnostics -> Kubernetes Events (events.k8s.io/v1) on the Ingress they concern, so
//! `kubectl describe ingress` shows why it is not (fully) served.
//!
//! - Deduplicated: a Warning is sent when (Ingress, reason, message) first appears and not again
//!   while it persists across rebuilds ([`EventPlanner`]).
//! - When an Ingress that had Warnings rebuilds clean, one Normal event (reason `Sync`).
//! - Rate-limited: a token bucket (burst [`BURST`], [`RATE_PER_SEC`]/s) in front of the API; the
//!   queue is bounded ([`QUEUE`]); what overflows is dropped, counted and logged (the diagnostic
//!   is still in the log).
//!
//! Only `create` is used (no series patching): RBAC grants `create` on `events.k8s.io/events`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use tokio::sync::mpsc;

use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::snapshot::Snapshot;

/// `reportingController` of our Events.
pub const REPORTING_CONTROLLER: &str = "k8s.io/pingress";
/// Token bucket size.
pub const BURST: f64 = 25.0;
/// Token bucket refill per second.
pub const RATE_PER_SEC: f64 = 5.0;
/// Events waiting for a token at most; more are dropped.
pub const QUEUE: usize = 1024;
/// Reason of the Normal event sent when a failing Ingress syncs clean.
pub const SYNC_REASON: &str = "Sync";

/// One Event to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub regarding: ObjectReference,
    /// "Warning" or "Normal".
    pub type_: &'static str,
    pub reason: String,
    pub note: String,
}

/// Decides which Events a rebuild causes. Pure; memory is bounded by the live Ingresses with
/// diagnostics.
#[derive(Debug)]
pub struct EventPlanner {
    /// Ingress -> (reason, message) of its Warnings at the last rebuild.
    active: BTreeMap<ObjectRef, BTreeSet<(String, String)>>,
    /// `Sync` Events are sent (not with `--disable-sync-events`).
    sync_events: bool,
}

impl Default for EventPlanner {
    fn default() -> Self {
        EventPlanner::new(true)
    }
}

impl EventPlanner {
    pub fn new(sync_events: bool) -> Self {
        EventPlanner {
            active: BTreeMap::new(),
            sync_events,
        }
    }

    pub fn plan(&mut self, snap: &Snapshot, diags: &[Diagnostic]) -> Vec<Outgoing> {
        let mut now: BTreeMap<ObjectRef, BTreeSet<(String, String)>> = BTreeMap::new();
        for d in diags.iter().filter(|d| d.object.kind == "Ingress") {
            now.entry(d.object.clone())
                .or_default()
                .insert((d.reason.to_string(), d.message.clone()));
        }
        let mut out = Vec::new();
        for (obj, set) in &now {
            let Some(r) = reference(snap, obj) else {
                continue;
            };
            let before = self.active.get(obj);
            for (reason, msg) in set {
                if before.is_some_and(|b| b.contains(&(reason.clone(), msg.clone()))) {
                    continue;
                }
                out.push(Outgoing {
                    regarding: r.clone(),
                    type_: "Warning",
                    reason: reason.clone(),
                    note: msg.clone(),
                });
            }
        }
        for obj in self.active.keys().filter(|_| self.sync_events) {
            if now.contains_key(obj) {
                continue;
            }
            // still there and now clean (a deleted Ingress gets nothing)
            if let Some(r) = reference(snap, obj) {
                out.push(Outgoing {
                    regarding: r,
                    type_: "Normal",
                    reason: SYNC_REASON.into(),
                    note: "Ingress synced without problems".into(),
                });
            }
        }
        // forget Ingresses that are gone
        now.retain(|o, _| reference(snap, o).is_some());
        self.active = now;
        out
    }
}

fn reference(snap: &Snapshot, obj: &ObjectRef) -> Option<ObjectReference> {
    let ing = snap
        .ingresses
        .get(&(obj.namespace.clone(), obj.name.clone()))?;
    Some(ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        namespace: Some(obj.namespace.clone()),
        name: Some(obj.name.clone()),
        uid: ing.metadata.uid.clone(),
        resource_version: ing.metadata.resource_version.clone(),
        field_path: None,
    })
}

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Take one token, or say how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Build the API object for `o`.
pub fn to_event(o: &Outgoing, instance: &str, now: k8s_openapi::jiff::Timestamp) -> Event {
    let base = o.regarding.name.as_deref().unwrap_or("pingress");
    let mut name = format!("{base}.{:x}", now.as_nanosecond());
    if name.len() > 253 {
        name = format!("pingress.{:x}", now.as_nanosecond());
    }
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: o.regarding.namespace.clone(),
            ..Default::default()
        },
        action: Some("Sync".into()),
        reason: Some(o.reason.clone()),
        note: Some(truncate(&o.note, 1024)),
        type_: Some(o.type_.into()),
        regarding: Some(o.regarding.clone()),
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(truncate(instance, 128)),
        ..Default::default()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Counters of the event sender.
#[derive(Debug, Default)]
pub struct EventCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}

/// Handle to the sender task: queue Events without blocking the rebuild loop.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Outgoing>,
    pub counters: Arc<EventCounters>,
}

impl EventSink {
    /// Spawn the sender task on the current runtime.
    pub fn spawn(client: kube::Client, instance: String) -> EventSink {
        let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
        let counters = Arc::new(EventCounters::default());
        let c = counters.clone();
        tokio::spawn(async move {
            let mut bucket = TokenBucket::new(BURST, RATE_PER_SEC, Instant::now());
            let mut pending: VecDeque<Outgoing> = VecDeque::new();
            let mut logged_forbidden = false;
            while let Some(o) = rx.recv().await {
                pending.push_back(o);
                while let Some(o) = pending.pop_front() {
                    while let Err(wait) = bucket.take(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    let ns = o.regarding.namespace.clone().unwrap_or_default();
                    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                    let ev = to_event(&o, &instance, k8s_openapi::jiff::Timestamp::now());
                    match api.create(&PostParams::default(), &ev).await {
                        Ok(_) => {
                            c.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(kube::Error::Api(s)) if s.code == 403 => {
                            c.failed.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::record_event_failure(&o.reason);
                            if !logged_forbidden {
                                logged_forbidden = true;
                                tracing::error!(namespace = %ns, error = %s.message,
                                    "RBAC: permission denied; pingress needs 'create' on events.k8s.io/events to report diagnostics as Events");
                            }
                        }
                        Err(e) => {
                            c.failed.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::record_event_failure(&o.reason);
                            tracing::warn!(namespace = %ns, reason = %o.reason, error = %e, "cannot create Event");
                        }
                    }
                    // take what queued meanwhile, keeping the order
                    while let Ok(more) = rx.try_recv() {
                        pending.push_back(more);
                    }
                }
            }
        });
        EventSink { tx, counters }
    }

    /// Queue events; drops (and counts) what does not fit.
    pub fn send(&self, events: Vec<Outgoing>) {
        let mut dropped = 0u64;
        for o in events {
            if self.tx.try_send(o).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "Event queue full (rate limit {RATE_PER_SEC}/s); these Events are dropped, the diagnostics are in the log"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::Ingress;

    fn snap_with(names: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for n in names {
            let mut i = Ingress::default();
            i.metadata.name = Some(n.to_string());
            i.metadata.namespace = Some("ns".into());
            i.metadata.uid = Some(format!("uid-{n}"));
            s.add_ingress(i);
        }
        s
    }

    fn diag(name: &str, reason: &'static str, msg: &str) -> Diagnostic {
        Diagnostic::rejected(ObjectRef::ingress("ns", name), reason, msg)
    }

    #[test]
    fn warnings_are_sent_once_while_they_persist_and_a_clean_sync_sends_normal() {
        let mut p = EventPlanner::default();
        let s = snap_with(&["a", "b"]);
        let d = vec![diag("a", "InvalidPath", "bad path")];
        let out = p.plan(&s, &d);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].type_, "Warning");
        assert_eq!(out[0].reason, "InvalidPath");
        assert_eq!(out[0].regarding.uid.as_deref(), Some("uid-a"));
        assert!(
            p.plan(&s, &d).is_empty(),
            "same diagnostic again: deduplicated"
        );
        // a new message on the same Ingress is a new Event
        let d2 = vec![
            diag("a", "InvalidPath", "bad path"),
            diag("a", "InvalidPath", "other"),
        ];
        assert_eq!(p.plan(&s, &d2).len(), 1);
        let out = p.plan(&s, &[]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].type_, out[0].reason.as_str()), ("Normal", "Sync"));
        assert!(p.plan(&s, &[]).is_empty());
        // diagnostics on non-Ingress objects or unknown Ingresses make no Event
        let other = Diagnostic::warning(ObjectRef::new("Service", "ns", "x"), "R", "m");
        assert!(p.plan(&s, &[other, diag("zzz", "R", "m")]).is_empty());
    }

    #[test]
    fn disable_sync_events_keeps_the_warnings_and_drops_the_sync() {
        let mut p = EventPlanner::new(false);
        let s = snap_with(&["a"]);
        assert_eq!(p.plan(&s, &[diag("a", "InvalidPath", "bad path")]).len(), 1);
        assert!(p.plan(&s, &[]).is_empty(), "no Sync once it is clean");
        assert!(p.active.is_empty());
    }

    #[test]
    fn deleted_ingress_gets_no_sync_event_and_is_forgotten() {
        let mut p = EventPlanner::default();
        p.plan(&snap_with(&["a"]), &[diag("a", "R", "m")]);
        assert!(p.plan(&snap_with(&[]), &[]).is_empty());
        assert!(p.active.is_empty());
    }

    #[test]
    fn bucket_limits_bursts_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 2.0, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(100)).is_ok());
        // capped at capacity
        let t = t0 + Duration::from_secs(100);
        assert!(b.take(t).is_ok() && b.take(t).is_ok());
        assert!(b.take(t).is_err());
    }

    #[test]
    fn event_object_has_the_required_fields() {
        let s = snap_with(&["a"]);
        let mut p = EventPlanner::default();
        let o = p.plan(&s, &[diag("a", "InvalidPath", "x")]).remove(0);
        let e = to_event(&o, "pod-1", k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["reason"], "InvalidPath");
        assert_eq!(v["regarding"]["kind"], "Ingress");
        assert_eq!(v["reportingController"], REPORTING_CONTROLLER);
        assert_eq!(v["reportingInstance"], "pod-1");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert!(v["eventTime"].is_string());
    }
}
