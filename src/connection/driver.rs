//! The poll loop of one connection: the I/O around its protocol session.
//!
//! The [`Session`] decides what the protocol obliges and how the
//! connection ends; this file reads the socket into the decoder, hands the
//! decoder's events and the close requests to the session, carries out the
//! actions it returns (a pong into the outbox, a message to the service, a
//! close timer), and writes the session's queue out. The service is any
//! [`Handler`], held inline.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::handler::Handler;
use super::keepalive::{Deadlines, Due, ReadGate};
use super::transport::Transport;
use crate::hub::{CloseRequest, Outbox};
use crate::hub::{Hub, Registration};
use crate::metrics::RateAction;
use crate::protocol::{Action, Decoder, Ending, Endpoint, Event, Message, OverBudget, Session, Timeout};
use crate::ratelimit::Verdict;
use bytes::Bytes;
use tokio::io::ReadBuf;

/// Bytes read per `read` call, into a buffer shared by all connections of a
/// thread: a connection holds read bytes only while a frame is incomplete.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Reads per poll before yielding to other connections.
const READS_PER_POLL: usize = 16;

/// Rounds of taking from the outbox and writing in one pass of `poll`,
/// before other connections get a turn.
const OUTBOX_ROUNDS: usize = 4;

/// Frames handed to one vectored write.
const FRAMES_PER_WRITE: usize = 64;

/// A server ping without payload (FIN, opcode 0x9, length 0).
const PING: &[u8] = &[0x89, 0x00];

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// The connection's state: socket, decoder and everything else.
pub(crate) struct Connection<S, H> {
    pub(crate) stream: S,
    decoder: Decoder,
    pub(crate) core: Core<H>,
}

/// Everything but the socket and decoder, so decoder callbacks can borrow
/// it: the protocol session, and what carries out its actions (the
/// service, the outbox, the hub, the deadlines).
pub(crate) struct Core<H> {
    service: H,
    outbox: Arc<Outbox>,
    hub: Hub,
    /// Process-unique connection number, for log lines.
    id: u64,
    pub(crate) deadlines: Deadlines,
    /// The closing handshake and the frames being written.
    session: Session,
}

/// What a connection is attached to, besides its socket.
#[derive(Debug)]
pub struct Setup<H> {
    /// What to do with received messages.
    pub service: H,
    /// The connection's outbound queue, already registered with the hub
    /// (and joined to its room, for chat).
    pub outbox: Arc<Outbox>,
    /// The hub, for counters.
    pub hub: Hub,
    /// Process-unique connection number, for log lines.
    pub id: u64,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Time left on the connection's access token: when it runs out, the
    /// connection is closed with 1008.
    pub expires_in: Option<std::time::Duration>,
}

impl<S: Transport, H: Handler> Connection<S, H> {
    /// Builds the connection; `already_read` holds bytes that arrived with
    /// the upgrade request, and is decoded at once (not kept: it is a slice
    /// of hyper's read buffer, kilobytes that an idle connection must not
    /// hold).
    pub(crate) fn new(stream: S, already_read: Bytes, setup: Setup<H>) -> Self {
        let now = setup.hub.clock().now();
        // wshub.v1 clients can be told that a message was dropped for their
        // rate; raw ones cannot, so they are slowed down instead.
        let throttles = setup.service.throttles();
        let deadlines = Deadlines::new(setup.hub.timeouts(), now, throttles);
        let mut connection = Connection {
            stream,
            // The outbox carries what the handshake agreed on compression.
            decoder: Decoder::new(setup.max_message_size).with_deflate(setup.outbox.deflate().is_some()),
            core: Core {
                service: setup.service,
                outbox: setup.outbox,
                hub: setup.hub,
                id: setup.id,
                deadlines,
                session: Session::new(),
            },
        };
        if let Some(after) = setup.expires_in {
            connection.core.deadlines.expire_after(now, after);
        }
        if !already_read.is_empty() {
            connection.ingest(&already_read);
        }
        connection
    }
}

