//! The SQLite store: schema, the read connection, and the writer thread
//! that group-commits appended entries off the hot path.
//!
//! # Schema (`PRAGMA user_version = 4`)
//! ```sql
//! CREATE TABLE messages (
//!     room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
//!     nick TEXT NOT NULL, text TEXT NOT NULL,
//!     user TEXT,                      -- the sender's token `sub`, NULL without one
//!     event TEXT,                     -- an event's name (HTTP API), NULL for chat
//!     PRIMARY KEY (room, id)
//! ) WITHOUT ROWID;
//! CREATE INDEX messages_by_ts ON messages (ts);
//! CREATE TABLE room_seq (
//!     room TEXT PRIMARY KEY,
//!     last_id INTEGER NOT NULL,       -- highest id committed, even if retention deleted it
//!     reserved_upto INTEGER NOT NULL, -- ids up to here may have been handed out
//!     run_base INTEGER NOT NULL       -- this run hands out ids above this only
//! ) WITHOUT ROWID;
//! ```
//! `WITHOUT ROWID` clusters the rows by `(room, id)`: a room's range read
//! (`since`, `recent`) and its count-retention delete are one contiguous
//! B-tree walk. The `ts` index makes the periodic age sweep a seek instead
//! of a full scan; it costs one extra index insert per message, on the
//! writer thread.
//!
//! # Durability
//! WAL mode with `synchronous = NORMAL`: a committed transaction is in the
//! WAL file (the OS page cache) when `COMMIT` returns, so it survives the
//! process being killed (`kill -9`, panic, OOM); only an OS crash or power
//! loss can lose the last transactions, and never corrupts the database.
//! `FULL` would add an fsync per commit to cover power loss too; the
//! requirement is about process death, and NORMAL keeps the writer's cost
//! per batch low.
//!
//! # Id reservations (`room_seq`)
//! Entries wait up to one commit interval before they are durable, but
//! their ids are out on the wire at once. So that a `kill -9` cannot make
//! a restart hand the ids of lost entries to new messages, a room's ids
//! are reserved ahead in blocks: the handles ask for a reservation (an
//! [`Op::Reserve`], in the same channel as the entries, so it is never
//! committed after an entry it covers) when half of the current block is
//! used, and the writer records it in `room_seq.reserved_upto` in its
//! normal transaction. Nobody waits for it.
//!
//! At open, before the writer starts, every known room's reservations are
//! turned into this run's starting point: `run_base = max(last_id,
//! reserved_upto)` (everything the previous run may have handed out), and
//! a fresh block is reserved above it in the same transaction, so a room's
//! first ids in this run are covered before they exist. A clean close
//! lowers `reserved_upto` back to `max(last_id, run_base)`, so after a
//! clean shutdown ids continue without a gap; after a crash they skip what
//! was reserved.
//! `last_id` also keeps a room's counter when age retention has deleted
//! all its rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::clock::Clock;
use super::room::Limits;
use super::{Entry, HistoryError};

/// The schema version this code writes and reads (1: `messages` only; 2
/// adds `room_seq`; 3 adds `messages.user`; 4 adds `messages.event`; each
/// made in place on an older file, whose messages then have neither).
const SCHEMA_VERSION: i64 = 4;

/// Ids reserved ahead per room at first: a room asks for the next block
/// when half of this is left, so it is at least half a block ahead of its
/// last id while the writer keeps up.
pub(super) const RESERVE_BLOCK: u64 = 1_000;

/// The largest block a busy room grows to (see [`super::room`]): a room
/// that uses half a block before the previous reservation is committed
/// doubles its block, up to this.
pub(super) const MAX_RESERVE_BLOCK: u64 = 1 << 20;

/// How long a connection waits for a lock held by another connection (a
/// second process, a backup tool) before the statement fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the writer deletes expired entries of rooms that got no new
/// message (rooms that did are trimmed in their own commit).
const AGE_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// A batch that failed this many commits in a row is dropped (and counted)
/// so that a broken disk cannot grow memory forever or hang `flush`.
const MAX_COMMIT_ATTEMPTS: u32 = 10;

/// A writer backlog this large is logged: SQLite cannot keep up.
const BACKLOG_WARN: usize = 100_000;

fn i64_of(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn u64_of(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}

/// Opens a connection to `path` with the pragmas both connections need.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, HistoryError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|source| HistoryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(conn)
}

