// Client events: laravel-echo's whisper() and pusher-js's channel.trigger(), relayed to the other
// members of a private or presence channel, never back to the sender, and refused elsewhere.
import { test } from 'node:test';
import {
  check, connect, echo, flush, once, rawSocket, record, same, subscribe, subscribed, todoOn, uniq,
} from './helpers.mjs';

/**
 * Shows that `sender` did not get its own client event: the receiver answers with a client
 * event of its own, which the server takes after the first one, so an echo of the first would
 * reach the sender before the reply does.
 */
async function noEcho(senderCh, receiverCh, echoed) {
  const reply = once(senderCh, 'client-reply', { what: 'the reply' });
  check(receiverCh.trigger('client-reply', { ok: 1 }), 'pusher-js refused to send the reply');
  await reply;
  same(echoed, [], 'client events echoed to their sender');
}

test('whisper (laravel-echo): reaches the other member of a private channel, not the sender', async (t) => {
  const room = uniq('whisper-');
  const ea = await echo(t);
  const eb = await echo(t);
  const heard = [];
  const echoed = [];
  const ca = ea.private(room).listenForWhisper('typing', (d) => echoed.push(d));
  eb.private(room).listenForWhisper('typing', (d) => heard.push(d));
  const pa = await subscribed(ea.connector.pusher.channel(`private-${room}`));
  const pb = await subscribed(eb.connector.pusher.channel(`private-${room}`));
  const got = once(pb, 'client-typing');
  ca.whisper('typing', { name: 'ann', typing: true });
  same(await got, { name: 'ann', typing: true }, 'whisper data');
  same(heard, [{ name: 'ann', typing: true }], 'listenForWhisper at the receiver');
  await noEcho(pa, pb, echoed);
});

test('whisper (laravel-echo) on a presence channel carries the sender user_id', todoOn('presence-client-event-user'), async (t) => {
  const room = uniq('whisper-pres-');
  const ann = uniq('ann-');
  const ea = await echo(t, { userId: ann });
  const eb = await echo(t);
  const ca = ea.join(room);
  eb.join(room);
  const pa = await subscribed(ea.connector.pusher.channel(`presence-${room}`));
  const pb = await subscribed(eb.connector.pusher.channel(`presence-${room}`));
  const echoed = record(pa, 'client-wave');
  const got = once(pb, 'client-wave', { meta: true });
  ca.whisper('wave', { hi: true });
  const { data, meta } = await got;
  same(data, { hi: true }, 'whisper data');
  same(meta && meta.user_id, ann, 'user_id of the sender');
  await noEcho(pa, pb, echoed);
});

test('client event (pusher-js trigger) on a private channel: relayed, not echoed', async (t) => {
  const name = uniq('private-ce-');
  const a = await connect(t);
  const b = await connect(t);
  const c = await connect(t);
  const ca = await subscribe(a, name);
  const cb = await subscribe(b, name);
  const cc = await subscribe(c, name);
  const echoed = record(ca, 'client-move');
  const atB = once(cb, 'client-move');
  const atC = once(cc, 'client-move');
  check(ca.trigger('client-move', { x: 1, y: 2 }), 'pusher-js refused to send');
  same(await atB, { x: 1, y: 2 }, 'at B');
  same(await atC, { x: 1, y: 2 }, 'at C');
  await noEcho(ca, cb, echoed);
});

test('client event on a public channel is refused with pusher:error and not relayed', todoOn('client-event-public'), async (t) => {
  const name = uniq('public-ce-');
  const a = await connect(t);
  const b = await connect(t);
  const ca = await subscribe(a, name);
  const cb = await subscribe(b, name);
  const relayed = record(cb, 'client-nope');
  const err = once(a, 'pusher:error', { what: 'pusher:error at the sender' });
  ca.trigger('client-nope', { x: 1 });
  const e = await err;
  check(e && typeof e.message === 'string', `pusher:error without a message: ${JSON.stringify(e)}`);
  await flush(cb);
  same(relayed, [], 'client events relayed on a public channel');
});

test('client event on a public channel is not relayed (whatever the server answers)', todoOn('client-event-public'), async (t) => {
  const name = uniq('public-ce2-');
  const s = await rawSocket(t);
  s.send({ event: 'pusher:subscribe', data: { channel: name } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded', { what: 'subscription_succeeded' });
  const b = await connect(t);
  const cb = await subscribe(b, name);
  const relayed = record(cb, 'client-nope');
  s.send({ event: 'client-nope', channel: name, data: { x: 1 } });
  // The raw socket's next subscribe is taken after its client event; then the marker.
  const other = uniq('public-ce2-after-');
  s.send({ event: 'pusher:subscribe', data: { channel: other } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === other, { what: 'second subscription' });
  await flush(cb);
  same(relayed, [], 'client events relayed on a public channel');
});

test('client event to a private channel the sender is not subscribed to is not relayed', async (t) => {
  const name = uniq('private-ce-nosub-');
  const b = await connect(t);
  const cb = await subscribe(b, name);
  const relayed = record(cb, 'client-intruder');
  const s = await rawSocket(t);
  s.send({ event: 'client-intruder', channel: name, data: { x: 1 } });
  const other = uniq('after-');
  s.send({ event: 'pusher:subscribe', data: { channel: other } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === other, { what: 'subscription_succeeded' });
  await flush(cb);
  same(relayed, [], 'client events from a non-member');
});
