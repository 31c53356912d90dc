//! HMAC-SHA256 signatures as Pusher defines them: channel authorization,
//! user authentication (`pusher:signin`) and webhooks.
//!
//! Every signature is the lowercase hex HMAC-SHA256 of a string, keyed by
//! the app's secret; an `auth` string a client presents is `key:signature`.
//! The strings signed are those of Pusher's "Generating authentication and
//! authorization strings" page
//! (<https://pusher.com/docs/channels/library_auth_reference/auth-signatures>),
//! whose worked examples are the tests below. Checks compare in constant
//! time ([`Mac::verify_slice`]), so a forger learns nothing from how long a
//! refusal takes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// An app's key and secret, which sign for it ([`super::App::credentials`]).
/// A pair of named fields rather than two `&str` arguments, which would be
/// too easy to swap.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The app's key: the first part of every `auth` string.
    pub key: &'a str,
    /// The app's secret: the HMAC key.
    pub secret: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why an `auth` string (channel or user) was refused. The WebSocket
/// service answers it with `pusher:subscription_error` (status 401) or a
/// `pusher:error`, and the subscription or sign-in does not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Not `key:signature` with a hex signature of the right length.
    #[error("Invalid auth: expected '<app key>:<HMAC SHA256 hex digest>'")]
    Malformed,
    /// The key part is not this app's key: the client's auth endpoint signs
    /// for another app.
    #[error("Invalid key in auth: it does not match this app's key")]
    WrongKey,
    /// The signature is not the one this app's secret makes of what was
    /// presented (a forgery, or signed for another socket or channel).
    #[error("Invalid signature")]
    BadSignature,
}

impl Credentials<'_> {
    /// The hex HMAC-SHA256 of `message` under the secret.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.mac(message).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the HMAC of `message`, in constant time.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(message).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// The `auth` a server SDK gives a client for a private channel
    /// (`channel_data`: `None`) or a presence channel (the JSON text of the
    /// member, exactly as the client will send it): `key:hmac(socket_id:channel[:channel_data])`.
    pub fn channel_auth(&self, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
        self.auth(&channel_string(socket_id, channel, channel_data))
    }

    /// Checks a `pusher:subscribe`'s `auth` for `channel`, with the
    /// `channel_data` it came with on a presence channel.
    ///
    /// # Errors
    /// [`AuthError`]: malformed, another app's key, or a bad signature.
    pub fn verify_channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
        auth: &str,
    ) -> Result<(), AuthError> {
        self.verify_auth(&channel_string(socket_id, channel, channel_data), auth)
    }

    /// The `auth` for `pusher:signin`: `key:hmac(socket_id::user::user_data)`,
    /// `user_data` being the JSON text the client sends with it.
    pub fn user_auth(&self, socket_id: &str, user_data: &str) -> String {
        self.auth(&user_string(socket_id, user_data))
    }

    /// Checks a `pusher:signin`'s `auth` for its `user_data`.
    ///
    /// # Errors
    /// [`AuthError`]: malformed, another app's key, or a bad signature.
    pub fn verify_user_auth(&self, socket_id: &str, user_data: &str, auth: &str) -> Result<(), AuthError> {
        self.verify_auth(&user_string(socket_id, user_data), auth)
    }

    /// `X-Pusher-Signature` of a webhook: the hex HMAC of its body (sent
    /// with `X-Pusher-Key`, so that the receiver knows which secret to use).
    pub fn webhook_signature(&self, body: &[u8]) -> String {
        self.sign(body)
    }

    fn auth(&self, message: &str) -> String {
        format!("{}:{}", self.key, self.sign(message.as_bytes()))
    }

    fn verify_auth(&self, message: &str, auth: &str) -> Result<(), AuthError> {
        let (key, signature) = auth.rsplit_once(':').ok_or(AuthError::Malformed)?;
        // A SHA-256 digest is 32 bytes: 64 hex digits, nothing else.
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed);
        }
        if key != self.key {
            return Err(AuthError::WrongKey);
        }
        if self.verify(message.as_bytes(), signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length (longer ones are hashed first).
        let mut mac = HmacSha256::new_from_slice(self.secret.as_bytes()).expect("HMAC accepts any key length");
        mac.update(message);
        mac
    }
}

