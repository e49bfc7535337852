#!/usr/bin/env bash
# Interop suites: the official Pusher client libraries against a real pushi server.
#
#   tests/interop/run.sh            # from anywhere; builds target/release/pushi if missing
#   PUSHI_BIN=/path/to/pushi tests/interop/run.sh
#   tests/interop/run.sh node       # only the Node suite (pusher-js 8 + npm pusher 5)
#   tests/interop/run.sh python     # only the Python suite (PyPI pusher 3)
#   PUSHI_INTEROP_TLS=1 tests/interop/run.sh   # the same over https:// and wss:// only
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

# --- start the server ---------------------------------------------------------------------------
# With PUSHI_INTEROP_CLUSTER=redis://... or nats://..., two nodes of one cluster are started and
# the clients are spread across them: WebSocket clients on node A, HTTP API calls on node B.
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/pushi-interop.XXXXXX")"
SERVER_LOG="$WORKDIR/server.log"
SERVER_PIDS=()

cleanup() {
  local rc=$?
  for pid in "${SERVER_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$rc" != 0 ]; then
    for f in "$WORKDIR"/*.log; do
      [ -f "$f" ] || continue
      log "server log ($f, last 200 lines):"
      tail -n 200 "$f" | sed 's/^/  | /' >&2
    done
    print_failed_suites
  fi
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$HERE/report.sh"

# Four distinct free loopback ports (bound together so they differ, then released).
read -r HTTP_PORT WS_PORT OTHER_HTTP OTHER_WS < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
PY
)

export PUSHI_HOST=127.0.0.1
export PUSHI_HTTP_PORT="$HTTP_PORT" PUSHI_WS_PORT="$WS_PORT"
export PUSHI_APP_ID=4242 PUSHI_APP_KEY=interopkey0123456789 PUSHI_APP_SECRET=interopsecret0123456
# A second app, declared in a TOML file, with Pusher's subscription counting turned on.
export PUSHI_COUNTING_APP_ID=4243 PUSHI_COUNTING_APP_KEY=countingkey012345678
export PUSHI_COUNTING_APP_SECRET=countingsecret012345
cat >"$WORKDIR/pushi.toml" <<TOML
[[apps]]
id = "$PUSHI_COUNTING_APP_ID"
key = "$PUSHI_COUNTING_APP_KEY"
secret = "$PUSHI_COUNTING_APP_SECRET"
name = "counting"
subscription_count = true
TOML
export PUSHI_CONFIG="$WORKDIR/pushi.toml"
# The cluster check below reads /health/detailed, which is the operator's.
export PUSHI_ADMIN_TOKEN="interop-admin-token-$$"

# --- TLS (PUSHI_INTEROP_TLS=1): https/wss only, with a throwaway CA -------------------------------
. "$HERE/tls-pki.sh"
if [ "${PUSHI_INTEROP_TLS:-0}" = 1 ]; then
  log "TLS: a throwaway CA and a server certificate"
  make_test_pki "$WORKDIR"
fi

# start_node NAME HTTP_PORT WS_PORT [extra args...]
start_node() {
  local name=$1 http=$2 ws=$3
  shift 3
  log "starting $name: $PUSHI_BIN (http $http, ws $ws) $*"
  PUSHI_LOG="${PUSHI_LOG:-info}" "$PUSHI_BIN" serve \
    --http-host 127.0.0.1 --http-port "$http" \
    --ws-host 127.0.0.1 --ws-port "$ws" "$@" >"$WORKDIR/$name.log" 2>&1 &
  SERVER_PIDS+=($!)
  for _ in $(seq 300); do
    if ! kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null; then
      log "$name exited before becoming ready"
      exit 1
    fi
    if curl -fsS "${CURL_TLS[@]}" -o /dev/null --max-time 1 "$SCHEME://127.0.0.1:$http/health/ready" 2>/dev/null; then
      log "$name ready"
      return 0
    fi
    sleep 0.1
  done
  log "$name not ready after 30 s (GET /health/ready)"
  exit 1
}

if [ -n "${PUSHI_INTEROP_CLUSTER:-}" ]; then
  cluster=(--cluster "$PUSHI_INTEROP_CLUSTER")
  export PUSHI_CLUSTER_NAMESPACE="interop-$$-$RANDOM"
  start_node node-a "$OTHER_HTTP" "$WS_PORT" "${cluster[@]}" --node-id node-a \
    --database-url "sqlite://$WORKDIR/a.db"
  start_node node-b "$HTTP_PORT" "$OTHER_WS" "${cluster[@]}" --node-id node-b \
    --database-url "sqlite://$WORKDIR/b.db"
  for _ in $(seq 100); do
    if curl -fsS "${CURL_TLS[@]}" --max-time 1 -H "Authorization: Bearer $PUSHI_ADMIN_TOKEN" \
      "$SCHEME://127.0.0.1:$HTTP_PORT/health/detailed" 2>/dev/null | grep -q '"peers":\["node-a"\]'; then
      log "cluster formed (WebSocket clients on node-a, HTTP API on node-b)"
      break
    fi
    sleep 0.1
  done
else
  start_node server "$HTTP_PORT" "$WS_PORT" --database-url "sqlite://$WORKDIR/pushi.db"
fi

# --- run the suites ----------------------------------------------------------------------------
failed=()

if [ "$run_node" = 1 ]; then
  log "Node suite: pusher-js 8 + npm pusher 5"
  # --test-force-exit: pusher-js's node transport (faye-websocket) leaves a 30 s close timer
  # behind when the server closes a socket first (terminate_connections), which would otherwise
  # keep that test file's process alive after its tests are done.
  if ! run_suite node bash -c 'cd "$1/node" && node --test --test-force-exit --test-timeout=60000 ./*.test.mjs' _ "$HERE"; then
    failed+=(node)
  fi
fi

if [ "$run_python" = 1 ]; then
  log "Python suite: PyPI pusher 3"
  if ! run_suite python bash -c 'cd "$1/python" && "$1/.venv/bin/python" -m unittest -v test_interop' _ "$HERE"; then
    failed+=(python)
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED suites: ${failed[*]}"
  exit 1
fi
log "all interop suites passed"
