//! What a room tells of itself: member lists, counts, history, and the
//! outboxes hub-wide notices and closes go to.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use slab::Slab;

use super::{Order, Room};
use crate::broker::{ListedMember, Span};
use crate::hub::frames::{self, presence_frame};
use crate::hub::member::{Member, Mode};
use crate::hub::{lock, Hub, Outbox};

impl Room {
    /// This node's member list: one entry per nickname and user (a user's
    /// two tabs count twice in one entry; two users who share a nickname
    /// are two entries). `held` is a shard the caller has locked already.
    pub(super) fn list_members(&self, _order: &Order, held: Option<(usize, &Slab<Member>)>) -> Vec<ListedMember> {
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
        self.listing(&lock(&self.order), None)
    }

    /// [`Room::presence_frame`] under the order lock, encoded once for as
    /// long as the members stay as they are: listing a room of thousands
    /// takes milliseconds, and a client may ask for it fifty times a
    /// second, in as many rooms; asked again, it costs only its bytes.
    pub(super) fn listing(&self, order: &Order, held: Option<(usize, &Slab<Member>)>) -> Bytes {
        order
            .listing
            .get_or_init(|| presence_frame(&self.name, self.list_members(order, held)))
            .clone()
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

    /// A presence channel's user ids on this node.
    pub fn user_ids(&self) -> Vec<Arc<str>> {
        lock(&self.order).users.ids()
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
        // Read after the worker's inbox: a message ordered on another
        // worker is not in an answer before its live copy (which would
        // then come as a repeat).
        let order = self.caught_up(hub);
        if !hub.broker().members(&self.name, then) {
            let _ = outbox.push(self.listing(&order, None));
        }
    }

    /// Sends `outbox` the part of the room's history asked for.
    pub(crate) fn send_history(&self, hub: &Hub, outbox: Arc<Outbox>, span: Span) {
        let room = self.name.clone();
        let then = Box::new(move |replayed: crate::broker::Replayed| {
            frames::push_replay(&outbox, &room, &replayed);
        });
        let _order = self.caught_up(hub);
        hub.broker().history(&self.name, span, then);
    }

    /// The newest id this node's members have, delivered live or in a
    /// replay (0: none yet): where a catch-up after a lost link starts.
    pub(crate) fn last_seen(&self) -> u64 {
        let order = lock(&self.order);
        order.last_delivered.max(order.newest_replayed)
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
