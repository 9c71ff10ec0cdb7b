//! Where pingress's own requests to a URL go (the external auth subrequest, mirror copies):
//! a watched Service's ready endpoints, or the URL's host resolved by DNS.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;
use pingora::prelude::HttpPeer;

use crate::route::{Target, UrlTarget};

/// The address of `host:port` for `target`.
pub async fn addr(target: &UrlTarget, host: &str, port: u16) -> Result<SocketAddr, String> {
    match target {
        UrlTarget::Service(b) => match &b.target {
            Target::Endpoints(e) => Ok(e.pick(&[])),
            Target::ExternalName { host, port } => lookup(host, *port).await,
            Target::Unavailable | Target::NotFound => {
                Err(format!("Service {} has no ready endpoints", b.name))
            }
        },
        UrlTarget::Dns => lookup(host.trim_start_matches('[').trim_end_matches(']'), port).await,
    }
}

async fn lookup(host: &str, port: u16) -> Result<SocketAddr, String> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut a) => a.next().ok_or_else(|| "resolved to nothing".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The timeouts of one subrequest (the route's proxy-*-timeout).
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

/// The peer of a subrequest. nginx does not verify the certificate of an auth service or a
/// mirror by default (`proxy_ssl_verify off`), and neither does this.
pub fn peer(addr: SocketAddr, tls: bool, host: &str, t: &Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, tls, host.to_string());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    peer.options.verify_cert = false;
    peer.options.verify_hostname = false;
    peer
}

/// Hop-by-hop and body headers the subrequest does not pass on.
pub fn skipped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "proxy-connection"
            | "x-forwarded-proto"
    )
}
