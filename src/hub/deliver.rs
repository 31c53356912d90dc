//! The hub as a broker sees it: where carried messages, presence changes
//! and cluster notices go.

use super::{lock, Hub};
use crate::broker::{Deliver, Delivery, LocalRoom, PresenceChange};
use crate::protocol::v1::ServerFrame;

impl Deliver for Hub {
    fn deliver(&self, room: &str, delivery: Delivery) {
        if let Some(room) = self.room(room) {
            room.deliver(self, delivery);
        }
    }

    fn presence_changed(&self, room: &str, change: PresenceChange) {
        self.report_cluster_change(room, &change);
        if let Some(room) = self.room(room) {
            room.presence_changed(self, change);
        }
    }

    fn cluster_changed(&self, up: bool) {
        let notice = if up {
            ServerFrame::cross_node_restored()
        } else {
            ServerFrame::cross_node_interrupted()
        };
        self.notify_all(&notice);
    }

    fn terminate(&self, key: &str) {
        let closed = self.close_signed_in(key);
        if closed > 0 {
            tracing::info!(
                user = key,
                closed,
                "user's connections terminated by another node's app call"
            );
        }
    }

    fn local_rooms(&self) -> Vec<LocalRoom> {
        let rooms: Vec<_> = lock(&self.inner.rooms).values().cloned().collect();
        rooms
            .into_iter()
            .map(|room| LocalRoom {
                name: room.name().clone(),
                last_seen: room.last_seen(),
                members: room.member_infos(),
            })
            .collect()
    }
}
