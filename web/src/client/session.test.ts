import { describe, expect, it } from 'vitest';
import {
  CROSS_NODE_INTERRUPTED_TEXT,
  CROSS_NODE_RESTORED_TEXT,
  currentRoom,
  initialSession,
  isMe,
  joinFrame,
  knownRooms,
  sessionReducer,
  visibleLines,
  type SessionAction,
  type SessionState,
} from './session';
import type { ServerFrame, StoredMessage } from './v1';

const run = (state: SessionState, ...actions: SessionAction[]) => actions.reduce(sessionReducer, state);
const frame = (f: ServerFrame, now = 1_000): SessionAction => ({ type: 'frame', frame: f, now });
const msg = (id: number, text = `m${id}`, nick = 'ann'): StoredMessage => ({ id, ts: 1_000 + id, nick, text });
const live = (id: number, extra: Partial<Extract<ServerFrame, { type: 'message' }>> = {}, room = 'lobby'): SessionAction =>
  frame({ type: 'message', room, ...msg(id), ...extra });
const history = (ids: number[], room = 'lobby'): SessionAction => frame({ type: 'history', room, messages: ids.map((i) => msg(i)) });

/** Message ids (and system texts) in display order. */
const shown = (s: SessionState) =>
  visibleLines(s).map((l) => (l.kind === 'system' ? `[${l.text}]` : l.id !== undefined ? l.id : `~${l.text}`));
const ids = (s: SessionState) => visibleLines(s).flatMap((l) => (l.id === undefined ? [] : [l.id]));

const connected = (room = 'lobby') =>
  run(
    initialSession(room),
    { type: 'online' },
    frame({ type: 'welcome', nick: 'guest-1', protocol: 'wshub.v1', max_text_bytes: 4096 }),
    { type: 'joining', room },
  );

