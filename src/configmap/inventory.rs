//! Every key of ingress-nginx's controller ConfigMap (its `config.go` `Configuration`, the
//! `defaults.Backend` it embeds, and the keys `template/configmap.go` reads itself), with what
//! pingress does with it. The README's ConfigMap table is generated from here, and a key that
//! pingress does not read gets a diagnostic saying which of the two cases it is:
//!
//! - **not applicable**: tunes something nginx has and pingress does not (worker processes, hash
//!   table sizes, log files): there is nothing to observe, so nothing to do; the reason says where
//!   the equivalent lives, if anywhere;
//! - **not yet**: a behaviour a user can observe that pingress does not implement yet.
//!
//! Keys pingress reads are the `KEYS` lists of [`super`] and [`super::tls`].

/// What pingress does with a ConfigMap key it does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Tunes nginx itself; the reason says why there is nothing to do (or where the
    /// equivalent is).
    NotApplicable(&'static str),
    /// Observable, not implemented yet; the note says what is missing or where it is tracked.
    NotYet(&'static str),
}

use Unread::{NotApplicable as Na, NotYet as Ny};

const HASH: &str = "sizes an nginx hash table; pingress's tables need no tuning";
const LOGFILE: &str =
    "logs go to stdout (access log) and stderr (process log), as containers expect";
const SNIPPET: &str = "not run yet: the typed snippet subset covers server-snippet and location-snippet (ConfigMap) and the configuration-snippet and server-snippet annotations";
const OTEL: &str = "OpenTelemetry tracing is not implemented yet";
const NO_EFFECT: &str =
    "ingress-nginx reads this key but applies it nowhere (only the annotation takes effect); the annotation is supported";

/// The ingress-nginx keys pingress does not read, in alphabetical order.
pub const UNREAD: &[(&str, Unread)] = &[
    ("access-log-params", Na("nginx access_log buffering parameters; one writer thread formats and writes the access log")),
    ("access-log-path", Na(LOGFILE)),
    ("app-root", Na(NO_EFFECT)),
    ("bind-address", Ny("use the --bind-address flag")),
    ("bind-address-ipv4", Ny("use the --bind-address flag")),
    ("bind-address-ipv6", Ny("use the --bind-address flag (one address)")),
    ("client-header-buffer-size", Na("nginx's first read buffer; large-client-header-buffers bounds the request head")),
    ("debug-connections", Na("nginx debug logging for some clients; use --v / RUST_LOG")),
    ("default-type", Na("nginx's default_type for files it serves; pingress serves no files")),
    ("disable-ipv6", Na("the listeners bind --bind-address only")),
    ("disable-ipv6-dns", Na("nginx's resolver; pingress resolves with the system resolver")),
    ("enable-aio-write", Na("nginx asynchronous file writes")),
    ("enable-auth-access-log", Ny("the external-auth subrequest is not access-logged")),
    ("enable-multi-accept", Na("nginx event-loop tuning")),
    ("enable-ocsp", Ny("OCSP stapling is not implemented yet")),
    ("enable-opentelemetry", Ny(OTEL)),
    ("enable-serial-reloads", Na("pingress never reloads: a new route table is swapped in")),
    ("enable-syslog", Ny("syslog shipping is not implemented; logs go to stdout/stderr")),
    ("error-log-level", Na("use --v or RUST_LOG")),
    ("error-log-path", Na(LOGFILE)),
    ("forwarded-for-proxy-protocol-header", Ny("not read")),
    ("forwarded-host-header", Ny("X-Forwarded-Host is the only forwarded host header read")),
    ("geoip2-autoreload-in-minutes", Ny("GeoIP2 is not implemented yet")),
    ("grpc-buffer-size-kb", Na("nginx gRPC buffer size; Pingora streams gRPC")),
    ("http-access-log-path", Na(LOGFILE)),
    ("http-snippet", Ny(SNIPPET)),
    ("http2-max-field-size", Na("removed from nginx 1.19.7; large-client-header-buffers applies")),
    ("http2-max-header-size", Na("removed from nginx 1.19.7; large-client-header-buffers applies")),
    ("http2-max-requests", Na("removed from nginx 1.19.7; keep-alive-requests applies")),
    ("limit-conn-zone-variable", Ny("limit-connections counts per client address")),
    ("lua-shared-dicts", Na("there is no Lua")),
    ("main-snippet", Ny(SNIPPET)),
    ("map-hash-bucket-size", Na(HASH)),
    ("max-worker-open-files", Na("the open-files limit is the container runtime's")),
    ("nginx-status-ipv4-whitelist", Na("there is no nginx status page; metrics are on --healthz-port /metrics")),
    ("nginx-status-ipv6-whitelist", Na("there is no nginx status page; metrics are on --healthz-port /metrics")),
    ("opentelemetry-config", Ny(OTEL)),
    ("opentelemetry-operation-name", Ny(OTEL)),
    ("opentelemetry-trust-incoming-span", Ny(OTEL)),
    ("otel-max-export-batch-size", Ny(OTEL)),
    ("otel-max-queuesize", Ny(OTEL)),
    ("otel-sampler", Ny(OTEL)),
    ("otel-sampler-parent-based", Ny(OTEL)),
    ("otel-sampler-ratio", Ny(OTEL)),
    ("otel-schedule-delay-millis", Ny(OTEL)),
    ("otel-service-name", Ny(OTEL)),
    ("otlp-collector-host", Ny(OTEL)),
    ("otlp-collector-port", Ny(OTEL)),
    ("proxy-buffering", Na("response buffering only; Pingora streams responses")),
    ("proxy-buffers-number", Na("nginx response buffer sizing")),
    ("proxy-busy-buffers-size", Na("nginx response buffer sizing")),
    ("proxy-headers-hash-bucket-size", Na(HASH)),
    ("proxy-headers-hash-max-size", Na(HASH)),
    ("proxy-max-temp-file-size", Na("nginx response temp files; Pingora streams responses")),
    ("proxy-ssl-location-only", Ny("proxy-ssl-* annotations apply to their Ingress's locations")),
    ("reuse-port", Na("Pingora's listeners")),
    ("server-name-hash-bucket-size", Na(HASH)),
    ("server-name-hash-max-size", Na(HASH)),
    ("ssl-buffer-size", Na("TLS record sizing is rustls's")),
    ("ssl-dh-param", Na("rustls offers ECDHE only, no finite-field DH")),
    ("ssl-early-data", Ny("TLS 1.3 0-RTT is off")),
    ("ssl-ecdh-curve", Ny("rustls's default groups apply")),
    ("ssl-reject-handshake", Ny("an unknown SNI gets the default certificate")),
    ("ssl-session-cache", Ny("rustls's session cache applies")),
    ("ssl-session-cache-size", Ny("rustls's session cache applies")),
    ("ssl-session-ticket-key", Ny("tickets use a per-process key")),
    ("ssl-session-timeout", Ny("rustls's session lifetime applies")),
    ("stream-access-log-path", Na(LOGFILE)),
    ("stream-snippet", Ny(SNIPPET)),
    ("syslog-host", Ny("syslog shipping is not implemented; logs go to stdout/stderr")),
    ("syslog-port", Ny("syslog shipping is not implemented; logs go to stdout/stderr")),
    ("upstream-hash-by", Na(NO_EFFECT)),
    ("upstream-hash-by-subset", Na(NO_EFFECT)),
    ("upstream-hash-by-subset-size", Na(NO_EFFECT)),
    ("upstream-keepalive-requests", Ny("Pingora's upstream pool has no per-connection request cap: a pooled connection serves until it is idle past upstream-keepalive-timeout or closed")),
    ("upstream-keepalive-time", Ny("Pingora's upstream pool has no connection lifetime cap")),
    ("use-geoip2", Ny("GeoIP2 is not implemented yet")),
    ("use-port-in-redirects", Ny("nginx's port_in_redirect is not implemented (nor the annotation)")),
    ("variables-hash-bucket-size", Na(HASH)),
    ("variables-hash-max-size", Na(HASH)),
    ("worker-cpu-affinity", Na("proxy threads are not pinned")),
    ("worker-processes", Na("one process; use the --threads flag")),
    ("worker-shutdown-timeout", Na("use the --post-shutdown-grace-period flag")),
];

/// What pingress does with an ingress-nginx key it does not read; `None` for a key it reads or
/// one ingress-nginx does not have either.
pub fn unread(key: &str) -> Option<Unread> {
    UNREAD
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| UNREAD[i].1)
}

