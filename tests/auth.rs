//! Access tokens (JWT) on every WebSocket endpoint, over real sockets: a
//! valid token sets the nickname and the rooms; a missing, expired, badly
//! signed or malformed one gets HTTP 401 before the upgrade (with a log
//! line that names the reason and never the token); a raw room the token
//! does not list gets 403, a `wshub.v1` `join` of one `forbidden_room`; a
//! token can ride in the subprotocol list as `bearer.<token>` and is not
//! echoed back; a live connection is closed with 1008 when its token
//! expires; public keys (ES256) work, and a bad key file stops start-up.
//! With tokens the nickname is the token's (`nick` for another name gets
//! `nick_locked`), and messages, presence entries and events carry the
//! token's `sub` as `user`; without tokens no `user` field appears.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::StreamExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Response;
use tokio_tungstenite::tungstenite::Message;
use wshub::auth::{AuthSource, Secret};
use wshub::Config;

const SECRET: &str = "wshub test secret, thirty-two bytes or more";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn secret_config() -> Config {
    let mut config = test_config();
    config.auth = Some(AuthSource::Secret(Secret::new(SECRET)));
    config
}

/// Log lines of this test binary, for the checks that no token is logged.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens `url`, offering `protocols` if any; the HTTP status on refusal.
async fn open(url: &str, protocols: Option<&str>) -> Result<(Client, Response<Option<Vec<u8>>>), u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    }
    // Without Nagle: no small write waits for a delayed ACK while a paused
    // clock jumps ahead.
    match tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .expect("handshake in time")
    {
        Ok(pair) => Ok(pair),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

async fn status(url: &str) -> u16 {
    match open(url, None).await {
        Ok(_) => 101,
        Err(status) => status,
    }
}

/// A `wshub.v1` connection and the nickname its welcome gave.
async fn chat(url: &str, protocols: &str) -> (ChatClient, String) {
    let (ws, response) = open(url, Some(protocols)).await.expect("upgrade");
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(chosen.as_deref(), Some("wshub.v1"), "only wshub.v1 is ever echoed");
    let mut client = ChatClient { ws };
    match client.recv().await {
        ServerFrame::Welcome { nick, .. } => (client, nick),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_names_the_connection_and_opens_its_rooms() {
    let server = start_server_with(secret_config()).await;
    let t = token(json!({"sub": "user-1", "name": "ann", "exp": now() + 3600, "rooms": ["kitchen", "lobby"]}));

    let (mut ann, nick) = chat(&server.url(&format!("/ws?token={t}")), "wshub.v1").await;
    assert_eq!(nick, "ann", "the nickname comes from the token's name");
    ann.join("kitchen", None).await;
    ann.send(&ClientFrame::Join {
        room: "cellar".into(),
        since: None,
    })
    .await;
    assert_eq!(ann.next_error().await, ErrorCode::ForbiddenRoom);
    // The refusal changed nothing: the joined room still works.
    ann.say("kitchen", "hi").await;
    let (room, message) = ann.next_chat().await;
    assert_eq!(
        (room.as_str(), message.nick.as_str(), message.text.as_str()),
        ("kitchen", "ann", "hi")
    );

    // Raw connections: the path's room must be listed (/ws is the lobby).
    assert_eq!(status(&server.url(&format!("/ws/kitchen?token={t}"))).await, 101);
    assert_eq!(status(&server.url(&format!("/ws?token={t}"))).await, 101);
    assert_eq!(status(&server.url(&format!("/ws/cellar?token={t}"))).await, 403);
    assert_eq!(status(&server.url(&format!("/echo?token={t}"))).await, 101);

    // Without `name`, `sub` is the nickname; without either, guest-N; no
    // `rooms` claim, any room.
    let sub_only = token(json!({"sub": "bob", "exp": now() + 3600}));
    let (mut bob, nick) = chat(&server.url(&format!("/ws?token={sub_only}")), "wshub.v1").await;
    assert_eq!(nick, "bob");
    bob.join("cellar", None).await;
    let anonymous = token(json!({"exp": now() + 3600}));
    let (_, nick) = chat(&server.url(&format!("/ws?token={anonymous}")), "wshub.v1").await;
    assert!(nick.starts_with("guest-"), "{nick}");
    server.shutdown().await;
}

#[tokio::test]
async fn missing_expired_forged_and_malformed_tokens_get_401() {
    let logs = captured_logs();
    let server = start_server_with(secret_config()).await;
    for path in ["/echo", "/ws", "/ws/kitchen"] {
        assert_eq!(status(&server.url(path)).await, 401, "no token on {path}");
    }
    let expired = token(json!({"name": "ann", "exp": now() - 60}));
    let forged = encode(
        &Header::default(),
        &json!({"name": "ann", "exp": now() + 3600}),
        &EncodingKey::from_secret(b"not the server's secret, but just as long"),
    )
    .unwrap();
    let no_exp = token(json!({"name": "ann"}));
    let bad_nick = token(json!({"name": "", "exp": now() + 3600}));
    // alg "none": unsigned, must never pass.
    let unsigned = {
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"name": "ann", "exp": now() + 3600}))
        )
    };
    let cases = [
        (expired.as_str(), "token expired"),
        (forged.as_str(), "bad signature"),
        (no_exp.as_str(), "no exp"),
        (bad_nick.as_str(), "not a valid nickname"),
        (unsigned.as_str(), "unauthorized"),
        ("garbage", "malformed token"),
        ("a.b.c", "malformed"),
    ];
    for (t, reason) in cases {
        for path in ["/echo", "/ws/kitchen"] {
            assert_eq!(
                status(&server.url(&format!("{path}?token={t}"))).await,
                401,
                "{reason} on {path}"
            );
        }
        // Through the subprotocol too.
        assert_eq!(
            open(&server.url("/ws"), Some(&format!("wshub.v1, bearer.{t}")))
                .await
                .err(),
            Some(401),
            "{reason}"
        );
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        assert!(text.contains(reason), "the log names the reason '{reason}':\n{text}");
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    for (t, _) in cases {
        let signature_or_whole = t.rsplit('.').find(|part| part.len() > 8).unwrap_or(t);
        assert!(
            !text.contains(signature_or_whole),
            "a token leaked into the log:\n{text}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_in_the_subprotocol_works_and_is_not_echoed() {
    let server = start_server_with(secret_config()).await;
    let t = token(json!({"name": "carol", "exp": now() + 3600}));
    let (mut carol, nick) = chat(&server.url("/ws"), &format!("wshub.v1, bearer.{t}")).await;
    assert_eq!(nick, "carol");
    carol.join("lobby", None).await;

    // A raw client (no wshub.v1) may offer only the bearer value: it gets
    // no subprotocol at all, so the token is not echoed there either.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: bearer.{t}\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "server closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "{head}");
    assert!(!head.contains(&t), "{head}");
    server.shutdown().await;
}

/// The close frame's code and reason.
async fn close_of(client: &mut Client) -> (u16, String) {
    loop {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_connection_is_closed_when_its_token_expires() {
    let server = start_server_with(secret_config()).await;
    // `exp` is in whole seconds of real time; the server turns what is left
    // of it into a deadline on the connection's (here paused) clock.
    let t = token(json!({"name": "dora", "exp": now() + 30}));
    let (mut dora, _) = chat(&server.url(&format!("/ws?token={t}")), "wshub.v1").await;
    let (mut raw, _) = open(&server.url(&format!("/ws?token={t}")), None).await.unwrap();
    let started = tokio::time::Instant::now();
    dora.join("lobby", None).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    dora.say("lobby", "still valid").await;
    let (_, message) = dora.next_chat().await;
    assert_eq!(message.text, "still valid");

    assert_eq!(close_of(&mut dora.ws).await, (1008, "token expired".to_owned()));
    assert_eq!(close_of(&mut raw).await, (1008, "token expired".to_owned()));
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(28) && waited <= Duration::from_secs(31),
        "closed after {waited:?}"
    );
    drop((dora, raw));
    wait_for_connections(&server.hub, 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn es256_tokens_check_against_a_public_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = dir.path().join("jwt-public.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let mut config = test_config();
    config.auth = Some(AuthSource::PublicKey(public));
    let server = start_server_with(config).await;

    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let claims = json!({"name": "erin", "exp": now() + 3600});
    let t = encode(&Header::new(Algorithm::ES256), &claims, &signing).unwrap();
    let (_, nick) = chat(&server.url(&format!("/ws?token={t}")), "wshub.v1").await;
    assert_eq!(nick, "erin");

    // Another key's signature, and the old trick of an HS256 token whose
    // secret is the public key itself: both refused.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
    let forged = encode(&Header::new(Algorithm::ES256), &claims, &other).unwrap();
    assert_eq!(status(&server.url(&format!("/echo?token={forged}"))).await, 401);
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(pair.public_key_pem().as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&server.url(&format!("/echo?token={confused}"))).await, 401);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_key_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-key.pem");
    std::fs::write(&bad, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
    for path in [bad.clone(), dir.path().join("missing.pem")] {
        let mut config = test_config();
        config.auth = Some(AuthSource::PublicKey(path.clone()));
        let err = wshub::Server::bind(config)
            .await
            .expect_err("a bad key must stop start-up");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(name), "{err}");
    }

    // The binary: exit status 1, like other start-up failures.
    let output = wshub_command()
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--history",
            "none",
            "--jwt-public-key",
        ])
        .arg(&bad)
        .env_remove("WSHUB_JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-a-key.pem"), "{stderr}");
}

#[test]
fn token_flags_parse_and_are_checked() {
    let config = wshub::Cli::load(["wshub", "--jwt-secret", SECRET])
        .unwrap()
        .into_config()
        .unwrap();
    assert!(matches!(config.auth, Some(AuthSource::Secret(_))));
    assert!(
        !format!("{config:?}").contains(SECRET),
        "the secret never shows in Debug"
    );
    let config = wshub::Cli::load(["wshub", "--jwt-public-key", "k.pem"])
        .unwrap()
        .into_config()
        .unwrap();
    assert!(matches!(config.auth, Some(AuthSource::PublicKey(_))));
    assert!(wshub::Cli::load(["wshub", "--jwt-secret", "s", "--jwt-public-key", "k.pem"]).is_err());
    let err = wshub::Cli::load(["wshub", "--jwt-secret", ""])
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(err.to_string().contains("--jwt-secret"), "{err}");
    assert!(wshub::Config::default().auth.is_none(), "no tokens unless asked for");
    let config = wshub::Cli::load([
        "wshub",
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        "chat",
        "--jwt-issuer",
        "https://id.example",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    assert_eq!(config.token_rules.audience.as_deref(), Some("chat"));
    assert_eq!(config.token_rules.issuer.as_deref(), Some("https://id.example"));
    let err = wshub::Cli::load(["wshub", "--jwt-audience", "chat"])
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(err.to_string().contains("--jwt-audience"), "{err}");
}

#[tokio::test]
async fn a_token_for_another_audience_gets_401_and_the_right_one_connects() {
    let mut config = secret_config();
    config.token_rules = wshub::auth::TokenRules {
        audience: Some("chat".into()),
        issuer: Some("https://id.example".into()),
    };
    let server = start_server_with(config).await;
    let claims = |aud: &str| json!({"sub": "ann", "exp": now() + 60, "aud": aud, "iss": "https://id.example"});
    let url = |claims| server.url(&format!("/echo?token={}", token(claims)));
    assert_eq!(status(&url(claims("billing"))).await, 401);
    let unsigned_by_issuer = json!({"sub": "ann", "exp": now() + 60, "aud": "chat"});
    assert_eq!(status(&url(unsigned_by_issuer)).await, 401);
    assert_eq!(status(&url(claims("chat"))).await, 101);
    server.shutdown().await;
}

/// A `wshub.v1` connection for `token` (in the subprotocol, as the page
/// sends it) and its welcome frame as it is on the wire.
async fn chat_with_token(server: &TestServer, token: &str) -> (ChatClient, serde_json::Value) {
    let protocols = format!("wshub.v1, bearer.{token}");
    let (ws, _) = open(&server.url("/ws"), Some(&protocols)).await.expect("upgrade");
    let mut client = ChatClient { ws };
    let welcome = next_json(&mut client).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// The next frame as JSON, to see exactly which fields are on the wire.
async fn next_json(client: &mut ChatClient) -> serde_json::Value {
    match next_message(&mut client.ws).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next frame of `kind` as JSON, skipping presence events and others.
async fn next_of(client: &mut ChatClient, kind: &str) -> serde_json::Value {
    loop {
        let frame = next_json(client).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// `(nick, user, connections)` of each presence entry.
fn entries(presence: &ServerFrame) -> Vec<(String, Option<String>, usize)> {
    match presence {
        ServerFrame::Presence { members, .. } => members
            .iter()
            .map(|m| (m.nick.clone(), m.user.clone(), m.connections))
            .collect(),
        other => panic!("expected presence, got {other:?}"),
    }
}

fn dana(sub: &str) -> String {
    token(json!({"sub": sub, "name": "Dana", "exp": now() + 3600}))
}

#[tokio::test]
async fn with_tokens_a_nick_request_cannot_take_another_name() {
    let server = start_server_with(secret_config()).await;
    let (mut dana, welcome) = chat_with_token(&server, &dana("u-dana")).await;
    assert_eq!(
        (&welcome["nick"], &welcome["user"], &welcome["nick_locked"]),
        (&json!("Dana"), &json!("u-dana"), &json!(true)),
        "{welcome}"
    );
    dana.join("lobby", None).await;

    dana.send(&ClientFrame::Nick { nick: "admin".into() }).await;
    let error = next_of(&mut dana, "error").await;
    assert_eq!(error["code"], "nick_locked", "{error}");
    // Its own name again is accepted and changes nothing.
    dana.send(&ClientFrame::Nick { nick: "Dana".into() }).await;
    assert_eq!(dana.recv().await, ServerFrame::Nick { nick: "Dana".into() });

    // Someone else still sees Dana, listed and speaking as Dana.
    let (mut eve, _) = chat_with_token(
        &server,
        &token(json!({"sub": "u-eve", "name": "Eve", "exp": now() + 3600})),
    )
    .await;
    let (_, presence) = eve.join("lobby", None).await;
    assert_eq!(
        entries(&presence),
        [
            ("Dana".into(), Some("u-dana".into()), 1),
            ("Eve".into(), Some("u-eve".into()), 1)
        ]
    );
    dana.say("lobby", "it is me").await;
    let (_, message) = eve.next_chat().await;
    assert_eq!(
        (message.nick.as_str(), message.user.as_deref(), message.text.as_str()),
        ("Dana", Some("u-dana"), "it is me")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_without_name_or_sub_keeps_its_guest_name() {
    let server = start_server_with(secret_config()).await;
    let (mut anon, welcome) = chat_with_token(&server, &token(json!({"exp": now() + 3600}))).await;
    let nick = welcome["nick"].as_str().expect("a nick").to_owned();
    assert!(nick.starts_with("guest-"), "{welcome}");
    assert_eq!((welcome.get("user"), &welcome["nick_locked"]), (None, &json!(true)));
    anon.send(&ClientFrame::Nick { nick: "admin".into() }).await;
    assert_eq!(next_of(&mut anon, "error").await["code"], "nick_locked");
    server.shutdown().await;
}

#[tokio::test]
async fn messages_presence_and_events_carry_the_user_id() {
    let server = start_server_with(secret_config()).await;
    let (mut first, _) = chat_with_token(&server, &dana("u-dana")).await;
    first.join("r", None).await;
    // The same user in a second tab, and another user who is also "Dana".
    let (mut second, _) = chat_with_token(&server, &dana("u-dana")).await;
    second.join("r", None).await;
    let joined = next_of(&mut first, "joined").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "r", "nick": "Dana", "user": "u-dana"})
    );
    let (mut other, _) = chat_with_token(&server, &dana("u-other")).await;
    let (_, presence) = other.join("r", None).await;
    assert_eq!(
        entries(&presence),
        [
            ("Dana".into(), Some("u-dana".into()), 2),
            ("Dana".into(), Some("u-other".into()), 1)
        ],
        "one entry per user: two tabs count twice, two users with one name are two"
    );

    other
        .send(&ClientFrame::Send {
            room: "r".into(),
            text: "which Dana?".into(),
            client_ref: Some("c1".into()),
        })
        .await;
    let message = next_of(&mut first, "message").await;
    assert_eq!(
        (&message["nick"], &message["user"]),
        (&json!("Dana"), &json!("u-other"))
    );

    // A raw client with a token publishes under its user id too.
    let raw_token = token(json!({"sub": "u-raw", "name": "Rae", "exp": now() + 3600}));
    let (mut raw, _) = open(&server.url(&format!("/ws/r?token={raw_token}")), None)
        .await
        .expect("raw upgrade");
    let joined = next_of(&mut first, "joined").await;
    assert_eq!(joined["user"], "u-raw", "{joined}");
    futures_util::SinkExt::send(&mut raw, Message::text("raw hello"))
        .await
        .expect("send");
    let message = next_of(&mut first, "message").await;
    assert_eq!((&message["nick"], &message["user"]), (&json!("Rae"), &json!("u-raw")));

    drop(other);
    let left = next_of(&mut first, "left").await;
    assert_eq!(
        left,
        json!({"type": "left", "room": "r", "nick": "Dana", "user": "u-other"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_tokens_no_user_field_appears_and_nicknames_stay_free() {
    let server = start_server().await;
    let mut ann = ChatClient::connect(&server).await;
    ann.send(&ClientFrame::Nick { nick: "admin".into() }).await;
    assert_eq!(ann.recv().await, ServerFrame::Nick { nick: "admin".into() });
    ann.send(&ClientFrame::Join {
        room: "r".into(),
        since: None,
    })
    .await;
    let presence = next_of(&mut ann, "presence").await;
    assert_eq!(presence["members"], json!([{"nick": "admin", "connections": 1}]));
    ann.say("r", "hi").await;
    let message = next_of(&mut ann, "message").await;
    assert_eq!(message.get("user"), None, "{message}");
    let (mut raw, _) = open(&server.url("/ws/r"), None).await.expect("raw upgrade");
    let joined = next_of(&mut ann, "joined").await;
    assert_eq!(joined.get("user"), None, "{joined}");
    futures_util::SinkExt::send(&mut raw, Message::text("raw"))
        .await
        .expect("send");
    let message = next_of(&mut ann, "message").await;
    assert_eq!(message.get("user"), None, "{message}");
    // The welcome of a new connection says nothing of users or locks.
    let mut request = server.url("/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "wshub.v1".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let welcome = next_json(&mut ChatClient { ws }).await;
    assert_eq!(
        (welcome.get("user"), welcome.get("nick_locked")),
        (None, None),
        "{welcome}"
    );
    server.shutdown().await;
}
