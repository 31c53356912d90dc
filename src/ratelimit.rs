//! Rate limits: per connection, token buckets for messages and bytes; per
//! client address, a cap on concurrent connections.
//!
//! Two ways to hold a connection to its rate, because the two kinds of
//! client can be told different things:
//! - a `wshub.v1` client has error frames, so a message over its limits is
//!   dropped and answered with `rate_limited` (`RateState::check`);
//! - a raw client (`/echo`, `/ws`) has no way to hear "dropped", so it is
//!   never robbed: every message it sends is delivered and charged, the
//!   buckets may go into debt, and its socket is not read until the debt
//!   is paid back (`RateState::charge_message`, `RateState::resume_in_ms`).
//!   TCP then slows the sender down; the rates mean the same.
//!
//! The buckets run on every received message, so they are plain arithmetic
//! on three 4-byte fields kept in the connection (no allocation, no lock,
//! no timer): the buckets are refilled on each socket read from the time
//! since the previous read, which the keepalive records anyway, so they
//! keep no time of their own. Times are milliseconds on the connection's
//! `tokio::time::Instant` clock (the keepalive's), so tests can drive them
//! with a paused clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// How long a client may stay over its limits before it is closed with
/// 1008: a short burst is forgiven (its excess is only dropped), a flood is
/// not. The time counts from the first dropped message and restarts once
/// the client is back under its limits (a message passes and another one
/// could pass right away).
pub const PERSIST_MS: u32 = 2_000;

/// The per-connection limits, shared by every connection (`--rate-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Messages per second a connection may send on average; 0: unlimited.
    pub messages_per_second: u32,
    /// Messages a connection may send at once after being quiet.
    pub message_burst: u32,
    /// Message bytes (payloads) per second; 0: unlimited.
    pub bytes_per_second: u64,
    /// Bytes a connection may send at once: at least one largest message,
    /// or a message at `--max-message-size` could never pass.
    pub byte_burst: u64,
}

impl RateLimits {
    /// No limit at all (what tests and benchmarks use).
    pub const UNLIMITED: RateLimits = RateLimits {
        messages_per_second: 0,
        message_burst: 0,
        bytes_per_second: 0,
        byte_burst: 0,
    };

    /// Limits of `messages_per_second` with `message_burst`, and
    /// `bytes_per_second` with a burst of one second's worth but never less
    /// than `max_message_size`.
    pub fn new(messages_per_second: u32, message_burst: u32, bytes_per_second: u64, max_message_size: usize) -> Self {
        RateLimits {
            messages_per_second,
            message_burst,
            bytes_per_second,
            byte_burst: bytes_per_second.max(max_message_size as u64),
        }
    }

    fn is_unlimited(&self) -> bool {
        self.messages_per_second == 0 && self.bytes_per_second == 0
    }
}

/// Bytes a throttled raw connection may read per message token it has
/// left: the smallest client frame (2 bytes of header, 4 of mask), so a
/// read cannot hold more new messages than the buckets can pay for and a
/// quick sender's messages go out at the configured rate, not in one
/// clump and then a long pause (a 64 KiB read can hold ten thousand tiny
/// frames).
pub(crate) const READ_BYTES_PER_TOKEN: usize = 6;

/// Smallest read of a raw connection near its limits.
pub(crate) const MIN_THROTTLED_READ: usize = 16;

/// Byte tokens a raw connection paused for its byte rate waits for before
/// reading again: reads worth making, not a trickle of tiny ones.
pub(crate) const RESUME_BYTES: u64 = 16 * 1024;

/// Most a `wshub.v1` connection reads at once while it is over its limits:
/// everything in one read is decoded (and inflated) before a pause can
/// begin, and a 64 KiB read of compressed zeros would inflate to many
/// megabytes that are then only dropped. A client being dropped loses
/// nothing by smaller reads.
pub(crate) const OVER_LIMITS_READ: usize = 1024;

/// What to do with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits: deliver it.
    Pass,
    /// Over a limit: drop it (and tell the client, if the protocol can).
    Drop,
    /// Over a limit for [`PERSIST_MS`] without a pause: drop it and close
    /// the connection with 1008.
    GiveUp,
}

/// "No violation yet" in the millisecond fields.
const NONE: u32 = u32::MAX;

/// One connection's buckets: 12 bytes.
#[derive(Debug, Clone)]
pub(crate) struct RateState {
    messages: f32,
    bytes: f32,
    /// When the client went over its limits (`NONE`: it is under them).
    over_since: u32,
}

