// Public and private channels: subscribing, REST triggers (single, multi-channel, batch,
// socket_id exclusion), signed subscriptions and refused signatures.

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
  subscribeNoWait,
  uid,
  apiGet,
  rawEstablished,
  rawSocket,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

describe('public channels', () => {
  test('a REST trigger reaches the subscriber with the right data', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('public-');
    const channel = await subscribe(p, name);
    const payload = { hello: 'world', n: 42, nested: { list: [1, 2, 3], ok: true }, text: 'héllo ✓' };
    const got = new Promise((resolve) => channel.bind('greeting', resolve));
    const res = await sdk.trigger(name, 'greeting', payload);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    assert.deepEqual(await withTimeout(got, 'greeting event'), payload);
    // The raw frame names the channel and carries data as a JSON string (pusher-js parsed it).
    const raw = p.rec.find(named('greeting', name));
    assert.ok(raw, `frame on ${name}`);
  });

  test('string data is delivered as the same string', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('public-');
    const channel = await subscribe(p, name);
    await sdk.trigger(name, 'plain', 'just some text');
    const ev = await channel.rec.wait((e) => e.event === 'plain', 'plain event');
    assert.equal(ev.data, 'just some text');
  });

  test('a trigger to several channels reaches each of them', async () => {
    const sdk = serverSdk();
    const a = client();
    const b = client();
    const n1 = uid('multi-a-');
    const n2 = uid('multi-b-');
    const n3 = uid('multi-c-');
    await subscribe(a, n1);
    await subscribe(a, n2);
    await subscribe(b, n3);
    await sdk.trigger([n1, n2, n3], 'fanout', { k: 'v' });
    for (const [p, n] of [
      [a, n1],
      [a, n2],
      [b, n3],
    ]) {
      const ev = await p.rec.wait(named('fanout', n), `fanout on ${n}`);
      assert.deepEqual(ev.data, { k: 'v' });
    }
  });

  test('socket_id excludes that socket only', async () => {
    const sdk = serverSdk();
    const excluded = client();
    const other = client();
    const name = uid('exclude-');
    await subscribe(excluded, name);
    await subscribe(other, name);
    await sdk.trigger(name, 'not-for-you', { x: 1 }, { socket_id: excluded.connection.socket_id });
    const ev = await other.rec.wait(named('not-for-you', name), 'event on the other socket');
    assert.deepEqual(ev.data, { x: 1 });
    // Events on a channel arrive in order: once a later marker is in, the excluded one never will.
    await flushWithMarker(sdk, excluded, name);
    assert.equal(excluded.rec.find(named('not-for-you')), undefined, 'excluded socket got the event');
  });

  test('batch trigger delivers every event of the batch', async () => {
    const sdk = serverSdk();
    const p = client();
    const n1 = uid('batch-a-');
    const n2 = uid('batch-b-');
    await subscribe(p, n1);
    await subscribe(p, n2);
    const res = await sdk.triggerBatch([
      { channel: n1, name: 'b-one', data: { i: 1 } },
      { channel: n2, name: 'b-two', data: { i: 2 } },
      { channel: n1, name: 'b-three', data: 'three' },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual((await p.rec.wait(named('b-one', n1), 'b-one')).data, { i: 1 });
    assert.deepEqual((await p.rec.wait(named('b-two', n2), 'b-two')).data, { i: 2 });
    assert.equal((await p.rec.wait(named('b-three', n1), 'b-three')).data, 'three');
  });

  test('batch trigger honours socket_id per event', async () => {
    const sdk = serverSdk();
    const a = client();
    const b = client();
    const name = uid('batch-x-');
    await subscribe(a, name);
    await subscribe(b, name);
    await sdk.triggerBatch([
      { channel: name, name: 'skip-a', data: {}, socket_id: a.connection.socket_id },
    ]);
    await b.rec.wait(named('skip-a', name), 'skip-a on b');
    await flushWithMarker(sdk, a, name);
    assert.equal(a.rec.find(named('skip-a')), undefined, 'excluded socket got the batch event');
  });

  test('a 200-character channel name (the SDKs\' limit) works end to end', async () => {
    const sdk = serverSdk();
    const p = client();
    const base = uid('long-');
    const name = base + 'x'.repeat(200 - base.length);
    assert.equal(name.length, 200);
    await subscribe(p, name);
    await sdk.trigger(name, 'long-one', { ok: 1 });
    assert.deepEqual((await p.rec.wait(named('long-one', name), 'event on a 200-char channel')).data, { ok: 1 });
  });

  test('channel names with every allowed punctuation character work', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('punct_-=@,.;');
    await subscribe(p, name);
    await sdk.trigger(name, 'punct', { ok: 1 });
    await p.rec.wait(named('punct', name), 'event on a punctuated channel');
  });

  test('after unsubscribing no more events arrive and the channel is vacated', async () => {
    const sdk = serverSdk();
    const p = client();
    const gone = uid('unsub-');
    const kept = uid('kept-');
    await subscribe(p, gone);
    await subscribe(p, kept);
    p.unsubscribe(gone);
    await sleep(300);
    const info = await apiGet(sdk, `/channels/${gone}`);
    assert.equal(info.occupied, false, JSON.stringify(info));
    await sdk.trigger(gone, 'late', {});
    await flushWithMarker(sdk, p, kept);
    await sleep(100);
    assert.equal(p.rec.find(named('late')), undefined, 'event delivered after unsubscribe');
  });
});

