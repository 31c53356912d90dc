//! Nodes of a cluster sharing a real `redis-server`, and `wshub.v1`
//! clients that read frames as JSON values (so that the fields the fault
//! tests look at, `local` and the `cross_node_*` notice codes, are checked
//! as they are on the wire): shared by the scale-out tests.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// A dead node's members must be gone within this (heartbeat 2 s, dead after
/// 6 s; the rest is slack for a loaded machine).
pub const NODE_DEATH_BOUND: Duration = Duration::from_secs(20);

/// How long a node may take to notice Redis is gone, or back (it retries
/// with back-off).
pub const REDIS_FAULT_BOUND: Duration = Duration::from_secs(30);

/// The secret of the nodes that require tokens.
pub const TOKEN_SECRET: &str = "wshub test secret, thirty-two bytes or more";

/// A node's settings: the test defaults plus Redis and a name.
pub fn node_config(redis: &str, name: &str) -> wshub::Config {
    let mut config = test_config();
    config.redis = Some(redis.to_string());
    config.node_id = Some(name.to_string());
    config
}

/// A node, once connected to Redis (see
/// `a_node_is_connected_to_redis_when_it_starts_serving` for why the tests
/// wait).
pub async fn node(redis: &str, name: &str) -> TestServer {
    node_with(node_config(redis, name)).await
}

pub async fn node_with(config: wshub::Config) -> TestServer {
    let server = start_node(config).await;
    wait_until_connected(&server, PATIENCE).await;
    server
}

pub async fn start_node(config: wshub::Config) -> TestServer {
    tokio::time::timeout(Duration::from_secs(15), start_server_with(config))
        .await
        .expect("a node starts within 15 s")
}

pub fn is_connected(server: &TestServer) -> bool {
    server
        .hub
        .broker()
        .cluster()
        .expect("a node with --redis reports its cluster")
        .up
}

