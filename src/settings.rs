//! Controller settings: command-line flags with ingress-nginx's names and meanings, and the
//! pure [`CompileSettings`] subset that `compile` reads.

use std::path::PathBuf;

use clap::Parser;

use crate::values::{is_dns_label, is_dns_subdomain};

/// `pingress check`: what pingress would serve as ingress-nginx does, before switching. Reads
/// a cluster (read-only), `--manifests DIR`, or `-f FILE` (`-` for stdin, e.g.
/// `kubectl get ingress,svc,ingressclass,configmap -A -o yaml | pingress check -f -`). Exit
/// code 0: every Ingress served identically; 1: some differ; 2: some would be left out; 3: the
/// input could not be read.
#[derive(Parser, Debug, Clone)]
#[command(name = "pingress check", version)]
pub struct CheckCli {
    /// A manifest file to check (`-`: standard input); YAML documents, `kind: List` included.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// `human` (the Ingresses that need a look, grouped) or `json` (everything, for CI).
    #[arg(short = 'o', long, default_value = "human", value_parser = ["human", "json"])]
    pub output: String,

    /// The ingress-nginx controller Deployment (`namespace/name`, cluster mode): its flags are
    /// reported with their state and the ones pingress reads (class, ConfigMap, namespace, ...)
    /// are used for the check unless given here.
    #[arg(long, value_name = "NS/NAME")]
    pub controller_deployment: Option<String>,

    /// The controller settings the check runs with (the same flags as the controller's).
    #[command(flatten)]
    pub cli: Cli,
}

/// pingress: a Kubernetes Ingress controller on Pingora, compatible with ingress-nginx.
#[derive(Parser, Debug, Clone)]
#[command(name = "pingress", version, about)]
pub struct Cli {
    /// Standalone mode: serve the Kubernetes manifests (*.yaml, *.yml) found under this folder
    /// instead of watching a cluster. Changes in the folder are picked up within a second.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Port of the plain HTTP listener (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,

    /// Address the listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,

    /// Name of the ingress class this controller satisfies (legacy annotation
    /// `kubernetes.io/ingress.class` is compared with it). ingress-nginx's default: `nginx`.
    #[arg(long, default_value = "pingress")]
    pub ingress_class: String,

    /// IngressClass `spec.controller` value this controller satisfies. Set it to
    /// `k8s.io/ingress-nginx` (and `--ingress-class nginx`) to take over ingress-nginx's
    /// IngressClass without editing any Ingress. ingress-nginx's default: `k8s.io/ingress-nginx`.
    #[arg(long, default_value = "k8s.io/pingress")]
    pub controller_class: String,

    /// Also take the IngressClass named `--ingress-class` whatever its `spec.controller`
    /// (ingress-nginx's flag of the same name).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub ingress_class_by_name: bool,

    /// Also serve Ingresses that name no class at all.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub watch_ingress_without_class: bool,

    /// Leave out every Ingress with a `spec.defaultBackend` (a catch-all), as ingress-nginx's
    /// flag of the same name: such an Ingress is not served at all, and the admission webhook
    /// refuses it.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub disable_catch_all: bool,

    /// Refuse Services of type ExternalName as backends, as ingress-nginx's flag of the same
    /// name: such a backend has no endpoints (its requests answer 503, with a warning).
    #[arg(long = "disable-svc-external-name", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub disable_service_external_name: bool,

    /// ingress-nginx's security deep inspector: an Ingress whose host, path or TLS entry holds
    /// `/etc/(passwd|shadow|group|nginx|ingress-controller)`, `/var/run/secrets`, `_by_lua`, or
    /// an `alias`/`root` directive (the word, then a `;`) is left out (and refused by the
    /// validating webhook); its last good version stays.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub deep_inspect: bool,

    /// Service (namespace/name) that serves requests no rule matches; its first port is used.
    /// Without it, pingress answers 404 itself.
    #[arg(long, value_name = "NS/NAME")]
    pub default_backend_service: Option<String>,

    /// Prefix of the annotations pingress reads.
    #[arg(long, default_value = "nginx.ingress.kubernetes.io")]
    pub annotations_prefix: String,

    /// ConfigMap (namespace/name) of TCP services: `port: "ns/svc:port[:PROXY[:PROXY]]"` per
    /// entry (ingress-nginx's format); watched by name in cluster mode, read from the manifest
    /// folder in standalone mode.
    #[arg(long, value_name = "NS/NAME")]
    pub tcp_services_configmap: Option<String>,

    /// ConfigMap (namespace/name) of UDP services: `port: "ns/svc:port"` per entry
    /// (ingress-nginx's format); watched like `--tcp-services-configmap`.
    #[arg(long, value_name = "NS/NAME")]
    pub udp_services_configmap: Option<String>,

    /// Add the `host` label (the host as written in the Ingress) to the request metrics.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub metrics_per_host: bool,

    /// Also record the request metrics of hosts no Ingress defines (labelled with the request's
    /// host); without it they are not recorded, as ingress-nginx's flag of the same name
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub metrics_per_undefined_host: bool,

    /// Request metric families not to record nor export, comma-separated (names with or
    /// without the `nginx_ingress_controller_` prefix), as ingress-nginx's flag of the same name
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub exclude_socket_metrics: Vec<String>,

