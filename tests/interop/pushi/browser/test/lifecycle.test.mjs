// pushi.js in Chromium: the instance's life cycle and its less common public methods —
// init/config (per-key cache and clones), open/close/reopen/retry, reconfig, isValid,
// invalidate, ensureChannel, send/sendEvent, bind/unbind, subscribe with `force`.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { sleep, waitUntil } from "../harness/browser.mjs";
import { WS, newApp, uniq } from "../harness/rest.mjs";
import { assertNoPageErrors, useBrowser } from "../harness/suite.mjs";

const env = useBrowser();
let rest;
let app;
let rest2;

before(async () => {
  rest = await newApp("js-life");
  app = rest.app;
  // The original Pushi's client events on public channels, stored by default.
  assert.ok(await rest.updateApp({ public_client_events: true, persist_client_events: true }));
  rest2 = await newApp("js-life-2");
});

async function connected(label, options = {}) {
  const tab = await env.browser.tab(label);
  await tab.connect(app.key, { baseUrl: WS, ...options });
  return tab;
}

test("init: options are required; Observable and Channel are exported as globals", async () => {
  const tab = await env.browser.tab("globals");
  const got = await tab.eval((key) => {
    let withoutOptions = null;
    try {
      new Pushi(key);
    } catch (e) {
      withoutOptions = e.name;
    }
    const o = new Observable();
    const seen = [];
    const f = (...a) => seen.push(a);
    o.bind("x", f);
    o.trigger("x", 1);
    o.unbind("x", f);
    o.trigger("x", 2);
    return { withoutOptions, seen, channel: typeof Channel, version: Pushi.VERSION };
  }, app.key);
  // the original's documented quirk: `new Pushi(key)` reads options.timeout of undefined
  assert.equal(got.withoutOptions, "TypeError");
  assert.deepStrictEqual(got.seen, [["x", 1]]);
  assert.equal(got.channel, "function");
  assert.equal(got.version, "0.6.10");
  await tab.close();
});

test("init with a callback: called when the socket opens, then `connect`", async () => {
  const tab = await env.browser.tab("init-callback");
  const order = await tab.eval(
    ([key, ws]) =>
      new Promise((resolve) => {
        const order = [];
        const p = Object.create(Pushi.prototype);
        p.init(key, { baseUrl: ws }, () => order.push(["callback", p.state]));
        // init resets the listeners, and connects asynchronously: bind right after it
        p.bind("connect", () => {
          order.push(["connect", p.state, typeof p.socketId]);
          resolve(order);
        });
        window.pushi = p;
      }),
    [app.key, WS],
  );
  assert.deepStrictEqual(order, [
    ["callback", "disconnected"],
    ["connect", "connected", "string"],
  ]);
  await tab.close();
});

test("a second Pushi for the same key is a clone: shared socket, own channels, immediate state", async () => {
  const tab = await connected("clone");
  const name = uniq("shared");
  const own = uniq("clone-only");
  await tab.eval(async (n) => {
    window.base = pushi.subscribe(n);
    await rec.once(window.base, "subscribe");
  }, name);
  const got = await tab.eval(
    async ([key, ws, n, o]) => {
      window.clone = new Pushi(key, { baseUrl: ws });
      const sameChannel = clone.subscribe(n); // base has it: no new frame, subscribe replayed
      const [, data] = await rec.once(sameChannel, "subscribe");
      window.cloneOwn = clone.subscribe(o);
      await rec.once(cloneOwn, "subscribe");
      rec.collect(pushi, "base", "news");
      rec.collect(clone, "clone", "news");
      return {
        cloned: clone._cloned,
        sharesSocket: clone.socket === pushi.socket,
        sameSocketId: clone.socketId === pushi.socketId,
        state: clone.state,
        sameChannelObject: sameChannel === base,
        data,
        baseHasOwn: o in pushi.channels,
      };
    },
    [app.key, WS, name, own],
  );
  assert.deepStrictEqual(got, {
    cloned: true,
    sharesSocket: true,
    sameSocketId: true,
    state: "connected",
    sameChannelObject: true,
    data: { name, members: {}, alias: [], events: [] },
    baseHasOwn: false,
  });
  assert.equal(tab.sockets.length, 1);
  const subscribes = tab.sent.filter((f) => f.event === "pusher:subscribe").map((f) => f.data.channel);
  assert.deepStrictEqual(subscribes, [name, own], "the clone re-used the base's subscription");
  // a frame on the clone's own channel reaches the clone, not the base
  await rest.trigger(own, "for the clone", "news");
  const [seen] = await tab.waitLog("clone");
  assert.deepStrictEqual(seen.slice(0, 3), ["news", "for the clone", own]);
  await sleep(200);
  assert.deepStrictEqual(await tab.log("base"), []);
  assertNoPageErrors(tab);
  await tab.close();
});

