import { describe, expect, it } from 'vitest';
import { checkHandshake, parseCheckAnswer, type FetchLike } from './check';

/** A fetch that records what it was asked and answers from `reply`. */
function fakeFetch(reply: (url: string, init: RequestInit) => Promise<Pick<Response, 'ok' | 'json'>>) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetch: FetchLike = (url, init) => {
    calls.push({ url, init });
    return reply(url, init);
  };
  return { fetch, calls };
}

const json = (body: unknown, ok = true) => Promise.resolve({ ok, json: () => Promise.resolve(body) });

describe('parseCheckAnswer', () => {
  it('takes a well-formed answer and nothing else', () => {
    const answer = { status: 401, reason: 'unauthorized', message: 'unauthorized: missing token', retry: false };
    expect(parseCheckAnswer(answer)).toEqual(answer);
    expect(parseCheckAnswer({ ...answer, extra: 1 })).toEqual(answer);
    expect(parseCheckAnswer({ ...answer, retry: 'no' })).toBeNull();
    expect(parseCheckAnswer({ status: 401 })).toBeNull();
    expect(parseCheckAnswer(null)).toBeNull();
    expect(parseCheckAnswer('ok')).toBeNull();
  });
});

describe('checkHandshake', () => {
  it('asks the socket path with ?check, the token as a header, never in the URL', async () => {
    const body = { status: 401, reason: 'unauthorized', message: 'unauthorized: bad signature', retry: false };
    const { fetch, calls } = fakeFetch(() => json(body));
    const outcome = await checkHandshake('ws://h:8080/ws', {
      protocol: 'wshub.v1',
      token: 'aaa.bbb.ccc',
      origin: 'http://page.example',
      fetch,
    });
    expect(outcome).toEqual({ kind: 'answered', answer: body });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.url).toBe('http://h:8080/ws?check&protocol=wshub.v1&origin=http%3A%2F%2Fpage.example');
    expect(calls[0]?.url).not.toContain('aaa.bbb.ccc');
    expect(calls[0]?.init.headers).toEqual({ Authorization: 'Bearer aaa.bbb.ccc' });
    expect(calls[0]?.init.cache).toBe('no-store');
  });

  it('sends no Authorization without a token', async () => {
    const { fetch, calls } = fakeFetch(() => json({ status: 101, reason: 'ok', message: 'ok', retry: true }));
    await checkHandshake('wss://h/echo', { fetch, origin: 'https://h' });
    expect(calls[0]?.url).toBe('https://h/echo?check&origin=https%3A%2F%2Fh');
    expect(calls[0]?.init.headers).toEqual({});
  });

  it('calls a server that answers something else unreadable', async () => {
    const notFound = fakeFetch(() => json('not found', false));
    expect(await checkHandshake('ws://h/ws', { fetch: notFound.fetch, origin: 'http://h' })).toEqual({ kind: 'unreadable' });
    const garbage = fakeFetch(() => json({ hello: 'world' }));
    expect(await checkHandshake('ws://h/ws', { fetch: garbage.fetch, origin: 'http://h' })).toEqual({ kind: 'unreadable' });
  });

  it('tells an unreadable check (CORS) from no server at all', async () => {
    const cors = fakeFetch((_url, init) =>
      init.mode === 'no-cors' ? json(null) : Promise.reject(new TypeError('Failed to fetch')),
    );
    expect(await checkHandshake('ws://h:1/p/ws', { fetch: cors.fetch, origin: 'http://x' })).toEqual({ kind: 'unreadable' });
    expect(cors.calls[1]?.url).toBe('http://h:1/p/healthz');
    const down = fakeFetch(() => Promise.reject(new TypeError('Failed to fetch')));
    expect(await checkHandshake('ws://h:1/ws', { fetch: down.fetch, origin: 'http://x' })).toEqual({ kind: 'unreachable' });
  });
});
