// Helpers for the end-to-end test: the wshub process, a static file server, the browser.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST_DIR = path.join(WEB_DIR, 'dist');
export const WSHUB_BIN = path.resolve(WEB_DIR, process.env.WSHUB_BIN ?? '../target/debug/wshub');
export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Poll `url` until it answers 200, the process dies, or `timeoutMs` passes. */
async function waitHealthy(url, proc, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`wshub exited early (${proc.exitCode ?? proc.signalCode})`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} not healthy after ${timeoutMs} ms`);
}

/** Every child process started here, so that `killAll` can end them. */
const children = new Set();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/**
 * Start `wshub --bind 127.0.0.1 --port PORT [extra]` and wait for /healthz. History is kept in
 * memory unless `extra` says otherwise (the server's default is an SQLite file in the working
 * directory, which would leak between runs).
 */
export async function startWshub(port, extra = []) {
  if (!existsSync(WSHUB_BIN)) throw new Error(`wshub binary not found at ${WSHUB_BIN} (set WSHUB_BIN)`);
  const history = extra.includes('--history') ? [] : ['--history', 'memory'];
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...history, ...extra];
  let lastError;
  // Retry only when the process exits at once (the port may still be held by a previous run).
  for (let attempt = 0; attempt < 10; attempt++) {
    const proc = spawn(WSHUB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    proc.output = '';
    proc.stdout.on('data', (d) => (proc.output += d));
    proc.stderr.on('data', (d) => (proc.output += d));
    proc.on('exit', () => children.delete(proc));
    try {
      await waitHealthy(`http://127.0.0.1:${port}/healthz`, proc, 15_000);
      proc.port = port;
      return proc;
    } catch (e) {
      lastError = new Error(`${e.message}\n--- wshub output ---\n${proc.output}`);
      const exitedEarly = proc.exitCode !== null || proc.signalCode !== null;
      await stopProcess(proc);
      if (!exitedEarly) break;
      await sleep(300);
    }
  }
  throw lastError;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code or signal. */
export async function stopProcess(proc, graceMs = 5_000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc?.exitCode ?? proc?.signalCode;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  const [code, signal] = await exited;
  clearTimeout(timer);
  return code ?? signal;
}

export async function killAll() {
  await Promise.all([...children].map((c) => stopProcess(c, 2_000)));
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** Serve web/dist on 127.0.0.1 at a free port (a foreign origin for wshub). */
export async function startStaticServer(dir = DIST_DIR) {
  const server = http.createServer(async (req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(dir, urlPath === '/' ? 'index.html' : urlPath);
    if (!file.startsWith(dir)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium via playwright-core, with a fresh profile; `close()` removes it. */
export async function launchBrowser() {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'wshub-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 800, height: 820 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Put PNG screenshots side by side on a canvas (in the browser) and return one PNG. */
export async function stitchSideBySide(context, pngs, { gap = 24, background = '#dfe3ec' } = {}) {
  const page = await context.newPage();
  try {
    const dataUrl = await page.evaluate(
      async ({ images, gap, background }) => {
        const loaded = await Promise.all(
          images.map(
            (src) =>
              new Promise((resolve, reject) => {
                const img = new Image();
                img.onload = () => resolve(img);
                img.onerror = reject;
                img.src = src;
              }),
          ),
        );
        const width = loaded.reduce((w, img) => w + img.width, 0) + gap * (loaded.length + 1);
        const height = Math.max(...loaded.map((img) => img.height)) + gap * 2;
        const canvas = document.createElement('canvas');
        canvas.width = width;
        canvas.height = height;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = background;
        ctx.fillRect(0, 0, width, height);
        let x = gap;
        for (const img of loaded) {
          ctx.drawImage(img, x, gap);
          x += img.width + gap;
        }
        return canvas.toDataURL('image/png');
      },
      { images: pngs.map((b) => `data:image/png;base64,${b.toString('base64')}`), gap, background },
    );
    return Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
  } finally {
    await page.close();
  }
}
