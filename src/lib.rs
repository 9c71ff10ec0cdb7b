//! pingress: a Kubernetes Ingress controller on Cloudflare Pingora, compatible with
//! ingress-nginx.
//!
//! Data flow (see `../shared/DESIGN.md` in the team repo):
//!
//! ```text
//! kube-apiserver (source::kube) ─┐
//! YAML folder (source::files) ──► Snapshot ──► compile (pure) ──► RouteTable
//!                                                   │                 │ one ArcSwap store
//!                                          Vec<Diagnostic>            ▼ (publish)
//!                                                          proxy (ProxyHttp): one load per request
//! ```
//!
//! Code map:
//! - [`settings`]: flags (ingress-nginx names) and the compile settings;
//! - [`source`]: where objects come from (standalone: [`source::files`], cluster:
//!   [`source::kube`]);
//! - [`health`]: `/healthz` and `/readyz` on `--healthz-port`;
//! - [`snapshot`]: the owned object view compile reads;
//! - [`annotations`]: annotation strings parsed into typed values;
//! - [`compile`]: pure snapshot -> table + diagnostics;
//! - [`route`]: the immutable runtime table and lookup;
//! - [`publish`]: compile + swap, keeping the last good table;
//! - [`proxy`]: the Pingora `ProxyHttp`;
//! - [`tls`]: the HTTPS listener's SNI resolver, default certificate, crypto provider;
//! - [`metrics`]: prometheus metrics (ingress-nginx names);
//! - [`edge`]: connection level before HTTP parsing (deadline for the first bytes);
//! - [`server`]: wiring of the Pingora server.
//!
//! Invariants: `annotations`, `compile` and `route` do no I/O; compile is deterministic; a
//! table is published whole or not at all; the proxy never sees Kubernetes types.

pub mod access_log;
pub mod alloc;
pub mod annotations;
pub mod check;
pub mod compile;
pub mod configmap;
pub mod debug;
pub mod diagnostics;
pub mod edge;
pub mod health;
pub mod l4;
pub mod metrics;
pub mod proxy;
pub mod publish;
pub mod route;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod tls;
pub mod values;
pub mod waf;
