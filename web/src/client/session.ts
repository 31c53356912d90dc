/**
 * Chat session state for `wshub.v1`: a pure reducer, no React, no sockets.
 *
 * - Rooms: one transcript per room visited (switching back keeps it), the member list from
 *   `presence` snapshots kept current by `joined` / `left`.
 * - Messages are merged by id: a message whose id is already shown is dropped (catch-up after a
 *   reconnect, a history frame that overlaps), and each one is placed in id order, whatever order
 *   frames arrive in. System lines (connected, disconnected, joined…) stay where they were added.
 * - `since` bookkeeping: `lastId` is the greatest id seen per room; `joinFrame` puts it in the
 *   `join` sent after a reconnect, so the server replays only what was missed.
 * - Own messages: each `send` carries a `ref`; the `message` with that ref is ours. Sends still
 *   waiting when the connection drops become "not confirmed"; if the catch-up history then holds
 *   the same text under our nickname, that copy is taken as ours (the server did get it).
 *   With access tokens, `welcome` names our `user` (the token's `sub`), and every message with
 *   that `user` is ours too: after a reload (no refs left) and from our other tabs.
 * - Presence: entries are per nickname and user (`joined` / `left` carry the user, if any).
 * - Local messages (`local: true`, id 0: delivered only within this server while cross-node
 *   delivery is interrupted) are not numbered: never deduplicated by id, never moving `lastId`,
 *   appended in arrival order with a "local only" marker (own ones still recognised by `ref`).
 * - Access: `forbidden_room` for the room just switched to goes back to the previous room (the
 *   client then re-joins it); for the first room there is nowhere to go back to, so it stays shown.
 * - Ids restart only if the server lost its history (a restart with the in-memory store). A new
 *   message whose id is already taken by a different message, or a live message with an id not
 *   above the last one, starts a new numbering ("epoch"): the old lines stay above it.
 */
import type { Line } from './lines';
import type { ClientFrame, ErrorCode, Member, NoticeCode, ServerFrame, StoredMessage } from './v1';

/** Most lines kept per room; older ones are dropped. */
export const DEFAULT_LINE_LIMIT = 500;
/** Most notices shown at once. */
const NOTICE_LIMIT = 4;

/** `out`: not in the room on this connection. `joining`: join sent. `joined`: the server answered. */
export type RoomPhase = 'out' | 'joining' | 'joined';

export interface RoomState {
  name: string;
  /** Messages in id order (per epoch), with system lines where they happened. */
  lines: Line[];
  /** Greatest message id seen in the current epoch: the next `join`'s `since`. */
  lastId: number | null;
  epoch: number;
  phase: RoomPhase;
  /** Latest presence, or null while not joined. Sorted by nick (the server's order). */
  members: Member[] | null;
  /** Connections in the room. */
  count: number;
}

/** A message we sent that the server has not relayed back yet. */
export interface PendingSend {
  ref: string;
  room: string;
  text: string;
  ts: number;
  /** Our nickname when it was sent. */
  nick: string | null;
  status: 'pending' | 'unconfirmed' | 'failed';
}

/** Something for the user to read and dismiss (error and notice frames, lost history). */
export interface Notice {
  key: string;
  code: ErrorCode | NoticeCode | 'bad_frame';
  text: string;
  room?: string;
}

export interface SessionState {
  /** The room shown, and joined while connected. */
  room: string;
  /** The room shown before the last switch (to go back to if the new one is refused). */
  previousRoom: string | null;
  /** Our nickname as the server knows it (null before the first `welcome`). */
  nick: string | null;
  /** Our user id from `welcome` (the access token's `sub`), or null without one. */
  user: string | null;
  /** From `welcome`: the nickname comes from the access token and cannot be changed. */
  nickLocked: boolean;
  /** A socket is open. */
  online: boolean;
  /** From `welcome`: the longest text the server takes, in UTF-8 bytes. */
  maxTextBytes: number | null;
  rooms: Readonly<Record<string, RoomState>>;
  pending: PendingSend[];
  notices: Notice[];
  /** Next key number for system lines and notices. */
  seq: number;
  limit: number;
}

