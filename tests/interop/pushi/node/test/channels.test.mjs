// pushi.js: connection, public and private channels, REST-triggered events, client events,
// history (`latest`), unsubscribe.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  WS,
  connect,
  collect,
  disposeAllTabs,
  newApp,
  once,
  openTab,
  plain,
  sleep,
  startAuthServer,
  uniq,
  waitUntil,
} from "../helpers.mjs";

let rest;
let app;
let auth;

before(async () => {
  rest = await newApp("js-channels");
  app = rest.app;
  auth = await startAuthServer();
  auth.register(app);
});

after(async () => {
  disposeAllTabs();
  await auth.close();
});

/** Tabs must not have thrown inside pushi.js' onmessage during a normal flow. */
function assertNoClientErrors(...tabs) {
  for (const tab of tabs) assert.deepEqual(tab.errors, [], `${tab.label}: pushi.js threw on a frame`);
}

test("connect: URL is baseUrl + appKey, `connect` fires and socketId is set", async () => {
  const tab = openTab("connect");
  const pushi = new tab.Pushi(app.key, { baseUrl: WS });
  assert.equal(pushi.url, WS + app.key);
  const [name] = await once(pushi, "connect");
  assert.equal(name, "connect", "listeners get the event name first");
  assert.equal(pushi.state, "connected");
  assert.equal(typeof pushi.socketId, "string");
  assert.ok(pushi.socketId.length > 0);
  // the first frame is connection_established with a JSON-string data carrying socket_id
  const first = tab.received[0];
  assert.equal(first.event, "pusher:connection_established");
  assert.equal(typeof first.data, "string");
  assert.equal(JSON.parse(first.data).socket_id, pushi.socketId);
  assertNoClientErrors(tab);
  tab.dispose();
});

test("connect: a second Pushi for the same key in a tab is a clone sharing the socket", async () => {
  const { tab, pushi } = await connect(app, {}, "clone");
  const clone = new tab.Pushi(app.key, { baseUrl: WS });
  assert.equal(clone._cloned, true);
  assert.equal(clone.socket, pushi.socket);
  assert.equal(clone.socketId, pushi.socketId);
  assert.equal(tab.sockets.length, 1);
  tab.dispose();
});

test("public channel: subscribe callback gets {name, members, alias, events}", async () => {
  const { tab, pushi } = await connect(app, {}, "public");
  const channelName = uniq("news");
  const got = new Promise((resolve) => pushi.subscribe(channelName, false, (...a) => resolve(a)));
  const [ev, data] = await got;
  assert.equal(ev, "subscribe");
  assert.deepStrictEqual(plain(data), { name: channelName, members: {}, alias: [], events: [] });
  assert.equal(pushi.channels[channelName].subscribed, true);
  // the frame it sent is the Pushi subscribe, no auth for public names
  const sub = tab.sent.find((f) => f.event === "pusher:subscribe");
  assert.deepStrictEqual(plain(sub), {
    event: "pusher:subscribe",
    data: { channel: channelName },
    echo: false,
    persist: true,
  });
  assertNoClientErrors(tab);
  tab.dispose();
});

test("REST trigger (persisted) reaches the channel binding with data, mid and timestamp", async () => {
  const { tab, pushi } = await connect(app, {}, "rest-trigger");
  const name = uniq("feed");
  const channel = pushi.subscribe(name);
  await once(channel, "subscribe");
  const seenChannel = collect(channel, "upd");
  const seenGlobal = collect(pushi, "upd");
  await rest.trigger(name, { a: 1, s: "ção" }, "upd", true, { subject: "extra key" });
  await waitUntil(() => seenChannel.length === 1 && seenGlobal.length === 1, "upd on channel and pushi");
  const [evName, data, mid, timestamp] = seenChannel[0];
  assert.equal(evName, "upd");
  assert.equal(typeof data, "string", "event data is always a JSON string");
  assert.deepStrictEqual(JSON.parse(data), { a: 1, s: "ção" });
  assert.equal(typeof mid, "string");
  assert.ok(mid.length >= 32);
  assert.equal(typeof timestamp, "number");
  assert.ok(Math.abs(timestamp - Date.now() / 1000) < 60, "timestamp is unix seconds");
  // pushi-level binding: (event, data, channel, mid, timestamp)
  assert.deepStrictEqual(seenGlobal[0], ["upd", data, name, mid, timestamp]);
  // extra REST body keys are forwarded in the message (§5.4)
  const frame = tab.received.find((f) => f.event === "upd");
  assert.equal(frame.subject, "extra key");
  assert.equal(frame.channel, name);
  assertNoClientErrors(tab);
  tab.dispose();
});

