//! The memory cap over every room's in-memory history
//! (`--history-max-bytes`): the whole store with `--history memory`, the
//! tail that serves replays with `--history sqlite`.
//!
//! # Who loses what: a fair share, oldest first within a room
//! When the cached entries of all rooms cost more than the cap, the rooms
//! that hold the most give back first: every room is cut to a common level
//! (the largest level at which the excess is freed), so a room that holds
//! less than that level loses nothing, and within a room the oldest
//! entries go first. The alternative, dropping the globally oldest entries
//! whatever their room, lets one flooding room (ten clients pushing 1 MB
//! texts) wipe out the recent history of every quiet room, where the last
//! message of an hour ago may be all there is; it would also need a global
//! age queue, one more entry and one more lock per message. The level needs
//! no bookkeeping on the hot path: only an overflow scans the rooms' byte
//! counts.
//!
//! # Amortised
//! An overflow frees down to [`low_water`] (15/16 of the cap), not just
//! below the cap, so the scan runs about once per sixteenth of the cap
//! appended, not at every message.
//!
//! # Never losing an uncommitted message
//! With SQLite an entry leaves memory only once the writer has committed
//! it: the file then serves it to replays that reach back past the tail
//! (see `History::since`), so a catch-up has no gap. An uncommitted entry
//! stays (it is still in the writer's queue too, sharing its text, so
//! dropping it from the tail would free almost nothing); the writer sheds
//! again after each commit, so the excess lasts at most one commit. Until
//! then appends do not rescan for every message while nothing can go: the
//! next scan waits for another sixteenth of the cap or the next commit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::room::Limits;
use super::sqlite::Shared;
use super::{lock, Entry, Shard, Slot};

/// The default cap, 64 MiB: a bounded share of a default server (10,000
/// connections at about 730 B idle are 7 MiB; one slow client's queue may
/// hold 4 MiB), yet room for the full `--join-history` of 50 messages of
/// the largest wshub.v1 text (4 KiB) in 300 rooms, or about 300,000 chat
/// messages of a typical size (100 B and the overhead below).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// What one entry costs besides its nickname, user id and text: its place
/// in the cache (64 B, and 8 B of writer sequence number with SQLite) and
/// the shared strings' headers (16 B each), rounded up for the allocator.
pub(super) const ENTRY_OVERHEAD: usize = 112;

/// What a room held in memory costs besides its entries: its map entry,
/// name and state (measured: about 660 B a room for rooms of one small
/// event, the event included). Counted so that many rooms of a few
/// entries each cannot hold several times the cap.
pub(super) const SLOT_COST: usize = 512;

/// How often, at most, the shedding is logged while it goes on.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What an entry costs the memory cap.
pub(super) fn cost(entry: &Entry) -> usize {
    let len = |s: &Option<std::sync::Arc<str>>| s.as_ref().map_or(0, |s| s.len());
    entry.text.len() + entry.nick.len() + len(&entry.user) + len(&entry.event) + ENTRY_OVERHEAD
}

/// What an overflow frees down to: 15/16 of the cap.
pub(super) fn low_water(max: usize) -> usize {
    max - max / 16
}

/// The largest level `L` such that cutting every room above `L` down to
/// `L` frees at least `excess` bytes (0 if even emptying all is not
/// enough). `sizes` is reordered.
pub(super) fn level(sizes: &mut [usize], excess: usize) -> usize {
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut prefix = 0usize;
    for k in 1..=sizes.len() {
        prefix += sizes[k - 1];
        let next = sizes.get(k).copied().unwrap_or(0);
        // Freed by cutting the k largest rooms down to `next`.
        if prefix - k * next >= excess {
            return (prefix - excess) / k;
        }
    }
    0
}

/// Every room's in-memory state, and the byte budget over it; shared by
/// the handles and the SQLite writer thread (which sheds after commits).
pub(super) struct Rooms {
    pub shards: Box<[Mutex<Shard>]>,
    /// The cap, in [`cost`] bytes.
    pub max_bytes: usize,
    /// What the cached entries of all rooms cost now.
    pub held: AtomicUsize,
    /// Rooms held in memory, at [`SLOT_COST`] each against the cap.
    slots: AtomicUsize,
    /// An append sheds again only once `held` reaches this (see the
    /// module doc); 0 after a shed that got below the cap.
    rearm: AtomicUsize,
    /// Entries dropped from memory by the cap, since open.
    pub dropped: AtomicU64,
    /// One shedder at a time; what the log last said.
    shedding: Mutex<ShedLog>,
    /// The highest id of a room the memory or none store forgot (see
    /// [`Rooms::forget`]): new rooms count on from here.
    pub forgotten_up_to: AtomicU64,
}

#[derive(Default)]
struct ShedLog {
    logged_at: Option<Instant>,
    /// Entries dropped since the last log line.
    unlogged: u64,
}

impl Rooms {
    pub fn new(shards: usize, max_bytes: usize) -> Self {
        Rooms {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            max_bytes,
            held: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            rearm: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            shedding: Mutex::new(ShedLog::default()),
            forgotten_up_to: AtomicU64::new(0),
        }
    }

