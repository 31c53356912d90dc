//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! # Why it is shaped like this
//! - **One recorder per hub, not the global one.** Each hub (so each
//!   [`Server`](crate::Server)) builds its own [`PrometheusRecorder`] and
//!   keeps it here; nothing is installed with `metrics::set_global_recorder`.
//!   Several servers in one process (the integration tests start dozens)
//!   therefore never share or overwrite each other's numbers, and the
//!   `metrics!` macros are not used.
//! - **Handles registered once.** Every labelled series is registered when
//!   the hub is created and kept in fixed arrays indexed by endpoint, reason
//!   or code. Counting a message is then an array index and one atomic add:
//!   no allocation, no formatting, no map lookup, no lock. All series exist
//!   from the start, so they read 0 instead of being absent.
//! - **Live values computed at scrape time.** Connections per endpoint,
//!   rooms, queue depths, evictions and the history counters already exist
//!   in the hub and the history store; the caller gathers them into a
//!   [`Scrape`] and [`Metrics::render`] copies that into the recorder just
//!   before rendering, so they cost the hot path nothing.
//! - **Renders what it is handed.** This module names only the pure types
//!   (`protocol`, `history`): the hub, the handshake and the log output
//!   depend on it, never the other way round, and the modules that own
//!   [`RefusedUpgrade`]'s sources (`access`, `auth`) convert into it.
//! - **Registered late:** history write latency, only once the history
//!   writer records into [`Metrics::history_commit_seconds`].
//!
//! The exporter is `metrics-exporter-prometheus` without its HTTP server:
//! the route in `routes.rs` calls [`Metrics::render`]. Every series is
//! documented in `docs/operations.md`, section "Metrics".

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::history::HistoryStats;
use crate::protocol::{Ending, Endpoint};

/// The `Content-Type` of the Prometheus text exposition format, which
/// scrapers use to pick their parser.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Name of the history commit latency histogram (its buckets are set here).
const HISTORY_COMMIT_SECONDS: &str = "wshub_history_commit_duration_seconds";

/// Bucket bounds for the commit latency, in seconds: a commit normally takes
/// well under a millisecond on a local disk, seconds on a struggling one.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

const ENDPOINTS: [Endpoint; 4] = Endpoint::ALL;

/// Index into per-endpoint arrays.
#[inline]
fn endpoint_index(endpoint: Endpoint) -> usize {
    endpoint.index()
}

/// `reason` label values of `wshub_connections_closed_total`, one per
/// [`Ending`] variant, in the order of [`ending_index`].
const CLOSE_REASONS: [&str; 12] = [
    "client_closed",
    "protocol_violation",
    "policy_violation",
    "evicted",
    "server_closed",
    "read_timeout",
    "write_timeout",
    "close_timeout",
    "dropped",
    "socket_error",
    "aborted",
    "overloaded",
];

#[inline]
fn ending_index(ending: &Ending) -> usize {
    match ending {
        Ending::ClientClosed(_) => 0,
        Ending::ProtocolViolation(_) => 1,
        Ending::PolicyViolation(_) => 2,
        Ending::Evicted(_) => 3,
        Ending::ServerClosed(_) => 4,
        Ending::ReadTimeout => 5,
        Ending::WriteTimeout => 6,
        Ending::CloseTimeout(_) => 7,
        Ending::Dropped => 8,
        Ending::Io(_) => 9,
        Ending::Aborted => 10,
        Ending::Overloaded(_) => 11,
    }
}

/// `code` label values of `wshub_close_codes_total`: the codes this server
/// sends or commonly receives, then `other` (any other code a client sent:
/// one bucket, so a client cannot create thousands of series) and `none`
/// (the connection ended without a close code).
const CLOSE_CODES: [&str; 12] = [
    "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1010", "1011", "1013", "other", "none",
];

#[inline]
fn code_index(code: Option<u16>) -> usize {
    match code {
        Some(1000) => 0,
        Some(1001) => 1,
        Some(1002) => 2,
        Some(1003) => 3,
        Some(1007) => 4,
        Some(1008) => 5,
        Some(1009) => 6,
        Some(1010) => 7,
        Some(1011) => 8,
        Some(1013) => 9,
        Some(_) => 10,
        None => 11,
    }
}

