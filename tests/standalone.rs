//! Standalone-mode tests: manifest directory loading, hot reload, bad input
//! and IngressClass selection.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use support::*;

/// Not YAML at all: an unclosed flow sequence followed by a stray brace.
const MALFORMED_YAML: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  ports: [ {name: http, port: 80\n  selector: }\n";

/// How long a parse error may take to show up on stderr.
const REPORT: Duration = Duration::from_secs(5);

/// Issues `GET host path` repeatedly for `duration` and asserts every answer
/// is 200 from `backend`.  Bounded in time by construction.
async fn assert_stays_served(
    px: &Pingress,
    host: &str,
    path: &str,
    backend: &str,
    duration: Duration,
) {
    let mut n = 0;
    let until = std::time::Instant::now() + duration;
    while std::time::Instant::now() < until {
        n += 1;
        let r = px.get(host, path).await;
        assert_eq!(r.status, StatusCode::OK, "request {n} to {host}{path}");
        assert_eq!(r.echo().backend, backend, "request {n} to {host}{path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_yml_and_multi_document_files_and_ignores_other_files() {
    let a = EchoBackend::start("a").await;
    let dir = ManifestDir::new();
    // Everything in one multi-document .yml file.
    dir.write(
        "all-in-one.yml",
        &docs(&[
            ingress_class(CLASS, CONTROLLER),
            backend_set("svc-a", &[a.port]),
            Ingress::new("one")
                .host("one.example.com", &[("/", PREFIX, "svc-a")])
                .to_yaml(),
        ]),
    );
    // Not a manifest: must be ignored (it would not parse as YAML either).
    dir.write("README.txt", "this is {not: [yaml\n");
    dir.write(
        "disabled.yaml.bak",
        &Ingress::new("bak")
            .host("bak.example.com", &[("/", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("one.example.com", "/", 200, STARTUP).await;
    assert_eq!(px.get("one.example.com", "/x").await.echo().backend, "a");
    assert_eq!(
        px.get("bak.example.com", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_file_at_startup_is_reported_and_the_rest_is_served() {
    let a = EchoBackend::start("a").await;
    let dir = ManifestDir::with_class();
    // Sorted first, so a loader that stops at the first error would lose
    // everything after it.
    dir.write("00-broken.yaml", MALFORMED_YAML);
    dir.write("backends.yaml", &backend_set("svc-a", &[a.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("good")
            .host("good.example.com", &[("/", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("good.example.com", "/", 200, STARTUP).await;
    assert_eq!(px.get("good.example.com", "/x").await.echo().backend, "a");
    assert!(
        px.wait_stderr_contains("00-broken.yaml", REPORT).await,
        "stderr does not mention the malformed file:\n{}",
        px.stderr()
    );
    // The report names the line: the unclosed `[` is on line 6, the parser
    // notices on line 7.
    let stderr = px.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("00-broken.yaml"))
        .unwrap();
    assert!(
        ["6", "7"]
            .iter()
            .any(|n| line.contains(&format!("00-broken.yaml:{n}"))
                || line.contains(&format!("line {n}"))),
        "report does not name line 6 or 7: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_typed_document_does_not_break_other_files() {
    let a = EchoBackend::start("a").await;
    let dir = ManifestDir::with_class();
    // Valid YAML, but not a valid Service (ports must be a list).
    dir.write(
        "01-wrong-types.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-typo\n  namespace: default\nspec:\n  ports: \"eighty\"\n",
    );
    dir.write("backends.yaml", &backend_set("svc-a", &[a.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("good")
            .host("good.example.com", &[("/", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("good.example.com", "/", 200, STARTUP).await;
    assert_eq!(px.get("good.example.com", "/").await.echo().backend, "a");
    assert!(
        px.wait_stderr_contains("01-wrong-types.yaml", REPORT).await,
        "stderr does not mention the invalid file:\n{}",
        px.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_file_added_after_start_keeps_existing_routes() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "backends.yaml",
        &docs(&[
            backend_set("svc-a", &[a.port]),
            backend_set("svc-b", &[b.port]),
        ]),
    );
    dir.write(
        "ingress.yaml",
        &Ingress::new("good")
            .host("good.example.com", &[("/", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let mut px = Pingress::start(dir.path()).await;
    px.wait_status("good.example.com", "/", 200, STARTUP).await;

    dir.write("zz-broken.yaml", MALFORMED_YAML);
    assert!(
        px.wait_stderr_contains("zz-broken.yaml", REPORT).await,
        "stderr does not mention the malformed file:\n{}",
        px.stderr()
    );
    assert_stays_served(
        &px,
        "good.example.com",
        "/",
        "a",
        Duration::from_millis(1500),
    )
    .await;
    assert!(px.is_running(), "pingress exited after a malformed file");

    // The watcher still works: fixing the file brings its routes in.
    dir.write(
        "zz-broken.yaml",
        &Ingress::new("fixed")
            .host("fixed.example.com", &[("/", PREFIX, "svc-b")])
            .to_yaml(),
    );
    let took = px.wait_backend("fixed.example.com", "/", "b", RELOAD).await;
    assert!(took.is_some(), "fixed file not served within {RELOAD:?}");
    assert_eq!(px.get("good.example.com", "/").await.echo().backend, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_changed_and_removed_files_apply_within_one_second() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("svc-a.yaml", &backend_set("svc-a", &[a.port]));
    dir.write(
        "ingress.yaml",
        &Ingress::new("r")
            .host("r.example.com", &[("/", PREFIX, "svc-a")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("r.example.com", "/", 200, STARTUP).await;

    // New Ingress file.
    dir.write("svc-b.yaml", &backend_set("svc-b", &[b.port]));
    dir.write(
        "ingress-new.yaml",
        &Ingress::new("n")
            .host("new.example.com", &[("/", PREFIX, "svc-b")])
            .to_yaml(),
    );
    assert!(
        px.wait_backend("new.example.com", "/", "b", RELOAD)
            .await
            .is_some(),
        "added Ingress not served within {RELOAD:?}"
    );

    // EndpointSlice of svc-a now points at backend b.
    dir.write(
        "svc-a.yaml",
        &docs(&[
            service("svc-a"),
            endpoint_slice("svc-a-0", "svc-a", b.port, READY),
        ]),
    );
    assert!(
        px.wait_backend("r.example.com", "/", "b", RELOAD)
            .await
            .is_some(),
        "changed EndpointSlice not applied within {RELOAD:?}"
    );

    // Removing the Ingress file removes its routes.
    dir.remove("ingress-new.yaml");
    let gone = wait_until(RELOAD, || {
        let px = &px;
        async move {
            matches!(px.try_get("new.example.com", "/").await,
                Ok(r) if r.status == StatusCode::NOT_FOUND)
        }
    })
    .await;
    assert!(gone.is_some(), "removed Ingress still served");

    // Removing the EndpointSlices leaves the Service without endpoints.
    dir.write("svc-a.yaml", &service("svc-a"));
    let unavailable = wait_until(RELOAD, || {
        let px = &px;
        async move {
            matches!(px.try_get("r.example.com", "/").await,
                Ok(r) if r.status == StatusCode::SERVICE_UNAVAILABLE)
        }
    })
    .await;
    assert!(
        unavailable.is_some(),
        "Service without endpoints is not 503"
    );
}

/// Manifests shared by the class selection tests: our class, a foreign
/// class, and one Ingress per way of (not) naming a class.
fn class_selection_dir(a: &EchoBackend, ours_default: bool) -> ManifestDir {
    let dir = ManifestDir::new();
    let ours = if ours_default {
        default_ingress_class(CLASS, CONTROLLER)
    } else {
        ingress_class(CLASS, CONTROLLER)
    };
    dir.write(
        "classes.yaml",
        &docs(&[ours, ingress_class("other", "example.com/other-controller")]),
    );
    dir.write("backends.yaml", &backend_set("svc-a", &[a.port]));
    let route = |host: &str| {
        Ingress::new(host.split('.').next().unwrap()).host(host, &[("/", PREFIX, "svc-a")])
    };
    dir.write(
        "ingresses.yaml",
        &docs(&[
            route("ours.example.com").to_yaml(),
            route("theirs.example.com").class(Some("other")).to_yaml(),
            route("unknown-class.example.com")
                .class(Some("no-such-class"))
                .to_yaml(),
            route("legacy.example.com")
                .class(None)
                .annotation("kubernetes.io/ingress.class", CLASS)
                .to_yaml(),
            route("legacy-nginx.example.com")
                .class(None)
                .annotation("kubernetes.io/ingress.class", "nginx")
                .to_yaml(),
            route("noclass.example.com").class(None).to_yaml(),
        ]),
    );
    dir
}

async fn assert_served(px: &Pingress, hosts: &[(&str, bool)]) {
    for (host, served) in hosts {
        let r = px.get(host, "/").await;
        if *served {
            assert_eq!(r.status, StatusCode::OK, "{host} should be served");
            assert_eq!(r.echo().backend, "a");
        } else {
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{host} should not be served"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_ingresses_of_our_class_are_served() {
    let a = EchoBackend::start("a").await;
    let dir = class_selection_dir(&a, false);
    let px = Pingress::start(dir.path()).await;
    px.wait_status("ours.example.com", "/", 200, STARTUP).await;
    assert_served(
        &px,
        &[
            ("ours.example.com", true),
            ("legacy.example.com", true),
            ("theirs.example.com", false),
            ("unknown-class.example.com", false),
            ("legacy-nginx.example.com", false),
            ("noclass.example.com", false),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_without_class_served_with_watch_flag() {
    let a = EchoBackend::start("a").await;
    let dir = class_selection_dir(&a, false);
    let px = Pingress::start_with_args(dir.path(), &["--watch-ingress-without-class"]).await;
    px.wait_status("ours.example.com", "/", 200, STARTUP).await;
    assert_served(
        &px,
        &[
            ("ours.example.com", true),
            ("legacy.example.com", true),
            ("noclass.example.com", true),
            ("theirs.example.com", false),
            ("legacy-nginx.example.com", false),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_without_class_served_when_our_class_is_default() {
    let a = EchoBackend::start("a").await;
    let dir = class_selection_dir(&a, true);
    let px = Pingress::start(dir.path()).await;
    px.wait_status("ours.example.com", "/", 200, STARTUP).await;
    assert_served(
        &px,
        &[
            ("ours.example.com", true),
            ("noclass.example.com", true),
            ("theirs.example.com", false),
            ("legacy-nginx.example.com", false),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_controller_and_ingress_class_flags() {
    let a = EchoBackend::start("a").await;
    let dir = ManifestDir::new();
    dir.write(
        "classes.yaml",
        &docs(&[
            ingress_class("custom-class", "example.com/custom"),
            ingress_class(CLASS, CONTROLLER),
        ]),
    );
    dir.write("backends.yaml", &backend_set("svc-a", &[a.port]));
    dir.write(
        "ingresses.yaml",
        &docs(&[
            Ingress::new("c")
                .class(Some("custom-class"))
                .host("custom.example.com", &[("/", PREFIX, "svc-a")])
                .to_yaml(),
            Ingress::new("l")
                .class(None)
                .annotation("kubernetes.io/ingress.class", "custom")
                .host("legacy.example.com", &[("/", PREFIX, "svc-a")])
                .to_yaml(),
            Ingress::new("d")
                .class(Some(CLASS))
                .host("default.example.com", &[("/", PREFIX, "svc-a")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start_with_args(
        dir.path(),
        &[
            "--controller-class",
            "example.com/custom",
            "--ingress-class",
            "custom",
        ],
    )
    .await;
    px.wait_status("custom.example.com", "/", 200, STARTUP)
        .await;
    assert_served(
        &px,
        &[
            ("custom.example.com", true),
            ("legacy.example.com", true),
            ("default.example.com", false),
        ],
    )
    .await;
}

/// A controller Deployment's ingress-nginx arguments carry over: flags with an effect here
/// (`--health-check-path`, `--healthz-host`, `--enable-metrics`, `--watch-ingress-without-class=true`)
/// take it, flags without one are accepted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_controller_arguments_are_accepted() {
    let backend = EchoBackend::start("web").await;
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &one_host_app("web", &[backend.port], "web.test"),
    );
    let px = Pingress::start_with_args(
        dir.path(),
        &[
            "--health-check-path=/live",
            "--healthz-host=127.0.0.1",
            "--enable-metrics=false",
            "--watch-ingress-without-class=true",
            "--election-ttl=30s",
            "--sync-period=10m",
            "--profiling=true",
            "--disable-leader-election=true",
            "--status-port=10246",
        ],
    )
    .await;
    let served = px.wait_backend("web.test", "/", "web", STARTUP).await;
    assert!(served.is_some(), "{}", px.stderr());
    assert_eq!(px.health_get("/live").await.0, 200);
    assert_eq!(px.health_get("/healthz").await.0, 200);
    assert_eq!(px.health_get("/metrics").await.0, 404);
    let logged = px
        .wait_stderr_contains("--status-port: Not applicable", STARTUP)
        .await;
    assert!(logged, "{}", px.stderr());
    assert!(px
        .stderr()
        .contains("--disable-leader-election: Accepted, no effect"));
}

/// ingress-nginx's Deployment runs `/nginx-ingress-controller --flags...`: with only the image
/// swapped, pingress gets that path first and starts anyway (clap alone refuses it).
#[test]
fn the_ingress_nginx_binary_path_as_first_argument_is_skipped() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingress"))
        .args([
            "/nginx-ingress-controller",
            "--election-ttl=30s",
            "--version",
        ])
        .output()
        .expect("run pingress");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pingress "));
}
