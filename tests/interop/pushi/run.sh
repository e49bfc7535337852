#!/usr/bin/env bash
# Pushi interop suite: the original Pushi clients, unmodified, against the pushi server.
#
#   tests/interop/pushi/run.sh                  # python + browser
#   tests/interop/pushi/run.sh python|browser   # one suite (`node` is an alias of browser)
#   tests/interop/pushi/run.sh netius           # the original server's Python WebSocket client
#   tests/interop/pushi/run.sh browser test/lifecycle.test.mjs   # some browser test files
#   PUSHI_BIN=/path/to/pushi tests/interop/pushi/run.sh
#   PUSHI_INTEROP_TLS=1 tests/interop/pushi/run.sh   # the same over https:// and wss:// only
#
# * python: PyPI `pushi==0.6.10` (the REST client package) in tests/interop/pushi/.venv,
#   driven by unittest.
# * browser: the original pushi.js 0.6.10 (../shared/vendor/pushi-js-0.6.10/pushi.js beside
#   the repository, never copied into it) in headless Chromium (Debian `chromium`), driven by
#   node:test with playwright-core.
# * netius: `pushi.net.client` from PyPI `pushi-service==0.6.10` in a venv of its own
#   (tests/interop/pushi/.venv-service): both packages ship a top-level `pushi` module.
#
# Starts the server under test on free loopback ports (SQLite in a temp dir, open app
# creation, outbound deliveries allowed to loopback for the suites' local receivers), plus a
# second instance with a 2 s activity timeout for the idle-client tests.
# Exits non-zero if any suite fails; the server logs are printed on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SUITES="${1:-all}"
shift || true
BROWSER_TESTS=("$@")
[ "${#BROWSER_TESTS[@]}" -gt 0 ] || BROWSER_TESTS=(test/)

log() { printf '[pushi-interop] %s\n' "$*" >&2; }

run_python=0; run_browser=0; run_netius=0
case "$SUITES" in
  all) run_python=1; run_browser=1 ;;
  python) run_python=1 ;;
  browser|node|js) run_browser=1 ;;
  netius) run_netius=1 ;;
  *) log "usage: $0 [all|python|browser|netius]"; exit 2 ;;
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

install_browser() {
  command -v node >/dev/null || { log "node is required"; exit 1; }
  local chromium="${PUSHI_CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ]; then
    log "no Chromium at $chromium: apt-get install -y chromium (or set PUSHI_CHROMIUM)"
    exit 1
  fi
  local pushi_js="${PUSHI_JS_PATH:-$ROOT/../shared/vendor/pushi-js-0.6.10/pushi.js}"
  if [ ! -f "$pushi_js" ]; then
    log "the original pushi.js is not at $pushi_js (shared/ must sit beside the repository)"
    exit 1
  fi
  local stamp="$HERE/browser/node_modules/.installed"
  if [ ! -f "$stamp" ] || ! cmp -s "$HERE/browser/package-lock.json" "$stamp"; then
    log "npm ci (browser/)"
    (cd "$HERE/browser" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$HERE/browser/package-lock.json" "$stamp"
  fi
}

install_service_venv() {
  local venv="$HERE/.venv-service" req="$HERE/netius/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating venv $venv"
    python3 -m venv "$venv"
  fi
  if [ ! -f "$venv/.installed" ] || ! cmp -s "$req" "$venv/.installed"; then
    log "pip install -r netius/requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed"
  fi
  # the client package would overwrite the service's `pushi` module
  if "$venv/bin/python" -m pip show pushi >/dev/null 2>&1; then
    log "the pushi client package is installed in $venv (it overwrites pushi-service's module): remove it"
    exit 1
  fi
}

[ "$run_python" = 1 ] && install_python
[ "$run_browser" = 1 ] && install_browser
[ "$run_netius" = 1 ] && install_service_venv

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
    print_failed_suites
  fi
  rm -rf "$WORKDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$HERE/../report.sh"

. "$HERE/../tls-pki.sh"
if [ "${PUSHI_INTEROP_TLS:-0}" = 1 ]; then
  log "TLS: a throwaway CA and a server certificate"
  make_test_pki "$WORKDIR"
fi

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
  # The suites' webhook receivers and push service listen on loopback, which outbound
  # deliveries may not reach unless allowed.
  env PUSHI_OPEN_APPS=1 PUSHI_OUTBOUND_ALLOW=127.0.0.0/8 PUSHI_LOG="${PUSHI_LOG:-info}" "$@" "$PUSHI_BIN" serve \
    --http-host 127.0.0.1 --http-port "$http" --ws-host 127.0.0.1 --ws-port "$ws" \
    --database-url "sqlite://$WORKDIR/$name/pushi.db" >"$WORKDIR/$name.log" 2>&1 &
  PIDS+=("$!")
  local pid=$!
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then log "server $name exited before becoming ready"; exit 1; fi
    if curl -fsS "${CURL_TLS[@]}" -o /dev/null --max-time 1 "$SCHEME://127.0.0.1:$http/health" 2>/dev/null; then
      log "server $name ready (http $http, ws $ws)"
      return 0
    fi
    sleep 0.1
  done
  log "server $name not ready after 30 s"; exit 1
}

