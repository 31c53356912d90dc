//! The broker: how a room's messages reach members on other wshub nodes.
//!
//! Without `--redis`, there is no broker: the hub assigns ids and fans out
//! in-process. With it, every chat message goes through Redis, which gives
//! each room one sequence (a Lua script: `INCR` the room's counter, `XADD`
//! the message to the room's stream, `PUBLISH` it, atomically), and every
//! node, the sender's included, delivers what it receives from Redis
//! pub/sub, in the order Redis published it. One order, on every node.
//!
//! The hot path never waits on Redis: publishing hands a command to the
//! broker's task over a bounded channel. Redis away means local delivery
//! only (`local` messages, clients told), never a crash or unbounded memory.
//!
//! # Layout
//! - `redis`: the three tasks: commands (pipelined), pub/sub, heartbeat.
//! - `wire`: what travels through Redis.

mod redis;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::connection::Outbox;
use crate::hub::{Hub, Room, RoomName};

/// Commands queued to the broker task beyond this are refused: the message
/// is then delivered locally only. Bounds memory while Redis is slow or away.
const COMMAND_QUEUE: usize = 16 * 1024;

/// A broker that could not start.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The URL is not a Redis URL the client understands.
    #[error("invalid --redis URL '{url}': {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why the client refused it.
        source: ::redis::RedisError,
    },
}

/// What the broker is asked to do, in order.
#[derive(Debug)]
pub(crate) enum Command {
    /// Store and publish a chat message (it comes back through pub/sub).
    Publish {
        room: RoomName,
        nick: Arc<str>,
        /// The sender's user id (token `sub`), if any.
        user: Option<Arc<str>>,
        text: Arc<str>,
        client_ref: Option<String>,
    },
    /// Relay a raw binary frame's payload to raw members of every node.
    PublishBinary { room: RoomName, payload: Bytes },
    /// A local member joined a room: record it for presence, tell others.
    Joined {
        room: RoomName,
        conn: u64,
        nick: Arc<str>,
        user: Option<Arc<str>>,
    },
    /// A local member left a room.
    Left {
        room: RoomName,
        conn: u64,
        nick: Arc<str>,
        user: Option<Arc<str>>,
    },
    /// Replay history to a member that just joined, then its backlog.
    Replay {
        room: Arc<Room>,
        key: usize,
        since: Option<u64>,
        limit: usize,
    },
    /// Send a cluster-wide `presence` snapshot to one connection.
    Presence { room: Arc<Room>, outbox: Arc<Outbox> },
    /// Answer a `history` request from Redis.
    History {
        room: RoomName,
        outbox: Arc<Outbox>,
        since: Option<u64>,
        limit: usize,
    },
}

#[derive(Debug)]
struct Shared {
    node: Arc<str>,
    /// Redis is reachable and pub/sub is subscribed.
    up: AtomicBool,
    /// Since when cross-node delivery has been off, in ms since the epoch
    /// (0 while it is on): for `/healthz`.
    down_since_ms: AtomicU64,
    /// Woken after each attempt to subscribe (start-up waits for the first).
    attempted: tokio::sync::Notify,
    /// Bumped each time Redis is (re)connected: connections made before
    /// are to a Redis that went away, and are replaced.
    generation: std::sync::atomic::AtomicU64,
    max_messages: usize,
}

impl Shared {
    /// Records whether cross-node delivery works, and since when it does not.
    fn set_up(&self, up: bool) {
        if up {
            self.down_since_ms.store(0, Ordering::Release);
        } else {
            let _ = self
                .down_since_ms
                .compare_exchange(0, now_millis(), Ordering::AcqRel, Ordering::Acquire);
        }
        self.up.store(up, Ordering::Release);
    }
}

/// The wall clock in ms since the epoch (at least 1: 0 means "up").
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// A handle on the Redis broker; cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// This node's name.
    pub node: Arc<str>,
    /// Messages kept per room in Redis.
    pub max_messages: usize,
}

impl Broker {
    /// Starts the broker's tasks on the current runtime. Redis need not be
    /// reachable yet: the node starts degraded and keeps retrying.
    ///
    /// # Errors
    /// [`BrokerError::Url`] for a malformed URL.
    pub fn start(
        config: BrokerConfig,
        hub: Hub,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Broker, BrokerError> {
        let client = ::redis::Client::open(config.url.as_str()).map_err(|source| BrokerError::Url {
            url: config.url.clone(),
            source,
        })?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared {
            node: config.node,
            up: AtomicBool::new(false),
            // Down from the start until the first subscription.
            down_since_ms: AtomicU64::new(now_millis()),
            attempted: tokio::sync::Notify::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            max_messages: config.max_messages,
        });
        let broker = Broker { commands, shared };
        redis::spawn_tasks(client, broker.clone(), receiver, hub, stop);
        Ok(broker)
    }

    /// Waits (at most `limit`) for the first attempt to reach Redis, so
    /// that a node with Redis reachable does not start out degraded.
    pub async fn first_attempt(&self, limit: std::time::Duration) {
        let attempted = self.shared.attempted.notified();
        if self.is_up() {
            return;
        }
        let _ = tokio::time::timeout(limit, attempted).await;
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Whether cross-node delivery works right now.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Since when cross-node delivery has been off (since start-up for a
    /// node that has not reached Redis yet); `None` while it is on.
    pub fn down_since(&self) -> Option<std::time::SystemTime> {
        match self.shared.down_since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }

    /// Queues a command; false when the broker cannot take it now (Redis
    /// away, or the queue full): the caller then acts locally.
    pub(crate) fn send(&self, command: Command) -> bool {
        if !self.is_up() {
            return false;
        }
        self.commands.try_send(command).is_ok()
    }

    /// Queues a command even while Redis is away (replays and presence
    /// answers, which must always come, say so themselves when they fail).
    pub(crate) fn send_always(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }
}
