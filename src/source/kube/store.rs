//! What each watch caches: a kind's objects by (namespace, name), in the very map a snapshot
//! hands to compile.
//!
//! kube-rs's reflector store keys every object by an `ObjectRef` that copies its name,
//! namespace, uid and resourceVersion (about 240 bytes per object at 10k), and a snapshot then
//! needed a map of its own over the same objects. Here the map is an [`Objects`] map: a
//! snapshot takes it as it is (a reference count), and the writer copies it only when it
//! changes while a snapshot still holds it (once per rebuild and kind, as the snapshot's own
//! patched copy did before).
//!
//! Semantics follow kube's store: a (re)list fills a new map that replaces the old one whole
//! when the list is complete, and the store is ready after its first complete list.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::runtime::watcher::Event;

use crate::snapshot::{key_of, Key, Objects};

/// The reading side, cheap to clone.
pub struct Store<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<K> {
    objects: Mutex<Objects<Key, K>>,
    /// Set after the first complete list.
    ready: tokio::sync::watch::Sender<bool>,
}

/// The watch task's side.
pub struct Writer<K> {
    store: Store<K>,
    /// A (re)list in progress: the objects listed so far.
    listing: Option<BTreeMap<Key, Arc<K>>>,
}

/// A new, empty, not yet ready store.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let store = Store {
        shared: Arc::new(Shared {
            objects: Mutex::new(Objects::default()),
            ready: tokio::sync::watch::Sender::new(false),
        }),
    };
    let writer = Writer {
        store: store.clone(),
        listing: None,
    };
    (store, writer)
}

impl<K> Store<K> {
    fn lock(&self) -> MutexGuard<'_, Objects<Key, K>> {
        match self.shared.objects.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The objects now: shared, not copied.
    pub fn objects(&self) -> Objects<Key, K> {
        self.lock().clone()
    }

    /// The objects now, in key order.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.objects().values().cloned().collect()
    }

    pub fn get(&self, key: &Key) -> Option<Arc<K>> {
        self.lock().get(key).cloned()
    }

    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Wait for the first complete list.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl<K: kube::Resource> Writer<K> {
    /// Apply one watch event.
    pub fn apply(&mut self, ev: Event<K>) {
        match ev {
            Event::Apply(o) => {
                let key = key_of(o.meta());
                Arc::make_mut(&mut self.store.lock()).insert(key, Arc::new(o));
            }
            Event::Delete(o) => {
                let key = key_of(o.meta());
                let mut objects = self.store.lock();
                if objects.contains_key(&key) {
                    Arc::make_mut(&mut objects).remove(&key);
                }
            }
            Event::Init => self.listing = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                let key = key_of(o.meta());
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, Arc::new(o));
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                *self.store.lock() = Arc::new(listed);
                self.store.shared.ready.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    fn svc(ns: &str, name: &str, rv: &str) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        s
    }

    fn names(s: &Store<Service>) -> Vec<String> {
        s.state()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}@{}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    o.metadata.name.as_deref().unwrap_or(""),
                    o.metadata.resource_version.as_deref().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn a_list_replaces_the_objects_whole_when_complete_and_events_patch_them() {
        let (store, mut w) = store::<Service>();
        assert!(!store.is_ready());
        w.apply(Event::Init);
        w.apply(Event::InitApply(svc("a", "x", "1")));
        w.apply(Event::InitApply(svc("a", "y", "1")));
        // not visible before the list completes
        assert!(names(&store).is_empty() && !store.is_ready());
        w.apply(Event::InitDone);
        assert!(store.is_ready());
        assert_eq!(names(&store), ["a/x@1", "a/y@1"]);

        // a snapshot keeps the map it took; the store changes on
        let taken = store.objects();
        w.apply(Event::Apply(svc("a", "x", "2")));
        w.apply(Event::Delete(svc("a", "y", "1")));
        w.apply(Event::Delete(svc("a", "gone", "1")));
        assert_eq!(names(&store), ["a/x@2"]);
        assert_eq!(taken.len(), 2);
        assert_eq!(
            store
                .get(&("a".into(), "x".into()))
                .and_then(|o| o.metadata.resource_version.clone())
                .as_deref(),
            Some("2")
        );
        // unchanged since: the same map
        assert!(Arc::ptr_eq(&store.objects(), &store.objects()));

        // a relist drops what it no longer lists, at its end
        w.apply(Event::Init);
        w.apply(Event::InitApply(svc("b", "z", "3")));
        assert_eq!(names(&store), ["a/x@2"]);
        w.apply(Event::InitDone);
        assert_eq!(names(&store), ["b/z@3"]);
    }

    #[tokio::test]
    async fn waiting_for_ready_ends_with_the_first_complete_list() {
        let (store, mut w) = store::<Service>();
        let waiter = tokio::spawn({
            let s = store.clone();
            async move { s.wait_until_ready().await }
        });
        w.apply(Event::Init);
        w.apply(Event::InitDone);
        waiter.await.unwrap();
        assert!(store.is_ready());
    }
}
