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
//!
//! This file holds the room and its fan-out; `join` the members coming
//! and going (with their replays), `publish` the messages going in,
//! `listing` what the room tells of itself, `membership` a connection's
//! handle on it.

mod join;
mod listing;
mod membership;
mod publish;

pub use listing::ChannelInfo;
pub use membership::Membership;

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use slab::Slab;

use super::frames::text_frame;
use super::inbox::{Forms, Parcel};
use super::member::{Member, Mode};
use super::pusher::Users;
use super::{lock, Hub};
use crate::broker::RoomName;
use crate::protocol::v1::ServerFrame;

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
    /// The newest id a joiner's replay held. Not `last_delivered`: a live
    /// message with a lower id may still be on its way to the others. What
    /// the broker catches up from after losing its link (`last_seen`).
    newest_replayed: u64,
    /// Its last member left, so the hub's map no longer has it: whoever
    /// still holds it (a publish from the HTTP API) must look again, or
    /// the room that replaced it would miss what it publishes.
    closed: bool,
    /// This node's member list as a `presence` frame, once encoded, until
    /// the members change (a join, a leave, a rename: see
    /// [`Order::members_changed`]).
    listing: OnceCell<Bytes>,
}

impl Order {
    /// Whoever adds, removes or renames a member calls this (under the
    /// order lock, as always), so that no stale list is sent.
    fn members_changed(&mut self) {
        self.listing = OnceCell::new();
    }

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
    /// A parcel for this shard did not fit the worker's inbox: its members
    /// are to be evicted (`Inbox::push`); set once until then.
    lost: AtomicBool,
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
                newest_replayed: 0,
                closed: false,
                listing: OnceCell::new(),
            }),
            shards: (0..workers).map(|_| Shard::default()).collect(),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// Whether a presence channel of at most `max_users` users has a place
    /// for `user`: one already in takes no other.
    pub(crate) fn has_place_for(&self, user: &str, max_users: usize) -> bool {
        let order = lock(&self.order);
        order.users.len() < max_users || order.users.contains(user)
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
                if !hub.inbox(worker).push(worker, Parcel::new(self.clone(), forms.clone())) {
                    shard.pending.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// The order lock, once the calling worker has delivered what its
    /// inbox holds of this room: what is read or changed under it (a
    /// joiner's replay, a `history` answer, the member list) then comes
    /// after everything ordered so far has reached this worker's members,
    /// as with one worker.
    fn caught_up(&self, hub: &Hub) -> MutexGuard<'_, Order> {
        let order = lock(&self.order);
        if let Some(worker) = hub.current_worker() {
            if self.shards[worker].pending.load(Ordering::Acquire) > 0 {
                hub.inbox(worker).drain(hub, worker);
            }
        }
        order
    }

    /// Marks this room's shard of `worker` as having missed a parcel;
    /// false when it already was (one mark is enough).
    pub(crate) fn mark_lost(&self, worker: usize) -> bool {
        !self.shards[worker].lost.swap(true, Ordering::AcqRel)
    }

    /// The members of `worker` missed a parcel (their worker fell too far
    /// behind): evicted as slow consumers, told by their close code,
    /// rather than shown a gap.
    pub(crate) fn lost_here(&self, worker: usize) {
        let shard = &self.shards[worker];
        shard.lost.store(false, Ordering::Release);
        let members = self.shard(worker);
        tracing::warn!(
            room = %self.name,
            worker,
            members = members.len(),
            "worker fell behind its inbox's bound: evicting its members of the room"
        );
        for (_, member) in members.iter() {
            member.outbox.evict();
        }
        drop(members);
        shard.pending.fetch_sub(1, Ordering::AcqRel);
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
                member.push(forms.id, frame, forms.message);
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
}
