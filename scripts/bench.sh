#!/usr/bin/env bash
# Micro-benchmarks of the core (decode, candle apply, JSON). Prints the machine and command
# with the figures; docs/benchmarks.md records the latest results.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cmd=("$BUILD/bench/core_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true)
echo "command: ${cmd[*]}"
"${cmd[@]}"
