//! The poll loop of one connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::ending::Ending;
use super::keepalive::{Deadlines, Due, ReadGate};
use super::outbox::{CloseRequest, Outbox};
use crate::chat::ChatSession;
use crate::hub::{Hub, Membership, Registration};
use crate::metrics::RateAction;
use crate::protocol::{
    encode_close, encode_frame, frame_for, CloseCode, Decoder, Event, Message, OpCode, OverBudget, ProtocolError,
    OVER_BUDGET_REASON,
};
use crate::ratelimit::Verdict;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read per `read` call, into a buffer shared by all connections of a
/// thread: a connection holds read bytes only while a frame is incomplete.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Reads per poll before yielding to other connections.
const READS_PER_POLL: usize = 16;

/// Frames handed to one vectored write.
const FRAMES_PER_WRITE: usize = 64;

/// A server ping without payload (FIN, opcode 0x9, length 0).
const PING: &[u8] = &[0x89, 0x00];

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// What a connection does with the messages it receives.
#[derive(Debug)]
pub enum Service {
    /// Send each message back to its sender, unchanged.
    Echo,
    /// The seed's chat: publish each message, unchanged, to the room
    /// joined (where the member's `guest-N` nickname is kept).
    Raw(Membership),
    /// The `wshub.v1` JSON subprotocol.
    Chat(Box<ChatSession>),
}

/// The connection's state: socket, decoder and everything else.
pub(crate) struct Connection<S> {
    pub(crate) stream: S,
    decoder: Decoder,
    pub(crate) session: Session,
}

/// Everything but the socket and decoder, so decoder callbacks can borrow it.
pub(crate) struct Session {
    service: Service,
    outbox: Arc<Outbox>,
    hub: Hub,
    /// Process-unique connection number, for log lines.
    id: u64,
    /// Frames taken from the outbox, being written; the front one may be
    /// partly written already.
    batch: VecDeque<Bytes>,
    written: usize,
    pub(crate) deadlines: Deadlines,
    /// How the connection ends; allocated once it starts to, so that an
    /// open connection (most of them, most of the time) carries none of it.
    closing: Option<Box<Closing>>,
}

/// The state of a connection's end: the closing handshake, and why.
#[derive(Debug, Default)]
struct Closing {
    phase: Phase,
    /// Set when the connection is over outside the closing handshake (and,
    /// once it is over, the way it ended, for the close log line).
    ending: Option<Ending>,
    /// Why we started closing, reported whatever the handshake then does.
    cause: Option<Ending>,
    /// The client's close frame arrived (with its code, if any).
    peer_closed: Option<Option<u16>>,
    /// Our close frame (or close reply) has been written out.
    close_written: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Messages flow both ways.
    #[default]
    Open,
    /// We sent (or queued) a close frame and wait for the client's.
    CloseSent(CloseCode),
    /// The client closed; our reply is queued and the socket ends after it.
    Replying,
}

