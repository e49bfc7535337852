#!/usr/bin/env bash
# Interop suites: the official Pusher client libraries against a real pushi server.
#
#   tests/interop/run.sh            # from anywhere; builds target/release/pushi if missing
#   PUSHI_BIN=/path/to/pushi tests/interop/run.sh
#   tests/interop/run.sh node       # only the Node suite (pusher-js 8 + npm pusher 5)
#   tests/interop/run.sh python     # only the Python suite (PyPI pusher 3)
#
# Installs its own dependencies (npm ci in node/, a venv in .venv), starts the server on two free
# loopback ports with a throwaway SQLite database, runs the suites, and stops the server.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SUITES="${1:-all}"

log() { printf '[interop] %s\n' "$*" >&2; }

# --- the server binary -------------------------------------------------------------------------
PUSHI_BIN="${PUSHI_BIN:-$ROOT/target/release/pushi}"
case "$PUSHI_BIN" in /*) ;; *) PUSHI_BIN="$ROOT/$PUSHI_BIN" ;; esac
if [ ! -x "$PUSHI_BIN" ]; then
  log "no server binary at $PUSHI_BIN: cargo build --release"
  (cd "$ROOT" && cargo build --release)
  PUSHI_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pushi"
  case "$PUSHI_BIN" in /*) ;; *) PUSHI_BIN="$ROOT/$PUSHI_BIN" ;; esac
fi

# --- dependencies (idempotent) -----------------------------------------------------------------
install_node() {
  command -v node >/dev/null || { log "node is required"; exit 1; }
  cd "$HERE/node"
  local stamp=node_modules/.interop-lock
  if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
    log "npm ci (node/)"
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund --loglevel=error
    else
      npm install --no-audit --no-fund --loglevel=error
    fi
    cp package-lock.json "$stamp"
  fi
  cd "$ROOT"
}

install_python() {
  local venv="$HERE/.venv" req="$HERE/python/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating venv $venv"
    python3 -m venv "$venv"
  fi
  if [ ! -f "$venv/.interop-req" ] || ! cmp -s "$req" "$venv/.interop-req"; then
    log "pip install -r python/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.interop-req"
  fi
}

run_node=0; run_python=0
case "$SUITES" in
  all) run_node=1; run_python=1 ;;
  node) run_node=1 ;;
  python) run_python=1 ;;
  *) log "usage: $0 [all|node|python]"; exit 2 ;;
esac
[ "$run_node" = 1 ] && install_node
[ "$run_python" = 1 ] && install_python

# --- start the server --------------------------------------------------------------------------
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/pushi-interop.XXXXXX")"
SERVER_LOG="$WORKDIR/server.log"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -f "$SERVER_LOG" ]; then
    log "server log ($SERVER_LOG, last 200 lines):"
    tail -n 200 "$SERVER_LOG" | sed 's/^/  | /' >&2
  fi
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two distinct free loopback ports (bound together so they differ, then released).
read -r HTTP_PORT WS_PORT < <(python3 - <<'PY'
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
a.close(); b.close()
PY
)

export PUSHI_HOST=127.0.0.1
export PUSHI_HTTP_PORT="$HTTP_PORT" PUSHI_WS_PORT="$WS_PORT"
export PUSHI_APP_ID=4242 PUSHI_APP_KEY=interopkey0123456789 PUSHI_APP_SECRET=interopsecret0123456

log "starting $PUSHI_BIN (http $HTTP_PORT, ws $WS_PORT)"
PUSHI_LOG="${PUSHI_LOG:-info}" "$PUSHI_BIN" serve \
  --http-host 127.0.0.1 --http-port "$HTTP_PORT" \
  --ws-host 127.0.0.1 --ws-port "$WS_PORT" \
  --database-url "sqlite://$WORKDIR/pushi.db" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 300); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server exited before becoming ready"
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$HTTP_PORT/health" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  log "server not ready after 30 s (GET /health)"
  exit 1
fi
log "server ready"

# --- run the suites ----------------------------------------------------------------------------
failed=()

if [ "$run_node" = 1 ]; then
  log "Node suite: pusher-js 8 + npm pusher 5"
  # --test-force-exit: pusher-js's node transport (faye-websocket) leaves a 30 s close timer
  # behind when the server closes a socket first (terminate_connections), which would otherwise
  # keep that test file's process alive after its tests are done.
  if ! (cd "$HERE/node" && node --test --test-force-exit --test-timeout=60000 ./*.test.mjs); then
    failed+=(node)
  fi
fi

if [ "$run_python" = 1 ]; then
  log "Python suite: PyPI pusher 3"
  if ! (cd "$HERE/python" && "$HERE/.venv/bin/python" -m unittest -v test_interop 2>&1); then
    failed+=(python)
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED suites: ${failed[*]}"
  exit 1
fi
log "all interop suites passed"
