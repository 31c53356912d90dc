//! permessage-deflate (RFC 7692), with no zlib state per connection.
//!
//! # The memory bound
//! With context takeover, each side keeps its LZ77 window between messages:
//! a compressor and a decompressor per connection, a few hundred KiB at
//! window 15 (zlib's compressor alone is about 256 KiB; miniz_oxide, used
//! here, is of the same order). Ten thousand idle browser tabs would cost
//! gigabytes, against the ~1 KiB an idle connection costs otherwise.
//!
//! So wshub always answers with **both** `server_no_context_takeover` and
//! `client_no_context_takeover` (RFC 7692 7.1.1: a server may ask the latter
//! even when the client did not offer it). Every message is then compressed
//! and decompressed on its own, and no zlib state has to outlive a message:
//! each thread keeps one compressor and one decompressor, reset after every
//! message, shared by all the connections that thread runs. An idle
//! negotiated connection holds nothing more than a plain one (the agreed
//! [`DeflateParams`], one byte); one in the middle of a compressed message
//! holds the compressed bytes received so far, bounded by the message limit.
//! [`zlib_states_on_this_thread`] counts the states, for tests.
//!
//! The price is ratio: each message starts with an empty window, so small
//! similar messages compress less than they would with context takeover.
//! The gain besides memory: a server frame no longer depends on what the
//! member received before, so a broadcast compresses once and shares the
//! bytes among every member that negotiated deflate ([`frame_for`]).
//!
//! # Window sizes
//! miniz_oxide always uses a 32 KiB window. Inflating with a window larger
//! than the client's is always correct, so `client_max_window_bits` needs no
//! answer. A client that demands `server_max_window_bits=N` is honoured
//! without a smaller window: a message compressed on its own never refers
//! further back than its own length, so messages of at most 2^N bytes are
//! compressed and longer ones are sent uncompressed (RSV1 clear), which RFC
//! 7692 allows for any message.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::close::CloseCode;
use super::decoder::ProtocolError;
use super::frame::{write_header_right_aligned, OpCode, MAX_SERVER_HEADER};

/// The 4 bytes a sync flush ends with; senders strip them from each message
/// and receivers put them back (RFC 7692 7.2.1, 7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The RSV1 bit of a frame's first byte: "this message is compressed".
pub(crate) const RSV1: u8 = 0x40;

/// Payloads shorter than this are sent as they are: deflate's block
/// overhead eats what little they could gain, and the CPU is wasted.
const MIN_COMPRESS: usize = 32;

/// What was agreed with one client: enough to know which of our frames it
/// can take compressed. Copied into the connection's outbox; one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The `server_max_window_bits` the client demanded, 8 to 15 (15 when
    /// it demanded nothing).
    server_max_window_bits: u8,
}

impl DeflateParams {
    /// Parameters for a client that demanded `server_max_window_bits`
    /// (`None`: no limit, window 15). `Some` outside 8..=15 is not valid.
    pub fn new(server_max_window_bits: Option<u8>) -> Option<DeflateParams> {
        match server_max_window_bits {
            None => Some(DeflateParams {
                server_max_window_bits: 15,
            }),
            Some(bits @ 8..=15) => Some(DeflateParams {
                server_max_window_bits: bits,
            }),
            Some(_) => None,
        }
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response: always
    /// both no-context-takeover parameters (the memory bound), and the
    /// client's `server_max_window_bits` when it asked for a limit (which
    /// RFC 7692 7.1.2.1 requires the answer to repeat).
    pub fn response_header(&self) -> String {
        let mut value = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if self.server_max_window_bits < 15 {
            value.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        value
    }

    /// Whether a message of `payload_len` bytes, compressed on its own, fits
    /// the client's window: it refers at most `payload_len - 1` bytes back.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.server_max_window_bits >= 15 || payload_len <= 1 << self.server_max_window_bits
    }
}

/// The frame to queue for a peer: compressed (RSV1) when the peer
/// negotiated deflate, the frame is a text or binary frame that shrinks, and
/// it fits the peer's window; the plain frame (a reference count) otherwise.
///
/// Encode once: a fan-out pushes the same `Bytes` to every member in turn,
/// so each thread remembers the last frame it compressed (by address, while
/// holding a reference, so the address cannot be reused) and hands every
/// deflate member the same compressed bytes. The room needs no state for
/// it, and plain members keep getting the plain frame. Large frames too:
/// compressing a 1 MiB message once per member, on the worker and under the
/// room's lock, cost seconds for a room of hundreds of browsers; keeping
/// the last one alive costs one message and its compressed copy per thread.
pub fn frame_for(frame: &Bytes, peer: Option<DeflateParams>) -> Bytes {
    let Some(peer) = peer else {
        return frame.clone();
    };
    let Some((_, start)) = data_frame_parts(frame) else {
        return frame.clone();
    };
    let payload_len = frame.len() - start;
    if payload_len < MIN_COMPRESS || !peer.fits(payload_len) {
        return frame.clone();
    }
    LAST_COMPRESSED.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return compress_frame(frame).unwrap_or_else(|| frame.clone());
        };
        let compressed = match last.as_ref() {
            Some((source, compressed)) if source.as_ptr() == frame.as_ptr() && source.len() == frame.len() => {
                compressed.clone()
            }
            _ => {
                let compressed = compress_frame(frame);
                *last = Some((frame.clone(), compressed.clone()));
                compressed
            }
        };
        compressed.unwrap_or_else(|| frame.clone())
    })
}

