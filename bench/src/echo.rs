//! `echo`: N connections in a closed loop against an echo endpoint.
//!
//! Each connection keeps `pipeline` messages in flight: it sends that many, and sends the next
//! one each time an echo comes back. Every echo is compared byte for byte with what was sent in
//! that position (echo preserves order on a connection), so the run also checks correctness.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::client::{ConnectOptions, Incoming, WsConn};
use crate::connect::{self, DEFAULT_CONCURRENCY};
use crate::latency::{Clock, Latencies, LatencySummary, Recorder};
use crate::options::{self, Common, MAX_BUSY_CONNECTIONS, MAX_MESSAGE_SIZE};
use crate::payload::{self, Format, Stamp};
use crate::procfs::{CpuMeter, CpuReport};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::target::Target;
use crate::threads::GeneratorThreads;

/// How long connections may take to return their last in-flight echoes after the run.
const DRAIN: Duration = Duration::from_secs(2);

/// Options of an echo run.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// Target and observation.
    pub common: Common,
    /// Connections (default 100).
    pub connections: usize,
    /// Measured time, after all connections are open (default 10 s).
    pub duration: Duration,
    /// Messages in flight per connection (default 1: strict request/response).
    pub pipeline: usize,
    /// Payload bytes per message (default 64).
    pub size: usize,
    /// Binary or text frames.
    pub format: Format,
}

impl Default for EchoOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            connections: 100,
            duration: Duration::from_secs(10),
            pipeline: 1,
            size: 64,
            format: Format::Binary,
        }
    }
}

/// Result of an echo run.
#[derive(Debug, Clone, Serialize)]
pub struct EchoReport {
    /// Always `"echo"`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Target URL.
    pub url: String,
    /// Connections wanted, opened and failed.
    pub connections: Connections,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Frame type.
    pub format: Format,
    /// Measured time, seconds.
    pub duration_secs: f64,
    /// Echoes received in the measured time.
    pub messages: u64,
    /// `messages / duration`.
    pub messages_per_sec: f64,
    /// Payload bytes per second in each direction.
    pub bytes_per_sec: f64,
    /// Messages per second of server CPU, when the server pid is known.
    pub messages_per_server_cpu_sec: Option<f64>,
    /// Echoes whose bytes or type differed from what was sent.
    pub mismatches: u64,
    /// Echoes received when none was in flight.
    pub unexpected: u64,
    /// Connections the server closed, or that failed, during the run.
    pub disconnects: u64,
    /// Errors seen on those connections, by message.
    pub errors: BTreeMap<String, usize>,
    /// Round-trip time from send to echo.
    pub latency: LatencySummary,
    /// CPU of generator and server in the measured time.
    pub cpu: CpuReport,
}

/// What the connection tasks add up.
#[derive(Debug, Default)]
struct Totals {
    stop: AtomicBool,
    measured: AtomicU64,
    mismatches: AtomicU64,
    unexpected: AtomicU64,
    disconnects: AtomicU64,
    errors: std::sync::Mutex<BTreeMap<String, usize>>,
}

