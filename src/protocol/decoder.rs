//! The streaming decoder: bytes in, validated messages out.
//!
//! It consumes every byte it is given, keeping only what it must between
//! calls (at most 13 bytes of an unfinished header, the unfinished frame and
//! message), so a silent connection costs no buffer at all. Even that state
//! is boxed, and only while something is unfinished: every connection holds
//! its decoder for its whole life, so an idle one costs just the decoder's
//! three words, and a read that holds whole frames allocates no box at all.
//!
//! Payloads are unmasked straight into the message buffer, behind a gap
//! where the server frame's header is written at the end: the decoded
//! message *is* the frame that echo or broadcast sends, with no second copy.
//!
//! With permessage-deflate negotiated, a message whose first frame has RSV1
//! set is compressed: its compressed bytes are gathered the same way and
//! inflated when it completes (see the `deflate` module for why there is no
//! streaming inflate state), so its decoded form keeps the same contract:
//! the uncompressed payload, behind a plain server frame header.
//!
//! A message buffer grows with the bytes that actually arrive, never with
//! what a header announces: a peer that announces 1 MiB and sends one byte
//! costs a few hundred bytes, and an unfinished message holds at most
//! twice what it received. What it holds between reads is charged to the server's
//! budget for unfinished messages ([`Decoder::account`]).

use bytes::{Buf, Bytes};
use thiserror::Error;

use super::budget::{Charge, IncompleteBudget, OverBudget};
use super::close::CloseCode;
use super::deflate::{inflate, RSV1};
use super::frame::{write_header_right_aligned, OpCode, MAX_SERVER_HEADER};

/// Longest client frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_CLIENT_HEADER: usize = 14;

/// Smallest step a message buffer grows by once it has to grow, so that a
/// message trickling in byte by byte is not reallocated for every byte.
const MIN_GROWTH: usize = 256;

/// A violation of RFC 6455 by the peer; the connection must be failed with
/// `code`. The decoder keeps running after it so that the peer's close frame
/// can still be seen and the closing handshake completes cleanly.
///
/// It reaches the caller as an [`Event`], in stream order, rather than as
/// `decode`'s result: a close frame in the same read must not be answered
/// before the violation that preceded it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason} (close {code})")]
pub struct ProtocolError {
    /// The close code to send.
    pub code: CloseCode,
    /// A short reason for the close frame and the log.
    pub reason: &'static str,
}

impl ProtocolError {
    fn protocol(reason: &'static str) -> Self {
        ProtocolError {
            code: CloseCode::ProtocolError,
            reason,
        }
    }

    fn invalid_utf8() -> Self {
        ProtocolError {
            code: CloseCode::InvalidPayload,
            reason: "invalid UTF-8 in text message",
        }
    }

    fn invalid_close_reason() -> Self {
        ProtocolError {
            code: CloseCode::InvalidPayload,
            reason: "invalid UTF-8 in close reason",
        }
    }
}

/// Why the decoder refuses a frame, which decides how it is reported.
#[derive(Debug)]
enum Refusal {
    /// The peer broke the protocol; its close is still to come.
    Violation(ProtocolError),
    /// The peer's close frame itself is malformed: it has closed, badly.
    BadClose(ProtocolError),
}

impl From<ProtocolError> for Refusal {
    fn from(error: ProtocolError) -> Self {
        Refusal::Violation(error)
    }
}

/// Text or binary: a message keeps its type from receipt to every delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Valid UTF-8 (checked by the decoder).
    Text,
    /// Arbitrary bytes.
    Binary,
}

impl MessageKind {
    fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// A complete data message, already encoded as one unfragmented server frame.
#[derive(Debug, Clone)]
pub struct Message {
    kind: MessageKind,
    frame: Bytes,
    header_len: usize,
    /// What inflating added to the payload (0 unless it came compressed).
    inflated: usize,
}

impl Message {
    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The message's bytes (for text, valid UTF-8).
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len..]
    }

    /// The ready-to-send server frame carrying this message unchanged.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// How many bytes more the payload is than the client sent for it, when
    /// it came compressed (permessage-deflate); 0 otherwise. A byte rate
    /// counted on the wire alone would let 1 KiB of zeros stand for 1 MiB.
    pub fn inflated(&self) -> usize {
        self.inflated
    }
}

/// What the decoder found in the bytes it was given.
#[derive(Debug)]
pub enum Event {
    /// A complete text or binary message.
    Message(Message),
    /// A ping; the caller answers with a pong of the same payload.
    Ping(Bytes),
    /// A pong (it only proves the peer is alive).
    Pong,
    /// The peer's close frame: its code, if it sent one, and the reason.
    Close(Option<u16>, String),
    /// The peer's close frame was malformed (bad code, one-byte payload,
    /// invalid UTF-8 reason, over 125 bytes or fragmented). The peer has
    /// closed all the same: answer with the error's code and end, without
    /// waiting for another close.
    InvalidClose(ProtocolError),
    /// The peer broke the protocol: fail the connection with the error's
    /// code, then wait for the peer's close. Reported once, at the frame that
    /// broke it; after it, only the peer's close frame is reported.
    Violation(ProtocolError),
}

#[derive(Debug)]
struct FrameState {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    remaining: u64,
    /// Payload bytes of this frame seen so far, modulo 4 (mask phase).
    mask_phase: usize,
    /// Control frame payload (at most 125 bytes).
    control: Vec<u8>,
    /// Skip the payload: the connection already failed.
    skip: bool,
}

#[derive(Debug)]
struct PartialMessage {
    kind: MessageKind,
    /// Empty until the first payload byte, then `MAX_SERVER_HEADER` bytes
    /// of gap and the payload so far.
    buf: Vec<u8>,
    /// Payload bytes already known to be valid UTF-8 (text only).
    utf8_checked: usize,
    /// RSV1 was set on the first frame: `buf` holds deflated bytes.
    compressed: bool,
    /// Most payload bytes `buf` may come to hold (the size limit, or for a
    /// compressed message the limit on its compressed bytes).
    max_len: usize,
    /// What `buf` holds of the server's budget, once it outlived a read.
    charge: Option<Charge>,
}

impl PartialMessage {
    fn payload_len(&self) -> usize {
        self.buf.len().saturating_sub(MAX_SERVER_HEADER)
    }

