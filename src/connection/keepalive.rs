//! The connection's deadlines, all on one timer, and its rate buckets,
//! on the same millisecond clock.
//!
//! A timer reset per received frame would cost a timer-wheel update on the
//! hottest path. Instead the timer is only ever moved *earlier* when a new
//! deadline appears; when it fires, the real deadlines are recomputed from
//! the recorded instants and it is re-armed at the earliest one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::ratelimit::{RateState, Verdict};

/// The settings every connection shares: keepalive, and the rate limits
/// (here so that a connection reaches both through one pointer).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Send a ping this often.
    pub ping_interval: Duration,
    /// Close a connection silent for this long.
    pub read_timeout: Duration,
    /// Close a connection whose writes make no progress for this long; also
    /// bounds the wait for the client's close reply.
    pub write_timeout: Duration,
    /// Message and byte rates per connection.
    pub rate: crate::ratelimit::RateLimits,
}

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

/// The deadlines, kept as milliseconds since the connection's start: five
/// `u32`s instead of five 16-byte instants, in every connection.
#[derive(Debug)]
pub(crate) struct Deadlines {
    timeouts: Arc<Timeouts>,
    start: Instant,
    last_read: u32,
    next_ping: u32,
    write_stalled_since: u32,
    close_by: u32,
    /// When the connection's token expires (`NEVER` without one).
    expires_at: u32,
    /// The client's message and byte buckets (12 bytes): refilled from the
    /// time between reads, so they keep no instant of their own.
    rate: RateState,
}

impl Deadlines {
    pub(crate) fn new(timeouts: Arc<Timeouts>, now: Instant) -> Self {
        let next_ping = millis(timeouts.ping_interval);
        let rate = RateState::new(&timeouts.rate);
        Deadlines {
            timeouts,
            start: now,
            last_read: 0,
            next_ping,
            write_stalled_since: NEVER,
            close_by: NEVER,
            expires_at: NEVER,
            rate,
        }
    }

    /// Ends the connection (`Due::Expired`) `after` from `now`; an expiry
    /// beyond the millisecond range (about 49 days) is never reached.
    pub(crate) fn expire_after(&mut self, now: Instant, after: Duration) {
        self.expires_at = u32::try_from(after.as_millis())
            .ok()
            .and_then(|after| self.at(now).checked_add(after))
            .unwrap_or(NEVER);
    }

    /// Accounts a message of `len` bytes from the latest read against the
    /// rate limits: deliver it, drop it, or give up on the client.
    pub(crate) fn admit(&mut self, len: usize) -> Verdict {
        self.rate.check(&self.timeouts.rate, self.last_read, len)
    }

    fn at(&self, now: Instant) -> u32 {
        millis(now.saturating_duration_since(self.start))
    }

    /// Records a read at `now`; the rate buckets earn what the time since
    /// the previous read is worth.
    pub(crate) fn read_at(&mut self, now: Instant) {
        let now = self.at(now);
        self.rate
            .refill(&self.timeouts.rate, now.saturating_sub(self.last_read));
        self.last_read = now;
    }

    pub(crate) fn write_stalled(&mut self, now: Instant) {
        if self.write_stalled_since == NEVER {
            self.write_stalled_since = self.at(now);
        }
    }

    pub(crate) fn write_progressed(&mut self) {
        self.write_stalled_since = NEVER;
    }

    /// Starts the wait for the client's close reply; pings stop.
    pub(crate) fn closing(&mut self, now: Instant) {
        if self.close_by == NEVER {
            self.close_by = self.at(now).saturating_add(millis(self.timeouts.write_timeout));
        }
    }

    /// The write timeout, which also bounds the final socket shutdown.
    pub(crate) fn write_timeout(&self) -> Duration {
        self.timeouts.write_timeout
    }

