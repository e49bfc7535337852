// The dashboard as an operator uses it, in headless Chromium against a real server (started
// by ../run.sh): sign in with the admin token, create an app and point its webhook at a local
// receiver, watch a pusher-js client connect and subscribe in the live view, publish from the
// form and see the event in the debug console and in the client, find the failed webhook in
// the outbox and retry it, then sign in as the app and fail to reach another app.
//
// The steps share one browser page and run in order.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import Pusher from "pusher-js";

const BASE = process.env.PUSHI_HTTP_URL;
const WS_PORT = Number(process.env.PUSHI_WS_PORT);
const TOKEN = process.env.PUSHI_ADMIN_TOKEN;
const SCREENSHOT = process.env.PUSHI_DASHBOARD_SCREENSHOT;
const CHROMIUM = process.env.PUSHI_CHROMIUM ?? "/usr/bin/chromium";
const WAIT = 10_000;
if (!BASE || !WS_PORT || !TOKEN) throw new Error("run through tests/interop/dashboard/run.sh");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let profile;
let context;
let page;
let client; // the pusher-js client
const received = []; // events the client got
const pageErrors = [];
let app; // {id, key, secret} of the app the test creates

// A webhook receiver whose answer the test sets.
const receiver = { status: 400, hits: [] };
const hookServer = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    receiver.hits.push({ status: receiver.status, body });
    res.writeHead(receiver.status, { "content-type": "text/plain" });
    res.end(receiver.status === 200 ? "ok" : "no thanks");
  });
});

before(async () => {
  await new Promise((resolve) => hookServer.listen(0, "127.0.0.1", resolve));
  profile = await mkdtemp(path.join(os.tmpdir(), "pushi-dashboard-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 860 },
  });
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("dialog", (d) => d.accept());
});

after(async () => {
  client?.disconnect();
  await context?.close().catch(() => {});
  if (profile) await rm(profile, { recursive: true, force: true });
  hookServer.close();
  assert.deepEqual(pageErrors, [], "the page threw no errors");
});

const text = (selector) => page.locator(selector).first().textContent({ timeout: WAIT });

async function waitForText(selector, pattern, what) {
  await page.waitForFunction(
    ([s, p]) => [...document.querySelectorAll(s)].some((n) => new RegExp(p).test(n.textContent)),
    [selector, pattern.source],
    { timeout: WAIT, polling: 50 },
  ).catch((e) => {
    throw new Error(`timed out waiting for ${what}: ${e.message.split("\n")[0]}`);
  });
}

test("the admin signs in with the token", async () => {
  await page.goto(`${BASE}/dashboard`);
  assert.match(page.url(), /\/dashboard\/$/);
  await page.fill("#admin-token", "wrong");
  await page.click("#admin-form button[type=submit]");
  await waitForText("#sign-in-error", /wrong admin token/, "the refusal");
  await page.fill("#admin-token", TOKEN);
  await page.click("#admin-form button[type=submit]");
  await page.locator("#tabs").waitFor({ state: "visible", timeout: WAIT });
  assert.equal(await text("#who"), "operator");
  assert.equal(await page.getAttribute('a[href="/openapi.json"]', "href"), "/openapi.json");
});

test("the admin creates an app and points its webhook at a receiver", async () => {
  await page.fill("#create-name", "shop");
  await page.click("#create-form button[type=submit]");
  await waitForText("#detail-title", /^shop \(app \d+\)$/, "the new app's details");
  app = {
    id: await text("#cred-id"),
    key: await text("#cred-key"),
    secret: await text("#cred-secret"),
  };
  assert.match(app.secret, /^[0-9a-f]{64}$/);
  await page.click("#add-webhook");
  const hook = `http://127.0.0.1:${hookServer.address().port}/pusher/webhook`;
  await page.fill("#webhook-list .webhook:last-child .webhook-url", hook);
  await page.check('#webhook-list .webhook:last-child input[value="channel_occupied"]');
  await page.fill("#field-max_connections", "0");
  await page.click("#settings-form button[type=submit]");
  await waitForText("#settings-message", /max_connections: .*out of range/, "the refusal naming the field");
  assert.equal(await page.locator('.field.invalid[data-name="max_connections"]').count(), 1);
  await page.fill("#field-max_connections", "100");
  await page.click("#settings-form button[type=submit]");
  await waitForText("#settings-message", /^Saved: .*webhooks/, "the saved settings");
  const stored = await fetch(`${BASE}/admin/api/apps/${app.id}`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.json());
  assert.deepEqual(stored.settings.webhooks, [{ url: hook, event_types: ["channel_occupied"] }]);
  assert.equal(stored.settings.max_connections, 100);
});

