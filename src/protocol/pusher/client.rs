//! What a Pusher client sends: `{"event": ..., "data": ..., "channel": ...}`
//! text frames, parsed into [`ClientMessage`].
//!
//! `pusher:subscribe`, `pusher:unsubscribe` and `pusher:signin` carry an
//! object in `data` (a string holding that object's JSON is accepted too,
//! as some older clients send it); a client event (`client-...`) carries
//! any JSON, kept as its text because the server only relays it.

use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use super::names::{check_channel, check_client_event, NameError};

/// One message from a client.
#[derive(Debug, Clone)]
pub enum ClientMessage {
    /// `pusher:ping`: answer `pusher:pong`.
    Ping,
    /// `pusher:pong`: the client answered the server's ping.
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// A valid channel name (its type: [`super::ChannelType::of`]).
        channel: String,
        /// `key:signature` for a private, encrypted or presence channel.
        auth: Option<String>,
        /// The presence member's JSON text (`{"user_id": ..., "user_info": ...}`),
        /// signed with the channel as it is.
        channel_data: Option<String>,
        /// wshub's extension: the last message id the client saw in this
        /// channel, to be sent what it missed (plain Pusher clients never
        /// send it, and ignore what it brings).
        since: Option<u64>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel (as named; an unknown one is nothing to leave).
        channel: String,
    },
    /// `pusher:signin`: user authentication.
    Signin {
        /// `key:signature` over `socket_id::user::user_data`.
        auth: String,
        /// The user's JSON text (`{"id": ..., ...}`), signed as it is.
        user_data: String,
    },
    /// A client event, to relay to the channel's other subscribers.
    ClientEvent {
        /// Its name, starting with `client-`, at most 200 characters.
        event: String,
        /// A valid channel name.
        channel: String,
        /// Its data as the JSON text received (`null` when absent).
        data: Box<RawValue>,
    },
}

/// Equal when the same message: client event data compares as its text
/// (`RawValue` has no equality of its own).
impl PartialEq for ClientMessage {
    fn eq(&self, other: &Self) -> bool {
        use ClientMessage::*;
        match (self, other) {
            (Ping, Ping) | (Pong, Pong) => true,
            (
                Subscribe {
                    channel,
                    auth,
                    channel_data,
                    since,
                },
                Subscribe {
                    channel: c,
                    auth: a,
                    channel_data: d,
                    since: s,
                },
            ) => (channel, auth, channel_data, since) == (c, a, d, s),
            (Unsubscribe { channel }, Unsubscribe { channel: c }) => channel == c,
            (Signin { auth, user_data }, Signin { auth: a, user_data: u }) => (auth, user_data) == (a, u),
            (
                ClientEvent { event, channel, data },
                ClientEvent {
                    event: e,
                    channel: c,
                    data: d,
                },
            ) => (event, channel, data.get()) == (e, c, d.get()),
            _ => false,
        }
    }
}

/// Why a frame is not a message this server accepts. Each is answered with
/// `pusher:error` (no code) carrying this message, as Pusher does; the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON, not an object, or an `event` that is not a string.
    #[error("Received invalid JSON")]
    InvalidJson,
    /// No `event`.
    #[error("Missing event name")]
    MissingEvent,
    /// A `pusher:` event this server does not take, or an event that is
    /// neither `pusher:` nor `client-` (Pusher's wording).
    #[error("Unsupported event received on socket: {0}")]
    UnsupportedEvent(String),
    /// A `pusher:` event whose `data` lacks a field or has one of the
    /// wrong type.
    #[error("Invalid {event} data: {reason}")]
    InvalidData {
        /// The event.
        event: &'static str,
        /// What is wrong, as serde says it.
        reason: String,
    },
    /// A client event without `channel`.
    #[error("Client event {0} needs a channel")]
    MissingChannel(String),
    /// A channel name Pusher refuses (to subscribe to, or trigger on).
    #[error("{error}")]
    InvalidChannel {
        /// The name as sent.
        channel: String,
        /// Why it is refused.
        error: NameError,
    },
    /// A client event name over 200 characters.
    #[error("{0}")]
    InvalidEventName(NameError),
}

