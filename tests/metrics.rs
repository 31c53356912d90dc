//! `GET /metrics`: Prometheus text over real HTTP, whose numbers follow
//! real WebSocket connections and messages, and whose gauges fall back to 0
//! when everyone has left. Each test server has its own recorder, so the
//! tests can expect exact values while others run in the same process.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// One scrape: the response head and every sample by its series
/// (`name{label="value",...}` exactly as rendered).
struct Scrape {
    head: String,
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The value of `series`; a missing series fails the test (every
    /// series exists from the start, at 0).
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in {:#?}", self.samples))
    }
}

async fn http_get(addr: SocketAddr, path: &str, origin: Option<&str>) -> common::HttpResponse {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    common::http(addr, "GET", path, &headers, "").await
}

/// A tiny parser of the text exposition format: `# TYPE` lines and
/// `series value` samples (no timestamps are rendered).
async fn scrape_with_origin(addr: SocketAddr, origin: Option<&str>) -> Scrape {
    let response = http_get(addr, "/metrics", origin).await;
    let (head, body) = (&response.head, &response.body);
    assert_eq!(response.status, 200, "{head}");
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(series.starts_with("wshub_"), "unprefixed series {series}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    Scrape {
        head: head.to_owned(),
        samples,
        types,
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    scrape_with_origin(addr, None).await
}

fn connections(endpoint: &str) -> String {
    format!(r#"wshub_connections{{endpoint="{endpoint}"}}"#)
}

fn opened(endpoint: &str) -> String {
    format!(r#"wshub_connections_opened_total{{endpoint="{endpoint}"}}"#)
}

#[tokio::test]
async fn metrics_is_prometheus_text_and_sends_no_cors_headers() {
    let server = start_server().await;
    // Even from an allowed page's origin: the route is outside CORS, so
    // no browser page elsewhere can read it.
    let scrape = scrape_with_origin(server.addr, Some("http://localhost:5173")).await;
    let head = scrape.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{}",
        scrape.head
    );
    assert!(!head.contains("access-control-allow-origin"), "{}", scrape.head);
    let kind = |name: &str| scrape.types.get(name).map(String::as_str);
    assert_eq!(kind("wshub_connections"), Some("gauge"));
    assert_eq!(kind("wshub_connections_opened_total"), Some("counter"));
    assert_eq!(kind("wshub_received_bytes_total"), Some("counter"));
    assert_eq!(kind("wshub_outbound_queued_frames"), Some("gauge"));
    for (name, kind) in &scrape.types {
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
    }
    // Nothing has happened yet: every series reads 0.
    for (series, value) in &scrape.samples {
        assert_eq!(*value, 0.0, "{series}");
    }
    assert_eq!(scrape.get(&connections("echo")), 0.0);
    assert_eq!(scrape.get(r#"wshub_evictions_total{reason="slow_consumer"}"#), 0.0);
    assert_eq!(scrape.get("wshub_history_pending"), 0.0);
    // The log output's drops (tests/cli.rs makes some with the binary);
    // this process installs no log writer.
    assert_eq!(kind("wshub_log_lines_dropped_total"), Some("counter"));
    assert_eq!(scrape.get("wshub_log_lines_dropped_total"), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn numbers_follow_connections_and_messages_and_gauges_return_to_zero() {
    let server = start_server().await;
    let mut echo1 = connect(&server.url("/echo")).await;
    let echo2 = connect(&server.url("/echo")).await;
    let mut raw = connect(&server.url("/ws")).await;
    let mut chat = ChatClient::connect(&server).await;
    chat.join("lobby", None).await;
    wait_for_connections(&server.hub, 4).await;

    let open = scrape(server.addr).await;
    assert_eq!(open.get(&connections("echo")), 2.0);
    assert_eq!(open.get(&connections("chat")), 1.0);
    assert_eq!(open.get(&connections("v1")), 1.0);
    assert_eq!(open.get(&opened("echo")), 2.0);
    assert_eq!(open.get(&opened("chat")), 1.0);
    assert_eq!(open.get(&opened("v1")), 1.0);
    assert_eq!(open.get("wshub_rooms"), 1.0);
    assert_eq!(open.get("wshub_room_messages_published_total"), 0.0);

    // 3 raw messages and 2 wshub.v1 messages into the lobby, whose two
    // members each get every one.
    for i in 0..3 {
        send_text(&mut raw, &format!("raw {i}")).await;
    }
    for i in 0..2 {
        chat.say("lobby", &format!("v1 {i}")).await;
    }
    for _ in 0..5 {
        next_message(&mut raw).await;
        chat.next_chat().await;
    }
    send_text(&mut echo1, "echo").await;
    assert_eq!(next_message(&mut echo1).await, Message::text("echo"));

    let flowing = scrape(server.addr).await;
    assert_eq!(flowing.get("wshub_room_messages_published_total"), 5.0);
    assert_eq!(flowing.get("wshub_room_frames_queued_total"), 10.0);
    assert_eq!(flowing.get("wshub_history_appended_total"), 5.0);
    assert_eq!(flowing.get("wshub_history_write_errors_total"), 0.0);
    assert_eq!(flowing.get("wshub_history_dropped_total"), 0.0);
    // Everyone has read everything.
    assert_eq!(flowing.get("wshub_outbound_queued_frames"), 0.0);

    drop((echo1, echo2, raw, chat));
    wait_for_connections(&server.hub, 0).await;
    let closed = scrape(server.addr).await;
    for endpoint in ["echo", "chat", "v1", "pusher"] {
        assert_eq!(closed.get(&connections(endpoint)), 0.0, "{endpoint}");
    }
    assert_eq!(closed.get("wshub_rooms"), 0.0);
    assert_eq!(closed.get("wshub_outbound_queued_frames"), 0.0);
    assert_eq!(closed.get("wshub_outbound_queued_frames_max"), 0.0);
    assert_eq!(closed.get("wshub_history_pending"), 0.0);
    // Counters do not go back.
    assert_eq!(closed.get(&opened("echo")), 2.0);
    assert_eq!(closed.get("wshub_room_messages_published_total"), 5.0);
    server.shutdown().await;
}

#[tokio::test]
async fn two_servers_in_one_process_keep_their_own_numbers() {
    let a = start_server().await;
    let b = start_server().await;
    let _client = connect(&a.url("/echo")).await;
    wait_for_connections(&a.hub, 1).await;
    assert_eq!(scrape(a.addr).await.get(&opened("echo")), 1.0);
    assert_eq!(scrape(b.addr).await.get(&opened("echo")), 0.0);
    a.shutdown().await;
    b.shutdown().await;
}

/// The counters that the connection's own code increments: bytes and
/// messages in, frames and bytes out, endings by reason and code, refused
/// upgrades, as counted by the hooks in the connection and the upgrade.
#[tokio::test]
async fn connection_hooks_count_traffic_endings_and_refusals() {
    let server = start_server().await;
    let mut echo = connect(&server.url("/echo")).await;
    send_text(&mut echo, "hello").await;
    assert_eq!(next_message(&mut echo).await, Message::text("hello"));
    echo.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await
    .unwrap();
    assert_eq!(expect_close(&mut echo).await, 1000);
    wait_for_connections(&server.hub, 0).await;
    // A plain GET (426) and a foreign page (403).
    let plain = http_get(server.addr, "/echo", None).await;
    assert_eq!(plain.status, 426, "{plain:?}");
    assert_eq!(
        connect_with_origin(&server.url("/echo"), "https://evil.example")
            .await
            .err(),
        Some(403)
    );

    let s = scrape(server.addr).await;
    let echo = |name: &str| s.get(&format!(r#"{name}{{endpoint="echo"}}"#));
    assert_eq!(echo("wshub_messages_received_total"), 1.0);
    // "hello" masked: 2 header bytes, 4 mask bytes, 5 payload; then the close.
    assert!(echo("wshub_received_bytes_total") >= 11.0);
    // The echoed message and the close reply.
    assert_eq!(echo("wshub_frames_sent_total"), 2.0);
    assert_eq!(echo("wshub_sent_bytes_total"), 7.0 + 4.0);
    assert_eq!(
        s.get(r#"wshub_connections_closed_total{endpoint="echo",reason="client_closed"}"#),
        1.0
    );
    assert_eq!(s.get(r#"wshub_close_codes_total{code="1000"}"#), 1.0);
    assert_eq!(s.get(r#"wshub_upgrades_refused_total{reason="not_websocket"}"#), 1.0);
    assert_eq!(s.get(r#"wshub_upgrades_refused_total{reason="origin"}"#), 1.0);
    server.shutdown().await;
}

/// The history write latency is a histogram fed by every SQLite commit;
/// the Redis state gauge is 0 on a node without Redis.
#[tokio::test]
async fn history_commit_latency_and_redis_state_are_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.history.backend = wshub::history::Backend::Sqlite(dir.path().join("h.sqlite"));
    let server = start_server_with(config).await;
    let mut client = ChatClient::connect(&server).await;
    client.join("r", None).await;
    for i in 0..5 {
        client.say("r", &format!("m{i}")).await;
        client.next_chat().await;
    }
    let history = server.hub.history().clone();
    tokio::task::spawn_blocking(move || history.flush()).await.unwrap();
    let after = scrape(server.addr).await;
    assert!(after.get("wshub_history_commit_duration_seconds_count") >= 1.0);
    assert!(after.get("wshub_history_commit_duration_seconds_sum") > 0.0);
    assert_eq!(
        after
            .types
            .get("wshub_history_commit_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(after.get("wshub_redis_connected"), 0.0);
    server.shutdown().await;
}

/// Refusals by the access checks are counted by reason too: a missing
/// token (401) and too many connections from one address (429).
#[tokio::test]
async fn auth_and_per_address_refusals_are_counted() {
    let mut config = test_config();
    config.auth = Some(wshub::auth::AuthSource::Secret(wshub::auth::Secret::new(
        "a secret of at least thirty-two bytes, for HS256",
    )));
    let server = start_server_with(config).await;
    assert_eq!(
        connect_with_origin(&server.url("/echo"), "http://localhost")
            .await
            .err(),
        Some(401)
    );
    let after = scrape(server.addr).await;
    assert_eq!(after.get(r#"wshub_upgrades_refused_total{reason="unauthorized"}"#), 1.0);
    server.shutdown().await;

    let mut config = test_config();
    config.max_connections_per_ip = 1;
    let server = start_server_with(config).await;
    let _first = connect(&server.url("/echo")).await;
    assert_eq!(
        connect_with_origin(&server.url("/echo"), "http://localhost")
            .await
            .err(),
        Some(429)
    );
    let after = scrape(server.addr).await;
    assert_eq!(
        after.get(r#"wshub_upgrades_refused_total{reason="too_many_from_address"}"#),
        1.0
    );
    server.shutdown().await;
}
