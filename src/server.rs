//! Wiring of the Pingora server: settings -> source (background service) -> proxy service.
//! The proxy service depends on the source, so no request is served before the first table.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::edge::{Edge, EdgeSettings};
use crate::health::{self, HealthService};
use crate::proxy::Proxy;
use crate::publish::{new_store, Publisher};
use crate::settings::Cli;
use crate::source::files::{self, FileSource};
use crate::source::kube::{webhook, KubeSource};
use crate::tls::{self as tls_rt, SniResolver};

/// Seconds Pingora waits for its runtimes to stop after the grace period.
pub const RUNTIME_SHUTDOWN_TIMEOUT: u64 = 1;

/// Pingora's settings; `upstream_pool_per_thread` is ConfigMap `upstream-keepalive-connections`
/// (ingress-nginx: idle upstream connections kept per worker).
pub fn server_conf(cli: &Cli, upstream_pool_per_thread: usize) -> ServerConf {
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    ServerConf {
        threads,
        work_stealing: cli.work_stealing,
        upstream_keepalive_pool_size: upstream_pool_per_thread.saturating_mul(threads),
        // On SIGTERM Pingora stops accepting, then keeps the runtimes (and so the in-flight
        // requests) alive for `grace_period_seconds` (default 300 s; Kubernetes kills us after
        // 30 s), then drops them, waiting at most `graceful_shutdown_timeout_seconds`.
        // Dropping a runtime cancels its tasks, so the drain is the grace period.
        grace_period_seconds: Some(cli.post_shutdown_grace_period),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_TIMEOUT),
        ..ServerConf::default()
    }
}

