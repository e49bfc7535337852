// pushi.js in Chromium: connection, public and private channels, REST-triggered events,
// client events (sendChannel / Channel.send), history (latest), unsubscribe.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { sleep, waitUntil } from "../harness/browser.mjs";
import { HTTP, WS, newApp, uniq } from "../harness/rest.mjs";
import { assertNoPageErrors, useBrowser } from "../harness/suite.mjs";

const env = useBrowser();
let rest;
let app;

before(async () => {
  rest = await newApp("js-channels");
  app = rest.app;
  // What the original Pushi allowed and these tests use: client events on public channels,
  // stored by default, and a 25-event burst.
  assert.ok(
    await rest.updateApp({ public_client_events: true, persist_client_events: true, client_event_rate: 100 }),
  );
  env.site.register(app);
});

/** A tab connected as `window.pushi`. */
async function connected(label, options = {}) {
  const tab = await env.browser.tab(label);
  await tab.connect(app.key, { baseUrl: WS, ...options });
  return tab;
}

/** `window.pushi.subscribe(name)` as `window.ch[name]`, resolved with the subscribe data. */
function subscribe(tab, name) {
  return tab.eval(async (n) => {
    window.ch = window.ch || {};
    window.ch[n] = pushi.subscribe(n);
    const [, data] = await rec.once(window.ch[n], "subscribe");
    return data;
  }, name);
}

test("connect: URL is baseUrl + appKey, `connect` fires first arg 'connect', socketId is set", async () => {
  const tab = await env.browser.tab("connect");
  const got = await tab.eval(
    async ([key, ws]) => {
      window.pushi = new Pushi(key, { baseUrl: ws });
      const url = pushi.url;
      const args = await rec.once(pushi, "connect");
      return { url, args, state: pushi.state, socketId: pushi.socketId };
    },
    [app.key, WS],
  );
  assert.equal(got.url, WS + app.key);
  assert.deepStrictEqual(got.args, ["connect"], "listeners get the event name first");
  assert.equal(got.state, "connected");
  assert.equal(typeof got.socketId, "string");
  assert.ok(got.socketId.length > 0);
  assert.equal(tab.sockets.length, 1);
  assert.equal(tab.sockets[0].url, WS + app.key);
  const first = tab.received[0];
  assert.equal(first.event, "pusher:connection_established");
  assert.equal(typeof first.data, "string", "connection_established data is a JSON string");
  assert.equal(JSON.parse(first.data).socket_id, got.socketId);
  assertNoPageErrors(tab);
  await tab.close();
});

test("public channel: subscribe callback gets {name, members, alias, events}; frame shape", async () => {
  const tab = await connected("public");
  const name = uniq("news");
  const [ev, data, subscribed] = await tab.eval(async (n) => {
    const args = await rec.callback((cb) => pushi.subscribe(n, false, cb));
    return [...args, pushi.channels[n].subscribed];
  }, name);
  assert.equal(ev, "subscribe");
  assert.deepStrictEqual(data, { name, members: {}, alias: [], events: [] });
  assert.equal(subscribed, true);
  const sub = tab.sent.find((f) => f.event === "pusher:subscribe");
  assert.deepStrictEqual(sub, {
    event: "pusher:subscribe",
    data: { channel: name },
    echo: false,
    persist: true,
  });
  assertNoPageErrors(tab);
  await tab.close();
});

test("REST trigger (persisted) reaches the Channel and Pushi bindings with data, mid, timestamp", async () => {
  const tab = await connected("rest-trigger");
  const name = uniq("feed");
  await subscribe(tab, name);
  await tab.eval((n) => {
    rec.collect(ch[n], "channel", "upd");
    rec.collect(pushi, "pushi", "upd");
  }, name);
  await rest.trigger(name, { a: 1, s: "ção" }, "upd", true, { subject: "extra key" });
  const [[evName, data, mid, timestamp]] = await tab.waitLog("channel");
  const [global] = await tab.waitLog("pushi");
  assert.equal(evName, "upd");
  assert.equal(typeof data, "string", "event data is always a JSON string");
  assert.deepStrictEqual(JSON.parse(data), { a: 1, s: "ção" });
  assert.equal(typeof mid, "string");
  assert.ok(mid.length >= 32);
  assert.equal(typeof timestamp, "number");
  assert.ok(Math.abs(timestamp - Date.now() / 1000) < 60, "timestamp is unix seconds");
  assert.deepStrictEqual(global, ["upd", data, name, mid, timestamp], "(event, data, channel, mid, timestamp)");
  // extra REST body keys are forwarded in the message (§5.4)
  const frame = await waitUntil(() => tab.received.find((f) => f.event === "upd"), "upd frame");
  assert.equal(frame.subject, "extra key");
  assert.equal(frame.channel, name);
  assertNoPageErrors(tab);
  await tab.close();
});

