//! Prometheus metrics with ingress-nginx's names, types, buckets and labels, so existing
//! dashboards and alerts keep working, plus pingress's own `pingress_*` series. Everything is
//! registered in the `prometheus` default registry, served on `--healthz-port` at `/metrics`.
//!
//! Labels never carry request-derived values: route labels come from the matched route (the
//! Ingress path as written, its namespace, name and service; the host as written in the Ingress
//! with `--metrics-per-host`), the method is bounded to the standard ones, the status is a
//! status code. So cardinality is bounded by the configuration, not by traffic.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{
    Counter, CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounterVec, Opts, TextEncoder,
};

use crate::route::tls::TlsTable;

/// ingress-nginx's `--time-buckets`.
pub const TIME_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// ingress-nginx's `--length-buckets`.
pub const LENGTH_BUCKETS: &[f64] = &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
/// ingress-nginx's `--size-buckets`.
pub const SIZE_BUCKETS: &[f64] = &[10.0, 100.0, 1000.0, 10000.0, 100000.0, 1e6, 1e7];

/// The constant labels every ingress-nginx series carries.
#[derive(Debug, Clone)]
pub struct ControllerLabels {
    pub namespace: String,
    pub class: String,
    pub pod: String,
}

static CONST_LABELS: OnceLock<ControllerLabels> = OnceLock::new();
static PER_HOST: OnceLock<bool> = OnceLock::new();
static REQUEST_FILTERS: OnceLock<RequestFilters> = OnceLock::new();

/// `--enable-metrics`, `--metrics-per-undefined-host` and `--exclude-socket-metrics`.
#[derive(Debug, Default)]
struct RequestFilters {
    /// `--enable-metrics=false`: nothing serves the metrics, so requests are not recorded.
    off: bool,
    per_undefined_host: bool,
    /// Excluded families, by name without the `nginx_ingress_controller_` prefix.
    excluded: Vec<String>,
}

/// Set `--enable-metrics`, `--metrics-per-undefined-host` and `--exclude-socket-metrics`
/// (names with or without the `nginx_ingress_controller_` prefix; unknown names are ignored, as
/// ingress-nginx does) once, before requests are served.
pub fn init_request_filters(enabled: bool, per_undefined_host: bool, exclude: &[String]) {
    let excluded = exclude
        .iter()
        .map(|m| {
            m.trim()
                .trim_start_matches("nginx_ingress_controller_")
                .to_string()
        })
        .filter(|m| !m.is_empty())
        .collect();
    let _ = REQUEST_FILTERS.set(RequestFilters {
        off: !enabled,
        per_undefined_host,
        excluded,
    });
}

/// Whether a request needs [`RequestSample::host_defined`]: with `--metrics-per-host` (default)
/// and without `--metrics-per-undefined-host`, a request for a host no Ingress defines is not
/// recorded (ingress-nginx's socket collector skips it).
pub fn skips_undefined_hosts() -> bool {
    records_requests()
        && PER_HOST.get().copied().unwrap_or(true)
        && !REQUEST_FILTERS.get().is_some_and(|f| f.per_undefined_host)
}

/// Whether requests are recorded at all (not with `--enable-metrics=false`).
pub fn records_requests() -> bool {
    !REQUEST_FILTERS.get().is_some_and(|f| f.off)
}

fn excluded(name: &str) -> bool {
    REQUEST_FILTERS
        .get()
        .is_some_and(|f| f.excluded.iter().any(|e| e == name))
}

/// Set the constant labels and `--metrics-per-host` once, before any metric is used.
pub fn init(labels: ControllerLabels, per_host: bool) {
    let _ = CONST_LABELS.set(labels);
    let _ = PER_HOST.set(per_host);
}

fn opts(name: &str, help: &str) -> Opts {
    let mut o = Opts::new(name, help);
    if let Some(l) = CONST_LABELS.get() {
        o = o
            .const_label("controller_namespace", l.namespace.as_str())
            .const_label("controller_class", l.class.as_str())
            .const_label("controller_pod", l.pod.as_str());
    }
    o
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = prometheus::register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "could not register a metric");
    }
    c
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let o = opts(name, help);
    let h = HistogramOpts::from(o).buckets(buckets.to_vec());
    register(
        HistogramVec::new(h, labels)
            .unwrap_or_else(|e| panic!("static metric definition {name} is valid: {e}")),
    )
}

