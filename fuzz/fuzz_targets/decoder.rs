//! Fuzzes the streaming frame decoder, `wshub::protocol::Decoder`.
//!
//! Input layout: the first byte picks the mode.
//! - Top bit clear, raw mode: its low 3 bits say how many of the next bytes
//!   are chunk sizes (cycled; none means one chunk); the rest is fed to the
//!   decoder as is. Checked: no panic; every message is a well-formed server
//!   frame, text is UTF-8, nothing exceeds the limit; at most one violation
//!   is reported, and nothing but close frames after it (or after a bad
//!   close); and one chunk, the chosen chunks and single bytes all give the
//!   same events, the violation in the same place; an
//!   unfinished message holds at most twice the bytes fed (or the smallest
//!   growth step), all of it charged to the budget, and nothing
//!   stays charged once the decoder is dropped.
//! - Top bit set, round-trip mode: the rest is a script of valid messages
//!   (fragmented, with pings between fragments, text split inside UTF-8
//!   characters) that is encoded as masked client frames; the decoder must
//!   give back exactly those messages, in any chunking, without error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub::protocol::{Decoder, Event, IncompleteBudget, Message, MessageKind, ProtocolError};

const MAX: usize = 4096;

/// A comparable record of an [`Event`].
#[derive(Debug, PartialEq)]
enum Seen {
    Message(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
    InvalidClose(ProtocolError),
    Violation(ProtocolError),
}

impl Seen {
    fn is_close(&self) -> bool {
        matches!(self, Seen::Close(..) | Seen::InvalidClose(_))
    }
}

/// Checks one message: payload within the limit, text is UTF-8, and the
/// frame is one final, unmasked, minimally encoded server frame carrying
/// exactly the payload.
fn check_message(message: &Message) {
    let payload = message.payload();
    let frame = message.frame();
    assert!(
        payload.len() <= MAX,
        "message of {} bytes over the limit",
        payload.len()
    );
    if message.kind() == MessageKind::Text {
        assert!(std::str::from_utf8(payload).is_ok(), "text message is not UTF-8");
    }
    let opcode = match message.kind() {
        MessageKind::Text => 0x1,
        MessageKind::Binary => 0x2,
    };
    assert!(frame.len() >= 2, "frame shorter than a header");
    assert_eq!(frame[0], 0x80 | opcode, "first byte: FIN, no RSV, the kind's opcode");
    assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
    let (len, header) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as u64, 4),
        127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()), 10),
        short => (short as u64, 2),
    };
    let minimal = match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    assert_eq!(header, minimal, "length not minimally encoded");
    assert_eq!(len, payload.len() as u64, "header length != payload length");
    assert_eq!(frame.len(), header + payload.len(), "frame length");
    assert_eq!(&frame[header..], payload, "frame payload != payload()");
}

fn record(event: Event) -> Seen {
    match event {
        Event::Message(message) => {
            check_message(&message);
            Seen::Message(message.kind(), message.payload().to_vec())
        }
        Event::Ping(payload) => {
            assert!(payload.len() <= 125, "ping payload over 125 bytes");
            Seen::Ping(payload.to_vec())
        }
        Event::Pong => Seen::Pong,
        Event::Close(code, reason) => {
            assert!(reason.len() <= 123, "close reason over 123 bytes");
            Seen::Close(code, reason)
        }
        Event::InvalidClose(error) => Seen::InvalidClose(error),
        Event::Violation(error) => Seen::Violation(error),
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Seen>,
}

/// Decodes `stream` in chunks of the given sizes (cycled).
fn decode(stream: &[u8], sizes: &[usize]) -> Run {
    let mut decoder = Decoder::new(MAX);
    let budget = IncompleteBudget::unlimited();
    let mut fed = 0;
    let mut run = Run { events: Vec::new() };
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        decoder.decode(chunk, &mut |event| run.events.push(record(event)));
        fed += chunk.len();
        decoder.account(&budget).expect("an unlimited budget refuses nothing");
        let held = decoder.held_bytes();
        assert_eq!(budget.held(), held, "what is held is what is charged");
        assert!(held <= ((10 + fed) * 2).max(256), "{held} bytes held after {fed} fed");
    }
    drop(decoder);
    assert_eq!(budget.held(), 0, "a dropped decoder gives its bytes back");
    let violations = run.events.iter().filter(|e| matches!(e, Seen::Violation(_))).count();
    assert!(violations <= 1, "{violations} violations reported");
    // Once failed, or after a bad close frame, only the peer's close frame
    // still matters: nothing else may follow, even within the same chunk.
    let failed = |e: &Seen| matches!(e, Seen::Violation(_) | Seen::InvalidClose(_));
    if let Some(at) = run.events.iter().position(failed) {
        assert!(
            run.events[at + 1..].iter().all(Seen::is_close),
            "events after a failure: {:?}",
            &run.events[at..]
        );
    }
    run
}

