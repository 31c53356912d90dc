//! What a connection asks of the service behind it: the seam between the
//! socket's I/O and what its messages mean.
//!
//! The driver is generic over it (not a trait object): the service lives
//! inline in the connection's task, so an echo connection pays nothing for
//! the chat services' state and no connection pays a pointer and an
//! allocation for the indirection.

use crate::hub::Outbox;
use crate::protocol::{Endpoint, Message};

/// Why a service gave up on its client: close with 1008 and this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUp(pub &'static str);

/// What a connection does with the messages it receives.
pub trait Handler {
    /// The endpoint the connection's metrics and log lines name.
    fn endpoint(&self) -> Endpoint;

    /// Whether a connection over its rate is slowed down (its reads pause
    /// until its buckets refill, TCP slowing the sender) rather than having
    /// its messages dropped and answered with [`Handler::rate_limited`]: a
    /// client that cannot be told must be throttled.
    fn throttles(&self) -> bool;

    /// Handles one message the protocol and the rate limits let through;
    /// replies go into `outbox`, the connection's own.
    ///
    /// # Errors
    /// [`GiveUp`] when the client should be closed with 1008.
    fn on_message(&mut self, message: &Message, outbox: &Outbox) -> Result<(), GiveUp>;

    /// Tells the client that `message` was over its rate and dropped; only
    /// called for a service that does not throttle.
    fn rate_limited(&mut self, _message: &Message) {}

    /// Sends more of a replay being paced out, once the connection has
    /// written out what it had queued; true while some replay is not over.
    fn continue_replays(&mut self) -> bool {
        false
    }
}