/// Build and run the server until a signal stops it.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    cli.check_common().map_err(anyhow::Error::msg)?;
    // ingress-nginx flags accepted for a Deployment's sake that change nothing here
    let args: Vec<String> = std::env::args().skip(1).collect();
    for note in crate::settings::ineffective_flags(&args) {
        tracing::warn!("{note}");
    }
    let settings = cli.compile_settings().map_err(anyhow::Error::msg)?;
    if let Some(dir) = &cli.manifests {
        if !dir.is_dir() {
            bail!("--manifests {}: not a folder", dir.display());
        }
    }
    let addr = format!("{}:{}", cli.bind_address, cli.http_port);
    addr.parse::<std::net::SocketAddr>()
        .with_context(|| format!("--bind-address/--http-port give an invalid address {addr:?}"))?;
    let health_listener = if cli.healthz_port == 0 {
        None
    } else {
        // --healthz-host, else --bind-address
        let host = cli
            .compat
            .healthz_host
            .as_deref()
            .unwrap_or(&cli.bind_address);
        let haddr = match host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{}", cli.healthz_port),
            Err(_) => format!("{host}:{}", cli.healthz_port),
        };
        let sa: std::net::SocketAddr = haddr.parse().with_context(|| {
            format!(
                "--healthz-host/--bind-address/--healthz-port give an invalid address {haddr:?}"
            )
        })?;
        Some(health::bind(sa).with_context(|| format!("--healthz-port: cannot listen on {sa}"))?)
    };
    // Cluster mode: resolve the API configuration before starting anything, so a bad
    // kubeconfig fails fast.
    let kube = match &cli.manifests {
        Some(_) => None,
        None => {
            let ks = cli.kube_settings().map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            let config = rt.block_on(crate::source::kube::client_config(&ks))?;
            Some((ks, config))
        }
    };
    let https_addr = format!("{}:{}", cli.bind_address, cli.https_port);
    https_addr
        .parse::<std::net::SocketAddr>()
        .with_context(|| {
            format!("--bind-address/--https-port give an invalid address {https_addr:?}")
        })?;
    // ssl-protocols / ssl-ciphers are read once, here: Pingora builds the rustls server
    // configuration when the listener starts.
    // Standalone: from the manifest folder; cluster mode: the controller ConfigMap, read once.
    let start_snap = match (&cli.manifests, &kube) {
        (Some(dir), _) => files::load_dir(dir),
        (None, Some((_, config))) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(crate::source::kube::startup_snapshot(config, &settings))
        }
        (None, None) => bail!("internal: neither --manifests nor cluster mode"),
    };
    let start_cfg = crate::compile::compile(&start_snap, &settings, None)
        .table
        .config;
    tls_rt::install_crypto_provider(&start_cfg.tls);
    let fake = tls_rt::fake_certificate().map_err(anyhow::Error::msg)?;

    crate::metrics::init(
        crate::metrics::ControllerLabels {
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
            class: cli.controller_class.clone(),
            pod: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_default(),
        },
        cli.metrics_per_host,
    );
    crate::metrics::init_request_filters(
        cli.compat.enable_metrics,
        cli.metrics_per_undefined_host,
        &cli.exclude_socket_metrics,
    );
    let mut server = Server::new_with_opt_and_conf(
        None,
        server_conf(&cli, start_cfg.upstream_keepalive_connections),
    );
    server.bootstrap();

    let store = new_store();
    let publisher = Arc::new(Publisher::new(store.clone(), settings.clone()));
    let readiness = publisher.readiness();
    if let Some(l) = health_listener {
        server.add_service(background_service(
            "health",
            HealthService::new(
                l,
                publisher.readiness(),
                crate::health::HealthOptions {
                    check_path: cli.compat.health_check_path.clone(),
                    metrics: cli.compat.enable_metrics,
                    debug: cli
                        .enable_debug_endpoints
                        .then(|| publisher.clone() as Arc<dyn crate::health::DebugView>),
                },
            ),
        ));
    }
    if settings.tcp_services.is_some() || settings.udp_services.is_some() {
        let bind: std::net::IpAddr = cli.bind_address.parse().with_context(|| {
            format!("--bind-address {:?} is not an IP address", cli.bind_address)
        })?;
        server.add_service(background_service(
            "tcp and udp services",
            crate::l4::L4Service {
                store: store.clone(),
                published: publisher.subscribe(),
                bind,
                reserved: vec![cli.http_port, cli.https_port, cli.healthz_port],
            },
        ));
    }
    let webhook = cli.webhook_settings().map_err(anyhow::Error::msg)?;
    let mut add_webhook = |latest| -> anyhow::Result<()> {
        let Some(ws) = &webhook else {
            return Ok(());
        };
        let tls = webhook::tls_config(ws).map_err(anyhow::Error::msg)?;
        let listener = health::bind(ws.addr)
            .with_context(|| format!("--validating-webhook: cannot listen on {}", ws.addr))?;
        let reviewer = webhook::Reviewer {
            latest,
            settings: settings.clone(),
        };
        tracing::info!(addr = %ws.addr, path = webhook::PATH, "validating admission webhook enabled");
        server.add_service(background_service(
            "admission webhook",
            webhook::WebhookService::new(listener, tls, reviewer),
        ));
        Ok(())
    };
    let source = match (&cli.manifests, kube) {
        (Some(dir), _) => {
            let source = FileSource::new(dir.clone(), publisher);
            add_webhook(source.latest.clone())?;
            server.add_service(background_service("manifest source", source))
        }
        (None, Some((ks, config))) => {
            let source = KubeSource::new(config, ks, settings.clone(), publisher);
            add_webhook(source.latest.clone())?;
            server.add_service(background_service("kubernetes source", source))
        }
        (None, None) => bail!("internal: neither --manifests nor cluster mode"),
    };

    let resolver = Arc::new(SniResolver::new(store.clone(), fake));
    // connection-level settings are read once, like the listener's TLS protocols
    let edge = EdgeSettings {
        client_header_timeout: start_cfg.client_header_timeout,
        keep_alive: start_cfg.keep_alive,
        keep_alive_requests: start_cfg.keep_alive_requests,
        max_connections: start_cfg
            .max_worker_connections
            .saturating_mul(server.configuration.threads),
        proxy_protocol: start_cfg
            .forwarded
            .use_proxy_protocol
            .then(|| Arc::new(start_cfg.forwarded.proxy_real_ip_cidr.clone())),
        proxy_protocol_timeout: start_cfg.forwarded.proxy_protocol_header_timeout,
    };
    let proxy_protocol =
        edge.proxy_protocol
            .clone()
            .map(|trusted| crate::edge::ProxyProtocolBeforeTls {
                timeout: start_cfg.forwarded.proxy_protocol_header_timeout,
                trusted,
            });
    // the HTTPS port's front door: the PROXY header, then (with --enable-ssl-passthrough) the
    // ClientHello's server name decides between passthrough and termination here
    let pre_tls: Option<Arc<dyn pingora::listeners::PreTlsProcess>> = if cli.enable_ssl_passthrough
    {
        tracing::info!("--enable-ssl-passthrough: TLS connections for ssl-passthrough hosts are relayed to their backends untouched");
        Some(Arc::new(crate::l4::passthrough::Passthrough {
            store: store.clone(),
            proxy_protocol,
            hello_timeout: start_cfg.client_header_timeout,
        }))
    } else {
        proxy_protocol.map(|p| Arc::new(p) as Arc<dyn pingora::listeners::PreTlsProcess>)
    };
    let mut app = HttpProxy::new(Proxy::new(store), server.configuration.clone());
    app.handle_init_modules();
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    opts.keepalive_request_limit = Some(edge.keep_alive_requests);
    opts.h2_idle_timeout = (edge.keep_alive > 0).then(|| Duration::from_secs(edge.keep_alive));
    app.server_options = Some(opts);
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(start_cfg.http2_max_concurrent_streams);
    app.h2_options = Some(h2);
    if edge.proxy_protocol.is_some() {
        tracing::info!("use-proxy-protocol: every connection must start with a PROXY protocol header (read at start; a change needs a restart)");
    }
    let mut proxy = Service::new(
        "Pingora HTTP Proxy Service".to_string(),
        Edge::new(app, edge),
    );
    // No L4 read buffer on the plain listener: Pingora's default (64 KiB, allocated at accept)
    // made every idle connection cost about 80 KiB; HTTP parsing reads into its own buffers.
    proxy.add_listener(
        ListenerConfig::tcp(addr.clone()).l4_buffer(L4BufferSettings::default().read(0)),
    );
    proxy.add_tls_with_settings(
        &https_addr,
        None,
        tls_rt::listener_settings(resolver, &start_cfg.tls, start_cfg.use_http2)?,
    );
    if let Some(cb) = pre_tls {
        proxy.endpoints().set_pre_tls_callback(cb);
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&source);

    tracing::info!(%addr, %https_addr, "pingress starting");
    server.run(RunArgs {
        shutdown_signal: Box::new(TerminateAfterGrace {
            grace: std::time::Duration::from_secs(cli.shutdown_grace_period),
            readiness,
        }),
    });
    Ok(())
}

