//! The Pusher endpoint over real sockets, checked against Pusher's rules
//! written out here (signatures computed in the test with the app's
//! secret, frames read as JSON): greeting, versions and unknown keys,
//! public, private and presence channels, client events, the HTTP API and
//! its signatures, and one hub shared with raw and `wshub.v1` clients.
//! (tests/pusher/ runs the real pusher-js, Laravel Echo and server SDKs.)

mod common;

use common::pusher::{
    api_at, data, hmac_hex, now, pusher_client, recv_json, trigger, with_app, with_app_as, with_counting_app, APP_ID,
    KEY, SECRET,
};
use common::{
    connect, expect_close, next_message, send_text, start_server_with, test_config, wait_for_connections, Client,
    TestServer,
};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn pusher_server() -> TestServer {
    // As `--app ID:KEY:SECRET` makes it: client events on.
    start_server_with(with_app(test_config())).await
}

async fn subscribe(client: &mut Client, channel: &str, auth: Option<String>, channel_data: Option<&str>) -> Value {
    let mut payload = json!({ "channel": channel });
    if let Some(auth) = auth {
        payload["auth"] = auth.into();
    }
    if let Some(channel_data) = channel_data {
        payload["channel_data"] = channel_data.into();
    }
    send_text(
        client,
        &json!({ "event": "pusher:subscribe", "data": payload }).to_string(),
    )
    .await;
    recv_json(client).await
}

fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let text = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{KEY}:{}", hmac_hex(SECRET, &text))
}

async fn raw_http(server: &TestServer, method: &str, target: &str, body: &str) -> (u16, Value) {
    let headers = [("Content-Type", "application/json")];
    let response = common::http(server.addr, method, target, &headers, body).await;
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(Value::Null),
    )
}

/// Nothing arrives for a moment (after what was expected).
async fn quiet(client: &mut Client) {
    use futures_util::StreamExt;
    let got = tokio::time::timeout(std::time::Duration::from_millis(300), client.next()).await;
    assert!(got.is_err(), "unexpected frame: {got:?}");
}

#[tokio::test]
async fn a_client_is_greeted_with_a_socket_id_and_answered_pings() {
    let server = pusher_server().await;
    let (mut client, socket_id) = pusher_client(&server).await;
    let (a, b) = socket_id.split_once('.').expect("two numbers");
    assert!(a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()), "{socket_id}");
    send_text(&mut client, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(recv_json(&mut client).await["event"], "pusher:pong");
    let (_other, other_id) = pusher_client(&server).await;
    assert_ne!(socket_id, other_id);
    server.shutdown().await;
}

