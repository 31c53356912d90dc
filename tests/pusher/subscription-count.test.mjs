// Subscription counting: an app that asks for it (wshub: `subscription_count = true`) tells each
// subscriber of a non-presence channel how many connections the channel has, whenever that
// changes; pusher-js keeps it in `channel.subscriptionCount` and emits `pusher:subscription_count`.
import { test } from 'node:test';
import { connect, eventually, record, same, subscribe, uniq } from './helpers.mjs';

const KEY = process.env.PUSHER_COUNTING_APP_KEY;
const skip = KEY ? false : 'no app with subscription counting (PUSHER_COUNTING_APP_KEY unset)';

test('subscription counting: pusher-js follows the count as subscribers come and go', { skip }, async (t) => {
  const name = uniq('count-');
  const a = await connect(t, { key: KEY });
  const cha = await subscribe(a, name);
  const seen = record(cha, 'pusher:subscription_count');
  await eventually(() => cha.subscriptionCount === 1, 'count 1 at the first subscriber');

  const b = await connect(t, { key: KEY });
  const chb = await subscribe(b, name);
  await eventually(() => chb.subscriptionCount === 2, 'count 2 at the second subscriber');
  await eventually(() => cha.subscriptionCount === 2, 'count 2 at the first subscriber');

  b.unsubscribe(name);
  await eventually(() => cha.subscriptionCount === 1, 'count 1 again after the unsubscribe');
  same(seen.at(-1), { subscription_count: 1 }, 'the last pusher:subscription_count event');
});
