//! The connection's deadlines and its rate buckets, on one millisecond
//! clock, woken by the hub's shared alarm instead of a timer of its own.
//!
//! A tokio `Sleep` is 96 bytes in every connection's task, for deadlines
//! that are tens of seconds apart and need no better than a tenth of a
//! second. So a connection keeps its deadlines as a few `u32` offsets and
//! asks the hub's one sweeper ([`crate::hub::Registration::arm`]) to wake it
//! at the earliest. The alarm is only ever moved *earlier* when a new
//! deadline appears; when it fires, the real deadlines are recomputed from
//! the recorded instants and it is armed again at the earliest one, so a
//! busy connection does not touch the shared alarm per frame.

use std::time::Duration;

use crate::hub::Timeouts;
use crate::ratelimit::{RateState, Verdict, OVER_LIMITS_READ};

/// What is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Ping,
    ReadTimeout,
    WriteTimeout,
    CloseTimeout,
    /// The connection's access token expired: close with 1008.
    Expired,
}

/// "No such deadline" in the millisecond fields.
const NEVER: u32 = u32::MAX;

/// How far the millisecond fields may count from `start` (about 24 days)
/// before `start` moves up to the oldest of them: a connection may live
/// past the 49 days a `u32` holds, and must keep its pings, timeouts and
/// rate buckets when it does.
const REBASE_AFTER: u32 = 1 << 31;

/// The deadlines, kept as milliseconds since the connection's start (itself
/// milliseconds on the hub's clock): `u32`s instead of 16-byte instants, in
/// every connection.
#[derive(Debug)]
pub(crate) struct Deadlines {
    /// The connection's start on the hub's clock.
    start: u64,
    last_read: u32,
    next_ping: u32,
    write_stalled_since: u32,
    close_by: u32,
    /// When the connection's token expires (`NEVER` without one).
    expires_at: u32,
    /// When the shared alarm was last asked to wake this connection.
    armed: u32,
    /// The client's message and byte buckets (12 bytes): refilled from the
    /// time between reads, so they keep no instant of their own.
    rate: RateState,
    /// Over its rate, the connection is throttled (its reads pause until
    /// its buckets have paid for what it sent) rather than having messages
    /// dropped: raw clients, which cannot be told about a drop.
    throttles: bool,
    /// A wake-up is scheduled for the end of the current pause in reading.
    wake_scheduled: bool,
}

/// Whether a connection may read (see [`Deadlines::read_gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadGate {
    Open,
    /// Paused; a wake-up for its end is already scheduled.
    Paused,
    /// Paused until this time (hub clock, ms): schedule a wake-up for it.
    PausedUntil(u64),
}

impl Deadlines {
    /// Deadlines for a connection starting at `now` (hub clock, ms).
    pub(crate) fn new(timeouts: &Timeouts, now: u64, throttles: bool) -> Self {
        Deadlines {
            start: now,
            last_read: 0,
            next_ping: millis(timeouts.ping_interval),
            write_stalled_since: NEVER,
            close_by: NEVER,
            expires_at: NEVER,
            armed: NEVER,
            rate: RateState::new(&timeouts.rate),
            throttles,
            wake_scheduled: false,
        }
    }

    /// Ends the connection (`Due::Expired`) `after` from `now`; an expiry
    /// beyond the millisecond range (about 49 days) is never reached.
    pub(crate) fn expire_after(&mut self, now: u64, after: Duration) {
        self.expires_at = u32::try_from(after.as_millis())
            .ok()
            .and_then(|after| self.at(now).checked_add(after))
            .unwrap_or(NEVER);
    }

    /// Accounts a message of `len` bytes (`inflated` of them made by
    /// inflating it) from the latest read against the rate limits: deliver
    /// it, drop it, or give up on the client.
    pub(crate) fn admit(&mut self, timeouts: &Timeouts, len: usize, inflated: usize) -> Verdict {
        self.rate.check(&timeouts.rate, self.last_read, len, inflated)
    }

    /// Whether this message starts an episode over the limits (see
    /// [`RateState::is_over`]), before [`Deadlines::admit`] decides on it.
    pub(crate) fn is_over_rate(&self) -> bool {
        self.rate.is_over()
    }

