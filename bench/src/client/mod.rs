//! A minimal, fast WebSocket client over a tokio `TcpStream`.
//!
//! The load generator's own cost is what limits an echo benchmark (see
//! `shared/notes/building-blocks.md`: one generator core capped the servers at 140–150k
//! messages/s), so this client does as little as it can per message: frames are decoded straight
//! out of one read buffer, outgoing frames are batched into one write buffer and flushed with one
//! syscall, and masks come from a xorshift. It still checks everything a server sends (see
//! [`frame::decode`]) because the benchmarks also judge correctness.
//!
//! Reads never write: a ping's pong (and a close's echo) is queued, and goes out with the
//! caller's next [`WsConn::flush`]. That keeps [`WsConn::read_event`] cancel-safe, so it can sit in
//! a `select!` next to a timer.

pub mod frame;
pub mod handshake;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::rng::XorShift;
use crate::target::Target;
use frame::Opcode;

/// How a connection is opened and how much it may buffer.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Source address to bind before connecting (port chosen by the kernel at connect time).
    /// Spreading connections over 127.0.0.x lifts the ~28k ephemeral ports per source address.
    pub source_ip: Option<IpAddr>,
    /// `SO_RCVBUF` to set before connecting; a small one makes a client that does not read stall
    /// the server's writes quickly.
    pub recv_buffer: Option<u32>,
    /// Spare capacity kept in the read buffer before each read: large for busy connections (fewer
    /// syscalls), small for idle ones (less memory in the generator).
    pub read_chunk: usize,
    /// `Origin` header to send, if any.
    pub origin: Option<String>,
    /// Largest message accepted from the server.
    pub max_message: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            source_ip: None,
            recv_buffer: None,
            read_chunk: 16 * 1024,
            origin: None,
            max_message: 64 << 20,
        }
    }
}

/// Type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (checked on receipt).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// A whole data message from the server.
#[derive(Debug)]
pub struct Message {
    /// Text or binary.
    pub kind: MessageKind,
    /// The reassembled payload.
    pub data: Bytes,
}

/// What [`WsConn::read_event`] saw.
#[derive(Debug)]
pub enum Incoming {
    /// A data message.
    Message(Message),
    /// The server sent a close frame with this code (`None`: no code). The reply is queued.
    Closed(Option<u16>),
    /// The TCP stream ended without a close frame.
    Eof,
}

/// One client connection after a successful upgrade.
#[derive(Debug)]
pub struct WsConn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    rng: XorShift,
    read_chunk: usize,
    max_message: usize,
    /// A fragmented message being reassembled.
    partial: Option<(MessageKind, BytesMut)>,
    /// Set once a close frame was sent or received, or the stream ended.
    closed: bool,
}

/// Opens a TCP connection to `target` and performs the WebSocket upgrade.
///
/// `seed` individualises the connection's masks and key.
///
/// # Errors
/// Socket errors, and any answer other than a correct `101 Switching Protocols`.
pub async fn connect(target: &Target, opts: &ConnectOptions, seed: u64) -> anyhow::Result<WsConn> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(size) = opts.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = opts.source_ip {
        set_bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;

    let mut rng = XorShift::new(seed);
    let key = handshake::new_key(rng.bytes16());
    let request = handshake::request(&target.host_header, &target.path, &key, opts.origin.as_deref());
    stream.write_all(&request).await?;

    let mut rbuf = BytesMut::with_capacity(opts.read_chunk.max(1024));
    let head = loop {
        if let Some(len) = handshake::head_len(&rbuf) {
            break rbuf.split_to(len);
        }
        anyhow::ensure!(
            rbuf.len() < handshake::MAX_RESPONSE_HEAD,
            "upgrade response head is larger than {} bytes",
            handshake::MAX_RESPONSE_HEAD
        );
        rbuf.reserve(1024);
        if stream.read_buf(&mut rbuf).await? == 0 {
            anyhow::bail!("server closed the connection during the upgrade");
        }
    };
    handshake::check_response(&head, &key)?;
    Ok(WsConn {
        stream,
        rbuf,
        wbuf: Vec::with_capacity(256),
        rng,
        read_chunk: opts.read_chunk.max(64),
        max_message: opts.max_message,
        partial: None,
        closed: false,
    })
}

