//! Rate limits over real sockets: a burst beyond a connection's limit is
//! dropped (a `wshub.v1` client gets `rate_limited` for each dropped
//! message; raw and echo clients get nothing) and reaches no one else and
//! no history; a flood that goes on is closed with 1008 while the others in
//! the room carry on; the per-address connection limit answers 429 and
//! frees its slot when a connection ends.
//!
//! Time is tokio's paused clock: a burst takes no time at all, and the
//! buckets refill only when a test sleeps. The clients disable Nagle's
//! algorithm, so that no small write waits for a delayed ACK in real time
//! while the paused clock jumps ahead.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wshub::ratelimit::RateLimits;
use wshub::Config;

/// One message a second, bursts of five.
fn limited_config() -> Config {
    let mut config = test_config();
    config.rate = RateLimits::new(1, 5, 0, config.max_message_size);
    config
}

/// Frames until a chat `message`, counting the `rate_limited` errors on
/// the way.
async fn next_chat_counting_limits(client: &mut ChatClient, limited: &mut usize) -> String {
    loop {
        match client.recv().await {
            ServerFrame::Message { message, .. } => return message.text,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            } => *limited += 1,
            ServerFrame::Joined { .. } | ServerFrame::Left { .. } | ServerFrame::Presence { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_beyond_the_limit_is_dropped_and_the_sender_told() {
    let server = start_server_with(limited_config()).await;
    let mut alice = chat_nodelay(&server).await;
    let mut bob = chat_nodelay(&server).await;
    alice.join("room", None).await;
    bob.join("room", None).await;
    // Every request counts, joins too: let the buckets fill up again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 0..8 {
        alice.say("room", &format!("burst {i}")).await;
    }
    // Alice: her five messages and three `rate_limited` errors.
    let mut limited = 0;
    for i in 0..5 {
        assert_eq!(
            next_chat_counting_limits(&mut alice, &mut limited).await,
            format!("burst {i}")
        );
    }
    while limited < 3 {
        assert_eq!(alice.next_error().await, ErrorCode::RateLimited);
        limited += 1;
    }
    // Bob, limited on his own bucket, is not affected by Alice's.
    bob.say("room", "bob is fine").await;
    for i in 0..5 {
        assert_eq!(bob.next_chat().await.1.text, format!("burst {i}"));
    }
    assert_eq!(bob.next_chat().await.1.text, "bob is fine");
    assert_eq!(alice.next_chat().await.1.text, "bob is fine");

    // Two seconds later Alice has two tokens again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.say("room", "after a pause").await;
    assert_eq!(bob.next_chat().await.1.text, "after a pause");
    assert_eq!(alice.next_chat().await.1.text, "after a pause");

    // The dropped messages were never stored either.
    let mut carol = chat_nodelay(&server).await;
    let (history, _) = carol.join("room", None).await;
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "burst 0",
            "burst 1",
            "burst 2",
            "burst 3",
            "burst 4",
            "bob is fine",
            "after a pause"
        ]
    );
    assert_eq!(
        server
            .hub
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn raw_and_echo_clients_lose_the_excess_silently() {
    let server = start_server_with(limited_config()).await;
    let mut sender = connect_nodelay(&server.url("/ws/raw"), false).await;
    let mut listener = connect_nodelay(&server.url("/ws/raw"), false).await;
    wait_for_connections(&server.hub, 2).await;
    for i in 0..8 {
        send_text(&mut sender, &format!("raw {i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_text(&mut sender, "raw after").await;
    for client in [&mut listener, &mut sender] {
        for i in 0..5 {
            assert_eq!(next_message(client).await, Message::text(format!("raw {i}")));
        }
        // Nothing between: no error frame (raw mode has no words for it)
        // and none of the dropped three.
        assert_eq!(next_message(client).await, Message::text("raw after"));
    }

    let mut echo = connect_nodelay(&server.url("/echo"), false).await;
    for i in 0..8 {
        send_text(&mut echo, &format!("echo {i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_text(&mut echo, "echo after").await;
    for i in 0..5 {
        assert_eq!(next_message(&mut echo).await, Message::text(format!("echo {i}")));
    }
    assert_eq!(next_message(&mut echo).await, Message::text("echo after"));
    assert_eq!(
        server
            .hub
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bytes_are_limited_too() {
    let mut config = test_config();
    config.max_message_size = 2_000;
    // 1,000 bytes a second; the burst is one largest message (2,000).
    config.rate = RateLimits::new(0, 0, 1_000, config.max_message_size);
    let server = start_server_with(config).await;
    let mut echo = connect_nodelay(&server.url("/echo"), false).await;
    let big = "x".repeat(900);
    for _ in 0..3 {
        send_text(&mut echo, &big).await;
    }
    send_text(&mut echo, "small").await;
    for expected in [big.as_str(), big.as_str(), "small"] {
        assert_eq!(next_message(&mut echo).await, Message::text(expected));
    }
    server.shutdown().await;
}

/// A client whose socket sends at once (`TCP_NODELAY`), optionally
/// speaking `wshub.v1`. Needed for floods: with Nagle's algorithm a client
/// holds back small writes until the server's delayed ACK (40 ms of real
/// time), while the paused clock runs on, so the server would see a flood
/// in one lump.
async fn connect_nodelay(url: &str, protocol: bool) -> Client {
    let mut request = url.into_client_request().unwrap();
    if protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "wshub.v1".parse().unwrap());
    }
    let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (client, _) = tokio::time::timeout(PATIENCE, connecting).await.unwrap().unwrap();
    client
}

/// A `wshub.v1` client without Nagle, past its welcome.
async fn chat_nodelay(server: &TestServer) -> ChatClient {
    let mut client = ChatClient {
        ws: connect_nodelay(&server.url("/ws"), true).await,
    };
    match client.recv().await {
        ServerFrame::Welcome { .. } => client,
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Sends a message every 10 ms (100 a second) until the server closes;
/// returns the close code and reason and how long the flood lasted.
async fn flood(client: Client, text: impl Fn(usize) -> String + Send + 'static) -> (u16, String, Duration) {
    let (mut sink, mut stream) = client.split();
    let started = tokio::time::Instant::now();
    let sending = tokio::spawn(async move {
        for i in 0..1_000 {
            if sink.send(Message::text(text(i))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let close = loop {
        match tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break (u16::from(frame.code), frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let lasted = started.elapsed();
    sending.abort();
    (close.0, close.1, lasted)
}

#[tokio::test(start_paused = true)]
async fn a_persisting_flood_is_closed_and_the_room_carries_on() {
    let mut config = test_config();
    config.rate = RateLimits::new(10, 5, 0, config.max_message_size);
    let server = start_server_with(config).await;
    let mut bystander = chat_nodelay(&server).await;
    bystander.join("busy", None).await;

    let mut flooder = chat_nodelay(&server).await;
    flooder.join("busy", None).await;
    let json = |i: usize| format!(r#"{{"type":"send","room":"busy","text":"flood {i}"}}"#);
    let (code, reason, lasted) = flood(flooder.ws, json).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit"));
    // Closed once it had been over the limit for two seconds, not at the
    // first excess message.
    assert!(
        lasted >= Duration::from_secs(2) && lasted < Duration::from_secs(4),
        "closed after {lasted:?}"
    );

    // The bystander got only what the flooder was allowed (the burst, then
    // about ten a second), and carries on.
    let mut received = 0;
    loop {
        match bystander.recv().await {
            ServerFrame::Message { message, .. } if message.text.starts_with("flood") => received += 1,
            ServerFrame::Left { .. } => break,
            ServerFrame::Joined { .. } | ServerFrame::Presence { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((20..=45).contains(&received), "{received} flood messages delivered");
    bystander.say("busy", "still here").await;
    assert_eq!(bystander.next_chat().await.1.text, "still here");

    // Raw clients are closed the same way.
    let raw = connect_nodelay(&server.url("/ws/busy"), false).await;
    let (code, reason, _) = flood(raw, |i| format!("raw flood {i}")).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_per_address_limit_answers_429_and_frees_on_disconnect() {
    let mut config = test_config();
    config.max_connections_per_ip = 2;
    let server = start_server_with(config).await;
    let first = connect(&server.url("/echo")).await;
    let mut second = connect(&server.url("/ws")).await;
    assert_eq!(
        connect_with_origin(&server.url("/echo"), "http://localhost")
            .await
            .err(),
        Some(429)
    );
    assert_eq!(
        connect_with_origin(&server.url("/ws/x"), "http://localhost")
            .await
            .err(),
        Some(429)
    );

    // A clean close frees a slot, and so does a dropped TCP connection.
    second.close(None).await.unwrap();
    wait_for_connections(&server.hub, 1).await;
    let third = connect(&server.url("/ws")).await;
    drop((first, third));
    wait_for_connections(&server.hub, 0).await;

    // No slot leaks over many connections.
    for _ in 0..50 {
        let a = connect(&server.url("/echo")).await;
        let b = connect(&server.url("/echo")).await;
        drop((a, b));
        wait_for_connections(&server.hub, 0).await;
    }
    server.shutdown().await;
}

#[test]
fn rate_flags_have_sensible_defaults_and_checks() {
    let config = Config::default();
    assert_eq!(config.rate.messages_per_second, 50);
    assert_eq!(config.rate.message_burst, 100);
    assert_eq!(config.rate.bytes_per_second, 1 << 20);
    assert_eq!(config.max_connections_per_ip, 0);
    let cli = wshub::Cli::load(["wshub", "--rate-messages", "5", "--rate-burst", "0"]).unwrap();
    let err = cli.into_config().unwrap_err().to_string();
    assert!(err.contains("--rate-burst"), "{err}");
    let cli = wshub::Cli::load(["wshub", "--rate-bytes", "64KiB", "--max-connections-per-ip", "10"]).unwrap();
    let config = cli.into_config().unwrap();
    assert_eq!(config.rate.bytes_per_second, 64 << 10);
    assert_eq!(config.rate.byte_burst, 1 << 20, "at least one largest message");
    assert_eq!(config.max_connections_per_ip, 10);
}
