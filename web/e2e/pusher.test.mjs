// End-to-end: pusher-js's browser build (dist/web/pusher.min.js, the file a site puts in a
// <script> tag) in Debian's Chromium against the real wshub binary, with the `pusher` server SDK
// in this process as the app's backend. tests/pusher judges the same endpoint with pusher-js's
// node build; this file is for what only a browser has: the browser's own WebSocket, its Origin
// header, and the script build's globals. The client runs in wshub's own page (an allowed
// origin), next to the page's chat.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import PusherServer from 'pusher';
import { freePort, killAll, launchBrowser, startWshub } from './support.mjs';

const require = createRequire(import.meta.url);
const PUSHER_JS = path.join(path.dirname(require.resolve('pusher-js/package.json')), 'dist/web/pusher.min.js');
const APP = { appId: 'app-id', key: 'app-key', secret: 'app-secret' };
/** Every wait in a page: a loaded 2-core machine needs seconds, and nothing may wait for ever. */
const T = 10_000;

let browser;
let hub;
let api;
const pageErrors = [];

before(async () => {
  hub = await startWshub(await freePort(), ['--app', `${APP.appId}:${APP.key}:${APP.secret}`]);
  api = new PusherServer({ ...APP, host: '127.0.0.1', port: String(hub.port), useTLS: false, timeout: T });
  browser = await launchBrowser();
}, { timeout: 60_000 });

after(async () => {
  await browser?.close();
  await killAll();
}, { timeout: 30_000 });

/**
 * wshub's page with pusher-js's browser build loaded into it, and `wshubAuthorize` exposed so
 * that the page's channel authorizer reaches the backend (this process) as an app's auth
 * endpoint would, the signature made by the server SDK.
 */
async function openPusherPage(query = '') {
  const page = await browser.context.newPage();
  const logs = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.logs = logs;
  await page.exposeFunction('wshubAuthorize', (socketId, channelName) => api.authorizeChannel(socketId, channelName));
  await page.goto(`http://127.0.0.1:${hub.port}/${query}`);
  await page.addScriptTag({ path: PUSHER_JS });
  assert.equal(await page.evaluate(() => typeof window.Pusher), 'function', 'the browser build defines window.Pusher');
  // In the page: named clients, each one's received events and subscriptions, for the waits below.
  await page.evaluate(
    ({ port, key }) => {
      window.clients = {};
      // The exposed binding itself cannot be replaced, so a test swaps this one instead.
      window.authorize = window.wshubAuthorize;
      window.connect = (name) => {
        const pusher = new window.Pusher(key, {
          wsHost: '127.0.0.1',
          wsPort: port,
          forceTLS: false,
          enabledTransports: ['ws'],
          cluster: '',
          channelAuthorization: {
            customHandler: ({ socketId, channelName }, callback) =>
              window.authorize(socketId, channelName).then(
                (auth) => callback(null, auth),
                (e) => callback(e, null),
              ),
          },
        });
        const client = { pusher, events: [], subscribed: [], errors: [] };
        pusher.connection.bind('error', (e) => client.errors.push(JSON.stringify(e)));
        window.clients[name] = client;
      };
      window.subscribe = (name, channelName, eventNames) => {
        const client = window.clients[name];
        const channel = client.pusher.subscribe(channelName);
        channel.bind('pusher:subscription_succeeded', () => client.subscribed.push(channelName));
        channel.bind('pusher:subscription_error', (e) => client.errors.push(`${channelName}: ${JSON.stringify(e)}`));
        for (const event of eventNames) channel.bind(event, (data) => client.events.push({ channel: channelName, event, data }));
      };
    },
    { port: hub.port, key: APP.key },
  );
  return page;
}

/** Wait (bounded) until `predicate(window.clients)` holds; on failure, say what the page had. */
async function waitClients(page, what, predicate, arg) {
  try {
    await page.waitForFunction(`(${predicate})(window.clients, ${JSON.stringify(arg ?? null)})`, null, { timeout: T });
  } catch (e) {
    const state = await page.evaluate(() =>
      Object.fromEntries(
        Object.entries(window.clients).map(([n, c]) => [
          n,
          { state: c.pusher.connection.state, subscribed: c.subscribed, events: c.events, errors: c.errors },
        ]),
      ),
    );
    throw new Error(`${what}: ${e.message}\npage clients: ${JSON.stringify(state)}\nconsole:\n${page.logs.join('\n')}`);
  }
}

const eventsOf = (page, name) => page.evaluate((n) => window.clients[n].events, name);

const uniq = (() => {
  let n = 0;
  const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
  return (prefix) => `${prefix}b${tag}-${++n}`;
})();

