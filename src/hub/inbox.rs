//! How a room's message crosses to another worker: once per worker that
//! has members, not once per member.
//!
//! A publish is ordered once (under the room's order lock), and one
//! [`Parcel`] holding the frames, encoded once, goes into the inbox of each
//! worker with members in the room; that worker's inbox task pushes the
//! frames to its own members. Inboxes are first in, first out, and a room's
//! parcels are queued under the room's order lock, so every worker hands
//! out a room's messages in the one order, and every member sees it.
//!
//! A worker delivering to its own members skips its inbox when it holds
//! nothing of the room (`Shard::pending`), so a room on one worker costs
//! what it did before there were workers.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::room::Room;
use super::{lock, Hub};

/// The frames of one message (or event) for one room, in each form.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forms {
    /// The message's id (0: none), so that a member being replayed can
    /// drop what its replay already holds.
    pub(crate) id: u64,
    /// For raw members; `None` skips them.
    pub(crate) raw: Option<Bytes>,
    /// For `wshub.v1` members; `None` skips them.
    pub(crate) json: Option<Bytes>,
    /// For Pusher members; `None` skips them.
    pub(crate) pusher: Option<Bytes>,
    /// The member (its connection number) that does not get it: a joiner is
    /// not told of its own arrival. 0: none.
    pub(crate) except: u64,
    /// A message (counted as delivered), not an event.
    pub(crate) message: bool,
}

impl Forms {
    /// The forms of a message, to be filled in.
    pub(crate) fn message() -> Self {
        Forms {
            message: true,
            ..Forms::default()
        }
    }
}

/// What one worker is to push to its members of one room.
#[derive(Debug)]
pub(crate) struct Parcel {
    pub(crate) room: Arc<Room>,
    pub(crate) forms: Forms,
}

/// A worker's queue of parcels from other threads.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    parcels: Mutex<Vec<Parcel>>,
    /// Wakes the worker's inbox task; one wake per batch, not per parcel.
    arrived: Notify,
}

impl Inbox {
    pub(crate) fn push(&self, parcel: Parcel) {
        let mut parcels = lock(&self.parcels);
        let first = parcels.is_empty();
        parcels.push(parcel);
        drop(parcels);
        if first {
            self.arrived.notify_one();
        }
    }

    /// Delivers everything queued, in order, on the worker's own thread.
    pub(crate) fn drain(&self, hub: &Hub, worker: usize) {
        let parcels = std::mem::take(&mut *lock(&self.parcels));
        for parcel in parcels {
            parcel.room.deliver_here(hub, worker, &parcel.forms);
        }
    }

    /// The worker's inbox task: delivers batches as they arrive, for as
    /// long as the worker's runtime runs.
    pub(crate) async fn run(hub: Hub, worker: usize) {
        let inbox = hub.inbox(worker).clone();
        loop {
            inbox.arrived.notified().await;
            inbox.drain(&hub, worker);
        }
    }
}
