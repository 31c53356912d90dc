// Event size limits, through the HTTP API and as a client event. The spec's limit is 10 KB of
// data per event; servers may allow more (soketi and sockudo: 100 KB), so the oversized event
// here is PUSHER_OVERSIZE_BYTES (256 KiB by default), over every limit in use, and under
// wshub's 1 MiB WebSocket message limit, so that the Pusher layer is what judges it.
import { test } from 'node:test';
import {
  api, check, connect, flush, once, outcome, rawSocket, record, same, subscribe, todoOn, uniq,
} from './helpers.mjs';

const OVERSIZE = Number(process.env.PUSHER_OVERSIZE_BYTES || 256 * 1024);
const big = () => 'x'.repeat(OVERSIZE);

test('an event of 9 KB (within the spec limit) is delivered whole', async (t) => {
  const name = uniq('size-ok-');
  const c = await connect(t);
  const ch = await subscribe(c, name);
  const data = { blob: 'y'.repeat(9 * 1024) };
  const got = once(ch, 'fits');
  await api.trigger(name, 'fits', data);
  same(await got, data, 'event data');
});

test('HTTP API: an oversized event is answered 413', todoOn('http-error-status', 'event-size'), async (t) => {
  const r = await outcome(api.trigger(uniq('size-413-'), 'huge', big()));
  check(r.threw, `the SDK reports success: HTTP ${r.status} ${String(r.body).slice(0, 200)}`);
  same(r.status, 413, 'HTTP status');
});

test('HTTP API: an oversized event is not published, and the channel still works', todoOn('event-size'), async (t) => {
  const name = uniq('size-none-');
  const c = await connect(t);
  const ch = await subscribe(c, name);
  const seen = record(ch, 'huge');
  await outcome(api.trigger(name, 'huge', big()));
  await flush(ch);
  same(seen.length, 0, 'oversized events delivered');
});

test('HTTP API: a batch with one oversized event publishes none of the batch', todoOn('event-size'), async (t) => {
  const name = uniq('size-batch-');
  const c = await connect(t);
  const ch = await subscribe(c, name);
  const seen = record(ch, 'part');
  const r = await outcome(api.triggerBatch([
    { channel: name, name: 'part', data: { n: 1 } },
    { channel: name, name: 'part', data: big() },
  ]));
  await flush(ch);
  same(seen.length, 0, `events of the refused batch delivered (HTTP ${r.status})`);
});

test('client event: an oversized one gets pusher:error (or a close) and is not relayed', todoOn('client-event-size'), async (t) => {
  const name = uniq('private-size-');
  const b = await connect(t);
  const cb = await subscribe(b, name);
  const relayed = record(cb, 'client-huge');
  // A raw socket, so that the test sees the server's answer exactly (pusher-js would hide a close).
  const s = await rawSocket(t);
  const socketId = s.messages[0].data.socket_id;
  const { auth } = api.authorizeChannel(socketId, name);
  s.send({ event: 'pusher:subscribe', data: { channel: name, auth } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded', { what: 'subscription_succeeded' });
  s.send({ event: 'client-huge', channel: name, data: { blob: big() } });
  const answer = await Promise.race([
    s.next((m) => m.event === 'pusher:error', { what: 'pusher:error' }).then((m) => ({ error: m.data })),
    s.closed.then((c) => ({ closed: c })),
  ]);
  if (answer.error) {
    check(Number.isInteger(answer.error.code) && answer.error.code >= 4000 && answer.error.code < 5000,
      `pusher:error code ${JSON.stringify(answer.error)}`);
  } else {
    check(answer.closed.code >= 1000, `closed with ${answer.closed.code}`);
  }
  await flush(cb);
  same(relayed.length, 0, 'oversized client events relayed');
  check(b.connection.state === 'connected', `the other member's state ${b.connection.state}`);
});