/// The opcode and payload offset of one of our own unfragmented,
/// uncompressed text or binary frames; `None` for anything else.
fn data_frame_parts(frame: &[u8]) -> Option<(OpCode, usize)> {
    let first = *frame.first()?;
    if first & 0xF0 != 0x80 {
        return None;
    }
    let opcode = OpCode::from_u8(first & 0x0F)?;
    if !matches!(opcode, OpCode::Text | OpCode::Binary) {
        return None;
    }
    let start = match frame.get(1)? & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame.len() >= start).then_some((opcode, start))
}

/// Compresses one server frame's payload into a new frame with RSV1 set, or
/// `None` when that would not make it smaller.
fn compress_frame(frame: &[u8]) -> Option<Bytes> {
    let (opcode, start) = data_frame_parts(frame)?;
    let payload = &frame[start..];
    if payload.len() < MIN_COMPRESS {
        return None;
    }
    let mut out = with_compressor(|compressor| deflate_into(compressor, payload))?;
    let compressed_len = out.len() - MAX_SERVER_HEADER;
    let mut space = [0u8; MAX_SERVER_HEADER];
    let used = write_header_right_aligned(&mut space, opcode, compressed_len);
    space[MAX_SERVER_HEADER - used] |= RSV1;
    out[..MAX_SERVER_HEADER].copy_from_slice(&space);
    Some(Bytes::from(out).slice(MAX_SERVER_HEADER - used..))
}

/// Deflates `payload` behind a `MAX_SERVER_HEADER` gap, ending with a sync
/// flush whose 4-byte tail is stripped; `None` if the result would not be
/// shorter than the payload (the output buffer never grows past that).
fn deflate_into(compressor: &mut Compress, payload: &[u8]) -> Option<Vec<u8>> {
    let capacity = MAX_SERVER_HEADER + payload.len() + SYNC_TAIL.len();
    let mut out = Vec::with_capacity(capacity);
    out.resize(MAX_SERVER_HEADER, 0);
    let start_in = compressor.total_in();
    loop {
        let consumed = (compressor.total_in() - start_in) as usize;
        let before = (consumed, out.len());
        compressor
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .ok()?;
        let consumed = (compressor.total_in() - start_in) as usize;
        if consumed == payload.len() && out.len() < out.capacity() {
            break;
        }
        if out.len() == out.capacity() || (consumed, out.len()) == before {
            // Full without being done: no smaller than the payload.
            return None;
        }
    }
    if !out.ends_with(&SYNC_TAIL) {
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    (out.len() - MAX_SERVER_HEADER < payload.len()).then_some(out)
}

/// Inflates one message's compressed payload into a buffer that starts with
/// a `MAX_SERVER_HEADER` gap (the decoder's layout).
///
/// Zip-bomb safe: the buffer grows by doubling and never past `max + 1`
/// payload bytes; the moment the output passes `max`, inflation stops with
/// 1009. Corrupt data fails with 1007.
pub(crate) fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
    with_decompressor(|decompressor| inflate_with(decompressor, compressed, max))
}

