// Shared harness for the pushi.js interop tests.
//
// * `openTab()` loads vendor/pushi.js into a fresh `vm` context, the way a browser tab loads
//   the script: its own globals (so its own PUSHI_CONNECTIONS cache), `ws` as `WebSocket`, a
//   tiny XMLHttpRequest built on node:http, and timers that the test can cancel. Exceptions
//   thrown by the client inside `onmessage` are caught and recorded in `tab.errors`, as a
//   browser would report them to the console and carry on.
// * `Rest` speaks to the REST API exactly as the `pushi` Python client does (`?sid=` token).
// * `startAuthServer()` is the app's own auth endpoint that pushi.js calls for private,
//   presence and personal channels: `GET /<app>/<user>[/peer]?socket_id=&channel=` →
//   `{auth, channel_data}`, signed the Pushi way: HMAC-SHA256(secret, "socket_id:channel").

import { readFileSync } from "node:fs";
import { createHmac, randomUUID } from "node:crypto";
import http from "node:http";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";

export const HTTP = process.env.PUSHI_HTTP_URL ?? "http://127.0.0.1:8080/";
export const WS = process.env.PUSHI_WS_URL ?? "ws://127.0.0.1:9090/";
// A second server started with a short activity timeout (see run.sh); optional.
export const IDLE_HTTP = process.env.PUSHI_IDLE_HTTP_URL ?? null;
export const IDLE_WS = process.env.PUSHI_IDLE_WS_URL ?? null;
export const IDLE_TIMEOUT_S = Number(process.env.PUSHI_IDLE_TIMEOUT ?? "2");

const SOURCE = readFileSync(
  fileURLToPath(new URL("./vendor/pushi.js", import.meta.url)),
  "utf8",
);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Host-realm plain copy of a value produced inside a tab (for deepStrictEqual). */
export const plain = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

/** Polls `fn` until it returns a truthy value; rejects with `what` after `ms`. */
export async function waitUntil(fn, what = "condition", ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(15);
  }
}

/** Resolves with the listener arguments (event name first) the next time `event` fires. */
export function once(observable, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      observable.unbind(event, listener);
      reject(new Error(`timed out waiting for "${event}"`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    observable.bind(event, listener, true);
  });
}

// ---------------------------------------------------------------------------------------------
// Browser-tab emulation

class TabXMLHttpRequest {
  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.responseText = "";
    this.onreadystatechange = null;
    this.withCredentials = false;
    this._headers = {};
  }
  open(method, url) {
    this._method = method.toUpperCase();
    this._url = url;
    this.readyState = 1;
  }
  setRequestHeader(name, value) {
    this._headers[name] = value;
  }
  send(body) {
    const req = http.request(this._url, { method: this._method, headers: this._headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => {
        this.status = res.statusCode;
        this.responseText = text;
        this.readyState = 4;
        this.onreadystatechange && this.onreadystatechange();
      });
    });
    req.on("error", () => {
      this.readyState = 4;
      this.onreadystatechange && this.onreadystatechange();
    });
    if (body != null) req.write(body);
    req.end();
  }
}

const openTabs = new Set();

/**
 * A fresh "browser tab" with pushi.js loaded. Returns {Pushi, Channel, Observable, errors,
 * received, sent, sockets, dispose}. `received`/`sent` hold every parsed frame (diagnostics).
 */
export function openTab(label = "tab") {
  const errors = [];
  const received = [];
  const sent = [];
  const sockets = [];
  const timers = new Set();

  class TabWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
      this.on("error", () => {}); // the client has no onerror; never crash the runner
    }
    send(data) {
      try {
        sent.push(JSON.parse(data));
      } catch {
        sent.push(data);
      }
      super.send(data);
    }
    set onmessage(fn) {
      super.onmessage = (event) => {
        try {
          received.push(JSON.parse(event.data));
        } catch {
          received.push(event.data);
        }
        try {
          fn.call(this, event);
        } catch (error) {
          errors.push({ error: String(error), frame: event.data });
        }
      };
    }
    get onmessage() {
      return super.onmessage;
    }
  }

  const context = vm.createContext({
    WebSocket: TabWebSocket,
    XMLHttpRequest: TabXMLHttpRequest,
    console,
    setTimeout: (fn, ms, ...args) => {
      const t = setTimeout(() => {
        timers.delete(t);
        fn(...args);
      }, ms);
      timers.add(t);
      return t;
    },
    clearTimeout: (t) => {
      timers.delete(t);
      clearTimeout(t);
    },
  });
  vm.runInContext(SOURCE, context, { filename: "pushi.js" });
  const tab = {
    label,
    Pushi: context.Pushi,
    Channel: context.Channel,
    Observable: context.Observable,
    errors,
    received,
    sent,
    sockets,
    dispose() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) {
        s.onclose = null; // no reconnect
        try {
          s.terminate();
        } catch {}
      }
      openTabs.delete(tab);
    },
  };
  openTabs.add(tab);
  return tab;
}