/// Chunk sizes from the fuzzer's bytes; zero-sized chunks are allowed as
/// long as the cycle makes progress.
fn chunk_sizes(bytes: &[u8], total: usize) -> Vec<usize> {
    let sizes: Vec<usize> = bytes.iter().map(|&b| b as usize).collect();
    if sizes.iter().all(|&s| s == 0) {
        vec![total.max(1)]
    } else {
        sizes
    }
}

fn raw(selector: u8, rest: &[u8]) {
    let count = ((selector & 7) as usize).min(rest.len());
    let (size_bytes, stream) = rest.split_at(count);
    let whole = decode(stream, &[stream.len().max(1)]);
    let chunked = decode(stream, &chunk_sizes(size_bytes, stream.len()));
    assert_eq!(whole, chunked, "one chunk and chosen chunks differ");
    if stream.len() <= 4096 {
        let bytewise = decode(stream, &[1]);
        assert_eq!(whole, bytewise, "one chunk and single bytes differ");
    }
}

/// Encodes one masked client frame with the minimal length encoding.
fn client_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
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
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Reads `n` bytes (fewer at the end) from the script.
fn take<'a>(script: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = script.split_at(n.min(script.len()));
    *script = tail;
    head
}

fn round_trip(selector: u8, rest: &[u8]) {
    let count = ((selector & 7) as usize).min(rest.len());
    let (size_bytes, mut script) = rest.split_at(count);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    while let Some((&op, tail)) = script.split_first() {
        script = tail;
        let mask = [op, op ^ 0x5a, op.wrapping_mul(31), !op];
        if op & 3 == 0 {
            let len = take(&mut script, 1).first().copied().unwrap_or(0) as usize % 126;
            let payload = take(&mut script, len);
            client_frame(&mut wire, true, 0x9, mask, payload);
            expected.push(Seen::Ping(payload.to_vec()));
            continue;
        }
        // A message of 1 to 4 fragments of up to 255 bytes (1020 < MAX).
        let kind = if op & 4 != 0 {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        let fragments = 1 + ((op >> 3) & 3) as usize;
        let ping_between = op & 0x20 != 0;
        let mut cuts = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..fragments {
            let len = take(&mut script, 1).first().copied().unwrap_or(0) as usize;
            bytes.extend_from_slice(take(&mut script, len));
            cuts.push(bytes.len());
        }
        if kind == MessageKind::Text {
            // Valid UTF-8, cut at the same byte offsets (often mid-character).
            bytes = String::from_utf8_lossy(&bytes).into_owned().into_bytes();
        }
        let mut start = 0;
        for (i, &cut) in cuts.iter().enumerate() {
            let last = i + 1 == fragments;
            let end = if last {
                bytes.len()
            } else {
                cut.min(bytes.len()).max(start)
            };
            let opcode = match (i, kind) {
                (0, MessageKind::Text) => 0x1,
                (0, MessageKind::Binary) => 0x2,
                _ => 0x0,
            };
            client_frame(&mut wire, last, opcode, mask, &bytes[start..end]);
            start = end;
            if ping_between && !last {
                client_frame(&mut wire, true, 0x9, mask, &[op]);
                expected.push(Seen::Ping(vec![op]));
            }
        }
        expected.push(Seen::Message(kind, bytes));
    }
    if selector & 0x40 != 0 {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        client_frame(&mut wire, true, 0x8, [1, 2, 3, 4], &payload);
        expected.push(Seen::Close(Some(1000), "bye ✓".into()));
    }
    let want = Run { events: expected };
    assert_eq!(decode(&wire, &[wire.len().max(1)]), want, "one chunk");
    assert_eq!(
        decode(&wire, &chunk_sizes(size_bytes, wire.len())),
        want,
        "chosen chunks"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 0x80 == 0 {
        raw(selector, rest);
    } else {
        round_trip(selector, rest);
    }
});
