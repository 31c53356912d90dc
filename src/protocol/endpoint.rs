//! Which service a connection uses: the label its metrics, logs and
//! `/healthz` counts carry. Here, among the pure types, so that metrics can
//! name it without depending on the hub that registers connections.

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
