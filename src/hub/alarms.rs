//! One alarm for every connection of a hub.
//!
//! Each connection used to carry its own tokio `Sleep` (96 bytes, a fifth
//! of an idle connection) for keepalive deadlines that are seconds apart.
//! Here a connection only records, in its registry entry, when it wants to
//! be woken and with which waker; one sweeper task per hub wakes those that
//! are due. It sweeps no more often than the timeouts' precision (a
//! fiftieth of the shortest, at most 250 ms), so its cost is one pass over
//! the registry per sweep however many connections come due, and it runs
//! only while connections exist: the first arming starts it, and it stops
//! when the registry is empty.

use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Milliseconds since the hub started: the one clock of deadlines and
/// alarms (tokio's, so a paused test clock drives it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// Now, in milliseconds on this clock.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, at: u64) -> Instant {
        self.epoch + Duration::from_millis(at)
    }

    /// Wakes `waker` at `at`, on a task of its own: for the short waits of a
    /// throttled connection, which the shared alarm's sweeps are too coarse
    /// for. The task lives only until then, so no connection keeps a timer.
    pub(crate) fn wake_at(&self, at: u64, waker: Waker) {
        let at = self.instant(at);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            waker.wake();
        });
    }
}

/// A connection's wish to be woken (in its registry entry: 24 bytes).
#[derive(Debug)]
pub(crate) struct Alarm {
    /// Clock milliseconds; `UNARMED`: none.
    due: u64,
    waker: Option<Waker>,
}

/// `Alarm::due` of an alarm that is not set.
const UNARMED: u64 = u64::MAX;

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            due: UNARMED,
            waker: None,
        }
    }
}

impl Alarm {
    /// Asks to be woken through `waker` at `due`.
    pub(crate) fn set(&mut self, due: u64, waker: &Waker) {
        self.due = due.min(UNARMED - 1);
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    /// The waker, if the alarm is due at `now` (it is then disarmed);
    /// otherwise folds its due time into `next`.
    pub(crate) fn take_if_due(&mut self, now: u64, next: &mut Option<u64>) -> Option<Waker> {
        let due = self.due;
        if due == UNARMED {
            return None;
        }
        if due <= now {
            self.due = UNARMED;
            return self.waker.take();
        }
        *next = Some(next.map_or(due, |n| n.min(due)));
        None
    }
}

/// The sweeper's side of the registry lock.
#[derive(Debug, Default)]
pub(crate) struct SweeperState {
    /// A sweeper task is alive.
    running: bool,
    /// When the sweeper will next look (clock ms); an alarm set earlier
    /// than this must wake it.
    sweeps_at: u64,
}

impl SweeperState {
    /// After an alarm was set for `due`: whether a sweeper must be started
    /// (`Start`) or woken early (`Wake`).
    pub(crate) fn on_armed(&mut self, due: u64) -> Nudge {
        if !self.running {
            self.running = true;
            self.sweeps_at = due;
            Nudge::Start
        } else if due < self.sweeps_at {
            self.sweeps_at = due;
            Nudge::Wake
        } else {
            Nudge::Nothing
        }
    }
}

/// What arming asks of the sweeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nudge {
    Nothing,
    Start,
    Wake,
}

impl SweeperState {
    /// After a sweep at `now` that found `next` as the earliest alarm left:
    /// when to sweep again, at least `precision` ms later. `None` when the
    /// registry is `empty`: the sweeper stops (the next arming restarts it).
    pub(crate) fn swept(&mut self, now: u64, next: Option<u64>, precision: u64, empty: bool) -> Option<u64> {
        if empty {
            self.running = false;
            return None;
        }
        // Without alarms, look again now and then anyway: cheap, and a
        // sweeper that never wakes would keep its task forever.
        let at = next.unwrap_or(now + IDLE_SWEEP_MS).max(now + precision);
        self.sweeps_at = at;
        Some(at)
    }
}

/// How often a sweeper with connections but no alarms looks again.
const IDLE_SWEEP_MS: u64 = 60_000;

/// Sleeps until the clock reaches `at`, or the sweeper is nudged.
pub(crate) async fn sleep_until(clock: Clock, at: u64, nudged: &Notify) {
    tokio::select! {
        () = tokio::time::sleep_until(clock.instant(at)) => {}
        () = nudged.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_rings_once_when_due_and_reports_when_it_is_not() {
        let mut alarm = Alarm::default();
        let mut next = None;
        assert!(alarm.take_if_due(100, &mut next).is_none(), "not armed");
        assert_eq!(next, None);
        alarm.set(500, Waker::noop());
        assert!(alarm.take_if_due(499, &mut next).is_none());
        assert_eq!(next, Some(500));
        assert!(alarm.take_if_due(500, &mut next).is_some());
        assert!(alarm.take_if_due(600, &mut next).is_none(), "disarmed after ringing");
    }

    #[test]
    fn arming_starts_the_sweeper_once_and_wakes_it_only_for_earlier_alarms() {
        let mut state = SweeperState::default();
        assert_eq!(state.on_armed(1_000), Nudge::Start);
        assert_eq!(state.on_armed(2_000), Nudge::Nothing);
        assert_eq!(state.on_armed(500), Nudge::Wake);
        assert_eq!(state.on_armed(500), Nudge::Nothing);
        assert_eq!(
            state.swept(600, Some(700), 200, false),
            Some(800),
            "no sooner than the precision"
        );
        assert_eq!(state.on_armed(750), Nudge::Wake);
        assert_eq!(state.swept(800, None, 200, false), Some(800 + IDLE_SWEEP_MS));
        assert_eq!(state.swept(900, None, 200, true), None, "stops when empty");
        assert_eq!(state.on_armed(1_000), Nudge::Start, "and starts again");
    }
}
