//! One room's in-memory history state: the id counter and the cache of its
//! newest entries, with the retention arithmetic. Pure logic, no I/O, so it
//! is tested without a database.

use std::collections::VecDeque;

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
/// - ids are contiguous: every id in `floor..=last_id` was assigned, and
///   none below `floor` is still retained;
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
    /// The writer sequence number of the newest entry of this room that
    /// was sent to the writer (0: none).
    pub last_seq: u64,
    /// The writer sequence number that must be committed before the
    /// database holds every retained entry older than the cache front.
    pub evicted_seq: u64,
}

impl RoomState {
    /// A room never seen before.
    pub fn empty() -> Self {
        Self::loaded(0, 0, None)
    }

    /// A room as found in the database: the last id and its timestamp, and
    /// the lowest id still stored.
    pub fn loaded(last_id: u64, last_ts: i64, min_id: Option<u64>) -> Self {
        RoomState {
            last_id,
            last_ts,
            floor: min_id.unwrap_or(last_id.saturating_add(1)),
            cache: VecDeque::new(),
            last_seq: 0,
            evicted_seq: 0,
        }
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
        self.cache.push_back(entry);
        let mut evicted = false;
        while self.cache.len() > limits.cache_cap {
            if let Some(old) = self.cache.pop_front() {
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
                self.cache.pop_front();
            }
        }
        while self.cache.front().is_some_and(|e| e.id < self.floor) {
            self.cache.pop_front();
        }
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
            text: "t".into(),
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
    fn a_loaded_room_is_not_covered_until_it_is() {
        let room = RoomState::loaded(10, 0, Some(4));
        assert!(!room.covered());
        assert_eq!(room.start_after(0), 4);
        assert_eq!(room.start_after(7), 8);
        assert_eq!(room.start_after(u64::MAX), u64::MAX);
        let empty = RoomState::loaded(0, 0, None);
        assert!(empty.covered());
    }
}
