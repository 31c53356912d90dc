/**
 * Client for wshub, free of React.
 *
 * - backoff.ts: reconnect schedule (exponential, capped, jittered).
 * - close.ts: what a close code means; "refused before open" vs "lost" vs "closed by the server".
 * - connection.ts: connection manager (one URL, reconnects until stopped).
 * - codec.ts: frames <-> events; raw today, the seam for `wshub.v1`.
 * - protocol.ts: the `wshub.v1` JSON frames (not spoken by the server yet).
 * - messages.ts: message list reducer (own vs others, order, delivery status).
 * - url.ts: socket URL from the page origin or `?server=`.
 */
export * from './backoff';
export * from './close';
export * from './codec';
export * from './connection';
export * from './messages';
export * from './protocol';
export * from './url';
