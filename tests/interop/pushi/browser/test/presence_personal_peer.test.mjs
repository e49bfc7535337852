// pushi.js in Chromium: presence (legacy Pushi signatures, member events), personal channels
// (aliases and history), peer channels.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { sleep, waitUntil } from "../harness/browser.mjs";
import { WS, newApp, uniq } from "../harness/rest.mjs";
import { assertNoPageErrors, useBrowser } from "../harness/suite.mjs";

const env = useBrowser();
let rest; // app with legacy_auth enabled (how Pushi apps sign presence), client events stored
let strictRest; // app left on Pusher's formula

before(async () => {
  rest = await newApp("js-presence");
  env.site.register(rest.app);
  const updated = await rest.updateApp({ legacy_auth: true, persist_client_events: true });
  assert.ok(updated, "PUT /apps/<ident> answered");
  strictRest = await newApp("js-strict");
  env.site.register(strictRest.app);
});

/** A tab of `user` connected to `app` with the site's auth endpoint signing for them. */
async function userTab(app, user, { peer = false } = {}) {
  const tab = await env.browser.tab(user);
  await tab.connect(app.key, { baseUrl: WS, authEndpoint: env.site.authEndpoint(app, user, { peer }) });
  return tab;
}

/** `user` joins `channel` (as `window.room`); resolves with the tab and the subscribe data. */
async function join(app, user, channel, options) {
  const tab = await userTab(app, user, options);
  const data = await tab.eval(async (n) => {
    window.room = pushi.subscribe(n);
    return (await rec.once(room, "subscribe"))[1];
  }, channel);
  return { tab, data };
}

test("presence: members, member_added and member_removed through pushi.js", async () => {
  const room = uniq("presence-room");
  const alice = await join(rest.app, "alice", room);
  assert.deepStrictEqual(alice.data.members, {
    alice: { user_id: "alice", user_info: { name: "ALICE" } },
  });
  assert.deepStrictEqual(alice.data.alias, []);
  // channel_data went up as an object, as pushi.js sends it
  const sub = alice.tab.sent.find((f) => f.event === "pusher:subscribe");
  assert.equal(typeof sub.data.channel_data, "object");
  await alice.tab.eval(() => rec.collect(pushi, "members", "member_added", "member_removed"));

  const bob = await join(rest.app, "bob", room);
  assert.deepStrictEqual(Object.keys(bob.data.members).sort(), ["alice", "bob"]);
  const [added] = await alice.tab.waitLog("members");
  assert.deepStrictEqual(added, ["member_added", room, { user_id: "bob", user_info: { name: "BOB" } }]);
  // the raw frame: member is a JSON string
  const raw = alice.tab.received.find((f) => f.event === "pusher:member_added");
  assert.equal(typeof raw.member, "string");

  // a second connection of bob: no new member_added, and closing it removes nobody
  const bob2 = await join(rest.app, "bob", room);
  await sleep(200);
  await bob2.tab.close();
  await sleep(300);
  assert.equal((await alice.tab.log("members")).length, 1, "bob's second connection changed nothing");

  // explicit unsubscribe of bob's last connection → member_removed
  const [, unsubData] = await bob.tab.eval((n) => rec.callback((cb) => pushi.unsubscribe(n, cb)), room);
  assert.deepStrictEqual(Object.keys(unsubData.members), ["alice"]);
  const events = await alice.tab.waitLog("members", 2);
  assert.deepStrictEqual(events[1], ["member_removed", room, { user_id: "bob", user_info: { name: "BOB" } }]);

  // closing the tab (the browser closes the WebSocket) also removes
  const carol = await join(rest.app, "carol", room);
  await alice.tab.waitLog("members", 3);
  await carol.tab.close();
  const all = await alice.tab.waitLog("members", 4);
  assert.deepStrictEqual(all[3].slice(0, 2), ["member_removed", room]);
  assert.equal(all[3][2].user_id, "carol");
  assertNoPageErrors(alice.tab, bob.tab);
  await alice.tab.close();
  await bob.tab.close();
});

