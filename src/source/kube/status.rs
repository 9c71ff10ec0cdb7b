//! Ingress status (`status.loadBalancer.ingress`), written by the elected leader only.
//!
//! Leadership: a coordination.k8s.io/v1 Lease named `--election-id` in the controller
//! namespace, held with kube-lease-manager (it calls get, create and patch on the Lease).
//! Every replica serves traffic; only the Lease holder writes status.
//!
//! What is written: the addresses of `--publish-status-address`, else the `--publish-service`
//! Service's load balancer ingress (else its `externalIPs`), sorted. Every Ingress this
//! controller serves (class rules) gets them; an Ingress we no longer serve whose status holds
//! exactly our addresses is cleared. Synced on every table change, on gaining leadership, and
//! every `--status-update-interval`. On shutdown with `--update-status-on-shutdown`, the leader
//! clears the status it wrote only when it is the last replica running (ingress-nginx:
//! "leaving status update for next leader"): other Running Pods with this Pod's labels mean the
//! next leader keeps the address, so `kubectl get ingress` and external-dns never see it blank
//! during a rolling update. Patches carry the field manager `pingress`.

use std::time::Duration;

use std::collections::BTreeMap;

use super::store::Store;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::watch;

use crate::compile::class::is_served;
use crate::settings::{CompileSettings, KubeSettings};
use crate::snapshot::Snapshot;

/// One `status.loadBalancer.ingress` entry: an IP or a host name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Address {
    Ip(String),
    Hostname(String),
}

impl Address {
    pub fn parse(s: &str) -> Address {
        if s.parse::<std::net::IpAddr>().is_ok() {
            Address::Ip(s.to_string())
        } else {
            Address::Hostname(s.to_string())
        }
    }
    fn to_json(&self) -> Value {
        match self {
            Address::Ip(ip) => json!({ "ip": ip }),
            Address::Hostname(h) => json!({ "hostname": h }),
        }
    }
}

