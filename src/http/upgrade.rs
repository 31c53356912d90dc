//! The WebSocket handshake (RFC 6455 section 4.2), done before any socket
//! exists: the last point where a request can still be refused with an
//! HTTP status. The handshake headers are checked here, who may connect in
//! `access.rs`; then the connection's task takes over the upgraded socket.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use crate::connection::{CloseRequest, ConnectionTask, Farewell, Outbox, Setup};
use crate::http::access::{admit, refuse, Admission, Asked, Refusal};
use crate::http::placement::Counted;
use crate::http::Shared;
use crate::hub::{Endpoint, Member, Mode, Replay, Ticket};
use crate::protocol::pusher::{check_protocol, ErrorCode};
use crate::protocol::v1::SUBPROTOCOL;
use crate::protocol::{negotiate, CloseCode, DeflateParams};
use crate::service::pusher::{self, PusherSession};
use crate::service::{Echo, Identity, RawChat, Service, V1Session};

/// The GUID every server appends to the client's key (RFC 6455 1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Which service a WebSocket path asks for.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/echo`.
    Echo,
    /// `/ws` (the room `lobby`) or `/ws/{room}`.
    Chat(String),
    /// `/app/{key}`: Pusher, for the app with this key, in the protocol
    /// version of the `protocol` query parameter.
    Pusher {
        /// The app key of the path.
        key: String,
        /// The `protocol` parameter, if there was one.
        version: Option<String>,
    },
}

impl Target {
    /// The endpoint a request for this target is counted under: chat
    /// paths offered `wshub.v1` speak the subprotocol.
    pub fn endpoint(&self, offers_subprotocol: bool) -> Endpoint {
        match (self, offers_subprotocol) {
            (Target::Echo, _) => Endpoint::Echo,
            (Target::Pusher { .. }, _) => Endpoint::Pusher,
            (Target::Chat(_), true) => Endpoint::V1,
            (Target::Chat(_), false) => Endpoint::Chat,
        }
    }
}

/// Accepts (or refuses) a WebSocket upgrade for `target`.
pub fn upgrade(shared: &Arc<Shared>, peer: SocketAddr, mut request: Request, target: Target) -> Response {
    let protocol = matches!(target, Target::Chat(_)) && offers_subprotocol(request.headers());
    let endpoint = target.endpoint(protocol);
    let checked = handshake(&request).and_then(|accept| {
        let asked = Asked::from_handshake(&target, endpoint, request.uri(), request.headers());
        admit(shared, peer, &asked).map(|admitted| (accept, admitted))
    });
    let (accept, (admission, ticket)) = match checked {
        Ok(checked) => checked,
        Err(refusal) => return refuse(shared, peer, request.uri(), request.headers(), refusal),
    };
    // permessage-deflate (RFC 7692), when enabled and offered: without
    // context takeover either way, so it costs an idle connection nothing.
    let deflate = if shared.config.permessage_deflate {
        let offers = request.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        negotiate(offers.iter().filter_map(|v| v.to_str().ok()))
    } else {
        None
    };
    // The connection joins its room (and is registered) before the 101
    // goes out: a raw client receives every message published after its
    // handshake completes, however long its task then takes to start.
    let prepared = prepare(shared, ticket, peer, (target, deflate), admission);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_shared = shared.clone();
    shared.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(task_shared, prepared, upgraded).await,
            Err(e) => tracing::debug!(%peer, "upgrade did not complete: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    if let Some(value) = deflate.and_then(|d| HeaderValue::from_str(&d.response_header()).ok()) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    response
}

/// Whether the request offers `wshub.v1` in `Sec-WebSocket-Protocol`.
pub(crate) fn offers_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// The handshake's own request (RFC 6455 4.2.1): a GET of HTTP/1.1 or
/// later (hyper upgrades nothing older, so a 1.0 client would get a 101
/// and then nothing), an upgrade to WebSocket, version 13, a 16-byte key,
/// one `Host`. Who may connect is [`admit`]'s part.
fn handshake(request: &Request) -> Result<HeaderValue, Refusal> {
    if request.method() != Method::GET || request.version() < Version::HTTP_11 {
        return Err(Refusal::NotWebSocket);
    }
    let headers = request.headers();
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(Refusal::Host);
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(Refusal::NotWebSocket);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refusal::Version);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(Refusal::Key)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| Refusal::Key)?;
    if decoded.len() != 16 {
        return Err(Refusal::Key);
    }
    Ok(accept_key(key.as_bytes()))
}

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

/// Takes the raw socket back from hyper (so no HTTP layer stays in between)
/// and starts the connection's own task, on this worker, where its
/// handshake ran; this one then ends, so nothing of the upgrade stays
/// alive.
async fn run(shared: Arc<Shared>, prepared: Prepared, upgraded: Upgraded) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return launch(&shared, prepared, parts.io.into_inner(), parts.read_buf),
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
        Ok(parts) => {
            // rustls keeps kilobytes of state inline: boxed, it costs TLS
            // connections one pointer more and plain ones nothing.
            let stream = Box::new(parts.io.into_inner());
            launch(&shared, prepared, stream, parts.read_buf)
        }
        Err(upgraded) => {
            let stream = TokioIo::new(upgraded);
            launch(&shared, prepared, stream, Bytes::new())
        }
    }
}