test("presence: a Pushi (legacy) signature is refused unless the app enables legacy_auth", async () => {
  const room = uniq("presence-strict");
  const tab = await userTab(strictRest.app, "dave");
  await tab.eval((n) => rec.collect(pushi.subscribe(n), "ok", "subscribe"), room);
  await waitUntil(() => tab.framesAfterConnect()[0], "a reply");
  await sleep(100);
  assert.deepStrictEqual(await tab.log("ok"), [], "legacy presence signature must be refused without legacy_auth");
  assert.equal(await tab.eval(() => pushi.state), "connected");
  await tab.close();
});

test("personal channel: aliases, offline history, delivery, latest, trigger on personal-, unsubscribe", async () => {
  const user = uniq("u");
  const [news, sports] = [uniq("news"), uniq("sports")];
  const s1 = await rest.subscribe(user, news);
  assert.equal(s1.user_id, user);
  assert.equal(s1.event, news);
  const again = await rest.subscribe(user, news);
  assert.equal(again.id, s1.id, "subscribing the same pair again returns the existing record");
  await rest.subscribe(user, sports);

  // published while the user is offline (after the subscriptions exist)
  await rest.trigger(news, { n: 1 }, "headline");
  await rest.trigger(sports, { n: 2 }, "score");
  await rest.trigger(news, { n: 3 }, "ephemeral", false); // not persisted: no history

  const tab = await userTab(rest.app, user);
  const personal = `personal-${user}`;
  const got = await tab.eval(
    async ([p, a, b]) => {
      rec.collect(pushi, "subscribes", "subscribe");
      window.personal = pushi.subscribe(p);
      const [, data] = await rec.once(personal, "subscribe");
      return { data, aliasObjects: [!!pushi.channels[a]?.subscribed, !!pushi.channels[b]?.subscribed] };
    },
    [personal, news, sports],
  );
  const d = got.data;
  assert.equal(d.name, personal);
  assert.deepStrictEqual(d.alias, [news, sports]);
  assert.deepStrictEqual(d.members, {});
  assert.deepStrictEqual(
    d.events.map((e) => [e.channel, e.data.event, JSON.parse(e.data.data).n]),
    [
      [sports, "score", 2],
      [news, "headline", 1],
    ],
    "personal history, newest first",
  );
  // the client created channel objects for the aliases and fired their subscribe
  assert.deepStrictEqual(got.aliasObjects, [true, true]);
  assert.deepStrictEqual((await tab.log("subscribes")).map((a) => a[1]), [news, sports, personal]);

  // live delivery through the aliases, with the real channel name
  await tab.eval((a) => rec.collect(pushi.channels[a], "flash", "flash"), news);
  await rest.trigger(news, "live!", "flash");
  const [flash] = await tab.waitLog("flash");
  assert.equal(flash[1], "live!");
  assert.equal(tab.received.find((f) => f.event === "flash").channel, news);

  // pushi: a trigger on personal-<u> reaches the user's personal subscribers (original: nobody)
  await tab.eval(() => rec.collect(personal, "direct", "direct"));
  await rest.trigger(personal, { hi: user }, "direct");
  const [direct] = await tab.waitLog("direct");
  assert.deepStrictEqual(JSON.parse(direct[1]), { hi: user });

  // pushi: latest works on personal- (original dropped the connection)
  const [, latest] = await tab.eval((p) => rec.callback((cb) => pushi.latest(p, 0, 10, cb)), personal);
  const lev = latest.events;
  assert.ok(lev.length >= 3, JSON.stringify(lev));
  assert.equal(lev[0].data.event, "flash", "newest first");
  assert.deepStrictEqual(
    lev.map((e) => e.data.event).filter((e) => e !== "direct"),
    ["flash", "score", "headline"],
  );

  // an alias added after subscribing applies from the next subscription
  const late = uniq("late");
  await rest.subscribe(user, late);
  assert.equal(await tab.eval((l) => l in pushi.channels, late), false);

  // unsubscribing personal-<u> unsubscribes the aliases
  const [, un] = await tab.eval((p) => rec.callback((cb) => pushi.unsubscribe(p, cb)), personal);
  assert.equal(un.name, personal);
  await tab.waitFor(([a, b]) => !pushi.channels[a] && !pushi.channels[b], [news, sports], "aliases dropped");
  await tab.eval(() => rec.collect(pushi, "after", "flash2"));
  await rest.trigger(news, "after", "flash2");
  await sleep(300);
  assert.deepStrictEqual(await tab.log("after"), [], "no delivery after unsubscribing the personal channel");

  // re-subscribing now includes the late alias; a deleted subscription drops its alias
  const del = await rest.unsubscribe(user, sports);
  assert.equal(del.event, sports);
  const d2 = await tab.eval(async (p) => (await rec.once(pushi.subscribe(p, true), "subscribe"))[1], personal);
  assert.deepStrictEqual(d2.alias, [news, late]);
  assertNoPageErrors(tab);
  await tab.close();
});

