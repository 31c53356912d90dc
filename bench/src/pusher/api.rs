//! `pusher-api`: signed HTTP API publishes per second.
//!
//! K keep-alive connections each publish in a closed loop (the next request when the previous
//! answer is in), to a public channel with a few subscribers, which count what arrives: a
//! server that answers 200 without delivering shows as loss.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::{http::HttpConn, on_control, parse_event, sign, AppCreds, Received};
use crate::client::{ConnectOptions, Incoming, WsConn};
use crate::connect;
use crate::latency::{Clock, Latencies, LatencySummary};
use crate::options::{self, Common};
use crate::procfs::{CpuMeter, CpuReport};
use crate::progress::{Progress, Reporter};
use crate::report::{self, Connections};
use crate::threads::GeneratorThreads;

/// Options of an HTTP API run.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// `ws://host:port` of the server, and observation.
    pub common: Common,
    /// The app.
    pub app: AppCreds,
    /// Keep-alive HTTP connections, each a closed loop (default 4).
    pub http_connections: usize,
    /// Subscribers of the channel (default 5).
    pub subscribers: usize,
    /// Publishing time (default 10 s).
    pub duration: Duration,
    /// Time after publishing for the last deliveries (default 2 s).
    pub drain: Duration,
    /// Bytes of each event's data (default 64).
    pub size: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            common: Common::default(),
            app: AppCreds::default(),
            http_connections: 4,
            subscribers: 5,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(2),
            size: 64,
        }
    }
}

/// Result of an HTTP API run.
#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    /// Always `pusher-api`.
    pub mode: &'static str,
    /// Server label, if given.
    pub label: Option<String>,
    /// Server URL.
    pub url: String,
    /// Keep-alive HTTP connections.
    pub http_connections: usize,
    /// Subscriber connections.
    pub connections: Connections,
    /// Subscribers that subscribed.
    pub subscribers: usize,
    /// Publishing time, seconds.
    pub duration_secs: f64,
    /// Publishes answered 200 (without an `error` in the body).
    pub published: u64,
    /// Publishes per second.
    pub publishes_per_sec: f64,
    /// Publishes per second of server CPU.
    pub publishes_per_server_cpu_sec: Option<f64>,
    /// Publishes refused or failed.
    pub errors: u64,
    /// The first refusal, if any.
    pub first_error: Option<String>,
    /// Request to answer.
    pub latency: LatencySummary,
    /// Events the subscribers received.
    pub deliveries: u64,
    /// `published × subscribers − deliveries`, after the drain.
    pub loss: u64,
    /// CPU over the publishing window.
    pub cpu: CpuReport,
}

