//! The access phase's authentication (nginx `satisfy`, `auth_basic`, `auth_request` as
//! ingress-nginx configures them).
//!
//! Order, as nginx runs its access handlers: the IP lists, then basic auth, then the external
//! auth subrequest. With `satisfy all` (the default) the first refusal answers; with
//! `satisfy any` the first pass allows, and when everything refuses a 401 wins over a 403.
//!
//! The external subrequest carries the client's headers (not its body) plus ingress-nginx's
//! (X-Original-URL, X-Original-Method, X-Sent-From, X-Real-IP, X-Forwarded-For,
//! X-Auth-Request-Redirect, X-Request-ID; X-Original-URI and X-Scheme with `auth-method`).
//! 2xx allows, 401 and 403 go back to the client (401 becomes the sign-in 302 with
//! `auth-signin`), anything else, a timeout or a refused connection is 500. Credentials
//! never reach logs: errors name the auth URL's host only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::header::{AUTHORIZATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};

use super::subrequest::{skipped, Timeouts};
use crate::annotations::access::Access;
use crate::annotations::template::split_url;
use crate::route::auth::{signin_location, BasicAuth, ExternalAuth, RequestView};
use crate::route::Policy;

/// What the access phase decided.
#[derive(Debug)]
pub enum Outcome {
    Allow(Granted),
    Deny(Refusal),
}

/// What an allowed request carries on (from the external auth response).
#[derive(Debug, Default)]
pub struct Granted {
    /// `auth-response-headers`: set on the upstream request (`None`: absent from the auth
    /// response, so removed, as nginx's empty `proxy_set_header`).
    pub upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Set-Cookie of the auth response, for the client's response.
    pub cookies: Vec<HeaderValue>,
    /// `auth-always-set-cookie`.
    pub always_cookie: bool,
    /// Basic auth is on: the Authorization header is not passed upstream.
    pub strip_authorization: bool,
}

/// The answer to a refused request.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub location: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn code(code: u16) -> Refusal {
        Refusal {
            code,
            location: None,
            headers: Vec::new(),
        }
    }
}

/// Statuses nginx's `add_header` (without `always`) applies to.
pub fn cookie_status(code: u16) -> bool {
    matches!(
        code,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Basic-auth verification results by (Secret version, Authorization value), so the cost of
/// bcrypt is not paid on every request. Keys are SHA-256 digests: no credential is kept.
#[derive(Default)]
pub struct VerifyCache {
    map: Mutex<HashMap<[u8; 32], bool>>,
}

const VERIFY_CACHE_MAX: usize = 16 * 1024;

impl VerifyCache {
    fn key(version: &str, authorization: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(version.as_bytes());
        ctx.update(&[0]);
        ctx.update(authorization);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn get(&self, k: &[u8; 32]) -> Option<bool> {
        self.map.lock().ok()?.get(k).copied()
    }

    fn put(&self, k: [u8; 32], ok: bool) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= VERIFY_CACHE_MAX {
                m.clear();
            }
            m.insert(k, ok);
        }
    }
}

/// Auth responses cached by `auth-cache-key` (nginx `proxy_cache` on the auth location):
/// SHA-256 of (auth URL, server, location path, expanded key) -> the response header, until its
/// expiry.
#[derive(Default)]
pub struct ResponseCache {
    map: Mutex<HashMap<[u8; 32], Cached>>,
}

/// A cached auth answer and when it expires.
type Cached = (std::time::Instant, Arc<ResponseHeader>);

const RESPONSE_CACHE_MAX: usize = 16 * 1024;

impl ResponseCache {
    fn key(url: &str, key: &str) -> [u8; 32] {
        VerifyCache::key(url, key.as_bytes())
    }

    fn get(&self, k: &[u8; 32]) -> Option<Arc<ResponseHeader>> {
        let m = self.map.lock().ok()?;
        let (until, resp) = m.get(k)?;
        (*until > std::time::Instant::now()).then(|| resp.clone())
    }

    fn put(&self, k: [u8; 32], ttl: Duration, resp: Arc<ResponseHeader>) {
        let Ok(mut m) = self.map.lock() else { return };
        let now = std::time::Instant::now();
        if m.len() >= RESPONSE_CACHE_MAX {
            m.retain(|_, (until, _)| *until > now);
            if m.len() >= RESPONSE_CACHE_MAX {
                m.clear();
            }
        }
        m.insert(k, (now + ttl, resp));
    }
}

/// State of the auth family that outlives table swaps.
#[derive(Default)]
pub struct AuthState {
    pub verified: VerifyCache,
    pub responses: ResponseCache,
}

/// Whether `password` matches an htpasswd `hash`: `{PLAIN}`, `{SHA}`, `{SSHA}` as nginx's
/// `ngx_crypt`, everything else (bcrypt, `$apr1$`, `$1$`, `$5$`, `$6$`, DES) as crypt(3).
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(plain) = hash.strip_prefix("{PLAIN}") {
        return same(plain.as_bytes(), password);
    }
    if let Some(enc) = hash.strip_prefix("{SHA}") {
        let Ok(want) = b64.decode(enc) else {
            return false;
        };
        let got = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
        return same(&want, got.as_ref());
    }
    if let Some(enc) = hash.strip_prefix("{SSHA}") {
        let Ok(raw) = b64.decode(enc) else {
            return false;
        };
        if raw.len() < 20 {
            return false;
        }
        let (want, salt) = raw.split_at(20);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(password);
        ctx.update(salt);
        return same(want, ctx.finish().as_ref());
    }
    crypt(hash, password)
}

