//! TCP services (`--tcp-services-configmap`): ports pingress listens on beside HTTP, each
//! relayed byte for byte to the ready endpoints of a Service (ingress-nginx's stream proxy).

use std::sync::Arc;

use super::Backend;

#[derive(Debug)]
pub struct TcpService {
    pub port: u16,
    /// The entry's target as written, `ns/svc:port` (logs).
    pub target: Box<str>,
    pub backend: Arc<Backend>,
    /// `ns/svc:port:PROXY`: the client's connection starts with a PROXY protocol header,
    /// whose source becomes the client address (nginx `listen ... proxy_protocol`).
    pub decode_proxy: bool,
    /// `ns/svc:port::PROXY`: a PROXY protocol v1 header is sent to the backend first
    /// (nginx `proxy_protocol on`).
    pub encode_proxy: bool,
}
