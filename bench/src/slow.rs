//! `slow`: K clients that stop reading right after the handshake, in a room with healthy ones.
//!
//! A server that writes to every member in turn, or waits on a full socket, lets one stalled
//! reader delay everybody. This mode measures what the healthy clients see (latency, loss) while
//! the stalled ones sit in the room, then asks each stalled socket whether the server gave up on
//! it: after the run it reads what is buffered until a close frame, end of stream or reset
//! (evicted) or until nothing more comes for a while (still open).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::client::{Incoming, WsConn};
use crate::options::{self, Common, MAX_BUSY_CONNECTIONS};
use crate::payload::Format;
use crate::procfs::CpuReport;
use crate::report::Connections;
use crate::room::{self, RoomPlan, RoomStats};
use crate::threads::GeneratorThreads;

/// How long a stalled socket may stay quiet (after its backlog is read) before it is judged
/// still open.
const EVICTION_QUIET: Duration = Duration::from_secs(1);
/// Overall limit for reading one stalled socket's backlog.
const EVICTION_LIMIT: Duration = Duration::from_secs(5);

/// Options of a slow-consumer run.
#[derive(Debug, Clone)]
pub struct SlowOptions {
    /// Target (a chat endpoint) and observation.
    pub common: Common,
    /// Clients in the room, stalled ones included (default 100).
    pub clients: usize,
    /// Clients that never read (default 10).
    pub stalled: usize,
    /// Healthy clients that send (default 10).
    pub senders: usize,
    /// Total messages/s across senders; `None` is a closed loop (default 100 msgs/s, so that
    /// the run measures delay and loss at a known load).
    pub rate: Option<f64>,
    /// Sending time (default 10 s).
    pub duration: Duration,
    /// Drain time after sending (default 5 s).
    pub drain: Duration,
    /// Payload bytes per message (default 16 KiB: a stalled reader is only noticed once the
    /// server's socket send buffer, up to 4 MiB on Linux, is full as well, and large messages
    /// fill it without millions of deliveries to the healthy clients).
    pub size: usize,
    /// Binary or text frames.
    pub format: Format,
}

impl Default for SlowOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            clients: 100,
            stalled: 10,
            senders: 10,
            rate: Some(100.0),
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(5),
            size: 16 * 1024,
            format: Format::Binary,
        }
    }
}

/// Result of a slow-consumer run.
#[derive(Debug, Clone, Serialize)]
pub struct SlowReport {
    /// Always `"slow"`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Target URL.
    pub url: String,
    /// All connections (stalled and healthy).
    pub connections: Connections,
    /// Stalled clients that connected.
    pub stalled: usize,
    /// Stalled clients the server closed.
    pub evicted: usize,
    /// How each stalled client ended: `close 1008`, `eof`, `reset`, `still open`, …
    pub eviction: BTreeMap<String, usize>,
    /// What the healthy clients saw.
    pub healthy: RoomStats,
    /// CPU of generator and server from the start of sending to the end of the drain.
    pub cpu: CpuReport,
}

/// Runs the slow-consumer benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, no healthy client connecting, or
/// clients that never receive the sync probe.
pub async fn run(opts: SlowOptions) -> anyhow::Result<SlowReport> {
    options::check_count("--clients", opts.clients, MAX_BUSY_CONNECTIONS)?;
    anyhow::ensure!(
        opts.stalled < opts.clients,
        "--stalled must leave at least one healthy client in --clients"
    );
    let healthy = opts.clients - opts.stalled;
    let plan = RoomPlan {
        clients: healthy,
        senders: opts.senders.min(healthy),
        stalled: opts.stalled,
        rate: opts.rate,
        duration: opts.duration,
        drain: opts.drain,
        size: opts.size,
        format: opts.format,
    };
    // Declared first, dropped last: the stalled sockets read below belong to these threads.
    let threads = GeneratorThreads::start(opts.common.threads)?;
    let outcome = room::run("slow", &opts.common, &plan, &threads).await?;
    let stalled = outcome.stalled.len();
    let mut checks = tokio::task::JoinSet::new();
    for (i, conn) in outcome.stalled {
        checks.spawn_on(how_it_ended(conn), threads.for_connection(i));
    }
    let mut eviction = BTreeMap::new();
    let mut evicted = 0;
    while let Some(result) = checks.join_next().await {
        let (gone, how) = result.unwrap_or_else(|e| (false, format!("check failed: {e}")));
        evicted += usize::from(gone);
        *eviction.entry(how).or_default() += 1;
    }
    Ok(SlowReport {
        mode: "slow",
        label: opts.common.label.clone(),
        url: outcome.target.url.clone(),
        connections: outcome.connections,
        stalled,
        evicted,
        eviction,
        healthy: outcome.stats,
        cpu: outcome.cpu,
    })
}

/// Reads a stalled client's backlog to find out whether the server closed it.
/// Returns (evicted, how).
async fn how_it_ended(mut conn: WsConn) -> (bool, String) {
    let read_all = async {
        loop {
            match tokio::time::timeout(EVICTION_QUIET, conn.read_event()).await {
                Err(_) => return (false, "still open".to_string()),
                Ok(Ok(Incoming::Message(_))) => continue,
                Ok(Ok(Incoming::Closed(Some(code)))) => return (true, format!("close {code}")),
                Ok(Ok(Incoming::Closed(None))) => return (true, "close (no code)".to_string()),
                Ok(Ok(Incoming::Eof)) => return (true, "eof".to_string()),
                Ok(Err(e)) => {
                    let reset = e
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
                    return (true, if reset { "reset".to_string() } else { e.to_string() });
                }
            }
        }
    };
    let verdict = tokio::time::timeout(EVICTION_LIMIT, read_all)
        .await
        .unwrap_or_else(|_| (false, "still open (backlog still arriving)".to_string()));
    if !verdict.0 {
        conn.close(1000, Duration::from_millis(100)).await;
    }
    verdict
}
