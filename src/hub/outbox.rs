//! The bounded outbound queue of one connection.
//!
//! Anyone may push (the connection itself for echo and pongs, the hub for
//! broadcasts) without waiting: a push takes a short lock, appends a shared
//! frame and wakes the connection's task. Nothing ever waits on the socket
//! while holding it. A push that would exceed the bounds evicts the
//! connection instead of blocking the pusher: one slow reader must not slow
//! the room.
//!
//! A connection that waits with nothing to write arms its outbox with its
//! socket, and then the hub, on the connection's own thread, writes a
//! frame to it at once (one non-blocking `send(2)`, under the lock) instead
//! of queueing it and waking the task: a fan-out's delivery to an idle
//! subscriber costs the system call and little else.
//!
//! An idle outbox costs one 96-byte allocation (its `Arc`): an empty `Vec`
//! allocates nothing, the waker is the task's own, and what only a closing
//! connection needs is boxed.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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
    /// A `Vec`, not a `VecDeque` (a word smaller): the connection takes
    /// all of it at once and turns the buffer into its write queue.
    frames: Vec<Bytes>,
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
    ///
    /// `keep_first`: the first frame was written in part already (by
    /// [`Outbox::push_now`]) and must be finished, or the close frame would
    /// not start on a frame boundary.
    fn evict(&mut self, keep_first: bool) {
        if keep_first && !self.frames.is_empty() {
            self.frames.truncate(1);
            self.bytes = saturate(self.frames[0].len());
        } else {
            self.frames = Vec::new();
            self.bytes = 0;
        }
        self.close = Some(Box::new(CloseRequest::Evicted(
            CloseCode::PolicyViolation,
            SLOW_CONSUMER,
        )));
    }
}

/// What [`Outbox::push_now`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the connection's task (its waker woken), after the
    /// first `written` bytes went to the socket at once.
    Queued {
        /// Bytes of the frame already written.
        written: usize,
    },
    /// Written to the socket at once, every byte: count it as sent.
    Sent,
}