    /// The most urgent thing due at `now`; a due ping is consumed.
    pub(crate) fn due(&mut self, now: Instant) -> Due {
        let now = self.at(now);
        if self.close_by != NEVER && now >= self.close_by {
            return Due::CloseTimeout;
        }
        let write_timeout = millis(self.timeouts.write_timeout);
        if self.write_stalled_since != NEVER && now >= self.write_stalled_since.saturating_add(write_timeout) {
            return Due::WriteTimeout;
        }
        if self.close_by != NEVER {
            return Due::Nothing;
        }
        if now >= self.expires_at {
            return Due::Expired;
        }
        if now >= self.last_read.saturating_add(millis(self.timeouts.read_timeout)) {
            return Due::ReadTimeout;
        }
        if now >= self.next_ping {
            // Skip missed periods rather than sending a burst of pings.
            let interval = millis(self.timeouts.ping_interval).max(1);
            while self.next_ping <= now {
                self.next_ping = self.next_ping.saturating_add(interval);
            }
            return Due::Ping;
        }
        Due::Nothing
    }

    /// When the timer must fire next.
    pub(crate) fn next(&self) -> Instant {
        let mut next = if self.close_by != NEVER {
            self.close_by
        } else {
            let read_deadline = self.last_read.saturating_add(millis(self.timeouts.read_timeout));
            self.next_ping.min(read_deadline).min(self.expires_at)
        };
        if self.write_stalled_since != NEVER {
            next = next.min(
                self.write_stalled_since
                    .saturating_add(millis(self.timeouts.write_timeout)),
            );
        }
        self.start + Duration::from_millis(u64::from(next))
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

    fn timeouts() -> Arc<Timeouts> {
        Arc::new(Timeouts {
            ping_interval: Duration::from_secs(54),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            rate: crate::ratelimit::RateLimits::UNLIMITED,
        })
    }

    #[test]
    fn pings_then_times_out_a_silent_peer() {
        let start = Instant::now();
        let mut d = Deadlines::new(timeouts(), start);
        assert_eq!(d.due(start + Duration::from_secs(53)), Due::Nothing);
        assert_eq!(d.next(), start + Duration::from_secs(54));
        assert_eq!(d.due(start + Duration::from_secs(54)), Due::Ping);
        assert_eq!(d.due(start + Duration::from_secs(55)), Due::Nothing);
        assert_eq!(d.next(), start + Duration::from_secs(60));
        assert_eq!(d.due(start + Duration::from_secs(60)), Due::ReadTimeout);
    }

    #[test]
    fn a_read_renews_the_deadline() {
        let start = Instant::now();
        let mut d = Deadlines::new(timeouts(), start);
        d.read_at(start + Duration::from_secs(55));
        assert_eq!(d.due(start + Duration::from_secs(60)), Due::Ping);
        assert_eq!(d.due(start + Duration::from_secs(100)), Due::Nothing);
        assert_eq!(d.due(start + Duration::from_secs(115)), Due::ReadTimeout);
    }

    #[test]
    fn stalled_writes_and_unanswered_closes_time_out() {
        let start = Instant::now();
        let mut d = Deadlines::new(timeouts(), start);
        d.write_stalled(start);
        d.write_stalled(start + Duration::from_secs(5));
        assert_eq!(d.next(), start + Duration::from_secs(10));
        assert_eq!(d.due(start + Duration::from_secs(10)), Due::WriteTimeout);
        d.write_progressed();
        d.closing(start + Duration::from_secs(20));
        assert_eq!(d.due(start + Duration::from_secs(29)), Due::Nothing);
        assert_eq!(d.due(start + Duration::from_secs(30)), Due::CloseTimeout);
    }

    #[test]
    fn an_expiry_comes_due_once_and_not_while_closing() {
        let start = Instant::now();
        let mut d = Deadlines::new(timeouts(), start);
        d.expire_after(start + Duration::from_secs(1), Duration::from_secs(9));
        assert_eq!(d.next(), start + Duration::from_secs(10));
        assert_eq!(d.due(start + Duration::from_secs(9)), Due::Nothing);
        assert_eq!(d.due(start + Duration::from_secs(10)), Due::Expired);
        d.closing(start + Duration::from_secs(10));
        assert_eq!(d.due(start + Duration::from_secs(11)), Due::Nothing);

        let mut far = Deadlines::new(timeouts(), start);
        far.expire_after(start, Duration::from_secs(365 * 86_400));
        assert_eq!(far.next(), start + Duration::from_secs(54));
    }
}