    /// Charges a message from the latest read that is delivered whatever
    /// the buckets hold (a throttled connection's); true when it starts an
    /// episode over the limits.
    pub(crate) fn charge_message(&mut self, timeouts: &Timeouts) -> bool {
        self.rate.charge_message(&timeouts.rate, self.last_read)
    }

    /// Charges the `n` bytes of the latest read of a throttled connection;
    /// true when it starts an episode over the limits.
    pub(crate) fn charge_read(&mut self, timeouts: &Timeouts, n: usize) -> bool {
        self.throttles && self.rate.charge_read(&timeouts.rate, self.last_read, n)
    }

    /// When a throttled connection may read again (its own clock), while
    /// its buckets are in debt; or one that is not throttled, while it
    /// pays for inflating messages it had dropped.
    fn throttled_until(&self, timeouts: &Timeouts) -> Option<u32> {
        if !self.throttles && !self.rate.in_debt() {
            return None;
        }
        let wait = self.rate.resume_in_ms(&timeouts.rate)?;
        Some(self.last_read.saturating_add(wait))
    }

    /// Whether reading must wait at `now` for the buckets to refill. Once
    /// the wait is over, the buckets are refilled and the read deadline
    /// restarts: the silence was ours, not the client's.
    ///
    /// The pauses are tens of milliseconds, finer than the shared alarm's
    /// sweeps, so their end is a wake-up of its own, scheduled once per
    /// pause (and only while a connection is throttled, so an idle one
    /// carries nothing for it).
    pub(crate) fn read_gate(&mut self, timeouts: &Timeouts, now: u64) -> ReadGate {
        match self.throttled_until(timeouts) {
            Some(until) if self.at(now) < until => {
                if std::mem::replace(&mut self.wake_scheduled, true) {
                    ReadGate::Paused
                } else {
                    ReadGate::PausedUntil(self.start + u64::from(until))
                }
            }
            Some(_) => {
                self.wake_scheduled = false;
                self.read_at(timeouts, now);
                ReadGate::Open
            }
            None => {
                self.wake_scheduled = false;
                ReadGate::Open
            }
        }
    }

    /// The most the next read may take: `full`, or less for a throttled
    /// connection near its message limit, or for one that is not throttled
    /// while it is over its limits ([`OVER_LIMITS_READ`]).
    pub(crate) fn read_limit(&self, timeouts: &Timeouts, full: usize, frame_left: u64) -> usize {
        if self.throttles {
            self.rate.read_limit(&timeouts.rate, full, frame_left)
        } else if self.rate.is_over() {
            full.min(OVER_LIMITS_READ)
        } else {
            full
        }
    }

    /// When the read timeout counts from: the latest read, or the end of a
    /// pause in reading that we imposed.
    fn read_deadline(&self, timeouts: &Timeouts) -> u32 {
        let from = self
            .throttled_until(timeouts)
            .map_or(self.last_read, |until| until.max(self.last_read));
        from.saturating_add(millis(timeouts.read_timeout))
    }

    fn at(&self, now: u64) -> u32 {
        u32::try_from(now.saturating_sub(self.start)).unwrap_or(NEVER - 1)
    }

    /// Moves `start` up to the oldest instant the fields still record, once
    /// `now` is [`REBASE_AFTER`] past it, so that they never reach the end
    /// of their range (`at` saturating there made every deadline "never").
    /// Called on every read and every time something may be due, which a
    /// live connection does at least once a ping interval.
    fn keep_in_range(&mut self, now: u64) {
        let age = self.at(now);
        if age < REBASE_AFTER {
            return;
        }
        let over_since = self.rate.over_since();
        let fields = [
            &mut self.last_read,
            &mut self.next_ping,
            &mut self.write_stalled_since,
            &mut self.close_by,
            &mut self.expires_at,
            &mut self.armed,
        ];
        let by = fields
            .iter()
            .map(|field| **field)
            .chain(over_since)
            .filter(|&at| at != NEVER)
            .min()
            .unwrap_or(0)
            .min(age);
        if by == 0 {
            return;
        }
        for field in fields {
            if *field != NEVER {
                *field -= by;
            }
        }
        self.start += u64::from(by);
        self.rate.rebase(by);
    }

