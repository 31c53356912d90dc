/**
 * Echo mode: the raw protocol on `/echo` (no subprotocol). What we send is shown as ours, what
 * comes back as the echo; binary frames are counted, not shown.
 */
import { Connection, type ConnectionOptions, type ConnectionState } from './connection';
import { statusLine, type Line } from './lines';
import { createStore, type Store } from './store';

export interface EchoState {
  lines: Line[];
  seq: number;
  limit: number;
}

export type EchoAction =
  | { type: 'sent'; text: string; ts: number }
  | { type: 'received'; data: unknown; ts: number }
  | { type: 'system'; text: string; ts: number; tone?: 'info' | 'error' };

export function initialEcho(limit = 500): EchoState {
  return { lines: [], seq: 0, limit };
}

/** Byte length of a binary frame as the browser delivers it, or null if `data` is not binary. */
export function binaryLength(data: unknown): number | null {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof Blob !== 'undefined' && data instanceof Blob) return data.size;
  return null;
}

function append(state: EchoState, line: Omit<Line, 'key'>): EchoState {
  const lines = [...state.lines, { ...line, key: `e${state.seq}` }];
  return { ...state, lines: lines.length > state.limit ? lines.slice(lines.length - state.limit) : lines, seq: state.seq + 1 };
}

export function echoReducer(state: EchoState, action: EchoAction): EchoState {
  switch (action.type) {
    case 'sent':
      return append(state, { kind: 'own', text: action.text, ts: action.ts, status: 'sent' });
    case 'received': {
      if (typeof action.data === 'string') return append(state, { kind: 'echo', text: action.data, ts: action.ts });
      const bytes = binaryLength(action.data);
      if (bytes === null) return state;
      return append(state, { kind: 'system', text: `Received a binary frame (${bytes} bytes), not shown.`, ts: action.ts, tone: 'info' });
    }
    case 'system':
      return append(state, { kind: 'system', text: action.text, ts: action.ts, tone: action.tone ?? 'info' });
  }
}

export class EchoClient {
  readonly connection: Connection;
  private readonly store: Store<EchoState, EchoAction>;
  private readonly now: () => number;
  private prev: ConnectionState;

  constructor(options: Omit<ConnectionOptions, 'protocols'>) {
    this.connection = new Connection({ ...options, protocols: [] });
    this.store = createStore(echoReducer, initialEcho());
    this.now = options.now ?? Date.now;
    this.prev = this.connection.getState();
    this.connection.onFrame((data) => this.store.dispatch({ type: 'received', data, ts: this.now() }));
    this.connection.subscribe((next) => {
      const line = statusLine(this.prev, next);
      this.prev = next;
      if (line) this.store.dispatch({ type: 'system', text: line.text, tone: line.tone, ts: this.now() });
    });
  }

  getState = (): EchoState => this.store.getState();
  subscribe = (listener: () => void): (() => void) => this.store.subscribe(listener);

  start(): void {
    this.connection.start();
  }

  stop(): void {
    this.connection.stop();
  }

  /** Send a text as is; false (nothing recorded) unless connected. */
  send(text: string): boolean {
    if (text.length === 0 || !this.connection.send(text)) return false;
    this.store.dispatch({ type: 'sent', text, ts: this.now() });
    return true;
  }
}