/// Pingora's Unix signals, with ingress-nginx's `--shutdown-grace-period` in front of
/// SIGTERM: the probes fail at once, the proxy serves on for `grace`, then Pingora's graceful
/// shutdown starts (listeners stop, in-flight requests get `--post-shutdown-grace-period`).
/// SIGINT during the wait stops at once, as it does otherwise.
struct TerminateAfterGrace {
    grace: std::time::Duration,
    readiness: crate::health::Readiness,
}

#[async_trait::async_trait]
impl pingora::server::ShutdownSignalWatch for TerminateAfterGrace {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        use pingora::server::ShutdownSignal;
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install the signal handlers; SIGTERM stops at once");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        self.readiness.set_terminating();
        if !self.grace.is_zero() {
            tracing::info!(
                grace_s = self.grace.as_secs(),
                "SIGTERM: serving on while the probes fail (--shutdown-grace-period)"
            );
            tokio::select! {
                _ = tokio::time::sleep(self.grace) => {}
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Cli;
    use clap::Parser;

    #[test]
    fn proxy_threads_run_one_runtime_each_unless_work_stealing_is_asked_for() {
        let cli = Cli::parse_from(["pingress", "--manifests", "x", "--threads", "3"]);
        let conf = server_conf(&cli, 320);
        assert_eq!((conf.threads, conf.work_stealing), (3, false));
        assert_eq!(
            conf.upstream_keepalive_pool_size, 960,
            "per thread, as per worker"
        );
        let cli = Cli::parse_from(["pingress", "--manifests", "x", "--work-stealing=true"]);
        assert!(server_conf(&cli, 320).work_stealing);
        assert!(Cli::try_parse_from(["pingress", "--work-stealing=maybe"]).is_err());
    }
}
