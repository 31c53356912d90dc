//! `wshub.v1`: the JSON subprotocol, negotiated with
//! `Sec-WebSocket-Protocol: wshub.v1`. One text frame carries one JSON
//! object whose `type` names it. The specification, with examples, is
//! `docs/protocol.md`; these types are the single source of truth that the
//! server and the tests share.

use serde::{Deserialize, Serialize};

/// The subprotocol's name, as negotiated in the handshake.
pub const SUBPROTOCOL: &str = "wshub.v1";

/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 32;

/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;

/// Longest user id (a token's `sub`), in bytes: it travels with every
/// message and presence entry of its holder.
pub const MAX_USER_BYTES: usize = 256;

/// Longest `ref`, in bytes: a tag to recognise one's own messages, not a
/// second payload (it travels to every member with the message).
pub const MAX_REF_BYTES: usize = 128;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Join a room. Without `since`, the last messages (`--join-history`)
    /// come first; with `since`, everything after that id (catch-up).
    Join {
        /// The room.
        room: String,
        /// The last message id the client saw in this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Set the nickname (shown on messages and in presence).
    Nick {
        /// 1 to 32 characters, no control characters.
        nick: String,
    },
    /// Send a message to a joined room.
    Send {
        /// The room.
        room: String,
        /// The message.
        text: String,
        /// An opaque client tag echoed in the resulting `message`, so the
        /// sender can recognise its own message.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        client_ref: Option<String>,
    },
    /// Ask for history of a joined room: messages after `since` (or the
    /// latest ones), at most `limit`.
    History {
        /// The room.
        room: String,
        /// Only messages with a greater id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// At most this many (the server caps it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Ask for the member list of a joined room.
    Members {
        /// The room.
        room: String,
    },
}

/// One stored chat message, as it travels in `message` and `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Increases within the room, never reused.
    pub id: u64,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The sender's nickname at the time.
    pub nick: String,
    /// The sender's user id (its access token's `sub`), when it had one:
    /// nicknames can repeat, user ids tell people apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The message (an event's data).
    pub text: String,
    /// The event's name, for an event published the Pusher way (the HTTP
    /// API); absent for a chat message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A member in a presence list: a nickname (and user id, when known) and
/// how many connections use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCount {
    /// The nickname.
    pub nick: String,
    /// The user id (access token's `sub`) behind it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Connections in the room with this nickname.
    pub connections: usize,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on a new connection.
    Welcome {
        /// The nickname given (change it with `nick`, unless `nick_locked`).
        nick: String,
        /// Your user id (your access token's `sub`), when you have one: the
        /// `user` of your own messages and presence entries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The nickname comes from your access token: a `nick` request for
        /// another name gets `nick_locked`.
        #[serde(default, skip_serializing_if = "is_false")]
        nick_locked: bool,
        /// Always `wshub.v1`.
        protocol: String,
        /// Longest `text` accepted, in bytes.
        max_text_bytes: usize,
    },
    /// A chat message in a joined room (also the sender's own, with `ref`).
    Message {
        /// The room.
        room: String,
        /// The message.
        #[serde(flatten)]
        message: ChatMessage,
        /// The sender's tag, when it gave one.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        client_ref: Option<String>,
        /// Delivered only within this node while cross-node delivery is
        /// interrupted (Redis away): not in the shared history, and `id` is 0.
        #[serde(default, skip_serializing_if = "is_false")]
        local: bool,
    },
    /// Past messages, oldest first: on join, on catch-up, on request.
    History {
        /// The room.
        room: String,
        /// The messages.
        messages: Vec<ChatMessage>,
    },
    /// The room's members right now: after a join and on request.
    Presence {
        /// The room.
        room: String,
        /// Connections in the room.
        count: usize,
        /// Nicknames, sorted.
        members: Vec<MemberCount>,
    },
    /// Someone joined a room you are in.
    Joined {
        /// The room.
        room: String,
        /// Their nickname.
        nick: String,
        /// Their user id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Someone left (or was disconnected from) a room you are in.
    Left {
        /// The room.
        room: String,
        /// Their nickname.
        nick: String,
        /// Their user id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Your nickname changed.
    Nick {
        /// The new nickname.
        nick: String,
    },
    /// A request could not be served; the connection stays open.
    Error {
        /// A stable code (see [`ErrorCode`]).
        code: ErrorCode,
        /// For humans.
        message: String,
        /// The room concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// With `history_truncated`: the oldest id still kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_available: Option<u64>,
        /// The `ref` of the request refused, when it had one: the sender
        /// can tell which of its messages did not go out.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        client_ref: Option<String>,
    },
    /// News about the server that no request caused and that is no
    /// failure (cross-node delivery lost or back): a client shows it and
    /// carries on.
    Notice {
        /// A stable code (see [`NoticeCode`]).
        code: NoticeCode,
        /// For humans.
        message: String,
    },
}

/// What a `notice` is about. Stable strings on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeCode {
    /// This node lost Redis: messages now reach only this node's members
    /// (as `local` messages) until `cross_node_restored`.
    CrossNodeInterrupted,
    /// Redis is back: messages reach every node again.
    CrossNodeRestored,
}

/// Why a request failed. Stable strings on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON (or is binary).
    BadJson,
    /// `type` names no request.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type, or an unknown field was sent.
    BadField,
    /// The room name is not 1-64 letters, digits, `-`, `_` or `.`.
    BadRoom,
    /// The nickname is empty, over 32 characters or has control characters.
    BadNick,
    /// `nick` for another name than the access token gives: with tokens
    /// required, the nickname is the token's.
    NickLocked,
    /// `text` is longer than the server accepts.
    TooLong,
    /// Joining would exceed `--max-rooms-per-conn`.
    TooManyRooms,
    /// The request names a room this connection has not joined.
    NotJoined,
    /// `join` for a room already joined.
    AlreadyJoined,
    /// Catch-up is impossible: retention dropped messages after `since`;
    /// history starts at `first_available` (what remains follows).
    HistoryTruncated,
    /// Catch-up or `history` could not be read (with `--redis`: Redis is
    /// away or failing): what came is not all there is; ask again later.
    HistoryUnavailable,
    /// `join` of a room the connection's access token does not list.
    ForbiddenRoom,
    /// The message was over the connection's rate limits and was dropped.
    RateLimited,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ClientFrame {
    /// The request's `ref`, for requests that carry one.
    pub fn client_ref(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { client_ref, .. } => client_ref.as_deref(),
            _ => None,
        }
    }
}

