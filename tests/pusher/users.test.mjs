// User authentication: pusher-js's signin() asks its userAuthentication handler, which signs
// with the server SDK's authenticateUser in-process; then the SDK's sendToUser reaches every
// connection of that user (and nobody else), and terminateUserConnections closes them.
import { test } from 'node:test';
import {
  api, check, connect, connected, eventually, flush, once, outcome, rawSocket, record, same, subscribe, todoOn, uniq, within,
} from './helpers.mjs';

/** A connected pusher-js client signed in as `userId`; resolves after pusher:signin_success. */
async function signedIn(t, userId, opts = {}) {
  const c = await connect(t, { userId, ...opts });
  const ok = new Promise((resolve) => c.connection.bind('message', (m) => { if (m.event === 'pusher:signin_success') resolve(m.data); }));
  c.signin();
  const data = await within(ok, `pusher:signin_success for ${userId}`);
  same(JSON.parse(data.user_data).id, userId, 'user_data.id in signin_success');
  // pusher-js subscribes to #server-to-user-<id> right after the signin; wait for the server to confirm.
  await eventually(() => c.user.serverToUserChannel && c.user.serverToUserChannel.subscribed, '#server-to-user- subscribed');
  return c;
}
test('signin: pusher-js signs in with authenticateUser and gets signin_success', todoOn('signin'), async (t) => {
  await signedIn(t, uniq('alice-'));
});

test('signin with a forged signature: refused with 4009', async (t) => {
  const s = await rawSocket(t);
  const socketId = s.messages[0].data.socket_id;
  const user = { id: uniq('mallory-') };
  const { auth } = api.authenticateUser(socketId, { id: 'someone-else' });
  s.send({ event: 'pusher:signin', data: { auth, user_data: JSON.stringify(user) } });
  const answer = await Promise.race([
    s.next((m) => m.event === 'pusher:error' || m.event === 'pusher:signin_success', { what: 'an answer to the signin' }),
    s.closed.then((c) => ({ closed: c })),
  ]);
  check(answer.event !== 'pusher:signin_success', 'the forged signin succeeded');
  const code = answer.closed ? answer.closed.code : answer.data && answer.data.code;
  same(code, 4009, `error or close code (${JSON.stringify(answer)})`);
});

test('sendToUser reaches every connection of that user and nobody else', todoOn('signin'), async (t) => {
  const bob = uniq('bob-');
  const tab1 = await signedIn(t, bob);
  const tab2 = await signedIn(t, bob);
  const other = await signedIn(t, uniq('carl-'));
  const elsewhere = record(other.user, 'note');
  const got1 = once(tab1.user, 'note', { what: 'note at tab 1' });
  const got2 = once(tab2.user, 'note', { what: 'note at tab 2' });
  await api.sendToUser(bob, 'note', { text: 'for bob' });
  same(await got1, { text: 'for bob' }, 'tab 1');
  same(await got2, { text: 'for bob' }, 'tab 2');
  // A marker sent to the other user after Bob's event: once it is in, Bob's would be too.
  const id = uniq('mark');
  const marker = once(other.user, 'test-marker', { pred: (d) => d && d.id === id, what: 'marker to the other user' });
  await api.sendToUser(other.user.user_data.id, 'test-marker', { id });
  await marker;
  same(elsewhere, [], 'events at another user');
});

test('#server-to-user-<id> cannot be subscribed without signing in as that user', todoOn('server-to-user-guard'), async (t) => {
  const victim = uniq('victim-');
  const s = await rawSocket(t);
  const leaked = [];
  s.ws.on('message', (d) => { if (String(d).includes('"private-note"')) leaked.push(String(d)); });
  s.send({ event: 'pusher:subscribe', data: { channel: `#server-to-user-${victim}` } });
  const answer = await s.next((m) => (m.channel === `#server-to-user-${victim}` || m.event === 'pusher:error')
    && m.event !== 'pusher_internal:subscription_succeeded', { what: 'a refusal' }).catch((e) => ({ none: e.message }));
  await outcome(api.sendToUser(victim, 'private-note', { secret: 1 }));
  const probe = uniq('probe-');
  s.send({ event: 'pusher:subscribe', data: { channel: probe } });
  await s.next((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === probe, { what: 'probe subscription' });
  same(leaked, [], "the victim's events at an unsigned connection");
  check(!s.messages.some((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === `#server-to-user-${victim}`),
    `subscription to #server-to-user-${victim} succeeded (${JSON.stringify(answer)})`);
});

test('terminateUserConnections closes every connection of that user, and only those', todoOn('signin'), async (t) => {
  const dora = uniq('dora-');
  const d1 = await signedIn(t, dora);
  const d2 = await signedIn(t, dora);
  const bystander = await signedIn(t, uniq('ed-'));
  const left = (c) => new Promise((resolve) => c.connection.bind('state_change', ({ previous }) => { if (previous === 'connected') resolve(); }));
  const gone1 = left(d1);
  const gone2 = left(d2);
  const bystanderLeft = [];
  bystander.connection.bind('state_change', (s) => bystanderLeft.push(s));
  const r = await outcome(api.terminateUserConnections(dora));
  check(!r.threw && r.status === 200, `HTTP ${r.status} ${r.body}`);
  await within(Promise.all([gone1, gone2]), 'the close of every connection of the user');
  const ch = await subscribe(bystander, uniq('still-here-'));
  await flush(ch);
  same(bystanderLeft, [], "the other user's state changes");
  await connected(bystander);
});

test('terminateUserConnections closes a signed-in connection that never subscribed to its user channel', todoOn('signin'), async (t) => {
  const fay = uniq('fay-');
  const s = await rawSocket(t);
  const socketId = s.messages[0].data.socket_id;
  const user = { id: fay };
  const { auth } = api.authenticateUser(socketId, user);
  s.send({ event: 'pusher:signin', data: { auth, user_data: JSON.stringify(user) } });
  await s.next((m) => m.event === 'pusher:signin_success', { what: 'pusher:signin_success' });
  const r = await outcome(api.terminateUserConnections(fay));
  check(!r.threw && r.status === 200, `HTTP ${r.status} ${r.body}`);
  const closed = await within(s.closed, 'the close of the signed-in connection');
  same(closed.code, 4009, 'close code');
});