export type SessionAction =
  | { type: 'online' }
  | { type: 'offline' }
  /** We sent `join` for `room`. */
  | { type: 'joining'; room: string }
  /** We sent `leave` for `room`. */
  | { type: 'leaving'; room: string }
  /** Show another room (the client sends leave + join around it). */
  | { type: 'switch'; room: string }
  | { type: 'frame'; frame: ServerFrame; now: number }
  | { type: 'sent'; ref: string; room: string; text: string; ts: number }
  /** A system line in `room` (default: the current room). */
  | { type: 'system'; text: string; ts: number; tone?: 'info' | 'error'; room?: string }
  | { type: 'notice'; code: Notice['code']; text: string; room?: string }
  | { type: 'dismiss'; key: string };

export function emptyRoom(name: string): RoomState {
  return { name, lines: [], lastId: null, epoch: 0, phase: 'out', members: null, count: 0 };
}

export function initialSession(room: string, limit = DEFAULT_LINE_LIMIT): SessionState {
  return {
    room,
    previousRoom: null,
    nick: null,
    user: null,
    nickLocked: false,
    online: false,
    maxTextBytes: null,
    rooms: { [room]: emptyRoom(room) },
    pending: [],
    notices: [],
    seq: 0,
    limit,
  };
}

/** The `join` to send for `room`: with `since` when we have seen messages there. */
export function joinFrame(state: SessionState, room: string): Extract<ClientFrame, { type: 'join' }> {
  const since = state.rooms[room]?.lastId;
  return since === null || since === undefined ? { type: 'join', room } : { type: 'join', room, since };
}

/** Notice texts for the cross-node status (`cross_node_interrupted` / `cross_node_restored`). */
export const CROSS_NODE_INTERRUPTED_TEXT = "Other servers unreachable: messages reach this server's members only.";
export const CROSS_NODE_RESTORED_TEXT = 'Other servers reachable again: messages reach everyone (cross-node delivery restored).';

/** Human text for a notice frame (news about the server, not a failure). */
export function describeNotice(code: NoticeCode, message: string): string {
  switch (code) {
    case 'cross_node_interrupted':
      return CROSS_NODE_INTERRUPTED_TEXT;
    case 'cross_node_restored':
      return CROSS_NODE_RESTORED_TEXT;
    default:
      return message;
  }
}

