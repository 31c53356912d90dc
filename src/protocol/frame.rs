//! Opcodes, frame headers and the encoding of server frames.

use bytes::{BufMut, Bytes, BytesMut};

use super::close::CloseCode;

/// A frame's opcode (RFC 6455 section 5.2). Reserved opcodes are not
/// representable: the decoder fails the connection on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping; answered with a pong carrying the same payload.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    pub(crate) fn from_u8(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The largest header a server frame needs: 2 bytes plus an 8-byte length.
/// Server frames are never masked.
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// Writes the header of an unmasked, final server frame into the *end* of
/// `space`, returning how many bytes it used.
///
/// Right-aligned so that a message assembled behind a reserved gap can get
/// its header without moving the payload.
pub(crate) fn write_header_right_aligned(
    space: &mut [u8; MAX_SERVER_HEADER],
    opcode: OpCode,
    payload_len: usize,
) -> usize {
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = 0x80 | opcode.as_u8();
    let used = if payload_len < 126 {
        header[1] = payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    space[MAX_SERVER_HEADER - used..].copy_from_slice(&header[..used]);
    used
}

/// Encodes one final, unmasked server frame.
///
/// The result is shared as is by every recipient of a broadcast: encode once,
/// clone the `Bytes` (a reference count) per member.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut space = [0u8; MAX_SERVER_HEADER];
    let used = write_header_right_aligned(&mut space, opcode, payload.len());
    let mut frame = BytesMut::with_capacity(used + payload.len());
    frame.put_slice(&space[MAX_SERVER_HEADER - used..]);
    frame.put_slice(payload);
    frame.freeze()
}

/// Encodes a close frame; the reason is cut to fit the 125-byte control
/// payload limit, on a character boundary.
pub fn encode_close(code: CloseCode, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(OpCode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_three_length_forms() {
        assert_eq!(&encode_frame(OpCode::Text, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let medium = encode_frame(OpCode::Binary, &[7u8; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = encode_frame(OpCode::Binary, &vec![0u8; 70_000]);
        assert_eq!(&large[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = encode_close(CloseCode::PolicyViolation, &reason);
        assert_eq!(frame[1] as usize, frame.len() - 2);
        assert!(frame.len() - 2 <= 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
