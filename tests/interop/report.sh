# Sourced by the interop run scripts: run a suite with its output kept, and print what failed
# *last*, after the server logs, so the end of a CI log (often all that is shown) names the
# failing tests rather than only the server's last lines.
#
#   run_suite NAME COMMAND...     runs COMMAND, output to the terminal and to $WORKDIR/NAME.out;
#                                 returns its exit status
#   print_failed_suites           the failure summary of every suite that failed

FAILED_SUITE_OUTPUTS=()

run_suite() {
  local name="$1"; shift
  local out="$WORKDIR/suite-$name.out"
  local rc
  set +e
  "$@" 2>&1 | tee "$out"
  rc="${PIPESTATUS[0]}"
  set -e
  if [ "$rc" != 0 ]; then
    FAILED_SUITE_OUTPUTS+=("$out")
  fi
  return "$rc"
}

print_failed_suites() {
  local out
  for out in "${FAILED_SUITE_OUTPUTS[@]}"; do
    [ -f "$out" ] || continue
    printf '\n[interop] ---- %s failed; its failures: ----\n' "$(basename "$out" .out)" >&2
    # node --test: a "failing tests" section (spec reporter) or "not ok" entries with their
    # YAML detail (TAP, Node 20 without a terminal); unittest: its FAIL/ERROR blocks at the end
    if grep -q 'failing tests:' "$out"; then
      sed -n '/failing tests:/,$p' "$out" | head -n 120 >&2
    elif grep -q '^ *not ok' "$out"; then
      grep -A 25 '^ *not ok' "$out" | head -n 160 >&2
    elif grep -qE '^(FAIL|ERROR):' "$out"; then
      sed -n '/^\(FAIL\|ERROR\):/,$p' "$out" | head -n 120 >&2
    else
      tail -n 60 "$out" >&2
    fi
  done
}
