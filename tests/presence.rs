//! Presence: the member list after join, leave, a nickname change and an
//! abrupt disconnect (a killed client disappears at the latest when its
//! keepalive deadline expires).

mod common;

use std::time::Duration;

use common::*;

fn members(frame: &ServerFrame) -> Vec<(String, usize)> {
    match frame {
        ServerFrame::Presence { members, count, .. } => {
            assert_eq!(*count, members.iter().map(|m| m.connections).sum::<usize>());
            members.iter().map(|m| (m.nick.clone(), m.connections)).collect()
        }
        other => panic!("expected presence, got {other:?}"),
    }
}

async fn set_nick(client: &mut ChatClient, nick: &str) {
    client.send(&ClientFrame::Nick { nick: nick.into() }).await;
    assert_eq!(client.recv().await, ServerFrame::Nick { nick: nick.into() });
}

#[tokio::test]
async fn join_leave_and_rename_update_the_member_list() {
    let server = start_server().await;
    let mut ann = ChatClient::connect(&server).await;
    set_nick(&mut ann, "ann").await;
    let (_, presence) = ann.join("room", None).await;
    assert_eq!(members(&presence), [("ann".into(), 1)]);

    let mut bob = ChatClient::connect(&server).await;
    set_nick(&mut bob, "bob").await;
    let (_, presence) = bob.join("room", None).await;
    assert_eq!(members(&presence), [("ann".into(), 1), ("bob".into(), 1)]);
    assert_eq!(
        ann.recv().await,
        ServerFrame::Joined {
            room: "room".into(),
            nick: "bob".into(),
            user: None,
        }
    );

    // A second tab with the same nickname counts twice.
    let mut bob2 = ChatClient::connect(&server).await;
    set_nick(&mut bob2, "bob").await;
    let (_, presence) = bob2.join("room", None).await;
    assert_eq!(members(&presence), [("ann".into(), 1), ("bob".into(), 2)]);

    set_nick(&mut bob2, "robert").await;
    ann.send(&ClientFrame::Members { room: "room".into() }).await;
    let frames = ann.recv_until(|f| matches!(f, ServerFrame::Presence { .. })).await;
    assert_eq!(
        members(frames.last().unwrap()),
        [("ann".into(), 1), ("bob".into(), 1), ("robert".into(), 1)]
    );

    bob.send(&ClientFrame::Leave { room: "room".into() }).await;
    let frames = ann
        .recv_until(|f| matches!(f, ServerFrame::Left { nick, .. } if nick == "bob"))
        .await;
    assert!(!frames.is_empty());
    ann.send(&ClientFrame::Members { room: "room".into() }).await;
    let frames = ann.recv_until(|f| matches!(f, ServerFrame::Presence { .. })).await;
    assert_eq!(
        members(frames.last().unwrap()),
        [("ann".into(), 1), ("robert".into(), 1)]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_closed_connection_leaves_at_once() {
    let server = start_server().await;
    let mut ann = ChatClient::connect(&server).await;
    set_nick(&mut ann, "ann").await;
    ann.join("room", None).await;
    let mut bob = ChatClient::connect(&server).await;
    set_nick(&mut bob, "bob").await;
    bob.join("room", None).await;
    ann.recv_until(|f| matches!(f, ServerFrame::Joined { .. })).await;
    drop(bob); // TCP goes away without a close frame
    let frames = ann.recv_until(|f| matches!(f, ServerFrame::Left { .. })).await;
    assert_eq!(
        frames.last().unwrap(),
        &ServerFrame::Left {
            room: "room".into(),
            nick: "bob".into(),
            user: None,
        }
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_vanished_client_leaves_when_its_read_deadline_expires() {
    let server = start_server().await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("room", None).await;
    // A raw client in the same room that goes quiet (a killed laptop: no
    // FIN, no RST, no pongs).
    let _quiet = RawClient::connect(server.addr, "/ws/room").await;
    ann.recv_until(|f| matches!(f, ServerFrame::Joined { .. })).await;
    // ann keeps reading (tungstenite answers pings meanwhile).
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut ann.ws).await {
            if let Ok(text) = message.into_text() {
                if let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) {
                    let _ = frames_tx.send(frame);
                }
            }
        }
    });
    let room = server.hub.room("room").unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(room.member_count(), 2, "within the read timeout");
    assert!(frames.try_recv().is_err(), "no event yet");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(room.member_count(), 1, "gone within read_timeout + 1 s");
    match frames.try_recv() {
        Ok(ServerFrame::Left { nick, .. }) => assert!(nick.starts_with("guest-")),
        other => panic!("expected left, got {other:?}"),
    }
    reader.abort();
    server.shutdown().await;
}
