//! `mirror-target` copies (nginx's `mirror` as ingress-nginx configures it): once a request
//! passed the access phase and its body was read, a copy goes to the mirror from its own task
//! and its answer is thrown away.
//!
//! As nginx: the copy has the request's method and headers with the Host of `mirror-host`,
//! its body when `mirror-request-body` is on (the body is then read whole first, as nginx
//! does); its URI is the target's when the target has variables, otherwise the target's path
//! plus the request's query (or nginx's internal `/_mirror-<uid>` when the target has no
//! path). Unlike nginx, a slow or dead mirror never holds the real request: copies beyond
//! [`IN_FLIGHT`] are dropped, and each is bounded by the route's proxy timeouts.

use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use tokio::sync::Semaphore;

use super::body::Reader;
use super::subrequest::{self, skipped, Timeouts};
use crate::annotations::template::{split_url, RequestView};
use crate::route::policy::Mirror;

/// Copies in flight at most; one more is dropped (and counted), never queued.
pub const IN_FLIGHT: usize = 1024;

/// A mirror answer's body read to reuse the connection; a longer one closes it.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// State shared by every request: the in-flight bound and the connection pool of copies.
pub struct Mirrors {
    permits: Arc<Semaphore>,
    connector: Arc<Connector>,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            connector: Arc::new(Connector::new(None)),
        }
    }
}

/// The body a copy carries.
pub enum Body {
    None,
    Buffered(Reader),
    /// The request has a body that is streamed (a gRPC upstream): not copied.
    Streamed,
}

/// Where the copy goes: (https, host, port, path and query).
fn destination(m: &Mirror, view: &RequestView<'_>) -> Result<(bool, String, u16, String), String> {
    let url = m.url.expand(view);
    let u = split_url(&url)?;
    let uri = if m.url.literal().is_none() {
        u.path_and_query.to_string()
    } else {
        // nginx: the location `= /_mirror-<uid>` replaced by the target's URI, the args kept
        let written = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find(['/', '?']).map(|i| &rest[i..]))
            .unwrap_or("");
        let base = if written.is_empty() {
            &*m.location
        } else {
            written
        };
        match view.request_uri.split_once('?').map(|(_, q)| q) {
            Some(q) if !q.is_empty() => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}{q}")
            }
            _ => base.to_string(),
        }
    };
    Ok((u.tls, u.host.to_string(), u.port, uri))
}

/// The copy's request header.
fn head(
    m: &Mirror,
    req: &RequestHeader,
    uri: &str,
    body_len: Option<u64>,
) -> pingora::Result<RequestHeader> {
    let mut h = RequestHeader::build(req.method.clone(), uri.as_bytes(), None)?;
    for (k, v) in req.headers.iter() {
        if !skipped(k) {
            h.append_header(k.clone(), v.clone())?;
        }
    }
    // x-forwarded-proto is on the skip list of auth subrequests only
    if let Some(v) = req.headers.get("x-forwarded-proto") {
        h.insert_header("x-forwarded-proto", v.clone())?;
    }
    h.insert_header(http::header::HOST, m.host.clone())?;
    if let Some(n) = body_len {
        h.insert_header(http::header::CONTENT_LENGTH, n.to_string())?;
    }
    Ok(h)
}

