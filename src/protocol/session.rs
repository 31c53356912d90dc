//! One connection's WebSocket session without its socket: the closing
//! handshake, the replies the protocol obliges (a pong, the close reply),
//! the closes the server decides on, and the frames waiting to be written.
//!
//! The driver (`connection::driver`) owns the socket, the outbox and the
//! clock. It feeds the session what the decoder found, the closes asked of
//! the connection and what its writes achieved, and carries out the
//! [`Action`] each call returns; the session itself does no I/O and reads
//! no clock, so every way a connection can end is a unit test here (the way
//! tungstenite's `WebSocketContext` and fastwebsockets' `obligated_send`
//! keep the protocol's obligations apart from the stream).
//!
//! An open connection, most of them most of the time, pays for the
//! closing handshake with one null pointer: its state is boxed once
//! closing starts.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use super::budget::OVER_BUDGET_REASON;
use super::close::CloseCode;
use super::decoder::{Event, Message, ProtocolError};
use super::ending::Ending;
use super::frame::{encode_close, encode_frame, OpCode};

/// What the driver must do after feeding the session.
#[derive(Debug)]
#[must_use]
pub enum Action {
    /// Nothing: the event needs no answer, or the session is closing
    /// already and ignores it.
    None,
    /// Hand this message to the connection's service (echo, room, chat).
    Deliver(Message),
    /// Push this frame (a pong) into the outbox, behind what waits there:
    /// the outbox's bounds count the connection's own replies like the rest.
    Queue(Bytes),
    /// We started closing: our close frame waits behind everything in the
    /// write queue. Move what the outbox holds into [`Session::outgoing`]
    /// (replies already queued go out first) and start the close timer.
    Close,
    /// The client closed: our reply waits behind the frames already being
    /// written, and the socket ends once it is out. Stop taking from the
    /// outbox (the client no longer listens) and start the close timer.
    Reply,
}

/// Which of the driver's deadlines passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing arrived, not even a pong.
    Read,
    /// A write made no progress.
    Write,
    /// The closing handshake did not complete: the client did not answer
    /// our close, or did not read our reply.
    Close,
}

/// A connection's protocol state and write queue (see the module doc).
#[derive(Debug, Default)]
pub struct Session {
    /// Frames to write, in order; the first may be partly written. Our
    /// close frame is not here: it goes out after all of them.
    queue: VecDeque<Bytes>,
    /// Bytes already written of the first unwritten frame: the queue's
    /// front, or our close frame once the queue is empty.
    written: usize,
    /// Allocated once the connection starts to end, so that an open one
    /// carries none of it.
    closing: Option<Box<Closing>>,
}

/// The state of a connection's end: the closing handshake, and why.
#[derive(Debug, Default)]
struct Closing {
    phase: Phase,
    /// Our close frame (or close reply) until it is written.
    frame: Option<Bytes>,
    /// Set when the connection is over outside the closing handshake (and,
    /// once it is over, the way it ended, for the close log line).
    ending: Option<Ending>,
    /// Why we started closing, reported whatever the handshake then does.
    cause: Option<Ending>,
    /// The client's close frame arrived (with its code, if any).
    peer_closed: Option<Option<u16>>,
    /// Our close frame (or close reply) has been written out and flushed.
    close_written: bool,
    /// Bytes read since our close was queued, while the client's has not
    /// come (see [`MAX_READ_WHILE_CLOSING`]).
    read_while_closing: usize,
}

/// What a client may still send after our close before we stop reading
/// it: its data is skipped unread, but reading it costs, and a client
/// that keeps sending instead of closing could make us read for the whole
/// close timeout.
pub const MAX_READ_WHILE_CLOSING: usize = 1 << 20;

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

impl Session {
    /// A session whose connection has just opened.
    pub fn new() -> Self {
        Session::default()
    }

    fn phase(&self) -> Phase {
        self.closing.as_ref().map_or(Phase::Open, |c| c.phase)
    }

    /// The closing state, made on first use.
    fn closing(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }

