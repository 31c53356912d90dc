//! Chat history: every message of a room gets an id, is kept, and can be
//! replayed to a client that joins (the last N) or reconnects (everything
//! after the last id it saw, or an explicit "history starts at X").
//!
//! # Why it is shaped like this
//! The hub calls [`History::append`] while it holds a room's lock, on the
//! broadcast path, so `append` only touches memory: a short mutex on one of
//! [`SHARDS`] shards (picked by room name), the room's id counter and a
//! bounded cache of its newest entries, and a send on an unbounded channel
//! to a dedicated writer thread. Broadcast latency never waits on SQLite or
//! on the disk.
//!
//! The writer thread group-commits: the first entry of a batch opens it and
//! at most [`HistoryConfig::commit_interval`] later the whole batch goes in
//! one transaction, together with the retention deletes and the id
//! reservations. A `kill -9` loses at most the entries of the batch not yet
//! committed (one interval's worth, plus any backlog), and their ids are
//! not reused (see below); [`History::flush`] at a clean shutdown loses
//! nothing. The channel is unbounded on purpose: a slow disk must not slow
//! the chat; the backlog shows in [`History::stats`] (`pending`) and is
//! logged when it passes 100 000 entries.
//!
//! Reads ([`History::recent`], [`History::since`]) come from the cache,
//! which always ends with the newest entry (committed or not), when it
//! covers the range; otherwise the older part comes from SQLite through a
//! separate read connection (WAL lets it read while the writer writes),
//! after waiting, only if needed, for the entries that already left the
//! cache to be committed. That wait lasts as long as the disk or another
//! process holds the writer up, so the hub, which asks on the threads that
//! run connections, uses [`History::recent_or_later`] and
//! [`History::since_or_later`]: what memory cannot answer is read on a
//! reader thread of its own, as of the moment it was asked, and handed to
//! a callback (the `later` module).
//!
//! What the caches of all rooms hold is bounded in bytes
//! ([`HistoryConfig::max_bytes`]): past it the rooms that hold the most
//! drop their oldest entries, with SQLite only committed ones, which reads
//! then find in the file (the `budget` module says why this way).
//!
//! A room's state is loaded lazily: its first touch after start (or after
//! [`History::evict_cache`]) reads the last and first stored ids and its
//! reservation row, three index seeks, so ids continue where they stopped. That first touch is the only
//! database access `append` can make; the hub can take it off the hot path
//! by calling [`History::last_id`] when it creates a room.
//!
//! # Ids and retention
//! Ids count up by one per room, from 1. What a room retains is always
//! the stored ids of `first_available..=last_id` (count and age retention
//! both cut a prefix: timestamps never decrease within a room, even if the
//! wall clock does). Retention applies to memory at once and to SQLite in
//! the writer's transactions (count: for the rooms in the batch; age: all
//! rooms, at each commit and at least once a second); reads filter by age
//! too, so an entry past its age is never returned even before the writer
//! deletes it.
//!
//! # Ids after a crash: reserved ahead, never reused
//! An entry is on the wire (with its id) up to one commit interval before
//! it is durable, so a `kill -9` can lose it; its id must then not go to
//! another message after the restart, or a client that saw the lost one
//! and reconnects with `since` = its id would silently miss the new one.
//! So ids are reserved ahead, durably, in blocks (`room_seq` in the
//! `sqlite` module): `append` asks the writer for the next block when half
//! of the current one is used (a message in the writer's channel, sent
//! before the entry; `append` never waits for it), and a restart starts
//! each room above everything reserved or committed. The semantics:
//!
//! - ids always increase within a room, and no id is ever given to two
//!   different messages;
//! - after a clean shutdown ([`History::close`] or dropping the last
//!   handle) they continue without a gap;
//! - after a crash they skip: the next id is above every id the crashed
//!   run may have handed out (up to a block, 1 000 or more, per room).
//!   The skipped ids were either lost (the last commit interval) or never
//!   used; [`History::since`] treats them as nothing missed, not as
//!   [`Since::Truncated`], which only reports what retention dropped.
//!
//! A reservation covers ids once it is committed, which happens within one
//! commit interval of asking, half a block before it is needed; a room
//! that uses half a block faster than that doubles its block (up to about
//! a million). What is not covered, and so can be reused after a crash:
//! ids handed out while the writer cannot commit at all (a disk or lock
//! stalled for longer than half a block takes; entries given up on after
//! failed commits), the very first ids of a room that has never been
//! committed before if the process dies before its first commit (the room
//! has no trace in the file then), and ids appended after
//! [`History::close`]. Rooms known to the file get a fresh block at open,
//! before any id is handed out, so a crash soon after a restart is covered.
//! A room's `room_seq` row is kept even when retention deletes all its
//! messages, so its ids continue instead of restarting at 1 (one small row
//! per room ever used).