    /// Makes room for `incoming` more payload bytes. The buffer grows with
    /// what arrives: to at least what is needed, by at most doubling
    /// (amortised), and never past what the message can still reach: the
    /// end of this frame when it is the last one (`frame_left` bytes after
    /// `incoming`), else the size limit.
    ///
    /// Why doubling rather than a smaller factor: measured with mimalloc,
    /// 100 connections each holding 999,000 bytes of a fragmented message
    /// took 1.05 MiB of RSS each when growing by doubling and 1.5 MiB when
    /// growing by half: each growth is a new block and a freed one, and the
    /// more (and oddly sized) freed blocks, the more of them stay resident.
    fn reserve(&mut self, incoming: usize, fin: bool, frame_left: u64) {
        let needed = self.buf.len().max(MAX_SERVER_HEADER) + incoming;
        let capacity = self.buf.capacity();
        if needed <= capacity {
            return;
        }
        let ceiling = if fin {
            needed.saturating_add(usize::try_from(frame_left).unwrap_or(usize::MAX))
        } else {
            MAX_SERVER_HEADER.saturating_add(self.max_len)
        };
        let grown = (capacity * 2).max(MIN_GROWTH);
        let target = grown.min(ceiling).max(needed);
        self.buf.reserve_exact(target - self.buf.len());
    }
}

/// What a decoder keeps only while a header, frame or message is unfinished.
///
/// It is boxed in [`Decoder`] between calls, and only then: kept inline it
/// would make every idle connection's decoder about six times larger.
#[derive(Debug, Default)]
struct Progress {
    header: [u8; MAX_CLIENT_HEADER],
    header_len: u8,
    frame: Option<FrameState>,
    message: Option<PartialMessage>,
}

impl Progress {
    /// At a frame boundary with no message under way: nothing to keep.
    fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Drops the unfinished message and skips the rest of its current
    /// frame (a control frame in between is still read: it may be the
    /// peer's close).
    fn abandon_message(&mut self) {
        self.message = None;
        if let Some(frame) = self.frame.as_mut().filter(|f| !f.opcode.is_control()) {
            frame.skip = true;
        }
    }

    fn arm_control(&mut self, len: u64) {
        if let Some(frame) = self.frame.as_mut() {
            frame.skip = false;
            frame.control = Vec::with_capacity(len as usize);
        }
    }

    fn take_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame.as_mut().filter(|_| !chunk.is_empty()) else {
            return Ok(());
        };
        frame.remaining -= chunk.len() as u64;
        let phase = frame.mask_phase;
        frame.mask_phase = (phase + chunk.len()) % 4;
        if frame.skip {
            return Ok(());
        }
        if frame.opcode.is_control() {
            let start = frame.control.len();
            frame.control.extend_from_slice(chunk);
            apply_mask(&mut frame.control[start..], frame.mask, phase);
            return Ok(());
        }
        let Some(message) = self.message.as_mut() else {
            return Ok(());
        };
        message.reserve(chunk.len(), frame.fin, frame.remaining);
        if message.buf.is_empty() {
            message.buf.resize(MAX_SERVER_HEADER, 0);
        }
        let start = message.buf.len();
        message.buf.extend_from_slice(chunk);
        apply_mask(&mut message.buf[start..], frame.mask, phase);
        if message.kind == MessageKind::Text && !message.compressed {
            let payload = &message.buf[MAX_SERVER_HEADER..];
            check_utf8(payload, &mut message.utf8_checked, false)?;
        }
        Ok(())
    }
}

/// Decodes client-to-server frames into [`Event`]s.
///
/// Every connection keeps one for its whole life, so it is kept to three
/// words: the unfinished state lives in `progress`, which is `None` at a
/// frame boundary with no message under way (the idle state).
#[derive(Debug)]
pub struct Decoder {
    max_message_size: usize,
    /// Boxed between calls only while something is unfinished (never idle).
    progress: Option<Box<Progress>>,
    /// A protocol error happened: from now on only close frames are reported.
    failed: bool,
    /// The stream cannot even be split into frames any more.
    broken: bool,
    /// permessage-deflate was negotiated: RSV1 marks compressed messages.
    deflate: bool,
}

