//! `/ws` broadcasts every message to every client (the sender too), exactly
//! once, unchanged, in each sender's order; leaving removes the member.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn three_clients_each_receive_every_message_once_in_order() {
    let server = start_server().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server.url("/ws")).await);
    }
    wait_for_connections(&server.hub, 3).await;
    let per_sender = 20;
    for round in 0..per_sender {
        for (sender, client) in clients.iter_mut().enumerate() {
            let message = if sender == 2 {
                Message::binary(vec![sender as u8, round as u8])
            } else {
                Message::text(format!("{sender}:{round}"))
            };
            client.send(message).await.unwrap();
        }
    }
    for client in clients.iter_mut() {
        let mut next_round = [0usize; 3];
        for _ in 0..3 * per_sender {
            let (sender, round) = match next_message(client).await {
                Message::Text(text) => {
                    let (s, r) = text.split_once(':').unwrap();
                    (s.parse::<usize>().unwrap(), r.parse::<usize>().unwrap())
                }
                Message::Binary(bytes) => (bytes[0] as usize, bytes[1] as usize),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(round, next_round[sender], "sender {sender} out of order or duplicated");
            next_round[sender] += 1;
        }
        assert_eq!(next_round, [per_sender; 3]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn leaving_removes_the_member_and_the_others_keep_chatting() {
    let server = start_server().await;
    let mut a = connect(&server.url("/ws")).await;
    let mut b = connect(&server.url("/ws")).await;
    let c = connect(&server.url("/ws")).await;
    wait_for_connections(&server.hub, 3).await;
    assert_eq!(server.hub.room("lobby").unwrap().member_count(), 3);
    drop(c); // abrupt: no close frame, the socket just goes
    a.close(None).await.unwrap();
    wait_for_connections(&server.hub, 1).await;
    assert_eq!(server.hub.room("lobby").unwrap().member_count(), 1);
    send_text(&mut b, "still here").await;
    assert_eq!(next_message(&mut b).await, Message::text("still here"));
    drop(b);
    wait_for_connections(&server.hub, 0).await;
    assert!(server.hub.room("lobby").is_none(), "an empty room is freed");
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_counts_connections_per_endpoint() {
    let server = start_server().await;
    let _chat = connect(&server.url("/ws")).await;
    let _echo1 = connect(&server.url("/echo")).await;
    let _echo2 = connect(&server.url("/echo")).await;
    wait_for_connections(&server.hub, 3).await;
    let json = common::http_get(server.addr, "/healthz").await.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["connections"]["echo"], 2);
    assert_eq!(json["connections"]["chat"], 1);
    assert_eq!(json["connections"]["total"], 3);
    assert_eq!(json["rooms"], 1);
    server.shutdown().await;
}