fn inflate_with(decompressor: &mut Decompress, compressed: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
    let too_big = ProtocolError {
        code: CloseCode::MessageTooBig,
        reason: "message too big",
    };
    let corrupt = ProtocolError {
        code: CloseCode::InvalidPayload,
        reason: "invalid compressed data",
    };
    let limit = max.saturating_add(1);
    let first = compressed.len().saturating_mul(4).clamp(256, 64 * 1024).min(limit);
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER + first);
    out.resize(MAX_SERVER_HEADER, 0);
    'inputs: for input in [compressed, &SYNC_TAIL[..]] {
        let mut rest = input;
        loop {
            if out.len() == out.capacity() {
                let have = out.len() - MAX_SERVER_HEADER;
                if have > max {
                    return Err(too_big);
                }
                let want = have.saturating_mul(2).clamp(1, limit);
                out.reserve_exact(want - have);
            }
            let before = (decompressor.total_in(), out.len());
            let status = decompressor
                .decompress_vec(rest, &mut out, FlushDecompress::None)
                .map_err(|_| corrupt.clone())?;
            let used = (decompressor.total_in() - before.0) as usize;
            rest = &rest[used..];
            if out.len() - MAX_SERVER_HEADER > max {
                return Err(too_big);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the message's data.
                break 'inputs;
            }
            let room = out.len() < out.capacity();
            if rest.is_empty() && room {
                break;
            }
            if room && used == 0 && out.len() == before.1 {
                return Err(corrupt);
            }
        }
    }
    Ok(out)
}

/// Live zlib states (compressors and decompressors) in the process.
static LIVE_STATES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COMPRESSOR: RefCell<Option<Counted<Compress>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Counted<Decompress>>> = const { RefCell::new(None) };
    static THREAD_STATES: Cell<usize> = const { Cell::new(0) };
    /// The last frame compressed on this thread and its result (`None`:
    /// not worth it), so a fan-out compresses once.
    static LAST_COMPRESSED: RefCell<Option<(Bytes, Option<Bytes>)>> = const { RefCell::new(None) };
}

/// Live zlib states in the whole process: at most two per thread that ever
/// (de)compressed a message, whatever the number of connections.
pub fn live_zlib_states() -> usize {
    LIVE_STATES.load(Ordering::Relaxed)
}

/// Live zlib states owned by the calling thread: 0, 1 or 2. A test on a
/// current-thread runtime sees exactly its server's states here.
pub fn zlib_states_on_this_thread() -> usize {
    THREAD_STATES.with(Cell::get)
}

/// A zlib state that counts itself, so tests can check the memory bound.
struct Counted<T>(T);

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        LIVE_STATES.fetch_add(1, Ordering::Relaxed);
        THREAD_STATES.with(|n| n.set(n.get() + 1));
        Counted(inner)
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        LIVE_STATES.fetch_sub(1, Ordering::Relaxed);
        // The thread-local may already be gone while the thread exits.
        let _ = THREAD_STATES.try_with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Runs `f` with this thread's compressor (made on first use), and resets
/// it afterwards: no context is taken over to the next message.
fn with_compressor<R>(f: impl FnOnce(&mut Compress) -> R) -> R {
    COMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            // Level 1: a broadcast server pays for every message it sends;
            // the fast level keeps most of the gain for a fraction of the CPU.
            let state = slot.get_or_insert_with(|| Counted::new(Compress::new(Compression::fast(), false)));
            let result = f(&mut state.0);
            state.0.reset();
            result
        }
        // Not reentrant in practice; a fresh state keeps it correct anyway.
        Err(_) => f(&mut Compress::new(Compression::fast(), false)),
    })
}

