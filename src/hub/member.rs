//! A room's member: where its frames go, how it is shown, and the replay
//! it may be in the middle of.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::frames::{history_chunk, history_frame, text_frame};
use super::{Outbox, Rejected};
use crate::broker::{ListedMember, MemberInfo, Replayed};
use crate::history::Entry;
use crate::protocol::frame_for;

/// How a member wants its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The seed's raw chat: frames verbatim, no events.
    Raw,
    /// `wshub.v1` JSON frames, with presence events.
    Json,
    /// Pusher Channels events (`GET /app/{key}`).
    Pusher,
    /// Pusher on a presence channel: counted among the channel's users.
    PusherPresence,
}

impl Mode {
    /// Whether it speaks Pusher.
    pub fn is_pusher(self) -> bool {
        matches!(self, Mode::Pusher | Mode::PusherPresence)
    }
}

/// What a joining member receives before anything new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Nothing (raw members).
    Nothing,
    /// The latest messages, up to the hub's `join_history`; for a Pusher
    /// member (a cache channel's), the last one or `pusher:cache_miss`.
    Recent,
    /// Everything after this id (catch-up after a reconnect).
    Since(u64),
}

/// One member: where to queue its frames, and how it is shown.
#[derive(Debug)]
pub struct Member {
    /// The member connection's outbox.
    pub outbox: Arc<Outbox>,
    /// Raw or JSON.
    pub mode: Mode,
    /// Its nickname.
    nick: Nick,
    /// A replay under way (being fetched, or paced out as the member
    /// reads). Boxed: only a member being replayed has one, and every other
    /// member (each room entry) is smaller for it.
    pub(super) replay: Option<Box<Replaying>>,
}

/// A member's replay that is not over yet: what is left to send, and the
/// live messages that arrived meanwhile.
///
/// A replay can be far larger than a member's outbound bounds (five 1 MB
/// messages, or a catch-up of thousands): queued at once it would evict a
/// client that has not had a chance to read anything. So it is paced: a
/// chunk goes out while the outbox has room for it (half its bounds, the
/// rest left for live traffic), and the next when the member's connection
/// has written it out ([`super::Room::continue_replay`]). Live messages
/// wait here meanwhile, with their ids, so that the replay and the live
/// stream join with no gap and no duplicate, and go out paced too, after
/// the member list; they count against the member's byte bound, so a
/// member that stops reading is still evicted.
#[derive(Debug, Default)]
pub(super) struct Replaying {
    /// The history is still being fetched (from Redis).
    pub(super) fetching: bool,
    /// History not sent yet, oldest first.
    rest: VecDeque<Entry>,
    /// The newest id the replay holds: live messages up to it are in it.
    newest: u64,
    /// Live frames that arrived meanwhile, oldest first: sent after the
    /// member list, paced like the history (queued at once, a long
    /// catch-up's backlog would overflow the outbox's count bound and
    /// evict a member that reads all along).
    backlog: VecDeque<Waiting>,
    backlog_bytes: usize,
    /// The cluster's member list, sent when the history is out (otherwise
    /// this node's, as it is then).
    pub(super) members: Option<Vec<ListedMember>>,
    /// The member list has gone out: what remains is the backlog.
    listed: bool,
}

/// A live frame waiting behind a replay.
#[derive(Debug)]
struct Waiting {
    /// The message's id (0: none).
    id: u64,
    frame: Bytes,
    /// A message, not an event (a presence change): an event that waited
    /// is already in the member list sent after the history.
    message: bool,
}

impl Replaying {
    /// A replay still being fetched.
    pub(super) fn fetching() -> Box<Self> {
        Box::new(Replaying {
            fetching: true,
            ..Replaying::default()
        })
    }

    /// The fetched history takes over; the `history_truncated` notice (when
    /// retention dropped part of what was asked) or `history_unavailable`
    /// (when the store could not be read) goes out at once, as does an
    /// empty `history` frame (which, without either, says "this is all").
    pub(super) fn fetched(&mut self, outbox: &Outbox, room: &str, mode: Mode, replayed: Replayed) {
        let notice = match mode {
            Mode::Pusher | Mode::PusherPresence => super::pusher::replay_notice(room, &replayed),
            Mode::Json | Mode::Raw => super::frames::replay_notice(room, &replayed).map(|frame| text_frame(&frame)),
        };
        if let Some(notice) = notice {
            let _ = outbox.push(notice);
        }
        self.newest = replayed.entries.last().map_or(0, |e| e.id);
        if replayed.entries.is_empty() && mode == Mode::Json {
            let _ = outbox.push(history_frame(room, &[]));
        }
        self.rest = replayed.entries.into();
        self.members = replayed.members;
        self.fetching = false;
    }