test("a pusher-js client shows up in the live view as it connects and subscribes", async () => {
  await page.click('#tabs button[data-tab="live"]');
  await waitForText("#live-state", /^live$/, "the live stream");
  assert.equal(await text("#live-connections"), "0");
  client = new Pusher(app.key, {
    cluster: "mt1",
    wsHost: "127.0.0.1",
    wsPort: WS_PORT,
    forceTLS: false,
    enabledTransports: ["ws"],
    channelAuthorization: {
      // The app's backend would sign this; the test holds the secret.
      customHandler: ({ socketId, channelName }, callback) => {
        const channelData = JSON.stringify({ user_id: "alice", user_info: { name: "Alice" } });
        const signature = crypto.createHmac("sha256", app.secret).update(`${socketId}:${channelName}:${channelData}`).digest("hex");
        callback(null, { auth: `${app.key}:${signature}`, channel_data: channelData });
      },
    },
  });
  const orders = client.subscribe("orders");
  orders.bind("order-created", (data) => received.push(data));
  const lobby = client.subscribe("presence-lobby");
  await new Promise((resolve, reject) => {
    lobby.bind("pusher:subscription_succeeded", resolve);
    lobby.bind("pusher:subscription_error", reject);
  });
  await waitForText("#live-connections", /^1$/, "one connection");
  await waitForText('#channels-table tr[data-channel="orders"] td:nth-child(2)', /^1$/, "one subscription to orders");
  await waitForText('#channels-table tr[data-channel="presence-lobby"] td:nth-child(3)', /alice.*Alice/, "alice in the presence channel");
  await waitForText("#sockets-table td", /orders/, "the socket with its channels");
});

test("an event published from the form reaches the debug console and the client", async () => {
  await page.click('#tabs button[data-tab="console"]');
  await waitForText("#console-table tr.subscribed", /presence-lobby/, "the subscription in the console");
  await waitForText("#console-table tr.connected", /socket/, "the connection in the console");
  await page.fill("#publish-channel", "orders");
  await page.fill("#publish-event", "order-created");
  await page.fill("#publish-data", '{"id": 42, "total": "19.90"}');
  await page.click("#publish-form button[type=submit]");
  await waitForText("#publish-result", /Published to orders \(1 frame/, "the publish result");
  await waitForText("#console-table tr.published", /order-created.*"id":42/, "the event in the console");
  const end = Date.now() + WAIT;
  while (received.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(received, [{ id: 42, total: "19.90" }]);

  // Filters: by event, then by channel.
  await page.fill("#filter-event", "order-created");
  assert.equal(await page.locator("#console-table tbody tr").count(), 1);
  await page.fill("#filter-event", "");
  await page.fill("#filter-channel", "presence-");
  const types = await page.locator("#console-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.type));
  assert.deepEqual([...new Set(types)], ["subscribed"]);
  await page.fill("#filter-channel", "");
  if (SCREENSHOT) {
    await page.fill("#publish-data", '{"id": 43, "total": "7.50"}');
    await page.click("#publish-form button[type=submit]");
    await waitForText("#console-table tr.published", /"id":43/, "the second event");
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
  }
});

test("the failed webhook is in the outbox, and retrying it delivers it", async () => {
  await page.click('#tabs button[data-tab="outbox"]');
  await waitForText("#outbox-table tr.failed .reason", /400/, "the failed delivery with its reason");
  assert.ok(receiver.hits.length >= 1);
  assert.match(receiver.hits[0].body, /channel_occupied/);
  receiver.status = 200;
  await page.click("#outbox-table tr.failed button.retry");
  await waitForText("#outbox-table tr.delivered td", /delivered/, "the delivered webhook");
  assert.equal(receiver.hits.at(-1).status, 200);
  await waitForText("#count-delivered", /^1$/, "the delivered count");
});

test("signed in with one app's credentials, another app is out of reach", async () => {
  await page.click("#sign-out");
  await page.fill("#app-key", app.key);
  await page.fill("#app-secret", app.secret);
  await page.click("#app-form button[type=submit]");
  await waitForText("#who", new RegExp(`^app ${app.id}$`), "the app's session");
  await page.click('#tabs button[data-tab="apps"]');
  const ids = await page.locator("#apps-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.app));
  assert.deepEqual(ids, [app.id], "only its own app is listed");
  assert.equal(await page.locator("#create-form").isVisible(), false);
  // The server's first app (created on first start) exists, but these credentials cannot reach it.
  const all = await fetch(`${BASE}/admin/api/apps`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.json());
  const other = all.apps.find((a) => a.id !== app.id);
  assert.ok(other, "another app exists");
  const statuses = await page.evaluate(async ([otherId, key, secret]) => {
    const headers = { authorization: `Basic ${btoa(`${key}:${secret}`)}` };
    const paths = ["", "/live", "/deliveries"].map((p) => `/admin/api/apps/${otherId}${p}`);
    return Promise.all(paths.map((p) => fetch(p, { headers }).then((r) => r.status)));
  }, [other.id, app.key, app.secret]);
  assert.deepEqual(statuses, [403, 403, 403]);
});
