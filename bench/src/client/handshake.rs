//! The HTTP/1.1 upgrade (RFC 6455 §4), as pure functions over bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID every server appends to the key before hashing it (RFC 6455 §1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Upper bound on the server's response head: anything longer is not a WebSocket server.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Returns a random `Sec-WebSocket-Key`: 16 bytes, base64-encoded.
pub fn new_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// The `Sec-WebSocket-Accept` value a server must answer `key` with.
pub fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Builds the upgrade request. `host` is the `Host` header value, `path` includes any query.
pub fn request(host: &str, path: &str, key: &str, origin: Option<&str>) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        req.push_str(&format!("Origin: {origin}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Length of the response head (through the blank line), once `buf` holds all of it.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks a complete response head: status 101, `Upgrade: websocket`, and the accept hash.
///
/// # Errors
/// Says what the server answered instead, so that a wrong path (404) or a non-WebSocket port is
/// obvious from the message.
pub fn check_response(head: &[u8], key: &str) -> anyhow::Result<()> {
    let text = std::str::from_utf8(head).map_err(|_| anyhow::anyhow!("upgrade response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 ") && code == "101",
        "server refused the upgrade: {status:?}"
    );
    let mut upgrade = false;
    let mut accept = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            anyhow::bail!("server negotiated an extension that was not offered: {value}");
        }
    }
    anyhow::ensure!(upgrade, "101 response without `Upgrade: websocket`");
    let expected = expected_accept(key);
    anyhow::ensure!(
        accept == Some(expected.as_str()),
        "Sec-WebSocket-Accept is {accept:?}, expected {expected:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_example() {
        assert_eq!(
            expected_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn checks_the_response() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n\
                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_len(ok), Some(ok.len()));
        check_response(ok, key).unwrap();
        let not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(check_response(not_found, key).unwrap_err().to_string().contains("404"));
        let bad_accept = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(check_response(bad_accept, key).is_err());
    }
}
