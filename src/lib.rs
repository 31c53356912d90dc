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
//! - `routes`, `upgrade`, `access`, `origin`, `web`: the HTTP surface.
//! - [`connection`]: one socket's task: read, write, keepalive, close.
//! - [`service`]: what a connection does with its messages: echo, the
//!   seed's raw chat, the `wshub.v1` subprotocol.
//! - [`protocol`]: the WebSocket wire format, without I/O.
//! - [`hub`]: connections, rooms and fan-out.
//! - [`apps`]: Pusher apps (keys, secrets, limits, webhooks) and their
//!   signatures.
//! - [`auth`], [`ratelimit`]: tokens checked at the upgrade; message, byte
//!   and per-address limits.
//! - [`broker`]: rooms across nodes through Redis.
//! - [`metrics`]: Prometheus metrics for `GET /metrics`, one recorder per hub.
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
pub mod broker;
pub mod config;
pub mod connection;
pub mod history;
mod http;
pub mod hub;
pub mod logging;
pub mod metrics;
mod origin;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod tls;
pub mod webhooks;

pub use config::{Cli, Config, ConfigError, LogFormat, TlsSource};
pub use hub::Hub;
pub use server::{Server, ServerError};
