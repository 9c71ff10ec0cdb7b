//! Connection level, before any HTTP parsing (DESIGN.md step 0): every new plain-text
//! connection gets a deadline for its first bytes.
//!
//! Pingora decides between HTTP/1 and h2c prior knowledge by peeking 24 bytes with no time
//! limit, so a connection that sends nothing, or a request shorter than the h2 preface
//! (`GET / HTTP/1.0\r\n\r\n`), was held forever. [`Edge`] reads the first bytes itself, only as
//! long as they can still be the preface and at most until `client-header-timeout`, puts them
//! back, and hands the connection to Pingora's h2 path or straight to its HTTP/1 loop (no
//! second peek). TLS connections go to Pingora unchanged (ALPN decides).
//!
//! With `use-proxy-protocol`, the PROXY protocol header comes first on both listeners
//! ([`proxy_protocol`]; on the TLS listener before the handshake, through Pingora's pre-TLS
//! callback, [`ProxyProtocolBeforeTls`]).

pub mod proxy_protocol;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::proxy::Proxy;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection-level settings, read once at start (ingress-nginx ConfigMap names).
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    /// `client-header-timeout`: the first bytes of a new connection must arrive within it.
    pub client_header_timeout: Duration,
    /// `keep-alive` (seconds, 0 = off): idle time before the first request of a new HTTP/1
    /// connection, as Pingora's own loop uses.
    pub keep_alive: u64,
    /// `keep-alive-requests`: requests served on one HTTP/1 connection.
    pub keep_alive_requests: u32,
    /// Client connections open at once, plain and TLS (`max-worker-connections` x proxy
    /// threads; 0 = no cap). Over it a new connection is closed at once.
    pub max_connections: usize,
    /// `use-proxy-protocol`: the peers whose PROXY header source is believed
    /// (`proxy-real-ip-cidr`); `None`: off.
    pub proxy_protocol: Option<Arc<crate::annotations::access::IpSet>>,
    /// `proxy-protocol-header-timeout`: time for the whole PROXY header.
    pub proxy_protocol_timeout: Duration,
}

/// The PROXY protocol header before a TLS handshake (Pingora's pre-TLS callback).
pub struct ProxyProtocolBeforeTls {
    pub timeout: Duration,
    pub trusted: Arc<crate::annotations::access::IpSet>,
}

#[async_trait]
impl pingora::listeners::PreTlsProcess for ProxyProtocolBeforeTls {
    async fn process(&self, stream: &mut TcpStream) -> pingora::Result<()> {
        proxy_protocol::accept(stream, self.timeout, &self.trusted)
            .await
            .map_err(|why| {
                tracing::info!(reason = %why, "TLS connection closed: PROXY protocol header expected (use-proxy-protocol)");
                pingora::Error::explain(pingora::ErrorType::AcceptError, why)
            })
    }
}

/// The proxy app behind a bounded protocol detection.
pub struct Edge {
    proxy: Arc<HttpProxy<Proxy>>,
    settings: EdgeSettings,
    open: Arc<AtomicUsize>,
    /// Unix second of the last "connection cap reached" log line (one a second at most).
    last_cap_log: AtomicU64,
}

impl Edge {
    pub fn new(proxy: HttpProxy<Proxy>, settings: EdgeSettings) -> Self {
        Edge {
            proxy: Arc::new(proxy),
            settings,
            open: Arc::new(AtomicUsize::new(0)),
            last_cap_log: AtomicU64::new(0),
        }
    }

    /// Count a new connection; `None` when it is over the cap (it must be closed).
    fn admit(&self) -> Option<OpenConn> {
        let m = &crate::metrics::CONNECTIONS;
        m.total.with_label_values(&["accepted"]).inc();
        let n = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = OpenConn(self.open.clone());
        let cap = self.settings.max_connections;
        if cap > 0 && n > cap {
            m.total.with_label_values(&["refused"]).inc();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if self.last_cap_log.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(
                    open = n - 1,
                    cap,
                    "connection cap reached (max-worker-connections x threads): new client connections are closed at once"
                );
            }
            drop(conn);
            return None;
        }
        m.total.with_label_values(&["handled"]).inc();
        m.open.with_label_values(&["active"]).set(n as f64);
        Some(conn)
    }
}

/// One open client connection, counted until dropped.
struct OpenConn(Arc<AtomicUsize>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        crate::metrics::CONNECTIONS
            .open
            .with_label_values(&["active"])
            .set(n as f64);
    }
}

/// What the first bytes of a plain connection say.
#[derive(Debug, PartialEq, Eq)]
enum FirstBytes {
    /// The full h2 preface.
    H2c,
    /// Anything else (decided as soon as a byte differs from the preface).
    Http1,
    /// Closed, failed or timed out before a decision: drop the connection.
    Gone,
}

