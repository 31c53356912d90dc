// Shared by every *.test.mjs: where the server under test is, the real clients pointed at it,
// and the waits the tests use. Everything comes from the environment that scripts/test-pusher
// sets, so the same files judge wshub and the reference servers:
//   PUSHER_HOST (127.0.0.1), PUSHER_PORT (required), PUSHER_APP_ID / PUSHER_APP_KEY /
//   PUSHER_APP_SECRET (app-id / app-key / app-secret), PUSHER_SERVER (wshub | soketi | sockudo:
//   which server this is, for the known differences below), PUSHER_WEBHOOK_PORT (set only when
//   the server was started with a webhook URL on that port), PUSHER_TIMEOUT_MS (5000).
import { createHash, createHmac } from 'node:crypto';
import { Agent } from 'node:http';
import { after } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import PusherClient from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import WebSocket from 'ws';

export const HOST = process.env.PUSHER_HOST || '127.0.0.1';
export const PORT = Number(process.env.PUSHER_PORT);
if (!Number.isInteger(PORT) || PORT <= 0) {
  throw new Error('PUSHER_PORT is not set: run these tests through scripts/test-pusher, or set PUSHER_PORT to a running server');
}
export const APP = {
  appId: process.env.PUSHER_APP_ID || 'app-id',
  key: process.env.PUSHER_APP_KEY || 'app-key',
  secret: process.env.PUSHER_APP_SECRET || 'app-secret',
};
export const SERVER = process.env.PUSHER_SERVER || 'wshub';
export const WEBHOOK_PORT = process.env.PUSHER_WEBHOOK_PORT ? Number(process.env.PUSHER_WEBHOOK_PORT) : null;
/** How long to wait for something that must happen; a loaded 2-core machine needs seconds. */
export const T = Number(process.env.PUSHER_TIMEOUT_MS || 5000);

/**
 * The `pusher` server SDK, as an app's backend would configure it for a self-hosted server, over
 * keep-alive connections (as a busy backend's are); closed when the file's tests are done, or
 * the idle sockets would hold the process for their 5 s timeout.
 */
const agent = new Agent({ keepAlive: true });
after(() => agent.destroy());
export const api = new PusherServer({ ...APP, host: HOST, port: PORT, useTLS: false, timeout: T, agent });

// Known differences between a server and the spec, each written up in README.md. A test names
// the difference it runs into; on that server it is reported as TODO (it runs, and its failure
// is shown, but does not fail the run) or SKIP (a feature the server lacks), never as a pass.
const KNOWN = {
  soketi: {
    'http-error-status': 'soketi answers HTTP API errors with 200 OK (the code is only in the JSON body), README.md#soketi',
    'auth-timestamp': 'soketi does not check auth_timestamp, so an expired request is accepted, README.md#soketi',
    'malformed-frame-error': 'soketi ignores a frame that is not JSON without a pusher:error, README.md#soketi',
    'client-event-public': 'soketi relays client events on public channels, README.md#soketi',
    'trigger-info': 'soketi ignores the `info` parameter of POST /events and answers {"ok":true}, README.md#soketi',
    'channels-info': 'soketi ignores `info` on GET /channels (always subscription_count, never user_count), README.md#soketi',
    'server-to-user-guard': 'soketi lets any connection subscribe to #server-to-user-<id>, README.md#soketi',
    'auth-key-unchecked': 'soketi does not check that auth_key is the app key (only the signature), README.md#soketi',
    'encrypted-client-events': 'soketi relays client events on private-encrypted- channels, README.md#soketi',
    'unanchored-prefix': 'soketi matches private-/presence-/client- anywhere in a name, not only as a prefix, README.md#soketi',
  },
  sockudo: {
    'encrypted-client-events': 'sockudo relays client events on private-encrypted- channels, README.md#sockudo',
    'presence-client-event-user': 'sockudo relays a client event on a presence channel without the sender\'s user_id, README.md#sockudo',
    'unknown-key-close': 'sockudo drops a connection with an unknown app key without close code 4001 (pusher-js sees 1006), README.md#sockudo',
    'auth-key-status': 'sockudo answers an HTTP API request with an unknown auth_key 404 app_not_found, not 401, README.md#sockudo',
    'event-size': 'sockudo accepts and delivers an HTTP API event over its own 100 KiB limit, README.md#sockudo',
    'client-event-size': 'sockudo answers an oversized client event with no pusher:error, README.md#sockudo',
    'subscription-error': 'sockudo answers a subscription with a bad signature with no pusher:subscription_error, README.md#sockudo',
    'signin': 'sockudo, as the peer is configured, answers pusher:signin with no pusher:signin_success, README.md#sockudo',
    'server-to-user-guard': 'sockudo lets any connection subscribe to #server-to-user-<id>, README.md#sockudo',
    'member-webhook-per-user': 'sockudo sends member_removed for each connection of a user that leaves a presence channel, not once for the user, README.md#sockudo',
    'client-event-webhook-user': 'sockudo\'s client_event webhook on a presence channel has no user_id, README.md#sockudo',
  },
  wshub: {},
};
function known(name) {
  const why = (KNOWN[SERVER] || {})[name];
  return why ? `${SERVER}: ${why}` : false;
}
/**
 * Test options for a check that one of `names` is known to fail on this server: TODO there, else
 * a normal test.
 */
