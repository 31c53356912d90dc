// End-to-end: the page in Debian's Chromium (playwright-core) against the real wshub binary.
// Run with `npm run e2e` after `npm run build`; WSHUB_BIN overrides ../target/debug/wshub.
// WSHUB_E2E_PAGE=static serves web/dist from a local server (with ?server=) instead of the
// page embedded in the binary. Without it, a binary whose embedded page is not the current
// web/dist fails the first test, and the other scenarios fall back to the static page.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
  sleep,
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
function pageUrl(mode, { room, server = hub } = {}) {
  const roomParam = room ? `&room=${room}` : '';
  if (pageSource === 'static') return `${staticSite.url}/?mode=${mode}${roomParam}&server=ws://127.0.0.1:${server.port}`;
  return `http://127.0.0.1:${server.port}/?mode=${mode}${roomParam}`;
}

/** An HS256 JWT with `claims`, signed with `secret`. */
function jwt(claims, secret) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${crypto.createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** A new tab; `nick` is put in localStorage before the page's own scripts run. */
async function openPage(url, { viewport, nick } = {}) {
  const page = await browser.context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  if (nick !== undefined) await page.addInitScript((n) => localStorage.setItem('wshub.nick', n), nick);
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

/** Wait until the member list holds exactly `nicks` (any order). */
async function waitMembers(page, nicks, timeout = 10_000) {
  const want = [...nicks].sort();
  await page
    .waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll('.member')].map((e) => e.dataset.nick).sort()) === JSON.stringify(w),
      want,
      { timeout },
    )
    .catch(async (e) => {
      const have = await page.evaluate(() => [...document.querySelectorAll('.member')].map((el) => el.dataset.nick));
      throw new Error(`members: want ${JSON.stringify(want)}, have ${JSON.stringify(have)} (${e.message})`);
    });
}

/** Type a nickname and confirm it with Enter; resolves once the server applied it. */
async function setNick(page, nick) {
  await page.getByLabel('Nickname').fill(nick);
  await page.getByLabel('Nickname').press('Enter');
  await page.locator(`.member.is-me[data-nick="${nick}"]`).waitFor();
}

/** Chat lines in display order: `id|nick|kind|text`. */
const chatLines = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('.message-list li:not([data-kind="system"])')].map(
      (li) => `${li.dataset.id ?? '-'}|${li.dataset.nick ?? ''}|${li.dataset.kind}|${li.querySelector('.message-text')?.textContent}`,
    ),
  );

