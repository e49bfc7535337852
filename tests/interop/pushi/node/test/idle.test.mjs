// pushi.js on a quiet connection. The browser client never sends anything on its own: it has
// no heartbeat and ignores (in fact throws on) a JSON `pusher:ping`, and browsers do not send
// WebSocket pings. The original server never pinged, so an idle Pushi subscriber stayed
// subscribed forever. run.sh starts a second server with a short activity timeout
// (PUSHI_ACTIVITY_TIMEOUT) so that this is observable in a few seconds.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import {
  IDLE_HTTP,
  IDLE_TIMEOUT_S,
  IDLE_WS,
  connect,
  collect,
  disposeAllTabs,
  newApp,
  once,
  sleep,
  uniq,
  waitUntil,
} from "../helpers.mjs";

after(() => disposeAllTabs());

test(
  "an idle pushi.js subscriber keeps its connection and subscriptions",
  { skip: IDLE_WS ? false : "no short-activity-timeout server (PUSHI_IDLE_WS_URL unset)" },
  async () => {
    const rest = await newApp("js-idle", IDLE_HTTP);
    const { tab, pushi } = await connect(rest.app, { baseUrl: IDLE_WS }, "idle");
    const name = uniq("quiet");
    const channel = pushi.subscribe(name);
    await once(channel, "subscribe");
    const disconnects = collect(pushi, "disconnect");
    const seen = collect(channel, "wake");

    // stay silent for longer than activity timeout + pong timeout
    await sleep((IDLE_TIMEOUT_S * 2 + 2) * 1000);
    await rest.trigger(name, "still there?", "wake");
    let delivered = true;
    await waitUntil(() => seen.length === 1, "wake", 3000).catch(() => (delivered = false));

    const serverFrames = tab.received
      .filter((f) => !["pusher:connection_established", "pusher_internal:subscription_succeeded"].includes(f.event))
      .map((f) => JSON.stringify(f));
    const detail =
      `disconnects=${disconnects.length}, sockets opened=${tab.sockets.length}, ` +
      `close code=${tab.sockets[0]._closeCode}, other frames=${serverFrames.join(" ")}, ` +
      `client errors=${JSON.stringify(tab.errors)}`;
    assert.equal(disconnects.length, 0, `idle pushi.js connection was closed: ${detail}`);
    assert.ok(delivered, `event not delivered after idling: ${detail}`);
    assert.deepEqual(tab.errors, [], `pushi.js threw on a server frame: ${detail}`);
    tab.dispose();
  },
);
