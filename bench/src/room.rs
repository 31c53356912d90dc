//! The chat-room engine behind `broadcast` and `slow`.
//!
//! Every client joins one room (a chat endpoint that sends every frame to every client, the
//! sender included). A coordinator moves all clients through the same phases over a `watch`
//! channel:
//!
//! 1. **Sync**: the first client sends a probe every 50 ms until every client has received one,
//!    so that nobody is counted as having lost messages sent before the server registered it.
//! 2. **Run**: senders send (at a fixed total rate, or in a closed loop: each sender waits for its
//!    own previous message to come back to itself).
//! 3. **Stop**: senders stop and acknowledge; the number sent is then final.
//! 4. **Drain**: clients keep reading until they have every message or the drain time is up.
//! 5. **Done**: clients close.
//!
//! Each client counts what it receives per sender, so loss (expected − received, per client) and
//! order violations (a sender's sequence going backwards or repeating) are exact.
//!
//! **Several nodes.** The URL may be a comma-separated list: the nodes of one cluster (e.g. wshub
//! instances sharing a Redis) serving the same room. The reading clients are then split into
//! equal consecutive shares, one per URL, in order; the senders (the first clients) all fall in
//! the first URL's share, so every delivery on another URL has crossed between nodes. Latency and
//! deliveries are also reported per URL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::client::{ConnectOptions, Incoming, Message, WsConn};
use crate::connect::{self, DEFAULT_CONCURRENCY};
use crate::latency::{Clock, Latencies, LatencySummary, Recorder};
use crate::options::{self, Common, MAX_BUSY_CONNECTIONS, MAX_MESSAGE_SIZE};
use crate::pacing::Pacer;
use crate::payload::{self, Format, Stamp, PROBE_SENDER};
use crate::procfs::{CpuMeter, CpuReport};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::target::Target;
use crate::threads::GeneratorThreads;

/// How long every client has to receive a sync probe.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Probe interval during sync.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How long senders have to acknowledge the stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// `SO_RCVBUF` of a stalled client: small, so that the server's writes to it back up quickly.
const STALLED_RCVBUF: u32 = 4096;

/// What the room engine is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct RoomPlan {
    pub clients: usize,
    pub senders: usize,
    pub stalled: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub drain: Duration,
    pub size: usize,
    pub format: Format,
}

impl RoomPlan {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        options::check_count("--clients", self.clients + self.stalled, MAX_BUSY_CONNECTIONS)?;
        options::check_count("healthy clients", self.clients, MAX_BUSY_CONNECTIONS)?;
        options::check_count("--senders", self.senders, self.clients)?;
        options::check_count("--size", self.size, MAX_MESSAGE_SIZE)?;
        options::check_duration("--duration", self.duration)?;
        options::check_duration("--drain", self.drain)?;
        anyhow::ensure!(
            self.size >= self.format.header_len(),
            "--size must be at least {} for {:?} payloads",
            self.format.header_len(),
            self.format
        );
        if let Some(rate) = self.rate {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0,
                "--rate must be between 0 and 10,000,000 messages/s"
            );
        }
        Ok(())
    }
}

/// What the clients on one URL (one node of a cluster) received.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    /// The node's URL.
    pub url: String,
    /// Reading clients connected to it (senders included for the first URL).
    pub clients: usize,
    /// Senders among them.
    pub senders: usize,
    /// Intact messages its clients received.
    pub deliveries: u64,
    /// Σ over its clients of (expected − received), after the drain.
    pub loss: u64,
    /// Send-to-receive latency of its clients' deliveries.
    pub latency: LatencySummary,
}

