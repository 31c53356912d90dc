/**
 * The chat client: one Connection speaking `wshub.v1`, the session reducer, and the requests the
 * page makes (join on connect and on reconnect with `since`, nick, send with a `ref`, room switch).
 * No React: the page subscribes to `getState()` and to `connection`.
 */
import { Connection, type ConnectionOptions, type ConnectionState } from './connection';
import { statusLine } from './lines';
import {
  initialSession,
  joinFrame,
  sessionReducer,
  type SessionAction,
  type SessionState,
} from './session';
import { createStore, type Store } from './store';
import {
  chatProtocols,
  encodeClientFrame,
  isValidNick,
  isValidRoom,
  parseServerFrame,
  utf8Length,
  type ClientFrame,
  type ServerFrame,
} from './v1';

export interface ChatClientOptions extends Omit<ConnectionOptions, 'protocols' | 'withToken'> {
  /** Room to join first. */
  room: string;
  /** Nickname to ask for on connect ('' keeps the server's `guest-N`). */
  nick: string;
  /** Makes the `ref` of each send (unique per page). */
  makeRef?: () => string;
  /**
   * Access token for a server that requires one: offered as the subprotocol `bearer.<token>`
   * next to `wshub.v1` (never put in the URL, never shown or logged by the page).
   */
  token?: string | null;
}

/** `sent`, or why nothing was sent. */
export type SendResult = 'sent' | 'empty' | 'offline' | 'too_long';

let refCounter = 0;
const pageId = Math.random().toString(36).slice(2, 8);
const defaultRef = () => `${pageId}-${++refCounter}`;

export class ChatClient {
  readonly connection: Connection;
  private readonly store: Store<SessionState, SessionAction>;
  private readonly makeRef: () => string;
  private readonly now: () => number;
  private wantedNick: string;
  private prev: ConnectionState;

  constructor({ room, nick, makeRef = defaultRef, token, ...options }: ChatClientOptions) {
    this.connection = new Connection({ ...options, protocols: chatProtocols(token), withToken: Boolean(token) });
    this.store = createStore(sessionReducer, initialSession(room));
    this.makeRef = makeRef;
    this.now = options.now ?? Date.now;
    this.wantedNick = nick;
    this.prev = this.connection.getState();
    this.connection.subscribe((s) => this.onStatus(s));
    this.connection.onFrame((data) => this.receive(data));
  }

  getState = (): SessionState => this.store.getState();
  subscribe = (listener: () => void): (() => void) => this.store.subscribe(listener);

  start(): void {
    this.connection.start();
  }

  stop(): void {
    this.connection.stop();
  }

  /** Send a chat message to the current room. */
  send(text: string): SendResult {
    if (text.length === 0) return 'empty';
    const state = this.getState();
    if (!state.online) return 'offline';
    if (state.maxTextBytes !== null && utf8Length(text) > state.maxTextBytes) {
      this.store.dispatch({
        type: 'notice',
        code: 'too_long',
        text: `Message not sent: over the server's limit of ${state.maxTextBytes} bytes.`,
      });
      return 'too_long';
    }
    const ref = this.makeRef();
    if (!this.request({ type: 'send', room: state.room, text, ref })) return 'offline';
    this.store.dispatch({ type: 'sent', ref, room: state.room, text, ts: this.now() });
    return 'sent';
  }

  /**
   * The nickname the user wants; sent now if connected and valid, else on the next connect. Not
   * sent while the server says the nickname comes from the access token (`nick_locked`).
   */
  setNick(nick: string): void {
    this.wantedNick = nick;
    const state = this.getState();
    if (state.online && !state.nickLocked && isValidNick(nick) && nick !== state.nick) this.request({ type: 'nick', nick });
  }

  /** Show and join another room (leaving the current one); false if the name is invalid. */
  switchRoom(room: string): boolean {
    if (!isValidRoom(room)) return false;
    const state = this.getState();
    if (room === state.room) return true;
    if (state.online) {
      this.request({ type: 'leave', room: state.room });
      this.store.dispatch({ type: 'leaving', room: state.room });
    }
    this.store.dispatch({ type: 'switch', room });
    if (state.online) this.join(room);
    return true;
  }

  dismiss(key: string): void {
    this.store.dispatch({ type: 'dismiss', key });
  }

  private request(frame: ClientFrame): boolean {
    return this.connection.send(encodeClientFrame(frame));
  }

  private join(room: string): void {
    if (this.request(joinFrame(this.getState(), room))) this.store.dispatch({ type: 'joining', room });
  }

  /**
   * On every `welcome` (the first frame of each connection): the nickname first (so the others see
   * it join), unless the server gives it from the access token (`nick_locked`) or it is already
   * ours, then the room, with `since`.
   */
  private greet(welcome: Extract<ServerFrame, { type: 'welcome' }>): void {
    const nick = this.wantedNick;
    if (!welcome.nick_locked && isValidNick(nick) && nick !== welcome.nick) this.request({ type: 'nick', nick });
    this.join(this.getState().room);
  }

  private receive(data: unknown): void {
    const parsed = parseServerFrame(data);
    if (parsed.kind === 'unknown') return; // a newer server: nothing this page can use
    if (parsed.kind === 'invalid') {
      this.store.dispatch({
        type: 'notice',
        code: 'bad_frame',
        text: `Ignored a frame from the server that this page cannot read (${parsed.reason}).`,
      });
      return;
    }
    const frame = parsed.frame;
    const shown = this.getState().room;
    this.store.dispatch({ type: 'frame', frame, now: this.now() });
    if (frame.type === 'welcome') this.greet(frame);
    // A refused join (`forbidden_room`) sent the page back to the previous room: join it again.
    if (this.getState().room !== shown) this.join(this.getState().room);
    if (frame.type === 'nick') {
      // Our entry in the member lists changed name: ask for fresh snapshots.
      for (const r of Object.values(this.getState().rooms)) {
        if (r.phase === 'joined') this.request({ type: 'members', room: r.name });
      }
    }
  }

  private onStatus(next: ConnectionState): void {
    const prev = this.prev;
    this.prev = next;
    if (prev.status !== 'open' && next.status === 'open') this.store.dispatch({ type: 'online' });
    if (prev.status === 'open' && next.status !== 'open') this.store.dispatch({ type: 'offline' });
    const line = statusLine(prev, next);
    if (line) this.store.dispatch({ type: 'system', text: line.text, tone: line.tone, ts: this.now() });
  }
}
