//! ModSecurity's phases for one request, where ModSecurity-nginx runs them: request line and
//! headers after the location is chosen (nginx's rewrite phase), the request body once it is
//! whole (preaccess, before limits and authentication), response headers before anything is
//! sent to the client, the response body as it passes, logging at the end. An intervention in a
//! request phase is answered before the upstream is contacted.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::body::Buffered;
use crate::route::WafPolicy;
use crate::waf::{Intervention, RequestHead, Tx};

/// The transaction of a request and what its interventions said (for the access log).
#[derive(Default)]
pub struct WafState {
    pub tx: Option<Tx>,
    /// `$modsecurity_rule_id` / `$modsecurity_msg`: the intervention's rule.
    pub rule_id: Option<String>,
    pub msg: Option<String>,
    /// The request body still has to be inspected as it streams (not buffered: gRPC).
    pub body_streams: bool,
}

impl WafState {
    fn note(&mut self, it: &Intervention) {
        if let Some(log) = &it.log {
            tracing::warn!(target: "modsecurity", "{log}");
            let (id, msg) = crate::waf::rule_id_and_msg(log);
            self.rule_id = id.map(str::to_string);
            self.msg = msg.map(str::to_string);
        }
    }
}

/// The error that ends a request for an intervention after its head was read (Pingora then
/// answers the status, or ends a response already started).
fn intervene(state: &mut WafState, it: Option<Intervention>, what: &str) -> Result<()> {
    match it {
        Some(i) => {
            state.note(&i);
            Error::e_explain(
                ErrorType::HTTPStatus(answer(&i).0),
                format!("ModSecurity intervention {what}"),
            )
        }
        None => Ok(()),
    }
}

/// How the client is answered for an intervention: its status, or a redirect (ModSecurity-nginx:
/// the intervention's 301/302/303/307, else 302).
pub fn answer(it: &Intervention) -> (u16, Option<&str>) {
    match &it.url {
        Some(url) => {
            let code = if matches!(it.status, 301 | 302 | 303 | 307) {
                it.status
            } else {
                302
            };
            (code, Some(url.as_str()))
        }
        None => (it.status, None),
    }
}

/// Phase 1: start the transaction with the connection, request line and headers.
pub fn request_head(
    session: &Session,
    w: &WafPolicy,
    state: &mut WafState,
    request_id: Option<&str>,
    view: &crate::annotations::template::RequestView<'_>,
) -> Option<Intervention> {
    let id = w.transaction_id.as_ref().map(|t| {
        let locals = crate::annotations::template::Locals {
            request_id: request_id.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let view = crate::annotations::template::RequestView {
            locals: Some(&locals),
            ..*view
        };
        t.expand(&view)
    });
    let Some(mut tx) = Tx::new(&w.rules, id.as_deref()) else {
        // never served uninspected
        return Some(Intervention {
            status: 503,
            url: None,
            log: Some("ModSecurity could not start a transaction".into()),
        });
    };
    let req = session.req_header();
    let client = session.client_addr().and_then(|a| a.as_inet());
    let server = session.server_addr().and_then(|a| a.as_inet());
    let client_ip = client.map(|a| a.ip().to_string()).unwrap_or_default();
    let server_ip = server.map(|a| a.ip().to_string()).unwrap_or_default();
    let head = RequestHead {
        client_ip: &client_ip,
        client_port: client.map_or(0, |a| a.port()),
        server_ip: &server_ip,
        server_port: server.map_or(0, |a| a.port()),
        uri: req.uri.path_and_query().map_or("/", |p| p.as_str()),
        method: req.method.as_str(),
        version: match req.version {
            http::Version::HTTP_2 => "2.0",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
    };
    let mut headers: Vec<(&[u8], &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
        .collect();
    // h2 carries the host in :authority; ModSecurity reads REQUEST_HEADERS:Host
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    if let (Some(a), false) = (authority, req.headers.contains_key(http::header::HOST)) {
        headers.push((b"Host", a));
    }
    let it = tx.request_head(&head, headers.into_iter());
    state.tx = Some(tx);
    if let Some(i) = &it {
        state.note(i);
    }
    it
}

/// Phase 2 over a body read whole (or no body at all).
pub async fn request_body(
    state: &mut WafState,
    body: Option<&Buffered>,
) -> Result<Option<Intervention>> {
    let Some(tx) = state.tx.as_mut() else {
        return Ok(None);
    };
    if let Some(b) = body {
        let mut reader = b.reader().await?;
        loop {
            let piece = reader.next().await.map_err(|e| {
                Error::because(
                    ErrorType::InternalError,
                    "reading the request body for ModSecurity",
                    e,
                )
            })?;
            let Some(piece) = piece else { break };
            if let Some(i) = tx.request_body_piece(&piece) {
                state.note(&i);
                return Ok(Some(i));
            }
        }
    }
    let it = tx.request_body_done();
    if let Some(i) = &it {
        state.note(i);
    }
    Ok(it)
}

/// Phase 2 for a body that streams to the upstream (not buffered): each piece as it passes;
/// an intervention aborts the request.
pub fn streamed_body_piece(state: &mut WafState, piece: Option<&Bytes>, end: bool) -> Result<()> {
    if !state.body_streams {
        return Ok(());
    }
    let Some(tx) = state.tx.as_mut() else {
        return Ok(());
    };
    let mut it = piece.and_then(|p| tx.request_body_piece(p));
    if it.is_none() && end {
        state.body_streams = false;
        it = tx.request_body_done();
    }
    intervene(state, it, "in the request body")
}

/// Phase 3: an intervention replaces the response (nothing has been sent yet).
pub fn response_head(state: &mut WafState, resp: &ResponseHeader) -> Result<()> {
    let Some(tx) = state.tx.as_mut() else {
        return Ok(());
    };
    let headers = resp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()));
    let it = tx.response_head(resp.status.as_u16(), "HTTP 1.1", headers);
    intervene(state, it, "in the response head")
}

/// Phase 4: the response body as it passes; an intervention (the head is already sent) ends
/// the response early, as ModSecurity-nginx does.
pub fn response_body(state: &mut WafState, piece: Option<&Bytes>, end: bool) -> Result<()> {
    let Some(tx) = state.tx.as_mut() else {
        return Ok(());
    };
    let mut it = piece
        .filter(|p| !p.is_empty())
        .and_then(|p| tx.response_body_piece(p));
    if it.is_none() && end {
        it = tx.response_body_done();
    }
    intervene(state, it, "in the response body")
}

/// Phase 5: the audit log entry, with the status the client got.
pub fn logging(state: &mut WafState, status: u16) {
    if let Some(tx) = state.tx.as_mut() {
        tx.logging(status);
    }
}