    /// Whether messages still flow both ways: no close sent or received,
    /// and the connection not over.
    pub fn is_open(&self) -> bool {
        self.closing
            .as_ref()
            .is_none_or(|c| c.phase == Phase::Open && c.ending.is_none())
    }

    /// Whether the socket is still to be read: until the client's close
    /// arrives (after ours, its reply is what we wait for), or until it
    /// has sent `MAX_READ_WHILE_CLOSING` more after ours instead: then
    /// TCP holds it back until the close timeout ends the connection (our
    /// close frame stays readable for it meanwhile, which a reset would
    /// throw away).
    pub fn reads(&self) -> bool {
        let beyond = self
            .closing
            .as_ref()
            .is_some_and(|c| c.read_while_closing > MAX_READ_WHILE_CLOSING);
        !self.is_ended() && self.phase() != Phase::Replying && !beyond
    }

    /// Whether the connection is over outside the closing handshake (a
    /// socket error, the peer gone, an abort).
    pub fn is_ended(&self) -> bool {
        self.closing.as_ref().is_some_and(|c| c.ending.is_some())
    }

    /// Why we started closing, if we did for a reason (not a plain
    /// server close): what the close log line will report.
    pub fn cause(&self) -> Option<&Ending> {
        self.closing.as_ref().and_then(|c| c.cause.as_ref())
    }

    /// Answers what the decoder found.
    pub fn on_event(&mut self, event: Event) -> Action {
        match event {
            Event::Message(message) if self.is_open() => Action::Deliver(message),
            Event::Ping(payload) if self.is_open() => Action::Queue(encode_frame(OpCode::Pong, &payload)),
            Event::Message(_) | Event::Ping(_) | Event::Pong => Action::None,
            Event::Close(code, _reason) => {
                let open = self.is_open();
                let closing = self.closing();
                closing.peer_closed.get_or_insert(code);
                if !open {
                    return Action::None;
                }
                // Echo the client's code, as RFC 6455 5.5.1 suggests.
                closing.frame = Some(match code {
                    Some(code) => encode_close(CloseCode::from_u16(code), ""),
                    None => encode_frame(OpCode::Close, b""),
                });
                closing.phase = Phase::Replying;
                Action::Reply
            }
            Event::InvalidClose(error) => {
                let action = self.fail(error);
                // The client has closed already; no second close will come.
                self.closing().peer_closed.get_or_insert(None);
                action
            }
            Event::Violation(error) => self.fail(error),
        }
    }

    /// Starts our close with `code`, after what is queued; from then on only
    /// the client's close matters. Ignored once closing has started (the
    /// first close wins).
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Action {
        if !self.is_open() {
            return Action::None;
        }
        let closing = self.closing();
        closing.frame = Some(encode_close(code, reason));
        closing.phase = Phase::CloseSent(code);
        Action::Close
    }

    /// Starts a close for `cause`, which the connection's ending reports
    /// however the handshake then goes.
    fn close_for(&mut self, code: CloseCode, reason: &str, cause: Ending) -> Action {
        let action = self.close(code, reason);
        if let Action::Close = action {
            self.closing().cause = Some(cause);
        }
        action
    }

    /// The client broke the protocol: close with the error's code.
    pub fn fail(&mut self, error: ProtocolError) -> Action {
        let (code, reason) = (error.code, error.reason);
        self.close_for(code, reason, Ending::ProtocolViolation(error))
    }

    /// The client's unfinished message would take the server past its
    /// budget for them (the decoder dropped it): close with 1013.
    pub fn overloaded(&mut self) -> Action {
        self.close_for(
            CloseCode::TryAgainLater,
            OVER_BUDGET_REASON,
            Ending::Overloaded(OVER_BUDGET_REASON),
        )
    }

    /// The client broke a rule of the server's (rate limit, token expiry,
    /// the chat protocol): close with 1008 for `reason`.
    pub fn close_for_policy(&mut self, reason: &'static str) -> Action {
        self.close_for(CloseCode::PolicyViolation, reason, Ending::PolicyViolation(reason))
    }

