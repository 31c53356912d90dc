//! Rooms' comings and goings as Pusher webhooks: `channel_occupied`,
//! `channel_vacated`, `member_added`, `member_removed`, `cache_miss`
//! (the session sends `client_event` itself, as only it knows the sender).
//!
//! The hub tells of rooms; a room is a channel of the app whose namespace
//! it is in (see [`super::Tenant`]). A user's own channel
//! (`#server-to-user-`) is no channel of Pusher's webhooks.

use crate::apps::{App, Apps};
use crate::hub::RoomEvents;
use crate::protocol::pusher::{ChannelKind, ChannelType};
use crate::webhooks::{Event, EventKind, Webhooks};

/// The webhooks of every app, fed by the hub.
#[derive(Debug, Clone)]
pub struct Hooks {
    apps: Apps,
    webhooks: Webhooks,
}

impl Hooks {
    /// Webhooks for `apps`' rooms.
    pub fn new(apps: Apps, webhooks: Webhooks) -> Self {
        Hooks { apps, webhooks }
    }

    /// The app and channel a room is.
    fn locate<'a>(&self, room: &'a str) -> Option<(&App, &'a str)> {
        let (app, channel) = match room.split_once('#') {
            Some((id, channel)) if !id.is_empty() => (self.apps.by_id(id)?, channel),
            _ => (self.apps.iter().next()?, room),
        };
        (ChannelType::of(channel).kind != ChannelKind::User).then_some((&**app, channel))
    }

    fn send(&self, room: &str, kind: EventKind, event: impl FnOnce(String) -> Event) {
        if let Some((app, channel)) = self.locate(room) {
            if self.webhooks.wants(&app.id, kind) {
                self.webhooks.send(&app.id, event(channel.to_owned()));
            }
        }
    }
}

impl RoomEvents for Hooks {
    fn occupied(&self, room: &str) {
        self.send(room, EventKind::ChannelOccupied, |channel| Event::ChannelOccupied {
            channel,
        });
    }

    fn vacated(&self, room: &str) {
        self.send(room, EventKind::ChannelVacated, |channel| Event::ChannelVacated {
            channel,
        });
    }

    fn user_added(&self, room: &str, user: &str) {
        let user_id = user.to_owned();
        self.send(room, EventKind::MemberAdded, |channel| Event::MemberAdded {
            channel,
            user_id,
        });
    }

    fn user_removed(&self, room: &str, user: &str) {
        let user_id = user.to_owned();
        self.send(room, EventKind::MemberRemoved, |channel| Event::MemberRemoved {
            channel,
            user_id,
        });
    }

    fn cache_missed(&self, room: &str) {
        self.send(room, EventKind::CacheMiss, |channel| Event::CacheMiss { channel });
    }

    fn counts_to_subscribers(&self, room: &str) -> bool {
        self.locate(room).is_some_and(|(app, channel)| {
            app.subscription_count && ChannelType::of(channel).kind != ChannelKind::Presence
        })
    }

    fn subscription_count(&self, room: &str, count: usize) {
        let subscription_count = count as u64;
        self.send(room, EventKind::SubscriptionCount, |channel| Event::SubscriptionCount {
            channel,
            subscription_count,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_the_channel_of_the_app_whose_namespace_it_is_in() {
        let apps = Apps::new([App::new("one", "k1", "s1"), App::new("two", "k2", "s2")]).expect("valid");
        let hooks = Hooks::new(apps, Webhooks::disabled());
        let located = |room| {
            hooks
                .locate(room)
                .map(|(app, channel)| (app.id.clone(), channel.to_owned()))
        };
        assert_eq!(located("lobby"), Some(("one".into(), "lobby".into())));
        assert_eq!(located("two#lobby"), Some(("two".into(), "lobby".into())));
        assert_eq!(located("three#lobby"), None, "no such app");
        assert_eq!(located("#server-to-user-ann"), None);
        assert_eq!(located("two##server-to-user-ann"), None);
    }

    #[test]
    fn subscribers_hear_the_count_where_their_app_asks_and_not_on_presence_channels() {
        let mut counting = App::new("one", "k1", "s1");
        counting.subscription_count = true;
        let apps = Apps::new([counting, App::new("two", "k2", "s2")]).expect("valid");
        let hooks = Hooks::new(apps, Webhooks::disabled());
        assert!(hooks.counts_to_subscribers("lobby"));
        assert!(hooks.counts_to_subscribers("private-x"));
        assert!(
            !hooks.counts_to_subscribers("presence-x"),
            "presence has its member events"
        );
        assert!(!hooks.counts_to_subscribers("#server-to-user-ann"));
        assert!(!hooks.counts_to_subscribers("two#lobby"), "the app did not ask");
    }
}
