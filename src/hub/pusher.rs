//! What a room sends its Pusher members (`GET /app/{key}`): events in
//! Pusher's envelope, the subscription's answer, and presence changes.
//!
//! A Pusher channel is a room like any other, so a room's message reaches
//! Pusher members in the same order as everyone else. An event published
//! the Pusher way (the HTTP API) keeps its name and data; a chat message
//! from a raw or `wshub.v1` client arrives as the event `message` whose
//! data is the message as `wshub.v1` shows it (id, ts, nick, text).
//!
//! Presence channels keep their users here, under the room's order lock:
//! Pusher counts a user once however many connections it has, so
//! `member_added` goes out for a user's first connection and
//! `member_removed` for its last.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::broker::ListedMember;
use crate::history::Entry;
use crate::protocol::pusher::server::{self, PresenceMember};
use crate::protocol::{encode_frame, OpCode};

/// The event a chat message is to Pusher clients.
pub const CHAT_EVENT: &str = "message";

/// A presence channel's users on this node: each user's connections and the
/// `user_info` its first connection gave.
#[derive(Debug, Default)]
pub(super) struct Users(BTreeMap<Arc<str>, User>);

#[derive(Debug)]
struct User {
    connections: u32,
    info: Arc<str>,
}

impl Users {
    /// Counts a connection of `user`; true when it is the user's first.
    pub(super) fn add(&mut self, user: &Arc<str>, info: &Arc<str>) -> bool {
        let entry = self.0.entry(user.clone()).or_insert_with(|| User {
            connections: 0,
            info: info.clone(),
        });
        entry.connections += 1;
        entry.connections == 1
    }

    /// Uncounts a connection of `user`; true when it was the user's last.
    pub(super) fn remove(&mut self, user: &str) -> bool {
        let Some(entry) = self.0.get_mut(user) else {
            return false;
        };
        entry.connections -= 1;
        if entry.connections == 0 {
            self.0.remove(user);
            return true;
        }
        false
    }

    /// The users of a member list (the cluster's, from the broker), with
    /// `member` among them.
    pub(super) fn listed(listed: &[ListedMember], member: (&Arc<str>, &Arc<str>)) -> Users {
        let mut users = Users::default();
        for entry in listed {
            if let Some(user) = entry.user.as_deref() {
                users.0.entry(Arc::from(user)).or_insert_with(|| User {
                    connections: u32::try_from(entry.connections).unwrap_or(u32::MAX),
                    info: Arc::from(entry.nick.as_str()),
                });
            }
        }
        let (user, info) = member;
        users.0.entry(user.clone()).or_insert_with(|| User {
            connections: 1,
            info: info.clone(),
        });
        users
    }

    /// Whether `user` has a connection here.
    pub(super) fn contains(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    /// Distinct users.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The user ids, in order.
    pub(super) fn ids(&self) -> Vec<Arc<str>> {
        self.0.keys().cloned().collect()
    }
}

/// What a connection the app terminates is told, and how it is closed:
/// `pusher:error` 4009 and close code 4009, after which pusher-js does not
/// reconnect.
pub(super) fn terminated() -> (Bytes, super::CloseRequest) {
    let code = crate::protocol::pusher::ErrorCode::Unauthorized;
    let notice = server::error(Some(code.code()), "You got disconnected by the app");
    (
        text(&notice),
        super::CloseRequest::Graceful(code.close_code(), "terminated by the app"),
    )
}

/// `{"event", "channel", "data"}` as one text frame; `data` travels as
/// the string it is (Pusher's clients parse it when it is JSON).
pub(crate) fn event_frame(channel: &str, event: &str, data: &str, user_id: Option<&str>) -> Bytes {
    text(&server::event(channel, event, data, user_id))
}

/// A room's message as a Pusher event (see the module doc): Pusher's
/// envelope, and, when it is numbered, its `id` (wshub's extension: what a
/// client gives as `since` to catch up; pusher-js ignores it).
pub(super) fn entry_frame(room: &str, entry: &Entry) -> Bytes {
    let channel = channel_of(room);
    match &entry.event {
        Some(event) => stored_frame(channel, event, &entry.text, None, entry.id),
        None => {
            #[derive(Serialize)]
            struct Chat<'a> {
                id: u64,
                ts: i64,
                nick: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                user: Option<&'a str>,
                text: &'a str,
            }
            let chat = Chat {
                id: entry.id,
                ts: entry.ts,
                nick: &entry.nick,
                user: entry.user.as_deref(),
                text: &entry.text,
            };
            let data = serde_json::to_string(&chat).expect("a chat message serializes");
            stored_frame(channel, CHAT_EVENT, &data, entry.user.as_deref(), entry.id)
        }
    }
}