test("open() while connected does nothing; close() disconnects and the instance reconnects after `timeout`", async () => {
  const tab = await connected("close", { timeout: 400 });
  const name = uniq("before-close");
  await tab.eval(async (n) => {
    window.c = pushi.subscribe(n);
    await rec.once(c, "subscribe");
    window.clone = new Pushi(pushi.appKey, { baseUrl: pushi.baseUrl });
    rec.collect(pushi, "life", "connect", "disconnect");
    rec.collect(clone, "clone-life", "connect", "disconnect");
  }, name);
  assert.equal(await tab.eval(() => pushi.open() === undefined && pushi.state), "connected");
  assert.equal(tab.sockets.length, 1, "open() while connected opens no socket");
  const firstId = await tab.eval(() => pushi.socketId);

  const afterClose = await tab.eval(
    () =>
      new Promise((resolve) =>
        pushi.close(() =>
          resolve({ state: pushi.state, socketId: pushi.socketId, channels: Object.keys(pushi.channels) }),
        ),
      ),
  );
  assert.deepStrictEqual(afterClose, { state: "disconnected", socketId: null, channels: [] });
  // the original's quirk: even an explicit close() reconnects after `timeout` ms
  const life = await tab.waitLog("life", 2, 5000);
  assert.deepStrictEqual(life.map((l) => l[0]), ["disconnect", "connect"]);
  const now = await tab.eval(() => ({
    id: pushi.socketId,
    state: pushi.state,
    channels: Object.keys(pushi.channels),
    cloneId: clone.socketId,
  }));
  assert.equal(now.state, "connected");
  assert.notEqual(now.id, firstId);
  assert.deepStrictEqual(now.channels, [], "channels are not re-subscribed");
  assert.equal(now.cloneId, now.id, "the clone follows the base onto the new socket");
  assert.deepStrictEqual((await tab.log("clone-life")).map((l) => l[0]), ["disconnect", "connect"]);
  assert.equal(tab.sockets.length, 2);
  assert.equal(tab.sockets[0].closed, true);
  assertNoPageErrors(tab);
  await tab.close();
});

test("close() then open(callback) by hand: the callback fires when the new socket opens", async () => {
  const tab = await connected("open", { timeout: 60000 });
  const got = await tab.eval(async () => {
    await new Promise((resolve) => pushi.close(resolve));
    // close() while disconnected is a no-op: its callback is never called
    window.lateClose = false;
    pushi.close(() => (window.lateClose = true));
    const opened = await rec.callback((cb) => pushi.open(cb));
    await rec.once(pushi, "connect");
    return { opened, state: pushi.state, lateClose: window.lateClose };
  });
  assert.deepStrictEqual(got, { opened: [], state: "connected", lateClose: false });
  assert.equal(tab.sockets.length, 2);
  await tab.close();
});

test("reopen(callback): closes, opens a new socket at once, subscriptions start afresh", async () => {
  const tab = await connected("reopen", { timeout: 60000 });
  const name = uniq("again");
  const got = await tab.eval(async (n) => {
    const first = pushi.socketId;
    const disconnected = rec.once(pushi, "disconnect");
    const opened = rec.callback((cb) => pushi.reopen(cb));
    await disconnected;
    await opened;
    await rec.once(pushi, "connect");
    const c = pushi.subscribe(n);
    const [, data] = await rec.once(c, "subscribe");
    return { changed: first !== pushi.socketId, data };
  }, name);
  assert.deepStrictEqual(got, { changed: true, data: { name, members: {}, alias: [], events: [] } });
  assert.equal(tab.sockets.length, 2);
  assertNoPageErrors(tab);
  await tab.close();
});

