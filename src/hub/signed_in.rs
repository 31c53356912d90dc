//! Connections signed in as a user (Pusher's `pusher:signin`), by user:
//! what the app closes when it terminates the user's connections. Not the
//! members of the user's channel (`#server-to-user-{id}`): a connection
//! can sign in and never subscribe to it, or leave it, and must still be
//! closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::{lock, Hub, Outbox};
use crate::broker::RoomName;

/// The signed-in connections of every user, by the user's key (its user
/// channel's room name, which holds the app).
#[derive(Debug, Default)]
pub(crate) struct SignedInUsers {
    by_user: Mutex<HashMap<Arc<str>, Vec<Connection>>>,
}

/// A signed-in connection: its number, and its outbox while it lives.
type Connection = (u64, Weak<Outbox>);

/// A connection's sign-in, recorded while it lives (or until it signs in
/// again).
#[derive(Debug)]
pub struct SignedIn {
    hub: Hub,
    key: Arc<str>,
    conn: u64,
    user: Box<str>,
}

impl SignedIn {
    /// The user id it signed in as.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for SignedIn {
    fn drop(&mut self) {
        let mut users = lock(&self.hub.inner.signed_in.by_user);
        if let Some(conns) = users.get_mut(&self.key) {
            conns.retain(|(conn, _)| *conn != self.conn);
            if conns.is_empty() {
                users.remove(&self.key);
            }
        }
    }
}

impl Hub {
    /// Records that the connection of `outbox` signed in as `user`, under
    /// `key` (see `SignedInUsers`).
    pub fn sign_in(&self, key: &str, user: &str, outbox: &Arc<Outbox>) -> SignedIn {
        let key: Arc<str> = Arc::from(key);
        let conn = outbox.number();
        lock(&self.inner.signed_in.by_user)
            .entry(Arc::clone(&key))
            .or_default()
            .push((conn, Arc::downgrade(outbox)));
        SignedIn {
            hub: self.clone(),
            key,
            conn,
            user: user.into(),
        }
    }

    /// The app closes the connections signed in under `key`, on every node:
    /// told why (`pusher:error` 4009), then closed with 4009, after which
    /// pusher-js does not reconnect. How many there were on this node.
    pub fn terminate_user(&self, key: &str) -> usize {
        let closed = self.close_signed_in(key);
        self.inner.broker.terminate(&RoomName::from(key));
        closed
    }

    /// Closes this node's connections signed in under `key`.
    pub(crate) fn close_signed_in(&self, key: &str) -> usize {
        let (frame, close) = super::pusher::terminated();
        let outboxes: Vec<Arc<Outbox>> = lock(&self.inner.signed_in.by_user)
            .get(key)
            .map(|conns| conns.iter().filter_map(|(_, outbox)| outbox.upgrade()).collect())
            .unwrap_or_default();
        for outbox in &outboxes {
            let _ = outbox.push(frame.clone());
            outbox.request_close(close.clone());
        }
        outboxes.len()
    }
}