/// Fan-out results for the clients that read.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStats {
    /// Reading clients that joined (senders included).
    pub clients: usize,
    /// Senders among them.
    pub senders: usize,
    /// `"closed-loop"` or `"rate"`.
    pub pacing: &'static str,
    /// Total send rate asked for, messages/s (rate pacing only).
    pub rate: Option<f64>,
    /// Payload bytes per message.
    pub size: usize,
    /// Frame type.
    pub format: Format,
    /// Time until every client had received a sync probe, seconds.
    pub sync_secs: f64,
    /// Sending time, seconds.
    pub duration_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// `sent × clients`: every client should receive every message.
    pub expected_deliveries: u64,
    /// Intact messages received, all clients.
    pub deliveries: u64,
    /// Deliveries per second, from the start of sending to the last delivery.
    pub deliveries_per_sec: f64,
    /// Deliveries per second of server CPU, when the server pid is known.
    pub deliveries_per_server_cpu_sec: Option<f64>,
    /// Σ over clients of (expected − received), after the drain.
    pub loss: u64,
    /// Receipts of a sender's message with a sequence number not above the last one seen.
    pub order_violations: u64,
    /// Messages whose bytes or type were not what the sender sent.
    pub corrupt: u64,
    /// Clients that lost their connection during the run.
    pub disconnects: u64,
    /// Errors on those connections, by message.
    pub errors: BTreeMap<String, usize>,
    /// True when every client had every message before the drain time ran out.
    pub drained: bool,
    /// Time from the stop until every client had everything (or the drain ran out), seconds.
    pub drain_secs: f64,
    /// Send-to-receive latency, over all deliveries.
    pub latency: LatencySummary,
    /// Per URL, when the clients were spread over several (the senders' URL first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStats>,
}

impl RoomStats {
    /// Human-readable lines.
    pub fn human(&self) -> String {
        let pacing = match self.rate {
            Some(rate) => format!("{} msgs/s in total", report::thousands(rate)),
            None => "closed loop".to_string(),
        };
        let mut nodes = String::new();
        for (n, node) in self.nodes.iter().enumerate() {
            nodes.push_str(&format!(
                "\n  node {n} {} ({} clients, {} senders): {} delivered, loss {}, latency {}",
                node.url,
                node.clients,
                node.senders,
                report::thousands(node.deliveries as f64),
                node.loss,
                node.latency.human()
            ));
        }
        format!(
            "{} clients, {} senders ({pacing}), {} B {:?}, synced in {:.2} s\n\
             sent {} in {:.2} s; {} of {} delivered: {} deliveries/s{}\n\
             latency: {}{nodes}\n\
             checks: loss {}, order violations {}, corrupt {}, disconnects {}, drained {} ({:.2} s)",
            self.clients,
            self.senders,
            self.size,
            self.format,
            self.sync_secs,
            report::thousands(self.sent as f64),
            self.duration_secs,
            report::thousands(self.deliveries as f64),
            report::thousands(self.expected_deliveries as f64),
            report::thousands(self.deliveries_per_sec),
            self.deliveries_per_server_cpu_sec
                .map(|d| format!(" ({} per server CPU-second)", report::thousands(d)))
                .unwrap_or_default(),
            self.latency.human(),
            self.loss,
            self.order_violations,
            self.corrupt,
            self.disconnects,
            self.drained,
            self.drain_secs
        )
    }
}

/// Everything a room run produced; the stalled connections are handed back unread.
pub(crate) struct RoomOutcome {
    /// The first (or only) URL's target.
    pub target: Arc<Target>,
    /// The URL as given (a comma-separated list for several nodes).
    pub url: String,
    pub connections: Connections,
    pub stats: RoomStats,
    pub cpu: CpuReport,
    /// `(connection index, connection)`.
    pub stalled: Vec<(usize, WsConn)>,
}

/// Tells the reading clients to close, waits up to 2 s for them, then aborts the rest (their
/// counts are published on drop either way).
async fn end_clients(phase: &watch::Sender<Phase>, tasks: &mut tokio::task::JoinSet<()>) {
    phase.send_replace(Phase::Done);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Sync,
    Run { start_ns: u64 },
    Stop,
    Drain { expected: u64 },
    Done,
}

/// Counters shared by the clients of one run.
struct Shared {
    clock: Clock,
    format: Format,
    size: usize,
    senders: usize,
    /// Messages per second per sender (rate pacing).
    sender_rate: Option<f64>,
    progress: Arc<Progress>,
    sent: AtomicU64,
    synced: AtomicU64,
    senders_stopped: AtomicU64,
    drained: AtomicU64,
    deliveries: AtomicU64,
    order_violations: AtomicU64,
    corrupt: AtomicU64,
    disconnects: AtomicU64,
    last_delivery_ns: AtomicU64,
    /// Deliveries per client, written when each client ends.
    received: Vec<AtomicU64>,
    errors: Mutex<BTreeMap<String, usize>>,
}

