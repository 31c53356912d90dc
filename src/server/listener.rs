//! The listening socket, accepting sockets that no reactor holds yet.
//!
//! Why not tokio's `TcpListener`: every socket it accepts is registered
//! with the accepting runtime's reactor (an `epoll_ctl`), and a socket
//! handed to a worker must then be taken off it again (a second one) before
//! the worker registers it with its own. That was 15 % of the accept
//! thread's CPU per connect (docs/architecture.md, "Workers"). Accepted
//! here, a socket is non-blocking and unregistered, and it is registered
//! once, where it will be served.

use std::io;
use std::net::SocketAddr;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Listen backlog: bursts of thousands of connects must not be dropped.
const LISTEN_BACKLOG: i32 = 4096;

/// A bound listener, registered with the runtime that created it.
#[derive(Debug)]
pub(crate) struct Listener {
    socket: AsyncFd<mio::net::TcpListener>,
}

impl Listener {
    /// Binds `addr` (with `SO_REUSEADDR`, so a restart need not wait for
    /// the old sockets' `TIME_WAIT`); must be called within a runtime.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener = mio::net::TcpListener::from_std(socket.into());
        // SAFETY: the listener owns its descriptor and the `AsyncFd` owns
        // the listener, so the descriptor stays open for as long as it is
        // registered (the registration goes before the listener drops).
        let socket = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) };
        Ok(Listener {
            socket: socket.map_err(|e| e.into_parts().1)?,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// The next connection: a non-blocking socket that no reactor holds.
    pub(crate) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.socket.readable().await?;
            if let Ok(accepted) = ready.try_io(|listener| listener.get_ref().accept()) {
                return accepted.map(|(stream, peer)| (stream.into(), peer));
            }
        }
    }
}
