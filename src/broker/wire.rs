//! What travels through Redis: key and channel names, the publish script,
//! and the JSON of published messages and presence events.

use serde::{Deserialize, Serialize};

/// Channel patterns every node subscribes to.
pub(super) const PATTERNS: [&str; 3] = ["wshub:msg:*", "wshub:bin:*", "wshub:presence:*"];

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

pub(super) fn presence_channel(room: &str) -> String {
    format!("wshub:presence:{room}")
}

/// Assigns the room's next id, appends to its stream (trimmed to about
/// `ARGV[1]` entries) and publishes, atomically: stream order, id order and
/// publish order are one order. Ids and timestamps travel as strings, as
/// Lua's JSON encoder would print large numbers in exponent form.
pub(super) const PUBLISH_SCRIPT: &str = r#"
local id = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id .. '-1', 'ts', ARGV[2], 'nick', ARGV[3], 'text', ARGV[4])
local message = {id = tostring(id), ts = ARGV[2], nick = ARGV[3], text = ARGV[4]}
if ARGV[6] ~= '' then message['ref'] = ARGV[6] end
redis.call('PUBLISH', ARGV[5], cjson.encode(message))
return id
"#;

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
    pub text: String,
    #[serde(default, rename = "ref")]
    pub client_ref: Option<String>,
}

/// A presence event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WirePresence {
    /// "joined" or "left".
    pub kind: String,
    pub nick: String,
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
}