#[derive(Deserialize)]
struct Envelope {
    event: Option<String>,
    channel: Option<String>,
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    auth: Option<String>,
    channel_data: Option<String>,
    since: Option<u64>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

/// Parses one text frame from a client.
///
/// # Errors
/// [`ParseError`], whose message is what the client is told.
pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|_| ParseError::InvalidJson)?;
    let event = envelope.event.ok_or(ParseError::MissingEvent)?;
    let data = envelope.data.as_deref();
    match event.as_str() {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let data: SubscribeData = object("pusher:subscribe", data)?;
            check_channel(&data.channel).map_err(|error| ParseError::InvalidChannel {
                channel: data.channel.clone(),
                error,
            })?;
            Ok(ClientMessage::Subscribe {
                channel: data.channel,
                auth: data.auth,
                channel_data: data.channel_data,
                since: data.since,
            })
        }
        "pusher:unsubscribe" => {
            let data: UnsubscribeData = object("pusher:unsubscribe", data)?;
            Ok(ClientMessage::Unsubscribe { channel: data.channel })
        }
        "pusher:signin" => {
            let data: SigninData = object("pusher:signin", data)?;
            Ok(ClientMessage::Signin {
                auth: data.auth,
                user_data: data.user_data,
            })
        }
        name if name.starts_with(super::CLIENT_EVENT_PREFIX) => {
            check_client_event(name).map_err(ParseError::InvalidEventName)?;
            let channel = envelope
                .channel
                .ok_or_else(|| ParseError::MissingChannel(event.clone()))?;
            check_channel(&channel).map_err(|error| ParseError::InvalidChannel {
                channel: channel.clone(),
                error,
            })?;
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data: envelope.data.unwrap_or_else(|| RawValue::NULL.to_owned()),
            })
        }
        _ => Err(ParseError::UnsupportedEvent(event)),
    }
}

