//! Pusher across nodes (issue #13, "One hub"): two nodes (two servers in
//! this process) on one real `redis-server`; a client on node A and an
//! event published through node B's HTTP API, with B handed a socket id of
//! A's to leave out.

mod common;

use std::time::{Duration, Instant};

use common::pusher::{api, pusher_client, recv_json, subscribe, trigger, with_app, with_counting_app, APP_ID};
use common::redis::RedisServer;
use common::*;
use serde_json::json;

/// A node of the cluster, with the app, once connected to Redis.
async fn node(redis: &str, name: &str) -> TestServer {
    node_with(redis, name, with_app).await
}

/// A node with the app that `app` gives the test config.
async fn node_with(redis: &str, name: &str, app: impl Fn(wshub::Config) -> wshub::Config) -> TestServer {
    let mut config = app(test_config());
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
    // A's channel list holds a channel whose only member is on B.
    let (mut lone, lone_id) = pusher_client(&b).await;
    subscribe(&mut lone, &lone_id, "only-on-b", None).await;
    until_subscriptions(&a, "only-on-b", 1).await;
    let list = format!("/apps/{APP_ID}/channels");
    let (status, body) = api(&a, "GET", &list, &[], "").await;
    assert_eq!(
        (status, body),
        (200, json!({"channels": {"only-on-b": {}, channel: {}}}))
    );
    let presence_only = [("filter_by_prefix", "presence-"), ("info", "user_count")];
    let (status, body) = api(&a, "GET", &list, &presence_only, "").await;
    assert_eq!((status, body), (200, json!({"channels": {channel: {"user_count": 2}}})));
    // Gone from B, gone from A's list.
    drop(lone);
    until_subscriptions(&a, "only-on-b", 0).await;
    let (_, body) = api(&a, "GET", &list, &[], "").await;
    assert_eq!(body, json!({"channels": {channel: {}}}));
    drop(clients);
    a.shutdown().await;
    b.shutdown().await;
}

/// The frame's `data`, parsed (Pusher sends it as a JSON string).
fn data_of(frame: &serde_json::Value) -> serde_json::Value {
    common::pusher::data(frame)
}

/// Subscribes `user` to the presence channel on `server`; the client and
/// its `subscription_succeeded`'s presence data.
async fn join_presence(server: &TestServer, channel: &str, user: &str) -> (Client, serde_json::Value) {
    let (mut client, id) = pusher_client(server).await;
    let channel_data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let ok = subscribe(&mut client, &id, channel, Some(&channel_data)).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
    (client, data_of(&ok)["presence"].clone())
}

