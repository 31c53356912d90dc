//! A connection's whole life as one hand-written future.
//!
//! The task that runs a connection keeps its future's largest state for as
//! long as the connection lives, so every byte of it is per-connection
//! memory. An `async fn` chain stores locals, nested futures and a second
//! timer side by side; this struct holds exactly the connection and what
//! the close log line needs (its timer is the hub's shared alarm).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::driver::{Connection, Setup};
use super::handler::Handler;
use super::transport::Transport;
use crate::hub::Registration;
use crate::protocol::Ending;

/// What is needed to say goodbye: the registration (dropped last, after
/// the room membership) and the fields of the close log line.
#[derive(Debug)]
pub struct Farewell {
    /// The connection's slot in the hub (with its endpoint, and whether it
    /// counts against its address's limit: that count is freed when this
    /// drops, before the registration).
    pub registration: Registration,
    /// The client's address.
    pub addr: SocketAddr,
}

impl Drop for Farewell {
    fn drop(&mut self) {
        if self.registration.ip_counted() {
            self.registration.hub().per_ip().release(self.addr.ip());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    /// Shutting the socket down (bounded by the write timeout), then
    /// logging; the ending waits in the protocol session meanwhile.
    ShuttingDown,
    /// Ended without a closing handshake (shutdown ran out of time): only
    /// the log line is left.
    Aborted,
    Done,
}

/// Runs one connection to its end, shuts its socket down and logs the
/// close line (peer, endpoint, reason, code, duration).
pub struct ConnectionTask<S, H> {
    connection: Connection<S, H>,
    stage: Stage,
    farewell: Farewell,
}

impl<S, H> std::fmt::Debug for ConnectionTask<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("farewell", &self.farewell)
            .finish_non_exhaustive()
    }
}

impl<S: Transport, H: Handler> ConnectionTask<S, H> {
    /// Prepares the task; `already_read` holds bytes that came with the
    /// upgrade request.
    pub fn new(stream: S, already_read: bytes::Bytes, setup: Setup<H>, farewell: Farewell) -> Self {
        ConnectionTask {
            connection: Connection::new(stream, already_read, setup),
            stage: Stage::Running,
            farewell,
        }
    }
}

impl<S: Transport, H: Handler + Unpin> Future for ConnectionTask<S, H> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this.stage {
                Stage::Running => {
                    let ending = ready!(this.connection.poll(cx, &this.farewell.registration));
                    this.stage = if ending == Ending::Aborted {
                        Stage::Aborted
                    } else {
                        // The server closes TCP first after a close handshake
                        // (RFC 6455 7.1.1); bounded, since the peer may have
                        // stopped reading.
                        this.connection.core.shutting_down();
                        Stage::ShuttingDown
                    };
                    this.connection.core.set_ending(ending);
                }
                Stage::ShuttingDown | Stage::Aborted => {
                    if this.stage == Stage::ShuttingDown {
                        let shut = Pin::new(&mut this.connection.stream).poll_shutdown(cx).is_ready();
                        let registration = &this.farewell.registration;
                        if !shut && this.connection.core.poll_shutdown_bound(cx, registration).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    this.stage = Stage::Done;
                    let core = &this.connection.core;
                    if let Some(ending) = core.ending() {
                        log_close(&this.farewell, core.id(), core.age(), ending);
                    }
                    return Poll::Ready(());
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

fn log_close(farewell: &Farewell, id: u64, age: std::time::Duration, ending: &Ending) {
    let duration_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
    let code = ending.close_code();
    farewell
        .registration
        .hub()
        .metrics()
        .connection_closed(farewell.registration.endpoint(), ending);
    let (peer, endpoint) = (farewell.addr, farewell.registration.endpoint().as_str());
    if ending.is_routine() {
        tracing::info!(%peer, conn = id, endpoint, code, duration_ms, "connection closed: {ending}");
    } else {
        tracing::warn!(%peer, conn = id, endpoint, code, duration_ms, "connection closed: {ending}");
    }
}
