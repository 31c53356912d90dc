import { describe, expect, it } from 'vitest';
import {
  BEARER_PREFIX,
  chatProtocols,
  encodeClientFrame,
  isUsableToken,
  isValidNick,
  isValidRoom,
  nickProblem,
  parseServerFrame,
  roomProblem,
  utf8Length,
  type ServerFrame,
} from './v1';

const ok = (json: unknown): ServerFrame => {
  const r = parseServerFrame(typeof json === 'string' ? json : JSON.stringify(json));
  if (r.kind !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r.frame;
};
const invalid = (data: unknown) => {
  const r = parseServerFrame(data);
  expect(r.kind, JSON.stringify(data)).toBe('invalid');
  return r.kind === 'invalid' ? r.reason : '';
};

describe('client frames', () => {
  it('encodes every request, leaving absent optional fields out', () => {
    expect(encodeClientFrame({ type: 'join', room: 'lobby' })).toBe('{"type":"join","room":"lobby"}');
    expect(JSON.parse(encodeClientFrame({ type: 'join', room: 'a', since: 42 }))).toEqual({ type: 'join', room: 'a', since: 42 });
    expect(JSON.parse(encodeClientFrame({ type: 'leave', room: 'a' }))).toEqual({ type: 'leave', room: 'a' });
    expect(JSON.parse(encodeClientFrame({ type: 'nick', nick: 'ann' }))).toEqual({ type: 'nick', nick: 'ann' });
    expect(JSON.parse(encodeClientFrame({ type: 'send', room: 'a', text: 'hi 👋', ref: 'c1' }))).toEqual({
      type: 'send',
      room: 'a',
      text: 'hi 👋',
      ref: 'c1',
    });
    expect(JSON.parse(encodeClientFrame({ type: 'history', room: 'a', since: 3, limit: 10 }))).toEqual({
      type: 'history',
      room: 'a',
      since: 3,
      limit: 10,
    });
    expect(JSON.parse(encodeClientFrame({ type: 'members', room: 'a' }))).toEqual({ type: 'members', room: 'a' });
    // `since: undefined` must not reach the server (it rejects unknown or mistyped fields).
    expect(encodeClientFrame({ type: 'join', room: 'a', since: undefined })).toBe('{"type":"join","room":"a"}');
  });
});

describe('server frames: user ids (servers that require tokens)', () => {
  it('reads `user` and `nick_locked` where the server sends them, and leaves them out where it does not', () => {
    const welcome = ok({ type: 'welcome', nick: 'Dana', user: 'u-42', nick_locked: true, protocol: 'wshub.v1', max_text_bytes: 1 });
    expect(welcome).toEqual({ type: 'welcome', nick: 'Dana', user: 'u-42', nick_locked: true, protocol: 'wshub.v1', max_text_bytes: 1 });
    const plain = ok({ type: 'welcome', nick: 'guest-1', protocol: 'wshub.v1', max_text_bytes: 1, nick_locked: false });
    expect('user' in plain || 'nick_locked' in plain).toBe(false);
    const message = ok({ type: 'message', room: 'a', id: 1, ts: 2, nick: 'Dana', user: 'u-42', text: 'hi' });
    expect(message).toMatchObject({ nick: 'Dana', user: 'u-42' });
    expect('user' in ok({ type: 'message', room: 'a', id: 1, ts: 2, nick: 'ann', text: 'hi' })).toBe(false);
    const history = ok({ type: 'history', room: 'a', messages: [{ id: 1, ts: 2, nick: 'Dana', user: 'u-42', text: 'hi' }] });
    expect(history).toMatchObject({ messages: [{ user: 'u-42' }] });
    const presence = ok({
      type: 'presence',
      room: 'a',
      count: 3,
      members: [
        { nick: 'Dana', user: 'u-1', connections: 2 },
        { nick: 'Dana', user: 'u-2', connections: 1 },
      ],
    });
    expect(presence).toMatchObject({ members: [{ user: 'u-1', connections: 2 }, { user: 'u-2' }] });
    expect(ok({ type: 'joined', room: 'a', nick: 'Dana', user: 'u-1' })).toEqual({ type: 'joined', room: 'a', nick: 'Dana', user: 'u-1' });
    expect(ok({ type: 'left', room: 'a', nick: 'ann' })).toEqual({ type: 'left', room: 'a', nick: 'ann' });
    expect(invalid(JSON.stringify({ type: 'message', room: 'a', id: 1, ts: 2, nick: 'x', user: 7, text: 'hi' }))).toMatch(/user/);
  });
});

describe('server frames: every type', () => {
  it('welcome', () => {
    expect(ok({ type: 'welcome', nick: 'guest-7', protocol: 'wshub.v1', max_text_bytes: 4096 })).toEqual({
      type: 'welcome',
      nick: 'guest-7',
      protocol: 'wshub.v1',
      max_text_bytes: 4096,
    });
  });

  it('message, with and without ref', () => {
    const m = { type: 'message', room: 'lobby', id: 42, ts: 1764115260000, nick: 'bob', text: 'hello' };
    expect(ok({ ...m, ref: 'c1' })).toEqual({ ...m, ref: 'c1' });
    const noRef = ok(m);
    expect(noRef).toEqual(m);
    expect('ref' in noRef).toBe(false);
  });

  it('message marked local (id 0, this server only)', () => {
    const m = { type: 'message', room: 'lobby', id: 0, ts: 1764115260000, nick: 'bob', text: 'still here?' };
    expect(ok({ ...m, local: true })).toEqual({ ...m, local: true });
    expect(ok({ ...m, local: true, ref: 'c9' })).toEqual({ ...m, local: true, ref: 'c9' });
    // `local: false` (or absent) is an ordinary message: the field is left out.
    const plain = ok({ ...m, id: 5, local: false });
    expect('local' in plain).toBe(false);
    expect(invalid(JSON.stringify({ ...m, local: 'yes' }))).toMatch(/`local`/);
  });

  it('history', () => {
    const messages = [
      { id: 41, ts: 1764115200000, nick: 'ann', text: 'hi' },
      { id: 42, ts: 1764115260000, nick: 'bob', text: '<b>x</b>' },
    ];
    expect(ok({ type: 'history', room: 'lobby', messages })).toEqual({ type: 'history', room: 'lobby', messages });
    expect(ok({ type: 'history', room: 'lobby', messages: [] })).toEqual({ type: 'history', room: 'lobby', messages: [] });
  });

  it('presence', () => {
    const members = [
      { nick: 'ann', connections: 1 },
      { nick: 'guest-7', connections: 2 },
    ];
    expect(ok({ type: 'presence', room: 'lobby', count: 3, members })).toEqual({ type: 'presence', room: 'lobby', count: 3, members });
  });

  it('joined, left, nick', () => {
    expect(ok({ type: 'joined', room: 'a', nick: 'ann' })).toEqual({ type: 'joined', room: 'a', nick: 'ann' });
    expect(ok({ type: 'left', room: 'a', nick: 'ann' })).toEqual({ type: 'left', room: 'a', nick: 'ann' });
    expect(ok({ type: 'nick', nick: 'bob' })).toEqual({ type: 'nick', nick: 'bob' });
  });

  it('error, with optional room and first_available', () => {
    expect(ok({ type: 'error', code: 'not_joined', message: 'join the room first', room: 'kitchen' })).toEqual({
      type: 'error',
      code: 'not_joined',
      message: 'join the room first',
      room: 'kitchen',
    });
    expect(ok({ type: 'error', code: 'history_truncated', message: 'lost', room: 'a', first_available: 17 })).toEqual({
      type: 'error',
      code: 'history_truncated',
      message: 'lost',
      room: 'a',
      first_available: 17,
    });
    expect(ok({ type: 'error', code: 'bad_json', message: 'not JSON' })).toEqual({ type: 'error', code: 'bad_json', message: 'not JSON' });
    // A code from a newer server is kept as a string.
    expect(ok({ type: 'error', code: 'rate_limited', message: 'slow down' })).toMatchObject({ code: 'rate_limited' });
    for (const code of ['forbidden_room', 'some_future_code']) {
      expect(ok({ type: 'error', code, message: 'm' })).toMatchObject({ code });
    }
  });

  it('notice: a code and a message, not an error', () => {
    for (const code of ['cross_node_interrupted', 'cross_node_restored', 'some_future_code']) {
      expect(ok({ type: 'notice', code, message: 'm' })).toEqual({ type: 'notice', code, message: 'm' });
    }
    expect(invalid('{"type":"notice","code":"cross_node_restored"}')).toMatch(/message/);
  });

  it('ignores extra fields', () => {
    expect(ok({ type: 'nick', nick: 'bob', extra: true })).toEqual({ type: 'nick', nick: 'bob' });
  });

  it('reports unknown types apart from invalid frames', () => {
    expect(parseServerFrame('{"type":"typing","room":"a"}')).toEqual({ kind: 'unknown', type: 'typing' });
  });
});

describe('server frames: malformed', () => {
  it('rejects non-text, non-JSON and non-objects', () => {
    expect(invalid(new ArrayBuffer(3))).toMatch(/binary/);
    expect(invalid('{nope')).toMatch(/not JSON/);
    expect(invalid('[1,2]')).toMatch(/object/);
    expect(invalid('null')).toMatch(/object/);
    expect(invalid('"message"')).toMatch(/object/);
  });

  it('rejects a missing or non-string type', () => {
    expect(invalid('{"room":"a"}')).toMatch(/missing `type`/);
    expect(invalid('{"type":5}')).toMatch(/`type`/);
  });

  it('rejects missing and mistyped fields', () => {
    const m = { type: 'message', room: 'lobby', id: 1, ts: 1, nick: 'a', text: 'b' };
    expect(invalid(JSON.stringify({ ...m, text: undefined }))).toMatch(/missing `text`/);
    expect(invalid(JSON.stringify({ ...m, text: 5 }))).toMatch(/`text`/);
    expect(invalid(JSON.stringify({ ...m, id: '1' }))).toMatch(/`id`/);
    expect(invalid(JSON.stringify({ ...m, id: -1 }))).toMatch(/`id`/);
    expect(invalid(JSON.stringify({ ...m, id: 1.5 }))).toMatch(/`id`/);
    expect(invalid(JSON.stringify({ ...m, ts: 'now' }))).toMatch(/`ts`/);
    expect(invalid(JSON.stringify({ ...m, ref: 7 }))).toMatch(/`ref`/);
    expect(invalid(JSON.stringify({ type: 'welcome', nick: 'g', protocol: 'wshub.v1' }))).toMatch(/max_text_bytes/);
    expect(invalid(JSON.stringify({ type: 'history', room: 'a' }))).toMatch(/messages/);
    expect(invalid(JSON.stringify({ type: 'history', room: 'a', messages: {} }))).toMatch(/not a list/);
    expect(invalid(JSON.stringify({ type: 'history', room: 'a', messages: [{ id: 1, ts: 1, nick: 'a' }] }))).toMatch(
      /messages\[0\].*text/,
    );
    expect(invalid(JSON.stringify({ type: 'history', room: 'a', messages: [3] }))).toMatch(/messages\[0\]/);
    expect(invalid(JSON.stringify({ type: 'presence', room: 'a', count: 1, members: [{ nick: 'a' }] }))).toMatch(/connections/);
    expect(invalid(JSON.stringify({ type: 'presence', room: 'a', members: [] }))).toMatch(/count/);
    expect(invalid(JSON.stringify({ type: 'joined', nick: 'a' }))).toMatch(/room/);
    expect(invalid(JSON.stringify({ type: 'nick' }))).toMatch(/nick/);
    expect(invalid(JSON.stringify({ type: 'error', code: 'x' }))).toMatch(/message/);
    expect(invalid(JSON.stringify({ type: 'error', code: 'x', message: 'm', first_available: 'a' }))).toMatch(/first_available/);
  });
});

describe('names', () => {
  it('rooms: 1 to 64 of A-Z a-z 0-9 - _ .', () => {
    for (const ok of ['lobby', 'a.b-c_9', 'x'.repeat(64), 'A']) expect(isValidRoom(ok), ok).toBe(true);
    for (const bad of ['', 'x'.repeat(65), 'a b', 'ü', 'a/b', '#a']) expect(isValidRoom(bad), bad).toBe(false);
    expect(roomProblem('')).toMatch(/Enter/);
    expect(roomProblem('x'.repeat(65))).toMatch(/64/);
    expect(roomProblem('a b')).toMatch(/letters/);
    expect(roomProblem('lobby')).toBeNull();
  });

  it('nicks: 1 to 32 characters, no control characters, not only spaces', () => {
    for (const ok of ['ann', '名前', 'é'.repeat(32), '🙂'.repeat(32), 'Ann B']) expect(isValidNick(ok), ok).toBe(true);
    for (const bad of ['', '  ', 'a\nb', 'a\u0007', 'x'.repeat(33)]) expect(isValidNick(bad), bad).toBe(false);
    expect(nickProblem('x'.repeat(33))).toMatch(/32/);
  });

  it('measures text in UTF-8 bytes', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('🙂')).toBe(4);
  });
});

describe('access token subprotocol', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4iLCJleHAiOjR9.c2lnbmF0dXJlLV8tXw';

  it('offers bearer.<token> next to wshub.v1, wshub.v1 alone without a token', () => {
    expect(chatProtocols()).toEqual(['wshub.v1']);
    expect(chatProtocols(null)).toEqual(['wshub.v1']);
    expect(chatProtocols('')).toEqual(['wshub.v1']);
    expect(chatProtocols(jwt)).toEqual(['wshub.v1', `bearer.${jwt}`]);
    expect(BEARER_PREFIX).toBe('bearer.');
  });

  it('only tokens a subprotocol can carry (else the browser would throw)', () => {
    expect(isUsableToken(jwt)).toBe(true);
    for (const bad of ['', 'a b', 'a,b', 'a"b', 'é', 'a/b', 'a;b']) expect(isUsableToken(bad), bad).toBe(false);
    expect(chatProtocols('a b')).toEqual(['wshub.v1']);
  });
});
