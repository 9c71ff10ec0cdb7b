//! Where Kubernetes objects come from. Every source fills a `Snapshot` and hands it to the one
//! `Publisher`: `files` (standalone mode) or `kube` (cluster mode).

pub mod files;
pub mod kube;
