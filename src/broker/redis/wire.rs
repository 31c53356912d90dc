//! What travels through Redis: key and channel names, the publish script,
//! and the JSON of published messages and presence events.

use serde::{Deserialize, Serialize};

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

/// The room's members on every node, counted: what says, once for the
/// cluster, that a room got its first member or lost its last.
pub(super) fn subscriptions_key(room: &str) -> String {
    format!("wshub:{{{room}}}:subscriptions")
}

/// A presence room's users and each one's connections, on every node.
pub(super) fn users_key(room: &str) -> String {
    format!("wshub:{{{room}}}:users")
}

pub(super) fn node_rooms_key(node: &str) -> String {
    format!("wshub:node:{node}:rooms")
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
/// control character, and a presence user's `user_info` is JSON, which
/// escapes them, so the first one found is the separator. A presence
/// channel's user (Pusher) has its own, so that whoever removes the member
/// (a node that outlived it) uncounts it as what it was.
const USER_SEPARATOR: char = '\u{1f}';
const PRESENCE_USER_SEPARATOR: char = '\u{1e}';

/// A member as the presence hashes keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberValue<'a> {
    /// The nickname (a presence user's `user_info`).
    pub nick: &'a str,
    /// The user id, if any.
    pub user: Option<&'a str>,
    /// Counted among a presence channel's users.
    pub presence: bool,
}

impl MemberValue<'_> {
    /// A presence hash value: the nickname, and the user id when there is one.
    pub(super) fn encode(&self) -> String {
        match self.user {
            Some(user) if self.presence => format!("{}{PRESENCE_USER_SEPARATOR}{user}", self.nick),
            Some(user) => format!("{}{USER_SEPARATOR}{user}", self.nick),
            None => self.nick.to_owned(),
        }
    }

    /// The member a presence hash value describes.
    pub(super) fn parse(value: &str) -> MemberValue<'_> {
        match value.find([USER_SEPARATOR, PRESENCE_USER_SEPARATOR]) {
            Some(at) => MemberValue {
                nick: &value[..at],
                user: Some(&value[at + 1..]),
                presence: value[at..].starts_with(PRESENCE_USER_SEPARATOR),
            },
            None => MemberValue {
                nick: value,
                user: None,
                presence: false,
            },
        }
    }
}

/// Records a member joining (`ARGV[1]` = `1`) or leaving (`0`) a room on a
/// node, counts the room's members and a presence user's connections
/// across the cluster, and publishes the change with the counts after it,
/// atomically: so exactly one node sees a room's first member arrive (or
/// its last leave), and a user's, whatever the nodes do at once. A change
/// that changes nothing (a member recorded again after a reconnect, or
/// removed twice) is neither counted nor published.
///
/// KEYS: the node's members of the room, the room's count, its users.
/// ARGV: joined, conn, the member's value, its presence user (`''`: none),
/// the keys' TTL, the presence channel, and the published JSON without its
/// closing brace (the counts are appended).
pub(super) const PRESENCE_SCRIPT: &str = r#"
local changed
if ARGV[1] == '1' then
  changed = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
else
  changed = redis.call('HDEL', KEYS[1], ARGV[2])
end
if changed == 0 then return 0 end
local step = 1
if ARGV[1] ~= '1' then step = -1 end
local subscriptions = redis.call('INCRBY', KEYS[2], step)
if subscriptions <= 0 then
  redis.call('DEL', KEYS[2])
  subscriptions = 0
else
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
local connections = 0
if ARGV[4] ~= '' then
  connections = redis.call('HINCRBY', KEYS[3], ARGV[4], step)
  if connections <= 0 then
    redis.call('HDEL', KEYS[3], ARGV[4])
    connections = 0
  end
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('PUBLISH', ARGV[6], ARGV[7] .. ',"subscriptions":' .. subscriptions .. ',"connections":' .. connections .. '}')
return 1
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

/// A presence event, as [`PRESENCE_SCRIPT`] publishes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WirePresence {
    /// "joined" or "left".
    pub kind: String,
    pub nick: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The member's node.
    pub node: String,
    /// The node that recorded the change: the member's own, or one that
    /// removed the members of a node that stopped beating. It reports the
    /// change to the app (webhooks), once for the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The member's connection number on its node, in decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// A presence channel's user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
    /// The room's members on every node after the change (the script adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
    /// The user's connections on every node after it (0 without a presence user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
}

impl WirePresence {
    /// The JSON the script completes with the counts: without them and
    /// without its closing brace.
    pub(super) fn head(&self) -> String {
        let mut json = serde_json::to_string(self).expect("a presence event serializes");
        json.pop();
        json
    }
}