/// The addresses to publish, sorted and deduplicated. `None`: no source configured.
pub fn addresses(ks: &KubeSettings, publish_service: Option<&Service>) -> Option<Vec<Address>> {
    let mut out: Vec<Address> = if !ks.publish_status_address.is_empty() {
        ks.publish_status_address
            .iter()
            .map(|a| Address::parse(a))
            .collect()
    } else if ks.publish_service.is_some() {
        let Some(svc) = publish_service else {
            return Some(Vec::new());
        };
        let lb: Vec<Address> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|v| {
                v.iter()
                    .filter_map(|i| {
                        i.ip.clone()
                            .map(Address::Ip)
                            .or_else(|| i.hostname.clone().map(Address::Hostname))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if lb.is_empty() {
            svc.spec
                .as_ref()
                .and_then(|s| s.external_ips.as_ref())
                .map(|v| v.iter().map(|a| Address::parse(a)).collect())
                .unwrap_or_default()
        } else {
            lb
        }
    } else {
        return None;
    };
    out.sort();
    out.dedup();
    Some(out)
}

/// Current `status.loadBalancer.ingress` of an Ingress, as addresses (sorted).
pub fn current(ing: &Ingress) -> Vec<Address> {
    let mut v: Vec<Address> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .map(|v| {
            v.iter()
                .filter_map(|i| {
                    i.ip.clone()
                        .map(Address::Ip)
                        .or_else(|| i.hostname.clone().map(Address::Hostname))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The merge patch (subresource `status`) that sets `addrs`; an empty list clears the field.
pub fn status_patch(addrs: &[Address]) -> Value {
    if addrs.is_empty() {
        json!({ "status": { "loadBalancer": { "ingress": null } } })
    } else {
        let list: Vec<Value> = addrs.iter().map(Address::to_json).collect();
        json!({ "status": { "loadBalancer": { "ingress": list } } })
    }
}

/// Which Ingresses need a status patch, and to what: ((namespace, name), addresses).
/// `clear_all`: shutdown, every served Ingress goes to empty.
pub fn plan(
    snap: &Snapshot,
    settings: &CompileSettings,
    addrs: &[Address],
    clear_all: bool,
) -> Vec<((String, String), Vec<Address>)> {
    let mut out = Vec::new();
    for (key, ing) in snap.ingresses.iter() {
        let cur = current(ing);
        let ours = is_served(ing, snap, settings);
        let want: Vec<Address> = if ours && !clear_all {
            addrs.to_vec()
        } else if ours || (!cur.is_empty() && cur == addrs) {
            // shutting down, or no longer ours but still carrying our addresses
            Vec::new()
        } else {
            continue;
        };
        if cur != want {
            out.push((key.clone(), want));
        }
    }
    out
}

/// Inputs of the status task.
pub struct StatusInputs {
    pub client: kube::Client,
    pub kube: KubeSettings,
    pub compile: CompileSettings,
    /// Latest snapshot (sent by the rebuild loop after every publish).
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub publish_service: Option<Store<Service>>,
    /// Flips to true when the process shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// Status patches in flight at once (a shutdown clear of 10k Ingresses should fit the grace
/// period). Against kube-apiserver 1.32 on a 2-core box, clearing 3,002 Ingresses: 16 in
/// flight ~460/s, 64 ~680/s, 256 ~970/s (debug build); 128 stays under the API server's
/// default 200 mutating requests in flight, and cleared 10,002 in 8.1 s (release build).
const PARALLEL_PATCHES: usize = 128;

/// What this process wrote: (namespace, name) -> addresses (never empty).
pub type Written = BTreeMap<(String, String), Vec<Address>>;

/// Patch every Ingress status in `patches` (PARALLEL_PATCHES at a time) and record what was written.
async fn apply(
    client: &kube::Client,
    patches: Vec<((String, String), Vec<Address>)>,
    written: &mut Written,
    written_at: &mut WrittenAt,
) {
    let forbidden = std::sync::atomic::AtomicBool::new(false);
    let params = PatchParams {
        field_manager: Some("pingress".into()),
        ..Default::default()
    };
    // (patch, written, the resourceVersion the API returned)
    let results: Vec<(StatusPatch, bool, Option<u64>)> =
        futures_util::stream::iter(patches)
        .map(|((ns, name), want)| {
            let (client, params, forbidden) = (client.clone(), &params, &forbidden);
            async move {
                let api: Api<Ingress> = Api::namespaced(client, &ns);
                let body = status_patch(&want);
                let mut rv = None;
                let ok = match api.patch_status(&name, params, &Patch::Merge(&body)).await {
                    Ok(ing) => {
                        rv = resource_version(&ing);
                        tracing::info!(namespace = %ns, name = %name, addresses = ?want, "Ingress status updated");
                        true
                    }
                    Err(kube::Error::Api(s)) if s.code == 403 => {
                        if !forbidden.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::error!(namespace = %ns, error = %s.message,
                                "RBAC: permission denied; pingress needs 'patch' on networking.k8s.io ingresses/status");
                        }
                        false
                    }
                    // gone: nothing of ours is left there
                    Err(kube::Error::Api(s)) if s.code == 404 => true,
                    Err(e) => {
                        tracing::warn!(namespace = %ns, name = %name, error = %e, "cannot update Ingress status");
                        false
                    }
                };
                (((ns, name), want), ok, rv)
            }
        })
        .buffer_unordered(PARALLEL_PATCHES)
        .collect()
        .await;
    for ((key, want), ok, rv) in results {
        if !ok {
            continue;
        }
        match rv {
            Some(rv) => written_at.insert(key.clone(), rv),
            None => written_at.remove(&key),
        };
        if want.is_empty() {
            written.remove(&key);
        } else {
            written.insert(key, want);
        }
    }
}

/// The resourceVersion our last status write of each Ingress returned.
pub type WrittenAt = BTreeMap<(String, String), u64>;

/// etcd's revision behind a resourceVersion (opaque to clients, a number in practice).
fn resource_version(ing: &Ingress) -> Option<u64> {
    ing.metadata.resource_version.as_deref()?.parse().ok()
}

/// Drop the patches that would only repeat a write of ours the snapshot has not caught up with
/// yet (its copy of the Ingress is not newer than what our write returned): without this, every
/// rebuild in the second after a sync wrote the same status again (9,006 patches for 3,000
/// Ingresses against kube-apiserver 1.32).
pub fn drop_unseen_own_writes(
    patches: Vec<StatusPatch>,
    snap: &Snapshot,
    written: &Written,
    written_at: &WrittenAt,
) -> Vec<StatusPatch> {
    patches
        .into_iter()
        .filter(|(key, want)| {
            if written.get(key) != Some(want) {
                return true;
            }
            let ours = written_at.get(key);
            let theirs = snap.ingresses.get(key).and_then(|i| resource_version(i));
            !matches!((ours, theirs), (Some(o), Some(t)) if t <= *o)
        })
        .collect()
}

/// One status write: (namespace, name) -> the addresses to set.
pub type StatusPatch = ((String, String), Vec<Address>);

/// Status writes against another writer. An Ingress whose status no longer holds what this
/// process last wrote there was overwritten (another controller of the same class with other
/// addresses, a blue/green upgrade): it is rewritten at most once per `interval`, and from the
/// second overwrite on one WARN says so, instead of a write war at the rebuild rate.
#[derive(Debug, Default)]
pub struct Contested {
    /// (namespace, name) -> (last rewrite after an overwrite, warned)
    seen: BTreeMap<(String, String), (tokio::time::Instant, bool)>,
}

impl Contested {
    /// The patches to send now; returns the Ingresses newly reported as contested.
    pub fn filter(
        &mut self,
        patches: Vec<StatusPatch>,
        written: &Written,
        now: tokio::time::Instant,
        interval: Duration,
    ) -> (Vec<StatusPatch>, Vec<(String, String)>) {
        let mut keep = Vec::new();
        let mut warn = Vec::new();
        let asked: std::collections::BTreeSet<(String, String)> =
            patches.iter().map(|(k, _)| k.clone()).collect();
        // forget a contest long over (or an Ingress deleted)
        self.seen
            .retain(|k, (last, _)| asked.contains(k) || now.duration_since(*last) < interval * 10);
        for (key, want) in patches {
            let overwritten = !want.is_empty() && written.get(&key) == Some(&want);
            if !overwritten {
                self.seen.remove(&key);
                keep.push((key, want));
                continue;
            }
            match self.seen.get_mut(&key) {
                None => {
                    self.seen.insert(key.clone(), (now, false));
                    keep.push((key, want));
                }
                Some((last, warned)) => {
                    if now.duration_since(*last) < interval {
                        continue;
                    }
                    *last = now;
                    if !*warned {
                        *warned = true;
                        warn.push(key.clone());
                    }
                    keep.push((key, want));
                }
            }
        }
        (keep, warn)
    }
}

/// Shutdown: the served Ingresses carrying our addresses (from the snapshot) plus every one
/// this process wrote, even when the snapshot has not seen that write yet.
pub fn clear_plan(
    snap: &Snapshot,
    settings: &CompileSettings,
    addrs: &[Address],
    written: &Written,
) -> Vec<((String, String), Vec<Address>)> {
    let mut keys: std::collections::BTreeSet<(String, String)> = plan(snap, settings, addrs, true)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.extend(written.keys().cloned());
    keys.into_iter().map(|k| (k, Vec::new())).collect()
}

/// Whether another replica of this controller is running: Pods in our namespace with our Pod's
/// labels (minus the per-revision ones), phase Running, not being deleted, other than us.
/// `None` when it cannot be told (no `POD_NAME`, or the API refused).
async fn other_replicas_running(client: &kube::Client, ks: &KubeSettings) -> Option<bool> {
    let me = ks.pod_name.as_deref()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ks.controller_namespace);
    let own = match pods.get(me).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(pod = %me, error = %e, "status hand-over: cannot read this Pod (pingress needs get/list on pods in its namespace)");
            return None;
        }
    };
    let selector: Vec<String> = own
        .metadata
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "pod-template-hash" | "controller-revision-hash" | "pod-template-generation"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if selector.is_empty() {
        return None;
    }
    match pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
    {
        Ok(list) => Some(list.items.iter().any(|p| {
            p.metadata.name.as_deref() != Some(me)
                && p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })),
        Err(e) => {
            tracing::warn!(error = %e, "status hand-over: cannot list the controller's Pods");
            None
        }
    }
}

/// Whether `lease` names `identity` as holder and has not expired at `now`.
pub fn lease_held(lease: &Lease, identity: &str, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return false;
    }
    match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(secs)) => now.as_second() < renewed.0.as_second() + i64::from(secs),
        _ => false,
    }
}

/// Before a leader writes status: does the Lease still name it, unexpired? A leader whose
/// renewals fail (the API unreachable, or another replica took the Lease meanwhile) writes
/// nothing rather than fight the new leader (the election task notices only at its next
/// renewal).
async fn holds_lease(client: &kube::Client, ks: &KubeSettings) -> bool {
    let api: Api<Lease> = Api::namespaced(client.clone(), &ks.controller_namespace);
    match api.get(&ks.election_id).await {
        Ok(l) => lease_held(&l, &ks.identity, k8s_openapi::jiff::Timestamp::now()),
        Err(_) => false,
    }
}

/// Lease grace (renew this long before expiry): a sixth of the TTL, 1..=5 s.
pub fn lease_grace(ttl: u64) -> u64 {
    (ttl / 6).clamp(1, 5).min(ttl.saturating_sub(1).max(1))
}

/// Run leader election and status sync until shutdown.
pub async fn run(mut inp: StatusInputs) {
    let ks = inp.kube.clone();
    // Acquire a LeaseManager (retry: the API may be down or RBAC missing).
    let mut delay = Duration::from_millis(500);
    let manager = loop {
        let built =
            kube_lease_manager::LeaseManagerBuilder::new(inp.client.clone(), &ks.election_id)
                .with_namespace(&ks.controller_namespace)
                .with_identity(&ks.identity)
                .with_duration(ks.election_ttl)
                .with_grace(lease_grace(ks.election_ttl))
                .build()
                .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %ks.election_id, namespace = %ks.controller_namespace,
                    "leader election: cannot set up the Lease (pingress needs get/create/patch on coordination.k8s.io leases); retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = inp.shutdown.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let (mut leader, lease_task) = manager.watch().await;
    tracing::info!(identity = %ks.identity, lease = %ks.election_id, namespace = %ks.controller_namespace, "leader election started");
    let mut tick = tokio::time::interval(Duration::from_secs(ks.status_update_interval));
    let mut logged_no_source = false;
    let mut logged_lost = false;
    let mut written = Written::new();
    let mut written_at = WrittenAt::new();
    let mut contested = Contested::default();
    loop {
        let mut is_leader = *leader.borrow();
        if is_leader && !holds_lease(&inp.client, &ks).await {
            if !logged_lost {
                tracing::warn!(identity = %ks.identity, lease = %ks.election_id,
                    "status: the Lease does not name this replica (or has expired); not writing status until the election says otherwise");
            }
            logged_lost = true;
            is_leader = false;
        } else if is_leader {
            logged_lost = false;
        }
        crate::metrics::record_leader(&ks.election_id, is_leader);
        if is_leader {
            let snap = inp.snapshots.borrow().clone();
            let svc = inp
                .publish_service
                .as_ref()
                .and_then(|s| s.state().into_iter().next());
            match addresses(&ks, svc.as_deref()) {
                Some(addrs) => {
                    let patches = plan(&snap, &inp.compile, &addrs, false);
                    let patches = drop_unseen_own_writes(patches, &snap, &written, &written_at);
                    let interval = Duration::from_secs(ks.status_update_interval);
                    let (patches, contested_now) =
                        contested.filter(patches, &written, tokio::time::Instant::now(), interval);
                    for (ns, name) in contested_now {
                        let theirs = snap
                            .ingresses
                            .get(&(ns.clone(), name.clone()))
                            .map(|i| current(i))
                            .unwrap_or_default();
                        tracing::warn!(namespace = %ns, name = %name, ours = ?addrs, theirs = ?theirs,
                            "another writer keeps overwriting this Ingress's status (two controllers for the same class?); pingress rewrites it at most every {}s", interval.as_secs());
                    }
                    apply(&inp.client, patches, &mut written, &mut written_at).await;
                }
                None if !logged_no_source => {
                    logged_no_source = true;
                    tracing::warn!("status: neither --publish-service nor --publish-status-address is set; Ingress status is not written");
                }
                None => {}
            }
        }
        tokio::select! {
            r = leader.changed() => {
                if r.is_err() {
                    tracing::error!("leader election task ended; status is no longer written");
                    break;
                }
                tracing::info!(leader = *leader.borrow(), identity = %ks.identity, "leadership changed");
            }
            r = inp.snapshots.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
            _ = inp.shutdown.changed() => break,
        }
    }
    // shutdown
    if *leader.borrow() && ks.update_status_on_shutdown {
        if other_replicas_running(&inp.client, &ks).await == Some(true) {
            tracing::info!("shutting down: leaving Ingress status for the next leader");
        } else {
            let snap = inp.snapshots.borrow().clone();
            let svc = inp
                .publish_service
                .as_ref()
                .and_then(|s| s.state().into_iter().next());
            let addrs = addresses(&ks, svc.as_deref()).unwrap_or_default();
            let patches = clear_plan(&snap, &inp.compile, &addrs, &written);
            tracing::info!(
                ingresses = patches.len(),
                "shutting down: clearing Ingress status"
            );
            apply(&inp.client, patches, &mut written, &mut written_at).await;
        }
    }
    // Dropping the receiver makes the lease task release the Lease.
    drop(leader);
    crate::metrics::record_leader(&ks.election_id, false);
    let _ = tokio::time::timeout(Duration::from_secs(2), lease_task).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Cli;
    use clap::Parser;
    use k8s_openapi::api::networking::v1::IngressSpec;

    fn ks(args: &[&str]) -> KubeSettings {
        let mut v = vec!["pingress"];
        v.extend_from_slice(args);
        Cli::parse_from(v).kube_settings().unwrap()
    }

    fn ing(name: &str, class: &str, status: &[&str]) -> Ingress {
        let mut i = Ingress::default();
        i.metadata.name = Some(name.into());
        i.metadata.namespace = Some("default".into());
        i.spec = Some(IngressSpec {
            ingress_class_name: Some(class.into()),
            ..Default::default()
        });
        if !status.is_empty() {
            i.status = serde_json::from_value(json!({"loadBalancer": {"ingress":
                status.iter().map(|a| json!({"ip": a})).collect::<Vec<_>>()}}))
            .unwrap();
        }
        i
    }

    #[test]
    fn a_lease_is_held_only_by_its_named_unexpired_holder() {
        let t = |s: i64| k8s_openapi::jiff::Timestamp::from_second(s).unwrap();
        let lease = |holder: &str, renewed: i64| -> Lease {
            serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 30,
                "renewTime": t(renewed).to_string()}}))
            .unwrap()
        };
        assert!(lease_held(&lease("me", 1000), "me", t(1010)));
        assert!(!lease_held(&lease("me", 1000), "me", t(1030)));
        assert!(!lease_held(&lease("other", 1000), "me", t(1010)));
        assert!(!lease_held(&Lease::default(), "me", t(1010)));
    }

    #[test]
    fn an_overwritten_status_is_rewritten_at_most_once_per_interval_and_reported_once() {
        let key = ("n".to_string(), "a".to_string());
        let ours = vec![Address::Ip("10.0.0.1".into())];
        let mut written = Written::new();
        let mut c = Contested::default();
        let t0 = tokio::time::Instant::now();
        let iv = Duration::from_secs(60);
        let p = || vec![(key.clone(), ours.clone())];
        // never written: a plain write
        assert_eq!(c.filter(p(), &written, t0, iv).0.len(), 1);
        written.insert(key.clone(), ours.clone());
        // it holds something else now: rewritten once (our own write may not be seen yet)
        let (k, w) = c.filter(p(), &written, t0, iv);
        assert_eq!((k.len(), w.len()), (1, 0));
        // overwritten again at the rebuild rate: nothing until the interval has passed
        for s in 1..60 {
            let (k, w) = c.filter(p(), &written, t0 + Duration::from_secs(s), iv);
            assert!(k.is_empty() && w.is_empty(), "second {s}");
        }
        let (k, w) = c.filter(p(), &written, t0 + iv, iv);
        assert_eq!((k.len(), w), (1, vec![key.clone()]));
        // reported once only
        let (k, w) = c.filter(p(), &written, t0 + iv * 2, iv);
        assert_eq!((k.len(), w.len()), (1, 0));
        // once our address is there again, the next change is an ordinary write
        let (k, _) = c.filter(Vec::new(), &written, t0 + iv * 2, iv);
        assert!(k.is_empty());
        written.remove(&key);
        assert_eq!(c.filter(p(), &written, t0 + iv * 2, iv).0.len(), 1);
    }

    #[test]
    fn a_write_of_ours_the_snapshot_has_not_seen_is_not_repeated() {
        let key = ("default".to_string(), "a".to_string());
        let ours = vec![Address::Ip("10.0.0.1".into())];
        let mut snap = Snapshot::default();
        let mut i = ing("a", "pingress", &[]);
        i.metadata.resource_version = Some("100".into());
        snap.add_ingress(i);
        let patch = || vec![(key.clone(), ours.clone())];
        let mut written = Written::new();
        let mut at = WrittenAt::new();
        // never written: kept
        assert_eq!(
            drop_unseen_own_writes(patch(), &snap, &written, &at).len(),
            1
        );
        // written at rv 105; the snapshot still shows rv 100 without it: dropped
        written.insert(key.clone(), ours.clone());
        at.insert(key.clone(), 105);
        assert!(drop_unseen_own_writes(patch(), &snap, &written, &at).is_empty());
        // a newer version without our address: someone else wrote it, kept (Contested decides)
        let mut newer = ing("a", "pingress", &[]);
        newer.metadata.resource_version = Some("110".into());
        snap.add_ingress(newer);
        assert_eq!(
            drop_unseen_own_writes(patch(), &snap, &written, &at).len(),
            1
        );
        // other addresses than we wrote: kept
        let other = vec![(key.clone(), vec![Address::Ip("10.0.0.2".into())])];
        assert_eq!(drop_unseen_own_writes(other, &snap, &written, &at).len(), 1);
    }

    #[test]
    fn patch_shape_is_exact() {
        let a = vec![Address::parse("10.0.0.1"), Address::parse("lb.example.com")];
        assert_eq!(
            status_patch(&a).to_string(),
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"10.0.0.1"},{"hostname":"lb.example.com"}]}}}"#
        );
        assert_eq!(
            status_patch(&[]).to_string(),
            r#"{"status":{"loadBalancer":{"ingress":null}}}"#
        );
    }

    #[test]
    fn addresses_come_from_the_flag_first_then_the_service() {
        let s = ks(&["--publish-status-address", "lb.x, 10.0.0.2,10.0.0.1"]);
        assert_eq!(
            addresses(&s, None).unwrap(),
            vec![
                Address::Ip("10.0.0.1".into()),
                Address::Ip("10.0.0.2".into()),
                Address::Hostname("lb.x".into())
            ]
        );
        let s = ks(&["--publish-service", "ns/svc"]);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "svc", "namespace": "ns"},
            "spec": {"externalIPs": ["1.1.1.1"]},
            "status": {"loadBalancer": {"ingress": [{"hostname": "h"}, {"ip": "2.2.2.2"}]}}
        }))
        .unwrap();
        assert_eq!(
            addresses(&s, Some(&svc)).unwrap(),
            vec![Address::Ip("2.2.2.2".into()), Address::Hostname("h".into())]
        );
        assert_eq!(addresses(&s, None).unwrap(), vec![]);
        assert!(addresses(&ks(&[]), None).is_none());
    }

    #[test]
    fn plan_sets_ours_and_clears_what_we_no_longer_serve() {
        let mut snap = Snapshot::default();
        snap.add_ingress_class(
            serde_json::from_value::<k8s_openapi::api::networking::v1::IngressClass>(
                json!({"metadata": {"name": "pingress"},
                "spec": {"controller": "k8s.io/pingress"}}),
            )
            .unwrap(),
        );
        snap.add_ingress(ing("new", "pingress", &[]));
        snap.add_ingress(ing("done", "pingress", &["10.0.0.1"]));
        snap.add_ingress(ing("left", "other", &["10.0.0.1"]));
        snap.add_ingress(ing("foreign", "other", &["9.9.9.9"]));
        let cs = CompileSettings::default();
        let addrs = vec![Address::Ip("10.0.0.1".into())];
        let p = plan(&snap, &cs, &addrs, false);
        let names: Vec<(&str, usize)> = p.iter().map(|((_, n), a)| (n.as_str(), a.len())).collect();
        assert_eq!(names, vec![("left", 0), ("new", 1)]);
        let p = plan(&snap, &cs, &addrs, true);
        let names: Vec<&str> = p.iter().map(|((_, n), _)| n.as_str()).collect();
        assert_eq!(names, vec!["done", "left"]);
        // on shutdown also what this process wrote and the snapshot has not seen yet ("new")
        let mut written = Written::new();
        written.insert(("default".into(), "new".into()), addrs.clone());
        let p = clear_plan(&snap, &cs, &addrs, &written);
        let names: Vec<(&str, usize)> = p.iter().map(|((_, n), a)| (n.as_str(), a.len())).collect();
        assert_eq!(names, vec![("done", 0), ("left", 0), ("new", 0)]);
    }

    #[test]
    fn lease_grace_is_below_ttl() {
        assert_eq!(lease_grace(30), 5);
        assert_eq!(lease_grace(3), 1);
        assert_eq!(lease_grace(2), 1);
    }
}