describe('pusher-js browser build in Chromium', { timeout: 120_000 }, () => {
  test('connects, subscribes to a public and a private channel, gets a triggered event on both', { timeout: 45_000 }, async () => {
    const page = await openPusherPage();
    const pub = uniq('news-');
    const priv = uniq('private-news-');
    await page.evaluate(() => window.connect('a'));
    await waitClients(page, 'connected', (c) => c.a.pusher.connection.state === 'connected');
    const socketId = await page.evaluate(() => window.clients.a.pusher.connection.socket_id);
    assert.match(socketId, /^\d+\.\d+$/, 'socket_id in Pusher form');

    await page.evaluate(([p, q]) => (window.subscribe('a', p, ['news']), window.subscribe('a', q, ['news'])), [pub, priv]);
    await waitClients(page, 'both subscribed', (c, [p, q]) => c.a.subscribed.includes(p) && c.a.subscribed.includes(q), [pub, priv]);

    const payload = { text: 'from the backend ✓ 日本語', n: 7 };
    await api.trigger([pub, priv], 'news', payload);
    await waitClients(page, 'the event on both channels', (c) => c.a.events.length >= 2);
    const got = await eventsOf(page, 'a');
    assert.deepEqual(
      got.sort((x, y) => x.channel.localeCompare(y.channel)),
      [
        { channel: pub, event: 'news', data: payload },
        { channel: priv, event: 'news', data: payload },
      ].sort((x, y) => x.channel.localeCompare(y.channel)),
    );
    assert.deepEqual(await page.evaluate(() => window.clients.a.errors), []);

    // A private channel without a valid signature is refused, and the page is told so.
    await page.evaluate((key) => {
      window.authorize = async () => ({ auth: `${key}:${'0'.repeat(64)}` });
    }, APP.key);
    const forged = uniq('private-forged-');
    await page.evaluate((n) => window.subscribe('a', n, ['news']), forged);
    await waitClients(page, 'the forged subscription refused', (c, n) => c.a.errors.some((e) => e.startsWith(`${n}:`)), forged);
    assert.equal(await page.evaluate((n) => window.clients.a.subscribed.includes(n), forged), false);
    await page.evaluate(() => window.clients.a.pusher.disconnect());
    await page.close();
  });

  test('a client event on a private channel reaches the other client, not its sender', { timeout: 45_000 }, async () => {
    // Two pages, two browser WebSockets: as two visitors of a site would be.
    const [ann, bob] = [await openPusherPage(), await openPusherPage()];
    const priv = uniq('private-room-');
    for (const [page, name] of [
      [ann, 'ann'],
      [bob, 'bob'],
    ]) {
      await page.evaluate(([n, ch]) => (window.connect(n), window.subscribe(n, ch, ['client-ping', 'client-pong'])), [name, priv]);
      await waitClients(page, `${name} subscribed`, (c, [n, ch]) => c[n].subscribed.includes(ch), [name, priv]);
    }

    const ping = await ann.evaluate((ch) => window.clients.ann.pusher.channel(ch).trigger('client-ping', { from: 'ann' }), priv);
    assert.equal(ping, true, 'pusher-js sent the client event');
    await waitClients(bob, 'bob got the ping', (c) => c.bob.events.some((e) => e.event === 'client-ping'));
    // Bob answers only after the ping arrived; had the server echoed the ping to Ann, it would
    // have been queued for her before this pong.
    await bob.evaluate((ch) => window.clients.bob.pusher.channel(ch).trigger('client-pong', { from: 'bob' }), priv);
    await waitClients(ann, 'ann got the pong', (c) => c.ann.events.some((e) => e.event === 'client-pong'));

    assert.deepEqual(await eventsOf(ann, 'ann'), [{ channel: priv, event: 'client-pong', data: { from: 'bob' } }], 'ann: no echo of her ping');
    assert.deepEqual(await eventsOf(bob, 'bob'), [{ channel: priv, event: 'client-ping', data: { from: 'ann' } }], 'bob: no echo of his pong');
    for (const page of [ann, bob]) await page.close();
  });

  test("the page's own chat works next to pusher-js", { timeout: 45_000 }, async (t) => {
    const page = await openPusherPage('?mode=chat&room=pusher-side');
    if ((await page.locator('[role="status"]').count()) === 0) {
      await page.close();
      return t.skip('this wshub binary embeds no web page (built with WSHUB_SKIP_WEB_BUILD=1)');
    }
    const ch = uniq('side-');
    await page.evaluate((c) => (window.connect('p'), window.subscribe('p', c, ['news'])), ch);
    await page.locator('[role="status"][data-status="open"]').waitFor({ timeout: T });
    await waitClients(page, 'subscribed', (c, n) => c.p.subscribed.includes(n), ch);

    const box = page.getByLabel('Message', { exact: true });
    await box.fill('chat beside pusher-js');
    await box.press('Enter');
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('li[data-kind="own"]:not(.is-pending) .message-text')].some(
          (e) => e.textContent === 'chat beside pusher-js',
        ),
      null,
      { timeout: T },
    );
    await api.trigger(ch, 'news', { text: 'still here' });
    await waitClients(page, 'the event beside the chat', (c) => c.p.events.some((e) => e.data.text === 'still here'));
    await page.close();
  });

  test('no uncaught errors in any page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
