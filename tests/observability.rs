//! /metrics (ingress-nginx names and labels) and the access log (upstreaminfo line, JSON
//! template, per-Ingress and default-backend switches) over real sockets.

mod support;

use std::time::Duration;

use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

fn series<'a>(text: &'a str, name: &str, must: &[&str]) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && must.iter().all(|m| l.contains(m)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_ingress_nginx_names_and_route_labels() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "ing.yaml",
        &Ingress::new("obs")
            .host("obs.test", &[("/api", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("obs.test", "/api", 200, STARTUP).await;
    for i in 0..5 {
        assert_eq!(
            px.get("obs.test", &format!("/api/items/{i}?q={i}"))
                .await
                .status,
            200
        );
    }
    assert_eq!(px.get("obs.test", "/nothing-here").await.status, 404);
    let text = px.metrics().await;
    let line = series(
        &text,
        "nginx_ingress_controller_requests",
        &[
            "ingress=\"obs\"",
            "status=\"200\"",
            "path=\"/api\"",
            "namespace=\"default\"",
        ],
    )
    .unwrap_or_else(|| panic!("no requests series in\n{text}"));
    assert!(line.contains("service=\"svc\""), "{line}");
    assert!(line.contains("method=\"GET\""), "{line}");
    assert!(line.contains("host=\"obs.test\""), "{line}");
    assert!(
        line.contains("controller_class=\"k8s.io/pingress\""),
        "{line}"
    );
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 6.0, "{line}");
    // the request URI never becomes a label
    assert!(
        !text.contains("/api/items"),
        "request URIs must not be labels"
    );
    assert!(series(
        &text,
        "nginx_ingress_controller_requests",
        &["status=\"404\"", "ingress=\"\""]
    )
    .is_some());
    for family in [
        "nginx_ingress_controller_request_duration_seconds_bucket",
        "nginx_ingress_controller_response_duration_seconds_bucket",
        "nginx_ingress_controller_request_size_bucket",
        "nginx_ingress_controller_response_size_bucket",
        "nginx_ingress_controller_bytes_sent_bucket",
        "nginx_ingress_controller_config_last_reload_successful",
        "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
        "nginx_ingress_controller_success",
        "pingress_table_rebuild_duration_seconds_bucket",
        "pingress_table_hosts",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    let reload = text
        .lines()
        .find(|l| l.starts_with("nginx_ingress_controller_config_last_reload_successful{"))
        .unwrap();
    assert!(reload.ends_with(" 1"), "{reload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_upstreaminfo_line_and_switches() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "ing.yaml",
        &Ingress::new("logged")
            .host("log.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "quiet.yaml",
        &Ingress::new("quiet")
            .annotation(&nx("enable-access-log"), "false")
            .host("quiet.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    let px = Pingress::start(dir.path()).await;
    px.wait_status("log.test", "/", 200, STARTUP).await;
    px.request(
        reqwest::Method::GET,
        "log.test",
        "/hello?x=1",
        &[
            ("user-agent", "obs-test/1"),
            ("x-request-id", "rid-42"),
            ("referer", "http://r.example/"),
        ],
        vec![],
    )
    .await;
    px.get("quiet.test", "/secret-path").await;
    px.get("unknown.test", "/default-backend-path").await;
    let found = wait_until(Duration::from_secs(5), || async {
        px.stdout().contains("rid-42")
    })
    .await;
    assert!(
        found.is_some(),
        "no access log line; stdout:\n{}",
        px.stdout()
    );
    let out = px.stdout();
    let line = out.lines().find(|l| l.contains("rid-42")).unwrap();
    // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    // "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name]
    // [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length
    // $upstream_response_time $upstream_status $req_id
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /hello?x=1 HTTP/1.1\" 200 "),
        "{line}"
    );
    assert!(
        line.contains(" \"http://r.example/\" \"obs-test/1\" "),
        "{line}"
    );
    assert!(line.contains(" [default-svc-80] [] "), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{} ", b.port)), "{line}");
    assert!(line.ends_with(" 200 rid-42"), "{line}");
    // enable-access-log: false, and the default backend (off by default), are not logged
    let settled = wait_until(Duration::from_millis(300), || async { false }).await;
    assert!(settled.is_none());
    let out = px.stdout();
    assert!(!out.contains("/secret-path"), "{out}");
    assert!(!out.contains("/default-backend-path"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_json_template_from_the_configmap() {
    let b = EchoBackend::start("b").await;
    let dir = ManifestDir::with_class();
    dir.write("backends.yaml", &backend_set("svc", &[b.port]));
    dir.write(
        "ing.yaml",
        &Ingress::new("json")
            .host("json.test", &[("/", PREFIX, "svc")])
            .to_yaml(),
    );
    dir.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pingress, namespace: ingress}\ndata:\n  skip-access-log-urls: \"/skipme, /health\"\n  log-format-escape-json: \"true\"\n  enable-access-log-for-default-backend: \"true\"\n  log-format-upstream: '{\"uri\": \"$request_uri\", \"status\": $status, \"ingress\": \"$ingress_name\", \"ns\": \"$namespace\", \"svc\": \"$service_name\", \"upstream\": \"$proxy_upstream_name\"}'\n",
    );
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("json.test", "/", 200, STARTUP).await;
    px.get("json.test", "/q?a=\"quoted\"").await;
    // skip-access-log-urls: exact request URIs, not logged (logged in request order)
    px.get("json.test", "/skipme").await;
    px.get("json.test", "/skipme?x=1").await;
    px.get("nobody.test", "/dflt").await;
    let found = wait_until(Duration::from_secs(5), || async {
        px.stdout().contains("/dflt")
    })
    .await;
    assert!(found.is_some(), "stdout:\n{}", px.stdout());
    let out = px.stdout();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let uris: Vec<&str> = lines.iter().filter_map(|v| v["uri"].as_str()).collect();
    assert!(!uris.contains(&"/skipme"), "{uris:?}");
    assert!(uris.contains(&"/skipme?x=1"), "{uris:?}");
    let q = lines
        .iter()
        .find(|v| v["uri"].as_str().is_some_and(|u| u.starts_with("/q")))
        .unwrap();
    assert_eq!(q["status"], 200);
    assert_eq!(q["ingress"], "json");
    assert_eq!(q["ns"], "default");
    assert_eq!(q["svc"], "svc");
    assert_eq!(q["upstream"], "default-svc-80");
    let d = lines.iter().find(|v| v["uri"] == "/dflt").unwrap();
    assert_eq!(d["status"], 404);
    assert_eq!(d["upstream"], "upstream-default-backend");
}
