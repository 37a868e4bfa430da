#!/usr/bin/env bash
# The benchmark suite (make bench): core micro-benchmarks, then end-to-end runs of the real
# stack (bench/e2e_bench) across shard and symbol counts, RUNS times each, reported as
# medians with the machine and the exact commands. Figures go to docs/benchmarks.md.
#   RUNS=3          repetitions per end-to-end configuration
#   QUICK=1         core micro-benchmarks, one end-to-end configuration, the smaller API runs
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
export KLINED_BUILD=$BUILD

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
cmd=("$BUILD/bench/core_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true)
echo "command: ${cmd[*]}"
"${cmd[@]}" 2>&1 | grep -E "median|^Benchmark|^---"

# Catch-up runs are long enough (3 M trades, ~3 s) that startup and the last flush interval
# weigh little. 160 partitions keep every trade within the test broker's ~5 MiB per
# partition; keyed by symbol, 10 symbols use 10 partitions, so they get fewer trades.
configs=("--trades 3000000 --symbols 1000 --partitions 160 --shards 2")
if [ "${QUICK:-0}" != 1 ]; then
  configs=("--trades 3000000 --symbols 1000 --partitions 160 --shards 1"
           "--trades 3000000 --symbols 1000 --partitions 160 --shards 2"
           "--trades 3000000 --symbols 1000 --partitions 160 --shards 4"
           "--trades 200000 --symbols 10 --partitions 64 --shards 2"
           "--trades 3000000 --symbols 10000 --partitions 160 --shards 2")
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for c in "${configs[@]}"; do
  for r in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    "$BUILD/bench/e2e_bench" --latency-seconds 0 --skip-baseline $c >"$out.run" 2>&1 || { cat "$out.run"; exit 1; }
    echo "CONFIG $c" >>"$out"
    cat "$out.run" >>"$out"
  done
done
# One latency run and one run of the replaced design, at the default configuration.
"$BUILD/bench/e2e_bench" --trades 300000 --partitions 64 --symbols 1000 --shards 2 \
  --latency-seconds 15 --rate 100000 >"$out.run" 2>&1 || { cat "$out.run"; exit 1; }
echo "CONFIG latency" >>"$out"
cat "$out.run" >>"$out"
rm -f "$out.run"

# Timer jobs: rollover of 10,000 symbols x 15 intervals and MySQL upserts (env-gated cases of
# the integration suite, which print their own figures).
echo
echo "command: KLINED_ROLLOVER_BENCH=1 $BUILD/test/integration_tests -tc='jobs rollover throughput*'"
KLINED_ROLLOVER_BENCH=1 "$BUILD/test/integration_tests" -tc='jobs rollover throughput*' 2>&1 |
  grep -E "MESSAGE|rollover|symbols" | grep -v "^\[doctest\]" || true
echo "command: KLINED_PERSIST_BENCH=1 $BUILD/test/integration_tests -tc='persist bench*'"
KLINED_PERSIST_BENCH=1 "$BUILD/test/integration_tests" -tc='persist bench*' 2>&1 |
  grep -E "MESSAGE|rows|candles" | grep -v "^\[doctest\]" || true

python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
cur = None
extra = []
for line in open(sys.argv[1]):
    if line.startswith("CONFIG "):
        cur = line[7:].strip()
        continue
    m = re.match(r"\| bare librdkafka consumer \(ceiling\) \| ([\d.]+) \| (\d+)", line)
    if m: runs.setdefault(cur, []).append({"ceiling": float(m.group(2))})
    m = re.match(r"\| klined \((\d+) shards\) \| ([\d.]+) \| (\d+) \| ([\d.]+)", line)
    if m and cur in runs: runs[cur][-1].update(klined=float(m.group(3)), ratio=float(m.group(4)))
    m = re.match(r"Redis calls per trade \(catch-up\): ([\d.]+)", line)
    if m and cur in runs: runs[cur][-1]["calls"] = float(m.group(1))
    if cur == "latency" and (line.startswith("latency") or line.startswith("| one Lua")
                             or line.startswith("| design") or line.startswith("producer")):
        extra.append(line.rstrip())
print("\ncommand per run: %s/bench/e2e_bench --latency-seconds 0 "
      "--skip-baseline CONFIG\n" % "$BUILD")
print("| CONFIG | runs | ceiling msgs/s (median) | klined trades/s (median) | klined / ceiling (median of per-run ratios) | Redis calls/trade |")
print("|---|---|---|---|---|---|")
for c, rs in runs.items():
    if c == "latency":
        continue
    ok = [r for r in rs if "klined" in r]
    if not ok:
        continue
    med = lambda k: statistics.median(r[k] for r in ok)
    print("| %s | %d | %.0f | %.0f | %.2f | %.4f |" % (c, len(ok), med("ceiling"), med("klined"),
                                                        med("ratio"), med("calls")))
print("\nlatency and replaced-design run (--symbols 1000 --shards 2 --rate 100000):")
print("\n".join(extra))
PY

# The market-data API (docs/benchmarks.md, "FLUSH and its publish", "Market-data API",
# "WebSocket fan-out"); each prints its own figures and ratios.
echo
for cmd in "$BUILD/bench/flush_bench --rounds 11" "$BUILD/bench/api_bench" \
           "$BUILD/bench/ws_bench --baseline 1 --connections 2000" \
           "$BUILD/bench/ws_bench --connections 2000 --rate 10000"; do
  echo "command: $cmd"
  $cmd 2>&1 | grep -v "^20[0-9][0-9]-"
done
if [ "${QUICK:-0}" != 1 ]; then
  for cmd in "$BUILD/bench/ws_bench --baseline 1" "$BUILD/bench/ws_bench"; do
    echo "command: $cmd"
    $cmd 2>&1 | grep -v "^20[0-9][0-9]-"
  done
fi
