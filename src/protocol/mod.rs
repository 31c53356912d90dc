//! The WebSocket wire format (RFC 6455), without any I/O.
//!
//! wshub owns its read path: the per-connection memory target (about 1 KiB for
//! an idle connection) rules out every crate that keeps a read buffer alive
//! while the peer is silent. This module is that read path's pure half: a
//! streaming [`Decoder`] that turns bytes into messages as they arrive, and
//! encoders that produce ready-to-send server frames; and a [`Session`] that
//! decides what the protocol obliges (pongs, the closing handshake) and how a
//! connection ended. The connection module feeds them from a per-thread
//! scratch buffer and does the I/O; the Autobahn TestSuite judges them.
//!
//! # Layout
//! - `budget`: the server-wide budget for bytes held by unfinished messages.
//! - `close`: close codes and the rules for which ones a peer may send.
//! - `frame`: opcodes, frame headers, and encoding of server frames.
//! - `decoder`: the streaming, validating message decoder.
//! - `deflate`: permessage-deflate (RFC 7692) without per-connection state.
//! - `session`: a connection's closing handshake, obliged replies and write
//!   queue, as a state machine that returns what the driver must do.
//! - `ending`: why a connection ended, for the close log line and metrics.
//! - `endpoint`: which service a connection uses, the label of its counts.
//! - `extensions`: `Sec-WebSocket-Extensions` negotiation.
//! - [`v1`]: the `wshub.v1` JSON subprotocol's frames.
//! - [`pusher`]: the Pusher Channels protocol's messages, names and codes.

mod budget;
mod close;
mod decoder;
mod deflate;
mod ending;
mod endpoint;
mod extensions;
mod frame;
pub mod pusher;
mod session;
pub mod v1;

pub use budget::{IncompleteBudget, OverBudget, OVER_BUDGET_REASON};
pub use close::CloseCode;
pub use decoder::{Decoder, Event, Message, MessageKind, ProtocolError};
pub use deflate::{frame_for, live_zlib_states, zlib_states_on_this_thread, DeflateParams};
pub use ending::Ending;
pub use endpoint::Endpoint;
pub use extensions::negotiate;
pub use frame::{encode_close, encode_frame, OpCode};
pub use session::{Action, Session, Timeout};
