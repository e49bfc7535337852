// Presence channels: members, member_added / member_removed, one user on several sockets, and
// the REST views of the same state.

import { afterEach, describe, test } from 'node:test';
import {
  assert,
  apiGet,
  client,
  closeAll,
  flushWithMarker,
  named,
  serverSdk,
  sleep,
  subscribe,
  uid,
  connected,
  subscribeNoWait,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

const memberIds = (channel) => Object.keys(channel.members.members).sort();

describe('presence channels', () => {
  test('two users join and leave: count, member_added, member_removed', async () => {
    const sdk = serverSdk();
    const name = uid('presence-');
    const alice = client({ user: { id: 'alice', user_info: { name: 'Alice' } } });
    const bob = client({ user: { id: 'bob', user_info: { name: 'Bob', tags: ['x'] } } });

    const a = await subscribe(alice, name);
    assert.equal(a.members.count, 1);
    assert.equal(a.members.me?.id, 'alice');
    assert.deepEqual(a.members.me?.info, { name: 'Alice' });

    const added = new Promise((resolve) => a.bind('pusher:member_added', resolve));
    const b = await subscribe(bob, name);
    assert.equal(b.members.count, 2);
    assert.deepEqual(memberIds(b), ['alice', 'bob']);
    assert.deepEqual(b.members.get('alice').info, { name: 'Alice' });
    assert.equal(b.members.me?.id, 'bob');

    const member = await withTimeout(added, 'pusher:member_added at alice');
    assert.equal(member.id, 'bob');
    assert.deepEqual(member.info, { name: 'Bob', tags: ['x'] });
    assert.equal(a.members.count, 2);
    // The joining socket is not told about itself.
    await flushWithMarker(sdk, bob, name);
    assert.equal(bob.rec.find(named('pusher_internal:member_added', name)), undefined);

    // REST agrees.
    const users = await apiGet(sdk, `/channels/${name}/users`);
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
    const info = await apiGet(sdk, `/channels/${name}`, { info: 'user_count' });
    assert.equal(info.occupied, true);
    assert.equal(info.user_count, 2, JSON.stringify(info));

    const removed = new Promise((resolve) => a.bind('pusher:member_removed', resolve));
    bob.disconnect();
    const gone = await withTimeout(removed, 'pusher:member_removed at alice');
    assert.equal(gone.id, 'bob');
    assert.equal(a.members.count, 1);
    assert.deepEqual(memberIds(a), ['alice']);
    const after = await apiGet(sdk, `/channels/${name}/users`);
    assert.deepEqual(after.users.map((u) => u.id), ['alice']);
  });

  test('unsubscribing (not disconnecting) also removes the member', async () => {
    const name = uid('presence-');
    const alice = client({ user: { id: 'alice' } });
    const bob = client({ user: { id: 'bob' } });
    const a = await subscribe(alice, name);
    await subscribe(bob, name);
    await alice.rec.wait(named('pusher_internal:member_added', name), 'member_added bob');
    bob.unsubscribe(name);
    const ev = await alice.rec.wait(named('pusher_internal:member_removed', name), 'member_removed bob');
    assert.equal(ev.data.user_id, 'bob');
    assert.equal(a.members.count, 1);
  });

  test('one user on two sockets counts once; removed only when the last socket leaves', async () => {
    const sdk = serverSdk();
    const name = uid('presence-');
    const observer = client({ user: { id: 'olga', user_info: { role: 'observer' } } });
    const first = client({ user: { id: 'sam', user_info: { device: 'one' } } });
    const second = client({ user: { id: 'sam', user_info: { device: 'one' } } });

    const o = await subscribe(observer, name);
    await subscribe(first, name);
    await observer.rec.wait(named('pusher_internal:member_added', name), 'member_added sam');
    assert.equal(o.members.count, 2);

    const s2 = await subscribe(second, name);
    assert.equal(s2.members.count, 2, `second socket sees ${JSON.stringify(s2.members.members)}`);
    assert.deepEqual(memberIds(s2), ['olga', 'sam']);

    // No second member_added for the same user.
    await sleep(200);
    await flushWithMarker(sdk, observer, name);
    const adds = observer.rec.filter(named('pusher_internal:member_added', name));
    assert.equal(adds.length, 1, `member_added frames: ${JSON.stringify(adds)}`);
    assert.equal(o.members.count, 2);

    const users = await apiGet(sdk, `/channels/${name}/users`);
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['olga', 'sam']);
    const info = await apiGet(sdk, `/channels/${name}`, { info: 'user_count' });
    assert.equal(info.user_count, 2, JSON.stringify(info));

    // The first socket leaves: sam is still there through the second.
    first.disconnect();
    await sleep(700);
    await flushWithMarker(sdk, observer, name);
    assert.equal(
      observer.rec.find(named('pusher_internal:member_removed', name)),
      undefined,
      'member_removed sent while the user still had a socket',
    );
    assert.equal(o.members.count, 2);
    const still = await apiGet(sdk, `/channels/${name}/users`);
    assert.deepEqual(still.users.map((u) => u.id).sort(), ['olga', 'sam']);

    // The last socket leaves: now sam is removed.
    second.disconnect();
    const ev = await observer.rec.wait(named('pusher_internal:member_removed', name), 'member_removed sam');
    assert.equal(ev.data.user_id, 'sam');
    assert.equal(o.members.count, 1);
    const last = await apiGet(sdk, `/channels/${name}`, { info: 'user_count' });
    assert.equal(last.user_count, 1, JSON.stringify(last));
  });

  test('numeric user ids in channel_data come back as strings', async () => {
    const name = uid('presence-');
    const p = client({ user: { id: 12345, user_info: { n: 1 } } });
    const ch = await subscribe(p, name);
    const raw = p.rec.find(named('pusher_internal:subscription_succeeded', name));
    assert.ok(raw, 'subscription_succeeded frame');
    assert.deepEqual(raw.data.presence.ids, ['12345']);
    assert.equal(raw.data.presence.count, 1);
    assert.deepEqual(raw.data.presence.hash, { 12345: { n: 1 } });
    assert.equal(ch.members.count, 1);
  });

  test('presence subscription with a bad signature is refused', async () => {
    const name = uid('presence-');
    const p = client({ user: { id: 'mallory' }, badChannelAuth: true });
    await connected(p);
    const ch = subscribeNoWait(p, name);
    const err = await ch.rec.wait((e) => e.event === 'pusher:subscription_error', 'subscription_error');
    assert.equal(err.data?.status, 401, JSON.stringify(err.data));
    assert.equal(p.connection.state, 'connected');
  });
});
