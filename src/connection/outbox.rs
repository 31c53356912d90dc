//! The bounded outbound queue of one connection.
//!
//! Anyone may push (the connection itself for echo and pongs, the hub for
//! broadcasts) without waiting: a push takes a short lock, appends a shared
//! frame and wakes the connection's task. Nothing ever waits on the socket
//! while holding it. A push that would exceed the bounds evicts the
//! connection instead of blocking the pusher: one slow reader must not slow
//! the room.
//!
//! An idle outbox costs a few dozen bytes: an empty `VecDeque` allocates
//! nothing, and the waker is the task's own.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::protocol::{CloseCode, DeflateParams};

/// Why the connection must close, as decided by someone other than itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseRequest {
    /// Send this close frame after what is queued, then wait for the reply.
    Graceful(CloseCode, &'static str),
    /// The queue overflowed: drop what is queued and close with this code.
    Evicted(CloseCode, &'static str),
    /// Stop at once, without a closing handshake (shutdown timed out).
    Abort,
}

/// A push that did not queue its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// This push overflowed the queue: the connection is now being evicted.
    Overflow,
    /// The connection is already closing; the frame was dropped.
    Closing,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    waker: Option<Waker>,
    close: Option<CloseRequest>,
}

/// A connection's outbound queue, shared between its task and the hub.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    max_messages: usize,
    max_bytes: usize,
    /// permessage-deflate, if the client negotiated it: pushers that can
    /// share a compressed frame (a room's publish) look here to choose the
    /// form this connection gets.
    deflate: Option<DeflateParams>,
}

impl Outbox {
    /// An empty queue bounded by message count and bytes. A single frame
    /// larger than `max_bytes` is still accepted into an empty queue, so a
    /// big message is never undeliverable.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            max_messages,
            max_bytes,
            deflate: None,
        }
    }

    /// The same queue for a client that negotiated permessage-deflate.
    pub fn with_deflate(mut self, deflate: Option<DeflateParams>) -> Self {
        self.deflate = deflate;
        self
    }

    /// What was agreed about compression with this connection's client;
    /// `None`: send it plain frames only.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent data (pushes are
        // single statements), so poisoning is not a reason to fail.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one encoded frame.
    ///
    /// # Errors
    /// [`Rejected::Overflow`] when this push evicted the connection (log and
    /// count it), [`Rejected::Closing`] when it was already closing.
    pub fn push(&self, frame: Bytes) -> Result<(), Rejected> {
        let mut state = self.lock();
        if state.close.is_some() {
            return Err(Rejected::Closing);
        }
        let over = state.frames.len() >= self.max_messages
            || (!state.frames.is_empty() && state.bytes + frame.len() > self.max_bytes);
        let result = if over {
            state.frames = VecDeque::new();
            state.bytes = 0;
            state.close = Some(CloseRequest::Evicted(
                CloseCode::PolicyViolation,
                "slow consumer: outbound queue full",
            ));
            Err(Rejected::Overflow)
        } else {
            state.bytes += frame.len();
            state.frames.push_back(frame);
            Ok(())
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }

    /// Asks the connection to close; the first request wins, except that
    /// `Abort` overrides a graceful close that is taking too long.
    pub fn request_close(&self, request: CloseRequest) {
        let mut state = self.lock();
        match (&state.close, &request) {
            (None, _) | (Some(CloseRequest::Graceful(..)), CloseRequest::Abort) => state.close = Some(request),
            _ => return,
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every queued frame to the back of `into` (the connection's
    /// in-flight batch, so its allocation is reused) and returns any close
    /// request. `Pending` registers the task's waker when there is nothing.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut VecDeque<Bytes>) -> Poll<Option<CloseRequest>> {
        let mut state = self.lock();
        if state.frames.is_empty() && state.close.is_none() {
            if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if into.is_empty() {
            std::mem::swap(into, &mut state.frames);
        } else {
            into.append(&mut state.frames);
        }
        state.bytes = 0;
        Poll::Ready(state.close.clone())
    }

    /// Ready once an [`CloseRequest::Abort`] arrives: a connection that is
    /// already closing still has to notice that shutdown ran out of time.
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.close == Some(CloseRequest::Abort) {
            return Poll::Ready(());
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Moves what is queued to `into` at once, without registering a waker:
    /// used when closing, so that replies already queued go out before the
    /// close frame.
    pub fn drain_into(&self, into: &mut VecDeque<Bytes>) {
        let mut state = self.lock();
        into.append(&mut state.frames);
        state.bytes = 0;
    }

    /// Frames waiting to be taken by the connection (for metrics).
    pub fn queued(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn take(outbox: &Outbox) -> (Vec<Bytes>, Option<CloseRequest>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        match outbox.poll_take(&mut cx, &mut batch) {
            Poll::Ready(close) => (batch.into_iter().collect(), close),
            Poll::Pending => (Vec::new(), None),
        }
    }

    #[test]
    fn overflow_by_count_evicts_and_drops_the_queue() {
        let outbox = Outbox::new(2, 1 << 20);
        outbox.push(Bytes::from_static(b"a")).unwrap();
        outbox.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Err(Rejected::Overflow));
        assert_eq!(outbox.push(Bytes::from_static(b"d")), Err(Rejected::Closing));
        let (frames, close) = take(&outbox);
        assert!(frames.is_empty());
        assert!(matches!(
            close,
            Some(CloseRequest::Evicted(CloseCode::PolicyViolation, _))
        ));
    }

    #[test]
    fn a_big_frame_fits_an_empty_queue_but_bytes_bound_the_rest() {
        let outbox = Outbox::new(100, 10);
        outbox.push(Bytes::from(vec![0; 50])).unwrap();
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(Rejected::Overflow));
    }

    #[test]
    fn taking_frees_room_and_keeps_order() {
        let outbox = Outbox::new(2, 1 << 20);
        outbox.push(Bytes::from_static(b"1")).unwrap();
        outbox.push(Bytes::from_static(b"2")).unwrap();
        assert_eq!(take(&outbox).0, [Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
        outbox.push(Bytes::from_static(b"3")).unwrap();
        assert_eq!(take(&outbox).0, [Bytes::from_static(b"3")]);
    }

    #[test]
    fn abort_overrides_a_graceful_close_but_not_the_reverse() {
        let outbox = Outbox::new(2, 100);
        outbox.request_close(CloseRequest::Graceful(CloseCode::GoingAway, "shutdown"));
        outbox.request_close(CloseRequest::Abort);
        assert_eq!(take(&outbox).1, Some(CloseRequest::Abort));
        outbox.request_close(CloseRequest::Graceful(CloseCode::GoingAway, "again"));
        assert_eq!(take(&outbox).1, Some(CloseRequest::Abort));
    }
}
