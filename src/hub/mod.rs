//! The hub: who is connected, which rooms exist, and fan-out to members.
//!
//! Every connection registers here (so shutdown can reach it and
//! `--max-connections` can be enforced); chat connections also join a room.
//! Fan-out pushes one shared encoded frame into each member's bounded
//! [`Outbox`]: a lock per room keeps one order for all receivers, and no lock
//! is ever held across an await or a socket write, so a stalled reader
//! costs the room nothing but its own eviction.

mod alarms;
mod deliver;
mod events;
pub(crate) mod frames;
mod inbox;
mod member;
mod outbox;
pub(crate) mod pusher;
mod registry;
mod room;
pub mod sealed;
mod signed_in;
#[cfg(test)]
mod tests;
mod timeouts;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub(crate) use alarms::Clock;

pub use crate::broker::RoomName;
pub use crate::protocol::Endpoint;
pub use events::{RoomEvents, Unheard};
pub use member::{Member, Mode, Replay};

/// The number a connection is known by while it lives (what a room's
/// events skip their own member by; Pusher socket ids are made from it).
pub fn connection_number(outbox: &Arc<Outbox>) -> u64 {
    member::outbox_id(outbox)
}
pub use outbox::{CloseRequest, Outbox, Rejected};
pub use registry::{Registration, Ticket};
pub use room::{ChannelInfo, Membership, Room};
pub use signed_in::SignedIn;
pub use timeouts::Timeouts;

use crate::broker::Broker;
use crate::history::History;
use crate::metrics::{Metrics, Scrape};
use crate::protocol::IncompleteBudget;
use crate::ratelimit::PerIpLimit;

/// Counters of what happened, for `/healthz` and metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Connections closed because their outbound queue overflowed.
    pub evictions: AtomicU64,
    /// Messages published into rooms.
    pub published: AtomicU64,
    /// Frames queued to members (one per member per published message).
    pub delivered: AtomicU64,
    /// Messages dropped because their sender was over its rate limits.
    pub rate_limited: AtomicU64,
    /// Parcels handed to another worker (one per message per worker with
    /// members in its room, not one per member).
    pub parcels: AtomicU64,
}

/// What the hub needs to know.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Most simultaneous connections (`--max-connections`).
    pub max_connections: usize,
    /// Where chat messages get their ids and are kept.
    pub history: History,
    /// Messages a `wshub.v1` client gets when it joins (`--join-history`).
    pub join_history: usize,
    /// Keepalive and rate limits of every connection.
    pub timeouts: Timeouts,
    /// Bytes all connections' unfinished messages may hold together
    /// (`--max-incomplete-bytes`).
    pub max_incomplete_bytes: usize,
    /// Worker threads the connections are spread over (`--workers`, at
    /// least 1). With one, everything runs where the server runs.
    pub workers: usize,
    /// What orders rooms' messages and carries them to every member: a
    /// `LocalBroker` on the history, or Redis.
    pub broker: Arc<dyn Broker>,
    /// Who hears of rooms' comings and goings (the Pusher webhooks), or
    /// [`Unheard`].
    pub room_events: Arc<dyn RoomEvents>,
}

#[derive(Debug)]
struct Inner {
    registry: registry::Registry,
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
    stats: HubStats,
    history: History,
    join_history: usize,
    timeouts: Timeouts,
    metrics: Metrics,
    broker: Arc<dyn Broker>,
    room_events: Arc<dyn RoomEvents>,
    /// The broker counts the cluster's members: rooms' comings and goings
    /// are reported from its counts (once for the cluster), not from this
    /// node's.
    clustered: bool,
    /// One per worker: parcels of rooms' messages from other threads.
    inboxes: Box<[Arc<inbox::Inbox>]>,
    /// Connections per client address (`--max-connections-per-ip`).
    per_ip: Arc<PerIpLimit>,
    /// Bytes held by unfinished messages (`--max-incomplete-bytes`).
    incomplete: IncompleteBudget,
    /// Connections signed in as a user (Pusher).
    signed_in: signed_in::SignedInUsers,
    workers: usize,
}

/// A cheap-to-clone handle on the hub.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A handle that does not keep the hub alive (for its own timer task).
#[derive(Debug, Clone)]
pub(crate) struct WeakHub(Weak<Inner>);

