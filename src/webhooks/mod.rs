//! Webhooks: telling an app's backend what happened on its channels, the
//! way Pusher Channels does, so that a backend written for Pusher (and the
//! server SDKs' `webhook()` checks) works unchanged.
//!
//! # What is sent
//! An HTTP/1.1 `POST` to each of the app's webhook URLs, `Content-Type:
//! application/json`, with the body
//! `{"time_ms": 1327078148132, "events": [{"name": "channel_occupied", "channel": "lobby"}, ...]}`
//! (one or more [`Event`]s, as Pusher's batch webhooks), `X-Pusher-Key: <app
//! key>` and `X-Pusher-Signature: <hex HMAC-SHA256 of the body, keyed with
//! the app secret>`. `http://` and `https://` URLs both work (rustls, the
//! system's trust store, plus [`WebhooksConfig::extra_root_certificates`]).
//!
//! # Never in a connection's way
//! [`Webhooks::send`] is a plain function: it filters, serializes the event
//! once, and puts it on each interested target's bounded queue with
//! `try_send`. It never awaits and never blocks, whatever the backend does.
//! One task per target (spawned by [`start`]) takes events off its queue in
//! batches (up to [`WebhooksConfig::max_batch_events`], or what arrives
//! within [`WebhooksConfig::batch_window`]) and POSTs them one batch at a
//! time, so that the backend gets them in order.
//!
//! # Failures, and what is counted
//! - A 2xx is delivered. A 5xx, a 429, a refused or reset connection, or no
//!   answer within [`WebhooksConfig::request_timeout`] is retried after
//!   about 0.5, 1, 2, 4, 8 s ([`Backoff`], with jitter), then given up.
//! - Any other status (400, 401, 404, a redirect...) is refused for good:
//!   the same body would get the same answer.
//! - A target's queue holds at most [`WebhooksConfig::queue_capacity`]
//!   events and [`WebhooksConfig::max_queued_bytes`] bytes of them (the
//!   batch being sent included): memory stays bounded however long a
//!   backend is away. What does not fit is dropped.
//!
//! Every event dropped or given up is counted in [`Webhooks::stats`] and
//! logged at `warn` with the app id, the URL (without its query) and the
//! reason: each give-up with its batch's size; drops, which come in bursts,
//! the first and then at most one line a second per target with the total.
//!
//! # Shutdown
//! Cancelling the `stop` token given to [`start`] ends the batch windows:
//! each target sends what it has queued at once, still retrying, for at most
//! [`WebhooksConfig::flush_timeout`]; what is left then is counted as
//! failed. Events sent after the stop are dropped (counted). Stop webhooks
//! after the connections have closed, so that the `channel_vacated` and
//! `member_removed` of a closing node still go out.
//!
//! # Exactly once per cluster
//! With `--redis`, every node sees every channel's traffic, but each event
//! must reach the backend once, not once per node:
//! - `client_event`, `cache_miss`: only the node the client is connected
//!   to knows of it; that node sends it.
//! - `member_added` / `member_removed`, `channel_occupied` /
//!   `channel_vacated`, `subscription_count`: Redis counts a channel's
//!   members and each presence user's connections across the cluster, in
//!   the script that records a join or leave (`broker/redis/wire.rs`,
//!   `PRESENCE_SCRIPT`), and publishes the counts after the change with
//!   the name of the node that recorded it. That node alone reports it
//!   (`Hub::report_cluster_change`): the one whose change took a count
//!   0 -> 1 or 1 -> 0 sends occupied / added or vacated / removed. Redis
//!   runs the script atomically, so exactly one node sees each transition.
//!   The survivor that removes a dead node's members (the one whose `ZREM`
//!   wins) records their leaves the same way, and so sends what they bring
//!   about.
//!
//! Without Redis there is one node, and the hub's own counts decide.
//!
//! # Layout
//! - `event`: [`Event`] and [`EventKind`], serialized as Pusher does.
//! - `target`: [`Target`]: an app's URL, key, secret and filter.
//! - `lane`: one target's task: batch, POST, retry, flush.
//! - `client`: the HTTP(S) client and what a response means.
//! - `backoff`: the retry schedule; `signature`: `X-Pusher-Signature`;
//!   `stats`: the counters.

mod backoff;
mod client;
mod event;
mod lane;
mod signature;
mod stats;
mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use event::{Event, EventKind, UnknownEventKind};
pub use stats::WebhookStats;
pub use target::Target;

