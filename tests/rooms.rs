//! Rooms: `/ws/{room}` in raw mode, `/ws` as `lobby`, room names checked
//! before the upgrade, isolation between rooms, raw and `wshub.v1` members
//! sharing a room, and rooms freed with their last member.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn raw_rooms_are_isolated() {
    let server = start_server().await;
    let mut kitchen = connect(&server.url("/ws/kitchen")).await;
    let mut garden = connect(&server.url("/ws/garden")).await;
    let mut lobby = connect(&server.url("/ws")).await;
    wait_for_connections(&server.hub, 3).await;
    send_text(&mut kitchen, "soup").await;
    send_text(&mut garden, "roses").await;
    send_text(&mut lobby, "hello").await;
    assert_eq!(next_message(&mut kitchen).await, Message::text("soup"));
    assert_eq!(next_message(&mut garden).await, Message::text("roses"));
    assert_eq!(next_message(&mut lobby).await, Message::text("hello"));
    assert_eq!(server.hub.room("lobby").unwrap().member_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_room_names_get_400_before_the_upgrade() {
    let server = start_server().await;
    for path in ["/ws/has%20space", "/ws/%C3%BC", &format!("/ws/{}", "x".repeat(65))] {
        match tokio_tungstenite::connect_async(server.url(path)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400, "{path}"),
            other => panic!("{path}: expected HTTP 400, got {other:?}"),
        }
    }
    connect(&server.url(&format!("/ws/{}", "x".repeat(64)))).await;
    connect(&server.url("/ws/a.b-c_9")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn raw_and_protocol_members_share_a_room() {
    let server = start_server().await;
    let mut raw = connect(&server.url("/ws/mixed")).await;
    let mut json = ChatClient::connect(&server).await;
    json.join("mixed", None).await;
    send_text(&mut raw, "from raw").await;
    assert_eq!(next_message(&mut raw).await, Message::text("from raw"));
    let (room, message) = json.next_chat().await;
    assert_eq!((room.as_str(), message.text.as_str()), ("mixed", "from raw"));
    assert!(message.nick.starts_with("guest-"));
    json.say("mixed", "from json").await;
    assert_eq!(next_message(&mut raw).await, Message::text("from json"));
    // Binary frames stay among raw members.
    futures_util::SinkExt::send(&mut raw, Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(next_message(&mut raw).await, Message::binary(vec![1, 2, 3]));
    assert_eq!(json.next_chat().await.1.text, "from json");
    server.shutdown().await;
}

#[tokio::test]
async fn one_connection_joins_and_leaves_several_rooms() {
    let server = start_server().await;
    let mut ann = ChatClient::connect(&server).await;
    let mut bob = ChatClient::connect(&server).await;
    ann.join("a", None).await;
    ann.join("b", None).await;
    bob.join("b", None).await;
    ann.recv_until(|f| matches!(f, ServerFrame::Joined { .. })).await;
    ann.say("a", "only a").await;
    ann.say("b", "only b").await;
    assert_eq!(brief(ann.next_chat().await), ("a".into(), 1, "only a".into()));
    assert_eq!(brief(ann.next_chat().await), ("b".into(), 1, "only b".into()));
    assert_eq!(brief(bob.next_chat().await), ("b".into(), 1, "only b".into()));
    ann.send(&ClientFrame::Leave { room: "b".into() }).await;
    bob.recv_until(|f| matches!(f, ServerFrame::Left { .. })).await;
    bob.say("b", "ann is gone").await;
    assert_eq!(bob.next_chat().await.1.text, "ann is gone");
    ann.say("a", "still in a").await;
    assert_eq!(ann.next_chat().await.1.text, "still in a", "nothing from b reached ann");
    assert!(server.hub.room("a").is_some());
    drop(ann);
    wait_for_connections(&server.hub, 1).await;
    assert!(server.hub.room("a").is_none(), "a room is freed with its last member");
    server.shutdown().await;
}

/// Room, id and text: ids count per room from 1.
fn brief((room, message): (String, ChatMessage)) -> (String, u64, String) {
    (room, message.id, message.text)
}
