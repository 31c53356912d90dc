//! The keepalive and rate settings every connection shares, owned by the
//! hub (one copy for all its connections) and read by each connection's
//! deadlines.

use std::time::Duration;

/// The settings every connection shares: keepalive, and the rate limits.
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

impl Timeouts {
    /// How late a deadline may fire: a fiftieth of the shortest timeout,
    /// between 10 ms and a quarter of a second. The shared alarm sweeps no
    /// more often than this, so its cost stays flat however many
    /// connections come due together.
    pub fn precision(&self) -> Duration {
        let shortest = self.ping_interval.min(self.read_timeout).min(self.write_timeout);
        (shortest / 50).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}
