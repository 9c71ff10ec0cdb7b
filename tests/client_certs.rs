//! Client certificates (`auth-tls-*`) over real TLS: a test CA signs client certificates, a
//! rustls client presents them (or none) and records whether the server asked for one.
//! ingress-nginx's e2e authtls.go, translated: only hosts with auth-tls ask (a browser is never
//! prompted elsewhere), on/optional/optional_no_ca, error page, match-cn, CRL revocation, the
//! `ssl-client-*` headers upstream.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use support::tls::{opaque_secret, self_signed, tls_secret, with_client_cert, Ca};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

struct Answer {
    status: u16,
    asked: bool,
    body: String,
    location: Option<String>,
}

/// `GET https://host/` with SNI `host`, presenting `cert`.
async fn get(port: u16, host: &str, cert: Option<Arc<CertifiedKey>>) -> Answer {
    let base = support::tls::client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let (cfg, rec) = with_client_cert(&base, cert);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from(host.to_string()).unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .header("ssl-client-verify", "SUCCESS") // a client's own copy never reaches upstream
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        asked: rec.asked(),
        body: String::from_utf8_lossy(&body).into_owned(),
        location,
    }
}

fn echo_header(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["headers"][name].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_per_host() {
    let app = EchoBackend::start("app").await;
    let ca = Ca::new("pingress test client CA");
    let other = Ca::new("someone else's CA");
    let alice = ca.client("alice", 1001);
    let mallory = ca.client("mallory", 1002); // revoked below
    let stranger = other.client("alice", 7);
    let server = self_signed(
        &[
            "mtls.test",
            "plain.test",
            "opt.test",
            "noca.test",
            "page.test",
            "cn.test",
            "pass.test",
            "deep.test",
            "shallow.test",
        ],
        "server",
    );
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            tls_secret("server", &server),
            opaque_secret("ca", &[("ca.crt", &ca.pem), ("ca.crl", &ca.crl(&[1002]))]),
            // with a CRL, every level needs one (nginx: CRL_CHECK_ALL): the depth test has none
            opaque_secret("ca-nocrl", &[("ca.crt", &ca.pem)]),
        ]),
    );
    let host = |name: &str, kv: &[(&str, &str)]| {
        let mut i = Ingress::new(name);
        for (k, v) in kv {
            i = i.annotation(&nx(k), v);
        }
        i.tls(&[&format!("{name}.test")], "server")
            .host(&format!("{name}.test"), &[("/", PREFIX, "app")])
    };
    for i in [
        host("mtls", &[("auth-tls-secret", "default/ca")]),
        host("plain", &[]),
        host(
            "opt",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-verify-client", "optional"),
            ],
        ),
        host(
            "noca",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-verify-client", "optional_no_ca"),
            ],
        ),
        host(
            "page",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-error-page", "https://example.com/cert-help"),
            ],
        ),
        host(
            "cn",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-match-cn", "CN=(bob|carol)"),
            ],
        ),
        host(
            "pass",
            &[
                ("auth-tls-secret", "default/ca"),
                ("auth-tls-pass-certificate-to-upstream", "true"),
            ],
        ),
        host(
            "deep",
            &[
                ("auth-tls-secret", "default/ca-nocrl"),
                ("auth-tls-verify-depth", "2"),
            ],
        ),
        host("shallow", &[("auth-tls-secret", "default/ca-nocrl")]),
    ] {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("plain.test", "/", 308, STARTUP).await;
    let port = px.https_port;

    // a host without auth-tls never asks: no browser prompt
    let a = get(port, "plain.test", Some(alice.clone())).await;
    assert_eq!((a.status, a.asked), (200, false));
    assert_eq!(
        echo_header(&a.body, "ssl-client-verify"),
        Some("SUCCESS".into()),
        "the client's own header is passed on a plain host"
    );

    // verify on
    let a = get(port, "mtls.test", Some(alice.clone())).await;
    assert!(a.asked);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        echo_header(&a.body, "ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(
        echo_header(&a.body, "ssl-client-subject-dn").as_deref(),
        Some("CN=alice,O=Acme")
    );
    assert_eq!(
        echo_header(&a.body, "ssl-client-issuer-dn").as_deref(),
        Some("CN=pingress test client CA")
    );
    assert_eq!(echo_header(&a.body, "ssl-client-cert"), None);
    for (who, cert) in [
        ("none", None),
        ("other CA", Some(stranger.clone())),
        ("revoked", Some(mallory.clone())),
    ] {
        let a = get(port, "mtls.test", cert).await;
        assert_eq!(a.status, 400, "{who}");
    }
    assert_eq!(app.requests(), 2, "a refused client reached the app");

    // optional: no certificate passes, a bad one does not
    assert_eq!(get(port, "opt.test", None).await.status, 200);
    assert_eq!(
        get(port, "opt.test", Some(stranger.clone())).await.status,
        400
    );
    // optional_no_ca: everything passes, the verdict goes upstream
    let a = get(port, "noca.test", Some(stranger.clone())).await;
    assert_eq!(a.status, 200);
    assert!(echo_header(&a.body, "ssl-client-verify")
        .unwrap()
        .starts_with("FAILED:"));
    // error page instead of 400
    let a = get(port, "page.test", None).await;
    assert_eq!(a.status, 302);
    assert_eq!(a.location.as_deref(), Some("https://example.com/cert-help"));
    // match-cn: verified but the wrong CN is 403
    assert_eq!(get(port, "cn.test", Some(alice.clone())).await.status, 403);
    assert_eq!(
        get(port, "cn.test", Some(ca.client("carol", 1003)))
            .await
            .status,
        200
    );
    // auth-tls-verify-depth: 1 (default) wants the CA itself as issuer, 2 allows one intermediate
    let via = ca.client_via_intermediate("dave");
    assert_eq!(
        get(port, "shallow.test", Some(via.clone())).await.status,
        400
    );
    assert_eq!(get(port, "deep.test", Some(via.clone())).await.status, 200);
    // pass the certificate upstream, URL-escaped PEM
    let a = get(port, "pass.test", Some(alice.clone())).await;
    let pem = echo_header(&a.body, "ssl-client-cert").unwrap();
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_secret_fails_closed() {
    let app = EchoBackend::start("app").await;
    let server = self_signed(&["mtls.test"], "server");
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            tls_secret("server", &server),
        ]),
    );
    let i = Ingress::new("mtls")
        .annotation(&nx("auth-tls-secret"), "default/nope")
        .tls(&["mtls.test"], "server")
        .host("mtls.test", &[("/", PREFIX, "app")]);
    dir.write("i.yaml", &i.to_yaml());
    let px = Pingress::start(dir.path()).await;
    // plain HTTP gets the TLS host's redirect first
    px.wait_status("mtls.test", "/", 308, STARTUP).await;
    let ca = Ca::new("x");
    assert_eq!(
        get(px.https_port, "mtls.test", Some(ca.client("a", 1)))
            .await
            .status,
        503
    );
    assert_eq!(app.requests(), 0);
    assert!(px.stderr().contains("AuthTLSSecretInvalid"));
}
