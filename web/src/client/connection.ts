/**
 * Connection manager: one logical connection to one URL that survives drops.
 *
 * It opens a socket, reports its state, and when the socket closes it schedules the next attempt
 * per the reconnect policy, until `stop()`. A socket refused before it opened is first explained
 * by the server (`check`): a refusal that retrying cannot fix (a bad token, a refused origin)
 * stops here; a full server or a dropped network is retried. No React here: the page subscribes
 * to snapshots.
 */
import { DEFAULT_RECONNECT, reconnectDelay, type ReconnectPolicy } from './backoff';
import type { CheckOutcome } from './check';
import { classifyClose, explainRefusal, type CloseVerdict } from './close';

/**
 * - `idle`: not started. `connecting`: first attempt in progress.
 * - `open`: frames flow. `reconnecting`: asking the server why, waiting for, or making, a retry.
 * - `closed`: stopped by the user, or by a close or refusal that retrying cannot fix.
 */
export type ConnectionStatus = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** An immutable snapshot; a new object on every change. */
export interface ConnectionState {
  readonly status: ConnectionStatus;
  readonly url: string;
  /** Consecutive failed attempts; 0 while healthy. */
  readonly attempt: number;
  /** When the next attempt starts (ms since the epoch), while waiting to reconnect. */
  readonly retryAt: number | null;
  /** Why the last socket closed, explained; cleared by a successful open and by `stop()`. */
  readonly lastClose: CloseVerdict | null;
  /** Whether any socket of this connection ever opened. */
  readonly everOpened: boolean;
  /** Subprotocol the server selected for the open socket; "" for none. */
  readonly protocol: string;
}

/** The part of the browser's WebSocket this module uses (tests pass a fake). */
export interface SocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: 'blob' | 'arraybuffer';
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: (() => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: (() => void) | null;
}

/** Makes a socket; the default wraps `new WebSocket`. */
export type SocketFactory = (url: string, protocols: readonly string[]) => SocketLike;

/** Everything a Connection needs; all but `url` have defaults. */
export interface ConnectionOptions {
  url: string;
  protocols?: readonly string[];
  policy?: ReconnectPolicy;
  createSocket?: SocketFactory;
  /** [0, 1) source for jitter. */
  random?: () => number;
  now?: () => number;
  /**
   * Asked after a refusal (a socket closed before it opened): why would the server refuse this
   * handshake? Explains the error shown and decides whether to retry. Without it, refusals are
   * retried unexplained.
   */
  check?: () => Promise<CheckOutcome>;
  /**
   * An access token is offered (in `protocols`): a refusal then names the token as a likely cause.
   * The token itself never enters the state, so nothing shown or logged can carry it.
   */
  withToken?: boolean;
}

const OPEN = 1;

const browserSocket: SocketFactory = (url, protocols) =>
  // The DOM's handler types carry `this` and richer events; the shape is the same.
  new WebSocket(url, [...protocols]) as unknown as SocketLike;

/** One logical connection with automatic reconnection. */
export class Connection {
  private state: ConnectionState;
  private readonly opts: Required<Omit<ConnectionOptions, 'check'>> & Pick<ConnectionOptions, 'check'>;
  private socket: SocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private openedAt: number | null = null;
  private running = false;
  /** Bumped by every new attempt and by stop(): an older check's answer is then ignored. */
  private generation = 0;
  private readonly stateListeners = new Set<(s: ConnectionState) => void>();
  private readonly frameListeners = new Set<(data: unknown) => void>();
  private readonly openListeners = new Set<() => void>();

  constructor(options: ConnectionOptions) {
    this.opts = {
      protocols: [],
      policy: DEFAULT_RECONNECT,
      createSocket: browserSocket,
      random: Math.random,
      now: Date.now,
      withToken: false,
      ...options,
    };
    this.state = {
      status: 'idle',
      url: options.url,
      attempt: 0,
      retryAt: null,
      lastClose: null,
      everOpened: false,
      protocol: '',
    };
  }

  /** Current snapshot (stable identity until the next change, as useSyncExternalStore needs). */
  getState = (): ConnectionState => this.state;

  /** Listen to state changes; returns the unsubscribe function. */
  subscribe = (listener: (s: ConnectionState) => void): (() => void) => {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  };

