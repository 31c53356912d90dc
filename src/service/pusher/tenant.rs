//! An app's channels as hub rooms.
//!
//! The first app configured shares the hub's rooms: its channel `lobby` is
//! the room `lobby` of raw and `wshub.v1` clients (one hub). Every other
//! app's channels live apart, as rooms named `{app_id}#{channel}`: `#` is
//! in no room or ordinary channel name, so no client of another app, or of
//! another protocol, can reach them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::apps::{App, Apps};

/// An app, where its channels are, and its connections.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The app.
    pub app: Arc<App>,
    shares_rooms: bool,
    connections: Arc<AtomicUsize>,
}

/// Every app's tenant, made once for the server.
#[derive(Debug, Clone, Default)]
pub struct Tenants(Arc<[Tenant]>);

impl Tenants {
    /// The tenants of `apps`: the first shares the hub's rooms.
    pub fn new(apps: &Apps) -> Self {
        let tenants = apps.iter().enumerate().map(|(index, app)| Tenant {
            app: app.clone(),
            shares_rooms: index == 0,
            connections: Arc::default(),
        });
        Tenants(tenants.collect())
    }

    /// The app whose key is `key`.
    pub fn by_key(&self, key: &str) -> Option<&Tenant> {
        self.0.iter().find(|t| t.app.key == key)
    }

    /// The app whose id is `id`.
    pub fn by_id(&self, id: &str) -> Option<&Tenant> {
        self.0.iter().find(|t| t.app.id == id)
    }
}

/// A connection counted against its app's `max_connections`, given back
/// when dropped.
#[derive(Debug)]
pub struct AppSlot(Arc<AtomicUsize>);

impl Drop for AppSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tenant {
    /// Counts one more connection of the app, if its quota allows it.
    pub fn admit(&self) -> Option<AppSlot> {
        let max = self.app.max_connections.unwrap_or(usize::MAX);
        let taken = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        taken.ok().map(|_| AppSlot(self.connections.clone()))
    }

    /// The app's live connections.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// The room behind `channel`.
    pub fn room(&self, channel: &str) -> String {
        if self.shares_rooms {
            channel.to_owned()
        } else {
            format!("{}#{channel}", self.app.id)
        }
    }

    /// The room of `user`'s own channel (`#server-to-user-{id}`): where
    /// events to the user go, and the key its signed-in connections are
    /// kept under.
    pub fn user_room(&self, user: &str) -> String {
        self.room(&format!("{}{user}", crate::protocol::pusher::USER_CHANNEL_PREFIX))
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
        let tenants = Tenants::new(&apps);
        let (one, two) = (tenants.by_id("one").expect("one"), tenants.by_key("k2").expect("two"));
        assert_eq!(one.room("lobby"), "lobby");
        assert_eq!(two.room("lobby"), "two#lobby");
        assert_eq!(one.channel("lobby"), Some("lobby"));
        assert_eq!(one.channel("two#lobby"), None);
        assert_eq!(one.channel("#server-to-user-7"), Some("#server-to-user-7"));
        assert_eq!(two.channel("two#lobby"), Some("lobby"));
        assert_eq!(two.channel("lobby"), None);
        assert_eq!(two.channel("two#x").map(|c| two.room(c)), Some("two#x".to_owned()));
    }

    #[test]
    fn an_app_admits_connections_up_to_its_quota_and_gets_them_back() {
        let mut app = App::new("one", "k1", "s1");
        app.max_connections = Some(2);
        let tenants = Tenants::new(&Apps::new([app]).expect("valid"));
        let tenant = tenants.by_id("one").expect("one");
        let (a, b) = (tenant.admit().expect("first"), tenant.admit().expect("second"));
        assert!(tenant.admit().is_none(), "over the quota");
        drop(a);
        assert_eq!(tenant.connections(), 1);
        assert!(tenant.admit().is_some());
        drop(b);
    }
}
