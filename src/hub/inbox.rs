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
//!
//! An inbox is bounded in bytes ([`MAX_INBOX_BYTES`]): a worker that falls
//! that far behind (its thread blocked, or starved) while others publish
//! would otherwise hold every message for as long as it lags. Past the
//! bound a parcel is not queued; the room's members on that worker are
//! evicted as slow consumers when the worker gets to it (they would miss
//! it, and a gap must not pass in silence), and each room is marked once.

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

    /// The bytes its frames hold.
    fn bytes(&self) -> usize {
        [&self.raw, &self.json, &self.pusher]
            .into_iter()
            .flatten()
            .map(Bytes::len)
            .sum()
    }
}

/// Bytes of frames an inbox holds at most (see the module's doc): some
/// seconds of a busy worker's traffic.
pub(crate) const MAX_INBOX_BYTES: usize = 64 << 20;

/// What one worker is to push to its members of one room.
#[derive(Debug)]
pub(crate) struct Parcel {
    pub(crate) room: Arc<Room>,
    pub(crate) forms: Forms,
    /// Not queued (the inbox was full): the room's members here are
    /// evicted instead.
    lost: bool,
}

impl Parcel {
    pub(crate) fn new(room: Arc<Room>, forms: Forms) -> Self {
        Parcel {
            room,
            forms,
            lost: false,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    parcels: Vec<Parcel>,
    bytes: usize,
}

/// A worker's queue of parcels from other threads.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    /// Wakes the worker's inbox task; one wake per batch, not per parcel.
    arrived: Notify,
}

impl Inbox {
    /// Queues `parcel` for `worker`; false when it took nothing (the
    /// inbox is full and the room already marked lost there).
    pub(crate) fn push(&self, worker: usize, mut parcel: Parcel) -> bool {
        let mut queue = lock(&self.queue);
        let bytes = parcel.forms.bytes();
        if queue.bytes + bytes > MAX_INBOX_BYTES {
            if !parcel.room.mark_lost(worker) {
                return false;
            }
            parcel.forms = Forms::default();
            parcel.lost = true;
        } else {
            queue.bytes += bytes;
        }
        let first = queue.parcels.is_empty();
        queue.parcels.push(parcel);
        drop(queue);
        if first {
            self.arrived.notify_one();
        }
        true
    }

    /// Delivers everything queued, in order, on the worker's own thread.
    pub(crate) fn drain(&self, hub: &Hub, worker: usize) {
        let parcels = {
            let mut queue = lock(&self.queue);
            queue.bytes = 0;
            std::mem::take(&mut queue.parcels)
        };
        for parcel in parcels {
            if parcel.lost {
                parcel.room.lost_here(worker);
            } else {
                parcel.room.deliver_here(hub, worker, &parcel.forms);
            }
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
