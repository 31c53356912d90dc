//! The `wshub.v1` service: a connection's chat session (its nickname, its
//! rooms) and what each JSON request does.
//!
//! Bad requests get an error frame and the connection stays; a client
//! that keeps sending them past `max_bad_requests` is closed with 1008.
//! Nothing from a bad request reaches other clients or history.

use std::sync::Arc;

use crate::broker::Span;
use crate::connection::{GiveUp, Handler};
use crate::hub::frames::text_frame;
use crate::hub::{Endpoint, Hub, Member, Membership, Mode, Outbox, Replay};
use crate::protocol::pusher::ChannelType;
use crate::protocol::v1::{
    is_valid_nick, is_valid_ref, is_valid_room, parse_client_frame, ClientFrame, ErrorCode, ServerFrame, MAX_REF_BYTES,
    MAX_ROOM_CHARS, SUBPROTOCOL,
};
use crate::protocol::{Message, MessageKind};

/// Per-connection limits of the chat protocol.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Rooms one connection may be in at once (`--max-rooms-per-conn`).
    pub max_rooms: usize,
    /// Longest `text`, in bytes (`--max-text-size`).
    pub max_text_bytes: usize,
    /// Bad requests tolerated before closing with 1008 (`--max-bad-requests`).
    pub max_bad_requests: u32,
    /// Most messages one `history` request returns.
    pub max_history: usize,
    /// Rooms named as Pusher's signed channels (`private-*`, `presence-*`)
    /// are closed to `wshub.v1` clients: with apps configured, their
    /// members must show the app's signature.
    pub signed_channels_reserved: bool,
}

/// Who a connection is: its starting nickname and, when it presented an
/// access token, the token's user id and whether the name is the token's.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The nickname to start with.
    pub nick: Arc<str>,
    /// The token's `sub`: carried by the connection's messages and presence
    /// entries.
    pub user: Option<Arc<str>>,
    /// The nickname comes from an access token and cannot be changed: with
    /// tokens required, nobody may speak under a name the token did not give.
    pub nick_locked: bool,
}

/// One `wshub.v1` connection's state.
#[derive(Debug)]
pub struct V1Session {
    hub: Hub,
    outbox: Arc<Outbox>,
    nick: Arc<str>,
    user: Option<Arc<str>>,
    nick_locked: bool,
    rooms: Vec<Membership>,
    bad_requests: u32,
    limits: ChatLimits,
    /// The rooms the connection's access token allows; `None`: any.
    allowed_rooms: Option<Box<[Box<str>]>>,
    /// Some room's replay may still be being paced out to this client.
    replaying: bool,
}

impl V1Session {
    /// Starts a session and greets the client with `welcome`.
    pub fn new(hub: Hub, outbox: Arc<Outbox>, identity: Identity, limits: ChatLimits) -> Self {
        let Identity {
            nick,
            user,
            nick_locked,
        } = identity;
        let welcome = ServerFrame::Welcome {
            nick: nick.to_string(),
            user: user.as_deref().map(str::to_owned),
            nick_locked,
            protocol: SUBPROTOCOL.to_owned(),
            max_text_bytes: limits.max_text_bytes,
        };
        let _ = outbox.reply(text_frame(&welcome));
        V1Session {
            hub,
            outbox,
            nick,
            user,
            nick_locked,
            rooms: Vec::new(),
            bad_requests: 0,
            limits,
            allowed_rooms: None,
            replaying: false,
        }
    }

    /// Sends more of any replay being paced out, now that the connection
    /// has written out what it had queued (see `hub::room::Replaying`);
    /// true while some replay is not over.
    pub fn continue_replays(&mut self) -> bool {
        if self.replaying {
            let mut left = false;
            for membership in &self.rooms {
                left |= membership.continue_replay();
            }
            self.replaying = left;
        }
        self.replaying
    }

    /// Restricts `join` to `rooms` (a token's `rooms` claim): any other
    /// room gets `forbidden_room`.
    pub fn restrict_rooms(&mut self, rooms: Box<[Box<str>]>) {
        self.allowed_rooms = Some(rooms);
    }

