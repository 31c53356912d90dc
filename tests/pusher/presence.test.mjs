// Presence through laravel-echo's join(): here / joining / leaving, and the rule that a member is
// a user, not a connection (a user with two tabs joins once and leaves with the last tab).
import { test } from 'node:test';
import {
  check, echo, eventually, flush, same, subscribe, uniq, within,
} from './helpers.mjs';

/** Echo's join() with its three callbacks recorded; resolves once here() ran. */
async function join(e, room) {
  const log = { here: null, joining: [], leaving: [] };
  let hereDone;
  const here = new Promise((r) => { hereDone = r; });
  const channel = e.join(room)
    .here((users) => { log.here = users; hereDone(); })
    .joining((u) => log.joining.push(u))
    .leaving((u) => log.leaving.push(u))
    .error((err) => { log.error = err; hereDone(); });
  await within(here, `here() on presence-${room}`);
  if (log.error) throw new Error(`join(${room}) failed: ${JSON.stringify(log.error)}`);
  return { channel, log, pusherChannel: e.connector.pusher.channel(`presence-${room}`) };
}
const ids = (users) => users.map((u) => u.id).sort();

test('presence (laravel-echo join): here lists the members, joining and leaving follow', async (t) => {
  const room = uniq('room-');
  const ann = uniq('ann-');
  const bob = uniq('bob-');
  const ea = await echo(t, { userId: ann });
  const a = await join(ea, room);
  same(ids(a.log.here), [ann], 'here() for the first member');
  same(a.log.here[0], { id: ann, name: `User ${ann}` }, 'user_info passed through');

  const eb = await echo(t, { userId: bob });
  const b = await join(eb, room);
  same(ids(b.log.here), [ann, bob].sort(), 'here() for the second member');
  await eventually(() => a.log.joining.length === 1, 'joining() at the first member');
  same(a.log.joining[0], { id: bob, name: `User ${bob}` }, 'joining() user');

  eb.leave(room);
  await eventually(() => a.log.leaving.length === 1, 'leaving() at the first member');
  same(a.log.leaving[0], { id: bob, name: `User ${bob}` }, 'leaving() user');
  same(b.log.joining, [], 'joining() at the second member');
});

test('presence: one user with two connections is one member; member_removed only when the last goes', async (t) => {
  const room = uniq('tabs-');
  const watcher = await echo(t, { userId: uniq('watch-') });
  const w = await join(watcher, room);
  const carol = uniq('carol-');
  const tab1 = await echo(t, { userId: carol });
  const tab2 = await echo(t, { userId: carol });

  await join(tab1, room);
  await eventually(() => w.log.joining.length === 1, 'joining() for the first tab');
  const t2 = await join(tab2, room);
  same(ids(t2.log.here), [carol, w.log.here[0].id].sort(), 'here() at the second tab');
  // The second tab's join was taken before this marker: a second member_added would be in by now.
  await flush(w.pusherChannel);
  same(w.log.joining.map((u) => u.id), [carol], 'joining() calls at the watcher');
  same(w.pusherChannel.members.count, 2, "watcher's members.count");

  // The first tab leaves (its unsubscribe is taken before its next subscribe, which it waits for).
  tab1.leave(room);
  await subscribe(tab1.connector.pusher, uniq('after-leave-'));
  await flush(w.pusherChannel);
  same(w.log.leaving, [], 'leaving() while the user still has a connection');
  same(w.pusherChannel.members.count, 2, "watcher's members.count with one tab left");

  // The last tab goes away entirely: now the user leaves.
  tab2.disconnect();
  await eventually(() => w.log.leaving.length === 1, 'leaving() after the last tab');
  same(w.log.leaving[0].id, carol, 'leaving() user');
  same(w.pusherChannel.members.count, 1, "watcher's members.count");
  check(w.log.joining.length === 1, `joining() called ${w.log.joining.length} times`);
});

test('presence: subscription_succeeded carries me, count and every member', async (t) => {
  const room = uniq('members-');
  const dan = uniq('dan-');
  const eve = uniq('eve-');
  const ed = await echo(t, { userId: dan });
  await join(ed, room);
  const ee = await echo(t, { userId: eve });
  const { pusherChannel } = await join(ee, room);
  const m = pusherChannel.members;
  same(m.me && m.me.id, eve, 'members.me.id');
  same(m.me && m.me.info, { id: eve, name: `User ${eve}` }, 'members.me.info');
  same(m.count, 2, 'members.count');
  same(m.get(dan) && m.get(dan).info, { id: dan, name: `User ${dan}` }, 'the other member');
});