    /// Log verbosity like ingress-nginx's `--v`: 0 warn, 1-2 info, 3-4 debug, 5+ trace.
    /// `RUST_LOG` overrides it.
    #[arg(long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,

    /// Worker threads of the proxy (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Let idle proxy threads steal connections from busy ones (one shared tokio runtime).
    /// Off by default: each thread runs its own single-threaded runtime, like nginx workers,
    /// which costs less CPU per request and has a shorter tail (benches/RESULTS.md).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub work_stealing: bool,

    /// Port of the HTTPS listener (TLS 1.2/1.3, ALPN h2 and http/1.1; certificates from the
    /// Ingresses' spec.tls Secrets, chosen by SNI).
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,

    /// Secret (namespace/name) with the certificate served for unknown or missing SNI and for
    /// hosts whose Secret is missing or invalid. Without it, a self-signed certificate is
    /// generated at start (CN "Kubernetes Ingress Controller Fake Certificate").
    #[arg(long, value_name = "NS/NAME")]
    pub default_ssl_certificate: Option<String>,

    /// ingress-nginx's SSL passthrough switch: the HTTPS port reads each ClientHello's server
    /// name and relays the TLS connections of `ssl-passthrough` hosts untouched to the backend
    /// of their `/` path; every other connection is terminated here as usual.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_ssl_passthrough: bool,

    /// Serve `/debug/routes`, `/debug/route?host=H&path=P` and `/debug/diagnostics` (JSON) on
    /// the health port (never on the proxy ports): the live table, which route a request would
    /// get and why, the current diagnostics.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_debug_endpoints: bool,

    /// Seconds to go on serving after SIGTERM, as before it, while `/healthz` and `/readyz`
    /// answer 500 (so the Pod leaves its Service's endpoints and load balancers stop sending),
    /// before the listeners stop accepting (ingress-nginx's flag of the same name)
    #[arg(long, default_value_t = 0)]
    pub shutdown_grace_period: u64,

    /// Seconds in-flight requests get once the listeners stopped accepting; the process exits
    /// at most 1 s after (ingress-nginx's flag of the same name; Pingora's own default is 300 s)
    #[arg(long, default_value_t = 10)]
    pub post_shutdown_grace_period: u64,

    /// Port of the health server: `/healthz` (process alive) and `/readyz` (first route table
    /// published). 0 disables it.
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,

    #[command(flatten)]
    pub kube: KubeFlags,

    #[command(flatten)]
    pub compat: CompatFlags,
}

/// ingress-nginx's remaining flags, accepted so a controller Deployment's arguments carry over
/// unchanged (clap would refuse an unknown flag and the Pod would not start). Each one's help
/// says what it does here; the ones without an effect are logged at start
/// ([`ineffective_flags`]; `pingress check` reports them through [`flag_state`]).
#[derive(clap::Args, Debug, Clone)]
pub struct CompatFlags {
    /// URL path the health port also answers as `/healthz` (ingress-nginx's probes path;
    /// `/healthz` keeps working).
    #[arg(long, default_value = "/healthz", value_name = "PATH")]
    pub health_check_path: String,

    /// Address the health port (`--healthz-port`) binds to; default: `--bind-address`.
    #[arg(long, value_name = "ADDR")]
    pub healthz_host: Option<String>,

    /// Serve the Prometheus metrics on the health port's `/metrics` (false: 404, and requests
    /// are not recorded).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_metrics: bool,

    /// Accepted; true: no `Sync` Events (pingress's only one says an Ingress with Warnings
    /// rebuilt clean).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub disable_sync_events: bool,

    /// Accepted, no effect: leader election only decides which replica writes Ingress status
    /// (every replica serves either way), so it stays on and status is written once.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub disable_leader_election: bool,

    /// Accepted, no effect: annotation values are always validated (false does not let values
    /// through that ingress-nginx's validation refuses).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_annotation_validation: bool,

    /// Not implemented: topology-aware routing (EndpointSlice zone hints); true is logged and
    /// every ready endpoint keeps its share.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_topology_aware_routing: bool,

    /// Not implemented: Ingress status from the node's internal address (hostNetwork);
    /// --publish-service / --publish-status-address decide the address.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub report_node_internal_ip_address: bool,

    /// Not implemented: certificate chain completion; serve the whole chain in the Secret.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub enable_ssl_chain_completion: bool,

    /// Not applicable (nginx's configuration test): accepted and ignored.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub disable_full_test: Option<bool>,
    /// Not applicable (nginx's Go profiler): accepted and ignored.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub profiling: Option<bool>,
    /// Not applicable (status classes (2xx) instead of codes in nginx's metrics): accepted and ignored.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub report_status_classes: Option<bool>,

