#!/usr/bin/env bash
# Pushi interop suite: the original Pushi clients, unmodified, against the pushi server.
#
#   tests/interop/pushi/run.sh              # both suites
#   tests/interop/pushi/run.sh python|node  # one suite
#   PUSHI_BIN=/path/to/pushi tests/interop/pushi/run.sh
#
# * Python: PyPI `pushi==0.6.10` (the client package; never `pushi-service` in the same venv,
#   both ship a top-level `pushi` module) in tests/interop/pushi/.venv, driven by unittest.
# * Node: node:test driving pushi.js (node/vendor/pushi.js) with `ws@8` as the WebSocket.
#
# Starts the server under test on free loopback ports (SQLite in a temp dir, open app
# creation), plus a second instance with a 2 s activity timeout for the idle-client test.
# Exits non-zero if any suite fails; the server logs are printed on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SUITES="${1:-all}"

log() { printf '[pushi-interop] %s\n' "$*" >&2; }

run_python=0; run_node=0
case "$SUITES" in
  all) run_python=1; run_node=1 ;;
  python) run_python=1 ;;
  node) run_node=1 ;;
  *) log "usage: $0 [all|python|node]"; exit 2 ;;
esac

# --- the server binary -------------------------------------------------------------------------
PUSHI_BIN="${PUSHI_BIN:-$ROOT/target/release/pushi}"
case "$PUSHI_BIN" in /*) ;; *) PUSHI_BIN="$ROOT/$PUSHI_BIN" ;; esac
if [ ! -x "$PUSHI_BIN" ]; then
  log "no server binary at $PUSHI_BIN: cargo build --release"
  (cd "$ROOT" && cargo build --release --bin pushi)
  PUSHI_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pushi"
fi

# --- dependencies (idempotent) -----------------------------------------------------------------
install_python() {
  local venv="$HERE/.venv" req="$HERE/python/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating venv $venv"
    python3 -m venv "$venv"
  fi
  if [ ! -f "$venv/.installed" ] || ! cmp -s "$req" "$venv/.installed"; then
    log "pip install -r python/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed"
  fi
  # both PyPI packages install a top-level `pushi`: make sure the service never sneaked in
  if "$venv/bin/python" -m pip show pushi-service >/dev/null 2>&1; then
    log "pushi-service is installed in $venv (it overwrites the client's module): remove it"
    exit 1
  fi
}

install_node() {
  command -v node >/dev/null || { log "node is required"; exit 1; }
  local stamp="$HERE/node/node_modules/.installed"
  if [ ! -f "$stamp" ] || ! cmp -s "$HERE/node/package-lock.json" "$stamp"; then
    log "npm ci (node/)"
    (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$HERE/node/package-lock.json" "$stamp"
  fi
}

[ "$run_python" = 1 ] && install_python
[ "$run_node" = 1 ] && install_node

# --- servers -----------------------------------------------------------------------------------
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/pushi-interop-pushi.XXXXXX")"
PIDS=()

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "$rc" != 0 ]; then
    for f in "$WORKDIR"/*.log; do
      [ -f "$f" ] || continue
      log "server log $(basename "$f") (last 150 lines):"
      tail -n 150 "$f" | sed 's/^/  | /' >&2
    done
  fi
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {
  python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# start_server NAME HTTP_PORT WS_PORT [ENV=VALUE...]
start_server() {
  local name="$1" http="$2" ws="$3"; shift 3
  mkdir -p "$WORKDIR/$name"
  env PUSHI_OPEN_APPS=1 PUSHI_LOG="${PUSHI_LOG:-info}" "$@" "$PUSHI_BIN" serve \
    --http-host 127.0.0.1 --http-port "$http" --ws-host 127.0.0.1 --ws-port "$ws" \
    --database-url "sqlite://$WORKDIR/$name/pushi.db" >"$WORKDIR/$name.log" 2>&1 &
  PIDS+=("$!")
  local pid=$!
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then log "server $name exited before becoming ready"; exit 1; fi
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$http/health" 2>/dev/null; then
      log "server $name ready (http $http, ws $ws)"
      return 0
    fi
    sleep 0.1
  done
  log "server $name not ready after 30 s"; exit 1
}

read -r HTTP_PORT WS_PORT < <(free_ports)
start_server main "$HTTP_PORT" "$WS_PORT"
export PUSHI_HTTP_URL="http://127.0.0.1:$HTTP_PORT/"
export PUSHI_WS_URL="ws://127.0.0.1:$WS_PORT/"

if [ "$run_node" = 1 ]; then
  export PUSHI_IDLE_TIMEOUT=2
  read -r IDLE_HTTP IDLE_WS < <(free_ports)
  start_server idle "$IDLE_HTTP" "$IDLE_WS" PUSHI_ACTIVITY_TIMEOUT="$PUSHI_IDLE_TIMEOUT"
  export PUSHI_IDLE_HTTP_URL="http://127.0.0.1:$IDLE_HTTP/"
  export PUSHI_IDLE_WS_URL="ws://127.0.0.1:$IDLE_WS/"
fi

# --- suites ------------------------------------------------------------------------------------
failed=()
if [ "$run_python" = 1 ]; then
  log "Python suite: PyPI pushi 0.6.10 (pushi.API)"
  if ! (cd "$HERE/python" && "$HERE/.venv/bin/python" -W ignore::DeprecationWarning -m unittest -v test_pushi_client 2>&1); then
    failed+=(python)
  fi
fi
if [ "$run_node" = 1 ]; then
  log "Node suite: pushi.js 0.6.10 (wire-faithful copy) + ws 8"
  if ! (cd "$HERE/node" && node --test --test-force-exit --test-timeout=60000 test/); then
    failed+=(node)
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED suites: ${failed[*]}"
  exit 1
fi
log "all pushi interop suites passed"
