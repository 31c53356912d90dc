//! Which worker thread the caller is on.
//!
//! A hub's connections are spread over its workers, each a thread with a
//! current-thread runtime of its own. A connection is placed on the worker
//! whose thread accepted it, and everything the hub keeps per worker (room
//! shards, registry shard, alarm sweeper) is reached through the index the
//! thread was given when it started.

use std::cell::Cell;

thread_local! {
    /// (the hub's identity, the worker's index) of the worker this thread
    /// is, if it is one.
    static CURRENT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// Marks the calling thread as worker `index` of the hub `hub_id`.
pub(crate) fn enter(hub_id: usize, index: usize) {
    CURRENT.with(|current| current.set(Some((hub_id, index))));
}

/// The worker of hub `hub_id` that the calling thread is, if it is one.
pub(crate) fn current(hub_id: usize) -> Option<usize> {
    CURRENT.with(|current| match current.get() {
        Some((id, index)) if id == hub_id => Some(index),
        _ => None,
    })
}
