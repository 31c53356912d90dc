//! What a connection's frames are written through: a plain TCP socket, TLS
//! over one, or whatever hyper handed back.
//!
//! A fan-out is one small write per subscriber, and most of its cost is the
//! kernel's: `perf` on a 1,000-subscriber Pusher fan-out put 84 % of the
//! server's CPU under `writev`, about 6 % of it in the file layer that
//! `writev` goes through and `send(2)` does not (`vfs_writev`, `fdget_pos`).
//! So a plain socket sends a lone frame with `send(2)`; several frames, and
//! every other transport, take the vectored write. Measured (A/B, three
//! rounds each, one core): 9-10 % more fan-out deliveries per server CPU
//! second.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

/// A stream a connection runs on.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Writes from `bufs` (frames, in order); how much was written, as
    /// [`AsyncWrite::poll_write_vectored`] says.
    fn poll_send(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, bufs)
    }
}

impl Transport for TcpStream {
    fn poll_send(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let [one] = bufs else {
            return self.poll_write_vectored(cx, bufs);
        };
        let stream = self.get_mut();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the readiness when the kernel says it would
            // block, so the next `poll_write_ready` waits for room. (A
            // closed peer is EPIPE, as for `writev`: Rust programs ignore
            // SIGPIPE.)
            match stream.try_io(Interest::WRITABLE, || socket2::SockRef::from(&*stream).send(one)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl Transport for Box<tokio_rustls::server::TlsStream<TcpStream>> {}

impl Transport for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}
