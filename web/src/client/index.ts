/**
 * Client for wshub, free of React.
 *
 * - backoff.ts: reconnect schedule (exponential, capped, jittered).
 * - close.ts: what a close code means; "refused before open" vs "lost" vs "closed by the server".
 * - check.ts: asking the server why a handshake was refused (`GET <path>?check`).
 * - connection.ts: connection manager (one URL, reconnects until stopped).
 * - v1.ts: the `wshub.v1` codec: client frames, validated parsing of server frames, name rules.
 * - session.ts: chat state reducer (rooms, merge and dedupe by id, presence, notices, `since`).
 * - chat.ts: ChatClient (Connection + v1 + session). echo.ts: EchoClient (raw `/echo`).
 * - lines.ts: transcript line type; store.ts: tiny external store; url.ts: socket URLs.
 */
export * from './backoff';
export * from './chat';
export * from './check';
export * from './close';
export * from './connection';
export * from './echo';
export * from './lines';
export * from './session';
export * from './store';
export * from './url';
export * from './v1';
