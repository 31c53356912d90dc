//! The `wshub` binary: settings in, server out. The only place that uses
//! `anyhow` and decides exit codes.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use wshub::config::format_size;
use wshub::history::Backend;
use wshub::{Cli, ConfigError, Server};

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
    let logs = match wshub::logging::init(&cli.log_level, cli.log_format, cli.log_buffer_lines as usize) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("wshub: {e}");
            std::process::exit(2);
        }
    };
    let log_filter = if cli.log_level_from_rust_log {
        format!("{} (from RUST_LOG)", cli.log_level)
    } else {
        cli.log_level.clone()
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wshub: {e}");
            logs.flush();
            std::process::exit(2);
        }
    };
    let status = match run(config, &log_filter) {
        Ok(()) => 0,
        Err(e) => {
            // Said once: in the log when errors are logged, else plainly.
            let message = describe(&e);
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{message}");
            } else {
                eprintln!("wshub: {message}");
            }
            1
        }
    };
    // Written out before exiting: the shutdown lines are the last ones.
    logs.flush();
    std::process::exit(status);
}

/// An error and its causes, each said once (an error whose message already
/// includes its source's is not followed by that source again), with a
/// hint for a port that is taken.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    let port_taken = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    });
    if port_taken {
        text.push_str(" (another process listens there: stop it, or choose another --port)");
    }
    text
}

/// Where to point a browser and clients: `http://127.0.0.1:8080 (page),
/// ws://127.0.0.1:8080/echo, ws://127.0.0.1:8080/ws`. An address bound to
/// every interface is shown as the loopback one, which reaches it.
fn urls(addr: SocketAddr, tls: bool) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let port = addr.port();
    let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
    let mut text = format!("{http}://{host}:{port} (page), {ws}://{host}:{port}/echo, {ws}://{host}:{port}/ws");
    if addr.ip().is_unspecified() {
        text.push_str(" (bound to every interface)");
    }
    text
}

/// The settings worth seeing at start-up, as `name=value` with the values
/// written the way the flags take them (`54s`, `1MiB`, `self-signed`).
fn settings(config: &wshub::Config, log_filter: &str) -> String {
    let tls = config
        .tls
        .as_ref()
        .map_or_else(|| "off".to_owned(), ToString::to_string);
    let origins = if config.allowed_origins.is_empty() {
        "localhost,127.0.0.1,[::1]".to_owned()
    } else {
        config.allowed_origins.join(",")
    };
    let jwt = match &config.auth {
        None => "off".to_owned(),
        Some(wshub::auth::AuthSource::Secret(_)) => "secret".to_owned(),
        Some(wshub::auth::AuthSource::PublicKey(path)) => path.display().to_string(),
    };
    let history = match (&config.redis, &config.history.backend) {
        (Some(_), _) => "redis".to_owned(),
        (None, Backend::Sqlite(path)) => format!("sqlite history_path={}", path.display()),
        (None, Backend::Memory) => "memory".to_owned(),
        (None, Backend::None) => "none".to_owned(),
    };
    let redis = config
        .redis
        .as_deref()
        .map_or_else(|| "off".to_owned(), without_password);
    let duration = |d| humantime::format_duration(d).to_string();
    [
        ("bind", config.bind.to_string()),
        ("port", config.port.to_string()),
        ("tls", tls),
        ("workers", config.workers.to_string()),
        ("allowed_origin", origins),
        ("jwt", jwt),
        ("ping_interval", duration(config.ping_interval)),
        ("read_timeout", duration(config.read_timeout)),
        ("write_timeout", duration(config.write_timeout)),
        ("max_message_size", format_size(config.max_message_size)),
        ("max_connections", config.max_connections.to_string()),
        ("history", history),
        ("redis", redis),
        ("log_level", log_filter.to_owned()),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={value}"))
    .collect::<Vec<_>>()
    .join(" ")
}

/// `redis://user:secret@host/0` as `redis://user:***@host/0`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn run(config: wshub::Config, log_filter: &str) -> anyhow::Result<()> {
    // Current-thread runtimes, measured to give the best fan-out latency
    // (see docs/architecture.md): this one accepts (and, with one worker,
    // serves everything); the server starts one per worker beside it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if config.workers > 1 {
            // The workers run their own (below); this thread accepts and
            // talks to Redis.
            tokio::spawn(release_freed_memory());
        }
        tracing::info!(
            "starting wshub {} {}",
            env!("CARGO_PKG_VERSION"),
            settings(&config, log_filter)
        );
        let tls = config.tls.is_some();
        let server = Server::bind(config).await.context("start-up failed")?;
        let addr = server.local_addr();
        tracing::info!(%addr, "listening on {}", urls(addr, tls));
        let server = server.with_worker_task(|| Box::pin(release_freed_memory()));
        server.run(shutdown_signal()).await.context("server failed")?;
        Ok(())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_reachable_address_and_the_scheme() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            urls(any, false),
            "http://127.0.0.1:8080 (page), ws://127.0.0.1:8080/echo, ws://127.0.0.1:8080/ws (bound to every interface)"
        );
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        assert_eq!(
            urls(v6, true),
            "https://[::1]:8443 (page), wss://[::1]:8443/echo, wss://[::1]:8443/ws"
        );
    }

    #[test]
    fn settings_read_like_flags() {
        let mut config = wshub::Config::default();
        config.tls = Some(wshub::TlsSource::SelfSigned);
        config.workers = 3;
        let text = settings(&config, "info");
        for wanted in [
            "tls=self-signed",
            "workers=3",
            "ping_interval=54s",
            "max_message_size=1MiB",
            "history=sqlite history_path=wshub.sqlite",
            "redis=off",
        ] {
            assert!(text.contains(wanted), "{wanted} in {text}");
        }
        assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            without_password("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(without_password("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let bind = wshub::ServerError::Bind {
            addr: "0.0.0.0:80".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        let text = describe(&anyhow::Error::new(bind).context("start-up failed"));
        assert!(
            text.starts_with("start-up failed: cannot listen on 0.0.0.0:80: "),
            "{text}"
        );
        assert_eq!(text.matches("address in use").count(), 1, "{text}");
        assert!(text.contains("choose another --port"), "{text}");
    }
}
