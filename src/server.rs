//! Wiring of the Pingora server: settings -> source (background service) -> proxy service.
//! The proxy service depends on the source, so no request is served before the first table.

use std::sync::Arc;

use anyhow::{bail, Context};
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use crate::proxy::Proxy;
use crate::publish::{new_store, Publisher};
use crate::settings::Cli;
use crate::source::files::{self, FileSource};
use crate::tls::{self as tls_rt, SniResolver};

/// Upstream keep-alive pool size (ingress-nginx: 320 idle connections per worker).
const UPSTREAM_POOL: usize = 1024;

pub fn server_conf(cli: &Cli) -> ServerConf {
    ServerConf {
        threads: cli.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        upstream_keepalive_pool_size: UPSTREAM_POOL,
        // Pingora waits 300 s after SIGTERM by default; Kubernetes kills us after 30 s.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(cli.shutdown_grace_period),
        ..ServerConf::default()
    }
}

/// Build and run the server until a signal stops it.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.compile_settings().map_err(anyhow::Error::msg)?;
    let Some(dir) = cli.manifests.clone() else {
        bail!(
            "Kubernetes mode (watching a cluster) is not implemented yet in this version; \
             run standalone with --manifests DIR (see README)"
        );
    };
    if !dir.is_dir() {
        bail!("--manifests {}: not a folder", dir.display());
    }
    let addr = format!("{}:{}", cli.bind_address, cli.http_port);
    addr.parse::<std::net::SocketAddr>()
        .with_context(|| format!("--bind-address/--http-port give an invalid address {addr:?}"))?;
    let https_addr = format!("{}:{}", cli.bind_address, cli.https_port);
    https_addr
        .parse::<std::net::SocketAddr>()
        .with_context(|| {
            format!("--bind-address/--https-port give an invalid address {https_addr:?}")
        })?;
    if cli.enable_ssl_passthrough {
        tracing::warn!(
            "--enable-ssl-passthrough: {}",
            crate::annotations::ssl::PASSTHROUGH_UNSUPPORTED
        );
    }
    // ssl-protocols / ssl-ciphers are read once, here: Pingora builds the rustls server
    // configuration when the listener starts.
    let start_cfg = {
        let snap = files::load_dir(&dir);
        crate::compile::compile(&snap, &settings, None).table.config
    };
    tls_rt::install_crypto_provider(&start_cfg.tls);
    let fake = tls_rt::fake_certificate().map_err(anyhow::Error::msg)?;

    let mut server = Server::new_with_opt_and_conf(None, server_conf(&cli));
    server.bootstrap();

    let store = new_store();
    let publisher = Arc::new(Publisher::new(store.clone(), settings));
    let source = server.add_service(background_service(
        "manifest source",
        FileSource::new(dir, publisher),
    ));

    let resolver = Arc::new(SniResolver::new(store.clone(), fake));
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Proxy::new(store));
    proxy.add_tcp(&addr);
    proxy.add_tls_with_settings(&https_addr, None, tls_rt::listener_settings(resolver)?);
    if let Some(app) = proxy.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&source);

    tracing::info!(%addr, %https_addr, "pingress starting");
    server.run(RunArgs::default());
    Ok(())
}
