//! What the server sends a Pusher client, each as the JSON text of one
//! frame.
//!
//! The shapes are those of Pusher's protocol page. `pusher:` system events
//! and `pusher_internal:` ones carry their `data` as a string holding JSON
//! ("double encoding"): `connection_established`, `subscription_succeeded`,
//! `member_added`, `member_removed`, `subscription_count`. Three carry an
//! object, as Pusher's own servers send them and the spec shows them:
//! `pusher:error` (`{"code": 4001 or null, "message": ...}`),
//! `pusher:signin_success` and `pusher:subscription_error`. Every client
//! library takes either form (pusher-js parses a string `data` when it can).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use super::SocketId;

/// One member of a presence channel, as `subscription_succeeded` lists it.
#[derive(Debug, Clone, Copy)]
pub struct PresenceMember<'a> {
    /// The `user_id` of its `channel_data`.
    pub user_id: &'a str,
    /// The `user_info` of its `channel_data` (`null` when it had none).
    pub user_info: &'a RawValue,
}

#[derive(Serialize)]
struct Frame<'a, D: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    /// wshub's extension: a stored event's id in its room.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

fn frame<D: Serialize>(event: &str, channel: Option<&str>, data: Option<D>, user_id: Option<&str>) -> String {
    let frame = Frame {
        event,
        channel,
        data,
        user_id,
        id: None,
    };
    serde_json::to_string(&frame).expect("a Pusher frame serializes")
}

/// `data` as the string of its JSON.
fn encoded(data: &impl Serialize) -> String {
    serde_json::to_string(data).expect("Pusher data serializes")
}

/// `pusher:connection_established`: the connection's `socket_id` and the
/// seconds of silence after which the client should ping.
pub fn connection_established(socket_id: SocketId, activity_timeout_secs: u64) -> String {
    #[derive(Serialize)]
    struct Established {
        socket_id: String,
        activity_timeout: u64,
    }
    let data = encoded(&Established {
        socket_id: socket_id.to_string(),
        activity_timeout: activity_timeout_secs,
    });
    frame("pusher:connection_established", None, Some(data), None)
}

/// `pusher:ping`, when the server checks a silent client.
pub fn ping() -> String {
    frame("pusher:ping", None, Some(serde_json::Map::new()), None)
}

/// `pusher:pong`, the answer to `pusher:ping`.
pub fn pong() -> String {
    frame("pusher:pong", None, Some(serde_json::Map::new()), None)
}

/// `pusher:error`: `code` is one of [`super::ErrorCode`]'s, or `None` (sent
/// as `null`) for a refused message that has no code.
pub fn error(code: Option<u16>, message: &str) -> String {
    #[derive(Serialize)]
    struct Error<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    frame("pusher:error", None, Some(Error { code, message }), None)
}

/// `pusher_internal:subscription_succeeded` for a channel without members.
pub fn subscription_succeeded(channel: &str) -> String {
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some("{}"),
        None,
    )
}

/// `pusher_internal:subscription_succeeded` for a presence channel:
/// `{"presence": {"ids": [...], "hash": {id: info}, "count": n}}`, members
/// in the order given (each once).
pub fn presence_subscription_succeeded(channel: &str, members: &[PresenceMember<'_>]) -> String {
    struct Hash<'a>(&'a [PresenceMember<'a>]);
    impl Serialize for Hash<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for member in self.0 {
                map.serialize_entry(member.user_id, member.user_info)?;
            }
            map.end()
        }
    }
    #[derive(Serialize)]
    struct Presence<'a> {
        ids: Vec<&'a str>,
        hash: Hash<'a>,
        count: usize,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        presence: Presence<'a>,
    }
    let data = encoded(&Data {
        presence: Presence {
            ids: members.iter().map(|m| m.user_id).collect(),
            hash: Hash(members),
            count: members.len(),
        },
    });
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some(data),
        None,
    )
}

/// `pusher:subscription_error`: the subscription to `channel` was refused.
/// `kind` is the `type` pusher-js reports (`AuthError` for a bad
/// signature, `LimitReached`, ...), `status` an HTTP-like status (401,
/// 403, ...).
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> String {
    #[derive(Serialize)]
    struct Refused<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    let data = Refused {
        kind,
        error: message,
        status,
    };
    frame("pusher:subscription_error", Some(channel), Some(data), None)
}

/// `pusher_internal:member_added`: a user's first connection joined the
/// presence channel.
pub fn member_added(channel: &str, user_id: &str, user_info: &RawValue) -> String {
    #[derive(Serialize)]
    struct Added<'a> {
        user_id: &'a str,
        user_info: &'a RawValue,
    }
    let data = encoded(&Added { user_id, user_info });
    frame("pusher_internal:member_added", Some(channel), Some(data), None)
}

/// `pusher_internal:member_removed`: a user's last connection left.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    #[derive(Serialize)]
    struct Removed<'a> {
        user_id: &'a str,
    }
    let data = encoded(&Removed { user_id });
    frame("pusher_internal:member_removed", Some(channel), Some(data), None)
}

/// `pusher_internal:subscription_count`: how many connections subscribe
/// (pusher-js's `subscription_count` event).
pub fn subscription_count(channel: &str, count: usize) -> String {
    #[derive(Serialize)]
    struct Count {
        subscription_count: usize,
    }
    let data = encoded(&Count {
        subscription_count: count,
    });
    frame("pusher_internal:subscription_count", Some(channel), Some(data), None)
}

/// `pusher:cache_miss`: a cache channel has no event yet to replay.
pub fn cache_miss(channel: &str) -> String {
    frame::<()>("pusher:cache_miss", Some(channel), None, None)
}

