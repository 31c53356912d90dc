//! The HTTP surface, up to the WebSocket upgrade: the routes, the upgrade
//! itself, every refusal and its reason, the embedded page; and the state
//! they share with every connection. The server (listener, TLS, workers)
//! serves this; nothing here knows how sockets are accepted.

pub(crate) mod access;
pub(crate) mod placement;
pub(crate) mod pusher_api;
pub(crate) mod routes;
pub(crate) mod upgrade;
pub(crate) mod web;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::hub::Hub;
use crate::origin::OriginPolicy;
use crate::service::ChatLimits;
use placement::WorkerLoad;

/// State shared by the routes, the upgrade and every connection.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: Hub,
    pub(crate) origins: OriginPolicy,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) next_connection_id: AtomicU64,
    pub(crate) chat_limits: ChatLimits,
    /// The Pusher apps (none: no Pusher endpoint).
    pub(crate) apps: crate::apps::Apps,
    pub(crate) pusher: crate::service::pusher::PusherContext,
    /// Ends the webhooks' batch windows at shutdown (after the
    /// connections, so that their last events still go out), and the task
    /// that then flushes them.
    pub(crate) webhook_stop: CancellationToken,
    pub(crate) webhook_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Token checks at the upgrade, when tokens are required.
    pub(crate) auth: Option<crate::auth::Verifier>,
    /// Stops the Redis broker's tasks once connections are closed.
    pub(crate) broker_stop: CancellationToken,
    /// What each worker carries, for placing sockets (one entry per
    /// worker; unused with one).
    pub(crate) worker_loads: Arc<[Arc<WorkerLoad>]>,
    /// Which refused handshakes were lately logged at warn.
    pub(crate) refusals: access::RefusalLog,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
