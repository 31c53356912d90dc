//! Rate limits over real sockets: a `wshub.v1` burst beyond a connection's
//! limit is dropped (each dropped message answered with `rate_limited`
//! naming its `ref`) and reaches no one else and no history, and a flood
//! that goes on is closed with 1008 while the others in the room carry on;
//! raw and echo clients, which cannot be told about a drop, lose nothing:
//! their reads pause until they are back within their rate; every action
//! is counted in /metrics; the per-address connection limit answers 429 and
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

/// The server's Prometheus text, as `GET /metrics` renders it.
async fn metrics_text(server: &TestServer) -> String {
    server.hub.metrics().render(&server.hub.scrape())
}

/// The value of one series in `text`; a missing series fails the test.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

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

/// Each `rate_limited` error names the room and the `ref` of the message it
/// refuses, so that a client knows which of its messages did not go out.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_error_names_the_refused_request() {
    let server = start_server_with(limited_config()).await;
    let mut alice = chat_nodelay(&server).await;
    alice.join("room", None).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 0..7 {
        alice
            .send(&ClientFrame::Send {
                room: "room".into(),
                text: format!("m{i}"),
                client_ref: Some(format!("ref-{i}")),
            })
            .await;
    }
    let mut refused = Vec::new();
    let mut delivered = Vec::new();
    while refused.len() + delivered.len() < 7 {
        match alice.recv().await {
            ServerFrame::Message { client_ref, .. } => delivered.push(client_ref.unwrap()),
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                room,
                client_ref,
                ..
            } => {
                assert_eq!(room.as_deref(), Some("room"));
                refused.push(client_ref.expect("the refused request's ref"));
            }
            ServerFrame::Presence { .. } | ServerFrame::Joined { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delivered, ["ref-0", "ref-1", "ref-2", "ref-3", "ref-4"]);
    assert_eq!(refused, ["ref-5", "ref-6"]);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn raw_and_echo_clients_are_slowed_down_and_lose_nothing() {
    let server = start_server_with(limited_config()).await;
    let mut sender = connect_nodelay(&server.url("/ws/raw"), false).await;
    let mut listener = connect_nodelay(&server.url("/ws/raw"), false).await;
    wait_for_connections(&server.hub, 2).await;
    let started = tokio::time::Instant::now();
    for i in 0..8 {
        send_text(&mut sender, &format!("raw {i}")).await;
    }
    for client in [&mut listener, &mut sender] {
        for i in 0..8 {
            assert_eq!(next_message(client).await, Message::text(format!("raw {i}")));
        }
    }
    // Five at once, then one a second: the eighth about three seconds in.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "took {took:?}"
    );

    let mut echo = connect_nodelay(&server.url("/echo"), false).await;
    for i in 0..8 {
        send_text(&mut echo, &format!("echo {i}")).await;
    }
    for i in 0..8 {
        assert_eq!(next_message(&mut echo).await, Message::text(format!("echo {i}")));
    }
    // Nothing dropped, so nothing counted as dropped; each connection had
    // one episode of throttling, counted and logged once.
    assert_eq!(
        server
            .hub
            .stats()
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let metrics = metrics_text(&server).await;
    assert_eq!(
        metric(
            &metrics,
            r#"wshub_rate_limited_total{endpoint="chat",action="throttled"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"wshub_rate_limited_total{endpoint="echo",action="throttled"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"wshub_rate_limited_total{endpoint="echo",action="dropped"}"#
        ),
        0.0
    );
    server.shutdown().await;
}

/// The defaults (50 messages a second, bursts of 100): a client that sends
/// each message once the previous one came back gets every echo, the ones
/// past the burst at about the rate.
#[tokio::test(start_paused = true)]
async fn with_the_defaults_a_thousand_sequential_echoes_all_come_back() {
    let mut config = test_config();
    config.rate = Config::default().rate;
    let server = start_server_with(config).await;
    let mut echo = connect_nodelay(&server.url("/echo"), false).await;
    let started = tokio::time::Instant::now();
    for i in 0..1_000 {
        let text = format!("echo {i}");
        send_text(&mut echo, &text).await;
        assert_eq!(next_message(&mut echo).await, Message::text(text));
    }
    // 900 past the burst at 50 a second: 18 s on the paused clock.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(17) && took <= Duration::from_secs(20),
        "took {took:?}"
    );
    server.shutdown().await;
}