export const todoOn = (...names) => ({ todo: names.map(known).find(Boolean) || false });
/** Test options for a feature `name` that this server lacks: SKIP there, else a normal test. */
export const skipOn = (name) => ({ skip: known(name) });

// Channel and user names unique to this process and call, so that test files can share a server
// (and run again against one that is still up) without seeing each other's channels.
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
let seq = 0;
export const uniq = (prefix = '') => `${prefix}t${tag}-${++seq}`;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export function check(cond, why) {
  if (!cond) throw new Error(why);
}
export function same(got, want, what) {
  check(isDeepStrictEqual(got, want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

/**
 * Resolves with the first `event` on `target` (channel, client, connection, user) that `pred`
 * accepts; with `meta`, as { data, meta } (pusher-js's second argument: the user_id of a client event).
 */
export function once(target, event, { ms = T, pred = () => true, what = event, meta = false } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.unbind(event, on);
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    const on = (data, metadata) => {
      if (!pred(data)) return;
      clearTimeout(timer);
      target.unbind(event, on);
      resolve(meta ? { data, meta: metadata } : data);
    };
    target.bind(event, on);
  });
}
/** Every `event` on `target` from now on, in arrival order. */
export function record(target, event) {
  const got = [];
  target.bind(event, (data) => got.push(data));
  return got;
}
/** `promise`, or a rejection naming `what` if it takes longer than `ms`. */
export function within(promise, what, ms = T) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
/** Polls `cond` (sync or async) until it holds; for state the server exposes only on request. */
export async function eventually(cond, what, ms = T) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`${what} did not hold within ${ms} ms (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
    await sleep(50);
  }
}

/**
 * A pusher-js client of the real package, connected, with its channel authorizer and user
 * authenticator signing in-process with the server SDK (what an app's auth endpoint does), and
 * disconnected when the test ends. `secret` signs with another secret (a forged signature).
 */
export async function connect(t, { userId = uniq('u'), userInfo, secret = APP.secret, key = APP.key, wait = true } = {}) {
  const client = new PusherClient(key, clientOptions({ userId, userInfo, secret }));
  t.after(() => client.disconnect());
  if (wait) await connected(client);
  return client;
}
export function clientOptions({ userId = uniq('u'), userInfo, secret = APP.secret } = {}) {
  const signer = secret === APP.secret ? api : new PusherServer({ ...APP, secret, host: HOST, port: PORT, useTLS: false });
  const info = userInfo || { id: userId, name: `User ${userId}` };
  return {
    wsHost: HOST,
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const presence = channelName.startsWith('presence-') ? { user_id: userId, user_info: info } : undefined;
          callback(null, signer.authorizeChannel(socketId, channelName, presence));
        } catch (e) {
          callback(e, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          callback(null, signer.authenticateUser(socketId, { id: userId, user_info: info }));
        } catch (e) {
          callback(e, null);
        }
      },
    },
  };
}
export async function connected(client) {
  if (client.connection.state !== 'connected') {
    await once(client.connection, 'connected', { what: `pusher-js "connected" (state ${client.connection.state})` });
  }
  return client;
}

/**
 * A laravel-echo instance over pusher-js (Echo builds the pusher-js client itself from these
 * options, as an app does), connected, disconnected when the test ends.
 */
export async function echo(t, opts = {}) {
  const e = new Echo({ broadcaster: 'pusher', key: APP.key, Pusher: PusherClient, ...clientOptions(opts) });
  t.after(() => e.disconnect());
  await connected(e.connector.pusher);
  return e;
}

/** Subscribes and resolves with the channel once the server confirms; rejects on subscription_error. */
export async function subscribe(client, name) {
  const ch = client.subscribe(name);
  await subscribed(ch);
  return ch;
}
export function subscribed(ch) {
  if (ch.subscribed) return Promise.resolve(ch);
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      ch.unbind('pusher:subscription_succeeded', ok);
      ch.unbind('pusher:subscription_error', failed);
    };
    const ok = () => { done(); resolve(ch); };
    const failed = (e) => { done(); reject(new Error(`subscription_error on ${ch.name}: ${JSON.stringify(e)}`)); };
    const timer = setTimeout(() => { done(); reject(new Error(`no subscription_succeeded on ${ch.name} within ${T} ms`)); }, T);
    ch.bind('pusher:subscription_succeeded', ok);
    ch.bind('pusher:subscription_error', failed);
  });
}

/**
 * Publishes a marker on `ch` through the HTTP API and waits until `ch` gets it. Events of one
 * channel reach a subscriber in the order the server took them, so once the marker is in,
 * anything published (or wrongly relayed) to this subscriber before it is in too: this is how the
 * tests show that something did NOT arrive, without guessing at a sleep.
 */
export async function flush(ch, { server = api, what = `marker on ${ch.name}` } = {}) {
  const id = uniq('mark');
  const got = once(ch, 'test-marker', { pred: (d) => d && d.id === id, what });
  await server.trigger(ch.name, 'test-marker', { id });
  await got;
}

/** Runs `fn`; resolves with the RequestError it throws, or with the response when it does not. */
export async function outcome(promise) {
  try {
    const res = await promise;
    let body = '';
    try { body = await res.text(); } catch { /* no body */ }
    return { status: res.status, body, threw: false };
  } catch (e) {
    if (e && e.status !== undefined) return { status: e.status, body: e.body, threw: true };
    throw e;
  }
}

/**
 * An HTTP API request signed by hand as the spec describes (so a test can choose the timestamp,
 * the secret, or sign another method, path or body than it sends); the SDK's own signing is used
 * everywhere else. `path` is under /apps/{id}.
 */
export async function signedRequest({
  method = 'POST', path, params = {}, body, timestamp = Math.floor(Date.now() / 1000), secret = APP.secret, key = APP.key,
  signedMethod = method, signedPath = path, signedBody = body,
}) {
  const fullPath = `/apps/${APP.appId}${path}`;
  const raw = body === undefined ? undefined : JSON.stringify(body);
  const signedRaw = signedBody === undefined ? undefined : JSON.stringify(signedBody);
  const q = { ...params, auth_key: key, auth_timestamp: String(timestamp), auth_version: '1.0' };
  if (signedRaw !== undefined) q.body_md5 = createHash('md5').update(signedRaw).digest('hex');
  const query = Object.keys(q).sort().map((k) => `${k.toLowerCase()}=${q[k]}`).join('&');
  const signature = createHmac('sha256', secret)
    .update(`${signedMethod}\n/apps/${APP.appId}${signedPath}\n${query}`).digest('hex');
  const res = await fetch(`http://${HOST}:${PORT}${fullPath}?${query}&auth_signature=${signature}`, {
    method,
    headers: raw === undefined ? {} : { 'content-type': 'application/json' },
    body: raw,
    signal: AbortSignal.timeout(T),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

/**
 * A raw WebSocket (the `ws` package) on /app/{key}, for frames pusher-js would never send and
 * close codes it hides. `messages` holds every decoded frame; `next(pred)` waits for one.
 */
export async function rawSocket(t, { key = APP.key, query = 'protocol=7&client=js&version=8.6.0&flash=false', open = true } = {}) {
  const ws = new WebSocket(`ws://${HOST}:${PORT}/app/${key}?${query}`);
  const messages = [];
  const waiters = [];
  ws.on('message', (data) => {
    let msg;
    try { msg = JSON.parse(data.toString()); } catch { msg = { unparsed: data.toString() }; }
    if (typeof msg.data === 'string') {
      try { msg.data = JSON.parse(msg.data); } catch { /* data stays a string */ }
    }
    messages.push(msg);
    for (const w of [...waiters]) w(msg);
  });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => { /* surfaces as a close */ });
  t.after(() => ws.terminate());
  const sock = {
    ws,
    messages,
    closed,
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next(pred, { ms = T, what = 'a frame' } = {}) {
      const seen = messages.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.splice(waiters.indexOf(on), 1); reject(new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(messages).slice(0, 400)}`)); }, ms);
        const on = (m) => {
          if (!pred(m)) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(on), 1);
          resolve(m);
        };
        waiters.push(on);
      });
    },
  };
  if (open) {
    await sock.next((m) => m.event === 'pusher:connection_established', { what: 'pusher:connection_established' });
  }
  return sock;
}
