//! The pingress binary: flags -> logging -> server.

use clap::Parser;

fn main() {
    let cli = pingress::settings::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
