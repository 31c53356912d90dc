//! Scale-out through Redis: several nodes (in-process servers, and `wshub`
//! binaries where one has to die) share rooms, one message order, history
//! and presence through a real `redis-server`; a node that dies leaves,
//! Redis going away and coming back degrades chat to node-local and then
//! restores it (clients told by `notice` frames, not errors), a node started
//! without Redis works alone until Redis appears, and `/healthz` says where
//! history is, whether Redis is connected and since when it is not.
//!
//! Frames are read as JSON values rather than the library's types, so that
//! the fields the fault tests look at (`local`, the `cross_node_*` notice
//! codes) are checked as they are on the wire.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::redis::{free_port, redis_url, RedisServer, WshubProcess};
use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn healthz_says_where_history_is_and_whether_redis_is_connected() {
    // Started with Redis away: serving, degraded since start-up.
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let port = free_port();
    let alone = start_node(node_config(&redis_url(port), "alone")).await;
    let (code, health) = healthz(alone.addr).await;
    assert_eq!((code, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert_eq!(health["redis"]["connected"], false, "{health}");
    assert!(down_since(&health) >= started, "{health}");
    assert_eq!(
        health["history"], "redis",
        "history is Redis's, not the local store: {health}"
    );
    alone.shutdown().await;

    let mut redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let (code, health) = healthz(a.addr).await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")), "{health}");
    assert_eq!(health["history"], "redis", "{health}");
    assert_eq!(health["redis"]["connected"], true, "{health}");
    assert_eq!(health["redis"]["node"], "a", "{health}");
    assert!(health["redis"]["down_since"].is_null(), "{health}");

    let lost = std::time::SystemTime::now() - Duration::from_secs(1);
    redis.stop().await;
    let (code, health) = healthz_until(a.addr, "degraded", REDIS_FAULT_BOUND).await;
    assert_eq!(code, 200, "a degraded node still serves its clients: {health}");
    assert_eq!(health["redis"]["connected"], false, "{health}");
    assert!(
        down_since(&health) >= lost,
        "down since the loss, not since start-up: {health}"
    );

    redis.restart().await;
    let (code, health) = healthz_until(a.addr, "ok", REDIS_FAULT_BOUND).await;
    assert_eq!(code, 200);
    assert_eq!(health["redis"]["connected"], true, "{health}");
    assert!(health["redis"]["down_since"].is_null(), "{health}");
    a.shutdown().await;
}

#[tokio::test]
async fn healthz_without_redis_names_the_local_store() {
    let server = start_server().await;
    let (code, health) = healthz(server.addr).await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")), "{health}");
    assert_eq!(health["history"], "memory", "{health}");
    assert!(health.get("redis").is_none(), "{health}");
    server.shutdown().await;
}

#[test]
fn help_lists_the_redis_options() {
    let output = wshub_command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in ["--redis", "WSHUB_REDIS", "--node-id"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

/// A client that joins as soon as a node listens, Redis being there all
/// along, is served cross-node from the start: no `cross_node_interrupted`,
/// and its message is numbered and reaches the other node (a node that has
/// just been restarted gets its clients back at once).
#[tokio::test]
async fn a_node_is_connected_to_redis_when_it_starts_serving() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("early", None).await;
    let b = start_node(node_config(&redis.url(), "b")).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    let (_, presence) = bob.join("early", None).await;
    assert_eq!(members_of(&presence), nicks(&[("ann", 1), ("bob", 1)]));
    say_and_see(1, &mut [&mut ann, &mut bob], "early", "first words on a new node").await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn chat_crosses_nodes_and_history_is_shared() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;

    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    let (history, _) = ann.join("r", None).await;
    assert!(history.is_empty(), "a fresh Redis has no history: {history:?}");
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("r", None).await;

    // bob's join on B completed before ann sends on A: he must get it.
    let first = say_and_see(0, &mut [&mut ann, &mut bob], "r", "hello from A").await;
    let second = say_and_see(1, &mut [&mut ann, &mut bob], "r", "hello from B").await;
    assert_eq!(second, first + 1, "one sequence per room, shared by the nodes");

    let mut more = Vec::new();
    for i in 0..8 {
        let sender = i % 2;
        more.push(say_and_see(sender, &mut [&mut ann, &mut bob], "r", &format!("m{i}")).await);
    }
    assert_eq!(more, (second + 1..=second + 8).collect::<Vec<_>>());

    // A third node that never saw the room replays the latest messages
    // (--join-history 5) from Redis.
    let mut config = node_config(&redis.url(), "c");
    config.join_history = 5;
    let c = node_with(config).await;
    let mut cid = Peer::connect(&c.url("/ws"), "cid").await;
    let (history, presence) = cid.join("r", None).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["m3", "m4", "m5", "m6", "m7"],
        "the last --join-history messages, oldest first: {history:?}"
    );
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        (second + 4..=second + 8).collect::<Vec<_>>()
    );
    assert_eq!(history[0].nick, "bob");
    assert_eq!(
        members_of(&presence),
        nicks(&[("ann", 1), ("bob", 1), ("cid", 1)]),
        "the snapshot after join lists members of every node"
    );
    // And catch-up with `since` from the very beginning on yet another node.
    let mut dee = Peer::connect(&b.url("/ws"), "dee").await;
    let (history, _) = dee.join("r", Some(0)).await;
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        (first..=second + 8).collect::<Vec<_>>()
    );
    assert_eq!(history[0].text, "hello from A");
    assert_eq!(history[0].nick, "ann");

    for server in [a, b, c] {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn every_node_delivers_the_same_order_under_concurrent_senders() {
    const PER_SENDER: usize = 100;
    const SENDERS: usize = 3;
    const TOTAL: usize = PER_SENDER * SENDERS;
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node(&redis.url(), name).await);
    }
    let mut senders = Vec::new();
    let mut listeners = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let mut sender = Peer::connect(&node.url("/ws"), &format!("s{k}")).await;
        sender.join("o", None).await;
        senders.push(sender);
        let mut listener = Peer::connect(&node.url("/ws"), &format!("l{k}")).await;
        listener.join("o", None).await;
        listeners.push(listener);
    }

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(SENDERS));
    let mut tasks = Vec::new();
    for (k, mut sender) in senders.into_iter().enumerate() {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..PER_SENDER {
                sender.say("o", &format!("s{k} #{i}")).await;
            }
            let got = sender.messages(TOTAL, Duration::from_secs(60)).await;
            (sender.name.clone(), got)
        }));
    }
    for mut listener in listeners {
        tasks.push(tokio::spawn(async move {
            let got = listener.messages(TOTAL, Duration::from_secs(60)).await;
            (listener.name.clone(), got)
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("reader task"));
    }

    let (first_name, reference) = &seen[0];
    for (name, got) in &seen[1..] {
        if let Some(at) = (0..TOTAL).find(|&i| got[i] != reference[i]) {
            panic!(
                "{name} and {first_name} differ at position {at}: {:?} vs {:?}",
                got[at], reference[at]
            );
        }
    }
    assert!(reference.iter().all(|m| !m.local), "no message is local");
    let ids: Vec<u64> = reference.iter().map(|m| m.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {:?}",
        ids.windows(2).find(|w| w[0] >= w[1])
    );
    assert_eq!(
        ids,
        (ids[0]..ids[0] + TOTAL as u64).collect::<Vec<_>>(),
        "ids increase by one (one per-room sequence)"
    );
    // Nothing lost, nothing twice, and each sender's messages in its order.
    let mut per_sender: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for message in reference {
        let (who, number) = message.text.split_once(" #").expect("sN #i");
        assert_eq!(message.nick, who, "nick of {message:?}");
        per_sender
            .entry(who.to_string())
            .or_default()
            .push(number.parse().unwrap());
    }
    assert_eq!(per_sender.len(), SENDERS);
    for (who, numbers) in per_sender {
        assert_eq!(numbers, (0..PER_SENDER).collect::<Vec<_>>(), "{who}'s messages");
    }
    for server in nodes {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn catch_up_on_another_node_after_a_reconnect() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let mut config = node_config(&redis.url(), "c");
    config.join_history = 5;
    let c = node_with(config).await;

    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("c", None).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("c", None).await;
    let mut seen = 0;
    for i in 0..10 {
        seen = say_and_see(1, &mut [&mut ann, &mut bob], "c", &format!("before {i}")).await;
    }
    ann.ws.close(None).await.ok();
    drop(ann);

    for i in 0..25 {
        bob.say("c", &format!("missed {i}")).await;
        assert_eq!(bob.next_message().await.text, format!("missed {i}"));
    }
    // bob keeps talking (on B) while ann comes back on C and catches up.
    let talker = tokio::spawn(async move {
        for i in 0..100 {
            bob.say("c", &format!("live {i}")).await;
        }
        let got = bob.messages(100, Duration::from_secs(30)).await;
        assert_eq!(got.last().unwrap().text, "live 99");
        bob
    });
    let mut ann = Peer::connect(&c.url("/ws"), "ann").await;
    let (replayed, _) = ann.join("c", Some(seen)).await;
    assert!(
        replayed.len() >= 25,
        "at least the 25 missed messages are replayed: {replayed:?}"
    );
    let mut got = replayed;
    let more = 125 - got.len().min(125);
    got.extend(ann.messages(more, Duration::from_secs(30)).await);
    let ids: Vec<u64> = got.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        (seen + 1..=seen + 125).collect::<Vec<_>>(),
        "every id after {seen}, once, in order"
    );
    let texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..25)
        .map(|i| format!("missed {i}"))
        .chain((0..100).map(|i| format!("live {i}")))
        .collect();
    assert_eq!(texts, expected);
    assert!(
        ann.recv_within(Duration::from_millis(300))
            .await
            .is_none_or(|f| kind(&f) != "message"),
        "nothing after the last message (no duplicates)"
    );
    let _bob = talker.await.expect("talker");

    // A plain join on C gets the last --join-history (5).
    let mut cid = Peer::connect(&c.url("/ws"), "cid").await;
    let (history, _) = cid.join("c", None).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["live 95", "live 96", "live 97", "live 98", "live 99"]
    );
    assert_eq!(history.last().unwrap().id, seen + 125);
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