impl RateState {
    /// Full buckets: a new client may send its burst at once.
    pub(crate) fn new(limits: &RateLimits) -> Self {
        RateState {
            messages: limits.message_burst as f32,
            bytes: limits.byte_burst as f32,
            over_since: NONE,
        }
    }

    /// Whether the byte bucket is in debt: a connection that is not
    /// throttled gets there only by the inflating of messages it had
    /// dropped, and is not read until the debt is paid.
    pub(crate) fn in_debt(&self) -> bool {
        self.bytes < 0.0
    }

    /// Whether the client is in an episode over its limits (a message was
    /// dropped or charged into debt, and none has found room to spare
    /// since).
    pub(crate) fn is_over(&self) -> bool {
        self.over_since != NONE
    }

    /// The connection's clock moved forward by `by` ms (see
    /// `Deadlines::keep_in_range`): an episode's start moves with it.
    pub(crate) fn rebase(&mut self, by: u32) {
        if self.over_since != NONE {
            self.over_since -= by;
        }
    }

    /// When the episode over the limits started, if one is on.
    pub(crate) fn over_since(&self) -> Option<u32> {
        (self.over_since != NONE).then_some(self.over_since)
    }

    /// Adds what `elapsed_ms` earns, up to the bursts.
    pub(crate) fn refill(&mut self, limits: &RateLimits, elapsed_ms: u32) {
        if limits.is_unlimited() || elapsed_ms == 0 {
            return;
        }
        let elapsed = elapsed_ms as f32 / 1000.0;
        if limits.messages_per_second > 0 {
            let earned = elapsed * limits.messages_per_second as f32;
            self.messages = (self.messages + earned).min(limits.message_burst as f32);
        }
        if limits.bytes_per_second > 0 {
            let earned = elapsed * limits.bytes_per_second as f32;
            self.bytes = (self.bytes + earned).min(limits.byte_burst as f32);
        }
    }

    /// Accounts one message of `len` bytes received at `now_ms`
    /// (milliseconds since the connection started; the buckets are already
    /// refilled up to then), of which inflating it made `inflated`. A
    /// dropped message takes no tokens, so a client that slows down is
    /// served again at once; except for what inflating it cost, which is
    /// charged into debt: a dropped message of compressed zeros is
    /// megabytes of work for a few bytes sent, and the debt pauses the
    /// connection's reads ([`RateState::in_debt`]).
    pub(crate) fn check(&mut self, limits: &RateLimits, now_ms: u32, len: usize, inflated: usize) -> Verdict {
        if limits.is_unlimited() {
            return Verdict::Pass;
        }
        let len = len as f32;
        let fits = |messages: f32, bytes: f32| {
            (limits.messages_per_second == 0 || messages >= 1.0) && (limits.bytes_per_second == 0 || bytes >= len)
        };
        if fits(self.messages, self.bytes) {
            if limits.messages_per_second > 0 {
                self.messages -= 1.0;
            }
            if limits.bytes_per_second > 0 {
                self.bytes -= len;
            }
            // Back under the limits only with room to spare: a flood that
            // gets a message through now and then is still a flood.
            if fits(self.messages, self.bytes) {
                self.over_since = NONE;
            }
            return Verdict::Pass;
        }
        if limits.bytes_per_second > 0 {
            self.bytes -= inflated as f32;
        }
        if self.over_since == NONE {
            self.over_since = now_ms;
        }
        if now_ms.saturating_sub(self.over_since) >= PERSIST_MS {
            Verdict::GiveUp
        } else {
            Verdict::Drop
        }
    }

    /// Charges one message that is delivered whatever the buckets hold (a
    /// raw client's): they may go into debt, which
    /// [`RateState::resume_in_ms`] turns into a pause in reading. Returns
    /// true when this starts an episode over the limits (for one log line
    /// per episode); an episode ends once the buckets have room to spare
    /// after a charge.
    pub(crate) fn charge_message(&mut self, limits: &RateLimits, now_ms: u32) -> bool {
        if limits.messages_per_second > 0 {
            self.messages -= 1.0;
        }
        self.note_episode(limits, now_ms, true)
    }