const REQUEST_LABELS: &[&str] = &[
    "status",
    "method",
    "path",
    "namespace",
    "ingress",
    "service",
    "canary",
    "host",
];

/// Request metrics (ingress-nginx's socket collector).
pub struct RequestMetrics {
    pub requests: CounterVec,
    pub request_duration: HistogramVec,
    pub response_duration: HistogramVec,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
    pub bytes_sent: HistogramVec,
}

pub static REQUESTS: LazyLock<RequestMetrics> = LazyLock::new(|| RequestMetrics {
    requests: register(
        CounterVec::new(
            opts(
                "nginx_ingress_controller_requests",
                "The total number of client requests",
            ),
            REQUEST_LABELS,
        )
        .unwrap_or_else(|e| panic!("static metric definition is valid: {e}")),
    ),
    request_duration: histogram(
        "nginx_ingress_controller_request_duration_seconds",
        "The request processing time in milliseconds",
        TIME_BUCKETS,
        REQUEST_LABELS,
    ),
    response_duration: histogram(
        "nginx_ingress_controller_response_duration_seconds",
        "The time spent on receiving the response from the upstream server",
        TIME_BUCKETS,
        REQUEST_LABELS,
    ),
    request_size: histogram(
        "nginx_ingress_controller_request_size",
        "The request length (including request line, header, and request body)",
        LENGTH_BUCKETS,
        REQUEST_LABELS,
    ),
    response_size: histogram(
        "nginx_ingress_controller_response_size",
        "The response length (including request line, header, and request body)",
        LENGTH_BUCKETS,
        REQUEST_LABELS,
    ),
    bytes_sent: histogram(
        "nginx_ingress_controller_bytes_sent",
        "DEPRECATED The number of bytes sent to a client",
        SIZE_BUCKETS,
        REQUEST_LABELS,
    ),
});

/// One finished request, as the metrics see it.
pub struct RequestSample<'a> {
    pub status: u16,
    pub method: &'a http::Method,
    /// Matched route labels; empty strings for the default backend.
    pub path: &'a str,
    pub namespace: &'a str,
    pub ingress: &'a str,
    pub service: &'a str,
    /// The canary upstream when a canary Ingress served the request, else empty.
    pub canary: &'a str,
    pub host: &'a str,
    /// The request's host (without port), the label of a host no Ingress defines.
    pub request_host: &'a str,
    /// A server of the table (exact, wildcard or alias) answered the request's host; only
    /// read when [`skips_undefined_hosts`].
    pub host_defined: bool,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
    pub request_length: u64,
    pub bytes_sent: u64,
}

/// The method label: standard methods as they are, anything else `OTHER` (bounded).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Record one request.
pub fn observe_request(s: &RequestSample<'_>) {
    if !records_requests() || !s.host_defined && skips_undefined_hosts() {
        return;
    }
    let status_buf = itoa_status(s.status);
    let status = std::str::from_utf8(&status_buf[..]).unwrap_or("0");
    let host = if !PER_HOST.get().copied().unwrap_or(true) {
        ""
    } else if s.host_defined {
        s.host
    } else {
        s.request_host
    };
    let labels = [
        status,
        method_label(s.method),
        s.path,
        s.namespace,
        s.ingress,
        s.service,
        s.canary,
        host,
    ];
    SERIES.with_borrow_mut(|cache| {
        cache.with(&labels, |series| series.record(s, &labels));
    });
}

