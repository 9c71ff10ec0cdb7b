//! `--tcp-services-configmap`: ingress-nginx's entries `"PORT": "ns/svc:port[:PROXY[:PROXY]]"`
//! parsed into [`TcpService`]s over the watched endpoints. A bad entry is skipped with a
//! Warning on the ConfigMap; the others keep working.

use std::sync::Arc;

use super::backend::{PortRef, Resolver};
use crate::diagnostics::{Diagnostic, ObjectRef};
use crate::route::l4::TcpService;
use crate::settings::CompileSettings;
use crate::snapshot::Snapshot;

/// One entry's value, parsed: (namespace, service, port, decode PROXY, encode PROXY).
pub fn parse_entry(value: &str) -> Result<(String, String, PortRef, bool, bool), String> {
    let parts: Vec<&str> = value.trim().split(':').collect();
    if parts.len() < 2 || parts.len() > 4 {
        return Err(format!(
            "{value:?}: expected namespace/service:port[:PROXY[:PROXY]]"
        ));
    }
    let (ns, svc) = parts[0]
        .split_once('/')
        .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| format!("{value:?}: expected namespace/service before the port"))?;
    let port = match parts[1].parse::<i32>() {
        Ok(n) if (1..=65535).contains(&n) => PortRef::Number(n),
        Ok(_) => return Err(format!("{value:?}: the Service port is out of range")),
        Err(_) if !parts[1].is_empty() => PortRef::Name(parts[1].to_string()),
        Err(_) => return Err(format!("{value:?}: no Service port")),
    };
    let flag = |i: usize| -> Result<bool, String> {
        match parts.get(i) {
            None | Some(&"") => Ok(false),
            Some(p) if p.eq_ignore_ascii_case("PROXY") => Ok(true),
            Some(p) => Err(format!("{value:?}: {p:?} is not PROXY")),
        }
    };
    Ok((ns.to_string(), svc.to_string(), port, flag(2)?, flag(3)?))
}

/// The TCP and UDP services of the ConfigMaps `--tcp-services-configmap` and
/// `--udp-services-configmap` name, each by port.
pub fn stream_services(
    snap: &Snapshot,
    settings: &CompileSettings,
    resolver: &mut Resolver<'_>,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Arc<TcpService>>, Vec<Arc<TcpService>>) {
    let tcp = services(snap, settings.tcp_services.as_ref(), "tcp", resolver, diags);
    let udp = services(snap, settings.udp_services.as_ref(), "udp", resolver, diags);
    (tcp, udp)
}

/// The entries of one ConfigMap (`proto`: `tcp` or `udp`, in the upstream names).
fn services(
    snap: &Snapshot,
    configmap: Option<&(String, String)>,
    proto: &str,
    resolver: &mut Resolver<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Arc<TcpService>> {
    let Some((ns, name)) = configmap else {
        return Vec::new();
    };
    let Some(cm) = snap.config_maps.get(&(ns.clone(), name.clone())) else {
        return Vec::new();
    };
    let object = ObjectRef::new("ConfigMap", ns, name);
    let mut out = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        let port = match key.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                diags.push(Diagnostic::warning(
                    object.clone(),
                    "InvalidStreamService",
                    format!("{key:?} is not a port (1-65535); entry skipped"),
                ));
                continue;
            }
        };
        let (sns, svc, port_ref, decode_proxy, encode_proxy) = match parse_entry(value) {
            Ok(e) => e,
            Err(why) => {
                diags.push(Diagnostic::warning(
                    object.clone(),
                    "InvalidStreamService",
                    format!("port {port}: {why}; entry skipped"),
                ));
                continue;
            }
        };
        let upstream = format!("{proto}-{sns}-{svc}-{port}");
        let (backend, degraded) = resolver.resolve(&sns, &svc, &port_ref, Some(&upstream));
        if let Some(d) = degraded {
            diags.push(Diagnostic::warning(
                object.clone(),
                d.reason,
                format!("port {port}: {}", d.message),
            ));
        }
        let target = value.split(':').take(2).collect::<Vec<_>>().join(":");
        out.push(Arc::new(TcpService {
            port,
            target: target.into(),
            backend,
            decode_proxy,
            encode_proxy,
        }));
    }
    out.sort_by_key(|t| t.port);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_as_ingress_nginx() {
        let (ns, svc, port, d, e) = parse_entry("default/echo:8080").unwrap();
        assert_eq!(
            (ns.as_str(), svc.as_str(), d, e),
            ("default", "echo", false, false)
        );
        assert!(matches!(port, PortRef::Number(8080)));
        let (.., d, e) = parse_entry("default/echo:8080:PROXY").unwrap();
        assert!(d && !e);
        let (.., d, e) = parse_entry("default/echo:8080::PROXY").unwrap();
        assert!(!d && e);
        let (.., d, e) = parse_entry("default/echo:db:proxy:PROXY").unwrap();
        assert!(d && e);
        for bad in [
            "echo:80",
            "default/echo",
            "default/echo:0",
            "a/b:1:X",
            "a/b:1:2:3:4",
            "/x:1",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
    }
}