    /// Charges `n` bytes read from a raw client's socket. Its byte rate
    /// counts what it sends on the wire (frame headers, and compressed
    /// payloads as sent), because reading is what is paused. Returns true
    /// when this starts an episode, as [`RateState::charge_message`].
    pub(crate) fn charge_read(&mut self, limits: &RateLimits, now_ms: u32, n: usize) -> bool {
        if limits.bytes_per_second > 0 {
            self.bytes -= n as f32;
        }
        // A read comes right after a refill, when the buckets look their
        // best: only a message charged with room to spare ends an episode.
        self.note_episode(limits, now_ms, false)
    }

    fn note_episode(&mut self, limits: &RateLimits, now_ms: u32, may_end: bool) -> bool {
        if limits.is_unlimited() {
            return false;
        }
        if self.resume_in_ms(limits).is_none() {
            if may_end {
                self.over_since = NONE;
            }
            false
        } else if self.over_since == NONE {
            self.over_since = now_ms;
            true
        } else {
            false
        }
    }

    /// How long a raw client must wait, from the latest refill, before it
    /// may read again: until one message is paid for, and enough bytes for
    /// a read worth making ([`RESUME_BYTES`], or half the burst if less).
    /// `None` while it can read on.
    pub(crate) fn resume_in_ms(&self, limits: &RateLimits) -> Option<u32> {
        let mut wait = 0.0f32;
        if limits.messages_per_second > 0 && self.messages < 1.0 {
            wait = wait.max((1.0 - self.messages) / limits.messages_per_second as f32);
        }
        let resume_bytes = (limits.byte_burst / 2).min(RESUME_BYTES) as f32;
        if limits.bytes_per_second > 0 && self.bytes < resume_bytes {
            wait = wait.max((resume_bytes - self.bytes) / limits.bytes_per_second as f32);
        }
        (wait > 0.0).then(|| ((wait * 1000.0).ceil() as u32).max(1))
    }

    /// The most a raw client's next read may take, of `full`: no more bytes
    /// than it has byte tokens, and no more than the rest of the frame under
    /// way (`frame_left`) plus [`READ_BYTES_PER_TOKEN`] for each message
    /// token, so that a read cannot bring in many more messages than the
    /// buckets pay for.
    pub(crate) fn read_limit(&self, limits: &RateLimits, full: usize, frame_left: u64) -> usize {
        let mut limit = full;
        if limits.messages_per_second > 0 {
            let tokens = self.messages.max(0.0) as usize;
            let new_frames = tokens.saturating_mul(READ_BYTES_PER_TOKEN).max(MIN_THROTTLED_READ);
            let frame_left = usize::try_from(frame_left).unwrap_or(usize::MAX);
            limit = limit.min(frame_left.saturating_add(new_frames));
        }
        if limits.bytes_per_second > 0 {
            limit = limit.min((self.bytes.max(0.0) as usize).max(MIN_THROTTLED_READ));
        }
        limit.clamp(MIN_THROTTLED_READ.min(full), full)
    }
}

/// Concurrent connections per client address (`--max-connections-per-ip`),
/// kept by the hub.
///
/// One map entry per address with live connections: an entry goes with
/// its last connection, so the map's size follows the clients, not
/// history.
#[derive(Debug)]
pub struct PerIpLimit {
    max: AtomicU32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl PerIpLimit {
    /// A limit of `max` connections per address; 0 means no limit.
    pub fn new(max: usize) -> Arc<Self> {
        let limit = PerIpLimit {
            max: AtomicU32::new(0),
            counts: Mutex::new(HashMap::new()),
        };
        limit.set_max(max);
        Arc::new(limit)
    }

    /// Sets the limit (at start-up, before any connection).
    pub fn set_max(&self, max: usize) {
        self.max
            .store(u32::try_from(max).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Takes a slot for `ip`, or `None` when it has the most allowed
    /// already. With no limit, nothing is counted (and the slot costs
    /// nothing).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return Some(IpSlot { owner: None });
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            owner: Some((self.clone(), ip)),
        })
    }

    /// Live connections counted for `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }

