//! The pingress binary: flags -> logging -> server.

use clap::Parser;

/// mimalloc: compile is allocation-heavy (a 10k-Ingress rebuild spent over half its time in
/// glibc malloc/free), and so is the request path. Called as `malloc` is (`pingress::alloc`).
#[global_allocator]
static GLOBAL: pingress::alloc::Mimalloc = pingress::alloc::Mimalloc;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // ingress-nginx's Deployment (its Helm chart) runs `/nginx-ingress-controller --flags...`
    // under dumb-init: with only the image swapped, that path arrives as the first argument
    if args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(pingress::settings::is_ingress_nginx_binary)
    {
        args.remove(1);
    }
    let sub = args.get(1).and_then(|a| a.to_str()).map(str::to_string);
    if let Some(sub @ ("check" | "routes")) = sub.as_deref() {
        args.remove(1);
        let raw = args.clone();
        let c = pingress::settings::CheckCli::parse_from(args);
        // the report is the output; the compile's own log lines only with RUST_LOG
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        std::process::exit(if sub == "check" {
            pingress::check::run(&c, &raw)
        } else {
            pingress::check::routes(&c)
        });
    }
    let cli = pingress::settings::Cli::parse_from(&args);
    // RUST_LOG wins; else ingress-nginx's --v: 0 warn, 1-2 info, 3-4 debug, 5+ trace
    let level = match cli.verbosity {
        Some(0) => "warn",
        None | Some(1..=2) => "info",
        Some(3..=4) => "debug",
        Some(_) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = pingress::server::run(cli) {
        eprintln!("pingress: {e:#}");
        std::process::exit(2);
    }
}
