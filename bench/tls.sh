#!/usr/bin/env bash
# Plain text against TLS on the same build, back to back, ROUNDS times (alternating the order),
# measured with Node's `ws` client and the npm `pusher` SDK (bench/node/tls.mjs): handshakes/s,
# idle server memory per connection, fan-out deliveries/s. Prints one JSON line per run.
#
#   bench/tls.sh                       # 10,000 connections, 2,000 subscribers x 50 events, 3 rounds
#   CONNS=2000 SUBS=500 ROUNDS=1 bench/tls.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PUSHI_BIN:-$ROOT/target/release/pushi}"
ROUNDS="${ROUNDS:-3}" CONNS="${CONNS:-10000}" SUBS="${SUBS:-2000}" EVENTS="${EVENTS:-50}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

(cd "$ROOT/bench/node" && [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error)

# A throwaway CA and a certificate for 127.0.0.1 (ECDSA P-256, as an ACME client would issue).
. "$ROOT/tests/interop/tls-pki.sh"
make_test_pki "$WORK"
unset APP_SSL APP_SSL_KEY APP_SSL_CER SERVER_SSL SERVER_SSL_KEY SERVER_SSL_CER
export PUSHI_APP_ID=1 PUSHI_APP_KEY=benchkey PUSHI_APP_SECRET=benchsecret PUSHI_LOG=warn
export PUSHI_MAX_CONNECTIONS_PER_IP=100000

run() {
  local mode=$1 port=18301 args=()
  [ "$mode" = tls ] && args=(--http-ssl-key "$WORK/server.key" --http-ssl-cer "$WORK/server.pem")
  "$BIN" serve --port $port --database-url sqlite::memory: "${args[@]}" >"$WORK/server.log" 2>&1 &
  local pid=$!
  local scheme=http ws=ws
  [ "$mode" = tls ] && scheme=https ws=wss
  for _ in $(seq 100); do
    curl -fsS "${CURL_TLS[@]}" -o /dev/null "$scheme://127.0.0.1:$port/health" 2>/dev/null && break
    sleep 0.1
  done
  node "$ROOT/bench/node/tls.mjs" --url "$ws://127.0.0.1:$port" --http "$scheme://127.0.0.1:$port" \
    --pid $pid --conns "$CONNS" --subs "$SUBS" --events "$EVENTS" | sed "s/^/{\"mode\":\"$mode\",/; s/,{/,/"
  kill $pid; wait $pid 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run plain; run tls; else run tls; run plain; fi
done
