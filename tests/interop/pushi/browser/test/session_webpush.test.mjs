// pushi.js in Chromium: its HTTP helpers against the pushi REST API — the cookie session
// (login/logout), the VAPID key, the Web Push subscription routes, and the whole
// setupWebPush/teardownWebPush flow with a real service worker, down to the encrypted push
// message the server sends and the service worker that receives and shows it.
//
// The page (http://127.0.0.1:<site>) and the pushi server (http://127.0.0.1:<ws>) are different
// origins of the same site: pushi.js calls the server cross-origin with credentials (CORS), and
// the session cookie is same-site. Only the browser's registration with its vendor's push
// service is stood in for (site/push-stub.js), because no such service is reachable here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { sleep, waitUntil } from "../harness/browser.mjs";
import { checkVapid, startPushService } from "../harness/push_service.mjs";
import { HTTP, WS, newApp, pushiSign, uniq } from "../harness/rest.mjs";
import { assertNoPageErrors, useBrowser } from "../harness/suite.mjs";

const env = useBrowser();
let rest;
let app;
let push;
let vapidKey; // the app's VAPID public key, as the REST API gives it

before(async () => {
  rest = await newApp("js-webpush");
  app = rest.app;
  push = await startPushService();
  vapidKey = (await rest.call("GET", "vapid_key")).vapid_public_key;
});

after(async () => {
  await push?.close();
});

