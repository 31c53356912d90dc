//! What travels through Redis: key and channel names, the publish script,
//! and the JSON of published messages and presence events.

use serde::{Deserialize, Serialize};

/// Channel patterns every node subscribes to.
pub(super) const PATTERNS: [&str; 4] = ["wshub:msg:*", "wshub:bin:*", "wshub:sig:*", "wshub:presence:*"];

/// Nodes and their last heartbeat (unix ms), a sorted set.
pub(super) const NODES: &str = "wshub:nodes";

/// `{room}` is a hash tag: all of a room's keys land on one Redis Cluster
/// slot, as the script needs.
pub(super) fn seq_key(room: &str) -> String {
    format!("wshub:{{{room}}}:seq")
}

pub(super) fn log_key(room: &str) -> String {
    format!("wshub:{{{room}}}:log")
}

pub(super) fn members_key(room: &str, node: &str) -> String {
    format!("wshub:{{{room}}}:members:{node}")
}

pub(super) fn node_rooms_key(node: &str) -> String {
    format!("wshub:node:{node}:rooms")
}

pub(super) fn message_channel(room: &str) -> String {
    format!("wshub:msg:{room}")
}

pub(super) fn binary_channel(room: &str) -> String {
    format!("wshub:bin:{room}")
}

pub(super) fn signal_channel(room: &str) -> String {
    format!("wshub:sig:{room}")
}

/// A signal as published: the sealed name of the connection to leave out
/// (8 bytes, big-endian; 0: none), then the payload as it is.
pub(super) fn signal_message(except: u64, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + payload.len());
    message.extend_from_slice(&except.to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// The connection left out and the payload of a published signal.
pub(super) fn parse_signal(message: &[u8]) -> Option<(u64, &[u8])> {
    let (except, payload) = message.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*except), payload))
}

pub(super) fn presence_channel(room: &str) -> String {
    format!("wshub:presence:{room}")
}

/// Assigns the room's next id, appends to its stream (trimmed to about
/// `ARGV[1]` entries) and publishes, atomically: stream order, id order and
/// publish order are one order. Ids and timestamps travel as strings, as
/// Lua's JSON encoder would print large numbers in exponent form. The
/// sender's user id (`ARGV[7]`, empty for none) is a `user` field of the
/// stream entry and of the published message only when there is one; so is
/// an event's name (`ARGV[8]`, an `event` field). A connection to leave
/// out (`ARGV[9]`, its sealed name in decimal, empty for none) is an
/// `except` field of the published message only: live delivery skips it,
/// history does not.
pub(super) const PUBLISH_SCRIPT: &str = r#"
local id = redis.call('INCR', KEYS[1])
local fields = {'ts', ARGV[2], 'nick', ARGV[3], 'text', ARGV[4]}
local message = {id = tostring(id), ts = ARGV[2], nick = ARGV[3], text = ARGV[4]}
if ARGV[7] ~= nil and ARGV[7] ~= '' then
  fields[#fields + 1] = 'user'
  fields[#fields + 1] = ARGV[7]
  message['user'] = ARGV[7]
end
if ARGV[8] ~= nil and ARGV[8] ~= '' then
  fields[#fields + 1] = 'event'
  fields[#fields + 1] = ARGV[8]
  message['event'] = ARGV[8]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-1', unpack(fields))
if ARGV[6] ~= '' then message['ref'] = ARGV[6] end
if ARGV[9] ~= nil and ARGV[9] ~= '' then message['except'] = ARGV[9] end
redis.call('PUBLISH', ARGV[5], cjson.encode(message))
return id
"#;

/// Separates a member's nickname from its user id in the presence hashes'
/// values (`nick` alone without a user id): a nickname never holds a
/// control character, so the first one found is this separator.
const USER_SEPARATOR: char = '\u{1f}';

/// A presence hash value: the nickname, and the user id when there is one.
pub(super) fn member_value(nick: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("{nick}{USER_SEPARATOR}{user}"),
        None => nick.to_owned(),
    }
}

/// The nickname and user id of a presence hash value.
pub(super) fn parse_member_value(value: &str) -> (&str, Option<&str>) {
    match value.split_once(USER_SEPARATOR) {
        Some((nick, user)) => (nick, Some(user)),
        None => (value, None),
    }
}

/// Raises a room's counter to at least `ARGV[1]` (after Redis lost its
/// data), never lowers it.
pub(super) const RAISE_SEQ_SCRIPT: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return current
"#;

/// A published chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WireMessage {
    pub id: String,
    pub ts: String,
    pub nick: String,
    #[serde(default)]
    pub user: Option<String>,
    pub text: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default, rename = "ref")]
    pub client_ref: Option<String>,
    /// A connection's sealed name in decimal (see `Publication::except`).
    #[serde(default)]
    pub except: Option<String>,
}

/// A presence event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WirePresence {
    /// "joined" or "left".
    pub kind: String,
    pub nick: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub node: String,
}

/// The room named by a channel, after its prefix.
pub(super) fn room_of<'a>(channel: &'a str, prefix: &str) -> Option<&'a str> {
    channel.strip_prefix(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag_per_room() {
        assert_eq!(seq_key("lobby"), "wshub:{lobby}:seq");
        assert_eq!(log_key("lobby"), "wshub:{lobby}:log");
        assert_eq!(room_of(&message_channel("a.b"), "wshub:msg:"), Some("a.b"));
    }

    #[test]
    fn a_signal_carries_its_exclusion_before_the_payload() {
        let message = signal_message(0x0102_0304_0506_0708, b"{\"event\":\"client-x\"}");
        assert_eq!(
            parse_signal(&message),
            Some((0x0102_0304_0506_0708, &b"{\"event\":\"client-x\"}"[..]))
        );
        assert_eq!(parse_signal(b"short"), None);
    }

    #[test]
    fn presence_values_carry_the_user_only_when_known() {
        assert_eq!(member_value("ann", None), "ann");
        assert_eq!(parse_member_value("ann"), ("ann", None));
        let value = member_value("Dana", Some("u\u{1f}42"));
        assert_eq!(parse_member_value(&value), ("Dana", Some("u\u{1f}42")));
    }
}
