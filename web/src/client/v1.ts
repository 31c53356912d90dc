/**
 * The `wshub.v1` JSON subprotocol, client side (docs/protocol.md; server types in
 * src/protocol/v1.rs): typed client frames, and strict parsing of server frames.
 *
 * Parsing is strict about what the page relies on (types of every field it reads, ids as
 * non-negative integers) and lenient about what it does not (extra fields are ignored, unknown
 * frame types are reported as `unknown` so the page can skip them while the server grows).
 */

/** Subprotocol name sent in `Sec-WebSocket-Protocol`. */
export const WSHUB_V1 = 'wshub.v1';

/**
 * Prefix of the extra subprotocol that carries an access token (docs/operations.md, Auth): browsers
 * cannot set headers on a WebSocket, so the token rides as `bearer.<token>` next to `wshub.v1`.
 * The server answers with `wshub.v1` only, never echoing the token.
 */
export const BEARER_PREFIX = 'bearer.';

/** Characters allowed in a subprotocol (an HTTP token, RFC 9110 §5.6.2); a JWT uses a subset. */
const SUBPROTOCOL_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Whether `token` can ride as `bearer.<token>` (else `new WebSocket` would throw). */
export function isUsableToken(token: string): boolean {
  return SUBPROTOCOL_RE.test(token);
}

/** Subprotocols to offer on `/ws`: `wshub.v1`, plus `bearer.<token>` when a token is given. */
export function chatProtocols(token?: string | null): string[] {
  // An unusable token is left out (the page warns about it): offering it would throw.
  return token && isUsableToken(token) ? [WSHUB_V1, BEARER_PREFIX + token] : [WSHUB_V1];
}

/** Longest room name, in characters. */
export const MAX_ROOM_CHARS = 64;
/** Longest nickname, in characters (Unicode scalar values, as the server counts). */
export const MAX_NICK_CHARS = 32;

// ---------------------------------------------------------------------------------------------
// Client to server

export type ClientFrame =
  | { type: 'join'; room: string; since?: number }
  | { type: 'leave'; room: string }
  | { type: 'nick'; nick: string }
  | { type: 'send'; room: string; text: string; ref?: string }
  | { type: 'history'; room: string; since?: number; limit?: number }
  | { type: 'members'; room: string };

/** One client frame as JSON text (absent optional fields are left out, as the server wants). */
export function encodeClientFrame(frame: ClientFrame): string {
  return JSON.stringify(frame);
}

// ---------------------------------------------------------------------------------------------
// Server to client

/** A stored chat message, as in `message` and `history`. */
export interface StoredMessage {
  /** Increases by one within a room, never reused. */
  id: number;
  /** Server time, ms since the epoch. */
  ts: number;
  nick: string;
  /** The sender's user id (its access token's `sub`), on servers that require tokens. */
  user?: string;
  text: string;
}

/**
 * A presence entry: a nickname (and user id, with tokens) and how many connections use it in the
 * room. One entry per nickname and user: two people who share a nickname are two entries.
 */
export interface Member {
  nick: string;
  user?: string;
  connections: number;
}

/** Error codes of docs/protocol.md; other strings are kept as they come (a newer server). */
export type KnownErrorCode =
  | 'bad_json'
  | 'unknown_type'
  | 'missing_field'
  | 'bad_field'
  | 'bad_room'
  | 'bad_nick'
  | 'nick_locked'
  | 'too_long'
  | 'too_many_rooms'
  | 'not_joined'
  | 'already_joined'
  | 'history_truncated'
  | 'history_unavailable'
  | 'forbidden_room'
  | 'rate_limited';
export type ErrorCode = KnownErrorCode | (string & {});

/** Notice codes of docs/protocol.md: news about the server, not failures; others kept as they come. */
export type KnownNoticeCode = 'cross_node_interrupted' | 'cross_node_restored';
export type NoticeCode = KnownNoticeCode | (string & {});

export type ServerFrame =
  /**
   * `user`: our user id (the access token's `sub`), the `user` of our own messages. `nick_locked`:
   * the nickname comes from the access token; a `nick` for another name is refused.
   */
  | { type: 'welcome'; nick: string; user?: string; nick_locked?: true; protocol: string; max_text_bytes: number }
  /**
   * `local: true` (with `id` 0): delivered only within the server this page is connected to,
   * while cross-node delivery is interrupted; not in the shared history, so not numbered.
   */
  | ({ type: 'message'; room: string; ref?: string; local?: true } & StoredMessage)
  | { type: 'history'; room: string; messages: StoredMessage[] }
  | { type: 'presence'; room: string; count: number; members: Member[] }
  | { type: 'joined'; room: string; nick: string; user?: string }
  | { type: 'left'; room: string; nick: string; user?: string }
  | { type: 'nick'; nick: string }
  | { type: 'error'; code: ErrorCode; message: string; room?: string; first_available?: number; ref?: string }
  | { type: 'notice'; code: NoticeCode; message: string };

export type ServerFrameType = ServerFrame['type'];

/**
 * - `ok`: a valid frame.
 * - `unknown`: valid JSON object with a `type` this page does not know (skip it).
 * - `invalid`: anything else (binary, not JSON, missing or mistyped fields), with the reason.
 */
export type ParseResult =
  | { kind: 'ok'; frame: ServerFrame }
  | { kind: 'unknown'; type: string }
  | { kind: 'invalid'; reason: string };

class Invalid extends Error {}

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new Invalid(v === undefined ? `missing \`${key}\`` : `\`${key}\` is not a string`);
  return v;
}

function optStr(o: Obj, key: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : str(o, key);
}

