//! `proxy-body-size` before the upstream is contacted. Invariant: a request body is never
//! altered: every byte reaches the upstream in order, or the request is refused (413) or
//! aborted on both sides; nothing read here is lost (Pingora replays its retry buffer). A body
//! without Content-Length past what is checked here is counted as it streams
//! (`request_body_filter`).

use pingora::proxy::Session;
use pingora::Result;

use crate::route::Route;

/// What the request phase does with the body before the upstream is contacted.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Over `proxy-body-size`: answer 413 and close.
    TooLarge,
    /// Proxy it; `continued`: pingress answered `Expect: 100-continue` (not to be forwarded).
    Proxy { continued: bool },
}

/// nginx's order: a Content-Length over the limit is refused first (413, no 100 Continue);
/// then the body will be read, so `Expect: 100-continue` is answered; then a small limit is
/// checked by reading ahead. `limit` 0 = unlimited.
pub async fn admit(session: &mut Session, limit: u64, route: &Route) -> Result<Admission> {
    if limit > 0 && declared_too_large(session, limit) {
        return Ok(Admission::TooLarge);
    }
    let continued = answer_expect_continue(session).await?;
    if limit > 0 && small_body_too_large(session, limit, route).await? {
        return Ok(Admission::TooLarge);
    }
    Ok(Admission::Proxy { continued })
}

/// Whether the request's Content-Length is over `limit` (413 before the upstream is
/// contacted).
fn declared_too_large(session: &Session, limit: u64) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

/// Pingora's retry buffer (pingora-core `BODY_BUF_LIMIT`): what it replays to the upstream.
const RETRY_BUFFER: u64 = 64 * 1024;

/// For a limit the retry buffer can hold, a body without Content-Length is read ahead until it
/// ends or crosses the limit, so an over-limit body is refused before the upstream sees a
/// byte, as ingress-nginx's buffered requests are. Safe by construction: reading stops as soon
/// as the total passes the limit, so the buffer only overflows (and stops being replayable)
/// when the request is refused anyway; a body within the limit is replayed whole by Pingora.
/// Larger limits stream (counted in `request_body_filter`), and gRPC always streams.
async fn small_body_too_large(session: &mut Session, limit: u64, route: &Route) -> Result<bool> {
    if limit > RETRY_BUFFER
        || route.tls.upstream.protocol.h2()
        || session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH)
        || session.as_mut().is_body_empty()
        || session.as_mut().is_body_done()
    {
        return Ok(false);
    }
    session.as_mut().enable_retry_buffering();
    let mut total = 0u64;
    while let Some(b) = session.as_mut().read_request_body().await? {
        total += b.len() as u64;
        if total > limit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Answer `Expect: 100-continue` of an HTTP/1.1 request whose body is about to be read (nginx
/// answers it itself rather than waiting for the upstream). `true` when answered.
async fn answer_expect_continue(session: &mut Session) -> Result<bool> {
    let expects = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects || session.as_mut().is_http2() || session.as_mut().is_body_done() {
        return Ok(false);
    }
    session.as_mut().write_continue_response().await?;
    Ok(true)
}