    /// Tells the client that `message` was over its rate limits and was
    /// dropped, naming its `ref` and room when it had them (so the sender
    /// knows which one). Not a bad request: a client that slows down is
    /// fine.
    pub fn rate_limited(&mut self, message: &Message) {
        let (room, client_ref) = request_tags(message, max_request_bytes(self.limits.max_text_bytes));
        let error = ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: "over the rate limit: message dropped, slow down".to_owned(),
            room,
            first_available: None,
            client_ref,
        };
        let _ = self.outbox.reply(text_frame(&error));
    }

    /// Handles one message from the client.
    ///
    /// # Errors
    /// [`GiveUp`] when the client has sent too many bad requests.
    pub fn on_message(&mut self, message: &Message) -> Result<(), GiveUp> {
        let max_request = max_request_bytes(self.limits.max_text_bytes);
        let request = match message.kind() {
            MessageKind::Binary => Err((ErrorCode::BadJson, "binary frames are not part of wshub.v1".to_owned())),
            // Refused before parsing: an oversized request costs no JSON
            // work, and no field of it can travel on.
            MessageKind::Text if message.payload().len() > max_request => {
                Err((ErrorCode::TooLong, format!("request over {max_request} bytes")))
            }
            MessageKind::Text => parse_client_frame(message.payload()),
        };
        let result = match request {
            Ok(request) => {
                let client_ref = request.client_ref().filter(|r| is_valid_ref(r)).map(str::to_owned);
                self.handle(request).map_err(|refusal| refusal.with_ref(client_ref))
            }
            Err((code, text)) => Err(Refusal::new(code, text, None).with_ref(request_tags(message, max_request).1)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(refusal) => self.refuse(refusal),
        }
    }

    fn refuse(&mut self, refusal: Refusal) -> Result<(), GiveUp> {
        tracing::debug!(code = ?refusal.code, "bad request: {}", refusal.message);
        let frame = ServerFrame::Error {
            code: refusal.code,
            message: refusal.message,
            room: refusal.room,
            first_available: None,
            client_ref: refusal.client_ref,
        };
        let _ = self.outbox.reply(text_frame(&frame));
        self.bad_requests += 1;
        if self.bad_requests > self.limits.max_bad_requests {
            return Err(GiveUp("too many bad requests"));
        }
        Ok(())
    }

    fn handle(&mut self, request: ClientFrame) -> Result<(), Refusal> {
        match request {
            ClientFrame::Join { room, since } => {
                check_room(&room)?;
                if self.limits.signed_channels_reserved && ChannelType::of(&room).needs_auth() {
                    let text = "a Pusher private or presence channel: subscribe through /app/{key} with its signature";
                    return Err(Refusal::new(ErrorCode::ForbiddenRoom, text, Some(room)));
                }
                if let Some(allowed) = &self.allowed_rooms {
                    if !allowed.iter().any(|r| **r == *room) {
                        let text = "your access token does not allow this room";
                        return Err(Refusal::new(ErrorCode::ForbiddenRoom, text, Some(room)));
                    }
                }
                if self.position(&room).is_some() {
                    return Err(Refusal::new(
                        ErrorCode::AlreadyJoined,
                        "already in this room",
                        Some(room),
                    ));
                }
                if self.rooms.len() >= self.limits.max_rooms {
                    let text = format!("at most {} rooms per connection", self.limits.max_rooms);
                    return Err(Refusal::new(ErrorCode::TooManyRooms, text, Some(room)));
                }
                let member =
                    Member::new(self.outbox.clone(), Mode::Json, self.nick.clone()).with_user(self.user.clone());
                let replay = since.map_or(Replay::Recent, Replay::Since);
                self.rooms.push(self.hub.join(&room, member, replay));
                self.replaying = true;
            }
            ClientFrame::Leave { room } => {
                let index = self.joined(&room)?;
                self.rooms.swap_remove(index);
            }
            ClientFrame::Nick { nick } if self.nick_locked => {
                if nick.as_str() != &*self.nick {
                    tracing::info!(user = ?self.user, "nick refused: the nickname comes from the access token");
                    let text = format!("your nickname is {} (from your access token)", self.nick);
                    return Err(Refusal::new(ErrorCode::NickLocked, text, None));
                }
                // The name it already has: nothing changes.
                let _ = self.outbox.reply(text_frame(&ServerFrame::Nick { nick }));
            }
            ClientFrame::Nick { nick } => {
                if !is_valid_nick(&nick) {
                    let text = "a nickname is 1 to 32 characters, without control characters";
                    return Err(Refusal::new(ErrorCode::BadNick, text, None));
                }
                self.nick = Arc::from(nick.as_str());
                // The confirmation first, then the rooms' left/joined events.
                let _ = self.outbox.reply(text_frame(&ServerFrame::Nick { nick }));
                for membership in &self.rooms {
                    membership.rename(self.nick.clone());
                }
            }
            ClientFrame::Send { room, text, client_ref } => {
                let index = self.joined(&room)?;
                if text.len() > self.limits.max_text_bytes {
                    let message = format!("text over {} bytes", self.limits.max_text_bytes);
                    return Err(Refusal::new(ErrorCode::TooLong, message, Some(room)));
                }
                if client_ref.as_deref().is_some_and(|r| !is_valid_ref(r)) {
                    let message = format!("a ref is at most {MAX_REF_BYTES} bytes");
                    // Not echoed back: it is what is wrong.
                    return Err(Refusal::new(ErrorCode::BadField, message, Some(room)));
                }
                self.rooms[index].publish_text(&self.nick, self.user.as_ref(), &text, client_ref);
            }
            ClientFrame::History { room, since, limit } => {
                let index = self.joined(&room)?;
                let limit = limit.unwrap_or(self.hub.join_history()).min(self.limits.max_history);
                let span = match since {
                    None => Span::Latest(limit),
                    Some(after) => Span::After(after, limit),
                };
                self.rooms[index].send_history(self.outbox.clone(), span);
            }
            ClientFrame::Members { room } => {
                let index = self.joined(&room)?;
                self.rooms[index].send_members(self.outbox.clone());
            }
        }
        Ok(())
    }

    fn position(&self, room: &str) -> Option<usize> {
        self.rooms.iter().position(|m| &**m.room().name() == room)
    }

    fn joined(&self, room: &str) -> Result<usize, Refusal> {
        check_room(room)?;
        self.position(room)
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, "join the room first", Some(room.to_owned())))
    }
}

