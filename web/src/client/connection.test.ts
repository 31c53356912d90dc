import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ReconnectPolicy } from './backoff';
import type { CheckAnswer, CheckOutcome } from './check';
import { Connection, type ConnectionStatus, type SocketLike } from './connection';

/** A socket the test drives by hand. */
class FakeSocket implements SocketLike {
  readyState = 0;
  protocol = '';
  binaryType: 'blob' | 'arraybuffer' = 'blob';
  sent: string[] = [];
  closedWith: [number | undefined, string | undefined] | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close(code?: number, reason?: string) {
    this.closedWith = [code, reason];
    this.readyState = 3;
  }
  serverOpen() {
    this.readyState = 1;
    this.onopen?.();
  }
  serverClose(code: number, reason = '') {
    this.readyState = 3;
    this.onerror?.();
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }
}

const policy: ReconnectPolicy = { baseDelayMs: 100, factor: 2, maxDelayMs: 1_000, jitter: 0.5, stableAfterMs: 5_000 };

function setup(check?: () => Promise<CheckOutcome>, withToken?: boolean) {
  const sockets: FakeSocket[] = [];
  const statuses: ConnectionStatus[] = [];
  const conn = new Connection({
    url: 'ws://h/ws',
    policy,
    random: () => 0, // delays hit the ceiling exactly
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    check,
    withToken,
  });
  conn.subscribe((s) => {
    if (statuses[statuses.length - 1] !== s.status) statuses.push(s.status);
  });
  const last = () => sockets[sockets.length - 1] as FakeSocket;
  return { conn, sockets, statuses, last };
}

