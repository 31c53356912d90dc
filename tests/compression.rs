//! permessage-deflate (RFC 7692): negotiated in the handshake, compressed
//! messages echoed and broadcast, plain clients unaffected, and no zlib
//! state kept per connection. The client here writes raw frames and does
//! its own deflate, since tokio-tungstenite does not speak the extension.

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// What the server answers to any acceptable offer: no context takeover
/// either way (the per-connection memory bound).
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Raw deflate with a sync flush, its 4-byte tail stripped (RFC 7692 7.2.1).
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let consumed = compressor.total_in() as usize;
        compressor
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compressor.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompressor = Decompress::new(false);
    let mut out = Vec::with_capacity(input.len() * 8 + 1024);
    loop {
        let consumed = decompressor.total_in() as usize;
        decompressor
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if decompressor.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// A masked client frame with RSV1 set: the first frame of a compressed message.
fn compressed_frame(fin: bool, opcode: u8, deflated: &[u8]) -> Vec<u8> {
    let mut frame = RawClient::frame(fin, opcode, deflated);
    frame[0] |= 0x40;
    frame
}

/// The payload of a data frame, inflated if it came compressed.
fn message_of(frame: &RawFrame) -> Vec<u8> {
    if frame.rsv1 {
        inflate(&frame.payload)
    } else {
        frame.payload.clone()
    }
}

async fn deflate_client(server: &TestServer, path: &str) -> RawClient {
    let (client, agreed) =
        RawClient::connect_with_extensions(server.addr, path, "permessage-deflate; client_max_window_bits").await;
    assert_eq!(agreed.as_deref(), Some(AGREED));
    client
}

async fn next_data_frame(client: &mut RawClient) -> RawFrame {
    loop {
        let frame = tokio::time::timeout(PATIENCE, client.read_frame())
            .await
            .expect("frame in time")
            .expect("connection open");
        if matches!(frame.opcode, 1 | 2 | 8) {
            return frame;
        }
    }
}

#[tokio::test]
async fn echo_inflates_what_it_receives_and_compresses_what_it_sends() {
    let server = start_server().await;
    let mut client = deflate_client(&server, "/echo").await;
    let text = "permessage-deflate makes repetitive text much smaller. ".repeat(40);
    client
        .send_raw(&compressed_frame(true, 1, &deflate(text.as_bytes())))
        .await;
    let echo = next_data_frame(&mut client).await;
    assert_eq!((echo.opcode, echo.fin, echo.rsv1), (1, true, true));
    assert!(echo.payload.len() < text.len() / 4, "{} bytes", echo.payload.len());
    assert_eq!(message_of(&echo), text.as_bytes());

    // A fragmented compressed message: RSV1 on its first frame only.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 10) as u8).collect();
    let deflated = deflate(&data);
    let half = deflated.len() / 2;
    client.send_raw(&compressed_frame(false, 2, &deflated[..half])).await;
    client.send_frame(true, 9, b"ping").await;
    client.send_frame(true, 0, &deflated[half..]).await;
    let echo = next_data_frame(&mut client).await;
    assert_eq!(echo.opcode, 2);
    assert_eq!(message_of(&echo), data);

    // Uncompressed messages are still fine on a deflate connection, and
    // short ones come back plain.
    client.send_frame(true, 1, b"short").await;
    let echo = next_data_frame(&mut client).await;
    assert_eq!((echo.rsv1, &echo.payload[..]), (false, &b"short"[..]));

    // RSV1 on a continuation frame is still a protocol error.
    client.send_frame(false, 1, b"a").await;
    client.send_raw(&compressed_frame(true, 0, b"b")).await;
    assert_eq!(client.read_close().await, Some(1002));
    server.shutdown().await;
}

#[tokio::test]
async fn clients_that_do_not_negotiate_see_nothing_change() {
    let server = start_server().await;
    let mut plain = RawClient::connect(server.addr, "/echo").await;
    let text = "plain ".repeat(100);
    plain.send_frame(true, 1, text.as_bytes()).await;
    let echo = next_data_frame(&mut plain).await;
    assert_eq!((echo.rsv1, echo.payload), (false, text.clone().into_bytes()));
    // Without negotiation RSV1 stays a protocol error.
    plain.send_raw(&compressed_frame(true, 1, &deflate(b"hello"))).await;
    assert_eq!(plain.read_close().await, Some(1002));

    // Unknown extensions and malformed offers are declined, not refused.
    let (_, agreed) = RawClient::connect_with_extensions(
        server.addr,
        "/echo",
        "permessage-deflate; server_max_window_bits=99, x-foo",
    )
    .await;
    assert_eq!(agreed, None);
    server.shutdown().await;

    let mut config = test_config();
    config.permessage_deflate = false;
    let server = start_server_with(config).await;
    let (_, agreed) = RawClient::connect_with_extensions(server.addr, "/echo", "permessage-deflate").await;
    assert_eq!(agreed, None, "--permessage-deflate=false never negotiates");
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_window_limit_is_answered_and_kept() {
    let server = start_server().await;
    let (mut client, agreed) = RawClient::connect_with_extensions(
        server.addr,
        "/echo",
        "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
    )
    .await;
    assert_eq!(agreed, Some(format!("{AGREED}; server_max_window_bits=9")));
    for len in [400usize, 600] {
        let text = "ab".repeat(len / 2);
        client
            .send_raw(&compressed_frame(true, 1, &deflate(text.as_bytes())))
            .await;
        let echo = next_data_frame(&mut client).await;
        // Compressed only when the message fits the 512-byte window.
        assert_eq!(echo.rsv1, len <= 512, "{len}");
        assert_eq!(message_of(&echo), text.as_bytes());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn chat_fans_out_compressed_to_deflate_members_and_plain_to_the_others() {
    let server = start_server().await;
    let mut squeezed = deflate_client(&server, "/ws").await;
    let mut other_squeezed = deflate_client(&server, "/ws").await;
    let mut plain = RawClient::connect(server.addr, "/ws").await;
    wait_for_connections(&server.hub, 3).await;
    let from_deflate = "a compressed chat message, a compressed chat message".repeat(5);
    squeezed
        .send_raw(&compressed_frame(true, 1, &deflate(from_deflate.as_bytes())))
        .await;
    let from_plain = "a plain chat message, a plain chat message".repeat(5);
    plain.send_frame(true, 1, from_plain.as_bytes()).await;
    for expected in [&from_deflate, &from_plain] {
        let a = next_data_frame(&mut squeezed).await;
        let b = next_data_frame(&mut other_squeezed).await;
        let p = next_data_frame(&mut plain).await;
        assert!(a.rsv1 && b.rsv1 && !p.rsv1);
        assert_eq!(a.payload, b.payload, "one compressed frame for all");
        for frame in [&a, &b, &p] {
            assert_eq!(message_of(frame), expected.as_bytes());
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_zip_bomb_is_closed_with_1009() {
    let mut config = test_config();
    config.max_message_size = 64 * 1024;
    let server = start_server_with(config).await;
    let mut client = deflate_client(&server, "/echo").await;
    // 16 MiB of zeros in about 16 KiB.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    client.send_raw(&compressed_frame(true, 2, &bomb)).await;
    assert_eq!(client.read_close().await, Some(1009));
    server.shutdown().await;
}

/// The memory bound: zlib state belongs to the thread, not the connection.
/// This test's runtime is current-thread, so the server's connections all
/// run here and this thread's count is exactly theirs.
#[tokio::test(flavor = "current_thread")]
async fn idle_negotiated_connections_hold_no_zlib_state() {
    let server = start_server().await;
    let text = "the same words again and again, ".repeat(20);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = deflate_client(&server, "/echo").await;
        client
            .send_raw(&compressed_frame(true, 1, &deflate(text.as_bytes())))
            .await;
        let echo = next_data_frame(&mut client).await;
        assert!(echo.rsv1);
        assert_eq!(message_of(&echo), text.as_bytes());
        clients.push(client);
    }
    // 50 negotiated connections, each of which inflated and deflated a
    // message, now idle: one compressor and one decompressor in all.
    assert_eq!(wshub::protocol::zlib_states_on_this_thread(), 2);
    assert!(wshub::protocol::live_zlib_states() >= 2);
    drop(clients);
    server.shutdown().await;
}

/// The byte-rate tests' server: 100,000 bytes a second, messages of up to
/// 200,000 bytes (one of them the burst).
fn at_100_kb_a_second() -> wshub::Config {
    let mut config = test_config();
    config.max_message_size = 200_000;
    config.rate = wshub::ratelimit::RateLimits::new(0, 0, 100_000, config.max_message_size);
    config
}

/// A raw client's byte rate counts what its compressed messages inflate
/// to, not only the bytes on the wire: of four messages of 100,000 zeros
/// (about 100 bytes each when compressed), each sent once the last is
/// back, at 100,000 bytes a second with a burst of one 200,000-byte
/// message, the fourth waits for the debt of the third to be paid.
#[tokio::test(start_paused = true)]
async fn compressed_messages_count_against_the_byte_rate_as_inflated() {
    let server = start_server_with(at_100_kb_a_second()).await;
    let mut client = deflate_client(&server, "/echo").await;
    let zeros = vec![0u8; 100_000];
    let frame = compressed_frame(true, 2, &deflate(&zeros));
    assert!(frame.len() < 1_000, "{}", frame.len());
    let started = tokio::time::Instant::now();
    for _ in 0..4 {
        client.send_raw(&frame).await;
        assert_eq!(message_of(&next_data_frame(&mut client).await), zeros);
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(1), "took {took:?}");
    server.shutdown().await;
}

/// A `wshub.v1` client over its byte rate has its messages dropped, not
/// delivered; but inflating a dropped message is work too, and a flood of
/// compressed zeros would be megabytes inflated a second for a few hundred
/// bytes sent, each answered `rate_limited`, until the close two seconds
/// later. What inflating a dropped message made is charged into debt and
/// pauses the connection's reads, which are small while it is over its
/// limits: such a flood (a message of 100,000 bytes every 10 ms, at
/// 100,000 bytes a second) is closed with 1008 after a handful of
/// messages inflated, not two hundred.
#[tokio::test(start_paused = true)]
async fn a_flood_of_dropped_compressed_messages_is_paused_then_closed() {
    let server = start_server_with(at_100_kb_a_second()).await;
    let headers = format!(
        "Sec-WebSocket-Protocol: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        wshub::protocol::v1::SUBPROTOCOL
    );
    let (mut client, agreed) = RawClient::connect_with_headers(server.addr, "/ws", &headers).await;
    assert_eq!(agreed.as_deref(), Some(AGREED));
    let padded = format!(r#"{{"type":"send","room":"r","text":"x"}}{}"#, " ".repeat(100_000));
    let frame = compressed_frame(true, 1, &deflate(padded.as_bytes()));
    assert!(frame.len() < 1_000, "{}", frame.len());
    let mut sent = 0;
    let mut rate_limited = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    let close = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            tokio::select! {
                _ = tick.tick(), if sent < 1_000 => {
                    client.send_raw(&frame).await;
                    sent += 1;
                }
                frame = client.read_frame() => {
                    let frame = frame.expect("connection open");
                    if frame.opcode == 8 {
                        return frame.close_code();
                    }
                    let json: serde_json::Value = serde_json::from_slice(&message_of(&frame)).unwrap();
                    rate_limited += usize::from(json["code"] == "rate_limited");
                }
            }
        }
    })
    .await
    .expect("a close in time");
    assert_eq!(close, Some(1008));
    assert!(
        (1..=20).contains(&rate_limited),
        "{rate_limited} of {sent} messages answered rate_limited"
    );
    server.shutdown().await;
}
