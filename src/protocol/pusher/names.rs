//! Channel and event names: what Pusher accepts, and what a channel's name
//! says about it.
//!
//! From Pusher's "Channels" page
//! (<https://pusher.com/docs/channels/using_channels/channels#channel-naming-conventions>):
//! a channel name is at most 164 characters of `A-Z a-z 0-9 _ - = @ , . ;`,
//! and its prefix gives its kind: `private-`, `private-encrypted-`,
//! `presence-`, or none (public), each optionally with `cache-` after it
//! (`cache-`, `private-cache-`, `private-encrypted-cache-`,
//! `presence-cache-`). Names starting with `#` are Pusher's own, and so is
//! `server-to-user-`; one of them is for clients: `#server-to-user-{id}`,
//! which pusher-js subscribes to after `pusher:signin` to receive the
//! events the HTTP API sends to user `{id}` (a user id is any text, so the
//! alphabet does not apply there). Event names are at most 200 characters;
//! a client's must start with `client-`.

use thiserror::Error;

/// Longest channel name, in characters.
pub const MAX_CHANNEL_CHARS: usize = 164;

/// Longest event name, in characters.
pub const MAX_EVENT_CHARS: usize = 200;

/// What every event a client triggers must start with.
pub const CLIENT_EVENT_PREFIX: &str = "client-";

/// Who may subscribe, as the prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Anyone: no prefix.
    Public,
    /// `private-`: an `auth` signed by the app's server.
    Private,
    /// `private-encrypted-`: private, and its events' data is encrypted by
    /// the publisher for the subscribers (the server only relays it);
    /// clients cannot trigger events there.
    Encrypted,
    /// `presence-`: private, with a member list (`channel_data`).
    Presence,
    /// `#server-to-user-{id}`: the events sent to one user; only a
    /// connection signed in as that user may subscribe (no `auth`: the
    /// sign-in is the proof).
    User,
}

/// The prefix of a user's own channel.
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// A channel's kind and whether it is a cache channel (the last event is
/// kept and sent to each new subscriber, `pusher:cache_miss` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelType {
    /// Who may subscribe.
    pub kind: ChannelKind,
    /// A `cache-` channel.
    pub cache: bool,
}

impl ChannelType {
    /// What `name`'s prefix says (the name is not checked: see
    /// [`check_channel`]).
    pub fn of(name: &str) -> ChannelType {
        let (kind, rest) = if name.starts_with(USER_CHANNEL_PREFIX) {
            (ChannelKind::User, "")
        } else if let Some(rest) = name.strip_prefix("private-encrypted-") {
            (ChannelKind::Encrypted, rest)
        } else if let Some(rest) = name.strip_prefix("private-") {
            (ChannelKind::Private, rest)
        } else if let Some(rest) = name.strip_prefix("presence-") {
            (ChannelKind::Presence, rest)
        } else {
            (ChannelKind::Public, name)
        };
        ChannelType {
            kind,
            cache: rest.starts_with("cache-"),
        }
    }

    /// Whether subscribing takes an `auth`: private, encrypted and
    /// presence channels (a user channel takes the sign-in instead).
    pub fn needs_auth(self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
        )
    }

    /// The user whose channel `name` is (`#server-to-user-{id}`).
    pub fn user_of(name: &str) -> Option<&str> {
        name.strip_prefix(USER_CHANNEL_PREFIX).filter(|id| !id.is_empty())
    }

    /// Whether clients may trigger `client-` events here: private and
    /// presence channels only (not public ones, which nobody authorized,
    /// nor encrypted ones, whose data the clients cannot encrypt).
    pub fn allows_client_events(self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// Whether this channel has members (`channel_data` on subscribe).
    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }
}

/// Why a name is refused. The message is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// An empty channel or event name.
    #[error("{0} name cannot be empty")]
    Empty(&'static str),
    /// A channel name over 164 characters, or an event name over 200.
    #[error("{what} name is too long ({len} characters; at most {max})")]
    TooLong {
        /// `channel` or `event`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A channel name with a character outside `A-Z a-z 0-9 _ - = @ , . ;`.
    #[error("Invalid channel name '{0}': only A-Z a-z 0-9 _ - = @ , . ; are allowed")]
    InvalidChannel(String),
    /// A channel name Pusher keeps for itself (`#...`, `server-to-user-...`)
    /// other than a user channel.
    #[error("Channel name '{0}' is reserved")]
    Reserved(String),
    /// A client event whose name does not start with `client-`.
    #[error("Client event names must start with 'client-' (got '{0}')")]
    NotClientEvent(String),
}

/// Checks a channel name and tells its type.
///
/// # Errors
/// [`NameError`]: empty, too long, a character outside the alphabet (a
/// control character or no id in a user channel), or reserved.
pub fn check_channel(name: &str) -> Result<ChannelType, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty("channel"));
    }
    if let Some(user) = name.strip_prefix(USER_CHANNEL_PREFIX) {
        // Any user id, as pusher-js puts it there, but not an empty one
        // nor one that could break a log line.
        if user.is_empty() || user.chars().any(char::is_control) {
            return Err(NameError::InvalidChannel(name.to_owned()));
        }
        let len = name.chars().count();
        if len > MAX_CHANNEL_CHARS {
            return Err(NameError::TooLong {
                what: "channel",
                len,
                max: MAX_CHANNEL_CHARS,
            });
        }
        return Ok(ChannelType::of(name));
    }
    if name.starts_with('#') || name.starts_with("server-to-user-") {
        return Err(NameError::Reserved(name.to_owned()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';'))
    {
        return Err(NameError::InvalidChannel(name.to_owned()));
    }
    // All ASCII here: bytes are characters.
    if name.len() > MAX_CHANNEL_CHARS {
        return Err(NameError::TooLong {
            what: "channel",
            len: name.len(),
            max: MAX_CHANNEL_CHARS,
        });
    }
    Ok(ChannelType::of(name))
}