describe('private channels', () => {
  test('a signed subscription succeeds and receives triggers', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('private-');
    const channel = await subscribe(p, name);
    assert.equal(channel.subscribed, true);
    await sdk.trigger(name, 'secret-news', { s: 'x' });
    assert.deepEqual((await p.rec.wait(named('secret-news', name), 'secret-news')).data, { s: 'x' });
  });

  test('a bad signature yields subscription_error and the connection stays up', async () => {
    const bad = client({ badChannelAuth: true });
    await connected(bad);
    const name = uid('private-');
    const channel = subscribeNoWait(bad, name);
    const err = await channel.rec.wait(
      (e) => e.event === 'pusher:subscription_error',
      'pusher:subscription_error',
    );
    assert.ok(
      err.data && [401, 403].includes(err.data.status),
      `subscription_error data ${JSON.stringify(err.data)} (want status 401)`,
    );
    assert.equal(err.data.status, 401, `status in ${JSON.stringify(err.data)}`);
    assert.equal(channel.subscribed, false);
    assert.equal(channel.rec.find((e) => e.event === 'pusher:subscription_succeeded'), undefined);
    await sleep(300);
    assert.equal(bad.connection.state, 'connected');
    // Still usable: a public subscription on the same connection works.
    await subscribe(bad, uid('public-after-error-'));
    assert.equal(bad.connection.state, 'connected');
  });

  test('an auth signed for another socket is refused', async () => {
    const sdk = serverSdk();
    const p = client();
    await connected(p);
    const name = uid('private-');
    const sock = rawSocket();
    const { socket_id } = await rawEstablished(sock);
    // Sign for the pusher-js socket, present it on the raw one.
    const auth = sdk.authorizeChannel(p.connection.socket_id, name);
    sock.sendJson({ event: 'pusher:subscribe', data: { channel: name, auth: auth.auth } });
    const err = await sock.rec.wait(named('pusher:subscription_error', name), 'subscription_error');
    assert.notEqual(socket_id, p.connection.socket_id);
    assert.equal(sock.rec.find(named('pusher_internal:subscription_succeeded', name)), undefined);
    const data = typeof err.data === 'string' ? JSON.parse(err.data) : err.data;
    assert.equal(data.status, 401, JSON.stringify(data));
  });
});

describe('subscription counting', () => {
  // The second app of run.sh has Pusher's subscription counting turned on.
  const key = process.env.PUSHI_COUNTING_APP_KEY;
  const count = (n) => (e) => e.event === 'pusher:subscription_count' && e.data.subscription_count === n;

  test('subscribers get pusher:subscription_count as the count changes', { skip: !key }, async () => {
    const name = uid('counted-');
    const a = client({ key });
    const ca = await subscribe(a, name);
    await ca.rec.wait(count(1), 'count 1 on the first subscriber');
    const b = client({ key });
    const cb = await subscribe(b, name);
    await ca.rec.wait(count(2), 'count 2 on the first subscriber');
    await cb.rec.wait(count(2), 'count 2 on the second subscriber');
    assert.equal(ca.subscriptionCount, 2);
    const seen = ca.rec.events.length;
    b.unsubscribe(name);
    // The count of 1 that comes after the 2 (the recorder also holds the first one).
    await ca.rec.wait(
      (e) => count(1)(e) && ca.rec.events.indexOf(e) >= seen,
      'count back to 1 after an unsubscribe',
    );
    assert.equal(ca.subscriptionCount, 1);
  });

  test('an app without it sends no count events', async () => {
    const name = uid('uncounted-');
    const a = client();
    const ca = await subscribe(a, name);
    await subscribe(client(), name);
    await sleep(1200);
    assert.equal(ca.rec.find((e) => e.event === 'pusher:subscription_count'), undefined);
  });
});