/// Read into `seen` until it is the preface or cannot become it, within `limit`.
async fn sniff(stream: &mut TcpStream, seen: &mut Vec<u8>, limit: Duration) -> FirstBytes {
    let deadline = tokio::time::Instant::now() + limit;
    let mut chunk = [0u8; H2_PREFACE.len()];
    loop {
        if !H2_PREFACE.starts_with(seen) {
            return FirstBytes::Http1;
        }
        if seen.len() == H2_PREFACE.len() {
            return FirstBytes::H2c;
        }
        let want = H2_PREFACE.len() - seen.len();
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return FirstBytes::Gone,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

#[async_trait]
impl ServerApp for Edge {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _counted = self.admit()?;
        // The HTTP futures are boxed: their state (tens of KiB) is then allocated when the first
        // bytes arrive, not held by every connection that is still silent.
        if stream.get_ssl_digest().is_some() {
            return Box::pin(self.proxy.process_new(stream, shutdown)).await;
        }
        let mut tcp = match stream.into_any().downcast::<TcpStream>() {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!("plain connection of an unexpected stream type; closed");
                return None;
            }
        };
        if let Some(trusted) = &self.settings.proxy_protocol {
            let limit = self.settings.proxy_protocol_timeout;
            if let Err(why) = proxy_protocol::accept(&mut tcp, limit, trusted).await {
                tracing::info!(reason = %why, "connection closed: PROXY protocol header expected (use-proxy-protocol)");
                return None;
            }
        }
        let mut seen = Vec::with_capacity(H2_PREFACE.len());
        let first = sniff(&mut tcp, &mut seen, self.settings.client_header_timeout).await;
        tcp.rewind(&seen);
        let stream: Stream = tcp;
        match first {
            FirstBytes::Gone => None,
            // Pingora's h2 path peeks again: the preface is already there, so it returns at once
            FirstBytes::H2c => Box::pin(self.proxy.process_new(stream, shutdown)).await,
            FirstBytes::Http1 => {
                Box::pin(self.serve_http1(stream, shutdown)).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl Edge {
    /// Pingora's HTTP/1 keep-alive loop (pingora-core `apps` `process_new`), without its peek.
    async fn serve_http1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let mut session = ServerSession::new_http1(stream);
        if *shutdown.borrow() || self.settings.keep_alive == 0 {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(self.settings.keep_alive));
        }
        session.set_keepalive_reuses_remaining(Some(self.settings.keep_alive_requests));
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, persistent)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(p) = persistent {
                p.apply_to_session(&mut session);
            }
            result = self.proxy.process_new_http(session, shutdown).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The server side of a real loopback connection, and its client.
    async fn pair() -> (TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = l.accept().await.unwrap();
        (TcpStream::from(server), client)
    }

    #[tokio::test]
    async fn first_bytes_decide_without_waiting_for_24() {
        let long = Duration::from_secs(10);
        // a request shorter than the preface is HTTP/1 at its first byte
        let (mut s, mut c) = pair().await;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut seen = Vec::new();
        assert_eq!(sniff(&mut s, &mut seen, long).await, FirstBytes::Http1);
        // what was read is put back for the HTTP parser
        s.rewind(&seen);
        let mut all = vec![0u8; 18];
        s.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"GET / HTTP/1.0\r\n\r\n");
        // the preface, in two writes
        let (mut s, mut c) = pair().await;
        c.write_all(&H2_PREFACE[..10]).await.unwrap();
        c.flush().await.unwrap();
        c.write_all(&H2_PREFACE[10..]).await.unwrap();
        let mut seen = Vec::new();
        assert_eq!(sniff(&mut s, &mut seen, long).await, FirstBytes::H2c);
        assert_eq!(seen, H2_PREFACE);
    }

    #[tokio::test]
    async fn silence_or_a_stalled_preface_ends_at_the_deadline() {
        let short = Duration::from_millis(200);
        let (mut s, _c) = pair().await;
        let started = tokio::time::Instant::now();
        assert_eq!(
            sniff(&mut s, &mut Vec::new(), short).await,
            FirstBytes::Gone
        );
        assert!(started.elapsed() >= short);
        let (mut s, mut c) = pair().await;
        c.write_all(b"PRI * HT").await.unwrap();
        assert_eq!(
            sniff(&mut s, &mut Vec::new(), short).await,
            FirstBytes::Gone
        );
        // a client that closes before a decision
        let (mut s, c) = pair().await;
        drop(c);
        assert_eq!(
            sniff(&mut s, &mut Vec::new(), short).await,
            FirstBytes::Gone
        );
    }
}