test("REST trigger with persist=false: delivered without mid/timestamp, not in history", async () => {
  const tab = await connected("rest-nopersist");
  const name = uniq("feed");
  await subscribe(tab, name);
  await tab.eval((n) => rec.collect(ch[n], "tick", "tick"), name);
  await rest.trigger(name, "plain string", "tick", false);
  const [seen] = await tab.waitLog("tick");
  assert.deepStrictEqual(seen, ["tick", "plain string", null, null]);
  const [, latest] = await tab.eval((n) => rec.callback((cb) => pushi.latest(n, 0, 10, cb)), name);
  assert.deepStrictEqual(latest.events, []);
  assertNoPageErrors(tab);
  await tab.close();
});

test("sendChannel / Channel.send: echo false not echoed, echo true echoed, persist false not stored; latest", async () => {
  const a = await connected("sender");
  const b = await connected("receiver");
  const name = uniq("chat");
  await Promise.all([subscribe(a, name), subscribe(b, name)]);
  await a.eval((n) => rec.collect(ch[n], "at", "say", "say-echo"), name);
  await b.eval((n) => rec.collect(ch[n], "at", "say", "say-echo", "say-nopersist"), name);

  await a.eval((n) => ch[n].send("say", { text: "no echo" }), name); // echo undefined -> false
  const [atB] = await b.waitLog("at");
  await sleep(200);
  assert.deepStrictEqual(await a.log("at"), [], "the sender must not get its own event when echo is false");
  assert.deepStrictEqual(JSON.parse(atB[1]), { text: "no echo" });
  assert.equal(typeof atB[2], "string", "persisted by default: mid present");
  const sayFrame = a.sent.find((f) => f.event === "say");
  assert.deepStrictEqual(sayFrame, {
    event: "say",
    data: { text: "no echo" },
    channel: name,
    echo: false,
    persist: true,
  });

  await a.eval((n) => pushi.sendChannel("say-echo", "with echo", n, true), name);
  const [atA] = await a.waitLog("at");
  const atB2 = await b.waitLog("at", 2);
  assert.equal(atA[1], "with echo");
  assert.equal(atB2[1][1], "with echo");

  await a.eval((n) => ch[n].send("say-nopersist", "gone", false, false), name);
  const atB3 = await b.waitLog("at", 3);
  assert.deepStrictEqual(atB3[2], ["say-nopersist", "gone", null, null]);

  // history: newest first, stored with owner_id = the sender's socket and the message
  const [ev, latest] = await b.eval((n) => rec.callback((cb) => ch[n].latest(0, 10, cb)), name);
  const socketA = await a.eval(() => pushi.socketId);
  assert.equal(ev, "latest");
  assert.equal(latest.name, name);
  const events = latest.events;
  assert.equal(events.length, 2, `history: ${JSON.stringify(events)}`);
  assert.equal(events[0].data.event, "say-echo");
  assert.equal(events[1].data.event, "say");
  assert.equal(events[0].channel, name);
  assert.equal(events[0].owner_id, socketA);
  assert.equal(events[0].data.data, "with echo");
  assert.deepStrictEqual(JSON.parse(events[1].data.data), { text: "no echo" });
  for (const key of ["id", "mid", "timestamp", "channel", "owner_id", "data", "instance", "created"]) {
    assert.ok(key in events[0], `stored event has ${key}: ${JSON.stringify(events[0])}`);
  }
  // skip/count, and the defaults (skip 0, count 10) of Pushi.latest
  const [, page] = await b.eval((n) => rec.callback((cb) => ch[n].latest(1, 1, cb)), name);
  assert.deepStrictEqual(page.events.map((e) => e.data.event), ["say"]);
  await b.eval((n) => pushi.latest(n), name);
  const defaults = await waitUntil(
    () => b.sent.find((f) => f.event === "pusher:latest" && f.data.skip === 0 && f.data.count === 10),
    "latest with defaults",
  );
  assert.deepStrictEqual(defaults.data, { channel: name, skip: 0, count: 10 });
  assertNoPageErrors(a, b);
  await a.close();
  await b.close();
});

test("private channel via authEndpoint: auth GET from the page, then subscription and delivery", async () => {
  const tab = await connected("private", { authEndpoint: env.site.authEndpoint(app, "u-priv") });
  const name = uniq("private-room");
  const callsBefore = env.site.authCalls.length;
  const data = await subscribe(tab, name);
  assert.deepStrictEqual(data, { name, members: {}, alias: [], events: [] });
  const call = env.site.authCalls[callsBefore];
  assert.equal(call.params.socket_id, await tab.eval(() => pushi.socketId));
  assert.equal(call.params.channel, name);
  const sub = tab.sent.find((f) => f.event === "pusher:subscribe" && f.data.channel === name);
  assert.match(sub.data.auth, new RegExp(`^${app.key}:[0-9a-f]{64}$`));
  await tab.eval((n) => rec.collect(ch[n], "secret", "secret"), name);
  await rest.trigger(name, { p: true }, "secret");
  const [seen] = await tab.waitLog("secret");
  assert.deepStrictEqual(JSON.parse(seen[1]), { p: true });
  assertNoPageErrors(tab);
  await tab.close();
});

