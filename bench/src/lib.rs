//! wshub-bench: a load generator for WebSocket servers.
//!
//! It drives any server that offers an echo endpoint and a chat endpoint (every message to every
//! client, the sender included), measures throughput, latency and the server's CPU and memory,
//! and checks every byte it gets back. Load only goes to loopback addresses unless the caller
//! allows otherwise ([`target`]).
//!
//! Each mode is `run(options) -> Result<Report>`, with a `Serialize` report, so that tests and the
//! `wshub-bench` binary call the same code.
//!
//! # Layout
//! - [`client`]: the minimal WebSocket client (handshake, frame codec, masked writes).
//! - [`echo`]: closed-loop echo, optionally pipelined.
//! - [`broadcast`]: fan-out in one chat room (on one server, or spread over the nodes of a
//!   cluster); loss and order checked per sender.
//! - [`conns`]: many idle connections; the server's memory per connection.
//! - [`pusher`]: the Pusher Channels modes (fan-out through the HTTP API or a client event,
//!   HTTP API publishes, idle subscribed connections), for wshub, soketi and sockudo alike.
//! - [`slow`]: stalled readers in a busy room; does the server evict them, do others suffer.
//! - [`report`]: shared report parts and the human-readable summaries.
//! - [`summary`]: turns a directory of JSON reports into a results file, a markdown table and an
//!   SVG chart (used by `scripts/bench`).
//! - [`chart`]: the SVG bar chart of a summary.
//! - [`threads`]: `--threads N`, connections spread over N single-threaded runtimes.
//! - Helpers: [`target`] (URL, loopback rule), [`connect`] (many connections at once),
//!   [`payload`] (what a message carries), [`latency`], [`procfs`] (CPU and RSS),
//!   [`progress`], [`options`], [`rng`].

#![deny(missing_docs)]

pub mod broadcast;
pub mod chart;
pub mod client;
pub mod connect;
pub mod conns;
pub mod echo;
pub mod latency;
pub mod options;
mod pacing;
pub mod payload;
pub mod procfs;
pub mod progress;
pub mod pusher;
pub mod report;
pub mod rng;
mod room;
pub mod slow;
pub mod summary;
pub mod target;
pub mod threads;

pub use broadcast::{BroadcastOptions, BroadcastReport};
pub use conns::{ConnsOptions, ConnsReport};
pub use echo::{EchoOptions, EchoReport};
pub use options::Common;
pub use payload::Format;
pub use room::{NodeStats, RoomStats};
pub use slow::{SlowOptions, SlowReport};
