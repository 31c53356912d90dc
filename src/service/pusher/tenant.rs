//! An app's channels as hub rooms.
//!
//! The first app configured shares the hub's rooms: its channel `lobby` is
//! the room `lobby` of raw and `wshub.v1` clients (one hub). Every other
//! app's channels live apart, as rooms named `{app_id}#{channel}`: `#` is
//! in no room or ordinary channel name, so no client of another app, or of
//! another protocol, can reach them.

use std::sync::Arc;

use crate::apps::{App, Apps};

/// An app, and where its channels are.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The app.
    pub app: Arc<App>,
    shares_rooms: bool,
}

impl Tenant {
    /// `app` of `apps`.
    pub fn of(apps: &Apps, app: Arc<App>) -> Self {
        let shares_rooms = apps.iter().next().is_some_and(|first| Arc::ptr_eq(first, &app));
        Tenant { app, shares_rooms }
    }

    /// The room behind `channel`.
    pub fn room(&self, channel: &str) -> String {
        if self.shares_rooms {
            channel.to_owned()
        } else {
            format!("{}#{channel}", self.app.id)
        }
    }

    /// The channel a room is, if it is one of this app's.
    pub fn channel<'a>(&self, room: &'a str) -> Option<&'a str> {
        if self.shares_rooms {
            // Another app's rooms hold `#` before the channel's name; a
            // user channel's `#` comes first.
            (!room.contains('#') || room.starts_with('#')).then_some(room)
        } else {
            room.strip_prefix(self.app.id.as_str())?.strip_prefix('#')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_app_shares_rooms_and_the_others_live_apart() {
        let apps = Apps::new([App::new("one", "k1", "s1"), App::new("two", "k2", "s2")]).expect("valid");
        let one = Tenant::of(&apps, apps.by_id("one").expect("one").clone());
        let two = Tenant::of(&apps, apps.by_id("two").expect("two").clone());
        assert_eq!(one.room("lobby"), "lobby");
        assert_eq!(two.room("lobby"), "two#lobby");
        assert_eq!(one.channel("lobby"), Some("lobby"));
        assert_eq!(one.channel("two#lobby"), None);
        assert_eq!(one.channel("#server-to-user-7"), Some("#server-to-user-7"));
        assert_eq!(two.channel("two#lobby"), Some("lobby"));
        assert_eq!(two.channel("lobby"), None);
        assert_eq!(two.channel("two#x").map(|c| two.room(c)), Some("two#x".to_owned()));
    }
}