/** A non-negative safe integer (ids, counts, sizes). */
function uint(o: Obj, key: string): number {
  const v = o[key];
  if (v === undefined) throw new Invalid(`missing \`${key}\``);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new Invalid(`\`${key}\` is not a non-negative integer`);
  }
  return v;
}

function optBool(o: Obj, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new Invalid(`\`${key}\` is not a boolean`);
  return v;
}

function optUint(o: Obj, key: string): number | undefined {
  return o[key] === undefined || o[key] === null ? undefined : uint(o, key);
}

/** A timestamp: an integer number of ms (may be negative in theory: i64 on the server). */
function int(o: Obj, key: string): number {
  const v = o[key];
  if (v === undefined) throw new Invalid(`missing \`${key}\``);
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new Invalid(`\`${key}\` is not an integer`);
  return v;
}

function list<T>(o: Obj, key: string, item: (v: Obj, at: string) => T): T[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new Invalid(v === undefined ? `missing \`${key}\`` : `\`${key}\` is not a list`);
  return v.map((entry, i) => {
    if (!isObject(entry)) throw new Invalid(`\`${key}[${i}]\` is not an object`);
    try {
      return item(entry, `${key}[${i}]`);
    } catch (e) {
      if (e instanceof Invalid) throw new Invalid(`${key}[${i}]: ${e.message}`);
      throw e;
    }
  });
}

/** `{ user }` when the frame has one, else nothing (so absent stays absent). */
function userOf(o: Obj): { user?: string } {
  const user = optStr(o, 'user');
  return user === undefined ? {} : { user };
}

const stored = (o: Obj): StoredMessage => ({
  id: uint(o, 'id'),
  ts: int(o, 'ts'),
  nick: str(o, 'nick'),
  ...userOf(o),
  text: str(o, 'text'),
});
const member = (o: Obj): Member => ({ nick: str(o, 'nick'), ...userOf(o), connections: uint(o, 'connections') });

function frameOf(type: string, o: Obj): ServerFrame | null {
  switch (type) {
    case 'welcome':
      return {
        type,
        nick: str(o, 'nick'),
        ...userOf(o),
        ...(optBool(o, 'nick_locked') === true ? { nick_locked: true as const } : {}),
        protocol: str(o, 'protocol'),
        max_text_bytes: uint(o, 'max_text_bytes'),
      };
    case 'message': {
      const ref = optStr(o, 'ref');
      const local = optBool(o, 'local') === true;
      return {
        type,
        room: str(o, 'room'),
        ...stored(o),
        ...(ref === undefined ? {} : { ref }),
        ...(local ? { local: true as const } : {}),
      };
    }
    case 'history':
      return { type, room: str(o, 'room'), messages: list(o, 'messages', stored) };
    case 'presence':
      return { type, room: str(o, 'room'), count: uint(o, 'count'), members: list(o, 'members', member) };
    case 'joined':
    case 'left':
      return { type, room: str(o, 'room'), nick: str(o, 'nick'), ...userOf(o) };
    case 'nick':
      return { type, nick: str(o, 'nick') };
    case 'error': {
      const room = optStr(o, 'room');
      const first = optUint(o, 'first_available');
      const ref = optStr(o, 'ref');
      return {
        type,
        code: str(o, 'code'),
        message: str(o, 'message'),
        ...(room === undefined ? {} : { room }),
        ...(first === undefined ? {} : { first_available: first }),
        ...(ref === undefined ? {} : { ref }),
      };
    }
    case 'notice':
      return { type, code: str(o, 'code'), message: str(o, 'message') };
    default:
      return null;
  }
}

/** Parse one received frame (`data` as the browser delivers it). Never throws. */
export function parseServerFrame(data: unknown): ParseResult {
  if (typeof data !== 'string') return { kind: 'invalid', reason: 'a binary frame' };
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return { kind: 'invalid', reason: 'not JSON' };
  }
  if (!isObject(value)) return { kind: 'invalid', reason: 'not a JSON object' };
  const type = value.type;
  if (typeof type !== 'string') return { kind: 'invalid', reason: type === undefined ? 'missing `type`' : '`type` is not a string' };
  try {
    const frame = frameOf(type, value);
    return frame ? { kind: 'ok', frame } : { kind: 'unknown', type };
  } catch (e) {
    if (e instanceof Invalid) return { kind: 'invalid', reason: `${type}: ${e.message}` };
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Names

const ROOM_RE = /^[A-Za-z0-9._-]{1,64}$/;
const CONTROL_RE = /\p{Cc}/u;

/** 1 to 64 of `A-Z a-z 0-9 - _ .` (the server's rule for rooms). */
export function isValidRoom(name: string): boolean {
  return ROOM_RE.test(name);
}

/** Why `name` is not a valid room, or null when it is. */
export function roomProblem(name: string): string | null {
  if (name.length === 0) return 'Enter a room name.';
  if (name.length > MAX_ROOM_CHARS) return `At most ${MAX_ROOM_CHARS} characters.`;
  if (!ROOM_RE.test(name)) return 'Only letters A–Z, digits, “-”, “_” and “.”.';
  return null;
}

/** 1 to 32 characters, no control characters, not only spaces (the server's rule for nicks). */
export function isValidNick(nick: string): boolean {
  return nickProblem(nick) === null;
}

/** Why `nick` is not a valid nickname, or null when it is. */
export function nickProblem(nick: string): string | null {
  const chars = [...nick].length;
  if (chars === 0 || nick.trim() === '') return 'Enter a nickname.';
  if (chars > MAX_NICK_CHARS) return `At most ${MAX_NICK_CHARS} characters.`;
  if (CONTROL_RE.test(nick)) return 'No control characters.';
  return null;
}

/** UTF-8 size of a text, as the server measures `max_text_bytes`. */
export function utf8Length(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}
