//! wshub: a real-time WebSocket server.
//!
//! `GET /echo` sends every message back to its sender; `GET /ws` is a chat
//! room where every message goes to every member, the sender included. The
//! server pings, enforces read and write deadlines, checks origins, speaks
//! TLS, evicts slow consumers without slowing anyone else, and shuts down
//! gracefully.
//!
//! # Layout
//! - [`config`]: flags, `WSHUB_*` variables, TOML file; the seed's defaults.
//! - [`server`]: listener, TLS, HTTP until the upgrade, shutdown.
//! - `http` (routes, the upgrade, refusals, the page, the Pusher HTTP API),
//!   `origin`: the HTTP surface.
//! - `connection`: one socket's task: read, write, keepalive, close.
//! - `service`: what a connection does with its messages: echo, the
//!   seed's raw chat, the `wshub.v1` subprotocol, Pusher Channels.
//! - [`protocol`]: the WebSocket wire format, without I/O.
//! - [`hub`]: connections, rooms and fan-out.
//!
//! The crate's public surface is what an embedder and the tests use:
//! [`Config`], [`Server`], [`Hub`] and the wire types of [`protocol`];
//! the connection, its services, the broker and the metrics stay inside.
//! - [`apps`]: Pusher apps (keys, secrets, limits, webhooks) and their
//!   signatures.
//! - [`auth`], [`ratelimit`]: tokens checked at the upgrade; message, byte
//!   and per-address limits.
//! - `broker`: what orders rooms' messages: in this process, or across
//!   nodes through Redis.
//! - `metrics`: Prometheus metrics for `GET /metrics`, one recorder per hub.
//! - [`logging`]: the binary's log output, which drops (and counts) lines
//!   rather than stall the server when nobody reads it.
//! - [`webhooks`]: signed, batched, retried POSTs to an app's backend (Pusher
//!   webhooks), never in a connection's way.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = wshub::Config::default();
//! config.port = 0;
//! let server = wshub::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations, unused_must_use)]

pub mod apps;
pub mod auth;
pub(crate) mod broker;
pub mod config;
pub(crate) mod connection;
pub mod history;
mod http;
pub mod hub;
pub mod logging;
pub(crate) mod metrics;
mod origin;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub(crate) mod service;
pub(crate) mod tls;
pub mod webhooks;

pub use config::{Cli, Config, ConfigError, LogFormat, TlsSource};
pub use hub::Hub;
pub use server::{Server, ServerError};
