import { describe, expect, it } from 'vitest';
import { DEFAULT_RECONNECT, delayCeiling, reconnectDelay, type ReconnectPolicy } from './backoff';

const policy: ReconnectPolicy = { baseDelayMs: 500, factor: 2, maxDelayMs: 8_000, jitter: 0.5, stableAfterMs: 5_000 };

describe('reconnect schedule', () => {
  it('doubles the ceiling per failure until the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => delayCeiling(n, policy))).toEqual([
      500, 1000, 2000, 4000, 8000, 8000, 8000,
    ]);
  });

  it('never exceeds the cap, even for huge attempt counts', () => {
    expect(delayCeiling(10_000, policy)).toBe(8_000);
    expect(reconnectDelay(10_000, policy, () => 0)).toBe(8_000);
  });

  it('keeps jittered delays within (ceiling × (1 − jitter), ceiling]', () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = delayCeiling(attempt, policy);
      expect(reconnectDelay(attempt, policy, () => 0)).toBe(ceiling);
      expect(reconnectDelay(attempt, policy, () => 0.999999)).toBe(Math.round(ceiling * (1 - 0.5 * 0.999999)));
      for (let i = 0; i < 200; i++) {
        const d = reconnectDelay(attempt, policy);
        expect(d).toBeGreaterThanOrEqual(ceiling / 2);
        expect(d).toBeLessThanOrEqual(ceiling);
      }
    }
  });

  it('actually spreads delays (not a constant)', () => {
    const seen = new Set(Array.from({ length: 50 }, () => reconnectDelay(3, policy)));
    expect(seen.size).toBeGreaterThan(10);
  });

  it('tolerates odd inputs: negative attempts, out-of-range random and jitter', () => {
    expect(reconnectDelay(-3, policy, () => 0)).toBe(500);
    expect(reconnectDelay(0, policy, () => 7)).toBe(250);
    expect(reconnectDelay(0, { ...policy, jitter: 3 }, () => 0.5)).toBe(250);
    expect(reconnectDelay(0, { ...policy, jitter: 0 }, () => 0.9)).toBe(500);
  });

  it('has sane defaults: first retry within a second, capped at 15 s', () => {
    expect(delayCeiling(0)).toBeLessThanOrEqual(1_000);
    expect(delayCeiling(50)).toBe(DEFAULT_RECONNECT.maxDelayMs);
    expect(DEFAULT_RECONNECT.maxDelayMs).toBe(15_000);
  });
});