  /** Listen to received frames (string or binary, as the browser delivers them). */
  onFrame(listener: (data: unknown) => void): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  /** Listen to every successful open (first connect and each reconnect). */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Begin connecting; no-op while already running. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect('connecting', 0);
  }

  /** Close for good (code 1000) and stop reconnecting. */
  stop(): void {
    this.running = false;
    this.generation++;
    this.clearTimer();
    const socket = this.detach();
    if (socket && socket.readyState <= OPEN) socket.close(1000, 'client closed');
    if (this.state.status !== 'idle') this.update({ status: 'closed', retryAt: null, lastClose: null, protocol: '' });
  }

  /** Skip the wait and try now (also restarts a connection that stopped or gave up). */
  reconnectNow(): void {
    if (!this.running || this.state.status === 'closed') {
      this.running = false;
      this.start();
      return;
    }
    if (this.state.status !== 'reconnecting' || this.socket) return;
    this.clearTimer();
    this.connect('reconnecting');
  }

  /** Send one text frame; false (and nothing sent) unless the socket is open. */
  send(frame: string): boolean {
    const socket = this.socket;
    if (!socket || this.state.status !== 'open' || socket.readyState !== OPEN) return false;
    socket.send(frame);
    return true;
  }

  private connect(status: 'connecting' | 'reconnecting', attempt = this.state.attempt): void {
    this.timer = null;
    this.generation++;
    this.update({ status, attempt, retryAt: null, protocol: '' });
    const socket = this.opts.createSocket(this.state.url, this.opts.protocols);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => {
      this.openedAt = this.opts.now();
      this.update({ status: 'open', everOpened: true, lastClose: null, protocol: socket.protocol });
      this.openListeners.forEach((l) => l());
    };
    socket.onmessage = (ev) => this.frameListeners.forEach((l) => l(ev.data));
    socket.onerror = () => {}; // a close event always follows, with what little the browser tells
    socket.onclose = (ev) => this.handleClose(ev);
  }

  private handleClose(ev: { code: number; reason: string; wasClean: boolean }): void {
    const opened = this.openedAt !== null;
    const stable = opened && this.opts.now() - (this.openedAt ?? 0) >= this.opts.policy.stableAfterMs;
    this.detach();
    const verdict = classifyClose(
      { code: ev.code, reason: ev.reason, wasClean: ev.wasClean, opened },
      { withToken: this.opts.withToken },
    );
    if (!this.running) return;
    if (!verdict.retry) {
      this.giveUp(verdict);
      return;
    }
    const failures = stable ? 0 : this.state.attempt;
    const check = this.opts.check;
    if (verdict.kind !== 'refused' || !check) {
      this.scheduleRetry(failures, verdict);
      return;
    }
    // Ask before retrying: a refusal that cannot pass later stops here.
    this.update({ status: 'reconnecting', attempt: failures + 1, retryAt: null, lastClose: verdict, protocol: '' });
    const generation = this.generation;
    const decide = (explained: CloseVerdict) => {
      if (!this.running || generation !== this.generation) return;
      if (explained.retry) this.scheduleRetry(failures, explained);
      else this.giveUp(explained);
    };
    check().then(
      (outcome) => decide(explainRefusal(verdict, outcome, { withToken: this.opts.withToken })),
      () => decide(verdict),
    );
  }

  private giveUp(verdict: CloseVerdict): void {
    this.update({ status: 'closed', retryAt: null, lastClose: verdict, protocol: '' });
  }

  private scheduleRetry(failures: number, verdict: CloseVerdict): void {
    const delay = reconnectDelay(failures, this.opts.policy, this.opts.random);
    this.update({
      status: 'reconnecting',
      attempt: failures + 1,
      retryAt: this.opts.now() + delay,
      lastClose: verdict,
      protocol: '',
    });
    this.timer = setTimeout(() => this.connect('reconnecting'), delay);
  }

  private detach(): SocketLike | null {
    const socket = this.socket;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
    }
    this.socket = null;
    this.openedAt = null;
    return socket;
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private update(patch: Partial<ConnectionState>): void {
    this.state = { ...this.state, ...patch };
    this.stateListeners.forEach((l) => l(this.state));
  }
}