mod budget;
pub(crate) mod clock;
mod later;
mod room;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use budget::Rooms;
pub use budget::DEFAULT_MAX_BYTES;
use clock::Clock;
use later::Reads;
pub use later::{Answer, Deferred, CAPACITY as DEFERRED_READS};
use room::{Limits, RoomState};
use sqlite::{Op, Reader, Shared, Writer};

/// The database file of the default backend, in the working directory.
pub const DEFAULT_DB_FILE: &str = "wshub-history.db";

/// How many independently locked parts the rooms are spread over, so that
/// appends to different rooms rarely wait for each other.
pub const SHARDS: usize = 16;

/// Where history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (created if missing), in WAL mode: survives restarts.
    Sqlite(PathBuf),
    /// Only in memory, bounded by retention: lost at restart.
    Memory,
    /// Nothing kept: ids still count up, so reconnecting clients learn
    /// that they missed something, but there is nothing to replay.
    None,
}

/// How history is kept and for how long.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Where entries are stored.
    pub backend: Backend,
    /// Retention by count: a room keeps at most its newest this many.
    pub max_messages_per_room: usize,
    /// Retention by age, from the server timestamp; `None` keeps entries
    /// until the count limit drops them.
    pub max_age: Option<Duration>,
    /// Group commit period: the longest an appended entry waits before it
    /// is committed, so the most a `kill -9` can lose.
    pub commit_interval: Duration,
    /// Newest entries kept in memory per room for the sqlite backend (joins
    /// and short reconnects need no database read). The memory backend
    /// keeps `max_messages_per_room` instead, since memory is its store.
    pub cache_per_room: usize,
    /// The most the in-memory history of all rooms together may cost
    /// (texts, nicknames and about 100 bytes per entry): the whole store
    /// of the memory backend, the replay tail of the sqlite one. Beyond
    /// it the rooms that hold the most drop their oldest entries (see the
    /// `budget` module); with SQLite only committed ones, which replays
    /// then read from the file.
    pub max_bytes: usize,
}

impl Default for HistoryConfig {
    /// SQLite in [`DEFAULT_DB_FILE`], 10 000 messages or 7 days per room,
    /// commits every 50 ms, 1 000 cached entries per room, at most
    /// [`DEFAULT_MAX_BYTES`] in memory.
    fn default() -> Self {
        HistoryConfig {
            backend: Backend::Sqlite(PathBuf::from(DEFAULT_DB_FILE)),
            max_messages_per_room: 10_000,
            max_age: Some(Duration::from_secs(7 * 24 * 60 * 60)),
            commit_interval: Duration::from_millis(50),
            cache_per_room: 1_000,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One chat message as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Position in its room: 1 for the first message, then one more each;
    /// after a crash of the SQLite store, ids skip past every id the
    /// crashed run may have handed out (see the module doc), so an id is
    /// never given to two messages.
    pub id: u64,
    /// When the server accepted it, unix milliseconds; never less than the
    /// previous entry's in the same room.
    pub ts: i64,
    /// Who sent it. Shared, so fan-out and cache copies cost no allocation.
    #[serde(serialize_with = "serialize_arc_str")]
    pub nick: Arc<str>,
    /// The sender's user id (its access token's `sub`), when it had one.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_opt_arc_str")]
    pub user: Option<Arc<str>>,
    /// What was said: a chat message's text, or an event's data.
    #[serde(serialize_with = "serialize_arc_str")]
    pub text: Arc<str>,
    /// The event's name, for an event published the Pusher way (through
    /// the HTTP API); `None` for a chat message. Rooms are shared by every
    /// protocol, so both kinds live in one history and one order.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_opt_arc_str")]
    pub event: Option<Arc<str>>,
}

fn serialize_arc_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

fn serialize_opt_arc_str<S: serde::Serializer>(s: &Option<Arc<str>>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&**s),
        None => ser.serialize_none(),
    }
}

/// The answer to a reconnecting client's "I last saw id N".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Everything after N, in order, with no gap (at most the limit asked
    /// for: if it is full, ask again after its last id).
    Complete(Vec<Entry>),
    /// Retention already dropped some entries after N: history now starts
    /// at `first_available`, and `entries` start there. The client should
    /// show that a part is missing.
    Truncated {
        /// The oldest id still kept (`last_id + 1` if none is).
        first_available: u64,
        /// Entries from `first_available` on, at most the limit asked for.
        entries: Vec<Entry>,
    },
}

