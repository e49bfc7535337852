// Shared plumbing for the pusher-js / npm `pusher` interop suites.
//
// The server under test is started by ../run.sh, which passes its address and the app's
// credentials through PUSHI_* environment variables.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import nacl from 'tweetnacl';
import WebSocket from 'ws';

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    throw new Error(`${name} is not set: run the suites through tests/interop/run.sh`);
  }
  return value;
}

export const cfg = {
  host: env('PUSHI_HOST', '127.0.0.1'),
  httpPort: Number(env('PUSHI_HTTP_PORT')),
  wsPort: Number(env('PUSHI_WS_PORT')),
  appId: env('PUSHI_APP_ID'),
  key: env('PUSHI_APP_KEY'),
  secret: env('PUSHI_APP_SECRET'),
  // PUSHI_TLS=1: the server speaks only https/wss, with a certificate from a throwaway CA that
  // run.sh made and handed to Node through NODE_EXTRA_CA_CERTS.
  tls: process.env.PUSHI_TLS === '1',
};
cfg.httpBase = `${cfg.tls ? 'https' : 'http'}://${cfg.host}:${cfg.httpPort}`;
cfg.wsScheme = cfg.tls ? 'wss' : 'ws';

// End-to-end encryption key: only the SDKs know it, the server never does.
export const MASTER_KEY_BASE64 = Buffer.alloc(32, 7).toString('base64');

export const WAIT_MS = 5000;

if (process.env.PUSHI_INTEROP_DEBUG) {
  Pusher.logToConsole = true;
}

/** A unique channel-name suffix, so tests never share channels. */
export function uid(prefix = '') {
  return `${prefix}${Date.now().toString(36)}${crypto.randomBytes(4).toString('hex')}`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The npm `pusher` server SDK pointed at the server under test. */
export function serverSdk(overrides = {}) {
  return new PusherServer({
    appId: cfg.appId,
    key: cfg.key,
    secret: cfg.secret,
    host: cfg.host,
    port: String(cfg.httpPort),
    useTLS: cfg.tls,
    encryptionMasterKeyBase64: MASTER_KEY_BASE64,
    timeout: WAIT_MS,
    ...overrides,
  });
}

/** Resolves `promise`, or rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Records events from an emitter, so a test can wait for one that already arrived (messages can
 * come in the same tick as the subscription reply) or that is still to come.
 */
export class Recorder {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = new Set();
  }

  push(event) {
    this.events.push(event);
    for (const waiter of [...this.waiters]) {
      if (waiter.pred(event)) {
        this.waiters.delete(waiter);
        waiter.resolve(event);
      }
    }
  }

  find(pred) {
    return this.events.find(pred);
  }

  filter(pred) {
    return this.events.filter(pred);
  }

  /** Waits for the first event (past or future) matching `pred`. */
  wait(pred, what, ms = WAIT_MS) {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    let waiter;
    const promise = new Promise((resolve) => {
      waiter = { pred, resolve };
      this.waiters.add(waiter);
    });
    return withTimeout(promise, `${what} on ${this.label}`, ms).catch((err) => {
      this.waiters.delete(waiter);
      err.message += `; it got: ${this.describe()}`;
      throw err;
    });
  }

  describe() {
    const tail = this.events.slice(-12).map((e) => JSON.stringify(e));
    return tail.length ? tail.join(' | ') : '(nothing)';
  }
}

/** Predicate: an event called `name`, optionally on `channel`. */
export const named = (name, channel) => (e) =>
  e.event === name && (channel === undefined || e.channel === channel);

const clients = new Set();
const sockets = new Set();

/**
 * A pusher-js client (node build) on the server under test. Channel authorization and user
 * authentication are signed locally with the npm server SDK (customHandler), as a backend would.
 *
 * options.user: {id, user_info?, watchlist?} used for presence channel_data and for signin.
 * options.badChannelAuth: sign channels with a wrong secret.
 * options.key: app key to connect with (default: the test app's).
 * options.port: WebSocket port (default: PUSHI_WS_PORT).
 */
export function client(options = {}) {
  const sdk = serverSdk();
  const badSdk = serverSdk({ secret: 'not-the-secret-0000000' });
  const user = options.user;
  const p = new Pusher(options.key ?? cfg.key, {
    cluster: 'mt1',
    wsHost: cfg.host,
    wsPort: options.port ?? cfg.wsPort,
    wssPort: options.port ?? cfg.wsPort,
    forceTLS: cfg.tls,
    enabledTransports: ['ws'],
    enableStats: false,
    nacl,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const presenceData = channelName.startsWith('presence-')
            ? { user_id: user?.id ?? 'anonymous', user_info: user?.user_info }
            : undefined;
          const signer = options.badChannelAuth ? badSdk : sdk;
          callback(null, signer.authorizeChannel(socketId, channelName, presenceData));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          callback(null, sdk.authenticateUser(socketId, user ?? { id: 'anonymous' }));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  });
  clients.add(p);

  // Every decoded protocol message, as pusher-js saw it: {event, channel, data, user_id}.
  p.rec = new Recorder(`client(${user?.id ?? 'anon'})`);
  p.connection.bind('message', (ev) => p.rec.push(ev));
  // Connection state changes and errors, in order.
  p.states = new Recorder(`states(${user?.id ?? 'anon'})`);
  p.connection.bind('state_change', ({ previous, current }) =>
    p.states.push({ event: 'state_change', previous, current, at: Date.now() }),
  );
  p.connection.bind('error', (err) => p.states.push({ event: 'error', error: err, at: Date.now() }));
  return p;
}

