//! What history promises when the process dies, checked on the real
//! binary: after `kill -9`, at most the messages stamped within the last
//! commit interval are lost, and their ids are never given to new messages;
//! after SIGTERM nothing any client has seen is lost and ids continue
//! without a gap. See docs/operations.md, "Data on crash and shutdown".

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// The commit interval the server runs with, as passed on its command line.
const COMMIT_INTERVAL_MS: i64 = 50;

/// Extra age a lost message may have beyond the commit interval: on a
/// loaded 2-core machine the writer thread can be scheduled late, and a
/// commit of a batch takes time of its own. The run lasts about 3 s, so a
/// store that never commits still fails: its first 2 s would be lost.
const SLACK_MS: i64 = 1_000;

const ROOM: &str = "durable";
const BATCHES: usize = 30;
const BATCH: usize = 50;
const BATCH_PERIOD: Duration = Duration::from_millis(100);

/// How long start-up and exit may take before the test gives up.
const START_STOP_PATIENCE: Duration = Duration::from_secs(30);

/// The wshub binary, running on a free port with SQLite history at `db`.
/// Killed when dropped, so a failing test leaves no process behind.
struct Wshub {
    child: Child,
    addr: SocketAddr,
}

impl Wshub {
    fn start(db: &Path) -> Wshub {
        let mut child = wshub_command()
            .args(["--bind", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(["--history", "sqlite", "--history-path"])
            .arg(db)
            .args(["--history-commit-interval", &format!("{COMMIT_INTERVAL_MS}ms")])
            .args(["--history-max-messages", "100000", "--join-history", "100000"])
            // It sends 500 messages a second on one connection.
            .args(["--rate-messages", "0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wshub");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads the log to the end, so the server never blocks on a full
        // pipe; the "listening" line gives the address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening on "))
                {
                    if let Some(addr) = json["fields"]["addr"].as_str().and_then(|a| a.parse().ok()) {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(START_STOP_PATIENCE)
            .expect("the server logs its listening address");
        Wshub { child, addr }
    }

    async fn client(&self) -> ChatClient {
        ChatClient::connect_url(&format!("ws://{}/ws", self.addr)).await
    }

    /// SIGKILL: no flush, no close, no destructor.
    fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + START_STOP_PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(tokio::time::Instant::now() < deadline, "wshub did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Wshub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("ms fit")
}

/// Sends `BATCHES` batches of `BATCH` messages, one batch per
/// `BATCH_PERIOD`, each message waited for (seen) through the room's echo.
/// Returns every seen message by id.
async fn talk(client: &mut ChatClient) -> BTreeMap<u64, ChatMessage> {
    let mut seen = BTreeMap::new();
    let mut tick = tokio::time::interval(BATCH_PERIOD);
    for batch in 0..BATCHES {
        tick.tick().await;
        for i in 0..BATCH {
            client.say(ROOM, &format!("batch {batch} message {i}")).await;
        }
        for i in 0..BATCH {
            let (room, message) = client.next_chat().await;
            assert_eq!(room, ROOM);
            assert_eq!(message.text, format!("batch {batch} message {i}"));
            assert!(seen.insert(message.id, message).is_none(), "an id seen twice");
        }
    }
    seen
}

/// Everything the restarted server has for the room.
async fn stored(server: &Wshub) -> BTreeMap<u64, ChatMessage> {
    let mut client = server.client().await;
    let (history, _) = client.join(ROOM, Some(0)).await;
    let mut stored = BTreeMap::new();
    for message in history {
        assert!(stored.insert(message.id, message).is_none(), "an id stored twice");
    }
    stored
}

/// A new message after the restart, and its id.
async fn new_id(server: &Wshub) -> u64 {
    let mut client = server.client().await;
    client.join(ROOM, None).await;
    client.say(ROOM, "after the restart").await;
    let (_, message) = client.next_chat().await;
    assert_eq!(message.text, "after the restart");
    message.id
}

#[tokio::test]
async fn kill_9_loses_at_most_the_last_commit_interval_and_reuses_no_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.sqlite");
    let mut server = Wshub::start(&db);
    let mut client = server.client().await;
    client.join(ROOM, None).await;
    let seen = talk(&mut client).await;
    let killed_at = now_ms();
    server.kill_9();
    drop(client);

    let server = Wshub::start(&db);
    let stored = stored(&server).await;
    for (id, message) in &stored {
        assert_eq!(seen.get(id), Some(message), "stored {id} is not what was seen");
    }
    let lost: Vec<&ChatMessage> = seen.values().filter(|m| !stored.contains_key(&m.id)).collect();
    // Only the tail can be lost: commits are in order.
    if let (Some(first_lost), Some(last_stored)) = (lost.first(), stored.keys().next_back()) {
        assert!(
            first_lost.id > *last_stored,
            "lost {} but kept {last_stored}",
            first_lost.id
        );
    }
    let oldest_lost_age = lost.first().map(|m| killed_at - m.ts);
    eprintln!(
        "kill -9 after {} seen messages: {} lost ({}), the oldest lost stamped {} ms before the kill \
         (commit interval {COMMIT_INTERVAL_MS} ms, allowed {} ms)",
        seen.len(),
        lost.len(),
        match (lost.first(), lost.last()) {
            (Some(a), Some(b)) => format!("ids {}..={}", a.id, b.id),
            _ => "none".into(),
        },
        oldest_lost_age.map_or("-".into(), |age| age.to_string()),
        COMMIT_INTERVAL_MS + SLACK_MS,
    );
    for message in &lost {
        assert!(
            message.ts >= killed_at - COMMIT_INTERVAL_MS - SLACK_MS,
            "message {} was stamped {} ms before the kill, more than the commit interval \
             ({COMMIT_INTERVAL_MS} ms) and {SLACK_MS} ms of slack",
            message.id,
            killed_at - message.ts
        );
    }

    let max_seen = *seen.keys().next_back().expect("messages were seen");
    let id = new_id(&server).await;
    assert!(
        id > max_seen,
        "new id {id} was already handed out before the kill (up to {max_seen})"
    );
    eprintln!("kill -9: ids skipped from {max_seen} to {id}");
}

#[tokio::test]
async fn sigterm_loses_nothing_and_ids_continue_without_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.sqlite");
    let mut server = Wshub::start(&db);
    let mut client = server.client().await;
    client.join(ROOM, None).await;
    let seen = talk(&mut client).await;
    server.sigterm();
    assert_eq!(expect_close(&mut client.ws).await, 1001);
    drop(client);
    assert_eq!(server.wait_exit().await, Some(0));

    let server = Wshub::start(&db);
    let stored = stored(&server).await;
    let lost = seen.keys().filter(|id| !stored.contains_key(id)).count();
    eprintln!("SIGTERM after {} seen messages: {lost} lost", seen.len());
    assert_eq!(
        stored, seen,
        "a clean shutdown keeps every message seen, and nothing else"
    );
    let max_seen = *seen.keys().next_back().expect("messages were seen");
    assert_eq!(new_id(&server).await, max_seen + 1);
}
