#!/usr/bin/env bash
# The main job: a local stack on loopback in a temp dir — redis-server, the Kafka test broker
# (librdkafka's mock cluster), klined — fed by a small trade generator, with live candles
# shown in the terminal. Ctrl-C stops and cleans up everything it started.
#   DEMO_SECONDS=N   stop by itself after N seconds (default: run until Ctrl-C)
# MariaDB is not started yet: MySQL persistence is the "Timer jobs" issue, not built yet.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/src/app/klined" ] || { echo "demo: build first (make)"; exit 1; }

TMP=$(mktemp -d /tmp/klined-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
  echo "demo: stopped and cleaned up"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
METRICS_PORT=$(free_port)

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP" --save "" --appendonly no \
  --daemonize no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)

"$BUILD/src/tools/testbroker/klined-testbroker" --topic trades:4 --topic trades-dlq:1 \
  >"$TMP/broker.out" 2>"$TMP/broker.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q BOOTSTRAP= "$TMP/broker.out" 2>/dev/null && break; sleep 0.1; done
BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$TMP/broker.out")
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$TMP/klined.yaml" <<YAML
kafka:
  brokers: "$BOOTSTRAP"
  topic: trades
  group: klined-demo
  dead_letter_topic: trades-dlq
  properties:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
redis:
  address: "127.0.0.1:$REDIS_PORT"
intervals: [1s, 1m, 5m, 1h, 1d]
metrics:
  listen: "127.0.0.1:$METRICS_PORT"
YAML
"$BUILD/src/app/klined" --config "$TMP/klined.yaml" 2>"$TMP/klined.log" &
PIDS+=($!)

# Trade generator: 5 symbols, random-walk prices, increasing ids, keyed by symbol.
(
  declare -A price=([BTCUSDT]=4321050 [ETHUSDT]=312025 [SOLUSDT]=24510 [XRPUSDT]=61 [DOGEUSDT]=38)
  declare -A id=([BTCUSDT]=0 [ETHUSDT]=0 [SOLUSDT]=0 [XRPUSDT]=0 [DOGEUSDT]=0)
  while true; do
    now=$(date +%s%3N)
    for s in "${!price[@]}"; do
      for _ in 1 2 3 4; do
        id[$s]=$((id[$s] + 1))
        p=$((price[$s] + RANDOM % 21 - 10)); ((p < 1)) && p=1; price[$s]=$p
        printf '%s:{"e":"trade","s":"%s","t":%d,"p":"%d.%02d","q":"0.%03d","T":%d,"m":%s}\n' \
          "$s" "$s" "${id[$s]}" $((p / 100)) $((p % 100)) $((RANDOM % 999 + 1)) "$now" \
          "$([ $((RANDOM % 2)) = 0 ] && echo true || echo false)"
      done
    done
    sleep 0.2
  done | kcat -P -b "$BOOTSTRAP" -t trades -K: 2>"$TMP/kcat.log"
) &
PIDS+=($!)

echo "demo: redis 127.0.0.1:$REDIS_PORT, kafka $BOOTSTRAP, metrics http://127.0.0.1:$METRICS_PORT/metrics"
echo "demo: logs in $TMP; Ctrl-C to stop"
start=$(date +%s)
while true; do
  sleep 2
  echo "---- $(date -u +%H:%M:%S) current 1m candles (kline:{SYMBOL}:1m)"
  for s in BTCUSDT ETHUSDT SOLUSDT; do
    redis-cli -p "$REDIS_PORT" --raw GET "kline:{$s}:1m"
  done
  echo "closed 1s candles of BTCUSDT: $(redis-cli -p "$REDIS_PORT" ZCARD 'kline:{BTCUSDT}:1s:hist')," \
       "trades applied: $(curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '/^klined_trades_applied_total/ {s+=$2} END {print s+0}')"
  if [ -n "${DEMO_SECONDS:-}" ] && (( $(date +%s) - start >= DEMO_SECONDS )); then break; fi
done