/// `data` as the object `T`, also when it arrives as a string of its JSON.
fn object<T: for<'de> Deserialize<'de>>(event: &'static str, data: Option<&RawValue>) -> Result<T, ParseError> {
    let invalid = |reason: String| ParseError::InvalidData { event, reason };
    let data = data.ok_or_else(|| invalid("missing".into()))?;
    let text = data.get();
    let inner;
    let json = if text.starts_with('"') {
        inner = serde_json::from_str::<String>(text).map_err(|e| invalid(e.to_string()))?;
        inner.as_str()
    } else {
        text
    };
    serde_json::from_str(json).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn pings_and_pongs_with_or_without_data() {
        assert_eq!(parse(r#"{"event":"pusher:ping","data":{}}"#), Ok(ClientMessage::Ping));
        assert_eq!(parse(r#"{"event":"pusher:ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(parse(r#"{"event":"pusher:pong","data":"{}"}"#), Ok(ClientMessage::Pong));
    }

    #[test]
    fn subscribe_as_pusher_js_sends_it() {
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"lobby"}}"#),
            Ok(ClientMessage::Subscribe {
                channel: "lobby".into(),
                auth: Some(String::new()),
                channel_data: None,
                since: None,
            })
        );
        let presence = r#"{"event":"pusher:subscribe","data":{"channel":"presence-room",
            "auth":"key:abc","channel_data":"{\"user_id\":\"7\",\"user_info\":{\"name\":\"Ann\"}}"}}"#;
        assert_eq!(
            parse(presence),
            Ok(ClientMessage::Subscribe {
                channel: "presence-room".into(),
                auth: Some("key:abc".into()),
                channel_data: Some(r#"{"user_id":"7","user_info":{"name":"Ann"}}"#.into()),
                since: None,
            })
        );
    }

    #[test]
    fn subscribe_takes_wshubs_since_and_data_as_a_string() {
        let msg = parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"lobby\",\"since\":42}"}"#);
        assert_eq!(
            msg,
            Ok(ClientMessage::Subscribe {
                channel: "lobby".into(),
                auth: None,
                channel_data: None,
                since: Some(42),
            })
        );
        let bad = parse(r#"{"event":"pusher:subscribe","data":{"channel":"lobby","since":"yesterday"}}"#);
        assert!(
            matches!(
                bad,
                Err(ParseError::InvalidData {
                    event: "pusher:subscribe",
                    ..
                })
            ),
            "{bad:?}"
        );
    }

    #[test]
    fn a_subscription_needs_a_valid_channel() {
        for frame in [
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
            r#"{"event":"pusher:subscribe","data":[]}"#,
            r#"{"event":"pusher:subscribe","data":"not json"}"#,
        ] {
            assert!(matches!(parse(frame), Err(ParseError::InvalidData { .. })), "{frame}");
        }
        let err = parse(r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#).unwrap_err();
        assert!(matches!(&err, ParseError::InvalidChannel { channel, .. } if channel == "a b"));
        assert_eq!(
            err.to_string(),
            "Invalid channel name 'a b': only A-Z a-z 0-9 _ - = @ , . ; are allowed"
        );
        let reserved = parse(r##"{"event":"pusher:subscribe","data":{"channel":"#private-x"}}"##);
        assert!(matches!(
            reserved,
            Err(ParseError::InvalidChannel {
                error: NameError::Reserved(_),
                ..
            })
        ));
        // What pusher-js subscribes to after a sign-in.
        let user = parse(r##"{"event":"pusher:subscribe","data":{"auth":"","channel":"#server-to-user-ann"}}"##);
        assert!(
            matches!(&user, Ok(ClientMessage::Subscribe { channel, .. }) if channel == "#server-to-user-ann"),
            "{user:?}"
        );
    }

    #[test]
    fn unsubscribe_and_signin() {
        assert_eq!(
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"lobby"}}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "lobby".into()
            })
        );
        assert_eq!(
            parse(r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#),
            Ok(ClientMessage::Signin {
                auth: "k:s".into(),
                user_data: r#"{"id":"1"}"#.into()
            })
        );
        let missing = parse(r#"{"event":"pusher:signin","data":{"auth":"k:s"}}"#).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("Invalid pusher:signin data: missing field `user_data`"),
            "{missing}"
        );
    }

    #[test]
    fn client_events_keep_their_data_as_sent() {
        let frame = r#"{"event":"client-typing","channel":"private-chat","data":{"who": "ann", "n": [1, 2]}}"#;
        assert_eq!(
            parse(frame),
            Ok(ClientMessage::ClientEvent {
                event: "client-typing".into(),
                channel: "private-chat".into(),
                data: raw(r#"{"who": "ann", "n": [1, 2]}"#),
            })
        );
        let Ok(ClientMessage::ClientEvent { data, .. }) =
            parse(r#"{"event":"client-x","channel":"private-a","data":"hi"}"#)
        else {
            panic!()
        };
        assert_eq!(data.get(), r#""hi""#);
        let Ok(ClientMessage::ClientEvent { data, .. }) = parse(r#"{"event":"client-x","channel":"private-a"}"#) else {
            panic!()
        };
        assert_eq!(data.get(), "null");
        assert_eq!(
            parse(r#"{"event":"client-x","data":{}}"#),
            Err(ParseError::MissingChannel("client-x".into()))
        );
        let long = format!(r#"{{"event":"client-{}","channel":"private-a"}}"#, "x".repeat(200));
        assert!(matches!(
            parse(&long),
            Err(ParseError::InvalidEventName(NameError::TooLong { .. }))
        ));
        assert!(matches!(
            parse(r#"{"event":"client-x","channel":"bad channel"}"#),
            Err(ParseError::InvalidChannel { .. })
        ));
    }

    #[test]
    fn anything_else_is_a_typed_error_with_pushers_message() {
        for bad in [
            "",
            "nope",
            "[]",
            "42",
            r#""pusher:ping""#,
            r#"{"event":7}"#,
            "{\"event\":\"pusher:ping\"",
        ] {
            assert_eq!(parse(bad), Err(ParseError::InvalidJson), "{bad}");
        }
        assert_eq!(parse(r#"{"data":{}}"#), Err(ParseError::MissingEvent));
        let err = parse(r#"{"event":"subscribe","data":{"channel":"x"}}"#).unwrap_err();
        assert_eq!(err.to_string(), "Unsupported event received on socket: subscribe");
        for event in [
            "pusher:connection_established",
            "pusher_internal:subscription_succeeded",
            "my-event",
        ] {
            let frame = format!(r#"{{"event":"{event}","channel":"x","data":{{}}}}"#);
            assert_eq!(parse(&frame), Err(ParseError::UnsupportedEvent(event.into())));
        }
    }
}
