//! One reflector per watched kind, fed through `DynamicObject`s.
//!
//! The watch streams are read as untyped `DynamicObject`s and each object is converted to its
//! k8s-openapi type on its own. A typed watch would fail the whole list (and so the whole
//! watch) when one object does not deserialize; here that object alone is skipped (logged,
//! counted in [`WatchCounters::skipped`]) and, if an older readable version of it was cached,
//! that version is dropped too: the store holds what the API says now or nothing.
//!
//! `managedFields` and the `last-applied-configuration` annotation are stripped before caching:
//! nothing reads them and they are often most of an object's size.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::store::Store;
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// Annotation kubectl writes on `apply`; large and unused here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// State shared by all watch tasks (watch errors are counted in the
/// `pingress_api_watch_errors_total` metric).
#[derive(Debug, Default)]
pub struct WatchCounters {
    /// Objects that failed to deserialize and were skipped.
    pub skipped: AtomicU64,
    /// Watches in an outage now (failed, not yet resumed): a rebuild waits, briefly, until
    /// every kind is back so the table is not built from a mix of fresh and stale kinds.
    pub failing: tokio::sync::watch::Sender<usize>,
    /// Notified when a watch hears from the API again after an outage: every watch still
    /// waiting out its back-off retries at once (one shared signal, not independent timers).
    pub api_back: Notify,
}

