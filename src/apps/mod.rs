//! Pusher apps: who may connect to `/app/{key}` and call the HTTP API, and
//! what each may do.
//!
//! An app is Pusher's unit of tenancy: its key names it to clients, its id to
//! the HTTP API (`/apps/{id}/...`), and its secret signs everything that
//! crosses a trust boundary (channel authorization, user sign-in, HTTP API
//! requests, webhooks: [`signature`]). wshub with no app configured serves
//! no Pusher endpoint at all.
//!
//! # Layout
//! - this file: [`App`], [`Apps`] (the lookup shared by every connection),
//!   their validation errors.
//! - [`signature`]: HMAC-SHA256 signatures for channels, users and webhooks.
//! - [`request`]: the HTTP API's signed requests.

pub mod request;
pub mod signature;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;

pub use request::{ApiAuthError, ApiRequest, TIMESTAMP_WINDOW_SECS};
pub use signature::{AuthError, Credentials};

/// Pusher's default for client events one connection may send per second.
pub const DEFAULT_MAX_CLIENT_EVENTS_PER_SECOND: u32 = 10;

/// Pusher's limit on an event's data: 10 KiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 10 * 1024;

/// Pusher's limit on the channels one HTTP API event names.
pub const DEFAULT_MAX_CHANNELS_PER_EVENT: usize = 100;

/// Most users of one presence channel, as Pusher's (and soketi's).
pub const DEFAULT_MAX_PRESENCE_MEMBERS_PER_CHANNEL: usize = 100;

/// Longest app id or key, in characters.
pub const MAX_ID_CHARS: usize = 64;

/// The webhook events Pusher defines, the names `event_types` may list.
pub const WEBHOOK_EVENTS: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// One Pusher app. Build it with [`App::new`] (or from a TOML `[[apps]]`
/// table) and hand it to [`Apps::new`], which validates it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct App {
    /// What the HTTP API calls it (`/apps/{id}/events`): 1 to 64 of
    /// `A-Z a-z 0-9 _ . -`.
    pub id: String,
    /// What clients connect with (`/app/{key}`) and what signatures start
    /// with; the same alphabet as the id.
    pub key: String,
    /// Signs and checks every signature; never sent anywhere. Not empty.
    pub secret: String,
    /// Whether clients may send `client-` events (on private and presence
    /// channels). Off by default as in Pusher; `--app` turns it on.
    #[serde(default, alias = "client-events")]
    pub client_events: bool,
    /// Most simultaneous connections of this app (Pusher's 4004 beyond);
    /// `None`: only the server's `--max-connections`.
    #[serde(default, alias = "max-connections")]
    pub max_connections: Option<usize>,
    /// Client events one connection may send per second (Pusher's 4301
    /// beyond); default 10, as Pusher's; 0: no limit.
    #[serde(default = "default_client_events_per_second", alias = "max-client-events-per-second")]
    pub max_client_events_per_second: u32,
    /// Largest event data, in bytes (a client event, or one HTTP API
    /// event); default 10 KiB, as Pusher's.
    #[serde(default = "default_event_bytes", alias = "max-event-bytes")]
    pub max_event_bytes: usize,
    /// Most channels one HTTP API event may name; default 100, as Pusher's.
    #[serde(default = "default_channels_per_event", alias = "max-channels-per-event")]
    pub max_channels_per_event: usize,
    /// Most users one presence channel may have at once (a user's second
    /// connection is not another): every subscriber is sent the whole
    /// list and every member hears of each arrival, so a channel's cost
    /// grows as the square of its users. Default 100, as Pusher's; beyond
    /// it `pusher:subscription_error` `LimitReached`, status 4100.
    #[serde(
        default = "default_presence_members_per_channel",
        alias = "max-presence-members-per-channel"
    )]
    pub max_presence_members_per_channel: usize,
    /// Whether subscribers of its channels (all but presence ones) are
    /// sent `pusher_internal:subscription_count` whenever the channel's
    /// count changes (pusher-js: `channel.subscriptionCount` and the
    /// `pusher:subscription_count` event). Off by default, as Pusher's
    /// opt-in subscription counting; a change costs one frame to every
    /// subscriber.
    #[serde(default, alias = "subscription-count")]
    pub subscription_count: bool,
    /// Where this app's webhooks go.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// One webhook endpoint of an app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// An `http://` or `https://` URL that receives the signed POSTs.
    pub url: String,
    /// The events it wants ([`WEBHOOK_EVENTS`]); empty: all of them.
    #[serde(default, alias = "event-types")]
    pub event_types: Vec<String>,
}

