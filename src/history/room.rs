//! One room's in-memory history state: the id counter and the cache of its
//! newest entries, with the retention arithmetic. Pure logic, no I/O, so it
//! is tested without a database.

use std::collections::VecDeque;

use super::budget::cost;
use super::sqlite::{MAX_RESERVE_BLOCK, RESERVE_BLOCK};
use super::Entry;

/// Retention and cache limits, resolved once at open.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Retention by count: at most this many entries per room survive.
    pub max_messages: usize,
    /// Retention by age in milliseconds; `None` keeps entries forever.
    pub max_age_ms: Option<i64>,
    /// Most entries kept in the cache of one room.
    pub cache_cap: usize,
    /// The cache is the only store (memory and none backends): whatever
    /// leaves the cache is gone, so the floor follows it.
    pub cache_is_store: bool,
}

impl Limits {
    /// Timestamps older than this (strictly) are expired at `now`.
    pub fn cutoff(&self, now: i64) -> Option<i64> {
        self.max_age_ms.map(|age| now.saturating_sub(age))
    }
}

/// What the history knows about one room.
///
/// Invariants, kept by [`RoomState::push`] and [`RoomState::prune`]:
/// - ids increase by one within a run: every id the room hands out after
///   its state is loaded follows the previous one, and none below `floor`
///   is still retained. Across a crash they may skip (a load starts above
///   every id the crashed run may have handed out, see `sqlite`): ids in
///   `floor..=last_id` that were never stored are such a skip, never
///   something retention dropped;
/// - the cache holds a contiguous run of ids that ends at `last_id` (when
///   not empty) and starts at or above `floor`;
/// - timestamps never decrease with the id, so age retention only ever
///   removes a prefix.
#[derive(Debug)]
pub(super) struct RoomState {
    /// The last id handed out in this room, 0 before the first.
    pub last_id: u64,
    /// Timestamp of the last entry: the next one is never older.
    pub last_ts: i64,
    /// The lowest id that may still be retained; everything below is gone.
    pub floor: u64,
    /// The newest entries, oldest first, including uncommitted ones.
    pub cache: VecDeque<Entry>,
    /// For the sqlite backend, the writer sequence number of each cached
    /// entry (0: never sent, so never waited for), in step with `cache`:
    /// the memory cap may drop an entry only once its number is committed.
    /// Empty when the cache is the store.
    seqs: VecDeque<u64>,
    /// What the cached entries cost, by [`cost`]: the room's share of the
    /// memory cap.
    pub bytes: usize,
    /// The writer sequence number of the newest entry of this room that
    /// was sent to the writer (0: none).
    pub last_seq: u64,
    /// The writer sequence number that must be committed before the
    /// database holds every retained entry older than the cache front.
    pub evicted_seq: u64,
    /// The highest id reserved for this room: committed when loaded, or
    /// asked of the writer since (see [`RoomState::reserve`]).
    pub reserved: u64,
    /// How far ahead the next reservation reaches; doubles while the writer
    /// lags behind the room.
    pub block: u64,
    /// The writer sequence number of the last reservation asked for (0:
    /// none this run): once committed, `reserved` is durable.
    pub reserve_seq: u64,
    /// Ids up to here were never this room's: it was created above the
    /// ids of rooms the memory or none store forgot (0: none skipped).
    /// Missing, they are nothing a catch-up lost.
    pub skipped_to: u64,
}

impl RoomState {
    /// A room never seen before.
    #[cfg(test)]
    pub fn empty() -> Self {
        Self::loaded(0, 0, None, 0)
    }

    /// A room as found in the database: the last id (the highest the room
    /// may have used) and its timestamp, the lowest id still stored, and
    /// the committed reservation.
    pub fn loaded(last_id: u64, last_ts: i64, min_id: Option<u64>, reserved: u64) -> Self {
        RoomState {
            last_id,
            last_ts,
            floor: min_id.unwrap_or(last_id.saturating_add(1)),
            cache: VecDeque::new(),
            seqs: VecDeque::new(),
            bytes: 0,
            last_seq: 0,
            evicted_seq: 0,
            reserved: reserved.max(last_id),
            block: RESERVE_BLOCK,
            reserve_seq: 0,
            skipped_to: 0,
        }
    }

    /// A new room of the memory or none store, counting on above `after`
    /// (the ids of the rooms it forgot).
    pub fn after_forgotten(after: u64) -> Self {
        RoomState {
            skipped_to: after,
            ..Self::loaded(after, 0, None, 0)
        }
    }