/// The service asked for and the compression agreed in the handshake.
type Agreed = (Target, Option<DeflateParams>);

/// A connection that has everything but its socket: registered, in its
/// room, greeted (`wshub.v1`); what arrives for it waits in its outbox.
/// Dropped, it leaves again (a handshake the client did not complete).
#[derive(Debug)]
struct Prepared {
    setup: Setup<Service>,
    farewell: Farewell,
}

fn prepare(shared: &Shared, ticket: Ticket, addr: SocketAddr, agreed: Agreed, admission: Admission) -> Prepared {
    let config = &shared.config;
    let endpoint = ticket.endpoint();
    let (target, deflate) = agreed;
    let outbox = Arc::new(Outbox::new(config.max_queue_messages, config.max_queue_bytes).with_deflate(deflate));
    let registration = ticket.register(outbox.clone());
    if shared.shutting_down.load(Ordering::Acquire) {
        // Shutdown began between the checks and now: close at once.
        outbox.request_close(CloseRequest::Graceful(CloseCode::GoingAway, "server shutting down"));
    }
    let hub = registration.hub().clone();
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let Admission { grant, ip_slot } = admission;
    let authenticated = grant.is_some();
    let (token_nick, user, rooms, expires_in) = match grant {
        Some(grant) => (grant.nick, grant.user, grant.rooms, Some(grant.expires_in)),
        None => (None, None, None, None),
    };
    let service = match (endpoint, target) {
        (_, Target::Pusher { key, version }) => {
            let tenant = shared.pusher.tenants.by_key(&key).ok_or(ErrorCode::AppDoesNotExist);
            let admitted = tenant.and_then(|tenant| {
                check_protocol(version.as_deref())?;
                let slot = tenant.admit().ok_or(ErrorCode::OverConnectionQuota)?;
                Ok((tenant.clone(), slot))
            });
            match admitted {
                Ok(admitted) => {
                    let conn = crate::hub::connection_number(&outbox);
                    let session = PusherSession::new(hub.clone(), outbox.clone(), admitted, conn, &shared.pusher);
                    Service::Pusher(Box::new(session))
                }
                Err(code) => {
                    tracing::debug!(peer = %addr, key, "Pusher connection refused: {code}");
                    pusher::refuse(&outbox, code);
                    Service::Closing(Endpoint::Pusher)
                }
            }
        }
        (Endpoint::V1, _) => {
            // With tokens required the name is the token's (or, for a token
            // without `name` and `sub`, the guest name): locked either way,
            // so that no one can take a name the token did not give.
            let identity = Identity {
                nick: token_nick.unwrap_or_else(|| Arc::from(format!("guest-{id}"))),
                user,
                nick_locked: authenticated,
            };
            let mut session = V1Session::new(hub.clone(), outbox.clone(), identity, shared.chat_limits);
            if let Some(rooms) = rooms {
                session.restrict_rooms(rooms);
            }
            Service::V1(Box::new(session))
        }
        (_, Target::Chat(room)) => {
            let member = match token_nick {
                Some(nick) => Member::new(outbox.clone(), Mode::Raw, nick).with_user(user),
                None => Member::guest(outbox.clone(), id),
            };
            Service::Chat(RawChat::new(hub.join(&room, member, Replay::Nothing)))
        }
        (_, Target::Echo) => Service::Echo(Echo),
    };
    let setup = Setup {
        service,
        outbox,
        hub,
        id,
        max_message_size: config.max_message_size,
        expires_in,
    };
    let mut registration = registration;
    registration.set_ip_counted(ip_slot.hand_over(addr.ip()));
    Prepared {
        setup,
        farewell: Farewell { registration, addr },
    }
}

/// Spawns the connection's task, on the runtime this runs on (its worker's,
/// which it never leaves), counted on that worker.
fn launch<S>(shared: &Shared, prepared: Prepared, stream: S, already_read: Bytes)
where
    S: crate::connection::Transport + Send + 'static,
{
    let Prepared { setup, farewell } = prepared;
    let endpoint = farewell.registration.endpoint();
    setup.hub.metrics().connection_opened(endpoint);
    tracing::info!(peer = %farewell.addr, conn = setup.id, endpoint = endpoint.as_str(), "connection opened");
    let task = ConnectionTask::new(stream, already_read, setup, farewell);
    match Counted::on_this_worker(task) {
        Ok(counted) => {
            shared.tracker.spawn(counted);
        }
        Err(task) => {
            shared.tracker.spawn(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each connection's task keeps this future for its whole life: its
    /// size is per-connection memory (the idle target is 1 KiB in all).
    /// tokio rounds a task's cell up to a multiple of 128 bytes: a spawned
    /// future (with the tracker's 8 bytes) of at most 280 bytes gets a
    /// 384-byte cell, one byte more a 512-byte one.
    #[test]
    fn the_plain_connection_task_fits_a_384_byte_task_cell() {
        type Spawned = tokio_util::task::task_tracker::TrackedFuture<Counted<ConnectionTask<TcpStream, Service>>>;
        let size = std::mem::size_of::<Spawned>();
        assert!(size <= 280, "the spawned connection future is {size} bytes");
        let uncounted =
            std::mem::size_of::<tokio_util::task::task_tracker::TrackedFuture<ConnectionTask<TcpStream, Service>>>();
        assert_eq!(size, uncounted, "counting on a worker costs the task nothing");
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
