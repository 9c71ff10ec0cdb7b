//! `pingress check` (the binary, as a user runs it): the report on fixtures covering every
//! state against golden files (human and JSON; `PINGRESS_BLESS=1` rewrites them), the exit
//! codes, `-f -` with `kubectl get -o yaml` output on stdin, and the read-only guarantee against
//! the in-process fake API server (any write request fails the test).

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::fake_apiserver::FakeApi;
use support::*;

const CLASS_ARGS: &[&str] = &[
    "--ingress-class",
    "nginx",
    "--controller-class",
    "k8s.io/ingress-nginx",
    "--configmap",
    "ingress-nginx/ingress-nginx-controller",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check")
}

/// Run `pingress check ARGS` (stdin from `input`): (exit code, stdout).
fn check(args: &[&str], input: Option<&str>) -> (i32, String) {
    run_sub("check", args, input)
}

fn check_sub(sub: &str, args: &[&str]) -> (i32, String) {
    run_sub(sub, args, None)
}

fn run_sub(sub: &str, args: &[&str], input: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pingress"));
    cmd.arg(sub)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run pingress check");
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        (0..=2).contains(&code),
        "exit {code}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn golden(name: &str, got: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("PINGRESS_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{} differs from the output (PINGRESS_BLESS=1 rewrites it):\n{got}",
        path.display()
    );
}

fn dir_args(extra: &[&str]) -> Vec<String> {
    let dir = fixtures().join("manifests");
    let mut a = vec!["--manifests".to_string(), dir.display().to_string()];
    a.extend(CLASS_ARGS.iter().map(|s| s.to_string()));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn every_state_against_golden_output() {
    let args = dir_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, human) = check(&args, None);
    assert_eq!(code, 2, "some Ingresses would be left out");
    assert!(
        human.starts_with("5 Ingresses: 1 serve identically, 2 differ, 2 would be left out\n"),
        "{human}"
    );
    golden("expected.txt", &human);

    let args = dir_args(&["-o", "json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, json) = check(&args, None);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["summary"]["left_out"], 2);
    assert_eq!(v["summary"]["exit_code"], 2);
    let states: Vec<(&str, &str)> = v["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("admin", "differs"),
            ("api", "differs"),
            ("broken", "left out"),
            ("legacy", "left out"),
            ("storefront", "identical"),
        ]
    );
    golden("expected.json", &json);
}

/// `kubectl get ingress,svc,ingressclass -A -o yaml | pingress check -f -`: a `kind: List`.
#[test]
fn stdin_list_and_exit_codes() {
    let list = |annotations: &str| {
        format!(
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: networking.k8s.io/v1\n  kind: IngressClass\n  metadata: {{name: nginx}}\n  spec: {{controller: k8s.io/ingress-nginx}}\n\
             - apiVersion: v1\n  kind: Service\n  metadata: {{name: app, namespace: a}}\n  spec: {{ports: [{{port: 80}}]}}\n\
             - apiVersion: networking.k8s.io/v1\n  kind: Ingress\n  metadata: {{name: one, namespace: a, annotations: {{{annotations}}}}}\n  spec:\n    ingressClassName: nginx\n    rules: [{{host: a.example.com, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}}}]\n"
        )
    };
    let args = [
        "-f",
        "-",
        "--ingress-class",
        "nginx",
        "--controller-class",
        "k8s.io/ingress-nginx",
    ];
    let (code, out) = check(
        &args,
        Some(&list("nginx.ingress.kubernetes.io/ssl-redirect: 'false'")),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("1 Ingresses: 1 serve identically, 0 differ"),
        "{out}"
    );
    let (code, out) = check(
        &args,
        Some(&list(
            "nginx.ingress.kubernetes.io/enable-opentelemetry: 'true'",
        )),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a/one: differs"), "{out}");
}

/// `check` with `args` on a blocking thread (the fake API server runs on this runtime).
async fn check_off_runtime(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&args, None)
    })
    .await
    .unwrap()
}

