//! A client that stops reading is evicted (close 1008) when its bounded
//! queue overflows, while everyone else in the room keeps receiving: the
//! seed's hub, which writes to every socket under its lock, would freeze.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
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

/// It is not read any more once its echoes wait (TCP slows it down),
/// so its queue never overflows: the write timeout ends it.
#[tokio::test]
async fn an_echo_client_that_never_reads_is_closed_alone() {
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
    wait_for_connections(&server.hub, 1).await;
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

/// A client's own replies count against its bounds as much as broadcasts
/// do: one that keeps asking for large `history` replies, one at a time
/// (20 a second, on the paused clock), without reading them is evicted with
/// 1008 instead of piling replies up in the server.
#[tokio::test(start_paused = true)]
async fn history_replies_a_client_does_not_read_count_against_its_bounds() {
    let mut config = test_config();
    config.max_queue_bytes = 512 * 1024;
    let server = start_server_with(config).await;
    let mut writer = ChatClient::connect(&server).await;
    writer.join("big", None).await;
    let text = "h".repeat(4_000);
    for _ in 0..400 {
        writer.say("big", &text).await;
        writer.next_chat().await;
    }
    let mut reader = ChatClient::connect(&server).await;
    reader.join("big", None).await;
    // Each reply is 400 x 4,000 bytes: 50 of them are 80 MB, more than
    // any socket buffers hold.
    let request = ClientFrame::History {
        room: "big".into(),
        since: None,
        limit: Some(400),
    };
    for _ in 0..50 {
        reader.send(&request).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut histories = 0;
    let code = loop {
        match tokio::time::timeout(PATIENCE, reader.ws.next())
            .await
            .expect("frames in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"history""#) => histories += 1,
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(
        histories < 50,
        "all {histories} replies were kept for a client that read none"
    );
    assert_eq!(server.hub.stats().evictions.load(Ordering::Relaxed), 1);
    // The writer, which reads, is still served.
    writer.say("big", "still here").await;
    loop {
        if writer.next_chat().await.1.text == "still here" {
            break;
        }
    }
    server.shutdown().await;
}

/// Pongs count too: a client that sends pings in bursts (each within the
/// queue's bounds) and reads none of the pongs is evicted once they
/// overflow its queue.
#[tokio::test(start_paused = true)]
async fn pongs_a_client_does_not_read_count_against_its_bounds() {
    let mut config = test_config();
    config.max_queue_messages = 256;
    let server = start_server_with(config).await;
    let mut client = RawClient::connect(server.addr, "/echo").await;
    let ping = RawClient::frame(true, 0x9, &[7; 125]);
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 100).collect();
    for _ in 0..400 {
        client.send_raw(&burst).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(client.read_close().await, Some(1008));
    server.shutdown().await;
}

/// A client that writes hundreds of requests at once and then reads is
/// not a slow consumer: its answers are not held to the queue's count
/// bound (16 here); its reads wait while they go out instead.
#[tokio::test]
async fn a_burst_of_requests_gets_every_answer_and_no_eviction() {
    use wshub::protocol::v1::ServerFrame;
    const REQUESTS: usize = 500;
    let mut config = test_config();
    config.max_queue_messages = 16;
    let server = start_server_with(config).await;

    let mut echo = connect(&server.url("/echo")).await;
    for i in 0..REQUESTS {
        echo.feed(Message::text(format!("e{i}"))).await.unwrap();
    }
    echo.flush().await.unwrap();
    for i in 0..REQUESTS {
        assert_eq!(next_message(&mut echo).await, Message::text(format!("e{i}")));
    }

    let mut chat = ChatClient::connect(&server).await;
    for i in 0..REQUESTS {
        let nick = serde_json::json!({"type": "nick", "nick": format!("n{i}")}).to_string();
        chat.ws.feed(Message::text(nick)).await.unwrap();
    }
    chat.ws.flush().await.unwrap();
    for i in 0..REQUESTS {
        match chat.recv().await {
            ServerFrame::Nick { nick } => assert_eq!(nick, format!("n{i}")),
            other => panic!("answer {i}: {other:?}"),
        }
    }
    server.shutdown().await;
}
