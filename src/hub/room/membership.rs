//! A connection's handle on its room.

use std::sync::Arc;

use super::Room;
use crate::broker::Span;
use crate::hub::{Hub, Outbox};
use crate::protocol::Message;

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
    /// Pusher members (see `Room::relay`).
    pub fn relay(&self, json: &str) {
        let (worker, key) = self.place();
        self.room.relay(&self.hub, worker, key, json);
    }

    /// Sends more of this member's replay, if one is being paced out; true
    /// while some is left (see `Room::continue_replay`).
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