impl Series {
    fn record(&self, s: &RequestSample<'_>, labels: &[&str; 8]) {
        if let Some(c) = &self.requests {
            c.inc();
        }
        if let Some(h) = &self.request_duration {
            h.observe(s.request_time.as_secs_f64());
        }
        if let Some(u) = s.upstream_time {
            // created on first use: a route never proxied has no response-time series
            let h = self.response_duration.get_or_init(|| {
                (!excluded("response_duration_seconds"))
                    .then(|| REQUESTS.response_duration.with_label_values(labels))
            });
            if let Some(h) = h {
                h.observe(u.as_secs_f64());
            }
        }
        if let Some(h) = &self.request_size {
            h.observe(s.request_length as f64);
        }
        if let Some(h) = &self.response_size {
            h.observe(s.bytes_sent as f64);
        }
        if let Some(h) = &self.bytes_sent {
            h.observe(s.bytes_sent as f64);
        }
    }
}

/// The request series of one label set (`None`: family excluded by `--exclude-socket-metrics`).
struct Series {
    requests: Option<Counter>,
    request_duration: Option<Histogram>,
    response_duration: std::cell::OnceCell<Option<Histogram>>,
    request_size: Option<Histogram>,
    response_size: Option<Histogram>,
    bytes_sent: Option<Histogram>,
}

impl Series {
    fn resolve(labels: &[&str; 8]) -> Series {
        let m = &*REQUESTS;
        let on = |name: &str| !excluded(name);
        Series {
            requests: on("requests").then(|| m.requests.with_label_values(labels)),
            request_duration: on("request_duration_seconds")
                .then(|| m.request_duration.with_label_values(labels)),
            response_duration: std::cell::OnceCell::new(),
            request_size: on("request_size").then(|| m.request_size.with_label_values(labels)),
            response_size: on("response_size").then(|| m.response_size.with_label_values(labels)),
            bytes_sent: on("bytes_sent").then(|| m.bytes_sent.with_label_values(labels)),
        }
    }
}

/// Each proxy thread's handles to the request series it has recorded, by label set. Resolving
/// a series in a `MetricVec` hashes its 8 labels and takes the vec's lock and a reference on
/// the series, shared by every thread: six times per request, that was 1-2% of a proxied
/// request's CPU. Here one hash of the labels finds all six; the series themselves are the
/// vec's (request series are never removed, so a handle never goes stale).
struct SeriesCache {
    key: Vec<u8>,
    series: std::collections::HashMap<Vec<u8>, Series, ahash::RandomState>,
}

/// Label sets kept per thread; past it the cache starts over (the series stay in the vecs).
const SERIES_PER_THREAD: usize = 4096;

thread_local! {
    static SERIES: std::cell::RefCell<SeriesCache> = std::cell::RefCell::new(SeriesCache {
        key: Vec::new(),
        series: Default::default(),
    });
}

impl SeriesCache {
    /// `f` with the series of `labels`, resolved on the thread's first request with them.
    fn with<R>(&mut self, labels: &[&str; 8], f: impl FnOnce(&Series) -> R) -> R {
        // each label after its length: no two label sets share a key (the length as four
        // raw bytes: `write!` of a decimal was 8 formatting calls per request)
        self.key.clear();
        for l in labels {
            self.key
                .extend_from_slice(&u32::try_from(l.len()).unwrap_or(u32::MAX).to_le_bytes());
            self.key.extend_from_slice(l.as_bytes());
        }
        if let Some(s) = self.series.get(self.key.as_slice()) {
            return f(s);
        }
        if self.series.len() >= SERIES_PER_THREAD {
            self.series.clear();
        }
        let s = Series::resolve(labels);
        let r = f(&s);
        self.series.insert(self.key.clone(), s);
        r
    }
}

fn itoa_status(code: u16) -> [u8; 3] {
    let c = code.min(999);
    [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ]
}

/// Config ("reload") metrics: a table publish is pingress's reload.
pub struct ConfigMetrics {
    pub last_reload_successful: Gauge,
    pub last_reload_successful_timestamp: Gauge,
    pub success: CounterVec,
    pub errors: CounterVec,
    pub rebuild_seconds: HistogramVec,
    pub table_hosts: Gauge,
    pub table_ingresses: Gauge,
    pub diagnostics: GaugeVec,
    pub rate_limited: IntCounterVec,
    pub annotation_unsupported: GaugeVec,
    pub mirrored: IntCounterVec,
}

