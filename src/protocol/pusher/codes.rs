//! Pusher's error codes, which are also its WebSocket close codes.
//!
//! From the "Error Codes" and "Connection closure" sections of Pusher's
//! protocol page
//! (<https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol#error-codes>):
//! 4000-4099 mean the client must not reconnect unchanged, 4100-4199 that
//! it may reconnect after backing off (1 s at least), 4200-4299 that it may
//! reconnect at once; 4300-4399 are other errors, sent in `pusher:error`
//! without closing.

use crate::protocol::CloseCode;

/// What a client should do after a close with a code, by its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// 4000-4099: reconnecting with the same parameters will fail.
    Never,
    /// 4100-4199: reconnect after 1 s or more (backing off).
    AfterBackoff,
    /// 4200-4299: reconnect at once.
    Immediately,
    /// 4300-4399 and anything else: not a reason to close.
    NotApplicable,
}

/// A Pusher error code. The text of each is the spec's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 4000: Application only accepts SSL connections, reconnect using wss://
    SslOnly,
    /// 4001: Application does not exist (an unknown key in `/app/{key}`).
    AppDoesNotExist,
    /// 4003: Application disabled.
    AppDisabled,
    /// 4004: Application is over connection quota (its `max_connections`).
    OverConnectionQuota,
    /// 4005: Path not found.
    PathNotFound,
    /// 4006: Invalid version string format (`?protocol=` not a number).
    InvalidVersionFormat,
    /// 4007: Unsupported protocol version.
    UnsupportedProtocolVersion,
    /// 4008: No protocol version supplied.
    NoProtocolVersion,
    /// 4009: Connection is unauthorized (a user's connections terminated
    /// by the HTTP API).
    Unauthorized,
    /// 4100: Over capacity (the server is full: come back later).
    OverCapacity,
    /// 4200: Generic reconnect immediately (e.g. the server is restarting).
    ReconnectImmediately,
    /// 4201: Pong reply not received: ping was sent to the client, but no
    /// reply was received.
    PongNotReceived,
    /// 4202: Closed after inactivity.
    ClosedAfterInactivity,
    /// 4301: Client event rejected due to rate limit.
    ClientEventRateLimit,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::SslOnly,
        ErrorCode::AppDoesNotExist,
        ErrorCode::AppDisabled,
        ErrorCode::OverConnectionQuota,
        ErrorCode::PathNotFound,
        ErrorCode::InvalidVersionFormat,
        ErrorCode::UnsupportedProtocolVersion,
        ErrorCode::NoProtocolVersion,
        ErrorCode::Unauthorized,
        ErrorCode::OverCapacity,
        ErrorCode::ReconnectImmediately,
        ErrorCode::PongNotReceived,
        ErrorCode::ClosedAfterInactivity,
        ErrorCode::ClientEventRateLimit,
    ];

    /// The number, in `pusher:error` and in the close frame.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SslOnly => 4000,
            ErrorCode::AppDoesNotExist => 4001,
            ErrorCode::AppDisabled => 4003,
            ErrorCode::OverConnectionQuota => 4004,
            ErrorCode::PathNotFound => 4005,
            ErrorCode::InvalidVersionFormat => 4006,
            ErrorCode::UnsupportedProtocolVersion => 4007,
            ErrorCode::NoProtocolVersion => 4008,
            ErrorCode::Unauthorized => 4009,
            ErrorCode::OverCapacity => 4100,
            ErrorCode::ReconnectImmediately => 4200,
            ErrorCode::PongNotReceived => 4201,
            ErrorCode::ClosedAfterInactivity => 4202,
            ErrorCode::ClientEventRateLimit => 4301,
        }
    }

    /// The code named by `code`, if the spec names it.
    pub fn from_code(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The spec's text for it (the close reason and the error's message).
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::SslOnly => "Application only accepts SSL connections, reconnect using wss://",
            ErrorCode::AppDoesNotExist => "Application does not exist",
            ErrorCode::AppDisabled => "Application disabled",
            ErrorCode::OverConnectionQuota => "Application is over connection quota",
            ErrorCode::PathNotFound => "Path not found",
            ErrorCode::InvalidVersionFormat => "Invalid version string format",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
            ErrorCode::NoProtocolVersion => "No protocol version supplied",
            ErrorCode::Unauthorized => "Connection is unauthorized",
            ErrorCode::OverCapacity => "Over capacity",
            ErrorCode::ReconnectImmediately => "Generic reconnect immediately",
            ErrorCode::PongNotReceived => "Pong reply not received",
            ErrorCode::ClosedAfterInactivity => "Closed after inactivity",
            ErrorCode::ClientEventRateLimit => "Client event rejected due to rate limit",
        }
    }

    /// What a client does after a close with this code.
    pub fn reconnect(self) -> Reconnect {
        match self.code() {
            4000..=4099 => Reconnect::Never,
            4100..=4199 => Reconnect::AfterBackoff,
            4200..=4299 => Reconnect::Immediately,
            _ => Reconnect::NotApplicable,
        }
    }

    /// Whether the connection is closed with it (4000-4299); 4301 is only
    /// told, the connection stays.
    pub fn closes(self) -> bool {
        self.reconnect() != Reconnect::NotApplicable
    }

    /// The WebSocket close code carrying it.
    pub fn close_code(self) -> CloseCode {
        CloseCode::Other(self.code())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_specs_numbers_and_round_trip() {
        let numbers: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(
            numbers,
            [4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4100, 4200, 4201, 4202, 4301]
        );
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
            assert!(!code.message().is_empty());
            // A close reason must fit a control frame: 123 bytes.
            assert!(code.message().len() <= 123, "{code}");
            assert!(CloseCode::is_allowed_from_peer(code.close_code().as_u16()));
        }
        assert_eq!(ErrorCode::from_code(4002), None);
        assert_eq!(
            ErrorCode::AppDoesNotExist.to_string(),
            "4001 Application does not exist"
        );
    }

    #[test]
    fn the_range_tells_whether_to_reconnect() {
        assert_eq!(ErrorCode::AppDoesNotExist.reconnect(), Reconnect::Never);
        assert_eq!(ErrorCode::Unauthorized.reconnect(), Reconnect::Never);
        assert_eq!(ErrorCode::OverCapacity.reconnect(), Reconnect::AfterBackoff);
        assert_eq!(ErrorCode::PongNotReceived.reconnect(), Reconnect::Immediately);
        assert_eq!(ErrorCode::ClientEventRateLimit.reconnect(), Reconnect::NotApplicable);
        assert!(ErrorCode::OverConnectionQuota.closes());
        assert!(!ErrorCode::ClientEventRateLimit.closes());
    }
}