    /// Whether handing out `id` calls for a new reservation, and up to
    /// which id: when less than half a block is left above `id`. If the
    /// previous reservation is not committed yet (`previous_committed`
    /// false: the room uses ids faster than the writer commits), the block
    /// doubles, up to [`MAX_RESERVE_BLOCK`], so that reservations stay
    /// ahead of busy rooms. Records the reservation as asked for.
    pub fn reserve(&mut self, id: u64, previous_committed: bool) -> Option<u64> {
        if self.reserved >= id.saturating_add(self.block / 2) {
            return None;
        }
        if !previous_committed {
            self.block = self.block.saturating_mul(2).min(MAX_RESERVE_BLOCK);
        }
        self.reserved = self.reserved.max(id).saturating_add(self.block);
        Some(self.reserved)
    }

    /// The id and timestamp for a new entry at `now`: ids count up by one,
    /// timestamps never go backwards even when the wall clock does (so age
    /// retention stays a prefix cut and `since` stays ordered by time too).
    pub fn next(&self, now: i64) -> (u64, i64) {
        (self.last_id.saturating_add(1), now.max(self.last_ts))
    }

    /// Records a new entry (from [`RoomState::next`]) and trims the cache
    /// to its cap. `seq` is the writer sequence number when the entry was
    /// sent to a writer. Returns whether older entries left the cache.
    pub fn push(&mut self, entry: Entry, seq: Option<u64>, limits: &Limits) -> bool {
        self.last_id = entry.id;
        self.last_ts = entry.ts;
        if let Some(seq) = seq {
            self.last_seq = seq;
        }
        self.bytes += cost(&entry);
        self.cache.push_back(entry);
        if !limits.cache_is_store {
            self.seqs.push_back(seq.unwrap_or(0));
        }
        let mut evicted = false;
        while self.cache.len() > limits.cache_cap {
            if let Some(old) = self.pop_front() {
                evicted = true;
                if limits.cache_is_store {
                    self.floor = self.floor.max(old.id.saturating_add(1));
                }
            }
        }
        if evicted {
            if let Some(seq) = seq {
                // Conservative: the evicted entries were sent before `seq`,
                // so once `seq` is committed they are too.
                self.evicted_seq = seq;
            }
        }
        evicted
    }

    /// Applies retention at `now`: raises the floor to what the count
    /// limit allows, drops expired entries from the front of the cache.
    pub fn prune(&mut self, limits: &Limits, now: i64) {
        let by_count = self
            .last_id
            .saturating_add(1)
            .saturating_sub(limits.max_messages as u64)
            .max(1);
        self.floor = self.floor.max(by_count);
        if let Some(cutoff) = limits.cutoff(now) {
            while let Some(front) = self.cache.front() {
                if front.ts >= cutoff {
                    break;
                }
                // Timestamps grow with ids: everything up to here expired.
                self.floor = self.floor.max(front.id.saturating_add(1));
                self.pop_front();
            }
        }
        while self.cache.front().is_some_and(|e| e.id < self.floor) {
            self.pop_front();
        }
    }

    /// Removes the oldest cached entry, keeping `seqs` and `bytes` in step.
    fn pop_front(&mut self) -> Option<Entry> {
        let old = self.cache.pop_front()?;
        self.seqs.pop_front();
        self.bytes = self.bytes.saturating_sub(cost(&old));
        Some(old)
    }

    /// Empties the cache (the room leaves memory; the database keeps it).
    pub fn clear(&mut self) {
        self.cache = VecDeque::new();
        self.seqs = VecDeque::new();
        self.bytes = 0;
    }

    /// Drops the oldest cached entries until the cache costs at most
    /// `level` bytes, for the memory cap. With the sqlite backend only
    /// entries whose writer sequence number is at most `committed` go (the
    /// file serves them from then on; an uncommitted entry exists nowhere
    /// else a replay could read it); when the cache is the store, the floor
    /// follows, so reads report what went as truncated. Returns the
    /// entries dropped.
    pub fn shed_to(&mut self, level: usize, committed: u64, limits: &Limits) -> usize {
        let mut dropped = 0;
        while self.bytes > level {
            if self.seqs.front().is_some_and(|&seq| seq > committed) {
                break;
            }
            let Some(old) = self.pop_front() else { break };
            dropped += 1;
            if limits.cache_is_store {
                self.floor = self.floor.max(old.id.saturating_add(1));
            }
        }
        dropped
    }

    /// Whether the cache holds every retained entry, so reads need not go
    /// to the database.
    pub fn covered(&self) -> bool {
        match self.cache.front() {
            Some(front) => front.id <= self.floor,
            None => self.floor > self.last_id,
        }
    }

