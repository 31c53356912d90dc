//! What happens to rooms that something outside the hub may want to hear
//! of: a room gaining its first member or losing its last, a presence
//! user's first connection arriving or its last leaving. The Pusher service
//! turns them into webhooks; the hub only says that they happened.
//!
//! Each call is made under the hub's locks (the room map's, or the room's
//! order lock), in the room's order: an implementation must return at
//! once, never block or await (queue the news, as the webhooks do).

/// Listens to rooms' comings and goings.
pub trait RoomEvents: Send + Sync + std::fmt::Debug {
    /// `room` got its first member on this node.
    fn occupied(&self, room: &str);

    /// `room` lost its last member on this node.
    fn vacated(&self, room: &str);

    /// A presence user's first connection joined `room`.
    fn user_added(&self, room: &str, user: &str);

    /// A presence user's last connection left `room`.
    fn user_removed(&self, room: &str, user: &str);

    /// A subscriber of the cache channel `room` found nothing to replay.
    fn cache_missed(&self, room: &str);

    /// `room` now has `count` members on this node (after a join or a
    /// leave).
    fn subscription_count(&self, room: &str, count: usize);

    /// Whether `room`'s Pusher subscribers are to be told its subscription
    /// count whenever it changes (`pusher_internal:subscription_count`,
    /// which the hub sends): a setting of the room's app, not news.
    fn counts_to_subscribers(&self, room: &str) -> bool;
}

/// Nobody listens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unheard;

impl RoomEvents for Unheard {
    fn occupied(&self, _room: &str) {}

    fn vacated(&self, _room: &str) {}

    fn user_added(&self, _room: &str, _user: &str) {}

    fn user_removed(&self, _room: &str, _user: &str) {}

    fn cache_missed(&self, _room: &str) {}

    fn subscription_count(&self, _room: &str, _count: usize) {}

    fn counts_to_subscribers(&self, _room: &str) -> bool {
        false
    }
}
