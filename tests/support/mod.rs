//! Shared helpers for the pingress integration tests: an in-process echo
//! backend, a harness running the binary, and manifest builders.
#![allow(dead_code, unused_imports)]

pub mod echo;
pub mod fake_apiserver;
pub mod harness;
pub mod manifests;
pub mod raw;
pub mod readme;
pub mod real_api;
pub mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

pub use echo::{fnv1a, Echo, EchoBackend, BACKEND_HEADER};
pub use harness::{free_port, h2c_client, http1_client, Pingress, Reply};
pub use manifests::*;
pub use raw::{RawConn, RawResponse};

/// Time a manifest change is allowed to take before it is served.
pub const RELOAD: Duration = Duration::from_secs(1);

/// Time allowed for the initial manifests to be served after the listener
/// answers.
pub const STARTUP: Duration = Duration::from_secs(10);

/// Polls `cond` every 10 ms until it returns true or `timeout` elapses.
/// Returns the time from the start until `cond` returned true, `None` if no
/// evaluation started before `timeout` returned true.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
