//! A room: its members on every worker, fan-out in one order, presence.
//!
//! Members speak one of three protocols. Raw members (the seed's `/ws`) get
//! every frame verbatim; `wshub.v1` members get its JSON; Pusher members
//! get Pusher's envelope (see [`super::pusher`]). A publish encodes each
//! form at most once, only when the room has members who want it, and
//! shares the bytes across members and workers.
//!
//! A room is split per worker: each worker's members sit in that worker's
//! [`Shard`], touched by that worker's thread (and briefly by a thread
//! listing members). What orders the room, the broker's answer and the
//! queueing of one parcel per worker, happens under the room's order lock,
//! so ids increase in delivery order and every member sees one order.
//!
//! Lock order: the hub's room map, then a room's order lock, then its
//! shards. A thread holding a shard takes another shard only while it
//! holds the order lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use slab::Slab;

use super::frames::{self, message_frame, presence_frame, text_frame};
use super::inbox::{Forms, Parcel};
use super::member::{Member, Mode, Replay, Replaying};
use super::pusher::{self, Users};
use super::{lock, CloseRequest, Hub, Outbox};
use crate::broker::{Body, Delivery, ListedMember, MemberInfo, Ordered, PresenceChange, Publication, RoomName, Span};
use crate::history::Entry;
use crate::protocol::v1::ServerFrame;
use crate::protocol::{encode_frame, Message, MessageKind, OpCode};

/// A set of members that receive every message published to the room.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    order: Mutex<Order>,
    shards: Box<[Shard]>,
}

/// What the order lock guards.
#[derive(Debug)]
struct Order {
    /// Members per worker: a parcel goes only where there are some.
    members: Box<[u32]>,
    /// Raw members in all: a text's raw form is encoded only for them.
    raw: u32,
    /// Pusher members in all: the Pusher form is encoded only for them.
    pusher: u32,
    /// A presence channel's users (its Pusher presence members').
    users: Users,
    /// The last id delivered here (duplicates from the broker are dropped).
    last_delivered: u64,
}

impl Order {
    fn total(&self) -> usize {
        self.members.iter().map(|&n| n as usize).sum()
    }

    /// `wshub.v1` members in all.
    fn json(&self) -> usize {
        self.total() - self.raw as usize - self.pusher as usize
    }
}

/// One worker's part of a room.
#[derive(Debug, Default)]
struct Shard {
    members: Mutex<Slab<Member>>,
    /// Parcels of this room in the worker's inbox, not yet delivered: while
    /// there are any, the worker queues behind them rather than deliver
    /// directly, so the room's order holds.
    pending: AtomicU32,
}

