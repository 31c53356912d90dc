//! The Pusher Channels service (`GET /app/{key}`, protocol 7): what
//! pusher-js, Laravel Echo and every other Pusher client speak, on the same
//! hub as raw and `wshub.v1` clients.
//!
//! A connection is greeted with its socket id, then subscribes to channels:
//! public ones freely, `private-` and `presence-` ones with the signature
//! the application's backend gave it (HMAC-SHA256 with the app's secret, so
//! wshub never calls the backend). Each channel is a hub room. Client
//! events (`client-*`) go to the channel's other Pusher members, on private
//! and presence channels only, when the app allows them, at a bounded rate.
//! A connection that signs in (`pusher:signin`) is its user's: events sent
//! to the user reach it, and terminating the user closes it.
//!
//! Bad requests get `pusher:error` or `pusher:subscription_error` and the
//! connection stays; one that keeps sending them is closed. Close codes
//! are Pusher's (4000-4299), so a client knows whether to reconnect.
//!
//! # Layout
//! - `socket_id`: the ids, and how one turns back into a connection.
//! - `subscribe`: who may subscribe to what, and presence data.
//! - `tenant`: an app's channels as hub rooms.

mod hooks;
pub mod socket_id;
mod subscribe;
mod tenant;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::connection::{GiveUp, Handler};
use crate::hub::{CloseRequest, Hub, Membership, Outbox, Replay, SignedIn};
use crate::protocol::pusher::{server, ChannelType, ClientMessage, ErrorCode, SocketId};
use crate::protocol::{encode_frame, Endpoint, Message, MessageKind, OpCode};
use crate::webhooks::{self, EventKind, Webhooks};

pub use hooks::Hooks;
pub use tenant::{AppSlot, Tenant, Tenants};

/// Seconds of silence after which a Pusher client pings (we tell it in
/// `connection_established`); the server's own WebSocket pings and read
/// deadline keep the connection alive either way.
pub const ACTIVITY_TIMEOUT_SECS: u64 = 120;

/// Per-connection limits of the Pusher service (u32: every connection
/// keeps a copy).
#[derive(Debug, Clone, Copy)]
pub struct PusherLimits {
    /// Channels one connection may be subscribed to at once.
    pub max_channels: u32,
    /// Bad requests tolerated before closing.
    pub max_bad_requests: u32,
}

/// What every Pusher connection of a server shares.
#[derive(Debug, Clone)]
pub struct PusherContext {
    /// Per-connection limits.
    pub limits: PusherLimits,
    /// Where the apps' webhooks go (`client_event` is sent from here).
    pub webhooks: Webhooks,
    /// The apps.
    pub tenants: Tenants,
}

/// One channel a connection is subscribed to.
#[derive(Debug)]
struct Subscription {
    kind: ChannelType,
    /// The user on a presence channel (client events carry it).
    user: Option<Arc<str>>,
    /// The room joined; its name is the channel's (see [`Tenant::room`]),
    /// so no copy of the name is kept per connection.
    membership: Membership,
}

impl Subscription {
    /// Whether this is the subscription to `channel`.
    fn is(&self, tenant: &Tenant, channel: &str) -> bool {
        tenant.channel(self.membership.room().name()) == Some(channel)
    }
}

/// One Pusher connection's state, boxed once per connection: its fields
/// are sized to fit a 128-byte allocation (see
/// `a_session_fits_a_128_byte_allocation`).
#[derive(Debug)]
pub struct PusherSession {
    hub: Hub,
    tenant: Tenant,
    /// Counts the connection against its app's quota while it lives.
    _slot: AppSlot,
    webhooks: Webhooks,
    outbox: Arc<Outbox>,
    subscriptions: Vec<Subscription>,
    /// The user it signed in as (`pusher:signin`), recorded in the hub so
    /// that the app can close it (`terminate_connections`).
    signed_in: Option<Box<SignedIn>>,
    bad_requests: u32,
    limits: PusherLimits,
    /// Some channel's catch-up may still be being paced out.
    replaying: bool,
    /// Client events in the current one-second window.
    client_events: u32,
    /// When that window began, on the hub's millisecond clock.
    client_window: u64,
}

