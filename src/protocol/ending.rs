//! Why a connection ended: one value per way out, for the log and metrics.

use std::fmt;

use super::close::CloseCode;
use super::decoder::ProtocolError;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The client broke the protocol; we closed with the error's code.
    ProtocolViolation(ProtocolError),
    /// The client broke a rule of the chat protocol too often (1008).
    PolicyViolation(&'static str),
    /// The outbound queue overflowed: a slow consumer, closed with `code`.
    Evicted(CloseCode),
    /// The server was short of room for it (an unfinished message over
    /// `--max-incomplete-bytes`): closed with 1013 and this reason.
    Overloaded(&'static str),
    /// The server closed it (shutdown sends 1001), and the client answered.
    ServerClosed(CloseCode),
    /// Nothing arrived, not even a pong, within the read timeout.
    ReadTimeout,
    /// A write made no progress within the write timeout.
    WriteTimeout,
    /// We sent a close frame and the client did not answer in time.
    CloseTimeout(CloseCode),
    /// The TCP connection ended without a close frame.
    Dropped,
    /// A socket error (reset, broken pipe...).
    Io(std::io::ErrorKind),
    /// Shutdown's grace period ran out.
    Aborted,
}

impl Ending {
    /// The close code that went out (or came in), if any.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Ending::ClientClosed(code) => *code,
            Ending::ProtocolViolation(e) => Some(e.code.as_u16()),
            Ending::PolicyViolation(_) => Some(CloseCode::PolicyViolation.as_u16()),
            Ending::Overloaded(_) => Some(CloseCode::TryAgainLater.as_u16()),
            Ending::Evicted(code) | Ending::ServerClosed(code) | Ending::CloseTimeout(code) => Some(code.as_u16()),
            _ => None,
        }
    }

    /// Whether the ending is the client's doing or routine (logged at info)
    /// rather than something an operator may want to look at (warn).
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Ending::ClientClosed(_) | Ending::ServerClosed(_) | Ending::Dropped | Ending::Io(_)
        )
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::ClientClosed(Some(code)) => write!(f, "client closed ({code})"),
            Ending::ClientClosed(None) => write!(f, "client closed (no code)"),
            Ending::ProtocolViolation(e) => write!(f, "protocol violation: {e}"),
            Ending::PolicyViolation(reason) => write!(f, "policy violation: {reason} (1008)"),
            Ending::Evicted(code) => write!(f, "slow consumer evicted ({code})"),
            Ending::Overloaded(reason) => write!(f, "server overloaded: {reason} (1013)"),
            Ending::ServerClosed(code) => write!(f, "server closed ({code})"),
            Ending::ReadTimeout => write!(f, "read timeout"),
            Ending::WriteTimeout => write!(f, "write timeout"),
            Ending::CloseTimeout(code) => write!(f, "no close reply after sending {code}"),
            Ending::Dropped => write!(f, "connection dropped without close frame"),
            Ending::Io(kind) => write!(f, "socket error: {kind}"),
            Ending::Aborted => write!(f, "aborted at shutdown"),
        }
    }
}