impl WebhookConfig {
    /// A webhook to `url` for every event.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            event_types: Vec::new(),
        }
    }

    /// Whether this endpoint wants `event` (one of [`WEBHOOK_EVENTS`]).
    pub fn wants(&self, event: &str) -> bool {
        if self.event_types.is_empty() {
            return event != "subscription_count";
        }
        self.event_types.iter().any(|e| e == event)
    }
}

fn default_client_events_per_second() -> u32 {
    DEFAULT_MAX_CLIENT_EVENTS_PER_SECOND
}

fn default_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}

fn default_channels_per_event() -> usize {
    DEFAULT_MAX_CHANNELS_PER_EVENT
}

fn default_presence_members_per_channel() -> usize {
    DEFAULT_MAX_PRESENCE_MEMBERS_PER_CHANNEL
}

/// What is wrong with an app's settings. Each names the app (its id, or
/// what was given for it) and the field; none shows a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AppError {
    /// An `ID:KEY:SECRET` that is not three non-empty parts (`shown` is what
    /// was given, its secret elided).
    #[error("app '{shown}' must be ID:KEY:SECRET")]
    Spec {
        /// What was given, up to its second ':'.
        shown: String,
    },
    /// The id is empty, too long or has a character outside the alphabet.
    #[error("app id '{id}' must be 1 to {MAX_ID_CHARS} of A-Z a-z 0-9 _ . -")]
    Id {
        /// The id as given.
        id: String,
    },
    /// The key is empty, too long or has a character outside the alphabet.
    #[error("app '{app}': key '{key}' must be 1 to {MAX_ID_CHARS} of A-Z a-z 0-9 _ . -")]
    Key {
        /// The app's id.
        app: String,
        /// The key as given.
        key: String,
    },
    /// The secret is empty: anyone could sign.
    #[error("app '{app}': secret cannot be empty")]
    Secret {
        /// The app's id.
        app: String,
    },
    /// A limit that must be above zero is zero.
    #[error("app '{app}': {field} must be above zero")]
    Limit {
        /// The app's id.
        app: String,
        /// The field, as the TOML file names it.
        field: &'static str,
    },
    /// A webhook URL that is not `http://` or `https://`, or an event type
    /// Pusher does not define.
    #[error("app '{app}': webhook {field} {message}")]
    Webhook {
        /// The app's id.
        app: String,
        /// `url` or `event_types`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Two apps with one id: the HTTP API could not tell them apart.
    #[error("two apps have the id '{id}'")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// Two apps with one key: clients could not tell them apart.
    #[error("apps '{first}' and '{second}' have the same key '{key}'")]
    DuplicateKey {
        /// The key.
        key: String,
        /// The first app's id.
        first: String,
        /// The second app's id.
        second: String,
    },
}

