//! Scale-out under faults that leave no trace a client could see unless
//! the server says so: one node's pub/sub link dropped while the others
//! publish, a catch-up asked for while Redis is away, a node taken for dead
//! by the others while it lives on, Redis stalled while members come and
//! go, two clusters sharing one Redis on two database numbers, and commands
//! Redis refuses in the middle of a pipeline. Each runs against a real `redis-server`, driven through its own
//! commands (`CLIENT KILL`, `CONFIG SET maxclients`, a busy script, the
//! nodes' heartbeat set) rather than by pausing processes.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// A command connection of the test's own to `redis`.
async fn redis_commands(redis: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test reaches Redis")
}

/// Keeps `redis` busy with a script for `long` (every other client waits),
/// from a connection of its own; the script's answer when it ends.
async fn keep_busy(
    redis: &RedisServer,
    long: Duration,
) -> tokio::task::JoinHandle<::redis::RedisResult<::redis::Value>> {
    keep_busy_after(redis, "", long).await
}

/// [`keep_busy`], the script running the Lua `first` before it waits.
async fn keep_busy_after(
    redis: &RedisServer,
    first: &str,
    long: Duration,
) -> tokio::task::JoinHandle<::redis::RedisResult<::redis::Value>> {
    // Its answer comes when the script ends, not within the client's
    // usual half-second.
    let config = ::redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut con = ::redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("the test reaches Redis");
    let script = format!(
        "{first}\n local function now() local t = redis.call('TIME'); \
         return tonumber(t[1]) * 1000000 + tonumber(t[2]) end; \
         local stop = now() + {}; while now() < stop do end; return 1",
        long.as_micros()
    );
    tokio::spawn(async move { ::redis::cmd("EVAL").arg(script).arg(0).query_async(&mut con).await })
}

/// Sets `key` to `value` in `con`'s Redis.
async fn set_key(con: &mut ::redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let () = ::redis::cmd("SET").arg(key).arg(value).query_async(con).await.unwrap();
}

/// The ids of the pub/sub connections Redis has now.
async fn pubsub_clients(con: &mut ::redis::aio::MultiplexedConnection) -> Vec<u64> {
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(con)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

/// Frames of `peer` until the `presence` of `room` that ends a join,
/// presence events of others passed over.
async fn frames_of_join(peer: &mut Peer, room: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = peer.recv().await;
        let done = kind(&frame) == "presence" && frame["room"] == room;
        if !matches!(kind(&frame), "joined" | "left") {
            frames.push(frame);
        }
        if done {
            return frames;
        }
    }
}

/// Kills `link`, a node's pub/sub connection, and keeps Redis from
/// taking a new connection until [`let_back`].
async fn cut_link(con: &mut ::redis::aio::MultiplexedConnection, link: u64) {
    let info: String = ::redis::cmd("INFO").arg("clients").query_async(con).await.unwrap();
    let connected: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients");
    let () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(connected - 1)
        .query_async(con)
        .await
        .unwrap();
    ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(link)
        .query_async::<::redis::Value>(con)
        .await
        .unwrap();
}

async fn let_back(con: &mut ::redis::aio::MultiplexedConnection) {
    let () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10_000)
        .query_async(con)
        .await
        .unwrap();
}

/// What `peer` gets until its node says it is back: a `history_truncated`
/// notice's `first_available`, if any, and the messages.
async fn until_restored(peer: &mut Peer) -> (Option<u64>, Vec<Msg>) {
    let (mut gap, mut got) = (None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = peer.recv_within(left).await.expect("the node reconnects");
        match kind(&frame) {
            "message" => got.push(Msg::of(&frame)),
            "notice" if frame["code"] == "cross_node_restored" => return (gap, got),
            "error" if frame["code"] == "history_truncated" => gap = frame["first_available"].as_u64(),
            "joined" | "left" | "presence" => {}
            _ => panic!("unexpected {frame}"),
        }
    }
}

/// The pub/sub connection `node` added, given those Redis had before.
async fn new_link(con: &mut ::redis::aio::MultiplexedConnection, before: &[u64]) -> u64 {
    let added: Vec<u64> = pubsub_clients(con)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(added.len(), 1, "the node has one pub/sub connection: {added:?}");
    added[0]
}

