//! Responses pingress writes itself (default backend 404, 503 without endpoints, 502/504 after
//! upstream failures): nginx's stock HTML error pages, footer `pingress`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// nginx's title for a status where it differs from the standard reason phrase
/// (`ngx_http_special_response.c`); the e2e tests and clients' error matching look for these.
fn nginx_title(code: u16) -> Option<&'static str> {
    Some(match code {
        494 => "Request Header Or Cookie Too Large",
        401 => "Authorization Required",
        405 => "Not Allowed",
        408 => "Request Time-out",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        416 => "Requested Range Not Satisfiable",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => return None,
    })
}

/// The status line of an answer: nginx's internal 494 goes out as 400.
fn sent_status(code: u16) -> u16 {
    if code == 494 {
        400
    } else {
        code
    }
}

/// The body of the error page for `code`, titled as nginx titles it (494 is sent as 400).
pub fn error_page(code: u16) -> Bytes {
    let reason = nginx_title(code)
        .or_else(|| {
            http::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
        })
        .unwrap_or("Error");
    let code = sent_status(code);
    Bytes::from(format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>pingress</center>\r\n</body>\r\n</html>\r\n"
    ))
}

/// Write a complete error response.
pub async fn respond(session: &mut Session, code: u16) -> Result<()> {
    respond_with(session, code, &[]).await
}

