//! What a webhook reports: one [`Event`], serialized the way Pusher
//! serializes it inside a webhook's `events` array.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Something that happened on a channel, for the app's backend.
///
/// Serialized as Pusher does (its webhooks page, and its announcement of the
/// `client_event` webhook): an object whose `name` is the kind and whose
/// other fields are the variant's, e.g.
/// `{"name":"member_added","channel":"presence-x","user_id":"7"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Event {
    /// A channel got its first subscriber. With several nodes, sent by one
    /// node only (see the module's "Exactly once per cluster").
    ChannelOccupied {
        /// The channel's name.
        channel: String,
    },
    /// A channel lost its last subscriber (same rule as occupied).
    ChannelVacated {
        /// The channel's name.
        channel: String,
    },
    /// A user joined a presence channel: their first connection there (a
    /// user with two connections is one member).
    MemberAdded {
        /// The presence channel's name.
        channel: String,
        /// The member's `user_id`.
        user_id: String,
    },
    /// A user left a presence channel: their last connection there went.
    MemberRemoved {
        /// The presence channel's name.
        channel: String,
        /// The member's `user_id`.
        user_id: String,
    },
    /// A client event was sent on a private or presence channel.
    ClientEvent {
        /// The channel it was sent on.
        channel: String,
        /// The event's name (`client-...`).
        event: String,
        /// The event's data as Pusher's webhook carries it: always a string
        /// (`"data":"{\"data\":1234}"` in Pusher's own example). Build it
        /// with [`Event::client_event`] from the JSON the client sent.
        data: String,
        /// The sender's socket id.
        socket_id: String,
        /// The sender's user id: Pusher sends it for presence channels only.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A client subscribed to a `cache-` channel that had no cached event.
    CacheMiss {
        /// The channel's name.
        channel: String,
    },
    /// A channel's number of subscriptions changed (Pusher sends it for
    /// every kind of channel but presence, whose members have their events).
    SubscriptionCount {
        /// The channel's name.
        channel: String,
        /// Subscriptions now, across the cluster.
        subscription_count: u64,
    },
}

impl Event {
    /// A [`Event::ClientEvent`] from the JSON text of the data the client
    /// sent: a JSON string is carried as its contents, anything else (an
    /// object, a number) as its JSON text, since Pusher's webhook always
    /// carries a string.
    pub fn client_event(
        channel: impl Into<String>,
        event: impl Into<String>,
        data_json: &str,
        socket_id: impl Into<String>,
        user_id: Option<String>,
    ) -> Event {
        let data = match serde_json::from_str::<String>(data_json) {
            Ok(text) => text,
            Err(_) => data_json.trim().to_owned(),
        };
        Event::ClientEvent {
            channel: channel.into(),
            event: event.into(),
            data,
            socket_id: socket_id.into(),
            user_id,
        }
    }

    /// Which kind of event this is, for a target's filter.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ChannelOccupied { .. } => EventKind::ChannelOccupied,
            Event::ChannelVacated { .. } => EventKind::ChannelVacated,
            Event::MemberAdded { .. } => EventKind::MemberAdded,
            Event::MemberRemoved { .. } => EventKind::MemberRemoved,
            Event::ClientEvent { .. } => EventKind::ClientEvent,
            Event::CacheMiss { .. } => EventKind::CacheMiss,
            Event::SubscriptionCount { .. } => EventKind::SubscriptionCount,
        }
    }

    /// The event's JSON object, as it goes into a webhook's `events`.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // A derived Serialize of strings and integers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The kinds of [`Event`], by the names Pusher gives them (`event_types` in
/// an app's webhook configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `channel_occupied`
    ChannelOccupied,
    /// `channel_vacated`
    ChannelVacated,
    /// `member_added`
    MemberAdded,
    /// `member_removed`
    MemberRemoved,
    /// `client_event`
    ClientEvent,
    /// `cache_miss`
    CacheMiss,
    /// `subscription_count`
    SubscriptionCount,
}

impl EventKind {
    /// Every kind, in Pusher's order.
    pub const ALL: [EventKind; 7] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
    ];

    /// The kind's name, as in the payload's `name` and in `event_types`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
        }
    }

    /// One bit per kind: a target's filter is a set of these.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name in `event_types` that is not one of Pusher's webhook events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook event type {0:?} (expected one of channel_occupied, channel_vacated, member_added, member_removed, client_event, cache_miss, subscription_count)")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownEventKind(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn as_value(event: &Event) -> Value {
        serde_json::from_slice(&event.to_json()).unwrap()
    }

    #[test]
    fn each_event_serializes_as_pusher_does() {
        let channel = || "presence-room".to_owned();
        let cases = [
            (
                Event::ChannelOccupied { channel: channel() },
                json!({"name": "channel_occupied", "channel": "presence-room"}),
            ),
            (
                Event::ChannelVacated { channel: channel() },
                json!({"name": "channel_vacated", "channel": "presence-room"}),
            ),
            (
                Event::MemberAdded {
                    channel: channel(),
                    user_id: "7".into(),
                },
                json!({"name": "member_added", "channel": "presence-room", "user_id": "7"}),
            ),
            (
                Event::MemberRemoved {
                    channel: channel(),
                    user_id: "7".into(),
                },
                json!({"name": "member_removed", "channel": "presence-room", "user_id": "7"}),
            ),
            (
                Event::CacheMiss {
                    channel: "cache-x".into(),
                },
                json!({"name": "cache_miss", "channel": "cache-x"}),
            ),
            (
                Event::SubscriptionCount {
                    channel: "lobby".into(),
                    subscription_count: 3,
                },
                json!({"name": "subscription_count", "channel": "lobby", "subscription_count": 3}),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(as_value(&event), expected, "{event:?}");
            assert_eq!(expected["name"], event.kind().as_str());
        }
    }

    #[test]
    fn a_client_event_carries_its_data_as_a_string_as_in_pushers_example() {
        let event = Event::client_event(
            "private-test_channel",
            "client-my_event",
            r#"{"data":1234}"#,
            "34718.5367461",
            None,
        );
        assert_eq!(
            as_value(&event),
            json!({
                "name": "client_event",
                "channel": "private-test_channel",
                "event": "client-my_event",
                "data": "{\"data\":1234}",
                "socket_id": "34718.5367461",
            })
        );
    }

    #[test]
    fn a_client_events_string_data_is_carried_as_its_contents_and_a_user_id_when_given() {
        let event = Event::client_event(
            "presence-a",
            "client-typing",
            r#""hello \"you\"""#,
            "1.2",
            Some("u1".into()),
        );
        assert_eq!(
            as_value(&event),
            json!({
                "name": "client_event",
                "channel": "presence-a",
                "event": "client-typing",
                "data": "hello \"you\"",
                "socket_id": "1.2",
                "user_id": "u1",
            })
        );
    }

    #[test]
    fn the_kinds_are_the_names_the_app_configuration_accepts() {
        assert_eq!(EventKind::ALL.map(EventKind::as_str), crate::apps::WEBHOOK_EVENTS);
    }

    #[test]
    fn kinds_parse_from_their_names_and_nothing_else() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert_eq!(
            "channel_existence".parse::<EventKind>(),
            Err(UnknownEventKind("channel_existence".into()))
        );
        assert!("Channel_Occupied".parse::<EventKind>().is_err());
        let bits: u8 = EventKind::ALL.iter().map(|k| k.bit()).fold(0, |a, b| a | b);
        assert_eq!(bits.count_ones(), 7, "one distinct bit per kind");
    }
}
