//! What unfinished things can hold is bounded: a request head over 16 KiB
//! gets 431 without being read to its end, a head (or TLS handshake) not
//! finished within 5 s is dropped, and unfinished WebSocket messages share
//! one server-wide budget (`--max-incomplete-bytes`): past it, the
//! connection that would pass it is closed with 1013 while others go on,
//! and every byte comes back when messages complete or connections end.
//!
//! The timeout tests run on tokio's paused clock, which hyper's timer
//! follows: they take milliseconds and see the real 5 s schedule.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A sample of the server's `/metrics` text (`name{labels}` as rendered).
fn metric(hub: &wshub::Hub, series: &str) -> f64 {
    let text = hub.metrics().render(&hub.scrape());
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// Everything the server sends until it closes (EOF or reset).
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "still open after {PATIENCE:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Whether the server has closed `stream`, looking without waiting (a
/// millisecond of the paused clock).
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server sent bytes to an unfinished handshake"),
        Err(_) => false,
    }
}

fn upgrade_head(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}"
    )
}

#[tokio::test(start_paused = true)]
async fn a_request_head_over_16_kib_gets_431_before_it_ends() {
    let server = start_server().await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut head = upgrade_head(server.addr, "");
    while head.len() < 64 * 1024 {
        head.push_str(&format!("X-Pad-{}: {}\r\n", head.len(), "a".repeat(1000)));
    }
    // 64 KiB of headers, and never the empty line that would end them: the
    // answer cannot wait for the end.
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        writer
    });
    let response = read_until_closed(&mut reader).await;
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{response:?}"
    );
    drop(writing.await.unwrap());
    assert_eq!(
        metric(
            &server.hub,
            r#"wshub_http_connections_dropped_total{reason="head_too_large"}"#
        ),
        1.0
    );
    assert_eq!(server.hub.connection_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_head_under_the_limit_with_a_large_cookie_still_upgrades() {
    let server = start_server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let cookie = format!("Cookie: session={}\r\n\r\n", "c".repeat(12 * 1024));
    stream
        .write_all(upgrade_head(server.addr, &cookie).as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&chunk[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    drop(stream);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_head_is_dropped_after_5_s_even_if_it_trickles() {
    let server = start_server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A byte a second: the deadline is for the whole head, not between bytes.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stream.write_all(b"X").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!is_closed(&mut stream).await, "open at 4.9 s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(is_closed(&mut stream).await, "closed by 5.1 s");
    assert_eq!(
        metric(
            &server.hub,
            r#"wshub_http_connections_dropped_total{reason="head_timeout"}"#
        ),
        1.0
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_tls_handshake_is_dropped_after_5_s() {
    let mut config = test_config();
    config.tls = Some(wshub::TlsSource::SelfSigned);
    let server = start_server_with(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The first bytes of a ClientHello record, then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert!(!is_closed(&mut stream).await, "open at 4.9 s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(is_closed(&mut stream).await, "closed by 5.1 s");
    assert_eq!(
        metric(
            &server.hub,
            r#"wshub_http_connections_dropped_total{reason="tls_timeout"}"#
        ),
        1.0
    );
    server.shutdown().await;
}

/// Waits until the server's unfinished messages hold at least `bytes`.
async fn wait_for_held(hub: &wshub::Hub, bytes: usize) {
    let budget = hub.incomplete_messages();
    tokio::time::timeout(PATIENCE, async {
        while budget.held() < bytes {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("held {} bytes, expected {bytes}", budget.held()));
}

/// Budget 250,000 bytes; messages of 100,000 bytes, of which clients send
/// 90,000 and wait. Each such message holds 90,010 to 100,010 bytes however
/// the reads split it, so exactly two fit and every later one is refused.
#[tokio::test]
async fn unfinished_messages_past_the_budget_are_closed_with_1013_while_others_echo() {
    let mut config = test_config();
    config.max_message_size = 100_000;
    config.max_incomplete_bytes = 250_000;
    let server = start_server_with(config).await;
    let budget = server.hub.incomplete_messages().clone();
    let frame = RawClient::frame(true, 2, &[7; 100_000]);
    let (first_part, rest) = frame.split_at(14 + 90_000);

    let mut holders = Vec::new();
    for i in 0..2 {
        let mut raw = RawClient::connect(server.addr, "/echo").await;
        raw.send_raw(first_part).await;
        wait_for_held(&server.hub, (i + 1) * 90_010).await;
        holders.push(raw);
    }
    let mut echo = connect(&server.url("/echo")).await;
    for _ in 0..3 {
        let mut refused = RawClient::connect(server.addr, "/echo").await;
        refused.send_raw(first_part).await;
        assert_eq!(refused.read_close().await, Some(1013));
        // Small messages arrive whole in one read and need no budget.
        echo.send(Message::text("still here")).await.unwrap();
        assert_eq!(next_message(&mut echo).await, Message::text("still here"));
    }
    assert!(budget.held() <= 250_000, "{} held", budget.held());
    assert_eq!(budget.refused(), 3);

    // The holders finish their messages: they are echoed whole, and the
    // budget is empty again.
    for raw in &mut holders {
        raw.send_raw(rest).await;
        let echoed = tokio::time::timeout(PATIENCE, raw.read_frame())
            .await
            .unwrap()
            .expect("the echo");
        assert_eq!((echoed.opcode, echoed.payload.len()), (2, 100_000));
    }
    assert_eq!(budget.held(), 0);
    wait_for_connections(&server.hub, 3).await;
    assert_eq!(
        metric(
            &server.hub,
            r#"wshub_connections_closed_total{endpoint="echo",reason="overloaded"}"#
        ),
        3.0
    );
    assert_eq!(metric(&server.hub, r#"wshub_close_codes_total{code="1013"}"#), 3.0);
    assert_eq!(metric(&server.hub, "wshub_incomplete_message_bytes"), 0.0);
    drop((holders, echo));
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_ends_mid_message_gives_its_bytes_back() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    let frame = RawClient::frame(false, 1, &[b'a'; 300_000]);
    raw.send_raw(&frame[..200_000]).await;
    wait_for_held(&server.hub, 200_000 - 14).await;
    assert!(metric(&server.hub, "wshub_incomplete_message_bytes") >= 199_986.0);
    drop(raw);
    wait_for_connections(&server.hub, 0).await;
    assert_eq!(server.hub.incomplete_messages().held(), 0);
    assert_eq!(metric(&server.hub, "wshub_incomplete_message_bytes"), 0.0);
    server.shutdown().await;
}