impl ServerFrame {
    /// Encodes as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialise")
    }

    /// The `history_truncated` error: retention dropped part of what a
    /// catch-up asked for; history starts at `first_available`.
    pub fn history_truncated(room: &str, first_available: u64) -> ServerFrame {
        ServerFrame::Error {
            code: ErrorCode::HistoryTruncated,
            message: format!("cannot recover: history starts at id {first_available}"),
            room: Some(room.to_owned()),
            first_available: Some(first_available),
            client_ref: None,
        }
    }

    /// The `history_unavailable` error: the history store could not be
    /// read, so the (empty) history that follows is not "nothing since".
    pub fn history_unavailable(room: &str) -> ServerFrame {
        ServerFrame::Error {
            code: ErrorCode::HistoryUnavailable,
            message: "history could not be read now (cross-node store unreachable): messages may be missing; \
                      ask again (join with the same since) later"
                .to_owned(),
            room: Some(room.to_owned()),
            first_available: None,
            client_ref: None,
        }
    }

    /// Cross-node delivery stopped: this node lost Redis.
    pub fn cross_node_interrupted() -> ServerFrame {
        ServerFrame::Notice {
            code: NoticeCode::CrossNodeInterrupted,
            message: "cross-node delivery interrupted: messages reach this server's members only".into(),
        }
    }

    /// Cross-node delivery works again: Redis is back.
    pub fn cross_node_restored() -> ServerFrame {
        ServerFrame::Notice {
            code: NoticeCode::CrossNodeRestored,
            message: "cross-node delivery restored: messages reach every server again".into(),
        }
    }

    /// An error frame without room or position.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            message: message.into(),
            room: None,
            first_available: None,
            client_ref: None,
        }
    }
}

