//! Responses pingress writes itself (default backend 404, 503 without endpoints, 502/504 after
//! upstream failures): nginx's stock HTML error pages, footer `pingress`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// The body of the error page for `code`.
pub fn error_page(code: u16) -> Bytes {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
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
    let body = error_page(code);
    let mut h = ResponseHeader::build(code, Some(3 + extra.len()))?;
    for (name, value) in extra {
        h.insert_header(*name, *value)?;
    }
    h.insert_header("Content-Type", "text/html")?;
    h.insert_header("Content-Length", body.len().to_string())?;
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
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
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_codes() {
        let p = error_page(404);
        assert!(std::str::from_utf8(&p)
            .unwrap()
            .contains("<title>404 Not Found</title>"));
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