test("reconfig(appKey, options, callback): moves the instance to another app; isValid follows", async () => {
  const tab = await connected("reconfig", { timeout: 60000 });
  const name = uniq("second-app");
  const got = await tab.eval(
    async ([key1, key2, ws, n]) => {
      const before = [pushi.isValid(key1, ws), pushi.isValid(key2, ws), pushi.isValid(key1, ws + "x/")];
      const opened = rec.callback((cb) => pushi.reconfig(key2, { baseUrl: ws, timeout: 60000 }, cb));
      await opened;
      await rec.once(pushi, "connect");
      const after = [pushi.isValid(key1, ws), pushi.isValid(key2, ws), pushi.url === ws + key2];
      // the per-key cache now holds the instance under the new key only
      const sameKey = new Pushi(key2, { baseUrl: ws });
      const oldKey = new Pushi(key1, { baseUrl: ws });
      window.c = pushi.subscribe(n);
      await rec.once(c, "subscribe");
      rec.collect(c, "second", "hello");
      return { before, after, cloneOfNew: sameKey._cloned === true, oldKeyIsNew: oldKey._cloned === false };
    },
    [app.key, rest2.app.key, WS, name],
  );
  assert.deepStrictEqual(got, {
    before: [true, false, false],
    after: [false, true, true],
    cloneOfNew: true,
    oldKeyIsNew: true,
  });
  assert.equal(tab.sockets[1].url, WS + rest2.app.key);
  await rest2.trigger(name, "on the second app", "hello");
  const [seen] = await tab.waitLog("second");
  assert.equal(seen[1], "on the second app");
  await tab.close();
});

test("invalidate(channel) / invalidate(): frames for forgotten channels are dropped by the client", async () => {
  const tab = await connected("invalidate");
  const [n1, n2] = [uniq("inv1"), uniq("inv2")];
  await tab.eval(async ([a, b]) => {
    window.c1 = pushi.subscribe(a);
    window.c2 = pushi.subscribe(b);
    await Promise.all([rec.once(c1, "subscribe"), rec.once(c2, "subscribe")]);
    rec.collect(pushi, "seen", "ping");
    pushi.invalidate(a);
  }, [n1, n2]);
  assert.deepStrictEqual(await tab.eval(() => Object.keys(pushi.channels)), [n2]);
  await rest.trigger(n1, "dropped", "ping");
  await rest.trigger(n2, "kept", "ping");
  const [kept] = await tab.waitLog("seen");
  assert.equal(kept[2], n2);
  await waitUntil(() => tab.received.filter((f) => f.event === "ping").length === 2, "both frames on the wire");
  await sleep(100);
  assert.equal((await tab.log("seen")).length, 1, "the invalidated channel's frame was dropped");

  await tab.eval(() => pushi.invalidate());
  assert.deepStrictEqual(await tab.eval(() => Object.keys(pushi.channels)), []);
  // subscribing again after invalidation sends a fresh subscribe
  const data = await tab.eval(async (a) => (await rec.callback((cb) => pushi.subscribe(a, false, cb)))[1], n1);
  assert.equal(data.name, n1);
  assert.equal(tab.sent.filter((f) => f.event === "pusher:subscribe" && f.data.channel === n1).length, 2);
  assertNoPageErrors(tab);
  await tab.close();
});

test("subscribe: the existing Channel is returned without a frame unless `force`", async () => {
  const tab = await connected("force");
  const name = uniq("forced");
  const got = await tab.eval(async (n) => {
    const first = pushi.subscribe(n);
    await rec.once(first, "subscribe");
    const again = pushi.subscribe(n);
    const forced = pushi.subscribe(n, true);
    const [, data] = await rec.once(forced, "subscribe");
    return { same: again === first, replaced: forced !== first, data };
  }, name);
  assert.deepStrictEqual(got, {
    same: true,
    replaced: true,
    data: { name, members: {}, alias: [], events: [] },
  });
  assert.equal(tab.sent.filter((f) => f.event === "pusher:subscribe").length, 2);
  assertNoPageErrors(tab);
  await tab.close();
});