/// An event with its id (none when 0: not stored).
fn stored_frame(channel: &str, event: &str, data: &str, user_id: Option<&str>, id: u64) -> Bytes {
    text(&server::stored_event(channel, event, data, user_id, id))
}

/// What a Pusher subscriber is told before a catch-up that is not all it
/// asked for: `wshub:history_truncated` when history no longer holds it
/// (`first_available` is where it starts), `wshub:history_unavailable`
/// when the store could not be read.
pub(super) fn replay_notice(room: &str, replayed: &crate::broker::Replayed) -> Option<Bytes> {
    let channel = channel_of(room);
    if replayed.unavailable {
        return Some(event_frame(channel, "wshub:history_unavailable", "{}", None));
    }
    let first_available = replayed.truncated?;
    let data = serde_json::json!({ "first_available": first_available }).to_string();
    Some(event_frame(channel, "wshub:history_truncated", &data, None))
}

/// `pusher_internal:subscription_succeeded`, with the member list on a
/// presence channel (`users`).
pub(super) fn subscription_succeeded(room: &str, users: Option<&Users>) -> Bytes {
    let channel = channel_of(room);
    let Some(users) = users else {
        return text(&server::subscription_succeeded(channel));
    };
    let members: Vec<PresenceMember<'_>> = users
        .0
        .iter()
        .map(|(id, user)| PresenceMember {
            user_id: id,
            user_info: raw_json(&user.info),
        })
        .collect();
    text(&server::presence_subscription_succeeded(channel, &members))
}

/// `pusher_internal:member_added`.
pub(super) fn member_added(room: &str, user: &str, info: &str) -> Bytes {
    let channel = channel_of(room);
    text(&server::member_added(channel, user, raw_json(info)))
}

/// `pusher_internal:member_removed`.
pub(super) fn member_removed(room: &str, user: &str) -> Bytes {
    let channel = channel_of(room);
    text(&server::member_removed(channel, user))
}

/// `pusher_internal:subscription_count`: how many connections the room has.
pub(super) fn subscription_count(room: &str, count: usize) -> Bytes {
    text(&server::subscription_count(channel_of(room), count))
}

/// A cache channel's last message for a new subscriber, or
/// `pusher:cache_miss` when it has none.
pub(super) fn push_cached(hub: &super::Hub, room: &str, outbox: &super::Outbox, replayed: &crate::broker::Replayed) {
    let frame = match replayed.entries.last() {
        Some(entry) => entry_frame(room, entry),
        None => {
            hub.room_events().cache_missed(room);
            text(&server::cache_miss(channel_of(room)))
        }
    };
    let _ = outbox.push(frame);
}

/// The Pusher channel a room is: the room's name, but for an app that
/// keeps its channels apart (rooms `{app_id}#{channel}`, see
/// `service::pusher::Tenant`), the part after the `#`. A user's channel
/// (`#server-to-user-...`) starts with its `#`.
pub(crate) fn channel_of(room: &str) -> &str {
    match room.find('#') {
        Some(at) if at > 0 => &room[at + 1..],
        _ => room,
    }
}

