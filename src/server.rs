//! Listening, TLS, serving HTTP until the upgrade, and graceful shutdown.
//!
//! The accept loop is ours (not `axum::serve`) for three reasons: upgraded
//! sockets must be tracked for shutdown (axum does not, axum #3003), TLS is
//! optional per configuration, and accept errors such as hitting the
//! open-files limit must back off instead of ending the server.
//!
//! With `--workers` above 1 the accept loop hands each socket to a worker
//! thread before any byte is read (`workers.rs`); with 1, everything runs
//! on the runtime that calls [`Server::run`].

mod listener;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use tokio::task::JoinHandle;

use crate::apps::Apps;
use crate::broker::{Broker, BrokerConfig, BrokerError, LocalBroker, RedisBroker};
use crate::config::Config;
use crate::connection::{CloseRequest, Timeouts};
use crate::history::{History, HistoryError};
use crate::http::Shared;
use crate::hub::{Hub, HubConfig};
use crate::metrics::{DroppedHttp, Metrics};
use crate::origin::OriginPolicy;
use crate::protocol::CloseCode;
use crate::tls::{self, TlsError};
use crate::webhooks::{Target, Webhooks, WebhooksConfig};

pub use workers::WorkerTask;

/// Time a client gets to send a complete request head (from the moment
/// hyper starts waiting for it: after TCP accept or the TLS handshake, and
/// again between requests on a kept-alive connection), and separately to
/// finish its TLS handshake.
///
/// Why 5 s: a real client sends its whole head at once, right after
/// connecting, so even a slow mobile link (a few round trips of a second)
/// needs well under that; while a head is unfinished it holds up to
/// [`MAX_REQUEST_HEAD`] of buffer, so this is what bounds how long a
/// slowloris connection holds it (nginx allows 60 s, Apache's
/// `mod_reqtimeout` 20 s stretched by data; neither is a WebSocket server
/// whose clients connect and upgrade in one go).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an HTTP request in progress when shutdown begins may still
/// take. An idle connection closes at once; a response being written, or
/// an upgrade, takes milliseconds; a head still arriving (a slow or
/// idle-but-started client) would otherwise hold shutdown for the whole
/// [`HANDSHAKE_TIMEOUT`].
const HTTP_GRACE: Duration = Duration::from_secs(1);