/// A connection's outbound queue, shared between its task and the hub.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// The connection's socket while it is armed for [`Outbox::push_now`]
    /// (its task waits with nothing to write), else -1. Only the thread
    /// that runs the connection arms, disarms and reads it.
    socket: AtomicI32,
    /// Bytes of the queue's first frame that [`Outbox::push_now`] wrote
    /// before the socket was full; 0 when none. Read and written with the
    /// lock held (an atomic only to be shared).
    started: AtomicU32,
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
                frames: Vec::new(),
                bytes: 0,
                max_bytes: saturate(max_bytes),
                waker: None,
                close: None,
            }),
            socket: AtomicI32::new(-1),
            started: AtomicU32::new(0),
            max_messages: saturate(max_messages),
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
        let result = self.enqueue(&mut state, frame);
        wake(state);
        result
    }

    /// Appends to the queue within its bounds, or evicts the connection.
    fn enqueue(&self, state: &mut State, frame: Bytes) -> Result<(), Rejected> {
        if state.close.is_some() {
            return Err(Rejected::Closing);
        }
        let len = saturate(frame.len());
        let over = state.frames.len() >= self.max_messages as usize
            || (!state.frames.is_empty() && u64::from(state.bytes) + u64::from(len) > u64::from(state.max_bytes));
        if over {
            state.evict(self.started.load(Ordering::Relaxed) > 0);
            return Err(Rejected::Overflow);
        }
        state.bytes = state.bytes.saturating_add(len);
        state.frames.push(frame);
        Ok(())
    }

    /// Queues one frame, or writes it to the socket at once when the
    /// connection is armed (see [`Outbox::arm`]) and nothing is queued:
    /// a fan-out's delivery to an idle subscriber is then one `send(2)`,
    /// without waking and polling its task (at one event in flight, that
    /// was most of wshub's own CPU per delivery). Call only from the thread
    /// that runs the connection. Whatever the socket does not take at once
    /// is queued, and the connection takes over from there, errors
    /// included.
    ///
    /// # Errors
    /// As [`Outbox::push`].
    pub fn push_now(&self, frame: Bytes) -> Result<Pushed, Rejected> {
        let socket = self.socket.load(Ordering::Relaxed);
        if socket < 0 {
            return self.push(frame).map(|()| Pushed::Queued { written: 0 });
        }
        let mut state = self.lock();
        if state.close.is_some() || !state.frames.is_empty() {
            let result = self.enqueue(&mut state, frame);
            wake(state);
            return result.map(|()| Pushed::Queued { written: 0 });
        }
        // SAFETY: an armed socket is open: the connection disarms before
        // it could close it (at the start of each poll, and on drop), and
        // this runs on the connection's own thread.
        let fd = unsafe { BorrowedFd::borrow_raw(socket) };
        // A frame the socket does not take whole (none of it on an error:
        // the connection's own write meets the error, or waits for room,
        // and acts on it) is queued with what was written of it, for the
        // connection to finish before anything else.
        let written = match socket2::SockRef::from(&fd).send(&frame) {
            Ok(n) if n == frame.len() => return Ok(Pushed::Sent),
            Ok(n) => n,
            Err(_) => 0,
        };
        self.disarm();
        let result = self.enqueue(&mut state, frame);
        if result.is_ok() {
            self.started.store(saturate(written), Ordering::Relaxed);
        }
        wake(state);
        result.map(|()| Pushed::Queued { written })
    }

    /// Lets [`Outbox::push_now`] write to `socket` directly, until
    /// [`Outbox::disarm`]: for a connection whose task waits with nothing
    /// queued or half written, its waker registered.
    pub fn arm(&self, socket: RawFd) {
        self.socket.store(socket, Ordering::Relaxed);
    }

    /// Frames go through the queue again: the connection is running, has
    /// something of its own to write, or is about to close its socket.
    pub fn disarm(&self) {
        self.socket.store(-1, Ordering::Relaxed);
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
        wake(state);
    }

    /// Moves every queued frame to the back of `into` (the connection's
    /// in-flight batch; when that is empty, the queue's buffer becomes the
    /// batch's, so the frames are not copied and the outbox keeps no
    /// buffer) and returns any close request, and how many bytes of the
    /// first frame were written already (see [`Outbox::push_now`]: only
    /// ever into an empty batch). `Pending` registers the task's waker
    /// when there is nothing.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut VecDeque<Bytes>) -> Poll<(Option<CloseRequest>, usize)> {
        let mut state = self.lock();
        if state.frames.is_empty() && state.close.is_none() {
            if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if into.is_empty() {
            // O(1): the `Vec`'s buffer becomes the queue's.
            *into = VecDeque::from(std::mem::take(&mut state.frames));
        } else {
            into.extend(std::mem::take(&mut state.frames));
        }
        state.bytes = 0;
        let started = self.started.swap(0, Ordering::Relaxed) as usize;
        Poll::Ready((state.close.as_deref().cloned(), started))
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
        state.evict(self.started.load(Ordering::Relaxed) > 0);
        wake(state);
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
    /// Returns how much of the first frame was written already, as
    /// [`Outbox::poll_take`].
    pub fn drain_into(&self, into: &mut VecDeque<Bytes>) -> usize {
        let mut state = self.lock();
        let started = self.started.swap(0, Ordering::Relaxed) as usize;
        debug_assert!(started == 0 || into.is_empty(), "a partly written frame behind others");
        into.extend(state.frames.drain(..));
        state.bytes = 0;
        started
    }

    /// Frees the queue's buffer if it is empty (see the connection's
    /// `release_spare_capacity`).
    pub fn release_spare_capacity(&self) {
        let mut state = self.lock();
        if state.frames.is_empty() {
            state.frames = Vec::new();
        }
    }

    /// Frames waiting to be taken by the connection (for metrics).
    pub fn queued(&self) -> usize {
        self.lock().frames.len()
    }
}