/// What a connection is attached to, besides its socket.
#[derive(Debug)]
pub struct Setup {
    /// What to do with received messages.
    pub service: Service,
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

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Builds the connection; `already_read` holds bytes that arrived with
    /// the upgrade request, and is decoded at once (not kept: it is a slice
    /// of hyper's read buffer, kilobytes that an idle connection must not
    /// hold).
    pub(crate) fn new(stream: S, already_read: Bytes, setup: Setup) -> Self {
        let now = setup.hub.clock().now();
        // wshub.v1 clients can be told that a message was dropped for their
        // rate; raw ones cannot, so they are slowed down instead.
        let throttles = !matches!(setup.service, Service::Chat(_));
        let deadlines = Deadlines::new(setup.hub.timeouts(), now, throttles);
        let mut connection = Connection {
            stream,
            // The outbox carries what the handshake agreed on compression.
            decoder: Decoder::new(setup.max_message_size).with_deflate(setup.outbox.deflate().is_some()),
            session: Session {
                service: setup.service,
                outbox: setup.outbox,
                hub: setup.hub,
                id: setup.id,
                batch: VecDeque::new(),
                written: 0,
                deadlines,
                closing: None,
            },
        };
        if let Some(after) = setup.expires_in {
            connection.session.deadlines.expire_after(now, after);
        }
        if !already_read.is_empty() {
            connection.ingest(&already_read);
        }
        connection
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Runs the connection until it ends; `registration` carries its alarm.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, registration: &Registration) -> Poll<Ending> {
        loop {
            let read_budget_left = self.poll_read(cx);
            let took = self.session.poll_outbox(cx);
            let write_blocked = match self.poll_write(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => {
                    self.session.end(Ending::Io(e.kind()));
                    true
                }
                Poll::Pending => true,
            };
            if let Some(ending) = self.session.finished() {
                return Poll::Ready(ending);
            }
            if !write_blocked && self.session.continue_replays() && self.session.outbox.queued() > 0 {
                // More of a replay was queued: take it.
                continue;
            }
            let now = self.session.now();
            match self.session.deadlines.due(self.session.hub.timeouts(), now) {
                Due::Nothing => {}
                Due::Ping => {
                    self.session.release_spare_capacity();
                    if let Err(e) = self.send_ping(cx) {
                        self.session.end(Ending::Io(e.kind()));
                    }
                    continue;
                }
                Due::ReadTimeout => return Poll::Ready(Ending::ReadTimeout),
                Due::WriteTimeout => return Poll::Ready(self.session.timed_out(Ending::WriteTimeout)),
                Due::CloseTimeout => {
                    let ending = match self.session.phase() {
                        Phase::CloseSent(code) => Ending::CloseTimeout(code),
                        _ => Ending::ClientClosed(self.session.peer_close_code()),
                    };
                    return Poll::Ready(self.session.timed_out(ending));
                }
                Due::Expired => {
                    self.session.close_for_policy("token expired");
                    continue;
                }
            }
            if !read_budget_left {
                // Let other connections run; come back at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if took && !write_blocked {
                // Written all that was taken: look at the outbox again so
                // that its waker gets registered.
                continue;
            }
            if let Some(at) = self.session.deadlines.rearm(self.session.hub.timeouts(), now) {
                registration.arm(at, cx.waker());
            }
            return Poll::Pending;
        }
    }

