//! The broker: what orders a room's messages and carries them to every
//! member, wherever the member is.
//!
//! Two implementations side by side, as centrifuge keeps its memory and
//! Redis brokers: [`LocalBroker`] orders in this process (the history store
//! gives each message its id; the hub then carries it to every worker that
//! has members), [`RedisBroker`] across nodes (a Lua script gives the id,
//! appends to the room's stream and publishes, atomically; every node, the
//! sender's included, delivers what Redis publishes, in Redis's order).
//!
//! The seam runs both ways. The hub calls [`Broker`] and never asks which
//! one it has; the broker hands what it carries back through [`Deliver`]
//! and answers questions through callbacks. It never sees a room's members,
//! their outboxes or the wshub.v1 frames built for them: only room names,
//! history entries and member descriptions.
//!
//! # Layout
//! - `local`: one process.
//! - `redis/`: several nodes (`tasks`: commands pipelined, pub/sub,
//!   heartbeat; `wire`: what travels through Redis).

mod local;
mod redis;

use std::sync::Arc;

use bytes::Bytes;

use crate::history::Entry;

pub use local::LocalBroker;
pub use redis::{BrokerConfig, BrokerError, RedisBroker};

/// A room's name. `/ws` is the room `lobby`.
pub type RoomName = Arc<str>;

/// A message handed to the broker to be ordered in its room.
#[derive(Debug)]
pub struct Publication<'a> {
    /// The sender's nickname.
    pub nick: &'a Arc<str>,
    /// The sender's user id (token `sub`), if any.
    pub user: Option<&'a Arc<str>>,
    /// Text (stored, numbered) or a raw binary payload (relayed only).
    pub body: Body<'a>,
    /// The sender's `ref`, echoed with the message (wshub.v1).
    pub client_ref: Option<&'a str>,
    /// The event's name for an event published the Pusher way (see
    /// [`Entry::event`]); `None` for a chat message.
    pub event: Option<&'a Arc<str>>,
    /// The sealed name of a connection not to deliver it to (0: none):
    /// opaque to the broker, which carries it to every node; only the
    /// hub of the connection's own node opens it (`hub::sealed`).
    pub except: u64,
}

/// What a message holds.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// A text message: it gets an id and goes into history.
    Text(&'a str),
    /// A raw client's binary frame: relayed, not stored.
    Binary(&'a [u8]),
    /// A text payload for the room's Pusher members only (a client event),
    /// relayed unread: not stored, not numbered.
    Signal(&'a [u8]),
}

/// Where a publication was ordered, and so when the hub delivers it.
#[derive(Debug)]
pub enum Ordered {
    /// Ordered here and now: deliver it at once (a text message with its
    /// history entry; a binary one has none).
    Now(Option<Entry>),
    /// The broker carries it and hands it back through [`Deliver`], on
    /// every node, this one included.
    Later,
    /// The broker cannot carry it now (Redis away, or its queue full):
    /// deliver it on this node only, without an id.
    LocalOnly,
}

/// A text message as its sender published it, owned: what a broker that
/// orders elsewhere (Redis) carries until it has an id, and hands back
/// as it was when it cannot give it one ([`Delivery::LocalText`]).
#[derive(Debug)]
pub struct Unordered {
    /// The sender's nickname.
    pub nick: Arc<str>,
    /// The sender's user id.
    pub user: Option<Arc<str>>,
    /// The text.
    pub text: Arc<str>,
    /// The event's name, if it is one.
    pub event: Option<Arc<str>>,
    /// The sender's `ref`.
    pub client_ref: Option<String>,
    /// The sealed name of a connection left out (0: none).
    pub except: u64,
}

/// A message the broker carried, for this node's members of its room.
#[derive(Debug)]
pub enum Delivery {
    /// A text message in its room's order.
    Text {
        /// Its id, time, sender and text.
        entry: Entry,
        /// The sender's `ref`.
        client_ref: Option<String>,
        /// The sealed name of a connection left out (0: none).
        except: u64,
    },
    /// A text message the broker could not order after all (Redis failed
    /// or refused it): this node only, without an id.
    LocalText(Unordered),
    /// A raw binary payload.
    Binary(Bytes),
    /// A text payload for Pusher members (see [`Body::Signal`]).
    Signal {
        /// The payload, as its sender's node encoded it.
        payload: Bytes,
        /// The sealed name of its sender's connection, left out (0: none).
        except: u64,
    },
    /// What this node's members missed while its link was down is no
    /// longer all kept: history now starts at `first_available`, and the
    /// messages delivered next start there. Members are told of the gap.
    Gap {
        /// The oldest id still kept.
        first_available: u64,
    },
}

/// A member as the broker knows it: enough to list and announce it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// A number naming its connection while it lives.
    pub conn: u64,
    /// Its nickname.
    pub nick: Arc<str>,
    /// Its user id, if any.
    pub user: Option<Arc<str>>,
    /// Whether it is a presence channel's user (Pusher): a user counted
    /// once however many connections it has, announced when its first
    /// arrives and its last leaves.
    pub presence: bool,
}

/// One nickname (and user) in a member list, with its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMember {
    /// The nickname.
    pub nick: String,
    /// The user id, if any.
    pub user: Option<String>,
    /// How many connections use it.
    pub connections: usize,
}

