//! The broker of several nodes: rooms shared through Redis.
//!
//! Every text message goes through Redis, which gives each room one
//! sequence (a Lua script: `INCR` the room's counter, `XADD` the message
//! to the room's stream, `PUBLISH` it, atomically), and every node, the
//! sender's included, delivers what it receives from Redis pub/sub, in the
//! order Redis published it. One order, on every node.
//!
//! The hot path never waits on Redis: publishing hands a command to the
//! broker's task over a bounded channel. Redis away means local delivery
//! only (`local` messages, clients told), never a crash or unbounded memory.

mod tasks;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;

use super::{
    Body, Broker, ClusterStatus, Deliver, ListedMember, MemberInfo, Ordered, Pending, Publication, Replayed, RoomName,
    Span, Then, Unordered,
};

/// Commands queued to the broker task beyond this are refused: the message
/// is then delivered locally only. Bounds memory while Redis is slow or away.
const COMMAND_QUEUE: usize = 16 * 1024;

/// Bytes of messages queued to the broker task or in its pipeline beyond
/// which a publish is refused the same way. The count alone bounds little:
/// 16,384 messages of 1 MiB are 16 GiB. 64 MiB is some seconds of a busy
/// node's traffic, enough to ride out a slow Redis without dropping to
/// local delivery.
const COMMAND_QUEUE_BYTES: usize = 64 << 20;

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

/// What the broker's task is asked to do, in order.
enum Command {
    /// Store and publish a text message (it comes back through pub/sub).
    Publish { room: RoomName, message: Unordered },
    /// Relay a raw binary frame's payload to raw members of every node.
    PublishBinary { room: RoomName, payload: Bytes },
    /// Relay a text payload to Pusher members of every node.
    PublishSignal {
        room: RoomName,
        payload: Bytes,
        except: u64,
    },
    /// A local member joined a room: record it for presence, tell others.
    Joined { room: RoomName, member: MemberInfo },
    /// A local member left a room.
    Left { room: RoomName, member: MemberInfo },
    /// History (and the cluster's member list) for a member that joined.
    Replay {
        room: RoomName,
        span: Span,
        then: Then<Replayed>,
    },
    /// The cluster's member list.
    Members {
        room: RoomName,
        then: Then<Option<Vec<ListedMember>>>,
    },
    /// Rooms with members on any node, by prefix.
    Rooms {
        prefix: String,
        then: Then<Option<Vec<RoomName>>>,
    },
    /// History a client asked for.
    History {
        room: RoomName,
        span: Span,
        then: Then<Replayed>,
    },
    /// Close a user's signed-in connections on every node.
    Terminate { key: RoomName },
    /// Record this node's members again, as they are when the command's
    /// turn comes: in the queue's order, so that no join or leave sent
    /// before it is undone by it, nor one sent after it overtaken.
    Register { then: Then<redis::RedisResult<()>> },
}

