/**
 * Reconnect schedule: exponential backoff with a cap and jitter.
 *
 * Jitter spreads the reconnects of many pages after a server restart, so they do not all hit the
 * new process in the same millisecond.
 */

/** How long the client waits between reconnection attempts. */
export interface ReconnectPolicy {
  /** Ceiling of the first retry's delay, in ms. */
  baseDelayMs: number;
  /** Growth of the ceiling per consecutive failure. */
  factor: number;
  /** Largest ceiling any attempt may reach, in ms. */
  maxDelayMs: number;
  /** Share (0..1) of the ceiling taken away at random: 0.5 puts every delay in (ceiling/2, ceiling]. */
  jitter: number;
  /** A socket that stayed open this long was healthy: the next failure starts again at attempt 0. */
  stableAfterMs: number;
}

/** Defaults: 0.5 s, 1 s, 2 s, 4 s, 8 s, then 15 s at most, each shortened by up to half at random. */
export const DEFAULT_RECONNECT: ReconnectPolicy = {
  baseDelayMs: 500,
  factor: 2,
  maxDelayMs: 15_000,
  jitter: 0.5,
  stableAfterMs: 5_000,
};

const clamp01 = (x: number): number => (Number.isFinite(x) ? Math.min(Math.max(x, 0), 1) : 0);

/** Ceiling for `attempt` (0-based count of consecutive failures), before jitter. */
export function delayCeiling(attempt: number, policy: ReconnectPolicy = DEFAULT_RECONNECT): number {
  const n = Math.max(0, Math.floor(attempt));
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * policy.factor ** n);
}

/**
 * Delay in ms before retry number `attempt`, in (ceiling × (1 − jitter), ceiling].
 * `random` returns a number in [0, 1), like `Math.random`; tests pass their own.
 */
export function reconnectDelay(
  attempt: number,
  policy: ReconnectPolicy = DEFAULT_RECONNECT,
  random: () => number = Math.random,
): number {
  const ceiling = delayCeiling(attempt, policy);
  return Math.round(ceiling * (1 - clamp01(policy.jitter) * clamp01(random())));
}
