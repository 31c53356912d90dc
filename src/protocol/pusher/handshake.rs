//! What the connection URL `/app/{key}?protocol=7&client=js&version=8.4.0`
//! must say about the protocol, and the error code when it does not.

use super::ErrorCode;

/// The oldest protocol version served: Pusher dropped 1 to 3, and wshub
/// speaks 7, which differs from 4 to 6 in nothing a client can see here
/// (version 5 added `pusher:ping`, 6 the close codes, 7 only a rename).
pub const MIN_PROTOCOL_VERSION: u32 = 4;

/// Checks the `protocol` query parameter.
///
/// # Errors
/// 4008 when it is missing, 4006 when it is not a number, 4007 when it is
/// a version not served: the connection is closed with that code.
pub fn check_protocol(protocol: Option<&str>) -> Result<u32, ErrorCode> {
    let text = protocol.ok_or(ErrorCode::NoProtocolVersion)?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::InvalidVersionFormat);
    }
    match text.parse::<u32>() {
        Ok(version) if (MIN_PROTOCOL_VERSION..=super::PROTOCOL_VERSION).contains(&version) => Ok(version),
        _ => Err(ErrorCode::UnsupportedProtocolVersion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions_4_to_7_are_served() {
        assert_eq!(check_protocol(Some("7")), Ok(7));
        assert_eq!(check_protocol(Some("4")), Ok(4));
        assert_eq!(check_protocol(None), Err(ErrorCode::NoProtocolVersion));
        for bad in ["", "seven", "7.0", "-7", " 7"] {
            assert_eq!(
                check_protocol(Some(bad)),
                Err(ErrorCode::InvalidVersionFormat),
                "{bad:?}"
            );
        }
        for old_or_new in ["3", "1", "8", "99999999999"] {
            assert_eq!(
                check_protocol(Some(old_or_new)),
                Err(ErrorCode::UnsupportedProtocolVersion)
            );
        }
    }
}