/// Runs the HTTP API benchmark.
///
/// # Errors
/// Bad options, an unresolvable or non-loopback target, or a subscriber that cannot subscribe.
pub async fn run(opts: ApiOptions) -> anyhow::Result<ApiReport> {
    options::check_count("--http-connections", opts.http_connections, 1000)?;
    options::check_count("--subscribers", opts.subscribers, 1000)?;
    options::check_duration("--duration", opts.duration)?;
    options::check_duration("--drain", opts.drain)?;
    anyhow::ensure!(
        (super::fanout::MIN_SIZE..=64 * 1024).contains(&opts.size),
        "--size must be {} to 65536",
        super::fanout::MIN_SIZE
    );
    let (ws, http_target) = super::targets(&opts.common.url, opts.common.allow_remote, &opts.app).await?;
    let ws = Arc::new(ws);
    let channel = Arc::new(super::run_channel(""));
    let threads = GeneratorThreads::start(1)?;
    let progress = Arc::new(Progress::default());
    let _reporter = Reporter::start("pusher-api", progress.clone(), opts.common.progress);
    let base = ConnectOptions {
        origin: opts.common.origin.clone(),
        ..ConnectOptions::default()
    };
    let opened = connect::open_many(&ws, 0, opts.subscribers, 16, |_| base.clone(), &threads, &progress).await;
    report::ensure_some_opened(&opened, &ws)?;
    let connections = Connections::of(opts.subscribers, &opened);
    let mut subscribed = Vec::new();
    for (_, mut conn) in opened.conns {
        super::established(&mut conn).await?;
        super::subscribe(&mut conn, &channel, None).await?;
        subscribed.push(conn);
    }
    let subscribers = subscribed.len();
    let deliveries = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for conn in subscribed {
        readers.spawn(count(conn, opts.size, deliveries.clone(), stop_rx.clone()));
    }

    let clock = Clock::start();
    let latencies = Latencies::default();
    let published = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let meter = CpuMeter::start(opts.common.server_pid);
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut publishers = tokio::task::JoinSet::new();
    for k in 0..opts.http_connections {
        let (mut http, path, app) = (HttpConn::new(&http_target), http_target.path.clone(), opts.app.clone());
        let (channel, published, errors, first_error) =
            (channel.clone(), published.clone(), errors.clone(), first_error.clone());
        let mut recorder = latencies.recorder();
        let size = opts.size;
        publishers.spawn(async move {
            let mut seq = (k as u64) << 40;
            while Instant::now() < deadline {
                let data = super::event_data(seq, clock.now_ns(), size);
                seq += 1;
                let body = serde_json::json!({ "name": "wsb", "channel": &*channel, "data": data }).to_string();
                let query = sign::api_query(
                    &app.key,
                    &app.secret,
                    "POST",
                    &path,
                    body.as_bytes(),
                    super::unix_secs(),
                );
                let t0 = clock.now_ns();
                let answer = http.post(&format!("{path}?{query}"), body.as_bytes()).await;
                recorder.record(clock.now_ns() - t0);
                let refused = match answer {
                    Ok((200, reply)) if !reply.windows(7).any(|w| w == b"\"error\"") => None,
                    Ok((status, reply)) => Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&reply))),
                    Err(e) => Some(format!("{e:#}")),
                };
                match refused {
                    None => {
                        published.fetch_add(1, Relaxed);
                    }
                    Some(error) => {
                        errors.fetch_add(1, Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(error);
                    }
                }
            }
        });
    }
    while publishers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = meter.finish();
    let published = published.load(Relaxed);
    let expected = published * subscribers as u64;
    let drain_end = Instant::now() + opts.drain;
    while deliveries.load(Relaxed) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send_replace(true);
    while readers.join_next().await.is_some() {}
    let deliveries = deliveries.load(Relaxed);
    let first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(ApiReport {
        mode: "pusher-api",
        label: opts.common.label.clone(),
        url: opts.common.url.clone(),
        http_connections: opts.http_connections,
        connections,
        subscribers,
        duration_secs: report::round1(elapsed * 10.0) / 10.0,
        published,
        publishes_per_sec: report::round1(published as f64 / elapsed),
        publishes_per_server_cpu_sec: report::per_cpu_sec(published, cpu.server_cpu_secs),
        errors: errors.load(Relaxed),
        first_error,
        latency: latencies.summary(),
        deliveries,
        loss: expected.saturating_sub(deliveries),
        cpu,
    })
}

/// Counts the benchmark events one subscriber receives.
async fn count(mut conn: WsConn, size: usize, deliveries: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = conn.read_event() => match event {
                Ok(Incoming::Message(message)) => {
                    if let Received::Event { intact: true, .. } = parse_event(&message.data, size) {
                        deliveries.fetch_add(1, Relaxed);
                    } else {
                        on_control(&mut conn, &message.data);
                    }
                }
                Ok(_) | Err(_) => return,
            },
        }
        if conn.has_queued() && conn.flush().await.is_err() {
            return;
        }
    }
    conn.close(1000, Duration::from_millis(100)).await;
}

impl ApiReport {
    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = format!(
            "pusher-api against {} ({})\n{} keep-alive connections, {} subscribers\n",
            self.label.as_deref().unwrap_or("?"),
            self.url,
            self.http_connections,
            self.subscribers
        );
        out.push_str(&format!(
            "{} publishes in {:.2} s: {} publishes/s; {} errors; {} deliveries, loss {}\n",
            report::thousands(self.published as f64),
            self.duration_secs,
            report::thousands(self.publishes_per_sec),
            self.errors,
            report::thousands(self.deliveries as f64),
            self.loss
        ));
        if let Some(error) = &self.first_error {
            out.push_str(&format!("first error: {error}\n"));
        }
        out.push_str(&format!("request latency: {}\n", self.latency.human()));
        out.push_str(&self.cpu.human());
        out
    }
}