impl App {
    /// An app with Pusher's defaults: client events off, no connection
    /// limit of its own, 10 client events a second, 10 KiB events, 100
    /// channels an event, 100 users a presence channel, no webhooks. [`Apps::new`] validates it.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        App {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            client_events: false,
            max_connections: None,
            max_client_events_per_second: DEFAULT_MAX_CLIENT_EVENTS_PER_SECOND,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_channels_per_event: DEFAULT_MAX_CHANNELS_PER_EVENT,
            max_presence_members_per_channel: DEFAULT_MAX_PRESENCE_MEMBERS_PER_CHANNEL,
            subscription_count: false,
            webhooks: Vec::new(),
        }
    }

    /// Parses `ID:KEY:SECRET` (the `--app` and `WSHUB_APPS` form), with
    /// client events on: what a quick start wants. The secret is what
    /// follows the second `:`, so it may contain `:` itself.
    ///
    /// # Errors
    /// [`AppError::Spec`] when a part is missing or empty; the checks of
    /// [`App::validate`].
    pub fn from_spec(spec: &str) -> Result<App, AppError> {
        let mut parts = spec.splitn(3, ':');
        let (id, key, secret) = (parts.next(), parts.next(), parts.next());
        let (Some(id), Some(key), Some(secret)) = (id, key, secret) else {
            // Without two ':' there is no secret to hide, but the text may
            // be one mistyped: show only what precedes the first ':'.
            let shown = match spec.split_once(':') {
                Some((id, _)) => format!("{id}:…"),
                None => String::from("…"),
            };
            return Err(AppError::Spec { shown });
        };
        if id.is_empty() || key.is_empty() || secret.is_empty() {
            return Err(AppError::Spec {
                shown: format!("{id}:{key}:…"),
            });
        }
        let mut app = App::new(id, key, secret);
        app.client_events = true;
        app.validate()?;
        Ok(app)
    }

    /// The key and secret that sign for this app.
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials {
            key: &self.key,
            secret: &self.secret,
        }
    }

    /// Checks every field on its own (duplicates are [`Apps::new`]'s).
    ///
    /// # Errors
    /// The first [`AppError`] found.
    pub fn validate(&self) -> Result<(), AppError> {
        if !is_valid_name(&self.id) {
            return Err(AppError::Id { id: self.id.clone() });
        }
        if !is_valid_name(&self.key) {
            return Err(AppError::Key {
                app: self.id.clone(),
                key: self.key.clone(),
            });
        }
        if self.secret.is_empty() {
            return Err(AppError::Secret { app: self.id.clone() });
        }
        for (field, value) in [
            ("max_connections", self.max_connections.unwrap_or(1)),
            ("max_event_bytes", self.max_event_bytes),
            ("max_channels_per_event", self.max_channels_per_event),
            (
                "max_presence_members_per_channel",
                self.max_presence_members_per_channel,
            ),
        ] {
            if value == 0 {
                return Err(AppError::Limit {
                    app: self.id.clone(),
                    field,
                });
            }
        }
        for webhook in &self.webhooks {
            let webhook_error = |field, message: String| AppError::Webhook {
                app: self.id.clone(),
                field,
                message,
            };
            let scheme_ok = url::Url::parse(&webhook.url)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
            if !scheme_ok {
                return Err(webhook_error(
                    "url",
                    format!("'{}' must be an http:// or https:// URL", webhook.url),
                ));
            }
            if let Some(unknown) = webhook
                .event_types
                .iter()
                .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            {
                return Err(webhook_error(
                    "event_types",
                    format!("'{unknown}' is not one of {}", WEBHOOK_EVENTS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// Everything but the secret.
impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &format_args!("({} bytes)", self.secret.len()))
            .field("client_events", &self.client_events)
            .field("max_connections", &self.max_connections)
            .field("max_client_events_per_second", &self.max_client_events_per_second)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_channels_per_event", &self.max_channels_per_event)
            .field(
                "max_presence_members_per_channel",
                &self.max_presence_members_per_channel,
            )
            .field("subscription_count", &self.subscription_count)
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

/// 1 to [`MAX_ID_CHARS`] of `A-Z a-z 0-9 _ . -`: safe in a URL path
/// segment and a log line as it is.
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Every configured app, found by key (a connection's `/app/{key}`) or by
/// id (the HTTP API's `/apps/{id}`). Cloning shares it: one copy serves the
/// whole server, and a connection can keep its app as an `Arc<App>`.
#[derive(Clone, Default)]
pub struct Apps(Arc<Index>);

#[derive(Default)]
struct Index {
    apps: Vec<Arc<App>>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
}

impl Apps {
    /// Validates `apps` and indexes them.
    ///
    /// # Errors
    /// The first app's [`App::validate`] error, or a duplicate id or key.
    pub fn new(apps: impl IntoIterator<Item = App>) -> Result<Apps, AppError> {
        let mut index = Index::default();
        for app in apps {
            app.validate()?;
            let at = index.apps.len();
            if index.by_id.insert(app.id.clone(), at).is_some() {
                return Err(AppError::DuplicateId { id: app.id });
            }
            if let Some(first) = index.by_key.insert(app.key.clone(), at) {
                return Err(AppError::DuplicateKey {
                    key: app.key.clone(),
                    first: index.apps[first].id.clone(),
                    second: app.id,
                });
            }
            index.apps.push(Arc::new(app));
        }
        Ok(Apps(Arc::new(index)))
    }

    /// The app clients know by `key`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.0.by_key.get(key).map(|&at| &self.0.apps[at])
    }

    /// The app the HTTP API knows by `id`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.0.by_id.get(id).map(|&at| &self.0.apps[at])
    }

    /// No app configured: the Pusher endpoints stay off.
    pub fn is_empty(&self) -> bool {
        self.0.apps.is_empty()
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.0.apps.len()
    }

    /// The apps, in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.0.apps.iter()
    }
}

/// The ids, for the start-up line and `Config`'s Debug (no secrets).
impl fmt::Debug for Apps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|app| &app.id)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_gives_an_app_with_client_events_and_pushers_defaults() {
        let app = App::from_spec("app-id:app-key:app:secret").unwrap();
        assert_eq!((app.id.as_str(), app.key.as_str()), ("app-id", "app-key"));
        assert_eq!(app.secret, "app:secret", "the secret is all after the second ':'");
        assert!(app.client_events);
        assert_eq!(app.max_client_events_per_second, 10);
        assert_eq!(app.max_event_bytes, 10 * 1024);
        assert_eq!(app.max_channels_per_event, 100);
        assert_eq!(app.max_presence_members_per_channel, 100);
        assert_eq!(app.max_connections, None);
        let mut unbounded = app.clone();
        unbounded.max_presence_members_per_channel = 0;
        assert_eq!(
            unbounded.validate().unwrap_err().to_string(),
            "app 'app-id': max_presence_members_per_channel must be above zero"
        );
        assert!(!App::new("a", "b", "c").client_events, "Pusher's default is off");
    }

    #[test]
    fn a_bad_spec_is_refused_without_showing_the_secret() {
        for spec in ["", "id", "id:key", "id:key:", ":key:secret", "id::secret"] {
            let err = App::from_spec(spec).unwrap_err();
            assert!(matches!(err, AppError::Spec { .. }), "{spec}: {err}");
        }
        let err = App::from_spec("id::hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = App::from_spec("id key:k:hunter2").unwrap_err().to_string();
        assert_eq!(err, "app id 'id key' must be 1 to 64 of A-Z a-z 0-9 _ . -");
    }

    #[test]
    fn ids_and_keys_are_checked_naming_the_app() {
        assert!(App::new("a".repeat(64), "k", "s").validate().is_ok());
        assert_eq!(
            App::new("a".repeat(65), "k", "s").validate(),
            Err(AppError::Id { id: "a".repeat(65) })
        );
        let err = App::new("shop", "k/1", "s").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "app 'shop': key 'k/1' must be 1 to 64 of A-Z a-z 0-9 _ . -"
        );
        let err = App::new("shop", "k", "").validate().unwrap_err();
        assert_eq!(err.to_string(), "app 'shop': secret cannot be empty");
        let mut app = App::new("shop", "k", "s");
        app.max_event_bytes = 0;
        assert_eq!(
            app.validate().unwrap_err().to_string(),
            "app 'shop': max_event_bytes must be above zero"
        );
    }

    #[test]
    fn webhooks_need_a_web_url_and_known_events() {
        let mut app = App::new("shop", "k", "s");
        app.webhooks.push(WebhookConfig::new("ftp://hooks.example/x"));
        let err = app.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("app 'shop': webhook url 'ftp://hooks.example/x'"),
            "{err}"
        );
        app.webhooks[0] = WebhookConfig {
            url: "https://hooks.example/pusher".into(),
            event_types: vec!["channel_occupied".into(), "channel_exploded".into()],
        };
        let err = app.validate().unwrap_err().to_string();
        assert!(err.contains("event_types 'channel_exploded' is not one of"), "{err}");
        app.webhooks[0].event_types.pop();
        assert!(app.validate().is_ok());
        assert!(app.webhooks[0].wants("channel_occupied"));
        assert!(!app.webhooks[0].wants("member_added"));
        assert!(WebhookConfig::new("http://h/").wants("member_added"), "empty: all");
        assert!(
            !WebhookConfig::new("http://h/").wants("subscription_count"),
            "but subscription_count, asked for by name"
        );
    }

    #[test]
    fn apps_are_found_by_key_and_by_id_and_shared() {
        let apps = Apps::new([App::new("1", "key-one", "s1"), App::new("2", "key-two", "s2")]).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps.by_key("key-two").map(|a| a.id.as_str()), Some("2"));
        assert_eq!(apps.by_id("1").map(|a| a.key.as_str()), Some("key-one"));
        assert!(apps.by_key("1").is_none(), "an id is not a key");
        assert!(apps.by_id("nope").is_none());
        let shared = apps.clone();
        assert!(Arc::ptr_eq(shared.by_id("1").unwrap(), apps.by_id("1").unwrap()));
        assert!(Apps::default().is_empty());
        assert_eq!(format!("{apps:?}"), r#"["1", "2"]"#);
    }

    #[test]
    fn two_apps_cannot_share_an_id_or_a_key() {
        let err = Apps::new([App::new("1", "a", "s"), App::new("1", "b", "s")]).unwrap_err();
        assert_eq!(err.to_string(), "two apps have the id '1'");
        let err = Apps::new([App::new("1", "a", "s"), App::new("2", "a", "s")]).unwrap_err();
        assert_eq!(err.to_string(), "apps '1' and '2' have the same key 'a'");
        let err = Apps::new([App::new("1", "a", "")]).unwrap_err();
        assert!(matches!(err, AppError::Secret { .. }));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", App::new("1", "a", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("(7 bytes)"), "{shown}");
    }
}