    /// Gives back one slot of `ip` (see [`IpSlot::hand_over`]).
    pub(crate) fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// One connection's slot in its address's count, from the handshake on;
/// dropping it (a failed upgrade) frees the slot.
#[derive(Debug)]
pub struct IpSlot {
    owner: Option<(Arc<PerIpLimit>, IpAddr)>,
}

impl IpSlot {
    /// Hands the slot to a running connection, which already keeps its
    /// address and its hub: it keeps one flag instead of this guard (32
    /// bytes less per connection) and calls [`PerIpLimit::release`] with
    /// that address when it ends. Returns whether anything was counted.
    pub(crate) fn hand_over(mut self, ip: IpAddr) -> bool {
        match self.owner.take() {
            Some((_, counted)) => {
                debug_assert_eq!(counted, ip, "the slot belongs to the connection's address");
                true
            }
            None => false,
        }
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((limit, ip)) = &self.owner {
            limit.release(*ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(10, 5, 1000, 100)
    }

    /// A connection's buckets as the keepalive drives them: refilled at
    /// each read, then checked.
    struct Client {
        limits: RateLimits,
        state: RateState,
        last_read: u32,
    }

    impl Client {
        fn new(limits: RateLimits) -> Self {
            Client {
                state: RateState::new(&limits),
                limits,
                last_read: 0,
            }
        }

        fn send(&mut self, at: u32, len: usize) -> Verdict {
            self.state.refill(&self.limits, at - self.last_read);
            self.last_read = at;
            self.state.check(&self.limits, at, len, 0)
        }
    }

    #[test]
    fn a_dropped_message_costs_only_what_inflating_it_made() {
        // 1,000 bytes a second, a burst of 1,000.
        let mut c = Client::new(limits());
        assert_eq!(c.send(0, 1_000), Verdict::Pass);
        // Plain, a dropped message costs nothing: no debt.
        assert_eq!(c.state.check(&c.limits, 0, 600, 0), Verdict::Drop);
        assert!(!c.state.in_debt());
        // Inflated from almost nothing, it is charged what it made.
        assert_eq!(c.state.check(&c.limits, 0, 600, 590), Verdict::Drop);
        assert!(c.state.in_debt());
        assert_eq!(
            c.state.resume_in_ms(&c.limits),
            Some(1_090),
            "590 of debt, then 500 to read on"
        );
    }

    #[test]
    fn a_burst_passes_then_the_rate_rules() {
        let mut c = Client::new(limits());
        for _ in 0..5 {
            assert_eq!(c.send(0, 1), Verdict::Pass);
        }
        assert_eq!(c.send(0, 1), Verdict::Drop);
        // 10 per second: one token every 100 ms.
        assert_eq!(c.send(99, 1), Verdict::Drop);
        assert_eq!(c.send(200, 1), Verdict::Pass);
        // A long pause refills to the burst, not beyond.
        for _ in 0..5 {
            assert_eq!(c.send(60_000, 1), Verdict::Pass);
        }
        assert_eq!(c.send(60_000, 1), Verdict::Drop);
    }

    #[test]
    fn bytes_are_limited_and_one_largest_message_always_fits() {
        let limits = RateLimits::new(0, 0, 10, 100);
        assert_eq!(limits.byte_burst, 100);
        let mut c = Client::new(limits);
        assert_eq!(c.send(0, 100), Verdict::Pass);
        assert_eq!(c.send(0, 1), Verdict::Drop);
        assert_eq!(c.send(500, 5), Verdict::Pass);
    }

    #[test]
    fn a_flood_is_given_up_on_but_bursts_and_a_slowed_client_are_not() {
        // 100 a second against 10: a message gets through every 100 ms,
        // but the client never gets back under the limit.
        let mut c = Client::new(limits());
        let mut t = 0;
        let mut first_drop = None;
        loop {
            match c.send(t, 1) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    first_drop.get_or_insert(t);
                }
                Verdict::GiveUp => break,
            }
            t += 10;
            assert!(t <= 3_000, "still not given up at {t} ms");
        }
        let over = t - first_drop.unwrap();
        assert!(
            (PERSIST_MS..=PERSIST_MS + 10).contains(&over),
            "given up after {over} ms over"
        );

        // Bursts well over the limit, each after a pause: never closed.
        let mut c = Client::new(limits());
        for burst in 0..10u32 {
            for _ in 0..20 {
                assert_ne!(c.send(burst * 1_900, 1), Verdict::GiveUp);
            }
        }

        // Over the limit, then slowing to 8 a second: under it again, so a
        // later excess starts a new count.
        let mut c = Client::new(limits());
        for i in 0..20 {
            c.send(i, 1);
        }
        for i in 1..=20 {
            assert_ne!(c.send(125 * i, 1), Verdict::GiveUp);
        }
        for _ in 0..20 {
            assert_ne!(c.send(2_600, 1), Verdict::GiveUp);
        }
    }