impl Decoder {
    /// A decoder that accepts messages of up to `max_message_size` payload
    /// bytes (over all fragments); larger ones fail with 1009.
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            max_message_size,
            progress: None,
            failed: false,
            broken: false,
            deflate: false,
        }
    }

    /// The same decoder for a connection that negotiated permessage-deflate
    /// (`enabled`): RSV1 on a message's first frame then means compressed,
    /// instead of a protocol error. It adds no state: inflating uses the
    /// thread's shared decompressor once a message is complete.
    pub fn with_deflate(mut self, enabled: bool) -> Self {
        self.deflate = enabled;
        self
    }

    /// Whether a message is half-received (its buffer is held meanwhile).
    pub fn is_mid_message(&self) -> bool {
        self.progress.as_ref().is_some_and(|progress| !progress.is_idle())
    }

    /// Payload bytes still to come of the frame under way (0 between frames
    /// or within a header): what a throttled reader may read without
    /// taking in the start of another frame.
    pub fn frame_bytes_left(&self) -> u64 {
        self.progress
            .as_ref()
            .and_then(|progress| progress.frame.as_ref())
            .map_or(0, |frame| frame.remaining)
    }

    /// Bytes the unfinished message's buffer holds (its capacity); 0 when
    /// none is under way.
    pub fn held_bytes(&self) -> usize {
        self.progress
            .as_ref()
            .and_then(|progress| progress.message.as_ref())
            .map_or(0, |message| message.buf.capacity())
    }

    /// Charges `budget` for what the unfinished message holds now, if it
    /// grew since the last call; call it after each [`Decoder::decode`].
    /// The message gives its bytes back when it completes or fails, or when
    /// the decoder is dropped.
    ///
    /// # Errors
    /// [`OverBudget`] when the growth would take `budget` past its limit:
    /// then the message is dropped (its bytes given back) and the decoder
    /// fails as after a protocol error (only close frames are reported from
    /// now on); the caller closes the connection with 1013.
    pub fn account(&mut self, budget: &IncompleteBudget) -> Result<(), OverBudget> {
        let Some(progress) = self.progress.as_deref_mut() else {
            return Ok(());
        };
        let Some(message) = progress.message.as_mut() else {
            return Ok(());
        };
        let charged = message.charge.as_ref().map_or(0, Charge::bytes);
        let held = message.buf.capacity();
        if held <= charged {
            return Ok(());
        }
        let result = budget.grow(&mut message.charge, held - charged);
        if result.is_err() {
            self.failed = true;
            progress.abandon_message();
            if progress.is_idle() {
                self.progress = None;
            }
        }
        result
    }

    /// The server is closing the connection (its close is sent or queued):
    /// from now on data frames are skipped unread, as after a violation,
    /// and only the peer's close is reported (RFC 6455 lets an endpoint
    /// discard data after its close). An unfinished message is dropped, and
    /// what it held goes back to the budget. Otherwise a client that keeps
    /// sending until the close handshake times out would have every
    /// compressed message inflated, for nothing, all that time.
    pub fn skip_data(&mut self) {
        if self.failed {
            return;
        }
        self.failed = true;
        if let Some(progress) = self.progress.as_deref_mut() {
            progress.abandon_message();
            if progress.is_idle() {
                self.progress = None;
            }
        }
    }

    /// Consumes all of `input`, reporting events in order.
    ///
    /// The first protocol violation is reported as [`Event::Violation`], in
    /// its place among the events: after it the decoder only reports the
    /// peer's close ([`Event::Close`] or [`Event::InvalidClose`]), so the
    /// caller fails the connection before it sees that close, and the
    /// handshake still completes.
    pub fn decode(&mut self, input: &[u8], on_event: &mut impl FnMut(Event)) {
        // Work on the boxed progress if a previous call left something
        // unfinished, else on a local one: a call that receives whole frames
        // (the usual read) then allocates nothing. The box is taken out so
        // that `self` stays free for the flags while it is borrowed.
        let mut boxed = self.progress.take();
        let mut local = Progress::default();
        let progress = boxed.as_deref_mut().unwrap_or(&mut local);
        self.decode_with(progress, input, on_event);
        // Keep (or reuse) the box only while something is unfinished; back
        // at a frame boundary it is freed, so an idle connection holds none.
        self.progress = match boxed {
            Some(progress) if !progress.is_idle() => Some(progress),
            Some(_) => None,
            None if !local.is_idle() => Some(Box::new(local)),
            None => None,
        };
    }

    fn decode_with(&mut self, progress: &mut Progress, mut input: &[u8], on_event: &mut impl FnMut(Event)) {
        while !input.is_empty() && !self.broken {
            if progress.frame.is_none() && !self.read_header(progress, &mut input, on_event) {
                break;
            }
            if let Some(frame) = progress.frame.as_ref() {
                if frame.remaining > 0 {
                    let take = (frame.remaining.min(input.len() as u64)) as usize;
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    if let Err(e) = progress.take_payload(chunk) {
                        self.fail(progress, e.into(), on_event);
                    }
                }
            }
            if progress.frame.as_ref().is_some_and(|f| f.remaining == 0) {
                if let Err(refusal) = self.finish_frame(progress, on_event) {
                    self.fail(progress, refusal, on_event);
                }
            }
        }
    }

    /// Drops what the refused frame and message hold, and reports the
    /// refusal at once, before any later frame: only the first violation
    /// (the one the connection fails with), but every bad close.
    fn fail(&mut self, progress: &mut Progress, refusal: Refusal, on_event: &mut impl FnMut(Event)) {
        let first = !self.failed;
        self.failed = true;
        progress.message = None;
        if let Some(frame) = progress.frame.as_mut() {
            frame.skip = true;
            frame.control = Vec::new();
        }
        match refusal {
            Refusal::Violation(error) if first => on_event(Event::Violation(error)),
            Refusal::Violation(_) => {}
            Refusal::BadClose(error) => on_event(Event::InvalidClose(error)),
        }
    }

    /// Gathers and parses a header; false when more bytes are needed.
    fn read_header(&mut self, progress: &mut Progress, input: &mut &[u8], on_event: &mut impl FnMut(Event)) -> bool {
        let mut need = 2;
        loop {
            let have = progress.header_len as usize;
            if have < need {
                let take = (need - have).min(input.len());
                progress.header[have..have + take].copy_from_slice(&input[..take]);
                progress.header_len += take as u8;
                *input = &input[take..];
                if (progress.header_len as usize) < need {
                    return false;
                }
            }
            let full = header_size(progress.header[1]);
            if need == full {
                break;
            }
            need = full;
        }
        progress.header_len = 0;
        let header = progress.header;
        if let Err(refusal) = self.start_frame(progress, &header) {
            self.fail(progress, refusal, on_event);
        }
        true
    }

    fn start_frame(&mut self, progress: &mut Progress, header: &[u8; MAX_CLIENT_HEADER]) -> Result<(), Refusal> {
        let fin = header[0] & 0x80 != 0;
        let rsv = header[0] & 0x70;
        let masked = header[1] & 0x80 != 0;
        let (len, mut at) = match header[1] & 0x7F {
            126 => (u16::from_be_bytes([header[2], header[3]]) as u64, 4),
            127 => (u64::from_be_bytes(header[2..10].try_into().unwrap_or([0; 8])), 10),
            short => (short as u64, 2),
        };
        let mut mask = [0u8; 4];
        if masked {
            mask.copy_from_slice(&header[at..at + 4]);
            at += 4;
        }
        debug_assert_eq!(at, header_size(header[1]));
        if len >> 63 != 0 {
            // Not a length at all: frames can no longer be told apart.
            self.broken = true;
            return Err(ProtocolError::protocol("frame length has its top bit set").into());
        }
        let opcode = OpCode::from_u8(header[0] & 0x0F);
        progress.frame = Some(FrameState {
            opcode: opcode.unwrap_or(OpCode::Continuation),
            fin,
            mask,
            remaining: len,
            mask_phase: 0,
            control: Vec::new(),
            skip: true,
        });
        if self.failed {
            // Only a close frame still matters; keep it readable.
            if opcode == Some(OpCode::Close) {
                check_control_header(fin, len).map_err(Refusal::BadClose)?;
                progress.arm_control(len);
            }
            return Ok(());
        }
        let opcode = opcode.ok_or(ProtocolError::protocol("reserved opcode"))?;
        let compressed = rsv == RSV1 && self.deflate;
        if rsv != 0 && !compressed {
            return Err(ProtocolError::protocol("reserved bits set without an extension").into());
        }
        if compressed && !matches!(opcode, OpCode::Text | OpCode::Binary) {
            // RFC 7692 6.1: only a message's first frame carries the bit.
            return Err(ProtocolError::protocol("RSV1 set on a control or continuation frame").into());
        }
        if !masked {
            return Err(ProtocolError::protocol("client frame is not masked").into());
        }
        if opcode.is_control() {
            // Refused on the header: its payload may never come. A bad
            // close still means the peer has closed.
            check_control_header(fin, len).map_err(|error| match opcode {
                OpCode::Close => Refusal::BadClose(error),
                _ => Refusal::Violation(error),
            })?;
            progress.arm_control(len);
            return Ok(());
        }
        let (already, compressed) = match (&progress.message, opcode) {
            (None, OpCode::Continuation) => {
                return Err(ProtocolError::protocol("continuation without a message").into())
            }
            (Some(_), OpCode::Text | OpCode::Binary) => {
                return Err(ProtocolError::protocol("new message before the last one ended").into())
            }
            (Some(partial), _) => (partial.payload_len() as u64, partial.compressed),
            (None, _) => (0, compressed),
        };
        let limit = if compressed {
            compressed_limit(self.max_message_size)
        } else {
            self.max_message_size
        };
        if already + len > limit as u64 {
            return Err(ProtocolError {
                code: CloseCode::MessageTooBig,
                reason: "message too big",
            }
            .into());
        }
        if progress.message.is_none() {
            let kind = if opcode == OpCode::Text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            };
            // No buffer yet: it is made for the first payload bytes that
            // arrive, with room for them only.
            progress.message = Some(PartialMessage {
                kind,
                buf: Vec::new(),
                utf8_checked: 0,
                compressed,
                max_len: limit,
                charge: None,
            });
        }
        if let Some(frame) = progress.frame.as_mut() {
            frame.skip = false;
        }
        Ok(())
    }

    fn finish_frame(&mut self, progress: &mut Progress, on_event: &mut impl FnMut(Event)) -> Result<(), Refusal> {
        let Some(frame) = progress.frame.take() else {
            return Ok(());
        };
        if frame.skip {
            return Ok(());
        }
        match frame.opcode {
            OpCode::Close => on_event(close_event(&frame.control).map_err(Refusal::BadClose)?),
            OpCode::Ping => on_event(Event::Ping(Bytes::from(frame.control))),
            OpCode::Pong => on_event(Event::Pong),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if frame.fin {
                    if let Some(message) = progress.message.take() {
                        on_event(Event::Message(complete(message, self.max_message_size)?));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks a control frame's header: unfragmented, and at most 125 bytes.
fn check_control_header(fin: bool, len: u64) -> Result<(), ProtocolError> {
    if !fin {
        Err(ProtocolError::protocol("fragmented control frame"))
    } else if len > 125 {
        Err(ProtocolError::protocol("control frame payload over 125 bytes"))
    } else {
        Ok(())
    }
}

/// The peer's close, validated even after a failure: what it carries may
/// reach the session, and a code that must never travel must not be
/// echoed or logged as the peer's.
fn close_event(payload: &[u8]) -> Result<Event, ProtocolError> {
    if payload.is_empty() {
        return Ok(Event::Close(None, String::new()));
    }
    if payload.len() < 2 {
        return Err(ProtocolError::protocol("close payload of one byte"));
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    if !CloseCode::is_allowed_from_peer(code) {
        return Err(ProtocolError::protocol("invalid close code"));
    }
    let reason = std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::invalid_close_reason())?;
    Ok(Event::Close(Some(code), reason.to_owned()))
}

/// Size of a client frame header, from its second byte.
fn header_size(second_byte: u8) -> usize {
    let len_bytes = match second_byte & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second_byte & 0x80 != 0 { 4 } else { 0 };
    2 + len_bytes + mask_bytes
}

/// Most compressed bytes gathered for one message: deflate can make
/// incompressible data slightly longer (stored blocks add 5 bytes per 64 KiB,
/// a poor encoder up to 1/8), and the inflated size is checked exactly later.
fn compressed_limit(max_message_size: usize) -> usize {
    max_message_size
        .saturating_add(max_message_size / 8)
        .saturating_add(1024)
}

fn complete(mut message: PartialMessage, max_message_size: usize) -> Result<Message, ProtocolError> {
    let mut buf = std::mem::take(&mut message.buf);
    if buf.len() < MAX_SERVER_HEADER {
        // No payload arrived: the gap alone.
        buf.resize(MAX_SERVER_HEADER, 0);
    }
    let sent = buf.len() - MAX_SERVER_HEADER;
    if message.compressed {
        buf = inflate(&buf[MAX_SERVER_HEADER..], max_message_size)?;
    }
    let payload_len = buf.len() - MAX_SERVER_HEADER;
    let inflated = payload_len.saturating_sub(sent);
    if message.kind == MessageKind::Text {
        check_utf8(&buf[MAX_SERVER_HEADER..], &mut message.utf8_checked, true)?;
    }
    let mut space = [0u8; MAX_SERVER_HEADER];
    let used = write_header_right_aligned(&mut space, message.kind.opcode(), payload_len);
    buf[..MAX_SERVER_HEADER].copy_from_slice(&space);
    let mut frame = Bytes::from(buf);
    frame.advance(MAX_SERVER_HEADER - used);
    Ok(Message {
        kind: message.kind,
        frame,
        header_len: used,
        inflated,
    })
}

/// Validates UTF-8 from `checked` on; an unfinished character at the end is
/// fine until the message is `complete`. Invalid bytes fail at once (fail-fast).
fn check_utf8(payload: &[u8], checked: &mut usize, complete: bool) -> Result<(), ProtocolError> {
    match std::str::from_utf8(&payload[*checked..]) {
        Ok(_) => {
            *checked = payload.len();
            Ok(())
        }
        Err(e) if e.error_len().is_some() || complete => Err(ProtocolError::invalid_utf8()),
        Err(e) => {
            *checked += e.valid_up_to();
            Ok(())
        }
    }
}

/// XORs `buf` with the mask, starting at mask position `phase`; eight bytes
/// at a time, since unmasking is on every received byte's path.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let rotated: [u8; 4] = std::array::from_fn(|i| mask[(phase + i) % 4]);
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2], rotated[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame, as a well-behaved client sends it.
    pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    /// Decodes `input` in one call; the violation, if any, is taken out of
    /// the events (where it must be the only one) as an `Err`.
    fn decode_all(decoder: &mut Decoder, input: &[u8]) -> (Vec<Event>, Result<(), ProtocolError>) {
        let mut events = Vec::new();
        let mut result = Ok(());
        decoder.decode(input, &mut |e| match e {
            Event::Violation(error) => {
                assert!(result.is_ok(), "a second violation: {error:?}");
                result = Err(error);
            }
            other => events.push(other),
        });
        (events, result)
    }

    fn only_message(events: Vec<Event>) -> Message {
        match events.into_iter().next() {
            Some(Event::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_masked_text_frame_into_a_server_frame() {
        let mut decoder = Decoder::new(1024);
        let (events, result) = decode_all(&mut decoder, &client_frame(true, 1, b"Hello"));
        result.unwrap();
        let message = only_message(events);
        assert_eq!(message.kind(), MessageKind::Text);
        assert_eq!(message.payload(), b"Hello");
        assert_eq!(&message.frame()[..], &[0x81, 5, b'H', b'e', b'l', b'l', b'o']);
        assert!(!decoder.is_mid_message());
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_message() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let wire = client_frame(true, 2, &payload);
        let mut decoder = Decoder::new(1 << 20);
        let mut events = Vec::new();
        for byte in &wire {
            decoder.decode(std::slice::from_ref(byte), &mut |e| events.push(e));
        }
        let message = only_message(events);
        assert_eq!(message.payload(), &payload[..]);
        assert_eq!(&message.frame()[..2], &[0x82, 127]);
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut wire = client_frame(false, 1, "héllo ".as_bytes());
        wire.extend(client_frame(true, 9, b"p"));
        wire.extend(client_frame(false, 0, "wör".as_bytes()));
        wire.extend(client_frame(true, 0, "ld".as_bytes()));
        let mut decoder = Decoder::new(1024);
        let (events, result) = decode_all(&mut decoder, &wire);
        result.unwrap();
        assert!(matches!(&events[0], Event::Ping(p) if &p[..] == b"p"));
        match &events[1] {
            Event::Message(m) => assert_eq!(m.payload(), "héllo wörld".as_bytes()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn utf8_split_across_fragments_is_accepted() {
        let euro = "€".as_bytes();
        let mut wire = client_frame(false, 1, &euro[..1]);
        wire.extend(client_frame(false, 0, &euro[1..2]));
        wire.extend(client_frame(true, 0, &euro[2..]));
        let (events, result) = decode_all(&mut Decoder::new(16), &wire);
        result.unwrap();
        assert_eq!(only_message(events).payload(), euro);
    }

    #[test]
    fn invalid_utf8_fails_fast_with_1007() {
        let mut decoder = Decoder::new(1024);
        let (events, result) = decode_all(&mut decoder, &client_frame(false, 1, &[0xce, 0xba, 0xff]));
        assert!(events.is_empty());
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
    }

    #[test]
    fn truncated_utf8_at_the_end_fails() {
        let (_, result) = decode_all(&mut Decoder::new(16), &client_frame(true, 1, &[0xe2, 0x82]));
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
    }

    #[test]
    fn oversized_message_fails_with_1009_before_its_payload_arrives() {
        let mut decoder = Decoder::new(100);
        let wire = client_frame(true, 2, &[0; 101]);
        let (events, result) = decode_all(&mut decoder, &wire[..8]);
        assert!(events.is_empty());
        assert_eq!(result.unwrap_err().code, CloseCode::MessageTooBig);
        let mut fragmented = client_frame(false, 2, &[0; 60]);
        fragmented.extend(client_frame(true, 0, &[0; 41]));
        let (_, result) = decode_all(&mut Decoder::new(100), &fragmented);
        assert_eq!(result.unwrap_err().code, CloseCode::MessageTooBig);
    }

    #[test]
    fn framing_violations_fail_with_1002() {
        let cases: Vec<Vec<u8>> = vec![
            {
                let mut f = client_frame(true, 1, b"x");
                f[0] |= 0x40;
                f
            },
            client_frame(true, 3, b"x"),
            client_frame(true, 0xB, b""),
            client_frame(false, 9, b""),
            client_frame(true, 9, &[0; 126]),
            client_frame(true, 0, b"x"),
            [client_frame(false, 1, b"a"), client_frame(true, 1, b"b")].concat(),
            vec![0x81, 0x01, b'x'],
        ];
        for (i, wire) in cases.iter().enumerate() {
            let (events, result) = decode_all(&mut Decoder::new(1024), wire);
            assert!(events.iter().all(|e| !matches!(e, Event::Message(_))), "case {i}");
            assert_eq!(result.unwrap_err().code, CloseCode::ProtocolError, "case {i}");
        }
    }

    #[test]
    fn after_a_failure_only_the_close_frame_is_reported() {
        let mut wire = client_frame(true, 1, &[0xff, 0xfe]);
        wire.extend(client_frame(true, 2, b"ignored"));
        wire.extend(client_frame(true, 9, b"ignored too"));
        wire.extend(client_frame(true, 8, &1000u16.to_be_bytes()));
        let mut decoder = Decoder::new(1024);
        let (events, result) = decode_all(&mut decoder, &wire);
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0], Event::Close(Some(1000), _)));
    }

    #[test]
    fn close_frame_with_code_and_reason() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        let (events, result) = decode_all(&mut Decoder::new(16), &client_frame(true, 8, &payload));
        result.unwrap();
        assert!(matches!(&events[0], Event::Close(Some(1001), r) if r == "bye ✓"));
    }

    #[test]
    fn malformed_close_frames_are_reported_with_their_error() {
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        let cases = [
            (vec![3u8], CloseCode::ProtocolError),
            (1005u16.to_be_bytes().to_vec(), CloseCode::ProtocolError),
            (999u16.to_be_bytes().to_vec(), CloseCode::ProtocolError),
            (
                [1000u16.to_be_bytes().to_vec(), vec![b'x'; 124]].concat(),
                CloseCode::ProtocolError,
            ),
            (bad_reason, CloseCode::InvalidPayload),
        ];
        for (payload, code) in cases {
            let mut decoder = Decoder::new(16);
            let (events, result) = decode_all(&mut decoder, &client_frame(true, 8, &payload));
            result.unwrap();
            assert!(
                matches!(&events[..], [Event::InvalidClose(e)] if e.code == code),
                "{payload:?}"
            );
        }
    }

    /// An event in a few words, to compare sequences of them.
    fn summary(event: &Event) -> String {
        match event {
            Event::Message(m) => format!("message {}", String::from_utf8_lossy(m.payload())),
            Event::Ping(_) => "ping".into(),
            Event::Pong => "pong".into(),
            Event::Close(code, _) => format!("close {code:?}"),
            Event::InvalidClose(e) => format!("invalid close {}: {}", e.code, e.reason),
            Event::Violation(e) => format!("violation {}: {}", e.code, e.reason),
        }
    }

    /// The first violation is reported in its place in the stream, whole
    /// or byte by byte: what came before it first, after it only the peer's
    /// close, and that close is validated all the same.
    #[test]
    fn a_violation_is_reported_in_stream_order_before_the_close_after_it() {
        let close = |code: u16| client_frame(true, 8, &code.to_be_bytes());
        let reserved = client_frame(true, 3, b"");
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        let cases: Vec<(Vec<Vec<u8>>, Vec<&str>)> = vec![
            (
                vec![reserved.clone(), close(1005)],
                vec![
                    "violation 1002: reserved opcode",
                    "invalid close 1002: invalid close code",
                ],
            ),
            (
                vec![
                    client_frame(true, 1, b"hi"),
                    reserved.clone(),
                    client_frame(true, 9, b""),
                    close(1000),
                ],
                vec!["message hi", "violation 1002: reserved opcode", "close Some(1000)"],
            ),
            (
                vec![client_frame(true, 1, &[0xff]), close(1000)],
                vec!["violation 1007: invalid UTF-8 in text message", "close Some(1000)"],
            ),
            (
                vec![unmasked.clone(), reserved, close(1000)],
                vec!["violation 1002: client frame is not masked", "close Some(1000)"],
            ),
            (
                vec![client_frame(false, 9, b""), close(4000)],
                vec!["violation 1002: fragmented control frame", "close Some(4000)"],
            ),
        ];
        for (frames, expected) in cases {
            let wire = frames.concat();
            for chunk in [wire.len(), 1] {
                let mut decoder = Decoder::new(1024);
                let mut events = Vec::new();
                for piece in wire.chunks(chunk) {
                    decoder.decode(piece, &mut |e| events.push(summary(&e)));
                }
                assert_eq!(events, expected, "in chunks of {chunk}");
            }
        }
    }

    /// A header announcing 2^40 bytes, and no payload: a close frame is
    /// refused on its header, as a ping is, not after a payload that
    /// may never come.
    #[test]
    fn a_close_header_over_125_bytes_fails_at_once() {
        let mut header = vec![0x88, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0];
        header.extend_from_slice(&MASK);
        let mut decoder = Decoder::new(1024);
        let (events, result) = decode_all(&mut decoder, &header[..13]);
        result.unwrap();
        assert!(events.is_empty(), "{events:?}");
        let (events, result) = decode_all(&mut decoder, &header[13..]);
        result.unwrap();
        assert!(
            matches!(&events[..], [Event::InvalidClose(e)] if e.code == CloseCode::ProtocolError),
            "{events:?}"
        );
        // A fragmented close is refused on its header too.
        let fragmented = client_frame(false, 8, &1000u16.to_be_bytes());
        let (events, _) = decode_all(&mut Decoder::new(1024), &fragmented[..6]);
        assert!(matches!(&events[..], [Event::InvalidClose(_)]), "{events:?}");
        // As a ping with the same header is.
        header[0] = 0x89;
        let (_, result) = decode_all(&mut Decoder::new(1024), &header);
        assert_eq!(result.unwrap_err().code, CloseCode::ProtocolError);
    }

    #[test]
    fn an_invalid_close_reason_is_named_as_such() {
        let payload = [&1000u16.to_be_bytes()[..], &[b'o', b'k', 0xff]].concat();
        let (events, _) = decode_all(&mut Decoder::new(1024), &client_frame(true, 8, &payload));
        match &events[..] {
            [Event::InvalidClose(e)] => {
                assert_eq!(e.code, CloseCode::InvalidPayload);
                assert_eq!(e.reason, "invalid UTF-8 in close reason");
            }
            other => panic!("{other:?}"),
        }
    }

    fn compressed_frame(fin: bool, opcode: u8, deflated: &[u8]) -> Vec<u8> {
        let mut frame = client_frame(fin, opcode, deflated);
        frame[0] |= RSV1;
        frame
    }

    use crate::protocol::deflate::tests::client_deflate;

    #[test]
    fn a_compressed_message_says_what_inflating_added() {
        let zeros = vec![0u8; 10_000];
        let deflated = client_deflate(&zeros);
        let mut decoder = Decoder::new(20_000).with_deflate(true);
        let (events, _) = decode_all(&mut decoder, &compressed_frame(true, 2, &deflated));
        assert_eq!(only_message(events).inflated(), 10_000 - deflated.len());
        let (events, _) = decode_all(&mut decoder, &client_frame(true, 2, &zeros));
        assert_eq!(only_message(events).inflated(), 0, "sent plain");
    }

    /// Once the server closes, data is skipped unread (a compressed message
    /// is not inflated, and one under way is dropped with its budget), and
    /// only the peer's close is reported.
    #[test]
    fn after_skip_data_only_the_peers_close_is_reported() {
        let budget = IncompleteBudget::new(1 << 20);
        let mut decoder = Decoder::new(1 << 20).with_deflate(true);
        let text = client_frame(false, 1, &[b'a'; 1000]);
        let (events, _) = decode_all(&mut decoder, &text);
        assert!(events.is_empty());
        decoder.account(&budget).unwrap();
        assert!(budget.held() > 0);
        decoder.skip_data();
        assert_eq!(budget.held(), 0, "the unfinished message's bytes are back");
        let bomb = compressed_frame(true, 2, &client_deflate(&vec![0u8; 1 << 20]));
        let input = [
            &client_frame(true, 0, b"rest")[..],
            &bomb,
            &client_frame(true, 8, &1000u16.to_be_bytes()),
        ]
        .concat();
        let (events, _) = decode_all(&mut decoder, &input);
        match &events[..] {
            [Event::Close(Some(1000), _)] => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_a_compressed_message_into_a_plain_server_frame() {
        let text = "Hello, Hello, Hello, Hello! ".repeat(10);
        let mut decoder = Decoder::new(1024).with_deflate(true);
        let (events, result) = decode_all(
            &mut decoder,
            &compressed_frame(true, 1, &client_deflate(text.as_bytes())),
        );
        result.unwrap();
        let message = only_message(events);
        assert_eq!(message.kind(), MessageKind::Text);
        assert_eq!(message.payload(), text.as_bytes());
        assert_eq!(&message.frame()[..2], &[0x81, 126]);
        // Uncompressed messages still pass on a deflate connection.
        let (events, result) = decode_all(&mut decoder, &client_frame(true, 2, b"plain"));
        result.unwrap();
        assert_eq!(only_message(events).payload(), b"plain");
    }

    #[test]
    fn reassembles_a_fragmented_compressed_message_around_a_ping() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        let deflated = client_deflate(&data);
        let third = deflated.len() / 3;
        let mut wire = compressed_frame(false, 2, &deflated[..third]);
        wire.extend(client_frame(true, 9, b"p"));
        wire.extend(client_frame(false, 0, &deflated[third..2 * third]));
        wire.extend(client_frame(true, 0, &deflated[2 * third..]));
        let mut decoder = Decoder::new(1 << 20).with_deflate(true);
        let mut events = Vec::new();
        for chunk in wire.chunks(7) {
            decoder.decode(chunk, &mut |e| events.push(e));
        }
        assert!(matches!(&events[0], Event::Ping(p) if &p[..] == b"p"));
        match &events[1] {
            Event::Message(m) => assert_eq!(m.payload(), &data[..]),
            other => panic!("{other:?}"),
        }
        assert!(!decoder.is_mid_message());
    }

    #[test]
    fn rsv1_is_a_protocol_error_unless_negotiated_and_on_a_first_frame() {
        let deflated = client_deflate(b"some text here");
        let cases: Vec<(bool, Vec<u8>)> = vec![
            (false, compressed_frame(true, 1, &deflated)),
            (true, {
                let mut f = compressed_frame(true, 9, b"");
                f[0] |= 0x40;
                f
            }),
            (
                true,
                [client_frame(false, 1, b"a"), compressed_frame(true, 0, b"b")].concat(),
            ),
            (
                true,
                [compressed_frame(false, 1, &deflated), compressed_frame(true, 0, b"")].concat(),
            ),
            (true, {
                let mut f = client_frame(true, 1, b"x");
                f[0] |= 0x20;
                f
            }),
            (true, {
                let mut f = compressed_frame(true, 1, &deflated);
                f[0] |= 0x10;
                f
            }),
        ];
        for (i, (deflate, wire)) in cases.iter().enumerate() {
            let mut decoder = Decoder::new(1024).with_deflate(*deflate);
            let (events, result) = decode_all(&mut decoder, wire);
            assert!(events.iter().all(|e| !matches!(e, Event::Message(_))), "case {i}");
            assert_eq!(result.unwrap_err().code, CloseCode::ProtocolError, "case {i}");
        }
    }

    #[test]
    fn a_zip_bomb_fails_with_1009() {
        let bomb = client_deflate(&vec![b'a'; 32 << 20]);
        assert!(bomb.len() < 64 * 1024);
        let mut decoder = Decoder::new(1 << 20).with_deflate(true);
        let (events, result) = decode_all(&mut decoder, &compressed_frame(true, 2, &bomb));
        assert!(events.is_empty());
        assert_eq!(result.unwrap_err().code, CloseCode::MessageTooBig);
        // The compressed size is bounded too, before any inflating.
        let mut decoder = Decoder::new(100).with_deflate(true);
        let wire = compressed_frame(true, 2, &[0; 2000]);
        let (_, result) = decode_all(&mut decoder, &wire[..8]);
        assert_eq!(result.unwrap_err().code, CloseCode::MessageTooBig);
    }

    #[test]
    fn compressed_invalid_utf8_or_garbage_fails_with_1007() {
        let bad_text = client_deflate(&[b'a', b'b', 0xff, 0xfe]);
        let (_, result) = decode_all(
            &mut Decoder::new(1024).with_deflate(true),
            &compressed_frame(true, 1, &bad_text),
        );
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
        let garbage = compressed_frame(true, 2, &[0xff; 20]);
        let (_, result) = decode_all(&mut Decoder::new(1024).with_deflate(true), &garbage);
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
    }

    #[test]
    fn an_idle_decoder_is_at_most_three_words() {
        // Every connection holds one for its whole life.
        let size = std::mem::size_of::<Decoder>();
        assert!(size <= 24, "Decoder is {size} bytes");
    }

    #[test]
    fn a_frame_split_across_calls_is_kept_until_it_completes() {
        let wire = client_frame(true, 1, b"split me");
        // In the first header bytes, in the mask, in the payload.
        for cut in [1, 2, 5, 6, 9] {
            let mut decoder = Decoder::new(1024);
            let (events, result) = decode_all(&mut decoder, &wire[..cut]);
            result.unwrap();
            assert!(events.is_empty(), "cut {cut}");
            assert!(decoder.is_mid_message(), "cut {cut}");
            let (events, result) = decode_all(&mut decoder, &wire[cut..]);
            result.unwrap();
            assert_eq!(only_message(events).payload(), b"split me", "cut {cut}");
            assert!(!decoder.is_mid_message(), "cut {cut}");
            assert!(decoder.progress.is_none(), "cut {cut}: box kept after the frame");
        }
    }

    #[test]
    fn whole_frames_box_nothing_and_an_unfinished_message_reuses_its_box() {
        let mut decoder = Decoder::new(1024);
        let wire = [client_frame(true, 1, b"one"), client_frame(true, 9, b"p")].concat();
        let (events, result) = decode_all(&mut decoder, &wire);
        result.unwrap();
        assert_eq!(events.len(), 2);
        assert!(decoder.progress.is_none());
        assert!(!decoder.is_mid_message());

        let wire = [
            client_frame(false, 2, b"ab"),
            client_frame(false, 0, b"cd"),
            client_frame(true, 0, b"ef"),
        ]
        .concat();
        let boxed = |decoder: &Decoder| decoder.progress.as_deref().map(|p| p as *const Progress);
        let (events, result) = decode_all(&mut decoder, &wire[..3]);
        result.unwrap();
        assert!(events.is_empty());
        let first = boxed(&decoder).expect("an unfinished header is boxed");
        // Frame boundaries inside the message: the message keeps the box.
        for range in [3..10, 10..16, 16..wire.len() - 1] {
            let (events, result) = decode_all(&mut decoder, &wire[range]);
            result.unwrap();
            assert!(events.is_empty());
            assert_eq!(boxed(&decoder), Some(first), "the box is reused");
        }
        let (events, result) = decode_all(&mut decoder, &wire[wire.len() - 1..]);
        result.unwrap();
        assert_eq!(only_message(events).payload(), b"abcdef");
        assert!(decoder.progress.is_none());
    }

    /// The most a buffer may hold for `arrived` payload bytes: twice what
    /// arrived (with its gap), or the smallest growth step.
    fn growth_bound(arrived: usize) -> usize {
        ((MAX_SERVER_HEADER + arrived) * 2).max(MIN_GROWTH)
    }

    #[test]
    fn one_byte_of_a_huge_frame_holds_a_few_bytes() {
        let wire = client_frame(true, 2, &vec![7; 1 << 20]);
        let mut decoder = Decoder::new(1 << 20);
        let (events, result) = decode_all(&mut decoder, &wire[..14 + 1]);
        result.unwrap();
        assert!(events.is_empty());
        let held = decoder.held_bytes();
        assert!(held <= MIN_GROWTH, "one byte of a 1 MiB frame holds {held} bytes");
        // The header alone holds no buffer at all.
        let mut decoder = Decoder::new(1 << 20);
        decode_all(&mut decoder, &wire[..14]).1.unwrap();
        assert_eq!(decoder.held_bytes(), 0);
    }

    #[test]
    fn a_buffer_grows_with_what_arrives_and_ends_at_the_frame() {
        let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        let wire = client_frame(true, 2, &payload);
        let mut decoder = Decoder::new(1 << 20);
        let mut events = Vec::new();
        let mut capacities = std::collections::BTreeSet::new();
        for (i, chunk) in wire.chunks(64 * 1024 - 3).enumerate() {
            decoder.decode(chunk, &mut |e| events.push(e));
            if events.is_empty() {
                let arrived = ((i + 1) * chunk.len()).saturating_sub(14);
                let held = decoder.held_bytes();
                assert!(held <= growth_bound(arrived), "{held} bytes held for {arrived}");
                capacities.insert(held);
            }
        }
        let message = only_message(events);
        assert_eq!(message.payload(), &payload[..]);
        // A single frame's buffer never grows past the frame's end.
        assert!(capacities.iter().all(|&c| c <= MAX_SERVER_HEADER + payload.len()));
        assert!(capacities.len() <= 8, "amortised growth: {capacities:?}");
    }

    #[test]
    fn a_message_in_many_small_fragments_grows_amortised() {
        let mut wire = client_frame(false, 2, &[1; 1000]);
        for _ in 1..999 {
            wire.extend(client_frame(false, 0, &[1; 1000]));
        }
        wire.extend(client_frame(true, 0, &[1; 1000]));
        let mut decoder = Decoder::new(1 << 20);
        let mut events = Vec::new();
        let mut capacities = std::collections::BTreeSet::new();
        let frame_len = 1000 + 8;
        for (i, frame) in wire.chunks(frame_len).enumerate() {
            decoder.decode(frame, &mut |e| events.push(e));
            if events.is_empty() {
                let held = decoder.held_bytes();
                assert!(
                    held <= growth_bound((i + 1) * 1000),
                    "{held} bytes for {} fragments",
                    i + 1
                );
                capacities.insert(held);
            }
        }
        assert_eq!(only_message(events).payload().len(), 1_000_000);
        assert!(capacities.len() <= 25, "amortised growth: {} sizes", capacities.len());
    }

    #[test]
    fn an_unfinished_message_is_charged_and_gives_its_bytes_back() {
        let budget = IncompleteBudget::new(1 << 20);
        let wire = client_frame(true, 1, &[b'a'; 100_000]);
        let mut decoder = Decoder::new(1 << 20);
        // Whole messages and bare headers are never charged.
        decode_all(&mut decoder, &client_frame(true, 1, b"whole")).1.unwrap();
        decode_all(&mut decoder, &wire[..10]).1.unwrap();
        decoder.account(&budget).unwrap();
        assert_eq!(budget.held(), 0);
        decode_all(&mut decoder, &wire[10..50_000]).1.unwrap();
        decoder.account(&budget).unwrap();
        assert!(budget.held() >= 50_000 - 14);
        assert_eq!(budget.held(), decoder.held_bytes());
        decode_all(&mut decoder, &wire[50_000..80_000]).1.unwrap();
        decoder.account(&budget).unwrap();
        assert_eq!(budget.held(), decoder.held_bytes(), "growth is charged");
        let (events, result) = decode_all(&mut decoder, &wire[80_000..]);
        result.unwrap();
        assert_eq!(only_message(events).payload().len(), 100_000);
        assert_eq!(budget.held(), 0, "a completed message gives its bytes back");
        // A decoder dropped mid-message (its connection ended) does too.
        decode_all(&mut decoder, &wire[..50_000]).1.unwrap();
        decoder.account(&budget).unwrap();
        assert!(budget.held() > 0);
        drop(decoder);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn over_the_budget_the_message_is_dropped_and_only_a_close_follows() {
        let budget = IncompleteBudget::new(10_000);
        let mut others = None;
        budget.grow(&mut others, 6_000).unwrap();
        let mut wire = client_frame(false, 2, &[0; 5_000]);
        let mut decoder = Decoder::new(1 << 20);
        decode_all(&mut decoder, &wire[..3_000]).1.unwrap();
        decoder.account(&budget).unwrap();
        decode_all(&mut decoder, &wire[3_000..4_500]).1.unwrap();
        let refused = decoder.account(&budget).unwrap_err();
        assert_eq!(refused.limit, 10_000);
        assert!(refused.wanted + refused.held > 10_000, "{refused:?}");
        assert_eq!(budget.held(), 6_000, "the refused message gave its bytes back");
        assert_eq!(decoder.held_bytes(), 0);
        // The rest of its frame and what follows are skipped; the peer's
        // close is still reported.
        wire.extend(client_frame(true, 0, b"more"));
        wire.extend(client_frame(true, 9, b"ping"));
        wire.extend(client_frame(true, 8, &1000u16.to_be_bytes()));
        let (events, result) = decode_all(&mut decoder, &wire[4_500..]);
        result.unwrap();
        assert!(matches!(&events[..], [Event::Close(Some(1000), _)]), "{events:?}");
        decoder.account(&budget).unwrap();
        assert_eq!(budget.held(), 6_000);
    }

    #[test]
    fn a_close_frame_under_way_survives_a_refusal() {
        let budget = IncompleteBudget::new(1_000);
        let mut wire = client_frame(false, 1, &[b'x'; 2_000]);
        let close = client_frame(true, 8, &1001u16.to_be_bytes());
        wire.extend_from_slice(&close[..3]);
        let mut decoder = Decoder::new(1 << 20);
        decode_all(&mut decoder, &wire).1.unwrap();
        decoder.account(&budget).unwrap_err();
        let (events, result) = decode_all(&mut decoder, &close[3..]);
        result.unwrap();
        assert!(matches!(&events[..], [Event::Close(Some(1001), _)]), "{events:?}");
    }

    #[test]
    fn mask_phase_carries_across_chunks() {
        let mut buf: Vec<u8> = (0..37u8).collect();
        let original = buf.clone();
        let mask = [1, 2, 3, 4];
        apply_mask(&mut buf[..5], mask, 0);
        apply_mask(&mut buf[5..19], mask, 5);
        apply_mask(&mut buf[19..], mask, 19);
        let expected: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        assert_eq!(buf, expected);
    }
}