/// Why a WebSocket upgrade was refused (the `reason` label of
/// `wshub_upgrades_refused_total`). Its own type, so that the metric's
/// label set stays fixed whatever the handshake code calls its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedUpgrade {
    /// Not a WebSocket upgrade at all (a plain GET): 426.
    NotWebSocket,
    /// A `Sec-WebSocket-Version` other than 13: 426.
    Version,
    /// A missing or malformed `Sec-WebSocket-Key`: 400.
    Key,
    /// A bad room name in `/ws/{room}`: 400.
    BadRoom,
    /// The page's origin is not allowed: 403.
    Origin,
    /// `--max-connections` reached: 503.
    Full,
    /// The server is shutting down: 503.
    ShuttingDown,
    /// No valid access token: 401.
    Unauthorized,
    /// A valid token that does not cover the room: 403.
    ForbiddenRoom,
    /// `--max-connections-per-ip` reached: 429.
    TooManyFromAddress,
    /// An upgrade to a path that serves no WebSocket: 404.
    NotFound,
    /// A raw room named as a Pusher signed channel: 403.
    SignedChannel,
    /// No `Host` header, or more than one: 400.
    Host,
}

const REFUSALS: [RefusedUpgrade; 13] = [
    RefusedUpgrade::NotWebSocket,
    RefusedUpgrade::Version,
    RefusedUpgrade::Key,
    RefusedUpgrade::BadRoom,
    RefusedUpgrade::Origin,
    RefusedUpgrade::Full,
    RefusedUpgrade::ShuttingDown,
    RefusedUpgrade::Unauthorized,
    RefusedUpgrade::ForbiddenRoom,
    RefusedUpgrade::TooManyFromAddress,
    RefusedUpgrade::NotFound,
    RefusedUpgrade::SignedChannel,
    RefusedUpgrade::Host,
];

impl RefusedUpgrade {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedUpgrade::NotWebSocket => "not_websocket",
            RefusedUpgrade::Version => "version",
            RefusedUpgrade::Key => "key",
            RefusedUpgrade::BadRoom => "bad_room",
            RefusedUpgrade::Origin => "origin",
            RefusedUpgrade::Full => "full",
            RefusedUpgrade::ShuttingDown => "shutting_down",
            RefusedUpgrade::Unauthorized => "unauthorized",
            RefusedUpgrade::ForbiddenRoom => "forbidden_room",
            RefusedUpgrade::TooManyFromAddress => "too_many_from_address",
            RefusedUpgrade::NotFound => "not_found",
            RefusedUpgrade::SignedChannel => "signed_channel",
            RefusedUpgrade::Host => "host",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the rate limits did to a connection (the `action` label of
/// `wshub_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAction {
    /// A `wshub.v1` message was dropped and answered with `rate_limited`
    /// (counted per message).
    Dropped,
    /// A raw connection went over its limits and its reads were paused
    /// until it slowed down (counted per episode, not per pause).
    Throttled,
    /// A `wshub.v1` connection stayed over its limits and was closed with
    /// 1008.
    Closed,
}

const RATE_ACTIONS: [&str; 3] = ["dropped", "throttled", "closed"];

/// Why an HTTP connection ended before its request was served (the
/// `reason` label of `wshub_http_connections_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DroppedHttp {
    /// A request head over the size or header-count limit: 431.
    HeadTooLarge,
    /// No complete request head in time (also a kept-alive connection
    /// left idle that long): closed without a response.
    HeadTimeout,
    /// The TLS handshake did not finish in time.
    TlsTimeout,
    /// The TLS handshake failed.
    TlsFailed,
}

const DROPPED_HTTP: [DroppedHttp; 4] = [
    DroppedHttp::HeadTooLarge,
    DroppedHttp::HeadTimeout,
    DroppedHttp::TlsTimeout,
    DroppedHttp::TlsFailed,
];

impl DroppedHttp {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DroppedHttp::HeadTooLarge => "head_too_large",
            DroppedHttp::HeadTimeout => "head_timeout",
            DroppedHttp::TlsTimeout => "tls_timeout",
            DroppedHttp::TlsFailed => "tls_failed",
        }
    }
}

