//! The bounded outbound queue of one connection.
//!
//! Anyone may push (the connection itself for echo and pongs, the hub for
//! broadcasts) without waiting: a push takes a short lock, appends a shared
//! frame and wakes the connection's task. Nothing ever waits on the socket
//! while holding it. A push that would exceed the bounds evicts the
//! connection instead of blocking the pusher: one slow reader must not slow
//! the room.
//!
//! An idle outbox costs one 112-byte allocation (its `Arc`): an empty
//! `VecDeque` allocates nothing, the waker is the task's own, and what only
//! a closing connection needs is boxed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::protocol::{CloseCode, DeflateParams};

/// The reason of a slow consumer's close frame.
const SLOW_CONSUMER: &str = "slow consumer: outbound queue full";

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

/// Every live connection holds one of these, so its fields are sized to
/// keep [`Outbox`] small: see `an_outbox_fits_a_96_byte_allocation`.
#[derive(Debug)]
struct State {
    frames: VecDeque<Bytes>,
    /// Saturates rather than wraps; a queue of 4 GiB is long past any bound.
    bytes: u32,
    /// Here rather than in [`Outbox`], which has no padding left for it: it
    /// shares a word with `bytes`, and the push that reads it holds the lock.
    max_bytes: u32,
    waker: Option<Waker>,
    /// Boxed: only a closing connection has one, and the box is a third of
    /// the request's size.
    close: Option<Box<CloseRequest>>,
}

impl State {
    /// Drops what is queued and asks for the slow consumer's close: what
    /// an overflowing push does, and [`Outbox::evict`] for frames that
    /// wait outside the queue.
    fn evict(&mut self) {
        self.frames = VecDeque::new();
        self.bytes = 0;
        self.close = Some(Box::new(CloseRequest::Evicted(
            CloseCode::PolicyViolation,
            SLOW_CONSUMER,
        )));
    }
}

/// A connection's outbound queue, shared between its task and the hub.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// The connection's number (see [`Outbox::number`]).
    number: u64,
    max_messages: u32,
    /// permessage-deflate, if the client negotiated it: pushers that can
    /// share a compressed frame (a room's publish) look here to choose the
    /// form this connection gets.
    deflate: Option<DeflateParams>,
}

