//! The `wshub` binary: settings in, server out. The only place that uses
//! `anyhow` and decides exit codes.

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use wshub::{Cli, ConfigError, LogFormat, Server};

/// Chosen for memory per connection: see `Cargo.toml`. The library leaves
/// the allocator to whoever embeds it; this binary picks one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ConfigError::Flag(e)) => e.exit(),
        Err(e) => {
            eprintln!("wshub: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&cli.log_level, cli.log_format);
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wshub: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(config) {
        tracing::error!("{e:#}");
        eprintln!("wshub: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config: wshub::Config) -> anyhow::Result<()> {
    // One thread, one current-thread runtime: measured to give the best
    // fan-out latency (see docs/architecture.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::info!(
            bind = %config.bind,
            port = config.port,
            tls = ?config.tls,
            allowed_origins = ?config.allowed_origins,
            ping_interval = ?config.ping_interval,
            read_timeout = ?config.read_timeout,
            write_timeout = ?config.write_timeout,
            max_message_size = config.max_message_size,
            max_connections = config.max_connections,
            "starting wshub {}",
            env!("CARGO_PKG_VERSION")
        );
        let server = Server::bind(config).await.context("start-up failed")?;
        server.run(shutdown_signal()).await.context("server failed")?;
        Ok(())
    })
}

/// Completes on Ctrl+C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
