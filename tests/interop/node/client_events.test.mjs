// Client events (client-*): relayed to the other members of private and presence channels, never
// echoed, refused on public channels, tagged with user_id on presence channels.

import { afterEach, describe, test } from 'node:test';
import {
  assert,
  client,
  closeAll,
  connected,
  flushWithMarker,
  named,
  serverSdk,
  sleep,
  subscribe,
  uid,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

describe('client events', () => {
  test('private channel: delivered to the other member, not echoed to the sender', async () => {
    const sdk = serverSdk();
    const name = uid('private-chat-');
    const sender = client();
    const receiver = client();
    const s = await subscribe(sender, name);
    const r = await subscribe(receiver, name);
    const got = new Promise((resolve) => r.bind('client-hello', resolve));
    assert.equal(s.trigger('client-hello', { text: 'hi there', n: 1 }), true);
    assert.deepEqual(await withTimeout(got, 'client-hello at receiver'), { text: 'hi there', n: 1 });
    await flushWithMarker(sdk, sender, name);
    assert.equal(sender.rec.find(named('client-hello')), undefined, 'client event echoed to its sender');
  });

  test('presence channel: delivered with user_id of the sender', async () => {
    const sdk = serverSdk();
    const name = uid('presence-chat-');
    const alice = client({ user: { id: 'alice', user_info: { name: 'Alice' } } });
    const bob = client({ user: { id: 'bob', user_info: { name: 'Bob' } } });
    const a = await subscribe(alice, name);
    const b = await subscribe(bob, name);
    const got = new Promise((resolve) => b.bind('client-typing', (data, metadata) => resolve({ data, metadata })));
    a.trigger('client-typing', { typing: true });
    const { data, metadata } = await withTimeout(got, 'client-typing at bob');
    assert.deepEqual(data, { typing: true });
    assert.equal(metadata?.user_id, 'alice', `metadata ${JSON.stringify(metadata)}`);
    const raw = bob.rec.find(named('client-typing', name));
    assert.equal(raw.user_id, 'alice', `frame ${JSON.stringify(raw)}`);
    await flushWithMarker(sdk, alice, name);
    assert.equal(alice.rec.find(named('client-typing')), undefined, 'client event echoed to its sender');
  });

  test('public channel: refused with pusher:error and not relayed', async () => {
    const sdk = serverSdk();
    const name = uid('public-chat-');
    const sender = client();
    const other = client();
    await subscribe(sender, name);
    await subscribe(other, name);
    // pusher-js would send it (Channel.trigger has no public-channel check in 8.x), but send the
    // raw frame to be explicit about what goes on the wire.
    sender.send_event('client-x', { should: 'not pass' }, name);
    const err = await sender.rec.wait(named('pusher:error'), 'pusher:error for a public client event');
    assert.ok(err.data && typeof err.data === 'object', `pusher:error data ${JSON.stringify(err.data)}`);
    await flushWithMarker(sdk, other, name);
    assert.equal(other.rec.find(named('client-x')), undefined, 'client event relayed on a public channel');
    await sleep(200);
    assert.equal(sender.connection.state, 'connected', 'connection dropped after a refused client event');
  });

  test('not relayed on a private channel the sender has not joined', async () => {
    const sdk = serverSdk();
    const name = uid('private-closed-');
    const outsider = client();
    const member = client();
    await connected(outsider);
    await subscribe(member, name);
    outsider.send_event('client-sneak', { x: 1 }, name);
    await sleep(300);
    await flushWithMarker(sdk, member, name);
    assert.equal(member.rec.find(named('client-sneak')), undefined, 'client event from a non-member relayed');
  });

  test('more than 10 client events per second are rate limited with code 4301', async () => {
    const name = uid('private-flood-');
    const sender = client();
    const receiver = client();
    const s = await subscribe(sender, name);
    await subscribe(receiver, name);
    for (let i = 0; i < 40; i++) s.trigger('client-flood', { i });
    const limited = await sender.states.wait(
      (e) => e.event === 'error' && (e.error?.data?.code === 4301 || e.error?.error?.data?.code === 4301),
      'an error with code 4301 (pusher:error or close)',
    );
    assert.ok(limited);
    await sleep(300);
    const relayed = receiver.rec.filter(named('client-flood', name)).length;
    assert.ok(relayed < 40, `all ${relayed} flooded client events were relayed`);
  });

  test('several client events arrive in order', async () => {
    const name = uid('private-order-');
    const sender = client();
    const receiver = client();
    const s = await subscribe(sender, name);
    const r = await subscribe(receiver, name);
    const seen = [];
    const done = new Promise((resolve) =>
      r.bind('client-seq', (d) => {
        seen.push(d.i);
        if (seen.length === 5) resolve();
      }),
    );
    for (let i = 0; i < 5; i++) s.trigger('client-seq', { i });
    await withTimeout(done, '5 client-seq events');
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  });
});
