//! Route propagation in cluster mode (issue 21 item 5): an in-process fake API server holding
//! N Ingresses (`N`, default 10,000), each with its own Service and EndpointSlice
//! (`SHARED_SERVICE=1`: one Service for all), the real pingress binary in cluster mode, then ROUNDS new
//! Ingresses (default 30), one at a time after a quiet period: the time from the API write to
//! the new host answering 200 through pingress, as p50 / p90 / max.
//!
//!   cargo bench --locked --bench propagation            (N=10000 ROUNDS=30)
//!
//! `CHANGE=endpoints`: instead of a new Ingress, each round moves the pods of an existing
//! app (the EndpointSlice of Service `web<k>` updated to point at a second backend), and
//! the time is until host `h<k>.test` is answered by that backend (pod churn, the most frequent
//! change in a real cluster). `CHANGE=app`: each round deploys a new app in one apply (Service,
//! EndpointSlice and Ingress, a few ms apart as `kubectl apply -f app.yaml` writes them), timed
//! until its host answers 200.
//!
//! With `PINGRESS_TEST_KUBECONFIG` set, the same runs against that real API server instead of
//! the fake one (tests/support/real_api.rs: its own Namespace and IngressClass, headless
//! Services, backends on a non-loopback address; objects written by server-side apply, 32 at a
//! time for the initial load). The time then starts before the write request, so it includes
//! the API server's write (printed apart as "API write").
//!
//! `SHOW_LOG=1` also prints pingress's last 40 cluster-source log lines (when each snapshot
//! was taken: which rebuild took which change).
//!
//! Under `cargo test` (no `--bench` argument) it runs small (100 Ingresses, 2 changes) as a
//! check that changes propagate, without the figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::fake_apiserver::FakeApi;
use support::real_api::{self, Cluster};
use support::*;

/// Where the objects live: the in-process fake API server, or a real one.
enum Api {
    Fake(FakeApi),
    Real(Box<Cluster>),
}

impl Api {
    /// Write the objects of `yaml`, in order, one request at a time.
    async fn apply(&self, yaml: &str) {
        match self {
            Api::Fake(f) => f.apply_yaml(yaml),
            Api::Real(c) => c.apply_yaml(yaml).await,
        }
    }

