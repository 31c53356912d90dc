//! A connection's sealed name: its number put through a keyed, invertible
//! mix, which only the process that made it can open.
//!
//! Pusher's `socket_id` is this name written as two numbers, and the HTTP
//! API of any node may be handed one to leave out of an event. With
//! several nodes the name travels through the broker as it is, and every
//! node opens it with its own key: the node that made it gets the
//! connection back, the others get nothing (a connection's number is a
//! count whose `CHECK` bits are zero; another key's opening
//! keeps them zero with a chance of one in 2^19, and then must still hit a
//! live member's number), so the exclusion holds on its own node only.
//! It also says nothing about the process's memory, and a client cannot
//! guess another connection's name from its own.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// Bits that are zero in every connection number (`Outbox::number`): the
/// top 16 and the low 3.
const CHECK: u64 = 0xffff_0000_0000_0007;

/// The process's two keys: one mixed in before the scramble, one after,
/// so that a name cannot be unscrambled without them (with one alone, a
/// client could undo the public mix on its own name and guess the next
/// connection's from it, connection numbers being a count).
fn keys() -> (u64, u64) {
    static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
    *KEYS.get_or_init(|| {
        let state = std::collections::hash_map::RandomState::new();
        let key = |salt: u64| {
            let mut hasher = state.build_hasher();
            hasher.write_u64(salt);
            hasher.finish()
        };
        (key(0x5eed), key(0x5a17))
    })
}

/// The sealed name of connection `conn`.
pub fn seal(conn: u64) -> u64 {
    let (inner, outer) = keys();
    scramble(scramble(conn ^ inner) ^ outer)
}

/// The connection `sealed` names, if this process sealed it.
pub fn open(sealed: u64) -> Option<u64> {
    let (inner, outer) = keys();
    let conn = unscramble(unscramble(sealed) ^ outer) ^ inner;
    (conn & CHECK == 0).then_some(conn)
}

/// An invertible mix (the splitmix64 finalizer, each step undone by
/// [`unscramble`]): neighbouring connections get unrelated names.
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
    fn a_name_opens_to_its_connection_here_only() {
        for conn in [8, 16, 0x7f12_3456_7890, 0xffff_ffff_fff8] {
            assert_eq!(open(seal(conn)), Some(conn));
        }
        assert_ne!(seal(8) >> 32, seal(16) >> 32, "neighbours look unrelated");
        // Another process's keys: what it seals opens to nothing here.
        let foreign = |conn: u64| scramble(scramble(conn ^ 0x1234_5678_9abc_def0) ^ 0x0fed_cba9_8765_4321);
        let opened = (1..=1000).filter(|&c| open(foreign(c * 16)).is_some()).count();
        assert_eq!(opened, 0);
    }
}
