//! Why a handshake is refused, for clients that cannot read its status:
//! `GET <WebSocket path>?check` runs the upgrade's own checks (origin and
//! Host, token, limits) for that path, holds nothing, and answers JSON
//! with the status, the reason and whether retrying can help; and a
//! refusal repeated by the same address is logged at warn once, not once
//! per attempt.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::redis::WshubProcess;
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use wshub::auth::{AuthSource, Secret};

const SECRET: &str = "wshub test secret, thirty-two bytes or more";

fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn valid_token(rooms: Option<&[&str]>) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    match rooms {
        Some(rooms) => token(json!({"sub": "ann", "exp": exp, "rooms": rooms})),
        None => token(json!({"sub": "ann", "exp": exp})),
    }
}

/// One HTTP request, `Connection: close`; the status line, head and body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let response = common::http(addr, method, path, headers, "").await;
    (response.status, response.head, response.body)
}

/// `GET path` (with `?check`): the JSON verdict, after checking the
/// response is a readable, uncached 200.
async fn check(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Value {
    let (status, head, body) = request(addr, "GET", path, headers).await;
    assert_eq!(status, 200, "{path}: {head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn verdict(v: &Value) -> (u64, &str, bool) {
    (
        v["status"].as_u64().unwrap(),
        v["reason"].as_str().unwrap(),
        v["retry"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn the_check_names_the_token_problem_and_says_retrying_cannot_help() {
    let mut config = test_config();
    config.auth = Some(AuthSource::Secret(Secret::new(SECRET)));
    let server = start_server_with(config).await;
    let addr = server.addr;

    let missing = check(addr, "/ws?check&protocol=wshub.v1", &[]).await;
    assert_eq!(verdict(&missing), (401, "unauthorized", false));
    assert_eq!(missing["message"], "unauthorized: missing token");

    let forged = token(json!({"sub": "ann", "exp": 4_000_000_000u64}))
        .rsplit_once('.')
        .map(|(head, _)| format!("{head}.AAAA"))
        .unwrap();
    let bad = check(addr, "/ws?check", &[("Authorization", &format!("Bearer {forged}"))]).await;
    assert_eq!(verdict(&bad), (401, "unauthorized", false));
    assert_eq!(bad["message"], "unauthorized: bad signature");

    // The same answers as the upgrade itself, token by token.
    let good = valid_token(Some(&["kitchen"]));
    let bearer = format!("Bearer {good}");
    let ok = check(addr, "/ws?check&protocol=wshub.v1", &[("Authorization", &bearer)]).await;
    assert_eq!(verdict(&ok), (101, "ok", true));
    let ok = check(addr, &format!("/echo?check&token={good}"), &[]).await;
    assert_eq!(verdict(&ok), (101, "ok", true));
    // A raw room the token does not list: 403, as the upgrade answers.
    let raw = check(addr, "/ws/cellar?check", &[("Authorization", &bearer)]).await;
    assert_eq!(verdict(&raw), (403, "forbidden_room", false));
    let (status, _, _) = request(
        addr,
        "GET",
        &format!("/ws/cellar?token={good}"),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // The checks held nothing.
    assert_eq!(server.hub.snapshot().connections, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_check_names_a_refused_origin_to_any_page() {
    let server = start_server().await;
    let addr = server.addr;
    let foreign = check(addr, "/ws?check", &[("Origin", "https://evil.example")]).await;
    assert_eq!(verdict(&foreign), (403, "origin", false));
    // A same-origin fetch sends no Origin: the page names its own, and a
    // DNS-rebinding page learns its Host is not served.
    let rebinding = check(
        addr,
        "/ws?check&origin=http%3A%2F%2Fevil.com%3A8080",
        &[("Host", "evil.com:8080")],
    )
    .await;
    assert_eq!(verdict(&rebinding), (403, "origin", false));
    assert!(
        rebinding["message"].as_str().unwrap().contains("--allowed-origin"),
        "{rebinding}"
    );
    let local = check(addr, "/ws?check", &[("Origin", "http://localhost:5173")]).await;
    assert_eq!(verdict(&local), (101, "ok", true));
    // A cross-origin check with a token is preflighted.
    let (status, head, _) = request(
        addr,
        "OPTIONS",
        "/ws?check",
        &[
            ("Origin", "http://localhost:5173"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("access-control-allow-headers: authorization"), "{head}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_check_says_a_full_server_is_worth_retrying_and_holds_no_slot() {
    let mut config = test_config();
    config.max_connections = 1;
    let server = start_server_with(config).await;
    let addr = server.addr;
    for _ in 0..5 {
        assert_eq!(verdict(&check(addr, "/echo?check", &[]).await), (101, "ok", true));
    }
    // The checks took no slot: the one connection still fits.
    let client = connect(&server.url("/echo")).await;
    let full = check(addr, "/echo?check", &[]).await;
    assert_eq!(verdict(&full), (503, "full", true));
    assert_eq!(full["message"], "server at its connection limit, try again later");
    drop(client);
    wait_for_connections(&server.hub, 0).await;
    server.shutdown().await;

    let mut config = test_config();
    config.max_connections_per_ip = 1;
    let server = start_server_with(config).await;
    let _client = connect(&server.url("/ws")).await;
    let crowded = check(server.addr, "/ws/kitchen?check", &[]).await;
    assert_eq!(verdict(&crowded), (429, "too_many_from_address", true));
    server.shutdown().await;
}

#[tokio::test]
async fn check_with_an_upgrade_header_is_an_upgrade() {
    let server = start_server().await;
    let _client = connect(&server.url("/echo?check")).await;
    wait_for_connections(&server.hub, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_repeated_by_one_address_warns_once() {
    let wshub = WshubProcess::spawn(&["--history", "memory", "--jwt-secret", SECRET]);
    for _ in 0..5 {
        let (status, _, _) = request(
            wshub.addr,
            "GET",
            "/ws",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        )
        .await;
        assert_eq!(status, 401);
    }
    let (_, _, metrics) = request(wshub.addr, "GET", "/metrics", &[]).await;
    assert!(
        metrics.contains(r#"wshub_upgrades_refused_total{reason="unauthorized"} 5"#),
        "every refusal is counted:\n{metrics}"
    );
    // Another reason warns of its own; its line, logged last, proves the
    // earlier ones are in.
    let (status, _, _) = request(
        wshub.addr,
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    wshub
        .wait_for_log(PATIENCE, |line| line.contains("origin not allowed"))
        .await
        .expect("the origin refusal is logged");
    let warnings: Vec<String> = wshub
        .log_lines()
        .into_iter()
        .filter(|line| line.contains("refused upgrade: unauthorized") && line.contains("\"WARN\""))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for five refusals: {warnings:#?}");
    assert!(warnings[0].contains("missing token"), "{}", warnings[0]);
}