/// Every ingress-nginx key and its state, sorted: (key, state, note).
pub fn all() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v: Vec<(&str, &str, &str)> = super::KEYS
        .iter()
        .chain(super::tls::KEYS)
        .chain(super::GLOBAL_AUTH_REFINEMENTS)
        .map(|k| (*k, "supported", ""))
        .collect();
    for (k, u) in UNREAD {
        v.push(match u {
            Na(why) => (*k, "not applicable", *why),
            Ny(why) => (*k, "not yet", *why),
        });
    }
    v.sort();
    v.dedup();
    v
}

/// The README's ConfigMap table.
pub fn reference_markdown() -> String {
    let all = all();
    let count = |s: &str| all.iter().filter(|(_, st, _)| *st == s).count();
    let mut out = format!(
        "{} keys: {} supported, {} not applicable, {} not yet.\n\n| key | state | note |\n| --- | --- | --- |\n",
        all.len(),
        count("supported"),
        count("not applicable"),
        count("not yet")
    );
    for (k, st, note) in all {
        out.push_str(&format!("| `{k}` | {st} | {note} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_is_sorted_and_no_key_is_both_read_and_unread() {
        assert!(
            UNREAD.windows(2).all(|w| w[0].0 < w[1].0),
            "UNREAD must stay sorted"
        );
        for (k, _) in UNREAD {
            assert!(
                !super::super::KEYS.contains(k)
                    && !super::super::tls::KEYS.contains(k)
                    && !super::super::GLOBAL_AUTH_REFINEMENTS.contains(k),
                "{k} is read and listed as unread"
            );
        }
        assert_eq!(
            unread("worker-processes"),
            Some(Na("one process; use the --threads flag"))
        );
        assert_eq!(unread("use-gzip"), None);
        assert_eq!(unread("no-such-key"), None);
        // ingress-nginx v1.15's config.go + defaults + configmap.go: 198 keys, two of them
        // internal (`-`, `global-external-auth`)
        assert_eq!(all().len(), 196);
    }

    /// The lists agree with what `parse` really does: an unread key is reported as unread, a
    /// read key never is.
    #[test]
    fn read_keys_are_parsed_and_unread_keys_are_reported() {
        use crate::diagnostics::ObjectRef;
        let o = ObjectRef::new("ConfigMap", "ns", "cm");
        let unread_reasons = [
            "ConfigMapKeyNotApplicable",
            "ConfigMapKeyNotImplemented",
            "ConfigMapKeyUnknown",
        ];
        for (key, state, _) in all() {
            let m: std::collections::BTreeMap<String, String> =
                [(key.to_string(), "1".to_string())].into();
            let mut d = Vec::new();
            super::super::parse(Some(&m), &o, &mut d);
            let reported = d.iter().any(|d| unread_reasons.contains(&d.reason));
            assert_eq!(
                reported,
                state != "supported",
                "{key} ({state}): {:?}",
                d.iter().map(|d| d.reason).collect::<Vec<_>>()
            );
        }
    }
}