/// Counters kept per endpoint on the hot path.
struct PerEndpoint {
    opened: Counter,
    messages_in: Counter,
    bytes_in: Counter,
    frames_out: Counter,
    bytes_out: Counter,
    closed: [Counter; CLOSE_REASONS.len()],
    rate_limited: [Counter; RATE_ACTIONS.len()],
    /// Scrape time: live connections.
    connections: Gauge,
}

/// Series copied in from the hub and the history store at each scrape.
struct Scraped {
    rooms: Gauge,
    queued_frames: Gauge,
    queued_frames_max: Gauge,
    evictions: Counter,
    published: Counter,
    delivered: Counter,
    history_appended: Counter,
    history_committed: Counter,
    history_commits: Counter,
    history_write_errors: Counter,
    history_dropped: Counter,
    history_pending: Gauge,
    history_memory_bytes: Gauge,
    history_memory_dropped: Counter,
    redis_connected: Gauge,
    incomplete_bytes: Gauge,
    /// Process-wide, not per hub: there is one log output.
    log_lines_dropped: Counter,
    webhook_delivered: Counter,
    webhook_dropped: Counter,
    webhook_failed: Counter,
    webhook_retries: Counter,
    webhook_queued: Gauge,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    endpoints: [PerEndpoint; ENDPOINTS.len()],
    close_codes: [Counter; CLOSE_CODES.len()],
    refused: [Counter; REFUSALS.len()],
    http_dropped: [Counter; DROPPED_HTTP.len()],
    scraped: Scraped,
    history_commit: OnceLock<Histogram>,
}

/// One hub's metrics: cheap handles for the hot path, and the renderer for
/// `GET /metrics`. Cloning shares the same numbers.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Registers series on one recorder, describing each name once.
struct Registrar<'a>(&'a PrometheusRecorder);

impl Registrar<'_> {
    fn describe(&self, name: &'static str, help: &'static str, kind: Kind) {
        let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
        match kind {
            Kind::Counter => self.0.describe_counter(name, None, help),
            Kind::Gauge => self.0.describe_gauge(name, None, help),
            Kind::Histogram => self.0.describe_histogram(name, None, help),
        }
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        self.0.register_counter(&key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        self.0.register_gauge(&key(name, labels), &METADATA)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::from_static_parts(k, v)).collect();
    Key::from_parts(name, labels)
}

