// Connecting: the handshake pusher-js needs, ping/pong, both listeners, and unknown app keys.

import { afterEach, describe, test } from 'node:test';
import {
  assert,
  cfg,
  client,
  closeAll,
  connected,
  named,
  rawEstablished,
  rawSocket,
  serverSdk,
  sleep,
  subscribe,
  uid,
  apiGet,
  withTimeout,
} from './helpers.mjs';

afterEach(closeAll);

describe('connection', () => {
  test('pusher-js connects and gets a protocol-7 socket id', async () => {
    const p = client();
    await connected(p);
    assert.equal(p.connection.state, 'connected');
    assert.match(p.connection.socket_id, /^\d+\.\d+$/);
  });

  test('two clients get distinct socket ids', async () => {
    const a = await connected(client());
    const b = await connected(client());
    assert.notEqual(a.connection.socket_id, b.connection.socket_id);
  });

  test('raw handshake: connection_established carries a JSON-string data with activity_timeout', async () => {
    const sock = rawSocket();
    const data = await rawEstablished(sock);
    assert.match(data.socket_id, /^\d+\.\d+$/);
    assert.equal(typeof data.activity_timeout, 'number');
    assert.ok(data.activity_timeout > 0, `activity_timeout ${data.activity_timeout}`);
  });

  test('pusher:ping is answered with pusher:pong', async () => {
    const sock = rawSocket();
    await rawEstablished(sock);
    sock.sendJson({ event: 'pusher:ping', data: {} });
    await sock.rec.wait(named('pusher:pong'), 'pusher:pong');
  });

  test('WebSocket ping frames are answered with pong frames', async () => {
    const sock = rawSocket();
    await rawEstablished(sock);
    const pong = new Promise((resolve) => sock.once('pong', (payload) => resolve(payload.toString())));
    sock.ping('interop');
    assert.equal(await withTimeout(pong, 'pong frame'), 'interop');
  });

  test('the HTTP port also accepts WebSocket upgrades, and the WS port the HTTP API', async () => {
    const p = client({ port: cfg.httpPort });
    await connected(p);
    assert.match(p.connection.socket_id, /^\d+\.\d+$/);
    const channel = uid('both-ports-');
    await subscribe(p, channel);
    const viaWsPort = serverSdk({ port: String(cfg.wsPort) });
    const info = await apiGet(viaWsPort, `/channels/${channel}`, { info: 'subscription_count' });
    assert.equal(info.occupied, true, JSON.stringify(info));
  });

  test('unknown app key: pusher-js gets error 4001 and does not reconnect', async () => {
    const p = client({ key: 'no-such-app-key-000000' });
    const err = await p.states.wait((e) => e.event === 'error', 'an error event');
    // pusher-js 8 wraps handshake close errors: {type:'WebSocketError', error:{type:'PusherError', data:{code}}}
    const code = err.error?.error?.data?.code ?? err.error?.data?.code;
    assert.equal(code, 4001, `error event: ${JSON.stringify(err.error)}`);
    const errorAt = err.at;
    // Watch for a while: a refused connection must stay down, with no new attempt.
    await sleep(2500);
    const laterAttempts = p.states.filter(
      (e) => e.event === 'state_change' && e.current === 'connecting' && e.at > errorAt,
    );
    assert.equal(laterAttempts.length, 0, `reconnected after 4001: ${p.states.describe()}`);
    assert.ok(
      ['disconnected', 'failed'].includes(p.connection.state),
      `state after 4001 is ${p.connection.state}`,
    );
  });

  test('unknown app key: raw socket is closed with code 4001', async () => {
    const sock = rawSocket('no-such-app-key-000000');
    const { code } = await withTimeout(sock.closed, 'close');
    const err = sock.rec.find(named('pusher:error'));
    assert.ok(
      code === 4001 || err?.data?.code === 4001,
      `close code ${code}, messages: ${sock.rec.describe()}`,
    );
    assert.equal(code, 4001, `close code (messages: ${sock.rec.describe()})`);
  });

  test('missing protocol version is refused with a 4000-range code', async () => {
    const sock = rawSocket(cfg.key, { query: 'client=js' });
    const { code } = await withTimeout(sock.closed, 'close');
    const err = sock.rec.find(named('pusher:error'));
    const got = err?.data?.code ?? code;
    assert.equal(got, 4008, `close ${code}, messages: ${sock.rec.describe()}`);
  });
});
