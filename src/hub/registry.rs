//! Every live WebSocket connection, whatever its endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use slab::Slab;
use tokio::sync::Notify;

use super::alarms::{self, Alarm, Clock, Nudge, SweeperState};
use super::{lock, Hub, WeakHub};
use super::{CloseRequest, Outbox};
use crate::protocol::Endpoint;

/// One live connection: its outbox (shutdown and metrics reach it there)
/// and its alarm.
#[derive(Debug)]
struct Entry {
    outbox: Arc<Outbox>,
    alarm: Alarm,
}

#[derive(Debug, Default)]
struct Connections {
    entries: Slab<Entry>,
    sweeper: SweeperState,
}

/// One worker's connections and their alarms: a connection arms its alarm
/// on its own worker, and each worker has its own sweeper task, so no lock
/// or timer is shared between workers on the hot path.
#[derive(Debug, Default)]
struct Shard {
    connections: Mutex<Connections>,
    /// Wakes the sweeper when an alarm is set before its next sweep.
    nudge: Arc<Notify>,
}

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    clock: Clock,
    /// Minimum milliseconds between sweeps.
    precision: u64,
    reserved: AtomicUsize,
    /// Live connections of each endpoint, in [`Endpoint::index`] order.
    by_endpoint: [AtomicUsize; 4],
    max: usize,
}

impl Registry {
    pub(crate) fn new(max: usize, precision: std::time::Duration, workers: usize) -> Self {
        Registry {
            shards: (0..workers.max(1)).map(|_| Shard::default()).collect(),
            clock: Clock::new(),
            precision: u64::try_from(precision.as_millis()).unwrap_or(u64::MAX / 2).max(1),
            reserved: AtomicUsize::new(0),
            by_endpoint: Default::default(),
            max,
        }
    }

    pub(crate) fn reserve(&self, hub: Hub, endpoint: Endpoint, worker: usize) -> Option<Ticket> {
        let taken = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        taken.ok()?;
        self.counter(endpoint).fetch_add(1, Ordering::Relaxed);
        Some(Ticket {
            hub,
            key: UNREGISTERED,
            worker: u16::try_from(worker).expect("at most 65,535 workers"),
            endpoint,
            ip_counted: false,
        })
    }

    fn counter(&self, endpoint: Endpoint) -> &AtomicUsize {
        &self.by_endpoint[endpoint.index()]
    }

    pub(crate) fn count(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Live connections of each endpoint, in [`Endpoint::index`] order.
    pub(crate) fn counts(&self) -> [usize; 4] {
        self.by_endpoint
            .each_ref()
            .map(|counter| counter.load(Ordering::Relaxed))
    }

    /// (total, longest) frames queued over all outboxes.
    pub(crate) fn queue_depth(&self) -> (usize, usize) {
        // Collect first, as `close_all` does: no outbox lock is taken under
        // the registry's lock.
        let outboxes = self.outboxes();
        outboxes
            .iter()
            .map(|o| o.queued())
            .fold((0, 0), |(sum, max), n| (sum + n, max.max(n)))
    }

    fn outboxes(&self) -> Vec<Arc<Outbox>> {
        let mut outboxes = Vec::new();
        for shard in &self.shards {
            let connections = lock(&shard.connections);
            outboxes.extend(connections.entries.iter().map(|(_, e)| e.outbox.clone()));
        }
        outboxes
    }

    /// Live connections on each worker.
    pub(crate) fn per_worker(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|shard| lock(&shard.connections).entries.len())
            .collect()
    }

    /// The clock that deadlines and alarms use.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// One sweep of `worker`'s connections at `now`: wakes those whose alarm
    /// is due and says when to sweep next (`None`: none left, stop).
    fn sweep(&self, worker: usize, now: u64, wakers: &mut Vec<Waker>) -> Option<u64> {
        let mut connections = lock(&self.shards[worker].connections);
        let mut next = None;
        for (_, entry) in connections.entries.iter_mut() {
            if let Some(waker) = entry.alarm.take_if_due(now, &mut next) {
                wakers.push(waker);
            }
        }
        let empty = connections.entries.is_empty();
        connections.sweeper.swept(now, next, self.precision, empty)
    }

