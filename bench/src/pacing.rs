//! When a room's sender sends: in a closed loop, or at a fixed rate.
//!
//! Kept apart from the socket code so that the rule the latency-bound benchmark rests on (a
//! closed-loop sender has exactly one message in flight: the next goes out when the previous one
//! has come back to itself) is stated, and tested, in one place.

/// Most messages a rate-paced sender sends at once to catch up after a stall.
pub(crate) const MAX_CATCH_UP: u64 = 1000;

/// One sender's pacing state.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Sequence number of the next message.
    next_seq: u64,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    /// The sequence number whose return is awaited, if one is in flight.
    ClosedLoop { awaiting: Option<u64> },
    /// Messages per second, counted from `start_ns`.
    Rate { per_sec: f64, start_ns: u64 },
}

impl Pacer {
    /// A closed loop (`rate` None) or `rate` messages/s for this sender.
    pub(crate) fn new(rate: Option<f64>) -> Self {
        let mode = match rate {
            None => Mode::ClosedLoop { awaiting: None },
            Some(per_sec) => Mode::Rate { per_sec, start_ns: 0 },
        };
        Self { next_seq: 0, mode }
    }

    /// Sending starts at `now_ns`; returns how many messages to send right away.
    pub(crate) fn start(&mut self, now_ns: u64) -> u64 {
        match &mut self.mode {
            Mode::ClosedLoop { awaiting } => {
                *awaiting = Some(self.next_seq);
                1
            }
            Mode::Rate { start_ns, .. } => {
                *start_ns = now_ns;
                0
            }
        }
    }

    /// This sender's own message `seq` has come back to it; returns how many to send now: one
    /// in a closed loop when `seq` is the awaited message and sending has not stopped, else none.
    pub(crate) fn on_own_receipt(&mut self, seq: u64, running: bool) -> u64 {
        let Mode::ClosedLoop { awaiting } = &mut self.mode else {
            return 0;
        };
        if *awaiting != Some(seq) {
            return 0;
        }
        *awaiting = running.then_some(self.next_seq);
        u64::from(running)
    }

    /// Rate pacing: how many messages this sender is behind at `now_ns` (at most
    /// [`MAX_CATCH_UP`]); always 0 in a closed loop.
    pub(crate) fn due(&self, now_ns: u64) -> u64 {
        let Mode::Rate { per_sec, start_ns } = self.mode else {
            return 0;
        };
        let elapsed = now_ns.saturating_sub(start_ns) as f64 / 1e9;
        let due = (elapsed * per_sec) as u64 + 1;
        due.saturating_sub(self.next_seq).min(MAX_CATCH_UP)
    }

    /// Takes the sequence number for the message being sent.
    pub(crate) fn next(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends what `count` says, returning the sequence numbers sent.
    fn send(pacer: &mut Pacer, count: u64) -> Vec<u64> {
        (0..count).map(|_| pacer.next()).collect()
    }

    #[test]
    fn a_closed_loop_keeps_exactly_one_message_in_flight() {
        let mut pacer = Pacer::new(None);
        let n = pacer.start(0);
        assert_eq!(send(&mut pacer, n), [0]);
        assert_eq!(pacer.due(5_000_000_000), 0, "no ticks in a closed loop");
        // Someone else's echo of an old number, or a repeat, sends nothing.
        assert_eq!(pacer.on_own_receipt(7, true), 0);
        let n = pacer.on_own_receipt(0, true);
        assert_eq!(send(&mut pacer, n), [1]);
        assert_eq!(
            pacer.on_own_receipt(0, true),
            0,
            "a duplicate of 0 is not 1 coming back"
        );
        let n = pacer.on_own_receipt(1, true);
        assert_eq!(send(&mut pacer, n), [2]);
    }

    #[test]
    fn a_closed_loop_stops_when_sending_stops() {
        let mut pacer = Pacer::new(None);
        let n = pacer.start(0);
        send(&mut pacer, n);
        assert_eq!(pacer.on_own_receipt(0, false), 0);
        // Nothing is awaited any more: a late repeat does not restart the loop.
        assert_eq!(pacer.on_own_receipt(0, true), 0);
        assert_eq!(pacer.on_own_receipt(1, true), 0);
    }

    #[test]
    fn a_rate_sends_what_is_due_and_catches_up_in_bounded_bursts() {
        let mut pacer = Pacer::new(Some(100.0));
        assert_eq!(pacer.start(1_000_000_000), 0);
        assert_eq!(pacer.due(1_000_000_000), 1, "the first message at once");
        send(&mut pacer, 1);
        assert_eq!(pacer.due(1_005_000_000), 0);
        // 0.5 s in at 100/s: messages 0..=50 due, 0 sent.
        assert_eq!(pacer.due(1_500_000_000), 50);
        send(&mut pacer, 50);
        assert_eq!(pacer.due(1_500_000_000), 0);
        assert_eq!(pacer.on_own_receipt(3, true), 0, "receipts do not pace a rate");
        // A long stall: at most MAX_CATCH_UP at once.
        assert_eq!(pacer.due(1_000_000_000 + 60_000_000_000), MAX_CATCH_UP);
    }
}