/// `socket_id:channel` or `socket_id:channel:channel_data`.
fn channel_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// `socket_id::user::user_data`.
fn user_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of Pusher's worked examples.
    const DOCS: Credentials<'static> = Credentials {
        key: "278d425bdf160c739803",
        secret: "7ad3773142a6692b25b8",
    };

    #[test]
    fn private_channel_auth_matches_pushers_worked_example() {
        let auth = DOCS.channel_auth("1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            DOCS.verify_channel_auth("1234.1234", "private-foobar", None, &auth),
            Ok(())
        );
    }

    #[test]
    fn presence_channel_auth_matches_pushers_worked_example() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = DOCS.channel_auth("1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert_eq!(
            DOCS.verify_channel_auth("1234.1234", "presence-foobar", Some(data), &auth),
            Ok(())
        );
    }

    #[test]
    fn user_auth_matches_pushers_worked_example() {
        let auth = DOCS.user_auth("1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            auth,
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        assert_eq!(DOCS.verify_user_auth("1234.1234", r#"{"id":"12345"}"#, &auth), Ok(()));
    }

    #[test]
    fn a_signature_for_anything_else_is_refused() {
        let auth = DOCS.channel_auth("1234.1234", "private-foobar", None);
        // Another socket, another channel, or member data it was not made for.
        assert_eq!(
            DOCS.verify_channel_auth("1234.1235", "private-foobar", None, &auth),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            DOCS.verify_channel_auth("1234.1234", "private-foobaz", None, &auth),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            DOCS.verify_channel_auth("1234.1234", "private-foobar", Some("{}"), &auth),
            Err(AuthError::BadSignature)
        );
        // A presence member cannot be swapped for another under one signature.
        let data = r#"{"user_id":"1"}"#;
        let presence = DOCS.channel_auth("1.1", "presence-x", Some(data));
        assert_eq!(
            DOCS.verify_channel_auth("1.1", "presence-x", Some(r#"{"user_id":"2"}"#), &presence),
            Err(AuthError::BadSignature)
        );
        // A user's sign-in does not authorize a channel, nor the reverse
        // (channel names cannot hold the ':' that would make them alike).
        let user = DOCS.user_auth("1.1", data);
        assert_eq!(
            DOCS.verify_channel_auth("1.1", "presence-x", Some(data), &user),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            DOCS.verify_user_auth("1.1", data, &presence),
            Err(AuthError::BadSignature)
        );
        // One flipped digit.
        let mut forged = auth.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'4' { b'5' } else { b'4' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            DOCS.verify_channel_auth("1234.1234", "private-foobar", None, &forged),
            Err(AuthError::BadSignature)
        );
        // The same signature under another secret.
        let other = Credentials {
            key: DOCS.key,
            secret: "another secret",
        };
        assert_eq!(
            other.verify_channel_auth("1234.1234", "private-foobar", None, &auth),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn auth_strings_must_name_this_app_and_carry_a_digest() {
        let signature = DOCS.sign(b"1234.1234:private-foobar");
        let check = |auth: &str| DOCS.verify_channel_auth("1234.1234", "private-foobar", None, auth);
        assert_eq!(check(&format!("another-key:{signature}")), Err(AuthError::WrongKey));
        assert_eq!(check(&signature), Err(AuthError::Malformed), "no key");
        assert_eq!(
            check(&format!("{}:{}", DOCS.key, &signature[..63])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            check(&format!("{}:{}zz", DOCS.key, &signature[..62])),
            Err(AuthError::Malformed)
        );
        assert_eq!(check(""), Err(AuthError::Malformed));
        // Uppercase hex is the same digest.
        assert_eq!(check(&format!("{}:{}", DOCS.key, signature.to_uppercase())), Ok(()));
    }

    #[test]
    fn webhooks_are_signed_over_their_body() {
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test"}]}"#;
        let signature = DOCS.webhook_signature(body);
        assert_eq!(signature.len(), 64);
        assert!(DOCS.verify(body, &signature));
        assert!(!DOCS.verify(b"{}", &signature));
        assert!(!DOCS.verify(body, "not hex"));
        // The same as any HMAC-SHA256 hex digest (RFC 4231, test case 2).
        let rfc = Credentials {
            key: "",
            secret: "Jefe",
        };
        assert_eq!(
            rfc.webhook_signature(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(!format!("{DOCS:?}").contains(DOCS.secret));
    }
}
