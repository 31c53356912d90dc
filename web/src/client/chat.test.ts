import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ReconnectPolicy } from './backoff';
import { ChatClient } from './chat';
import type { SocketLike } from './connection';
import { currentRoom, visibleLines } from './session';
import { CROSS_NODE_INTERRUPTED_TEXT } from './session';
import { WSHUB_V1 } from './v1';

/** A socket the test drives by hand, playing a wshub.v1 server. */
class FakeSocket implements SocketLike {
  readyState = 0;
  protocol = '';
  binaryType: 'blob' | 'arraybuffer' = 'blob';
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols: readonly string[],
  ) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  open(nick = 'guest-1') {
    this.protocol = WSHUB_V1;
    this.readyState = 1;
    this.onopen?.();
    this.push({ type: 'welcome', nick, protocol: WSHUB_V1, max_text_bytes: 16 });
  }
  push(frame: unknown) {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '', wasClean: false });
  }
}

const policy: ReconnectPolicy = { baseDelayMs: 100, factor: 2, maxDelayMs: 1_000, jitter: 0, stableAfterMs: 5_000 };

function setup(room = 'lobby', nick = 'ann', token?: string) {
  const sockets: FakeSocket[] = [];
  let n = 0;
  const client = new ChatClient({
    url: 'ws://h/ws',
    room,
    nick,
    policy,
    random: () => 0,
    makeRef: () => `r${++n}`,
    token,
    createSocket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
  });
  const last = () => sockets[sockets.length - 1] as FakeSocket;
  return { client, sockets, last };
}

