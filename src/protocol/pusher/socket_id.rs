//! The `socket_id` that names one connection to the app's servers.
//!
//! Pusher's clients treat it as opaque, but the app's server signs it into
//! every channel authorization and passes it to the HTTP API to exclude a
//! sender, and the `pusher` SDKs check that it looks like `\d+\.\d+`
//! (`/^\d+\.\d+$/`): two decimal numbers joined by a dot.

use std::fmt;
use std::str::FromStr;

/// Two numbers, written `first.second`: wshub puts the worker and the
/// connection's number there, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    /// The part before the dot.
    pub first: u64,
    /// The part after the dot.
    pub second: u64,
}

impl SocketId {
    /// The id `first.second`.
    pub fn new(first: u64, second: u64) -> SocketId {
        SocketId { first, second }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.first, self.second)
    }
}

/// A `socket_id` that is not two decimal numbers joined by a dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid socket id: expected two numbers joined by a dot, like 1234.5678")]
pub struct InvalidSocketId;

impl FromStr for SocketId {
    type Err = InvalidSocketId;

    /// Parses what [`SocketId`]'s `Display` writes, and only that: no sign,
    /// no leading zero, nothing around it, so that equal ids are equal text.
    fn from_str(text: &str) -> Result<SocketId, InvalidSocketId> {
        let (first, second) = text.split_once('.').ok_or(InvalidSocketId)?;
        Ok(SocketId {
            first: number(first)?,
            second: number(second)?,
        })
    }
}

fn number(digits: &str) -> Result<u64, InvalidSocketId> {
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return Err(InvalidSocketId);
    }
    digits.parse().map_err(|_| InvalidSocketId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_two_numbers_and_parses_back() {
        let id = SocketId::new(1234, 5678);
        assert_eq!(id.to_string(), "1234.5678");
        assert_eq!("1234.5678".parse(), Ok(id));
        let extremes = SocketId::new(0, u64::MAX);
        assert_eq!(extremes.to_string().parse(), Ok(extremes));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1",
            "1.2.3",
            "a.1",
            "1.b",
            "+1.2",
            "-1.2",
            " 1.2",
            "1.2 ",
            "01.2",
            "1.02",
            "18446744073709551616.1",
            "1,2",
        ] {
            assert_eq!(bad.parse::<SocketId>(), Err(InvalidSocketId), "{bad:?}");
        }
    }
}
