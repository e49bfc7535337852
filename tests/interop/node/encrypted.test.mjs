// End-to-end encrypted channels: the npm SDK encrypts with the master key, the server relays the
// opaque payload, pusher-js (with tweetnacl) decrypts with the shared_secret from its authorizer.

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

describe('private-encrypted channels', () => {
  test('an encrypted trigger is decrypted by pusher-js', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('private-encrypted-');
    const channel = await subscribe(p, name);
    const payload = { secret: 'the eagle has landed', n: 7, unicode: 'ünïcødé' };
    const got = new Promise((resolve) => channel.bind('classified', resolve));
    await sdk.trigger(name, 'classified', payload);
    assert.deepEqual(await withTimeout(got, 'decrypted event'), payload);

    // On the wire it was ciphertext: the server relayed {nonce, ciphertext} untouched.
    const raw = p.rec.find(named('classified', name));
    assert.ok(raw, 'raw frame');
    assert.equal(typeof raw.data.nonce, 'string', JSON.stringify(raw.data));
    assert.equal(typeof raw.data.ciphertext, 'string', JSON.stringify(raw.data));
    assert.ok(!JSON.stringify(raw.data).includes('eagle'), 'plaintext visible on the wire');
  });

  test('an encrypted batch event is decrypted too', async () => {
    const sdk = serverSdk();
    const p = client();
    const name = uid('private-encrypted-');
    const channel = await subscribe(p, name);
    const got = new Promise((resolve) => channel.bind('batched', resolve));
    await sdk.triggerBatch([{ channel: name, name: 'batched', data: { via: 'batch' } }]);
    assert.deepEqual(await withTimeout(got, 'decrypted batch event'), { via: 'batch' });
  });

  test('a bad signature on an encrypted channel is refused', async () => {
    const p = client({ badChannelAuth: true });
    await connected(p);
    const ch = subscribeNoWait(p, uid('private-encrypted-'));
    const err = await ch.rec.wait((e) => e.event === 'pusher:subscription_error', 'subscription_error');
    assert.equal(err.data?.status, 401, JSON.stringify(err.data));
  });
});