/** Human text for an error frame (`room`: the room it names, if any). */
export function describeError(code: ErrorCode, message: string, firstAvailable?: number, room?: string): string {
  switch (code) {
    case 'history_truncated':
      return firstAvailable === undefined
        ? 'Some messages were lost: the server no longer has all of them.'
        : `Some messages were lost: history starts at #${firstAvailable}.`;
    case 'history_unavailable':
      return 'Earlier messages could not be loaded now: some may be missing.';
    case 'bad_nick':
      return `Nickname refused: ${message}`;
    case 'nick_locked':
      return `Nickname not changed: it comes from your access token (${message}).`;
    case 'bad_room':
      return `Room name refused: ${message}`;
    case 'too_long':
      return `Message not sent: ${message}`;
    case 'too_many_rooms':
      return `Cannot join: ${message}`;
    case 'forbidden_room':
      return room === undefined
        ? 'Cannot join: your access token does not allow this room.'
        : `Cannot join #${room}: your access token does not allow this room.`;
    case 'rate_limited':
      return "You're sending too fast: that message was dropped.";
    case 'not_joined':
      return `Not in that room: ${message}`;
    case 'bad_json':
    case 'unknown_type':
    case 'missing_field':
    case 'bad_field':
      return `The server did not understand the page (${code}): ${message}`;
    default:
      return `The server refused a request (${code}): ${message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers on a draft copy: each reducer call copies what it changes, so the state stays immutable.

interface Draft {
  state: SessionState;
  rooms: Record<string, RoomState>;
}

function room(d: Draft, name: string): RoomState {
  return d.rooms[name] ?? emptyRoom(name);
}

function nextKey(d: Draft, prefix: string): string {
  return `${prefix}${d.state.seq++}`;
}

function trim(lines: Line[], limit: number): Line[] {
  return lines.length > limit ? lines.slice(lines.length - limit) : lines;
}

function addSystem(d: Draft, r: RoomState, text: string, ts: number, tone: 'info' | 'error' = 'info', extra?: Partial<Line>): RoomState {
  const line: Line = { key: nextKey(d, 's'), kind: 'system', text, ts, tone, ...extra };
  return { ...r, lines: trim([...r.lines, line], d.state.limit) };
}

const sameMessage = (a: Line, b: StoredMessage) => a.ts === b.ts && a.text === b.text && a.nick === b.nick;

/** Ours: a message under our user id (the token's `sub`), whatever page or tab sent it. */
const fromUs = (s: SessionState, m: StoredMessage) => s.user !== null && m.user === s.user;

/**
 * Merge one message into a room: drop it if its id is shown, else insert it in id order. `own`:
 * it is ours (with the key of the pending send it confirms, if any).
 */
function mergeMessage(
  d: Draft,
  r: RoomState,
  m: StoredMessage,
  live: boolean,
  now: number,
  own?: { key?: string },
): RoomState {
  const existing = r.lines.find((l) => l.epoch === r.epoch && l.id === m.id);
  if (existing && sameMessage(existing, m)) return r; // a duplicate: keep the first copy
  if (existing || (live && r.lastId !== null && m.id <= r.lastId)) {
    r = addSystem(d, { ...r, epoch: r.epoch + 1, lastId: null }, 'Message numbers restarted: the server lost its history.', now);
  }
  const line: Line = {
    key: own?.key ?? `m${r.epoch}-${m.id}`,
    kind: own ? 'own' : 'other',
    text: m.text,
    ts: m.ts,
    nick: m.nick,
    ...(m.user === undefined ? {} : { user: m.user }),
    id: m.id,
    epoch: r.epoch,
    ...(own ? { status: 'delivered' as const } : {}),
  };
  const at = r.lines.findIndex((l) => l.epoch === r.epoch && l.id !== undefined && l.id > m.id);
  const lines = at < 0 ? [...r.lines, line] : [...r.lines.slice(0, at), line, ...r.lines.slice(at)];
  return { ...r, lines: trim(lines, d.state.limit), lastId: Math.max(r.lastId ?? m.id, m.id) };
}

/**
 * A local message (id 0, not in the shared history): appended as it comes, like a system line.
 * It has no id, so it is never taken for a duplicate, never moves `lastId`, and never starts a
 * new numbering.
 */
function addLocal(d: Draft, r: RoomState, m: StoredMessage, own?: { key?: string }): RoomState {
  const line: Line = {
    key: own?.key ?? nextKey(d, 'l'),
    kind: own ? 'own' : 'other',
    text: m.text,
    ts: m.ts,
    nick: m.nick,
    ...(m.user === undefined ? {} : { user: m.user }),
    local: true,
    ...(own ? { status: 'delivered' as const } : {}),
  };
  return { ...r, lines: trim([...r.lines, line], d.state.limit) };
}

/** The same presence entry: one per nickname and user (no user sorts first, as on the server). */
const sameEntry = (m: Member, nick: string, user: string | undefined) => m.nick === nick && m.user === user;
const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function addMember(members: Member[], nick: string, user?: string): Member[] {
  const i = members.findIndex((m) => sameEntry(m, nick, user));
  if (i >= 0) return members.map((m, j) => (j === i ? { ...m, connections: m.connections + 1 } : m));
  const next: Member[] = [...members, { nick, ...(user === undefined ? {} : { user }), connections: 1 }];
  return next.sort((a, b) => order(a.nick, b.nick) || order(a.user ?? '', b.user ?? ''));
}

function removeMember(members: Member[], nick: string, user?: string): Member[] {
  return members
    .map((m) => (sameEntry(m, nick, user) ? { ...m, connections: m.connections - 1 } : m))
    .filter((m) => m.connections > 0);
}

function dropNotices(d: Draft, code: Notice['code']): void {
  d.state.notices = d.state.notices.filter((n) => n.code !== code);
}

/** Whether a room's transcript holds any chat message (not only system lines). */
const hasMessages = (r: RoomState) => r.lines.some((l) => l.kind !== 'system');

function addNotice(d: Draft, code: Notice['code'], text: string, roomName?: string): void {
  const notices = d.state.notices.filter((n) => n.text !== text);
  const notice: Notice = { key: nextKey(d, 'n'), code, text, ...(roomName === undefined ? {} : { room: roomName }) };
  d.state.notices = [...notices, notice].slice(-NOTICE_LIMIT);
}

/** A `left` then a `joined` within a moment is most likely a nickname change. */
const RENAME_WINDOW_MS = 2_000;

function applyFrame(d: Draft, frame: ServerFrame, now: number): void {
  const s = d.state;
  switch (frame.type) {
    case 'welcome':
      s.nick = frame.nick;
      s.user = frame.user ?? null;
      s.nickLocked = frame.nick_locked === true;
      s.maxTextBytes = frame.max_text_bytes;
      return;
    case 'nick':
      s.nick = frame.nick;
      return;
    case 'message': {
      const i = frame.ref === undefined ? -1 : s.pending.findIndex((p) => p.ref === frame.ref);
      const own = i >= 0 ? { key: `p-${frame.ref}` } : fromUs(s, frame) ? {} : undefined;
      if (i >= 0) s.pending = s.pending.filter((_, j) => j !== i);
      d.rooms[frame.room] = frame.local
        ? addLocal(d, room(d, frame.room), frame, own)
        : mergeMessage(d, room(d, frame.room), frame, true, now, own);
      return;
    }
    case 'history': {
      let r = room(d, frame.room);
      for (const m of frame.messages) {
        // A send that was cut off by a disconnect, found in the catch-up: it did arrive.
        const i = s.pending.findIndex(
          (p) => p.status === 'unconfirmed' && p.room === frame.room && p.text === m.text && (p.nick ?? m.nick) === m.nick,
        );
        const already = r.lines.some((l) => l.epoch === r.epoch && l.id === m.id);
        const confirms = i >= 0 && !already;
        const own = confirms ? { key: `p-${(s.pending[i] as PendingSend).ref}` } : fromUs(s, m) ? {} : undefined;
        if (confirms) s.pending = s.pending.filter((_, j) => j !== i);
        r = mergeMessage(d, r, m, false, now, own);
      }
      d.rooms[frame.room] = { ...r, phase: 'joined' };
      return;
    }
    case 'presence':
      d.rooms[frame.room] = { ...room(d, frame.room), phase: 'joined', members: frame.members, count: frame.count };
      return;
    case 'joined': {
      let r = room(d, frame.room);
      if (r.members) r = { ...r, members: addMember(r.members, frame.nick, frame.user), count: r.count + 1 };
      const last = r.lines[r.lines.length - 1];
      if (last?.event === 'left' && last.nick !== undefined && now - last.ts <= RENAME_WINDOW_MS) {
        const renamed: Line = { ...last, text: `${last.nick} is now ${frame.nick}`, event: 'renamed', nick: frame.nick };
        r = { ...r, lines: [...r.lines.slice(0, -1), renamed] };
      } else {
        r = addSystem(d, r, `${frame.nick} joined`, now, 'info', { event: 'joined', nick: frame.nick });
      }
      d.rooms[frame.room] = r;
      return;
    }
    case 'left': {
      let r = room(d, frame.room);
      if (r.members) r = { ...r, members: removeMember(r.members, frame.nick, frame.user), count: Math.max(0, r.count - 1) };
      d.rooms[frame.room] = addSystem(d, r, `${frame.nick} left`, now, 'info', { event: 'left', nick: frame.nick });
      return;
    }
    case 'error': {
      const text = describeError(frame.code, frame.message, frame.first_available, frame.room);
      const where = frame.room ?? s.room;
      if (frame.code === 'history_truncated' || frame.code === 'history_unavailable') {
        d.rooms[where] = addSystem(d, room(d, where), text, now, 'error');
      }
      if (frame.code === 'forbidden_room' && frame.room !== undefined) {
        const refused = frame.room;
        d.rooms[refused] = { ...room(d, refused), phase: 'out', members: null, count: 0 };
        const back = s.previousRoom;
        if (s.room === refused && back !== null && back !== refused) {
          // The room just switched to is refused: go back where we were (the client re-joins it).
          s.room = back;
          d.rooms[back] = room(d, back);
        }
        if (s.room === refused) {
          d.rooms[refused] = addSystem(d, room(d, refused), text, now, 'error');
        } else if (!hasMessages(room(d, refused))) {
          delete d.rooms[refused]; // never got in: nothing to keep, and not a room to suggest
        }
        s.previousRoom = null;
      }
      if (frame.code === 'too_long' || frame.code === 'not_joined' || frame.code === 'rate_limited') {
        // The error names the refused send's ref; without one (an older server), the server answers
        // in order, so it is our oldest send still waiting.
        const i =
          frame.ref !== undefined
            ? s.pending.findIndex((p) => p.ref === frame.ref)
            : s.pending.findIndex((p) => p.status === 'pending' && (frame.room === undefined || p.room === frame.room));
        if (i >= 0) s.pending = s.pending.map((p, j) => (j === i ? { ...p, status: 'failed' } : p));
      }
      if (frame.code === 'bad_room' && frame.room !== undefined && d.rooms[frame.room]) {
        d.rooms[frame.room] = { ...room(d, frame.room), phase: 'out' };
      }
      addNotice(d, frame.code, text, frame.room);
      return;
    }
    case 'notice': {
      // The cross-node status: the latest replaces the other.
      if (frame.code === 'cross_node_interrupted') dropNotices(d, 'cross_node_restored');
      if (frame.code === 'cross_node_restored') dropNotices(d, 'cross_node_interrupted');
      addNotice(d, frame.code, describeNotice(frame.code, frame.message));
      return;
    }
  }
}

export function sessionReducer(state: SessionState, action: SessionAction): SessionState {
  const d: Draft = { state: { ...state }, rooms: { ...state.rooms } };
  const s = d.state;
  switch (action.type) {
    case 'online':
      s.online = true;
      break;
    case 'offline':
      s.online = false;
      for (const [name, r] of Object.entries(d.rooms)) d.rooms[name] = { ...r, phase: 'out', members: null, count: 0 };
      s.pending = s.pending.map((p) => (p.status === 'pending' ? { ...p, status: 'unconfirmed' } : p));
      // Cross-node status is per connection: the next one (maybe to another server) says it anew.
      dropNotices(d, 'cross_node_interrupted');
      dropNotices(d, 'cross_node_restored');
      break;
    case 'joining':
      d.rooms[action.room] = { ...room(d, action.room), phase: 'joining' };
      break;
    case 'leaving':
      d.rooms[action.room] = { ...room(d, action.room), phase: 'out', members: null, count: 0 };
      break;
    case 'switch':
      if (action.room !== s.room) s.previousRoom = s.room;
      s.room = action.room;
      d.rooms[action.room] = room(d, action.room);
      break;
    case 'frame':
      applyFrame(d, action.frame, action.now);
      break;
    case 'sent':
      s.pending = [
        ...s.pending,
        { ref: action.ref, room: action.room, text: action.text, ts: action.ts, nick: s.nick, status: 'pending' },
      ];
      break;
    case 'system': {
      const name = action.room ?? s.room;
      d.rooms[name] = addSystem(d, room(d, name), action.text, action.ts, action.tone);
      break;
    }
    case 'notice':
      addNotice(d, action.code, action.text, action.room);
      break;
    case 'dismiss':
      s.notices = s.notices.filter((n) => n.key !== action.key);
      break;
  }
  s.rooms = d.rooms;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Selectors

/** The current room. */
export function currentRoom(state: SessionState): RoomState {
  return state.rooms[state.room] ?? emptyRoom(state.room);
}

/** Lines to render for the current room: the merged transcript, then our sends still waiting. */
export function visibleLines(state: SessionState): Line[] {
  const lines = currentRoom(state).lines;
  const waiting = state.pending.filter((p) => p.room === state.room);
  if (waiting.length === 0) return lines;
  return [
    ...lines,
    ...waiting.map<Line>((p) => ({
      key: `p-${p.ref}`,
      kind: 'own',
      text: p.text,
      ts: p.ts,
      status: p.status,
      ...(p.nick === null ? {} : { nick: p.nick }),
    })),
  ];
}

/**
 * Whether a presence entry is us: by user id when the server gives them (nicknames can repeat:
 * another "Dana" is not us), else by nickname.
 */
export function isMe(m: Member, nick: string | null, user: string | null): boolean {
  if (user !== null || m.user !== undefined) return m.user === (user ?? undefined);
  return m.nick === nick;
}

/** Room names visited, current first, then alphabetical. */
export function knownRooms(state: SessionState): string[] {
  return [state.room, ...Object.keys(state.rooms).filter((r) => r !== state.room).sort()];
}
