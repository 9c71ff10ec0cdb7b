//! Layer 4: TCP services (`--tcp-services-configmap`, ingress-nginx's stream proxy) on
//! pingress's own tokio listeners, since Pingora cannot add listeners at run time. The
//! listeners follow the published table: a port added to the ConfigMap opens, a port removed
//! closes (open connections keep going). Each connection takes the current table's endpoints
//! (round robin; a failed connect tries the next endpoint, up to 3 tries as
//! `proxy-stream-next-upstream-tries`), optionally reads a PROXY protocol header from the
//! client and sends one (v1) to the backend, then relays bytes until both sides close or no
//! byte moved for 600 s (nginx's `proxy_timeout`), and logs one line in ingress-nginx's
//! `log-format-stream`.
//!
//! UDP services (`--udp-services-configmap`): datagrams relayed per client flow (one upstream
//! socket per client address), each flow ending after its first answer (ingress-nginx's
//! `proxy-stream-responses: 1`) or 600 s without one; at most [`MAX_FLOWS`] flows at once (a
//! datagram that would open one more is dropped and counted), so a flood of clients cannot grow
//! memory without bound.

pub mod passthrough;
pub mod sni;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::edge::proxy_protocol::{self, Header};
use crate::publish::TableStore;
use crate::route::backend::Target;
use crate::route::l4::TcpService;

/// UDP flows open at once, per port.
pub const MAX_FLOWS: usize = 16 * 1024;

pub struct L4Service {
    pub store: TableStore,
    pub published: watch::Receiver<u64>,
    pub bind: IpAddr,
    /// pingress's own ports (HTTP, HTTPS, health): never taken by a TCP service.
    pub reserved: Vec<u16>,
}

#[async_trait]
impl BackgroundService for L4Service {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut open: HashMap<u16, JoinHandle<()>> = HashMap::new();
        let mut open_udp: HashMap<u16, JoinHandle<()>> = HashMap::new();
        let mut published = self.published.clone();
        loop {
            self.sync(&mut open).await;
            self.sync_udp(&mut open_udp).await;
            tokio::select! {
                r = published.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for (_, task) in open.into_iter().chain(open_udp) {
            task.abort();
        }
    }
}

impl L4Service {
    /// Open the listeners the table has and the map lacks, close the others.
    async fn sync(&self, open: &mut HashMap<u16, JoinHandle<()>>) {
        let table = self.store.load_full();
        let wanted: Vec<u16> = table.tcp.iter().map(|t| t.port).collect();
        open.retain(|port, task| {
            let keep = wanted.contains(port);
            if !keep {
                task.abort();
                tracing::info!(port, "TCP service removed: listener closed");
            }
            keep
        });
        for port in wanted {
            if open.contains_key(&port) {
                continue;
            }
            if self.reserved.contains(&port) {
                tracing::warn!(
                    port,
                    "TCP service port is one of pingress's own listeners; entry not served"
                );
                continue;
            }
            let addr = SocketAddr::new(self.bind, port);
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "TCP service listening");
                    let store = self.store.clone();
                    open.insert(port, tokio::spawn(accept_loop(l, port, store)));
                }
                // tried again on the next publish
                Err(e) => tracing::warn!(%addr, error = %e, "TCP service: cannot listen"),
            }
        }
    }
}

