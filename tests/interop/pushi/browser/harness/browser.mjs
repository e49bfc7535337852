// Headless Chromium (Debian's `chromium`, driven with playwright-core) for the pushi.js tests.
//
// One browser per test file, with a fresh profile directory. Each `Tab` is a page of the app's
// site (see site.mjs) with the original pushi.js loaded: its own globals, so its own
// PUSHI_CONNECTIONS cache. The tab watches, from outside the page, every WebSocket frame the
// page sends and receives (`sent`, `received`, parsed) and every uncaught page exception
// (`errors`: pushi.js throwing inside `onmessage` shows up here, as it would in a browser's
// console), and the HTTP responses the page got (`responses`: method, url, status). Tests
// drive pushi.js with `tab.eval`, which runs a function inside the page.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.PUSHI_CHROMIUM ?? "/usr/bin/chromium";
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` (in Node) until it returns a truthy value; rejects naming `what` after `ms`. */
export async function waitUntil(fn, what = "condition", ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function parse(payload) {
  try {
    return JSON.parse(payload);
  } catch {
    return payload;
  }
}

export class Tab {
  constructor(page, label) {
    this.page = page;
    this.label = label;
    this.sent = [];
    this.received = [];
    this.sockets = [];
    this.errors = [];
    this.responses = [];
    page.on("response", (r) =>
      this.responses.push({ method: r.request().method(), url: r.url(), status: r.status() }),
    );
    page.on("websocket", (ws) => {
      const socket = { url: ws.url(), closed: false };
      this.sockets.push(socket);
      ws.on("framesent", ({ payload }) => this.sent.push(parse(payload)));
      ws.on("framereceived", ({ payload }) => this.received.push(parse(payload)));
      ws.on("close", () => (socket.closed = true));
    });
    page.on("pageerror", (error) => this.errors.push(String(error)));
  }

  /** Runs `fn(arg)` inside the page and returns its (JSON-like) result. */
  eval(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  /** Waits until `fn(arg)`, run inside the page, is truthy. */
  async waitFor(fn, arg, what = "page condition", ms = 5000) {
    try {
      const handle = await this.page.waitForFunction(fn, arg, { timeout: ms, polling: 20 });
      return await handle.jsonValue();
    } catch (error) {
      throw new Error(`${this.label}: timed out waiting for ${what} (${error.message.split("\n")[0]})`);
    }
  }

  /** The calls recorded by `rec.collect(target, label, ...)` in the page. */
  log(label) {
    return this.eval((l) => rec.logs[l] || [], label);
  }

  /** Waits for at least `count` calls under `label` and returns them all. */
  waitLog(label, count = 1, ms = 5000) {
    return this.waitFor(
      ([l, n]) => (rec.logs[l] || []).length >= n && rec.logs[l],
      [label, count],
      `${count} "${label}" call(s)`,
      ms,
    );
  }

  /** `window.pushi = new Pushi(key, options)` in the page, resolved on its `connect` event. */
  async connect(key, options) {
    await this.eval(
      ([k, o]) => {
        window.pushi = new Pushi(k, o);
        return rec.once(window.pushi, "connect");
      },
      [key, options],
    );
  }

  /** Frames received, other than the connection handshake. */
  framesAfterConnect() {
    return this.received.filter((f) => f.event !== "pusher:connection_established");
  }

  close() {
    return this.page.close();
  }
}

export async function launchBrowser(site) {
  const profile = await mkdtemp(path.join(os.tmpdir(), "pushi-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Over TLS (run.sh with PUSHI_INTEROP_TLS=1) Chromium trusts exactly the test server's
    // key, by its SPKI hash, and nothing else it would not trust anyway.
    args: process.env.PUSHI_CHROMIUM_SPKI
      ? [...FLAGS, `--ignore-certificate-errors-spki-list=${process.env.PUSHI_CHROMIUM_SPKI}`]
      : FLAGS,
  });
  const tabs = new Set();
  return {
    context,
    /** A new tab of the site's test page (`origin` picks another origin of the same site server). */
    async tab(label = "tab", origin = site.origin) {
      const page = await context.newPage();
      const tab = new Tab(page, label);
      tabs.add(tab);
      page.on("close", () => tabs.delete(tab));
      await page.goto(`${origin}/index.html`);
      const version = await tab.eval(() => typeof Pushi === "function" && Pushi.VERSION);
      if (version !== "0.6.10") throw new Error(`pushi.js did not load in the page (${version})`);
      return tab;
    },
    async closeTabs() {
      await Promise.all([...tabs].map((t) => t.close().catch(() => {})));
    },
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}
