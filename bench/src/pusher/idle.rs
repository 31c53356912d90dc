//! `pusher-idle`: C idle Pusher connections, each subscribed to a channel, and what they cost
//! the server: its RSS with them subscribed minus before, per connection (as `conns`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::{on_control, AppCreds};
use crate::client::{ConnectOptions, Incoming, WsConn};
use crate::connect;
use crate::conns::{default_per_source_ip, ensure_file_limit};
use crate::options::{self, Common, MAX_IDLE_CONNECTIONS};
use crate::procfs::{self, CpuMeter};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::threads::GeneratorThreads;

/// Options of an idle Pusher run.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// `ws://host:port` of the server, and observation (`server_pid` for the memory).
    pub common: Common,
    /// The app.
    pub app: AppCreds,
    /// Connections (default 1,000).
    pub connections: usize,
    /// Channels they are spread over, round robin (default 1: all in one).
    pub channels: usize,
    /// How long to hold them once subscribed (default 5 s).
    pub hold: Duration,
}

impl Default for IdleOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            app: AppCreds::default(),
            connections: 1000,
            channels: 1,
            hold: Duration::from_secs(5),
        }
    }
}

/// Result of an idle Pusher run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Always `pusher-idle`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Server URL.
    pub url: String,
    /// Upgrades wanted, opened, failed.
    pub connections: Connections,
    /// Connections subscribed.
    pub subscribed: u64,
    /// Channels used.
    pub channels: usize,
    /// Held, seconds.
    pub hold_secs: f64,
    /// Subscribed connections the server closed while held.
    pub dropped: u64,
    /// Server RSS before connecting, KiB.
    pub server_rss_before_kib: Option<u64>,
    /// Server RSS at the end of the hold, KiB.
    pub server_rss_after_kib: Option<u64>,
    /// `(after − before) / subscribed`, bytes.
    pub server_rss_per_conn_bytes: Option<f64>,
    /// Server CPU while opening and holding, seconds.
    pub server_cpu_secs: Option<f64>,
    /// Generator CPU, seconds.
    pub generator_cpu_secs: f64,
}

/// Runs the idle Pusher benchmark.
///
/// # Errors
/// Bad options, too few file descriptors, or no connection opening.
pub async fn run(opts: IdleOptions) -> anyhow::Result<IdleReport> {
    options::check_count("--connections", opts.connections, MAX_IDLE_CONNECTIONS)?;
    options::check_count("--channels", opts.channels, opts.connections)?;
    options::check_duration("--hold", opts.hold)?;
    ensure_file_limit(opts.connections as u64 + 64)?;
    let (ws, _) = super::targets(&opts.common.url, opts.common.allow_remote, &opts.app).await?;
    let ws = Arc::new(ws);
    let per_ip = default_per_source_ip().max(1);
    let spread = matches!(ws.addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    anyhow::ensure!(opts.connections / per_ip < 254, "too many connections for 127.0.0.x");
    let threads = GeneratorThreads::start(opts.common.threads)?;
    let progress = Arc::new(Progress::default());
    progress.wanted.store(opts.connections as u64, Relaxed);
    let _reporter = Reporter::start("pusher-idle", progress.clone(), opts.common.progress);
    let pid = opts.common.server_pid;
    let rss_before = pid.and_then(|p| procfs::status_kib(p, "VmRSS").ok());
    let meter = CpuMeter::start(pid);
    let base = ConnectOptions {
        origin: opts.common.origin.clone(),
        read_chunk: 512,
        max_message: 1 << 20,
        ..ConnectOptions::default()
    };
    let opened = connect::open_many(
        &ws,
        0,
        opts.connections,
        connect::DEFAULT_CONCURRENCY,
        |i| ConnectOptions {
            source_ip: spread.then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / per_ip) as u8))),
            ..base.clone()
        },
        &threads,
        &progress,
    )
    .await;
    report::ensure_some_opened(&opened, &ws)?;
    let connections = Connections::of(opts.connections, &opened);
    let prefix = super::run_channel("");
    let dropped = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let mut holders = tokio::task::JoinSet::new();
    let total = opened.conns.len();
    for (i, conn) in opened.conns {
        let channel = format!("{prefix}-{}", i % opts.channels);
        holders.spawn_on(
            hold(conn, channel, ready_tx.clone(), stop_rx.clone(), dropped.clone()),
            threads.for_connection(i),
        );
    }
    drop(ready_tx);
    let mut subscribed = 0u64;
    for _ in 0..total {
        match ready_rx.recv().await {
            Some(true) => subscribed += 1,
            Some(false) => {}
            None => break,
        }
    }
    tokio::time::sleep(opts.hold).await;
    let rss_after = pid.and_then(|p| procfs::status_kib(p, "VmRSS").ok());
    let cpu = meter.finish();
    let dropped = dropped.load(Relaxed);
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while holders.join_next().await.is_some() {}
    })
    .await;
    holders.shutdown().await;
    let per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if subscribed > 0 => Some(report::round1(
            (after as f64 - before as f64) * 1024.0 / subscribed as f64,
        )),
        _ => None,
    };
    Ok(IdleReport {
        mode: "pusher-idle",
        label: opts.common.label.clone(),
        url: opts.common.url.clone(),
        connections,
        subscribed,
        channels: opts.channels,
        hold_secs: opts.hold.as_secs_f64(),
        dropped,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_rss_per_conn_bytes: per_conn,
        server_cpu_secs: cpu.server_cpu_secs,
        generator_cpu_secs: cpu.generator_cpu_secs,
    })
}

/// Subscribes, reports it, then holds the connection (answering pings) until told to stop.
async fn hold(
    mut conn: WsConn,
    channel: String,
    ready: mpsc::UnboundedSender<bool>,
    mut stop: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
) {
    let setup = async {
        super::established(&mut conn).await?;
        super::subscribe(&mut conn, &channel, None).await
    };
    let ok = setup.await.is_ok();
    let _ = ready.send(ok);
    if !ok {
        return;
    }
    drop(channel);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                conn.close(1000, Duration::from_millis(100)).await;
                return;
            }
            event = conn.read_event() => match event {
                Ok(Incoming::Message(message)) => {
                    on_control(&mut conn, &message.data);
                }
                Ok(_) | Err(_) => {
                    if !*stop.borrow() {
                        dropped.fetch_add(1, Relaxed);
                    }
                    return;
                }
            },
        }
        if conn.has_queued() && conn.flush().await.is_err() {
            dropped.fetch_add(1, Relaxed);
            return;
        }
    }
}

impl IdleReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = format!(
            "pusher-idle against {} ({})\n{} of {} connections subscribed ({} channels), held {:.1} s, {} dropped\n",
            self.label.as_deref().unwrap_or("?"),
            self.url,
            self.subscribed,
            self.connections.wanted,
            self.channels,
            self.hold_secs,
            self.dropped
        );
        if let (Some(before), Some(after)) = (self.server_rss_before_kib, self.server_rss_after_kib) {
            out.push_str(&format!(
                "server RSS: {:.1} MiB before, {:.1} MiB after: {} B per connection\n",
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                self.server_rss_per_conn_bytes
                    .map_or_else(|| "?".into(), report::thousands)
            ));
        }
        out.push_str(&format!("generator CPU {:.2} s", self.generator_cpu_secs));
        out
    }
}