const msg = (id: number, text = `m${id}`, nick = 'bob') => ({ id, ts: 1_700_000_000_000 + id, nick, text });

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('ChatClient', () => {
  it('asks for wshub.v1, then sets the nickname and joins on open', () => {
    const { client, last } = setup('kitchen', 'ann');
    client.start();
    expect(last().protocols).toEqual([WSHUB_V1]);
    last().open();
    expect(last().sent).toEqual([
      { type: 'nick', nick: 'ann' },
      { type: 'join', room: 'kitchen' },
    ]);
    expect(client.getState()).toMatchObject({ online: true, nick: 'guest-1', maxTextBytes: 16 });
  });

  it('does not send an invalid or empty nickname', () => {
    const { client, last } = setup('lobby', '');
    client.start();
    last().open();
    expect(last().sent).toEqual([{ type: 'join', room: 'lobby' }]);
    client.setNick('a\nb');
    client.setNick('bob');
    expect(last().sent.slice(1)).toEqual([{ type: 'nick', nick: 'bob' }]);
  });

  it('remembers the last id per room across reconnects and joins with since', () => {
    const { client, sockets, last } = setup();
    client.start();
    last().open();
    last().push({ type: 'history', room: 'lobby', messages: [msg(1), msg(2)] });
    last().push({ type: 'message', room: 'lobby', ...msg(3) });

    last().drop();
    expect(client.getState().online).toBe(false);
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    last().open();
    expect(last().sent).toContainEqual({ type: 'join', room: 'lobby', since: 3 });
    // The server replays what was missed; an overlap is dropped.
    last().push({ type: 'history', room: 'lobby', messages: [msg(3), msg(4), msg(5)] });
    last().push({ type: 'message', room: 'lobby', ...msg(6) });

    last().drop();
    vi.advanceTimersByTime(200);
    last().open();
    expect(last().sent).toContainEqual({ type: 'join', room: 'lobby', since: 6 });
    last().push({ type: 'history', room: 'lobby', messages: [] });

    const ids = visibleLines(client.getState()).flatMap((l) => (l.id === undefined ? [] : [l.id]));
    expect(ids).toEqual([1, 2, 3, 4, 5, 6]);
    const system = visibleLines(client.getState()).filter((l) => l.kind === 'system').map((l) => l.text);
    expect(system.filter((t) => t.startsWith('Connected'))).toHaveLength(3);
    expect(system.filter((t) => t.startsWith('Disconnected'))).toHaveLength(2);
  });

  it('switching rooms leaves, joins, and keeps each room its own since', () => {
    const { client, last } = setup();
    client.start();
    last().open();
    last().push({ type: 'history', room: 'lobby', messages: [msg(7)] });
    last().sent = [];
    expect(client.switchRoom('not valid!')).toBe(false);
    expect(client.switchRoom('b')).toBe(true);
    expect(last().sent).toEqual([
      { type: 'leave', room: 'lobby' },
      { type: 'join', room: 'b' },
    ]);
    last().push({ type: 'history', room: 'b', messages: [msg(2)] });
    last().sent = [];
    client.switchRoom('lobby');
    expect(last().sent).toEqual([
      { type: 'leave', room: 'b' },
      { type: 'join', room: 'lobby', since: 7 },
    ]);
    expect(client.getState().room).toBe('lobby');
  });

  it('sends with a ref and recognises its own message', () => {
    const { client, last } = setup();
    expect(client.send('too early')).toBe('offline');
    client.start();
    last().open();
    expect(client.send('')).toBe('empty');
    expect(client.send('hello')).toBe('sent');
    expect(last().sent.at(-1)).toEqual({ type: 'send', room: 'lobby', text: 'hello', ref: 'r1' });
    last().push({ type: 'message', room: 'lobby', ...msg(1, 'hello', 'ann'), ref: 'r1' });
    expect(visibleLines(client.getState()).at(-1)).toMatchObject({ kind: 'own', status: 'delivered', id: 1 });
    // Over max_text_bytes (16 here): refused locally with a notice.
    expect(client.send('x'.repeat(17))).toBe('too_long');
    expect(client.getState().notices.at(-1)?.code).toBe('too_long');
  });

  it('asks for fresh member lists after a nickname change', () => {
    const { client, last } = setup();
    client.start();
    last().open();
    last().push({ type: 'presence', room: 'lobby', count: 1, members: [{ nick: 'guest-1', connections: 1 }] });
    last().sent = [];
    last().push({ type: 'nick', nick: 'ann' });
    expect(last().sent).toEqual([{ type: 'members', room: 'lobby' }]);
  });

  it('shows unreadable frames as a notice, skips unknown types, never throws', () => {
    const { client, last } = setup();
    client.start();
    last().open();
    last().push('{nope');
    last().onmessage?.({ data: new ArrayBuffer(2) });
    last().push({ type: 'typing', room: 'lobby' });
    last().push({ type: 'error', code: 'not_joined', message: 'join the room first', room: 'kitchen' });
    expect(client.getState().notices.map((n) => n.code)).toEqual(['bad_frame', 'bad_frame', 'not_joined']);
    expect(currentRoom(client.getState()).lines).toEqual([expect.objectContaining({ kind: 'system' })]);
  });
});