export function disposeAllTabs() {
  for (const tab of [...openTabs]) tab.dispose();
}

/** Opens a tab, creates `new Pushi(app.key, options)` and waits for its `connect` event. */
export async function connect(app, options = {}, label = "tab") {
  const tab = openTab(label);
  const pushi = new tab.Pushi(app.key, { baseUrl: options.baseUrl ?? WS, ...options });
  await once(pushi, "connect");
  return { tab, pushi };
}

// ---------------------------------------------------------------------------------------------
// REST, the way the Python client calls it

export class HttpError extends Error {
  constructor(method, url, status, body) {
    super(`${method} ${url} -> ${status}: ${body}`);
    this.status = status;
    this.body = body;
  }
}

export async function http_json(method, url, { body, headers } = {}) {
  const res = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new HttpError(method, url, res.status, text);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class Rest {
  constructor(app, base = HTTP) {
    this.app = app;
    this.base = base;
    this.token = null;
  }
  static async createApp(name, base = HTTP) {
    const app = await http_json("POST", base + "apps", { body: { name } });
    return new Rest(app, base);
  }
  async login() {
    const q = new URLSearchParams({
      app_id: this.app.ident,
      app_key: this.app.key,
      app_secret: this.app.secret,
    });
    this.token = (await http_json("GET", `${this.base}login?${q}`)).token;
    return this.token;
  }
  async call(method, path, { body, query = {} } = {}) {
    if (!this.token) await this.login();
    const q = new URLSearchParams({ ...query, sid: this.token });
    return http_json(method, `${this.base}${path}?${q}`, { body });
  }
  /** Python client `trigger_event(channel, data, event, persist, **extra)`. */
  trigger(channel, data, event = "message", persist = true, extra = {}) {
    return this.call("POST", "events", { body: { data, event, channel, persist, ...extra } });
  }
  subscribe(user_id, event) {
    return this.call("POST", "subscriptions", { body: { user_id, event } });
  }
  unsubscribe(user_id, event) {
    return this.call("DELETE", `subscriptions/${user_id}/${event}`);
  }
  updateApp(fields) {
    return this.call("PUT", `apps/${this.app.ident}`, { body: fields });
  }
}

export const uniq = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Creates an app (open app creation) and returns a logged-in Rest for it. */
export async function newApp(prefix = "js", base = HTTP) {
  const rest = await Rest.createApp(uniq(prefix), base);
  await rest.login();
  return rest;
}

// ---------------------------------------------------------------------------------------------
// The app's auth endpoint

export function pushiSign(app, socketId, channel) {
  const digest = createHmac("sha256", app.secret).update(`${socketId}:${channel}`).digest("hex");
  return `${app.key}:${digest}`;
}

/**
 * Starts the auth endpoint. Register apps with `register(app)` → prefix; a tab's authEndpoint
 * is `url(app, user, {peer, info, badSignature})`. Every call is logged in `calls`.
 */
export async function startAuthServer() {
  const apps = new Map();
  const calls = [];
  const server = http.createServer((req, res) => {
    const [path, query = ""] = req.url.split("?");
    // pushi.js does not encode the channel: split the query by hand, not URLSearchParams
    const params = {};
    for (const part of query.split("&")) {
      const at = part.indexOf("=");
      if (at > 0) params[part.slice(0, at)] = part.slice(at + 1);
    }
    const [, appIdx, user, flags = ""] = path.split("/");
    const app = apps.get(appIdx);
    calls.push({ path, params });
    if (!app) {
      res.writeHead(404, { "content-type": "application/json" });
      return res.end("{}");
    }
    const { socket_id, channel } = params;
    let auth = pushiSign(app, socket_id, channel);
    if (flags.includes("bad")) auth = pushiSign({ ...app, secret: "not-the-secret" }, socket_id, channel);
    const body = { auth };
    if (channel.startsWith("presence-")) {
      const userId = decodeURIComponent(user);
      body.channel_data = { user_id: userId, user_info: { name: userId.toUpperCase() } };
      if (flags.includes("peer")) body.channel_data.peer = true;
    }
    res.writeHead(200, { "content-type": "application/json", "access-control-allow-origin": "*" });
    res.end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  let n = 0;
  return {
    calls,
    register(app) {
      const idx = String(++n);
      apps.set(idx, app);
      app.__authIdx = idx;
      return idx;
    },
    url(app, user = "anon", { peer = false, bad = false } = {}) {
      const flags = [peer && "peer", bad && "bad"].filter(Boolean).join("+") || "none";
      return `${base}/${app.__authIdx}/${encodeURIComponent(user)}/${flags}`;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Events bound on an observable, collected as [name, ...args] arrays. */
export function collect(observable, ...events) {
  const seen = [];
  for (const e of events) observable.bind(e, (...args) => seen.push(plain(args)));
  return seen;
}
