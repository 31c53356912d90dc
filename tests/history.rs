//! History: ids per room, replay on join, retention, catch-up after a
//! reconnect with no gaps and no duplicates (even while others keep
//! talking), SQLite history that survives a restart, and a memory cap over
//! all rooms (`--history-max-bytes`) that a flood of large messages cannot
//! pass, without gaps in an SQLite catch-up; a sender's user id (its
//! token's `sub`) is kept with its messages, across an SQLite restart too.

mod common;

use std::time::Duration;

use common::*;
use wshub::history::{Backend, HistoryConfig};

fn config_with(backend: Backend, max_messages: usize) -> wshub::Config {
    let mut config = test_config();
    config.history = HistoryConfig {
        backend,
        max_messages_per_room: max_messages,
        max_age: None,
        commit_interval: Duration::from_millis(50),
        cache_per_room: max_messages.min(1_000),
        max_bytes: wshub::history::DEFAULT_MAX_BYTES,
    };
    config.join_history = 5;
    config
}

async fn say_and_wait(client: &mut ChatClient, room: &str, texts: impl IntoIterator<Item = String>) -> u64 {
    let mut last = 0;
    for text in texts {
        client.say(room, &text).await;
        let (_, message) = client.next_chat().await;
        assert_eq!(message.text, text);
        last = message.id;
    }
    last
}