/// Largest request head (request line and headers): beyond it, hyper
/// answers 431 Request Header Fields Too Large and closes. 16 KiB is
/// Node's limit and within nginx's default (4 x 8 KiB buffers); a browser's
/// upgrade with a large cookie jar fits, and an unfinished head holds no
/// more than this (hyper's default is about 400 KiB).
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Most header fields in a request head (hyper's default, stated here so
/// that it is documented): beyond it, 431 as well.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// Longest pause after a failing `accept` (the pause doubles from 10 ms).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Start-up failures.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The address could not be bound (in use, no permission...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The JWT public key is unusable.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The Redis URL is malformed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The history store cannot be opened.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// An app's webhook settings are unusable (a URL, an event type).
    #[error("webhooks: {0}")]
    Webhooks(String),
    /// A worker thread or its runtime could not be started (out of
    /// threads or memory: try fewer `--workers`).
    #[error("cannot start worker {index}: {source}")]
    Workers {
        /// The worker that failed to start.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Server {
    listener: listener::Listener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    worker_task: Option<WorkerTask>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads TLS material and binds the listener.
    ///
    /// # Errors
    /// [`ServerError`] naming the address, file or problem.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let auth = config
            .auth
            .as_ref()
            .map(|source| crate::auth::Verifier::new(source, &config.token_rules))
            .transpose()?;
        let history = History::open(config.history.clone())?;
        let addr = SocketAddr::new(config.bind, config.port);
        // `Config` is built by hand by embedders: 0 means one.
        let workers = config.workers.max(1);
        let listener = listener::Listener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let redis = match config.redis.clone() {
            None => None,
            Some(url) => {
                let node: Arc<str> = match &config.node_id {
                    Some(node) => Arc::from(node.as_str()),
                    None => Arc::from(generated_node_id().as_str()),
                };
                let broker_config = BrokerConfig {
                    url,
                    node,
                    max_messages: config.history.max_messages_per_room,
                };
                Some(RedisBroker::create(broker_config)?)
            }
        };
        let webhook_stop = CancellationToken::new();
        let (webhooks, webhook_task) = start_webhooks(&config.apps, &webhook_stop)?;
        let room_events: Arc<dyn crate::hub::RoomEvents> = if config.apps.is_empty() {
            Arc::new(crate::hub::Unheard)
        } else {
            Arc::new(crate::service::pusher::Hooks::new(
                config.apps.clone(),
                webhooks.clone(),
            ))
        };
        let broker: Arc<dyn Broker> = match &redis {
            Some(redis) => Arc::new(redis.broker().clone()),
            None => Arc::new(LocalBroker::new(history.clone())),
        };
        let shared = Arc::new(Shared {
            hub: Hub::new(HubConfig {
                max_connections: config.max_connections,
                history,
                join_history: config.join_history,
                timeouts: Timeouts {
                    ping_interval: config.ping_interval,
                    read_timeout: config.read_timeout,
                    write_timeout: config.write_timeout,
                    rate: config.rate,
                },
                max_incomplete_bytes: config.max_incomplete_bytes,
                workers,
                broker,
                room_events,
            }),
            origins: OriginPolicy::new(&config.allowed_origins),
            tracker: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            // Clustered nodes number connections from a random start, so that the
            // `guest-N` nicknames of two nodes rarely collide.
            next_connection_id: AtomicU64::new(if config.redis.is_some() { random_start() } else { 1 }),
            chat_limits: crate::service::ChatLimits {
                signed_channels_reserved: !config.apps.is_empty(),
                ..config.chat
            },
            apps: config.apps.clone(),
            pusher: crate::service::pusher::PusherContext {
                limits: crate::service::pusher::PusherLimits {
                    max_channels: u32::try_from(config.chat.max_rooms).unwrap_or(u32::MAX),
                    max_bad_requests: config.chat.max_bad_requests,
                },
                webhooks: webhooks.clone(),
                tenants: crate::service::pusher::Tenants::new(&config.apps),
            },
            webhook_stop,
            webhook_task: std::sync::Mutex::new(webhook_task),
            auth,
            broker_stop: CancellationToken::new(),
            worker_loads: (0..workers).map(|_| Arc::default()).collect(),
            refusals: crate::http::access::RefusalLog::default(),
            config,
        });
        shared.hub.per_ip().set_max(shared.config.max_connections_per_ip);
        if let Some(redis) = redis {
            let deliver = Arc::new(shared.hub.clone());
            let broker = redis.start(deliver, shared.broker_stop.clone());
            tracing::info!(node = broker.node(), "rooms shared through Redis");
            broker.first_attempt(Duration::from_secs(3)).await;
        }
        Ok(Server {
            listener,
            tls,
            shared,
            worker_task: None,
        })
    }

    /// Runs `task()` on every worker, beside its connections, until the
    /// worker stops (with one worker: on the runtime that calls
    /// [`Server::run`], until `run` returns).
    ///
    /// Why: per-thread upkeep. The binary gives each thread's freed
    /// allocator pages back to the system once a second, and mimalloc only
    /// does that for the thread that asks.
    pub fn with_worker_task(mut self, task: WorkerTask) -> Self {
        self.worker_task = Some(task);
        self
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The hub, for callers that embed the server.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Serves until `shutdown` completes, then closes every connection with
    /// 1001, waits for them up to the shutdown timeout, and stops the
    /// workers.
    ///
    /// With more than one worker, starts them first: threads named
    /// `wshub-worker-{i}`, each with a current-thread runtime; this runtime
    /// then only accepts (and runs the Redis broker). With one, everything
    /// runs here.
    ///
    /// # Errors
    /// [`ServerError::Workers`] when a worker cannot be started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            tls,
            shared,
            worker_task,
        } = self;
        if shared.origins.allows_any() {
            tracing::warn!("--allowed-origin '*': any web page may open WebSockets here (cross-site WebSocket hijacking is possible)");
        }
        let http = Http {
            router: crate::http::routes::router(shared.clone()),
            tls,
            stop: CancellationToken::new(),
            metrics: shared.hub.metrics().clone(),
            tracker: shared.tracker.clone(),
        };
        let (mut workers, here) = if shared.worker_loads.len() > 1 {
            let workers = workers::Workers::start(&shared.hub, &http, shared.worker_loads.clone(), worker_task)?;
            (Some(workers), Vec::new())
        } else {
            // The one worker is this runtime: its tasks end with `run`.
            let mut here = vec![tokio::spawn(shared.hub.worker_tasks(0))];
            here.extend(worker_task.map(|task| tokio::spawn(task())));
            (None, here)
        };
        tokio::pin!(shutdown);
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    let _ = stream.set_nodelay(true);
                    match &mut workers {
                        Some(workers) => workers.hand_over(stream, peer),
                        None => match tokio::net::TcpStream::from_std(stream) {
                            Ok(stream) => http.serve(stream, peer),
                            Err(e) => tracing::debug!(%peer, "cannot register the socket: {e}"),
                        },
                    }
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    // Typically EMFILE: out of file descriptors. Keep
                    // serving the connections we have; retry later.
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    tracing::error!("accept failed: {e}; pausing accepts for {backoff:?}");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        drop(listener);
        shutdown_connections(&shared, &http.stop).await;
        if let Some(workers) = workers {
            workers.stop().await;
        }
        for task in here {
            task.abort();
        }
        Ok(())
    }
}