/// Lets many sockets bind the same source address: the port is picked at `connect`, per
/// destination, instead of at `bind` from one shared pool.
fn set_bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd owned by `socket`, and a pointer to a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl WsConn {
    /// Queues one data message (masked); it is sent by the next [`flush`](Self::flush).
    pub fn queue(&mut self, kind: MessageKind, payload: &[u8]) {
        let opcode = match kind {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        };
        let mask = self.rng.mask();
        frame::encode(&mut self.wbuf, opcode, payload, mask);
    }

    /// True when something is queued and not yet flushed.
    pub fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes everything queued, in one `write` when the socket takes it.
    ///
    /// # Errors
    /// Socket errors (the server went away).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads until the next data message, close frame or end of stream.
    ///
    /// Pings are answered (queued pongs) and pongs ignored on the way. Cancel-safe: all state
    /// lives in `self`, so dropping the future loses nothing.
    ///
    /// # Errors
    /// Socket errors (a reset surfaces as `io::ErrorKind::ConnectionReset`) and protocol
    /// violations by the server.
    pub async fn read_event(&mut self) -> anyhow::Result<Incoming> {
        loop {
            if let Some(event) = self.next_buffered()? {
                return Ok(event);
            }
            if self.closed {
                return Ok(Incoming::Eof);
            }
            if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk {
                self.rbuf.reserve(self.read_chunk);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                self.closed = true;
                anyhow::ensure!(
                    self.rbuf.is_empty(),
                    "stream ended inside a frame ({} bytes left)",
                    self.rbuf.len()
                );
                return Ok(Incoming::Eof);
            }
        }
    }

    /// Decodes the next event from bytes already read, without I/O.
    ///
    /// # Errors
    /// Protocol violations by the server.
    pub fn next_buffered(&mut self) -> anyhow::Result<Option<Incoming>> {
        while let Some(frame) = frame::decode(&mut self.rbuf, self.max_message)? {
            match frame.opcode {
                Opcode::Ping => {
                    let mask = self.rng.mask();
                    frame::encode(&mut self.wbuf, Opcode::Pong, &frame.payload, mask);
                }
                Opcode::Pong => {}
                Opcode::Close => return self.on_close(&frame.payload).map(Some),
                Opcode::Text | Opcode::Binary => {
                    anyhow::ensure!(
                        self.partial.is_none(),
                        "new data frame while a fragmented message is unfinished"
                    );
                    let kind = if frame.opcode == Opcode::Text {
                        MessageKind::Text
                    } else {
                        MessageKind::Binary
                    };
                    if frame.fin {
                        return finish(kind, frame.payload).map(Some);
                    }
                    self.partial = Some((kind, BytesMut::from(&frame.payload[..])));
                }
                Opcode::Continuation => {
                    let Some((kind, mut data)) = self.partial.take() else {
                        anyhow::bail!("continuation frame without a message to continue");
                    };
                    anyhow::ensure!(
                        data.len() + frame.payload.len() <= self.max_message,
                        "fragmented message exceeds {} bytes",
                        self.max_message
                    );
                    data.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return finish(kind, data.freeze()).map(Some);
                    }
                    self.partial = Some((kind, data));
                }
            }
        }
        Ok(None)
    }

    fn on_close(&mut self, payload: &[u8]) -> anyhow::Result<Incoming> {
        anyhow::ensure!(payload.len() != 1, "close frame with a 1-byte payload");
        let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        if !self.closed {
            self.closed = true;
            let reply = code.map(u16::to_be_bytes);
            let mask = self.rng.mask();
            frame::encode(
                &mut self.wbuf,
                Opcode::Close,
                reply.as_ref().map_or(&[][..], |c| &c[..]),
                mask,
            );
        }
        Ok(Incoming::Closed(code))
    }

    /// Starts the close handshake with `code` and waits (up to `wait`) for the server's close
    /// frame or end of stream. Errors are ignored: this is the end of a run.
    pub async fn close(&mut self, code: u16, wait: std::time::Duration) {
        if !self.closed {
            self.closed = true;
            let mask = self.rng.mask();
            frame::encode(&mut self.wbuf, Opcode::Close, &code.to_be_bytes(), mask);
            if self.flush().await.is_err() {
                return;
            }
            let _ = tokio::time::timeout(wait, async {
                while let Ok(true) = self.read_event_after_close().await {}
            })
            .await;
        }
    }

    /// After our close: reads and discards until the server's close frame or end of stream.
    /// Returns `Ok(true)` while it should keep reading.
    async fn read_event_after_close(&mut self) -> anyhow::Result<bool> {
        while let Some(frame) = frame::decode(&mut self.rbuf, self.max_message)? {
            if frame.opcode == Opcode::Close {
                return Ok(false);
            }
        }
        self.rbuf.reserve(self.read_chunk);
        Ok(self.stream.read_buf(&mut self.rbuf).await? > 0)
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.local_addr()
    }
}

/// Checks a finished message (text must be UTF-8).
fn finish(kind: MessageKind, data: Bytes) -> anyhow::Result<Incoming> {
    if kind == MessageKind::Text {
        anyhow::ensure!(std::str::from_utf8(&data).is_ok(), "text message is not valid UTF-8");
    }
    Ok(Incoming::Message(Message { kind, data }))
}
