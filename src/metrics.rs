//! Prometheus metrics with ingress-nginx's names. Registered in the `prometheus` default
//! registry (`prometheus::gather()`), which the future `/metrics` endpoint will serve; there is
//! no HTTP endpoint yet.
//!
//! Labels never carry request-derived values: `host` here is a configured TLS host.

use std::sync::LazyLock;

use prometheus::{GaugeVec, Opts};

use crate::route::tls::TlsTable;

/// `nginx_ingress_controller_ssl_expire_time_seconds{namespace, class, host, secret_name,
/// identifier}`: notAfter (Unix seconds) of every certificate served for a host.
/// `identifier` is the certificate's serial number (hex).
pub static SSL_EXPIRE_TIME: LazyLock<GaugeVec> = LazyLock::new(|| {
    let g = GaugeVec::new(
        Opts::new(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            "Number of seconds since 1970 to the SSL Certificate expire. An example to check if \
             this certificate will expire in 10 days is: \
             \"nginx_ingress_controller_ssl_expire_time_seconds < (time() + (10 * 24 * 3600))\"",
        ),
        &["namespace", "class", "host", "secret_name", "identifier"],
    )
    .unwrap_or_else(|e| panic!("static metric definition is valid: {e}"));
    if let Err(e) = prometheus::register(Box::new(g.clone())) {
        tracing::warn!(error = %e, "could not register ssl_expire_time_seconds");
    }
    g
});

/// Replace the certificate expiry series with those of a newly published table.
pub fn record_certificates(tls: &TlsTable, class: &str) {
    let g = &*SSL_EXPIRE_TIME;
    g.reset();
    for (host, c) in tls.served() {
        g.with_label_values(&[&*c.namespace, class, &host, &*c.secret, &*c.serial])
            .set(c.not_after as f64);
    }
}
