//! `GET /echo`: every message goes back to its sender, unchanged.

use crate::connection::{GiveUp, Handler};
use crate::hub::Outbox;
use crate::protocol::{frame_for, Endpoint, Message};

/// Sends each message back to its sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// An echo client cannot be told that a message was dropped: throttled.
impl Handler for Echo {
    fn endpoint(&self) -> Endpoint {
        Endpoint::Echo
    }

    fn throttles(&self) -> bool {
        true
    }

    fn on_message(&mut self, message: &Message, outbox: &Outbox) -> Result<(), GiveUp> {
        // Over the byte bound, this connection is evicted through its
        // outbox (an answer is not held to the count bound).
        let _ = outbox.reply(frame_for(message.frame(), outbox.deflate()));
        Ok(())
    }
}
