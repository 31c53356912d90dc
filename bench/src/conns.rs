//! `conns`: open N idle connections, hold them, and see what they cost the server.
//!
//! The cost is the server's resident memory with the connections open minus before, divided by
//! the number open (`/proc/PID/status` `VmRSS`, with `--server-pid`). Clients keep answering pings
//! while idle, so a server's keepalive does not count as a drop.
//!
//! Past one source address's ephemeral ports (about 28k here), connections are spread over
//! 127.0.0.1, 127.0.0.2, …: each socket binds its source address with
//! `IP_BIND_ADDRESS_NO_PORT` before connecting.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::client::{ConnectOptions, Incoming, WsConn};
use crate::connect;
use crate::latency::LatencySummary;
use crate::options::{self, Common, MAX_IDLE_CONNECTIONS};
use crate::procfs::{self, CpuMeter};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::target::Target;
use crate::threads::GeneratorThreads;

/// Files the generator keeps for itself besides its sockets.
const SPARE_FILES: u64 = 64;

/// Options of an idle-connections run.
#[derive(Debug, Clone)]
pub struct ConnsOptions {
    /// Target and observation (`server_pid` gives the memory per connection).
    pub common: Common,
    /// Connections to open (default 1,000).
    pub connections: usize,
    /// How long to hold them once open (default 5 s); the server's RSS is read at the end.
    pub hold: Duration,
    /// Upgrades in flight at once (default 64).
    pub concurrency: usize,
    /// Connections per source address before moving to the next 127.0.0.x; `None` (default)
    /// takes 90 % of the kernel's ephemeral port range (at most 60,000).
    pub per_source_ip: Option<usize>,
    /// Index of this process's first connection, when several generator processes share the
    /// load (one process may hold about 15,000 sockets here): each then takes its own
    /// source addresses. Default 0.
    pub first_index: usize,
}

impl Default for ConnsOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            connections: 1000,
            hold: Duration::from_secs(5),
            concurrency: connect::DEFAULT_CONCURRENCY,
            per_source_ip: None,
            first_index: 0,
        }
    }
}

/// Result of an idle-connections run.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsReport {
    /// Always `"conns"`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Target URL.
    pub url: String,
    /// Connections wanted, opened and failed.
    pub connections: Connections,
    /// Opened connections per second of opening.
    pub connects_per_sec: f64,
    /// Time from socket creation to a checked `101`, per connection.
    pub handshake: LatencySummary,
    /// Source addresses used.
    pub source_ips: usize,
    /// How long they were held, seconds.
    pub hold_secs: f64,
    /// Connections the server closed while they were held.
    pub dropped: u64,
    /// The server's RSS before connecting, KiB.
    pub server_rss_before_kib: Option<u64>,
    /// The server's RSS at the end of the hold, KiB.
    pub server_rss_after_kib: Option<u64>,
    /// `(after − before) / opened`, bytes.
    pub server_rss_per_conn_bytes: Option<f64>,
    /// Server CPU while opening and holding, seconds.
    pub server_cpu_secs: Option<f64>,
    /// Generator CPU while opening and holding, seconds.
    pub generator_cpu_secs: f64,
}

/// Runs the idle-connections benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, too few file descriptors for the
/// sockets, or no connection opening at all.
pub async fn run(opts: ConnsOptions) -> anyhow::Result<ConnsReport> {
    options::check_count("--connections", opts.connections, MAX_IDLE_CONNECTIONS)?;
    options::check_count("--concurrency", opts.concurrency, 10_000)?;
    options::check_duration("--hold", opts.hold)?;
    ensure_file_limit(opts.connections as u64 + SPARE_FILES)?;
    let target = Arc::new(Target::resolve(&opts.common.url, opts.common.allow_remote).await?);
    let per_ip = opts.per_source_ip.unwrap_or_else(default_per_source_ip).max(1);
    let spread = matches!(target.addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let (first, last) = (opts.first_index, opts.first_index + opts.connections - 1);
    let source_ips = if spread { last / per_ip - first / per_ip + 1 } else { 1 };
    anyhow::ensure!(
        last / per_ip < 254,
        "connection {last} at {per_ip} per source address is past 127.0.0.254"
    );

    let threads = GeneratorThreads::start(opts.common.threads)?;
    let progress = Arc::new(Progress::default());
    progress.wanted.store(opts.connections as u64, Relaxed);
    let _reporter = Reporter::start("conns", progress.clone(), opts.common.progress);
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
        &target,
        first,
        opts.connections,
        opts.concurrency,
        |i| ConnectOptions {
            source_ip: spread.then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / per_ip) as u8))),
            ..base.clone()
        },
        &threads,
        &progress,
    )
    .await;
    report::ensure_some_opened(&opened, &target)?;
    let connections = Connections::of(opts.connections, &opened);
    let connects_per_sec = report::round1(opened.conns.len() as f64 / opened.elapsed.as_secs_f64().max(1e-9));
    let handshake = opened.handshake.summary();

    let dropped = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = tokio::task::JoinSet::new();
    for (i, conn) in opened.conns {
        holders.spawn_on(hold(conn, stop_rx.clone(), dropped.clone()), threads.for_connection(i));
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
        (Some(before), Some(after)) if connections.opened > 0 => Some(report::round1(
            (after as f64 - before as f64) * 1024.0 / connections.opened as f64,
        )),
        _ => None,
    };
    Ok(ConnsReport {
        mode: "conns",
        label: opts.common.label.clone(),
        url: target.url.clone(),
        connections,
        connects_per_sec,
        handshake,
        source_ips,
        hold_secs: opts.hold.as_secs_f64(),
        dropped,
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_rss_per_conn_bytes: per_conn,
        server_cpu_secs: cpu.server_cpu_secs,
        generator_cpu_secs: cpu.generator_cpu_secs,
    })
}

/// Keeps one connection open, answering pings, until told to stop.
async fn hold(mut conn: WsConn, mut stop: watch::Receiver<bool>, dropped: Arc<AtomicU64>) {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                conn.close(1000, Duration::from_millis(100)).await;
                return;
            }
            event = conn.read_event() => match event {
                Ok(Incoming::Message(_)) => {}
                Ok(Incoming::Closed(_) | Incoming::Eof) | Err(_) => {
                    if !*stop.borrow() {
                        dropped.fetch_add(1, Relaxed);
                    }
                    conn.flush().await.ok();
                    return;
                }
            },
        }
        if conn.flush().await.is_err() {
            dropped.fetch_add(1, Relaxed);
            return;
        }
    }
}

/// 90 % of the ephemeral port range (`ip_local_port_range`), at most 60,000.
pub(crate) fn default_per_source_ip() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>());
            let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
            Some((high.saturating_sub(low) + 1) * 9 / 10)
        })
        .unwrap_or(25_000)
        .clamp(1, 60_000)
}

/// Raises the soft open-files limit towards the hard one, and fails early when `needed` files
/// are still more than allowed: better than thousands of `EMFILE` failures mid-run.
pub(crate) fn ensure_file_limit(needed: u64) -> anyhow::Result<()> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Ok(());
        }
        if (limit.rlim_cur as u64) < needed && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
        anyhow::ensure!(
            limit.rlim_cur as u64 >= needed,
            "{needed} open files needed but this process may open {}: run several generators \
             with fewer --connections each",
            limit.rlim_cur
        );
    }
    Ok(())
}
