// The HTTP API through the npm `pusher` SDK: channel queries, trigger info, and error statuses.

import crypto from 'node:crypto';
import { afterEach, describe, test } from 'node:test';
import {
  assert,
  apiGet,
  cfg,
  client,
  closeAll,
  flushWithMarker,
  named,
  rejectsWithStatus,
  serverSdk,
  sleep,
  subscribe,
  uid,
} from './helpers.mjs';

afterEach(closeAll);

/** A hand-signed HTTP API request (to control what the SDK would not let us send). */
async function signedFetch(method, path, { body, timestamp, secret = cfg.secret, params = {} } = {}) {
  const query = {
    auth_key: cfg.key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...params,
  };
  if (body !== undefined) query.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  const qs = Object.keys(query)
    .sort()
    .map((k) => `${k}=${query[k]}`)
    .join('&');
  const sig = crypto.createHmac('sha256', secret).update(`${method}\n${path}\n${qs}`).digest('hex');
  const url = `${cfg.httpBase}${path}?${qs}&auth_signature=${sig}`;
  return fetch(url, {
    method,
    body,
    headers: body !== undefined ? { 'content-type': 'application/json' } : {},
  });
}

describe('HTTP API queries', () => {
  test('GET /channels with filter_by_prefix lists exactly the occupied matching channels', async () => {
    const sdk = serverSdk();
    const prefix = uid('pfx') + '-';
    const p = client();
    const q = client();
    await subscribe(p, `${prefix}one`);
    await subscribe(q, `${prefix}two`);
    await subscribe(q, `${prefix}one`);
    await subscribe(p, uid('unrelated-'));
    const body = await apiGet(sdk, '/channels', { filter_by_prefix: prefix });
    assert.deepEqual(Object.keys(body.channels).sort(), [`${prefix}one`, `${prefix}two`]);

    // An empty channel is not listed.
    q.unsubscribe(`${prefix}two`);
    await sleep(300);
    const after = await apiGet(sdk, '/channels', { filter_by_prefix: prefix });
    assert.deepEqual(Object.keys(after.channels), [`${prefix}one`]);
  });

  test('GET /channels?info=user_count on presence channels', async () => {
    const sdk = serverSdk();
    const base = uid('presence-lst');
    const a = client({ user: { id: 'u1' } });
    const b = client({ user: { id: 'u2' } });
    const c = client({ user: { id: 'u2' } });
    await subscribe(a, `${base}-x`);
    await subscribe(b, `${base}-x`);
    await subscribe(c, `${base}-x`);
    await subscribe(a, `${base}-y`);
    const body = await apiGet(sdk, '/channels', { filter_by_prefix: base, info: 'user_count' });
    assert.deepEqual(body.channels, {
      [`${base}-x`]: { user_count: 2 },
      [`${base}-y`]: { user_count: 1 },
    });
  });

  test('GET /channels?info=user_count without a presence- prefix is a 400', async () => {
    const sdk = serverSdk();
    await rejectsWithStatus(apiGet(sdk, '/channels', { info: 'user_count' }), 400, 'user_count on all channels');
  });

  test('GET /channels/{ch}: occupied and subscription_count', async () => {
    const sdk = serverSdk();
    const name = uid('info-');
    const a = client();
    const b = client();
    await subscribe(a, name);
    await subscribe(b, name);
    const info = await apiGet(sdk, `/channels/${name}`, { info: 'subscription_count' });
    assert.equal(info.occupied, true, JSON.stringify(info));
    assert.equal(info.subscription_count, 2, JSON.stringify(info));
    const empty = await apiGet(sdk, `/channels/${uid('empty-')}`);
    assert.equal(empty.occupied, false, JSON.stringify(empty));
  });

  test('GET /channels/{presence}: user_count and subscription_count', async () => {
    const sdk = serverSdk();
    const name = uid('presence-info-');
    await subscribe(client({ user: { id: 'p1' } }), name);
    await subscribe(client({ user: { id: 'p1' } }), name);
    await subscribe(client({ user: { id: 'p2' } }), name);
    const info = await apiGet(sdk, `/channels/${name}`, { info: 'user_count,subscription_count' });
    assert.equal(info.occupied, true);
    assert.equal(info.user_count, 2, JSON.stringify(info));
    assert.equal(info.subscription_count, 3, JSON.stringify(info));
  });

  test('GET /channels/{ch}/users lists presence members and is 400 on other channels', async () => {
    const sdk = serverSdk();
    const name = uid('presence-users-');
    await subscribe(client({ user: { id: 'zed' } }), name);
    await subscribe(client({ user: { id: 'amy' } }), name);
    const users = await apiGet(sdk, `/channels/${name}/users`);
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['amy', 'zed']);
    const pub = uid('public-users-');
    await subscribe(client(), pub);
    await rejectsWithStatus(apiGet(sdk, `/channels/${pub}/users`), 400, 'users of a public channel');
  });

  test('trigger with info returns subscription_count per channel', async () => {
    const sdk = serverSdk();
    const name = uid('trig-info-');
    const p = client();
    await subscribe(p, name);
    await subscribe(client(), name);
    const res = await sdk.trigger(name, 'counted', {}, { info: 'subscription_count' });
    const body = await res.json();
    assert.equal(body.channels?.[name]?.subscription_count, 2, JSON.stringify(body));
    await p.rec.wait(named('counted', name), 'counted event');
  });

  test('trigger with info=user_count on a presence channel', async () => {
    const sdk = serverSdk();
    const name = uid('presence-trig-');
    await subscribe(client({ user: { id: 'k1' } }), name);
    await subscribe(client({ user: { id: 'k2' } }), name);
    const res = await sdk.trigger(name, 'counted', {}, { info: 'user_count,subscription_count' });
    const body = await res.json();
    assert.deepEqual(body.channels?.[name], { user_count: 2, subscription_count: 2 }, JSON.stringify(body));
  });

  test('batch trigger with info returns one entry per event', async () => {
    const sdk = serverSdk();
    const a = uid('batch-info-a-');
    const b = uid('batch-info-b-');
    await subscribe(client(), a);
    const res = await sdk.triggerBatch([
      { channel: a, name: 'e', data: {}, info: 'subscription_count' },
      { channel: b, name: 'e', data: {}, info: 'subscription_count' },
    ]);
    const body = await res.json();
    assert.ok(Array.isArray(body.batch), JSON.stringify(body));
    assert.equal(body.batch.length, 2, JSON.stringify(body));
    assert.equal(body.batch[0].subscription_count, 1, JSON.stringify(body));
    assert.equal(body.batch[1].subscription_count ?? 0, 0, JSON.stringify(body));
  });

  test('POST /events accepts a single "channel" instead of "channels"', async () => {
    const name = uid('single-');
    const p = client();
    await subscribe(p, name);
    const body = JSON.stringify({ name: 'single', channel: name, data: '{"one":1}' });
    const res = await signedFetch('POST', `/apps/${cfg.appId}/events`, { body });
    assert.equal(res.status, 200, await res.text());
    assert.deepEqual((await p.rec.wait(named('single', name), 'single-channel trigger')).data, { one: 1 });
  });

  test('a payload just under 10 KB is accepted and delivered', async () => {
    const sdk = serverSdk();
    const name = uid('big-ok-');
    const p = client();
    await subscribe(p, name);
    const data = 'x'.repeat(10_000);
    await sdk.trigger(name, 'big', data);
    const ev = await p.rec.wait(named('big', name), 'big event');
    assert.equal(ev.data.length, 10_000);
  });
});

