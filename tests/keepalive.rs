//! Keepalive under tokio's paused clock: the server pings every
//! `ping_interval`; a client that sends nothing (not even a pong) is closed
//! once `read_timeout` passes; a client that answers pings stays.
//!
//! Time is paused so the test takes milliseconds yet follows the real
//! 54 s / 60 s schedule; the runtime only advances the clock when every
//! task, server and client alike, is idle.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(start_paused = true)]
async fn the_server_pings_on_schedule() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    let start = Instant::now();
    let ping = raw.read_frame().await.expect("a ping");
    assert_eq!(ping.opcode, 9);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(54) && waited < Duration::from_secs(55),
        "{waited:?}"
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_the_read_timeout() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    wait_for_connections(&server.hub, 1).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(server.hub.connection_count(), 1, "still inside the read timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.hub.connection_count(), 0, "closed within read_timeout + 1 s");
    assert!(raw.is_closed_by_server().await);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_connected() {
    let server = start_server().await;
    let mut client = connect(&server.url("/echo")).await;
    let (pings_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    // tungstenite answers pings with pongs while the stream is being read.
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = client.next().await {
            if let Message::Ping(_) = message {
                let _ = pings_tx.send(());
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(server.hub.connection_count(), 1, "alive after five minutes of pings");
    let mut count = 0;
    while pings.try_recv().is_ok() {
        count += 1;
    }
    assert_eq!(count, 5, "one ping every 54 s");
    reader.abort();
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn any_frame_renews_the_read_deadline() {
    let mut config = test_config();
    config.ping_interval = Duration::from_secs(3600 - 1);
    config.read_timeout = Duration::from_secs(3600);
    let server = start_server_with(config).await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3000)).await;
        raw.send_frame(true, 0xA, b"unsolicited pong").await;
    }
    wait_for_connections(&server.hub, 1).await;
    assert_eq!(
        server.hub.connection_count(),
        1,
        "9000 s > read timeout, but never silent for 3600 s"
    );
    server.shutdown().await;
}