/// The URLs of a comma-separated list (one for a single server).
pub fn split_urls(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// Where reading client `id` (of `clients`) goes among `nodes` URLs: equal consecutive shares,
/// the first ones one larger when `clients` does not divide evenly.
pub fn node_of(id: usize, clients: usize, nodes: usize) -> usize {
    let (base, extra) = (clients / nodes, clients % nodes);
    let big = (base + 1) * extra;
    if id < big {
        id / (base + 1)
    } else {
        extra + (id - big) / base.max(1)
    }
}

/// Runs a room: `plan.stalled` clients that never read plus `plan.clients` that do, spread over
/// `threads` (which must outlive the stalled connections handed back).
pub(crate) async fn run(
    mode: &'static str,
    common: &Common,
    plan: &RoomPlan,
    threads: &GeneratorThreads,
) -> anyhow::Result<RoomOutcome> {
    plan.check()?;
    let urls = split_urls(&common.url);
    anyhow::ensure!(!urls.is_empty(), "no URL given");
    let nodes = urls.len();
    anyhow::ensure!(
        nodes <= plan.clients,
        "{nodes} URLs but only {} clients: at least one client per URL",
        plan.clients
    );
    if nodes > 1 {
        let first_share = (0..plan.clients)
            .filter(|&i| node_of(i, plan.clients, nodes) == 0)
            .count();
        anyhow::ensure!(
            plan.senders <= first_share,
            "--senders ({}) must fit in the first URL's share of the clients ({first_share}), \
             so that every sender is on the same node",
            plan.senders
        );
    }
    let mut targets = Vec::with_capacity(nodes);
    for url in &urls {
        targets.push(Arc::new(Target::resolve(url, common.allow_remote).await?));
    }
    let target = targets[0].clone();
    let stalled_count = plan.stalled;
    let target_of = |i: usize| {
        if i < stalled_count {
            targets[0].clone()
        } else {
            targets[node_of(i - stalled_count, plan.clients, nodes)].clone()
        }
    };
    let progress = Arc::new(Progress::default());
    let total = plan.stalled + plan.clients;
    progress.wanted.store(total as u64, Relaxed);
    let _reporter = Reporter::start(mode, progress.clone(), common.progress);

    let busy = ConnectOptions {
        origin: common.origin.clone(),
        max_message: plan.size.max(1024) * 2,
        ..ConnectOptions::default()
    };
    let stalled_opts = ConnectOptions {
        recv_buffer: Some(STALLED_RCVBUF),
        read_chunk: 4096,
        ..busy.clone()
    };
    let opened = connect::open_spread(
        target_of,
        0,
        total,
        DEFAULT_CONCURRENCY,
        |i| {
            if i < stalled_count {
                stalled_opts.clone()
            } else {
                busy.clone()
            }
        },
        threads,
        &progress,
    )
    .await;
    let connections = Connections::of(total, &opened);
    let (stalled, healthy): (Vec<_>, Vec<_>) = opened.conns.into_iter().partition(|(i, _)| *i < plan.stalled);
    anyhow::ensure!(
        !healthy.is_empty(),
        "no reading client connected to {}: {:?}",
        common.url,
        connections.errors
    );
    let senders = healthy.iter().filter(|(i, _)| i - plan.stalled < plan.senders).count();
    anyhow::ensure!(senders > 0, "none of the sending clients connected");

    let clock = Clock::start();
    let shared = Arc::new(Shared {
        clock,
        format: plan.format,
        size: plan.size,
        senders: plan.senders,
        sender_rate: plan.rate.map(|r| r / senders as f64),
        progress: progress.clone(),
        sent: AtomicU64::new(0),
        synced: AtomicU64::new(0),
        senders_stopped: AtomicU64::new(0),
        drained: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        order_violations: AtomicU64::new(0),
        corrupt: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        last_delivery_ns: AtomicU64::new(0),
        received: (0..plan.clients).map(|_| AtomicU64::new(0)).collect(),
        errors: Mutex::new(BTreeMap::new()),
    });
    let latencies = Latencies::default();
    let node_latencies: Vec<Latencies> = if nodes > 1 {
        (0..nodes).map(|_| Latencies::default()).collect()
    } else {
        Vec::new()
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Sync);
    let mut tasks = tokio::task::JoinSet::new();
    let readers = healthy.len() as u64;
    let reader_ids: Vec<usize> = healthy.iter().map(|(i, _)| i - plan.stalled).collect();
    for (n, (i, conn)) in healthy.into_iter().enumerate() {
        let id = i - plan.stalled;
        let member = Member {
            conn,
            id: id as u32,
            sends: id < plan.senders,
            probes: n == 0,
            shared: shared.clone(),
            phase: phase_rx.clone(),
            latency: latencies.recorder(),
            node_latency: node_latencies
                .get(node_of(id, plan.clients, nodes))
                .map(Latencies::recorder),
        };
        tasks.spawn_on(member.run(), threads.for_connection(i));
    }
    let sync_start = Instant::now();
    if !wait_until(SYNC_TIMEOUT, || shared.synced.load(Relaxed) >= readers).await {
        let synced = shared.synced.load(Relaxed);
        end_clients(&phase_tx, &mut tasks).await;
        anyhow::bail!(
            "only {synced} of {readers} clients received a probe within {} s: \
             is {} a chat endpoint that sends every message to every client{}?",
            SYNC_TIMEOUT.as_secs(),
            common.url,
            if nodes > 1 {
                ", and do its nodes share the room"
            } else {
                ""
            }
        );
    }
    let sync_secs = sync_start.elapsed().as_secs_f64();

    let meter = CpuMeter::start(common.server_pid);
    let start_ns = clock.now_ns();
    phase_tx.send_replace(Phase::Run { start_ns });
    tokio::time::sleep(plan.duration).await;
    phase_tx.send_replace(Phase::Stop);
    let duration_secs = (clock.now_ns() - start_ns) as f64 / 1e9;
    wait_until(STOP_TIMEOUT, || shared.senders_stopped.load(Relaxed) >= senders as u64).await;
    let sent = shared.sent.load(Relaxed);
    phase_tx.send_replace(Phase::Drain { expected: sent });
    let drain_start = Instant::now();
    let drained = wait_until(plan.drain, || {
        shared.drained.load(Relaxed) + shared.disconnects.load(Relaxed) >= readers
    })
    .await
        && shared.disconnects.load(Relaxed) == 0;
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let cpu = meter.finish();

    // Clients still short of `sent` now stop; each publishes its counts as it ends.
    end_clients(&phase_tx, &mut tasks).await;

    let deliveries = shared.deliveries.load(Relaxed);
    let loss = reader_ids
        .iter()
        .map(|&id| sent.saturating_sub(shared.received[id].load(Relaxed)))
        .sum();
    let node_stats = node_latencies
        .iter()
        .enumerate()
        .map(|(n, latency)| {
            let ids: Vec<usize> = reader_ids
                .iter()
                .copied()
                .filter(|&id| node_of(id, plan.clients, nodes) == n)
                .collect();
            NodeStats {
                url: urls[n].to_string(),
                clients: ids.len(),
                senders: ids.iter().filter(|&&id| id < plan.senders).count(),
                deliveries: ids.iter().map(|&id| shared.received[id].load(Relaxed)).sum(),
                loss: ids
                    .iter()
                    .map(|&id| sent.saturating_sub(shared.received[id].load(Relaxed)))
                    .sum(),
                latency: latency.summary(),
            }
        })
        .collect();
    let active_ns = shared.last_delivery_ns.load(Relaxed).saturating_sub(start_ns).max(1);
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(|e| e.into_inner()));
    let stats = RoomStats {
        clients: readers as usize,
        senders,
        pacing: if plan.rate.is_some() { "rate" } else { "closed-loop" },
        rate: plan.rate,
        size: plan.size,
        format: plan.format,
        sync_secs: (sync_secs * 1000.0).round() / 1000.0,
        duration_secs: (duration_secs * 1000.0).round() / 1000.0,
        sent,
        expected_deliveries: sent * readers,
        deliveries,
        deliveries_per_sec: report::round1(deliveries as f64 / (active_ns as f64 / 1e9)),
        deliveries_per_server_cpu_sec: report::per_cpu_sec(deliveries, cpu.server_cpu_secs),
        loss,
        order_violations: shared.order_violations.load(Relaxed),
        corrupt: shared.corrupt.load(Relaxed),
        disconnects: shared.disconnects.load(Relaxed),
        errors,
        drained,
        drain_secs: (drain_secs * 1000.0).round() / 1000.0,
        latency: latencies.summary(),
        nodes: node_stats,
    };
    Ok(RoomOutcome {
        target,
        url: common.url.clone(),
        connections,
        stats,
        cpu,
        stalled,
    })
}

