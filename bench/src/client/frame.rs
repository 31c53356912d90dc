//! WebSocket frame codec (RFC 6455 §5), without I/O.
//!
//! Kept apart from the socket so that the rules a server's frames are checked against can be read,
//! and tested, in one place. Client frames are always masked; server frames must not be.

use bytes::{Buf, Bytes, BytesMut};

/// Frame opcodes this client knows. Any other value is a protocol error from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented text or binary message.
    Continuation,
    /// A UTF-8 data frame.
    Text,
    /// A binary data frame.
    Binary,
    /// Close handshake; the payload is an optional 2-byte code and a reason.
    Close,
    /// Keepalive request: must be answered with a pong carrying the same payload.
    Ping,
    /// Keepalive answer (or an unsolicited heartbeat); ignored.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One decoded server frame.
#[derive(Debug)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// What the payload is.
    pub opcode: Opcode,
    /// Payload bytes (servers send them unmasked).
    pub payload: Bytes,
}

/// Encodes one masked client frame with `fin` set and appends it to `out`.
///
/// The payload is copied once and masked in place, eight bytes at a time: at 150k messages/s the
/// mask is on the hot path.
pub fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode.bits());
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-byte `mask` (masking and unmasking are the same operation).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Decodes one server frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is consumed then).
///
/// # Errors
/// A protocol violation by the server: reserved bits set (no extension is ever negotiated), an
/// unknown opcode, a masked frame, a fragmented or oversized control frame, a payload longer than
/// `max_payload`.
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> anyhow::Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    anyhow::ensure!(b0 & 0x70 == 0, "server frame has reserved bits set: {b0:#04x}");
    let opcode = Opcode::from_bits(b0 & 0x0F)
        .ok_or_else(|| anyhow::anyhow!("server frame has unknown opcode {:#x}", b0 & 0x0F))?;
    anyhow::ensure!(b1 & 0x80 == 0, "server frame is masked");
    let (header, len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as u64)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            anyhow::ensure!(len >> 63 == 0, "server frame length has its top bit set");
            (10, len)
        }
        short => (2, short as u64),
    };
    if opcode.is_control() {
        anyhow::ensure!(fin, "server sent a fragmented control frame");
        anyhow::ensure!(len <= 125, "server control frame is {len} bytes (max 125)");
    }
    anyhow::ensure!(
        len <= max_payload as u64,
        "server frame is {len} bytes, above the limit of {max_payload}"
    );
    let len = len as usize;
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    buf.advance(header);
    let payload = buf.split_to(len).freeze();
    Ok(Some(Frame { fin, opcode, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(b0: u8, payload: &[u8]) -> BytesMut {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        BytesMut::from(&out[..])
    }

    #[test]
    fn masking_round_trips_for_all_lengths() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, [1, 2, 3, 4]);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ [1, 2, 3, 4][i % 4]);
            }
            apply_mask(&mut masked, [1, 2, 3, 4]);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn encodes_each_length_form() {
        for (len, header) in [(5usize, 2 + 4), (200, 4 + 4), (70_000, 10 + 4)] {
            let mut out = Vec::new();
            encode(&mut out, Opcode::Binary, &vec![7u8; len], [0, 0, 0, 0]);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
        }
    }

    #[test]
    fn decodes_whole_and_partial_frames() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![9u8; len];
            let whole = server_frame(0x82, &payload);
            for cut in [1, whole.len() / 2, whole.len() - 1] {
                if cut == 0 || cut >= whole.len() {
                    continue;
                }
                let mut part = BytesMut::from(&whole[..cut]);
                assert!(decode(&mut part, 1 << 20).unwrap().is_none());
            }
            let mut buf = whole.clone();
            buf.extend_from_slice(&[0x89, 0]);
            let frame = decode(&mut buf, 1 << 20).unwrap().unwrap();
            assert!(frame.fin);
            assert_eq!(frame.opcode, Opcode::Binary);
            assert_eq!(&frame.payload[..], &payload[..]);
            let ping = decode(&mut buf, 1 << 20).unwrap().unwrap();
            assert_eq!(ping.opcode, Opcode::Ping);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let cases: [(&[u8], &str); 5] = [
            (&[0xC2, 0], "reserved"),
            (&[0x83, 0], "opcode"),
            (&[0x82, 0x80, 0, 0, 0, 0], "masked"),
            (&[0x09, 0], "fragmented control"),
            (&[0x89, 126, 0, 200], "control frame"),
        ];
        for (bytes, what) in cases {
            let mut buf = BytesMut::from(bytes);
            let err = decode(&mut buf, 1 << 20).unwrap_err().to_string();
            assert!(err.contains(what), "{err} should mention {what}");
        }
        let mut big = server_frame(0x82, &[0; 300]);
        assert!(decode(&mut big, 100).is_err());
    }
}