test("REST trigger with persist=false: delivered without mid/timestamp, not in history", async () => {
  const { tab, pushi } = await connect(app, {}, "rest-nopersist");
  const name = uniq("feed");
  const channel = pushi.subscribe(name);
  await once(channel, "subscribe");
  const seen = collect(channel, "tick");
  await rest.trigger(name, "plain string", "tick", false);
  await waitUntil(() => seen.length === 1, "tick");
  // (collect() copies through JSON: the absent mid/timestamp show up as null)
  assert.deepStrictEqual(seen[0], ["tick", "plain string", null, null]);
  const [, latest] = await new Promise((resolve) => pushi.latest(name, 0, 10, (...a) => resolve(a)));
  assert.deepStrictEqual(plain(latest.events), []);
  assertNoClientErrors(tab);
  tab.dispose();
});

test("sendChannel: echo=false is not echoed, echo=true is; both persisted and in `latest`", async () => {
  const a = await connect(app, {}, "sender");
  const b = await connect(app, {}, "receiver");
  const name = uniq("chat");
  const chA = a.pushi.subscribe(name);
  const chB = b.pushi.subscribe(name);
  await Promise.all([once(chA, "subscribe"), once(chB, "subscribe")]);
  const atA = collect(chA, "say", "say-echo");
  const atB = collect(chB, "say", "say-echo");

  chA.send("say", { text: "no echo" }); // Channel.send → sendChannel(echo=undefined→false)
  await waitUntil(() => atB.length === 1, "say at B");
  await sleep(200);
  assert.equal(atA.length, 0, "the sender must not get its own event when echo is false");
  assert.deepStrictEqual(JSON.parse(atB[0][1]), { text: "no echo" });
  assert.equal(typeof atB[0][2], "string", "persisted by default: mid present");

  a.pushi.sendChannel("say-echo", "with echo", name, true);
  await waitUntil(() => atA.length === 1 && atB.length === 2, "say-echo at A and B");
  assert.equal(atA[0][1], "with echo");
  assert.equal(atB[1][1], "with echo");

  a.pushi.sendChannel("say-nopersist", "gone", name, false, false);
  await waitUntil(
    () => b.tab.received.some((f) => f.event === "say-nopersist"),
    "say-nopersist at B",
  );
  const np = b.tab.received.find((f) => f.event === "say-nopersist");
  assert.equal(np.mid, undefined);

  // history: newest first, stored with owner_id = sender socket and the message snapshot
  const [ev, latest] = await new Promise((resolve) => chB.latest(0, 10, (...x) => resolve(x)));
  assert.equal(ev, "latest");
  assert.equal(latest.name, name);
  const events = plain(latest.events);
  assert.equal(events.length, 2, `history: ${JSON.stringify(events)}`);
  assert.equal(events[0].data.event, "say-echo");
  assert.equal(events[1].data.event, "say");
  assert.equal(events[0].channel, name);
  assert.equal(events[0].owner_id, a.pushi.socketId);
  assert.equal(events[0].data.data, "with echo");
  assert.deepStrictEqual(JSON.parse(events[1].data.data), { text: "no echo" });
  for (const key of ["id", "mid", "timestamp", "channel", "owner_id", "data", "instance", "created"]) {
    assert.ok(key in events[0], `stored event has ${key}: ${JSON.stringify(events[0])}`);
  }
  // skip/count
  const [, page] = await new Promise((resolve) => chB.latest(1, 1, (...x) => resolve(x)));
  assert.deepStrictEqual(plain(page.events).map((e) => e.data.event), ["say"]);
  assertNoClientErrors(a.tab, b.tab);
  a.tab.dispose();
  b.tab.dispose();
});

test("private channel via authEndpoint: auth GET, then subscription and delivery", async () => {
  const { tab, pushi } = await connect(app, { authEndpoint: auth.url(app, "u-priv") }, "private");
  const name = uniq("private-room");
  const before = auth.calls.length;
  const channel = pushi.subscribe(name);
  const [, data] = await once(channel, "subscribe");
  assert.deepStrictEqual(plain(data), { name, members: {}, alias: [], events: [] });
  const call = auth.calls[before];
  assert.equal(call.params.socket_id, pushi.socketId);
  assert.equal(call.params.channel, name);
  const sub = tab.sent.find((f) => f.event === "pusher:subscribe" && f.data.channel === name);
  assert.match(sub.data.auth, new RegExp(`^${app.key}:[0-9a-f]{64}$`));
  const seen = collect(channel, "secret");
  await rest.trigger(name, { p: true }, "secret");
  await waitUntil(() => seen.length === 1, "secret event");
  assert.deepStrictEqual(JSON.parse(seen[0][1]), { p: true });
  assertNoClientErrors(tab);
  tab.dispose();
});

