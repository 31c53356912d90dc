//! Messages into a room: ordered by the broker, then fanned out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use bytes::Bytes;

use super::{Order, Room};
use crate::broker::{Body, Delivery, Ordered, Publication, Unordered};
use crate::history::Entry;
use crate::hub::frames::{message_frame, text_frame};
use crate::hub::inbox::Forms;
use crate::hub::member::Member;
use crate::hub::pusher;
use crate::hub::{lock, Hub};
use crate::protocol::v1::ServerFrame;
use crate::protocol::{encode_frame, Message, MessageKind, OpCode};

impl Room {
    /// Publishes a message from the raw member `key` of `worker`: verbatim
    /// to raw members; text is also stored and sent as JSON, under the
    /// sender's nickname, to `wshub.v1` members.
    pub fn publish_raw(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, message: &Message) {
        let order = lock(&self.order);
        // The nickname is looked up here rather than kept by the connection:
        // a raw connection then carries no copy of its own.
        let (nick, user) = {
            let members = self.shard(worker);
            members
                .get(key)
                .map_or_else(|| (Arc::from(""), None), |m| (m.nick(), m.user()))
        };
        let body = match message.kind() {
            MessageKind::Binary => Body::Binary(message.payload()),
            MessageKind::Text => Body::Text(std::str::from_utf8(message.payload()).unwrap_or_default()),
        };
        let publication = Publication {
            nick: &nick,
            user: user.as_ref(),
            body,
            client_ref: None,
            event: None,
            except: 0,
        };
        let raw = Some(message.frame().clone());
        self.order_and_deliver(hub, order, publication, raw);
    }

    /// Publishes a message from a `wshub.v1` client: stored, then sent as
    /// JSON (with the sender's `ref`) and as plain text to raw members.
    pub fn publish_text(
        self: &Arc<Self>,
        hub: &Hub,
        nick: &Arc<str>,
        user: Option<&Arc<str>>,
        text: &str,
        client_ref: Option<String>,
    ) {
        let order = lock(&self.order);
        let raw = (order.raw > 0).then(|| encode_frame(OpCode::Text, text.as_bytes()));
        let publication = Publication {
            nick,
            user,
            body: Body::Text(text),
            client_ref: client_ref.as_deref(),
            event: None,
            except: 0,
        };
        self.order_and_deliver(hub, order, publication, raw);
    }

    /// Publishes a named event (the Pusher HTTP API's): stored and sent in
    /// every form, except to the connection whose sealed name is `except`
    /// (Pusher's `socket_id` exclusion, on whichever node it is; 0: none).
    /// False, with nothing published, when the room has closed.
    pub(crate) fn publish_event(
        self: &Arc<Self>,
        hub: &Hub,
        sender: &Arc<str>,
        event: &Arc<str>,
        data: &str,
        except: u64,
    ) -> bool {
        let order = lock(&self.order);
        if order.closed {
            return false;
        }
        let publication = Publication {
            nick: sender,
            user: None,
            body: Body::Text(data),
            client_ref: None,
            event: Some(event),
            except,
        };
        self.order_and_deliver(hub, order, publication, None);
        true
    }

    /// Relays a Pusher client event (`json`, the frame's text) to the
    /// room's other Pusher members on every node: not stored, not
    /// numbered, not sent to its sender (member `key` of `worker`, whose
    /// sealed name travels with it so that its own node leaves it out).
    pub(crate) fn relay(self: &Arc<Self>, hub: &Hub, worker: usize, key: usize, json: &str) {
        let order = lock(&self.order);
        let Some(except) = self.shard(worker).get(key).map(Member::conn) else {
            return;
        };
        let publication = Publication {
            nick: &self.name,
            user: None,
            body: Body::Signal(json.as_bytes()),
            client_ref: None,
            event: None,
            except: crate::hub::sealed::seal(except),
        };
        if let Ordered::Later = hub.broker().publish(&self.name, publication) {
            return;
        }
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        let forms = Forms {
            pusher: Some(encode_frame(OpCode::Text, json.as_bytes())),
            except,
            ..Forms::message()
        };
        self.fan_out(hub, &order, forms);
    }