/// A member joining or leaving, as the cluster recorded it.
#[derive(Debug, Clone)]
pub struct PresenceChange {
    /// Joined (true) or left.
    pub joined: bool,
    /// Its nickname.
    pub nick: String,
    /// Its user id, if any.
    pub user: Option<String>,
    /// Whether it is a presence channel's user (see [`MemberInfo::presence`]).
    pub presence: bool,
    /// Whether the member is this node's ([`MemberInfo::conn`] names it).
    pub local: bool,
    /// Its connection's number on its node.
    pub conn: u64,
    /// What the cluster counted after the change; `None` when the broker
    /// does not count (this node's members are the whole room).
    pub counts: Option<ClusterCounts>,
}

/// A room's members and a presence user's connections across the
/// cluster, right after one change, as the broker counted them once for
/// every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Members of the room on every node.
    pub subscriptions: usize,
    /// The user's connections on every node (0 for a member that is no
    /// presence user).
    pub user_connections: usize,
    /// Whether this node counted it (its own member's change, or the
    /// removal of a dead node's members): the node that reports the change
    /// to the app, so that the cluster reports it once.
    pub recorded_here: bool,
}

/// What part of a room's history is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The latest `n` messages.
    Latest(usize),
    /// Messages after this id, at most `limit` of them.
    After(u64, usize),
}

/// Messages from a room's history, oldest first, and where history starts
/// when retention dropped part of what was asked.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The messages.
    pub entries: Vec<Entry>,
    /// The first id still kept, when it is later than what was asked.
    pub truncated: Option<u64>,
    /// The room's members across the cluster as of the replay, when the
    /// broker knows them (otherwise the hub lists this node's).
    pub members: Option<Vec<ListedMember>>,
    /// The store could not be read (Redis away, failing or its queue
    /// full): `entries` are not all there is, and the client must be told
    /// rather than given an empty history that says "nothing since".
    pub unavailable: bool,
}

impl Replayed {
    /// The answer when history could not be read: unavailable, unless
    /// `span` asked for nothing (a presence subscriber waiting only for
    /// the member list), which lacks nothing.
    pub fn unavailable(span: Span) -> Self {
        Replayed {
            unavailable: span != Span::Latest(0),
            ..Replayed::default()
        }
    }
}

/// A callback with the answer to a question the broker answers later.
pub type Then<T> = Box<dyn FnOnce(T) + Send>;

/// Where cross-node delivery stands, for `/healthz` and metrics.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: Arc<str>,
    /// Whether cross-node delivery works right now.
    pub up: bool,
    /// Since when it has not (since start-up for a node that has not
    /// reached Redis yet).
    pub down_since: Option<std::time::SystemTime>,
}

/// A room with members on this node, as the broker re-registers it after
/// reconnecting.
#[derive(Debug)]
pub struct LocalRoom {
    /// Its name.
    pub name: RoomName,
    /// The newest id its members here have, live or replayed (0: none).
    pub last_seen: u64,
    /// Its members on this node.
    pub members: Vec<MemberInfo>,
}

/// What orders a room's messages and carries them to every member.
///
/// Calls that concern one room are made under that room's order lock, so
/// a broker sees them in the order the room's members do.
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Orders `message` in `room`.
    fn publish(&self, room: &RoomName, message: Publication<'_>) -> Ordered;

    /// A member of this node joined `room`.
    fn joined(&self, room: &RoomName, member: &MemberInfo);

    /// A member of this node left `room`.
    fn left(&self, room: &RoomName, member: &MemberInfo);

    /// History for a member that joins: `Ok` when it is at hand (taken
    /// under the room's order lock, so nothing published meanwhile is
    /// missing or repeated), else `then` gets it later (and the hub keeps
    /// what arrives meanwhile).
    fn replay(&self, room: &RoomName, span: Span, then: Then<Replayed>) -> Result<Replayed, Pending>;

    /// History asked for by a client; `then` always gets it (at once when
    /// it is at hand).
    fn history(&self, room: &RoomName, span: Span, then: Then<Replayed>);

    /// The room's members across the cluster, for `then`; `false` when
    /// this node's own members are the whole list (the hub counts them).
    fn members(&self, room: &RoomName, then: Then<Option<Vec<ListedMember>>>) -> bool;

    /// The rooms whose names start with `prefix` that have members on any
    /// node, for `then`; `false` when this node's rooms are the whole list.
    fn rooms(&self, prefix: &str, then: Then<Option<Vec<RoomName>>>) -> bool;

    /// Forgets what is kept for `room`, now empty on this node.
    fn room_closed(&self, room: &RoomName);

    /// The app closes the connections signed in as a user (`key`, see
    /// `hub::signed_in`) on every node: the hub has closed this node's; the
    /// broker tells the others ([`Deliver::terminate`]).
    fn terminate(&self, key: &RoomName);

    /// Where cross-node delivery stands; `None` for a single process.
    fn cluster(&self) -> Option<ClusterStatus>;
}

/// The answer to [`Broker::replay`] will come through the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending;

/// The hub's side of the seam: where a broker hands what it carries.
pub trait Deliver: Send + Sync {
    /// A message for this node's members of `room`, in the room's order.
    fn deliver(&self, room: &str, delivery: Delivery);

    /// A member joined or left `room`, on another node or (when the broker
    /// counts the cluster, [`ClusterCounts`]) on this one.
    fn presence_changed(&self, room: &str, change: PresenceChange);

    /// Cross-node delivery stopped (`false`) or came back (`true`).
    fn cluster_changed(&self, up: bool);

    /// Rooms with members on this node.
    fn local_rooms(&self) -> Vec<LocalRoom>;

    /// Another node's app call closes the connections signed in as a user
    /// (`key`): this node closes its own.
    fn terminate(&self, key: &str);
}
