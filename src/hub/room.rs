//! A room: its members, fan-out in one order, and presence.
//!
//! Members speak one of two modes. Raw members (the seed's `/ws`) get every
//! frame verbatim; `wshub.v1` members get JSON. A publish encodes each form
//! at most once and shares the bytes across members. The room's lock is
//! held while ids are assigned and frames queued (never while writing), so
//! ids increase in delivery order and every member sees one order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use slab::Slab;

use super::{lock, Hub};
use crate::broker::{Broker, Command};
use crate::connection::{Outbox, Rejected};
use crate::history::Entry;
use crate::protocol::v1::{ChatMessage, MemberCount, ServerFrame};
use crate::protocol::{encode_frame, frame_for, Message, MessageKind, OpCode};

/// A room's name. `/ws` is the room `lobby`.
pub type RoomName = Arc<str>;

/// Messages per `history` frame when replaying.
const HISTORY_CHUNK: usize = 500;

/// Text bytes per `history` frame, about: a replay is paced a frame at a
/// time, so a frame must fit well within a member's outbound bounds.
const HISTORY_CHUNK_BYTES: usize = 256 * 1024;

/// How a member wants its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The seed's raw chat: frames verbatim, no events.
    Raw,
    /// `wshub.v1` JSON frames, with presence events.
    Json,
}

/// One member: where to queue its frames, and how it is shown.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member connection's outbox.
    pub outbox: Arc<Outbox>,
    /// Raw or JSON.
    pub mode: Mode,
    /// Its nickname.
    nick: Nick,
    /// A replay under way (being fetched from Redis, or paced out as the
    /// member reads). Boxed: only a member being replayed has one, and
    /// every other member (each room entry) is smaller for it.
    replay: Option<Box<Replaying>>,
}

/// A member's replay that is not over yet: what is left to send, and the
/// live messages that arrived meanwhile.
///
/// A replay can be far larger than a member's outbound bounds (five 1 MB
/// messages, or a catch-up of thousands): queued at once it would evict a
/// client that has not had a chance to read anything. So it is paced: a
/// chunk goes out while the outbox has room for it (half its bounds, the
/// rest left for live traffic), and the next when the member's connection
/// has written it out ([`Room::continue_replay`]). Live messages wait here
/// meanwhile, with their ids, so that the replay and the live stream join
/// with no gap and no duplicate; they count against the member's byte
/// bound, so a member that stops reading is still evicted.
#[derive(Debug, Clone, Default)]
struct Replaying {
    /// With Redis: the history is still being fetched.
    fetching: bool,
    /// History not sent yet, oldest first.
    rest: std::collections::VecDeque<Entry>,
    /// The newest id the replay holds: live messages up to it are in it.
    newest: u64,
    /// Live messages that arrived meanwhile, with their ids (0: none).
    backlog: Vec<(u64, Bytes)>,
    backlog_bytes: usize,
    /// With Redis: the cluster's member list, sent when the replay ends
    /// (otherwise this node's, as it is then).
    presence: Option<ServerFrame>,
}

impl Replaying {
    /// A replay of `entries`; the `history_truncated` notice (when
    /// retention dropped part of what was asked) goes out at once.
    fn of(outbox: &Outbox, room: &str, entries: Vec<Entry>, truncated: Option<u64>) -> Self {
        if let Some(first_available) = truncated {
            let _ = outbox.push(text_frame(&ServerFrame::history_truncated(room, first_available)));
        }
        let newest = entries.last().map_or(0, |e| e.id);
        let rest = if entries.is_empty() {
            // An empty `history` frame still says "this is all".
            let _ = outbox.push(history_frame(room, &[]));
            Default::default()
        } else {
            entries.into()
        };
        Replaying {
            rest,
            newest,
            ..Replaying::default()
        }
    }
}

impl Member {
    /// A member that is not replaying.
    pub fn new(outbox: Arc<Outbox>, mode: Mode, nick: Arc<str>) -> Self {
        Member {
            outbox,
            mode,
            nick: Nick::Named(nick),
            replay: None,
        }
    }

