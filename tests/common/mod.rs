//! Helpers shared by the integration tests: a server on 127.0.0.1:0, a
//! WebSocket client (tokio-tungstenite), and a raw client that can send
//! frames no well-behaved library would.
#![allow(dead_code)]

pub mod cluster;
pub mod pusher;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wshub::{Config, Server, ServerError};

/// A test client.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound for things that happen at once on loopback; only there
/// so that a broken server fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running server and the means to stop it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: wshub::Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task").expect("server run");
    }
}

/// The seed's defaults, bound to a free loopback port, with history in
/// memory (tests that need SQLite give a file of their own); shutdown waits
/// 2 s rather than 5 s for clients the tests leave unanswered. Rate limits
/// are off: many tests send far more than a person would (tests/rate_limit.rs
/// turns them on). One worker: everything on the test's runtime, so that a
/// paused clock drives the server too (tests/workers.rs asks for more).
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.workers = 1;
    config.rate = wshub::ratelimit::RateLimits::UNLIMITED;
    config.history.backend = wshub::history::Backend::Memory;
    config.bind = "127.0.0.1".parse().unwrap();
    config.port = 0;
    config.shutdown_timeout = std::time::Duration::from_secs(2);
    config
}

/// The wshub binary, without the `WSHUB_*` and `RUST_LOG` variables of the
/// environment: a test chooses every setting itself.
pub fn wshub_command() -> std::process::Command {
    without_wshub_env(std::process::Command::new(env!("CARGO_BIN_EXE_wshub")))
}

/// `command` (the binary, or a wrapper that runs it) without the `WSHUB_*`
/// and `RUST_LOG` variables of the environment.
pub fn without_wshub_env(mut command: std::process::Command) -> std::process::Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSHUB_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

pub async fn start_server() -> TestServer {
    start_server_with(test_config()).await
}

pub async fn start_server_with(config: Config) -> TestServer {
    start(Server::bind(config).await.expect("bind"))
}

/// Starts a server already bound (and set up by the test).
pub fn start(server: Server) -> TestServer {
    let addr = server.local_addr();
    let hub = server.hub().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        hub,
        stop: Some(stop),
        task,
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    client
}

/// Connects with an `Origin` header; returns the HTTP status on refusal.
pub async fn connect_with_origin(url: &str, origin: &str) -> Result<Client, u16> {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((client, _)) => Ok(client),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

/// The next data message, skipping control frames.
pub async fn next_message(client: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("no error");
        if message.is_text() || message.is_binary() || message.is_close() {
            return message;
        }
    }
}

/// Reads until the server's close frame; returns its code.
pub async fn expect_close(client: &mut Client) -> u16 {
    loop {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.expect("send");
}

/// Waits until the hub counts `n` live connections.
pub async fn wait_for_connections(hub: &wshub::Hub, n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while hub.connection_count() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected {n} connections, have {}", hub.connection_count()));
}

/// A client speaking raw frames: it can send what libraries refuse to.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> RawClient {
        Self::connect_with_headers(addr, path, "").await.0
    }

    /// Connects offering `Sec-WebSocket-Extensions: {extensions}`; returns
    /// the client and the extensions header of the 101 response, if any.
    pub async fn connect_with_extensions(
        addr: SocketAddr,
        path: &str,
        extensions: &str,
    ) -> (RawClient, Option<String>) {
        Self::connect_with_headers(addr, path, &format!("Sec-WebSocket-Extensions: {extensions}\r\n")).await
    }

    /// Connects with `extra_headers` (each line ending in CRLF) in the
    /// upgrade request; returns the client and the extensions header of the
    /// 101 response, if any.
    pub async fn connect_with_headers(
        addr: SocketAddr,
        path: &str,
        extra_headers: &str,
    ) -> (RawClient, Option<String>) {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "server closed during handshake");
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "handshake refused: {head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong accept key: {head}"
        );
        let extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        buffer.drain(..head_end);
        (RawClient { stream, buffer }, extensions)
    }

    /// Encodes a masked client frame.
    pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("raw write");
    }

    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&Self::frame(fin, opcode, payload)).await;
    }

    /// The next frame from the server, or None at EOF.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a close frame; returns its code (None at EOF).
    pub async fn read_close(&mut self) -> Option<u16> {
        tokio::time::timeout(PATIENCE, async {
            while let Some(frame) = self.read_frame().await {
                if frame.opcode == 8 {
                    return frame.close_code();
                }
            }
            None
        })
        .await
        .expect("close frame in time")
    }

    /// True if the server ended the TCP connection (EOF or reset).
    pub async fn is_closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    Some((
        RawFrame {
            fin: buf[0] & 0x80 != 0,
            rsv1: buf[0] & 0x40 != 0,
            opcode: buf[0] & 0x0F,
            payload,
        },
        at,
    ))
}

