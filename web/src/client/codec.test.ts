import { describe, expect, it } from 'vitest';
import { codecFor, rawCodec } from './codec';
import { jsonV1Codec, WSHUB_V1 } from './protocol';

const ctx = { nick: 'ann', room: 'lobby' };

describe('raw codec', () => {
  it('sends text unchanged and adds no nickname', () => {
    expect(rawCodec.greet(ctx)).toEqual([]);
    expect(rawCodec.encodeText('hi 👋', ctx)).toBe('hi 👋');
  });

  it('decodes text frames as messages and binary frames by size', () => {
    expect(rawCodec.decode('yo')).toEqual([{ type: 'message', text: 'yo' }]);
    expect(rawCodec.decode(new ArrayBuffer(5))).toEqual([{ type: 'binary', bytes: 5 }]);
    expect(rawCodec.decode(42)).toEqual([]);
  });
});

describe('wshub.v1 seam', () => {
  it('is chosen only when the server selects the subprotocol', () => {
    expect(codecFor('')).toBe(rawCodec);
    expect(codecFor(WSHUB_V1)).toBe(jsonV1Codec);
  });

  it('encodes nick, join and send frames', () => {
    expect(jsonV1Codec.greet(ctx).map((f) => JSON.parse(f))).toEqual([
      { type: 'nick', nick: 'ann' },
      { type: 'join', room: 'lobby' },
    ]);
    expect(JSON.parse(jsonV1Codec.encodeText('hi', ctx))).toEqual({ type: 'send', room: 'lobby', text: 'hi' });
  });

  it('decodes message frames and ignores unknown types', () => {
    const frame = JSON.stringify({ type: 'message', room: 'lobby', id: 7, nick: 'bob', ts: 1700000000000, text: 'hey' });
    expect(jsonV1Codec.decode(frame)).toEqual([
      { type: 'message', room: 'lobby', id: 7, nick: 'bob', ts: 1700000000000, text: 'hey' },
    ]);
    expect(jsonV1Codec.decode('{"type":"presence","room":"lobby"}')).toEqual([]);
    expect(jsonV1Codec.decode('not json')[0]?.type).toBe('notice');
  });
});
