//! `pusher-fanout-api` and `pusher-fanout-client`: one event at a time to N subscribers of one
//! channel, in a closed loop.
//!
//! The publisher keeps at most `window` events in flight, an event being done once every
//! subscriber has it: with a window of 1 each publish waits for the previous event to reach
//! all N, the latency-bound case of issue #13's fan-out target. `api` publishes through the
//! signed HTTP API (`POST /apps/{id}/events`) on one keep-alive connection, waiting for each
//! answer; `client` sends a `client-` event from one more subscriber of a private channel
//! (channel auth signed here with the app secret), which the server does not echo to it.
//! An event that has not reached everyone within [`STALL`] is given up (counted in `stalls`)
//! so that one lost event does not end the run.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Notify};

use super::{http::HttpConn, on_control, parse_event, sign, AppCreds, Received};
use crate::client::{ConnectOptions, Incoming, MessageKind, WsConn};
use crate::connect;
use crate::latency::{Clock, Latencies, LatencySummary, Recorder};
use crate::options::{self, Common, MAX_BUSY_CONNECTIONS};
use crate::procfs::{CpuMeter, CpuReport};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::threads::GeneratorThreads;

/// How long an event may take to reach every subscriber before it is given up.
pub const STALL: Duration = Duration::from_secs(2);
/// Completion counters, indexed by sequence number modulo this.
const RING: usize = 1 << 16;
/// Smallest `--size`: the data header with room for the numbers.
pub const MIN_SIZE: usize = 48;

/// Who publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Publisher {
    /// The HTTP API, on a public channel.
    Api,
    /// A client event from one more subscriber of a private channel.
    Client,
}

/// Options of a fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// `ws://host:port` of the server, and observation.
    pub common: Common,
    /// The app.
    pub app: AppCreds,
    /// How events are published.
    pub publisher: Publisher,
    /// Subscribers that receive (default 1,000); the client publisher is one more.
    pub subscribers: usize,
    /// Events in flight (default 1).
    pub window: usize,
    /// Publishing time (default 10 s).
    pub duration: Duration,
    /// Bytes of each event's data (default 64).
    pub size: usize,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            app: AppCreds::default(),
            publisher: Publisher::Api,
            subscribers: 1000,
            window: 1,
            duration: Duration::from_secs(10),
            size: 64,
        }
    }
}

/// Result of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// `pusher-fanout-api` or `pusher-fanout-client`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Server URL.
    pub url: String,
    /// The channel used.
    pub channel: String,
    /// Subscribers that received (the client publisher not included).
    pub subscribers: usize,
    /// Connections wanted, opened and failed (the upgrade); subscriptions that failed are in
    /// `subscribe_failed`.
    pub connections: Connections,
    /// Subscriptions refused or unanswered.
    pub subscribe_failed: usize,
    /// Events in flight at most.
    pub window: usize,
    /// Data bytes per event.
    pub size: usize,
    /// Publishing time until the last event was done, seconds.
    pub duration_secs: f64,
    /// Events published.
    pub published: u64,
    /// Events published per second.
    pub events_per_sec: f64,
    /// Events received by subscribers.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Deliveries per second of server CPU.
    pub deliveries_per_server_cpu_sec: Option<f64>,
    /// `published × subscribers − deliveries`.
    pub loss: u64,
    /// Events whose data had the wrong length.
    pub mismatched: u64,
    /// Events given up after [`STALL`] without reaching everyone.
    pub stalls: u64,
    /// Publishes the server refused (HTTP status not 200, an `error` in the body, or a
    /// `pusher:error` to the client publisher).
    pub publish_errors: u64,
    /// The first refusal, if any.
    pub first_publish_error: Option<String>,
    /// Subscribers the server closed during the run.
    pub disconnects: u64,
    /// Publish to receipt, every delivery.
    pub latency: LatencySummary,
    /// Publish request to answer (API publisher only).
    pub publish_latency: Option<LatencySummary>,
    /// CPU over the publishing window.
    pub cpu: CpuReport,
}

/// What subscribers and publisher share.
struct Shared {
    expected: u32,
    counts: Vec<AtomicU32>,
    completed: AtomicU64,
    deliveries: AtomicU64,
    mismatched: AtomicU64,
    disconnects: AtomicU64,
    notify: Notify,
    ready: AtomicUsize,
    setup_failed: AtomicUsize,
    setup_done: Notify,
}