/// Tells a connection that cannot start why (`pusher:error`), then closes
/// it with the code, as Pusher servers do after the upgrade.
pub fn refuse(outbox: &Outbox, code: ErrorCode) {
    let _ = outbox.reply(text(&server::error(Some(code.code()), code.message())));
    outbox.request_close(CloseRequest::Graceful(code.close_code(), code.message()));
}

impl PusherSession {
    /// Starts a session for connection `conn` and greets the client with
    /// `pusher:connection_established`.
    pub fn new(hub: Hub, outbox: Arc<Outbox>, admitted: (Tenant, AppSlot), conn: u64, context: &PusherContext) -> Self {
        let (tenant, slot) = admitted;
        let socket_id = socket_id::of(conn);
        let _ = outbox.reply(text(&server::connection_established(socket_id, ACTIVITY_TIMEOUT_SECS)));
        PusherSession {
            hub,
            tenant,
            _slot: slot,
            webhooks: context.webhooks.clone(),
            outbox,
            subscriptions: Vec::new(),
            signed_in: None,
            bad_requests: 0,
            limits: context.limits,
            replaying: false,
            client_events: 0,
            client_window: 0,
        }
    }

    /// Handles one message from the client.
    ///
    /// # Errors
    /// [`GiveUp`] when the client has sent too many bad requests.
    pub fn on_message(&mut self, message: &Message) -> Result<(), GiveUp> {
        if message.kind() == MessageKind::Binary {
            return self.bad_request(None, "Binary frames are not part of the Pusher protocol");
        }
        // A request is an event name, a channel and data: anything far
        // larger than the largest event is refused unread.
        let largest = self.tenant.app.max_event_bytes.saturating_mul(6).saturating_add(4096);
        if message.payload().len() > largest {
            let message = format!("Message over {largest} bytes");
            return self.bad_request(Some(ErrorCode::ClientEventRateLimit), &message);
        }
        let parsed = std::str::from_utf8(message.payload())
            .map_err(|_| crate::protocol::pusher::ParseError::InvalidJson)
            .and_then(crate::protocol::pusher::parse);
        match parsed {
            Ok(request) => self.handle(request),
            Err(e) => self.bad_request(None, &e.to_string()),
        }
    }