/** Waits until the client is connected. */
export async function connected(p) {
  if (p.connection.state === 'connected') return p;
  await p.states.wait(
    (e) => e.event === 'state_change' && e.current === 'connected',
    'state connected',
  );
  return p;
}

/** Subscribes and waits for pusher:subscription_succeeded; rejects on subscription_error. */
export async function subscribe(p, name) {
  await connected(p);
  const channel = p.subscribe(name);
  // Record everything the channel emits from the start (cached events can follow at once).
  channel.rec = new Recorder(`channel ${name}`);
  channel.bind_global((event, data) => channel.rec.push({ event, data }));
  const done = await channel.rec.wait(
    (e) => e.event === 'pusher:subscription_succeeded' || e.event === 'pusher:subscription_error',
    `subscription to ${name}`,
  );
  if (done.event === 'pusher:subscription_error') {
    throw new Error(`subscription to ${name} failed: ${JSON.stringify(done.data)}`);
  }
  return channel;
}

/** Subscribes a channel and returns it at once with its recorder (no wait). */
export function subscribeNoWait(p, name) {
  const channel = p.subscribe(name);
  channel.rec = new Recorder(`channel ${name}`);
  channel.bind_global((event, data) => channel.rec.push({ event, data }));
  return channel;
}

/** A raw WebSocket (ws) to the server; messages are parsed into `sock.rec`. */
export function rawSocket(key = cfg.key, { port = cfg.wsPort, query = 'protocol=7&client=js&version=8.6.0&flash=false' } = {}) {
  const url = `${cfg.wsScheme}://${cfg.host}:${port}/app/${key}?${query}`;
  const sock = new WebSocket(url);
  sockets.add(sock);
  sock.rec = new Recorder(`raw ${url}`);
  sock.on('message', (buf) => {
    let msg;
    try {
      msg = JSON.parse(buf.toString());
    } catch {
      msg = { event: '(unparsable)', raw: buf.toString() };
    }
    sock.rec.push(msg);
  });
  sock.closed = new Promise((resolve) => {
    sock.on('close', (code, reason) => {
      sock.rec.push({ event: '(close)', code, reason: reason.toString() });
      resolve({ code, reason: reason.toString() });
    });
  });
  sock.on('error', (err) => sock.rec.push({ event: '(error)', message: err.message }));
  sock.sendJson = (obj) => sock.send(JSON.stringify(obj));
  return sock;
}

/** Waits for the raw socket's pusher:connection_established and returns its parsed data. */
export async function rawEstablished(sock) {
  const msg = await sock.rec.wait(named('pusher:connection_established'), 'connection_established');
  assert.equal(typeof msg.data, 'string', 'connection_established data must be a JSON string');
  return JSON.parse(msg.data);
}

/** Disconnects every client and socket made so far (call from afterEach/after). */
export async function closeAll() {
  for (const p of clients) {
    try {
      p.disconnect();
    } catch {}
  }
  clients.clear();
  for (const s of sockets) {
    try {
      s.terminate();
    } catch {}
  }
  sockets.clear();
  // Give the server a moment to see the closes, so presence/occupancy settles between tests.
  await sleep(50);
}

/**
 * Proves a negative on an ordered stream: after triggering `marker` on `channel` via REST and
 * seeing it arrive at `p`, any earlier event would have arrived too.
 */
export async function flushWithMarker(sdk, p, channel) {
  const marker = uid('marker-');
  await sdk.trigger(channel, 'marker', { marker });
  await p.rec.wait(
    (e) => e.event === 'marker' && e.channel === channel && e.data?.marker === marker,
    `marker on ${channel}`,
  );
}

/** Expects `promise` to reject with a RequestError carrying HTTP `status`. */
export async function rejectsWithStatus(promise, status, what) {
  let err;
  try {
    const res = await promise;
    const body = res && typeof res.text === 'function' ? await res.text() : res;
    assert.fail(`${what}: expected HTTP ${status}, got success (${res?.status}): ${body}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.status, status, `${what}: expected HTTP ${status}, got ${err.status} (${err.message}) body=${err.body}`);
  return err;
}

/** GET on the HTTP API through the server SDK, returning parsed JSON. */
export async function apiGet(sdk, path, params) {
  const res = await sdk.get({ path, params });
  return res.json();
}

export { Pusher, PusherServer, nacl, WebSocket, assert };