impl WeakHub {
    pub(crate) fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

/// Live counts, as `/healthz` reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HubSnapshot {
    /// All WebSocket connections.
    pub connections: usize,
    /// Connections on `/echo`.
    pub echo: usize,
    /// Connections on the raw chat endpoints.
    pub chat: usize,
    /// Connections speaking `wshub.v1`.
    pub v1: usize,
    /// Connections speaking Pusher (`/app/{key}`).
    pub pusher: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Connections evicted as slow consumers since start.
    pub evictions: u64,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        let metrics = Metrics::new();
        let observed = metrics.clone();
        config
            .history
            .observe_commits(move |took| observed.history_commit(took));
        let workers = config.workers.max(1);
        Hub {
            inner: Arc::new(Inner {
                registry: registry::Registry::new(config.max_connections, config.timeouts.precision(), workers),
                rooms: Mutex::new(HashMap::new()),
                stats: HubStats::default(),
                history: config.history,
                join_history: config.join_history,
                timeouts: config.timeouts,
                clustered: config.broker.cluster().is_some(),
                broker: config.broker,
                room_events: config.room_events,
                inboxes: (0..workers).map(|_| Arc::default()).collect(),
                metrics,
                per_ip: PerIpLimit::new(0),
                incomplete: IncompleteBudget::new(config.max_incomplete_bytes),
                signed_in: signed_in::SignedInUsers::default(),
                workers,
            }),
        }
    }

    /// Worker threads the connections are spread over.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Marks the calling thread as worker `index` (below [`Hub::workers`]):
    /// each worker thread calls this first thing, before serving anything.
    pub fn enter_worker(&self, index: usize) {
        assert!(index < self.inner.workers, "worker {index} of {}", self.inner.workers);
        worker::enter(self.id(), index);
    }

    /// The worker the calling thread is. With one worker that is always
    /// worker 0, whichever thread calls (everything runs in one place).
    pub(crate) fn current_worker(&self) -> Option<usize> {
        if self.inner.workers == 1 {
            return Some(0);
        }
        worker::current(self.id())
    }

    /// What worker `index` runs for the hub besides its connections
    /// (deliveries from other threads); spawn it on the worker's runtime.
    /// It runs until the runtime is dropped.
    pub fn worker_tasks(&self, index: usize) -> impl std::future::Future<Output = ()> + Send + 'static {
        inbox::Inbox::run(self.clone(), index)
    }

    /// Worker `index`'s inbox.
    pub(crate) fn inbox(&self, index: usize) -> &Arc<inbox::Inbox> {
        &self.inner.inboxes[index]
    }

    /// Tells hubs apart in the thread-local worker marks.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    pub(crate) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Keepalive and rate limits, shared by every connection.
    pub fn timeouts(&self) -> &Timeouts {
        &self.inner.timeouts
    }

    /// The millisecond clock of connection deadlines.
    pub(crate) fn clock(&self) -> Clock {
        self.inner.registry.clock()
    }

    /// What orders rooms' messages and carries them to every member.
    pub fn broker(&self) -> &dyn Broker {
        &*self.inner.broker
    }

    /// Rooms with members on this node.
    pub(crate) fn rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.inner.rooms).values().cloned().collect()
    }

    /// Sends `frame` once to every `wshub.v1` connection of this node.
    pub(crate) fn notify_all(&self, frame: &crate::protocol::v1::ServerFrame) {
        let bytes = frames::text_frame(frame);
        let mut seen = std::collections::HashSet::new();
        for room in self.rooms() {
            for outbox in room.json_outboxes() {
                if seen.insert(Arc::as_ptr(&outbox)) {
                    let _ = outbox.push(bytes.clone());
                }
            }
        }
    }

    /// Connections per client address; unlimited until the server sets
    /// `--max-connections-per-ip` on it.
    pub fn per_ip(&self) -> &Arc<PerIpLimit> {
        &self.inner.per_ip
    }

    /// What unfinished messages hold of `--max-incomplete-bytes`; each
    /// connection charges it after every read.
    pub fn incomplete_messages(&self) -> &IncompleteBudget {
        &self.inner.incomplete
    }

    /// The history store.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// Messages replayed on a plain join.
    pub fn join_history(&self) -> usize {
        self.inner.join_history
    }

    /// Reserves a connection slot before the upgrade, so that the limit is
    /// enforced with an HTTP 503 rather than a dropped socket.
    /// The connection is placed on the calling worker (worker 0 when the
    /// caller is none).
    pub fn reserve(&self, endpoint: Endpoint) -> Option<Ticket> {
        let worker = self.current_worker().unwrap_or(0);
        self.inner.registry.reserve(self.clone(), endpoint, worker)
    }

    /// Joins `member` to the room `name`, creating the room on first join;
    /// a `wshub.v1` member first receives `replay` and the member list.
    pub fn join(&self, name: &str, member: Member, replay: Replay) -> Membership {
        self.join_locked(lock(&self.inner.rooms), name, member, replay)
    }

    /// Joins `member`, a connection of the presence user `user`, to the
    /// room `name`, unless the room has `max_users` users already and
    /// `user` is not one of them (a presence channel's limit): `None` then.
    /// Checked under the rooms map's lock, which every join and leave
    /// takes, so two joins cannot both take the last place.
    pub(crate) fn join_presence(
        &self,
        name: &str,
        user: &str,
        member: Member,
        replay: Replay,
        max_users: usize,
    ) -> Option<Membership> {
        let rooms = lock(&self.inner.rooms);
        if rooms.get(name).is_some_and(|room| !room.has_place_for(user, max_users)) {
            return None;
        }
        Some(self.join_locked(rooms, name, member, replay))
    }

    fn join_locked(
        &self,
        mut rooms: MutexGuard<'_, HashMap<RoomName, Arc<Room>>>,
        name: &str,
        member: Member,
        replay: Replay,
    ) -> Membership {
        let room = match rooms.get(name) {
            Some(room) => room.clone(),
            None => {
                let name = RoomName::from(name);
                let room = Arc::new(Room::new(name.clone(), self.inner.workers));
                rooms.insert(name.clone(), room.clone());
                self.occupancy_events().occupied(&name);
                room
            }
        };
        // Lock order: rooms map, then the room (leave takes them the same way).
        let place = room.insert(self, member, replay);
        drop(rooms);
        Membership::new(self.clone(), room, place)
    }

    /// Removes a member; the room's memory goes with its last member.
    pub(crate) fn leave(&self, room: &Arc<Room>, worker: usize, key: usize) {
        let mut rooms = lock(&self.inner.rooms);
        if room.remove(self, worker, key) == 0 {
            // Only drop the map's entry if it is this very room: a new room
            // of the same name may have been created in between.
            if rooms.get(room.name()).is_some_and(|r| Arc::ptr_eq(r, room)) {
                rooms.remove(room.name());
                self.inner.broker.room_closed(room.name());
                self.occupancy_events().vacated(room.name());
            }
        }
    }

    /// Who hears of rooms' comings and goings.
    pub(crate) fn room_events(&self) -> &dyn RoomEvents {
        &*self.inner.room_events
    }

    /// Who hears of this node's rooms gaining and losing members and
    /// presence users: the listener on a single node; nobody when the
    /// broker counts the cluster (those reports come from its counts, see
    /// [`Hub::report_cluster_change`]).
    pub(crate) fn occupancy_events(&self) -> &dyn RoomEvents {
        if self.inner.clustered {
            &Unheard
        } else {
            &*self.inner.room_events
        }
    }

    /// Whether the broker counts members across nodes (see
    /// [`crate::broker::ClusterCounts`]): presence is then the cluster's.
    pub(crate) fn clustered(&self) -> bool {
        self.inner.clustered
    }

    /// Reports a change the cluster counted here: once for the cluster,
    /// whichever node's member it was, and whether or not the room still
    /// has members on this node.
    pub(crate) fn report_cluster_change(&self, room: &str, change: &crate::broker::PresenceChange) {
        let Some(counts) = change.counts.filter(|counts| counts.recorded_here) else {
            return;
        };
        let events = self.room_events();
        if change.joined && counts.subscriptions == 1 {
            events.occupied(room);
        }
        if let Some(user) = change.user.as_deref().filter(|_| change.presence) {
            match (change.joined, counts.user_connections) {
                (true, 1) => events.user_added(room, user),
                (false, 0) => events.user_removed(room, user),
                _ => {}
            }
        }
        events.subscription_count(room, counts.subscriptions);
        if !change.joined && counts.subscriptions == 0 {
            events.vacated(room);
        }
    }

    /// Publishes a named event into the room `name` (the Pusher HTTP API's
    /// `events`): ordered and stored like any message, delivered to this
    /// node's members in every form but to the connection whose sealed name
    /// is `except` ([`sealed`]; 0: none), and to other nodes' through the
    /// broker (which carries `except` along: its own node leaves it out). A room without
    /// members here exists only while the event is ordered, under the room
    /// map's lock, so that nobody can join it meanwhile and miss the event
    /// (it has no members to deliver to: the lock is held for the ordering
    /// alone).
    pub fn publish_event(&self, name: &str, sender: &Arc<str>, event: &Arc<str>, data: &str, except: u64) {
        loop {
            let rooms = lock(&self.inner.rooms);
            if let Some(room) = rooms.get(name).cloned() {
                drop(rooms);
                if room.publish_event(self, sender, event, data, except) {
                    return;
                }
                // Its last member left meanwhile; someone may have joined
                // the room that replaced it, who must not miss this.
                continue;
            }
            let room = Arc::new(Room::new(RoomName::from(name), self.inner.workers));
            room.publish_event(self, sender, event, data, except);
            self.inner.broker.room_closed(room.name());
            return;
        }
    }

    /// Every room with members on this node whose name starts with
    /// `prefix`, with what the Pusher HTTP API tells of it.
    pub fn channels(&self, prefix: &str) -> Vec<(RoomName, ChannelInfo)> {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.rooms)
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, room)| room.clone())
            .collect();
        rooms
            .into_iter()
            .map(|room| (room.name().clone(), room.channel_info()))
            .filter(|(_, info)| info.subscriptions > 0)
            .collect()
    }

    /// The rooms named `prefix...` with members: on any node when the
    /// broker knows every node's, else on this one.
    pub async fn cluster_rooms(&self, prefix: &str) -> Vec<RoomName> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let then = Box::new(move |rooms| {
            let _ = answer.send(rooms);
        });
        if self.inner.broker.rooms(prefix, then) {
            if let Ok(Some(rooms)) = answered.await {
                return rooms;
            }
        }
        self.channels(prefix).into_iter().map(|(name, _)| name).collect()
    }

    /// The room called `name`, if it has members.
    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        lock(&self.inner.rooms).get(name).cloned()
    }

    /// A presence channel's user ids, in order: the cluster's when the
    /// broker knows the room's members on every node, else this node's.
    pub async fn cluster_user_ids(&self, name: &str) -> Vec<Arc<str>> {
        match self.cluster_members(name).await {
            Some(listed) => {
                let ids: std::collections::BTreeSet<&str> = listed.iter().filter_map(|m| m.user.as_deref()).collect();
                ids.into_iter().map(Arc::from).collect()
            }
            None => self.room(name).map(|room| room.user_ids()).unwrap_or_default(),
        }
    }

    /// The room's members on every node, when the broker knows them.
    async fn cluster_members(&self, name: &str) -> Option<Vec<crate::broker::ListedMember>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let then = Box::new(move |listed| {
            let _ = answer.send(listed);
        });
        if !self.inner.broker.members(&RoomName::from(name), then) {
            return None;
        }
        answered.await.ok().flatten()
    }

    /// What the Pusher HTTP API tells of room `name`: the cluster's counts
    /// when the broker knows the room's members on every node (every
    /// member counts as a subscription, each user id once), else this
    /// node's. With Redis, a join or leave counts once the broker's
    /// pipeline has recorded it (the next round trip at most).
    pub async fn cluster_channel_info(&self, name: &str) -> ChannelInfo {
        match self.cluster_members(name).await {
            Some(listed) => ChannelInfo::of_members(&listed),
            None => self.room(name).map(|room| room.channel_info()).unwrap_or_default(),
        }
    }

    /// Asks every connection to close (shutdown sends 1001 this way).
    pub fn close_all(&self, request: CloseRequest) {
        self.inner.registry.close_all(request);
    }

    /// Live WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.count()
    }

    /// Counters since start.
    pub fn stats(&self) -> &HubStats {
        &self.inner.stats
    }

    /// This hub's Prometheus metrics. Each hub (so each server) has its
    /// own, so servers in one process never mix their numbers; connection
    /// code reaches it through the hub it already holds.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Frames waiting in every connection's outbound queue, and the longest
    /// single queue: the broadcast backlog, for metrics (walks every
    /// connection, so scrape-time only).
    pub fn queue_depth(&self) -> (usize, usize) {
        self.inner.registry.queue_depth()
    }

    /// Live connections on each worker.
    pub fn connections_per_worker(&self) -> Vec<usize> {
        self.inner.registry.per_worker()
    }

    /// Live counts for `/healthz`.
    pub fn snapshot(&self) -> HubSnapshot {
        let [echo, chat, v1, pusher] = self.inner.registry.counts();
        HubSnapshot {
            connections: echo + chat + v1 + pusher,
            echo,
            chat,
            v1,
            pusher,
            rooms: lock(&self.inner.rooms).len(),
            evictions: self.inner.stats.evictions.load(Ordering::Relaxed),
        }
    }

    /// What `GET /metrics` copies in at a scrape, all but the log count
    /// (the hub does not own the log output: the route adds it). Walks
    /// every connection for the queue depth, so scrape-time only.
    pub fn scrape(&self) -> Scrape {
        let snapshot = self.snapshot();
        let (queued_frames, longest_queue_frames) = self.queue_depth();
        let stats = self.stats();
        Scrape {
            connections: self.inner.registry.counts(),
            rooms: snapshot.rooms,
            queued_frames,
            longest_queue_frames,
            evictions: stats.evictions.load(Ordering::Relaxed),
            published: stats.published.load(Ordering::Relaxed),
            delivered: stats.delivered.load(Ordering::Relaxed),
            history: self.history().stats(),
            redis_connected: self.broker().cluster().is_some_and(|cluster| cluster.up),
            incomplete_bytes: self.incomplete_messages().held(),
            log_lines_dropped: 0,
            webhooks: Default::default(),
        }
    }

    pub(crate) fn registry(&self) -> &registry::Registry {
        &self.inner.registry
    }
}

/// Locks a hub mutex. Every critical section here is a few statements that
/// leave the data consistent, so a poisoned lock is safe to keep using.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