test("private channel with a bad signature is refused and the connection survives", async () => {
  const { tab, pushi } = await connect(app, { authEndpoint: auth.url(app, "u", { bad: true }) }, "bad");
  const name = uniq("private-nope");
  const channel = pushi.subscribe(name);
  let subscribed = false;
  channel.bind("subscribe", () => (subscribed = true));
  await waitUntil(
    () => tab.received.some((f) => f.event !== "pusher:connection_established"),
    "a reply to the refused subscribe",
  );
  await sleep(100);
  assert.equal(subscribed, false);
  // original: TCP connection dropped; pushi: an error frame and the socket stays open
  assert.equal(pushi.state, "connected");
  const pub = pushi.subscribe(uniq("after-error"));
  await once(pub, "subscribe");
  tab.dispose();
});

test("unsubscribe: callback fires, channel forgotten, no more events", async () => {
  const { tab, pushi } = await connect(app, {}, "unsub");
  const name = uniq("temp");
  const channel = pushi.subscribe(name);
  await once(channel, "subscribe");
  const seen = collect(pushi, "later");
  const [ev, data] = await new Promise((resolve) => pushi.unsubscribe(name, (...a) => resolve(a)));
  assert.equal(ev, "unsubscribe");
  assert.deepStrictEqual(plain(data), { name, members: {}, alias: [], events: [] });
  assert.equal(pushi.channels[name], undefined);
  assert.equal(channel.subscribed, false);
  await rest.trigger(name, "x", "later");
  await sleep(300);
  assert.equal(seen.length, 0);
  assertNoClientErrors(tab);
  tab.dispose();
});

test("a multi-channel trigger reaches a socket once (shared dedup)", async () => {
  const { tab, pushi } = await connect(app, {}, "dedup");
  const [n1, n2] = [uniq("m1"), uniq("m2")];
  const c1 = pushi.subscribe(n1);
  const c2 = pushi.subscribe(n2);
  await Promise.all([once(c1, "subscribe"), once(c2, "subscribe")]);
  await rest.call("POST", "events", { body: { data: "both", event: "multi", channel: [n1, n2] } });
  await waitUntil(() => tab.received.some((f) => f.event === "multi"), "multi");
  await sleep(300);
  const copies = tab.received.filter((f) => f.event === "multi");
  assert.equal(copies.length, 1, JSON.stringify(copies));
  assert.equal(copies[0].channel, n1);
  tab.dispose();
});

test("connect: any path prefix before the key works, and so does the HTTP port", async () => {
  const http = new URL(process.env.PUSHI_HTTP_URL ?? "http://127.0.0.1:8080/");
  const bases = [WS + "some/prefix/", `ws://${http.host}/`];
  for (const baseUrl of bases) {
    const { tab, pushi } = await connect(app, { baseUrl }, `base ${baseUrl}`);
    const channel = pushi.subscribe(uniq("via"));
    await once(channel, "subscribe");
    assertNoClientErrors(tab);
    tab.dispose();
  }
});

test("a burst of client events (25 sendChannel calls at once) is delivered in full", async () => {
  // the original server had no client-event rate limit; pushi.js apps use client events as
  // their chat/messaging primitive
  const a = await connect(app, {}, "burst-sender");
  const b = await connect(app, {}, "burst-receiver");
  const name = uniq("burst");
  const chA = a.pushi.subscribe(name);
  const chB = b.pushi.subscribe(name);
  await Promise.all([once(chA, "subscribe"), once(chB, "subscribe")]);
  const seen = collect(chB, "line");
  for (let i = 0; i < 25; i++) chA.send("line", `line ${i}`);
  await waitUntil(() => seen.length === 25, "25 lines", 3000).catch(() => {});
  const refused = a.tab.received.filter((f) => f.event === "pusher:error");
  assert.equal(
    seen.length,
    25,
    `delivered ${seen.length}/25; sender got ${refused.length} error frames, e.g. ` +
      `${JSON.stringify(refused[0])}; pushi.js threw ${a.tab.errors.length} times on them`,
  );
  a.tab.dispose();
  b.tab.dispose();
});