/// crypt(3) formats, dispatched by prefix (crypt3_rs's own recognition refuses `$5$`/`$6$`
/// hashes without `rounds=`, the common form).
fn crypt(hash: &str, password: &[u8]) -> bool {
    use crypt3_rs::crypt;
    if hash.starts_with("$5$") {
        crypt::sha256::verify(password, hash)
    } else if hash.starts_with("$6$") {
        crypt::sha512::verify(password, hash)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        crypt::bcrypt::verify(password, hash)
    } else if hash.starts_with("$apr1$") {
        crypt::apr1::verify(password, hash)
    } else if hash.starts_with("$1$") {
        crypt::md5::verify(password, hash)
    } else if hash.len() == 13 && !hash.starts_with('$') {
        crypt::unix::verify(password, hash)
    } else {
        false
    }
}

/// Equality that does not tell by its timing how much of a secret matched: the SHA-256
/// digests of both sides are compared.
fn same(a: &[u8], b: &[u8]) -> bool {
    let d = |x: &[u8]| ring::digest::digest(&ring::digest::SHA256, x);
    d(a).as_ref() == d(b).as_ref()
}

/// `Authorization: Basic <base64(user:password)>`.
pub fn basic_credentials(req: &RequestHeader) -> Option<(String, Vec<u8>)> {
    let v = req.headers.get(AUTHORIZATION)?.as_bytes();
    let sp = v.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = v.split_at(sp);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let rest = std::str::from_utf8(rest).ok()?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

/// Basic auth: `true` when the request's credentials match a user of the Secret.
async fn basic_ok(b: &BasicAuth, req: &RequestHeader, cache: &VerifyCache) -> bool {
    let Some(header) = req.headers.get(AUTHORIZATION) else {
        return false;
    };
    let Some((user, password)) = basic_credentials(req) else {
        return false;
    };
    let Some(hash) = b.users.get(&user) else {
        return false;
    };
    let key = VerifyCache::key(&b.version, header.as_bytes());
    if let Some(ok) = cache.get(&key) {
        return ok;
    }
    let hash = hash.to_string();
    // bcrypt costs milliseconds of CPU: off the proxy's threads
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    cache.put(key, ok);
    ok
}

/// Everything the access phase needs from the request.
pub struct Request<'a> {
    pub header: &'a RequestHeader,
    pub view: RequestView<'a>,
    pub ip: Option<std::net::IpAddr>,
    pub request_id: &'a str,
    /// The server (host as written in the Ingress) and location path: part of the auth cache
    /// key, as ingress-nginx keys its auth cache per server and auth location.
    pub location: (&'a str, &'a str),
}

