#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 60), in parallel.
# Used by `make fuzz` and, with 20 s, by scripts/test.sh as a CI smoke run.
#   FUZZ_BUILD=dir   build directory (default build-fuzz), set up with clang++ if missing
# Each target starts from its seed corpus in test/fuzz/corpus/<name>/ (read-only) and keeps
# what it finds in $FUZZ_BUILD/fuzz-corpus/<name>/; crashes go to $FUZZ_BUILD/fuzz-artifacts/.
# Prints one result line; exits non-zero if a target crashed, leaked, hung or failed to build.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
TARGETS=(decoder candle)

fail() {
  echo "fuzz.sh: FAILED: $*"
  exit 1
}

case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) fail "usage: scripts/fuzz.sh SECONDS" ;;
esac
command -v clang++ >/dev/null || fail "clang++ not found (scripts/install-deps.sh installs it)"

log_dir="$BUILD/fuzz-logs"
if [ ! -f "$BUILD/build.ninja" ]; then
  setup_log=$(mktemp)
  # --wipe: a directory left half-configured by an interrupted run is set up again.
  [ -d "$BUILD" ] && wipe=(--wipe) || wipe=()
  CXX=clang++ meson setup "${wipe[@]}" "$BUILD" --buildtype=debugoptimized --werror \
    >"$setup_log" 2>&1 || { tail -n 20 "$setup_log"; fail "meson setup $BUILD"; }
  mv "$setup_log" "$BUILD/fuzz-setup.log"
fi
mkdir -p "$log_dir"
ninja_targets=()
for t in "${TARGETS[@]}"; do ninja_targets+=("test/fuzz/${t}_fuzz"); done
ninja -C "$BUILD" "${ninja_targets[@]}" >"$log_dir/build.log" 2>&1 ||
  { tail -n 30 "$log_dir/build.log"
    fail "building fuzz targets in $BUILD (needs clang and libclang-rt; see $log_dir/build.log)"; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

pids=()
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/fuzz-corpus/$t"
  artifacts="$BUILD/fuzz-artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  dict=()
  [ -f "test/fuzz/$t.dict" ] && dict=("-dict=test/fuzz/$t.dict")
  # The subshell (not exec'd: it runs `exit` after) takes bash's "Aborted" notice to
  # /dev/null; the fuzzer's own report is in the log.
  (
    "$BUILD/test/fuzz/${t}_fuzz" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 -artifact_prefix="$artifacts" \
      "$corpus" "test/fuzz/corpus/$t" </dev/null >"$log_dir/$t.log" 2>&1
    exit $?
  ) 2>/dev/null &
  pids+=($!)
done

status=0
summary=()
for i in "${!TARGETS[@]}"; do
  t=${TARGETS[$i]}
  rc=0
  wait "${pids[$i]}" || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_dir/$t.log" | tail -n 1 || true)
  cov=$({ grep -o 'cov: [0-9]*' "$log_dir/$t.log" || true; } | tail -n 1 | tr -dc '0-9')
  if [ "$rc" = 0 ]; then
    summary+=("$t ok ${runs:-?} runs in ${SECONDS_PER_TARGET}s, cov ${cov:-?}")
  else
    status=1
    summary+=("$t CRASH (exit $rc, log $log_dir/$t.log, inputs in $BUILD/fuzz-artifacts/$t/)")
    grep -m 5 -E 'ERROR|SUMMARY|deadly|Test unit written' "$log_dir/$t.log" >&2 || true
  fi
done

line=$(printf '%s; ' "${summary[@]}")
if [ "$status" = 0 ]; then
  echo "fuzz.sh: passed: ${line%; }"
else
  echo "fuzz.sh: FAILED: ${line%; }"
fi
exit "$status"
