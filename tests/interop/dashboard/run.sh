#!/usr/bin/env bash
# The dashboard in a real browser: headless Chromium (Debian `chromium`, driven by
# playwright-core) signs in, creates an app, watches a pusher-js client in the live view,
# publishes from the form, retries a failed delivery and checks one app cannot see another.
#
#   tests/interop/dashboard/run.sh              # the suite
#   tests/interop/dashboard/run.sh screenshot   # the suite, saving docs/dashboard.png
#   PUSHI_BIN=/path/to/pushi tests/interop/dashboard/run.sh
#
# Starts the server under test on free loopback ports with an admin token and an empty SQLite
# store in a temp dir; prints its log on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
log() { printf '[dashboard] %s\n' "$*" >&2; }

if [ "${1:-}" = screenshot ]; then
  export PUSHI_DASHBOARD_SCREENSHOT="$ROOT/docs/dashboard.png"
fi

PUSHI_BIN="${PUSHI_BIN:-$ROOT/target/release/pushi}"
case "$PUSHI_BIN" in /*) ;; *) PUSHI_BIN="$ROOT/$PUSHI_BIN" ;; esac
if [ ! -x "$PUSHI_BIN" ]; then
  log "no server binary at $PUSHI_BIN: cargo build --release"
  (cd "$ROOT" && cargo build --release --bin pushi)
fi

command -v node >/dev/null || { log "node is required"; exit 1; }
export PUSHI_CHROMIUM="${PUSHI_CHROMIUM:-/usr/bin/chromium}"
[ -x "$PUSHI_CHROMIUM" ] || { log "no Chromium at $PUSHI_CHROMIUM: apt-get install -y chromium"; exit 1; }
stamp="$HERE/node_modules/.installed"
if [ ! -f "$stamp" ] || ! cmp -s "$HERE/package-lock.json" "$stamp"; then
  log "npm ci"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$HERE/package-lock.json" "$stamp"
fi

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/pushi-dashboard.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -f "$WORKDIR/server.log" ]; then
    log "server log (last 150 lines):"
    tail -n 150 "$WORKDIR/server.log" | sed 's/^/  | /' >&2
  fi
  [ "$rc" = 0 ] || print_failed_suites
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$HERE/../report.sh"

read -r HTTP_PORT WS_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)
export PUSHI_ADMIN_TOKEN="dashboard-suite-$RANDOM$RANDOM"
# The suite's webhook receiver is on loopback, which deliveries refuse unless allowed.
PUSHI_OUTBOUND_ALLOW=127.0.0.0/8 PUSHI_LOG="${PUSHI_LOG:-info}" PUSHI_DELIVERY_BACKOFF_MS=60000 "$PUSHI_BIN" serve \
  --http-host 127.0.0.1 --http-port "$HTTP_PORT" --ws-host 127.0.0.1 --ws-port "$WS_PORT" \
  --database-url "sqlite://$WORKDIR/pushi.db" >"$WORKDIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || { log "the server exited before becoming ready"; exit 1; }
  curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$HTTP_PORT/health" 2>/dev/null && break
  sleep 0.1
done
log "server ready (http $HTTP_PORT, ws $WS_PORT)"

export PUSHI_HTTP_URL="http://127.0.0.1:$HTTP_PORT" PUSHI_WS_PORT="$WS_PORT"
cd "$HERE"
run_suite dashboard node --test --test-force-exit --test-timeout=120000 test/