/// The access phase: IP lists, basic auth, external auth, combined by `satisfy`.
pub async fn check(
    pol: &Policy,
    r: &Request<'_>,
    connector: &Connector,
    state: &AuthState,
) -> Outcome {
    let auth = &pol.auth;
    let ip_refusal = pol.access.check(r.ip);
    if !auth.is_active() || matches!(pol.access, Access::Denied) {
        return match ip_refusal {
            Some(code) => Outcome::Deny(Refusal::code(code)),
            None => Outcome::Allow(Granted::default()),
        };
    }
    let any = auth.satisfy_any;
    let mut granted = Granted {
        strip_authorization: auth.basic.is_some(),
        ..Granted::default()
    };
    match (ip_refusal, any) {
        (Some(code), false) => return Outcome::Deny(Refusal::code(code)),
        // an IP rule that exists and passes is enough with satisfy any
        (None, true) if pol.access != Access::Open => return Outcome::Allow(granted),
        _ => {}
    }
    let mut refusal = ip_refusal.map(Refusal::code);
    if let Some(b) = &auth.basic {
        if basic_ok(b, r.header, &state.verified).await {
            if any {
                return Outcome::Allow(granted);
            }
        } else {
            let challenge = Refusal {
                code: 401,
                location: None,
                headers: vec![(WWW_AUTHENTICATE, b.challenge.clone())],
            };
            if !any {
                return Outcome::Deny(challenge);
            }
            refusal = Some(challenge);
        }
    }
    if let Some(e) = &auth.external {
        let timeouts = Timeouts {
            connect: pol.connect_timeout,
            read: pol.read_timeout,
            write: pol.send_timeout,
        };
        match external(e, r, connector, &state.responses, &timeouts).await {
            Ok(g) => {
                granted.upstream_headers = g.upstream_headers;
                granted.cookies = g.cookies;
                granted.always_cookie = g.always_cookie;
                return Outcome::Allow(granted);
            }
            // nginx's satisfy any: an error (not 401/403) answers at once; a 401 wins
            Err(x) if !any || !matches!(x.code, 401 | 403 | 302) => return Outcome::Deny(x),
            Err(x) if x.code != 403 => refusal = Some(x),
            Err(x) => {
                if refusal.as_ref().is_none_or(|f| f.code != 401) {
                    refusal = Some(x);
                }
            }
        }
    } else if !any {
        return Outcome::Allow(granted);
    }
    Outcome::Deny(refusal.unwrap_or_else(|| Refusal::code(403)))
}

/// Largest auth response body read to keep the connection for reuse; a longer one closes it.
const MAX_AUTH_BODY: usize = 64 * 1024;