impl Shared {
    fn new(expected: usize) -> Self {
        Self {
            expected: expected as u32,
            counts: (0..RING).map(|_| AtomicU32::new(0)).collect(),
            completed: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            notify: Notify::new(),
            ready: AtomicUsize::new(0),
            setup_failed: AtomicUsize::new(0),
            setup_done: Notify::new(),
        }
    }

    fn received(&self, seq: u64) {
        let before = self.counts[seq as usize % RING].fetch_add(1, Relaxed);
        if before + 1 == self.expected {
            self.completed.fetch_add(1, Relaxed);
            self.notify.notify_one();
        }
    }

    /// Marks `seq` given up: late receipts can no longer complete it.
    fn abandon(&self, seq: u64) {
        self.counts[seq as usize % RING].store(u32::MAX / 2, Relaxed);
    }
}

/// One subscriber: subscribe, say ready, then count benchmark events until stopped.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    mut conn: WsConn,
    channel: Arc<String>,
    app: AppCreds,
    private: bool,
    size: usize,
    shared: Arc<Shared>,
    clock: Clock,
    mut recorder: Recorder,
    progress: Arc<Progress>,
    stop: watch::Receiver<bool>,
) {
    let setup = async {
        let socket_id = super::established(&mut conn).await?;
        let auth = private.then(|| sign::channel_auth(&app.key, &app.secret, &socket_id, &channel));
        super::subscribe(&mut conn, &channel, auth.as_deref()).await
    };
    if setup.await.is_err() {
        shared.setup_failed.fetch_add(1, Relaxed);
        shared.setup_done.notify_one();
        return;
    }
    shared.ready.fetch_add(1, Relaxed);
    shared.setup_done.notify_one();
    // One future for the whole run, not one per event: at a few hundred
    // thousand events a second, making and dropping it was 3 % of the
    // generator's CPU.
    let mut watching = stop.clone();
    let stopped = watching.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            event = conn.read_event() => match event {
                Ok(Incoming::Message(message)) => {
                    match parse_event(&message.data, size) {
                        Received::Event { seq, nanos, intact } => {
                            recorder.record(clock.now_ns().saturating_sub(nanos));
                            shared.deliveries.fetch_add(1, Relaxed);
                            progress.messages.fetch_add(1, Relaxed);
                            if !intact {
                                shared.mismatched.fetch_add(1, Relaxed);
                            }
                            shared.received(seq);
                        }
                        Received::Other => {
                            on_control(&mut conn, &message.data);
                        }
                    }
                }
                Ok(_) | Err(_) => {
                    if !*stop.borrow() {
                        shared.disconnects.fetch_add(1, Relaxed);
                    }
                    return;
                }
            },
        }
        if conn.has_queued() && conn.flush().await.is_err() {
            shared.disconnects.fetch_add(1, Relaxed);
            return;
        }
    }
    drop(recorder);
    conn.close(1000, Duration::from_millis(100)).await;
}

/// How events leave the publisher.
enum Sender {
    Api {
        http: HttpConn,
        path: String,
        app: AppCreds,
        latency: Recorder,
    },
    Client {
        conn: WsConn,
    },
}