describe('ChatClient with the new server frames', () => {
  const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.sig-_.x';

  it('offers the token as the subprotocol bearer.<token>, and never shows it', () => {
    const { client, last } = setup('lobby', 'ann', TOKEN);
    client.start();
    expect(last().protocols).toEqual([WSHUB_V1, `bearer.${TOKEN}`]);
    expect(last().url).toBe('ws://h/ws');
    last().drop(); // refused before open
    const shown = JSON.stringify([client.getState(), client.connection.getState()]);
    expect(shown).not.toContain(TOKEN);
    expect(client.connection.getState().lastClose).toMatchObject({ kind: 'refused' });
    expect(client.connection.getState().lastClose?.detail).toMatch(/access token/);
    vi.advanceTimersByTime(100);
    expect(last().protocols).toEqual([WSHUB_V1, `bearer.${TOKEN}`]);
    last().open();
    expect(JSON.stringify(last().sent)).not.toContain(TOKEN);
    expect(JSON.stringify(client.getState())).not.toContain(TOKEN);
  });

  it('without a token, offers wshub.v1 only and the refusal does not talk about tokens given', () => {
    const { client, last } = setup();
    client.start();
    expect(last().protocols).toEqual([WSHUB_V1]);
    last().drop();
    expect(client.connection.getState().lastClose?.detail).not.toMatch(/token/);
  });

  it('with a nickname from the token (nick_locked), joins without asking for a nickname, and never asks', () => {
    const { client, last } = setup('lobby', 'admin', TOKEN);
    client.start();
    last().protocol = WSHUB_V1;
    last().readyState = 1;
    last().onopen?.();
    expect(last().sent).toEqual([]); // waits for the welcome to know whether it may
    last().push({ type: 'welcome', nick: 'Dana', user: 'u-dana', nick_locked: true, protocol: WSHUB_V1, max_text_bytes: 16 });
    expect(last().sent).toEqual([{ type: 'join', room: 'lobby' }]);
    client.setNick('root');
    expect(last().sent).toEqual([{ type: 'join', room: 'lobby' }]);
    expect(client.getState()).toMatchObject({ nick: 'Dana', user: 'u-dana', nickLocked: true });
    // After a reload (a new client, no refs): the history's messages under our user are ours.
    last().push({
      type: 'history',
      room: 'lobby',
      messages: [
        { ...msg(1, 'earlier', 'Dana'), user: 'u-dana' },
        { ...msg(2, 'someone else', 'Dana'), user: 'u-other' },
      ],
    });
    expect(visibleLines(client.getState()).flatMap((l) => (l.kind === 'system' ? [] : [l.kind]))).toEqual(['own', 'other']);
  });

  it('a token that leaves the nickname free still sends the wanted one, unless it is already ours', () => {
    const { client, last } = setup('lobby', 'ann', TOKEN);
    client.start();
    last().open('guest-3');
    expect(last().sent).toEqual([
      { type: 'nick', nick: 'ann' },
      { type: 'join', room: 'lobby' },
    ]);
    last().drop();
    vi.advanceTimersByTime(100);
    last().open('ann');
    expect(last().sent).toEqual([{ type: 'join', room: 'lobby' }]);
  });

  it('a join refused by the token goes back to the previous room and re-joins it', () => {
    const { client, last } = setup();
    client.start();
    last().open();
    last().push({ type: 'history', room: 'lobby', messages: [msg(3)] });
    last().sent = [];
    client.switchRoom('secret');
    expect(last().sent).toEqual([
      { type: 'leave', room: 'lobby' },
      { type: 'join', room: 'secret' },
    ]);
    last().push({ type: 'error', code: 'forbidden_room', message: 'your access token does not allow this room', room: 'secret' });
    expect(client.getState().room).toBe('lobby');
    expect(last().sent.at(-1)).toEqual({ type: 'join', room: 'lobby', since: 3 });
    expect(client.getState().notices.at(-1)).toMatchObject({ code: 'forbidden_room', room: 'secret' });
    expect(currentRoom(client.getState()).phase).toBe('joining');
  });

  it('local messages: shown each, own recognised, since unchanged; the banner comes and goes', () => {
    const { client, sockets, last } = setup();
    client.start();
    last().open();
    last().push({ type: 'history', room: 'lobby', messages: [msg(1)] });
    last().push({ type: 'notice', code: 'cross_node_interrupted', message: 'cross-node delivery interrupted' });
    expect(client.getState().notices.map((n) => n.text)).toEqual([CROSS_NODE_INTERRUPTED_TEXT]);
    client.send('mine');
    last().push({ type: 'message', room: 'lobby', id: 0, ts: 5, nick: 'bob', text: 'theirs', local: true });
    last().push({ type: 'message', room: 'lobby', id: 0, ts: 6, nick: 'guest-1', text: 'mine', ref: 'r1', local: true });
    last().push({ type: 'message', room: 'lobby', id: 0, ts: 7, nick: 'bob', text: 'theirs', local: true });
    const lines = visibleLines(client.getState()).filter((l) => l.kind !== 'system');
    expect(lines.map((l) => `${l.id ?? '-'}:${l.kind}:${l.local ? 'local' : ''}:${l.text}`)).toEqual([
      '1:other::m1',
      '-:other:local:theirs',
      '-:own:local:mine',
      '-:other:local:theirs',
    ]);
    last().push({ type: 'notice', code: 'cross_node_restored', message: 'cross-node delivery restored' });
    expect(client.getState().notices.map((n) => n.code)).toEqual(['cross_node_restored']);
    last().drop();
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    last().open();
    expect(last().sent).toContainEqual({ type: 'join', room: 'lobby', since: 1 });
  });
});