    /// Write many objects (the initial load).
    async fn load(&self, yaml: &str) {
        match self {
            Api::Fake(f) => f.apply_yaml(yaml),
            Api::Real(c) => c.apply_all(yaml, 32).await,
        }
    }
}

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
        let real = if std::env::var_os(real_api::ENV).is_some_and(|v| !v.is_empty()) {
            let Some(c) = Cluster::connect("propagation").await else {
                return;
            };
            Some(c)
        } else {
            None
        };
        let (a, b) = match &real {
            Some(c) => (
                EchoBackend::start_on(c.backend_ip, "a").await,
                EchoBackend::start_on(c.backend_ip, "b").await,
            ),
            None => (EchoBackend::start("a").await, EchoBackend::start("b").await),
        };
        let change = std::env::var("CHANGE").unwrap_or_default();
        let endpoints = change == "endpoints";
        let app = change == "app";
        assert!(
            !(endpoints && std::env::var("SHARED_SERVICE").is_ok_and(|v| v == "1")),
            "CHANGE=endpoints needs a Service per Ingress"
        );
        let api = match real {
            Some(c) => Api::Real(Box::new(c)),
            None => Api::Fake(FakeApi::start().await),
        };
        // as in a real cluster, each Ingress has its own Service and EndpointSlice
        // (SHARED_SERVICE=1: all Ingresses route to one Service, the earlier shape)
        let shared = std::env::var("SHARED_SERVICE").is_ok_and(|v| v == "1");
        let mut parts = vec![
            ingress_class(CLASS, CONTROLLER),
            backend_set("web", &[a.port]),
        ];
        for i in 0..n {
            let svc = if shared {
                "web".to_string()
            } else {
                parts.push(backend_set(&format!("web{i}"), &[a.port]));
                format!("web{i}")
            };
            parts.push(
                Ingress::new(&format!("i{i}"))
                    .host(&format!("h{i}.test"), &[("/", PREFIX, &svc)])
                    .to_yaml(),
            );
        }
        let loading = Instant::now();
        api.load(&docs(&parts)).await;
        if let Api::Real(c) = &api {
            println!(
                "{n} Ingresses with their Services and EndpointSlices written to the real API \
                 server (namespace {}) in {:.1} s",
                c.ns,
                loading.elapsed().as_secs_f64()
            );
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let (kc, mut args) = match &api {
            Api::Fake(f) => (f.kubeconfig(tmp.path(), "bench").await, vec![]),
            Api::Real(c) => (c.kubeconfig.clone(), c.scope_args()),
        };
        args.push("--update-status=false".to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let px = Pingress::start_cluster(
            &kc,
            &args,
            &[("RUST_LOG", "info,pingress::source::kube=debug")],
        )
        .await;
        px.wait_status("h0.test", "/", 200, Duration::from_secs(300))
            .await;
        let mut ms = Vec::with_capacity(rounds);
        // how long the write request itself took (the API server's part)
        let mut write_ms = Vec::with_capacity(rounds);
        for k in 0..rounds {
            // a quiet period, so each change is the first after one (the leading edge)
            tokio::time::sleep(Duration::from_millis(300)).await;
            if endpoints {
                let host = format!("h{k}.test");
                let started = Instant::now();
                // the EndpointSlice controller's update: the Service itself stays
                let svc = format!("web{k}");
                api.apply(&endpoint_slice(&format!("{svc}-0"), &svc, b.port, READY))
                    .await;
                write_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                loop {
                    let r = px.get(&host, "/").await;
                    if r.status == 200 && r.backend().as_deref() == Some("b") {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "{host} never moved to backend b"
                    );
                }
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                continue;
            }
            let host = format!("new{k}.test");
            let started = Instant::now();
            if app {
                let svc = format!("app{k}");
                api.apply(&docs(&[
                    backend_set(&svc, &[a.port]),
                    Ingress::new(&svc)
                        .host(&host, &[("/", PREFIX, &svc)])
                        .to_yaml(),
                ]))
                .await;
            } else {
                api.apply(
                    &Ingress::new(&format!("new{k}"))
                        .host(&host, &[("/", PREFIX, "web")])
                        .to_yaml(),
                )
                .await;
            }
            write_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            while px.get(&host, "/").await.status != 200 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{host} never served"
                );
            }
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "{n} Ingresses, {rounds} {}: propagation {}",
            if endpoints {
                "pod moves"
            } else if app {
                "new apps"
            } else {
                "new Ingresses"
            },
            percentiles(&mut ms)
        );
        if matches!(api, Api::Real(_)) {
            println!("  API write (in the above): {}", percentiles(&mut write_ms));
        }
        // pingress's own account of each rebuild, from its log: what of the propagation time
        // is taking the snapshot and compiling until the table is live, and what is watch
        // delivery and the first answer (the rounds' rebuilds are the last ones)
        let log = format!("{}\n{}", px.stderr(), px.stdout());
        if std::env::var_os("SHOW_LOG").is_some() {
            for l in log
                .lines()
                .filter(|l| l.contains("source::kube"))
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("{l}");
            }
        }
        for (what, line, field) in [
            ("snapshot taken", "snapshot taken", "elapsed_ms="),
            ("compile until live", "route table published", "live_ms="),
            ("whole rebuild", "route table published", "elapsed_ms="),
        ] {
            let mut v = log_figures(&log, line, field);
            let mut v = v.split_off(v.len().saturating_sub(rounds));
            if !v.is_empty() {
                println!("  {what} (pingress log): {}", percentiles(&mut v));
            }
        }
        // memory with N Ingresses (and their Services) after the rounds
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", px.pid())).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            println!("  pingress RSS after the rounds: {:.0} MiB", kib / 1024.0);
        }
        // of which mapped files (the binary's code and shared libraries) and heap/stacks
        let rollup =
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", px.pid())).unwrap_or_default();
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        };
        if let (Some(anon), Some(file)) = (field("Pss_Anon:"), field("Pss_File:")) {
            println!(
                "    of which anonymous (heap, stacks) {:.0} MiB, mapped files {:.0} MiB",
                anon / 1024.0,
                file / 1024.0
            );
        }
    });
}

/// The numbers after `field` on the log lines containing `line`, in order.
fn log_figures(log: &str, line: &str, field: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(line))
        .filter_map(|l| {
            let v = l.split(field).nth(1)?;
            v.split(|c: char| c != '.' && !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// "p50 X ms, p90 Y ms, max Z ms" of `v` (not empty; sorted in place).
fn percentiles(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.9),
        at(1.0)
    )
}
