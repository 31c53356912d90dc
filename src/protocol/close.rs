//! Close codes (RFC 6455 section 7.4) as a typed enum.

/// Why a connection is closed, as sent in a close frame.
///
/// Only the codes wshub itself sends have names; anything a peer sends is
/// carried as [`CloseCode::Other`] after [`CloseCode::is_allowed_from_peer`]
/// accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    Normal,
    /// 1001: the server is shutting down (or the peer navigates away).
    GoingAway,
    /// 1002: the peer broke the framing rules.
    ProtocolError,
    /// 1003: a data type the endpoint cannot accept.
    Unsupported,
    /// 1007: a text message that is not valid UTF-8.
    InvalidPayload,
    /// 1008: a policy was violated (slow consumer, rate limit, bad input).
    PolicyViolation,
    /// 1009: a message larger than `max_message_size`.
    MessageTooBig,
    /// 1011: the server hit an unexpected condition.
    InternalError,
    /// 1013: try again later (the server is overloaded).
    TryAgainLater,
    /// Any other code a peer may legally send (1010, 1012, 1014, 3000-4999).
    Other(u16),
}

impl CloseCode {
    /// The numeric code on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Other(code) => code,
        }
    }

    /// Maps a wire code to its name, keeping unknown ones as `Other`.
    pub fn from_u16(code: u16) -> CloseCode {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::Unsupported,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::MessageTooBig,
            1011 => CloseCode::InternalError,
            1013 => CloseCode::TryAgainLater,
            other => CloseCode::Other(other),
        }
    }

    /// Whether a peer may put this code in a close frame.
    ///
    /// 1004-1006 and 1015 are reserved for local use and must never travel;
    /// 1016-2999 are reserved for future RFCs; below 1000 and from 5000 up
    /// are not codes at all. A close frame carrying one of those fails the
    /// connection with 1002.
    pub fn is_allowed_from_peer(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_named_codes() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 3000] {
            assert_eq!(CloseCode::from_u16(code).as_u16(), code);
        }
    }

    #[test]
    fn rejects_reserved_and_out_of_range_codes() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode::is_allowed_from_peer(code), "{code}");
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::is_allowed_from_peer(code), "{code}");
        }
    }
}