/// What serving HTTP on an accepted socket needs; one per worker.
#[derive(Clone)]
pub(crate) struct Http {
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    /// Cancelled at shutdown: HTTP connections finish what they are doing.
    stop: CancellationToken,
    metrics: Metrics,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Http {
    /// Completes TLS when configured, then serves HTTP/1.1 until the socket
    /// upgrades or ends, on a task of the runtime this is called on.
    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let Http {
            router,
            tls,
            stop,
            metrics,
            ..
        } = self.clone();
        let serving = crate::http::placement::serving_http();
        self.tracker.spawn(async move {
            let _serving = serving;
            match tls {
                None => serve_http(stream, peer, router, stop, metrics).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_http(stream, peer, router, stop, metrics).await,
                    Ok(Err(e)) => {
                        metrics.http_dropped(DroppedHttp::TlsFailed);
                        tracing::debug!(%peer, "TLS handshake failed: {e}")
                    }
                    Err(_) => {
                        metrics.http_dropped(DroppedHttp::TlsTimeout);
                        tracing::debug!(%peer, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}")
                    }
                },
            }
        });
    }
}

async fn shutdown_connections(shared: &Shared, http_stop: &CancellationToken) {
    shared.shutting_down.store(true, Ordering::Release);
    let open = shared.hub.connection_count();
    tracing::info!(connections = open, "shutting down: closing connections with 1001");
    http_stop.cancel();
    shared
        .hub
        .close_all(CloseRequest::Graceful(CloseCode::GoingAway, "server shutting down"));
    shared.tracker.close();
    let timeout = shared.config.shutdown_timeout;
    if tokio::time::timeout(timeout, shared.tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = shared.hub.connection_count(),
            "shutdown timeout of {timeout:?} reached; dropping the remaining connections"
        );
        shared.hub.close_all(CloseRequest::Abort);
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.tracker.wait()).await;
    }
    // Everything any client was sent is committed before we exit.
    let history = shared.hub.history().clone();
    let _ = tokio::task::spawn_blocking(move || history.flush()).await;
    // Last: connections' leave events have been queued to Redis by now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    shared.broker_stop.cancel();
    // The connections' last webhooks (vacated, member_removed) are queued:
    // sent now, within the webhooks' own flush timeout.
    shared.webhook_stop.cancel();
    let flushing = shared.webhook_task.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(task) = flushing {
        let _ = tokio::time::timeout(WebhooksConfig::default().flush_timeout + Duration::from_secs(1), task).await;
    }
    tracing::info!("shutdown complete");
}

/// Starts the apps' webhooks, when some app has any.
fn start_webhooks(apps: &Apps, stop: &CancellationToken) -> Result<(Webhooks, Option<JoinHandle<()>>), ServerError> {
    if apps.iter().all(|app| app.webhooks.is_empty()) {
        return Ok((Webhooks::disabled(), None));
    }
    let targets = Target::for_apps(apps).map_err(|e| ServerError::Webhooks(e.to_string()))?;
    let count = targets.len();
    let (webhooks, task) = crate::webhooks::start(WebhooksConfig::default(), targets, stop.clone())
        .map_err(|e| ServerError::Webhooks(e.to_string()))?;
    tracing::info!(targets = count, "webhooks on");
    Ok((webhooks, Some(task)))
}

/// Errors that concern one incoming connection, not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Serves HTTP/1.1 on one connection until it upgrades or ends.
///
/// The request head is bounded in size ([`MAX_REQUEST_HEAD`], and the read
/// buffer with it, so an unfinished head holds at most that) and in time
/// ([`HANDSHAKE_TIMEOUT`]). Over the size hyper itself answers 431 (an
/// empty body: hyper writes its automatic error responses without one)
/// and closes; over the time it closes without a response.
async fn serve_http<I>(io: I, peer: SocketAddr, router: axum::Router, stop: CancellationToken, metrics: Metrics)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut request: axum::http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_header_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_REQUEST_HEADERS)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(HTTP_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(%peer, "request unfinished {HTTP_GRACE:?} after shutdown began: closed");
                    return;
                }
            }
        }
    };
    match result {
        Err(e) if e.is_parse_too_large() => {
            metrics.http_dropped(DroppedHttp::HeadTooLarge);
            tracing::info!(%peer, "request head over {MAX_REQUEST_HEAD} bytes or {MAX_REQUEST_HEADERS} headers: answered 431");
        }
        Err(e) if e.is_timeout() => {
            metrics.http_dropped(DroppedHttp::HeadTimeout);
            // Also how an idle kept-alive connection ends: not worth more.
            tracing::debug!(%peer, "no complete request head within {HANDSHAKE_TIMEOUT:?}: closed");
        }
        Err(e) => tracing::debug!(%peer, "HTTP connection ended: {e}"),
        Ok(()) => {}
    }
}

/// A node name for presence and logs when `--node-id` is not given.
fn generated_node_id() -> String {
    format!("node-{}-{:08x}", std::process::id(), clock_nanos())
}

fn random_start() -> u64 {
    u64::from(clock_nanos() % 900_000) * 10 + 1_000_000
}

/// The wall clock's sub-second nanoseconds: enough randomness to tell
/// nodes apart, without a random-number dependency.
fn clock_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