test("private channel without an authEndpoint: subscribe throws, nothing is sent", async () => {
  const tab = await connected("no-auth-endpoint");
  const error = await tab.eval((n) => {
    try {
      pushi.subscribe(n);
      return null;
    } catch (e) {
      return String(e);
    }
  }, uniq("private-x"));
  assert.equal(error, "Error: No auth endpoint defined");
  assert.equal(tab.sent.length, 0);
  await tab.close();
});

test("private channel with a bad signature is refused and the connection survives", async () => {
  const tab = await connected("bad", { authEndpoint: env.site.authEndpoint(app, "u", { bad: true }) });
  const name = uniq("private-nope");
  await tab.eval((n) => {
    window.refused = pushi.subscribe(n);
    rec.collect(window.refused, "refused", "subscribe");
  }, name);
  const reply = await waitUntil(() => tab.framesAfterConnect()[0], "a reply to the refused subscribe");
  await sleep(100);
  assert.deepStrictEqual(await tab.log("refused"), [], `not subscribed; reply ${JSON.stringify(reply)}`);
  // original: TCP connection dropped; pushi: an error frame and the socket stays open
  assert.equal(await tab.eval(() => pushi.state), "connected");
  await subscribe(tab, uniq("after-error"));
  await tab.close();
});

test("unsubscribe: callback fires, channel forgotten, no more events", async () => {
  const tab = await connected("unsub");
  const name = uniq("temp");
  await subscribe(tab, name);
  await tab.eval(() => rec.collect(pushi, "later", "later"));
  const [ev, data] = await tab.eval((n) => rec.callback((cb) => pushi.unsubscribe(n, cb)), name);
  assert.equal(ev, "unsubscribe");
  assert.deepStrictEqual(data, { name, members: {}, alias: [], events: [] });
  assert.deepStrictEqual(
    await tab.eval((n) => [pushi.channels[n] === undefined, ch[n].subscribed], name),
    [true, false],
  );
  assert.deepStrictEqual(
    tab.sent.find((f) => f.event === "pusher:unsubscribe"),
    { event: "pusher:unsubscribe", data: { channel: name }, echo: false, persist: true },
  );
  await rest.trigger(name, "x", "later");
  await sleep(300);
  assert.deepStrictEqual(await tab.log("later"), []);
  // unsubscribing an unknown channel is a no-op that sends nothing
  const sentBefore = tab.sent.length;
  assert.equal(await tab.eval(() => pushi.unsubscribe("never-subscribed") === undefined), true);
  assert.equal(tab.sent.length, sentBefore);
  assertNoPageErrors(tab);
  await tab.close();
});

test("Channel.unsubscribe and a multi-channel trigger reaching a socket once", async () => {
  const tab = await connected("dedup");
  const [n1, n2] = [uniq("m1"), uniq("m2")];
  await Promise.all([subscribe(tab, n1), subscribe(tab, n2)]);
  await rest.call("POST", "events", { body: { data: "both", event: "multi", channel: [n1, n2] } });
  await waitUntil(() => tab.received.some((f) => f.event === "multi"), "multi");
  await sleep(300);
  const copies = tab.received.filter((f) => f.event === "multi");
  assert.equal(copies.length, 1, JSON.stringify(copies));
  assert.equal(copies[0].channel, n1);
  const [ev, data] = await tab.eval((n) => rec.callback((cb) => ch[n].unsubscribe(cb)), n2);
  assert.equal(ev, "unsubscribe");
  assert.equal(data.name, n2);
  assert.deepStrictEqual(await tab.eval(() => Object.keys(pushi.channels)), [n1]);
  assertNoPageErrors(tab);
  await tab.close();
});

test("connect: any path prefix before the key works, and so does the HTTP port", async () => {
  const http = new URL(HTTP);
  for (const baseUrl of [WS + "some/prefix/", `${new URL(WS).protocol}//${http.host}/`]) {
    const tab = await connected(`base ${baseUrl}`, { baseUrl });
    await subscribe(tab, uniq("via"));
    assertNoPageErrors(tab);
    await tab.close();
  }
});

test("a burst of client events (25 Channel.send calls at once) is delivered in full", async () => {
  // the original server had no client-event rate limit; pushi.js apps use client events as
  // their chat/messaging primitive
  const a = await connected("burst-sender");
  const b = await connected("burst-receiver");
  const name = uniq("burst");
  await Promise.all([subscribe(a, name), subscribe(b, name)]);
  await b.eval((n) => rec.collect(ch[n], "line", "line"), name);
  await a.eval((n) => {
    for (let i = 0; i < 25; i++) ch[n].send("line", `line ${i}`);
  }, name);
  const seen = await b.waitLog("line", 25, 3000).catch(() => null);
  const refused = a.received.filter((f) => f.event === "pusher:error");
  const delivered = seen ? seen.length : (await b.log("line")).length;
  assert.equal(
    delivered,
    25,
    `delivered ${delivered}/25; sender got ${refused.length} error frames, e.g. ` +
      `${JSON.stringify(refused[0])}; pushi.js threw ${a.errors.length} times on them`,
  );
  await a.close();
  await b.close();
});
