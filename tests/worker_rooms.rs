//! Rooms across four workers (on whatever cores the machine has): senders
//! and receivers on different workers, wshub.v1 and raw alike, all see a
//! room's messages in one order, with ids that increase; a catch-up after
//! that misses nothing and repeats nothing.

mod common;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const WORKERS: usize = 4;
const SENDERS: usize = 4;
const LISTENERS: usize = 4;
const MESSAGES_PER_SENDER: usize = 100;
const TOTAL: usize = SENDERS * MESSAGES_PER_SENDER;

async fn read_chats(client: &mut ChatClient, n: usize) -> Vec<(u64, String)> {
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        let (_, message) = client.next_chat().await;
        seen.push((message.id, message.text));
    }
    seen
}

#[tokio::test]
async fn members_on_every_worker_see_one_order_and_catch_up_without_gaps() {
    let mut config = test_config();
    config.workers = WORKERS;
    let server = start_server_with(config).await;
    let mut chats = Vec::new();
    for _ in 0..SENDERS + LISTENERS {
        let mut client = ChatClient::connect(&server).await;
        client.join("order", None).await;
        chats.push(client);
    }
    let mut raws = Vec::new();
    for _ in 0..WORKERS {
        raws.push(connect(&server.url("/ws/order")).await);
    }
    wait_for_connections(&server.hub, SENDERS + LISTENERS + WORKERS).await;
    let per_worker = server.hub.connections_per_worker();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "every worker holds members: {per_worker:?}"
    );

    let mut tasks = Vec::new();
    for (i, mut client) in chats.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            if i < SENDERS {
                for n in 0..MESSAGES_PER_SENDER {
                    client.say("order", &format!("{i}:{n}")).await;
                }
            }
            let seen = read_chats(&mut client, TOTAL).await;
            (client, seen)
        }));
    }
    let mut raw_tasks = Vec::new();
    for mut raw in raws {
        raw_tasks.push(tokio::spawn(async move {
            let mut texts = Vec::new();
            while texts.len() < TOTAL {
                match tokio::time::timeout(PATIENCE, raw.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => texts.push(text.to_string()),
                    other => panic!("raw member: {other:?}"),
                }
            }
            texts
        }));
    }
    let mut sequences = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (client, seen) = task.await.expect("member task");
        sequences.push(seen);
        clients.push(client);
    }
    let first = sequences[0].clone();
    for (i, seen) in sequences.iter().enumerate() {
        assert!(*seen == first, "member {i} saw another order");
    }
    let ids: Vec<u64> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=TOTAL as u64).collect::<Vec<_>>(), "ids increase by one");
    for sender in 0..SENDERS {
        let own: Vec<usize> = first
            .iter()
            .filter_map(|(_, text)| text.strip_prefix(&format!("{sender}:")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            own,
            (0..MESSAGES_PER_SENDER).collect::<Vec<_>>(),
            "sender {sender} in order"
        );
    }
    let texts: Vec<String> = first.iter().map(|(_, text)| text.clone()).collect();
    for task in raw_tasks {
        assert_eq!(task.await.expect("raw task"), texts, "raw members see the same order");
    }

    // A client that saw up to id 150 catches up with exactly the rest.
    let mut late = ChatClient::connect(&server).await;
    let (replayed, _) = late.join("order", Some(150)).await;
    let replayed_ids: Vec<u64> = replayed.iter().map(|m| m.id).collect();
    assert_eq!(replayed_ids, (151..=TOTAL as u64).collect::<Vec<_>>());
    drop(clients);
    server.shutdown().await;
}

#[tokio::test]
async fn a_history_answer_holds_nothing_its_asker_has_not_been_sent_live() {
    use wshub::protocol::v1::{ClientFrame, ServerFrame};
    let mut config = test_config();
    config.workers = WORKERS;
    let server = start_server_with(config).await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let mut client = ChatClient::connect(&server).await;
        client.join("asked", None).await;
        senders.push(client);
    }
    let mut askers = Vec::new();
    for _ in 0..WORKERS {
        let mut client = ChatClient::connect(&server).await;
        client.join("asked", None).await;
        askers.push(client);
    }
    wait_for_connections(&server.hub, SENDERS + WORKERS).await;
    for mut sender in senders {
        tokio::spawn(async move {
            for n in 0..MESSAGES_PER_SENDER {
                sender.say("asked", &format!("{n}")).await;
            }
            // Stays connected (a member) until the test ends.
            std::future::pending::<()>().await;
        });
    }
    let mut tasks = Vec::new();
    for mut asker in askers {
        tasks.push(tokio::spawn(async move {
            let mut live = std::collections::BTreeSet::new();
            let mut answers = 0;
            while live.len() < TOTAL {
                let ask = ClientFrame::History {
                    room: "asked".into(),
                    since: None,
                    limit: Some(3),
                };
                asker.send(&ask).await;
                loop {
                    match asker.recv().await {
                        ServerFrame::Message { message, .. } => {
                            live.insert(message.id);
                        }
                        ServerFrame::History { messages, .. } => {
                            for message in &messages {
                                assert!(
                                    live.contains(&message.id),
                                    "id {} in a history answer before its live copy",
                                    message.id
                                );
                            }
                            answers += 1;
                            break;
                        }
                        ServerFrame::Joined { .. } | ServerFrame::Left { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            answers
        }));
    }
    for task in tasks {
        assert!(task.await.expect("asker") > 0);
    }
    server.shutdown().await;
}
