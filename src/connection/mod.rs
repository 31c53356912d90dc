//! One WebSocket connection: reading, writing, keepalive and closing, in a
//! single task.
//!
//! One task per connection (not a reader and a writer) halves the task cost
//! and needs no split or lock around the socket: the task's `poll` reads
//! whatever arrived, queues what that produced, writes what is queued, and
//! checks its deadlines, until the socket and the outbox have nothing more.
//!
//! # Layout
//! - the outbox, the bounded outbound queue the hub pushes into, is the
//!   hub's ([`crate::hub::Outbox`]): re-exported here with [`Timeouts`].
//! - `keepalive`: the ping, read, write and close deadlines on one timer.
//! - `handler`: what the connection asks of its service ([`Handler`]);
//!   the services themselves (echo, chat, `wshub.v1`) are the `service`
//!   module's, which the connection does not know.
//! - `driver`: the poll loop over socket, outbox and timer: the I/O around
//!   the protocol's [`Session`](crate::protocol::Session), which decides
//!   the closing handshake and how the connection ended.
//! - `task`: the connection's life as one exactly sized future.
//! - `transport`: what frames are written through ([`Transport`]): a plain
//!   socket sends a lone frame without the vectored write's file layer.

mod driver;
mod handler;
mod keepalive;
mod task;
mod transport;

pub use crate::hub::{CloseRequest, Outbox, Timeouts};
pub use driver::Setup;
pub use handler::{GiveUp, Handler};
pub use task::{ConnectionTask, Farewell};
pub use transport::Transport;