test("peer channel: two presence members with peer:true talk on peer-<base>:<a>&<b>", async () => {
  const base = uniq("chat");
  const room = `presence-${base}`;
  const alice = await join(rest.app, "alice", room, { peer: true });
  const bob = await join(rest.app, "bob", room, { peer: true });
  const peerName = `peer-${base}:alice&bob`;

  // peer messages are accepted by pushi.js although the channel is not in `channels`
  await bob.tab.eval(() => rec.collect(pushi, "whisper", "whisper"));
  await alice.tab.eval(() => rec.collect(pushi, "whisper", "whisper"));
  await alice.tab.eval((p) => pushi.sendChannel("whisper", { to: "bob" }, p), peerName);
  const [atBob] = await bob.tab.waitLog("whisper");
  assert.equal(atBob[2], peerName, "(event, data, channel, mid, timestamp)");
  assert.deepStrictEqual(JSON.parse(atBob[1]), { to: "bob" });
  await sleep(150);
  assert.deepStrictEqual(await alice.tab.log("whisper"), [], "no echo by default");

  await bob.tab.eval((p) => pushi.sendChannel("whisper", "back", p, true), peerName);
  await alice.tab.waitLog("whisper", 1);
  await bob.tab.waitLog("whisper", 2);

  // latest on a peer- name is allowed without a Channel object
  const [, latest] = await alice.tab.eval((p) => rec.callback((cb) => pushi.latest(p, 0, 10, cb)), peerName);
  const lev = latest.events;
  const bobId = await bob.tab.eval(() => pushi.socketId);
  assert.equal(lev.length, 2, JSON.stringify(lev));
  assert.equal(lev[0].channel, peerName);
  assert.equal(lev[0].data.data, "back");
  assert.equal(lev[0].owner_id, bobId);
  assert.deepStrictEqual(JSON.parse(lev[1].data.data), { to: "bob" });

  // a third member is not part of alice&bob: sending there must not reach them
  const carol = await join(rest.app, "carol", room);
  await carol.tab.eval((p) => pushi.sendChannel("whisper", "intrude", p), peerName);
  await sleep(300);
  assert.equal((await bob.tab.log("whisper")).length, 2, "carol cannot post to alice&bob");
  assert.equal((await alice.tab.log("whisper")).length, 1);
  assert.equal(await carol.tab.eval(() => pushi.state), "connected");
  assertNoPageErrors(alice.tab, bob.tab);

  // bob leaves the presence channel: a new connection of bob outside it gets nothing
  await bob.tab.close();
  await sleep(300);
  const bobAgain = await userTab(rest.app, "bob");
  await bobAgain.eval(() => rec.collect(pushi, "late", "whisper"));
  await alice.tab.eval((p) => pushi.sendChannel("whisper", "anyone?", p), peerName);
  await sleep(300);
  assert.deepStrictEqual(await bobAgain.log("late"), [], "a connection outside the presence channel gets nothing");
  await bobAgain.close();
  await alice.tab.close();
  await carol.tab.close();
});
