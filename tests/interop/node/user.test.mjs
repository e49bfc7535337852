// User sign-in (pusher-js 8 `signin()`), sendToUser and terminateUserConnections via the npm SDK.

import crypto from 'node:crypto';
import { afterEach, describe, test } from 'node:test';
import {
  assert,
  cfg,
  rawEstablished,
  rawSocket,
  client,
  closeAll,
  connected,
  named,
  serverSdk,
  sleep,
  uid,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

/** Signs a client in and waits until its #server-to-user channel is subscribed. */
async function signedIn(p, userId) {
  await connected(p);
  p.signin();
  const ok = await p.rec.wait(named('pusher:signin_success'), 'pusher:signin_success');
  const data = typeof ok.data === 'string' ? JSON.parse(ok.data) : ok.data;
  assert.equal(JSON.parse(data.user_data).id, userId, `signin_success data ${JSON.stringify(ok.data)}`);
  await p.rec.wait(
    named('pusher_internal:subscription_succeeded', `#server-to-user-${userId}`),
    'subscription to #server-to-user',
  );
  assert.equal(p.user.user_data?.id, userId);
  return p;
}

describe('user sign-in', () => {
  test('signin() with a custom user authentication handler succeeds', async () => {
    const id = uid('user-');
    const p = client({ user: { id, user_info: { name: 'Signed In' } } });
    await signedIn(p, id);
    assert.deepEqual(p.user.user_data, { id, user_info: { name: 'Signed In' } });
    assert.equal(p.connection.state, 'connected');
  });

  test('sendToUser reaches the signed-in client only', async () => {
    const sdk = serverSdk();
    const id = uid('user-');
    const otherId = uid('user-');
    const p = await signedIn(client({ user: { id } }), id);
    const other = await signedIn(client({ user: { id: otherId } }), otherId);
    const got = new Promise((resolve) => p.user.bind('direct-message', resolve));
    const res = await sdk.sendToUser(id, 'direct-message', { for: id, text: 'hello you' });
    assert.equal(res.status, 200);
    assert.deepEqual(await withTimeout(got, 'direct-message via pusher.user.bind'), { for: id, text: 'hello you' });
    // The other user gets a message of their own, and never the first one.
    await sdk.sendToUser(otherId, 'direct-message', { for: otherId });
    const mine = await other.rec.wait(named('direct-message'), 'other user\'s message');
    assert.deepEqual(mine.data, { for: otherId });
    assert.equal(other.rec.filter(named('direct-message')).length, 1);
  });

  test('sendToUser reaches every socket of the user', async () => {
    const sdk = serverSdk();
    const id = uid('user-');
    const a = await signedIn(client({ user: { id } }), id);
    const b = await signedIn(client({ user: { id } }), id);
    await sdk.sendToUser(id, 'everywhere', { n: 1 });
    await a.rec.wait(named('everywhere'), 'message on socket a');
    await b.rec.wait(named('everywhere'), 'message on socket b');
  });

  test('terminateUserConnections closes that user\'s sockets and no one else\'s', async () => {
    const sdk = serverSdk();
    const id = uid('user-');
    const otherId = uid('user-');
    const victim1 = await signedIn(client({ user: { id } }), id);
    const victim2 = await signedIn(client({ user: { id } }), id);
    const bystander = await signedIn(client({ user: { id: otherId } }), otherId);
    const unsigned = await connected(client());
    const t0 = Date.now();
    const res = await sdk.terminateUserConnections(id);
    assert.equal(res.status, 200);
    for (const v of [victim1, victim2]) {
      await v.states.wait(
        (e) => e.event === 'state_change' && e.previous === 'connected' && e.at >= t0,
        'the terminated socket to leave state connected',
      );
    }
    await sleep(300);
    assert.equal(bystander.connection.state, 'connected');
    assert.equal(unsigned.connection.state, 'connected');
    assert.ok(
      !bystander.states.find((e) => e.event === 'state_change' && e.at >= t0),
      `bystander changed state: ${bystander.states.describe()}`,
    );
  });

  test('watchlist: online and offline events for watched users', async () => {
    const watchedId = uid('watched-');
    const watcherId = uid('watcher-');
    const watcher = client({ user: { id: watcherId, watchlist: [watchedId, uid('never-')] } });
    const online = [];
    const offline = [];
    watcher.user.watchlist.bind('online', (ev) => online.push(...ev.user_ids));
    watcher.user.watchlist.bind('offline', (ev) => offline.push(...ev.user_ids));
    await signedIn(watcher, watcherId);
    assert.ok(!online.includes(watchedId), `watched user reported online too early: ${online}`);

    const watched = await signedIn(client({ user: { id: watchedId } }), watchedId);
    await watcher.rec.wait(
      (e) => e.event === 'pusher_internal:watchlist_events' && online.includes(watchedId),
      'watchlist online event for the watched user',
    );
    watched.disconnect();
    await watcher.rec.wait(
      (e) => e.event === 'pusher_internal:watchlist_events' && offline.includes(watchedId),
      'watchlist offline event for the watched user',
    );
  });

  test('another user\'s #server-to-user channel cannot be subscribed', async () => {
    const sdk = serverSdk();
    const victimId = uid('victim-');
    const victim = await signedIn(client({ user: { id: victimId } }), victimId);
    // Not signed in at all.
    const sock = rawSocket();
    await rawEstablished(sock);
    sock.sendJson({ event: 'pusher:subscribe', data: { channel: `#server-to-user-${victimId}` } });
    // Signed in, but as someone else.
    const eveId = uid('eve-');
    const eve = await signedIn(client({ user: { id: eveId } }), eveId);
    eve.send_event('pusher:subscribe', { channel: `#server-to-user-${victimId}` });
    await sleep(300);
    await sdk.sendToUser(victimId, 'private-note', { secret: 1 });
    await victim.rec.wait(named('private-note'), 'the note at its addressee');
    await sleep(200);
    assert.equal(sock.rec.find(named('private-note')), undefined, 'unsigned socket got another user\'s message');
    assert.equal(eve.rec.find(named('private-note')), undefined, 'another user got the message');
    assert.equal(
      sock.rec.find(named('pusher_internal:subscription_succeeded', `#server-to-user-${victimId}`)),
      undefined,
      'unsigned socket was subscribed to another user\'s channel',
    );
  });

  test('signing in again as a different user on the same socket is refused', async () => {
    const sock = rawSocket();
    const { socket_id } = await rawEstablished(sock);
    const sdk = serverSdk();
    const first = sdk.authenticateUser(socket_id, { id: 'first-user' });
    sock.sendJson({ event: 'pusher:signin', data: first });
    await sock.rec.wait(named('pusher:signin_success'), 'first signin_success');
    const second = sdk.authenticateUser(socket_id, { id: 'second-user' });
    sock.sendJson({ event: 'pusher:signin', data: second });
    await sleep(500);
    assert.equal(sock.rec.filter(named('pusher:signin_success')).length, 1, `second signin accepted: ${sock.rec.describe()}`);
  });

  test('user_data without an id is refused', async () => {
    // Sign a user_data lacking "id" by hand (the SDK refuses to): the server must not accept it.
    const sock = rawSocket();
    const { socket_id } = await rawEstablished(sock);
    const userData = JSON.stringify({ name: 'no id' });
    const sig = crypto.createHmac('sha256', cfg.secret).update(`${socket_id}::user::${userData}`).digest('hex');
    sock.sendJson({ event: 'pusher:signin', data: { auth: `${cfg.key}:${sig}`, user_data: userData } });
    await sock.rec.wait(
      (e) => e.event === 'pusher:error' || e.event === '(close)',
      'pusher:error or close for a user without id',
    );
    assert.equal(sock.rec.find(named('pusher:signin_success')), undefined);
  });

  test('a bad sign-in signature is refused', async () => {
    const sock = rawSocket();
    await rawEstablished(sock);
    const userData = JSON.stringify({ id: 'impostor' });
    sock.sendJson({ event: 'pusher:signin', data: { auth: `${cfg.key}:${'0'.repeat(64)}`, user_data: userData } });
    await sock.rec.wait(
      (e) => e.event === 'pusher:error' || e.event === '(close)',
      'pusher:error or close for a bad signin',
    );
    assert.equal(sock.rec.find(named('pusher:signin_success')), undefined);
  });
});
