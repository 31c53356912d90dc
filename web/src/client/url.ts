/**
 * Where the socket goes: the page's own origin (ws:// or wss:// to match http:// or https://),
 * or the base URL given by `?server=ws://host:port`.
 */
import { isUsableToken, isValidRoom } from './v1';

/** The two endpoints: chat (`/ws`, spoken in wshub.v1) and echo (`/echo`, raw). */
export type Endpoint = 'echo' | 'chat';

/** Path of each endpoint on the server. */
export const ENDPOINT_PATHS: Readonly<Record<Endpoint, string>> = { echo: '/echo', chat: '/ws' };

/** The parts of `window.location` this module reads. */
export interface PageLocation {
  protocol: string;
  host: string;
  search: string;
}

/** The base socket URL and how it was chosen. */
export interface SocketBase {
  /** `ws://host:port` or `wss://host:port`, plus an optional path prefix, no trailing slash. */
  base: string;
  /** True when `?server=` chose it. */
  overridden: boolean;
  /** Set when `?server=` was present but unusable (the page then uses its own origin). */
  warning?: string;
}

const FALLBACK_BASE = 'ws://localhost:8080';

function fromPageOrigin(loc: PageLocation): string {
  if (loc.protocol === 'https:') return `wss://${loc.host}`;
  if (loc.protocol === 'http:') return `ws://${loc.host}`;
  return FALLBACK_BASE; // file:// and friends have no server of their own
}

/** Parse `?server=`; accepts ws:, wss:, and http:/https: (mapped to ws:/wss:). */
export function parseServerParam(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[url.protocol];
  if (!scheme || !url.host) return null;
  const prefix = url.pathname.replace(/\/+$/, '');
  return `${scheme}//${url.host}${prefix}`;
}

/** Decide the base socket URL for this page. */
export function resolveSocketBase(loc: PageLocation): SocketBase {
  const param = new URLSearchParams(loc.search).get('server');
  if (param !== null && param.trim() !== '') {
    const base = parseServerParam(param.trim());
    if (base) return { base, overridden: true };
    return {
      base: fromPageOrigin(loc),
      overridden: false,
      warning: `Ignored ?server=${param}: expected ws://host:port or wss://host:port.`,
    };
  }
  return { base: fromPageOrigin(loc), overridden: false };
}

/** Read `?mode=echo|chat`; anything else gives `fallback`. */
export function parseEndpoint(search: string, fallback: Endpoint = 'chat'): Endpoint {
  const mode = new URLSearchParams(search).get('mode');
  return mode === 'echo' || mode === 'chat' ? mode : fallback;
}

/** Full socket URL of an endpoint. */
export function socketUrl(base: string, endpoint: Endpoint): string {
  return `${base}${ENDPOINT_PATHS[endpoint]}`;
}

/** The server's health URL over HTTP(S), used to tell "refused" from "unreachable". */
export function healthUrl(base: string): string {
  return `${base.replace(/^ws(s?):/, 'http$1:')}/healthz`;
}

/**
 * The URL that asks the server why a handshake on `socketUrl` would be refused (`GET <path>?check`,
 * docs/protocol.md): what `fetch` cannot send is passed as parameters, the subprotocol (`protocol`)
 * and the page's origin (`origin`, which a same-origin `fetch` leaves out).
 */
export function checkUrl(socketUrl: string, { protocol, origin }: { protocol?: string; origin?: string } = {}): string {
  const url = new URL(socketUrl.replace(/^ws(s?):/, 'http$1:'));
  const params = new URLSearchParams(url.search);
  params.set('check', '');
  if (protocol) params.set('protocol', protocol);
  if (origin) params.set('origin', origin);
  // `check=` and `check` mean the same to the server; the bare form reads better in logs.
  url.search = params.toString().replace(/(^|&)check=(&|$)/, '$1check$2');
  return url.toString();
}

/** Room joined when `?room=` is absent or invalid. */
export const DEFAULT_ROOM = 'lobby';

/** Read `?room=NAME` (1–64 of `A-Za-z0-9-_.`); anything else gives `fallback`. */
export function parseRoom(search: string, fallback: string = DEFAULT_ROOM): string {
  const room = new URLSearchParams(search).get('room');
  return room !== null && isValidRoom(room) ? room : fallback;
}

/** An access token from `?token=`, or why it was ignored (never quoting the token). */
export interface PageToken {
  token: string | null;
  warning?: string;
}

/**
 * Read `?token=TOKEN` (for a server started with `--jwt-secret` / `--jwt-public-key`). The chat
 * offers it as the subprotocol `bearer.TOKEN`, so it must be made of HTTP token characters (a JWT
 * is); anything else is ignored with a warning. Empty or absent: no token.
 */
export function parseToken(search: string): PageToken {
  const token = new URLSearchParams(search).get('token')?.trim() ?? '';
  if (token === '') return { token: null };
  if (!isUsableToken(token)) {
    return {
      token: null,
      warning: 'Ignored ?token=: it holds characters a WebSocket subprotocol cannot carry (such as spaces or commas); a JWT never does.',
    };
  }
  return { token };
}