    /// Reads and decodes what has arrived; false when the budget ran out
    /// with more possibly waiting.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.session.is_ended() || self.session.phase() == Phase::Replying {
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
                    let session = &self.session;
                    let frame_left = self.decoder.frame_bytes_left();
                    session
                        .deadlines
                        .read_limit(session.hub.timeouts(), SCRATCH_BYTES, frame_left)
                };
                let mut buf = ReadBuf::new(&mut scratch[..limit]);
                match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                    Poll::Pending => return true,
                    Poll::Ready(Err(e)) => {
                        self.session.end(Ending::Io(e.kind()));
                        return true;
                    }
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        let ending = match self.session.phase() {
                            Phase::CloseSent(code) => Ending::ServerClosed(code),
                            _ => Ending::Dropped,
                        };
                        self.session.end(ending);
                        return true;
                    }
                    Poll::Ready(Ok(())) => {
                        let now = self.session.now();
                        self.session.deadlines.read_at(self.session.hub.timeouts(), now);
                        let filled = buf.filled().len();
                        if self.session.deadlines.charge_read(self.session.hub.timeouts(), filled) {
                            self.session.throttling_starts();
                        }
                        self.ingest(&scratch[..filled]);
                        if self.session.is_ended() || self.session.phase() == Phase::Replying {
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
        let session = &mut self.session;
        if session.phase() != Phase::Open {
            return false;
        }
        let now = session.now();
        match session.deadlines.read_gate(session.hub.timeouts(), now) {
            ReadGate::Open => false,
            ReadGate::Paused => true,
            ReadGate::PausedUntil(at) => {
                session.hub.clock().wake_at(at, cx.waker().clone());
                true
            }
        }
    }

    /// Sends a ping: straight to the socket when nothing else is being
    /// written (the usual case, and it allocates nothing), else after what
    /// is queued.
    fn send_ping(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut sent = 0;
        if self.session.batch.is_empty() {
            if let Poll::Ready(result) = Pin::new(&mut self.stream).poll_write(cx, PING) {
                sent = result?;
                let session = &self.session;
                session
                    .hub
                    .metrics()
                    .frames_out(session.endpoint(), usize::from(sent == PING.len()), sent);
            }
        }
        if sent < PING.len() {
            self.session.batch.push_back(Bytes::from_static(&PING[sent..]));
        }
        Ok(())
    }

    fn ingest(&mut self, bytes: &[u8]) {
        let session = &mut self.session;
        session.hub.metrics().bytes_in(session.endpoint(), bytes.len());
        if let Err(error) = self.decoder.decode(bytes, &mut |event| session.on_event(event)) {
            session.fail(error);
        }
        // A message still arriving keeps its buffer until the next read:
        // that counts against the server-wide budget.
        if let Err(over) = self.decoder.account(session.hub.incomplete_messages()) {
            session.overloaded(over);
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let session = &mut self.session;
        while !session.batch.is_empty() {
            let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE];
            let mut count = 0;
            for (i, frame) in session.batch.iter().take(FRAMES_PER_WRITE).enumerate() {
                let skip = if i == 0 { session.written } else { 0 };
                slices[i] = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..count]) {
                Poll::Pending => {
                    session.deadlines.write_stalled(session.now());
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    session.deadlines.write_progressed();
                    let frames = session.advance(n);
                    session.hub.metrics().frames_out(session.endpoint(), frames, n);
                }
            }
        }
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => {
                session.deadlines.write_stalled(session.now());
                return Poll::Pending;
            }
            Poll::Ready(result) => result?,
        }
        if session.phase() != Phase::Open {
            session.closing().close_written = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl Session {
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

    fn phase(&self) -> Phase {
        self.closing.as_ref().map_or(Phase::Open, |c| c.phase)
    }

    /// The closing state, made on first use.
    fn closing(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }

    /// Whether the connection is over outside the closing handshake.
    fn is_ended(&self) -> bool {
        self.closing.as_ref().is_some_and(|c| c.ending.is_some())
    }

    fn peer_close_code(&self) -> Option<u16> {
        self.closing.as_ref().and_then(|c| c.peer_closed).flatten()
    }

    /// Gives back the queue space a past burst left behind (the batch and
    /// the outbox keep their capacity once grown). Called when a ping is
    /// due, once per ping interval: a connection that went quiet ends up
    /// holding no queue memory, and a busy one pays one reallocation a
    /// minute.
    fn release_spare_capacity(&mut self) {
        if self.batch.is_empty() {
            self.batch = VecDeque::new();
        }
        self.outbox.release_spare_capacity();
    }

    /// Keeps how the connection ended until the close line is logged.
    pub(crate) fn set_ending(&mut self, ending: Ending) {
        self.closing().ending = Some(ending);
    }

    /// How the connection ended (see `set_ending`).
    pub(crate) fn ending(&self) -> Option<&Ending> {
        self.closing.as_ref().and_then(|c| c.ending.as_ref())
    }

    /// Ends the connection for a reason outside the closing handshake.
    fn end(&mut self, ending: Ending) {
        self.closing().ending.get_or_insert(ending);
    }

    /// The ending, once the connection has nothing more to do. A close we
    /// started for a reason (`cause`) reports that reason however the
    /// handshake then ends.
    fn finished(&mut self) -> Option<Ending> {
        let closing = self.closing.as_mut()?;
        let done = match closing.phase {
            _ if closing.ending.is_some() => closing.ending.take(),
            Phase::CloseSent(code) if closing.close_written && closing.peer_closed.is_some() => {
                Some(Ending::ServerClosed(code))
            }
            Phase::Replying if closing.close_written => Some(Ending::ClientClosed(closing.peer_closed.flatten())),
            _ => None,
        };
        done.map(|ending| closing.cause.take().unwrap_or(ending))
    }

    fn timed_out(&mut self, ending: Ending) -> Ending {
        self.closing.as_mut().and_then(|c| c.cause.take()).unwrap_or(ending)
    }

    fn endpoint(&self) -> crate::hub::Endpoint {
        match self.service {
            Service::Echo => crate::hub::Endpoint::Echo,
            Service::Raw(_) => crate::hub::Endpoint::Chat,
            Service::Chat(_) => crate::hub::Endpoint::Protocol,
        }
    }

    fn advance(&mut self, mut n: usize) -> usize {
        let mut frames = 0;
        while n > 0 {
            let Some(front) = self.batch.front() else {
                return frames;
            };
            let left = front.len() - self.written;
            if n >= left {
                n -= left;
                self.batch.pop_front();
                frames += 1;
                self.written = 0;
            } else {
                self.written += n;
                n = 0;
            }
        }
        frames
    }

    /// Paces out any replay of a `wshub.v1` connection, once its batch is
    /// written out; true while some replay is not over.
    fn continue_replays(&mut self) -> bool {
        let ready = self.batch.is_empty() && self.phase() == Phase::Open;
        match &mut self.service {
            Service::Chat(session) if ready => session.continue_replays(),
            _ => false,
        }
    }

    /// Moves queued frames into the batch, once it is written out; true if
    /// it took anything, or left something to take once the batch is.
    ///
    /// Taking only into an empty batch keeps what a client has not read
    /// within its outbox's bounds: frames wait in the outbox, where every
    /// push is counted, instead of piling up in the batch behind a socket
    /// that does not drain. That goes for the connection's own replies
    /// (history, pongs) as much as for broadcasts: at most one outbox's
    /// worth is in flight and one more queued.
    fn poll_outbox(&mut self, cx: &mut Context<'_>) -> bool {
        if self.is_ended() {
            return false;
        }
        if self.phase() != Phase::Open {
            if self.outbox.poll_aborted(cx).is_ready() {
                self.end(Ending::Aborted);
            }
            return false;
        }
        if !self.batch.is_empty() {
            if let Some(request) = self.outbox.close_requested() {
                self.on_close_request(request);
            }
            return true;
        }
        match self.outbox.poll_take(cx, &mut self.batch) {
            Poll::Pending => false,
            Poll::Ready(None) => true,
            Poll::Ready(Some(request)) => {
                self.on_close_request(request);
                true
            }
        }
    }

    fn on_close_request(&mut self, request: CloseRequest) {
        match request {
            CloseRequest::Abort => self.end(Ending::Aborted),
            CloseRequest::Graceful(code, reason) => self.send_close(code, reason),
            CloseRequest::Evicted(code, reason) => {
                self.hub.stats().evictions.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = self.id, "evicting: {reason}");
                // Keep only a partly written frame, so that the close frame
                // after it is still framed correctly.
                self.batch.truncate(usize::from(self.written > 0));
                self.send_close(code, reason);
                self.closing().cause = Some(Ending::Evicted(code));
            }
        }
    }

    /// Queues our close frame after what is already queued; from now on only
    /// the client's close matters.
    fn send_close(&mut self, code: CloseCode, reason: &str) {
        if self.phase() != Phase::Open {
            return;
        }
        self.outbox.drain_into(&mut self.batch);
        self.batch.push_back(encode_close(code, reason));
        self.closing().phase = Phase::CloseSent(code);
        self.deadlines.closing(self.hub.timeouts(), self.now());
    }

    fn fail(&mut self, error: ProtocolError) {
        if self.phase() != Phase::Open {
            return;
        }
        tracing::warn!(
            conn = self.id,
            code = error.code.as_u16(),
            "closing connection: {}",
            error.reason
        );
        self.send_close(error.code, error.reason);
        self.closing().cause = Some(Ending::ProtocolViolation(error));
    }

    /// Closes with 1013: this connection's unfinished message would take
    /// the server past `--max-incomplete-bytes` (the decoder dropped it).
    fn overloaded(&mut self, over: OverBudget) {
        if self.phase() != Phase::Open {
            return;
        }
        tracing::warn!(conn = self.id, code = 1013, "closing connection: {over}");
        self.send_close(CloseCode::TryAgainLater, OVER_BUDGET_REASON);
        self.closing().cause = Some(Ending::Overloaded(OVER_BUDGET_REASON));
    }

    /// Closes with 1008 for `reason` (the close log line gives it).
    fn close_for_policy(&mut self, reason: &'static str) {
        if self.phase() != Phase::Open {
            return;
        }
        self.send_close(CloseCode::PolicyViolation, reason);
        self.closing().cause = Some(Ending::PolicyViolation(reason));
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

    /// Holds a message to the rate limits. A `wshub.v1` message over them
    /// is dropped (delivered nowhere, stored nowhere) and the client told;
    /// a raw one is delivered and charged, and the connection's reads
    /// pause until its buckets have paid for it. True: deliver it.
    fn admit(&mut self, message: &Message) -> bool {
        let timeouts = *self.hub.timeouts();
        let len = message.payload().len();
        let endpoint = self.endpoint();
        let Service::Chat(session) = &mut self.service else {
            if self.deadlines.charge_message(&timeouts) {
                self.throttling_starts();
            }
            return true;
        };
        let episode_starts = !self.deadlines.is_over_rate();
        let verdict = self.deadlines.admit(&timeouts, len);
        if verdict == Verdict::Pass {
            return true;
        }
        self.hub.stats().rate_limited.fetch_add(1, Ordering::Relaxed);
        self.hub.metrics().rate_limited(endpoint, RateAction::Dropped);
        session.rate_limited(message);
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
        match event {
            Event::Message(message) => {
                self.hub.metrics().message_in(self.endpoint());
                if self.phase() != Phase::Open {
                    return;
                }
                tracing::debug!(conn = self.id, bytes = message.payload().len(), "message");
                if !self.admit(&message) {
                    return;
                }
                match &mut self.service {
                    // An overflow evicts this connection through its outbox.
                    Service::Echo => {
                        let _ = self.outbox.push(frame_for(message.frame(), self.outbox.deflate()));
                    }
                    Service::Raw(membership) => {
                        membership.publish_raw(&message);
                    }
                    Service::Chat(session) => {
                        if let Err(give_up) = session.on_message(&message) {
                            tracing::warn!(conn = self.id, "closing connection: {}", give_up.0);
                            self.send_close(CloseCode::PolicyViolation, give_up.0);
                            self.closing().cause = Some(Ending::PolicyViolation(give_up.0));
                        }
                    }
                }
            }
            Event::Ping(payload) => {
                if self.phase() == Phase::Open {
                    let _ = self.outbox.push(encode_frame(OpCode::Pong, &payload));
                }
            }
            Event::Pong => {}
            Event::Close(code, _reason) => {
                self.closing().peer_closed.get_or_insert(code);
                if self.phase() == Phase::Open {
                    let reply = match code {
                        Some(code) => encode_close(CloseCode::from_u16(code), ""),
                        None => encode_frame(OpCode::Close, b""),
                    };
                    self.batch.push_back(reply);
                    self.closing().phase = Phase::Replying;
                    self.deadlines.closing(self.hub.timeouts(), self.now());
                }
            }
            Event::InvalidClose(error) => {
                self.fail(error);
                // The client has closed already; no second close will come.
                self.closing().peer_closed.get_or_insert(None);
            }
        }
    }
}