/// A raw sender that writes 3,000 messages as fast as it can: every member
/// (the sender too) gets all of them, in order, at about the configured
/// rate; TCP holds the sender back meanwhile.
#[tokio::test(start_paused = true)]
async fn a_quick_raw_sender_reaches_everyone_in_order_at_the_rate() {
    let mut config = test_config();
    config.rate = Config::default().rate;
    let server = start_server_with(config).await;
    let sender = connect_nodelay(&server.url("/ws/quick"), false).await;
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(connect_nodelay(&server.url("/ws/quick"), false).await);
    }
    wait_for_connections(&server.hub, 3).await;
    let started = tokio::time::Instant::now();
    let (mut sink, mut own) = sender.split();
    let sending = tokio::spawn(async move {
        for i in 0..3_000 {
            sink.feed(Message::text(format!("quick {i}"))).await.unwrap();
        }
        sink.flush().await.unwrap();
        sink
    });
    let mut at_ten_seconds = None;
    for i in 0..3_000 {
        let expected = Message::text(format!("quick {i}"));
        for member in &mut members {
            assert_eq!(next_message(member).await, expected);
        }
        let echoed = loop {
            let frame = tokio::time::timeout(PATIENCE, own.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if !frame.is_ping() {
                break frame;
            }
        };
        assert_eq!(echoed, expected);
        if at_ten_seconds.is_none() && started.elapsed() >= Duration::from_secs(10) {
            at_ten_seconds = Some(i);
        }
    }
    // 100 at once, then 50 a second: 600 by ten seconds, all by 58 s.
    let by_ten = at_ten_seconds.expect("still running at ten seconds");
    assert!((500..=700).contains(&by_ten), "{by_ten} delivered by ten seconds");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(55) && took <= Duration::from_secs(62),
        "took {took:?}"
    );
    drop(sending.await.unwrap());
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
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        send_text(&mut echo, &big).await;
    }
    send_text(&mut echo, "small").await;
    // Nothing is lost: the third 900 bytes go over the burst, and the
    // socket is not read again until half the burst is back.
    for expected in [big.as_str(), big.as_str(), big.as_str(), "small"] {
        assert_eq!(next_message(&mut echo).await, Message::text(expected));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "took {took:?}"
    );
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

    let metrics = metrics_text(&server).await;
    assert_eq!(
        metric(&metrics, r#"wshub_rate_limited_total{endpoint="v1",action="closed"}"#),
        1.0
    );
    assert!(metric(&metrics, r#"wshub_rate_limited_total{endpoint="v1",action="dropped"}"#) >= 100.0);
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

/// A `wshub.v1` client that writes far more than its burst at once, with
/// the default limits: what is over them is answered `rate_limited`, one
/// answer each, and it is not evicted by its own answers.
#[tokio::test]
async fn a_v1_burst_over_the_rate_is_answered_rate_limited_not_evicted() {
    use wshub::protocol::v1::{ErrorCode, ServerFrame};
    const REQUESTS: usize = 1_200;
    let mut config = test_config();
    config.rate = Config::default().rate;
    let server = start_server_with(config).await;
    let mut chat = ChatClient::connect(&server).await;
    for _ in 0..REQUESTS {
        let nick = serde_json::json!({"type": "nick", "nick": "ann"}).to_string();
        chat.ws.feed(Message::text(nick)).await.unwrap();
    }
    chat.ws.flush().await.unwrap();
    let (mut answered, mut limited) = (0, 0);
    for _ in 0..REQUESTS {
        match chat.recv().await {
            ServerFrame::Nick { .. } => answered += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(answered >= 100, "the burst passes: {answered}");
    assert_eq!(answered + limited, REQUESTS);
    server.shutdown().await;
}
