//! ingress-nginx's error interception: `custom-http-errors` and the `default-backend`
//! fallback send a request to an error backend with path `/` and the headers X-Code,
//! X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port and
//! X-Request-ID, and answer with what it returns. Uses Pingora's HTTP connector (pooled).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::Result;

use crate::route::Route;

/// Largest error page accepted from the error backend.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the request to the error backend says about the original request.
pub struct ErrorContext<'a> {
    pub code: u16,
    pub host: &'a str,
    pub accept: Option<&'a str>,
    pub original_uri: &'a str,
    pub request_id: Option<&'a str>,
    pub route: &'a Route,
}

/// The headers ingress-nginx sends to the error backend.
pub fn error_request(c: &ErrorContext<'_>) -> Result<RequestHeader> {
    let mut req = RequestHeader::build("GET", b"/", None)?;
    req.insert_header("Host", c.host)?;
    req.insert_header("X-Code", c.code.to_string())?;
    req.insert_header("X-Format", c.accept.unwrap_or("text/html"))?;
    req.insert_header("X-Original-URI", c.original_uri)?;
    if let Some(i) = &c.route.ingress {
        req.insert_header("X-Namespace", &*i.namespace)?;
        req.insert_header("X-Ingress-Name", &*i.name)?;
    }
    let (svc, port) = service_and_port(&c.route.backend.name, c.route.ingress.as_ref());
    req.insert_header("X-Service-Name", svc)?;
    req.insert_header("X-Service-Port", port)?;
    if let Some(id) = c.request_id {
        req.insert_header("X-Request-ID", id)?;
    }
    Ok(req)
}

/// Split an upstream name `<ns>-<svc>-<port>` back into service and port.
pub fn service_and_port<'a>(
    upstream: &'a str,
    ingress: Option<&crate::route::IngressId>,
) -> (&'a str, &'a str) {
    let rest = ingress
        .and_then(|i| upstream.strip_prefix(&*i.namespace))
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(upstream);
    match rest.rsplit_once('-') {
        Some((svc, port)) => (svc, port),
        None => (rest, ""),
    }
}

/// Fetch the error page: (response header, body).
pub async fn fetch(
    connector: &Connector,
    addr: SocketAddr,
    req: RequestHeader,
) -> Result<(ResponseHeader, Bytes)> {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(TIMEOUT);
    peer.options.read_timeout = Some(TIMEOUT);
    peer.options.write_timeout = Some(TIMEOUT);
    let (mut s, _reused) = connector.get_http_session(&peer).await?;
    // the connector applies only the connect timeout; reads and writes are the session's
    s.set_read_timeout(Some(TIMEOUT));
    s.set_write_timeout(Some(TIMEOUT));
    s.write_request_header(Box::new(req)).await?;
    s.finish_request_body().await?;
    s.read_response_header().await?;
    let mut head = match s.response_header() {
        Some(h) => h.clone(),
        None => {
            return pingora::Error::e_explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "no response header",
            )
        }
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = s.read_response_body().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return pingora::Error::e_explain(
                pingora::ErrorType::InternalError,
                "error page too large",
            );
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(s, &peer, Some(Duration::from_secs(60)))
        .await;
    for h in ["Transfer-Encoding", "Connection", "Keep-Alive", "Server"] {
        head.remove_header(h);
    }
    head.insert_header("Content-Length", body.len().to_string())?;
    Ok((head, body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::IngressId;

    #[test]
    fn service_and_port_from_upstream_names() {
        let id = IngressId {
            namespace: "my-ns".into(),
            name: "i".into(),
        };
        assert_eq!(
            service_and_port("my-ns-web-app-80", Some(&id)),
            ("web-app", "80")
        );
        assert_eq!(
            service_and_port("my-ns-web-http", Some(&id)),
            ("web", "http")
        );
        assert_eq!(
            service_and_port("upstream-default-backend", None),
            ("upstream-default", "backend")
        );
    }
}
