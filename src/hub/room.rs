//! A room: its members' outboxes, and fan-out in one order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use slab::Slab;

use super::{lock, Hub};
use crate::connection::{Outbox, Rejected};

/// A room's name. `/ws` is the room `lobby`.
pub type RoomName = Arc<str>;

/// A set of members that receive every frame published to the room.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    members: Mutex<Slab<Arc<Outbox>>>,
}

impl Room {
    pub(crate) fn new(name: RoomName) -> Self {
        Room {
            name,
            members: Mutex::new(Slab::new()),
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

    pub(crate) fn insert(&self, outbox: Arc<Outbox>) -> usize {
        lock(&self.members).insert(outbox)
    }

    /// Removes a member, returning how many remain.
    pub(crate) fn remove(&self, key: usize) -> usize {
        let mut members = lock(&self.members);
        members.try_remove(key);
        members.len()
    }

    /// Queues `frame` to every member, the sender included.
    ///
    /// The room's lock is held while queueing (never while writing), so all
    /// members see the room's messages in one order. Returns how many members
    /// this publish evicted.
    pub fn publish(&self, hub: &Hub, frame: &Bytes) -> usize {
        let members = lock(&self.members);
        let mut evicted = 0;
        for (_, outbox) in members.iter() {
            if outbox.push(frame.clone()) == Err(Rejected::Overflow) {
                evicted += 1;
            }
        }
        let delivered = members.len() as u64;
        drop(members);
        let stats = hub.stats();
        stats.published.fetch_add(1, Ordering::Relaxed);
        stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        evicted
    }
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

    /// Publishes `frame` to the room (see [`Room::publish`]).
    pub fn publish(&self, frame: &Bytes) -> usize {
        self.room.publish(&self.hub, frame)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(&self.room, self.key);
    }
}