/// The subrequest's header (ingress-nginx's auth location).
pub fn subrequest_header(
    e: &ExternalAuth,
    r: &Request<'_>,
    host: &str,
    path_and_query: &str,
) -> pingora::Result<RequestHeader> {
    let method = e.method.clone().unwrap_or(Method::GET);
    let mut h = RequestHeader::build(method, path_and_query.as_bytes(), None)?;
    for (k, v) in r.header.headers.iter() {
        if !skipped(k) {
            h.append_header(k.clone(), v.clone())?;
        }
    }
    let v = &r.view;
    h.insert_header(http::header::HOST, host)?;
    h.insert_header(
        "X-Original-URL",
        format!("{}://{}{}", v.scheme, v.http_host, v.request_uri),
    )?;
    h.insert_header("X-Original-Method", v.method)?;
    h.insert_header("X-Sent-From", "nginx-ingress-controller")?;
    h.insert_header("X-Real-IP", v.remote_addr)?;
    // ingress-nginx sends `$remote_addr` (the client's own list only with use-forwarded-headers
    // and compute-full-forwarded-for for the upstream, never for the auth subrequest)
    h.insert_header("X-Forwarded-For", v.remote_addr)?;
    let redirect = match &e.request_redirect {
        Some(t) => t.expand(v),
        None => v.request_uri.to_string(),
    };
    h.insert_header("X-Auth-Request-Redirect", redirect)?;
    if !r.request_id.is_empty() {
        h.insert_header("X-Request-ID", r.request_id)?;
    }
    if e.method.is_some() {
        h.insert_header("X-Original-URI", v.request_uri)?;
        h.insert_header("X-Scheme", v.scheme)?;
    }
    for (k, val) in &e.set_headers {
        h.insert_header(k.clone(), val.clone())?;
    }
    Ok(h)
}

/// Ask the auth service. `Err` is the client's answer.
async fn external(
    e: &ExternalAuth,
    r: &Request<'_>,
    connector: &Connector,
    cache: &ResponseCache,
    t: &Timeouts,
) -> Result<Granted, Refusal> {
    let url = e.url.expand(&r.view);
    let cache_key = e.cache.as_ref().map(|c| {
        let (server, path) = r.location;
        let key = format!("{server}\0{path}\0{}", c.key.expand(&r.view));
        ResponseCache::key(&url, &key)
    });
    let resp = match cache_key.as_ref().and_then(|k| cache.get(k)) {
        Some(hit) => hit,
        None => {
            let resp = Arc::new(ask(e, r, connector, t, &url).await?);
            if let (Some(c), Some(k)) = (&e.cache, cache_key) {
                let code = resp.status.as_u16();
                let ttl = c.valid.iter().find_map(|(codes, ttl)| {
                    codes
                        .as_ref()
                        .is_none_or(|l| l.contains(&code))
                        .then_some(*ttl)
                });
                if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
                    cache.put(k, ttl, resp.clone());
                }
            }
            resp
        }
    };
    decide(e, r, &resp)
}

/// The subrequest itself: the auth service's response header, or the client's answer (500).
async fn ask(
    e: &ExternalAuth,
    r: &Request<'_>,
    connector: &Connector,
    t: &Timeouts,
    url: &str,
) -> Result<ResponseHeader, Refusal> {
    let u = split_url(url).map_err(|m| {
        tracing::warn!(source = e.source, error = %m, "auth URL is invalid after expansion");
        Refusal::code(500)
    })?;
    let addr = super::subrequest::addr(&e.target, u.host, u.port).await.map_err(|m| {
        tracing::warn!(source = e.source, host = u.host, error = %m, "auth service unreachable");
        Refusal::code(500)
    })?;
    let header =
        subrequest_header(e, r, u.host, u.path_and_query).map_err(|_| Refusal::code(500))?;
    match fetch(connector, addr, u.tls, u.host, header, t).await {
        Ok(resp) => Ok(resp),
        Err(err) => {
            tracing::warn!(source = e.source, host = u.host, error = %err, "auth subrequest failed");
            Err(Refusal::code(500))
        }
    }
}

