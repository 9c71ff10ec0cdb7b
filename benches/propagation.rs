//! Route propagation in cluster mode (issue 21 item 5): an in-process fake API server holding
//! N Ingresses (`N`, default 10,000), the real pingress binary in cluster mode, then ROUNDS new
//! Ingresses (default 30), one at a time after a quiet period: the time from the API write to
//! the new host answering 200 through pingress, as p50 / p90 / max.
//!
//!   cargo bench --locked --bench propagation            (N=10000 ROUNDS=30)
//!
//! Under `cargo test` (no `--bench` argument) it runs small (100 Ingresses, 2 changes) as a
//! check that changes propagate, without the figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: a small check only
    let bench = std::env::args().any(|a| a == "--bench");
    let (n_default, rounds_default) = if bench { (10_000, 30) } else { (100, 2) };
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n_default);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(rounds_default)
        .max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let a = EchoBackend::start("a").await;
        let fake = support::fake_apiserver::FakeApi::start().await;
        let mut parts = vec![
            ingress_class(CLASS, CONTROLLER),
            backend_set("web", &[a.port]),
        ];
        for i in 0..n {
            parts.push(
                Ingress::new(&format!("i{i}"))
                    .host(&format!("h{i}.test"), &[("/", PREFIX, "web")])
                    .to_yaml(),
            );
        }
        fake.apply_yaml(&docs(&parts));
        let tmp = tempfile::tempdir().expect("tempdir");
        let kc = fake.kubeconfig(tmp.path(), "bench").await;
        let px = Pingress::start_cluster(&kc, &["--update-status=false"], &[]).await;
        px.wait_status("h0.test", "/", 200, Duration::from_secs(300))
            .await;
        let mut ms = Vec::with_capacity(rounds);
        for k in 0..rounds {
            // a quiet period, so each change is the first after one (the leading edge)
            tokio::time::sleep(Duration::from_millis(300)).await;
            let host = format!("new{k}.test");
            let started = Instant::now();
            fake.apply_yaml(
                &Ingress::new(&format!("new{k}"))
                    .host(&host, &[("/", PREFIX, "web")])
                    .to_yaml(),
            );
            while px.get(&host, "/").await.status != 200 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{host} never served"
                );
            }
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "{n} Ingresses, {rounds} changes: propagation p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            at(0.5),
            at(0.9),
            at(1.0)
        );
    });
}
