// What every test file needs: the app's site and a browser, started before its tests and
// stopped after them, plus the assertions shared by the files.

import { before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser } from "./browser.mjs";
import { startSite } from "./site.mjs";

/** Starts a site and a browser for the calling test file; fills and returns `env`. */
export function useBrowser() {
  const env = { site: null, browser: null };
  before(async () => {
    env.site = await startSite();
    env.browser = await launchBrowser(env.site);
  });
  after(async () => {
    await env.browser?.close();
    await env.site?.close();
  });
  return env;
}

/** pushi.js must not have thrown inside the page during a normal flow. */
export function assertNoPageErrors(...tabs) {
  for (const tab of tabs) assert.deepEqual(tab.errors, [], `${tab.label}: pushi.js threw in the page`);
}
