// End-to-end: the page in Debian's Chromium (playwright-core) against the real wshub binary.
// Run with `npm run e2e` after `npm run build`; WSHUB_BIN overrides ../target/debug/wshub.
// WSHUB_E2E_PAGE=static serves web/dist from a local server (with ?server=) instead of the
// page embedded in the binary. Without it, a binary whose embedded page is not the current
// web/dist fails the first test, and the other scenarios fall back to the static page.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DIST_DIR,
  WEB_DIR,
  freePort,
  killAll,
  launchBrowser,
  startStaticServer,
  startWshub,
  stitchSideBySide,
  stopProcess,
} from './support.mjs';

const SCREENSHOT = path.resolve(WEB_DIR, '../docs/screenshot-chat.png');
const SHOTS_DIR = path.join(os.tmpdir(), 'wshub-e2e-shots');
const WANT_STATIC = process.env.WSHUB_E2E_PAGE === 'static';
let pageSource = 'embedded';
let embedded = { fresh: true, served: '', built: '' };

let browser;
let hub;
let staticSite;
const pageErrors = [];

/** URL of the page, either embedded in wshub (same origin) or from the static server. */
function pageUrl(mode) {
  if (pageSource === 'static') return `${staticSite.url}/?mode=${mode}&server=ws://127.0.0.1:${hub.port}`;
  return `http://127.0.0.1:${hub.port}/?mode=${mode}`;
}

async function openPage(url, viewport) {
  const page = await browser.context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('pageerror', (e) => pageErrors.push(`${url}: ${e.message}`));
  await page.goto(url);
  return page;
}

const waitStatus = (page, status, timeout = 10_000) =>
  page.locator(`[role="status"][data-status="${status}"]`).waitFor({ timeout });

const messageBox = (page) => page.getByLabel('Message', { exact: true });

async function send(page, text) {
  await messageBox(page).fill(text);
  await messageBox(page).press('Enter');
}

/** Wait until a message line of `selector` shows exactly `text` (as text, not markup). */
async function waitMessage(page, selector, text, timeout = 10_000) {
  await page.waitForFunction(
    ([sel, t]) => [...document.querySelectorAll(`${sel} .message-text`)].some((e) => e.textContent === t),
    [selector, text],
    { timeout },
  );
}

const OWN = 'li[data-kind="own"]:not(.is-pending)';
const OTHER = 'li[data-kind="other"]';

before(async () => {
  if (!existsSync(path.join(DIST_DIR, 'index.html'))) throw new Error('web/dist is missing: run `npm run build` first');
  await mkdir(SHOTS_DIR, { recursive: true });
  staticSite = await startStaticServer();
  hub = await startWshub(await freePort());
  const served = await (await fetch(`http://127.0.0.1:${hub.port}/`)).text();
  const built = await readFile(path.join(DIST_DIR, 'index.html'), 'utf8');
  embedded = { fresh: served.trim() === built.trim(), served, built };
  if (WANT_STATIC || !embedded.fresh) pageSource = 'static';
  if (!WANT_STATIC && !embedded.fresh) {
    console.error('# the page embedded in wshub is not web/dist: the page scenarios use web/dist via ?server=');
  }
  browser = await launchBrowser();
}, { timeout: 60_000 });

after(async () => {
  await browser?.close();
  await staticSite?.close();
  await killAll();
}, { timeout: 30_000 });