    /// The client reads too slowly: what waits to be written is dropped,
    /// except a frame partly written already (the close frame after it
    /// must still start on a frame boundary), and the close goes out next.
    pub fn evict(&mut self, code: CloseCode, reason: &str) -> Action {
        if !self.is_open() {
            return Action::None;
        }
        self.queue.truncate(usize::from(self.written > 0));
        self.close_for(code, reason, Ending::Evicted(code))
    }

    /// Ends the connection at once, without a closing handshake (shutdown
    /// ran out of time).
    pub fn abort(&mut self) {
        self.end(Ending::Aborted);
    }

    /// The socket failed; the connection is over.
    pub fn io_failed(&mut self, kind: io::ErrorKind) {
        self.end(Ending::Io(kind));
    }

    /// `n` bytes were read from the client: counted once our close is
    /// queued (see [`Session::reads`]).
    pub fn read(&mut self, n: usize) {
        if let Some(closing) = self.closing.as_deref_mut() {
            if matches!(closing.phase, Phase::CloseSent(_)) {
                closing.read_while_closing = closing.read_while_closing.saturating_add(n);
            }
        }
    }

    /// The client closed its side of TCP: the end of a handshake we began,
    /// else a connection dropped without a close frame.
    pub fn peer_gone(&mut self) {
        let ending = match self.phase() {
            Phase::CloseSent(code) => Ending::ServerClosed(code),
            _ => Ending::Dropped,
        };
        self.end(ending);
    }

    /// Ends the connection for a reason outside the closing handshake; the
    /// first reason stays.
    fn end(&mut self, ending: Ending) {
        self.closing().ending.get_or_insert(ending);
    }

    /// How the connection ended when `timeout` passed: a close we started
    /// for a reason reports that reason.
    pub fn timed_out(&mut self, timeout: Timeout) -> Ending {
        let ending = match (timeout, self.phase()) {
            (Timeout::Read, _) => Ending::ReadTimeout,
            (Timeout::Write, _) => Ending::WriteTimeout,
            (Timeout::Close, Phase::CloseSent(code)) => Ending::CloseTimeout(code),
            (Timeout::Close, _) => Ending::ClientClosed(self.peer_close_code()),
        };
        self.closing.as_mut().and_then(|c| c.cause.take()).unwrap_or(ending)
    }

    fn peer_close_code(&self) -> Option<u16> {
        self.closing.as_ref().and_then(|c| c.peer_closed).flatten()
    }