/// Unlocks, then wakes the connection's task if it waits: after a push or
/// a close request, which it must look at.
fn wake(mut state: std::sync::MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// `usize` to `u32`, saturating: for bounds and frame lengths, where
/// anything past 4 GiB means "more than will ever fit".
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn take(outbox: &Outbox) -> (Vec<Bytes>, Option<CloseRequest>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        match outbox.poll_take(&mut cx, &mut batch) {
            Poll::Ready((close, _)) => (batch.into_iter().collect(), close),
            Poll::Pending => (Vec::new(), None),
        }
    }

    /// Every live connection holds one outbox in an `Arc` for its whole
    /// life, so this is per-connection memory (the idle target is 1 KiB in
    /// all). The `Arc` adds 16 bytes of counts, and mimalloc's size classes
    /// near here are 80, 96, 112 and 128: at most 80 bytes keeps the
    /// allocation in the 96-byte class.
    #[test]
    fn an_outbox_fits_a_96_byte_allocation() {
        let size = std::mem::size_of::<Outbox>();
        assert!(size <= 80, "Outbox is {size} bytes");
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

/// [`Outbox::push_now`] against a real socket pair on loopback.
#[cfg(test)]
mod direct_tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A connected pair: the server's end non-blocking, as tokio keeps it.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        client.read_exact(&mut got).unwrap();
        got
    }

    /// What the connection would write of the queue: all but what was
    /// written of the first frame already.
    fn queued_bytes(outbox: &Outbox) -> Vec<u8> {
        let mut batch = VecDeque::new();
        let started = outbox.drain_into(&mut batch);
        batch.iter().flat_map(|b| b.iter().copied()).skip(started).collect()
    }

    #[test]
    fn an_armed_empty_outbox_writes_at_once() {
        let (server, mut client) = pair();
        let outbox = Outbox::new(10, 1 << 20);
        outbox.arm(server.as_raw_fd());
        assert_eq!(outbox.push_now(Bytes::from_static(b"hello")), Ok(Pushed::Sent));
        assert_eq!(outbox.push_now(Bytes::from_static(b"again")), Ok(Pushed::Sent));
        assert_eq!(outbox.queued(), 0);
        assert_eq!(read_exactly(&mut client, 10), b"helloagain");
    }

    #[test]
    fn a_disarmed_outbox_or_one_with_frames_queued_queues() {
        let (server, mut client) = pair();
        let outbox = Outbox::new(10, 1 << 20);
        let queued = Pushed::Queued { written: 0 };
        assert_eq!(outbox.push_now(Bytes::from_static(b"1")), Ok(queued));
        outbox.arm(server.as_raw_fd());
        // Something waits in the queue: a direct write would overtake it.
        assert_eq!(outbox.push_now(Bytes::from_static(b"2")), Ok(queued));
        assert_eq!(queued_bytes(&outbox), b"12");
        outbox.disarm();
        assert_eq!(outbox.push_now(Bytes::from_static(b"3")), Ok(queued));
        assert_eq!(queued_bytes(&outbox), b"3");
        client.set_nonblocking(true).unwrap();
        let mut buf = [0; 8];
        assert!(client.read(&mut buf).is_err(), "nothing was written directly");
    }

    #[test]
    fn a_closing_outbox_writes_nothing() {
        let (server, mut client) = pair();
        let outbox = Outbox::new(10, 1 << 20);
        outbox.arm(server.as_raw_fd());
        outbox.request_close(CloseRequest::Graceful(CloseCode::GoingAway, "bye"));
        assert_eq!(outbox.push_now(Bytes::from_static(b"x")), Err(Rejected::Closing));
        client.set_nonblocking(true).unwrap();
        assert!(client.read(&mut [0; 8]).is_err());
    }

    /// A socket that stops taking bytes mid-frame: the rest is queued under
    /// the same lock and the outbox disarmed, so the connection writes it
    /// next and every later frame follows it.
    #[test]
    fn what_a_full_socket_does_not_take_is_queued_in_order() {
        let (server, mut client) = pair();
        let outbox = Outbox::new(1_000_000, 1 << 30);
        outbox.arm(server.as_raw_fd());
        let frame = Bytes::from((0..=255u8).cycle().take(64 * 1024).collect::<Vec<u8>>());
        let mut sent = Vec::new();
        let mut written_at_once = 0;
        let mut pushes = 0;
        loop {
            pushes += 1;
            match outbox.push_now(frame.clone()).unwrap() {
                Pushed::Sent => written_at_once += frame.len(),
                Pushed::Queued { written } => {
                    written_at_once += written;
                    break;
                }
            }
            assert!(pushes < 10_000, "a socket buffer is not a gigabyte");
        }
        sent.extend(std::iter::repeat_n(frame.clone(), pushes).flatten());
        assert_eq!(
            outbox.push_now(Bytes::from_static(b"after")),
            Ok(Pushed::Queued { written: 0 }),
            "disarmed once the socket was full"
        );
        sent.extend_from_slice(b"after");
        let mut received = read_exactly(&mut client, written_at_once);
        received.extend(queued_bytes(&outbox));
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the bytes arrive whole and in order");
    }

    /// A frame larger than every buffer between the two ends (64 MiB) is
    /// written only in part; evicting the connection then keeps it, so
    /// that its close frame still starts on a frame boundary.
    #[test]
    fn an_eviction_keeps_a_partly_written_frame() {
        let (server, _client) = pair();
        let outbox = Outbox::new(4, 1 << 30);
        outbox.arm(server.as_raw_fd());
        let big = Bytes::from(vec![7u8; 64 << 20]);
        let Ok(Pushed::Queued { written }) = outbox.push_now(big.clone()) else {
            panic!("64 MiB went out at once");
        };
        assert!(written > 0 && written < big.len(), "written {written}");
        for frame in [&b"a"[..], b"b", b"c"] {
            assert_eq!(
                outbox.push_now(Bytes::from_static(frame)),
                Ok(Pushed::Queued { written: 0 })
            );
        }
        assert_eq!(outbox.push(Bytes::from_static(b"d")), Err(Rejected::Overflow));
        let mut batch = VecDeque::new();
        assert_eq!(outbox.drain_into(&mut batch), written);
        assert_eq!(batch, [big], "only the partly written frame is left");
        assert!(matches!(outbox.close_requested(), Some(CloseRequest::Evicted(..))));
    }
}
