//! SSL passthrough (`--enable-ssl-passthrough` + `ssl-passthrough: "true"`): one front door on
//! the HTTPS port. Before Pingora's TLS handshake (its pre-TLS callback) the ClientHello is read
//! (bounded in size and time) and its server name looked up in the table: a passthrough host's
//! connection is handed, bytes untouched and the peeked ones first, to a relay task towards the
//! backend of the host's `/` path; any other name, no name or not TLS at all is put back and
//! terminated by Pingora as usual, in process (no second hop).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::GetSocketDigest;
use pingora::{Error, ErrorType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sni::{self, Hello};
use crate::publish::TableStore;
use crate::route::Backend;

pub struct Passthrough {
    pub store: TableStore,
    /// `use-proxy-protocol`: the PROXY header comes before the ClientHello.
    pub proxy_protocol: Option<crate::edge::ProxyProtocolBeforeTls>,
    /// Time for the whole ClientHello (`client-header-timeout`).
    pub hello_timeout: Duration,
}

fn closed(why: &str) -> Box<Error> {
    Error::explain(ErrorType::AcceptError, why.to_string())
}

#[async_trait]
impl pingora::listeners::PreTlsProcess for Passthrough {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if let Some(pp) = &self.proxy_protocol {
            pp.process(stream).await?;
        }
        let table = self.store.load_full();
        if table.passthrough.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.hello_timeout;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let name = loop {
            match sni::parse(&buf) {
                Hello::Done(name) => break name,
                // not TLS: put it back, rustls answers it
                Hello::NotTls => {
                    stream.rewind(&buf);
                    return Ok(());
                }
                Hello::Incomplete => {}
            }
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(closed("closed before a whole ClientHello")),
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(closed(&e.to_string())),
                Err(_) => return Err(closed("no whole ClientHello within client-header-timeout")),
            }
        };
        let found = name
            .as_deref()
            .and_then(|n| table.passthrough.get(n).map(|b| (n.to_string(), b.clone())));
        let Some((host, backend)) = found else {
            stream.rewind(&buf);
            return Ok(());
        };
        let policy = super::ConnectPolicy::of(&table.config);
        let idle = table.config.stream.timeout;
        let logf = super::StreamLog::of(&table.config);
        let server_port = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
            .and_then(|a| a.as_inet().map(|a| a.port()))
            .unwrap_or(0);
        drop(table);
        // bytes Pingora's read buffer already holds (TLS 1.3 early data) go first as well
        loop {
            match tokio::time::timeout(Duration::ZERO, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .and_then(|a| a.as_inet().copied());
        // SAFETY: the descriptor belongs to `stream`, which is alive for this call; it is only
        // duplicated here (dup with close-on-exec), never closed or taken.
        let owned = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| closed(&e.to_string()))?;
        let std_tcp = std::net::TcpStream::from(owned);
        std_tcp
            .set_nonblocking(true)
            .map_err(|e| closed(&e.to_string()))?;
        let client = TcpStream::from_std(std_tcp).map_err(|e| closed(&e.to_string()))?;
        let conn = Conn {
            host,
            peer,
            server_port,
            policy,
            idle,
            logf,
        };
        tokio::spawn(async move { relay(client, buf, backend, conn).await });
        // Pingora drops its copy of the socket (carried patch 13 logs this at debug)
        Err(Error::explain(
            ErrorType::Custom(pingora::services::listening::HANDED_OFF),
            "ssl-passthrough",
        ))
    }
}

/// What a passed-through connection's relay needs.
struct Conn {
    host: String,
    peer: Option<SocketAddr>,
    server_port: u16,
    policy: super::ConnectPolicy,
    idle: Duration,
    logf: super::StreamLog,
}

/// The passed-through connection: to the backend's next endpoint (round robin, the next one
/// on a failed connect), the peeked bytes first, then both ways until closed or idle.
async fn relay(mut client: TcpStream, hello: Vec<u8>, backend: Arc<Backend>, c: Conn) {
    let started = Instant::now();
    let mut end = super::StreamEnd {
        client: c
            .peer
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        server_port: c.server_port,
        protocol: "SSL",
        status: 502,
        bytes: (0, 0),
        started,
        upstream: None,
    };
    let Some((mut upstream, addr)) = super::connect_backend(&backend, c.policy, &c.host).await
    else {
        c.logf.write(&end);
        return;
    };
    end.upstream = Some(addr);
    if upstream.write_all(&hello).await.is_err() {
        c.logf.write(&end);
        return;
    }
    let (sent, received) = super::relay(&mut client, &mut upstream, c.idle).await;
    tracing::debug!(host = %c.host, upstream = %addr, "ssl-passthrough connection ended");
    end.status = 200;
    end.bytes = (sent, received + hello.len() as u64);
    c.logf.write(&end);
}