#[tokio::test]
async fn a_node_whose_link_dropped_catches_up_from_what_its_joiner_replayed() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let before_b = pubsub_clients(&mut con).await;
    let b = node(&redis.url(), "b").await;
    let b_link = new_link(&mut con, &before_b).await;

    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("r", None).await;
    ann.say("r", "one").await;
    assert_eq!(ann.next_message().await.id, 1);
    // bob has id 1 from his replay only: node b has delivered nothing live.
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    let (replayed, _) = bob.join("r", None).await;
    assert_eq!(replayed.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);

    // Node b loses its pub/sub link, and cannot make a new one for now.
    cut_link(&mut con, b_link).await;
    bob.notice("cross_node_interrupted", PATIENCE).await;
    ann.say("r", "two").await;
    assert_eq!(ann.next_message().await.id, 2, "node a is still connected");

    let_back(&mut con).await;
    // What node b missed comes as it reconnects, before or after the
    // notice that says it is back.
    let (gap, mut got) = until_restored(&mut bob).await;
    assert_eq!(gap, None);
    ann.say("r", "three").await;
    got.push(bob.next_message().await);
    assert_eq!(
        got.iter().map(|m| (m.id, m.text.as_str())).collect::<Vec<_>>(),
        [(2, "two"), (3, "three")],
        "what was published while node b's link was down reaches bob, in order"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_catch_up_while_redis_is_away_says_that_history_is_unavailable() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("h", None).await;
    for text in ["1", "2", "3"] {
        ann.say("h", text).await;
        ann.next_message().await;
    }
    redis.stop().await;
    ann.notice("cross_node_interrupted", Duration::from_secs(30)).await;

    let mut cat = Peer::connect(&a.url("/ws"), "cat").await;
    cat.send(json!({"type": "join", "room": "h", "since": 1})).await;
    let frames = frames_of_join(&mut cat, "h").await;
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| match kind(f) {
            "notice" | "error" => format!("{} {}", kind(f), f["code"].as_str().unwrap_or("")),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "notice cross_node_interrupted",
            "error history_unavailable",
            "history",
            "presence"
        ],
        "{frames:?}"
    );
    let error = &frames[1];
    assert_eq!(error["room"], "h", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert_eq!(frames[2]["messages"], json!([]));

    // A `history` request gets the same answer.
    cat.send(json!({"type": "history", "room": "h", "limit": 10})).await;
    let error = cat
        .wait_for("an error", PATIENCE, is_presence_event, |f| kind(f) == "error")
        .await;
    assert_eq!(error["code"], "history_unavailable", "{error}");
    a.shutdown().await;
}

