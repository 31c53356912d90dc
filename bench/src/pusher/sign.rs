//! Signatures the bench makes with the app's secret, as a backend would: channel auth for
//! private channels and signed HTTP API requests (Pusher's "authentication signatures";
//! the server side is wshub's `apps::request`).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `auth` of a `pusher:subscribe` to a private channel: `key:HMAC(socket_id:channel)`.
pub fn channel_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, format!("{socket_id}:{channel}").as_bytes())
    )
}

/// The signed query of an HTTP API request with `body` at `timestamp` (seconds since 1970).
/// The parameters are already in sorted order and need no escaping (hex and digits).
pub fn api_query(key: &str, secret: &str, method: &str, path: &str, body: &[u8], timestamp: u64) -> String {
    let mut query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0");
    if !body.is_empty() {
        query.push_str("&body_md5=");
        query.push_str(&hex::encode(Md5::digest(body)));
    }
    let signature = hmac_hex(secret, format!("{method}\n{path}\n{query}").as_bytes());
    format!("{query}&auth_signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_http_api_reference_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = api_query(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "POST",
            "/apps/3/events",
            body,
            1_353_088_179,
        );
        assert!(query.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"), "{query}");
        assert!(
            query.ends_with("auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"),
            "{query}"
        );
    }

    #[test]
    fn signs_the_channel_auth_example() {
        // Pusher's private-channel example (key 278d425bdf160c739803, socket 1234.1234).
        let auth = channel_auth(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
        );
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }
}