    /// Not applicable (the informers' resync period; pingress watches): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub sync_period: Option<String>,
    /// Not applicable (the pace of nginx reloads): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub sync_rate_limit: Option<String>,
    /// Not applicable (the timeout of nginx's internal health check): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub health_check_timeout: Option<String>,
    /// Not applicable (retries of the Lua configuration push): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub dynamic_configuration_retries: Option<String>,
    /// Not applicable (the batch size of nginx's Lua metrics): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub monitor_max_batch_size: Option<String>,
    /// Not applicable (nginx's internal catch-all server port): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub default_server_port: Option<String>,
    /// Not applicable (nginx's internal TLS passthrough port): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub ssl_passthrough_proxy_port: Option<String>,
    /// Not applicable (nginx's internal Lua configuration port): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub status_port: Option<String>,
    /// Not applicable (nginx's internal Lua stream configuration port): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub stream_port: Option<String>,
    /// Not applicable (nginx's internal syslog listener): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub internal_logger_address: Option<String>,
    /// Not applicable (the Go profiler's address): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub profiler_address: Option<String>,
    /// Not applicable (the Go profiler's port): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub profiler_port: Option<String>,
    /// Not applicable (GeoIP2 database downloads (GeoIP2 is not implemented)): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub maxmind_license_key: Option<String>,
    /// Not applicable (GeoIP2 database downloads): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub maxmind_edition_ids: Option<String>,
    /// Not applicable (GeoIP2 database downloads): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub maxmind_mirror: Option<String>,
    /// Not applicable (GeoIP2 database downloads): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub maxmind_retries_count: Option<String>,
    /// Not applicable (GeoIP2 database downloads): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub maxmind_retries_timeout: Option<String>,
    /// Not applicable (histogram buckets of nginx's metrics (pingress's are fixed, as ingress-nginx's defaults)): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub time_buckets: Option<String>,
    /// Not applicable (histogram buckets of nginx's metrics): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub length_buckets: Option<String>,
    /// Not applicable (histogram buckets of nginx's metrics): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub size_buckets: Option<String>,
    /// Not applicable (native histograms of nginx's metrics): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub bucket_factor: Option<String>,
    /// Not applicable (native histograms of nginx's metrics): accepted and ignored.
    #[arg(long, value_name = "VALUE")]
    pub max_buckets: Option<String>,
}

/// ingress-nginx's controller binary as its Deployment names it (`/nginx-ingress-controller`):
/// a first argument pingress drops, so a Deployment whose image alone is swapped starts.
pub fn is_ingress_nginx_binary(arg: &str) -> bool {
    arg.rsplit('/').next() == Some("nginx-ingress-controller")
}

/// How pingress treats the flag `--name`, from its help text: `supported`, `not applicable`,
/// `not implemented` or `no effect` ([`CompatFlags`] say which), with that help text; `None`
/// for a flag pingress does not have.
pub fn flag_state(name: &str) -> Option<(&'static str, String)> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name))?;
    Some(arg_state(arg))
}

fn arg_state(arg: &clap::Arg) -> (&'static str, String) {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let state = if help.starts_with("Not applicable") {
        "not applicable"
    } else if help.starts_with("Not implemented") {
        "not implemented"
    } else if help.starts_with("Accepted, no effect") {
        "no effect"
    } else {
        "supported"
    };
    (state, help)
}

/// What start logs about the flags in `args` that pingress accepts without acting on them (not
/// when set to their default, e.g. `--enable-topology-aware-routing=false`).
pub fn ineffective_flags<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    args.iter()
        .filter_map(|a| a.as_ref().strip_prefix("--"))
        .filter_map(|f| {
            let (name, value) = f.split_once('=').unwrap_or((f, ""));
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name))?;
            if !value.is_empty() && arg.get_default_values().iter().any(|d| d == value) {
                return None;
            }
            match arg_state(arg) {
                ("supported", _) => None,
                (_, help) => Some(format!(
                    "--{name}: {}",
                    help.split_whitespace().collect::<Vec<_>>().join(" ")
                )),
            }
        })
        .collect()
}

/// Cluster-mode flags (ingress-nginx names). Rejected together with `--manifests`.
#[derive(clap::Args, Debug, Clone)]
pub struct KubeFlags {
    /// Kubeconfig file. Without it: the in-cluster service account, else $KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, value_name = "NS")]
    pub watch_namespace: Option<String>,

    /// Watch only namespaces whose labels match this label selector (e.g. `team=web`).
    #[arg(long, value_name = "SELECTOR")]
    pub watch_namespace_selector: Option<String>,

    /// The controller ConfigMap (namespace/name) with ingress-nginx's keys: watched by name in
    /// cluster mode, read from the manifest folder in standalone mode.
    #[arg(long, value_name = "NS/NAME")]
    pub configmap: Option<String>,

    /// Service (namespace/name) whose load balancer addresses are written into the status of
    /// the Ingresses this controller serves.
    #[arg(long, value_name = "NS/NAME")]
    pub publish_service: Option<String>,

    /// Comma-separated addresses (IPs or host names) written into Ingress status; takes
    /// precedence over `--publish-service`.
    #[arg(long, value_name = "ADDR[,ADDR]")]
    pub publish_status_address: Option<String>,

    /// Write `status.loadBalancer` of the served Ingresses (the elected leader only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub update_status: bool,

    /// Clear the Ingress status this controller wrote when the leader shuts down and no other
    /// replica runs (otherwise the next leader keeps the address).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub update_status_on_shutdown: bool,

    /// Name of the coordination.k8s.io Lease used for leader election (status writer).
    #[arg(long, default_value = "ingress-controller-leader", value_name = "NAME")]
    pub election_id: String,

