//! Members coming and going: joins with their replay, leaves, renames,
//! and the presence the broker reports.

use std::sync::Arc;

use slab::Slab;

use super::{Order, Room};
use crate::broker::{MemberInfo, PresenceChange, Span};
use crate::hub::frames::{presence_frame, text_frame};
use crate::hub::inbox::Forms;
use crate::hub::member::{Member, Mode, Replay, Replaying};
use crate::hub::pusher::{self, Users};
use crate::hub::{lock, Hub, Outbox};
use crate::protocol::v1::ServerFrame;

impl Room {
    /// Adds a member on the calling worker; a JSON member first gets the
    /// replay and the member list, and the others are told. The replay is
    /// taken under the order lock, so nothing published meanwhile can slip
    /// between it and the live messages.
    pub(crate) fn insert(self: &Arc<Self>, hub: &Hub, member: Member, replay: Replay) -> (usize, usize) {
        let worker = hub.current_worker().unwrap_or(0);
        // What was published before this join reaches the worker's members
        // before the joiner is one of them.
        let mut order = self.caught_up(hub);
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
        order.members_changed();
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
            let (room, later, conn) = (self.clone(), hub.clone(), info.conn);
            let then = Box::new(move |replayed| room.replay_fetched(&later, worker, key, conn, replayed, after));
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
    ///
    /// `conn` names the member the answer is for: if it left meanwhile, its
    /// slab `key` may already hold a later joiner, waiting for its own.
    fn replay_fetched(
        &self,
        hub: &Hub,
        worker: usize,
        key: usize,
        conn: u64,
        replayed: crate::broker::Replayed,
        after: AfterFetch,
    ) {
        let mut order = lock(&self.order);
        order.newest_replayed = order.newest_replayed.max(replayed.entries.last().map_or(0, |e| e.id));
        let mut members = self.shard(worker);
        if members
            .get(key)
            .is_some_and(|m| m.conn() == conn && m.replay.as_ref().is_some_and(|r| r.fetching))
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
        if let Some(listed) = member.list_due() {
            let frame = match listed {
                Some(list) => presence_frame(&self.name, list),
                None => self.listing(order, Some((worker, members))),
            };
            let _ = members[key].outbox.push(frame);
        }
        !members[key].pace_backlog()
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

    /// Removes member `key` of `worker`, telling the others; returns how
    /// many members remain (none: the room is closed, see `Order::closed`).
    pub(crate) fn remove(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize) -> usize {
        let mut order = lock(&self.order);
        let removed = self.shard(worker).try_remove(key);
        if let Some(member) = removed {
            order.members_changed();
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
        // The caller holds the hub's map and takes the room out of it.
        order.closed = order.total() == 0;
        order.total()
    }

    /// Changes a member's nickname, telling the others (as left + joined,
    /// which keeps every client's member list right without a new event).
    pub(crate) fn rename(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, nick: Arc<str>) {
        let mut order = lock(&self.order);
        let (old, new) = {
            let mut members = self.shard(worker);
            let Some(member) = members.get_mut(key) else { return };
            let old = member.info();
            member.rename(nick);
            (old, member.info())
        };
        order.members_changed();
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
