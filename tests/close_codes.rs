//! Misbehaving clients are closed alone, with the right code: 1009 for an
//! oversized message, 1007 for invalid UTF-8, 1002 for protocol errors.
//! Everyone else keeps chatting.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Message;

async fn assert_closed_with(server: &TestServer, bytes: &[u8], code: u16) {
    let mut bystander = connect(&server.url("/ws")).await;
    let mut offender = RawClient::connect(server.addr, "/ws").await;
    offender.send_raw(bytes).await;
    assert_eq!(offender.read_close().await, Some(code));
    // Complete the handshake like a polite client; the server then ends TCP.
    offender.send_frame(true, 8, &code.to_be_bytes()).await;
    assert!(offender.is_closed_by_server().await);
    send_text(&mut bystander, "still fine").await;
    assert_eq!(next_message(&mut bystander).await, Message::text("still fine"));
    wait_for_connections(&server.hub, 1).await;
}

#[tokio::test]
async fn oversized_message_gets_1009() {
    let mut config = test_config();
    config.max_message_size = 1000;
    let server = start_server_with(config).await;
    assert_closed_with(&server, &RawClient::frame(true, 2, &[0; 1001]), 1009).await;
    // Over the limit across fragments, too.
    let mut fragmented = RawClient::frame(false, 2, &[0; 600]);
    fragmented.extend(RawClient::frame(true, 0, &[0; 600]));
    assert_closed_with(&server, &fragmented, 1009).await;
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_gets_1007() {
    let server = start_server().await;
    assert_closed_with(&server, &RawClient::frame(true, 1, &[b'o', b'k', 0xff, 0xfe]), 1007).await;
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_get_1002() {
    let server = start_server().await;
    let unmasked = [0x81, 0x02, b'h', b'i'];
    assert_closed_with(&server, &unmasked, 1002).await;
    let mut reserved_bits = RawClient::frame(true, 1, b"hi");
    reserved_bits[0] |= 0x40;
    assert_closed_with(&server, &reserved_bits, 1002).await;
    assert_closed_with(&server, &RawClient::frame(true, 0x3, b""), 1002).await;
    assert_closed_with(&server, &RawClient::frame(true, 0x0, b"orphan"), 1002).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_close_is_answered_with_1002_and_the_socket_ends() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    raw.send_frame(true, 8, &1005u16.to_be_bytes()).await;
    assert_eq!(raw.read_close().await, Some(1002));
    assert!(raw.is_closed_by_server().await, "no second close is awaited");
    server.shutdown().await;
}

/// A violation and the client's close in one write: the client hears the
/// violation's code, first, never its own code echoed back (1005 must
/// never travel), and the socket ends without waiting for another close.
#[tokio::test]
async fn a_violation_and_a_close_in_one_write_get_the_violations_code() {
    let server = start_server().await;
    let close = |code: u16| RawClient::frame(true, 8, &code.to_be_bytes());
    let reserved = RawClient::frame(true, 0x3, b"");
    let cases = [
        ([reserved.clone(), close(1005)].concat(), 1002),
        ([reserved, close(1000)].concat(), 1002),
        ([RawClient::frame(true, 1, &[0xff]), close(1000)].concat(), 1007),
        ([vec![0x81, 0x02, b'h', b'i'], close(1000)].concat(), 1002),
        ([RawClient::frame(false, 9, b""), close(4000)].concat(), 1002),
    ];
    for (bytes, code) in cases {
        let mut raw = RawClient::connect(server.addr, "/echo").await;
        raw.send_raw(&bytes).await;
        let first = tokio::time::timeout(PATIENCE, raw.read_frame())
            .await
            .expect("a frame in time");
        assert_eq!(first.and_then(|f| f.close_code()), Some(code), "for {bytes:02x?}");
        assert!(raw.is_closed_by_server().await, "for {bytes:02x?}");
    }
    server.shutdown().await;
}

/// A close header announcing 2^40 bytes, and none of them: 1002 on the
/// header alone, as a ping gets, not a read timeout while the payload
/// never comes.
#[tokio::test]
async fn a_close_header_over_125_bytes_gets_1002_at_once() {
    let server = start_server().await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    raw.send_raw(&[0x88, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78])
        .await;
    assert_eq!(raw.read_close().await, Some(1002));
    assert!(raw.is_closed_by_server().await, "no second close is awaited");
    server.shutdown().await;
}
