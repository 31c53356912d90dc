//! `broadcast`: N clients in one chat room, S of them sending; measures fan-out.
//!
//! See the `room` module for the phases (sync, run, stop, drain) and what is counted, and for
//! clients spread over several nodes of a cluster (a comma-separated URL list).

use std::time::Duration;

use serde::Serialize;

use crate::options::Common;
use crate::payload::Format;
use crate::procfs::CpuReport;
use crate::report::Connections;
use crate::room::{self, RoomPlan, RoomStats};
use crate::threads::GeneratorThreads;

/// Options of a broadcast run.
#[derive(Debug, Clone)]
pub struct BroadcastOptions {
    /// Target (a chat endpoint where every client receives every message) and observation.
    /// `common.url` may list several nodes of one cluster, comma-separated: the clients are
    /// split evenly over them, the senders all on the first (see the `room` module).
    pub common: Common,
    /// Clients in the room, senders included (default 100).
    pub clients: usize,
    /// Clients that send, the first ones (default 10).
    pub senders: usize,
    /// Total messages/s across all senders; `None` (default) is a closed loop: each sender
    /// sends its next message when its previous one has come back to itself.
    pub rate: Option<f64>,
    /// Sending time (default 10 s).
    pub duration: Duration,
    /// How long clients may take to receive what is still in flight after sending stops
    /// (default 5 s).
    pub drain: Duration,
    /// Payload bytes per message (default 64).
    pub size: usize,
    /// Binary or text frames.
    pub format: Format,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            clients: 100,
            senders: 10,
            rate: None,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(5),
            size: 64,
            format: Format::Binary,
        }
    }
}

/// Result of a broadcast run.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastReport {
    /// Always `"broadcast"`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Target URL.
    pub url: String,
    /// Connections wanted, opened and failed.
    pub connections: Connections,
    /// Fan-out results.
    #[serde(flatten)]
    pub room: RoomStats,
    /// CPU of generator and server from the start of sending to the end of the drain.
    pub cpu: CpuReport,
}

/// Runs the broadcast benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, no client connecting, or clients that
/// never receive the sync probe (the URL is not a chat endpoint).
pub async fn run(opts: BroadcastOptions) -> anyhow::Result<BroadcastReport> {
    let plan = RoomPlan {
        clients: opts.clients,
        senders: opts.senders.min(opts.clients),
        stalled: 0,
        rate: opts.rate,
        duration: opts.duration,
        drain: opts.drain,
        size: opts.size,
        format: opts.format,
    };
    let threads = GeneratorThreads::start(opts.common.threads)?;
    let outcome = room::run("broadcast", &opts.common, &plan, &threads).await?;
    Ok(BroadcastReport {
        mode: "broadcast",
        label: opts.common.label.clone(),
        url: outcome.url.clone(),
        connections: outcome.connections,
        room: outcome.stats,
        cpu: outcome.cpu,
    })
}
