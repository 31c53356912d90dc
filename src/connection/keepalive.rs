//! The connection's deadlines, all on one timer.
//!
//! A timer reset per received frame would cost a timer-wheel update on the
//! hottest path. Instead the timer is only ever moved *earlier* when a new
//! deadline appears; when it fires, the real deadlines are recomputed from
//! the recorded instants and it is re-armed at the earliest one.

use std::time::Duration;

use tokio::time::Instant;

/// The keepalive settings of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Send a ping this often.
    pub ping_interval: Duration,
    /// Close a connection silent for this long.
    pub read_timeout: Duration,
    /// Close a connection whose writes make no progress for this long; also
    /// bounds the wait for the client's close reply.
    pub write_timeout: Duration,
}

/// What is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Ping,
    ReadTimeout,
    WriteTimeout,
    CloseTimeout,
}

#[derive(Debug)]
pub(crate) struct Deadlines {
    timeouts: Timeouts,
    pub(crate) last_read: Instant,
    next_ping: Instant,
    write_stalled_since: Option<Instant>,
    close_by: Option<Instant>,
}

impl Deadlines {
    pub(crate) fn new(timeouts: Timeouts, now: Instant) -> Self {
        Deadlines {
            timeouts,
            last_read: now,
            next_ping: now + timeouts.ping_interval,
            write_stalled_since: None,
            close_by: None,
        }
    }

    pub(crate) fn write_stalled(&mut self, now: Instant) {
        self.write_stalled_since.get_or_insert(now);
    }

    pub(crate) fn write_progressed(&mut self) {
        self.write_stalled_since = None;
    }

    /// Starts the wait for the client's close reply; pings stop.
    pub(crate) fn closing(&mut self, now: Instant) {
        self.close_by.get_or_insert(now + self.timeouts.write_timeout);
    }

    /// The most urgent thing due at `now`; a due ping is consumed.
    pub(crate) fn due(&mut self, now: Instant) -> Due {
        if self.close_by.is_some_and(|at| now >= at) {
            return Due::CloseTimeout;
        }
        if self
            .write_stalled_since
            .is_some_and(|since| now >= since + self.timeouts.write_timeout)
        {
            return Due::WriteTimeout;
        }
        if self.close_by.is_some() {
            return Due::Nothing;
        }
        if now >= self.last_read + self.timeouts.read_timeout {
            return Due::ReadTimeout;
        }
        if now >= self.next_ping {
            // Skip missed periods rather than sending a burst of pings.
            while self.next_ping <= now {
                self.next_ping += self.timeouts.ping_interval;
            }
            return Due::Ping;
        }
        Due::Nothing
    }

    /// When the timer must fire next.
    pub(crate) fn next(&self) -> Instant {
        let mut next = match self.close_by {
            Some(at) => at,
            None => self.next_ping.min(self.last_read + self.timeouts.read_timeout),
        };
        if let Some(since) = self.write_stalled_since {
            next = next.min(since + self.timeouts.write_timeout);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            ping_interval: Duration::from_secs(54),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
        }
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
        d.last_read = start + Duration::from_secs(55);
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
}
