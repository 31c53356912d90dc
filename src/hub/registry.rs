//! Every live WebSocket connection, whatever its endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use slab::Slab;

use super::{lock, Hub};
use crate::connection::{CloseRequest, Outbox};

/// Which service a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /echo`.
    Echo,
    /// `GET /ws` and `/ws/{room}`: raw chat.
    Chat,
    /// Any chat path with the `wshub.v1` subprotocol.
    Protocol,
}

impl Endpoint {
    /// The name used in logs and `/healthz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Echo => "echo",
            Endpoint::Chat => "chat",
            Endpoint::Protocol => "protocol",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    connections: Mutex<Slab<Arc<Outbox>>>,
    reserved: AtomicUsize,
    echo: AtomicUsize,
    chat: AtomicUsize,
    protocol: AtomicUsize,
    max: usize,
}

impl Registry {
    pub(crate) fn new(max: usize) -> Self {
        Registry {
            connections: Mutex::new(Slab::new()),
            reserved: AtomicUsize::new(0),
            echo: AtomicUsize::new(0),
            chat: AtomicUsize::new(0),
            protocol: AtomicUsize::new(0),
            max,
        }
    }

    pub(crate) fn reserve(&self, hub: Hub, endpoint: Endpoint) -> Option<Ticket> {
        let taken = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        taken.ok()?;
        self.counter(endpoint).fetch_add(1, Ordering::Relaxed);
        Some(Ticket { hub, endpoint })
    }

    fn counter(&self, endpoint: Endpoint) -> &AtomicUsize {
        match endpoint {
            Endpoint::Echo => &self.echo,
            Endpoint::Chat => &self.chat,
            Endpoint::Protocol => &self.protocol,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let load = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
        (load(&self.echo), load(&self.chat), load(&self.protocol))
    }

    /// (total, longest) frames queued over all outboxes.
    pub(crate) fn queue_depth(&self) -> (usize, usize) {
        // Collect first, as `close_all` does: no outbox lock is taken under
        // the registry's lock.
        let outboxes: Vec<Arc<Outbox>> = lock(&self.connections).iter().map(|(_, o)| o.clone()).collect();
        outboxes
            .iter()
            .map(|o| o.queued())
            .fold((0, 0), |(sum, max), n| (sum + n, max.max(n)))
    }

    pub(crate) fn close_all(&self, request: CloseRequest) {
        // Collect first: closing wakes tasks, and none of that belongs under
        // the registry's lock.
        let outboxes: Vec<Arc<Outbox>> = lock(&self.connections).iter().map(|(_, o)| o.clone()).collect();
        for outbox in outboxes {
            outbox.request_close(request.clone());
        }
    }
}

/// A reserved connection slot; dropping it (a failed upgrade) frees it.
#[derive(Debug)]
pub struct Ticket {
    hub: Hub,
    endpoint: Endpoint,
}

impl Ticket {
    /// The endpoint this slot was reserved for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Registers the upgraded connection's outbox, so shutdown reaches it.
    pub fn register(self, outbox: Arc<Outbox>) -> Registration {
        let key = lock(&self.hub.registry().connections).insert(outbox);
        self.hub.metrics().connection_opened(self.endpoint);
        Registration { ticket: self, key }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let registry = self.hub.registry();
        registry.counter(self.endpoint).fetch_sub(1, Ordering::Relaxed);
        registry.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered connection; dropping it unregisters (every way out of a
/// connection's task drops it, so no exit path can leak a slot).
#[derive(Debug)]
pub struct Registration {
    ticket: Ticket,
    key: usize,
}

impl Registration {
    /// The hub this connection belongs to.
    pub fn hub(&self) -> &Hub {
        &self.ticket.hub
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.ticket.hub.registry().connections).try_remove(self.key);
    }
}
