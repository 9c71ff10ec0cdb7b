//! ModSecurity (libmodsecurity 3 with Debian's OWASP CRS 3.3) over real sockets: blocked
//! requests never reach the backend, detection only logs, `modsecurity-snippet` rules (request
//! and response phases), the transaction id, the ConfigMap keys, and snippets that are refused
//! (gate, unparsable rules, `Include` of other files) leaving their Ingress out.
#![cfg(feature = "waf")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use support::*;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

const ALLOW: [(&str, &str); 2] = [
    ("allow-snippet-annotations", "true"),
    ("annotations-risk-level", "Critical"),
];

const ON: (&str, &str) = ("enable-modsecurity", "true");
const CRS: (&str, &str) = ("enable-owasp-core-rules", "true");
const DEFAULT_CONF: &str = "Include /etc/nginx/modsecurity/modsecurity.conf";

/// ingress-nginx's e2e `modsecurity-snippet`, as written in the annotation (nginx-escaped).
const E2E_SNIPPET: &str = r#"SecRuleEngine On
SecRequestBodyAccess On
SecAuditEngine RelevantOnly
SecAuditLogParts ABIJDEFHZ
SecAuditLog /dev/stdout
SecAuditLogType Serial
SecRule REQUEST_HEADERS:User-Agent \"block-ua\" \"log,deny,id:107,status:403,msg:\'UA blocked\'\""#;

/// A browser's headers (CRS scores requests without them).
const UA: (&str, &str) = (
    "User-Agent",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
);
const ACCEPT: (&str, &str) = ("Accept", "*/*");

const SQLI: &str = "/?id=1%27%20OR%20%271%27%3D%271";
const UNION: &str = "/?q=1%20UNION%20SELECT%20password%20FROM%20users";
const TRAVERSAL: &str = "/?file=../../../../etc/passwd";
const TRAVERSAL_ENCODED: &str = "/?file=..%2F..%2F..%2F..%2Fetc%2Fpasswd";

/// pingress over a folder holding `objects`, with the controller ConfigMap flag and `extra`.
async fn serve(objects: &[String], extra: &[&str]) -> (ManifestDir, Pingress) {
    let dir = ManifestDir::with_class();
    dir.write("all.yaml", &docs(objects));
    let mut args = vec!["--configmap", "ingress/pingress"];
    args.extend_from_slice(extra);
    let px = Pingress::start_with_args(dir.path(), &args).await;
    (dir, px)
}

/// Ingress `name` for `host` (path `/` to `service`) with the prefixed annotations `keys`.
fn ingress(name: &str, host: &str, service: &str, keys: &[(&str, &str)]) -> String {
    let mut i = Ingress::new(name);
    for (k, v) in keys {
        i = i.annotation(&nx(k), v);
    }
    i.host(host, &[("/", PREFIX, service)]).to_yaml()
}

async fn browse(px: &Pingress, host: &str, target: &str) -> Reply {
    px.request(Method::GET, host, target, &[UA, ACCEPT], Vec::new())
        .await
}

async fn with_ua(px: &Pingress, host: &str, target: &str, ua: &str) -> Reply {
    px.request(
        Method::GET,
        host,
        target,
        &[("User-Agent", ua), ACCEPT],
        Vec::new(),
    )
    .await
}

async fn post_json(px: &Pingress, host: &str, target: &str, body: &str) -> Reply {
    px.request(
        Method::POST,
        host,
        target,
        &[UA, ACCEPT, ("Content-Type", "application/json")],
        body.as_bytes().to_vec(),
    )
    .await
}

/// Polls (bounded) until the file at `path` holds every one of `needles`; its text.
async fn wait_file_contains(path: &Path, needles: &[&str]) -> String {
    let found = wait_until(Duration::from_secs(10), || async move {
        std::fs::read_to_string(path).is_ok_and(|s| needles.iter().all(|n| s.contains(n)))
    })
    .await;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        found.is_some(),
        "{} never held {needles:?}:\n{text}",
        path.display()
    );
    text
}