impl L4Service {
    /// The UDP side of [`L4Service::sync`].
    async fn sync_udp(&self, open: &mut HashMap<u16, JoinHandle<()>>) {
        let table = self.store.load_full();
        let wanted: Vec<u16> = table.udp.iter().map(|t| t.port).collect();
        open.retain(|port, task| {
            let keep = wanted.contains(port);
            if !keep {
                task.abort();
                tracing::info!(port, "UDP service removed: socket closed");
            }
            keep
        });
        for port in wanted {
            if open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.bind, port);
            match UdpSocket::bind(addr).await {
                Ok(sock) => {
                    tracing::info!(%addr, "UDP service listening");
                    let store = self.store.clone();
                    open.insert(port, tokio::spawn(udp_loop(Arc::new(sock), port, store)));
                }
                Err(e) => tracing::warn!(%addr, error = %e, "UDP service: cannot listen"),
            }
        }
    }
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// Datagrams from clients: each client address is one flow with its own upstream socket.
async fn udp_loop(sock: Arc<UdpSocket>, port: u16, store: TableStore) {
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            tokio::task::yield_now().await;
            continue;
        };
        let existing = flows.lock().ok().and_then(|f| f.get(&client).cloned());
        let upstream = match existing {
            Some(u) => u,
            None => {
                let full = flows.lock().map_or(true, |f| f.len() >= MAX_FLOWS);
                if full {
                    udp_count(port, "dropped");
                    continue;
                }
                let Some(u) = udp_connect(&store, port).await else {
                    udp_count(port, "failed");
                    continue;
                };
                let (idle, responses) = {
                    let t = store.load();
                    (t.config.stream.timeout, t.config.stream.responses)
                };
                let u = Arc::new(u);
                if let Ok(mut f) = flows.lock() {
                    f.insert(client, u.clone());
                }
                tokio::spawn(udp_answers(
                    sock.clone(),
                    u.clone(),
                    client,
                    flows.clone(),
                    port,
                    (idle, responses),
                ));
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// A socket connected to the next endpoint of the port's Service.
async fn udp_connect(store: &TableStore, port: u16) -> Option<UdpSocket> {
    let table = store.load_full();
    let svc = table.udp.iter().find(|t| t.port == port)?;
    let Target::Endpoints(eps) = &svc.backend.target else {
        return None;
    };
    let addr = eps.pick(&[]);
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let u = UdpSocket::bind(local).await.ok()?;
    u.connect(addr).await.ok()?;
    Some(u)
}

/// The upstream's answers back to `client`, until `responses` were relayed (0: no limit) or
/// `idle` passed without one; then the flow ends.
async fn udp_answers(
    sock: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Flows,
    port: u16,
    (idle, responses): (Duration, u32),
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut answered = 0u32;
    while responses == 0 || answered < responses {
        match tokio::time::timeout(idle, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let _ = sock.send_to(&buf[..n], client).await;
                answered += 1;
            }
            _ => break,
        }
    }
    udp_count(
        port,
        if answered > 0 {
            "answered"
        } else {
            "unanswered"
        },
    );
    if let Ok(mut f) = flows.lock() {
        if f.get(&client).is_some_and(|u| Arc::ptr_eq(u, &upstream)) {
            f.remove(&client);
        }
    }
}

fn udp_count(port: u16, result: &str) {
    crate::metrics::CONNECTIONS
        .udp_services
        .with_label_values(&[port.to_string().as_str(), result])
        .inc();
}

async fn accept_loop(listener: TcpListener, port: u16, store: TableStore) {
    loop {
        match listener.accept().await {
            Ok((conn, peer)) => {
                let store = store.clone();
                tokio::spawn(async move { serve(conn, peer, port, store).await });
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "TCP service accept failed");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// One client connection, from the PROXY header to the log line.
async fn serve(mut client: TcpStream, peer: SocketAddr, port: u16, store: TableStore) {
    let started = Instant::now();
    let table = store.load_full();
    let Some(svc) = table.tcp.iter().find(|t| t.port == port).cloned() else {
        return;
    };
    let mut source = peer;
    let mut early = Vec::new();
    if svc.decode_proxy {
        let limit = table.config.forwarded.proxy_protocol_header_timeout;
        match read_proxy(&mut client, limit).await {
            Ok((src, rest)) => {
                source = src.unwrap_or(peer);
                early = rest;
            }
            Err(why) => {
                tracing::info!(port, %peer, reason = %why, "TCP service: PROXY protocol header expected");
                return;
            }
        }
    }
    let policy = ConnectPolicy::of(&table.config);
    let idle = table.config.stream.timeout;
    let logf = StreamLog::of(&table.config);
    drop(table);
    let Some((mut upstream, addr)) = connect_backend(&svc.backend, policy, &svc.target).await
    else {
        log(&logf, source, port, 502, (0, 0), started, &svc, None);
        return;
    };
    let local = client
        .local_addr()
        .unwrap_or(SocketAddr::new(source.ip(), port));
    let mut head = Vec::new();
    if svc.encode_proxy {
        head.extend_from_slice(proxy_v1(source, local).as_bytes());
    }
    head.extend_from_slice(&early);
    if !head.is_empty() && upstream.write_all(&head).await.is_err() {
        log(&logf, source, port, 502, (0, 0), started, &svc, Some(addr));
        return;
    }
    let (sent, received) = relay(&mut client, &mut upstream, idle).await;
    let bytes = (sent, received + early.len() as u64);
    log(&logf, source, port, 200, bytes, started, &svc, Some(addr));
}

/// How a stream connection reaches its backend (ConfigMap `proxy-connect-timeout` per try,
/// `proxy-stream-next-upstream*`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectPolicy {
    pub per_try: Duration,
    /// Endpoints tried at most (0: all of them).
    pub tries: usize,
    /// All the tries together (zero: unbounded).
    pub total: Duration,
}

impl ConnectPolicy {
    pub fn of(cfg: &crate::configmap::ControllerConfig) -> ConnectPolicy {
        let s = &cfg.stream;
        ConnectPolicy {
            per_try: Duration::from_secs(cfg.proxy_connect_timeout.max(1)),
            tries: if s.next_upstream {
                s.next_upstream_tries as usize
            } else {
                1
            },
            total: s.next_upstream_timeout,
        }
    }
}

/// The backend connection: the next endpoint (round robin) until one accepts, as `policy`
/// allows (`what` names the service in logs).
pub(crate) async fn connect_backend(
    backend: &crate::route::Backend,
    policy: ConnectPolicy,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    let Target::Endpoints(eps) = &backend.target else {
        return None;
    };
    let started = tokio::time::Instant::now();
    let tries = match policy.tries {
        0 => eps.addrs().len(),
        n => n.min(eps.addrs().len()),
    };
    let mut tried = Vec::new();
    for _ in 0..tries {
        if !policy.total.is_zero() && started.elapsed() >= policy.total {
            break;
        }
        let addr = eps.pick(&tried);
        tried.push(addr);
        match tokio::time::timeout(policy.per_try, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some((s, addr));
            }
            Ok(Err(e)) => tracing::info!(%what, %addr, error = %e, "connect failed, next endpoint"),
            Err(_) => tracing::info!(%what, %addr, "connect timed out, next endpoint"),
        }
    }
    None
}

/// A PROXY protocol header (v1 or v2) from the client: its source, and the bytes read after it.
async fn read_proxy(
    client: &mut TcpStream,
    limit: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        match proxy_protocol::parse(&buf) {
            Header::Done { len, source, .. } => return Ok((source, buf.split_off(len))),
            Header::Invalid(why) => return Err(why.into()),
            Header::Incomplete if buf.len() > proxy_protocol::V2_MAX => {
                return Err("PROXY protocol header too long".into())
            }
            Header::Incomplete => {}
        }
        match tokio::time::timeout_at(deadline, client.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("closed before a PROXY protocol header".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no PROXY protocol header in time".into()),
        }
    }
}

/// nginx's `proxy_protocol on` (version 1): `PROXY TCP4 src dst sport dport`.
pub fn proxy_v1(source: SocketAddr, dest: SocketAddr) -> String {
    let family = if source.is_ipv4() && dest.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match (family, a.ip()) {
        ("TCP6", IpAddr::V4(v4)) => v4.to_ipv6_mapped().to_string(),
        (_, ip) => ip.to_string(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        ip(source),
        ip(dest),
        source.port(),
        dest.port()
    )
}

/// Copy both ways until both sides closed, or nothing moved for `idle`. (bytes to the client,
/// bytes from the client)
pub(crate) async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> (u64, u64) {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        tokio::select! {
            r = cr.read(&mut from_client), if client_open => match r {
                Ok(n) if n > 0 => {
                    if uw.write_all(&from_client[..n]).await.is_err() {
                        break;
                    }
                    received += n as u64;
                }
                _ => {
                    client_open = false;
                    let _ = uw.shutdown().await;
                }
            },
            r = ur.read(&mut from_upstream), if upstream_open => match r {
                Ok(n) if n > 0 => {
                    if cw.write_all(&from_upstream[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                }
                _ => {
                    upstream_open = false;
                    let _ = cw.shutdown().await;
                }
            },
            _ = tokio::time::sleep(idle) => break,
        }
    }
    (sent, received)
}

/// `log-format-stream` as the ConfigMap sets it (`None`: `disable-stream-access-log`).
pub(crate) struct StreamLog(Option<std::sync::Arc<str>>);

impl StreamLog {
    pub fn of(cfg: &crate::configmap::ControllerConfig) -> StreamLog {
        StreamLog((!cfg.stream.disable_access_log).then(|| cfg.stream.log_format.clone()))
    }
}

/// One stream connection, as its log line sees it.
pub(crate) struct StreamEnd<'a> {
    pub client: SocketAddr,
    pub server_port: u16,
    pub protocol: &'a str,
    pub status: u16,
    /// (to the client, from the client)
    pub bytes: (u64, u64),
    pub started: Instant,
    pub upstream: Option<SocketAddr>,
}

#[allow(clippy::too_many_arguments)]
fn log(
    logf: &StreamLog,
    client: SocketAddr,
    port: u16,
    status: u16,
    bytes: (u64, u64),
    started: Instant,
    svc: &TcpService,
    upstream: Option<SocketAddr>,
) {
    crate::metrics::CONNECTIONS
        .tcp_services
        .with_label_values(&[
            port.to_string().as_str(),
            if status == 200 { "relayed" } else { "failed" },
        ])
        .inc();
    tracing::debug!(port, target = %svc.target, upstream = ?upstream, "TCP service connection ended");
    logf.write(&StreamEnd {
        client,
        server_port: port,
        protocol: "TCP",
        status,
        bytes,
        started,
        upstream,
    });
}

impl StreamLog {
    /// One line on stdout.
    pub fn write(&self, e: &StreamEnd<'_>) {
        if let Some(f) = &self.0 {
            println!("{}", render(f, e));
        }
    }
}

/// nginx's stream variables in `format` (an unknown variable prints `-`).
pub(crate) fn render(format: &str, e: &StreamEnd<'_>) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let now = || jiff::Zoned::now();
        match name {
            "remote_addr" => out.push_str(&e.client.ip().to_string()),
            "remote_port" => out.push_str(&e.client.port().to_string()),
            "server_port" => out.push_str(&e.server_port.to_string()),
            "time_local" => out.push_str(&now().strftime("%d/%b/%Y:%H:%M:%S %z").to_string()),
            "time_iso8601" => out.push_str(&now().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()),
            "protocol" => out.push_str(e.protocol),
            "status" => out.push_str(&e.status.to_string()),
            "bytes_sent" => out.push_str(&e.bytes.0.to_string()),
            "bytes_received" => out.push_str(&e.bytes.1.to_string()),
            "session_time" => out.push_str(&format!("{:.3}", e.started.elapsed().as_secs_f64())),
            "upstream_addr" => match e.upstream {
                Some(a) => out.push_str(&a.to_string()),
                None => out.push('-'),
            },
            "" => out.push('$'),
            _ => out.push('-'),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_stream_variables() {
        let e = StreamEnd {
            client: "10.0.0.1:5000".parse().unwrap(),
            server_port: 9000,
            protocol: "TCP",
            status: 200,
            bytes: (10, 20),
            started: Instant::now(),
            upstream: Some("10.1.0.1:80".parse().unwrap()),
        };
        let line = render(crate::configmap::DEFAULT_LOG_FORMAT_STREAM, &e);
        assert!(line.starts_with("[10.0.0.1] ["), "{line}");
        assert!(line.contains("] TCP 200 10 20 0.0"), "{line}");
        assert_eq!(
            render("$remote_addr:$remote_port $upstream_addr $nope $", &e),
            "10.0.0.1:5000 10.1.0.1:80 - $"
        );
    }

    #[test]
    fn proxy_v1_lines() {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:9000".parse().unwrap();
        assert_eq!(proxy_v1(a, b), "PROXY TCP4 10.0.0.1 10.0.0.2 5000 9000\r\n");
        let c: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(proxy_v1(c, b), "PROXY TCP6 ::1 ::ffff:10.0.0.2 1 9000\r\n");
    }
}