describe('history and live messages', () => {
  it('shows the join history, then live messages, in id order', () => {
    const s = run(connected(), history([1, 2, 3]), live(4), live(5));
    expect(ids(s)).toEqual([1, 2, 3, 4, 5]);
    expect(currentRoom(s).phase).toBe('joined');
    expect(currentRoom(s).lastId).toBe(5);
    const line = visibleLines(s)[0];
    expect(line).toMatchObject({ kind: 'other', nick: 'ann', ts: 1_001, text: 'm1', id: 1 });
  });

  it('drops duplicates by id (overlapping history, repeated frames)', () => {
    const s = run(connected(), history([1, 2, 3]), live(3), history([2, 3, 4]), live(4), live(5), live(5));
    expect(ids(s)).toEqual([1, 2, 3, 4, 5]);
  });

  it('keeps id order whatever order frames arrive in', () => {
    const s = run(connected(), history([5, 6]), history([1, 2]), history([3, 4]));
    expect(ids(s)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('keeps system lines where they happened and puts catch-up after them', () => {
    let s = run(connected(), history([1, 2]));
    s = run(s, { type: 'offline' }, { type: 'system', text: 'Disconnected.', ts: 5, tone: 'error' });
    s = run(s, { type: 'online' }, { type: 'system', text: 'Connected', ts: 6 }, { type: 'joining', room: 'lobby' });
    s = run(s, history([3, 4]), history([2]), live(5));
    expect(shown(s)).toEqual([1, 2, '[Disconnected.]', '[Connected]', 3, 4, 5]);
  });

  it('keeps at most `limit` lines per room', () => {
    const s = run({ ...connected(), limit: 3 }, history([1, 2, 3, 4, 5]));
    expect(ids(s)).toEqual([3, 4, 5]);
  });

  it('starts a new numbering when the server lost its history (ids restart)', () => {
    const s = run(connected(), history([7, 8]), live(1, { text: 'after restart' }), live(2));
    expect(shown(s)).toEqual([7, 8, '[Message numbers restarted: the server lost its history.]', 1, 2]);
    expect(currentRoom(s).lastId).toBe(2);
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby', since: 2 });
  });

  it('rooms are separate transcripts', () => {
    const s = run(connected(), history([1]), history([10, 11], 'b'), live(12, {}, 'b'));
    expect(ids(s)).toEqual([1]);
    expect(ids(run(s, { type: 'switch', room: 'b' }))).toEqual([10, 11, 12]);
    expect(knownRooms(run(s, { type: 'switch', room: 'b' }))).toEqual(['b', 'lobby']);
  });
});

describe('own messages (ref)', () => {
  it('a send waits as pending until the message with its ref arrives', () => {
    let s = run(connected(), history([1]), { type: 'sent', ref: 'r1', room: 'lobby', text: 'hello', ts: 50 });
    expect(visibleLines(s).at(-1)).toMatchObject({ kind: 'own', status: 'pending', text: 'hello', nick: 'guest-1' });
    s = run(s, live(2, { text: 'hello', nick: 'guest-1' }), live(3, { text: 'hello', nick: 'bob', ref: 'r1-other' }));
    s = run(s, live(4, { text: 'hello', nick: 'guest-1', ref: 'r1' }));
    const lines = visibleLines(s);
    expect(lines.map((l) => `${l.id}:${l.kind}`)).toEqual(['1:other', '2:other', '3:other', '4:own']);
    expect(lines.at(-1)).toMatchObject({ status: 'delivered', key: 'p-r1', ts: 1_004 });
    expect(s.pending).toEqual([]);
  });

  it('sends cut off by a disconnect become unconfirmed, and are recognised in the catch-up', () => {
    let s = run(connected(), history([1]), { type: 'sent', ref: 'r1', room: 'lobby', text: 'did it arrive?', ts: 50 });
    s = run(s, { type: 'offline' });
    expect(visibleLines(s).at(-1)).toMatchObject({ status: 'unconfirmed' });
    s = run(s, { type: 'online' }, frame({ type: 'history', room: 'lobby', messages: [msg(2, 'did it arrive?', 'guest-1')] }));
    expect(visibleLines(s).map((l) => `${l.id}:${l.kind}:${l.status ?? ''}`)).toEqual(['1:other:', '2:own:delivered']);
    expect(s.pending).toEqual([]);
  });

  it('an error for a send marks it as not sent', () => {
    let s = run(connected(), { type: 'sent', ref: 'r1', room: 'lobby', text: 'x', ts: 1 });
    s = run(s, frame({ type: 'error', code: 'too_long', message: 'text over 4096 bytes', room: 'lobby' }));
    expect(visibleLines(s).at(-1)).toMatchObject({ status: 'failed' });
    expect(s.notices.map((n) => n.code)).toEqual(['too_long']);
  });
});

describe('user ids (servers that require tokens)', () => {
  const asDana = () =>
    run(
      initialSession('lobby'),
      { type: 'online' },
      frame({ type: 'welcome', nick: 'Dana', user: 'u-dana', nick_locked: true, protocol: 'wshub.v1', max_text_bytes: 4096 }),
      { type: 'joining', room: 'lobby' },
    );
  const by = (id: number, user: string | undefined, nick = 'Dana'): StoredMessage => ({
    ...msg(id, `m${id}`, nick),
    ...(user === undefined ? {} : { user }),
  });
  const kinds = (s: SessionState) => visibleLines(s).map((l) => [l.id, l.kind]);

  it('welcome tells who we are and that the nickname is the token’s', () => {
    const s = asDana();
    expect([s.nick, s.user, s.nickLocked]).toEqual(['Dana', 'u-dana', true]);
    expect(connected().user).toBeNull();
    expect(connected().nickLocked).toBe(false);
  });

  it('after a reload, our earlier messages are ours: by user id, not by nickname', () => {
    // A fresh page: no sends, so no refs; another user is also called Dana.
    const s = run(asDana(), frame({ type: 'history', room: 'lobby', messages: [by(1, 'u-dana'), by(2, 'u-other'), by(3, undefined, 'bob')] }));
    expect(kinds(s)).toEqual([
      [1, 'own'],
      [2, 'other'],
      [3, 'other'],
    ]);
    expect(visibleLines(s)[0]).toMatchObject({ kind: 'own', status: 'delivered', user: 'u-dana', nick: 'Dana' });
    // Live, from our other tab (no ref of this page): ours too.
    const t = run(s, frame({ type: 'message', room: 'lobby', ...by(4, 'u-dana') }), frame({ type: 'message', room: 'lobby', ...by(5, 'u-other') }));
    expect(kinds(t).slice(3)).toEqual([
      [4, 'own'],
      [5, 'other'],
    ]);
  });

  it('without a user id of our own, a message with a user is not taken for ours', () => {
    const s = run(connected(), frame({ type: 'history', room: 'lobby', messages: [by(1, 'u-dana', 'guest-1')] }));
    expect(kinds(s)).toEqual([[1, 'other']]);
  });

  it('a send confirmed by ref keeps its line, and the user id rides along', () => {
    let s = run(asDana(), history([]), { type: 'sent', ref: 'r1', room: 'lobby', text: 'hi', ts: 5 });
    s = run(s, frame({ type: 'message', room: 'lobby', id: 1, ts: 6, nick: 'Dana', user: 'u-dana', text: 'hi', ref: 'r1' }));
    expect(visibleLines(s)).toMatchObject([{ key: 'p-r1', kind: 'own', status: 'delivered', id: 1, user: 'u-dana' }]);
    expect(s.pending).toEqual([]);
  });

  it('presence entries are per nickname and user; joined and left find the right one', () => {
    let s = run(
      asDana(),
      history([]),
      frame({
        type: 'presence',
        room: 'lobby',
        count: 2,
        members: [
          { nick: 'Dana', user: 'u-dana', connections: 1 },
          { nick: 'Dana', user: 'u-other', connections: 1 },
        ],
      }),
    );
    s = run(s, frame({ type: 'joined', room: 'lobby', nick: 'Dana', user: 'u-other' }), frame({ type: 'joined', room: 'lobby', nick: 'Dana', user: 'u-a' }));
    expect(currentRoom(s).members).toEqual([
      { nick: 'Dana', user: 'u-a', connections: 1 },
      { nick: 'Dana', user: 'u-dana', connections: 1 },
      { nick: 'Dana', user: 'u-other', connections: 2 },
    ]);
    s = run(s, frame({ type: 'left', room: 'lobby', nick: 'Dana', user: 'u-dana' }));
    expect(currentRoom(s).members).toEqual([
      { nick: 'Dana', user: 'u-a', connections: 1 },
      { nick: 'Dana', user: 'u-other', connections: 2 },
    ]);
    expect(currentRoom(s).count).toBe(3);
  });

  it('isMe: by user id when there are user ids, else by nickname', () => {
    expect(isMe({ nick: 'Dana', user: 'u-dana', connections: 1 }, 'Dana', 'u-dana')).toBe(true);
    expect(isMe({ nick: 'Dana', user: 'u-other', connections: 1 }, 'Dana', 'u-dana')).toBe(false);
    expect(isMe({ nick: 'Dana', connections: 1 }, 'Dana', 'u-dana')).toBe(false);
    expect(isMe({ nick: 'Dana', user: 'u-dana', connections: 1 }, 'Dana', null)).toBe(false);
    expect(isMe({ nick: 'ann', connections: 2 }, 'ann', null)).toBe(true);
    expect(isMe({ nick: 'bob', connections: 1 }, 'ann', null)).toBe(false);
  });

  it('a refused nickname change says the name comes from the token', () => {
    const s = run(asDana(), frame({ type: 'error', code: 'nick_locked', message: 'your nickname is Dana (from your access token)' }));
    expect(s.notices.at(-1)).toMatchObject({ code: 'nick_locked' });
    expect(s.notices.at(-1)?.text).toMatch(/access token/);
    expect(s.nick).toBe('Dana');
  });
});

describe('presence', () => {
  const snapshot: ServerFrame = {
    type: 'presence',
    room: 'lobby',
    count: 2,
    members: [
      { nick: 'ann', connections: 1 },
      { nick: 'guest-1', connections: 1 },
    ],
  };

  it('takes the snapshot, then applies joined and left', () => {
    let s = run(connected(), frame(snapshot));
    expect(currentRoom(s)).toMatchObject({ count: 2, phase: 'joined' });
    s = run(s, frame({ type: 'joined', room: 'lobby', nick: 'bob' }), frame({ type: 'joined', room: 'lobby', nick: 'ann' }));
    expect(currentRoom(s).members).toEqual([
      { nick: 'ann', connections: 2 },
      { nick: 'bob', connections: 1 },
      { nick: 'guest-1', connections: 1 },
    ]);
    expect(currentRoom(s).count).toBe(4);
    s = run(s, frame({ type: 'left', room: 'lobby', nick: 'bob' }, 10_000), frame({ type: 'left', room: 'lobby', nick: 'ann' }, 20_000));
    expect(currentRoom(s).members).toEqual([
      { nick: 'ann', connections: 1 },
      { nick: 'guest-1', connections: 1 },
    ]);
    expect(currentRoom(s).count).toBe(2);
    expect(shown(s)).toEqual(['[bob joined]', '[ann joined]', '[bob left]', '[ann left]']);
  });

  it('a quick left + joined reads as a nickname change', () => {
    const s = run(
      connected(),
      frame(snapshot),
      frame({ type: 'left', room: 'lobby', nick: 'ann' }, 1_000),
      frame({ type: 'joined', room: 'lobby', nick: 'Annie' }, 1_050),
    );
    expect(shown(s)).toEqual(['[ann is now Annie]']);
    expect(currentRoom(s).members?.map((m) => m.nick)).toEqual(['Annie', 'guest-1']);
  });

  it('forgets members while offline', () => {
    const s = run(connected(), frame(snapshot), { type: 'offline' });
    expect(currentRoom(s)).toMatchObject({ members: null, count: 0, phase: 'out' });
  });

  it('tracks our nickname', () => {
    expect(run(connected(), frame({ type: 'nick', nick: 'ann' })).nick).toBe('ann');
  });
});

describe('notices', () => {
  it('history_truncated: a notice and a marker line where the gap is', () => {
    let s = run(connected(), history([1, 2]), { type: 'offline' }, { type: 'online' });
    s = run(s, frame({ type: 'error', code: 'history_truncated', message: 'x', room: 'lobby', first_available: 40 }), history([40, 41]));
    expect(s.notices).toHaveLength(1);
    expect(s.notices[0]).toMatchObject({ code: 'history_truncated', text: 'Some messages were lost: history starts at #40.' });
    expect(shown(s)).toEqual([1, 2, '[Some messages were lost: history starts at #40.]', 40, 41]);
  });

  it('history_unavailable: a notice and a marker line where messages may be missing', () => {
    let s = run(connected(), history([1, 2]), { type: 'offline' }, { type: 'online' });
    s = run(s, frame({ type: 'error', code: 'history_unavailable', message: 'x', room: 'lobby' }), history([]));
    const text = 'Earlier messages could not be loaded now: some may be missing.';
    expect(s.notices).toHaveLength(1);
    expect(s.notices[0]).toMatchObject({ code: 'history_unavailable', text });
    expect(shown(s)).toEqual([1, 2, `[${text}]`]);
  });

  it('are dismissible, not repeated, and capped', () => {
    const err = (message: string) => frame({ type: 'error', code: 'bad_field', message });
    let s = run(connected(), err('a'), err('a'), err('b'));
    expect(s.notices.map((n) => n.text)).toEqual([
      'The server did not understand the page (bad_field): a',
      'The server did not understand the page (bad_field): b',
    ]);
    s = run(s, { type: 'dismiss', key: (s.notices[0] as { key: string }).key });
    expect(s.notices).toHaveLength(1);
    s = run(s, err('c'), err('d'), err('e'), err('f'));
    expect(s.notices).toHaveLength(4);
  });
});

describe('since bookkeeping', () => {
  it('first join has no since; rejoin sends the last id seen in that room', () => {
    let s = connected();
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby' });
    s = run(s, history([]));
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby' });
    s = run(s, history([3, 4]), live(5));
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby', since: 5 });
    // An older frame arriving late does not move it back.
    s = run(s, history([1, 2]));
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby', since: 5 });
    expect(joinFrame(s, 'other')).toEqual({ type: 'join', room: 'other' });
  });
});

describe('local messages (cross-node delivery interrupted)', () => {
  const local = (text: string, extra: Partial<Extract<ServerFrame, { type: 'message' }>> = {}, room = 'lobby'): SessionAction =>
    frame({ type: 'message', room, id: 0, ts: 2_000, nick: 'bob', text, local: true, ...extra });

  it('are all shown although they share id 0, in arrival order, marked local, without an id', () => {
    const s = run(connected(), history([1, 2]), local('a'), local('a'), local('b', { nick: 'cy' }), live(3));
    expect(shown(s)).toEqual([1, 2, '~a', '~a', '~b', 3]);
    const locals = visibleLines(s).filter((l) => l.local);
    expect(locals).toHaveLength(3);
    expect(locals.every((l) => l.id === undefined && l.kind === 'other')).toBe(true);
    expect(new Set(visibleLines(s).map((l) => l.key)).size).toBe(visibleLines(s).length);
  });

  it('do not advance since, and do not look like a restart of the numbering', () => {
    let s = run(connected(), history([5, 6]), local('x'), local('y'));
    expect(currentRoom(s).lastId).toBe(6);
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby', since: 6 });
    s = run(s, live(7));
    expect(currentRoom(s).epoch).toBe(0);
    expect(shown(s)).toEqual([5, 6, '~x', '~y', 7]);
    // A room with only local messages still joins without since.
    const fresh = run(connected(), history([]), local('only here'));
    expect(joinFrame(fresh, 'lobby')).toEqual({ type: 'join', room: 'lobby' });
  });

  it('own local messages are recognised by ref', () => {
    let s = run(
      connected(),
      history([1]),
      { type: 'sent', ref: 'r1', room: 'lobby', text: 'hi', ts: 50 },
      { type: 'sent', ref: 'r2', room: 'lobby', text: 'hi', ts: 51 },
    );
    s = run(s, local('hi', { nick: 'guest-1', ref: 'r1' }), local('hi', { nick: 'guest-1', ref: 'r2' }));
    expect(s.pending).toEqual([]);
    expect(visibleLines(s).slice(1)).toEqual([
      expect.objectContaining({ key: 'p-r1', kind: 'own', status: 'delivered', local: true }),
      expect.objectContaining({ key: 'p-r2', kind: 'own', status: 'delivered', local: true }),
    ]);
    expect(currentRoom(s).lastId).toBe(1);
  });

  it('a later catch-up merges around them without dropping them', () => {
    const s = run(connected(), history([1]), local('l'), { type: 'offline' }, { type: 'online' }, history([2, 3]));
    expect(shown(s)).toEqual([1, '~l', 2, 3]);
  });
});

describe('status notices', () => {
  const error = (code: string, extra: Record<string, unknown> = {}) =>
    frame({ type: 'error', code, message: 'server text', ...extra } as ServerFrame);
  const notice = (code: string) => frame({ type: 'notice', code, message: 'server text' });

  it('cross_node_interrupted shows a notice; cross_node_restored replaces it', () => {
    let s = run(connected(), notice('cross_node_interrupted'));
    expect(s.notices).toEqual([expect.objectContaining({ code: 'cross_node_interrupted', text: CROSS_NODE_INTERRUPTED_TEXT })]);
    expect(CROSS_NODE_INTERRUPTED_TEXT).toBe("Other servers unreachable: messages reach this server's members only.");
    // Said again on each join while it lasts: still one notice.
    s = run(s, notice('cross_node_interrupted'));
    expect(s.notices).toHaveLength(1);
    s = run(s, notice('cross_node_restored'));
    expect(s.notices).toEqual([expect.objectContaining({ code: 'cross_node_restored', text: CROSS_NODE_RESTORED_TEXT })]);
    expect(CROSS_NODE_RESTORED_TEXT).toMatch(/restored/);
    // And the other way round.
    s = run(s, notice('cross_node_interrupted'));
    expect(s.notices.map((n) => n.code)).toEqual(['cross_node_interrupted']);
  });

  it('a notice from a newer server is shown with its own text', () => {
    const s = run(connected(), notice('maintenance_soon'));
    expect(s.notices).toEqual([expect.objectContaining({ code: 'maintenance_soon', text: 'server text' })]);
  });

  it('the cross-node status is forgotten on disconnect (the next server says it anew)', () => {
    const s = run(connected(), error('bad_field'), notice('cross_node_interrupted'), { type: 'offline' });
    expect(s.notices.map((n) => n.code)).toEqual(['bad_field']);
  });

  it('rate_limited with a ref: that send is marked not sent, not the oldest', () => {
    let s = run(
      connected(),
      { type: 'sent', ref: 'r1', room: 'lobby', text: 'one', ts: 1 },
      { type: 'sent', ref: 'r2', room: 'lobby', text: 'two', ts: 2 },
    );
    s = run(s, frame({ type: 'error', code: 'rate_limited', message: 'slow down', room: 'lobby', ref: 'r2' }));
    expect(s.pending.map((p) => `${p.ref}:${p.status}`)).toEqual(['r1:pending', 'r2:failed']);
  });

  it('rate_limited: a notice, and the oldest waiting send is marked not sent', () => {
    let s = run(
      connected(),
      { type: 'sent', ref: 'r1', room: 'lobby', text: 'one', ts: 1 },
      { type: 'sent', ref: 'r2', room: 'lobby', text: 'two', ts: 2 },
    );
    s = run(s, error('rate_limited'));
    expect(s.notices).toEqual([
      expect.objectContaining({ code: 'rate_limited', text: "You're sending too fast: that message was dropped." }),
    ]);
    expect(s.pending.map((p) => `${p.ref}:${p.status}`)).toEqual(['r1:failed', 'r2:pending']);
    // Had it been some other request that was dropped, the send still shows up when relayed.
    s = run(s, live(1, { text: 'one', nick: 'guest-1', ref: 'r1' }));
    expect(visibleLines(s).find((l) => l.key === 'p-r1')).toMatchObject({ status: 'delivered', id: 1 });
  });
});

describe('forbidden_room', () => {
  const forbidden = (room: string) =>
    frame({ type: 'error', code: 'forbidden_room', message: 'your access token does not allow this room', room });

  it('a refused switch goes back to the previous room, and forgets the refused one', () => {
    let s = run(connected(), history([4]), { type: 'leaving', room: 'lobby' }, { type: 'switch', room: 'secret' });
    s = run(s, { type: 'joining', room: 'secret' });
    expect(s.room).toBe('secret');
    s = run(s, forbidden('secret'));
    expect(s.room).toBe('lobby');
    expect(s.rooms.secret).toBeUndefined();
    expect(knownRooms(s)).toEqual(['lobby']);
    expect(ids(s)).toEqual([4]);
    expect(joinFrame(s, 'lobby')).toEqual({ type: 'join', room: 'lobby', since: 4 });
    expect(s.notices).toEqual([
      expect.objectContaining({ code: 'forbidden_room', room: 'secret', text: 'Cannot join #secret: your access token does not allow this room.' }),
    ]);
    // No ping-pong: a refusal of the way back leaves the page where it is.
    s = run(s, forbidden('lobby'));
    expect(s.room).toBe('lobby');
  });

  it('the first room has nowhere to go back to: it stays, not joined, with the error in it', () => {
    const s = run(connected('secret'), forbidden('secret'));
    expect(s.room).toBe('secret');
    expect(currentRoom(s)).toMatchObject({ phase: 'out', members: null });
    expect(shown(s)).toEqual(['[Cannot join #secret: your access token does not allow this room.]']);
    expect(s.notices.map((n) => n.code)).toEqual(['forbidden_room']);
  });

  it('a late refusal for a room already switched away from only marks it', () => {
    let s = run(connected(), { type: 'switch', room: 'secret' }, { type: 'switch', room: 'b' });
    s = run(s, forbidden('secret'));
    expect(s.room).toBe('b');
    expect(s.rooms.secret).toBeUndefined();
  });
});
