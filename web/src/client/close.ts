/**
 * What a WebSocket close means to the person looking at the page.
 *
 * Browsers hide why a handshake failed: an HTTP 401 (bad token), a 403 (origin not allowed), a 503
 * (server full), a refused TCP connection and a TLS error all surface as close code 1006 without a
 * prior `open` event. So the classification uses whether this socket ever opened, and the page then
 * asks the server why (`explainRefusal` with the answer of `GET <path>?check`, see check.ts).
 */
import type { CheckAnswer, CheckOutcome } from './check';

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
  /** The server's reason for refusing the handshake (`unauthorized`, `origin`, `full`, ...), once it said. */
  refusal?: string;
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
      detail:
        `Closed before it opened (${label}). ` +
        (context.withToken
          ? 'Usual causes: the access token from ?token= is invalid or expired, this page\'s origin is not allowed, the server is full, or nothing answers.'
          : "Usual causes: this page's origin is not allowed, the server is full, or nothing answers.") +
        ' Browsers do not tell a page the HTTP status of a rejected handshake.',
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

/** Why stopping: said after every refusal that retrying cannot fix. */
const NOT_RETRYING = 'Not retrying: the same handshake would be refused again.';

/** Title and detail for a refusal the server explained. */
function explainAnswer(answer: CheckAnswer, context: HandshakeContext): { title: string; detail: string } {
  const says = `The server says: ${answer.message}.`;
  switch (answer.reason) {
    case 'unauthorized':
      return context.withToken
        ? {
            title: 'The server refused the access token.',
            detail: `${says} Get a new token and open the page with ?token=… again. ${NOT_RETRYING}`,
          }
        : {
            title: 'The server requires an access token.',
            detail: `${says} Open the page with ?token=… (a JWT this server accepts). ${NOT_RETRYING}`,
          };
    case 'forbidden_room':
      return { title: 'The access token does not allow this room.', detail: `${says} ${NOT_RETRYING}` };
    case 'origin':
      return {
        title: "The server does not allow this page's origin.",
        detail: `${says} The server's operator can allow it with --allowed-origin. ${NOT_RETRYING}`,
      };
    case 'full':
      return { title: 'The server is full.', detail: `${says} Retrying until a place is free.` };
    case 'too_many_from_address':
      return { title: 'Too many connections from your address.', detail: `${says} Retrying until one closes.` };
    case 'shutting_down':
      return { title: 'The server is shutting down.', detail: `${says} Retrying: it may come back.` };
    default:
      return {
        title: `The server refused the connection (HTTP ${answer.status}).`,
        detail: answer.retry ? `${says} Retrying.` : `${says} ${NOT_RETRYING}`,
      };
  }
}

/**
 * Explain a `refused` verdict with what the server said about the same handshake: why it was
 * refused, and whether retrying can help (a bad token or a refused origin stays refused; a full
 * server or a dropped network may not). Other verdicts are returned unchanged.
 */
export function explainRefusal(verdict: CloseVerdict, outcome: CheckOutcome, context: HandshakeContext = {}): CloseVerdict {
  if (verdict.kind !== 'refused') return verdict;
  const label = closeCodeLabel(verdict.code);
  switch (outcome.kind) {
    case 'answered': {
      const { answer } = outcome;
      if (answer.status === 101) {
        return {
          ...verdict,
          title: 'The connection failed, though the server would accept it now.',
          detail: `The handshake was refused (${label} in the browser), but the server's check passes: a proxy or the network may be in the way, or a limit was reached for a moment. Retrying.`,
        };
      }
      return { ...verdict, ...explainAnswer(answer, context), retry: verdict.retry && answer.retry, refusal: answer.reason };
    }
    case 'unreadable':
      return {
        ...verdict,
        title: 'The server refused the connection.',
        detail:
          `It answers HTTP but rejected the WebSocket handshake (${label} in the browser) without saying why ` +
          '(an older wshub, or a proxy in between). Usual causes: ' +
          (context.withToken ? 'the access token from ?token= is invalid or expired, ' : 'the server requires an access token (?token=…), ') +
          "this page's origin is not allowed, a wrong path, or a connection limit.",
      };
    case 'unreachable':
      return {
        ...verdict,
        title: 'Cannot reach the server.',
        detail: `Nothing answered (${label}). Is the server running, and is the address right?`,
      };
  }
}
