/**
 * Asking the server why a handshake failed. A browser hides a refused handshake's HTTP status (a
 * bad token, a refused origin and a full server all look like close 1006 before open), so after a
 * refusal the page asks `GET <socket path>?check`, which runs the upgrade's own checks and answers
 * JSON (docs/protocol.md, "Why a connection is refused").
 */
import { checkUrl, healthUrl } from './url';

/** The server's answer: what the upgrade would get now. */
export interface CheckAnswer {
  /** The HTTP status the handshake would get: 101 when it would be accepted. */
  status: number;
  /** `ok`, or the refusal's reason (`unauthorized`, `origin`, `full`, ...). */
  reason: string;
  /** The server's sentence for it (never the token). */
  message: string;
  /** Whether trying again later can succeed (limits, shutdown) or not (token, origin). */
  retry: boolean;
}

/**
 * - `answered`: the server said why.
 * - `unreadable`: something answers HTTP but gave no readable check (an older wshub, a proxy).
 * - `unreachable`: nothing answers.
 */
export type CheckOutcome = { kind: 'answered'; answer: CheckAnswer } | { kind: 'unreadable' } | { kind: 'unreachable' };

/** Validate a check's JSON body; null unless every field has its type. */
export function parseCheckAnswer(body: unknown): CheckAnswer | null {
  if (typeof body !== 'object' || body === null) return null;
  const { status, reason, message, retry } = body as Record<string, unknown>;
  if (typeof status !== 'number' || typeof reason !== 'string' || typeof message !== 'string' || typeof retry !== 'boolean') {
    return null;
  }
  return { status, reason, message, retry };
}

/** The `fetch` this module uses (tests pass a fake). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Pick<Response, 'ok' | 'json'>>;

export interface CheckOptions {
  /** The subprotocol the socket offers (`wshub.v1` for chat), if any. */
  protocol?: string;
  /** The access token the socket offers; sent as `Authorization: Bearer`, never in the URL. */
  token?: string | null;
  /** The page's origin, which the socket's handshake carries (default: this page's). */
  origin?: string;
  fetch?: FetchLike;
  timeoutMs?: number;
}

/** Ask the server about a handshake on `socketUrl`; never throws. */
export async function checkHandshake(socketUrl: string, options: CheckOptions = {}): Promise<CheckOutcome> {
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const origin = options.origin ?? globalThis.location?.origin;
  const timeoutMs = options.timeoutMs ?? 3_000;
  const url = checkUrl(socketUrl, { protocol: options.protocol, origin });
  const headers: Record<string, string> = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  try {
    const response = await doFetch(url, { headers, cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) });
    const answer = response.ok ? parseCheckAnswer(await response.json()) : null;
    return answer ? { kind: 'answered', answer } : { kind: 'unreadable' };
  } catch {
    // Not readable (CORS, network): does anything answer at all? An opaque response says yes.
    const base = socketUrl.replace(/\/(echo|ws)(\/.*)?$/, '');
    try {
      await doFetch(healthUrl(base), { mode: 'no-cors', cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) });
      return { kind: 'unreadable' };
    } catch {
      return { kind: 'unreachable' };
    }
  }
}