/// Polls `done` every 10 ms until it holds (true) or `limit` passes (false).
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// One reading client (and maybe a sender).
struct Member {
    conn: WsConn,
    id: u32,
    sends: bool,
    probes: bool,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    latency: Recorder,
    /// The same samples, for this client's node (several URLs only).
    node_latency: Option<Recorder>,
}

/// A client's counts; published to [`Shared`] when the task ends, even when it is aborted.
struct Tally {
    shared: Arc<Shared>,
    id: usize,
    received: u64,
    unpublished: u64,
    order_violations: u64,
    corrupt: u64,
    last_delivery_ns: u64,
}

impl Tally {
    fn publish_progress(&mut self) {
        self.shared.deliveries.fetch_add(self.unpublished, Relaxed);
        self.shared.progress.messages.fetch_add(self.unpublished, Relaxed);
        self.unpublished = 0;
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.publish_progress();
        let s = &self.shared;
        s.received[self.id].store(self.received, Relaxed);
        s.order_violations.fetch_add(self.order_violations, Relaxed);
        s.corrupt.fetch_add(self.corrupt, Relaxed);
        s.last_delivery_ns.fetch_max(self.last_delivery_ns, Relaxed);
    }
}

/// What a sender is doing.
struct SendState {
    pacer: Pacer,
    scratch: Vec<u8>,
}

