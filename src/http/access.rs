//! Who may open which WebSocket: every reason a handshake is refused, and
//! the checks beyond the handshake's own headers (room name, origin and
//! Host, shutdown, token, per-address and total connection limits).
//!
//! The upgrade runs [`admit`] before it answers 101; `GET <path>?check`
//! (see `routes.rs`) runs the very same function and answers with what the
//! upgrade would have, as JSON: a browser cannot read the status of a
//! refused handshake, so this is how the page learns why, and whether
//! trying again can help.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::auth::{Grant, Rejection};
use crate::http::upgrade::Target;
use crate::http::Shared;
use crate::hub::{Endpoint, Ticket};
use crate::metrics::RefusedUpgrade;
use crate::origin::OriginDenied;
use crate::protocol::pusher::ChannelType;
use crate::protocol::v1::is_valid_room;
use crate::ratelimit::IpSlot;

/// Why a handshake was refused; each maps to one HTTP status, one
/// `reason` label (metrics and `?check`) and one sentence for the body.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a WebSocket upgrade at all (a plain GET).
    #[error("this endpoint speaks WebSocket; connect with a WebSocket client, e.g. wscat -c ws://HOST/echo")]
    NotWebSocket,
    /// A version other than 13.
    #[error("unsupported Sec-WebSocket-Version; this server speaks 13")]
    Version,
    /// A missing or malformed Sec-WebSocket-Key.
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
    /// No `Host` header, or several: RFC 6455 4.1 and RFC 9112 3.2 make
    /// one `Host` part of every HTTP/1.1 request, and an origin check
    /// against one of two could be passed with the other.
    #[error("the request needs exactly one Host header")]
    Host,
    /// An upgrade to a path that serves no WebSocket.
    #[error("no WebSocket at this path: wshub serves WebSocket on /echo, /ws and /ws/{{room}}")]
    NotFound,
    /// `/ws/{room}` with a name that is not 1-64 letters, digits, `-`, `_`, `.`.
    #[error("bad room name: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadRoom,
    /// A raw room named as a Pusher private or presence channel, whose
    /// members must show the app's signature.
    #[error(
        "rooms named private-* or presence-* are Pusher channels that need a signature: subscribe through /app/{{key}}"
    )]
    SignedChannel,
    /// The page's origin is not allowed.
    #[error("origin not allowed")]
    Origin,
    /// The page claims to be same-origin, with a Host this server is not
    /// known by (DNS rebinding, or a hostname `--allowed-origin` should list).
    #[error("origin not allowed: the Host header names a host this server is not configured for (list the page's origin with --allowed-origin)")]
    UnknownHost,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The token: missing or invalid (401), or a raw room it does not list (403).
    #[error("{0}")]
    Token(Rejection),
    /// `--max-connections-per-ip` reached.
    #[error("too many connections from your address, try again later")]
    TooManyFromAddress,
    /// `--max-connections` reached.
    #[error("server at its connection limit, try again later")]
    Full,
}

