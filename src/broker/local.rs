//! The broker of a single process: the history store orders each room's
//! messages (it gives the ids), and the hub carries them to every worker
//! that has members. Answers come at once, except the history reads that
//! need the database, which come from the history's reader thread.

use super::{Body, Broker, ClusterStatus, ListedMember, MemberInfo, Ordered, Pending, Publication, Replayed};
use super::{RoomName, Span, Then};
use crate::history::{Answer, History};

/// Orders messages in this process, through its history store.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    history: History,
}

impl LocalBroker {
    /// A broker that numbers and keeps messages in `history`.
    pub fn new(history: History) -> Self {
        LocalBroker { history }
    }

    /// A read from memory at once, or from SQLite on the history's reader
    /// thread: never on the worker that asks, which runs connections.
    fn read(&self, room: &str, span: Span) -> Answer<Replayed> {
        match span {
            Span::Latest(n) => self.history.recent_or_later(room, n).map(|entries| Replayed {
                entries,
                ..Replayed::default()
            }),
            Span::After(id, limit) => self.history.since_or_later(room, id, limit).map(|since| {
                let (entries, truncated) = since.into_parts();
                Replayed {
                    entries,
                    truncated,
                    ..Replayed::default()
                }
            }),
        }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, room: &RoomName, message: Publication<'_>) -> Ordered {
        match message.body {
            Body::Text(text) => Ordered::Now(Some(self.history.append_event(
                room,
                message.nick,
                message.user,
                message.event,
                text,
            ))),
            Body::Binary(_) | Body::Signal(_) => Ordered::Now(None),
        }
    }

    fn joined(&self, _room: &RoomName, _member: &MemberInfo) {}

    fn left(&self, _room: &RoomName, _member: &MemberInfo) {}

    fn replay(&self, room: &RoomName, span: Span, then: Then<Replayed>) -> Result<Replayed, Pending> {
        match self.read(room, span) {
            Answer::Now(replayed) => Ok(replayed),
            Answer::Later(deferred) => match deferred.then(then) {
                Ok(()) => Err(Pending),
                // Too many reads wait for the disk: said, not waited for.
                Err(_) => Ok(Replayed::unavailable(span)),
            },
        }
    }

    fn history(&self, room: &RoomName, span: Span, then: Then<Replayed>) {
        match self.read(room, span) {
            Answer::Now(replayed) => then(replayed),
            Answer::Later(deferred) => {
                if let Err(then) = deferred.then(then) {
                    then(Replayed::unavailable(span));
                }
            }
        }
    }

    fn members(&self, _room: &RoomName, _then: Then<Option<Vec<ListedMember>>>) -> bool {
        false
    }

    fn rooms(&self, _prefix: &str, _then: Then<Option<Vec<RoomName>>>) -> bool {
        false
    }

    fn room_closed(&self, room: &RoomName) {
        self.history.evict_cache(room);
    }

    fn terminate(&self, _key: &RoomName) {}

    fn cluster(&self) -> Option<ClusterStatus> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::history::{Backend, HistoryConfig};

    fn broker() -> LocalBroker {
        let config = HistoryConfig {
            backend: Backend::Memory,
            ..Default::default()
        };
        LocalBroker::new(History::open(config).expect("memory history"))
    }

    #[test]
    fn text_is_numbered_in_order_and_binary_is_relayed_without_an_id() {
        let broker = broker();
        let room: RoomName = Arc::from("lobby");
        let nick: Arc<str> = Arc::from("ann");
        let text = |t| Publication {
            nick: &nick,
            user: None,
            body: Body::Text(t),
            client_ref: None,
            event: None,
            except: 0,
        };
        let ids: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|t| match broker.publish(&room, text(t)) {
                Ordered::Now(Some(entry)) => entry.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        let binary = Publication {
            body: Body::Binary(b"\x01"),
            ..text("")
        };
        assert!(matches!(broker.publish(&room, binary), Ordered::Now(None)));
        let after = broker
            .replay(&room, Span::After(1, 10), Box::new(|_| {}))
            .expect("at hand");
        assert_eq!(after.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
        let latest = broker
            .replay(&room, Span::Latest(1), Box::new(|_| {}))
            .expect("at hand");
        assert_eq!(&*latest.entries[0].text, "c");
    }
}