/// Runs the echo benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, or no connection opening at all.
pub async fn run(opts: EchoOptions) -> anyhow::Result<EchoReport> {
    options::check_count("--connections", opts.connections, MAX_BUSY_CONNECTIONS)?;
    options::check_count("--pipeline", opts.pipeline, 1024)?;
    options::check_count("--size", opts.size, MAX_MESSAGE_SIZE)?;
    options::check_duration("--duration", opts.duration)?;
    anyhow::ensure!(
        opts.size >= opts.format.header_len(),
        "--size must be at least {} for {:?} payloads",
        opts.format.header_len(),
        opts.format
    );
    let target = Arc::new(Target::resolve(&opts.common.url, opts.common.allow_remote).await?);
    let threads = GeneratorThreads::start(opts.common.threads)?;
    let progress = Arc::new(Progress::default());
    progress.wanted.store(opts.connections as u64, Relaxed);
    let _reporter = Reporter::start("echo", progress.clone(), opts.common.progress);

    let connect_opts = ConnectOptions {
        origin: opts.common.origin.clone(),
        max_message: opts.size.max(1024) * 2,
        ..ConnectOptions::default()
    };
    let opened = connect::open_many(
        &target,
        0,
        opts.connections,
        DEFAULT_CONCURRENCY,
        |_| connect_opts.clone(),
        &threads,
        &progress,
    )
    .await;
    report::ensure_some_opened(&opened, &target)?;
    let connections = Connections::of(opts.connections, &opened);

    let clock = Clock::start();
    let totals = Arc::new(Totals::default());
    let latencies = Latencies::default();
    let meter = CpuMeter::start(opts.common.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in opened.conns {
        let driver = Driver {
            conn,
            id: i as u32,
            opts: opts.clone(),
            clock,
            totals: totals.clone(),
            progress: progress.clone(),
            latency: latencies.recorder(),
        };
        tasks.spawn_on(driver.run(), threads.for_connection(i));
    }
    tokio::time::sleep(opts.duration).await;
    totals.stop.store(true, Relaxed);
    let cpu = meter.finish();
    let measured = totals.measured.load(Relaxed);
    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.shutdown().await;

    let secs = cpu.wall_secs;
    let errors = std::mem::take(&mut *totals.errors.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(EchoReport {
        mode: "echo",
        label: opts.common.label.clone(),
        url: target.url.clone(),
        connections,
        pipeline: opts.pipeline,
        size: opts.size,
        format: opts.format,
        duration_secs: secs,
        messages: measured,
        messages_per_sec: report::round1(measured as f64 / secs),
        bytes_per_sec: report::round1(measured as f64 * opts.size as f64 / secs),
        messages_per_server_cpu_sec: report::per_cpu_sec(measured, cpu.server_cpu_secs),
        mismatches: totals.mismatches.load(Relaxed),
        unexpected: totals.unexpected.load(Relaxed),
        disconnects: totals.disconnects.load(Relaxed),
        errors,
        latency: latencies.summary(),
        cpu,
    })
}

/// One connection's closed loop.
struct Driver {
    conn: WsConn,
    id: u32,
    opts: EchoOptions,
    clock: Clock,
    totals: Arc<Totals>,
    progress: Arc<Progress>,
    latency: Recorder,
}

/// Local counters, added to the shared totals in batches and when the task ends (or is
/// aborted: the drop still runs).
struct Tally {
    totals: Arc<Totals>,
    progress: Arc<Progress>,
    measured: u64,
    mismatches: u64,
    unexpected: u64,
}

impl Tally {
    fn publish(&mut self) {
        self.totals.measured.fetch_add(self.measured, Relaxed);
        self.progress.messages.fetch_add(self.measured, Relaxed);
        self.totals.mismatches.fetch_add(self.mismatches, Relaxed);
        self.totals.unexpected.fetch_add(self.unexpected, Relaxed);
        (self.measured, self.mismatches, self.unexpected) = (0, 0, 0);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Driver {
    async fn run(mut self) {
        let mut tally = Tally {
            totals: self.totals.clone(),
            progress: self.progress.clone(),
            measured: 0,
            mismatches: 0,
            unexpected: 0,
        };
        if let Err(e) = self.drive(&mut tally).await {
            self.totals.disconnects.fetch_add(1, Relaxed);
            let mut errors = self.totals.errors.lock().unwrap_or_else(|e| e.into_inner());
            *errors.entry(e.to_string()).or_default() += 1;
            return;
        }
        self.conn.close(1000, Duration::from_millis(200)).await;
    }

    async fn drive(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        let mut in_flight: VecDeque<Stamp> = VecDeque::with_capacity(self.opts.pipeline);
        let mut scratch = Vec::with_capacity(self.opts.size);
        let mut seq = 0u64;
        for _ in 0..self.opts.pipeline {
            self.send(&mut in_flight, &mut scratch, &mut seq);
        }
        self.conn.flush().await?;
        loop {
            let mut event = Some(self.conn.read_event().await?);
            // Handle every event already buffered before writing, so that echoes that arrived
            // together are answered with one write.
            while let Some(incoming) = event.take() {
                match incoming {
                    Incoming::Message(msg) => {
                        let Some(stamp) = in_flight.pop_front() else {
                            tally.unexpected += 1;
                            continue;
                        };
                        self.latency.record(self.clock.now_ns().saturating_sub(stamp.sent_ns));
                        payload::encode(&mut scratch, self.opts.format, self.opts.size, stamp);
                        if msg.data[..] != scratch[..] || msg.kind != self.opts.format.kind() {
                            tally.mismatches += 1;
                        }
                        if !self.totals.stop.load(Relaxed) {
                            tally.measured += 1;
                            if tally.measured >= 64 {
                                tally.publish();
                            }
                            self.send(&mut in_flight, &mut scratch, &mut seq);
                        }
                    }
                    Incoming::Closed(code) => {
                        self.conn.flush().await.ok();
                        anyhow::bail!("server closed the connection (code {code:?})");
                    }
                    Incoming::Eof => anyhow::bail!("server ended the stream"),
                }
                event = self.conn.next_buffered()?;
            }
            self.conn.flush().await?;
            if in_flight.is_empty() && self.totals.stop.load(Relaxed) {
                return Ok(());
            }
        }
    }

    fn send(&mut self, in_flight: &mut VecDeque<Stamp>, scratch: &mut Vec<u8>, seq: &mut u64) {
        let stamp = Stamp {
            sender: self.id,
            seq: *seq,
            sent_ns: self.clock.now_ns(),
        };
        *seq += 1;
        payload::encode(scratch, self.opts.format, self.opts.size, stamp);
        self.conn.queue(self.opts.format.kind(), scratch);
        in_flight.push_back(stamp);
    }
}
