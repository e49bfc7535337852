// Cache channels: the last event is replayed to a new subscriber right after it subscribes;
// an empty cache channel yields pusher:cache_miss.

import { afterEach, describe, test } from 'node:test';
import {
  assert,
  client,
  closeAll,
  connected,
  named,
  serverSdk,
  subscribe,
  subscribeNoWait,
  uid,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

describe('cache channels', () => {
  test('a new subscriber gets the last event right after subscribing', async () => {
    const sdk = serverSdk();
    const name = uid('cache-');
    await sdk.trigger(name, 'first', { v: 1 });
    await sdk.trigger(name, 'latest', { v: 2 });
    const p = client();
    await connected(p);
    const ch = subscribeNoWait(p, name);
    const ev = await ch.rec.wait((e) => e.event === 'latest', 'cached event');
    assert.deepEqual(ev.data, { v: 2 });
    const names = ch.rec.events.map((e) => e.event);
    assert.equal(names[0], 'pusher:subscription_succeeded', `order: ${names}`);
    assert.equal(names[1], 'latest', `order: ${names}`);
    assert.ok(!names.includes('first'), `older event replayed: ${names}`);
    assert.ok(!names.includes('pusher:cache_miss'), `cache_miss despite a cached event: ${names}`);
  });

  test('an empty cache channel yields pusher:cache_miss', async () => {
    const name = uid('cache-');
    const p = client();
    await connected(p);
    const ch = p.subscribe(name);
    const miss = new Promise((resolve) => ch.bind('pusher:cache_miss', () => resolve(true)));
    const ok = new Promise((resolve) => ch.bind('pusher:subscription_succeeded', () => resolve(true)));
    await withTimeout(ok, 'subscription_succeeded');
    assert.equal(await withTimeout(miss, 'pusher:cache_miss channel event'), true);
    const raw = p.rec.find(named('pusher:cache_miss', name));
    assert.ok(raw, 'cache_miss frame names the channel');
  });

  test('subscribers already on a cache channel get events live, and the cache follows', async () => {
    const sdk = serverSdk();
    const name = uid('cache-');
    const a = client();
    await subscribe(a, name);
    await sdk.trigger(name, 'live', { n: 1 });
    assert.deepEqual((await a.rec.wait(named('live', name), 'live event')).data, { n: 1 });
    const b = client();
    await connected(b);
    const ch = subscribeNoWait(b, name);
    const ev = await ch.rec.wait((e) => e.event === 'live', 'cached live event');
    assert.deepEqual(ev.data, { n: 1 });
  });

  test('private-cache channel: signed subscribers get the cached event', async () => {
    const sdk = serverSdk();
    const name = uid('private-cache-');
    await sdk.trigger(name, 'kept', { secret: true });
    const p = client();
    await connected(p);
    const ch = subscribeNoWait(p, name);
    const ev = await ch.rec.wait((e) => e.event === 'kept', 'cached event on private-cache');
    assert.deepEqual(ev.data, { secret: true });
  });

  test('channel info reports the cache', async () => {
    const sdk = serverSdk();
    const name = uid('cache-');
    const marker = uid('m');
    await sdk.trigger(name, 'stored', { marker });
    const res = await sdk.get({ path: `/channels/${name}`, params: { info: 'cache' } });
    const body = await res.json();
    // The shape is not pinned down by the spec beyond a `cache` member carrying the event.
    assert.ok(body.cache, `GET /channels/${name}?info=cache → ${JSON.stringify(body)}`);
    assert.ok(JSON.stringify(body.cache).includes(marker), JSON.stringify(body));
  });
});
