#!/usr/bin/env bash
# Where an idle TLS connection's extra memory goes: the server under heaptrack, N idle
# WebSockets opened by Node's `ws` (bench/node/tls.mjs), once in plain text and once over TLS;
# the heap at its peak is split by allocation site and the difference printed per connection.
#
#   bench/tls_heap.sh              # 1,000 connections, 50 handshakes in flight
#   CONNS=2000 bench/tls_heap.sh
#
# Needs heaptrack (apt-get install heaptrack) and a release build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PUSHI_BIN:-$ROOT/target/release/pushi}"
CONNS="${CONNS:-1000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
command -v heaptrack >/dev/null || { echo "heaptrack is needed: apt-get install heaptrack" >&2; exit 1; }
(cd "$ROOT/bench/node" && [ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error)

. "$ROOT/tests/interop/tls-pki.sh"
make_test_pki "$WORK" >/dev/null 2>&1
unset APP_SSL APP_SSL_KEY APP_SSL_CER SERVER_SSL SERVER_SSL_KEY SERVER_SSL_CER
export PUSHI_APP_ID=1 PUSHI_APP_KEY=benchkey PUSHI_APP_SECRET=benchsecret PUSHI_LOG=warn
export PUSHI_MAX_CONNECTIONS_PER_IP=100000

run() {
  local mode=$1 port=18302 args=() scheme=http ws=ws
  if [ "$mode" = tls ]; then
    args=(--http-ssl-key "$WORK/server.key" --http-ssl-cer "$WORK/server.pem")
    scheme=https ws=wss
  fi
  heaptrack -o "$WORK/$mode" "$BIN" serve --port $port --database-url sqlite::memory: "${args[@]}" \
    >"$WORK/$mode.log" 2>&1 &
  local pid=""
  for _ in $(seq 150); do
    pid=$(pgrep -f "^$BIN serve --port $port" | head -1 || true)
    [ -n "$pid" ] && curl -fsS "${CURL_TLS[@]}" -o /dev/null "$scheme://127.0.0.1:$port/health" 2>/dev/null && break
    sleep 0.2
  done
  node "$ROOT/bench/node/tls.mjs" --url "$ws://127.0.0.1:$port" --http "$scheme://127.0.0.1:$port" \
    --pid "$pid" --conns "$CONNS" --subs 10 --events 1 --inflight 50 >&2
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  wait || true
  heaptrack_print -f "$WORK/$mode.zst" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --print-histogram 0 -F "$WORK/$mode.folded" --flamegraph-cost-type peak >/dev/null
}

run plain
run tls
python3 - "$WORK/plain.folded" "$WORK/tls.folded" "$CONNS" <<'PY'
import collections, sys
# First match wins: the most specific sites first.
sites = [
    ("rustls record read buffer (DeframerVecBuffer)", "DeframerVecBuffer"),
    ("AES-GCM keys, both directions (ring)", "AeadAlgorithm::"),
    ("TLS stream boxed at the WebSocket upgrade", "hyper::upgrade::Upgraded::new"),
    ("rustls connection core", "ConnectionCore$LT$Data$GT$::new"),
    ("rustls outgoing/plaintext chunks", "ChunkVecBuffer"),
    ("rustls handshake (in flight at the peak)", "rustls::server::hs"),
    ("rustls, other", "rustls::"),
    ("hyper, other", "hyper::"),
    ("tungstenite", "tungstenite"),
    ("pushi listener (accept tasks)", "pushi::listener"),
    ("pushi hub", "pushi::hub"),
    ("everything else", ""),
]
def split(path):
    out = collections.Counter()
    for line in open(path):
        stack, _, cost = line.rstrip().rpartition(" ")
        if not cost.isdigit():
            continue
        for name, key in sites:
            if key in stack:
                out[name] += int(cost)
                break
    return out
plain, tls, n = split(sys.argv[1]), split(sys.argv[2]), int(sys.argv[3])
print(f"heap at its peak, {n} idle WebSockets (bytes per connection)")
print(f"{'site':50} {'plain':>8} {'TLS':>8} {'TLS - plain':>12}")
for name, _ in sites:
    print(f"{name:50} {plain[name]/n:8.0f} {tls[name]/n:8.0f} {(tls[name]-plain[name])/n:12.0f}")
tp, tt = sum(plain.values()), sum(tls.values())
print(f"{'total':50} {tp/n:8.0f} {tt/n:8.0f} {(tt-tp)/n:12.0f}")
PY
