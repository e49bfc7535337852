#!/bin/bash
# Cross-node figures of docs/scaling.md: subscribers on node A, HTTP publishes to node B.
# usage: bench/cross_node.sh single|redis|nats PUSHI-BENCH-ARGS... (needs target/release/pushi and
# pushi-bench; PUSHI_BENCH overrides its path)
MODE=$1; shift
B="$(cd "$(dirname "$0")/.." && pwd)/target/release/pushi"
export PUSHI_APP_ID=1 PUSHI_APP_KEY=benchkey PUSHI_APP_SECRET=benchsecret PUSHI_LOG=warn
case $MODE in
  single) $B serve --port 18201 --database-url sqlite::memory: & P1=$!; WS=18201; HTTP=18201; P2=;;
  redis|nats)
    URL=redis://127.0.0.1:6379; [ $MODE = nats ] && URL=nats://127.0.0.1:4222
    export PUSHI_CLUSTER_NAMESPACE=bench-$$
    $B serve --port 18201 --database-url sqlite::memory: --cluster $URL --node-id a & P1=$!
    $B serve --port 18202 --database-url sqlite::memory: --cluster $URL --node-id b & P2=$!
    WS=18201; HTTP=18202;;
esac
sleep 2
"${PUSHI_BENCH:-$(dirname "$B")/pushi-bench}" --ws-port $WS --http-port $HTTP --app-id 1 --key benchkey --secret benchsecret --server-pid $P1 "$@"
kill $P1 $P2 2>/dev/null; wait 2>/dev/null