impl<S: Transport, H: Handler> Connection<S, H> {
    /// Runs the connection until it ends; `registration` carries its alarm.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, registration: &Registration) -> Poll<Ending> {
        loop {
            let mut messages = 0;
            let holds_reads = self.core.holds_reads();
            let read_budget_left = holds_reads || self.poll_read(cx, &mut messages);
            if messages > 0 && self.core.gives_way() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let (write_blocked, more) = self.write_outbox(cx);
            if let Some(ending) = self.core.session.finished() {
                return Poll::Ready(ending);
            }
            if holds_reads && !write_blocked && self.core.session.is_written_out() {
                // Written out: read again (the socket's read side was not
                // polled, so nothing else would wake us for it).
                continue;
            }
            if !write_blocked && self.core.continue_replays() && self.core.outbox.queued() > 0 {
                // More of a replay was queued: take it.
                continue;
            }
            let now = self.core.now();
            let timeout = match self.core.deadlines.due(self.core.hub.timeouts(), now) {
                Due::Nothing => None,
                Due::Ping => {
                    self.core.release_spare_capacity();
                    if let Err(e) = self.send_ping(cx) {
                        self.core.session.io_failed(e.kind());
                    }
                    continue;
                }
                Due::ReadTimeout => Some(Timeout::Read),
                Due::WriteTimeout => Some(Timeout::Write),
                Due::CloseTimeout => Some(Timeout::Close),
                Due::Expired => {
                    self.core.close_for_policy("token expired");
                    continue;
                }
            };
            if let Some(timeout) = timeout {
                return Poll::Ready(self.core.session.timed_out(timeout));
            }
            if !read_budget_left {
                // Let other connections run; come back at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if more {
                // The outbox may hold more, and its waker is not
                // registered: look again after the others had a turn.
                continue;
            }
            if let Some(at) = self.core.deadlines.rearm(self.core.hub.timeouts(), now) {
                registration.arm(at, cx.waker());
            }
            return Poll::Pending;
        }
    }

    /// Takes what the outbox holds and writes it out, again while it had
    /// something and the socket took it all, until the outbox is empty
    /// (its waker registered) or [`OUTBOX_ROUNDS`] have passed. Returns
    /// whether the write is blocked and whether the outbox may hold more
    /// without a waker registered. Looping here rather than in `poll`
    /// spares a pushed-to connection (the usual fan-out case: one frame,
    /// one write) a second pass over its read side and deadlines.
    fn write_outbox(&mut self, cx: &mut Context<'_>) -> (bool, bool) {
        for _ in 0..OUTBOX_ROUNDS {
            let took = self.core.poll_outbox(cx);
            let write_blocked = match self.poll_write(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => {
                    self.core.session.io_failed(e.kind());
                    true
                }
                Poll::Pending => true,
            };
            if !took || write_blocked {
                return (write_blocked, false);
            }
        }
        (false, true)
    }

    /// Reads and decodes what has arrived, counting the messages into
    /// `messages`; false when the budget ran out with more possibly waiting.
    fn poll_read(&mut self, cx: &mut Context<'_>, messages: &mut usize) -> bool {
        if !self.core.session.reads() {
            return true;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_POLL {
                if self.read_paused(cx) {
                    // Over its rate: the socket waits (TCP slows the
                    // sender); the alarm wakes us when the buckets refill.
                    return true;
                }
                let limit = {
                    let core = &self.core;
                    let frame_left = self.decoder.frame_bytes_left();
                    core.deadlines
                        .read_limit(core.hub.timeouts(), SCRATCH_BYTES, frame_left)
                };
                let mut buf = ReadBuf::new(&mut scratch[..limit]);
                match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                    Poll::Pending => return true,
                    Poll::Ready(Err(e)) => {
                        self.core.session.io_failed(e.kind());
                        return true;
                    }
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        self.core.session.peer_gone();
                        return true;
                    }
                    Poll::Ready(Ok(())) => {
                        let core = &mut self.core;
                        let now = core.now();
                        core.deadlines.read_at(core.hub.timeouts(), now);
                        let filled = buf.filled().len();
                        if core.deadlines.charge_read(core.hub.timeouts(), filled) {
                            core.throttling_starts();
                        }
                        *messages += self.ingest(&scratch[..filled]);
                        self.core.session.read(filled);
                        if !self.core.session.reads() {
                            return true;
                        }
                    }
                }
            }
            false
        })
    }

    /// Whether reading waits for a throttled connection's buckets; only
    /// while messages flow (a closing handshake is always read).
    fn read_paused(&mut self, cx: &Context<'_>) -> bool {
        let core = &mut self.core;
        if !core.session.is_open() {
            return false;
        }
        let now = core.now();
        match core.deadlines.read_gate(core.hub.timeouts(), now) {
            ReadGate::Open => false,
            ReadGate::Paused => true,
            ReadGate::PausedUntil(at) => {
                core.hub.clock().wake_at(at, cx.waker().clone());
                true
            }
        }
    }

    /// Sends a ping: straight to the socket when nothing else is being
    /// written (the usual case, and it allocates nothing), else after what
    /// is queued.
    fn send_ping(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut sent = 0;
        if self.core.session.is_written_out() {
            if let Poll::Ready(result) = Pin::new(&mut self.stream).poll_write(cx, PING) {
                sent = result?;
                let core = &self.core;
                core.hub
                    .metrics()
                    .frames_out(core.endpoint(), usize::from(sent == PING.len()), sent);
            }
        }
        if sent < PING.len() {
            self.core
                .session
                .outgoing()
                .push_back(Bytes::from_static(&PING[sent..]));
        }
        Ok(())
    }

    /// Decodes `bytes` and acts on them; returns how many messages they
    /// completed.
    fn ingest(&mut self, bytes: &[u8]) -> usize {
        let core = &mut self.core;
        core.hub.metrics().bytes_in(core.endpoint(), bytes.len());
        if !core.session.is_open() {
            // Closing (whoever began it, here or elsewhere): data is no
            // longer even inflated, only the peer's close is looked for.
            self.decoder.skip_data();
        }
        let mut messages = 0;
        // A violation comes as an event in its place, so that the session
        // fails the connection before it sees a close that followed.
        self.decoder.decode(bytes, &mut |event| {
            messages += usize::from(matches!(event, Event::Message(_)));
            core.on_event(event);
        });
        // A message still arriving keeps its buffer until the next read:
        // that counts against the server-wide budget.
        if let Err(over) = self.decoder.account(core.hub.incomplete_messages()) {
            core.overloaded(over);
        }
        if !core.session.is_open() {
            self.decoder.skip_data();
        }
        messages
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let core = &mut self.core;
        while !core.session.is_written_out() {
            let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE];
            let mut count = 0;
            for (slice, bytes) in slices.iter_mut().zip(core.session.unwritten()) {
                *slice = IoSlice::new(bytes);
                count += 1;
            }
            match Pin::new(&mut self.stream).poll_send(cx, &slices[..count]) {
                Poll::Pending => {
                    core.deadlines.write_stalled(core.hub.clock().now());
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    core.deadlines.write_progressed();
                    let frames = core.session.wrote(n);
                    core.hub.metrics().frames_out(core.endpoint(), frames, n);
                }
            }
        }
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => {
                core.deadlines.write_stalled(core.now());
                return Poll::Pending;
            }
            Poll::Ready(result) => result?,
        }
        core.session.flushed();
        Poll::Ready(Ok(()))
    }
}

