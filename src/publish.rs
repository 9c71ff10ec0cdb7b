//! The one place a route table is published: compile a snapshot, log new diagnostics, and swap
//! the table into the shared [`ArcSwap`] store. If compile panics, the last good table stays.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::compile::compile;
use crate::diagnostics::Diagnostic;
use crate::health::Readiness;
use crate::route::RouteTable;
use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;

/// Shared handle to the live table: the proxy loads it once per request.
pub type TableStore = Arc<ArcSwap<RouteTable>>;

pub fn new_store() -> TableStore {
    Arc::new(ArcSwap::from_pointee(RouteTable::empty()))
}

/// Outcome of one rebuild.
#[derive(Debug, Clone)]
pub struct Published {
    pub diagnostics: Vec<Diagnostic>,
    pub served_ingresses: usize,
    pub hosts: usize,
}

pub struct Publisher {
    store: TableStore,
    settings: CompileSettings,
    /// Diagnostics of the previous rebuild: only new ones are logged again.
    last: Mutex<BTreeSet<Diagnostic>>,
    /// Set by the first successful publish (`/readyz`).
    ready: Readiness,
    /// The per-Ingress results of the last compile (reused by the next one).
    cache: Mutex<crate::compile::cache::CompileCache>,
    /// Bumped after every publish (layer 4 listeners follow the table).
    published: tokio::sync::watch::Sender<u64>,
}

impl Publisher {
    pub fn new(store: TableStore, settings: CompileSettings) -> Self {
        Publisher {
            store,
            settings,
            last: Mutex::new(BTreeSet::new()),
            ready: Readiness::new(),
            cache: Mutex::new(Default::default()),
            published: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver that sees every publish.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    pub fn store(&self) -> &TableStore {
        &self.store
    }

    /// Turns ready once the first table is published.
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    /// Compile `snap` and publish the result. `None` when compile panicked (the previous table
    /// stays live and the panic is logged).
    pub fn rebuild(&self, snap: &Snapshot) -> Option<Published> {
        let started = Instant::now();
        let prev = self.store.load_full();
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let compiled = match catch_unwind(AssertUnwindSafe(|| {
            compile(
                snap,
                &self.settings,
                Some(crate::compile::Prev {
                    table: &prev,
                    cache: &cache,
                }),
            )
        })) {
            Ok(c) => c,
            Err(_) => {
                tracing::error!("compile panicked; the last good route table stays live");
                crate::metrics::record_publish_failure();
                return None;
            }
        };
        let hosts = compiled.table.host_count();
        let reused = compiled.cache.reused;
        // the old cache (10k units' keys) is freed after the new table is live
        let old_cache = std::mem::replace(&mut *cache, compiled.cache);
        drop(cache);
        let table = Arc::new(compiled.table);
        self.store.store(table.clone());
        let live = started.elapsed();
        drop(old_cache);
        crate::metrics::record_certificates(&table.tls, &self.settings.ingress_class);
        self.published.send_modify(|n| *n += 1);
        self.ready.set_ready();
        let mut all: Vec<Diagnostic> = snap.diagnostics.clone();
        all.extend(compiled.diagnostics);
        self.log_new(&all);
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        crate::metrics::record_publish(started.elapsed(), hosts, compiled.served, &all, now_unix);
        crate::metrics::record_unsupported(&compiled.unsupported);
        crate::metrics::record_stale(&compiled.stale);
        tracing::info!(
            objects = snap.object_count(),
            ingresses = compiled.served,
            reused,
            hosts,
            diagnostics = all.len(),
            live_ms = live.as_secs_f64() * 1000.0,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "route table published"
        );
        Some(Published {
            diagnostics: all,
            served_ingresses: compiled.served,
            hosts,
        })
    }

    /// The current diagnostics (of the last rebuild).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self.last.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    fn log_new(&self, all: &[Diagnostic]) {
        let now: BTreeSet<Diagnostic> = all.iter().cloned().collect();
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for d in now.difference(&last) {
            d.log();
        }
        *last = now;
    }
}

impl crate::health::DebugView for Publisher {
    fn routes(&self) -> serde_json::Value {
        crate::debug::routes(&self.store.load())
    }

    fn route(&self, host: &str, path: &str, headers: &http::HeaderMap) -> serde_json::Value {
        crate::debug::route_with(&self.store.load(), host, path, headers)
    }

    fn diagnostics(&self) -> serde_json::Value {
        crate::debug::diagnostics(&self.diagnostics())
    }
}
