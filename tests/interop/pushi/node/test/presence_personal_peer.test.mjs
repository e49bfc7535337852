// pushi.js: presence (legacy Pushi signatures), personal channels, peer channels.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  collect,
  disposeAllTabs,
  newApp,
  once,
  plain,
  sleep,
  startAuthServer,
  uniq,
  waitUntil,
} from "../helpers.mjs";

let rest; // app with legacy_auth enabled (how Pushi apps sign presence)
let strictRest; // app left on Pusher's formula
let auth;

before(async () => {
  auth = await startAuthServer();
  rest = await newApp("js-presence");
  auth.register(rest.app);
  const updated = await rest.updateApp({ legacy_auth: true });
  assert.ok(updated, "PUT /apps/<ident> answered");
  strictRest = await newApp("js-strict");
  auth.register(strictRest.app);
});

after(async () => {
  disposeAllTabs();
  await auth.close();
});

const noErrors = (...tabs) => {
  for (const t of tabs) assert.deepEqual(t.errors, [], `${t.label}: pushi.js threw on a frame`);
};

async function join(app, user, channelName, { peer = false } = {}) {
  const c = await connect(app, { authEndpoint: auth.url(app, user, { peer }) }, user);
  const channel = c.pushi.subscribe(channelName);
  const [, data] = await once(channel, "subscribe");
  return { ...c, channel, data: plain(data) };
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

  const added = collect(alice.pushi, "member_added");
  const removed = collect(alice.pushi, "member_removed");
  const bob = await join(rest.app, "bob", room);
  assert.deepStrictEqual(Object.keys(bob.data.members).sort(), ["alice", "bob"]);
  await waitUntil(() => added.length === 1, "member_added at alice");
  assert.deepStrictEqual(added[0], [
    "member_added",
    room,
    { user_id: "bob", user_info: { name: "BOB" } },
  ]);
  // the raw frame: member is a JSON string
  const raw = alice.tab.received.find((f) => f.event === "pusher:member_added");
  assert.equal(typeof raw.member, "string");

  // a second connection of bob: no new member_added
  const bob2 = await join(rest.app, "bob", room);
  await sleep(200);
  assert.equal(added.length, 1, "second connection of the same user is not a new member");
  bob2.tab.dispose();
  await sleep(200);
  assert.equal(removed.length, 0, "bob still has a connection");

  // explicit unsubscribe of bob's last connection → member_removed
  const [, unsubData] = await new Promise((r) => bob.pushi.unsubscribe(room, (...a) => r(a)));
  assert.deepStrictEqual(Object.keys(plain(unsubData).members), ["alice"]);
  await waitUntil(() => removed.length === 1, "member_removed at alice");
  assert.deepStrictEqual(removed[0], [
    "member_removed",
    room,
    { user_id: "bob", user_info: { name: "BOB" } },
  ]);

  // disconnect also removes
  const carol = await join(rest.app, "carol", room);
  await waitUntil(() => added.length === 2, "member_added carol");
  carol.tab.dispose();
  await waitUntil(() => removed.length === 2, "member_removed carol after disconnect");
  assert.equal(removed[1][2].user_id, "carol");
  noErrors(alice.tab, bob.tab);
  alice.tab.dispose();
  bob.tab.dispose();
});

