#!/usr/bin/env bash
# Fuzzes every parser that takes network input (fuzz/fuzz_targets: `frames` = both dialects'
# frames, channel names, presence channel_data, sign-in user_data; `http_api` = the whole
# HTTP API through the real router: signed query strings, Pushi REST fields, bodies, headers).
#
#   bench/fuzz.sh                 # 10 minutes per target
#   bench/fuzz.sh 60 frames       # one target, one minute
#
# Uses `cargo fuzz` when installed; otherwise builds the same libFuzzer binaries with stable
# rustc's coverage instrumentation (no sanitizer: Rust code is memory-safe, a panic is the bug
# being looked for). Crashes land in fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/.
# Prints libFuzzer's final stats: executions run and whether anything crashed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS="${1:-600}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(frames http_api)
cd "$ROOT/fuzz"

if cargo fuzz --version >/dev/null 2>&1; then
  cargo fuzz build -O --sanitizer none "${TARGETS[@]}"
  BIN_DIR="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release"
else
  export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
  cargo build --release --bins
  BIN_DIR="$ROOT/fuzz/target/release"
fi

status=0
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target: ${SECS}s"
  if ! "$BIN_DIR/$target" "corpus/$target" -max_total_time="$SECS" -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" -rss_limit_mb=4096 2>"artifacts/$target.log"; then
    echo "$target: CRASH, see fuzz/artifacts/$target/ and fuzz/artifacts/$target.log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "artifacts/$target.log" || true
done
exit $status
