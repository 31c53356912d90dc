//! What every benchmark message carries: sender id, sequence number and send time, padded to
//! the requested size with a pattern that depends on the sequence number.
//!
//! Because the whole payload is a function of its [`Stamp`], a receiver can rebuild the expected
//! bytes and compare all of them: a server that corrupts, truncates or mixes up messages is caught,
//! not just one that loses them.

use crate::client::MessageKind;

/// The fields of a benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which client sent it ([`PROBE_SENDER`] for the broadcast room's sync probes).
    pub sender: u32,
    /// Per-sender sequence number, from 0.
    pub seq: u64,
    /// Send time in nanoseconds since the run's clock started.
    pub sent_ns: u64,
}

/// Sender id of the probes that check every client has joined the room before a run.
pub const PROBE_SENDER: u32 = u32::MAX;

/// Payload format: binary (little-endian header) or text (hex header, so it is valid UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Binary frames, 20-byte header.
    #[default]
    Binary,
    /// Text frames, 40-character hex header.
    Text,
}

impl Format {
    /// Smallest payload that holds a stamp.
    pub fn header_len(self) -> usize {
        match self {
            Self::Binary => 20,
            Self::Text => 40,
        }
    }

    /// The WebSocket message type used.
    pub fn kind(self) -> MessageKind {
        match self {
            Self::Binary => MessageKind::Binary,
            Self::Text => MessageKind::Text,
        }
    }
}

/// Replaces `out` with the payload for `stamp`, `size` bytes long (at least the header).
pub fn encode(out: &mut Vec<u8>, format: Format, size: usize, stamp: Stamp) {
    out.clear();
    match format {
        Format::Binary => {
            out.extend_from_slice(&stamp.sender.to_le_bytes());
            out.extend_from_slice(&stamp.seq.to_le_bytes());
            out.extend_from_slice(&stamp.sent_ns.to_le_bytes());
        }
        Format::Text => {
            push_hex(out, stamp.sender as u64, 8);
            push_hex(out, stamp.seq, 16);
            push_hex(out, stamp.sent_ns, 16);
        }
    }
    let header = out.len();
    let phase = fill_phase(stamp.seq, header);
    let mut left = size.saturating_sub(header);
    while left > 0 {
        let take = left.min(CHUNK);
        out.extend_from_slice(&PATTERN[phase..phase + take]);
        left -= take;
    }
}

/// Reads the stamp of a received payload; `None` when it is too short or not hex.
pub fn decode(format: Format, data: &[u8]) -> Option<Stamp> {
    match format {
        Format::Binary => {
            let header = data.get(..20)?;
            Some(Stamp {
                sender: u32::from_le_bytes(header[..4].try_into().ok()?),
                seq: u64::from_le_bytes(header[4..12].try_into().ok()?),
                sent_ns: u64::from_le_bytes(header[12..20].try_into().ok()?),
            })
        }
        Format::Text => {
            let header = data.get(..40)?;
            Some(Stamp {
                sender: parse_hex(&header[..8])? as u32,
                seq: parse_hex(&header[8..24])?,
                sent_ns: parse_hex(&header[24..40])?,
            })
        }
    }
}

/// True when `data` is exactly the payload [`encode`] makes for its own stamp at `size` bytes.
pub fn is_intact(format: Format, size: usize, data: &[u8]) -> bool {
    let header = format.header_len();
    let Some(stamp) = decode(format, data) else {
        return false;
    };
    let phase = fill_phase(stamp.seq, header);
    data.len() == size.max(header)
        && data[header..]
            .chunks(CHUNK)
            .all(|chunk| chunk == &PATTERN[phase..phase + chunk.len()])
}

/// The padding is `a..z` repeated, starting at a letter that depends on the sequence number (so
/// that two messages' bytes differ). It is copied and compared a chunk at a time, from
/// [`PATTERN`], rather than computed per byte: large messages are checked at memcmp speed.
const PERIOD: usize = 26;
/// A whole number of periods, so every chunk starts at the same phase.
const CHUNK: usize = PERIOD * 40;
/// `CHUNK` bytes of padding from any phase in `0..PERIOD`.
static PATTERN: [u8; CHUNK + PERIOD] = {
    let mut pattern = [0u8; CHUNK + PERIOD];
    let mut i = 0;
    while i < pattern.len() {
        pattern[i] = b'a' + (i % PERIOD) as u8;
        i += 1;
    }
    pattern
};

/// Where in the alphabet the padding after `header` bytes starts for message `seq`.
fn fill_phase(seq: u64, header: usize) -> usize {
    ((seq % PERIOD as u64) as usize + header) % PERIOD
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: usize) {
    for shift in (0..digits).rev() {
        let nibble = (value >> (shift * 4)) & 0xF;
        out.push(b"0123456789abcdef"[nibble as usize]);
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_formats() {
        let stamp = Stamp {
            sender: 7,
            seq: 0x1234_5678_9abc,
            sent_ns: 99,
        };
        for format in [Format::Binary, Format::Text] {
            let mut out = Vec::new();
            encode(&mut out, format, 64, stamp);
            assert_eq!(out.len(), 64);
            assert_eq!(decode(format, &out), Some(stamp));
            assert!(is_intact(format, 64, &out));
            if format == Format::Text {
                assert!(std::str::from_utf8(&out).is_ok());
            }
            let mut corrupt = out.clone();
            corrupt[50] ^= 1;
            assert!(!is_intact(format, 64, &corrupt));
            assert!(!is_intact(format, 64, &out[..63]));
        }
    }

    #[test]
    fn large_payloads_round_trip() {
        for size in [1039, 1040, 1041, 5000] {
            for seq in 0..30 {
                let stamp = Stamp {
                    sender: 1,
                    seq,
                    sent_ns: 0,
                };
                let mut out = Vec::new();
                encode(&mut out, Format::Binary, size, stamp);
                assert_eq!(out.len(), size);
                assert!(out[20..]
                    .windows(2)
                    .all(|w| w[1] == if w[0] == b'z' { b'a' } else { w[0] + 1 }));
                assert!(is_intact(Format::Binary, size, &out));
                let last = out.len() - 1;
                out[last] ^= 1;
                assert!(!is_intact(Format::Binary, size, &out));
            }
        }
    }

    #[test]
    fn short_sizes_keep_the_header() {
        let mut out = Vec::new();
        encode(
            &mut out,
            Format::Binary,
            4,
            Stamp {
                sender: 1,
                seq: 2,
                sent_ns: 3,
            },
        );
        assert_eq!(out.len(), 20);
        assert!(is_intact(Format::Binary, 4, &out));
    }
}