    /// The ending, once the connection has nothing more to do: both close
    /// frames crossed (ours written out), or our reply to the client's is
    /// out, or it ended outside the handshake. A close we started for a
    /// reason reports that reason however the handshake then ended.
    pub fn finished(&mut self) -> Option<Ending> {
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

    /// Keeps how the connection ended (what [`Session::finished`] gave)
    /// until the close line is logged.
    pub fn set_ending(&mut self, ending: Ending) {
        self.closing().ending = Some(ending);
    }

    /// How the connection ended (see [`Session::set_ending`]).
    pub fn ending(&self) -> Option<&Ending> {
        self.closing.as_ref().and_then(|c| c.ending.as_ref())
    }

    /// The write queue, to append frames to: while open (the outbox's
    /// frames, a ping's unwritten rest), or right after [`Action::Close`]
    /// (what the outbox still holds). They all go out before our close
    /// frame. A `VecDeque` so that the outbox can swap its buffer in.
    pub fn outgoing(&mut self) -> &mut VecDeque<Bytes> {
        debug_assert!(
            !(self.queue.is_empty() && self.written > 0),
            "frames appended while our close frame is partly written"
        );
        &mut self.queue
    }

    /// Whether everything queued, our close frame included, is written.
    pub fn is_written_out(&self) -> bool {
        self.queue.is_empty() && self.close_frame().is_none()
    }

    fn close_frame(&self) -> Option<&Bytes> {
        self.closing.as_ref().and_then(|c| c.frame.as_ref())
    }

    /// The bytes still to write, frame by frame, in order.
    pub fn unwritten(&self) -> impl Iterator<Item = &[u8]> {
        let written = self.written;
        self.queue
            .iter()
            .chain(self.close_frame())
            .enumerate()
            .map(move |(i, frame)| if i == 0 { &frame[written..] } else { &frame[..] })
    }

    /// Accounts `n` bytes written from the front of [`Session::unwritten`];
    /// returns how many frames that completed.
    pub fn wrote(&mut self, mut n: usize) -> usize {
        let mut frames = 0;
        while n > 0 {
            let Some(len) = self.queue.front().or(self.close_frame()).map(Bytes::len) else {
                break;
            };
            let left = len - self.written;
            if n < left {
                self.written += n;
                break;
            }
            n -= left;
            self.written = 0;
            frames += 1;
            if self.queue.pop_front().is_none() {
                if let Some(closing) = self.closing.as_mut() {
                    closing.frame = None;
                }
            }
        }
        frames
    }

    /// Everything written has been flushed to the socket: once closing,
    /// that includes our close frame (or reply).
    ///
    /// The write queue's buffer is freed here rather than kept for the
    /// next frames: most connections are idle most of the time, and an
    /// idle one should hold no queue memory (128 bytes for the smallest
    /// `VecDeque<Bytes>`). What it costs a busy one is an allocation and a
    /// free per write, next to the write's system call.
    pub fn flushed(&mut self) {
        if !self.is_written_out() {
            return;
        }
        if self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        if self.phase() != Phase::Open {
            self.closing().close_written = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decoder::tests::client_frame;
    use crate::protocol::Decoder;

    /// A message as the decoder delivers it (unmasked payload: mask 0).
    fn message(text: &str) -> Message {
        let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(text.as_bytes());
        let mut found = None;
        Decoder::new(1024).decode(&frame, &mut |event| {
            if let Event::Message(m) = event {
                found = Some(m);
            }
        });
        found.unwrap()
    }

    /// The bytes left to write, in one piece.
    fn unwritten(session: &Session) -> Vec<u8> {
        session.unwritten().flatten().copied().collect()
    }

    /// Writes everything out and flushes, as the driver does when the
    /// socket takes it all.
    fn write_all(session: &mut Session) {
        let n = session.unwritten().map(<[u8]>::len).sum();
        session.wrote(n);
        assert!(session.is_written_out());
        session.flushed();
    }

    fn close_frame(code: u16, reason: &str) -> Vec<u8> {
        encode_close(CloseCode::from_u16(code), reason).to_vec()
    }

    #[test]
    fn a_ping_gets_a_pong_with_its_payload_while_open() {
        let mut session = Session::new();
        let Action::Queue(pong) = session.on_event(Event::Ping(Bytes::from_static(b"hi"))) else {
            panic!("no pong");
        };
        assert_eq!(&pong[..], &[0x8A, 2, b'h', b'i']);
        assert!(matches!(session.on_event(Event::Pong), Action::None));
        let _ = session.close(CloseCode::GoingAway, "");
        assert!(
            matches!(session.on_event(Event::Ping(Bytes::new())), Action::None),
            "no pong once closing"
        );
    }

    #[test]
    fn messages_are_delivered_only_while_open() {
        let mut session = Session::new();
        let Action::Deliver(delivered) = session.on_event(Event::Message(message("hello"))) else {
            panic!("not delivered");
        };
        assert_eq!(delivered.payload(), b"hello");
        assert!(matches!(session.close(CloseCode::GoingAway, ""), Action::Close));
        assert!(!session.is_open());
        assert!(session.reads(), "the client's close is still to be read");
        assert!(matches!(
            session.on_event(Event::Message(message("late"))),
            Action::None
        ));
    }

    #[test]
    fn a_client_close_is_answered_with_its_code_then_the_connection_ends() {
        let mut session = Session::new();
        session.outgoing().push_back(Bytes::from_static(b"in flight"));
        assert!(matches!(
            session.on_event(Event::Close(Some(4000), "bye".into())),
            Action::Reply
        ));
        assert!(!session.reads(), "nothing is read after the client's close");
        let mut expected = b"in flight".to_vec();
        expected.extend(close_frame(4000, ""));
        assert_eq!(unwritten(&session), expected, "the reply goes after what is in flight");
        assert_eq!(session.finished(), None, "the reply is not written yet");
        write_all(&mut session);
        assert_eq!(session.finished(), Some(Ending::ClientClosed(Some(4000))));
    }

    #[test]
    fn a_client_close_without_code_gets_an_empty_one() {
        let mut session = Session::new();
        let _ = session.on_event(Event::Close(None, String::new()));
        assert_eq!(unwritten(&session), [0x88, 0]);
        write_all(&mut session);
        assert_eq!(session.finished(), Some(Ending::ClientClosed(None)));
    }

    #[test]
    fn a_server_close_waits_for_the_clients_close() {
        let mut session = Session::new();
        session.outgoing().push_back(Bytes::from_static(b"queued"));
        assert!(matches!(session.close(CloseCode::GoingAway, "shutdown"), Action::Close));
        // The driver moves what the outbox held in: it still goes first.
        session.outgoing().push_back(Bytes::from_static(b"from the outbox"));
        let mut expected = b"queuedfrom the outbox".to_vec();
        expected.extend(close_frame(1001, "shutdown"));
        assert_eq!(unwritten(&session), expected);
        write_all(&mut session);
        assert_eq!(session.finished(), None, "the client has not answered");
        assert!(matches!(
            session.on_event(Event::Close(Some(1001), String::new())),
            Action::None
        ));
        assert!(session.is_written_out(), "no second close frame");
        assert_eq!(session.finished(), Some(Ending::ServerClosed(CloseCode::GoingAway)));
    }

    #[test]
    fn the_clients_close_before_ours_is_written_waits_for_ours() {
        let mut session = Session::new();
        let _ = session.close(CloseCode::GoingAway, "");
        let _ = session.on_event(Event::Close(Some(1000), String::new()));
        assert_eq!(session.finished(), None);
        write_all(&mut session);
        assert_eq!(session.finished(), Some(Ending::ServerClosed(CloseCode::GoingAway)));
    }

    #[test]
    fn a_close_frame_written_in_pieces_is_counted_once() {
        let mut session = Session::new();
        let _ = session.close(CloseCode::GoingAway, "shutdown");
        let frame = close_frame(1001, "shutdown");
        assert_eq!(session.wrote(3), 0);
        assert_eq!(unwritten(&session), frame[3..]);
        session.flushed();
        assert_eq!(session.wrote(frame.len() - 3), 1);
        assert!(session.is_written_out());
    }

    #[test]
    fn an_unanswered_close_times_out_with_its_code() {
        let mut session = Session::new();
        let _ = session.close(CloseCode::GoingAway, "");
        write_all(&mut session);
        assert_eq!(
            session.timed_out(Timeout::Close),
            Ending::CloseTimeout(CloseCode::GoingAway)
        );

        let mut replying = Session::new();
        let _ = replying.on_event(Event::Close(Some(1000), String::new()));
        assert_eq!(
            replying.timed_out(Timeout::Close),
            Ending::ClientClosed(Some(1000)),
            "a reply the client did not read"
        );
    }

    #[test]
    fn a_protocol_error_closes_with_its_code_and_is_reported_as_the_cause() {
        let error = ProtocolError {
            code: CloseCode::ProtocolError,
            reason: "reserved bits set",
        };
        let mut session = Session::new();
        assert!(matches!(session.fail(error.clone()), Action::Close));
        assert_eq!(unwritten(&session), close_frame(1002, "reserved bits set"));
        assert_eq!(session.cause(), Some(&Ending::ProtocolViolation(error.clone())));
        write_all(&mut session);
        let _ = session.on_event(Event::Close(Some(1000), String::new()));
        assert_eq!(
            session.finished(),
            Some(Ending::ProtocolViolation(error.clone())),
            "the cause, not the handshake's end"
        );

        let mut timed_out = Session::new();
        let _ = timed_out.fail(error.clone());
        assert_eq!(timed_out.timed_out(Timeout::Close), Ending::ProtocolViolation(error));
    }

    /// A client that keeps sending after our close instead of closing: past
    /// the bound it is no longer read, and the close timeout ends it,
    /// reported by the close's cause; while open, reading changes nothing.
    #[test]
    fn past_the_bound_after_our_close_the_client_is_no_longer_read() {
        let mut session = Session::new();
        session.read(10 * MAX_READ_WHILE_CLOSING);
        assert!(
            session.is_open() && session.reads(),
            "an open connection reads what it likes"
        );
        let _ = session.close_for_policy("too many bad requests");
        write_all(&mut session);
        session.read(MAX_READ_WHILE_CLOSING);
        assert!(session.reads(), "still looking for the client's close");
        session.read(1);
        assert!(!session.reads());
        assert_eq!(session.finished(), None, "our close stays there to be read");
        assert_eq!(
            session.timed_out(Timeout::Close),
            Ending::PolicyViolation("too many bad requests")
        );
    }

    /// One read, fed to the session as the driver feeds it.
    fn read(session: &mut Session, decoder: &mut Decoder, bytes: &[u8]) {
        decoder.decode(bytes, &mut |event| {
            let _ = session.on_event(event);
        });
    }

    /// A violation and the client's close in one read: the violation is
    /// answered, with its code and reason, and the close that came after it
    /// only completes the handshake (its code is not echoed, even one that
    /// must never travel).
    #[test]
    fn a_violation_then_a_close_in_one_read_is_answered_with_the_violation() {
        let close = |code: u16| client_frame(true, 8, &code.to_be_bytes());
        let reserved = client_frame(true, 3, b"");
        let cases = [
            ([reserved.clone(), close(1005)].concat(), 1002, "reserved opcode"),
            ([reserved, close(1000)].concat(), 1002, "reserved opcode"),
            (
                [client_frame(true, 1, &[0xff]), close(1000)].concat(),
                1007,
                "invalid UTF-8 in text message",
            ),
            (
                [vec![0x81, 0x02, b'h', b'i'], close(1000)].concat(),
                1002,
                "client frame is not masked",
            ),
            (
                [client_frame(false, 9, b""), close(4000)].concat(),
                1002,
                "fragmented control frame",
            ),
        ];
        for (bytes, code, reason) in cases {
            let mut session = Session::new();
            read(&mut session, &mut Decoder::new(1024), &bytes);
            assert_eq!(unwritten(&session), close_frame(code, reason), "{reason}");
            let Some(Ending::ProtocolViolation(error)) = session.cause().cloned() else {
                panic!("{reason}: cause {:?}", session.cause());
            };
            write_all(&mut session);
            assert_eq!(
                session.finished(),
                Some(Ending::ProtocolViolation(error)),
                "{reason}: the client's close is in, none is awaited"
            );
        }
    }

    #[test]
    fn a_malformed_client_close_is_answered_and_needs_no_second_close() {
        let error = ProtocolError {
            code: CloseCode::ProtocolError,
            reason: "invalid close code",
        };
        let mut session = Session::new();
        assert!(matches!(
            session.on_event(Event::InvalidClose(error.clone())),
            Action::Close
        ));
        assert_eq!(unwritten(&session), close_frame(1002, "invalid close code"));
        write_all(&mut session);
        assert_eq!(session.finished(), Some(Ending::ProtocolViolation(error)));
    }

    #[test]
    fn limits_close_with_1013_and_1008() {
        let mut overloaded = Session::new();
        let _ = overloaded.overloaded();
        assert_eq!(unwritten(&overloaded), close_frame(1013, OVER_BUDGET_REASON));
        assert_eq!(overloaded.cause(), Some(&Ending::Overloaded(OVER_BUDGET_REASON)));

        let mut policy = Session::new();
        let _ = policy.close_for_policy("rate limit");
        assert_eq!(unwritten(&policy), close_frame(1008, "rate limit"));
        assert_eq!(
            policy.timed_out(Timeout::Write),
            Ending::PolicyViolation("rate limit"),
            "a write timeout while closing reports the cause"
        );
    }

    #[test]
    fn an_eviction_drops_what_waits_but_finishes_a_partly_written_frame() {
        let mut session = Session::new();
        session.outgoing().extend([
            Bytes::from_static(b"first"),
            Bytes::from_static(b"second"),
            Bytes::from_static(b"third"),
        ]);
        assert_eq!(session.wrote(2), 0);
        assert!(matches!(
            session.evict(CloseCode::PolicyViolation, "slow"),
            Action::Close
        ));
        let mut expected = b"rst".to_vec();
        expected.extend(close_frame(1008, "slow"));
        assert_eq!(unwritten(&session), expected);
        assert_eq!(session.cause(), Some(&Ending::Evicted(CloseCode::PolicyViolation)));

        let mut untouched = Session::new();
        untouched.outgoing().push_back(Bytes::from_static(b"never started"));
        let _ = untouched.evict(CloseCode::PolicyViolation, "slow");
        assert_eq!(unwritten(&untouched), close_frame(1008, "slow"));
    }

    #[test]
    fn the_first_close_wins() {
        let mut session = Session::new();
        assert!(matches!(session.close(CloseCode::GoingAway, "shutdown"), Action::Close));
        assert!(matches!(session.close(CloseCode::Normal, "again"), Action::None));
        assert!(matches!(
            session.evict(CloseCode::PolicyViolation, "slow"),
            Action::None
        ));
        assert!(matches!(session.close_for_policy("rate limit"), Action::None));
        assert_eq!(unwritten(&session), close_frame(1001, "shutdown"));
        assert_eq!(session.cause(), None);
    }

    #[test]
    fn an_abort_ends_at_once_even_mid_handshake() {
        let mut open = Session::new();
        open.abort();
        assert!(!open.reads());
        assert_eq!(open.finished(), Some(Ending::Aborted));

        let mut closing = Session::new();
        let _ = closing.close(CloseCode::GoingAway, "shutdown");
        closing.abort();
        assert_eq!(closing.finished(), Some(Ending::Aborted));
    }

    #[test]
    fn the_peer_going_away_ends_a_close_we_began_or_drops_the_connection() {
        let mut open = Session::new();
        open.peer_gone();
        assert_eq!(open.finished(), Some(Ending::Dropped));

        let mut closing = Session::new();
        let _ = closing.close(CloseCode::GoingAway, "");
        closing.peer_gone();
        assert_eq!(closing.finished(), Some(Ending::ServerClosed(CloseCode::GoingAway)));

        let mut failed = Session::new();
        failed.io_failed(io::ErrorKind::ConnectionReset);
        failed.peer_gone();
        assert_eq!(
            failed.finished(),
            Some(Ending::Io(io::ErrorKind::ConnectionReset)),
            "the first ending stays"
        );
    }

    /// An idle connection holds no write buffer: once what was queued is
    /// written out, the queue's allocation is gone, and one written in part
    /// keeps it.
    #[test]
    fn a_written_out_queue_gives_its_buffer_back() {
        let mut session = Session::new();
        session.outgoing().push_back(Bytes::from_static(b"\x81\x02hi"));
        session.outgoing().push_back(Bytes::from_static(b"\x81\x02yo"));
        session.wrote(3);
        session.flushed();
        assert!(session.outgoing().capacity() > 0, "a frame is still unwritten");
        session.wrote(5);
        session.flushed();
        assert!(session.is_written_out());
        assert_eq!(session.outgoing().capacity(), 0);
    }

    /// An open connection carries its session for its whole life: the
    /// closing state must stay behind one pointer.
    #[test]
    fn an_open_session_is_a_queue_an_offset_and_a_pointer() {
        assert_eq!(
            std::mem::size_of::<Session>(),
            std::mem::size_of::<VecDeque<Bytes>>() + 2 * std::mem::size_of::<usize>()
        );
    }
}