    /// How long a leader's Lease stays valid without renewal; leadership moves within it when
    /// the leader dies. Seconds, or a Go duration as ingress-nginx takes it (`30s`, `1m`).
    #[arg(long, default_value = "30", value_name = "DURATION", value_parser = seconds_or_go_duration)]
    pub election_ttl: u64,

    /// The API server's URL (ingress-nginx's flag): replaces the server of the in-cluster or
    /// kubeconfig configuration; its credentials stay.
    #[arg(long, value_name = "URL")]
    pub apiserver_host: Option<String>,

    /// PEM CA bundle to verify the API server with (with `--apiserver-host`).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,

    /// Seconds between full status re-syncs (besides the sync on every table change).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", hide = true)]
    pub status_update_interval: u64,

    /// Address of the validating admission webhook (HTTPS, path `/networking/v1/ingresses`),
    /// e.g. `:8443`. Off when unset. Needs the two flags below.
    #[arg(long, value_name = "ADDR")]
    pub validating_webhook: Option<String>,

    /// PEM certificate (chain) the admission webhook serves.
    #[arg(long, value_name = "FILE")]
    pub validating_webhook_certificate: Option<PathBuf>,

    /// PEM private key of the admission webhook's certificate.
    #[arg(long, value_name = "FILE")]
    pub validating_webhook_key: Option<PathBuf>,
}

/// The admission webhook's listener and certificate (`--validating-webhook*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub addr: std::net::SocketAddr,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Validated cluster-mode settings.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub kubeconfig: Option<PathBuf>,
    pub watch_namespace: Option<String>,
    pub watch_namespace_selector: Option<String>,
    pub configmap: Option<(String, String)>,
    /// `--tcp-services-configmap` / `--udp-services-configmap`, watched by name like
    /// `--configmap`.
    pub tcp_services: Option<(String, String)>,
    pub udp_services: Option<(String, String)>,
    pub publish_service: Option<(String, String)>,
    /// Parsed `--publish-status-address` (empty when not set).
    pub publish_status_address: Vec<String>,
    pub update_status: bool,
    pub update_status_on_shutdown: bool,
    pub election_id: String,
    pub election_ttl: u64,
    pub status_update_interval: u64,
    /// `--disable-sync-events`: no `Sync` Events.
    pub disable_sync_events: bool,
    /// `--apiserver-host` / `--certificate-authority`: the API server's URL and CA bundle,
    /// replacing those of the resolved configuration.
    pub apiserver_host: Option<String>,
    pub certificate_authority: Option<PathBuf>,
    /// Namespace of the controller (Lease, Events about itself): `POD_NAMESPACE`, else the
    /// ConfigMap's namespace, else `default`.
    pub controller_namespace: String,
    /// Identity in the Lease: `POD_NAME`, else the host name, plus a random suffix.
    pub identity: String,
    /// `POD_NAME`: this replica's Pod, to find the others on shutdown (status hand-over).
    pub pod_name: Option<String>,
    /// `--validating-webhook*`.
    pub webhook: Option<WebhookSettings>,
    /// `--post-shutdown-grace-period`: the time the leader has to clear status on shutdown.
    pub shutdown_grace: std::time::Duration,
}

/// What `compile` needs from the settings. Plain values; no I/O.
#[derive(Debug, Clone)]
pub struct CompileSettings {
    pub ingress_class: String,
    pub controller_class: String,
    /// `--ingress-class-by-name`: the IngressClass named `ingress_class` is ours whatever its
    /// controller.
    pub ingress_class_by_name: bool,
    pub watch_ingress_without_class: bool,
    /// `--disable-catch-all`: Ingresses with a `spec.defaultBackend` are left out.
    pub disable_catch_all: bool,
    /// `--disable-svc-external-name`: ExternalName Services resolve to no endpoints.
    pub disable_service_external_name: bool,
    /// `--deep-inspect`: Ingresses with values ingress-nginx's inspector forbids are left out.
    pub deep_inspect: bool,
    /// (namespace, name) of `--default-backend-service`.
    pub default_backend_service: Option<(String, String)>,
    pub annotations_prefix: String,
    /// (namespace, name) of `--configmap`.
    pub configmap: Option<(String, String)>,
    /// (namespace, name) of `--default-ssl-certificate`.
    pub default_ssl_certificate: Option<(String, String)>,
    /// `--enable-ssl-passthrough`: `ssl-passthrough` hosts get a passthrough entry in the table.
    pub enable_ssl_passthrough: bool,
    /// (namespace, name) of `--tcp-services-configmap` / `--udp-services-configmap`.
    pub tcp_services: Option<(String, String)>,
    pub udp_services: Option<(String, String)>,
    /// Standalone mode: an Ingress without any class is served when one of our IngressClasses
    /// is marked default. Not in cluster mode, where the API server's admission plugin already
    /// filled `ingressClassName` of Ingresses created while the class was default, and a
    /// class-less Ingress may be another controller's (ingress-nginx never reads the marker).
    pub default_class_adopts_classless: bool,
}

impl KubeFlags {
    fn default_values() -> KubeFlags {
        KubeFlags {
            kubeconfig: None,
            watch_namespace: None,
            watch_namespace_selector: None,
            configmap: None,
            publish_service: None,
            publish_status_address: None,
            update_status: true,
            update_status_on_shutdown: true,
            election_id: "ingress-controller-leader".into(),
            election_ttl: 30,
            apiserver_host: None,
            certificate_authority: None,
            status_update_interval: 60,
            validating_webhook: None,
            validating_webhook_certificate: None,
            validating_webhook_key: None,
        }
    }
}