    /// How long the connection has lived, for the close log line.
    pub(crate) fn age(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.start))
    }

    /// Records a read at `now`; the rate buckets earn what the time since
    /// the previous read is worth.
    pub(crate) fn read_at(&mut self, timeouts: &Timeouts, now: u64) {
        self.keep_in_range(now);
        let now = self.at(now);
        self.rate.refill(&timeouts.rate, now.saturating_sub(self.last_read));
        self.last_read = now;
    }

    pub(crate) fn write_stalled(&mut self, now: u64) {
        if self.write_stalled_since == NEVER {
            self.write_stalled_since = self.at(now);
        }
    }

    pub(crate) fn write_progressed(&mut self) {
        self.write_stalled_since = NEVER;
    }

    /// Starts the wait for the client's close reply; pings stop.
    pub(crate) fn closing(&mut self, timeouts: &Timeouts, now: u64) {
        if self.close_by == NEVER {
            self.close_by = self.at(now).saturating_add(millis(timeouts.write_timeout));
        }
    }

    /// The connection is over and its socket is being shut down: that too
    /// may take at most the write timeout from `now`.
    pub(crate) fn shutting_down(&mut self, timeouts: &Timeouts, now: u64) {
        self.write_stalled_since = NEVER;
        self.close_by = self.at(now).saturating_add(millis(timeouts.write_timeout));
    }

    /// Whether the bound set by `closing` or `shutting_down` has passed.
    pub(crate) fn close_overdue(&self, now: u64) -> bool {
        self.close_by != NEVER && self.at(now) >= self.close_by
    }

    /// The most urgent thing due at `now`; a due ping is consumed.
    pub(crate) fn due(&mut self, timeouts: &Timeouts, now: u64) -> Due {
        self.keep_in_range(now);
        let now = self.at(now);
        if self.close_by != NEVER && now >= self.close_by {
            return Due::CloseTimeout;
        }
        let write_timeout = millis(timeouts.write_timeout);
        if self.write_stalled_since != NEVER && now >= self.write_stalled_since.saturating_add(write_timeout) {
            return Due::WriteTimeout;
        }
        if self.close_by != NEVER {
            return Due::Nothing;
        }
        if now >= self.expires_at {
            return Due::Expired;
        }
        if now >= self.read_deadline(timeouts) {
            return Due::ReadTimeout;
        }
        if now >= self.next_ping {
            // Skip missed periods rather than sending a burst of pings.
            let interval = millis(timeouts.ping_interval).max(1);
            while self.next_ping <= now {
                self.next_ping = self.next_ping.saturating_add(interval);
            }
            return Due::Ping;
        }
        Due::Nothing
    }

    /// When something is due next, on the connection's own clock.
    fn next(&self, timeouts: &Timeouts) -> u32 {
        let mut next = if self.close_by != NEVER {
            self.close_by
        } else {
            self.next_ping.min(self.read_deadline(timeouts)).min(self.expires_at)
        };
        if self.write_stalled_since != NEVER {
            next = next.min(self.write_stalled_since.saturating_add(millis(timeouts.write_timeout)));
        }
        next
    }

    /// When the alarm must next wake the connection (hub clock), if it has
    /// to be asked again: the earliest deadline moved before the armed one,
    /// or the armed one has passed (it fired, or is about to).
    pub(crate) fn rearm(&mut self, timeouts: &Timeouts, now: u64) -> Option<u64> {
        let next = self.next(timeouts);
        if next < self.armed || self.at(now) >= self.armed {
            self.armed = next;
            return Some(self.start + u64::from(next));
        }
        None
    }
}

