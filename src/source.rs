//! Where Kubernetes objects come from. Every source fills a `Snapshot` and hands it to the one
//! `Publisher`; the kube watcher (cluster mode) is a separate issue and plugs in beside `files`.

pub mod files;