    /// Has the broker order `publication` and delivers it now if it was
    /// ordered here (or cannot be carried: then on this node, unnumbered).
    fn order_and_deliver(
        self: &Arc<Self>,
        hub: &Hub,
        mut order: MutexGuard<'_, Order>,
        publication: Publication<'_>,
        raw: Option<Bytes>,
    ) {
        let except = excluded_here(publication.except);
        let client_ref = publication.client_ref.map(str::to_owned);
        let text = match publication.body {
            Body::Text(text) => Some(text),
            Body::Binary(_) | Body::Signal(_) => None,
        };
        let (nick, user) = (publication.nick.clone(), publication.user.cloned());
        let event = publication.event.cloned();
        let forms = match hub.broker().publish(&self.name, publication) {
            Ordered::Later => return,
            Ordered::Now(Some(entry)) => {
                order.last_delivered = order.last_delivered.max(entry.id);
                self.entry_forms(&order, &entry, client_ref, raw)
            }
            Ordered::Now(None) => Forms {
                raw,
                ..Forms::message()
            },
            Ordered::LocalOnly => match text {
                Some(text) => {
                    let entry = local_entry(nick, user, event, Arc::from(text));
                    self.entry_forms(&order, &entry, client_ref, raw)
                }
                None => Forms {
                    raw,
                    ..Forms::message()
                },
            },
        };
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        self.fan_out(hub, &order, Forms { except, ..forms });
    }

    /// The forms of `entry` for the members the room has (`raw`: the raw
    /// form when the caller has it already, the sender's own frame).
    fn entry_forms(&self, order: &Order, entry: &Entry, client_ref: Option<String>, raw: Option<Bytes>) -> Forms {
        let local = entry.id == 0;
        Forms {
            id: entry.id,
            raw: raw.or_else(|| (order.raw > 0).then(|| encode_frame(OpCode::Text, entry.text.as_bytes()))),
            json: (order.json() > 0).then(|| message_frame(&self.name, entry, client_ref, local)),
            pusher: (order.pusher > 0).then(|| pusher::entry_frame(&self.name, entry)),
            ..Forms::message()
        }
    }

    /// A message the broker carried, for this node's members, in the room's
    /// order (a repeated id is dropped).
    pub(crate) fn deliver(self: &Arc<Self>, hub: &Hub, delivery: Delivery) {
        let mut order = lock(&self.order);
        let forms = match delivery {
            Delivery::Text {
                entry,
                client_ref,
                except,
            } => {
                if entry.id <= order.last_delivered {
                    return;
                }
                order.last_delivered = entry.id;
                Forms {
                    except: excluded_here(except),
                    ..self.entry_forms(&order, &entry, client_ref, None)
                }
            }
            Delivery::LocalText(Unordered {
                nick,
                user,
                text,
                event,
                client_ref,
                except,
            }) => Forms {
                except: excluded_here(except),
                ..self.entry_forms(&order, &local_entry(nick, user, event, text), client_ref, None)
            },
            Delivery::Binary(payload) => Forms {
                raw: Some(encode_frame(OpCode::Binary, &payload)),
                ..Forms::message()
            },
            Delivery::Gap { first_available } => {
                let gap = crate::broker::Replayed {
                    truncated: Some(first_available),
                    ..Default::default()
                };
                Forms {
                    json: (order.json() > 0)
                        .then(|| text_frame(&ServerFrame::history_truncated(&self.name, first_available))),
                    pusher: (order.pusher > 0)
                        .then(|| pusher::replay_notice(&self.name, &gap))
                        .flatten(),
                    ..Forms::default()
                }
            }
            Delivery::Signal { payload, except } => {
                if order.pusher == 0 {
                    return;
                }
                Forms {
                    pusher: Some(encode_frame(OpCode::Text, &payload)),
                    except: excluded_here(except),
                    ..Forms::message()
                }
            }
        };
        hub.stats().published.fetch_add(1, Ordering::Relaxed);
        self.fan_out(hub, &order, forms);
    }
}

/// The connection of this node that a sealed name (0: none) leaves out; 0
/// when it is another node's.
fn excluded_here(sealed: u64) -> u64 {
    match sealed {
        0 => 0,
        sealed => crate::hub::sealed::open(sealed).unwrap_or(0),
    }
}

/// A message delivered on this node only (the broker could not carry it):
/// id 0, not in the shared history (its `wshub.v1` form is marked `local`).
fn local_entry(nick: Arc<str>, user: Option<Arc<str>>, event: Option<Arc<str>>, text: Arc<str>) -> Entry {
    Entry {
        id: 0,
        ts: crate::history::clock::unix_millis(),
        nick,
        user,
        text,
        event,
    }
}
