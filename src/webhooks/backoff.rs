//! How long to wait before retrying a failed POST: doubling from a base,
//! with jitter so that the nodes of a cluster, all failing against the same
//! backend at the same moment, do not all retry at the same moment too.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The schedule of retries after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry, doubled before each next one.
    /// Default 500 ms: retries after about 0.5, 1, 2, 4, 8 s.
    pub base: Duration,
    /// Retries after the first attempt; then the batch is given up.
    /// Default 5 (about 15 s of waiting in all, plus the attempts).
    pub retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            retries: 5,
        }
    }
}

impl Backoff {
    /// The nominal wait before retry number `retry` (0 for the first).
    pub fn nominal(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
    }

    /// The wait before retry `retry`: between half the nominal wait and all
    /// of it ("equal jitter"), so that it never exceeds the schedule that is
    /// documented and never collapses to nothing either.
    pub fn delay(&self, retry: u32) -> Duration {
        let nominal = self.nominal(retry);
        let half = nominal / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A number in [0, 1): std's randomly keyed hasher is random enough for
/// jitter, and saves a dependency.
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_doubles_from_half_a_second() {
        let backoff = Backoff::default();
        let nominal: Vec<_> = (0..backoff.retries).map(|n| backoff.nominal(n).as_millis()).collect();
        assert_eq!(nominal, [500, 1000, 2000, 4000, 8000]);
    }

    #[test]
    fn each_delay_lies_between_half_and_all_of_its_nominal_wait_and_they_vary() {
        let backoff = Backoff::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            for retry in 0..backoff.retries {
                let delay = backoff.delay(retry);
                let nominal = backoff.nominal(retry);
                assert!(delay >= nominal / 2 && delay <= nominal, "{delay:?} for {nominal:?}");
            }
            seen.insert(backoff.delay(0));
        }
        assert!(
            seen.len() > 100,
            "jitter spreads the retries: {} distinct delays",
            seen.len()
        );
    }

    #[test]
    fn a_huge_retry_number_saturates_instead_of_overflowing() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            retries: 100,
        };
        assert_eq!(backoff.nominal(99), Duration::from_secs(1 << 31));
        let _ = backoff.delay(99);
    }
}
