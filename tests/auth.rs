//! Authentication over real sockets: a real auth service (an in-test HTTP server that records
//! what it receives and answers by path), the echo backend, pingress in standalone mode.
//! ingress-nginx's e2e auth.go, satisfy.go and global_external_auth.go, translated.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest::Method;
use support::*;
use tokio::net::TcpListener;

fn nx(key: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{key}")
}

/// What the auth service saw of one subrequest.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body_len: usize,
}

/// The auth service. Paths: `/check` answers 200 (with X-Auth-Request-User and a Set-Cookie)
/// when `Authorization: Bearer good`, else 401 (with a Set-Cookie and WWW-Authenticate);
/// `/deny` 403; `/broken` 502; `/hang` never answers.
struct AuthService {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl AuthService {
    async fn start() -> AuthService {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind auth service");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, s.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        AuthService { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req.uri().to_string();
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e: &mut String| {
                e.push_str(", ");
                e.push_str(v.to_str().unwrap_or(""));
            })
            .or_insert_with(|| v.to_str().unwrap_or("").to_string());
    }
    let path = req.uri().path().to_string();
    let good = headers.get("authorization").map(String::as_str) == Some("Bearer good");
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    seen.lock().unwrap().push(Seen {
        method,
        target,
        headers,
        body_len: body.map(|b| b.len()).unwrap_or(0),
    });
    let mut resp = Response::builder();
    let status = match path.as_str() {
        "/check" if good => {
            resp = resp
                .header("X-Auth-Request-User", "alice")
                .header("Set-Cookie", "_oauth2_proxy=refreshed; Path=/");
            200
        }
        "/check" => {
            resp = resp
                .header("WWW-Authenticate", "Bearer realm=\"auth\"")
                .header("Set-Cookie", "_oauth2_csrf=x; Path=/");
            401
        }
        "/deny" => 403,
        "/broken" => 502,
        "/hang" => std::future::pending::<u16>().await,
        _ => 404,
    };
    Ok(resp
        .status(status)
        .body(Full::new(Bytes::from_static(b"auth says hi")))
        .unwrap())
}

/// `GET host path` with this Authorization header.
async fn authorized(px: &Pingress, host: &str, path: &str, authorization: &str) -> Reply {
    px.request(
        Method::GET,
        host,
        path,
        &[("Authorization", authorization)],
        vec![],
    )
    .await
}

/// `GET host path` with the token the auth service accepts.
async fn bearer(px: &Pingress, host: &str, path: &str) -> Reply {
    authorized(px, host, path, "Bearer good").await
}

/// The auth service, the app (Service `app`) and a manifest folder serving it.
async fn setup() -> (AuthService, EchoBackend, ManifestDir) {
    let auth = AuthService::start().await;
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write("app.yaml", &backend_set("app", &[app.port]));
    (auth, app, dir)
}