const answered = (answer: CheckAnswer): CheckOutcome => ({ kind: 'answered', answer });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Connection', () => {
  it('connects, delivers frames, sends only while open', () => {
    const { conn, last } = setup();
    const frames: unknown[] = [];
    conn.onFrame((d) => frames.push(d));
    conn.start();
    expect(conn.getState().status).toBe('connecting');
    expect(conn.send('early')).toBe(false);
    last().serverOpen();
    expect(conn.getState().status).toBe('open');
    expect(conn.send('hello')).toBe(true);
    expect(last().sent).toEqual(['hello']);
    last().onmessage?.({ data: 'back' });
    expect(frames).toEqual(['back']);
    expect(last().binaryType).toBe('arraybuffer');
  });

  it('reconnects with growing, capped delays while the server stays away', () => {
    const { conn, sockets, last } = setup();
    conn.start();
    last().serverOpen();
    last().serverClose(1001, 'server shutting down');
    const s = conn.getState();
    expect(s.status).toBe('reconnecting');
    expect(s.lastClose).toMatchObject({ kind: 'server', code: 1001, reason: 'server shutting down' });
    // Open for less than stableAfterMs: the failure counts. Delays: 100, 200, 400, 800, 1000, 1000.
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const retryAt = conn.getState().retryAt as number;
      waits.push(retryAt - Date.now());
      vi.advanceTimersByTime(retryAt - Date.now());
      expect(sockets.length).toBe(i + 2);
      expect(conn.getState().status).toBe('reconnecting');
      last().serverClose(1006);
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(conn.getState().lastClose?.kind).toBe('refused');
  });

  it('comes back to open on its own when the server returns, and resets the schedule after a stable period', () => {
    const { conn, last, statuses } = setup();
    conn.start();
    last().serverOpen();
    vi.advanceTimersByTime(6_000); // stable
    last().serverClose(1001);
    expect(conn.getState().retryAt! - Date.now()).toBe(100);
    vi.advanceTimersByTime(100);
    last().serverClose(1006); // still down
    vi.advanceTimersByTime(200);
    last().serverOpen();
    expect(conn.getState().status).toBe('open');
    expect(statuses).toEqual(['connecting', 'open', 'reconnecting', 'open']);
    vi.advanceTimersByTime(6_000);
    last().serverClose(1006);
    expect(conn.getState().lastClose?.kind).toBe('lost');
    expect(conn.getState().retryAt! - Date.now()).toBe(100);
  });

  it('stops for good on stop(), and on application close codes', () => {
    const a = setup();
    a.conn.start();
    a.last().serverOpen();
    a.conn.stop();
    expect(a.last().closedWith).toEqual([1000, 'client closed']);
    expect(a.conn.getState().status).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(a.sockets.length).toBe(1);

    const b = setup();
    b.conn.start();
    b.last().serverOpen();
    b.last().serverClose(4401, 'bad token');
    expect(b.conn.getState()).toMatchObject({ status: 'closed', retryAt: null });
    vi.advanceTimersByTime(60_000);
    expect(b.sockets.length).toBe(1);
  });

  it('reconnectNow skips the wait; start after stop works again', () => {
    const { conn, sockets, last } = setup();
    conn.start();
    last().serverClose(1006);
    expect(sockets.length).toBe(1);
    conn.reconnectNow();
    expect(sockets.length).toBe(2);
    conn.stop();
    conn.reconnectNow();
    expect(sockets.length).toBe(3);
    expect(conn.getState().status).toBe('connecting');
  });

  it('asks the server before retrying a refusal, and stops where retrying cannot help', async () => {
    const check = vi.fn(() => Promise.resolve(answered({ status: 401, reason: 'unauthorized', message: 'unauthorized: missing token', retry: false })));
    const { conn, sockets, last } = setup(check);
    conn.start();
    last().serverClose(1006);
    expect(check).toHaveBeenCalledTimes(1);
    expect(conn.getState()).toMatchObject({ status: 'reconnecting', retryAt: null });
    await vi.waitFor(() => expect(conn.getState().status).toBe('closed'));
    expect(conn.getState().lastClose).toMatchObject({ kind: 'refused', refusal: 'unauthorized', retry: false });
    expect(conn.getState().lastClose?.title).toBe('The server requires an access token.');
    expect(conn.getState().lastClose?.detail).toMatch(/missing token/);
    vi.advanceTimersByTime(60_000);
    expect(sockets.length).toBe(1);
    expect(check).toHaveBeenCalledTimes(1);
    // The user may still try again.
    conn.reconnectNow();
    expect(sockets.length).toBe(2);
    expect(conn.getState().status).toBe('connecting');
  });

  it('names a refused origin and stops', async () => {
    const { conn, sockets, last } = setup(() =>
      Promise.resolve(answered({ status: 403, reason: 'origin', message: 'origin not allowed', retry: false })),
    );
    conn.start();
    last().serverClose(1006);
    await vi.waitFor(() => expect(conn.getState().status).toBe('closed'));
    expect(conn.getState().lastClose?.title).toBe("The server does not allow this page's origin.");
    vi.advanceTimersByTime(60_000);
    expect(sockets.length).toBe(1);
  });

  it('keeps retrying a full server, saying so', async () => {
    const check = vi.fn(() =>
      Promise.resolve(answered({ status: 503, reason: 'full', message: 'server at its connection limit, try again later', retry: true })),
    );
    const { conn, sockets, last } = setup(check);
    conn.start();
    last().serverClose(1006);
    await vi.waitFor(() => expect(conn.getState().retryAt).not.toBeNull());
    expect(conn.getState()).toMatchObject({ status: 'reconnecting', lastClose: { refusal: 'full', retry: true } });
    expect(conn.getState().lastClose?.title).toBe('The server is full.');
    vi.advanceTimersByTime(100);
    expect(sockets.length).toBe(2);
    last().serverOpen();
    expect(conn.getState()).toMatchObject({ status: 'open', lastClose: null });
  });

  it('keeps retrying when nothing answers, or the check cannot be read', async () => {
    for (const outcome of [{ kind: 'unreachable' }, { kind: 'unreadable' }] as const) {
      const { conn, sockets, last } = setup(() => Promise.resolve(outcome));
      conn.start();
      last().serverClose(1006);
      await vi.waitFor(() => expect(conn.getState().retryAt).not.toBeNull());
      expect(conn.getState().status).toBe('reconnecting');
      vi.advanceTimersByTime(100);
      expect(sockets.length).toBe(2);
      conn.stop();
    }
  });

  it('retries when the check itself fails', async () => {
    const { conn, sockets, last } = setup(() => Promise.reject(new Error('boom')));
    conn.start();
    last().serverClose(1006);
    await vi.waitFor(() => expect(conn.getState().retryAt).not.toBeNull());
    vi.advanceTimersByTime(100);
    expect(sockets.length).toBe(2);
  });

  it('ignores a check answered after stop() or after a new attempt', async () => {
    let answer: (o: CheckOutcome) => void = () => {};
    const { conn, sockets, last } = setup(() => new Promise((resolve) => (answer = resolve)));
    conn.start();
    last().serverClose(1006);
    conn.reconnectNow(); // the user did not wait
    expect(sockets.length).toBe(2);
    answer(answered({ status: 401, reason: 'unauthorized', message: 'unauthorized: token expired', retry: false }));
    await Promise.resolve();
    await Promise.resolve();
    expect(conn.getState().status).toBe('reconnecting');
    last().serverOpen();
    expect(conn.getState().status).toBe('open');
  });

  it('does not ask about a socket that had opened', () => {
    const check = vi.fn(() => Promise.resolve<CheckOutcome>({ kind: 'unreachable' }));
    const { conn, last } = setup(check);
    conn.start();
    last().serverOpen();
    last().serverClose(1006);
    expect(check).not.toHaveBeenCalled();
    expect(conn.getState().lastClose?.kind).toBe('lost');
  });

  it('mentions the token in a refusal when one was offered', async () => {
    const { conn, last } = setup(
      () => Promise.resolve(answered({ status: 401, reason: 'unauthorized', message: 'unauthorized: token expired', retry: false })),
      true,
    );
    conn.start();
    last().serverClose(1006);
    expect(conn.getState().lastClose?.detail).toMatch(/access token/);
    await vi.waitFor(() => expect(conn.getState().lastClose?.title).toBe('The server refused the access token.'));
  });

  it('ignores events from a socket it already let go', () => {
    const { conn, last } = setup();
    conn.start();
    const old = last();
    conn.stop();
    old.serverOpen();
    expect(conn.getState().status).toBe('closed');
  });
});

describe('lastClose', () => {
  it('is cleared by a successful open and by stop()', () => {
    const { conn, last } = setup();
    conn.start();
    last().serverOpen();
    last().serverClose(1001, 'bye');
    expect(conn.getState().lastClose?.code).toBe(1001);
    vi.advanceTimersByTime(1_000);
    last().serverOpen();
    expect(conn.getState().lastClose).toBeNull();
    last().serverClose(1013, 'busy');
    conn.stop();
    expect(conn.getState()).toMatchObject({ status: 'closed', lastClose: null });
  });
});
