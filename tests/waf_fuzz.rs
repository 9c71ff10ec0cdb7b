//! A bounded fuzz run of the WAF's request path: random request lines, headers and bodies (JSON,
//! XML, multipart, urlencoded, raw bytes) through libmodsecurity with the default configuration,
//! the OWASP CRS and `SecRuleEngine On`, from several threads at once (the engine lock). Every
//! transaction must finish every phase, and an intervention must be a valid HTTP status; a crash
//! in the C++ library fails the run. `PROPTEST_CASES` raises the count for a longer run.
#![cfg(feature = "waf")]

use std::sync::Arc;

use pingress::waf::{self, Part, RequestHead, RuleSet, Tx};
use proptest::prelude::*;

/// The rule set, compiled once for the whole run.
fn rules() -> Arc<RuleSet> {
    static RULES: std::sync::OnceLock<Arc<RuleSet>> = std::sync::OnceLock::new();
    RULES.get_or_init(compile).clone()
}

fn compile() -> Arc<RuleSet> {
    let text = waf::rules_text(&[
        Part::DefaultConf,
        Part::Crs,
        Part::Snippet("SecRuleEngine On\nSecAuditEngine Off"),
    ])
    .expect("rules text");
    waf::ruleset(&text).expect("the default configuration and the CRS compile")
}

/// Bytes that stress parsers: quotes, brackets, percent escapes, NULs, high bytes, SQL and
/// script fragments.
fn nasty() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop_oneof![
        Just(b"'".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"%u0027".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"<".to_vec()),
        Just(b"<![CDATA[".to_vec()),
        Just(b"--".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" UNION SELECT ".to_vec()),
        Just(b"<script>".to_vec()),
        Just(b"../".to_vec()),
        Just(b"&".to_vec()),
        Just(b"=".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xc3]),
        proptest::collection::vec(any::<u8>(), 0..24),
        "[a-zA-Z0-9_]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("application/json"),
        Just("application/xml"),
        Just("text/xml"),
        Just("application/x-www-form-urlencoded"),
        Just("multipart/form-data; boundary=XyZ"),
        Just("multipart/form-data; boundary=\"a b\""),
        Just("text/plain"),
        Just("application/octet-stream"),
    ]
}

/// A body for the content type: a structure with nasty pieces inside, or nasty bytes alone.
fn body_for(ct: &str, fill: &[u8], shaped: bool) -> Vec<u8> {
    if !shaped {
        return fill.to_vec();
    }
    let f = String::from_utf8_lossy(fill);
    match ct {
        "application/json" => format!("{{\"a\":[1,{{\"b\":\"{f}\"}},{f}],\"c\":{f}}}").into_bytes(),
        "application/xml" | "text/xml" => format!("<?xml version=\"1.0\"?><a x=\"{f}\"><b>{f}</b></a>").into_bytes(),
        "application/x-www-form-urlencoded" => format!("a={f}&b[]={f}&{f}").into_bytes(),
        ct if ct.starts_with("multipart") => format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{f}\"\r\nContent-Type: text/plain\r\n\r\n{f}\r\n--XyZ--\r\n"
        )
        .into_bytes(),
        _ => fill.to_vec(),
    }
}

fn check(it: Option<waf::Intervention>) -> bool {
    match it {
        Some(i) => {
            assert!(
                (100..=999).contains(&i.status),
                "intervention status {}",
                i.status
            );
            true
        }
        None => false,
    }
}

/// One request through every phase.
fn run(
    rules: &Arc<RuleSet>,
    uri: &str,
    method: &str,
    headers: &[(Vec<u8>, Vec<u8>)],
    body: &[u8],
    chunk: usize,
) {
    let mut tx = Tx::new(rules, Some("fuzz")).expect("transaction");
    let head = RequestHead {
        client_ip: "192.0.2.7",
        client_port: 40000,
        server_ip: "192.0.2.1",
        server_port: 80,
        uri,
        method,
        version: "1.1",
    };
    let blocked = check(tx.request_head(&head, headers.iter().map(|(k, v)| (&k[..], &v[..]))));
    if !blocked {
        let mut stop = false;
        for piece in body.chunks(chunk.max(1)) {
            if check(tx.request_body_piece(piece)) {
                stop = true;
                break;
            }
        }
        if !stop {
            check(tx.request_body_done());
        }
    }
    let resp: [(&[u8], &[u8]); 2] = [(b"Content-Type", b"text/html"), (b"Content-Length", b"11")];
    check(tx.response_head(200, "HTTP 1.1", resp.into_iter()));
    check(tx.response_body_piece(b"hello world"));
    check(tx.response_body_done());
    tx.logging(if blocked { 403 } else { 200 });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_finish_every_phase(
        path in nasty(),
        query in nasty(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PROPFIND"), Just("G\0T"), Just("")],
        ct in content_type(),
        fill in nasty(),
        shaped in any::<bool>(),
        extra in proptest::collection::vec((nasty(), nasty()), 0..6),
        chunk in 1usize..4096,
    ) {
        let rules = rules();
        let uri = format!("/{}?{}", String::from_utf8_lossy(&path), String::from_utf8_lossy(&query));
        let body = body_for(ct, &fill, shaped);
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"Host".to_vec(), b"fuzz.test".to_vec()),
            (b"User-Agent".to_vec(), b"Mozilla/5.0".to_vec()),
            (b"Content-Type".to_vec(), ct.as_bytes().to_vec()),
            (b"Content-Length".to_vec(), body.len().to_string().into_bytes()),
        ];
        headers.extend(extra);
        run(&rules, &uri, method, &headers, &body, chunk);
    }
}

/// Transactions from several threads at once, on one shared rule set.
#[test]
fn concurrent_transactions_share_one_rule_set() {
    let rules = rules();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let rules = rules.clone();
            std::thread::spawn(move || {
                let mut blocked = 0;
                for i in 0..150 {
                    let attack = i % 3 == 0;
                    let uri = if attack {
                        format!("/x?id=1%27%20OR%20%271%27%3D%27{t}{i}")
                    } else {
                        format!("/x?q=hello{t}{i}")
                    };
                    let mut tx = Tx::new(&rules, None).expect("transaction");
                    let head = RequestHead {
                        client_ip: "192.0.2.7",
                        client_port: 40000,
                        server_ip: "192.0.2.1",
                        server_port: 80,
                        uri: &uri,
                        method: "GET",
                        version: "1.1",
                    };
                    let h: [(&[u8], &[u8]); 3] = [
                        (b"Host", b"fuzz.test"),
                        (b"User-Agent", b"Mozilla/5.0"),
                        (b"Accept", b"text/html"),
                    ];
                    let it = tx
                        .request_head(&head, h.into_iter())
                        .or_else(|| tx.request_body_done());
                    assert_eq!(it.is_some(), attack, "{uri}");
                    if it.is_some() {
                        blocked += 1;
                    }
                    tx.logging(if attack { 403 } else { 200 });
                }
                blocked
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 50);
    }
}