fn secret(name: &str, string_data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\n  resourceVersion: \"1\"\nstringData:\n"
    );
    for (k, v) in string_data {
        s.push_str(&format!("  {k}: {}\n", q(v)));
    }
    s
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// htpasswd lines for the password s3cret (bcrypt cost 10, apr1), made with Python bcrypt and
// openssl passwd
const HTPASSWD: &str = "alice:$2y$10$F3OLDWqFMhboNy3QR8YBIONqTieyZu1vdoRg/p8TtEnWsPjTLKNAi\nbob:$apr1$Pq3x9Z2a$i34BLu/1g8Ad2/0lbQqMQ1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_proxy_flow_signin_redirect_headers_and_cookies() {
    let (auth, app, dir) = setup().await;
    let ing = Ingress::new("oauth")
        .annotation(&nx("auth-url"), &auth.url("/check"))
        .annotation(&nx("auth-signin"), "https://auth.example.com/oauth2/start")
        .annotation(
            &nx("auth-response-headers"),
            "X-Auth-Request-User, X-Auth-Request-Email",
        )
        .host("app.test", &[("/", PREFIX, "app")]);
    dir.write("ing.yaml", &ing.to_yaml());
    let px = Pingress::start(dir.path()).await;
    px.wait_status("app.test", "/", 302, STARTUP).await;

    // no token: the 401 becomes a 302 to the sign-in URL with rd, and the auth cookie
    let r = px.get("app.test", "/path/x?q=1&b=2").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://auth.example.com/oauth2/start?rd=http://app.test%2Fpath%2Fx%3Fq%3D1%26b%3D2"
    );
    assert_eq!(
        r.headers.get("set-cookie").unwrap(),
        "_oauth2_csrf=x; Path=/"
    );
    assert_eq!(
        app.requests(),
        0,
        "an unauthenticated request reached the app"
    );

    // the token: allowed, auth-response-headers reach the app (a spoofed one is dropped),
    // the auth service's Set-Cookie reaches the client, the body reaches only the app
    let body = b"payload".to_vec();
    let r = px
        .request(
            Method::POST,
            "app.test",
            "/api?x=1",
            &[
                ("Authorization", "Bearer good"),
                ("X-Auth-Request-Email", "spoofed@evil.test"),
                ("X-Forwarded-For", "203.0.113.9"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo();
    assert_eq!(e.header("x-auth-request-user"), Some("alice"));
    assert_eq!(e.header("x-auth-request-email"), None);
    assert_eq!(e.body_len, body.len());
    assert_eq!(
        r.headers.get("set-cookie").unwrap(),
        "_oauth2_proxy=refreshed; Path=/"
    );
    let seen = auth.seen();
    let s = seen.last().unwrap();
    assert_eq!(s.method, "GET", "subrequests are GET without auth-method");
    assert_eq!(s.target, "/check");
    assert_eq!(s.body_len, 0, "the auth service got a body");
    let h = |n: &str| s.headers.get(n).map(String::as_str);
    assert_eq!(h("x-original-url"), Some("http://app.test/api?x=1"));
    assert_eq!(h("x-original-method"), Some("POST"));
    assert_eq!(h("x-sent-from"), Some("nginx-ingress-controller"));
    assert_eq!(h("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(h("x-auth-request-redirect"), Some("/api?x=1"));
    assert_eq!(h("host"), Some("127.0.0.1"));
    assert_eq!(h("content-length"), None);
    assert_eq!(h("x-original-uri"), None);
    let id = h("x-request-id").expect("X-Request-ID on the subrequest");
    assert_eq!(
        e.header("x-request-id"),
        Some(id),
        "one request id for both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_service_statuses_and_failures() {
    let (auth, app, dir) = setup().await;
    let cases = [
        ("unauth", auth.url("/check"), 401),
        ("deny", auth.url("/deny"), 403),
        ("broken", auth.url("/broken"), 500),
        // a refused connection
        (
            "refused",
            format!("http://127.0.0.1:{}/check", free_port()),
            500,
        ),
        // a read timeout (proxy-read-timeout: 1)
        ("hang", auth.url("/hang"), 500),
    ];
    for (name, url, _) in &cases {
        let ing = Ingress::new(name)
            .annotation(&nx("auth-url"), url)
            .annotation(&nx("auth-method"), "POST")
            .annotation(&nx("proxy-read-timeout"), "1")
            .host(&format!("{name}.test"), &[("/", PREFIX, "app")]);
        dir.write(&format!("{name}.yaml"), &ing.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("deny.test", "/", 403, STARTUP).await;
    for (name, _, want) in &cases {
        let r = px.get(&format!("{name}.test"), "/x").await;
        assert_eq!(r.status, *want, "{name}: {}", r.text());
    }
    let r = px.get("unauth.test", "/").await;
    assert_eq!(
        r.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"auth\"",
        "the auth service's challenge reaches the client"
    );
    assert!(
        r.headers.get("set-cookie").is_none(),
        "no auth cookie on a 401 without auth-always-set-cookie"
    );
    let s = auth.seen();
    let last = s.iter().rev().find(|s| s.target == "/check").unwrap();
    assert_eq!(last.method, "POST", "auth-method");
    assert_eq!(
        last.headers.get("x-original-uri").map(String::as_str),
        Some("/")
    );
    assert_eq!(
        last.headers.get("x-scheme").map(String::as_str),
        Some("http")
    );
    assert_eq!(app.requests(), 0, "a refused request reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_htpasswd_and_auth_map() {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            secret("htpasswd", &[("auth", HTPASSWD)]),
            secret("users", &[("carol", "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=")]),
        ]),
    );
    let ings = [
        Ingress::new("file")
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "htpasswd")
            .annotation(&nx("auth-realm"), "Authentication Required - foo")
            .host("file.test", &[("/", PREFIX, "app")]),
        Ingress::new("map")
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "default/users")
            .annotation(&nx("auth-secret-type"), "auth-map")
            .host("map.test", &[("/", PREFIX, "app")]),
        Ingress::new("missing")
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "nope")
            .host("missing.test", &[("/", PREFIX, "app")]),
    ];
    for i in &ings {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("file.test", "/", 401, STARTUP).await;

    let r = px.get("file.test", "/").await;
    assert_eq!(
        r.headers.get("www-authenticate").unwrap(),
        "Basic realm=\"Authentication Required - foo\""
    );
    for (who, pw, want) in [
        ("alice", "s3cret", 200),
        ("alice", "s3cret", 200), // second time from the verification cache
        ("bob", "s3cret", 200),
        ("alice", "wrong", 401),
        ("nobody", "s3cret", 401),
    ] {
        let r = authorized(&px, "file.test", "/", &basic(who, pw)).await;
        assert_eq!(r.status, want, "{who}:{pw}");
        if want == 200 {
            assert_eq!(
                r.echo().header("authorization"),
                None,
                "credentials went upstream"
            );
        }
    }
    let r = authorized(&px, "map.test", "/", &basic("carol", "s3cret")).await;
    assert_eq!(r.status, 200);
    assert_eq!(px.get("map.test", "/").await.status, 401);
    // a missing Secret fails closed, whatever the credentials
    let r = authorized(&px, "missing.test", "/", &basic("alice", "s3cret")).await;
    assert_eq!(r.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_and_all_with_an_allowlist() {
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            secret("htpasswd", &[("auth", HTPASSWD)]),
        ]),
    );
    let with = |name: &str, cidr: &str, satisfy: &str| {
        Ingress::new(name)
            .annotation(&nx("auth-type"), "basic")
            .annotation(&nx("auth-secret"), "htpasswd")
            .annotation(&nx("allowlist-source-range"), cidr)
            .annotation(&nx("satisfy"), satisfy)
            .host(&format!("{name}.test"), &[("/", PREFIX, "app")])
    };
    for i in [
        with("anyin", "127.0.0.1/32", "any"),
        with("anyout", "10.0.0.0/8", "any"),
        with("allin", "127.0.0.1/32", "all"),
        with("allout", "10.0.0.0/8", "all"),
    ] {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start(dir.path()).await;
    px.wait_status("allout.test", "/", 403, STARTUP).await;
    let good = basic("bob", "s3cret");
    for (host, creds, want) in [
        ("anyin.test", None, 200),
        ("anyout.test", None, 401),
        ("anyout.test", Some(good.as_str()), 200),
        ("allin.test", None, 401),
        ("allin.test", Some(good.as_str()), 200),
        ("allout.test", Some(good.as_str()), 403),
    ] {
        let headers: Vec<(&str, &str)> = creds.map(|c| ("Authorization", c)).into_iter().collect();
        let r = px.request(Method::GET, host, "/", &headers, vec![]).await;
        assert_eq!(r.status, want, "{host} {creds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_auth_opt_out_no_auth_locations_and_cluster_service_url() {
    let auth = AuthService::start().await;
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write(
        "setup.yaml",
        &docs(&[
            backend_set("app", &[app.port]),
            // the auth service as a cluster Service: reached through its endpoints, no DNS
            backend_set("authsvc", &[auth.port]),
            controller_configmap(&[
                (
                    "global-auth-url",
                    "http://authsvc.default.svc.cluster.local/check",
                ),
                ("global-auth-response-headers", "X-Auth-Request-User"),
                ("no-auth-locations", "/public"),
            ]),
        ]),
    );
    for i in [
        Ingress::new("covered").host(
            "covered.test",
            &[("/", PREFIX, "app"), ("/public", PREFIX, "app")],
        ),
        Ingress::new("optout")
            .annotation(&nx("enable-global-auth"), "false")
            .host("optout.test", &[("/", PREFIX, "app")]),
        Ingress::new("own")
            .annotation(&nx("auth-url"), &auth.url("/deny"))
            .host("own.test", &[("/", PREFIX, "app")]),
    ] {
        dir.write(&format!("{}.yaml", i.name()), &i.to_yaml());
    }
    let px = Pingress::start_with_args(dir.path(), &["--configmap", "ingress/pingress"]).await;
    px.wait_status("covered.test", "/", 401, STARTUP).await;
    let r = bearer(&px, "covered.test", "/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-auth-request-user"), Some("alice"));
    assert_eq!(px.get("covered.test", "/public/file").await.status, 200);
    assert_eq!(px.get("optout.test", "/").await.status, 200);
    // an Ingress's own auth-url replaces the global one
    assert_eq!(px.get("own.test", "/").await.status, 403);
    let s = auth.seen();
    assert!(s
        .iter()
        .any(|s| s.headers.get("host").map(String::as_str)
            == Some("authsvc.default.svc.cluster.local")));
    assert!(!s.iter().any(|s| s
        .headers
        .get("x-original-url")
        .is_some_and(|u| u.contains("/public"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_auth_url_with_a_self_signed_certificate_allows_as_nginx() {
    // nginx's proxy_ssl_verify is off by default: the auth service's certificate is not checked
    let auth = support::tls::TlsBackend::start("tls-auth").await;
    let app = EchoBackend::start("app").await;
    let dir = ManifestDir::with_class();
    dir.write("app.yaml", &backend_set("app", &[app.port]));
    let ing = Ingress::new("tls")
        .annotation(
            &nx("auth-url"),
            &format!("https://127.0.0.1:{}/verify", auth.port),
        )
        .host("tls.test", &[("/", PREFIX, "app")]);
    dir.write("ing.yaml", &ing.to_yaml());
    let px = Pingress::start(dir.path()).await;
    px.wait_status("tls.test", "/", 200, STARTUP).await;
    assert_eq!(
        px.get("tls.test", "/x").await.backend().as_deref(),
        Some("app")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cache_asks_once_per_key_and_status() {
    let (auth, _app, dir) = setup().await;
    let ing = Ingress::new("cached")
        .annotation(&nx("auth-url"), &auth.url("/check"))
        .annotation(&nx("auth-cache-key"), "$http_authorization")
        .annotation(&nx("auth-cache-duration"), "200 5m")
        .annotation(&nx("auth-response-headers"), "X-Auth-Request-User")
        .host("cached.test", &[("/", PREFIX, "app")]);
    dir.write("ing.yaml", &ing.to_yaml());
    let px = Pingress::start(dir.path()).await;
    px.wait_status("cached.test", "/", 401, STARTUP).await;
    let asked = || auth.seen().len();
    let before = asked();
    for _ in 0..3 {
        let r = bearer(&px, "cached.test", "/").await;
        assert_eq!(r.status, 200);
        // a cached answer still carries the auth service's headers
        assert_eq!(r.echo().header("x-auth-request-user"), Some("alice"));
    }
    assert_eq!(asked(), before + 1, "a cached 200 was asked again");
    // a 401 is not in "200 5m": asked every time
    let before = asked();
    for _ in 0..2 {
        assert_eq!(px.get("cached.test", "/").await.status, 401);
    }
    assert_eq!(asked(), before + 2);
}