/// Write a complete error (or redirect) response with extra headers (`Location`, HSTS).
pub async fn respond_with(
    session: &mut Session,
    code: u16,
    extra: &[(&'static str, &str)],
) -> Result<()> {
    respond_with_more(session, code, extra, &[]).await
}

/// [`respond_with`] plus `more` headers appended (repeatable ones such as Set-Cookie).
pub async fn respond_with_more(
    session: &mut Session,
    code: u16,
    extra: &[(&'static str, &str)],
    more: &[(http::HeaderName, http::HeaderValue)],
) -> Result<()> {
    respond_page(session, code, extra, more, None, None).await
}

/// pingress's own answer: `body` with its content type (default: the error page of `code`,
/// `text/html`), then a snippet's header filter (`edit`).
pub async fn respond_page(
    session: &mut Session,
    code: u16,
    extra: &[(&'static str, &str)],
    more: &[(http::HeaderName, http::HeaderValue)],
    body: Option<(Bytes, &str)>,
    edit: Option<&super::snippet::Prepared>,
) -> Result<()> {
    let (body, ctype) = body.unwrap_or_else(|| (error_page(code), "text/html"));
    let mut h = ResponseHeader::build(sent_status(code), Some(3 + extra.len() + more.len()))?;
    for (name, value) in extra {
        h.insert_header(*name, *value)?;
    }
    for (name, value) in more {
        h.append_header(name.clone(), value.clone())?;
    }
    h.insert_header("Content-Type", ctype)?;
    h.insert_header("Content-Length", body.len().to_string())?;
    if let Some(e) = edit {
        e.apply(&mut h);
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The gRPC status (and message) a failure of a gRPC call becomes: a request body over
/// `proxy-body-size` is RESOURCE_EXHAUSTED, upstream failures UNAVAILABLE, the rest as gRPC's
/// mapping of the HTTP status nginx would have answered.
pub fn grpc_status_for(http_status: u16) -> (&'static str, &'static str) {
    match http_status {
        413 => ("8", "request body over proxy-body-size"),
        504 => ("14", "upstream timed out"),
        400 => ("13", "bad request"),
        401 => ("16", "unauthorized"),
        403 => ("7", "forbidden"),
        404 => ("12", "not found"),
        408 => ("4", "client request timed out"),
        429 | 503 => ("14", "service unavailable"),
        _ => ("14", "upstream failed"),
    }
}

/// Answer a gRPC call that failed before any response with a gRPC error: `:status 200`,
/// `content-type: application/grpc`, then `grpc-status` and `grpc-message` ([`grpc_status_for`])
/// as trailers ending the stream, so the client gets a gRPC code instead of an HTML page it
/// cannot read. Not gRPC's Trailers-Only form (one HEADERS frame with END_STREAM): Pingora's
/// `Session::write_response_header` does not pass `end_of_stream` on, so that frame would not
/// end the stream, and a session dropped after a failure resets it (RST_STREAM CANCEL).
pub async fn grpc_error(session: &mut Session, http_status: u16) -> Result<()> {
    let (status, message) = grpc_status_for(http_status);
    let mut h = ResponseHeader::build(200, Some(1))?;
    h.insert_header("content-type", "application/grpc")?;
    session.write_response_header(Box::new(h), false).await?;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    trailers.insert("grpc-message", http::HeaderValue::from_static(message));
    session.as_mut().write_response_trailers(trailers).await
}

/// End a response whose header (or a 101) already went out when the proxying fails: an error
/// page now would be spliced into the body or the tunnel, so the message is aborted instead
/// (h1: closed short of its length or without the last chunk; h2: RST_STREAM), and a gRPC call
/// over h2 ends with a `grpc-status` in trailers ([`grpc_status_for`]).
pub async fn end_after_header(session: &mut Session, sent: u16, grpc: bool, e: &Error) {
    if grpc && session.as_mut().is_http2() && sent != 101 {
        let (status, message) = grpc_status_for(status_for(e));
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(status));
        trailers.insert("grpc-message", http::HeaderValue::from_static(message));
        if let Err(err) = session.as_mut().write_response_trailers(trailers).await {
            tracing::debug!(error = %err, "could not send the gRPC trailers");
        }
    }
    tracing::warn!(status = sent, error = %e, "response aborted after its header was sent");
}

/// The status an error becomes, as nginx reports upstream failures: connect/read/write
/// timeouts 504, other upstream failures 502; 0 when the client is already gone.
pub fn status_for(e: &Error) -> u16 {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout if *e.esource() == ErrorSource::Upstream => {
            504
        }
        ConnectTimedout => 504,
        etype => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match etype {
                WriteError | ReadError | ConnectionClosed => 0,
                // nginx's client_body_timeout
                ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// The size of an HTTP/1 upstream response head as nginx buffers it (status line, header lines
/// with CRLF, the empty line), when it is over `limit` (`proxy-buffer-size`).
pub fn head_over(resp: &ResponseHeader, limit: u64) -> Option<u64> {
    if resp.version == http::Version::HTTP_2 {
        return None;
    }
    let reason = resp.status.canonical_reason().unwrap_or("").len();
    let mut size = ("HTTP/1.1 200 \r\n".len() + reason + 2) as u64;
    for (name, value) in &resp.headers {
        size += (name.as_str().len() + 2 + value.len() + 2) as u64;
    }
    (size > limit).then_some(size)
}

/// A failure caused by the client (a malformed or slow request, a body over the limit, a
/// closed connection): nginx logs these at `info`, not as errors.
pub fn is_client_error(e: &Error) -> bool {
    *e.esource() == ErrorSource::Downstream
        || matches!(e.etype(), ErrorType::HTTPStatus(c) if (400..500).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_failures_are_not_server_errors() {
        let down = |t| Error::new(t).into_down();
        assert!(is_client_error(&down(ErrorType::InvalidHTTPHeader)));
        assert_eq!(status_for(&down(ErrorType::InvalidHTTPHeader)), 400);
        assert!(is_client_error(&down(ErrorType::ReadTimedout)));
        assert_eq!(status_for(&down(ErrorType::ReadTimedout)), 408);
        assert!(is_client_error(&Error::new(ErrorType::HTTPStatus(413))));
        assert!(!is_client_error(&Error::new(ErrorType::HTTPStatus(502))));
        assert!(!is_client_error(
            &Error::new(ErrorType::ConnectRefused).into_up()
        ));
    }

    #[test]
    fn grpc_failures_after_the_header_map_to_grpc_codes() {
        assert_eq!(grpc_status_for(413).0, "8");
        assert_eq!(grpc_status_for(504), ("14", "upstream timed out"));
        assert_eq!(grpc_status_for(502).0, "14");
        assert_eq!(grpc_status_for(0).0, "14");
    }

    #[test]
    fn pages_and_codes() {
        let p = error_page(404);
        assert!(std::str::from_utf8(&p)
            .unwrap()
            .contains("<title>404 Not Found</title>"));
        for (code, title) in [
            (401, "401 Authorization Required"),
            (503, "503 Service Temporarily Unavailable"),
            (504, "504 Gateway Time-out"),
            (494, "400 Request Header Or Cookie Too Large"),
            (502, "502 Bad Gateway"),
        ] {
            let p = error_page(code);
            let p = std::str::from_utf8(&p).unwrap();
            assert!(p.contains(&format!("<title>{title}</title>")), "{p}");
            assert!(p.contains(&format!("<h1>{title}</h1>")), "{p}");
        }
        assert_eq!(status_for(&Error::new(ErrorType::HTTPStatus(503))), 503);
        let mut e = Error::new(ErrorType::ConnectRefused);
        e.esource = ErrorSource::Upstream;
        assert_eq!(status_for(&e), 502);
        let mut e = Error::new(ErrorType::ConnectTimedout);
        e.esource = ErrorSource::Upstream;
        assert_eq!(status_for(&e), 504);
        let mut e = Error::new(ErrorType::ReadError);
        e.esource = ErrorSource::Downstream;
        assert_eq!(status_for(&e), 0);
    }
}