#[tokio::test]
async fn a_node_taken_for_dead_while_it_lives_records_its_members_again() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("p", None).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("p", None).await;
    ann.wait_members("p", &[("ann", 1), ("bob", 1)], PATIENCE).await;

    // Node b's last beat looks old to node a (b was paused, or its clock
    // stepped back): a removes b's members and says they left.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _: i64 = ::redis::cmd("ZADD")
            .arg("wshub:nodes")
            .arg(1)
            .arg("b")
            .query_async(&mut con)
            .await
            .unwrap();
        if let Some(frame) = ann.recv_within(Duration::from_millis(300)).await {
            if kind(&frame) == "left" && frame["nick"] == "bob" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node a never took node b for dead");
    }
    // Node b lives on, and its next beat records bob again.
    let joined = ann
        .wait_for("bob joined again", Duration::from_secs(20), is_presence_event, |f| {
            kind(f) == "joined" && f["nick"] == "bob"
        })
        .await;
    assert_eq!(joined["room"], "p");
    ann.wait_members("p", &[("ann", 1), ("bob", 1)], PATIENCE).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_late_replay_answer_reaches_its_own_member_not_the_next_one_in_its_place() {
    let redis = RedisServer::start().await;
    let a = node(&redis.url(), "a").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("k", None).await;
    for n in 1..=20 {
        ann.say("k", &format!("m{n}")).await;
    }
    ann.messages(20, PATIENCE).await;

    // Redis is busy for 1.5 s (the nodes wait up to 2 s for an answer):
    // the replays below wait for it.
    // (The test's own client may give up waiting first; the script runs on.)
    let busy = keep_busy(&redis, Duration::from_millis(1_500)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // xan asks for the last message only, and leaves before the answer;
    // yan takes xan's place in the room and asks for everything.
    let mut xan = Peer::connect(&a.url("/ws"), "xan").await;
    xan.send(json!({"type": "join", "room": "k", "since": 19})).await;
    let mut yan = Peer::connect(&a.url("/ws"), "yan").await;
    // xan's join has reached the server once its `nick` answer came back
    // (requests are handled in order); then it leaves.
    xan.send(json!({"type": "nick", "nick": "xan2"})).await;
    xan.wait_for("nick", PATIENCE, |_| true, |f| kind(f) == "nick").await;
    xan.send(json!({"type": "leave", "room": "k"})).await;
    xan.send(json!({"type": "nick", "nick": "xan3"})).await;
    xan.wait_for("nick", PATIENCE, |_| true, |f| kind(f) == "nick" && f["nick"] == "xan3")
        .await;
    let (replayed, _) = yan.join("k", Some(0)).await;
    let _ = busy.await.unwrap();
    assert_eq!(
        replayed.iter().map(|m| m.id).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "yan gets the replay it asked for"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn two_clusters_on_two_databases_of_one_redis_do_not_hear_each_other() {
    let redis = RedisServer::start().await;
    let prod = node(&redis.url(), "prod").await;
    let staging = node(&format!("redis://127.0.0.1:{}/1", redis.port()), "staging").await;
    let mut ann = Peer::connect(&prod.url("/ws"), "ann").await;
    ann.join("lobby", None).await;
    let mut sam = Peer::connect(&staging.url("/ws"), "sam").await;
    sam.join("lobby", None).await;
    for text in ["p1", "p2", "p3"] {
        ann.say("lobby", text).await;
        assert_eq!(ann.next_message().await.text, text);
    }
    sam.say("lobby", "s1").await;
    let got = sam.next_message().await;
    assert_eq!((got.id, got.text.as_str()), (1, "s1"), "staging hears only itself");
    assert_eq!(sam.members("lobby").await, [("sam".to_owned(), 1)]);
    ann.say("lobby", "p4").await;
    let got = ann.next_message().await;
    assert_eq!((got.id, got.text.as_str()), (4, "p4"), "prod did not hear staging");
    assert_eq!(ann.members("lobby").await, [("ann".to_owned(), 1)]);
    prod.shutdown().await;
    staging.shutdown().await;
}

/// What `client` gets up to `last`, added to `got`.
async fn read_until(
    client: &mut Client,
    last: tokio_tungstenite::tungstenite::Message,
    got: &mut Vec<tokio_tungstenite::tungstenite::Message>,
) {
    loop {
        let message = next_message(client).await;
        let done = message == last;
        got.push(message);
        if done {
            return;
        }
    }
}

/// Redis runs every command of a pipeline, so one it refuses (here the
/// publish script, whose room counter is not a number) says nothing of the
/// others: the refused text is delivered on this node only, and the binary
/// frames Redis published in the same pipeline once, not again locally.
#[tokio::test]
async fn one_refused_command_of_a_pipeline_is_the_only_one_delivered_locally() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let mut sender = connect(&a.url("/ws/r")).await;
    let mut receiver = connect(&a.url("/ws/r")).await;
    // Both are in the room once a frame of one reaches the other.
    sender.send(Message::binary(b"ready".to_vec())).await.unwrap();
    while next_message(&mut receiver).await != Message::binary(b"ready".to_vec()) {}
    set_key(&mut con, "wshub:{r}:seq", "not a number").await;
    // Redis is busy for a moment, so that the text and the binary frame
    // after it wait in one pipeline, behind the first frame's.
    let busy = keep_busy(&redis, Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sender.send(Message::binary(b"first".to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sender.feed(Message::text("refused")).await.unwrap();
    sender.feed(Message::binary(b"second".to_vec())).await.unwrap();
    sender.flush().await.unwrap();
    busy.await.unwrap().expect("the busy script ran");
    // The refused text comes once the pipeline's answer is in, which may
    // be after the frames Redis published (they come another way).
    let mut got = Vec::new();
    read_until(&mut receiver, Message::text("refused"), &mut got).await;
    sender.send(Message::binary(b"last".to_vec())).await.unwrap();
    read_until(&mut receiver, Message::binary(b"last".to_vec()), &mut got).await;
    let count = |m: Message| got.iter().filter(|g| **g == m).count();
    assert_eq!(count(Message::binary(b"first".to_vec())), 1, "{got:?}");
    assert_eq!(count(Message::binary(b"second".to_vec())), 1, "once: {got:?}");
    assert_eq!(count(Message::text("refused")), 1, "here only: {got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    a.shutdown().await;
}

/// A join Redis refused to record (the room's member hash of this node is
/// of the wrong type for a moment) is recorded by the next heartbeat, so
/// the other nodes list the member, instead of never.
#[tokio::test]
async fn a_join_redis_refused_to_record_is_recorded_by_the_next_heartbeat() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let b = node(&redis.url(), "b").await;
    set_key(&mut con, "wshub:{p}:members:a", "in the way").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("p", None).await;
    let _: () = ::redis::cmd("DEL")
        .arg("wshub:{p}:members:a")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("p", None).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let members = bob.members("p").await;
        if members.iter().any(|(nick, _)| nick == "ann") {
            break;
        }
        assert!(Instant::now() < deadline, "ann never recorded: {members:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A node whose link stayed down while more was published than Redis
/// keeps tells its members where history now starts (`history_truncated`)
/// before the messages it could still fetch, instead of showing a gap.
#[tokio::test]
async fn a_catch_up_longer_than_redis_keeps_tells_members_of_the_gap() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let mut config = node_config(&redis.url(), "a");
    config.history.max_messages_per_room = 10;
    let a = node_with(config.clone()).await;
    let before_b = pubsub_clients(&mut con).await;
    config.node_id = Some("b".into());
    let b = node_with(config).await;
    let b_link = new_link(&mut con, &before_b).await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("g", None).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("g", None).await;
    ann.say("g", "one").await;
    ann.next_message().await;
    assert_eq!(bob.next_message().await.id, 1, "live on node b");

    cut_link(&mut con, b_link).await;
    bob.notice("cross_node_interrupted", PATIENCE).await;
    // Redis trims its streams by whole nodes of 100 entries: enough that
    // it drops some.
    for n in 2..=400 {
        ann.say("g", &format!("m{n}")).await;
    }
    assert_eq!(ann.messages(399, PATIENCE).await.last().map(|m| m.id), Some(400));
    let_back(&mut con).await;
    let (gap, got) = until_restored(&mut bob).await;
    let first = gap.expect("bob is told that history starts later");
    assert!(first > 2, "{first}");
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        (first..=400).collect::<Vec<_>>(),
        "then what Redis still keeps"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A node back on Redis that cannot fetch what it missed (here the room's
/// counter is of the wrong type for a while) stays off and tries again,
/// rather than saying it is back with a gap: its member gets the missed
/// messages, then `cross_node_restored`.
#[tokio::test]
async fn a_node_that_cannot_fetch_what_it_missed_is_not_back_until_it_has() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let before_b = pubsub_clients(&mut con).await;
    let b = node(&redis.url(), "b").await;
    let b_link = new_link(&mut con, &before_b).await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("f", None).await;
    let mut bob = Peer::connect(&b.url("/ws"), "bob").await;
    bob.join("f", None).await;
    ann.say("f", "one").await;
    assert_eq!(bob.next_message().await.id, 1);

    cut_link(&mut con, b_link).await;
    bob.notice("cross_node_interrupted", PATIENCE).await;
    for text in ["two", "three"] {
        ann.say("f", text).await;
    }
    ann.messages(3, PATIENCE).await;
    set_key(&mut con, "wshub:{f}:seq", "in the way").await;
    let_back(&mut con).await;
    // Node b's first tries fail; then the counter is mended.
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_key(&mut con, "wshub:{f}:seq", "3").await;
    let (_, got) = until_restored(&mut bob).await;
    assert_eq!(
        got.iter().map(|m| (m.id, m.text.as_str())).collect::<Vec<_>>(),
        [(2, "two"), (3, "three")],
        "what it missed, before it is back"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Returns just after node `node`'s next heartbeat (its score in the
/// nodes' set changes), polled closely enough to know when it beat.
async fn next_beat(con: &mut ::redis::aio::MultiplexedConnection, node: &str) {
    async fn score(con: &mut ::redis::aio::MultiplexedConnection, node: &str) -> Option<i64> {
        ::redis::cmd("ZSCORE")
            .arg("wshub:nodes")
            .arg(node)
            .query_async(con)
            .await
            .unwrap()
    }
    let before = score(con, node).await;
    let deadline = Instant::now() + PATIENCE;
    while score(con, node).await == before {
        assert!(Instant::now() < deadline, "node {node} stopped beating");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A member that joins while a heartbeat records the node's members again
/// (the node had been taken for dead) stays recorded. The heartbeat began
/// before the join; had it recorded the members it listed then, it would
/// have removed the newcomer, whose join Redis had already taken.
#[tokio::test]
async fn a_join_while_the_members_are_recorded_again_stays_recorded() {
    let redis = RedisServer::start().await;
    let mut con = redis_commands(&redis).await;
    let a = node(&redis.url(), "a").await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("p", None).await;
    // Beats are 2 s apart: a second after one, Redis stalls for 1.8 s,
    // the node first taken for dead; the next beat lists the members and
    // waits; then the newcomer joins.
    next_beat(&mut con, "a").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let busy = keep_busy_after(
        &redis,
        "redis.call('ZREM', 'wshub:nodes', 'a')",
        Duration::from_millis(1_800),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    let _newcomer = RawClient::connect(a.addr, "/ws/p").await;
    assert_eq!(busy.await.unwrap().unwrap(), ::redis::Value::Int(1));
    // Once the beat after that one is done, that one's recording is too.
    next_beat(&mut con, "a").await;
    next_beat(&mut con, "a").await;
    let members: std::collections::HashMap<String, String> = ::redis::cmd("HGETALL")
        .arg("wshub:{p}:members:a")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(members.len(), 2, "ann and the newcomer: {members:?}");
    a.shutdown().await;
}

/// Questions to Redis (member lists, replays, histories) are bounded: while
/// Redis is busy, the `members` requests beyond the 4,096 under way are
/// answered at once from this node's members, instead of each becoming a
/// task that waits for Redis with no end to how many there may be; those
/// under way are answered once Redis is free.
#[tokio::test]
async fn questions_beyond_the_bound_are_answered_at_once_while_redis_is_busy() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    const ASKED: usize = 4_300;
    let redis = RedisServer::start().await;
    let mut config = node_config(&redis.url(), "a");
    config.max_queue_messages = 2 * ASKED;
    let a = node_with(config).await;
    let mut ann = Peer::connect(&a.url("/ws"), "ann").await;
    ann.join("k", None).await;

    // Redis is busy for 1.8 s (the nodes wait up to 2 s for an answer).
    let busy = keep_busy(&redis, Duration::from_millis(1_800)).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ask = Message::text(json!({"type": "members", "room": "k"}).to_string());
    for _ in 0..ASKED {
        ann.ws.feed(ask.clone()).await.expect("queued");
    }
    ann.ws.flush().await.expect("sent");
    let mut answered = 0;
    let busy_until = Duration::from_millis(1_300);
    while let Some(frame) = ann.recv_within(busy_until.saturating_sub(started.elapsed())).await {
        answered += usize::from(kind(&frame) == "presence");
    }
    assert!(
        (1..=ASKED - 4_096).contains(&answered),
        "{answered} answered while Redis was busy"
    );
    let _ = busy.await.unwrap();
    while answered < ASKED {
        let frame = ann.recv().await;
        answered += usize::from(kind(&frame) == "presence");
    }
    a.shutdown().await;
}