impl Member {
    async fn run(mut self) {
        let mut tally = Tally {
            shared: self.shared.clone(),
            id: self.id as usize,
            received: 0,
            unpublished: 0,
            order_violations: 0,
            corrupt: 0,
            last_delivery_ns: 0,
        };
        match self.drive(&mut tally).await {
            Ok(()) => self.conn.close(1000, Duration::from_millis(200)).await,
            Err(e) => {
                self.shared.disconnects.fetch_add(1, Relaxed);
                let mut errors = self.shared.errors.lock().unwrap_or_else(|e| e.into_inner());
                *errors.entry(e.to_string()).or_default() += 1;
            }
        }
    }

    async fn drive(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        let mut next_seq = vec![0u64; self.shared.senders];
        let mut phase = *self.phase.borrow_and_update();
        let mut ticker = tokio::time::interval(PROBE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = SendState {
            pacer: Pacer::new(self.shared.sender_rate),
            scratch: Vec::with_capacity(self.shared.size),
        };
        let (mut synced, mut stopped, mut drained) = (false, false, false);
        loop {
            let ticking = match phase {
                Phase::Sync => self.probes,
                Phase::Run { .. } => self.sends && self.shared.sender_rate.is_some(),
                _ => false,
            };
            tokio::select! {
                biased;
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    phase = *self.phase.borrow_and_update();
                    match phase {
                        Phase::Run { start_ns } if self.sends => {
                            for _ in 0..state.pacer.start(start_ns) {
                                self.send(&mut state);
                            }
                            if let Some(rate) = self.shared.sender_rate {
                                let period = Duration::from_secs_f64(1.0 / rate)
                                    .max(Duration::from_millis(1));
                                ticker = tokio::time::interval(period);
                                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            }
                        }
                        Phase::Done => return Ok(()),
                        _ => {}
                    }
                }
                _ = ticker.tick(), if ticking => match phase {
                    Phase::Sync => self.send_probe(&mut state),
                    _ => self.send_due(&mut state),
                },
                event = self.conn.read_event() => {
                    let mut event = Some(event?);
                    while let Some(incoming) = event.take() {
                        match incoming {
                            Incoming::Message(msg) => {
                                self.on_message(msg, phase, tally, &mut next_seq, &mut state,
                                    &mut synced);
                            }
                            Incoming::Closed(code) => {
                                self.conn.flush().await.ok();
                                anyhow::bail!("server closed the connection (code {code:?})");
                            }
                            Incoming::Eof => anyhow::bail!("server ended the stream"),
                        }
                        event = self.conn.next_buffered()?;
                    }
                    if tally.unpublished >= 64 {
                        tally.publish_progress();
                    }
                }
            }
            let past_run = matches!(phase, Phase::Stop | Phase::Drain { .. });
            if self.sends && past_run && !stopped {
                stopped = true;
                self.shared.senders_stopped.fetch_add(1, Relaxed);
            }
            if let Phase::Drain { expected } = phase {
                if !drained && tally.received >= expected {
                    drained = true;
                    tally.publish_progress();
                    self.shared.drained.fetch_add(1, Relaxed);
                }
            }
            self.conn.flush().await?;
        }
    }