    /// The member list goes out now: the events that waited are in it
    /// (someone who joined is listed, someone who left is not), so they
    /// are not sent after it too.
    fn listing(&mut self) -> Option<Vec<ListedMember>> {
        self.listed = true;
        let mut dropped = 0;
        self.backlog.retain(|waiting| {
            if !waiting.message {
                dropped += waiting.frame.len();
            }
            waiting.message
        });
        self.backlog_bytes -= dropped;
        self.members.take()
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

    /// A Pusher subscriber: shown as `guest-N` like a raw member, or, on a
    /// presence channel, as its user (`user_id`) whose nickname is its
    /// `user_info` JSON: what the channel's other members are shown of it,
    /// here and (through the broker's member lists) on other nodes.
    pub fn pusher(outbox: Arc<Outbox>, number: u64, presence: Option<(Arc<str>, Arc<str>)>) -> Self {
        match presence {
            None => Member {
                mode: Mode::Pusher,
                ..Member::guest(outbox, number)
            },
            Some((user, info)) => Member {
                outbox,
                mode: Mode::PusherPresence,
                nick: Nick::User(Arc::new(Identity { nick: info, user })),
                replay: None,
            },
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

    /// Another nickname, the same user.
    pub(super) fn rename(&mut self, nick: Arc<str>) {
        self.nick = self.nick.renamed(nick);
    }

    /// A number naming this member's connection while it lives (presence
    /// entries in Redis are keyed by it, and a room's events skip their own
    /// member by it).
    pub(super) fn conn(&self) -> u64 {
        outbox_id(&self.outbox)
    }

    /// The member as a broker knows it.
    pub(super) fn info(&self) -> MemberInfo {
        MemberInfo {
            conn: self.conn(),
            nick: self.nick(),
            user: self.user(),
            presence: self.mode == Mode::PusherPresence,
        }
    }

    /// Queues a frame now, or after the replay when one is pending; true
    /// when this evicted the member.
    pub(super) fn push(&mut self, id: u64, frame: &Bytes, message: bool) -> bool {
        match self.replay.as_mut() {
            Some(replay) => {
                replay.backlog_bytes += frame.len();
                replay.backlog.push_back(Waiting {
                    id,
                    frame: frame.clone(),
                    message,
                });
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

    /// The member list of a JSON member whose history is out, once: the
    /// cluster's when the broker gave one (`Some(None)`: this node's).
    pub(super) fn list_due(&mut self) -> Option<Option<Vec<ListedMember>>> {
        let replay = self.replay.as_mut()?;
        if replay.listed || replay.fetching || !replay.rest.is_empty() {
            return None;
        }
        if self.mode != Mode::Json {
            // A Pusher member had its list first (`subscription_succeeded`):
            // the events after it stand.
            replay.listed = true;
            return None;
        }
        Some(replay.listing())
    }

    /// Sends what of the live frames that waited fits its outbox now,
    /// without those the replay held; true when none is left, and the
    /// member is live from then on.
    pub(super) fn pace_backlog(&mut self) -> bool {
        let Some(replay) = self.replay.as_mut() else {
            return true;
        };
        while let Some(waiting) = replay.backlog.front() {
            if waiting.id != 0 && waiting.id <= replay.newest {
                replay.backlog_bytes -= waiting.frame.len();
                replay.backlog.pop_front();
                continue;
            }
            // Compressed for a deflate member: once per frame, shared.
            let frame = frame_for(&waiting.frame, self.outbox.deflate());
            if !self.outbox.has_room_for(frame.len()) {
                return false;
            }
            replay.backlog_bytes -= waiting.frame.len();
            replay.backlog.pop_front();
            let _ = self.outbox.push(frame);
        }
        self.replay = None;
        true
    }

    /// Sends what of its replay fits its outbox now; true when the replay
    /// (fetched) has been sent in full.
    pub(super) fn pace_replay(&mut self, room: &str) -> bool {
        let Some(replay) = self.replay.as_mut() else {
            return true;
        };
        if replay.fetching {
            return false;
        }
        if self.mode.is_pusher() {
            // Pusher has no batch frame: one event a stored message, each
            // sent while the outbox has room.
            while let Some(entry) = replay.rest.front() {
                let frame = super::pusher::entry_frame(room, entry);
                if !self.outbox.has_room_for(frame.len()) {
                    return false;
                }
                replay.rest.pop_front();
                let _ = self.outbox.push(frame);
            }
            return true;
        }
        while !replay.rest.is_empty() {
            let (count, bytes) = history_chunk(replay.rest.iter());
            if !self.outbox.has_room_for(bytes) {
                return false;
            }
            let chunk: Vec<Entry> = replay.rest.drain(..count).collect();
            let _ = self.outbox.push(history_frame(room, &chunk));
        }
        true
    }
}

/// The number an outbox is known by (see [`Outbox::number`]).
pub(super) fn outbox_id(outbox: &Arc<Outbox>) -> u64 {
    outbox.number()
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
