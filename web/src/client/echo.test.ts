import { describe, expect, it } from 'vitest';
import { binaryLength, echoReducer, initialEcho, type EchoAction, type EchoState } from './echo';
import { statusLine } from './lines';

const run = (s: EchoState, ...actions: EchoAction[]) => actions.reduce(echoReducer, s);

describe('echo transcript', () => {
  it('shows what was sent and what came back, in order', () => {
    const s = run(initialEcho(), { type: 'sent', text: 'hi', ts: 1 }, { type: 'received', data: 'hi', ts: 2 });
    expect(s.lines.map((l) => `${l.kind}:${l.text}:${l.status ?? ''}`)).toEqual(['own:hi:sent', 'echo:hi:']);
  });

  it('counts binary frames instead of showing them', () => {
    const s = run(initialEcho(), { type: 'received', data: new Uint8Array(5), ts: 1 }, { type: 'received', data: 42, ts: 2 });
    expect(s.lines.map((l) => l.text)).toEqual(['Received a binary frame (5 bytes), not shown.']);
    expect(binaryLength(new ArrayBuffer(3))).toBe(3);
    expect(binaryLength('x')).toBeNull();
  });

  it('keeps at most `limit` lines', () => {
    let s = initialEcho(2);
    for (const t of ['a', 'b', 'c']) s = run(s, { type: 'received', data: t, ts: 0 });
    expect(s.lines.map((l) => l.text)).toEqual(['b', 'c']);
  });
});

describe('status lines', () => {
  const base = { url: 'ws://h/ws', lastClose: null };
  it('narrates opens and drops, not retries', () => {
    expect(statusLine({ status: 'connecting' }, { ...base, status: 'open' })).toEqual({ text: 'Connected to ws://h/ws', tone: 'info' });
    expect(statusLine({ status: 'open' }, { ...base, status: 'closed' })).toEqual({ text: 'Disconnected.', tone: 'error' });
    expect(statusLine({ status: 'reconnecting' }, { ...base, status: 'reconnecting' })).toBeNull();
    expect(statusLine({ status: 'connecting' }, { ...base, status: 'reconnecting' })).toBeNull();
  });
});