/// A socket id names one connection for the life of the process: one
/// that closed is not handed to a later connection, so a channel or
/// sign-in signature made for it cannot be replayed there.
#[tokio::test]
async fn a_closed_connections_socket_id_is_never_given_again() {
    let server = pusher_server().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let (mut client, socket_id) = pusher_client(&server).await;
        assert!(seen.insert(socket_id.clone()), "{socket_id} given twice");
        client.close(None).await.unwrap();
        while client.next().await.is_some() {}
        wait_for_connections(&server.hub, 0).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_key_or_version_is_told_then_closed_with_pushers_code() {
    let server = pusher_server().await;
    for (path, code) in [
        ("/app/nope?protocol=7".to_owned(), 4001),
        (format!("/app/{KEY}"), 4008),
        (format!("/app/{KEY}?protocol=3"), 4007),
    ] {
        let mut client = connect(&server.url(&path)).await;
        let error = recv_json(&mut client).await;
        assert_eq!(error["event"], "pusher:error", "{path}");
        assert_eq!(data(&error)["code"], code, "{path}");
        assert_eq!(expect_close(&mut client).await, code, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_public_channel_gets_http_api_events_except_the_excluded_socket() {
    let server = pusher_server().await;
    let (mut a, a_id) = pusher_client(&server).await;
    let (mut b, _) = pusher_client(&server).await;
    for client in [&mut a, &mut b] {
        let ok = subscribe(client, "news", None, None).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(ok["channel"], "news");
    }
    let (status, body) = trigger(
        &server,
        json!({"name": "headline", "data": "{\"t\":1}", "channels": ["news"]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    for client in [&mut a, &mut b] {
        let event = recv_json(client).await;
        assert_eq!(
            event,
            json!({"event": "headline", "channel": "news", "data": "{\"t\":1}", "id": 1})
        );
    }
    let event =
        json!({"name": "second", "data": "x", "channel": "news", "socket_id": a_id, "info": "subscription_count"});
    let (status, body) = trigger(&server, event).await;
    assert_eq!(
        (status, body),
        (200, json!({"channels": {"news": {"subscription_count": 2}}}))
    );
    assert_eq!(recv_json(&mut b).await["event"], "second");
    quiet(&mut a).await;
    // Unsubscribed, a client gets nothing more.
    send_text(&mut b, r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#).await;
    // The unsubscribe is handled before the next event: ping for a barrier.
    send_text(&mut b, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(recv_json(&mut b).await["event"], "pusher:pong");
    trigger(&server, json!({"name": "third", "data": "x", "channel": "news"})).await;
    assert_eq!(recv_json(&mut a).await["event"], "third");
    quiet(&mut b).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_private_channel_needs_the_backends_signature_for_this_socket() {
    let server = pusher_server().await;
    let (mut a, a_id) = pusher_client(&server).await;
    let (mut b, b_id) = pusher_client(&server).await;
    let ok = subscribe(
        &mut a,
        "private-room",
        Some(channel_auth(&a_id, "private-room", None)),
        None,
    )
    .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    // Another socket's signature, a forged one, none at all.
    for auth in [
        Some(channel_auth(&a_id, "private-room", None)),
        Some(format!("{KEY}:{}", "0".repeat(64))),
        None,
    ] {
        let refused = subscribe(&mut b, "private-room", auth, None).await;
        assert_eq!(refused["event"], "pusher:subscription_error");
        assert_eq!(data(&refused)["status"], 401);
        assert_eq!(data(&refused)["type"], "AuthError");
    }
    // b is not a member: a's client event reaches nobody, b gets nothing.
    let ok = subscribe(
        &mut b,
        "private-room",
        Some(channel_auth(&b_id, "private-room", None)),
        None,
    )
    .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    server.shutdown().await;
}

#[tokio::test]
async fn client_events_reach_the_others_on_private_channels_only() {
    let server = pusher_server().await;
    let (mut a, a_id) = pusher_client(&server).await;
    let (mut b, b_id) = pusher_client(&server).await;
    for (client, id) in [(&mut a, &a_id), (&mut b, &b_id)] {
        subscribe(
            client,
            "private-chat",
            Some(channel_auth(id, "private-chat", None)),
            None,
        )
        .await;
        subscribe(client, "lobby", None, None).await;
    }
    send_text(
        &mut a,
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"a"}}"#,
    )
    .await;
    let event = recv_json(&mut b).await;
    assert_eq!(
        event,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}})
    );
    quiet(&mut a).await;
    // On a public channel: refused with an error, relayed to nobody.
    send_text(&mut a, r#"{"event":"client-typing","channel":"lobby","data":{}}"#).await;
    assert_eq!(recv_json(&mut a).await["event"], "pusher:error");
    quiet(&mut b).await;
    server.shutdown().await;
}

/// Over the app's rate (here 3 a second), a client event is refused with
/// 4301 and relayed to nobody; those within it arrive in order. (Timing
/// only decides how many of a burst of 20 fit: at least 3, and never all
/// of them unless 20 sends took seconds.)
#[tokio::test]
async fn client_events_over_the_rate_are_refused_with_4301() {
    let mut app = wshub::apps::App::from_spec(&format!("{APP_ID}:{KEY}:{SECRET}")).expect("valid spec");
    app.max_client_events_per_second = 3;
    let mut config = test_config();
    config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
    let server = start_server_with(config).await;
    let (mut a, a_id) = pusher_client(&server).await;
    let (mut b, b_id) = pusher_client(&server).await;
    for (client, id) in [(&mut a, &a_id), (&mut b, &b_id)] {
        subscribe(
            client,
            "private-chat",
            Some(channel_auth(id, "private-chat", None)),
            None,
        )
        .await;
    }
    const BURST: u32 = 20;
    for n in 0..BURST {
        send_text(
            &mut a,
            &format!(r#"{{"event":"client-n","channel":"private-chat","data":{{"n":{n}}}}}"#),
        )
        .await;
    }
    send_text(&mut a, r#"{"event":"pusher:ping","data":{}}"#).await;
    let mut refused = 0;
    loop {
        let frame = recv_json(&mut a).await;
        if frame["event"] == "pusher:pong" {
            break;
        }
        assert_eq!(
            (frame["event"].as_str(), data(&frame)["code"].as_u64()),
            (Some("pusher:error"), Some(4301))
        );
        refused += 1;
    }
    assert!((1..=BURST - 3).contains(&refused), "{refused} refused");
    for n in 0..BURST - refused {
        assert_eq!(data(&recv_json(&mut b).await)["n"], n);
    }
    quiet(&mut b).await;
    server.shutdown().await;
}

#[tokio::test]
async fn presence_lists_users_once_and_announces_first_and_last_connections() {
    let server = pusher_server().await;
    let channel = "presence-team";
    let join = |id: &str, user: &str| {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        (channel_auth(id, channel, Some(&data)), data)
    };
    let (mut ann, ann_id) = pusher_client(&server).await;
    let (auth, info) = join(&ann_id, "ann");
    let ok = subscribe(&mut ann, channel, Some(auth), Some(&info)).await;
    assert_eq!(data(&ok)["presence"]["count"], 1);
    let (mut bo, bo_id) = pusher_client(&server).await;
    let (auth, info) = join(&bo_id, "bo");
    let ok = subscribe(&mut bo, channel, Some(auth), Some(&info)).await;
    assert_eq!(data(&ok)["presence"]["ids"], json!(["ann", "bo"]));
    assert_eq!(data(&ok)["presence"]["hash"]["ann"], json!({"name": "ann"}));
    let added = recv_json(&mut ann).await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(data(&added), json!({"user_id": "bo", "user_info": {"name": "bo"}}));
    // Ann's second tab: no new member.
    let (mut ann2, ann2_id) = pusher_client(&server).await;
    let (auth, info) = join(&ann2_id, "ann");
    let ok = subscribe(&mut ann2, channel, Some(auth), Some(&info)).await;
    assert_eq!(data(&ok)["presence"]["count"], 2);
    quiet(&mut bo).await;
    let path = format!("/apps/{APP_ID}/channels/{channel}/users");
    let (status, users) = api_at(&server, "GET", &path, &[], "", now()).await;
    assert_eq!((status, users), (200, json!({"users": [{"id": "ann"}, {"id": "bo"}]})));
    let path = format!("/apps/{APP_ID}/channels/{channel}");
    let (_, info) = api_at(
        &server,
        "GET",
        &path,
        &[("info", "user_count,subscription_count")],
        "",
        now(),
    )
    .await;
    assert_eq!(
        info,
        json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    );
    drop(ann);
    quiet(&mut bo).await;
    drop(ann2);
    let removed = recv_json(&mut bo).await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data(&removed), json!({"user_id": "ann"}));
    server.shutdown().await;
}

/// Subscribes `client` (socket `id`) to `channel` as presence user `user`.
async fn subscribe_as(client: &mut Client, id: &str, channel: &str, user: &str) -> Value {
    let info = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    subscribe(
        client,
        channel,
        Some(channel_auth(id, channel, Some(&info))),
        Some(&info),
    )
    .await
}

/// A presence channel holds at most `max_presence_members_per_channel`
/// users (100 by default, as Pusher's): a new user beyond is refused with
/// `LimitReached`, status 4100, and nobody hears of it; a user already in
/// may open another connection; a place freed by a user's last
/// connection can be taken.
#[tokio::test]
async fn a_full_presence_channel_refuses_a_new_user_but_not_another_tab() {
    let config = with_app_as(test_config(), |app| app.max_presence_members_per_channel = 2);
    let server = start_server_with(config).await;
    let channel = "presence-team";
    let (mut ann, ann_id) = pusher_client(&server).await;
    subscribe_as(&mut ann, &ann_id, channel, "ann").await;
    let (mut bo, bo_id) = pusher_client(&server).await;
    let ok = subscribe_as(&mut bo, &bo_id, channel, "bo").await;
    assert_eq!(data(&ok)["presence"]["count"], 2);
    assert_eq!(recv_json(&mut ann).await["event"], "pusher_internal:member_added");

    let (mut cy, cy_id) = pusher_client(&server).await;
    let refused = subscribe_as(&mut cy, &cy_id, channel, "cy").await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["channel"], channel);
    let why = data(&refused);
    assert_eq!(
        (why["type"].as_str(), why["status"].as_u64()),
        (Some("LimitReached"), Some(4100)),
        "{why}"
    );
    quiet(&mut ann).await;

    // Ann's second tab is no new user.
    let (mut ann2, ann2_id) = pusher_client(&server).await;
    let ok = subscribe_as(&mut ann2, &ann2_id, channel, "ann").await;
    assert_eq!(data(&ok)["presence"]["ids"], json!(["ann", "bo"]));

    // Bo leaves; Cy may come in now, and is refused nothing else.
    drop(bo);
    let removed = recv_json(&mut ann).await;
    assert_eq!(data(&removed), json!({"user_id": "bo"}), "{removed}");
    let ok = subscribe_as(&mut cy, &cy_id, channel, "cy").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
    assert_eq!(data(&ok)["presence"]["ids"], json!(["ann", "cy"]));
    drop((ann2, cy));
    server.shutdown().await;
}

#[tokio::test]
async fn the_http_api_refuses_bad_signatures_old_timestamps_and_oversized_events_and_publishes_nothing() {
    let server = pusher_server().await;
    let (mut a, _) = pusher_client(&server).await;
    subscribe(&mut a, "news", None, None).await;
    let path = format!("/apps/{APP_ID}/events");
    let event = json!({"name": "e", "data": "d", "channel": "news"}).to_string();
    // Signed 700 s ago: outside the 600 s window.
    let (status, body) = api_at(&server, "POST", &path, &[], &event, now() - 700).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "a JSON reason: {body}");
    assert_eq!(body["code"], 401, "and the status: {body}");
    // A forged signature.
    let md5 = hex::encode(Md5::digest(event.as_bytes()));
    let target = format!(
        "{path}?auth_key={KEY}&auth_timestamp={}&auth_version=1.0&body_md5={md5}&auth_signature={}",
        now(),
        "0".repeat(64)
    );
    assert_eq!(raw_http(&server, "POST", &target, &event).await.0, 401);
    // An unknown app.
    let (status, _) = api_at(&server, "POST", "/apps/other/events", &[], &event, now()).await;
    assert_eq!(status, 404);
    // Too large, too many channels, a bad name.
    let big = json!({"name": "e", "data": "x".repeat(10 * 1024 + 1), "channel": "news"});
    assert_eq!(trigger(&server, big).await.0, 413);
    let channels: Vec<String> = (0..101).map(|n| format!("c{n}")).collect();
    assert_eq!(
        trigger(&server, json!({"name": "e", "data": "d", "channels": channels}))
            .await
            .0,
        400
    );
    assert_eq!(
        trigger(&server, json!({"name": "e", "data": "d", "channel": "bad name"}))
            .await
            .0,
        400
    );
    // The protocol's own event names.
    let (status, body) = trigger(
        &server,
        json!({"name": "pusher:error", "data": "{}", "channel": "news"}),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!(400)), "{body}");
    for name in ["pusher:subscribe", "pusher_internal:subscription_succeeded"] {
        assert_eq!(
            trigger(&server, json!({"name": name, "data": "{}", "channel": "news"}))
                .await
                .0,
            400,
            "{name}"
        );
    }
    quiet(&mut a).await;
    // And a good one still goes through.
    assert_eq!(api_at(&server, "POST", &path, &[], &event, now()).await.0, 200);
    assert_eq!(recv_json(&mut a).await["event"], "e");
    server.shutdown().await;
}

#[tokio::test]
async fn channels_are_listed_by_prefix_with_their_counts() {
    let server = pusher_server().await;
    let (mut a, a_id) = pusher_client(&server).await;
    subscribe(&mut a, "news", None, None).await;
    subscribe(&mut a, "private-x", Some(channel_auth(&a_id, "private-x", None)), None).await;
    let path = format!("/apps/{APP_ID}/channels");
    let (status, all) = api_at(&server, "GET", &path, &[("info", "subscription_count")], "", now()).await;
    assert_eq!(status, 200);
    assert_eq!(
        all,
        json!({"channels": {"news": {"subscription_count": 1}, "private-x": {"subscription_count": 1}}})
    );
    let (_, private) = api_at(&server, "GET", &path, &[("filter_by_prefix", "private-")], "", now()).await;
    assert_eq!(private, json!({"channels": {"private-x": {}}}));
    let (status, _) = api_at(&server, "GET", &path, &[("info", "user_count")], "", now()).await;
    assert_eq!(status, 400, "user_count needs the presence- prefix");
    let (_, empty) = api_at(&server, "GET", &format!("{path}/nobody"), &[], "", now()).await;
    assert_eq!(empty, json!({"occupied": false}));
    server.shutdown().await;
}

/// One hub: an HTTP API event reaches Pusher, `wshub.v1` and raw members of
/// the room, each in its own form; a `wshub.v1` message reaches the Pusher
/// subscriber as the event `message`; private channels stay closed to
/// raw clients.
#[tokio::test]
async fn pusher_v1_and_raw_clients_share_rooms() {
    let server = pusher_server().await;
    let (mut pusher, _) = pusher_client(&server).await;
    subscribe(&mut pusher, "lobby", None, None).await;
    let mut raw = connect(&server.url("/ws")).await;
    let mut v1 = common::ChatClient::connect(&server).await;
    v1.join("lobby", None).await;
    common::wait_for_connections(&server.hub, 3).await;
    trigger(
        &server,
        json!({"name": "news", "data": "{\"a\":1}", "channel": "lobby"}),
    )
    .await;
    assert_eq!(recv_json(&mut pusher).await["event"], "news");
    assert_eq!(next_message(&mut raw).await, Message::text("{\"a\":1}"));
    let (room, message) = v1.next_chat().await;
    assert_eq!(
        (room.as_str(), message.text.as_str(), message.event.as_deref()),
        ("lobby", "{\"a\":1}", Some("news"))
    );
    v1.say("lobby", "hello from v1").await;
    let chat = recv_json(&mut pusher).await;
    assert_eq!(chat["event"], "message");
    assert_eq!(data(&chat)["text"], "hello from v1");
    // A raw client cannot open a signed channel's room.
    let refused = tokio_tungstenite::connect_async(server.url("/ws/private-x")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_leave_others_alone() {
    let server = pusher_server().await;
    let (mut a, _) = pusher_client(&server).await;
    let (mut b, _) = pusher_client(&server).await;
    subscribe(&mut b, "news", None, None).await;
    send_text(&mut a, "{not json").await;
    assert_eq!(recv_json(&mut a).await["event"], "pusher:error");
    send_text(&mut a, r#"{"event":"pusher:subscribe","data":{"channel":"bad name"}}"#).await;
    // The parser refuses a bad channel name before any subscription.
    let refused = recv_json(&mut a).await;
    assert_eq!(refused["event"], "pusher:error", "{refused}");
    assert!(
        data(&refused)["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad name")),
        "{refused}"
    );
    trigger(&server, json!({"name": "still", "data": "d", "channel": "news"})).await;
    assert_eq!(recv_json(&mut b).await["event"], "still");
    // The connection is still served.
    send_text(&mut a, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(recv_json(&mut a).await["event"], "pusher:pong");
    server.shutdown().await;
}

#[tokio::test]
async fn without_apps_there_is_no_pusher_endpoint() {
    let server = start_server_with(test_config()).await;
    match tokio_tungstenite::connect_async(server.url(&format!("/app/{KEY}?protocol=7"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_over_its_connection_quota_closes_with_4004() {
    let mut app = wshub::apps::App::from_spec(&format!("{APP_ID}:{KEY}:{SECRET}")).expect("valid spec");
    app.max_connections = Some(1);
    let mut config = test_config();
    config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
    let server = start_server_with(config).await;
    let (first, _) = pusher_client(&server).await;
    let mut second = connect(&server.url(&format!("/app/{KEY}?protocol=7"))).await;
    let error = recv_json(&mut second).await;
    assert_eq!(
        (error["event"].as_str(), data(&error)["code"].as_u64()),
        (Some("pusher:error"), Some(4004))
    );
    assert_eq!(expect_close(&mut second).await, 4004);
    // The slot comes back when the first one leaves.
    drop((first, second));
    common::wait_for_connections(&server.hub, 0).await;
    let (_third, _) = pusher_client(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn wshub_v1_clients_cannot_join_signed_channels() {
    let server = pusher_server().await;
    let mut v1 = common::ChatClient::connect(&server).await;
    v1.send(&wshub::protocol::v1::ClientFrame::Join {
        room: "presence-team".into(),
        since: None,
    })
    .await;
    assert_eq!(v1.next_error().await, wshub::protocol::v1::ErrorCode::ForbiddenRoom);
    server.shutdown().await;
}

/// wshub's extension: each stored event carries its `id`, and a subscribe
/// with `since` gets what came after it, then the live events, with no
/// gap and no duplicate (plain pusher-js neither sends `since` nor sees
/// `id`).
#[tokio::test]
async fn a_subscribe_with_since_catches_up_then_goes_live() {
    let server = pusher_server().await;
    for n in 1..=3 {
        trigger(
            &server,
            json!({"name": "tick", "data": n.to_string(), "channel": "news"}),
        )
        .await;
    }
    let (mut late, _) = pusher_client(&server).await;
    send_text(
        &mut late,
        r#"{"event":"pusher:subscribe","data":{"channel":"news","since":1}}"#,
    )
    .await;
    assert_eq!(
        recv_json(&mut late).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    for n in 2..=3u64 {
        let missed = recv_json(&mut late).await;
        assert_eq!(
            (missed["event"].as_str(), missed["id"].as_u64()),
            (Some("tick"), Some(n)),
            "{missed}"
        );
        assert_eq!(missed["data"], n.to_string());
    }
    trigger(&server, json!({"name": "tick", "data": "4", "channel": "news"})).await;
    let live = recv_json(&mut late).await;
    assert_eq!((live["id"].as_u64(), live["data"].as_str()), (Some(4), Some("4")));
    quiet(&mut late).await;
    server.shutdown().await;
}

/// The app's webhooks, to a real receiver on 127.0.0.1: signed with the
/// secret, and telling of a channel occupied, its subscription count, a
/// presence member, and the channel vacated.
#[tokio::test]
async fn webhooks_tell_the_backend_of_channels_and_members() {
    use axum::http::HeaderMap;
    let (posts, mut received) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, String)>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let posts = posts.clone();
            async move {
                let _ = posts.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let mut app = wshub::apps::App::from_spec(&format!("{APP_ID}:{KEY}:{SECRET}")).expect("valid spec");
    let mut hook = wshub::apps::WebhookConfig::new(format!("http://{hook_addr}/hook"));
    hook.event_types = [
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
        "subscription_count",
    ]
    .map(String::from)
    .to_vec();
    app.webhooks = vec![hook];
    let mut config = test_config();
    config.apps = wshub::apps::Apps::new(vec![app]).expect("valid app");
    let server = start_server_with(config).await;

    let (mut ann, ann_id) = pusher_client(&server).await;
    let channel_data = json!({"user_id": "ann"}).to_string();
    let auth = channel_auth(&ann_id, "presence-room", Some(&channel_data));
    subscribe(&mut ann, "presence-room", Some(auth), Some(&channel_data)).await;
    drop(ann);
    let mut names = Vec::new();
    while !names
        .iter()
        .any(|(name, _): &(String, Value)| name == "channel_vacated")
    {
        let (headers, body) = tokio::time::timeout(common::PATIENCE, received.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver open");
        assert_eq!(headers["x-pusher-key"], KEY);
        assert_eq!(
            headers["x-pusher-signature"].to_str().expect("ASCII"),
            hmac_hex(SECRET, &body)
        );
        let payload: Value = serde_json::from_str(&body).expect("JSON");
        assert!(payload["time_ms"].as_u64().is_some(), "{payload}");
        for event in payload["events"].as_array().expect("events") {
            names.push((event["name"].as_str().expect("name").to_owned(), event.clone()));
        }
    }
    let order: Vec<&str> = names.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        order,
        [
            "channel_occupied",
            "member_added",
            "subscription_count",
            "member_removed",
            "subscription_count",
            "channel_vacated"
        ],
        "{names:?}"
    );
    assert_eq!(
        names[1].1,
        json!({"name": "member_added", "channel": "presence-room", "user_id": "ann"})
    );
    assert_eq!(names[2].1["subscription_count"], 1);
    assert_eq!(names[4].1["subscription_count"], 0);
    server.shutdown().await;
}

/// A second app's channels are its own: the same name is another channel,
/// and its frames name the channel as its clients know it.
#[tokio::test]
async fn a_second_apps_channels_live_apart() {
    let first = wshub::apps::App::from_spec(&format!("{APP_ID}:{KEY}:{SECRET}")).expect("valid spec");
    let second = wshub::apps::App::from_spec("two:two-key:two-secret").expect("valid spec");
    let mut config = test_config();
    config.apps = wshub::apps::Apps::new(vec![first, second]).expect("valid apps");
    let server = start_server_with(config).await;
    let (mut one, _) = pusher_client(&server).await;
    subscribe(&mut one, "lobby", None, None).await;
    let mut two = connect(&server.url("/app/two-key?protocol=7")).await;
    assert_eq!(recv_json(&mut two).await["event"], "pusher:connection_established");
    let ok = subscribe(&mut two, "lobby", None, None).await;
    assert_eq!(
        (ok["event"].as_str(), ok["channel"].as_str()),
        (Some("pusher_internal:subscription_succeeded"), Some("lobby"))
    );
    // Published by the second app: its subscriber only, on its channel "lobby".
    let body = json!({"name": "hi", "data": "two", "channel": "lobby"}).to_string();
    let mut params = [
        ("auth_key".to_owned(), "two-key".to_owned()),
        ("auth_timestamp".to_owned(), now().to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("body_md5".to_owned(), hex::encode(Md5::digest(body.as_bytes()))),
    ];
    params.sort();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = hmac_hex("two-secret", &format!("POST\n/apps/two/events\n{query}"));
    let (status, _) = raw_http(
        &server,
        "POST",
        &format!("/apps/two/events?{query}&auth_signature={signature}"),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let got = recv_json(&mut two).await;
    assert_eq!(
        (got["event"].as_str(), got["channel"].as_str(), got["data"].as_str()),
        (Some("hi"), Some("lobby"), Some("two"))
    );
    quiet(&mut one).await;
    server.shutdown().await;
}

#[tokio::test]
async fn subscribers_are_told_the_count_where_the_app_counts_subscriptions() {
    let server = start_server_with(with_counting_app(test_config())).await;
    let count_of = |frame: &Value| {
        assert_eq!(frame["event"], "pusher_internal:subscription_count", "{frame}");
        assert_eq!(frame["channel"], "lobby");
        data(frame)["subscription_count"].clone()
    };
    let (mut ann, _) = pusher_client(&server).await;
    let ok = subscribe(&mut ann, "lobby", None, None).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(count_of(&recv_json(&mut ann).await), 1, "the subscriber's own count");
    let (mut bo, _) = pusher_client(&server).await;
    subscribe(&mut bo, "lobby", None, None).await;
    assert_eq!(count_of(&recv_json(&mut bo).await), 2);
    assert_eq!(count_of(&recv_json(&mut ann).await), 2);
    // One hub: a raw client of the same room is one more connection.
    let raw = connect(&server.url("/ws/lobby")).await;
    assert_eq!(count_of(&recv_json(&mut ann).await), 3);
    assert_eq!(count_of(&recv_json(&mut bo).await), 3);
    drop(raw);
    assert_eq!(count_of(&recv_json(&mut ann).await), 2);
    assert_eq!(count_of(&recv_json(&mut bo).await), 2);
    send_text(
        &mut bo,
        &json!({"event": "pusher:unsubscribe", "data": {"channel": "lobby"}}).to_string(),
    )
    .await;
    assert_eq!(count_of(&recv_json(&mut ann).await), 1);
    quiet(&mut bo).await;
    // Presence channels have their member events instead.
    let data_ann = json!({"user_id": "ann"}).to_string();
    let (mut cy, cy_id) = pusher_client(&server).await;
    let auth = channel_auth(&cy_id, "presence-team", Some(&data_ann));
    let ok = subscribe(&mut cy, "presence-team", Some(auth), Some(&data_ann)).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    quiet(&mut cy).await;
    quiet(&mut ann).await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_subscription_counting_no_count_is_sent() {
    let server = pusher_server().await;
    let (mut ann, _) = pusher_client(&server).await;
    subscribe(&mut ann, "lobby", None, None).await;
    let (mut bo, _) = pusher_client(&server).await;
    subscribe(&mut bo, "lobby", None, None).await;
    quiet(&mut ann).await;
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_http_api_request_whose_body_never_comes_is_answered_408_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = pusher_server().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!("POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    // Read to the end: the server must answer and close by itself.
    tokio::time::timeout(std::time::Duration::from_secs(60), socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(10) && waited < std::time::Duration::from_secs(12),
        "answered after {waited:?}"
    );
    server.shutdown().await;
}
