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
    // Current-thread runtimes, measured to give the best fan-out latency
    // (see docs/architecture.md): one accepts and speaks HTTP, one runs the
    // upgraded connections (`Server::with_connection_runtime` says why).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let connections = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the connections' runtime")?;
    let connection_runtime = connections.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let connection_thread = std::thread::Builder::new()
        .name("wshub-connections".into())
        .spawn(move || {
            connections.block_on(async {
                tokio::spawn(release_freed_memory());
                let _ = stopped.await;
            })
        })
        .context("cannot start the connections' thread")?;
    let result = runtime.block_on(async {
        tokio::spawn(release_freed_memory());
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
        let server = server.with_connection_runtime(connection_runtime);
        server.run(shutdown_signal()).await.context("server failed")?;
        Ok(())
    });
    // The server has waited for its connections; the thread has nothing left.
    drop(stop);
    let _ = connection_thread.join();
    result
}

/// Gives the pages this thread's allocator has freed back to the system,
/// once a second, for as long as the runtime lives.
///
/// mimalloc returns freed pages lazily, on its next call from the thread
/// that owns them: a server that goes quiet after a burst of handshakes
/// would keep the burst's buffers resident forever (a few megabytes, and
/// idle memory per connection varied by a third from run to run).
async fn release_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // SAFETY: `mi_collect` takes no pointers and may be called on any
        // thread at any time; it only acts on this thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
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
