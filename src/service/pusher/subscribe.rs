//! Who may subscribe to what: channel names, the backend's signature on
//! private and presence channels, and a presence member's data.
//!
//! The signature is checked here, against the app's secret, so a forged or
//! replayed authorization (another socket's, another channel's) never
//! reaches the hub.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::apps::App;
use crate::hub::{Member, Outbox};
use crate::protocol::pusher::{check_channel, ChannelKind, ChannelType};

/// Longest `user_id` on a presence channel (Pusher's limit).
const MAX_USER_ID_CHARS: usize = 128;

/// Most bytes of a presence member's `user_info` (Pusher's limit: 1 KB).
const MAX_USER_INFO_BYTES: usize = 1024;

/// A subscription that may go ahead.
#[derive(Debug)]
pub(super) struct Admitted {
    pub(super) kind: ChannelType,
    /// The presence member's user id.
    pub(super) user: Option<Arc<str>>,
    /// Its `user_info`, as JSON text.
    info: Option<Arc<str>>,
}

impl Admitted {
    /// The hub member for connection `number`.
    pub(super) fn member(&self, outbox: Arc<Outbox>, number: u64) -> Member {
        let presence = self.user.clone().zip(self.info.clone());
        Member::pusher(outbox, number, presence)
    }
}

/// A refused subscription, as `pusher:subscription_error` tells it.
#[derive(Debug)]
pub(super) struct SubscriptionRefusal {
    /// Pusher's error type (`AuthError`, `InvalidChannel`, ...).
    pub(super) kind: &'static str,
    pub(super) error: String,
    /// The HTTP-like status Pusher clients read.
    pub(super) status: u16,
}

impl SubscriptionRefusal {
    fn new(kind: &'static str, error: impl Into<String>, status: u16) -> Self {
        SubscriptionRefusal {
            kind,
            error: error.into(),
            status,
        }
    }

    /// A presence channel at the app's `max_presence_members_per_channel`
    /// refuses a new user (soketi's and sockudo's words, with Pusher's
    /// status 4100: over capacity).
    pub(super) fn presence_full() -> Self {
        let error = "The maximum members per presence channel limit was reached";
        SubscriptionRefusal::new("LimitReached", error, 4100)
    }
}

/// A `pusher:subscribe`, and who asks.
#[derive(Debug)]
pub(super) struct Request<'a> {
    pub(super) channel: &'a str,
    pub(super) auth: Option<&'a str>,
    pub(super) channel_data: Option<&'a str>,
    pub(super) socket_id: &'a str,
    /// The user the connection signed in as.
    pub(super) signed_in: Option<&'a str>,
}

/// Checks a subscription.
pub(super) fn admit(app: &App, request: &Request<'_>) -> Result<Admitted, SubscriptionRefusal> {
    let channel = request.channel;
    let kind = check_channel(channel).map_err(|e| SubscriptionRefusal::new("InvalidChannel", e.to_string(), 400))?;
    let public = Admitted {
        kind,
        user: None,
        info: None,
    };
    match kind.kind {
        ChannelKind::Public => return Ok(public),
        ChannelKind::User => {
            // Only the user's own signed-in connections hear what is sent
            // to the user.
            let own = ChannelType::user_of(channel).is_some_and(|user| request.signed_in == Some(user));
            if own {
                return Ok(public);
            }
            let error = "Sign in as this user (pusher:signin) to subscribe to its channel";
            return Err(SubscriptionRefusal::new("AuthError", error, 403));
        }
        ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence => {}
    }
    let presence = kind.is_presence();
    let data = if presence { request.channel_data } else { None };
    if presence && data.is_none() {
        return Err(SubscriptionRefusal::new(
            "AuthError",
            "A presence channel needs channel_data",
            401,
        ));
    }
    let auth = request.auth.unwrap_or("");
    if let Err(e) = app
        .credentials()
        .verify_channel_auth(request.socket_id, channel, data, auth)
    {
        return Err(SubscriptionRefusal::new("AuthError", e.to_string(), 401));
    }
    let Some(data) = data else { return Ok(public) };
    let (user, info) = presence_member(data)?;
    Ok(Admitted {
        kind,
        user: Some(user),
        info: Some(info),
    })
}

/// The user id of a signed-in connection's `user_data` (signed, so only
/// its form can be wrong).
pub(super) fn signed_in_user(user_data: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct UserData<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    let data: UserData<'_> =
        serde_json::from_str(user_data).map_err(|_| "user_data is not a JSON object with an id".to_owned())?;
    let user = user_id(data.id).ok_or("the id must be a string or a number")?;
    if user.is_empty() || user.chars().count() > MAX_USER_ID_CHARS || user.chars().any(char::is_control) {
        return Err("the id must be 1 to 128 characters".to_owned());
    }
    Ok(user)
}

/// A user id given as a string or a number, as a string.
fn user_id(raw: &RawValue) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => Some(s),
        Ok(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The user id and `user_info` of a presence subscription's
/// `channel_data` (signed, so only its form can be wrong).
fn presence_member(channel_data: &str) -> Result<(Arc<str>, Arc<str>), SubscriptionRefusal> {
    #[derive(Deserialize)]
    struct ChannelData<'a> {
        #[serde(borrow)]
        user_id: &'a RawValue,
        #[serde(default, borrow)]
        user_info: Option<&'a RawValue>,
    }
    let bad = |error: &str| SubscriptionRefusal::new("AuthError", error, 400);
    let data: ChannelData<'_> =
        serde_json::from_str(channel_data).map_err(|_| bad("channel_data is not a JSON object with a user_id"))?;
    // A user id may come as a string or a number; it is a string after.
    let user = user_id(data.user_id).ok_or_else(|| bad("user_id must be a string or a number"))?;
    if user.is_empty() || user.chars().count() > MAX_USER_ID_CHARS {
        return Err(bad("user_id must be 1 to 128 characters"));
    }
    let info = data.user_info.map_or("null", RawValue::get);
    if info.len() > MAX_USER_INFO_BYTES {
        return Err(bad("user_info over 1 KB"));
    }
    Ok((Arc::from(user), Arc::from(info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_member_is_its_user_id_as_a_string_and_its_info() {
        let (user, info) = presence_member(r#"{"user_id":42,"user_info":{"name":"Ann"}}"#).expect("valid");
        assert_eq!((&*user, &*info), ("42", r#"{"name":"Ann"}"#));
        let (user, info) = presence_member(r#"{"user_id":"u-1"}"#).expect("valid");
        assert_eq!((&*user, &*info), ("u-1", "null"));
        for bad in [r#"{"user_info":{}}"#, r#"{"user_id":""}"#, r#"{"user_id":[1]}"#, "nope"] {
            assert!(presence_member(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"user_id":"u","user_info":"{}"}}"#, "x".repeat(1100));
        assert!(presence_member(&long).is_err());
    }

    #[test]
    fn a_signed_in_user_is_the_id_of_its_user_data() {
        assert_eq!(signed_in_user(r#"{"id":"ann","user_info":{}}"#), Ok("ann".to_owned()));
        assert_eq!(signed_in_user(r#"{"id":7}"#), Ok("7".to_owned()));
        for bad in [r#"{"name":"x"}"#, r#"{"id":""}"#, r#"{"id":null}"#, "[]"] {
            assert!(signed_in_user(bad).is_err(), "{bad}");
        }
    }
}