/// `info` as JSON to embed (the session checked it is JSON; `null` else).
fn raw_json(info: &str) -> &RawValue {
    serde_json::from_str(info).unwrap_or(RawValue::NULL)
}

fn text(json: &str) -> Bytes {
    encode_frame(OpCode::Text, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &Bytes) -> serde_json::Value {
        // The frame is a server frame: 2 or 4 header bytes, no mask.
        let len = frame[1] & 0x7f;
        let start = if len == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).expect("JSON")
    }

    #[test]
    fn a_rooms_channel_is_its_name_after_the_apps_prefix() {
        assert_eq!(channel_of("lobby"), "lobby");
        assert_eq!(channel_of("two#lobby"), "lobby");
        assert_eq!(channel_of("#server-to-user-7"), "#server-to-user-7");
        assert_eq!(channel_of("two##server-to-user-7"), "#server-to-user-7");
        let frame = json(&member_removed("two#presence-x", "7"));
        assert_eq!(frame["channel"], "presence-x");
    }

    #[test]
    fn a_user_counts_once_however_many_connections() {
        let mut users = Users::default();
        let (ann, info): (Arc<str>, Arc<str>) = (Arc::from("ann"), Arc::from(r#"{"name":"Ann"}"#));
        assert!(users.add(&ann, &info));
        assert!(!users.add(&ann, &info));
        assert_eq!(users.len(), 1);
        assert!(!users.remove("ann"));
        assert!(users.remove("ann"));
        assert_eq!(users.len(), 0);
        assert!(!users.remove("ann"), "an unknown user is not removed twice");
    }

    #[test]
    fn subscription_succeeded_lists_presence_as_pusher_does() {
        let mut users = Users::default();
        users.add(&Arc::from("2"), &Arc::from(r#"{"name":"Bo"}"#));
        users.add(&Arc::from("1"), &Arc::from("null"));
        let frame = json(&subscription_succeeded("presence-x", Some(&users)));
        assert_eq!(frame["event"], "pusher_internal:subscription_succeeded");
        let data: serde_json::Value = serde_json::from_str(frame["data"].as_str().expect("a string")).expect("JSON");
        assert_eq!(
            data,
            serde_json::json!({"presence": {"ids": ["1", "2"], "hash": {"1": null, "2": {"name": "Bo"}}, "count": 2}})
        );
        let plain = json(&subscription_succeeded("x", None));
        assert_eq!(plain["data"], "{}");
    }

    #[test]
    fn an_event_keeps_its_data_as_a_string_and_chat_becomes_message() {
        let event = Entry {
            id: 3,
            ts: 10,
            nick: Arc::from("app"),
            user: None,
            text: Arc::from(r#"{"a":1}"#),
            event: Some(Arc::from("greet")),
        };
        let frame = json(&entry_frame("lobby", &event));
        assert_eq!(
            frame,
            serde_json::json!({"event": "greet", "channel": "lobby", "data": "{\"a\":1}", "id": 3})
        );
        let chat = Entry {
            event: None,
            text: Arc::from("hi"),
            nick: Arc::from("ann"),
            ..event
        };
        let frame = json(&entry_frame("lobby", &chat));
        assert_eq!(frame["event"], CHAT_EVENT);
        let data: serde_json::Value = serde_json::from_str(frame["data"].as_str().expect("a string")).expect("JSON");
        assert_eq!(
            data,
            serde_json::json!({"id": 3, "ts": 10, "nick": "ann", "text": "hi"})
        );
    }

    #[test]
    fn member_events_carry_the_user() {
        let added = json(&member_added("presence-x", "7", r#"{"n":1}"#));
        assert_eq!(added["data"], r#"{"user_id":"7","user_info":{"n":1}}"#);
        let removed = json(&member_removed("presence-x", "7"));
        assert_eq!(removed["data"], r#"{"user_id":"7"}"#);
    }
}
