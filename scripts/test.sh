#!/usr/bin/env bash
# Builds klined and runs every default test suite. Used by `make test` (and so by CI).
#   BUILD=dir       build directory (default build)
#   SANITIZE=list   meson b_sanitize value, e.g. address,undefined
#   --unit-only     skip fuzz smoke and integration suites
#   --threaded      unit suite, then the integration cases that run klined's threads hardest
#                   (pipeline, failover, exactly once, poison, api: REST, WebSocket, pub/sub),
#                   no fuzz smoke: for TSan builds
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
SANITIZE=${SANITIZE:-none}
UNIT_ONLY=0
THREADED=0
[ "${1:-}" = "--unit-only" ] && UNIT_ONLY=1
[ "${1:-}" = "--threaded" ] && THREADED=1

opts=(--buildtype=release --werror -Db_sanitize="$SANITIZE")
if [ "$SANITIZE" != none ]; then
  opts=(--buildtype=debugoptimized --werror -Db_sanitize="$SANITIZE" -Db_lundef=false)
fi
if [ -f "$BUILD/build.ninja" ]; then
  meson configure "$BUILD" "${opts[@]}" >/dev/null
else
  meson setup "$BUILD" "${opts[@]}"
fi
ninja -C "$BUILD"

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
# A race makes the process exit (66): a klined under test then fails the test that ran it.
# test/tsan.supp: the one report that is librdkafka's own (see there).
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/test/tsan.supp}

# Each suite's output is also kept, so the end of the run can name what failed: CI shows
# only the last lines, and one failed assertion deep in a 10-minute log is otherwise lost.
logs=$(mktemp -d "${TMPDIR:-/tmp}/klined-testlogs-XXXXXX")
suite() {  # suite NAME CMD...: runs CMD, output to the terminal and to $logs/NAME
  local name=$1; shift
  "$@" 2>&1 | tee "$logs/$name"
  return "${PIPESTATUS[0]}"
}
# Failed test cases (name and first failed assertions) and each suite's doctest summary.
digest() {
  echo "== summary"
  for f in "$logs"/*; do
    [ -f "$f" ] || continue
    awk -v suite="$(basename "$f")" '
      /^TEST CASE:/ { tc = $0; sub(/^TEST CASE: */, "", tc); shown = 0 }
      /: (FATAL )?ERROR: / { if (shown < 2) { if (!shown) print suite ": FAILED: " tc; print "    " $0 } shown++ }
    ' "$f" | head -40
  done
  for f in "$logs"/*; do
    [ -f "$f" ] || continue
    grep -h '^\[doctest\] test cases:' "$f" | sed "s/^/$(basename "$f"): /" || true
  done
}

export KLINED_BUILD="$BUILD"
failed=0
echo "== unit tests"
suite unit "$BUILD/test/unit_tests" --no-colors || failed=1

if [ "$THREADED" = 1 ]; then
  echo "== integration tests (threaded cases)"
  suite integration "$BUILD/test/integration_tests" --no-colors \
    -tc='pipeline*,failover*,exactly once*,poison*,api*' || failed=1
elif [ "$UNIT_ONLY" = 0 ]; then
  if [ -x scripts/fuzz.sh ]; then
    echo "== fuzz smoke"
    ./scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-10}" || failed=1
  fi
  if [ -x "$BUILD/test/integration_tests" ]; then
    # The web cases run the pinned npm clients and load the chart page's vendored library.
    echo "== npm packages (web/)"
    ./scripts/npm-install.sh || failed=1
    # Two processes side by side, each case with servers of its own (temp dirs, free ports):
    # the cases mostly wait on their servers, so the two cores serve both (~7 min instead of
    # ~11). Part A: the cases that kill, pause and restart processes; part B: the rest. Each
    # part's output is printed once it is done.
    # Redis as a one-node cluster (after part A) refuses any call touching two slots (what
    # cluster mode could not route): a few cases that run every script (make test-one-slot:
    # all); klined on a 3+3 Redis Cluster (after part B): a sample (make test-cluster: all).
    part_a='pipeline*,failover*,exactly once*,poison*,durable*,retire*,redis loss*,ops*'
    echo "== integration tests (parts A and B at once; one-node-cluster and 3+3-cluster samples after them)"
    (
      r=0
      "$BUILD/test/integration_tests" --no-colors -tc="$part_a" > "$logs/integration-a" 2>&1 || r=1
      env KLINED_TEST_ONE_NODE_CLUSTER=1 "$BUILD/test/integration_tests" --no-colors \
        -tc='jobs rollover: idle*,persist: late trades*,pipeline: late trades*' \
        > "$logs/one-slot" 2>&1 || r=1
      exit $r
    ) &
    pid_a=$!
    (
      r=0
      "$BUILD/test/integration_tests" --no-colors -tce="$part_a" > "$logs/integration-b" 2>&1 || r=1
      env KLINED_TEST_CLUSTER=1 "$BUILD/test/integration_tests" --no-colors \
        -tc='pipeline: Redis equals*' > "$logs/cluster" 2>&1 || r=1
      exit $r
    ) &
    pid_b=$!
    wait "$pid_a" || failed=1
    wait "$pid_b" || failed=1
    for part in integration-a one-slot integration-b cluster; do
      echo "== $part"
      cat "$logs/$part"
    done
  fi
fi

digest
rm -rf "$logs"
if [ "$failed" != 0 ]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all suites passed"
