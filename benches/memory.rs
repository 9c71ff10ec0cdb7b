//! Where the memory of a large cluster goes (issue 21 item 5: RSS at 10k Ingresses): heap bytes
//! held by each stage of cluster mode, counted by a global allocator that wraps the one
//! pingress uses (mimalloc). The shape is the propagation bench's: N Ingresses (default
//! 10,000), each with its own Service and EndpointSlice, as the API server serves them.
//!
//!   cargo bench --locked --profile release-quick --bench memory
//!
//! Stages: the watch stores (typed objects, pruned as `watch` keeps them), the snapshot (it
//! shares the stores' maps), the compiled route table and the compile cache kept for the next compile, then a
//! second (incremental) compile with one Ingress changed, which holds both results for a moment.
//! Under `cargo test` (no `--bench` argument) it runs with 100 Ingresses as a check.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher::Event;
use pingress::compile::compile;
use pingress::settings::CompileSettings;
use pingress::snapshot::Snapshot;
use pingress::source::kube::prune;
use pingress::source::kube::store::{self, Store};
use serde_json::json;

/// Live heap bytes (as requested by callers; the allocator's own overhead is not counted).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static INNER: pingress::alloc::Mimalloc = pingress::alloc::Mimalloc;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { INNER.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// One object as the fake API server (tests/support) serves it: the manifest plus namespace,
/// uid, resourceVersion and creationTimestamp.
fn served(mut v: serde_json::Value, i: usize) -> serde_json::Value {
    let m = &mut v["metadata"];
    m["namespace"] = json!("default");
    m["uid"] = json!(format!("0b6f1c2e-5d7a-4e0b-9a7c-{i:012}"));
    m["resourceVersion"] = json!((100_000 + i).to_string());
    m["creationTimestamp"] = json!("2026-12-01T10:00:00Z");
    v
}

fn ingress(i: usize, host: &str, svc: &str) -> Ingress {
    let v = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": format!("i{i}")},
        "spec": {"ingressClassName": "pingress", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}
    });
    serde_json::from_value(served(v, i)).expect("Ingress")
}

fn service(i: usize, name: &str) -> Service {
    let v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "ClusterIP", "selector": {"app": name}, "clusterIP": format!("10.96.{}.{}", i / 250, i % 250),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    });
    serde_json::from_value(served(v, i)).expect("Service")
}

fn slice(i: usize, svc: &str) -> EndpointSlice {
    let v = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-0"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [format!("10.1.{}.{}", i / 250, i % 250)],
                       "conditions": {"ready": true, "terminating": false}}]
    });
    serde_json::from_value(served(v, i)).expect("EndpointSlice")
}