    fn on_message(
        &mut self,
        msg: Message,
        phase: Phase,
        tally: &mut Tally,
        next_seq: &mut [u64],
        state: &mut SendState,
        synced: &mut bool,
    ) {
        let format = self.shared.format;
        let stamp = match payload::decode(format, &msg.data) {
            Some(stamp) if msg.kind == format.kind() && payload::is_intact(format, self.shared.size, &msg.data) => {
                stamp
            }
            _ => {
                tally.corrupt += 1;
                return;
            }
        };
        if stamp.sender == PROBE_SENDER {
            if !*synced {
                *synced = true;
                self.shared.synced.fetch_add(1, Relaxed);
            }
            return;
        }
        let Some(next) = next_seq.get_mut(stamp.sender as usize) else {
            tally.corrupt += 1;
            return;
        };
        let now = self.shared.clock.now_ns();
        self.latency.record(now.saturating_sub(stamp.sent_ns));
        if let Some(node) = &mut self.node_latency {
            node.record(now.saturating_sub(stamp.sent_ns));
        }
        tally.received += 1;
        tally.unpublished += 1;
        tally.last_delivery_ns = now;
        if stamp.seq < *next {
            tally.order_violations += 1;
        } else {
            *next = stamp.seq + 1;
        }
        if stamp.sender == self.id {
            let running = matches!(phase, Phase::Run { .. });
            for _ in 0..state.pacer.on_own_receipt(stamp.seq, running) {
                self.send(state);
            }
        }
    }

    /// Sends one sync probe.
    fn send_probe(&mut self, state: &mut SendState) {
        let stamp = Stamp {
            sender: PROBE_SENDER,
            seq: 0,
            sent_ns: self.shared.clock.now_ns(),
        };
        payload::encode(&mut state.scratch, self.shared.format, self.shared.size, stamp);
        self.conn.queue(self.shared.format.kind(), &state.scratch);
    }

    /// Rate pacing: sends what this sender is behind by.
    fn send_due(&mut self, state: &mut SendState) {
        for _ in 0..state.pacer.due(self.shared.clock.now_ns()) {
            self.send(state);
        }
    }

    fn send(&mut self, state: &mut SendState) {
        let stamp = Stamp {
            sender: self.id,
            seq: state.pacer.next(),
            sent_ns: self.shared.clock.now_ns(),
        };
        payload::encode(&mut state.scratch, self.shared.format, self.shared.size, stamp);
        self.conn.queue(self.shared.format.kind(), &state.scratch);
        self.shared.sent.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_split_into_consecutive_shares() {
        let shares = |clients: usize, nodes: usize| -> Vec<usize> {
            let mut counts = vec![0; nodes];
            let mut last = 0;
            for id in 0..clients {
                let node = node_of(id, clients, nodes);
                assert!(node >= last, "shares are consecutive");
                last = node;
                counts[node] += 1;
            }
            counts
        };
        assert_eq!(shares(400, 2), [200, 200]);
        assert_eq!(shares(10, 3), [4, 3, 3]);
        assert_eq!(shares(5, 5), [1, 1, 1, 1, 1]);
        assert_eq!(shares(7, 1), [7]);
        assert_eq!(split_urls("ws://a/ws, ws://b/ws,"), ["ws://a/ws", "ws://b/ws"]);
    }
}
