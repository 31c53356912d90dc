/**
 * The `wshub.v1` JSON subprotocol, client side. A seam only: the server does not speak it yet and
 * the page does not request it (see REQUESTED_SUBPROTOCOLS in codec.ts). Shapes follow the issue:
 * client `join` / `send` / `nick`, server `message` (more server frames will come: presence,
 * history); unknown server frame types are ignored so the server can grow first.
 */
import type { Codec, ServerEvent } from './codec';

/** Subprotocol name sent in Sec-WebSocket-Protocol. */
export const WSHUB_V1 = 'wshub.v1';

/** Frames the client sends. */
export type ClientFrame =
  | { type: 'join'; room: string }
  | { type: 'send'; room: string; text: string }
  | { type: 'nick'; nick: string };

/** A chat message as the server relays it. */
export interface MessageFrame {
  type: 'message';
  room: string;
  id: string | number;
  nick: string;
  /** Server time, ms since the epoch. */
  ts: number;
  text: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

function asMessage(v: Record<string, unknown>): MessageFrame | null {
  const { room, id, nick, ts, text } = v;
  if (typeof room !== 'string' || typeof text !== 'string') return null;
  if (typeof id !== 'string' && typeof id !== 'number') return null;
  return {
    type: 'message',
    room,
    id,
    nick: typeof nick === 'string' ? nick : '',
    ts: typeof ts === 'number' ? ts : Date.now(),
    text,
  };
}

/** Encode one client frame. */
export const encodeClientFrame = (frame: ClientFrame): string => JSON.stringify(frame);

/** The JSON codec for `wshub.v1`. */
export const jsonV1Codec: Codec = {
  name: WSHUB_V1,
  subprotocol: WSHUB_V1,
  greet: ({ nick, room }) => [
    ...(nick ? [encodeClientFrame({ type: 'nick', nick })] : []),
    encodeClientFrame({ type: 'join', room }),
  ],
  encodeText: (text, { room }) => encodeClientFrame({ type: 'send', room, text }),
  decode(data): ServerEvent[] {
    if (typeof data !== 'string') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return [{ type: 'notice', text: 'The server sent a frame that is not JSON.' }];
    }
    if (!isRecord(parsed)) return [];
    if (parsed.type === 'message') {
      const m = asMessage(parsed);
      return m ? [{ type: 'message', text: m.text, nick: m.nick, room: m.room, id: m.id, ts: m.ts }] : [];
    }
    return [];
  },
};
