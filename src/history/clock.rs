//! Where timestamps come from: the wall clock, or in tests a clock the
//! test moves, so that age retention is tested without sleeping.

#[cfg(test)]
use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(test)]
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of unix-millisecond timestamps.
#[derive(Debug, Clone)]
pub(super) enum Clock {
    /// The system's wall clock.
    System,
    /// A clock that only moves when the test sets it.
    #[cfg(test)]
    Manual(Arc<AtomicI64>),
}

/// Milliseconds since the unix epoch by the wall clock (0 if the system
/// clock is before 1970, which only a broken machine reports).
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Clock {
    /// Now, in milliseconds since the unix epoch (0 if the system clock is
    /// before 1970, which only a broken machine reports).
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => unix_millis(),
            #[cfg(test)]
            Clock::Manual(now) => now.load(Ordering::SeqCst),
        }
    }
}