/// Whole milliseconds, saturating at about 49 days (longer than any
/// timeout here is meant to be).
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn timeouts() -> Timeouts {
        Timeouts {
            ping_interval: Duration::from_secs(54),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            rate: crate::ratelimit::RateLimits::UNLIMITED,
        }
    }

    #[test]
    fn pings_then_times_out_a_silent_peer() {
        let t = timeouts();
        let start = 5 * S;
        let mut d = Deadlines::new(&t, start, false);
        assert_eq!(d.due(&t, start + 53 * S), Due::Nothing);
        assert_eq!(d.rearm(&t, start + 53 * S), Some(start + 54 * S));
        assert_eq!(d.due(&t, start + 54 * S), Due::Ping);
        assert_eq!(d.due(&t, start + 55 * S), Due::Nothing);
        assert_eq!(d.rearm(&t, start + 55 * S), Some(start + 60 * S));
        assert_eq!(d.due(&t, start + 60 * S), Due::ReadTimeout);
    }

    /// A connection that answers every ping for 100 days (past the 49
    /// that its `u32` fields hold), then falls silent, writes into a
    /// stalled socket, closes: each still times out, and its rate buckets
    /// still refill.
    #[test]
    fn a_connection_older_than_49_days_keeps_its_deadlines_and_buckets() {
        let t = Timeouts {
            rate: crate::ratelimit::RateLimits::new(50, 100, 0, 1 << 20),
            ..timeouts()
        };
        let mut d = Deadlines::new(&t, 0, false);
        let day = 86_400 * S;
        let mut now = 0;
        let mut pings = 0;
        while now < 100 * day {
            now += 50 * S;
            pings += u32::from(d.due(&t, now) == Due::Ping);
            d.read_at(&t, now);
            assert_eq!(d.due(&t, now), Due::Nothing, "at {now} ms");
        }
        assert!(pings > 100 * 86_400 / 54 - 10, "a ping every interval: {pings}");
        // 20 messages a second, under its 50: all pass, for a minute.
        for n in 1..=1_200 {
            d.read_at(&t, now + n * 50);
            assert_eq!(d.admit(&t, 10, 0), Verdict::Pass, "message {n}");
        }
        now += 60 * S;
        assert!(d.rearm(&t, now).is_some_and(|at| at <= now + 60 * S));
        assert_eq!(d.due(&t, now + 61 * S), Due::ReadTimeout);
        d.write_stalled(now);
        assert_eq!(d.due(&t, now + 11 * S), Due::WriteTimeout);
        d.write_progressed();
        d.closing(&t, now);
        assert!(d.close_overdue(now + 11 * S));
    }

    #[test]
    fn a_read_renews_the_deadline() {
        let t = timeouts();
        let mut d = Deadlines::new(&t, 0, false);
        d.read_at(&t, 55 * S);
        assert_eq!(d.due(&t, 60 * S), Due::Ping);
        assert_eq!(d.due(&t, 100 * S), Due::Nothing);
        assert_eq!(d.due(&t, 115 * S), Due::ReadTimeout);
    }

    #[test]
    fn stalled_writes_and_unanswered_closes_time_out() {
        let t = timeouts();
        let mut d = Deadlines::new(&t, 0, false);
        d.write_stalled(0);
        d.write_stalled(5 * S);
        assert_eq!(d.rearm(&t, 0), Some(10 * S));
        assert_eq!(d.due(&t, 10 * S), Due::WriteTimeout);
        d.write_progressed();
        d.closing(&t, 20 * S);
        assert_eq!(d.due(&t, 29 * S), Due::Nothing);
        assert!(!d.close_overdue(29 * S));
        assert_eq!(d.due(&t, 30 * S), Due::CloseTimeout);
        assert!(d.close_overdue(30 * S));
    }

    #[test]
    fn the_alarm_is_asked_again_only_when_it_must_move_earlier_or_has_passed() {
        let t = timeouts();
        let mut d = Deadlines::new(&t, 0, false);
        assert_eq!(d.rearm(&t, 0), Some(54 * S), "first arming");
        assert_eq!(d.rearm(&t, S), None, "nothing changed");
        d.read_at(&t, 2 * S);
        assert_eq!(d.rearm(&t, 2 * S), None, "a later deadline waits for the alarm");
        d.write_stalled(3 * S);
        assert_eq!(d.rearm(&t, 3 * S), Some(13 * S), "an earlier deadline moves it");
        d.write_progressed();
        assert_eq!(
            d.rearm(&t, 13 * S),
            Some(54 * S),
            "it fired: armed at the real next one"
        );
    }

    #[test]
    fn an_expiry_comes_due_once_and_not_while_closing() {
        let t = timeouts();
        let mut d = Deadlines::new(&t, 0, false);
        d.expire_after(S, Duration::from_secs(9));
        assert_eq!(d.rearm(&t, S), Some(10 * S));
        assert_eq!(d.due(&t, 9 * S), Due::Nothing);
        assert_eq!(d.due(&t, 10 * S), Due::Expired);
        d.closing(&t, 10 * S);
        assert_eq!(d.due(&t, 11 * S), Due::Nothing);

        let mut far = Deadlines::new(&t, 0, false);
        far.expire_after(0, Duration::from_secs(365 * 86_400));
        assert_eq!(far.rearm(&t, 0), Some(54 * S));
    }

    #[test]
    fn a_throttled_connection_pauses_its_reads_and_its_read_deadline() {
        let t = Timeouts {
            rate: crate::ratelimit::RateLimits::new(1, 1, 0, 100),
            ..timeouts()
        };
        let mut d = Deadlines::new(&t, 0, true);
        d.read_at(&t, 10 * S);
        assert_eq!(d.read_gate(&t, 10 * S), ReadGate::Open);
        // Three messages in one read: one paid for, two in debt.
        for _ in 0..3 {
            d.charge_message(&t);
        }
        assert_eq!(d.read_gate(&t, 10 * S), ReadGate::PausedUntil(13 * S));
        assert_eq!(d.read_gate(&t, 11 * S), ReadGate::Paused, "one wake-up per pause");
        // Paused past the read timeout's start: the silence is ours.
        assert_eq!(d.due(&t, 69 * S), Due::Ping);
        assert_eq!(d.due(&t, 72 * S), Due::Nothing);
        assert_eq!(d.read_gate(&t, 13 * S), ReadGate::Open);
        assert_eq!(d.due(&t, 72 * S), Due::Nothing, "the deadline restarted at 13 s");
        assert_eq!(d.due(&t, 73 * S), Due::ReadTimeout);

        // A connection that is not throttled never pauses.
        let mut v1 = Deadlines::new(&t, 0, false);
        for _ in 0..3 {
            v1.charge_read(&t, 1);
        }
        assert_eq!(v1.read_gate(&t, 0), ReadGate::Open);
    }

    #[test]
    fn a_dropped_compressed_message_pauses_a_connection_that_is_not_throttled() {
        // 1,000 bytes a second, a burst of 1,000.
        let t = Timeouts {
            rate: crate::ratelimit::RateLimits::new(0, 0, 1_000, 1_000),
            ..timeouts()
        };
        let mut v1 = Deadlines::new(&t, 0, false);
        v1.read_at(&t, 0);
        assert_eq!(v1.admit(&t, 1_000, 0), Verdict::Pass);
        assert_eq!(v1.read_limit(&t, 65_536, 0), 65_536);
        // Dropped plain: nothing owed, the next read comes at once, but
        // small while the client is over its limits.
        assert_eq!(v1.admit(&t, 1_000, 0), Verdict::Drop);
        assert_eq!(v1.read_gate(&t, 0), ReadGate::Open);
        assert_eq!(v1.read_limit(&t, 65_536, 0), OVER_LIMITS_READ);
        // Dropped after inflating 2,000 bytes: paid for before reading on
        // (2 s of debt, then half the burst).
        assert_eq!(v1.admit(&t, 2_000, 1_990), Verdict::Drop);
        assert!(matches!(v1.read_gate(&t, 0), ReadGate::PausedUntil(at) if at > 2 * S));
    }

    #[test]
    fn precision_follows_the_shortest_timeout() {
        assert_eq!(timeouts().precision(), Duration::from_millis(200));
        let tiny = Timeouts {
            write_timeout: Duration::from_millis(100),
            ..timeouts()
        };
        assert_eq!(tiny.precision(), Duration::from_millis(10));
    }
}