/// Runs `f` with this thread's decompressor, reset afterwards.
fn with_decompressor<R>(f: impl FnOnce(&mut Decompress) -> R) -> R {
    DECOMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let state = slot.get_or_insert_with(|| Counted::new(Decompress::new(false)));
            let result = f(&mut state.0);
            state.0.reset(false);
            result
        }
        Err(_) => f(&mut Decompress::new(false)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::encode_frame;

    /// What a client sends: raw deflate, sync flush, tail stripped.
    pub(crate) fn client_deflate(payload: &[u8]) -> Vec<u8> {
        let mut compressor = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(payload.len() + 64);
        loop {
            let consumed = compressor.total_in() as usize;
            compressor
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .unwrap();
            if compressor.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn payload_of(frame: &[u8]) -> &[u8] {
        let start = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &frame[start..]
    }

    #[test]
    fn compressed_frames_have_rsv1_and_inflate_back() {
        let text = "the quick brown fox jumps over the lazy dog; ".repeat(100);
        let plain = encode_frame(OpCode::Text, text.as_bytes());
        let frame = frame_for(&plain, DeflateParams::new(None));
        assert_eq!(frame[0], 0x80 | RSV1 | 0x1);
        assert!(frame.len() < plain.len() / 4, "{} bytes", frame.len());
        let inflated = inflate(payload_of(&frame), 1 << 20).unwrap();
        assert_eq!(&inflated[MAX_SERVER_HEADER..], text.as_bytes());
    }

    #[test]
    fn plain_frames_for_plain_peers_small_payloads_and_control_frames() {
        let text = "abc".repeat(1000);
        let plain = encode_frame(OpCode::Text, text.as_bytes());
        assert_eq!(frame_for(&plain, None), plain);
        let small = encode_frame(OpCode::Text, b"hello");
        assert_eq!(frame_for(&small, DeflateParams::new(None)), small);
        let ping = encode_frame(OpCode::Ping, &[b'a'; 100]);
        assert_eq!(frame_for(&ping, DeflateParams::new(None)), ping);
    }

    #[test]
    fn incompressible_payloads_stay_plain() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let plain = encode_frame(OpCode::Binary, &noise);
        assert_eq!(frame_for(&plain, DeflateParams::new(None)), plain);
    }

    #[test]
    fn a_small_server_window_limits_which_messages_are_compressed() {
        let params = DeflateParams::new(Some(9)).unwrap();
        assert!(params.fits(512) && !params.fits(513));
        let short = encode_frame(OpCode::Text, "ab".repeat(200).as_bytes());
        let long = encode_frame(OpCode::Text, "ab".repeat(300).as_bytes());
        assert_ne!(frame_for(&short, Some(params))[0] & RSV1, 0);
        assert_eq!(frame_for(&long, Some(params)), long);
        assert!(DeflateParams::new(Some(7)).is_none());
        assert_eq!(
            params.response_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"
        );
    }

    #[test]
    fn a_broadcast_compresses_once_and_shares_the_bytes() {
        // A large message too: compressing 1 MiB once per member cost
        // seconds for a room of browsers.
        let big = encode_frame(OpCode::Text, &[b'a'; 1 << 20]);
        let first = frame_for(&big, DeflateParams::new(None));
        assert_eq!(frame_for(&big, DeflateParams::new(None)).as_ptr(), first.as_ptr());
        let plain = encode_frame(OpCode::Binary, &[7u8; 10_000]);
        let a = frame_for(&plain, DeflateParams::new(None));
        let b = frame_for(&plain, DeflateParams::new(Some(14)));
        assert_ne!(a[0] & RSV1, 0);
        assert_eq!(a.as_ptr(), b.as_ptr(), "one compressed buffer, shared");
        assert_eq!(frame_for(&plain, None).as_ptr(), plain.as_ptr());
        // Equal bytes elsewhere are another frame: compressed anew.
        let copy = Bytes::copy_from_slice(&plain);
        assert_ne!(frame_for(&copy, DeflateParams::new(None)).as_ptr(), a.as_ptr());
    }

    #[test]
    fn inflates_what_a_client_compressed() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8 * 31).collect();
        let inflated = inflate(&client_deflate(&data), 1 << 20).unwrap();
        assert_eq!(&inflated[MAX_SERVER_HEADER..], &data[..]);
        let empty = inflate(&client_deflate(b""), 16).unwrap();
        assert_eq!(empty.len(), MAX_SERVER_HEADER);
    }

    #[test]
    fn zip_bomb_stops_at_the_limit_without_a_big_allocation() {
        let max = 64 * 1024;
        // 64 MiB of zeros deflate to about 64 KiB.
        let bomb = client_deflate(&vec![0u8; 64 << 20]);
        let mut decompressor = Decompress::new(false);
        let error = inflate_with(&mut decompressor, &bomb, max).unwrap_err();
        assert_eq!(error.code, CloseCode::MessageTooBig);
        assert!(
            decompressor.total_out() <= (max as u64 + 1),
            "inflated {} bytes",
            decompressor.total_out()
        );
        assert!((decompressor.total_in() as usize) < bomb.len() / 100, "stopped early");
        // Exactly at the limit is fine.
        let at_limit = client_deflate(&vec![1u8; max]);
        assert_eq!(inflate(&at_limit, max).unwrap().len(), MAX_SERVER_HEADER + max);
    }

    #[test]
    fn corrupt_data_fails_with_1007_and_leaves_the_state_reusable() {
        let error = inflate(&[0xff, 0xff, 0xff, 0xff, 0xff], 1024).unwrap_err();
        assert_eq!(error.code, CloseCode::InvalidPayload);
        let inflated = inflate(&client_deflate(b"still works"), 1024).unwrap();
        assert_eq!(&inflated[MAX_SERVER_HEADER..], b"still works");
    }

    #[test]
    fn states_are_per_thread_not_per_message() {
        std::thread::spawn(|| {
            assert_eq!(zlib_states_on_this_thread(), 0);
            for i in 0..50 {
                let text = format!("message {i} ").repeat(20);
                let frame = frame_for(&encode_frame(OpCode::Text, text.as_bytes()), DeflateParams::new(None));
                inflate(payload_of(&frame), 1 << 16).unwrap();
            }
            assert_eq!(zlib_states_on_this_thread(), 2);
        })
        .join()
        .unwrap();
    }
}