/// What the auth service's answer means for the client.
fn decide(e: &ExternalAuth, r: &Request<'_>, resp: &ResponseHeader) -> Result<Granted, Refusal> {
    let cookies: Vec<HeaderValue> = resp.headers.get_all(SET_COOKIE).iter().cloned().collect();
    let code = resp.status.as_u16();
    if (200..300).contains(&code) {
        let upstream_headers = e
            .response_headers
            .iter()
            .map(|n| (n.clone(), resp.headers.get(n).cloned()))
            .collect();
        return Ok(Granted {
            upstream_headers,
            cookies,
            always_cookie: e.always_set_cookie,
            strip_authorization: false,
        });
    }
    let mut refusal = match code {
        401 => match &e.signin {
            Some(s) => Refusal {
                code: 302,
                location: Some(signin_location(
                    &s.expand(&r.view),
                    &e.redirect_param,
                    &r.view,
                )),
                headers: Vec::new(),
            },
            None => Refusal {
                code: 401,
                location: None,
                headers: resp
                    .headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| (WWW_AUTHENTICATE, v.clone()))
                    .collect(),
            },
        },
        403 => Refusal::code(403),
        _ => {
            tracing::warn!(
                source = e.source,
                status = code,
                "auth service answered an unexpected status"
            );
            Refusal::code(500)
        }
    };
    if e.always_set_cookie || cookie_status(refusal.code) {
        refusal
            .headers
            .extend(cookies.into_iter().map(|c| (SET_COOKIE, c)));
    }
    Err(refusal)
}

