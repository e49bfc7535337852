// The pushi server's REST API, spoken the way the `pushi` Python client speaks it (a `?sid=`
// token from `GET /login`), plus the Pushi channel signature. Tests use it to create apps,
// publish events and look at server state independently of the browser.

import { createHmac, randomUUID } from "node:crypto";

export const HTTP = process.env.PUSHI_HTTP_URL ?? "http://127.0.0.1:8080/";
export const WS = process.env.PUSHI_WS_URL ?? "ws://127.0.0.1:9090/";
// A second server started with a short activity timeout (see run.sh); optional.
export const IDLE_HTTP = process.env.PUSHI_IDLE_HTTP_URL ?? null;
export const IDLE_WS = process.env.PUSHI_IDLE_WS_URL ?? null;
export const IDLE_TIMEOUT_S = Number(process.env.PUSHI_IDLE_TIMEOUT ?? "2");

export const uniq = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

export class HttpError extends Error {
  constructor(method, url, status, body) {
    super(`${method} ${url} -> ${status}: ${body}`);
    this.status = status;
    this.body = body;
  }
}

export async function httpJson(method, url, { body, headers } = {}) {
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
    const app = await httpJson("POST", base + "apps", { body: { name } });
    return new Rest(app, base);
  }
  async login() {
    const q = new URLSearchParams({
      app_id: this.app.ident,
      app_key: this.app.key,
      app_secret: this.app.secret,
    });
    this.token = (await httpJson("GET", `${this.base}login?${q}`)).token;
    return this.token;
  }
  async call(method, path, { body, query = {} } = {}) {
    if (!this.token) await this.login();
    const q = new URLSearchParams({ ...query, sid: this.token });
    return httpJson(method, `${this.base}${path}?${q}`, { body });
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
  async webPushes(query = {}) {
    return (await this.call("GET", "web_pushes", { query })).subscriptions;
  }
}

/** Creates an app (the suite runs the server with open app creation) and logs in. */
export async function newApp(prefix = "js", base = HTTP) {
  const rest = await Rest.createApp(uniq(prefix), base);
  await rest.login();
  return rest;
}

/** Pushi's signature: `key:hex(HMAC-SHA256(secret, "<subject>:<channel>"))`. */
export function pushiSign(app, subject, channel, secret = app.secret) {
  const digest = createHmac("sha256", secret).update(`${subject}:${channel}`).digest("hex");
  return `${app.key}:${digest}`;
}
