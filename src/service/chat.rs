//! The seed's chat (`GET /ws` without `wshub.v1`): each message goes,
//! unchanged, to every member of the one room joined.

use crate::connection::{GiveUp, Handler};
use crate::hub::{Membership, Outbox};
use crate::protocol::{Endpoint, Message};

/// A raw chat connection: its membership of its room (where its `guest-N`
/// or token nickname is kept).
#[derive(Debug)]
pub struct RawChat {
    membership: Membership,
}

impl RawChat {
    /// Chats in the room `membership` is of.
    pub fn new(membership: Membership) -> Self {
        RawChat { membership }
    }
}

/// A raw client cannot be told that a message was dropped: throttled.
impl Handler for RawChat {
    fn endpoint(&self) -> Endpoint {
        Endpoint::Chat
    }

    fn throttles(&self) -> bool {
        true
    }

    fn on_message(&mut self, message: &Message, _outbox: &Outbox) -> Result<(), GiveUp> {
        self.membership.publish_raw(message);
        Ok(())
    }
}