/// Redis trims a room's stream only roughly (`MAXLEN ~`): a catch-up from
/// before what `--history-max-messages` keeps may get more than that, or a
/// `history_truncated` first, but never a silent hole between the replay and
/// the live messages.
#[tokio::test]
async fn catch_up_beyond_the_retention_has_no_silent_gap() {
    let redis = RedisServer::start().await;
    let configure = |name| {
        let mut config = node_config(&redis.url(), name);
        config.history.max_messages_per_room = 10;
        config
    };
    let a = node_with(configure("a")).await;
    let b = node_with(configure("b")).await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("t", None).await;
    let mut last = 0;
    for i in 1..=30 {
        ann.say("t", &format!("m{i}")).await;
        last = ann.next_message().await.id;
    }
    assert_eq!(last, 30);

    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.send(json!({"type": "join", "room": "t", "since": 3})).await;
    let mut truncated_at = None;
    let mut replayed = Vec::new();
    loop {
        let frame = bob.recv().await;
        match kind(&frame) {
            "error" if frame["code"] == "history_truncated" => {
                truncated_at = frame["first_available"].as_u64();
                assert!(truncated_at.is_some(), "{frame}");
            }
            "history" => replayed.extend(frame["messages"].as_array().unwrap().iter().map(Msg::of)),
            "presence" => break,
            _ => panic!("unexpected frame while joining: {frame}"),
        }
    }
    let ids: Vec<u64> = replayed.iter().map(|m| m.id).collect();
    let first = truncated_at.unwrap_or(4);
    assert_eq!(
        ids,
        (first..=30).collect::<Vec<_>>(),
        "after since=3: everything from {first} (history_truncated: {truncated_at:?}) to the latest, 30"
    );
    assert!(ids.len() >= 10, "at least --history-max-messages kept");
    // Live messages continue right after.
    ann.say("t", "m31").await;
    assert_eq!(bob.next_message().await.id, 31);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn raw_clients_chat_across_nodes() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    // A wshub.v1 member on A sees the raw members arrive, from both nodes.
    let mut obs = Peer::connect(&a.url("/ws"), "obs").await;
    obs.join("rr", None).await;
    let mut raw_b = connect(&b.url("/ws/rr")).await;
    obs.wait_for("raw member of B joined", PATIENCE, |_| false, |f| kind(f) == "joined")
        .await;
    let mut raw_a = connect(&a.url("/ws/rr")).await;
    obs.wait_for("raw member of A joined", PATIENCE, |_| false, |f| kind(f) == "joined")
        .await;

    let expected = [Message::text("raw hello from A"), Message::binary(vec![0u8, 1, 2, 255])];
    send_text(&mut raw_a, "raw hello from A").await;
    // The binary is sent once the text has come back through Redis, so the
    // order below is fixed (two senders on two nodes have no order of their
    // own).
    assert_eq!(raw_next(&mut raw_a).await, expected[0], "raw A, own text");
    raw_b.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(raw_next(&mut raw_b).await, expected[0], "raw B, text from A");
    let from_a = obs.next_message().await;
    assert_eq!(from_a.text, "raw hello from A");
    assert!(from_a.nick.starts_with("guest-") && from_a.id > 0, "{from_a:?}");
    assert_eq!(raw_next(&mut raw_a).await, expected[1], "raw A, binary from B");
    assert_eq!(raw_next(&mut raw_b).await, expected[1], "raw B, own binary");

    send_text(&mut raw_b, "raw from B").await;
    assert_eq!(raw_next(&mut raw_a).await, Message::text("raw from B"));
    assert_eq!(raw_next(&mut raw_b).await, Message::text("raw from B"));
    let from_b = obs.next_message().await;
    assert_eq!(from_b.text, "raw from B", "binary frames never reach wshub.v1 members");
    assert_eq!(from_b.id, from_a.id + 1);

    obs.say("rr", "json from A").await;
    assert_eq!(obs.next_message().await.text, "json from A");
    assert_eq!(raw_next(&mut raw_a).await, Message::text("json from A"));
    assert_eq!(raw_next(&mut raw_b).await, Message::text("json from A"));
    a.shutdown().await;
    b.shutdown().await;
}

