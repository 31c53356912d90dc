// HTTP API request signing: a request signed with the wrong secret, with a tampered body, or
// with an auth_timestamp outside the spec's 600 s window is refused with 401 and publishes
// nothing. Requests are signed by hand here (helpers.signedRequest) to choose the timestamp; a
// fresh request signed the same way must pass, so a broken signer cannot pass these tests.
import { test } from 'node:test';
import PusherServer from 'pusher';
import {
  APP, HOST, PORT, T, check, connect, flush, outcome, record, same, signedRequest, subscribe, todoOn, uniq,
} from './helpers.mjs';

const now = () => Math.floor(Date.now() / 1000);
const event = (channel, name, data) => ({ name, channels: [channel], data: JSON.stringify(data) });

/** A subscriber on a fresh channel, and what it receives of `name`. */
async function listener(t, name) {
  const channel = uniq('auth-');
  const c = await connect(t);
  const ch = await subscribe(c, channel);
  return { channel, ch, seen: record(ch, name) };
}

test('signed by hand with a fresh timestamp: accepted and delivered (the control)', async (t) => {
  const { channel, ch, seen } = await listener(t, 'fresh');
  const r = await signedRequest({ path: '/events', body: event(channel, 'fresh', { n: 1 }) });
  same(r.status, 200, `HTTP status (${r.text})`);
  check(!(r.json && r.json.error), `error in the body: ${r.text}`);
  await flush(ch);
  same(seen, [{ n: 1 }], 'delivered');
});

for (const [label, skew] of [['700 s old', -700], ['700 s in the future', 700]]) {
  test(`auth_timestamp ${label}, signed correctly: 401`, todoOn('auth-timestamp'), async () => {
    const r = await signedRequest({ path: '/events', body: event(uniq('auth-'), 'old', {}), timestamp: now() + skew });
    same(r.status, 401, `HTTP status (${r.text})`);
  });

  test(`auth_timestamp ${label}, signed correctly: nothing is published`, todoOn('auth-timestamp'), async (t) => {
    const { channel, ch, seen } = await listener(t, 'replayed');
    await signedRequest({ path: '/events', body: event(channel, 'replayed', { n: 1 }), timestamp: now() + skew });
    await flush(ch);
    same(seen, [], 'delivered');
  });
}

test('auth_timestamp 700 s old on a GET: 401', todoOn('auth-timestamp'), async () => {
  const r = await signedRequest({ method: 'GET', path: '/channels', timestamp: now() - 700 });
  same(r.status, 401, `HTTP status (${r.text})`);
});

test('signed with a wrong secret (server SDK): 401', todoOn('http-error-status'), async () => {
  const wrong = new PusherServer({ ...APP, secret: 'not-the-secret', host: HOST, port: PORT, useTLS: false, timeout: T });
  const r = await outcome(wrong.trigger(uniq('auth-'), 'forged', { x: 1 }));
  check(r.threw, `the SDK reports success: HTTP ${r.status} ${r.body}`);
  same(r.status, 401, 'HTTP status');
});

test('signed with a wrong secret: nothing is published', async (t) => {
  const { channel, ch, seen } = await listener(t, 'forged');
  const wrong = new PusherServer({ ...APP, secret: 'not-the-secret', host: HOST, port: PORT, useTLS: false, timeout: T });
  await outcome(wrong.trigger(channel, 'forged', { x: 1 }));
  await outcome(wrong.triggerBatch([{ channel, name: 'forged', data: { x: 2 } }]));
  await flush(ch);
  same(seen, [], 'delivered');
});

test('a GET signed with a wrong secret: 401 and no channel list', todoOn('http-error-status'), async () => {
  const r = await signedRequest({ method: 'GET', path: '/channels', secret: 'not-the-secret' });
  same(r.status, 401, `HTTP status (${r.text})`);
  check(!(r.json && r.json.channels), `the channel list was answered: ${r.text}`);
});

const badRequests = [
  ['a body changed after signing (body_md5 no longer matches)', (channel) => signedRequest({
    path: '/events', body: event(channel, 'bad', { amount: 1000 }), signedBody: event(channel, 'bad', { amount: 1 }),
  })],
  ['a signature made for another path', (channel) => signedRequest({
    path: '/events', body: event(channel, 'bad', {}), signedPath: '/batch_events',
  })],
  ['a signature made for another method', (channel) => signedRequest({
    path: '/events', body: event(channel, 'bad', {}), signedMethod: 'PUT',
  })],
  ['an unknown auth_key (signed with the app secret)', (channel) => signedRequest({
    path: '/events', body: event(channel, 'bad', {}), key: 'not-a-key',
  }), 'auth-key-unchecked', 'auth-key-status'],
];
for (const [label, send, gap, statusGap] of badRequests) {
  test(`${label}: 401`, todoOn(gap || 'http-error-status', statusGap), async () => {
    const r = await send(uniq('auth-'));
    same(r.status, 401, `HTTP status (${r.text})`);
  });
  test(`${label}: nothing is published`, todoOn(gap), async (t) => {
    const { channel, ch, seen } = await listener(t, 'bad');
    await send(channel);
    await flush(ch);
    same(seen, [], 'delivered');
  });
}

test('unknown app id: 404 (or 401) with a JSON reason', todoOn('http-error-status'), async () => {
  const other = new PusherServer({ ...APP, appId: 'no-such-app', host: HOST, port: PORT, useTLS: false, timeout: T });
  const r = await outcome(other.trigger(uniq('auth-'), 'x', {}));
  check(r.threw, `the SDK reports success: HTTP ${r.status} ${r.body}`);
  check(r.status === 404 || r.status === 401 || r.status === 403, `HTTP ${r.status}`);
  let reason;
  try { reason = JSON.parse(r.body); } catch { /* checked below */ }
  check(reason && typeof reason === 'object', `body is not JSON: ${r.body}`);
});