impl Default for Since {
    /// Nothing, and nothing missing.
    fn default() -> Self {
        Since::Complete(Vec::new())
    }
}

impl Since {
    /// The entries, whether complete or not.
    pub fn entries(&self) -> &[Entry] {
        match self {
            Since::Complete(entries) | Since::Truncated { entries, .. } => entries,
        }
    }

    /// The entries, whether complete or not, by value.
    pub fn into_entries(self) -> Vec<Entry> {
        match self {
            Since::Complete(entries) | Since::Truncated { entries, .. } => entries,
        }
    }

    /// The entries, and where history starts when retention dropped part
    /// of what was asked (the shape the Redis store answers in too).
    pub fn into_parts(self) -> (Vec<Entry>, Option<u64>) {
        match self {
            Since::Complete(entries) => (entries, None),
            Since::Truncated {
                first_available,
                entries,
            } => (entries, Some(first_available)),
        }
    }
}

/// Counters for `/healthz` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Entries appended since open.
    pub appended: u64,
    /// Entries committed to SQLite since open.
    pub committed: u64,
    /// Transactions committed since open.
    pub commits: u64,
    /// Failed commit attempts (each is retried).
    pub write_errors: u64,
    /// Entries never stored: their batch failed every retry, or they were
    /// appended after [`History::close`].
    pub dropped: u64,
    /// Entries waiting for the writer: the backlog.
    pub pending: u64,
    /// What the in-memory history of all rooms costs now (see
    /// [`HistoryConfig::max_bytes`]).
    pub memory_bytes: u64,
    /// Entries dropped from memory by [`HistoryConfig::max_bytes`] since
    /// open (with SQLite they are still in the file).
    pub memory_dropped: u64,
}

/// Why history could not be opened. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be opened or created. Check that its directory
    /// exists and is writable, or pick another path or the memory backend.
    #[error("cannot open history database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file opened but refused WAL mode (some network file systems
    /// cannot do it), which concurrent reads and group commit rely on.
    /// Put the database on a local disk.
    #[error("history database {} cannot use WAL mode (it stays in {mode} mode); put it on a local disk", path.display())]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file is not an SQLite database, is corrupt, or has a table of
    /// the same name with another layout. Move it aside and restart (a new
    /// one is created), or point to another file.
    #[error("history database {} is not usable: {source}", path.display())]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer wshub. Run that version, or point
    /// to another file; this one is left untouched.
    #[error("history database {} has schema version {found}, newer than the {supported} this wshub knows", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The writer thread could not be started (the process is out of
    /// threads or memory). Nothing to fix in the configuration; retry.
    #[error("cannot start the history writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The backend, without its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Memory,
    None,
}

/// A room's state and its name, shared with the writer's messages.
#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    state: RoomState,
    /// The memory or none store's room has no members (`evict_cache`) but
    /// keeps entries: forgotten once they are shed. Any use opens it again.
    closed: bool,
}

impl Slot {
    /// The state of `room`, open, and the name it is kept under.
    fn new(room: &str, state: RoomState) -> (Arc<str>, Slot) {
        let name: Arc<str> = room.into();
        let slot = Slot {
            name: Arc::clone(&name),
            state,
            closed: false,
        };
        (name, slot)
    }
}

/// One lock's worth of rooms.
#[derive(Debug, Default)]
struct Shard {
    rooms: HashMap<Arc<str>, Slot>,
    /// Rooms evicted while some of their entries were not committed yet:
    /// their id counter must survive until the database has those entries,
    /// or a reload would hand the same ids out again.
    tombstones: HashMap<Arc<str>, Slot>,
    counters: ShardCounters,
}

/// A shard's counters, apart from its maps so both can be borrowed at once.
#[derive(Debug, Default)]
struct ShardCounters {
    /// The last writer sequence number given in this shard.
    next_seq: u64,
    /// Bumped at each eviction, so that a first-touch load that ran
    /// without the lock can tell its database read may be stale.
    generation: u64,
}

struct Inner {
    kind: Kind,
    rooms: Arc<Rooms>,
    hasher: std::collections::hash_map::RandomState,
    limits: Limits,
    clock: Clock,
    reader: Option<Reader>,
    /// The reader thread, for reads the hub must not wait for.
    reads: Option<Reads>,
    tx: Option<Sender<Op>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    appended: AtomicU64,
    /// Entries sent to the writer.
    sent: AtomicU64,
    /// Entries appended after close, never stored.
    unsent: AtomicU64,
    warned_closed: AtomicBool,
    /// Rooms whose state could not be loaded (one log line in 1,000).
    load_errors: AtomicU64,
}

