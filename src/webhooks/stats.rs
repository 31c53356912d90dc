//! The counters behind [`Webhooks::stats`](super::Webhooks::stats): every
//! event that reaches [`Webhooks::send`](super::Webhooks::send) for a target
//! ends up in exactly one of delivered, dropped or failed (or is still
//! queued), so that nothing disappears without a number going up.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A snapshot of the webhook counters, summed over every target. Counts
/// are of events (one per target it was meant for), not of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Events in a batch the backend answered with a 2xx.
    pub delivered: u64,
    /// Events never queued: the target's queue was full (its backend slow
    /// or down for long), or webhooks had stopped.
    pub dropped: u64,
    /// Events queued but not delivered: retries exhausted, refused with a
    /// 4xx, or still unsent when the shutdown's flush timeout ran out.
    pub failed: u64,
    /// POSTs retried (a batch retried three times counts three).
    pub retries: u64,
    /// Events waiting in the targets' queues now (not those of a batch
    /// being sent).
    pub queued: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self, queued: u64) -> WebhookStats {
        WebhookStats {
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            queued,
        }
    }
}

/// Says when a drop deserves a log line: the first, then at most one a
/// second per target, each with the running total. A backend down under
/// load drops thousands of events a second; a warning for each would bury
/// the log (and cost the connections that call `send`).
#[derive(Debug)]
pub(crate) struct DropLog {
    dropped: AtomicU64,
    /// Milliseconds after `epoch` of the last line, plus one (0: none yet).
    last_line: AtomicU64,
    epoch: Instant,
}

impl DropLog {
    pub(crate) fn new() -> DropLog {
        DropLog {
            dropped: AtomicU64::new(0),
            last_line: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Counts one drop; `Some(total)` when this one should be logged.
    pub(crate) fn record(&self) -> Option<u64> {
        let total = self.dropped.fetch_add(1, Relaxed) + 1;
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_line.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        (due && self.last_line.compare_exchange(last, now, Relaxed, Relaxed).is_ok()).then_some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_drop_is_logged_and_a_burst_after_it_is_not() {
        let log = DropLog::new();
        assert_eq!(log.record(), Some(1));
        for _ in 0..1000 {
            assert_eq!(log.record(), None);
        }
    }
}
