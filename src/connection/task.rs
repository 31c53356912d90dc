//! A connection's whole life as one hand-written future.
//!
//! The task that runs a connection keeps its future's largest state for as
//! long as the connection lives, so every byte of it is per-connection
//! memory. An `async fn` chain stores locals, nested futures and a second
//! timer side by side; this struct holds exactly the connection, one timer
//! and what the close log line needs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::driver::{Connection, Setup};
use super::ending::Ending;
use crate::hub::{Endpoint, Registration};

/// What is needed to say goodbye: the registration (dropped last, after
/// the room membership) and the fields of the close log line.
#[derive(Debug)]
pub struct Farewell {
    /// Whether the connection counts against its address's limit
    /// (`--max-connections-per-ip`); the count is freed when this drops,
    /// before the registration. A flag, not a guard: `addr` has the address.
    pub ip_counted: bool,
    /// The connection's slot in the hub.
    pub registration: Registration,
    /// The client's address.
    pub addr: SocketAddr,
    /// Which service it used.
    pub endpoint: Endpoint,
}

impl Drop for Farewell {
    fn drop(&mut self) {
        if self.ip_counted {
            self.registration.hub().per_ip().release(self.addr.ip());
        }
    }
}

enum Stage {
    Running,
    /// Shutting the socket down (bounded by the timer), then logging.
    ShuttingDown(Ending),
    Done,
}

pin_project! {
    /// Runs one connection to its end, shuts its socket down and logs the
    /// close line (peer, endpoint, reason, code, duration).
    pub struct ConnectionTask<S> {
        connection: Connection<S>,
        #[pin]
        timer: Sleep,
        stage: Stage,
        started: Instant,
        farewell: Farewell,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnectionTask<S> {
    /// Prepares the task; `already_read` holds bytes that came with the
    /// upgrade request.
    pub fn new(stream: S, already_read: bytes::Bytes, setup: Setup, farewell: Farewell) -> Self {
        let connection = Connection::new(stream, already_read, setup);
        let timer = tokio::time::sleep_until(connection.session.deadlines.next());
        ConnectionTask {
            connection,
            timer,
            stage: Stage::Running,
            started: Instant::now(),
            farewell,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for ConnectionTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            match this.stage {
                Stage::Running => {
                    let ending = ready!(this.connection.poll(cx, this.timer.as_mut()));
                    if ending == Ending::Aborted {
                        *this.stage = Stage::ShuttingDown(ending);
                        continue;
                    }
                    // The server closes TCP first after a close handshake
                    // (RFC 6455 7.1.1); bounded, since the peer may have
                    // stopped reading.
                    let deadline = Instant::now() + this.connection.session.deadlines.write_timeout();
                    this.timer.as_mut().reset(deadline);
                    *this.stage = Stage::ShuttingDown(ending);
                }
                Stage::ShuttingDown(ending) => {
                    if *ending != Ending::Aborted {
                        let shut = Pin::new(&mut this.connection.stream).poll_shutdown(cx).is_ready();
                        if !shut && this.timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    let Stage::ShuttingDown(ending) = std::mem::replace(this.stage, Stage::Done) else {
                        unreachable!("matched above")
                    };
                    log_close(this.farewell, this.connection.session.id(), *this.started, &ending);
                    return Poll::Ready(());
                }
                Stage::Done => return Poll::Ready(()),
            }
        }
    }
}

fn log_close(farewell: &Farewell, id: u64, started: Instant, ending: &Ending) {
    let duration_ms = started.elapsed().as_millis() as u64;
    let code = ending.close_code();
    farewell
        .registration
        .hub()
        .metrics()
        .connection_closed(farewell.endpoint, ending);
    let (peer, endpoint) = (farewell.addr, farewell.endpoint.as_str());
    if ending.is_routine() {
        tracing::info!(%peer, conn = id, endpoint, code, duration_ms, "connection closed: {ending}");
    } else {
        tracing::warn!(%peer, conn = id, endpoint, code, duration_ms, "connection closed: {ending}");
    }
}
