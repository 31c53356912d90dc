/**
 * Message list state: a pure reducer, no React, no sockets.
 *
 * Telling own messages apart in raw chat: the server sends every frame to everyone, the sender
 * included, unchanged and without a sender name. So each text we send waits in `pending`; the
 * first received frame with the same text confirms the oldest such entry and is shown as ours.
 * Honest limit: if someone else sends the very same text before our copy comes back, theirs is
 * taken for ours (and ours then shows as theirs). The wshub.v1 subprotocol will remove the guess.
 *
 * Order: `log` is the order the server delivered (the same order every client sees); unconfirmed
 * sends stay below it in `pending` until their copy arrives.
 */
import type { Endpoint } from './url';

/** Who a line is from: us (confirmed by the server), someone else, the echo server, or the page. */
export type MessageKind = 'own' | 'other' | 'echo' | 'system';

/**
 * - `pending`: sent, not yet seen coming back. `delivered`: the server relayed it.
 * - `sent`: handed to the socket (echo mode, where the reply is shown on its own).
 * - `unconfirmed`: the connection dropped before the server relayed it.
 */
export type DeliveryStatus = 'pending' | 'delivered' | 'sent' | 'unconfirmed';

/** One line of the list. */
export interface ChatMessage {
  /** Stable React key. */
  key: string;
  kind: MessageKind;
  text: string;
  /** Time shown, ms since the epoch: server time when the protocol carries it, else arrival/send time. */
  ts: number;
  nick?: string;
  status?: DeliveryStatus;
  /** For system lines. */
  tone?: 'info' | 'error';
}

export interface MessagesState {
  mode: Endpoint;
  log: ChatMessage[];
  pending: ChatMessage[];
  /** Next key number. */
  seq: number;
  /** Most lines kept in `log`; older ones are dropped. */
  limit: number;
}

export type MessagesAction =
  | { type: 'sent'; text: string; ts: number; nick?: string }
  | { type: 'received'; text: string; ts: number; nick?: string }
  | { type: 'system'; text: string; ts: number; tone?: 'info' | 'error' }
  | { type: 'disconnected' }
  | { type: 'reset'; mode: Endpoint };

/** Default for `limit`. */
export const DEFAULT_MESSAGE_LIMIT = 500;

export function initialMessages(mode: Endpoint, limit = DEFAULT_MESSAGE_LIMIT): MessagesState {
  return { mode, log: [], pending: [], seq: 0, limit };
}

/** Add a line at the end of the log; a line that already has a key (a confirmed send) keeps it. */
function append(
  state: MessagesState,
  line: Omit<ChatMessage, 'key'> & { key?: string },
  pending = state.pending,
): MessagesState {
  const log = [...state.log, { ...line, key: line.key ?? `m${state.seq}` }];
  const overflow = log.length - state.limit;
  return { ...state, log: overflow > 0 ? log.slice(overflow) : log, pending, seq: state.seq + 1 };
}

export function messagesReducer(state: MessagesState, action: MessagesAction): MessagesState {
  switch (action.type) {
    case 'sent': {
      const line = { kind: 'own' as const, text: action.text, ts: action.ts, nick: action.nick };
      if (state.mode === 'echo') return append(state, { ...line, status: 'sent' });
      const entry: ChatMessage = { ...line, status: 'pending', key: `m${state.seq}` };
      return { ...state, pending: [...state.pending, entry], seq: state.seq + 1 };
    }
    case 'received': {
      const { text, ts, nick } = action;
      if (state.mode === 'echo') return append(state, { kind: 'echo', text, ts, nick });
      const i = state.pending.findIndex((p) => p.text === text);
      if (i < 0) return append(state, { kind: 'other', text, ts, nick });
      const mine = state.pending[i] as ChatMessage;
      const rest = state.pending.filter((_, j) => j !== i);
      return append(state, { ...mine, ts, status: 'delivered' }, rest);
    }
    case 'system':
      return append(state, { kind: 'system', text: action.text, ts: action.ts, tone: action.tone ?? 'info' });
    case 'disconnected': {
      if (state.pending.length === 0) return state;
      let next: MessagesState = { ...state, pending: [] };
      for (const p of state.pending) next = append(next, { ...p, status: 'unconfirmed' });
      return next;
    }
    case 'reset':
      return { ...initialMessages(action.mode, state.limit), seq: state.seq };
  }
}

/** Lines to render, oldest first: the server-ordered log, then our unconfirmed sends. */
export function visibleMessages(state: MessagesState): ChatMessage[] {
  return state.pending.length === 0 ? state.log : [...state.log, ...state.pending];
}
