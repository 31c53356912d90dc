// The connection itself: the handshake pusher-js needs, a wrong app key, and a frame that is not
// JSON, which must get an error and disturb nobody else.
import { test } from 'node:test';
import {
  APP, api, check, connect, once, rawSocket, same, subscribe, todoOn, uniq, within,
} from './helpers.mjs';

test('connection_established: pusher-js connects and gets a socket_id of the spec form', async (t) => {
  const a = await connect(t);
  const b = await connect(t);
  for (const c of [a, b]) {
    check(/^\d+\.\d+$/.test(c.connection.socket_id), `socket_id ${JSON.stringify(c.connection.socket_id)} is not "digits.digits"`);
  }
  check(a.connection.socket_id !== b.connection.socket_id, `two connections got the same socket_id ${a.connection.socket_id}`);
});

test('connection_established: the raw frame carries socket_id and a positive activity_timeout', async (t) => {
  const s = await rawSocket(t);
  const hello = s.messages[0];
  same(hello.event, 'pusher:connection_established', 'first frame');
  check(typeof hello.data === 'object' && hello.data !== null, `data is not a JSON object encoded as a string: ${JSON.stringify(hello)}`);
  check(/^\d+\.\d+$/.test(hello.data.socket_id), `socket_id ${hello.data.socket_id}`);
  check(Number.isInteger(hello.data.activity_timeout) && hello.data.activity_timeout > 0, `activity_timeout ${hello.data.activity_timeout}`);
});

test('pusher:ping gets pusher:pong', async (t) => {
  const s = await rawSocket(t);
  s.send({ event: 'pusher:ping', data: {} });
  await s.next((m) => m.event === 'pusher:pong', { what: 'pusher:pong' });
});

test('wrong app key: the socket is closed with 4001', todoOn('unknown-key-close'), async (t) => {
  const s = await rawSocket(t, { key: `not-${APP.key}`, open: false });
  const { code } = await within(s.closed, 'the close');
  same(code, 4001, 'close code');
  check(!s.messages.some((m) => m.event === 'pusher:connection_established'), 'connection_established was sent for an unknown key');
});

test('wrong app key: pusher-js reports error 4001 and gives up', todoOn('unknown-key-close'), async (t) => {
  const c = await connect(t, { key: `not-${APP.key}`, wait: false });
  // pusher-js wraps what the server said (a pusher:error frame or the close code) in a WebSocketError.
  const codeOf = (e) => (e && e.error && e.error.data ? e.error.data.code : e && e.data ? e.data.code : undefined);
  const err = await once(c.connection, 'error', { pred: (e) => codeOf(e) !== undefined, what: 'an error with a code' });
  same(codeOf(err), 4001, 'error code');
  // 4000-4099 means "do not reconnect": pusher-js goes to disconnected instead of retrying.
  if (c.connection.state !== 'disconnected') await once(c.connection, 'disconnected', { what: 'state disconnected' });
});

test('malformed JSON frame: the sender gets pusher:error', todoOn('malformed-frame-error'), async (t) => {
  const s = await rawSocket(t);
  s.send('{"event":"pusher:subscribe","data":');
  const err = await s.next((m) => m.event === 'pusher:error', { what: 'pusher:error' });
  check(err.data && (Number.isInteger(err.data.code) || err.data.code === null), `pusher:error without a code: ${JSON.stringify(err)}`);
});

test('malformed JSON frame: other clients are unaffected', async (t) => {
  const name = uniq('bystander-');
  const b = await connect(t);
  const ch = await subscribe(b, name);
  const s = await rawSocket(t);
  s.send({ event: 'pusher:subscribe', data: { channel: name } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name, { what: 'raw subscription_succeeded' });
  s.send('this is not json {');
  s.send('{"event":');
  s.send(Buffer.from([0xff, 0x00, 0x7b]));
  const got = once(ch, 'after', { what: 'event after the malformed frames' });
  await api.trigger(name, 'after', { ok: true });
  same(await got, { ok: true }, 'data');
  check(b.connection.state === 'connected', `bystander state ${b.connection.state}`);
});