impl Refusal {
    /// The HTTP status the handshake gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotWebSocket | Refusal::Version => StatusCode::UPGRADE_REQUIRED,
            Refusal::Key | Refusal::Host | Refusal::BadRoom => StatusCode::BAD_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Origin
            | Refusal::UnknownHost
            | Refusal::SignedChannel
            | Refusal::Token(Rejection::ForbiddenRoom) => StatusCode::FORBIDDEN,
            Refusal::Token(Rejection::Unauthorized(_)) => StatusCode::UNAUTHORIZED,
            Refusal::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Full | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` label: of `wshub_upgrades_refused_total`, and in `?check`.
    pub fn label(&self) -> &'static str {
        RefusedUpgrade::from(self).as_str()
    }

    /// Whether the same request may succeed later: the limits and shutdown
    /// pass; a token, an origin or a path stay what they are.
    pub fn may_pass_later(&self) -> bool {
        matches!(
            self,
            Refusal::Full | Refusal::ShuttingDown | Refusal::TooManyFromAddress
        )
    }

    /// Whether the operator should hear of it (at warn, once per address):
    /// the others are a client's own mistakes, logged at debug.
    fn is_notable(&self) -> bool {
        matches!(
            self,
            Refusal::Origin | Refusal::UnknownHost | Refusal::Token(_) | Refusal::TooManyFromAddress | Refusal::Full
        )
    }
}

/// Each refusal counts under one `reason` label; two kinds of origin
/// refusal share one, so the label set stays what operators already graph.
impl From<&Refusal> for RefusedUpgrade {
    fn from(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::NotWebSocket => RefusedUpgrade::NotWebSocket,
            Refusal::Version => RefusedUpgrade::Version,
            Refusal::Key => RefusedUpgrade::Key,
            Refusal::Host => RefusedUpgrade::Host,
            Refusal::BadRoom => RefusedUpgrade::BadRoom,
            Refusal::Origin | Refusal::UnknownHost => RefusedUpgrade::Origin,
            Refusal::Full => RefusedUpgrade::Full,
            Refusal::ShuttingDown => RefusedUpgrade::ShuttingDown,
            Refusal::Token(rejection) => (*rejection).into(),
            Refusal::SignedChannel => RefusedUpgrade::SignedChannel,
            Refusal::TooManyFromAddress => RefusedUpgrade::TooManyFromAddress,
            Refusal::NotFound => RefusedUpgrade::NotFound,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if let Refusal::Token(rejection) = self {
            return rejection.into_response();
        }
        let status = self.status();
        let mut response = (status, self.to_string()).into_response();
        if status == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        response
    }
}

/// What a WebSocket request asks for, as far as access goes; the upgrade
/// and `?check` each read it from their request.
#[derive(Debug)]
pub(crate) struct Asked<'a> {
    pub target: &'a Target,
    pub endpoint: Endpoint,
    /// The page's origin, if a browser sent one.
    pub origin: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The access token presented, if any.
    pub token: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// Reads the origin, Host and token of a handshake request.
    pub fn from_handshake(target: &'a Target, endpoint: Endpoint, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Asked {
            target,
            endpoint,
            origin: origin_of(headers),
            host: headers.get(header::HOST).and_then(|v| v.to_str().ok()),
            token: crate::auth::presented_token(uri, headers),
        }
    }
}

/// The request's one `Origin`. A non-UTF-8 one, or a second one (a browser
/// sends one; checking the first of "allowed, then evil" would let the
/// other pass), is no origin this server allows.
fn origin_of(headers: &HeaderMap) -> Option<&str> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let first = origins.next()?;
    if origins.next().is_some() {
        return Some("invalid");
    }
    Some(first.to_str().unwrap_or("invalid"))
}

/// What the access checks let a connection have: its token's grant (when
/// tokens are required) and its place in its address's connection count.
#[derive(Debug)]
pub(crate) struct Admission {
    pub grant: Option<Grant>,
    pub ip_slot: IpSlot,
}

/// Runs every check of a WebSocket request after the handshake's own, in
/// order: room name, origin and Host, shutdown, token (401, or 403 for a
/// raw room it does not list), per-address limit (429), connection limit
/// (503). On success the caller holds the address slot and the
/// connection slot; dropping them (as `?check` does) gives them back.
pub(crate) fn admit(shared: &Shared, peer: SocketAddr, asked: &Asked<'_>) -> Result<(Admission, Ticket), Refusal> {
    if let Target::Chat(room) = asked.target {
        if !is_valid_room(room) {
            return Err(Refusal::BadRoom);
        }
        if !shared.apps.is_empty() && ChannelType::of(room).needs_auth() {
            return Err(Refusal::SignedChannel);
        }
    }
    shared
        .origins
        .check(asked.origin, asked.host)
        .map_err(|denied| match denied {
            OriginDenied::NotAllowed => Refusal::Origin,
            OriginDenied::UnknownHost => Refusal::UnknownHost,
        })?;
    if shared.is_shutting_down() {
        return Err(Refusal::ShuttingDown);
    }
    let grant = match &shared.auth {
        // A Pusher client proves itself per channel, with its backend's
        // signature, not with a wshub token.
        _ if asked.endpoint == Endpoint::Pusher => None,
        None => None,
        Some(verifier) => {
            let grant = match asked.token {
                None => Err(Rejection::Unauthorized("missing token")),
                Some(token) => verifier.verify(token),
            }
            .map_err(Refusal::Token)?;
            if let (Endpoint::Chat, Target::Chat(room)) = (asked.endpoint, asked.target) {
                if !grant.allows(room) {
                    return Err(Refusal::Token(Rejection::ForbiddenRoom));
                }
            }
            Some(grant)
        }
    };
    let ip_slot = shared
        .hub
        .per_ip()
        .acquire(peer.ip())
        .ok_or(Refusal::TooManyFromAddress)?;
    let ticket = shared.hub.reserve(asked.endpoint).ok_or(Refusal::Full)?;
    Ok((Admission { grant, ip_slot }, ticket))
}

/// Answers a refused upgrade: counts it, logs it (see [`RefusalLog`]) and
/// builds the response with its status and reason.
pub(crate) fn refuse(shared: &Shared, peer: SocketAddr, uri: &Uri, headers: &HeaderMap, refusal: Refusal) -> Response {
    shared.hub.metrics().upgrade_refused(&refusal);
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if refusal.is_notable()
        && shared
            .refusals
            .first_in_a_while(peer.ip(), refusal.label(), Instant::now())
    {
        tracing::warn!(%peer, path = uri.path(), origin, "refused upgrade: {refusal}");
    } else {
        tracing::debug!(%peer, path = uri.path(), origin, "refused upgrade: {refusal}");
    }
    refusal.into_response()
}

/// How long after a warning the same address's refusals for the same
/// reason stay at debug.
const QUIET_FOR: Duration = Duration::from_secs(600);

/// Addresses remembered at most; beyond, new ones are logged at debug
/// until old entries expire (memory stays bounded whatever clients do).
const MAX_REMEMBERED: usize = 4096;

/// Which (address, reason) pairs were logged at warn lately, so that a page
/// retrying a refused handshake every few seconds logs one warning, not
/// one per attempt; each refusal is still counted in
/// `wshub_upgrades_refused_total`.
#[derive(Debug, Default)]
pub struct RefusalLog {
    warned: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
}

impl RefusalLog {
    /// Whether this refusal is the first of its address and reason for
    /// [`QUIET_FOR`] (and should be logged at warn).
    fn first_in_a_while(&self, ip: IpAddr, reason: &'static str, now: Instant) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = warned.get(&(ip, reason)) {
            if now.saturating_duration_since(*at) < QUIET_FOR {
                return false;
            }
        }
        if warned.len() >= MAX_REMEMBERED {
            warned.retain(|_, at| now.saturating_duration_since(*at) < QUIET_FOR);
            if warned.len() >= MAX_REMEMBERED {
                return false;
            }
        }
        warned.insert((ip, reason), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_warns_once_per_address_and_reason_in_a_while() {
        let log = RefusalLog::default();
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(log.first_in_a_while(a, "unauthorized", start));
        for s in 1..100 {
            assert!(!log.first_in_a_while(a, "unauthorized", start + Duration::from_secs(s)));
        }
        assert!(log.first_in_a_while(a, "origin", start), "another reason");
        assert!(log.first_in_a_while(b, "unauthorized", start), "another address");
        assert!(log.first_in_a_while(a, "unauthorized", start + QUIET_FOR));
    }

    #[test]
    fn the_memory_of_warnings_is_bounded() {
        let log = RefusalLog::default();
        let start = Instant::now();
        for n in 0..MAX_REMEMBERED as u32 {
            assert!(log.first_in_a_while(IpAddr::from(n.to_be_bytes()), "full", start));
        }
        let newcomer = IpAddr::from([10, 255, 255, 255]);
        assert!(!log.first_in_a_while(newcomer, "full", start), "full table: debug");
        assert_eq!(log.warned.lock().unwrap().len(), MAX_REMEMBERED);
        // Once the old entries expire they make room.
        assert!(log.first_in_a_while(newcomer, "full", start + QUIET_FOR));
        assert_eq!(log.warned.lock().unwrap().len(), 1);
    }

    #[test]
    fn each_refusal_has_its_status_and_label() {
        let cases = [
            (Refusal::NotFound, 404, "not_found", false),
            (Refusal::Host, 400, "host", false),
            (Refusal::Origin, 403, "origin", false),
            (Refusal::UnknownHost, 403, "origin", false),
            (
                Refusal::Token(Rejection::Unauthorized("missing token")),
                401,
                "unauthorized",
                false,
            ),
            (Refusal::Token(Rejection::ForbiddenRoom), 403, "forbidden_room", false),
            (Refusal::TooManyFromAddress, 429, "too_many_from_address", true),
            (Refusal::Full, 503, "full", true),
            (Refusal::ShuttingDown, 503, "shutting_down", true),
        ];
        for (refusal, status, label, later) in cases {
            assert_eq!(refusal.status().as_u16(), status, "{refusal}");
            assert_eq!(refusal.label(), label, "{refusal}");
            assert_eq!(refusal.may_pass_later(), later, "{refusal}");
            assert_eq!(refusal.into_response().status().as_u16(), status);
        }
    }
}
