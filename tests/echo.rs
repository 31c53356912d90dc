//! `/echo` sends every message back to its sender with the same type and
//! bytes: text, binary, empty, 1 MiB, and fragmented messages reassembled.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn text_comes_back_as_text() {
    let server = start_server().await;
    let mut client = connect(&server.url("/echo")).await;
    send_text(&mut client, "test").await;
    assert_eq!(next_message(&mut client).await, Message::text("test"));
    send_text(&mut client, "こんにちは 👋").await;
    assert_eq!(next_message(&mut client).await, Message::text("こんにちは 👋"));
    server.shutdown().await;
}

#[tokio::test]
async fn binary_and_empty_messages_keep_their_type() {
    let server = start_server().await;
    let mut client = connect(&server.url("/echo")).await;
    let bytes: Vec<u8> = (0..=255).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(bytes));
    client.send(Message::binary(Vec::new())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(Vec::new()));
    client.send(Message::text("")).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::text(""));
    server.shutdown().await;
}

#[tokio::test]
async fn a_one_mebibyte_message_at_the_limit_is_echoed() {
    let server = start_server().await;
    let mut client = connect(&server.url("/echo")).await;
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    client.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(big));
    server.shutdown().await;
}

#[tokio::test]
async fn fragmented_message_is_reassembled_with_pings_between() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    raw.send_frame(false, 1, "frag".as_bytes()).await;
    raw.send_frame(true, 9, b"keepalive").await;
    raw.send_frame(false, 0, "men".as_bytes()).await;
    raw.send_frame(true, 0, "ted ✓".as_bytes()).await;
    let pong = raw.read_frame().await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"keepalive"[..]));
    let echoed = raw.read_frame().await.unwrap();
    assert_eq!(echoed.opcode, 1);
    assert!(echoed.fin);
    assert_eq!(echoed.payload, "fragmented ✓".as_bytes());
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_messages_come_back_in_order() {
    let server = start_server().await;
    let mut client = connect(&server.url("/echo")).await;
    for i in 0..200 {
        client.feed(Message::text(format!("m{i}"))).await.unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..200 {
        assert_eq!(next_message(&mut client).await, Message::text(format!("m{i}")));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn client_close_is_answered_with_the_same_code() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    raw.send_frame(true, 8, &payload).await;
    assert_eq!(raw.read_close().await, Some(1000));
    assert!(raw.is_closed_by_server().await);
    wait_for_connections(&server.hub, 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_plain_get_is_told_to_upgrade() {
    let server = start_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(response.to_ascii_lowercase().contains("sec-websocket-version: 13"));
    server.shutdown().await;
}

/// Sends `request` as it is on a new connection; the first read of the
/// answer (a status line and headers fit in it), whatever follows.
async fn first_answer(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0; 1024];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut response))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&response[..n]).into_owned()
}

/// An upgrade the server cannot complete is refused, not answered 101 and
/// then dropped: HTTP/1.0 (hyper upgrades nothing older than 1.1) and HEAD.
#[tokio::test]
async fn an_http_1_0_or_head_upgrade_is_refused_with_426() {
    let server = start_server().await;
    let headers = "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    for (line, expected) in [
        ("GET /echo HTTP/1.0", "HTTP/1.0 426"),
        ("HEAD /echo HTTP/1.1", "HTTP/1.1 426"),
    ] {
        let response = first_answer(server.addr, &format!("{line}\r\n{headers}")).await;
        assert!(response.starts_with(expected), "{line}: {response}");
    }
    server.shutdown().await;
}

/// HTTP/1.1 requires one `Host`: an upgrade without one, or with two, is
/// a bad request (and the origin check has one Host to compare with).
#[tokio::test]
async fn an_upgrade_without_exactly_one_host_is_refused_with_400() {
    let server = start_server().await;
    let handshake = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (hosts, expected) in [
        ("", "HTTP/1.1 400"),
        ("Host: 127.0.0.1\r\nHost: evil.example\r\n", "HTTP/1.1 400"),
        ("Host: 127.0.0.1\r\n", "HTTP/1.1 101"),
    ] {
        let request = format!("GET /echo HTTP/1.1\r\n{hosts}{handshake}\r\n");
        let response = first_answer(server.addr, &request).await;
        assert!(response.starts_with(expected), "{hosts:?}: {response}");
    }
    server.shutdown().await;
}