#[tokio::test]
async fn join_replays_the_latest_messages_in_order() {
    let server = start_server_with(config_with(Backend::Memory, 100)).await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("r", None).await;
    let last = say_and_wait(&mut ann, "r", (1..=8).map(|i| format!("m{i}"))).await;
    assert_eq!(last, 8, "ids count from 1 in each room");
    let mut bob = ChatClient::connect(&server).await;
    let (history, _) = bob.join("r", None).await;
    let ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(ids, [4, 5, 6, 7, 8], "the last --join-history (5), oldest first");
    assert_eq!(history[0].text, "m4");
    bob.send(&ClientFrame::History {
        room: "r".into(),
        since: Some(1),
        limit: Some(3),
    })
    .await;
    match bob.recv().await {
        ServerFrame::History { messages, .. } => {
            assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3, 4])
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn catch_up_after_a_reconnect_has_no_gaps_and_no_duplicates() {
    let server = start_server_with(config_with(Backend::Memory, 1_000)).await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("r", None).await;
    let seen = say_and_wait(&mut ann, "r", (0..10).map(|i| format!("before {i}"))).await;
    drop(ann);

    let mut bob = ChatClient::connect(&server).await;
    bob.join("r", None).await;
    say_and_wait(&mut bob, "r", (0..25).map(|i| format!("missed {i}"))).await;

    // Bob keeps talking while ann reconnects and catches up.
    let talker = tokio::spawn(async move {
        for i in 0..200 {
            bob.say("r", &format!("live {i}")).await;
        }
        bob
    });
    let mut ann = ChatClient::connect(&server).await;
    let (replayed, _) = ann.join("r", Some(seen)).await;
    let mut ids: Vec<u64> = replayed.iter().map(|m| m.id).collect();
    assert!(replayed.iter().take(25).all(|m| m.text.starts_with("missed")));
    while ids.last() != Some(&(seen + 25 + 200)) {
        ids.push(ann.next_chat().await.1.id);
    }
    let expected: Vec<u64> = (seen + 1..=seen + 225).collect();
    assert_eq!(ids, expected, "every id after {seen}, once, in order");
    talker.await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn retention_by_count_makes_catch_up_say_where_history_starts() {
    let server = start_server_with(config_with(Backend::Memory, 10)).await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("r", None).await;
    say_and_wait(&mut ann, "r", (1..=30).map(|i| format!("m{i}"))).await;
    let mut late = ChatClient::connect(&server).await;
    late.send(&ClientFrame::Join {
        room: "r".into(),
        since: Some(3),
    })
    .await;
    match late.recv().await {
        ServerFrame::Error {
            code: ErrorCode::HistoryTruncated,
            first_available,
            room,
            ..
        } => {
            assert_eq!(first_available, Some(21));
            assert_eq!(room.as_deref(), Some("r"));
        }
        other => panic!("expected history_truncated, got {other:?}"),
    }
    match late.recv().await {
        ServerFrame::History { messages, .. } => {
            assert_eq!(
                messages.iter().map(|m| m.id).collect::<Vec<_>>(),
                (21..=30).collect::<Vec<_>>()
            )
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn sqlite_history_survives_a_restart_and_ids_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let server = start_server_with(config_with(Backend::Sqlite(path.clone()), 100)).await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("r", None).await;
    say_and_wait(&mut ann, "r", (1..=3).map(|i| format!("m{i}"))).await;
    drop(ann);
    server.shutdown().await;

    let server = start_server_with(config_with(Backend::Sqlite(path), 100)).await;
    let mut bob = ChatClient::connect(&server).await;
    let (history, _) = bob.join("r", None).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["m1", "m2", "m3"]
    );
    bob.say("r", "after restart").await;
    assert_eq!(bob.next_chat().await.1.id, 4);
    server.shutdown().await;
}

const SECRET: &str = "wshub test secret, thirty-two bytes or more";

/// A server that requires tokens, with history in `backend`.
fn with_tokens(backend: Backend) -> wshub::Config {
    let mut config = config_with(backend, 100);
    config.auth = Some(wshub::auth::AuthSource::Secret(wshub::auth::Secret::new(SECRET)));
    config
}

/// A `wshub.v1` client holding a token for `name` / `sub`.
async fn token_holder(server: &TestServer, sub: &str, name: &str) -> ChatClient {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": sub, "name": name, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    ChatClient::connect_url(&server.url(&format!("/ws?token={token}"))).await
}

fn authors(messages: &[ChatMessage]) -> Vec<(&str, Option<&str>, &str)> {
    messages
        .iter()
        .map(|m| (m.nick.as_str(), m.user.as_deref(), m.text.as_str()))
        .collect()
}

#[tokio::test]
async fn history_keeps_who_sent_each_message_in_memory_and_across_an_sqlite_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let expected = [("Dana", Some("u-dana"), "first"), ("Dana", Some("u-other"), "second")];
    for backend in [Backend::Memory, Backend::Sqlite(path.clone())] {
        let server = start_server_with(with_tokens(backend.clone())).await;
        let mut dana = token_holder(&server, "u-dana", "Dana").await;
        dana.join("r", None).await;
        say_and_wait(&mut dana, "r", ["first".to_owned()]).await;
        let mut other = token_holder(&server, "u-other", "Dana").await;
        other.join("r", None).await;
        say_and_wait(&mut other, "r", ["second".to_owned()]).await;
        let mut late = token_holder(&server, "u-late", "Lee").await;
        let (replay, _) = late.join("r", None).await;
        assert_eq!(authors(&replay), expected, "{backend:?}: the replay on join");
        late.send(&ClientFrame::History {
            room: "r".into(),
            since: Some(0),
            limit: None,
        })
        .await;
        match late.recv().await {
            ServerFrame::History { messages, .. } => {
                assert_eq!(authors(&messages), expected, "{backend:?}: a history request")
            }
            other => panic!("expected history, got {other:?}"),
        }
        drop((dana, other, late));
        server.shutdown().await;
    }
    // From the file alone: the in-memory tail is gone with the process.
    let server = start_server_with(with_tokens(Backend::Sqlite(path))).await;
    let mut dana = token_holder(&server, "u-dana", "Dana").await;
    let (replay, _) = dana.join("r", None).await;
    assert_eq!(authors(&replay), expected, "after the restart");
    server.shutdown().await;
}

#[tokio::test]
async fn the_none_store_keeps_nothing_but_ids_still_increase() {
    let server = start_server_with(config_with(Backend::None, 100)).await;
    let mut ann = ChatClient::connect(&server).await;
    ann.join("r", None).await;
    assert_eq!(say_and_wait(&mut ann, "r", ["a".to_string(), "b".to_string()]).await, 2);
    let mut bob = ChatClient::connect(&server).await;
    let (history, _) = bob.join("r", None).await;
    assert!(history.is_empty());
    server.shutdown().await;
}

const FLOOD_ROOMS: [&str; 4] = ["r0", "r1", "r2", "r3"];
const FLOOD_MESSAGES: u64 = 30;
const FLOOD_SIZE: usize = 20_000;
/// Room for about 28 of the 120 flood messages.
const FLOOD_CAP: usize = 600_000;

fn flood_text(room: &str, i: u64) -> String {
    format!("{room} {i:0>width$}", width = FLOOD_SIZE)
}

/// As in the report: raw clients, one per room, each send large texts (and
/// wait for each to come back, so it is stored) into their own room.
async fn flood(server: &TestServer) -> Vec<Client> {
    let mut senders = Vec::new();
    for room in FLOOD_ROOMS {
        let mut client = connect(&server.url(&format!("/ws/{room}"))).await;
        for i in 1..=FLOOD_MESSAGES {
            send_text(&mut client, &flood_text(room, i)).await;
            assert_eq!(
                next_message(&mut client).await.into_text().unwrap().len(),
                FLOOD_SIZE + 3
            );
        }
        senders.push(client);
    }
    senders
}

/// Joins `room` and collects the replay: whether `history_truncated` came
/// first (and its `first_available`), and the messages.
async fn join_replay(client: &mut ChatClient, room: &str, since: Option<u64>) -> (Option<u64>, Vec<ChatMessage>) {
    client
        .send(&ClientFrame::Join {
            room: room.into(),
            since,
        })
        .await;
    let mut truncated = None;
    let mut messages = Vec::new();
    loop {
        match client.recv().await {
            ServerFrame::Error {
                code: ErrorCode::HistoryTruncated,
                first_available,
                ..
            } => truncated = first_available,
            ServerFrame::History { messages: batch, .. } => messages.extend(batch),
            ServerFrame::Presence { .. } => return (truncated, messages),
            other => panic!("unexpected frame while joining: {other:?}"),
        }
    }
}

fn memory_cap_config(backend: Backend) -> wshub::Config {
    let mut config = config_with(backend, 1_000);
    config.history.max_bytes = FLOOD_CAP;
    config
}

#[tokio::test]
async fn the_memory_store_keeps_at_most_the_cap_of_a_flood_and_says_what_it_dropped() {
    let server = start_server_with(memory_cap_config(Backend::Memory)).await;
    drop(flood(&server).await); // they leave, as in the report
    let stats = server.hub.history().stats();
    assert!(stats.memory_bytes <= FLOOD_CAP as u64, "{stats:?}");
    assert!(stats.memory_dropped >= 120 - 30, "{stats:?}");

    let mut late = ChatClient::connect(&server).await;
    let mut kept = 0;
    for room in FLOOD_ROOMS {
        let (truncated, messages) = join_replay(&mut late, room, Some(0)).await;
        let first = messages.first().map(|m| m.id).expect("every room keeps its share");
        assert_eq!(truncated, Some(first), "{room}: the catch-up says where history starts");
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            (first..=FLOOD_MESSAGES).collect::<Vec<_>>(),
            "{room}: the newest, no gap"
        );
        for m in &messages {
            assert_eq!(m.text, flood_text(room, m.id));
        }
        kept += messages.len();
    }
    assert!((20..=30).contains(&kept), "about the cap's worth kept: {kept}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_sqlite_catch_up_has_no_gap_when_the_tail_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(memory_cap_config(Backend::Sqlite(dir.path().join("h.sqlite")))).await;
    // The senders stay: a room in use keeps its tail (a freed one drops it).
    let senders = flood(&server).await;
    let history = server.hub.history().clone();
    tokio::task::spawn_blocking(move || history.flush()).await.unwrap();
    let stats = server.hub.history().stats();
    assert!(stats.memory_bytes <= FLOOD_CAP as u64, "{stats:?}");
    assert!(
        stats.memory_dropped >= 120 - 30,
        "older messages left memory: {stats:?}"
    );

    let mut late = ChatClient::connect(&server).await;
    for room in FLOOD_ROOMS {
        let (truncated, messages) = join_replay(&mut late, room, Some(0)).await;
        assert_eq!(truncated, None, "{room}: nothing was lost");
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            (1..=FLOOD_MESSAGES).collect::<Vec<_>>(),
            "{room}: from the file, then the tail"
        );
        for m in &messages {
            assert_eq!(m.text, flood_text(room, m.id));
        }
    }
    let mut other = ChatClient::connect(&server).await;
    let (truncated, messages) = join_replay(&mut other, "r0", Some(7)).await;
    assert_eq!(truncated, None);
    assert_eq!(
        messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        (8..=30).collect::<Vec<_>>()
    );
    drop(senders);
    server.shutdown().await;
}

/// A replay larger than the joiner's outbound bounds is paced out as the
/// joiner reads, instead of evicting a client that has read nothing yet:
/// five legal 1,000,000-byte raw messages, then a `wshub.v1` join.
#[tokio::test]
async fn a_join_replay_of_big_messages_is_paced_not_an_eviction() {
    let server = start_server_with(config_with(Backend::Memory, 100)).await;
    let mut raw = connect(&server.url("/ws/big")).await;
    let big = |i: u8| char::from(b'a' + i).to_string().repeat(1_000_000);
    for i in 0..5 {
        send_text(&mut raw, &big(i)).await;
        assert_eq!(next_message(&mut raw).await.into_text().unwrap().len(), 1_000_000);
    }
    let mut joiner = ChatClient::connect(&server).await;
    let (history, presence) = joiner.join("big", None).await;
    let texts: Vec<String> = history.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, (0..5).map(big).collect::<Vec<_>>());
    assert!(
        matches!(presence, ServerFrame::Presence { count: 2, .. }),
        "{presence:?}"
    );
    // Live again: the raw client's next message reaches the joiner.
    send_text(&mut raw, "after").await;
    assert_eq!(joiner.next_chat().await.1.text, "after");
    assert_eq!(
        server.hub.stats().evictions.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

/// A catch-up of 1,100 messages of 4,000 bytes (4.4 MB, over the 4 MiB
/// queue bound) arrives whole and in order, and messages published while
/// it is paced out follow it with no gap and no duplicate.
#[tokio::test]
async fn a_catch_up_larger_than_the_queue_arrives_whole_with_live_messages_after() {
    let server = start_server_with(config_with(Backend::Memory, 2_000)).await;
    let mut writer = ChatClient::connect(&server).await;
    writer.join("long", None).await;
    let text = |i: u64| format!("{i:04}{}", "x".repeat(3_996));
    say_and_wait(&mut writer, "long", (1..=1_100).map(text)).await;
    let mut joiner = ChatClient::connect(&server).await;
    joiner
        .send(&ClientFrame::Join {
            room: "long".into(),
            since: Some(0),
        })
        .await;
    // Published while the replay is being paced out.
    for i in 1_101..=1_110 {
        writer.say("long", &text(i)).await;
    }
    assert_eq!(ids_until(&mut joiner, 1_110).await, (1..=1_110).collect::<Vec<u64>>());
    assert_eq!(
        server.hub.stats().evictions.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

/// Holds the database's write lock from another connection, as another
/// process could, until the returned sender is dropped.
fn hold_write_lock(path: &std::path::Path) -> std::sync::mpsc::Sender<()> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = released.recv();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    release
}

/// The ids of the messages `client` gets, live or replayed, until it has
/// `n` of them.
async fn ids_until(client: &mut ChatClient, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        match client.recv().await {
            ServerFrame::History { messages, .. } => ids.extend(messages.iter().map(|m| m.id)),
            ServerFrame::Message { message, .. } => ids.push(message.id),
            ServerFrame::Presence { .. } | ServerFrame::Joined { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ids
}

/// A catch-up that needs the SQLite file first waits for the writer to
/// commit what already left the cache, and while another process holds
/// the file's write lock that wait has no end in sight. It waits off the
/// workers: everyone else, on every worker, goes on joining and talking;
/// a `history` request that needs the file waits the same way (and does
/// not hold the message published after it); both come whole once the
/// lock is released, with the live messages after them once.
#[tokio::test]
async fn a_catch_up_waiting_for_the_database_holds_up_no_other_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let mut config = config_with(Backend::Sqlite(path.clone()), 10_000);
    config.history.cache_per_room = 10;
    config.workers = 2;
    let server = start_server_with(config).await;
    let mut sender = ChatClient::connect(&server).await;
    sender.join("deep", None).await;
    let text = |i: u64| format!("m{i}");
    say_and_wait(&mut sender, "deep", (1..=100).map(text)).await;
    let history = server.hub.history().clone();
    tokio::task::spawn_blocking(move || history.flush()).await.unwrap();

    let release = hold_write_lock(&path);
    // Not committed now: 101-110 have left the cache, so reading them
    // means waiting for the writer.
    say_and_wait(&mut sender, "deep", (101..=120).map(text)).await;
    let mut joiner = ChatClient::connect(&server).await;
    joiner
        .send(&ClientFrame::Join {
            room: "deep".into(),
            since: Some(0),
        })
        .await;
    let mut asker = ChatClient::connect(&server).await;
    asker.join("deep", None).await;
    asker
        .send(&ClientFrame::History {
            room: "deep".into(),
            since: None,
            limit: Some(50),
        })
        .await;
    sender.say("deep", &text(121)).await;
    assert_eq!(ids_until(&mut asker, 1).await, [121], "live, before the answer");

    // Two workers, so some of these share the joiner's.
    for i in 0..4 {
        let mut other = ChatClient::connect(&server).await;
        let room = format!("other-{i}");
        other.join(&room, None).await;
        other.say(&room, "still here").await;
        assert_eq!(other.next_chat().await.1.text, "still here");
    }

    drop(release);
    assert_eq!(ids_until(&mut joiner, 121).await, (1..=121).collect::<Vec<u64>>());
    assert_eq!(
        ids_until(&mut asker, 50).await,
        (71..=120).collect::<Vec<u64>>(),
        "the newest 50 when asked, not the one published after"
    );
    sender.say("deep", &text(122)).await;
    assert_eq!(ids_until(&mut joiner, 1).await, [122]);
    assert_eq!(ids_until(&mut asker, 1).await, [122]);
    server.shutdown().await;
}
