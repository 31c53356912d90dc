//! Pusher socket ids: how a client names its own connection to the HTTP
//! API (`socket_id`, to be left out of an event) and in the signatures its
//! backend makes for it.
//!
//! An id is the connection's sealed name ([`crate::hub::sealed`]) written as
//! two numbers: the server turns it back into the connection's number
//! without a table, and only the node that made it can.

use crate::hub::sealed;
use crate::protocol::pusher::SocketId;

/// The socket id of connection `conn`.
pub fn of(conn: u64) -> SocketId {
    let mixed = sealed::seal(conn);
    SocketId::new(mixed >> 32, mixed & 0xffff_ffff)
}

/// The connection's sealed name that `id` writes (see [`sealed`]), if it is
/// one: any node can carry it, only its own opens it.
pub fn sealed_name(id: SocketId) -> Option<u64> {
    if id.first > u64::from(u32::MAX) || id.second > u64::from(u32::MAX) {
        return None;
    }
    Some((id.first << 32) | id.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection `id` names here, as a node opens an exclusion.
    fn connection(id: SocketId) -> Option<u64> {
        sealed::open(sealed_name(id)?)
    }

    #[test]
    fn an_id_turns_back_into_its_connection() {
        for conn in [8, 16, 0x7f12_3456_7890] {
            let id = of(conn);
            let text = id.to_string();
            assert_eq!(text.parse::<SocketId>(), Ok(id), "{text}");
            assert_eq!(connection(id), Some(conn), "{text}");
        }
        assert_ne!(of(8).first, of(16).first, "neighbours look unrelated");
        assert_eq!(connection(SocketId::new(1 << 40, 1)), None);
    }
}