/// What a watched kind needs: a k8s-openapi resource type with a default value.
pub trait Watched:
    Resource<DynamicType = ()>
    + DeserializeOwned
    + serde::Serialize
    + Clone
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + serde::Serialize
        + Clone
        + Default
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Whether `new` differs from `old` only in its status (and the resourceVersion that comes
/// with any write): for an Ingress that is our own status write coming back, which must not
/// rebuild the table nor start another status sync (issue 23: status fed back into status).
pub fn status_only<K: serde::Serialize>(old: Option<&K>, new: &K) -> bool {
    let Some(old) = old else { return false };
    let strip = |k: &K| {
        let mut v = serde_json::to_value(k).ok()?;
        let o = v.as_object_mut()?;
        o.remove("status");
        if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        Some(v)
    };
    match (strip(old), strip(new)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Watch retries: 0.5 s, doubling, at most 3 s, with up to 20% jitter. kube's default grows to
/// 30 s, so after an outage the watches resumed 20-60 s after the API was back (issue 23).
#[derive(Debug, Clone)]
struct QuickBackoff {
    next: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

impl Iterator for QuickBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let jitter = fastrand::u64(..=d.as_millis() as u64 / 5);
        Some(d + Duration::from_millis(jitter))
    }
}

impl QuickBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// After a retry, a watch that has neither failed again nor delivered anything within this
/// time is taken as resumed: a watch restarted from its resourceVersion on a kind where
/// nothing changed delivers no event at all.
const PROBATION: Duration = Duration::from_millis(500);

/// Strip fields nobody reads from the metadata.
fn slim(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// Convert an untyped object to `K`. On failure, returns a `K` carrying only the metadata (to
/// remove a stale cached version) and the error.
pub fn to_typed<K: Watched>(mut obj: DynamicObject) -> Result<K, (K, String)> {
    slim(&mut obj);
    let meta = obj.metadata.clone();
    let res = serde_json::to_value(&obj)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value::<K>(v).map_err(|e| e.to_string()));
    res.map_err(|e| {
        let mut stub = K::default();
        *stub.meta_mut() = meta;
        (stub, e)
    })
}

/// Map an untyped watcher event to a typed one; `None` drops it (an unreadable object seen
/// during a relist is simply left out of the new state).
pub fn convert<K: Watched>(ev: Event<DynamicObject>, counters: &WatchCounters) -> Option<Event<K>> {
    let skip = |(stub, e): (K, String)| {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        let m = stub.meta();
        tracing::warn!(
            kind = %K::kind(&()),
            namespace = m.namespace.as_deref().unwrap_or(""),
            name = m.name.as_deref().unwrap_or(""),
            error = %e,
            "object does not deserialize; it is skipped (the watch goes on)"
        );
        stub
    };
    Some(match ev {
        Event::Apply(o) => match to_typed::<K>(o) {
            Ok(k) => Event::Apply(k),
            Err(f) => Event::Delete(skip(f)),
        },
        Event::Delete(o) => match to_typed::<K>(o) {
            Ok(k) => Event::Delete(k),
            Err((stub, _)) => Event::Delete(stub),
        },
        Event::Init => Event::Init,
        Event::InitApply(o) => match to_typed::<K>(o) {
            Ok(k) => Event::InitApply(k),
            Err(f) => {
                skip(f);
                return None;
            }
        },
        Event::InitDone => Event::InitDone,
    })
}

/// Describe a watch error; `Some(permission)` when the API server refused us (403).
fn forbidden(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => 0,
    };
    api == 403
}

/// Where a watch runs: the API (namespaced or all namespaces) and its selectors.
pub struct Target {
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    pub config: watcher::Config,
    /// (group, resource) for messages, e.g. ("networking.k8s.io", "ingresses").
    pub resource: &'static str,
}

/// What the watches tell the rebuild loop: that a store changed (a [`Notify`] permit), and when
/// the last change was, so a quiet period counts from the change itself and not from when the
/// loop got to look (a change that arrived during a rebuild has been quiet for part of it).
#[derive(Debug, Default)]
pub struct ChangeSignal {
    notify: Notify,
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl ChangeSignal {
    /// A store changed now.
    pub fn record(&self) {
        self.record_at(tokio::time::Instant::now());
    }

    /// A store changed at `at` (tests set the time).
    pub fn record_at(&self, at: tokio::time::Instant) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        self.notify.notify_one();
    }

    /// When the last change was recorded.
    pub fn last(&self) -> Option<tokio::time::Instant> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Until a change is recorded (at once if one was since the last wait ended).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// Start the reflector for `K`: returns its store; `changed` is notified after every change
/// (not during a relist, only when it completes). `prune` drops what nothing reads from each
/// object before it is cached (see [`super::prune`]).
pub fn spawn<K: Watched>(
    client: kube::Client,
    target: Target,
    prune: fn(&mut K),
    changed: Arc<ChangeSignal>,
    counters: Arc<WatchCounters>,
) -> (Store<K>, Generation, tokio::task::JoinHandle<()>) {
    let (store, mut writer) = super::store::store::<K>();
    let generation = Generation::default();
    let bump = generation.clone();
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &target.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    let scope = target.namespace.clone().unwrap_or_else(|| "*".into());
    let reader = store.clone();
    let task = tokio::spawn(async move {
        // No kube back-off wrapper: it resets on every Ok item, and the watcher emits `Init`
        // before each list attempt, also one that then fails (a 403 loop retried ~5 times a
        // second); and its sleep cannot be cut short when the API is back.
        let stream = watcher::watcher(api, target.config);
        futures_util::pin_mut!(stream);
        let mut backoff = QuickBackoff { next: BACKOFF_MIN };
        let mut logged_forbidden = false;
        let mut failing = false;
        // failed attempts in the current outage, reported once when the watch resumes
        let mut failures = 0u64;
        // failing, retried, and not failed again yet: resumed at this instant
        let mut probation: Option<tokio::time::Instant> = None;
        let resumed = |failures: u64| {
            tracing::info!(resource = target.resource, namespace = %scope, failures, "watch resumed");
            counters.failing.send_modify(|n| *n = n.saturating_sub(1));
            counters.api_back.notify_waiters();
        };
        loop {
            let next = match probation {
                Some(deadline) => tokio::select! {
                    ev = stream.next() => ev,
                    _ = tokio::time::sleep_until(deadline) => {
                        probation = None;
                        if failing {
                            failing = false;
                            logged_forbidden = false;
                            resumed(failures);
                            failures = 0;
                            backoff.reset();
                            crate::metrics::record_watch_ok(target.resource);
                        }
                        continue;
                    }
                },
                None => stream.next().await,
            };
            let Some(ev) = next else { break };
            match ev {
                Ok(ev) => {
                    // Init comes before every list attempt: only a finished list or a watch
                    // event means the API answers again.
                    let answered =
                        matches!(ev, Event::InitDone | Event::Apply(_) | Event::Delete(_));
                    if answered {
                        probation = None;
                        backoff.reset();
                        crate::metrics::record_watch_ok(target.resource);
                        if failing {
                            failing = false;
                            logged_forbidden = false;
                            resumed(failures);
                            failures = 0;
                        }
                    }
                    let Some(mut ev) = convert::<K>(ev, &counters) else {
                        continue;
                    };
                    if let Event::Apply(o) | Event::InitApply(o) = &mut ev {
                        prune(o);
                    }
                    let notify = match &ev {
                        Event::Init | Event::InitApply(_) => false,
                        // an Ingress whose status alone changed (our own write): nothing to do
                        Event::Apply(obj) if K::kind(&()) == "Ingress" => {
                            let old = reader.get(&crate::snapshot::key_of(obj.meta()));
                            !status_only(old.as_deref(), obj)
                        }
                        _ => true,
                    };
                    let key = match &ev {
                        Event::Apply(o) | Event::Delete(o) => {
                            Some(crate::snapshot::key_of(o.meta()))
                        }
                        Event::Init | Event::InitApply(_) | Event::InitDone => None,
                    };
                    writer.apply(ev);
                    // after the store changed: a snapshot that saw the older count builds again
                    bump.record(key);
                    if notify {
                        changed.record();
                    }
                }
                Err(e) => {
                    crate::metrics::record_watch_error(target.resource);
                    failures += 1;
                    if forbidden(&e) {
                        if !logged_forbidden {
                            logged_forbidden = true;
                            tracing::error!(
                                resource = target.resource,
                                namespace = %scope,
                                error = %e,
                                "RBAC: permission denied; pingress needs 'list' and 'watch' on {} (namespace {scope}); retrying with back-off",
                                target.resource
                            );
                        }
                    } else if !failing {
                        tracing::warn!(resource = target.resource, namespace = %scope, error = %e,
                            "watch failed; retrying with back-off, the last route table keeps serving");
                    } else {
                        tracing::debug!(resource = target.resource, error = %e, "watch still failing");
                    }
                    if !failing {
                        counters.failing.send_modify(|n| *n += 1);
                    }
                    failing = true;
                    let delay = backoff.next().unwrap_or(BACKOFF_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = counters.api_back.notified() => {}
                    }
                    probation = Some(tokio::time::Instant::now() + PROBATION);
                }
            }
        }
    });
    (store, generation, task)
}

/// What a store changed since the last snapshot took its changes: how many watch events it
/// applied (while that stays the same, the store holds the same objects, so a snapshot reuses
/// the kind's last map without reading the store), and the keys of the objects added, changed or
/// deleted since (so a snapshot patches the last map instead of building it from the whole
/// store); a relist, or more changes than a rebuild would patch, asks for a whole rebuild.
#[derive(Clone, Default, Debug)]
pub struct Generation(Arc<Changes>);

#[derive(Default, Debug)]
struct Changes {
    applied: AtomicU64,
    dirty: std::sync::Mutex<Dirty>,
}

#[derive(Debug)]
struct Dirty {
    /// Rebuild the whole map: a (re)list replaced the store, or `keys` overflowed.
    whole: bool,
    keys: Vec<crate::snapshot::Key>,
}

impl Default for Dirty {
    fn default() -> Self {
        // a new store has not been read yet
        Dirty {
            whole: true,
            keys: Vec::new(),
        }
    }
}

/// More changed keys than this between two snapshots: rebuild the map whole (also bounds the
/// list of a store no snapshot reads).
const MAX_DIRTY: usize = 1024;

impl Generation {
    pub fn get(&self) -> u64 {
        self.0.applied.load(Ordering::Acquire)
    }

    /// The keys changed since the last call; `None`: rebuild the whole map. Call after
    /// [`Generation::get`], so that a change this misses bumps the count again afterwards.
    pub fn take_changes(&self) -> Option<Vec<crate::snapshot::Key>> {
        let mut d = match self.0.dirty.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let Dirty { whole, keys } = std::mem::replace(
            &mut *d,
            Dirty {
                whole: false,
                keys: Vec::new(),
            },
        );
        (!whole).then_some(keys)
    }

    /// Record one applied event (after the store changed): `key` for an object added, changed
    /// or deleted, `None` for a (re)list.
    fn record(&self, key: Option<crate::snapshot::Key>) {
        {
            let mut d = match self.0.dirty.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match key {
                Some(k) if !d.whole && d.keys.len() < MAX_DIRTY => d.keys.push(k),
                _ => {
                    d.whole = true;
                    d.keys = Vec::new();
                }
            }
        }
        // after the keys: a snapshot that read the older count reads the keys again
        self.0.applied.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_hands_over_the_changed_keys_once() {
        let key = |n: &str| ("ns".to_string(), n.to_string());
        let g = Generation::default();
        // a new store has not been read: the whole map
        assert_eq!(g.take_changes(), None);
        g.record(Some(key("a")));
        g.record(Some(key("b")));
        assert_eq!(g.get(), 2);
        assert_eq!(g.take_changes(), Some(vec![key("a"), key("b")]));
        assert_eq!(g.take_changes(), Some(vec![]));
        // a (re)list: the whole map again, once
        g.record(Some(key("a")));
        g.record(None);
        g.record(Some(key("c")));
        assert_eq!(g.take_changes(), None);
        assert_eq!(g.take_changes(), Some(vec![]));
        // more keys than a patch is worth (or a store no snapshot reads): bounded, whole map
        for i in 0..=MAX_DIRTY {
            g.record(Some(key(&i.to_string())));
        }
        assert_eq!(g.take_changes(), None);
    }
    use k8s_openapi::api::networking::v1::Ingress;

    fn dynobj(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn watch_backoff_is_capped_at_a_few_seconds() {
        let mut b = QuickBackoff { next: BACKOFF_MIN };
        let delays: Vec<Duration> = b.by_ref().take(8).collect();
        assert!(delays[0] >= BACKOFF_MIN && delays[0] <= BACKOFF_MIN * 6 / 5);
        assert!(
            delays.iter().all(|d| *d <= BACKOFF_MAX * 6 / 5),
            "{delays:?}"
        );
        assert!(delays[7] >= BACKOFF_MAX);
        b.reset();
        assert!(b.next().unwrap() <= BACKOFF_MIN * 6 / 5);
    }

    #[test]
    fn a_status_only_change_is_told_apart() {
        let ing = |rv: &str, class: &str, ip: Option<&str>| -> Ingress {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a", "namespace": "n", "resourceVersion": rv,
                             "annotations": {"x": "1"}},
                "spec": {"ingressClassName": class},
                "status": {"loadBalancer": {"ingress": ip.map(|ip| vec![serde_json::json!({"ip": ip})]).unwrap_or_default()}}
            }))
            .unwrap()
        };
        let old = ing("1", "pingress", None);
        assert!(status_only(
            Some(&old),
            &ing("2", "pingress", Some("10.0.0.1"))
        ));
        assert!(!status_only(Some(&old), &ing("2", "other", None)));
        assert!(!status_only(None, &old));
        let mut annotated = ing("2", "pingress", None);
        annotated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("y".into(), "2".into());
        assert!(!status_only(Some(&old), &annotated));
    }

    #[test]
    fn bad_object_is_skipped_alone_and_stale_copy_removed() {
        let c = WatchCounters::default();
        let good = dynobj(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "managedFields": [{"manager": "kubectl"}],
                         "annotations": {LAST_APPLIED: "{}", "keep": "x"}},
            "spec": {"ingressClassName": "pingress"}
        }));
        let bad = dynobj(serde_json::json!({
            "metadata": {"name": "b", "namespace": "n"},
            "spec": {"rules": "not a list"}
        }));
        match convert::<Ingress>(Event::Apply(good), &c) {
            Some(Event::Apply(i)) => {
                assert!(i.metadata.managed_fields.is_none());
                let a = i.metadata.annotations.unwrap();
                assert!(!a.contains_key(LAST_APPLIED));
                assert_eq!(a.get("keep").map(String::as_str), Some("x"));
            }
            other => panic!("{other:?}"),
        }
        match convert::<Ingress>(Event::Apply(bad.clone()), &c) {
            Some(Event::Delete(i)) => assert_eq!(i.metadata.name.as_deref(), Some("b")),
            other => panic!("{other:?}"),
        }
        assert!(convert::<Ingress>(Event::InitApply(bad), &c).is_none());
        assert_eq!(c.skipped.load(Ordering::Relaxed), 2);
    }
}