    /// The first id a read for entries after `after_id` would return, if
    /// everything were retained.
    pub fn start_after(&self, after_id: u64) -> u64 {
        after_id.saturating_add(1).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, ts: i64) -> Entry {
        Entry {
            id,
            ts,
            nick: "n".into(),
            user: None,
            text: "t".into(),
            event: None,
        }
    }

    fn limits(max: usize, cache: usize, store: bool) -> Limits {
        Limits {
            max_messages: max,
            max_age_ms: Some(1_000),
            cache_cap: cache,
            cache_is_store: store,
        }
    }

    fn append(room: &mut RoomState, now: i64, seq: Option<u64>, l: &Limits) {
        let (id, ts) = room.next(now);
        room.push(entry(id, ts), seq, l);
        room.prune(l, now);
    }

    #[test]
    fn ids_count_up_and_time_never_goes_back() {
        let l = limits(10, 10, true);
        let mut room = RoomState::empty();
        append(&mut room, 100, None, &l);
        append(&mut room, 50, None, &l);
        let ids: Vec<_> = room.cache.iter().map(|e| (e.id, e.ts)).collect();
        assert_eq!(ids, vec![(1, 100), (2, 100)]);
    }

    #[test]
    fn the_store_cache_moves_the_floor_the_sqlite_cache_does_not() {
        let store = limits(100, 3, true);
        let mut room = RoomState::empty();
        for _ in 0..5 {
            append(&mut room, 0, None, &store);
        }
        assert_eq!(room.floor, 3);
        assert!(room.covered());

        let cache = limits(100, 3, false);
        let mut room = RoomState::empty();
        for seq in 1..=5 {
            append(&mut room, 0, Some(seq), &cache);
        }
        assert_eq!(room.floor, 1);
        assert!(!room.covered());
        assert_eq!(room.evicted_seq, 5);
        assert_eq!(room.last_seq, 5);
    }

    #[test]
    fn count_and_age_retention_raise_the_floor() {
        let l = limits(3, 10, false);
        let mut room = RoomState::empty();
        for now in [0, 10, 20, 30, 40] {
            append(&mut room, now, Some(1), &l);
        }
        assert_eq!(room.floor, 3);
        assert_eq!(room.cache.front().map(|e| e.id), Some(3));
        room.prune(&l, 1_035);
        assert_eq!(room.floor, 5);
        assert_eq!(room.cache.len(), 1);
        room.prune(&l, 5_000);
        assert_eq!(room.floor, 6);
        assert!(room.cache.is_empty());
        assert!(room.covered());
    }

    #[test]
    fn reservations_stay_half_a_block_ahead_and_grow_when_the_writer_lags() {
        let mut room = RoomState::empty();
        assert_eq!(room.reserve(1, true), Some(1 + RESERVE_BLOCK));
        let half = RESERVE_BLOCK / 2;
        for id in 2..=(1 + half) {
            assert_eq!(room.reserve(id, true), None, "id {id}");
        }
        // Less than half a block left: the next block, same size.
        assert_eq!(room.reserve(2 + half, true), Some(1 + 2 * RESERVE_BLOCK));
        assert_eq!(room.block, RESERVE_BLOCK);
        // Half used before the writer committed the previous one: doubles.
        let id = 1 + 2 * RESERVE_BLOCK - half + 1;
        assert_eq!(room.reserve(id, false), Some(1 + 4 * RESERVE_BLOCK));
        assert_eq!(room.block, 2 * RESERVE_BLOCK);
        let mut big = RoomState::empty();
        big.block = MAX_RESERVE_BLOCK;
        big.reserve(1, false);
        assert_eq!(big.block, MAX_RESERVE_BLOCK);
        assert_eq!(big.reserved, 1 + MAX_RESERVE_BLOCK);
    }

    #[test]
    fn a_loaded_room_with_a_fresh_reservation_asks_for_none() {
        let mut room = RoomState::loaded(500, 0, Some(1), 500 + RESERVE_BLOCK);
        assert_eq!(room.reserve(501, true), None);
        // A reservation below the last id (an old file) counts as none.
        let mut old = RoomState::loaded(500, 0, Some(1), 0);
        assert_eq!(old.reserved, 500);
        assert_eq!(old.reserve(501, true), Some(501 + RESERVE_BLOCK));
    }

    #[test]
    fn a_loaded_room_is_not_covered_until_it_is() {
        let room = RoomState::loaded(10, 0, Some(4), 0);
        assert!(!room.covered());
        assert_eq!(room.start_after(0), 4);
        assert_eq!(room.start_after(7), 8);
        assert_eq!(room.start_after(u64::MAX), u64::MAX);
        let empty = RoomState::loaded(0, 0, None, 0);
        assert!(empty.covered());
    }
}
