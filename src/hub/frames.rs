//! The wshub.v1 frames the hub sends for a room: messages, history chunks,
//! member lists. Each is encoded once and shared by every member that
//! gets it.

use bytes::Bytes;

use super::Outbox;
use crate::broker::{ListedMember, Replayed};
use crate::history::Entry;
use crate::protocol::v1::{ChatMessage, MemberCount, ServerFrame};
use crate::protocol::{encode_frame, OpCode};

/// Messages per `history` frame when replaying.
const HISTORY_CHUNK: usize = 500;

/// Text bytes per `history` frame, about: a replay is paced a frame at a
/// time, so a frame must fit well within a member's outbound bounds.
const HISTORY_CHUNK_BYTES: usize = 256 * 1024;

/// Encodes a server frame as one WebSocket text frame.
pub(crate) fn text_frame(frame: &ServerFrame) -> Bytes {
    encode_frame(OpCode::Text, frame.to_json().as_bytes())
}

/// A `message` frame for `entry` in `room`.
pub(crate) fn message_frame(room: &str, entry: &Entry, client_ref: Option<String>, local: bool) -> Bytes {
    text_frame(&ServerFrame::Message {
        room: room.to_owned(),
        message: chat_message(entry),
        client_ref,
        local,
    })
}

/// A `presence` frame listing `members`.
pub(crate) fn presence_frame(room: &str, members: Vec<ListedMember>) -> Bytes {
    text_frame(&ServerFrame::Presence {
        room: room.to_owned(),
        count: members.iter().map(|m| m.connections).sum(),
        members: members
            .into_iter()
            .map(|m| MemberCount {
                nick: m.nick,
                user: m.user,
                connections: m.connections,
            })
            .collect(),
    })
}

/// Queues a replay: the `history_truncated` error first when retention
/// dropped part of what was asked, `history_unavailable` when the store
/// could not be read, then the entries.
pub(crate) fn push_replay(outbox: &Outbox, room: &str, replayed: &Replayed) {
    if let Some(notice) = replay_notice(room, replayed) {
        let _ = outbox.push(text_frame(&notice));
    }
    push_history(outbox, room, &replayed.entries);
}

/// What a `wshub.v1` client is told before a replay that is not all
/// that was asked for.
pub(crate) fn replay_notice(room: &str, replayed: &Replayed) -> Option<ServerFrame> {
    if replayed.unavailable {
        Some(ServerFrame::history_unavailable(room))
    } else {
        replayed
            .truncated
            .map(|first_available| ServerFrame::history_truncated(room, first_available))
    }
}

/// Queues `entries` as `history` frames (see [`history_chunk`]).
pub(crate) fn push_history(outbox: &Outbox, room: &str, entries: &[Entry]) {
    if entries.is_empty() {
        let _ = outbox.push(history_frame(room, &[]));
    }
    let mut rest = entries;
    while !rest.is_empty() {
        let (count, _) = history_chunk(rest.iter());
        let (chunk, after) = rest.split_at(count);
        let _ = outbox.push(history_frame(room, chunk));
        rest = after;
    }
}

/// How many of `entries` go in the next `history` frame, and about how
/// many bytes of text they hold: at most [`HISTORY_CHUNK`] messages and
/// [`HISTORY_CHUNK_BYTES`] of text, and at least one message. Frames stay
/// small enough to pace a replay by, and a single big message is never
/// stuck.
pub(crate) fn history_chunk<'a>(entries: impl Iterator<Item = &'a Entry>) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    for entry in entries.take(HISTORY_CHUNK) {
        let size = entry_bytes(entry);
        if count > 0 && bytes + size > HISTORY_CHUNK_BYTES {
            break;
        }
        count += 1;
        bytes += size;
    }
    (count, bytes)
}

/// What one entry adds to a `history` frame, roughly: its text and nickname
/// and the JSON around them.
fn entry_bytes(entry: &Entry) -> usize {
    entry.text.len() + entry.nick.len() + 64
}

pub(crate) fn history_frame(room: &str, entries: &[Entry]) -> Bytes {
    text_frame(&ServerFrame::History {
        room: room.to_owned(),
        messages: entries.iter().map(chat_message).collect(),
    })
}

fn chat_message(entry: &Entry) -> ChatMessage {
    ChatMessage {
        id: entry.id,
        ts: entry.ts,
        nick: entry.nick.to_string(),
        user: entry.user.as_deref().map(str::to_owned),
        text: entry.text.to_string(),
        event: entry.event.as_deref().map(str::to_owned),
    }
}
