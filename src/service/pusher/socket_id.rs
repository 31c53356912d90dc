//! Pusher socket ids: how a client names its own connection to the HTTP
//! API (`socket_id`, to be left out of an event) and in the signatures its
//! backend makes for it.
//!
//! An id is the connection's number (what the hub's events skip a member
//! by) put through a keyed, invertible mix: it says nothing about the
//! process's memory, a client cannot guess another connection's id from its
//! own, and the server turns it back into the number without a table.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use crate::protocol::pusher::SocketId;

fn key() -> u64 {
    static KEY: OnceLock<u64> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        hasher.finish()
    })
}

/// The socket id of connection `conn`.
pub fn of(conn: u64) -> SocketId {
    let mixed = scramble(conn ^ key());
    SocketId::new(mixed >> 32, mixed & 0xffff_ffff)
}

/// The connection `id` names, if it is of this process's making (another
/// node's ids name no connection here).
pub fn connection(id: SocketId) -> Option<u64> {
    if id.first > u64::from(u32::MAX) || id.second > u64::from(u32::MAX) {
        return None;
    }
    Some(unscramble((id.first << 32) | id.second) ^ key())
}

/// An invertible mix (the splitmix64 finalizer, each step undone by
/// [`unscramble`]): neighbouring connections get unrelated ids.
fn scramble(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unscramble(mut x: u64) -> u64 {
    x = undo_shift(x, 31);
    x = x.wrapping_mul(inverse(0x94d0_49bb_1331_11eb));
    x = undo_shift(x, 27);
    x = x.wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9));
    undo_shift(x, 30)
}

/// Undoes `x ^= x >> shift`: each round recovers `shift` more bits.
fn undo_shift(x: u64, shift: u32) -> u64 {
    let mut y = x;
    let mut known = shift;
    while known < 64 {
        y = x ^ (y >> shift);
        known += shift;
    }
    y
}

/// The inverse of an odd number modulo 2^64 (Newton's iteration).
fn inverse(a: u64) -> u64 {
    let mut x = a;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_turns_back_into_its_connection() {
        for conn in [0, 1, 2, 0x7f00_1234_5678, u64::MAX, 0x5555_5555_5555_5555] {
            let id = of(conn);
            let text = id.to_string();
            assert_eq!(text.parse::<SocketId>(), Ok(id), "{text}");
            assert_eq!(connection(id), Some(conn), "{text}");
        }
        assert_ne!(of(1).first, of(2).first, "neighbours look unrelated");
        assert_eq!(connection(SocketId::new(1 << 40, 1)), None);
    }
}
