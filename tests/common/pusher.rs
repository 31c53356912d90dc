//! Pusher clients and signed HTTP API calls for tests that span nodes
//! (tests/redis_pusher.rs), as tests/pusher.rs makes them: signatures
//! computed with the app's secret, frames read as JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

use super::{connect, next_message, send_text, Client, TestServer};

/// The one app's id, key and secret.
pub const APP_ID: &str = "app-id";
pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";

/// `config` with the app (as `--app ID:KEY:SECRET` makes it: client events on).
pub fn with_app(config: wshub::Config) -> wshub::Config {
    with_app_as(config, |_| {})
}

/// `config` with the app of [`with_app`], which also sends its subscribers
/// the channel's subscription count (`subscription_count = true`).
pub fn with_counting_app(config: wshub::Config) -> wshub::Config {
    with_app_as(config, |app| app.subscription_count = true)
}

/// `config` with the app of [`with_app`], changed by `change`.
pub fn with_app_as(mut config: wshub::Config, change: impl FnOnce(&mut wshub::apps::App)) -> wshub::Config {
    let mut app = wshub::apps::App::from_spec(&format!("{APP_ID}:{KEY}:{SECRET}")).expect("valid spec");
    change(&mut app);
    config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
    config
}

/// Hex HMAC-SHA256 of `text` with `secret`: every Pusher signature.
pub fn hmac_hex(secret: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The next frame, a text one, as JSON.
pub async fn recv_json(client: &mut Client) -> Value {
    match next_message(client).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The frame's `data`, parsed (Pusher sends it as a JSON string).
pub fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

/// Connects a Pusher client and returns it with its socket id.
pub async fn pusher_client(server: &TestServer) -> (Client, String) {
    let mut client = connect(&server.url(&format!("/app/{KEY}?protocol=7&client=js&version=8.4.0"))).await;
    let hello = recv_json(&mut client).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let socket_id = data(&hello)["socket_id"].as_str().expect("socket_id").to_owned();
    (client, socket_id)
}

/// Subscribes (with the backend's signature on private and presence
/// channels) and returns the answer.
pub async fn subscribe(client: &mut Client, socket_id: &str, channel: &str, channel_data: Option<&str>) -> Value {
    let mut payload = json!({ "channel": channel });
    if channel.starts_with("private-") || channel.starts_with("presence-") {
        payload["auth"] = channel_auth(socket_id, channel, channel_data).into();
    }
    if let Some(channel_data) = channel_data {
        payload["channel_data"] = channel_data.into();
    }
    let frame = json!({ "event": "pusher:subscribe", "data": payload });
    send_text(client, &frame.to_string()).await;
    recv_json(client).await
}

fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let text = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{KEY}:{}", hmac_hex(SECRET, &text))
}

/// A signed HTTP API request, as the `pusher` SDKs make it; the status and
/// the JSON body of the answer.
pub async fn api(server: &TestServer, method: &str, path: &str, query: &[(&str, &str)], body: &str) -> (u16, Value) {
    api_at(server, method, path, query, body, now()).await
}

/// Seconds since 1970, as `auth_timestamp` says them.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// [`api`] signed at `at` (seconds since 1970): an old timestamp makes a
/// replayed request.
pub async fn api_at(
    server: &TestServer,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: &str,
    at: u64,
) -> (u16, Value) {
    let mut params: Vec<(String, String)> = query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    params.push(("auth_key".into(), KEY.into()));
    params.push(("auth_timestamp".into(), at.to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        params.push(("body_md5".into(), hex::encode(Md5::digest(body.as_bytes()))));
    }
    params.sort();
    let query_string = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = hmac_hex(SECRET, &format!("{method}\n{path}\n{query_string}"));
    let target = format!("{path}?{query_string}&auth_signature={signature}");
    let headers = [("Content-Type", "application/json")];
    let response = super::http(server.addr, method, &target, &headers, body).await;
    let body = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

/// `POST /apps/{id}/events` with `event` as the body.
pub async fn trigger(server: &TestServer, event: Value) -> (u16, Value) {
    api(
        server,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &[],
        &event.to_string(),
    )
    .await
}
