import { describe, expect, it } from 'vitest';
import {
  initialMessages,
  messagesReducer,
  visibleMessages,
  type MessagesAction,
  type MessagesState,
} from './messages';

const run = (state: MessagesState, ...actions: MessagesAction[]) => actions.reduce(messagesReducer, state);
const summary = (s: MessagesState) => visibleMessages(s).map((m) => `${m.kind}:${m.text}${m.status ? `(${m.status})` : ''}`);

describe('chat mode: own vs others', () => {
  it('shows a sent text as pending until the server relays it, then as own', () => {
    const s1 = run(initialMessages('chat'), { type: 'sent', text: 'hi', ts: 1 });
    expect(summary(s1)).toEqual(['own:hi(pending)']);
    const s2 = run(s1, { type: 'received', text: 'hi', ts: 2 });
    expect(summary(s2)).toEqual(['own:hi(delivered)']);
    expect(s2.pending).toEqual([]);
    expect(visibleMessages(s2)[0]?.ts).toBe(2);
  });

  it('marks texts nobody here sent as others', () => {
    const s = run(initialMessages('chat'), { type: 'received', text: 'hello from B', ts: 1 });
    expect(summary(s)).toEqual(['other:hello from B']);
  });

  it('matches only the first copy of each sent text', () => {
    const s = run(
      initialMessages('chat'),
      { type: 'sent', text: 'same', ts: 1 },
      { type: 'received', text: 'same', ts: 2 },
      { type: 'received', text: 'same', ts: 3 },
    );
    expect(summary(s)).toEqual(['own:same(delivered)', 'other:same']);
  });

  it('matches two identical sends to two copies, in order', () => {
    const s = run(
      initialMessages('chat'),
      { type: 'sent', text: 'x', ts: 1 },
      { type: 'sent', text: 'x', ts: 2 },
      { type: 'received', text: 'x', ts: 3 },
    );
    expect(summary(s)).toEqual(['own:x(delivered)', 'own:x(pending)']);
    const keys = visibleMessages(s).map((m) => m.key);
    expect(new Set(keys).size).toBe(2);
  });
});

describe('ordering', () => {
  it('keeps the server order, with unconfirmed sends below it', () => {
    const s = run(
      initialMessages('chat'),
      { type: 'sent', text: 'a', ts: 1 },
      { type: 'received', text: 'b', ts: 2 }, // someone else's, relayed before ours
      { type: 'received', text: 'a', ts: 3 },
      { type: 'sent', text: 'c', ts: 4 },
      { type: 'received', text: 'd', ts: 5 },
    );
    expect(summary(s)).toEqual(['other:b', 'own:a(delivered)', 'other:d', 'own:c(pending)']);
  });

  it('keeps keys unique and stable across confirmation', () => {
    const s1 = run(initialMessages('chat'), { type: 'sent', text: 'a', ts: 1 });
    const key = visibleMessages(s1)[0]?.key;
    const s2 = run(s1, { type: 'received', text: 'z', ts: 2 }, { type: 'received', text: 'a', ts: 3 });
    expect(visibleMessages(s2)[1]?.key).toBe(key);
    expect(new Set(visibleMessages(s2).map((m) => m.key)).size).toBe(2);
  });

  it('drops the oldest lines beyond the limit', () => {
    let s = initialMessages('chat', 3);
    for (let i = 0; i < 5; i++) s = messagesReducer(s, { type: 'received', text: `m${i}`, ts: i });
    expect(summary(s)).toEqual(['other:m2', 'other:m3', 'other:m4']);
  });
});

describe('connection loss and modes', () => {
  it('turns pending sends into unconfirmed ones when the connection drops', () => {
    const s = run(initialMessages('chat'), { type: 'sent', text: 'lost?', ts: 1 }, { type: 'disconnected' });
    expect(summary(s)).toEqual(['own:lost?(unconfirmed)']);
    expect(s.pending).toEqual([]);
    // A copy arriving on the next connection is someone else's, not a late confirmation.
    expect(summary(run(s, { type: 'received', text: 'lost?', ts: 2 }))).toContain('other:lost?');
  });

  it('echo mode shows the sent text and the reply as two lines', () => {
    const s = run(initialMessages('echo'), { type: 'sent', text: 'ping', ts: 1 }, { type: 'received', text: 'ping', ts: 2 });
    expect(summary(s)).toEqual(['own:ping(sent)', 'echo:ping']);
  });

  it('system lines and reset', () => {
    const s = run(initialMessages('chat'), { type: 'system', text: 'Connected', ts: 1 });
    expect(visibleMessages(s)[0]).toMatchObject({ kind: 'system', tone: 'info' });
    const r = run(s, { type: 'reset', mode: 'echo' });
    expect(r.mode).toBe('echo');
    expect(visibleMessages(r)).toEqual([]);
    expect(r.seq).toBe(s.seq);
  });

  it('keeps any Unicode text as is', () => {
    const text = '日本語のメッセージ 👋🏽 <b>not bold</b>';
    const s = run(initialMessages('chat'), { type: 'sent', text, ts: 1 }, { type: 'received', text, ts: 2 });
    expect(visibleMessages(s)[0]).toMatchObject({ kind: 'own', text });
  });
});