impl Default for CompileSettings {
    fn default() -> Self {
        CompileSettings {
            ingress_class: "pingress".into(),
            controller_class: "k8s.io/pingress".into(),
            ingress_class_by_name: false,
            watch_ingress_without_class: false,
            disable_catch_all: false,
            disable_service_external_name: false,
            deep_inspect: true,
            default_backend_service: None,
            annotations_prefix: "nginx.ingress.kubernetes.io".into(),
            configmap: None,
            default_ssl_certificate: None,
            enable_ssl_passthrough: false,
            tcp_services: None,
            udp_services: None,
            default_class_adopts_classless: true,
        }
    }
}

/// `--validating-webhook ADDR` (`:8443` = every address, as Go's listen syntax) with its
/// certificate and key; both files are required with the address and useless without it.
fn webhook_settings(k: &KubeFlags) -> Result<Option<WebhookSettings>, String> {
    let (cert, key) = (&k.validating_webhook_certificate, &k.validating_webhook_key);
    let Some(addr) = &k.validating_webhook else {
        if cert.is_some() || key.is_some() {
            return Err(
                "--validating-webhook-certificate/-key need --validating-webhook ADDR".into(),
            );
        }
        return Ok(None);
    };
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.clone()
    };
    let addr: std::net::SocketAddr = full
        .parse()
        .map_err(|_| format!("--validating-webhook {addr:?}: expected [IP]:PORT, e.g. :8443"))?;
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(WebhookSettings {
            addr,
            certificate: c.clone(),
            key: k.clone(),
        })),
        _ => Err(
            "--validating-webhook needs --validating-webhook-certificate and --validating-webhook-key (PEM files)"
                .into(),
        ),
    }
}

/// Parse `namespace/name`.
pub fn parse_ns_name(flag: &str, v: &str) -> Result<(String, String), String> {
    match v.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("--{flag} must be namespace/name, got {v:?}")),
    }
}

/// Parse `namespace/name` and check both parts are valid Kubernetes names.
pub fn parse_object_ref(flag: &str, v: &str) -> Result<(String, String), String> {
    let (ns, name) = parse_ns_name(flag, v)?;
    if !is_dns_label(&ns) || !is_dns_subdomain(&name) {
        return Err(format!(
            "--{flag} {v:?}: namespace must be a DNS label and name a DNS subdomain \
             (lower-case letters, digits, '-', '.')"
        ));
    }
    Ok((ns, name))
}

/// Parse a label selector just enough to reject garbage early (the API server has the last
/// word): comma-separated `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
/// `key notin (a,b)`.
pub fn check_label_selector(v: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("--watch-namespace-selector {v:?}: {why}"));
    if v.trim().is_empty() {
        return bad("empty selector");
    }
    let key_ok = |k: &str| {
        let k = k.trim();
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    // split on commas outside parentheses
    let mut depth = 0i32;
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in v.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return bad("unbalanced parentheses");
        }
    }
    if depth != 0 {
        return bad("unbalanced parentheses");
    }
    parts.push(&v[start..]);
    for p in parts {
        let p = p.trim();
        let ok = if let Some(k) = p.strip_prefix('!') {
            key_ok(k)
        } else if let Some((k, val)) = p
            .split_once("!=")
            .or_else(|| p.split_once("=="))
            .or_else(|| p.split_once('='))
        {
            key_ok(k)
                && val
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        } else if let Some((k, rest)) = p.split_once(" notin ").or_else(|| p.split_once(" in ")) {
            let rest = rest.trim();
            key_ok(k) && rest.starts_with('(') && rest.ends_with(')')
        } else {
            key_ok(p)
        };
        if !ok {
            return bad(&format!("cannot parse requirement {p:?}"));
        }
    }
    Ok(())
}

/// `--election-ttl`: whole seconds, or a Go duration (`30s`, `1m30s`) rounded up to seconds.
fn seconds_or_go_duration(v: &str) -> Result<u64, String> {
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    crate::values::go_duration(v)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .ok_or_else(|| format!("{v:?} is neither seconds nor a duration such as 30s"))
}

/// The README's flag table, generated from the clap definitions (doc comments and defaults).
pub fn flags_markdown() -> String {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = String::from("| flag | default | meaning |\n| --- | --- | --- |\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || long == "help" || long == "version" {
            continue;
        }
        let value = match arg.get_value_names() {
            Some(names) if !arg.get_action().takes_values() || names.is_empty() => String::new(),
            // an explicit value name (`DIR`, `NS/NAME`), not clap's default (the id upper-cased)
            Some(names)
                if names[0] != "BOOL" && names[0] != long.replace('-', "_").to_uppercase() =>
            {
                format!(" {}", names[0])
            }
            _ => String::new(),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        out.push_str(&format!("| `--{long}{value}` | {default} | {help} |\n"));
    }
    out
}

