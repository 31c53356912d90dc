//! The services a WebSocket path offers: what a connection does with the
//! messages it receives.
//!
//! The connection (socket, protocol, deadlines) knows only the
//! [`Handler`] trait; the services know the hub. So the layers run
//! protocol <- connection <- service -> hub, with no way back.
//!
//! # Layout
//! - `echo`: `GET /echo`.
//! - `chat`: the seed's raw chat on `GET /ws`.
//! - `v1`: the `wshub.v1` JSON subprotocol on `GET /ws`.
//! - `pusher/`: the Pusher Channels protocol on `GET /app/{key}`.

pub mod chat;
pub mod echo;
pub mod pusher;
pub mod v1;

pub use chat::RawChat;
pub use echo::Echo;
pub use v1::{ChatLimits, Identity, V1Session};

use crate::connection::{GiveUp, Handler};
use crate::hub::Outbox;
use crate::protocol::{Endpoint, Message};

/// The service of one connection, chosen at the upgrade.
///
/// An enum rather than a boxed trait object: the connection's task holds
/// it inline, sized by its largest variant (a room membership; the
/// `wshub.v1` session, which is larger, is boxed).
#[derive(Debug)]
pub enum Service {
    /// `GET /echo`.
    Echo(Echo),
    /// The seed's raw chat.
    Chat(RawChat),
    /// The `wshub.v1` JSON subprotocol.
    V1(Box<V1Session>),
    /// The Pusher Channels protocol.
    Pusher(Box<pusher::PusherSession>),
    /// A connection told why it cannot start, its close already asked
    /// for: what it sends meanwhile is ignored.
    Closing(Endpoint),
}

impl Handler for Service {
    fn endpoint(&self) -> Endpoint {
        match self {
            Service::Echo(echo) => echo.endpoint(),
            Service::Chat(chat) => chat.endpoint(),
            Service::V1(session) => Handler::endpoint(&**session),
            Service::Pusher(session) => Handler::endpoint(&**session),
            Service::Closing(endpoint) => *endpoint,
        }
    }

    fn throttles(&self) -> bool {
        match self {
            Service::Echo(echo) => echo.throttles(),
            Service::Chat(chat) => chat.throttles(),
            Service::V1(session) => session.throttles(),
            Service::Pusher(session) => session.throttles(),
            Service::Closing(_) => true,
        }
    }

    fn on_message(&mut self, message: &Message, outbox: &Outbox) -> Result<(), GiveUp> {
        match self {
            Service::Echo(echo) => echo.on_message(message, outbox),
            Service::Chat(chat) => chat.on_message(message, outbox),
            Service::V1(session) => Handler::on_message(&mut **session, message, outbox),
            Service::Pusher(session) => Handler::on_message(&mut **session, message, outbox),
            Service::Closing(_) => Ok(()),
        }
    }

    fn rate_limited(&mut self, message: &Message) {
        match self {
            Service::Echo(echo) => echo.rate_limited(message),
            Service::Chat(chat) => chat.rate_limited(message),
            Service::V1(session) => Handler::rate_limited(&mut **session, message),
            Service::Pusher(session) => Handler::rate_limited(&mut **session, message),
            Service::Closing(_) => {}
        }
    }

    fn continue_replays(&mut self) -> bool {
        match self {
            Service::Echo(echo) => echo.continue_replays(),
            Service::Chat(chat) => chat.continue_replays(),
            Service::V1(session) => Handler::continue_replays(&mut **session),
            Service::Pusher(session) => Handler::continue_replays(&mut **session),
            Service::Closing(_) => false,
        }
    }
}
