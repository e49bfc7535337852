// A push service on a loopback port, standing in for the browser vendor's (FCM, Mozilla's
// autopush...), which this closed network cannot reach. It plays the one part a push service
// has towards an application server (RFC 8030): it accepts `POST <endpoint>` and records the
// request. The browser side of a subscription is a real P-256 key pair and auth secret made
// here, so that what the pushi server sends can be decrypted (RFC 8291, with the `http_ece`
// package) and its VAPID header checked (RFC 8292) exactly as a real push service and
// browser would.

import { createECDH, createPublicKey, randomBytes, verify } from "node:crypto";
import http from "node:http";
import ece from "http_ece";
import { sleep } from "./browser.mjs";

export async function startPushService() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ path: req.url, method: req.method, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201, { "content-type": "text/plain" });
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    received,
    /** A browser-side subscription: endpoint on this service, keys for decryption. */
    subscription(id) {
      const ecdh = createECDH("prime256v1");
      ecdh.generateKeys();
      const auth = randomBytes(16).toString("base64url");
      return {
        endpoint: `${origin}/push/${id}`,
        p256dh: ecdh.getPublicKey().toString("base64url"),
        auth,
        decrypt: (body) =>
          ece.decrypt(body, { version: "aes128gcm", privateKey: ecdh, authSecret: auth }).toString("utf8"),
      };
    },
    /** Messages received for `endpoint`, waiting up to `ms` for at least `count`. */
    async waitFor(endpoint, count = 1, ms = 5000) {
      const path = new URL(endpoint).pathname;
      const end = Date.now() + ms;
      for (;;) {
        const mine = received.filter((r) => r.path === path);
        if (mine.length >= count || Date.now() > end) return mine;
        await sleep(25);
      }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * Checks a `vapid t=<JWT>,k=<key>` Authorization header as a push service does: the JWT is
 * ES256-signed by `k`. Returns `{key, claims}`.
 */
export function checkVapid(header) {
  const match = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header ?? "");
  if (!match) throw new Error(`not a VAPID Authorization header: ${header}`);
  const [, jwt, key] = match;
  const [head, payload, signature] = jwt.split(".");
  const raw = Buffer.from(key, "base64url");
  if (raw.length !== 65 || raw[0] !== 4) throw new Error(`k is not an uncompressed P-256 point: ${key}`);
  const publicKey = createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: raw.subarray(1, 33).toString("base64url"),
      y: raw.subarray(33).toString("base64url"),
    },
    format: "jwk",
  });
  const ok = verify(
    "sha256",
    Buffer.from(`${head}.${payload}`),
    { key: publicKey, dsaEncoding: "ieee-p1363" },
    Buffer.from(signature, "base64url"),
  );
  if (!ok) throw new Error("the VAPID JWT signature does not verify with k");
  return {
    key,
    header: JSON.parse(Buffer.from(head, "base64url").toString("utf8")),
    claims: JSON.parse(Buffer.from(payload, "base64url").toString("utf8")),
  };
}