/// A watch's store holding `objects`, filled as its initial list fills it.
fn store<K: kube::Resource>(objects: impl IntoIterator<Item = K>) -> Store<K> {
    let (reader, mut writer) = store::store::<K>();
    writer.apply(Event::Init);
    for o in objects {
        writer.apply(Event::InitApply(o));
    }
    writer.apply(Event::InitDone);
    reader
}

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    {
        use std::mem::size_of;
        // inline sizes of the types held per object (their heap parts come on top)
        println!(
            "inline bytes: Ingress {} Service {} EndpointSlice {}, compile unit {} (plan {}, \
             annotations {}), route {}, policy {}, server {}, backend {}, backend request {}",
            size_of::<Ingress>(),
            size_of::<Service>(),
            size_of::<EndpointSlice>(),
            size_of::<pingress::compile::cache::Unit>(),
            size_of::<pingress::compile::ingress::IngressPlan>(),
            size_of::<pingress::annotations::IngressAnnotations>(),
            size_of::<pingress::route::Route>(),
            size_of::<pingress::route::policy::Policy>(),
            size_of::<pingress::route::Server>(),
            size_of::<pingress::route::backend::Backend>(),
            size_of::<pingress::compile::backend::Resolution>(),
        );
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 100 });
    let mut rows: Vec<(&str, isize)> = Vec::new();
    let mut at = live();
    // the bytes held since the last step
    fn step(what: &'static str, rows: &mut Vec<(&'static str, isize)>, at: &mut isize) {
        let now = live();
        rows.push((what, now - *at));
        *at = now;
    }

    let class: IngressClass = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "pingress"}, "spec": {"controller": "k8s.io/pingress"}
    }))
    .expect("IngressClass");
    let ingresses = store((0..n).map(|i| ingress(i, &format!("h{i}.test"), &format!("web{i}"))));
    step("Ingress store", &mut rows, &mut at);
    // pruned as cluster mode's watches prune them
    let services = store((0..n).map(|i| {
        let mut s = service(i, &format!("web{i}"));
        prune::service(&mut s);
        s
    }));
    step("Service store", &mut rows, &mut at);
    let slices = store((0..n).map(|i| {
        let mut e = slice(i, &format!("web{i}"));
        prune::endpoint_slice(&mut e);
        e
    }));
    step("EndpointSlice store", &mut rows, &mut at);

    // as cluster mode takes it (no namespace selector): the stores' own maps
    let mut snap = Snapshot {
        ingresses: ingresses.objects(),
        services: services.objects(),
        endpoint_slices: slices.objects(),
        ..Snapshot::default()
    };
    snap.add_ingress_class(class);
    step("snapshot maps", &mut rows, &mut at);

    // the default class is "pingress" with controller "k8s.io/pingress"
    let settings = CompileSettings::default();
    let mut first = compile(&snap, &settings, None);
    assert_eq!(first.served, n, "{:?}", first.diagnostics.first());
    step("compile result", &mut rows, &mut at);
    // what dropping each part of the cache frees (the table still holds what they share)
    let mut parts: Vec<(&str, isize)> = Vec::new();
    let mut cache = std::mem::take(&mut first.cache);
    let mut freed = |what: &'static str, x: Box<dyn std::any::Any>| {
        let before = live();
        drop(x);
        parts.push((what, before - live()));
    };
    freed("host index", Box::new(std::mem::take(&mut cache.hosts)));
    freed("upstream users", Box::new(std::mem::take(&mut cache.users)));
    freed(
        "resolved backends",
        Box::new(std::mem::take(&mut cache.resolved)),
    );
    freed("units and the rest", Box::new(cache));
    let cache_bytes: isize = parts.iter().map(|(_, b)| b).sum();
    // put it back: the next compile needs it (measured again below as part of the result)
    let first = compile(&snap, &settings, None);
    at = live();

    // one Ingress changed: the incremental compile, both results alive until the old drops
    let mut changed = snap.clone();
    changed.add_ingress(ingress(0, "h0-moved.test", "web0"));
    let second = compile(&changed, &settings, Some(first.prev()));
    step(
        "second result (incremental, old still alive)",
        &mut rows,
        &mut at,
    );
    assert!(
        second.cache.incremental,
        "one changed Ingress compiles incrementally"
    );
    drop(first);
    step("old result dropped", &mut rows, &mut at);

    let total: isize = rows.iter().map(|(_, b)| b).sum();
    println!("{n} Ingresses, each with its own Service and EndpointSlice: live heap bytes");
    println!("| stage | MiB | bytes per Ingress |");
    println!("|---|---:|---:|");
    let per = |b: isize| b / n.max(1) as isize;
    for (what, b) in &rows {
        println!("| {what} | {:.1} | {} |", mib(*b), per(*b));
    }
    println!(
        "| of the compile result: the compile cache | {:.1} | {} |",
        mib(cache_bytes),
        per(cache_bytes)
    );
    for (what, b) in &parts {
        println!("| of the cache: {what} | {:.1} | {} |", mib(*b), per(*b));
    }
    println!("| total held | {:.1} | {} |", mib(total), per(total));
    drop((second, changed, snap, ingresses, services, slices));
}