    /// Forgets `room` of `shard` (memory and none stores: a closed room
    /// that keeps nothing), or every room name ever used would stay in
    /// memory. Its ids must not repeat when it comes back, so every room
    /// created from then on counts on above the highest id forgotten.
    pub fn forget(&self, shard: &mut Shard, room: &str) {
        if let Some((_, slot)) = self.release(shard, room) {
            self.forgotten_up_to.fetch_max(slot.state.last_id, Ordering::AcqRel);
        }
    }

    /// Puts a room's state in `shard`, counted against the cap: the only
    /// way in, so that the count of rooms stays true.
    pub fn hold(&self, shard: &mut Shard, name: Arc<str>, slot: Slot) {
        if shard.rooms.insert(name, slot).is_none() {
            self.slots.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes a room's state out of `shard`, with what it cost the cap: the
    /// only way out, as [`Rooms::hold`] is the way in.
    pub fn release(&self, shard: &mut Shard, room: &str) -> Option<(Arc<str>, Slot)> {
        let (name, slot) = shard.rooms.remove_entry(room)?;
        self.account(slot.state.bytes, 0);
        self.slots.fetch_sub(1, Ordering::Relaxed);
        Some((name, slot))
    }

    /// What counts against the cap: the entries and the rooms.
    pub fn occupied(&self) -> usize {
        let slots = self.slots.load(Ordering::Relaxed).saturating_mul(SLOT_COST);
        self.held.load(Ordering::Relaxed).saturating_add(slots)
    }

    /// Records that a room's cache went from `before` to `after` bytes.
    pub fn account(&self, before: usize, after: usize) {
        if after > before {
            self.held.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// After an append: sheds if the cap is passed (and a shed could
    /// help, see the module doc). Called without any shard lock held.
    pub fn after_append(&self, shared: &Shared, limits: &Limits) {
        let held = self.occupied();
        if held > self.max_bytes && held >= self.rearm.load(Ordering::Relaxed) {
            self.shed(shared, limits);
        }
    }

    /// Frees memory down to the low-water mark, from the rooms that hold
    /// the most (see the module doc). Locks one shard at a time, never
    /// while holding one, so it cannot deadlock with appends.
    pub fn shed(&self, shared: &Shared, limits: &Limits) {
        let mut log = lock(&self.shedding);
        let held = self.occupied();
        if held <= self.max_bytes {
            return;
        }
        let excess = held - low_water(self.max_bytes);
        let mut rooms: Vec<(usize, Arc<str>, usize)> = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let shard = lock(shard);
            for (name, slot) in &shard.rooms {
                if slot.state.bytes > 0 {
                    rooms.push((index, Arc::clone(name), slot.state.bytes));
                }
            }
        }
        let mut sizes: Vec<usize> = rooms.iter().map(|r| r.2).collect();
        let level = level(&mut sizes, excess);
        let mut dropped = 0;
        for (index, name, bytes) in rooms {
            if bytes <= level {
                continue;
            }
            let committed = shared.committed.get(index).map_or(0, |c| c.load(Ordering::Acquire));
            let mut shard = lock(&self.shards[index]);
            if let Some(slot) = shard.rooms.get_mut(&name) {
                let before = slot.state.bytes;
                dropped += slot.state.shed_to(level, committed, limits);
                self.account(before, slot.state.bytes);
                if slot.closed && slot.state.cache.is_empty() {
                    self.forget(&mut shard, &name);
                }
            }
        }
        let after = self.occupied();
        let rearm = if after > self.max_bytes {
            after.saturating_add(self.max_bytes / 16)
        } else {
            0
        };
        self.rearm.store(rearm, Ordering::Relaxed);
        self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        log.unlogged += dropped as u64;
        let due = log.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if log.unlogged > 0 && due {
            let first = log.logged_at.is_none();
            log.logged_at = Some(Instant::now());
            tracing::warn!(
                max_bytes = self.max_bytes,
                held_bytes = after,
                dropped = log.unlogged,
                "history memory is over --history-max-bytes: the oldest messages of the rooms that hold the \
                 most leave memory{}",
                if first {
                    " (memory store: they are gone, catch-ups get history_truncated; sqlite: they are still in \
                     the file); logged at most once a minute"
                } else {
                    ""
                }
            );
            log.unlogged = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_cuts_the_largest_rooms_first_and_frees_enough() {
        let cases: &[(&[usize], usize, usize)] = &[
            // One room above the others gives back alone while it can.
            (&[100, 10, 10], 50, 50),
            (&[100, 10, 10], 90, 10),
            // Then the next ones join it at a common level.
            (&[100, 10, 10], 95, 8),
            (&[100, 10, 10], 120, 0),
            (&[100, 10, 10], 500, 0),
            (&[30, 30, 30], 30, 20),
            (&[], 10, 0),
            (&[7], 0, 7),
        ];
        for &(sizes, excess, expected) in cases {
            let mut s = sizes.to_vec();
            let level = level(&mut s, excess);
            assert_eq!(level, expected, "{sizes:?} excess {excess}");
            let freed: usize = sizes.iter().map(|&b| b.saturating_sub(level)).sum();
            let total: usize = sizes.iter().sum();
            assert!(freed >= excess.min(total), "{sizes:?} excess {excess}: frees {freed}");
        }
    }

    #[test]
    fn low_water_is_below_the_cap() {
        assert_eq!(low_water(1600), 1500);
        assert_eq!(low_water(10), 10);
    }
}
