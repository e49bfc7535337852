// Plain text against TLS, measured with Node's `ws` client and the npm `pusher` SDK (clients this
// project did not write), on one server process per run (bench/tls.sh starts them):
//
//   handshakes/s   N WebSockets opened with C in flight, until each has connection_established
//   KiB/conn       server RSS growth from before the first connection to N idle connections,
//                  after a settle pause (the server's /proc/PID/status VmRSS)
//   fan-out        S of those sockets on one channel; E events triggered over the HTTP API (TLS
//                  when the run is TLS): deliveries/s from the first trigger to the last receipt
//
// usage: node tls.mjs --url ws[s]://127.0.0.1:PORT --http http[s]://127.0.0.1:PORT --pid PID
//          [--conns 10000] [--inflight 200] [--subs 2000] [--events 50] [--settle 3000 (ms)]
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Pusher from 'pusher';
import WebSocket from 'ws';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, v, i, all) => (i % 2 ? pairs : [...pairs, [v.replace(/^--/, ''), all[i + 1]]]), []),
);
const conns = Number(args.conns ?? 10000);
const inflight = Number(args.inflight ?? 200);
const subs = Math.min(Number(args.subs ?? 2000), conns);
const events = Number(args.events ?? 50);
const key = process.env.PUSHI_APP_KEY ?? 'benchkey';

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

function open() {
  return new Promise((resolve, reject) => {
    // Browser-like headers, permessage-deflate offered as browsers do.
    const ws = new WebSocket(`${args.url}/app/${key}?protocol=7&client=js&version=8.4.0&flash=false`, {
      headers: {
        Origin: 'https://app.example.com',
        'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36',
        'Accept-Language': 'en-US,en;q=0.9',
        Cookie: 'session=0123456789abcdef0123456789abcdef; theme=dark',
      },
      perMessageDeflate: true,
    });
    ws.once('message', (data) => {
      const frame = JSON.parse(data);
      if (frame.event === 'pusher:connection_established') resolve(ws);
      else reject(new Error(`unexpected first frame ${data}`));
    });
    ws.once('error', reject);
  });
}

const before = rssKiB(args.pid);
const sockets = [];
const started = process.hrtime.bigint();
let next = 0;
async function worker() {
  while (next < conns) {
    next += 1;
    sockets.push(await open());
  }
}
await Promise.all(Array.from({ length: inflight }, worker));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await sleep(Number(args.settle ?? 3000));
const after = rssKiB(args.pid);

// Fan-out: `subs` sockets on one channel.
const channel = `fanout-${process.pid}`;
let received = 0;
let lastAt = 0n;
await Promise.all(
  sockets.slice(0, subs).map(
    (ws) =>
      new Promise((resolve) => {
        ws.on('message', (data) => {
          const text = data.toString();
          if (text.includes('subscription_succeeded')) resolve();
          else if (text.includes('"bench"')) {
            received += 1;
            lastAt = process.hrtime.bigint();
          }
        });
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
      }),
  ),
);
const http = new URL(args.http);
const sdk = new Pusher({
  appId: process.env.PUSHI_APP_ID ?? '1',
  key,
  secret: process.env.PUSHI_APP_SECRET ?? 'benchsecret',
  host: http.hostname,
  port: http.port,
  useTLS: http.protocol === 'https:',
});
const firstAt = process.hrtime.bigint();
for (let i = 0; i < events; i += 1) {
  await sdk.trigger(channel, 'bench', { i, pad: 'x'.repeat(100) });
}
const expected = subs * events;
for (let waited = 0; received < expected && waited < 30000; waited += 50) await sleep(50);
const fanSeconds = Number(lastAt - firstAt) / 1e9;

const result = {
  url: args.url,
  conns: sockets.length,
  handshakes_per_s: Math.round(sockets.length / seconds),
  kib_per_conn: Number(((after - before) / sockets.length).toFixed(2)),
  server_rss_mib: Number((after / 1024).toFixed(1)),
  fanout_subscribers: subs,
  fanout_events: events,
  fanout_received: received,
  fanout_deliveries_per_s: Math.round(received / fanSeconds),
};
console.log(JSON.stringify(result));
for (const ws of sockets) ws.terminate();
process.exit(received === expected ? 0 : 1);