/// Runs a fan-out benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, or no subscriber ready.
pub async fn run(opts: FanoutOptions) -> anyhow::Result<FanoutReport> {
    options::check_count("--subscribers", opts.subscribers, MAX_BUSY_CONNECTIONS - 1)?;
    options::check_count("--window", opts.window, RING / 4)?;
    options::check_duration("--duration", opts.duration)?;
    anyhow::ensure!(
        (MIN_SIZE..=64 * 1024).contains(&opts.size),
        "--size must be {MIN_SIZE} to 65536"
    );
    let mode = match opts.publisher {
        Publisher::Api => "pusher-fanout-api",
        Publisher::Client => "pusher-fanout-client",
    };
    let (ws, http_target) = super::targets(&opts.common.url, opts.common.allow_remote, &opts.app).await?;
    let ws = Arc::new(ws);
    let private = opts.publisher == Publisher::Client;
    let channel = Arc::new(super::run_channel(if private { "private-" } else { "" }));
    let threads = GeneratorThreads::start(opts.common.threads)?;
    let progress = Arc::new(Progress::default());
    let extra = usize::from(private);
    let total = opts.subscribers + extra;
    progress.wanted.store(total as u64, Relaxed);
    let _reporter = Reporter::start(mode, progress.clone(), opts.common.progress);
    let base = ConnectOptions {
        origin: opts.common.origin.clone(),
        read_chunk: 4096,
        max_message: 1 << 20,
        ..ConnectOptions::default()
    };
    let mut opened = connect::open_many(
        &ws,
        0,
        total,
        connect::DEFAULT_CONCURRENCY,
        |_| base.clone(),
        &threads,
        &progress,
    )
    .await;
    report::ensure_some_opened(&opened, &ws)?;
    let connections = Connections::of(total, &opened);

    // The client publisher is connection 0 (when it opened): subscribed here, on its thread.
    let publisher_conn = if private {
        match opened.conns.first() {
            Some((0, _)) => Some(opened.conns.remove(0).1),
            _ => anyhow::bail!("the publishing connection did not open"),
        }
    } else {
        None
    };
    let receivers = opened.conns.len();
    let shared = Arc::new(Shared::new(receivers));
    let clock = Clock::start();
    let latencies = Latencies::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in opened.conns {
        tasks.spawn_on(
            subscriber(
                conn,
                channel.clone(),
                opts.app.clone(),
                private,
                opts.size,
                shared.clone(),
                clock,
                latencies.recorder(),
                progress.clone(),
                stop_rx.clone(),
            ),
            threads.for_connection(i),
        );
    }
    let setup_deadline = Instant::now() + super::SETUP_TIMEOUT + Duration::from_secs(5);
    while shared.ready.load(Relaxed) + shared.setup_failed.load(Relaxed) < receivers && Instant::now() < setup_deadline
    {
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.setup_done.notified()).await;
    }
    let ready = shared.ready.load(Relaxed);
    anyhow::ensure!(ready > 0, "no subscriber of {channel} was ready");
    // An event is done when every subscriber has it: one missing subscriber would stall all.
    anyhow::ensure!(
        ready == receivers,
        "{} of {receivers} subscriptions to {channel} failed or went unanswered",
        receivers - ready
    );

    let mut sender = match publisher_conn {
        Some(mut conn) => {
            let socket_id = super::established(&mut conn).await?;
            let auth = sign::channel_auth(&opts.app.key, &opts.app.secret, &socket_id, &channel);
            super::subscribe(&mut conn, &channel, Some(&auth)).await?;
            Sender::Client { conn }
        }
        None => Sender::Api {
            http: HttpConn::new(&http_target),
            path: http_target.path.clone(),
            app: opts.app.clone(),
            latency: Latencies::default().recorder(),
        },
    };
    let publish_latencies = Latencies::default();
    if let Sender::Api { latency, .. } = &mut sender {
        *latency = publish_latencies.recorder();
    }

    let meter = CpuMeter::start(opts.common.server_pid);
    let started = Instant::now();
    let deadline = started + opts.duration;
    let (mut published, mut stalls, mut publish_errors) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut oldest_open = 0u64; // every event below this is done or given up
    let mut last_progress = Instant::now();
    let event_name = if private { "client-wsb" } else { "wsb" };
    let mut body = Vec::with_capacity(opts.size + 128);
    loop {
        let done = shared.completed.load(Relaxed) + stalls;
        let in_flight = published.saturating_sub(done);
        let now = Instant::now();
        if now >= deadline && in_flight == 0 {
            break;
        }
        if now < deadline && (in_flight as usize) < opts.window {
            shared.counts[published as usize % RING].store(0, Relaxed);
            let data = super::event_data(published, clock.now_ns(), opts.size);
            let refused = match &mut sender {
                Sender::Api {
                    http,
                    path,
                    app,
                    latency,
                } => {
                    body.clear();
                    body.extend_from_slice(
                        serde_json::json!({ "name": event_name, "channel": &*channel, "data": data })
                            .to_string()
                            .as_bytes(),
                    );
                    let query = sign::api_query(&app.key, &app.secret, "POST", path, &body, super::unix_secs());
                    let t0 = clock.now_ns();
                    let answer = http.post(&format!("{path}?{query}"), &body).await;
                    latency.record(clock.now_ns() - t0);
                    match answer {
                        Ok((200, reply)) if !reply.windows(7).any(|w| w == b"\"error\"") => None,
                        Ok((status, reply)) => Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&reply))),
                        Err(e) => Some(format!("{e:#}")),
                    }
                }
                Sender::Client { conn } => {
                    let message = serde_json::json!({ "event": event_name, "channel": &*channel, "data": data });
                    conn.queue(MessageKind::Text, message.to_string().as_bytes());
                    conn.flush().await.err().map(|e| format!("client publisher: {e}"))
                }
            };
            published += 1;
            if let Some(error) = refused {
                publish_errors += 1;
                first_error.get_or_insert(error);
                shared.abandon(published - 1);
                stalls += 1;
            }
            continue;
        }
        // Wait for a completion (or, for the client publisher, read its socket meanwhile).
        let before = shared.completed.load(Relaxed);
        let wait = STALL.saturating_sub(last_progress.elapsed());
        match &mut sender {
            Sender::Api { .. } => {
                let _ = tokio::time::timeout(wait, shared.notify.notified()).await;
            }
            Sender::Client { conn } => {
                tokio::select! {
                    _ = shared.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    event = conn.read_event() => match event {
                        Ok(Incoming::Message(message)) => {
                            if let Some(name) = on_control(conn, &message.data) {
                                if name == "pusher:error" {
                                    publish_errors += 1;
                                    first_error.get_or_insert_with(|| String::from_utf8_lossy(&message.data).into_owned());
                                }
                            }
                            if conn.has_queued() {
                                conn.flush().await.ok();
                            }
                        }
                        Ok(_) | Err(_) => anyhow::bail!("the server closed the client publisher"),
                    },
                }
            }
        }
        if shared.completed.load(Relaxed) > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= STALL {
            // Give up the oldest event that is still open.
            while oldest_open < published && shared.counts[oldest_open as usize % RING].load(Relaxed) >= shared.expected
            {
                oldest_open += 1;
            }
            if oldest_open < published {
                shared.abandon(oldest_open);
                oldest_open += 1;
            }
            stalls += 1;
            last_progress = Instant::now();
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = meter.finish();
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    let publish_latency = match sender {
        Sender::Api { latency, .. } => {
            drop(latency);
            Some(publish_latencies.summary())
        }
        Sender::Client { mut conn } => {
            conn.close(1000, Duration::from_millis(100)).await;
            None
        }
    };
    let deliveries = shared.deliveries.load(Relaxed);
    Ok(FanoutReport {
        mode,
        label: opts.common.label.clone(),
        url: opts.common.url.clone(),
        channel: channel.to_string(),
        subscribers: ready,
        connections,
        subscribe_failed: receivers - ready,
        window: opts.window,
        size: opts.size,
        duration_secs: report::round1(elapsed * 10.0) / 10.0,
        published,
        events_per_sec: report::round1(published as f64 / elapsed),
        deliveries,
        deliveries_per_sec: report::round1(deliveries as f64 / elapsed),
        deliveries_per_server_cpu_sec: report::per_cpu_sec(deliveries, cpu.server_cpu_secs),
        loss: (published * ready as u64).saturating_sub(deliveries),
        mismatched: shared.mismatched.load(Relaxed),
        stalls,
        publish_errors,
        first_publish_error: first_error,
        disconnects: shared.disconnects.load(Relaxed),
        latency: latencies.summary(),
        publish_latency,
        cpu,
    })
}

impl FanoutReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = format!(
            "{} against {} ({})\n{} subscribers of {}, window {}, {} B events\n",
            self.mode,
            self.label.as_deref().unwrap_or("?"),
            self.url,
            self.subscribers,
            self.channel,
            self.window,
            self.size
        );
        out.push_str(&format!(
            "{} events in {:.2} s ({} events/s): {} deliveries/s; loss {}, mismatched {}, stalls {}, publish errors {}, disconnects {}\n",
            report::thousands(self.published as f64),
            self.duration_secs,
            report::thousands(self.events_per_sec),
            report::thousands(self.deliveries_per_sec),
            self.loss,
            self.mismatched,
            self.stalls,
            self.publish_errors,
            self.disconnects
        ));
        if let Some(error) = &self.first_publish_error {
            out.push_str(&format!("first publish error: {error}\n"));
        }
        out.push_str(&format!("latency: {}\n", self.latency.human()));
        if let Some(publish) = &self.publish_latency {
            out.push_str(&format!("HTTP API answer: {}\n", publish.human()));
        }
        out.push_str(&self.cpu.human());
        out
    }
}