describe('HTTP API errors', () => {
  test('wrong secret is a 401', async () => {
    const sdk = serverSdk({ secret: 'wrong-secret-wrong-secret' });
    await rejectsWithStatus(sdk.trigger(uid('x-'), 'e', {}), 401, 'trigger with a wrong secret');
    await rejectsWithStatus(sdk.get({ path: '/channels' }), 401, 'GET /channels with a wrong secret');
  });

  test('wrong key is a 401', async () => {
    const sdk = serverSdk({ key: 'not-the-key-0000000000' });
    await rejectsWithStatus(sdk.trigger(uid('x-'), 'e', {}), 401, 'trigger with a wrong key');
  });

  test('a stale auth_timestamp is a 401', async () => {
    const body = JSON.stringify({ name: 'e', channels: [uid('stale-')], data: '{}' });
    const res = await signedFetch('POST', `/apps/${cfg.appId}/events`, {
      body,
      timestamp: Math.floor(Date.now() / 1000) - 3600,
    });
    assert.equal(res.status, 401, await res.text());
    // The same request signed now goes through (the signer itself is right).
    const ok = await signedFetch('POST', `/apps/${cfg.appId}/events`, { body });
    assert.equal(ok.status, 200, await ok.text());
  });

  test('a body that does not match body_md5 is a 401', async () => {
    const body = JSON.stringify({ name: 'e', channels: [uid('md5-')], data: '{}' });
    const query = new URLSearchParams({
      auth_key: cfg.key,
      auth_timestamp: String(Math.floor(Date.now() / 1000)),
      auth_version: '1.0',
      body_md5: crypto.createHash('md5').update(body + ' ').digest('hex'),
    });
    const qs = [...query.keys()].sort().map((k) => `${k}=${query.get(k)}`).join('&');
    const path = `/apps/${cfg.appId}/events`;
    const sig = crypto.createHmac('sha256', cfg.secret).update(`POST\n${path}\n${qs}`).digest('hex');
    const res = await fetch(`${cfg.httpBase}${path}?${qs}&auth_signature=${sig}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 401, await res.text());
  });

  test('payload over 10 KB is a 413', async () => {
    const sdk = serverSdk();
    await rejectsWithStatus(
      sdk.trigger(uid('big-'), 'too-big', 'x'.repeat(10 * 1024 + 100)),
      413,
      'trigger with 10.1 KB of data',
    );
    await rejectsWithStatus(
      sdk.triggerBatch([{ channel: uid('big-'), name: 'too-big', data: 'y'.repeat(20 * 1024) }]),
      413,
      'batch with 20 KB of data',
    );
  });

  test('a batch whose second event has an invalid channel name is a 400 and publishes nothing', async () => {
    const sdk = serverSdk();
    const name = uid('batch-bad-');
    const p = client();
    await subscribe(p, name);
    await rejectsWithStatus(
      sdk.triggerBatch([
        { channel: name, name: 'first', data: { n: 1 } },
        { channel: 'not a channel!', name: 'second', data: { n: 2 } },
      ]),
      400,
      'batch with an invalid second channel',
    );
    // Everything sent before the marker has arrived by the time it does.
    await flushWithMarker(sdk, p, name);
    assert.equal(p.rec.events.filter(named('first', name)).length, 0, 'the first event was published');
  });

  test('unknown app id is a 404', async () => {
    const sdk = serverSdk({ appId: '99999' });
    await rejectsWithStatus(sdk.trigger(uid('x-'), 'e', {}), 404, 'trigger to an unknown app id');
    await rejectsWithStatus(sdk.get({ path: '/channels' }), 404, 'channels of an unknown app id');
  });

  test('a batch of more than 10 events is a 400', async () => {
    const sdk = serverSdk();
    const name = uid('batch-over-');
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: name, name: 'e', data: { i } }));
    await rejectsWithStatus(sdk.triggerBatch(batch), 400, 'batch of 11');
  });
});