    /// A raw member without a name of its own: shown as `guest-N`, with
    /// `N` its connection number.
    pub fn guest(outbox: Arc<Outbox>, number: u64) -> Self {
        Member {
            outbox,
            mode: Mode::Raw,
            nick: Nick::Guest(number),
            replay: None,
        }
    }

    /// Its nickname, as shown to `wshub.v1` members.
    pub fn nick(&self) -> Arc<str> {
        match &self.nick {
            Nick::Guest(number) => Arc::from(format!("guest-{number}")),
            Nick::Named(nick) => nick.clone(),
            Nick::User(identity) => identity.nick.clone(),
        }
    }

    /// The same member with a user id (its token's `sub`), shown with its
    /// messages and presence entries.
    #[must_use]
    pub fn with_user(mut self, user: Option<Arc<str>>) -> Self {
        if let Some(user) = user {
            self.nick = Nick::User(Arc::new(Identity {
                nick: self.nick(),
                user,
            }));
        }
        self
    }

    /// Its user id, when it has one.
    pub fn user(&self) -> Option<Arc<str>> {
        match &self.nick {
            Nick::User(identity) => Some(identity.user.clone()),
            Nick::Guest(_) | Nick::Named(_) => None,
        }
    }

    /// A number naming this member's connection while it lives (presence
    /// entries in Redis are keyed by it).
    fn conn(&self) -> u64 {
        Arc::as_ptr(&self.outbox) as usize as u64
    }

    /// Queues a frame now, or after the replay when one is pending; true
    /// when this evicted the member.
    fn push(&mut self, id: u64, frame: &Bytes) -> bool {
        match self.replay.as_mut() {
            Some(replay) => {
                replay.backlog_bytes += frame.len();
                replay.backlog.push((id, frame.clone()));
                if self.outbox.exceeds_bytes(replay.backlog_bytes) {
                    self.replay = None;
                    self.outbox.evict();
                    return true;
                }
                false
            }
            // Compressed for a deflate member: once per frame, shared.
            None => self.outbox.push(frame_for(frame, self.outbox.deflate())) == Err(Rejected::Overflow),
        }
    }

    /// Sends what of its replay fits its outbox now; true when the replay
    /// (fetched) has been sent in full.
    fn pace_replay(&mut self, room: &str) -> bool {
        let Some(replay) = self.replay.as_mut() else {
            return true;
        };
        if replay.fetching {
            return false;
        }
        while !replay.rest.is_empty() {
            let (count, bytes) = history_chunk(replay.rest.iter());
            if !self.outbox.has_room_for(bytes) {
                return false;
            }
            let chunk: Vec<Entry> = replay.rest.drain(..count).collect();
            push_history_chunk(&self.outbox, room, &chunk);
        }
        true
    }
}

/// A member's name. Most raw connections never choose one, and their
/// `guest-N` is only spelled out when someone is shown it: no string is
/// kept per idle connection. A token holder's name and user id share one
/// allocation, so a member is no larger for having both.
#[derive(Debug, Clone)]
enum Nick {
    Guest(u64),
    Named(Arc<str>),
    User(Arc<Identity>),
}

impl Nick {
    /// Another name, the same user.
    fn renamed(&self, nick: Arc<str>) -> Nick {
        match self {
            Nick::User(identity) => Nick::User(Arc::new(Identity {
                nick,
                user: identity.user.clone(),
            })),
            Nick::Guest(_) | Nick::Named(_) => Nick::Named(nick),
        }
    }
}

/// A token holder's nickname and user id (`sub`).
#[derive(Debug)]
struct Identity {
    nick: Arc<str>,
    user: Arc<str>,
}

/// What a joining member receives before anything new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Nothing (raw members).
    Nothing,
    /// The latest messages, up to the hub's `join_history`.
    Recent,
    /// Everything after this id (catch-up after a reconnect).
    Since(u64),
}

