//! The Pusher Channels protocol (version 7), without any I/O: the JSON
//! messages a Pusher client and server exchange over `GET /app/{key}`.
//!
//! The specification is Pusher's "Pusher Channels Protocol" page
//! (<https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol>).
//! A client sends `pusher:` events (ping, subscribe, unsubscribe, signin)
//! and `client-` events; the server answers with events whose `data` is
//! itself JSON text in a string ("double encoding") for the system events.
//! The WebSocket service parses with [`parse`], checks names and
//! signatures, and sends what [`server`] encodes.
//!
//! # Layout
//! - [`client`]: what a client sends, parsed ([`ClientMessage`]).
//! - [`server`]: what the server sends, encoded as JSON text.
//! - `names`: channel and event name rules, channel kinds from prefixes.
//! - `codes`: the error and close codes 4000-4399.
//! - `handshake`: the `protocol` the connection URL must name.
//! - `socket_id`: the `socket_id` a connection is given.

pub mod client;
mod codes;
mod handshake;
mod names;
pub mod server;
mod socket_id;

pub use client::{parse, ClientMessage, ParseError};
pub use codes::{ErrorCode, Reconnect};
pub use handshake::{check_protocol, MIN_PROTOCOL_VERSION};
pub use names::{
    check_channel, check_client_event, check_event, ChannelKind, ChannelType, NameError, CLIENT_EVENT_PREFIX,
    MAX_CHANNEL_CHARS, MAX_EVENT_CHARS, USER_CHANNEL_PREFIX,
};
pub use server::PresenceMember;
pub use socket_id::{InvalidSocketId, SocketId};

/// The protocol version this module speaks (`?protocol=7`).
pub const PROTOCOL_VERSION: u32 = 7;