/// One subrequest over the pooled connector; the connection is reused when the body was
/// read whole. nginx does not verify the auth service's certificate by default
/// (`proxy_ssl_verify off`), and neither does this.
async fn fetch(
    connector: &Connector,
    addr: SocketAddr,
    tls: bool,
    host: &str,
    req: RequestHeader,
    t: &Timeouts,
) -> pingora::Result<ResponseHeader> {
    let peer = super::subrequest::peer(addr, tls, host, t);
    let (mut s, _reused) = connector.get_http_session(&peer).await?;
    // the connector applies only the connect timeout; reads and writes are the session's
    s.set_read_timeout(Some(t.read));
    s.set_write_timeout(Some(t.write));
    s.write_request_header(Box::new(req)).await?;
    s.finish_request_body().await?;
    s.read_response_header().await?;
    let head = match s.response_header() {
        Some(h) => h.clone(),
        None => {
            return pingora::Error::e_explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "no response header",
            )
        }
    };
    let mut read = 0usize;
    let mut whole = true;
    while let Some(chunk) = s.read_response_body().await? {
        read += chunk.len();
        if read > MAX_AUTH_BODY {
            whole = false;
            break;
        }
    }
    if whole {
        connector
            .release_http_session(s, &peer, Some(Duration::from_secs(60)))
            .await;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_hash_formats() {
        // generated with openssl passwd, Python's crypt/bcrypt/hashlib for the password s3cret
        for h in [
            "$apr1$Pq3x9Z2a$i34BLu/1g8Ad2/0lbQqMQ1",
            "$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/",
            "$5$saltsalt$i1q2ZQzc.tl/BQ6CHiENAcVDvEY6nJ1OWlWXKh94b1.",
            "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1",
            "$2y$10$F3OLDWqFMhboNy3QR8YBIONqTieyZu1vdoRg/p8TtEnWsPjTLKNAi",
            "$2b$04$Jx9B.H0EG4lWB9W8mHZ31..1Cx8UBSDIXgMa66rcnDnU6hDxNcEQa",
            "abhWCwoTZY2c6",
            "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=",
            "{SSHA}d14l+Z9NxT7CNv9vgUcYN2BAzoMBAgME",
            "{PLAIN}s3cret",
        ] {
            assert!(verify_password(h, b"s3cret"), "{h}");
            assert!(!verify_password(h, b"s3cret!"), "{h}");
            assert!(!verify_password(h, b""), "{h}");
        }
        for junk in ["", "s3cret", "{SHA}!!", "{SSHA}AAAA", "$9$x$y"] {
            assert!(!verify_password(junk, b"s3cret"), "{junk}");
        }
    }

    fn req_with(auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x?y=1", None).unwrap();
        r.insert_header("Host", "app.example.com").unwrap();
        r.insert_header("X-Forwarded-For", "1.2.3.4").unwrap();
        r.insert_header("Content-Length", "5").unwrap();
        r.insert_header("X-Forwarded-Proto", "https").unwrap();
        if let Some(a) = auth {
            r.insert_header("Authorization", a).unwrap();
        }
        r
    }

    #[test]
    fn basic_credentials_parse() {
        let b = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            basic_credentials(&req_with(Some(&b("foo:p:w")))),
            Some(("foo".into(), b"p:w".to_vec()))
        );
        assert_eq!(
            basic_credentials(&req_with(Some(&format!("basic  {}", &b("a:")[6..])))),
            Some(("a".into(), vec![]))
        );
        for bad in [
            None,
            Some("Bearer x"),
            Some("Basic !!!"),
            Some("Basic Zm9v"),
        ] {
            assert_eq!(basic_credentials(&req_with(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn subrequest_carries_ingress_nginx_headers_and_no_body() {
        let e = ExternalAuth {
            url: crate::route::auth::Template::parse("http://auth.local/verify").unwrap(),
            target: crate::route::UrlTarget::Dns,
            method: Some(Method::POST),
            signin: None,
            redirect_param: "rd".into(),
            response_headers: vec![],
            request_redirect: None,
            always_set_cookie: false,
            set_headers: vec![(
                HeaderName::from_static("x-extra"),
                HeaderValue::from_static("1"),
            )],
            source: "auth-url",
            cache: None,
        };
        let header = req_with(Some("Bearer t"));
        let hm = header.headers.clone();
        let r = Request {
            header: &header,
            view: RequestView {
                scheme: "https",
                http_host: "app.example.com",
                request_uri: "/x?y=1",
                method: "GET",
                remote_addr: "10.0.0.7",
                server_port: 443,
                headers: &hm,
                locals: None,
            },
            ip: None,
            request_id: "abc",
            location: ("app.example.com", "/"),
        };
        let h = subrequest_header(&e, &r, "auth.local", "/verify").unwrap();
        let get = |n: &str| h.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h.method, Method::POST);
        assert_eq!(h.uri, "/verify");
        assert_eq!(get("host").as_deref(), Some("auth.local"));
        assert_eq!(
            get("x-original-url").as_deref(),
            Some("https://app.example.com/x?y=1")
        );
        assert_eq!(get("x-original-method").as_deref(), Some("GET"));
        assert_eq!(
            get("x-sent-from").as_deref(),
            Some("nginx-ingress-controller")
        );
        assert_eq!(get("x-real-ip").as_deref(), Some("10.0.0.7"));
        assert_eq!(get("x-forwarded-for").as_deref(), Some("10.0.0.7"));
        assert_eq!(get("x-auth-request-redirect").as_deref(), Some("/x?y=1"));
        assert_eq!(get("x-request-id").as_deref(), Some("abc"));
        assert_eq!(get("x-original-uri").as_deref(), Some("/x?y=1"));
        assert_eq!(get("x-scheme").as_deref(), Some("https"));
        assert_eq!(get("authorization").as_deref(), Some("Bearer t"));
        assert_eq!(get("x-extra").as_deref(), Some("1"));
        assert_eq!(get("content-length"), None);
        assert_eq!(get("x-forwarded-proto"), None);
    }

    #[test]
    fn verify_cache_keys_on_version_and_bounds_itself() {
        let c = VerifyCache::default();
        let k1 = VerifyCache::key("ns/s@1", b"Basic eA==");
        let k2 = VerifyCache::key("ns/s@2", b"Basic eA==");
        assert_ne!(k1, k2);
        c.put(k1, true);
        assert_eq!(c.get(&k1), Some(true));
        assert_eq!(c.get(&k2), None);
        for i in 0..VERIFY_CACHE_MAX + 1 {
            c.put(VerifyCache::key("v", i.to_string().as_bytes()), false);
        }
        assert!(c.map.lock().unwrap().len() <= VERIFY_CACHE_MAX);
    }
}