use lane::{Lane, Settings};
use signature::Signer;
use stats::{Counters, DropLog};

/// How webhooks are batched, bounded and retried.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhooksConfig {
    /// Most events in one POST. Default 100: one request carries a burst
    /// (a node's connections all closing) without making a body the
    /// backend would take long to parse. At least 1.
    pub max_batch_events: usize,
    /// How long a batch waits for more events after its first. Default
    /// 50 ms: a little latency for far fewer requests under load.
    pub batch_window: Duration,
    /// Events a target's queue holds while its batches are being sent or
    /// retried; more are dropped (counted). Default 10,000. At least 1.
    pub queue_capacity: usize,
    /// Bytes of serialized events a target may hold, queued or in the batch
    /// being sent; more are dropped (counted). Default 8 MiB: the count
    /// alone would let 10,000 client events of 10 KiB take 100 MiB. An
    /// event larger than this is always dropped.
    pub max_queued_bytes: usize,
    /// The longest one POST may take, connecting included. Default 5 s.
    pub request_timeout: Duration,
    /// When failed POSTs are retried, and how often.
    pub backoff: Backoff,
    /// After stop, how long the targets may take to send what is queued.
    /// Default 5 s, as the server's own shutdown timeout.
    pub flush_timeout: Duration,
    /// Certificates trusted for https URLs besides the system's (a private
    /// CA's). Default none.
    pub extra_root_certificates: Vec<CertificateDer<'static>>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_batch_events: 100,
            batch_window: Duration::from_millis(50),
            queue_capacity: 10_000,
            max_queued_bytes: 8 << 20,
            request_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            flush_timeout: Duration::from_secs(5),
            extra_root_certificates: Vec::new(),
        }
    }
}

/// Webhooks could not start: a target is misconfigured.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A target's URL is not an absolute `http://` or `https://` URL with a
    /// host: fix the app's webhook configuration.
    #[error("app {app_id}: webhook url {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The app whose webhook it is.
        app_id: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The app key cannot be an HTTP header value (the app configuration's
    /// own checks should have refused it).
    #[error("app {app_id}: key {key:?} cannot be sent as X-Pusher-Key")]
    InvalidKey {
        /// The app.
        app_id: String,
        /// Its key.
        key: String,
    },
    /// The TLS client could not be set up (a build without the protocol
    /// versions rustls needs): a bug, not a configuration error.
    #[error("webhooks: TLS client: {0}")]
    Tls(String),
}

/// The handle connections use to report events: cheap to clone, shared by
/// every worker. See the module's documentation for what it guarantees.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    apps: HashMap<String, Vec<Queue>>,
    counters: Arc<Counters>,
}

/// The sending side of one target's queue.
#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<Bytes>,
    kinds: u8,
    url: Arc<str>,
    drops: DropLog,
    /// Bytes held, shared with the target's task, which gives them back
    /// once a batch is done with.
    held: Arc<AtomicUsize>,
    max_held: usize,
}

impl Queue {
    /// Queues `json` if it fits both bounds; else says why not.
    fn offer(&self, json: Bytes) -> Result<(), &'static str> {
        let len = json.len();
        if self.held.fetch_add(len, Relaxed) + len > self.max_held {
            self.held.fetch_sub(len, Relaxed);
            return Err("the target's queue is full (bytes): its backend is slow or down");
        }
        match self.tx.try_send(json) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.held.fetch_sub(len, Relaxed);
                Err(match e {
                    TrySendError::Full(_) => "the target's queue is full: its backend is slow or down",
                    TrySendError::Closed(_) => "webhooks have stopped",
                })
            }
        }
    }
}

