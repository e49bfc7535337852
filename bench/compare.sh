#!/usr/bin/env bash
# pushi against its peers: the same pushi-bench scenarios against pushi, Sockudo and the
# original Pushi, each server started fresh for every run, servers alternated (A/B, then B/A)
# over ROUNDS rounds; medians and ratios (pushi ÷ peer) go into docs/benchmarks.md.
#
#   bench/compare.sh                       # everything, 3 rounds (about an hour on 2 cores)
#   QUICK=1 ROUNDS=3 bench/compare.sh      # smaller sizes (about 15 minutes)
#   SERVERS="pushi sockudo" SCENARIOS="trigger fanout" bench/compare.sh
#   BASELINE_BIN=/path/to/old/pushi SERVERS="pushi baseline" bench/compare.sh   # before/after
#
# Environment:
#   ROUNDS (3)  SERVERS ("pushi sockudo original")  QUICK (0)
#   SCENARIOS ("idle fanout fanout-burst trigger many-channels churn persist")
#   PUSHI_BIN   a pushi binary to use instead of building one
#   BENCH_BIN   a pushi-bench binary to use instead of building one
#   BASELINE_BIN  an earlier pushi binary, measured as the server "baseline"
#   BENCH_VENV  virtualenv for the original Pushi (default: ../bench-venv next to the repo)
#   PG_URL      PostgreSQL URL for "persist" (default: a throwaway cluster if postgres exists;
#               its public schema is dropped before each run: never point it at a shared database)
#   PERSIST_LANES  concurrent publishers of "persist" (8)
#   OUT         results folder (default bench/results/DATE)  WRITE (1: update docs/benchmarks.md)
#   CARGO_TARGET_DIR is honoured for the builds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"pushi sockudo original"}
SCENARIOS=${SCENARIOS:-"idle fanout fanout-burst trigger many-channels churn persist"}
QUICK=${QUICK:-0}
WRITE=${WRITE:-1}
OUT=${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
BENCH_VENV=${BENCH_VENV:-$(dirname "$ROOT")/bench-venv}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d /tmp/pushi-compare.XXXXXX)
PORT_PUSHI=18080 PORT_SOCKUDO=16001 PORT_ORIG_HTTP=18090 PORT_ORIG_WS=19090
KEY=benchkey SECRET=benchsecret APP_ID=1
mkdir -p "$OUT"
log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Sizes.
if [ "$QUICK" = 1 ]; then
  IDLE_N=5000 FANOUT_S=1000 STEP=3 CHURN_N=20000 MANY_N=5000 DUR=5
else
  IDLE_N=10000 FANOUT_S=2000 STEP=5 CHURN_N=100000 MANY_N=10000 DUR=10
fi

scenario_args() {
  case $1 in
    idle) echo "idle --connections $IDLE_N" ;;
    fanout) echo "fanout --subscribers $FANOUT_S --step-secs $STEP" ;;
    fanout-burst) echo "fanout --subscribers 900 --burst 100 --lanes 4" ;;
    trigger) echo "trigger --lanes 16 --duration-secs $DUR" ;;
    many-channels) echo "many-channels --channels $MANY_N --duration-secs $DUR --lanes 8" ;;
    churn) echo "churn --cycles $CHURN_N --workers 64 --max-secs 90" ;;
    persist-*) echo "persist --lanes ${PERSIST_LANES:-8} --duration-secs $DUR" ;;
  esac
}

# ---------------------------------------------------------------- build / install
ulimit -n "$(ulimit -Hn)" || true

if [ -z "${PUSHI_BIN:-}" ]; then
  log "building pushi and pushi-bench (release)"
  cargo build --release -p pushi -p pushi-bench >&2
  PUSHI_BIN=$TARGET_DIR/release/pushi
elif [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -p pushi-bench >&2
fi
BENCH=${BENCH_BIN:-$TARGET_DIR/release/pushi-bench}

need_sockudo=0 need_orig=0
case " $SERVERS " in *" sockudo "*) need_sockudo=1 ;; esac
case " $SERVERS " in *" original "*) need_orig=1 ;; esac