pub static CONFIG: LazyLock<ConfigMetrics> = LazyLock::new(|| {
    ConfigMetrics {
    last_reload_successful: register(
        Gauge::with_opts(opts(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
        ))
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    last_reload_successful_timestamp: register(
        Gauge::with_opts(opts(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
        ))
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    success: register(
        CounterVec::new(
            opts(
                "nginx_ingress_controller_success",
                "Cumulative number of Ingress controller reload operations",
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    errors: register(
        CounterVec::new(
            opts(
                "nginx_ingress_controller_errors",
                "Cumulative number of Ingress controller errors during reload operations",
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    rebuild_seconds: histogram(
        "pingress_table_rebuild_duration_seconds",
        "Time to compile and publish a route table",
        &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        &[],
    ),
    table_hosts: register(
        Gauge::with_opts(opts("pingress_table_hosts", "Hosts in the live route table"))
            .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    table_ingresses: register(
        Gauge::with_opts(opts("pingress_table_ingresses", "Ingresses in the live route table"))
            .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    diagnostics: register(
        GaugeVec::new(
            opts(
                "pingress_diagnostics",
                "Current diagnostics by severity (Rejected: object left out) and reason",
            ),
            &["severity", "reason"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    rate_limited: register(
        IntCounterVec::new(
            opts(
                "pingress_rate_limited_requests_total",
                "Requests refused by limit-rps/limit-rpm (kind=req) or limit-connections (kind=conn)",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    annotation_unsupported: register(
        GaugeVec::new(
            opts(
                "pingress_annotation_unsupported",
                "Ingresses carrying an annotation key this version does not implement, by key and fail mode (ignore, fail-closed: answers 503, leave-out: not served)",
            ),
            &["key", "mode"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    mirrored: register(
        IntCounterVec::new(
            opts(
                "pingress_mirror_requests_total",
                "mirror-target copies by result: answered (any status), failed (connect or I/O error, timeout), dropped (not sent: 1,024 copies already in flight, or a streamed gRPC body)",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
}
});

/// Client connections (ingress-nginx's `nginx_process_connections` names): open now
/// (`state="active"`), and accepted / handled / refused over the process's life.
pub struct ConnectionMetrics {
    pub open: GaugeVec,
    pub total: IntCounterVec,
    /// `pingress_tcp_service_connections_total{port, result}` (`--tcp-services-configmap`).
    pub tcp_services: IntCounterVec,
    /// `pingress_udp_service_flows_total{port, result}` (`--udp-services-configmap`).
    pub udp_services: IntCounterVec,
}

pub static CONNECTIONS: LazyLock<ConnectionMetrics> = LazyLock::new(|| {
    ConnectionMetrics {
    open: register(
        GaugeVec::new(
            opts(
                "nginx_ingress_controller_nginx_process_connections",
                "current number of client connections with state {active}",
            ),
            &["state"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    total: register(
        IntCounterVec::new(
            opts(
                "nginx_ingress_controller_nginx_process_connections_total",
                "total number of connections with state {accepted, handled}; refused: over the connection cap",
            ),
            &["state"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    tcp_services: register(
        IntCounterVec::new(
            opts(
                "pingress_tcp_service_connections_total",
                "connections of --tcp-services-configmap ports, by result (relayed, failed: no endpoint accepted)",
            ),
            &["port", "result"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
    udp_services: register(
        IntCounterVec::new(
            opts(
                "pingress_udp_service_flows_total",
                "client flows of --udp-services-configmap ports, by result (answered, unanswered, failed: no endpoint, dropped: flow table full)",
            ),
            &["port", "result"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    ),
}
});

/// `pingress_ingress_stale{namespace, ingress}`: 1 for every Ingress served at its last good
/// version because its current one is rejected.
pub static INGRESS_STALE: LazyLock<GaugeVec> = LazyLock::new(|| {
    register(
        GaugeVec::new(
            opts(
                "pingress_ingress_stale",
                "Ingresses served at their last good version because the current one is rejected",
            ),
            &["namespace", "ingress"],
        )
        .unwrap_or_else(|e| panic!("valid: {e}")),
    )
});

/// Replace the `pingress_ingress_stale` series with a new table's.
pub fn record_stale(stale: &[crate::snapshot::Key]) {
    let g = &*INGRESS_STALE;
    g.reset();
    for (ns, name) in stale {
        g.with_label_values(&[ns.as_str(), name.as_str()]).set(1.0);
    }
}

/// Replace the `pingress_annotation_unsupported` series with a new table's counts.
pub fn record_unsupported(
    counts: &std::collections::BTreeMap<(&'static str, &'static str), usize>,
) {
    let g = &CONFIG.annotation_unsupported;
    g.reset();
    for ((key, mode), n) in counts {
        g.with_label_values(&[*key, *mode]).set(*n as f64);
    }
}

/// A table was published (a "reload" for ingress-nginx's dashboards).
pub fn record_publish(
    elapsed: Duration,
    hosts: usize,
    ingresses: usize,
    diagnostics: &[crate::diagnostics::Diagnostic],
    now_unix: f64,
) {
    let c = &*CONFIG;
    c.last_reload_successful.set(1.0);
    c.last_reload_successful_timestamp.set(now_unix);
    c.success.with_label_values::<&str>(&[]).inc();
    c.rebuild_seconds
        .with_label_values::<&str>(&[])
        .observe(elapsed.as_secs_f64());
    c.table_hosts.set(hosts as f64);
    c.table_ingresses.set(ingresses as f64);
    c.diagnostics.reset();
    for d in diagnostics {
        c.diagnostics
            .with_label_values(&[d.severity.as_str(), d.reason])
            .inc();
    }
}

/// Compiling a table failed (panicked): the last good table stays.
pub fn record_publish_failure() {
    let c = &*CONFIG;
    c.last_reload_successful.set(0.0);
    c.errors.with_label_values::<&str>(&[]).inc();
}

/// Cluster-mode operability: the admission webhook, the API connection, leadership, Events.
pub struct ClusterMetrics {
    pub admission_roundtrip: Gauge,
    pub admission_tested: Gauge,
    pub admission_reviews: IntCounterVec,
    pub leader: GaugeVec,
    pub watch_errors: IntCounterVec,
    pub watch_up: GaugeVec,
    pub last_sync: GaugeVec,
    pub event_failures: IntCounterVec,
}

fn gauge(name: &str, help: &str) -> Gauge {
    register(
        Gauge::with_opts(opts(name, help))
            .unwrap_or_else(|e| panic!("static metric definition {name} is valid: {e}")),
    )
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        GaugeVec::new(opts(name, help), labels)
            .unwrap_or_else(|e| panic!("static metric definition {name} is valid: {e}")),
    )
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        IntCounterVec::new(opts(name, help), labels)
            .unwrap_or_else(|e| panic!("static metric definition {name} is valid: {e}")),
    )
}

pub static CLUSTER: LazyLock<ClusterMetrics> = LazyLock::new(|| {
    ClusterMetrics {
    admission_roundtrip: gauge(
        "nginx_ingress_controller_admission_roundtrip_duration",
        "The complete duration of the last admission review (seconds)",
    ),
    admission_tested: gauge(
        "nginx_ingress_controller_admission_tested_ingresses",
        "The number of Ingresses compiled by the last admission review",
    ),
    admission_reviews: counter_vec(
        "pingress_admission_reviews_total",
        "Admission reviews answered, by result (allowed, denied, error)",
        &["result"],
    ),
    leader: gauge_vec(
        "nginx_ingress_controller_leader_election_status",
        "Gauge reporting status of the leader election, 0 indicates follower, 1 indicates leader. 'name' is the string used to identify the lease",
        &["name"],
    ),
    watch_errors: counter_vec(
        "pingress_api_watch_errors_total",
        "Failed list/watch attempts against the Kubernetes API, by watched resource",
        &["resource"],
    ),
    watch_up: gauge_vec(
        "pingress_api_watch_up",
        "1 while the watch of a resource is synced with the Kubernetes API, 0 during an outage",
        &["resource"],
    ),
    last_sync: gauge_vec(
        "pingress_api_last_sync_timestamp_seconds",
        "Unix time of the last event or successful (re)list received per watched resource",
        &["resource"],
    ),
    event_failures: counter_vec(
        "pingress_event_send_failures_total",
        "Kubernetes Events that could not be created",
        &["reason"],
    ),
}
});

/// One admission review answered.
pub fn record_admission(allowed: bool, tested: usize, elapsed: Duration) {
    let c = &*CLUSTER;
    c.admission_roundtrip.set(elapsed.as_secs_f64());
    c.admission_tested.set(tested as f64);
    c.admission_reviews
        .with_label_values(&[if allowed { "allowed" } else { "denied" }])
        .inc();
}

/// An admission request that could not be read as an AdmissionReview.
pub fn record_admission_error() {
    CLUSTER
        .admission_reviews
        .with_label_values(&["error"])
        .inc();
}

/// This replica's leadership of the status Lease `name`.
pub fn record_leader(name: &str, leader: bool) {
    CLUSTER
        .leader
        .with_label_values(&[name])
        .set(if leader { 1.0 } else { 0.0 });
}

/// A list/watch attempt of `resource` failed.
pub fn record_watch_error(resource: &str) {
    let c = &*CLUSTER;
    c.watch_errors.with_label_values(&[resource]).inc();
    c.watch_up.with_label_values(&[resource]).set(0.0);
}

/// `resource`'s watch delivered an event or finished a (re)list.
pub fn record_watch_ok(resource: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let c = &*CLUSTER;
    c.watch_up.with_label_values(&[resource]).set(1.0);
    c.last_sync.with_label_values(&[resource]).set(now);
}

/// An Event could not be created.
pub fn record_event_failure(reason: &str) {
    CLUSTER.event_failures.with_label_values(&[reason]).inc();
}

/// `nginx_ingress_controller_ssl_expire_time_seconds{namespace, class, host, secret_name,
/// identifier}`: notAfter (Unix seconds) of every certificate served for a host.
/// `identifier` is the certificate's serial number (hex).
pub static SSL_EXPIRE_TIME: LazyLock<GaugeVec> = LazyLock::new(|| {
    register(
        GaugeVec::new(
            opts(
                "nginx_ingress_controller_ssl_expire_time_seconds",
                "Number of seconds since 1970 to the SSL Certificate expire. An example to check if \
                 this certificate will expire in 10 days is: \
                 \"nginx_ingress_controller_ssl_expire_time_seconds < (time() + (10 * 24 * 3600))\"",
            ),
            &["namespace", "class", "host", "secret_name", "identifier"],
        )
        .unwrap_or_else(|e| panic!("static metric definition is valid: {e}")),
    )
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

/// The text exposition of every registered metric (`/metrics`).
pub fn render() -> String {
    // make sure the request and config families exist even before the first request
    LazyLock::force(&REQUESTS);
    LazyLock::force(&CONFIG);
    LazyLock::force(&SSL_EXPIRE_TIME);
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_route_labels_only() {
        observe_request(&RequestSample {
            status: 201,
            method: &http::Method::from_bytes(b"BREW").unwrap(),
            path: "/api",
            namespace: "ns",
            ingress: "ing",
            service: "svc",
            canary: "",
            host: "app.example.com",
            request_host: "app.example.com",
            host_defined: true,
            request_time: Duration::from_millis(7),
            upstream_time: Some(Duration::from_millis(5)),
            request_length: 42,
            bytes_sent: 300,
        });
        let text = render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("nginx_ingress_controller_requests{") && l.contains("ingress=\"ing\"")
            })
            .expect("requests series");
        assert!(line.contains("status=\"201\""), "{line}");
        assert!(line.contains("method=\"OTHER\""), "{line}");
        assert!(line.contains("path=\"/api\""), "{line}");
        assert!(text.contains("nginx_ingress_controller_request_duration_seconds_bucket"));
        assert!(text.contains("le=\"0.01\""));
        assert!(text.contains("nginx_ingress_controller_config_last_reload_successful"));
    }

    #[test]
    fn status_digits() {
        assert_eq!(&itoa_status(404), b"404");
        assert_eq!(&itoa_status(200), b"200");
        assert_eq!(&itoa_status(5), b"005");
    }
}