/// A set of members that receive every message published to the room.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    members: Mutex<Slab<Member>>,
    /// With Redis: the last id delivered here (duplicates are dropped, and
    /// after a reconnect what follows it is fetched).
    last_delivered: AtomicU64,
}

impl Room {
    pub(crate) fn new(name: RoomName) -> Self {
        Room {
            name,
            members: Mutex::new(Slab::new()),
            last_delivered: AtomicU64::new(0),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// Members right now.
    pub fn member_count(&self) -> usize {
        lock(&self.members).len()
    }

    /// Adds a member; a JSON member first gets the replay and the member
    /// list, and the others are told. All under the room's lock, so nothing
    /// published meanwhile can slip between the replay and live messages.
    pub(crate) fn insert(self: &Arc<Self>, hub: &Hub, member: Member, replay: Replay) -> usize {
        if let Some(broker) = hub.broker() {
            return self.insert_clustered(hub, broker, member, replay);
        }
        let mut members = lock(&self.members);
        let mut member = member;
        if member.mode == Mode::Json {
            member.replay = self.replay(hub, &member.outbox, replay);
        }
        let (nick, user) = (member.nick(), member.user());
        let mode = member.mode;
        let key = members.insert(member);
        if mode == Mode::Json {
            if members[key].replay.is_some() {
                // The member list follows the replay, once it is out.
                self.continue_replay_locked(&mut members, key);
            } else {
                let _ = members[key].outbox.push(text_frame(&self.presence(&members)));
            }
        }
        let joined = ServerFrame::Joined {
            room: self.name.to_string(),
            nick: nick.to_string(),
            user: user.as_deref().map(str::to_owned),
        };
        self.broadcast_event(&members, Some(key), &joined);
        key
    }

    /// With Redis: the replay and presence come from Redis, asynchronously;
    /// meanwhile the member's live messages wait in its backlog.
    fn insert_clustered(self: &Arc<Self>, hub: &Hub, broker: &Broker, mut member: Member, replay: Replay) -> usize {
        let json = member.mode == Mode::Json;
        if json {
            member.replay = Some(Box::new(Replaying {
                fetching: true,
                ..Replaying::default()
            }));
        }
        let (nick, user, conn, outbox) = (member.nick(), member.user(), member.conn(), member.outbox.clone());
        let mut members = lock(&self.members);
        let key = members.insert(member);
        let joined = ServerFrame::Joined {
            room: self.name.to_string(),
            nick: nick.to_string(),
            user: user.as_deref().map(str::to_owned),
        };
        self.broadcast_event(&members, Some(key), &joined);
        broker.send(Command::Joined {
            room: self.name.clone(),
            conn,
            nick,
            user,
        });
        if json {
            if !broker.is_up() {
                let _ = outbox.push(text_frame(&ServerFrame::cross_node_interrupted()));
            }
            let (since, limit) = match replay {
                Replay::Nothing => (None, 0),
                Replay::Recent => (None, hub.join_history()),
                Replay::Since(after) => (Some(after), usize::MAX),
            };
            let command = Command::Replay {
                room: self.clone(),
                key,
                since,
                limit,
            };
            if !broker.send_always(command) {
                // The queue is full: go live without a replay.
                let _ = outbox.push(text_frame(&self.presence(&members)));
                if let Some(member) = members.get_mut(key) {
                    member.replay = None;
                }
            }
        }
        key
    }

    /// Removes a member, telling the others; returns how many remain.
    pub(crate) fn remove(&self, hub: &Hub, key: usize) -> usize {
        let mut members = lock(&self.members);
        if let Some(member) = members.try_remove(key) {
            if let Some(broker) = hub.broker() {
                broker.send(Command::Left {
                    room: self.name.clone(),
                    conn: member.conn(),
                    nick: member.nick(),
                    user: member.user(),
                });
            }
            let left = ServerFrame::Left {
                room: self.name.to_string(),
                nick: member.nick().to_string(),
                user: member.user().as_deref().map(str::to_owned),
            };
            self.broadcast_event(&members, None, &left);
        }
        members.len()
    }

    /// Changes a member's nickname, telling the others (as left + joined,
    /// which keeps every client's member list right without a new event).
    pub(crate) fn rename(&self, hub: &Hub, key: usize, nick: Arc<str>) {
        let mut members = lock(&self.members);
        let Some(member) = members.get_mut(key) else { return };
        let old = member.nick();
        member.nick = member.nick.renamed(nick.clone());
        let user = member.user();
        if let Some(broker) = hub.broker() {
            let (room, conn) = (self.name.clone(), member.conn());
            broker.send(Command::Left {
                room: room.clone(),
                conn,
                nick: old.clone(),
                user: user.clone(),
            });
            broker.send(Command::Joined {
                room,
                conn,
                nick: nick.clone(),
                user: user.clone(),
            });
        }
        let room = self.name.to_string();
        let user = user.as_deref().map(str::to_owned);
        self.broadcast_event(
            &members,
            None,
            &ServerFrame::Left {
                room: room.clone(),
                nick: old.to_string(),
                user: user.clone(),
            },
        );
        self.broadcast_event(
            &members,
            None,
            &ServerFrame::Joined {
                room,
                nick: nick.to_string(),
                user,
            },
        );
    }

    /// The member list as a `presence` frame.
    pub fn presence_frame(&self) -> Bytes {
        text_frame(&self.presence(&lock(&self.members)))
    }

    fn presence(&self, members: &Slab<Member>) -> ServerFrame {
        // One entry per nickname and user: a user's two tabs count twice
        // in one entry; two users who share a nickname are two entries.
        let mut nicks: BTreeMap<(Arc<str>, Option<Arc<str>>), usize> = BTreeMap::new();
        for (_, member) in members.iter() {
            *nicks.entry((member.nick(), member.user())).or_default() += 1;
        }
        ServerFrame::Presence {
            room: self.name.to_string(),
            count: members.len(),
            members: nicks
                .into_iter()
                .map(|((nick, user), connections)| MemberCount {
                    nick: nick.to_string(),
                    user: user.as_deref().map(str::to_owned),
                    connections,
                })
                .collect(),
        }
    }

    fn broadcast_event(&self, members: &Slab<Member>, except: Option<usize>, event: &ServerFrame) {
        let mut frame = None;
        for (key, member) in members.iter() {
            if member.mode == Mode::Json && Some(key) != except {
                let frame = frame.get_or_insert_with(|| text_frame(event));
                let _ = member.outbox.push(frame.clone());
            }
        }
    }

    /// A joining member's replay, to be paced out: the `history_truncated`
    /// notice goes out at once, the entries as the member reads.
    fn replay(&self, hub: &Hub, outbox: &Outbox, replay: Replay) -> Option<Box<Replaying>> {
        let history = hub.history();
        let (entries, truncated) = match replay {
            Replay::Nothing => return None,
            Replay::Recent => (history.recent(&self.name, hub.join_history()), None),
            Replay::Since(after) => history.since(&self.name, after, usize::MAX).into_parts(),
        };
        Some(Box::new(Replaying::of(outbox, &self.name, entries, truncated)))
    }

    /// Sends more of member `key`'s replay, now that its connection has
    /// written out what it had; true while some is left. When the replay
    /// is over: the member list, then the live messages that waited.
    pub(crate) fn continue_replay(&self, key: usize) -> bool {
        self.continue_replay_locked(&mut lock(&self.members), key)
    }

    fn continue_replay_locked(&self, members: &mut Slab<Member>, key: usize) -> bool {
        let Some(member) = members.get_mut(key) else {
            return false;
        };
        if member.replay.is_none() {
            return false;
        }
        if !member.pace_replay(&self.name) {
            return true;
        }
        let replay = member.replay.take().expect("checked above");
        let presence = text_frame(&replay.presence.unwrap_or_else(|| self.presence(members)));
        let member = &members[key];
        let _ = member.outbox.push(presence);
        for (id, frame) in replay.backlog {
            if id == 0 || id > replay.newest {
                let _ = member.outbox.push(frame_for(&frame, member.outbox.deflate()));
            }
        }
        false
    }

    /// Publishes a message from the raw member `key`: verbatim to raw
    /// members; text is also stored and sent as JSON, under the sender's
    /// nickname, to `wshub.v1` members.
    pub fn publish_raw(&self, hub: &Hub, key: usize, message: &Message) -> usize {
        let text = match message.kind() {
            MessageKind::Binary => None,
            MessageKind::Text => Some(std::str::from_utf8(message.payload()).unwrap_or_default()),
        };
        // The nickname is looked up here rather than kept by the connection:
        // a raw connection then carries no copy of its own.
        let nick_of = |members: &Slab<Member>| members.get(key).map_or_else(|| Arc::from(""), Member::nick);
        let user_of = |members: &Slab<Member>| members.get(key).and_then(Member::user);
        if let Some(broker) = hub.broker() {
            let (nick, user) = {
                let members = lock(&self.members);
                (nick_of(&members), user_of(&members))
            };
            let room = self.name.clone();
            let command = match text {
                None => Command::PublishBinary {
                    room,
                    payload: Bytes::copy_from_slice(message.payload()),
                },
                Some(text) => Command::Publish {
                    room,
                    nick: nick.clone(),
                    user: user.clone(),
                    text: Arc::from(text),
                    client_ref: None,
                },
            };
            if !broker.send(command) {
                match text {
                    None => self.deliver_binary(hub, message.payload()),
                    Some(text) => self.deliver_local(hub, &nick, user.as_deref(), text, None),
                }
            }
            return 0;
        }
        let mut members = lock(&self.members);
        let json = text.map(|text| {
            let user = user_of(&members);
            let entry = hub
                .history()
                .append_by(&self.name, &nick_of(&members), user.as_ref(), text);
            self.message_frame(entry, None)
        });
        fan_out(hub, &mut members, 0, Some(message.frame()), json.as_ref())
    }

    /// Publishes a message from a `wshub.v1` client: stored, then sent as
    /// JSON (with the sender's `ref`) and as plain text to raw members.
    pub fn publish_text(
        &self,
        hub: &Hub,
        nick: &Arc<str>,
        user: Option<&Arc<str>>,
        text: &str,
        client_ref: Option<String>,
    ) -> usize {
        if let Some(broker) = hub.broker() {
            let command = Command::Publish {
                room: self.name.clone(),
                nick: nick.clone(),
                user: user.cloned(),
                text: Arc::from(text),
                client_ref: client_ref.clone(),
            };
            if !broker.send(command) {
                self.deliver_local(hub, nick, user.map(|u| &**u), text, client_ref);
            }
            return 0;
        }
        let mut members = lock(&self.members);
        let entry = hub.history().append_by(&self.name, nick, user, text);
        let json = self.message_frame(entry, client_ref);
        let has_raw = members.iter().any(|(_, m)| m.mode == Mode::Raw);
        let raw = has_raw.then(|| encode_frame(OpCode::Text, text.as_bytes()));
        fan_out(hub, &mut members, 0, raw.as_ref(), Some(&json))
    }

    fn message_frame(&self, entry: Entry, client_ref: Option<String>) -> Bytes {
        text_frame(&ServerFrame::Message {
            room: self.name.to_string(),
            message: chat_message(&entry),
            client_ref,
            local: false,
        })
    }

    /// With Redis: delivers a message Redis published, to this node's
    /// members, once (a repeated id is dropped).
    pub(crate) fn deliver(&self, hub: &Hub, entry: Entry, client_ref: Option<String>) {
        let mut members = lock(&self.members);
        if entry.id <= self.last_delivered.load(Ordering::Relaxed) {
            return;
        }
        self.last_delivered.store(entry.id, Ordering::Relaxed);
        let id = entry.id;
        let raw = encode_frame(OpCode::Text, entry.text.as_bytes());
        let json = self.message_frame(entry, client_ref);
        fan_out(hub, &mut members, id, Some(&raw), Some(&json));
    }

    /// Delivers within this node only, while Redis is away: no id, not in
    /// the shared history, marked `local`.
    pub(crate) fn deliver_local(
        &self,
        hub: &Hub,
        nick: &str,
        user: Option<&str>,
        text: &str,
        client_ref: Option<String>,
    ) {
        let ts = crate::history::clock::unix_millis();
        let json = text_frame(&ServerFrame::Message {
            room: self.name.to_string(),
            message: ChatMessage {
                id: 0,
                ts,
                nick: nick.to_owned(),
                user: user.map(str::to_owned),
                text: text.to_owned(),
            },
            client_ref,
            local: true,
        });
        let raw = encode_frame(OpCode::Text, text.as_bytes());
        fan_out(hub, &mut lock(&self.members), 0, Some(&raw), Some(&json));
    }

    /// Delivers a raw binary payload to this node's raw members.
    pub(crate) fn deliver_binary(&self, hub: &Hub, payload: &[u8]) {
        let frame = encode_frame(OpCode::Binary, payload);
        fan_out(hub, &mut lock(&self.members), 0, Some(&frame), None);
    }

    /// Delivers a presence event from another node to JSON members.
    pub(crate) fn deliver_event(&self, event: &ServerFrame) {
        self.broadcast_event(&lock(&self.members), None, event);
    }

    /// With Redis: the member's replay has been fetched; it is paced out
    /// from here (see [`Replaying`]), then presence (Redis's, when it has
    /// it), then what arrived meanwhile and is newer than the history.
    pub(crate) fn finish_replay(
        &self,
        key: usize,
        entries: Vec<Entry>,
        truncated: Option<u64>,
        presence: Option<ServerFrame>,
    ) {
        let mut members = lock(&self.members);
        let Some(member) = members.get_mut(key) else { return };
        let Some(replay) = member.replay.as_mut() else { return };
        if !replay.fetching {
            return;
        }
        let backlog = std::mem::take(&mut replay.backlog);
        let backlog_bytes = replay.backlog_bytes;
        let mut fetched = Replaying::of(&member.outbox, &self.name, entries, truncated);
        fetched.backlog = backlog;
        fetched.backlog_bytes = backlog_bytes;
        fetched.presence = presence;
        **replay = fetched;
        self.continue_replay_locked(&mut members, key);
    }

    /// The last id delivered on this node (0: none yet).
    pub(crate) fn last_delivered(&self) -> u64 {
        self.last_delivered.load(Ordering::Relaxed)
    }

    /// This node's members, for re-registering presence with Redis.
    pub(crate) fn local_members(&self) -> Vec<(u64, Arc<str>, Option<Arc<str>>)> {
        lock(&self.members)
            .iter()
            .map(|(_, m)| (m.conn(), m.nick(), m.user()))
            .collect()
    }

    /// JSON members' outboxes (for hub-wide notices).
    pub(crate) fn json_outboxes(&self) -> Vec<Arc<Outbox>> {
        lock(&self.members)
            .iter()
            .filter(|(_, m)| m.mode == Mode::Json)
            .map(|(_, m)| m.outbox.clone())
            .collect()
    }
}

/// Queues the right form to each member (a form that is `None` skips those
/// members), behind a pending replay where there is one; returns how many
/// members it evicted. `id` is the message's id (0: none), which a replay's
/// backlog needs to drop what the replay already holds.
fn fan_out(hub: &Hub, members: &mut Slab<Member>, id: u64, raw: Option<&Bytes>, json: Option<&Bytes>) -> usize {
    let mut evicted = 0;
    let mut delivered = 0;
    for (_, member) in members.iter_mut() {
        let frame = match member.mode {
            Mode::Raw => raw,
            Mode::Json => json,
        };
        if let Some(frame) = frame {
            delivered += 1;
            if member.push(id, frame) {
                evicted += 1;
            }
        }
    }
    let stats = hub.stats();
    stats.published.fetch_add(1, Ordering::Relaxed);
    stats.delivered.fetch_add(delivered, Ordering::Relaxed);
    evicted
}

/// Queues a replay: the `history_truncated` error first when retention
/// dropped part of what was asked (`truncated` is where history starts),
/// then the entries.
pub(crate) fn push_replay(outbox: &Outbox, room: &str, entries: &[Entry], truncated: Option<u64>) {
    if let Some(first_available) = truncated {
        let _ = outbox.push(text_frame(&ServerFrame::history_truncated(room, first_available)));
    }
    push_history(outbox, room, entries);
}

/// Queues `entries` as `history` frames (see [`history_chunk`]).
pub(crate) fn push_history(outbox: &Outbox, room: &str, entries: &[Entry]) {
    if entries.is_empty() {
        let _ = outbox.push(history_frame(room, &[]));
    }
    let mut rest = entries;
    while !rest.is_empty() {
        let (count, _) = history_chunk(rest.iter());
        let (chunk, after) = rest.split_at(count);
        push_history_chunk(outbox, room, chunk);
        rest = after;
    }
}

/// How many of `entries` go in the next `history` frame, and about how
/// many bytes of text they hold: at most [`HISTORY_CHUNK`] messages and
/// [`HISTORY_CHUNK_BYTES`] of text, and at least one message. Frames stay
/// small enough to pace a replay by, and a single big message is never
/// stuck.
fn history_chunk<'a>(entries: impl Iterator<Item = &'a Entry>) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    for entry in entries.take(HISTORY_CHUNK) {
        let size = entry_bytes(entry);
        if count > 0 && bytes + size > HISTORY_CHUNK_BYTES {
            break;
        }
        count += 1;
        bytes += size;
    }
    (count, bytes)
}