/// Starts one task per target on the current runtime, under a supervisor
/// whose handle is returned: it ends when every target has flushed after
/// `stop` (or when every [`Webhooks`] clone is dropped and the queues are
/// empty), at most [`WebhooksConfig::flush_timeout`] after `stop`.
///
/// # Errors
/// A target's URL or key is unusable ([`WebhookError`]); nothing starts.
///
/// # Panics
/// Outside a tokio runtime.
pub fn start(
    config: WebhooksConfig,
    targets: Vec<Target>,
    stop: CancellationToken,
) -> Result<(Webhooks, JoinHandle<()>), WebhookError> {
    let mut checked = Vec::with_capacity(targets.len());
    for target in targets {
        let uri = target.uri()?;
        let key = target.key_header()?;
        checked.push((target, uri, key));
    }
    let tls = checked.iter().any(|(_, uri, _)| uri.scheme_str() == Some("https"));
    let client = if checked.is_empty() {
        None
    } else {
        Some(client::build(
            tls,
            &config.extra_root_certificates,
            config.request_timeout,
        )?)
    };
    let settings = Arc::new(Settings {
        max_batch_events: config.max_batch_events.max(1),
        batch_window: config.batch_window,
        request_timeout: config.request_timeout,
        backoff: config.backoff,
    });
    let counters = Arc::new(Counters::default());
    let expired = CancellationToken::new();
    let mut apps: HashMap<String, Vec<Queue>> = HashMap::new();
    let mut lanes = JoinSet::new();
    for (target, uri, key) in checked {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let url: Arc<str> = target.display_url().into();
        let held = Arc::new(AtomicUsize::new(0));
        let lane = Lane {
            rx,
            held: held.clone(),
            client: client.clone().expect("built when there are targets"),
            uri,
            key,
            signer: Signer::new(&target.secret),
            app_id: target.app_id.as_str().into(),
            url: url.clone(),
            settings: settings.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            expired: expired.clone(),
        };
        lanes.spawn(lane.run());
        let queue = Queue {
            tx,
            kinds: target.kinds(),
            url,
            drops: DropLog::new(),
            held,
            max_held: config.max_queued_bytes,
        };
        apps.entry(target.app_id).or_default().push(queue);
    }
    let supervisor = tokio::spawn(supervise(lanes, stop, expired, config.flush_timeout));
    Ok((
        Webhooks {
            inner: Arc::new(Inner { apps, counters }),
        },
        supervisor,
    ))
}

/// Waits for the lanes; after `stop`, for `flush_timeout` at most before
/// telling them to give up what is left.
async fn supervise(mut lanes: JoinSet<()>, stop: CancellationToken, expired: CancellationToken, flush: Duration) {
    tokio::select! {
        _ = join_all(&mut lanes) => return,
        _ = stop.cancelled() => {}
    }
    tokio::select! {
        _ = join_all(&mut lanes) => return,
        _ = tokio::time::sleep(flush) => expired.cancel(),
    }
    join_all(&mut lanes).await;
}

async fn join_all(lanes: &mut JoinSet<()>) {
    while let Some(ended) = lanes.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "a webhook task ended abnormally");
        }
    }
}

impl Webhooks {
    /// A handle with no targets: `send` does nothing. For a server whose
    /// apps have no webhooks.
    pub fn disabled() -> Webhooks {
        Webhooks::default()
    }

    /// Whether some target of `app_id` takes events of `kind`: lets a caller
    /// skip building an event nobody gets (a client event's data copied
    /// for nothing).
    pub fn wants(&self, app_id: &str, kind: EventKind) -> bool {
        self.inner
            .apps
            .get(app_id)
            .is_some_and(|queues| queues.iter().any(|q| q.kinds & kind.bit() != 0))
    }

    /// Queues `event` for every target of `app_id` that takes its kind.
    /// Never waits: a full queue drops the event for that target (counted,
    /// logged); an app without webhooks costs a map lookup.
    pub fn send(&self, app_id: &str, event: Event) {
        let Some(queues) = self.inner.apps.get(app_id) else {
            return;
        };
        let bit = event.kind().bit();
        let mut json: Option<Bytes> = None;
        for queue in queues.iter().filter(|q| q.kinds & bit != 0) {
            let json = json.get_or_insert_with(|| Bytes::from(event.to_json())).clone();
            let Err(reason) = queue.offer(json) else { continue };
            Counters::add(&self.inner.counters.dropped, 1);
            if let Some(total) = queue.drops.record() {
                tracing::warn!(
                    %app_id, url = %queue.url, event = %event.kind(), %reason, dropped_so_far = total,
                    "webhook event dropped"
                );
            }
        }
    }

    /// The counters, summed over every target (for `/metrics`).
    pub fn stats(&self) -> WebhookStats {
        let queued = self
            .inner
            .apps
            .values()
            .flatten()
            .map(|q| (q.tx.max_capacity() - q.tx.capacity()) as u64)
            .sum();
        self.inner.counters.snapshot(queued)
    }
}