const restBase = WS.replace(/^ws(s?):\/\//, "http$1://").replace(/\/$/, "");

/** A tab with `window.pushi` connected and carrying the app's credentials. */
async function appTab(label, extra = {}, origin) {
  const tab = await env.browser.tab(label, origin);
  await tab.connect(app.key, { baseUrl: WS, appId: app.ident, appSecret: app.secret, ...extra });
  return tab;
}

/** Runs a (promise-returning) pushi.js call in the page: {ok, value} or {ok: false, error}. */
async function settle(tab, fn, arg) {
  try {
    return { ok: true, value: (await tab.eval(fn, arg)) ?? null };
  } catch (error) {
    return { ok: false, error: error.message.replace(/^page\.evaluate: /, "").split("\n")[0] };
  }
}

test("login/logout: a cookie session over CORS with credentials, at the URL derived from baseUrl", async () => {
  const tab = await appTab("login");
  await tab.eval(() => rec.collect(pushi, "session", "login", "logout"));
  assert.equal(await tab.eval(() => pushi._getBaseWebUrl()), restBase);

  const login = await settle(tab, () => pushi.login());
  assert.deepStrictEqual(login, { ok: true, value: null }, JSON.stringify(tab.responses));
  assert.equal(await tab.eval(() => pushi.authenticated), true);
  const call = tab.responses.find((r) => r.url.includes("/login?"));
  assert.equal(
    call.url,
    `${restBase}/login?app_id=${app.ident}&app_key=${app.key}&app_secret=${app.secret}`,
  );
  assert.equal(call.status, 200);

  // the session is the cookie: an authenticated route answers from the page
  const key = await settle(tab, () => pushi.getVapidPublicKey());
  assert.deepStrictEqual(key, { ok: true, value: vapidKey });

  const logout = await settle(tab, () => pushi.logout());
  assert.deepStrictEqual(logout, { ok: true, value: null });
  assert.equal(await tab.eval(() => pushi.authenticated), false);
  assert.deepStrictEqual((await tab.log("session")).map((a) => a[0]), ["login", "logout"]);
  // the server forgot the session
  const after = await settle(tab, () => pushi.getVapidPublicKey());
  assert.deepStrictEqual(after, { ok: false, error: "Error: Failed to get VAPID public key: 403" });
  assertNoPageErrors(tab);
  await tab.close();
});

test("login: options override the constructor's, bad credentials reject, missing ones send nothing", async () => {
  const tab = await env.browser.tab("login-options");
  await tab.connect(app.key, { baseUrl: WS });
  const missingId = await settle(tab, () => pushi.login());
  assert.deepStrictEqual(missingId, { ok: false, error: "Error: App ID is required for authentication" });
  const missingSecret = await settle(tab, (id) => pushi.login({ appId: id }), app.ident);
  assert.deepStrictEqual(missingSecret, { ok: false, error: "Error: App secret is required for authentication" });
  assert.equal(tab.responses.filter((r) => r.url.includes("/login")).length, 0);

  const wrong = await settle(tab, (id) => pushi.login({ appId: id, appSecret: "wrong" }), app.ident);
  assert.equal(wrong.ok, false);
  assert.match(wrong.error, /^Error: Login failed: 4\d\d$/, "a wrong secret is a 4xx (401 here, 404 in the original)");
  assert.equal(await tab.eval(() => pushi.authenticated), false);

  const right = await settle(tab, ([id, secret]) => pushi.login({ appId: id, appSecret: secret }), [
    app.ident,
    app.secret,
  ]);
  assert.deepStrictEqual(right, { ok: true, value: null });
  // the numeric app id is accepted too
  const numeric = await settle(tab, ([id, secret]) => pushi.login({ appId: id, appSecret: secret }), [
    String(app.id),
    app.secret,
  ]);
  assert.deepStrictEqual(numeric, { ok: true, value: null });
  await tab.close();
});

test("baseWebUrl: an explicit REST base (the HTTP port, trailing slash) is used instead", async () => {
  const tab = await appTab("base-web-url", { baseWebUrl: HTTP });
  assert.equal(await tab.eval(() => pushi._buildApiUrl("/vapid_key")), HTTP.replace(/\/$/, "") + "/vapid_key");
  assert.deepStrictEqual(await settle(tab, () => pushi.login()), { ok: true, value: null });
  // getVapidPublicKey(callback): (null, key) through the callback, and the promise
  const got = await tab.eval(
    () =>
      new Promise((resolve) => {
        const byCallback = [];
        pushi.getVapidPublicKey((error, key) => byCallback.push(error, key)).then((key) => resolve({ byCallback, key }));
      }),
  );
  assert.deepStrictEqual(got, { byCallback: [null, vapidKey], key: vapidKey });
  assert.ok(tab.responses.some((r) => r.url === HTTP + "login?" + new URLSearchParams({
    app_id: app.ident, app_key: app.key, app_secret: app.secret }).toString()));
  // the key is the 65-byte uncompressed P-256 point the Push API wants
  const bytes = await tab.eval((k) => Array.from(pushi._urlBase64ToUint8Array(k).slice(0, 1)).concat(pushi._urlBase64ToUint8Array(k).length), vapidKey);
  assert.deepStrictEqual(bytes, [4, 65]);
  await tab.close();
});

test("sendSubscriptionToServer / removeSubscriptionFromServer: public, private with auth, move, delete one and all", async () => {
  const tab = await appTab("subscriptions");
  assert.deepStrictEqual(await settle(tab, () => pushi.login()), { ok: true, value: null });
  const sub = push.subscription(uniq("ep"));
  const info = { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth };
  const [news, sports, secret] = [uniq("news"), uniq("sports"), uniq("private-alerts")];

  const created = await settle(tab, ([i, ev]) => pushi.sendSubscriptionToServer(i, ev), [info, news]);
  assert.equal(created.ok, true, JSON.stringify(created));
  assert.deepStrictEqual(
    [created.value.endpoint, created.value.event, created.value.p256dh, created.value.auth],
    [sub.endpoint, news, sub.p256dh, sub.auth],
  );
  const post = tab.responses.find((r) => r.method === "POST");
  assert.deepStrictEqual(post, { method: "POST", url: `${restBase}/web_pushes`, status: 200 });

  // a private channel needs the app backend's signature over endpoint:event
  const unsigned = await settle(tab, ([i, ev]) => pushi.sendSubscriptionToServer(i, ev), [info, secret]);
  assert.deepStrictEqual(unsigned, { ok: false, error: "Error: Failed to send subscription to server: 403" });
  const auth = pushiSign(app, sub.endpoint, secret);
  const signed = await settle(tab, ([i, ev, a]) => pushi.sendSubscriptionToServer(i, ev, { auth: a }), [
    info,
    secret,
    auth,
  ]);
  assert.equal(signed.ok, true, JSON.stringify(signed));
  assert.equal(signed.value.event, secret);
  assert.deepStrictEqual(
    (await rest.webPushes({ endpoint: sub.endpoint })).map((r) => r.event).sort(),
    [news, secret].sort(),
  );

  // unsubscribe: true moves the endpoint: it keeps only the new event
  const moved = await settle(tab, ([i, ev]) => pushi.sendSubscriptionToServer(i, ev, { unsubscribe: true }), [
    info,
    sports,
  ]);
  assert.equal(moved.ok, true, JSON.stringify(moved));
  assert.ok(tab.responses.some((r) => r.url === `${restBase}/web_pushes?unsubscribe=true`));
  assert.deepStrictEqual((await rest.webPushes({ endpoint: sub.endpoint })).map((r) => r.event), [sports]);

  // removing one (endpoint percent-encoded in the path, event in the query)
  await settle(tab, ([i, ev]) => pushi.sendSubscriptionToServer(i, ev), [info, news]);
  const removed = await settle(tab, ([e, ev]) => pushi.removeSubscriptionFromServer(e, ev), [sub.endpoint, news]);
  assert.equal(removed.ok, true, JSON.stringify(removed));
  assert.deepStrictEqual([removed.value.endpoint, removed.value.event], [sub.endpoint, news]);
  const del = tab.responses.find((r) => r.method === "DELETE");
  assert.equal(del.url, `${restBase}/web_pushes/${encodeURIComponent(sub.endpoint)}?event=${encodeURIComponent(news)}`);
  // removing one that is not there
  const absent = await settle(tab, ([e, ev]) => pushi.removeSubscriptionFromServer(e, ev), [sub.endpoint, news]);
  assert.deepStrictEqual(absent, { ok: true, value: { result: "success" } });
  // removing all of the endpoint's subscriptions
  await settle(tab, ([i, ev]) => pushi.sendSubscriptionToServer(i, ev), [info, news]);
  const all = await settle(tab, (e) => pushi.removeSubscriptionFromServer(e), sub.endpoint);
  assert.equal(all.ok, true, JSON.stringify(all));
  assert.deepStrictEqual(all.value.subscriptions.map((r) => r.event).sort(), [news, sports].sort());
  assert.deepStrictEqual(await rest.webPushes({ endpoint: sub.endpoint }), []);
  assertNoPageErrors(tab);
  await tab.close();
});

test("setupWebPush: permission, service worker, VAPID key, subscription, server; a push is delivered and shown; teardownWebPush", async () => {
  await env.browser.context.grantPermissions(["notifications"], { origin: env.site.origin });
  const tab = await appTab("webpush");
  const sub = push.subscription(uniq("ep"));
  const event = uniq("alerts");
  await tab.page.addScriptTag({ url: "/push-stub.js" });
  await tab.eval((keys) => installPushStub(keys), { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth });
  assert.deepStrictEqual(await settle(tab, () => pushi.login()), { ok: true, value: null });

  const setup = await settle(
    tab,
    async (ev) => {
      const result = await pushi.setupWebPush(ev, { swPath: "/sw.js" });
      const registration = await navigator.serviceWorker.ready;
      return {
        info: result.subscriptionInfo,
        server: result.serverResponse,
        isTheBrowserSubscription: result.subscription === pushStub.subscription,
        calls: pushStub.calls,
        worker: registration.active.scriptURL,
        permission: Notification.permission,
      };
    },
    event,
  );
  assert.equal(setup.ok, true, JSON.stringify(setup));
  const s = setup.value;
  assert.deepStrictEqual(s.info, { endpoint: sub.endpoint, p256dh: sub.p256dh, auth: sub.auth });
  assert.deepStrictEqual(
    [s.server.endpoint, s.server.event, s.server.p256dh, s.server.auth],
    [sub.endpoint, event, sub.p256dh, sub.auth],
  );
  assert.equal(s.isTheBrowserSubscription, true);
  assert.deepStrictEqual(s.calls, [{ method: "subscribe", userVisibleOnly: true, applicationServerKey: vapidKey }]);
  assert.equal(s.worker, `${env.site.origin}/sw.js`);
  assert.equal(s.permission, "granted");
  assert.deepStrictEqual(
    (await rest.webPushes({ endpoint: sub.endpoint })).map((r) => r.event),
    [event],
  );

  // an event on the channel: the server sends the push service an encrypted, VAPID-signed message
  const message = { title: "Hi", body: "from pushi", tag: uniq("t") };
  await rest.trigger(event, message, "alert");
  const [delivery] = await push.waitFor(sub.endpoint, 1, 10000);
  assert.ok(delivery, "no push message reached the push service");
  assert.equal(delivery.method, "POST");
  assert.equal(delivery.headers["content-encoding"], "aes128gcm");
  assert.match(delivery.headers.ttl ?? "", /^\d+$/);
  const vapid = checkVapid(delivery.headers.authorization);
  assert.equal(vapid.key, vapidKey, "signed with the key the page subscribed with");
  assert.equal(vapid.claims.aud, push.origin);
  assert.match(vapid.claims.sub, /^mailto:/);
  assert.ok(vapid.claims.exp > Date.now() / 1000);
  const plaintext = sub.decrypt(delivery.body);
  assert.deepStrictEqual(JSON.parse(plaintext), message);

  // the push service hands the message to the browser: the service worker gets it and shows it
  const cdp = await env.browser.context.newCDPSession(tab.page);
  const registrations = [];
  const versions = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  cdp.on("ServiceWorker.workerVersionUpdated", (e) => versions.push(...e.versions));
  await cdp.send("ServiceWorker.enable");
  const registration = await waitUntil(
    () => registrations.find((r) => r.scopeURL === `${env.site.origin}/` && !r.isDeleted),
    "the service worker registration",
  );
  // DevTools drops a push for a worker it has not yet reported as activated
  await waitUntil(
    () => versions.some((v) => v.registrationId === registration.registrationId && v.status === "activated"),
    "DevTools to see the activated service worker",
  );
  await cdp.send("ServiceWorker.deliverPushMessage", {
    origin: env.site.origin,
    registrationId: registration.registrationId,
    data: plaintext,
  });
  const [reported] = await tab.waitLog("sw");
  assert.deepStrictEqual(reported, { push: plaintext, title: "Hi", shown: true });
  await cdp.detach();

  // teardown: the browser subscription is dropped, then the server's record
  const teardown = await settle(tab, (ev) => pushi.teardownWebPush(ev), event);
  assert.equal(teardown.ok, true, JSON.stringify(teardown));
  assert.deepStrictEqual([teardown.value.endpoint, teardown.value.event], [sub.endpoint, event]);
  assert.equal(await tab.eval(() => pushStub.unsubscribed), 1);
  assert.deepStrictEqual(await rest.webPushes({ endpoint: sub.endpoint }), []);
  await rest.trigger(event, { title: "gone" }, "alert");
  await sleep(1500);
  assert.equal((await push.waitFor(sub.endpoint, 2, 0)).length, 1, "no push after teardown");
  // nothing left to tear down
  assert.deepStrictEqual(await settle(tab, (ev) => pushi.teardownWebPush(ev), event), { ok: true, value: null });
  assertNoPageErrors(tab);
  await tab.close();
});

test("setupWebPush / teardownWebPush need login(); setupWebPush needs notification permission", async () => {
  const tab = await appTab("webpush-refusals");
  assert.deepStrictEqual(await settle(tab, (ev) => pushi.setupWebPush(ev), "x"), {
    ok: false,
    error: "Error: Login required. Call login() before setupWebPush()",
  });
  assert.deepStrictEqual(await settle(tab, (ev) => pushi.teardownWebPush(ev), "x"), {
    ok: false,
    error: "Error: Login required. Call login() before teardownWebPush()",
  });
  await env.browser.context.clearPermissions();
  assert.deepStrictEqual(await settle(tab, () => pushi.login()), { ok: true, value: null });
  const denied = await settle(tab, (ev) => pushi.setupWebPush(ev), uniq("x"));
  assert.deepStrictEqual(denied, { ok: false, error: "Error: Notification permission denied" });
  assert.equal(tab.responses.filter((r) => r.url.includes("/vapid_key")).length, 0, "stopped before the server");
  await tab.close();
});