/// Against an API server: the same report as from the folder, and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_only_read() {
    let fake = FakeApi::start().await;
    let yaml = std::fs::read_to_string(fixtures().join("manifests/all.yaml")).unwrap();
    fake.apply_yaml(&yaml);
    let tmp = tempfile::tempdir().unwrap();
    let kc = fake.kubeconfig(tmp.path(), "check").await;
    let mut args = vec!["--kubeconfig".to_string(), kc.display().to_string()];
    args.extend(CLASS_ARGS.iter().map(|s| s.to_string()));
    let (code, human) = check_off_runtime(args.to_vec()).await;
    assert_eq!(code, 2, "{human}");
    let from_dir = std::fs::read_to_string(fixtures().join("expected.txt")).unwrap();
    assert_eq!(
        human, from_dir,
        "the cluster and the folder give different reports"
    );
    assert!(
        fake.requests().is_empty(),
        "check wrote to the API: {:?}",
        fake.requests()
    );

    // --controller-deployment: ingress-nginx's own flags give the class and the ConfigMap
    fake.apply_yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ingress-nginx-controller, namespace: ingress-nginx}\nspec:\n  selector: {matchLabels: {app: c}}\n  template:\n    metadata: {labels: {app: c}}\n    spec:\n      containers:\n      - name: controller\n        image: registry.k8s.io/ingress-nginx/controller:v1.15.0\n        args:\n        - /nginx-ingress-controller\n        - --election-id=ingress-nginx-leader\n        - --controller-class=k8s.io/ingress-nginx\n        - --ingress-class=nginx\n        - --configmap=$(POD_NAMESPACE)/ingress-nginx-controller\n        - --enable-topology-aware-routing=true\n",
    );
    let args = [
        "--kubeconfig".to_string(),
        kc.display().to_string(),
        "--controller-deployment".to_string(),
        "ingress-nginx/ingress-nginx-controller".to_string(),
    ];
    let (code, human) = check_off_runtime(args.to_vec()).await;
    assert_eq!(code, 2, "{human}");
    assert!(
        human.starts_with(&from_dir[..from_dir.find("\n\n").unwrap()]),
        "{human}"
    );
    assert!(
        human.contains("Deployment ingress-nginx/ingress-nginx-controller: 5 flags, 4 read by pingress\n  --enable-topology-aware-routing: not implemented"),
        "{human}"
    );
    assert!(fake.requests().is_empty(), "check wrote to the API");
}

/// `/debug/*` on the health port with `--enable-debug-endpoints` (the proxy port never has
/// them), absent without the flag; `pingress routes` prints the same table offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_endpoints_only_with_the_flag() {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "all.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            Ingress::new("re")
                .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
                .host("re.test", &[("/api/v[0-9]+", IMPL_SPECIFIC, "app")])
                .to_yaml(),
        ]),
    );
    let px = Pingress::start_with_args(dir.path(), &["--enable-debug-endpoints"]).await;
    px.wait_status("re.test", "/api/v1", 200, STARTUP).await;
    let (code, body) = px
        .health_get("/debug/route?host=re.test&path=/api/v2/x")
        .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["route"]["match"].as_str().unwrap().starts_with("regex#0"),
        "{v}"
    );
    assert_eq!(v["route"]["ingress"], "default/re");
    let (_, body) = px.health_get("/debug/route?host=re.test&path=/other").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["route"]["match"], "default", "{v}");
    let (code, live) = px.health_get("/debug/routes").await;
    assert_eq!(code, 200);
    let (code, diags) = px.health_get("/debug/diagnostics").await;
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&diags)
        .unwrap()
        .is_array());
    assert_eq!(px.health_get("/debug/route?host=re.test").await.0, 400);
    // never on the proxy port
    for host in ["re.test", "unknown.test"] {
        let r = px.get(host, "/debug/routes").await;
        assert_eq!(r.status, 404, "{host}");
        assert!(
            !r.text().contains("\"servers\""),
            "{host}: the table on the proxy port"
        );
    }

    // offline: the same table from the same folder
    let d = dir.path().display().to_string();
    let (code, offline) = check_sub("routes", &["--manifests", &d]);
    assert_eq!(code, 0);
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    let offline: serde_json::Value = serde_json::from_str(&offline).unwrap();
    assert_eq!(live["servers"], offline["servers"]);

    let plain = Pingress::start(dir.path()).await;
    plain.wait_status("re.test", "/api/v1", 200, STARTUP).await;
    for p in [
        "/debug/routes",
        "/debug/route?host=re.test&path=/",
        "/debug/diagnostics",
    ] {
        assert_eq!(plain.health_get(p).await.0, 404, "{p} without the flag");
    }
}