test("ensureChannel + sendEvent: a subscription made by hand is routed to the ensured Channel", async () => {
  const tab = await connected("ensure");
  const name = uniq("manual");
  const got = await tab.eval(async (n) => {
    const c = pushi.ensureChannel(n);
    const same = pushi.ensureChannel(n) === c;
    const subscribed = rec.once(c, "subscribe");
    pushi.sendEvent("pusher:subscribe", { channel: n });
    const [, data] = await subscribed;
    return { same, data, subscribed: c.subscribed };
  }, name);
  assert.deepStrictEqual(got, {
    same: true,
    data: { name, members: {}, alias: [], events: [] },
    subscribed: true,
  });
  assert.deepStrictEqual(tab.sent.at(-1), {
    event: "pusher:subscribe",
    data: { channel: name },
    echo: false,
    persist: true,
  });
  await tab.close();
});

test("send(json) puts the object on the wire as is; a client event without a channel gets pusher:error", async () => {
  const tab = await connected("send");
  const name = uniq("raw");
  await tab.eval(async (n) => {
    window.c = pushi.subscribe(n);
    await rec.once(c, "subscribe");
    rec.collect(c, "raw", "raw-event");
    rec.collect(pushi, "errors", "pusher:error");
    pushi.send({ event: "raw-event", channel: n, data: { k: [1, 2] }, echo: true, persist: false });
  }, name);
  const [raw] = await tab.waitLog("raw");
  assert.deepStrictEqual(tab.sent.at(-1), {
    event: "raw-event",
    channel: name,
    data: { k: [1, 2] },
    echo: true,
    persist: false,
  });
  assert.deepStrictEqual([raw[0], JSON.parse(raw[1]), raw[2]], ["raw-event", { k: [1, 2] }, null]);

  // sendEvent has no channel: the original dropped the connection; pushi answers pusher:error
  // with a `channel` key, which pushi.js needs to route any frame
  await tab.eval(() => pushi.sendEvent("client-orphan", { x: 1 }, true, false));
  assert.deepStrictEqual(tab.sent.at(-1), {
    event: "client-orphan",
    data: { x: 1 },
    echo: true,
    persist: false,
  });
  const [error] = await tab.waitLog("errors");
  assert.equal(error[0], "pusher:error");
  assert.equal(typeof error[1].message, "string", JSON.stringify(error));
  assert.equal(await tab.eval(() => pushi.state), "connected");
  assertNoPageErrors(tab);
  await tab.close();
});

test("bind/unbind and oneshot on Pushi and Channel objects", async () => {
  const tab = await connected("bind");
  const name = uniq("binds");
  await tab.eval(async (n) => {
    window.c = pushi.subscribe(n);
    await rec.once(c, "subscribe");
    window.calls = [];
    window.keep = (...a) => calls.push(["keep", ...a.slice(0, 2)]);
    window.one = (...a) => calls.push(["one", ...a.slice(0, 2)]);
    window.gone = (...a) => calls.push(["gone", ...a.slice(0, 2)]);
    c.bind("b", keep);
    c.bind("b", one, true);
    pushi.bind("b", gone);
    pushi.unbind("b", gone);
    c.bind("b", gone);
    c.unbind("b", gone);
  }, name);
  await rest.trigger(name, "1", "b", false);
  await tab.waitFor(() => calls.length >= 2, undefined, "first b");
  await rest.trigger(name, "2", "b", false);
  await tab.waitFor(() => calls.length >= 3, undefined, "second b");
  await sleep(100);
  assert.deepStrictEqual(await tab.eval(() => calls), [
    ["keep", "b", "1"],
    ["one", "b", "1"],
    ["keep", "b", "2"],
  ]);
  await tab.close();
});