pub async fn wait_until_connected(server: &TestServer, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !is_connected(server) {
        assert!(
            Instant::now() < deadline,
            "node on {} not connected to Redis within {limit:?}",
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A chat message as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub id: u64,
    pub nick: String,
    pub text: String,
    pub local: bool,
}

impl Msg {
    pub fn of(value: &Value) -> Msg {
        Msg {
            id: value["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("message without a numeric id: {value}")),
            nick: value["nick"].as_str().unwrap_or_default().to_string(),
            text: value["text"].as_str().unwrap_or_default().to_string(),
            local: value["local"].as_bool().unwrap_or(false),
        }
    }
}

pub fn kind(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

pub fn is_presence_event(frame: &Value) -> bool {
    matches!(kind(frame), "joined" | "left" | "presence")
}

/// `presence` members as (nick, connections), checking `count`.
pub fn members_of(frame: &Value) -> Vec<(String, u64)> {
    assert_eq!(kind(frame), "presence", "expected presence, got {frame}");
    let members: Vec<(String, u64)> = frame["members"]
        .as_array()
        .unwrap_or_else(|| panic!("presence without members: {frame}"))
        .iter()
        .map(|m| {
            (
                m["nick"].as_str().unwrap().to_string(),
                m["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        frame["count"].as_u64(),
        Some(members.iter().map(|m| m.1).sum()),
        "count is the sum of connections: {frame}"
    );
    members
}

pub fn nicks(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// A `wshub.v1` client with a name (for failure messages), reading JSON.
pub struct Peer {
    pub name: String,
    pub ws: Client,
}

impl Peer {
    /// Connects to `url` with `wshub.v1` and takes `nick`.
    pub async fn connect(url: &str, nick: &str) -> Peer {
        let ChatClient { ws } = ChatClient::connect_url(url).await;
        let mut peer = Peer {
            name: format!("{nick}@{url}"),
            ws,
        };
        peer.send(json!({"type": "nick", "nick": nick})).await;
        let frame = peer.recv().await;
        assert_eq!(frame, json!({"type": "nick", "nick": nick}), "{}", peer.name);
        peer
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.name));
    }

    /// The next frame within `limit`, or None.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Some(
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: bad frame {text}: {e}", self.name)),
                    )
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => panic!("{}: expected a text frame, got {other:?}", self.name),
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        match self.recv_within(PATIENCE).await {
            Some(frame) => frame,
            None => panic!("{}: no frame within {PATIENCE:?}", self.name),
        }
    }

    /// Frames until one satisfies `wanted` (returned), within `limit`.
    /// Frames for which `skip` holds are passed over; any other is a failure.
    pub async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        skip: impl Fn(&Value) -> bool,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(frame) if wanted(&frame) => return frame,
                Some(frame) if skip(&frame) => continue,
                Some(frame) => panic!("{}: waiting for {what}, got {frame}", self.name),
                None => panic!("{}: no {what} within {limit:?}", self.name),
            }
        }
    }

    /// Joins; returns the replayed messages (every `history` frame) and
    /// the `presence` snapshot that follows. Any error frame fails.
    pub async fn join(&mut self, room: &str, since: Option<u64>) -> (Vec<Msg>, Value) {
        self.join_with(room, since, false).await
    }

    /// `join` on a node that has no Redis (yet): a `cross_node_interrupted`
    /// notice and a `history_unavailable` error may come first.
    pub async fn join_degraded(&mut self, room: &str) -> (Vec<Msg>, Value) {
        self.join_with(room, None, true).await
    }

    pub async fn join_with(&mut self, room: &str, since: Option<u64>, degraded: bool) -> (Vec<Msg>, Value) {
        let mut request = json!({"type": "join", "room": room});
        if let Some(since) = since {
            request["since"] = json!(since);
        }
        self.send(request).await;
        let mut replayed = Vec::new();
        loop {
            let frame = self.recv().await;
            match kind(&frame) {
                "history" => {
                    assert_eq!(frame["room"], room, "{}: {frame}", self.name);
                    replayed.extend(frame["messages"].as_array().unwrap().iter().map(Msg::of));
                }
                "presence" if frame["room"] == room => return (replayed, frame),
                // Someone else's comings and goings may interleave.
                "joined" | "left" => {}
                "notice" if degraded && frame["code"] == "cross_node_interrupted" => {}
                // Without Redis, the recent messages cannot be read.
                "error" if degraded && frame["code"] == "history_unavailable" => {}
                _ => panic!("{}: unexpected frame while joining {room}: {frame}", self.name),
            }
        }
    }

    pub async fn say(&mut self, room: &str, text: &str) {
        self.send(json!({"type": "send", "room": room, "text": text})).await;
    }

    /// The next `message` frame, passing over presence events; anything
    /// else fails.
    pub async fn next_message(&mut self) -> Msg {
        let frame = self
            .wait_for("a message", PATIENCE, is_presence_event, |f| kind(f) == "message")
            .await;
        Msg::of(&frame)
    }

    /// The next message with this text (others are passed over).
    pub async fn message_with_text(&mut self, text: &str, limit: Duration) -> Msg {
        let frame = self
            .wait_for(
                &format!("message {text:?}"),
                limit,
                |f| is_presence_event(f) || matches!(kind(f), "message" | "error" | "notice"),
                |f| kind(f) == "message" && f["text"] == text,
            )
            .await;
        Msg::of(&frame)
    }

    /// `n` messages (presence events passed over).
    pub async fn messages(&mut self, n: usize, limit: Duration) -> Vec<Msg> {
        let mut got = Vec::with_capacity(n);
        let deadline = Instant::now() + limit;
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(frame) if kind(&frame) == "message" => got.push(Msg::of(&frame)),
                Some(frame) if is_presence_event(&frame) => {}
                Some(frame) => panic!("{}: waiting for messages, got {frame}", self.name),
                None => panic!(
                    "{}: only {} of {n} messages within {limit:?}; last: {:?}",
                    self.name,
                    got.len(),
                    got.last()
                ),
            }
        }
        got
    }

    /// The next `notice` with `code`, passing over presence events: the
    /// cross-node status is news, not an `error` (which would fail here).
    pub async fn notice(&mut self, code: &str, limit: Duration) -> Value {
        let frame = self
            .wait_for(&format!("notice {code}"), limit, is_presence_event, |f| {
                kind(f) == "notice" && f["code"] == code
            })
            .await;
        assert!(
            frame["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {frame}",
            self.name
        );
        frame
    }

    /// A fresh `presence` snapshot of `room` (via `members`).
    pub async fn members(&mut self, room: &str) -> Vec<(String, u64)> {
        self.send(json!({"type": "members", "room": room})).await;
        let frame = self
            .wait_for(
                "presence",
                PATIENCE,
                |f| matches!(kind(f), "joined" | "left" | "message"),
                |f| kind(f) == "presence",
            )
            .await;
        members_of(&frame)
    }

    /// Asks for `members` until the snapshot is `expected` (other nodes'
    /// changes travel through Redis), within `limit`.
    pub async fn wait_members(&mut self, room: &str, expected: &[(&str, u64)], limit: Duration) {
        let expected = nicks(expected);
        self.wait_members_where(room, &format!("{expected:?}"), limit, |now| now == expected.as_slice())
            .await;
    }

    /// Asks for `members` until `wanted` holds for the snapshot.
    pub async fn wait_members_where(
        &mut self,
        room: &str,
        what: &str,
        limit: Duration,
        wanted: impl Fn(&[(String, u64)]) -> bool,
    ) -> Vec<(String, u64)> {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.members(room).await;
            if wanted(&now) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{}: members of {room} still {now:?} after {limit:?}, expected {what}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// ann, bob, cat (and `late` when given) and one raw guest.
pub fn with_raw_guest(names: &'static [&'static str]) -> impl Fn(&[(String, u64)]) -> bool {
    move |now| {
        now.len() == names.len() + 1
            && names.iter().all(|n| now.contains(&(n.to_string(), 1)))
            && now.iter().any(|(n, c)| n.starts_with("guest-") && *c == 1)
    }
}

/// The next data message of a raw client.
pub async fn raw_next(client: &mut Client) -> Message {
    let message = next_message(client).await;
    assert!(!message.is_close(), "raw client closed: {message:?}");
    message
}

/// Sends `text` from `sender` and checks that each of `all` gets it; returns
/// the id everyone saw (the same).
pub async fn say_and_see(sender: usize, peers: &mut [&mut Peer], room: &str, text: &str) -> u64 {
    peers[sender].say(room, text).await;
    let mut id = None;
    for peer in peers.iter_mut() {
        let message = peer.next_message().await;
        assert_eq!(message.text, text, "{}", peer.name);
        assert!(
            !message.local,
            "{}: a cross-node message is not local: {message:?}",
            peer.name
        );
        assert!(message.id > 0, "{}: {message:?}", peer.name);
        match id {
            None => id = Some(message.id),
            Some(id) => assert_eq!(message.id, id, "{}: the same id on every node", peer.name),
        }
    }
    id.unwrap()
}

/// `GET /healthz`: the status code and the JSON body.
pub async fn healthz(addr: std::net::SocketAddr) -> (u16, Value) {
    let response = super::http_get(addr, "/healthz").await;
    (response.status, response.json())
}

/// Asks `/healthz` until `status` is `wanted` (within `limit`).
pub async fn healthz_until(addr: std::net::SocketAddr, wanted: &str, limit: Duration) -> (u16, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let (code, health) = healthz(addr).await;
        if health["status"] == wanted {
            return (code, health);
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never said {wanted} within {limit:?}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `down_since` as a time, checked to be RFC 3339 and not in the future.
pub fn down_since(health: &Value) -> std::time::SystemTime {
    let text = health["redis"]["down_since"]
        .as_str()
        .unwrap_or_else(|| panic!("no down_since: {health}"));
    let at = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(at <= std::time::SystemTime::now(), "{health}");
    assert!(health["redis"]["down_for_seconds"].is_u64(), "{health}");
    at
}