    fn handle(&mut self, request: ClientMessage) -> Result<(), GiveUp> {
        match request {
            ClientMessage::Ping => {
                let _ = self.outbox.reply(text(&server::pong()));
                Ok(())
            }
            ClientMessage::Pong => Ok(()),
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
                since,
            } => self.subscribe(channel, auth.as_deref(), channel_data.as_deref(), since),
            ClientMessage::Unsubscribe { channel } => {
                // Unsubscribing from a channel one is not in is no error
                // (pusher-js unsubscribes on its own after a failure).
                let tenant = &self.tenant;
                self.subscriptions.retain(|s| !s.is(tenant, &channel));
                Ok(())
            }
            ClientMessage::ClientEvent { event, channel, data } => self.client_event(&event, &channel, &data),
            ClientMessage::Signin { auth, user_data } => self.signin(&auth, &user_data),
        }
    }

    fn subscribe(
        &mut self,
        channel: String,
        auth: Option<&str>,
        channel_data: Option<&str>,
        since: Option<u64>,
    ) -> Result<(), GiveUp> {
        if self.subscriptions.iter().any(|s| s.is(&self.tenant, &channel)) {
            // Already ours (pusher-js resubscribes after its own
            // reconnects): nothing to do, and no error.
            return Ok(());
        }
        if self.subscriptions.len() >= self.limits.max_channels as usize {
            let message = format!("At most {} channels per connection", self.limits.max_channels);
            let _ = self.outbox.reply(text(&server::subscription_error(
                &channel,
                "LimitReached",
                &message,
                400,
            )));
            return Ok(());
        }
        let request = subscribe::Request {
            channel: &channel,
            auth,
            channel_data,
            socket_id: &self.socket_id(),
            signed_in: self.signed_in.as_deref().map(SignedIn::user),
        };
        match subscribe::admit(&self.tenant.app, &request) {
            Ok(admitted) => {
                let member = admitted.member(self.outbox.clone(), self.connection_number());
                // `since` (wshub's extension): what was missed, then live.
                // A cache channel's subscriber gets its last event (see
                // `hub::pusher`), the others nothing from the past.
                let replay = match since {
                    Some(after) => Replay::Since(after),
                    None if admitted.kind.cache => Replay::Recent,
                    None => Replay::Nothing,
                };
                let room = self.tenant.room(&channel);
                let max_users = self.tenant.app.max_presence_members_per_channel;
                let joined = match admitted.user.as_deref() {
                    Some(user) => self.hub.join_presence(&room, user, member, replay, max_users),
                    None => Some(self.hub.join(&room, member, replay)),
                };
                let Some(membership) = joined else {
                    // Not the client's fault: not a bad request.
                    self.refuse(&channel, &subscribe::SubscriptionRefusal::presence_full());
                    return Ok(());
                };
                self.replaying |= since.is_some();
                // One more place, not the doubling Vec's four: most
                // connections hold one or two channels for their life.
                self.subscriptions.reserve_exact(1);
                self.subscriptions.push(Subscription {
                    kind: admitted.kind,
                    user: admitted.user,
                    membership,
                });
                Ok(())
            }
            Err(refusal) => {
                self.refuse(&channel, &refusal);
                self.count_bad_request()
            }
        }
    }

    /// Answers a subscription to `channel` with `pusher:subscription_error`.
    fn refuse(&self, channel: &str, refusal: &subscribe::SubscriptionRefusal) {
        tracing::debug!(app = %self.tenant.app.id, %channel, "subscription refused: {}", refusal.error);
        let frame = server::subscription_error(channel, refusal.kind, &refusal.error, refusal.status);
        let _ = self.outbox.reply(text(&frame));
    }

    fn client_event(&mut self, event: &str, channel: &str, data: &RawValue) -> Result<(), GiveUp> {
        if !self.tenant.app.client_events {
            return self.bad_request(None, "Client events are not enabled for this app");
        }
        let Some(index) = self.subscriptions.iter().position(|s| s.is(&self.tenant, channel)) else {
            return self.bad_request(None, &format!("Not subscribed to {channel}"));
        };
        if !self.subscriptions[index].kind.allows_client_events() {
            let message = "Client events are allowed on private and presence channels only (not encrypted ones)";
            return self.bad_request(None, message);
        }
        let max = self.tenant.app.max_event_bytes;
        if data.get().len() > max {
            return self.bad_request(
                Some(ErrorCode::ClientEventRateLimit),
                &format!("Event data over {max} bytes"),
            );
        }
        if !self.take_client_event() {
            let code = ErrorCode::ClientEventRateLimit;
            let _ = self
                .outbox
                .reply(text(&server::error(Some(code.code()), code.message())));
            return Ok(());
        }
        let subscription = &self.subscriptions[index];
        let user = subscription.user.as_deref();
        subscription
            .membership
            .relay(&server::client_event(channel, event, data, user));
        let app = &self.tenant.app.id;
        if self.webhooks.wants(app, EventKind::ClientEvent) {
            let user = user.map(str::to_owned);
            let hook = webhooks::Event::client_event(channel, event, data.get(), self.socket_id(), user);
            self.webhooks.send(app, hook);
        }
        Ok(())
    }

    /// `pusher:signin`: the backend's signature over this socket and the
    /// user data makes the connection its user's. A bad one closes it with
    /// 4009, as Pusher does.
    fn signin(&mut self, auth: &str, user_data: &str) -> Result<(), GiveUp> {
        let credentials = self.tenant.app.credentials();
        let user = match credentials.verify_user_auth(&self.socket_id(), user_data, auth) {
            Ok(()) => subscribe::signed_in_user(user_data),
            Err(e) => Err(e.to_string()),
        };
        match user {
            Ok(user) => {
                // A second sign-in replaces the first (its record goes).
                let key = self.tenant.user_room(&user);
                self.signed_in = Some(Box::new(self.hub.sign_in(&key, &user, &self.outbox)));
                let _ = self.outbox.reply(text(&server::signin_success(user_data)));
                Ok(())
            }
            Err(why) => {
                tracing::debug!(app = %self.tenant.app.id, "signin refused: {why}");
                let code = ErrorCode::Unauthorized;
                let _ = self.outbox.reply(text(&server::error(
                    Some(code.code()),
                    &format!("Signin failed: {why}"),
                )));
                self.outbox
                    .request_close(CloseRequest::Graceful(code.close_code(), "signin failed"));
                Ok(())
            }
        }
    }

    /// One more client event in this second's window, if the app's rate
    /// allows it (0: no limit).
    fn take_client_event(&mut self) -> bool {
        let limit = self.tenant.app.max_client_events_per_second;
        if limit == 0 {
            return true;
        }
        let now = self.hub.clock().now();
        if now.saturating_sub(self.client_window) >= 1000 {
            self.client_window = now;
            self.client_events = 0;
        }
        if self.client_events >= limit {
            return false;
        }
        self.client_events += 1;
        true
    }

    /// The connection's socket id, made again when needed rather than kept:
    /// an idle connection holds no copy of it.
    fn socket_id(&self) -> String {
        socket_id::of(self.connection_number()).to_string()
    }

    fn connection_number(&self) -> u64 {
        crate::hub::connection_number(&self.outbox)
    }

    fn bad_request(&mut self, code: Option<ErrorCode>, message: &str) -> Result<(), GiveUp> {
        tracing::debug!(app = %self.tenant.app.id, "bad Pusher request: {message}");
        let _ = self
            .outbox
            .reply(text(&server::error(code.map(ErrorCode::code), message)));
        self.count_bad_request()
    }

    fn count_bad_request(&mut self) -> Result<(), GiveUp> {
        self.bad_requests += 1;
        if self.bad_requests > self.limits.max_bad_requests {
            return Err(GiveUp("too many bad requests"));
        }
        Ok(())
    }
}

