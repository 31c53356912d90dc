/**
 * What a WebSocket close means to the person looking at the page.
 *
 * Browsers hide why a handshake failed: an HTTP 403 (origin not allowed), a refused TCP connection
 * and a TLS error all surface as close code 1006 without a prior `open` event. So the classification
 * uses whether this socket ever opened, and the page may refine a refusal with an HTTP probe.
 */

/** Names of the registered close codes (RFC 6455 §7.4.1 and the IANA registry). */
export const CLOSE_CODE_NAMES: Readonly<Record<number, string>> = {
  1000: 'Normal closure',
  1001: 'Going away',
  1002: 'Protocol error',
  1003: 'Unsupported data',
  1005: 'No status received',
  1006: 'Abnormal closure',
  1007: 'Invalid payload data',
  1008: 'Policy violation',
  1009: 'Message too big',
  1010: 'Mandatory extension',
  1011: 'Internal server error',
  1012: 'Service restart',
  1013: 'Try again later',
  1014: 'Bad gateway',
  1015: 'TLS handshake failure',
};

/** The facts of one close event. */
export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  /** Whether this socket reached `open` before it closed. */
  opened: boolean;
}

/**
 * - `refused`: failed before it ever opened (handshake rejected, or server unreachable).
 * - `lost`: was open, then dropped without a close frame.
 * - `server`: the server closed it with a code other than 1000.
 * - `normal`: closed with 1000.
 */
export type CloseKind = 'refused' | 'lost' | 'server' | 'normal';

/** A close, explained. */
export interface CloseVerdict extends CloseInfo {
  kind: CloseKind;
  /** One sentence for the status line or the error banner. */
  title: string;
  /** What may have caused it, or the server's reason. */
  detail: string;
  /** Whether the client should try again on its own. */
  retry: boolean;
}

/** "1008 Policy violation", or just "4001" for codes without a registered name. */
export function closeCodeLabel(code: number): string {
  const name = CLOSE_CODE_NAMES[code];
  if (name) return `${code} ${name}`;
  if (code >= 4000 && code <= 4999) return `${code} (application)`;
  return String(code);
}

/**
 * Codes 4000–4999 are application-defined; wshub.v1 reserves them for verdicts that retrying
 * cannot fix (for example a rejected login), so the client stops there. Everything else retries.
 */
export function shouldRetry(code: number): boolean {
  return !(code >= 4000 && code <= 4999);
}

/** What the page offered in the handshake that may explain a refusal. */
export interface HandshakeContext {
  /** An access token was offered (`?token=`): a refusal may be HTTP 401 (bad token) or 403 (room). */
  withToken?: boolean;
}

/** Classify one close event. */
export function classifyClose(info: CloseInfo, context: HandshakeContext = {}): CloseVerdict {
  const label = closeCodeLabel(info.code);
  const reason = info.reason.trim();
  const retry = shouldRetry(info.code);
  if (!info.opened) {
    return {
      ...info,
      kind: 'refused',
      retry,
      title: 'The server refused the connection, or could not be reached.',
      detail: context.withToken
        ? `Closed before it opened (${label}). Is the access token from ?token= valid and not expired, ` +
          "and is this page's origin allowed by the server? " +
          'Browsers do not tell a page the HTTP status of a rejected handshake (401 for a bad token, 403 for a refused origin).'
        : `Closed before it opened (${label}). Is this page's origin allowed by the server? ` +
          'Browsers do not tell a page the HTTP status of a rejected handshake.',
    };
  }
  if (info.code === 1006) {
    return {
      ...info,
      kind: 'lost',
      retry,
      title: 'Connection lost.',
      detail: `${label}: the connection dropped without a close frame.`,
    };
  }
  if (info.code === 1000) {
    return {
      ...info,
      kind: 'normal',
      retry,
      title: 'The server closed the connection.',
      detail: reason ? `${label}: ${reason}` : label,
    };
  }
  return {
    ...info,
    kind: 'server',
    retry,
    title: `The server closed the connection (${label}).`,
    detail: reason ? `${label}: ${reason}` : `${label}, no reason given.`,
  };
}

/**
 * Sharpen a `refused` verdict with the result of an HTTP probe of the same server: reachable
 * means the handshake itself was rejected (origin, path, limits); unreachable means nobody answered.
 */
export function refineRefusal(verdict: CloseVerdict, reachable: boolean, context: HandshakeContext = {}): CloseVerdict {
  if (verdict.kind !== 'refused') return verdict;
  if (reachable && context.withToken) {
    return {
      ...verdict,
      title: 'The server refused the connection — is the access token valid?',
      detail:
        `The server answers HTTP but rejected the WebSocket handshake (${closeCodeLabel(verdict.code)} ` +
        'in the browser). Usual causes: the token given with ?token= is invalid, expired or not yet valid ' +
        "(HTTP 401), this page's origin is not allowed (403), or a connection limit (429).",
    };
  }
  if (reachable) {
    return {
      ...verdict,
      title: "The server refused the connection — is this page's origin allowed?",
      detail:
        `The server answers HTTP but rejected the WebSocket handshake (${closeCodeLabel(verdict.code)} ` +
        'in the browser). Usual causes: this origin is not in the allowed list, the server requires an access ' +
        'token (add ?token=… to the page address), a wrong path, or a connection limit.',
    };
  }
  return {
    ...verdict,
    title: 'Cannot reach the server.',
    detail: `Nothing answered (${closeCodeLabel(verdict.code)}). Is the server running, and is the address right?`,
  };
}