SOCKUDO=$(command -v sockudo || echo "$HOME/.cargo/bin/sockudo")
if [ $need_sockudo = 1 ] && [ ! -x "$SOCKUDO" ]; then
  # sockudo's metrics-exporter-tcp dependency runs protoc at build time.
  if ! command -v protoc >/dev/null; then
    log "installing protobuf-compiler (needed to build sockudo)"
    apt-get install -y -qq protobuf-compiler >&2
  fi
  log "cargo install sockudo --locked (long: about 25 minutes on 2 cores)"
  start=$(date +%s)
  cargo install sockudo --locked >&2
  log "sockudo installed in $(( $(date +%s) - start )) s"
  SOCKUDO=$HOME/.cargo/bin/sockudo
fi

if [ $need_orig = 1 ] && [ ! -x "$BENCH_VENV/bin/python" ]; then
  log "creating $BENCH_VENV with pushi-service 0.6.10"
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q pushi-service==0.6.10 pymongo mongomock >&2
fi

# PostgreSQL for persist: a throwaway cluster unless PG_URL is given.
PG_PID=
start_postgres() {
  [ -n "${PG_URL:-}" ] && return 0
  local bin
  bin=$(dirname "$(command -v postgres || echo /usr/lib/postgresql/15/bin/postgres)")
  [ -x "$bin/initdb" ] || { log "no PostgreSQL found: persist-postgres skipped"; return 1; }
  mkdir -p "$TMP/pg" && chmod 777 "$TMP" "$TMP/pg"
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/initdb" -D "$TMP/pg/data" -A trust -U postgres >/dev/null
  "${as[@]}" "$bin/postgres" -D "$TMP/pg/data" -k "$TMP/pg" -p 15432 -c listen_addresses=127.0.0.1 \
    >"$TMP/pg/log" 2>&1 &
  PG_PID=$!
  for _ in $(seq 50); do
    "${as[@]}" "$bin/pg_isready" -h 127.0.0.1 -p 15432 >/dev/null 2>&1 && break
    sleep 0.2
  done
  PG_URL=postgres://postgres@127.0.0.1:15432/postgres
}

# ---------------------------------------------------------------- servers
SERVER_PID=
BENCH_ARGS=()

wait_http() { # url
  for _ in $(seq 150); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  log "server did not answer $1"
  return 1
}

wait_port() { # port
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_server() { # name [database url]
  local name=$1 bin=$PUSHI_BIN
  case $name in
    pushi|baseline)
      [ "$name" = baseline ] && bin=${BASELINE_BIN:?set BASELINE_BIN to the earlier pushi binary}
      rm -f "$TMP/pushi.db"*
      PUSHI_APP_ID=$APP_ID PUSHI_APP_KEY=$KEY PUSHI_APP_SECRET=$SECRET PUSHI_LOG=warn \
        "$bin" serve --port $PORT_PUSHI --database-url "${2:-sqlite://$TMP/pushi.db}" \
        >>"$OUT/$name.log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$PORT_PUSHI/health"
      BENCH_ARGS=(--port $PORT_PUSHI --app-id $APP_ID --key $KEY --secret $SECRET)
      ;;
    sockudo)
      # One app matching the tool's credentials, limits lifted (defaults: 100 connections,
      # 100 backend events/s), HTTP rate limiter and metrics off, everything in-process.
      HOST=127.0.0.1 PORT=$PORT_SOCKUDO DEBUG_MODE=false RUST_LOG=warn \
      SOCKUDO_DEFAULT_APP_ID=$APP_ID SOCKUDO_DEFAULT_APP_KEY=$KEY SOCKUDO_DEFAULT_APP_SECRET=$SECRET \
      SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 \
      SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000000 \
      SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=100000000 \
      SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL=100000 \
      SOCKUDO_MAX_CONNECTIONS=1000000 RATE_LIMITER_ENABLED=false METRICS_ENABLED=false \
      ADAPTER_DRIVER=local CACHE_DRIVER=memory QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory \
        "$SOCKUDO" >>"$OUT/sockudo.log" 2>&1 &
      SERVER_PID=$!
      wait_port $PORT_SOCKUDO
      sleep 0.5
      BENCH_ARGS=(--port $PORT_SOCKUDO --app-id $APP_ID --key $KEY --secret $SECRET)
      ;;
    original)
      (cd "$TMP" && APP_HOST=127.0.0.1 APP_PORT=$PORT_ORIG_HTTP SERVER_HOST=127.0.0.1 \
        SERVER_PORT=$PORT_ORIG_WS PUSHI_HANDLERS=0 SESSION=memory LEVEL=WARNING \
        exec "$BENCH_VENV/bin/python" "$ROOT/bench/pushi_original.py" >>"$OUT/original.log" 2>&1) &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$PORT_ORIG_HTTP/versions"
      wait_port $PORT_ORIG_WS
      # Its apps get generated credentials (64-hex ident/key/secret).
      local creds
      creds=$(curl -fs -X POST "http://127.0.0.1:$PORT_ORIG_HTTP/apps?name=bench" |
        python3 -c 'import json,sys; a=json.load(sys.stdin); print(a["ident"], a["key"], a["secret"])')
      read -r ident okey osecret <<<"$creds"
      BENCH_ARGS=(--http-port $PORT_ORIG_HTTP --ws-port $PORT_ORIG_WS --dialect pushi
        --app-id "$ident" --key "$okey" --secret "$osecret")
      ;;
  esac
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  sleep 1
}