impl Outbox {
    /// An empty queue bounded by message count and bytes. A single frame
    /// larger than `max_bytes` is still accepted into an empty queue, so a
    /// big message is never undeliverable. Bounds beyond `u32::MAX` act as
    /// `u32::MAX`: no server has room for more.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                max_bytes: saturate(max_bytes),
                waker: None,
                close: None,
            }),
            number: next_number(),
            max_messages: saturate(max_messages),
            deflate: None,
        }
    }

    /// The number its connection is known by: what a room's events skip
    /// their own member by, and what Pusher socket ids seal. Never given
    /// twice in a process (an address would be, once freed), so a socket
    /// id, and a signature made for it, cannot pass to a later connection.
    pub fn number(&self) -> u64 {
        self.number
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
        self.push_bounded(frame, true)
    }

    fn push_bounded(&self, frame: Bytes, counted: bool) -> Result<(), Rejected> {
        let mut state = self.lock();
        if state.close.is_some() {
            return Err(Rejected::Closing);
        }
        let len = saturate(frame.len());
        let over = (counted && state.frames.len() >= self.max_messages as usize)
            || (!state.frames.is_empty() && u64::from(state.bytes) + u64::from(len) > u64::from(state.max_bytes));
        let result = if over {
            state.evict();
            Err(Rejected::Overflow)
        } else {
            state.bytes = state.bytes.saturating_add(len);
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

    /// Queues a frame the connection sends in answer to its own input (an
    /// echo, a reply, an error). Not held to the count bound: a client
    /// that sends a thousand requests in one write must get a thousand
    /// answers, not be evicted as a slow consumer by its own replies. What
    /// bounds them is that the connection reads no more input until what
    /// it has to send is written (the driver's read hold), so at most one
    /// read's worth waits; the byte bound still holds.
    ///
    /// # Errors
    /// As [`Outbox::push`].
    pub fn reply(&self, frame: Bytes) -> Result<(), Rejected> {
        self.push_bounded(frame, false)
    }

    /// Asks the connection to close; the first request wins, except that
    /// `Abort` overrides a graceful close that is taking too long.
    pub fn request_close(&self, request: CloseRequest) {
        let mut state = self.lock();
        match (state.close.as_deref(), &request) {
            (None, _) | (Some(CloseRequest::Graceful(..)), CloseRequest::Abort) => {
                state.close = Some(Box::new(request))
            }
            _ => return,
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every queued frame to the back of `into` (the connection's
    /// in-flight batch; when that is empty, the two buffers are swapped,
    /// so the frames are not copied and the outbox keeps no buffer) and
    /// returns any close request. `Pending` registers the task's waker
    /// when there is nothing.
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
        Poll::Ready(state.close.as_deref().cloned())
    }

    /// Whether a frame of `len` bytes fits in half the bounds (the other
    /// half is left for live traffic): how a replay is paced. An empty
    /// queue takes any one frame, so a big message still goes out.
    pub fn has_room_for(&self, len: usize) -> bool {
        let state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.frames.is_empty()
            || (state.frames.len() < (self.max_messages / 2) as usize
                && u64::from(state.bytes) + len as u64 <= u64::from(state.max_bytes / 2))
    }

    /// Whether `extra` bytes waiting elsewhere for this connection (a
    /// replay's backlog), with what is queued, are over the byte bound.
    pub fn exceeds_bytes(&self, extra: usize) -> bool {
        let state = self.lock();
        u64::from(state.bytes) + extra as u64 > u64::from(state.max_bytes)
    }

    /// Evicts the connection as a slow consumer, as an overflowing push
    /// would (for frames that wait outside the queue).
    pub fn evict(&self) {
        let mut state = self.lock();
        if state.close.is_some() {
            return;
        }
        state.evict();
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The close request, if any, without taking frames or registering a
    /// waker (the connection looks while its socket is still busy with
    /// earlier frames).
    pub fn close_requested(&self) -> Option<CloseRequest> {
        self.lock().close.as_deref().cloned()
    }

    /// Ready once an [`CloseRequest::Abort`] arrives: a connection that is
    /// already closing still has to notice that shutdown ran out of time.
    pub fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.close.as_deref() == Some(&CloseRequest::Abort) {
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

    /// Frees the queue's buffer if it is empty (see the connection's
    /// `release_spare_capacity`).
    pub fn release_spare_capacity(&self) {
        let mut state = self.lock();
        if state.frames.is_empty() {
            state.frames = VecDeque::new();
        }
    }

    /// Frames waiting to be taken by the connection (for metrics).
    pub fn queued(&self) -> usize {
        self.lock().frames.len()
    }
}

/// `usize` to `u32`, saturating: for bounds and frame lengths, where
/// anything past 4 GiB means "more than will ever fit".
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The next connection number: a count, shifted so that the low 3 and top
/// 16 bits are zero, which the sealed names' check relies on (`sealed`);
/// 2^45 connections before it wraps.
fn next_number() -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    (COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & ((1 << 45) - 1)) << 3
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

    /// Every live connection holds one outbox in an `Arc` for its whole
    /// life, so this is per-connection memory (the idle target is 1 KiB in
    /// all). The `Arc` adds 16 bytes of counts, and mimalloc's size classes
    /// near here are 80, 96, 112 and 128: at most 96 bytes keeps the
    /// allocation in the 112-byte class (it was 96 before the connection
    /// number, which a freed address could not be, took its 8 bytes).
    #[test]
    fn an_outbox_fits_a_112_byte_allocation() {
        let size = std::mem::size_of::<Outbox>();
        assert!(size <= 96, "Outbox is {size} bytes");
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

    #[test]
    fn an_empty_queue_gives_its_buffer_back_and_a_full_one_keeps_it() {
        let outbox = Outbox::new(100, 1 << 20);
        for _ in 0..10 {
            outbox.push(Bytes::from_static(b"x")).unwrap();
        }
        outbox.release_spare_capacity();
        assert_eq!(outbox.queued(), 10, "nothing queued is dropped");
        let mut batch = VecDeque::new();
        outbox.drain_into(&mut batch);
        assert_eq!(batch.len(), 10);
        assert!(
            outbox.lock().frames.capacity() >= 10,
            "draining leaves the buffer behind"
        );
        outbox.release_spare_capacity();
        assert_eq!(outbox.lock().frames.capacity(), 0);
    }
}