/// `pusher:signin_success`, with the `user_data` the client signed in with.
pub fn signin_success(user_data: &str) -> String {
    #[derive(Serialize)]
    struct Success<'a> {
        user_data: &'a str,
    }
    frame("pusher:signin_success", None, Some(Success { user_data }), None)
}

/// An event on `channel`, `data` passed through as the string it is (what
/// the HTTP API was given); `user_id` for a client event on a presence
/// channel (who sent it).
pub fn event(channel: &str, event: &str, data: &str, user_id: Option<&str>) -> String {
    frame(event, Some(channel), Some(data), user_id)
}

/// [`event`] with wshub's extension: the stored event's `id` in its room
/// (0: not stored, none), what a client gives as `since` to catch up.
pub fn stored_event(channel: &str, event: &str, data: &str, user_id: Option<&str>, id: u64) -> String {
    let frame = Frame {
        event,
        channel: Some(channel),
        data: Some(data),
        user_id,
        id: (id > 0).then_some(id),
    };
    serde_json::to_string(&frame).expect("a Pusher frame serializes")
}

/// A client event relayed: `data` embedded as the JSON the sender sent
/// (an object stays an object), `user_id` on a presence channel.
pub fn client_event(channel: &str, event: &str, data: &RawValue, user_id: Option<&str>) -> String {
    frame(event, Some(channel), Some(data), user_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    /// The frame's `data`, itself parsed (it must be a string of JSON).
    fn inner(frame: &Value) -> Value {
        parsed(frame["data"].as_str().expect("data is a string"))
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn connection_established_double_encodes_its_data() {
        let text = connection_established(SocketId::new(123, 456), 120);
        assert_eq!(
            text,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
    }

    #[test]
    fn pings_pongs_and_errors() {
        assert_eq!(pong(), r#"{"event":"pusher:pong","data":{}}"#);
        assert_eq!(ping(), r#"{"event":"pusher:ping","data":{}}"#);
        assert_eq!(
            parsed(&error(Some(4001), "Application does not exist")),
            json!({"event": "pusher:error", "data": {"code": 4001, "message": "Application does not exist"}})
        );
        assert_eq!(
            error(None, "Received \"invalid\" JSON"),
            r#"{"event":"pusher:error","data":{"code":null,"message":"Received \"invalid\" JSON"}}"#
        );
    }

    #[test]
    fn subscriptions_succeed_plain_or_with_the_presence_list() {
        assert_eq!(
            subscription_succeeded("lobby"),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"lobby","data":"{}"}"#
        );
        let (ann, bo) = (raw(r#"{"name":"Ann"}"#), raw("null"));
        let members = [
            PresenceMember {
                user_id: "ann",
                user_info: &ann,
            },
            PresenceMember {
                user_id: "7",
                user_info: &bo,
            },
        ];
        let frame = parsed(&presence_subscription_succeeded("presence-room", &members));
        assert_eq!(frame["channel"], "presence-room");
        assert_eq!(
            inner(&frame),
            json!({"presence": {"ids": ["ann", "7"], "hash": {"ann": {"name": "Ann"}, "7": null}, "count": 2}})
        );
        let empty = parsed(&presence_subscription_succeeded("presence-room", &[]));
        assert_eq!(inner(&empty), json!({"presence": {"ids": [], "hash": {}, "count": 0}}));
    }

    #[test]
    fn subscription_errors_carry_type_error_and_status() {
        assert_eq!(
            parsed(&subscription_error("private-x", "AuthError", "Invalid signature", 401)),
            json!({"event": "pusher:subscription_error", "channel": "private-x",
                   "data": {"type": "AuthError", "error": "Invalid signature", "status": 401}})
        );
    }

    #[test]
    fn members_come_and_go_double_encoded() {
        let info = raw(r#"{"name":"Ann","tags":["a"]}"#);
        let added = parsed(&member_added("presence-room", "ann", &info));
        assert_eq!(added["event"], "pusher_internal:member_added");
        assert_eq!(added["channel"], "presence-room");
        assert_eq!(
            inner(&added),
            json!({"user_id": "ann", "user_info": {"name": "Ann", "tags": ["a"]}})
        );
        let removed = parsed(&member_removed("presence-room", "ann"));
        assert_eq!(removed["event"], "pusher_internal:member_removed");
        assert_eq!(inner(&removed), json!({"user_id": "ann"}));
        let count = parsed(&subscription_count("lobby", 3));
        assert_eq!(inner(&count), json!({"subscription_count": 3}));
    }

    #[test]
    fn cache_miss_and_signin_success() {
        assert_eq!(
            cache_miss("cache-prices"),
            r#"{"event":"pusher:cache_miss","channel":"cache-prices"}"#
        );
        assert_eq!(
            signin_success(r#"{"id":"1"}"#),
            r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"1\"}"}}"#
        );
    }

    #[test]
    fn events_pass_their_data_through() {
        assert_eq!(
            event("lobby", "greet", r#"{"hello":"world"}"#, None),
            r#"{"event":"greet","channel":"lobby","data":"{\"hello\":\"world\"}"}"#
        );
        assert_eq!(
            event("presence-room", "client-typing", "plain text", Some("ann")),
            r#"{"event":"client-typing","channel":"presence-room","data":"plain text","user_id":"ann"}"#
        );
        let data = raw(r#"{"who": "ann"}"#);
        assert_eq!(
            client_event("private-chat", "client-typing", &data, None),
            r#"{"event":"client-typing","channel":"private-chat","data":{"who": "ann"}}"#
        );
        // Whatever a channel or event name holds, the frame stays JSON.
        let odd = parsed(&event("a\"b", "e\\v\u{1}", "\u{2028}", None));
        assert_eq!(odd["channel"], "a\"b");
        assert_eq!(odd["event"], "e\\v\u{1}");
    }
}