/** An HS256 JSON Web Token for `claims`, valid for an hour. */
function hourToken(secret, claims) {
  return jwt({ ...claims, exp: Math.floor(Date.now() / 1000) + 3600 }, secret);
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

describe('wshub page', { timeout: 180_000 }, () => {
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

  test('chat: two pages in a room see each other with nicknames, members come and go', { timeout: 90_000 }, async () => {
    const ann = await openPage(pageUrl('chat'));
    const bob = await openPage(pageUrl('chat'));
    await Promise.all([waitStatus(ann, 'open'), waitStatus(bob, 'open')]);
    assert.match(await ann.locator('h1').innerText(), /#lobby/);
    await setNick(ann, 'Ann');
    await setNick(bob, 'Bob');
    await Promise.all([waitMembers(ann, ['Ann', 'Bob']), waitMembers(bob, ['Ann', 'Bob'])]);
    assert.equal(await ann.locator('.members-count').first().innerText(), '2');

    const hello = 'Hi Bob! 👋 Is the hub up?';
    await send(ann, hello);
    await waitMessage(ann, `${OWN}[data-nick="Ann"]`, hello);
    await waitMessage(bob, `${OTHER}[data-nick="Ann"]`, hello);
    assert.match(await ann.locator(OWN).last().locator('.message-author').innerText(), /Ann \(you\)/);
    assert.equal(await bob.locator(OTHER).last().locator('.message-author').innerText(), 'Ann');

    const reply = 'Hello Ann — こんにちは、元気ですか？ 日本語も絵文字も大丈夫 🎉';
    await send(bob, reply);
    await waitMessage(bob, `${OWN}[data-nick="Bob"]`, reply);
    await waitMessage(ann, `${OTHER}[data-nick="Bob"]`, reply);

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
    // Both see the same messages with the same server ids, in the same order.
    assert.deepEqual(
      (await chatLines(ann)).map((l) => l.split('|')[0]),
      (await chatLines(bob)).map((l) => l.split('|')[0]),
    );

    const shots = [await ann.screenshot(), await bob.screenshot()];
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await writeFile(SCREENSHOT, await stitchSideBySide(browser.context, shots));

    // Phone width: no sideways scrolling, the member list collapses to a bar that opens.
    const phone = await openPage(pageUrl('chat'), { viewport: { width: 375, height: 740 }, nick: 'Phil' });
    await waitStatus(phone, 'open');
    await waitMembers(ann, ['Ann', 'Bob', 'Phil']);
    await send(ann, 'Seen on a phone too 📱');
    await waitMessage(phone, OTHER, 'Seen on a phone too 📱');
    const sideways = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(sideways <= 0, `phone layout scrolls sideways by ${sideways}px`);
    assert.equal(await phone.locator('.member-list').isVisible(), false, 'member list should start collapsed on a phone');
    const toggle = phone.locator('.members-toggle');
    assert.match(await toggle.innerText(), /Members\s*3/);
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    assert.equal(await phone.locator('.member-list').isVisible(), true);
    await phone.screenshot({ path: path.join(SHOTS_DIR, 'phone.png') });
    await phone.close();

    // Closing a page: the others see it leave.
    await bob.close();
    await waitMembers(ann, ['Ann']);
    await ann.waitForFunction(() =>
      [...document.querySelectorAll('li[data-event="left"]')].some((e) => /Bob left/.test(e.textContent ?? '')),
    );
    await ann.close();
  });

  test('a page that joins later gets the history, in order', { timeout: 45_000 }, async () => {
    const first = await openPage(pageUrl('chat', { room: 'history-test' }), { nick: 'Early' });
    await waitStatus(first, 'open');
    const texts = ['one', 'two ✌', 'three'];
    for (const t of texts) {
      await send(first, t);
      await waitMessage(first, OWN, t);
    }
    const late = await openPage(pageUrl('chat', { room: 'history-test' }), { nick: 'Late' });
    await waitStatus(late, 'open');
    await waitMessage(late, `${OTHER}[data-nick="Early"]`, 'three');
    const lines = await chatLines(late);
    assert.deepEqual(
      lines.map((l) => l.split('|').slice(1).join('|')),
      texts.map((t) => `Early|other|${t}`),
    );
    const ids = lines.map((l) => Number(l.split('|')[0]));
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'history in id order');
    await waitMembers(late, ['Early', 'Late']);
    await Promise.all([first.close(), late.close()]);
  });

  test('rooms are isolated; the room picker switches rooms', { timeout: 45_000 }, async () => {
    const inA = await openPage(pageUrl('chat', { room: 'a' }), { nick: 'Alice' });
    const inB = await openPage(pageUrl('chat', { room: 'b' }), { nick: 'Boris' });
    await Promise.all([waitStatus(inA, 'open'), waitStatus(inB, 'open')]);
    await Promise.all([waitMembers(inA, ['Alice']), waitMembers(inB, ['Boris'])]);
    await send(inB, 'only for room b');
    await waitMessage(inB, OWN, 'only for room b');
    await send(inA, 'only for room a');
    await waitMessage(inA, OWN, 'only for room a');
    // Give a stray frame time to arrive, then check that none did.
    await inA.waitForTimeout(300);
    assert.deepEqual((await chatLines(inA)).map((l) => l.split('|')[3]), ['only for room a']);
    assert.deepEqual((await chatLines(inB)).map((l) => l.split('|')[3]), ['only for room b']);

    // An invalid name is refused in the page.
    const roomField = inA.getByLabel('Room');
    await roomField.fill('no spaces!');
    assert.equal(await inA.getByRole('button', { name: 'Join' }).isDisabled(), true);
    assert.match(await inA.locator('.room-picker .field-error').innerText(), /letters/);
    // Switching: leave a, join b, get b's history and members.
    await roomField.fill('b');
    await roomField.press('Enter');
    await waitMessage(inA, `${OTHER}[data-nick="Boris"]`, 'only for room b');
    await Promise.all([waitMembers(inA, ['Alice', 'Boris']), waitMembers(inB, ['Alice', 'Boris'])]);
    assert.match(await inA.locator('h1').innerText(), /#b/);
    assert.match(inA.url(), /room=b/);
    assert.deepEqual((await chatLines(inA)).map((l) => l.split('|')[3]), ['only for room b']);
    await Promise.all([inA.close(), inB.close()]);
  });

  test('echo: the server returns what was sent (raw, no subprotocol)', { timeout: 30_000 }, async () => {
    const page = await openPage(pageUrl('echo'));
    await waitStatus(page, 'open');
    assert.match(await page.locator('h1').innerText(), /\/echo/);
    const text = 'echo ✓ 日本語 🚀 {"type":"send"}';
    await send(page, text);
    await waitMessage(page, 'li[data-kind="own"]', text);
    await waitMessage(page, 'li[data-kind="echo"]', text);
    assert.equal(await messageBox(page).inputValue(), '');
    await page.close();
  });

  test('the page reconnects on its own after a server restart', { timeout: 60_000 }, async () => {
    const page = await openPage(pageUrl('chat'), { nick: 'Rita' });
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

    // Same port, in-memory history: the server forgot everything, ids start over.
    hub = await startWshub(hub.port);
    await waitStatus(page, 'open', 30_000);
    await waitMembers(page, ['Rita']);
    await messageBox(page).press('Enter');
    await waitMessage(page, `${OWN}[data-nick="Rita"]`, 'draft survives the outage');
    await page.close();
  });

  test('catch-up after a restart with SQLite history: missed messages once, no duplicates', { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'wshub-e2e-history-'));
    const args = ['--history', 'sqlite', '--history-path', path.join(dir, 'h.sqlite')];
    let server = await startWshub(await freePort(), args);
    try {
      const url = pageUrl('chat', { room: 'catchup', server });
      const a = await openPage(url, { nick: 'Ada' });
      const b = await openPage(url, { nick: 'Ben' });
      await Promise.all([waitStatus(a, 'open'), waitStatus(b, 'open')]);
      await waitMembers(a, ['Ada', 'Ben']);
      for (const [page, text] of [
        [a, 'before 1'],
        [b, 'before 2'],
        [a, 'before 3'],
      ]) {
        await send(page, text);
        await waitMessage(a, page === a ? OWN : OTHER, text);
        await waitMessage(b, page === b ? OWN : OTHER, text);
      }
      const before = await chatLines(a);
      assert.equal(before.length, 3);

      assert.equal(await stopProcess(server), 0);
      await Promise.all([waitStatus(a, 'reconnecting'), waitStatus(b, 'reconnecting')]);
      // A stays away while the server comes back and B talks.
      await a.getByRole('button', { name: 'Stop' }).click();
      await waitStatus(a, 'closed');
      server = await startWshub(server.port, args);
      await waitStatus(b, 'open', 30_000);
      await waitMembers(b, ['Ben']);
      await send(b, 'while Ada was away');
      await waitMessage(b, OWN, 'while Ada was away');

      await a.getByRole('button', { name: 'Connect' }).click();
      await waitStatus(a, 'open', 15_000);
      await waitMessage(a, `${OTHER}[data-nick="Ben"]`, 'while Ada was away');
      await waitMembers(a, ['Ada', 'Ben']);
      await send(a, 'back again');
      await waitMessage(a, OWN, 'back again');
      await waitMessage(b, OTHER, 'back again');

      const lines = await chatLines(a);
      const texts = lines.map((l) => l.split('|')[3]);
      assert.deepEqual(texts, ['before 1', 'before 2', 'before 3', 'while Ada was away', 'back again']);
      assert.deepEqual(lines.slice(0, 3), before, 'earlier lines unchanged');
      const ids = lines.map((l) => Number(l.split('|')[0]));
      assert.deepEqual(ids, [...new Set(ids)].sort((x, y) => x - y), 'ids unique and increasing across the restart');
      assert.deepEqual((await chatLines(b)).map((l) => l.split('|')[0]), ids.map(String));
      await a.screenshot({ path: path.join(SHOTS_DIR, 'catch-up.png') });
      await Promise.all([a.close(), b.close()]);
    } finally {
      await stopProcess(server);
      await rm(dir, { recursive: true, force: true });
    }
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
            'Sec-WebSocket-Protocol': 'wshub.v1',
          },
        });
        req.on('response', (res) => resolve(res.statusCode));
        req.on('upgrade', (res, socket) => (socket.destroy(), resolve(res.statusCode)));
        req.on('error', reject);
      });
      assert.equal(status, 403);

      const page = await openPage(`${staticSite.url}/?mode=chat&server=ws://127.0.0.1:${strict.port}`);
      // The page asked the server why, was told the origin, and stopped.
      const alert = page.locator('[role="alert"][data-refusal="origin"]');
      await alert.waitFor();
      assert.match(await alert.innerText(), /does not allow this page's origin/);
      assert.match(await alert.innerText(), /--allowed-origin/);
      await waitStatus(page, 'closed');
      assert.ok(await page.locator('h1').isVisible(), 'page should still render');
      await page.screenshot({ path: path.join(SHOTS_DIR, 'refused.png') });
      await page.close();
    } finally {
      await stopProcess(strict);
    }
  });

  test('with tokens required, the page names the token problem and stops retrying', { timeout: 60_000 }, async () => {
    const secret = 'an e2e secret of at least thirty-two bytes';
    const guarded = await startWshub(await freePort(), ['--jwt-secret', secret]);
    const refusedCount = async () => {
      const text = await (await fetch(`http://127.0.0.1:${guarded.port}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('wshub_upgrades_refused_total{reason="unauthorized"}'));
      return Number(line?.split(' ').pop());
    };
    try {
      // No token: the headline says a token is required, not that the origin is refused.
      const page = await openPage(pageUrl('chat', { server: guarded }));
      const alert = page.locator('[role="alert"][data-refusal="unauthorized"]');
      await alert.waitFor();
      const text = await alert.innerText();
      assert.match(text, /requires an access token/);
      assert.match(text, /missing token/);
      assert.doesNotMatch(text, /origin/);
      await waitStatus(page, 'closed');
      assert.equal(await alert.getAttribute('data-retry'), 'false');
      const refused = await refusedCount();
      assert.ok(refused >= 1, `refusals counted: ${refused}`);
      // It stays stopped: an unstopped page would retry after 0.5 s, 1 s, 2 s, ...
      await sleep(3_500);
      assert.equal(await refusedCount(), refused, 'the page retried a refused token');
      assert.equal(await page.locator('[role="status"][data-status="closed"]').count(), 1);
      await page.screenshot({ path: path.join(SHOTS_DIR, 'token-required.png') });
      await page.close();

      // A token the server refuses: named as such, with the server's reason.
      const forged = jwt({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 3600 }, 'not the server secret, also thirty-two bytes');
      const bad = await openPage(`${pageUrl('chat', { server: guarded })}&token=${forged}`);
      const badAlert = bad.locator('[role="alert"][data-refusal="unauthorized"]');
      await badAlert.waitFor();
      assert.match(await badAlert.innerText(), /refused the access token/);
      assert.match(await badAlert.innerText(), /bad signature/);
      await waitStatus(bad, 'closed');
      await bad.close();

      // The server warned once, not once per attempt.
      const warnings = guarded.output.split('\n').filter((l) => l.includes('refused upgrade: unauthorized'));
      assert.equal(warnings.length, 1, `one warning per reason and address:\n${warnings.join('\n')}`);

      // A valid token connects.
      const good = jwt({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 3600 }, secret);
      const ok = await openPage(`${pageUrl('chat', { server: guarded })}&token=${good}`);
      await waitStatus(ok, 'open');
      await ok.close();
    } finally {
      await stopProcess(guarded);
    }
  });

  test('with tokens: the nickname is the token’s, and a reload shows our earlier messages as ours', { timeout: 60_000 }, async () => {
    const secret = 'an e2e secret of at least thirty-two bytes';
    const server = await startWshub(await freePort(), ['--jwt-secret', secret]);
    try {
      const url = (sub) => `${pageUrl('chat', { room: 'who', server })}&token=${hourToken(secret, { sub, name: 'Dana' })}`;
      // A nickname saved in this browser must not override the token's.
      const a = await openPage(url('u-dana'), { nick: 'admin' });
      const b = await openPage(url('u-other'));
      await Promise.all([waitStatus(a, 'open'), waitStatus(b, 'open')]);
      await waitMembers(a, ['Dana', 'Dana']);
      assert.equal(await a.getByLabel('Nickname').inputValue(), 'Dana');
      assert.equal(await a.getByLabel('Nickname').getAttribute('readonly'), '');
      await a.locator('.member.is-me[data-user="u-dana"]').waitFor();
      assert.equal(await a.locator('.member.is-me').count(), 1, 'the other Dana is not us');

      await send(a, 'mine, before the reload');
      await waitMessage(a, `${OWN}[data-user="u-dana"]`, 'mine, before the reload');
      await send(b, 'the other Dana');
      await waitMessage(a, `${OTHER}[data-user="u-other"]`, 'the other Dana');
      await waitMessage(b, `${OTHER}[data-user="u-dana"]`, 'mine, before the reload');

      await a.reload();
      await waitStatus(a, 'open');
      await waitMessage(a, `${OWN}[data-user="u-dana"]`, 'mine, before the reload');
      await waitMessage(a, `${OTHER}[data-user="u-other"]`, 'the other Dana');
      assert.deepEqual(
        (await chatLines(a)).map((l) => l.split('|').slice(1).join('|')),
        ['Dana|own|mine, before the reload', 'Dana|other|the other Dana'],
      );
      await waitMembers(b, ['Dana', 'Dana']);
      const refused = await a.evaluate(() => document.body.textContent?.includes('Nickname not changed') ?? false);
      assert.equal(refused, false, 'the page never asked for another nickname');
      await a.screenshot({ path: path.join(SHOTS_DIR, 'tokens.png') });
      await Promise.all([a.close(), b.close()]);
    } finally {
      await stopProcess(server);
    }
  });

  test('no uncaught errors in any page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