/// The `Rejected` diagnostic of Ingress `default/name` (`/debug/diagnostics`), polled.
async fn rejection(px: &Pingress, name: &str) -> serde_json::Value {
    let object = format!("Ingress {NAMESPACE}/{name}");
    let deadline = Instant::now() + STARTUP;
    loop {
        let (_, body) = px.health_get("/debug/diagnostics").await;
        let all: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let found = all.as_array().and_then(|a| {
            a.iter()
                .find(|d| d["object"] == object.as_str() && d["severity"] == "Rejected")
        });
        if let Some(d) = found {
            return d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no Rejected diagnostic for {object}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_blocks_attacks_before_the_backend_and_detection_only_logs_them() {
    let app = EchoBackend::start("app").await;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("detect.log");
    let (_dir, px) = serve(
        &[
            backend_set("app", &[app.port]),
            controller_configmap(&ALLOW),
            // the snippet replaces the default configuration (as in ingress-nginx): no body access
            ingress(
                "crs",
                "crs.test",
                "app",
                &[ON, CRS, ("modsecurity-snippet", "SecRuleEngine On")],
            ),
            ingress(
                "body",
                "body.test",
                "app",
                &[
                    ON,
                    CRS,
                    (
                        "modsecurity-snippet",
                        &format!("{DEFAULT_CONF}\nSecRuleEngine On"),
                    ),
                ],
            ),
            ingress(
                "detect",
                "detect.test",
                "app",
                &[
                    ON,
                    CRS,
                    (
                        "modsecurity-snippet",
                        &format!("{DEFAULT_CONF}\nSecAuditLog {}", audit.display()),
                    ),
                ],
            ),
            ingress("plain", "plain.test", "app", &[]),
        ],
        &[],
    )
    .await;
    px.wait_status("plain.test", "/", 200, STARTUP).await;
    let before = app.requests();

    // attacks in the query string: 403 (CRS anomaly score, phase 2) before the backend
    for attack in [SQLI, UNION, TRAVERSAL, TRAVERSAL_ENCODED] {
        for host in ["crs.test", "body.test"] {
            let target = format!("{attack}&n={host}");
            let r = browse(&px, host, &target).await;
            assert_eq!(r.status, 403, "{host}{target}: {}", r.text());
            assert!(r.backend().is_none(), "{host}{target}");
            assert!(!app.received(&target), "{host}{target} reached the backend");
        }
    }
    // attacks in a JSON body (the default configuration's body access and JSON parser)
    for (i, body) in [
        r#"{"q":"1' OR '1'='1' --"}"#,
        r#"{"q":"1 UNION SELECT password FROM users"}"#,
    ]
    .iter()
    .enumerate()
    {
        let target = format!("/submit?attack={i}");
        let r = post_json(&px, "body.test", &target, body).await;
        assert_eq!(r.status, 403, "{body}: {}", r.text());
        assert!(!app.received(&target), "{body} reached the backend");
    }
    assert_eq!(
        app.requests(),
        before,
        "a blocked request reached the backend"
    );

    // benign requests pass; a benign body arrives byte-exact
    for host in ["crs.test", "body.test"] {
        let r = browse(&px, host, "/?q=hello").await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.backend().as_deref(), Some("app"));
    }
    let benign = r#"{"q":"hello world","tags":["a","b"],"n":[1,2,3]}"#;
    let r = post_json(&px, "body.test", "/submit?benign=1", benign).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo();
    assert_eq!(e.method, "POST");
    assert_eq!(
        (e.body_len, e.body_hash),
        (benign.len(), fnv1a(benign.as_bytes()))
    );
    // a snippet of only `SecRuleEngine On` replaced the default configuration: bodies are not
    // read (SecRequestBodyAccess is Off), so an attack in the body passes, as in ingress-nginx
    let r = post_json(
        &px,
        "crs.test",
        "/submit?unread=1",
        r#"{"q":"1' OR '1'='1' --"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // an Ingress without the annotations is not inspected
    let r = browse(&px, "plain.test", &format!("{SQLI}&n=plain")).await;
    assert_eq!(r.status, 200);
    assert!(app.received(&format!("{SQLI}&n=plain")));

    // detection only (the default configuration): nothing is blocked, the match is audit logged
    let r = browse(&px, "detect.test", "/?q=hello&tag=benign-one").await;
    assert_eq!(r.status, 200);
    let sqli = format!("{SQLI}&tag=sqli-detected");
    let r = browse(&px, "detect.test", &sqli).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(app.received(&sqli), "detection only blocked the request");
    let text = wait_file_contains(&audit, &["tag=sqli-detected", "942100"]).await;
    // RelevantOnly: a request that matched nothing and answered 200 is not logged
    assert!(!text.contains("benign-one"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippet_rules_response_phase_transaction_id_and_refused_rules() {
    let app = EchoBackend::start("app").await;
    let failing = EchoBackend::start_with_status("failing", 500).await;
    let logs = tempfile::tempdir().unwrap();
    let tx_log = logs.path().join("tx.log");
    let tx_snippet = format!(
        "SecRuleEngine On\nSecAuditEngine On\nSecAuditLogParts AZ\nSecAuditLogType Serial\nSecAuditLog {}",
        tx_log.display()
    );
    let (_dir, px) = serve(
        &[
            backend_set("app", &[app.port]),
            backend_set("failing", &[failing.port]),
            controller_configmap(&ALLOW),
            ingress(
                "ua",
                "ua.test",
                "app",
                &[ON, ("modsecurity-snippet", E2E_SNIPPET)],
            ),
            ingress(
                "p3",
                "p3.test",
                "failing",
                &[
                    ON,
                    (
                        "modsecurity-snippet",
                        "SecRuleEngine On\n\
                         SecRule RESPONSE_STATUS \"@streq 500\" \"id:300,phase:3,deny,status:403,log\"",
                    ),
                ],
            ),
            ingress("p3-off", "p3-off.test", "failing", &[]),
            ingress(
                "txid",
                "txid.test",
                "app",
                &[
                    ON,
                    ("modsecurity-transaction-id", "$request_id"),
                    ("modsecurity-snippet", &tx_snippet),
                ],
            ),
            ingress(
                "sideways",
                "sideways.test",
                "app",
                &[ON, ("modsecurity-snippet", "SecRuleEngine Sideways")],
            ),
            ingress(
                "bad-action",
                "bad-action.test",
                "app",
                &[
                    ON,
                    (
                        "modsecurity-snippet",
                        "SecRuleEngine On\nSecRule ARGS \"@rx x\" \"id:1,phase:2,deny,nosuchaction\"",
                    ),
                ],
            ),
            ingress(
                "passwd",
                "passwd.test",
                "app",
                &[ON, ("modsecurity-snippet", "Include /etc/passwd")],
            ),
        ],
        &["--enable-debug-endpoints"],
    )
    .await;
    px.wait_status("ua.test", "/", 200, STARTUP).await;

    // the e2e snippet (nginx unescaping applies): User-Agent block-ua is denied before the backend
    let r = with_ua(&px, "ua.test", "/ua?n=1", "block-ua").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        !app.received("/ua?n=1"),
        "a denied request reached the backend"
    );
    let r = with_ua(&px, "ua.test", "/ua?n=2", "curl/8.5.0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().path, "/ua?n=2");
    // `SecAuditLog /dev/stdout`: the denied transaction in pingress's standard output
    let pxr = &px;
    let logged = wait_until(Duration::from_secs(10), || async move {
        let out = pxr.stdout();
        out.contains("[id \"107\"]") && out.contains("UA blocked")
    })
    .await;
    assert!(
        logged.is_some(),
        "no audit entry on stdout:\n{}",
        px.stdout()
    );

    // phase 3: the backend's 500 becomes the rule's 403 (the backend was asked)
    let r = browse(&px, "p3.test", "/p3?n=1").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(failing.received("/p3?n=1"));
    assert_eq!(browse(&px, "p3-off.test", "/p3?n=2").await.status, 500);

    // the transaction id: the request's X-Request-ID, else the id pingress generated
    let r = px
        .request(
            Method::GET,
            "txid.test",
            "/tx?n=1",
            &[UA, ACCEPT, ("X-Request-ID", "waf-tx-test-123")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    wait_file_contains(&tx_log, &["waf-tx-test-123"]).await;
    let r = browse(&px, "txid.test", "/tx?n=2").await;
    let id = r.echo().header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    wait_file_contains(&tx_log, &[&id]).await;

    // rules the engine refuses, or an Include of another file: the Ingress is left out
    for (name, needle) in [
        ("sideways", "Sideways"),
        ("bad-action", "nosuchaction"),
        ("passwd", "/etc/passwd"),
    ] {
        let r = browse(&px, &format!("{name}.test"), "/").await;
        assert_eq!(r.status, 404, "{name}: {}", r.text());
        assert!(r.backend().is_none(), "{name}");
        let d = rejection(&px, name).await;
        assert_eq!(d["reason"], "ModSecurityRulesRefused", "{d}");
        let message = d["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("modsecurity-snippet") && message.contains(needle),
            "{d}"
        );
    }
    // the working WAF Ingress keeps serving and blocking
    assert_eq!(
        with_ua(&px, "ua.test", "/ua?n=3", "block-ua").await.status,
        403
    );
    assert_eq!(
        with_ua(&px, "ua.test", "/ua?n=4", "curl/8.5.0")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_turns_the_waf_on_everywhere_and_gates_annotation_snippets() {
    let app = EchoBackend::start("app").await;
    let cm = |extra: &[(&str, &str)]| {
        let mut data = vec![
            ("enable-modsecurity", "true"),
            ("modsecurity-snippet", E2E_SNIPPET),
        ];
        data.extend_from_slice(extra);
        controller_configmap(&data)
    };
    let probe_rule =
        "SecRule REQUEST_HEADERS:X-Probe \"@streq evil\" \"id:9001,phase:1,deny,status:406\"";
    let dir = ManifestDir::with_class();
    dir.write("cm.yaml", &cm(&[]));
    dir.write(
        "all.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            ingress("a", "a.test", "app", &[]),
            ingress("b", "b.test", "app", &[]),
            ingress("off", "off.test", "app", &[("enable-modsecurity", "false")]),
            ingress("crs", "crs.test", "app", &[CRS]),
            ingress(
                "snip",
                "snip.test",
                "app",
                &[("modsecurity-snippet", probe_rule)],
            ),
        ]),
    );
    let px = Pingress::start_with_args(
        dir.path(),
        &[
            "--configmap",
            "ingress/pingress",
            "--enable-debug-endpoints",
        ],
    )
    .await;
    px.wait_status("a.test", "/", 200, STARTUP).await;

    // every Ingress runs the ConfigMap's rules, except the one turning ModSecurity off
    for (i, (host, status)) in [
        ("a.test", 403),
        ("b.test", 403),
        ("crs.test", 403),
        ("off.test", 200),
    ]
    .into_iter()
    .enumerate()
    {
        let target = format!("/ua?n={i}");
        let r = with_ua(&px, host, &target, "block-ua").await;
        assert_eq!(r.status, status, "{host}: {}", r.text());
        assert_eq!(app.received(&target), status == 200, "{host}");
        assert_eq!(
            with_ua(&px, host, "/ok", "curl/8.5.0").await.status,
            200,
            "{host}"
        );
    }
    // the annotation adds the CRS on top of the ConfigMap's engine (On); the others have none
    let r = browse(&px, "crs.test", &format!("{SQLI}&n=crs")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!app.received(&format!("{SQLI}&n=crs")));
    assert_eq!(
        browse(&px, "a.test", &format!("{SQLI}&n=a")).await.status,
        200
    );

    // an annotation snippet without allow-snippet-annotations: that Ingress is left out
    let r = browse(&px, "snip.test", "/").await;
    assert_eq!(r.status, 404);
    assert!(r.backend().is_none());
    let d = rejection(&px, "snip").await;
    assert!(
        d["reason"] == "SnippetRefused" || d["reason"] == "AnnotationRiskTooHigh",
        "{d}"
    );

    // allowed, and the CRS turned on by the ConfigMap: served without a restart
    dir.write(
        "cm.yaml",
        &cm(&[ALLOW[0], ALLOW[1], ("enable-owasp-modsecurity-crs", "true")]),
    );
    px.wait_status("snip.test", "/", 200, STARTUP).await;
    // the annotation's rules on top of the ConfigMap's
    let r = px
        .request(
            Method::GET,
            "snip.test",
            "/probe?n=1",
            &[UA, ACCEPT, ("X-Probe", "evil")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 406, "{}", r.text());
    assert!(!app.received("/probe?n=1"));
    assert_eq!(
        with_ua(&px, "snip.test", "/ua?n=9", "block-ua")
            .await
            .status,
        403
    );
    // the ConfigMap's CRS for every Ingress (crs.test does not load it twice), not for `off`
    for host in ["a.test", "snip.test", "crs.test"] {
        let target = format!("{SQLI}&n=cm-{host}");
        let r = browse(&px, host, &target).await;
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert!(!app.received(&target), "{host}");
        assert_eq!(browse(&px, host, "/?q=hello").await.status, 200, "{host}");
    }
    let r = browse(&px, "off.test", &format!("{SQLI}&n=off")).await;
    assert_eq!(r.status, 200);
}
