//! A client that stops reading is evicted (close 1008) when its bounded
//! queue overflows, while everyone else in the room keeps receiving: the
//! seed's hub, which writes to every socket under its lock, would freeze.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_stalled_reader_is_evicted_and_the_room_keeps_flowing() {
    let mut config = test_config();
    config.max_queue_messages = 16;
    config.max_queue_bytes = 256 * 1024;
    config.write_timeout = Duration::from_secs(1);
    let server = start_server_with(config).await;
    let mut sender = connect(&server.url("/ws")).await;
    let mut listener = connect(&server.url("/ws")).await;
    // Connected, then never reads a byte again.
    let stalled = RawClient::connect(server.addr, "/ws").await;
    wait_for_connections(&server.hub, 3).await;

    // 400 × 64 KiB = 25 MiB: far more than the stalled socket's kernel
    // buffers plus its 16-message queue can hold.
    let count = 400;
    let listener_task = tokio::spawn(async move {
        for i in 0..count {
            match next_message(&mut listener).await {
                Message::Binary(bytes) => assert_eq!(&bytes[..4], &(i as u32).to_be_bytes()),
                other => panic!("unexpected {other:?}"),
            }
        }
        listener
    });
    let sender_task = tokio::spawn(async move {
        for i in 0..count {
            let mut payload = vec![0u8; 64 * 1024];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            sender.send(Message::binary(payload)).await.unwrap();
            match next_message(&mut sender).await {
                Message::Binary(bytes) => assert_eq!(&bytes[..4], &(i as u32).to_be_bytes()),
                other => panic!("unexpected {other:?}"),
            }
        }
        sender
    });
    let _sender = sender_task.await.expect("the sender got all its messages");
    let _listener = listener_task.await.expect("the listener got all messages, in order");
    wait_for_evictions(&server.hub, 1).await;
    // The stalled socket is dropped once its close frame cannot be written.
    wait_for_connections(&server.hub, 2).await;
    assert_eq!(server.hub.room("lobby").unwrap().member_count(), 2);
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test]
async fn an_echo_client_that_never_reads_is_evicted_alone() {
    let mut config = test_config();
    config.max_queue_messages = 4;
    config.write_timeout = Duration::from_secs(1);
    let server = start_server_with(config).await;
    let mut healthy = connect(&server.url("/echo")).await;
    let mut flooder = RawClient::connect(server.addr, "/echo").await;
    let frame = RawClient::frame(true, 2, &vec![7u8; 60_000]);
    // Write without reading until the server gives up on us.
    let flood = tokio::spawn(async move {
        for _ in 0..2_000 {
            if tokio::io::AsyncWriteExt::write_all(&mut flooder.stream, &frame)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    wait_for_evictions(&server.hub, 1).await;
    send_text(&mut healthy, "unaffected").await;
    assert_eq!(next_message(&mut healthy).await, Message::text("unaffected"));
    flood.abort();
    server.shutdown().await;
}

/// Waits until the hub has counted `n` evictions (the evicted connection's
/// task counts it when it acts on the overflow).
async fn wait_for_evictions(hub: &wshub::Hub, n: u64) {
    tokio::time::timeout(PATIENCE, async {
        while hub.stats().evictions.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("eviction counted");
    assert_eq!(hub.stats().evictions.load(Ordering::Relaxed), n);
}
