import { describe, expect, it } from 'vitest';
import { checkUrl, healthUrl, parseEndpoint, parseRoom, parseServerParam, parseToken, resolveSocketBase, socketUrl } from './url';

describe('resolveSocketBase', () => {
  it('follows the page origin: http -> ws, https -> wss', () => {
    expect(resolveSocketBase({ protocol: 'http:', host: '127.0.0.1:8080', search: '' })).toEqual({
      base: 'ws://127.0.0.1:8080',
      overridden: false,
    });
    expect(resolveSocketBase({ protocol: 'https:', host: 'chat.example', search: '' }).base).toBe('wss://chat.example');
  });

  it('takes ?server= over the origin', () => {
    const b = resolveSocketBase({ protocol: 'http:', host: 'a:1', search: '?server=ws://127.0.0.1:19200&mode=echo' });
    expect(b).toEqual({ base: 'ws://127.0.0.1:19200', overridden: true });
  });

  it('ignores a bad ?server= with a warning', () => {
    const b = resolveSocketBase({ protocol: 'http:', host: 'a:1', search: '?server=ftp://x' });
    expect(b.base).toBe('ws://a:1');
    expect(b.warning).toMatch(/Ignored/);
  });
});

describe('parseServerParam', () => {
  it('accepts ws, wss, http, https; keeps a path prefix; drops a trailing slash', () => {
    expect(parseServerParam('ws://h:1/')).toBe('ws://h:1');
    expect(parseServerParam('wss://h/hub/')).toBe('wss://h/hub');
    expect(parseServerParam('http://h:2')).toBe('ws://h:2');
    expect(parseServerParam('https://h')).toBe('wss://h');
    expect(parseServerParam('javascript:alert(1)')).toBeNull();
    expect(parseServerParam('not a url')).toBeNull();
  });
});

describe('endpoints', () => {
  it('maps echo and chat to their paths', () => {
    expect(socketUrl('ws://h:1', 'echo')).toBe('ws://h:1/echo');
    expect(socketUrl('ws://h:1', 'chat')).toBe('ws://h:1/ws');
  });

  it('reads ?mode= with a fallback', () => {
    expect(parseEndpoint('?mode=echo')).toBe('echo');
    expect(parseEndpoint('?mode=bogus')).toBe('chat');
    expect(parseEndpoint('', 'echo')).toBe('echo');
  });

  it('derives the check URL of a socket URL', () => {
    expect(checkUrl('ws://h:1/ws')).toBe('http://h:1/ws?check');
    expect(checkUrl('wss://h/p/echo')).toBe('https://h/p/echo?check');
    expect(checkUrl('ws://h:1/ws', { protocol: 'wshub.v1', origin: 'http://page:5173' })).toBe(
      'http://h:1/ws?check&protocol=wshub.v1&origin=http%3A%2F%2Fpage%3A5173',
    );
  });

  it('derives the health URL', () => {
    expect(healthUrl('ws://h:1')).toBe('http://h:1/healthz');
    expect(healthUrl('wss://h/p')).toBe('https://h/p/healthz');
  });
});

describe('parseRoom', () => {
  it('reads a valid ?room= and falls back to lobby otherwise', () => {
    expect(parseRoom('?room=kitchen')).toBe('kitchen');
    expect(parseRoom('?mode=chat&room=a.b-c_1')).toBe('a.b-c_1');
    expect(parseRoom('')).toBe('lobby');
    expect(parseRoom('?room=')).toBe('lobby');
    expect(parseRoom('?room=no%20spaces')).toBe('lobby');
    expect(parseRoom(`?room=${'x'.repeat(65)}`)).toBe('lobby');
  });
});

describe('parseToken', () => {
  it('reads ?token=, none when absent or empty', () => {
    expect(parseToken('?mode=chat&token=aaa.bbb.c-_c&room=x')).toEqual({ token: 'aaa.bbb.c-_c' });
    expect(parseToken('')).toEqual({ token: null });
    expect(parseToken('?token=')).toEqual({ token: null });
  });

  it('ignores a token a subprotocol cannot carry, with a warning that does not quote it', () => {
    const t = parseToken('?token=secret%20with%20spaces');
    expect(t.token).toBeNull();
    expect(t.warning).toMatch(/Ignored \?token=/);
    expect(t.warning).not.toContain('secret');
  });
});