/// What one entry adds to a `history` frame, roughly: its text and nickname
/// and the JSON around them.
fn entry_bytes(entry: &Entry) -> usize {
    entry.text.len() + entry.nick.len() + 64
}

fn push_history_chunk(outbox: &Outbox, room: &str, chunk: &[Entry]) {
    let _ = outbox.push(history_frame(room, chunk));
}

fn history_frame(room: &str, entries: &[Entry]) -> Bytes {
    text_frame(&ServerFrame::History {
        room: room.to_owned(),
        messages: entries.iter().map(chat_message).collect(),
    })
}

fn chat_message(entry: &Entry) -> ChatMessage {
    ChatMessage {
        id: entry.id,
        ts: entry.ts,
        nick: entry.nick.to_string(),
        user: entry.user.as_deref().map(str::to_owned),
        text: entry.text.to_string(),
    }
}

/// Encodes a server frame as one WebSocket text frame.
pub(crate) fn text_frame(frame: &ServerFrame) -> Bytes {
    encode_frame(OpCode::Text, frame.to_json().as_bytes())
}

/// A connection's place in a room; dropping it leaves the room.
#[derive(Debug)]
pub struct Membership {
    hub: Hub,
    room: Arc<Room>,
    key: usize,
}

impl Membership {
    pub(crate) fn new(hub: Hub, room: Arc<Room>, key: usize) -> Self {
        Membership { hub, room, key }
    }

    /// The room joined.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Publishes a raw client's message (see [`Room::publish_raw`]).
    pub fn publish_raw(&self, message: &Message) -> usize {
        self.room.publish_raw(&self.hub, self.key, message)
    }

    /// Publishes a `wshub.v1` message (see [`Room::publish_text`]).
    pub fn publish_text(
        &self,
        nick: &Arc<str>,
        user: Option<&Arc<str>>,
        text: &str,
        client_ref: Option<String>,
    ) -> usize {
        self.room.publish_text(&self.hub, nick, user, text, client_ref)
    }

    /// Sends more of this member's replay, if one is being paced out; true
    /// while some is left (see [`Room::continue_replay`]).
    pub fn continue_replay(&self) -> bool {
        self.room.continue_replay(self.key)
    }

    /// Changes this member's nickname in the room.
    pub fn rename(&self, nick: Arc<str>) {
        self.room.rename(&self.hub, self.key, nick);
    }

    /// The hub this membership belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(&self.room, self.key);
    }
}