    /// A raw client's reads as the driver does them: refilled, limited,
    /// charged for its bytes and its messages, and the next read waits out
    /// any debt. Frames of 8 bytes (2 of header, 4 of mask, 2 of text).
    fn throttled_run(limits: RateLimits, messages: u32) -> (u32, u32, u32) {
        let mut state = RateState::new(&limits);
        let (mut now, mut last, mut delivered, mut episodes, mut most_ahead) = (0u32, 0u32, 0u32, 0, 0);
        let mut sent_bytes = 0usize; // bytes of the stream read so far
        while delivered < messages {
            if let Some(wait) = state.resume_in_ms(&limits) {
                now = last + wait;
            }
            state.refill(&limits, now - last);
            last = now;
            let frame_left = (8 - sent_bytes % 8) % 8;
            let limit = state.read_limit(&limits, 64 * 1024, frame_left as u64);
            let limit = limit.min(messages as usize * 8 - sent_bytes);
            episodes += u32::from(state.charge_read(&limits, now, limit));
            let completed = ((sent_bytes + limit) / 8 - sent_bytes / 8) as u32;
            sent_bytes += limit;
            for _ in 0..completed {
                episodes += u32::from(state.charge_message(&limits, now));
                delivered += 1;
            }
            // How far ahead of its rate the client got: the burst, one
            // second's worth, and what is delivered past it.
            let allowed = limits.message_burst + now * limits.messages_per_second / 1000;
            most_ahead = most_ahead.max(delivered.saturating_sub(allowed));
        }
        (now, episodes, most_ahead)
    }

    #[test]
    fn a_throttled_client_keeps_its_message_rate_and_never_gets_far_ahead() {
        let (took, episodes, ahead) = throttled_run(RateLimits::new(10, 5, 0, 100), 205);
        // Five at once, then ten a second: the 205th at about 20 s.
        assert!((19_500..=20_500).contains(&took), "205 messages took {took} ms");
        assert_eq!(episodes, 1, "one episode for one flood");
        assert!(ahead <= 2, "{ahead} messages ahead of the rate");
    }

    #[test]
    fn a_throttled_client_keeps_its_byte_rate() {
        // 8,000 bytes a second (1,000 frames), bursts of 16,000.
        let limits = RateLimits::new(0, 0, 8_000, 16_000);
        let (took, episodes, _) = throttled_run(limits, 4_000);
        // 32,000 bytes: 16,000 at once, the rest in two seconds.
        assert!((1_900..=2_100).contains(&took), "took {took} ms");
        assert_eq!(episodes, 1);
    }

    #[test]
    fn pauses_end_with_a_read_worth_making() {
        let limits = RateLimits::new(0, 0, 1 << 20, 1 << 20);
        let mut state = RateState::new(&limits);
        assert!(!state.charge_read(&limits, 0, 1 << 19), "room to spare");
        assert_eq!(state.read_limit(&limits, 64 * 1024, 0), 64 * 1024);
        assert!(state.charge_read(&limits, 0, 1 << 19), "the burst is spent");
        // Not a millisecond's worth: 16 KiB, so reads stay large.
        assert_eq!(state.resume_in_ms(&limits), Some(16));
        state.refill(&limits, 16);
        assert_eq!(state.resume_in_ms(&limits), None);
        assert!(state.read_limit(&limits, 64 * 1024, 0) >= 16 * 1024);
    }

    #[test]
    fn unlimited_passes_everything() {
        let mut c = Client::new(RateLimits::UNLIMITED);
        for t in 0..10_000 {
            assert_eq!(c.send(t / 100, 1 << 20), Verdict::Pass);
        }
    }

    #[test]
    fn per_ip_slots_are_counted_and_freed() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "::1".parse().unwrap();
        let a = limit.acquire(ip).unwrap();
        let _b = limit.acquire(ip).unwrap();
        assert!(limit.acquire(ip).is_none());
        let _c = limit.acquire(other).unwrap();
        drop(a);
        assert_eq!(limit.count(ip), 1);
        let _d = limit.acquire(ip).unwrap();
        drop((_b, _c, _d));
        assert!(
            limit.counts.lock().unwrap().is_empty(),
            "entries go with their last slot"
        );

        let unlimited = PerIpLimit::new(0);
        let slots: Vec<_> = (0..1000).map(|_| unlimited.acquire(ip).unwrap()).collect();
        assert_eq!(unlimited.count(ip), 0);
        drop(slots);
    }
}
