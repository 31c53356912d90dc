/**
 * What the transcript shows, in both modes, and the lines that narrate connection changes.
 */
import type { ConnectionState } from './connection';

/** Who a line is from: us, someone else, the echo server, or the page itself. */
export type LineKind = 'own' | 'other' | 'echo' | 'system';

/**
 * - `pending`: sent, the server has not relayed it yet. `delivered`: relayed (it has an id).
 * - `sent`: handed to the socket (echo mode, where the reply is shown on its own).
 * - `unconfirmed`: the connection dropped before the server relayed it.
 * - `failed`: the server refused it (an `error` frame).
 */
export type DeliveryStatus = 'pending' | 'delivered' | 'sent' | 'unconfirmed' | 'failed';

/** One line of the transcript. */
export interface Line {
  /** Stable React key. */
  key: string;
  kind: LineKind;
  text: string;
  /** Time shown, ms since the epoch: server time for chat messages, else arrival or send time. */
  ts: number;
  nick?: string;
  /** Chat messages: the sender's user id, on servers that require access tokens. */
  user?: string;
  /** Chat messages: the server's id within the room. */
  id?: number;
  /** Chat messages: which numbering of the room's ids the id belongs to (see session.ts). */
  epoch?: number;
  status?: DeliveryStatus;
  /**
   * Chat messages delivered only within the server this page is connected to (cross-node delivery
   * was interrupted): not numbered (no `id`), not in the shared history.
   */
  local?: boolean;
  /** System lines. */
  tone?: 'info' | 'error';
  /** System lines about presence: someone joined, left, or changed nickname (`nick` is who). */
  event?: 'joined' | 'left' | 'renamed';
}

/** A system line to add when the connection goes from `prev` to `next`, or null. */
export function statusLine(
  prev: Pick<ConnectionState, 'status'>,
  next: Pick<ConnectionState, 'status' | 'url' | 'lastClose'>,
): { text: string; tone: 'info' | 'error' } | null {
  if (prev.status === next.status) return null;
  if (next.status === 'open') return { text: `Connected to ${next.url}`, tone: 'info' };
  if (prev.status !== 'open') return null;
  const close = next.lastClose;
  return { text: close && next.status !== 'closed' ? `Disconnected: ${close.detail}` : 'Disconnected.', tone: 'error' };
}