/// Opens the database for writing: WAL, synchronous, schema. Returns the
/// writer's connection.
pub(super) fn open_writer(path: &Path) -> Result<Connection, HistoryError> {
    let mut conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let schema_err = |source| HistoryError::Schema {
        path: path.to_path_buf(),
        source,
    };
    // journal_mode answers with the mode in force: a file that cannot do
    // WAL (some network file systems) stays in its old mode.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|source| HistoryError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(HistoryError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(schema_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(schema_err)?;
    if version > SCHEMA_VERSION {
        return Err(HistoryError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // One transaction: a file is either at this version or untouched.
    let migrate = |conn: &mut Connection| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                 room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,
                 nick TEXT NOT NULL, text TEXT NOT NULL,
                 user TEXT,
                 event TEXT,
                 PRIMARY KEY (room, id)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts);
             CREATE TABLE IF NOT EXISTS room_seq (
                 room TEXT PRIMARY KEY,
                 last_id INTEGER NOT NULL,
                 reserved_upto INTEGER NOT NULL,
                 run_base INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )?;
        // A file from before version 3 has `messages` without `user`: added
        // in place (the schema only; no row is rewritten, old ones read NULL).
        let has_user: i64 = tx.query_row(
            "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'user'",
            [],
            |row| row.get(0),
        )?;
        if has_user == 0 {
            tx.execute_batch("ALTER TABLE messages ADD COLUMN user TEXT")?;
        }
        // Version 4 adds `event` the same way (old rows are chat messages).
        let has_event: i64 = tx.query_row(
            "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'event'",
            [],
            |row| row.get(0),
        )?;
        if has_event == 0 {
            tx.execute_batch("ALTER TABLE messages ADD COLUMN event TEXT")?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()
    };
    migrate(&mut conn).map_err(schema_err)?;
    // This run starts above whatever the previous one may have handed out,
    // and every known room gets a fresh block before any id is given.
    conn.execute(
        "UPDATE room_seq SET run_base = max(last_id, reserved_upto),
                             reserved_upto = max(last_id, reserved_upto) + ?1",
        params![i64_of(RESERVE_BLOCK)],
    )
    .map_err(schema_err)?;
    Ok(conn)
}

/// The read side: one connection, used by joins, reconnects and a room's
/// first touch. WAL lets it read while the writer commits.
pub(super) struct Reader {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("path", &self.path).finish()
    }
}

/// What the database says about a room at its first touch.
pub(super) struct Loaded {
    /// The id to continue after: the highest of the last stored id, the
    /// last committed id and this run's base (which is above every id a
    /// crashed previous run may have handed out).
    pub last_id: u64,
    pub last_ts: i64,
    pub min_id: Option<u64>,
    /// The committed reservation: ids up to here are safe to hand out.
    pub reserved: u64,
}