/// A client on `url` holding a token for `name` / `sub`: its nickname is
/// the token's, so it sends no `nick`.
async fn token_peer(url: &str, sub: &str, name: &str) -> Peer {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "name": name, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap();
    let ChatClient { ws } = ChatClient::connect_url(&format!("{url}?token={token}")).await;
    Peer {
        name: format!("{name}({sub})@{url}"),
        ws,
    }
}

#[tokio::test]
async fn user_ids_cross_nodes_with_messages_presence_and_history() {
    let redis = RedisServer::start().await;
    let with_tokens = |name: &str| {
        let mut config = node_config(&redis.url(), name);
        config.auth = Some(wshub::auth::AuthSource::Secret(wshub::auth::Secret::new(TOKEN_SECRET)));
        config
    };
    let a = node_with(with_tokens("a")).await;
    let b = node_with(with_tokens("b")).await;
    let mut dana = token_peer(&a.url("/ws"), "u-dana", "Dana").await;
    dana.join("u", None).await;
    let mut other = token_peer(&b.url("/ws"), "u-other", "Dana").await;
    let (_, presence) = other.join("u", None).await;
    let entries = |presence: &Value| -> Vec<Value> { presence["members"].as_array().unwrap().clone() };
    assert_eq!(
        entries(&presence),
        [
            json!({"nick": "Dana", "user": "u-dana", "connections": 1}),
            json!({"nick": "Dana", "user": "u-other", "connections": 1})
        ],
        "two users named Dana on two nodes are two entries"
    );
    let joined = dana
        .wait_for("joined", PATIENCE, |_| false, |f| kind(f) == "joined")
        .await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "u", "nick": "Dana", "user": "u-other"})
    );

    dana.say("u", "from A").await;
    let message = other
        .wait_for("message", PATIENCE, is_presence_event, |f| kind(f) == "message")
        .await;
    assert_eq!((&message["nick"], &message["user"]), (&json!("Dana"), &json!("u-dana")));

    // From the room's stream, on a node that never saw the message.
    let c = node_with(with_tokens("c")).await;
    let mut late = token_peer(&c.url("/ws"), "u-late", "Lee").await;
    late.send(json!({"type": "join", "room": "u", "since": 0})).await;
    let history = late
        .wait_for("history", PATIENCE, |_| false, |f| kind(f) == "history")
        .await;
    let first = &history["messages"][0];
    assert_eq!(
        (&first["text"], &first["user"]),
        (&json!("from A"), &json!("u-dana")),
        "{history}"
    );
    for server in [a, b, c] {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn presence_spans_nodes() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;

    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    let (_, presence) = ann.join("p", None).await;
    assert_eq!(members_of(&presence), nicks(&[("ann", 1)]));

    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    let (_, presence) = bob.join("p", None).await;
    assert_eq!(
        members_of(&presence),
        nicks(&[("ann", 1), ("bob", 1)]),
        "bob's snapshot on B lists ann, on A"
    );
    let joined = ann
        .wait_for("joined bob", PATIENCE, |_| false, |f| kind(f) == "joined")
        .await;
    assert_eq!(joined, json!({"type": "joined", "room": "p", "nick": "bob"}));

    // A second "bob" on A: connections add up across nodes.
    let mut bob_too = Peer::connect(&a.url("/ws"), "bob").await;
    let (_, presence) = bob_too.join("p", None).await;
    assert_eq!(members_of(&presence), nicks(&[("ann", 1), ("bob", 2)]));
    bob.wait_members("p", &[("ann", 1), ("bob", 2)], PATIENCE).await;
    ann.wait_members("p", &[("ann", 1), ("bob", 2)], PATIENCE).await;

    // ann leaves on A: bob on B is told, and later snapshots agree.
    ann.send(json!({"type": "leave", "room": "p"})).await;
    let left = bob
        .wait_for("left ann", PATIENCE, |f| kind(f) == "joined", |f| kind(f) == "left")
        .await;
    assert_eq!(left, json!({"type": "left", "room": "p", "nick": "ann"}));
    assert_eq!(bob.members("p").await, nicks(&[("bob", 2)]));

    // The second bob's connection drops on A: B sees bob leave once.
    drop(bob_too);
    let left = bob
        .wait_for("left bob", PATIENCE, |f| kind(f) == "joined", |f| kind(f) == "left")
        .await;
    assert_eq!(left, json!({"type": "left", "room": "p", "nick": "bob"}));
    assert_eq!(bob.members("p").await, nicks(&[("bob", 1)]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_killed_node_leaves_the_member_lists() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let node_args = |name: &'static str| ["--redis", url.as_str(), "--node-id", name, "--history", "memory"];
    let mut x = WshubProcess::spawn(&node_args("x"));
    let y = WshubProcess::spawn(&node_args("y"));
    let z = node(&url, "z").await;

    let mut xena = Peer::connect(&x.url("/ws"), "xena").await;
    xena.join("k", None).await;
    let mut yuri = Peer::connect(&y.url("/ws"), "yuri").await;
    yuri.join("k", None).await;
    let mut zed = Peer::connect(&z.url("/ws"), "zed").await;
    let (_, presence) = zed.join("k", None).await;
    assert_eq!(members_of(&presence), nicks(&[("xena", 1), ("yuri", 1), ("zed", 1)]));
    yuri.wait_members("k", &[("xena", 1), ("yuri", 1), ("zed", 1)], PATIENCE)
        .await;

    x.kill_9().await;
    let killed = Instant::now();
    drop(xena);
    let skip = |f: &Value| matches!(kind(f), "joined" | "presence");
    let left = zed
        .wait_for("left xena", NODE_DEATH_BOUND, skip, |f| kind(f) == "left")
        .await;
    assert_eq!(left, json!({"type": "left", "room": "k", "nick": "xena"}));
    let noticed = killed.elapsed();
    let left = yuri
        .wait_for(
            "left xena",
            NODE_DEATH_BOUND.saturating_sub(killed.elapsed()),
            skip,
            |f| kind(f) == "left",
        )
        .await;
    assert_eq!(left, json!({"type": "left", "room": "k", "nick": "xena"}));
    eprintln!("the killed node's member left after {noticed:?}");
    assert_eq!(zed.members("k").await, nicks(&[("yuri", 1), ("zed", 1)]));
    assert_eq!(yuri.members("k").await, nicks(&[("yuri", 1), ("zed", 1)]));

    // The survivors still chat with each other.
    say_and_see(0, &mut [&mut yuri, &mut zed], "k", "still here").await;
    drop(y);
    z.shutdown().await;
}

#[tokio::test]
async fn chat_stays_local_while_redis_is_down_and_crosses_again_after() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("f", None).await;
    let mut cat = Peer::connect(&a.url("/ws"), "cat").await;
    cat.join("f", None).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("f", None).await;
    let mut raw = connect(&a.url("/ws/f")).await;
    // Everyone, the raw member (a guest) included, is registered on both nodes.
    for peer in [&mut ann, &mut bob] {
        peer.wait_members_where(
            "f",
            "ann, bob, cat, a guest",
            PATIENCE,
            with_raw_guest(&["ann", "bob", "cat"]),
        )
        .await;
    }
    let before = say_and_see(0, &mut [&mut ann, &mut cat, &mut bob], "f", "before").await;
    assert_eq!(raw_next(&mut raw).await, Message::text("before"));

    let lost = Instant::now();
    redis.stop().await;
    for peer in [&mut ann, &mut cat, &mut bob] {
        peer.notice("cross_node_interrupted", REDIS_FAULT_BOUND).await;
    }
    eprintln!("Redis loss noticed within {:?}", lost.elapsed());

    // Node-local chat goes on, marked local, unnumbered, on each side.
    ann.say("f", "during outage on A").await;
    for peer in [&mut ann, &mut cat] {
        let message = peer.next_message().await;
        assert_eq!(
            (message.text.as_str(), message.local, message.id),
            ("during outage on A", true, 0),
            "{}: {message:?}",
            peer.name
        );
        assert_eq!(message.nick, "ann");
    }
    assert_eq!(raw_next(&mut raw).await, Message::text("during outage on A"));
    bob.say("f", "during outage on B").await;
    let message = bob.next_message().await;
    assert_eq!(
        (message.text.as_str(), message.local, message.id),
        ("during outage on B", true, 0)
    );
    // No crash, and new clients are served meanwhile.
    let mut late = Peer::connect(&a.url("/ws"), "late").await;
    late.join_degraded("f").await;
    late.say("f", "late during outage").await;
    for peer in [&mut late, &mut ann, &mut cat] {
        let message = peer.next_message().await;
        assert_eq!((message.text.as_str(), message.local), ("late during outage", true));
    }
    assert_eq!(raw_next(&mut raw).await, Message::text("late during outage"));

    redis.restart().await;
    let back = Instant::now();
    for peer in [&mut ann, &mut cat, &mut bob, &mut late] {
        peer.notice("cross_node_restored", REDIS_FAULT_BOUND).await;
    }
    eprintln!("Redis return noticed within {:?}", back.elapsed());

    // Cross-node delivery resumes, in both directions; nothing sent during
    // the outage crossed over.
    let after = say_and_see(0, &mut [&mut ann, &mut cat, &mut bob, &mut late], "f", "after on A").await;
    assert_eq!(raw_next(&mut raw).await, Message::text("after on A"));
    say_and_see(2, &mut [&mut ann, &mut cat, &mut bob, &mut late], "f", "after on B").await;
    assert_eq!(raw_next(&mut raw).await, Message::text("after on B"));
    eprintln!("ids: {before} before the outage, {after} after (Redis restarted empty)");
    assert!(
        after > before,
        "ids are never reused, even when Redis comes back without its data: {after} after {before}"
    );
    // Presence is registered again (Redis came back empty).
    bob.wait_members_where(
        "f",
        "ann, bob, cat, late, a guest",
        REDIS_FAULT_BOUND,
        with_raw_guest(&["ann", "bob", "cat", "late"]),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_started_without_redis_works_alone_then_joins() {
    let port = free_port();
    // Nothing listens on the port yet.
    let a = start_node(node_config(&redis_url(port), "a")).await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join_degraded("s").await;
    let mut cat = Peer::connect(&a.url("/ws"), "cat").await;
    cat.join_degraded("s").await;
    ann.say("s", "alone").await;
    for peer in [&mut ann, &mut cat] {
        let message = peer.next_message().await;
        assert_eq!(message.text, "alone", "{}", peer.name);
    }

    let redis = RedisServer::start_on(port).await;
    let b = node(&redis.url(), "b").await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("s", None).await;
    // A retries with back-off: its messages reach B once it is connected.
    let deadline = Instant::now() + REDIS_FAULT_BOUND;
    let mut probe = 0;
    let crossed = loop {
        ann.say("s", &format!("probe {probe}")).await;
        probe += 1;
        if let Some(frame) = bob.recv_within(Duration::from_millis(500)).await {
            if kind(&frame) == "message" {
                break Msg::of(&frame);
            }
        }
        assert!(
            Instant::now() < deadline,
            "node A never delivered to B within {REDIS_FAULT_BOUND:?} of Redis starting"
        );
    };
    assert!(
        crossed.text.starts_with("probe ") && !crossed.local && crossed.id > 0,
        "{crossed:?}"
    );
    // And B's messages reach A.
    bob.say("s", "hello A").await;
    let got = ann.message_with_text("hello A", PATIENCE).await;
    assert!(!got.local && got.id > crossed.id, "{got:?}");
    cat.message_with_text("hello A", PATIENCE).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_binary_starts_without_redis_and_warns() {
    let port = free_port();
    let node = WshubProcess::spawn(&["--redis", &redis_url(port), "--history", "memory"]);
    let warning = node
        .wait_for_log(Duration::from_secs(10), |line| {
            let Ok(json) = serde_json::from_str::<Value>(line) else {
                return false;
            };
            json["level"].as_str().is_some_and(|l| l.eq_ignore_ascii_case("warn"))
                && line.to_ascii_lowercase().contains("redis")
        })
        .await;
    assert!(
        warning.is_some(),
        "no WARN line mentioning Redis; the log:\n{}",
        node.log_lines().join("\n")
    );
    let mut ann = Peer::connect(&node.url("/ws"), "ann").await;
    ann.join_degraded("s").await;
    ann.say("s", "works").await;
    assert_eq!(ann.next_message().await.text, "works");
}

#[tokio::test]
async fn the_benchmark_spreads_a_room_over_nodes() {
    use wshub_bench::{broadcast, BroadcastOptions, Common, Format};
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    for format in [Format::Text, Format::Binary] {
        let report = broadcast::run(BroadcastOptions {
            common: Common::new(format!("{},{}", a.url("/ws/bench"), b.url("/ws/bench"))),
            clients: 20,
            senders: 4,
            rate: None,
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(5),
            format,
            ..BroadcastOptions::default()
        })
        .await
        .expect("broadcast over two nodes");
        let room = &report.room;
        assert_eq!(report.connections.opened, 20, "{report:?}");
        assert!(room.sent > 0, "{report:?}");
        assert_eq!(room.deliveries, room.sent * 20, "{format:?}: {report:?}");
        assert_eq!(
            (room.loss, room.order_violations, room.corrupt, room.disconnects),
            (0, 0, 0, 0),
            "{format:?}: {report:?}"
        );
        let shares: Vec<(usize, usize, u64)> = room
            .nodes
            .iter()
            .map(|n| (n.clients, n.senders, n.deliveries))
            .collect();
        assert_eq!(
            shares,
            [(10, 4, room.sent * 10), (10, 0, room.sent * 10)],
            "{format:?}: {report:?}"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}
