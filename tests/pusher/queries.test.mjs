// The HTTP API's channel queries through the server SDK's get(): GET /channels (prefix filter,
// info), GET /channels/{name}, GET /channels/{name}/users.
import { test } from 'node:test';
import {
  api, check, connect, eventually, same, subscribe, todoOn, uniq,
} from './helpers.mjs';

const get = async (path, params) => (await api.get({ path, params })).json();

test('GET /channels?filter_by_prefix lists exactly the occupied channels with that prefix', async (t) => {
  const prefix = uniq('q-');
  const names = [`${prefix}-one`, `${prefix}-two`];
  const c = await connect(t);
  for (const n of names) await subscribe(c, n);
  await subscribe(c, uniq('other-'));
  const body = await get('/channels', { filter_by_prefix: prefix });
  check(body.channels && typeof body.channels === 'object', `no "channels" object: ${JSON.stringify(body)}`);
  same(Object.keys(body.channels).sort(), names.sort(), 'channels listed');
});

test('GET /channels?info=subscription_count counts connections per channel', async (t) => {
  const prefix = uniq('qs-');
  const name = `${prefix}-room`;
  const a = await connect(t);
  const b = await connect(t);
  await subscribe(a, name);
  await subscribe(b, name);
  const body = await get('/channels', { filter_by_prefix: prefix, info: 'subscription_count' });
  same(body.channels && body.channels[name] && body.channels[name].subscription_count, 2, `subscription_count of ${name}`);
});

test('GET /channels?filter_by_prefix=presence-&info=user_count counts users, not connections', todoOn('channels-info'), async (t) => {
  const prefix = uniq('presence-qu-');
  const name = `${prefix}-room`;
  const one = await connect(t, { userId: uniq('ann-') });
  const userId = uniq('bob-');
  const b1 = await connect(t, { userId });
  const b2 = await connect(t, { userId });
  for (const c of [one, b1, b2]) await subscribe(c, name);
  const body = await get('/channels', { filter_by_prefix: prefix, info: 'user_count' });
  same(body.channels && body.channels[name] && body.channels[name].user_count, 2, `user_count of ${name}`);
});

test('GET /channels/{name}: occupied, subscription_count, and unoccupied once everyone left', async (t) => {
  const name = uniq('qc-');
  const a = await connect(t);
  const b = await connect(t);
  await subscribe(a, name);
  await subscribe(b, name);
  const info = await get(`/channels/${name}`, { info: 'subscription_count' });
  same(info.occupied, true, 'occupied');
  same(info.subscription_count, 2, 'subscription_count');
  a.disconnect();
  b.disconnect();
  await eventually(async () => (await get(`/channels/${name}`)).occupied === false, `${name} unoccupied`);
});

test('GET /channels/{presence}: user_count counts one user with two connections once', async (t) => {
  const name = uniq('presence-qp-');
  const userId = uniq('carol-');
  const c1 = await connect(t, { userId });
  const c2 = await connect(t, { userId });
  const d = await connect(t);
  for (const c of [c1, c2, d]) await subscribe(c, name);
  const info = await get(`/channels/${name}`, { info: 'user_count,subscription_count' });
  same(info.occupied, true, 'occupied');
  same(info.user_count, 2, 'user_count');
  same(info.subscription_count, 3, 'subscription_count');
});

test('GET /channels/{presence}/users lists each user once', async (t) => {
  const name = uniq('presence-qusers-');
  const dave = uniq('dave-');
  const erin = uniq('erin-');
  const c1 = await connect(t, { userId: dave });
  const c2 = await connect(t, { userId: dave });
  const c3 = await connect(t, { userId: erin });
  for (const c of [c1, c2, c3]) await subscribe(c, name);
  const body = await get(`/channels/${name}/users`);
  check(Array.isArray(body.users), `no "users" array: ${JSON.stringify(body)}`);
  same(body.users.map((u) => u.id).sort(), [dave, erin].sort(), 'user ids');
});

test('GET /channels/{public}/users is refused: users exist only on presence channels', todoOn('http-error-status'), async (t) => {
  const name = uniq('qpublic-');
  const c = await connect(t);
  await subscribe(c, name);
  let status;
  try {
    const res = await api.get({ path: `/channels/${name}/users` });
    status = res.status;
  } catch (e) {
    status = e.status;
  }
  check(status >= 400 && status < 500, `HTTP ${status}, want a 4xx`);
});