impl Reader {
    /// Opens the read connection (after [`open_writer`] made the schema).
    pub fn open(path: &Path) -> Result<Reader, HistoryError> {
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "query_only", true)
            .map_err(|source| HistoryError::Schema {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Reader {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last id (and its timestamp) and the first id stored for `room`,
    /// and its `room_seq` row. Three index seeks: SQLite optimizes a lone
    /// `min()`/`max()` only.
    pub fn load(&self, room: &str) -> rusqlite::Result<Loaded> {
        let conn = self.conn();
        let last: Option<(i64, i64)> = conn
            .prepare_cached("SELECT id, ts FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1")?
            .query_row(params![room], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let first: Option<i64> = conn
            .prepare_cached("SELECT id FROM messages WHERE room = ?1 ORDER BY id LIMIT 1")?
            .query_row(params![room], |row| row.get(0))
            .optional()?;
        let seq: Option<(i64, i64, i64)> = conn
            .prepare_cached("SELECT last_id, reserved_upto, run_base FROM room_seq WHERE room = ?1")?
            .query_row(params![room], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()?;
        let (stored, last_ts) = last.unwrap_or((0, 0));
        let (committed, reserved, base) = seq.unwrap_or((0, 0, 0));
        // Not `reserved`: within this run the last committed id is exact
        // (an evicted room is only reloaded once all its entries are
        // committed), so reloading adds no gap; `base` covers the ids a
        // crashed previous run may have handed out.
        let last_id = u64_of(stored).max(u64_of(committed)).max(u64_of(base));
        Ok(Loaded {
            last_id,
            last_ts,
            min_id: first.map(u64_of),
            reserved: u64_of(reserved),
        })
    }

    /// The oldest id of `room` at or above `from` that is still retained
    /// (`ts >= cutoff`): where the room's history starts, for telling a
    /// crash's skipped ids from entries retention dropped.
    pub fn first_retained(&self, room: &str, from: u64, cutoff: Option<i64>) -> rusqlite::Result<Option<u64>> {
        let conn = self.conn();
        let id: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM messages WHERE room = ?1 AND id >= ?2 AND ts >= ?3
                 ORDER BY id LIMIT 1",
            )?
            .query_row(params![room, i64_of(from), cutoff.unwrap_or(i64::MIN)], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(id.map(u64_of))
    }

    /// Entries of `room` with `from <= id < below` and `ts >= cutoff`,
    /// oldest first; the first `limit` of them, or the last `limit` when
    /// `newest` is set.
    pub fn range(
        &self,
        room: &str,
        from: u64,
        below: u64,
        cutoff: Option<i64>,
        limit: usize,
        newest: bool,
    ) -> rusqlite::Result<Vec<Entry>> {
        let sql = if newest {
            "SELECT id, ts, nick, text, user, event FROM messages
             WHERE room = ?1 AND id >= ?2 AND id < ?3 AND ts >= ?4
             ORDER BY id DESC LIMIT ?5"
        } else {
            "SELECT id, ts, nick, text, user, event FROM messages
             WHERE room = ?1 AND id >= ?2 AND id < ?3 AND ts >= ?4
             ORDER BY id LIMIT ?5"
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![
                room,
                i64_of(from),
                i64_of(below),
                cutoff.unwrap_or(i64::MIN),
                i64_of(limit as u64)
            ],
            |row| {
                Ok(Entry {
                    id: u64_of(row.get(0)?),
                    ts: row.get(1)?,
                    nick: row.get::<_, String>(2)?.into(),
                    user: row.get::<_, Option<String>>(4)?.map(Arc::from),
                    text: row.get::<_, String>(3)?.into(),
                    event: row.get::<_, Option<String>>(5)?.map(Arc::from),
                })
            },
        )?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if newest {
            out.reverse();
        }
        Ok(out)
    }
}

/// A message from the handles to the writer thread.
pub(super) enum Op {
    /// Store this entry. `seq` counts up per shard, and a shard sends its
    /// entries in `seq` order (under its lock), so the writer can publish a
    /// per-shard "committed up to" mark.
    Insert {
        shard: usize,
        seq: u64,
        room: Arc<str>,
        entry: Entry,
    },
    /// Record that ids of `room` up to `upto` may be handed out (see the
    /// module doc). Sent before the entries it covers, with a `seq` of the
    /// same shard sequence, so "committed up to" covers it too.
    Reserve {
        shard: usize,
        seq: u64,
        room: Arc<str>,
        upto: u64,
    },
    /// Commit everything received so far, then answer.
    Flush(SyncSender<()>),
    /// Commit everything received so far and stop.
    Close,
    /// Stop at once, committing nothing, as if the process were killed:
    /// for the crash tests.
    #[cfg(test)]
    Abandon,
}

/// State shared by the handles and the writer thread.
#[derive(Debug)]
pub(super) struct Shared {
    /// Per shard: every entry with a `seq` up to this is committed (or was
    /// dropped after failing; see [`MAX_COMMIT_ATTEMPTS`]).
    pub committed: Box<[AtomicU64]>,
    /// Entries committed since open.
    pub committed_total: AtomicU64,
    /// Transactions committed since open.
    pub commits: AtomicU64,
    /// Failed commit attempts since open.
    pub write_errors: AtomicU64,
    /// Entries given up on after [`MAX_COMMIT_ATTEMPTS`] failed commits.
    pub dropped: AtomicU64,
    /// Woken at each commit, for readers waiting on `committed`.
    pub progress: (Mutex<()>, Condvar),
    /// Told how long each commit took (the metrics' history write latency).
    pub commit_observer: std::sync::OnceLock<CommitObserver>,
}

/// A callback given each commit's duration.
pub(crate) struct CommitObserver(pub Box<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

impl Shared {
    pub fn new(shards: usize) -> Self {
        Shared {
            committed: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            committed_total: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            progress: (Mutex::new(()), Condvar::new()),
            commit_observer: std::sync::OnceLock::new(),
        }
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub rx: Receiver<Op>,
    pub shared: Arc<Shared>,
    pub limits: Limits,
    pub interval: Duration,
    pub clock: Clock,
    /// Run after each commit: entries just committed may now leave the
    /// in-memory tail if it is over its byte cap (see `super::budget`).
    pub after_commit: Box<dyn Fn() + Send>,
}

struct Batch {
    inserts: Vec<(usize, u64, Arc<str>, Entry)>,
    /// Reservations asked for since the last commit: (shard, seq, room, upto).
    reserves: Vec<(usize, u64, Arc<str>, u64)>,
    /// When the oldest entry of the batch arrived: it commits at most one
    /// interval later.
    since: Option<Instant>,
    failures: u32,
}

impl Writer {
    /// The thread's body: collect, commit once per interval, stop when
    /// told or when every handle is gone, committing what is left.
    pub fn run(mut self) {
        let mut batch = Batch {
            inserts: Vec::new(),
            reserves: Vec::new(),
            since: None,
            failures: 0,
        };
        let mut next_sweep = Instant::now() + AGE_SWEEP_PERIOD;
        let mut warned_at = 0;
        loop {
            let now = Instant::now();
            // Check the deadline before receiving: under a steady stream
            // recv_timeout(0) would keep returning entries, never Timeout.
            if let Some(since) = batch.since {
                if now >= since + self.interval {
                    self.commit(&mut batch);
                    continue;
                }
            }
            if now >= next_sweep {
                next_sweep = now + AGE_SWEEP_PERIOD;
                if batch.inserts.is_empty() {
                    self.commit(&mut batch);
                }
            }
            let deadline = match batch.since {
                Some(since) => (since + self.interval).min(next_sweep),
                None => next_sweep,
            };
            match self.rx.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(Op::Insert {
                    shard,
                    seq,
                    room,
                    entry,
                }) => {
                    batch.since.get_or_insert_with(Instant::now);
                    batch.inserts.push((shard, seq, room, entry));
                    if batch.inserts.len() >= warned_at + BACKLOG_WARN {
                        warned_at = batch.inserts.len();
                        tracing::warn!(
                            pending = batch.inserts.len(),
                            path = %self.path.display(),
                            "history writer is behind: entries wait in memory for SQLite"
                        );
                    }
                }
                Ok(Op::Reserve { shard, seq, room, upto }) => {
                    batch.since.get_or_insert_with(Instant::now);
                    batch.reserves.push((shard, seq, room, upto));
                }
                Ok(Op::Flush(ack)) => {
                    self.commit_until_done(&mut batch);
                    let _ = ack.send(());
                }
                Ok(Op::Close) | Err(RecvTimeoutError::Disconnected) => {
                    self.commit_until_done(&mut batch);
                    self.release_reservations();
                    return;
                }
                #[cfg(test)]
                Ok(Op::Abandon) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if batch.inserts.is_empty() {
                warned_at = 0;
            }
        }
    }

    /// At a clean stop, with everything committed: lowers each room's
    /// reservation to its last committed id (or this run's base, which
    /// still covers what a crashed earlier run may have handed out), so the
    /// next run continues without a gap. Skipped if any entry was dropped
    /// (its id was handed out but is not in `last_id`): then the next run
    /// skips instead.
    fn release_reservations(&mut self) {
        if self.shared.dropped.load(Ordering::Relaxed) > 0 {
            return;
        }
        if let Err(e) = self
            .conn
            .execute("UPDATE room_seq SET reserved_upto = max(last_id, run_base)", [])
        {
            tracing::warn!(
                path = %self.path.display(),
                "cannot release id reservations; ids will skip at the next start: {e}"
            );
        }
    }

    /// Commits, retrying a failing batch until it lands or is given up.
    fn commit_until_done(&mut self, batch: &mut Batch) {
        self.commit(batch);
        while !batch.inserts.is_empty() || !batch.reserves.is_empty() {
            std::thread::sleep(self.interval.min(Duration::from_millis(100)));
            self.commit(batch);
        }
    }

    /// One transaction: the batch's inserts, count retention for the rooms
    /// in it, age retention for all rooms. On failure the batch is kept for
    /// the next attempt, up to [`MAX_COMMIT_ATTEMPTS`].
    fn commit(&mut self, batch: &mut Batch) {
        let cutoff = self.limits.cutoff(self.clock.now_ms());
        if batch.inserts.is_empty() && batch.reserves.is_empty() && cutoff.is_none() {
            return;
        }
        let started = Instant::now();
        match self.transaction(&batch.inserts, &batch.reserves, cutoff) {
            Ok(()) => {
                if let Some(observer) = self.shared.commit_observer.get() {
                    (observer.0)(started.elapsed());
                }
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .committed_total
                    .fetch_add(batch.inserts.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                batch.failures += 1;
                if batch.failures < MAX_COMMIT_ATTEMPTS {
                    tracing::warn!(
                        path = %self.path.display(),
                        entries = batch.inserts.len(),
                        reservations = batch.reserves.len(),
                        attempt = batch.failures,
                        "history commit failed, will retry: {e}"
                    );
                    return;
                }
                tracing::error!(
                    path = %self.path.display(),
                    entries = batch.inserts.len(),
                    "history commit failed {MAX_COMMIT_ATTEMPTS} times, dropping these entries: {e}"
                );
                self.shared
                    .dropped
                    .fetch_add(batch.inserts.len() as u64, Ordering::Relaxed);
            }
        }
        let mut marks: HashMap<usize, u64> = HashMap::new();
        let seqs = batch.inserts.iter().map(|(shard, seq, _, _)| (shard, seq));
        for (shard, seq) in seqs.chain(batch.reserves.iter().map(|(shard, seq, _, _)| (shard, seq))) {
            let mark = marks.entry(*shard).or_insert(0);
            *mark = (*mark).max(*seq);
        }
        for (shard, seq) in marks {
            if let Some(committed) = self.shared.committed.get(shard) {
                committed.fetch_max(seq, Ordering::Release);
            }
        }
        batch.inserts.clear();
        batch.reserves.clear();
        batch.since = None;
        batch.failures = 0;
        (self.after_commit)();
        let (lock, cvar) = &self.shared.progress;
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        cvar.notify_all();
    }

    fn transaction(
        &mut self,
        inserts: &[(usize, u64, Arc<str>, Entry)],
        reserves: &[(usize, u64, Arc<str>, u64)],
        cutoff: Option<i64>,
    ) -> rusqlite::Result<()> {
        let max_messages = self.limits.max_messages as u64;
        let tx = self.conn.transaction()?;
        {
            // OR REPLACE: an id is never reused while its row exists, except
            // if a room's first-touch read failed; then a later write must
            // not wedge the writer on a key conflict.
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO messages (room, id, ts, nick, text, user, event)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut newest: HashMap<&str, u64> = HashMap::new();
            for (_, _, room, e) in inserts {
                insert.execute(params![
                    room.as_ref(),
                    i64_of(e.id),
                    e.ts,
                    e.nick.as_ref(),
                    e.text.as_ref(),
                    e.user.as_deref(),
                    e.event.as_deref()
                ])?;
                let last = newest.entry(room.as_ref()).or_insert(0);
                *last = (*last).max(e.id);
            }
            let mut trim = tx.prepare_cached("DELETE FROM messages WHERE room = ?1 AND id <= ?2")?;
            for (room, last) in &newest {
                let last = *last;
                if last > 0 && last.saturating_sub(max_messages) > 0 {
                    trim.execute(params![room, i64_of(last - max_messages)])?;
                }
            }
            // Per room: the highest id committed, and the reservation
            // (never below what is committed, so `reserved_upto` alone
            // bounds every id handed out when the writer keeps up).
            let mut seq: HashMap<&str, (u64, u64)> =
                newest.iter().map(|(room, last)| (*room, (*last, *last))).collect();
            for (_, _, room, upto) in reserves {
                let row = seq.entry(room.as_ref()).or_insert((0, 0));
                row.1 = row.1.max(*upto);
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO room_seq (room, last_id, reserved_upto, run_base) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (room) DO UPDATE SET
                     last_id = max(last_id, excluded.last_id),
                     reserved_upto = max(reserved_upto, excluded.reserved_upto)",
            )?;
            for (room, (last, reserved)) in seq {
                upsert.execute(params![room, i64_of(last), i64_of(reserved)])?;
            }
            if let Some(cutoff) = cutoff {
                tx.prepare_cached("DELETE FROM messages WHERE ts < ?1")?
                    .execute(params![cutoff])?;
            }
        }
        tx.commit()
    }
}