impl Command {
    /// The bytes of message it holds, counted against
    /// [`COMMAND_QUEUE_BYTES`] from queueing until its pipeline is done.
    fn bytes(&self) -> usize {
        match self {
            Command::Publish { message, .. } => message.text.len(),
            Command::PublishBinary { payload, .. } | Command::PublishSignal { payload, .. } => payload.len(),
            _ => 0,
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, room) = match self {
            Command::Publish { room, .. } => ("publish", room),
            Command::PublishBinary { room, .. } => ("publish binary", room),
            Command::PublishSignal { room, .. } => ("publish signal", room),
            Command::Joined { room, .. } => ("joined", room),
            Command::Left { room, .. } => ("left", room),
            Command::Replay { room, .. } => ("replay", room),
            Command::Members { room, .. } => ("members", room),
            Command::History { room, .. } => ("history", room),
            Command::Rooms { prefix, .. } => return write!(f, "rooms {prefix}*"),
            Command::Terminate { key } => ("terminate", key),
            Command::Register { .. } => return write!(f, "register"),
        };
        write!(f, "{kind} {room}")
    }
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
    generation: AtomicU64,
    max_messages: usize,
    /// The cluster's pub/sub channels (its database's).
    channels: wire::Channels,
    /// Bytes of the messages queued or in the pipeline (see
    /// [`COMMAND_QUEUE_BYTES`]).
    queued_bytes: AtomicUsize,
    /// A member's join or leave did not reach Redis (a refused command, a
    /// failed pipeline): the next heartbeat records this node's members
    /// again, as they are then.
    presence_stale: AtomicBool,
    /// Permits for the questions being answered ([`tasks::MAX_QUESTIONS`]).
    questions: Arc<tokio::sync::Semaphore>,
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
pub struct RedisBroker {
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

/// A broker made, whose tasks start once it knows where to deliver.
#[derive(Debug)]
pub struct Unstarted {
    broker: RedisBroker,
    client: ::redis::Client,
    commands: mpsc::Receiver<Command>,
}

impl RedisBroker {
    /// A broker for `config`; its tasks start with [`Unstarted::start`].
    ///
    /// # Errors
    /// [`BrokerError::Url`] for a malformed URL.
    pub fn create(config: BrokerConfig) -> Result<Unstarted, BrokerError> {
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
            generation: AtomicU64::new(0),
            max_messages: config.max_messages,
            channels: wire::Channels::of_database(client.get_connection_info().redis_settings().db()),
            queued_bytes: AtomicUsize::new(0),
            presence_stale: AtomicBool::new(false),
            questions: Arc::new(tokio::sync::Semaphore::new(tasks::MAX_QUESTIONS)),
        });
        Ok(Unstarted {
            broker: RedisBroker { commands, shared },
            client,
            commands: receiver,
        })
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