impl<H: Handler> Core<H> {
    /// The connection's number, for log lines.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Now, on the hub's millisecond clock.
    pub(crate) fn now(&self) -> u64 {
        self.hub.clock().now()
    }

    /// How long the connection has lived.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.deadlines.age(self.now())
    }

    /// The connection is over: its socket shutdown may now take at most the
    /// write timeout.
    pub(crate) fn shutting_down(&mut self) {
        let now = self.now();
        self.deadlines.shutting_down(self.hub.timeouts(), now);
    }

    /// Ready once the bound set by `shutting_down` has passed; until then
    /// the alarm is armed for it.
    pub(crate) fn poll_shutdown_bound(&mut self, cx: &mut Context<'_>, registration: &Registration) -> Poll<()> {
        let now = self.now();
        if self.deadlines.close_overdue(now) {
            return Poll::Ready(());
        }
        if let Some(at) = self.deadlines.rearm(self.hub.timeouts(), now) {
            registration.arm(at, cx.waker());
        }
        Poll::Pending
    }

    /// Gives back the outbox space a past burst left behind (frames pushed
    /// while earlier ones were being written grow the outbox's own buffer,
    /// which then keeps its capacity; the write queue frees its buffer
    /// whenever it is written out). Called when a ping is due, once per
    /// ping interval: a connection that went quiet ends up holding no queue
    /// memory, and a busy one pays one reallocation a minute.
    fn release_spare_capacity(&mut self) {
        self.outbox.release_spare_capacity();
    }

    /// Keeps how the connection ended until the close line is logged.
    pub(crate) fn set_ending(&mut self, ending: Ending) {
        self.session.set_ending(ending);
    }

    /// How the connection ended (see `set_ending`).
    pub(crate) fn ending(&self) -> Option<&Ending> {
        self.session.ending()
    }

    fn endpoint(&self) -> crate::protocol::Endpoint {
        self.service.endpoint()
    }

    /// Paces out any replay of the service, once the write queue is
    /// written out; true while some replay is not over.
    fn continue_replays(&mut self) -> bool {
        self.session.is_written_out() && self.session.is_open() && self.service.continue_replays()
    }

    /// Moves queued frames into the write queue, once it is written out;
    /// true if it took anything, or left something to take once the queue
    /// is written out.
    ///
    /// Taking only into an empty queue keeps what a client has not read
    /// within its outbox's bounds: frames wait in the outbox, where every
    /// push is counted, instead of piling up in the write queue behind a
    /// socket that does not drain. That goes for the connection's own
    /// replies (history, pongs) as much as for broadcasts: at most one
    /// outbox's worth is in flight and one more queued.
    fn poll_outbox(&mut self, cx: &mut Context<'_>) -> bool {
        if self.session.is_ended() {
            return false;
        }
        if !self.session.is_open() {
            if self.outbox.poll_aborted(cx).is_ready() {
                self.session.abort();
            }
            return false;
        }
        if !self.session.is_written_out() {
            if let Some(request) = self.outbox.close_requested() {
                self.on_close_request(request);
            }
            return true;
        }
        match self.outbox.poll_take(cx, self.session.outgoing()) {
            Poll::Pending => false,
            Poll::Ready(None) => true,
            Poll::Ready(Some(request)) => {
                self.on_close_request(request);
                true
            }
        }
    }

    fn on_close_request(&mut self, request: CloseRequest) {
        let action = match request {
            CloseRequest::Abort => {
                self.session.abort();
                return;
            }
            CloseRequest::Graceful(code, reason) => self.session.close(code, reason),
            CloseRequest::Evicted(code, reason) => {
                self.hub.stats().evictions.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = self.id, "evicting: {reason}");
                self.session.evict(code, reason)
            }
        };
        self.apply(action);
    }

    /// Carries out what the session asked for.
    fn apply(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Deliver(message) => self.deliver(message),
            Action::Queue(frame) => {
                // An overflow evicts this connection through its outbox.
                let _ = self.outbox.push(frame);
            }
            Action::Close => {
                // Logged here for the decoder's errors and a malformed close
                // frame alike.
                if let Some(Ending::ProtocolViolation(error)) = self.session.cause() {
                    tracing::warn!(
                        conn = self.id,
                        code = error.code.as_u16(),
                        "closing connection: {}",
                        error.reason
                    );
                }
                // Replies already queued go out before the close frame.
                self.outbox.drain_into(self.session.outgoing());
                self.deadlines.closing(self.hub.timeouts(), self.now());
            }
            Action::Reply => self.deadlines.closing(self.hub.timeouts(), self.now()),
        }
    }

    /// Closes with 1013: this connection's unfinished message would take
    /// the server past `--max-incomplete-bytes` (the decoder dropped it).
    fn overloaded(&mut self, over: OverBudget) {
        let action = self.session.overloaded();
        if let Action::Close = action {
            tracing::warn!(conn = self.id, code = 1013, "closing connection: {over}");
        }
        self.apply(action);
    }

    /// Closes with 1008 for `reason` (the close log line gives it).
    fn close_for_policy(&mut self, reason: &'static str) {
        let action = self.session.close_for_policy(reason);
        self.apply(action);
    }

    /// A raw connection went over its rate: counted and logged once per
    /// episode, however many pauses it takes.
    fn throttling_starts(&self) {
        self.hub.metrics().rate_limited(self.endpoint(), RateAction::Throttled);
        tracing::info!(
            conn = self.id,
            "over its rate limit: reading paused until the client slows down"
        );
    }

    /// Holds a message to the rate limits. A message of a service that does
    /// not throttle (`wshub.v1`) is dropped when over them (delivered
    /// nowhere, stored nowhere) and the client told; a throttled (raw) one
    /// is delivered and charged, and the connection's reads pause until its
    /// buckets have paid for it. True: deliver it.
    fn admit(&mut self, message: &Message) -> bool {
        let timeouts = *self.hub.timeouts();
        let len = message.payload().len();
        let endpoint = self.endpoint();
        if self.service.throttles() {
            // Its bytes were charged as read; what inflating added is
            // charged now, so that the byte rate holds for what it sends.
            let inflated = self.deadlines.charge_read(&timeouts, message.inflated());
            if self.deadlines.charge_message(&timeouts) || inflated {
                self.throttling_starts();
            }
            return true;
        }
        let episode_starts = !self.deadlines.is_over_rate();
        let verdict = self.deadlines.admit(&timeouts, len, message.inflated());
        if verdict == Verdict::Pass {
            return true;
        }
        self.hub.stats().rate_limited.fetch_add(1, Ordering::Relaxed);
        self.hub.metrics().rate_limited(endpoint, RateAction::Dropped);
        self.service.rate_limited(message);
        if episode_starts {
            tracing::info!(
                conn = self.id,
                "over its rate limit: dropping its messages (each answered with rate_limited)"
            );
        }
        if verdict == Verdict::GiveUp {
            // The close line says why.
            self.hub.metrics().rate_limited(endpoint, RateAction::Closed);
            self.close_for_policy("rate limit");
        }
        false
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Message(_) = event {
            self.hub.metrics().message_in(self.endpoint());
        }
        let action = self.session.on_event(event);
        self.apply(action);
    }

    /// Whether to read no more input for now: while the connection still
    /// has frames to write (a client that does not read what it is sent,
    /// or a read of many requests whose answers are still going out), its
    /// requests wait in the socket and TCP slows it down, rather than its
    /// answers piling up ([`crate::hub::Outbox::reply`] is not held to the count
    /// bound). A closing handshake is always read.
    fn holds_reads(&self) -> bool {
        self.session.is_open() && !self.session.is_written_out()
    }

    /// Whether to let the room's other members go first, before writing
    /// this connection's own copy of what it just published: they were
    /// woken by the publish and wait in the runtime's queue. A client that
    /// sends its next message once it sees its last (any closed loop)
    /// would otherwise see its copy before anyone else and send again while
    /// the room still receives the last one, and every round would overlap
    /// the next. Only when that copy is all it has queued: with more, the
    /// room is busy, frames batch, and waiting helps nobody; and the next
    /// poll writes it (a new message makes two).
    fn gives_way(&self) -> bool {
        matches!(self.service.endpoint(), Endpoint::Chat | Endpoint::V1)
            && self.session.is_written_out()
            && self.outbox.queued() == 1
    }

    /// Hands a message the session let through to the service.
    fn deliver(&mut self, message: Message) {
        tracing::debug!(conn = self.id, bytes = message.payload().len(), "message");
        if !self.admit(&message) {
            return;
        }
        if let Err(give_up) = self.service.on_message(&message, &self.outbox) {
            tracing::warn!(conn = self.id, "closing connection: {}", give_up.0);
            self.close_for_policy(give_up.0);
        }
    }
}