/// Waits until the cluster counts `subscriptions` members of `channel`.
async fn until_subscriptions(server: &TestServer, channel: &str, subscriptions: u64) {
    let path = format!("/apps/{APP_ID}/channels/{channel}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = api(server, "GET", &path, &[("info", "subscription_count")], "").await;
        if body["subscription_count"].as_u64().unwrap_or(0) == subscriptions {
            return;
        }
        assert!(Instant::now() < deadline, "{channel} still {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presence is the cluster's: a subscriber on B is told of the members on
/// A, members on A hear of a user's first connection anywhere and of its
/// last, and a user with connections on both nodes is one member.
#[tokio::test]
async fn presence_members_and_their_comings_and_goings_are_the_clusters() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let channel = "presence-team";
    let (mut ann, alone) = join_presence(&a, channel, "u1").await;
    assert_eq!(alone["count"], 1, "{alone}");

    let (bob, both) = join_presence(&b, channel, "u2").await;
    assert_eq!(both["count"], 2, "{both}");
    assert_eq!(both["ids"], json!(["u1", "u2"]));
    assert_eq!(both["hash"]["u1"], json!({"name": "u1"}));
    let added = recv_json(&mut ann).await;
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    assert_eq!(data_of(&added), json!({"user_id": "u2", "user_info": {"name": "u2"}}));

    // u2's second connection, on A: listed, but no member is added.
    let (bob_too, again) = join_presence(&a, channel, "u2").await;
    assert_eq!(again["count"], 2, "{again}");
    until_subscriptions(&a, channel, 3).await;
    // u2's connection on B goes: u2 is still on A, nobody is removed.
    drop(bob);
    until_subscriptions(&a, channel, 2).await;
    let marker = json!({"name": "marker", "data": "1", "channel": channel});
    assert_eq!(trigger(&b, marker).await.0, 200);
    let next = recv_json(&mut ann).await;
    assert_eq!(
        next["event"], "marker",
        "nothing between u2's arrival and the marker: {next}"
    );
    // Its last connection goes: removed, once.
    drop(bob_too);
    let removed = recv_json(&mut ann).await;
    assert_eq!(removed["event"], "pusher_internal:member_removed", "{removed}");
    assert_eq!(data_of(&removed), json!({"user_id": "u2"}));
    let marker = json!({"name": "marker", "data": "2", "channel": channel});
    assert_eq!(trigger(&b, marker).await.0, 200);
    assert_eq!(recv_json(&mut ann).await["event"], "marker");
    drop(ann);
    a.shutdown().await;
    b.shutdown().await;
}

async fn next_hook(received: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) -> serde_json::Value {
    tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("a webhook in time")
        .expect("receiver open")
}

/// What two nodes tell one backend: a channel occupied and vacated once
/// for the cluster, a member added and removed once however many
/// connections and nodes it has.
#[tokio::test]
async fn webhooks_come_once_for_the_cluster_not_once_per_node() {
    use axum::http::HeaderMap;
    let (posts, mut received) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_: HeaderMap, body: String| {
            let posts = posts.clone();
            async move {
                let payload: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                for event in payload["events"].as_array().expect("events") {
                    let _ = posts.send(event.clone());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let kinds = [
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "cache_miss",
    ];
    let with_hook = |mut config: wshub::Config| {
        let mut app =
            wshub::apps::App::from_spec(&format!("{APP_ID}:{}:{}", common::pusher::KEY, common::pusher::SECRET))
                .expect("valid spec");
        let mut webhook = wshub::apps::WebhookConfig::new(hook.clone());
        webhook.event_types = kinds.map(String::from).to_vec();
        app.webhooks = vec![webhook];
        config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
        config
    };
    let redis = RedisServer::start().await;
    let a = node_with(&redis.url(), "a", with_hook).await;
    let b = node_with(&redis.url(), "b", with_hook).await;

    let channel = "presence-room";
    // u1 on both nodes at once, u2 on B.
    let (u1_a, _) = join_presence(&a, channel, "u1").await;
    let (u1_b, _) = join_presence(&b, channel, "u1").await;
    let (u2_b, _) = join_presence(&b, channel, "u2").await;
    until_subscriptions(&a, channel, 3).await;
    drop((u1_a, u1_b, u2_b));

    let mut seen = Vec::new();
    while !seen.iter().any(|e: &serde_json::Value| e["name"] == "channel_vacated") {
        seen.push(next_hook(&mut received).await);
    }
    // Each node's webhooks go out in order: once each node's last one (a
    // cache miss, which each subscriber has) is in, any repeat of the
    // above would be in too.
    let (mut on_a, id_a) = pusher_client(&a).await;
    subscribe(&mut on_a, &id_a, "cache-end-a", None).await;
    let (mut on_b, id_b) = pusher_client(&b).await;
    subscribe(&mut on_b, &id_b, "cache-end-b", None).await;
    let misses = |seen: &[serde_json::Value]| seen.iter().filter(|e| e["name"] == "cache_miss").count();
    while misses(&seen) < 2 {
        seen.push(next_hook(&mut received).await);
    }
    let room: Vec<(String, String)> = seen
        .iter()
        .filter(|e| e["channel"] == channel)
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            (name, e["user_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let count = |name: &str, user: &str| room.iter().filter(|(n, u)| n == name && u == user).count();
    assert_eq!(count("channel_occupied", ""), 1, "{room:?}");
    assert_eq!(count("channel_vacated", ""), 1, "{room:?}");
    for user in ["u1", "u2"] {
        assert_eq!(count("member_added", user), 1, "{room:?}");
        assert_eq!(count("member_removed", user), 1, "{room:?}");
    }
    assert_eq!(room.len(), 6, "{room:?}");
    drop((on_a, on_b));
    a.shutdown().await;
    b.shutdown().await;
}

/// The next `pusher_internal:subscription_count`'s count.
async fn next_count(client: &mut Client) -> u64 {
    let frame = recv_json(client).await;
    assert_eq!(frame["event"], "pusher_internal:subscription_count", "{frame}");
    data_of(&frame)["subscription_count"].as_u64().expect("a count")
}

/// Subscription counting is the cluster's: a subscriber on A is told of
/// subscriptions and unsubscriptions on B, counted with its own.
#[tokio::test]
async fn subscription_counts_sent_to_subscribers_are_the_clusters() {
    let redis = RedisServer::start().await;
    let a = node_with(&redis.url(), "a", with_counting_app).await;
    let b = node_with(&redis.url(), "b", with_counting_app).await;
    let (mut ann, ann_id) = pusher_client(&a).await;
    assert_eq!(
        subscribe(&mut ann, &ann_id, "lobby", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(next_count(&mut ann).await, 1);
    let (mut bob, bob_id) = pusher_client(&b).await;
    assert_eq!(
        subscribe(&mut bob, &bob_id, "lobby", None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        next_count(&mut bob).await,
        2,
        "B's subscriber is told the cluster's count"
    );
    assert_eq!(next_count(&mut ann).await, 2, "A's subscriber hears of B's");
    drop(bob);
    assert_eq!(next_count(&mut ann).await, 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// A presence cache channel of a cluster: the subscriber waits for the
/// cluster's member list, and the cache's answer (the last event, or
/// `pusher:cache_miss`) comes after its `subscription_succeeded`, not
/// before it, whichever node the last event was published on.
#[tokio::test]
async fn a_presence_cache_channel_answers_after_subscription_succeeded() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let channel = "presence-cache-board";
    // join_presence checks that the first event is subscription_succeeded.
    let (mut ann, alone) = join_presence(&a, channel, "u1").await;
    assert_eq!(alone["count"], 1, "{alone}");
    let miss = recv_json(&mut ann).await;
    assert_eq!(miss["event"], "pusher:cache_miss", "{miss}");

    let last = json!({"name": "score", "data": "3-1", "channel": channel});
    assert_eq!(trigger(&b, last).await.0, 200);
    assert_eq!(recv_json(&mut ann).await["event"], "score");

    for node in [&b, &a] {
        let (mut late, both) = join_presence(node, channel, "u2").await;
        assert!(both["count"].as_u64().unwrap() >= 2, "{both}");
        let cached = recv_json(&mut late).await;
        assert_eq!(cached["event"], "score", "{cached}");
        assert_eq!(cached["data"], "3-1");
        drop(late);
    }
    drop(ann);
    a.shutdown().await;
    b.shutdown().await;
}

/// `terminate_connections` through node B closes the user's signed-in
/// connection on node A too (one that never subscribed to its user
/// channel), with 4009.
#[tokio::test]
async fn terminating_a_user_through_b_closes_its_connection_on_a() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let (mut fay, fay_id) = pusher_client(&a).await;
    let user_data = json!({"id": "fay"}).to_string();
    let auth = format!(
        "{}:{}",
        common::pusher::KEY,
        common::pusher::hmac_hex(common::pusher::SECRET, &format!("{fay_id}::user::{user_data}"))
    );
    let signin = json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}});
    send_text(&mut fay, &signin.to_string()).await;
    assert_eq!(recv_json(&mut fay).await["event"], "pusher:signin_success");
    let (status, _) = api(
        &b,
        "POST",
        &format!("/apps/{APP_ID}/users/fay/terminate_connections"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(recv_json(&mut fay).await["event"], "pusher:error");
    assert_eq!(expect_close(&mut fay).await, 4009);
    a.shutdown().await;
    b.shutdown().await;
}