    /// Queues a command; false when the broker cannot take it now (Redis
    /// away, or the queue full, in count or in bytes): the caller then acts
    /// locally.
    fn send(&self, command: Command) -> bool {
        if !self.is_up() {
            return false;
        }
        let bytes = command.bytes();
        let queued = &self.shared.queued_bytes;
        if queued.fetch_add(bytes, Ordering::AcqRel) + bytes > COMMAND_QUEUE_BYTES {
            queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        if self.commands.try_send(command).is_err() {
            queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues a join or leave; one that cannot be queued (Redis away, the
    /// queue full) makes the next heartbeat record the members again.
    fn send_presence(&self, command: Command) {
        if !self.send(command) {
            self.shared.presence_stale.store(true, Ordering::Release);
        }
    }

    /// The bytes of `batch`, taken off the queue: counted until the guard
    /// drops, once its pipeline is done (or failed).
    fn held(&self, batch: &[Command]) -> Held<'_> {
        Held {
            queued: &self.shared.queued_bytes,
            bytes: batch.iter().map(Command::bytes).sum(),
        }
    }

    /// Queues a command even while Redis is away (answers, which must always
    /// come, say so themselves when they fail); gives it back when full.
    fn send_always(&self, command: Command) -> Result<(), Command> {
        self.commands.try_send(command).map_err(|e| e.into_inner())
    }
}

/// A batch's bytes, given back to the queue's budget when dropped.
struct Held<'a> {
    queued: &'a AtomicUsize,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Unstarted {
    /// The broker, for callers that need it before its tasks start.
    pub fn broker(&self) -> &RedisBroker {
        &self.broker
    }

    /// Starts the broker's tasks on the current runtime, delivering into
    /// `deliver`. Redis need not be reachable yet: the node starts
    /// degraded and keeps retrying.
    pub fn start(self, deliver: Arc<dyn Deliver>, stop: tokio_util::sync::CancellationToken) -> RedisBroker {
        tasks::spawn(self.client, self.broker.clone(), self.commands, deliver, stop);
        self.broker
    }
}

impl Broker for RedisBroker {
    fn publish(&self, room: &RoomName, message: Publication<'_>) -> Ordered {
        let command = match message.body {
            Body::Text(text) => Command::Publish {
                room: room.clone(),
                message: Unordered {
                    nick: message.nick.clone(),
                    user: message.user.cloned(),
                    text: Arc::from(text),
                    event: message.event.cloned(),
                    client_ref: message.client_ref.map(str::to_owned),
                    except: message.except,
                },
            },
            Body::Binary(payload) => Command::PublishBinary {
                room: room.clone(),
                payload: Bytes::copy_from_slice(payload),
            },
            Body::Signal(payload) => Command::PublishSignal {
                room: room.clone(),
                payload: Bytes::copy_from_slice(payload),
                except: message.except,
            },
        };
        if self.send(command) {
            Ordered::Later
        } else {
            Ordered::LocalOnly
        }
    }

    fn joined(&self, room: &RoomName, member: &MemberInfo) {
        self.send_presence(Command::Joined {
            room: room.clone(),
            member: member.clone(),
        });
    }

    fn left(&self, room: &RoomName, member: &MemberInfo) {
        self.send_presence(Command::Left {
            room: room.clone(),
            member: member.clone(),
        });
    }

    fn replay(&self, room: &RoomName, span: Span, then: Then<Replayed>) -> Result<Replayed, Pending> {
        let command = Command::Replay {
            room: room.clone(),
            span,
            then,
        };
        match self.send_always(command) {
            Ok(()) => Err(Pending),
            // The queue is full: the member goes live, told that its
            // replay could not be read.
            Err(_) => Ok(Replayed::unavailable(span)),
        }
    }

    fn history(&self, room: &RoomName, span: Span, then: Then<Replayed>) {
        let command = Command::History {
            room: room.clone(),
            span,
            then,
        };
        if let Err(Command::History { then, .. }) = self.send_always(command) {
            then(Replayed::unavailable(span));
        }
    }

    fn members(&self, room: &RoomName, then: Then<Option<Vec<ListedMember>>>) -> bool {
        let command = Command::Members {
            room: room.clone(),
            then,
        };
        self.send_always(command).is_ok()
    }

    fn rooms(&self, prefix: &str, then: Then<Option<Vec<RoomName>>>) -> bool {
        let command = Command::Rooms {
            prefix: prefix.to_owned(),
            then,
        };
        self.send_always(command).is_ok()
    }

    fn room_closed(&self, _room: &RoomName) {}

    fn terminate(&self, key: &RoomName) {
        self.send(Command::Terminate { key: key.clone() });
    }

    fn cluster(&self) -> Option<ClusterStatus> {
        let down_since = match self.shared.down_since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        };
        Some(ClusterStatus {
            node: self.shared.node.clone(),
            up: self.is_up(),
            down_since,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_beyond_the_queues_bytes_are_refused_until_a_batch_is_done() {
        let mut unstarted = RedisBroker::create(BrokerConfig {
            url: "redis://127.0.0.1:1/0".into(),
            node: Arc::from("n"),
            max_messages: 10,
        })
        .unwrap();
        let broker = unstarted.broker.clone();
        // As if Redis were up but slow: nothing takes the commands yet.
        broker.shared.set_up(true);
        let room: RoomName = Arc::from("r");
        let (nick, payload) = (Arc::from("ann"), vec![0u8; 1 << 20]);
        let publish = || {
            broker.publish(
                &room,
                Publication {
                    nick: &nick,
                    user: None,
                    body: Body::Binary(&payload),
                    client_ref: None,
                    event: None,
                    except: 0,
                },
            )
        };
        let queued = (0..100).take_while(|_| matches!(publish(), Ordered::Later)).count();
        assert_eq!(queued, COMMAND_QUEUE_BYTES >> 20, "1 MiB each, up to the bound");
        assert!(matches!(publish(), Ordered::LocalOnly));
        // The task takes a batch: its bytes count until it is done.
        let batch: Vec<Command> = (0..2).map(|_| unstarted.commands.try_recv().unwrap()).collect();
        let held = broker.held(&batch);
        assert!(matches!(publish(), Ordered::LocalOnly));
        drop(held);
        assert!(matches!(publish(), Ordered::Later));
        assert!(matches!(publish(), Ordered::Later));
        assert!(matches!(publish(), Ordered::LocalOnly));
    }
}