/// A Pusher client is told (`pusher:error`) of each message dropped for
/// its rate, so it is not throttled.
impl Handler for PusherSession {
    fn endpoint(&self) -> Endpoint {
        Endpoint::Pusher
    }

    fn throttles(&self) -> bool {
        false
    }

    fn on_message(&mut self, message: &Message, _outbox: &Outbox) -> Result<(), GiveUp> {
        PusherSession::on_message(self, message)
    }

    fn continue_replays(&mut self) -> bool {
        if self.replaying {
            let mut left = false;
            for subscription in &self.subscriptions {
                left |= subscription.membership.continue_replay();
            }
            self.replaying = left;
        }
        self.replaying
    }

    fn rate_limited(&mut self, _message: &Message) {
        let code = ErrorCode::ClientEventRateLimit;
        let frame = server::error(Some(code.code()), "Over the rate limit: message dropped, slow down");
        let _ = self.outbox.reply(text(&frame));
    }
}

/// The socket id a client gave, as the sealed name of the connection to
/// leave out (0: none), which travels to every node and which only the
/// node that made it opens (see [`crate::hub::sealed`]).
pub fn excluded_socket(socket_id: &str) -> u64 {
    socket_id
        .parse::<SocketId>()
        .ok()
        .and_then(socket_id::sealed_name)
        .unwrap_or(0)
}

fn text(json: &str) -> Bytes {
    encode_frame(OpCode::Text, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Pusher connection keeps one boxed session for its life, and one
    /// subscription a channel: their sizes are per-connection memory (the
    /// idle target is 1 KiB in all). mimalloc's size classes step from 128
    /// to 160 bytes.
    #[test]
    fn a_session_fits_a_128_byte_allocation() {
        let size = std::mem::size_of::<PusherSession>();
        assert!(size <= 128, "a Pusher session is {size} bytes");
        let subscription = std::mem::size_of::<Subscription>();
        assert!(subscription <= 48, "a subscription is {subscription} bytes");
    }
}
