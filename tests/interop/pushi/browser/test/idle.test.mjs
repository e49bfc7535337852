// pushi.js on a quiet connection. The browser client never sends anything on its own: it has
// no heartbeat and cannot route a JSON `pusher:ping`; a browser answers WebSocket ping frames
// by itself. The original server never pinged, so an idle Pushi subscriber stayed subscribed
// forever. run.sh starts a second server with a short activity timeout
// (PUSHI_ACTIVITY_TIMEOUT) so that this is observable in a few seconds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sleep } from "../harness/browser.mjs";
import { IDLE_HTTP, IDLE_TIMEOUT_S, IDLE_WS, newApp, uniq } from "../harness/rest.mjs";
import { useBrowser } from "../harness/suite.mjs";

const env = useBrowser();

test(
  "an idle pushi.js subscriber keeps its connection and subscriptions",
  { skip: IDLE_WS ? false : "no short-activity-timeout server (PUSHI_IDLE_WS_URL unset)" },
  async () => {
    const rest = await newApp("js-idle", IDLE_HTTP);
    const tab = await env.browser.tab("idle");
    await tab.connect(rest.app.key, { baseUrl: IDLE_WS });
    const name = uniq("quiet");
    await tab.eval(async (n) => {
      window.c = pushi.subscribe(n);
      await rec.once(c, "subscribe");
      rec.collect(pushi, "disconnects", "disconnect");
      rec.collect(c, "wake", "wake");
    }, name);

    // stay silent for longer than activity timeout + pong timeout
    await sleep((IDLE_TIMEOUT_S * 2 + 2) * 1000);
    await rest.trigger(name, "still there?", "wake");
    const delivered = await tab.waitLog("wake", 1, 3000).then(
      () => true,
      () => false,
    );
    const detail = () =>
      `sockets opened=${tab.sockets.length}, first closed=${tab.sockets[0].closed}, ` +
      `other frames=${tab.framesAfterConnect().map((f) => JSON.stringify(f)).join(" ")}, ` +
      `page errors=${JSON.stringify(tab.errors)}`;
    assert.deepStrictEqual(await tab.log("disconnects"), [], `idle connection was closed: ${detail()}`);
    assert.ok(delivered, `event not delivered after idling: ${detail()}`);
    assert.deepEqual(tab.errors, [], `pushi.js threw on a server frame: ${detail()}`);
    await tab.close();
  },
);