describe('wshub page', { timeout: 120_000 }, () => {
  test('serves /healthz and the current web/dist at /', { timeout: 15_000 }, async () => {
    const health = await fetch(`http://127.0.0.1:${hub.port}/healthz`);
    assert.equal(health.status, 200);
    assert.match(health.headers.get('content-type') ?? '', /json/);
    await health.json();
    if (!WANT_STATIC) {
      assert.equal(
        embedded.served.trim(),
        embedded.built.trim(),
        'the page embedded in wshub differs from web/dist: rebuild wshub, or run with WSHUB_E2E_PAGE=static',
      );
    }
  });

  test('chat: two pages both see a message typed in one', { timeout: 60_000 }, async () => {
    const ann = await openPage(pageUrl('chat'));
    const bob = await openPage(pageUrl('chat'));
    await Promise.all([waitStatus(ann, 'open'), waitStatus(bob, 'open')]);
    await ann.getByLabel('Nickname').fill('Ann');
    await bob.getByLabel('Nickname').fill('Bob');

    const hello = 'Hi Bob! 👋 Is the hub up?';
    await send(ann, hello);
    await waitMessage(ann, OWN, hello);
    await waitMessage(bob, OTHER, hello);

    const reply = 'Hello Ann — こんにちは、元気ですか？ 日本語も絵文字も大丈夫 🎉';
    await send(bob, reply);
    await waitMessage(bob, OWN, reply);
    await waitMessage(ann, OTHER, reply);

    const long = `Long lines wrap: ${'a-very-long-token-'.repeat(12)}end, and normal sentences flow onto the next line as you would expect in a chat.`;
    await send(ann, long);
    await waitMessage(bob, OTHER, long);

    const markup = '<img src=x onerror="window.__pwned=1"> <b>tags stay text</b>';
    await send(bob, markup);
    await waitMessage(ann, OTHER, markup);
    await waitMessage(bob, OWN, markup);
    for (const page of [ann, bob]) {
      assert.equal(await page.locator('.messages img, .messages b').count(), 0, 'message text rendered as HTML');
      assert.equal(await page.evaluate(() => window.__pwned), undefined);
      const overflow = await page.locator('.messages').evaluate((el) => el.scrollWidth - el.clientWidth);
      assert.ok(overflow <= 0, `messages overflow horizontally by ${overflow}px`);
    }

    const shots = [await ann.screenshot(), await bob.screenshot()];
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await writeFile(SCREENSHOT, await stitchSideBySide(browser.context, shots));

    // Phone width: no sideways scrolling, the composer stays usable.
    const phone = await openPage(pageUrl('chat'), { width: 375, height: 740 });
    await waitStatus(phone, 'open');
    await send(ann, 'Seen on a phone too 📱');
    await waitMessage(phone, OTHER, 'Seen on a phone too 📱');
    const sideways = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(sideways <= 0, `phone layout scrolls sideways by ${sideways}px`);
    await phone.screenshot({ path: path.join(SHOTS_DIR, 'phone.png') });
    await Promise.all([ann.close(), bob.close(), phone.close()]);
  });

  test('echo: the server returns what was sent', { timeout: 30_000 }, async () => {
    const page = await openPage(pageUrl('echo'));
    await waitStatus(page, 'open');
    assert.match(await page.locator('h1').innerText(), /\/echo/);
    const text = 'echo ✓ 日本語 🚀';
    await send(page, text);
    await waitMessage(page, 'li[data-kind="own"]', text);
    await waitMessage(page, 'li[data-kind="echo"]', text);
    assert.equal(await messageBox(page).inputValue(), '');
    await page.close();
  });

  test('the page reconnects on its own after a server restart', { timeout: 60_000 }, async () => {
    const page = await openPage(pageUrl('chat'));
    await waitStatus(page, 'open');
    await messageBox(page).fill('draft survives the outage');

    const code = await stopProcess(hub);
    assert.equal(code, 0, 'wshub should exit cleanly on SIGTERM');
    await waitStatus(page, 'reconnecting');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('li[data-kind="system"]')].some((e) => /Disconnected: 1001/.test(e.textContent ?? '')),
    );
    assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), true);
    assert.equal(await messageBox(page).inputValue(), 'draft survives the outage');
    await page.screenshot({ path: path.join(SHOTS_DIR, 'reconnecting.png') });

    hub = await startWshub(hub.port);
    await waitStatus(page, 'open', 30_000);
    await messageBox(page).press('Enter');
    await waitMessage(page, OWN, 'draft survives the outage');
    await page.close();
  });

  test('a refused origin is shown as an error, not a blank page', { timeout: 45_000 }, async () => {
    const strict = await startWshub(await freePort(), ['--allowed-origin', 'http://allowed.example']);
    try {
      // The server itself answers a foreign Origin with 403.
      const status = await new Promise((resolve, reject) => {
        const req = http.get({
          host: '127.0.0.1',
          port: strict.port,
          path: '/ws',
          headers: {
            Connection: 'Upgrade',
            Upgrade: 'websocket',
            Origin: staticSite.url,
            'Sec-WebSocket-Version': '13',
            'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
          },
        });
        req.on('response', (res) => resolve(res.statusCode));
        req.on('upgrade', (res, socket) => (socket.destroy(), resolve(res.statusCode)));
        req.on('error', reject);
      });
      assert.equal(status, 403);

      const page = await openPage(`${staticSite.url}/?mode=chat&server=ws://127.0.0.1:${strict.port}`);
      const alert = page.locator('[role="alert"][data-kind="refused"]');
      await alert.waitFor();
      await page.waitForFunction(() => /origin allowed/.test(document.querySelector('[data-kind="refused"]')?.textContent ?? ''));
      assert.match(await alert.innerText(), /refused the connection/);
      assert.ok(await page.locator('h1').isVisible(), 'page should still render');
      assert.equal(await page.locator('[data-status="open"]').count(), 0);
      await page.screenshot({ path: path.join(SHOTS_DIR, 'refused.png') });
      await page.close();
    } finally {
      await stopProcess(strict);
    }
  });

  test('no uncaught errors in any page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