/// Checks an event name: 1 to 200 characters.
///
/// # Errors
/// [`NameError::Empty`] or [`NameError::TooLong`].
pub fn check_event(name: &str) -> Result<(), NameError> {
    let len = name.chars().count();
    if len == 0 {
        return Err(NameError::Empty("event"));
    }
    if len > MAX_EVENT_CHARS {
        return Err(NameError::TooLong {
            what: "event",
            len,
            max: MAX_EVENT_CHARS,
        });
    }
    Ok(())
}

/// Checks a client event's name: an event name starting with `client-`.
///
/// # Errors
/// [`NameError::NotClientEvent`], or [`check_event`]'s.
pub fn check_client_event(name: &str) -> Result<(), NameError> {
    if !name.starts_with(CLIENT_EVENT_PREFIX) {
        return Err(NameError::NotClientEvent(name.to_owned()));
    }
    check_event(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::*;

    fn of(name: &str) -> (ChannelKind, bool) {
        let t = check_channel(name).unwrap();
        (t.kind, t.cache)
    }

    #[test]
    fn the_prefix_gives_the_kind_and_cache() {
        assert_eq!(of("lobby"), (Public, false));
        assert_eq!(of("private-orders.1"), (Private, false));
        assert_eq!(of("private-encrypted-dm"), (Encrypted, false));
        assert_eq!(of("presence-room"), (Presence, false));
        assert_eq!(of("cache-prices"), (Public, true));
        assert_eq!(of("private-cache-x"), (Private, true));
        assert_eq!(of("private-encrypted-cache-x"), (Encrypted, true));
        assert_eq!(of("presence-cache-x"), (Presence, true));
        // A prefix only counts at the start, and exactly.
        assert_eq!(of("my-private-thing"), (Public, false));
        assert_eq!(of("privatechat"), (Public, false));
        assert_eq!(of("presence-private-x"), (Presence, false));
        assert_eq!(of("private-presence-x"), (Private, false));
        assert_eq!(of("cachex"), (Public, false));
    }

    #[test]
    fn what_each_kind_allows() {
        let t = |name| check_channel(name).unwrap();
        assert!(!t("lobby").needs_auth() && !t("lobby").allows_client_events());
        assert!(t("private-a").needs_auth() && t("private-a").allows_client_events());
        assert!(t("presence-a").is_presence() && t("presence-a").allows_client_events());
        let encrypted = t("private-encrypted-a");
        assert!(encrypted.needs_auth() && !encrypted.allows_client_events() && !encrypted.is_presence());
        assert!(!t("private-a").is_presence());
    }

    #[test]
    fn channel_names_keep_to_pushers_alphabet_and_length() {
        assert!(check_channel("a-Z_0=9@x,y.z;w").is_ok());
        assert!(check_channel(&"a".repeat(164)).is_ok());
        assert_eq!(
            check_channel(&"a".repeat(165)),
            Err(NameError::TooLong {
                what: "channel",
                len: 165,
                max: 164
            })
        );
        assert_eq!(check_channel(""), Err(NameError::Empty("channel")));
        for bad in ["with space", "a:b", "a/b", "é", "a*", "tab\t", "a\"b"] {
            assert_eq!(check_channel(bad), Err(NameError::InvalidChannel(bad.into())), "{bad}");
        }
        for reserved in ["server-to-user-1", "#x", "#server-to-user", "#private-x"] {
            assert_eq!(check_channel(reserved), Err(NameError::Reserved(reserved.into())));
        }
        let err = check_channel("a b").unwrap_err().to_string();
        assert_eq!(
            err,
            "Invalid channel name 'a b': only A-Z a-z 0-9 _ - = @ , . ; are allowed"
        );
    }

    #[test]
    fn a_users_channel_takes_any_user_id() {
        for name in [
            "#server-to-user-1",
            "#server-to-user-ann@example.com",
            "#server-to-user-a b+c/é",
        ] {
            let t = check_channel(name).unwrap();
            assert_eq!((t.kind, t.cache), (User, false), "{name}");
            assert!(!t.needs_auth() && !t.allows_client_events() && !t.is_presence());
        }
        assert_eq!(
            ChannelType::user_of("#server-to-user-ann@example.com"),
            Some("ann@example.com")
        );
        assert_eq!(ChannelType::user_of("#server-to-user-"), None);
        assert_eq!(ChannelType::user_of("private-ann"), None);
        for bad in ["#server-to-user-", "#server-to-user-a\nb"] {
            assert_eq!(
                check_channel(bad),
                Err(NameError::InvalidChannel(bad.into())),
                "{bad:?}"
            );
        }
        let long = format!("#server-to-user-{}", "u".repeat(149));
        assert!(matches!(check_channel(&long), Err(NameError::TooLong { len: 165, .. })));
    }

    #[test]
    fn event_names_are_at_most_200_characters_and_client_ones_say_so() {
        assert!(check_event(&"e".repeat(200)).is_ok());
        assert!(check_event(&"é".repeat(200)).is_ok(), "characters, not bytes");
        assert!(matches!(
            check_event(&"e".repeat(201)),
            Err(NameError::TooLong { len: 201, .. })
        ));
        assert_eq!(check_event(""), Err(NameError::Empty("event")));
        assert!(check_client_event("client-typing").is_ok());
        assert_eq!(
            check_client_event("typing"),
            Err(NameError::NotClientEvent("typing".into()))
        );
        let long = format!("client-{}", "e".repeat(194));
        assert!(matches!(check_client_event(&long), Err(NameError::TooLong { .. })));
    }
}
