//! Where an app's webhooks go, and which of them.

use std::fmt;

use http::header::HeaderValue;
use http::Uri;

use super::event::{Event, EventKind, UnknownEventKind};
use super::WebhookError;
use crate::apps::Apps;

/// One webhook endpoint of one app: every event of the kinds it asks for
/// is POSTed there, signed with the app's secret.
///
/// An app with two URLs is two targets; each has its own queue and its
/// own retries, so that one backend that is down delays nothing sent to
/// the other.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The app the events belong to ([`Webhooks::send`](super::Webhooks::send)'s `app_id`).
    pub app_id: String,
    /// The app's key, sent as `X-Pusher-Key`.
    pub key: String,
    /// The app's secret: the HMAC key of `X-Pusher-Signature`. Never logged.
    pub secret: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// The kinds of event this endpoint gets; empty: all of them.
    pub event_types: Vec<EventKind>,
}

impl Target {
    /// One target per webhook of every app in `apps`.
    ///
    /// # Errors
    /// An `event_types` name that is not an [`EventKind`] (the apps'
    /// validation refuses those first).
    pub fn for_apps(apps: &Apps) -> Result<Vec<Target>, UnknownEventKind> {
        let mut targets = Vec::new();
        for app in apps.iter() {
            for webhook in &app.webhooks {
                targets.push(Target {
                    app_id: app.id.clone(),
                    key: app.key.clone(),
                    secret: app.secret.clone(),
                    url: webhook.url.clone(),
                    event_types: webhook
                        .event_types
                        .iter()
                        .map(|name| name.parse())
                        .collect::<Result<_, _>>()?,
                });
            }
        }
        Ok(targets)
    }

    /// The kinds this target gets, one bit each (see [`EventKind::bit`]).
    /// Without a list, every kind but `subscription_count`, which comes
    /// with every join and leave and is asked for by name, as Pusher's
    /// subscription counting is switched on per app.
    pub(crate) fn kinds(&self) -> u8 {
        if self.event_types.is_empty() {
            EventKind::ALL
                .iter()
                .filter(|kind| **kind != EventKind::SubscriptionCount)
                .fold(0, |bits, kind| bits | kind.bit())
        } else {
            self.event_types.iter().fold(0, |bits, kind| bits | kind.bit())
        }
    }

    /// Whether this target gets `event`.
    pub fn wants(&self, event: &Event) -> bool {
        self.kinds() & event.kind().bit() != 0
    }

    /// The URL, checked: http or https, with a host.
    pub(crate) fn uri(&self) -> Result<Uri, WebhookError> {
        let invalid = |reason: &str| WebhookError::InvalidUrl {
            app_id: self.app_id.clone(),
            url: self.url.clone(),
            reason: reason.to_owned(),
        };
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        match uri.host() {
            Some(host) if !host.is_empty() => {}
            _ => return Err(invalid("no host")),
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid("user info in a webhook URL is not supported"));
        }
        Ok(uri)
    }

    /// The key as a header value, checked.
    pub(crate) fn key_header(&self) -> Result<HeaderValue, WebhookError> {
        HeaderValue::from_str(&self.key).map_err(|_| WebhookError::InvalidKey {
            app_id: self.app_id.clone(),
            key: self.key.clone(),
        })
    }

    /// The URL for logs: without its query, which may hold a token.
    pub(crate) fn display_url(&self) -> String {
        match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?..."),
            None => self.url.clone(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("url", &self.display_url())
            .field("event_types", &self.event_types)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, event_types: Vec<EventKind>) -> Target {
        Target {
            app_id: "app".into(),
            key: "key".into(),
            secret: "s3cret".into(),
            url: url.into(),
            event_types,
        }
    }

    #[test]
    fn every_webhook_of_every_app_becomes_a_target_with_its_filter() {
        use crate::apps::{App, WebhookConfig};
        let mut one = App::new("one", "key-one", "secret-one");
        one.webhooks.push(WebhookConfig::new("http://127.0.0.1:1/all"));
        let mut members = WebhookConfig::new("https://backend.example/members");
        members.event_types = vec!["member_added".into(), "member_removed".into()];
        one.webhooks.push(members);
        let two = App::new("two", "key-two", "secret-two");
        let targets = Target::for_apps(&Apps::new([one, two]).unwrap()).unwrap();
        assert_eq!(targets.len(), 2, "the app without webhooks has no target");
        assert_eq!(
            (
                targets[0].app_id.as_str(),
                targets[0].key.as_str(),
                targets[0].secret.as_str()
            ),
            ("one", "key-one", "secret-one")
        );
        assert!(targets[0].event_types.is_empty());
        assert_eq!(targets[1].url, "https://backend.example/members");
        assert_eq!(
            targets[1].event_types,
            [EventKind::MemberAdded, EventKind::MemberRemoved]
        );
    }

    #[test]
    fn an_empty_filter_takes_every_kind_and_a_list_only_its_own() {
        let all = target("http://127.0.0.1/h", vec![]);
        let some = target(
            "http://127.0.0.1/h",
            vec![EventKind::MemberAdded, EventKind::MemberRemoved],
        );
        let occupied = Event::ChannelOccupied { channel: "a".into() };
        let added = Event::MemberAdded {
            channel: "presence-a".into(),
            user_id: "1".into(),
        };
        assert!(all.wants(&occupied) && all.wants(&added));
        assert!(!some.wants(&occupied) && some.wants(&added));
    }

    #[test]
    fn only_absolute_http_and_https_urls_are_accepted() {
        for good in [
            "http://127.0.0.1:9/hook",
            "https://backend.example/pusher/webhook?x=1",
            "http://[::1]:80/",
        ] {
            assert!(target(good, vec![]).uri().is_ok(), "{good}");
        }
        for bad in [
            "ftp://host/x",
            "/relative",
            "backend.example/hook",
            "http://user:pw@host/x",
            "not a url",
            "",
        ] {
            let err = target(bad, vec![]).uri().unwrap_err();
            assert!(matches!(err, WebhookError::InvalidUrl { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("app app"), "names the app: {err}");
        }
    }

    #[test]
    fn the_secret_stays_out_of_debug_output_and_the_query_out_of_logs() {
        let t = target("https://backend.example/hook?token=abc", vec![]);
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("abc"), "{shown}");
        assert_eq!(t.display_url(), "https://backend.example/hook?...");
    }
}
