// Webhooks: a receiver on 127.0.0.1:PUSHER_WEBHOOK_PORT (the URL scripts/test-pusher started the
// server with) checks each POST with the server SDK's webhook().isValid(), as an app would, and
// the tests look for the events of their own channels. Skipped when the server was started
// without a webhook URL.
import { after, before, test } from 'node:test';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import {
  APP, T, WEBHOOK_PORT, api, connect, eventually, same, sleep, subscribe, todoOn, uniq,
} from './helpers.mjs';

const skip = WEBHOOK_PORT ? false : 'the server under test was not started with a webhook URL (PUSHER_WEBHOOK_PORT unset)';
/** Every webhook POST received: { valid, key, body } in arrival order. */
const posts = [];
let receiver;

before(async () => {
  if (skip) return;
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const hook = api.webhook({ headers: req.headers, rawBody });
      let body;
      try { body = JSON.parse(rawBody); } catch { /* recorded as invalid */ }
      posts.push({ valid: hook.isValid(), key: req.headers['x-pusher-key'], contentType: req.headers['content-type'], body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((resolve, reject) => receiver.once('error', reject).listen(WEBHOOK_PORT, '127.0.0.1', resolve));
});
after(() => receiver && receiver.close());

/** The webhook events (with the validity of the POST that carried them) about `channel`. */
const eventsOf = (channel) => posts.flatMap((p) => ((p.body && p.body.events) || [])
  .filter((e) => e.channel === channel).map((e) => ({ ...e, valid: p.valid })));
const names = (channel) => eventsOf(channel).map((e) => e.name);
/** How long to keep listening for a duplicate once the expected webhooks are in. */
const QUIET_MS = 1000;
/**
 * How long the first webhook of a test may take. The other files' channels were occupied and
 * vacated while no receiver listened, so the server may be in the middle of its retry schedule
 * when this file starts (wshub: waits of about 0.5, 1, 2, 4 and 8 s, some 16 s for a batch) and
 * delivers what is queued, this file's events last, only after its next retry.
 */
const FIRST_MS = T + 20000;

test('webhooks: channel_occupied then channel_vacated, once each, signed for the app', { skip }, async (t) => {
  const name = uniq('hook-');
  const a = await connect(t);
  const b = await connect(t);
  await subscribe(a, name);
  await subscribe(b, name);
  await eventually(() => names(name).includes('channel_occupied'), `channel_occupied for ${name}`, FIRST_MS);
  a.unsubscribe(name);
  b.unsubscribe(name);
  await eventually(() => names(name).includes('channel_vacated'), `channel_vacated for ${name}`);
  await sleep(QUIET_MS);
  same(names(name), ['channel_occupied', 'channel_vacated'], `webhook events for ${name}`);
  for (const e of eventsOf(name)) same(e.valid, true, `signature of the ${e.name} POST`);
  const post = posts.find((p) => p.body && p.body.events.some((e) => e.channel === name));
  same(post.key, APP.key, 'X-Pusher-Key');
  same(post.contentType && post.contentType.split(';')[0], 'application/json', 'content type');
  same(typeof post.body.time_ms, 'number', 'time_ms');
});

test('webhooks: member_added and member_removed once per user, not per connection', { skip, ...todoOn('member-webhook-per-user') }, async (t) => {
  const name = uniq('presence-hook-');
  const userId = uniq('hookuser-');
  const c1 = await connect(t, { userId });
  const c2 = await connect(t, { userId });
  await subscribe(c1, name);
  await subscribe(c2, name);
  await eventually(() => names(name).includes('member_added'), `member_added for ${name}`, FIRST_MS);
  c1.disconnect();
  c2.disconnect();
  await eventually(() => names(name).includes('member_removed'), `member_removed for ${name}`);
  await eventually(() => names(name).includes('channel_vacated'), `channel_vacated for ${name}`);
  await sleep(QUIET_MS);
  const members = eventsOf(name).filter((e) => e.name.startsWith('member_'));
  same(members.map((e) => [e.name, e.user_id]), [['member_added', userId], ['member_removed', userId]], 'member webhooks');
  for (const e of eventsOf(name)) same(e.valid, true, `signature of the ${e.name} POST`);
});

test('webhooks: client_event carries the event, data, socket_id and (presence) user_id', { skip, ...todoOn('client-event-webhook-user') }, async (t) => {
  const name = uniq('presence-hook-ce-');
  const userId = uniq('whisperer-');
  const a = await connect(t, { userId });
  const b = await connect(t);
  const ca = await subscribe(a, name);
  await subscribe(b, name);
  ca.trigger('client-note', { n: 1 });
  const hook = await eventually(() => eventsOf(name).find((e) => e.name === 'client_event'), `client_event for ${name}`, FIRST_MS);
  same(hook.event, 'client-note', 'event');
  same(JSON.parse(typeof hook.data === 'string' ? hook.data : JSON.stringify(hook.data)), { n: 1 }, 'data');
  same(hook.socket_id, a.connection.socket_id, 'socket_id');
  same(hook.user_id, userId, 'user_id');
  same(hook.valid, true, 'signature');
});

test('webhooks: the receiver rejects a POST signed with another secret (the check is real)', { skip }, async () => {
  const rawBody = JSON.stringify({ time_ms: Date.now(), events: [] });
  const forged = createHmac('sha256', 'not-the-secret').update(rawBody).digest('hex');
  const good = createHmac('sha256', APP.secret).update(rawBody).digest('hex');
  const headers = (sig) => ({ 'x-pusher-key': APP.key, 'x-pusher-signature': sig, 'content-type': 'application/json' });
  same(api.webhook({ headers: headers(forged), rawBody }).isValid(), false, 'forged signature');
  same(api.webhook({ headers: headers(good), rawBody }).isValid(), true, 'good signature');
});
