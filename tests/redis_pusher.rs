//! Pusher across nodes (issue #13, "One hub"): two nodes (two servers in
//! this process) on one real `redis-server`; a client on node A and an
//! event published through node B's HTTP API, with B handed a socket id of
//! A's to leave out.

mod common;

use std::time::{Duration, Instant};

use common::pusher::{api, pusher_client, recv_json, subscribe, trigger, with_app, APP_ID};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// A node of the cluster, with the app, once connected to Redis.
async fn node(redis: &str, name: &str) -> TestServer {
    let mut config = with_app(test_config());
    config.redis = Some(redis.to_string());
    config.node_id = Some(name.to_string());
    let server = tokio::time::timeout(Duration::from_secs(15), start_server_with(config))
        .await
        .expect("a node starts within 15 s");
    let deadline = Instant::now() + PATIENCE;
    while !server.hub.broker().cluster().is_some_and(|c| c.up) {
        assert!(Instant::now() < deadline, "node {name} not connected to Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server
}

#[tokio::test]
async fn an_event_through_b_skips_the_socket_of_a_it_names_and_no_other() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let (mut ann, ann_id) = pusher_client(&a).await;
    let (mut amy, amy_id) = pusher_client(&a).await;
    let (mut bob, bob_id) = pusher_client(&b).await;
    for (client, id) in [(&mut ann, &ann_id), (&mut amy, &amy_id), (&mut bob, &bob_id)] {
        let ok = subscribe(client, id, "news", None).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }

    let (status, _) = trigger(&b, json!({"name": "first", "data": "1", "channel": "news"})).await;
    assert_eq!(status, 200);
    for client in [&mut ann, &mut amy, &mut bob] {
        assert_eq!(recv_json(client).await["event"], "first");
    }

    // ann's socket id, handed to B: A leaves ann out; bob on B (whose own
    // numbers could be the same as ann's) still gets it.
    let except_ann = json!({"name": "second", "data": "2", "channel": "news", "socket_id": ann_id});
    assert_eq!(trigger(&b, except_ann).await.0, 200);
    // One order per room: ann's next event is the third, with nothing
    // between, so the second did not reach her.
    assert_eq!(
        trigger(&b, json!({"name": "third", "data": "3", "channel": "news"}))
            .await
            .0,
        200
    );
    assert_eq!(recv_json(&mut ann).await["event"], "third");
    for client in [&mut amy, &mut bob] {
        assert_eq!(recv_json(client).await["event"], "second");
        assert_eq!(recv_json(client).await["event"], "third");
    }

    // bob's socket id, handed to A: the same the other way.
    let except_bob = json!({"name": "fourth", "data": "4", "channel": "news", "socket_id": bob_id});
    assert_eq!(trigger(&a, except_bob).await.0, 200);
    assert_eq!(
        trigger(&a, json!({"name": "fifth", "data": "5", "channel": "news"}))
            .await
            .0,
        200
    );
    assert_eq!(recv_json(&mut bob).await["event"], "fifth");
    for client in [&mut ann, &mut amy] {
        assert_eq!(recv_json(client).await["event"], "fourth");
        assert_eq!(recv_json(client).await["event"], "fifth");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_client_event_on_a_reaches_members_on_both_nodes_but_its_sender() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let (mut ann, ann_id) = pusher_client(&a).await;
    let (mut amy, amy_id) = pusher_client(&a).await;
    let (mut bob, bob_id) = pusher_client(&b).await;
    let channel = "private-room";
    for (client, id) in [(&mut ann, &ann_id), (&mut amy, &amy_id), (&mut bob, &bob_id)] {
        let ok = subscribe(client, id, channel, None).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
    }
    let whisper = json!({"event": "client-typing", "channel": channel, "data": {"who": "ann"}});
    send_text(&mut ann, &whisper.to_string()).await;
    for client in [&mut amy, &mut bob] {
        let got = recv_json(client).await;
        assert_eq!(got["event"], "client-typing");
        assert_eq!(got["channel"], channel);
        assert_eq!(got["data"], json!({"who": "ann"}));
    }
    // Not echoed to ann: her next frame is the event published after it,
    // in the room's one order.
    assert_eq!(
        trigger(&b, json!({"name": "after", "data": "x", "channel": channel}))
            .await
            .0,
        200
    );
    assert_eq!(recv_json(&mut ann).await["event"], "after");
    assert_eq!(recv_json(&mut amy).await["event"], "after");
    assert_eq!(recv_json(&mut bob).await["event"], "after");
    // And a client event from B reaches A's members, not bob.
    let wave = json!({"event": "client-wave", "channel": channel, "data": {}});
    send_text(&mut bob, &wave.to_string()).await;
    for client in [&mut ann, &mut amy] {
        assert_eq!(recv_json(client).await["event"], "client-wave");
    }
    assert_eq!(
        trigger(&a, json!({"name": "end", "data": "x", "channel": channel}))
            .await
            .0,
        200
    );
    assert_eq!(recv_json(&mut bob).await["event"], "end");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn channel_counts_are_the_clusters_from_either_node() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let channel = "presence-team";
    // u1 on both nodes (counted once), u2 on B.
    let mut clients = Vec::new();
    for (server, user) in [(&a, "u1"), (&b, "u1"), (&b, "u2")] {
        let (mut client, id) = pusher_client(server).await;
        let channel_data = json!({"user_id": user, "user_info": {}}).to_string();
        let ok = subscribe(&mut client, &id, channel, Some(&channel_data)).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
        clients.push(client);
    }
    let path = format!("/apps/{APP_ID}/channels/{channel}");
    let query = [("info", "user_count,subscription_count")];
    let cluster = json!({"occupied": true, "user_count": 2, "subscription_count": 3});
    for server in [&a, &b] {
        // A join counts once its node's pipeline has recorded it in Redis.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = api(server, "GET", &path, &query, "").await;
            assert_eq!(status, 200);
            if body == cluster {
                break;
            }
            assert!(Instant::now() < deadline, "{} said {body}", server.addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Either node lists both users, u1 once.
    for server in [&a, &b] {
        let users_path = format!("{path}/users");
        let (status, body) = api(server, "GET", &users_path, &[], "").await;
        assert_eq!((status, body), (200, json!({"users": [{"id": "u1"}, {"id": "u2"}]})));
    }
    // The info of an event published through A counts B's members too.
    let event = json!({"name": "e", "data": "x", "channel": channel, "info": "user_count,subscription_count"});
    let (status, body) = trigger(&a, event).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"channels": {channel: {"user_count": 2, "subscription_count": 3}}})
    );
    drop(clients);
    a.shutdown().await;
    b.shutdown().await;
}