/// A `wshub.v1` client is told of each message dropped for its rate (with
/// `rate_limited`), so it is not throttled.
impl Handler for V1Session {
    fn endpoint(&self) -> Endpoint {
        Endpoint::V1
    }

    fn throttles(&self) -> bool {
        false
    }

    fn on_message(&mut self, message: &Message, _outbox: &Outbox) -> Result<(), GiveUp> {
        V1Session::on_message(self, message)
    }

    fn rate_limited(&mut self, message: &Message) {
        V1Session::rate_limited(self, message);
    }

    fn continue_replays(&mut self) -> bool {
        V1Session::continue_replays(self)
    }
}

fn check_room(room: &str) -> Result<(), Refusal> {
    if is_valid_room(room) {
        Ok(())
    } else {
        let text = "a room name is 1 to 64 letters, digits, '-', '_' or '.'";
        // Named back only when short: the error must not carry a payload.
        let named = (room.len() <= 4 * MAX_ROOM_CHARS).then(|| room.to_owned());
        Err(Refusal::new(ErrorCode::BadRoom, text, named))
    }
}

/// The largest `wshub.v1` request accepted, in bytes: room for a text of
/// `max_text_bytes` even if every byte of it is JSON-escaped (`\u0001` is
/// six bytes for one), plus the other fields. Anything larger is refused
/// unread, whatever field makes it large.
pub(crate) fn max_request_bytes(max_text_bytes: usize) -> usize {
    max_text_bytes.saturating_mul(6).saturating_add(1024)
}

/// The `room` and `ref` of a request that is not handled (dropped for the
/// rate, or unparseable as a whole), when they can be read and are valid:
/// the error frame names them so that the sender knows which request it
/// was.
fn request_tags(message: &Message, max_request: usize) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Tags {
        #[serde(default)]
        room: Option<String>,
        #[serde(default, rename = "ref")]
        client_ref: Option<String>,
    }
    if message.kind() != MessageKind::Text || message.payload().len() > max_request {
        return (None, None);
    }
    match serde_json::from_slice::<Tags>(message.payload()) {
        Ok(tags) => (
            tags.room.filter(|room| is_valid_room(room)),
            tags.client_ref.filter(|r| is_valid_ref(r)),
        ),
        Err(_) => (None, None),
    }
}

/// A refused request, before it becomes an error frame.
struct Refusal {
    code: ErrorCode,
    message: String,
    room: Option<String>,
    client_ref: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>, room: Option<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            room,
            client_ref: None,
        }
    }

    /// Names the refused request's `ref` in the error frame.
    fn with_ref(mut self, client_ref: Option<String>) -> Self {
        self.client_ref = client_ref;
        self
    }
}