/// Parses a client frame, classifying what is wrong with a bad one.
///
/// # Errors
/// The [`ErrorCode`] for the error frame, with a message naming the field.
pub fn parse_client_frame(bytes: &[u8]) -> Result<ClientFrame, (ErrorCode, String)> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| (ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err((ErrorCode::BadJson, "expected a JSON object".into()));
    };
    let kind = match object.get("type") {
        None => return Err((ErrorCode::MissingField, "missing field `type`".into())),
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(_) => return Err((ErrorCode::BadField, "`type` must be a string".into())),
    };
    if !matches!(
        kind.as_str(),
        "join" | "leave" | "nick" | "send" | "history" | "members"
    ) {
        return Err((ErrorCode::UnknownType, format!("unknown type `{}`", shortened(&kind))));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let code = if text.starts_with("missing field") {
            ErrorCode::MissingField
        } else {
            ErrorCode::BadField
        };
        (code, shortened(&text).into_owned())
    })
}

/// What an error message may quote of the client's request: an error
/// must not hand a client back the request it sent (up to 25 KiB), which
/// its rate would then pay for twice.
const MAX_QUOTED: usize = 120;

/// `text`, cut at [`MAX_QUOTED`] bytes (on a character boundary) with `…`.
fn shortened(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_QUOTED {
        return text.into();
    }
    let mut end = MAX_QUOTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Whether `name` is a valid room name: 1 to 64 ASCII letters, digits,
/// `-`, `_` or `.`.
pub fn is_valid_room(name: &str) -> bool {
    (1..=MAX_ROOM_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `client_ref` is a valid `ref`: at most [`MAX_REF_BYTES`] bytes.
pub fn is_valid_ref(client_ref: &str) -> bool {
    client_ref.len() <= MAX_REF_BYTES
}

/// Whether `nick` is a valid nickname: 1 to 32 characters, none a control
/// or an invisible formatting character, not only white space.
pub fn is_valid_nick(nick: &str) -> bool {
    let chars = nick.chars().count();
    (1..=MAX_NICK_CHARS).contains(&chars)
        && !nick.chars().any(|c| c.is_control() || is_invisible_format(c))
        && joiners_join(nick)
        && !nick.trim().is_empty()
}

/// Whether every joiner (U+200C, U+200D) in `nick` stands between two
/// characters that are not ASCII and not joiners: where emoji sequences
/// (👩‍💻) and scripts (Persian, Devanagari) need one. Elsewhere it is
/// invisible, and `ann` followed by a joiner would pass for `ann`.
fn joiners_join(nick: &str) -> bool {
    let is_joiner = |c: char| matches!(c, '\u{200C}' | '\u{200D}');
    let joins = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && !is_joiner(c));
    let chars: Vec<char> = nick.chars().collect();
    chars
        .iter()
        .enumerate()
        .all(|(i, &c)| !is_joiner(c) || (joins(i.checked_sub(1).map(|p| chars[p])) && joins(chars.get(i + 1).copied())))
}

/// Unicode's invisible formatting characters (category Cf) that text has
/// no need of in a name: zero-width spaces, direction marks, overrides and
/// isolates. In a nickname they make one that looks like another's (or
/// like none), or turn the text after it around (U+202E). The joiners
/// (U+200C, U+200D) stay where they join ([`joiners_join`]).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request() {
        let cases = [
            (
                r#"{"type":"join","room":"lobby"}"#,
                ClientFrame::Join {
                    room: "lobby".into(),
                    since: None,
                },
            ),
            (
                r#"{"type":"join","room":"a","since":7}"#,
                ClientFrame::Join {
                    room: "a".into(),
                    since: Some(7),
                },
            ),
            (
                r#"{"type":"leave","room":"a"}"#,
                ClientFrame::Leave { room: "a".into() },
            ),
            (
                r#"{"type":"nick","nick":"ann"}"#,
                ClientFrame::Nick { nick: "ann".into() },
            ),
            (
                r#"{"type":"send","room":"a","text":"hi","ref":"c1"}"#,
                ClientFrame::Send {
                    room: "a".into(),
                    text: "hi".into(),
                    client_ref: Some("c1".into()),
                },
            ),
            (
                r#"{"type":"members","room":"a"}"#,
                ClientFrame::Members { room: "a".into() },
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(parse_client_frame(json.as_bytes()), Ok(expected), "{json}");
        }
    }

    #[test]
    fn classifies_bad_input() {
        let cases = [
            ("{nope", ErrorCode::BadJson),
            ("[1,2]", ErrorCode::BadJson),
            (r#"{"room":"a"}"#, ErrorCode::MissingField),
            (r#"{"type":5}"#, ErrorCode::BadField),
            (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
            (r#"{"type":"send","room":"a"}"#, ErrorCode::MissingField),
            (r#"{"type":"send","room":"a","text":5}"#, ErrorCode::BadField),
            (r#"{"type":"join","room":"a","extra":1}"#, ErrorCode::BadField),
        ];
        for (json, code) in cases {
            assert_eq!(parse_client_frame(json.as_bytes()).unwrap_err().0, code, "{json}");
        }
    }

    /// An error quotes at most a little of the request, whatever it held.
    #[test]
    fn an_error_does_not_hand_the_request_back() {
        let long = "é".repeat(10_000);
        for json in [
            format!(r#"{{"type":"{long}"}}"#),
            format!(r#"{{"type":"send","room":"a","text":["{long}"]}}"#),
            format!(r#"{{"type":"join","room":"a","{long}":1}}"#),
        ] {
            let (_, message) = parse_client_frame(json.as_bytes()).unwrap_err();
            // The quote, its ellipsis, and a few words of its own.
            assert!(message.len() <= MAX_QUOTED + 32, "{} bytes: {message}", message.len());
        }
    }

    #[test]
    fn room_and_nick_rules() {
        assert!(is_valid_room("lobby") && is_valid_room("a.b-c_9") && is_valid_room(&"x".repeat(64)));
        assert!(!is_valid_room("") && !is_valid_room(&"x".repeat(65)) && !is_valid_room("a b") && !is_valid_room("ü"));
        assert!(is_valid_nick("ann") && is_valid_nick("名前") && is_valid_nick(&"é".repeat(32)));
        assert!(
            !is_valid_nick("") && !is_valid_nick("  ") && !is_valid_nick("a\nb") && !is_valid_nick(&"x".repeat(33))
        );
        for invisible in [
            "\u{200B}",
            "ann\u{200B}",
            "evil\u{202E}nna",
            "\u{FEFF}ann",
            "a\u{2066}b",
            "ann\u{200D}",
            "\u{200C}ann",
            "an\u{200D}n",
            "👩\u{200D}",
            "👩\u{200D}\u{200D}💻",
            "\u{200D}",
        ] {
            assert!(!is_valid_nick(invisible), "{invisible:?}");
        }
        assert!(is_valid_nick("Zoë") && is_valid_nick("👩‍💻"), "an emoji's joiner stays");
        assert!(is_valid_nick("می\u{200C}خواهم"), "a Persian non-joiner stays");
    }

    #[test]
    fn the_cross_node_status_is_a_notice_not_an_error() {
        for (frame, code) in [
            (ServerFrame::cross_node_interrupted(), "cross_node_interrupted"),
            (ServerFrame::cross_node_restored(), "cross_node_restored"),
        ] {
            let json: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
            assert_eq!(json["type"], "notice", "{json}");
            assert_eq!(json["code"], code, "{json}");
            assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
            assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
        }
    }

    #[test]
    fn message_frames_flatten_the_stored_message() {
        let frame = ServerFrame::Message {
            room: "lobby".into(),
            message: ChatMessage {
                id: 3,
                ts: 1700000000000,
                nick: "ann".into(),
                user: None,
                text: "hi".into(),
                event: None,
            },
            client_ref: None,
            local: false,
        };
        assert_eq!(
            frame.to_json(),
            r#"{"type":"message","room":"lobby","id":3,"ts":1700000000000,"nick":"ann","text":"hi"}"#
        );
        let round: ServerFrame = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(round, frame);
    }

    #[test]
    fn the_user_id_shows_only_when_known() {
        let message = ChatMessage {
            id: 3,
            ts: 1,
            nick: "Dana".into(),
            user: Some("u-42".into()),
            text: "hi".into(),
            event: None,
        };
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"id":3,"ts":1,"nick":"Dana","user":"u-42","text":"hi"}"#
        );
        let welcome = ServerFrame::Welcome {
            nick: "guest-1".into(),
            user: None,
            nick_locked: false,
            protocol: SUBPROTOCOL.into(),
            max_text_bytes: 4096,
        };
        assert_eq!(
            welcome.to_json(),
            r#"{"type":"welcome","nick":"guest-1","protocol":"wshub.v1","max_text_bytes":4096}"#
        );
        let member = MemberCount {
            nick: "ann".into(),
            user: None,
            connections: 2,
        };
        assert_eq!(
            serde_json::to_string(&member).unwrap(),
            r#"{"nick":"ann","connections":2}"#
        );
    }
}
