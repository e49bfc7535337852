// The web site of an app that uses pushi.js, on a loopback port: the test page, the original
// pushi.js (read from ../shared, never copied into the project), the page-side recorder, a
// service worker for the Web Push helpers (and the push-manager stand-in, see
// site/push-stub.js), and the app's auth endpoint that pushi.js calls for
// private, presence and personal channels:
//   GET /auth/<app>/<user>/<flags>?socket_id=&channel=  ->  {auth, channel_data}
// signed the Pushi way, HMAC-SHA256(secret, "socket_id:channel"). The endpoint lives on the
// page's own origin, as an app's backend would, so pushi.js calls it without CORS.

import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { pushiSign } from "./rest.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// tests/interop/pushi/browser/harness -> the repository root, whose parent holds shared/
const REPO_ROOT = path.resolve(HERE, "../../../../..");
export const PUSHI_JS =
  process.env.PUSHI_JS_PATH ?? path.resolve(REPO_ROOT, "../shared/vendor/pushi-js-0.6.10/pushi.js");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>pushi.js interop</title>
<script src="/pushi.js"></script>
<script src="/recorder.js"></script>
</head><body></body></html>`;

function staticFile(name) {
  return readFileSync(path.join(HERE, "../site", name), "utf8");
}

export async function startSite() {
  if (!existsSync(PUSHI_JS)) {
    throw new Error(
      `the original pushi.js is not at ${PUSHI_JS}: it is a fixture in shared/vendor beside the ` +
        "repository (set PUSHI_JS_PATH to point elsewhere)",
    );
  }
  const files = {
    "/": ["text/html", PAGE],
    "/index.html": ["text/html", PAGE],
    "/pushi.js": ["text/javascript", readFileSync(PUSHI_JS, "utf8")],
    "/recorder.js": ["text/javascript", staticFile("recorder.js")],
    "/sw.js": ["text/javascript", staticFile("sw.js")],
    "/push-stub.js": ["text/javascript", staticFile("push-stub.js")],
  };
  const apps = new Map();
  const authCalls = [];

  const server = http.createServer((req, res) => {
    const [pathname, query = ""] = req.url.split("?");
    if (pathname.startsWith("/auth/")) return answerAuth(pathname, query, res);
    const file = files[pathname];
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    res.writeHead(200, { "content-type": `${file[0]}; charset=utf-8`, "cache-control": "no-store" });
    res.end(file[1]);
  });

  function answerAuth(pathname, query, res) {
    // pushi.js does not encode the channel: split the query by hand, not URLSearchParams
    const params = {};
    for (const part of query.split("&")) {
      const at = part.indexOf("=");
      if (at > 0) params[part.slice(0, at)] = part.slice(at + 1);
    }
    const [, , appIdx, user, flags = ""] = pathname.split("/");
    const app = apps.get(appIdx);
    authCalls.push({ path: pathname, params });
    if (!app || !params.socket_id || !params.channel) {
      res.writeHead(404, { "content-type": "application/json" });
      return res.end("{}");
    }
    const { socket_id, channel } = params;
    const secret = flags.includes("bad") ? "not-the-secret" : app.secret;
    const body = { auth: pushiSign(app, socket_id, channel, secret) };
    if (channel.startsWith("presence-")) {
      const userId = decodeURIComponent(user);
      body.channel_data = { user_id: userId, user_info: { name: userId.toUpperCase() } };
      if (flags.includes("peer")) body.channel_data.peer = true;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  let registered = 0;
  return {
    /** The page's origin; `localhost` gives a second site on the same server. */
    origin: `http://127.0.0.1:${port}`,
    otherSiteOrigin: `http://localhost:${port}`,
    authCalls,
    /** Makes the auth endpoint sign for `app`. */
    register(app) {
      const idx = String(++registered);
      apps.set(idx, app);
      app.__authIdx = idx;
    },
    /** The authEndpoint option for a tab of `user`: same origin as the page, so relative. */
    authEndpoint(app, user = "anon", { peer = false, bad = false } = {}) {
      const flags = [peer && "peer", bad && "bad"].filter(Boolean).join("+") || "none";
      return `/auth/${app.__authIdx}/${encodeURIComponent(user)}/${flags}`;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
