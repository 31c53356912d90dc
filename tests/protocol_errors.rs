//! Bad `wshub.v1` input: each kind gets an error frame with its own code,
//! the connection stays usable, and nothing reaches other clients or the
//! history; a client that keeps sending garbage is closed with 1008.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn strict_config() -> wshub::Config {
    let mut config = test_config();
    config.chat.max_text_bytes = 16;
    config.chat.max_rooms = 2;
    config.chat.max_bad_requests = 100;
    config
}

/// Sends `raw` and expects an error frame with `code`.
async fn refused(client: &mut ChatClient, raw: Message, code: ErrorCode) {
    client.ws.send(raw.clone()).await.unwrap();
    assert_eq!(client.next_error().await, code, "for {raw:?}");
}

#[tokio::test]
async fn every_bad_request_gets_its_own_code_and_the_connection_stays() {
    let server = start_server_with(strict_config()).await;
    let mut bystander = ChatClient::connect(&server).await;
    bystander.join("r", None).await;
    let mut client = ChatClient::connect(&server).await;
    client.join("r", None).await;

    let text = |s: &str| Message::text(s.to_owned());
    refused(&mut client, text("{nope"), ErrorCode::BadJson).await;
    refused(&mut client, text("[1,2]"), ErrorCode::BadJson).await;
    refused(&mut client, Message::binary(vec![1, 2, 3]), ErrorCode::BadJson).await;
    refused(&mut client, text(r#"{"type":"dance"}"#), ErrorCode::UnknownType).await;
    refused(&mut client, text(r#"{"room":"r"}"#), ErrorCode::MissingField).await;
    refused(
        &mut client,
        text(r#"{"type":"send","room":"r"}"#),
        ErrorCode::MissingField,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"send","room":5,"text":"x"}"#),
        ErrorCode::BadField,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"send","room":"r","text":"x","extra":1}"#),
        ErrorCode::BadField,
    )
    .await;
    let long_nick = format!(r#"{{"type":"nick","nick":"{}"}}"#, "n".repeat(33));
    refused(&mut client, text(&long_nick), ErrorCode::BadNick).await;
    refused(
        &mut client,
        text(r#"{"type":"nick","nick":"a\nb"}"#),
        ErrorCode::BadNick,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"nick","nick":"bell\u0007"}"#),
        ErrorCode::BadNick,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"send","room":"r","text":"seventeen bytes!!"}"#),
        ErrorCode::TooLong,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"join","room":"no spaces"}"#),
        ErrorCode::BadRoom,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"join","room":"r"}"#),
        ErrorCode::AlreadyJoined,
    )
    .await;
    refused(
        &mut client,
        text(r#"{"type":"send","room":"elsewhere","text":"x"}"#),
        ErrorCode::NotJoined,
    )
    .await;
    client.join("second", None).await;
    refused(
        &mut client,
        text(r#"{"type":"join","room":"third"}"#),
        ErrorCode::TooManyRooms,
    )
    .await;

    // Still usable: a good message goes through, and it is the first one
    // anybody saw: nothing from the bad requests reached the room.
    client.say("r", "fine").await;
    let (_, message) = bystander.next_chat().await;
    assert_eq!((message.id, message.text.as_str()), (1, "fine"));
    let mut late = ChatClient::connect(&server).await;
    let (history, _) = late.join("r", None).await;
    assert_eq!(history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["fine"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_keeps_sending_garbage_is_closed_with_1008() {
    let mut config = test_config();
    config.chat.max_bad_requests = 3;
    let server = start_server_with(config).await;
    let mut bystander = ChatClient::connect(&server).await;
    bystander.join("r", None).await;
    let mut client = ChatClient::connect(&server).await;
    for _ in 0..3 {
        refused(&mut client, Message::text("garbage"), ErrorCode::BadJson).await;
    }
    client.ws.send(Message::text("one more")).await.unwrap();
    assert_eq!(client.next_error().await, ErrorCode::BadJson);
    assert_eq!(expect_close(&mut client.ws).await, 1008);
    // The others are not disturbed.
    bystander.say("r", "still here").await;
    assert_eq!(bystander.next_chat().await.1.text, "still here");
    server.shutdown().await;
}

/// Every field is bounded, not only `text`: a short text with a huge `ref`
/// (which would travel to every member) is refused unread, a `ref` over
/// 128 bytes is refused without being echoed, and so is a huge nickname or
/// room name; nothing reaches the other member.
#[tokio::test]
async fn a_huge_ref_nick_or_room_is_refused_and_reaches_no_one() {
    let server = start_server().await;
    let mut bystander = ChatClient::connect(&server).await;
    bystander.join("r", None).await;
    let mut client = ChatClient::connect(&server).await;
    client.join("r", None).await;
    let huge = "x".repeat(900_000);
    let send = |client_ref: &str| {
        serde_json::json!({"type": "send", "room": "r", "text": "hi", "ref": client_ref}).to_string()
    };
    // 900,000 bytes of ref: over the request bound (6 x 4 KiB + 1 KiB).
    client.send_raw_text(&send(&huge)).await;
    assert_eq!(client.next_error().await, ErrorCode::TooLong);
    // Within the request bound but over the ref bound: refused, not echoed.
    client.send_raw_text(&send(&"r".repeat(129))).await;
    match client.recv().await {
        ServerFrame::Error {
            code: ErrorCode::BadField,
            client_ref,
            ..
        } => assert_eq!(client_ref, None),
        other => panic!("expected bad_field, got {other:?}"),
    }
    let nick = serde_json::json!({"type": "nick", "nick": huge}).to_string();
    client.send_raw_text(&nick).await;
    assert_eq!(client.next_error().await, ErrorCode::TooLong);
    let room = serde_json::json!({"type": "join", "room": "y".repeat(20_000)}).to_string();
    client.send_raw_text(&room).await;
    match client.recv().await {
        ServerFrame::Error {
            code: ErrorCode::BadRoom,
            room,
            ..
        } => assert_eq!(room, None, "a long bad name is not sent back"),
        other => panic!("expected bad_room, got {other:?}"),
    }
    // A ref at the bound is fine, and the connection still works.
    client.send_raw_text(&send(&"r".repeat(128))).await;
    let (_, message) = bystander.next_chat().await;
    assert_eq!(message.text, "hi");
    let (_, own) = client.next_chat().await;
    assert_eq!(own.text, "hi");
    server.shutdown().await;
}
