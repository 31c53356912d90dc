//! Graceful shutdown: stop accepting, send 1001 to every client, wait for
//! their closes up to the shutdown timeout, then return.

mod common;

use std::time::Duration;

use common::*;
use tokio::time::Instant;

#[tokio::test]
async fn every_client_gets_1001_and_run_returns() {
    let server = start_server().await;
    let mut echo = connect(&server.url("/echo")).await;
    let mut chat = connect(&server.url("/ws")).await;
    wait_for_connections(&server.hub, 2).await;
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let codes = (expect_close(&mut echo).await, expect_close(&mut chat).await);
        // tungstenite answers the close while reading on.
        let _ = futures_util::StreamExt::next(&mut echo).await;
        let _ = futures_util::StreamExt::next(&mut chat).await;
        codes
    });
    server.shutdown().await;
    assert_eq!(waiting.await.unwrap(), (1001, 1001));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_is_dropped_at_the_timeout() {
    let mut config = test_config();
    config.shutdown_timeout = Duration::from_secs(5);
    let server = start_server_with(config).await;
    let mut deaf = RawClient::connect(server.addr, "/ws").await;
    wait_for_connections(&server.hub, 1).await;
    let hub = server.hub.clone();
    let start = Instant::now();
    server.shutdown().await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(deaf.read_close().await, Some(1001));
}

/// A client part-way through its request head when shutdown begins does
/// not hold shutdown for the head's 5 s: it gets a second, then is closed.
#[tokio::test(start_paused = true)]
async fn an_unfinished_request_head_does_not_hold_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = test_config();
    config.shutdown_timeout = Duration::from_secs(10);
    let server = start_server_with(config).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // The server has read the start of the head.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    server.shutdown().await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest).await;
    assert!(read.is_err() || rest.is_empty(), "closed without an answer: {rest:?}");
}