/// The chat history: a cheap, cloneable handle (`Send + Sync`). The writer
/// thread stops, committing what it has, when the last handle is dropped or
/// at [`History::close`].
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("backend", &self.backend_name())
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a read found under the shard lock: either the answer, or what to
/// fetch from the database once the lock is released.
enum Plan {
    Ready(Vec<Entry>),
    Db {
        shard: usize,
        wait_seq: u64,
        from: u64,
        below: u64,
        cached: Vec<Entry>,
        need: usize,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
    /// Opens history as configured. For SQLite: creates or opens the file,
    /// switches it to WAL with `synchronous = NORMAL` (committed entries
    /// survive a killed process; see the `sqlite` module), creates the
    /// schema and starts the writer thread. Errors name the file.
    pub fn open(config: HistoryConfig) -> Result<History, HistoryError> {
        Self::open_with_clock(config, Clock::System)
    }

    fn open_with_clock(config: HistoryConfig, clock: Clock) -> Result<History, HistoryError> {
        let max = config.max_messages_per_room;
        let (kind, cache_cap, cache_is_store) = match &config.backend {
            Backend::Sqlite(_) => (Kind::Sqlite, config.cache_per_room.min(max), false),
            Backend::Memory => (Kind::Memory, max, true),
            Backend::None => (Kind::None, 0, true),
        };
        let limits = Limits {
            max_messages: max,
            max_age_ms: config
                .max_age
                .map(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            cache_cap,
            cache_is_store,
        };
        let shared = Arc::new(Shared::new(SHARDS));
        let rooms = Arc::new(Rooms::new(SHARDS, config.max_bytes.max(1)));
        let (reader, reads, tx, writer) = match &config.backend {
            Backend::Sqlite(path) => {
                let conn = sqlite::open_writer(path)?;
                let reader = Reader::open(path)?;
                let reads = Reads::start(path)?;
                let (tx, rx) = mpsc::channel();
                let writer = Writer {
                    conn,
                    path: path.clone(),
                    rx,
                    shared: Arc::clone(&shared),
                    limits,
                    interval: config.commit_interval,
                    clock: clock.clone(),
                    after_commit: {
                        let (rooms, shared) = (Arc::clone(&rooms), Arc::clone(&shared));
                        Box::new(move || {
                            if rooms.occupied() > rooms.max_bytes {
                                rooms.shed(&shared, &limits);
                            }
                        })
                    },
                };
                let handle = std::thread::Builder::new()
                    .name("wshub-history".into())
                    .spawn(move || writer.run())
                    .map_err(HistoryError::Spawn)?;
                (Some(reader), Some(reads), Some(tx), Some(handle))
            }
            Backend::Memory | Backend::None => (None, None, None, None),
        };
        Ok(History {
            inner: Arc::new(Inner {
                kind,
                rooms,
                hasher: Default::default(),
                limits,
                clock,
                reader,
                reads,
                tx,
                writer: Mutex::new(writer),
                shared,
                appended: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                unsent: AtomicU64::new(0),
                warned_closed: AtomicBool::new(false),
                load_errors: AtomicU64::new(0),
            }),
        })
    }

    /// Records a message: gives it the room's next id and the server time,
    /// caches it, and queues it for the writer. Only memory work (except a
    /// room's very first touch with SQLite, see the module doc), so it is
    /// safe to call under the hub's room lock.
    pub fn append(&self, room: &str, nick: &str, text: &str) -> Entry {
        self.append_by(room, nick, None, text)
    }

    /// [`History::append`] for a sender with a user id (a token's `sub`),
    /// stored with the message.
    pub fn append_by(&self, room: &str, nick: &str, user: Option<&Arc<str>>, text: &str) -> Entry {
        self.append_event(room, nick, user, None, text)
    }

    /// [`History::append_by`] for a named event (see [`Entry::event`]).
    ///
    /// With SQLite, a room's first touch reads its last id from the file;
    /// if that read fails the entry has id 0, is not stored (counted in
    /// `dropped`), and the next append tries the read again: handing out
    /// ids from 1 would repeat stored ones.
    pub fn append_event(
        &self,
        room: &str,
        nick: &str,
        user: Option<&Arc<str>>,
        event: Option<&Arc<str>>,
        text: &str,
    ) -> Entry {
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        inner.appended.fetch_add(1, Ordering::Relaxed);
        let entry = |id, ts| Entry {
            id,
            ts,
            nick: nick.into(),
            user: user.cloned(),
            text: text.into(),
            event: event.cloned(),
        };
        let stored = self.try_with_room(room, |slot, counters, shard_index| {
            let (id, ts) = slot.state.next(now);
            let entry = entry(id, ts);
            let mut seq = None;
            if let Some(tx) = &inner.tx {
                // Sent under the shard lock: a shard's entries reach the
                // writer in seq order, which its "committed" mark relies on.
                // A reservation goes first, so it is never committed after
                // the entry it covers; nobody waits for it.
                let previous_committed = inner.committed(shard_index) >= slot.state.reserve_seq;
                if let Some(upto) = slot.state.reserve(id, previous_committed) {
                    counters.next_seq += 1;
                    let op = Op::Reserve {
                        shard: shard_index,
                        seq: counters.next_seq,
                        room: Arc::clone(&slot.name),
                        upto,
                    };
                    if tx.send(op).is_ok() {
                        slot.state.reserve_seq = counters.next_seq;
                        slot.state.last_seq = counters.next_seq;
                    }
                }
                counters.next_seq += 1;
                let op = Op::Insert {
                    shard: shard_index,
                    seq: counters.next_seq,
                    room: Arc::clone(&slot.name),
                    entry: entry.clone(),
                };
                if tx.send(op).is_ok() {
                    inner.sent.fetch_add(1, Ordering::Relaxed);
                    seq = Some(counters.next_seq);
                } else {
                    inner.unsent.fetch_add(1, Ordering::Relaxed);
                    if !inner.warned_closed.swap(true, Ordering::Relaxed) {
                        tracing::warn!("history is closed: new messages are no longer stored");
                    }
                }
            }
            slot.state.push(entry.clone(), seq, &inner.limits);
            slot.state.prune(&inner.limits, now);
            entry
        });
        let Ok(entry) = stored else {
            // The room's ids are not known: this one goes out unnumbered
            // and unstored (as a message that a cluster could not order).
            inner.unsent.fetch_add(1, Ordering::Relaxed);
            return entry(0, now);
        };
        inner.rooms.after_append(&inner.shared, &inner.limits);
        entry
    }

    /// The newest `limit` retained entries of `room`, oldest first (what a
    /// joining client is shown). Includes entries not committed yet. May
    /// wait for the database: the hub asks [`History::recent_or_later`].
    pub fn recent(&self, room: &str, limit: usize) -> Vec<Entry> {
        self.recent_in(room, limit, u64::MAX, Disk::Quick).unwrap_or_default()
    }

    /// [`History::recent`] now when memory has it, else [`Answer::Later`]:
    /// read on the reader thread, as of now (nothing appended after this
    /// call is in it, so a live copy delivered meanwhile is not repeated).
    pub fn recent_or_later(&self, room: &str, limit: usize) -> Answer<Vec<Entry>> {
        let until = self.last_id(room);
        self.now_or_later(room, move |history, room, disk| {
            history.recent_in(room, limit, until, disk)
        })
    }

    /// `read` from memory now (`Disk::No`), or, when it needs the database,
    /// on the reader thread with its connection. There the read always
    /// answers (the `Option` is `None` only for `Disk::No`).
    fn now_or_later<T: Default + 'static>(
        &self,
        room: &str,
        read: impl Fn(&History, &str, Disk<'_>) -> Option<T> + Send + 'static,
    ) -> Answer<T> {
        match read(self, room, Disk::No) {
            Some(found) => Answer::Now(found),
            None => {
                let room: Arc<str> = room.into();
                Answer::Later(Deferred::new(self, move |history: &History, disk| {
                    read(history, &room, disk).unwrap_or_default()
                }))
            }
        }
    }

    /// The newest `limit` entries with ids up to `until`; `None` when that
    /// needs the database and `disk` says not to read it.
    fn recent_in(&self, room: &str, limit: usize, until: u64, disk: Disk<'_>) -> Option<Vec<Entry>> {
        if limit == 0 {
            return Some(Vec::new());
        }
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        let plan = self.with_room(room, Plan::Ready(Vec::new()), |slot, _, shard| {
            let st = &mut slot.state;
            st.prune(&inner.limits, now);
            let end = st.cache.partition_point(|e| e.id <= until);
            if st.covered() || end >= limit {
                return Plan::Ready(st.cache.range(end.saturating_sub(limit)..end).cloned().collect());
            }
            Plan::Db {
                shard,
                wait_seq: st.evicted_seq,
                from: st.floor,
                below: st
                    .cache
                    .front()
                    .map_or(st.last_id.saturating_add(1), |e| e.id)
                    .min(until.saturating_add(1)),
                cached: st.cache.range(..end).cloned().collect(),
                need: limit - end,
            }
        });
        self.execute(room, plan, now, true, disk)
    }

    /// The retained entries of `room` with an id above `after_id`, oldest
    /// first, at most `limit` (what a reconnecting client missed). Includes
    /// entries not committed yet. [`Since::Truncated`] when retention
    /// already dropped some of them. May wait for the database: the hub
    /// asks [`History::since_or_later`].
    pub fn since(&self, room: &str, after_id: u64, limit: usize) -> Since {
        self.since_in(room, after_id, limit, u64::MAX, Disk::Quick)
            .unwrap_or_default()
    }

    /// [`History::since`] now when memory has it, else [`Answer::Later`],
    /// as of now (see [`History::recent_or_later`]).
    pub fn since_or_later(&self, room: &str, after_id: u64, limit: usize) -> Answer<Since> {
        let until = self.last_id(room);
        self.now_or_later(room, move |history, room, disk| {
            history.since_in(room, after_id, limit, until, disk)
        })
    }

    /// [`History::since`] up to id `until`; `None` when that needs the
    /// database and `disk` says not to read it.
    fn since_in(&self, room: &str, after_id: u64, limit: usize, until: u64, disk: Disk<'_>) -> Option<Since> {
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        // Look for at least one entry even when asked for none: the first
        // one found tells whether anything was dropped.
        let want = limit.max(1);
        let mut last_id = 0;
        // Where the retained history starts, when memory knows it for sure.
        let mut known_start = None;
        let mut floor = 0;
        let mut skipped_to = 0;
        let plan = self.with_room(room, Plan::Ready(Vec::new()), |slot, _, shard| {
            let st = &mut slot.state;
            st.prune(&inner.limits, now);
            last_id = st.last_id.min(until);
            floor = st.floor;
            skipped_to = st.skipped_to;
            if st.covered() {
                known_start = Some(st.cache.front().map_or(st.last_id.saturating_add(1), |e| e.id));
            }
            let start = st.start_after(after_id);
            if start > last_id {
                return Plan::Ready(Vec::new());
            }
            let upto = |e: &&Entry| e.id <= until;
            match st.cache.front().map(|e| e.id) {
                Some(front) if front <= start || st.covered() => {
                    let skip = usize::try_from(start.saturating_sub(front)).unwrap_or(usize::MAX);
                    Plan::Ready(
                        st.cache
                            .iter()
                            .skip(skip)
                            .take_while(upto)
                            .take(want)
                            .cloned()
                            .collect(),
                    )
                }
                None if st.covered() => Plan::Ready(Vec::new()),
                front => Plan::Db {
                    shard,
                    wait_seq: st.evicted_seq,
                    from: start,
                    below: front
                        .unwrap_or(last_id.saturating_add(1))
                        .min(last_id.saturating_add(1)),
                    cached: st.cache.iter().take_while(upto).take(want).cloned().collect(),
                    need: want,
                },
            }
        });
        let mut entries = self.execute(room, plan, now, false, disk)?;
        entries.truncate(want);
        let first = entries.first().map_or(last_id.saturating_add(1), |e| e.id);
        // Missing ids right after `after_id` are either dropped by retention
        // (a prefix cut: the client must be told) or skipped after a crash
        // (never stored: nothing to tell). Retention is the case exactly when
        // the retained history starts above `after_id + 1` (and above the
        // ids that were never the room's).
        let truncated = after_id < last_id
            && first > after_id.saturating_add(1)
            && self.retained_start(room, known_start, floor, now, last_id) > after_id.max(skipped_to).saturating_add(1);
        entries.truncate(limit);
        Some(if truncated {
            Since::Truncated {
                first_available: first,
                entries,
            }
        } else {
            Since::Complete(entries)
        })
    }

    /// The oldest retained id of `room` (`last_id + 1` if none is): from
    /// memory when the cache covers the room, else from the database (only
    /// reached when a reconnect finds missing ids, which is rare).
    fn retained_start(&self, room: &str, known: Option<u64>, floor: u64, now: i64, last_id: u64) -> u64 {
        if let Some(start) = known {
            return start;
        }
        let inner = &*self.inner;
        let from_db = inner.reader.as_ref().and_then(|reader| {
            reader
                .first_retained(room, floor, inner.limits.cutoff(now))
                .map_err(|e| tracing::error!(room, "cannot read history: {e}"))
                .ok()
                .flatten()
        });
        from_db.unwrap_or_else(|| {
            // Nothing retained in the database: the cache, if anything.
            self.with_room(room, last_id.saturating_add(1), |slot, _, _| {
                slot.state.cache.front().map_or(last_id.saturating_add(1), |e| e.id)
            })
        })
    }

    /// The last id given in `room`, 0 if none yet. Also loads the room's
    /// state, so the hub can call it when it creates a room to keep the
    /// database read out of the first `append`.
    pub fn last_id(&self, room: &str) -> u64 {
        self.with_room(room, 0, |slot, _, _| slot.state.last_id)
    }

    /// Blocks until everything appended so far is committed (or, if the
    /// disk keeps failing, given up on and counted in `dropped`). For
    /// shutdown and tests; returns at once for the memory and none
    /// backends and after [`History::close`].
    pub fn flush(&self) {
        let Some(tx) = &self.inner.tx else { return };
        let (ack, done) = mpsc::sync_channel(1);
        if tx.send(Op::Flush(ack)).is_ok() {
            // An error means the writer is gone, having committed all.
            let _ = done.recv();
        }
    }

    /// Stops the writer thread at once, committing nothing more, as a
    /// `kill -9` would: what was not committed yet is lost.
    #[cfg(test)]
    fn abandon(&self) {
        if let Some(tx) = &self.inner.tx {
            let _ = tx.send(Op::Abandon);
        }
        let handle = lock(&self.inner.writer).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Commits what is pending and stops the writer thread; entries
    /// appended afterwards are kept in memory only (and counted in
    /// `dropped`). Dropping the last handle does the same.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Drops the cached entries of `room`, for when the hub frees it: its
    /// next use reloads from SQLite. Only the sqlite backend evicts; for
    /// the memory backend the cache is the store, and for none the state
    /// is just the id counter, which must go on counting.
    pub fn evict_cache(&self, room: &str) {
        let inner = &*self.inner;
        if inner.kind != Kind::Sqlite {
            self.forget_if_empty(room);
            return;
        }
        let index = self.shard_index(room);
        let committed = inner.committed(index);
        let mut shard = lock(&inner.rooms.shards[index]);
        if let Some((name, mut slot)) = inner.rooms.release(&mut shard, room) {
            shard.counters.generation += 1;
            slot.state.clear();
            slot.state.evicted_seq = slot.state.last_seq;
            if slot.state.last_seq > committed {
                shard.tombstones.insert(name, slot);
            }
        }
        shard.tombstones.retain(|_, slot| slot.state.last_seq > committed);
    }

    /// With the memory and none stores, a room that closes with nothing
    /// kept (never a message, or all of them dropped) is forgotten at once,
    /// one that keeps entries once the memory cap sheds them all (see
    /// `Rooms::forget`).
    fn forget_if_empty(&self, room: &str) {
        let inner = &*self.inner;
        let index = self.shard_index(room);
        let mut guard = lock(&inner.rooms.shards[index]);
        let shard = &mut *guard;
        match shard.rooms.get_mut(room) {
            Some(slot) if slot.state.cache.is_empty() => inner.rooms.forget(shard, room),
            Some(slot) => slot.closed = true,
            None => {}
        }
    }

    /// `"sqlite"`, `"memory"` or `"none"`, for logs and `/healthz`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.kind {
            Kind::Sqlite => "sqlite",
            Kind::Memory => "memory",
            Kind::None => "none",
        }
    }

    /// Calls `observer` with each SQLite commit's duration, on the writer
    /// thread (metrics export it as the history write latency). Set once;
    /// the memory and none stores never commit.
    pub fn observe_commits(&self, observer: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self
            .inner
            .shared
            .commit_observer
            .set(sqlite::CommitObserver(Box::new(observer)));
    }

    /// Counters: appended, committed, the writer's backlog, failures.
    pub fn stats(&self) -> HistoryStats {
        let inner = &*self.inner;
        let shared = &inner.shared;
        let committed = shared.committed_total.load(Ordering::Relaxed);
        let dropped = shared.dropped.load(Ordering::Relaxed);
        HistoryStats {
            appended: inner.appended.load(Ordering::Relaxed),
            committed,
            commits: shared.commits.load(Ordering::Relaxed),
            write_errors: shared.write_errors.load(Ordering::Relaxed),
            dropped: dropped + inner.unsent.load(Ordering::Relaxed),
            pending: inner.sent.load(Ordering::Relaxed).saturating_sub(committed + dropped),
            memory_bytes: inner.rooms.held.load(Ordering::Relaxed) as u64,
            memory_dropped: inner.rooms.dropped.load(Ordering::Relaxed),
        }
    }

    fn shard_index(&self, room: &str) -> usize {
        (self.inner.hasher.hash_one(room) % SHARDS as u64) as usize
    }

    /// Runs `f` on `room`'s state under its shard's lock, loading the state
    /// first if the room is not in memory; `or` when it cannot be loaded
    /// (logged: a read then answers from nothing).
    fn with_room<R>(&self, room: &str, or: R, f: impl FnOnce(&mut Slot, &mut ShardCounters, usize) -> R) -> R {
        self.try_with_room(room, f).unwrap_or(or)
    }

    /// [`History::with_room`], or the error that kept the room's state from
    /// loading: then nothing is put in its place, since a room whose last
    /// id is not known must not hand out ids (they would repeat stored
    /// ones), and the next touch tries again.
    fn try_with_room<R>(
        &self,
        room: &str,
        f: impl FnOnce(&mut Slot, &mut ShardCounters, usize) -> R,
    ) -> Result<R, rusqlite::Error> {
        let inner = &*self.inner;
        let index = self.shard_index(room);
        let mutex = &inner.rooms.shards[index];
        let mut guard = lock(mutex);
        loop {
            let shard = &mut *guard;
            if let Some(slot) = shard.rooms.get_mut(room) {
                slot.closed = false;
                // Every change to a cache goes through here (or through
                // `evict_cache` and the shedding): the budget follows it.
                let before = slot.state.bytes;
                let result = f(slot, &mut shard.counters, index);
                inner.rooms.account(before, slot.state.bytes);
                return Ok(result);
            }
            if let Some((name, slot)) = shard.tombstones.remove_entry(room) {
                inner.rooms.hold(shard, name, slot);
                continue;
            }
            let Some(reader) = inner.reader.as_ref() else {
                let after = inner.rooms.forgotten_up_to.load(Ordering::Acquire);
                let (name, slot) = Slot::new(room, RoomState::after_forgotten(after));
                inner.rooms.hold(shard, name, slot);
                continue;
            };
            let generation = shard.counters.generation;
            drop(guard);
            let found = reader.load(room).inspect_err(|e| {
                if inner.load_errors.fetch_add(1, Ordering::Relaxed).is_multiple_of(1_000) {
                    tracing::error!(room, "cannot read the history of this room: its messages get no id and are not stored until it can ({e})");
                }
            })?;
            let state = RoomState::loaded(found.last_id, found.last_ts, found.min_id, found.reserved);
            guard = lock(mutex);
            let shard = &mut *guard;
            if shard.counters.generation == generation
                && !shard.rooms.contains_key(room)
                && !shard.tombstones.contains_key(room)
            {
                let (name, slot) = Slot::new(room, state);
                inner.rooms.hold(shard, name, slot);
            }
        }
    }

    /// Finishes a read plan: the database part (oldest), then the cached
    /// part. `newest`: the database part is the last `need` entries rather
    /// than the first. `None` when it needs the database and `disk` is
    /// [`Disk::No`].
    fn execute(&self, room: &str, plan: Plan, now: i64, newest: bool, disk: Disk<'_>) -> Option<Vec<Entry>> {
        let inner = &*self.inner;
        let (shard, wait_seq, from, below, cached, need) = match plan {
            Plan::Ready(entries) => return Some(entries),
            Plan::Db {
                shard,
                wait_seq,
                from,
                below,
                cached,
                need,
            } => (shard, wait_seq, from, below, cached, need),
        };
        let reader = match disk {
            Disk::Own(reader) => reader,
            Disk::Quick | Disk::No => match inner.reader.as_ref() {
                None => return Some(cached),
                Some(_) if matches!(disk, Disk::No) => return None,
                Some(reader) => reader,
            },
        };
        if inner.committed(shard) < wait_seq {
            // Some entries older than the cache are still on their way to
            // the database: wait for the writer to commit them.
            self.flush();
        }
        let cutoff = inner.limits.cutoff(now);
        Some(match reader.range(room, from, below, cutoff, need, newest) {
            Ok(mut entries) => {
                entries.extend(cached);
                entries
            }
            Err(e) => {
                // Answer with what memory has: `since` then reports the
                // older part as unavailable rather than failing the client.
                tracing::error!(room, "cannot read history: {e}");
                cached
            }
        })
    }
}

/// Which connection a read may take from the database what memory lacks.
#[derive(Clone, Copy)]
enum Disk<'a> {
    /// None: the read is for the reader thread ([`Answer::Later`]).
    No,
    /// The history's own read connection, shared by every caller.
    Quick,
    /// The reader thread's.
    Own(&'a Reader),
}

impl Inner {
    fn committed(&self, shard: usize) -> u64 {
        self.shared
            .committed
            .get(shard)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn close(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Op::Close);
        }
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the history writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