/// Every series: name, kind, help. The single list that registration
/// describes from (and `docs/operations.md` documents).
const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    (
        "wshub_connections",
        Kind::Gauge,
        "Live WebSocket connections (upgrades accepted, not yet ended).",
    ),
    (
        "wshub_connections_opened_total",
        Kind::Counter,
        "WebSocket connections opened (upgrades completed).",
    ),
    (
        "wshub_connections_closed_total",
        Kind::Counter,
        "WebSocket connections ended, by why they ended.",
    ),
    (
        "wshub_close_codes_total",
        Kind::Counter,
        "Ended connections by close code sent or received ('none': no close frame, 'other': any other code).",
    ),
    (
        "wshub_upgrades_refused_total",
        Kind::Counter,
        "WebSocket upgrade requests refused with an HTTP status before any socket existed.",
    ),
    (
        "wshub_messages_received_total",
        Kind::Counter,
        "Complete data messages (text or binary) received from clients.",
    ),
    (
        "wshub_received_bytes_total",
        Kind::Counter,
        "Bytes read from client sockets (frame headers included, TLS excluded).",
    ),
    (
        "wshub_frames_sent_total",
        Kind::Counter,
        "Frames written completely to client sockets (data, ping, pong and close).",
    ),
    (
        "wshub_sent_bytes_total",
        Kind::Counter,
        "Bytes written to client sockets (frame headers included, TLS excluded).",
    ),
    ("wshub_rooms", Kind::Gauge, "Rooms with at least one member."),
    (
        "wshub_outbound_queued_frames",
        Kind::Gauge,
        "Frames waiting in all connections' outbound queues (broadcast queue depth), at scrape time.",
    ),
    (
        "wshub_outbound_queued_frames_max",
        Kind::Gauge,
        "The longest single outbound queue, in frames, at scrape time.",
    ),
    (
        "wshub_evictions_total",
        Kind::Counter,
        "Connections evicted (closed 1008) because their outbound queue overflowed.",
    ),
    (
        "wshub_room_messages_published_total",
        Kind::Counter,
        "Messages published into rooms.",
    ),
    (
        "wshub_room_frames_queued_total",
        Kind::Counter,
        "Frames queued to room members by fan-out (one per member per published message).",
    ),
    (
        "wshub_history_appended_total",
        Kind::Counter,
        "Chat messages appended to history.",
    ),
    (
        "wshub_history_committed_total",
        Kind::Counter,
        "History entries committed to SQLite.",
    ),
    (
        "wshub_history_commits_total",
        Kind::Counter,
        "History transactions committed.",
    ),
    (
        "wshub_history_write_errors_total",
        Kind::Counter,
        "Failed history commit attempts (each is retried).",
    ),
    (
        "wshub_history_dropped_total",
        Kind::Counter,
        "History entries never stored (their batch failed every retry).",
    ),
    (
        "wshub_history_pending",
        Kind::Gauge,
        "History entries waiting for the writer thread (its backlog).",
    ),
    (
        "wshub_history_memory_bytes",
        Kind::Gauge,
        "What the history kept in memory costs, all rooms together (bounded by --history-max-bytes).",
    ),
    (
        "wshub_history_memory_dropped_total",
        Kind::Counter,
        "History entries dropped from memory by --history-max-bytes (memory store: gone; sqlite: still in the file).",
    ),
    (
        "wshub_redis_connected",
        Kind::Gauge,
        "1 while this node reaches Redis and delivers across nodes; 0 when it does not, or runs without --redis.",
    ),
    (
        "wshub_incomplete_message_bytes",
        Kind::Gauge,
        "Bytes held by messages still arriving, across all connections (--max-incomplete-bytes bounds it), at scrape time.",
    ),
    (
        "wshub_http_connections_dropped_total",
        Kind::Counter,
        "HTTP connections ended before a request was served: head too large (431), head or TLS handshake timeout, TLS failure.",
    ),
    (
        "wshub_log_lines_dropped_total",
        Kind::Counter,
        "Log lines dropped because the log output (stderr) did not keep up; the server never waits for it.",
    ),
    (
        "wshub_webhook_events_total",
        Kind::Counter,
        "Pusher webhook events by outcome: delivered (a 2xx), dropped (a full queue, or after shutdown began), failed (retries used up, refused, or unsent at the flush timeout).",
    ),
    (
        "wshub_webhook_retries_total",
        Kind::Counter,
        "Webhook POSTs retried after a 5xx, a 429, a connection error or a timeout.",
    ),
    (
        "wshub_webhook_queued_events",
        Kind::Gauge,
        "Webhook events waiting in the targets' queues, at scrape time.",
    ),
    (
        HISTORY_COMMIT_SECONDS,
        Kind::Histogram,
        "Time one history transaction takes to commit.",
    ),
];