read -r HTTP_PORT WS_PORT < <(free_ports)
# An app declared in the environment beside the ones the suites create: Pushi clients log
# into it with its derived ident.
export PUSHI_ENV_APP_ID=9000 PUSHI_ENV_APP_KEY="env-key-$RANDOM" PUSHI_ENV_APP_SECRET="env-secret-$RANDOM"
start_server main "$HTTP_PORT" "$WS_PORT" PUSHI_APP_ID="$PUSHI_ENV_APP_ID" \
  PUSHI_APP_KEY="$PUSHI_ENV_APP_KEY" PUSHI_APP_SECRET="$PUSHI_ENV_APP_SECRET"
export PUSHI_HTTP_URL="$SCHEME://127.0.0.1:$HTTP_PORT/"
export PUSHI_WS_URL="$WS_SCHEME://127.0.0.1:$WS_PORT/"

if [ "$run_browser" = 1 ] || [ "$run_netius" = 1 ]; then
  export PUSHI_IDLE_TIMEOUT=2
  read -r IDLE_HTTP IDLE_WS < <(free_ports)
  start_server idle "$IDLE_HTTP" "$IDLE_WS" PUSHI_ACTIVITY_TIMEOUT="$PUSHI_IDLE_TIMEOUT"
  export PUSHI_IDLE_HTTP_URL="$SCHEME://127.0.0.1:$IDLE_HTTP/"
  export PUSHI_IDLE_WS_URL="$WS_SCHEME://127.0.0.1:$IDLE_WS/"
fi

# --- suites ------------------------------------------------------------------------------------
failed=()
if [ "$run_python" = 1 ]; then
  log "Python suite: PyPI pushi 0.6.10 (pushi.API)"
  if ! run_suite python bash -c 'cd "$1/python" && "$1/.venv/bin/python" -W ignore::DeprecationWarning -m unittest -v test_pushi_client' _ "$HERE"; then
    failed+=(python)
  fi
fi
if [ "$run_browser" = 1 ]; then
  log "Browser suite: the original pushi.js 0.6.10 in headless Chromium"
  if ! run_suite browser bash -c 'cd "$1/browser" && shift && node --test --test-force-exit --test-timeout=90000 "$@"' _ "$HERE" "${BROWSER_TESTS[@]}"; then
    failed+=(browser)
  fi
fi
if [ "$run_netius" = 1 ]; then
  log "netius suite: pushi.net.client from PyPI pushi-service 0.6.10"
  if ! run_suite netius bash -c 'cd "$1/netius" && "$1/.venv-service/bin/python" -W ignore::DeprecationWarning -m unittest -v test_netius_client' _ "$HERE"; then
    failed+=(netius)
  fi
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED suites: ${failed[*]}"
  exit 1
fi
log "all pushi interop suites passed"
