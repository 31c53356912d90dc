//! One WebSocket connection: reading, writing, keepalive and closing, in a
//! single task.
//!
//! One task per connection (not a reader and a writer) halves the task cost
//! and needs no split or lock around the socket: the task's `poll` reads
//! whatever arrived, queues what that produced, writes what is queued, and
//! checks its deadlines, until the socket and the outbox have nothing more.
//!
//! # Layout
//! - `outbox`: the bounded outbound queue the hub pushes into.
//! - `keepalive`: the ping, read, write and close deadlines on one timer.
//! - `driver`: the poll loop over socket, outbox and timer: the I/O around
//!   the protocol's [`Session`](crate::protocol::Session), which decides
//!   the closing handshake and how the connection ended.
//! - `task`: the connection's life as one exactly sized future.

mod driver;
mod keepalive;
mod outbox;
mod task;

pub use crate::protocol::Ending;
pub use driver::{Service, Setup};
pub use keepalive::Timeouts;
pub use outbox::{CloseRequest, Outbox, Rejected};
pub use task::{ConnectionTask, Farewell};