test("presence: a Pushi (legacy) signature is refused unless the app enables legacy_auth", async () => {
  const room = uniq("presence-strict");
  const c = await connect(strictRest.app, { authEndpoint: auth.url(strictRest.app, "dave") }, "strict");
  const channel = c.pushi.subscribe(room);
  let ok = false;
  channel.bind("subscribe", () => (ok = true));
  await waitUntil(
    () => c.tab.received.some((f) => f.event !== "pusher:connection_established"),
    "reply",
  );
  await sleep(100);
  assert.equal(ok, false, "legacy presence signature must be refused without legacy_auth");
  assert.equal(c.pushi.state, "connected");
  c.tab.dispose();
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

  const c = await connect(rest.app, { authEndpoint: auth.url(rest.app, user) }, "personal");
  const personal = `personal-${user}`;
  const aliasSubs = collect(c.pushi, "subscribe");
  const channel = c.pushi.subscribe(personal);
  const [, data] = await once(channel, "subscribe");
  const d = plain(data);
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
  assert.ok(c.pushi.channels[news]?.subscribed, "alias channel object for news");
  assert.ok(c.pushi.channels[sports]?.subscribed, "alias channel object for sports");
  assert.deepStrictEqual(
    aliasSubs.map((a) => a[1]),
    [news, sports, personal],
  );

  // live delivery through the aliases, with the real channel name
  const onNews = collect(c.pushi.channels[news], "flash");
  await rest.trigger(news, "live!", "flash");
  await waitUntil(() => onNews.length === 1, "flash via alias");
  assert.equal(onNews[0][1], "live!");
  const raw = c.tab.received.find((f) => f.event === "flash");
  assert.equal(raw.channel, news);

  // pushi: a trigger on personal-<u> reaches the user's personal subscribers (original: nobody)
  const onPersonal = collect(channel, "direct");
  await rest.trigger(personal, { hi: user }, "direct");
  await waitUntil(() => onPersonal.length === 1, "direct on personal channel");
  assert.deepStrictEqual(JSON.parse(onPersonal[0][1]), { hi: user });

  // pushi: latest works on personal- (original dropped the connection)
  const [, latest] = await new Promise((r) => c.pushi.latest(personal, 0, 10, (...a) => r(a)));
  const lev = plain(latest.events);
  assert.ok(lev.length >= 3, JSON.stringify(lev));
  assert.equal(lev[0].data.event, "flash", "newest first");
  assert.deepStrictEqual(
    lev.map((e) => e.data.event).filter((e) => e !== "direct"),
    ["flash", "score", "headline"],
  );

  // an alias added after subscribing applies from the next subscription
  const late = uniq("late");
  await rest.subscribe(user, late);
  assert.equal(c.pushi.channels[late], undefined);

  // unsubscribe personal-<u> unsubscribes the aliases
  const [, un] = await new Promise((r) => c.pushi.unsubscribe(personal, (...a) => r(a)));
  assert.equal(plain(un).name, personal);
  await waitUntil(() => !c.pushi.channels[news] && !c.pushi.channels[sports], "aliases dropped");
  const after = collect(c.pushi, "flash2");
  await rest.trigger(news, "after", "flash2");
  await sleep(300);
  assert.equal(after.length, 0, "no delivery after unsubscribing the personal channel");

  // re-subscribe now includes the late alias; deleting a subscription removes the alias
  const del = await rest.unsubscribe(user, sports);
  assert.equal(del.event, sports);
  const ch2 = c.pushi.subscribe(personal, true);
  const [, d2] = await once(ch2, "subscribe");
  assert.deepStrictEqual(plain(d2).alias, [news, late]);
  noErrors(c.tab);
  c.tab.dispose();
});

test("peer channel: two presence members with peer:true talk on peer-<base>:<a>&<b>", async () => {
  const base = uniq("chat");
  const room = `presence-${base}`;
  const alice = await join(rest.app, "alice", room, { peer: true });
  const bob = await join(rest.app, "bob", room, { peer: true });
  const peerName = `peer-${base}:alice&bob`;

  // peer messages are accepted by pushi.js although the channel is not in `channels`
  const atBob = collect(bob.pushi, "whisper");
  const atAlice = collect(alice.pushi, "whisper");
  alice.pushi.sendChannel("whisper", { to: "bob" }, peerName);
  await waitUntil(() => atBob.length === 1, "whisper at bob");
  assert.equal(atBob[0][2], peerName, "(event, data, channel, mid, timestamp)");
  assert.deepStrictEqual(JSON.parse(atBob[0][1]), { to: "bob" });
  await sleep(150);
  assert.equal(atAlice.length, 0, "no echo by default");

  bob.pushi.sendChannel("whisper", "back", peerName, true);
  await waitUntil(() => atAlice.length === 1 && atBob.length === 2, "whisper back (echo)");

  // latest on a peer- name is allowed without a Channel object
  const [, latest] = await new Promise((r) => alice.pushi.latest(peerName, 0, 10, (...a) => r(a)));
  const lev = plain(latest.events);
  assert.equal(lev.length, 2, JSON.stringify(lev));
  assert.equal(lev[0].channel, peerName);
  assert.equal(lev[0].data.data, "back");
  assert.equal(lev[0].owner_id, bob.pushi.socketId);
  assert.deepStrictEqual(JSON.parse(lev[1].data.data), { to: "bob" });

  // a third member is not part of alice&bob: sending there must not reach them
  const carol = await join(rest.app, "carol", room);
  carol.pushi.sendChannel("whisper", "intrude", peerName);
  await sleep(300);
  assert.equal(atBob.length, 2, "carol cannot post to alice&bob");
  assert.equal(atAlice.length, 1);
  assert.equal(carol.pushi.state, "connected");

  noErrors(alice.tab, bob.tab);
  // bob leaves the presence channel: alice is no longer on alice&bob either
  bob.tab.dispose();
  await sleep(300);
  const bobAgain = await connect(rest.app, {}, "bob-again");
  const late = collect(bobAgain.pushi, "whisper");
  alice.pushi.sendChannel("whisper", "anyone?", peerName);
  await sleep(300);
  assert.equal(late.length, 0, "a connection that is not in the presence channel gets nothing");
  bobAgain.tab.dispose();
  alice.tab.dispose();
  carol.tab.dispose();
});