/// A `wshub.v1` client speaking the library's own frame types.
pub struct ChatClient {
    pub ws: Client,
}

impl ChatClient {
    pub async fn connect(server: &TestServer) -> ChatClient {
        Self::connect_url(&server.url("/ws")).await
    }

    pub async fn connect_url(url: &str) -> ChatClient {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            wshub::protocol::v1::SUBPROTOCOL.parse().unwrap(),
        );
        let (ws, response) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect in time")
            .expect("connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("wshub.v1")
        );
        let mut client = ChatClient { ws };
        match client.recv().await {
            ServerFrame::Welcome { .. } => {}
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        let json = serde_json::to_string(frame).unwrap();
        self.ws.send(Message::text(json)).await.expect("send");
    }

    pub async fn send_raw_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next server frame.
    pub async fn recv(&mut self) -> ServerFrame {
        match next_message(&mut self.ws).await {
            Message::Text(text) => serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad frame {text}: {e}")),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Frames until one matches; the others are returned too, in order.
    pub async fn recv_until(&mut self, mut wanted: impl FnMut(&ServerFrame) -> bool) -> Vec<ServerFrame> {
        let mut seen = Vec::new();
        loop {
            let frame = self.recv().await;
            let done = wanted(&frame);
            seen.push(frame);
            if done {
                return seen;
            }
        }
    }

    /// Joins and returns the replayed history (all `history` frames) and the
    /// presence snapshot that follows them.
    pub async fn join(&mut self, room: &str, since: Option<u64>) -> (Vec<ChatMessage>, ServerFrame) {
        self.send(&ClientFrame::Join {
            room: room.into(),
            since,
        })
        .await;
        let mut messages = Vec::new();
        loop {
            match self.recv().await {
                ServerFrame::History { messages: batch, .. } => messages.extend(batch),
                presence @ ServerFrame::Presence { .. } => return (messages, presence),
                ServerFrame::Error {
                    code: ErrorCode::HistoryTruncated,
                    ..
                } => {}
                other => panic!("unexpected frame while joining: {other:?}"),
            }
        }
    }

    pub async fn say(&mut self, room: &str, text: &str) {
        self.send(&ClientFrame::Send {
            room: room.into(),
            text: text.into(),
            client_ref: None,
        })
        .await;
    }

    /// The next `message` frame, skipping presence events.
    pub async fn next_chat(&mut self) -> (String, ChatMessage) {
        loop {
            match self.recv().await {
                ServerFrame::Message { room, message, .. } => return (room, message),
                ServerFrame::Joined { .. } | ServerFrame::Left { .. } | ServerFrame::Presence { .. } => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next error frame's code, skipping presence events.
    pub async fn next_error(&mut self) -> ErrorCode {
        loop {
            match self.recv().await {
                ServerFrame::Error { code, .. } => return code,
                ServerFrame::Joined { .. } | ServerFrame::Left { .. } | ServerFrame::Presence { .. } => {}
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }
}

pub use wshub::protocol::v1::{ChatMessage, ClientFrame, ErrorCode, ServerFrame};

/// An HTTP/1.1 answer read to its end.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lowercased (header names are
    /// case-insensitive).
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close` (and a `Host` of `addr`
/// unless `headers` has one), read to its end.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    HttpResponse {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `GET path`.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[], "").await
}