cleanup() {
  stop_server
  [ -n "$PG_PID" ] && kill "$PG_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

run_one() { # server scenario round
  local server=$1 scenario=$2 round=$3 db=
  case $scenario in
    persist-sqlite) [ "$server" = pushi ] || [ "$server" = baseline ] || return 0 ;;
    persist-postgres)
      { [ "$server" = pushi ] || [ "$server" = baseline ]; } && [ -n "${PG_URL:-}" ] || return 0
      psql "$PG_URL" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null 2>&1 || true
      db=$PG_URL ;;
  esac
  start_server "$server" $db || { log "$server did not start"; stop_server; return 0; }
  local json="$OUT/$server.$scenario.$round.json" rc=0
  log "round $round: $scenario on $server (pid $SERVER_PID)"
  # shellcheck disable=SC2046
  "$BENCH" "${BENCH_ARGS[@]}" --server-pid "$SERVER_PID" --label "$server" --json "$json" \
    --progress-secs 10 $(scenario_args "$scenario") >>"$OUT/$server.$scenario.$round.txt" 2>&1 || rc=$?
  echo "$server $scenario $round exit=$rc" >>"$OUT/runs.txt"
  [ $rc = 0 ] || log "  exit $rc (see $OUT/$server.$scenario.$round.txt)"
  kill -0 "$SERVER_PID" 2>/dev/null || log "  $server died during $scenario!"
  stop_server
}

# ---------------------------------------------------------------- run
expanded=()
for s in $SCENARIOS; do
  if [ "$s" = persist ]; then
    expanded+=(persist-sqlite)
    start_postgres && expanded+=(persist-postgres)
  else
    expanded+=("$s")
  fi
done

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "pushi: $("$PUSHI_BIN" --version 2>/dev/null) ($(git rev-parse --short HEAD 2>/dev/null))"
  [ $need_sockudo = 1 ] && echo "sockudo: $("$SOCKUDO" --version 2>/dev/null | head -1)"
  [ $need_orig = 1 ] && echo "original: pushi-service $("$BENCH_VENV/bin/pip" show pushi-service 2>/dev/null | sed -n 's/^Version: //p')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "kernel: $(uname -r)"
  echo "rounds: $ROUNDS quick: $QUICK"
} >"$OUT/machine.txt"

read -r -a servers <<<"$SERVERS"
for round in $(seq "$ROUNDS"); do
  order=("${servers[@]}")
  if [ $((round % 2)) = 0 ]; then # B/A on even rounds
    order=()
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[i]}"); done
  fi
  for scenario in "${expanded[@]}"; do
    for server in "${order[@]}"; do
      run_one "$server" "$scenario" "$round"
    done
  done
done

if [ "$WRITE" = 1 ]; then
  python3 "$ROOT/bench/aggregate.py" "$OUT" --write "$ROOT/docs/benchmarks.md"
else
  python3 "$ROOT/bench/aggregate.py" "$OUT"
fi
log "results in $OUT"