    pub(crate) fn close_all(&self, request: CloseRequest) {
        // Collect first: closing wakes tasks, and none of that belongs under
        // the registry's lock.
        for outbox in self.outboxes() {
            outbox.request_close(request.clone());
        }
    }
}

/// A reserved connection slot; dropping it (a failed upgrade) frees it.
///
/// It also carries what its [`Registration`] needs (16 bytes in all, kept
/// by every connection for its whole life).
#[derive(Debug)]
pub struct Ticket {
    hub: Hub,
    /// The registry entry, once registered.
    key: u32,
    /// The worker the connection runs on (its registry shard).
    worker: u16,
    endpoint: Endpoint,
    /// Whether the connection counts against its address's limit
    /// (`--max-connections-per-ip`), to be released when it ends.
    ip_counted: bool,
}

/// `Ticket::key` before registration.
const UNREGISTERED: u32 = u32::MAX;

impl Ticket {
    /// The endpoint this slot was reserved for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Registers the upgraded connection's outbox, so shutdown reaches it.
    pub fn register(mut self, outbox: Arc<Outbox>) -> Registration {
        let entry = Entry {
            outbox,
            alarm: Alarm::default(),
        };
        let shard = &self.hub.registry().shards[usize::from(self.worker)];
        let key = lock(&shard.connections).entries.insert(entry);
        // A slab key is below the number of live connections, which the
        // open-files limit keeps far below `u32::MAX`.
        self.key = u32::try_from(key).expect("fewer than 4 billion connections");
        Registration { ticket: self }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let registry = self.hub.registry();
        registry.counter(self.endpoint).fetch_sub(1, Ordering::Relaxed);
        registry.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered connection; dropping it unregisters (every way out of a
/// connection's task drops it, so no exit path can leak a slot).
#[derive(Debug)]
pub struct Registration {
    ticket: Ticket,
}

impl Registration {
    /// The hub this connection belongs to.
    pub fn hub(&self) -> &Hub {
        &self.ticket.hub
    }

    /// Which service the connection uses.
    pub fn endpoint(&self) -> Endpoint {
        self.ticket.endpoint
    }

    /// Records that the connection counts against its address's limit.
    pub fn set_ip_counted(&mut self, counted: bool) {
        self.ticket.ip_counted = counted;
    }

    /// Whether the connection counts against its address's limit.
    pub fn ip_counted(&self) -> bool {
        self.ticket.ip_counted
    }

    fn key(&self) -> usize {
        self.ticket.key as usize
    }

    /// The worker the connection runs on.
    pub fn worker(&self) -> usize {
        usize::from(self.ticket.worker)
    }

    /// Asks the hub's sweeper to wake this connection (through `waker`) at
    /// `due` on the hub's clock, replacing the previous alarm.
    pub(crate) fn arm(&self, due: u64, waker: &Waker) {
        let worker = self.worker();
        let shard = &self.hub().registry().shards[worker];
        let nudge = {
            let mut connections = lock(&shard.connections);
            if let Some(entry) = connections.entries.get_mut(self.key()) {
                entry.alarm.set(due, waker);
            }
            connections.sweeper.on_armed(due)
        };
        match nudge {
            Nudge::Nothing => {}
            Nudge::Wake => shard.nudge.notify_one(),
            Nudge::Start => {
                tokio::spawn(sweeper(self.hub().downgrade(), worker));
            }
        }
    }
}

/// A worker's one timer task: wakes its connections whose alarm is due,
/// sleeps until the next one (or a nudge), and ends with the worker's last
/// connection. It holds the hub only while sweeping, never while it sleeps.
async fn sweeper(hub: WeakHub, worker: usize) {
    let mut wakers = Vec::new();
    loop {
        let (clock, at, nudge) = {
            let Some(hub) = hub.upgrade() else { return };
            let registry = hub.registry();
            let Some(at) = registry.sweep(worker, registry.clock.now(), &mut wakers) else {
                return;
            };
            (registry.clock, at, registry.shards[worker].nudge.clone())
        };
        for waker in wakers.drain(..) {
            waker.wake();
        }
        alarms::sleep_until(clock, at, &nudge).await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shard = &self.ticket.hub.registry().shards[self.worker()];
        lock(&shard.connections).entries.try_remove(self.key());
    }
}
