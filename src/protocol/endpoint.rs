//! Which service a connection uses: the label its metrics, logs and
//! `/healthz` counts carry. Here, among the pure types, so that metrics can
//! name it without depending on the hub that registers connections.

/// Which service a connection uses; each has one name, from the route's
/// service to the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /echo`.
    Echo,
    /// `GET /ws` and `/ws/{room}`: raw chat.
    Chat,
    /// Any chat path with the `wshub.v1` subprotocol.
    V1,
    /// `GET /app/{key}`: the Pusher Channels protocol.
    Pusher,
}

impl Endpoint {
    /// Every endpoint, in [`Endpoint::index`] order.
    pub const ALL: [Endpoint; 4] = [Endpoint::Echo, Endpoint::Chat, Endpoint::V1, Endpoint::Pusher];

    /// The name used in logs, metric labels and `/healthz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Echo => "echo",
            Endpoint::Chat => "chat",
            Endpoint::V1 => "v1",
            Endpoint::Pusher => "pusher",
        }
    }

    /// Its place in per-endpoint arrays; a match, so no lookup.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Endpoint::Echo => 0,
            Endpoint::Chat => 1,
            Endpoint::V1 => 2,
            Endpoint::Pusher => 3,
        }
    }
}