impl Room {
    pub(crate) fn new(name: RoomName, workers: usize) -> Self {
        Room {
            name,
            order: Mutex::new(Order {
                members: vec![0; workers].into_boxed_slice(),
                raw: 0,
                pusher: 0,
                users: Users::default(),
                last_delivered: 0,
            }),
            shards: (0..workers).map(|_| Shard::default()).collect(),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// Members right now, on every worker.
    pub fn member_count(&self) -> usize {
        lock(&self.order).total()
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, Slab<Member>> {
        lock(&self.shards[worker].members)
    }

    /// Queues `forms` to every worker with members: directly into the
    /// members' outboxes for the calling worker when nothing of the room
    /// waits in its inbox, else as one parcel per worker.
    fn fan_out(self: &Arc<Self>, hub: &Hub, order: &Order, forms: Forms) {
        let here = hub.current_worker();
        for (worker, &count) in order.members.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let shard = &self.shards[worker];
            if here == Some(worker) && shard.pending.load(Ordering::Acquire) == 0 {
                self.push_to_members(hub, worker, &forms);
            } else {
                shard.pending.fetch_add(1, Ordering::AcqRel);
                hub.stats().parcels.fetch_add(1, Ordering::Relaxed);
                // A clone of the frames is reference counts, not bytes.
                hub.inbox(worker).push(Parcel {
                    room: self.clone(),
                    forms: forms.clone(),
                });
            }
        }
    }

    /// A parcel of this room has reached `worker`: its members get it.
    pub(crate) fn deliver_here(&self, hub: &Hub, worker: usize, forms: &Forms) {
        self.push_to_members(hub, worker, forms);
        self.shards[worker].pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues the right form to each member of `worker`'s shard (a form
    /// that is `None` skips those members), behind a pending replay where
    /// there is one.
    fn push_to_members(&self, hub: &Hub, worker: usize, forms: &Forms) {
        let mut members = self.shard(worker);
        let mut delivered = 0;
        for (_, member) in members.iter_mut() {
            let frame = match member.mode {
                Mode::Raw => forms.raw.as_ref(),
                Mode::Json => forms.json.as_ref(),
                Mode::Pusher | Mode::PusherPresence => forms.pusher.as_ref(),
            };
            if let Some(frame) = frame {
                if forms.except != 0 && member.conn() == forms.except {
                    continue;
                }
                delivered += 1;
                member.push(forms.id, frame);
            }
        }
        if forms.message {
            hub.stats().delivered.fetch_add(delivered, Ordering::Relaxed);
        }
    }

    /// An event for `wshub.v1` members (presence), in the room's order.
    fn announce(self: &Arc<Self>, hub: &Hub, order: &Order, event: &ServerFrame, except: u64) {
        if order.json() == 0 {
            return;
        }
        let forms = Forms {
            json: Some(text_frame(event)),
            except,
            ..Forms::default()
        };
        self.fan_out(hub, order, forms);
    }

    /// Adds a member on the calling worker; a JSON member first gets the
    /// replay and the member list, and the others are told. The replay is
    /// taken under the order lock, so nothing published meanwhile can slip
    /// between it and the live messages.
    pub(crate) fn insert(self: &Arc<Self>, hub: &Hub, member: Member, replay: Replay) -> (usize, usize) {
        let here = hub.current_worker();
        let worker = here.unwrap_or(0);
        let mut order = lock(&self.order);
        if here.is_some() && self.shards[worker].pending.load(Ordering::Acquire) > 0 {
            // What was published before this join reaches the worker's
            // members before the joiner is one of them.
            hub.inbox(worker).drain(hub, worker);
        }
        let mode = member.mode;
        let json = mode == Mode::Json;
        // A presence subscriber of a cluster waits for the cluster's member
        // list, as a replay of nothing would (its live frames wait too).
        let waits_for_members = mode == Mode::PusherPresence && hub.clustered();
        // A Pusher member replays only when it asks to catch up (`since`).
        let replays = json || waits_for_members || (mode.is_pusher() && matches!(replay, Replay::Since(_)));
        // A cache channel's answer; one that waits for the member list
        // comes from the same fetch, after it.
        let cached = mode.is_pusher() && replay == Replay::Recent;
        let after = AfterFetch {
            members: waits_for_members,
            cached: cached && waits_for_members,
        };
        let info = member.info();
        let outbox = member.outbox.clone();
        let mut member = member;
        if replays {
            member.replay = Some(Replaying::fetching());
        }
        let key = self.shard(worker).insert(member);
        order.members[worker] += 1;
        match mode {
            Mode::Raw => order.raw += 1,
            Mode::Pusher | Mode::PusherPresence => {
                order.pusher += 1;
                self.subscribed(hub, &mut order, &info, &outbox, mode == Mode::PusherPresence);
                if cached && !after.cached {
                    self.send_cached(hub, &outbox);
                }
            }
            Mode::Json => {}
        }
        self.count_changed(hub, &order);
        let joined = ServerFrame::Joined {
            room: self.name.to_string(),
            nick: info.nick.to_string(),
            user: info.user.as_deref().map(str::to_owned),
        };
        self.announce(hub, &order, &joined, info.conn);
        let broker = hub.broker();
        broker.joined(&self.name, &info);
        if replays {
            if json && broker.cluster().is_some_and(|cluster| !cluster.up) {
                let _ = outbox.push(text_frame(&ServerFrame::cross_node_interrupted()));
            }
            let span = match replay {
                Replay::Since(after) => Span::After(after, usize::MAX),
                // A Pusher member's `Recent` is a cache channel's last
                // event: sent apart (`send_cached`), or, after a cluster's
                // member list, as this fetch's one event.
                Replay::Recent if json => Span::Latest(hub.join_history()),
                Replay::Recent if after.cached => Span::Latest(1),
                Replay::Recent | Replay::Nothing => Span::Latest(0),
            };
            let (room, later) = (self.clone(), hub.clone());
            let then = Box::new(move |replayed| room.replay_fetched(&later, worker, key, replayed, after));
            // Pending: the member's live messages wait in its backlog until
            // the broker calls back.
            if let Ok(replayed) = broker.replay(&self.name, span, then) {
                let mut members = self.shard(worker);
                self.fetched(hub, &order, &mut members, key, replayed, after);
                self.pace_replay(&order, worker, &mut members, key);
            }
        }
        (worker, key)
    }

    /// A Pusher member is in: it gets `subscription_succeeded` (with the
    /// channel's users on a presence channel, itself among them), and the
    /// others hear of a user's first connection.
    fn subscribed(self: &Arc<Self>, hub: &Hub, order: &mut Order, info: &MemberInfo, outbox: &Outbox, presence: bool) {
        let user = info.user.as_ref().filter(|_| presence);
        let Some(user) = user else {
            let _ = outbox.push(pusher::subscription_succeeded(&self.name, None));
            return;
        };
        let first = order.users.add(user, &info.nick);
        if hub.clustered() {
            // The member list is the cluster's, sent when the broker has
            // it (`fetched`); a user's first connection is the cluster's
            // to announce (`presence_changed`).
            return;
        }
        let _ = outbox.push(pusher::subscription_succeeded(&self.name, Some(&order.users)));
        if first {
            hub.occupancy_events().user_added(&self.name, user);
            let forms = Forms {
                pusher: Some(pusher::member_added(&self.name, user, &info.nick)),
                except: info.conn,
                ..Forms::default()
            };
            self.fan_out(hub, order, forms);
        }
    }

    /// This node's count of the room's members has changed (a join or a
    /// leave): the webhook hears of it, and so do the room's Pusher
    /// subscribers where their app counts subscriptions. In a cluster both
    /// wait for the cluster's count ([`Room::presence_changed`]).
    fn count_changed(self: &Arc<Self>, hub: &Hub, order: &Order) {
        if hub.clustered() {
            return;
        }
        let count = order.total();
        hub.occupancy_events().subscription_count(&self.name, count);
        self.tell_count(hub, order, count);
    }

    /// `pusher_internal:subscription_count` to the room's Pusher members,
    /// the joiner too, where their app asks for it: the count of every
    /// connection in the room, as the webhook and `GET /channels` give it.
    fn tell_count(self: &Arc<Self>, hub: &Hub, order: &Order, count: usize) {
        if order.pusher == 0 || !hub.room_events().counts_to_subscribers(&self.name) {
            return;
        }
        let forms = Forms {
            pusher: Some(pusher::subscription_count(&self.name, count)),
            ..Forms::default()
        };
        self.fan_out(hub, order, forms);
    }

    /// A Pusher cache channel's answer to a subscriber: the room's last
    /// message, or `pusher:cache_miss`. Taken under the order lock, like a
    /// replay, so it is older than anything that arrives after it.
    fn send_cached(self: &Arc<Self>, hub: &Hub, outbox: &Arc<Outbox>) {
        let (later, name, reply) = (hub.clone(), self.name.clone(), outbox.clone());
        let then = Box::new(move |replayed: crate::broker::Replayed| {
            pusher::push_cached(&later, &name, &reply, &replayed);
        });
        if let Ok(replayed) = hub.broker().replay(&self.name, Span::Latest(1), then) {
            pusher::push_cached(hub, &self.name, outbox, &replayed);
        }
    }

    /// The broker has fetched a joiner's replay: it is paced out from here
    /// (see [`Replaying`]), then the member list, then what arrived
    /// meanwhile and is newer than the replay.
    fn replay_fetched(
        &self,
        hub: &Hub,
        worker: usize,
        key: usize,
        replayed: crate::broker::Replayed,
        after: AfterFetch,
    ) {
        let order = lock(&self.order);
        let mut members = self.shard(worker);
        if members
            .get(key)
            .is_some_and(|m| m.replay.as_ref().is_some_and(|r| r.fetching))
        {
            self.fetched(hub, &order, &mut members, key, replayed, after);
            self.pace_replay(&order, worker, &mut members, key);
        }
    }

    /// Member `key`'s replay is at hand; a presence subscriber of a cluster
    /// (`after.members`) first gets its `subscription_succeeded` with the
    /// cluster's users, itself among them (its own join may not have
    /// reached the list yet), or this node's when the broker could not
    /// list them, and then, on a cache channel, the cache's answer.
    fn fetched(
        &self,
        hub: &Hub,
        order: &Order,
        members: &mut Slab<Member>,
        key: usize,
        replayed: crate::broker::Replayed,
        after: AfterFetch,
    ) {
        let Some(member) = members.get_mut(key) else { return };
        if after.members {
            let frame = match (&replayed.members, member.user()) {
                (Some(listed), Some(user)) => {
                    let users = Users::listed(listed, (&user, &member.nick()));
                    pusher::subscription_succeeded(&self.name, Some(&users))
                }
                _ => pusher::subscription_succeeded(&self.name, Some(&order.users)),
            };
            let _ = member.outbox.push(frame);
        }
        if after.cached && replayed.entries.is_empty() {
            // A hit is the replay of one event, sent next (after a live
            // event only if newer); a miss is said here.
            pusher::push_cached(hub, &self.name, &member.outbox, &replayed);
        }
        let (outbox, mode) = (member.outbox.clone(), member.mode);
        if let Some(replay) = member.replay.as_mut() {
            replay.fetched(&outbox, &self.name, mode, replayed);
        }
    }

    /// Sends what fits of member `key`'s replay; when it is over, the member
    /// list and the live messages that waited. True while some is left.
    fn pace_replay(&self, order: &Order, worker: usize, members: &mut Slab<Member>, key: usize) -> bool {
        let Some(member) = members.get_mut(key) else {
            return false;
        };
        if member.replay.is_none() {
            return false;
        }
        if !member.pace_replay(&self.name) {
            return true;
        }
        let mut replay = member.replay.take().expect("checked above");
        if member.mode == Mode::Json {
            let listed = replay.members.take();
            let list = listed.unwrap_or_else(|| self.list_members(order, Some((worker, members))));
            let _ = members[key].outbox.push(presence_frame(&self.name, list));
        }
        let member = &members[key];
        for frame in replay.into_backlog() {
            let _ = member
                .outbox
                .push(crate::protocol::frame_for(&frame, member.outbox.deflate()));
        }
        false
    }

    /// Sends more of member `key`'s replay, now that its connection (on
    /// `worker`) has written out what it had; true while some is left.
    pub(crate) fn continue_replay(&self, worker: usize, key: usize) -> bool {
        {
            let mut members = self.shard(worker);
            let Some(member) = members.get_mut(key) else {
                return false;
            };
            match member.replay.as_deref() {
                None => return false,
                Some(replay) if replay.fetching => return true,
                Some(_) => {}
            }
            if !member.pace_replay(&self.name) {
                return true;
            }
        }
        // Over: the member list needs every shard, so the order lock first.
        let order = lock(&self.order);
        let mut members = self.shard(worker);
        self.pace_replay(&order, worker, &mut members, key)
    }

    /// This node's member list: one entry per nickname and user (a user's
    /// two tabs count twice in one entry; two users who share a nickname
    /// are two entries). `held` is a shard the caller has locked already.
    fn list_members(&self, _order: &Order, held: Option<(usize, &Slab<Member>)>) -> Vec<ListedMember> {
        let mut nicks: BTreeMap<(Arc<str>, Option<Arc<str>>), usize> = BTreeMap::new();
        let mut count = |members: &Slab<Member>| {
            for (_, member) in members.iter() {
                *nicks.entry((member.nick(), member.user())).or_default() += 1;
            }
        };
        for worker in 0..self.shards.len() {
            match held {
                Some((held, members)) if held == worker => count(members),
                _ => count(&self.shard(worker)),
            }
        }
        nicks
            .into_iter()
            .map(|((nick, user), connections)| ListedMember {
                nick: nick.to_string(),
                user: user.as_deref().map(str::to_owned),
                connections,
            })
            .collect()
    }

    /// This node's member list as a `presence` frame.
    pub fn presence_frame(&self) -> Bytes {
        let order = lock(&self.order);
        presence_frame(&self.name, self.list_members(&order, None))
    }

    /// Removes member `key` of `worker`, telling the others; returns how
    /// many members remain.
    pub(crate) fn remove(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize) -> usize {
        let mut order = lock(&self.order);
        let removed = self.shard(worker).try_remove(key);
        if let Some(member) = removed {
            order.members[worker] -= 1;
            let info = member.info();
            match member.mode {
                Mode::Raw => order.raw -= 1,
                Mode::Pusher | Mode::PusherPresence => {
                    order.pusher -= 1;
                    let user = info.user.as_ref().filter(|_| member.mode == Mode::PusherPresence);
                    let last = user.filter(|user| order.users.remove(user));
                    // A cluster's user leaves when the broker says so.
                    if let Some(user) = last.filter(|_| !hub.clustered()) {
                        hub.occupancy_events().user_removed(&self.name, user);
                        let forms = Forms {
                            pusher: Some(pusher::member_removed(&self.name, user)),
                            ..Forms::default()
                        };
                        self.fan_out(hub, &order, forms);
                    }
                }
                Mode::Json => {}
            }
            self.count_changed(hub, &order);
            hub.broker().left(&self.name, &info);
            let left = ServerFrame::Left {
                room: self.name.to_string(),
                nick: info.nick.to_string(),
                user: info.user.as_deref().map(str::to_owned),
            };
            self.announce(hub, &order, &left, 0);
        }
        order.total()
    }

    /// Changes a member's nickname, telling the others (as left + joined,
    /// which keeps every client's member list right without a new event).
    pub(crate) fn rename(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, nick: Arc<str>) {
        let order = lock(&self.order);
        let (old, new) = {
            let mut members = self.shard(worker);
            let Some(member) = members.get_mut(key) else { return };
            let old = member.info();
            member.rename(nick);
            (old, member.info())
        };
        let broker = hub.broker();
        broker.left(&self.name, &old);
        broker.joined(&self.name, &new);
        let room = self.name.to_string();
        let user = new.user.as_deref().map(str::to_owned);
        let left = ServerFrame::Left {
            room: room.clone(),
            nick: old.nick.to_string(),
            user: user.clone(),
        };
        self.announce(hub, &order, &left, 0);
        let joined = ServerFrame::Joined {
            room,
            nick: new.nick.to_string(),
            user,
        };
        self.announce(hub, &order, &joined, 0);
    }

    /// Publishes a message from the raw member `key` of `worker`: verbatim
    /// to raw members; text is also stored and sent as JSON, under the
    /// sender's nickname, to `wshub.v1` members.
    pub fn publish_raw(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, message: &Message) {
        let order = lock(&self.order);
        // The nickname is looked up here rather than kept by the connection:
        // a raw connection then carries no copy of its own.
        let (nick, user) = {
            let members = self.shard(worker);
            members
                .get(key)
                .map_or_else(|| (Arc::from(""), None), |m| (m.nick(), m.user()))
        };
        let body = match message.kind() {
            MessageKind::Binary => Body::Binary(message.payload()),
            MessageKind::Text => Body::Text(std::str::from_utf8(message.payload()).unwrap_or_default()),
        };
        let publication = Publication {
            nick: &nick,
            user: user.as_ref(),
            body,
            client_ref: None,
            event: None,
            except: 0,
        };
        let raw = Some(message.frame().clone());
        self.order_and_deliver(hub, order, publication, raw);
    }

    /// Publishes a message from a `wshub.v1` client: stored, then sent as
    /// JSON (with the sender's `ref`) and as plain text to raw members.
    pub fn publish_text(
        self: &Arc<Self>,
        hub: &Hub,
        nick: &Arc<str>,
        user: Option<&Arc<str>>,
        text: &str,
        client_ref: Option<String>,
    ) {
        let order = lock(&self.order);
        let raw = (order.raw > 0).then(|| encode_frame(OpCode::Text, text.as_bytes()));
        let publication = Publication {
            nick,
            user,
            body: Body::Text(text),
            client_ref: client_ref.as_deref(),
            event: None,
            except: 0,
        };
        self.order_and_deliver(hub, order, publication, raw);
    }

    /// Publishes a named event (the Pusher HTTP API's): stored and sent in
    /// every form, except to the connection whose sealed name is `except`
    /// (Pusher's `socket_id` exclusion, on whichever node it is; 0: none).
    pub(crate) fn publish_event(
        self: &Arc<Self>,
        hub: &Hub,
        sender: &Arc<str>,
        event: &Arc<str>,
        data: &str,
        except: u64,
    ) {
        let order = lock(&self.order);
        let publication = Publication {
            nick: sender,
            user: None,
            body: Body::Text(data),
            client_ref: None,
            event: Some(event),
            except,
        };
        self.order_and_deliver(hub, order, publication, None);
    }

    /// Relays a Pusher client event (`json`, the frame's text) to the
    /// room's other Pusher members on every node: not stored, not
    /// numbered, not sent to its sender (member `key` of `worker`, whose
    /// sealed name travels with it so that its own node leaves it out).
    pub(crate) fn relay(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, json: &str) {
        let order = lock(&self.order);
        let Some(except) = self.shard(worker).get(key).map(Member::conn) else {
            return;
        };
        let publication = Publication {
            nick: &self.name,
            user: None,
            body: Body::Signal(json.as_bytes()),
            client_ref: None,
            event: None,
            except: super::sealed::seal(except),
        };
        if let Ordered::Later = hub.broker().publish(&self.name, publication) {
            return;
        }
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        let forms = Forms {
            pusher: Some(encode_frame(OpCode::Text, json.as_bytes())),
            except,
            ..Forms::message()
        };
        self.fan_out(hub, &order, forms);
    }

    /// What the Pusher HTTP API tells of the channel: its subscriptions (all
    /// members, whatever protocol) and its users (presence channels).
    pub fn channel_info(&self) -> ChannelInfo {
        let order = lock(&self.order);
        ChannelInfo {
            subscriptions: order.total(),
            users: order.users.len(),
        }
    }

    /// Sends every member on this node `frame` (JSON text), then asks its
    /// connection to close; how many there were.
    pub(crate) fn close_members(&self, frame: &str, close: CloseRequest) -> usize {
        let outboxes: Vec<Arc<Outbox>> = {
            let _order = lock(&self.order);
            (0..self.shards.len())
                .flat_map(|worker| {
                    self.shard(worker)
                        .iter()
                        .map(|(_, m)| m.outbox.clone())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let bytes = encode_frame(OpCode::Text, frame.as_bytes());
        for outbox in &outboxes {
            let _ = outbox.push(bytes.clone());
            outbox.request_close(close.clone());
        }
        outboxes.len()
    }

    /// A presence channel's user ids on this node.
    pub fn user_ids(&self) -> Vec<Arc<str>> {
        lock(&self.order).users.ids()
    }

    /// Has the broker order `publication` and delivers it now if it was
    /// ordered here (or cannot be carried: then on this node, unnumbered).
    fn order_and_deliver(
        self: &Arc<Self>,
        hub: &Hub,
        mut order: MutexGuard<'_, Order>,
        publication: Publication<'_>,
        raw: Option<Bytes>,
    ) {
        let except = excluded_here(publication.except);
        let client_ref = publication.client_ref.map(str::to_owned);
        let text = match publication.body {
            Body::Text(text) => Some(text),
            Body::Binary(_) | Body::Signal(_) => None,
        };
        let (nick, user) = (publication.nick.clone(), publication.user.cloned());
        let event = publication.event.cloned();
        let forms = match hub.broker().publish(&self.name, publication) {
            Ordered::Later => return,
            Ordered::Now(Some(entry)) => {
                order.last_delivered = order.last_delivered.max(entry.id);
                self.entry_forms(&order, &entry, client_ref, raw)
            }
            Ordered::Now(None) => Forms {
                raw,
                ..Forms::message()
            },
            Ordered::LocalOnly => match text {
                Some(text) => {
                    let entry = local_entry(nick, user, event, Arc::from(text));
                    self.entry_forms(&order, &entry, client_ref, raw)
                }
                None => Forms {
                    raw,
                    ..Forms::message()
                },
            },
        };
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        self.fan_out(hub, &order, Forms { except, ..forms });
    }

    /// The forms of `entry` for the members the room has (`raw`: the raw
    /// form when the caller has it already, the sender's own frame).
    fn entry_forms(&self, order: &Order, entry: &Entry, client_ref: Option<String>, raw: Option<Bytes>) -> Forms {
        let local = entry.id == 0;
        Forms {
            id: entry.id,
            raw: raw.or_else(|| (order.raw > 0).then(|| encode_frame(OpCode::Text, entry.text.as_bytes()))),
            json: (order.json() > 0).then(|| message_frame(&self.name, entry, client_ref, local)),
            pusher: (order.pusher > 0).then(|| pusher::entry_frame(&self.name, entry)),
            ..Forms::message()
        }
    }

    /// A message the broker carried, for this node's members, in the room's
    /// order (a repeated id is dropped).
    pub(crate) fn deliver(self: &Arc<Self>, hub: &Hub, delivery: Delivery) {
        let mut order = lock(&self.order);
        let forms = match delivery {
            Delivery::Text {
                entry,
                client_ref,
                except,
            } => {
                if entry.id <= order.last_delivered {
                    return;
                }
                order.last_delivered = entry.id;
                Forms {
                    except: excluded_here(except),
                    ..self.entry_forms(&order, &entry, client_ref, None)
                }
            }
            Delivery::LocalText {
                nick,
                user,
                event,
                text,
                client_ref,
                except,
            } => Forms {
                except: excluded_here(except),
                ..self.entry_forms(&order, &local_entry(nick, user, event, text), client_ref, None)
            },
            Delivery::Binary(payload) => Forms {
                raw: Some(encode_frame(OpCode::Binary, &payload)),
                ..Forms::message()
            },
            Delivery::Signal { payload, except } => {
                if order.pusher == 0 {
                    return;
                }
                Forms {
                    pusher: Some(encode_frame(OpCode::Text, &payload)),
                    except: excluded_here(except),
                    ..Forms::message()
                }
            }
        };
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        self.fan_out(hub, &order, forms);
    }

    /// A member joined or left, as the broker recorded it: Pusher members
    /// hear of a presence user's first connection and its last in the
    /// cluster (wherever they are), JSON members of another node's member.
    pub(crate) fn presence_changed(self: &Arc<Self>, hub: &Hub, change: PresenceChange) {
        let order = lock(&self.order);
        if let Some(counts) = change.counts {
            self.tell_count(hub, &order, counts.subscriptions);
        }
        let user = change.user.as_deref().filter(|_| change.presence);
        if let (Some(counts), Some(user)) = (change.counts, user) {
            let frame = match (change.joined, counts.user_connections) {
                (true, 1) => Some(pusher::member_added(&self.name, user, &change.nick)),
                (false, 0) => Some(pusher::member_removed(&self.name, user)),
                _ => None,
            };
            if let Some(frame) = frame.filter(|_| order.pusher > 0) {
                let forms = Forms {
                    pusher: Some(frame),
                    except: if change.local { change.conn } else { 0 },
                    ..Forms::default()
                };
                self.fan_out(hub, &order, forms);
            }
        }
        if change.local {
            return;
        }
        let room = self.name.to_string();
        let event = if change.joined {
            ServerFrame::Joined {
                room,
                nick: change.nick,
                user: change.user,
            }
        } else {
            ServerFrame::Left {
                room,
                nick: change.nick,
                user: change.user,
            }
        };
        self.announce(hub, &order, &event, 0);
    }

    /// Sends `outbox` the room's member list: the cluster's when the broker
    /// has one, else this node's.
    pub(crate) fn send_members(self: &Arc<Self>, hub: &Hub, outbox: Arc<Outbox>) {
        let room = self.clone();
        let reply = outbox.clone();
        let then = Box::new(move |listed: Option<Vec<ListedMember>>| {
            let frame = match listed {
                Some(list) => presence_frame(&room.name, list),
                None => room.presence_frame(),
            };
            let _ = reply.push(frame);
        });
        if !hub.broker().members(&self.name, then) {
            let _ = outbox.push(self.presence_frame());
        }
    }

    /// Sends `outbox` the part of the room's history asked for.
    pub(crate) fn send_history(&self, hub: &Hub, outbox: Arc<Outbox>, span: Span) {
        let room = self.name.clone();
        let then = Box::new(move |replayed: crate::broker::Replayed| {
            frames::push_replay(&outbox, &room, &replayed.entries, replayed.truncated);
        });
        hub.broker().history(&self.name, span, then);
    }

    /// The last id delivered on this node (0: none yet).
    pub(crate) fn last_delivered(&self) -> u64 {
        lock(&self.order).last_delivered
    }

    /// This node's members, as a broker re-registers them.
    pub(crate) fn member_infos(&self) -> Vec<crate::broker::MemberInfo> {
        let _order = lock(&self.order);
        let mut infos = Vec::new();
        for worker in 0..self.shards.len() {
            infos.extend(self.shard(worker).iter().map(|(_, m)| m.info()));
        }
        infos
    }

    /// JSON members' outboxes (for hub-wide notices).
    pub(crate) fn json_outboxes(&self) -> Vec<Arc<Outbox>> {
        let mut outboxes = Vec::new();
        for worker in 0..self.shards.len() {
            let members = self.shard(worker);
            let json = members.iter().filter(|(_, m)| m.mode == Mode::Json);
            outboxes.extend(json.map(|(_, m)| m.outbox.clone()));
        }
        outboxes
    }
}

/// What a Pusher member's fetch brings besides its replay.
#[derive(Debug, Clone, Copy)]
struct AfterFetch {
    /// The cluster's member list, for the presence subscriber's
    /// `subscription_succeeded`.
    members: bool,
    /// A cache channel's last event (or its miss), sent after the list.
    cached: bool,
}

/// The connection of this node that a sealed name (0: none) leaves out; 0
/// when it is another node's.
fn excluded_here(sealed: u64) -> u64 {
    match sealed {
        0 => 0,
        sealed => super::sealed::open(sealed).unwrap_or(0),
    }
}

/// A message delivered on this node only (the broker could not carry it):
/// id 0, not in the shared history (its `wshub.v1` form is marked `local`).
fn local_entry(nick: Arc<str>, user: Option<Arc<str>>, event: Option<Arc<str>>, text: Arc<str>) -> Entry {
    Entry {
        id: 0,
        ts: crate::history::clock::unix_millis(),
        nick,
        user,
        text,
        event,
    }
}

/// A channel as the Pusher HTTP API describes it (this node's part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Members, whatever protocol they speak.
    pub subscriptions: usize,
    /// Distinct users of a presence channel (0 on others).
    pub users: usize,
}

impl ChannelInfo {
    /// The counts of a member list (the cluster's, from the broker).
    pub(crate) fn of_members(listed: &[ListedMember]) -> ChannelInfo {
        let users: std::collections::BTreeSet<&str> = listed.iter().filter_map(|m| m.user.as_deref()).collect();
        ChannelInfo {
            subscriptions: listed.iter().map(|m| m.connections).sum(),
            users: users.len(),
        }
    }
}

/// A connection's place in a room; dropping it leaves the room.
#[derive(Debug)]
pub struct Membership {
    hub: Hub,
    room: Arc<Room>,
    /// The worker whose shard holds the member (u32: the membership is
    /// kept by every raw connection, and two u32 fit where one usize did).
    worker: u32,
    key: u32,
}

impl Membership {
    pub(crate) fn new(hub: Hub, room: Arc<Room>, (worker, key): (usize, usize)) -> Self {
        let narrow = |n: usize| u32::try_from(n).expect("fewer than 4 billion members and workers");
        Membership {
            hub,
            room,
            worker: narrow(worker),
            key: narrow(key),
        }
    }

    fn place(&self) -> (usize, usize) {
        (self.worker as usize, self.key as usize)
    }

    /// The room joined.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Publishes a raw client's message (see [`Room::publish_raw`]).
    pub fn publish_raw(&self, message: &Message) {
        let (worker, key) = self.place();
        self.room.publish_raw(&self.hub, worker, key, message);
    }

    /// Publishes a `wshub.v1` message (see [`Room::publish_text`]).
    pub fn publish_text(&self, nick: &Arc<str>, user: Option<&Arc<str>>, text: &str, client_ref: Option<String>) {
        self.room.publish_text(&self.hub, nick, user, text, client_ref);
    }

    /// Relays a Pusher client event (its frame's JSON) to the room's other
    /// Pusher members (see [`Room::relay`]).
    pub fn relay(&self, json: &str) {
        let (worker, key) = self.place();
        self.room.relay(&self.hub, worker, key, json);
    }

    /// Sends more of this member's replay, if one is being paced out; true
    /// while some is left (see [`Room::continue_replay`]).
    pub fn continue_replay(&self) -> bool {
        let (worker, key) = self.place();
        self.room.continue_replay(worker, key)
    }

    /// Changes this member's nickname in the room.
    pub fn rename(&self, nick: Arc<str>) {
        let (worker, key) = self.place();
        self.room.rename(&self.hub, worker, key, nick);
    }

    /// Sends `outbox` the room's member list (the cluster's, with Redis).
    pub fn send_members(&self, outbox: Arc<Outbox>) {
        self.room.send_members(&self.hub, outbox);
    }

    /// Sends `outbox` the part of the room's history asked for.
    pub fn send_history(&self, outbox: Arc<Outbox>, span: Span) {
        self.room.send_history(&self.hub, outbox, span);
    }

    /// The hub this membership belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let (worker, key) = self.place();
        self.hub.leave(&self.room, worker, key);
    }
}