impl Cli {
    /// Validate the cluster-mode flags and derive [`KubeSettings`]. Errors name the flag.
    pub fn kube_settings(&self) -> Result<KubeSettings, String> {
        let k = &self.kube;
        let configmap = k
            .configmap
            .as_deref()
            .map(|v| parse_object_ref("configmap", v))
            .transpose()?;
        let publish_service = k
            .publish_service
            .as_deref()
            .map(|v| parse_object_ref("publish-service", v))
            .transpose()?;
        let mut publish_status_address = Vec::new();
        if let Some(list) = &k.publish_status_address {
            for a in list.split(',').map(str::trim) {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '/') {
                    return Err(format!(
                        "--publish-status-address {list:?}: {a:?} is not an IP address or host name"
                    ));
                }
                publish_status_address.push(a.to_string());
            }
        }
        if let Some(ns) = &k.watch_namespace {
            if !is_dns_label(ns) {
                return Err(format!(
                    "--watch-namespace {ns:?} is not a valid namespace name"
                ));
            }
        }
        if let Some(sel) = &k.watch_namespace_selector {
            check_label_selector(sel)?;
            if k.watch_namespace.is_some() {
                return Err(
                    "--watch-namespace and --watch-namespace-selector cannot be used together"
                        .into(),
                );
            }
        }
        if !is_dns_subdomain(&k.election_id) {
            return Err(format!(
                "--election-id {:?} is not a valid object name",
                k.election_id
            ));
        }
        if k.election_ttl < 2 {
            return Err("--election-ttl must be at least 2 seconds".into());
        }
        if k.status_update_interval == 0 {
            return Err("--status-update-interval must be at least 1 second".into());
        }
        let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let controller_namespace = env("POD_NAMESPACE")
            .or_else(|| configmap.as_ref().map(|c| c.0.clone()))
            .unwrap_or_else(|| "default".to_string());
        let pod_name = env("POD_NAME");
        let base = pod_name
            .clone()
            .or_else(|| env("HOSTNAME"))
            .unwrap_or_else(|| "pingress".to_string());
        let identity = format!("{base}_{:08x}", fastrand::u32(..));
        let webhook = webhook_settings(k)?;
        Ok(KubeSettings {
            kubeconfig: k.kubeconfig.clone(),
            watch_namespace: k.watch_namespace.clone(),
            watch_namespace_selector: k.watch_namespace_selector.clone(),
            configmap,
            tcp_services: self
                .tcp_services_configmap
                .as_deref()
                .map(|v| parse_object_ref("tcp-services-configmap", v))
                .transpose()?,
            udp_services: self
                .udp_services_configmap
                .as_deref()
                .map(|v| parse_object_ref("udp-services-configmap", v))
                .transpose()?,
            publish_service,
            publish_status_address,
            update_status: k.update_status,
            update_status_on_shutdown: k.update_status_on_shutdown,
            disable_sync_events: self.compat.disable_sync_events,
            apiserver_host: k.apiserver_host.clone(),
            certificate_authority: k.certificate_authority.clone(),
            election_id: k.election_id.clone(),
            election_ttl: k.election_ttl,
            status_update_interval: k.status_update_interval,
            controller_namespace,
            identity,
            pod_name,
            webhook,
            shutdown_grace: std::time::Duration::from_secs(self.post_shutdown_grace_period),
        })
    }

    /// Flags that only make sense in cluster mode, set together with `--manifests`.
    pub fn cluster_flags_in_standalone(&self) -> Vec<&'static str> {
        let k = &self.kube;
        let mut v = Vec::new();
        let defaults = KubeFlags::default_values();
        if k.kubeconfig.is_some() {
            v.push("--kubeconfig");
        }
        if k.watch_namespace.is_some() {
            v.push("--watch-namespace");
        }
        if k.watch_namespace_selector.is_some() {
            v.push("--watch-namespace-selector");
        }
        if k.publish_service.is_some() {
            v.push("--publish-service");
        }
        if k.publish_status_address.is_some() {
            v.push("--publish-status-address");
        }
        if k.election_id != defaults.election_id {
            v.push("--election-id");
        }
        if k.apiserver_host.is_some() {
            v.push("--apiserver-host");
        }
        if k.certificate_authority.is_some() {
            v.push("--certificate-authority");
        }
        v
    }

    /// `--validating-webhook*` in either mode (standalone mode reviews against the folder's
    /// objects, e.g. to check manifests before they are copied in).
    pub fn webhook_settings(&self) -> Result<Option<WebhookSettings>, String> {
        webhook_settings(&self.kube)
    }

    /// Validate the flags shared by both modes (beyond what clap checks).
    pub fn check_common(&self) -> Result<(), String> {
        if let Some(v) = &self.default_ssl_certificate {
            parse_object_ref("default-ssl-certificate", v)?;
        }
        let ports = [
            ("--http-port", self.http_port),
            ("--https-port", self.https_port),
            ("--healthz-port", self.healthz_port),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb && *pa != 0 {
                    return Err(format!("{a} and {b} are both {pa}; they must differ"));
                }
            }
        }
        if self.manifests.is_some() {
            let bad = self.cluster_flags_in_standalone();
            if !bad.is_empty() {
                return Err(format!(
                    "--manifests (standalone mode) cannot be combined with the cluster-mode flag(s) {}",
                    bad.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Validate flags that clap cannot, and derive the compile settings.
    pub fn compile_settings(&self) -> Result<CompileSettings, String> {
        let default_backend_service = self
            .default_backend_service
            .as_deref()
            .map(|v| parse_ns_name("default-backend-service", v))
            .transpose()?;
        let configmap = self
            .kube
            .configmap
            .as_deref()
            .map(|v| parse_ns_name("configmap", v))
            .transpose()?;
        let default_ssl_certificate = self
            .default_ssl_certificate
            .as_deref()
            .map(|v| parse_ns_name("default-ssl-certificate", v))
            .transpose()?;
        if self.annotations_prefix.is_empty() || self.annotations_prefix.ends_with('/') {
            return Err(
                "--annotations-prefix must be a non-empty prefix without a trailing '/'".into(),
            );
        }
        Ok(CompileSettings {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            ingress_class_by_name: self.ingress_class_by_name,
            watch_ingress_without_class: self.watch_ingress_without_class,
            disable_catch_all: self.disable_catch_all,
            disable_service_external_name: self.disable_service_external_name,
            deep_inspect: self.deep_inspect,
            default_backend_service,
            annotations_prefix: self.annotations_prefix.clone(),
            configmap,
            default_ssl_certificate,
            enable_ssl_passthrough: self.enable_ssl_passthrough,
            tcp_services: self
                .tcp_services_configmap
                .as_deref()
                .map(|v| parse_ns_name("tcp-services-configmap", v))
                .transpose()?,
            udp_services: self
                .udp_services_configmap
                .as_deref()
                .map(|v| parse_ns_name("udp-services-configmap", v))
                .transpose()?,
            default_class_adopts_classless: self.manifests.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::parse_from(["pingress", "--manifests", "x"]);
        assert_eq!(cli.http_port, 80);
        let s = cli.compile_settings().unwrap();
        assert_eq!(s.ingress_class, "pingress");
        assert_eq!(s.controller_class, "k8s.io/pingress");
        assert!(!s.watch_ingress_without_class);
        assert_eq!(s.annotations_prefix, "nginx.ingress.kubernetes.io");
    }

    #[test]
    fn ns_name_flags_are_checked() {
        let cli = Cli::parse_from(["pingress", "--default-backend-service", "nope"]);
        assert!(cli
            .compile_settings()
            .unwrap_err()
            .contains("namespace/name"));
        let cli = Cli::parse_from(["pingress", "--default-backend-service", "ns/svc"]);
        assert_eq!(
            cli.compile_settings().unwrap().default_backend_service,
            Some(("ns".into(), "svc".into()))
        );
    }

    #[test]
    fn cluster_flags_have_ingress_nginx_defaults() {
        let cli = Cli::parse_from(["pingress"]);
        assert_eq!(cli.healthz_port, 10254);
        assert_eq!(cli.https_port, 443);
        let k = cli.kube_settings().unwrap();
        assert!(k.update_status && k.update_status_on_shutdown);
        assert_eq!(k.election_id, "ingress-controller-leader");
        assert_eq!(k.election_ttl, 30);
        let cli = Cli::parse_from([
            "pingress",
            "--update-status=false",
            "--update-status-on-shutdown",
            "false",
        ]);
        let k = cli.kube_settings().unwrap();
        assert!(!k.update_status && !k.update_status_on_shutdown);
    }

    #[test]
    fn bad_cluster_flags_fail_with_the_flag_named() {
        let err = |args: &[&str]| {
            let mut v = vec!["pingress"];
            v.extend_from_slice(args);
            let cli = Cli::parse_from(v);
            cli.check_common()
                .and_then(|_| cli.kube_settings().map(|_| ()))
                .unwrap_err()
        };
        assert!(err(&["--configmap", "nope"]).contains("--configmap"));
        assert!(err(&["--publish-service", "Ns/x"]).contains("--publish-service"));
        assert!(err(&["--default-ssl-certificate", "a/b/c"]).contains("--default-ssl-certificate"));
        assert!(err(&["--watch-namespace", "Bad_NS"]).contains("--watch-namespace"));
        assert!(
            err(&["--watch-namespace-selector", "a in (b"]).contains("--watch-namespace-selector")
        );
        assert!(err(&[
            "--watch-namespace",
            "a",
            "--watch-namespace-selector",
            "x=y"
        ])
        .contains("cannot be used together"));
        assert!(
            err(&["--publish-status-address", "1.2.3.4,,x"]).contains("--publish-status-address")
        );
        assert!(err(&["--election-ttl", "1"]).contains("--election-ttl"));
        assert!(err(&["--http-port", "8080", "--healthz-port", "8080"]).contains("must differ"));
        assert!(err(&["--manifests", "d", "--kubeconfig", "k"]).contains("--kubeconfig"));
        assert!(
            err(&["--manifests", "d", "--publish-service", "a/b"]).contains("--publish-service")
        );
    }

    #[test]
    fn label_selectors_are_checked() {
        for ok in [
            "a=b",
            "a",
            "!a",
            "a!=b",
            "a in (x,y),b",
            "app.kubernetes.io/name==x",
        ] {
            assert!(check_label_selector(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a=b=c d", "(", "a in x"] {
            assert!(check_label_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_flags_fail() {
        assert!(Cli::try_parse_from(["pingress", "--no-such-flag"]).is_err());
    }

    /// Every flag of ingress-nginx's pkg/flags/flags.go (v1.x; `--version` aside, it exits) in
    /// the forms its Helm chart and users write: a Deployment's arguments carry over.
    #[test]
    fn every_ingress_nginx_flag_is_accepted() {
        let args = [
            "--apiserver-host=https://10.0.0.1:6443",
            "--certificate-authority=/ca.crt",
            "--kubeconfig=/k",
            "--configmap=ingress-nginx/ingress-nginx-controller",
            "--default-backend-service=ingress-nginx/default-backend",
            "--default-ssl-certificate=ingress-nginx/tls",
            "--publish-service=ingress-nginx/ingress-nginx-controller",
            "--publish-status-address=1.2.3.4",
            "--election-id=ingress-nginx-leader",
            "--election-ttl=30s",
            "--controller-class=k8s.io/ingress-nginx",
            "--ingress-class=nginx",
            "--ingress-class-by-name=true",
            "--watch-ingress-without-class=true",
            "--watch-namespace=apps",
            "--metrics-per-host=true",
            "--metrics-per-undefined-host=false",
            "--exclude-socket-metrics=nginx_ingress_controller_bytes_sent",
            "--tcp-services-configmap=ingress-nginx/tcp",
            "--udp-services-configmap=ingress-nginx/udp",
            "--validating-webhook=:8443",
            "--validating-webhook-certificate=/usr/local/certificates/cert",
            "--validating-webhook-key=/usr/local/certificates/key",
            "--enable-metrics=true",
            "--enable-annotation-validation=false",
            "--enable-topology-aware-routing=true",
            "--disable-leader-election=true",
            "--disable-sync-events",
            "--disable-full-test=false",
            "--disable-catch-all=false",
            "--disable-svc-external-name=false",
            "--deep-inspect=true",
            "--enable-ssl-passthrough",
            "--enable-ssl-chain-completion=false",
            "--report-node-internal-ip-address=false",
            "--report-status-classes=false",
            "--update-status=true",
            "--update-status-on-shutdown=true",
            "--status-update-interval=60",
            "--sync-period=10m",
            "--sync-rate-limit=0.3",
            "--health-check-path=/healthz",
            "--health-check-timeout=10",
            "--healthz-host=0.0.0.0",
            "--healthz-port=10254",
            "--http-port=80",
            "--https-port=443",
            "--default-server-port=8181",
            "--ssl-passthrough-proxy-port=442",
            "--status-port=10246",
            "--stream-port=10247",
            "--profiler-port=10245",
            "--profiler-address=127.0.0.1",
            "--profiling=true",
            "--internal-logger-address=127.0.0.1:11514",
            "--dynamic-configuration-retries=15",
            "--monitor-max-batch-size=10000",
            "--time-buckets=0.005,0.01",
            "--length-buckets=10,20",
            "--size-buckets=10,100",
            "--bucket-factor=0",
            "--max-buckets=100",
            "--maxmind-license-key=x",
            "--maxmind-edition-ids=GeoLite2-City",
            "--maxmind-mirror=http://geoip.local",
            "--maxmind-retries-count=1",
            "--maxmind-retries-timeout=0s",
            "--shutdown-grace-period=0",
            "--post-shutdown-grace-period=10",
            "--annotations-prefix=nginx.ingress.kubernetes.io",
            "--v=2",
        ];
        let cli = Cli::try_parse_from(std::iter::once("pingress").chain(args))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.kube.election_ttl, 30);
        assert!(cli.compat.disable_sync_events && !cli.compat.enable_annotation_validation);
        let notes = ineffective_flags(&args);
        for flag in [
            "--sync-period: Not applicable",
            "--disable-leader-election: Accepted",
        ] {
            assert!(
                notes.iter().any(|n| n.starts_with(flag)),
                "{flag}: {notes:?}"
            );
        }
        assert!(notes.iter().all(|n| !n.starts_with("--enable-metrics")));
        // set to the default: nothing to say
        assert!(notes
            .iter()
            .all(|n| !n.starts_with("--enable-ssl-chain-completion")));
        assert_eq!(
            ineffective_flags(&["--enable-ssl-chain-completion"]).len(),
            1
        );
        assert_eq!(
            flag_state("enable-topology-aware-routing").unwrap().0,
            "not implemented"
        );
        assert_eq!(flag_state("ingress-class").unwrap().0, "supported");
        assert!(flag_state("no-such-flag").is_none());
        assert!(is_ingress_nginx_binary("/nginx-ingress-controller"));
        assert!(is_ingress_nginx_binary("nginx-ingress-controller"));
        assert!(!is_ingress_nginx_binary("--nginx-ingress-controller-x"));
        let ks = cli.kube_settings().unwrap();
        assert!(ks.disable_sync_events);
        assert_eq!(ks.apiserver_host.as_deref(), Some("https://10.0.0.1:6443"));
        // the election TTL as seconds or a Go duration
        for (v, secs) in [("45", 45), ("1m", 60), ("1.5s", 2)] {
            let cli = Cli::try_parse_from(["pingress", "--election-ttl", v]).unwrap();
            assert_eq!(cli.kube.election_ttl, secs, "{v}");
        }
        assert!(Cli::try_parse_from(["pingress", "--election-ttl", "soon"]).is_err());
        // exclusive with --watch-namespace (as ingress-nginx checks), so on its own
        assert!(Cli::try_parse_from(["pingress", "--watch-namespace-selector=team=web"]).is_ok());
    }
}
