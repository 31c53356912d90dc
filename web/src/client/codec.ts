/**
 * Codec layer: turns what the user does into frames and frames into events.
 *
 * Today the server speaks the raw protocol (a text frame is a message). The JSON subprotocol
 * `wshub.v1` (see protocol.ts) plugs in here: the page asks for it in the handshake, and
 * `codecFor(socket.protocol)` picks the codec the server agreed to.
 */
import { jsonV1Codec, WSHUB_V1 } from './protocol';

/** What the page learns from a frame. */
export type ServerEvent =
  | {
      type: 'message';
      text: string;
      /** Only the JSON subprotocol names senders and rooms and numbers messages. */
      nick?: string;
      room?: string;
      id?: string | number;
      /** Server time in ms since the epoch; raw frames have none (the page uses arrival time). */
      ts?: number;
    }
  | { type: 'binary'; bytes: number }
  | { type: 'notice'; text: string };

/** Who the user is and where they talk, for codecs that carry it on the wire. */
export interface CodecContext {
  nick: string;
  room: string;
}

/** One wire format. */
export interface Codec {
  /** Short name for the UI. */
  readonly name: string;
  /** Subprotocol to request in the handshake, or null for none. */
  readonly subprotocol: string | null;
  /** Frames to send as soon as the socket opens (join a room, announce a nickname). */
  greet(ctx: CodecContext): string[];
  /** The frame that sends `text`. */
  encodeText(text: string, ctx: CodecContext): string;
  /** Events carried by one received frame. */
  decode(data: unknown): ServerEvent[];
}

/** Byte length of a binary frame as the browser delivers it, or null if `data` is not binary. */
export function binaryLength(data: unknown): number | null {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof Blob !== 'undefined' && data instanceof Blob) return data.size;
  return null;
}

/** The raw protocol: text on the wire as typed, no nickname, no room. */
export const rawCodec: Codec = {
  name: 'raw',
  subprotocol: null,
  greet: () => [],
  encodeText: (text) => text,
  decode(data) {
    if (typeof data === 'string') return [{ type: 'message', text: data }];
    const bytes = binaryLength(data);
    return bytes === null ? [] : [{ type: 'binary', bytes }];
  },
};

/** Subprotocols the page asks for. Empty until the server implements wshub.v1: Chromium fails a
 * handshake that asked for a subprotocol when the server answers with none. */
export const REQUESTED_SUBPROTOCOLS: readonly string[] = [];

/** The codec for the subprotocol the server selected (`socket.protocol`; "" for none). */
export function codecFor(protocol: string): Codec {
  return protocol === WSHUB_V1 ? jsonV1Codec : rawCodec;
}