impl Mirrors {
    /// Send a copy of `req` to `m` from a new task (never waits for it).
    pub fn send(
        &self,
        m: &Arc<Mirror>,
        req: &RequestHeader,
        view: &RequestView<'_>,
        body: Body,
        t: Timeouts,
    ) {
        let counter = |r: &str| {
            crate::metrics::CONFIG
                .mirrored
                .with_label_values(&[r])
                .inc()
        };
        let body = match body {
            Body::Streamed => {
                counter("dropped");
                tracing::debug!("mirror: a streamed (gRPC) request body is not copied");
                return;
            }
            Body::None => None,
            Body::Buffered(r) => Some(r),
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            counter("dropped");
            return;
        };
        let (tls, host, port, uri) = match destination(m, view) {
            Ok(d) => d,
            Err(e) => {
                counter("failed");
                tracing::warn!(error = %e, "mirror-target is not a URL after expansion");
                return;
            }
        };
        let len = body.as_ref().map(|r| r.len());
        let head = match head(m, req, &uri, len) {
            Ok(h) => h,
            Err(e) => {
                counter("failed");
                tracing::warn!(error = %e, "mirror copy header");
                return;
            }
        };
        let (m, connector) = (m.clone(), self.connector.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let budget = t.connect + t.write + t.read;
            let sent = tokio::time::timeout(
                budget,
                copy(&connector, &m, &host, port, tls, head, body, &t),
            )
            .await;
            match sent {
                Ok(Ok(())) => counter("answered"),
                Ok(Err(e)) => {
                    counter("failed");
                    tracing::debug!(host, error = %e, "mirror copy failed");
                }
                Err(_) => {
                    counter("failed");
                    tracing::debug!(host, "mirror copy timed out");
                }
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy(
    connector: &Connector,
    m: &Mirror,
    host: &str,
    port: u16,
    tls: bool,
    head: RequestHeader,
    body: Option<Reader>,
    t: &Timeouts,
) -> Result<(), String> {
    let addr = subrequest::addr(&m.to, host, port).await?;
    let peer = subrequest::peer(addr, tls, host, t);
    let (mut s, _reused) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(t.read));
    s.set_write_timeout(Some(t.write));
    let e = |e: Box<pingora::Error>| e.to_string();
    s.write_request_header(Box::new(head)).await.map_err(e)?;
    if let Some(mut r) = body {
        while let Some(chunk) = r.next().await.map_err(|x| x.to_string())? {
            s.write_request_body(chunk, false).await.map_err(e)?;
        }
    }
    s.finish_request_body().await.map_err(e)?;
    s.read_response_header().await.map_err(e)?;
    let mut read = 0usize;
    while let Some(chunk) = s.read_response_body().await.map_err(e)? {
        read += chunk.len();
        if read > MAX_ANSWER_BODY {
            // not worth reading for reuse: the connection closes
            return Ok(());
        }
    }
    connector
        .release_http_session(s, &peer, Some(Duration::from_secs(60)))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::template::Template;
    use crate::route::UrlTarget;

    fn mirror(url: &str) -> Mirror {
        Mirror {
            url: Template::parse(url).unwrap(),
            to: UrlTarget::Dns,
            host: http::HeaderValue::from_static("m.example.com"),
            body: true,
            location: "/_mirror-1234".into(),
        }
    }

    fn dest(url: &str, request_uri: &str) -> (bool, String, u16, String) {
        let headers = http::HeaderMap::new();
        let view = RequestView {
            scheme: "http",
            http_host: "app.example.com",
            request_uri,
            method: "GET",
            remote_addr: "10.0.0.1",
            server_port: 80,
            headers: &headers,
            locals: None,
        };
        destination(&mirror(url), &view).unwrap()
    }

    #[test]
    fn the_uri_of_a_copy_is_nginx_s() {
        // variables: the expansion as is (ingress-nginx's e2e target, double slash included)
        assert_eq!(
            dest("https://test.env.com/$request_uri", "/a/b?x=1"),
            (true, "test.env.com".into(), 443, "//a/b?x=1".into())
        );
        assert_eq!(
            dest("http://m.ns.svc:8080$request_uri", "/a?x=1").3,
            "/a?x=1"
        );
        // a literal path replaces the URI, the query is kept
        assert_eq!(dest("http://localhost/mirror", "/a/b?x=1").3, "/mirror?x=1");
        assert_eq!(
            dest("http://localhost/mirror?k=v", "/a?x=1").3,
            "/mirror?k=v&x=1"
        );
        assert_eq!(dest("http://localhost/", "/a/b").3, "/");
        // no path: nginx's own mirror location
        assert_eq!(
            dest("http://localhost:9000", "/a/b?x=1"),
            (false, "localhost".into(), 9000, "/_mirror-1234?x=1".into())
        );
    }

    #[test]
    fn the_header_of_a_copy() {
        let mut req = RequestHeader::build("POST", b"/a?x=1", None).unwrap();
        for (k, v) in [
            ("Host", "app.example.com"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Expect", "100-continue"),
            ("X-Forwarded-Proto", "https"),
            ("Authorization", "Bearer t"),
        ] {
            req.insert_header(k, v).unwrap();
        }
        let h = head(&mirror("http://m"), &req, "/mirror?x=1", Some(5)).unwrap();
        assert_eq!(h.method, http::Method::POST);
        assert_eq!(h.uri, "/mirror?x=1");
        let get = |k: &str| h.headers.get(k).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("host").as_deref(), Some("m.example.com"));
        assert_eq!(get("content-length").as_deref(), Some("5"));
        assert_eq!(get("authorization").as_deref(), Some("Bearer t"));
        assert_eq!(get("x-forwarded-proto").as_deref(), Some("https"));
        for gone in ["connection", "transfer-encoding", "expect"] {
            assert_eq!(get(gone), None, "{gone}");
        }
        let h = head(&mirror("http://m"), &req, "/", None).unwrap();
        assert_eq!(h.headers.get("content-length"), None);
    }
}