impl Metrics {
    /// A fresh set of metrics with its own recorder, every series at 0.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HISTORY_COMMIT_SECONDS.to_owned()), &COMMIT_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let r = Registrar(&recorder);
        for &(name, kind, help) in DESCRIPTIONS {
            r.describe(name, help, kind);
        }
        let endpoints = ENDPOINTS.map(|endpoint| {
            let e = ("endpoint", endpoint.as_str());
            PerEndpoint {
                opened: r.counter("wshub_connections_opened_total", &[e]),
                messages_in: r.counter("wshub_messages_received_total", &[e]),
                bytes_in: r.counter("wshub_received_bytes_total", &[e]),
                frames_out: r.counter("wshub_frames_sent_total", &[e]),
                bytes_out: r.counter("wshub_sent_bytes_total", &[e]),
                closed: CLOSE_REASONS
                    .map(|reason| r.counter("wshub_connections_closed_total", &[e, ("reason", reason)])),
                rate_limited: RATE_ACTIONS
                    .map(|action| r.counter("wshub_rate_limited_total", &[e, ("action", action)])),
                connections: r.gauge("wshub_connections", &[e]),
            }
        });
        let close_codes = CLOSE_CODES.map(|code| r.counter("wshub_close_codes_total", &[("code", code)]));
        let refused = REFUSALS.map(|reason| r.counter("wshub_upgrades_refused_total", &[("reason", reason.as_str())]));
        let http_dropped = DROPPED_HTTP
            .map(|reason| r.counter("wshub_http_connections_dropped_total", &[("reason", reason.as_str())]));
        let scraped = Scraped {
            rooms: r.gauge("wshub_rooms", &[]),
            queued_frames: r.gauge("wshub_outbound_queued_frames", &[]),
            queued_frames_max: r.gauge("wshub_outbound_queued_frames_max", &[]),
            evictions: r.counter("wshub_evictions_total", &[("reason", "slow_consumer")]),
            published: r.counter("wshub_room_messages_published_total", &[]),
            delivered: r.counter("wshub_room_frames_queued_total", &[]),
            history_appended: r.counter("wshub_history_appended_total", &[]),
            history_committed: r.counter("wshub_history_committed_total", &[]),
            history_commits: r.counter("wshub_history_commits_total", &[]),
            history_write_errors: r.counter("wshub_history_write_errors_total", &[]),
            history_dropped: r.counter("wshub_history_dropped_total", &[]),
            history_pending: r.gauge("wshub_history_pending", &[]),
            history_memory_bytes: r.gauge("wshub_history_memory_bytes", &[]),
            history_memory_dropped: r.counter("wshub_history_memory_dropped_total", &[]),
            redis_connected: r.gauge("wshub_redis_connected", &[]),
            incomplete_bytes: r.gauge("wshub_incomplete_message_bytes", &[]),
            log_lines_dropped: r.counter("wshub_log_lines_dropped_total", &[]),
            webhook_delivered: r.counter("wshub_webhook_events_total", &[("outcome", "delivered")]),
            webhook_dropped: r.counter("wshub_webhook_events_total", &[("outcome", "dropped")]),
            webhook_failed: r.counter("wshub_webhook_events_total", &[("outcome", "failed")]),
            webhook_retries: r.counter("wshub_webhook_retries_total", &[]),
            webhook_queued: r.gauge("wshub_webhook_queued_events", &[]),
        };
        Metrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                endpoints,
                close_codes,
                refused,
                http_dropped,
                scraped,
                history_commit: OnceLock::new(),
            }),
        }
    }

    #[inline]
    fn endpoint(&self, endpoint: Endpoint) -> &PerEndpoint {
        &self.inner.endpoints[endpoint_index(endpoint)]
    }

    /// A connection completed its upgrade (the hub calls this when it
    /// registers the connection).
    pub fn connection_opened(&self, endpoint: Endpoint) {
        self.endpoint(endpoint).opened.increment(1);
    }

    /// Hot path: `bytes` were read from a client's socket (call once per
    /// successful read, with the bytes that read returned, and once for the
    /// bytes that came with the upgrade request).
    #[inline]
    pub fn bytes_in(&self, endpoint: Endpoint, bytes: usize) {
        self.endpoint(endpoint).bytes_in.increment(bytes as u64);
    }

    /// Hot path: one complete data message (text or binary) arrived.
    #[inline]
    pub fn message_in(&self, endpoint: Endpoint) {
        self.endpoint(endpoint).messages_in.increment(1);
    }

    /// Hot path: one vectored write put `bytes` on the socket and completed
    /// `frames` frames (a frame split across writes counts once, in the
    /// write that finishes it).
    #[inline]
    pub fn frames_out(&self, endpoint: Endpoint, frames: usize, bytes: usize) {
        let counters = self.endpoint(endpoint);
        if frames > 0 {
            counters.frames_out.increment(frames as u64);
        }
        counters.bytes_out.increment(bytes as u64);
    }

    /// A connection ended: counts it by reason (per endpoint) and by close
    /// code. Call once per connection, where the close line is logged.
    pub fn connection_closed(&self, endpoint: Endpoint, ending: &Ending) {
        self.endpoint(endpoint).closed[ending_index(ending)].increment(1);
        self.inner.close_codes[code_index(ending.close_code())].increment(1);
    }

    /// The rate limits acted on a connection of `endpoint`.
    pub fn rate_limited(&self, endpoint: Endpoint, action: RateAction) {
        self.endpoint(endpoint).rate_limited[action as usize].increment(1);
    }

    /// An upgrade was refused with an HTTP status; accepts the handshake's
    /// `&Refusal` too (`metrics.upgrade_refused(&refusal)`).
    pub fn upgrade_refused(&self, reason: impl Into<RefusedUpgrade>) {
        self.inner.refused[reason.into().index()].increment(1);
    }

    /// An HTTP connection ended before its request was served.
    pub fn http_dropped(&self, reason: DroppedHttp) {
        self.inner.http_dropped[reason as usize].increment(1);
    }

    /// The history commit latency histogram, registered on first call (so
    /// it is only exported once something records into it). Meant for the
    /// history writer thread: `record(elapsed.as_secs_f64())` per commit.
    pub fn history_commit_seconds(&self) -> Histogram {
        self.inner
            .history_commit
            .get_or_init(|| {
                self.inner
                    .recorder
                    .register_histogram(&key(HISTORY_COMMIT_SECONDS, &[]), &METADATA)
            })
            .clone()
    }

    /// Records one history commit's duration (see
    /// [`Metrics::history_commit_seconds`]).
    pub fn history_commit(&self, elapsed: Duration) {
        self.history_commit_seconds().record(elapsed.as_secs_f64());
    }

    /// The Prometheus text for `GET /metrics`: copies the live values of
    /// `scrape` in, then renders every series.
    pub fn render(&self, scrape: &Scrape) -> String {
        for (endpoint, live) in ENDPOINTS.into_iter().zip(scrape.connections) {
            self.endpoint(endpoint).connections.set(live as f64);
        }
        let s = &self.inner.scraped;
        s.rooms.set(scrape.rooms as f64);
        s.queued_frames.set(scrape.queued_frames as f64);
        s.queued_frames_max.set(scrape.longest_queue_frames as f64);
        s.evictions.absolute(scrape.evictions);
        s.published.absolute(scrape.published);
        s.delivered.absolute(scrape.delivered);
        let history = &scrape.history;
        s.history_appended.absolute(history.appended);
        s.history_committed.absolute(history.committed);
        s.history_commits.absolute(history.commits);
        s.history_write_errors.absolute(history.write_errors);
        s.history_dropped.absolute(history.dropped);
        s.history_pending.set(history.pending as f64);
        s.history_memory_bytes.set(history.memory_bytes as f64);
        s.history_memory_dropped.absolute(history.memory_dropped);
        s.redis_connected.set(if scrape.redis_connected { 1.0 } else { 0.0 });
        s.incomplete_bytes.set(scrape.incomplete_bytes as f64);
        s.log_lines_dropped.absolute(scrape.log_lines_dropped);
        let hooks = &scrape.webhooks;
        s.webhook_delivered.absolute(hooks.delivered);
        s.webhook_dropped.absolute(hooks.dropped);
        s.webhook_failed.absolute(hooks.failed);
        s.webhook_retries.absolute(hooks.retries);
        s.webhook_queued.set(hooks.queued as f64);
        self.inner.handle.render()
    }
}