/// What a pub/sub channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carried {
    /// Text messages, numbered (JSON, [`WireMessage`]).
    Message,
    /// Raw binary payloads.
    Binary,
    /// Pusher client events ([`signal_message`]).
    Signal,
    /// Presence events ([`WirePresence`]).
    Presence,
    /// A user's signed-in connections to close (no payload; the "room" is
    /// the user's key).
    Terminate,
}

impl Carried {
    const ALL: [Carried; 5] = [
        Carried::Message,
        Carried::Binary,
        Carried::Signal,
        Carried::Presence,
        Carried::Terminate,
    ];

    fn part(self) -> &'static str {
        match self {
            Carried::Message => "msg",
            Carried::Binary => "bin",
            Carried::Signal => "sig",
            Carried::Presence => "presence",
            Carried::Terminate => "terminate",
        }
    }
}

/// The pub/sub channels of one cluster. Keys live in the URL's database,
/// but Redis pub/sub ignores database numbers: without the number in the
/// channel names, two clusters on `redis://host/0` and `redis://host/1`
/// would hear each other's messages (and drop their own as repeats).
/// Database 0 keeps the names nodes have always used.
#[derive(Debug, Clone)]
pub(super) struct Channels {
    prefix: String,
}

impl Channels {
    /// The channels of the cluster on database `db`.
    pub(super) fn of_database(db: i64) -> Channels {
        let prefix = if db == 0 {
            "wshub:".to_owned()
        } else {
            format!("wshub:db{db}:")
        };
        Channels { prefix }
    }

    /// The channel that carries `what` for `room`.
    pub(super) fn of(&self, what: Carried, room: &str) -> String {
        format!("{}{}:{room}", self.prefix, what.part())
    }

    /// The patterns a node subscribes to.
    pub(super) fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        Carried::ALL.into_iter().map(|what| self.of(what, "*"))
    }

    /// What `channel` carries, and for which room.
    pub(super) fn parse<'a>(&self, channel: &'a str) -> Option<(Carried, &'a str)> {
        let rest = channel.strip_prefix(self.prefix.as_str())?;
        let (part, room) = rest.split_once(':')?;
        let what = Carried::ALL.into_iter().find(|what| what.part() == part)?;
        Some((what, room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag_per_room() {
        assert_eq!(seq_key("lobby"), "wshub:{lobby}:seq");
        assert_eq!(log_key("lobby"), "wshub:{lobby}:log");
        let zero = Channels::of_database(0);
        assert_eq!(zero.of(Carried::Message, "a.b"), "wshub:msg:a.b");
        assert_eq!(zero.parse("wshub:msg:a.b"), Some((Carried::Message, "a.b")));
        assert_eq!(zero.parse("wshub:presence:a:b"), Some((Carried::Presence, "a:b")));
        let three = Channels::of_database(3);
        assert_eq!(three.of(Carried::Binary, "r"), "wshub:db3:bin:r");
        assert_eq!(three.parse("wshub:db3:sig:r"), Some((Carried::Signal, "r")));
        assert_eq!(three.parse("wshub:sig:r"), None, "another database's channel");
        assert_eq!(zero.parse("wshub:db3:sig:r"), None);
        assert_eq!(three.patterns().collect::<Vec<_>>()[3], "wshub:db3:presence:*");
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
        let ann = MemberValue {
            nick: "ann",
            user: None,
            presence: false,
        };
        assert_eq!(ann.encode(), "ann");
        assert_eq!(MemberValue::parse("ann"), ann);
        let dana = MemberValue {
            nick: "Dana",
            user: Some("u\u{1f}42"),
            presence: false,
        };
        assert_eq!(MemberValue::parse(&dana.encode()), dana);
        let info = MemberValue {
            nick: r#"{"name":"Eve\u001f"}"#,
            user: Some("7"),
            presence: true,
        };
        assert_eq!(MemberValue::parse(&info.encode()), info);
    }

    #[test]
    fn the_script_completes_a_presence_event_with_its_counts() {
        let event = WirePresence {
            kind: "joined".into(),
            nick: "ann".into(),
            user: None,
            node: "a".into(),
            by: Some("a".into()),
            conn: Some("7".into()),
            presence: false,
            subscriptions: None,
            connections: None,
        };
        let published = format!("{},\"subscriptions\":2,\"connections\":0}}", event.head());
        let back: WirePresence = serde_json::from_str(&published).expect("JSON");
        assert_eq!(back.subscriptions, Some(2));
        assert_eq!(back.conn.as_deref(), Some("7"));
    }
}