/// The live values one scrape copies in: numbers the hub, the history store
/// and the log output already keep. The caller gathers them (`Hub::scrape`,
/// then the route adds the log count), so that metrics depends on none of
/// those modules and costs the hot path nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    /// Live connections of each endpoint, in [`Endpoint::index`] order.
    pub connections: [usize; 4],
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Frames waiting in all connections' outbound queues.
    pub queued_frames: usize,
    /// The longest single outbound queue, in frames.
    pub longest_queue_frames: usize,
    /// Connections evicted for an overflowing outbound queue, since start.
    pub evictions: u64,
    /// Messages published into rooms, since start.
    pub published: u64,
    /// Frames queued to room members by fan-out, since start.
    pub delivered: u64,
    /// The history store's counters.
    pub history: HistoryStats,
    /// Whether cross-node delivery through Redis is up (`false` without
    /// Redis).
    pub redis_connected: bool,
    /// Bytes unfinished messages hold now.
    pub incomplete_bytes: usize,
    /// Log lines dropped since start: process-wide, one log output.
    pub log_lines_dropped: u64,
    /// The webhooks' counters (the server adds them: the hub has none).
    pub webhooks: crate::webhooks::WebhookStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::protocol::CloseCode;

    /// `name{labels} value` lines into (series, value).
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        samples(text).into_iter().find(|(s, _)| s == series).map(|(_, v)| v)
    }

    fn hub() -> Hub {
        let history = crate::history::History::open(crate::history::HistoryConfig {
            backend: crate::history::Backend::Memory,
            ..Default::default()
        })
        .expect("memory history");
        Hub::new(crate::hub::HubConfig {
            max_connections: 10,
            history: history.clone(),
            join_history: 0,
            timeouts: crate::hub::Timeouts {
                ping_interval: std::time::Duration::from_secs(54),
                read_timeout: std::time::Duration::from_secs(60),
                write_timeout: std::time::Duration::from_secs(10),
                rate: crate::ratelimit::RateLimits::UNLIMITED,
            },
            max_incomplete_bytes: 1 << 20,
            workers: 1,
            broker: std::sync::Arc::new(crate::broker::LocalBroker::new(history.clone())),
            room_events: std::sync::Arc::new(crate::hub::Unheard),
        })
    }

    #[test]
    fn every_series_exists_from_the_start_at_zero() {
        let hub = hub();
        let text = hub.metrics().render(&hub.scrape());
        assert_eq!(value(&text, r#"wshub_connections{endpoint="echo"}"#), Some(0.0));
        assert_eq!(
            value(
                &text,
                r#"wshub_connections_closed_total{endpoint="v1",reason="read_timeout"}"#
            ),
            Some(0.0)
        );
        assert_eq!(value(&text, r#"wshub_close_codes_total{code="none"}"#), Some(0.0));
        assert_eq!(
            value(&text, r#"wshub_upgrades_refused_total{reason="origin"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(&text, r#"wshub_evictions_total{reason="slow_consumer"}"#),
            Some(0.0)
        );
        assert_eq!(value(&text, "wshub_history_pending"), Some(0.0));
        assert_eq!(value(&text, "wshub_log_lines_dropped_total"), Some(0.0));
        assert!(text.contains("# TYPE wshub_sent_bytes_total counter"), "{text}");
        assert!(text.contains("# HELP wshub_rooms "), "{text}");
        // Not exported until the history writer records into it.
        assert!(!text.contains(HISTORY_COMMIT_SECONDS), "{text}");
        for (series, _) in samples(&text) {
            assert!(series.starts_with("wshub_"), "{series}");
        }
    }

    #[test]
    fn history_memory_is_exported_in_bytes() {
        let hub = hub();
        assert_eq!(
            value(&hub.metrics().render(&hub.scrape()), "wshub_history_memory_bytes"),
            Some(0.0)
        );
        hub.history().append("r", "ann", &"x".repeat(1_000));
        let text = hub.metrics().render(&hub.scrape());
        let held = value(&text, "wshub_history_memory_bytes").expect("exported");
        assert!((1_003.0..2_000.0).contains(&held), "{held}");
        assert_eq!(value(&text, "wshub_history_memory_dropped_total"), Some(0.0));
    }

    #[test]
    fn hot_path_counters_land_on_their_labels() {
        let hub = hub();
        let m = hub.metrics();
        m.bytes_in(Endpoint::Echo, 100);
        m.message_in(Endpoint::Echo);
        m.frames_out(Endpoint::Chat, 2, 30);
        m.frames_out(Endpoint::Chat, 0, 5);
        m.connection_closed(Endpoint::V1, &Ending::ClientClosed(Some(4000)));
        m.connection_closed(Endpoint::Echo, &Ending::Evicted(CloseCode::PolicyViolation));
        m.connection_closed(Endpoint::Echo, &Ending::Dropped);
        m.upgrade_refused(RefusedUpgrade::Full);
        m.upgrade_refused(&crate::http::access::Refusal::Origin);
        hub.stats().evictions.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let text = m.render(&hub.scrape());
        let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
        assert_eq!(v(r#"wshub_received_bytes_total{endpoint="echo"}"#), 100.0);
        assert_eq!(v(r#"wshub_messages_received_total{endpoint="echo"}"#), 1.0);
        assert_eq!(v(r#"wshub_frames_sent_total{endpoint="chat"}"#), 2.0);
        assert_eq!(v(r#"wshub_sent_bytes_total{endpoint="chat"}"#), 35.0);
        assert_eq!(
            v(r#"wshub_connections_closed_total{endpoint="v1",reason="client_closed"}"#),
            1.0
        );
        assert_eq!(
            v(r#"wshub_connections_closed_total{endpoint="echo",reason="evicted"}"#),
            1.0
        );
        assert_eq!(
            v(r#"wshub_connections_closed_total{endpoint="echo",reason="dropped"}"#),
            1.0
        );
        assert_eq!(v(r#"wshub_close_codes_total{code="other"}"#), 1.0);
        assert_eq!(v(r#"wshub_close_codes_total{code="1008"}"#), 1.0);
        assert_eq!(v(r#"wshub_close_codes_total{code="none"}"#), 1.0);
        assert_eq!(v(r#"wshub_upgrades_refused_total{reason="full"}"#), 1.0);
        assert_eq!(v(r#"wshub_upgrades_refused_total{reason="origin"}"#), 1.0);
        assert_eq!(v(r#"wshub_evictions_total{reason="slow_consumer"}"#), 2.0);
    }

    #[test]
    fn two_hubs_do_not_share_numbers() {
        let (a, b) = (hub(), hub());
        a.metrics().message_in(Endpoint::Echo);
        let series = r#"wshub_messages_received_total{endpoint="echo"}"#;
        assert_eq!(value(&a.metrics().render(&a.scrape()), series), Some(1.0));
        assert_eq!(value(&b.metrics().render(&b.scrape()), series), Some(0.0));
    }

    #[test]
    fn history_commit_latency_is_a_histogram_once_recorded() {
        let hub = hub();
        hub.metrics().history_commit(Duration::from_micros(700));
        let text = hub.metrics().render(&hub.scrape());
        assert!(
            text.contains("# TYPE wshub_history_commit_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"wshub_history_commit_duration_seconds_bucket{le="0.0005"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(&text, r#"wshub_history_commit_duration_seconds_bucket{le="0.001"}"#),
            Some(1.0)
        );
        assert_eq!(value(&text, "wshub_history_commit_duration_seconds_count"), Some(1.0));
    }

    #[test]
    fn every_ending_and_refusal_has_its_own_label() {
        assert_eq!(
            REFUSALS.iter().map(|r| r.index()).collect::<Vec<_>>(),
            (0..REFUSALS.len()).collect::<Vec<_>>()
        );
        let endings = [
            Ending::ClientClosed(None),
            Ending::ProtocolViolation(crate::protocol::ProtocolError {
                code: CloseCode::ProtocolError,
                reason: "x",
            }),
            Ending::PolicyViolation("x"),
            Ending::Evicted(CloseCode::PolicyViolation),
            Ending::ServerClosed(CloseCode::GoingAway),
            Ending::ReadTimeout,
            Ending::WriteTimeout,
            Ending::CloseTimeout(CloseCode::GoingAway),
            Ending::Dropped,
            Ending::Io(std::io::ErrorKind::BrokenPipe),
            Ending::Aborted,
            Ending::Overloaded("x"),
        ];
        let indexes: Vec<usize> = endings.iter().map(ending_index).collect();
        assert_eq!(indexes, (0..CLOSE_REASONS.len()).collect::<Vec<_>>());
        assert_eq!(
            DROPPED_HTTP.iter().map(|&d| d as usize).collect::<Vec<_>>(),
            (0..DROPPED_HTTP.len()).collect::<Vec<_>>()
        );
    }
}
